// `slicer run [--memory SIZE] -- CMD [ARGS...]`: runs a process tree under libslicer.so without
// Kubernetes. Every process of the tree shares one memory cap per GPU (a fresh container ID and
// ledger), exactly as the processes of one container do under the device plugin.
//
// The shim is found at $SLICER_SHIM when set, else next to the slicer binary, else in
// ../lib/gpu-slicer/ beside it. The command's exit status is returned (128 + signal when it was
// killed); SIGINT, SIGTERM and SIGHUP are passed on to it. The ledger files are removed when it
// ends.
#include <dirent.h>
#include <limits.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <string_view>

#include "src/cli/commands.h"
#include "src/common/shim_contract.h"
#include "src/common/units.h"

namespace slicer::cli {
namespace {

constexpr char kUsage[] =
    "usage: slicer run [--memory SIZE] -- CMD [ARGS...]\n"
    "\n"
    "Runs CMD and every process it starts under the gpu-slicer shim (" SLICER_SHIM_NAME ").\n"
    "\n"
    "  --memory SIZE   cap on GPU memory per GPU, shared by the whole process tree\n"
    "                  (e.g. 512MiB, 8GiB, 1.5G); past it allocations fail with\n"
    "                  CUDA_ERROR_OUT_OF_MEMORY. Without it nothing is capped.\n"
    "\n"
    "Environment: SLICER_SHIM (path of " SLICER_SHIM_NAME "), " SLICER_ENV_LEDGER_DIR
    " (default /dev/shm).\n";

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
  std::string prefix = "slicer-" + id + "-";
  while (dirent* e = readdir(d)) {
    std::string_view name = e->d_name;
    if (name.starts_with(prefix) && name.ends_with(".ledger")) {
      unlink((dir + "/" + std::string(name)).c_str());
    }
  }
  closedir(d);
}

volatile sig_atomic_t g_child = 0;
void Forward(int sig) {
  if (g_child > 0) kill(g_child, sig);
}

}  // namespace

int RunMain(int argc, char** argv) {
  std::string memory;
  int i = 1;
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
    if (a == "--memory" && i + 1 < argc) {
      memory = argv[++i];
    } else if (a.starts_with("--memory=")) {
      memory = std::string(a.substr(9));
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

  std::string shim = FindShim();
  if (shim.empty()) return 2;
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
