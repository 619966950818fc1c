// A tiny HTTP/1.1 server that answers the two requests the node-label watcher makes: GET of one
// Node, and a watch of it that streams events pushed by the test (chunked encoding). Listens on
// 127.0.0.1 with a kernel-chosen port. Test-only.
#ifndef SLICER_TESTS_K8S_FAKE_APISERVER_H_
#define SLICER_TESTS_K8S_FAKE_APISERVER_H_

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace slicer::testing {

class FakeApiServer {
 public:
  FakeApiServer() {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    ::listen(listen_fd_, 16);
    socklen_t len = sizeof addr;
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { Accept(); });
  }
  ~FakeApiServer() {
    stop_ = true;
    cv_.notify_all();
    ::shutdown(listen_fd_, SHUT_RDWR);
    ::close(listen_fd_);
    thread_.join();
    for (auto& t : conns_) t.join();
  }

  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

  void SetLabel(const std::string& key, const std::string& value) {
    std::lock_guard<std::mutex> lock(mu_);
    labels_[key] = value;
    ++rv_;
    events_.push_back("{\"type\":\"MODIFIED\",\"object\":" + NodeJsonLocked() + "}\n");
    cv_.notify_all();
  }
  void SendGarbage(const std::string& line) {
    std::lock_guard<std::mutex> lock(mu_);
    events_.push_back(line + "\n");
    cv_.notify_all();
  }
  int gets() const { return gets_; }
  int watches() const { return watches_; }
  std::string last_authorization() {
    std::lock_guard<std::mutex> lock(mu_);
    return auth_;
  }

 private:
  std::string NodeJsonLocked() const {
    std::string l;
    for (const auto& [k, v] : labels_) {
      if (!l.empty()) l += ",";
      l += "\"" + k + "\":\"" + v + "\"";
    }
    return "{\"kind\":\"Node\",\"metadata\":{\"name\":\"node-a\",\"resourceVersion\":\"" +
           std::to_string(rv_) + "\",\"labels\":{" + l + "}}}";
  }

  void Accept() {
    while (!stop_) {
      int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) return;
      conns_.emplace_back([this, fd] { Serve(fd); });
    }
  }

  static bool WriteAll(int fd, const std::string& s) {
    size_t off = 0;
    while (off < s.size()) {
      ssize_t n = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return false;
      off += static_cast<size_t>(n);
    }
    return true;
  }

  void Serve(int fd) {
    std::string req;
    char buf[4096];
    while (req.find("\r\n\r\n") == std::string::npos) {
      ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) {
        ::close(fd);
        return;
      }
      req.append(buf, static_cast<size_t>(n));
    }
    std::string line = req.substr(0, req.find("\r\n"));
    {
      std::lock_guard<std::mutex> lock(mu_);
      size_t a = req.find("Authorization: ");
      auth_ = a == std::string::npos ? "" : req.substr(a + 15, req.find("\r\n", a) - a - 15);
    }
    if (line.find("watch=true") != std::string::npos) {
      ++watches_;
      size_t seen;
      {
        std::lock_guard<std::mutex> lock(mu_);
        seen = events_.size();
      }
      WriteAll(fd,
               "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
               "Transfer-Encoding: chunked\r\n\r\n");
      for (;;) {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait_for(lock, std::chrono::milliseconds(200),
                     [&] { return stop_ || events_.size() > seen; });
        if (stop_) break;
        if (events_.size() == seen) continue;
        std::string ev = events_[seen++];
        lock.unlock();
        char hdr[32];
        std::snprintf(hdr, sizeof hdr, "%zx\r\n", ev.size());
        if (!WriteAll(fd, hdr + ev + "\r\n")) break;
      }
    } else if (line.find("GET /api/v1/nodes/node-a ") == 0) {
      ++gets_;
      std::string body;
      {
        std::lock_guard<std::mutex> lock(mu_);
        body = NodeJsonLocked();
      }
      WriteAll(fd, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
                       std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body);
    } else {
      std::string body = "{\"kind\":\"Status\",\"code\":404}";
      WriteAll(fd, "HTTP/1.1 404 Not Found\r\nContent-Length: " + std::to_string(body.size()) +
                       "\r\nConnection: close\r\n\r\n" + body);
    }
    ::close(fd);
  }

  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::vector<std::thread> conns_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, std::string> labels_;
  int rv_ = 1;
  std::deque<std::string> events_;
  std::atomic<int> gets_{0}, watches_{0};
  std::string auth_;
};

}  // namespace slicer::testing

#endif  // SLICER_TESTS_K8S_FAKE_APISERVER_H_
