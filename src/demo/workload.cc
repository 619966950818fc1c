// `slicer demo --workload`: the GPU program a demo pod runs. It reaches the driver the way a CUDA
// program does (dlopen("libcuda.so.1") + dlsym, which the preloaded shim answers), picks the GPU
// its NVIDIA_VISIBLE_DEVICES names, reads the memory it is given, tries to take more than that,
// then keeps the GPU busy with back-to-back kernels until the time is up and reports what it got.
//
// The kernel, "sleep", spins for its one argument in nanoseconds. On a GPU it is the PTX below
// (JIT-compiled by the driver); on the fake libcuda (tests/fakes/cuda) a function of that name
// is a timed sleep on the stream.
#include <dlfcn.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "cuda.h"
#include "src/cli/commands.h"

namespace slicer::cli {
namespace {

constexpr char kSpinPtx[] = R"(
.version 7.0
.target sm_52
.address_size 64
.visible .entry sleep(.param .u64 ns) {
  .reg .pred %p;
  .reg .b64 %rd<5>;
  ld.param.u64 %rd1, [ns];
  mov.u64 %rd2, %globaltimer;
  add.u64 %rd3, %rd2, %rd1;
SPIN:
  mov.u64 %rd4, %globaltimer;
  setp.lt.u64 %p, %rd4, %rd3;
  @%p bra SPIN;
  ret;
}
)";

struct Driver {
  CUresult (*cuInit)(unsigned);
  CUresult (*cuDeviceGetCount)(int*);
  CUresult (*cuDeviceGet)(CUdevice*, int);
  CUresult (*cuDeviceGetUuid_v2)(CUuuid*, CUdevice);
  CUresult (*cuDevicePrimaryCtxRetain)(CUcontext*, CUdevice);
  CUresult (*cuCtxSetCurrent)(CUcontext);
  CUresult (*cuMemGetInfo_v2)(size_t*, size_t*);
  CUresult (*cuMemAlloc_v2)(CUdeviceptr*, size_t);
  CUresult (*cuMemFree_v2)(CUdeviceptr);
  CUresult (*cuModuleLoadData)(CUmodule*, const void*);
  CUresult (*cuModuleGetFunction)(CUfunction*, CUmodule, const char*);
  CUresult (*cuLaunchKernel)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned,
                             unsigned, CUstream, void**, void**);
  CUresult (*cuStreamSynchronize)(CUstream);
};

template <typename F>
bool Bind(void* lib, const char* name, F* out) {
  *out = reinterpret_cast<F>(dlsym(lib, name));
  if (*out == nullptr) std::fprintf(stderr, "workload: libcuda.so.1 has no %s\n", name);
  return *out != nullptr;
}

std::string UuidString(const CUuuid& u) {
  const auto* b = reinterpret_cast<const unsigned char*>(u.bytes);
  char s[64];
  std::snprintf(s, sizeof s,
                "GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
                b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
                b[14], b[15]);
  return s;
}

int Fail(const char* what, CUresult r) {
  std::fprintf(stderr, "workload: %s failed (CUresult %d)\n", what, static_cast<int>(r));
  return 1;
}

}  // namespace

// argv: --workload SECONDS KERNEL_US REPORT_FILE
int DemoWorkload(double seconds, int kernel_us, const std::string& report) {
  void* lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) {
    std::fprintf(stderr, "workload: %s\n", dlerror());
    return 1;
  }
  Driver d{};
  if (!Bind(lib, "cuInit", &d.cuInit) || !Bind(lib, "cuDeviceGetCount", &d.cuDeviceGetCount) ||
      !Bind(lib, "cuDeviceGet", &d.cuDeviceGet) ||
      !Bind(lib, "cuDeviceGetUuid_v2", &d.cuDeviceGetUuid_v2) ||
      !Bind(lib, "cuDevicePrimaryCtxRetain", &d.cuDevicePrimaryCtxRetain) ||
      !Bind(lib, "cuCtxSetCurrent", &d.cuCtxSetCurrent) ||
      !Bind(lib, "cuMemGetInfo_v2", &d.cuMemGetInfo_v2) ||
      !Bind(lib, "cuMemAlloc_v2", &d.cuMemAlloc_v2) ||
      !Bind(lib, "cuMemFree_v2", &d.cuMemFree_v2) ||
      !Bind(lib, "cuModuleLoadData", &d.cuModuleLoadData) ||
      !Bind(lib, "cuModuleGetFunction", &d.cuModuleGetFunction) ||
      !Bind(lib, "cuLaunchKernel", &d.cuLaunchKernel) ||
      !Bind(lib, "cuStreamSynchronize", &d.cuStreamSynchronize)) {
    return 1;
  }
  if (CUresult r = d.cuInit(0); r != CUDA_SUCCESS) return Fail("cuInit", r);
  // The container runtime would show this container only its GPU; on the host, pick it by UUID.
  const char* visible = std::getenv("NVIDIA_VISIBLE_DEVICES");
  int count = 0;
  d.cuDeviceGetCount(&count);
  CUdevice dev = -1;
  for (int i = 0; i < count && dev < 0; ++i) {
    CUdevice cand;
    CUuuid u;
    if (d.cuDeviceGet(&cand, i) != CUDA_SUCCESS || d.cuDeviceGetUuid_v2(&u, cand) != CUDA_SUCCESS)
      continue;
    if (visible == nullptr || UuidString(u) == visible) dev = cand;
  }
  if (dev < 0) {
    std::fprintf(stderr, "workload: no GPU %s\n", visible ? visible : "");
    return 1;
  }
  CUcontext ctx;
  if (CUresult r = d.cuDevicePrimaryCtxRetain(&ctx, dev); r != CUDA_SUCCESS)
    return Fail("cuDevicePrimaryCtxRetain", r);
  d.cuCtxSetCurrent(ctx);

  size_t free_b = 0, total_b = 0;
  d.cuMemGetInfo_v2(&free_b, &total_b);
  // Past what it was given: the shim answers for this container alone.
  CUdeviceptr big = 0;
  CUresult over = d.cuMemAlloc_v2(&big, total_b + (64u << 20));
  if (over == CUDA_SUCCESS) d.cuMemFree_v2(big);
  CUdeviceptr half = 0;
  CUresult within = d.cuMemAlloc_v2(&half, total_b / 2);

  CUmodule mod;
  CUfunction fn;
  if (CUresult r = d.cuModuleLoadData(&mod, kSpinPtx); r != CUDA_SUCCESS)
    return Fail("cuModuleLoadData", r);
  if (CUresult r = d.cuModuleGetFunction(&fn, mod, "sleep"); r != CUDA_SUCCESS)
    return Fail("cuModuleGetFunction", r);
  uint64_t ns = static_cast<uint64_t>(kernel_us) * 1000;
  void* params[] = {&ns};
  auto start = std::chrono::steady_clock::now();
  auto end = start + std::chrono::duration<double>(seconds);
  long kernels = 0;
  while (std::chrono::steady_clock::now() < end) {
    // A few kernels in flight, then wait: a steady, saturating stream of work.
    for (int i = 0; i < 4; ++i) {
      if (CUresult r = d.cuLaunchKernel(fn, 1, 1, 1, 1, 1, 1, 0, nullptr, params, nullptr);
          r != CUDA_SUCCESS)
        return Fail("cuLaunchKernel", r);
    }
    d.cuStreamSynchronize(nullptr);
    kernels += 4;
  }
  double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (within == CUDA_SUCCESS) d.cuMemFree_v2(half);
  FILE* f = std::fopen(report.c_str(), "w");
  if (f == nullptr) return 1;
  std::fprintf(f, "kernels=%ld gpu_s=%.3f wall_s=%.3f mem_total=%zu over_cap=%d half=%d\n", kernels,
               kernels * kernel_us / 1e6, wall, total_b, static_cast<int>(over),
               static_cast<int>(within));
  std::fclose(f);
  return 0;
}

}  // namespace slicer::cli
