// `slicer demo`: the device plugin on a simulated node, driven the way the kubelet drives it,
// narrated on stdout. With no GPU it simulates a g4dn.12xlarge (4x Tesla T4) through the fake
// driver libraries built beside the binary (fakes/); with a GPU it uses the real one.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "cuda.h"
#include "src/cli/commands.h"
#include "src/common/arbiter_protocol.h"
#include "src/common/shim_contract.h"
#include "src/common/subprocess.h"
#include "src/common/units.h"
#include "src/demo/kubelet_sim.h"
#include "src/nvml/nvml.h"

namespace slicer::cli {

int DemoWorkload(double seconds, int kernel_us, const std::string& report);  // workload.cc

namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

constexpr char kResource[] = "nvidia.com/gpu";
constexpr int kReplicas = 4;

void Say(const std::string& s) {
  std::printf("%s\n", s.c_str());
  std::fflush(stdout);
}

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::trunc) << text;
}

std::string Config(int replicas, bool fail_gt_one) {
  return absl::StrCat(
      "version: v1\n"
      "flags:\n"
      "  plugin:\n"
      "    deviceListStrategy: envvar\n"
      "sharing:\n"
      "  timeSlicing:\n"
      "    failRequestsGreaterThanOne: ",
      fail_gt_one ? "true" : "false",
      "\n"
      "    resources:\n"
      "      - name: nvidia.com/gpu\n"
      "        replicas: ",
      replicas, "\n");
}

std::string Env(const v1beta1::ContainerAllocateResponse& c, const std::string& key) {
  auto it = c.envs().find(key);
  return it == c.envs().end() ? "" : it->second;
}

// "GPU-1=4026531840,GPU-2=..." -> "GPU-1: 3.8GiB, ..."
std::string DescribeCaps(const std::string& limits) {
  if (limits.empty()) return "none";
  std::vector<std::string> out;
  for (absl::string_view pair : absl::StrSplit(limits, ',')) {
    std::vector<std::string> kv = absl::StrSplit(pair, '=');
    if (kv.size() != 2) continue;
    auto bytes = ParseSize(kv[1]);
    out.push_back(
        absl::StrCat(kv[0].substr(0, 12), "...: ", bytes.ok() ? FormatSize(*bytes) : kv[1]));
  }
  return absl::StrJoin(out, ", ");
}

struct Pod {
  std::string name;
  std::vector<std::string> ids;              // replica IDs the kubelet gave it
  v1beta1::ContainerAllocateResponse alloc;  // what the plugin said the container gets
};

struct Node {
  std::shared_ptr<demo::PluginClient> client;
  std::set<std::string> allocated;  // replica IDs held by running pods, as the kubelet tracks
  std::vector<Pod> pods;
  demo::PodResourcesSim* pod_resources = nullptr;
};

// Plays the kubelet for one pod with one container asking for `shares` replicas.
void SchedulePod(Node& node, const std::string& pod, int shares) {
  std::vector<std::string> available;
  const auto listed = node.client->Devices();  // keep the response alive while iterating it
  for (const auto& d : listed.devices()) {
    if (d.health() == "Healthy" && !node.allocated.count(d.id())) available.push_back(d.id());
  }
  std::vector<std::string> chosen;
  grpc::Status s = node.client->Preferred(available, {}, shares, &chosen);
  if (!s.ok()) {
    Say(absl::StrCat("  ", pod, " (", shares, " shares): not admitted: ", s.error_message()));
    return;
  }
  v1beta1::AllocateResponse resp;
  s = node.client->Allocate({chosen}, &resp);
  if (!s.ok()) {
    Say(absl::StrCat("  ", pod, " (", shares, " shares): allocation refused: ", s.error_message()));
    return;
  }
  for (const auto& id : chosen) node.allocated.insert(id);
  const auto& c = resp.container_responses(0);
  node.pods.push_back({pod, chosen, c});
  if (node.pod_resources) node.pod_resources->Assign("default", pod, "main", kResource, chosen);
  Say(absl::StrCat("  ", pod, " asks for ", shares, " share", shares > 1 ? "s" : "",
                   " -> plugin prefers ", absl::StrJoin(chosen, " ")));
  Say(absl::StrCat("      NVIDIA_VISIBLE_DEVICES=", Env(c, "NVIDIA_VISIBLE_DEVICES")));
  Say(absl::StrCat("      memory cap: ", DescribeCaps(Env(c, SLICER_ENV_MEMORY_LIMITS))));
  if (std::string a = Env(c, SLICER_ENV_ARBITER_SOCKET); !a.empty()) {
    std::string ids = Env(c, SLICER_ENV_REPLICA_IDS);
    Say(absl::StrCat("      arbiter: ", a, ", replicas ",
                     ids.size() > 60 ? ids.substr(0, 57) + "..." : ids));
  }
  std::vector<std::string> mounts;
  for (const auto& m : c.mounts()) mounts.push_back(m.container_path());
  if (!mounts.empty()) Say(absl::StrCat("      mounts: ", absl::StrJoin(mounts, ", ")));
}

// Plays the container runtime: the container's environment with paths inside it mapped back to
// the host paths its mounts come from, and the shim preloaded (ld.so.preload is a mount the demo
// cannot make on the host).
std::map<std::string, std::string> ContainerEnv(const Pod& pod, const std::string& shim,
                                                const std::map<std::string, std::string>& base) {
  std::map<std::string, std::string> env = base;
  for (const auto& [k, v] : pod.alloc.envs()) {
    std::string value = v;
    for (const auto& m : pod.alloc.mounts()) {
      const std::string& in = m.container_path();
      if (value.rfind(in, 0) == 0 && (value.size() == in.size() || value[in.size()] == '/')) {
        value = m.host_path() + value.substr(in.size());
      }
    }
    env[k] = value;
  }
  env["LD_PRELOAD"] = shim;
  return env;
}

std::string ReportField(const std::string& report, const std::string& key) {
  for (absl::string_view kv : absl::StrSplit(report, absl::ByAnyChar(" \n"))) {
    if (absl::StartsWith(kv, key + "=")) return std::string(kv.substr(key.size() + 1));
  }
  return "";
}

int FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
    port = ntohs(a.sin_port);
  }
  ::close(fd);
  return port;
}

// The pods run: each one's container, as Allocate described it, under the shim and the arbiter.
bool RunPods(Node& node, const std::string& self, const std::string& dir, int metrics_port,
             const std::map<std::string, std::string>& base_env) {
  const std::string shim = dir + "/shim/" SLICER_SHIM_NAME;
  std::vector<std::pair<const Pod*, Subprocess>> running;
  for (const Pod& pod : node.pods) {
    // The pod's own /dev/shm, where the processes of a container share its memory ledger.
    std::map<std::string, std::string> env = ContainerEnv(pod, shim, base_env);
    env[SLICER_ENV_LEDGER_DIR] = dir + "/shm-" + pod.name;
    fs::create_directories(env[SLICER_ENV_LEDGER_DIR]);
    auto p = Subprocess::Spawn(
        {{self, "demo", "--workload", "3", "2000", dir + "/" + pod.name + ".report"},
         env,
         dir + "/" + pod.name + ".log"});
    if (!p.ok()) {
      Say(absl::StrCat("    ", pod.name, ": ", p.status().message()));
      return false;
    }
    running.emplace_back(&pod, std::move(*p));
  }
  usleep(2000 * 1000);
  Say(absl::StrCat("    `slicer status` while they run (the arbiter's /metrics, port ",
                   metrics_port, "):"));
  std::string endpoint = absl::StrCat("http://127.0.0.1:", metrics_port, "/metrics");
  std::string status_argv0 = "status", status_flag = "--endpoint";
  char* sargv[] = {status_argv0.data(), status_flag.data(), endpoint.data(), nullptr};
  std::fflush(stdout);
  StatusMain(3, sargv);
  std::fflush(stdout);
  bool ok = true;
  Say("    what each pod saw (its own report):");
  for (auto& [pod, proc] : running) {
    auto st = proc.Wait(std::chrono::seconds(20));
    std::ifstream in(dir + "/" + pod->name + ".report");
    std::string report((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (!st || !WIFEXITED(*st) || WEXITSTATUS(*st) != 0 || report.empty()) {
      Say(absl::StrCat("      ", pod->name, ": failed, see ", dir, "/", pod->name, ".log"));
      ok = false;
      continue;
    }
    auto total = ParseSize(ReportField(report, "mem_total"));
    std::string over = ReportField(report, "over_cap");
    Say(absl::StrCat(
        "      ", pod->name, " (", pod->ids.size(), " of ", kReplicas, "): sees ",
        total.ok() ? FormatSize(*total) : "?", " of GPU memory; ", "asking for more -> ",
        over == std::to_string(CUDA_ERROR_OUT_OF_MEMORY) ? "out of memory" : "error " + over,
        "; GPU time ", ReportField(report, "gpu_s"), " s in ", ReportField(report, "wall_s"),
        " s"));
  }
  return ok;
}

std::string Allocatable(const Node& node) {
  return absl::StrCat(node.client->Healthy(), " of ", node.client->Devices().devices_size());
}

}  // namespace

int DemoMain(int argc, char** argv) {
  if (argc == 5 && std::string(argv[1]) == "--workload") {  // a demo pod's program
    return DemoWorkload(std::atof(argv[2]), std::atoi(argv[3]), argv[4]);
  }
  bool simulate = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      Say("usage: slicer demo [--simulate]\n\nRuns the device plugin on a simulated node (4x "
          "Tesla T4, no GPU needed; a real GPU is used when one is present) and plays the "
          "kubelet.\n\n  --simulate  the simulated node even where a GPU is present");
      return 0;
    }
    if (arg == "--simulate") {
      simulate = true;
    } else {
      std::fprintf(stderr, "slicer demo: unknown argument \"%s\" (see slicer demo --help)\n",
                   arg.c_str());
      return 2;
    }
  }
  const std::string self_dir = SelfDir();
  const std::string self = self_dir + "/slicer";
  char tmpl[] = "/tmp/slicer-demo-XXXXXX";
  if (!mkdtemp(tmpl)) {
    std::perror("mkdtemp");
    return 1;
  }
  const std::string dir = tmpl;
  const std::string plugin_dir = dir + "/device-plugins";
  fs::create_directories(plugin_dir);
  const std::string kubelet_sock = plugin_dir + "/kubelet.sock";
  const std::string log = dir + "/plugin.log";

  // Real GPU or simulated node?
  bool real = false;
  if (!simulate && std::getenv("SLICER_FAKE_NVML") == nullptr) {
    auto nvml = nvml::Load({});
    if (nvml.ok()) {
      auto sys = (*nvml)->Discover();
      real = sys.ok() && !sys->devices.empty();
    }
  }
  std::map<std::string, std::string> env;
  std::vector<std::string> uuids;
  const std::string events = dir + "/nvml-events";
  if (!real) {
    const std::string machine = dir + "/machine.yaml";
    std::string yaml = "driverVersion: \"580.159.04\"\ndevices:\n";
    for (int i = 0; i < 4; ++i) {
      char uuid[64];
      std::snprintf(uuid, sizeof uuid, "GPU-%d%d%d%d%d%d%d%d-de70-4c0d-8a1e-00000000000%d", i, i, i,
                    i, i, i, i, i, i);
      uuids.push_back(uuid);
      absl::StrAppend(&yaml, "  - {uuid: ", uuid,
                      ", name: Tesla T4, memoryMiB: 15360, numaNode: ", i < 2 ? 0 : 1, "}\n");
    }
    WriteFile(machine, yaml);
    WriteFile(events, "");
    const char* old = std::getenv("LD_LIBRARY_PATH");
    env["LD_LIBRARY_PATH"] = self_dir + "/fakes" + (old ? std::string(":") + old : "");
    env["SLICER_FAKE_NVML"] = machine;
    env["SLICER_FAKE_NVML_EVENTS"] = events;
  }
  // The shim, as the DaemonSet's init container installs it on a node.
  const std::string shim_dir = dir + "/shim";
  fs::create_directories(shim_dir);
  bool have_shim = fs::exists(self_dir + "/" + SLICER_SHIM_NAME);
  if (have_shim)
    fs::copy_file(self_dir + "/" + SLICER_SHIM_NAME, shim_dir + "/" + SLICER_SHIM_NAME);
  const std::string config = dir + "/config.yaml";
  WriteFile(config, Config(kReplicas, false));

  Say(real
          ? "gpu-slicer demo on this machine's GPU(s)"
          : "gpu-slicer demo: a simulated g4dn.12xlarge (4x Tesla T4, 15 GiB each), no GPU needed");
  Say(absl::StrCat("work dir: ", dir, " (plugin log: ", log, ")\n"));
  Say(absl::StrCat("config (NVIDIA's format, time-slicing x", kReplicas, "):"));
  Say(Config(kReplicas, false));

  demo::KubeletSim kubelet(kubelet_sock);
  fs::create_directories(dir + "/pod-resources");
  demo::PodResourcesSim pod_resources(dir + "/pod-resources/kubelet.sock");
  if (!kubelet.Start().ok() || !pod_resources.Start().ok()) {
    Say("cannot start the simulated kubelet");
    return 1;
  }
  // The node arbiter, as the DaemonSet runs it beside the plugin: pods are named through the
  // (simulated) kubelet's PodResources API.
  const std::string arbiter_dir = dir + "/arbiter";
  fs::create_directories(arbiter_dir);
  const std::string arbiter_sock = arbiter_dir + "/arbiter.sock";
  const int metrics_port = FreePort();
  auto arbiter = Subprocess::Spawn(
      {{self, "arbiter", "--socket", arbiter_sock, "--attribution", "kubelet",
        "--pod-resources-socket", dir + "/pod-resources/kubelet.sock", "--metrics-address",
        "127.0.0.1", "--metrics-port", std::to_string(metrics_port)},
       env,
       dir + "/arbiter.log"});
  if (!arbiter.ok()) {
    Say(std::string(arbiter.status().message()));
    return 1;
  }
  auto start = std::chrono::steady_clock::now();
  auto plugin = Subprocess::Spawn(
      {{self, "device-plugin", "--config-file", config, "--kubelet-socket", kubelet_sock,
        "--feature-file", dir + "/features", "--shim-dir", shim_dir, "--arbiter-socket",
        arbiter_sock, "--health-probe-interval", "100ms", "--health-recovery-delay", "0s"},
       env,
       log});
  if (!plugin.ok()) {
    Say(std::string(plugin.status().message()));
    return 1;
  }
  Node node;
  node.pod_resources = &pod_resources;
  node.client = kubelet.WaitForRegistration(kResource, 1, milliseconds(10000));
  if (!node.client || !node.client->WaitFor([](const auto& l) { return l.devices_size() > 0; },
                                            milliseconds(5000))) {
    Say(absl::StrCat("the plugin did not register; its log (", log, "):"));
    std::system(("cat " + log).c_str());
    return 1;
  }
  auto ms = std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - start);
  Say(absl::StrCat("[1] the plugin registered ", kResource, " with the kubelet in ", ms.count(),
                   " ms"));
  auto devices = node.client->Devices();
  Say(absl::StrCat("    node capacity ", kResource, " = ", devices.devices_size(),
                   real ? "" : " (4 GPUs x 4 replicas)"));
  for (int i = 0; i < devices.devices_size(); i += kReplicas) {
    const auto& d = devices.devices(i);
    Say(absl::StrCat("    ", d.id(), " ... (", d.health(), ", NUMA ",
                     d.topology().nodes_size() ? d.topology().nodes(0).id() : -1, ")"));
  }
  std::ifstream labels(dir + "/features");
  std::string line, label_text;
  while (std::getline(labels, line)) {
    if (line.find("gpu.") != std::string::npos) label_text += "    " + line + "\n";
  }
  Say("    node labels (NFD feature file):\n" + label_text);

  Say("[2] pods arrive; the kubelet asks the plugin where to put them, then allocates");
  if (!have_shim) Say("    (libslicer.so is not built: memory-capped allocations will be refused)");
  SchedulePod(node, "inference-a", 1);
  SchedulePod(node, "inference-b", 1);
  SchedulePod(node, "trainer", 2);
  SchedulePod(node, "notebook", 1);
  Say(absl::StrCat(
      "    allocatable now: ", devices.devices_size() - static_cast<int>(node.allocated.size()),
      " replicas free of ", devices.devices_size(), "\n"));

  bool pods_ok = true;
  if (have_shim) {
    Say("[3] the pods run for 3 s, each a GPU program under the shim (libslicer.so) and the "
        "arbiter:\n    memory is capped per pod; a GPU's time is split by replicas held");
    std::map<std::string, std::vector<const Pod*>> by_gpu;  // what the pods were given
    for (const Pod& p : node.pods) by_gpu[Env(p.alloc, "NVIDIA_VISIBLE_DEVICES")].push_back(&p);
    for (const auto& [gpu, pods] : by_gpu) {
      std::vector<std::string> names, parts;
      for (const Pod* p : pods) {
        names.push_back(p->name);
        parts.push_back(std::to_string(p->ids.size()));
      }
      Say(pods.size() == 1
              ? absl::StrCat("      ", names[0], " has ", gpu.substr(0, 12), "... to itself")
              : absl::StrCat("      ", gpu.substr(0, 12), "...: ", absl::StrJoin(names, ", "),
                             " at ", absl::StrJoin(parts, ":")));
    }
    pods_ok = RunPods(node, self, dir, metrics_port, env);
    Say("");
  }

  if (!real) {
    Say(absl::StrCat("[4] the driver reports XID 79 (GPU fell off the bus) on ", uuids[2]));
    WriteFile(events, absl::StrCat("xid ", uuids[2], " 79\n"));
    node.client->WaitFor(
        [](const auto& l) {
          int u = 0;
          for (const auto& d : l.devices()) u += d.health() != "Healthy";
          return u == 4;
        },
        milliseconds(5000));
    Say(absl::StrCat("    healthy devices: ", Allocatable(node), " (all 4 replicas of that GPU)"));
    std::ofstream(events, std::ios::app) << "recover " << uuids[2] << "\n";
    node.client->WaitFor(
        [](const auto& l) {
          for (const auto& d : l.devices()) {
            if (d.health() != "Healthy") return false;
          }
          return true;
        },
        milliseconds(5000));
    Say(absl::StrCat("    the GPU answers again: healthy devices ", Allocatable(node), "\n"));
  }

  Say("[5] config change: replicas 8, failRequestsGreaterThanOne; SIGHUP reloads");
  WriteFile(config, Config(8, true));
  plugin->Signal(SIGHUP);
  node.client = kubelet.WaitForRegistration(kResource, 2, milliseconds(5000));
  if (node.client && node.client->WaitFor([](const auto& l) { return l.devices_size() > 0; },
                                          milliseconds(5000))) {
    node.allocated.clear();
    Say(absl::StrCat("    re-registered: capacity ", node.client->Devices().devices_size()));
    SchedulePod(node, "trainer-2", 2);
  }
  Say("    a broken config (replicas: -1) is rejected and the running one stays:");
  WriteFile(config,
            "version: v1\nsharing:\n  timeSlicing:\n    resources:\n"
            "      - name: nvidia.com/gpu\n        replicas: -1\n");
  plugin->Signal(SIGHUP);
  usleep(500 * 1000);
  Say(absl::StrCat("    registrations: ", kubelet.Registrations(kResource), ", capacity still ",
                   node.client ? node.client->Devices().devices_size() : 0, "\n"));

  Say("[6] SIGTERM: the plugin stops and removes its socket");
  plugin->Signal(SIGTERM);
  auto status = plugin->Wait(milliseconds(5000));
  bool clean = status && WIFEXITED(*status) && WEXITSTATUS(*status) == 0;
  bool socket_gone = true;
  for (const auto& e : fs::directory_iterator(plugin_dir)) {
    if (e.path().filename() != "kubelet.sock") socket_gone = false;
  }
  Say(absl::StrCat("    exit ", clean ? "0" : "non-zero", ", plugin sockets ",
                   socket_gone ? "removed" : "LEFT BEHIND"));
  kubelet.Stop();
  arbiter->Signal(SIGTERM);
  arbiter->Wait(milliseconds(5000));
  pod_resources.Stop();
  Say(absl::StrCat("\nlogs: ", log, ", ", dir, "/arbiter.log"));
  return clean && socket_gone && pods_ok ? 0 : 1;
}

}  // namespace slicer::cli
