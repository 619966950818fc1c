#include "src/k8s/api_client.h"

#include <gtest/gtest.h>
#include <poll.h>

#include <filesystem>
#include <fstream>

#include "tests/k8s/fake_apiserver.h"

namespace slicer::k8s {
namespace {

bool WaitReadable(int fd, int ms) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, ms) == 1;
}

TEST(InClusterApiServer, FromEnvironmentAndServiceAccount) {
  std::string dir = ::testing::TempDir() + "/sa-" + std::to_string(getpid());
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/token") << "s3cret\n";
  std::ofstream(dir + "/ca.crt") << "pem";
  setenv("KUBERNETES_SERVICE_HOST", "10.100.0.1", 1);
  setenv("KUBERNETES_SERVICE_PORT", "443", 1);
  auto s = InClusterApiServer("", dir);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->url, "https://10.100.0.1:443");
  EXPECT_EQ(s->token, "s3cret");
  EXPECT_EQ(s->ca_file, dir + "/ca.crt");
  unsetenv("KUBERNETES_SERVICE_HOST");
  EXPECT_FALSE(InClusterApiServer("", dir).ok());
  EXPECT_EQ(InClusterApiServer("http://127.0.0.1:1/", dir)->url, "http://127.0.0.1:1");
}

TEST(GetNode, ReadsLabelsAndSendsToken) {
  testing::FakeApiServer api;
  api.SetLabel("nvidia.com/device-plugin.config", "t4-shared");
  auto n = GetNode({api.url(), "tok", ""}, "node-a");
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(n->labels.at("nvidia.com/device-plugin.config"), "t4-shared");
  EXPECT_EQ(api.last_authorization(), "Bearer tok");
  EXPECT_FALSE(GetNode({api.url(), "", ""}, "node-b").ok());
  EXPECT_FALSE(GetNode({"http://127.0.0.1:1", "", ""}, "node-a").ok());
}

TEST(NodeLabelWatcher, FollowsChangesAndIgnoresGarbage) {
  testing::FakeApiServer api;
  api.SetLabel("nvidia.com/device-plugin.config", "a");
  NodeLabelWatcher w({api.url(), "", ""}, "node-a", "nvidia.com/device-plugin.config");
  ASSERT_TRUE(w.Start().ok());
  EXPECT_EQ(w.Value(), "a");
  EXPECT_FALSE(w.TakeChange());
  for (int i = 0; i < 100 && api.watches() == 0; ++i) usleep(20000);
  api.SendGarbage("{not json");
  api.SendGarbage("{\"type\":\"MODIFIED\",\"object\":42}");
  api.SetLabel("other", "x");  // a change of another label is not a change
  api.SetLabel("nvidia.com/device-plugin.config", "b");
  ASSERT_TRUE(WaitReadable(w.fd(), 5000));
  EXPECT_TRUE(w.TakeChange());
  for (int i = 0; i < 250 && w.Value() != "b"; ++i) usleep(20000);
  EXPECT_EQ(w.Value(), "b");
  // Neither garbage event nor the other label's change was reported as a change of ours: the
  // only change after "a" is "b".
  EXPECT_FALSE(w.TakeChange());
  w.Stop();
}

TEST(NodeLabelWatcher, StartFailsButKeepsTrying) {
  NodeLabelWatcher w({"http://127.0.0.1:1", "", ""}, "node-a", "l");
  EXPECT_FALSE(w.Start().ok());
  EXPECT_FALSE(w.Value().has_value());
  w.Stop();  // returns promptly even while backing off
}

}  // namespace
}  // namespace slicer::k8s
