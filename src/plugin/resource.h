// What one advertised resource is made of: its name, its GPUs, how many replicas each GPU is cut
// into, and the replica IDs the kubelet sees. Plain values, built from the resolved config and
// the discovered GPUs; no I/O.
#ifndef SLICER_PLUGIN_RESOURCE_H_
#define SLICER_PLUGIN_RESOURCE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace slicer::plugin {

struct Gpu {
  std::string uuid;
  int index = 0;
  std::string name;
  uint64_t memory_bytes = 0;
  int numa_node = -1;
  int minor_number = -1;
  std::vector<std::string> device_paths;  // host paths of its device nodes
};

struct Replica {
  std::string id;  // "<uuid>::<n>" when shared, "<uuid>" when not
  size_t gpu = 0;  // index into Resource::gpus
  int number = 0;  // n
};

struct Resource {
  std::string name;  // e.g. nvidia.com/gpu.shared
  int replicas = 1;  // per GPU; 1 means not shared
  bool enforce_memory = false;
  bool allow_opt_out = false;
  // Shared through MPS (sharing.mps) rather than time-sliced: Allocate connects containers to
  // their GPU's MPS control daemon and sizes them (allocate.h).
  bool mps = false;
  std::vector<Gpu> gpus;
  std::vector<Replica> devices;  // every replica of every GPU, GPU by GPU

  bool shared() const { return replicas > 1; }
  // The GPU a replica ID belongs to, or nullopt for an ID this resource does not have.
  std::optional<size_t> GpuOf(std::string_view replica_id) const;
};

// Builds the replica list: for each GPU, `replicas` IDs "<uuid>::0".."<uuid>::N-1" (or the bare
// UUID when replicas == 1, as NVIDIA's plugin does).
Resource MakeResource(std::string name, int replicas, std::vector<Gpu> gpus);

// "GPU-1::3" -> "GPU-1"; an ID without "::" is returned as it is.
std::string_view StripReplicaSuffix(std::string_view id);

// The socket file name for a resource: "gpu-slicer-nvidia.com-gpu.shared.sock".
std::string SocketName(std::string_view resource_name);

}  // namespace slicer::plugin

#endif  // SLICER_PLUGIN_RESOURCE_H_
