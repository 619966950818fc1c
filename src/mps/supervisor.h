// `slicer mps-daemon`'s core: keeps one NVIDIA MPS control daemon running per desired GPU.
//
// For each GPU in the desired set it remembers the GPU's compute mode, sets EXCLUSIVE_PROCESS
// (so that only the MPS server holds a context and clients go through it; unless
// SupervisorOptions::manage_compute_mode is off), starts
// `nvidia-cuda-mps-control -f` and probes it through the control client until it answers
// (starting -> ready). Where the desired set bounds a GPU's threads (DesiredGpu::threads < 100),
// the daemon's default active thread percentage is set to that bound before the GPU is ready, and
// checked by every probe (set again when it differs: a restarted daemon, a changed bound; it
// applies to the next MPS server the daemon spawns). A daemon that exits, or stops answering for `probe_failures` probes in a
// row, is killed and restarted after a back-off (1 s doubling to `max_backoff`; a daemon that
// stayed ready for `stable_after` starts again from 1 s). A GPU leaving the desired set, and
// every GPU at Shutdown(), gets `quit`, then SIGKILL if it has not exited within `stop_timeout`,
// and its compute mode back. Every change and every `heartbeat` the GPU's state is published
// (files.h), which is how the device plugin marks the GPU's replicas Unhealthy while its daemon
// is down.
//
// Events in, decisions out: the world is behind Host and time behind Clock, so tests drive every
// transition on a simulated clock; host.h is the real Host. Thread-safety: one owner thread.
#ifndef SLICER_MPS_SUPERVISOR_H_
#define SLICER_MPS_SUPERVISOR_H_

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "src/common/clock.h"
#include "src/mps/files.h"
#include "src/nvml/nvml.h"

namespace slicer::mps {

class Host {
 public:
  virtual ~Host() = default;
  // Starts the GPU's control daemon in the foreground; its pid.
  virtual absl::StatusOr<int> StartDaemon(const std::string& uuid) = 0;
  // The wait status of `pid` once it has exited (it is reaped), waiting at most `timeout`;
  // nullopt while it runs. A zero timeout never blocks.
  virtual std::optional<int> WaitExit(int pid, std::chrono::milliseconds timeout) = 0;
  // SIGKILL and reap.
  virtual void Kill(int pid) = 0;
  // Sends one command through the control client (bounded in time); the daemon's reply.
  virtual absl::StatusOr<std::string> Control(const std::string& uuid,
                                              const std::string& command) = 0;
  virtual absl::StatusOr<nvml::ComputeMode> GetComputeMode(const std::string& uuid) = 0;
  virtual absl::Status SetComputeMode(const std::string& uuid, nvml::ComputeMode mode) = 0;
  // Publishes the GPU's state; std::nullopt removes it (the GPU is no longer shared).
  virtual void Publish(const std::string& uuid, const std::optional<DaemonState>& state) = 0;
  // The mode a GPU had before the first supervisor touched it, kept across restarts of the
  // mps-daemon (which would otherwise read back its own EXCLUSIVE_PROCESS). nullopt: none saved.
  virtual std::optional<nvml::ComputeMode> SavedMode(const std::string& uuid) = 0;
  virtual void SaveMode(const std::string& uuid, std::optional<nvml::ComputeMode> mode) = 0;
  // Wall-clock milliseconds since the epoch, for heartbeats read by another process.
  virtual int64_t WallMs() = 0;
};

struct SupervisorOptions {
  std::chrono::milliseconds probe_interval{2000};
  int probe_failures = 3;
  std::chrono::milliseconds start_timeout{30000};  // starting -> not answering: restart
  std::chrono::milliseconds max_backoff{30000};
  std::chrono::milliseconds stable_after{60000};
  std::chrono::milliseconds stop_timeout{5000};
  std::chrono::milliseconds heartbeat{2000};
  // false: the compute mode is neither read, set nor restored (`slicer mps-daemon
  // --compute-mode=keep`, for GPUs whose mode the node's administrator sets; MPS also runs in
  // DEFAULT mode, but then a process that ignores the pipe directory gets a context of its own
  // beside the MPS server, outside its limits).
  bool manage_compute_mode = true;
};

class Supervisor {
 public:
  Supervisor(Host& host, Clock& clock, SupervisorOptions options = {});
  ~Supervisor() = default;
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  // The GPUs to share (UUIDs). New ones are started at the next Tick; removed ones are stopped
  // now (quit, wait, compute mode restored).
  void SetDesired(const std::vector<DesiredGpu>& gpus);
  // Reaps, probes, restarts what is due and refreshes heartbeats. Call often (e.g. every 200 ms).
  void Tick();
  // Stops every daemon and restores every compute mode (SIGTERM of the mps-daemon).
  void Shutdown();

  // For tests and logs.
  std::optional<DaemonState> StateOf(const std::string& uuid) const;

 private:
  struct Gpu {
    DaemonState state;
    int backoff_steps = 0;
    Clock::TimePoint next_start{};  // when pid == 0: earliest (re)start
    Clock::TimePoint started{};
    Clock::TimePoint ready_since{};
    Clock::TimePoint next_probe{};
    Clock::TimePoint last_publish{};
    int failed_probes = 0;
    int threads = 100;  // the bound on every client's active thread percentage
    bool published = false;
    bool ever_started = false;
  };
  void StartIfDue(const std::string& uuid, Gpu& g);
  void Probe(const std::string& uuid, Gpu& g);
  void Down(const std::string& uuid, Gpu& g, Phase phase, const std::string& reason);
  void Stop(const std::string& uuid, Gpu& g);
  void Publish(const std::string& uuid, Gpu& g, bool force);
  Clock::Duration Backoff(int steps) const;

  Host& host_;
  Clock& clock_;
  SupervisorOptions options_;
  std::map<std::string, Gpu> gpus_;
};

}  // namespace slicer::mps

#endif  // SLICER_MPS_SUPERVISOR_H_
