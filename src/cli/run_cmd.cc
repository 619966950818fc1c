// `slicer run [--memory SIZE] [--weight W] [--priority P] -- CMD [ARGS...]`: runs a process tree
// under libslicer.so without Kubernetes. Every process of the tree shares one memory cap per GPU
// (a fresh container ID and ledger), exactly as the processes of one container do under the
// device plugin.
//
// Time shares (--weight, --priority, or SLICER_ARBITER_SOCKET already set): the tree is a client
// of a `slicer arbiter` on this machine. The socket is $SLICER_ARBITER_SOCKET when set, else the
// node's (/var/run/gpu-slicer/arbiter.sock) when an arbiter answers there, else a per-user one
// ($XDG_RUNTIME_DIR/gpu-slicer/arbiter.sock, or /tmp/gpu-slicer-<uid>/arbiter.sock). When nobody
// answers on the chosen socket, an arbiter is started there, detached: policy `priority`, no
// kubelet (so the claimed weight and priority count), /metrics on 127.0.0.1:--metrics-port,
// its log in arbiter.log beside the socket; it exits after 60 s without clients
// (SLICER_RUN_ARBITER_IDLE overrides), so the next `slicer run` starts a fresh one. `slicer run`s
// started at once end on one arbiter: they take turns under <socket>.run.lock, and the arbiter
// owns <socket>.lock (src/cli/socket_lock.h).
//
// --mps (src/cli/run_mps.h): the tree is a client of a local MPS control daemon instead, sized by
// --threads and --memory, and not gated by an arbiter.
//
// The shim is found at $SLICER_SHIM when set, else next to the slicer binary, else in
// ../lib/gpu-slicer/ beside it. The command's exit status is returned (128 + signal when it was
// killed); SIGINT, SIGTERM and SIGHUP are passed on to it. The ledger files are removed when it
// ends.
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "src/cli/commands.h"
#include "src/cli/run_mps.h"
#include "src/arbiter/scheduler.h"
#include "src/cli/socket_lock.h"
#include "src/common/arbiter_protocol.h"
#include "src/common/shim_contract.h"
#include "src/common/units.h"

namespace slicer::cli {
namespace {

constexpr char kUsage[] =
    "usage: slicer run [--memory SIZE] [--weight W] [--priority P] [--metrics-port N]\n"
    "                  [--mps [--threads P]] -- CMD [ARGS...]\n"
    "\n"
    "Runs CMD and every process it starts under the gpu-slicer shim (" SLICER_SHIM_NAME ").\n"
    "\n"
    "  --memory SIZE     cap on GPU memory per GPU, shared by the whole process tree\n"
    "                    (e.g. 512MiB, 8GiB, 1.5G); past it allocations fail with\n"
    "                    CUDA_ERROR_OUT_OF_MEMORY. Without it nothing is capped.\n"
    "  --weight W        share of GPU time under contention, relative to the other\n"
    "                    clients of the arbiter (a positive number, e.g. 1, 3, 0.5)\n"
    "  --priority P      high, normal or low: high runs whenever it has work, low fills\n"
    "                    what is left (with a floor, so it never starves)\n"
    "  --metrics-port N  when this starts an arbiter: its /metrics port on 127.0.0.1\n"
    "                    (default 9400; 0: none)\n"
    "  --mps             run the tree as a client of a local MPS control daemon (GPU\n"
    "                    work of several runs side by side): $CUDA_MPS_PIPE_DIRECTORY's,\n"
    "                    else a per-user one, started if none answers (it stays; the\n"
    "                    message says how to stop it). --memory also sets MPS's own\n"
    "                    pinned-memory limit. Not with --weight/--priority.\n"
    "  --threads P       with --mps: at most P % of the GPU's threads (1-100)\n"
    "\n"
    "With --weight or --priority (or SLICER_ARBITER_SOCKET set) the tree's GPU work is\n"
    "time-shared through a `slicer arbiter` on this machine: $SLICER_ARBITER_SOCKET, else\n"
    "the node's " SLICER_ARB_DEFAULT_SOCKET " if an arbiter answers there, else a\n"
    "per-user socket ($XDG_RUNTIME_DIR/gpu-slicer/ or /tmp/gpu-slicer-<uid>/). If none\n"
    "answers, one is started there (log: arbiter.log beside the socket; it exits after 60 s\n"
    "without clients). `slicer status --endpoint http://127.0.0.1:9400` shows the shares.\n"
    "\n"
    "Environment: SLICER_SHIM (path of " SLICER_SHIM_NAME "), " SLICER_ENV_LEDGER_DIR
    " (default /dev/shm), SLICER_ARBITER_SOCKET, SLICER_RUN_ARBITER_IDLE (60s).\n";

std::string SelfDir() {
  char buf[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return ".";
  buf[n] = '\0';
  std::string path(buf);
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

// Returns the shim's path, or "" with a message printed.
std::string FindShim() {
  if (const char* explicit_path = std::getenv("SLICER_SHIM"); explicit_path && *explicit_path) {
    if (access(explicit_path, R_OK) == 0) return explicit_path;
    std::fprintf(stderr, "slicer run: SLICER_SHIM=%s is not a readable file\n", explicit_path);
    return "";
  }
  std::string dir = SelfDir();
  for (const std::string& candidate :
       {dir + "/" SLICER_SHIM_NAME, dir + "/../lib/gpu-slicer/" SLICER_SHIM_NAME}) {
    if (access(candidate.c_str(), R_OK) == 0) return candidate;
  }
  std::fprintf(stderr,
               "slicer run: cannot find %s next to the slicer binary (%s) or in "
               "%s/../lib/gpu-slicer/; set SLICER_SHIM to its path\n",
               SLICER_SHIM_NAME, dir.c_str(), dir.c_str());
  return "";
}

std::string NewContainerId() {
  std::random_device rd;
  char buf[64];
  std::snprintf(buf, sizeof buf, "run-%d-%08x", static_cast<int>(getpid()), rd());
  return buf;
}

void RemoveLedgers(const std::string& dir, const std::string& id) {
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return;
  std::string prefix = SLICER_LEDGER_PREFIX + id + "-";
  while (dirent* e = readdir(d)) {
    std::string_view name = e->d_name;
    if (name.starts_with(prefix) && name.ends_with(SLICER_LEDGER_SUFFIX)) {
      unlink((dir + "/" + std::string(name)).c_str());
    }
  }
  closedir(d);
}

// True when something accepts connections on the unix socket `path` (an arbiter answers).
bool Answers(const std::string& path) {
  sockaddr_un addr{};
  if (path.size() >= sizeof addr.sun_path) return false;
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  close(fd);
  return ok;
}

// The per-user socket of arbiters that `slicer run` starts; its directory is created (0700).
std::string UserSocket() { return UserRuntimeDir() + "/arbiter.sock"; }

bool PortFree(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  close(fd);
  return ok;
}

// How long `slicer run` waits for the arbiter of its socket: for its turn to start one, and for
// the one started (by it or by another `slicer run`) to answer. Generous: it runs out only when
// something is wrong (the arbiter's log says what).
constexpr int kArbiterWaitSeconds = 30;

// Starts `slicer arbiter` on `socket`, detached (its own session, reparented to init), handing it
// `lock_fd`, the socket's lock, held: the arbiter owns the socket from its first instruction on.
// *ended: the read end of a pipe whose write end only the arbiter holds, so it reads EOF once the
// arbiter process is gone. Returns "" or what went wrong.
std::string SpawnArbiter(const std::string& socket, int metrics_port, int lock_fd,
                         std::string* note, int* ended) {
  std::string dir = socket.substr(0, socket.rfind('/'));
  std::string log = dir + "/arbiter.log";
  const char* idle_env = std::getenv("SLICER_RUN_ARBITER_IDLE");
  std::string idle = idle_env && *idle_env ? idle_env : "60s";
  if (metrics_port > 0 && !PortFree(metrics_port)) {
    *note = "port " + std::to_string(metrics_port) + " is taken: no /metrics";
    metrics_port = 0;
  } else if (metrics_port > 0) {
    *note = "metrics http://127.0.0.1:" + std::to_string(metrics_port) + "/metrics";
  } else {
    *note = "no /metrics";
  }
  std::string exe = SelfDir() + "/slicer";
  char self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n > 0) {
    self[n] = '\0';
    exe = self;
  }
  std::vector<std::string> args = {exe,
                                   "arbiter",
                                   "--socket=" + socket,
                                   "--attribution=none",
                                   "--policy=priority",
                                   "--metrics-address=127.0.0.1",
                                   "--metrics-port=" + std::to_string(metrics_port),
                                   "--exit-when-idle=" + idle};
  int alive[2];
  if (pipe2(alive, O_CLOEXEC) != 0) return std::string("pipe: ") + std::strerror(errno);
  pid_t pid = fork();
  if (pid < 0) {
    int err = errno;
    close(alive[0]);
    close(alive[1]);
    return std::string("fork: ") + std::strerror(err);
  }
  if (pid == 0) {
    // Grandchild: the daemon, in its own session; this child exits at once.
    if (fork() != 0) _exit(0);
    setsid();
    // Copies above stderr that survive exec (the originals are close-on-exec): the lock, which
    // the arbiter finds through SLICER_ARBITER_LOCK_FD, and the pipe's write end.
    int lock = fcntl(lock_fd, F_DUPFD, 3);
    int keep = fcntl(alive[1], F_DUPFD, 3);
    (void)keep;
    int in = open("/dev/null", O_RDONLY);
    int out = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (in >= 0) dup2(in, 0);
    if (out >= 0) {
      dup2(out, 1);
      dup2(out, 2);
    }
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    // The node's environment for the shim is not the daemon's.
    unsetenv("LD_PRELOAD");
    unsetenv(SLICER_ENV_ARBITER_SOCKET);
    if (lock >= 0) setenv(kArbiterLockFdEnv, std::to_string(lock).c_str(), 1);
    execv(exe.c_str(), argv.data());
    _exit(127);
  }
  close(alive[1]);
  while (waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
  }
  *ended = alive[0];
  return "";
}

// True once the arbiter behind SpawnArbiter's `ended` pipe is gone.
bool Ended(int ended) {
  pollfd p{ended, POLLIN, 0};
  return poll(&p, 1, 0) > 0;
}

// Finds or starts the arbiter of `socket`. Returns "" once an arbiter answers there (*started:
// this process started it), or what went wrong. Several `slicer run`s at once must end on one
// arbiter: each takes its turn under the socket's run lock, and under it looks again; the one
// that finds nobody answering starts the arbiter, holding the socket's own lock from before the
// start (so no other arbiter can claim the socket), and the others then find it answering. An
// arbiter that holds the socket's lock but does not answer is starting, or exiting: the first is
// waited for, after the second one a fresh arbiter is started.
std::string EnsureArbiter(const std::string& socket, int metrics_port, std::string* note,
                          bool* started) {
  const std::string log = socket.substr(0, socket.rfind('/')) + "/arbiter.log";
  const std::string within = " within " + std::to_string(kArbiterWaitSeconds) + " s";
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(kArbiterWaitSeconds);
  auto late = [&] { return std::chrono::steady_clock::now() >= deadline; };
  MakeParentDirs(socket);
  int run_lock = -1;
  for (;;) {
    if (Answers(socket)) return "";
    LockAttempt turn = TryLock(RunLockPath(socket));
    if (turn.fd >= 0) {
      run_lock = turn.fd;
      break;
    }
    if (!turn.busy) return turn.error;
    if (late()) {
      return "another slicer run is starting one and it did not answer" + within + " (see " + log +
             ")";
    }
    usleep(20000);
  }
  std::string err;
  int ended = -1;
  for (;;) {
    if (Answers(socket)) break;
    if (!*started) {
      LockAttempt own = TryLock(ArbiterLockPath(socket));
      if (own.fd >= 0) {
        if (ftruncate(own.fd, 0) != 0) {
          // Only the pid in it is stale; the arbiter writes its own.
        }
        err = SpawnArbiter(socket, metrics_port, own.fd, note, &ended);
        close(own.fd);
        if (!err.empty()) break;
        *started = true;
      } else if (!own.busy) {
        err = own.error;
        break;
      }
    } else if (Ended(ended)) {
      if (!Answers(socket)) err = "it exited without answering (see " + log + ")";
      break;
    }
    if (late()) {
      err = *started ? "it did not answer" + within + " (see " + log + ")"
                     : "an arbiter holds " + ArbiterLockPath(socket) + " but did not answer" +
                           within + " (see " + log + ")";
      break;
    }
    usleep(20000);
  }
  if (ended >= 0) close(ended);
  close(run_lock);
  return err;
}

// Picks (and if need be starts) the arbiter for this tree. Returns its socket, or "" with a
// message printed.
std::string ArbiterSocket(int metrics_port) {
  const char* env = std::getenv(SLICER_ENV_ARBITER_SOCKET);
  std::string socket;
  if (env && *env) {
    socket = env;
  } else if (Answers(SLICER_ARB_DEFAULT_SOCKET)) {
    return SLICER_ARB_DEFAULT_SOCKET;
  } else {
    socket = UserSocket();
  }
  if (Answers(socket)) return socket;
  std::string note;
  bool started = false;
  std::string err = EnsureArbiter(socket, metrics_port, &note, &started);
  if (!err.empty()) {
    std::fprintf(stderr, "slicer run: cannot start an arbiter on %s: %s\n", socket.c_str(),
                 err.c_str());
    return "";
  }
  if (started) {
    std::fprintf(stderr,
                 "slicer run: started an arbiter on %s (%s; log %s/arbiter.log; it exits when no "
                 "client is left for a while)\n",
                 socket.c_str(), note.c_str(), socket.substr(0, socket.rfind('/')).c_str());
  }
  return socket;
}

volatile sig_atomic_t g_child = 0;
void Forward(int sig) {
  if (g_child > 0) kill(g_child, sig);
}

}  // namespace

int RunMain(int argc, char** argv) {
  std::string memory, weight, priority, metrics_port = "9400", threads;
  bool use_mps = false;
  int i = 1;
  // --flag VALUE or --flag=VALUE; true when argv[i] is `flag` (value in *out, i advanced).
  auto value = [&](std::string_view flag, std::string* out) {
    std::string_view a = argv[i];
    if (a == flag && i + 1 < argc) {
      *out = argv[++i];
      return true;
    }
    if (a.size() > flag.size() && a.starts_with(flag) && a[flag.size()] == '=') {
      *out = std::string(a.substr(flag.size() + 1));
      return true;
    }
    return false;
  };
  for (; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--") {
      ++i;
      break;
    }
    if (a == "-h" || a == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    if (value("--memory", &memory) || value("--weight", &weight) ||
        value("--priority", &priority) || value("--metrics-port", &metrics_port) ||
        value("--threads", &threads)) {
      continue;
    } else if (a == "--mps") {
      use_mps = true;
    } else if (a.starts_with("-")) {
      std::fprintf(stderr, "slicer run: unknown flag \"%s\"\n\n%s", argv[i], kUsage);
      return 2;
    } else {
      break;  // the command, without "--"
    }
  }
  if (i >= argc) {
    std::fprintf(stderr, "slicer run: no command given\n\n%s", kUsage);
    return 2;
  }

  uint64_t bytes = 0;
  if (!memory.empty()) {
    absl::StatusOr<uint64_t> parsed = ParseSize(memory);
    if (!parsed.ok() || *parsed == 0) {
      std::fprintf(stderr,
                   "slicer run: --memory \"%s\" is not a size: write a positive number with an "
                   "optional unit, e.g. 512MiB, 8GiB, 1.5G\n",
                   memory.c_str());
      return 2;
    }
    bytes = *parsed;
  }

  if (!weight.empty()) {
    char* end = nullptr;
    double w = std::strtod(weight.c_str(), &end);
    if (end == weight.c_str() || *end != '\0' || !std::isfinite(w) || w <= 0 || w > 1e6) {
      std::fprintf(stderr,
                   "slicer run: --weight \"%s\" is not a weight: write a positive number, e.g. 1, "
                   "3 or 0.5 (the arbiter may clamp it to its weightOverride limits)\n",
                   weight.c_str());
      return 2;
    }
  }
  if (absl::StatusOr<arbiter::Priority> p = arbiter::ParsePriority(priority); !p.ok()) {
    std::fprintf(stderr, "slicer run: --priority: %s\n", std::string(p.status().message()).c_str());
    return 2;
  }
  char* port_end = nullptr;
  long port = std::strtol(metrics_port.c_str(), &port_end, 10);
  if (port_end == metrics_port.c_str() || *port_end != '\0' || port < 0 || port > 65535) {
    std::fprintf(stderr, "slicer run: --metrics-port \"%s\": want a port number (0: none)\n",
                 metrics_port.c_str());
    return 2;
  }

  RunMpsOptions mps_options;
  if (!threads.empty()) {
    char* end = nullptr;
    long t = std::strtol(threads.c_str(), &end, 10);
    if (!use_mps || end == threads.c_str() || *end != '\0' || t < 1 || t > 100) {
      std::fprintf(stderr,
                   "slicer run: --threads \"%s\": with --mps, a percentage of the GPU's threads "
                   "from 1 to 100\n",
                   threads.c_str());
      return 2;
    }
    mps_options.threads = static_cast<int>(t);
  }
  if (use_mps && (!weight.empty() || !priority.empty())) {
    std::fprintf(stderr,
                 "slicer run: --mps runs GPU work side by side, so there is no time share to "
                 "weigh: use --threads for its part of the GPU instead of --weight/--priority\n");
    return 2;
  }

  std::string shim = FindShim();
  if (shim.empty()) return 2;
  if (use_mps) {
    mps_options.memory_bytes = bytes;
    if (!PrepareMps(mps_options)) return 2;
    // An MPS client is not gated: with SLICER_ARBITER_SOCKET set it reports to that arbiter
    // observe-only (memory and busy time in its metrics); no arbiter is started for it.
    const char* s = std::getenv(SLICER_ENV_ARBITER_SOCKET);
    if (s != nullptr && *s != '\0') {
      setenv(SLICER_ENV_ARBITER_OBSERVE, "1", 1);
    } else {
      unsetenv(SLICER_ENV_ARBITER_SOCKET);
      unsetenv(SLICER_ENV_ARBITER_OBSERVE);
    }
  } else {
    unsetenv(SLICER_ENV_ARBITER_OBSERVE);  // time-sliced: leased like any client
  }
  const char* env_socket = std::getenv(SLICER_ENV_ARBITER_SOCKET);
  if (!use_mps && (!weight.empty() || !priority.empty() || (env_socket && *env_socket))) {
    std::string socket = ArbiterSocket(static_cast<int>(port));
    if (socket.empty()) return 2;
    setenv(SLICER_ENV_ARBITER_SOCKET, socket.c_str(), 1);
    if (!weight.empty())
      setenv(SLICER_ENV_WEIGHT, weight.c_str(), 1);
    else
      unsetenv(SLICER_ENV_WEIGHT);
    if (!priority.empty())
      setenv(SLICER_ENV_PRIORITY, priority.c_str(), 1);
    else
      unsetenv(SLICER_ENV_PRIORITY);
  }
  const char* ledger_env = std::getenv(SLICER_ENV_LEDGER_DIR);
  std::string ledger_dir = ledger_env && *ledger_env ? ledger_env : "/dev/shm";
  std::string id = NewContainerId();

  const char* preload = std::getenv("LD_PRELOAD");
  std::string new_preload = shim + (preload && *preload ? std::string(":") + preload : "");
  setenv("LD_PRELOAD", new_preload.c_str(), 1);
  setenv(SLICER_ENV_CONTAINER_ID, id.c_str(), 1);
  setenv(SLICER_ENV_LEDGER_DIR, ledger_dir.c_str(), 1);
  // The tree must not inherit an outer container's opt-out or limits.
  unsetenv(SLICER_ENV_OPT_OUT);
  unsetenv(SLICER_ENV_OPT_OUT_ALLOWED);
  if (bytes > 0) {
    setenv(SLICER_ENV_MEMORY_LIMITS, ("*=" + std::to_string(bytes)).c_str(), 1);
    setenv(SLICER_ENV_ENFORCE, "1", 1);
  } else {
    unsetenv(SLICER_ENV_MEMORY_LIMITS);
    unsetenv(SLICER_ENV_ENFORCE);
  }

  struct sigaction sa {};
  sa.sa_handler = Forward;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaction(sig, &sa, nullptr);

  pid_t pid = fork();
  if (pid < 0) {
    std::fprintf(stderr, "slicer run: fork: %s\n", std::strerror(errno));
    return 2;
  }
  if (pid == 0) {
    execvp(argv[i], argv + i);
    std::fprintf(stderr, "slicer run: cannot run \"%s\": %s\n", argv[i], std::strerror(errno));
    _exit(127);
  }
  g_child = pid;
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  RemoveLedgers(ledger_dir, id);
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

}  // namespace slicer::cli
