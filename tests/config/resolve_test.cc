// ResolveResources: per-resource rename and devices, whole GPUs, and the errors.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "src/config/config.h"
#include "tests/config/config_test_util.h"

namespace slicer::config {
namespace {

using test::Load;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::SizeIs;

// A valid GPU UUID ending in `n` (the parser checks UUID syntax as NVIDIA's does).
std::string U(int n) { return "GPU-00000000-0000-0000-0000-00000000000" + std::to_string(n); }

const std::vector<GpuRef> kFourT4 = {
    {U(0), 0, "Tesla T4"}, {U(1), 1, "Tesla T4"}, {U(2), 2, "Tesla T4"}, {U(3), 3, "Tesla T4"}};

TEST(Resolve, OneGpuSharedOthersWhole) {
  Config c = Load(R"(version: v1
sharing:
  timeSlicing:
    resources:
    - name: nvidia.com/gpu
      rename: nvidia.com/gpu.shared
      devices: [0]
      replicas: 4
      allowOptOut: true
)");
  auto r = ResolveResources(c, kFourT4);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_THAT(*r, SizeIs(2));
  EXPECT_EQ((*r)[0].name, "nvidia.com/gpu.shared");
  EXPECT_EQ((*r)[0].replicas, 4);
  EXPECT_THAT((*r)[0].uuids, ElementsAre(U(0)));
  EXPECT_TRUE((*r)[0].enforce_memory);
  EXPECT_TRUE((*r)[0].allow_opt_out);
  EXPECT_EQ((*r)[1].name, "nvidia.com/gpu");
  EXPECT_EQ((*r)[1].replicas, 1);
  EXPECT_THAT((*r)[1].uuids, ElementsAre(U(1), U(2), U(3)));
  EXPECT_FALSE((*r)[1].enforce_memory);
}

TEST(Resolve, CountByUuidAndOrder) {
  Config c = Load(R"(version: v1
sharing:
  timeSlicing:
    renameByDefault: true
    resources:
    - {name: gpu, devices: 2, replicas: 8, enforceMemory: false}
)");
  // Discovery order need not be index order.
  std::vector<GpuRef> gpus = {kFourT4[3], kFourT4[1], kFourT4[0], kFourT4[2]};
  auto r = ResolveResources(c, gpus);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_THAT(*r, SizeIs(2));
  EXPECT_EQ((*r)[0].name, "nvidia.com/gpu.shared");
  EXPECT_THAT((*r)[0].uuids, ElementsAre(U(0), U(1)));
  EXPECT_FALSE((*r)[0].enforce_memory);
  EXPECT_EQ((*r)[1].name, "nvidia.com/gpu");
  EXPECT_THAT((*r)[1].uuids, ElementsAre(U(2), U(3)));
}

TEST(Resolve, TwoEntriesSameNameMerge) {
  Config c = Load(R"(version: v1
sharing:
  timeSlicing:
    resources:
    - {name: gpu, devices: [GPU-00000000-0000-0000-0000-000000000003], replicas: 2, rename: shared}
    - {name: gpu, devices: ["1"], replicas: 2, rename: shared}
)");
  auto r = ResolveResources(c, kFourT4);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_THAT(*r, SizeIs(2));
  EXPECT_EQ((*r)[0].name, "nvidia.com/gpu");
  EXPECT_THAT((*r)[0].uuids, ElementsAre(U(0), U(2)));
  EXPECT_EQ((*r)[1].name, "nvidia.com/shared");
  EXPECT_THAT((*r)[1].uuids, ElementsAre(U(1), U(3)));
}

TEST(Resolve, PatternsPickBaseNames) {
  Config c = Load(R"(version: v1
resources:
  gpus:
  - {pattern: "A100", name: a100}
  - {pattern: "*", name: gpu}
sharing:
  timeSlicing:
    resources:
    - {name: a100, replicas: 7}
)");
  std::vector<GpuRef> gpus = {{"GPU-a", 0, "NVIDIA A100-SXM4-80GB"}, {"GPU-t", 1, "Tesla T4"}};
  auto r = ResolveResources(c, gpus);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_THAT(*r, SizeIs(2));
  EXPECT_EQ((*r)[0].name, "nvidia.com/a100");
  EXPECT_EQ((*r)[0].replicas, 7);
  EXPECT_EQ((*r)[1].name, "nvidia.com/gpu");
  EXPECT_EQ((*r)[1].replicas, 1);
}

TEST(Resolve, NoGpusNothingAdvertised) {
  auto r = ResolveResources(Config{}, {});
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->empty());
}

TEST(Resolve, DefaultConfigAdvertisesWholeGpus) {
  auto r = ResolveResources(Config{}, kFourT4);
  ASSERT_TRUE(r.ok());
  ASSERT_THAT(*r, SizeIs(1));
  EXPECT_EQ((*r)[0].name, "nvidia.com/gpu");
  EXPECT_EQ((*r)[0].replicas, 1);
  EXPECT_THAT((*r)[0].uuids, SizeIs(4));
}

TEST(Resolve, Errors) {
  auto err = [](const std::string& resources) {
    Config c = Load("version: v1\nsharing:\n  timeSlicing:\n    resources:\n" + resources);
    auto r = ResolveResources(c, kFourT4);
    EXPECT_FALSE(r.ok());
    return std::string(r.status().message());
  };
  EXPECT_THAT(err("    - {name: gpu, devices: [7], replicas: 2}\n"),
              HasSubstr("sharing.timeSlicing.resources[0].devices[0]: this node has no GPU 7"));
  EXPECT_THAT(
      err("    - {name: gpu, devices: [GPU-00000000-0000-0000-0000-000000000009], replicas: 2}\n"),
      HasSubstr("no GPU GPU-00000000-0000-0000-0000-000000000009"));
  EXPECT_THAT(err("    - {name: gpu, devices: 5, replicas: 2}\n"),
              HasSubstr("asks for 5 GPUs of nvidia.com/gpu but this node has 4"));
  EXPECT_THAT(err("    - {name: gpu, devices: [\"0:1\"], replicas: 2}\n"),
              HasSubstr("is a MIG device"));
  EXPECT_THAT(
      err("    - {name: gpu, devices: [0, 1], replicas: 2, rename: a}\n"
          "    - {name: gpu, devices: [1], replicas: 2, rename: b}\n"),
      HasSubstr("GPU 1 (GPU-00000000-0000-0000-0000-000000000001, Tesla T4) is selected by both "
                "sharing.timeSlicing.resources[0] and sharing.timeSlicing.resources[1]"));
  // Shared GPU 0 and whole GPUs 1-3 cannot both be nvidia.com/gpu; said once, not per GPU.
  const std::string twice = err("    - {name: gpu, devices: [0], replicas: 4}\n");
  EXPECT_THAT(twice, HasSubstr("would both advertise nvidia.com/gpu but with 1 and 4 replicas"));
  EXPECT_EQ(twice.find("would both advertise"), twice.rfind("would both advertise")) << twice;
  EXPECT_THAT(err("    - {name: gpu, devices: [0], replicas: 4, rename: s}\n"
                  "    - {name: gpu, devices: [1], replicas: 2, rename: s}\n"),
              HasSubstr("with 2 and 4 replicas"));
}

TEST(Resolve, IndexOfAnotherResourceIsAnError) {
  Config c = Load(R"(version: v1
resources:
  gpus:
  - {pattern: "A100", name: a100}
  - {pattern: "*", name: gpu}
sharing:
  timeSlicing:
    resources:
    - {name: a100, devices: [1], replicas: 2}
)");
  auto r = ResolveResources(c, {{"GPU-a", 0, "A100"}, {"GPU-t", 1, "Tesla T4"}});
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(),
              HasSubstr("is advertised as nvidia.com/gpu, not nvidia.com/a100"));
}

// ---- precedence: flag > environment > file ----

TEST(Overrides, FlagBeatsEnvironmentBeatsFile) {
  Config c = Load(R"(version: v1
flags:
  migStrategy: mixed
  failOnInitError: true
  nvidiaDriverRoot: /file
  plugin:
    passDeviceSpecs: false
    deviceListStrategy: envvar
    deviceIDStrategy: uuid
    cdiAnnotationPrefix: file/
)");
  auto env = OverridesFromEnvironment({{"MIG_STRATEGY", "single"},
                                       {"NVIDIA_DRIVER_ROOT", "/env"},
                                       {"FAIL_ON_INIT_ERROR", "false"},
                                       {"DEVICE_LIST_STRATEGY", "volume-mounts, cdi-cri"},
                                       {"DEVICE_ID_STRATEGY", "index"},
                                       {"MPS_ROOT", "/env/mps"},
                                       {"UNRELATED", "x"}});
  ASSERT_TRUE(env.ok()) << env.status();
  Overrides flags;
  flags.mig_strategy = "none";
  flags.pass_device_specs = true;
  ASSERT_TRUE(ApplyOverrides(*env, flags, c).ok());
  EXPECT_EQ(c.flags.mig_strategy, "none");        // flag
  EXPECT_EQ(c.flags.nvidia_driver_root, "/env");  // environment
  EXPECT_FALSE(c.flags.fail_on_init_error);       // environment
  EXPECT_TRUE(c.flags.plugin.pass_device_specs);  // flag
  EXPECT_THAT(c.flags.plugin.device_list_strategy,
              ElementsAre(DeviceListStrategy::kVolumeMounts, DeviceListStrategy::kCdiCri));
  EXPECT_EQ(c.flags.plugin.device_id_strategy, DeviceIdStrategy::kIndex);
  EXPECT_EQ(c.flags.plugin.cdi_annotation_prefix, "file/");  // file
  EXPECT_EQ(c.flags.mps_root, "/env/mps");                   // environment
  flags.mps_root = "/flag/mps";
  ASSERT_TRUE(ApplyOverrides(*env, flags, c).ok());
  EXPECT_EQ(c.flags.mps_root, "/flag/mps");  // flag over environment
}

TEST(Overrides, EmptyVariableIsUnset) {
  auto env = OverridesFromEnvironment({{"MIG_STRATEGY", ""}, {"PASS_DEVICE_SPECS", ""}});
  ASSERT_TRUE(env.ok());
  EXPECT_FALSE(env->mig_strategy.has_value());
  EXPECT_FALSE(env->pass_device_specs.has_value());
}

TEST(Overrides, ErrorsNameTheSourceAndChangeNothing) {
  auto env = OverridesFromEnvironment({{"PASS_DEVICE_SPECS", "maybe"}});
  ASSERT_FALSE(env.ok());
  EXPECT_THAT(env.status().message(), HasSubstr("PASS_DEVICE_SPECS"));

  Config c;
  Overrides e, f;
  e.nvidia_driver_root = "/env";
  e.device_id_strategy = "serial";
  absl::Status s = ApplyOverrides(e, f, c);
  EXPECT_THAT(s.message(), HasSubstr("DEVICE_ID_STRATEGY"));
  EXPECT_EQ(c.flags.nvidia_driver_root, "/");  // untouched

  e = {};
  f.device_list_strategy = "envvar,bogus";
  s = ApplyOverrides(e, f, c);
  EXPECT_THAT(s.message(), HasSubstr("--device-list-strategy: unknown device list strategy"));
  f = {};
  f.mig_strategy = "all";
  EXPECT_THAT(ApplyOverrides(e, f, c).message(), HasSubstr("--mig-strategy"));
}

}  // namespace
}  // namespace slicer::config
