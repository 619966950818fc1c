#include "src/plugin/health.h"

#include <algorithm>
#include <cctype>
#include <set>
#include <sstream>

#include "src/common/log.h"

namespace slicer::plugin {
namespace {

constexpr uint64_t kApplicationXids[] = {13, 31, 43, 45, 68, 109};

// Parses NVIDIA's list syntax: comma-separated XIDs, or "all"/"xids" for everything.
// Malformed entries are logged and skipped, as NVIDIA does.
void ParseList(const std::string& text, bool& all, std::set<uint64_t>& xids) {
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    std::string t;
    for (char c : item) {
      if (!std::isspace(static_cast<unsigned char>(c))) {
        t.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
      }
    }
    if (t.empty()) continue;
    if (t == "all" || t == "xids") {
      all = true;
      continue;
    }
    bool digits = std::all_of(t.begin(), t.end(), [](char c) { return std::isdigit(c); });
    if (!digits || t.size() > 19) {
      SLOG(kWarning, "health_xid_ignored").Kv("value", t).Kv("why", "not a number");
      continue;
    }
    xids.insert(std::stoull(t));
  }
}

}  // namespace

XidPolicy XidPolicy::FromEnvironment(const std::string& disable, const std::string& enable) {
  XidPolicy p;
  std::set<uint64_t> disabled, enabled;
  ParseList(disable, p.all_disabled_, disabled);
  ParseList(enable, p.all_enabled_, enabled);
  for (uint64_t x : kApplicationXids) p.disabled_[x] = true;
  for (uint64_t x : disabled) p.disabled_[x] = true;
  for (uint64_t x : enabled) p.disabled_[x] = false;
  return p;
}

bool XidPolicy::AllDisabled() const {
  if (all_enabled_ || !all_disabled_) return false;
  // Everything is off unless some XID was explicitly enabled.
  return std::none_of(disabled_.begin(), disabled_.end(),
                      [](const auto& kv) { return !kv.second; });
}

bool XidPolicy::Ignored(uint64_t xid) const {
  if (all_enabled_) return false;
  auto it = disabled_.find(xid);
  if (it != disabled_.end()) return it->second;
  return all_disabled_;
}

std::string XidPolicy::Describe() const {
  if (AllDisabled()) return "all";
  if (all_enabled_) return "none";
  std::string s;
  for (const auto& [xid, off] : disabled_) {
    if (!off) continue;
    if (!s.empty()) s += ",";
    s += std::to_string(xid);
  }
  if (all_disabled_) s += s.empty() ? "all-but-enabled" : ",all-but-enabled";
  return s;
}

HealthMonitor::HealthMonitor(nvml::Nvml* nvml, XidPolicy policy, std::vector<std::string> uuids,
                             HealthOptions options, OnChange on_change, Clock& clock)
    : nvml_(nvml),
      policy_(std::move(policy)),
      uuids_(std::move(uuids)),
      options_(options),
      on_change_(std::move(on_change)),
      clock_(clock) {}

HealthMonitor::~HealthMonitor() { Stop(); }

void HealthMonitor::Start() {
  if (thread_.joinable() || policy_.AllDisabled()) {
    if (policy_.AllDisabled()) SLOG(kInfo, "health_checks_disabled");
    return;
  }
  stop_ = false;
  thread_ = std::thread([this] { Loop(); });
}

void HealthMonitor::Stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

void HealthMonitor::Loop() {
  SLOG(kInfo, "health_monitor_started")
      .Kv("gpus", uuids_.size())
      .Kv("ignored_xids", policy_.Describe());
  std::map<std::string, Clock::TimePoint> unhealthy_since_xid;  // uuid -> time of last XID
  auto mark_unhealthy = [&](const std::string& uuid, const std::string& reason) {
    bool was_healthy = !unhealthy_since_xid.count(uuid);
    unhealthy_since_xid[uuid] = clock_.Now();
    if (was_healthy) on_change_(uuid, false, reason);
  };
  for (const std::string& u : seed_) unhealthy_since_xid[u] = clock_.Now();
  while (!stop_) {
    auto event = nvml_->WaitForXid(options_.probe_interval);
    if (stop_) break;
    if (!event.ok()) {
      // As NVIDIA does: if the driver cannot tell us about faults, no GPU is trusted.
      SLOG(kError, "health_wait_failed").Kv("error", std::string(event.status().message()));
      for (const std::string& u : uuids_) mark_unhealthy(u, "event wait failed");
      std::this_thread::sleep_for(options_.probe_interval);
    } else if (event->has_value()) {
      const nvml::XidEvent& e = **event;
      bool known = std::find(uuids_.begin(), uuids_.end(), e.uuid) != uuids_.end();
      if (!known) {
        SLOG(kInfo, "xid_unknown_gpu").Kv("uuid", e.uuid).Kv("xid", e.xid);
      } else if (policy_.Ignored(e.xid)) {
        SLOG(kInfo, "xid_ignored").Kv("uuid", e.uuid).Kv("xid", e.xid);
      } else {
        SLOG(kWarning, "xid_critical").Kv("uuid", e.uuid).Kv("xid", e.xid);
        mark_unhealthy(e.uuid, "xid " + std::to_string(e.xid));
      }
    }
    // Probe the unhealthy ones.
    for (auto it = unhealthy_since_xid.begin(); it != unhealthy_since_xid.end();) {
      if (clock_.Now() - it->second < options_.recovery_delay) {
        ++it;
        continue;
      }
      absl::Status probe = nvml_->Probe(it->first);
      if (probe.ok()) {
        std::string uuid = it->first;
        it = unhealthy_since_xid.erase(it);
        on_change_(uuid, true, "answers NVML again");
      } else {
        ++it;
      }
    }
  }
}

}  // namespace slicer::plugin
