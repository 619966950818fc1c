// The arbiter daemon over a real unix socket, with the C client library in threads of this
// process and in child processes (tests/arbiter/test_client.cc). Kernels are timed sleeps, so
// these tests take real time; tolerances are set for a loaded 2-core machine.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "src/arbiter/client/arbiter_client.h"
#include "src/arbiter/server.h"
#include "src/common/subprocess.h"

namespace slicer::arbiter {
namespace {

using namespace std::chrono_literals;
using SteadyClock = std::chrono::steady_clock;

constexpr char kGpu[] = "GPU-11111111-1111-1111-1111-111111111111";

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteFile(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

int64_t Field(const std::string& text, const std::string& key) {
  size_t p = text.rfind(key + "=");
  if (p == std::string::npos) return -1;
  return std::atoll(text.c_str() + p + key.size() + 1);
}

// A client thread in this process on a simulated stream.
class Worker {
 public:
  explicit Worker(const std::string& socket, const std::string& token, double weight = 0,
                  int fail_closed = 0, std::chrono::microseconds kernel = 1000us,
                  int observe = -1) {
    kernel_ = kernel;
    slicer_arb_options o{};
    o.socket_path = socket.c_str();
    o.container = token.c_str();
    o.replicas = "";
    o.weight_milli = static_cast<uint32_t>(weight * 1000);
    o.fail_closed = fail_closed;
    o.observe = observe;
    o.drain = [](void* user, int) {
      auto* w = static_cast<Worker*>(user);
      std::this_thread::sleep_until(
          SteadyClock::time_point(SteadyClock::duration(w->busy_until_.load())));
      return 0;
    };
    o.user = this;
    c_ = slicer_arb_start(&o);
    slicer_arb_attach(c_, 0, kGpu);
  }
  ~Worker() {
    Stop();
    slicer_arb_stop(c_);
  }
  void Start() {
    thread_ = std::thread([this] {
      int n = 0;
      while (!stop_) {
        int r = slicer_arb_launch(c_, 0);
        auto now = SteadyClock::now().time_since_epoch().count();
        int64_t until =
            std::max<int64_t>(busy_until_.load(), now) + std::chrono::nanoseconds(kernel_).count();
        busy_until_ = until;
        slicer_arb_launched(c_, 0);
        if (r == SLICER_ARB_CHECKPOINT || ++n % 4 == 0) {
          std::this_thread::sleep_until(SteadyClock::time_point(SteadyClock::duration(until)));
          slicer_arb_synced(c_, 0);
          work_ += 4;
        }
      }
    });
  }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  int64_t work() const { return work_; }
  slicer_arb_client* client() { return c_; }
  slicer_arb_stats stats() {
    slicer_arb_stats s;
    slicer_arb_get_stats(c_, &s);
    return s;
  }

 private:
  slicer_arb_client* c_;
  std::chrono::microseconds kernel_;
  std::atomic<int64_t> busy_until_{0};
  std::atomic<int64_t> work_{0};
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

class DaemonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/arbiter_test.XXXXXX";
    dir_ = mkdtemp(tmpl);
    socket_ = dir_ + "/arbiter.sock";
    options_.socket_path = socket_;
    options_.config.scheduler.quantum = 10ms;
    // Batch leases (saturating clients) at twice the quantum: short tests see many turns.
    options_.config.scheduler.batch_quantum = 20ms;
    options_.config.scheduler.revoke_grace = 10s;
    // The lease mechanism: these simulated clients report no waits (LOAD), so they are leased
    // from the first request; Contended* tests below judge them by their LOAD reports.
    options_.config.scheduler.gating = Gating::kAlways;
    options_.report_interval = 50ms;
    options_.trust_claims = true;
  }
  void TearDown() override {
    if (server_) StopServer();
    std::string cmd = "rm -rf " + dir_;
    int rc = std::system(cmd.c_str());
    (void)rc;
  }
  void StartServer(Attributor* attributor = nullptr) {
    server_ = std::make_unique<Server>(options_, RealClock(), attributor);
    absl::Status s = server_->Start();
    ASSERT_TRUE(s.ok()) << s;
    thread_ = std::thread([this] { server_->Run(); });
  }
  void StopServer() {
    server_->Stop();
    thread_.join();
    server_.reset();
  }
  Subprocess Spawn(std::vector<std::string> args, const std::string& out) {
    args.insert(args.begin(), TEST_CLIENT_PATH);
    args.push_back("socket=" + socket_);
    SpawnOptions o;
    o.argv = args;
    o.output_path = out;
    auto p = Subprocess::Spawn(o);
    EXPECT_TRUE(p.ok()) << p.status();
    return std::move(*p);
  }
  bool WaitFor(const std::function<bool()>& cond, std::chrono::milliseconds limit) {
    auto end = SteadyClock::now() + limit;
    while (SteadyClock::now() < end) {
      if (cond()) return true;
      std::this_thread::sleep_for(1ms);
    }
    return cond();
  }
  // After `a`, which had handed its open lease over to a busy `b`, launched once more (a timed
  // turn, since b waits): it syncs and must give the turn back at its end, so b keeps working.
  // Fails when a launch left a count behind that stalls the hand-over.
  void ExpectTimedTurnGivenBack(Worker& a, Worker& b) {
    slicer_arb_synced(a.client(), 0);
    int64_t before = b.work();
    EXPECT_TRUE(WaitFor([&] { return b.work() > before + 8; }, 2s)) << b.work() - before;
    EXPECT_GE(a.stats().grants, 2u);
  }
  // A raw protocol peer.
  int Raw() {
    int fd = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strcpy(addr.sun_path, socket_.c_str());
    EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    timeval tv{2, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    return fd;
  }
  static void SendHello(int fd, const char* token = "", uint16_t version = SLICER_ARB_VERSION) {
    slicer_arb_hello_msg h{};
    slicer_arb_init(&h.h, SLICER_ARB_HELLO, 1);
    h.h.version = version;
    std::snprintf(h.container, sizeof h.container, "%s", token);
    ASSERT_EQ(::send(fd, &h, sizeof h, MSG_NOSIGNAL), static_cast<ssize_t>(sizeof h));
  }
  // The next message's type (0 on EOF / timeout); ERROR codes go to *code.
  static int Next(int fd, uint32_t* code = nullptr) {
    char buf[SLICER_ARB_MAX_MSG];
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    // A peer that closed with our messages unread reports ECONNRESET once, ahead of the messages
    // it queued for us; read on to get them.
    if (n < 0 && errno == ECONNRESET) n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) return 0;
    slicer_arb_hdr h;
    std::memcpy(&h, buf, sizeof h);
    if (h.type == SLICER_ARB_ERROR && code != nullptr) {
      slicer_arb_err_msg e;
      std::memcpy(&e, buf, sizeof e);
      *code = e.code;
    }
    return h.type;
  }
  static bool ClosedByPeer(int fd) {
    char b[SLICER_ARB_MAX_MSG];
    return ::recv(fd, b, sizeof b, 0) == 0;
  }

  std::string dir_, socket_;
  ServerOptions options_;
  std::unique_ptr<Server> server_;
  std::thread thread_;
};

TEST_F(DaemonTest, LoneClientRunsUngatedAfterOneGrant) {
  StartServer();
  Worker w(socket_, "solo");
  ASSERT_TRUE(WaitFor([&] { return w.stats().connected; }, 2s));
  for (int i = 0; i < 100000; ++i) slicer_arb_launch(w.client(), 0);
  // Ungated: one grant covers every launch (its cost is measured in bench/, not asserted here).
  EXPECT_EQ(w.stats().grants, 1u);
}

// The shim's fast path: slicer_arb_launch_open counts a launch only while the lease is open, and
// a 0 counts nothing (a leaked in-flight count would stall the next hand-over for the whole
// revoke_grace, 10 s here).
TEST_F(DaemonTest, LaunchOpenCountsOnlyWhileTheLeaseIsOpen) {
  StartServer();
  EXPECT_EQ(slicer_arb_launch_open(nullptr, 0), 0);
  Worker a(socket_, "a"), b(socket_, "b");
  ASSERT_TRUE(WaitFor([&] { return a.stats().connected && b.stats().connected; }, 2s));
  ASSERT_EQ(slicer_arb_launch(a.client(), 0), SLICER_ARB_GO);  // alone: an open lease
  slicer_arb_launched(a.client(), 0);
  for (int i = 0; i < 1000; ++i) {
    ASSERT_EQ(slicer_arb_launch_open(a.client(), 0), 1) << i;
    slicer_arb_launched(a.client(), 0);
  }
  EXPECT_EQ(a.stats().grants, 1u);
  b.Start();  // a must hand over, with nothing in flight
  ASSERT_TRUE(WaitFor([&] { return b.work() > 0; }, 2s));
  ASSERT_TRUE(WaitFor([&] { return slicer_arb_launch_open(a.client(), 0) == 0; }, 2s));
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(slicer_arb_launch_open(a.client(), 0), 0);
  slicer_arb_launch(a.client(), 0);
  slicer_arb_launched(a.client(), 0);
  ExpectTimedTurnGivenBack(a, b);
}

// The same for the inline calls the shim's launch hooks use (slicer_arb_open_fast, then
// slicer_arb_unmark or slicer_arb_close_fast): a launch is marked only while the lease is open,
// and closing a launch that was not marked that way claims nothing, so slicer_arb_submitted
// still gets its count.
TEST_F(DaemonTest, InlineOpenMarksOnlyWhileTheLeaseIsOpen) {
  StartServer();
  EXPECT_EQ(slicer_arb_gate_of(nullptr, 0), nullptr);
  Worker a(socket_, "a"), b(socket_, "b");
  ASSERT_TRUE(WaitFor([&] { return a.stats().connected && b.stats().connected; }, 2s));
  EXPECT_EQ(slicer_arb_gate_of(a.client(), SLICER_ARB_MAX_GPUS), nullptr);
  const slicer_arb_gate* gate = slicer_arb_gate_of(a.client(), 0);
  ASSERT_NE(gate, nullptr);
  ASSERT_EQ(slicer_arb_launch(a.client(), 0), SLICER_ARB_GO);  // alone: an open lease
  slicer_arb_launched(a.client(), 0);
  ASSERT_EQ(slicer_arb_launch_open(a.client(), 0), 1);  // claims this thread's slot
  if (slicer_arb_t_open == nullptr) {
    slicer_arb_launched(a.client(), 0);
    GTEST_SKIP() << "no membarrier here: launchers fence, the inline pair is not used";
  }
  EXPECT_EQ(slicer_arb_close_fast(gate), 1);  // launch_open marks the slot the same way
  for (int i = 0; i < 1000; ++i) {
    const slicer_arb_gate** mark = slicer_arb_open_fast(gate);
    ASSERT_EQ(mark, slicer_arb_t_open) << i;
    ASSERT_EQ(*mark, gate);
    if (i % 2 == 0) {
      slicer_arb_unmark(mark);
    } else {
      ASSERT_EQ(slicer_arb_close_fast(gate), 1) << i;
    }
    ASSERT_EQ(*slicer_arb_t_open, nullptr);
  }
  EXPECT_EQ(slicer_arb_close_fast(gate), 0);  // nothing marked
  EXPECT_EQ(a.stats().grants, 1u);
  EXPECT_GT(a.stats().busy_total_ns[0], 0u);  // the first open launch started a busy interval
  // a must hand over, with nothing marked.
  b.Start();
  ASSERT_TRUE(WaitFor([&] { return b.work() > 0; }, 2s));
  ASSERT_TRUE(WaitFor([&] { return slicer_arb_open_fast(gate) == nullptr; }, 2s));
  for (int i = 0; i < 1000; ++i) {
    ASSERT_EQ(slicer_arb_open_fast(gate), nullptr);
    ASSERT_EQ(*slicer_arb_t_open, nullptr);
  }
  // A gated launch is counted in the shared word: close_fast leaves it to slicer_arb_launched.
  slicer_arb_launch(a.client(), 0);
  EXPECT_EQ(slicer_arb_close_fast(gate), 0);
  slicer_arb_launched(a.client(), 0);
  ExpectTimedTurnGivenBack(a, b);
}

// Launches under an open lease count themselves in per-thread slots, not a shared word; a
// hand-over must still see every one of them submitted before its drain starts. Three threads
// launch without pause while a neighbour comes and goes, revoking the open lease each time.
TEST_F(DaemonTest, OpenLeaseLaunchesAreSubmittedBeforeTheDrain) {
  StartServer();
  struct Probe {
    std::atomic<bool> draining{false};
    std::atomic<int> drains{0};
  } probe;
  slicer_arb_options o{};
  o.socket_path = socket_.c_str();
  o.container = "busy";
  o.replicas = "";
  o.drain = [](void* user, int) {
    auto* p = static_cast<Probe*>(user);
    p->draining = true;
    std::this_thread::sleep_for(200us);
    p->draining = false;
    ++p->drains;
    return 0;
  };
  o.user = &probe;
  slicer_arb_client* c = slicer_arb_start(&o);
  slicer_arb_attach(c, 0, kGpu);
  ASSERT_TRUE(WaitFor(
      [&] {
        slicer_arb_stats st;
        slicer_arb_get_stats(c, &st);
        return st.connected != 0;
      },
      2s));
  std::atomic<bool> stop{false};
  std::atomic<int64_t> open{0}, inline_open{0}, gated{0}, violations{0};
  std::atomic<bool> can_inline{false};
  const slicer_arb_gate* gate = slicer_arb_gate_of(c, 0);
  ASSERT_NE(gate, nullptr);
  std::vector<std::thread> launchers;
  for (int t = 0; t < 3; ++t) {
    // Thread 0 takes slicer_arb_launch_open, the others the shim's inline pair first.
    launchers.emplace_back([&, t] {
      while (!stop) {
        const slicer_arb_gate** mark = t > 0 ? slicer_arb_open_fast(gate) : nullptr;
        bool in = mark != nullptr;
        bool fast = in || slicer_arb_launch_open(c, 0) == 1;
        if (!fast) slicer_arb_launch(c, 0);
        if (probe.draining) ++violations;
        auto until = SteadyClock::now() + 2us;  // the driver call
        while (SteadyClock::now() < until) {
        }
        if (probe.draining) ++violations;
        if (in) {
          slicer_arb_unmark(mark);
        } else if (t == 0 || slicer_arb_close_fast(gate) == 0) {
          slicer_arb_launched(c, 0);
        }
        ++(in ? inline_open : fast ? open : gated);
        if (slicer_arb_t_open != nullptr) can_inline = true;
      }
    });
  }
  for (int i = 0; i < 15; ++i) {
    std::this_thread::sleep_for(30ms);  // alone: the open lease comes back
    Worker b(socket_, "neighbour" + std::to_string(i));
    if (!WaitFor([&] { return b.stats().connected; }, 2s)) {
      ADD_FAILURE() << "neighbour " << i << " did not connect";
      break;  // the launchers still have to be stopped
    }
    b.Start();
    std::this_thread::sleep_for(30ms);
  }
  stop = true;
  for (auto& t : launchers) t.join();
  slicer_arb_stop(c);
  EXPECT_EQ(violations.load(), 0) << open << " open, " << inline_open << " inline open, " << gated
                                  << " gated launches";
  EXPECT_GT(open.load(), 1000);
  if (can_inline) {
    EXPECT_GT(inline_open.load(), 1000);
  }
  EXPECT_GE(probe.drains.load(), 10) << "the neighbour must have revoked the open lease";
}

TEST_F(DaemonTest, TwoClientProcessesWeighted3To1) {
  StartServer();
  std::string go = dir_ + "/go";
  Subprocess a = Spawn({"weight=3", "token=a", "seconds=2.5", "wait_file=" + go}, dir_ + "/a");
  Subprocess b = Spawn({"weight=1", "token=b", "seconds=2.5", "wait_file=" + go}, dir_ + "/b");
  WriteFile(go, "");
  ASSERT_TRUE(a.Wait(20s).has_value());
  ASSERT_TRUE(b.Wait(20s).has_value());
  double wa = Field(ReadFile(dir_ + "/a"), "work_ns"), wb = Field(ReadFile(dir_ + "/b"), "work_ns");
  ASSERT_GT(wb, 0);
  EXPECT_NEAR(wa / wb, 3.0, 0.45) << ReadFile(dir_ + "/a") << ReadFile(dir_ + "/b");
  // Serialized: together about one GPU's worth (2.5 s), not two.
  EXPECT_LT((wa + wb) / 1e9, 2.5 * 1.1);
  EXPECT_GT((wa + wb) / 1e9, 2.5 * 0.75);
}

TEST_F(DaemonTest, FourEqualClientsShareEqually) {
  StartServer();
  std::vector<std::unique_ptr<Worker>> ws;
  for (int i = 0; i < 4; ++i)
    ws.push_back(std::make_unique<Worker>(socket_, "w" + std::to_string(i)));
  for (auto& w : ws) ASSERT_TRUE(WaitFor([&] { return w->stats().connected; }, 2s));
  for (auto& w : ws) w->Start();
  std::this_thread::sleep_for(2s);
  for (auto& w : ws) w->Stop();
  double total = 0;
  for (auto& w : ws) total += w->work();
  for (auto& w : ws) EXPECT_NEAR(w->work() / total, 0.25, 0.05);
}

// The lease comes back on the hang-up, not on a timer: with a 30 s revoke grace the only timed
// path (revoke, then force off) would take 30 s; the bound (2 s) is that far from it and from the
// scheduling noise of a loaded machine or a sanitizer build (typically a few ms here).
TEST_F(DaemonTest, ClientKilledMidLeaseIsReclaimedOnHangUp) {
  options_.config.scheduler.revoke_grace = 30s;
  StartServer();
  // The child takes the lease and never hands it back (its drain never returns).
  Subprocess child = Spawn({"hold=1", "token=victim", "seconds=60"}, dir_ + "/child");
  ASSERT_TRUE(
      WaitFor([&] { return ReadFile(dir_ + "/child").find("granted") != std::string::npos; }, 5s));
  Worker w(socket_, "survivor");
  ASSERT_TRUE(WaitFor([&] { return w.stats().connected; }, 2s));
  std::atomic<int64_t> granted_at{0};
  std::thread t([&] {
    slicer_arb_launch(w.client(), 0);
    granted_at = SteadyClock::now().time_since_epoch().count();
  });
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(granted_at.load(), 0) << "the survivor must wait while the victim holds the lease";
  auto killed_at = SteadyClock::now();
  child.Signal(SIGKILL);
  t.join();
  auto took = SteadyClock::time_point(SteadyClock::duration(granted_at.load())) - killed_at;
  EXPECT_LT(took, 2s) << std::chrono::duration<double, std::milli>(took).count() << " ms";
}

TEST_F(DaemonTest, HolderIgnoringRevokeIsForcedOff) {
  options_.config.scheduler.revoke_grace = 200ms;
  StartServer();
  Subprocess child = Spawn({"hold=1", "token=stuck", "seconds=60"}, dir_ + "/child");
  ASSERT_TRUE(
      WaitFor([&] { return ReadFile(dir_ + "/child").find("granted") != std::string::npos; }, 5s));
  Worker w(socket_, "other");
  ASSERT_TRUE(WaitFor([&] { return w.stats().connected; }, 2s));
  auto t0 = SteadyClock::now();
  slicer_arb_launch(w.client(), 0);
  auto took = SteadyClock::now() - t0;
  EXPECT_GE(took, 150ms);
  EXPECT_LT(took, 1s);
  EXPECT_NE(server_->RenderMetrics().find("slicer_arbiter_forced_handovers_total 1"),
            std::string::npos);
}

TEST_F(DaemonTest, ArbiterRestartDoesNotStopWorkloadsAndSharingResumes) {
  StartServer();
  Worker a(socket_, "a"), b(socket_, "b");
  ASSERT_TRUE(WaitFor([&] { return a.stats().connected && b.stats().connected; }, 2s));
  a.Start();
  b.Start();
  std::this_thread::sleep_for(500ms);
  StopServer();
  ASSERT_TRUE(WaitFor([&] { return !a.stats().connected && !b.stats().connected; }, 1s));
  // Down: both run ungated, each at about full speed.
  int64_t a0 = a.work(), b0 = b.work();
  std::this_thread::sleep_for(500ms);
  int64_t da = a.work() - a0, db = b.work() - b0;
  EXPECT_GT(da, 300) << "ungated: ~500 kernels of 1 ms in 500 ms";
  EXPECT_GT(db, 300);
  uint64_t grants_before = a.stats().grants + b.stats().grants;
  StartServer();
  ASSERT_TRUE(WaitFor([&] { return a.stats().connected && b.stats().connected; }, 3s));
  EXPECT_EQ(a.stats().connects, 2u);
  std::this_thread::sleep_for(200ms);
  a0 = a.work();
  b0 = b.work();
  std::this_thread::sleep_for(600ms);
  da = a.work() - a0;
  db = b.work() - b0;
  a.Stop();
  b.Stop();
  EXPECT_GT(a.stats().grants + b.stats().grants, grants_before + 4) << "leases again";
  EXPECT_LT(da + db, 600 * 1.15) << "serialized again: one GPU's worth";
  EXPECT_NEAR(static_cast<double>(da) / (da + db), 0.5, 0.15);
}

TEST_F(DaemonTest, FailClosedClientsWaitForTheArbiter) {
  options_.config.fail_closed = true;
  StartServer();
  Worker w(socket_, "careful");
  ASSERT_TRUE(WaitFor([&] { return w.stats().connected; }, 2s));
  w.Start();
  std::this_thread::sleep_for(100ms);
  EXPECT_GT(w.work(), 20);
  StopServer();
  std::this_thread::sleep_for(100ms);
  int64_t before = w.work();
  std::this_thread::sleep_for(300ms);
  EXPECT_LE(w.work() - before, 8) << "launches wait while the arbiter is down";
  StartServer();
  ASSERT_TRUE(WaitFor([&] { return w.work() > before + 50; }, 3s));
  w.Stop();
}

// An observe-only client (an MPS client) is counted in the metrics and never scheduled: the
// leased client beside it keeps its one open-ended grant (under kAlways two leased clients take
// turns), the observer never waits, not even for a fail-closed arbiter that is down, and a lease
// message from an observer is refused without harming the others.
TEST_F(DaemonTest, ObserveOnlyClientsAreCountedButNeverLeasedNorHeldBack) {
  options_.config.fail_closed = true;
  StartServer();
  Worker leased(socket_, "leased");
  Worker mps(socket_, "mps-client", 0, 0, 1000us, /*observe=*/1);
  slicer_arb_memory(mps.client(), 0, 4096, 1 << 20);
  ASSERT_TRUE(WaitFor([&] { return leased.stats().connected && mps.stats().connected; }, 2s));
  leased.Start();
  mps.Start();
  std::this_thread::sleep_for(400ms);
  EXPECT_EQ(leased.stats().grants, 1u) << "the observer is nobody to take turns with";
  EXPECT_EQ(mps.stats().grants, 0u);
  EXPECT_EQ(mps.stats().waited_ns, 0u);
  EXPECT_GT(mps.work(), 100);
  std::string text = server_->RenderMetrics();
  auto labels = [](const char* c) {
    return std::string("{namespace=\"\",pod=\"\",container=\"") + c + "\",gpu=\"" + kGpu + "\"}";
  };
  EXPECT_NE(text.find("slicer_arbiter_observed_clients" + labels("mps-client") + " 1\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("slicer_arbiter_observed_clients" + labels("leased") + " 0\n"),
            std::string::npos);
  EXPECT_NE(text.find("slicer_arbiter_clients" + labels("mps-client") + " 1\n"), std::string::npos);
  EXPECT_NE(text.find("slicer_arbiter_memory_used_bytes" + labels("mps-client") + " 4096\n"),
            std::string::npos);
  EXPECT_NE(text.find("slicer_arbiter_weight" + labels("mps-client") + " 0\n"), std::string::npos);
  std::string g = "slicer_arbiter_gpu_seconds_total" + labels("mps-client") + " ";
  size_t p = text.find(g);
  ASSERT_NE(p, std::string::npos);
  double used = std::atof(text.c_str() + p + g.size());
  EXPECT_GT(used, 0.05) << "its reported busy time";
  EXPECT_LT(used, 0.6) << "clamped to the wall time";
  EXPECT_NE(text.find("slicer_arbiter_gpu_clients{gpu=\"" + std::string(kGpu) + "\"} 2\n"),
            std::string::npos);

  // A raw observer asking for a lease is refused and closed; the others are not affected.
  int fd = Raw();
  slicer_arb_hello_msg h{};
  slicer_arb_init(&h.h, SLICER_ARB_HELLO, 1);
  h.flags = SLICER_ARB_HELLO_OBSERVE;
  std::snprintf(h.container, sizeof h.container, "sneaky");
  ASSERT_EQ(::send(fd, &h, sizeof h, MSG_NOSIGNAL), static_cast<ssize_t>(sizeof h));
  union {
    slicer_arb_welcome_msg w;
    char raw[SLICER_ARB_MAX_MSG];
  } got;
  ASSERT_EQ(::recv(fd, &got, sizeof got, 0), static_cast<ssize_t>(sizeof got.w));
  EXPECT_EQ(got.w.h.type, SLICER_ARB_WELCOME);
  EXPECT_NE(got.w.features & SLICER_ARB_FEATURE_OBSERVE, 0u);
  slicer_arb_attach_msg a{};
  slicer_arb_init(&a.h, SLICER_ARB_ATTACH, 2);
  std::snprintf(a.uuid, sizeof a.uuid, "%s", kGpu);
  ::send(fd, &a, sizeof a, MSG_NOSIGNAL);
  slicer_arb_lease_msg r{};
  slicer_arb_init(&r.h, SLICER_ARB_REQUEST, 3);
  ::send(fd, &r, sizeof r, MSG_NOSIGNAL);
  uint32_t code = 0;
  EXPECT_EQ(Next(fd, &code), SLICER_ARB_ERROR);
  EXPECT_EQ(code, static_cast<uint32_t>(SLICER_ARB_E_STATE));
  ::close(fd);
  EXPECT_EQ(leased.stats().grants, 1u);

  // The arbiter goes away (fail-closed): the leased client waits, the observer does not.
  StopServer();
  std::this_thread::sleep_for(100ms);
  int64_t before = mps.work(), leased_before = leased.work();
  std::this_thread::sleep_for(300ms);
  EXPECT_GT(mps.work() - before, 100) << "an observer never waits for the arbiter";
  EXPECT_LE(leased.work() - leased_before, 8) << "a fail-closed leased client does";
  StartServer();  // lets the leased client's launch through, so that it can stop
  ASSERT_TRUE(WaitFor([&] { return leased.work() > leased_before + 8; }, 3s));
  leased.Stop();
  mps.Stop();
}

TEST_F(DaemonTest, MalformedMessagesAreAnsweredAndClosed) {
  StartServer();
  uint32_t code = 0;
  {
    int fd = Raw();
    const char junk[] = "GET / HTTP/1.1\r\n\r\n";
    ::send(fd, junk, sizeof junk, MSG_NOSIGNAL);
    EXPECT_EQ(Next(fd, &code), SLICER_ARB_ERROR);
    EXPECT_EQ(code, static_cast<uint32_t>(SLICER_ARB_E_MALFORMED));
    EXPECT_TRUE(ClosedByPeer(fd));
    ::close(fd);
  }
  {
    int fd = Raw();
    std::vector<char> big(8000, 'x');
    ::send(fd, big.data(), big.size(), MSG_NOSIGNAL);
    EXPECT_EQ(Next(fd, &code), SLICER_ARB_ERROR);
    EXPECT_EQ(code, static_cast<uint32_t>(SLICER_ARB_E_OVERSIZE));
    ::close(fd);
  }
  {
    int fd = Raw();
    SendHello(fd, "", 99);
    EXPECT_EQ(Next(fd, &code), SLICER_ARB_ERROR);
    EXPECT_EQ(code, static_cast<uint32_t>(SLICER_ARB_E_VERSION));
    ::close(fd);
  }
  {
    int fd = Raw();
    slicer_arb_lease_msg m{};
    slicer_arb_init(&m.h, SLICER_ARB_REQUEST, 1);
    ::send(fd, &m, sizeof m, MSG_NOSIGNAL);
    EXPECT_EQ(Next(fd, &code), SLICER_ARB_ERROR);
    EXPECT_EQ(code, static_cast<uint32_t>(SLICER_ARB_E_STATE));
    ::close(fd);
  }
  {
    int fd = Raw();
    SendHello(fd, "ok");
    EXPECT_EQ(Next(fd), SLICER_ARB_WELCOME);
    slicer_arb_attach_msg m{};
    slicer_arb_init(&m.h, SLICER_ARB_ATTACH, 2);
    std::memset(m.uuid, 'A', sizeof m.uuid);  // no NUL
    ::send(fd, &m, sizeof m, MSG_NOSIGNAL);
    EXPECT_EQ(Next(fd, &code), SLICER_ARB_ERROR);
    EXPECT_EQ(code, static_cast<uint32_t>(SLICER_ARB_E_MALFORMED));
    ::close(fd);
  }
  {
    int fd = Raw();
    SendHello(fd, "bad token with spaces");
    EXPECT_EQ(Next(fd, &code), SLICER_ARB_ERROR);
    ::close(fd);
  }
  std::string m = server_->RenderMetrics();
  EXPECT_NE(m.find("slicer_arbiter_protocol_errors_total{reason=\"malformed\"} 3"),
            std::string::npos)
      << m;
  EXPECT_EQ(server_->ConnectedClients(), 0u);
}

TEST_F(DaemonTest, FloodIsCutOff) {
  StartServer();
  int fd = Raw();
  SendHello(fd, "flood");
  ASSERT_EQ(Next(fd), SLICER_ARB_WELCOME);
  slicer_arb_attach_msg at{};
  slicer_arb_init(&at.h, SLICER_ARB_ATTACH, 2);
  std::strcpy(at.uuid, kGpu);
  ::send(fd, &at, sizeof at, MSG_NOSIGNAL);
  slicer_arb_usage_msg r{};
  slicer_arb_init(&r.h, SLICER_ARB_REPORT, 3);
  // As fast as the arbiter reads them, until it hangs up.
  for (int sent = 0; sent < 100000; ++sent) {
    if (::send(fd, &r, sizeof r, MSG_NOSIGNAL) < 0) break;
  }
  uint32_t code = 0;
  int type;
  while ((type = Next(fd, &code)) != 0 && type != SLICER_ARB_ERROR) {
  }
  EXPECT_EQ(type, SLICER_ARB_ERROR);
  EXPECT_EQ(code, static_cast<uint32_t>(SLICER_ARB_E_FLOOD));
  ::close(fd);
}

TEST_F(DaemonTest, WrongIdentityClaimIsRefused) {
  // A fake proc tree: this process and the child live in different cgroups.
  std::string proc = dir_ + "/proc";
  ::mkdir(proc.c_str(), 0755);
  ::mkdir((proc + "/" + std::to_string(getpid())).c_str(), 0755);
  WriteFile(proc + "/" + std::to_string(getpid()) + "/cgroup", "0::/kubepods/pod-a/ctr-a\n");
  options_.proc_root = proc;
  StartServer();
  int owner = Raw();
  SendHello(owner, "token-a");
  ASSERT_EQ(Next(owner), SLICER_ARB_WELCOME);
  std::string go = dir_ + "/go";
  Subprocess child = Spawn({"token=token-a", "seconds=0.3", "wait_file=" + go}, dir_ + "/child");
  ::mkdir((proc + "/" + std::to_string(child.pid())).c_str(), 0755);
  WriteFile(proc + "/" + std::to_string(child.pid()) + "/cgroup", "0::/kubepods/pod-b/ctr-b\n");
  WriteFile(go, "");
  ASSERT_TRUE(child.Wait(10s).has_value());
  std::string out = ReadFile(dir_ + "/child");
  EXPECT_EQ(Field(out, "connects"), 0) << out;
  EXPECT_NE(out.find("belongs to another cgroup"), std::string::npos) << out;
  EXPECT_GT(Field(out, "work_ns"), 0) << "refused clients still run (fail-open)";
  // A process without a readable cgroup is not served either.
  std::string m = server_->RenderMetrics();
  EXPECT_NE(m.find("slicer_arbiter_protocol_errors_total{reason=\"identity\"}"), std::string::npos);
  EXPECT_EQ(m.find("slicer_arbiter_protocol_errors_total{reason=\"identity\"} 0"),
            std::string::npos);
  ::close(owner);
}

TEST_F(DaemonTest, HostileClientsDoNotDisturbTheOthersShares) {
  StartServer();
  std::string go = dir_ + "/go";
  Subprocess a = Spawn({"weight=3", "token=a", "seconds=2.5", "wait_file=" + go}, dir_ + "/a");
  Subprocess b = Spawn({"weight=1", "token=b", "seconds=2.5", "wait_file=" + go}, dir_ + "/b");
  WriteFile(go, "");
  std::atomic<bool> stop{false};
  std::thread hostile([&] {
    int i = 0;
    while (!stop) {
      int fd = Raw();
      switch (i++ % 4) {
        case 0: {
          const char junk[] = "\x01\x02garbage";
          ::send(fd, junk, sizeof junk, MSG_NOSIGNAL);
          break;
        }
        case 1:
          SendHello(fd, "a");  // another process's token, same cgroup: allowed, but weightless
          break;
        case 2: {
          SendHello(fd, "h");
          slicer_arb_usage_msg r{};
          slicer_arb_init(&r.h, SLICER_ARB_REPORT, 3);
          for (int k = 0; k < 3000; ++k) {
            if (::send(fd, &r, sizeof r, MSG_NOSIGNAL) < 0) break;
          }
          break;
        }
        case 3: {
          std::vector<char> big(5000, 0);
          ::send(fd, big.data(), big.size(), MSG_NOSIGNAL);
          break;
        }
      }
      std::this_thread::sleep_for(2ms);
      ::close(fd);
    }
  });
  ASSERT_TRUE(a.Wait(20s).has_value());
  ASSERT_TRUE(b.Wait(20s).has_value());
  stop = true;
  hostile.join();
  double wa = Field(ReadFile(dir_ + "/a"), "work_ns"), wb = Field(ReadFile(dir_ + "/b"), "work_ns");
  ASSERT_GT(wb, 0);
  EXPECT_NEAR(wa / wb, 3.0, 0.5);
}

TEST_F(DaemonTest, MetricsTextFormatLineByLine) {
  StartServer();
  {
    Worker w(socket_, "metered");
    slicer_arb_memory(w.client(), 0, 123456, 1 << 30);
    ASSERT_TRUE(WaitFor([&] { return w.stats().connected; }, 2s));
    w.Start();
    std::this_thread::sleep_for(300ms);
    std::string text = server_->RenderMetrics();
    std::regex help(R"(^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) .+$)");
    std::regex type(R"(^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge)$)");
    std::regex sample(
        R"(^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? -?[0-9.eE+-]+$)");
    std::istringstream in(text);
    std::string line, family;
    std::set<std::string> typed;
    int samples = 0;
    while (std::getline(in, line)) {
      std::smatch m;
      if (std::regex_match(line, m, help)) {
        family = m[1];
      } else if (std::regex_match(line, m, type)) {
        EXPECT_EQ(m[1], family) << "TYPE follows its HELP: " << line;
        typed.insert(m[1]);
      } else {
        ASSERT_TRUE(std::regex_match(line, m, sample)) << "bad line: " << line;
        EXPECT_TRUE(typed.count(m[1])) << "sample before its TYPE: " << line;
        EXPECT_EQ(m[1], family) << "samples grouped by family: " << line;
        ++samples;
      }
    }
    EXPECT_GT(samples, 10);
    std::string labels =
        std::string("{namespace=\"\",pod=\"\",container=\"metered\",gpu=\"") + kGpu + "\"}";
    EXPECT_NE(text.find("slicer_arbiter_memory_used_bytes" + labels + " 123456\n"),
              std::string::npos)
        << text;
    EXPECT_NE(text.find("slicer_arbiter_memory_cap_bytes" + labels + " 1073741824\n"),
              std::string::npos);
    EXPECT_NE(text.find("slicer_arbiter_clients" + labels + " 1\n"), std::string::npos);
    EXPECT_NE(text.find("slicer_arbiter_configured_share" + labels + " 1\n"), std::string::npos);
    EXPECT_NE(text.find("slicer_arbiter_up 1\n"), std::string::npos);
    size_t p = text.find("slicer_arbiter_gpu_seconds_total" + labels + " ");
    ASSERT_NE(p, std::string::npos);
    double used = std::atof(text.c_str() + p + std::strlen("slicer_arbiter_gpu_seconds_total") +
                            labels.size() + 1);
    EXPECT_GT(used, 0.05);
    EXPECT_LT(used, 0.5);
    w.Stop();
  }
  // Gone: the live gauges go, the counters stay.
  ASSERT_TRUE(WaitFor([&] { return server_->ConnectedClients() == 0; }, 2s));
  std::string text = server_->RenderMetrics();
  EXPECT_EQ(text.find("slicer_arbiter_memory_used_bytes{"), std::string::npos);
  EXPECT_NE(
      text.find("slicer_arbiter_gpu_seconds_total{namespace=\"\",pod=\"\",container=\"metered\""),
      std::string::npos);
}

TEST_F(DaemonTest, SecondArbiterOnALiveSocketRefuses) {
  StartServer();
  Server second(options_, RealClock(), nullptr);
  absl::Status s = second.Start();
  EXPECT_EQ(s.code(), absl::StatusCode::kAlreadyExists) << s;
}

}  // namespace
}  // namespace slicer::arbiter
