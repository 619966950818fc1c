// Who owns an arbiter socket. The arbiter serving socket S holds an exclusive flock() on S.lock
// (beside it) for its whole life, taken before it replaces a stale socket file or binds S, so two
// arbiters can never both claim S; the kernel drops the lock when the process ends, however it
// ends. `slicer run` serialises its probe-or-start of an arbiter on S under S.run.lock, and the
// one that starts it takes S.lock itself and hands that open file to the arbiter
// (kArbiterLockFdEnv), so that nobody can take it in between. The lock files stay; only the lock
// on them says anything.
#ifndef SLICER_CLI_SOCKET_LOCK_H_
#define SLICER_CLI_SOCKET_LOCK_H_

#include <string>

namespace slicer::cli {

// The descriptor, in an arbiter's environment, of an open S.lock that already holds the lock
// (passed by `slicer run` that started it, and across a SIGHUP reload).
inline constexpr char kArbiterLockFdEnv[] = "SLICER_ARBITER_LOCK_FD";

// "<socket>.lock": locked by the arbiter serving `socket`.
std::string ArbiterLockPath(const std::string& socket);
// "<socket>.run.lock": locked by a `slicer run` while it finds or starts the arbiter of `socket`.
std::string RunLockPath(const std::string& socket);

// Creates the missing directories above `path` (mode 0755, as the arbiter does for its socket).
void MakeParentDirs(const std::string& path);

struct LockAttempt {
  int fd = -1;        // >= 0: the open lock file (close-on-exec), locked exclusively
  bool busy = false;  // another open file holds the lock
  std::string error;  // when fd < 0 and !busy: why the file could not be opened or locked
};

// Opens `path` (created 0600 when missing) and tries flock(LOCK_EX | LOCK_NB) once.
LockAttempt TryLock(const std::string& path);

// Records this process's pid in a lock file it holds (best effort), and reads it back ("" when
// none).
void WriteLockPid(int fd);
std::string ReadLockPid(const std::string& path);

}  // namespace slicer::cli

#endif  // SLICER_CLI_SOCKET_LOCK_H_
