// `slicer status`: the arbiter's live table from its /metrics (docs/arbiter.md).
#include <curl/curl.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "src/cli/commands.h"
#include "src/cli/flags.h"
#include "src/cli/status_table.h"
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
      std::fputs(StatusTable(*text).c_str(), stdout);
    }
    std::fflush(stdout);
    if (!*watch) return 0;
    std::this_thread::sleep_for(*interval);
  }
}

}  // namespace slicer::cli
