// The arbiter's YAML config (strict keys, ranges, line numbers) and the /metrics HTTP endpoint
// with the Prometheus text parser that `slicer status` uses.
#include <curl/curl.h>
#include <gtest/gtest.h>

#include <string>

#include "src/arbiter/config.h"
#include "src/arbiter/metrics_http.h"

namespace slicer::arbiter {
namespace {

using namespace std::chrono_literals;

TEST(ArbiterConfigTest, ParsesEveryKey) {
  auto c = ParseArbiterConfig(R"(arbiter:
  policy: priority
  quantum: 25ms
  batchQuantum: 60ms
  maxQuantum: 100ms
  priorityFloor: 0.1
  weightOverride: {min: 0.5, max: 4}
  failClosed: true
  revokeGrace: 300ms
  maxQueued: 5ms
  handover: overlap
  gating: always
  trustClaims: false
)",
                              "a.yaml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->scheduler.policy, Policy::kPriority);
  EXPECT_EQ(c->scheduler.quantum, 25ms);
  EXPECT_EQ(c->scheduler.batch_quantum, 60ms);
  EXPECT_EQ(c->scheduler.max_quantum, 100ms);
  EXPECT_DOUBLE_EQ(c->scheduler.priority_floor, 0.1);
  EXPECT_DOUBLE_EQ(c->min_weight, 0.5);
  EXPECT_DOUBLE_EQ(c->max_weight, 4);
  EXPECT_TRUE(c->fail_closed);
  EXPECT_EQ(c->scheduler.revoke_grace, 300ms);
  EXPECT_EQ(c->max_queued, std::optional<Clock::Duration>(5ms));
  EXPECT_EQ(MaxQueued(*c), 5ms);
  EXPECT_EQ(c->scheduler.handover, Handover::kOverlap);
  EXPECT_EQ(c->scheduler.gating, Gating::kAlways);
  EXPECT_EQ(c->trust_claims, std::optional<bool>(false));
}

TEST(ArbiterConfigTest, MaxQueuedDefaultsByPolicy) {
  auto c = ParseArbiterConfig("policy: priority\n", "p.yaml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(MaxQueued(*c), 2ms);
  c = ParseArbiterConfig("policy: fair\n", "f.yaml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(MaxQueued(*c), 10ms);
  EXPECT_EQ(c->scheduler.handover, Handover::kDrain);
  c = ParseArbiterConfig("policy: priority\nmaxQueued: 10ms\n", "q.yaml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(MaxQueued(*c), 10ms);
}

TEST(ArbiterConfigTest, SectionMayBeTheWholeFile) {
  auto c = ParseArbiterConfig("policy: off\n", "b.yaml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->scheduler.policy, Policy::kOff);
  EXPECT_EQ(c->scheduler.quantum, 20ms);  // default kept
  EXPECT_EQ(c->scheduler.batch_quantum, 80ms);
  EXPECT_EQ(c->scheduler.gating, Gating::kContended);
}

TEST(ArbiterConfigTest, ErrorsNameTheKeyAndLine) {
  auto c = ParseArbiterConfig("arbiter:\n  policy: fair\n  quantom: 10ms\n", "c.yaml");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("c.yaml:3"), std::string::npos) << c.status();
  EXPECT_NE(c.status().message().find("quantom"), std::string::npos);
  c = ParseArbiterConfig("arbiter:\n  policy: fifo\n", "d.yaml");
  EXPECT_NE(c.status().message().find("d.yaml:2: policy: unknown policy \"fifo\""),
            std::string::npos)
      << c.status();
  c = ParseArbiterConfig("arbiter:\n  handover: early\n", "i.yaml");
  EXPECT_NE(c.status().message().find("i.yaml:2: handover: unknown handover \"early\""),
            std::string::npos)
      << c.status();
  c = ParseArbiterConfig("arbiter:\n  policy: fair\n  gating: sometimes\n", "g.yaml");
  EXPECT_NE(c.status().message().find("g.yaml:3: gating: unknown gating \"sometimes\""),
            std::string::npos)
      << c.status();
  c = ParseArbiterConfig("arbiter:\n  priorityFloor: 0.9\n", "e.yaml");
  EXPECT_NE(c.status().message().find("priorityFloor"), std::string::npos) << c.status();
  c = ParseArbiterConfig("arbiter:\n  weightOverride: {min: 5, max: 2}\n", "f.yaml");
  EXPECT_FALSE(c.ok());
  c = ParseArbiterConfig("arbiter: [\n", "g.yaml");
  EXPECT_FALSE(c.ok());
  c = ParseArbiterConfig("arbiter:\n  batchQuantum: 11s\n", "j.yaml");
  EXPECT_NE(c.status().message().find("batchQuantum must be between 0 and 10s"),
            std::string::npos)
      << c.status();
  c = ParseArbiterConfig("arbiter:\n  batchQuantum: 0s\n", "k.yaml");  // off
  EXPECT_TRUE(c.ok()) << c.status();
  c = ParseArbiterConfig("arbiter:\n  quantum: soon\n", "h.yaml");
  EXPECT_NE(c.status().message().find("h.yaml:2: quantum"), std::string::npos) << c.status();
}

size_t Append(char* d, size_t s, size_t n, void* out) {
  static_cast<std::string*>(out)->append(d, s * n);
  return s * n;
}

std::string Get(const std::string& url, long* code) {
  CURL* c = curl_easy_init();
  std::string body;
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, Append);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 5L);
  EXPECT_EQ(curl_easy_perform(c), CURLE_OK);
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, code);
  curl_easy_cleanup(c);
  return body;
}

TEST(MetricsHttpTest, ServesMetricsOnAKernelChosenPort) {
  MetricsHttpServer server([] { return std::string("slicer_arbiter_up 1\n"); });
  ASSERT_TRUE(server.Start("127.0.0.1", 0).ok());
  ASSERT_GT(server.port(), 0);
  std::string base = "http://127.0.0.1:" + std::to_string(server.port());
  long code = 0;
  EXPECT_EQ(Get(base + "/metrics", &code), "slicer_arbiter_up 1\n");
  EXPECT_EQ(code, 200);
  EXPECT_EQ(Get(base + "/healthz", &code), "ok\n");
  Get(base + "/nope", &code);
  EXPECT_EQ(code, 404);
  server.Stop();
}

TEST(MetricsHttpTest, ParsesPrometheusText) {
  auto samples = ParsePrometheusText(
      "# HELP x y\n# TYPE x counter\n"
      "x{namespace=\"a\",pod=\"p \\\"q\\\"\",gpu=\"GPU-1\"} 1.5\n"
      "slicer_arbiter_up 1\n"
      "broken{a=b} 3\n"
      "novalue{a=\"b\"}\n");
  ASSERT_EQ(samples.size(), 2u);
  EXPECT_EQ(samples[0].name, "x");
  EXPECT_EQ(samples[0].Label("pod"), "p \"q\"");
  EXPECT_EQ(samples[0].Label("gpu"), "GPU-1");
  EXPECT_DOUBLE_EQ(samples[0].value, 1.5);
  EXPECT_EQ(samples[1].name, "slicer_arbiter_up");
}

}  // namespace
}  // namespace slicer::arbiter
