#include "src/plugin/mps_health.h"

#include "src/common/clock.h"
#include "src/mps/files.h"
#include "src/mps/layout.h"

namespace slicer::plugin {

MpsHealthWatcher::MpsHealthWatcher(std::string mps_root, std::vector<std::string> uuids,
                                   MpsHealthOptions options, OnChange on_change)
    : root_(std::move(mps_root)),
      uuids_(std::move(uuids)),
      options_(std::move(options)),
      on_change_(std::move(on_change)) {
  if (!options_.wall_ms) options_.wall_ms = WallClockMs;
}

MpsHealthWatcher::~MpsHealthWatcher() { Stop(); }

void MpsHealthWatcher::CheckOnce() {
  const mps::Layout layout(root_);
  const int64_t now = options_.wall_ms();
  for (const std::string& uuid : uuids_) {
    std::string reason;
    bool healthy = false;
    auto text = ReadSmallFile(layout.StateFile(uuid), 4096);
    if (!text.ok()) {
      reason = text.status().code() == absl::StatusCode::kNotFound
                   ? "no MPS control daemon yet (is slicer mps-daemon running on this node?)"
                   : std::string(text.status().message());
    } else {
      healthy = mps::StateHealthy(*text, now, options_.stale.count(), &reason);
    }
    auto it = healthy_.find(uuid);
    if (it == healthy_.end() || it->second != healthy) {
      healthy_[uuid] = healthy;
      on_change_(uuid, healthy, healthy ? "MPS control daemon ready" : reason);
    }
  }
}

void MpsHealthWatcher::Start() {
  if (thread_.joinable()) return;
  CheckOnce();
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = false;
  }
  thread_ = std::thread([this] {
    std::unique_lock<std::mutex> lock(mu_);
    while (!cv_.wait_for(lock, options_.interval, [this] { return stop_; })) {
      lock.unlock();
      CheckOnce();
      lock.lock();
    }
  });
}

void MpsHealthWatcher::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

}  // namespace slicer::plugin
