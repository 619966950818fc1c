// Fake nvidia-cuda-mps-control: NVIDIA's MPS control daemon and its client, as far as gpu-slicer's
// MPS daemon uses them, so that it can be tested without a GPU or a driver. It starts no MPS
// server and touches no GPU. Built as <fakes bin dir>/nvidia-cuda-mps-control; tests put that
// folder first on PATH (tests/fakes/mps_control/CMakeLists.txt).
//
// Contract:
// - Usage: `nvidia-cuda-mps-control -f` (daemon in the foreground), `-d` (daemon in the
//   background: forks, the child calls setsid and points stdin/stdout/stderr at /dev/null, and the
//   parent exits 0 once the child listens and has written the pid file, 1 if it did not get that
//   far), no arguments (client). Anything else: usage on stderr, exit 2.
// - Daemon: pipe dir = $CUDA_MPS_PIPE_DIRECTORY (default /tmp/nvidia-mps), log dir =
//   $CUDA_MPS_LOG_DIRECTORY (default /var/log/nvidia-mps), both created (with parents) if missing.
//   It listens on the unix stream socket <pipe>/control and writes its pid ("<pid>\n") to
//   <pipe>/nvidia-cuda-mps-control.pid, which it holds an flock(2) on while it lives. If that lock
//   is held, or <pipe>/control exists and accepts a connection, it prints "An instance of this
//   daemon is already running" on stderr and exits 1. Otherwise a leftover socket (a crashed
//   daemon's) is replaced. A pipe dir whose socket path would not fit sockaddr_un (107 bytes),
//   or a directory or log that cannot be created: a message on stderr naming it, exit 1. All of
//   this happens before -d forks, so those errors reach the caller's stderr.
// - Events: one line each, appended to <log>/control.log as "[YYYY-MM-DD HH:MM:SS.mmm] <event>"
//   and, when SLICER_FAKE_MPS_RECORD names a file, to that file as "<event>" (a single write(2)
//   per line with O_APPEND, so it is on disk at once and lines from successive daemons, even
//   concurrent ones, do not interleave). The events:
//     start pid=<pid> visible=<$CUDA_VISIBLE_DEVICES, empty if unset> pipe=<dir> log=<dir>
//     cmd <the command line as received>   every line, known or not (control characters as '?',
//                                         cut at 1024 bytes)
//     quit                                 after `quit` removed the socket and the pid file
//     die                                  `die` or SLICER_FAKE_MPS_DIE_AFTER_MS: exit 1 follows
//     stop signal=<n>                      SIGTERM or SIGINT: cleaned up as for quit, exit 0
//     fail-start pid=<pid>                 SLICER_FAKE_MPS_FAIL_START=1
// - Protocol (between this fake's client and daemon only; NVIDIA's is not documented): one
//   command per connection. The client sends one line; the daemon answers with its reply lines
//   (none for some commands) and closes the connection. Bytes after the first newline are
//   ignored; a connection closed before a newline sends what it sent as the command. A line of
//   more than 1024 bytes is answered "Command too long (more than 1024 bytes)". At most 64
//   connections are open at once (the oldest is closed to make room).
// - Commands (words separated by blanks):
//     quit [-t <s>]                             no reply; removes the socket and the pid file,
//                                               closes the connection, exits 0
//     get_default_active_thread_percentage      e.g. "100.0" (the initial value), as %.1f
//     set_default_active_thread_percentage <p>  0 < p <= 100; stores it, replies it as %.1f
//     set_default_device_pinned_mem_limit <dev> <limit>   limit = digits + optional K, M, G or
//                                               T; stores it per dev; no reply
//     get_default_device_pinned_mem_limit <dev> the stored limit, "0" when none was set
//     get_server_list, get_device_client_list [<pid>]     no reply (there are no servers)
//     die                                       (fake only) exit 1 at once, socket and pid file
//                                               left behind, as a crash would
//   Any other line, or one with the wrong arguments, is answered with one line that starts
//   "Error: " and says what was wrong; the daemon keeps running. Blank lines: no reply.
// - Client: reads commands from stdin, one per line (the last one may lack its newline; blank
//   lines are skipped), sends each to $CUDA_MPS_PIPE_DIRECTORY/control (same default) and prints
//   each reply on stdout; exits 0. If nothing listens there: "Cannot find MPS control daemon
//   process" on stderr, exit 1. If a daemon takes more than 5 s to answer (or to accept): a
//   message on stderr, exit 1.
// - Test knobs, read by the daemon at start:
//     SLICER_FAKE_MPS_RECORD=<file>       the event record above
//     SLICER_FAKE_MPS_DIE_AFTER_MS=<n>    record "die" and exit 1 (no clean-up) n ms after start
//     SLICER_FAKE_MPS_FAIL_START=1        print a message on stderr, record "fail-start" and exit
//                                         1 before doing anything else (-d does not fork)
//     SLICER_FAKE_MPS_HANG=1              accept connections and record their commands, but never
//                                         reply or act on them (quit and die included), and
//                                         never close them; only a signal stops it
//     SLICER_FAKE_MPS_BUSY_FIRST=<n>      the first n commands are treated as under HANG (a busy
//                                         daemon: their clients time out), later ones answered
//
// Single-threaded: one poll(2) loop over the listening socket, the connections and a signalfd.
// Links nothing but libc; nothing here uses src/.
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace {

constexpr size_t kMaxLine = 1024;
constexpr size_t kMaxConnections = 64;
constexpr int kClientTimeoutMs = 5000;
constexpr char kAlreadyRunning[] = "An instance of this daemon is already running";
constexpr char kNoDaemon[] = "Cannot find MPS control daemon process";

using Clock = std::chrono::steady_clock;

std::string Env(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? v : fallback;
}

bool EnvIs1(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && std::strcmp(v, "1") == 0;
}

[[noreturn]] void Fail(const std::string& message) {
  std::fprintf(stderr, "nvidia-cuda-mps-control (fake): %s\n", message.c_str());
  std::exit(1);
}

std::string Errno() { return std::strerror(errno); }

struct Paths {
  std::string pipe = Env("CUDA_MPS_PIPE_DIRECTORY", "/tmp/nvidia-mps");
  std::string log = Env("CUDA_MPS_LOG_DIRECTORY", "/var/log/nvidia-mps");
  std::string socket = pipe + "/control";
  std::string pid = pipe + "/nvidia-cuda-mps-control.pid";
};

// The socket's address; false when the path does not fit.
bool Address(const std::string& path, sockaddr_un& addr) {
  std::memset(&addr, 0, sizeof addr);
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) return false;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return true;
}

// mkdir -p; false with errno set.
bool MakeDirs(const std::string& path) {
  for (size_t slash = path.find('/', 1);; slash = path.find('/', slash + 1)) {
    std::string prefix = path.substr(0, slash);
    if (!prefix.empty() && mkdir(prefix.c_str(), 0755) != 0 && errno != EEXIST) return false;
    if (slash == std::string::npos) return true;
  }
}

// What a command line looks like in the record: one line, printable, bounded.
std::string Printable(const std::string& text) {
  std::string out = text.substr(0, kMaxLine);
  for (char& c : out) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  }
  return out;
}

std::vector<std::string> Words(const std::string& line) {
  std::istringstream in(line);
  std::vector<std::string> words;
  for (std::string w; in >> w;) words.push_back(w);
  return words;
}

// control.log and the test's record, one line per event.
class Events {
 public:
  // Opens both files; exits 1 naming the one that cannot be opened.
  void Open(const std::string& log_dir) {
    std::string log = log_dir + "/control.log";
    log_fd_ = open(log.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (log_fd_ < 0) Fail("cannot open " + log + ": " + Errno());
    OpenRecord();
  }

  // Only the record (a start that fails writes no control.log).
  void OpenRecord() {
    std::string record = Env("SLICER_FAKE_MPS_RECORD", "");
    if (record.empty()) return;
    record_fd_ = open(record.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (record_fd_ < 0) Fail("cannot open SLICER_FAKE_MPS_RECORD " + record + ": " + Errno());
  }

  void Emit(const std::string& event) const {
    if (log_fd_ >= 0) {
      timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      tm t;
      localtime_r(&ts.tv_sec, &t);
      char stamp[64];
      std::snprintf(stamp, sizeof stamp, "[%04d-%02d-%02d %02d:%02d:%02d.%03ld] ", t.tm_year + 1900,
                    t.tm_mon + 1, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec, ts.tv_nsec / 1000000);
      WriteLine(log_fd_, stamp + event);
    }
    if (record_fd_ >= 0) WriteLine(record_fd_, event);
  }

 private:
  static void WriteLine(int fd, const std::string& text) {
    std::string line = text + "\n";
    if (write(fd, line.data(), line.size()) < 0) {
      std::fprintf(stderr, "nvidia-cuda-mps-control (fake): cannot log: %s\n", Errno().c_str());
    }
  }

  int log_fd_ = -1;
  int record_fd_ = -1;
};

// What the daemon does after answering a command.
enum class After { kContinue, kQuit, kDie };

struct Answer {
  std::string reply;  // lines, each ending in '\n'; may be empty
  After after = After::kContinue;
};

std::string Percentage(double p) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f\n", p);
  return buf;
}

bool ValidMemLimit(const std::string& limit) {
  size_t digits = limit.find_first_not_of("0123456789");
  if (digits == 0) return false;
  if (digits == std::string::npos) return true;
  return digits + 1 == limit.size() && std::strchr("KMGT", limit[digits]) != nullptr;
}

// The MPS settings the daemon keeps and the commands that read and change them.
class Control {
 public:
  Answer Handle(const std::string& line) {
    std::vector<std::string> w = Words(line);
    if (w.empty()) return {};
    const std::string& cmd = w[0];
    const size_t args = w.size() - 1;
    if (cmd == "quit" && (args == 0 || (args == 2 && w[1] == "-t"))) return {"", After::kQuit};
    if (cmd == "die" && args == 0) return {"", After::kDie};
    if (cmd == "get_default_active_thread_percentage" && args == 0) {
      return {Percentage(active_thread_percentage_)};
    }
    if (cmd == "set_default_active_thread_percentage" && args == 1) {
      char* end = nullptr;
      double p = std::strtod(w[1].c_str(), &end);
      if (end == w[1].c_str() || *end != '\0' || !(p > 0 && p <= 100)) {
        return {"Error: invalid active thread percentage " + w[1] + " (want 0 < p <= 100)\n"};
      }
      active_thread_percentage_ = p;
      return {Percentage(p)};
    }
    if (cmd == "set_default_device_pinned_mem_limit" && args == 2) {
      if (!ValidMemLimit(w[2])) {
        return {"Error: invalid pinned memory limit " + w[2] + " (want e.g. 512M or 2G)\n"};
      }
      pinned_mem_limits_[w[1]] = w[2];
      return {};
    }
    if (cmd == "get_default_device_pinned_mem_limit" && args == 1) {
      auto it = pinned_mem_limits_.find(w[1]);
      return {(it == pinned_mem_limits_.end() ? "0" : it->second) + "\n"};
    }
    if ((cmd == "get_server_list" && args == 0) || (cmd == "get_device_client_list" && args <= 1)) {
      return {};
    }
    static const char* const kKnown[] = {"quit",
                                         "die",
                                         "get_default_active_thread_percentage",
                                         "set_default_active_thread_percentage",
                                         "set_default_device_pinned_mem_limit",
                                         "get_default_device_pinned_mem_limit",
                                         "get_server_list",
                                         "get_device_client_list"};
    for (const char* known : kKnown) {
      if (cmd == known) return {"Error: wrong arguments for " + cmd + "\n"};
    }
    return {"Error: unrecognized command " + Printable(cmd).substr(0, 64) + "\n"};
  }

 private:
  double active_thread_percentage_ = 100.0;
  std::map<std::string, std::string> pinned_mem_limits_;
};

struct Connection {
  int fd = -1;
  std::string buffer;
  bool done = false;  // a command was read (hang mode keeps the connection open after it)
  bool eof = false;   // the client sent all it will (hang mode: no longer polled)
};

class Daemon {
 public:
  // Everything that can fail at start, before -d forks: exits 1 with a message.
  void Prepare() {
    if (EnvIs1("SLICER_FAKE_MPS_FAIL_START")) {
      events_.OpenRecord();
      events_.Emit("fail-start pid=" + std::to_string(getpid()));
      Fail("SLICER_FAKE_MPS_FAIL_START=1: failing to start");
    }
    std::string die_after = Env("SLICER_FAKE_MPS_DIE_AFTER_MS", "");
    if (!die_after.empty()) {
      char* end = nullptr;
      long ms = std::strtol(die_after.c_str(), &end, 10);
      if (*end != '\0' || ms < 0) {
        Fail("SLICER_FAKE_MPS_DIE_AFTER_MS=" + die_after + ": want a number of milliseconds");
      }
      die_after_ms_ = ms;
    }
    hang_ = EnvIs1("SLICER_FAKE_MPS_HANG");
    std::string busy = Env("SLICER_FAKE_MPS_BUSY_FIRST", "0");
    char* busy_end = nullptr;
    busy_first_ = std::strtol(busy.c_str(), &busy_end, 10);
    if (*busy_end != '\0' || busy_first_ < 0) {
      Fail("SLICER_FAKE_MPS_BUSY_FIRST=" + busy + ": want a number of commands");
    }
    sockaddr_un addr;
    if (!Address(paths_.socket, addr)) {
      Fail("socket path " + paths_.socket + " is longer than " +
           std::to_string(sizeof addr.sun_path - 1) + " bytes");
    }
    for (const std::string& dir : {paths_.pipe, paths_.log}) {
      if (!MakeDirs(dir)) Fail("cannot create " + dir + ": " + Errno());
    }
    pid_fd_ = open(paths_.pid.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (pid_fd_ < 0) Fail("cannot open " + paths_.pid + ": " + Errno());
    if (flock(pid_fd_, LOCK_EX | LOCK_NB) != 0) AlreadyRunning();
    struct stat st;
    if (lstat(paths_.socket.c_str(), &st) == 0) {
      int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      bool answers = connect(probe, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
      close(probe);
      if (answers) AlreadyRunning();
      if (unlink(paths_.socket.c_str()) != 0) Fail("cannot remove stale " + paths_.socket);
    }
    listen_fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (listen_fd_ < 0 || bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        listen(listen_fd_, 16) != 0) {
      Fail("cannot listen on " + paths_.socket + ": " + Errno());
    }
    events_.Open(paths_.log);
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    sigprocmask(SIG_BLOCK, &signals, nullptr);
    signal_fd_ = signalfd(-1, &signals, SFD_NONBLOCK | SFD_CLOEXEC);
    if (signal_fd_ < 0) Fail("signalfd: " + Errno());
    signal(SIGPIPE, SIG_IGN);
  }

  // In the process that serves (after -d's fork): the pid file and the start event.
  void Started() {
    std::string pid = std::to_string(getpid());
    if (ftruncate(pid_fd_, 0) != 0 || pwrite(pid_fd_, (pid + "\n").data(), pid.size() + 1, 0) < 0) {
      Fail("cannot write " + paths_.pid + ": " + Errno());
    }
    events_.Emit("start pid=" + pid + " visible=" + Env("CUDA_VISIBLE_DEVICES", "") +
                 " pipe=" + paths_.pipe + " log=" + paths_.log);
    start_ = Clock::now();
  }

  [[noreturn]] void Serve() {
    for (;;) {
      std::vector<pollfd> fds = {{listen_fd_, POLLIN, 0}, {signal_fd_, POLLIN, 0}};
      for (const Connection& c : connections_) fds.push_back({c.eof ? -1 : c.fd, POLLIN, 0});
      if (poll(fds.data(), fds.size(), PollTimeoutMs()) < 0 && errno != EINTR) {
        Fail("poll: " + Errno());
      }
      if (die_after_ms_ >= 0 && Clock::now() >= start_ + std::chrono::milliseconds(die_after_ms_)) {
        Die();
      }
      if (fds[1].revents & POLLIN) {
        signalfd_siginfo info;
        if (read(signal_fd_, &info, sizeof info) == sizeof info) {
          CleanUp();
          events_.Emit("stop signal=" + std::to_string(info.ssi_signo));
          std::exit(0);
        }
      }
      // Connections first (their indexes match fds), then new ones.
      std::vector<Connection> open;
      for (size_t i = 0; i < connections_.size(); ++i) {
        Connection& c = connections_[i];
        if (fds[i + 2].revents == 0 || Read(c)) {
          open.push_back(std::move(c));
        } else {
          close(c.fd);
        }
      }
      connections_ = std::move(open);
      if (fds[0].revents & POLLIN) Accept();
    }
  }

 private:
  [[noreturn]] void AlreadyRunning() {
    std::fprintf(stderr, "%s\n", kAlreadyRunning);
    std::exit(1);
  }

  int PollTimeoutMs() const {
    if (die_after_ms_ < 0) return -1;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        start_ + std::chrono::milliseconds(die_after_ms_) - Clock::now());
    return left.count() < 0 ? 0 : static_cast<int>(left.count()) + 1;
  }

  void Accept() {
    for (;;) {
      int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) return;
      if (connections_.size() >= kMaxConnections) {
        close(connections_.front().fd);
        connections_.erase(connections_.begin());
      }
      Connection c;
      c.fd = fd;
      connections_.push_back(std::move(c));
    }
  }

  // Reads what is there; runs the command once it is complete. False: close the connection.
  bool Read(Connection& c) {
    char buf[4096];
    ssize_t n = read(c.fd, buf, sizeof buf);
    if (n < 0) return errno == EAGAIN || errno == EINTR;
    if (n == 0) {
      c.eof = true;
      if (c.done) return true;  // hang mode: keep it open, unanswered
      return !c.buffer.empty() && Run(c, c.buffer);
    }
    if (c.done) return true;  // hang mode: what follows the command is dropped
    c.buffer.append(buf, static_cast<size_t>(n));
    size_t nl = c.buffer.find('\n');
    if (nl == std::string::npos && c.buffer.size() <= kMaxLine) return true;
    if (nl == std::string::npos || nl > kMaxLine) {
      events_.Emit("cmd " + Printable(c.buffer));
      if (hang_) return Hung(c);
      Send(c.fd, "Error: Command too long (more than " + std::to_string(kMaxLine) + " bytes)\n");
      return false;
    }
    std::string line = c.buffer.substr(0, nl);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    return Run(c, line);
  }

  // Runs one command line; false when the connection is finished with.
  bool Run(Connection& c, const std::string& line) {
    if (!Words(line).empty()) events_.Emit("cmd " + Printable(line));
    if (hang_ || (busy_first_ > 0 && !Words(line).empty() && busy_first_-- > 0)) return Hung(c);
    Answer a = control_.Handle(line);
    switch (a.after) {
      case After::kQuit:
        CleanUp();
        events_.Emit("quit");
        close(c.fd);
        std::exit(0);
      case After::kDie:
        Die();
      case After::kContinue:
        break;
    }
    Send(c.fd, a.reply);
    return false;
  }

  bool Hung(Connection& c) {
    c.done = true;
    c.buffer.clear();
    return true;
  }

  static void Send(int fd, const std::string& text) {
    // A reply is far smaller than a socket buffer: one send, unless the client has gone.
    if (!text.empty()) (void)send(fd, text.data(), text.size(), MSG_NOSIGNAL);
  }

  void CleanUp() {
    unlink(paths_.socket.c_str());
    unlink(paths_.pid.c_str());
  }

  [[noreturn]] void Die() {
    events_.Emit("die");
    _exit(1);
  }

  const Paths paths_;
  Events events_;
  Control control_;
  bool hang_ = false;
  long busy_first_ = 0;
  long die_after_ms_ = -1;
  Clock::time_point start_;
  int pid_fd_ = -1;
  int listen_fd_ = -1;
  int signal_fd_ = -1;
  std::vector<Connection> connections_;
};

// Forks; returns in the child (the daemon), exits in the parent once the child is listening.
void Daemonize(Daemon& daemon) {
  int ready[2];
  if (pipe2(ready, O_CLOEXEC) != 0) Fail("pipe: " + Errno());
  pid_t pid = fork();
  if (pid < 0) Fail("fork: " + Errno());
  if (pid > 0) {
    close(ready[1]);
    char byte = 0;
    ssize_t n;
    do {
      n = read(ready[0], &byte, 1);
    } while (n < 0 && errno == EINTR);
    if (n == 1) std::exit(0);
    Fail("the daemon exited before it was ready");
  }
  close(ready[0]);
  setsid();
  daemon.Started();
  int null = open("/dev/null", O_RDWR);
  if (null >= 0) {
    dup2(null, 0);
    dup2(null, 1);
    dup2(null, 2);
    if (null > 2) close(null);
  }
  if (write(ready[1], "1", 1) != 1) _exit(1);
  close(ready[1]);
}

// Milliseconds left until `deadline`, at least 0.
int MsUntil(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return left.count() < 0 ? 0 : static_cast<int>(left.count());
}

// Sends one command and prints the reply. Exits 1 on any failure.
void SendCommand(const std::string& socket_path, const std::string& line) {
  const auto deadline = Clock::now() + std::chrono::milliseconds(kClientTimeoutMs);
  auto timed_out = [&] {
    Fail("the MPS control daemon at " + socket_path + " did not answer \"" + Printable(line) +
         "\" within " + std::to_string(kClientTimeoutMs / 1000) + " s");
  };
  sockaddr_un addr;
  if (!Address(socket_path, addr)) Fail("socket path " + socket_path + " is too long");
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) Fail("socket: " + Errno());
  // Non-blocking: a daemon that does not accept (a full backlog) answers EAGAIN, not a hang.
  while (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    if (errno != EAGAIN && errno != EINTR) {
      std::fprintf(stderr, "%s (%s: %s)\n", kNoDaemon, socket_path.c_str(), Errno().c_str());
      std::exit(1);
    }
    if (MsUntil(deadline) == 0) timed_out();
    usleep(10 * 1000);
  }
  std::string out = line + "\n";
  for (size_t sent = 0; sent < out.size();) {
    ssize_t n = send(fd, out.data() + sent, out.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno != EAGAIN && errno != EINTR) Fail("send: " + Errno());
    pollfd p = {fd, POLLOUT, 0};
    if (poll(&p, 1, MsUntil(deadline)) == 0) timed_out();
  }
  std::string reply;
  for (;;) {
    pollfd p = {fd, POLLIN, 0};
    int r = poll(&p, 1, MsUntil(deadline));
    if (r == 0) timed_out();
    if (r < 0) {
      if (errno == EINTR) continue;
      Fail("poll: " + Errno());
    }
    char buf[4096];
    ssize_t n = read(fd, buf, sizeof buf);
    if (n == 0) break;
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      if (errno == ECONNRESET) break;  // the daemon exited (quit, die) without reading it all
      Fail("read: " + Errno());
    }
    reply.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  std::fwrite(reply.data(), 1, reply.size(), stdout);
  std::fflush(stdout);
}

int Client() {
  const std::string socket_path = Paths().socket;
  std::string line;
  while (std::getline(std::cin, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (Words(line).empty()) continue;
    SendCommand(socket_path, line);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 1) return Client();
  const std::string mode = argv[1];
  if (argc != 2 || (mode != "-f" && mode != "-d")) {
    std::fprintf(stderr,
                 "usage: nvidia-cuda-mps-control [-d | -f]\n"
                 "  -d  start the control daemon in the background\n"
                 "  -f  start the control daemon in the foreground\n"
                 "  (no option) send the commands read from stdin to the running daemon\n");
    return 2;
  }
  Daemon daemon;
  daemon.Prepare();
  if (mode == "-d") {
    Daemonize(daemon);
  } else {
    daemon.Started();
  }
  daemon.Serve();
}
