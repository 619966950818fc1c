// A CUDA runtime program for the GPU tests: what users run. The runtime reaches the driver only
// through cuGetProcAddress, so this exercises the shim's main path on a real GPU.
//
//   runtime_cap fill  <cap_bytes> <chunk_MiB>   cudaMalloc until it fails; checks the failure is
//                                               cudaErrorMemoryAllocation at the cap, that
//                                               cudaMemGetInfo reports the cap, and that memory
//                                               works again after freeing
//   runtime_cap async <cap_bytes> <chunk_MiB>   the same with cudaMallocAsync / cudaFreeAsync
//   runtime_cap neighbour <MiB> <seconds>       holds MiB and runs verified kernels for seconds
// Exit 0 on the expected behaviour, 1 otherwise, 77 when there is no GPU (ctest: skipped).
#include <cuda_runtime.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

__global__ void Fill(unsigned* p, size_t n, unsigned seed) {
  for (size_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    p[i] = static_cast<unsigned>(i) * 2654435761u + seed;
  }
}
__global__ void Check(const unsigned* p, size_t n, unsigned seed, unsigned* bad) {
  for (size_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    if (p[i] != static_cast<unsigned>(i) * 2654435761u + seed) atomicAdd(bad, 1u);
  }
}

static bool Verify(unsigned* p, size_t bytes, unsigned seed, cudaStream_t s = 0) {
  size_t n = bytes / sizeof(unsigned);
  unsigned* bad;  // pinned host memory: not the GPU's, not charged to the cap
  if (cudaMallocHost(&bad, sizeof *bad) != cudaSuccess) return false;
  *bad = 0;
  Fill<<<264, 256, 0, s>>>(p, n, seed);
  Check<<<264, 256, 0, s>>>(p, n, seed, bad);
  bool ok = cudaStreamSynchronize(s) == cudaSuccess && *bad == 0;
  cudaFreeHost(bad);
  return ok;
}

int main(int argc, char** argv) {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    std::printf("no GPU: skipped\n");
    return 77;
  }
  if (argc < 4) {
    std::fprintf(stderr, "usage: runtime_cap fill|async CAP CHUNK_MiB | neighbour MiB SECONDS\n");
    return 2;
  }
  std::string mode = argv[1];
  if (mode == "neighbour") {
    size_t bytes = std::strtoull(argv[2], nullptr, 10) << 20;
    double seconds = std::atof(argv[3]);
    unsigned* p;
    if (cudaMalloc(&p, bytes) != cudaSuccess) {
      std::printf("neighbour: cudaMalloc failed\n");
      return 1;
    }
    auto start = std::chrono::steady_clock::now();
    int rounds = 0;
    while (std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() < seconds) {
      if (!Verify(p, bytes, rounds)) {
        std::printf("neighbour: data check failed in round %d\n", rounds);
        return 1;
      }
      ++rounds;
    }
    std::printf("neighbour: ok rounds=%d bytes=%zu\n", rounds, bytes);
    return 0;
  }

  size_t cap = std::strtoull(argv[2], nullptr, 10);
  size_t chunk = std::strtoull(argv[3], nullptr, 10) << 20;
  bool async = mode == "async";
  cudaStream_t s = 0;
  if (async) cudaStreamCreate(&s);
  size_t free_b = 0, total = 0;
  cudaMemGetInfo(&free_b, &total);
  std::printf("mem_get_info: free=%zu total=%zu cap=%zu\n", free_b, total, cap);
  bool ok = true;
  if (total != cap) {
    std::printf("FAIL: cudaMemGetInfo total %zu != cap %zu\n", total, cap);
    ok = false;
  }
  std::vector<unsigned*> ptrs;
  cudaError_t err = cudaSuccess;
  while (true) {
    unsigned* p = nullptr;
    err = async ? cudaMallocAsync(&p, chunk, s) : cudaMalloc(&p, chunk);
    if (err != cudaSuccess) break;
    ptrs.push_back(p);
    if (ptrs.size() * chunk > 2 * cap + (1ull << 30)) break;  // runaway: the cap did not hold
  }
  size_t got = ptrs.size() * chunk;
  cudaGetLastError();  // clear the sticky-free error state of the failed call
  std::printf("allocated=%zu in %zu chunks, then %s\n", got, ptrs.size(), cudaGetErrorName(err));
  if (err != cudaErrorMemoryAllocation) {
    std::printf("FAIL: expected cudaErrorMemoryAllocation past the cap\n");
    ok = false;
  }
  if (got > cap || got + 2 * chunk < cap) {
    std::printf("FAIL: stopped at %zu, cap %zu, chunk %zu\n", got, cap, chunk);
    ok = false;
  }
  cudaMemGetInfo(&free_b, &total);
  std::printf("at the cap: free=%zu total=%zu\n", free_b, total);
  if (free_b >= chunk) {
    std::printf("FAIL: free %zu should be under one chunk at the cap\n", free_b);
    ok = false;
  }
  if (!ptrs.empty() && !Verify(ptrs.back(), chunk, 7, s)) {
    std::printf("FAIL: memory under the cap does not work\n");
    ok = false;
  }
  for (unsigned* p : ptrs) async ? cudaFreeAsync(p, s) : cudaFree(p);
  if (async) cudaStreamSynchronize(s);
  unsigned* again = nullptr;
  size_t half = cap / 2 / chunk * chunk;
  err = async ? cudaMallocAsync(&again, half, s) : cudaMalloc(&again, half);
  if (err != cudaSuccess || !Verify(again, half, 9, s)) {
    std::printf("FAIL: after freeing, %zu bytes: %s\n", half, cudaGetErrorName(err));
    ok = false;
  }
  std::printf("%s: %s\n", mode.c_str(), ok ? "ok" : "FAILED");
  return ok ? 0 : 1;
}
