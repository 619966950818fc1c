// Access to the NVIDIA driver's management library, loaded at run time.
//
// `libnvidia-ml.so.1` is opened by soname (searched under the driver root first, then through the
// dynamic loader; see LoadOptions) and every symbol is looked up once into a typed pointer,
// preferring the newest versioned name (e.g. nvmlDeviceGetCount_v2). A missing library or symbol is
// an error returned from Load(), never a crash. Tests swap in the fake library from tests/fakes by
// putting its directory first on LD_LIBRARY_PATH; this code has no test branches.
//
// Thread-safety: after Load() succeeds all methods may be called from any thread.
#ifndef SLICER_NVML_NVML_H_
#define SLICER_NVML_NVML_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace slicer::nvml {

// Who may create CUDA contexts on a GPU (NVML's nvmlComputeMode_t; same values). CUDA MPS needs
// kExclusiveProcess: then only the MPS server opens a context and its clients share it.
enum class ComputeMode {
  kDefault = 0,           // any number of contexts, from any process
  kExclusiveThread = 1,   // removed from the driver since CUDA 4.0 (cannot be set any more)
  kProhibited = 2,        // no contexts
  kExclusiveProcess = 3,  // one context, usable from several threads of one process
};

// nvidia-smi's name for the mode: "DEFAULT", "EXCLUSIVE_THREAD", "PROHIBITED",
// "EXCLUSIVE_PROCESS" ("UNKNOWN" for a value outside the enum).
std::string_view ToString(ComputeMode mode);

struct Device {
  std::string uuid;           // "GPU-1111..."
  int index = 0;              // NVML index (what NVIDIA_VISIBLE_DEVICES=0 means)
  std::string name;           // "Tesla T4"
  uint64_t memory_bytes = 0;  // total framebuffer memory
  int numa_node = -1;         // -1 when unknown
  int cc_major = 0;           // compute capability
  int cc_minor = 0;
  std::string pci_bus_id;  // "00000000:00:1E.0"
  int minor_number = -1;   // /dev/nvidia<minor>
  // <dev_root>/dev/nvidia<minor>, whether or not the node exists yet (see LoadOptions::dev_root).
  std::vector<std::string> device_paths;
};

struct System {
  std::string driver_version;   // "580.159.04"
  int cuda_driver_version = 0;  // e.g. 13000 for CUDA 13.0
  std::vector<Device> devices;  // ordered by index
  // Device nodes every GPU container needs besides its own /dev/nvidia<minor>: those of
  // nvidiactl, nvidia-uvm, nvidia-uvm-tools, nvidia-modeset (in that order) that exist under
  // <dev_root>/dev, named as <dev_root>/dev/<name>.
  std::vector<std::string> control_device_paths;
};

// A fault the driver reported for one GPU.
struct XidEvent {
  std::string uuid;
  uint64_t xid = 0;
};

class Nvml {
 public:
  virtual ~Nvml() = default;

  // Enumerates the GPUs. Fails (naming the NVML call, the GPU index and NVML's error string)
  // when a required query does not answer, e.g. a GPU that is lost; no partial result. The NUMA
  // node and the CUDA driver version are best effort (-1 / 0 when unknown, with a log line).
  virtual absl::StatusOr<System> Discover() = 0;

  // Waits up to `timeout` for the next XID event on any GPU. Returns std::nullopt on timeout.
  // On the first call an event set is created and every GPU present then is registered for
  // nvmlEventTypeXidCriticalError; a GPU that cannot be registered (events not supported, or
  // not answering) is logged and skipped, and if none can be, the call just sleeps `timeout`.
  // Errors: the event set cannot be created, or the wait fails (Unavailable, NVML's message).
  // Calls are serialized.
  virtual absl::StatusOr<std::optional<XidEvent>> WaitForXid(std::chrono::milliseconds timeout) = 0;

  // Asks the GPU a cheap question (handle by UUID, memory info). OK when it answers; the NVML
  // error otherwise: NotFound for an unknown UUID, Unavailable for a GPU that is lost, ...
  virtual absl::Status Probe(const std::string& uuid) = 0;

  // The GPU's compute mode (nvmlDeviceGetComputeMode). Errors name the call, the UUID and NVML's
  // error string: NotFound for an unknown UUID, Unavailable for a GPU that is lost, Unimplemented
  // when the driver's library lacks the symbol (it is optional: Load() succeeds without it).
  virtual absl::StatusOr<ComputeMode> GetComputeMode(const std::string& uuid) = 0;

  // Sets the GPU's compute mode (nvmlDeviceSetComputeMode). It stays set until changed again or
  // the driver is reloaded: whoever sets it restores it. Errors as GetComputeMode, plus
  // PermissionDenied (the process is not root / lacks CAP_SYS_ADMIN) and Unimplemented for a mode
  // the GPU does not support (NVML_ERROR_NOT_SUPPORTED; kExclusiveThread is gone since CUDA 4.0).
  virtual absl::Status SetComputeMode(const std::string& uuid, ComputeMode mode) = 0;
};

struct LoadOptions {
  LoadOptions() = default;
  // Implicit so that callers write Load({driver_root}).
  LoadOptions(std::string driver_root) : driver_root(std::move(driver_root)) {}  // NOLINT

  // Host directory where the driver is installed ("/" by default; "/run/nvidia/driver" under the
  // GPU operator). With a root other than "/", the library is first searched under
  // <root>/usr/lib64, <root>/usr/lib/x86_64-linux-gnu, <root>/usr/lib/aarch64-linux-gnu,
  // <root>/usr/lib, <root>/lib64, <root>/lib/x86_64-linux-gnu, <root>/lib/aarch64-linux-gnu and
  // <root>/lib; then (and with "/" only) it is opened by soname through the dynamic loader, which
  // honours LD_LIBRARY_PATH and ld.so.cache. (With "/", searching the host's lib dirs by hand
  // would only bypass LD_LIBRARY_PATH, which is how tests swap in the fake.)
  std::string driver_root = "/";
  // Root under which device nodes are looked for and named: the reported paths are
  // <dev_root>/dev/nvidia<minor>, <dev_root>/dev/nvidiactl, ... Empty (default): driver_root when
  // <driver_root>/dev/nvidiactl exists (a containerized driver), else "/".
  std::string dev_root;
  // Root under which sysfs is read (<sys_root>/sys/bus/pci/devices/<id>/numa_node), used for the
  // NUMA node when the driver cannot tell it.
  std::string sys_root = "/";
};

// Opens libnvidia-ml.so.1, resolves all symbols and calls nvmlInit_v2. Errors: NotFound (no
// library; the message names it and where it was looked for), FailedPrecondition (a required
// symbol is missing; the message names every missing one), Unavailable (nvmlInit failed; the
// message has NVML's error string). The compute-mode calls are optional: without them Load()
// succeeds and only Get/SetComputeMode fail. The returned object calls nvmlShutdown and closes the library
// when destroyed.
absl::StatusOr<std::unique_ptr<Nvml>> Load(const LoadOptions& options);

}  // namespace slicer::nvml

#endif  // SLICER_NVML_NVML_H_
