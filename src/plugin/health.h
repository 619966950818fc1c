// GPU health from the driver's XID events.
//
// A critical XID marks the GPU Unhealthy (every replica of it goes Unhealthy at once, since they
// are the same silicon). An unhealthy GPU is probed at every interval and comes back Healthy once
// it answers NVML again and no XID has arrived for it for `recovery_delay`. Application XIDs
// (13, 31, 43, 45, 68, 109) are ignored, as NVIDIA's plugin does, and NVIDIA's knobs adjust the
// list: DP_DISABLE_HEALTHCHECKS ("all"/"xids", or XIDs to ignore as well) and
// DP_ENABLE_HEALTHCHECKS (XIDs that count even when disabled, or "all").
#ifndef SLICER_PLUGIN_HEALTH_H_
#define SLICER_PLUGIN_HEALTH_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "src/common/clock.h"
#include "src/nvml/nvml.h"

namespace slicer::plugin {

// Which XIDs make a GPU unhealthy. Pure; built from the two environment values.
class XidPolicy {
 public:
  static XidPolicy FromEnvironment(const std::string& disable, const std::string& enable);
  bool AllDisabled() const;  // health checking is off altogether
  bool Ignored(uint64_t xid) const;
  std::string Describe() const;  // for the start-up log

 private:
  bool all_disabled_ = false;
  bool all_enabled_ = false;
  std::map<uint64_t, bool> disabled_;  // xid -> disabled?
};

struct HealthOptions {
  std::chrono::milliseconds probe_interval{5000};
  std::chrono::nanoseconds recovery_delay = std::chrono::seconds(60);
};

// Runs one thread that waits for XID events and probes unhealthy GPUs. `on_change` is called on
// that thread, once per transition, with the GPU's UUID and its new health.
// Thread-safety: Start/Stop from one owner thread.
class HealthMonitor {
 public:
  using OnChange =
      std::function<void(const std::string& uuid, bool healthy, const std::string& reason)>;
  HealthMonitor(nvml::Nvml* nvml, XidPolicy policy, std::vector<std::string> uuids,
                HealthOptions options, OnChange on_change, Clock& clock = RealClock());
  ~HealthMonitor();
  HealthMonitor(const HealthMonitor&) = delete;
  HealthMonitor& operator=(const HealthMonitor&) = delete;

  // GPUs to treat as unhealthy from the start (known bad before this monitor existed); they are
  // probed like any other. Call before Start().
  void SeedUnhealthy(std::vector<std::string> uuids) { seed_ = std::move(uuids); }
  void Start();
  void Stop();

 private:
  void Loop();

  nvml::Nvml* nvml_;
  XidPolicy policy_;
  std::vector<std::string> uuids_;
  HealthOptions options_;
  OnChange on_change_;
  Clock& clock_;
  std::vector<std::string> seed_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace slicer::plugin

#endif  // SLICER_PLUGIN_HEALTH_H_
