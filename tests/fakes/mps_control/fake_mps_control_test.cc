// The fake nvidia-cuda-mps-control (fake_mps_control.cc) against its contract: the daemon (-f,
// -d), the client (no arguments) and the test knobs, run as processes in a temp dir. The test
// process is a child subreaper, so that a daemon started with -d is its child too and its exit
// status can be waited for.
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

extern char** environ;

namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;
using Clock = std::chrono::steady_clock;
using Env = std::map<std::string, std::string>;

const std::string kTool = std::string(SLICER_FAKES_BIN_DIR) + "/nvidia-cuda-mps-control";

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// Polls `done` every 5 ms until it holds or `timeout` passes.
template <typename Fn>
bool WaitFor(Fn done, std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (done()) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

// The exit status of child `pid` if it ends within `timeout` (-1 if it did not, -2 if it was
// killed by a signal).
int WaitExit(pid_t pid, std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
  int status = 0;
  if (!WaitFor([&] { return waitpid(pid, &status, WNOHANG) == pid; }, timeout)) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -2;
}

struct Result {
  int exit_code = -1;
  std::string out;
  std::string err;
  std::chrono::milliseconds elapsed{0};
};

class FakeMpsControlTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { prctl(PR_SET_CHILD_SUBREAPER, 1); }

  void SetUp() override {
    char tmpl[] = "/tmp/mps-XXXXXX";  // short: the socket path must fit in 107 bytes
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    env_ = {{"CUDA_MPS_PIPE_DIRECTORY", pipe()},
            {"CUDA_MPS_LOG_DIRECTORY", dir_ + "/log"},
            {"SLICER_FAKE_MPS_RECORD", record()}};
  }

  void TearDown() override {
    for (pid_t pid : children_) {
      if (waitpid(pid, nullptr, WNOHANG) == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, nullptr, 0);
      }
    }
    fs::remove_all(dir_);
  }

  std::string pipe() const { return dir_ + "/pipe"; }
  std::string socket() const { return pipe() + "/control"; }
  std::string pid_file() const { return pipe() + "/nvidia-cuda-mps-control.pid"; }
  std::string record() const { return dir_ + "/record"; }
  std::vector<std::string> Recorded() const { return Lines(ReadFile(record())); }

  // Starts the tool with `args`, the environment plus env_ plus `extra`, `input` on stdin and
  // stdout/stderr going to files under dir_ (named after the returned pid).
  pid_t Spawn(const std::vector<std::string>& args, const Env& extra = {},
              const std::string& input = "") {
    Env env;
    for (char** e = environ; *e != nullptr; ++e) {
      std::string kv = *e;
      size_t eq = kv.find('=');
      if (eq != std::string::npos) env[kv.substr(0, eq)] = kv.substr(eq + 1);
    }
    for (const auto& [k, v] : env_) env[k] = v;
    for (const auto& [k, v] : extra) env[k] = v;
    std::vector<std::string> env_strings;
    for (const auto& [k, v] : env) env_strings.push_back(k + "=" + v);
    const std::string in_path = dir_ + "/stdin." + std::to_string(spawned_++);
    std::ofstream(in_path) << input;

    pid_t pid = fork();
    if (pid == 0) {
      std::vector<char*> argv = {const_cast<char*>(kTool.c_str())};
      for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      std::vector<char*> envp;
      for (std::string& s : env_strings) envp.push_back(s.data());
      envp.push_back(nullptr);
      const std::string base = dir_ + "/" + std::to_string(getpid());
      if (!freopen(in_path.c_str(), "r", stdin) || !freopen((base + ".out").c_str(), "w", stdout) ||
          !freopen((base + ".err").c_str(), "w", stderr)) {
        _exit(126);
      }
      execve(argv[0], argv.data(), envp.data());
      _exit(127);
    }
    children_.push_back(pid);
    return pid;
  }

  std::string Out(pid_t pid) const { return ReadFile(dir_ + "/" + std::to_string(pid) + ".out"); }
  std::string Err(pid_t pid) const { return ReadFile(dir_ + "/" + std::to_string(pid) + ".err"); }

  // Runs the tool to its end (at most 10 s).
  Result Run(const std::vector<std::string>& args, const std::string& input = "",
             const Env& extra = {}) {
    const auto start = Clock::now();
    pid_t pid = Spawn(args, extra, input);
    Result r;
    r.exit_code = WaitExit(pid, std::chrono::seconds(10));
    r.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
    r.out = Out(pid);
    r.err = Err(pid);
    return r;
  }

  Result Client(const std::string& input) { return Run({}, input); }

  // Starts `-f` and waits until it has recorded its start (it listens by then).
  pid_t StartDaemon(const Env& extra = {}) {
    const size_t starts = CountStarts();
    pid_t pid = Spawn({"-f"}, extra);
    EXPECT_TRUE(WaitFor([&] { return CountStarts() > starts; })) << Err(pid);
    return pid;
  }

  size_t CountStarts() const {
    size_t n = 0;
    for (const std::string& line : Recorded()) n += line.rfind("start ", 0) == 0;
    return n;
  }

  // A raw connection to the daemon, for what the fake's own client never sends.
  int Connect() const {
    int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr = {};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", socket().c_str());
    EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0) << strerror(errno);
    return fd;
  }

  // Sends `bytes` (then half-closes when `shut`) and reads until the daemon closes.
  std::string Exchange(const std::string& bytes, bool shut = false) const {
    int fd = Connect();
    EXPECT_EQ(send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(bytes.size()));
    if (shut) shutdown(fd, SHUT_WR);
    timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    std::string reply;
    char buf[4096];
    for (ssize_t n; (n = read(fd, buf, sizeof buf)) > 0;) reply.append(buf, n);
    close(fd);
    return reply;
  }

  std::string dir_;
  Env env_;
  std::vector<pid_t> children_;
  int spawned_ = 0;
};

TEST_F(FakeMpsControlTest, AnswersTheClientAndRecordsEveryCommand) {
  pid_t daemon = StartDaemon({{"CUDA_VISIBLE_DEVICES", "GPU-abc"}});
  Result r = Client(
      "get_default_active_thread_percentage\n"
      "set_default_active_thread_percentage 25\n"
      "\n"
      "get_default_active_thread_percentage\n"
      "set_default_device_pinned_mem_limit 0 2G\n"
      "get_default_device_pinned_mem_limit 0\n"
      "get_default_device_pinned_mem_limit 1\n"
      "get_server_list\n"
      "get_device_client_list\n"
      "bogus_command x");  // the last line has no newline
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out,
            "100.0\n25.0\n25.0\n2G\n0\n"
            "Error: unrecognized command bogus_command\n");
  EXPECT_EQ(r.err, "");

  const std::string pid = std::to_string(daemon);
  EXPECT_THAT(Recorded(), ElementsAre("start pid=" + pid + " visible=GPU-abc pipe=" + pipe() +
                                          " log=" + dir_ + "/log",
                                      "cmd get_default_active_thread_percentage",
                                      "cmd set_default_active_thread_percentage 25",
                                      "cmd get_default_active_thread_percentage",
                                      "cmd set_default_device_pinned_mem_limit 0 2G",
                                      "cmd get_default_device_pinned_mem_limit 0",
                                      "cmd get_default_device_pinned_mem_limit 1",
                                      "cmd get_server_list", "cmd get_device_client_list",
                                      "cmd bogus_command x"));
  EXPECT_EQ(ReadFile(pid_file()), pid + "\n");
  std::vector<std::string> log = Lines(ReadFile(dir_ + "/log/control.log"));
  ASSERT_EQ(log.size(), 10u);
  EXPECT_THAT(log[0], ::testing::MatchesRegex(R"(\[[0-9-]+ [0-9:.]+\] start pid=[0-9]+ .*)"));
  EXPECT_THAT(log[9], ::testing::EndsWith("] cmd bogus_command x"));
}

TEST_F(FakeMpsControlTest, WrongArgumentsAreErrorsAndTheDaemonKeepsRunning) {
  pid_t daemon = StartDaemon();
  Result r = Client(
      "set_default_active_thread_percentage abc\n"
      "set_default_active_thread_percentage 150\n"
      "set_default_device_pinned_mem_limit 0 lots\n"
      "get_default_active_thread_percentage now\n"
      "quit now\n"
      "get_default_active_thread_percentage\n");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  std::vector<std::string> out = Lines(r.out);
  ASSERT_EQ(out.size(), 6u) << r.out;
  for (int i = 0; i < 5; ++i) EXPECT_THAT(out[i], StartsWith("Error: ")) << i;
  EXPECT_THAT(out[4], HasSubstr("quit"));
  EXPECT_EQ(out[5], "100.0");
  EXPECT_EQ(waitpid(daemon, nullptr, WNOHANG), 0);
}

TEST_F(FakeMpsControlTest, QuitRemovesTheSocketAndThePidFileAndExitsZero) {
  pid_t daemon = StartDaemon();
  ASSERT_TRUE(fs::exists(socket()));
  Result r = Client("quit\n");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(WaitExit(daemon), 0);
  EXPECT_FALSE(fs::exists(socket()));
  EXPECT_FALSE(fs::exists(pid_file()));
  std::vector<std::string> rec = Recorded();
  ASSERT_EQ(rec.size(), 3u);
  EXPECT_THAT(rec[0], StartsWith("start pid="));
  EXPECT_EQ(rec[1], "cmd quit");
  EXPECT_EQ(rec[2], "quit");

  // The pipe dir is free again.
  pid_t again = StartDaemon();
  EXPECT_EQ(Client("get_default_active_thread_percentage").out, "100.0\n");
  EXPECT_EQ(Client("quit -t 5").exit_code, 0);
  EXPECT_EQ(WaitExit(again), 0);
}

TEST_F(FakeMpsControlTest, ASecondDaemonOnTheSamePipeDirIsRefused) {
  pid_t first = StartDaemon();
  Result second = Run({"-f"});
  EXPECT_EQ(second.exit_code, 1);
  EXPECT_THAT(second.err, HasSubstr("An instance of this daemon is already running"));
  Result background = Run({"-d"});
  EXPECT_EQ(background.exit_code, 1);
  EXPECT_THAT(background.err, HasSubstr("already running"));
  EXPECT_EQ(CountStarts(), 1u);
  EXPECT_EQ(ReadFile(pid_file()), std::to_string(first) + "\n");
  EXPECT_EQ(Client("get_default_active_thread_percentage").out, "100.0\n");
}

TEST_F(FakeMpsControlTest, DieCrashesLeavingAStaleSocketThatTheNextDaemonReplaces) {
  pid_t daemon = StartDaemon();
  Result r = Client("die\n");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(WaitExit(daemon), 1);
  EXPECT_TRUE(fs::exists(socket()));
  EXPECT_TRUE(fs::exists(pid_file()));
  EXPECT_THAT(Recorded(), ElementsAre(StartsWith("start "), "cmd die", "die"));

  Result orphan = Client("get_server_list\n");
  EXPECT_EQ(orphan.exit_code, 1);
  EXPECT_THAT(orphan.err, HasSubstr("Cannot find MPS control daemon process"));

  pid_t next = StartDaemon();
  EXPECT_EQ(ReadFile(pid_file()), std::to_string(next) + "\n");
  EXPECT_EQ(Client("get_default_active_thread_percentage\n").out, "100.0\n");
  EXPECT_EQ(CountStarts(), 2u);
}

TEST_F(FakeMpsControlTest, DieAfterMsExitsOneWithoutCleaningUp) {
  const auto start = Clock::now();
  pid_t daemon = StartDaemon({{"SLICER_FAKE_MPS_DIE_AFTER_MS", "500"}});
  EXPECT_EQ(Client("get_default_active_thread_percentage\n").out, "100.0\n");
  EXPECT_EQ(WaitExit(daemon), 1);
  EXPECT_GE(Clock::now() - start, std::chrono::milliseconds(500));
  EXPECT_TRUE(fs::exists(socket()));
  EXPECT_THAT(Recorded(), ElementsAre(StartsWith("start "),
                                      "cmd get_default_active_thread_percentage", "die"));
}

TEST_F(FakeMpsControlTest, FailStartExitsOneAtOnce) {
  Result r = Run({"-f"}, "", {{"SLICER_FAKE_MPS_FAIL_START", "1"}});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("SLICER_FAKE_MPS_FAIL_START"));
  EXPECT_LT(r.elapsed, std::chrono::seconds(2));
  EXPECT_FALSE(fs::exists(socket()));
  EXPECT_THAT(Recorded(), ElementsAre(StartsWith("fail-start pid=")));
  Result background = Run({"-d"}, "", {{"SLICER_FAKE_MPS_FAIL_START", "1"}});
  EXPECT_EQ(background.exit_code, 1);
}

TEST_F(FakeMpsControlTest, AHungDaemonMakesTheClientGiveUpAfterFiveSeconds) {
  pid_t daemon = StartDaemon({{"SLICER_FAKE_MPS_HANG", "1"}});
  Result r = Client("get_default_active_thread_percentage\n");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_THAT(r.err, HasSubstr("did not answer"));
  EXPECT_GE(r.elapsed, std::chrono::milliseconds(4900));
  EXPECT_LT(r.elapsed, std::chrono::milliseconds(6500));
  EXPECT_THAT(Recorded(),
              ElementsAre(StartsWith("start "), "cmd get_default_active_thread_percentage"));
  EXPECT_EQ(waitpid(daemon, nullptr, WNOHANG), 0);

  // Only a signal stops it; SIGTERM cleans up like quit.
  ASSERT_EQ(kill(daemon, SIGTERM), 0);
  EXPECT_EQ(WaitExit(daemon), 0);
  EXPECT_FALSE(fs::exists(socket()));
  EXPECT_FALSE(fs::exists(pid_file()));
  EXPECT_EQ(Recorded().back(), "stop signal=15");
}

TEST_F(FakeMpsControlTest, ClientWithoutADaemonFailsAtOnce) {
  Result r = Client("get_default_active_thread_percentage\n");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("Cannot find MPS control daemon process"));
  EXPECT_THAT(r.err, HasSubstr(socket()));
  EXPECT_LT(r.elapsed, std::chrono::seconds(2));
}

TEST_F(FakeMpsControlTest, DaemonizeReturnsOnceTheDaemonListens) {
  Result r = Run({"-d"}, "", {{"CUDA_VISIBLE_DEVICES", "GPU-xyz"}});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // No waiting: it listens and has written its pid file by the time the parent returned.
  EXPECT_EQ(Client("get_default_active_thread_percentage\n").out, "100.0\n");
  const pid_t daemon = std::atoi(ReadFile(pid_file()).c_str());
  ASSERT_GT(daemon, 0);
  children_.push_back(daemon);  // a subreaper's child once its parent exited
  EXPECT_THAT(Recorded()[0],
              StartsWith("start pid=" + std::to_string(daemon) + " visible=GPU-xyz"));
  EXPECT_EQ(fs::read_symlink("/proc/" + std::to_string(daemon) + "/fd/1"), "/dev/null");
  EXPECT_EQ(getsid(daemon), daemon);
  EXPECT_EQ(Client("quit\n").exit_code, 0);
  EXPECT_EQ(WaitExit(daemon), 0);
  EXPECT_FALSE(fs::exists(socket()));
}

TEST_F(FakeMpsControlTest, MalformedAndOverlongInputIsAnsweredWithoutACrash) {
  pid_t daemon = StartDaemon();
  EXPECT_THAT(Exchange(std::string(5000, 'x')), StartsWith("Error: Command too long"));
  EXPECT_THAT(Exchange(std::string("\x01\xff\0garbage\n", 11)), StartsWith("Error: "));
  EXPECT_EQ(Exchange("get_default_active_thread_percentage", /*shut=*/true), "100.0\n");
  EXPECT_EQ(Exchange("get_default_active_thread_percentage\r\nquit\n"), "100.0\n");
  close(Connect());  // connects and says nothing
  std::vector<int> idle;
  for (int i = 0; i < 100; ++i) idle.push_back(Connect());  // more than it keeps open
  EXPECT_EQ(Client("get_default_active_thread_percentage\n").out, "100.0\n");
  for (int fd : idle) close(fd);
  EXPECT_EQ(waitpid(daemon, nullptr, WNOHANG), 0);
  std::vector<std::string> rec = Recorded();
  ASSERT_GE(rec.size(), 3u);
  EXPECT_EQ(rec[1], "cmd " + std::string(1024, 'x'));
  EXPECT_EQ(rec[2], "cmd ?\xff?garbage");
}

TEST_F(FakeMpsControlTest, TooLongAPipeDirOrBadArgumentsFail) {
  const std::string deep = dir_ + "/" + std::string(100, 'p');
  Result r = Run({"-f"}, "", {{"CUDA_MPS_PIPE_DIRECTORY", deep}});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr(deep + "/control"));
  Result usage = Run({"-x"});
  EXPECT_EQ(usage.exit_code, 2);
  EXPECT_THAT(usage.err, HasSubstr("usage"));
}

}  // namespace
