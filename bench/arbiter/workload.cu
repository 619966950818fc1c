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
//
// Kernels completed are counted on the GPU as well: the last block of each kernel writes the
// kernel's number to mapped host memory, which a host thread reads at START+S (`exact=`: the
// kernels finished inside the window, the one running then not counted). `kernels=` counts
// whole batches finished by then, as earlier runs did; a batch cut by the window's end is lost
// from it, which costs every client up to SYNC_EVERY kernels (more clients, more loss).
// With WORKLOAD_TRACE=FILE each kernel's GPU start and end (%globaltimer, moved to
// CLOCK_MONOTONIC) are written there, one `k start_ns end_ns` line per kernel, for
// bench/arbiter/handover.py.
#include <cuda_runtime.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#define CHECK(x)                                                                             \
  do {                                                                                       \
    cudaError_t e = (x);                                                                     \
    if (e != cudaSuccess) {                                                                  \
      std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e)); \
      std::exit(1);                                                                          \
    }                                                                                        \
  } while (0)

// Per stream: block counters and the kernels' GPU times; `done` is mapped host memory.
struct Probe {
  unsigned* started;
  unsigned* finished;
  unsigned long long* t_start;
  unsigned long long* t_end;
  unsigned cap;
  volatile unsigned long long* done;
};

__device__ unsigned long long GlobalTimer() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

__global__ void Spin(float* out, int iters, Probe p, unsigned k) {
  if (threadIdx.x == 0 && atomicAdd(p.started, 1) == 0 && k < p.cap) p.t_start[k] = GlobalTimer();
  float x = threadIdx.x * 1e-3f + blockIdx.x * 1e-6f;
  const float a = 1.0000001f, b = 0.9999999f;
  for (int i = 0; i < iters; ++i) x = fmaf(x, a, b);
  if (x == 1234.5678f) out[blockIdx.x] = x;  // keeps the chain; never true in practice
  __syncthreads();
  if (threadIdx.x == 0) {
    __threadfence();
    if (atomicAdd(p.finished, 1) == gridDim.x - 1) {
      // The last block: every block has started and finished, and the stream's next kernel
      // starts after this one, so the counters can be reset here.
      if (k < p.cap) p.t_end[k] = GlobalTimer();
      *p.started = 0;
      *p.finished = 0;
      __threadfence_system();
      *p.done = k + 1;
    }
  }
}

__global__ void Stamp(volatile unsigned long long* host) {
  __threadfence_system();
  *host = GlobalTimer();
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
  static constexpr unsigned kTraceCap = 1 << 16;
  float* out = nullptr;
  cudaStream_t stream{};
  int blocks = 0;
  Probe probe{};
  unsigned long long* host = nullptr;  // mapped: [0] kernels done, [1] Stamp's time
  unsigned launched = 0;
  explicit Gpu(int blocks_arg) {
    int sms = 0;
    CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
    blocks = blocks_arg > 0 ? blocks_arg : sms * 8;
    CHECK(cudaMalloc(&out, sizeof(float) * std::max(blocks, 1)));
    CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    unsigned* counters = nullptr;
    CHECK(cudaMalloc(&counters, 2 * sizeof(unsigned)));
    CHECK(cudaMemset(counters, 0, 2 * sizeof(unsigned)));
    CHECK(cudaMalloc(&probe.t_start, kTraceCap * sizeof(unsigned long long)));
    CHECK(cudaMalloc(&probe.t_end, kTraceCap * sizeof(unsigned long long)));
    CHECK(cudaHostAlloc(&host, 2 * sizeof(unsigned long long), cudaHostAllocMapped));
    host[0] = host[1] = 0;
    unsigned long long* dev_host = nullptr;
    CHECK(cudaHostGetDevicePointer(&dev_host, host, 0));
    probe.started = counters;
    probe.finished = counters + 1;
    probe.cap = kTraceCap;
    probe.done = dev_host;
  }
  void Launch(int iters, int nblocks = 0) {
    Spin<<<nblocks > 0 ? nblocks : blocks, 256, 0, stream>>>(out, iters, probe, launched++);
    CHECK(cudaGetLastError());
  }
  void Sync() { CHECK(cudaStreamSynchronize(stream)); }
  unsigned long long Done() const { return *static_cast<volatile unsigned long long*>(host); }
  // CLOCK_MONOTONIC minus %globaltimer: the least of a few samples of a one-thread kernel's
  // write to host memory, seen by the host spinning on it (bias: one PCIe write, ~1 us).
  long long ClockOffset() {
    long long best = 0;
    volatile unsigned long long* h = host + 1;
    unsigned long long* dev = nullptr;
    CHECK(cudaHostGetDevicePointer(&dev, host, 0));
    for (int i = 0; i < 5; ++i) {
      *h = 0;
      Stamp<<<1, 1, 0, stream>>>(dev + 1);
      CHECK(cudaGetLastError());
      unsigned long long g;
      while ((g = *h) == 0) {
      }
      long long off = NowNs() - static_cast<long long>(g);
      if (i == 0 || off < best) best = off;
      Sync();
    }
    return best;
  }
  // Writes `k start end` (CLOCK_MONOTONIC ns) for every traced kernel to `path`.
  void WriteTrace(const char* path, long long offset) {
    unsigned n = std::min(launched, kTraceCap);
    std::vector<unsigned long long> t0(n), t1(n);
    CHECK(cudaMemcpy(t0.data(), probe.t_start, n * sizeof t0[0], cudaMemcpyDeviceToHost));
    CHECK(cudaMemcpy(t1.data(), probe.t_end, n * sizeof t1[0], cudaMemcpyDeviceToHost));
    FILE* f = std::fopen(path, "w");
    if (f == nullptr) return;
    for (unsigned k = 0; k < n; ++k) {
      std::fprintf(f, "%u %lld %lld\n", k, static_cast<long long>(t0[k]) + offset,
                   static_cast<long long>(t1[k]) + offset);
    }
    std::fclose(f);
  }
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
  const char* trace = std::getenv("WORKLOAD_TRACE");
  bool tracing = trace != nullptr && trace[0] != '\0';
  long long offset = tracing ? g.ClockOffset() : 0;
  if (start > 0)
    SleepUntil(start);
  else
    start = NowNs();
  int64_t end = start + static_cast<int64_t>(seconds * 1e9);
  // Kernels finished inside the window, read on the GPU's own count at its start and end.
  unsigned long long done_at_start = g.Done(), done_at_end = 0;
  std::thread sampler([&] {
    SleepUntil(end);
    done_at_end = g.Done();
  });

  if (mode == "saturate") {
    int every = static_cast<int>(arg(5, 8));
    long done = 0;
    while (true) {
      for (int k = 0; k < every; ++k) g.Launch(iters);
      g.Sync();
      if (NowNs() > end) break;
      done += every;
    }
    sampler.join();
    std::printf("mode=saturate kernels=%ld seconds=%.3f rate=%.3f exact=%llu\n", done, seconds,
                done / seconds, done_at_end - done_at_start);
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
    std::vector<std::pair<int64_t, int64_t>> spans;  // traced: each request's host start, end
    int64_t next = start;
    while (true) {
      SleepUntil(next);
      int64_t t0 = NowNs();
      if (t0 > end) break;
      for (int i = 0; i < k; ++i) g.Launch(iters, 1);
      g.Sync();
      int64_t t1 = NowNs();
      lat.push_back((t1 - t0) / 1e6);
      spans.emplace_back(t0, t1);
      next = t0 + static_cast<int64_t>(period_ms * 1e6);
    }
    if (tracing) {
      std::string path = std::string(trace) + ".req";
      if (FILE* f = std::fopen(path.c_str(), "w")) {
        for (auto& [a, b] : spans) std::fprintf(f, "%lld %lld\n", (long long)a, (long long)b);
        std::fclose(f);
      }
    }
    std::printf("mode=latency requests=%zu p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f max_ms=%.3f\n",
                lat.size(), Percentile(lat, 0.5), Percentile(lat, 0.9), Percentile(lat, 0.99),
                Percentile(lat, 1.0));
  } else {
    std::fprintf(stderr, "unknown mode %s\n", mode.c_str());
    sampler.join();
    return 2;
  }
  if (sampler.joinable()) sampler.join();
  if (tracing) {
    g.Sync();
    g.WriteTrace(trace, offset);
  }
  return 0;
}
