// Time as a seam: code whose behaviour depends on time takes a Clock so tests can drive it.
// Thread-safe.
#ifndef SLICER_COMMON_CLOCK_H_
#define SLICER_COMMON_CLOCK_H_

#include <chrono>

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

}  // namespace slicer

#endif  // SLICER_COMMON_CLOCK_H_
