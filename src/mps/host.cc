#include "src/mps/host.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <chrono>
#include <cstring>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "src/common/log.h"
#include "src/mps/files.h"

extern char** environ;

namespace slicer::mps {
namespace {

std::vector<std::string> MergedEnv(const std::map<std::string, std::string>& extra) {
  std::vector<std::string> out;
  for (char** e = environ; e && *e; ++e) {
    std::string kv = *e;
    const size_t eq = kv.find('=');
    if (eq != std::string::npos && extra.count(kv.substr(0, eq))) continue;
    out.push_back(std::move(kv));
  }
  for (const auto& [k, v] : extra) out.push_back(k + "=" + v);
  return out;
}

std::optional<nvml::ComputeMode> ModeFromName(std::string_view name) {
  for (nvml::ComputeMode m :
       {nvml::ComputeMode::kDefault, nvml::ComputeMode::kExclusiveThread,
        nvml::ComputeMode::kProhibited, nvml::ComputeMode::kExclusiveProcess}) {
    if (nvml::ToString(m) == name) return m;
  }
  return std::nullopt;
}

}  // namespace

absl::StatusOr<std::string> FindProgram(const std::string& name) {
  auto executable = [](const std::string& p) { return ::access(p.c_str(), X_OK) == 0; };
  if (name.find('/') != std::string::npos) {
    if (executable(name)) return name;
    return absl::NotFoundError(absl::StrCat(name, " is not an executable file"));
  }
  const char* path = std::getenv("PATH");
  std::string dirs = path != nullptr ? path : "/usr/bin:/bin";
  size_t start = 0;
  while (start <= dirs.size()) {
    size_t colon = dirs.find(':', start);
    if (colon == std::string::npos) colon = dirs.size();
    const std::string dir = dirs.substr(start, colon - start);
    if (!dir.empty() && executable(dir + "/" + name)) return dir + "/" + name;
    start = colon + 1;
  }
  return absl::NotFoundError(absl::StrCat(name, " is not in PATH (", dirs, ")"));
}

absl::StatusOr<CommandResult> RunWithInput(const std::vector<std::string>& argv,
                                           const std::map<std::string, std::string>& env,
                                           const std::string& input,
                                           std::chrono::milliseconds timeout) {
  int in[2], out[2];
  if (::pipe2(in, O_CLOEXEC) != 0) return absl::InternalError("pipe failed");
  if (::pipe2(out, O_CLOEXEC) != 0) {
    ::close(in[0]);
    ::close(in[1]);
    return absl::InternalError("pipe failed");
  }
  // The caller may block signals (a signalfd loop): the child starts with none blocked.
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in[0], 0);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  posix_spawn_file_actions_adddup2(&fa, out[1], 2);
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  std::vector<std::string> envs = MergedEnv(env);
  std::vector<char*> envp;
  for (std::string& e : envs) envp.push_back(e.data());
  envp.push_back(nullptr);
  pid_t pid = -1;
  const int rc = ::posix_spawnp(&pid, args[0], &fa, &attr, args.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  ::close(in[0]);
  ::close(out[1]);
  if (rc != 0) {
    ::close(in[1]);
    ::close(out[0]);
    return absl::NotFoundError(absl::StrCat("cannot run ", argv[0], ": ", std::strerror(rc)));
  }
  // The input is one short command: it fits the pipe's buffer, so this write does not block.
  signal(SIGPIPE, SIG_IGN);
  ssize_t w = ::write(in[1], input.data(), input.size());
  (void)w;
  ::close(in[1]);
  CommandResult result;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  bool timed_out = false;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    pollfd p{out[0], POLLIN, 0};
    const int n = ::poll(&p, 1, static_cast<int>(left.count()));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) continue;
    char buf[4096];
    const ssize_t r = ::read(out[0], buf, sizeof buf);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    if (result.output.size() < (64 << 10)) result.output.append(buf, static_cast<size_t>(r));
  }
  ::close(out[0]);
  if (timed_out) ::kill(pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (timed_out) {
    return absl::DeadlineExceededError(
        absl::StrCat(argv[0], " did not finish within ", timeout.count(), " ms"));
  }
  result.status = status;
  return result;
}

ProcessHost::ProcessHost(nvml::Nvml* nvml, HostOptions options)
    : nvml_(nvml), options_(std::move(options)), layout_(options_.root) {}

ProcessHost::~ProcessHost() = default;  // ~Subprocess kills and reaps what still runs

std::map<std::string, std::string> ProcessHost::DaemonEnv(const std::string& uuid) const {
  std::map<std::string, std::string> env = options_.env;
  env["CUDA_VISIBLE_DEVICES"] = uuid;
  env["CUDA_MPS_PIPE_DIRECTORY"] = layout_.PipeDir(uuid);
  env["CUDA_MPS_LOG_DIRECTORY"] = layout_.LogDir(uuid);
  return env;
}

absl::StatusOr<int> ProcessHost::StartDaemon(const std::string& uuid) {
  if (!IsGpuUuid(uuid)) return absl::InvalidArgumentError(absl::StrCat("not a GPU UUID: ", uuid));
  for (const std::string& d : {layout_.PipeDir(uuid), layout_.LogDir(uuid)}) {
    if (absl::Status s = MakeDirs(d); !s.ok()) return s;
  }
  // Looked up at each start, not once: an idle mps-daemon (nothing desired) must not need the
  // driver's binary, and a driver installed later is found.
  auto control = FindProgram(options_.control);
  if (!control.ok()) return control.status();
  SpawnOptions o;
  o.argv = {*control, "-f"};
  o.env = DaemonEnv(uuid);
  o.output_path = layout_.LogDir(uuid) + "/slicer-control.out";
  // A control daemon left behind by a dead mps-daemon would hold the pipe folder, and the next
  // mps-daemon could not start one there ("already running").
  o.die_with_parent = true;
  auto child = Subprocess::Spawn(o);
  if (!child.ok()) return child.status();
  const int pid = child->pid();
  children_.emplace(pid, std::move(*child));
  return pid;
}

std::optional<int> ProcessHost::WaitExit(int pid, std::chrono::milliseconds timeout) {
  auto it = children_.find(pid);
  if (it == children_.end()) return 0;
  std::optional<int> status = it->second.Wait(timeout);
  if (status) children_.erase(it);
  return status;
}

void ProcessHost::Kill(int pid) {
  children_.erase(pid);  // ~Subprocess: SIGKILL and reap
}

absl::StatusOr<std::string> ControlCommand(const std::string& control,
                                           const std::map<std::string, std::string>& env,
                                           const std::string& command,
                                           std::chrono::milliseconds timeout) {
  auto r = RunWithInput({control}, env, command + "\n", timeout);
  if (!r.ok()) return r.status();
  std::string out(absl::StripAsciiWhitespace(r->output));
  if (!WIFEXITED(r->status) || WEXITSTATUS(r->status) != 0) {
    return absl::UnavailableError(absl::StrCat(
        "\"", command, "\" failed (", control, " exit ",
        WIFEXITED(r->status) ? WEXITSTATUS(r->status) : -1, ")", out.empty() ? "" : ": ",
        out.substr(0, 200)));
  }
  return out;
}

absl::StatusOr<std::string> ProcessHost::Control(const std::string& uuid,
                                                 const std::string& command) {
  return ControlCommand(options_.control, DaemonEnv(uuid), command, options_.control_timeout);
}

absl::StatusOr<nvml::ComputeMode> ProcessHost::GetComputeMode(const std::string& uuid) {
  if (nvml_ == nullptr) return absl::FailedPreconditionError("NVML is not loaded");
  return nvml_->GetComputeMode(uuid);
}

absl::Status ProcessHost::SetComputeMode(const std::string& uuid, nvml::ComputeMode mode) {
  if (nvml_ == nullptr) return absl::FailedPreconditionError("NVML is not loaded");
  return nvml_->SetComputeMode(uuid, mode);
}

void ProcessHost::Publish(const std::string& uuid, const std::optional<DaemonState>& state) {
  const std::string path = layout_.StateFile(uuid);
  if (!state) {
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
      SLOG(kWarning, "mps_state_not_removed").Kv("path", path).Kv("error", std::strerror(errno));
    }
    return;
  }
  absl::Status s = MakeDirs(layout_.GpuDir(uuid));
  if (s.ok()) s = WriteFileAtomic(path, FormatState(*state));
  if (!s.ok()) SLOG(kError, "mps_state_not_written").Kv("error", std::string(s.message()));
}

std::optional<nvml::ComputeMode> ProcessHost::SavedMode(const std::string& uuid) {
  auto text = ReadSmallFile(layout_.SavedModeFile(uuid), 256);
  if (!text.ok()) return std::nullopt;
  return ModeFromName(std::string(absl::StripAsciiWhitespace(*text)));
}

void ProcessHost::SaveMode(const std::string& uuid, std::optional<nvml::ComputeMode> mode) {
  const std::string path = layout_.SavedModeFile(uuid);
  if (!mode) {
    ::unlink(path.c_str());
    return;
  }
  absl::Status s = MakeDirs(layout_.GpuDir(uuid));
  if (s.ok()) s = WriteFileAtomic(path, std::string(nvml::ToString(*mode)) + "\n");
  if (!s.ok()) SLOG(kError, "mps_mode_not_saved").Kv("error", std::string(s.message()));
}

int64_t ProcessHost::WallMs() { return WallClockMs(); }

}  // namespace slicer::mps
