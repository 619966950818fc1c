// A client process for the daemon tests: the C client library driving a simulated GPU stream
// (kernels are timed sleeps, as in the fake libcuda): each launch queues `kernel_us` of work,
// a sync every `sync_every` launches (or at a checkpoint) sleeps until the queue is done, and
// the drain callback does the same. Arguments are key=value:
//   socket=PATH seconds=S kernel_us=U sync_every=N weight=W priority=P token=T replicas=R
//   wait_file=F (wait until F exists before starting)   hold=1 (drain never returns: ignores
//   revokes)   fail_closed=1
// Prints `granted` once the arbiter first granted it a lease, and at the end
// `work_ns=<completed> grants=<n> waited_ns=<n> connects=<n>`.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <thread>

#include "src/arbiter/client/arbiter_client.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Stream {
  Clock::time_point busy_until{};
  bool hold = false;
};

int Drain(void* user, int) {
  auto* s = static_cast<Stream*>(user);
  if (s->hold) {
    for (;;) std::this_thread::sleep_for(std::chrono::hours(1));
  }
  std::this_thread::sleep_until(s->busy_until);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::map<std::string, std::string> a;
  for (int i = 1; i < argc; ++i) {
    const char* eq = std::strchr(argv[i], '=');
    if (eq != nullptr) a[std::string(argv[i], static_cast<size_t>(eq - argv[i]))] = eq + 1;
  }
  auto get = [&](const char* k, const char* d) { return a.count(k) ? a[k] : std::string(d); };
  if (a.count("wait_file")) {
    while (access(a["wait_file"].c_str(), F_OK) != 0) usleep(1000);
  }
  Stream stream;
  stream.hold = get("hold", "0") == "1";
  slicer_arb_options o{};
  std::string socket = get("socket", ""), token = get("token", ""), replicas = get("replicas", "");
  o.socket_path = socket.c_str();
  o.container = token.c_str();
  o.replicas = replicas.c_str();
  o.weight_milli = static_cast<uint32_t>(std::atof(get("weight", "0").c_str()) * 1000);
  std::string prio = get("priority", "");
  o.priority = prio == "high"     ? SLICER_ARB_PRIO_HIGH
               : prio == "low"    ? SLICER_ARB_PRIO_LOW
               : prio == "normal" ? SLICER_ARB_PRIO_NORMAL
                                  : SLICER_ARB_PRIO_UNSET;
  o.fail_closed = get("fail_closed", "0") == "1" ? 1 : 0;
  o.drain = Drain;
  o.user = &stream;
  slicer_arb_client* c = slicer_arb_start(&o);
  if (c == nullptr) return 3;
  slicer_arb_attach(c, 0, get("gpu", "GPU-11111111-1111-1111-1111-111111111111").c_str());
  const auto kernel = std::chrono::microseconds(std::atoi(get("kernel_us", "1000").c_str()));
  const int sync_every = std::atoi(get("sync_every", "4").c_str());
  const auto end =
      Clock::now() +
      std::chrono::milliseconds(static_cast<int>(std::atof(get("seconds", "1").c_str()) * 1000));
  bool said = false;
  int64_t work_ns = 0;
  int n = 0;
  while (Clock::now() < end) {
    int r = slicer_arb_launch(c, 0);
    slicer_arb_stats now_st;
    if (!said && (slicer_arb_get_stats(c, &now_st), now_st.grants > 0)) {
      std::printf("granted\n");
      std::fflush(stdout);
      said = true;
    }
    Clock::time_point now = Clock::now();
    stream.busy_until = std::max(stream.busy_until, now) + kernel;
    slicer_arb_launched(c, 0);
    work_ns += std::chrono::nanoseconds(kernel).count();
    if (r == SLICER_ARB_CHECKPOINT || ++n % sync_every == 0) {
      std::this_thread::sleep_until(stream.busy_until);
      slicer_arb_synced(c, 0);
    }
  }
  std::this_thread::sleep_until(stream.busy_until);
  slicer_arb_synced(c, 0);
  // Work still queued past the end is not counted.
  slicer_arb_stats st;
  slicer_arb_get_stats(c, &st);
  std::printf("work_ns=%lld grants=%llu waited_ns=%llu connects=%llu\n",
              static_cast<long long>(work_ns), static_cast<unsigned long long>(st.grants),
              static_cast<unsigned long long>(st.waited_ns),
              static_cast<unsigned long long>(st.connects));
  std::fflush(stdout);
  slicer_arb_stop(c);
  return 0;
}
