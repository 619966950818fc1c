// The device plugin under hostile gRPC clients, on the CPU (issue 16). Starts the real `slicer
// device-plugin` (fake NVML: 2 GPUs x 8 time-sliced replicas, memory caps on), registers it with
// an in-process kubelet registration server, and then for SECONDS:
//   - an honest client (the kubelet's side: its ListAndWatch stream stays open, and it sends a
//     valid 1-replica and a valid 2-replica Allocate back to back) counts failures and latency;
//   - ATTACKERS threads send, each call one of: an empty AllocateRequest; a container request with
//     no IDs; ~6 MB of IDs (2000 containers x 64, over gRPC's 4 MiB default); unknown IDs; a
//     64 KiB ID with control bytes; one ID twice; GetPreferredAllocation with size -1, 10^6 and a
//     must-include outside the available set; PreStartContainer with junk; a ListAndWatch stream
//     opened and cancelled at once; a raw connection writing random bytes (not HTTP/2).
// Then checks that the plugin still runs, its stream to the honest client is open with every
// device listed, and prints the counts by kind and status, the honest client's failures and p99
// against the same client's p99 alone (measured first), and the plugin's RSS before and after.
// Usage: grpc_soak SLICER_BIN FAKES_DIR [SECONDS] [ATTACKERS]
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <sstream>
#include <thread>
#include <vector>

#include "grpcpp/grpcpp.h"
#include "src/common/subprocess.h"
#include "src/demo/kubelet_sim.h"

namespace {

using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

long RssKiB(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
  }
  return -1;
}

double P99(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(0.99 * v.size()))];
}

// The honest client's two Allocates, timed (us); false when either failed.
bool Honest(slicer::demo::PluginClient& c, const std::vector<std::string>& ids, int i,
            std::vector<double>* us) {
  v1beta1::AllocateResponse r;
  auto t0 = Clock::now();
  bool ok = c.Allocate({{ids[i % ids.size()]}}, &r).ok();
  const size_t g = (i % 2) * 8;
  ok = c.Allocate({{ids[g], ids[g + 1 + i % 7]}}, &r).ok() && ok;
  us->push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
  return ok;
}

const char* kKinds[] = {"empty-request",  "no-ids",          "6MB-of-ids",   "unknown-ids",
                        "64KiB-id",       "duplicate-id",    "preferred-bad", "prestart-junk",
                        "watch-cancel",   "raw-bytes"};
constexpr int kNumKinds = sizeof kKinds / sizeof kKinds[0];

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s SLICER_BIN FAKES_DIR [SECONDS] [ATTACKERS]\n", argv[0]);
    return 2;
  }
  const std::string bin = argv[1], fakes = argv[2];
  const int seconds = argc > 3 ? std::atoi(argv[3]) : 60;
  const int attackers = argc > 4 ? std::atoi(argv[4]) : 4;
  char tmpl[] = "/tmp/slicer-grpc-soak-XXXXXX";
  if (!mkdtemp(tmpl)) return 1;
  const std::string dir = tmpl;
  fs::create_directories(dir + "/dp");
  fs::create_directories(dir + "/shim");
  std::ofstream(dir + "/shim/libslicer.so") << "placeholder";
  std::ofstream(dir + "/machine.yaml")
      << "driverVersion: \"580.159.04\"\ndevices:\n"
         "  - {uuid: GPU-00000000-0000-4000-8000-000000000000, name: NVIDIA A10G, memoryMiB: 23028}\n"
         "  - {uuid: GPU-00000001-0000-4000-8000-000000000001, name: NVIDIA A10G, memoryMiB: 23028}\n";
  std::ofstream(dir + "/config.yaml") << "version: v1\nsharing:\n  timeSlicing:\n    resources:\n"
                                         "      - name: nvidia.com/gpu\n        replicas: 8\n";
  slicer::demo::KubeletSim kubelet(dir + "/dp/kubelet.sock");
  if (!kubelet.Start().ok()) return 1;
  auto p = slicer::Subprocess::Spawn(
      {{bin, "device-plugin", "--config-file", dir + "/config.yaml", "--kubelet-socket",
        dir + "/dp/kubelet.sock", "--feature-file", "", "--shim-dir", dir + "/shim", "--log-level",
        "warning"},
       {{"LD_LIBRARY_PATH", fakes}, {"SLICER_FAKE_NVML", dir + "/machine.yaml"}},
       dir + "/plugin.log"});
  if (!p.ok()) return 1;
  auto client = kubelet.WaitForRegistration("nvidia.com/gpu", 1, std::chrono::seconds(20));
  if (!client || !client->WaitFor([](const auto& l) { return l.devices_size() == 16; },
                                  std::chrono::seconds(10))) {
    std::fprintf(stderr, "plugin did not register (see %s/plugin.log)\n", dir.c_str());
    return 1;
  }
  std::vector<std::string> ids;
  const auto listed = client->Devices();
  for (const auto& d : listed.devices()) ids.push_back(d.id());
  const std::string socket = dir + "/dp/gpu-slicer-nvidia.com-gpu.sock";

  // The honest client alone: the baseline.
  std::vector<double> alone_us, soak_us;
  int alone_failed = 0;
  for (auto end = Clock::now() + std::chrono::seconds(std::max(2, seconds / 6));
       Clock::now() < end;) {
    alone_failed += !Honest(*client, ids, static_cast<int>(alone_us.size()), &alone_us);
  }
  const long rss_before = RssKiB(p->pid());

  std::atomic<bool> stop{false};
  std::mutex mu;
  std::map<std::pair<int, int>, long> outcomes;  // (kind, grpc status code) -> calls
  std::vector<std::thread> threads;
  for (int t = 0; t < attackers; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(1000 + t);
      auto channel = grpc::CreateChannel("unix://" + socket, grpc::InsecureChannelCredentials());
      auto stub = v1beta1::DevicePlugin::NewStub(channel);
      std::map<std::pair<int, int>, long> mine;
      while (!stop) {
        const int kind = static_cast<int>(rng() % kNumKinds);
        grpc::ClientContext ctx;
        ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
        grpc::Status st;
        v1beta1::AllocateRequest areq;
        v1beta1::AllocateResponse aresp;
        switch (kind) {
          case 0:
            st = stub->Allocate(&ctx, areq, &aresp);
            break;
          case 1:
            areq.add_container_requests();
            st = stub->Allocate(&ctx, areq, &aresp);
            break;
          case 2:
            for (int c = 0; c < 2000; ++c) {
              auto* cr = areq.add_container_requests();
              for (int i = 0; i < 64; ++i) cr->add_devices_ids(ids[(c + i) % ids.size()]);
            }
            st = stub->Allocate(&ctx, areq, &aresp);
            break;
          case 3:
            areq.add_container_requests()->add_devices_ids("GPU-ffffffff-0000-4000-8000-0::9");
            st = stub->Allocate(&ctx, areq, &aresp);
            break;
          case 4: {
            std::string junk(65536, 'A');
            for (size_t i = 0; i < junk.size(); i += 97) junk[i] = static_cast<char>(rng() % 32);
            areq.add_container_requests()->add_devices_ids(junk);
            st = stub->Allocate(&ctx, areq, &aresp);
            break;
          }
          case 5: {
            auto* cr = areq.add_container_requests();
            cr->add_devices_ids(ids[0]);
            cr->add_devices_ids(ids[0]);
            st = stub->Allocate(&ctx, areq, &aresp);
            break;
          }
          case 6: {
            v1beta1::PreferredAllocationRequest preq;
            v1beta1::PreferredAllocationResponse presp;
            const int64_t sizes[] = {-1, 1000000, 1};
            auto* cr = preq.add_container_requests();
            for (const auto& id : ids) cr->add_available_deviceids(id);
            cr->set_allocation_size(static_cast<int32_t>(sizes[rng() % 3]));
            cr->add_must_include_deviceids("GPU-00000000-0000-4000-8000-000000000000::99");
            st = stub->GetPreferredAllocation(&ctx, preq, &presp);
            break;
          }
          case 7: {
            v1beta1::PreStartContainerRequest sreq;
            v1beta1::PreStartContainerResponse sresp;
            sreq.add_devices_ids("\x01\x02");
            sreq.add_devices_ids(std::string(1000, 'x'));
            st = stub->PreStartContainer(&ctx, sreq, &sresp);
            break;
          }
          case 8: {
            v1beta1::Empty e;
            auto reader = stub->ListAndWatch(&ctx, e);
            ctx.TryCancel();
            st = reader->Finish();
            break;
          }
          case 9: {
            int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
            sockaddr_un addr{};
            addr.sun_family = AF_UNIX;
            std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", socket.c_str());
            int code = 14;  // UNAVAILABLE: could not connect
            if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
              std::string bytes(1 + rng() % 4096, '\0');
              for (char& b : bytes) b = static_cast<char>(rng());
              ssize_t w = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
              (void)w;
              code = 0;  // written (the server drops the connection)
            }
            ::close(fd);
            st = grpc::Status(static_cast<grpc::StatusCode>(code), "");
            break;
          }
        }
        ++mine[{kind, static_cast<int>(st.error_code())}];
      }
      std::lock_guard<std::mutex> lock(mu);
      for (const auto& [k, n] : mine) outcomes[k] += n;
    });
  }
  int soak_failed = 0;
  const auto soak_start = Clock::now();
  const auto soak_end = soak_start + std::chrono::seconds(seconds);
  std::vector<long> rss_series;  // every tenth of the soak: does the plugin's memory level off?
  auto next_sample = soak_start;
  while (Clock::now() < soak_end) {
    if (Clock::now() >= next_sample) {
      rss_series.push_back(RssKiB(p->pid()));
      next_sample += std::chrono::milliseconds(seconds * 100);
    }
    soak_failed += !Honest(*client, ids, static_cast<int>(soak_us.size()), &soak_us);
  }
  stop = true;
  for (auto& t : threads) t.join();
  const long rss_after = RssKiB(p->pid());
  const bool alive = !p->Wait(std::chrono::milliseconds(0)).has_value();
  const bool stream = client->stream_open();
  const int listed_after = client->Devices().devices_size();
  const int healthy_after = client->Healthy();
  // One more honest Allocate after the attackers stopped.
  std::vector<double> after_us;
  const bool after_ok = Honest(*client, ids, 0, &after_us);
  p->Signal(SIGTERM);
  p->Wait(std::chrono::seconds(5));
  kubelet.Stop();

  long total = 0;
  std::printf("| kind | calls | outcome (gRPC status: calls) |\n|---|---|---|\n");
  for (int k = 0; k < kNumKinds; ++k) {
    long n = 0;
    std::ostringstream o;
    for (const auto& [key, c] : outcomes) {
      if (key.first != k) continue;
      n += c;
      o << (o.tellp() > 0 ? ", " : "") << key.second << ": " << c;
    }
    total += n;
    std::printf("| %s | %ld | %s |\n", kKinds[k], n, o.str().c_str());
  }
  std::printf("\nhostile calls: %ld in %d s with %d threads (%.0f/s)\n", total, seconds, attackers,
              static_cast<double>(total) / seconds);
  std::printf("honest pairs alone: %zu, failed %d, p99 %.0f us\n", alone_us.size(), alone_failed,
              P99(alone_us));
  std::printf("honest pairs during the soak: %zu, failed %d, p99 %.0f us (%.2fx alone)\n",
              soak_us.size(), soak_failed, P99(soak_us), P99(soak_us) / P99(alone_us));
  std::printf("after: plugin %s, ListAndWatch stream %s, %d devices listed (%d healthy), honest "
              "Allocate %s; RSS %ld KiB before the soak, %ld KiB after\n",
              alive ? "running" : "GONE", stream ? "open" : "CLOSED", listed_after, healthy_after,
              after_ok ? "ok" : "FAILED", rss_before, rss_after);
  std::printf("RSS during the soak, every %d s (KiB):", std::max(1, seconds / 10));
  for (long r : rss_series) std::printf(" %ld", r);
  std::printf(" %ld\n", rss_after);
  std::ifstream log(dir + "/plugin.log");
  long lines = 0, errors = 0;
  for (std::string line; std::getline(log, line);) {
    ++lines;
    errors += line.find("level=error") != std::string::npos;
  }
  std::printf("plugin log: %ld lines, %ld at level=error\n", lines, errors);
  fs::remove_all(dir);
  const bool ok = alive && stream && listed_after == 16 && healthy_after == 16 && after_ok &&
                  soak_failed == 0 && alone_failed == 0;
  std::printf("verdict: %s\n", ok ? "nothing lost or crashed" : "FAILED");
  return ok ? 0 : 1;
}
