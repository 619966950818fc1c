#include "src/cli/status_table.h"

#include <cstdio>
#include <map>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "src/arbiter/metrics_http.h"
#include "src/common/units.h"

namespace slicer::cli {

std::string StatusTable(const std::string& text) {
  using Key = std::tuple<std::string, std::string, std::string, std::string>;
  struct Row {
    double gpu_s = 0, held_s = 0, cfg = 0, got = 0, weight = 0, clients = 0, used = 0, cap = 0;
    double observed = 0;  // MPS clients: reported, never leased
  };
  std::map<Key, Row> rows;
  std::string version = "?", policy = "?";
  double connected = 0;
  bool up = false;
  for (const arbiter::Sample& s : arbiter::ParsePrometheusText(text)) {
    if (s.name == "slicer_arbiter_up") up = s.value == 1;
    if (s.name == "slicer_arbiter_clients_connected") connected = s.value;
    if (s.name == "slicer_arbiter_build_info") {
      version = s.Label("version");
      policy = s.Label("policy");
    }
    if (s.Label("gpu").empty() || s.name == "slicer_arbiter_gpu_clients") continue;
    Row& r = rows[{s.Label("namespace"), s.Label("pod"), s.Label("container"), s.Label("gpu")}];
    if (s.name == "slicer_arbiter_gpu_seconds_total")
      r.gpu_s = s.value;
    else if (s.name == "slicer_arbiter_held_back_seconds_total")
      r.held_s = s.value;
    else if (s.name == "slicer_arbiter_configured_share")
      r.cfg = s.value;
    else if (s.name == "slicer_arbiter_achieved_share")
      r.got = s.value;
    else if (s.name == "slicer_arbiter_weight")
      r.weight = s.value;
    else if (s.name == "slicer_arbiter_clients")
      r.clients = s.value;
    else if (s.name == "slicer_arbiter_memory_used_bytes")
      r.used = s.value;
    else if (s.name == "slicer_arbiter_memory_cap_bytes")
      r.cap = s.value;
    else if (s.name == "slicer_arbiter_observed_clients")
      r.observed = s.value;
  }
  std::string out = absl::StrCat("arbiter ", up ? "up" : "DOWN", "  version=", version,
                                 "  policy=", policy, "  clients=", connected, "\n\n");
  char line[512];
  std::snprintf(line, sizeof line, "%-14s %-22s %-14s %-40s %4s %6s %6s %6s %10s %10s %s\n",
                "NAMESPACE", "POD", "CONTAINER", "GPU", "PROC", "WEIGHT", "SHARE", "GOT", "GPU-SEC",
                "HELD-SEC", "MEMORY");
  out += line;
  auto trunc = [](const std::string& s, size_t n) {
    return s.size() <= n ? s : s.substr(0, n - 1) + "~";
  };
  for (const auto& [k, r] : rows) {
    std::string mem = r.clients == 0 ? "-"
                                     : FormatSize(static_cast<uint64_t>(r.used)) + " / " +
                                           (r.cap > 0 ? FormatSize(static_cast<uint64_t>(r.cap))
                                                      : std::string("no cap"));
    // Observe-only (MPS) rows have no weight or share: the MPS server runs them side by side.
    const bool mps = r.clients > 0 && r.observed == r.clients;
    char weight[16], share[16], got[16];
    std::snprintf(weight, sizeof weight, "%6.2f", r.weight);
    std::snprintf(share, sizeof share, "%5.0f%%", r.cfg * 100);
    std::snprintf(got, sizeof got, "%5.0f%%", r.got * 100);
    std::snprintf(line, sizeof line, "%-14s %-22s %-14s %-40s %4.0f %6s %6s %6s %10.1f %10.1f %s\n",
                  trunc(std::get<0>(k).empty() ? "-" : std::get<0>(k), 14).c_str(),
                  trunc(std::get<1>(k).empty() ? "-" : std::get<1>(k), 22).c_str(),
                  trunc(std::get<2>(k), 14).c_str(), trunc(std::get<3>(k), 40).c_str(), r.clients,
                  mps ? "mps" : weight, mps ? "-" : share, mps ? "-" : got, r.gpu_s, r.held_s,
                  mem.c_str());
    out += line;
  }
  if (rows.empty()) out += "(no clients yet)\n";
  return out;
}


}  // namespace slicer::cli
