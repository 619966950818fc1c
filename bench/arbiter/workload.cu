// GPU workloads for the arbiter measurements (scripts/gpu-arbiter.sh, bench/results/arbiter-*.md).
// Kernels do a fixed amount of arithmetic (a dependent FMA chain per thread), so a kernel's count
// is GPU work done whether it ran alone or time-sliced: kernels completed measure GPU time.
//
//   workload calibrate US BLOCKS      iterations for a kernel of ~US microseconds alone with BLOCKS
//                                     blocks of 256 threads (0: 8 per SM, the whole GPU)
//   workload saturate START S ITERS [SYNC_EVERY=8]
//                                     from START (CLOCK_MONOTONIC ns) for S seconds: whole-GPU
//                                     kernels back to back, a stream sync every SYNC_EVERY; prints
//                                     kernels completed by START+S
//   workload bursty START S ITERS K SLEEP_MS
//                                     bursts of K whole-GPU kernels (then a sync), SLEEP_MS apart
//                                     (closed loop); prints bursts completed and their durations
//   workload latency START S ITERS K PERIOD_MS
//                                     requests of K one-block kernels, then a sync, one every
//                                     PERIOD_MS; prints request latency percentiles
// Every CUDA call is checked; output is one line of key=value.
#include <cuda_runtime.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#define CHECK(x)                                                                             \
  do {                                                                                       \
    cudaError_t e = (x);                                                                     \
    if (e != cudaSuccess) {                                                                  \
      std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e)); \
      std::exit(1);                                                                          \
    }                                                                                        \
  } while (0)

__global__ void Spin(float* out, int iters) {
  float x = threadIdx.x * 1e-3f + blockIdx.x * 1e-6f;
  const float a = 1.0000001f, b = 0.9999999f;
  for (int i = 0; i < iters; ++i) x = fmaf(x, a, b);
  if (x == 1234.5678f) out[blockIdx.x] = x;  // keeps the chain; never true in practice
}

namespace {

int64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

void SleepUntil(int64_t t) {
  for (int64_t now = NowNs(); now < t; now = NowNs()) {
    int64_t d = t - now;
    timespec ts{static_cast<time_t>(d / 1000000000), static_cast<long>(d % 1000000000)};
    nanosleep(&ts, nullptr);
  }
}

struct Gpu {
  float* out = nullptr;
  cudaStream_t stream{};
  int blocks = 0;
  explicit Gpu(int blocks_arg) {
    int sms = 0;
    CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
    blocks = blocks_arg > 0 ? blocks_arg : sms * 8;
    CHECK(cudaMalloc(&out, sizeof(float) * std::max(blocks, 1)));
    CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  }
  void Launch(int iters, int nblocks = 0) {
    Spin<<<nblocks > 0 ? nblocks : blocks, 256, 0, stream>>>(out, iters);
    CHECK(cudaGetLastError());
  }
  void Sync() { CHECK(cudaStreamSynchronize(stream)); }
};

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(p * (v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: see the comment at the top of workload.cu\n");
    return 2;
  }
  std::string mode = argv[1];
  auto arg = [&](int i, double def) { return i < argc ? std::atof(argv[i]) : def; };
  if (mode == "calibrate") {
    double target_us = arg(2, 2000);
    Gpu g(static_cast<int>(arg(3, 0)));
    int iters = 1000;
    double us = 0;
    for (int round = 0; round < 8; ++round) {
      g.Launch(iters);
      g.Sync();
      int64_t t0 = NowNs();
      for (int k = 0; k < 5; ++k) g.Launch(iters);
      g.Sync();
      us = (NowNs() - t0) / 5e3;
      if (us > target_us * 0.97 && us < target_us * 1.03) break;
      iters = std::max(1, static_cast<int>(iters * target_us / std::max(us, 1.0)));
    }
    std::printf("iters=%d kernel_us=%.1f blocks=%d\n", iters, us, g.blocks);
    return 0;
  }
  int64_t start = static_cast<int64_t>(arg(2, 0));
  double seconds = arg(3, 10);
  int iters = static_cast<int>(arg(4, 1000));
  Gpu g(mode == "latency" ? 1 : 0);
  // Warm up (module load; under the shim this also starts the arbiter client) before the start.
  g.Launch(iters, 1);
  g.Sync();
  if (start > 0)
    SleepUntil(start);
  else
    start = NowNs();
  int64_t end = start + static_cast<int64_t>(seconds * 1e9);

  if (mode == "saturate") {
    int every = static_cast<int>(arg(5, 8));
    long done = 0;
    while (true) {
      for (int k = 0; k < every; ++k) g.Launch(iters);
      g.Sync();
      if (NowNs() > end) break;
      done += every;
    }
    std::printf("mode=saturate kernels=%ld seconds=%.3f rate=%.3f\n", done, seconds,
                done / seconds);
  } else if (mode == "bursty") {
    int k = static_cast<int>(arg(5, 5));
    double sleep_ms = arg(6, 40);
    long bursts = 0;
    std::vector<double> dur;
    while (true) {
      int64_t t0 = NowNs();
      for (int i = 0; i < k; ++i) g.Launch(iters);
      g.Sync();
      int64_t t1 = NowNs();
      if (t1 > end) break;
      ++bursts;
      dur.push_back((t1 - t0) / 1e6);
      SleepUntil(t1 + static_cast<int64_t>(sleep_ms * 1e6));
    }
    double sum = 0;
    for (double d : dur) sum += d;
    std::printf(
        "mode=bursty bursts=%ld seconds=%.3f rate=%.3f burst_ms_p50=%.3f burst_ms_p99=%.3f "
        "burst_ms_sum=%.1f\n",
        bursts, seconds, bursts / seconds, Percentile(dur, 0.5), Percentile(dur, 0.99), sum);
  } else if (mode == "latency") {
    int k = static_cast<int>(arg(5, 4));
    double period_ms = arg(6, 10);
    std::vector<double> lat;
    int64_t next = start;
    while (true) {
      SleepUntil(next);
      int64_t t0 = NowNs();
      if (t0 > end) break;
      for (int i = 0; i < k; ++i) g.Launch(iters, 1);
      g.Sync();
      lat.push_back((NowNs() - t0) / 1e6);
      next = t0 + static_cast<int64_t>(period_ms * 1e6);
    }
    std::printf("mode=latency requests=%zu p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f max_ms=%.3f\n",
                lat.size(), Percentile(lat, 0.5), Percentile(lat, 0.9), Percentile(lat, 0.99),
                Percentile(lat, 1.0));
  } else {
    std::fprintf(stderr, "unknown mode %s\n", mode.c_str());
    return 2;
  }
  return 0;
}
