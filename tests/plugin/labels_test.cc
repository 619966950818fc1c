#include "src/plugin/labels.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

namespace slicer::plugin {
namespace {

Resource R(const std::string& name, int replicas, std::vector<int> idx) {
  std::vector<Gpu> gpus;
  for (int i : idx) {
    Gpu g;
    g.uuid = "GPU-" + std::to_string(i);
    g.index = i;
    g.name = "Tesla T4";
    g.memory_bytes = 15360ull << 20;
    gpus.push_back(g);
  }
  return MakeResource(name, replicas, gpus);
}

TEST(Labels, SharedNode) {
  auto l = NodeLabels({R("nvidia.com/gpu", 4, {0, 1, 2, 3})}, {"580.159.04", 13000, 7, 5});
  EXPECT_EQ(l["nvidia.com/gpu.count"], "4");
  EXPECT_EQ(l["nvidia.com/gpu.product"], "Tesla-T4-SHARED");
  EXPECT_EQ(l["nvidia.com/gpu.replicas"], "4");
  EXPECT_EQ(l["nvidia.com/gpu.sharing-strategy"], "time-slicing");
  EXPECT_EQ(l["nvidia.com/gpu.memory"], "15360");
  EXPECT_EQ(l["nvidia.com/gpu.compute.major"], "7");
  EXPECT_EQ(l["nvidia.com/cuda.driver.major"], "580");
  EXPECT_EQ(l["nvidia.com/cuda.driver.rev"], "04");
  EXPECT_EQ(l["nvidia.com/cuda.runtime-version.major"], "13");
}

TEST(Labels, MixedNodeCountsPhysicalGpusOnce) {
  auto l = NodeLabels({R("nvidia.com/gpu.shared", 4, {0}), R("nvidia.com/gpu", 1, {1, 2, 3})}, {});
  EXPECT_EQ(l["nvidia.com/gpu.count"], "4");
  EXPECT_EQ(l["nvidia.com/gpu.replicas"], "4");
}

TEST(Labels, UnsharedNode) {
  auto l = NodeLabels({R("nvidia.com/gpu", 1, {0, 1})}, {});
  EXPECT_EQ(l["nvidia.com/gpu.product"], "Tesla-T4");
  EXPECT_EQ(l["nvidia.com/gpu.sharing-strategy"], "none");
}

TEST(Labels, MpsNodeSaysMpsAndIsMpsCapable) {
  Resource r = R("nvidia.com/gpu", 4, {0, 1});
  r.mps = true;
  auto l = NodeLabels({r}, {});
  EXPECT_EQ(l["nvidia.com/gpu.sharing-strategy"], "mps");
  EXPECT_EQ(l["nvidia.com/mps.capable"], "true");
  EXPECT_EQ(l["nvidia.com/gpu.product"], "Tesla-T4-SHARED");
  EXPECT_EQ(l["nvidia.com/gpu.replicas"], "4");
  auto ts = NodeLabels({R("nvidia.com/gpu", 4, {0})}, {});
  EXPECT_EQ(ts["nvidia.com/mps.capable"], "false");
}

TEST(Labels, FeatureFileIsWrittenWhole) {
  std::string path = ::testing::TempDir() + "/features-" + std::to_string(getpid());
  ASSERT_TRUE(WriteFeatureFile(path, {{"a", "1"}, {"b", "2"}}).ok());
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  EXPECT_EQ(ss.str(), "a=1\nb=2\n");
  EXPECT_FALSE(WriteFeatureFile("/nonexistent-dir/x", {{"a", "1"}}).ok());
}

}  // namespace
}  // namespace slicer::plugin
