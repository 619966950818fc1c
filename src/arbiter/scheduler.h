// The time-share scheduler of ONE GPU: who may submit work now, for how long, and who is next.
//
// Contention first (Gating::kContended, the default): a client that does not keep the GPU busy
// on its own -- launch-bound inference, a notebook, anything whose process spends most of its
// busy time on the CPU -- is granted an open-ended *shared* lease at once and submits
// concurrently with everyone, exactly as under the driver's own time-slicing, which interleaves
// such clients' kernels into each other's idle gaps (4 launch-bound inference processes reach
// ~4x one alone). Only clients that are *bound* -- they spend most of their busy time waiting for
// their own GPU work (Load) -- are leased below, among themselves: two of them gain nothing from
// overlapping (neither leaves gaps) and lose a context switch every driver timeslice, which
// leases avoid. Under Gating::kAlways every client is leased (the first design; for comparison).
//
// Mechanism among bound clients (the weighted lease of DESIGN.md): at most one holds the lease; it
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
enum class Gating { kContended, kAlways };

absl::StatusOr<Policy> ParsePolicy(std::string_view text);
absl::StatusOr<Priority> ParsePriority(std::string_view text);
absl::StatusOr<Handover> ParseHandover(std::string_view text);
absl::StatusOr<Gating> ParseGating(std::string_view text);
const char* GatingName(Gating g);
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
  // Who is leased: only bound clients (kContended), or everyone (kAlways).
  Gating gating = Gating::kContended;
  // A client is judged over windows of its Load reports: a window closes once it holds
  // `load_window` of busy time, or `load_window_wall` of wall time with at least a twentieth of
  // `load_window` busy (a bursty client is judged within a few of its requests). It becomes bound
  // when the blocked fraction of a window reaches `bound_enter`, and shared again below
  // `bound_leave`. The gap is wide on purpose: taking a CPU-bound client for a bound one costs
  // it its concurrency, the other mistake costs only what plain time-slicing costs; and a
  // trainer beside busy neighbours waits 60-80% of its time (H200, 2026-12-03).
  Clock::Duration load_window = std::chrono::milliseconds(100);
  Clock::Duration load_window_wall = std::chrono::milliseconds(50);
  double bound_enter = 0.8;
  double bound_leave = 0.4;
  // How much work a holder of an open-ended lease may keep queued (Action::kQueue): a shared
  // lease (nobody waits to take it over: the bound only keeps a checkpoint for Load), the only
  // bound client's (a hand-over may come: one drain of this much), a lease among others (after
  // every grant; the client's checkpoints). The owner sets them from its maxQueued.
  Clock::Duration queue_shared = std::chrono::milliseconds(100);
  Clock::Duration queue_alone = std::chrono::milliseconds(50);
  Clock::Duration queue_leased = std::chrono::milliseconds(10);
};

using ClientKey = uint64_t;

struct Action {
  // kQueue: the holder's bound on queued work is now `queue` (after a grant it is queue_leased).
  enum Kind { kGrant, kRevoke, kForcedOff, kQueue };
  Kind kind;
  ClientKey client;
  Clock::Duration quantum{0};  // kGrant: lease length; 0 = open-ended
  Clock::Duration queue{0};    // kQueue
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
  bool bound = false;   // keeps the GPU busy on its own: leased (Gating::kContended)
  bool shared = false;  // holds a shared lease (submits beside everyone)
  double blocked_fraction = 0;  // of its last Load window
  uint64_t load_windows = 0;    // Load windows closed so far
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
  // The client's cumulative busy time on this GPU and the part of it spent waiting for its own
  // GPU work (both monotonic; a smaller value restarts the window). Classifies it bound or
  // shared (SchedulerConfig::load_window). A shared holder that becomes bound joins the leases:
  // at once when no other bound client is active, else by a Revoke (it drains and asks again).
  // A bound holder that becomes shared is moved to a shared lease when its lease is open-ended;
  // a timed lease runs out first.
  // Returns whether a window closed (and then the client's fraction and judgement).
  struct LoadWindow {
    bool closed = false;
    double blocked_fraction = 0;
    bool bound = false;
  };
  LoadWindow Load(ClientKey key, Clock::Duration busy_total, Clock::Duration blocked_total);

  // Decisions due now: grants, revokes, forced hand-overs. Call after every event.
  std::vector<Action> Poll();
  // When Poll must run next (a quantum or a grace period ends); nullopt: only on events.
  std::optional<Clock::TimePoint> NextDeadline() const;

  bool Has(ClientKey key) const { return clients_.count(key) != 0; }
  // Judged bound by Load (cheap, unlike Stats).
  bool Bound(ClientKey key) const {
    auto it = clients_.find(key);
    return it != clients_.end() && it->second.bound;
  }
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
    bool bound = false;
    bool shared = false;   // holding a shared lease (not in holders_)
    bool in_ring = false;  // its virtual time is among the leased clients'
    // Where the current Load window started (cumulative counters) and when.
    Clock::Duration load_busy{0}, load_blocked{0};
    Clock::TimePoint load_at{};
    bool load_started = false;
    double blocked_fraction = 0;  // of its last window
    uint64_t load_windows = 0;
    Clock::Duration queue{0};  // the bound on queued work it was told since its grant
    double recent = 0;  // decayed GPU ns
    Clock::TimePoint recent_at{};
  };

  int Class(const Client& c) const;
  // Leased among the bound clients (else granted a shared lease at once).
  bool Leased(const Client& c) const { return config_.gating == Gating::kAlways || c.bound; }
  // Some leased client other than `except` holds or waits.
  bool AnyLeasedActive(ClientKey except) const;
  // Poll without the queue bounds; QueueBounds appends a kQueue for each holder whose bound
  // changed.
  std::vector<Action> PollLeases();
  void QueueBounds(std::vector<Action>& actions);
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
  // Actions decided outside Poll (Load), handed out by the next Poll.
  std::vector<Action> pending_;
};

}  // namespace slicer::arbiter

#endif  // SLICER_ARBITER_SCHEDULER_H_
