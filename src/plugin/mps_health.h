// The health of the GPUs the plugin shares through MPS, from the state files `slicer mps-daemon`
// keeps (src/mps/files.h): a GPU is healthy while its control daemon is ready and its state is
// fresh. Until the first check says ready, a GPU counts as unhealthy, so no container is given a
// replica before its daemon answers. Runs beside the XID monitor (health.h); the plugin marks a
// GPU's replicas Unhealthy when either says so.
// Thread-safety: Start/Stop from one owner thread; `on_change` is called on the watcher's thread
// (and once per GPU from Start, on the caller's).
#ifndef SLICER_PLUGIN_MPS_HEALTH_H_
#define SLICER_PLUGIN_MPS_HEALTH_H_

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace slicer::plugin {

struct MpsHealthOptions {
  // Shorter than the mps-daemon's shortest restart back-off (1 s), so that a restart is always
  // seen as a spell of Unhealthy (reading one small file per GPU costs nothing).
  std::chrono::milliseconds interval{500};
  // A state not refreshed for this long means the mps-daemon is gone (it refreshes every 2 s).
  std::chrono::milliseconds stale{15000};
  // Wall-clock ms since the epoch; the state's heartbeat is written by another process.
  std::function<int64_t()> wall_ms;
};

class MpsHealthWatcher {
 public:
  using OnChange =
      std::function<void(const std::string& uuid, bool healthy, const std::string& reason)>;
  MpsHealthWatcher(std::string mps_root, std::vector<std::string> uuids, MpsHealthOptions options,
                   OnChange on_change);
  ~MpsHealthWatcher();
  MpsHealthWatcher(const MpsHealthWatcher&) = delete;
  MpsHealthWatcher& operator=(const MpsHealthWatcher&) = delete;

  // Reports every GPU's health once (unhealthy unless its daemon is ready now), then checks
  // every interval on its own thread, reporting transitions.
  void Start();
  void Stop();
  // One round of checks (what the thread does each interval); for tests.
  void CheckOnce();

 private:
  std::string root_;
  std::vector<std::string> uuids_;
  MpsHealthOptions options_;
  OnChange on_change_;
  std::map<std::string, bool> healthy_;  // watcher thread only (and Start before it runs)
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;  // guarded by mu_
  std::thread thread_;
};

}  // namespace slicer::plugin

#endif  // SLICER_PLUGIN_MPS_HEALTH_H_
