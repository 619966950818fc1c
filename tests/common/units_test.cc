#include "src/common/units.h"

#include <gtest/gtest.h>

namespace slicer {
namespace {

TEST(ParseSize, AcceptsBinaryAndDecimalUnits) {
  EXPECT_EQ(*ParseSize("512MiB"), 512ull << 20);
  EXPECT_EQ(*ParseSize("8GiB"), 8ull << 30);
  EXPECT_EQ(*ParseSize("8Gi"), 8ull << 30);
  EXPECT_EQ(*ParseSize("1.5GiB"), 3ull << 29);
  EXPECT_EQ(*ParseSize("2G"), 2000000000ull);
  EXPECT_EQ(*ParseSize("1024"), 1024ull);
  EXPECT_EQ(*ParseSize(" 7B "), 7ull);
}

TEST(ParseSize, RejectsGarbageNamingTheText) {
  for (const char* bad : {"", "GiB", "-1GiB", "8 parsecs", "1.2.3G", "1e3"}) {
    auto r = ParseSize(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_NE(r.status().message().find(bad), std::string::npos) << r.status();
  }
  EXPECT_FALSE(ParseSize("99999999999TiB").ok());
}

TEST(FormatSize, PicksLargestUnit) {
  EXPECT_EQ(FormatSize(15ull << 30), "15GiB");
  EXPECT_EQ(FormatSize(3ull << 29), "1.5GiB");
  EXPECT_EQ(FormatSize(100), "100B");
}

TEST(ParseDuration, GoStyle) {
  using namespace std::chrono_literals;
  EXPECT_EQ(*ParseDuration("100ms"), 100ms);
  EXPECT_EQ(*ParseDuration("1m30s"), 90s);
  EXPECT_EQ(*ParseDuration("0s"), 0s);
  EXPECT_EQ(*ParseDuration("0"), 0s);
  EXPECT_EQ(*ParseDuration("1.5s"), 1500ms);
  EXPECT_FALSE(ParseDuration("10 parsecs").ok());
  EXPECT_FALSE(ParseDuration("s").ok());
  EXPECT_FALSE(ParseDuration("").ok());
}

TEST(ParseBool, Words) {
  EXPECT_TRUE(*ParseBool("TRUE"));
  EXPECT_FALSE(*ParseBool("0"));
  EXPECT_FALSE(ParseBool("maybe").ok());
}

}  // namespace
}  // namespace slicer
