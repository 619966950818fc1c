// Hostile clients for the arbiter's soak (bench/arbiter/soak.sh, issue 16): threads that connect
// to the arbiter's socket over and over and send what an honest client never would: random
// bytes, truncated and oversized packets, a wrong version, messages out of order, claims of
// replicas and GPUs they do not hold, floods, and connections dropped mid-message.
//   soak SOCKET SECONDS THREADS
// Prints one line: attempts per kind, connections the arbiter closed, ERRORs it sent by code, and
// connects it refused. Exit 1 when the socket stopped accepting connections for longer than 2 s
// (the arbiter died or hung), else 0.
#include <sys/socket.h>
#include <sys/un.h>
#include <poll.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "src/common/arbiter_protocol.h"

namespace {

enum Kind {
  kRandomBytes,
  kBadSize,
  kTruncatedHello,
  kOversize,
  kBadVersion,
  kRequestBeforeHello,
  kClaimOthersReplicas,
  kBadAttach,
  kFlood,
  kDropMidStream,
  kReleaseNotHeld,
  kKinds
};
const char* const kNames[kKinds] = {"random",  "badsize", "truncated", "oversize",
                                    "version", "order",   "claim",     "attach",
                                    "flood",   "drop",    "release"};

std::atomic<uint64_t> g_attempts[kKinds], g_closed, g_errors[16], g_refused;
std::atomic<int64_t> g_last_accept_ns;
std::atomic<bool> g_stop{false};

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

int Connect(const char* path) {
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
  if (fd < 0 || connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    if (fd >= 0) close(fd);
    g_refused++;
    return -1;
  }
  g_last_accept_ns = NowNs();
  return fd;
}

template <typename M>
M Msg(uint32_t type) {
  M m;
  std::memset(&m, 0, sizeof m);
  slicer_arb_init(&m.h, type, 1);
  return m;
}

slicer_arb_hello_msg Hello(const char* container, const char* replicas) {
  auto m = Msg<slicer_arb_hello_msg>(SLICER_ARB_HELLO);
  m.pid = getpid();
  m.weight_milli = 1000000;  // asks for weight 1000: the arbiter clamps it
  m.priority = SLICER_ARB_PRIO_HIGH;
  std::snprintf(m.container, sizeof m.container, "%s", container);
  std::snprintf(m.replicas, sizeof m.replicas, "%s", replicas);
  return m;
}

// Reads what the arbiter sends for up to `ms`: counts ERRORs by code and whether it closed.
void Drain(int fd, int ms) {
  char buf[2048];
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, ms) <= 0) return;
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) {
      g_closed++;
      return;
    }
    if (static_cast<size_t>(n) >= sizeof(slicer_arb_err_msg)) {
      slicer_arb_err_msg e;
      std::memcpy(&e, buf, sizeof e);
      if (e.h.type == SLICER_ARB_ERROR && e.code < 16) g_errors[e.code]++;
    }
  }
}

void Send(int fd, const void* p, size_t n) { (void)send(fd, p, n, MSG_NOSIGNAL); }
template <typename M>
void SendMsg(int fd, const M& m) {
  Send(fd, &m, sizeof m);
}

void Attack(const char* path, Kind k, std::mt19937_64& rng) {
  int fd = Connect(path);
  if (fd < 0) return;
  g_attempts[k]++;
  switch (k) {
    case kRandomBytes: {
      std::vector<unsigned char> b(rng() % 1500);
      for (auto& c : b) c = static_cast<unsigned char>(rng());
      Send(fd, b.data(), b.size());
      break;
    }
    case kBadSize: {
      auto m = Hello("", "");
      m.h.size = static_cast<uint32_t>(rng());
      Send(fd, &m, sizeof m);
      break;
    }
    case kTruncatedHello: {
      auto m = Hello("", "");
      Send(fd, &m, rng() % sizeof m);
      break;
    }
    case kOversize: {
      std::vector<char> b(SLICER_ARB_MAX_MSG * 4, 'x');
      auto m = Hello("", "");
      std::memcpy(b.data(), &m, sizeof m);
      Send(fd, b.data(), b.size());
      break;
    }
    case kBadVersion: {
      auto m = Hello("", "");
      m.h.version = 99;
      Send(fd, &m, sizeof m);
      break;
    }
    case kRequestBeforeHello: {
      SendMsg(fd, Msg<slicer_arb_lease_msg>(SLICER_ARB_REQUEST));
      break;
    }
    case kClaimOthersReplicas: {
      // A container token and replicas that are not this process's (the honest clients' GPU).
      SendMsg(fd, Hello("honest-a", "GPU-11111111-1111-1111-1111-111111111111::0,::1,::2,::3"));
      SendMsg(fd, Msg<slicer_arb_lease_msg>(SLICER_ARB_REQUEST));
      break;
    }
    case kBadAttach: {
      SendMsg(fd, Hello("", ""));
      auto a = Msg<slicer_arb_attach_msg>(SLICER_ARB_ATTACH);
      a.gpu = static_cast<uint32_t>(rng() % 64);  // slots past 15 are invalid
      std::memset(a.uuid, 'Z', sizeof a.uuid);     // no NUL, not a UUID
      Send(fd, &a, sizeof a);
      break;
    }
    case kFlood: {
      SendMsg(fd, Hello("", ""));
      auto r = Msg<slicer_arb_usage_msg>(SLICER_ARB_REPORT);
      for (int i = 0; i < 5000 && !g_stop; ++i) Send(fd, &r, sizeof r);
      break;
    }
    case kDropMidStream: {
      SendMsg(fd, Hello("", ""));
      auto a = Msg<slicer_arb_attach_msg>(SLICER_ARB_ATTACH);
      std::snprintf(a.uuid, sizeof a.uuid, "GPU-11111111-1111-1111-1111-111111111111");
      Send(fd, &a, sizeof a);
      SendMsg(fd, Msg<slicer_arb_lease_msg>(SLICER_ARB_REQUEST));
      close(fd);  // gone while asking for (or holding) the lease
      return;
    }
    case kReleaseNotHeld: {
      SendMsg(fd, Hello("", ""));
      auto u = Msg<slicer_arb_usage_msg>(SLICER_ARB_RELEASE);
      u.busy_total_ns = ~0ull;  // and claims an absurd busy time
      Send(fd, &u, sizeof u);
      break;
    }
    case kKinds:
      break;
  }
  Drain(fd, 20);
  close(fd);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: soak SOCKET SECONDS THREADS\n");
    return 2;
  }
  const char* path = argv[1];
  double seconds = std::atof(argv[2]);
  int threads = std::atoi(argv[3]);
  g_last_accept_ns = NowNs();
  std::atomic<bool> hung{false};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([path, t] {
      std::mt19937_64 rng(0x5eed + t);
      while (!g_stop) Attack(path, static_cast<Kind>(rng() % kKinds), rng);
    });
  }
  int64_t end = NowNs() + static_cast<int64_t>(seconds * 1e9);
  while (NowNs() < end) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (NowNs() - g_last_accept_ns > 2000000000) hung = true;
  }
  g_stop = true;
  for (auto& th : pool) th.join();
  std::string line;
  uint64_t total = 0;
  for (int k = 0; k < kKinds; ++k) {
    line += std::string(" ") + kNames[k] + "=" + std::to_string(g_attempts[k].load());
    total += g_attempts[k];
  }
  line += " connections=" + std::to_string(total) + " closed_by_arbiter=" +
          std::to_string(g_closed.load()) + " refused=" + std::to_string(g_refused.load());
  for (int c = 1; c < 8; ++c) line += " error" + std::to_string(c) + "=" + std::to_string(g_errors[c].load());
  std::printf("soak:%s hung=%d\n", line.c_str(), hung.load() ? 1 : 0);
  return hung ? 1 : 0;
}
