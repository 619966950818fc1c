// Pod attribution against an in-test kubelet PodResources server (gRPC on a temp unix socket)
// and an in-test API server answering the node's pod list; then the arbiter using it.
#include "src/arbiter/podresources.h"

#include <arpa/inet.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <fstream>
#include <memory>
#include <thread>

#include "podresources_v1.grpc.pb.h"
#include "src/arbiter/server.h"
#include "tests/arbiter/sim_clock.h"

namespace slicer::arbiter {
namespace {

using namespace std::chrono_literals;

constexpr char kGpu[] = "GPU-11111111-1111-1111-1111-111111111111";
constexpr char kPodUid[] = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";

class FakeKubelet final : public v1::PodResourcesLister::Service {
 public:
  grpc::Status List(grpc::ServerContext*, const v1::ListPodResourcesRequest*,
                    v1::ListPodResourcesResponse* resp) override {
    ++lists;
    std::lock_guard<std::mutex> lock(mu);
    *resp = response;
    return grpc::Status::OK;
  }
  void Add(const std::string& ns, const std::string& pod, const std::string& container,
           std::vector<std::string> ids) {
    std::lock_guard<std::mutex> lock(mu);
    v1::PodResources* p = response.add_pod_resources();
    p->set_namespace_(ns);
    p->set_name(pod);
    v1::ContainerResources* c = p->add_containers();
    c->set_name(container);
    v1::ContainerDevices* d = c->add_devices();
    d->set_resource_name("nvidia.com/gpu");
    for (const auto& id : ids) d->add_device_ids(id);
  }
  std::mutex mu;
  v1::ListPodResourcesResponse response;
  std::atomic<int> lists{0};
};

// Answers every HTTP request with one JSON body.
class FakePods {
 public:
  explicit FakePods(std::string body) : body_(std::move(body)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    ::listen(fd_, 8);
    socklen_t len = sizeof addr;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] {
      for (;;) {
        int c = ::accept(fd_, nullptr, nullptr);
        if (c < 0) return;
        char buf[4096];
        ssize_t n = ::recv(c, buf, sizeof buf, 0);
        if (n > 0) path_ = std::string(buf, static_cast<size_t>(n)).substr(0, 200);
        std::string resp = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
                           std::to_string(body_.size()) + "\r\nConnection: close\r\n\r\n" + body_;
        ssize_t w = ::send(c, resp.data(), resp.size(), MSG_NOSIGNAL);
        (void)w;
        ::close(c);
      }
    });
  }
  ~FakePods() {
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    thread_.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  std::string request() const { return path_; }

 private:
  std::string body_;
  int fd_;
  int port_;
  std::string path_;
  std::thread thread_;
};

class PodResourcesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/podres_test.XXXXXX";
    dir_ = mkdtemp(tmpl);
    kubelet_socket_ = dir_ + "/kubelet.sock";
    grpc::ServerBuilder b;
    b.AddListeningPort("unix://" + kubelet_socket_, grpc::InsecureServerCredentials());
    b.RegisterService(&kubelet_);
    grpc_ = b.BuildAndStart();
    ASSERT_NE(grpc_, nullptr);
    kubelet_.Add("team-a", "trainer", "main",
                 {std::string(kGpu) + "::0", std::string(kGpu) + "::1"});
    kubelet_.Add("team-b", "server", "web", {std::string(kGpu) + "::2"});
  }
  void TearDown() override {
    grpc_->Shutdown();
    int rc = std::system(("rm -rf " + dir_).c_str());
    (void)rc;
  }
  std::string dir_, kubelet_socket_;
  FakeKubelet kubelet_;
  std::unique_ptr<grpc::Server> grpc_;
};

const char kPodList[] = R"({"kind":"PodList","items":[
  {"metadata":{"namespace":"team-a","name":"trainer","uid":"0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
   "annotations":{"gpu-slicer.io/weight":"3","gpu-slicer.io/priority":"low"}}},
  {"metadata":{"namespace":"team-b","name":"server","uid":"11111111-2222-3333-4444-555555555555",
   "annotations":{"gpu-slicer.io/weight":"lots","gpu-slicer.io/priority":"urgent"}}}]})";

TEST_F(PodResourcesTest, ListMapsReplicaIdsToContainers) {
  auto list = ListPodResources(kubelet_socket_, 2000ms);
  ASSERT_TRUE(list.ok()) << list.status();
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].ref.ns, "team-a");
  EXPECT_EQ((*list)[0].ref.pod, "trainer");
  EXPECT_EQ((*list)[0].ref.container, "main");
  EXPECT_EQ((*list)[0].resource, "nvidia.com/gpu");
  EXPECT_EQ((*list)[0].device_ids.size(), 2u);
}

TEST_F(PodResourcesTest, KubeletDownIsAnError) {
  auto list = ListPodResources(dir_ + "/nobody.sock", 300ms);
  EXPECT_FALSE(list.ok());
}

TEST_F(PodResourcesTest, AnnotationsAreParsedAndBadOnesDropped) {
  FakePods api(kPodList);
  auto pods = ListNodePods(k8s::ApiServer{api.url(), "", ""}, "node-1");
  ASSERT_TRUE(pods.ok()) << pods.status();
  EXPECT_NE(api.request().find("fieldSelector=spec.nodeName%3Dnode-1"), std::string::npos);
  const PodMeta& a = pods->at({"team-a", "trainer"});
  EXPECT_EQ(a.uid, kPodUid);
  EXPECT_EQ(a.weight, 3.0);
  EXPECT_EQ(a.priority, Priority::kLow);
  const PodMeta& b = pods->at({"team-b", "server"});
  EXPECT_FALSE(b.weight.has_value());
  EXPECT_FALSE(b.priority.has_value());
}

TEST_F(PodResourcesTest, AttributorCachesAndRefreshesAtMostOncePerInterval) {
  testing::SimClock clock;
  KubeletAttributor attr(kubelet_socket_, std::nullopt, "node-1", clock, 1s);
  auto owner = attr.OwnerOf(std::string(kGpu) + "::1");
  ASSERT_TRUE(owner.has_value());
  EXPECT_EQ(owner->pod, "trainer");
  int lists = kubelet_.lists;
  EXPECT_FALSE(attr.OwnerOf(std::string(kGpu) + "::9").has_value());  // cached miss: no List
  EXPECT_EQ(kubelet_.lists, lists);
  kubelet_.Add("team-c", "late", "c", {std::string(kGpu) + "::9"});
  clock.Advance(1s);
  owner = attr.OwnerOf(std::string(kGpu) + "::9");
  ASSERT_TRUE(owner.has_value());
  EXPECT_EQ(owner->ns, "team-c");
}

// The arbiter with attribution: claims are checked against the kubelet's records, the pod
// annotation sets weight and priority, and metrics carry pod labels.
class AttributedServerTest : public PodResourcesTest {
 protected:
  void StartServer(Attributor* attr, const std::string& cgroup) {
    proc_ = dir_ + "/proc";
    std::string pid_dir = proc_ + "/" + std::to_string(getpid());
    std::system(("mkdir -p " + pid_dir).c_str());
    std::ofstream(pid_dir + "/cgroup") << cgroup << "\n";
    ServerOptions o;
    o.socket_path = dir_ + "/arbiter.sock";
    o.proc_root = proc_;
    o.trust_claims = false;
    server_ = std::make_unique<Server>(o, RealClock(), attr);
    ASSERT_TRUE(server_->Start().ok());
    thread_ = std::thread([this] { server_->Run(); });
  }
  void TearDown() override {
    if (server_) {
      server_->Stop();
      thread_.join();
    }
    PodResourcesTest::TearDown();
  }
  // HELLO with these replicas (and a weight claim that must be ignored); returns the reply type
  // and, for an ERROR, its text.
  int Hello(const std::string& replicas, std::string* error, int* fd_out = nullptr) {
    int fd = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strcpy(addr.sun_path, (dir_ + "/arbiter.sock").c_str());
    EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    timeval tv{3, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    slicer_arb_hello_msg h{};
    slicer_arb_init(&h.h, SLICER_ARB_HELLO, 1);
    h.weight_milli = 100000;
    std::snprintf(h.replicas, sizeof h.replicas, "%s", replicas.c_str());
    ::send(fd, &h, sizeof h, MSG_NOSIGNAL);
    char buf[SLICER_ARB_MAX_MSG];
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    int type = 0;
    if (n > 0) {
      slicer_arb_hdr hdr;
      std::memcpy(&hdr, buf, sizeof hdr);
      type = hdr.type;
      if (type == SLICER_ARB_ERROR) {
        slicer_arb_err_msg e;
        std::memcpy(&e, buf, sizeof e);
        *error = e.text;
      }
    }
    if (fd_out != nullptr && type == SLICER_ARB_WELCOME) {
      *fd_out = fd;
    } else {
      ::close(fd);
    }
    return type;
  }
  std::string proc_;
  std::unique_ptr<Server> server_;
  std::thread thread_;
};

TEST_F(AttributedServerTest, ClaimsAreCheckedAgainstTheKubelet) {
  FakePods api(kPodList);
  KubeletAttributor attr(kubelet_socket_, k8s::ApiServer{api.url(), "", ""}, "node-1", RealClock(),
                         0s);
  StartServer(&attr,
              "0::/kubepods.slice/kubepods-burstable-pod0f1e2d3c_4b5a_6978_8796_a5b4c3d2e1f0.slice/"
              "cri-containerd-abc.scope");
  std::string err;
  const std::string r0 = std::string(kGpu) + "::0", r1 = std::string(kGpu) + "::1",
                    r2 = std::string(kGpu) + "::2";
  // "::<n>" continues the GPU named before it; with none before it, it is malformed.
  EXPECT_EQ(Hello("::7," + r0, &err), SLICER_ARB_ERROR);
  EXPECT_NE(err.find("is not <GPU-UUID>::<n>"), std::string::npos) << err;
  EXPECT_EQ(Hello(r0 + ",::7", &err), SLICER_ARB_ERROR);
  EXPECT_NE(err.find("replica " + std::string(kGpu) + "::7 is not allocated"), std::string::npos)
      << err;
  EXPECT_EQ(Hello(std::string(kGpu) + "::42", &err), SLICER_ARB_ERROR);
  EXPECT_NE(err.find("not allocated to any container"), std::string::npos) << err;
  EXPECT_EQ(Hello(r0 + "," + r2, &err), SLICER_ARB_ERROR);
  EXPECT_NE(err.find("different containers"), std::string::npos) << err;
  // team-b/server's replica from a cgroup of team-a/trainer's pod UID.
  EXPECT_EQ(Hello(r2, &err), SLICER_ARB_ERROR);
  EXPECT_NE(err.find("but the client runs in pod UID"), std::string::npos) << err;

  int fd = -1;
  ASSERT_EQ(Hello(r0 + "," + r1, &err, &fd), SLICER_ARB_WELCOME) << err;
  slicer_arb_attach_msg at{};
  slicer_arb_init(&at.h, SLICER_ARB_ATTACH, 2);
  std::strcpy(at.uuid, kGpu);
  ::send(fd, &at, sizeof at, MSG_NOSIGNAL);
  slicer_arb_usage_msg r{};
  slicer_arb_init(&r.h, SLICER_ARB_REPORT, 3);
  r.mem_used = 4096;
  ::send(fd, &r, sizeof r, MSG_NOSIGNAL);
  std::string m;
  for (int i = 0; i < 200; ++i) {
    m = server_->RenderMetrics();
    if (m.find("memory_used_bytes{namespace=\"team-a\"") != std::string::npos) break;
    std::this_thread::sleep_for(5ms);
  }
  std::string labels =
      std::string("{namespace=\"team-a\",pod=\"trainer\",container=\"main\",gpu=\"") + kGpu + "\"}";
  EXPECT_NE(m.find("slicer_arbiter_memory_used_bytes" + labels + " 4096"), std::string::npos) << m;
  // The annotation (3) wins over the replica count (2) and the client's claim (100): trust off.
  EXPECT_NE(m.find("slicer_arbiter_weight" + labels + " 3\n"), std::string::npos) << m;
  ::close(fd);
}

TEST_F(AttributedServerTest, WeightIsTheReplicaCountWithoutAnnotation) {
  KubeletAttributor attr(kubelet_socket_, std::nullopt, "node-1", RealClock(), 0s);
  StartServer(&attr, "0::/kubepods/pod0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0/ctr");
  std::string err;
  int fd = -1;
  // The plugin's compact form: the second replica without its UUID.
  ASSERT_EQ(Hello(std::string(kGpu) + "::0,::1", &err, &fd), SLICER_ARB_WELCOME) << err;
  slicer_arb_attach_msg at{};
  slicer_arb_init(&at.h, SLICER_ARB_ATTACH, 2);
  std::strcpy(at.uuid, kGpu);
  ::send(fd, &at, sizeof at, MSG_NOSIGNAL);
  std::string m;
  for (int i = 0; i < 200; ++i) {
    m = server_->RenderMetrics();
    if (m.find("slicer_arbiter_weight{") != std::string::npos) break;
    std::this_thread::sleep_for(5ms);
  }
  EXPECT_NE(m.find("slicer_arbiter_weight{namespace=\"team-a\",pod=\"trainer\",container=\"main\""
                   ",gpu=\"" +
                   std::string(kGpu) + "\"} 2\n"),
            std::string::npos)
      << m;
  ::close(fd);
}

TEST(PodUidTest, FromCgroupPaths) {
  EXPECT_EQ(PodUidFromCgroup("0::/kubepods.slice/kubepods-besteffort.slice/"
                             "kubepods-besteffort-pod0f1e2d3c_4b5a_6978_8796_a5b4c3d2e1f0.slice/x"),
            kPodUid);
  EXPECT_EQ(PodUidFromCgroup("0::/kubepods/burstable/pod0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0/abc"),
            kPodUid);
  EXPECT_EQ(PodUidFromCgroup("0::/user.slice/user-1000.slice/session-2.scope"), "");
}

}  // namespace
}  // namespace slicer::arbiter
