#include "src/plugin/plugin.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <map>

#include "absl/strings/str_cat.h"
#include "src/common/files.h"
#include "src/common/paths.h"
#include "src/common/log.h"
#include "src/common/shim_contract.h"
#include "src/mps/files.h"
#include "src/mps/layout.h"
#include "src/plugin/labels.h"

namespace slicer::plugin {
namespace {

bool Exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

// Writes <shim_dir>/ld.so.preload naming the shim as containers see it. Returns the shim dir to
// use, or "" when the shim is not installed there (capped allocations then fail closed).
std::string PrepareShimDir(const std::string& shim_dir) {
  if (shim_dir.empty()) return "";
  std::string lib = shim_dir + "/" + SLICER_SHIM_NAME;
  if (!Exists(lib)) {
    SLOG(kWarning, "shim_missing")
        .Kv("path", lib)
        .Kv("effect", "memory-capped resources will refuse allocations");
    return "";
  }
  std::string preload = shim_dir + "/ld.so.preload";
  std::string want = std::string(SLICER_SHIM_CONTAINER_DIR) + "/" + SLICER_SHIM_NAME + "\n";
  auto have = ReadSmallFile(preload, 4096);
  if (!have.ok() || *have != want) {
    if (absl::Status s = WriteFileAtomic(preload, want); !s.ok()) {
      SLOG(kError, "shim_preload_write_failed").Kv("path", preload).Kv("error", std::string(s.message()));
      return "";
    }
  }
  return shim_dir;
}

// Tells `slicer mps-daemon` which GPUs to run control daemons for. Nothing is written on a node
// that never used MPS (no root directory and nothing to share).
absl::Status WriteMpsDesired(const std::string& root, const std::vector<mps::DesiredGpu>& gpus) {
  if (gpus.empty() && !Exists(root)) return absl::OkStatus();
  if (absl::Status s = mps::ValidateRoot(root); !s.ok()) return s;
  if (absl::Status s = MakeDirs(root); !s.ok()) return s;
  return WriteFileAtomic(mps::Layout(root).DesiredFile(), mps::FormatDesired(gpus));
}

}  // namespace

Plugin::Plugin(nvml::Nvml* nvml, PluginOptions options)
    : nvml_(nvml), options_(std::move(options)) {}

Plugin::~Plugin() { Stop(); }

absl::Status Plugin::Start(const config::Config& config) {
  Stop();
  nvml::System system;
  if (nvml_ != nullptr) {
    auto discovered = nvml_->Discover();
    if (!discovered.ok()) return discovered.status();
    system = std::move(*discovered);
  }
  std::vector<config::GpuRef> refs;
  for (const nvml::Device& d : system.devices) {
    config::GpuRef ref;
    ref.uuid = d.uuid;
    ref.index = d.index;
    ref.product = d.name;
    ref.cc_major = d.cc_major;
    ref.cc_minor = d.cc_minor;
    refs.push_back(std::move(ref));
  }
  auto resolved = config::ResolveResources(config, refs);
  if (!resolved.ok()) return resolved.status();

  std::vector<Resource> resources;
  for (const config::ResolvedResource& rr : *resolved) {
    std::vector<Gpu> gpus;
    for (const std::string& uuid : rr.uuids) {
      for (const nvml::Device& d : system.devices) {
        if (d.uuid != uuid) continue;
        gpus.push_back(Gpu{d.uuid, d.index, d.name, d.memory_bytes, d.numa_node, d.minor_number,
                           d.device_paths});
      }
    }
    Resource r = MakeResource(rr.name, rr.replicas, std::move(gpus));
    r.enforce_memory = rr.enforce_memory;
    r.allow_opt_out = rr.allow_opt_out;
    r.mps = rr.sharing == config::SharingStrategy::kMps;
    resources.push_back(std::move(r));
  }
  const std::string mps_root =
      config.flags.mps_root.empty() ? std::string(mps::kDefaultRoot) : config.flags.mps_root;
  // Per GPU the most threads any of its containers is given (Allocate: 100·k/N), as the control
  // daemon's default: a container's own CUDA_MPS_ACTIVE_THREAD_PERCENTAGE can lower it, not
  // raise it. A bound only where every container holds one replica (failRequestsGreaterThanOne,
  // MPS's default); otherwise one container may hold them all.
  std::vector<mps::DesiredGpu> mps_desired;
  std::map<std::string, size_t> mps_index;  // UUID -> its entry in mps_desired
  for (const Resource& r : resources) {
    if (!r.mps || !r.shared()) continue;
    const int bound =
        config.FailRequestsGreaterThanOne() ? MpsThreadPercentage(1, r.replicas) : 100;
    for (const Gpu& g : r.gpus) {
      auto [it, added] = mps_index.try_emplace(g.uuid, mps_desired.size());
      if (added) mps_desired.emplace_back(g.uuid, bound);
      int& threads = mps_desired[it->second].threads;
      threads = std::max(threads, bound);
    }
  }
  std::vector<std::string> mps_gpus;
  for (const mps::DesiredGpu& d : mps_desired) mps_gpus.push_back(d.uuid);
  if (!mps_gpus.empty()) {
    if (absl::Status s = mps::ValidateRoot(mps_root); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("flags.mpsRoot: ", s.message()));
    }
  }

  AllocateOptions ao;
  ao.list_strategies = config.flags.plugin.device_list_strategy;
  ao.id_strategy = config.flags.plugin.device_id_strategy;
  ao.pass_device_specs = config.flags.plugin.pass_device_specs;
  ao.fail_requests_greater_than_one = config.FailRequestsGreaterThanOne();
  ao.mps_root = mps_root;
  ao.cdi_annotation_prefix = config.flags.plugin.cdi_annotation_prefix;
  ao.control_device_paths = system.control_device_paths;
  ao.dev_root = config.flags.nvidia_dev_root.empty() ? config.flags.nvidia_driver_root
                                                     : config.flags.nvidia_dev_root;
  bool any_capped = false;
  for (const Resource& r : resources) any_capped |= r.enforce_memory;
  ao.shim_host_dir = any_capped ? PrepareShimDir(options_.shim_dir) : options_.shim_dir;
  ao.arbiter_socket = options_.arbiter_socket;

  const std::string socket_dir = Dirname(options_.kubelet_socket);
  std::vector<std::unique_ptr<ResourceServer>> servers;
  for (const Resource& r : resources) {
    auto server = std::make_unique<ResourceServer>(r, ao, options_.allocation_policy, socket_dir);
    absl::Status s = server->Start();
    if (!s.ok()) {
      for (auto& started : servers) started->Stop();
      return s;
    }
    servers.push_back(std::move(server));
  }

  config_ = config;
  resources_ = std::move(resources);
  allocate_options_ = ao;
  servers_ = std::move(servers);
  registered_.assign(servers_.size(), false);
  started_ = true;
  {
    std::lock_guard<std::mutex> lock(health_mu_);
    mps_unhealthy_.clear();
    for (const std::string& uuid : unhealthy_) {
      for (auto& s : servers_) s->SetGpuHealth(uuid, false);
    }
  }
  if (absl::Status s = WriteMpsDesired(mps_root, mps_desired); !s.ok()) {
    SLOG(kError, "mps_desired_not_written")
        .Kv("error", std::string(s.message()))
        .Kv("effect", "slicer mps-daemon keeps the GPUs it had");
  }
  if (!mps_gpus.empty()) {
    mps_watcher_ = std::make_unique<MpsHealthWatcher>(
        mps_root, mps_gpus, options_.mps_health,
        [this](const std::string& uuid, bool healthy, const std::string& reason) {
          OnHealth(HealthSource::kMps, uuid, healthy, reason);
        });
    mps_watcher_->Start();
  }

  if (!options_.feature_file.empty()) {
    NodeFacts facts{system.driver_version, system.cuda_driver_version};
    if (!system.devices.empty()) {
      facts.cc_major = system.devices[0].cc_major;
      facts.cc_minor = system.devices[0].cc_minor;
    }
    absl::Status s = WriteFeatureFile(options_.feature_file, NodeLabels(resources_, facts));
    if (!s.ok()) SLOG(kWarning, "labels_not_written").Kv("error", std::string(s.message()));
  }

  if (nvml_ != nullptr && !system.devices.empty()) {
    std::vector<std::string> uuids;
    for (const nvml::Device& d : system.devices) uuids.push_back(d.uuid);
    monitor_ = std::make_unique<HealthMonitor>(
        nvml_, options_.xid_policy, uuids, options_.health,
        [this](const std::string& uuid, bool healthy, const std::string& reason) {
          OnHealth(HealthSource::kXid, uuid, healthy, reason);
        });
    {
      // GPUs that were unhealthy under the previous config stay so until they answer again.
      std::lock_guard<std::mutex> lock(health_mu_);
      monitor_->SeedUnhealthy(std::vector<std::string>(unhealthy_.begin(), unhealthy_.end()));
    }
    monitor_->Start();
  }

  for (const Resource& r : resources_) {
    SLOG(kInfo, "resource")
        .Kv("name", r.name)
        .Kv("gpus", r.gpus.size())
        .Kv("replicas", r.replicas)
        .Kv("devices", r.devices.size())
        .Kv("memory_caps", r.enforce_memory)
        .Kv("sharing", r.mps ? "mps" : r.shared() ? "time-slicing" : "none");
  }
  absl::Status reg = RegisterPending();
  if (!reg.ok()) SLOG(kWarning, "registration_pending").Kv("error", std::string(reg.message()));
  return absl::OkStatus();
}

void Plugin::Stop() {
  if (monitor_) {
    monitor_->Stop();
    monitor_.reset();
  }
  if (mps_watcher_) {
    mps_watcher_->Stop();
    mps_watcher_.reset();
  }
  for (auto& s : servers_) s->Stop();
  servers_.clear();
  registered_.clear();
  resources_.clear();
  started_ = false;
}

absl::Status Plugin::Restart() {
  for (size_t i = 0; i < servers_.size(); ++i) {
    servers_[i]->Stop();
    absl::Status s = servers_[i]->Start();
    if (!s.ok()) return s;
    registered_[i] = false;
  }
  {
    std::lock_guard<std::mutex> lock(health_mu_);
    for (const std::string& uuid : unhealthy_) {
      for (auto& s : servers_) s->SetGpuHealth(uuid, false);
    }
    for (const std::string& uuid : mps_unhealthy_) {
      for (auto& s : servers_) s->SetGpuHealth(uuid, false);
    }
  }
  return RegisterPending();
}

absl::Status Plugin::RegisterPending() {
  absl::Status first;
  for (size_t i = 0; i < servers_.size(); ++i) {
    if (registered_[i]) continue;
    absl::Status s = servers_[i]->Register(options_.kubelet_socket);
    if (s.ok()) {
      registered_[i] = true;
    } else if (first.ok()) {
      first = s;
    }
  }
  return first;
}

bool Plugin::SocketMissing() const {
  for (const auto& s : servers_) {
    if (!Exists(s->socket_path())) return true;
  }
  return false;
}

void Plugin::OnHealth(HealthSource source, const std::string& uuid, bool healthy,
                      const std::string& reason) {
  bool effective;
  {
    std::lock_guard<std::mutex> lock(health_mu_);
    std::set<std::string>& set = source == HealthSource::kXid ? unhealthy_ : mps_unhealthy_;
    if (healthy) {
      set.erase(uuid);
    } else {
      set.insert(uuid);
    }
    effective = !UnhealthyLocked(uuid);
  }
  LogLine(healthy ? LogLevel::kInfo : LogLevel::kWarning, healthy ? "gpu_healthy" : "gpu_unhealthy")
      .Kv("uuid", uuid)
      .Kv("source", source == HealthSource::kXid ? "xid" : "mps")
      .Kv("reason", reason)
      .Kv("replicas_healthy", effective);
  for (auto& s : servers_) s->SetGpuHealth(uuid, effective);
}

}  // namespace slicer::plugin
