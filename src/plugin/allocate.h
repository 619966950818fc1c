// The answers of one resource's server, as pure functions of the resource and the request:
// Allocate (what a container receives) and GetPreferredAllocation (which replicas to give).
// No I/O, no locking: the server calls these under its own lock with a snapshot of the resource.
#ifndef SLICER_PLUGIN_ALLOCATE_H_
#define SLICER_PLUGIN_ALLOCATE_H_

#include <algorithm>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "deviceplugin_v1beta1.pb.h"
#include "src/config/config.h"
#include "src/plugin/resource.h"

namespace slicer::plugin {

struct AllocateOptions {
  std::vector<config::DeviceListStrategy> list_strategies = {config::DeviceListStrategy::kEnvvar};
  config::DeviceIdStrategy id_strategy = config::DeviceIdStrategy::kUuid;
  bool pass_device_specs = false;
  bool fail_requests_greater_than_one = false;
  std::string cdi_annotation_prefix = "cdi.k8s.io/";
  // Host paths of the device nodes every GPU container needs (/dev/nvidiactl, ...).
  std::vector<std::string> control_device_paths;
  // Host prefix of device nodes ("" or "/"; e.g. "/run/nvidia/driver" for a containerised
  // driver): stripped to form container paths.
  std::string dev_root;
  // Host directory holding libslicer.so and ld.so.preload; empty when the shim is not installed,
  // in which case a resource that enforces memory fails the allocation rather than run uncapped.
  std::string shim_host_dir;
  // Host path of the node arbiter's socket (`slicer arbiter --socket`); empty: containers are not
  // connected to an arbiter. Must pass ValidateArbiterSocket. Containers of a shared resource
  // that carries the shim get the socket's directory mounted read-only at kArbiterContainerDir
  // (connecting to a unix socket needs no write access to the mount; a directory rather than the
  // socket file, so that the socket an arbiter re-creates when it restarts is reachable) plus
  // SLICER_ARBITER_SOCKET and SLICER_REPLICA_IDS.
  std::string arbiter_socket;
  // Host directory of the MPS daemons' files (src/mps/layout.h); used by MPS resources only.
  std::string mps_root = "/run/nvidia/mps";
};

// Where containers see the arbiter's socket directory: the arbiter's default directory on the
// host, so that the socket has the same path inside and outside by default.
inline constexpr char kArbiterContainerDir[] = "/var/run/gpu-slicer";

// OK when `host_socket` can be handed to containers: an absolute path with a file name, not in
// "/" (the host's root would be mounted), and short enough for a unix socket address at
// kArbiterContainerDir. Errors name the path and what is wrong.
absl::Status ValidateArbiterSocket(const std::string& host_socket);

// NVIDIA's names, so that runtimes and tools that know NVIDIA's plugin understand the answer.
inline constexpr char kVisibleDevicesEnv[] = "NVIDIA_VISIBLE_DEVICES";
inline constexpr char kVolumeMountsRoot[] = "/var/run/nvidia-container-devices";
inline constexpr char kCdiKind[] = "k8s.device-plugin.nvidia.com/gpu";
inline constexpr char kCdiAnnotationName[] = "nvidia-device-plugin";

// Builds one container's answer. `request_id` makes the CDI annotation key unique and becomes
// SLICER_CONTAINER_ID. Errors are InvalidArgument with a message that names what was asked and
// what is allowed: an empty request, an ID the resource does not have, an ID asked twice, more
// than one replica of a shared resource under failRequestsGreaterThanOne, a memory-capped
// resource without the shim installed.
//
// An MPS resource's container (Resource::mps) must hold replicas of one GPU only (an MPS client
// talks to one control daemon, and each GPU has its own); it gets that GPU's pipe directory
// (<mps_root>/<uuid>/pipe at <kContainerRoot>/<uuid>/pipe, CUDA_MPS_PIPE_DIRECTORY) and the
// daemons' shared memory (<mps_root>/shm at /dev/shm), and is sized by the k of N replicas it
// holds: CUDA_MPS_ACTIVE_THREAD_PERCENTAGE = MpsThreadPercentage(k, N) and
// CUDA_MPS_PINNED_DEVICE_MEM_LIMIT = k/N of the GPU's memory, in MiB, for device 0 (the only
// device the container sees). The shim's memory cap applies as for time-slicing; MPS clients
// connect to the arbiter observe-only (SLICER_ARBITER_OBSERVE=1: metrics, never leased; MPS runs
// them concurrently and their time is split by threads).
//
// SLICER_REPLICA_IDS lists the container's replica IDs in request order, as many whole IDs as fit
// in the arbiter's HELLO (SLICER_ARB_REPLICAS_LEN - 1 bytes, about 14 IDs of real UUIDs): a
// longer list would be cut inside an ID by the client and refused by the arbiter. A container
// holding more replicas is then weighted by the IDs listed.
// The thread percentage of k of a GPU's N MPS replicas: 100 k / N, at least 1. With one replica
// per container it is also the bound the plugin sets on the GPU's control daemon.
inline int MpsThreadPercentage(int k, int n) { return n > 0 ? std::max(1, 100 * k / n) : 100; }

absl::StatusOr<v1beta1::ContainerAllocateResponse> AllocateContainer(
    const Resource& resource, const std::vector<std::string>& ids, const AllocateOptions& options,
    const std::string& request_id);

enum class AllocationPolicy {
  kPacked,       // fill one GPU before the next: k replicas of one GPU are a k/N share of it
  kDistributed,  // spread over GPUs, least-used first (NVIDIA's behaviour for shared GPUs)
};

// Chooses `size` replicas from `available`, always including `must_include`. Packed: GPUs that
// already hold part of the request first, then the best fit (fewest free replicas that still
// hold the rest), so a request lands on one GPU whenever one can hold it; lowest index on ties.
// Errors when `available` cannot satisfy the request or names IDs the resource does not have.
absl::StatusOr<std::vector<std::string>> PreferredAllocation(
    const Resource& resource, const std::vector<std::string>& available,
    const std::vector<std::string>& must_include, int size, AllocationPolicy policy);

}  // namespace slicer::plugin

#endif  // SLICER_PLUGIN_ALLOCATE_H_
