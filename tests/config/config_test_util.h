// What the config tests share: testdata paths and parses expected to fail once or not at all.
#ifndef SLICER_TESTS_CONFIG_CONFIG_TEST_UTIL_H_
#define SLICER_TESTS_CONFIG_CONFIG_TEST_UTIL_H_

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <ostream>
#include <string>

#include "src/config/config.h"

namespace slicer::config {

// gtest prints a ConfigError as FormatError does.
inline void PrintTo(const ConfigError& e, std::ostream* os) { *os << FormatError("f", e); }

namespace test {

inline std::string TestData(const std::string& name) {
  return std::string(SLICER_CONFIG_TESTDATA) + "/" + name;
}

// Every error as FormatError prints it, one a line, for failure messages.
inline std::string Dump(const ParseResult& r) {
  std::string out;
  for (const ConfigError& e : r.errors) out += FormatError("f", e) + "\n";
  return out;
}

// The one error of `r`; a test failure when there are none or several.
inline ConfigError OnlyError(const ParseResult& r) {
  EXPECT_THAT(r.errors, ::testing::SizeIs(1)) << Dump(r);
  return r.errors.empty() ? ConfigError{} : r.errors[0];
}

// Parses text expected to have exactly one error and returns it.
inline ConfigError OneError(const std::string& yaml) { return OnlyError(Parse(yaml)); }

// Parses text expected to be valid; a test failure otherwise.
inline Config Load(const std::string& yaml) {
  ParseResult r = Parse(yaml);
  EXPECT_TRUE(r.ok()) << Dump(r);
  return r.config;
}

// Matches a ConfigError at `path`, `line` and `column` whose message matches `message`.
MATCHER_P4(ErrorAt, path, line, column, message,
           "an error at " + ::testing::PrintToString(path) + " " + ::testing::PrintToString(line) +
               ":" + ::testing::PrintToString(column)) {
  return arg.path == path && arg.line == line && arg.column == column &&
         ::testing::ExplainMatchResult(message, arg.message, result_listener);
}

}  // namespace test
}  // namespace slicer::config

#endif  // SLICER_TESTS_CONFIG_CONFIG_TEST_UTIL_H_
