// Access to the NVIDIA driver's management library, loaded at run time.
//
// `libnvidia-ml.so.1` is opened by soname (searched under the driver root first, then the usual
// loader path) and every symbol is looked up once into a typed pointer, preferring the newest
// versioned name (e.g. nvmlDeviceGetCount_v2). A missing library or symbol is an error returned
// from Load(), never a crash. Tests swap in the fake library from tests/fakes by putting its
// directory first on LD_LIBRARY_PATH; this code has no test branches.
//
// Thread-safety: after Load() succeeds all methods may be called from any thread.
#ifndef SLICER_NVML_NVML_H_
#define SLICER_NVML_NVML_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace slicer::nvml {

struct Device {
  std::string uuid;          // "GPU-1111..."
  int index = 0;             // NVML index (what NVIDIA_VISIBLE_DEVICES=0 means)
  std::string name;          // "Tesla T4"
  uint64_t memory_bytes = 0; // total framebuffer memory
  int numa_node = -1;        // -1 when unknown
  int cc_major = 0;          // compute capability
  int cc_minor = 0;
  std::string pci_bus_id;    // "00000000:00:1E.0"
  int minor_number = -1;     // /dev/nvidia<minor>
  std::vector<std::string> device_paths;  // /dev/nvidia<minor> (paths as seen from the host root)
};

struct System {
  std::string driver_version;  // "580.159.04"
  int cuda_driver_version = 0; // e.g. 13000 for CUDA 13.0
  std::vector<Device> devices; // ordered by index
  // Device nodes every GPU container needs besides its own /dev/nvidia<minor>.
  std::vector<std::string> control_device_paths;  // /dev/nvidiactl, /dev/nvidia-uvm, ...
};

// A fault the driver reported for one GPU.
struct XidEvent {
  std::string uuid;
  uint64_t xid = 0;
};

class Nvml {
 public:
  virtual ~Nvml() = default;

  // Enumerates the GPUs. Fails with the NVML error string when the driver does not answer.
  virtual absl::StatusOr<System> Discover() = 0;

  // Waits up to `timeout` for the next XID event on any GPU found by Discover(). Returns
  // std::nullopt on timeout. Events are registered lazily on the first call.
  virtual absl::StatusOr<std::optional<XidEvent>> WaitForXid(std::chrono::milliseconds timeout) = 0;

  // Asks the GPU a cheap question (handle by UUID, memory info). OK when it answers; the NVML
  // error otherwise (e.g. GPU is lost).
  virtual absl::Status Probe(const std::string& uuid) = 0;
};

struct LoadOptions {
  // Host directory where the driver is installed ("/" by default); the library is searched
  // under <root>/usr/lib64, <root>/usr/lib/x86_64-linux-gnu, <root>/usr/lib and then by soname.
  std::string driver_root = "/";
};

// Opens libnvidia-ml.so.1, resolves all symbols and calls nvmlInit_v2. Errors: NotFound (no
// library), FailedPrecondition (a symbol is missing; the message names it), Unavailable
// (nvmlInit failed; the message has NVML's error string).
absl::StatusOr<std::unique_ptr<Nvml>> Load(const LoadOptions& options);

}  // namespace slicer::nvml

#endif  // SLICER_NVML_NVML_H_
