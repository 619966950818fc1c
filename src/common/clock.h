// Time as a seam: code whose behaviour depends on time takes a Clock so tests can drive it.
// Thread-safe.
#ifndef SLICER_COMMON_CLOCK_H_
#define SLICER_COMMON_CLOCK_H_

#include <chrono>
#include <cstdint>

namespace slicer {

class Clock {
 public:
  using Duration = std::chrono::nanoseconds;
  using TimePoint = std::chrono::steady_clock::time_point;
  virtual ~Clock() = default;
  virtual TimePoint Now() const = 0;
};

// The process-wide monotonic clock.
Clock& RealClock();

// Wall-clock milliseconds since the Unix epoch: for times another process reads (heartbeats in
// files), where the monotonic clock's origin is not shared.
int64_t WallClockMs();

}  // namespace slicer

#endif  // SLICER_COMMON_CLOCK_H_
