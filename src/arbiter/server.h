// The node arbiter's daemon core: the unix socket its clients (the shim in every GPU process)
// connect to, one GpuScheduler per GPU, the bindings that keep one client from acting as
// another, and the numbers behind /metrics.
//
// Identity: at accept, the peer's pid/uid come from SO_PEERCRED and its cgroup from
// <proc_root>/<pid>/cgroup; the cgroup is the client's accounting group (its container). A
// container token or replica ID, once claimed by a live client of one cgroup, cannot be claimed
// from another (ERROR identity + close). With an Attributor, claimed replica IDs must belong to
// one pod container according to the kubelet (and to the pod whose UID the cgroup names, when
// both are known); that container's annotations may override weight and priority within the
// configured limits. Claimed weight/priority (standalone `slicer run`) are honoured only when
// `trust_claims` is set.
//
// Observe-only clients (HELLO flag SLICER_ARB_HELLO_OBSERVE: MPS clients) are identified and
// attributed the same way and appear in the metrics, but are never added to a scheduler: their
// GPU time is what they report, clamped to the wall time between reports.
//
// Faults: a connection's EOF/HUP removes it from every scheduler at once (its lease goes to the
// next client in the same loop turn). Malformed, oversize, out-of-order messages and floods are
// answered with ERROR and the connection is closed; others are not affected.
//
// Threads: Run() is the event loop (one thread); Stop() and RenderMetrics() may be called from
// any thread.
#ifndef SLICER_ARBITER_SERVER_H_
#define SLICER_ARBITER_SERVER_H_

#include <sys/types.h>

#include <array>
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "absl/status/status.h"
#include "src/arbiter/attribution.h"
#include "src/arbiter/config.h"
#include "src/arbiter/identity.h"
#include "src/arbiter/scheduler.h"
#include "src/common/arbiter_protocol.h"
#include "src/common/clock.h"

namespace slicer::arbiter {

struct ServerOptions {
  std::string socket_path = SLICER_ARB_DEFAULT_SOCKET;
  std::string proc_root = "/proc";
  ArbiterConfig config;
  bool trust_claims = true;
  int max_clients = 1024;
  int max_clients_per_cgroup = 256;
  double max_msgs_per_sec = 2000;  // per connection, token bucket
  double msg_burst = 400;
  std::chrono::milliseconds report_interval{1000};
  std::chrono::milliseconds hello_timeout{5000};
  mode_t socket_mode = 0666;  // containers run as any uid
  std::string version = "dev";
};

class Server {
 public:
  // `attributor` may be null (standalone); it must outlive the server.
  Server(ServerOptions options, const Clock& clock, Attributor* attributor);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Creates the socket (replacing a stale one left by a previous arbiter). Fails when the path
  // is too long, its directory cannot be created, or another arbiter answers on it.
  absl::Status Start();
  // Serves until Stop(). Start() must have succeeded.
  void Run();
  void Stop();

  // Prometheus text exposition (version 0.0.4); server_metrics.cc.
  std::string RenderMetrics() const;
  size_t ConnectedClients() const;

 private:
  struct GpuUse {
    bool attached = false;
    std::string uuid;
    uint64_t last_busy = 0;
    uint64_t mem_used = 0, mem_cap = 0;
    // Observe-only clients (not in the scheduler): busy time reported, clamped to wall time.
    Clock::Duration observed{0};
    Clock::TimePoint observed_at{};
  };
  struct Session {
    int fd = -1;
    uint64_t id = 0;
    PeerIdentity peer;
    Clock::TimePoint connected_at{};
    bool hello = false;
    bool observe = false;  // SLICER_ARB_HELLO_OBSERVE: metrics only, never scheduled
    std::string token;
    PodRef pod;
    bool attributed = false;
    std::vector<std::string> replicas;
    std::optional<double> claimed_weight;
    Priority priority = Priority::kNormal;
    std::optional<double> weight_override;
    std::array<GpuUse, SLICER_ARB_MAX_GPUS> gpus;
    double tokens = 0;
    Clock::TimePoint refill_at{};
    bool closing = false;
  };
  struct Gpu {
    std::unique_ptr<GpuScheduler> sched;
    std::map<uint64_t, int> slot;  // session id -> client's slot
  };
  using SeriesKey = std::tuple<std::string, std::string, std::string, std::string>;
  struct Retired {
    double gpu_seconds = 0, held_seconds = 0;
  };
  struct Binding {
    std::string group;
    int refs = 0;
  };

  void Accept();
  void OnReadable(Session& s);
  void HandleMessage(Session& s, const char* buf, ssize_t n);
  void HandleHello(Session& s, const slicer_arb_hello_msg& m);
  void HandleAttach(Session& s, const slicer_arb_attach_msg& m);
  void ChargeUsage(Session& s, int slot, uint64_t busy_total);
  void Fail(Session& s, uint32_t code, const std::string& text);
  void Send(Session& s, void* msg, uint32_t type);
  void Close(Session& s, const char* why);
  void PollSchedulers();
  void Rebalance(const std::string& group, const std::string& token, const std::string& uuid);
  double BaseWeight(const Session& s, const std::string& uuid) const;
  SeriesKey SeriesOf(const Session& s, const std::string& uuid) const;
  bool Bind(std::map<std::string, Binding>& m, const std::string& key, const std::string& group);
  void Unbind(std::map<std::string, Binding>& m, const std::string& key);
  int TimeoutMs() const;

  const ServerOptions options_;
  const Clock& clock_;
  Attributor* const attributor_;
  int listen_fd_ = -1;
  int epoll_fd_ = -1;
  int stop_fd_ = -1;

  mutable std::mutex mu_;  // everything below; held by the loop while it handles events
  std::map<int, std::unique_ptr<Session>> sessions_;  // by fd
  std::map<uint64_t, int> fd_of_;                     // session id -> fd
  std::map<std::string, Gpu> gpus_;                   // by UUID
  std::map<std::string, Binding> token_owner_, replica_owner_, container_owner_;
  std::map<SeriesKey, Retired> retired_;
  std::map<std::string, uint64_t> errors_;  // by reason
  uint64_t next_id_ = 1;
  uint64_t forced_handovers_ = 0;
  uint64_t accepted_ = 0;
};

}  // namespace slicer::arbiter

#endif  // SLICER_ARBITER_SERVER_H_
