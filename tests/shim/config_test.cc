#include "src/shim/config.h"

#include <gtest/gtest.h>

#include <map>
#include <string>

namespace {

std::map<std::string, std::string>* g_env;
const char* Get(const char* name) {
  auto it = g_env->find(name);
  return it == g_env->end() ? nullptr : it->second.c_str();
}

slicer_config Load(std::map<std::string, std::string> env) {
  g_env = &env;
  slicer_config cfg;
  slicer_config_load(&cfg, Get);
  return cfg;
}

constexpr char kGpu[] = "GPU-11111111-2222-3333-4444-555555555555";

TEST(ShimConfig, NothingSetMeansOff) {
  slicer_config cfg = Load({});
  EXPECT_EQ(cfg.mode, SLICER_MODE_OFF);
  EXPECT_STREQ(cfg.ledger_dir, "/dev/shm");
  EXPECT_STREQ(cfg.container_id, "default");
}

TEST(ShimConfig, LimitsParse) {
  slicer_config cfg = Load({{"SLICER_MEMORY_LIMITS", std::string(kGpu) + "=4026531840,*=1024"},
                            {"SLICER_CONTAINER_ID", "pod-1_c.2"}});
  ASSERT_EQ(cfg.mode, SLICER_MODE_ENFORCE) << cfg.reason;
  uint64_t b = 0;
  ASSERT_EQ(slicer_config_limit(&cfg, kGpu, &b), 0);
  EXPECT_EQ(b, 4026531840u);
  ASSERT_EQ(slicer_config_limit(&cfg, "GPU-other", &b), 0);
  EXPECT_EQ(b, 1024u);
  EXPECT_STREQ(cfg.container_id, "pod-1_c.2");
}

TEST(ShimConfig, UnnamedGpuWithoutStarHasNoLimit) {
  slicer_config cfg = Load({{"SLICER_MEMORY_LIMITS", std::string(kGpu) + "=1"}});
  uint64_t b;
  EXPECT_EQ(slicer_config_limit(&cfg, "GPU-22222222-2222-3333-4444-555555555555", &b), -1);
}

TEST(ShimConfig, EnforceWithoutLimitsFailsClosed) {
  slicer_config cfg = Load({{"SLICER_ENFORCE", "1"}});
  EXPECT_EQ(cfg.mode, SLICER_MODE_DENY);
  EXPECT_NE(std::string(cfg.reason).find("SLICER_MEMORY_LIMITS is not set"), std::string::npos);
}

TEST(ShimConfig, MalformedLimitsFailClosed) {
  for (const char* bad : {"garbage", "GPU-1=", "GPU-1=12x", "*=0", "GPU-zz=5", "*=1,*=2",
                          "*=99999999999999999999", "=5", "*=5,", "GPU-1=-5"}) {
    slicer_config cfg = Load({{"SLICER_MEMORY_LIMITS", bad}});
    EXPECT_EQ(cfg.mode, SLICER_MODE_DENY) << bad;
    EXPECT_NE(std::string(cfg.reason).find("SLICER_MEMORY_LIMITS is malformed"), std::string::npos)
        << cfg.reason;
  }
}

TEST(ShimConfig, BadEnforceValueFailsClosed) {
  EXPECT_EQ(Load({{"SLICER_ENFORCE", "yes"}, {"SLICER_MEMORY_LIMITS", "*=5"}}).mode,
            SLICER_MODE_DENY);
}

TEST(ShimConfig, BadContainerIdOrDirFailsClosed) {
  EXPECT_EQ(Load({{"SLICER_MEMORY_LIMITS", "*=5"}, {"SLICER_CONTAINER_ID", "../etc"}}).mode,
            SLICER_MODE_DENY);
  EXPECT_EQ(Load({{"SLICER_MEMORY_LIMITS", "*=5"}, {"SLICER_LEDGER_DIR", "relative"}}).mode,
            SLICER_MODE_DENY);
}

TEST(ShimConfig, OptOutOnlyWhereAllowed) {
  slicer_config refused = Load({{"SLICER_MEMORY_LIMITS", "*=5"}, {"SLICER_OPT_OUT", "1"}});
  EXPECT_EQ(refused.mode, SLICER_MODE_ENFORCE);
  EXPECT_NE(std::string(refused.reason).find("ignored"), std::string::npos);
  slicer_config allowed = Load({{"SLICER_MEMORY_LIMITS", "*=5"},
                                {"SLICER_OPT_OUT", "1"},
                                {"SLICER_OPT_OUT_ALLOWED", "1"}});
  EXPECT_EQ(allowed.mode, SLICER_MODE_OFF);
  // The user's own SLICER_ENFORCE=0 does not lift a cap.
  EXPECT_EQ(Load({{"SLICER_MEMORY_LIMITS", "*=5"}, {"SLICER_ENFORCE", "0"}}).mode,
            SLICER_MODE_ENFORCE);
}

}  // namespace
