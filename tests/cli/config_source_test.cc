#include "src/cli/config_source.h"

#include <gtest/gtest.h>

namespace slicer::cli {
namespace {

const std::vector<std::string> kNames = {"a100", "t4-shared", "whole"};

TEST(SelectConfigFile, LabelPicksItsFile) {
  EXPECT_EQ(*SelectConfigFile("/c", kNames, "t4-shared", "whole", "named,single"), "/c/t4-shared");
}

TEST(SelectConfigFile, UnknownLabelIsAnErrorNamingIt) {
  auto r = SelectConfigFile("/c", kNames, "h100", "whole", "named,single");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("\"h100\""), std::string::npos);
  EXPECT_NE(r.status().message().find("a100, t4-shared, whole"), std::string::npos);
}

TEST(SelectConfigFile, FallbacksInOrder) {
  EXPECT_EQ(*SelectConfigFile("/c", kNames, std::nullopt, "whole", "named,single"), "/c/whole");
  EXPECT_EQ(*SelectConfigFile("/c", {"only"}, std::nullopt, "", "named,single"), "/c/only");
  EXPECT_EQ(*SelectConfigFile("/c", kNames, std::nullopt, "", "named,empty"), "");
  EXPECT_FALSE(SelectConfigFile("/c", kNames, std::nullopt, "", "named,single").ok());
  EXPECT_FALSE(SelectConfigFile("/c", kNames, std::nullopt, "missing", "named").ok());
  EXPECT_FALSE(SelectConfigFile("/c", kNames, std::nullopt, "", "bogus").ok());
}

TEST(ConfigSource, FileAndDirExcludeEachOther) {
  ConfigSourceOptions o;
  o.config_file = "/a";
  o.config_dir = "/b";
  EXPECT_FALSE(ConfigSource::Create(o).ok());
}

}  // namespace
}  // namespace slicer::cli
