// The desired and state files: round trips, the plugin's health judgement, hostile text.
#include "src/mps/files.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "src/mps/layout.h"

namespace slicer::mps {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr char kA[] = "GPU-aaaaaaaa-0000-0000-0000-000000000000";
constexpr char kB[] = "GPU-bbbbbbbb-0000-0000-0000-000000000000";

TEST(Desired, RoundTripsAndRefusesWhatIsNotAGpuUuid) {
  auto back = ParseDesired(FormatDesired({kA, DesiredGpu(kB, 25)}));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_THAT(*back, ElementsAre(DesiredGpu(kA, 100), DesiredGpu(kB, 25)));
  EXPECT_THAT(FormatDesired({kA, DesiredGpu(kB, 25)}),
              HasSubstr(std::string(kA) + "\n" + kB + " threads=25\n"));
  for (const char* field : {"threads=0", "threads=101", "threads=x", "threads=", "pin=3"}) {
    auto f = ParseDesired(std::string(kA) + " " + field + "\n");
    ASSERT_FALSE(f.ok()) << field;
    EXPECT_THAT(f.status().message(), HasSubstr("threads=<1-100>"));
    EXPECT_THAT(f.status().message(), HasSubstr("line 1"));
  }
  EXPECT_TRUE(ParseDesired("").ok());
  EXPECT_TRUE(ParseDesired("# nothing\n\n")->empty());
  auto bad = ParseDesired(std::string(kA) + "\n../../etc\n");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("line 2"));
  EXPECT_FALSE(ParseDesired("MIG-aaaaaaaa-0000-0000-0000-000000000000\n").ok());
  EXPECT_FALSE(ParseDesired("GPU-aa/bb\n").ok());
  auto twice = ParseDesired(std::string(kA) + "\n" + kA + "\n");
  ASSERT_FALSE(twice.ok());
  EXPECT_THAT(twice.status().message(), HasSubstr("twice"));
}

TEST(State, RoundTripsWithAReasonThatHasSpacesAndEquals) {
  DaemonState s;
  s.phase = Phase::kDown;
  s.pid = 42;
  s.restarts = 3;
  s.heartbeat_ms = 1234567;
  s.reason = "the control daemon exited with status 1 (x=y)\nsecond line";
  auto back = ParseState(FormatState(s));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->phase, Phase::kDown);
  EXPECT_EQ(back->pid, 42);
  EXPECT_EQ(back->restarts, 3);
  EXPECT_EQ(back->heartbeat_ms, 1234567);
  EXPECT_EQ(back->reason, "the control daemon exited with status 1 (x=y) second line");
}

TEST(State, HealthyOnlyWhenReadyAndFresh) {
  DaemonState s;
  s.phase = Phase::kReady;
  s.heartbeat_ms = 100000;
  std::string why;
  EXPECT_TRUE(StateHealthy(FormatState(s), 105000, 10000, &why)) << why;
  EXPECT_FALSE(StateHealthy(FormatState(s), 111000, 10000, &why));
  EXPECT_THAT(why, HasSubstr("stale"));
  s.phase = Phase::kDown;
  s.reason = "exited with status 1";
  EXPECT_FALSE(StateHealthy(FormatState(s), 100000, 10000, &why));
  EXPECT_THAT(why, HasSubstr("down: exited with status 1"));
  for (const char* junk : {"", "phase=ready", "phase=bogus heartbeat_ms=1", "pid=-1 phase=ready heartbeat_ms=1",
                           "\x01\x02 garbage", "phase=ready heartbeat_ms=notanumber"}) {
    EXPECT_FALSE(StateHealthy(junk, 100000, 10000, &why)) << junk;
    EXPECT_FALSE(why.empty()) << junk;
  }
}

TEST(Layout, RootRulesAndPaths) {
  EXPECT_TRUE(ValidateRoot("/run/nvidia/mps").ok());
  for (const char* bad : {"", "run/mps", "/", "/run/mps/", "/run//mps", "/run/../mps"}) {
    EXPECT_FALSE(ValidateRoot(bad).ok()) << bad;
  }
  auto too_long = ValidateRoot("/" + std::string(60, 'x'));
  ASSERT_FALSE(too_long.ok());
  EXPECT_THAT(too_long.message(), HasSubstr("unix socket"));
  Layout l("/run/nvidia/mps");
  EXPECT_EQ(l.PipeDir(kA), std::string("/run/nvidia/mps/") + kA + "/pipe");
  EXPECT_EQ(l.ControlSocket(kA), std::string("/run/nvidia/mps/") + kA + "/pipe/control");
  EXPECT_EQ(l.ShmDir(), "/run/nvidia/mps/shm");
  EXPECT_TRUE(IsGpuUuid(kA));
  EXPECT_FALSE(IsGpuUuid("GPU-"));
  EXPECT_FALSE(IsGpuUuid("GPU-../x"));
}

}  // namespace
}  // namespace slicer::mps
