#include "src/plugin/labels.h"

#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "src/common/files.h"

namespace slicer::plugin {
namespace {

// Label values allow [A-Za-z0-9._-]: "Tesla T4" -> "Tesla-T4".
std::string LabelValue(const std::string& s) {
  std::string out;
  for (char c : s) {
    bool ok = std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
    out.push_back(ok ? c : '-');
  }
  return out.substr(0, 63);
}

}  // namespace

std::map<std::string, std::string> NodeLabels(const std::vector<Resource>& resources,
                                              const NodeFacts& facts) {
  std::map<std::string, std::string> l;
  std::set<std::string> uuids;
  std::string product;
  uint64_t memory = 0;
  int replicas = 1;
  bool mps = false;
  for (const Resource& r : resources) {
    mps |= r.mps && r.shared() && !r.gpus.empty();
    for (const Gpu& g : r.gpus) {
      if (!uuids.insert(g.uuid).second) continue;
      if (product.empty()) product = g.name;
      if (memory == 0) memory = g.memory_bytes;
    }
    if (!r.gpus.empty()) replicas = std::max(replicas, r.replicas);
  }
  l["nvidia.com/gpu.count"] = std::to_string(uuids.size());
  l["nvidia.com/gpu.replicas"] = std::to_string(replicas);
  l["nvidia.com/gpu.sharing-strategy"] = mps ? "mps" : replicas > 1 ? "time-slicing" : "none";
  // NVIDIA's label for nodes whose GPUs are shared through MPS (its MPS DaemonSet selects on it).
  l["nvidia.com/mps.capable"] = mps ? "true" : "false";
  if (!product.empty()) {
    l["nvidia.com/gpu.product"] = LabelValue(product + (replicas > 1 ? "-SHARED" : ""));
  }
  if (memory) l["nvidia.com/gpu.memory"] = std::to_string(memory >> 20);
  if (facts.cc_major) {
    l["nvidia.com/gpu.compute.major"] = std::to_string(facts.cc_major);
    l["nvidia.com/gpu.compute.minor"] = std::to_string(facts.cc_minor);
  }
  if (!facts.driver_version.empty()) {
    std::vector<std::string> parts = absl::StrSplit(facts.driver_version, '.');
    l["nvidia.com/cuda.driver-version.full"] = LabelValue(facts.driver_version);
    const char* names[] = {"major", "minor", "revision"};
    for (size_t i = 0; i < parts.size() && i < 3; ++i) {
      l[absl::StrCat("nvidia.com/cuda.driver-version.", names[i])] = LabelValue(parts[i]);
      l[absl::StrCat("nvidia.com/cuda.driver.", i == 2 ? "rev" : names[i])] = LabelValue(parts[i]);
    }
  }
  if (facts.cuda_driver_version) {
    l["nvidia.com/cuda.runtime-version.major"] = std::to_string(facts.cuda_driver_version / 1000);
    l["nvidia.com/cuda.runtime-version.minor"] =
        std::to_string(facts.cuda_driver_version % 1000 / 10);
  }
  return l;
}

absl::Status WriteFeatureFile(const std::string& path,
                              const std::map<std::string, std::string>& labels) {
  std::string text;
  for (const auto& [k, v] : labels) absl::StrAppend(&text, k, "=", v, "\n");
  return WriteFileAtomic(path, text);
}

}  // namespace slicer::plugin
