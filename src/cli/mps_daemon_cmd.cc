// `slicer mps-daemon`: keeps one NVIDIA MPS control daemon per GPU that the device plugin shares
// through MPS (the plugin writes <mps-root>/desired; src/mps/files.h). Runs in its own DaemonSet
// (deploy/helm), so that restarting or upgrading the plugin leaves running MPS clients alone.
// SIGTERM/SIGINT stop every control daemon and restore the compute modes; docs/mps.md.
#include <signal.h>
#include <sys/signalfd.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <optional>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "src/cli/commands.h"
#include "src/cli/flags.h"
#include "src/common/clock.h"
#include "src/common/files.h"
#include "src/common/log.h"
#include "src/mps/files.h"
#include "src/mps/host.h"
#include "src/mps/layout.h"
#include "src/mps/supervisor.h"
#include "src/nvml/nvml.h"

namespace slicer::cli {

int MpsDaemonMain(int argc, char** argv) {
  FlagSet f("slicer mps-daemon [flags]");
  f.Add("mps-root", "MPS_ROOT", mps::kDefaultRoot,
        "host directory of the MPS pipes, logs and state (NVIDIA's flags.mpsRoot)");
  f.Add("nvidia-driver-root", "NVIDIA_DRIVER_ROOT", "/", "host directory of the driver");
  f.Add("mps-control", "SLICER_MPS_CONTROL", "nvidia-cuda-mps-control",
        "the MPS control binary (a path, or a name looked up in PATH)");
  f.Add("compute-mode", "SLICER_MPS_COMPUTE_MODE", "exclusive",
        "exclusive: each shared GPU is set to EXCLUSIVE_PROCESS while its daemon runs, and "
        "restored after; keep: the mode is left as the administrator set it");
  f.Add("tick", "SLICER_MPS_TICK", "200", "milliseconds between checks of the daemons");
  f.Add("log-level", "SLICER_LOG_LEVEL", "info", "debug, info, warning, error");
  if (int rc = ParseCommandLine(f, argc, argv, "slicer mps-daemon"); rc >= 0) return rc;

  const std::string root = f.Get("mps-root");
  if (absl::Status s = mps::ValidateRoot(root); !s.ok()) {
    std::fprintf(stderr, "slicer mps-daemon: --mps-root: %s\n", std::string(s.message()).c_str());
    return 2;
  }
  int tick_ms = 0;
  if (!absl::SimpleAtoi(f.Get("tick"), &tick_ms) || tick_ms < 10 || tick_ms > 10000) {
    std::fprintf(stderr, "slicer mps-daemon: --tick: milliseconds between 10 and 10000\n");
    return 2;
  }
  const std::string compute_mode = f.Get("compute-mode");
  if (compute_mode != "exclusive" && compute_mode != "keep") {
    std::fprintf(stderr, "slicer mps-daemon: --compute-mode: exclusive or keep, not \"%s\"\n",
                 compute_mode.c_str());
    return 2;
  }
  const mps::Layout layout(root);
  if (absl::Status s = MakeDirs(layout.ShmDir()); !s.ok()) {
    SLOG(kError, "mps_root_unusable").Kv("path", layout.ShmDir()).Kv("error", std::string(s.message()));
    return 1;
  }

  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGHUP);
  sigprocmask(SIG_BLOCK, &mask, nullptr);
  const int sfd = ::signalfd(-1, &mask, SFD_CLOEXEC);
  if (sfd < 0) {
    SLOG(kError, "signalfd_failed").Kv("error", std::strerror(errno));
    return 1;
  }

  std::unique_ptr<nvml::Nvml> nvml;
  mps::HostOptions ho;
  ho.root = root;
  ho.control = f.Get("mps-control");
  mps::ProcessHost host(nullptr, ho);
  mps::SupervisorOptions so;
  so.manage_compute_mode = compute_mode == "exclusive";
  mps::Supervisor supervisor(host, RealClock(), so);
  SLOG(kInfo, "mps_daemon_started")
      .Kv("root", root)
      .Kv("control", ho.control)
      .Kv("compute_mode", compute_mode);

  std::optional<std::string> last_text;
  Clock::TimePoint next_nvml_try{};
  for (;;) {
    // The desired set: the file as the plugin last wrote it (missing: nothing is shared).
    auto text = ReadSmallFile(layout.DesiredFile());
    std::string now_text = text.ok() ? *text : std::string();
    if (!text.ok() && text.status().code() != absl::StatusCode::kNotFound) {
      SLOG(kError, "mps_desired_unreadable").Kv("error", std::string(text.status().message()));
    } else if (!last_text || *last_text != now_text) {
      auto desired = mps::ParseDesired(now_text);
      if (!desired.ok()) {
        SLOG(kError, "mps_desired_invalid")
            .Kv("path", layout.DesiredFile())
            .Kv("error", std::string(desired.status().message()))
            .Kv("effect", "the previous set stays in force");
        last_text = now_text;  // said once, not at every tick; a new text is read again
      } else {
        // NVML is for the compute modes only: with --compute-mode=keep it is never loaded.
        const bool need_nvml = !desired->empty() && so.manage_compute_mode;
        if (need_nvml && nvml == nullptr && RealClock().Now() >= next_nvml_try) {
          auto loaded = nvml::Load({f.Get("nvidia-driver-root")});
          if (loaded.ok()) {
            nvml = std::move(*loaded);
            host.SetNvml(nvml.get());
          } else {
            SLOG(kError, "nvml_init_failed").Kv("error", std::string(loaded.status().message()));
            next_nvml_try = RealClock().Now() + std::chrono::seconds(10);
          }
        }
        if (!need_nvml || nvml != nullptr) {
          SLOG(kInfo, "mps_desired").Kv("gpus", static_cast<int64_t>(desired->size()));
          supervisor.SetDesired(*desired);
          last_text = now_text;
        }
      }
    }
    supervisor.Tick();

    pollfd p{sfd, POLLIN, 0};
    if (::poll(&p, 1, tick_ms) > 0) {
      signalfd_siginfo si;
      if (::read(sfd, &si, sizeof si) == static_cast<ssize_t>(sizeof si)) {
        if (si.ssi_signo == SIGHUP) continue;  // re-reads the desired file at once
        SLOG(kInfo, "mps_daemon_stopping").Kv("signal", static_cast<int>(si.ssi_signo));
        supervisor.Shutdown();
        ::close(sfd);
        return 0;
      }
    }
  }
}

}  // namespace slicer::cli
