// The NVML loader against the fake libnvidia-ml.so.1 (tests/fakes/nvml/fake_nvml.cc).
//
// ctest runs NvmlTest.* with LD_LIBRARY_PATH=<fakes dir> (SLICER_FAKES_DIR, also compiled in), and
// NvmlNoLibraryTest.* with LD_LIBRARY_PATH pointing at an empty folder (tests/nvml/CMakeLists.txt).
// The fake reads SLICER_FAKE_NVML / SLICER_FAKE_NVML_EVENTS at nvmlInit, so each test sets them
// before Load().
#include "src/nvml/nvml.h"

#include <stdlib.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace slicer::nvml {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr const char* kGpus[] = {
    "GPU-00000000-0000-0000-0000-000000000000",
    "GPU-11111111-1111-1111-1111-111111111111",
    "GPU-22222222-2222-2222-2222-222222222222",
    "GPU-33333333-3333-3333-3333-333333333333",
};

LoadOptions Options(std::string driver_root, std::string dev_root = "",
                    std::string sys_root = "/") {
  LoadOptions o(std::move(driver_root));
  o.dev_root = std::move(dev_root);
  o.sys_root = std::move(sys_root);
  return o;
}

std::string FourT4s() {
  std::string yaml = "driverVersion: \"580.159.04\"\ndevices:\n";
  for (int i = 0; i < 4; ++i) {
    yaml += std::string("  - {uuid: ") + kGpus[i] +
            ", name: Tesla T4, memoryMiB: 15360, numaNode: " + std::to_string(i / 2) + "}\n";
  }
  return yaml;
}

class NvmlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/nvml-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    setenv("SLICER_FAKE_NVML", (dir_ + "/machine.yaml").c_str(), 1);
    setenv("SLICER_FAKE_NVML_EVENTS", events().c_str(), 1);
  }
  void TearDown() override {
    unsetenv("SLICER_FAKE_NVML");
    unsetenv("SLICER_FAKE_NVML_EVENTS");
    unsetenv("SLICER_FAKE_NVML_COMPUTE_MODE");
    unsetenv("SLICER_FAKE_NVML_NO_PERMISSION");
    fs::remove_all(dir_);
  }

  std::string events() const { return dir_ + "/events"; }

  void Write(const std::string& rel, const std::string& content) {
    fs::path p = fs::path(dir_) / rel;
    fs::create_directories(p.parent_path());
    std::ofstream(p) << content;
  }
  void Event(const std::string& line) { std::ofstream(events(), std::ios::app) << line << "\n"; }
  std::string Read(const std::string& rel) const {
    std::ifstream in(fs::path(dir_) / rel);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }

  std::unique_ptr<Nvml> MustLoad(LoadOptions options = {}) {
    absl::StatusOr<std::unique_ptr<Nvml>> nvml = Load(options);
    EXPECT_TRUE(nvml.ok()) << nvml.status();
    return nvml.ok() ? std::move(*nvml) : nullptr;
  }

  std::string dir_;
};

TEST_F(NvmlTest, DiscoversFourT4s) {
  Write("machine.yaml", FourT4s());
  auto nvml = MustLoad(Options("/", dir_));
  ASSERT_NE(nvml, nullptr);
  absl::StatusOr<System> system = nvml->Discover();
  ASSERT_TRUE(system.ok()) << system.status();
  EXPECT_EQ(system->driver_version, "580.159.04");
  EXPECT_EQ(system->cuda_driver_version, 13000);
  ASSERT_EQ(system->devices.size(), 4u);
  for (int i = 0; i < 4; ++i) {
    const Device& d = system->devices[i];
    SCOPED_TRACE(i);
    EXPECT_EQ(d.uuid, kGpus[i]);
    EXPECT_EQ(d.index, i);
    EXPECT_EQ(d.name, "Tesla T4");
    EXPECT_EQ(d.memory_bytes, 15360ull << 20);
    EXPECT_EQ(d.numa_node, i / 2);
    EXPECT_EQ(d.cc_major, 7);
    EXPECT_EQ(d.cc_minor, 5);
    EXPECT_EQ(d.minor_number, i);
    EXPECT_EQ(d.pci_bus_id, "00000000:" + std::to_string(10 + i) + ":00.0");
    EXPECT_THAT(d.device_paths, ElementsAre(dir_ + "/dev/nvidia" + std::to_string(i)));
  }
  EXPECT_TRUE(system->control_device_paths.empty());
}

TEST_F(NvmlTest, ReportsTheControlDevicesThatExist) {
  Write("machine.yaml", FourT4s());
  Write("dev/nvidia-uvm", "");
  Write("dev/nvidiactl", "");
  auto nvml = MustLoad(Options("/", dir_ + "/"));
  ASSERT_NE(nvml, nullptr);
  absl::StatusOr<System> system = nvml->Discover();
  ASSERT_TRUE(system.ok()) << system.status();
  EXPECT_THAT(system->control_device_paths,
              ElementsAre(dir_ + "/dev/nvidiactl", dir_ + "/dev/nvidia-uvm"));
}

TEST_F(NvmlTest, DevRootDefaultsToADriverRootThatHasDeviceNodes) {
  Write("machine.yaml", FourT4s());
  Write("driver/dev/nvidiactl", "");
  auto nvml = MustLoad(Options(dir_ + "/driver"));
  ASSERT_NE(nvml, nullptr);
  absl::StatusOr<System> system = nvml->Discover();
  ASSERT_TRUE(system.ok()) << system.status();
  EXPECT_THAT(system->control_device_paths, ElementsAre(dir_ + "/driver/dev/nvidiactl"));
  EXPECT_THAT(system->devices[2].device_paths, ElementsAre(dir_ + "/driver/dev/nvidia2"));
}

TEST_F(NvmlTest, NumaNodeFromSysfsWhenTheDriverCannotTell) {
  Write("machine.yaml",
        "devices:\n"
        "  - {uuid: GPU-a, pciBusId: 00000000:3B:00.0, minorNumber: 7, computeCapability: 9.0}\n"
        "  - uuid: GPU-b\n"
        "    pciBusId: 00000000:AF:00.0\n");
  Write("sys/bus/pci/devices/0000:3b:00.0/numa_node", "1\n");
  Write("sys/bus/pci/devices/0000:af:00.0/numa_node", "-1\n");
  auto nvml = MustLoad(Options("/", "/", dir_));
  ASSERT_NE(nvml, nullptr);
  absl::StatusOr<System> system = nvml->Discover();
  ASSERT_TRUE(system.ok()) << system.status();
  ASSERT_EQ(system->devices.size(), 2u);
  EXPECT_EQ(system->devices[0].numa_node, 1);
  EXPECT_EQ(system->devices[0].minor_number, 7);
  EXPECT_EQ(system->devices[0].cc_major, 9);
  EXPECT_EQ(system->devices[0].cc_minor, 0);
  EXPECT_THAT(system->devices[0].device_paths, ElementsAre("/dev/nvidia7"));
  EXPECT_EQ(system->devices[1].numa_node, -1);
  EXPECT_EQ(system->devices[1].minor_number, 1);
}

TEST_F(NvmlTest, XidIsDeliveredAndProbeFailsUntilRecover) {
  Write("machine.yaml", FourT4s());
  Write("events", "");
  auto nvml = MustLoad();
  ASSERT_NE(nvml, nullptr);
  auto none = nvml->WaitForXid(std::chrono::milliseconds(0));  // registers
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_FALSE(none->has_value());
  EXPECT_TRUE(nvml->Probe(kGpus[1]).ok());

  Event("this is not an event");  // ignored
  Event(std::string("xid ") + kGpus[1] + " 79");
  auto event = nvml->WaitForXid(std::chrono::seconds(5));
  ASSERT_TRUE(event.ok()) << event.status();
  ASSERT_TRUE(event->has_value());
  EXPECT_EQ((*event)->uuid, kGpus[1]);
  EXPECT_EQ((*event)->xid, 79u);

  absl::Status probe = nvml->Probe(kGpus[1]);
  EXPECT_EQ(probe.code(), absl::StatusCode::kUnavailable) << probe;
  EXPECT_THAT(probe.message(), HasSubstr("GPU is lost"));
  EXPECT_THAT(probe.message(), HasSubstr(kGpus[1]));
  EXPECT_TRUE(nvml->Probe(kGpus[0]).ok());
  absl::StatusOr<System> system = nvml->Discover();
  EXPECT_EQ(system.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(system.status().message(), HasSubstr("GPU index 1"));

  Event(std::string("recover ") + kGpus[1]);
  EXPECT_TRUE(nvml->Probe(kGpus[1]).ok());
  EXPECT_TRUE(nvml->Discover().ok());
}

TEST_F(NvmlTest, EventsFileMayAppearLater) {
  Write("machine.yaml", FourT4s());
  auto nvml = MustLoad();
  ASSERT_NE(nvml, nullptr);
  auto none = nvml->WaitForXid(std::chrono::milliseconds(20));
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_FALSE(none->has_value());
  Event(std::string("xid ") + kGpus[3] + " 48");
  auto event = nvml->WaitForXid(std::chrono::seconds(5));
  ASSERT_TRUE(event.ok() && event->has_value());
  EXPECT_EQ((*event)->uuid, kGpus[3]);
  EXPECT_EQ((*event)->xid, 48u);
}

TEST_F(NvmlTest, LinesPresentAtInitAreStateNotEvents) {
  Write("machine.yaml", FourT4s());
  Write("events", std::string("xid ") + kGpus[2] + " 79\n");
  auto nvml = MustLoad();
  ASSERT_NE(nvml, nullptr);
  EXPECT_EQ(nvml->Probe(kGpus[2]).code(), absl::StatusCode::kUnavailable);
  auto none = nvml->WaitForXid(std::chrono::milliseconds(50));
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_FALSE(none->has_value());
}

TEST_F(NvmlTest, WaitForXidTimesOut) {
  Write("machine.yaml", FourT4s());
  Write("events", "");
  auto nvml = MustLoad();
  ASSERT_NE(nvml, nullptr);
  ASSERT_TRUE(nvml->WaitForXid(std::chrono::milliseconds(0)).ok());
  auto start = std::chrono::steady_clock::now();
  auto none = nvml->WaitForXid(std::chrono::milliseconds(200));
  auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_FALSE(none->has_value());
  EXPECT_GE(elapsed, std::chrono::milliseconds(190));
  EXPECT_LT(elapsed, std::chrono::milliseconds(1500));
}

TEST_F(NvmlTest, GpuWithoutEventSupportIsSkippedButStillProbed) {
  Write("machine.yaml",
        "devices:\n"
        "  - {uuid: GPU-a}\n"
        "  - {uuid: GPU-b, xidEvents: false}\n");
  Write("events", "");
  auto nvml = MustLoad();
  ASSERT_NE(nvml, nullptr);
  ASSERT_TRUE(nvml->WaitForXid(std::chrono::milliseconds(0)).ok());
  Event("xid GPU-b 79");
  auto none = nvml->WaitForXid(std::chrono::milliseconds(100));
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_FALSE(none->has_value());
  EXPECT_EQ(nvml->Probe("GPU-b").code(), absl::StatusCode::kUnavailable);
  Event("xid GPU-a 31");
  auto event = nvml->WaitForXid(std::chrono::seconds(5));
  ASSERT_TRUE(event.ok() && event->has_value());
  EXPECT_EQ((*event)->uuid, "GPU-a");
  EXPECT_EQ((*event)->xid, 31u);
}

TEST_F(NvmlTest, ProbeOfAnUnknownUuidIsNotFound) {
  Write("machine.yaml", FourT4s());
  auto nvml = MustLoad();
  ASSERT_NE(nvml, nullptr);
  absl::Status probe = nvml->Probe("GPU-nope");
  EXPECT_EQ(probe.code(), absl::StatusCode::kNotFound) << probe;
  EXPECT_THAT(probe.message(), HasSubstr("GPU-nope"));
}

TEST_F(NvmlTest, ComputeModeNamesAreNvidiaSmis) {
  EXPECT_EQ(ToString(ComputeMode::kDefault), "DEFAULT");
  EXPECT_EQ(ToString(ComputeMode::kExclusiveThread), "EXCLUSIVE_THREAD");
  EXPECT_EQ(ToString(ComputeMode::kProhibited), "PROHIBITED");
  EXPECT_EQ(ToString(ComputeMode::kExclusiveProcess), "EXCLUSIVE_PROCESS");
  EXPECT_EQ(ToString(static_cast<ComputeMode>(7)), "UNKNOWN");
}

TEST_F(NvmlTest, ComputeModeIsSetAndOutlivesTheLibrary) {
  Write("machine.yaml",
        "devices:\n"
        "  - {uuid: GPU-a}\n"
        "  - {uuid: GPU-b, computeMode: PROHIBITED}\n"
        "  - uuid: GPU-c\n"
        "    computeMode: EXCLUSIVE_PROCESS\n");
  auto nvml = MustLoad();
  ASSERT_NE(nvml, nullptr);
  EXPECT_EQ(nvml->GetComputeMode("GPU-a").value_or(ComputeMode::kProhibited),
            ComputeMode::kDefault);
  EXPECT_EQ(nvml->GetComputeMode("GPU-b").value_or(ComputeMode::kDefault),
            ComputeMode::kProhibited);
  EXPECT_EQ(nvml->GetComputeMode("GPU-c").value_or(ComputeMode::kDefault),
            ComputeMode::kExclusiveProcess);

  ASSERT_TRUE(nvml->SetComputeMode("GPU-a", ComputeMode::kExclusiveProcess).ok());
  ASSERT_TRUE(nvml->SetComputeMode("GPU-b", ComputeMode::kDefault).ok());
  EXPECT_EQ(nvml->GetComputeMode("GPU-a").value_or(ComputeMode::kDefault),
            ComputeMode::kExclusiveProcess);
  EXPECT_EQ(Read("machine.yaml.compute-mode"), "GPU-a EXCLUSIVE_PROCESS\nGPU-b DEFAULT\n");

  // Another Load() (as another process would) finds what was set, not the machine's defaults.
  nvml.reset();
  nvml = MustLoad();
  ASSERT_NE(nvml, nullptr);
  EXPECT_EQ(nvml->GetComputeMode("GPU-a").value_or(ComputeMode::kDefault),
            ComputeMode::kExclusiveProcess);
  EXPECT_EQ(nvml->GetComputeMode("GPU-b").value_or(ComputeMode::kProhibited),
            ComputeMode::kDefault);
  EXPECT_EQ(nvml->GetComputeMode("GPU-c").value_or(ComputeMode::kDefault),
            ComputeMode::kExclusiveProcess);
  ASSERT_TRUE(nvml->SetComputeMode("GPU-a", ComputeMode::kDefault).ok());
  EXPECT_EQ(Read("machine.yaml.compute-mode"), "GPU-b DEFAULT\nGPU-a DEFAULT\n");
}

TEST_F(NvmlTest, ComputeModeFileIsReadOnEveryCallAndKeepsForeignLines) {
  Write("machine.yaml", FourT4s());
  setenv("SLICER_FAKE_NVML_COMPUTE_MODE", (dir_ + "/modes").c_str(), 1);
  auto nvml = MustLoad();
  ASSERT_NE(nvml, nullptr);
  EXPECT_EQ(nvml->GetComputeMode(kGpus[3]).value_or(ComputeMode::kProhibited),
            ComputeMode::kDefault);
  // Written by "another process" after this one loaded the library.
  Write("modes", std::string(kGpus[3]) + " EXCLUSIVE_PROCESS\nnot a mode line\n");
  EXPECT_EQ(nvml->GetComputeMode(kGpus[3]).value_or(ComputeMode::kDefault),
            ComputeMode::kExclusiveProcess);
  ASSERT_TRUE(nvml->SetComputeMode(kGpus[0], ComputeMode::kProhibited).ok());
  EXPECT_EQ(Read("modes"), std::string(kGpus[3]) + " EXCLUSIVE_PROCESS\nnot a mode line\n" +
                               kGpus[0] + " PROHIBITED\n");
  EXPECT_FALSE(fs::exists(dir_ + "/machine.yaml.compute-mode"));
}

TEST_F(NvmlTest, SettingTheComputeModeWithoutPermissionIsDeniedWithAHint) {
  Write("machine.yaml", FourT4s());
  setenv("SLICER_FAKE_NVML_NO_PERMISSION", "1", 1);
  auto nvml = MustLoad();
  ASSERT_NE(nvml, nullptr);
  absl::Status s = nvml->SetComputeMode(kGpus[2], ComputeMode::kExclusiveProcess);
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied) << s;
  EXPECT_THAT(s.message(), HasSubstr("nvmlDeviceSetComputeMode"));
  EXPECT_THAT(s.message(), HasSubstr(kGpus[2]));
  EXPECT_THAT(s.message(), HasSubstr("EXCLUSIVE_PROCESS"));
  EXPECT_THAT(s.message(), HasSubstr("Insufficient Permissions"));
  EXPECT_THAT(s.message(), HasSubstr("CAP_SYS_ADMIN"));
  EXPECT_EQ(nvml->GetComputeMode(kGpus[2]).value_or(ComputeMode::kProhibited),
            ComputeMode::kDefault);
  EXPECT_FALSE(fs::exists(dir_ + "/machine.yaml.compute-mode"));
}

TEST_F(NvmlTest, ComputeModeOfALostGpuIsUnavailableUntilItRecovers) {
  Write("machine.yaml", FourT4s());
  auto nvml = MustLoad();
  ASSERT_NE(nvml, nullptr);
  Event(std::string("xid ") + kGpus[1] + " 79");
  absl::Status set = nvml->SetComputeMode(kGpus[1], ComputeMode::kExclusiveProcess);
  EXPECT_EQ(set.code(), absl::StatusCode::kUnavailable) << set;
  EXPECT_THAT(set.message(), HasSubstr("GPU is lost"));
  EXPECT_THAT(set.message(), HasSubstr(kGpus[1]));
  absl::StatusOr<ComputeMode> get = nvml->GetComputeMode(kGpus[1]);
  EXPECT_EQ(get.status().code(), absl::StatusCode::kUnavailable) << get.status();
  EXPECT_TRUE(nvml->SetComputeMode(kGpus[0], ComputeMode::kExclusiveProcess).ok());

  Event(std::string("recover ") + kGpus[1]);
  EXPECT_TRUE(nvml->SetComputeMode(kGpus[1], ComputeMode::kExclusiveProcess).ok());
  EXPECT_EQ(nvml->GetComputeMode(kGpus[1]).value_or(ComputeMode::kDefault),
            ComputeMode::kExclusiveProcess);
}

TEST_F(NvmlTest, ComputeModeOfAnUnknownUuidIsNotFound) {
  Write("machine.yaml", FourT4s());
  auto nvml = MustLoad();
  ASSERT_NE(nvml, nullptr);
  absl::StatusOr<ComputeMode> get = nvml->GetComputeMode("GPU-nope");
  EXPECT_EQ(get.status().code(), absl::StatusCode::kNotFound) << get.status();
  EXPECT_THAT(get.status().message(), HasSubstr("GPU-nope"));
  absl::Status set = nvml->SetComputeMode("GPU-nope", ComputeMode::kExclusiveProcess);
  EXPECT_EQ(set.code(), absl::StatusCode::kNotFound) << set;
  EXPECT_THAT(set.message(), HasSubstr("GPU-nope"));
}

TEST_F(NvmlTest, ExclusiveThreadCannotBeSet) {
  Write("machine.yaml", FourT4s());
  auto nvml = MustLoad();
  ASSERT_NE(nvml, nullptr);
  absl::Status s = nvml->SetComputeMode(kGpus[0], ComputeMode::kExclusiveThread);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnimplemented) << s;
  EXPECT_THAT(s.message(), HasSubstr("EXCLUSIVE_THREAD"));
  EXPECT_THAT(s.message(), HasSubstr("Not Supported"));
}

TEST_F(NvmlTest, MalformedComputeModeInTheMachineFileFailsInit) {
  Write("machine.yaml", "devices:\n  - {uuid: GPU-a, computeMode: SHARED}\n");
  absl::StatusOr<std::unique_ptr<Nvml>> nvml = Load({});
  ASSERT_FALSE(nvml.ok());
  EXPECT_EQ(nvml.status().code(), absl::StatusCode::kUnavailable);
}

TEST_F(NvmlTest, DriverWithoutComputeModeCallsStillDiscovers) {
  const std::string fakes = SLICER_FAKES_DIR;
  Write("machine.yaml", FourT4s());
  fs::create_directories(dir_ + "/root/usr/lib64");
  fs::copy_file(fakes + "/no-compute-mode/libnvidia-ml.so.1",
                dir_ + "/root/usr/lib64/libnvidia-ml.so.1");
  auto nvml = MustLoad(Options(dir_ + "/root"));
  ASSERT_NE(nvml, nullptr);
  absl::StatusOr<System> system = nvml->Discover();
  ASSERT_TRUE(system.ok()) << system.status();
  EXPECT_EQ(system->devices.size(), 4u);
  absl::StatusOr<ComputeMode> get = nvml->GetComputeMode(kGpus[0]);
  EXPECT_EQ(get.status().code(), absl::StatusCode::kUnimplemented) << get.status();
  EXPECT_THAT(get.status().message(), HasSubstr("nvmlDeviceGetComputeMode"));
  EXPECT_THAT(get.status().message(), HasSubstr(dir_ + "/root/usr/lib64/libnvidia-ml.so.1"));
  absl::Status set = nvml->SetComputeMode(kGpus[0], ComputeMode::kExclusiveProcess);
  EXPECT_EQ(set.code(), absl::StatusCode::kUnimplemented) << set;
  EXPECT_THAT(set.message(), HasSubstr("nvmlDeviceSetComputeMode"));
}

TEST_F(NvmlTest, MalformedMachineFileFailsInit) {
  Write("machine.yaml", "this is: [not a machine\n");
  absl::StatusOr<std::unique_ptr<Nvml>> nvml = Load({});
  ASSERT_FALSE(nvml.ok());
  EXPECT_EQ(nvml.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(nvml.status().message(), HasSubstr("nvmlInit"));
  EXPECT_THAT(nvml.status().message(), HasSubstr("Driver Not Loaded"));
}

TEST_F(NvmlTest, MissingMachineFileFailsInit) {
  absl::StatusOr<std::unique_ptr<Nvml>> nvml = Load({});
  ASSERT_FALSE(nvml.ok());
  EXPECT_EQ(nvml.status().code(), absl::StatusCode::kUnavailable);
}

TEST_F(NvmlTest, InitWorksAgainAfterAFailure) {
  ASSERT_FALSE(Load({}).ok());
  Write("machine.yaml", FourT4s());
  auto nvml = MustLoad();
  ASSERT_NE(nvml, nullptr);
  absl::StatusOr<System> system = nvml->Discover();
  ASSERT_TRUE(system.ok()) << system.status();
  EXPECT_EQ(system->devices.size(), 4u);
}

TEST_F(NvmlTest, TwoInstancesShareTheLibrary) {
  Write("machine.yaml", FourT4s());
  auto a = MustLoad();
  auto b = MustLoad();
  ASSERT_TRUE(a && b);
  a.reset();
  EXPECT_TRUE(b->Probe(kGpus[0]).ok());
}

TEST_F(NvmlTest, LibraryUnderTheDriverRootComesFirst) {
  // The broken variant under the driver root must win over the good fake on LD_LIBRARY_PATH.
  const std::string fakes = SLICER_FAKES_DIR;
  Write("machine.yaml", FourT4s());
  fs::create_directories(dir_ + "/root/usr/lib64");
  fs::copy_file(fakes + "/broken/libnvidia-ml.so.1", dir_ + "/root/usr/lib64/libnvidia-ml.so.1");
  absl::StatusOr<std::unique_ptr<Nvml>> nvml = Load(Options(dir_ + "/root"));
  ASSERT_FALSE(nvml.ok());
  EXPECT_EQ(nvml.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(nvml.status().message(), HasSubstr("nvmlDeviceGetUUID"));
  EXPECT_THAT(nvml.status().message(), HasSubstr(dir_ + "/root/usr/lib64/libnvidia-ml.so.1"));
  EXPECT_THAT(nvml.status().message(), ::testing::Not(HasSubstr("nvmlInit")));
}

TEST_F(NvmlTest, DriverRootWithoutTheLibraryFallsBackToTheLoader) {
  Write("machine.yaml", FourT4s());
  auto nvml = MustLoad(Options(dir_ + "/empty-root"));
  ASSERT_NE(nvml, nullptr);
  EXPECT_TRUE(nvml->Discover().ok());
}

// LD_LIBRARY_PATH names an empty folder here. On a host with a real driver the library is found
// anyway; then there is nothing to test.
TEST(NvmlNoLibraryTest, MissingLibraryIsNotFoundAndNamed) {
  absl::StatusOr<std::unique_ptr<Nvml>> nvml = Load(Options("/nonexistent-driver-root"));
  if (nvml.ok()) GTEST_SKIP() << "a real libnvidia-ml.so.1 is installed";
  EXPECT_EQ(nvml.status().code(), absl::StatusCode::kNotFound) << nvml.status();
  EXPECT_THAT(nvml.status().message(), HasSubstr("libnvidia-ml.so.1"));
  EXPECT_THAT(nvml.status().message(), HasSubstr("/nonexistent-driver-root"));
}

// The real driver (ctest label `gpu`, no LD_LIBRARY_PATH): skipped where there is none.
TEST(NvmlGpuTest, RealDriverAnswers) {
  absl::StatusOr<std::unique_ptr<Nvml>> nvml = Load({});
  if (!nvml.ok()) GTEST_SKIP() << "no NVIDIA driver: " << nvml.status();
  absl::StatusOr<System> system = (*nvml)->Discover();
  ASSERT_TRUE(system.ok()) << system.status();
  ASSERT_FALSE(system->devices.empty());
  EXPECT_FALSE(system->driver_version.empty());
  EXPECT_GT(system->cuda_driver_version, 0);
  for (size_t i = 0; i < system->devices.size(); ++i) {
    const Device& d = system->devices[i];
    EXPECT_EQ(d.index, static_cast<int>(i));
    EXPECT_EQ(d.uuid.rfind("GPU-", 0), 0u) << d.uuid;
    EXPECT_GT(d.memory_bytes, 0u);
    EXPECT_GE(d.cc_major, 3);
    EXPECT_GE(d.minor_number, 0);
    EXPECT_FALSE(d.pci_bus_id.empty());
    EXPECT_TRUE((*nvml)->Probe(d.uuid).ok());
    std::printf("gpu index=%d uuid=%s name=\"%s\" memory=%llu numa=%d cc=%d.%d pci=%s dev=%s\n",
                d.index, d.uuid.c_str(), d.name.c_str(),
                static_cast<unsigned long long>(d.memory_bytes), d.numa_node, d.cc_major,
                d.cc_minor, d.pci_bus_id.c_str(), d.device_paths[0].c_str());
  }
  std::printf("driver=%s cuda=%d control=%zu\n", system->driver_version.c_str(),
              system->cuda_driver_version, system->control_device_paths.size());
  EXPECT_FALSE(system->control_device_paths.empty());
  auto start = std::chrono::steady_clock::now();
  auto none = (*nvml)->WaitForXid(std::chrono::milliseconds(300));
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_FALSE(none->has_value());
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(250));
  EXPECT_EQ((*nvml)->Probe("GPU-00000000-0000-0000-0000-000000000000").code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace slicer::nvml
