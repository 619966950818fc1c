// The kubelet-facing gRPC server of one advertised resource: DevicePlugin service on its own
// unix socket, registration with the kubelet, and health updates pushed to ListAndWatch streams.
//
// Thread-safety: RPC handlers run on gRPC's threads; SetGpuHealth may be called from any thread;
// Start/Stop/Register from the owner's thread.
#ifndef SLICER_PLUGIN_RESOURCE_SERVER_H_
#define SLICER_PLUGIN_RESOURCE_SERVER_H_

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <set>
#include <string>

#include "absl/status/status.h"
#include "deviceplugin_v1beta1.grpc.pb.h"
#include "src/plugin/allocate.h"
#include "src/plugin/resource.h"

namespace slicer::plugin {

// Counters a caller (metrics, tests, the demo) may read.
struct ServerStats {
  std::atomic<uint64_t> allocations{0};
  std::atomic<uint64_t> allocation_errors{0};
};

class ResourceServer final : public v1beta1::DevicePlugin::Service {
 public:
  ResourceServer(Resource resource, AllocateOptions options, AllocationPolicy policy,
                 std::string socket_dir);
  ~ResourceServer() override;
  ResourceServer(const ResourceServer&) = delete;
  ResourceServer& operator=(const ResourceServer&) = delete;

  // Removes a stale socket file and serves on <socket_dir>/<SocketName(resource)>.
  absl::Status Start();
  // Ends every ListAndWatch stream, stops serving and removes the socket file. Idempotent.
  void Stop();
  // Registers with the kubelet's Registration service at `kubelet_socket`.
  absl::Status Register(const std::string& kubelet_socket);

  // Marks every replica of the GPU `uuid` healthy or not and pushes the new list to the
  // kubelet. Unknown UUIDs are ignored (the GPU may belong to another resource).
  void SetGpuHealth(const std::string& uuid, bool healthy);

  const std::string& socket_path() const { return socket_path_; }
  const Resource& resource() const { return resource_; }
  const ServerStats& stats() const { return stats_; }
  // The current device list as ListAndWatch sends it.
  v1beta1::ListAndWatchResponse DeviceList() const;

  grpc::Status GetDevicePluginOptions(grpc::ServerContext*, const v1beta1::Empty*,
                                      v1beta1::DevicePluginOptions* out) override;
  grpc::Status ListAndWatch(grpc::ServerContext* ctx, const v1beta1::Empty*,
                            grpc::ServerWriter<v1beta1::ListAndWatchResponse>* writer) override;
  grpc::Status GetPreferredAllocation(grpc::ServerContext*,
                                      const v1beta1::PreferredAllocationRequest* req,
                                      v1beta1::PreferredAllocationResponse* out) override;
  grpc::Status Allocate(grpc::ServerContext*, const v1beta1::AllocateRequest* req,
                        v1beta1::AllocateResponse* out) override;
  grpc::Status PreStartContainer(grpc::ServerContext*, const v1beta1::PreStartContainerRequest*,
                                 v1beta1::PreStartContainerResponse*) override;

 private:
  const Resource resource_;
  const AllocateOptions options_;
  const AllocationPolicy policy_;
  const std::string socket_path_;

  mutable std::mutex mu_;
  std::condition_variable changed_;
  std::set<std::string> unhealthy_gpus_;  // guarded by mu_
  uint64_t generation_ = 0;               // guarded by mu_; bumped on every health change
  bool stopping_ = false;                 // guarded by mu_

  std::unique_ptr<grpc::Server> server_;
  ServerStats stats_;
};

}  // namespace slicer::plugin

#endif  // SLICER_PLUGIN_RESOURCE_SERVER_H_
