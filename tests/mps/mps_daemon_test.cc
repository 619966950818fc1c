// The real `slicer mps-daemon` over the fake nvidia-cuda-mps-control and the fake NVML, with the
// plugin's MPS health watcher reading what it publishes: desired GPUs get a ready daemon in
// EXCLUSIVE_PROCESS mode; a crash is seen as Unhealthy, restarted, Healthy again; removing a GPU
// and SIGTERM quit the daemons and restore the compute modes.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>
#include <vector>

#include "src/common/subprocess.h"
#include "src/mps/files.h"
#include "src/mps/layout.h"
#include "src/plugin/mps_health.h"

namespace slicer {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using std::chrono::milliseconds;

constexpr char kA[] = "GPU-aaaaaaaa-0000-4000-8000-000000000000";
constexpr char kB[] = "GPU-bbbbbbbb-1111-4111-8111-111111111111";

std::string Read(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Polls `pred` every 20 ms for up to `timeout`.
bool WaitFor(const std::function<bool()>& pred, milliseconds timeout = milliseconds(10000)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(milliseconds(20));
  }
  return pred();
}

int Count(const std::string& text, const std::string& what) {
  int n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

class MpsDaemonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/slicer-mpsd-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    root_ = dir_ + "/r";
    machine_ = dir_ + "/machine.yaml";
    std::ofstream(machine_) << "driverVersion: \"580.159.04\"\ndevices:\n  - {uuid: " << kA
                            << ", name: NVIDIA A10G, memoryMiB: 23028}\n  - {uuid: " << kB
                            << ", name: NVIDIA A10G, memoryMiB: 23028}\n";
  }
  void TearDown() override {
    // SIGKILL if still running; the fake control daemons it started outlive it, so kill those
    // by their pid files.
    daemon_.reset();
    for (const char* u : {kA, kB}) {
      std::string pid = Read(mps::Layout(root_).PipeDir(u) + "/nvidia-cuda-mps-control.pid");
      if (!pid.empty()) ::kill(std::stoi(pid), SIGKILL);
    }
    fs::remove_all(dir_);
  }

  void Start(const std::string& log = "daemon.log", const std::vector<std::string>& extra = {}) {
    log_ = log;
    SpawnOptions o;
    o.argv = {SLICER_TEST_BIN, "mps-daemon", "--mps-root=" + root_, "--tick=50"};
    o.argv.insert(o.argv.end(), extra.begin(), extra.end());
    o.env = {{"PATH", std::string(SLICER_FAKES_BIN_DIR) + ":/usr/bin:/bin"},
             {"LD_LIBRARY_PATH", SLICER_TEST_FAKES_DIR},
             {"SLICER_FAKE_NVML", machine_},
             {"SLICER_FAKE_MPS_RECORD", dir_ + "/record"}};
    o.output_path = dir_ + "/" + log_;
    auto d = Subprocess::Spawn(o);
    ASSERT_TRUE(d.ok()) << d.status();
    daemon_ = std::make_unique<Subprocess>(std::move(*d));
    WaitUntilUp();
  }
  // Signals are for the daemon's signalfd only once it logged its start (SIGHUP's default action
  // would end it before).
  void WaitUntilUp() {
    ASSERT_TRUE(WaitFor([&] {
      return Read(dir_ + "/" + log_).find("event=mps_daemon_started") != std::string::npos;
    })) << Diag();
  }
  void Desire(const std::vector<mps::DesiredGpu>& uuids) {
    fs::create_directories(root_);
    ASSERT_TRUE(WriteFileAtomic(mps::Layout(root_).DesiredFile(), mps::FormatDesired(uuids)).ok());
    daemon_->Signal(SIGHUP);
  }
  std::string State(const std::string& uuid) { return Read(mps::Layout(root_).StateFile(uuid)); }
  bool Phase(const std::string& uuid, const std::string& phase) {
    return State(uuid).rfind("phase=" + phase + " ", 0) == 0;
  }
  // The compute mode the fake NVML holds for `uuid` ("" when it was never set).
  std::string Mode(const std::string& uuid) {
    std::istringstream in(Read(machine_ + ".compute-mode"));
    std::string u, m;
    while (in >> u >> m) {
      if (u == uuid) return m;
    }
    return "";
  }
  std::string Diag() {
    return "\n--- daemon log:\n" + Read(dir_ + "/" + log_) + "--- record:\n" +
           Read(dir_ + "/record");
  }

  std::string dir_, root_, machine_, log_ = "daemon.log";
  std::unique_ptr<Subprocess> daemon_;
};

TEST_F(MpsDaemonTest, ADesiredGpuGetsAReadyDaemonAndGetsItsModeBackWhenRemoved) {
  Start();
  // Nothing desired: nothing started, no state, no mode touched.
  std::this_thread::sleep_for(milliseconds(300));
  EXPECT_EQ(Read(dir_ + "/record"), "");
  Desire({kA});
  ASSERT_TRUE(WaitFor([&] { return Phase(kA, "ready"); })) << State(kA) << Diag();
  const std::string record = Read(dir_ + "/record");
  EXPECT_THAT(record, HasSubstr(std::string("visible=") + kA));
  EXPECT_THAT(record, HasSubstr("pipe=" + mps::Layout(root_).PipeDir(kA)));
  EXPECT_THAT(record, HasSubstr("cmd get_default_active_thread_percentage"));
  EXPECT_EQ(Mode(kA), "EXCLUSIVE_PROCESS");
  EXPECT_EQ(Mode(kB), "");  // not desired: untouched
  Desire({});
  ASSERT_TRUE(WaitFor([&] { return State(kA).empty() && Mode(kA) == "DEFAULT"; })) << Diag();
  EXPECT_EQ(Count(Read(dir_ + "/record"), "\nquit"), 1) << Diag();
  EXPECT_TRUE(WaitFor([&] { return !fs::exists(mps::Layout(root_).ControlSocket(kA)); }));
}

// A GPU bounded to 25 % of the threads in the desired file: the real mps-daemon sets the control
// daemon's default before the GPU is ready (the fake keeps and answers it, as the real one does).
TEST_F(MpsDaemonTest, TheDesiredThreadBoundIsSetOnTheControlDaemonBeforeReady) {
  Start();
  Desire({mps::DesiredGpu(kA, 25), kB});
  ASSERT_TRUE(WaitFor([&] { return Phase(kA, "ready") && Phase(kB, "ready"); }))
      << State(kA) << Diag();
  const std::string record = Read(dir_ + "/record");
  EXPECT_EQ(Count(record, "cmd set_default_active_thread_percentage 25"), 1) << Diag();
  EXPECT_EQ(Count(record, "cmd set_default_active_thread_percentage"), 1) << "none for kB";
  EXPECT_THAT(Read(dir_ + "/" + log_), HasSubstr("event=mps_threads_set"));
}

TEST_F(MpsDaemonTest, ACrashIsUnhealthyForThePluginUntilTheRestartedDaemonIsReady) {
  Start();
  Desire({kA});
  ASSERT_TRUE(WaitFor([&] { return Phase(kA, "ready"); })) << State(kA) << Diag();

  std::mutex mu;
  std::vector<std::pair<bool, std::string>> seen;
  plugin::MpsHealthOptions ho;
  ho.interval = milliseconds(20);
  plugin::MpsHealthWatcher watcher(root_, {kA}, ho,
                                   [&](const std::string&, bool healthy, const std::string& why) {
                                     std::lock_guard<std::mutex> lock(mu);
                                     seen.emplace_back(healthy, why);
                                   });
  watcher.Start();
  {
    std::lock_guard<std::mutex> lock(mu);
    ASSERT_EQ(seen.size(), 1u);
    EXPECT_TRUE(seen[0].first) << seen[0].second;
  }
  auto state = mps::ParseState(State(kA));
  ASSERT_TRUE(state.ok()) << state.status();
  ASSERT_GT(state->pid, 0);
  ASSERT_EQ(::kill(state->pid, SIGKILL), 0);
  ASSERT_TRUE(WaitFor([&] {
    std::lock_guard<std::mutex> lock(mu);
    return seen.size() >= 3;
  })) << Diag();
  watcher.Stop();
  EXPECT_FALSE(seen[1].first);
  EXPECT_THAT(seen[1].second, HasSubstr("killed by signal 9"));
  EXPECT_TRUE(seen[2].first) << seen[2].second;
  auto after = mps::ParseState(State(kA));
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->phase, mps::Phase::kReady);
  EXPECT_EQ(after->restarts, 1);
  EXPECT_NE(after->pid, state->pid);
  EXPECT_EQ(Count(Read(dir_ + "/record"), "start pid="), 2) << Diag();
}

TEST_F(MpsDaemonTest, SigtermQuitsEveryDaemonAndRestoresEveryMode) {
  Start();
  Desire({kA, kB});
  ASSERT_TRUE(WaitFor([&] { return Phase(kA, "ready") && Phase(kB, "ready"); })) << Diag();
  ASSERT_TRUE(daemon_->Signal(SIGTERM));
  std::optional<int> status = daemon_->Wait(milliseconds(15000));
  ASSERT_TRUE(status.has_value()) << Diag();
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << *status << Diag();
  EXPECT_EQ(Mode(kA), "DEFAULT");
  EXPECT_EQ(Mode(kB), "DEFAULT");
  EXPECT_EQ(Count(Read(dir_ + "/record"), "\nquit"), 2) << Diag();
  EXPECT_EQ(State(kA), "");
  EXPECT_EQ(State(kB), "");
}

TEST_F(MpsDaemonTest, AControlDaemonDoesNotOutliveAKilledMpsDaemon) {
  Start();
  Desire({kA});
  ASSERT_TRUE(WaitFor([&] { return Phase(kA, "ready"); })) << Diag();
  const int pid = std::stoi(Read(mps::Layout(root_).PipeDir(kA) + "/nvidia-cuda-mps-control.pid"));
  ASSERT_EQ(::kill(pid, 0), 0);
  daemon_.reset();  // SIGKILL: no clean-up of its own
  EXPECT_TRUE(WaitFor([&] { return ::kill(pid, 0) != 0; }, milliseconds(5000)))
      << "the control daemon " << pid << " outlived its mps-daemon";
  // The next mps-daemon can serve the GPU again (with a control daemon of its own: the state
  // the killed one left says ready too).
  Start("daemon2.log");
  Desire({kA});
  EXPECT_TRUE(WaitFor([&] {
    auto s = mps::ParseState(State(kA));
    return s.ok() && s->phase == mps::Phase::kReady && s->pid > 0 && s->pid != pid;
  })) << State(kA) << Diag();
}

TEST_F(MpsDaemonTest, AMalformedDesiredFileKeepsThePreviousSet) {
  Start();
  Desire({kA});
  ASSERT_TRUE(WaitFor([&] { return Phase(kA, "ready"); })) << Diag();
  std::ofstream(mps::Layout(root_).DesiredFile()) << "../../etc/passwd\n";
  daemon_->Signal(SIGHUP);
  ASSERT_TRUE(WaitFor([&] { return Read(dir_ + "/daemon.log").find("mps_desired_invalid") !=
                                    std::string::npos; }))
      << Diag();
  EXPECT_TRUE(Phase(kA, "ready"));
  EXPECT_EQ(Count(Read(dir_ + "/record"), "\nquit"), 0);
  EXPECT_FALSE(fs::exists(root_ + "/../../etc"));
  std::this_thread::sleep_for(milliseconds(300));  // six ticks: said once, not at each
  EXPECT_EQ(Count(Read(dir_ + "/daemon.log"), "mps_desired_invalid"), 1) << Diag();
}

TEST_F(MpsDaemonTest, KeepComputeModeRunsTheDaemonWithoutTouchingTheModeOrNeedingNvml) {
  machine_ = dir_ + "/no-such-machine.yaml";  // the fake NVML cannot start: not needed
  Start("daemon.log", {"--compute-mode=keep"});
  Desire({kA});
  ASSERT_TRUE(WaitFor([&] { return Phase(kA, "ready"); })) << State(kA) << Diag();
  Desire({});
  ASSERT_TRUE(WaitFor([&] { return State(kA).empty(); })) << Diag();
  EXPECT_EQ(Count(Read(dir_ + "/record"), "\nquit"), 1) << Diag();
  EXPECT_EQ(Mode(kA), "");  // never set, so never restored either
}

TEST_F(MpsDaemonTest, AnUnknownComputeModeIsRefusedAtStart) {
  SpawnOptions o;
  o.argv = {SLICER_TEST_BIN, "mps-daemon", "--mps-root=" + root_, "--compute-mode=shared"};
  o.output_path = dir_ + "/bad.log";
  auto d = Subprocess::Spawn(o);
  ASSERT_TRUE(d.ok()) << d.status();
  std::optional<int> status = d->Wait(std::chrono::seconds(10));
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(WEXITSTATUS(*status), 2);
  EXPECT_THAT(Read(dir_ + "/bad.log"), HasSubstr("--compute-mode: exclusive or keep"));
  EXPECT_FALSE(fs::exists(root_));
}

TEST_F(MpsDaemonTest, AMissingControlBinaryFailsTheGpuWithTheReasonAndTheDaemonStaysUp) {
  SpawnOptions o;
  o.argv = {SLICER_TEST_BIN, "mps-daemon", "--mps-root=" + root_, "--tick=50",
            "--mps-control=/nonexistent/nvidia-cuda-mps-control"};
  o.env = {{"LD_LIBRARY_PATH", SLICER_TEST_FAKES_DIR}, {"SLICER_FAKE_NVML", machine_}};
  o.output_path = dir_ + "/daemon.log";
  auto d = Subprocess::Spawn(o);
  ASSERT_TRUE(d.ok());
  daemon_ = std::make_unique<Subprocess>(std::move(*d));
  WaitUntilUp();
  Desire({kA});
  ASSERT_TRUE(WaitFor([&] { return Phase(kA, "failed"); })) << State(kA) << Diag();
  EXPECT_THAT(State(kA), HasSubstr("/nonexistent/nvidia-cuda-mps-control"));
  EXPECT_FALSE(daemon_->Wait(milliseconds(0)).has_value());  // still running
}

// `slicer run --mps` on a workstation: the first run starts a per-user daemon with -d, later runs
// join it; the command gets the pipe folder and its sizing.
class SlicerRunMpsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/slicer-runmps-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::string pid = Read(dir_ + "/gpu-slicer/mps/pipe/nvidia-cuda-mps-control.pid");
    if (!pid.empty()) ::kill(std::stoi(pid), SIGKILL);
    fs::remove_all(dir_);
  }
  // Runs `slicer run ARGS -- sh -c 'env > DIR/env.N'`; its exit status.
  int Run(const std::vector<std::string>& args, int n,
          const std::map<std::string, std::string>& env = {}) {
    SpawnOptions o;
    o.argv = {SLICER_TEST_BIN, "run"};
    o.argv.insert(o.argv.end(), args.begin(), args.end());
    o.argv.insert(o.argv.end(),
                  {"--", "/bin/sh", "-c", "env > " + dir_ + "/env." + std::to_string(n)});
    o.env = {{"PATH", std::string(SLICER_FAKES_BIN_DIR) + ":/usr/bin:/bin"},
             {"XDG_RUNTIME_DIR", dir_},
             {"CUDA_VISIBLE_DEVICES", "0,1"},
             {"SLICER_FAKE_MPS_RECORD", dir_ + "/record"}};
    for (const auto& [k, v] : env) o.env[k] = v;
    o.output_path = dir_ + "/run.log";
    auto p = Subprocess::Spawn(o);
    if (!p.ok()) return -1;
    std::optional<int> status = p->Wait(milliseconds(20000));
    return status && WIFEXITED(*status) ? WEXITSTATUS(*status) : -1;
  }
  std::string EnvOf(int n, const std::string& name) {
    std::istringstream in(Read(dir_ + "/env." + std::to_string(n)));
    for (std::string line; std::getline(in, line);) {
      if (line.rfind(name + "=", 0) == 0) return line.substr(name.size() + 1);
    }
    return "<unset>";
  }
  std::string dir_;
};

TEST_F(SlicerRunMpsTest, StartsADaemonOnceAndSizesEachRun) {
  ASSERT_EQ(Run({"--mps", "--threads", "25", "--memory", "2GiB"}, 1), 0) << Read(dir_ + "/run.log");
  const std::string pipe = dir_ + "/gpu-slicer/mps/pipe";
  EXPECT_EQ(EnvOf(1, "CUDA_MPS_PIPE_DIRECTORY"), pipe);
  EXPECT_EQ(EnvOf(1, "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"), "25");
  EXPECT_EQ(EnvOf(1, "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"), "0=2048M,1=2048M");
  EXPECT_EQ(EnvOf(1, "SLICER_MEMORY_LIMITS"), "*=2147483648");  // the shim's cap as well
  EXPECT_EQ(EnvOf(1, "SLICER_ARBITER_SOCKET"), "<unset>");
  EXPECT_THAT(Read(dir_ + "/run.log"), HasSubstr("started an MPS control daemon"));
  EXPECT_EQ(Count(Read(dir_ + "/record"), "start pid="), 1);

  ASSERT_EQ(Run({"--mps"}, 2), 0) << Read(dir_ + "/run.log");
  EXPECT_EQ(EnvOf(2, "CUDA_MPS_PIPE_DIRECTORY"), pipe);
  EXPECT_EQ(EnvOf(2, "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"), "<unset>");
  EXPECT_EQ(Count(Read(dir_ + "/record"), "start pid="), 1) << "the second run joins";
  EXPECT_EQ(EnvOf(2, "SLICER_ARBITER_OBSERVE"), "<unset>");

  // With an arbiter socket set, the client reports to it observe-only (never leased).
  ASSERT_EQ(Run({"--mps"}, 3, {{"SLICER_ARBITER_SOCKET", dir_ + "/arb.sock"}}), 0)
      << Read(dir_ + "/run.log");
  EXPECT_EQ(EnvOf(3, "SLICER_ARBITER_SOCKET"), dir_ + "/arb.sock");
  EXPECT_EQ(EnvOf(3, "SLICER_ARBITER_OBSERVE"), "1");
}

// A daemon that misses a probe (busy with another client: seen on the H200 with 4 runs starting
// at once) is asked again and joined, not taken for absent: no second start, which would fail
// with "already running".
TEST_F(SlicerRunMpsTest, ABusyDaemonThatMissesAProbeIsJoinedNotRestarted) {
  const std::string pipe = dir_ + "/gpu-slicer/mps/pipe";
  SpawnOptions d;
  d.argv = {std::string(SLICER_FAKES_BIN_DIR) + "/nvidia-cuda-mps-control", "-d"};
  d.env = {{"CUDA_MPS_PIPE_DIRECTORY", pipe},
           {"CUDA_MPS_LOG_DIRECTORY", dir_ + "/gpu-slicer/mps/log"},
           {"SLICER_FAKE_MPS_BUSY_FIRST", "1"},
           {"SLICER_FAKE_MPS_RECORD", dir_ + "/record"}};
  auto daemon = Subprocess::Spawn(d);
  ASSERT_TRUE(daemon.ok()) << daemon.status();
  std::optional<int> started = daemon->Wait(milliseconds(10000));
  ASSERT_TRUE(started && WIFEXITED(*started) && WEXITSTATUS(*started) == 0);

  ASSERT_EQ(Run({"--mps", "--threads", "50"}, 1), 0) << Read(dir_ + "/run.log");
  EXPECT_EQ(EnvOf(1, "CUDA_MPS_PIPE_DIRECTORY"), pipe);
  EXPECT_EQ(EnvOf(1, "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"), "50");
  const std::string record = Read(dir_ + "/record");
  EXPECT_EQ(Count(record, "start pid="), 1) << record;
  EXPECT_EQ(Count(record, "cmd get_default_active_thread_percentage"), 2) << "missed, then asked again";
  EXPECT_THAT(Read(dir_ + "/run.log"), Not(HasSubstr("started an MPS control daemon")));
}

TEST_F(SlicerRunMpsTest, BadCombinationsAreRefusedBeforeAnythingStarts) {
  EXPECT_EQ(Run({"--threads", "25"}, 1), 2);  // --threads without --mps
  EXPECT_EQ(Run({"--mps", "--threads", "0"}, 1), 2);
  EXPECT_EQ(Run({"--mps", "--threads", "101"}, 1), 2);
  EXPECT_EQ(Run({"--mps", "--weight", "3"}, 1), 2);
  EXPECT_THAT(Read(dir_ + "/run.log"), HasSubstr("use --threads"));
  EXPECT_EQ(Read(dir_ + "/record"), "");
  EXPECT_FALSE(fs::exists(dir_ + "/env.1"));
}

}  // namespace
}  // namespace slicer
