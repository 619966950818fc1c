/* The arbiter client (arbiter_client.h). Design:
 *
 * Each device slot has a state word read with one atomic load on the launch path:
 *   PASS     launch freely: an open-ended lease (`lease` = 1), or no arbiter (fail-open), or a
 *            device that was never attached
 *   TIMED    a lease with a deadline: launch until the deadline, then hand over
 *   IDLE     connected, no lease: the next launch sends REQUEST
 *   WAIT     REQUEST sent: launches wait for GRANT
 *   HANDOVER draining before RELEASE: launches wait
 *   BLOCKED  fail-closed and the arbiter is unreachable: launches wait
 *   RESTART  forked child: the next launch starts the connection thread
 * Everything but the PASS/TIMED fast path runs under `mu`; the thread that owns the socket and
 * the launching threads meet on `cv`. The socket is written under `send_mu` by either.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "src/arbiter/client/arbiter_client.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stddef.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <linux/membarrier.h>

#include "src/common/shim_contract.h"

enum {
  ST_PASS = SLICER_ARB_GATE_OPEN,
  ST_TIMED,
  ST_IDLE,
  ST_WAIT,
  ST_HANDOVER,
  ST_BLOCKED,
  ST_RESTART
};

/* A holder of a timed lease (others are waiting) that has had nothing queued for this long hands
 * the lease back: an idle holder must not keep the GPU from the others for the rest of its
 * quantum (work-conserving). Short enough that a bursty client gives back nearly all the time it
 * leaves idle, long enough that the gap between a sync and the next launch of a busy loop does
 * not cost it the lease. */
#define IDLE_RELEASE_NS 1000000

/* How often the connection thread sends LOAD (busy and blocked time) for a device that was busy
 * since the last one: the arbiter judges over windows of ~100 ms whether this process keeps the
 * GPU busy on its own (then it is leased under contention) or not (it submits beside others). */
#define LOAD_INTERVAL_NS 50000000

/* The lease timeline (SLICER_ARB_TRACE=FILE, written at exit by slicer_arb_write_trace): when
 * each step of a hand-over happened in this process, for bench/arbiter/handover.py. */
enum { TR_REQUEST = 1, TR_GRANT, TR_GO, TR_EXPIRE, TR_REVOKE, TR_DRAINED, TR_RELEASE, TR_SUBMIT };
#define TRACE_CAP 65536
typedef struct {
  int64_t t;
  uint32_t ev, dev;
} trace_event;

typedef struct {
  slicer_arb_gate gate; /* state (ST_*) and busy_since, what an open-lease launch reads */
  int64_t deadline;     /* atomic; TIMED: monotonic ns */
  uint64_t busy_total;      /* atomic; ns */
  /* Time some thread of the process spent waiting for its work on the device (the union of the
   * waits, not their sum): guarded by the client's wait_mu. */
  uint64_t blocked_total;
  int64_t blocked_since; /* the current waits began; valid while `waiting` > 0 */
  uint32_t waiting;
  uint64_t load_sent_busy;  /* connection thread only: busy_total at the last LOAD */
  int64_t queue_ns;         /* atomic: QUEUE's bound since the last GRANT; 0: max_queued_ns */
  int64_t last_checkpoint;  /* atomic */
  int64_t idle_since;       /* atomic; TIMED: when a sync left nothing queued; 0: not idle */
  uint64_t mem_used, mem_cap; /* atomic */
  uint32_t inflight; /* atomic: launches let through and not yet submitted (slicer_arb_launched) */
  /* Guarded by mu. */
  int attached;
  int attach_sent; /* on the current connection */
  int lease;
  int waiters;
  char uuid[SLICER_ARB_UUID_LEN];
} gpu_slot;
_Static_assert(offsetof(gpu_slot, gate) == 0, "slicer_arb_gate_busy finds the slot at its gate");

struct slicer_arb_client {
  char path[sizeof(((struct sockaddr_un*)0)->sun_path)];
  slicer_arb_hello_msg hello;
  int fail_closed_local;
  int fail_closed;  /* atomic: local setting or the arbiter's (from WELCOME) */
  /* Observe-only (SLICER_ARBITER_OBSERVE): reports, never gated; its gates stay open. */
  int observe;
  /* atomic: a high-priority client under the priority policy launches while its REQUEST is in
   * flight (the arbiter grants it at once, preempting lower classes): it never waits in WAIT. */
  int eager;
  int (*drain)(void*, int);
  void* user;

  pthread_mutex_t mu;
  pthread_cond_t cv;
  pthread_mutex_t send_mu;
  pthread_mutex_t wait_mu; /* the slots' blocked_* and waiting */
  int fd; /* atomic; -1 when disconnected; closed under send_mu */
  int wake[2];
  pthread_t thread;
  int thread_running; /* guarded by mu */
  int stop;           /* atomic */
  uint32_t seq;       /* atomic */

  int64_t max_queued_ns; /* atomic */
  uint32_t report_ms;    /* atomic */
  uint32_t features;     /* atomic: WELCOME's SLICER_ARB_FEATURE_* */
  uint64_t client_id;    /* atomic */
  uint64_t grants, waited_ns, connects; /* atomic */
  gpu_slot gpus[SLICER_ARB_MAX_GPUS];
  /* Diagnostics (SLICER_ARB_SPIN=1): waiting threads spin instead of sleeping. */
  int spin;
  char trace_path[256];
  trace_event* trace; /* NULL: off */
  uint32_t trace_n;   /* atomic */
};

static int64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void clog_line(const char* fmt, const char* a, long b) {
  char buf[320];
  int n = snprintf(buf, sizeof buf, "slicer-arbiter-client: pid=%d ", (int)getpid());
  int m = snprintf(buf + n, sizeof buf - (size_t)n - 1, fmt, a, b);
  size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
  if (len > sizeof buf - 2) len = sizeof buf - 2;
  buf[len++] = '\n';
  ssize_t w = write(2, buf, len);
  (void)w;
}

static void trace(slicer_arb_client* c, uint32_t ev, int dev) {
  if (__builtin_expect(c->trace == NULL, 1)) return;
  uint32_t i = __atomic_fetch_add(&c->trace_n, 1, __ATOMIC_RELAXED);
  if (i < TRACE_CAP) {
    c->trace[i].t = mono_ns();
    c->trace[i].ev = ev;
    c->trace[i].dev = (uint32_t)dev;
  }
}

/* ---- Busy accounting ----------------------------------------------------------------------- */

static void busy_start(gpu_slot* g, int64_t now) {
  if (__atomic_load_n(&g->gate.busy_since, __ATOMIC_RELAXED) != 0) return;
  int64_t zero = 0;
  __atomic_compare_exchange_n(&g->gate.busy_since, &zero, now, 0, __ATOMIC_ACQ_REL,
                              __ATOMIC_RELAXED);
}

static void busy_end(gpu_slot* g) {
  int64_t since = __atomic_exchange_n(&g->gate.busy_since, 0, __ATOMIC_ACQ_REL);
  if (since != 0) {
    int64_t d = mono_ns() - since;
    if (d > 0) __atomic_fetch_add(&g->busy_total, (uint64_t)d, __ATOMIC_RELAXED);
  }
}

static uint64_t busy_now(gpu_slot* g) {
  uint64_t total = __atomic_load_n(&g->busy_total, __ATOMIC_RELAXED);
  int64_t since = __atomic_load_n(&g->gate.busy_since, __ATOMIC_RELAXED);
  if (since != 0) {
    int64_t d = mono_ns() - since;
    if (d > 0) total += (uint64_t)d;
  }
  return total;
}

/* Blocked time so far, the waits in progress included. */
static uint64_t blocked_now(slicer_arb_client* c, gpu_slot* g) {
  pthread_mutex_lock(&c->wait_mu);
  uint64_t total = g->blocked_total;
  if (g->waiting > 0) {
    int64_t d = mono_ns() - g->blocked_since;
    if (d > 0) total += (uint64_t)d;
  }
  pthread_mutex_unlock(&c->wait_mu);
  return total;
}

/* ---- Sending ------------------------------------------------------------------------------- */

static int send_msg(slicer_arb_client* c, void* msg, uint32_t type) {
  slicer_arb_init((slicer_arb_hdr*)msg, type, __atomic_add_fetch(&c->seq, 1, __ATOMIC_RELAXED));
  pthread_mutex_lock(&c->send_mu);
  int fd = __atomic_load_n(&c->fd, __ATOMIC_ACQUIRE);
  int rc = -1;
  if (fd >= 0) {
    ssize_t n = send(fd, msg, slicer_arb_size_of(type), MSG_NOSIGNAL);
    rc = n == (ssize_t)slicer_arb_size_of(type) ? 0 : -1;
  }
  pthread_mutex_unlock(&c->send_mu);
  return rc;
}

static int send_lease(slicer_arb_client* c, uint32_t type, int dev) {
  slicer_arb_lease_msg m;
  memset(&m, 0, sizeof m);
  m.gpu = (uint32_t)dev;
  return send_msg(c, &m, type);
}

static int send_usage(slicer_arb_client* c, uint32_t type, int dev, int more_work) {
  gpu_slot* g = &c->gpus[dev];
  slicer_arb_usage_msg m;
  memset(&m, 0, sizeof m);
  m.gpu = (uint32_t)dev;
  m.more_work = more_work ? 1 : 0;
  m.busy_total_ns = busy_now(g);
  m.mem_used = __atomic_load_n(&g->mem_used, __ATOMIC_RELAXED);
  m.mem_cap = __atomic_load_n(&g->mem_cap, __ATOMIC_RELAXED);
  return send_msg(c, &m, type);
}

static int send_attach(slicer_arb_client* c, int dev) {
  slicer_arb_attach_msg m;
  memset(&m, 0, sizeof m);
  m.gpu = (uint32_t)dev;
  memcpy(m.uuid, c->gpus[dev].uuid, sizeof m.uuid);
  return send_msg(c, &m, SLICER_ARB_ATTACH);
}

static void set_state(gpu_slot* g, uint32_t st) {
  __atomic_store_n(&g->gate.state, st, __ATOMIC_RELEASE);
}
static uint32_t get_state(gpu_slot* g) { return __atomic_load_n(&g->gate.state, __ATOMIC_ACQUIRE); }

/* The state of an attached slot without a connection. */
static uint32_t unreachable_state(slicer_arb_client* c) {
  if (c->observe) return ST_PASS;
  return __atomic_load_n(&c->fail_closed, __ATOMIC_RELAXED) ? ST_BLOCKED : ST_PASS;
}

static void poke(slicer_arb_client* c);

/* ---- Open-lease launches ------------------------------------------------------------------ */

/* A launch under an open lease (PASS: a lone client) counts itself in a slot of its own thread
 * instead of the shared `inflight` word: one plain store before reading the state and one after
 * the submission, no locked instruction (slicer_arb_launch_open, or inline in the caller:
 * slicer_arb_open_fast, whose slot pointer slicer_arb_t_open is set only where no fence is
 * needed). A hand-over pays instead: it sets HANDOVER, then makes every thread of the process
 * pass a full barrier (membarrier, private expedited), then waits until no slot holds its device.
 * Either a launcher's store is visible to that scan, or the launcher's read of the state comes
 * after the barrier and sees HANDOVER. Where membarrier cannot be registered (an old kernel, a
 * seccomp profile without it) the launcher issues the full fence itself. A thread without a slot
 * (more than LAUNCHER_SLOTS at once) uses the shared word. */
#define LAUNCHER_SLOTS 256
typedef struct {
  /* atomic: the gate of the device this thread's launch is between open and submitted */
  const slicer_arb_gate* inflight;
  uint32_t owner;     /* atomic: claimed by a live thread */
  char pad[64 - sizeof(const slicer_arb_gate*) - sizeof(uint32_t)];
} launcher_slot;
static launcher_slot g_launchers[LAUNCHER_SLOTS] __attribute__((aligned(64)));
static launcher_slot g_no_slot; /* marks a thread that found none free */
static __thread launcher_slot* t_launcher __attribute__((tls_model("initial-exec")));
/* &t_launcher->inflight where launchers need no fence of their own (arbiter_client.h). */
__thread const slicer_arb_gate** slicer_arb_t_open;
static pthread_mutex_t g_launchers_mu = PTHREAD_MUTEX_INITIALIZER;
static int g_launchers_ready; /* atomic; under g_launchers_mu when set */
static pthread_key_t g_launcher_key;
static int g_asym_barrier; /* atomic: membarrier registered for this process */

static void launcher_exit(void* slot) {
  launcher_slot* l = (launcher_slot*)slot;
  __atomic_store_n(&l->inflight, NULL, __ATOMIC_RELEASE);
  __atomic_store_n(&l->owner, 0, __ATOMIC_RELEASE);
}

static void register_barrier(void) {
  long r = syscall(__NR_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0);
  __atomic_store_n(&g_asym_barrier, r == 0, __ATOMIC_RELEASE);
}

/* Once per process (no pthread_once: glibc_compat.h). Without the key, threads use the shared
 * word. Registering a process that already runs several threads waits for an RCU grace period
 * (10-20 ms seen): the shim does it at load (slicer_arb_prepare), while the process is single. */
static int launchers_init(void) {
  if (__atomic_load_n(&g_launchers_ready, __ATOMIC_ACQUIRE)) return 1;
  pthread_mutex_lock(&g_launchers_mu);
  if (!g_launchers_ready && pthread_key_create(&g_launcher_key, launcher_exit) == 0) {
    register_barrier();
    __atomic_store_n(&g_launchers_ready, 1, __ATOMIC_RELEASE);
  }
  pthread_mutex_unlock(&g_launchers_mu);
  return __atomic_load_n(&g_launchers_ready, __ATOMIC_ACQUIRE);
}

void slicer_arb_prepare(void) { launchers_init(); }

static void set_open_slot(void) {
  launcher_slot* l = t_launcher;
  slicer_arb_t_open = l != NULL && l != &g_no_slot && __atomic_load_n(&g_asym_barrier,
                                                                     __ATOMIC_ACQUIRE)
                          ? &l->inflight
                          : NULL;
}

static __attribute__((noinline)) launcher_slot* claim_launcher(void) {
  launcher_slot* mine = &g_no_slot;
  for (int i = 0; launchers_init() && i < LAUNCHER_SLOTS; ++i) {
    uint32_t free_slot = 0;
    if (__atomic_compare_exchange_n(&g_launchers[i].owner, &free_slot, 1, 0, __ATOMIC_ACQ_REL,
                                    __ATOMIC_RELAXED)) {
      mine = &g_launchers[i];
      pthread_setspecific(g_launcher_key, mine);
      break;
    }
  }
  t_launcher = mine;
  set_open_slot();
  return mine;
}

/* The hand-over's side: after HANDOVER is stored, waits until no launch let through under the
 * open lease of `g` is still before its submission. Only a lease that was open (`was_open`) can
 * have let one through just now, so only that one pays for the barrier (IPIs to the CPUs that
 * run this process, dearer in a VM); a timed lease's hand-over only scans. */
static void wait_open_launches(gpu_slot* g, int was_open) {
  if (!was_open) {
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
  } else if (!__atomic_load_n(&g_asym_barrier, __ATOMIC_ACQUIRE) ||
      syscall(__NR_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) != 0) {
    /* Launchers fence themselves unless the barrier is registered; if it is but failed now, a
     * store still in flight on another CPU becomes visible within microseconds. */
    if (__atomic_load_n(&g_asym_barrier, __ATOMIC_ACQUIRE)) {
      struct timespec ts = {0, 1000000};
      nanosleep(&ts, NULL);
    }
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
  }
  for (int i = 0; i < LAUNCHER_SLOTS; ++i) {
    while (__atomic_load_n(&g_launchers[i].inflight, __ATOMIC_ACQUIRE) == &g->gate) {
      struct timespec ts = {0, 20000};
      nanosleep(&ts, NULL);
    }
  }
}

/* ---- Hand-over ----------------------------------------------------------------------------- */

/* mu held; the slot holds a lease. Drains (mu released meanwhile), then RELEASEs. */
static void handover(slicer_arb_client* c, int dev, int more_work) {
  gpu_slot* g = &c->gpus[dev];
  int was_open = get_state(g) == ST_PASS;
  __atomic_store_n(&g->gate.state, ST_HANDOVER, __ATOMIC_SEQ_CST);
  pthread_mutex_unlock(&c->mu);
  /* A launch let through before HANDOVER may not have reached the driver yet: the drain must
   * come after it, or its work would run in the next holder's lease. (Launches count themselves
   * in `inflight` before they read the state, so one of the two sides sees the other.) */
  while (__atomic_load_n(&g->inflight, __ATOMIC_SEQ_CST) != 0) {
    struct timespec ts = {0, 20000};
    nanosleep(&ts, NULL);
  }
  wait_open_launches(g, was_open);
  if (c->drain != NULL) {
    slicer_arb_wait_begin(c, dev);
    c->drain(c->user, dev);
    slicer_arb_wait_end(c, dev);
  }
  trace(c, TR_DRAINED, dev);
  busy_end(g);
  pthread_mutex_lock(&c->mu);
  g->lease = 0;
  if (get_state(g) == ST_HANDOVER) {
    int more = more_work || g->waiters > 0;
    if (send_usage(c, SLICER_ARB_RELEASE, dev, more) == 0) {
      trace(c, TR_RELEASE, dev);
      set_state(g, more ? ST_WAIT : ST_IDLE);
    } else {
      set_state(g, ST_IDLE); /* the connection thread will notice the loss */
    }
  }
  pthread_cond_broadcast(&c->cv);
}

/* ---- Connection thread --------------------------------------------------------------------- */

static void on_disconnected(slicer_arb_client* c) {
  pthread_mutex_lock(&c->mu);
  pthread_mutex_lock(&c->send_mu);
  int fd = __atomic_exchange_n(&c->fd, -1, __ATOMIC_ACQ_REL);
  if (fd >= 0) close(fd);
  pthread_mutex_unlock(&c->send_mu);
  for (int i = 0; i < SLICER_ARB_MAX_GPUS; ++i) {
    gpu_slot* g = &c->gpus[i];
    g->attach_sent = 0;
    g->lease = 0;
    if (g->attached && get_state(g) != ST_RESTART) set_state(g, unreachable_state(c));
  }
  pthread_cond_broadcast(&c->cv);
  pthread_mutex_unlock(&c->mu);
}

static int connect_socket(const char* path) {
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  struct sockaddr_un addr;
  memset(&addr, 0, sizeof addr);
  addr.sun_family = AF_UNIX;
  memcpy(addr.sun_path, path, strlen(path) + 1);
  if (connect(fd, (struct sockaddr*)&addr, sizeof addr) != 0) {
    close(fd);
    return -1;
  }
  struct timeval tv = {1, 0};
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  return fd;
}

/* Sends HELLO and waits (up to 2 s) for WELCOME. Returns 0, or -1 (closed). */
static int handshake(slicer_arb_client* c, int fd) {
  slicer_arb_hello_msg h = c->hello;
  slicer_arb_init(&h.h, SLICER_ARB_HELLO, __atomic_add_fetch(&c->seq, 1, __ATOMIC_RELAXED));
  if (send(fd, &h, sizeof h, MSG_NOSIGNAL) != (ssize_t)sizeof h) return -1;
  struct pollfd p = {fd, POLLIN, 0};
  if (poll(&p, 1, 2000) != 1) return -1;
  union {
    slicer_arb_hdr h;
    slicer_arb_welcome_msg w;
    slicer_arb_err_msg e;
    char raw[SLICER_ARB_MAX_MSG];
  } buf;
  ssize_t n = recv(fd, &buf, sizeof buf, 0);
  if (n <= 0 || slicer_arb_check(&buf, n) != 0) return -1;
  if (buf.h.type == SLICER_ARB_ERROR) {
    buf.e.text[sizeof buf.e.text - 1] = '\0';
    clog_line("level=error event=arbiter_refused detail=\"%s\" code=%ld", buf.e.text,
              (long)buf.e.code);
    return -1;
  }
  if (buf.h.type != SLICER_ARB_WELCOME) return -1;
  __atomic_store_n(&c->client_id, buf.w.client_id, __ATOMIC_RELAXED);
  __atomic_store_n(&c->fail_closed,
                   !c->observe && (c->fail_closed_local || buf.w.fail_closed != 0),
                   __ATOMIC_RELAXED);
  __atomic_store_n(&c->max_queued_ns, (int64_t)buf.w.max_queued_ns, __ATOMIC_RELAXED);
  __atomic_store_n(
      &c->eager,
      buf.w.policy == SLICER_ARB_POLICY_PRIORITY && c->hello.priority == SLICER_ARB_PRIO_HIGH,
      __ATOMIC_RELAXED);
  __atomic_store_n(&c->features, buf.w.features, __ATOMIC_RELAXED);
  uint32_t r = buf.w.report_ms;
  __atomic_store_n(&c->report_ms, r < 50 ? 50 : (r > 60000 ? 60000 : r), __ATOMIC_RELAXED);
  return 0;
}

/* After the handshake: the connection becomes the client's; attached slots are declared. */
static void on_connected(slicer_arb_client* c, int fd) {
  pthread_mutex_lock(&c->mu);
  __atomic_store_n(&c->fd, fd, __ATOMIC_RELEASE);
  __atomic_add_fetch(&c->connects, 1, __ATOMIC_RELAXED);
  for (int i = 0; i < SLICER_ARB_MAX_GPUS; ++i) {
    gpu_slot* g = &c->gpus[i];
    if (!g->attached) continue;
    if (send_attach(c, i) == 0) g->attach_sent = 1;
    uint32_t st = get_state(g);
    if (!c->observe && (st == ST_PASS || st == ST_BLOCKED)) set_state(g, ST_IDLE);
  }
  pthread_cond_broadcast(&c->cv);
  pthread_mutex_unlock(&c->mu);
}

static void on_message(slicer_arb_client* c, const void* buf, ssize_t n) {
  const slicer_arb_hdr* h = (const slicer_arb_hdr*)buf;
  if (h->type == SLICER_ARB_ERROR) {
    slicer_arb_err_msg e;
    memcpy(&e, buf, sizeof e);
    e.text[sizeof e.text - 1] = '\0';
    clog_line("level=error event=arbiter_error detail=\"%s\" code=%ld", e.text, (long)e.code);
    return;
  }
  if (h->type == SLICER_ARB_QUEUE) {
    slicer_arb_queue_msg q;
    memcpy(&q, buf, sizeof q);
    if (q.gpu >= SLICER_ARB_MAX_GPUS) return;
    uint64_t v = q.max_queued_ns;
    v = v < 100000 ? 100000 : (v > 10000000000ull ? 10000000000ull : v);
    __atomic_store_n(&c->gpus[q.gpu].queue_ns, (int64_t)v, __ATOMIC_RELAXED);
    return;
  }
  if (h->type != SLICER_ARB_GRANT && h->type != SLICER_ARB_REVOKE) return;
  if (c->observe) return; /* never asked for a lease */
  slicer_arb_lease_msg m;
  memcpy(&m, buf, sizeof m);
  if (m.gpu >= SLICER_ARB_MAX_GPUS) return;
  int dev = (int)m.gpu;
  gpu_slot* g = &c->gpus[dev];
  pthread_mutex_lock(&c->mu);
  uint32_t st = get_state(g);
  if (h->type == SLICER_ARB_GRANT) {
    if (st == ST_WAIT || st == ST_IDLE) {
      int64_t now = mono_ns();
      g->lease = 1;
      __atomic_store_n(&g->queue_ns, 0, __ATOMIC_RELAXED);
      __atomic_add_fetch(&c->grants, 1, __ATOMIC_RELAXED);
      __atomic_store_n(&g->last_checkpoint, now, __ATOMIC_RELAXED);
      __atomic_store_n(&g->idle_since, 0, __ATOMIC_RELEASE);
      if (m.quantum_ns == 0) {
        set_state(g, ST_PASS);
      } else {
        __atomic_store_n(&g->deadline, now + (int64_t)m.quantum_ns, __ATOMIC_RELAXED);
        set_state(g, ST_TIMED);
      }
      trace(c, TR_GRANT, dev);
      pthread_cond_broadcast(&c->cv);
    } else {
      send_usage(c, SLICER_ARB_RELEASE, dev, 0); /* not wanted (any more) */
    }
  } else if (g->lease && (st == ST_PASS || st == ST_TIMED)) {
    trace(c, TR_REVOKE, dev);
    handover(c, dev, 0);
  }
  pthread_mutex_unlock(&c->mu);
}

static void send_reports(slicer_arb_client* c) {
  for (int i = 0; i < SLICER_ARB_MAX_GPUS; ++i) {
    pthread_mutex_lock(&c->mu);
    int sent = c->gpus[i].attach_sent;
    pthread_mutex_unlock(&c->mu);
    if (sent) send_usage(c, SLICER_ARB_REPORT, i, 0);
  }
}

/* LOAD for each attached device that was busy since the last one (arbiters that take it). */
static void send_loads(slicer_arb_client* c) {
  if (c->observe || !(__atomic_load_n(&c->features, __ATOMIC_RELAXED) & SLICER_ARB_FEATURE_LOAD)) {
    return;
  }
  for (int i = 0; i < SLICER_ARB_MAX_GPUS; ++i) {
    gpu_slot* g = &c->gpus[i];
    pthread_mutex_lock(&c->mu);
    int sent = g->attach_sent;
    pthread_mutex_unlock(&c->mu);
    if (!sent) continue;
    uint64_t busy = busy_now(g);
    if (busy == g->load_sent_busy) continue;
    slicer_arb_load_msg m;
    memset(&m, 0, sizeof m);
    m.gpu = (uint32_t)i;
    m.busy_total_ns = busy;
    m.blocked_total_ns = blocked_now(c, g);
    if (send_msg(c, &m, SLICER_ARB_LOAD) == 0) g->load_sent_busy = busy;
  }
}

static void send_pending_attaches(slicer_arb_client* c) {
  pthread_mutex_lock(&c->mu);
  for (int i = 0; i < SLICER_ARB_MAX_GPUS; ++i) {
    gpu_slot* g = &c->gpus[i];
    if (g->attached && !g->attach_sent && send_attach(c, i) == 0) g->attach_sent = 1;
  }
  pthread_mutex_unlock(&c->mu);
}

/* When the earliest idle timed lease is due back (IDLE_RELEASE_NS after its last sync); 0: none. */
static int64_t idle_deadline(slicer_arb_client* c) {
  int64_t best = 0;
  for (int i = 0; i < SLICER_ARB_MAX_GPUS; ++i) {
    gpu_slot* g = &c->gpus[i];
    if (get_state(g) != ST_TIMED) continue;
    int64_t since = __atomic_load_n(&g->idle_since, __ATOMIC_ACQUIRE);
    if (since == 0 || __atomic_load_n(&g->gate.busy_since, __ATOMIC_ACQUIRE) != 0) continue;
    if (best == 0 || since + IDLE_RELEASE_NS < best) best = since + IDLE_RELEASE_NS;
  }
  return best;
}

/* Hands back timed leases whose holder has had nothing queued for IDLE_RELEASE_NS. A launch
 * racing this sees HANDOVER and waits; work it queued before is drained first. */
static void release_idle(slicer_arb_client* c) {
  int64_t now = mono_ns();
  for (int i = 0; i < SLICER_ARB_MAX_GPUS; ++i) {
    gpu_slot* g = &c->gpus[i];
    if (get_state(g) != ST_TIMED) continue;
    pthread_mutex_lock(&c->mu);
    int64_t since = __atomic_load_n(&g->idle_since, __ATOMIC_ACQUIRE);
    if (get_state(g) == ST_TIMED && g->lease && g->waiters == 0 && since != 0 &&
        now - since >= IDLE_RELEASE_NS &&
        __atomic_load_n(&g->gate.busy_since, __ATOMIC_ACQUIRE) == 0) {
      __atomic_store_n(&g->idle_since, 0, __ATOMIC_RELEASE);
      handover(c, i, 0);
    }
    pthread_mutex_unlock(&c->mu);
  }
}

/* Sleeps `ms` unless woken; returns 1 when asked to stop. */
static int nap(slicer_arb_client* c, int ms) {
  struct pollfd p = {c->wake[0], POLLIN, 0};
  if (poll(&p, 1, ms) > 0) {
    char b[64];
    ssize_t r = read(c->wake[0], b, sizeof b);
    (void)r;
  }
  return __atomic_load_n(&c->stop, __ATOMIC_ACQUIRE);
}

static void* conn_thread(void* arg) {
  slicer_arb_client* c = (slicer_arb_client*)arg;
  int backoff_ms = 10;
  int said_down = 0;
  while (!__atomic_load_n(&c->stop, __ATOMIC_ACQUIRE)) {
    int fd = connect_socket(c->path);
    if (fd >= 0 && handshake(c, fd) != 0) {
      close(fd);
      fd = -1;
    }
    if (fd < 0) {
      if (!said_down) {
        clog_line("level=warn event=arbiter_unreachable socket=%s retry_ms=%ld", c->path,
                  (long)backoff_ms);
        said_down = 1;
      }
      on_disconnected(c);
      if (nap(c, backoff_ms)) break;
      backoff_ms = backoff_ms * 2 > 1000 ? 1000 : backoff_ms * 2;
      continue;
    }
    said_down = 0;
    backoff_ms = 10;
    on_connected(c, fd);
    int64_t next_report = mono_ns() + (int64_t)__atomic_load_n(&c->report_ms, __ATOMIC_RELAXED) *
                                          1000000;
    int64_t next_load = mono_ns() + LOAD_INTERVAL_NS;
    for (int i = 0; i < SLICER_ARB_MAX_GPUS; ++i) c->gpus[i].load_sent_busy = 0;
    for (;;) {
      int64_t now = mono_ns();
      int64_t wake_at = next_report < next_load ? next_report : next_load;
      int64_t idle_at = idle_deadline(c);
      if (idle_at != 0 && idle_at < wake_at) wake_at = idle_at;
      int timeout = wake_at > now ? (int)((wake_at - now) / 1000000) + 1 : 0;
      if (c->spin) timeout = 0;
      struct pollfd p[2] = {{fd, POLLIN, 0}, {c->wake[0], POLLIN, 0}};
      int r = poll(p, 2, timeout);
      if (r < 0 && errno != EINTR) break;
      if (r > 0 && (p[1].revents & POLLIN)) {
        char b[64];
        ssize_t k = read(c->wake[0], b, sizeof b);
        (void)k;
        if (__atomic_load_n(&c->stop, __ATOMIC_ACQUIRE)) {
          slicer_arb_bye_msg bye;
          send_msg(c, &bye, SLICER_ARB_BYE);
          break;
        }
        send_pending_attaches(c);
      }
      if (r > 0 && (p[0].revents & (POLLIN | POLLHUP | POLLERR))) {
        char buf[SLICER_ARB_MAX_MSG + 1];
        ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) break;
        if (n > 0 && slicer_arb_check(buf, n) == 0) on_message(c, buf, n);
      }
      release_idle(c);
      if (mono_ns() >= next_load) {
        send_loads(c);
        next_load = mono_ns() + LOAD_INTERVAL_NS;
      }
      if (mono_ns() >= next_report) {
        send_reports(c);
        next_report = mono_ns() + (int64_t)__atomic_load_n(&c->report_ms, __ATOMIC_RELAXED) *
                                      1000000;
      }
    }
    on_disconnected(c);
  }
  on_disconnected(c);
  return NULL;
}

static int start_thread(slicer_arb_client* c) {
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 256 * 1024);
  int rc = pthread_create(&c->thread, &attr, conn_thread, c);
  pthread_attr_destroy(&attr);
  if (rc == 0) c->thread_running = 1;
  return rc;
}

static void poke(slicer_arb_client* c) {
  char b = 1;
  ssize_t w = write(c->wake[1], &b, 1);
  (void)w;
}

/* ---- API ----------------------------------------------------------------------------------- */

static void copy_str(char* dst, size_t n, const char* src) {
  if (src == NULL) src = "";
  size_t len = strlen(src);
  if (len >= n) len = n - 1;
  memcpy(dst, src, len);
  dst[len] = '\0';
}

/* The client's locks and condition variable (CLOCK_MONOTONIC), made anew: at start, and in a
 * fork child, where a lock another thread held at the fork would never be released. */
static void init_locks(slicer_arb_client* c) {
  pthread_mutex_init(&c->mu, NULL);
  pthread_mutex_init(&c->send_mu, NULL);
  pthread_mutex_init(&c->wait_mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&c->cv, &ca);
  pthread_condattr_destroy(&ca);
}

static const char* libc_getenv(const char* name) { return getenv(name); }

slicer_arb_client* slicer_arb_start(const slicer_arb_options* opts) {
  const char* (*ge)(const char*) = opts && opts->getenv_fn ? opts->getenv_fn : libc_getenv;
  const char* path = opts && opts->socket_path ? opts->socket_path : ge(SLICER_ENV_ARBITER_SOCKET);
  if (path == NULL || path[0] == '\0') return NULL;
  slicer_arb_client* c = (slicer_arb_client*)calloc(1, sizeof *c);
  if (c == NULL) return NULL;
  launchers_init();
  if (strlen(path) >= sizeof c->path) {
    clog_line("level=error event=arbiter_socket_too_long socket=%s len=%ld", path,
              (long)strlen(path));
    free(c);
    return NULL;
  }
  copy_str(c->path, sizeof c->path, path);
  c->hello.pid = (int32_t)getpid();
  copy_str(c->hello.container, sizeof c->hello.container,
           opts && opts->container ? opts->container : ge(SLICER_ENV_CONTAINER_ID));
  copy_str(c->hello.replicas, sizeof c->hello.replicas,
           opts && opts->replicas ? opts->replicas : ge(SLICER_ENV_REPLICA_IDS));
  uint32_t w = opts ? opts->weight_milli : 0;
  if (w == 0) {
    const char* ws = ge(SLICER_ENV_WEIGHT);
    if (ws != NULL && ws[0] != '\0') {
      double d = strtod(ws, NULL);
      if (d > 0 && d < 1e6) w = (uint32_t)(d * 1000 + 0.5);
    }
  }
  c->hello.weight_milli = w;
  uint32_t prio = opts ? opts->priority : SLICER_ARB_PRIO_UNSET;
  if (prio == SLICER_ARB_PRIO_UNSET) {
    const char* ps = ge(SLICER_ENV_PRIORITY);
    if (ps != NULL) {
      if (strcmp(ps, "high") == 0) prio = SLICER_ARB_PRIO_HIGH;
      else if (strcmp(ps, "normal") == 0) prio = SLICER_ARB_PRIO_NORMAL;
      else if (strcmp(ps, "low") == 0) prio = SLICER_ARB_PRIO_LOW;
    }
  }
  c->hello.priority = prio;
  int fc = opts ? opts->fail_closed : -1;
  if (fc < 0) {
    const char* fs = ge(SLICER_ENV_ARBITER_FAIL_CLOSED);
    fc = fs != NULL && strcmp(fs, "1") == 0;
  }
  int ob = opts ? opts->observe : 0;
  if (ob == 0) {
    const char* os = ge(SLICER_ENV_ARBITER_OBSERVE);
    ob = os != NULL && strcmp(os, "1") == 0;
  }
  c->observe = ob > 0;
  if (c->observe) fc = 0; /* never waits for the arbiter */
  c->fail_closed_local = fc;
  c->fail_closed = fc;
  if (fc) c->hello.flags |= SLICER_ARB_HELLO_FAIL_CLOSED;
  if (c->observe) c->hello.flags |= SLICER_ARB_HELLO_OBSERVE;
  const char* sp = ge("SLICER_ARB_SPIN");
  c->spin = sp != NULL && strcmp(sp, "1") == 0;
  const char* tp = ge("SLICER_ARB_TRACE");
  if (tp != NULL && tp[0] != '\0' && strlen(tp) < sizeof c->trace_path) {
    copy_str(c->trace_path, sizeof c->trace_path, tp);
    c->trace = (trace_event*)calloc(TRACE_CAP, sizeof(trace_event));
  }
  c->drain = opts ? opts->drain : NULL;
  c->user = opts ? opts->user : NULL;
  c->fd = -1;
  c->report_ms = 1000;
  c->max_queued_ns = 10000000;
  init_locks(c);
  if (pipe2(c->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
    free(c);
    return NULL;
  }
  pthread_mutex_lock(&c->mu);
  int rc = start_thread(c);
  pthread_mutex_unlock(&c->mu);
  if (rc != 0) {
    close(c->wake[0]);
    close(c->wake[1]);
    free(c);
    return NULL;
  }
  return c;
}

int slicer_arb_attach(slicer_arb_client* c, int dev, const char* uuid) {
  if (c == NULL || dev < 0 || dev >= SLICER_ARB_MAX_GPUS || uuid == NULL ||
      strlen(uuid) >= SLICER_ARB_UUID_LEN) {
    return -1;
  }
  gpu_slot* g = &c->gpus[dev];
  pthread_mutex_lock(&c->mu);
  if (!g->attached) {
    copy_str(g->uuid, sizeof g->uuid, uuid);
    g->attached = 1;
    if (__atomic_load_n(&c->fd, __ATOMIC_ACQUIRE) >= 0) {
      if (send_attach(c, dev) == 0) g->attach_sent = 1;
      set_state(g, c->observe ? ST_PASS : ST_IDLE);
    } else if (get_state(g) != ST_RESTART) {
      set_state(g, unreachable_state(c));
    }
  }
  pthread_mutex_unlock(&c->mu);
  return 0;
}

static int checkpoint_due(slicer_arb_client* c, gpu_slot* g, int64_t now) {
  int64_t last = __atomic_load_n(&g->last_checkpoint, __ATOMIC_RELAXED);
  int64_t limit = __atomic_load_n(&c->max_queued_ns, __ATOMIC_RELAXED);
  if (limit > 0 && now - last >= limit) {
    __atomic_store_n(&g->last_checkpoint, now, __ATOMIC_RELAXED);
    return SLICER_ARB_CHECKPOINT;
  }
  return SLICER_ARB_GO;
}

static int launch_slow(slicer_arb_client* c, int dev) {
  gpu_slot* g = &c->gpus[dev];
  int64_t t0 = 0;
  pthread_mutex_lock(&c->mu);
  for (;;) {
    uint32_t st = get_state(g);
    if (st == ST_RESTART) {
      if (!c->thread_running) start_thread(c);
      for (int i = 0; i < SLICER_ARB_MAX_GPUS; ++i) {
        if (get_state(&c->gpus[i]) == ST_RESTART) set_state(&c->gpus[i], unreachable_state(c));
      }
      continue;
    }
    if (st == ST_PASS) break;
    if (st == ST_TIMED) {
      if (mono_ns() < __atomic_load_n(&g->deadline, __ATOMIC_RELAXED)) break;
      trace(c, TR_EXPIRE, dev);
      handover(c, dev, 1);
      continue;
    }
    if (st == ST_IDLE) {
      if (send_lease(c, SLICER_ARB_REQUEST, dev) == 0) {
        trace(c, TR_REQUEST, dev);
        set_state(g, ST_WAIT);
        continue;
      }
    }
    if (st == ST_WAIT && __atomic_load_n(&c->eager, __ATOMIC_RELAXED)) break;
    /* WAIT, HANDOVER, BLOCKED, or IDLE on a broken connection: wait for the other thread. */
    if (t0 == 0) t0 = mono_ns();
    if (c->spin) {
      ++g->waiters;
      pthread_mutex_unlock(&c->mu);
      for (int64_t until = mono_ns() + 100000000; get_state(g) == st && mono_ns() < until;) {
#if defined(__x86_64__)
        __builtin_ia32_pause();
#endif
      }
      pthread_mutex_lock(&c->mu);
      --g->waiters;
      continue;
    }
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_nsec += 100000000;
    if (ts.tv_nsec >= 1000000000) {
      ts.tv_sec += 1;
      ts.tv_nsec -= 1000000000;
    }
    ++g->waiters;
    pthread_cond_timedwait(&c->cv, &c->mu, &ts);
    --g->waiters;
  }
  /* Let through: counted before mu is released, so a hand-over (which needs mu) waits for it. */
  __atomic_add_fetch(&g->inflight, 1, __ATOMIC_SEQ_CST);
  pthread_mutex_unlock(&c->mu);
  int64_t now = mono_ns();
  if (t0 != 0) {
    __atomic_fetch_add(&c->waited_ns, (uint64_t)(now - t0), __ATOMIC_RELAXED);
    trace(c, TR_GO, dev);
  }
  busy_start(g, now);
  return get_state(g) == ST_TIMED ? checkpoint_due(c, g, now) : SLICER_ARB_GO;
}

int slicer_arb_launch(slicer_arb_client* c, int dev) {
  if (c == NULL || dev < 0 || dev >= SLICER_ARB_MAX_GPUS) return SLICER_ARB_GO;
  gpu_slot* g = &c->gpus[dev];
  __atomic_add_fetch(&g->inflight, 1, __ATOMIC_SEQ_CST);
  uint32_t st = __atomic_load_n(&g->gate.state, __ATOMIC_SEQ_CST);
  if (st == ST_PASS) {
    if (__atomic_load_n(&g->gate.busy_since, __ATOMIC_RELAXED) == 0) busy_start(g, mono_ns());
    return SLICER_ARB_GO;
  }
  if (st == ST_TIMED) {
    int64_t now = mono_ns();
    if (now < __atomic_load_n(&g->deadline, __ATOMIC_RELAXED)) {
      busy_start(g, now);
      return checkpoint_due(c, g, now);
    }
  }
  if (st == ST_WAIT && __atomic_load_n(&c->eager, __ATOMIC_RELAXED)) {
    busy_start(g, mono_ns());
    return SLICER_ARB_GO;
  }
  __atomic_sub_fetch(&g->inflight, 1, __ATOMIC_SEQ_CST);
  return launch_slow(c, dev);
}

int slicer_arb_launch_open(slicer_arb_client* c, int dev) {
  if (c == NULL || dev < 0 || dev >= SLICER_ARB_MAX_GPUS) return 0;
  gpu_slot* g = &c->gpus[dev];
  if (get_state(g) != ST_PASS) return 0;
  launcher_slot* l = t_launcher;
  if (__builtin_expect(l == NULL, 0)) l = claim_launcher();
  if (slicer_arb_t_open != NULL) return slicer_arb_open_fast(&g->gate) != NULL;
  if (__builtin_expect(l == &g_no_slot, 0)) {
    __atomic_add_fetch(&g->inflight, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&g->gate.state, __ATOMIC_SEQ_CST) != ST_PASS) {
      __atomic_sub_fetch(&g->inflight, 1, __ATOMIC_SEQ_CST); /* a hand-over began */
      return 0;
    }
  } else {
    /* No membarrier for the hand-over to rely on: this launcher fences itself. */
    __atomic_store_n(&l->inflight, &g->gate, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (__builtin_expect(__atomic_load_n(&g->gate.state, __ATOMIC_RELAXED) != ST_PASS, 0)) {
      __atomic_store_n(&l->inflight, NULL, __ATOMIC_RELEASE); /* a hand-over began */
      return 0;
    }
  }
  if (__atomic_load_n(&g->gate.busy_since, __ATOMIC_RELAXED) == 0) busy_start(g, mono_ns());
  return 1;
}

const slicer_arb_gate* slicer_arb_gate_of(slicer_arb_client* c, int dev) {
  if (c == NULL || dev < 0 || dev >= SLICER_ARB_MAX_GPUS || c->trace != NULL) return NULL;
  return &c->gpus[dev].gate;
}

void slicer_arb_gate_busy(const slicer_arb_gate* g) {
  /* The gate is the slot's first member. */
  busy_start((gpu_slot*)(uintptr_t)g, mono_ns());
}

void slicer_arb_launched(slicer_arb_client* c, int dev) {
  if (c == NULL || dev < 0 || dev >= SLICER_ARB_MAX_GPUS) return;
  gpu_slot* g = &c->gpus[dev];
  launcher_slot* l = t_launcher;
  if (l != NULL && __atomic_load_n(&l->inflight, __ATOMIC_RELAXED) == &g->gate) {
    __atomic_store_n(&l->inflight, NULL, __ATOMIC_RELEASE); /* let through by launch_open */
    return;
  }
  __atomic_sub_fetch(&g->inflight, 1, __ATOMIC_SEQ_CST);
}

void slicer_arb_submitted(slicer_arb_client* c, int dev) {
  if (c == NULL || dev < 0 || dev >= SLICER_ARB_MAX_GPUS) return;
  trace(c, TR_SUBMIT, dev);
  slicer_arb_launched(c, dev);
}

void slicer_arb_synced(slicer_arb_client* c, int dev) {
  if (c == NULL || dev < 0 || dev >= SLICER_ARB_MAX_GPUS) return;
  gpu_slot* g = &c->gpus[dev];
  busy_end(g);
  if (get_state(g) == ST_TIMED) {
    /* Others wait: if nothing is launched soon, the connection thread hands the lease back. */
    __atomic_store_n(&g->idle_since, mono_ns(), __ATOMIC_RELEASE);
    poke(c);
  }
}

void slicer_arb_wait_begin(slicer_arb_client* c, int dev) {
  if (c == NULL || dev < 0 || dev >= SLICER_ARB_MAX_GPUS) return;
  gpu_slot* g = &c->gpus[dev];
  pthread_mutex_lock(&c->wait_mu);
  if (g->waiting++ == 0) g->blocked_since = mono_ns();
  pthread_mutex_unlock(&c->wait_mu);
}

void slicer_arb_wait_end(slicer_arb_client* c, int dev) {
  if (c == NULL || dev < 0 || dev >= SLICER_ARB_MAX_GPUS) return;
  gpu_slot* g = &c->gpus[dev];
  pthread_mutex_lock(&c->wait_mu);
  if (g->waiting > 0 && --g->waiting == 0) {
    int64_t d = mono_ns() - g->blocked_since;
    if (d > 0) g->blocked_total += (uint64_t)d;
  }
  pthread_mutex_unlock(&c->wait_mu);
}

void slicer_arb_wait_add(slicer_arb_client* c, int dev, int64_t begin_ns, int64_t end_ns) {
  if (c == NULL || dev < 0 || dev >= SLICER_ARB_MAX_GPUS || end_ns <= begin_ns) return;
  gpu_slot* g = &c->gpus[dev];
  pthread_mutex_lock(&c->wait_mu);
  /* A wait in progress already counts from blocked_since on: only the part before it is new. */
  if (g->waiting > 0 && end_ns > g->blocked_since) end_ns = g->blocked_since;
  if (end_ns > begin_ns) g->blocked_total += (uint64_t)(end_ns - begin_ns);
  pthread_mutex_unlock(&c->wait_mu);
}

uint64_t slicer_arb_busy_ns(slicer_arb_client* c, int dev) {
  if (c == NULL || dev < 0 || dev >= SLICER_ARB_MAX_GPUS) return 0;
  return busy_now(&c->gpus[dev]);
}

uint64_t slicer_arb_max_queued_ns(slicer_arb_client* c, int dev) {
  if (c == NULL) return 10000000;
  if (dev >= 0 && dev < SLICER_ARB_MAX_GPUS) {
    int64_t q = __atomic_load_n(&c->gpus[dev].queue_ns, __ATOMIC_RELAXED);
    if (q > 0) return (uint64_t)q;
  }
  return (uint64_t)__atomic_load_n(&c->max_queued_ns, __ATOMIC_RELAXED);
}

void slicer_arb_memory(slicer_arb_client* c, int dev, uint64_t used, uint64_t cap) {
  if (c == NULL || dev < 0 || dev >= SLICER_ARB_MAX_GPUS) return;
  __atomic_store_n(&c->gpus[dev].mem_used, used, __ATOMIC_RELAXED);
  __atomic_store_n(&c->gpus[dev].mem_cap, cap, __ATOMIC_RELAXED);
}

void slicer_arb_after_fork_child(slicer_arb_client* c) {
  if (c == NULL) return;
  /* Only this thread exists now: locks held by others at fork time are re-made. */
  init_locks(c);
  if (c->fd >= 0) close(c->fd);
  c->fd = -1;
  c->thread_running = 0;
  c->seq = 0;
  c->hello.pid = (int32_t)getpid();
  for (int i = 0; i < SLICER_ARB_MAX_GPUS; ++i) {
    gpu_slot* g = &c->gpus[i];
    g->lease = 0;
    g->waiters = 0;
    g->attach_sent = 0;
    g->gate.busy_since = 0;
    g->busy_total = 0;
    g->blocked_total = 0;
    g->waiting = 0;
    g->load_sent_busy = 0;
    g->queue_ns = 0;
    g->idle_since = 0;
    g->inflight = 0;
    set_state(g, g->attached ? ST_RESTART : ST_PASS);
  }
  /* The other threads' launcher slots are free again; membarrier registration is per process. */
  pthread_mutex_init(&g_launchers_mu, NULL);
  for (int i = 0; i < LAUNCHER_SLOTS; ++i) {
    if (&g_launchers[i] == t_launcher) continue;
    g_launchers[i].inflight = NULL;
    g_launchers[i].owner = 0;
  }
  if (t_launcher != NULL && t_launcher != &g_no_slot) t_launcher->inflight = NULL;
  if (__atomic_load_n(&g_asym_barrier, __ATOMIC_ACQUIRE)) register_barrier();
  set_open_slot();
}

void slicer_arb_stop(slicer_arb_client* c) {
  if (c == NULL) return;
  __atomic_store_n(&c->stop, 1, __ATOMIC_RELEASE);
  poke(c);
  pthread_mutex_lock(&c->mu);
  int running = c->thread_running;
  pthread_mutex_unlock(&c->mu);
  if (running) pthread_join(c->thread, NULL);
  close(c->wake[0]);
  close(c->wake[1]);
  pthread_cond_destroy(&c->cv);
  pthread_mutex_destroy(&c->mu);
  pthread_mutex_destroy(&c->send_mu);
  pthread_mutex_destroy(&c->wait_mu);
  free(c);
}

void slicer_arb_write_trace(slicer_arb_client* c) {
  if (c == NULL || c->trace == NULL) return;
  FILE* f = fopen(c->trace_path, "w");
  if (f == NULL) return;
  static const char* const names[] = {"",       "request", "grant",   "go",    "expire",
                                      "revoke", "drained", "release", "submit"};
  uint32_t n = __atomic_load_n(&c->trace_n, __ATOMIC_ACQUIRE);
  if (n > TRACE_CAP) n = TRACE_CAP;
  for (uint32_t i = 0; i < n; ++i) {
    const trace_event* e = &c->trace[i];
    if (e->ev == 0 || e->ev > TR_SUBMIT) continue;
    fprintf(f, "%lld %s %u\n", (long long)e->t, names[e->ev], e->dev);
  }
  fclose(f);
}

void slicer_arb_get_stats(slicer_arb_client* c, slicer_arb_stats* out) {
  memset(out, 0, sizeof *out);
  if (c == NULL) return;
  out->connected = __atomic_load_n(&c->fd, __ATOMIC_ACQUIRE) >= 0;
  out->client_id = __atomic_load_n(&c->client_id, __ATOMIC_RELAXED);
  for (int i = 0; i < SLICER_ARB_MAX_GPUS; ++i) {
    out->busy_total_ns[i] = busy_now(&c->gpus[i]);
    out->blocked_total_ns[i] = blocked_now(c, &c->gpus[i]);
  }
  out->grants = __atomic_load_n(&c->grants, __ATOMIC_RELAXED);
  out->waited_ns = __atomic_load_n(&c->waited_ns, __ATOMIC_RELAXED);
  out->connects = __atomic_load_n(&c->connects, __ATOMIC_RELAXED);
}
