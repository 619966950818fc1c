// The device plugin as a whole: from a config and the GPUs NVML reports, one ResourceServer per
// advertised resource, registered with the kubelet; a health monitor feeding them; node labels.
//
// Start() is all-or-nothing: on error nothing is left serving, so a caller that reloads can
// fall back to the config that ran before. Thread-safety: one owner thread calls Start, Stop,
// Reregister; health updates arrive on the monitor's thread.
#ifndef SLICER_PLUGIN_PLUGIN_H_
#define SLICER_PLUGIN_PLUGIN_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "src/config/config.h"
#include "src/nvml/nvml.h"
#include "src/plugin/allocate.h"
#include "src/plugin/health.h"
#include "src/plugin/mps_health.h"
#include "src/plugin/resource_server.h"

namespace slicer::plugin {

struct PluginOptions {
  std::string kubelet_socket = "/var/lib/kubelet/device-plugins/kubelet.sock";
  std::string feature_file;    // empty: no labels written
  std::string shim_dir;        // host directory with libslicer.so; empty: none
  std::string arbiter_socket;  // host path of the arbiter's socket; empty: none (allocate.h)
  AllocationPolicy allocation_policy = AllocationPolicy::kPacked;
  HealthOptions health;
  XidPolicy xid_policy;
  MpsHealthOptions mps_health;
};

class Plugin {
 public:
  // `nvml` may be null: then no GPUs are advertised (failOnInitError=false on a node whose driver
  // did not load). Not owned.
  Plugin(nvml::Nvml* nvml, PluginOptions options);
  ~Plugin();
  Plugin(const Plugin&) = delete;
  Plugin& operator=(const Plugin&) = delete;

  // Discovers GPUs, resolves the config's resources against them, serves and registers each
  // resource, starts health monitoring, writes labels, and tells `slicer mps-daemon` which GPUs
  // are shared through MPS (<flags.mpsRoot>/desired; an empty list when none are, once MPS was
  // used on the node, so that it stops their daemons). Registration failures are not fatal (the
  // kubelet may not be up yet; RegisterPending retries); everything else is.
  absl::Status Start(const config::Config& config);
  void Stop();
  bool running() const { return !servers_.empty() || started_; }

  // The kubelet restarted (it removes every socket in its directory when it starts): serve on
  // new sockets and register again, keeping the same resources and health.
  absl::Status Restart();
  // Registers servers that have not been registered since they last started. OK when all are.
  absl::Status RegisterPending();
  // True when some server's socket file no longer exists (someone removed it).
  bool SocketMissing() const;

  const std::vector<std::unique_ptr<ResourceServer>>& servers() const { return servers_; }
  const std::vector<Resource>& resources() const { return resources_; }

 private:
  enum class HealthSource { kXid, kMps };
  void OnHealth(HealthSource source, const std::string& uuid, bool healthy,
                const std::string& reason);
  // Unhealthy by either source. Requires health_mu_.
  bool UnhealthyLocked(const std::string& uuid) const {
    return unhealthy_.count(uuid) > 0 || mps_unhealthy_.count(uuid) > 0;
  }

  nvml::Nvml* nvml_;
  PluginOptions options_;
  config::Config config_;
  bool started_ = false;
  std::vector<Resource> resources_;
  AllocateOptions allocate_options_;
  std::vector<std::unique_ptr<ResourceServer>> servers_;
  std::vector<bool> registered_;
  std::mutex health_mu_;
  std::set<std::string> unhealthy_;  // by XIDs; guarded by health_mu_; survives Restart()
  std::set<std::string> mps_unhealthy_;  // daemon not ready; guarded by health_mu_
  std::unique_ptr<HealthMonitor> monitor_;
  std::unique_ptr<MpsHealthWatcher> mps_watcher_;
};

}  // namespace slicer::plugin

#endif  // SLICER_PLUGIN_PLUGIN_H_
