// `slicer status`: the arbiter's live table from its /metrics (docs/arbiter.md).
#include <curl/curl.h>
#include <unistd.h>

#include <cstdio>
#include <map>
#include <string>
#include <thread>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "src/arbiter/metrics_http.h"
#include "src/cli/commands.h"
#include "src/cli/flags.h"
#include "src/common/units.h"

namespace slicer::cli {
namespace {

size_t Append(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

absl::StatusOr<std::string> Fetch(const std::string& url) {
  CURL* curl = curl_easy_init();
  if (curl == nullptr) return absl::InternalError("curl_easy_init failed");
  std::string body;
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT, 5L);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, Append);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
  CURLcode rc = curl_easy_perform(curl);
  long code = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
  curl_easy_cleanup(curl);
  if (rc != CURLE_OK) {
    return absl::UnavailableError(
        absl::StrCat(url, ": ", curl_easy_strerror(rc), " (is `slicer arbiter` running?)"));
  }
  if (code != 200) return absl::UnavailableError(absl::StrCat(url, ": HTTP ", code));
  return body;
}

std::string Table(const std::string& text) {
  using Key = std::tuple<std::string, std::string, std::string, std::string>;
  struct Row {
    double gpu_s = 0, held_s = 0, cfg = 0, got = 0, weight = 0, clients = 0, used = 0, cap = 0;
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
    std::snprintf(line, sizeof line,
                  "%-14s %-22s %-14s %-40s %4.0f %6.2f %5.0f%% %5.0f%% %10.1f %10.1f %s\n",
                  trunc(std::get<0>(k).empty() ? "-" : std::get<0>(k), 14).c_str(),
                  trunc(std::get<1>(k).empty() ? "-" : std::get<1>(k), 22).c_str(),
                  trunc(std::get<2>(k), 14).c_str(), trunc(std::get<3>(k), 40).c_str(), r.clients,
                  r.weight, r.cfg * 100, r.got * 100, r.gpu_s, r.held_s, mem.c_str());
    out += line;
  }
  if (rows.empty()) out += "(no clients yet)\n";
  return out;
}

}  // namespace

int StatusMain(int argc, char** argv) {
  FlagSet flags("slicer status [flags]");
  flags.Add("endpoint", "SLICER_METRICS_ENDPOINT", "http://127.0.0.1:9400/metrics",
            "the arbiter's /metrics URL");
  flags.Add("watch", "", "false", "refresh until interrupted", true);
  flags.Add("interval", "", "2s", "refresh interval with --watch");
  if (int rc = ParseCommandLine(flags, argc, argv, "slicer status"); rc >= 0) return rc;
  auto watch = ParseBool(flags.Get("watch"));
  auto interval = ParseDuration(flags.Get("interval"));
  if (!watch.ok() || !interval.ok() || interval->count() <= 0) {
    std::fprintf(stderr, "slicer status: --watch wants true/false, --interval a duration\n");
    return 2;
  }
  curl_global_init(CURL_GLOBAL_DEFAULT);
  for (;;) {
    auto text = Fetch(flags.Get("endpoint"));
    if (*watch) std::fputs("\033[H\033[2J", stdout);
    if (!text.ok()) {
      std::fprintf(stderr, "slicer status: %s\n", std::string(text.status().message()).c_str());
      if (!*watch) return 1;
    } else {
      std::fputs(Table(*text).c_str(), stdout);
    }
    std::fflush(stdout);
    if (!*watch) return 0;
    std::this_thread::sleep_for(*interval);
  }
}

}  // namespace slicer::cli
