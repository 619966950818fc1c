// Who is at the other end of a client connection, from the kernel: SO_PEERCRED (pid, uid) and
// the peer's cgroup read from <proc_root>/<pid>/cgroup. What a client claims is checked against
// this, never taken instead of it.
#ifndef SLICER_ARBITER_IDENTITY_H_
#define SLICER_ARBITER_IDENTITY_H_

#include <sys/types.h>

#include <string>

#include "absl/status/statusor.h"

namespace slicer::arbiter {

struct PeerIdentity {
  pid_t pid = 0;
  uid_t uid = 0;
  gid_t gid = 0;
  // The cgroup v2 path ("0::/kubepods.slice/...") or, on v1, the line of the memory (else the
  // first) controller. Identifies the container.
  std::string cgroup;
};

// SO_PEERCRED of a connected unix socket. Fails when the kernel cannot tell (not a unix socket).
absl::StatusOr<PeerIdentity> PeerCredentials(int fd);

// Reads <proc_root>/<pid>/cgroup (bounded to 64 KiB). Fails when the process is gone or the
// file has no usable line.
absl::StatusOr<std::string> ReadCgroup(const std::string& proc_root, pid_t pid);

// The pod UID a kubelet-managed cgroup path names ("...kubepods-burstable-pod<uid>.slice/..."
// with '_' for '-' under the systemd driver, or ".../pod<uid>/..." under cgroupfs); "" when
// there is none.
std::string PodUidFromCgroup(const std::string& cgroup);

}  // namespace slicer::arbiter

#endif  // SLICER_ARBITER_IDENTITY_H_
