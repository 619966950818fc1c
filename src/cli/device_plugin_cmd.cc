// `slicer device-plugin`: flags and environment → config → NVML → Plugin, then an event loop on
// signals (SIGHUP reloads, SIGTERM/SIGINT stop) and the kubelet's socket directory (a new
// kubelet.sock means the kubelet restarted: serve again and re-register).
#include <poll.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "src/cli/commands.h"
#include "src/cli/config_source.h"
#include "src/cli/flags.h"
#include "src/common/paths.h"
#include "src/common/log.h"
#include "src/common/units.h"
#include "src/config/config.h"
#include "src/nvml/nvml.h"
#include "src/plugin/plugin.h"

extern char** environ;

namespace slicer::cli {
namespace {

void DefineFlags(FlagSet& f) {
  f.Add("config-file", "CONFIG_FILE", "", "NVIDIA version: v1 config file");
  f.Add("config-dir", "CONFIG_FILE_SRCDIR", "",
        "directory of named config files; the node label picks one");
  f.Add("default-config", "DEFAULT_CONFIG", "", "config name used when the node has no label");
  f.Add("fallback-strategies", "FALLBACK_STRATEGIES", "named,single",
        "what to use without a label: named, single, empty");
  f.Add("node-name", "NODE_NAME", "", "this node's name, for the config label watch");
  f.Add("node-label", "NODE_LABEL", "nvidia.com/device-plugin.config",
        "the node label that names the config");
  f.Add("kube-api-server", "SLICER_KUBE_API_SERVER", "",
        "API server URL (default: in-cluster from KUBERNETES_SERVICE_HOST/PORT)");
  f.Add("kubelet-socket", "KUBELET_SOCKET", "/var/lib/kubelet/device-plugins/kubelet.sock",
        "the kubelet's registration socket; plugin sockets go in the same directory");
  f.Add("mig-strategy", "MIG_STRATEGY", "", "none (single and mixed are not supported yet)");
  f.Add("fail-on-init-error", "FAIL_ON_INIT_ERROR", "",
        "exit when NVML cannot be loaded (true) or advertise nothing and wait (false)", true);
  f.Add("nvidia-driver-root", "NVIDIA_DRIVER_ROOT", "", "host directory of the driver");
  f.Add("pass-device-specs", "PASS_DEVICE_SPECS", "", "add /dev/nvidia* device specs", true);
  f.Add("device-list-strategy", "DEVICE_LIST_STRATEGY", "",
        "envvar, volume-mounts, cdi-annotations, cdi-cri (comma list)");
  f.Add("device-id-strategy", "DEVICE_ID_STRATEGY", "", "uuid or index");
  f.Add("cdi-annotation-prefix", "CDI_ANNOTATION_PREFIX", "", "prefix of CDI annotations");
  f.Add("feature-file", "SLICER_FEATURE_FILE",
        "/etc/kubernetes/node-feature-discovery/features.d/gpu-slicer",
        "NFD local feature file for node labels (empty: none)");
  f.Add("shim-dir", "SLICER_SHIM_DIR", "/usr/local/lib/gpu-slicer",
        "host directory holding libslicer.so (without it, memory-capped allocations are refused)");
  f.Add("arbiter-socket", "SLICER_ARBITER_SOCKET", "",
        absl::StrCat("host path of the node arbiter's socket (slicer arbiter --socket); shared "
                     "containers get its directory mounted read-only at ",
                     plugin::kArbiterContainerDir, " (empty: no arbiter)"));
  f.Add("allocation-policy", "SLICER_ALLOCATION_POLICY", "packed",
        "packed (k replicas on one GPU) or distributed (spread over GPUs)");
  f.Add("health-probe-interval", "SLICER_HEALTH_PROBE_INTERVAL", "5s",
        "how often an unhealthy GPU is asked whether it answers again");
  f.Add("health-recovery-delay", "SLICER_HEALTH_RECOVERY_DELAY", "60s",
        "how long after its last XID a GPU that answers is trusted again");
  f.Add("mps-root", "MPS_ROOT", "",
        "host directory of the MPS daemons' pipes and state, shared with slicer mps-daemon "
        "(overrides flags.mpsRoot; default /run/nvidia/mps)");
  f.Add("log-level", "SLICER_LOG_LEVEL", "info", "debug, info, warning, error");
}

// Flag values that override the config file, from one source (flags or environment).
absl::StatusOr<config::Overrides> FlagOverrides(const FlagSet& f) {
  config::Overrides o;
  auto str = [&](const char* name, std::optional<std::string>& out) {
    if (auto v = f.FromFlag(name)) out = *v;
  };
  auto boolean = [&](const char* name, std::optional<bool>& out) -> absl::Status {
    if (auto v = f.FromFlag(name)) {
      auto b = ParseBool(*v);
      if (!b.ok())
        return absl::InvalidArgumentError(absl::StrCat("--", name, ": ", b.status().message()));
      out = *b;
    }
    return absl::OkStatus();
  };
  str("mig-strategy", o.mig_strategy);
  str("nvidia-driver-root", o.nvidia_driver_root);
  str("device-list-strategy", o.device_list_strategy);
  str("device-id-strategy", o.device_id_strategy);
  str("cdi-annotation-prefix", o.cdi_annotation_prefix);
  str("mps-root", o.mps_root);
  if (auto s = boolean("fail-on-init-error", o.fail_on_init_error); !s.ok()) return s;
  if (auto s = boolean("pass-device-specs", o.pass_device_specs); !s.ok()) return s;
  return o;
}

std::map<std::string, std::string> Environment() {
  std::map<std::string, std::string> env;
  for (char** e = environ; e && *e; ++e) {
    std::string kv = *e;
    size_t eq = kv.find('=');
    if (eq != std::string::npos) env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  return env;
}

// The config in force: the selected file (or defaults), then environment, then flags.
// Prints every problem; returns nullopt when there was any.
std::optional<config::Config> LoadConfig(const FlagSet& flags, ConfigSource& source) {
  auto selected = source.Select();
  if (!selected.ok()) {
    SLOG(kError, "config_select_failed").Kv("error", std::string(selected.status().message()));
    return std::nullopt;
  }
  config::Config cfg;
  if (!selected->empty()) {
    config::ParseResult parsed = config::ParseFile(*selected);
    if (!parsed.ok()) {
      for (const auto& e : parsed.errors) {
        SLOG(kError, "config_error")
            .Kv("file", *selected)
            .Kv("line", e.line)
            .Kv("path", e.path)
            .Kv("error", e.message);
        std::fprintf(stderr, "%s\n", config::FormatError(*selected, e).c_str());
      }
      return std::nullopt;
    }
    cfg = parsed.config;
  }
  auto env = config::OverridesFromEnvironment(Environment());
  auto fl = FlagOverrides(flags);
  absl::Status s = !env.ok()  ? env.status()
                   : !fl.ok() ? fl.status()
                              : config::ApplyOverrides(*env, *fl, cfg);
  if (!s.ok()) {
    SLOG(kError, "config_override_error").Kv("error", std::string(s.message()));
    return std::nullopt;
  }
  if (cfg.flags.mig_strategy != "none") {
    SLOG(kError, "config_unsupported")
        .Kv("migStrategy", cfg.flags.mig_strategy)
        .Kv("error", "MIG strategies are not supported yet: use migStrategy none");
    return std::nullopt;
  }
  SLOG(kInfo, "config_loaded")
      .Kv("file", selected->empty() ? "(defaults)" : *selected)
      .Kv("sharing", config::ToString(cfg.Strategy()))
      .Kv("resources", cfg.mps ? cfg.mps->resources.size() : cfg.time_slicing.resources.size());
  return cfg;
}

}  // namespace

int DevicePluginMain(int argc, char** argv) {
  FlagSet flags("slicer device-plugin [flags]");
  DefineFlags(flags);
  if (int rc = ParseCommandLine(flags, argc, argv, "slicer device-plugin"); rc >= 0) return rc;

  plugin::PluginOptions options;
  options.kubelet_socket = flags.Get("kubelet-socket");
  options.feature_file = flags.Get("feature-file");
  options.shim_dir = flags.Get("shim-dir");
  options.arbiter_socket = flags.Get("arbiter-socket");
  if (!options.arbiter_socket.empty()) {
    if (absl::Status s = plugin::ValidateArbiterSocket(options.arbiter_socket); !s.ok()) {
      std::fprintf(stderr, "slicer device-plugin: --arbiter-socket: %s\n",
                   std::string(s.message()).c_str());
      return 2;
    }
    SLOG(kInfo, "arbiter_wiring")
        .Kv("socket", options.arbiter_socket)
        .Kv("container_dir", plugin::kArbiterContainerDir);
  }
  std::string policy = flags.Get("allocation-policy");
  if (policy != "packed" && policy != "distributed") {
    std::fprintf(stderr,
                 "slicer device-plugin: --allocation-policy: \"%s\" is not packed or distributed\n",
                 policy.c_str());
    return 2;
  }
  options.allocation_policy = policy == "packed" ? plugin::AllocationPolicy::kPacked
                                                 : plugin::AllocationPolicy::kDistributed;
  auto probe = ParseDuration(flags.Get("health-probe-interval"));
  auto recovery = ParseDuration(flags.Get("health-recovery-delay"));
  if (!probe.ok() || !recovery.ok() || probe->count() <= 0) {
    std::fprintf(
        stderr, "slicer device-plugin: bad health duration: %s\n",
        std::string((!probe.ok()      ? probe.status()
                     : !recovery.ok() ? recovery.status()
                                      : absl::InvalidArgumentError("probe interval must be > 0"))
                        .message())
            .c_str());
    return 2;
  }
  options.health.probe_interval = std::chrono::duration_cast<std::chrono::milliseconds>(*probe);
  options.health.recovery_delay = *recovery;
  const char* disable = std::getenv("DP_DISABLE_HEALTHCHECKS");
  const char* enable = std::getenv("DP_ENABLE_HEALTHCHECKS");
  options.xid_policy =
      plugin::XidPolicy::FromEnvironment(disable ? disable : "", enable ? enable : "");

  ConfigSourceOptions cso;
  cso.config_file = flags.Get("config-file");
  cso.config_dir = flags.Get("config-dir");
  cso.default_config = flags.Get("default-config");
  cso.fallback_strategies = flags.Get("fallback-strategies");
  cso.node_name = flags.Get("node-name");
  cso.node_label = flags.Get("node-label");
  cso.api_server = flags.Get("kube-api-server");
  auto source = ConfigSource::Create(cso);
  if (!source.ok()) {
    std::fprintf(stderr, "slicer device-plugin: %s\n",
                 std::string(source.status().message()).c_str());
    return 2;
  }

  // Signals are taken synchronously through a signalfd, so handlers never race the loop.
  sigset_t mask;
  sigemptyset(&mask);
  for (int sig : {SIGHUP, SIGTERM, SIGINT, SIGQUIT}) sigaddset(&mask, sig);
  sigprocmask(SIG_BLOCK, &mask, nullptr);
  int sfd = signalfd(-1, &mask, SFD_CLOEXEC);

  std::optional<config::Config> cfg = LoadConfig(flags, **source);
  if (!cfg) return 1;

  std::unique_ptr<nvml::Nvml> nvml;
  {
    auto loaded = nvml::Load({cfg->flags.nvidia_driver_root});
    if (!loaded.ok()) {
      SLOG(kError, "nvml_init_failed")
          .Kv("error", std::string(loaded.status().message()))
          .Kv("failOnInitError", cfg->flags.fail_on_init_error);
      if (cfg->flags.fail_on_init_error) return 1;
    } else {
      nvml = std::move(*loaded);
    }
  }

  const std::string socket_dir = Dirname(options.kubelet_socket);
  const std::string kubelet_name = Basename(options.kubelet_socket);
  int ifd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  if (ifd < 0 ||
      inotify_add_watch(ifd, socket_dir.c_str(), IN_CREATE | IN_MOVED_TO | IN_DELETE) < 0) {
    SLOG(kError, "watch_failed").Kv("dir", socket_dir).Kv("error", std::strerror(errno));
    return 1;
  }

  plugin::Plugin p(nvml.get(), options);
  if (absl::Status s = p.Start(*cfg); !s.ok()) {
    SLOG(kError, "start_failed").Kv("error", std::string(s.message()));
    return 1;
  }
  // The kubelet.sock we last registered with (device, inode). A restarted kubelet deletes our
  // socket and creates a new kubelet.sock; whichever of the two we notice first re-registers, and
  // the other must not restart a second time against the same kubelet.
  using SocketId = std::pair<dev_t, ino_t>;
  auto kubelet_id = [&]() -> SocketId {
    struct stat st;
    if (stat(options.kubelet_socket.c_str(), &st) != 0) return {0, 0};
    return {st.st_dev, st.st_ino};
  };
  SocketId registered_with{0, 0};
  auto register_pending = [&] {
    SocketId id = kubelet_id();
    bool ok = p.RegisterPending().ok();
    if (ok) registered_with = id == SocketId{0, 0} ? kubelet_id() : id;
    return !ok;
  };
  bool pending = register_pending();

  for (;;) {
    pollfd fds[3] = {{sfd, POLLIN, 0}, {ifd, POLLIN, 0}, {(*source)->fd(), POLLIN, 0}};
    int n = poll(fds, (*source)->fd() >= 0 ? 3 : 2, 1000);
    if (n < 0 && errno != EINTR) {
      SLOG(kError, "poll_failed").Kv("error", std::strerror(errno));
      break;
    }
    bool restart = false, reload = false;
    if (n > 0 && (fds[0].revents & POLLIN)) {
      signalfd_siginfo si;
      if (read(sfd, &si, sizeof si) == sizeof si) {
        if (si.ssi_signo == SIGHUP) {
          reload = true;
        } else {
          SLOG(kInfo, "stopping").Kv("signal", strsignal(static_cast<int>(si.ssi_signo)));
          p.Stop();
          (*source)->Stop();
          return 0;
        }
      }
    }
    if (n > 0 && (fds[1].revents & POLLIN)) {
      alignas(inotify_event) char buf[4096];
      ssize_t len;
      while ((len = read(ifd, buf, sizeof buf)) > 0) {
        for (char* q = buf; q < buf + len;) {
          auto* ev = reinterpret_cast<inotify_event*>(q);
          if (ev->len > 0 && kubelet_name == ev->name && (ev->mask & (IN_CREATE | IN_MOVED_TO))) {
            SocketId id = kubelet_id();
            bool known = id != SocketId{0, 0} && id == registered_with;
            SLOG(kInfo, "kubelet_socket_created")
                .Kv("path", options.kubelet_socket)
                .Kv("effect", known ? "already registered with it" : "registering");
            restart |= !known;
          }
          q += sizeof(inotify_event) + ev->len;
        }
      }
    }
    if (n > 0 && (*source)->fd() >= 0 && (fds[2].revents & POLLIN)) {
      reload |= (*source)->Changed();
    }
    if (reload) {
      SLOG(kInfo, "reloading");
      std::optional<config::Config> next = LoadConfig(flags, **source);
      if (!next) {
        SLOG(kError, "reload_rejected").Kv("effect", "the running config stays in force");
      } else if (absl::Status s = p.Start(*next); !s.ok()) {
        SLOG(kError, "reload_failed")
            .Kv("error", std::string(s.message()))
            .Kv("effect", "restarting with the previous config");
        if (absl::Status back = p.Start(*cfg); !back.ok()) {
          SLOG(kError, "restore_failed").Kv("error", std::string(back.message()));
          return 1;
        }
      } else {
        cfg = next;
        SLOG(kInfo, "reloaded");
      }
      pending = register_pending();
    }
    if (!restart && p.SocketMissing()) {
      SLOG(kWarning, "plugin_socket_missing").Kv("effect", "serving again");
      restart = true;
    }
    if (restart) {
      SocketId id = kubelet_id();
      absl::Status s = p.Restart();
      pending = !s.ok();
      if (s.ok()) registered_with = id == SocketId{0, 0} ? kubelet_id() : id;
      if (!s.ok()) SLOG(kWarning, "reregister_pending").Kv("error", std::string(s.message()));
    } else if (pending) {
      pending = register_pending();
    }
  }
  p.Stop();
  return 1;
}

}  // namespace slicer::cli
