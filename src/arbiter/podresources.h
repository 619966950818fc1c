// Pod attribution on a Kubernetes node: the kubelet's PodResources API v1 (List) maps the device
// plugin's replica IDs to pod / namespace / container; the API server (pods bound to this node,
// with the DaemonSet's service account) adds each pod's UID and gpu-slicer annotations.
#ifndef SLICER_ARBITER_PODRESOURCES_H_
#define SLICER_ARBITER_PODRESOURCES_H_

#include <chrono>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "src/arbiter/attribution.h"
#include "src/common/clock.h"
#include "src/k8s/api_client.h"

namespace slicer::arbiter {

inline constexpr char kDefaultPodResourcesSocket[] = "/var/lib/kubelet/pod-resources/kubelet.sock";

struct ContainerDevices {
  PodRef ref;  // ns, pod, container (no uid / annotations: the kubelet does not say)
  std::string resource;
  std::vector<std::string> device_ids;
};

// PodResourcesLister.List on the kubelet's unix socket, with a deadline.
absl::StatusOr<std::vector<ContainerDevices>> ListPodResources(const std::string& socket_path,
                                                               std::chrono::milliseconds deadline);

struct PodMeta {
  std::string uid;
  std::optional<double> weight;
  std::optional<Priority> priority;
};

// Reads one pod object's UID and annotations (JSON text of a Pod). Annotations that do not parse
// are dropped with a warning naming the pod and the value.
absl::StatusOr<PodMeta> PodMetaFromJson(const std::string& pod_json);

// GET /api/v1/pods?fieldSelector=spec.nodeName=<node>: (namespace, name) -> meta.
absl::StatusOr<std::map<std::pair<std::string, std::string>, PodMeta>> ListNodePods(
    const k8s::ApiServer& server, const std::string& node);

// The Attributor over both. Answers from a cache; a replica ID it does not know triggers a
// refresh, at most once per `min_refresh` (the kubelet lists a container's devices from its
// Allocate on, so a refresh finds a new container's replicas).
class KubeletAttributor : public Attributor {
 public:
  KubeletAttributor(std::string podresources_socket, std::optional<k8s::ApiServer> api,
                    std::string node, const Clock& clock,
                    Clock::Duration min_refresh = std::chrono::seconds(1));
  std::optional<PodRef> OwnerOf(const std::string& replica_id) override;
  // Re-reads both sources; the cache is replaced only when the kubelet answered.
  absl::Status Refresh();

 private:
  const std::string socket_;
  const std::optional<k8s::ApiServer> api_;
  const std::string node_;
  const Clock& clock_;
  const Clock::Duration min_refresh_;
  std::mutex mu_;
  std::map<std::string, PodRef> owner_;  // replica ID -> container
  std::optional<Clock::TimePoint> refreshed_at_;
};

}  // namespace slicer::arbiter

#endif  // SLICER_ARBITER_PODRESOURCES_H_
