// The config parser: NVIDIA's own examples mean the same here; every mistake is reported with its
// path, line and column; malformed input is an error, never a crash.
#include "src/config/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "tests/config/config_test_util.h"

namespace slicer::config {
namespace {

using test::Dump;
using test::OneError;
using test::TestData;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::SizeIs;

// ---- NVIDIA's examples ----

TEST(NvidiaExamples, ReadmeFlags) {
  ParseResult r = ParseFile(TestData("nvidia_readme_flags.yaml"));
  ASSERT_TRUE(r.ok()) << Dump(r);
  const Flags& f = r.config.flags;
  EXPECT_EQ(f.mig_strategy, "none");
  EXPECT_TRUE(f.fail_on_init_error);
  EXPECT_EQ(f.nvidia_driver_root, "/");
  EXPECT_FALSE(f.plugin.pass_device_specs);
  EXPECT_THAT(f.plugin.device_list_strategy, ElementsAre(DeviceListStrategy::kEnvvar));
  EXPECT_EQ(f.plugin.device_id_strategy, DeviceIdStrategy::kUuid);
  EXPECT_FALSE(f.gfd.oneshot);
  EXPECT_EQ(f.gfd.sleep_interval, std::chrono::seconds(60));
  EXPECT_EQ(f.gfd.output_file, "/etc/kubernetes/node-feature-discovery/features.d/gfd");
  EXPECT_TRUE(r.config.time_slicing.resources.empty());
}

TEST(NvidiaExamples, TimeSlicing) {
  ParseResult r = ParseFile(TestData("nvidia_time_slicing.yaml"));
  ASSERT_TRUE(r.ok()) << Dump(r);
  ASSERT_THAT(r.config.time_slicing.resources, SizeIs(1));
  const ReplicatedResource& res = r.config.time_slicing.resources[0];
  EXPECT_EQ(res.name, "nvidia.com/gpu");
  EXPECT_EQ(res.replicas, 10);
  EXPECT_TRUE(res.devices.all);
  EXPECT_TRUE(res.rename.empty());
  EXPECT_FALSE(r.config.time_slicing.rename_by_default);
  EXPECT_FALSE(r.config.time_slicing.fail_requests_greater_than_one);

  auto resolved = ResolveResources(r.config, {{"GPU-a", 0, "Tesla T4"}, {"GPU-b", 1, "Tesla T4"}});
  ASSERT_TRUE(resolved.ok()) << resolved.status();
  ASSERT_THAT(*resolved, SizeIs(1));
  EXPECT_EQ((*resolved)[0].name, "nvidia.com/gpu");
  EXPECT_EQ((*resolved)[0].replicas, 10);
  EXPECT_THAT((*resolved)[0].uuids, ElementsAre("GPU-a", "GPU-b"));
  EXPECT_TRUE((*resolved)[0].enforce_memory);  // default when shared
  EXPECT_FALSE((*resolved)[0].allow_opt_out);
}

TEST(NvidiaExamples, RenameByDefaultAppendsShared) {
  ParseResult r = ParseFile(TestData("nvidia_time_slicing_rename.yaml"));
  ASSERT_TRUE(r.ok()) << Dump(r);
  EXPECT_TRUE(r.config.time_slicing.rename_by_default);
  EXPECT_TRUE(r.config.time_slicing.fail_requests_greater_than_one);
  auto resolved = ResolveResources(r.config, {{"GPU-a", 0, "NVIDIA A10G"}});
  ASSERT_TRUE(resolved.ok()) << resolved.status();
  ASSERT_THAT(*resolved, SizeIs(1));
  EXPECT_EQ((*resolved)[0].name, "nvidia.com/gpu.shared");
  EXPECT_EQ((*resolved)[0].replicas, 10);
}

TEST(NvidiaExamples, MigMixedParsesAndMigEntriesAreIgnoredOnWholeGpus) {
  ParseResult r = ParseFile(TestData("nvidia_time_slicing_mig_mixed.yaml"));
  ASSERT_TRUE(r.ok()) << Dump(r);
  EXPECT_EQ(r.config.flags.mig_strategy, "mixed");
  ASSERT_THAT(r.config.time_slicing.resources, SizeIs(4));
  EXPECT_EQ(r.config.time_slicing.resources[3].name, "nvidia.com/mig-3g.20gb");
  EXPECT_EQ(r.config.time_slicing.resources[3].replicas, 3);
  auto resolved = ResolveResources(r.config, {{"GPU-a", 0, "NVIDIA A100-SXM4-40GB"}});
  ASSERT_TRUE(resolved.ok()) << resolved.status();
  ASSERT_THAT(*resolved, SizeIs(1));
  EXPECT_EQ((*resolved)[0].name, "nvidia.com/gpu");
  EXPECT_EQ((*resolved)[0].replicas, 2);
}

TEST(NvidiaExamples, Mps) {
  ParseResult r = ParseFile(TestData("nvidia_mps.yaml"));
  ASSERT_TRUE(r.ok()) << Dump(r);
  ASSERT_TRUE(r.config.mps.has_value());
  ASSERT_THAT(r.config.mps->resources, SizeIs(1));
  EXPECT_EQ(r.config.mps->resources[0].name, "nvidia.com/gpu");
  EXPECT_EQ(r.config.mps->resources[0].replicas, 10);
  EXPECT_TRUE(r.config.time_slicing.resources.empty());
  EXPECT_EQ(r.config.Strategy(), SharingStrategy::kMps);
  EXPECT_FALSE(r.config.mps->fail_requests_set);
  EXPECT_TRUE(r.config.FailRequestsGreaterThanOne());  // NVIDIA's MPS default

  auto resolved = ResolveResources(r.config, {{"GPU-a", 0, "Tesla T4", 7, 5}});
  ASSERT_TRUE(resolved.ok()) << resolved.status();
  ASSERT_THAT(*resolved, SizeIs(1));
  EXPECT_EQ((*resolved)[0].name, "nvidia.com/gpu");
  EXPECT_EQ((*resolved)[0].replicas, 10);
  EXPECT_EQ((*resolved)[0].sharing, SharingStrategy::kMps);
  EXPECT_TRUE((*resolved)[0].enforce_memory);
}

TEST(NvidiaExamples, HelmChartShape) {
  ParseResult r = ParseFile(TestData("nvidia_helm_cdi.yaml"));
  ASSERT_TRUE(r.ok()) << Dump(r);
  const Flags& f = r.config.flags;
  EXPECT_EQ(f.mig_strategy, "single");
  EXPECT_FALSE(f.fail_on_init_error);
  EXPECT_EQ(f.mps_root, "/run/nvidia/mps");
  EXPECT_EQ(f.nvidia_driver_root, "/run/nvidia/driver");
  EXPECT_EQ(f.nvidia_dev_root, "/");
  EXPECT_TRUE(f.gds_enabled);
  EXPECT_TRUE(f.plugin.pass_device_specs);
  EXPECT_THAT(f.plugin.device_list_strategy,
              ElementsAre(DeviceListStrategy::kEnvvar, DeviceListStrategy::kCdiAnnotations));
  EXPECT_EQ(f.plugin.device_id_strategy, DeviceIdStrategy::kIndex);
  EXPECT_EQ(f.plugin.cdi_annotation_prefix, "nvidia.cdi.k8s.io/");
  EXPECT_EQ(f.plugin.nvidia_ctk_path, "/usr/local/nvidia/toolkit/nvidia-ctk");
  ASSERT_THAT(r.config.gpu_resources, SizeIs(1));
  // NVIDIA prefixes a bare name with nvidia.com/.
  EXPECT_EQ(r.config.gpu_resources[0].name, "nvidia.com/gpu");
}

TEST(NvidiaExamples, YamlOneOneBooleansAsGoYamlReadsThem) {
  ParseResult r = Parse("version: v1\nflags:\n  failOnInitError: no\n  gdsEnabled: on\n");
  ASSERT_TRUE(r.ok()) << Dump(r);
  EXPECT_FALSE(r.config.flags.fail_on_init_error);
  EXPECT_TRUE(r.config.flags.gds_enabled);
}

TEST(NvidiaExamples, OtherSectionsNvidiaAccepts) {
  ParseResult r = Parse(R"(version: v1
flags:
  gdrcopyEnabled: true
  plugin: {kubeletSocket: /var/lib/kubelet/device-plugins/kubelet.sock, cdiFeatureFlags: x}
imex: {channelIDs: [0], required: true}
health:
  disabled: false
  eventTypes: [EventTypeXidCriticalError]
  ignoredXIDs: [13, 31]
  criticalXIDs: [79]
)");
  ASSERT_TRUE(r.ok()) << Dump(r);
  EXPECT_TRUE(r.config.flags.gdrcopy_enabled);
  EXPECT_THAT(r.config.imex.channel_ids, ElementsAre(0));
  EXPECT_TRUE(r.config.imex.required);
  EXPECT_THAT(r.config.health.ignored_xids, ElementsAre(13u, 31u));
  EXPECT_FALSE(r.config.health.critical_xids_all);
  EXPECT_THAT(r.config.health.critical_xids, ElementsAre(79u));
}

// ---- devices, names, patterns ----

TEST(Devices, AllCountAndListForms) {
  ParseResult r = Parse(R"(version: v1
sharing:
  timeSlicing:
    resources:
    - {name: gpu, replicas: 2, devices: all}
    - {name: gpu, replicas: 2, devices: 3}
    - name: gpu
      replicas: 2
      devices: [0, "1", "0:1", GPU-8f9e6f6c-1b2d-4c5e-9a0b-1c2d3e4f5a6b, MIG-GPU-8f9e6f6c-1b2d-4c5e-9a0b-1c2d3e4f5a6b/3/0, MIG-8f9e6f6c1b2d4c5e9a0b1c2d3e4f5a6b]
)");
  ASSERT_TRUE(r.ok()) << Dump(r);
  const auto& res = r.config.time_slicing.resources;
  EXPECT_TRUE(res[0].devices.all);
  EXPECT_FALSE(res[1].devices.all);
  EXPECT_EQ(res[1].devices.count, 3);
  EXPECT_THAT(res[2].devices.ids,
              ElementsAre("0", "1", "0:1", "GPU-8f9e6f6c-1b2d-4c5e-9a0b-1c2d3e4f5a6b",
                          "MIG-GPU-8f9e6f6c-1b2d-4c5e-9a0b-1c2d3e4f5a6b/3/0",
                          "MIG-8f9e6f6c1b2d4c5e9a0b1c2d3e4f5a6b"));
}

TEST(Devices, BadForms) {
  auto err = [](const std::string& devices) {
    return OneError(
        "version: v1\nsharing:\n  timeSlicing:\n    resources:\n"
        "    - name: gpu\n      replicas: 2\n      devices: " +
        devices + "\n");
  };
  ConfigError e = err("some");
  EXPECT_EQ(e.path, "sharing.timeSlicing.resources[0].devices");
  EXPECT_EQ(e.line, 7);
  EXPECT_EQ(e.column, 16);
  EXPECT_EQ(err("0").path, "sharing.timeSlicing.resources[0].devices");
  EXPECT_THAT(err("\"0\"").message, HasSubstr("a single device needs a list"));
  EXPECT_EQ(err("[0, GPU-nope]").path, "sharing.timeSlicing.resources[0].devices[1]");
  EXPECT_EQ(err("[-1]").path, "sharing.timeSlicing.resources[0].devices[0]");
  EXPECT_THAT(err("[0, 0]").message, HasSubstr("listed twice"));
  EXPECT_THAT(err("[]").message, HasSubstr("empty list"));
  EXPECT_EQ(err("{a: 1}").path, "sharing.timeSlicing.resources[0].devices");
}

TEST(ResourceNames, NvidiaPrefixAndRules) {
  EXPECT_EQ(*NormalizeResourceName("gpu"), "nvidia.com/gpu");
  EXPECT_EQ(*NormalizeResourceName("nvidia.com/gpu.shared"), "nvidia.com/gpu.shared");
  EXPECT_EQ(*NormalizeResourceName("mig-1g.5gb"), "nvidia.com/mig-1g.5gb");
  EXPECT_FALSE(NormalizeResourceName("example.com/gpu").ok());
  EXPECT_FALSE(NormalizeResourceName("nvidia.com/GPU").ok());
  EXPECT_FALSE(NormalizeResourceName("nvidia.com/-gpu").ok());
  EXPECT_FALSE(NormalizeResourceName("").ok());
  EXPECT_FALSE(NormalizeResourceName(std::string(60, 'a')).ok());  // > 63 with the prefix
  EXPECT_TRUE(NormalizeResourceName(std::string(52, 'a')).ok());   // exactly 63
}

TEST(ResourceNames, ErrorsCarryPathAndPosition) {
  ConfigError e = OneError(
      "version: v1\nsharing:\n  timeSlicing:\n    resources:\n    - name: nvidia.com/gpu\n"
      "      rename: Shared_GPU\n      replicas: 2\n");
  EXPECT_EQ(e.path, "sharing.timeSlicing.resources[0].rename");
  EXPECT_EQ(e.line, 6);
  EXPECT_EQ(e.column, 15);
}

TEST(Patterns, UnanchoredGlobAsNvidia) {
  EXPECT_TRUE(MatchesPattern("*", "Tesla T4"));
  EXPECT_TRUE(MatchesPattern("T4", "Tesla T4"));
  EXPECT_TRUE(MatchesPattern("*A100*", "NVIDIA A100-SXM4-40GB"));
  EXPECT_TRUE(MatchesPattern("A100*40GB", "NVIDIA A100-SXM4-40GB"));
  EXPECT_FALSE(MatchesPattern("A100*80GB", "NVIDIA A100-SXM4-40GB"));
  EXPECT_FALSE(MatchesPattern("H100", "NVIDIA A100-SXM4-40GB"));
  EXPECT_TRUE(MatchesPattern("", "anything"));
}

// ---- each error class, with its exact position ----

TEST(Errors, UnknownKeyWithSuggestion) {
  ConfigError e = OneError("version: v1\nflags:\n  migStrategi: none\n");
  EXPECT_EQ(e.path, "flags.migStrategi");
  EXPECT_EQ(e.line, 3);
  EXPECT_EQ(e.column, 3);
  EXPECT_THAT(e.message, HasSubstr("did you mean \"migStrategy\""));
}

TEST(Errors, UnknownKeyListsValidKeys) {
  ConfigError e = OneError("version: v1\nsharing:\n  spatial: {}\n");
  EXPECT_EQ(e.path, "sharing.spatial");
  EXPECT_THAT(e.message, HasSubstr("timeSlicing, mps"));
}

TEST(Errors, CaseMistake) {
  ConfigError e = OneError("version: v1\nflags:\n  plugin:\n    deviceIdStrategy: uuid\n");
  EXPECT_EQ(e.path, "flags.plugin.deviceIdStrategy");
  EXPECT_EQ(e.line, 4);
  EXPECT_EQ(e.column, 5);
  EXPECT_THAT(e.message, HasSubstr("case-sensitive; write \"deviceIDStrategy\""));
}

TEST(Errors, MisplacedKeySaysWhereItBelongs) {
  ConfigError e = OneError("version: v1\nflags:\n  renameByDefault: true\n");
  EXPECT_EQ(e.path, "flags.renameByDefault");
  EXPECT_EQ(e.line, 3);
  EXPECT_EQ(e.column, 3);
  EXPECT_THAT(e.message, HasSubstr("belongs under sharing.timeSlicing or sharing.mps"));

  // Within a sharing section, the key's place in that same section.
  for (std::string section : {"sharing.timeSlicing", "sharing.mps"}) {
    e = OneError("version: v1\nsharing:\n  " + section.substr(8) +
                 ":\n    replicas: 4\n    resources:\n    - {name: gpu, replicas: 2}\n");
    EXPECT_EQ(e.path, section + ".replicas");
    EXPECT_EQ(e.message, "\"replicas\" does not belong under " + section + "; it belongs under " +
                             section + ".resources[]");
  }

  e = OneError("version: v1\nmigStrategy: none\n");
  EXPECT_EQ(e.path, "migStrategy");
  EXPECT_THAT(e.message, HasSubstr("belongs under flags"));
}

TEST(Errors, WrongTypes) {
  ConfigError e = OneError("version: v1\nflags:\n  failOnInitError: \"true\"\n");
  EXPECT_EQ(e.path, "flags.failOnInitError");
  EXPECT_EQ(e.line, 3);
  EXPECT_EQ(e.column, 20);
  EXPECT_THAT(e.message, HasSubstr("expected true or false"));
  EXPECT_THAT(e.message, HasSubstr("remove the quotes"));

  e = OneError("version: v1\nflags:\n  migStrategy: [none]\n");
  EXPECT_EQ(e.path, "flags.migStrategy");
  EXPECT_THAT(e.message, HasSubstr("expected a string, got a list"));

  e = OneError("version: v1\nflags:\n  plugin: true\n");
  EXPECT_EQ(e.path, "flags.plugin");
  EXPECT_THAT(e.message, HasSubstr("expected a mapping"));

  e = OneError("version: v1\nflags:\n  nvidiaDriverRoot:\n");
  EXPECT_EQ(e.path, "flags.nvidiaDriverRoot");
  EXPECT_EQ(e.line, 3);
  EXPECT_THAT(e.message, HasSubstr("got no value"));

  e = OneError(
      "version: v1\nsharing:\n  timeSlicing:\n    resources:\n"
      "    - {name: gpu, replicas: 2.5}\n");
  EXPECT_EQ(e.path, "sharing.timeSlicing.resources[0].replicas");
  EXPECT_EQ(e.line, 5);
  EXPECT_EQ(e.column, 29);
}

TEST(Errors, Replicas) {
  auto err = [](const std::string& replicas) {
    return OneError(
        "version: v1\nsharing:\n  timeSlicing:\n    resources:\n"
        "    - name: gpu\n      replicas: " +
        replicas + "\n");
  };
  ConfigError e = err("0");
  EXPECT_EQ(e.path, "sharing.timeSlicing.resources[0].replicas");
  EXPECT_EQ(e.line, 6);
  EXPECT_EQ(e.column, 17);
  EXPECT_THAT(e.message, HasSubstr("between 1 and 4096, got 0"));
  EXPECT_THAT(err("-3").message, HasSubstr("got -3"));
  EXPECT_THAT(err("5000").message, HasSubstr("got 5000"));
  EXPECT_THAT(err("99999999999999999999999").message, HasSubstr("between 1 and"));
  EXPECT_THAT(err("\"4\"").message, HasSubstr("remove the quotes"));
}

TEST(Errors, ReplicasOneMeansUnshared) {
  ParseResult r = Parse(
      "version: v1\nsharing:\n  timeSlicing:\n    resources:\n    - {name: gpu, replicas: 1}\n");
  ASSERT_TRUE(r.ok()) << Dump(r);
  auto resolved = ResolveResources(r.config, {{"GPU-a", 0, "T4"}});
  ASSERT_TRUE(resolved.ok());
  EXPECT_EQ((*resolved)[0].replicas, 1);
  EXPECT_FALSE((*resolved)[0].enforce_memory);
}

TEST(Errors, MissingRequiredKeys) {
  ParseResult r =
      Parse("version: v1\nsharing:\n  timeSlicing:\n    resources:\n    - devices: all\n");
  ASSERT_THAT(r.errors, SizeIs(2)) << Dump(r);
  EXPECT_EQ(r.errors[0].path, "sharing.timeSlicing.resources[0]");
  EXPECT_EQ(r.errors[0].line, 5);
  EXPECT_EQ(r.errors[0].column, 7);
  EXPECT_THAT(r.errors[0].message, HasSubstr("missing \"name\""));
  EXPECT_THAT(r.errors[1].message, HasSubstr("missing \"replicas\""));

  ConfigError e = OneError("version: v1\nsharing:\n  timeSlicing:\n    renameByDefault: true\n");
  EXPECT_EQ(e.path, "sharing.timeSlicing");
  EXPECT_THAT(e.message, HasSubstr("no resources"));

  e = OneError("version: v1\nresources:\n  gpus:\n  - pattern: \"*\"\n");
  EXPECT_EQ(e.path, "resources.gpus[0]");
  EXPECT_THAT(e.message, HasSubstr("missing \"name\""));
}

TEST(Errors, UnknownStrategies) {
  ConfigError e = OneError("version: v1\nflags:\n  migStrategy: both\n");
  EXPECT_EQ(e.path, "flags.migStrategy");
  EXPECT_EQ(e.line, 3);
  EXPECT_EQ(e.column, 16);
  EXPECT_THAT(e.message, HasSubstr("none, single, mixed"));

  e = OneError("version: v1\nflags:\n  plugin:\n    deviceListStrategy: [envvar, mounts]\n");
  EXPECT_EQ(e.path, "flags.plugin.deviceListStrategy[1]");
  EXPECT_EQ(e.line, 4);
  EXPECT_EQ(e.column, 34);
  EXPECT_THAT(e.message, HasSubstr("envvar, volume-mounts, cdi-annotations, cdi-cri"));

  e = OneError("version: v1\nflags:\n  plugin:\n    deviceIDStrategy: serial\n");
  EXPECT_EQ(e.path, "flags.plugin.deviceIDStrategy");
  EXPECT_THAT(e.message, HasSubstr("uuid, index"));

  e = OneError("version: v1\nflags:\n  deviceDiscoveryStrategy: magic\n");
  EXPECT_EQ(e.path, "flags.deviceDiscoveryStrategy");
}

TEST(Errors, DeviceListStrategyStringOrList) {
  ParseResult r = Parse("version: v1\nflags:\n  plugin:\n    deviceListStrategy: volume-mounts\n");
  ASSERT_TRUE(r.ok()) << Dump(r);
  EXPECT_THAT(r.config.flags.plugin.device_list_strategy,
              ElementsAre(DeviceListStrategy::kVolumeMounts));
  r = Parse("version: v1\nflags:\n  plugin:\n    deviceListStrategy: [cdi-cri, envvar, cdi-cri]\n");
  ASSERT_TRUE(r.ok()) << Dump(r);
  EXPECT_THAT(r.config.flags.plugin.device_list_strategy,
              ElementsAre(DeviceListStrategy::kCdiCri, DeviceListStrategy::kEnvvar));
  EXPECT_THAT(OneError("version: v1\nflags:\n  plugin:\n    deviceListStrategy: []\n").message,
              HasSubstr("empty list"));
}

TEST(Errors, DuplicateKey) {
  ParseResult r = Parse("version: v1\nflags:\n  migStrategy: none\n  migStrategy: single\n");
  ASSERT_THAT(r.errors, SizeIs(1)) << Dump(r);
  EXPECT_EQ(r.errors[0].path, "flags.migStrategy");
  EXPECT_EQ(r.errors[0].line, 4);
  EXPECT_EQ(r.errors[0].column, 3);
  EXPECT_THAT(r.errors[0].message, HasSubstr("first at line 3"));
}

TEST(Errors, Version) {
  ConfigError e = OneError("flags:\n  migStrategy: none\n");
  EXPECT_EQ(e.path, "version");
  EXPECT_EQ(e.line, 1);
  EXPECT_THAT(e.message, HasSubstr("missing"));

  e = OneError("version: v2\n");
  EXPECT_EQ(e.path, "version");
  EXPECT_EQ(e.line, 1);
  EXPECT_EQ(e.column, 10);
  EXPECT_THAT(e.message, HasSubstr("unknown version \"v2\""));

  e = OneError("version: 1\n");
  EXPECT_THAT(e.message, HasSubstr("expected a string, got the number 1"));

  EXPECT_EQ(OneError("").path, "version");
}

TEST(Errors, Durations) {
  ParseResult r = Parse("version: v1\nflags:\n  gfd:\n    sleepInterval: 1m30s\n");
  ASSERT_TRUE(r.ok()) << Dump(r);
  EXPECT_EQ(r.config.flags.gfd.sleep_interval, std::chrono::seconds(90));
  ConfigError e = OneError("version: v1\nflags:\n  gfd:\n    sleepInterval: 60\n");
  EXPECT_EQ(e.path, "flags.gfd.sleepInterval");
  EXPECT_THAT(e.message, HasSubstr("needs a unit"));
  e = OneError("version: v1\nflags:\n  gfd:\n    sleepInterval: soon\n");
  EXPECT_THAT(e.message, HasSubstr("invalid duration"));
}

TEST(Errors, TimeSlicingNameMustBeAResource) {
  ConfigError e = OneError(
      "version: v1\nsharing:\n  timeSlicing:\n    resources:\n    - name: nvidia.com/gpus\n"
      "      replicas: 2\n");
  EXPECT_EQ(e.path, "sharing.timeSlicing.resources[0].name");
  EXPECT_EQ(e.line, 5);
  EXPECT_EQ(e.column, 13);
  EXPECT_THAT(e.message, HasSubstr("not a resource of this config"));
}

TEST(Errors, AllErrorsReportedInFileOrder) {
  ParseResult r = Parse(R"(version: v1
flags:
  migStrategy: some
  renameByDefault: true
  plugin:
    deviceIDStrategy: serial
sharing:
  timeSlicing:
    resources:
    - name: nvidia.com/gpu
      replicas: 0
    - name: nvidia.com/gpu
      replicas: 2
      replicas: 3
      colour: blue
)");
  std::vector<std::string> paths;
  std::vector<int> lines;
  for (const ConfigError& e : r.errors) {
    paths.push_back(e.path);
    lines.push_back(e.line);
  }
  EXPECT_THAT(paths, ElementsAre("flags.migStrategy", "flags.renameByDefault",
                                 "flags.plugin.deviceIDStrategy",
                                 "sharing.timeSlicing.resources[0].replicas",
                                 "sharing.timeSlicing.resources[1].replicas",
                                 "sharing.timeSlicing.resources[1].colour"));
  EXPECT_THAT(lines, ElementsAre(3, 4, 6, 11, 14, 15));
}

TEST(Errors, FormatError) {
  EXPECT_EQ(FormatError("a.yaml", {"flags.x", 3, 5, "bad"}), "a.yaml:3:5: flags.x: bad");
  EXPECT_EQ(FormatError("a.yaml", {"", 0, 0, "cannot open a.yaml"}), "a.yaml: cannot open a.yaml");
}

// ---- malformed input: an error, never a crash ----

TEST(Malformed, UnclosedBracket) {
  ParseResult r = Parse("version: v1\nsharing:\n  timeSlicing:\n    resources: [{name: gpu\n");
  ASSERT_THAT(r.errors, SizeIs(1));
  EXPECT_THAT(r.errors[0].message, HasSubstr("invalid YAML"));
  EXPECT_GT(r.errors[0].line, 0);
}

TEST(Malformed, TabIndentation) {
  ParseResult r = Parse("version: v1\nflags:\n\tmigStrategy: none\n");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.errors[0].line, 3);
}

TEST(Malformed, BinaryGarbage) {
  std::string garbage;
  for (int i = 0; i < 4096; ++i) garbage.push_back(static_cast<char>((i * 7919) % 251 + 1));
  EXPECT_FALSE(Parse(garbage).ok());
  EXPECT_FALSE(Parse(std::string("version: v1\n\0\x01\x02", 15)).ok());
  EXPECT_FALSE(Parse("\xff\xfe\x00\x01").ok());
}

TEST(Malformed, HugeFileIsRefusedBeforeParsing) {
  std::string huge = "version: v1\n# " + std::string(kMaxConfigBytes, 'x') + "\n";
  ParseResult r = Parse(huge);
  ASSERT_THAT(r.errors, SizeIs(1));
  EXPECT_THAT(r.errors[0].message, HasSubstr("at most"));
}

TEST(Malformed, LargeButAllowedFileParses) {
  std::string text = "version: v1\nsharing:\n  timeSlicing:\n    resources:\n";
  for (int i = 0; i < 20000; ++i)
    text += "    - {name: gpu, replicas: 2, devices: [" + std::to_string(i) + "]}\n";
  ParseResult r = Parse(text);
  ASSERT_TRUE(r.ok()) << Dump(r).substr(0, 500);
  EXPECT_THAT(r.config.time_slicing.resources, SizeIs(20000));
}

TEST(Malformed, DeepNesting) {
  std::string deep = "version: v1\nflags: " + std::string(100000, '[') + "\n";
  EXPECT_FALSE(Parse(deep).ok());
  std::string deep_map = "version: v1\nx:";
  for (int i = 0; i < 5000; ++i) deep_map += " {a:";
  EXPECT_FALSE(Parse(deep_map).ok());
}

TEST(Malformed, TopLevelNotAMapping) {
  ConfigError e = OneError("- version: v1\n");
  EXPECT_EQ(e.path, "");
  EXPECT_THAT(e.message, HasSubstr("expected a mapping at the top level"));
  EXPECT_THAT(OneError("just text").message, HasSubstr("expected a mapping"));
}

TEST(Malformed, MultipleDocuments) {
  ConfigError e = OneError("version: v1\n---\nversion: v1\n");
  EXPECT_THAT(e.message, HasSubstr("more than one YAML document"));
}

TEST(Malformed, AliasesAndNonScalarKeys) {
  ParseResult r = Parse("version: v1\nx: &a [1, 2]\ny: *a\n? [k]\n: v\n");
  EXPECT_THAT(r.errors, SizeIs(3)) << Dump(r);
}

TEST(Malformed, MissingFile) {
  ParseResult r = ParseFile("/nonexistent/config.yaml");
  ASSERT_THAT(r.errors, SizeIs(1));
  EXPECT_EQ(r.errors[0].line, 0);
  EXPECT_THAT(r.errors[0].message, HasSubstr("cannot open"));
}

}  // namespace
}  // namespace slicer::config
