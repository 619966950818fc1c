#include "src/plugin/health.h"

#include <gtest/gtest.h>

#include <deque>
#include <mutex>

namespace slicer::plugin {
namespace {

TEST(XidPolicy, ApplicationXidsIgnoredByDefault) {
  XidPolicy p = XidPolicy::FromEnvironment("", "");
  for (uint64_t x : {13, 31, 43, 45, 68, 109}) EXPECT_TRUE(p.Ignored(x)) << x;
  for (uint64_t x : {48, 63, 74, 79, 94, 95}) EXPECT_FALSE(p.Ignored(x)) << x;
  EXPECT_FALSE(p.AllDisabled());
}

TEST(XidPolicy, DisableListAddsToIgnored) {
  XidPolicy p = XidPolicy::FromEnvironment("48, 79,junk", "");
  EXPECT_TRUE(p.Ignored(48));
  EXPECT_TRUE(p.Ignored(79));
  EXPECT_FALSE(p.Ignored(94));
}

TEST(XidPolicy, AllDisabledUnlessSomeEnabled) {
  EXPECT_TRUE(XidPolicy::FromEnvironment("all", "").AllDisabled());
  EXPECT_TRUE(XidPolicy::FromEnvironment("xids", "").AllDisabled());
  XidPolicy p = XidPolicy::FromEnvironment("all", "79");
  EXPECT_FALSE(p.AllDisabled());
  EXPECT_FALSE(p.Ignored(79));
  EXPECT_TRUE(p.Ignored(48));
}

TEST(XidPolicy, EnableOverridesApplicationList) {
  XidPolicy p = XidPolicy::FromEnvironment("", "31");
  EXPECT_FALSE(p.Ignored(31));
  EXPECT_TRUE(p.Ignored(13));
  XidPolicy all = XidPolicy::FromEnvironment("48", "all");
  EXPECT_FALSE(all.Ignored(13));
  EXPECT_FALSE(all.Ignored(48));
}

// A scripted driver: the interface seam between the monitor and NVML.
class ScriptedNvml : public nvml::Nvml {
 public:
  absl::StatusOr<nvml::System> Discover() override { return nvml::System{}; }
  absl::StatusOr<std::optional<nvml::XidEvent>> WaitForXid(std::chrono::milliseconds t) override {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, t, [&] { return !events_.empty(); });
    if (events_.empty()) return std::optional<nvml::XidEvent>();
    auto e = events_.front();
    events_.pop_front();
    return std::optional<nvml::XidEvent>(e);
  }
  absl::Status Probe(const std::string& uuid) override {
    std::lock_guard<std::mutex> lock(mu_);
    return lost_.count(uuid) ? absl::UnavailableError("GPU is lost") : absl::OkStatus();
  }
  absl::StatusOr<nvml::ComputeMode> GetComputeMode(const std::string&) override {
    return absl::UnimplementedError("not scripted");
  }
  absl::Status SetComputeMode(const std::string&, nvml::ComputeMode) override {
    return absl::UnimplementedError("not scripted");
  }
  void Xid(const std::string& uuid, uint64_t xid, bool lose) {
    std::lock_guard<std::mutex> lock(mu_);
    events_.push_back({uuid, xid});
    if (lose) lost_.insert(uuid);
    cv_.notify_all();
  }
  void Recover(const std::string& uuid) {
    std::lock_guard<std::mutex> lock(mu_);
    lost_.erase(uuid);
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<nvml::XidEvent> events_;
  std::set<std::string> lost_;
};

struct Transitions {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::pair<std::string, bool>> seen;
  bool WaitForCount(size_t n) {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, std::chrono::seconds(5), [&] { return seen.size() >= n; });
  }
};

TEST(HealthMonitor, CriticalXidThenRecoveryWhenGpuAnswers) {
  ScriptedNvml nvml;
  Transitions t;
  HealthOptions o;
  o.probe_interval = std::chrono::milliseconds(20);
  o.recovery_delay = std::chrono::milliseconds(0);
  HealthMonitor m(&nvml, XidPolicy::FromEnvironment("", ""), {"GPU-a", "GPU-b"}, o,
                  [&](const std::string& u, bool h, const std::string&) {
                    std::lock_guard<std::mutex> lock(t.mu);
                    t.seen.push_back({u, h});
                    t.cv.notify_all();
                  });
  m.Start();
  nvml.Xid("GPU-b", 13, false);   // application XID: ignored
  nvml.Xid("GPU-zzz", 79, true);  // not ours: ignored
  nvml.Xid("GPU-a", 79, true);
  ASSERT_TRUE(t.WaitForCount(1));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // still lost: stays unhealthy
  {
    std::lock_guard<std::mutex> lock(t.mu);
    ASSERT_EQ(t.seen.size(), 1u);
    EXPECT_EQ(t.seen[0], std::make_pair(std::string("GPU-a"), false));
  }
  nvml.Recover("GPU-a");
  ASSERT_TRUE(t.WaitForCount(2));
  m.Stop();
  EXPECT_EQ(t.seen[1], std::make_pair(std::string("GPU-a"), true));
}

TEST(HealthMonitor, RecoveryWaitsForDelay) {
  ScriptedNvml nvml;
  Transitions t;
  HealthOptions o;
  o.probe_interval = std::chrono::milliseconds(10);
  o.recovery_delay = std::chrono::milliseconds(300);
  HealthMonitor m(&nvml, XidPolicy::FromEnvironment("", ""), {"GPU-a"}, o,
                  [&](const std::string& u, bool h, const std::string&) {
                    std::lock_guard<std::mutex> lock(t.mu);
                    t.seen.push_back({u, h});
                    t.cv.notify_all();
                  });
  m.Start();
  auto start = std::chrono::steady_clock::now();
  nvml.Xid("GPU-a", 48, false);  // answers NVML throughout, but must sit out the delay
  ASSERT_TRUE(t.WaitForCount(2));
  m.Stop();
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(300));
}

}  // namespace
}  // namespace slicer::plugin
