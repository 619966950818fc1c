// The time-share scheduler of ONE GPU: who may submit work now, for how long, and who is next.
//
// Mechanism (the weighted lease of DESIGN.md): at most one client holds the GPU's lease; it
// submits for a quantum (base quantum x weight), is asked to drain and hand over (a Revoke
// action), and the next holder is the waiting client with the least virtual time (GPU time
// charged / weight). Work-conserving: a client is only scheduled while it asks (Request), and a
// lease granted while nobody else waits is open-ended (quantum 0): the lone active client runs
// ungated until someone else asks. A client waking from idle starts at the smallest virtual time
// of the active clients, so idling banks no credit.
//
// Hand-over (Handover): under kDrain the next holder is granted when the revoked holder has
// drained its queued work and released (the GPU idles from that release until the next holder's
// first kernel); under kOverlap it is granted at the revoke, so its first work is queued while
// the revoked holder's bounded queue drains (the two contexts time-slice that tail). At most one
// revoked holder drains beside a granted one. The wall time in which both held a lease was
// charged to both by their reports; half of it is taken off each (GPU time-slicing splits it).
//
// Saturating clients take longer turns: a client that asks again within `batch_gap` of its
// previous lease's end (it drained, released and still has work) is saturating. While every other
// client waiting is saturating, a lease lasts `batch_quantum` x weight instead of `quantum` x
// weight: a hand-over costs the GPU a context switch (~0.2 ms on an H200) and the hand-over's
// round trips, so throughput jobs lose less to fewer, longer turns, and the shares (least virtual
// time first) do not change. A client that starts asking after being idle (a request, a bursty
// job, a notebook cell) cuts the holder's lease back to `quantum` x weight counted from the grant:
// it never waits longer than without batching.
//
// Policies: kFair (one class; weights split the time), kPriority (classes high > normal > low:
// a waiting higher class preempts a lower holder at once -- it is granted while the lower holder
// drains, so its latency is not the lower one's queued work; every lower class with work still
// gets at least `priority_floor` of the recent GPU time), kOff (every request is granted
// open-ended at once and nobody is revoked: caps and metrics only).
//
// Charging: the GPU time a client reports (Charge/Release) is clamped to the wall time since its
// previous charge, so nobody can be charged, or charge itself, more than time that passed.
//
// Pure: no I/O and no threads; time comes from the Clock. The owner calls Poll() after every
// event and when NextDeadline() passes, and sends the returned actions. Not thread-safe.
#ifndef SLICER_ARBITER_SCHEDULER_H_
#define SLICER_ARBITER_SCHEDULER_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "src/common/clock.h"

namespace slicer::arbiter {

enum class Policy { kOff, kFair, kPriority };
enum class Priority { kHigh = 0, kNormal = 1, kLow = 2 };
enum class Handover { kDrain, kOverlap };

absl::StatusOr<Policy> ParsePolicy(std::string_view text);
absl::StatusOr<Priority> ParsePriority(std::string_view text);
absl::StatusOr<Handover> ParseHandover(std::string_view text);
const char* PolicyName(Policy p);
const char* HandoverName(Handover h);
const char* PriorityName(Priority p);

struct SchedulerConfig {
  Policy policy = Policy::kFair;
  Clock::Duration quantum = std::chrono::milliseconds(20);  // per unit of weight
  Clock::Duration min_quantum = std::chrono::milliseconds(5);
  Clock::Duration max_quantum = std::chrono::milliseconds(200);
  // Lease per unit of weight while only saturating clients wait (above); at most quantum: off.
  Clock::Duration batch_quantum = std::chrono::milliseconds(80);
  // A request this soon after the client's previous lease ended continues its work (saturating).
  Clock::Duration batch_gap = std::chrono::milliseconds(2);
  // kPriority: each lower class that has work gets at least this fraction of recent GPU time.
  double priority_floor = 0.05;
  // A holder that has not released this long after a Revoke loses the lease anyway (and is
  // charged the wall time it held): a stuck or hostile client cannot keep the others out.
  Clock::Duration revoke_grace = std::chrono::milliseconds(500);
  // When the next holder of an expired lease is granted: at the holder's release (kDrain) or at
  // its revoke (kOverlap). A higher class preempting under kPriority is always granted at once.
  Handover handover = Handover::kDrain;
  // Time constant of the recent-usage averages (priority floor, achieved share).
  Clock::Duration share_window = std::chrono::seconds(2);
};

using ClientKey = uint64_t;

struct Action {
  enum Kind { kGrant, kRevoke, kForcedOff };
  Kind kind;
  ClientKey client;
  Clock::Duration quantum{0};  // kGrant: lease length; 0 = open-ended
};

struct ClientStats {
  double weight = 1;
  Priority priority = Priority::kNormal;
  bool holding = false;
  bool waiting = false;
  Clock::Duration used{0};    // GPU time charged
  Clock::Duration waited{0};  // time spent waiting for a lease (held back), current wait included
  uint64_t grants = 0;
  double achieved_share = 0;    // of the GPU time recently charged on this GPU
  double configured_share = 0;  // weight / sum of weights of the GPU's clients (same class)
};

class GpuScheduler {
 public:
  GpuScheduler(const SchedulerConfig& config, const Clock& clock);

  // A client attaches to this GPU. Weight > 0 (clamped to [0.001, 1e6]). Re-adding updates.
  void Add(ClientKey key, double weight, Priority priority);
  // The client is gone: its lease (if held) and its wait end now.
  void Remove(ClientKey key);
  // The client has work and wants the lease. No-op while it holds or already waits.
  void Request(ClientKey key);
  // Charges GPU time used (clamped to the wall time since the client's previous charge).
  void Charge(ClientKey key, Clock::Duration busy);
  // Ends the client's lease after charging `busy`; `more_work` queues it again. A Release from a
  // client that does not hold the lease is only a charge (it raced a forced hand-over).
  void Release(ClientKey key, Clock::Duration busy, bool more_work);

  // Decisions due now: grants, revokes, forced hand-overs. Call after every event.
  std::vector<Action> Poll();
  // When Poll must run next (a quantum or a grace period ends); nullopt: only on events.
  std::optional<Clock::TimePoint> NextDeadline() const;

  bool Has(ClientKey key) const { return clients_.count(key) != 0; }
  ClientStats Stats(ClientKey key) const;
  std::vector<ClientKey> Clients() const;
  // The active (not revoked) holder, else a draining one.
  std::optional<ClientKey> Holder() const;
  const SchedulerConfig& config() const { return config_; }

 private:
  struct Client {
    double weight = 1;
    Priority priority = Priority::kNormal;
    double vtime = 0;  // ns of GPU time per unit weight
    bool waiting = false;
    bool holding = false;
    bool revoked = false;
    bool floor_grant = false;  // granted to keep the priority floor: not preempted
    Clock::TimePoint wait_start{};
    Clock::TimePoint grant_time{};
    Clock::TimePoint revoke_time{};
    Clock::TimePoint last_charge{};
    Clock::TimePoint released_at{};  // when its last lease ended
    // Waiting, and asked within batch_gap of its previous lease's end (see the top).
    bool saturating = false;
    Clock::Duration quantum{0};  // of the current lease; 0 = open-ended
    // GPU time its reports will count twice (a lease that overlapped another's drain): taken off
    // its next charges.
    Clock::Duration overlap_credit{0};
    Clock::Duration used{0};
    Clock::Duration waited{0};
    uint64_t grants = 0;
    double recent = 0;  // decayed GPU ns
    Clock::TimePoint recent_at{};
  };

  int Class(const Client& c) const;
  Clock::Duration QuantumFor(const Client& c) const;
  // The lease of a holder that only saturating clients wait behind (batch_quantum x weight).
  Clock::Duration BatchQuantumFor(const Client& c) const;
  // Some client other than `except` waits that came from idle (not saturating).
  bool AnyFreshWaiting(std::optional<ClientKey> except) const;
  // How long `h`'s current lease may run now: a fresh waiter cuts it back to the base quantum.
  Clock::Duration LeaseLimit(ClientKey hk, const Client& h) const;
  void Decay(Client& c, Clock::TimePoint now) const;
  double ClassRecent(int cls, Clock::TimePoint now) const;
  std::optional<ClientKey> PickNext(Clock::TimePoint now, bool* floor) const;
  bool AnyWaiting(std::optional<ClientKey> except) const;
  void EndLease(Client& c);
  // A revoked holder's lease ends at `now`: the wall time other holders ran beside its drain.
  void SplitOverlap(ClientKey key, Clock::TimePoint now);

  SchedulerConfig config_;
  const Clock& clock_;
  std::map<ClientKey, Client> clients_;
  // kOff: many; otherwise at most one active holder, plus revoked ones still draining (kPriority
  // preemption, kOverlap).
  std::vector<ClientKey> holders_;
};

}  // namespace slicer::arbiter

#endif  // SLICER_ARBITER_SCHEDULER_H_
