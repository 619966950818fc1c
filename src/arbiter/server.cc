#include "src/arbiter/server.h"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string_view>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "src/common/log.h"

namespace slicer::arbiter {
namespace {

constexpr int kMaxReplicasClaimed = SLICER_ARB_MAX_REPLICAS;
constexpr size_t kMaxGpus = 256;
constexpr int kMaxMessagesPerWakeup = 64;

const char* ErrorName(uint32_t code) {
  switch (code) {
    case SLICER_ARB_E_MALFORMED:
      return "malformed";
    case SLICER_ARB_E_VERSION:
      return "version";
    case SLICER_ARB_E_IDENTITY:
      return "identity";
    case SLICER_ARB_E_STATE:
      return "state";
    case SLICER_ARB_E_FLOOD:
      return "flood";
    case SLICER_ARB_E_LIMIT:
      return "limit";
    case SLICER_ARB_E_OVERSIZE:
      return "oversize";
  }
  return "other";
}

bool ValidUuid(const char* s) {
  size_t n = strnlen(s, SLICER_ARB_UUID_LEN);
  if (n < 5 || n >= SLICER_ARB_UUID_LEN) return false;
  if (std::strncmp(s, "GPU-", 4) != 0 && std::strncmp(s, "MIG-", 4) != 0) return false;
  for (size_t i = 4; i < n; ++i) {
    char c = s[i];
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '/')) return false;
  }
  return true;
}

bool ValidToken(const std::string& s) {
  for (char c : s) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.')) {
      return false;
    }
  }
  return true;
}

std::string CgroupLeaf(const std::string& cgroup) {
  size_t slash = cgroup.rfind('/');
  std::string leaf = slash == std::string::npos ? cgroup : cgroup.substr(slash + 1);
  return leaf.empty() ? "root" : leaf;
}

}  // namespace

Server::Server(ServerOptions options, const Clock& clock, Attributor* attributor)
    : options_(std::move(options)), clock_(clock), attributor_(attributor) {}

Server::~Server() {
  for (auto& [fd, s] : sessions_) ::close(fd);
  if (listen_fd_ >= 0) {
    ::close(listen_fd_);
    ::unlink(options_.socket_path.c_str());
  }
  if (epoll_fd_ >= 0) ::close(epoll_fd_);
  if (stop_fd_ >= 0) ::close(stop_fd_);
}

absl::Status Server::Start() {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (options_.socket_path.empty() || options_.socket_path.size() >= sizeof addr.sun_path) {
    return absl::InvalidArgumentError(absl::StrCat("socket path \"", options_.socket_path,
                                                   "\" is empty or longer than ",
                                                   sizeof addr.sun_path - 1, " bytes"));
  }
  std::memcpy(addr.sun_path, options_.socket_path.c_str(), options_.socket_path.size() + 1);
  size_t slash = options_.socket_path.rfind('/');
  if (slash != std::string::npos && slash > 0) {
    std::string dir = options_.socket_path.substr(0, slash);
    for (size_t i = 1; i <= dir.size(); ++i) {
      if (i == dir.size() || dir[i] == '/') ::mkdir(dir.substr(0, i).c_str(), 0755);
    }
  }
  // A socket file that nobody answers on is a previous arbiter's: replace it.
  int probe = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (probe >= 0) {
    bool alive = ::connect(probe, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    ::close(probe);
    if (alive) {
      return absl::AlreadyExistsError(
          absl::StrCat("another arbiter is serving ", options_.socket_path));
    }
  }
  ::unlink(options_.socket_path.c_str());
  listen_fd_ = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (listen_fd_ < 0) return absl::InternalError(absl::StrCat("socket: ", std::strerror(errno)));
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    return absl::UnavailableError(
        absl::StrCat("bind ", options_.socket_path, ": ", std::strerror(errno)));
  }
  ::chmod(options_.socket_path.c_str(), options_.socket_mode);
  if (::listen(listen_fd_, 128) != 0) {
    return absl::InternalError(absl::StrCat("listen: ", std::strerror(errno)));
  }
  epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
  stop_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (epoll_fd_ < 0 || stop_fd_ < 0) {
    return absl::InternalError(absl::StrCat("epoll/eventfd: ", std::strerror(errno)));
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = listen_fd_;
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, listen_fd_, &ev);
  ev.data.fd = stop_fd_;
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, stop_fd_, &ev);
  const SchedulerConfig& sched = options_.config.scheduler;
  SLOG(kInfo, "arbiter_listening")
      .Kv("socket", options_.socket_path)
      .Kv("policy", PolicyName(options_.config.scheduler.policy))
      .Kv("handover", HandoverName(options_.config.scheduler.handover))
      .Kv("quantum_us", static_cast<int64_t>(sched.quantum.count() / 1000))
      .Kv("batch_quantum_us",
          static_cast<int64_t>(std::max(sched.batch_quantum, sched.quantum).count() / 1000))
      .Kv("max_queued_us", static_cast<int64_t>(MaxQueued(options_.config).count() / 1000))
      .Kv("fail_closed", options_.config.fail_closed)
      .Kv("trust_claims", options_.trust_claims)
      .Kv("attribution", attributor_ != nullptr);
  return absl::OkStatus();
}

void Server::Stop() {
  uint64_t one = 1;
  ssize_t w = ::write(stop_fd_, &one, sizeof one);
  (void)w;
}

int Server::TimeoutMs() const {
  std::optional<Clock::TimePoint> next;
  for (const auto& [uuid, g] : gpus_) {
    auto d = g.sched->NextDeadline();
    if (d && (!next || *d < *next)) next = d;
  }
  int ms = 1000;  // hello timeouts and idle bookkeeping
  if (next) {
    auto left = *next - clock_.Now();
    int64_t l = std::chrono::ceil<std::chrono::milliseconds>(left).count();
    ms = static_cast<int>(std::clamp<int64_t>(l, 0, ms));
  }
  return ms;
}

void Server::Run() {
  epoll_event events[64];
  // Diagnostic (bench/arbiter): never sleep, to measure what waking up costs a hand-over.
  const char* spin_env = std::getenv("SLICER_ARBITER_SPIN");
  const bool spin = spin_env != nullptr && std::string_view(spin_env) == "1";
  for (;;) {
    int timeout;
    {
      std::lock_guard<std::mutex> lock(mu_);
      timeout = spin ? 0 : TimeoutMs();
    }
    int n = ::epoll_wait(epoll_fd_, events, 64, timeout);
    if (n < 0 && errno != EINTR) {
      SLOG(kError, "epoll_failed").Kv("error", std::strerror(errno));
      return;
    }
    std::lock_guard<std::mutex> lock(mu_);
    for (int i = 0; i < n; ++i) {
      int fd = events[i].data.fd;
      if (fd == stop_fd_) return;
      if (fd == listen_fd_) {
        Accept();
        continue;
      }
      auto it = sessions_.find(fd);
      if (it != sessions_.end()) OnReadable(*it->second);
    }
    Clock::TimePoint now = clock_.Now();
    std::vector<Session*> stale;
    for (auto& [fd, s] : sessions_) {
      if (!s->hello && now - s->connected_at > options_.hello_timeout) stale.push_back(s.get());
    }
    for (Session* s : stale) Fail(*s, SLICER_ARB_E_STATE, "no HELLO in time");
    PollSchedulers();
    // Sessions that failed while sending are closed here, after every scheduler saw the events.
    std::vector<Session*> closing;
    for (auto& [fd, s] : sessions_) {
      if (s->closing) closing.push_back(s.get());
    }
    for (Session* s : closing) Close(*s, "send_failed");
    if (!closing.empty()) PollSchedulers();
  }
}

void Server::Accept() {
  for (;;) {
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) return;
    auto s = std::make_unique<Session>();
    s->fd = fd;
    s->id = next_id_++;
    s->connected_at = clock_.Now();
    s->tokens = options_.msg_burst;
    s->refill_at = s->connected_at;
    ++accepted_;
    sessions_[fd] = std::move(s);
    Session& ref = *sessions_[fd];
    fd_of_[ref.id] = fd;
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLRDHUP;
    ev.data.fd = fd;
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev);
    auto peer = PeerCredentials(fd);
    absl::StatusOr<std::string> cgroup =
        peer.ok() ? ReadCgroup(options_.proc_root, peer->pid) : peer.status();
    if (!cgroup.ok()) {
      Fail(ref, SLICER_ARB_E_IDENTITY,
           absl::StrCat("cannot identify the client: ", cgroup.status().message()));
      continue;
    }
    ref.peer = *peer;
    ref.peer.cgroup = *cgroup;
    if (static_cast<int>(sessions_.size()) > options_.max_clients) {
      Fail(ref, SLICER_ARB_E_LIMIT, "too many clients on this node");
      continue;
    }
    int same = 0;
    for (const auto& [f, o] : sessions_) same += o->peer.cgroup == ref.peer.cgroup;
    if (same > options_.max_clients_per_cgroup) {
      Fail(ref, SLICER_ARB_E_LIMIT,
           absl::StrCat("too many clients in cgroup ", ref.peer.cgroup, " (at most ",
                        options_.max_clients_per_cgroup, ")"));
    }
  }
}

void Server::OnReadable(Session& s) {
  const int fd = s.fd;
  for (int i = 0; i < kMaxMessagesPerWakeup; ++i) {
    char buf[SLICER_ARB_MAX_MSG + 1];
    ssize_t n = ::recv(s.fd, buf, sizeof buf, MSG_DONTWAIT | MSG_TRUNC);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n <= 0) {
      Close(s, n == 0 ? "eof" : "recv_error");
      return;
    }
    // Token bucket: floods are cut off before they cost the loop more.
    Clock::TimePoint now = clock_.Now();
    double dt = std::chrono::duration<double>(now - s.refill_at).count();
    s.refill_at = now;
    s.tokens = std::min(options_.msg_burst, s.tokens + dt * options_.max_msgs_per_sec) - 1;
    if (s.tokens < 0) {
      Fail(s, SLICER_ARB_E_FLOOD,
           absl::StrCat("more than ", options_.max_msgs_per_sec, " messages per second"));
      return;
    }
    HandleMessage(s, buf, n);
    // The session may be gone (closed by the message): look it up again before touching it.
    if (sessions_.find(fd) == sessions_.end() || s.closing) return;
  }
}

void Server::HandleMessage(Session& s, const char* buf, ssize_t n) {
  uint32_t err = slicer_arb_check(buf, n);
  if (err != 0) {
    Fail(s, err,
         err == SLICER_ARB_E_OVERSIZE
             ? absl::StrCat("message of ", n, " bytes is over the limit of ", SLICER_ARB_MAX_MSG)
         : err == SLICER_ARB_E_VERSION
             ? absl::StrCat("protocol version not supported (this arbiter speaks ",
                            SLICER_ARB_VERSION, ")")
             : std::string("malformed message"));
    return;
  }
  slicer_arb_hdr h;
  std::memcpy(&h, buf, sizeof h);
  if (h.type == SLICER_ARB_HELLO) {
    if (s.hello) {
      Fail(s, SLICER_ARB_E_STATE, "second HELLO");
      return;
    }
    slicer_arb_hello_msg m;
    std::memcpy(&m, buf, sizeof m);
    HandleHello(s, m);
    return;
  }
  if (!s.hello) {
    Fail(s, SLICER_ARB_E_STATE, "HELLO must come first");
    return;
  }
  if (s.observe && (h.type == SLICER_ARB_REQUEST || h.type == SLICER_ARB_RELEASE ||
                    h.type == SLICER_ARB_LOAD)) {
    Fail(s, SLICER_ARB_E_STATE,
         absl::StrCat(h.type == SLICER_ARB_REQUEST   ? "REQUEST"
                      : h.type == SLICER_ARB_RELEASE ? "RELEASE"
                                                     : "LOAD",
                      " from an observe-only client (it is never scheduled)"));
    return;
  }
  switch (h.type) {
    case SLICER_ARB_ATTACH: {
      slicer_arb_attach_msg m;
      std::memcpy(&m, buf, sizeof m);
      HandleAttach(s, m);
      return;
    }
    case SLICER_ARB_REQUEST: {
      slicer_arb_lease_msg m;
      std::memcpy(&m, buf, sizeof m);
      if (m.gpu >= SLICER_ARB_MAX_GPUS || !s.gpus[m.gpu].attached) {
        Fail(s, SLICER_ARB_E_STATE, "REQUEST for a GPU slot that was not attached");
        return;
      }
      gpus_[s.gpus[m.gpu].uuid].sched->Request(s.id);
      return;
    }
    case SLICER_ARB_RELEASE:
    case SLICER_ARB_REPORT: {
      slicer_arb_usage_msg m;
      std::memcpy(&m, buf, sizeof m);
      if (m.gpu >= SLICER_ARB_MAX_GPUS || !s.gpus[m.gpu].attached) {
        Fail(s, SLICER_ARB_E_STATE, "usage for a GPU slot that was not attached");
        return;
      }
      GpuUse& use = s.gpus[m.gpu];
      use.mem_used = m.mem_used;
      use.mem_cap = m.mem_cap;
      const uint64_t delta =
          m.busy_total_ns > use.last_busy ? m.busy_total_ns - use.last_busy : 0;
      use.last_busy = std::max(use.last_busy, m.busy_total_ns);
      const Clock::Duration busy(static_cast<int64_t>(std::min<uint64_t>(delta, INT64_MAX)));
      if (s.observe) {  // REPORT only (RELEASE was refused above): clamped as Charge clamps
        const Clock::TimePoint now = clock_.Now();
        use.observed += std::min<Clock::Duration>(busy, now - use.observed_at);
        use.observed_at = now;
        return;
      }
      GpuScheduler& sched = *gpus_[use.uuid].sched;
      if (h.type == SLICER_ARB_RELEASE) {
        sched.Release(s.id, busy, m.more_work != 0);
      } else {
        sched.Charge(s.id, busy);
      }
      return;
    }
    case SLICER_ARB_LOAD: {
      slicer_arb_load_msg m;
      std::memcpy(&m, buf, sizeof m);
      if (m.gpu >= SLICER_ARB_MAX_GPUS || !s.gpus[m.gpu].attached) {
        Fail(s, SLICER_ARB_E_STATE, "LOAD for a GPU slot that was not attached");
        return;
      }
      auto ns = [](uint64_t v) {
        return Clock::Duration(static_cast<int64_t>(std::min<uint64_t>(v, INT64_MAX)));
      };
      GpuScheduler& sched = *gpus_[s.gpus[m.gpu].uuid].sched;
      // Not Stats(), which sums every client's recent use: LOAD comes 20 times a second a client.
      bool was = sched.Bound(s.id);
      GpuScheduler::LoadWindow after =
          sched.Load(s.id, ns(m.busy_total_ns), ns(m.blocked_total_ns));
      if (!after.closed) return;
      SLOG(kDebug, "client_window")
          .Kv("client", s.id)
          .Kv("gpu", s.gpus[m.gpu].uuid)
          .Kv("blocked", after.blocked_fraction)
          .Kv("bound", after.bound ? "true" : "false");
      if (after.bound != was) {
        SLOG(kInfo, "client_load")
            .Kv("client", s.id)
            .Kv("gpu", s.gpus[m.gpu].uuid)
            .Kv("blocked", after.blocked_fraction)
            .Kv("bound", was ? "false" : "true")
            .Kv("effect", was ? "submits beside the others" : "leased among bound clients");
      }
      return;
    }
    case SLICER_ARB_BYE:
      Close(s, "bye");
      return;
    default:
      Fail(s, SLICER_ARB_E_STATE, absl::StrCat("message type ", h.type, " is not for the arbiter"));
  }
}

bool Server::Bind(std::map<std::string, Binding>& m, const std::string& key,
                  const std::string& group) {
  auto it = m.find(key);
  if (it != m.end() && it->second.refs > 0 && it->second.group != group) return false;
  Binding& b = m[key];
  if (b.refs == 0) b.group = group;
  ++b.refs;
  return true;
}

void Server::Unbind(std::map<std::string, Binding>& m, const std::string& key) {
  auto it = m.find(key);
  if (it == m.end()) return;
  if (--it->second.refs <= 0) m.erase(it);
}

void Server::HandleHello(Session& s, const slicer_arb_hello_msg& m) {
  if (!slicer_arb_str_ok(m.container, sizeof m.container) ||
      !slicer_arb_str_ok(m.replicas, sizeof m.replicas)) {
    Fail(s, SLICER_ARB_E_MALFORMED, "unterminated string in HELLO");
    return;
  }
  std::string token = m.container;
  if (!ValidToken(token)) {
    Fail(s, SLICER_ARB_E_MALFORMED, "container token has characters other than [A-Za-z0-9._-]");
    return;
  }
  std::vector<std::string> replicas;
  std::string gpu;  // of the entry before: "::<n>" continues it
  for (absl::string_view r : absl::StrSplit(m.replicas, ',', absl::SkipWhitespace())) {
    std::string id(r);
    if (absl::StartsWith(id, "::") && !gpu.empty()) id = gpu + id;
    size_t sep = id.find("::");
    if (sep == std::string::npos || !ValidUuid(id.substr(0, sep).c_str())) {
      Fail(s, SLICER_ARB_E_MALFORMED,
           absl::StrCat("replica ID \"", id.substr(0, 80),
                        "\" is not <GPU-UUID>::<n> (nor ::<n> after one)"));
      return;
    }
    gpu = id.substr(0, sep);
    replicas.push_back(id);
  }
  std::sort(replicas.begin(), replicas.end());
  replicas.erase(std::unique(replicas.begin(), replicas.end()), replicas.end());
  if (static_cast<int>(replicas.size()) > kMaxReplicasClaimed) {
    Fail(s, SLICER_ARB_E_LIMIT, "too many replica IDs");
    return;
  }
  const std::string& group = s.peer.cgroup;
  // Attribution: every claimed replica must be the same pod container's, per the kubelet.
  std::optional<PodRef> pod;
  if (attributor_ != nullptr) {
    for (const std::string& id : replicas) {
      std::optional<PodRef> owner = attributor_->OwnerOf(id);
      if (!owner) {
        Fail(s, SLICER_ARB_E_IDENTITY,
             absl::StrCat("replica ", id, " is not allocated to any container (kubelet)"));
        return;
      }
      if (pod && !(*pod == *owner)) {
        Fail(s, SLICER_ARB_E_IDENTITY,
             absl::StrCat("replicas claimed belong to different containers (", pod->ns, "/",
                          pod->pod, "/", pod->container, " and ", owner->ns, "/", owner->pod, "/",
                          owner->container, ")"));
        return;
      }
      pod = owner;
    }
    std::string cg_uid = PodUidFromCgroup(group);
    if (pod && !pod->uid.empty() && !cg_uid.empty() && pod->uid != cg_uid) {
      Fail(s, SLICER_ARB_E_IDENTITY,
           absl::StrCat("replicas belong to pod ", pod->ns, "/", pod->pod,
                        " but the client runs in pod UID ", cg_uid));
      return;
    }
  }
  // Bindings: nothing one live cgroup claimed can be claimed from another.
  std::vector<std::pair<std::map<std::string, Binding>*, std::string>> bound;
  auto bind = [&](std::map<std::string, Binding>& m, const std::string& key) {
    if (!Bind(m, key, group)) return false;
    bound.emplace_back(&m, key);
    return true;
  };
  auto undo = [&] {
    for (auto& [m, key] : bound) Unbind(*m, key);
  };
  if (!token.empty() && !bind(token_owner_, token)) {
    undo();
    Fail(s, SLICER_ARB_E_IDENTITY,
         absl::StrCat("container token ", token, " belongs to another cgroup"));
    return;
  }
  for (const std::string& id : replicas) {
    if (!bind(replica_owner_, id)) {
      undo();
      Fail(s, SLICER_ARB_E_IDENTITY, absl::StrCat("replica ", id, " belongs to another cgroup"));
      return;
    }
  }
  if (pod) {
    std::string key = absl::StrCat(pod->ns, "/", pod->pod, "/", pod->container);
    if (!bind(container_owner_, key)) {
      undo();
      Fail(s, SLICER_ARB_E_IDENTITY, absl::StrCat("container ", key, " runs in another cgroup"));
      return;
    }
  }
  s.hello = true;
  s.observe = (m.flags & SLICER_ARB_HELLO_OBSERVE) != 0;
  s.token = token;
  s.replicas = replicas;
  if (pod) {
    s.pod = *pod;
    s.attributed = true;
  }
  if (pod && pod->weight) {
    s.weight_override =
        std::clamp(*pod->weight, options_.config.min_weight, options_.config.max_weight);
  } else if (options_.trust_claims && m.weight_milli > 0) {
    s.weight_override =
        std::clamp(m.weight_milli / 1000.0, options_.config.min_weight, options_.config.max_weight);
  }
  if (pod && pod->priority) {
    s.priority = *pod->priority;
  } else if (options_.trust_claims && m.priority >= SLICER_ARB_PRIO_HIGH &&
             m.priority <= SLICER_ARB_PRIO_LOW) {
    s.priority = static_cast<Priority>(m.priority - SLICER_ARB_PRIO_HIGH);
  }
  slicer_arb_welcome_msg w{};
  w.client_id = s.id;
  w.policy = options_.config.scheduler.policy == Policy::kOff    ? SLICER_ARB_POLICY_OFF
             : options_.config.scheduler.policy == Policy::kFair ? SLICER_ARB_POLICY_FAIR
                                                                 : SLICER_ARB_POLICY_PRIORITY;
  w.fail_closed = options_.config.fail_closed ? 1 : 0;
  w.quantum_ns = static_cast<uint64_t>(options_.config.scheduler.quantum.count());
  w.max_queued_ns = static_cast<uint64_t>(MaxQueued(options_.config).count());
  w.report_ms = static_cast<uint32_t>(options_.report_interval.count());
  w.features = SLICER_ARB_FEATURE_LOAD | SLICER_ARB_FEATURE_OBSERVE;
  Send(s, &w, SLICER_ARB_WELCOME);
  SLOG(kInfo, "client_hello")
      .Kv("client", s.id)
      .Kv("pid", static_cast<int64_t>(s.peer.pid))
      .Kv("claimed_pid", m.pid)
      .Kv("uid", static_cast<int64_t>(s.peer.uid))
      .Kv("cgroup", s.peer.cgroup)
      .Kv("container", token)
      .Kv("replicas", static_cast<int64_t>(replicas.size()))
      .Kv("pod", s.attributed ? absl::StrCat(s.pod.ns, "/", s.pod.pod, "/", s.pod.container)
                              : std::string())
      .Kv("priority", PriorityName(s.priority))
      .Kv("observe", s.observe ? "true" : "false");
}

double Server::BaseWeight(const Session& s, const std::string& uuid) const {
  if (s.weight_override) return *s.weight_override;
  int held = 0;
  for (const std::string& r : s.replicas) held += r.compare(0, uuid.size() + 2, uuid + "::") == 0;
  return held > 0 ? held : 1;
}

void Server::Rebalance(const std::string& group, const std::string& token,
                       const std::string& uuid) {
  auto git = gpus_.find(uuid);
  if (git == gpus_.end()) return;
  // The container's weight is split among its processes on this GPU (same cgroup and token).
  std::vector<Session*> members;
  for (const auto& [id, slot] : git->second.slot) {
    auto f = fd_of_.find(id);
    if (f == fd_of_.end()) continue;
    Session& o = *sessions_[f->second];
    if (!o.observe && o.peer.cgroup == group && o.token == token) members.push_back(&o);
  }
  for (Session* o : members) {
    git->second.sched->Add(o->id, BaseWeight(*o, uuid) / static_cast<double>(members.size()),
                           o->priority);
  }
}

void Server::HandleAttach(Session& s, const slicer_arb_attach_msg& m) {
  if (m.gpu >= SLICER_ARB_MAX_GPUS || !slicer_arb_str_ok(m.uuid, sizeof m.uuid) ||
      !ValidUuid(m.uuid)) {
    Fail(s, SLICER_ARB_E_MALFORMED, "ATTACH needs a slot < 16 and a GPU-/MIG- UUID");
    return;
  }
  std::string uuid = m.uuid;
  if (s.gpus[m.gpu].attached) {
    if (s.gpus[m.gpu].uuid == uuid) return;
    Fail(s, SLICER_ARB_E_STATE, "slot already attached to another GPU");
    return;
  }
  for (const GpuUse& u : s.gpus) {
    if (u.attached && u.uuid == uuid) {
      Fail(s, SLICER_ARB_E_STATE, "GPU already attached on another slot");
      return;
    }
  }
  auto it = gpus_.find(uuid);
  if (it == gpus_.end()) {
    if (gpus_.size() >= kMaxGpus) {
      Fail(s, SLICER_ARB_E_LIMIT, "too many GPUs");
      return;
    }
    it = gpus_.emplace(uuid, Gpu{}).first;
    it->second.sched = std::make_unique<GpuScheduler>(SchedulerFor(options_.config), clock_);
  }
  s.gpus[m.gpu].attached = true;
  s.gpus[m.gpu].uuid = uuid;
  it->second.slot[s.id] = static_cast<int>(m.gpu);
  if (s.observe) {
    s.gpus[m.gpu].observed_at = clock_.Now();
    return;
  }
  it->second.sched->Add(s.id, BaseWeight(s, uuid), s.priority);
  Rebalance(s.peer.cgroup, s.token, uuid);
}

void Server::Send(Session& s, void* msg, uint32_t type) {
  if (s.fd < 0 || s.closing) return;
  slicer_arb_init(static_cast<slicer_arb_hdr*>(msg), type, 0);
  ssize_t n = ::send(s.fd, msg, slicer_arb_size_of(type), MSG_NOSIGNAL | MSG_DONTWAIT);
  if (n != static_cast<ssize_t>(slicer_arb_size_of(type))) s.closing = true;
}

void Server::Fail(Session& s, uint32_t code, const std::string& text) {
  ++errors_[ErrorName(code)];
  SLOG(kWarning, "client_rejected")
      .Kv("client", s.id)
      .Kv("pid", static_cast<int64_t>(s.peer.pid))
      .Kv("cgroup", s.peer.cgroup)
      .Kv("reason", ErrorName(code))
      .Kv("detail", text);
  slicer_arb_err_msg e{};
  e.code = code;
  std::snprintf(e.text, sizeof e.text, "%s", text.c_str());
  Send(s, &e, SLICER_ARB_ERROR);
  // Closing a unix socket with unread messages makes the peer's next recv fail with ECONNRESET
  // ahead of the queued error; discard what is queued (bounded: a flood keeps coming) so the
  // client reads why it was cut off.
  char sink[SLICER_ARB_MAX_MSG];
  for (int i = 0; i < 4096 && ::recv(s.fd, sink, sizeof sink, MSG_DONTWAIT) > 0; ++i) {
  }
  Close(s, ErrorName(code));
}

void Server::Close(Session& s, const char* why) {
  int fd = s.fd;
  uint64_t id = s.id;
  std::set<std::string> touched;
  for (GpuUse& use : s.gpus) {
    if (!use.attached) continue;
    Gpu& g = gpus_[use.uuid];
    Retired& r = retired_[SeriesOf(s, use.uuid)];
    g.slot.erase(id);
    if (s.observe) {
      r.gpu_seconds += std::chrono::duration<double>(use.observed).count();
      continue;
    }
    ClientStats st = g.sched->Stats(id);
    r.gpu_seconds += std::chrono::duration<double>(st.used).count();
    r.held_seconds += std::chrono::duration<double>(st.waited).count();
    g.sched->Remove(id);
    touched.insert(use.uuid);
  }
  if (s.hello) {
    if (!s.token.empty()) Unbind(token_owner_, s.token);
    for (const std::string& r : s.replicas) Unbind(replica_owner_, r);
    if (s.attributed) {
      Unbind(container_owner_, absl::StrCat(s.pod.ns, "/", s.pod.pod, "/", s.pod.container));
    }
  }
  ::slicer::LogLine(s.hello ? LogLevel::kInfo : LogLevel::kDebug, "client_gone")
      .Kv("client", id)
      .Kv("pid", static_cast<int64_t>(s.peer.pid))
      .Kv("why", why);
  std::string group = s.peer.cgroup;
  std::string token = s.token;
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
  ::close(fd);
  fd_of_.erase(id);
  sessions_.erase(fd);  // s is gone
  for (const std::string& uuid : touched) Rebalance(group, token, uuid);
}

void Server::PollSchedulers() {
  for (auto& [uuid, g] : gpus_) {
    for (const Action& a : g.sched->Poll()) {
      auto f = fd_of_.find(a.client);
      auto slot = g.slot.find(a.client);
      if (f == fd_of_.end() || slot == g.slot.end()) continue;
      Session& s = *sessions_[f->second];
      slicer_arb_lease_msg m{};
      m.gpu = static_cast<uint32_t>(slot->second);
      switch (a.kind) {
        case Action::kGrant:
          m.quantum_ns = static_cast<uint64_t>(a.quantum.count());
          Send(s, &m, SLICER_ARB_GRANT);
          break;
        case Action::kRevoke:
          Send(s, &m, SLICER_ARB_REVOKE);
          break;
        case Action::kQueue: {
          slicer_arb_queue_msg q{};
          q.gpu = m.gpu;
          q.max_queued_ns = static_cast<uint64_t>(a.queue.count());
          Send(s, &q, SLICER_ARB_QUEUE);
          break;
        }
        case Action::kForcedOff:
          ++forced_handovers_;
          SLOG(kWarning, "lease_forced_off")
              .Kv("client", s.id)
              .Kv("pid", static_cast<int64_t>(s.peer.pid))
              .Kv("gpu", uuid)
              .Kv("reason", "did not release after REVOKE within revokeGrace");
          Send(s, &m, SLICER_ARB_REVOKE);
          break;
      }
    }
  }
}

Server::SeriesKey Server::SeriesOf(const Session& s, const std::string& uuid) const {
  if (s.attributed) return {s.pod.ns, s.pod.pod, s.pod.container, uuid};
  std::string container = !s.token.empty() ? s.token : CgroupLeaf(s.peer.cgroup);
  return {"", "", container, uuid};
}

size_t Server::ConnectedClients() const {
  std::lock_guard<std::mutex> lock(mu_);
  return sessions_.size();
}

}  // namespace slicer::arbiter
