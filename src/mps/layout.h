// Where gpu-slicer's MPS files live: one root directory (host: --mps-root, NVIDIA's chart value
// mps.root, default /run/nvidia/mps; containers see it at kContainerRoot), and under it
//
//   <root>/desired            the GPUs the device plugin wants shared with MPS (files.h)
//   <root>/shm/               the tmpfs the daemons and their clients share as /dev/shm
//   <root>/<uuid>/pipe/       CUDA_MPS_PIPE_DIRECTORY of that GPU's control daemon
//   <root>/<uuid>/log/        CUDA_MPS_LOG_DIRECTORY
//   <root>/<uuid>/state       what `slicer mps-daemon` last saw of that daemon (files.h)
//   <root>/<uuid>/compute-mode-before   the GPU's compute mode before the mps-daemon set it
//
// One control daemon per GPU (not per resource, as NVIDIA's plugin does): a GPU's daemon can be
// restarted, and its replicas marked Unhealthy, without touching the other GPUs. Plain strings,
// no file system access.
#ifndef SLICER_MPS_LAYOUT_H_
#define SLICER_MPS_LAYOUT_H_

#include <string>

#include "absl/status/status.h"

namespace slicer::mps {

inline constexpr char kDefaultRoot[] = "/run/nvidia/mps";
// Where Allocate mounts a GPU's pipe directory in containers: <kContainerRoot>/<uuid>/pipe.
inline constexpr char kContainerRoot[] = "/mps";

class Layout {
 public:
  explicit Layout(std::string root) : root_(std::move(root)) {}
  const std::string& root() const { return root_; }
  std::string DesiredFile() const { return root_ + "/desired"; }
  std::string ShmDir() const { return root_ + "/shm"; }
  std::string GpuDir(const std::string& uuid) const { return root_ + "/" + uuid; }
  std::string PipeDir(const std::string& uuid) const { return GpuDir(uuid) + "/pipe"; }
  std::string LogDir(const std::string& uuid) const { return GpuDir(uuid) + "/log"; }
  std::string StateFile(const std::string& uuid) const { return GpuDir(uuid) + "/state"; }
  std::string SavedModeFile(const std::string& uuid) const {
    return GpuDir(uuid) + "/compute-mode-before";
  }
  // The unix socket the control daemon listens on (the real daemon's name).
  std::string ControlSocket(const std::string& uuid) const { return PipeDir(uuid) + "/control"; }

 private:
  std::string root_;
};

// OK when `root` can hold the daemons' files: an absolute path, not "/", without empty, "." or
// ".." components or a trailing '/', and short enough that a GPU's control socket
// (<root>/GPU-<36>/pipe/control) fits a unix socket address (107 bytes). Errors name the root.
absl::Status ValidateRoot(const std::string& root);

// GPU UUIDs become directory names: "GPU-" followed by hex digits and dashes only (NVML's form),
// at most 64 bytes. Anything else (a MIG UUID, a path) is refused.
bool IsGpuUuid(const std::string& uuid);

}  // namespace slicer::mps

#endif  // SLICER_MPS_LAYOUT_H_
