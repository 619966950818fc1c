#include "src/cli/flags.h"

#include <gtest/gtest.h>

#include <cstdlib>

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

}  // namespace
}  // namespace slicer::cli
