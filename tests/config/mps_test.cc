// sharing.mps: parsed as timeSlicing is, resolved the same way, plus the MPS rules: not with
// timeSlicing, not with MIG, at most 48 clients per GPU (16 before Volta), and
// failRequestsGreaterThanOne true unless the file says otherwise.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "src/config/config.h"
#include "tests/config/config_test_util.h"

namespace slicer::config {
namespace {

using test::Dump;
using test::ErrorAt;
using test::Load;
using test::OneError;
using test::OnlyError;
using test::TestData;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::SizeIs;

// `section` ("mps" or "timeSlicing") with the given resources entries.
std::string Sharing(const std::string& section, const std::string& entries) {
  return "version: v1\nsharing:\n  " + section + ":\n    resources:\n" + entries;
}

std::string U(int n) { return "GPU-00000000-0000-0000-0000-00000000000" + std::to_string(n); }

const std::vector<GpuRef> kTwoT4 = {{U(0), 0, "Tesla T4", 7, 5}, {U(1), 1, "Tesla T4", 7, 5}};

// ---- strategy and failRequestsGreaterThanOne ----

TEST(MpsStrategy, NamesAreTheNodeLabelValues) {
  EXPECT_EQ(ToString(SharingStrategy::kNone), "none");
  EXPECT_EQ(ToString(SharingStrategy::kTimeSlicing), "time-slicing");
  EXPECT_EQ(ToString(SharingStrategy::kMps), "mps");
}

TEST(MpsStrategy, ReplicatedSectionDecides) {
  EXPECT_EQ(Load("version: v1\n").Strategy(), SharingStrategy::kNone);
  EXPECT_EQ(Load(Sharing("timeSlicing", "    - {name: gpu, replicas: 1}\n")).Strategy(),
            SharingStrategy::kNone);
  EXPECT_EQ(Load(Sharing("timeSlicing", "    - {name: gpu, replicas: 2}\n")).Strategy(),
            SharingStrategy::kTimeSlicing);
  Config unshared = Load(Sharing("mps", "    - {name: gpu, replicas: 1}\n"));
  EXPECT_TRUE(unshared.mps.has_value());
  EXPECT_EQ(unshared.Strategy(), SharingStrategy::kNone);
  EXPECT_EQ(Load(Sharing("mps", "    - {name: gpu, replicas: 2}\n")).Strategy(),
            SharingStrategy::kMps);
  EXPECT_FALSE(Load("version: v1\n").mps.has_value());

  // NVIDIA's order when a Config built in code has both: MPS wins.
  Config both = Load(Sharing("timeSlicing", "    - {name: gpu, replicas: 2}\n"));
  both.mps = TimeSlicing{};
  ReplicatedResource entry;
  entry.name = "nvidia.com/gpu";
  entry.replicas = 3;
  both.mps->resources.push_back(entry);
  EXPECT_EQ(both.Strategy(), SharingStrategy::kMps);
}

TEST(MpsStrategy, FailRequestsGreaterThanOneDefaultsTrueForMpsOnly) {
  Config mps = Load(Sharing("mps", "    - {name: gpu, replicas: 2}\n"));
  EXPECT_FALSE(mps.mps->fail_requests_set);
  EXPECT_TRUE(mps.FailRequestsGreaterThanOne());

  // `false` is how a pod gets k > 1 replicas, i.e. a bigger MPS share.
  Config relaxed = Load(
      "version: v1\nsharing:\n  mps:\n    failRequestsGreaterThanOne: false\n    resources:\n"
      "    - {name: gpu, replicas: 2}\n");
  EXPECT_TRUE(relaxed.mps->fail_requests_set);
  EXPECT_FALSE(relaxed.FailRequestsGreaterThanOne());

  Config strict = Load(
      "version: v1\nsharing:\n  mps:\n    failRequestsGreaterThanOne: true\n    resources:\n"
      "    - {name: gpu, replicas: 2}\n");
  EXPECT_TRUE(strict.mps->fail_requests_set);
  EXPECT_TRUE(strict.FailRequestsGreaterThanOne());

  Config ts = Load(Sharing("timeSlicing", "    - {name: gpu, replicas: 2}\n"));
  EXPECT_FALSE(ts.time_slicing.fail_requests_set);
  EXPECT_FALSE(ts.FailRequestsGreaterThanOne());
  Config ts_set = Load(
      "version: v1\nsharing:\n  timeSlicing:\n    failRequestsGreaterThanOne: true\n"
      "    resources:\n    - {name: gpu, replicas: 2}\n");
  EXPECT_TRUE(ts_set.time_slicing.fail_requests_set);
  EXPECT_TRUE(ts_set.FailRequestsGreaterThanOne());
}

// ---- resolved as timeSlicing is ----

TEST(MpsResolve, RenameDevicesAndWholeGpus) {
  Config c = Load(R"(version: v1
sharing:
  mps:
    renameByDefault: true
    resources:
    - name: nvidia.com/gpu
      devices: [1]
      replicas: 4
      allowOptOut: true
)");
  auto r = ResolveResources(c, kTwoT4);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_THAT(*r, SizeIs(2));
  EXPECT_EQ((*r)[0].name, "nvidia.com/gpu");
  EXPECT_THAT((*r)[0].uuids, ElementsAre(U(0)));
  EXPECT_EQ((*r)[0].replicas, 1);
  EXPECT_EQ((*r)[0].sharing, SharingStrategy::kNone);
  EXPECT_EQ((*r)[1].name, "nvidia.com/gpu.shared");
  EXPECT_THAT((*r)[1].uuids, ElementsAre(U(1)));
  EXPECT_EQ((*r)[1].replicas, 4);
  EXPECT_EQ((*r)[1].sharing, SharingStrategy::kMps);
  EXPECT_TRUE((*r)[1].enforce_memory);
  EXPECT_TRUE((*r)[1].allow_opt_out);
}

TEST(MpsResolve, TimeSlicingResourcesSayTimeSlicing) {
  auto r =
      ResolveResources(Load(Sharing("timeSlicing", "    - {name: gpu, replicas: 3}\n")), kTwoT4);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_THAT(*r, SizeIs(1));
  EXPECT_EQ((*r)[0].sharing, SharingStrategy::kTimeSlicing);
}

TEST(MpsResolve, ReplicasOneIsNotShared) {
  auto r = ResolveResources(Load(Sharing("mps", "    - {name: gpu, replicas: 1}\n")), kTwoT4);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_THAT(*r, SizeIs(1));
  EXPECT_EQ((*r)[0].sharing, SharingStrategy::kNone);
  EXPECT_FALSE((*r)[0].enforce_memory);
}

TEST(MpsResolve, ErrorsNameTheMpsEntry) {
  auto err = [](const std::string& entries) {
    auto r = ResolveResources(Load(Sharing("mps", entries)), kTwoT4);
    EXPECT_FALSE(r.ok());
    return std::string(r.status().message());
  };
  EXPECT_THAT(err("    - {name: gpu, devices: [7], replicas: 2}\n"),
              HasSubstr("sharing.mps.resources[0].devices[0]: this node has no GPU 7"));
  EXPECT_THAT(err("    - {name: gpu, devices: 3, replicas: 2}\n"),
              HasSubstr("sharing.mps.resources[0].devices: asks for 3 GPUs"));
  EXPECT_THAT(err("    - {name: gpu, devices: [0, 1], replicas: 2, rename: a}\n"
                  "    - {name: gpu, devices: [1], replicas: 2, rename: b}\n"),
              HasSubstr("is selected by both sharing.mps.resources[0] and "
                        "sharing.mps.resources[1]"));
  EXPECT_THAT(err("    - {name: gpu, devices: [0], replicas: 4}\n"),
              HasSubstr("sharing.mps.resources[0] would both advertise nvidia.com/gpu"));
}

// ---- rule 1: not with timeSlicing ----

TEST(MpsRules, CombinedWithTimeSlicingIsAnError) {
  EXPECT_THAT(OnlyError(ParseFile(TestData("mps_and_time_slicing.yaml"))),
              ErrorAt("sharing.mps", 8, 3,
                      AllOf(HasSubstr("sharing.timeSlicing (line 4) cannot be combined"),
                            HasSubstr("NVIDIA's plugin silently uses MPS"),
                            HasSubstr("Keep one of them"), HasSubstr("separate named config"))));
}

// ---- rule 2: not with MIG ----

TEST(MpsRules, MigStrategyMixedIsAnError) {
  EXPECT_THAT(OnlyError(ParseFile(TestData("mps_mig_mixed.yaml"))),
              ErrorAt("sharing.mps", 6, 3,
                      AllOf(HasSubstr("MPS is not supported for MIG devices"),
                            HasSubstr("flags.migStrategy is mixed (line 4)"))));

  // NVIDIA allows MPS with migStrategy none and single.
  for (const char* strategy : {"none", "single"}) {
    ParseResult ok = Parse(std::string("version: v1\nflags:\n  migStrategy: ") + strategy +
                           "\nsharing:\n  mps:\n    resources:\n    - {name: gpu, replicas: 2}\n");
    EXPECT_TRUE(ok.ok()) << strategy << ": " << Dump(ok);
  }
}

TEST(MpsRules, MigResourceNameIsAnError) {
  EXPECT_THAT(OneError(Sharing("mps", "    - name: nvidia.com/mig-1g.5gb\n      replicas: 2\n")),
              ErrorAt("sharing.mps.resources[0].name", 5, 13,
                      HasSubstr("is a MIG resource; MPS is not supported for MIG devices")));

  // A resources.mig name is a MIG resource too.
  EXPECT_THAT(OneError("version: v1\nresources:\n  mig:\n  - {pattern: 1g.5gb, name: small}\n"
                       "sharing:\n  mps:\n    resources:\n    - {name: small, replicas: 2}\n"),
              ErrorAt("sharing.mps.resources[0].name", 8, 14,
                      HasSubstr("\"nvidia.com/small\" is a MIG resource")));

  // The same entry is fine for time-slicing.
  EXPECT_TRUE(
      Parse(Sharing("timeSlicing", "    - {name: nvidia.com/mig-1g.5gb, replicas: 2}\n")).ok());
}

TEST(MpsRules, MigDeviceInDevicesIsAnError) {
  ParseResult r = Parse(
      Sharing("mps",
              "    - name: gpu\n      replicas: 2\n"
              "      devices: [0, \"0:1\", MIG-GPU-8f9e6f6c-1b2d-4c5e-9a0b-1c2d3e4f5a6b/3/0]\n"));
  EXPECT_THAT(r.errors,
              ElementsAre(ErrorAt("sharing.mps.resources[0].devices[1]", 7, 20,
                                  HasSubstr("0:1 is a MIG device; MPS is not supported")),
                          ErrorAt("sharing.mps.resources[0].devices[2]", 7, 27,
                                  HasSubstr("MIG-GPU-8f9e6f6c-1b2d-4c5e-9a0b-1c2d3e4f5a6b/3/0 is "
                                            "a MIG device"))))
      << Dump(r);

  EXPECT_TRUE(
      Parse(Sharing("timeSlicing", "    - {name: gpu, replicas: 2, devices: [\"0:1\"]}\n")).ok());
}

TEST(MpsRules, OverridesBringingMixedAreAnError) {
  const Config file = ParseFile(TestData("nvidia_mps.yaml")).config;
  Overrides env, flags;
  env.mig_strategy = "mixed";
  Config c = file;
  absl::Status s = ApplyOverrides(env, flags, c);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), AllOf(HasSubstr("MIG_STRATEGY=mixed"),
                                 HasSubstr("MPS is not supported for MIG devices")));
  EXPECT_EQ(c.flags.mig_strategy, "none");  // untouched

  flags.mig_strategy = "mixed";
  s = ApplyOverrides({}, flags, c);
  EXPECT_THAT(s.message(), HasSubstr("--mig-strategy=mixed"));
  s = ApplyOverrides(env, flags, c);  // the flag is what wins, so it is what is named
  EXPECT_THAT(s.message(), HasSubstr("--mig-strategy=mixed"));

  // The flag overriding the environment back to none is fine; so is mixed without MPS.
  flags.mig_strategy = "none";
  EXPECT_TRUE(ApplyOverrides(env, flags, c).ok());
  Config no_mps;
  EXPECT_TRUE(ApplyOverrides(env, {}, no_mps).ok());
  EXPECT_EQ(no_mps.flags.mig_strategy, "mixed");
}

TEST(MpsRules, ResolveRejectsMigDevicesAndMixed) {
  Config c = Load(Sharing("mps", "    - {name: gpu, replicas: 2}\n"));
  // migStrategy single advertises MIG devices as nvidia.com/gpu: the resolver sees their UUIDs.
  std::vector<GpuRef> mig = {{U(0), 0, "Tesla T4", 7, 5},
                             {"MIG-8f9e6f6c-1b2d-4c5e-9a0b-1c2d3e4f5a6b", 1, "A100 1g.5gb", 8, 0}};
  auto r = ResolveResources(c, mig);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(
      r.status().message(),
      HasSubstr("sharing.mps.resources[0]: GPU 1 (MIG-8f9e6f6c-1b2d-4c5e-9a0b-1c2d3e4f5a6b, "
                "A100 1g.5gb) is a MIG device"));
  EXPECT_THAT(r.status().message(), Not(HasSubstr("GPU 0")));

  c.flags.mig_strategy = "mixed";  // as a Config built in code could have it
  r = ResolveResources(c, kTwoT4);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("sharing.mps: MPS is not supported for MIG devices"));

  Config named = Load(Sharing("mps", "    - {name: gpu, replicas: 2}\n"));
  named.mps->resources[0].name = "nvidia.com/mig-1g.5gb";
  r = ResolveResources(named, kTwoT4);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("sharing.mps.resources[0]: nvidia.com/mig-1g.5gb is "
                                              "a MIG resource"));
}

// ---- rule 3: the MPS client limit ----

TEST(MpsRules, ReplicasAbove48AreAnErrorOnTheReplicasLine) {
  EXPECT_THAT(OneError(Sharing("mps", "    - name: gpu\n      replicas: 49\n")),
              ErrorAt("sharing.mps.resources[0].replicas", 6, 17,
                      HasSubstr("an MPS server accepts at most 48 clients per GPU on compute "
                                "capability 7.0 (Volta) and newer, 16 before")));
  EXPECT_TRUE(Parse(Sharing("mps", "    - {name: gpu, replicas: 48}\n")).ok());
  EXPECT_TRUE(Parse(Sharing("timeSlicing", "    - {name: gpu, replicas: 49}\n")).ok());

  Config c = Load(Sharing("mps", "    - {name: gpu, replicas: 48}\n"));
  c.mps->resources[0].replicas = 49;  // past Parse
  auto r = ResolveResources(c, kTwoT4);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("sharing.mps.resources[0]: 49 replicas"));
}

TEST(MpsRules, PreVoltaGpuAllowsSixteen) {
  const std::vector<GpuRef> gpus = {{U(0), 0, "Tesla P100-PCIE-16GB", 6, 0},
                                    {U(1), 1, "Tesla V100-SXM2-16GB", 7, 0}};
  auto r = ResolveResources(Load(Sharing("mps", "    - {name: gpu, replicas: 17}\n")), gpus);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(),
              HasSubstr("sharing.mps.resources[0]: 17 replicas on GPU 0 "
                        "(GPU-00000000-0000-0000-0000-000000000000, Tesla P100-PCIE-16GB), "
                        "compute capability 6.0; before compute capability 7.0 (Volta) an MPS "
                        "server accepts at most 16 clients per GPU"));
  EXPECT_THAT(r.status().message(), Not(HasSubstr("GPU 1")));  // 7.0 takes 48

  EXPECT_TRUE(
      ResolveResources(Load(Sharing("mps", "    - {name: gpu, replicas: 16}\n")), gpus).ok());
  // Only the GPUs the entry selects count.
  EXPECT_TRUE(ResolveResources(Load(Sharing("mps",
                                            "    - {name: gpu, replicas: 48, devices: [1], "
                                            "rename: big}\n")),
                               gpus)
                  .ok());
  // Unknown compute capability: only the parse-time limit applies.
  EXPECT_TRUE(ResolveResources(Load(Sharing("mps", "    - {name: gpu, replicas: 48}\n")),
                               {{U(0), 0, "Tesla P100-PCIE-16GB"}})
                  .ok());
  // Time-slicing has no client limit.
  EXPECT_TRUE(
      ResolveResources(Load(Sharing("timeSlicing", "    - {name: gpu, replicas: 17}\n")), gpus)
          .ok());
}

}  // namespace
}  // namespace slicer::config
