// The kubelet's side of the device-plugin protocol, for the demo and the integration tests:
// a Registration server on a kubelet.sock, and a client for each registered plugin that keeps a
// ListAndWatch stream open and calls GetPreferredAllocation / Allocate the way the kubelet does.
// (The real kubelet's own code drives the plugin in tests/conformance.)
//
// Thread-safety: all methods may be called from any thread.
#ifndef SLICER_DEMO_KUBELET_SIM_H_
#define SLICER_DEMO_KUBELET_SIM_H_

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "deviceplugin_v1beta1.grpc.pb.h"
#include "podresources_v1.grpc.pb.h"

namespace slicer::demo {

// One registered resource, as the kubelet sees it.
class PluginClient {
 public:
  PluginClient(std::string resource, std::string socket_path);
  ~PluginClient();

  const std::string& resource() const { return resource_; }
  // Waits until the streamed device list satisfies `pred` (checked on every update).
  bool WaitFor(const std::function<bool(const v1beta1::ListAndWatchResponse&)>& pred,
               std::chrono::milliseconds timeout);
  v1beta1::ListAndWatchResponse Devices() const;
  int Healthy() const;  // healthy devices in the latest list (the node's allocatable)
  int updates() const;
  bool stream_open() const;

  grpc::Status Options(v1beta1::DevicePluginOptions* out);
  grpc::Status Preferred(const std::vector<std::string>& available,
                         const std::vector<std::string>& must, int size,
                         std::vector<std::string>* chosen);
  grpc::Status Allocate(const std::vector<std::vector<std::string>>& containers,
                        v1beta1::AllocateResponse* out);

 private:
  void Stream();

  const std::string resource_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1beta1::DevicePlugin::Stub> stub_;
  grpc::ClientContext stream_ctx_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  v1beta1::ListAndWatchResponse devices_;
  int updates_ = 0;
  bool open_ = true;
  std::thread thread_;
};

class KubeletSim final : public v1beta1::Registration::Service {
 public:
  explicit KubeletSim(std::string socket_path);
  ~KubeletSim() override;

  absl::Status Start();
  // Stops serving and removes kubelet.sock (a kubelet going away).
  void Stop();

  // Waits for the n-th registration of `resource` (n counts from 1 over this sim's life) and
  // returns a client connected to its endpoint.
  std::shared_ptr<PluginClient> WaitForRegistration(const std::string& resource, int n,
                                                    std::chrono::milliseconds timeout);
  int Registrations(const std::string& resource) const;
  std::vector<std::string> Resources() const;

  grpc::Status Register(grpc::ServerContext*, const v1beta1::RegisterRequest* req,
                        v1beta1::Empty*) override;

 private:
  const std::string socket_path_;
  std::unique_ptr<grpc::Server> server_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, int> count_;
  std::map<std::string, std::shared_ptr<PluginClient>> clients_;
};

// The kubelet's PodResources API (v1 List): which devices each pod's containers hold, as the
// arbiter reads it to attribute GPU time to pods. Serves what Assign recorded.
class PodResourcesSim final : public v1::PodResourcesLister::Service {
 public:
  explicit PodResourcesSim(std::string socket_path);
  ~PodResourcesSim() override;

  absl::Status Start();
  void Stop();
  // Records that `container` of pod `ns/pod` holds `device_ids` of `resource`.
  void Assign(const std::string& ns, const std::string& pod, const std::string& container,
              const std::string& resource, const std::vector<std::string>& device_ids);

  grpc::Status List(grpc::ServerContext*, const v1::ListPodResourcesRequest*,
                    v1::ListPodResourcesResponse* out) override;

 private:
  const std::string socket_path_;
  std::unique_ptr<grpc::Server> server_;
  std::mutex mu_;
  v1::ListPodResourcesResponse pods_;
};

}  // namespace slicer::demo

#endif  // SLICER_DEMO_KUBELET_SIM_H_
