// `slicer arbiter`: the node daemon that enforces time shares and serves per-pod metrics
// (docs/arbiter.md). A thin main over src/arbiter: flags, config file, attribution choice,
// signals.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "src/arbiter/config.h"
#include "src/arbiter/metrics_http.h"
#include "src/arbiter/podresources.h"
#include "src/arbiter/server.h"
#include "src/cli/commands.h"
#include "src/cli/flags.h"
#include "src/cli/socket_lock.h"
#include "src/common/log.h"
#include "src/common/units.h"
#include "src/k8s/api_client.h"

namespace slicer::cli {
namespace {

void DefineFlags(FlagSet& f) {
  f.Add("socket", "SLICER_ARBITER_SOCKET", SLICER_ARB_DEFAULT_SOCKET,
        "unix socket the clients (the shim) connect to");
  f.Add("config-file", "SLICER_ARBITER_CONFIG", "",
        "YAML file with an `arbiter:` section (policy, quantum, batchQuantum, maxQuantum, "
        "priorityFloor, weightOverride, failClosed, revokeGrace, maxQueued, handover, "
        "trustClaims)");
  f.Add("policy", "SLICER_ARBITER_POLICY", "", "fair, priority or off (beats the file)");
  f.Add("quantum", "SLICER_ARBITER_QUANTUM", "", "lease per unit of weight, e.g. 20ms");
  f.Add("batch-quantum", "SLICER_ARBITER_BATCH_QUANTUM", "",
        "lease per unit of weight while only saturating clients wait, e.g. 80ms (at most "
        "--quantum: off)");
  f.Add("priority-floor", "SLICER_ARBITER_PRIORITY_FLOOR", "",
        "least share of each lower priority class with work, 0..0.5");
  f.Add("fail-closed", "SLICER_ARBITER_FAIL_CLOSED", "",
        "clients wait for the arbiter while it is down (true/false)");
  f.Add("metrics-port", "SLICER_METRICS_PORT", "9400", "Prometheus /metrics port (0: off)");
  f.Add("metrics-address", "SLICER_METRICS_ADDRESS", "0.0.0.0", "address for /metrics");
  f.Add("proc-root", "SLICER_PROC_ROOT", "/proc", "where the host's /proc is mounted");
  f.Add("attribution", "SLICER_ATTRIBUTION", "auto",
        "kubelet (PodResources API), none (standalone), auto (kubelet when its socket exists)");
  f.Add("pod-resources-socket", "POD_RESOURCES_SOCKET", arbiter::kDefaultPodResourcesSocket,
        "the kubelet's PodResources socket");
  f.Add("node-name", "NODE_NAME", "", "this node (pod annotations via the API server)");
  f.Add("kube-api-server", "SLICER_KUBE_API_SERVER", "",
        "API server URL (default: in-cluster from KUBERNETES_SERVICE_HOST/PORT)");
  f.Add("log-level", "SLICER_LOG_LEVEL", "info", "debug, info, warning, error");
  f.Add("exit-when-idle", "SLICER_ARBITER_EXIT_WHEN_IDLE", "",
        "exit after this long without clients, e.g. 60s (what `slicer run` starts; default: "
        "never)");
}

absl::StatusOr<arbiter::ArbiterConfig> BuildConfig(const FlagSet& flags) {
  arbiter::ArbiterConfig c;
  if (std::string file = flags.Get("config-file"); !file.empty()) {
    auto loaded = arbiter::LoadArbiterConfig(file);
    if (!loaded.ok()) return loaded.status();
    c = *loaded;
  }
  if (std::string v = flags.Get("policy"); !v.empty()) {
    auto p = arbiter::ParsePolicy(v);
    if (!p.ok())
      return absl::InvalidArgumentError(absl::StrCat("--policy: ", p.status().message()));
    c.scheduler.policy = *p;
  }
  if (std::string v = flags.Get("quantum"); !v.empty()) {
    auto d = ParseDuration(v);
    if (!d.ok())
      return absl::InvalidArgumentError(absl::StrCat("--quantum: ", d.status().message()));
    c.scheduler.quantum = *d;
    c.scheduler.max_quantum = std::max(c.scheduler.max_quantum, *d);
  }
  if (std::string v = flags.Get("batch-quantum"); !v.empty()) {
    auto d = ParseDuration(v);
    if (!d.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--batch-quantum: ", d.status().message()));
    }
    c.scheduler.batch_quantum = *d;
  }
  if (std::string v = flags.Get("priority-floor"); !v.empty()) {
    char* end = nullptr;
    double f = std::strtod(v.c_str(), &end);
    if (end == v.c_str() || *end != '\0') {
      return absl::InvalidArgumentError("--priority-floor: want a number between 0 and 0.5");
    }
    c.scheduler.priority_floor = f;
  }
  if (std::string v = flags.Get("fail-closed"); !v.empty()) {
    auto b = ParseBool(v);
    if (!b.ok()) return absl::InvalidArgumentError("--fail-closed: want true or false");
    c.fail_closed = *b;
  }
  if (absl::Status s = arbiter::ValidateArbiterConfig(c); !s.ok()) return s;
  return c;
}

// Marks every descriptor above stderr close-on-exec.
void CloseOnExecAll() {
  DIR* d = ::opendir("/proc/self/fd");
  if (d == nullptr) return;
  int own = ::dirfd(d);
  while (dirent* e = ::readdir(d)) {
    int fd = std::atoi(e->d_name);
    if (fd > 2 && fd != own) ::fcntl(fd, F_SETFD, ::fcntl(fd, F_GETFD) | FD_CLOEXEC);
  }
  ::closedir(d);
}

// Claims `socket` for the whole life of this process (src/cli/socket_lock.h): returns the open,
// locked <socket>.lock, or -1 with a message printed when another arbiter holds it. Taken before
// the server replaces a stale socket file and binds its own, so that two arbiters started at once
// cannot both do it (each would find nobody answering yet, and the later one would unlink the
// other's socket). The kernel releases it when the process ends; a reload passes it on.
int ClaimSocket(const std::string& socket) {
  const std::string path = ArbiterLockPath(socket);
  // Handed over already locked: by the `slicer run` that started this arbiter, or by this
  // arbiter before a reload.
  if (const char* env = std::getenv(kArbiterLockFdEnv); env && *env) {
    int fd = std::atoi(env);
    ::unsetenv(kArbiterLockFdEnv);
    struct stat held{}, file{};
    if (fd > 2 && ::fstat(fd, &held) == 0 && ::stat(path.c_str(), &file) == 0 &&
        held.st_dev == file.st_dev && held.st_ino == file.st_ino) {
      if (::flock(fd, LOCK_EX | LOCK_NB) == 0) {  // ours already: a no-op
        ::fcntl(fd, F_SETFD, FD_CLOEXEC);
        WriteLockPid(fd);
        return fd;
      }
      ::close(fd);
    }
  }
  MakeParentDirs(socket);
  LockAttempt lock = TryLock(path);
  if (lock.fd >= 0) {
    WriteLockPid(lock.fd);
    return lock.fd;
  }
  if (lock.busy) {
    std::string pid = ReadLockPid(path);
    std::fprintf(stderr,
                 "slicer arbiter: another arbiter%s serves %s (or is starting to): it holds %s; "
                 "not starting a second one\n",
                 pid.empty() ? "" : (" (pid " + pid + ")").c_str(), socket.c_str(), path.c_str());
  } else {
    std::fprintf(stderr, "slicer arbiter: cannot claim %s: %s\n", socket.c_str(),
                 lock.error.c_str());
  }
  return -1;
}

}  // namespace

int ArbiterMain(int argc, char** argv) {
  FlagSet flags("slicer arbiter [flags]");
  DefineFlags(flags);
  if (int rc = ParseCommandLine(flags, argc, argv, "slicer arbiter"); rc >= 0) return rc;
  // Blocked before any thread starts (metrics, attribution), so that only the signal thread
  // below takes them: a SIGHUP landing on another thread would end the process.
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &mask, nullptr);
  auto config = BuildConfig(flags);
  if (!config.ok()) {
    std::fprintf(stderr, "slicer arbiter: %s\n", std::string(config.status().message()).c_str());
    return 2;
  }
  std::optional<std::chrono::nanoseconds> idle_exit;
  if (std::string v = flags.Get("exit-when-idle"); !v.empty()) {
    auto d = ParseDuration(v);
    if (!d.ok() || d->count() <= 0) {
      std::fprintf(stderr,
                   "slicer arbiter: --exit-when-idle \"%s\": want a positive duration, "
                   "e.g. 60s or 5m\n",
                   v.c_str());
      return 2;
    }
    idle_exit = *d;
  }
  // One arbiter per socket, held until the process ends (a reload keeps it).
  int socket_lock = -1;
  if (!flags.Get("socket").empty()) {
    socket_lock = ClaimSocket(flags.Get("socket"));
    if (socket_lock < 0) return 1;
  }

  // Attribution: the kubelet's records when on a node, none on a workstation.
  std::string mode = flags.Get("attribution");
  std::string pr_socket = flags.Get("pod-resources-socket");
  struct stat st{};
  bool kubelet = mode == "kubelet" || (mode == "auto" && ::stat(pr_socket.c_str(), &st) == 0);
  if (mode != "kubelet" && mode != "none" && mode != "auto") {
    std::fprintf(stderr, "slicer arbiter: --attribution: want kubelet, none or auto, not \"%s\"\n",
                 mode.c_str());
    return 2;
  }
  std::unique_ptr<arbiter::KubeletAttributor> attributor;
  if (kubelet) {
    std::optional<k8s::ApiServer> api;
    std::string node = flags.Get("node-name");
    if (!node.empty()) {
      auto s = k8s::InClusterApiServer(flags.Get("kube-api-server"));
      if (s.ok()) {
        api = *s;
      } else {
        SLOG(kWarning, "pod_annotations_off").Kv("error", std::string(s.status().message()));
      }
    }
    attributor = std::make_unique<arbiter::KubeletAttributor>(pr_socket, api, node, RealClock());
    if (absl::Status s = attributor->Refresh(); !s.ok()) {
      SLOG(kWarning, "pod_resources_unavailable")
          .Kv("socket", pr_socket)
          .Kv("error", std::string(s.message()))
          .Kv("effect", "clients claiming replicas are refused until the kubelet answers");
    }
  } else {
    SLOG(kInfo, "attribution_off")
        .Kv("reason", mode == "none" ? "--attribution=none" : "no kubelet PodResources socket");
  }

  arbiter::ServerOptions options;
  options.socket_path = flags.Get("socket");
  options.proc_root = flags.Get("proc-root");
  options.config = *config;
  options.trust_claims = config->trust_claims.value_or(!kubelet);
  arbiter::Server server(options, RealClock(), attributor.get());
  if (absl::Status s = server.Start(); !s.ok()) {
    std::fprintf(stderr, "slicer arbiter: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  arbiter::MetricsHttpServer metrics([&server] { return server.RenderMetrics(); });
  int port = std::atoi(flags.Get("metrics-port").c_str());
  if (port > 0) {
    if (absl::Status s = metrics.Start(flags.Get("metrics-address"), port); !s.ok()) {
      std::fprintf(stderr, "slicer arbiter: %s\n", std::string(s.message()).c_str());
      return 1;
    }
    SLOG(kInfo, "metrics_listening").Kv("port", metrics.port());
  }

  // SIGTERM / SIGINT stop the loop; SIGHUP reloads: the flags and the config file are read
  // again, and when they are valid the arbiter stops and executes itself afresh with the same
  // arguments (same PID, same socket; clients reconnect as after any arbiter restart, memory
  // caps never depend on it). A bad new config is reported and the running one stays in force.
  // Taken synchronously on a thread of their own.
  std::atomic<bool> reexec{false};
  std::thread signals([&] {
    for (;;) {
      int sig = 0;
      sigwait(&mask, &sig);
      if (sig == SIGHUP) {
        auto fresh = BuildConfig(flags);
        if (!fresh.ok()) {
          SLOG(kError, "reload_refused")
              .Kv("error", std::string(fresh.status().message()))
              .Kv("effect", "the running config stays in force");
          continue;
        }
        SLOG(kInfo, "reloading").Kv("how", "restart in place with the same arguments");
        reexec = true;
      } else {
        SLOG(kInfo, "stopping").Kv("signal", sig);
      }
      server.Stop();
      return;
    }
  });
  // --exit-when-idle: a watcher that stops the loop once nobody has been connected that long.
  std::atomic<bool> running{true};
  std::thread idle_watch;
  if (idle_exit) {
    idle_watch = std::thread([&] {
      auto idle_since = std::chrono::steady_clock::now();
      while (running.load()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        auto now = std::chrono::steady_clock::now();
        if (server.ConnectedClients() > 0) {
          idle_since = now;
        } else if (now - idle_since >= *idle_exit) {
          SLOG(kInfo, "stopping").Kv("reason", "no clients for --exit-when-idle");
          server.Stop();
          return;
        }
      }
    });
  }
  server.Run();
  running = false;
  if (idle_watch.joinable()) idle_watch.join();
  metrics.Stop();
  // The signal thread may still wait when Run ended by itself: wake it.
  if (!reexec) pthread_kill(signals.native_handle(), SIGTERM);
  signals.join();
  if (reexec) {
    std::vector<char*> args;
    std::string self = "/proc/self/exe", command = "arbiter";
    args.push_back(self.data());
    args.push_back(command.data());
    for (int i = 1; i < argc; ++i) args.push_back(argv[i]);
    args.push_back(nullptr);
    pthread_sigmask(SIG_UNBLOCK, &mask, nullptr);
    CloseOnExecAll();  // the old sockets must not outlive it in the new process
    // ... but the socket's lock must: the new process takes it over, so that no other arbiter
    // can claim the socket in between.
    if (socket_lock >= 0 && ::fcntl(socket_lock, F_SETFD, 0) == 0) {
      ::setenv(kArbiterLockFdEnv, std::to_string(socket_lock).c_str(), 1);
    }
    ::execv(self.c_str(), args.data());
    SLOG(kError, "reload_failed").Kv("error", std::strerror(errno));
    return 1;
  }
  return 0;
}

}  // namespace slicer::cli
