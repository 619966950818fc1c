// Device-plugin latency at scale: 8 GPUs x 64 replicas (512 devices) on the fake NVML.
// Measures, against the real binary over its unix socket:
//   start-to-registered   spawn of `slicer device-plugin` -> Register received -> first list
//   Allocate              round trip of a 1-replica and a 4-replica Allocate
//   ListAndWatch          open a stream -> first full list of 512 devices
//   GetDevicePluginOptions round trip: the transport's floor, the baseline for the ratios
// Usage: plugin_bench SLICER_BIN FAKES_DIR [iterations]
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <vector>

#include "grpcpp/grpcpp.h"
#include "src/common/subprocess.h"
#include "src/demo/kubelet_sim.h"

namespace {

using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

struct Stats {
  double p50, p99, mean;
};

Stats Summarize(std::vector<double> us) {
  std::sort(us.begin(), us.end());
  double sum = 0;
  for (double v : us) sum += v;
  auto pct = [&](double p) {
    return us[std::min(us.size() - 1, static_cast<size_t>(p * us.size()))];
  };
  return {pct(0.50), pct(0.99), sum / us.size()};
}

double Us(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::micro>(b - a).count();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s SLICER_BIN FAKES_DIR [iterations]\n", argv[0]);
    return 2;
  }
  const std::string bin = argv[1], fakes = argv[2];
  const int iters = argc > 3 ? std::atoi(argv[3]) : 2000;
  constexpr int kGpus = 8, kReplicas = 64;
  char tmpl[] = "/tmp/slicer-bench-XXXXXX";
  if (!mkdtemp(tmpl)) return 1;
  const std::string dir = tmpl;
  fs::create_directories(dir + "/dp");
  {
    std::ofstream m(dir + "/machine.yaml");
    m << "driverVersion: \"580.159.04\"\ndevices:\n";
    for (int i = 0; i < kGpus; ++i) {
      char uuid[64];
      std::snprintf(uuid, sizeof uuid, "GPU-%08d-0000-4000-8000-%012d", i, i);
      m << "  - {uuid: " << uuid
        << ", name: NVIDIA H100 80GB HBM3, memoryMiB: 81559, numaNode: " << i / 4 << "}\n";
    }
    std::ofstream(dir + "/config.yaml") << "version: v1\nsharing:\n  timeSlicing:\n    resources:\n"
                                           "      - name: nvidia.com/gpu\n        replicas: "
                                        << kReplicas << "\n";
    // Memory caps on (the default for shared resources), so Allocate computes caps and adds the
    // shim's mounts as it does on a node; the bench never loads the library.
    fs::create_directories(dir + "/shim");
    std::ofstream(dir + "/shim/libslicer.so") << "placeholder";
  }
  slicer::demo::KubeletSim kubelet(dir + "/dp/kubelet.sock");
  if (!kubelet.Start().ok()) return 1;

  // start-to-registered, several cold starts.
  std::vector<double> starts;
  std::shared_ptr<slicer::demo::PluginClient> client;
  std::unique_ptr<slicer::Subprocess> plugin;
  for (int run = 1; run <= 5; ++run) {
    auto t0 = Clock::now();
    auto p = slicer::Subprocess::Spawn(
        {{bin, "device-plugin", "--config-file", dir + "/config.yaml", "--kubelet-socket",
          dir + "/dp/kubelet.sock", "--feature-file", "", "--shim-dir", dir + "/shim",
          "--log-level", "warning"},
         {{"LD_LIBRARY_PATH", fakes}, {"SLICER_FAKE_NVML", dir + "/machine.yaml"}},
         dir + "/plugin.log"});
    if (!p.ok()) return 1;
    client = kubelet.WaitForRegistration("nvidia.com/gpu", run, std::chrono::seconds(20));
    if (!client ||
        !client->WaitFor([](const auto& l) { return l.devices_size() == kGpus * kReplicas; },
                         std::chrono::seconds(10))) {
      std::fprintf(stderr, "plugin did not register (see %s/plugin.log)\n", dir.c_str());
      return 1;
    }
    starts.push_back(Us(t0, Clock::now()));
    if (run < 5) {
      p->Signal(SIGTERM);
      p->Wait(std::chrono::seconds(5));
    } else {
      plugin = std::make_unique<slicer::Subprocess>(std::move(*p));
    }
  }

  std::vector<std::string> ids;
  const auto listed = client->Devices();  // keep the response alive while iterating it
  for (const auto& d : listed.devices()) ids.push_back(d.id());

  std::vector<double> options_us, alloc1_us, alloc4_us, law_us;
  v1beta1::DevicePluginOptions opts;
  v1beta1::AllocateResponse resp;
  for (int i = 0; i < 200; ++i) client->Options(&opts);  // warm-up
  for (int i = 0; i < iters; ++i) {
    auto t0 = Clock::now();
    client->Options(&opts);
    auto t1 = Clock::now();
    const std::string& a = ids[(i * 7) % ids.size()];
    if (!client->Allocate({{a}}, &resp).ok()) return 1;
    auto t2 = Clock::now();
    int g = (i % kGpus) * kReplicas;
    if (!client->Allocate({{ids[g], ids[g + 1], ids[g + 2], ids[g + 3]}}, &resp).ok()) return 1;
    auto t3 = Clock::now();
    options_us.push_back(Us(t0, t1));
    alloc1_us.push_back(Us(t1, t2));
    alloc4_us.push_back(Us(t2, t3));
  }
  // ListAndWatch: a fresh stream to the first full list, as a kubelet reconnecting sees it.
  auto channel = grpc::CreateChannel("unix://" + dir + "/dp/gpu-slicer-nvidia.com-gpu.sock",
                                     grpc::InsecureChannelCredentials());
  auto stub = v1beta1::DevicePlugin::NewStub(channel);
  for (int i = 0; i < std::max(50, iters / 10); ++i) {
    grpc::ClientContext ctx;
    v1beta1::Empty empty;
    auto t0 = Clock::now();
    auto reader = stub->ListAndWatch(&ctx, empty);
    v1beta1::ListAndWatchResponse list;
    if (!reader->Read(&list) || list.devices_size() != kGpus * kReplicas) return 1;
    law_us.push_back(Us(t0, Clock::now()));
    ctx.TryCancel();
    reader->Finish();
  }
  plugin->Signal(SIGTERM);
  plugin->Wait(std::chrono::seconds(5));
  kubelet.Stop();
  fs::remove_all(dir);

  Stats so = Summarize(options_us), a1 = Summarize(alloc1_us), a4 = Summarize(alloc4_us),
        lw = Summarize(law_us), st = Summarize(starts);
  std::printf(
      "| measurement (%d GPUs x %d replicas = %d devices) | p50 | p99 | mean | p99 / baseline p99 "
      "|\n",
      kGpus, kReplicas, kGpus * kReplicas);
  std::printf("|---|---|---|---|---|\n");
  auto row = [&](const char* name, Stats s, double div, const char* unit) {
    std::printf("| %s | %.1f %s | %.1f %s | %.1f %s | %.2f |\n", name, s.p50 / div, unit,
                s.p99 / div, unit, s.mean / div, unit, s.p99 / so.p99);
  };
  row("GetDevicePluginOptions (baseline: transport floor)", so, 1, "us");
  row("Allocate, 1 replica", a1, 1, "us");
  row("Allocate, 4 replicas of one GPU", a4, 1, "us");
  row("ListAndWatch, open to first list (512 devices)", lw, 1, "us");
  std::printf(
      "| start-to-registered (spawn -> Register -> first list), 5 starts (p99 = max) | %.1f ms | "
      "%.1f ms | "
      "%.1f ms | - |\n",
      st.p50 / 1000, st.p99 / 1000, st.mean / 1000);
  std::printf("\niterations: %d Allocate pairs, %zu ListAndWatch opens\n", iters, law_us.size());
  std::printf("target Allocate p99 < 1 ms: %s\n",
              std::max(a1.p99, a4.p99) < 1000 ? "met" : "NOT met");
  return 0;
}
