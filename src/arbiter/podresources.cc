#include "src/arbiter/podresources.h"

#include <curl/curl.h>
#include <grpcpp/grpcpp.h>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "podresources_v1.grpc.pb.h"
#include "src/common/log.h"

namespace slicer::arbiter {
namespace {

size_t AppendBody(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

absl::StatusOr<std::string> HttpGet(const k8s::ApiServer& server, const std::string& url) {
  static const bool init = [] { return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK; }();
  (void)init;
  CURL* curl = curl_easy_init();
  if (curl == nullptr) return absl::InternalError("curl_easy_init failed");
  curl_slist* headers = curl_slist_append(nullptr, "Accept: application/json");
  if (!server.token.empty()) {
    headers = curl_slist_append(headers, ("Authorization: Bearer " + server.token).c_str());
  }
  std::string body;
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, 2L);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT, 5L);
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  if (!server.ca_file.empty()) curl_easy_setopt(curl, CURLOPT_CAINFO, server.ca_file.c_str());
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, AppendBody);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
  CURLcode rc = curl_easy_perform(curl);
  long code = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
  curl_slist_free_all(headers);
  curl_easy_cleanup(curl);
  if (rc != CURLE_OK) {
    return absl::UnavailableError(absl::StrCat("GET ", url, ": ", curl_easy_strerror(rc)));
  }
  if (code != 200) {
    return absl::UnavailableError(
        absl::StrCat("GET ", url, ": HTTP ", code, ": ", body.substr(0, 200)));
  }
  return body;
}

PodMeta MetaOf(const nlohmann::json& pod) {
  PodMeta m;
  const nlohmann::json& md = pod.value("metadata", nlohmann::json::object());
  m.uid = md.value("uid", "");
  std::string name = md.value("namespace", "") + "/" + md.value("name", "");
  const nlohmann::json& ann = md.value("annotations", nlohmann::json::object());
  if (!ann.is_object()) return m;
  if (auto it = ann.find(kWeightAnnotation); it != ann.end() && it->is_string()) {
    std::string v = it->get<std::string>();
    char* end = nullptr;
    double w = std::strtod(v.c_str(), &end);
    if (end != v.c_str() && *end == '\0' && w > 0 && w < 1e6) {
      m.weight = w;
    } else {
      SLOG(kWarning, "annotation_ignored")
          .Kv("pod", name)
          .Kv("annotation", kWeightAnnotation)
          .Kv("value", v)
          .Kv("want", "a positive number, e.g. \"2\" or \"0.5\"");
    }
  }
  if (auto it = ann.find(kPriorityAnnotation); it != ann.end() && it->is_string()) {
    auto p = ParsePriority(it->get<std::string>());
    if (p.ok()) {
      m.priority = *p;
    } else {
      SLOG(kWarning, "annotation_ignored")
          .Kv("pod", name)
          .Kv("annotation", kPriorityAnnotation)
          .Kv("value", it->get<std::string>())
          .Kv("want", "high, normal or low");
    }
  }
  return m;
}

}  // namespace

absl::StatusOr<std::vector<ContainerDevices>> ListPodResources(const std::string& socket_path,
                                                               std::chrono::milliseconds deadline) {
  auto channel =
      grpc::CreateChannel(absl::StrCat("unix://", socket_path), grpc::InsecureChannelCredentials());
  auto stub = v1::PodResourcesLister::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + deadline);
  v1::ListPodResourcesRequest req;
  v1::ListPodResourcesResponse resp;
  grpc::Status s = stub->List(&ctx, req, &resp);
  if (!s.ok()) {
    return absl::UnavailableError(
        absl::StrCat("PodResources List on ", socket_path, ": ", s.error_message()));
  }
  std::vector<ContainerDevices> out;
  for (const v1::PodResources& pod : resp.pod_resources()) {
    for (const v1::ContainerResources& c : pod.containers()) {
      for (const v1::ContainerDevices& d : c.devices()) {
        ContainerDevices cd;
        cd.ref.ns = pod.namespace_();
        cd.ref.pod = pod.name();
        cd.ref.container = c.name();
        cd.resource = d.resource_name();
        cd.device_ids.assign(d.device_ids().begin(), d.device_ids().end());
        out.push_back(std::move(cd));
      }
    }
  }
  return out;
}

absl::StatusOr<PodMeta> PodMetaFromJson(const std::string& pod_json) {
  nlohmann::json j = nlohmann::json::parse(pod_json, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return absl::InvalidArgumentError("not a JSON object");
  return MetaOf(j);
}

absl::StatusOr<std::map<std::pair<std::string, std::string>, PodMeta>> ListNodePods(
    const k8s::ApiServer& server, const std::string& node) {
  auto body = HttpGet(
      server, absl::StrCat(server.url, "/api/v1/pods?fieldSelector=spec.nodeName%3D", node));
  if (!body.ok()) return body.status();
  nlohmann::json j = nlohmann::json::parse(*body, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("items") || !j["items"].is_array()) {
    return absl::InvalidArgumentError("pod list: not a PodList");
  }
  std::map<std::pair<std::string, std::string>, PodMeta> out;
  for (const nlohmann::json& pod : j["items"]) {
    if (!pod.is_object()) continue;
    const nlohmann::json& md = pod.value("metadata", nlohmann::json::object());
    if (!md.is_object()) continue;
    out[{md.value("namespace", ""), md.value("name", "")}] = MetaOf(pod);
  }
  return out;
}

KubeletAttributor::KubeletAttributor(std::string podresources_socket,
                                     std::optional<k8s::ApiServer> api, std::string node,
                                     const Clock& clock, Clock::Duration min_refresh)
    : socket_(std::move(podresources_socket)),
      api_(std::move(api)),
      node_(std::move(node)),
      clock_(clock),
      min_refresh_(min_refresh) {}

absl::Status KubeletAttributor::Refresh() {
  auto list = ListPodResources(socket_, std::chrono::milliseconds(1000));
  if (!list.ok()) return list.status();
  std::map<std::pair<std::string, std::string>, PodMeta> pods;
  if (api_) {
    auto p = ListNodePods(*api_, node_);
    if (p.ok()) {
      pods = std::move(*p);
    } else {
      SLOG(kWarning, "pod_annotations_unavailable").Kv("error", std::string(p.status().message()));
    }
  }
  std::map<std::string, PodRef> owner;
  for (const ContainerDevices& cd : *list) {
    PodRef ref = cd.ref;
    if (auto it = pods.find({ref.ns, ref.pod}); it != pods.end()) {
      ref.uid = it->second.uid;
      ref.weight = it->second.weight;
      ref.priority = it->second.priority;
    }
    for (const std::string& id : cd.device_ids) owner[id] = ref;
  }
  std::lock_guard<std::mutex> lock(mu_);
  owner_ = std::move(owner);
  return absl::OkStatus();
}

std::optional<PodRef> KubeletAttributor::OwnerOf(const std::string& replica_id) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = owner_.find(replica_id);
    if (it != owner_.end()) return it->second;
    Clock::TimePoint now = clock_.Now();
    if (refreshed_at_ && now - *refreshed_at_ < min_refresh_) return std::nullopt;
    refreshed_at_ = now;
  }
  absl::Status s = Refresh();
  if (!s.ok()) SLOG(kWarning, "pod_resources_unavailable").Kv("error", std::string(s.message()));
  std::lock_guard<std::mutex> lock(mu_);
  auto it = owner_.find(replica_id);
  if (it == owner_.end()) return std::nullopt;
  return it->second;
}

}  // namespace slicer::arbiter
