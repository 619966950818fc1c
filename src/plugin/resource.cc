#include "src/plugin/resource.h"

namespace slicer::plugin {

Resource MakeResource(std::string name, int replicas, std::vector<Gpu> gpus) {
  Resource r;
  r.name = std::move(name);
  r.replicas = replicas < 1 ? 1 : replicas;
  r.gpus = std::move(gpus);
  for (size_t g = 0; g < r.gpus.size(); ++g) {
    for (int n = 0; n < r.replicas; ++n) {
      Replica rep;
      rep.gpu = g;
      rep.number = n;
      rep.id = r.replicas == 1 ? r.gpus[g].uuid : r.gpus[g].uuid + "::" + std::to_string(n);
      r.devices.push_back(std::move(rep));
    }
  }
  return r;
}

std::optional<size_t> Resource::GpuOf(std::string_view replica_id) const {
  // Replica IDs are few (GPUs x replicas, at most a few thousand): a scan is cheap and keeps
  // this a plain value type.
  for (const Replica& r : devices) {
    if (r.id == replica_id) return r.gpu;
  }
  return std::nullopt;
}

std::string_view StripReplicaSuffix(std::string_view id) {
  size_t pos = id.find("::");
  return pos == std::string_view::npos ? id : id.substr(0, pos);
}

std::string SocketName(std::string_view resource_name) {
  std::string s = "gpu-slicer-";
  for (char c : resource_name) s.push_back(c == '/' ? '-' : c);
  s += ".sock";
  return s;
}

}  // namespace slicer::plugin
