// Structured logging: one line per event, key=value, to stderr (Kubernetes collects it).
//
//   SLOG(kInfo, "registered").Kv("resource", name).Kv("replicas", 16);
//
// writes `ts=2026-11-24T03:04:05.123Z level=info event=registered resource=... replicas=16`.
// Values containing spaces, quotes or '=' are quoted. Thread-safe: each line is written with
// one write(2).
#ifndef SLICER_COMMON_LOG_H_
#define SLICER_COMMON_LOG_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>

namespace slicer {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

// "debug", "info", "warning" or "error"; nullopt for anything else.
std::optional<LogLevel> ParseLogLevel(std::string_view name);

// Lines below this level are dropped. Set once at start-up (from SLICER_LOG_LEVEL or a flag).
void SetLogLevel(LogLevel level);
LogLevel GetLogLevel();
// Redirects log output to `fd` (default 2). Intended for tests that capture logs.
void SetLogFd(int fd);

class LogLine {
 public:
  LogLine(LogLevel level, std::string_view event);
  ~LogLine();
  LogLine(const LogLine&) = delete;
  LogLine& operator=(const LogLine&) = delete;

  LogLine& Kv(std::string_view key, std::string_view value);
  LogLine& Kv(std::string_view key, const std::string& value) {
    return Kv(key, std::string_view(value));
  }
  LogLine& Kv(std::string_view key, const char* value) { return Kv(key, std::string_view(value)); }
  LogLine& Kv(std::string_view key, bool value) { return Kv(key, value ? "true" : "false"); }
  template <typename T, typename = std::enable_if_t<std::is_arithmetic_v<T>>>
  LogLine& Kv(std::string_view key, T value) {
    return Kv(key, std::string_view(std::to_string(value)));
  }

 private:
  bool enabled_;
  std::string line_;
};

}  // namespace slicer

#define SLOG(level, event) ::slicer::LogLine(::slicer::LogLevel::level, event)

#endif  // SLICER_COMMON_LOG_H_
