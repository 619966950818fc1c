#include "src/cli/socket_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace slicer::cli {

std::string ArbiterLockPath(const std::string& socket) { return socket + ".lock"; }
std::string RunLockPath(const std::string& socket) { return socket + ".run.lock"; }

void MakeParentDirs(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos || slash == 0) return;
  std::string dir = path.substr(0, slash);
  for (size_t i = 1; i <= dir.size(); ++i) {
    if (i == dir.size() || dir[i] == '/') ::mkdir(dir.substr(0, i).c_str(), 0755);
  }
}

LockAttempt TryLock(const std::string& path) {
  LockAttempt r;
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  // A lock file that exists but is not ours to write still locks (flock needs no write access).
  if (fd < 0 && (errno == EACCES || errno == EROFS)) {
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  }
  if (fd < 0) {
    r.error = "cannot open " + path + ": " + std::strerror(errno);
    return r;
  }
  int rc;
  while ((rc = ::flock(fd, LOCK_EX | LOCK_NB)) != 0 && errno == EINTR) {
  }
  if (rc == 0) {
    r.fd = fd;
    return r;
  }
  int err = errno;
  ::close(fd);
  if (err == EWOULDBLOCK) {
    r.busy = true;
  } else {
    r.error = "cannot lock " + path + ": " + std::strerror(err);
  }
  return r;
}

void WriteLockPid(int fd) {
  std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) == 0) {
    ssize_t w = ::pwrite(fd, pid.data(), pid.size(), 0);
    (void)w;
  }
}

std::string ReadLockPid(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "";
  char buf[32];
  ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
  ::close(fd);
  if (n <= 0) return "";
  std::string s(buf, static_cast<size_t>(n));
  size_t end = s.find_first_not_of("0123456789");
  s = s.substr(0, end);
  return s;
}

}  // namespace slicer::cli
