#include "src/mps/supervisor.h"

#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "src/common/log.h"

namespace slicer::mps {
namespace {

std::string DescribeExit(int status) {
  if (WIFEXITED(status)) return absl::StrCat("exited with status ", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return absl::StrCat("killed by signal ", WTERMSIG(status));
  return absl::StrCat("ended (wait status ", status, ")");
}

}  // namespace

Supervisor::Supervisor(Host& host, Clock& clock, SupervisorOptions options)
    : host_(host), clock_(clock), options_(options) {}

Clock::Duration Supervisor::Backoff(int steps) const {
  Clock::Duration d = std::chrono::seconds(1);
  for (int i = 0; i < steps && d < options_.max_backoff; ++i) d *= 2;
  return std::min<Clock::Duration>(d, options_.max_backoff);
}

void Supervisor::SetDesired(const std::vector<DesiredGpu>& gpus) {
  std::map<std::string, int> want;
  for (const DesiredGpu& d : gpus) want[d.uuid] = std::clamp(d.threads, 1, 100);
  for (auto it = gpus_.begin(); it != gpus_.end();) {
    if (want.count(it->first)) {
      ++it;
      continue;
    }
    SLOG(kInfo, "mps_gpu_removed").Kv("gpu", it->first);
    Stop(it->first, it->second);
    it = gpus_.erase(it);
  }
  for (const auto& [u, threads] : want) {
    if (auto it = gpus_.find(u); it != gpus_.end()) {
      if (it->second.threads != threads) {
        SLOG(kInfo, "mps_threads_bound_changed")
            .Kv("gpu", u)
            .Kv("threads", threads)
            .Kv("effect", "set at the next probe; the running MPS server keeps its bound until "
                          "its clients are gone");
        it->second.threads = threads;
        it->second.next_probe = clock_.Now();
      }
      continue;
    }
    SLOG(kInfo, "mps_gpu_added").Kv("gpu", u).Kv("threads", threads);
    Gpu g;
    g.state.phase = Phase::kStarting;
    g.state.reason = "not started yet";
    g.next_start = clock_.Now();
    g.threads = threads;
    gpus_.emplace(u, g);
  }
}

void Supervisor::Down(const std::string& uuid, Gpu& g, Phase phase, const std::string& reason) {
  if (g.state.pid > 0) host_.Kill(g.state.pid);
  const bool was_stable =
      g.state.phase == Phase::kReady && clock_.Now() - g.ready_since >= options_.stable_after;
  if (was_stable) g.backoff_steps = 0;
  g.state.pid = 0;
  g.state.phase = phase;
  g.state.reason = reason;
  g.failed_probes = 0;
  const Clock::Duration wait = Backoff(g.backoff_steps++);
  g.next_start = clock_.Now() + wait;
  SLOG(kWarning, "mps_daemon_down")
      .Kv("gpu", uuid)
      .Kv("reason", reason)
      .Kv("restart_in_ms", std::chrono::duration_cast<std::chrono::milliseconds>(wait).count());
  Publish(uuid, g, true);
}

void Supervisor::StartIfDue(const std::string& uuid, Gpu& g) {
  if (g.state.pid > 0 || clock_.Now() < g.next_start) return;
  // Remember the mode it had before we first changed it (kept across mps-daemon restarts).
  if (options_.manage_compute_mode && !host_.SavedMode(uuid)) {
    auto mode = host_.GetComputeMode(uuid);
    if (!mode.ok()) {
      Down(uuid, g, Phase::kFailed,
           absl::StrCat("cannot read the compute mode: ", mode.status().message()));
      return;
    }
    host_.SaveMode(uuid, *mode);
  }
  if (absl::Status s = options_.manage_compute_mode
                           ? host_.SetComputeMode(uuid, nvml::ComputeMode::kExclusiveProcess)
                           : absl::OkStatus();
      !s.ok()) {
    Down(uuid, g, Phase::kFailed,
         absl::StrCat("cannot set the compute mode to EXCLUSIVE_PROCESS: ", s.message()));
    return;
  }
  auto pid = host_.StartDaemon(uuid);
  if (!pid.ok()) {
    Down(uuid, g, Phase::kFailed,
         absl::StrCat("cannot start the control daemon: ", pid.status().message()));
    return;
  }
  if (g.ever_started) ++g.state.restarts;
  g.ever_started = true;
  g.state.pid = *pid;
  g.state.phase = Phase::kStarting;
  g.state.reason = "waiting for the control daemon to answer";
  g.started = clock_.Now();
  g.next_probe = clock_.Now();
  g.failed_probes = 0;
  SLOG(kInfo, "mps_daemon_started").Kv("gpu", uuid).Kv("pid", *pid).Kv("restarts", g.state.restarts);
  Publish(uuid, g, true);
}

void Supervisor::Probe(const std::string& uuid, Gpu& g) {
  if (g.state.pid <= 0 || clock_.Now() < g.next_probe) return;
  g.next_probe = clock_.Now() + options_.probe_interval;
  auto reply = host_.Control(uuid, "get_default_active_thread_percentage");
  if (reply.ok()) {
    g.failed_probes = 0;
    double have = 0;
    if (!absl::SimpleAtod(absl::StripAsciiWhitespace(*reply), &have) ||
        std::abs(have - g.threads) > 0.05) {
      // The bound is the daemon's: a client's CUDA_MPS_ACTIVE_THREAD_PERCENTAGE can only lower it.
      auto set = host_.Control(uuid, absl::StrCat("set_default_active_thread_percentage ", g.threads));
      if (!set.ok()) {
        SLOG(kWarning, "mps_threads_not_set")
            .Kv("gpu", uuid)
            .Kv("threads", g.threads)
            .Kv("error", std::string(set.status().message()))
            .Kv("effect", g.state.phase == Phase::kReady ? "tried again at the next probe"
                                                         : "not ready until it is set");
        return;
      }
      SLOG(kInfo, "mps_threads_set").Kv("gpu", uuid).Kv("threads", g.threads).Kv("had", *reply);
    }
    if (g.state.phase != Phase::kReady) {
      g.state.phase = Phase::kReady;
      g.state.reason.clear();
      g.ready_since = clock_.Now();
      SLOG(kInfo, "mps_daemon_ready").Kv("gpu", uuid).Kv("pid", g.state.pid);
      Publish(uuid, g, true);
    }
    return;
  }
  const std::string why(reply.status().message());
  if (g.state.phase == Phase::kStarting) {
    if (clock_.Now() - g.started >= options_.start_timeout) {
      Down(uuid, g, Phase::kDown, absl::StrCat("did not answer within the start timeout: ", why));
    }
    return;
  }
  if (++g.failed_probes >= options_.probe_failures) {
    Down(uuid, g, Phase::kDown,
         absl::StrCat("stopped answering (", g.failed_probes, " probes): ", why));
  }
}

void Supervisor::Tick() {
  for (auto& [uuid, g] : gpus_) {
    if (g.state.pid > 0) {
      if (std::optional<int> status = host_.WaitExit(g.state.pid, std::chrono::milliseconds(0))) {
        g.state.pid = 0;  // already reaped: nothing to kill
        Down(uuid, g, Phase::kDown, absl::StrCat("the control daemon ", DescribeExit(*status)));
      }
    }
    StartIfDue(uuid, g);
    Probe(uuid, g);
    Publish(uuid, g, false);
  }
}

void Supervisor::Stop(const std::string& uuid, Gpu& g) {
  if (g.state.pid > 0) {
    auto r = host_.Control(uuid, "quit");
    if (!r.ok()) SLOG(kWarning, "mps_quit_failed").Kv("gpu", uuid).Kv("error", std::string(r.status().message()));
    const bool exited = r.ok() && host_.WaitExit(g.state.pid, options_.stop_timeout).has_value();
    if (!exited) host_.Kill(g.state.pid);
    g.state.pid = 0;
  }
  host_.Publish(uuid, std::nullopt);
  if (!options_.manage_compute_mode) {
    SLOG(kInfo, "mps_daemon_stopped").Kv("gpu", uuid).Kv("compute_mode", "kept");
    return;
  }
  const std::optional<nvml::ComputeMode> before = host_.SavedMode(uuid);
  const nvml::ComputeMode restore = before.value_or(nvml::ComputeMode::kDefault);
  if (absl::Status s = host_.SetComputeMode(uuid, restore); !s.ok()) {
    SLOG(kError, "mps_compute_mode_not_restored")
        .Kv("gpu", uuid)
        .Kv("mode", nvml::ToString(restore))
        .Kv("error", std::string(s.message()));
  } else {
    host_.SaveMode(uuid, std::nullopt);
    SLOG(kInfo, "mps_daemon_stopped").Kv("gpu", uuid).Kv("compute_mode", nvml::ToString(restore));
  }
}

void Supervisor::Shutdown() {
  for (auto& [uuid, g] : gpus_) Stop(uuid, g);
  gpus_.clear();
}

void Supervisor::Publish(const std::string& uuid, Gpu& g, bool force) {
  if (!force && g.published && clock_.Now() - g.last_publish < options_.heartbeat) return;
  g.state.heartbeat_ms = host_.WallMs();
  host_.Publish(uuid, g.state);
  g.last_publish = clock_.Now();
  g.published = true;
}

std::optional<DaemonState> Supervisor::StateOf(const std::string& uuid) const {
  auto it = gpus_.find(uuid);
  if (it == gpus_.end()) return std::nullopt;
  return it->second.state;
}

}  // namespace slicer::mps
