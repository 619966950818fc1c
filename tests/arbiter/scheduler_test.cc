// GpuScheduler on a simulated clock: clients are modelled as saturating or bursty submitters that
// react to grants and revokes the way the client library does (drain, then release), and the
// shares they get are compared with the weights.
#include "src/arbiter/scheduler.h"

#include <gtest/gtest.h>

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
  Clock::TimePoint grant_at{}, revoke_at{};
  bool revoke_pending = false;
  Duration quantum{0};
  Duration busy_in_lease{0};
  Duration busy_total{0};
  Duration demand_total{0};
  bool ignores_revoke = false;
};

// Drives one scheduler in steps of `dt`. Drain after a revoke takes `drain` (queued work).
class Sim {
 public:
  Sim(SchedulerConfig cfg, std::vector<SimClient> clients)
      : sched_(cfg, clock_), clients_(std::move(clients)) {
    for (size_t i = 0; i < clients_.size(); ++i) {
      sched_.Add(i, clients_[i].weight, clients_[i].priority);
    }
  }

  void Run(Duration total, Duration dt = microseconds(250), Duration drain = milliseconds(1)) {
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
      Apply(sched_.Poll(), drain);
      // The holder (one) runs for dt.
      for (size_t i = 0; i < clients_.size(); ++i) {
        SimClient& c = clients_[i];
        if (!c.holding) continue;
        Duration run = std::min(dt, c.backlog);
        c.backlog -= run;
        c.busy_in_lease += run;
        c.busy_total += run;
        if (c.period.count() != 0) {
          // bursty: demand accounted at arrival
        } else {
          c.demand_total += run;
        }
      }
      clock_.Advance(dt);
      Clock::TimePoint now = clock_.Now();
      for (size_t i = 0; i < clients_.size(); ++i) {
        SimClient& c = clients_[i];
        if (!c.holding) continue;
        bool expired = c.quantum.count() > 0 && now - c.grant_at >= c.quantum;
        bool revoked = c.revoke_pending && now >= c.revoke_at && !c.ignores_revoke;
        bool empty = c.backlog.count() == 0;
        if (expired || revoked || empty) {
          c.holding = false;
          c.revoke_pending = false;
          bool more = c.backlog.count() > 0;
          c.waiting = more;
          sched_.Release(i, c.busy_in_lease, more);
          c.busy_in_lease = Duration(0);
        }
      }
      Apply(sched_.Poll(), drain);
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
  SimClient& client(size_t i) { return clients_[i]; }
  GpuScheduler& sched() { return sched_; }
  SimClock& clock() { return clock_; }

 private:
  void Apply(const std::vector<Action>& actions, Duration drain) {
    for (const Action& a : actions) {
      SimClient& c = clients_[a.client];
      switch (a.kind) {
        case Action::kGrant:
          c.holding = true;
          c.waiting = false;
          c.grant_at = clock_.Now();
          c.quantum = a.quantum;
          c.busy_in_lease = Duration(0);
          break;
        case Action::kRevoke:
          c.revoke_pending = true;
          c.revoke_at = clock_.Now() + drain;
          break;
        case Action::kForcedOff:
          c.holding = false;
          c.revoke_pending = false;
          c.waiting = false;
          break;
      }
    }
  }

  SimClock clock_;
  GpuScheduler sched_;
  std::vector<SimClient> clients_;
};

SimClient Saturating(double weight, Priority p = Priority::kNormal) {
  SimClient c;
  c.weight = weight;
  c.priority = p;
  return c;
}

SchedulerConfig Fair() {
  SchedulerConfig cfg;
  cfg.policy = Policy::kFair;
  cfg.quantum = milliseconds(20);
  return cfg;
}

TEST(SchedulerTest, LoneClientGetsOpenEndedLeaseAndNoDeadline) {
  SimClock clock;
  GpuScheduler s(Fair(), clock);
  s.Add(1, 1, Priority::kNormal);
  s.Request(1);
  auto a = s.Poll();
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].kind, Action::kGrant);
  EXPECT_EQ(a[0].client, 1u);
  EXPECT_EQ(a[0].quantum.count(), 0);  // ungated
  EXPECT_FALSE(s.NextDeadline().has_value());
  clock.Advance(std::chrono::seconds(10));
  EXPECT_TRUE(s.Poll().empty());
}

TEST(SchedulerTest, SecondClientRevokesOpenEndedHolderAfterItsQuantum) {
  SimClock clock;
  GpuScheduler s(Fair(), clock);
  s.Add(1, 1, Priority::kNormal);
  s.Add(2, 1, Priority::kNormal);
  s.Request(1);
  ASSERT_EQ(s.Poll().size(), 1u);
  clock.Advance(milliseconds(5));
  s.Request(2);
  EXPECT_TRUE(s.Poll().empty());  // holder's quantum (20 ms) not over yet
  ASSERT_TRUE(s.NextDeadline().has_value());
  EXPECT_EQ(*s.NextDeadline() - clock.Now(), milliseconds(15));
  clock.Advance(milliseconds(15));
  auto a = s.Poll();
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].kind, Action::kRevoke);
  EXPECT_EQ(a[0].client, 1u);
  s.Release(1, milliseconds(20), true);
  a = s.Poll();
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].kind, Action::kGrant);
  EXPECT_EQ(a[0].client, 2u);
  EXPECT_EQ(a[0].quantum, milliseconds(20));  // client 1 waits: a bounded lease
  EXPECT_EQ(s.Stats(2).waited, milliseconds(15));
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
  s.Poll();
  clock.Advance(std::chrono::seconds(10));
  s.Release(1, std::chrono::seconds(10), true);  // ran alone for 10 s
  s.Poll();                                      // re-granted (alone)
  s.Request(2);                                  // wakes: must not get 10 s of catch-up
  clock.Advance(milliseconds(20));
  auto a = s.Poll();
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].kind, Action::kRevoke);
  s.Release(1, milliseconds(20), true);
  a = s.Poll();
  ASSERT_EQ(a[0].client, 2u);
  // It starts one lease behind the active client (the credit any client keeps across a
  // hand-over), so it runs at most two leases before turns alternate.
  int leases_of_2 = 1;
  for (;;) {
    clock.Advance(milliseconds(20));
    s.Release(2, milliseconds(20), true);
    a = s.Poll();
    ASSERT_EQ(a.size(), 1u);
    if (a[0].client != 2u) break;
    ++leases_of_2;
    ASSERT_LE(leases_of_2, 2) << "the waking client is catching up on its idle time";
  }
  EXPECT_EQ(a[0].client, 1u);
  clock.Advance(milliseconds(20));
  s.Release(1, milliseconds(20), true);
  a = s.Poll();
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].client, 2u);  // and then they alternate
}

SchedulerConfig Prio(double floor) {
  SchedulerConfig cfg;
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
  s.Poll();
  clock.Advance(milliseconds(1));
  s.Request(2);
  auto a = s.Poll();
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
  EXPECT_TRUE(s.Poll().empty());
  EXPECT_EQ(s.Holder(), std::optional<ClientKey>(2));
}

TEST(SchedulerTest, FairHandOverWaitsForTheDrain) {
  SimClock clock;
  GpuScheduler s(Fair(), clock);
  s.Add(1, 1, Priority::kNormal);
  s.Add(2, 1, Priority::kNormal);
  s.Request(1);
  s.Poll();
  clock.Advance(milliseconds(25));  // past 1's quantum
  s.Request(2);
  auto a = s.Poll();
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].kind, Action::kRevoke);
  clock.Advance(milliseconds(2));
  EXPECT_TRUE(s.Poll().empty()) << "no second holder while the first drains";
  s.Release(1, milliseconds(2), false);
  a = s.Poll();
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].kind, Action::kGrant);
  EXPECT_EQ(a[0].client, 2u);
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
  s.Poll();
  s.Request(2);
  clock.Advance(milliseconds(20));
  ASSERT_EQ(s.Poll()[0].kind, Action::kRevoke);
  clock.Advance(milliseconds(99));
  EXPECT_TRUE(s.Poll().empty());
  clock.Advance(milliseconds(1));
  auto a = s.Poll();
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
  s.Poll();
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
  s.Poll();
  s.Request(2);
  s.Remove(1);
  auto a = s.Poll();
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
  auto a = s.Poll();
  EXPECT_EQ(a.size(), 3u);
  for (const Action& x : a) EXPECT_EQ(x.kind, Action::kGrant);
  clock.Advance(std::chrono::seconds(5));
  EXPECT_TRUE(s.Poll().empty());
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
  EXPECT_FALSE(ParsePolicy("fifo").ok());
  EXPECT_EQ(*ParsePriority("low"), Priority::kLow);
  EXPECT_FALSE(ParsePriority("urgent").ok());
}

}  // namespace
}  // namespace slicer::arbiter
