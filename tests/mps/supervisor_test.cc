// The supervisor's decisions on a simulated clock, against a scripted Host: start, ready, crash,
// back-off, restart, hang, compute modes kept and restored, GPUs added and removed.
#include "src/mps/supervisor.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <deque>
#include <map>

#include "tests/arbiter/sim_clock.h"

namespace slicer::mps {
namespace {

using nvml::ComputeMode;
using ::testing::HasSubstr;

constexpr char kA[] = "GPU-aaaaaaaa-0000-0000-0000-000000000000";
constexpr char kB[] = "GPU-bbbbbbbb-0000-0000-0000-000000000000";

class ScriptedHost : public Host {
 public:
  absl::StatusOr<int> StartDaemon(const std::string& uuid) override {
    if (fail_start) return absl::NotFoundError("no nvidia-cuda-mps-control");
    const int pid = next_pid++;
    running[pid] = uuid;
    starts[uuid]++;
    threads.erase(uuid);
    return pid;
  }
  std::optional<int> WaitExit(int pid, std::chrono::milliseconds) override {
    if (auto it = exited.find(pid); it != exited.end()) {
      running.erase(pid);
      int s = it->second;
      exited.erase(it);
      return s;
    }
    if (!running.count(pid)) return 0;
    return std::nullopt;
  }
  void Kill(int pid) override {
    killed.push_back(pid);
    running.erase(pid);
  }
  absl::StatusOr<std::string> Control(const std::string& uuid, const std::string& cmd) override {
    commands.push_back(uuid + " " + cmd);
    if (cmd == "quit") {
      for (auto& [pid, u] : running) {
        if (u == uuid) exited[pid] = 0;
      }
      return std::string();
    }
    if (!answering.count(uuid) || !answering[uuid]) {
      return absl::UnavailableError("Cannot find MPS control daemon process");
    }
    // The percentage lives in the daemon: 100 at every start (StartDaemon resets it).
    const std::string set = "set_default_active_thread_percentage ";
    if (cmd.rfind(set, 0) == 0) {
      if (refuse_set) return absl::InternalError("refused");
      threads[uuid] = std::stod(cmd.substr(set.size()));
    }
    char b[32];
    std::snprintf(b, sizeof b, "%.1f", threads.count(uuid) ? threads[uuid] : 100.0);
    return std::string(b);
  }
  absl::StatusOr<ComputeMode> GetComputeMode(const std::string& uuid) override {
    return mode.count(uuid) ? mode[uuid] : ComputeMode::kDefault;
  }
  absl::Status SetComputeMode(const std::string& uuid, ComputeMode m) override {
    if (refuse_mode) return absl::PermissionDeniedError("Insufficient Permissions");
    mode[uuid] = m;
    return absl::OkStatus();
  }
  void Publish(const std::string& uuid, const std::optional<DaemonState>& s) override {
    if (s) {
      published[uuid] = *s;
      phases[uuid].push_back(s->phase);
    } else {
      published.erase(uuid);
      removed.push_back(uuid);
    }
  }
  std::optional<ComputeMode> SavedMode(const std::string& uuid) override {
    auto it = saved.find(uuid);
    if (it == saved.end()) return std::nullopt;
    return it->second;
  }
  void SaveMode(const std::string& uuid, std::optional<ComputeMode> m) override {
    if (m) saved[uuid] = *m;
    else saved.erase(uuid);
  }
  int64_t WallMs() override { return 1'700'000'000'000; }

  int PidOf(const std::string& uuid) const {
    for (const auto& [pid, u] : running) {
      if (u == uuid) return pid;
    }
    return 0;
  }

  int next_pid = 100;
  bool fail_start = false, refuse_mode = false, refuse_set = false;
  std::map<std::string, double> threads;  // the daemons' default active thread percentages
  std::map<int, std::string> running;
  std::map<int, int> exited;  // pid -> wait status, delivered at the next WaitExit
  std::map<std::string, int> starts;
  std::map<std::string, bool> answering;
  std::map<std::string, ComputeMode> mode, saved;
  std::map<std::string, DaemonState> published;
  std::map<std::string, std::vector<Phase>> phases;
  std::vector<int> killed;
  std::vector<std::string> commands, removed;
};

class SupervisorTest : public ::testing::Test {
 protected:
  // Ticks every 100 ms of simulated time for `d`.
  void Run(std::chrono::milliseconds d) {
    for (auto t = std::chrono::milliseconds(0); t < d; t += std::chrono::milliseconds(100)) {
      sup_.Tick();
      clock_.Advance(std::chrono::milliseconds(100));
    }
  }
  Phase PhaseOf(const std::string& uuid) { return host_.published.at(uuid).phase; }

  ScriptedHost host_;
  testing::SimClock clock_;
  Supervisor sup_{host_, clock_};
};

TEST_F(SupervisorTest, StartsEachDesiredGpuInExclusiveProcessModeAndReportsReadyOnceItAnswers) {
  host_.mode[kA] = ComputeMode::kProhibited;  // whatever it was, it is kept for the restore
  sup_.SetDesired({kA, kB});
  Run(std::chrono::milliseconds(500));
  EXPECT_EQ(host_.starts[kA], 1);
  EXPECT_EQ(host_.starts[kB], 1);
  EXPECT_EQ(host_.mode[kA], ComputeMode::kExclusiveProcess);
  EXPECT_EQ(host_.saved[kA], ComputeMode::kProhibited);
  EXPECT_EQ(PhaseOf(kA), Phase::kStarting);  // not answering yet
  host_.answering[kA] = true;
  Run(std::chrono::milliseconds(2500));
  EXPECT_EQ(PhaseOf(kA), Phase::kReady);
  EXPECT_EQ(host_.published.at(kA).pid, host_.PidOf(kA));
  EXPECT_EQ(PhaseOf(kB), Phase::kStarting);
}

TEST_F(SupervisorTest, ACrashedDaemonIsDownThenRestartedWithBackoff) {
  host_.answering[kA] = true;
  sup_.SetDesired({kA});
  Run(std::chrono::milliseconds(300));
  ASSERT_EQ(PhaseOf(kA), Phase::kReady);
  host_.exited[host_.PidOf(kA)] = 1 << 8;  // exit status 1
  Run(std::chrono::milliseconds(200));
  EXPECT_EQ(PhaseOf(kA), Phase::kDown);
  EXPECT_THAT(host_.published.at(kA).reason, HasSubstr("exited with status 1"));
  EXPECT_EQ(host_.starts[kA], 1);  // not before the back-off (1 s)
  Run(std::chrono::milliseconds(1000));
  EXPECT_EQ(host_.starts[kA], 2);
  EXPECT_EQ(PhaseOf(kA), Phase::kReady);
  EXPECT_EQ(host_.published.at(kA).restarts, 1);
  // A second crash soon after: the back-off doubles (2 s).
  host_.exited[host_.PidOf(kA)] = 9;  // SIGKILL
  Run(std::chrono::milliseconds(1500));
  EXPECT_EQ(host_.starts[kA], 2);
  EXPECT_THAT(host_.published.at(kA).reason, HasSubstr("killed by signal 9"));
  Run(std::chrono::milliseconds(1000));
  EXPECT_EQ(host_.starts[kA], 3);
}

// The bound on a GPU's threads is the daemon's default (a client can lower it, not raise it): set
// before the GPU is ready, set again on a restarted daemon and on a changed bound, and a GPU whose
// daemon refuses it is not ready.
TEST_F(SupervisorTest, TheThreadBoundIsTheDaemonsDefaultBeforeTheGpuIsReady) {
  auto sets = [&] {
    int n = 0;
    for (const std::string& c : host_.commands) n += c.find("set_default_active") != c.npos;
    return n;
  };
  host_.answering[kA] = host_.answering[kB] = true;
  host_.refuse_set = true;
  sup_.SetDesired({DesiredGpu(kA, 25), kB});
  Run(std::chrono::milliseconds(300));
  EXPECT_EQ(PhaseOf(kA), Phase::kStarting) << "not ready while the bound is not set";
  EXPECT_EQ(PhaseOf(kB), Phase::kReady) << "no bound: nothing to set";
  host_.refuse_set = false;
  Run(std::chrono::milliseconds(2100));
  EXPECT_EQ(PhaseOf(kA), Phase::kReady);
  EXPECT_EQ(host_.threads[kA], 25);
  EXPECT_FALSE(host_.threads.count(kB));
  const int after_ready = sets();
  Run(std::chrono::milliseconds(4100));
  EXPECT_EQ(sets(), after_ready) << "probes that find the bound in place set nothing";
  // A restarted daemon starts at 100: set again before it is ready.
  host_.exited[host_.PidOf(kA)] = 1 << 8;
  Run(std::chrono::milliseconds(1300));
  EXPECT_EQ(host_.starts[kA], 2);
  EXPECT_EQ(PhaseOf(kA), Phase::kReady);
  EXPECT_EQ(host_.threads[kA], 25);
  // A changed bound (config reload) is set at once on the running daemon, no restart.
  sup_.SetDesired({DesiredGpu(kA, 50), kB});
  Run(std::chrono::milliseconds(200));
  EXPECT_EQ(host_.threads[kA], 50);
  EXPECT_EQ(host_.starts[kA], 2);
}

TEST_F(SupervisorTest, ADaemonThatStopsAnsweringIsKilledAndRestarted) {
  host_.answering[kA] = true;
  sup_.SetDesired({kA});
  Run(std::chrono::milliseconds(300));
  const int pid = host_.PidOf(kA);
  host_.answering[kA] = false;
  Run(std::chrono::milliseconds(4500));  // probes at 2 s intervals: two failures, still ready
  EXPECT_EQ(PhaseOf(kA), Phase::kReady);
  Run(std::chrono::milliseconds(2000));  // the third
  EXPECT_EQ(PhaseOf(kA), Phase::kDown);
  EXPECT_THAT(host_.killed, ::testing::Contains(pid));
  EXPECT_THAT(host_.published.at(kA).reason, HasSubstr("stopped answering"));
}

TEST_F(SupervisorTest, ADaemonThatNeverAnswersIsRestartedAfterTheStartTimeout) {
  sup_.SetDesired({kA});
  Run(std::chrono::milliseconds(29000));
  EXPECT_EQ(host_.starts[kA], 1);
  EXPECT_EQ(PhaseOf(kA), Phase::kStarting);
  Run(std::chrono::milliseconds(3500));
  EXPECT_EQ(host_.starts[kA], 2);
  EXPECT_EQ(host_.killed.size(), 1u);
}

TEST_F(SupervisorTest, ARefusedComputeModeFailsTheGpuWithTheReasonAndNoDaemon) {
  host_.refuse_mode = true;
  sup_.SetDesired({kA});
  Run(std::chrono::milliseconds(300));
  EXPECT_EQ(PhaseOf(kA), Phase::kFailed);
  EXPECT_THAT(host_.published.at(kA).reason, HasSubstr("EXCLUSIVE_PROCESS"));
  EXPECT_THAT(host_.published.at(kA).reason, HasSubstr("Insufficient Permissions"));
  EXPECT_EQ(host_.starts[kA], 0);
  host_.refuse_mode = false;  // retried after the back-off
  host_.answering[kA] = true;
  Run(std::chrono::milliseconds(1500));
  EXPECT_EQ(PhaseOf(kA), Phase::kReady);
}

TEST_F(SupervisorTest, RemovingAGpuQuitsItsDaemonRestoresItsModeAndRemovesItsState) {
  host_.mode[kA] = ComputeMode::kDefault;
  host_.answering[kA] = host_.answering[kB] = true;
  sup_.SetDesired({kA, kB});
  Run(std::chrono::milliseconds(300));
  ASSERT_EQ(host_.mode[kA], ComputeMode::kExclusiveProcess);
  sup_.SetDesired({kB});
  EXPECT_THAT(host_.commands, ::testing::Contains(std::string(kA) + " quit"));
  EXPECT_EQ(host_.mode[kA], ComputeMode::kDefault);
  EXPECT_EQ(host_.PidOf(kA), 0);
  EXPECT_TRUE(host_.killed.empty());  // it quit in time
  EXPECT_FALSE(host_.published.count(kA));
  EXPECT_FALSE(host_.saved.count(kA));
  EXPECT_EQ(PhaseOf(kB), Phase::kReady);
  sup_.Shutdown();
  EXPECT_EQ(host_.mode[kB], ComputeMode::kDefault);
  EXPECT_TRUE(host_.running.empty());
}

TEST_F(SupervisorTest, TheModeBeforeIsTheSavedOneAfterAnMpsDaemonRestart) {
  // A previous mps-daemon set EXCLUSIVE_PROCESS and saved DEFAULT; this one must not take
  // EXCLUSIVE_PROCESS for the original.
  host_.mode[kA] = ComputeMode::kExclusiveProcess;
  host_.saved[kA] = ComputeMode::kDefault;
  sup_.SetDesired({kA});
  Run(std::chrono::milliseconds(200));
  sup_.Shutdown();
  EXPECT_EQ(host_.mode[kA], ComputeMode::kDefault);
}

TEST(SupervisorKeepMode, NeverReadsSetsOrRestoresTheComputeMode) {
  ScriptedHost host;
  testing::SimClock clock;
  SupervisorOptions options;
  options.manage_compute_mode = false;
  Supervisor sup(host, clock, options);
  host.mode[kA] = ComputeMode::kProhibited;
  host.refuse_mode = true;  // would fail the GPU if it were tried
  host.answering[kA] = true;
  sup.SetDesired({kA});
  for (int i = 0; i < 5; ++i) {
    sup.Tick();
    clock.Advance(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(host.starts[kA], 1);
  EXPECT_EQ(host.published.at(kA).phase, Phase::kReady);
  sup.Shutdown();
  EXPECT_THAT(host.commands, ::testing::Contains(std::string(kA) + " quit"));
  EXPECT_EQ(host.mode[kA], ComputeMode::kProhibited);
  EXPECT_FALSE(host.saved.count(kA));
  EXPECT_FALSE(host.published.count(kA));
}

TEST_F(SupervisorTest, HeartbeatsRefreshTheStateWhileNothingChanges) {
  host_.answering[kA] = true;
  sup_.SetDesired({kA});
  Run(std::chrono::milliseconds(300));
  const size_t before = host_.phases[kA].size();
  Run(std::chrono::milliseconds(10000));
  EXPECT_GE(host_.phases[kA].size(), before + 4);  // every 2 s
  EXPECT_LE(host_.phases[kA].size(), before + 6);
}

}  // namespace
}  // namespace slicer::mps
