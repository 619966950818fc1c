// Pod attribution: which pod / namespace / container holds a replica ID, and the pod's
// gpu-slicer annotations. The arbiter asks through this interface; the Kubernetes
// implementation (podresources.h) combines the kubelet's PodResources API with the API server.
#ifndef SLICER_ARBITER_ATTRIBUTION_H_
#define SLICER_ARBITER_ATTRIBUTION_H_

#include <optional>
#include <string>

#include "src/arbiter/scheduler.h"

namespace slicer::arbiter {

// Pod annotations read by the arbiter.
inline constexpr char kWeightAnnotation[] = "gpu-slicer.io/weight";
inline constexpr char kPriorityAnnotation[] = "gpu-slicer.io/priority";

struct PodRef {
  std::string ns, pod, container;
  std::string uid;                   // "" when unknown
  std::optional<double> weight;      // from kWeightAnnotation
  std::optional<Priority> priority;  // from kPriorityAnnotation
  bool operator==(const PodRef& o) const {
    return ns == o.ns && pod == o.pod && container == o.container;
  }
};

// Thread-safety: implementations are called from the arbiter's event loop only, and must answer
// from a cache quickly (a refresh may block for at most about a second, rarely).
class Attributor {
 public:
  virtual ~Attributor() = default;
  // The container that holds `replica_id` (<GPU-UUID>::<n>), or nullopt when the kubelet does
  // not list it.
  virtual std::optional<PodRef> OwnerOf(const std::string& replica_id) = 0;
};

}  // namespace slicer::arbiter

#endif  // SLICER_ARBITER_ATTRIBUTION_H_
