#include "src/arbiter/scheduler.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"

namespace slicer::arbiter {

absl::StatusOr<Policy> ParsePolicy(std::string_view text) {
  if (text == "fair") return Policy::kFair;
  if (text == "priority") return Policy::kPriority;
  if (text == "off") return Policy::kOff;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown policy \"", std::string(text), "\": use fair, priority or off"));
}

absl::StatusOr<Priority> ParsePriority(std::string_view text) {
  if (text == "high") return Priority::kHigh;
  if (text == "normal" || text.empty()) return Priority::kNormal;
  if (text == "low") return Priority::kLow;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown priority \"", std::string(text), "\": use high, normal or low"));
}

absl::StatusOr<Handover> ParseHandover(std::string_view text) {
  if (text == "drain") return Handover::kDrain;
  if (text == "overlap") return Handover::kOverlap;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown handover \"", std::string(text), "\": use drain or overlap"));
}

const char* HandoverName(Handover h) { return h == Handover::kOverlap ? "overlap" : "drain"; }

absl::StatusOr<Gating> ParseGating(std::string_view text) {
  if (text == "contended") return Gating::kContended;
  if (text == "always") return Gating::kAlways;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown gating \"", std::string(text), "\": use contended or always"));
}

const char* GatingName(Gating g) { return g == Gating::kAlways ? "always" : "contended"; }

const char* PolicyName(Policy p) {
  switch (p) {
    case Policy::kOff:
      return "off";
    case Policy::kFair:
      return "fair";
    case Policy::kPriority:
      return "priority";
  }
  return "?";
}

const char* PriorityName(Priority p) {
  switch (p) {
    case Priority::kHigh:
      return "high";
    case Priority::kNormal:
      return "normal";
    case Priority::kLow:
      return "low";
  }
  return "?";
}

GpuScheduler::GpuScheduler(const SchedulerConfig& config, const Clock& clock)
    : config_(config), clock_(clock) {}

int GpuScheduler::Class(const Client& c) const {
  return config_.policy == Policy::kPriority ? static_cast<int>(c.priority) : 1;
}

Clock::Duration GpuScheduler::QuantumFor(const Client& c) const {
  auto q = std::chrono::duration_cast<Clock::Duration>(config_.quantum * c.weight);
  return std::clamp(q, config_.min_quantum, std::max(config_.min_quantum, config_.max_quantum));
}

Clock::Duration GpuScheduler::BatchQuantumFor(const Client& c) const {
  auto q = std::chrono::duration_cast<Clock::Duration>(
      std::max(config_.batch_quantum, config_.quantum) * c.weight);
  return std::clamp(q, config_.min_quantum, std::max(config_.min_quantum, config_.max_quantum));
}

bool GpuScheduler::AnyFreshWaiting(std::optional<ClientKey> except) const {
  for (const auto& [k, c] : clients_) {
    if (c.waiting && Leased(c) && !c.saturating && (!except || k != *except)) return true;
  }
  return false;
}

Clock::Duration GpuScheduler::LeaseLimit(ClientKey hk, const Client& h) const {
  bool timed = h.quantum.count() > 0;
  if (AnyFreshWaiting(hk)) return timed ? std::min(h.quantum, QuantumFor(h)) : QuantumFor(h);
  return timed ? h.quantum : BatchQuantumFor(h);
}

void GpuScheduler::Decay(Client& c, Clock::TimePoint now) const {
  if (now <= c.recent_at) return;
  double dt = std::chrono::duration<double>(now - c.recent_at).count();
  double tau = std::max(1e-3, std::chrono::duration<double>(config_.share_window).count());
  c.recent *= std::exp(-dt / tau);
  c.recent_at = now;
}

double GpuScheduler::ClassRecent(int cls, Clock::TimePoint now) const {
  double sum = 0;
  double tau = std::max(1e-3, std::chrono::duration<double>(config_.share_window).count());
  for (const auto& [key, c] : clients_) {
    if (cls >= 0 && Class(c) != cls) continue;
    double dt = now > c.recent_at ? std::chrono::duration<double>(now - c.recent_at).count() : 0;
    sum += c.recent * std::exp(-dt / tau);
  }
  return sum;
}

void GpuScheduler::Add(ClientKey key, double weight, Priority priority) {
  weight = std::clamp(std::isfinite(weight) ? weight : 1.0, 0.001, 1e6);
  auto [it, inserted] = clients_.try_emplace(key);
  Client& c = it->second;
  c.weight = weight;
  c.priority = priority;
  if (inserted) {
    c.last_charge = clock_.Now();
    c.recent_at = c.last_charge;
  }
}

void GpuScheduler::EndLease(Client& c) {
  c.holding = false;
  c.shared = false;
  c.revoked = false;
  c.floor_grant = false;
  c.quantum = Clock::Duration(0);
}

void GpuScheduler::Remove(ClientKey key) {
  auto it = clients_.find(key);
  if (it == clients_.end()) return;
  holders_.erase(std::remove(holders_.begin(), holders_.end(), key), holders_.end());
  clients_.erase(it);
}

void GpuScheduler::Request(ClientKey key) {
  auto it = clients_.find(key);
  if (it == clients_.end()) return;
  Client& c = it->second;
  if (c.holding || c.waiting) return;
  Clock::TimePoint now = clock_.Now();
  c.waiting = true;
  c.wait_start = now;
  if (!Leased(c)) return;  // Poll grants it a shared lease
  // Idle time banks no credit: start at the least virtual time of the active clients.
  double min_active = std::numeric_limits<double>::infinity();
  for (const auto& [k, o] : clients_) {
    if (k != key && Leased(o) && o.in_ring && (o.waiting || (o.holding && !o.shared)) &&
        Class(o) == Class(c)) {
      min_active = std::min(min_active, o.vtime);
    }
  }
  c.saturating = c.grants > 0 && now - c.released_at <= config_.batch_gap;
  // A client joining from a shared lease was not charged virtual time meanwhile: the rule below
  // lifts it to the others' (less one lease), as for any client waking from idle.
  c.in_ring = true;
  // But a client that only stepped out to hand over (it drains, releases, asks again while the
  // next one runs) keeps up to one lease of credit; lifting it all the way would hand every
  // client the same lease count and flatten 3:1 towards the ratio of the quanta plus drain time.
  if (std::isfinite(min_active)) {
    Clock::Duration lease = c.saturating ? BatchQuantumFor(c) : QuantumFor(c);
    double allowance = static_cast<double>(lease.count()) / c.weight;
    c.vtime = std::max(c.vtime, min_active - allowance);
  }
}

void GpuScheduler::Charge(ClientKey key, Clock::Duration busy) {
  auto it = clients_.find(key);
  if (it == clients_.end()) return;
  Client& c = it->second;
  Clock::TimePoint now = clock_.Now();
  Clock::Duration wall = now - c.last_charge;
  busy = std::clamp(busy, Clock::Duration(0), std::max(Clock::Duration(0), wall));
  // The clamp budget is consumed by what was charged: a client cannot report the same wall time
  // twice, but an under-report does not lose the rest of the budget.
  c.last_charge += busy;
  Clock::Duration credit = std::min(busy, c.overlap_credit);
  c.overlap_credit -= credit;
  busy -= credit;
  c.used += busy;
  if (c.in_ring) c.vtime += static_cast<double>(busy.count()) / c.weight;
  Decay(c, now);
  c.recent += static_cast<double>(busy.count());
}

void GpuScheduler::SplitOverlap(ClientKey key, Clock::TimePoint now) {
  Client& c = clients_.at(key);
  if (!c.holding || !c.revoked) return;
  // Both the drain and the lease granted beside it count the shared wall time as their own busy
  // time; the GPU time-sliced it between them, so each is charged half of it.
  for (ClientKey hk : holders_) {
    if (hk == key) continue;
    Client& h = clients_.at(hk);
    Clock::Duration both = now - std::max(h.grant_time, c.revoke_time);
    if (both <= Clock::Duration(0)) continue;
    c.overlap_credit += both / 2;
    h.overlap_credit += both / 2;
  }
}

void GpuScheduler::Release(ClientKey key, Clock::Duration busy, bool more_work) {
  auto it = clients_.find(key);
  if (it == clients_.end()) return;
  Client& c = it->second;
  SplitOverlap(key, clock_.Now());
  Charge(key, busy);
  if (c.holding) {
    // Credit its reports did not use up (it was not busy for all of an overlap) is dropped: it
    // must not discount a later lease's work.
    c.overlap_credit = Clock::Duration(0);
    EndLease(c);
    holders_.erase(std::remove(holders_.begin(), holders_.end(), key), holders_.end());
    // Time between hand-overs is nobody's: the next charge window starts now.
    c.last_charge = clock_.Now();
    c.released_at = c.last_charge;
  }
  if (more_work) Request(key);
}

bool GpuScheduler::AnyWaiting(std::optional<ClientKey> except) const {
  for (const auto& [k, c] : clients_) {
    if (c.waiting && Leased(c) && (!except || k != *except)) return true;
  }
  return false;
}

bool GpuScheduler::AnyLeasedActive(ClientKey except) const {
  for (const auto& [k, c] : clients_) {
    if (k != except && Leased(c) && (c.waiting || (c.holding && !c.shared))) return true;
  }
  return false;
}

GpuScheduler::LoadWindow GpuScheduler::Load(ClientKey key, Clock::Duration busy_total, Clock::Duration blocked_total) {
  auto it = clients_.find(key);
  if (it == clients_.end()) return {};
  Client& c = it->second;
  Clock::TimePoint now = clock_.Now();
  if (!c.load_started || busy_total < c.load_busy || blocked_total < c.load_blocked) {
    c.load_started = true;
    c.load_busy = busy_total;
    c.load_blocked = blocked_total;
    c.load_at = now;
    return {};
  }
  Clock::Duration busy = busy_total - c.load_busy;
  Clock::Duration blocked = std::min(blocked_total - c.load_blocked, busy);
  if (busy < config_.load_window &&
      (now - c.load_at < config_.load_window_wall || busy < config_.load_window / 20)) {
    return {};
  }
  double fraction = busy.count() > 0 ? static_cast<double>(blocked.count()) / busy.count() : 0;
  c.load_busy = busy_total;
  c.load_blocked = blocked_total;
  c.load_at = now;
  c.blocked_fraction = fraction;
  ++c.load_windows;
  bool was = c.bound;
  if (!c.bound && fraction >= config_.bound_enter) c.bound = true;
  if (c.bound && fraction < config_.bound_leave) c.bound = false;
  LoadWindow window{true, fraction, c.bound};
  if (config_.gating == Gating::kAlways || was == c.bound || !c.holding) return window;
  if (c.bound && c.shared) {
    c.shared = false;
    c.in_ring = false;  // re-joins at the leased clients' virtual time
    if (!AnyLeasedActive(key)) {
      // The only bound client: its open-ended lease simply becomes the lease.
      c.in_ring = true;
      c.quantum = Clock::Duration(0);
      c.grant_time = now;
      holders_.push_back(key);
      return window;
    }
    // Others are leased: it drains and asks again, joining them (in holders_ as a revoked holder,
    // so that the next lease waits for its drain and revokeGrace applies).
    c.revoked = true;
    c.revoke_time = now;
    holders_.push_back(key);
    pending_.push_back({Action::kRevoke, key, Clock::Duration(0)});
  } else if (!c.bound && !c.shared && !c.revoked && c.quantum.count() == 0 &&
             config_.policy != Policy::kOff) {
    // An open-ended lease among bound clients becomes a shared one: nobody waits for it.
    holders_.erase(std::remove(holders_.begin(), holders_.end(), key), holders_.end());
    c.shared = true;
    c.in_ring = false;
  }
  return window;
}

std::optional<ClientKey> GpuScheduler::PickNext(Clock::TimePoint now, bool* floor) const {
  *floor = false;
  // Best (least virtual time) waiter per class.
  std::optional<ClientKey> best[3];
  for (const auto& [k, c] : clients_) {
    if (!c.waiting || !Leased(c)) continue;
    int cls = Class(c);
    if (!best[cls] || c.vtime < clients_.at(*best[cls]).vtime) best[cls] = k;
  }
  int top = -1;
  for (int cls = 0; cls < 3; ++cls) {
    if (best[cls]) {
      top = cls;
      break;
    }
  }
  if (top < 0) return std::nullopt;
  if (config_.policy == Policy::kPriority && config_.priority_floor > 0) {
    double total = ClassRecent(-1, now);
    if (total > 0) {
      // The most starved lower class under its floor goes first.
      int starved = -1;
      double starved_share = config_.priority_floor;
      for (int cls = top + 1; cls < 3; ++cls) {
        if (!best[cls]) continue;
        double share = ClassRecent(cls, now) / total;
        if (share < starved_share) {
          starved = cls;
          starved_share = share;
        }
      }
      if (starved >= 0) {
        *floor = true;
        return best[starved];
      }
    }
  }
  return best[top];
}

std::vector<Action> GpuScheduler::Poll() {
  std::vector<Action> actions = PollLeases();
  if (config_.policy != Policy::kOff) QueueBounds(actions);
  return actions;
}

void GpuScheduler::QueueBounds(std::vector<Action>& actions) {
  for (const Action& a : actions) {
    // A grant puts the client back at queue_leased (WELCOME's maxQueued).
    if (a.kind == Action::kGrant) clients_.at(a.client).queue = config_.queue_leased;
  }
  for (auto& [k, c] : clients_) {
    if (!c.holding || c.revoked) continue;
    Clock::Duration want = c.shared ? config_.queue_shared
                           : c.quantum.count() == 0 && !AnyLeasedActive(k) ? config_.queue_alone
                                                                            : config_.queue_leased;
    if (want == c.queue) continue;
    c.queue = want;
    Action q{Action::kQueue, k};
    q.queue = want;
    actions.push_back(q);
  }
}

std::vector<Action> GpuScheduler::PollLeases() {
  std::vector<Action> actions;
  actions.swap(pending_);
  Clock::TimePoint now = clock_.Now();
  if (config_.policy != Policy::kOff) {
    // Clients that do not keep the GPU busy on their own run beside everyone, at once.
    for (auto& [k, c] : clients_) {
      if (!c.waiting || Leased(c)) continue;
      c.waiting = false;
      c.waited += now - c.wait_start;
      c.holding = true;
      c.shared = true;
      c.revoked = false;
      c.in_ring = false;
      c.quantum = Clock::Duration(0);
      c.grant_time = now;
      c.last_charge = now;
      ++c.grants;
      actions.push_back({Action::kGrant, k, Clock::Duration(0)});
    }
  }
  if (config_.policy == Policy::kOff) {
    for (auto& [k, c] : clients_) {
      if (!c.waiting) continue;
      c.waiting = false;
      c.waited += now - c.wait_start;
      c.holding = true;
      c.grant_time = now;
      ++c.grants;
      holders_.push_back(k);
      actions.push_back({Action::kGrant, k, Clock::Duration(0)});
    }
    return actions;
  }
  // Forced hand-overs: a revoked holder past its grace loses the lease and pays for the wall time
  // it kept (stuck or hostile).
  for (auto it = holders_.begin(); it != holders_.end();) {
    Client& h = clients_.at(*it);
    if (h.revoked && now - h.revoke_time >= config_.revoke_grace) {
      Charge(*it, now - h.last_charge);
      EndLease(h);
      actions.push_back({Action::kForcedOff, *it, Clock::Duration(0)});
      it = holders_.erase(it);
    } else {
      ++it;
    }
  }
  // At most one holder is active (not revoked); the others drain. Under kDrain a hand-over waits
  // for the drain; under kOverlap the next holder is granted at the revoke. Under kPriority a
  // waiting higher class is granted at once either way and runs while the lower holder drains
  // (its queued work shares the GPU with the higher class for that long, as under plain
  // time-slicing, instead of delaying it).
  for (ClientKey hk : holders_) {
    Client& h = clients_.at(hk);
    if (h.revoked) continue;
    if (!AnyWaiting(hk)) return actions;
    bool preempt = false;
    if (config_.policy == Policy::kPriority && !h.floor_grant) {
        for (const auto& [k, c] : clients_) {
        if (c.waiting && Leased(c) && Class(c) < Class(h)) preempt = true;
      }
    }
    if (!preempt && now - h.grant_time < LeaseLimit(hk, h)) return actions;
    h.revoked = true;
    h.revoke_time = now;
    actions.push_back({Action::kRevoke, hk, Clock::Duration(0)});
    if (!preempt && config_.handover == Handover::kDrain) return actions;
    break;
  }
  bool floor = false;
  std::optional<ClientKey> next = PickNext(now, &floor);
  if (!next) return actions;
  Client& c = clients_.at(*next);
  // Every holder left is revoked (an active one returned above). The next one starts beside a
  // draining holder of a lower class (kPriority), or beside one draining holder (kOverlap).
  int draining = 0;
  for (ClientKey hk : holders_) {
    const Client& h = clients_.at(hk);
    if (config_.policy == Policy::kPriority && Class(c) < Class(h)) continue;
    if (config_.handover == Handover::kOverlap && h.revoked && ++draining == 1) continue;
    return actions;
  }
  c.waiting = false;
  c.waited += now - c.wait_start;
  c.holding = true;
  c.shared = false;
  c.in_ring = true;
  c.revoked = false;
  c.floor_grant = floor;
  c.grant_time = now;
  c.last_charge = now;
  ++c.grants;
  // Timed when others wait, or a preempted holder drains (it will ask again); longer while every
  // other waiter is saturating.
  if (AnyWaiting(*next)) {
    c.quantum = AnyFreshWaiting(*next) ? QuantumFor(c) : BatchQuantumFor(c);
  } else {
    c.quantum = holders_.empty() ? Clock::Duration(0) : QuantumFor(c);
  }
  holders_.push_back(*next);
  actions.push_back({Action::kGrant, *next, c.quantum});
  return actions;
}

std::optional<Clock::TimePoint> GpuScheduler::NextDeadline() const {
  if (config_.policy == Policy::kOff) return std::nullopt;
  std::optional<Clock::TimePoint> next;
  for (ClientKey hk : holders_) {
    const Client& h = clients_.at(hk);
    Clock::TimePoint at;
    if (h.revoked) {
      at = h.revoke_time + config_.revoke_grace;
    } else if (AnyWaiting(hk)) {
      at = h.grant_time + LeaseLimit(hk, h);
    } else {
      continue;
    }
    if (!next || at < *next) next = at;
  }
  return next;
}

ClientStats GpuScheduler::Stats(ClientKey key) const {
  ClientStats s;
  auto it = clients_.find(key);
  if (it == clients_.end()) return s;
  const Client& c = it->second;
  Clock::TimePoint now = clock_.Now();
  s.weight = c.weight;
  s.priority = c.priority;
  s.holding = c.holding;
  s.waiting = c.waiting;
  s.used = c.used;
  s.waited = c.waited + (c.waiting ? now - c.wait_start : Clock::Duration(0));
  s.grants = c.grants;
  s.bound = c.bound;
  s.blocked_fraction = c.blocked_fraction;
  s.load_windows = c.load_windows;
  s.shared = c.holding && c.shared;
  double total = ClassRecent(-1, now);
  if (total > 0) {
    double tau = std::max(1e-3, std::chrono::duration<double>(config_.share_window).count());
    double dt = now > c.recent_at ? std::chrono::duration<double>(now - c.recent_at).count() : 0;
    s.achieved_share = c.recent * std::exp(-dt / tau) / total;
  }
  double wsum = 0;
  for (const auto& [k, o] : clients_) {
    if (Class(o) == Class(c)) wsum += o.weight;
  }
  s.configured_share = wsum > 0 ? c.weight / wsum : 0;
  return s;
}

std::vector<ClientKey> GpuScheduler::Clients() const {
  std::vector<ClientKey> out;
  for (const auto& [k, c] : clients_) out.push_back(k);
  return out;
}

std::optional<ClientKey> GpuScheduler::Holder() const {
  if (config_.policy == Policy::kOff || holders_.empty()) return std::nullopt;
  for (ClientKey hk : holders_) {
    if (!clients_.at(hk).revoked) return hk;
  }
  return holders_.front();
}

}  // namespace slicer::arbiter
