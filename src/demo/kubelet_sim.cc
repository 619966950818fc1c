#include "src/demo/kubelet_sim.h"

#include <unistd.h>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "grpcpp/grpcpp.h"

namespace slicer::demo {
namespace {

// Serves `service` on the unix socket `path` (a stale socket there is replaced).
absl::StatusOr<std::unique_ptr<grpc::Server>> ServeUnix(const std::string& path,
                                                        grpc::Service* service) {
  ::unlink(path.c_str());
  grpc::ServerBuilder builder;
  builder.AddListeningPort("unix://" + path, grpc::InsecureServerCredentials());
  builder.RegisterService(service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server) return absl::UnavailableError("cannot serve " + path);
  return server;
}

void StopServing(std::unique_ptr<grpc::Server>& server, const std::string& path) {
  if (server) {
    server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
    server->Wait();
    server.reset();
  }
  ::unlink(path.c_str());
}

}  // namespace

PluginClient::PluginClient(std::string resource, std::string socket_path)
    : resource_(std::move(resource)) {
  channel_ = grpc::CreateChannel("unix://" + socket_path, grpc::InsecureChannelCredentials());
  stub_ = v1beta1::DevicePlugin::NewStub(channel_);
  thread_ = std::thread([this] { Stream(); });
}

PluginClient::~PluginClient() {
  stream_ctx_.TryCancel();
  if (thread_.joinable()) thread_.join();
}

void PluginClient::Stream() {
  v1beta1::Empty empty;
  auto reader = stub_->ListAndWatch(&stream_ctx_, empty);
  v1beta1::ListAndWatchResponse resp;
  while (reader->Read(&resp)) {
    std::lock_guard<std::mutex> lock(mu_);
    devices_ = resp;
    ++updates_;
    cv_.notify_all();
  }
  reader->Finish();
  std::lock_guard<std::mutex> lock(mu_);
  open_ = false;
  cv_.notify_all();
}

bool PluginClient::WaitFor(const std::function<bool(const v1beta1::ListAndWatchResponse&)>& pred,
                           std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, timeout, [&] { return updates_ > 0 && pred(devices_); });
}

v1beta1::ListAndWatchResponse PluginClient::Devices() const {
  std::lock_guard<std::mutex> lock(mu_);
  return devices_;
}

int PluginClient::Healthy() const {
  std::lock_guard<std::mutex> lock(mu_);
  int n = 0;
  for (const auto& d : devices_.devices()) n += d.health() == "Healthy";
  return n;
}

int PluginClient::updates() const {
  std::lock_guard<std::mutex> lock(mu_);
  return updates_;
}

bool PluginClient::stream_open() const {
  std::lock_guard<std::mutex> lock(mu_);
  return open_;
}

grpc::Status PluginClient::Options(v1beta1::DevicePluginOptions* out) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  v1beta1::Empty empty;
  return stub_->GetDevicePluginOptions(&ctx, empty, out);
}

grpc::Status PluginClient::Preferred(const std::vector<std::string>& available,
                                     const std::vector<std::string>& must, int size,
                                     std::vector<std::string>* chosen) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  v1beta1::PreferredAllocationRequest req;
  auto* c = req.add_container_requests();
  for (const auto& id : available) c->add_available_deviceids(id);
  for (const auto& id : must) c->add_must_include_deviceids(id);
  c->set_allocation_size(size);
  v1beta1::PreferredAllocationResponse resp;
  grpc::Status s = stub_->GetPreferredAllocation(&ctx, req, &resp);
  if (s.ok() && resp.container_responses_size() == 1) {
    chosen->assign(resp.container_responses(0).deviceids().begin(),
                   resp.container_responses(0).deviceids().end());
  }
  return s;
}

grpc::Status PluginClient::Allocate(const std::vector<std::vector<std::string>>& containers,
                                    v1beta1::AllocateResponse* out) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  v1beta1::AllocateRequest req;
  for (const auto& ids : containers) {
    auto* c = req.add_container_requests();
    for (const auto& id : ids) c->add_devices_ids(id);
  }
  return stub_->Allocate(&ctx, req, out);
}

KubeletSim::KubeletSim(std::string socket_path) : socket_path_(std::move(socket_path)) {}

KubeletSim::~KubeletSim() { Stop(); }

absl::Status KubeletSim::Start() {
  auto server = ServeUnix(socket_path_, this);
  if (!server.ok()) return server.status();
  server_ = std::move(*server);
  return absl::OkStatus();
}

void KubeletSim::Stop() {
  StopServing(server_, socket_path_);
  std::lock_guard<std::mutex> lock(mu_);
  clients_.clear();
}

grpc::Status KubeletSim::Register(grpc::ServerContext*, const v1beta1::RegisterRequest* req,
                                  v1beta1::Empty*) {
  if (req->version() != "v1beta1") {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "unsupported API version " + req->version());
  }
  std::string dir = socket_path_.substr(0, socket_path_.rfind('/'));
  auto client = std::make_shared<PluginClient>(req->resource_name(), dir + "/" + req->endpoint());
  std::lock_guard<std::mutex> lock(mu_);
  // A new registration replaces the old endpoint, as the kubelet does.
  clients_[req->resource_name()] = client;
  ++count_[req->resource_name()];
  cv_.notify_all();
  return grpc::Status::OK;
}

std::shared_ptr<PluginClient> KubeletSim::WaitForRegistration(const std::string& resource, int n,
                                                              std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  if (!cv_.wait_for(lock, timeout, [&] { return count_[resource] >= n; })) return nullptr;
  return clients_[resource];
}

int KubeletSim::Registrations(const std::string& resource) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = count_.find(resource);
  return it == count_.end() ? 0 : it->second;
}

std::vector<std::string> KubeletSim::Resources() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::string> out;
  for (const auto& [name, _] : clients_) out.push_back(name);
  return out;
}

PodResourcesSim::PodResourcesSim(std::string socket_path) : socket_path_(std::move(socket_path)) {}

PodResourcesSim::~PodResourcesSim() { Stop(); }

absl::Status PodResourcesSim::Start() {
  auto server = ServeUnix(socket_path_, this);
  if (!server.ok()) return server.status();
  server_ = std::move(*server);
  return absl::OkStatus();
}

void PodResourcesSim::Stop() { StopServing(server_, socket_path_); }

void PodResourcesSim::Assign(const std::string& ns, const std::string& pod,
                             const std::string& container, const std::string& resource,
                             const std::vector<std::string>& device_ids) {
  std::lock_guard<std::mutex> lock(mu_);
  v1::PodResources* p = nullptr;
  for (auto& candidate : *pods_.mutable_pod_resources()) {
    if (candidate.namespace_() == ns && candidate.name() == pod) p = &candidate;
  }
  if (p == nullptr) {
    p = pods_.add_pod_resources();
    p->set_name(pod);
    p->set_namespace_(ns);
  }
  v1::ContainerResources* c = nullptr;
  for (auto& candidate : *p->mutable_containers()) {
    if (candidate.name() == container) c = &candidate;
  }
  if (c == nullptr) {
    c = p->add_containers();
    c->set_name(container);
  }
  v1::ContainerDevices* d = c->add_devices();
  d->set_resource_name(resource);
  for (const std::string& id : device_ids) d->add_device_ids(id);
}

grpc::Status PodResourcesSim::List(grpc::ServerContext*, const v1::ListPodResourcesRequest*,
                                   v1::ListPodResourcesResponse* out) {
  std::lock_guard<std::mutex> lock(mu_);
  *out = pods_;
  return grpc::Status::OK;
}

}  // namespace slicer::demo
