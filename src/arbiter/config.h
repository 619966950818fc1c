// The arbiter's settings: flags (src/cli/arbiter_cmd.cc) over an optional YAML file of this
// shape (docs/arbiter.md), strict like the device-plugin config (unknown keys are errors naming
// the key and line):
//
//   arbiter:
//     policy: fair            # fair | priority | off
//     quantum: 20ms           # lease per unit of weight
//     maxQuantum: 200ms
//     priorityFloor: 0.05     # priority policy: least share of each lower class with work
//     weightOverride: {min: 0.25, max: 8}  # limits on pod-annotation / claimed weights
//     failClosed: false       # clients wait for the arbiter instead of running ungated
//     revokeGrace: 500ms      # a holder that ignores REVOKE this long is forced off
//     maxQueued: 10ms         # work a contended client may keep queued (hand-over latency);
//                             # default 2ms under the priority policy, else 10ms
//     handover: drain         # drain | overlap: grant the next holder at the release or at
//                             # the revoke (docs/arbiter.md)
//     trustClaims: auto       # honour SLICER_WEIGHT/SLICER_PRIORITY claims: auto = only
//                             # without the kubelet (standalone), true, false
//
// The top-level `arbiter:` key may be left out (the file is then the section itself).
#ifndef SLICER_ARBITER_CONFIG_H_
#define SLICER_ARBITER_CONFIG_H_

#include <chrono>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "src/arbiter/scheduler.h"

namespace slicer::arbiter {

struct ArbiterConfig {
  SchedulerConfig scheduler;
  double min_weight = 0.25;
  double max_weight = 8;
  bool fail_closed = false;
  // Work a contended client may keep queued; nullopt: MaxQueued's per-policy default.
  std::optional<Clock::Duration> max_queued;
  std::optional<bool> trust_claims;  // nullopt: auto
};

// Parses the YAML text (`name` is used in messages). Fields not in the text keep `base`'s value.
absl::StatusOr<ArbiterConfig> ParseArbiterConfig(const std::string& text, const std::string& name,
                                                 ArbiterConfig base = {});
absl::StatusOr<ArbiterConfig> LoadArbiterConfig(const std::string& path, ArbiterConfig base = {});

// maxQueued in force: the configured value, else 2 ms under the priority policy (a preempted
// lower holder's queue is what a higher class waits behind) and 10 ms otherwise (a smaller queue
// costs a saturating client 1-2% of its throughput in checkpoint waits: docs/arbiter.md).
Clock::Duration MaxQueued(const ArbiterConfig& c);
// The scheduler's settings with its queue bounds from MaxQueued: among bound clients maxQueued;
// the only bound client max(maxQueued, 50 ms) under fair (under priority, maxQueued: a higher
// class preempting it waits for that queue); a shared lease max(maxQueued, 100 ms).
SchedulerConfig SchedulerFor(const ArbiterConfig& c);

// Checks ranges; the error names the setting.
absl::Status ValidateArbiterConfig(const ArbiterConfig& c);

}  // namespace slicer::arbiter

#endif  // SLICER_ARBITER_CONFIG_H_
