// Server::RenderMetrics: the Prometheus text of /metrics (docs/arbiter.md, "Metrics"), apart from
// the event loop's code in server.cc.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <string>

#include "absl/strings/str_cat.h"
#include "src/arbiter/server.h"

namespace slicer::arbiter {
namespace {

std::string Escape(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

}  // namespace

std::string Server::RenderMetrics() const {
  std::lock_guard<std::mutex> lock(mu_);
  struct Row {
    double gpu_seconds = 0, held_seconds = 0, configured = 0, achieved = 0;
    uint64_t mem_used = 0, mem_cap = 0;
    int clients = 0, bound = 0, observed = 0;
    std::string priority;
    double weight = 0;
  };
  std::map<SeriesKey, Row> rows;
  for (const auto& [key, r] : retired_) {
    rows[key].gpu_seconds += r.gpu_seconds;
    rows[key].held_seconds += r.held_seconds;
  }
  std::map<std::string, int> gpu_clients;
  for (const auto& [fd, sp] : sessions_) {
    const Session& s = *sp;
    for (const GpuUse& use : s.gpus) {
      if (!use.attached) continue;
      const Gpu& g = gpus_.at(use.uuid);
      Row& row = rows[SeriesOf(s, use.uuid)];
      ++gpu_clients[use.uuid];
      ++row.clients;
      row.mem_used += use.mem_used;
      row.mem_cap = std::max(row.mem_cap, use.mem_cap);
      if (s.observe) {
        row.gpu_seconds += std::chrono::duration<double>(use.observed).count();
        ++row.observed;
        continue;
      }
      ClientStats st = g.sched->Stats(s.id);
      row.gpu_seconds += std::chrono::duration<double>(st.used).count();
      row.held_seconds += std::chrono::duration<double>(st.waited).count();
      row.configured += st.configured_share;
      row.achieved += st.achieved_share;
      row.weight += st.weight;
      row.priority = PriorityName(st.priority);
      row.bound += st.bound ? 1 : 0;
    }
  }
  std::string out;
  auto labels = [](const SeriesKey& k) {
    return absl::StrCat("namespace=\"", Escape(std::get<0>(k)), "\",pod=\"", Escape(std::get<1>(k)),
                        "\",container=\"", Escape(std::get<2>(k)), "\",gpu=\"",
                        Escape(std::get<3>(k)), "\"");
  };
  auto family = [&](const char* name, const char* type, const char* help, auto value,
                    bool live_only) {
    absl::StrAppend(&out, "# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n");
    for (const auto& [k, r] : rows) {
      if (live_only && r.clients == 0) continue;
      absl::StrAppend(&out, name, "{", labels(k), "} ", value(r), "\n");
    }
  };
  auto num = [](double v) {
    char b[64];
    std::snprintf(b, sizeof b, "%.9g", v);
    return std::string(b);
  };
  family(
      "slicer_arbiter_gpu_seconds_total", "counter",
      "GPU time used (seconds), as charged by the arbiter.",
      [&](const Row& r) { return num(r.gpu_seconds); }, false);
  family(
      "slicer_arbiter_held_back_seconds_total", "counter",
      "Time spent waiting for a lease (seconds).",
      [&](const Row& r) { return num(r.held_seconds); }, false);
  family(
      "slicer_arbiter_configured_share", "gauge",
      "Share of the GPU's time the weights give (0..1).",
      [&](const Row& r) { return num(r.configured); }, true);
  family(
      "slicer_arbiter_achieved_share", "gauge",
      "Share of the GPU time recently used on this GPU (0..1).",
      [&](const Row& r) { return num(r.achieved); }, true);
  family(
      "slicer_arbiter_weight", "gauge", "Scheduling weight in force.",
      [&](const Row& r) { return num(r.weight); }, true);
  family(
      "slicer_arbiter_memory_used_bytes", "gauge", "GPU memory in use, as clients report it.",
      [&](const Row& r) { return std::to_string(r.mem_used); }, true);
  family(
      "slicer_arbiter_memory_cap_bytes", "gauge", "GPU memory cap of the container (0: none).",
      [&](const Row& r) { return std::to_string(r.mem_cap); }, true);
  family(
      "slicer_arbiter_clients", "gauge", "Connected client processes.",
      [&](const Row& r) { return std::to_string(r.clients); }, true);
  family(
      "slicer_arbiter_bound_clients", "gauge",
      "Client processes that keep the GPU busy on their own: leased under contention; the "
      "others submit beside everyone.",
      [&](const Row& r) { return std::to_string(r.bound); }, true);
  family(
      "slicer_arbiter_observed_clients", "gauge",
      "Client processes that only report (MPS clients: the MPS server runs them side by side, "
      "nothing is leased; their GPU seconds are the time they had work queued).",
      [&](const Row& r) { return std::to_string(r.observed); }, true);
  absl::StrAppend(&out,
                  "# HELP slicer_arbiter_gpu_clients Client processes attached per GPU.\n"
                  "# TYPE slicer_arbiter_gpu_clients gauge\n");
  for (const auto& [uuid, n] : gpu_clients) {
    absl::StrAppend(&out, "slicer_arbiter_gpu_clients{gpu=\"", Escape(uuid), "\"} ", n, "\n");
  }
  absl::StrAppend(&out,
                  "# HELP slicer_arbiter_clients_connected Connections open.\n"
                  "# TYPE slicer_arbiter_clients_connected gauge\n"
                  "slicer_arbiter_clients_connected ",
                  sessions_.size(), "\n");
  absl::StrAppend(&out,
                  "# HELP slicer_arbiter_connections_total Connections accepted.\n"
                  "# TYPE slicer_arbiter_connections_total counter\n"
                  "slicer_arbiter_connections_total ",
                  accepted_, "\n");
  absl::StrAppend(&out,
                  "# HELP slicer_arbiter_protocol_errors_total Clients rejected, by reason.\n"
                  "# TYPE slicer_arbiter_protocol_errors_total counter\n");
  for (const char* reason :
       {"malformed", "version", "identity", "state", "flood", "limit", "oversize"}) {
    auto it = errors_.find(reason);
    absl::StrAppend(&out, "slicer_arbiter_protocol_errors_total{reason=\"", reason, "\"} ",
                    it == errors_.end() ? 0 : it->second, "\n");
  }
  absl::StrAppend(&out,
                  "# HELP slicer_arbiter_forced_handovers_total Leases taken from clients that "
                  "ignored a revoke.\n"
                  "# TYPE slicer_arbiter_forced_handovers_total counter\n"
                  "slicer_arbiter_forced_handovers_total ",
                  forced_handovers_, "\n");
  absl::StrAppend(&out,
                  "# HELP slicer_arbiter_up The arbiter is serving.\n"
                  "# TYPE slicer_arbiter_up gauge\n"
                  "slicer_arbiter_up 1\n"
                  "# HELP slicer_arbiter_build_info Build and policy.\n"
                  "# TYPE slicer_arbiter_build_info gauge\n"
                  "slicer_arbiter_build_info{version=\"",
                  Escape(options_.version), "\",policy=\"",
                  PolicyName(options_.config.scheduler.policy), "\",protocol=\"",
                  SLICER_ARB_VERSION, "\"} 1\n");
  return out;
}

}  // namespace slicer::arbiter
