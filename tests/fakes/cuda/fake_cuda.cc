// Fake libcuda.so.1: the CUDA driver API on host memory, so that the shim's caps and shares can be
// tested on a machine without a GPU (DESIGN.md, "Test doubles").
//
// What it models:
// - Devices come from the fake machine file (SLICER_FAKE_NVML): count, name, UUID, memory size.
//   cuInit must be called first (CUDA_ERROR_NOT_INITIALIZED otherwise), and a current context is
//   needed for allocations, as with the real driver.
// - Device memory is anonymous host memory mapped with MAP_NORESERVE, so a 16 GiB "GPU" costs
//   nothing until it is touched. Each process sees the whole device: used memory is counted per
//   process (cuMemGetInfo_v2's free = size - this process's allocations); a request past the
//   device size returns CUDA_ERROR_OUT_OF_MEMORY.
// - Pools (cuMemAllocAsync, cuMemAllocFromPoolAsync), VMM (cuMemCreate/cuMemRelease/cuMemMap...),
//   arrays, managed and pitched memory all take from the same per-device counter.
// - Kernels: cuModuleLoadData accepts any image; cuModuleGetFunction returns a function for any
//   name. A function named "sleep" takes one parameter, a uint64_t number of nanoseconds
//   (kernelParams[0] points at it): cuLaunchKernel (and _ptsz, cuLaunchKernelEx,
//   cuLaunchCooperativeKernel) queues that much "GPU time" on the stream and returns at once;
//   cuStreamSynchronize sleeps until the stream's queued time has passed, cuCtxSynchronize until
//   every stream's has (the legacy stream 0/0x1, the per-thread stream 0x2 -- one for the
//   process -- and each created stream); cuStreamQuery says whether it has. Any other function
//   name is a kernel of zero duration. Streams overlap freely (no time-slicing between them).
//   With SLICER_FAKE_CUDA_QUEUE=<n>, a launch onto a stream with n kernels queued waits for the
//   oldest to finish (the real driver's full queue).
// - Events: an event recorded on a stream completes when the work queued before it does;
//   cuEventSynchronize sleeps until then, cuEventElapsedTime gives the time between two.
// - Stream capture: between cuStreamBeginCapture_v2 and cuStreamEndCapture a stream's launches
//   run nothing and add their time to the graph; cuGraphInstantiateWithFlags + cuGraphLaunch
//   queue the graph's total. Synchronizing a capturing stream (or the context while one captures)
//   fails with CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED, as on the real driver.
// - cuCtxPushCurrent_v2 / cuCtxPopCurrent_v2 keep a per-thread stack.
// - cuGetProcAddress / cuGetProcAddress_v2 resolve like the real driver: `symbol` is the base
//   name (no _v2/_ptsz suffix); the newest variant introduced at or before `cudaVersion` is
//   returned; CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM picks the _ptsz/_ptds variant when
//   there is one; an unknown name gives CUDA_SUCCESS with *pfn = NULL and
//   CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND, a name whose every variant is newer than cudaVersion
//   gives VERSION_NOT_SUFFICIENT (as cuda.h 13.0 documents); cudaVersion above the driver's
//   version or unknown flags give CUDA_ERROR_INVALID_VALUE. The pointers it returns are the
//   exported functions themselves, except where SLICER_FAKE_CUDA_PROC_INTERNAL=1: then it returns
//   distinct internal entry points (as a real driver may), which exercises the shim's fallback
//   that maps a pointer to a variant by the version rules instead of by address.
//
// Thread-safe: one mutex guards the tables; stream time is kept per stream.
#include <cuda.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "machine_file.h"

// The unversioned names below are the old entry points themselves, not cuda.h's aliases.
#undef cuGetProcAddress
#undef cuDeviceGetUuid
#undef cuEventElapsedTime

#define FAKE_EXPORT extern "C" __attribute__((visibility("default")))

namespace {

using Clock = std::chrono::steady_clock;

struct Stream {
  std::mutex mu;
  Clock::time_point busy_until{};
  bool capturing = false;    // between cuStreamBeginCapture and cuStreamEndCapture
  uint64_t captured_ns = 0;  // sleep kernels captured so far
  std::deque<Clock::time_point> pending;  // end times of queued kernels (only with a queue limit)
};

// SLICER_FAKE_CUDA_QUEUE=<n>: a launch on a stream that already has n kernels queued waits until
// the oldest has run, as the real driver holds a launch when its queue is full. 0 (unset): no
// limit, launches return at once.
size_t QueueLimit() {
  static const size_t limit = [] {
    const char* v = std::getenv("SLICER_FAKE_CUDA_QUEUE");
    return v != nullptr ? static_cast<size_t>(std::strtoull(v, nullptr, 10)) : 0;
  }();
  return limit;
}

struct Allocation {
  int device;
  size_t size;
};

struct State {
  std::mutex mu;
  bool initialized = false;
  fake::Machine machine;
  std::vector<uint64_t> used;                        // bytes in use per device, this process
  std::map<uintptr_t, Allocation> allocations;       // device pointer -> allocation
  std::map<unsigned long long, Allocation> handles;  // VMM handle -> physical allocation
  std::map<uintptr_t, Allocation> arrays;            // CUarray / CUmipmappedArray -> bytes
  unsigned long long next_handle = 1;
  Stream legacy_stream;
  Stream per_thread_stream;  // one for the process: the fake runs one default stream per flavour
  std::vector<Stream*> streams;  // created and not destroyed: cuCtxSynchronize waits for all
};

State& S() {
  static State* s = new State;  // never destroyed: other libraries' destructors may still call in
  return *s;
}

thread_local CUcontext current_ctx = nullptr;
thread_local std::vector<CUcontext> ctx_stack;  // cuCtxPushCurrent / cuCtxPopCurrent
thread_local CUstreamCaptureMode capture_mode = CU_STREAM_CAPTURE_MODE_GLOBAL;

// A context handle encodes its device: (device + 1) << 4, never dereferenced.
CUcontext CtxFor(int dev) { return reinterpret_cast<CUcontext>(static_cast<uintptr_t>(dev + 1) << 4); }
int DeviceOf(CUcontext ctx) { return static_cast<int>((reinterpret_cast<uintptr_t>(ctx) >> 4) - 1); }

bool ValidDevice(int dev) { return dev >= 0 && static_cast<size_t>(dev) < S().machine.devices.size(); }

uint64_t DeviceBytes(int dev) { return S().machine.devices[dev].memory_mib << 20; }

CUresult CheckInit() { return S().initialized ? CUDA_SUCCESS : CUDA_ERROR_NOT_INITIALIZED; }

CUresult CurrentDevice(int* dev) {
  if (CUresult r = CheckInit(); r != CUDA_SUCCESS) return r;
  if (current_ctx == nullptr) return CUDA_ERROR_INVALID_CONTEXT;
  *dev = DeviceOf(current_ctx);
  return ValidDevice(*dev) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_CONTEXT;
}

// Takes `size` bytes of device `dev` (lock held). Returns false when the device is full.
bool Take(int dev, size_t size) {
  State& s = S();
  if (size > DeviceBytes(dev) - s.used[dev]) return false;
  s.used[dev] += size;
  return true;
}

void Give(int dev, size_t size) { S().used[dev] -= std::min<uint64_t>(size, S().used[dev]); }

CUresult AllocOn(int dev, CUdeviceptr* dptr, size_t size) {
  if (dptr == nullptr || size == 0) return CUDA_ERROR_INVALID_VALUE;
  State& s = S();
  std::lock_guard<std::mutex> lock(s.mu);
  if (!Take(dev, size)) return CUDA_ERROR_OUT_OF_MEMORY;
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                 -1, 0);
  if (p == MAP_FAILED) {
    Give(dev, size);
    return CUDA_ERROR_OUT_OF_MEMORY;
  }
  s.allocations[reinterpret_cast<uintptr_t>(p)] = {dev, size};
  *dptr = reinterpret_cast<CUdeviceptr>(p);
  return CUDA_SUCCESS;
}

CUresult Alloc(CUdeviceptr* dptr, size_t size) {
  int dev;
  if (CUresult r = CurrentDevice(&dev); r != CUDA_SUCCESS) return r;
  return AllocOn(dev, dptr, size);
}

CUresult Free(CUdeviceptr dptr) {
  if (CUresult r = CheckInit(); r != CUDA_SUCCESS) return r;
  if (dptr == 0) return CUDA_SUCCESS;
  State& s = S();
  std::lock_guard<std::mutex> lock(s.mu);
  auto it = s.allocations.find(static_cast<uintptr_t>(dptr));
  if (it == s.allocations.end()) return CUDA_ERROR_INVALID_VALUE;
  munmap(reinterpret_cast<void*>(it->first), it->second.size);
  Give(it->second.device, it->second.size);
  s.allocations.erase(it);
  return CUDA_SUCCESS;
}

Stream* StreamOf(CUstream h) {
  // 0 and CU_STREAM_LEGACY (0x1) are the legacy default stream, CU_STREAM_PER_THREAD (0x2) the
  // per-thread one (one for the whole process: enough for tests).
  uintptr_t v = reinterpret_cast<uintptr_t>(h);
  if (v == 2) return &S().per_thread_stream;
  if (v <= 1) return &S().legacy_stream;
  return reinterpret_cast<Stream*>(h);
}

// Queues `ns` of "GPU time" on the stream, or records it into the graph being captured.
void Enqueue(Stream* st, uint64_t ns) {
  std::lock_guard<std::mutex> lock(st->mu);
  if (st->capturing) {
    st->captured_ns += ns;
    return;
  }
  size_t limit = QueueLimit();
  Clock::time_point now = Clock::now();
  if (limit > 0) {
    while (!st->pending.empty() && st->pending.front() <= now) st->pending.pop_front();
    if (st->pending.size() >= limit) {
      std::this_thread::sleep_until(st->pending.front());  // the stream's lock held: it is full
      st->pending.pop_front();
      now = Clock::now();
    }
  }
  st->busy_until = std::max(st->busy_until, now) + std::chrono::nanoseconds(ns);
  if (limit > 0) st->pending.push_back(st->busy_until);
}

bool Capturing(Stream* st) {
  std::lock_guard<std::mutex> lock(st->mu);
  return st->capturing;
}

void SyncStream(Stream* st) {
  Clock::time_point until;
  {
    std::lock_guard<std::mutex> lock(st->mu);
    until = st->busy_until;
  }
  std::this_thread::sleep_until(until);
}

uint64_t ArrayBytes(size_t w, size_t h, size_t d, CUarray_format f, unsigned channels) {
  uint64_t elem = 1;
  switch (f) {
    case CU_AD_FORMAT_UNSIGNED_INT16: case CU_AD_FORMAT_SIGNED_INT16: case CU_AD_FORMAT_HALF:
      elem = 2; break;
    case CU_AD_FORMAT_UNSIGNED_INT32: case CU_AD_FORMAT_SIGNED_INT32: case CU_AD_FORMAT_FLOAT:
      elem = 4; break;
    default: elem = 1;
  }
  return static_cast<uint64_t>(w) * std::max<size_t>(h, 1) * std::max<size_t>(d, 1) * elem *
         std::max(channels, 1u);
}

CUresult ArrayCreate(uintptr_t* out, uint64_t bytes) {
  int dev;
  if (CUresult r = CurrentDevice(&dev); r != CUDA_SUCCESS) return r;
  State& s = S();
  std::lock_guard<std::mutex> lock(s.mu);
  if (!Take(dev, bytes)) return CUDA_ERROR_OUT_OF_MEMORY;
  uintptr_t h = (s.next_handle++) << 4 | 0x8;
  s.arrays[h] = {dev, bytes};
  *out = h;
  return CUDA_SUCCESS;
}

CUresult ArrayDestroy(uintptr_t h) {
  State& s = S();
  std::lock_guard<std::mutex> lock(s.mu);
  auto it = s.arrays.find(h);
  if (it == s.arrays.end()) return CUDA_ERROR_INVALID_HANDLE;
  Give(it->second.device, it->second.size);
  s.arrays.erase(it);
  return CUDA_SUCCESS;
}

}  // namespace

// ---- Initialisation, version, devices -------------------------------------------------------

FAKE_EXPORT CUresult cuInit(unsigned int flags) {
  State& s = S();
  std::lock_guard<std::mutex> lock(s.mu);
  if (s.initialized) return CUDA_SUCCESS;
  std::string error;
  if (!fake::LoadMachineFromEnv(s.machine, error)) {
    std::fprintf(stderr, "fake libcuda: %s\n", error.c_str());
    return CUDA_ERROR_NO_DEVICE;
  }
  s.used.assign(s.machine.devices.size(), 0);
  s.initialized = true;
  return CUDA_SUCCESS;
}

FAKE_EXPORT CUresult cuDriverGetVersion(int* v) {
  if (v == nullptr) return CUDA_ERROR_INVALID_VALUE;
  *v = S().initialized ? S().machine.cuda_driver_version : 13000;
  return CUDA_SUCCESS;
}

FAKE_EXPORT CUresult cuDeviceGetCount(int* count) {
  if (CUresult r = CheckInit(); r != CUDA_SUCCESS) return r;
  *count = static_cast<int>(S().machine.devices.size());
  return CUDA_SUCCESS;
}

FAKE_EXPORT CUresult cuDeviceGet(CUdevice* dev, int ordinal) {
  if (CUresult r = CheckInit(); r != CUDA_SUCCESS) return r;
  if (!ValidDevice(ordinal)) return CUDA_ERROR_INVALID_DEVICE;
  *dev = ordinal;
  return CUDA_SUCCESS;
}

FAKE_EXPORT CUresult cuDeviceGetName(char* name, int len, CUdevice dev) {
  if (CUresult r = CheckInit(); r != CUDA_SUCCESS) return r;
  if (!ValidDevice(dev)) return CUDA_ERROR_INVALID_DEVICE;
  std::snprintf(name, len, "%s", S().machine.devices[dev].name.c_str());
  return CUDA_SUCCESS;
}

// "GPU-11111111-2222-3333-4444-555555555555" -> 16 bytes. Malformed digits read as 0.
static void ParseUuid(const std::string& text, CUuuid* out) {
  std::memset(out, 0, sizeof *out);
  std::string hex;
  for (char c : text.substr(text.rfind("GPU-", 0) == 0 ? 4 : 0)) {
    if (std::isxdigit(static_cast<unsigned char>(c))) hex += c;
  }
  for (size_t i = 0; i < 16 && 2 * i + 1 < hex.size(); ++i) {
    out->bytes[i] = static_cast<char>(std::stoi(hex.substr(2 * i, 2), nullptr, 16));
  }
}

FAKE_EXPORT CUresult cuDeviceGetUuid_v2(CUuuid* uuid, CUdevice dev) {
  if (CUresult r = CheckInit(); r != CUDA_SUCCESS) return r;
  if (!ValidDevice(dev)) return CUDA_ERROR_INVALID_DEVICE;
  if (uuid == nullptr) return CUDA_ERROR_INVALID_VALUE;
  ParseUuid(S().machine.devices[dev].uuid, uuid);
  return CUDA_SUCCESS;
}

FAKE_EXPORT CUresult cuDeviceGetUuid(CUuuid* uuid, CUdevice dev) { return cuDeviceGetUuid_v2(uuid, dev); }

FAKE_EXPORT CUresult cuDeviceTotalMem_v2(size_t* bytes, CUdevice dev) {
  if (CUresult r = CheckInit(); r != CUDA_SUCCESS) return r;
  if (!ValidDevice(dev)) return CUDA_ERROR_INVALID_DEVICE;
  *bytes = DeviceBytes(dev);
  return CUDA_SUCCESS;
}

FAKE_EXPORT CUresult cuDeviceGetAttribute(int* value, CUdevice_attribute attrib, CUdevice dev) {
  if (CUresult r = CheckInit(); r != CUDA_SUCCESS) return r;
  if (!ValidDevice(dev)) return CUDA_ERROR_INVALID_DEVICE;
  const fake::FakeDevice& d = S().machine.devices[dev];
  switch (attrib) {
    case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR: *value = d.cc_major; break;
    case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR: *value = d.cc_minor; break;
    case CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT: *value = 40; break;
    case CU_DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED: *value = 1; break;
    case CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED: *value = 1; break;
    case CU_DEVICE_ATTRIBUTE_MANAGED_MEMORY: *value = 1; break;
    default: *value = 0;
  }
  return CUDA_SUCCESS;
}

// ---- Contexts ---------------------------------------------------------------------------------

FAKE_EXPORT CUresult cuDevicePrimaryCtxRetain(CUcontext* ctx, CUdevice dev) {
  if (CUresult r = CheckInit(); r != CUDA_SUCCESS) return r;
  if (!ValidDevice(dev)) return CUDA_ERROR_INVALID_DEVICE;
  *ctx = CtxFor(dev);
  return CUDA_SUCCESS;
}

FAKE_EXPORT CUresult cuDevicePrimaryCtxRelease_v2(CUdevice dev) {
  if (CUresult r = CheckInit(); r != CUDA_SUCCESS) return r;
  return ValidDevice(dev) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_DEVICE;
}

FAKE_EXPORT CUresult cuCtxCreate_v4(CUcontext* ctx, CUctxCreateParams* params, unsigned int flags,
                                    CUdevice dev) {
  if (CUresult r = CheckInit(); r != CUDA_SUCCESS) return r;
  if (!ValidDevice(dev)) return CUDA_ERROR_INVALID_DEVICE;
  *ctx = current_ctx = CtxFor(dev);
  return CUDA_SUCCESS;
}

FAKE_EXPORT CUresult cuCtxDestroy_v2(CUcontext ctx) {
  if (current_ctx == ctx) current_ctx = nullptr;
  return CheckInit();
}

FAKE_EXPORT CUresult cuCtxSetCurrent(CUcontext ctx) {
  if (CUresult r = CheckInit(); r != CUDA_SUCCESS) return r;
  if (ctx != nullptr && !ValidDevice(DeviceOf(ctx))) return CUDA_ERROR_INVALID_CONTEXT;
  current_ctx = ctx;
  return CUDA_SUCCESS;
}

FAKE_EXPORT CUresult cuCtxGetCurrent(CUcontext* ctx) {
  if (CUresult r = CheckInit(); r != CUDA_SUCCESS) return r;
  *ctx = current_ctx;
  return CUDA_SUCCESS;
}

FAKE_EXPORT CUresult cuCtxGetDevice(CUdevice* dev) {
  int d;
  if (CUresult r = CurrentDevice(&d); r != CUDA_SUCCESS) return r;
  *dev = d;
  return CUDA_SUCCESS;
}

FAKE_EXPORT CUresult cuCtxSynchronize() {
  if (CUresult r = CheckInit(); r != CUDA_SUCCESS) return r;
  std::vector<Stream*> all = {&S().legacy_stream, &S().per_thread_stream};
  {
    std::lock_guard<std::mutex> lock(S().mu);
    all.insert(all.end(), S().streams.begin(), S().streams.end());
  }
  for (Stream* st : all) {
    if (Capturing(st)) return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
  }
  for (Stream* st : all) SyncStream(st);
  return CUDA_SUCCESS;
}
FAKE_EXPORT CUresult cuCtxSynchronize_v2(CUcontext) { return cuCtxSynchronize(); }

FAKE_EXPORT CUresult cuCtxPushCurrent_v2(CUcontext ctx) {
  if (CUresult r = CheckInit(); r != CUDA_SUCCESS) return r;
  if (ctx == nullptr || !ValidDevice(DeviceOf(ctx))) return CUDA_ERROR_INVALID_CONTEXT;
  ctx_stack.push_back(current_ctx);
  current_ctx = ctx;
  return CUDA_SUCCESS;
}

FAKE_EXPORT CUresult cuCtxPopCurrent_v2(CUcontext* ctx) {
  if (CUresult r = CheckInit(); r != CUDA_SUCCESS) return r;
  if (current_ctx == nullptr) return CUDA_ERROR_INVALID_CONTEXT;
  if (ctx != nullptr) *ctx = current_ctx;
  current_ctx = ctx_stack.empty() ? nullptr : ctx_stack.back();
  if (!ctx_stack.empty()) ctx_stack.pop_back();
  return CUDA_SUCCESS;
}

FAKE_EXPORT CUresult cuThreadExchangeStreamCaptureMode(CUstreamCaptureMode* mode) {
  if (mode == nullptr) return CUDA_ERROR_INVALID_VALUE;
  std::swap(*mode, capture_mode);
  return CUDA_SUCCESS;
}

// ---- Memory -----------------------------------------------------------------------------------

FAKE_EXPORT CUresult cuMemGetInfo_v2(size_t* free_bytes, size_t* total) {
  int dev;
  if (CUresult r = CurrentDevice(&dev); r != CUDA_SUCCESS) return r;
  std::lock_guard<std::mutex> lock(S().mu);
  *total = DeviceBytes(dev);
  *free_bytes = DeviceBytes(dev) - S().used[dev];
  return CUDA_SUCCESS;
}

FAKE_EXPORT CUresult cuMemAlloc_v2(CUdeviceptr* dptr, size_t bytesize) { return Alloc(dptr, bytesize); }

FAKE_EXPORT CUresult cuMemAllocPitch_v2(CUdeviceptr* dptr, size_t* pitch, size_t width,
                                        size_t height, unsigned int elem) {
  if (pitch == nullptr || width == 0 || height == 0) return CUDA_ERROR_INVALID_VALUE;
  *pitch = (width + 511) / 512 * 512;
  return Alloc(dptr, *pitch * height);
}

FAKE_EXPORT CUresult cuMemAllocManaged(CUdeviceptr* dptr, size_t bytesize, unsigned int flags) {
  return Alloc(dptr, bytesize);
}

FAKE_EXPORT CUresult cuMemFree_v2(CUdeviceptr dptr) { return Free(dptr); }

FAKE_EXPORT CUresult cuMemAllocAsync(CUdeviceptr* dptr, size_t bytesize, CUstream) {
  return Alloc(dptr, bytesize);
}
FAKE_EXPORT CUresult cuMemAllocAsync_ptsz(CUdeviceptr* dptr, size_t bytesize, CUstream) {
  return Alloc(dptr, bytesize);
}
FAKE_EXPORT CUresult cuMemFreeAsync(CUdeviceptr dptr, CUstream) { return Free(dptr); }
FAKE_EXPORT CUresult cuMemFreeAsync_ptsz(CUdeviceptr dptr, CUstream) { return Free(dptr); }

// A pool handle encodes its device like a context does.
FAKE_EXPORT CUresult cuMemPoolCreate(CUmemoryPool* pool, const CUmemPoolProps* props) {
  if (CUresult r = CheckInit(); r != CUDA_SUCCESS) return r;
  if (pool == nullptr || props == nullptr || !ValidDevice(props->location.id)) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  *pool = reinterpret_cast<CUmemoryPool>(static_cast<uintptr_t>(props->location.id + 1) << 4);
  return CUDA_SUCCESS;
}
FAKE_EXPORT CUresult cuMemPoolDestroy(CUmemoryPool) { return CheckInit(); }
FAKE_EXPORT CUresult cuDeviceGetDefaultMemPool(CUmemoryPool* pool, CUdevice dev) {
  if (CUresult r = CheckInit(); r != CUDA_SUCCESS) return r;
  if (!ValidDevice(dev)) return CUDA_ERROR_INVALID_DEVICE;
  *pool = reinterpret_cast<CUmemoryPool>(static_cast<uintptr_t>(dev + 1) << 4);
  return CUDA_SUCCESS;
}
FAKE_EXPORT CUresult cuDeviceGetMemPool(CUmemoryPool* pool, CUdevice dev) {
  return cuDeviceGetDefaultMemPool(pool, dev);
}
FAKE_EXPORT CUresult cuMemPoolTrimTo(CUmemoryPool, size_t) { return CheckInit(); }

static CUresult AllocFromPool(CUdeviceptr* dptr, size_t bytesize, CUmemoryPool pool) {
  if (CUresult r = CheckInit(); r != CUDA_SUCCESS) return r;
  int dev = static_cast<int>((reinterpret_cast<uintptr_t>(pool) >> 4) - 1);
  if (!ValidDevice(dev)) return CUDA_ERROR_INVALID_VALUE;
  return AllocOn(dev, dptr, bytesize);
}
FAKE_EXPORT CUresult cuMemAllocFromPoolAsync(CUdeviceptr* dptr, size_t bytesize, CUmemoryPool pool,
                                             CUstream) {
  return AllocFromPool(dptr, bytesize, pool);
}
FAKE_EXPORT CUresult cuMemAllocFromPoolAsync_ptsz(CUdeviceptr* dptr, size_t bytesize,
                                                  CUmemoryPool pool, CUstream) {
  return AllocFromPool(dptr, bytesize, pool);
}

// VMM: physical handles count against the device (device locations only); address ranges are
// host reservations; mapping is bookkeeping only.
FAKE_EXPORT CUresult cuMemGetAllocationGranularity(size_t* granularity,
                                                   const CUmemAllocationProp* prop,
                                                   CUmemAllocationGranularity_flags) {
  if (CUresult r = CheckInit(); r != CUDA_SUCCESS) return r;
  *granularity = 2 << 20;
  return CUDA_SUCCESS;
}

FAKE_EXPORT CUresult cuMemCreate(CUmemGenericAllocationHandle* handle, size_t size,
                                 const CUmemAllocationProp* prop, unsigned long long flags) {
  if (CUresult r = CheckInit(); r != CUDA_SUCCESS) return r;
  if (handle == nullptr || prop == nullptr || size == 0 || size % (2 << 20) != 0) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  bool on_device = prop->location.type == CU_MEM_LOCATION_TYPE_DEVICE;
  int dev = on_device ? prop->location.id : -1;
  if (on_device && !ValidDevice(dev)) return CUDA_ERROR_INVALID_DEVICE;
  State& s = S();
  std::lock_guard<std::mutex> lock(s.mu);
  if (on_device && !Take(dev, size)) return CUDA_ERROR_OUT_OF_MEMORY;
  *handle = s.next_handle++;
  s.handles[*handle] = {dev, size};
  return CUDA_SUCCESS;
}

FAKE_EXPORT CUresult cuMemRelease(CUmemGenericAllocationHandle handle) {
  if (CUresult r = CheckInit(); r != CUDA_SUCCESS) return r;
  State& s = S();
  std::lock_guard<std::mutex> lock(s.mu);
  auto it = s.handles.find(handle);
  if (it == s.handles.end()) return CUDA_ERROR_INVALID_VALUE;
  if (it->second.device >= 0) Give(it->second.device, it->second.size);
  s.handles.erase(it);
  return CUDA_SUCCESS;
}

FAKE_EXPORT CUresult cuMemAddressReserve(CUdeviceptr* ptr, size_t size, size_t, CUdeviceptr,
                                         unsigned long long) {
  if (CUresult r = CheckInit(); r != CUDA_SUCCESS) return r;
  void* p = mmap(nullptr, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return CUDA_ERROR_OUT_OF_MEMORY;
  *ptr = reinterpret_cast<CUdeviceptr>(p);
  return CUDA_SUCCESS;
}
FAKE_EXPORT CUresult cuMemAddressFree(CUdeviceptr ptr, size_t size) {
  munmap(reinterpret_cast<void*>(ptr), size);
  return CheckInit();
}
FAKE_EXPORT CUresult cuMemMap(CUdeviceptr ptr, size_t size, size_t, CUmemGenericAllocationHandle,
                              unsigned long long) {
  return CheckInit();
}
FAKE_EXPORT CUresult cuMemUnmap(CUdeviceptr, size_t) { return CheckInit(); }
FAKE_EXPORT CUresult cuMemSetAccess(CUdeviceptr, size_t, const CUmemAccessDesc*, size_t) {
  return CheckInit();
}

FAKE_EXPORT CUresult cuArrayCreate_v2(CUarray* handle, const CUDA_ARRAY_DESCRIPTOR* d) {
  if (handle == nullptr || d == nullptr) return CUDA_ERROR_INVALID_VALUE;
  return ArrayCreate(reinterpret_cast<uintptr_t*>(handle),
                     ArrayBytes(d->Width, d->Height, 1, d->Format, d->NumChannels));
}
FAKE_EXPORT CUresult cuArray3DCreate_v2(CUarray* handle, const CUDA_ARRAY3D_DESCRIPTOR* d) {
  if (handle == nullptr || d == nullptr) return CUDA_ERROR_INVALID_VALUE;
  return ArrayCreate(reinterpret_cast<uintptr_t*>(handle),
                     ArrayBytes(d->Width, d->Height, d->Depth, d->Format, d->NumChannels));
}
FAKE_EXPORT CUresult cuArrayDestroy(CUarray h) { return ArrayDestroy(reinterpret_cast<uintptr_t>(h)); }
FAKE_EXPORT CUresult cuMipmappedArrayCreate(CUmipmappedArray* handle,
                                            const CUDA_ARRAY3D_DESCRIPTOR* d, unsigned levels) {
  if (handle == nullptr || d == nullptr) return CUDA_ERROR_INVALID_VALUE;
  uint64_t bytes = 0;
  size_t w = d->Width, h = d->Height, z = d->Depth;
  for (unsigned i = 0; i < std::max(levels, 1u); ++i) {
    bytes += ArrayBytes(w, h, z, d->Format, d->NumChannels);
    w = std::max<size_t>(w / 2, 1), h = h / 2, z = z / 2;
  }
  return ArrayCreate(reinterpret_cast<uintptr_t*>(handle), bytes);
}
FAKE_EXPORT CUresult cuMipmappedArrayDestroy(CUmipmappedArray h) {
  return ArrayDestroy(reinterpret_cast<uintptr_t>(h));
}

FAKE_EXPORT CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void* src, size_t n) {
  if (CUresult r = CheckInit(); r != CUDA_SUCCESS) return r;
  std::memcpy(reinterpret_cast<void*>(dst), src, n);
  return CUDA_SUCCESS;
}
FAKE_EXPORT CUresult cuMemcpyHtoD_v2_ptds(CUdeviceptr dst, const void* src, size_t n) {
  return cuMemcpyHtoD_v2(dst, src, n);
}
FAKE_EXPORT CUresult cuMemcpyDtoH_v2(void* dst, CUdeviceptr src, size_t n) {
  if (CUresult r = CheckInit(); r != CUDA_SUCCESS) return r;
  std::memcpy(dst, reinterpret_cast<const void*>(src), n);
  return CUDA_SUCCESS;
}
FAKE_EXPORT CUresult cuMemcpyDtoH_v2_ptds(void* dst, CUdeviceptr src, size_t n) {
  return cuMemcpyDtoH_v2(dst, src, n);
}
// Copies on a stream wait for its queued work first, as a copy to pageable host memory does on
// a real driver (PyTorch's .item() waits there).
FAKE_EXPORT CUresult cuMemcpyAsync(CUdeviceptr dst, CUdeviceptr src, size_t n, CUstream h) {
  if (CUresult r = CheckInit(); r != CUDA_SUCCESS) return r;
  SyncStream(StreamOf(h));
  std::memcpy(reinterpret_cast<void*>(dst), reinterpret_cast<const void*>(src), n);
  return CUDA_SUCCESS;
}
FAKE_EXPORT CUresult cuMemcpyAsync_ptsz(CUdeviceptr dst, CUdeviceptr src, size_t n, CUstream h) {
  return cuMemcpyAsync(dst, src, n, h == nullptr ? CU_STREAM_PER_THREAD : h);
}
FAKE_EXPORT CUresult cuMemcpy(CUdeviceptr dst, CUdeviceptr src, size_t n) {
  return cuMemcpyAsync(dst, src, n, nullptr);
}
FAKE_EXPORT CUresult cuMemcpy_ptds(CUdeviceptr dst, CUdeviceptr src, size_t n) {
  return cuMemcpyAsync(dst, src, n, CU_STREAM_PER_THREAD);
}
FAKE_EXPORT CUresult cuMemcpyDtoHAsync_v2(void* dst, CUdeviceptr src, size_t n, CUstream h) {
  return cuMemcpyAsync(reinterpret_cast<CUdeviceptr>(dst), src, n, h);
}
FAKE_EXPORT CUresult cuMemcpyDtoHAsync_v2_ptsz(void* dst, CUdeviceptr src, size_t n, CUstream h) {
  return cuMemcpyAsync_ptsz(reinterpret_cast<CUdeviceptr>(dst), src, n, h);
}

// ---- Modules, streams, kernels ----------------------------------------------------------------

namespace {
struct FakeFunction {
  bool sleeps;
};
FakeFunction kSleepFunction{true};
FakeFunction kEmptyFunction{false};
}  // namespace

FAKE_EXPORT CUresult cuModuleLoadData(CUmodule* module, const void*) {
  if (CUresult r = CheckInit(); r != CUDA_SUCCESS) return r;
  *module = reinterpret_cast<CUmodule>(0x10);
  return CUDA_SUCCESS;
}
FAKE_EXPORT CUresult cuModuleUnload(CUmodule) { return CheckInit(); }
FAKE_EXPORT CUresult cuModuleGetFunction(CUfunction* f, CUmodule, const char* name) {
  if (CUresult r = CheckInit(); r != CUDA_SUCCESS) return r;
  if (f == nullptr || name == nullptr) return CUDA_ERROR_INVALID_VALUE;
  *f = reinterpret_cast<CUfunction>(std::strcmp(name, "sleep") == 0 ? &kSleepFunction
                                                                     : &kEmptyFunction);
  return CUDA_SUCCESS;
}

FAKE_EXPORT CUresult cuStreamCreate(CUstream* stream, unsigned int) {
  if (CUresult r = CheckInit(); r != CUDA_SUCCESS) return r;
  auto* st = new Stream;
  std::lock_guard<std::mutex> lock(S().mu);
  S().streams.push_back(st);
  *stream = reinterpret_cast<CUstream>(st);
  return CUDA_SUCCESS;
}
FAKE_EXPORT CUresult cuStreamDestroy_v2(CUstream h) {
  if (CUresult r = CheckInit(); r != CUDA_SUCCESS) return r;
  if (reinterpret_cast<uintptr_t>(h) > 2) {
    auto* st = reinterpret_cast<Stream*>(h);
    std::lock_guard<std::mutex> lock(S().mu);
    S().streams.erase(std::remove(S().streams.begin(), S().streams.end(), st), S().streams.end());
    delete st;
  }
  return CUDA_SUCCESS;
}
FAKE_EXPORT CUresult cuStreamSynchronize(CUstream h) {
  if (CUresult r = CheckInit(); r != CUDA_SUCCESS) return r;
  if (Capturing(StreamOf(h))) return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
  SyncStream(StreamOf(h));
  return CUDA_SUCCESS;
}
FAKE_EXPORT CUresult cuStreamSynchronize_ptsz(CUstream h) {
  return cuStreamSynchronize(h == nullptr ? CU_STREAM_PER_THREAD : h);
}
FAKE_EXPORT CUresult cuStreamQuery(CUstream h) {
  if (CUresult r = CheckInit(); r != CUDA_SUCCESS) return r;
  Stream* st = StreamOf(h);
  std::lock_guard<std::mutex> lock(st->mu);
  if (st->capturing) return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
  return st->busy_until <= Clock::now() ? CUDA_SUCCESS : CUDA_ERROR_NOT_READY;
}
FAKE_EXPORT CUresult cuStreamQuery_ptsz(CUstream h) {
  return cuStreamQuery(h == nullptr ? CU_STREAM_PER_THREAD : h);
}

// ---- Stream capture and graphs: a graph is the sum of the sleep kernels captured into it ------

namespace {
struct FakeGraph {
  uint64_t ns;
};
}  // namespace

FAKE_EXPORT CUresult cuStreamBeginCapture_v2(CUstream h, CUstreamCaptureMode) {
  if (CUresult r = CheckInit(); r != CUDA_SUCCESS) return r;
  if (reinterpret_cast<uintptr_t>(h) <= 1) return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
  Stream* st = StreamOf(h);
  std::lock_guard<std::mutex> lock(st->mu);
  if (st->capturing) return CUDA_ERROR_ILLEGAL_STATE;
  st->capturing = true;
  st->captured_ns = 0;
  return CUDA_SUCCESS;
}
FAKE_EXPORT CUresult cuStreamBeginCapture_v2_ptsz(CUstream h, CUstreamCaptureMode mode) {
  return cuStreamBeginCapture_v2(h == nullptr ? CU_STREAM_PER_THREAD : h, mode);
}
FAKE_EXPORT CUresult cuStreamEndCapture(CUstream h, CUgraph* graph) {
  if (CUresult r = CheckInit(); r != CUDA_SUCCESS) return r;
  if (graph == nullptr) return CUDA_ERROR_INVALID_VALUE;
  Stream* st = StreamOf(h);
  std::lock_guard<std::mutex> lock(st->mu);
  if (!st->capturing) return CUDA_ERROR_ILLEGAL_STATE;
  st->capturing = false;
  *graph = reinterpret_cast<CUgraph>(new FakeGraph{st->captured_ns});
  return CUDA_SUCCESS;
}
FAKE_EXPORT CUresult cuStreamEndCapture_ptsz(CUstream h, CUgraph* graph) {
  return cuStreamEndCapture(h == nullptr ? CU_STREAM_PER_THREAD : h, graph);
}
FAKE_EXPORT CUresult cuStreamIsCapturing(CUstream h, CUstreamCaptureStatus* status) {
  if (CUresult r = CheckInit(); r != CUDA_SUCCESS) return r;
  if (status == nullptr) return CUDA_ERROR_INVALID_VALUE;
  *status =
      Capturing(StreamOf(h)) ? CU_STREAM_CAPTURE_STATUS_ACTIVE : CU_STREAM_CAPTURE_STATUS_NONE;
  return CUDA_SUCCESS;
}
FAKE_EXPORT CUresult cuStreamIsCapturing_ptsz(CUstream h, CUstreamCaptureStatus* status) {
  return cuStreamIsCapturing(h == nullptr ? CU_STREAM_PER_THREAD : h, status);
}
FAKE_EXPORT CUresult cuGraphInstantiateWithFlags(CUgraphExec* exec, CUgraph graph,
                                                 unsigned long long) {
  if (CUresult r = CheckInit(); r != CUDA_SUCCESS) return r;
  if (exec == nullptr || graph == nullptr) return CUDA_ERROR_INVALID_VALUE;
  *exec = reinterpret_cast<CUgraphExec>(new FakeGraph{reinterpret_cast<FakeGraph*>(graph)->ns});
  return CUDA_SUCCESS;
}
FAKE_EXPORT CUresult cuGraphDestroy(CUgraph graph) {
  delete reinterpret_cast<FakeGraph*>(graph);
  return CUDA_SUCCESS;
}
FAKE_EXPORT CUresult cuGraphExecDestroy(CUgraphExec exec) {
  delete reinterpret_cast<FakeGraph*>(exec);
  return CUDA_SUCCESS;
}
FAKE_EXPORT CUresult cuGraphLaunch(CUgraphExec exec, CUstream h) {
  if (CUresult r = CheckInit(); r != CUDA_SUCCESS) return r;
  if (exec == nullptr) return CUDA_ERROR_INVALID_VALUE;
  Enqueue(StreamOf(h), reinterpret_cast<FakeGraph*>(exec)->ns);
  return CUDA_SUCCESS;
}
FAKE_EXPORT CUresult cuGraphLaunch_ptsz(CUgraphExec exec, CUstream h) {
  return cuGraphLaunch(exec, h == nullptr ? CU_STREAM_PER_THREAD : h);
}

// ---- Events: an event completes when the work queued before it on its stream has --------------

namespace {
struct FakeEvent {
  std::mutex mu;
  Clock::time_point at{};  // when the work before the record point is done
};
}  // namespace

FAKE_EXPORT CUresult cuEventCreate(CUevent* ev, unsigned int) {
  if (CUresult r = CheckInit(); r != CUDA_SUCCESS) return r;
  if (ev == nullptr) return CUDA_ERROR_INVALID_VALUE;
  *ev = reinterpret_cast<CUevent>(new FakeEvent);
  return CUDA_SUCCESS;
}
FAKE_EXPORT CUresult cuEventDestroy_v2(CUevent ev) {
  delete reinterpret_cast<FakeEvent*>(ev);
  return CUDA_SUCCESS;
}
FAKE_EXPORT CUresult cuEventRecord(CUevent ev, CUstream h) {
  if (CUresult r = CheckInit(); r != CUDA_SUCCESS) return r;
  if (ev == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  Stream* st = StreamOf(h);
  Clock::time_point at;
  {
    std::lock_guard<std::mutex> lock(st->mu);
    if (st->capturing) return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
    at = std::max(st->busy_until, Clock::now());
  }
  auto* e = reinterpret_cast<FakeEvent*>(ev);
  std::lock_guard<std::mutex> lock(e->mu);
  e->at = at;
  return CUDA_SUCCESS;
}
FAKE_EXPORT CUresult cuEventRecord_ptsz(CUevent ev, CUstream h) {
  return cuEventRecord(ev, h == nullptr ? CU_STREAM_PER_THREAD : h);
}
static Clock::time_point EventTime(CUevent ev) {
  auto* e = reinterpret_cast<FakeEvent*>(ev);
  std::lock_guard<std::mutex> lock(e->mu);
  return e->at;
}
FAKE_EXPORT CUresult cuEventSynchronize(CUevent ev) {
  if (CUresult r = CheckInit(); r != CUDA_SUCCESS) return r;
  if (ev == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  std::this_thread::sleep_until(EventTime(ev));
  return CUDA_SUCCESS;
}
FAKE_EXPORT CUresult cuEventQuery(CUevent ev) {
  if (CUresult r = CheckInit(); r != CUDA_SUCCESS) return r;
  if (ev == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  return EventTime(ev) <= Clock::now() ? CUDA_SUCCESS : CUDA_ERROR_NOT_READY;
}
FAKE_EXPORT CUresult cuEventElapsedTime_v2(float* ms, CUevent start, CUevent end) {
  if (CUresult r = CheckInit(); r != CUDA_SUCCESS) return r;
  if (ms == nullptr || start == nullptr || end == nullptr) return CUDA_ERROR_INVALID_VALUE;
  Clock::time_point a = EventTime(start), b = EventTime(end);
  if (a > Clock::now() || b > Clock::now()) return CUDA_ERROR_NOT_READY;
  *ms = std::chrono::duration<float, std::milli>(b - a).count();
  return CUDA_SUCCESS;
}
FAKE_EXPORT CUresult cuEventElapsedTime(float* ms, CUevent start, CUevent end) {
  return cuEventElapsedTime_v2(ms, start, end);
}

// ---- Launches ---------------------------------------------------------------------------------

namespace {
// The "GPU time" of a launch of f with these parameters.
CUresult KernelTime(CUfunction f, void** params, uint64_t* ns) {
  if (CUresult r = CheckInit(); r != CUDA_SUCCESS) return r;
  if (current_ctx == nullptr) return CUDA_ERROR_INVALID_CONTEXT;
  auto* fn = reinterpret_cast<FakeFunction*>(f);
  if (fn != &kSleepFunction && fn != &kEmptyFunction) return CUDA_ERROR_INVALID_HANDLE;
  *ns = 0;
  if (fn->sleeps) {
    if (params == nullptr || params[0] == nullptr) return CUDA_ERROR_INVALID_VALUE;
    std::memcpy(ns, params[0], sizeof *ns);
  }
  return CUDA_SUCCESS;
}
CUresult Launch(CUfunction f, CUstream h, void** params) {
  uint64_t ns;
  if (CUresult r = KernelTime(f, params, &ns); r != CUDA_SUCCESS) return r;
  Enqueue(StreamOf(h), ns);
  return CUDA_SUCCESS;
}
}  // namespace

FAKE_EXPORT CUresult cuLaunchKernel(CUfunction f, unsigned, unsigned, unsigned, unsigned, unsigned,
                                    unsigned, unsigned, CUstream h, void** params, void**) {
  return Launch(f, h, params);
}
FAKE_EXPORT CUresult cuLaunchKernel_ptsz(CUfunction f, unsigned, unsigned, unsigned, unsigned,
                                         unsigned, unsigned, unsigned, CUstream h, void** params,
                                         void**) {
  return Launch(f, h == nullptr ? CU_STREAM_PER_THREAD : h, params);
}
FAKE_EXPORT CUresult cuLaunchKernelEx(const CUlaunchConfig* config, CUfunction f, void** params,
                                      void**) {
  if (config == nullptr) return CUDA_ERROR_INVALID_VALUE;
  return Launch(f, config->hStream, params);
}
FAKE_EXPORT CUresult cuLaunchKernelEx_ptsz(const CUlaunchConfig* config, CUfunction f,
                                           void** params, void**) {
  if (config == nullptr) return CUDA_ERROR_INVALID_VALUE;
  return Launch(f, config->hStream == nullptr ? CU_STREAM_PER_THREAD : config->hStream, params);
}
FAKE_EXPORT CUresult cuLaunchCooperativeKernel(CUfunction f, unsigned, unsigned, unsigned, unsigned,
                                               unsigned, unsigned, unsigned, CUstream h,
                                               void** params) {
  return Launch(f, h, params);
}
FAKE_EXPORT CUresult cuLaunchCooperativeKernel_ptsz(CUfunction f, unsigned, unsigned, unsigned,
                                                    unsigned, unsigned, unsigned, unsigned,
                                                    CUstream h, void** params) {
  return Launch(f, h == nullptr ? CU_STREAM_PER_THREAD : h, params);
}

// ---- Errors -----------------------------------------------------------------------------------

FAKE_EXPORT CUresult cuGetErrorName(CUresult error, const char** str) {
  if (str == nullptr) return CUDA_ERROR_INVALID_VALUE;
  switch (error) {
    case CUDA_SUCCESS: *str = "CUDA_SUCCESS"; break;
    case CUDA_ERROR_OUT_OF_MEMORY: *str = "CUDA_ERROR_OUT_OF_MEMORY"; break;
    case CUDA_ERROR_NOT_INITIALIZED: *str = "CUDA_ERROR_NOT_INITIALIZED"; break;
    case CUDA_ERROR_INVALID_VALUE: *str = "CUDA_ERROR_INVALID_VALUE"; break;
    case CUDA_ERROR_NOT_FOUND: *str = "CUDA_ERROR_NOT_FOUND"; break;
    default: *str = "CUDA_ERROR_UNKNOWN";
  }
  return CUDA_SUCCESS;
}
FAKE_EXPORT CUresult cuGetErrorString(CUresult error, const char** str) {
  return cuGetErrorName(error, str);
}

// ---- cuGetProcAddress ---------------------------------------------------------------------------

namespace {

enum Flavour { kPlain, kPerThread };

struct ProcEntry {
  const char* base;     // what callers pass as `symbol`
  const char* name;     // the exported variant
  int since;            // CUDA version that introduced this variant
  Flavour flavour;
  void* fn;
  void* internal;       // distinct entry point returned under SLICER_FAKE_CUDA_PROC_INTERNAL=1
};

// Internal entry points: same behaviour, different addresses. One trampoline per table row.
template <auto F>
struct Internal;
template <typename R, typename... A, R (*F)(A...)>
struct Internal<F> {
  static R Call(A... a) { return F(a...); }
};

// Legacy v1 entry points that a real driver still hands out for old cudaVersion values; the fake
// keeps only what tests need.
CUresult MemGetInfoV1(unsigned int* free_bytes, unsigned int* total) {
  size_t f, t;
  CUresult r = cuMemGetInfo_v2(&f, &t);
  if (r == CUDA_SUCCESS) {
    *free_bytes = static_cast<unsigned>(std::min<size_t>(f, UINT32_MAX));
    *total = static_cast<unsigned>(std::min<size_t>(t, UINT32_MAX));
  }
  return r;
}

extern "C" CUresult cuGetProcAddress_v2(const char*, void**, int, cuuint64_t,
                                        CUdriverProcAddressQueryResult*);
extern "C" CUresult cuGetProcAddress(const char*, void**, int, cuuint64_t);

#define E(base, name, since, flav) \
  {#base, #name, since, flav, reinterpret_cast<void*>(&name), \
   reinterpret_cast<void*>(&Internal<&name>::Call)}
#define E1(base, fn, since) \
  {#base, #fn, since, kPlain, reinterpret_cast<void*>(&fn), reinterpret_cast<void*>(&fn)}

const ProcEntry kProcs[] = {
    E(cuInit, cuInit, 2000, kPlain),
    E(cuDriverGetVersion, cuDriverGetVersion, 2020, kPlain),
    E(cuDeviceGetCount, cuDeviceGetCount, 2000, kPlain),
    E(cuDeviceGet, cuDeviceGet, 2000, kPlain),
    E(cuDeviceGetName, cuDeviceGetName, 2000, kPlain),
    E(cuDeviceGetUuid, cuDeviceGetUuid, 9020, kPlain),
    E(cuDeviceGetUuid, cuDeviceGetUuid_v2, 11040, kPlain),
    E(cuDeviceTotalMem, cuDeviceTotalMem_v2, 3020, kPlain),
    E(cuDeviceGetAttribute, cuDeviceGetAttribute, 2000, kPlain),
    E(cuDevicePrimaryCtxRetain, cuDevicePrimaryCtxRetain, 7000, kPlain),
    E(cuDevicePrimaryCtxRelease, cuDevicePrimaryCtxRelease_v2, 11000, kPlain),
    E(cuCtxCreate, cuCtxCreate_v4, 12050, kPlain),
    E(cuCtxDestroy, cuCtxDestroy_v2, 4000, kPlain),
    E(cuCtxSetCurrent, cuCtxSetCurrent, 4000, kPlain),
    E(cuCtxGetCurrent, cuCtxGetCurrent, 4000, kPlain),
    E(cuCtxGetDevice, cuCtxGetDevice, 2000, kPlain),
    E(cuCtxSynchronize, cuCtxSynchronize, 2000, kPlain),
    E(cuCtxSynchronize, cuCtxSynchronize_v2, 13000, kPlain),
    E(cuCtxPushCurrent, cuCtxPushCurrent_v2, 4000, kPlain),
    E(cuCtxPopCurrent, cuCtxPopCurrent_v2, 4000, kPlain),
    E(cuThreadExchangeStreamCaptureMode, cuThreadExchangeStreamCaptureMode, 10010, kPlain),
    E1(cuMemGetInfo, MemGetInfoV1, 2000),
    E(cuMemGetInfo, cuMemGetInfo_v2, 3020, kPlain),
    E(cuMemAlloc, cuMemAlloc_v2, 3020, kPlain),
    E(cuMemAllocPitch, cuMemAllocPitch_v2, 3020, kPlain),
    E(cuMemAllocManaged, cuMemAllocManaged, 6000, kPlain),
    E(cuMemFree, cuMemFree_v2, 3020, kPlain),
    E(cuMemAllocAsync, cuMemAllocAsync, 11020, kPlain),
    E(cuMemAllocAsync, cuMemAllocAsync_ptsz, 11020, kPerThread),
    E(cuMemFreeAsync, cuMemFreeAsync, 11020, kPlain),
    E(cuMemFreeAsync, cuMemFreeAsync_ptsz, 11020, kPerThread),
    E(cuMemAllocFromPoolAsync, cuMemAllocFromPoolAsync, 11020, kPlain),
    E(cuMemAllocFromPoolAsync, cuMemAllocFromPoolAsync_ptsz, 11020, kPerThread),
    E(cuMemPoolCreate, cuMemPoolCreate, 11020, kPlain),
    E(cuMemPoolDestroy, cuMemPoolDestroy, 11020, kPlain),
    E(cuMemPoolTrimTo, cuMemPoolTrimTo, 11020, kPlain),
    E(cuDeviceGetDefaultMemPool, cuDeviceGetDefaultMemPool, 11020, kPlain),
    E(cuDeviceGetMemPool, cuDeviceGetMemPool, 11020, kPlain),
    E(cuMemGetAllocationGranularity, cuMemGetAllocationGranularity, 10020, kPlain),
    E(cuMemCreate, cuMemCreate, 10020, kPlain),
    E(cuMemRelease, cuMemRelease, 10020, kPlain),
    E(cuMemAddressReserve, cuMemAddressReserve, 10020, kPlain),
    E(cuMemAddressFree, cuMemAddressFree, 10020, kPlain),
    E(cuMemMap, cuMemMap, 10020, kPlain),
    E(cuMemUnmap, cuMemUnmap, 10020, kPlain),
    E(cuMemSetAccess, cuMemSetAccess, 10020, kPlain),
    E(cuArrayCreate, cuArrayCreate_v2, 3020, kPlain),
    E(cuArray3DCreate, cuArray3DCreate_v2, 3020, kPlain),
    E(cuArrayDestroy, cuArrayDestroy, 2000, kPlain),
    E(cuMipmappedArrayCreate, cuMipmappedArrayCreate, 5000, kPlain),
    E(cuMipmappedArrayDestroy, cuMipmappedArrayDestroy, 5000, kPlain),
    E(cuMemcpyHtoD, cuMemcpyHtoD_v2, 3020, kPlain),
    E(cuMemcpyHtoD, cuMemcpyHtoD_v2_ptds, 7000, kPerThread),
    E(cuMemcpyDtoH, cuMemcpyDtoH_v2, 3020, kPlain),
    E(cuMemcpyDtoH, cuMemcpyDtoH_v2_ptds, 7000, kPerThread),
    E(cuMemcpyDtoHAsync, cuMemcpyDtoHAsync_v2, 3020, kPlain),
    E(cuMemcpyDtoHAsync, cuMemcpyDtoHAsync_v2_ptsz, 7000, kPerThread),
    E(cuMemcpy, cuMemcpy, 4000, kPlain),
    E(cuMemcpy, cuMemcpy_ptds, 7000, kPerThread),
    E(cuMemcpyAsync, cuMemcpyAsync, 4000, kPlain),
    E(cuMemcpyAsync, cuMemcpyAsync_ptsz, 7000, kPerThread),
    E(cuModuleLoadData, cuModuleLoadData, 2000, kPlain),
    E(cuModuleUnload, cuModuleUnload, 2000, kPlain),
    E(cuModuleGetFunction, cuModuleGetFunction, 2000, kPlain),
    E(cuStreamCreate, cuStreamCreate, 2000, kPlain),
    E(cuStreamDestroy, cuStreamDestroy_v2, 4000, kPlain),
    E(cuStreamSynchronize, cuStreamSynchronize, 2000, kPlain),
    E(cuStreamSynchronize, cuStreamSynchronize_ptsz, 7000, kPerThread),
    E(cuStreamQuery, cuStreamQuery, 2000, kPlain),
    E(cuStreamQuery, cuStreamQuery_ptsz, 7000, kPerThread),
    E(cuStreamBeginCapture, cuStreamBeginCapture_v2, 10010, kPlain),
    E(cuStreamBeginCapture, cuStreamBeginCapture_v2_ptsz, 10010, kPerThread),
    E(cuStreamEndCapture, cuStreamEndCapture, 10000, kPlain),
    E(cuStreamEndCapture, cuStreamEndCapture_ptsz, 10000, kPerThread),
    E(cuStreamIsCapturing, cuStreamIsCapturing, 10000, kPlain),
    E(cuStreamIsCapturing, cuStreamIsCapturing_ptsz, 10000, kPerThread),
    E(cuGraphInstantiate, cuGraphInstantiateWithFlags, 11040, kPlain),
    E(cuGraphDestroy, cuGraphDestroy, 10000, kPlain),
    E(cuGraphExecDestroy, cuGraphExecDestroy, 10000, kPlain),
    E(cuGraphLaunch, cuGraphLaunch, 10000, kPlain),
    E(cuGraphLaunch, cuGraphLaunch_ptsz, 10000, kPerThread),
    E(cuEventCreate, cuEventCreate, 2000, kPlain),
    E(cuEventDestroy, cuEventDestroy_v2, 4000, kPlain),
    E(cuEventRecord, cuEventRecord, 2000, kPlain),
    E(cuEventRecord, cuEventRecord_ptsz, 7000, kPerThread),
    E(cuEventSynchronize, cuEventSynchronize, 2000, kPlain),
    E(cuEventQuery, cuEventQuery, 2000, kPlain),
    E(cuEventElapsedTime, cuEventElapsedTime, 2000, kPlain),
    E(cuEventElapsedTime, cuEventElapsedTime_v2, 12080, kPlain),
    E(cuLaunchKernel, cuLaunchKernel, 4000, kPlain),
    E(cuLaunchKernel, cuLaunchKernel_ptsz, 7000, kPerThread),
    E(cuLaunchKernelEx, cuLaunchKernelEx, 11060, kPlain),
    E(cuLaunchKernelEx, cuLaunchKernelEx_ptsz, 11060, kPerThread),
    E(cuLaunchCooperativeKernel, cuLaunchCooperativeKernel, 9000, kPlain),
    E(cuLaunchCooperativeKernel, cuLaunchCooperativeKernel_ptsz, 9000, kPerThread),
    E(cuGetErrorName, cuGetErrorName, 6000, kPlain),
    E(cuGetErrorString, cuGetErrorString, 6000, kPlain),
    E(cuGetProcAddress, cuGetProcAddress, 11030, kPlain),
    E(cuGetProcAddress, cuGetProcAddress_v2, 12000, kPlain),
};
#undef E
#undef E1

}  // namespace

FAKE_EXPORT CUresult cuGetProcAddress_v2(const char* symbol, void** pfn, int cuda_version,
                                         cuuint64_t flags,
                                         CUdriverProcAddressQueryResult* status) {
  if (symbol == nullptr || pfn == nullptr) return CUDA_ERROR_INVALID_VALUE;
  *pfn = nullptr;
  if ((flags & ~static_cast<cuuint64_t>(CU_GET_PROC_ADDRESS_LEGACY_STREAM |
                                        CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM)) != 0) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  int driver_version = 13000;
  cuDriverGetVersion(&driver_version);
  if (cuda_version > driver_version) return CUDA_ERROR_INVALID_VALUE;
  bool per_thread = (flags & CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM) != 0;
  static const bool internal = [] {
    const char* v = std::getenv("SLICER_FAKE_CUDA_PROC_INTERNAL");
    return v != nullptr && std::strcmp(v, "1") == 0;
  }();
  const ProcEntry* best = nullptr;
  bool known = false;
  for (const ProcEntry& e : kProcs) {
    if (std::strcmp(e.base, symbol) != 0) continue;
    known = true;
    if (e.since > cuda_version) continue;
    if (e.flavour == kPerThread && !per_thread) continue;
    // Prefer the per-thread variant when asked for it, then the newest.
    if (best == nullptr || (e.flavour == kPerThread && best->flavour != kPerThread) ||
        (e.flavour == best->flavour && e.since >= best->since)) {
      best = &e;
    }
  }
  CUdriverProcAddressQueryResult result = CU_GET_PROC_ADDRESS_SUCCESS;
  if (best == nullptr) {
    result = known ? CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT : CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;
  } else {
    *pfn = internal ? best->internal : best->fn;
  }
  if (status != nullptr) *status = result;
  return CUDA_SUCCESS;
}

FAKE_EXPORT CUresult cuGetProcAddress(const char* symbol, void** pfn, int cuda_version,
                                      cuuint64_t flags) {
  return cuGetProcAddress_v2(symbol, pfn, cuda_version, flags, nullptr);
}
