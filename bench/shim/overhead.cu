// Shim overhead microbenchmarks (bench/results/shim-overhead-*.md). Run the same binary with and
// without libslicer.so preloaded and compare medians.
//
//   overhead launch N   N launches of an empty kernel, then one synchronize: wall time per
//                       launch (the launch path, which the shim does not hook)
//   overhead alloc N B  N cudaMalloc(B) + cudaFree pairs (the shim charges and credits each)
//   overhead async N B  N cudaMallocAsync(B) + cudaFreeAsync pairs on one stream (pool reuse:
//                       the cheapest allocation the driver has, so the shim's share is largest)
// Each mode runs 2 warm-up and 9 timed repetitions and prints the median and the minimum in
// microseconds per operation.
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

__global__ void Empty() {}

#define CHECK(x)                                                                  \
  do {                                                                            \
    cudaError_t e = (x);                                                          \
    if (e != cudaSuccess) {                                                       \
      std::fprintf(stderr, "%s: %s\n", #x, cudaGetErrorString(e));                \
      std::exit(1);                                                               \
    }                                                                             \
  } while (0)

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: overhead launch N | alloc N BYTES | async N BYTES\n");
    return 2;
  }
  std::string mode = argv[1];
  long n = std::atol(argv[2]);
  size_t bytes = argc > 3 ? std::strtoull(argv[3], nullptr, 10) : 0;
  cudaStream_t s;
  CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  CHECK(cudaFree(nullptr));
  std::vector<double> us;
  for (int rep = 0; rep < 11; ++rep) {
    auto t0 = std::chrono::steady_clock::now();
    if (mode == "launch") {
      for (long i = 0; i < n; ++i) Empty<<<1, 32, 0, s>>>();
      CHECK(cudaGetLastError());
      CHECK(cudaStreamSynchronize(s));
    } else if (mode == "alloc") {
      for (long i = 0; i < n; ++i) {
        void* p;
        CHECK(cudaMalloc(&p, bytes));
        CHECK(cudaFree(p));
      }
    } else if (mode == "async") {
      for (long i = 0; i < n; ++i) {
        void* p;
        CHECK(cudaMallocAsync(&p, bytes, s));
        CHECK(cudaFreeAsync(p, s));
      }
      CHECK(cudaStreamSynchronize(s));
    } else {
      std::fprintf(stderr, "unknown mode %s\n", mode.c_str());
      return 2;
    }
    double dt = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
    if (rep >= 2) us.push_back(dt / n);
  }
  std::sort(us.begin(), us.end());
  std::printf("mode=%s n=%ld bytes=%zu median_us=%.4f min_us=%.4f\n", mode.c_str(), n, bytes,
              us[us.size() / 2], us.front());
  return 0;
}
