#include "src/plugin/allocate.h"

#include <algorithm>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "src/common/arbiter_protocol.h"
#include "src/common/shim_contract.h"
#include "src/mps/layout.h"

namespace slicer::plugin {
namespace {

using config::DeviceIdStrategy;
using config::DeviceListStrategy;

bool Has(const std::vector<DeviceListStrategy>& list, DeviceListStrategy s) {
  return std::find(list.begin(), list.end(), s) != list.end();
}

std::string ContainerPath(const std::string& dev_root, const std::string& host_path) {
  if (dev_root.empty() || dev_root == "/") return host_path;
  if (host_path.rfind(dev_root, 0) == 0) {
    std::string rest = host_path.substr(dev_root.size());
    return rest.empty() || rest[0] != '/' ? "/" + rest : rest;
  }
  return host_path;
}

std::string Truncated(const std::vector<std::string>& ids) {
  constexpr size_t kMax = 8;
  std::vector<std::string> shown(ids.begin(), ids.begin() + std::min(ids.size(), kMax));
  std::string s = absl::StrJoin(shown, ", ");
  if (ids.size() > kMax) absl::StrAppend(&s, ", ... (", ids.size(), " in all)");
  return s;
}

// The longest unix socket path a client can connect to (sun_path holds 108 bytes with the NUL).
constexpr size_t kMaxSocketPath = 107;

// memory x k / N, exact and without overflow (GPU memory is < 2^44, k <= N): the cap of a
// container holding k of a GPU's N replicas.
uint64_t MemoryShare(uint64_t memory, int k, int n) {
  const uint64_t kk = static_cast<uint64_t>(k), nn = static_cast<uint64_t>(n);
  return memory / nn * kk + memory % nn * kk / nn;
}

// The replica IDs for the arbiter's HELLO field, comma-separated and grouped by GPU (in order of
// first appearance), each ID after a GPU's first written without its UUID ("GPU-a::0,::3,GPU-b::2":
// 4-5 bytes per further replica instead of 44), as many whole IDs as fit, and no more than the
// arbiter takes from one client.
std::string ReplicaIdsForArbiter(const std::vector<std::string>& ids) {
  std::vector<std::string> gpus;
  std::map<std::string, std::vector<std::string>> by_gpu;  // UUID -> "::<n>" suffixes
  for (const std::string& id : ids) {
    const std::string_view gpu = StripReplicaSuffix(id);
    if (gpu.size() == id.size()) continue;  // not a replica ID: nothing to weight
    auto [it, added] = by_gpu.try_emplace(std::string(gpu));
    if (added) gpus.push_back(it->first);
    it->second.push_back(id.substr(gpu.size()));
  }
  std::string out;
  int listed = 0;
  for (const std::string& gpu : gpus) {
    bool first = true;
    for (const std::string& suffix : by_gpu[gpu]) {
      std::string entry = first ? gpu + suffix : suffix;
      if (out.size() + (out.empty() ? 0 : 1) + entry.size() > SLICER_ARB_REPLICAS_LEN - 1 ||
          ++listed > SLICER_ARB_MAX_REPLICAS) {
        return out;
      }
      if (!out.empty()) out += ',';
      out += entry;
      first = false;
    }
  }
  return out;
}

}  // namespace

absl::Status ValidateArbiterSocket(const std::string& host_socket) {
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("arbiter socket \"", host_socket, "\" ", why));
  };
  const size_t slash = host_socket.rfind('/');
  if (host_socket.empty() || host_socket[0] != '/' || slash + 1 == host_socket.size()) {
    return bad("must be an absolute path to the socket file, e.g. " SLICER_ARB_DEFAULT_SOCKET);
  }
  const std::string dir = host_socket.substr(0, slash), name = host_socket.substr(slash + 1);
  if (!dir.empty()) {
    for (absl::string_view part : absl::StrSplit(absl::string_view(dir).substr(1), '/')) {
      if (part.empty() || part == "." || part == "..") {
        return bad("must be written without empty, . or .. components");
      }
    }
  }
  // The directory is mounted into every shared container, and a read-only mount still lets them
  // connect to every socket in it: it must not be a directory other daemons keep sockets in.
  static const std::set<std::string> kShared = {"/var/run",
                                                "/var/tmp",
                                                "/dev/shm",
                                                "/var/lib/kubelet",
                                                "/var/lib/kubelet/device-plugins",
                                                "/var/lib/kubelet/pod-resources",
                                                "/run/containerd",
                                                "/var/run/containerd",
                                                "/run/docker",
                                                "/var/run/docker"};
  if (dir.empty() || dir.find('/', 1) == std::string::npos || kShared.count(dir)) {
    return bad(absl::StrCat(
        "is in ", dir.empty() ? "/" : dir,
        ", a top-level or shared system directory: it would be mounted into every shared "
        "container, other daemons' sockets included; give the arbiter a directory of its own, "
        "e.g. " SLICER_ARB_DEFAULT_SOCKET));
  }
  const size_t inside = sizeof kArbiterContainerDir - 1 + 1 + name.size();
  if (host_socket.size() > kMaxSocketPath || inside > kMaxSocketPath) {
    return bad(absl::StrCat("is too long for a unix socket address (", kMaxSocketPath,
                            " bytes at most, here and as ", kArbiterContainerDir, "/", name,
                            " in containers)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<v1beta1::ContainerAllocateResponse> AllocateContainer(
    const Resource& resource, const std::vector<std::string>& ids, const AllocateOptions& options,
    const std::string& request_id) {
  if (ids.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("empty allocation request for ", resource.name, ": no device IDs"));
  }
  if (ids.size() > resource.devices.size()) {
    return absl::InvalidArgumentError(absl::StrCat("request for ", ids.size(), " devices of ",
                                                   resource.name, " is larger than the ",
                                                   resource.devices.size(), " it has"));
  }
  if (resource.shared() && options.fail_requests_greater_than_one && ids.size() > 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "request for ", ids.size(), " replicas of ", resource.name, " (", Truncated(ids),
        ") is too large: failRequestsGreaterThanOne is set, so a container may request at most 1 "
        "replica of a shared GPU resource"));
  }
  // Replicas held per GPU, in first-requested order.
  std::vector<size_t> gpu_order;
  std::map<size_t, int> held;
  std::set<std::string> seen;
  for (const std::string& id : ids) {
    if (!seen.insert(id).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("device ID \"", id, "\" is requested twice for ", resource.name));
    }
    std::optional<size_t> gpu = resource.GpuOf(id);
    if (!gpu) {
      return absl::InvalidArgumentError(absl::StrCat(
          "unknown device ID \"", id.substr(0, 128), "\" for ", resource.name, " (it has ",
          resource.devices.size(), " devices, e.g. \"",
          resource.devices.empty() ? std::string() : resource.devices.front().id, "\")"));
    }
    if (held[*gpu]++ == 0) gpu_order.push_back(*gpu);
  }
  if (resource.mps && gpu_order.size() > 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "request for ", ids.size(), " replicas of ", resource.name, " spans ", gpu_order.size(),
        " GPUs (", Truncated(ids), "): an MPS client connects to one GPU's control daemon, so a "
        "container's replicas of an MPS resource must all be on one GPU"));
  }
  const bool cap = resource.enforce_memory;
  if (cap && options.shim_host_dir.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat(resource.name,
                     " enforces memory caps but the shim is not installed on this node (no "
                     "libslicer.so in --shim-dir when the plugin started or last reloaded): "
                     "refusing to run the container uncapped"));
  }

  std::vector<std::string> device_ids;  // as the runtime should see them
  for (size_t g : gpu_order) {
    const Gpu& gpu = resource.gpus[g];
    device_ids.push_back(options.id_strategy == DeviceIdStrategy::kIndex ? std::to_string(gpu.index)
                                                                         : gpu.uuid);
  }

  v1beta1::ContainerAllocateResponse resp;
  auto& envs = *resp.mutable_envs();
  const auto& ls = options.list_strategies;
  const bool any_cdi =
      Has(ls, DeviceListStrategy::kCdiAnnotations) || Has(ls, DeviceListStrategy::kCdiCri);
  const bool all_cdi = any_cdi && !Has(ls, DeviceListStrategy::kEnvvar) &&
                       !Has(ls, DeviceListStrategy::kVolumeMounts);
  if (any_cdi) {
    std::vector<std::string> cdi_names;
    for (const std::string& d : device_ids) cdi_names.push_back(absl::StrCat(kCdiKind, "=", d));
    if (Has(ls, DeviceListStrategy::kCdiAnnotations)) {
      (*resp.mutable_annotations())[absl::StrCat(options.cdi_annotation_prefix, kCdiAnnotationName,
                                                 "_", request_id)] = absl::StrJoin(cdi_names, ",");
    }
    if (Has(ls, DeviceListStrategy::kCdiCri)) {
      for (const std::string& n : cdi_names) resp.add_cdi_devices()->set_name(n);
    }
  }
  if (!all_cdi) {
    if (Has(ls, DeviceListStrategy::kEnvvar)) {
      envs[kVisibleDevicesEnv] = absl::StrJoin(device_ids, ",");
    }
    if (Has(ls, DeviceListStrategy::kVolumeMounts)) {
      envs[kVisibleDevicesEnv] = kVolumeMountsRoot;
      for (const std::string& d : device_ids) {
        v1beta1::Mount* m = resp.add_mounts();
        m->set_container_path(absl::StrCat(kVolumeMountsRoot, "/", d));
        m->set_host_path("/dev/null");
      }
    }
    if (options.pass_device_specs) {
      std::vector<std::string> paths = options.control_device_paths;
      for (size_t g : gpu_order) {
        for (const std::string& p : resource.gpus[g].device_paths) paths.push_back(p);
      }
      for (const std::string& p : paths) {
        v1beta1::DeviceSpec* spec = resp.add_devices();
        spec->set_host_path(p);
        spec->set_container_path(ContainerPath(options.dev_root, p));
        spec->set_permissions("rw");
      }
    }
  } else {
    // Only CDI: keep the NVIDIA runtime hook from injecting devices by itself.
    envs[kVisibleDevicesEnv] = "void";
  }

  if (cap) {
    std::vector<std::string> limits;
    for (size_t g : gpu_order) {
      const Gpu& gpu = resource.gpus[g];
      limits.push_back(
          absl::StrCat(gpu.uuid, "=", MemoryShare(gpu.memory_bytes, held[g], resource.replicas)));
    }
    envs[SLICER_ENV_MEMORY_LIMITS] = absl::StrJoin(limits, ",");
    envs[SLICER_ENV_ENFORCE] = "1";
    envs[SLICER_ENV_CONTAINER_ID] = request_id;
    if (resource.allow_opt_out) envs[SLICER_ENV_OPT_OUT_ALLOWED] = "1";
    const std::string lib = absl::StrCat(SLICER_SHIM_CONTAINER_DIR, "/", SLICER_SHIM_NAME);
    v1beta1::Mount* m = resp.add_mounts();
    m->set_container_path(lib);
    m->set_host_path(absl::StrCat(options.shim_host_dir, "/", SLICER_SHIM_NAME));
    m->set_read_only(true);
    // An /etc/ld.so.preload that names the shim: applies even when the image sets LD_PRELOAD.
    m = resp.add_mounts();
    m->set_container_path("/etc/ld.so.preload");
    m->set_host_path(absl::StrCat(options.shim_host_dir, "/ld.so.preload"));
    m->set_read_only(true);
  }
  if (resource.mps && resource.shared()) {
    const Gpu& gpu = resource.gpus[gpu_order.front()];
    const int k = held[gpu_order.front()], n = resource.replicas;
    const mps::Layout host(options.mps_root), inside(mps::kContainerRoot);
    envs["CUDA_MPS_PIPE_DIRECTORY"] = inside.PipeDir(gpu.uuid);
    envs["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] = std::to_string(MpsThreadPercentage(k, n));
    // The same k/N as the shim's cap, in whole MiB (MPS's unit): never above the cap.
    const uint64_t mib = MemoryShare(gpu.memory_bytes, k, n) >> 20;
    if (mib > 0) envs["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] = absl::StrCat("0=", mib, "M");
    v1beta1::Mount* m = resp.add_mounts();
    m->set_container_path(inside.PipeDir(gpu.uuid));
    m->set_host_path(host.PipeDir(gpu.uuid));
    m = resp.add_mounts();
    m->set_container_path("/dev/shm");
    m->set_host_path(host.ShmDir());
  }
  // The arbiter shares a GPU's time among the shim's clients: only where the shim is injected,
  // and only for replica IDs (<uuid>::<n>); a whole GPU has nobody to share with. MPS clients
  // connect observe-only: counted in the metrics (memory, busy time, pod), never leased (MPS
  // runs them side by side, and a lease would serialise them again).
  if (cap && resource.shared() && !options.arbiter_socket.empty()) {
    const size_t slash = options.arbiter_socket.rfind('/');
    envs[SLICER_ENV_ARBITER_SOCKET] =
        absl::StrCat(kArbiterContainerDir, options.arbiter_socket.substr(slash));
    envs[SLICER_ENV_REPLICA_IDS] = ReplicaIdsForArbiter(ids);
    if (resource.mps) envs[SLICER_ENV_ARBITER_OBSERVE] = "1";
    v1beta1::Mount* m = resp.add_mounts();
    m->set_container_path(kArbiterContainerDir);
    m->set_host_path(options.arbiter_socket.substr(0, slash));
    m->set_read_only(true);
  }
  return resp;
}

absl::StatusOr<std::vector<std::string>> PreferredAllocation(
    const Resource& resource, const std::vector<std::string>& available,
    const std::vector<std::string>& must_include, int size, AllocationPolicy policy) {
  if (size <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("allocation size must be >= 1, got ", size));
  }
  if (static_cast<size_t>(size) > available.size() ||
      must_include.size() > static_cast<size_t>(size)) {
    return absl::InvalidArgumentError(absl::StrCat("cannot choose ", size, " of ", available.size(),
                                                   " available devices of ", resource.name,
                                                   " with ", must_include.size(), " required"));
  }
  // Available replicas per GPU, in replica order.
  std::map<size_t, std::vector<std::string>> free_by_gpu;
  std::set<std::string> must(must_include.begin(), must_include.end());
  for (const std::string& id : available) {
    std::optional<size_t> gpu = resource.GpuOf(id);
    if (!gpu) {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown device ID \"", id.substr(0, 128), "\" for ", resource.name));
    }
    if (!must.count(id)) free_by_gpu[*gpu].push_back(id);
  }
  std::vector<std::string> chosen(must_include.begin(), must_include.end());
  std::map<size_t, int> taken;
  for (const std::string& id : must_include) {
    std::optional<size_t> gpu = resource.GpuOf(id);
    if (!gpu) {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown device ID \"", id.substr(0, 128), "\" for ", resource.name));
    }
    ++taken[*gpu];
  }
  while (chosen.size() < static_cast<size_t>(size)) {
    const size_t remaining = static_cast<size_t>(size) - chosen.size();
    std::optional<size_t> best;
    for (auto& [gpu, ids] : free_by_gpu) {
      if (ids.empty()) continue;
      if (!best) {
        best = gpu;
        continue;
      }
      const size_t have = ids.size(), best_have = free_by_gpu[*best].size();
      const int t = taken.count(gpu) ? taken[gpu] : 0;
      const int bt = taken.count(*best) ? taken[*best] : 0;
      if (policy == AllocationPolicy::kPacked) {
        // A GPU already holding part of this request first. Otherwise best fit: the GPU with
        // the fewest free replicas that still holds the rest of the request (keeps whole GPUs
        // free for larger requests); when none holds it all, the one with the most free.
        if ((t > 0) != (bt > 0)) {
          if (t > 0) best = gpu;
          continue;
        }
        const bool fits = have >= remaining, best_fits = best_have >= remaining;
        if (fits != best_fits) {
          if (fits) best = gpu;
        } else if (fits ? have < best_have : have > best_have) {
          best = gpu;
        }
      } else {
        // Spread: the GPU this request uses least, then the one with the most free.
        if (t < bt || (t == bt && have > best_have)) best = gpu;
      }
    }
    if (!best) break;
    auto& ids = free_by_gpu[*best];
    chosen.push_back(ids.front());
    ids.erase(ids.begin());
    ++taken[*best];
  }
  if (chosen.size() != static_cast<size_t>(size)) {
    return absl::InvalidArgumentError(absl::StrCat("only ", chosen.size(), " of ", size,
                                                   " devices could be chosen for ", resource.name));
  }
  return chosen;
}

}  // namespace slicer::plugin
