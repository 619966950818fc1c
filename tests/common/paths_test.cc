#include "src/common/paths.h"

#include <gtest/gtest.h>

namespace slicer {
namespace {

TEST(Paths, DirnameAndBasename) {
  EXPECT_EQ(Dirname("/var/lib/kubelet/device-plugins/kubelet.sock"), "/var/lib/kubelet/device-plugins");
  EXPECT_EQ(Basename("/var/lib/kubelet/device-plugins/kubelet.sock"), "kubelet.sock");
  EXPECT_EQ(Dirname("kubelet.sock"), ".");
  EXPECT_EQ(Basename("kubelet.sock"), "kubelet.sock");
  EXPECT_EQ(Dirname("/x"), "");
  EXPECT_EQ(Basename("dir/"), "");
}

}  // namespace
}  // namespace slicer
