// A minimal HTTP/1.0 server for Prometheus scrapes: GET /metrics answers `render()`, GET
// /healthz answers "ok", anything else 404. One connection at a time on its own thread (a scrape
// every few seconds needs no more); requests are bounded (8 KiB, 2 s).
#ifndef SLICER_ARBITER_METRICS_HTTP_H_
#define SLICER_ARBITER_METRICS_HTTP_H_

#include <atomic>
#include <functional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"

namespace slicer::arbiter {

class MetricsHttpServer {
 public:
  explicit MetricsHttpServer(std::function<std::string()> render) : render_(std::move(render)) {}
  ~MetricsHttpServer();
  // Listens on `address`:`port` (port 0: the kernel picks; see port()).
  absl::Status Start(const std::string& address, int port);
  void Stop();
  int port() const { return port_; }

 private:
  void Serve();
  std::function<std::string()> render_;
  int fd_ = -1;
  int stop_fd_ = -1;
  int port_ = 0;
  std::thread thread_;
};

// One sample of Prometheus text: name, labels, value.
struct Sample {
  std::string name;
  std::vector<std::pair<std::string, std::string>> labels;
  double value = 0;
  std::string Label(const std::string& key) const;
};
// Parses the text exposition format (comments skipped; malformed lines skipped).
std::vector<Sample> ParsePrometheusText(const std::string& text);

}  // namespace slicer::arbiter

#endif  // SLICER_ARBITER_METRICS_HTTP_H_
