// The shim's cost per kernel launch, measured inside one process: batches of empty-kernel
// launches alternate between the driver's own cuLaunchKernel and the shim's (libslicer.so opened
// with dlopen, not preloaded, so the process's own calls stay unhooked). A process on the GPU
// machine runs either fast or slow as a whole (3.2 vs 4.4 µs a launch on the H200, see
// bench/results/arbiter-2026-11-29-night.md), which drowns a 1% effect when each configuration
// runs in its own process; here both sides share the process and its mode.
//
// Usage: launch_ab SHIM_PATH [BATCHES=400] [BATCH=2000] [TOUCH_KB=0]
//   The shim reads its environment as usual: with SLICER_ARBITER_SOCKET set it is a lone gated
//   client, without it the launch hook's mode check only. Each batch is BATCH launches of one
//   side, timed without the final cuCtxSynchronize; sides alternate, and which goes first flips
//   every pair. Prints the median ns per launch of each side, the median of the paired
//   differences (shim - driver) and that over the driver's median. TOUCH_KB > 0 writes one byte
//   per cache line of a TOUCH_KB buffer after every launch of either side: on the fake driver,
//   whose launch touches little memory, it stands in for a real driver's footprint, which may
//   evict the shim's data between launches.
//
// Builds with nothing but cuda.h (no libcuda at link time: both are opened at run time), so it
// runs here on the fake driver (LD_LIBRARY_PATH=build/fakes, SLICER_FAKE_NVML) as well as on a
// GPU, where the driver JIT-compiles the PTX below.
#include <cuda.h>
#include <dlfcn.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

namespace {

const char kPtx[] =
    ".version 7.0\n"
    ".target sm_75\n"
    ".address_size 64\n"
    ".visible .entry empty()\n"
    "{\n"
    "  ret;\n"
    "}\n";

using LaunchFn = CUresult (*)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned,
                              unsigned, unsigned, CUstream, void**, void**);

template <typename Fn>
Fn Sym(void* lib, const char* name) {
  void* p = dlsym(lib, name);
  if (p == nullptr) {
    std::fprintf(stderr, "launch_ab: %s not found: %s\n", name, dlerror());
    std::exit(2);
  }
  return reinterpret_cast<Fn>(p);
}

void Check(CUresult r, const char* what) {
  if (r != CUDA_SUCCESS) {
    std::fprintf(stderr, "launch_ab: %s failed: %d\n", what, static_cast<int>(r));
    std::exit(1);
  }
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: launch_ab SHIM_PATH [BATCHES] [BATCH] [TOUCH_KB]\n");
    return 2;
  }
  int batches = argc > 2 ? std::atoi(argv[2]) : 400;
  int batch = argc > 3 ? std::atoi(argv[3]) : 2000;
  size_t touch = argc > 4 ? static_cast<size_t>(std::atoi(argv[4])) * 1024 : 0;
  std::vector<unsigned char> scratch(touch + 64);
  if (batches < 2 || batch < 1) {
    std::fprintf(stderr, "launch_ab: BATCHES must be >= 2 and BATCH >= 1\n");
    return 2;
  }
  // The shim first, while the process has one thread (its load-time setup is cheapest then).
  void* shim = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (shim == nullptr) {
    std::fprintf(stderr, "launch_ab: %s\n", dlerror());
    return 2;
  }
  void* drv = dlopen("libcuda.so.1", RTLD_NOW | RTLD_GLOBAL);
  if (drv == nullptr) {
    std::fprintf(stderr, "launch_ab: %s\n", dlerror());
    return 2;
  }
  auto init = Sym<CUresult (*)(unsigned)>(drv, "cuInit");
  auto device_get = Sym<CUresult (*)(CUdevice*, int)>(drv, "cuDeviceGet");
  auto retain = Sym<CUresult (*)(CUcontext*, CUdevice)>(drv, "cuDevicePrimaryCtxRetain");
  auto set_current = Sym<CUresult (*)(CUcontext)>(drv, "cuCtxSetCurrent");
  auto load = Sym<CUresult (*)(CUmodule*, const void*)>(drv, "cuModuleLoadData");
  auto get_function =
      Sym<CUresult (*)(CUfunction*, CUmodule, const char*)>(drv, "cuModuleGetFunction");
  auto sync = Sym<CUresult (*)()>(drv, "cuCtxSynchronize");
  LaunchFn side[2] = {Sym<LaunchFn>(drv, "cuLaunchKernel"), Sym<LaunchFn>(shim, "cuLaunchKernel")};
  if (side[0] == side[1]) {
    std::fprintf(stderr, "launch_ab: the shim's cuLaunchKernel is the driver's (preloaded?)\n");
    return 2;
  }

  CUdevice dev;
  CUcontext ctx;
  CUmodule mod;
  CUfunction f;
  Check(init(0), "cuInit");
  Check(device_get(&dev, 0), "cuDeviceGet");
  Check(retain(&ctx, dev), "cuDevicePrimaryCtxRetain");
  Check(set_current(ctx), "cuCtxSetCurrent");
  Check(load(&mod, kPtx), "cuModuleLoadData");
  Check(get_function(&f, mod, "empty"), "cuModuleGetFunction");

  std::vector<double> ns[2], diff;
  for (int b = -2; b < batches; ++b) {  // two warm-up pairs
    double pair[2];
    for (int k = 0; k < 2; ++k) {
      int s = (b & 1) ? 1 - k : k;
      auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < batch; ++i) {
        Check(side[s](f, 1, 1, 1, 32, 1, 1, 0, nullptr, nullptr, nullptr), "cuLaunchKernel");
        for (size_t j = 0; j < touch; j += 64) ++scratch[j];
      }
      auto t1 = std::chrono::steady_clock::now();
      Check(sync(), "cuCtxSynchronize");
      pair[s] = std::chrono::duration<double, std::nano>(t1 - t0).count() / batch;
    }
    if (b < 0) continue;
    ns[0].push_back(pair[0]);
    ns[1].push_back(pair[1]);
    diff.push_back(pair[1] - pair[0]);
  }
  double driver = Median(ns[0]), hooked = Median(ns[1]), d = Median(diff);
  std::printf(
      "launch_ab batches=%d batch=%d touch_kb=%zu driver_ns=%.1f shim_ns=%.1f added_ns=%.1f "
      "added=%.4f\n",
      batches, batch, touch / 1024, driver, hooked, d, d / driver);
  return 0;
}
