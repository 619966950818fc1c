// `slicer run --mps`: the process tree as a client of a local MPS control daemon, sized like a
// pod that holds k of N replicas (docs/mps.md), for a workstation without Kubernetes.
#ifndef SLICER_CLI_RUN_MPS_H_
#define SLICER_CLI_RUN_MPS_H_

#include <cstdint>
#include <string>

namespace slicer::cli {

// The per-user folder of what `slicer run` starts ($XDG_RUNTIME_DIR/gpu-slicer, else
// /tmp/gpu-slicer-<uid>), created 0700.
std::string UserRuntimeDir();

struct RunMpsOptions {
  int threads = 0;            // CUDA_MPS_ACTIVE_THREAD_PERCENTAGE, 1-100; 0: not limited
  uint64_t memory_bytes = 0;  // CUDA_MPS_PINNED_DEVICE_MEM_LIMIT per visible GPU; 0: none
};

// Joins the MPS control daemon of $CUDA_MPS_PIPE_DIRECTORY (or of the per-user pipe folder
// <UserRuntimeDir()>/mps/pipe when it is unset), starting one there with `-d` when none answers
// (it keeps running for later runs; the message says how to stop it), and sets CUDA_MPS_* in
// this process's environment for the command. The control binary is $SLICER_MPS_CONTROL, else
// nvidia-cuda-mps-control in PATH. The memory limit is written for each GPU the command will
// see: the entries of CUDA_VISIBLE_DEVICES when set, else every GPU NVML reports. Returns false
// with the reason printed on stderr.
bool PrepareMps(const RunMpsOptions& options);

}  // namespace slicer::cli

#endif  // SLICER_CLI_RUN_MPS_H_
