// The real Host of the supervisor: runs NVIDIA's `nvidia-cuda-mps-control` (the daemon with -f
// as a child; the client mode for commands), sets compute modes through NVML, and keeps the
// GPU's files under the MPS root (layout.h). Thread-safety: one owner thread, as the Supervisor.
#ifndef SLICER_MPS_HOST_H_
#define SLICER_MPS_HOST_H_

#include <map>
#include <memory>
#include <string>

#include "src/common/subprocess.h"
#include "src/mps/layout.h"
#include "src/mps/supervisor.h"
#include "src/nvml/nvml.h"

namespace slicer::mps {

struct HostOptions {
  std::string root = kDefaultRoot;
  // The control binary: a path, or a name looked up in PATH at each start (FindProgram).
  std::string control = "nvidia-cuda-mps-control";
  // Set on top of this process's environment for every control process (e.g. PATH and
  // LD_LIBRARY_PATH of a containerised driver, so the daemon finds nvidia-cuda-mps-server).
  std::map<std::string, std::string> env;
  std::chrono::milliseconds control_timeout{5000};
};

class ProcessHost final : public Host {
 public:
  // `nvml` is not owned and may be null (then compute modes cannot be read or set: every GPU
  // fails to start, with that reason in its state).
  ProcessHost(nvml::Nvml* nvml, HostOptions options);
  ~ProcessHost() override;
  void SetNvml(nvml::Nvml* nvml) { nvml_ = nvml; }

  absl::StatusOr<int> StartDaemon(const std::string& uuid) override;
  std::optional<int> WaitExit(int pid, std::chrono::milliseconds timeout) override;
  void Kill(int pid) override;
  absl::StatusOr<std::string> Control(const std::string& uuid, const std::string& command) override;
  absl::StatusOr<nvml::ComputeMode> GetComputeMode(const std::string& uuid) override;
  absl::Status SetComputeMode(const std::string& uuid, nvml::ComputeMode mode) override;
  void Publish(const std::string& uuid, const std::optional<DaemonState>& state) override;
  std::optional<nvml::ComputeMode> SavedMode(const std::string& uuid) override;
  void SaveMode(const std::string& uuid, std::optional<nvml::ComputeMode> mode) override;
  int64_t WallMs() override;

 private:
  std::map<std::string, std::string> DaemonEnv(const std::string& uuid) const;

  nvml::Nvml* nvml_;
  HostOptions options_;
  Layout layout_;
  std::map<int, Subprocess> children_;
};

// `name` if it is a path to an executable, else the first executable `name` in PATH.
absl::StatusOr<std::string> FindProgram(const std::string& name);

// Runs `argv` with `input` on its stdin and `env` on top of this environment; its stdout and
// stderr together, and its exit status. Killed after `timeout` (DeadlineExceeded). Exposed for
// tests.
struct CommandResult {
  int status = 0;  // wait status
  std::string output;
};
absl::StatusOr<CommandResult> RunWithInput(const std::vector<std::string>& argv,
                                           const std::map<std::string, std::string>& env,
                                           const std::string& input,
                                           std::chrono::milliseconds timeout);

// One command through the control client `control` (with `env`: CUDA_MPS_PIPE_DIRECTORY names
// the daemon): its reply, whitespace-trimmed. Unavailable, with the client's exit status and
// output, when it exits non-zero (no daemon answers); DeadlineExceeded after `timeout`.
absl::StatusOr<std::string> ControlCommand(const std::string& control,
                                           const std::map<std::string, std::string>& env,
                                           const std::string& command,
                                           std::chrono::milliseconds timeout);

}  // namespace slicer::mps

#endif  // SLICER_MPS_HOST_H_
