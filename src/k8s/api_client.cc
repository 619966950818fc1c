#include "src/k8s/api_client.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "src/common/log.h"

namespace slicer::k8s {
namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  return s;
}

bool FileExists(const std::string& path) { return ::access(path.c_str(), R_OK) == 0; }

void CurlGlobalInit() {
  static const bool once = [] { return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK; }();
  (void)once;
}

// A curl handle set up for `url` with the server's credentials.
struct Request {
  CURL* curl = nullptr;
  curl_slist* headers = nullptr;
  Request(const ApiServer& server, const std::string& url) {
    CurlGlobalInit();
    curl = curl_easy_init();
    curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, 5L);
    headers = curl_slist_append(headers, "Accept: application/json");
    if (!server.token.empty()) {
      headers = curl_slist_append(headers, ("Authorization: Bearer " + server.token).c_str());
    }
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    if (!server.ca_file.empty()) curl_easy_setopt(curl, CURLOPT_CAINFO, server.ca_file.c_str());
  }
  ~Request() {
    curl_slist_free_all(headers);
    curl_easy_cleanup(curl);
  }
};

size_t AppendBody(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

std::map<std::string, std::string> LabelsOf(const nlohmann::json& node) {
  std::map<std::string, std::string> labels;
  auto meta = node.find("metadata");
  if (meta == node.end() || !meta->is_object()) return labels;
  auto l = meta->find("labels");
  if (l == meta->end() || !l->is_object()) return labels;
  for (auto it = l->begin(); it != l->end(); ++it) {
    if (it.value().is_string()) labels[it.key()] = it.value().get<std::string>();
  }
  return labels;
}

std::string NodeUrl(const ApiServer& server, const std::string& name) {
  return absl::StrCat(server.url, "/api/v1/nodes/", name);
}

}  // namespace

absl::StatusOr<ApiServer> InClusterApiServer(const std::string& override_url,
                                             const std::string& sa_dir) {
  ApiServer s;
  if (!override_url.empty()) {
    s.url = override_url;
  } else {
    const char* host = std::getenv("KUBERNETES_SERVICE_HOST");
    const char* port = std::getenv("KUBERNETES_SERVICE_PORT");
    if (host == nullptr || port == nullptr) {
      return absl::FailedPreconditionError(
          "not in a cluster: KUBERNETES_SERVICE_HOST/PORT are unset (pass --kube-api-server)");
    }
    std::string h = host;
    if (h.find(':') != std::string::npos) h = "[" + h + "]";  // IPv6
    s.url = absl::StrCat("https://", h, ":", port);
  }
  while (!s.url.empty() && s.url.back() == '/') s.url.pop_back();
  if (FileExists(sa_dir + "/token")) s.token = ReadFile(sa_dir + "/token");
  if (FileExists(sa_dir + "/ca.crt")) s.ca_file = sa_dir + "/ca.crt";
  return s;
}

absl::StatusOr<NodeInfo> GetNode(const ApiServer& server, const std::string& name) {
  Request req(server, NodeUrl(server, name));
  std::string body;
  curl_easy_setopt(req.curl, CURLOPT_WRITEFUNCTION, AppendBody);
  curl_easy_setopt(req.curl, CURLOPT_WRITEDATA, &body);
  curl_easy_setopt(req.curl, CURLOPT_TIMEOUT, 10L);
  CURLcode rc = curl_easy_perform(req.curl);
  if (rc != CURLE_OK) {
    return absl::UnavailableError(absl::StrCat("GET node ", name, ": ", curl_easy_strerror(rc)));
  }
  long code = 0;
  curl_easy_getinfo(req.curl, CURLINFO_RESPONSE_CODE, &code);
  if (code != 200) {
    return absl::UnavailableError(
        absl::StrCat("GET node ", name, ": HTTP ", code, ": ", body.substr(0, 200)));
  }
  auto json = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded() || !json.is_object()) {
    return absl::UnavailableError(absl::StrCat("GET node ", name, ": response is not JSON"));
  }
  NodeInfo info;
  info.labels = LabelsOf(json);
  auto meta = json.find("metadata");
  if (meta != json.end() && meta->is_object()) {
    auto rv = meta->find("resourceVersion");
    if (rv != meta->end() && rv->is_string()) info.resource_version = rv->get<std::string>();
  }
  return info;
}

NodeLabelWatcher::NodeLabelWatcher(ApiServer server, std::string node, std::string label)
    : server_(std::move(server)), node_(std::move(node)), label_(std::move(label)) {
  if (::pipe2(pipe_, O_CLOEXEC | O_NONBLOCK) != 0) pipe_[0] = pipe_[1] = -1;
}

NodeLabelWatcher::~NodeLabelWatcher() {
  Stop();
  for (int fd : pipe_) {
    if (fd >= 0) ::close(fd);
  }
}

absl::Status NodeLabelWatcher::Start() {
  auto node = GetNode(server_, node_);
  if (node.ok()) {
    Update(node->labels);
    std::lock_guard<std::mutex> lock(mu_);
    resource_version_ = node->resource_version;
  }
  TakeChange();  // the first value is not a change
  stop_ = false;
  thread_ = std::thread([this] { Run(); });
  return node.ok() ? absl::OkStatus() : node.status();
}

void NodeLabelWatcher::Stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

bool NodeLabelWatcher::TakeChange() {
  char buf[64];
  bool any = false;
  while (::read(pipe_[0], buf, sizeof buf) > 0) any = true;
  return any;
}

std::optional<std::string> NodeLabelWatcher::Value() const {
  std::lock_guard<std::mutex> lock(mu_);
  return value_;
}

void NodeLabelWatcher::Update(const std::map<std::string, std::string>& labels) {
  std::optional<std::string> v;
  if (auto it = labels.find(label_); it != labels.end()) v = it->second;
  bool changed;
  {
    std::lock_guard<std::mutex> lock(mu_);
    changed = v != value_;
    value_ = v;
  }
  if (changed) {
    SLOG(kInfo, "node_label_changed")
        .Kv("node", node_)
        .Kv("label", label_)
        .Kv("value", v.value_or("(none)"));
    char one = 1;
    ssize_t unused = ::write(pipe_[1], &one, 1);
    (void)unused;
  }
}

// Streams watch events until the stream ends, fails, or Stop(). Returns false on failure.
bool NodeLabelWatcher::WatchOnce(const std::string& resource_version) {
  std::string url =
      absl::StrCat(server_.url, "/api/v1/nodes?watch=true&fieldSelector=metadata.name%3D", node_,
                   "&timeoutSeconds=300&allowWatchBookmarks=true");
  if (!resource_version.empty()) absl::StrAppend(&url, "&resourceVersion=", resource_version);
  Request req(server_, url);
  struct State {
    NodeLabelWatcher* self;
    std::string buffer;
  } state{this, ""};
  auto on_data = +[](char* data, size_t size, size_t n, void* p) -> size_t {
    auto* st = static_cast<State*>(p);
    st->buffer.append(data, size * n);
    size_t nl;
    while ((nl = st->buffer.find('\n')) != std::string::npos) {
      std::string line = st->buffer.substr(0, nl);
      st->buffer.erase(0, nl + 1);
      auto ev = nlohmann::json::parse(line, nullptr, false);
      if (ev.is_discarded() || !ev.is_object() || !ev.contains("object")) continue;
      const auto& obj = ev["object"];
      if (!obj.is_object()) continue;  // malformed event: ignore it, never clear the labels
      if (obj.contains("metadata") && obj["metadata"].is_object() &&
          obj["metadata"].contains("resourceVersion") &&
          obj["metadata"]["resourceVersion"].is_string()) {
        std::lock_guard<std::mutex> lock(st->self->mu_);
        st->self->resource_version_ = obj["metadata"]["resourceVersion"].get<std::string>();
      }
      std::string type = ev.value("type", "");
      if (type == "ADDED" || type == "MODIFIED") st->self->Update(LabelsOf(obj));
      if (type == "ERROR") {
        std::lock_guard<std::mutex> lock(st->self->mu_);
        st->self->resource_version_.clear();  // e.g. 410 Gone: start over with a GET
      }
    }
    // Abort the transfer promptly on Stop().
    return st->self->stop_ ? 0 : size * n;
  };
  curl_easy_setopt(req.curl, CURLOPT_WRITEFUNCTION, on_data);
  curl_easy_setopt(req.curl, CURLOPT_WRITEDATA, &state);
  // Idle streams must still notice Stop(): a progress callback runs about once a second.
  curl_easy_setopt(req.curl, CURLOPT_NOPROGRESS, 0L);
  auto on_progress = +[](void* p, curl_off_t, curl_off_t, curl_off_t, curl_off_t) -> int {
    return static_cast<NodeLabelWatcher*>(p)->stop_ ? 1 : 0;
  };
  curl_easy_setopt(req.curl, CURLOPT_XFERINFOFUNCTION, on_progress);
  curl_easy_setopt(req.curl, CURLOPT_XFERINFODATA, this);
  CURLcode rc = curl_easy_perform(req.curl);
  long code = 0;
  curl_easy_getinfo(req.curl, CURLINFO_RESPONSE_CODE, &code);
  if (stop_) return true;
  if (rc != CURLE_OK || code != 200) {
    SLOG(kWarning, "node_watch_failed")
        .Kv("node", node_)
        .Kv("error", rc != CURLE_OK ? curl_easy_strerror(rc) : absl::StrCat("HTTP ", code));
    return false;
  }
  return true;
}

void NodeLabelWatcher::Run() {
  auto backoff = std::chrono::milliseconds(500);
  while (!stop_) {
    std::string rv;
    {
      std::lock_guard<std::mutex> lock(mu_);
      rv = resource_version_;
    }
    if (rv.empty()) {
      auto node = GetNode(server_, node_);
      if (node.ok()) {
        Update(node->labels);
        std::lock_guard<std::mutex> lock(mu_);
        resource_version_ = rv = node->resource_version;
      }
    }
    bool ok = !rv.empty() && WatchOnce(rv);
    if (ok) {
      backoff = std::chrono::milliseconds(500);
      continue;
    }
    for (auto waited = std::chrono::milliseconds(0); waited < backoff && !stop_;
         waited += std::chrono::milliseconds(100)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    backoff = std::min(backoff * 2, std::chrono::milliseconds(30000));
  }
}

}  // namespace slicer::k8s
