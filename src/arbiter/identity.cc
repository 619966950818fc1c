#include "src/arbiter/identity.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace slicer::arbiter {

absl::StatusOr<PeerIdentity> PeerCredentials(int fd) {
  ucred cred{};
  socklen_t len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || cred.pid <= 0) {
    return absl::UnavailableError(absl::StrCat("SO_PEERCRED: ", std::strerror(errno)));
  }
  PeerIdentity id;
  id.pid = cred.pid;
  id.uid = cred.uid;
  id.gid = cred.gid;
  return id;
}

absl::StatusOr<std::string> ReadCgroup(const std::string& proc_root, pid_t pid) {
  std::string path = absl::StrCat(proc_root, "/", pid, "/cgroup");
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::NotFoundError(absl::StrCat(path, ": ", std::strerror(errno)));
  std::string text;
  char buf[4096];
  while (text.size() < 65536) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    text.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  std::string first, memory;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    if (absl::StartsWith(line, "0::")) return std::string(line);
    std::vector<absl::string_view> parts = absl::StrSplit(line, absl::MaxSplits(':', 2));
    if (parts.size() != 3) continue;
    if (first.empty()) first = std::string(line);
    for (absl::string_view c : absl::StrSplit(parts[1], ',')) {
      if (c == "memory") memory = std::string(line);
    }
  }
  if (!memory.empty()) return memory;
  if (!first.empty()) return first;
  return absl::NotFoundError(absl::StrCat(path, ": no cgroup line"));
}

std::string PodUidFromCgroup(const std::string& cgroup) {
  size_t pos = 0;
  while ((pos = cgroup.find("pod", pos)) != std::string::npos) {
    pos += 3;
    std::string uid;
    size_t i = pos;
    while (i < cgroup.size() && (std::isxdigit(static_cast<unsigned char>(cgroup[i])) ||
                                 cgroup[i] == '-' || cgroup[i] == '_')) {
      uid.push_back(cgroup[i] == '_' ? '-' : cgroup[i]);
      ++i;
    }
    if (uid.size() == 36 && std::count(uid.begin(), uid.end(), '-') == 4) {
      std::transform(uid.begin(), uid.end(), uid.begin(), ::tolower);
      return uid;
    }
  }
  return "";
}

}  // namespace slicer::arbiter
