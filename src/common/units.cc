#include "src/common/units.h"

#include <cctype>
#include <cmath>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace slicer {
namespace {

std::string_view Trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

// Splits "12.5GiB" into the number 12.5 and the unit "GiB". Returns false on no digits.
bool SplitNumber(std::string_view text, double& number, std::string_view& unit) {
  size_t i = 0;
  bool digits = false, dot = false;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.')) {
    if (text[i] == '.') {
      if (dot) return false;
      dot = true;
    } else {
      digits = true;
    }
    ++i;
  }
  if (!digits) return false;
  number = std::strtod(std::string(text.substr(0, i)).c_str(), nullptr);
  unit = text.substr(i);
  return true;
}

}  // namespace

absl::StatusOr<uint64_t> ParseSize(std::string_view text) {
  std::string_view t = Trim(text);
  double number = 0;
  std::string_view unit;
  if (!SplitNumber(t, number, unit)) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid size \"", std::string(text),
                     "\": expected a number with a unit such as 512MiB or 8GiB"));
  }
  struct Unit {
    std::string_view name;
    double factor;
  };
  static constexpr Unit kUnits[] = {
      {"", 1},
      {"B", 1},
      {"Ki", 1024.0},
      {"KiB", 1024.0},
      {"K", 1e3},
      {"KB", 1e3},
      {"k", 1e3},
      {"Mi", 1048576.0},
      {"MiB", 1048576.0},
      {"M", 1e6},
      {"MB", 1e6},
      {"Gi", 1073741824.0},
      {"GiB", 1073741824.0},
      {"G", 1e9},
      {"GB", 1e9},
      {"Ti", 1099511627776.0},
      {"TiB", 1099511627776.0},
      {"T", 1e12},
      {"TB", 1e12},
  };
  for (const Unit& u : kUnits) {
    if (unit == u.name) {
      double bytes = std::round(number * u.factor);
      if (!(bytes < 18446744073709551615.0)) {
        return absl::InvalidArgumentError(
            absl::StrCat("size \"", std::string(text), "\" is too large"));
      }
      return static_cast<uint64_t>(bytes);
    }
  }
  return absl::InvalidArgumentError(absl::StrCat("invalid size \"", std::string(text),
                                                 "\": unknown unit \"", std::string(unit),
                                                 "\" (use B, KiB, MiB, GiB, TiB, K, M, G, T)"));
}

std::string FormatSize(uint64_t bytes) {
  static constexpr const char* kNames[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  double v = static_cast<double>(bytes);
  int i = 0;
  while (v >= 1024.0 && i < 5) {
    v /= 1024.0;
    ++i;
  }
  if (std::fabs(v - std::round(v)) < 0.05)
    return absl::StrCat(static_cast<uint64_t>(std::round(v)), kNames[i]);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f%s", v, kNames[i]);
  return buf;
}

absl::StatusOr<std::chrono::nanoseconds> ParseDuration(std::string_view text) {
  std::string_view t = Trim(text);
  auto bad = [&] {
    return absl::InvalidArgumentError(absl::StrCat("invalid duration \"", std::string(text),
                                                   "\": expected e.g. 100ms, 2s, 1m30s"));
  };
  if (t.empty()) return bad();
  if (t == "0") return std::chrono::nanoseconds(0);
  double total = 0;
  while (!t.empty()) {
    double number = 0;
    std::string_view rest;
    if (!SplitNumber(t, number, rest)) return bad();
    size_t u = 0;
    while (u < rest.size() && std::isalpha(static_cast<unsigned char>(rest[u]))) ++u;
    std::string_view unit = rest.substr(0, u);
    double factor;
    if (unit == "ns")
      factor = 1;
    else if (unit == "us" || unit == "µs")
      factor = 1e3;
    else if (unit == "ms")
      factor = 1e6;
    else if (unit == "s")
      factor = 1e9;
    else if (unit == "m")
      factor = 60e9;
    else if (unit == "h")
      factor = 3600e9;
    else
      return bad();
    total += number * factor;
    t = rest.substr(u);
  }
  if (total > static_cast<double>(std::numeric_limits<int64_t>::max())) return bad();
  return std::chrono::nanoseconds(static_cast<int64_t>(total));
}

absl::StatusOr<bool> ParseBool(std::string_view text) {
  std::string v(Trim(text));
  for (char& c : v) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (v == "true" || v == "1" || v == "yes") return true;
  if (v == "false" || v == "0" || v == "no") return false;
  return absl::InvalidArgumentError(
      absl::StrCat("invalid boolean \"", std::string(text), "\": expected true or false"));
}

}  // namespace slicer
