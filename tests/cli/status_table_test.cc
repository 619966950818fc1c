// `slicer status`'s table from /metrics text: leased rows show weight and shares, observe-only
// (MPS) rows say so instead of a weight of 0 and shares of 0 %.
#include "src/cli/status_table.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sstream>

namespace slicer::cli {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::string RowOf(const std::string& table, const std::string& container) {
  std::istringstream in(table);
  for (std::string line; std::getline(in, line);) {
    if (line.find(" " + container + " ") != std::string::npos) return line;
  }
  return "";
}

TEST(StatusTable, ObserveOnlyMpsRowsShowNoWeightOrShare) {
  const std::string labels = R"(namespace="ml",pod="p",container="%s",gpu="GPU-1")";
  auto l = [&](const char* c) {
    std::string s = labels;
    s.replace(s.find("%s"), 2, c);
    return "{" + s + "}";
  };
  std::string text =
      std::string("slicer_arbiter_up 1\n") + "slicer_arbiter_clients_connected 2\n" +
      "slicer_arbiter_build_info{version=\"v9\",policy=\"fair\",protocol=\"1\"} 1\n" +
      "slicer_arbiter_weight" + l("leased") + " 2\n" +
      "slicer_arbiter_configured_share" + l("leased") + " 0.5\n" +
      "slicer_arbiter_achieved_share" + l("leased") + " 0.25\n" +
      "slicer_arbiter_clients" + l("leased") + " 1\n" +
      "slicer_arbiter_observed_clients" + l("leased") + " 0\n" +
      "slicer_arbiter_weight" + l("mpsclient") + " 0\n" +
      "slicer_arbiter_configured_share" + l("mpsclient") + " 0\n" +
      "slicer_arbiter_clients" + l("mpsclient") + " 2\n" +
      "slicer_arbiter_observed_clients" + l("mpsclient") + " 2\n" +
      "slicer_arbiter_gpu_seconds_total" + l("mpsclient") + " 12.5\n" +
      "slicer_arbiter_memory_used_bytes" + l("mpsclient") + " 1073741824\n";
  const std::string table = StatusTable(text);
  EXPECT_THAT(table, HasSubstr("arbiter up  version=v9  policy=fair  clients=2"));
  const std::string leased = RowOf(table, "leased");
  EXPECT_THAT(leased, HasSubstr("  2.00    50%    25%")) << table;
  const std::string mps = RowOf(table, "mpsclient");
  EXPECT_THAT(mps, HasSubstr("    2    mps      -      -       12.5")) << table;
  EXPECT_THAT(mps, Not(HasSubstr("0.00")));
  EXPECT_THAT(StatusTable("slicer_arbiter_up 1\n"), HasSubstr("(no clients yet)"));
}

}  // namespace
}  // namespace slicer::cli
