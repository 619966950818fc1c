#include "src/common/log.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <string>

namespace slicer {
namespace {

std::string Capture(void (*fn)()) {
  int fds[2];
  EXPECT_EQ(pipe(fds), 0);
  SetLogFd(fds[1]);
  fn();
  SetLogFd(2);
  close(fds[1]);
  std::string out;
  char buf[512];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof buf)) > 0) out.append(buf, n);
  close(fds[0]);
  return out;
}

TEST(Log, OneKeyValueLinePerEventWithQuoting) {
  std::string out = Capture([] {
    SLOG(kInfo, "registered")
        .Kv("resource", "nvidia.com/gpu")
        .Kv("replicas", 16)
        .Kv("why", "kubelet restarted");
  });
  EXPECT_NE(out.find(" level=info event=registered resource=nvidia.com/gpu replicas=16 "
                     "why=\"kubelet restarted\"\n"),
            std::string::npos)
      << out;
  EXPECT_EQ(out.rfind("ts=", 0), 0u);
}

TEST(Log, DropsLinesBelowLevel) {
  std::string out = Capture([] {
    SetLogLevel(LogLevel::kWarning);
    SLOG(kInfo, "hidden");
    SLOG(kError, "shown");
    SetLogLevel(LogLevel::kInfo);
  });
  EXPECT_EQ(out.find("hidden"), std::string::npos);
  EXPECT_NE(out.find("event=shown"), std::string::npos);
}

TEST(Log, LevelNamesParseBothWays) {
  EXPECT_EQ(ParseLogLevel("debug"), LogLevel::kDebug);
  EXPECT_EQ(ParseLogLevel("info"), LogLevel::kInfo);
  EXPECT_EQ(ParseLogLevel("warning"), LogLevel::kWarning);
  EXPECT_EQ(ParseLogLevel("error"), LogLevel::kError);
  EXPECT_EQ(ParseLogLevel("warn"), std::nullopt);
  EXPECT_EQ(ParseLogLevel("DEBUG"), std::nullopt);
  EXPECT_EQ(ParseLogLevel(""), std::nullopt);
}

}  // namespace
}  // namespace slicer
