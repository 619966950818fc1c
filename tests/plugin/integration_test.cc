// The real `slicer device-plugin` binary on the fake NVML, against the simulated kubelet.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/str_join.h"
#include "src/common/shim_contract.h"
#include "src/common/subprocess.h"
#include "src/demo/kubelet_sim.h"

namespace slicer {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

const char* kGpus[] = {
    "GPU-00000000-0000-4000-8000-000000000000", "GPU-11111111-1111-4111-8111-111111111111",
    "GPU-22222222-2222-4222-8222-222222222222", "GPU-33333333-3333-4333-8333-333333333333"};

std::string Read(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string TimeSlicing(int replicas, bool fail_gt_one = false, const std::string& extra = "") {
  return "version: v1\nsharing:\n  timeSlicing:\n    failRequestsGreaterThanOne: " +
         std::string(fail_gt_one ? "true" : "false") +
         "\n    resources:\n      - name: nvidia.com/gpu\n        replicas: " +
         std::to_string(replicas) + "\n" + extra;
}

class PluginTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* bin = std::getenv("SLICER_BIN");
    const char* fakes = std::getenv("SLICER_FAKES_DIR");
    if (bin == nullptr) bin = SLICER_TEST_BIN;
    if (fakes == nullptr) fakes = SLICER_TEST_FAKES_DIR;
    bin_ = bin;
    fakes_ = fakes;
    char tmpl[] = "/tmp/slicer-it-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    fs::create_directories(dir_ + "/dp");
    fs::create_directories(dir_ + "/shim");
    std::ofstream(dir_ + "/shim/" + SLICER_SHIM_NAME) << "not a real library";
    kubelet_sock_ = dir_ + "/dp/kubelet.sock";
    std::string machine = "driverVersion: \"580.159.04\"\ndevices:\n";
    for (int i = 0; i < 4; ++i) {
      machine += std::string("  - {uuid: ") + kGpus[i] +
                 ", name: Tesla T4, memoryMiB: 15360, numaNode: " + std::to_string(i / 2) + "}\n";
    }
    Write("machine.yaml", machine);
    Write("events", "");
    kubelet_ = std::make_unique<demo::KubeletSim>(kubelet_sock_);
    ASSERT_TRUE(kubelet_->Start().ok());
  }

  void TearDown() override {
    plugin_.reset();
    kubelet_.reset();
    if (HasFailure()) std::cerr << "plugin log:\n" << Read(dir_ + "/plugin.log");
    fs::remove_all(dir_);
  }

  void Write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ + "/" + name, std::ios::trunc) << text;
  }
  void Event(const std::string& line) {
    std::ofstream(dir_ + "/events", std::ios::app) << line << "\n";
  }

  void StartPlugin(const std::string& config, std::vector<std::string> extra = {}) {
    Write("config.yaml", config);
    std::vector<std::string> argv = {bin_,
                                     "device-plugin",
                                     "--config-file",
                                     dir_ + "/config.yaml",
                                     "--kubelet-socket",
                                     kubelet_sock_,
                                     "--feature-file",
                                     dir_ + "/features",
                                     "--shim-dir",
                                     dir_ + "/shim",
                                     "--health-probe-interval",
                                     "50ms",
                                     "--health-recovery-delay",
                                     "0s"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    auto p = Subprocess::Spawn({argv,
                                {{"LD_LIBRARY_PATH", fakes_},
                                 {"SLICER_FAKE_NVML", dir_ + "/machine.yaml"},
                                 {"SLICER_FAKE_NVML_EVENTS", dir_ + "/events"}},
                                dir_ + "/plugin.log"});
    ASSERT_TRUE(p.ok()) << p.status();
    plugin_ = std::make_unique<Subprocess>(std::move(*p));
  }

  std::shared_ptr<demo::PluginClient> Registered(const std::string& resource, int n = 1) {
    auto c = kubelet_->WaitForRegistration(resource, n, milliseconds(10000));
    if (c) c->WaitFor([](const auto& l) { return l.devices_size() > 0; }, milliseconds(5000));
    return c;
  }

  std::string bin_, fakes_, dir_, kubelet_sock_;
  std::unique_ptr<demo::KubeletSim> kubelet_;
  std::unique_ptr<Subprocess> plugin_;
};

TEST_F(PluginTest, RegistersReplicasWithTopologyAndLabels) {
  StartPlugin(TimeSlicing(4));
  auto c = Registered("nvidia.com/gpu");
  ASSERT_TRUE(c);
  auto list = c->Devices();
  ASSERT_EQ(list.devices_size(), 16);
  std::set<std::string> ids;
  for (const auto& d : list.devices()) {
    ids.insert(d.id());
    EXPECT_EQ(d.health(), "Healthy");
    ASSERT_EQ(d.topology().nodes_size(), 1);
  }
  EXPECT_EQ(ids.size(), 16u);
  EXPECT_TRUE(ids.count(std::string(kGpus[3]) + "::3"));
  EXPECT_EQ(list.devices(15).topology().nodes(0).id(), 1);
  v1beta1::DevicePluginOptions opts;
  ASSERT_TRUE(c->Options(&opts).ok());
  EXPECT_TRUE(opts.get_preferred_allocation_available());
  std::string labels = Read(dir_ + "/features");
  EXPECT_NE(labels.find("nvidia.com/gpu.count=4\n"), std::string::npos) << labels;
  EXPECT_NE(labels.find("nvidia.com/gpu.product=Tesla-T4-SHARED\n"), std::string::npos);
  EXPECT_NE(labels.find("nvidia.com/gpu.replicas=4\n"), std::string::npos);
  // The shim's preload file for containers.
  EXPECT_EQ(Read(dir_ + "/shim/ld.so.preload"), "/usr/local/lib/gpu-slicer/libslicer.so\n");
}

TEST_F(PluginTest, RenameAndDevicesSplitOneNode) {
  StartPlugin(
      "version: v1\nsharing:\n  timeSlicing:\n    resources:\n"
      "      - name: nvidia.com/gpu\n        rename: nvidia.com/gpu.shared\n"
      "        devices: [0]\n        replicas: 4\n");
  auto shared = Registered("nvidia.com/gpu.shared");
  auto whole = Registered("nvidia.com/gpu");
  ASSERT_TRUE(shared && whole);
  EXPECT_EQ(shared->Devices().devices_size(), 4);
  ASSERT_EQ(whole->Devices().devices_size(), 3);
  EXPECT_EQ(whole->Devices().devices(0).id(), kGpus[1]);
  v1beta1::AllocateResponse r;
  ASSERT_TRUE(whole->Allocate({{kGpus[2]}}, &r).ok());
  EXPECT_EQ(r.container_responses(0).envs().count(SLICER_ENV_MEMORY_LIMITS), 0u);
  ASSERT_TRUE(shared->Allocate({{std::string(kGpus[0]) + "::1"}}, &r).ok());
  EXPECT_EQ(r.container_responses(0).envs().at(SLICER_ENV_MEMORY_LIMITS),
            std::string(kGpus[0]) + "=" + std::to_string((15360ull << 20) / 4));
}

TEST_F(PluginTest, ArbiterSocketReachesSharedContainersOnly) {
  const std::string arbiter_dir = dir_ + "/arbiter";
  StartPlugin(
      "version: v1\nsharing:\n  timeSlicing:\n    resources:\n"
      "      - name: nvidia.com/gpu\n        rename: nvidia.com/gpu.shared\n"
      "        devices: [0, 1]\n        replicas: 4\n",
      {"--arbiter-socket", arbiter_dir + "/arbiter.sock"});
  auto shared = Registered("nvidia.com/gpu.shared");
  auto whole = Registered("nvidia.com/gpu");
  ASSERT_TRUE(shared && whole);
  v1beta1::AllocateResponse r;
  const std::vector<std::string> ids = {std::string(kGpus[1]) + "::2",
                                        std::string(kGpus[1]) + "::0"};
  ASSERT_TRUE(shared->Allocate({ids}, &r).ok());
  const auto& c = r.container_responses(0);
  EXPECT_EQ(c.envs().at(SLICER_ENV_ARBITER_SOCKET), "/var/run/gpu-slicer/arbiter.sock");
  EXPECT_EQ(c.envs().at("SLICER_REPLICA_IDS"), ids[0] + ",::0");  // same GPU: no UUID again
  int found = 0;
  for (const auto& m : c.mounts()) {
    if (m.container_path() != "/var/run/gpu-slicer") continue;
    ++found;
    EXPECT_EQ(m.host_path(), arbiter_dir);
    EXPECT_TRUE(m.read_only());
  }
  EXPECT_EQ(found, 1);
  // The whole GPU has no shim and nobody to share its time with.
  ASSERT_TRUE(whole->Allocate({{kGpus[3]}}, &r).ok());
  EXPECT_EQ(r.container_responses(0).envs().count(SLICER_ENV_ARBITER_SOCKET), 0u);
  EXPECT_EQ(r.container_responses(0).mounts_size(), 0);
  EXPECT_NE(Read(dir_ + "/plugin.log").find("event=arbiter_wiring"), std::string::npos);
}

TEST_F(PluginTest, ArbiterSocketInASharedDirectoryIsRefusedAtStart) {
  StartPlugin(TimeSlicing(4), {"--arbiter-socket", "/var/run/arbiter.sock"});
  auto status = plugin_->Wait(milliseconds(5000));
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 2) << *status;
  std::string log = Read(dir_ + "/plugin.log");
  EXPECT_NE(log.find("--arbiter-socket: arbiter socket \"/var/run/arbiter.sock\" is in /var/run"),
            std::string::npos)
      << log;
  EXPECT_EQ(kubelet_->Registrations("nvidia.com/gpu"), 0);
}

TEST_F(PluginTest, MissingShimFailsCappedAllocationsClosedUntilReload) {
  fs::remove(dir_ + "/shim/" + SLICER_SHIM_NAME);
  StartPlugin(TimeSlicing(4));
  auto c = Registered("nvidia.com/gpu");
  ASSERT_TRUE(c);
  v1beta1::AllocateResponse r;
  grpc::Status s = c->Allocate({{std::string(kGpus[0]) + "::0"}}, &r);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(s.error_message().find("no libslicer.so in --shim-dir"), std::string::npos)
      << s.error_message();
  EXPECT_NE(Read(dir_ + "/plugin.log").find("event=shim_missing"), std::string::npos);
  // Installed later (the chart's init container normally runs first): a reload picks it up.
  std::ofstream(dir_ + "/shim/" + SLICER_SHIM_NAME) << "not a real library";
  plugin_->Signal(SIGHUP);
  c = Registered("nvidia.com/gpu", 2);
  ASSERT_TRUE(c);
  ASSERT_TRUE(c->Allocate({{std::string(kGpus[0]) + "::0"}}, &r).ok());
  EXPECT_EQ(r.container_responses(0).envs().at(SLICER_ENV_ENFORCE), "1");
}

TEST_F(PluginTest, AllocateStrategies) {
  struct Case {
    const char* strategy;
    std::function<void(const v1beta1::ContainerAllocateResponse&)> check;
  } cases[] = {
      {"envvar", [](const auto& c) { EXPECT_EQ(c.envs().at("NVIDIA_VISIBLE_DEVICES"), kGpus[1]); }},
      {"volume-mounts",
       [](const auto& c) {
         EXPECT_EQ(c.envs().at("NVIDIA_VISIBLE_DEVICES"), "/var/run/nvidia-container-devices");
         EXPECT_EQ(c.mounts(0).container_path(),
                   std::string("/var/run/nvidia-container-devices/") + kGpus[1]);
       }},
      {"cdi-annotations",
       [](const auto& c) {
         ASSERT_EQ(c.annotations_size(), 1);
         EXPECT_EQ(c.annotations().begin()->second,
                   std::string("k8s.device-plugin.nvidia.com/gpu=") + kGpus[1]);
       }},
      {"cdi-cri",
       [](const auto& c) {
         ASSERT_EQ(c.cdi_devices_size(), 1);
         EXPECT_EQ(c.cdi_devices(0).name(),
                   std::string("k8s.device-plugin.nvidia.com/gpu=") + kGpus[1]);
       }},
  };
  int n = 0;
  for (const Case& k : cases) {
    SCOPED_TRACE(k.strategy);
    StartPlugin(TimeSlicing(2), {"--device-list-strategy", k.strategy, "--pass-device-specs"});
    auto c = Registered("nvidia.com/gpu", ++n);
    ASSERT_TRUE(c);
    v1beta1::AllocateResponse r;
    ASSERT_TRUE(c->Allocate({{std::string(kGpus[1]) + "::0"}}, &r).ok());
    k.check(r.container_responses(0));
    plugin_->Signal(SIGTERM);
    ASSERT_TRUE(plugin_->Wait(milliseconds(5000)).has_value());
  }
  // Index IDs.
  StartPlugin(TimeSlicing(2), {"--device-id-strategy=index"});
  auto c = Registered("nvidia.com/gpu", ++n);
  v1beta1::AllocateResponse r;
  ASSERT_TRUE(c->Allocate({{std::string(kGpus[3]) + "::1"}}, &r).ok());
  EXPECT_EQ(r.container_responses(0).envs().at("NVIDIA_VISIBLE_DEVICES"), "3");
}

TEST_F(PluginTest, FailRequestsGreaterThanOneBothWays) {
  StartPlugin(TimeSlicing(4, false));
  auto c = Registered("nvidia.com/gpu");
  v1beta1::AllocateResponse r;
  std::vector<std::string> two = {std::string(kGpus[0]) + "::0", std::string(kGpus[0]) + "::1"};
  ASSERT_TRUE(c->Allocate({two}, &r).ok());
  EXPECT_EQ(r.container_responses(0).envs().at(SLICER_ENV_MEMORY_LIMITS),
            std::string(kGpus[0]) + "=" + std::to_string((15360ull << 20) / 2));

  plugin_->Signal(SIGTERM);
  ASSERT_TRUE(plugin_->Wait(milliseconds(5000)));
  StartPlugin(TimeSlicing(4, true));
  c = Registered("nvidia.com/gpu", 2);
  grpc::Status s = c->Allocate({two}, &r);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("request for 2 replicas"), std::string::npos)
      << s.error_message();
  EXPECT_NE(s.error_message().find("at most 1"), std::string::npos);
  EXPECT_TRUE(c->Allocate({{two[0]}}, &r).ok());
}

TEST_F(PluginTest, PreferredAllocationPacksOneGpu) {
  StartPlugin(TimeSlicing(4));
  auto c = Registered("nvidia.com/gpu");
  std::vector<std::string> avail;
  const auto listed = c->Devices();  // keep the response alive while iterating it
  for (const auto& d : listed.devices()) avail.push_back(d.id());
  avail.erase(avail.begin());  // GPU 0 has 3 free, the others 4
  std::vector<std::string> chosen;
  ASSERT_TRUE(c->Preferred(avail, {}, 2, &chosen).ok());
  ASSERT_EQ(chosen.size(), 2u);
  EXPECT_EQ(chosen[0].substr(0, chosen[0].find("::")), chosen[1].substr(0, chosen[1].find("::")));
  EXPECT_EQ(chosen[0].substr(0, chosen[0].find("::")), kGpus[0]);  // best fit: the partly used GPU
}

TEST_F(PluginTest, BadRequestsGetErrorsAndThePluginKeepsServing) {
  StartPlugin(TimeSlicing(4));
  auto c = Registered("nvidia.com/gpu");
  v1beta1::AllocateResponse r;
  grpc::Status s = c->Allocate({{"GPU-nope::0"}}, &r);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("GPU-nope::0"), std::string::npos);
  EXPECT_FALSE(c->Allocate({{}}, &r).ok());
  EXPECT_FALSE(c->Allocate({}, &r).ok());
  std::vector<std::string> huge(50000, std::string(kGpus[0]) + "::0");
  EXPECT_FALSE(c->Allocate({huge}, &r).ok());
  std::vector<std::string> chosen;
  EXPECT_FALSE(c->Preferred({"junk"}, {}, 1, &chosen).ok());
  EXPECT_FALSE(c->Preferred({}, {}, -5, &chosen).ok());
  // A 4 MiB+ message is refused by the transport, not the process.
  std::vector<std::string> giant(5, std::string(1 << 20, 'x'));
  EXPECT_FALSE(c->Allocate({giant}, &r).ok());
  // Still serving, nothing lost.
  ASSERT_TRUE(c->Allocate({{std::string(kGpus[2]) + "::1"}}, &r).ok());
  EXPECT_EQ(c->Healthy(), 16);
  EXPECT_FALSE(plugin_->Wait(milliseconds(1)).has_value());
}

TEST_F(PluginTest, XidMakesEveryReplicaUnhealthyAndRecoveryRestores) {
  StartPlugin(TimeSlicing(4));
  auto c = Registered("nvidia.com/gpu");
  Event(std::string("xid ") + kGpus[1] + " 13");  // application XID: ignored
  Event(std::string("xid ") + kGpus[1] + " 79");
  ASSERT_TRUE(c->WaitFor(
      [](const auto& l) {
        int bad = 0;
        for (const auto& d : l.devices()) bad += d.health() == "Unhealthy";
        return bad == 4;
      },
      milliseconds(5000)));
  const auto after_xid = c->Devices();
  for (const auto& d : after_xid.devices()) {
    EXPECT_EQ(d.health() == "Unhealthy", d.id().rfind(kGpus[1], 0) == 0) << d.id();
  }
  Event(std::string("recover ") + kGpus[1]);
  ASSERT_TRUE(c->WaitFor(
      [](const auto& l) {
        for (const auto& d : l.devices()) {
          if (d.health() != "Healthy") return false;
        }
        return true;
      },
      milliseconds(5000)));
}

TEST_F(PluginTest, KubeletRestartMeansReregistration) {
  StartPlugin(TimeSlicing(4));
  ASSERT_TRUE(Registered("nvidia.com/gpu"));
  // The kubelet restarts: it wipes the directory's sockets and serves a new kubelet.sock.
  kubelet_->Stop();
  for (const auto& e : fs::directory_iterator(dir_ + "/dp")) fs::remove(e.path());
  kubelet_ = std::make_unique<demo::KubeletSim>(kubelet_sock_);
  ASSERT_TRUE(kubelet_->Start().ok());
  auto c = Registered("nvidia.com/gpu");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->Devices().devices_size(), 16);
  v1beta1::AllocateResponse r;
  EXPECT_TRUE(c->Allocate({{std::string(kGpus[0]) + "::0"}}, &r).ok());
}

TEST_F(PluginTest, SighupGoodConfigReloadsBadConfigKeepsRunningOne) {
  StartPlugin(TimeSlicing(4));
  ASSERT_TRUE(Registered("nvidia.com/gpu"));
  Write("config.yaml", TimeSlicing(8));
  plugin_->Signal(SIGHUP);
  auto c = Registered("nvidia.com/gpu", 2);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->Devices().devices_size(), 32);
  Write("config.yaml",
        "version: v1\nsharing:\n  timeSlicing:\n    resources:\n"
        "      - name: nvidia.com/gpu\n        replicas: zero\n");
  plugin_->Signal(SIGHUP);
  std::this_thread::sleep_for(milliseconds(500));
  EXPECT_EQ(kubelet_->Registrations("nvidia.com/gpu"), 2);
  EXPECT_EQ(c->Devices().devices_size(), 32);
  EXPECT_TRUE(c->stream_open());
  v1beta1::AllocateResponse r;
  EXPECT_TRUE(c->Allocate({{std::string(kGpus[0]) + "::7"}}, &r).ok());
  std::string log = Read(dir_ + "/plugin.log");
  EXPECT_NE(log.find("reload_rejected"), std::string::npos);
  EXPECT_NE(log.find("replicas"), std::string::npos);
  EXPECT_FALSE(plugin_->Wait(milliseconds(1)).has_value());
}

// With MPS's default failRequestsGreaterThanOne (every container holds one replica), the plugin
// bounds each GPU's threads to 100/N for the mps-daemon: the control daemon's default, which a
// container's own CUDA_MPS_ACTIVE_THREAD_PERCENTAGE cannot raise.
TEST_F(PluginTest, MpsWithOneReplicaPerContainerBoundsTheGpusThreads) {
  const std::string root = dir_ + "/mps";
  StartPlugin(
      "version: v1\nsharing:\n  mps:\n    resources:\n"
      "      - name: nvidia.com/gpu\n        replicas: 3\n",
      {"--mps-root", root});
  ASSERT_TRUE(Registered("nvidia.com/gpu")) << Read(dir_ + "/plugin.log");
  std::string want = "# GPUs shared through MPS (written by slicer device-plugin)\n";
  for (const char* g : kGpus) want += std::string(g) + " threads=33\n";
  EXPECT_EQ(Read(root + "/desired"), want);
}

// The whole MPS path on one node: the plugin with an MPS config tells the real `slicer
// mps-daemon` which GPUs to serve (over the fake nvidia-cuda-mps-control and fake NVML); the
// replicas stay Unhealthy until their GPU's daemon is ready, a container is sized by its replicas,
// a crash of the daemon takes the GPU's replicas down until it is back, and relabelling the node
// to time-slicing (a reload) stops the daemons and gives the GPUs their compute mode back.
TEST_F(PluginTest, MpsReplicasAreHealthyOnlyWhileTheirGpusDaemonIsReady) {
  const std::string root = dir_ + "/mps";
  StartPlugin(
      "version: v1\nsharing:\n  mps:\n    failRequestsGreaterThanOne: false\n    resources:\n"
      "      - name: nvidia.com/gpu\n        rename: nvidia.com/gpu.mps\n        devices: [0, 1]\n"
      "        replicas: 4\n",
      {"--mps-root", root});
  auto c = Registered("nvidia.com/gpu.mps");
  ASSERT_TRUE(c);
  ASSERT_TRUE(Registered("nvidia.com/gpu"));
  // One GPU's replicas' health in `list` ("mixed" when they differ). The predicates of WaitFor
  // get the list (calling Devices() inside one would wait on the lock WaitFor holds).
  auto health_in = [](const v1beta1::ListAndWatchResponse& list, int gpu) {
    std::set<std::string> h;
    for (const auto& d : list.devices()) {
      if (d.id().rfind(kGpus[gpu], 0) == 0) h.insert(d.health());
    }
    return h.size() == 1 ? *h.begin() : std::string("mixed");
  };
  auto health = [&](int gpu) { return health_in(c->Devices(), gpu); };
  // 2 GPUs x 4 MPS replicas; no daemon yet: they are not offered.
  ASSERT_EQ(c->Devices().devices_size(), 8);
  EXPECT_EQ(health(0), "Unhealthy");
  EXPECT_EQ(health(1), "Unhealthy");
  EXPECT_EQ(Read(root + "/desired"),
            std::string("# GPUs shared through MPS (written by slicer device-plugin)\n") +
                kGpus[0] + "\n" + kGpus[1] + "\n");
  std::string labels = Read(dir_ + "/features");
  EXPECT_NE(labels.find("nvidia.com/gpu.sharing-strategy=mps\n"), std::string::npos) << labels;

  auto daemon = Subprocess::Spawn(
      {{bin_, "mps-daemon", "--mps-root=" + root, "--tick=50"},
       {{"PATH", std::string(SLICER_TEST_FAKES_BIN_DIR) + ":/usr/bin:/bin"},
        {"LD_LIBRARY_PATH", fakes_},
        {"SLICER_FAKE_NVML", dir_ + "/machine.yaml"},
        {"SLICER_FAKE_NVML_EVENTS", dir_ + "/events"}},
       dir_ + "/mps-daemon.log"});
  ASSERT_TRUE(daemon.ok()) << daemon.status();
  auto both_healthy = [&](const v1beta1::ListAndWatchResponse& l) {
    return health_in(l, 0) == "Healthy" && health_in(l, 1) == "Healthy";
  };
  ASSERT_TRUE(c->WaitFor(both_healthy, milliseconds(10000))) << Read(dir_ + "/mps-daemon.log");
  EXPECT_EQ(Read(dir_ + "/machine.yaml.compute-mode").find("EXCLUSIVE_PROCESS") != std::string::npos,
            true);

  v1beta1::AllocateResponse r;
  ASSERT_TRUE(c->Allocate({{std::string(kGpus[1]) + "::0", std::string(kGpus[1]) + "::3"}}, &r).ok());
  const auto& env = r.container_responses(0).envs();
  EXPECT_EQ(env.at("CUDA_MPS_PIPE_DIRECTORY"), std::string("/mps/") + kGpus[1] + "/pipe");
  EXPECT_EQ(env.at("CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"), "50");
  EXPECT_EQ(env.at("CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"), "0=7680M");
  bool pipe_mounted = false;
  for (const auto& m : r.container_responses(0).mounts()) {
    pipe_mounted |= m.host_path() == root + "/" + kGpus[1] + "/pipe";
  }
  EXPECT_TRUE(pipe_mounted);

  // GPU 0's daemon crashes: its replicas go down, and come back with the restarted daemon.
  std::string pid = Read(root + "/" + kGpus[0] + "/pipe/nvidia-cuda-mps-control.pid");
  ASSERT_FALSE(pid.empty());
  ASSERT_EQ(::kill(std::stoi(pid), SIGKILL), 0);
  ASSERT_TRUE(c->WaitFor([&](const auto& l) { return health_in(l, 0) == "Unhealthy"; },
                         milliseconds(5000)));
  EXPECT_EQ(health(1), "Healthy");
  ASSERT_TRUE(c->WaitFor(both_healthy, milliseconds(10000))) << Read(dir_ + "/mps-daemon.log");

  // Time-slicing instead: the daemons are told to stop, and the compute modes come back.
  Write("config.yaml", TimeSlicing(4));
  plugin_->Signal(SIGHUP);
  ASSERT_TRUE(Registered("nvidia.com/gpu", 2));
  auto stopped = [&] {
    std::string modes = Read(dir_ + "/machine.yaml.compute-mode");
    return modes.find("EXCLUSIVE_PROCESS") == std::string::npos &&
           !fs::exists(root + "/" + kGpus[0] + "/state") &&
           !fs::exists(root + "/" + kGpus[1] + "/state");
  };
  for (int i = 0; i < 500 && !stopped(); ++i) std::this_thread::sleep_for(milliseconds(20));
  EXPECT_TRUE(stopped()) << Read(dir_ + "/machine.yaml.compute-mode") << Read(dir_ + "/mps-daemon.log");
  daemon->Signal(SIGTERM);
  EXPECT_TRUE(daemon->Wait(milliseconds(10000)).has_value());
}

TEST_F(PluginTest, SigtermStopsCleanlyAndRemovesSockets) {
  StartPlugin(TimeSlicing(4));
  auto c = Registered("nvidia.com/gpu");
  ASSERT_TRUE(c);
  plugin_->Signal(SIGTERM);
  auto status = plugin_->Wait(milliseconds(5000));
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << *status;
  for (const auto& e : fs::directory_iterator(dir_ + "/dp")) {
    EXPECT_EQ(e.path().filename(), "kubelet.sock");
  }
}

TEST_F(PluginTest, MalformedConfigAtStartExitsWithLineNumber) {
  StartPlugin("version: v1\nsharing:\n  timeSlicing:\n    renameByDefault: [\n");
  auto status = plugin_->Wait(milliseconds(5000));
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 1);
  std::string log = Read(dir_ + "/plugin.log");
  EXPECT_NE(log.find("config.yaml:"), std::string::npos) << log;
  EXPECT_EQ(kubelet_->Registrations("nvidia.com/gpu"), 0);
}

TEST_F(PluginTest, NvmlMissingFailsOrWaitsPerFailOnInitError) {
  Write("machine.yaml", "this is: [not a machine\n");
  StartPlugin(TimeSlicing(4));
  auto status = plugin_->Wait(milliseconds(5000));
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(WEXITSTATUS(*status), 1);
  StartPlugin(TimeSlicing(4), {"--fail-on-init-error=false"});
  // Still running, advertising nothing: no resource registered with the kubelet, as NVIDIA's
  // plugin waits without devices.
  EXPECT_FALSE(plugin_->Wait(milliseconds(500)).has_value());
  EXPECT_NE(Read(dir_ + "/plugin.log").find("nvml_init_failed"), std::string::npos);
  EXPECT_TRUE(kubelet_->Resources().empty()) << absl::StrJoin(kubelet_->Resources(), ",");
  EXPECT_EQ(kubelet_->Registrations("nvidia.com/gpu"), 0);
}

}  // namespace
}  // namespace slicer
