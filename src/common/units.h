// Parsing and printing of the quantities users write: memory sizes ("512MiB", "8GiB", "1.5G",
// "1073741824") and durations ("100ms", "2s", "1m30s", "0s").
#ifndef SLICER_COMMON_UNITS_H_
#define SLICER_COMMON_UNITS_H_

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace slicer {

// Accepts a non-negative number (integer or decimal) followed by an optional unit: B, K/KB/KiB,
// M/MB/MiB, G/GB/GiB, T/TB/TiB (binary multiples for Ki/Mi/Gi/Ti; decimal for K/KB/M/MB/G/GB/T/TB,
// as Kubernetes quantities do). Fails with InvalidArgument naming the text on anything else or on
// overflow.
absl::StatusOr<uint64_t> ParseSize(std::string_view text);

// "15.0GiB", "512MiB", "100B": the largest binary unit that gives a value >= 1, one decimal when
// it is not whole.
std::string FormatSize(uint64_t bytes);

// Go-style durations: a sequence of <number><unit> with units ns, us, ms, s, m, h ("1m30s",
// "250ms", "0s"). Fails with InvalidArgument naming the text.
absl::StatusOr<std::chrono::nanoseconds> ParseDuration(std::string_view text);

// Parses "true"/"false"/"1"/"0"/"yes"/"no" (case-insensitive).
absl::StatusOr<bool> ParseBool(std::string_view text);

}  // namespace slicer

#endif  // SLICER_COMMON_UNITS_H_
