#include "src/nvml/nvml.h"

#include <dlfcn.h>
#include <link.h>
#include <nvml.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <fstream>
#include <initializer_list>
#include <map>
#include <mutex>
#include <string_view>
#include <thread>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "src/common/log.h"

namespace slicer::nvml {
namespace {

constexpr char kSoname[] = "libnvidia-ml.so.1";

// Where distributions and the GPU operator put the driver's libraries, relative to a driver root.
constexpr const char* kLibDirs[] = {
    "usr/lib64", "usr/lib/x86_64-linux-gnu", "usr/lib/aarch64-linux-gnu", "usr/lib",
    "lib64",     "lib/x86_64-linux-gnu",     "lib/aarch64-linux-gnu",     "lib",
};

constexpr const char* kControlDevices[] = {"nvidiactl", "nvidia-uvm", "nvidia-uvm-tools",
                                           "nvidia-modeset"};

// The entry points used, each resolved once. Types come from NVIDIA's nvml.h, so a wrong
// signature does not compile. Where NVML has several versions of a call, the pointer holds the
// newest one the library exports; older versions listed as fallbacks take the same arguments.
struct Api {
  decltype(&::nvmlInit_v2) init = nullptr;
  decltype(&::nvmlShutdown) shutdown = nullptr;
  decltype(&::nvmlErrorString) error_string = nullptr;
  decltype(&::nvmlSystemGetDriverVersion) system_get_driver_version = nullptr;
  // Optional: _v2 asks libcuda (may fail where it is absent); the old one answers from the driver.
  decltype(&::nvmlSystemGetCudaDriverVersion_v2) system_get_cuda_driver_version_v2 = nullptr;
  decltype(&::nvmlSystemGetCudaDriverVersion) system_get_cuda_driver_version = nullptr;
  decltype(&::nvmlDeviceGetCount_v2) device_get_count = nullptr;
  decltype(&::nvmlDeviceGetHandleByIndex_v2) device_get_handle_by_index = nullptr;
  decltype(&::nvmlDeviceGetHandleByUUID) device_get_handle_by_uuid = nullptr;
  decltype(&::nvmlDeviceGetName) device_get_name = nullptr;
  decltype(&::nvmlDeviceGetUUID) device_get_uuid = nullptr;
  decltype(&::nvmlDeviceGetMinorNumber) device_get_minor_number = nullptr;
  decltype(&::nvmlDeviceGetCudaComputeCapability) device_get_cuda_compute_capability = nullptr;
  decltype(&::nvmlDeviceGetPciInfo_v3) device_get_pci_info = nullptr;
  // At least one of the two memory calls; _v2 (with `reserved`) preferred.
  decltype(&::nvmlDeviceGetMemoryInfo_v2) device_get_memory_info_v2 = nullptr;
  decltype(&::nvmlDeviceGetMemoryInfo) device_get_memory_info = nullptr;
  // Optional: drivers before R535 lack it; sysfs answers instead.
  decltype(&::nvmlDeviceGetNumaNodeId) device_get_numa_node_id = nullptr;
  decltype(&::nvmlEventSetCreate) event_set_create = nullptr;
  decltype(&::nvmlEventSetFree) event_set_free = nullptr;
  decltype(&::nvmlDeviceRegisterEvents) device_register_events = nullptr;
  decltype(&::nvmlEventSetWait_v2) event_set_wait = nullptr;
  // Optional: only MPS sharing needs them, and discovery must not depend on that.
  decltype(&::nvmlDeviceGetComputeMode) device_get_compute_mode = nullptr;
  decltype(&::nvmlDeviceSetComputeMode) device_set_compute_mode = nullptr;
};

static_assert(static_cast<int>(ComputeMode::kDefault) == NVML_COMPUTEMODE_DEFAULT);
static_assert(static_cast<int>(ComputeMode::kExclusiveThread) == NVML_COMPUTEMODE_EXCLUSIVE_THREAD);
static_assert(static_cast<int>(ComputeMode::kProhibited) == NVML_COMPUTEMODE_PROHIBITED);
static_assert(static_cast<int>(ComputeMode::kExclusiveProcess) ==
              NVML_COMPUTEMODE_EXCLUSIVE_PROCESS);

// Points `slot` at the first of `names` that the library exports.
template <typename Fn>
bool Bind(void* handle, Fn& slot, std::initializer_list<const char*> names) {
  for (const char* name : names) {
    if (void* p = dlsym(handle, name)) {
      slot = reinterpret_cast<Fn>(p);
      return true;
    }
  }
  return false;
}

// Resolves every entry point; FailedPrecondition naming each required one that is missing.
absl::Status Resolve(void* h, const std::string& path, Api& api) {
  std::vector<std::string> missing;
  auto need = [&](auto& slot, std::initializer_list<const char*> names) {
    if (!Bind(h, slot, names)) missing.push_back(absl::StrJoin(names, " or "));
  };
  need(api.init, {"nvmlInit_v2", "nvmlInit"});
  need(api.shutdown, {"nvmlShutdown"});
  need(api.error_string, {"nvmlErrorString"});
  need(api.system_get_driver_version, {"nvmlSystemGetDriverVersion"});
  Bind(h, api.system_get_cuda_driver_version_v2, {"nvmlSystemGetCudaDriverVersion_v2"});
  Bind(h, api.system_get_cuda_driver_version, {"nvmlSystemGetCudaDriverVersion"});
  need(api.device_get_count, {"nvmlDeviceGetCount_v2", "nvmlDeviceGetCount"});
  need(api.device_get_handle_by_index,
       {"nvmlDeviceGetHandleByIndex_v2", "nvmlDeviceGetHandleByIndex"});
  need(api.device_get_handle_by_uuid, {"nvmlDeviceGetHandleByUUID"});
  need(api.device_get_name, {"nvmlDeviceGetName"});
  need(api.device_get_uuid, {"nvmlDeviceGetUUID"});
  need(api.device_get_minor_number, {"nvmlDeviceGetMinorNumber"});
  need(api.device_get_cuda_compute_capability, {"nvmlDeviceGetCudaComputeCapability"});
  need(api.device_get_pci_info,
       {"nvmlDeviceGetPciInfo_v3", "nvmlDeviceGetPciInfo_v2", "nvmlDeviceGetPciInfo"});
  bool v2 = Bind(h, api.device_get_memory_info_v2, {"nvmlDeviceGetMemoryInfo_v2"});
  bool v1 = Bind(h, api.device_get_memory_info, {"nvmlDeviceGetMemoryInfo"});
  if (!v1 && !v2) missing.push_back("nvmlDeviceGetMemoryInfo_v2 or nvmlDeviceGetMemoryInfo");
  Bind(h, api.device_get_numa_node_id, {"nvmlDeviceGetNumaNodeId"});
  need(api.event_set_create, {"nvmlEventSetCreate"});
  need(api.event_set_free, {"nvmlEventSetFree"});
  need(api.device_register_events, {"nvmlDeviceRegisterEvents"});
  need(api.event_set_wait, {"nvmlEventSetWait_v2", "nvmlEventSetWait"});
  Bind(h, api.device_get_compute_mode, {"nvmlDeviceGetComputeMode"});
  Bind(h, api.device_set_compute_mode, {"nvmlDeviceSetComputeMode"});
  if (missing.empty()) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(path, " lacks ", absl::StrJoin(missing, ", "),
                                                    ": the NVIDIA driver is too old or damaged"));
}

// "<root>/<rel>" with "/" or "" meaning the host root.
std::string UnderRoot(const std::string& root, std::string_view rel) {
  std::string r = root;
  while (!r.empty() && r.back() == '/') r.pop_back();
  return absl::StrCat(r, "/", std::string(rel));
}

bool IsHostRoot(const std::string& root) {
  return root.find_first_not_of('/') == std::string::npos;
}

bool Exists(const std::string& path) { return access(path.c_str(), F_OK) == 0; }

// The file the dynamic loader actually opened for `handle`.
std::string LoadedPath(void* handle) {
  struct link_map* map = nullptr;
  if (dlinfo(handle, RTLD_DI_LINKMAP, &map) == 0 && map != nullptr && map->l_name != nullptr &&
      map->l_name[0] != '\0') {
    return map->l_name;
  }
  return kSoname;
}

struct OpenedLibrary {
  void* handle = nullptr;
  std::string path;
};

absl::StatusOr<OpenedLibrary> OpenLibrary(const LoadOptions& options) {
  std::vector<std::string> failures;
  if (!IsHostRoot(options.driver_root)) {
    for (const char* dir : kLibDirs) {
      std::string path = UnderRoot(options.driver_root, absl::StrCat(dir, "/", kSoname));
      if (!Exists(path)) continue;
      if (void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL)) return OpenedLibrary{h, path};
      failures.push_back(dlerror());
    }
    failures.push_back(
        absl::StrCat("not under ", options.driver_root, "/{", absl::StrJoin(kLibDirs, ","), "}"));
  }
  if (void* h = dlopen(kSoname, RTLD_NOW | RTLD_LOCAL)) return OpenedLibrary{h, LoadedPath(h)};
  failures.push_back(dlerror());
  return absl::NotFoundError(absl::StrCat(
      kSoname, " (the NVIDIA driver's NVML library) not found: ", absl::StrJoin(failures, "; ")));
}

// "00000000:3B:00.0" (NVML) -> "0000:3b:00.0" (sysfs).
std::string SysfsPciId(const std::string& bus_id) {
  std::string id = absl::AsciiStrToLower(bus_id);
  size_t colon = id.find(':');
  if (colon == 8) id = id.substr(4);
  return id;
}

int ReadSysfsNumaNode(const std::string& sys_root, const std::string& bus_id) {
  std::ifstream in(
      UnderRoot(sys_root, absl::StrCat("sys/bus/pci/devices/", SysfsPciId(bus_id), "/numa_node")));
  int node = -1;
  if (!(in >> node) || node < 0) return -1;
  return node;
}

class NvmlLibrary final : public Nvml {
 public:
  NvmlLibrary(OpenedLibrary lib, const Api& api, const LoadOptions& options)
      : lib_(std::move(lib)), api_(api), options_(options) {}

  ~NvmlLibrary() override {
    if (event_set_ != nullptr) api_.event_set_free(event_set_);
    api_.shutdown();
    dlclose(lib_.handle);
  }

  absl::StatusOr<System> Discover() override {
    System system;
    char buf[NVML_SYSTEM_DRIVER_VERSION_BUFFER_SIZE] = {};
    if (nvmlReturn_t r = api_.system_get_driver_version(buf, sizeof buf); r != NVML_SUCCESS) {
      return Error(r, "nvmlSystemGetDriverVersion", "");
    }
    system.driver_version = buf;
    system.cuda_driver_version = CudaDriverVersion();

    unsigned int count = 0;
    if (nvmlReturn_t r = api_.device_get_count(&count); r != NVML_SUCCESS) {
      return Error(r, "nvmlDeviceGetCount", "");
    }
    const std::string dev_root = DevRoot();
    for (unsigned int i = 0; i < count; ++i) {
      const std::string subject = absl::StrCat("GPU index ", i);
      Device d;
      d.index = static_cast<int>(i);
      nvmlDevice_t h = nullptr;
      if (nvmlReturn_t r = api_.device_get_handle_by_index(i, &h); r != NVML_SUCCESS) {
        return Error(r, "nvmlDeviceGetHandleByIndex", subject);
      }
      char uuid[NVML_DEVICE_UUID_V2_BUFFER_SIZE] = {};
      if (nvmlReturn_t r = api_.device_get_uuid(h, uuid, sizeof uuid); r != NVML_SUCCESS) {
        return Error(r, "nvmlDeviceGetUUID", subject);
      }
      d.uuid = uuid;
      char name[NVML_DEVICE_NAME_V2_BUFFER_SIZE] = {};
      if (nvmlReturn_t r = api_.device_get_name(h, name, sizeof name); r != NVML_SUCCESS) {
        return Error(r, "nvmlDeviceGetName", d.uuid);
      }
      d.name = name;
      absl::StatusOr<uint64_t> memory = TotalMemory(h, d.uuid);
      if (!memory.ok()) return memory.status();
      d.memory_bytes = *memory;
      unsigned int minor = 0;
      if (nvmlReturn_t r = api_.device_get_minor_number(h, &minor); r != NVML_SUCCESS) {
        return Error(r, "nvmlDeviceGetMinorNumber", d.uuid);
      }
      d.minor_number = static_cast<int>(minor);
      d.device_paths.push_back(UnderRoot(dev_root, absl::StrCat("dev/nvidia", minor)));
      if (nvmlReturn_t r = api_.device_get_cuda_compute_capability(h, &d.cc_major, &d.cc_minor);
          r != NVML_SUCCESS) {
        return Error(r, "nvmlDeviceGetCudaComputeCapability", d.uuid);
      }
      nvmlPciInfo_t pci = {};
      if (nvmlReturn_t r = api_.device_get_pci_info(h, &pci); r != NVML_SUCCESS) {
        return Error(r, "nvmlDeviceGetPciInfo", d.uuid);
      }
      d.pci_bus_id = pci.busId;
      d.numa_node = NumaNode(h, d);
      system.devices.push_back(std::move(d));
    }
    for (const char* name : kControlDevices) {
      std::string path = UnderRoot(dev_root, absl::StrCat("dev/", name));
      if (Exists(path)) system.control_device_paths.push_back(path);
    }
    return system;
  }

  absl::StatusOr<std::optional<XidEvent>> WaitForXid(std::chrono::milliseconds timeout) override {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    std::unique_lock<std::mutex> lock(events_mu_);
    if (event_set_ == nullptr) {
      if (absl::Status s = RegisterEvents(); !s.ok()) return s;
    }
    if (event_uuids_.empty()) {
      lock.unlock();
      std::this_thread::sleep_until(deadline);
      return std::nullopt;
    }
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      unsigned int ms = static_cast<unsigned int>(
          std::clamp<int64_t>(left.count(), 0, static_cast<int64_t>(UINT_MAX)));
      nvmlEventData_t data = {};
      nvmlReturn_t r = api_.event_set_wait(event_set_, &data, ms);
      if (r == NVML_ERROR_TIMEOUT) return std::nullopt;
      if (r != NVML_SUCCESS) return Error(r, "nvmlEventSetWait", "");
      if (data.eventType == nvmlEventTypeXidCriticalError) {
        XidEvent event;
        event.xid = data.eventData;
        auto it = event_uuids_.find(data.device);
        if (it != event_uuids_.end()) {
          event.uuid = it->second;
        } else {
          char uuid[NVML_DEVICE_UUID_V2_BUFFER_SIZE] = {};
          if (api_.device_get_uuid(data.device, uuid, sizeof uuid) == NVML_SUCCESS) {
            event.uuid = uuid;
          }
        }
        return event;
      }
      if (left.count() <= 0) return std::nullopt;
    }
  }

  absl::Status Probe(const std::string& uuid) override {
    absl::StatusOr<nvmlDevice_t> h = HandleByUuid(uuid);
    if (!h.ok()) return h.status();
    return TotalMemory(*h, uuid).status();
  }

  absl::StatusOr<ComputeMode> GetComputeMode(const std::string& uuid) override {
    if (api_.device_get_compute_mode == nullptr) return Missing("nvmlDeviceGetComputeMode");
    absl::StatusOr<nvmlDevice_t> h = HandleByUuid(uuid);
    if (!h.ok()) return h.status();
    nvmlComputeMode_t mode = NVML_COMPUTEMODE_DEFAULT;
    if (nvmlReturn_t r = api_.device_get_compute_mode(*h, &mode); r != NVML_SUCCESS) {
      return Error(r, "nvmlDeviceGetComputeMode", uuid);
    }
    if (static_cast<int>(mode) < NVML_COMPUTEMODE_DEFAULT ||
        static_cast<int>(mode) > NVML_COMPUTEMODE_EXCLUSIVE_PROCESS) {
      return absl::UnavailableError(absl::StrCat(
          "nvmlDeviceGetComputeMode for ", uuid, " answered an unknown compute mode ",
          static_cast<int>(mode)));
    }
    return static_cast<ComputeMode>(mode);
  }

  absl::Status SetComputeMode(const std::string& uuid, ComputeMode mode) override {
    if (api_.device_set_compute_mode == nullptr) return Missing("nvmlDeviceSetComputeMode");
    absl::StatusOr<nvmlDevice_t> h = HandleByUuid(uuid);
    if (!h.ok()) return h.status();
    nvmlReturn_t r = api_.device_set_compute_mode(*h, static_cast<nvmlComputeMode_t>(mode));
    if (r == NVML_SUCCESS) return absl::OkStatus();
    absl::Status s = Error(r, "nvmlDeviceSetComputeMode",
                           absl::StrCat(uuid, " (", std::string(ToString(mode)), ")"));
    if (r == NVML_ERROR_NO_PERMISSION) {
      return absl::PermissionDeniedError(absl::StrCat(
          s.message(), ": setting the compute mode needs root (CAP_SYS_ADMIN) on the node"));
    }
    return s;
  }

 private:
  absl::StatusOr<nvmlDevice_t> HandleByUuid(const std::string& uuid) const {
    nvmlDevice_t h = nullptr;
    if (nvmlReturn_t r = api_.device_get_handle_by_uuid(uuid.c_str(), &h); r != NVML_SUCCESS) {
      return Error(r, "nvmlDeviceGetHandleByUUID", uuid);
    }
    return h;
  }

  // An optional entry point that this driver's library does not export.
  absl::Status Missing(std::string_view symbol) const {
    return absl::UnimplementedError(absl::StrCat(lib_.path, " lacks ", std::string(symbol),
                                                 ": the NVIDIA driver is too old"));
  }

  // NVML's error as a Status: "<call> failed for <subject>: <NVML string> (NVML error <n>)".
  absl::Status Error(nvmlReturn_t r, std::string_view call, std::string_view subject) const {
    std::string message = absl::StrCat(std::string(call), " failed", subject.empty() ? "" : " for ",
                                       std::string(subject), ": ", api_.error_string(r),
                                       " (NVML error ", static_cast<int>(r), ")");
    switch (r) {
      case NVML_ERROR_NOT_FOUND:
        return absl::NotFoundError(message);
      case NVML_ERROR_INVALID_ARGUMENT:
        return absl::InvalidArgumentError(message);
      case NVML_ERROR_NOT_SUPPORTED:
        return absl::UnimplementedError(message);
      case NVML_ERROR_NO_PERMISSION:
        return absl::PermissionDeniedError(message);
      default:
        return absl::UnavailableError(message);
    }
  }

  absl::StatusOr<uint64_t> TotalMemory(nvmlDevice_t h, const std::string& uuid) const {
    if (api_.device_get_memory_info_v2 != nullptr) {
      nvmlMemory_v2_t m = {};
      m.version = nvmlMemory_v2;
      nvmlReturn_t r = api_.device_get_memory_info_v2(h, &m);
      if (r == NVML_SUCCESS) return m.total;
      // Some drivers export _v2 but reject the struct version; the old call then answers.
      if (r != NVML_ERROR_ARGUMENT_VERSION_MISMATCH || api_.device_get_memory_info == nullptr) {
        return Error(r, "nvmlDeviceGetMemoryInfo_v2", uuid);
      }
    }
    nvmlMemory_t m = {};
    if (nvmlReturn_t r = api_.device_get_memory_info(h, &m); r != NVML_SUCCESS) {
      return Error(r, "nvmlDeviceGetMemoryInfo", uuid);
    }
    return m.total;
  }

  int CudaDriverVersion() const {
    int version = 0;
    nvmlReturn_t r = NVML_ERROR_FUNCTION_NOT_FOUND;
    if (api_.system_get_cuda_driver_version_v2 != nullptr) {
      r = api_.system_get_cuda_driver_version_v2(&version);
    }
    if (r != NVML_SUCCESS && api_.system_get_cuda_driver_version != nullptr) {
      r = api_.system_get_cuda_driver_version(&version);
    }
    if (r != NVML_SUCCESS) {
      SLOG(kWarning, "nvml_cuda_version_unknown").Kv("error", api_.error_string(r));
      return 0;
    }
    return version;
  }

  int NumaNode(nvmlDevice_t h, const Device& d) const {
    if (api_.device_get_numa_node_id != nullptr) {
      unsigned int node = 0;
      if (api_.device_get_numa_node_id(h, &node) == NVML_SUCCESS) return static_cast<int>(node);
    }
    int node = ReadSysfsNumaNode(options_.sys_root, d.pci_bus_id);
    if (node < 0) SLOG(kDebug, "nvml_numa_node_unknown").Kv("uuid", d.uuid);
    return node;
  }

  std::string DevRoot() const {
    if (!options_.dev_root.empty()) return options_.dev_root;
    if (!IsHostRoot(options_.driver_root) &&
        Exists(UnderRoot(options_.driver_root, "dev/nvidiactl"))) {
      return options_.driver_root;
    }
    return "/";
  }

  // Creates the event set and registers every GPU for XIDs. Requires events_mu_.
  absl::Status RegisterEvents() {
    nvmlEventSet_t set = nullptr;
    if (nvmlReturn_t r = api_.event_set_create(&set); r != NVML_SUCCESS) {
      return Error(r, "nvmlEventSetCreate", "");
    }
    unsigned int count = 0;
    if (nvmlReturn_t r = api_.device_get_count(&count); r != NVML_SUCCESS) {
      api_.event_set_free(set);
      return Error(r, "nvmlDeviceGetCount", "");
    }
    for (unsigned int i = 0; i < count; ++i) {
      nvmlDevice_t h = nullptr;
      char uuid[NVML_DEVICE_UUID_V2_BUFFER_SIZE] = {};
      nvmlReturn_t r = api_.device_get_handle_by_index(i, &h);
      if (r == NVML_SUCCESS) r = api_.device_get_uuid(h, uuid, sizeof uuid);
      if (r == NVML_SUCCESS) r = api_.device_register_events(h, nvmlEventTypeXidCriticalError, set);
      if (r != NVML_SUCCESS) {
        // Such a GPU is still probed by the health monitor; it just cannot report faults.
        SLOG(kWarning, "nvml_xid_events_unavailable")
            .Kv("index", i)
            .Kv("uuid", uuid)
            .Kv("error", api_.error_string(r));
        continue;
      }
      event_uuids_[h] = uuid;
    }
    event_set_ = set;
    return absl::OkStatus();
  }

  const OpenedLibrary lib_;
  const Api api_;
  const LoadOptions options_;

  std::mutex events_mu_;  // serializes WaitForXid; guards the two below
  nvmlEventSet_t event_set_ = nullptr;
  std::map<nvmlDevice_t, std::string> event_uuids_;
};

}  // namespace

std::string_view ToString(ComputeMode mode) {
  switch (mode) {
    case ComputeMode::kDefault:
      return "DEFAULT";
    case ComputeMode::kExclusiveThread:
      return "EXCLUSIVE_THREAD";
    case ComputeMode::kProhibited:
      return "PROHIBITED";
    case ComputeMode::kExclusiveProcess:
      return "EXCLUSIVE_PROCESS";
  }
  return "UNKNOWN";
}

absl::StatusOr<std::unique_ptr<Nvml>> Load(const LoadOptions& options) {
  absl::StatusOr<OpenedLibrary> lib = OpenLibrary(options);
  if (!lib.ok()) return lib.status();
  Api api;
  if (absl::Status s = Resolve(lib->handle, lib->path, api); !s.ok()) {
    dlclose(lib->handle);
    return s;
  }
  if (nvmlReturn_t r = api.init(); r != NVML_SUCCESS) {
    absl::Status s = absl::UnavailableError(
        absl::StrCat("nvmlInit failed (", lib->path, "): ", api.error_string(r), " (NVML error ",
                     static_cast<int>(r), ")"));
    dlclose(lib->handle);
    return s;
  }
  SLOG(kInfo, "nvml_loaded").Kv("library", lib->path);
  return std::unique_ptr<Nvml>(new NvmlLibrary(*std::move(lib), api, options));
}

}  // namespace slicer::nvml
