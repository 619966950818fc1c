#include "src/cli/flags.h"

#include <gtest/gtest.h>

#include <cstdlib>

#include "src/common/log.h"

namespace slicer::cli {
namespace {

FlagSet Make() {
  FlagSet f("test");
  f.Add("config-file", "SLICER_TEST_CONFIG_FILE", "", "file");
  f.Add("pass-device-specs", "SLICER_TEST_PASS", "false", "bool", true);
  f.Add("level", "", "info", "level");
  return f;
}

int Parse(FlagSet& f, std::vector<std::string> args, absl::Status* s) {
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  *s = f.Parse(static_cast<int>(argv.size()), argv.data());
  return 0;
}

TEST(Flags, FlagBeatsEnvironmentBeatsDefault) {
  setenv("SLICER_TEST_CONFIG_FILE", "/from/env", 1);
  FlagSet a = Make();
  absl::Status s;
  Parse(a, {"x"}, &s);
  EXPECT_EQ(a.Get("config-file"), "/from/env");
  FlagSet b = Make();
  Parse(b, {"x", "--config-file=/from/flag"}, &s);
  EXPECT_EQ(b.Get("config-file"), "/from/flag");
  unsetenv("SLICER_TEST_CONFIG_FILE");
  FlagSet c = Make();
  Parse(c, {"x"}, &s);
  EXPECT_EQ(c.Get("config-file"), "");
  EXPECT_EQ(c.Get("level"), "info");
}

TEST(Flags, FormsAndErrors) {
  FlagSet a = Make();
  absl::Status s;
  Parse(a, {"x", "--pass-device-specs", "--level", "debug", "--", "cmd", "--level"}, &s);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(a.Get("pass-device-specs"), "true");
  EXPECT_EQ(a.Get("level"), "debug");
  EXPECT_EQ(a.positional(), (std::vector<std::string>{"cmd", "--level"}));
  FlagSet b = Make();
  Parse(b, {"x", "--nope"}, &s);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("--nope"), std::string::npos);
  FlagSet c = Make();
  Parse(c, {"x", "--level"}, &s);
  EXPECT_FALSE(s.ok());
  FlagSet d = Make();
  Parse(d, {"x", "--pass-device-specs", "false"}, &s);
  EXPECT_EQ(d.Get("pass-device-specs"), "false");
}

// The shared start of every subcommand: exit statuses, and the log level applied or refused.
TEST(Flags, ParseCommandLineAppliesOrRefusesTheLogLevel) {
  auto run = [](std::vector<std::string> args) {
    FlagSet f("test");
    f.Add("log-level", "", "info", "level");
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    return ParseCommandLine(f, static_cast<int>(argv.size()), argv.data(), "slicer test");
  };
  SetLogLevel(LogLevel::kInfo);
  EXPECT_EQ(run({"x", "--log-level=debug"}), -1);
  EXPECT_EQ(GetLogLevel(), LogLevel::kDebug);
  EXPECT_EQ(run({"x", "--log-level=error"}), -1);
  EXPECT_EQ(GetLogLevel(), LogLevel::kError);
  // A typo is an error, not a silent "info"; the level in force stays.
  testing::internal::CaptureStderr();
  EXPECT_EQ(run({"x", "--log-level=warn"}), 2);
  std::string err = testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("slicer test: --log-level"), std::string::npos) << err;
  EXPECT_NE(err.find("\"warn\""), std::string::npos) << err;
  EXPECT_EQ(GetLogLevel(), LogLevel::kError);
  EXPECT_EQ(run({"x", "--nope"}), 2);
  testing::internal::CaptureStdout();
  EXPECT_EQ(run({"x", "--help"}), 0);
  EXPECT_NE(testing::internal::GetCapturedStdout().find("log-level"), std::string::npos);
  SetLogLevel(LogLevel::kInfo);
}

}  // namespace
}  // namespace slicer::cli
