// Starting and stopping child processes (the demo and the tests run the real `slicer` binary).
// Thread-safety: one owner per Subprocess.
#ifndef SLICER_COMMON_SUBPROCESS_H_
#define SLICER_COMMON_SUBPROCESS_H_

#include <sys/types.h>

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace slicer {

struct SpawnOptions {
  std::vector<std::string> argv;
  // Variables set (or replaced) on top of this process's environment.
  std::map<std::string, std::string> env;
  // Where the child's stderr (and stdout) go; empty: inherited.
  std::string output_path;
  // The child is killed (SIGKILL) when the thread that spawned it exits, e.g. when its parent
  // dies without reaping it, so that it cannot outlive its supervisor.
  bool die_with_parent = false;
};

class Subprocess {
 public:
  static absl::StatusOr<Subprocess> Spawn(const SpawnOptions& options);
  Subprocess(Subprocess&& other) noexcept : pid_(other.pid_) { other.pid_ = -1; }
  Subprocess& operator=(Subprocess&& other) noexcept;
  // Kills (SIGKILL) and reaps a child that is still running.
  ~Subprocess();

  pid_t pid() const { return pid_; }
  bool Signal(int sig) const;
  // Waits up to `timeout` for the child to exit; its wait status, or nullopt if still running.
  std::optional<int> Wait(std::chrono::milliseconds timeout);

 private:
  explicit Subprocess(pid_t pid) : pid_(pid) {}
  pid_t pid_ = -1;
};

// The directory holding the running executable (/proc/self/exe).
std::string SelfDir();

}  // namespace slicer

#endif  // SLICER_COMMON_SUBPROCESS_H_
