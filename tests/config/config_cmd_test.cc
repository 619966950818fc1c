// `slicer config validate`: in-process through ConfigMain, and through the built binary when the
// test runner names it (SLICER_BIN).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "src/cli/commands.h"

namespace slicer::cli {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

std::string TestData(const std::string& name) {
  return std::string(SLICER_CONFIG_TESTDATA) + "/" + name;
}

struct Outcome {
  int status;
  std::string out, err;
};

Outcome Main(std::vector<std::string> args) {
  args.insert(args.begin(), "config");
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  testing::internal::CaptureStdout();
  testing::internal::CaptureStderr();
  int status = ConfigMain(static_cast<int>(argv.size()), argv.data());
  std::fflush(stdout);
  std::fflush(stderr);
  Outcome r{status, testing::internal::GetCapturedStdout(), testing::internal::GetCapturedStderr()};
  return r;
}

std::string WriteTemp(const std::string& text) {
  std::string path = testing::TempDir() + "/cfg_" + std::to_string(::getpid()) + "_" +
                     std::to_string(std::rand()) + ".yaml";
  std::ofstream(path) << text;
  return path;
}

// Valid as a file, refused by the plugin on a node with more GPUs than the entry selects (the
// others would advertise the same name unshared): validate says so.
TEST(ConfigMain, ASharedSubsetUnderItsGpusOwnNameGetsAHint) {
  std::string path = WriteTemp(
      "version: v1\nsharing:\n  mps:\n    resources:\n    - name: nvidia.com/gpu\n"
      "      devices: [0, 1]\n      replicas: 3\n");
  Outcome r = Main({"validate", path});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("on a node with GPUs outside its devices, those would advertise "
                               "nvidia.com/gpu unshared beside its shares and the plugin refuses "
                               "the config (rename: nvidia.com/gpu.shared)"));
  std::string renamed = WriteTemp(
      "version: v1\nsharing:\n  mps:\n    resources:\n    - name: nvidia.com/gpu\n"
      "      rename: nvidia.com/gpu.mps\n      devices: [0, 1]\n      replicas: 3\n");
  r = Main({"validate", renamed});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_THAT(r.out, testing::Not(HasSubstr("outside its devices")));
}

TEST(ConfigMain, ValidFilesPrintSummaryAndExitZero) {
  std::string split = TestData("gpu_slicer_split.yaml");
  std::string ts = TestData("nvidia_time_slicing.yaml");
  Outcome r = Main({"validate", split, ts});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, split +
                       ": ok (1 resource: nvidia.com/gpu.shared (from nvidia.com/gpu, 4 replicas, "
                       "devices 0))\n" +
                       ts + ": ok (1 resource: nvidia.com/gpu (10 replicas))\n");
  EXPECT_EQ(r.err, "");
}

TEST(ConfigMain, NoSharingSummary) {
  Outcome r = Main({"validate", TestData("nvidia_readme_flags.yaml")});
  EXPECT_EQ(r.status, 0);
  EXPECT_THAT(r.out,
              HasSubstr(": ok (1 resource: nvidia.com/gpu (GPUs matching \"*\", unshared))"));
}

TEST(ConfigMain, ErrorsAsFileLineColPath) {
  std::string bad = WriteTemp(
      "version: v1\nflags:\n  renameByDefault: true\nsharing:\n  timeSlicing:\n    resources:\n"
      "    - {name: gpu, replicas: 0}\n");
  std::string good = TestData("nvidia_time_slicing.yaml");
  Outcome r = Main({"validate", bad, good});
  EXPECT_EQ(r.status, 1);
  EXPECT_THAT(r.err, HasSubstr(bad + ":3:3: flags.renameByDefault: \"renameByDefault\" does not "
                                     "belong under flags; it belongs under sharing.timeSlicing or "
                                     "sharing.mps\n"));
  EXPECT_THAT(r.err, HasSubstr(bad + ":7:29: sharing.timeSlicing.resources[0].replicas: must be "
                                     "between 1 and 4096, got 0\n"));
  EXPECT_THAT(r.out, StartsWith(good + ": ok"));  // the other files are still checked
}

TEST(ConfigMain, MpsSummary) {
  std::string mps = TestData("nvidia_mps.yaml");
  Outcome r = Main({"validate", mps});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, mps +
                       ": ok (1 resource: nvidia.com/gpu (10 MPS replicas); requests for more "
                       "than 1 replica fail (failRequestsGreaterThanOne))\n");

  std::string relaxed = WriteTemp(
      "version: v1\nsharing:\n  mps:\n    failRequestsGreaterThanOne: false\n"
      "    renameByDefault: true\n    resources:\n    - {name: gpu, replicas: 4, devices: [0]}\n");
  r = Main({"validate", relaxed});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, relaxed +
                       ": ok (1 resource: nvidia.com/gpu.shared (from nvidia.com/gpu, 4 MPS "
                       "replicas, devices 0))\n");
}

TEST(ConfigMain, MpsErrorsAsFileLineColPath) {
  std::string both = TestData("mps_and_time_slicing.yaml");
  std::string mixed = TestData("mps_mig_mixed.yaml");
  std::string entries = WriteTemp(
      "version: v1\nsharing:\n  mps:\n    resources:\n"
      "    - {name: mig-1g.5gb, replicas: 2}\n"
      "    - {name: gpu, replicas: 49, devices: [\"0:1\"]}\n");
  Outcome r = Main({"validate", both, mixed, entries});
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_THAT(r.err, HasSubstr(both + ":8:3: sharing.mps: sharing.mps and sharing.timeSlicing "
                                      "(line 4) cannot be combined in one config: NVIDIA's plugin "
                                      "silently uses MPS and ignores timeSlicing."));
  EXPECT_THAT(r.err, HasSubstr(mixed + ":6:3: sharing.mps: MPS is not supported for MIG devices, "
                                       "and flags.migStrategy is mixed (line 4)"));
  EXPECT_THAT(r.err, HasSubstr(entries + ":5:14: sharing.mps.resources[0].name: "
                                         "\"nvidia.com/mig-1g.5gb\" is a MIG resource"));
  EXPECT_THAT(r.err, HasSubstr(entries + ":6:29: sharing.mps.resources[1].replicas: got 49; an MPS "
                                         "server accepts at most 48 clients per GPU"));
  EXPECT_THAT(r.err, HasSubstr(entries + ":6:43: sharing.mps.resources[1].devices[0]: 0:1 is a MIG "
                                         "device"));
}

TEST(ConfigMain, MissingFile) {
  Outcome r = Main({"validate", "/nonexistent.yaml"});
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.err, "/nonexistent.yaml: cannot open /nonexistent.yaml\n");
}

TEST(ConfigMain, UsageErrors) {
  EXPECT_EQ(Main({}).status, 2);
  EXPECT_EQ(Main({"validate"}).status, 2);
  EXPECT_EQ(Main({"check", "x.yaml"}).status, 2);
  Outcome r = Main({"validate", "--strict", "x.yaml"});
  EXPECT_EQ(r.status, 2);
  EXPECT_THAT(r.err, HasSubstr("unknown flag \"--strict\""));
}

TEST(ConfigMain, Help) {
  Outcome r = Main({"--help"});
  EXPECT_EQ(r.status, 0);
  EXPECT_THAT(r.out, HasSubstr("usage: slicer config validate FILE..."));
  EXPECT_EQ(Main({"validate", "-h"}).status, 0);
}

// The real binary, when it is built.
Outcome Binary(const std::vector<std::string>& args) {
  const char* bin = std::getenv("SLICER_BIN");
  std::string cmd = std::string(bin) + " config";
  for (const std::string& a : args) cmd += " '" + a + "'";
  cmd += " 2>&1";
  Outcome r{0, "", ""};
  FILE* p = popen(cmd.c_str(), "r");
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  int st = pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

TEST(ConfigBinary, ValidateThroughSlicer) {
  const char* bin = std::getenv("SLICER_BIN");
  if (bin == nullptr || access(bin, X_OK) != 0) GTEST_SKIP() << "SLICER_BIN not built";
  Outcome ok = Binary({"validate", TestData("nvidia_time_slicing.yaml")});
  EXPECT_EQ(ok.status, 0) << ok.out;
  EXPECT_THAT(ok.out, HasSubstr(": ok (1 resource: nvidia.com/gpu (10 replicas))"));
  Outcome mps = Binary({"validate", TestData("nvidia_mps.yaml")});
  EXPECT_EQ(mps.status, 0) << mps.out;
  EXPECT_THAT(mps.out, HasSubstr(": ok (1 resource: nvidia.com/gpu (10 MPS replicas)"));
  Outcome bad = Binary({"validate", TestData("mps_mig_mixed.yaml")});
  EXPECT_EQ(bad.status, 1);
  EXPECT_THAT(bad.out,
              HasSubstr("mps_mig_mixed.yaml:6:3: sharing.mps: MPS is not supported for MIG "
                        "devices"));
  EXPECT_EQ(Binary({"validate"}).status, 2);
}

}  // namespace
}  // namespace slicer::cli
