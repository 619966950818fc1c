// The two files by which the device plugin and `slicer mps-daemon` talk (layout.h says where):
//
// - desired: written by the plugin whenever its config is applied, read by the daemon. The GPUs
//   whose replicas are shared through MPS, one UUID per line ('#' starts a comment), optionally
//   followed by ` threads=<P>`: the most any client of that GPU may get (1-100; the control
//   daemon's default active thread percentage, which a client's own
//   CUDA_MPS_ACTIVE_THREAD_PERCENTAGE can lower but not raise). An empty
//   list means "no MPS on this node": the daemon stops every control daemon and restores the
//   compute modes. A plugin that merely exits leaves the file alone, so running MPS clients keep
//   their server across plugin restarts and upgrades.
// - state (one per GPU): written by the daemon at every change and every heartbeat, read by the
//   plugin's health check. One line of key=value fields.
//
// Both are replaced atomically (write a temporary file, rename), so a reader never sees half a
// file (WriteFileAtomic, src/common/files.h). Pure formatting and parsing here.
#ifndef SLICER_MPS_FILES_H_
#define SLICER_MPS_FILES_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "src/common/files.h"

namespace slicer::mps {

// One GPU of the desired file.
struct DesiredGpu {
  // Implicit: a list of UUIDs is a desired set without bounds.
  DesiredGpu(std::string u, int t = 100) : uuid(std::move(u)), threads(t) {}  // NOLINT
  DesiredGpu(const char* u, int t = 100) : uuid(u), threads(t) {}             // NOLINT
  std::string uuid;
  int threads = 100;  // 1-100; 100: no bound
  bool operator==(const DesiredGpu&) const = default;
};

// The desired file's text for `gpus` (each UUID must pass IsGpuUuid).
std::string FormatDesired(const std::vector<DesiredGpu>& gpus);
// Errors (InvalidArgument) name the line: a line that is not a GPU UUID, a UUID listed twice, a
// field other than threads=<1-100>.
absl::StatusOr<std::vector<DesiredGpu>> ParseDesired(absl::string_view text);

enum class Phase {
  kStarting,  // the control daemon was started and has not answered yet
  kReady,     // it answers on its control socket; clients can connect
  kDown,      // it exited or stopped answering; a restart is pending
  kFailed,    // it cannot be run at all (compute mode refused, no binary); retried slowly
};
absl::string_view ToString(Phase phase);

struct DaemonState {
  Phase phase = Phase::kStarting;
  int pid = 0;            // the control daemon's pid in the mps-daemon's pid namespace; 0: none
  int restarts = 0;       // restarts since the mps-daemon started
  int64_t heartbeat_ms = 0;  // wall clock (ms since the epoch) when this was written
  std::string reason;        // why it is not ready; empty when ready
};

std::string FormatState(const DaemonState& state);
absl::StatusOr<DaemonState> ParseState(absl::string_view text);

// How the plugin judges a GPU's daemon from its state file's text at wall-clock time `now_ms`:
// healthy when it parses, says ready, and its heartbeat is not older than `stale_ms` (a daemon
// whose supervisor died stops refreshing it). `reason` says why not.
bool StateHealthy(absl::string_view text, int64_t now_ms, int64_t stale_ms, std::string* reason);

}  // namespace slicer::mps

#endif  // SLICER_MPS_FILES_H_
