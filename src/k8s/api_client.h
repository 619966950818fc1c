// A minimal Kubernetes API server client: enough to read and watch this node's Node object
// with the DaemonSet's service account. libcurl underneath; JSON with nlohmann::json.
//
// Thread-safety: an ApiClient may be used from one thread at a time.
#ifndef SLICER_K8S_API_CLIENT_H_
#define SLICER_K8S_API_CLIENT_H_

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "absl/status/statusor.h"

namespace slicer::k8s {

struct ApiServer {
  std::string url;      // https://10.100.0.1:443, or http://127.0.0.1:8001 (kubectl proxy, tests)
  std::string token;    // bearer token; empty: none
  std::string ca_file;  // CA bundle for https; empty: system default
};

// The in-cluster API server from KUBERNETES_SERVICE_HOST/PORT and the service account files
// under `sa_dir` (/var/run/secrets/kubernetes.io/serviceaccount). A non-empty `override_url`
// replaces the address (the token and CA are still used when present).
absl::StatusOr<ApiServer> InClusterApiServer(
    const std::string& override_url,
    const std::string& sa_dir = "/var/run/secrets/kubernetes.io/serviceaccount");

struct NodeInfo {
  std::map<std::string, std::string> labels;
  std::string resource_version;
};

// GET /api/v1/nodes/<name>.
absl::StatusOr<NodeInfo> GetNode(const ApiServer& server, const std::string& name);

// Follows one node's labels: a GET, then a watch from its resourceVersion, reconnecting with
// back-off when the stream ends or fails. When `label`'s value changes, writes a byte to a pipe
// whose read end is fd() (for poll) and records the new value.
class NodeLabelWatcher {
 public:
  NodeLabelWatcher(ApiServer server, std::string node, std::string label);
  ~NodeLabelWatcher();
  NodeLabelWatcher(const NodeLabelWatcher&) = delete;
  NodeLabelWatcher& operator=(const NodeLabelWatcher&) = delete;

  // Fetches the node once, synchronously (so the first config choice sees the label), then
  // starts following it in the background. The first fetch failing is returned; the watcher
  // still starts and keeps trying.
  absl::Status Start();
  void Stop();

  int fd() const { return pipe_[0]; }
  // Drains fd(). True when the label changed since the last call.
  bool TakeChange();
  // The label's current value; nullopt when the node has no such label (or was never read).
  std::optional<std::string> Value() const;

 private:
  void Run();
  void Update(const std::map<std::string, std::string>& labels);
  bool WatchOnce(const std::string& resource_version);

  const ApiServer server_;
  const std::string node_;
  const std::string label_;
  int pipe_[2] = {-1, -1};
  mutable std::mutex mu_;
  std::optional<std::string> value_;  // guarded by mu_
  std::string resource_version_;      // guarded by mu_
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace slicer::k8s

#endif  // SLICER_K8S_API_CLIENT_H_
