// A small driver-API program that the shim tests run under libslicer.so and the fake libcuda. It
// executes the operations named on its command line in order and prints one line per operation,
// `op=<op> result=<CUresult> [key=value...]`, so that a test can drive several paths in one
// process. Exit status: 0 when every operation succeeded, 2 when the last failure was
// CUDA_ERROR_OUT_OF_MEMORY, 1 for any other failure.
//
// Operations (sizes in bytes, or with K/M/G suffixes):
//   init                     cuInit + primary context of device 0 made current
//   device:<n>               make device n's primary context current
//   alloc:<size>[:<via>]     cuMemAlloc_v2 by `via`: direct (default), proc (cuGetProcAddress_v2),
//                            procv1 (cuGetProcAddress), dlsym (dlopen + dlsym), procdl
//                            (cuGetProcAddress_v2 found through dlsym)
//   free                     cuMemFree_v2 of the newest allocation
//   async:<size>[:<flags>]   cuMemAllocAsync found by cuGetProcAddress_v2 with those flags
//   freeasync                cuMemFreeAsync (direct) of the newest allocation
//   pool:<size>              cuMemPoolCreate (device 0) + cuMemAllocFromPoolAsync
//   hostpool:<size>          same with a host-located pool
//   defpool:<size>:<dev>     cuDeviceGetDefaultMemPool(dev) + cuMemAllocFromPoolAsync_ptsz
//   vmm:<size>[:host]        cuMemCreate (device 0, or a host location)
//   release                  cuMemRelease of the newest VMM handle
//   managed:<size>           cuMemAllocManaged
//   pitch:<width>:<height>   cuMemAllocPitch_v2
//   array:<w>:<h>            cuArrayCreate_v2 (float, 1 channel); arraydestroy
//   info / infoproc          cuMemGetInfo_v2 direct / via cuGetProcAddress (prints free, total)
//   totalmem                 cuDeviceTotalMem_v2 of device 0 (prints bytes)
//   nvml[:v2]                NVML as pynvml calls it (dlopen libnvidia-ml.so.1, nvmlInit_v2,
//                            device 0 by index): nvmlDeviceGetMemoryInfo, or _v2 (prints free,
//                            total, used)
//   gpa:<sym>:<ver>:<flags>  cuGetProcAddress_v2; prints status and whether pfn is the shim's
//   gpa1:<sym>:<ver>:<flags> cuGetProcAddress (v1)
//   launch:<n>:<ns>          n "sleep" kernels of ns each, then cuStreamSynchronize; prints
//                            launch_ns (wall time per launch call, the sync excluded)
//   launchvia:<how>:<n>:<ns> the same through another entry point: proc, procptsz (found by
//                            cuGetProcAddress_v2, per-thread flag), ex (cuLaunchKernelEx), coop
//                            (cuLaunchCooperativeKernel), graph (one captured graph, launched n
//                            times), then cuCtxSynchronize
//   work:<s>:<us>:<every>[:copy|:side]
//                            a saturating loop for s seconds: sleep kernels of us microseconds on
//                            a stream of its own, cuStreamSynchronize every `every` launches (with
//                            `copy`: a 4-byte cuMemcpyDtoHAsync_v2 instead, as PyTorch's .item();
//                            with `side`: a second thread meanwhile launches zero-length kernels
//                            back to back on another stream, as a thread of small kernels beside
//                            a trainer's);
//                            prints work_ns (kernel time done), launches, and the launches that
//                            blocked > 2 ms: longest_wait_ms, waits=<end, CLOCK_MONOTONIC
//                            ns>/<ms>,...
//   cpubound:<s>:<us>:<cpu_us>
//                            a launch-bound loop for s seconds (inference in eager mode): one
//                            sleep kernel of us microseconds, then cpu_us of CPU work (a spin),
//                            the stream synced every 8 launches; prints launches and the longest
//                            launch call (longest_wait_ms)
//   requests:<n>:<k>:<us>:<gap_ms>
//                            n requests of k sleep kernels of us microseconds, each synced and
//                            followed by gap_ms idle; prints launch_ms_max / _p90 / _p50 (time in
//                            a request's launch calls)
//   capture:<n>:<ns>         on a new stream: begin capture, n sleep launches (prints capture_ms,
//                            how long the launches took), end capture, instantiate, launch, sync
//   sleepms:<ms>             sleep
//   rtldnext                 dlsym(RTLD_NEXT, "cuMemAlloc_v2"): prints which library answered
//   hold                     print "holding" and sleep until killed
#include <cuda.h>
#include <nvml.h>
#include <dlfcn.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#undef cuGetProcAddress
extern "C" CUresult cuGetProcAddress(const char*, void**, int, cuuint64_t);
extern "C" CUresult cuMemAllocFromPoolAsync_ptsz(CUdeviceptr*, size_t, CUmemoryPool, CUstream);

namespace {

// NVML's memory query on device 0, looked up by handle as pynvml does; its nvmlReturn_t is
// reported as a CUresult (0 = success, else CUDA_ERROR_UNKNOWN) and the numbers in *extra.
CUresult NvmlMemoryInfo(bool v2, std::string* extra) {
  void* h = dlopen("libnvidia-ml.so.1", RTLD_NOW);
  if (h == nullptr) return CUDA_ERROR_NOT_FOUND;
  auto init = reinterpret_cast<nvmlReturn_t (*)()>(dlsym(h, "nvmlInit_v2"));
  auto by_index =
      reinterpret_cast<nvmlReturn_t (*)(unsigned, nvmlDevice_t*)>(dlsym(h, "nvmlDeviceGetHandleByIndex_v2"));
  nvmlDevice_t dev = nullptr;
  if (init == nullptr || by_index == nullptr || init() != NVML_SUCCESS ||
      by_index(0, &dev) != NVML_SUCCESS) {
    return CUDA_ERROR_UNKNOWN;
  }
  unsigned long long free = 0, total = 0, used = 0;
  nvmlReturn_t r;
  if (v2) {
    auto fn = reinterpret_cast<nvmlReturn_t (*)(nvmlDevice_t, nvmlMemory_v2_t*)>(
        dlsym(h, "nvmlDeviceGetMemoryInfo_v2"));
    nvmlMemory_v2_t m{};
    m.version = nvmlMemory_v2;
    r = fn ? fn(dev, &m) : NVML_ERROR_FUNCTION_NOT_FOUND;
    free = m.free, total = m.total, used = m.used;
  } else {
    auto fn = reinterpret_cast<nvmlReturn_t (*)(nvmlDevice_t, nvmlMemory_t*)>(
        dlsym(h, "nvmlDeviceGetMemoryInfo"));
    nvmlMemory_t m{};
    r = fn ? fn(dev, &m) : NVML_ERROR_FUNCTION_NOT_FOUND;
    free = m.free, total = m.total, used = m.used;
  }
  *extra = " free=" + std::to_string(free) + " total=" + std::to_string(total) +
           " used=" + std::to_string(used);
  return r == NVML_SUCCESS ? CUDA_SUCCESS : CUDA_ERROR_UNKNOWN;
}

std::vector<std::string> Split(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    size_t c = s.find(':', start);
    out.push_back(s.substr(start, c - start));
    if (c == std::string::npos) return out;
    start = c + 1;
  }
}

uint64_t Size(const std::string& s) {
  char* end;
  uint64_t v = std::strtoull(s.c_str(), &end, 10);
  switch (*end) {
    case 'K':
      return v << 10;
    case 'M':
      return v << 20;
    case 'G':
      return v << 30;
    default:
      return v;
  }
}

const char* Library(void* p) {
  Dl_info info;
  if (p == nullptr || dladdr(p, &info) == 0 || info.dli_fname == nullptr) return "none";
  if (std::strstr(info.dli_fname, "libslicer")) return "shim";
  if (std::strstr(info.dli_fname, "libcuda")) return "driver";
  return "other";
}

using AllocFn = CUresult (*)(CUdeviceptr*, size_t);
using AllocAsyncFn = CUresult (*)(CUdeviceptr*, size_t, CUstream);
using InfoFn = CUresult (*)(size_t*, size_t*);
using Gpa2Fn = CUresult (*)(const char*, void**, int, cuuint64_t, CUdriverProcAddressQueryResult*);
using LaunchFn = CUresult (*)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned,
                              unsigned, unsigned, CUstream, void**, void**);

int64_t MonoNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

CUresult SleepFunction(CUfunction* f) {
  CUmodule mod;
  CUresult r = cuModuleLoadData(&mod, "");
  return r == CUDA_SUCCESS ? cuModuleGetFunction(f, mod, "sleep") : r;
}

// A captured graph of n sleep kernels of ns each, on `stream`; capture_ms: how long the n
// launches took.
CUresult Capture(CUstream stream, uint64_t n, uint64_t ns, CUgraphExec* exec, double* capture_ms) {
  CUfunction f;
  CUresult r = SleepFunction(&f);
  if (r == CUDA_SUCCESS) r = cuStreamBeginCapture(stream, CU_STREAM_CAPTURE_MODE_GLOBAL);
  void* params[] = {&ns};
  int64_t t0 = MonoNs();
  for (uint64_t k = 0; r == CUDA_SUCCESS && k < n; ++k) {
    r = cuLaunchKernel(f, 1, 1, 1, 1, 1, 1, 0, stream, params, nullptr);
  }
  *capture_ms = (MonoNs() - t0) / 1e6;
  CUgraph graph = nullptr;
  CUresult e = cuStreamEndCapture(stream, &graph);
  if (r == CUDA_SUCCESS) r = e;
  if (r == CUDA_SUCCESS) r = cuGraphInstantiate(exec, graph, 0);
  if (graph != nullptr) cuGraphDestroy(graph);
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  setvbuf(stdout, nullptr, _IOLBF, 0);
  std::vector<CUdeviceptr> ptrs;
  std::vector<CUmemGenericAllocationHandle> handles;
  std::vector<CUarray> arrays;
  CUresult last_failure = CUDA_SUCCESS;
  for (int i = 1; i < argc; ++i) {
    std::vector<std::string> a = Split(argv[i]);
    const std::string& op = a[0];
    auto arg = [&](size_t k, const char* def = "0") {
      return k < a.size() ? a[k] : std::string(def);
    };
    CUresult r = CUDA_SUCCESS;
    std::string extra;
    if (op == "init" || op == "device") {
      r = cuInit(0);
      CUcontext ctx;
      if (r == CUDA_SUCCESS) r = cuDevicePrimaryCtxRetain(&ctx, std::atoi(arg(1).c_str()));
      if (r == CUDA_SUCCESS) r = cuCtxSetCurrent(ctx);
    } else if (op == "alloc") {
      std::string via = arg(2, "direct");
      AllocFn fn = cuMemAlloc_v2;
      if (via == "proc") {
        r = cuGetProcAddress_v2("cuMemAlloc", reinterpret_cast<void**>(&fn), 13000, 0, nullptr);
      } else if (via == "procv1") {
        r = cuGetProcAddress("cuMemAlloc", reinterpret_cast<void**>(&fn), 12000, 0);
      } else if (via == "dlsym" || via == "procdl") {
        void* h = dlopen("libcuda.so.1", RTLD_NOW);
        if (via == "dlsym") {
          fn = reinterpret_cast<AllocFn>(dlsym(h, "cuMemAlloc_v2"));
        } else {
          auto gpa = reinterpret_cast<Gpa2Fn>(dlsym(h, "cuGetProcAddress_v2"));
          r = gpa("cuMemAlloc", reinterpret_cast<void**>(&fn), 12000, 0, nullptr);
        }
      }
      extra = std::string(" fn=") + Library(reinterpret_cast<void*>(fn));
      CUdeviceptr p = 0;
      if (r == CUDA_SUCCESS) r = fn ? fn(&p, Size(arg(1))) : CUDA_ERROR_NOT_FOUND;
      if (r == CUDA_SUCCESS) ptrs.push_back(p);
    } else if (op == "free" || op == "freeasync") {
      if (ptrs.empty()) {
        r = CUDA_ERROR_INVALID_VALUE;
      } else {
        r = op == "free" ? cuMemFree_v2(ptrs.back()) : cuMemFreeAsync(ptrs.back(), nullptr);
        ptrs.pop_back();
      }
    } else if (op == "async") {
      AllocAsyncFn fn = nullptr;
      CUdriverProcAddressQueryResult st;
      r = cuGetProcAddress_v2("cuMemAllocAsync", reinterpret_cast<void**>(&fn), 13000,
                              std::strtoull(arg(2).c_str(), nullptr, 10), &st);
      extra = std::string(" fn=") + Library(reinterpret_cast<void*>(fn));
      CUdeviceptr p = 0;
      if (r == CUDA_SUCCESS) r = fn ? fn(&p, Size(arg(1)), nullptr) : CUDA_ERROR_NOT_FOUND;
      if (r == CUDA_SUCCESS) ptrs.push_back(p);
    } else if (op == "pool" || op == "hostpool" || op == "defpool") {
      CUmemoryPool pool;
      if (op == "defpool") {
        r = cuDeviceGetDefaultMemPool(&pool, std::atoi(arg(2).c_str()));
      } else {
        CUmemPoolProps props;
        std::memset(&props, 0, sizeof props);
        props.allocType = CU_MEM_ALLOCATION_TYPE_PINNED;
        props.location.type =
            op == "pool" ? CU_MEM_LOCATION_TYPE_DEVICE : CU_MEM_LOCATION_TYPE_HOST;
        props.location.id = 0;
        r = cuMemPoolCreate(&pool, &props);
      }
      CUdeviceptr p = 0;
      if (r == CUDA_SUCCESS) {
        r = op == "defpool" ? cuMemAllocFromPoolAsync_ptsz(&p, Size(arg(1)), pool, nullptr)
                            : cuMemAllocFromPoolAsync(&p, Size(arg(1)), pool, nullptr);
      }
      if (r == CUDA_SUCCESS) ptrs.push_back(p);
    } else if (op == "vmm") {
      CUmemAllocationProp prop;
      std::memset(&prop, 0, sizeof prop);
      prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
      prop.location.type =
          arg(2, "") == "host" ? CU_MEM_LOCATION_TYPE_HOST : CU_MEM_LOCATION_TYPE_DEVICE;
      prop.location.id = 0;
      CUmemGenericAllocationHandle h;
      r = cuMemCreate(&h, Size(arg(1)), &prop, 0);
      if (r == CUDA_SUCCESS) handles.push_back(h);
    } else if (op == "release") {
      if (handles.empty()) {
        r = CUDA_ERROR_INVALID_VALUE;
      } else {
        r = cuMemRelease(handles.back());
        handles.pop_back();
      }
    } else if (op == "managed") {
      CUdeviceptr p = 0;
      r = cuMemAllocManaged(&p, Size(arg(1)), CU_MEM_ATTACH_GLOBAL);
      if (r == CUDA_SUCCESS) ptrs.push_back(p);
    } else if (op == "pitch") {
      CUdeviceptr p = 0;
      size_t pitch = 0;
      r = cuMemAllocPitch_v2(&p, &pitch, Size(arg(1)), Size(arg(2)), 4);
      if (r == CUDA_SUCCESS) ptrs.push_back(p);
      extra = " pitch=" + std::to_string(pitch);
    } else if (op == "array" || op == "arraydestroy") {
      if (op == "array") {
        CUDA_ARRAY_DESCRIPTOR d{Size(arg(1)), Size(arg(2)), CU_AD_FORMAT_FLOAT, 1};
        CUarray h;
        r = cuArrayCreate_v2(&h, &d);
        if (r == CUDA_SUCCESS) arrays.push_back(h);
      } else if (arrays.empty()) {
        r = CUDA_ERROR_INVALID_VALUE;
      } else {
        r = cuArrayDestroy(arrays.back());
        arrays.pop_back();
      }
    } else if (op == "info" || op == "infoproc") {
      InfoFn fn = cuMemGetInfo_v2;
      if (op == "infoproc") {
        r = cuGetProcAddress_v2("cuMemGetInfo", reinterpret_cast<void**>(&fn), 13000, 0, nullptr);
      }
      size_t f = 0, t = 0;
      if (r == CUDA_SUCCESS) r = fn(&f, &t);
      extra = " free=" + std::to_string(f) + " total=" + std::to_string(t);
    } else if (op == "nvml") {
      r = NvmlMemoryInfo(arg(1) == "v2", &extra);
    } else if (op == "totalmem") {
      size_t b = 0;
      r = cuDeviceTotalMem_v2(&b, 0);
      extra = " bytes=" + std::to_string(b);
    } else if (op == "gpa" || op == "gpa1") {
      void* fn = nullptr;
      CUdriverProcAddressQueryResult st = CU_GET_PROC_ADDRESS_SUCCESS;
      int ver = std::atoi(arg(2).c_str());
      cuuint64_t flags = std::strtoull(arg(3).c_str(), nullptr, 10);
      r = op == "gpa" ? cuGetProcAddress_v2(arg(1).c_str(), &fn, ver, flags, &st)
                      : cuGetProcAddress(arg(1).c_str(), &fn, ver, flags);
      Dl_info info{};
      const char* name = fn && dladdr(fn, &info) && info.dli_sname ? info.dli_sname : "-";
      extra = " status=" + std::to_string(st) + " lib=" + Library(fn) + " name=" + name;
    } else if (op == "launch") {
      CUmodule mod;
      CUfunction f;
      r = cuModuleLoadData(&mod, "");
      if (r == CUDA_SUCCESS) r = cuModuleGetFunction(&f, mod, "sleep");
      uint64_t ns = Size(arg(2)), n = Size(arg(1));
      void* params[] = {&ns};
      int64_t t0 = MonoNs();
      for (uint64_t k = 0; r == CUDA_SUCCESS && k < n; ++k) {
        r = cuLaunchKernel(f, 1, 1, 1, 1, 1, 1, 0, nullptr, params, nullptr);
      }
      double per_launch = n ? static_cast<double>(MonoNs() - t0) / n : 0;
      if (r == CUDA_SUCCESS) r = cuStreamSynchronize(nullptr);
      char buf[64];
      std::snprintf(buf, sizeof buf, " launch_ns=%.2f", per_launch);
      extra = buf;
    } else if (op == "launchvia") {
      std::string how = arg(1);
      uint64_t n = Size(arg(2)), ns = Size(arg(3));
      CUfunction f;
      r = SleepFunction(&f);
      void* params[] = {&ns};
      LaunchFn fn = nullptr;
      if (r == CUDA_SUCCESS && (how == "proc" || how == "procptsz")) {
        r = cuGetProcAddress_v2("cuLaunchKernel", reinterpret_cast<void**>(&fn), 13000,
                                how == "proc" ? 0 : CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM,
                                nullptr);
        extra = std::string(" fn=") + Library(reinterpret_cast<void*>(fn));
      }
      CUgraphExec exec = nullptr;
      CUstream stream = nullptr;
      if (r == CUDA_SUCCESS && how == "graph") {
        double ms;
        r = cuStreamCreate(&stream, 0);
        if (r == CUDA_SUCCESS) r = Capture(stream, 1, ns, &exec, &ms);
      }
      for (uint64_t k = 0; r == CUDA_SUCCESS && k < n; ++k) {
        if (fn != nullptr) {
          r = fn(f, 1, 1, 1, 1, 1, 1, 0, nullptr, params, nullptr);
        } else if (how == "ex") {
          CUlaunchConfig cfg{};
          cfg.gridDimX = cfg.gridDimY = cfg.gridDimZ = cfg.blockDimX = cfg.blockDimY =
              cfg.blockDimZ = 1;
          r = cuLaunchKernelEx(&cfg, f, params, nullptr);
        } else if (how == "coop") {
          r = cuLaunchCooperativeKernel(f, 1, 1, 1, 1, 1, 1, 0, nullptr, params);
        } else if (how == "graph") {
          r = cuGraphLaunch(exec, stream);
        } else {
          r = CUDA_ERROR_INVALID_VALUE;
        }
      }
      if (r == CUDA_SUCCESS) r = cuCtxSynchronize();
      if (exec != nullptr) cuGraphExecDestroy(exec);
    } else if (op == "work") {
      double seconds = std::atof(arg(1).c_str());
      uint64_t ns = Size(arg(2)) * 1000;
      uint64_t every = Size(arg(3, "4"));
      bool copy = arg(4) == "copy";
      std::atomic<bool> stop{false};
      std::thread side;
      if (arg(4) == "side") {
        CUcontext ctx = nullptr;
        cuCtxGetCurrent(&ctx);
        side = std::thread([ctx, &stop] {
          CUmodule mod;
          CUfunction empty;
          CUstream s2 = nullptr;
          if (cuCtxSetCurrent(ctx) != CUDA_SUCCESS || cuModuleLoadData(&mod, "") != CUDA_SUCCESS ||
              cuModuleGetFunction(&empty, mod, "empty") != CUDA_SUCCESS ||
              cuStreamCreate(&s2, 0) != CUDA_SUCCESS) {
            return;
          }
          while (!stop.load(std::memory_order_relaxed)) {
            cuLaunchKernel(empty, 1, 1, 1, 1, 1, 1, 0, s2, nullptr, nullptr);
          }
          cuStreamSynchronize(s2);
        });
      }
      CUfunction f;
      CUstream stream = nullptr;
      CUdeviceptr word = 0;
      uint32_t host_word = 0;
      r = SleepFunction(&f);
      if (r == CUDA_SUCCESS) r = cuStreamCreate(&stream, 0);
      if (r == CUDA_SUCCESS && copy) r = cuMemAlloc_v2(&word, sizeof host_word);
      void* params[] = {&ns};
      int64_t end = MonoNs() + static_cast<int64_t>(seconds * 1e9);
      uint64_t launches = 0;
      double longest = 0;
      std::string waits;
      int nwaits = 0;
      while (r == CUDA_SUCCESS && MonoNs() < end) {
        int64_t t0 = MonoNs();
        r = cuLaunchKernel(f, 1, 1, 1, 1, 1, 1, 0, stream, params, nullptr);
        int64_t t1 = MonoNs();
        double ms = (t1 - t0) / 1e6;
        if (ms > longest) longest = ms;
        if (ms > 2 && nwaits++ < 200) {
          waits += (waits.empty() ? "" : ",") + std::to_string(t1) + "/" + std::to_string(ms);
        }
        ++launches;
        if (r == CUDA_SUCCESS && launches % every == 0) {
          r = copy ? cuMemcpyDtoHAsync_v2(&host_word, word, sizeof host_word, stream)
                   : cuStreamSynchronize(stream);
        }
      }
      stop = true;
      if (side.joinable()) side.join();
      if (r == CUDA_SUCCESS) r = cuStreamSynchronize(stream);
      extra =
          " launches=" + std::to_string(launches) + " work_ns=" + std::to_string(launches * ns) +
          " longest_wait_ms=" + std::to_string(longest) + " waits=" + (waits.empty() ? "-" : waits);
    } else if (op == "cpubound") {
      double seconds = std::atof(arg(1).c_str());
      uint64_t ns = Size(arg(2)) * 1000;
      int64_t cpu_ns = static_cast<int64_t>(Size(arg(3))) * 1000;
      CUfunction f;
      CUstream stream = nullptr;
      r = SleepFunction(&f);
      if (r == CUDA_SUCCESS) r = cuStreamCreate(&stream, 0);
      void* params[] = {&ns};
      int64_t end = MonoNs() + static_cast<int64_t>(seconds * 1e9);
      uint64_t launches = 0;
      double longest = 0;
      while (r == CUDA_SUCCESS && MonoNs() < end) {
        int64_t t0 = MonoNs();
        r = cuLaunchKernel(f, 1, 1, 1, 1, 1, 1, 0, stream, params, nullptr);
        longest = std::max(longest, (MonoNs() - t0) / 1e6);
        for (int64_t spin_end = MonoNs() + cpu_ns; MonoNs() < spin_end;) {
        }
        if (r == CUDA_SUCCESS && ++launches % 8 == 0) r = cuStreamSynchronize(stream);
      }
      if (r == CUDA_SUCCESS) r = cuStreamSynchronize(stream);
      extra = " launches=" + std::to_string(launches) +
              " longest_wait_ms=" + std::to_string(longest);
    } else if (op == "requests") {
      // requests:<n>:<k>:<us>:<gap_ms>: n requests of k sleep kernels on a stream of its own,
      // each followed by cuStreamSynchronize and gap_ms idle; prints the longest time a request's
      // k launch calls took (launch_ms_max; the sync excluded), the 90th percentile and the median.
      uint64_t n = Size(arg(1)), k = Size(arg(2)), ns = Size(arg(3)) * 1000;
      int gap_ms = std::atoi(arg(4, "10").c_str());
      CUfunction f;
      CUstream stream = nullptr;
      r = SleepFunction(&f);
      if (r == CUDA_SUCCESS) r = cuStreamCreate(&stream, 0);
      void* params[] = {&ns};
      std::vector<double> launch_ms;
      for (uint64_t i = 0; r == CUDA_SUCCESS && i < n; ++i) {
        int64_t t0 = MonoNs();
        for (uint64_t j = 0; r == CUDA_SUCCESS && j < k; ++j) {
          r = cuLaunchKernel(f, 1, 1, 1, 1, 1, 1, 0, stream, params, nullptr);
        }
        launch_ms.push_back((MonoNs() - t0) / 1e6);
        if (r == CUDA_SUCCESS) r = cuStreamSynchronize(stream);
        usleep(static_cast<useconds_t>(gap_ms) * 1000);
      }
      std::sort(launch_ms.begin(), launch_ms.end());
      auto at = [&](double q) {
        return launch_ms.empty() ? 0 : launch_ms[static_cast<size_t>(q * (launch_ms.size() - 1))];
      };
      extra = " launch_ms_max=" + std::to_string(at(1)) + " launch_ms_p90=" + std::to_string(at(0.9)) +
              " launch_ms_p50=" + std::to_string(at(0.5));
    } else if (op == "capture") {
      CUstream stream = nullptr;
      CUgraphExec exec = nullptr;
      double ms = 0;
      r = cuStreamCreate(&stream, 0);
      if (r == CUDA_SUCCESS) r = Capture(stream, Size(arg(1)), Size(arg(2)), &exec, &ms);
      if (r == CUDA_SUCCESS) r = cuGraphLaunch(exec, stream);
      if (r == CUDA_SUCCESS) r = cuStreamSynchronize(stream);
      if (exec != nullptr) cuGraphExecDestroy(exec);
      extra = " capture_ms=" + std::to_string(ms);
    } else if (op == "sleepms") {
      usleep(static_cast<useconds_t>(std::atoi(arg(1).c_str())) * 1000);
    } else if (op == "rtldnext") {
      extra = std::string(" lib=") + Library(dlsym(RTLD_NEXT, "cuMemAlloc_v2"));
    } else if (op == "hold") {
      std::printf("holding\n");
      while (true) pause();
    } else {
      std::fprintf(stderr, "cuda_client: unknown operation %s\n", argv[i]);
      return 64;
    }
    std::printf("op=%s result=%d%s\n", argv[i], static_cast<int>(r), extra.c_str());
    if (r != CUDA_SUCCESS) last_failure = r;
  }
  if (last_failure == CUDA_SUCCESS) return 0;
  return last_failure == CUDA_ERROR_OUT_OF_MEMORY ? 2 : 1;
}
