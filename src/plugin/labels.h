// Node labels in the form GPU Feature Discovery publishes them, written to NFD's local feature
// file (one `key=value` per line) so that node-feature-discovery turns them into node labels.
#ifndef SLICER_PLUGIN_LABELS_H_
#define SLICER_PLUGIN_LABELS_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "src/plugin/resource.h"

namespace slicer::plugin {

struct NodeFacts {
  std::string driver_version;   // "580.159.04"
  int cuda_driver_version = 0;  // 13000
  int cc_major = 0, cc_minor = 0;
};

// nvidia.com/gpu.count, .product (with -SHARED when any GPU is shared), .memory (MiB),
// .replicas, .sharing-strategy, .compute.major/.minor, cuda.driver.*, cuda.driver-version.*.
std::map<std::string, std::string> NodeLabels(const std::vector<Resource>& resources,
                                              const NodeFacts& facts);

// Writes the labels atomically (temporary file + rename) so NFD never reads half a file.
absl::Status WriteFeatureFile(const std::string& path,
                              const std::map<std::string, std::string>& labels);

}  // namespace slicer::plugin

#endif  // SLICER_PLUGIN_LABELS_H_
