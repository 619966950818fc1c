// A Clock that moves only when the test says so. Thread-safe.
#ifndef SLICER_TESTS_ARBITER_SIM_CLOCK_H_
#define SLICER_TESTS_ARBITER_SIM_CLOCK_H_

#include <atomic>

#include "src/common/clock.h"

namespace slicer::testing {

class SimClock final : public Clock {
 public:
  TimePoint Now() const override { return TimePoint(Duration(ns_.load())); }
  void Advance(Duration d) { ns_ += d.count(); }

 private:
  std::atomic<int64_t> ns_{1'000'000'000};
};

}  // namespace slicer::testing

#endif  // SLICER_TESTS_ARBITER_SIM_CLOCK_H_
