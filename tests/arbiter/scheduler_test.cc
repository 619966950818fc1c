// GpuScheduler on a simulated clock: clients are modelled as saturating or bursty submitters that
// react to grants and revokes the way the client library does (drain, then release), and the
// shares they get are compared with the weights.
#include "src/arbiter/scheduler.h"

#include <gtest/gtest.h>

#include <map>
#include <numeric>
#include <vector>

#include "tests/arbiter/sim_clock.h"

namespace slicer::arbiter {
namespace {

using std::chrono::microseconds;
using std::chrono::milliseconds;
using testing::SimClock;
using Duration = Clock::Duration;

struct SimClient {
  double weight = 1;
  Priority priority = Priority::kNormal;
  // Work arrives in bursts of `burst` every `period`; period 0 = always has work.
  Duration burst{0};
  Duration period{0};
  Duration phase{0};
  // State.
  Duration backlog{0};
  bool holding = false, waiting = false;
  Clock::TimePoint grant_at{}, start_at{};
  bool draining = false;
  Duration drain_left{0};
  Duration quantum{0};
  Duration busy_in_lease{0};  // as the client reports it: wall time with work queued
  Duration busy_total{0};     // GPU time its work actually got
  Duration demand_total{0};
  bool ignores_revoke = false;
};

// Drives one scheduler in steps of `dt`, the way the client library behaves: a holder whose
// quantum ends or that is revoked finishes its queued work (`drain` of GPU time) and releases. A
// grant takes `latency` to reach the client (the GPU idles meanwhile unless someone else has work
// queued). Holders with work time-slice the GPU equally; each reports the wall time it had work
// queued (so time shared with another holder is reported by both, as real clients do).
class Sim {
 public:
  Sim(SchedulerConfig cfg, std::vector<SimClient> clients)
      : sched_(cfg, clock_), clients_(std::move(clients)) {
    for (size_t i = 0; i < clients_.size(); ++i) {
      sched_.Add(i, clients_[i].weight, clients_[i].priority);
    }
  }

  void Run(Duration total, Duration dt = microseconds(250), Duration drain = milliseconds(1),
           Duration latency = Duration(0)) {
    drain_ = drain;
    latency_ = latency;
    Clock::TimePoint start = clock_.Now();
    while (clock_.Now() - start < total) {
      Duration t = clock_.Now() - start;
      for (size_t i = 0; i < clients_.size(); ++i) {
        SimClient& c = clients_[i];
        if (c.period.count() == 0) {
          c.backlog = Duration(std::chrono::hours(1));
        } else if ((t + c.phase) % c.period < dt) {
          c.backlog += c.burst;
          c.demand_total += c.burst;
        }
        if (c.backlog.count() > 0 && !c.holding && !c.waiting) {
          c.waiting = true;
          sched_.Request(i);
        }
      }
      Apply(sched_.Poll());
      // The holders that have work time-slice this step.
      std::vector<size_t> running;
      for (size_t i = 0; i < clients_.size(); ++i) {
        const SimClient& c = clients_[i];
        if (c.holding && clock_.Now() >= c.start_at && c.backlog.count() > 0) running.push_back(i);
      }
      for (size_t i : running) {
        SimClient& c = clients_[i];
        Duration run = std::min(dt / static_cast<int64_t>(running.size()), c.backlog);
        if (c.draining) run = std::min(run, c.drain_left);
        c.backlog -= run;
        c.busy_in_lease += std::min(dt, run * static_cast<int64_t>(running.size()));
        c.busy_total += run;
        if (c.draining) c.drain_left -= run;
        if (c.period.count() == 0) c.demand_total += run;  // bursty: accounted at arrival
      }
      gpu_busy_ += running.empty() ? Duration(0) : dt;
      clock_.Advance(dt);
      Clock::TimePoint now = clock_.Now();
      for (size_t i = 0; i < clients_.size(); ++i) {
        SimClient& c = clients_[i];
        if (!c.holding) continue;
        bool expired = c.quantum.count() > 0 && now - c.grant_at >= c.quantum;
        if (expired && !c.draining && !c.ignores_revoke) StartDrain(c);
        bool empty = c.backlog.count() == 0;
        if ((c.draining && c.drain_left.count() == 0) || empty) {
          c.holding = false;
          c.draining = false;
          bool more = c.backlog.count() > 0;
          c.waiting = more;
          sched_.Release(i, c.busy_in_lease, more);
          c.busy_in_lease = Duration(0);
        }
      }
      Apply(sched_.Poll());
    }
  }

  double Share(size_t i) const {
    Duration sum{0};
    for (const SimClient& c : clients_) sum += c.busy_total;
    return sum.count() ? static_cast<double>(clients_[i].busy_total.count()) / sum.count() : 0;
  }
  double BusyFraction(size_t i, Duration total) const {
    return static_cast<double>(clients_[i].busy_total.count()) / total.count();
  }
  // Fraction of the time some holder had work on the GPU.
  double GpuBusy(Duration total) const {
    return static_cast<double>(gpu_busy_.count()) / total.count();
  }
  SimClient& client(size_t i) { return clients_[i]; }
  GpuScheduler& sched() { return sched_; }
  SimClock& clock() { return clock_; }

 private:
  void StartDrain(SimClient& c) {
    c.draining = true;
    c.drain_left = std::min(c.backlog, drain_);
  }

  void Apply(const std::vector<Action>& actions) {
    for (const Action& a : actions) {
      SimClient& c = clients_[a.client];
      switch (a.kind) {
        case Action::kGrant:
          c.holding = true;
          c.waiting = false;
          c.draining = false;
          c.grant_at = clock_.Now();
          c.start_at = c.grant_at + latency_;
          c.quantum = a.quantum;
          c.busy_in_lease = Duration(0);
          break;
        case Action::kRevoke:
          if (!c.draining && !c.ignores_revoke) StartDrain(c);
          break;
        case Action::kForcedOff:
          c.holding = false;
          c.draining = false;
          c.waiting = false;
          break;
        case Action::kQueue:  // what the client's checkpoints aim at; the Sim drains `drain`
          break;
      }
    }
  }

  SimClock clock_;
  GpuScheduler sched_;
  std::vector<SimClient> clients_;
  Duration drain_{0};
  Duration latency_{0};
  Duration gpu_busy_{0};
};

SimClient Saturating(double weight, Priority p = Priority::kNormal) {
  SimClient c;
  c.weight = weight;
  c.priority = p;
  return c;
}

// The lease mechanism among bound clients. The simulated clients do nothing but keep the GPU
// busy (they are what Load would judge bound), so these configurations lease every client from
// its first request (Gating::kAlways) instead of after a first Load window; the tests of
// Gating::kContended below classify clients through Load.
// The lease decisions of a Poll (grants, revokes, forced hand-overs), without the queue bounds
// (kQueue), which QueueBoundsFollowTheLease checks.
std::vector<Action> Poll(GpuScheduler& s) {
  std::vector<Action> out;
  for (const Action& a : s.Poll()) {
    if (a.kind != Action::kQueue) out.push_back(a);
  }
  return out;
}

SchedulerConfig Fair() {
  SchedulerConfig cfg;
  cfg.gating = Gating::kAlways;
  cfg.policy = Policy::kFair;
  cfg.quantum = milliseconds(20);
  return cfg;
}

TEST(SchedulerTest, LoneClientGetsOpenEndedLeaseAndNoDeadline) {
  SimClock clock;
  GpuScheduler s(Fair(), clock);
  s.Add(1, 1, Priority::kNormal);
  s.Request(1);
  auto a = Poll(s);
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].kind, Action::kGrant);
  EXPECT_EQ(a[0].client, 1u);
  EXPECT_EQ(a[0].quantum.count(), 0);  // ungated
  EXPECT_FALSE(s.NextDeadline().has_value());
  clock.Advance(std::chrono::seconds(10));
  EXPECT_TRUE(Poll(s).empty());
}

TEST(SchedulerTest, SecondClientRevokesOpenEndedHolderAfterItsQuantum) {
  SimClock clock;
  GpuScheduler s(Fair(), clock);
  s.Add(1, 1, Priority::kNormal);
  s.Add(2, 1, Priority::kNormal);
  s.Request(1);
  ASSERT_EQ(Poll(s).size(), 1u);
  clock.Advance(milliseconds(5));
  s.Request(2);
  EXPECT_TRUE(Poll(s).empty());  // holder's quantum (20 ms) not over yet
  ASSERT_TRUE(s.NextDeadline().has_value());
  EXPECT_EQ(*s.NextDeadline() - clock.Now(), milliseconds(15));
  clock.Advance(milliseconds(15));
  auto a = Poll(s);
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].kind, Action::kRevoke);
  EXPECT_EQ(a[0].client, 1u);
  s.Release(1, milliseconds(20), true);
  a = Poll(s);
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].kind, Action::kGrant);
  EXPECT_EQ(a[0].client, 2u);
  // Client 1 waits, a bounded lease; it asked again as it released (saturating), so the lease is
  // the batch quantum (80 ms), not the quantum.
  EXPECT_EQ(a[0].quantum, milliseconds(80));
  EXPECT_EQ(s.Stats(2).waited, milliseconds(15));
}

// Two saturating clients take turns of batchQuantum; a third that comes from idle cuts the
// holder's lease back to the quantum counted from its grant, and is served next.
TEST(SchedulerTest, FreshWaiterCutsABatchLeaseBackToTheQuantum) {
  SimClock clock;
  GpuScheduler s(Fair(), clock);
  for (ClientKey k : {1, 2, 3}) s.Add(k, 1, Priority::kNormal);
  s.Request(1);
  Poll(s);
  s.Request(2);
  clock.Advance(milliseconds(20));
  ASSERT_EQ(Poll(s).size(), 1u);  // revoke 1
  s.Release(1, milliseconds(20), true);
  auto a = Poll(s);
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].client, 2u);
  EXPECT_EQ(a[0].quantum, milliseconds(80));
  // Only saturating client 1 waits: nothing until the batch lease ends.
  EXPECT_EQ(*s.NextDeadline() - clock.Now(), milliseconds(80));
  clock.Advance(milliseconds(10));
  EXPECT_TRUE(Poll(s).empty());
  // Client 3 asks from idle at 10 ms into the lease: the lease ends at 20 ms.
  s.Request(3);
  EXPECT_TRUE(Poll(s).empty());
  EXPECT_EQ(*s.NextDeadline() - clock.Now(), milliseconds(10));
  clock.Advance(milliseconds(10));
  a = Poll(s);
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].kind, Action::kRevoke);
  EXPECT_EQ(a[0].client, 2u);
  s.Release(2, milliseconds(20), true);
  a = Poll(s);
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].client, 3u);  // least virtual time: it idled (lifted to the others' level)
  // Behind it only saturating clients wait: a batch lease (a bursty holder hands it back when
  // it runs out of work).
  EXPECT_EQ(a[0].quantum, milliseconds(80));
}

// Client 1 holds, 2 waits; 1's quantum ends and it releases with no work left (as when its
// launching thread was not waiting yet), so 2 gets an open-ended lease. 1 asks again `later`:
// returns how long 2's lease then runs on.
Duration LeaseLeftAfterReRequest(Duration later) {
  SimClock clock;
  GpuScheduler s(Fair(), clock);
  for (ClientKey k : {1, 2}) s.Add(k, 1, Priority::kNormal);
  s.Request(1);
  Poll(s);
  s.Request(2);
  clock.Advance(milliseconds(20));
  Poll(s);
  s.Release(1, milliseconds(20), false);
  EXPECT_EQ(Poll(s).size(), 1u);  // 2 is granted, open-ended (nobody waits)
  clock.Advance(later);
  s.Request(1);
  EXPECT_TRUE(s.NextDeadline().has_value());
  return s.NextDeadline() ? *s.NextDeadline() - clock.Now() : Duration(0);
}

TEST(SchedulerTest, RequestLongAfterTheLastLeaseIsFresh) {
  // 5 ms later (more than batchGap, 2 ms): from idle, so 2's lease is the quantum.
  EXPECT_EQ(LeaseLeftAfterReRequest(milliseconds(5)), milliseconds(15));
}

TEST(SchedulerTest, RequestRightAfterTheLastLeaseIsSaturating) {
  // 1 ms later: it goes on with its work, so 2's lease is the batch quantum.
  EXPECT_EQ(LeaseLeftAfterReRequest(milliseconds(1)), milliseconds(79));
}

// Saturating clients only: batch leases cut the hand-overs (each leaves the GPU idle for the
// grant's latency here), and the shares stay equal.
TEST(SchedulerTest, BatchQuantumCutsTheHandOversOfSaturatingClients) {
  Duration total = std::chrono::seconds(10);
  SchedulerConfig off = Fair();
  off.batch_quantum = off.quantum;
  std::vector<SimClient> four = {Saturating(1), Saturating(1), Saturating(1), Saturating(1)};
  Sim plain(off, four);
  plain.Run(total, microseconds(250), milliseconds(2), microseconds(500));
  Sim batch(Fair(), four);
  batch.Run(total, microseconds(250), milliseconds(2), microseconds(500));
  // 500 us idle per hand-over: 2.5% at 20 ms leases, 0.6% at 80 ms.
  EXPECT_LT(plain.GpuBusy(total), 0.98);
  EXPECT_GT(batch.GpuBusy(total), 0.99);
  uint64_t grants_plain = 0, grants_batch = 0;
  for (ClientKey i = 0; i < 4; ++i) {
    grants_plain += plain.sched().Stats(i).grants;
    grants_batch += batch.sched().Stats(i).grants;
    EXPECT_NEAR(batch.Share(i), 0.25, 0.01) << "client " << i;
  }
  EXPECT_LT(grants_batch * 3, grants_plain);
}

// A bursty client beside saturating ones waits no longer for its turns with batch leases: its
// request cuts the holder's lease back to the quantum.
TEST(SchedulerTest, BatchQuantumDoesNotDelayABurstyClient) {
  Duration total = std::chrono::seconds(20);
  auto run = [&](SchedulerConfig cfg) {
    std::vector<SimClient> cs = {Saturating(1), Saturating(1), Saturating(1)};
    SimClient bursty;
    bursty.burst = milliseconds(3);
    bursty.period = milliseconds(50);
    cs.push_back(bursty);
    Sim sim(cfg, cs);
    sim.Run(total, microseconds(250), milliseconds(2), microseconds(250));
    ClientStats st = sim.sched().Stats(3);
    EXPECT_GT(st.grants, 300u);
    return std::chrono::duration<double, std::milli>(st.waited).count() / st.grants;
  };
  SchedulerConfig off = Fair();
  off.batch_quantum = off.quantum;
  double wait_off = run(off), wait_batch = run(Fair());
  // It waits less, in fact (2.2 vs 12.2 ms a turn here): most of the time the saturating
  // holder is already past the quantum when the request comes, and is revoked at once.
  EXPECT_LT(wait_batch, wait_off * 0.5)
      << "ms per turn: batch " << wait_batch << ", off " << wait_off;
  EXPECT_LT(wait_batch, 20 + 2 + 1);  // at most a quantum and a drain
}

class EqualShares : public ::testing::TestWithParam<int> {};

TEST_P(EqualShares, WithinOnePercent) {
  int n = GetParam();
  std::vector<SimClient> cs;
  for (int i = 0; i < n; ++i) cs.push_back(Saturating(1));
  Sim sim(Fair(), cs);
  sim.Run(std::chrono::seconds(20));
  for (int i = 0; i < n; ++i) EXPECT_NEAR(sim.Share(i), 1.0 / n, 0.01) << "client " << i;
}
INSTANTIATE_TEST_SUITE_P(TwoToEight, EqualShares, ::testing::Range(2, 9));

struct WeightCase {
  std::vector<double> weights;
};
class WeightedShares : public ::testing::TestWithParam<WeightCase> {};

TEST_P(WeightedShares, ProportionalWithinThreePercent) {
  const auto& w = GetParam().weights;
  std::vector<SimClient> cs;
  for (double x : w) cs.push_back(Saturating(x));
  Sim sim(Fair(), cs);
  sim.Run(std::chrono::seconds(30));
  double sum = std::accumulate(w.begin(), w.end(), 0.0);
  for (size_t i = 0; i < w.size(); ++i) {
    double want = w[i] / sum;
    EXPECT_NEAR(sim.Share(i) / want, 1.0, 0.03) << "client " << i << " weight " << w[i];
  }
}
INSTANTIATE_TEST_SUITE_P(Mixed, WeightedShares,
                         ::testing::Values(WeightCase{{3, 1}}, WeightCase{{1, 2, 3, 4}},
                                           WeightCase{{2, 1, 1}}, WeightCase{{1, 1, 1, 1, 1, 3}},
                                           WeightCase{{0.5, 1, 4, 1, 1, 2, 1, 1}}));

TEST(SchedulerTest, IdleClientsShareGoesToTheOthers) {
  // Client 2 only wants 10% of the time; 0 and 1 split the rest equally.
  std::vector<SimClient> cs = {Saturating(1), Saturating(1), Saturating(1)};
  cs[2].period = milliseconds(100);
  cs[2].burst = milliseconds(10);
  Sim sim(Fair(), cs);
  Duration total = std::chrono::seconds(20);
  sim.Run(total);
  EXPECT_NEAR(sim.BusyFraction(2, total), 0.10, 0.01);  // got all it asked for
  EXPECT_NEAR(sim.BusyFraction(0, total), 0.45, 0.02);
  EXPECT_NEAR(sim.BusyFraction(1, total), 0.45, 0.02);
  // Work-conserving: the GPU was never idle while someone had work.
  EXPECT_GT(sim.BusyFraction(0, total) + sim.BusyFraction(1, total) + sim.BusyFraction(2, total),
            0.99);
}

TEST(SchedulerTest, WakingClientBanksNoCredit) {
  SimClock clock;
  GpuScheduler s(Fair(), clock);
  s.Add(1, 1, Priority::kNormal);
  s.Add(2, 1, Priority::kNormal);
  s.Request(1);
  Poll(s);
  clock.Advance(std::chrono::seconds(10));
  s.Release(1, std::chrono::seconds(10), true);  // ran alone for 10 s
  Poll(s);                                      // re-granted (alone)
  s.Request(2);                                  // wakes: must not get 10 s of catch-up
  clock.Advance(milliseconds(20));
  auto a = Poll(s);
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].kind, Action::kRevoke);
  s.Release(1, milliseconds(20), true);
  a = Poll(s);
  ASSERT_EQ(a[0].client, 2u);
  // It starts one lease behind the active client (the credit any client keeps across a
  // hand-over), so it runs at most two leases before turns alternate.
  int leases_of_2 = 1;
  for (;;) {
    clock.Advance(milliseconds(20));
    s.Release(2, milliseconds(20), true);
    a = Poll(s);
    ASSERT_EQ(a.size(), 1u);
    if (a[0].client != 2u) break;
    ++leases_of_2;
    ASSERT_LE(leases_of_2, 2) << "the waking client is catching up on its idle time";
  }
  EXPECT_EQ(a[0].client, 1u);
  clock.Advance(milliseconds(20));
  s.Release(1, milliseconds(20), true);
  a = Poll(s);
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].client, 2u);  // and then they alternate
}

SchedulerConfig Prio(double floor) {
  SchedulerConfig cfg;
  cfg.gating = Gating::kAlways;  // as Fair()
  cfg.policy = Policy::kPriority;
  cfg.quantum = milliseconds(20);
  cfg.priority_floor = floor;
  return cfg;
}

TEST(SchedulerTest, PriorityHighSaturatingLowGetsTheFloor) {
  Sim sim(Prio(0.10), {Saturating(1, Priority::kHigh), Saturating(1, Priority::kLow)});
  Duration total = std::chrono::seconds(30);
  sim.Run(total);
  EXPECT_NEAR(sim.Share(1), 0.10, 0.02);
  EXPECT_NEAR(sim.Share(0), 0.90, 0.02);
}

TEST(SchedulerTest, PriorityZeroFloorStarvesLow) {
  Sim sim(Prio(0), {Saturating(1, Priority::kHigh), Saturating(1, Priority::kLow)});
  sim.Run(std::chrono::seconds(5));
  EXPECT_LT(sim.Share(1), 0.01);
}

TEST(SchedulerTest, PriorityBurstyHighGetsWhatItAsksLowFillsTheRest) {
  std::vector<SimClient> cs = {Saturating(1, Priority::kHigh), Saturating(1, Priority::kLow)};
  cs[0].period = milliseconds(50);
  cs[0].burst = milliseconds(15);  // 30% duty
  Sim sim(Prio(0.05), cs);
  Duration total = std::chrono::seconds(20);
  sim.Run(total);
  double high = sim.BusyFraction(0, total);
  EXPECT_GE(high, 0.95 * 0.30);
  EXPECT_GE(sim.BusyFraction(1, total), 0.90 * (1 - high));
}

TEST(SchedulerTest, PriorityHighPreemptsLowAtOnce) {
  SimClock clock;
  GpuScheduler s(Prio(0.05), clock);
  s.Add(1, 1, Priority::kLow);
  s.Add(2, 1, Priority::kHigh);
  s.Request(1);
  Poll(s);
  clock.Advance(milliseconds(1));
  s.Request(2);
  auto a = Poll(s);
  // High runs at once, while low drains (it does not wait for low's queued work).
  ASSERT_EQ(a.size(), 2u);
  EXPECT_EQ(a[0].kind, Action::kRevoke);
  EXPECT_EQ(a[0].client, 1u);
  EXPECT_EQ(a[1].kind, Action::kGrant);
  EXPECT_EQ(a[1].client, 2u);
  EXPECT_GT(a[1].quantum.count(), 0) << "timed: low will ask again";
  EXPECT_EQ(s.Holder(), std::optional<ClientKey>(2));
  // Low's release after draining ends only its own lease.
  clock.Advance(milliseconds(3));
  s.Release(1, milliseconds(4), true);
  EXPECT_TRUE(Poll(s).empty());
  EXPECT_EQ(s.Holder(), std::optional<ClientKey>(2));
}

TEST(SchedulerTest, FairHandOverWaitsForTheDrain) {
  SimClock clock;
  GpuScheduler s(Fair(), clock);
  s.Add(1, 1, Priority::kNormal);
  s.Add(2, 1, Priority::kNormal);
  s.Request(1);
  Poll(s);
  clock.Advance(milliseconds(25));  // past 1's quantum
  s.Request(2);
  auto a = Poll(s);
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].kind, Action::kRevoke);
  clock.Advance(milliseconds(2));
  EXPECT_TRUE(Poll(s).empty()) << "no second holder while the first drains";
  s.Release(1, milliseconds(2), false);
  a = Poll(s);
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].kind, Action::kGrant);
  EXPECT_EQ(a[0].client, 2u);
}

SchedulerConfig Overlap() {
  SchedulerConfig cfg = Fair();
  cfg.handover = Handover::kOverlap;
  return cfg;
}

TEST(SchedulerTest, OverlapGrantsTheNextHolderAtTheRevoke) {
  SimClock clock;
  GpuScheduler s(Overlap(), clock);
  s.Add(1, 1, Priority::kNormal);
  s.Add(2, 1, Priority::kNormal);
  s.Request(1);
  Poll(s);
  clock.Advance(milliseconds(25));  // past 1's quantum
  s.Request(2);
  auto a = Poll(s);
  ASSERT_EQ(a.size(), 2u);
  EXPECT_EQ(a[0].kind, Action::kRevoke);
  EXPECT_EQ(a[0].client, 1u);
  EXPECT_EQ(a[1].kind, Action::kGrant);
  EXPECT_EQ(a[1].client, 2u);
  EXPECT_EQ(a[1].quantum, milliseconds(20)) << "timed: the drained holder asks again";
  EXPECT_EQ(s.Holder(), std::optional<ClientKey>(2));
  EXPECT_EQ(s.Stats(2).waited, Duration(0));
  // 1's release after its drain ends only its own lease.
  clock.Advance(milliseconds(4));
  s.Release(1, milliseconds(29), true);
  EXPECT_TRUE(Poll(s).empty());
  EXPECT_EQ(s.Holder(), std::optional<ClientKey>(2));
  EXPECT_TRUE(s.Stats(1).waiting);
}

TEST(SchedulerTest, OverlapChargesEachHalfOfTheSharedTime) {
  SimClock clock;
  GpuScheduler s(Overlap(), clock);
  s.Add(1, 1, Priority::kNormal);
  s.Add(2, 1, Priority::kNormal);
  s.Request(1);
  Poll(s);
  s.Request(2);
  clock.Advance(milliseconds(20));
  ASSERT_EQ(Poll(s).size(), 2u);  // revoke 1, grant 2
  // Both had work queued for the 4 ms of 1's drain and both report it.
  clock.Advance(milliseconds(4));
  s.Release(1, milliseconds(24), true);
  EXPECT_EQ(s.Stats(1).used, milliseconds(22));
  clock.Advance(milliseconds(16));
  s.Release(2, milliseconds(20), true);
  EXPECT_EQ(s.Stats(2).used, milliseconds(18));
}

TEST(SchedulerTest, OverlapKeepsOneDrainingHolderBesideTheNext) {
  SimClock clock;
  GpuScheduler s(Overlap(), clock);
  for (ClientKey k = 1; k <= 3; ++k) s.Add(k, 1, Priority::kNormal);
  s.Request(1);
  Poll(s);
  s.Request(2);
  s.Request(3);
  clock.Advance(milliseconds(20));
  auto a = Poll(s);
  ASSERT_EQ(a.size(), 2u);
  ClientKey second = a[1].client;
  // 1 is slow to drain; the second holder's quantum ends too: it is revoked, but nobody else
  // starts while two drain.
  clock.Advance(milliseconds(20));
  a = Poll(s);
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].kind, Action::kRevoke);
  EXPECT_EQ(a[0].client, second);
  s.Release(1, milliseconds(40), true);
  a = Poll(s);
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].kind, Action::kGrant);
  EXPECT_EQ(a[0].client, 5u - second);  // the third client (2 + 3 = 5)
}

TEST(SchedulerTest, OverlapHolderIgnoringRevokeIsStillForcedOff) {
  SchedulerConfig cfg = Overlap();
  cfg.revoke_grace = milliseconds(100);
  SimClock clock;
  GpuScheduler s(cfg, clock);
  s.Add(1, 1, Priority::kNormal);
  s.Add(2, 1, Priority::kNormal);
  s.Request(1);
  Poll(s);
  s.Request(2);
  clock.Advance(milliseconds(20));
  ASSERT_EQ(Poll(s).size(), 2u);  // revoke 1, grant 2
  ASSERT_TRUE(s.NextDeadline().has_value());
  EXPECT_EQ(*s.NextDeadline() - clock.Now(), milliseconds(100)) << "1's grace";
  clock.Advance(milliseconds(99));
  EXPECT_TRUE(Poll(s).empty());
  clock.Advance(milliseconds(1));
  auto a = Poll(s);
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].kind, Action::kForcedOff);
  EXPECT_EQ(a[0].client, 1u);
  EXPECT_EQ(s.Holder(), std::optional<ClientKey>(2));
  EXPECT_EQ(s.Stats(1).used, milliseconds(120));
}

class OverlapEqualShares : public ::testing::TestWithParam<int> {};

TEST_P(OverlapEqualShares, WithinOnePercent) {
  int n = GetParam();
  std::vector<SimClient> cs;
  for (int i = 0; i < n; ++i) cs.push_back(Saturating(1));
  Sim sim(Overlap(), cs);
  sim.Run(std::chrono::seconds(20), microseconds(250), milliseconds(3));
  for (int i = 0; i < n; ++i) EXPECT_NEAR(sim.Share(i), 1.0 / n, 0.01) << "client " << i;
}
INSTANTIATE_TEST_SUITE_P(TwoToEight, OverlapEqualShares, ::testing::Range(2, 9));

class OverlapWeightedShares : public ::testing::TestWithParam<WeightCase> {};

// A drain of 3 ms (shared with the next holder for about 6 ms, reported by both) at every
// hand-over: the charges must not count the shared time twice.
TEST_P(OverlapWeightedShares, ProportionalWithinThreePercent) {
  const auto& w = GetParam().weights;
  std::vector<SimClient> cs;
  for (double x : w) cs.push_back(Saturating(x));
  Sim sim(Overlap(), cs);
  sim.Run(std::chrono::seconds(30), microseconds(250), milliseconds(3));
  double sum = std::accumulate(w.begin(), w.end(), 0.0);
  for (size_t i = 0; i < w.size(); ++i) {
    double want = w[i] / sum;
    EXPECT_NEAR(sim.Share(i) / want, 1.0, 0.03) << "client " << i << " weight " << w[i];
  }
}
INSTANTIATE_TEST_SUITE_P(Mixed, OverlapWeightedShares,
                         ::testing::Values(WeightCase{{3, 1}}, WeightCase{{1, 2, 3, 4}},
                                           WeightCase{{2, 1, 1}}, WeightCase{{1, 1, 1, 1, 1, 3}}));

TEST(SchedulerTest, OverlapHidesTheGrantLatencyThatDrainLeavesIdle) {
  // A grant reaches the next client 250 us after the release (drain) or the revoke (overlap).
  // Leases of the quantum for both (no batch leases).
  Duration total = std::chrono::seconds(10);
  SchedulerConfig drain_cfg = Fair(), overlap_cfg = Overlap();
  drain_cfg.batch_quantum = overlap_cfg.batch_quantum = drain_cfg.quantum;
  Sim drain(drain_cfg, {Saturating(1), Saturating(1), Saturating(1), Saturating(1)});
  drain.Run(total, microseconds(250), milliseconds(2), microseconds(250));
  Sim overlap(overlap_cfg, {Saturating(1), Saturating(1), Saturating(1), Saturating(1)});
  overlap.Run(total, microseconds(250), milliseconds(2), microseconds(250));
  EXPECT_LT(drain.GpuBusy(total), 0.995);
  EXPECT_GT(overlap.GpuBusy(total), 0.999);
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(overlap.Share(i), 0.25, 0.01) << "client " << i;
}

TEST(SchedulerTest, OverlapIdleClientsShareGoesToTheOthers) {
  std::vector<SimClient> cs = {Saturating(1), Saturating(1), Saturating(1)};
  cs[2].period = milliseconds(100);
  cs[2].burst = milliseconds(10);
  Sim sim(Overlap(), cs);
  Duration total = std::chrono::seconds(20);
  sim.Run(total, microseconds(250), milliseconds(2));
  EXPECT_NEAR(sim.BusyFraction(2, total), 0.10, 0.01);
  EXPECT_NEAR(sim.BusyFraction(0, total), 0.45, 0.02);
  EXPECT_NEAR(sim.BusyFraction(1, total), 0.45, 0.02);
}

TEST(SchedulerTest, NormalClassesUnderPriorityShareByWeight) {
  Sim sim(Prio(0.05), {Saturating(3), Saturating(1)});
  sim.Run(std::chrono::seconds(20));
  EXPECT_NEAR(sim.Share(0), 0.75, 0.02);
}

TEST(SchedulerTest, HolderIgnoringRevokeIsForcedOffAndCharged) {
  SchedulerConfig cfg = Fair();
  cfg.revoke_grace = milliseconds(100);
  SimClock clock;
  GpuScheduler s(cfg, clock);
  s.Add(1, 1, Priority::kNormal);
  s.Add(2, 1, Priority::kNormal);
  s.Request(1);
  Poll(s);
  s.Request(2);
  clock.Advance(milliseconds(20));
  ASSERT_EQ(Poll(s)[0].kind, Action::kRevoke);
  clock.Advance(milliseconds(99));
  EXPECT_TRUE(Poll(s).empty());
  clock.Advance(milliseconds(1));
  auto a = Poll(s);
  ASSERT_EQ(a.size(), 2u);
  EXPECT_EQ(a[0].kind, Action::kForcedOff);
  EXPECT_EQ(a[0].client, 1u);
  EXPECT_EQ(a[1].kind, Action::kGrant);
  EXPECT_EQ(a[1].client, 2u);
  EXPECT_EQ(s.Stats(1).used, milliseconds(120));
  // Its late Release is only a (clamped) charge.
  s.Release(1, std::chrono::seconds(5), false);
  EXPECT_EQ(s.Holder(), std::optional<ClientKey>(2));
}

TEST(SchedulerTest, ChargesAreClampedToWallTime) {
  SimClock clock;
  GpuScheduler s(Fair(), clock);
  s.Add(1, 1, Priority::kNormal);
  s.Request(1);
  Poll(s);
  clock.Advance(milliseconds(10));
  s.Charge(1, std::chrono::seconds(100));
  EXPECT_EQ(s.Stats(1).used, milliseconds(10));
  s.Charge(1, milliseconds(5));  // the same wall time cannot be charged twice
  EXPECT_EQ(s.Stats(1).used, milliseconds(10));
  s.Charge(1, milliseconds(-5));
  EXPECT_EQ(s.Stats(1).used, milliseconds(10));
}

TEST(SchedulerTest, RemovingTheHolderHandsOverAtOnce) {
  SimClock clock;
  GpuScheduler s(Fair(), clock);
  s.Add(1, 1, Priority::kNormal);
  s.Add(2, 1, Priority::kNormal);
  s.Request(1);
  Poll(s);
  s.Request(2);
  s.Remove(1);
  auto a = Poll(s);
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].client, 2u);
  EXPECT_EQ(a[0].quantum.count(), 0);
}

TEST(SchedulerTest, OffPolicyGrantsEveryoneAndNeverRevokes) {
  SchedulerConfig cfg;
  cfg.policy = Policy::kOff;
  SimClock clock;
  GpuScheduler s(cfg, clock);
  for (ClientKey k = 1; k <= 3; ++k) {
    s.Add(k, 1, Priority::kNormal);
    s.Request(k);
  }
  auto a = Poll(s);
  EXPECT_EQ(a.size(), 3u);
  for (const Action& x : a) EXPECT_EQ(x.kind, Action::kGrant);
  clock.Advance(std::chrono::seconds(5));
  EXPECT_TRUE(Poll(s).empty());
  EXPECT_FALSE(s.NextDeadline().has_value());
}

TEST(SchedulerTest, ConfiguredAndAchievedShares) {
  Sim sim(Fair(), {Saturating(3), Saturating(1)});
  sim.Run(std::chrono::seconds(10));
  ClientStats a = sim.sched().Stats(0), b = sim.sched().Stats(1);
  EXPECT_DOUBLE_EQ(a.configured_share, 0.75);
  EXPECT_DOUBLE_EQ(b.configured_share, 0.25);
  EXPECT_NEAR(a.achieved_share, 0.75, 0.05);
  EXPECT_GT(b.waited.count(), 0);
}

TEST(SchedulerTest, ParsesNames) {
  EXPECT_EQ(*ParsePolicy("priority"), Policy::kPriority);
  EXPECT_EQ(*ParseHandover("overlap"), Handover::kOverlap);
  EXPECT_EQ(*ParseHandover("drain"), Handover::kDrain);
  EXPECT_FALSE(ParseHandover("eager").ok());
  EXPECT_FALSE(ParsePolicy("fifo").ok());
  EXPECT_EQ(*ParsePriority("low"), Priority::kLow);
  EXPECT_FALSE(ParsePriority("urgent").ok());
  EXPECT_EQ(*ParseGating("contended"), Gating::kContended);
  EXPECT_EQ(*ParseGating("always"), Gating::kAlways);
  EXPECT_FALSE(ParseGating("sometimes").ok());
}

// ---- Gating::kContended: only bound clients are leased -------------------------------------

SchedulerConfig Contended(Policy p = Policy::kFair) {
  SchedulerConfig cfg;
  cfg.policy = p;
  cfg.quantum = milliseconds(20);
  return cfg;  // gating: contended is the default
}

// One Load window of `busy` with `blocked_fraction` of it spent waiting, `busy` of wall time
// after the previous one (the counters are cumulative, as the client sends them).
struct Loads {
  GpuScheduler& s;
  SimClock& clock;
  std::map<ClientKey, std::pair<Duration, Duration>> totals;
  void Window(ClientKey k, double blocked_fraction, Duration busy = milliseconds(100)) {
    auto& [b, w] = totals[k];
    if (b.count() == 0) s.Load(k, b, w);  // opens the first window
    clock.Advance(busy);
    b += busy;
    w += Duration(static_cast<int64_t>(busy.count() * blocked_fraction));
    s.Load(k, b, w);
  }
};

TEST(SchedulerTest, ContendedClientsThatDoNotWaitAllRunAtOnce) {
  SimClock clock;
  GpuScheduler s(Contended(), clock);
  for (ClientKey k = 1; k <= 4; ++k) {
    s.Add(k, 1, Priority::kNormal);
    s.Request(k);
  }
  auto a = Poll(s);
  ASSERT_EQ(a.size(), 4u);  // no client was judged bound: everyone submits, as under plain slicing
  for (const Action& x : a) {
    EXPECT_EQ(x.kind, Action::kGrant);
    EXPECT_EQ(x.quantum.count(), 0);
  }
  Loads l{s, clock, {}};
  for (int i = 0; i < 20; ++i) {
    for (ClientKey k = 1; k <= 4; ++k) l.Window(k, 0.3);  // launch-bound: waits 30% of its busy time
  }
  EXPECT_TRUE(Poll(s).empty());  // nobody revoked, ever
  EXPECT_FALSE(s.NextDeadline().has_value());
  for (ClientKey k = 1; k <= 4; ++k) {
    EXPECT_TRUE(s.Stats(k).shared);
    EXPECT_FALSE(s.Stats(k).bound);
    EXPECT_EQ(s.Stats(k).grants, 1u);
  }
  EXPECT_FALSE(s.Holder().has_value());
}

TEST(SchedulerTest, LoadJudgesBoundWithHysteresisOverWholeWindows) {
  SimClock clock;
  GpuScheduler s(Contended(), clock);
  s.Add(1, 1, Priority::kNormal);
  Loads l{s, clock, {}};
  l.Window(1, 0.79);
  EXPECT_FALSE(s.Stats(1).bound);
  l.Window(1, 0.95, milliseconds(40));  // 40 ms of busy in 40 ms of wall: not a window yet
  EXPECT_FALSE(s.Stats(1).bound);
  l.Window(1, 0.95, milliseconds(70));  // the window closes at 110 ms of busy: 0.95 blocked
  EXPECT_TRUE(s.Stats(1).bound);
  l.Window(1, 0.45);  // between leave (0.4) and enter (0.8): stays
  EXPECT_TRUE(s.Stats(1).bound);
  EXPECT_DOUBLE_EQ(s.Stats(1).blocked_fraction, 0.45);
  l.Window(1, 0.35);
  EXPECT_FALSE(s.Stats(1).bound);
  // A bursty client: 2 ms busy per 25 ms of wall. Its window closes on wall time (50 ms) once it
  // holds a twentieth of load_window (5 ms) of busy time: here after three bursts.
  uint64_t windows = s.Stats(1).load_windows;
  for (int i = 0; i < 2; ++i) {
    clock.Advance(milliseconds(23));
    l.Window(1, 1.0, milliseconds(2));
  }
  EXPECT_FALSE(s.Stats(1).bound);
  EXPECT_EQ(s.Stats(1).load_windows, windows);
  clock.Advance(milliseconds(23));
  l.Window(1, 1.0, milliseconds(2));
  EXPECT_TRUE(s.Stats(1).bound);
  EXPECT_EQ(s.Stats(1).load_windows, windows + 1);
  // Counters that go back (a reconnect, a fork) restart the window instead of going negative.
  s.Load(1, milliseconds(1), Duration(0));
  s.Load(1, milliseconds(200), Duration(0));
  EXPECT_FALSE(s.Stats(1).bound);
}

TEST(SchedulerTest, TheOnlyBoundClientKeepsItsOpenLeaseBesideSharedOnes) {
  SimClock clock;
  GpuScheduler s(Contended(), clock);
  s.Add(1, 1, Priority::kNormal);  // a trainer
  s.Add(2, 1, Priority::kNormal);  // inference
  s.Request(1);
  s.Request(2);
  ASSERT_EQ(Poll(s).size(), 2u);
  Loads l{s, clock, {}};
  l.Window(1, 0.97);
  l.Window(2, 0.2);
  EXPECT_TRUE(s.Stats(1).bound);
  EXPECT_TRUE(Poll(s).empty());  // joined the leases in place: no revoke, no drain
  EXPECT_EQ(s.Holder(), std::optional<ClientKey>(1));
  EXPECT_FALSE(s.Stats(1).shared);
  EXPECT_TRUE(s.Stats(2).shared);
  for (int i = 0; i < 10; ++i) {
    l.Window(1, 0.97);
    l.Window(2, 0.2);
  }
  EXPECT_TRUE(Poll(s).empty());  // the shared client never makes the bound one hand over
  EXPECT_FALSE(s.NextDeadline().has_value());
}

TEST(SchedulerTest, ASecondBoundClientDrainsAndTheTwoAreLeasedByWeight) {
  SimClock clock;
  GpuScheduler s(Contended(), clock);
  s.Add(1, 3, Priority::kNormal);
  s.Add(2, 1, Priority::kNormal);
  s.Request(1);
  s.Request(2);
  ASSERT_EQ(Poll(s).size(), 2u);
  Loads l{s, clock, {}};
  l.Window(1, 0.99);
  EXPECT_TRUE(Poll(s).empty());
  l.Window(2, 0.99);
  auto a = Poll(s);  // 2 must stop submitting beside the lease holder: it drains and asks again
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].kind, Action::kRevoke);
  EXPECT_EQ(a[0].client, 2u);
  clock.Advance(milliseconds(2));
  s.Release(2, milliseconds(2), /*more_work=*/true);
  EXPECT_TRUE(s.Stats(2).waiting);
  // 1 was open-ended: a waiter revokes it once its lease (from its grant) is over; 2 asked
  // again at once, saturating, so that is a batch lease: 80 ms x weight 3, clamped to maxQuantum
  // (200 ms); it joined 102 ms ago.
  EXPECT_TRUE(Poll(s).empty());
  ASSERT_TRUE(s.NextDeadline().has_value());
  EXPECT_EQ(*s.NextDeadline() - clock.Now(), milliseconds(200 - 102));
  clock.Advance(*s.NextDeadline() - clock.Now());
  a = Poll(s);
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].kind, Action::kRevoke);
  EXPECT_EQ(a[0].client, 1u);
  s.Release(1, milliseconds(10), true);
  a = Poll(s);
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].kind, Action::kGrant);
  EXPECT_EQ(a[0].client, 2u);
  EXPECT_GT(a[0].quantum.count(), 0);  // a timed lease now
}

TEST(SchedulerTest, ABoundHolderThatStopsWaitingLeavesTheLeases) {
  SimClock clock;
  GpuScheduler s(Contended(), clock);
  s.Add(1, 1, Priority::kNormal);
  s.Add(2, 1, Priority::kNormal);
  s.Request(1);
  ASSERT_EQ(Poll(s).size(), 1u);
  Loads l{s, clock, {}};
  l.Window(1, 0.99);
  ASSERT_EQ(s.Holder(), std::optional<ClientKey>(1));
  l.Window(1, 0.1);  // its load changed: now mostly on the CPU
  EXPECT_FALSE(s.Stats(1).bound);
  EXPECT_TRUE(s.Stats(1).shared);
  EXPECT_FALSE(s.Holder().has_value());
  // A new bound client is not held behind it.
  s.Request(2);
  l.Window(2, 0.99);
  auto a = Poll(s);
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].client, 2u);
  clock.Advance(milliseconds(500));
  EXPECT_TRUE(Poll(s).empty());
}

TEST(SchedulerTest, UnderPriorityOnlyABoundHigherClassPreempts) {
  SimClock clock;
  GpuScheduler s(Contended(Policy::kPriority), clock);
  s.Add(1, 1, Priority::kLow);   // saturating trainer
  s.Add(2, 1, Priority::kHigh);  // launch-bound inference
  s.Add(3, 1, Priority::kHigh);  // a high client that waits on its bursts
  s.Request(1);
  ASSERT_EQ(Poll(s).size(), 1u);
  Loads l{s, clock, {}};
  l.Window(1, 0.99);
  s.Request(2);
  l.Window(2, 0.2);
  auto a = Poll(s);
  ASSERT_EQ(a.size(), 1u);  // 2 runs beside the trainer: a shared lease, nobody preempted
  EXPECT_EQ(a[0].client, 2u);
  EXPECT_EQ(a[0].kind, Action::kGrant);
  EXPECT_EQ(s.Holder(), std::optional<ClientKey>(1));
  // 3 is bound: its request preempts the low holder at once.
  s.Request(3);
  Poll(s);  // granted shared while not judged yet
  l.Window(3, 0.95);
  a = Poll(s);
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].kind, Action::kRevoke);
  EXPECT_EQ(a[0].client, 3u);  // leaves its shared lease to join the leases
  s.Release(3, milliseconds(1), true);
  a = Poll(s);
  bool revoked_low = false, granted_high = false;
  for (const Action& x : a) {
    revoked_low |= x.kind == Action::kRevoke && x.client == 1u;
    granted_high |= x.kind == Action::kGrant && x.client == 3u;
  }
  EXPECT_TRUE(revoked_low);
  EXPECT_TRUE(granted_high);
}

// The bound a holder's checkpoints aim at: large for a shared lease (nobody waits to take it
// over), medium for the only bound client, maxQueued once another bound client is active.
TEST(SchedulerTest, QueueBoundsFollowTheLease) {
  SimClock clock;
  SchedulerConfig cfg = Contended();
  cfg.queue_shared = milliseconds(100);
  cfg.queue_alone = milliseconds(50);
  cfg.queue_leased = milliseconds(10);
  GpuScheduler s(cfg, clock);
  auto queue_of = [](const std::vector<Action>& a, ClientKey k) {
    Duration q{-1};
    for (const Action& x : a) {
      if (x.kind == Action::kQueue && x.client == k) q = x.queue;
    }
    return q;
  };
  s.Add(1, 1, Priority::kNormal);
  s.Add(2, 1, Priority::kNormal);
  s.Request(1);
  auto a = s.Poll();
  ASSERT_EQ(a.size(), 2u);
  EXPECT_EQ(a[0].kind, Action::kGrant);  // the grant first: a grant resets the client's bound
  EXPECT_EQ(queue_of(a, 1), milliseconds(100));
  EXPECT_TRUE(s.Poll().empty());  // said once
  Loads l{s, clock, {}};
  l.Window(1, 0.99);
  EXPECT_EQ(queue_of(s.Poll(), 1), milliseconds(50));  // the only bound client
  s.Request(2);
  a = s.Poll();
  EXPECT_EQ(queue_of(a, 2), milliseconds(100));
  EXPECT_EQ(queue_of(a, 1), Duration(-1));  // a shared neighbour changes nothing
  l.Window(2, 0.99);  // 2 joins: revoked (its drain), and 1's queue is cut for the hand-over
  a = s.Poll();
  EXPECT_EQ(queue_of(a, 1), milliseconds(10));
  EXPECT_EQ(queue_of(a, 2), Duration(-1));  // revoked: no bound while it drains
}

TEST(SchedulerTest, SharedTimeIsNotChargedAsVirtualTime) {
  // A client that ran shared for a long time joins the leases without a debt: it is not starved
  // by the time it used beside everyone.
  SimClock clock;
  GpuScheduler s(Contended(), clock);
  s.Add(1, 1, Priority::kNormal);
  s.Add(2, 1, Priority::kNormal);
  s.Request(1);
  s.Request(2);
  Poll(s);
  Loads l{s, clock, {}};
  l.Window(1, 0.99);
  for (int i = 0; i < 30; ++i) {
    l.Window(2, 0.3);
    s.Charge(2, milliseconds(100));  // charged (metrics), but no virtual time
  }
  l.Window(2, 0.99);  // now bound: revoked, then asks again
  Poll(s);
  s.Release(2, Duration(0), true);
  Poll(s);  // 1 revoked (its quantum from the grant is long over)
  s.Release(1, milliseconds(20), true);
  auto a = Poll(s);
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].client, 2u);  // 2 goes next, as a fresh joiner would
}

}  // namespace
}  // namespace slicer::arbiter
