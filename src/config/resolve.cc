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

std::string Describe(const GpuRef& g) {
  return absl::StrCat("GPU ", g.index, " (", g.uuid, ", ", g.product, ")");
}

std::string ComputeCapability(const GpuRef& g) {
  return g.cc_major > 0 ? absl::StrCat(g.cc_major, ".", g.cc_minor) : std::string("unknown");
}

// One entry of sharing.timeSlicing or sharing.mps.
struct Entry {
  const ReplicatedResource* resource;
  std::string path;  // "sharing.mps.resources[2]"
  bool rename_by_default;
  SharingStrategy strategy;
};

// The MPS-only rules for entry `path` (sharing.mps.resources[i]) over the GPUs it selected. Parse
// reports the same for a file; a Config built in code meets them here.
void CheckMps(const Config& config, const ReplicatedResource& r, const std::string& path,
              const std::vector<const GpuRef*>& selected, std::vector<std::string>& errors) {
  if (IsMigResourceName(r.name)) {
    errors.push_back(absl::StrCat(path, ": ", r.name,
                                  " is a MIG resource; MPS is not supported for MIG devices"));
  }
  if (r.replicas > kMaxMpsReplicas) {
    errors.push_back(absl::StrCat(path, ": ", r.replicas,
                                  " replicas; an MPS server accepts at most ", kMaxMpsReplicas,
                                  " clients per GPU"));
  }
  for (const GpuRef* g : selected) {
    if (g->uuid.rfind("MIG-", 0) == 0) {
      errors.push_back(absl::StrCat(path, ": ", Describe(*g), " is a MIG device (migStrategy ",
                                    config.flags.mig_strategy,
                                    "); MPS is not supported for MIG devices"));
    } else if (g->cc_major > 0 && g->cc_major < kMpsVoltaComputeMajor &&
               r.replicas > kMaxMpsReplicasPreVolta) {
      errors.push_back(
          absl::StrCat(path, ": ", r.replicas, " replicas on ", Describe(*g),
                       ", compute capability ", ComputeCapability(*g),
                       "; before compute capability 7.0 (Volta) an MPS server accepts at "
                       "most ",
                       kMaxMpsReplicasPreVolta, " clients per GPU: use at most ",
                       kMaxMpsReplicasPreVolta, " replicas, or exclude this GPU with devices"));
    }
  }
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
  std::vector<std::string> claimed_by(sorted.size());  // the entry's path; empty: unclaimed

  auto add = [&](const std::string& name, int replicas, bool enforce, bool opt_out,
                 SharingStrategy sharing, const std::string& origin, size_t g) {
    auto [it, inserted] = by_name.emplace(name, outs.size());
    if (inserted) {
      Out o;
      o.resource.name = name;
      o.resource.replicas = replicas;
      o.resource.enforce_memory = enforce;
      o.resource.allow_opt_out = opt_out;
      o.resource.sharing = sharing;
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
    if (o.resource.sharing != sharing) {
      errors.push_back(absl::StrCat(origin, " and ", o.origin, " both advertise ", name,
                                    ", one with ", std::string(ToString(sharing)), " and one with ",
                                    std::string(ToString(o.resource.sharing)), "; rename one"));
      return;
    }
    o.gpus.push_back(g);
  };

  // timeSlicing's entries, then MPS's: resolved alike.
  std::vector<Entry> entries;
  auto collect = [&](const TimeSlicing& section, const char* path, SharingStrategy strategy) {
    for (size_t i = 0; i < section.resources.size(); ++i) {
      entries.push_back({&section.resources[i], absl::StrCat(path, ".resources[", i, "]"),
                         section.rename_by_default, strategy});
    }
  };
  collect(config.time_slicing, "sharing.timeSlicing", SharingStrategy::kTimeSlicing);
  if (config.mps) {
    collect(*config.mps, "sharing.mps", SharingStrategy::kMps);
    if (config.flags.mig_strategy == "mixed") {
      errors.push_back(
          "sharing.mps: MPS is not supported for MIG devices, and migStrategy is mixed; use "
          "migStrategy none or single with sharing.mps");
    }
  }
  for (const Entry& entry : entries) {
    const ReplicatedResource& r = *entry.resource;
    const std::string& path = entry.path;
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
        if (IsMigDeviceRef(id)) {
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
    } else if (entry.rename_by_default && r.replicas > 1) {
      name = absl::StrCat(r.name, ".shared");
    }
    if (entry.strategy == SharingStrategy::kMps) {
      std::vector<const GpuRef*> refs;
      for (size_t g : selected) refs.push_back(&sorted[g]);
      CheckMps(config, r, path, refs, errors);
    }
    const bool enforce = r.enforce_memory.value_or(r.replicas > 1);
    const SharingStrategy sharing = r.replicas > 1 ? entry.strategy : SharingStrategy::kNone;
    for (size_t g : selected) {
      if (!claimed_by[g].empty()) {
        errors.push_back(absl::StrCat(Describe(sorted[g]), " is selected by both ", claimed_by[g],
                                      " and ", path, "; a GPU can be shared one way only"));
        continue;
      }
      claimed_by[g] = path;
      add(name, r.replicas, enforce, r.allow_opt_out, sharing, path, g);
    }
  }

  for (size_t g = 0; g < sorted.size(); ++g) {
    if (!claimed_by[g].empty() || base[g].empty()) continue;
    add(base[g], 1, false, false, SharingStrategy::kNone,
        absl::StrCat("the unshared GPUs of ", base[g]), g);
  }

  if (!errors.empty()) {
    // A conflict between two resources is found once per GPU they share: say it once.
    std::vector<std::string> once;
    for (const std::string& e : errors) {
      if (std::find(once.begin(), once.end(), e) == once.end()) once.push_back(e);
    }
    return absl::InvalidArgumentError(absl::StrJoin(once, "; "));
  }

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
