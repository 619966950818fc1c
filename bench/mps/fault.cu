// A client that faults on purpose, for the MPS crash case of scripts/gpu-mps.sh: it runs short,
// verified kernels for DELAY_MS, then one kernel that stores through a wild pointer (a fatal GPU
// fault, CUDA_ERROR_ILLEGAL_ADDRESS), and reports what the runtime said.
//
//   fault DELAY_MS
// Output, one line: `fault: before=<kernels ok> error=<name of the synchronize's error>`;
// exit 3 when the fault was reported (the expected outcome), 1 when it was not, 2 on a setup
// error.
#include <cuda_runtime.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>

__global__ void Add(float* p, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) p[i] += 1.0f;
}
__global__ void Wild(float* p) { p[threadIdx.x] = 1.0f; }

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: fault DELAY_MS\n");
    return 2;
  }
  const int delay_ms = std::atoi(argv[1]);
  const int n = 1 << 20;
  float* d = nullptr;
  if (cudaMalloc(&d, n * sizeof(float)) != cudaSuccess || cudaMemset(d, 0, n * sizeof(float))) {
    std::printf("fault: setup error=%s\n", cudaGetErrorName(cudaGetLastError()));
    return 2;
  }
  const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(delay_ms);
  long ok = 0;
  while (std::chrono::steady_clock::now() < end) {
    Add<<<n / 256, 256>>>(d, n);
    if (cudaDeviceSynchronize() != cudaSuccess) {
      std::printf("fault: before=%ld error=%s (before the fault)\n", ok,
                  cudaGetErrorName(cudaGetLastError()));
      return 1;
    }
    ++ok;
  }
  Wild<<<1, 32>>>(reinterpret_cast<float*>(0x10));  // unmapped: a fatal fault
  const cudaError_t e = cudaDeviceSynchronize();
  std::printf("fault: before=%ld error=%s\n", ok, cudaGetErrorName(e));
  std::fflush(stdout);
  return e == cudaSuccess ? 1 : 3;
}
