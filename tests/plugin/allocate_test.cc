#include "src/plugin/allocate.h"

#include <gtest/gtest.h>

#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "src/common/arbiter_protocol.h"
#include "src/common/shim_contract.h"

namespace slicer::plugin {
namespace {

using config::DeviceIdStrategy;
using config::DeviceListStrategy;

constexpr uint64_t kT4 = 15360ull << 20;

Gpu MakeGpu(int i) {
  Gpu g;
  g.uuid = "GPU-" + std::to_string(i);
  g.index = i;
  g.name = "Tesla T4";
  g.memory_bytes = kT4;
  g.numa_node = i / 2;
  g.minor_number = i;
  g.device_paths = {"/dev/nvidia" + std::to_string(i)};
  return g;
}

Resource Shared(int gpus, int replicas, bool cap = true) {
  std::vector<Gpu> g;
  for (int i = 0; i < gpus; ++i) g.push_back(MakeGpu(i));
  Resource r = MakeResource("nvidia.com/gpu", replicas, g);
  r.enforce_memory = cap;
  return r;
}

AllocateOptions Opts() {
  AllocateOptions o;
  o.shim_host_dir = "/usr/local/lib/gpu-slicer";
  o.control_device_paths = {"/dev/nvidiactl", "/dev/nvidia-uvm"};
  return o;
}

TEST(Resource, ReplicaIdsAndLookup) {
  Resource r = Shared(2, 4);
  ASSERT_EQ(r.devices.size(), 8u);
  EXPECT_EQ(r.devices[0].id, "GPU-0::0");
  EXPECT_EQ(r.devices[7].id, "GPU-1::3");
  EXPECT_EQ(r.GpuOf("GPU-1::2"), 1u);
  EXPECT_FALSE(r.GpuOf("GPU-1::4").has_value());
  EXPECT_FALSE(r.GpuOf("GPU-1").has_value());
  Resource whole = Shared(2, 1, false);
  EXPECT_EQ(whole.devices[1].id, "GPU-1");
  EXPECT_EQ(StripReplicaSuffix("GPU-1::3"), "GPU-1");
  EXPECT_EQ(SocketName("nvidia.com/gpu.shared"), "gpu-slicer-nvidia.com-gpu.shared.sock");
}

TEST(Allocate, EnvvarStripsSuffixDeduplicatesAndCapsByReplicasHeld) {
  auto r = AllocateContainer(Shared(2, 4), {"GPU-1::0", "GPU-1::3", "GPU-0::2"}, Opts(), "abc");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->envs().at("NVIDIA_VISIBLE_DEVICES"), "GPU-1,GPU-0");
  // 2 of 4 replicas of GPU-1 -> half its memory; 1 of 4 of GPU-0 -> a quarter.
  EXPECT_EQ(r->envs().at(SLICER_ENV_MEMORY_LIMITS),
            "GPU-1=" + std::to_string(kT4 / 2) + ",GPU-0=" + std::to_string(kT4 / 4));
  EXPECT_EQ(r->envs().at(SLICER_ENV_ENFORCE), "1");
  EXPECT_EQ(r->envs().at(SLICER_ENV_CONTAINER_ID), "abc");
  EXPECT_EQ(r->envs().count(SLICER_ENV_OPT_OUT_ALLOWED), 0u);
  ASSERT_EQ(r->mounts_size(), 2);
  EXPECT_EQ(r->mounts(0).host_path(), "/usr/local/lib/gpu-slicer/libslicer.so");
  EXPECT_EQ(r->mounts(0).container_path(), "/usr/local/lib/gpu-slicer/libslicer.so");
  EXPECT_TRUE(r->mounts(0).read_only());
  EXPECT_EQ(r->mounts(1).container_path(), "/etc/ld.so.preload");
  EXPECT_EQ(r->devices_size(), 0);
}

TEST(Allocate, CapRoundsDownAndNeverExceedsGpu) {
  Resource r = Shared(1, 3);
  r.gpus[0].memory_bytes = 1000;
  auto one = AllocateContainer(r, {"GPU-0::0"}, Opts(), "x");
  auto all = AllocateContainer(r, {"GPU-0::0", "GPU-0::1", "GPU-0::2"}, Opts(), "x");
  EXPECT_EQ(one->envs().at(SLICER_ENV_MEMORY_LIMITS), "GPU-0=333");
  EXPECT_EQ(all->envs().at(SLICER_ENV_MEMORY_LIMITS), "GPU-0=1000");
}

TEST(Allocate, UncappedResourceGetsNoShim) {
  auto r = AllocateContainer(Shared(2, 4, false), {"GPU-0::0"}, Opts(), "x");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->envs().count(SLICER_ENV_MEMORY_LIMITS), 0u);
  EXPECT_EQ(r->mounts_size(), 0);
}

TEST(Allocate, OptOutAllowedIsPassedOn) {
  Resource res = Shared(1, 2);
  res.allow_opt_out = true;
  auto r = AllocateContainer(res, {"GPU-0::0"}, Opts(), "x");
  EXPECT_EQ(r->envs().at(SLICER_ENV_OPT_OUT_ALLOWED), "1");
}

TEST(Allocate, CappedResourceWithoutShimFailsClosed) {
  AllocateOptions o = Opts();
  o.shim_host_dir = "";
  auto r = AllocateContainer(Shared(1, 2), {"GPU-0::0"}, o, "x");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("uncapped"), std::string::npos);
}

TEST(Allocate, IndexStrategy) {
  AllocateOptions o = Opts();
  o.id_strategy = DeviceIdStrategy::kIndex;
  auto r = AllocateContainer(Shared(3, 2), {"GPU-2::1", "GPU-0::0"}, o, "x");
  EXPECT_EQ(r->envs().at("NVIDIA_VISIBLE_DEVICES"), "2,0");
}

TEST(Allocate, VolumeMounts) {
  AllocateOptions o = Opts();
  o.list_strategies = {DeviceListStrategy::kVolumeMounts};
  auto r = AllocateContainer(Shared(2, 2, false), {"GPU-1::0", "GPU-1::1"}, o, "x");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->envs().at("NVIDIA_VISIBLE_DEVICES"), "/var/run/nvidia-container-devices");
  ASSERT_EQ(r->mounts_size(), 1);
  EXPECT_EQ(r->mounts(0).container_path(), "/var/run/nvidia-container-devices/GPU-1");
  EXPECT_EQ(r->mounts(0).host_path(), "/dev/null");
}

TEST(Allocate, CdiAnnotationsAndCri) {
  AllocateOptions o = Opts();
  o.list_strategies = {DeviceListStrategy::kCdiAnnotations, DeviceListStrategy::kCdiCri};
  auto r = AllocateContainer(Shared(2, 2, false), {"GPU-0::1", "GPU-1::0"}, o, "req1");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->annotations().at("cdi.k8s.io/nvidia-device-plugin_req1"),
            "k8s.device-plugin.nvidia.com/gpu=GPU-0,k8s.device-plugin.nvidia.com/gpu=GPU-1");
  ASSERT_EQ(r->cdi_devices_size(), 2);
  EXPECT_EQ(r->cdi_devices(1).name(), "k8s.device-plugin.nvidia.com/gpu=GPU-1");
  // Only CDI: the runtime hook must not inject devices by itself.
  EXPECT_EQ(r->envs().at("NVIDIA_VISIBLE_DEVICES"), "void");
  EXPECT_EQ(r->devices_size(), 0);
}

TEST(Allocate, PassDeviceSpecsWithDevRoot) {
  AllocateOptions o = Opts();
  o.pass_device_specs = true;
  o.dev_root = "/run/nvidia/driver";
  o.control_device_paths = {"/run/nvidia/driver/dev/nvidiactl"};
  Resource res = Shared(2, 2, false);
  res.gpus[1].device_paths = {"/run/nvidia/driver/dev/nvidia1"};
  auto r = AllocateContainer(res, {"GPU-1::0"}, o, "x");
  ASSERT_EQ(r->devices_size(), 2);
  EXPECT_EQ(r->devices(0).host_path(), "/run/nvidia/driver/dev/nvidiactl");
  EXPECT_EQ(r->devices(0).container_path(), "/dev/nvidiactl");
  EXPECT_EQ(r->devices(1).container_path(), "/dev/nvidia1");
  EXPECT_EQ(r->devices(1).permissions(), "rw");
}

TEST(Allocate, FailRequestsGreaterThanOneNamesRequestAndLimit) {
  AllocateOptions o = Opts();
  o.fail_requests_greater_than_one = true;
  EXPECT_TRUE(AllocateContainer(Shared(2, 4), {"GPU-0::0"}, o, "x").ok());
  auto r = AllocateContainer(Shared(2, 4), {"GPU-0::0", "GPU-0::1"}, o, "x");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  const std::string msg(r.status().message());
  EXPECT_NE(msg.find("request for 2 replicas of nvidia.com/gpu"), std::string::npos) << msg;
  EXPECT_NE(msg.find("GPU-0::0, GPU-0::1"), std::string::npos) << msg;
  EXPECT_NE(msg.find("at most 1"), std::string::npos) << msg;
  // Unshared resources are not limited by it.
  EXPECT_TRUE(AllocateContainer(Shared(2, 1, false), {"GPU-0", "GPU-1"}, o, "x").ok());
}

TEST(Allocate, BadRequestsNameTheProblem) {
  Resource r = Shared(2, 4);
  auto unknown = AllocateContainer(r, {"GPU-0::0", "GPU-9::0"}, Opts(), "x");
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("unknown device ID \"GPU-9::0\""), std::string::npos);
  auto empty = AllocateContainer(r, {}, Opts(), "x");
  ASSERT_FALSE(empty.ok());
  EXPECT_NE(empty.status().message().find("empty"), std::string::npos);
  auto twice = AllocateContainer(r, {"GPU-0::0", "GPU-0::0"}, Opts(), "x");
  ASSERT_FALSE(twice.ok());
  EXPECT_NE(twice.status().message().find("twice"), std::string::npos);
  std::vector<std::string> huge(100000, "GPU-0::0");
  auto big = AllocateContainer(r, huge, Opts(), "x");
  ASSERT_FALSE(big.ok());
  EXPECT_NE(big.status().message().find("larger than the 8"), std::string::npos);
  std::string long_id(100000, 'x');
  auto longone = AllocateContainer(r, {long_id}, Opts(), "x");
  ASSERT_FALSE(longone.ok());
  EXPECT_LT(longone.status().message().size(), 400u);  // the message does not echo 100 kB
}

std::vector<std::string> All(const Resource& r) {
  std::vector<std::string> ids;
  for (const auto& d : r.devices) ids.push_back(d.id);
  return ids;
}

constexpr char kArbiterSocket[] = "/var/run/gpu-slicer/arbiter.sock";

TEST(Allocate, ArbiterEnvAndReadOnlyDirectoryMount) {
  AllocateOptions o = Opts();
  o.arbiter_socket = kArbiterSocket;
  auto r = AllocateContainer(Shared(2, 4), {"GPU-1::0", "GPU-1::3", "GPU-0::2"}, o, "abc");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->envs().at(SLICER_ENV_ARBITER_SOCKET), "/var/run/gpu-slicer/arbiter.sock");
  // Every replica held, grouped by GPU in order of first appearance, a GPU's further replicas
  // without the UUID: the arbiter weights by replicas held per GPU.
  EXPECT_EQ(r->envs().at(SLICER_ENV_REPLICA_IDS), "GPU-1::0,::3,GPU-0::2");
  r = AllocateContainer(Shared(2, 4), {"GPU-0::1", "GPU-1::2", "GPU-0::3"}, o, "abc");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->envs().at(SLICER_ENV_REPLICA_IDS), "GPU-0::1,::3,GPU-1::2");
  EXPECT_EQ(r->envs().at(SLICER_ENV_CONTAINER_ID), "abc");
  ASSERT_EQ(r->mounts_size(), 3);  // shim, ld.so.preload, arbiter directory
  EXPECT_EQ(r->mounts(2).container_path(), "/var/run/gpu-slicer");
  EXPECT_EQ(r->mounts(2).host_path(), "/var/run/gpu-slicer");
  EXPECT_TRUE(r->mounts(2).read_only());

  // Another host directory: containers still find the socket under kArbiterContainerDir.
  o.arbiter_socket = "/run/slicer-arbiter/a.sock";
  r = AllocateContainer(Shared(1, 2), {"GPU-0::1"}, o, "x");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->envs().at(SLICER_ENV_ARBITER_SOCKET), "/var/run/gpu-slicer/a.sock");
  EXPECT_EQ(r->mounts(2).host_path(), "/run/slicer-arbiter");
  EXPECT_EQ(r->mounts(2).container_path(), kArbiterContainerDir);
}

TEST(Allocate, NoArbiterWithoutTheShimSharingOrTheFlag) {
  AllocateOptions o = Opts();
  o.arbiter_socket = kArbiterSocket;
  auto no_arbiter = [](const v1beta1::ContainerAllocateResponse& c) {
    for (const auto& m : c.mounts()) {
      if (m.container_path() == kArbiterContainerDir) return false;
    }
    return c.envs().count(SLICER_ENV_ARBITER_SOCKET) == 0 &&
           c.envs().count(SLICER_ENV_REPLICA_IDS) == 0;
  };
  // Shared, memory caps off: the shim is not injected, so nothing would talk to the arbiter.
  auto uncapped = AllocateContainer(Shared(2, 4, false), {"GPU-0::0"}, o, "x");
  ASSERT_TRUE(uncapped.ok());
  EXPECT_TRUE(no_arbiter(*uncapped));
  EXPECT_EQ(uncapped->mounts_size(), 0);
  // A whole GPU with caps on: capped, but it has nobody to share time with (and its IDs are
  // bare UUIDs, which the arbiter does not take as replica IDs).
  auto whole = AllocateContainer(Shared(2, 1, true), {"GPU-1"}, o, "x");
  ASSERT_TRUE(whole.ok());
  EXPECT_EQ(whole->envs().count(SLICER_ENV_MEMORY_LIMITS), 1u);
  EXPECT_TRUE(no_arbiter(*whole));
  // No --arbiter-socket: the shim alone.
  auto off = AllocateContainer(Shared(2, 4), {"GPU-0::0"}, Opts(), "x");
  ASSERT_TRUE(off.ok());
  EXPECT_TRUE(no_arbiter(*off));
  EXPECT_EQ(off->mounts_size(), 2);
}

// SLICER_REPLICA_IDS expanded as the arbiter reads it ("::<n>" continues the GPU before it).
std::vector<std::string> Expand(const std::string& listed) {
  std::vector<std::string> out;
  std::string gpu;
  for (absl::string_view part : absl::StrSplit(listed, ',')) {
    std::string e(part);
    std::string id = e.rfind("::", 0) == 0 ? gpu + e : e;
    gpu = id.substr(0, id.find("::"));
    out.push_back(id);
  }
  return out;
}

TEST(Allocate, ReplicaIdsFitTheArbitersHello) {
  // Real UUIDs (40 characters): 64 replica IDs of one GPU written whole would take 2.8 KB; the
  // HELLO field holds 639 bytes. Written compactly all 64 fit.
  std::vector<Gpu> gpus = {MakeGpu(0), MakeGpu(1)};
  gpus[0].uuid = "GPU-0a1b2c3d-0000-4000-8000-0123456789ab";
  gpus[1].uuid = "GPU-0a1b2c3d-0000-4000-8000-0123456789ac";
  Resource res = MakeResource("nvidia.com/gpu", 64, gpus);
  res.enforce_memory = true;
  AllocateOptions o = Opts();
  o.arbiter_socket = kArbiterSocket;
  std::vector<std::string> ids = All(res);  // 128: both GPUs
  std::vector<std::string> one_gpu(ids.begin(), ids.begin() + 64);
  auto r = AllocateContainer(res, one_gpu, o, "x");
  ASSERT_TRUE(r.ok());
  std::string listed = r->envs().at(SLICER_ENV_REPLICA_IDS);
  EXPECT_LE(listed.size(), static_cast<size_t>(SLICER_ARB_REPLICAS_LEN - 1));
  EXPECT_EQ(Expand(listed), one_gpu) << listed;
  // More than the arbiter takes from one client (128 replicas; 64 is its limit): the first 64.
  r = AllocateContainer(res, ids, o, "x");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(Expand(r->envs().at(SLICER_ENV_REPLICA_IDS)),
            std::vector<std::string>(ids.begin(), ids.begin() + SLICER_ARB_MAX_REPLICAS));
  // More than the field holds (4 replicas on each of 16 GPUs: 16 UUIDs, ~880 bytes): whole IDs
  // only, a prefix of the request grouped by GPU, nothing cut in the middle.
  std::vector<Gpu> many;
  for (int i = 0; i < 16; ++i) {
    many.push_back(MakeGpu(i));
    many.back().uuid = absl::StrCat("GPU-0a1b2c3d-0000-4000-8000-0123456789", i < 10 ? "0" : "", i);
  }
  Resource wide = MakeResource("nvidia.com/gpu", 4, many);
  wide.enforce_memory = true;
  std::vector<std::string> wide_ids = All(wide);
  r = AllocateContainer(wide, wide_ids, o, "x");
  ASSERT_TRUE(r.ok());
  listed = r->envs().at(SLICER_ENV_REPLICA_IDS);
  EXPECT_LE(listed.size(), static_cast<size_t>(SLICER_ARB_REPLICAS_LEN - 1));
  std::vector<std::string> got = Expand(listed);
  ASSERT_GE(got.size(), 40u) << listed;  // 11 GPUs' worth: 11 x (43 + 3 x 4) = 605 bytes
  ASSERT_LT(got.size(), wide_ids.size()) << listed;
  for (size_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i], wide_ids[i]);
}

TEST(Allocate, ArbiterSocketPathsThatCannotBeHandedToContainers) {
  for (const char* ok : {"/var/run/gpu-slicer/arbiter.sock", "/run/gpu-slicer/a.sock",
                         "/var/lib/gpu-slicer/run/arbiter.sock"}) {
    EXPECT_TRUE(ValidateArbiterSocket(ok).ok()) << ok;
  }
  struct Bad {
    std::string path, says;
  } bad[] = {
      {"", "absolute path"},
      {"run/gpu-slicer/a.sock", "absolute path"},
      {"/var/run/gpu-slicer/", "absolute path"},
      {"/arbiter.sock", "is in /,"},
      {"/run/arbiter.sock", "is in /run,"},
      {"/var/run/arbiter.sock", "is in /var/run,"},
      {"/var/lib/kubelet/device-plugins/arbiter.sock", "device-plugins"},
      {"/var/run/gpu-slicer/../arbiter.sock", "components"},
      {"/var//gpu-slicer/arbiter.sock", "components"},
      {"/var/run/gpu-slicer/" + std::string(100, 'a'), "too long"},
  };
  for (const Bad& b : bad) {
    absl::Status s = ValidateArbiterSocket(b.path);
    ASSERT_FALSE(s.ok()) << b.path;
    EXPECT_NE(s.message().find(b.says), std::string::npos) << s.message();
    EXPECT_NE(s.message().find(b.path), std::string::npos) << s.message();
  }
}

std::set<size_t> GpusOf(const Resource& r, const std::vector<std::string>& ids) {
  std::set<size_t> g;
  for (const auto& id : ids) g.insert(*r.GpuOf(id));
  return g;
}

// ---- MPS ----

Resource Mps(int gpus, int replicas) {
  Resource r = Shared(gpus, replicas);
  r.mps = true;
  return r;
}

const v1beta1::Mount* MountAt(const v1beta1::ContainerAllocateResponse& resp,
                              const std::string& container_path) {
  for (const auto& m : resp.mounts()) {
    if (m.container_path() == container_path) return &m;
  }
  return nullptr;
}

TEST(AllocateMps, SizesTheClientByTheReplicasItHoldsAndConnectsItToItsGpusDaemon) {
  AllocateOptions o = Opts();
  o.mps_root = "/run/nvidia/mps";
  o.arbiter_socket = "/var/run/gpu-slicer/arbiter.sock";
  // 3 of GPU-1's 8 replicas: 37% of the threads, 3/8 of 15360 MiB.
  auto r = AllocateContainer(Mps(2, 8), {"GPU-1::0", "GPU-1::5", "GPU-1::2"}, o, "req");
  ASSERT_TRUE(r.ok()) << r.status();
  const auto& env = r->envs();
  EXPECT_EQ(env.at("CUDA_MPS_PIPE_DIRECTORY"), "/mps/GPU-1/pipe");
  EXPECT_EQ(env.at("CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"), "37");
  EXPECT_EQ(env.at("CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"), "0=5760M");
  EXPECT_EQ(env.at(kVisibleDevicesEnv), "GPU-1");
  const v1beta1::Mount* pipe = MountAt(*r, "/mps/GPU-1/pipe");
  ASSERT_NE(pipe, nullptr);
  EXPECT_EQ(pipe->host_path(), "/run/nvidia/mps/GPU-1/pipe");
  const v1beta1::Mount* shm = MountAt(*r, "/dev/shm");
  ASSERT_NE(shm, nullptr);
  EXPECT_EQ(shm->host_path(), "/run/nvidia/mps/shm");
  // The shim's cap holds under MPS too (the MPS limit alone leaves cudaMemGetInfo uncapped).
  EXPECT_EQ(env.at(SLICER_ENV_MEMORY_LIMITS), absl::StrCat("GPU-1=", kT4 / 8 * 3));
  EXPECT_NE(MountAt(*r, "/etc/ld.so.preload"), nullptr);
  // Connected to the arbiter observe-only: metrics per pod, no time gating (MPS clients run
  // side by side).
  EXPECT_EQ(env.at(SLICER_ENV_ARBITER_SOCKET), "/var/run/gpu-slicer/arbiter.sock");
  EXPECT_EQ(env.at(SLICER_ENV_ARBITER_OBSERVE), "1");
  EXPECT_EQ(env.at(SLICER_ENV_REPLICA_IDS), "GPU-1::0,::5,::2");
  EXPECT_NE(MountAt(*r, "/var/run/gpu-slicer"), nullptr);
}

TEST(AllocateMps, OneReplicaGetsAnNthAndTheThreadShareIsAtLeastOnePercent) {
  auto one = AllocateContainer(Mps(1, 4), {"GPU-0::3"}, Opts(), "req");
  ASSERT_TRUE(one.ok()) << one.status();
  EXPECT_EQ(one->envs().at("CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"), "25");
  EXPECT_EQ(one->envs().at("CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"), "0=3840M");
  Resource many = Mps(1, 200);  // more than the client limit: the config refuses it, but the
                                // arithmetic must still not give 0 %
  auto small = AllocateContainer(many, {"GPU-0::7"}, Opts(), "req");
  ASSERT_TRUE(small.ok()) << small.status();
  EXPECT_EQ(small->envs().at("CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"), "1");
}

TEST(AllocateMps, ReplicasOnTwoGpusAreRefusedWithTheReason) {
  auto r = AllocateContainer(Mps(2, 4), {"GPU-0::0", "GPU-1::0"}, Opts(), "req");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("one GPU's control daemon"), std::string::npos)
      << r.status();
}

TEST(AllocateMps, TimeSlicedResourcesGetNothingOfMps) {
  auto r = AllocateContainer(Shared(1, 4), {"GPU-0::1"}, Opts(), "req");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->envs().contains("CUDA_MPS_PIPE_DIRECTORY"));
  EXPECT_FALSE(r->envs().contains("CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"));
  EXPECT_EQ(MountAt(*r, "/dev/shm"), nullptr);
  AllocateOptions o = Opts();
  o.arbiter_socket = "/var/run/gpu-slicer/arbiter.sock";
  auto gated = AllocateContainer(Shared(1, 4), {"GPU-0::1"}, o, "req");
  ASSERT_TRUE(gated.ok()) << gated.status();
  EXPECT_TRUE(gated->envs().contains(SLICER_ENV_ARBITER_SOCKET));
  EXPECT_FALSE(gated->envs().contains(SLICER_ENV_ARBITER_OBSERVE));  // time-sliced: leased
}

TEST(Preferred, PackedPutsAMultiReplicaRequestOnOneGpu) {
  Resource r = Shared(4, 4);
  auto c = PreferredAllocation(r, All(r), {}, 2, AllocationPolicy::kPacked);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->size(), 2u);
  EXPECT_EQ(GpusOf(r, *c).size(), 1u);
}

TEST(Preferred, PackedIsBestFit) {
  // GPU-0 has 1 free, GPU-1 has 4 free, GPU-2 has 2 free.
  Resource r = Shared(3, 4);
  std::vector<std::string> avail = {"GPU-0::3", "GPU-1::0", "GPU-1::1", "GPU-1::2",
                                    "GPU-1::3", "GPU-2::2", "GPU-2::3"};
  auto one = PreferredAllocation(r, avail, {}, 1, AllocationPolicy::kPacked);
  EXPECT_EQ(*one, std::vector<std::string>{"GPU-0::3"});
  auto two = PreferredAllocation(r, avail, {}, 2, AllocationPolicy::kPacked);
  EXPECT_EQ(GpusOf(r, *two), std::set<size_t>{2});
  auto three = PreferredAllocation(r, avail, {}, 3, AllocationPolicy::kPacked);
  EXPECT_EQ(GpusOf(r, *three), std::set<size_t>{1});
  // Five cannot fit on one GPU: the fullest free GPU first, then the rest.
  auto five = PreferredAllocation(r, avail, {}, 5, AllocationPolicy::kPacked);
  ASSERT_TRUE(five.ok());
  EXPECT_EQ(five->size(), 5u);
  EXPECT_EQ(GpusOf(r, *five).count(1), 1u);
}

TEST(Preferred, MustIncludeKeepsItsGpu) {
  Resource r = Shared(2, 4);
  auto c = PreferredAllocation(r, All(r), {"GPU-1::2"}, 3, AllocationPolicy::kPacked);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ((*c)[0], "GPU-1::2");
  EXPECT_EQ(GpusOf(r, *c), std::set<size_t>{1});
}

TEST(Preferred, DistributedSpreads) {
  Resource r = Shared(4, 4);
  auto c = PreferredAllocation(r, All(r), {}, 4, AllocationPolicy::kDistributed);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(GpusOf(r, *c).size(), 4u);
}

TEST(Preferred, ImpossibleRequestsAreErrors) {
  Resource r = Shared(1, 2);
  EXPECT_FALSE(PreferredAllocation(r, All(r), {}, 3, AllocationPolicy::kPacked).ok());
  EXPECT_FALSE(PreferredAllocation(r, All(r), {}, 0, AllocationPolicy::kPacked).ok());
  EXPECT_FALSE(PreferredAllocation(r, {"nope"}, {}, 1, AllocationPolicy::kPacked).ok());
}

}  // namespace
}  // namespace slicer::plugin
