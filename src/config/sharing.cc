// Which sharing strategy a config uses, and its effective failRequestsGreaterThanOne.
#include <algorithm>
#include <string_view>

#include "src/config/config.h"

namespace slicer::config {
namespace {

bool Replicated(const TimeSlicing& section) {
  return std::any_of(section.resources.begin(), section.resources.end(),
                     [](const ReplicatedResource& r) { return r.replicas > 1; });
}

// NVIDIA's NewConfig sets MPS's failRequestsGreaterThanOne to true when the file leaves it out.
bool MpsFailRequests(const TimeSlicing& mps) {
  return mps.fail_requests_set ? mps.fail_requests_greater_than_one : true;
}

}  // namespace

SharingStrategy Config::Strategy() const {
  if (mps && Replicated(*mps)) return SharingStrategy::kMps;
  if (Replicated(time_slicing)) return SharingStrategy::kTimeSlicing;
  return SharingStrategy::kNone;
}

bool Config::FailRequestsGreaterThanOne() const {
  switch (Strategy()) {
    case SharingStrategy::kMps:
      return MpsFailRequests(*mps);
    case SharingStrategy::kTimeSlicing:
      return time_slicing.fail_requests_greater_than_one;
    case SharingStrategy::kNone:
      break;
  }
  return mps ? MpsFailRequests(*mps) : time_slicing.fail_requests_greater_than_one;
}

std::string_view ToString(SharingStrategy s) {
  switch (s) {
    case SharingStrategy::kNone:
      return "none";
    case SharingStrategy::kTimeSlicing:
      return "time-slicing";
    case SharingStrategy::kMps:
      return "mps";
  }
  return "unknown";
}

}  // namespace slicer::config
