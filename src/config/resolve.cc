// ResolveResources: which of this node's GPUs each advertised resource covers.
#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "src/config/config.h"

namespace slicer::config {
namespace {

bool IsMigRef(const std::string& id) {
  return id.find(':') != std::string::npos || id.rfind("MIG-", 0) == 0;
}

std::string EntryPath(size_t i) { return absl::StrCat("sharing.timeSlicing.resources[", i, "]"); }

std::string Describe(const GpuRef& g) {
  return absl::StrCat("GPU ", g.index, " (", g.uuid, ", ", g.product, ")");
}

}  // namespace

absl::StatusOr<std::vector<ResolvedResource>> ResolveResources(const Config& config,
                                                               const std::vector<GpuRef>& gpus) {
  std::vector<GpuRef> sorted = gpus;
  std::stable_sort(sorted.begin(), sorted.end(),
                   [](const GpuRef& a, const GpuRef& b) { return a.index < b.index; });

  // Each GPU's base resource: the first resources.gpus pattern matching its product (NVIDIA's
  // order). A GPU no pattern matches is not advertised.
  std::vector<std::string> base(sorted.size());
  for (size_t g = 0; g < sorted.size(); ++g) {
    for (const ResourcePattern& p : config.gpu_resources) {
      if (MatchesPattern(p.pattern, sorted[g].product)) {
        base[g] = p.name;
        break;
      }
    }
  }

  std::vector<std::string> errors;
  struct Out {
    ResolvedResource resource;
    std::string origin;        // for messages: which entry (or "whole GPUs") produced it
    size_t first_gpu;          // position in `sorted`, for output order
    std::vector<size_t> gpus;  // positions in `sorted`
  };
  std::vector<Out> outs;
  std::map<std::string, size_t> by_name;
  std::vector<int> claimed_by(sorted.size(), -1);

  auto add = [&](const std::string& name, int replicas, bool enforce, bool opt_out,
                 const std::string& origin, size_t g) {
    auto [it, inserted] = by_name.emplace(name, outs.size());
    if (inserted) {
      Out o;
      o.resource.name = name;
      o.resource.replicas = replicas;
      o.resource.enforce_memory = enforce;
      o.resource.allow_opt_out = opt_out;
      o.origin = origin;
      o.first_gpu = g;
      outs.push_back(std::move(o));
    }
    Out& o = outs[it->second];
    if (o.resource.replicas != replicas) {
      errors.push_back(absl::StrCat(
          origin, " and ", o.origin, " would both advertise ", name, " but with ", replicas,
          " and ", o.resource.replicas,
          " replicas; one resource has one replica count: rename one of them (e.g. rename: ", name,
          ".shared)"));
      return;
    }
    if (o.resource.enforce_memory != enforce || o.resource.allow_opt_out != opt_out) {
      errors.push_back(absl::StrCat(origin, " and ", o.origin, " both advertise ", name,
                                    " but with different enforceMemory/allowOptOut; make them "
                                    "equal or rename one"));
      return;
    }
    o.gpus.push_back(g);
  };

  const TimeSlicing& ts = config.time_slicing;
  for (size_t i = 0; i < ts.resources.size(); ++i) {
    const ReplicatedResource& r = ts.resources[i];
    const std::string path = EntryPath(i);
    std::vector<size_t> candidates;
    for (size_t g = 0; g < sorted.size(); ++g) {
      if (base[g] == r.name) candidates.push_back(g);
    }

    std::vector<size_t> selected;
    if (r.devices.count) {
      if (*r.devices.count > static_cast<int>(candidates.size())) {
        errors.push_back(absl::StrCat(path, ".devices: asks for ", *r.devices.count, " GPUs of ",
                                      r.name, " but this node has ", candidates.size()));
        continue;
      }
      selected.assign(candidates.begin(), candidates.begin() + *r.devices.count);
    } else if (!r.devices.ids.empty()) {
      for (size_t k = 0; k < r.devices.ids.size(); ++k) {
        const std::string& id = r.devices.ids[k];
        const std::string ip = absl::StrCat(path, ".devices[", k, "]");
        if (IsMigRef(id)) {
          errors.push_back(absl::StrCat(ip, ": ", id,
                                        " is a MIG device; gpu-slicer shares whole GPUs only "
                                        "(migStrategy none)"));
          continue;
        }
        const bool by_index = id.rfind("GPU-", 0) != 0;
        size_t found = sorted.size();
        for (size_t g = 0; g < sorted.size(); ++g) {
          if (by_index ? std::to_string(sorted[g].index) == id : sorted[g].uuid == id) found = g;
        }
        if (found == sorted.size()) {
          std::vector<std::string> have;
          for (const GpuRef& g : sorted) {
            have.push_back(by_index ? std::to_string(g.index) : g.uuid);
          }
          errors.push_back(absl::StrCat(ip, ": this node has no GPU ", id, " (it has ",
                                        have.empty() ? "none" : absl::StrJoin(have, ", "), ")"));
          continue;
        }
        if (base[found] != r.name) {
          errors.push_back(absl::StrCat(
              ip, ": ", Describe(sorted[found]), " is advertised as ",
              base[found].empty() ? std::string("nothing (no resources.gpus pattern matches it)")
                                  : base[found],
              ", not ", r.name));
          continue;
        }
        selected.push_back(found);
      }
      std::sort(selected.begin(), selected.end());
    } else {
      selected = candidates;  // "all"; none on this node is fine (e.g. a MIG or other product)
    }

    std::string name = r.name;
    if (!r.rename.empty()) {
      name = r.rename;
    } else if (ts.rename_by_default && r.replicas > 1) {
      name = absl::StrCat(r.name, ".shared");
    }
    const bool enforce = r.enforce_memory.value_or(r.replicas > 1);
    for (size_t g : selected) {
      if (claimed_by[g] >= 0) {
        errors.push_back(absl::StrCat(Describe(sorted[g]), " is selected by both ",
                                      EntryPath(claimed_by[g]), " and ", path,
                                      "; a GPU can be shared one way only"));
        continue;
      }
      claimed_by[g] = static_cast<int>(i);
      add(name, r.replicas, enforce, r.allow_opt_out, path, g);
    }
  }

  for (size_t g = 0; g < sorted.size(); ++g) {
    if (claimed_by[g] >= 0 || base[g].empty()) continue;
    add(base[g], 1, false, false, absl::StrCat("the unshared GPUs of ", base[g]), g);
  }

  if (!errors.empty()) return absl::InvalidArgumentError(absl::StrJoin(errors, "; "));

  for (Out& o : outs) o.first_gpu = *std::min_element(o.gpus.begin(), o.gpus.end());
  std::stable_sort(outs.begin(), outs.end(),
                   [](const Out& a, const Out& b) { return a.first_gpu < b.first_gpu; });
  std::vector<ResolvedResource> result;
  for (Out& o : outs) {
    std::sort(o.gpus.begin(), o.gpus.end());
    for (size_t g : o.gpus) o.resource.uuids.push_back(sorted[g].uuid);
    result.push_back(std::move(o.resource));
  }
  return result;
}

}  // namespace slicer::config
