#include "src/cli/run_mps.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "src/mps/files.h"
#include "src/mps/host.h"
#include "src/nvml/nvml.h"

namespace slicer::cli {
namespace {

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr ? v : "";
}

// How many GPUs the command will see: CUDA_VISIBLE_DEVICES's entries, else NVML's count; -1
// when neither can tell.
int VisibleGpus() {
  if (const char* v = std::getenv("CUDA_VISIBLE_DEVICES"); v != nullptr) {
    std::vector<std::string> parts = absl::StrSplit(v, ',', absl::SkipEmpty());
    return static_cast<int>(parts.size());
  }
  auto nvml = nvml::Load({std::string("/")});
  if (!nvml.ok()) return -1;
  auto system = (*nvml)->Discover();
  if (!system.ok()) return -1;
  return static_cast<int>(system->devices.size());
}

}  // namespace

std::string UserRuntimeDir() {
  const std::string xdg = Env("XDG_RUNTIME_DIR");
  std::string dir = !xdg.empty() ? xdg + "/gpu-slicer" : "/tmp/gpu-slicer-" + std::to_string(getuid());
  mkdir(dir.c_str(), 0700);
  return dir;
}

bool PrepareMps(const RunMpsOptions& options) {
  std::string pipe = Env("CUDA_MPS_PIPE_DIRECTORY");
  std::string log = Env("CUDA_MPS_LOG_DIRECTORY");
  if (pipe.empty()) {
    const std::string base = UserRuntimeDir() + "/mps";
    pipe = base + "/pipe";
    if (log.empty()) log = base + "/log";
  }
  if (log.empty()) log = pipe + "/../log";
  for (const std::string& d : {pipe, log}) {
    if (absl::Status s = MakeDirs(d); !s.ok()) {
      std::fprintf(stderr, "slicer run: --mps: %s\n", std::string(s.message()).c_str());
      return false;
    }
  }
  std::string control = Env("SLICER_MPS_CONTROL");
  if (control.empty()) control = "nvidia-cuda-mps-control";
  auto bin = mps::FindProgram(control);
  if (!bin.ok()) {
    std::fprintf(stderr,
                 "slicer run: --mps: %s (the NVIDIA driver's MPS tools; set SLICER_MPS_CONTROL to "
                 "its path)\n",
                 std::string(bin.status().message()).c_str());
    return false;
  }
  const std::map<std::string, std::string> env = {{"CUDA_MPS_PIPE_DIRECTORY", pipe},
                                                  {"CUDA_MPS_LOG_DIRECTORY", log}};
  // Runs of `slicer run --mps` that start together take turns here (flock on a file in the pipe
  // folder), so that only one of them starts a daemon and their probes do not meet each other.
  const std::string lock_path = pipe + "/slicer-run.lock";
  const int lock_fd = open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_fd >= 0) flock(lock_fd, LOCK_EX);  // without it, the retries below still hold
  struct Unlock {
    int fd;
    ~Unlock() {
      if (fd >= 0) close(fd);
    }
  } unlock{lock_fd};
  // A control daemon that is busy (with another client, or starting an MPS server) can miss a
  // probe: seen on the H200 with 4 runs starting at once, two concluded none ran and then failed
  // to start one ("already running"). So: ask again before concluding that none runs, and when
  // starting one finds one running, wait for that one to answer.
  std::string why;
  auto answers = [&](int tries) {
    for (int i = 0; i < tries; ++i) {
      if (i > 0) usleep(static_cast<useconds_t>(100000) << std::min(i, 4));
      auto r = mps::ControlCommand(*bin, env, "get_default_active_thread_percentage",
                                   std::chrono::seconds(5));
      if (r.ok()) return true;
      why = std::string(r.status().message());
    }
    return false;
  };
  if (!answers(2)) {
    auto started = mps::RunWithInput({*bin, "-d"}, env, "", std::chrono::seconds(10));
    const bool ran = started.ok() && WIFEXITED(started->status) && WEXITSTATUS(started->status) == 0;
    const bool running = started.ok() && absl::StrContains(started->output, "already running");
    if (!ran && !running) {
      std::fprintf(stderr, "slicer run: --mps: cannot start an MPS control daemon in %s: %s\n",
                   pipe.c_str(),
                   !started.ok() ? std::string(started.status().message()).c_str()
                                 : started->output.c_str());
      return false;
    }
    if (!answers(running ? 6 : 3)) {
      std::fprintf(stderr,
                   "slicer run: --mps: %s MPS control daemon in %s does not answer: %s\n",
                   running ? "the running" : "the started", pipe.c_str(), why.c_str());
      return false;
    }
    if (ran) {
      std::fprintf(stderr,
                   "slicer run: started an MPS control daemon (pipe %s, log %s); it stays for "
                   "later runs. Stop it with: echo quit | CUDA_MPS_PIPE_DIRECTORY=%s %s\n",
                   pipe.c_str(), log.c_str(), pipe.c_str(), bin->c_str());
    }
  }
  setenv("CUDA_MPS_PIPE_DIRECTORY", pipe.c_str(), 1);
  setenv("CUDA_MPS_LOG_DIRECTORY", log.c_str(), 1);
  if (options.threads > 0) {
    setenv("CUDA_MPS_ACTIVE_THREAD_PERCENTAGE", std::to_string(options.threads).c_str(), 1);
  }
  if (options.memory_bytes > 0) {
    const int gpus = VisibleGpus();
    if (gpus <= 0) {
      std::fprintf(stderr,
                   "slicer run: --mps: cannot tell how many GPUs the command sees (no "
                   "CUDA_VISIBLE_DEVICES, NVML did not answer): no MPS pinned-memory limit, the "
                   "shim's cap alone holds\n");
    } else {
      const uint64_t mib = options.memory_bytes >> 20;
      std::vector<std::string> limits;
      for (int g = 0; g < gpus; ++g) limits.push_back(absl::StrCat(g, "=", mib, "M"));
      setenv("CUDA_MPS_PINNED_DEVICE_MEM_LIMIT", absl::StrJoin(limits, ",").c_str(), 1);
    }
  }
  return true;
}

}  // namespace slicer::cli
