// Allocate's arbiter mount applied the way a container runtime applies it (a read-only bind mount
// of the host directory in a private mount namespace), to check the two properties the design
// relies on: a client can connect to the arbiter's socket through a read-only mount, and the
// socket an arbiter re-creates when it restarts is reachable through the same mount. Needs
// unshare(CLONE_NEWNS) (root) or an unprivileged user namespace; skipped where neither is allowed.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "src/common/shim_contract.h"
#include "src/plugin/allocate.h"

namespace slicer::plugin {
namespace {

namespace fs = std::filesystem;

constexpr int kSkip = 77;

int Listen(const std::string& path) {
  ::unlink(path.c_str());
  int fd = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::chmod(path.c_str(), 0666) != 0 || ::listen(fd, 4) != 0) {
    return -1;
  }
  return fd;
}

// Accepts one connection and reads its first packet; false after 5 s or when `child_done`
// (the read end of a pipe only the child holds open) says the child ended first.
bool AcceptOne(int listener, int child_done, char expect) {
  pollfd w[2] = {{listener, POLLIN, 0}, {child_done, POLLIN, 0}};
  if (::poll(w, 2, 5000) < 1 || !(w[0].revents & POLLIN)) return false;
  int c = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
  if (c < 0) return false;
  char b = 0;
  pollfd p{c, POLLIN, 0};
  bool ok = ::poll(&p, 1, 5000) == 1 && ::recv(c, &b, 1, 0) == 1 && b == expect;
  ::close(c);
  return ok;
}

bool WriteFile(const std::string& path, const std::string& text) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  ::close(fd);
  return ok;
}

// In the child: a private mount namespace, as root if we are, else in a user namespace.
bool EnterMountNamespace() {
  if (::unshare(CLONE_NEWNS) != 0) {
    uid_t uid = ::getuid();
    gid_t gid = ::getgid();
    if (::unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0) return false;
    WriteFile("/proc/self/setgroups", "deny");
    if (!WriteFile("/proc/self/uid_map", "0 " + std::to_string(uid) + " 1") ||
        !WriteFile("/proc/self/gid_map", "0 " + std::to_string(gid) + " 1")) {
      return false;
    }
  }
  return ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) == 0;
}

int ConnectAndSend(const std::string& path, char what) {
  int fd = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    int e = errno;
    ::close(fd);
    return e;
  }
  int rc = ::send(fd, &what, 1, 0) == 1 ? 0 : errno;
  ::close(fd);
  return rc;
}

TEST(ArbiterMount, ClientsConnectReadOnlyAndReachARestartedArbiter) {
  char tmpl[] = "/tmp/slicer-am-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  const std::string host_dir = dir + "/host", rootfs = dir + "/rootfs";
  fs::create_directories(host_dir);
  const std::string host_socket = host_dir + "/arbiter.sock";

  // What Allocate hands the kubelet for a shared, capped container.
  AllocateOptions o;
  o.shim_host_dir = "/usr/local/lib/gpu-slicer";
  o.arbiter_socket = host_socket;
  Resource res = MakeResource("nvidia.com/gpu", 2, {Gpu{"GPU-0", 0, "T4", 1 << 30}});
  res.enforce_memory = true;
  auto alloc = AllocateContainer(res, {"GPU-0::1"}, o, "x");
  ASSERT_TRUE(alloc.ok()) << alloc.status();
  const v1beta1::Mount* mount = nullptr;
  for (const auto& m : alloc->mounts()) {
    if (m.container_path() == kArbiterContainerDir) mount = &m;
  }
  ASSERT_NE(mount, nullptr);
  ASSERT_TRUE(mount->read_only());
  const std::string target = rootfs + mount->container_path();
  const std::string in_container = rootfs + alloc->envs().at(SLICER_ENV_ARBITER_SOCKET);
  fs::create_directories(target);

  int listener = Listen(host_socket);
  ASSERT_GE(listener, 0) << std::strerror(errno);
  int restarted[2], result[2];
  ASSERT_EQ(::pipe2(restarted, O_CLOEXEC), 0);
  ASSERT_EQ(::pipe2(result, O_CLOEXEC), 0);

  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    auto fail = [&](const std::string& what) {
      std::string msg = what + ": " + std::strerror(errno);
      (void)!::write(result[1], msg.data(), msg.size());
      ::_exit(1);
    };
    if (!EnterMountNamespace()) ::_exit(kSkip);
    if (::mount(mount->host_path().c_str(), target.c_str(), nullptr, MS_BIND, nullptr) != 0) {
      ::_exit(kSkip);
    }
    if (::mount(nullptr, target.c_str(), nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY, nullptr) != 0) {
      fail("remount read-only");
    }
    if (::mknod((target + "/planted").c_str(), S_IFREG | 0644, 0) == 0 || errno != EROFS) {
      fail("a file could be created through the read-only mount");
    }
    if (::unlink(in_container.c_str()) == 0 || errno != EROFS) {
      fail("the arbiter's socket could be removed through the read-only mount");
    }
    if (int e = ConnectAndSend(in_container, 'a'); e != 0) {
      errno = e;
      fail("connect through the read-only mount");
    }
    char b;
    if (::read(restarted[0], &b, 1) != 1) fail("waiting for the restart");
    if (int e = ConnectAndSend(in_container, 'b'); e != 0) {
      errno = e;
      fail("connect to the restarted arbiter");
    }
    ::_exit(0);
  }
  ::close(restarted[0]);
  ::close(result[1]);
  bool first = AcceptOne(listener, result[0], 'a'), second = false;
  if (first) {
    // The arbiter restarts: its socket file is replaced by a new one (a new inode).
    ::close(listener);
    listener = Listen(host_socket);
    EXPECT_GE(listener, 0);
    EXPECT_EQ(::write(restarted[1], "r", 1), 1);
    second = listener >= 0 && AcceptOne(listener, result[0], 'b');
  }
  ::close(restarted[1]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  std::string msg(256, '\0');
  ssize_t n = ::read(result[0], msg.data(), msg.size());
  msg.resize(n > 0 ? static_cast<size_t>(n) : 0);
  ::close(result[0]);
  if (listener >= 0) ::close(listener);
  fs::remove_all(dir);
  if (WIFEXITED(status) && WEXITSTATUS(status) == kSkip) {
    GTEST_SKIP() << "no mount namespace here (unshare or bind mount not permitted)";
  }
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << msg;
  EXPECT_TRUE(first);
  EXPECT_TRUE(second);
}

}  // namespace
}  // namespace slicer::plugin
