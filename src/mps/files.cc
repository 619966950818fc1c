#include "src/mps/files.h"


#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "src/mps/layout.h"

namespace slicer::mps {

std::string FormatDesired(const std::vector<DesiredGpu>& gpus) {
  std::string out = "# GPUs shared through MPS (written by slicer device-plugin)\n";
  for (const DesiredGpu& g : gpus) {
    absl::StrAppend(&out, g.uuid);
    if (g.threads < 100) absl::StrAppend(&out, " threads=", g.threads);
    absl::StrAppend(&out, "\n");
  }
  return out;
}

absl::StatusOr<std::vector<DesiredGpu>> ParseDesired(absl::string_view text) {
  std::vector<DesiredGpu> out;
  std::set<std::string> seen;
  int n = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++n;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') continue;
    std::vector<absl::string_view> fields = absl::StrSplit(line, ' ', absl::SkipEmpty());
    const std::string uuid(fields[0]);
    int threads = 100;
    for (size_t i = 1; i < fields.size(); ++i) {
      int t = 0;
      if (!absl::ConsumePrefix(&fields[i], "threads=") || !absl::SimpleAtoi(fields[i], &t) ||
          t < 1 || t > 100) {
        return absl::InvalidArgumentError(
            absl::StrCat("desired file line ", n, ": \"", line.substr(0, 120),
                         "\": after the UUID only threads=<1-100> may follow"));
      }
      threads = t;
    }
    if (!IsGpuUuid(uuid)) {
      return absl::InvalidArgumentError(absl::StrCat("desired file line ", n, ": \"",
                                                     uuid.substr(0, 80), "\" is not a GPU UUID"));
    }
    if (!seen.insert(uuid).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("desired file line ", n, ": ", uuid, " is listed twice"));
    }
    out.emplace_back(uuid, threads);
  }
  return out;
}

absl::string_view ToString(Phase phase) {
  switch (phase) {
    case Phase::kStarting: return "starting";
    case Phase::kReady: return "ready";
    case Phase::kDown: return "down";
    case Phase::kFailed: return "failed";
  }
  return "unknown";
}

std::string FormatState(const DaemonState& s) {
  std::string reason = s.reason;
  for (char& c : reason) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  // reason last: it runs to the end of the line and may hold spaces and '='.
  return absl::StrCat("phase=", ToString(s.phase), " pid=", s.pid, " restarts=", s.restarts,
                      " heartbeat_ms=", s.heartbeat_ms, " reason=", reason, "\n");
}

absl::StatusOr<DaemonState> ParseState(absl::string_view text) {
  text = absl::StripTrailingAsciiWhitespace(text);
  DaemonState s;
  bool have_phase = false, have_heartbeat = false;
  size_t reason_at = text.find(" reason=");
  absl::string_view fields = text.substr(0, reason_at);
  if (reason_at != absl::string_view::npos) {
    s.reason = std::string(text.substr(reason_at + sizeof(" reason=") - 1));
  }
  for (absl::string_view kv : absl::StrSplit(fields, ' ', absl::SkipEmpty())) {
    const size_t eq = kv.find('=');
    if (eq == absl::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat("state: \"", kv.substr(0, 40), "\" is not key=value"));
    }
    absl::string_view k = kv.substr(0, eq), v = kv.substr(eq + 1);
    if (k == "phase") {
      have_phase = true;
      if (v == "starting") s.phase = Phase::kStarting;
      else if (v == "ready") s.phase = Phase::kReady;
      else if (v == "down") s.phase = Phase::kDown;
      else if (v == "failed") s.phase = Phase::kFailed;
      else return absl::InvalidArgumentError(absl::StrCat("state: unknown phase \"", v.substr(0, 20), "\""));
    } else if (k == "pid" || k == "restarts") {
      int x = 0;
      if (!absl::SimpleAtoi(v, &x) || x < 0) {
        return absl::InvalidArgumentError(absl::StrCat("state: bad ", k));
      }
      (k == "pid" ? s.pid : s.restarts) = x;
    } else if (k == "heartbeat_ms") {
      if (!absl::SimpleAtoi(v, &s.heartbeat_ms)) {
        return absl::InvalidArgumentError("state: bad heartbeat_ms");
      }
      have_heartbeat = true;
    }  // unknown keys: written by a newer daemon; ignored
  }
  if (!have_phase || !have_heartbeat) {
    return absl::InvalidArgumentError("state: phase and heartbeat_ms are required");
  }
  return s;
}

bool StateHealthy(absl::string_view text, int64_t now_ms, int64_t stale_ms, std::string* reason) {
  auto s = ParseState(text);
  if (!s.ok()) {
    *reason = std::string(s.status().message());
    return false;
  }
  if (s->phase != Phase::kReady) {
    *reason = absl::StrCat("MPS control daemon ", ToString(s->phase),
                           s->reason.empty() ? "" : ": ", s->reason);
    return false;
  }
  if (now_ms - s->heartbeat_ms > stale_ms) {
    *reason = absl::StrCat("MPS daemon state is stale (last heartbeat ",
                           (now_ms - s->heartbeat_ms) / 1000, " s ago): slicer mps-daemon is not running");
    return false;
  }
  reason->clear();
  return true;
}

}  // namespace slicer::mps
