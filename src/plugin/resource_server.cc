#include "src/plugin/resource_server.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <random>

#include "absl/strings/str_cat.h"
#include "grpcpp/grpcpp.h"
#include "src/common/paths.h"
#include "src/common/arbiter_protocol.h"
#include "src/common/log.h"

namespace slicer::plugin {
namespace {

constexpr char kApiVersion[] = "v1beta1";
constexpr char kHealthy[] = "Healthy";
constexpr char kUnhealthy[] = "Unhealthy";

// 128 random bits as hex: unique per container for CDI annotation keys and the shim's ledger.
std::string RandomId() {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  char buf[33];
  std::snprintf(buf, sizeof buf, "%016llx%016llx", static_cast<unsigned long long>(rng()),
                static_cast<unsigned long long>(rng()));
  return buf;
}

grpc::Status ToGrpc(const absl::Status& s) {
  grpc::StatusCode code = grpc::StatusCode::INTERNAL;
  switch (s.code()) {
    case absl::StatusCode::kInvalidArgument:
      code = grpc::StatusCode::INVALID_ARGUMENT;
      break;
    case absl::StatusCode::kFailedPrecondition:
      code = grpc::StatusCode::FAILED_PRECONDITION;
      break;
    case absl::StatusCode::kNotFound:
      code = grpc::StatusCode::NOT_FOUND;
      break;
    case absl::StatusCode::kUnavailable:
      code = grpc::StatusCode::UNAVAILABLE;
      break;
    default:
      break;
  }
  return grpc::Status(code, std::string(s.message()));
}

}  // namespace

ResourceServer::ResourceServer(Resource resource, AllocateOptions options, AllocationPolicy policy,
                               std::string socket_dir)
    : resource_(std::move(resource)),
      options_(std::move(options)),
      policy_(policy),
      socket_path_(socket_dir + "/" + SocketName(resource_.name)) {}

ResourceServer::~ResourceServer() { Stop(); }

absl::Status ResourceServer::Start() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = false;
  }
  ::unlink(socket_path_.c_str());
  grpc::ServerBuilder builder;
  builder.AddListeningPort("unix://" + socket_path_, grpc::InsecureServerCredentials());
  builder.RegisterService(this);
  // The kubelet sends small messages; a hostile peer on the socket gets no more than 4 MiB.
  builder.SetMaxReceiveMessageSize(4 << 20);
  server_ = builder.BuildAndStart();
  if (!server_) {
    return absl::UnavailableError(
        absl::StrCat("cannot serve ", resource_.name, " on ", socket_path_));
  }
  SLOG(kInfo, "server_started")
      .Kv("resource", resource_.name)
      .Kv("socket", socket_path_)
      .Kv("devices", resource_.devices.size());
  return absl::OkStatus();
}

void ResourceServer::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!server_) return;
    stopping_ = true;
  }
  changed_.notify_all();
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  server_->Wait();
  server_.reset();
  ::unlink(socket_path_.c_str());
  SLOG(kInfo, "server_stopped").Kv("resource", resource_.name);
}

absl::Status ResourceServer::Register(const std::string& kubelet_socket) {
  if (Dirname(kubelet_socket) != Dirname(socket_path_)) {
    return absl::FailedPreconditionError(absl::StrCat("plugin socket ", socket_path_,
                                                      " is not in the kubelet socket's directory ",
                                                      Dirname(kubelet_socket)));
  }
  auto channel =
      grpc::CreateChannel("unix://" + kubelet_socket, grpc::InsecureChannelCredentials());
  auto stub = v1beta1::Registration::NewStub(channel);
  v1beta1::RegisterRequest req;
  req.set_version(kApiVersion);
  req.set_endpoint(Basename(socket_path_));
  req.set_resource_name(resource_.name);
  req.mutable_options()->set_get_preferred_allocation_available(true);
  req.mutable_options()->set_pre_start_required(false);
  v1beta1::Empty resp;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  grpc::Status s = stub->Register(&ctx, req, &resp);
  if (!s.ok()) {
    return absl::UnavailableError(absl::StrCat("registering ", resource_.name, " with ",
                                               kubelet_socket, ": ", s.error_message()));
  }
  SLOG(kInfo, "registered").Kv("resource", resource_.name).Kv("endpoint", req.endpoint());
  return absl::OkStatus();
}

void ResourceServer::SetGpuHealth(const std::string& uuid, bool healthy) {
  bool mine = false;
  for (const Gpu& g : resource_.gpus) mine |= g.uuid == uuid;
  if (!mine) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    bool changed = healthy ? unhealthy_gpus_.erase(uuid) > 0 : unhealthy_gpus_.insert(uuid).second;
    if (!changed) return;
    ++generation_;
  }
  SLOG(kInfo, "health_changed")
      .Kv("resource", resource_.name)
      .Kv("uuid", uuid)
      .Kv("health", healthy ? kHealthy : kUnhealthy)
      .Kv("replicas", resource_.replicas);
  changed_.notify_all();
}

v1beta1::ListAndWatchResponse ResourceServer::DeviceList() const {
  std::lock_guard<std::mutex> lock(mu_);
  v1beta1::ListAndWatchResponse resp;
  for (const Replica& r : resource_.devices) {
    const Gpu& gpu = resource_.gpus[r.gpu];
    v1beta1::Device* d = resp.add_devices();
    d->set_id(r.id);
    d->set_health(unhealthy_gpus_.count(gpu.uuid) ? kUnhealthy : kHealthy);
    if (gpu.numa_node >= 0) d->mutable_topology()->add_nodes()->set_id(gpu.numa_node);
  }
  return resp;
}

grpc::Status ResourceServer::GetDevicePluginOptions(grpc::ServerContext*, const v1beta1::Empty*,
                                                    v1beta1::DevicePluginOptions* out) {
  out->set_get_preferred_allocation_available(true);
  out->set_pre_start_required(false);
  return grpc::Status::OK;
}

grpc::Status ResourceServer::ListAndWatch(
    grpc::ServerContext* ctx, const v1beta1::Empty*,
    grpc::ServerWriter<v1beta1::ListAndWatchResponse>* writer) {
  uint64_t sent = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    sent = generation_;
  }
  if (!writer->Write(DeviceList())) return grpc::Status::OK;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      // Wake at least every second to notice a client that went away.
      changed_.wait_for(lock, std::chrono::seconds(1),
                        [&] { return stopping_ || generation_ != sent; });
      if (stopping_) return grpc::Status::OK;
      if (generation_ == sent) {
        if (ctx->IsCancelled()) return grpc::Status::CANCELLED;
        continue;
      }
      sent = generation_;
    }
    if (!writer->Write(DeviceList())) return grpc::Status::OK;
  }
}

grpc::Status ResourceServer::GetPreferredAllocation(grpc::ServerContext*,
                                                    const v1beta1::PreferredAllocationRequest* req,
                                                    v1beta1::PreferredAllocationResponse* out) {
  for (const auto& creq : req->container_requests()) {
    std::vector<std::string> available(creq.available_deviceids().begin(),
                                       creq.available_deviceids().end());
    std::vector<std::string> must(creq.must_include_deviceids().begin(),
                                  creq.must_include_deviceids().end());
    auto chosen = PreferredAllocation(resource_, available, must, creq.allocation_size(), policy_);
    if (!chosen.ok()) {
      SLOG(kWarning, "preferred_allocation_rejected")
          .Kv("resource", resource_.name)
          .Kv("error", std::string(chosen.status().message()));
      return ToGrpc(chosen.status());
    }
    auto* cresp = out->add_container_responses();
    for (const std::string& id : *chosen) cresp->add_deviceids(id);
  }
  return grpc::Status::OK;
}

grpc::Status ResourceServer::Allocate(grpc::ServerContext*, const v1beta1::AllocateRequest* req,
                                      v1beta1::AllocateResponse* out) {
  if (req->container_requests().empty()) {
    ++stats_.allocation_errors;
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "allocation request for " + resource_.name + " has no containers");
  }
  // All containers or none: build every answer before returning any.
  v1beta1::AllocateResponse resp;
  for (const auto& creq : req->container_requests()) {
    std::vector<std::string> ids(creq.devices_ids().begin(), creq.devices_ids().end());
    auto c = AllocateContainer(resource_, ids, options_, RandomId());
    if (!c.ok()) {
      ++stats_.allocation_errors;
      SLOG(kWarning, "allocate_rejected")
          .Kv("resource", resource_.name)
          .Kv("error", std::string(c.status().message()));
      return ToGrpc(c.status());
    }
    if (auto it = c->envs().find(SLICER_ENV_REPLICA_IDS); it != c->envs().end()) {
      const size_t listed = std::count(it->second.begin(), it->second.end(), ',') + 1;
      if (listed < ids.size()) {
        SLOG(kWarning, "replica_ids_truncated")
            .Kv("resource", resource_.name)
            .Kv("replicas", ids.size())
            .Kv("listed", listed)
            .Kv("effect", "the arbiter weights this container by the replicas listed");
      }
    }
    *resp.add_container_responses() = std::move(*c);
  }
  ++stats_.allocations;
  SLOG(kInfo, "allocated")
      .Kv("resource", resource_.name)
      .Kv("containers", req->container_requests_size());
  *out = std::move(resp);
  return grpc::Status::OK;
}

grpc::Status ResourceServer::PreStartContainer(grpc::ServerContext*,
                                               const v1beta1::PreStartContainerRequest*,
                                               v1beta1::PreStartContainerResponse*) {
  return grpc::Status::OK;
}

}  // namespace slicer::plugin
