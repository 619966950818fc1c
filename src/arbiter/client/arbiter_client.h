/* The arbiter's client side, for the shim (libslicer.so): gates kernel launches by the node
 * arbiter's leases, reports GPU busy time and memory. Plain C, libc + pthreads only; nothing on
 * the launch path allocates, locks or makes a system call while the process holds its lease.
 *
 * What the shim calls (docs/arbiter.md, "Shim integration"):
 *   slicer_arb_start(&opts)        once, lazily (first launch), when SLICER_ARBITER_SOCKET is set
 *   slicer_arb_attach(c, dev, uuid) when it first sees device ordinal `dev` (its UUID)
 *   slicer_arb_launch(c, dev)       before every kernel or graph launch on `dev` (cuLaunchKernel*,
 *                                   cuLaunchKernelEx*, cuLaunchCooperativeKernel*,
 *                                   cuGraphLaunch*; copies and memsets are not gated: they
 *                                   usually follow the kernels they serve), EXCEPT on a stream
 *                                   that is capturing a CUDA graph (nothing runs then: never
 *                                   block during capture);
 *                                   on SLICER_ARB_CHECKPOINT, wait for earlier work first;
 *   slicer_arb_launched(c, dev)     once that submission has reached the driver
 *   slicer_arb_open_fast(gate), slicer_arb_unmark(slot)
 *                                   the same pair inline, while the lease is open (a lone
 *                                   client); `gate` from slicer_arb_gate_of(c, dev)
 *   slicer_arb_synced(c, dev)       after cuCtxSynchronize / cuStreamSynchronize / cuEvent-
 *                                   Synchronize returned success and the process has nothing
 *                                   else queued on `dev` (ends a busy interval)
 *   slicer_arb_wait_begin/_end(c, dev) around a synchronize or checkpoint wait on `dev`
 *   slicer_arb_wait_add(c, dev, b, e) after a launch that waited for room in the driver's queue
 *   slicer_arb_memory(c, dev, used, cap) after the ledger changes (stored; sent periodically)
 *   slicer_arb_after_fork_child(c)  from the shim's pthread_atfork child handler
 *
 * Behaviour:
 * - While the arbiter grants this process an open-ended lease (it does not keep the GPU busy on
 *   its own, so it runs beside everyone; or it is the only one that does; or the policy is
 *   `off`) or cannot be reached (fail-open, the default), slicer_arb_launch returns at once after
 *   one atomic load and a clock read only when a busy interval starts.
 * - Under contention it blocks until the arbiter grants a lease; when the lease's quantum ends,
 *   or the arbiter revokes it, the process drains (opts.drain) and hands over. Exception: a
 *   high-priority client under the `priority` policy never waits for its GRANT (the arbiter
 *   preempts lower classes for it at once): it launches while its REQUEST is in flight.
 * - A background thread owns the connection: it reconnects with back-off (10 ms .. 1 s) when the
 *   arbiter goes away, sends REPORTs, and hands the lease back on REVOKE when the process is not
 *   launching, or by itself when a timed lease's holder has been idle (synced, nothing launched)
 *   for 1 ms (so an idle process never holds up the others).
 * - Fail-closed (SLICER_ARBITER_FAIL_CLOSED=1 or the arbiter said so in WELCOME): while the
 *   arbiter is unreachable, slicer_arb_launch waits for it instead of running ungated.
 * - Observe-only (SLICER_ARBITER_OBSERVE=1, opts.observe): the process reports its memory and
 *   busy time for metrics and is never gated: every launch takes the open-lease path, connected
 *   or not, whatever the arbiter's failClosed (an MPS client, whose GPU the MPS server shares).
 *
 * Thread-safe: every function may be called from any thread.
 */
#ifndef SLICER_ARBITER_CLIENT_ARBITER_CLIENT_H_
#define SLICER_ARBITER_CLIENT_ARBITER_CLIENT_H_

#include <stdint.h>

#include "src/common/arbiter_protocol.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct slicer_arb_client slicer_arb_client;

typedef struct {
  /* NULL: the environment (SLICER_ARBITER_SOCKET, SLICER_CONTAINER_ID, SLICER_REPLICA_IDS,
   * SLICER_WEIGHT, SLICER_PRIORITY, SLICER_ARBITER_FAIL_CLOSED, SLICER_ARBITER_OBSERVE) through
   * `getenv_fn`. */
  const char* socket_path;
  const char* container;
  const char* replicas;
  const char* (*getenv_fn)(const char* name); /* NULL: getenv */
  uint32_t weight_milli;                      /* 0: from SLICER_WEIGHT, else none */
  uint32_t priority;                          /* SLICER_ARB_PRIO_UNSET: from SLICER_PRIORITY */
  int fail_closed;                            /* -1: from SLICER_ARBITER_FAIL_CLOSED */
  /* 1: observe-only (report memory and busy time, never gated, never wait for the arbiter: an
   * MPS client); 0: from SLICER_ARBITER_OBSERVE ("1"); -1: no. */
  int observe;
  /* Blocks until every piece of work this process queued on device `dev` has finished. Called
   * from the library's thread or a launching thread, with no library lock held; must work from
   * any thread (e.g. cuCtxPushCurrent of the device's primary context + cuCtxSynchronize + pop).
   * Returns 0 on success; on failure the hand-over still happens. NULL: nothing to drain. */
  int (*drain)(void* user, int dev);
  void* user;
} slicer_arb_options;

/* Returns of slicer_arb_launch. */
#define SLICER_ARB_GO 0
/* Go, but first wait for the work queued so far on this stream (e.g. record an event and wait
 * for the previous checkpoint's event, or synchronize the stream): keeps the queued work small
 * so that a hand-over is quick. Only returned while the GPU is contended. */
#define SLICER_ARB_CHECKPOINT 1

/* Starts the client: copies the options, starts the connection thread, returns at once (never
 * waits for the arbiter). NULL when no socket path is configured or resources are exhausted:
 * the shim then runs ungated. */
slicer_arb_client* slicer_arb_start(const slicer_arb_options* opts);

/* Declares device ordinal `dev` (< SLICER_ARB_MAX_GPUS) with its UUID ("GPU-..."). Idempotent;
 * launches on a device that was never attached are not gated. Returns 0, or -1 on a bad
 * argument. */
int slicer_arb_attach(slicer_arb_client* c, int dev, const char* uuid);

/* Before submitting work on `dev`. Returns SLICER_ARB_GO or SLICER_ARB_CHECKPOINT; may block
 * while another client holds the GPU. Every call must be followed by slicer_arb_launched once the
 * work has been handed to the driver (a hand-over drains only after that). */
int slicer_arb_launch(slicer_arb_client* c, int dev);

/* The launch let through by slicer_arb_launch(c, dev) has reached the driver. */
void slicer_arb_launched(slicer_arb_client* c, int dev);
/* The same for a submission the driver accepted; with SLICER_ARB_TRACE it is also noted in the
 * lease timeline (`submit`). */
void slicer_arb_submitted(slicer_arb_client* c, int dev);

/* Once per process, best while it runs a single thread (the shim calls it at load when an
 * arbiter socket is configured; slicer_arb_start calls it too): prepares what
 * slicer_arb_launch_open relies on (a membarrier registration, which in a process that already
 * runs threads waits ~10-20 ms for the kernel, and the key that frees a thread's launcher slot). */
void slicer_arb_prepare(void);

/* The launch path's common case in one call: when slicer_arb_launch(c, dev) would return
 * SLICER_ARB_GO at once (an open-ended lease, no arbiter and fail-open, a device never attached),
 * counts the launch as it would and returns 1; slicer_arb_launched must follow. Otherwise returns
 * 0 and counts nothing (c == NULL too): the shim then pays for what only a gated launch needs
 * (the stream-capture query) and calls slicer_arb_launch. */
int slicer_arb_launch_open(slicer_arb_client* c, int dev);

/* ---- The open-lease launch, inline --------------------------------------------------------
 * slicer_arb_launch_open's common case without a call, for the shim's launch hooks: a lone
 * client's launch spends ~3.3 us in the driver, which evicts the hook's data and code from the
 * nearest caches, so the hook's cost there is its loads and branches more than its instructions
 * (bench/shim/launch_ab.cc measures it). A device's gate is the part of its slot that such a
 * launch reads; the calling thread's launcher slot marks the launch until it is submitted, and a
 * hand-over from the open lease waits for every marked launch (arbiter_client.c, "Open-lease
 * launches"). */
typedef struct {
  uint32_t state;     /* atomic; SLICER_ARB_GATE_OPEN: launch at once */
  int64_t busy_since; /* atomic; 0: nothing of this process queued on the device */
} __attribute__((aligned(16))) slicer_arb_gate; /* never across two cache lines */
#define SLICER_ARB_GATE_OPEN 0u

/* Device `dev`'s gate for slicer_arb_open_fast, or NULL when calls must go through
 * slicer_arb_launch_open and slicer_arb_submitted (the lease timeline is recorded, or a bad
 * argument). Valid until slicer_arb_stop. */
const slicer_arb_gate* slicer_arb_gate_of(slicer_arb_client* c, int dev);

/* Where this thread marks an open launch: its launcher slot, once it has one and the process's
 * memory barrier is registered (slicer_arb_prepare); NULL otherwise. */
extern __thread const slicer_arb_gate** slicer_arb_t_open
    __attribute__((tls_model("initial-exec"), visibility("hidden")));

/* Starts a busy interval on the gate's device (out of line: once per interval). */
void slicer_arb_gate_busy(const slicer_arb_gate* g);

/* What slicer_arb_launch_open(c, dev) does when it returns 1 and `g` is slicer_arb_gate_of(c,
 * dev): when the lease is open, marks the launch in this thread's slot and returns the slot, for
 * slicer_arb_unmark after the submission. Returns NULL and marks nothing otherwise (the thread
 * has no slot yet, or the lease is not open): take slicer_arb_launch_open. */
static inline const slicer_arb_gate** slicer_arb_open_fast(const slicer_arb_gate* g) {
  const slicer_arb_gate** slot = slicer_arb_t_open;
  if (__builtin_expect(slot == 0, 0)) return 0;
  __atomic_store_n(slot, g, __ATOMIC_RELAXED);
  __atomic_signal_fence(__ATOMIC_SEQ_CST); /* the hand-over's membarrier is the other half */
  if (__builtin_expect(__atomic_load_n(&g->state, __ATOMIC_RELAXED) != SLICER_ARB_GATE_OPEN, 0)) {
    __atomic_store_n(slot, 0, __ATOMIC_RELEASE); /* a hand-over began */
    return 0;
  }
  if (__builtin_expect(__atomic_load_n(&g->busy_since, __ATOMIC_RELAXED) == 0, 0)) {
    slicer_arb_gate_busy(g);
  }
  return slot;
}

/* The submission of the launch marked in `slot` (slicer_arb_open_fast's return) is done. */
static inline void slicer_arb_unmark(const slicer_arb_gate** slot) {
  __atomic_store_n(slot, 0, __ATOMIC_RELEASE);
}

/* After the submission of a launch that this thread marked on `g` (by slicer_arb_open_fast or
 * slicer_arb_launch_open) when its slot is no longer at hand: unmarks it and returns 1. Returns 0
 * when the launch was counted otherwise: slicer_arb_launched or slicer_arb_submitted must follow
 * instead. */
static inline int slicer_arb_close_fast(const slicer_arb_gate* g) {
  const slicer_arb_gate** slot = slicer_arb_t_open;
  if (slot == 0 || __atomic_load_n(slot, __ATOMIC_RELAXED) != g) return 0;
  __atomic_store_n(slot, 0, __ATOMIC_RELEASE);
  return 1;
}

/* After a synchronization that left nothing of this process queued on `dev`. While the process
 * holds a timed lease (others wait), a holder that then launches nothing for 1 ms hands the
 * lease back (an idle holder does not keep the GPU for the rest of its quantum). */
void slicer_arb_synced(slicer_arb_client* c, int dev);

/* A thread of this process begins / ends waiting for the process's own work on `dev` (a
 * synchronize call, a checkpoint's wait); every begin is followed by one end on the same thread.
 * The union of such waits is the process's blocked time, reported to the arbiter (LOAD) with the
 * waits in progress: the arbiter leases only processes that spend most of their busy time
 * waiting like this (they keep the GPU busy on their own); the others submit beside everyone,
 * as under plain time-slicing. Hand-over drains count themselves. Not for the launch path (a
 * lock). */
void slicer_arb_wait_begin(slicer_arb_client* c, int dev);
void slicer_arb_wait_end(slicer_arb_client* c, int dev);

/* A wait that already ended: [begin_ns, end_ns) on CLOCK_MONOTONIC, spent by one thread inside a
 * submission the driver held back because the device's queue was full (the shim times a sample
 * of launches, and every launch while they are slow). Counted as blocked like the waits above;
 * the part that overlaps a wait in progress on `dev` is not counted twice. Takes a lock: only
 * for a launch that already waited. */
void slicer_arb_wait_add(slicer_arb_client* c, int dev, int64_t begin_ns, int64_t end_ns);

/* The time (ns) this process has had work queued on `dev` so far (what it reports as busy). */
uint64_t slicer_arb_busy_ns(slicer_arb_client* c, int dev);

/* The most work (ns) the arbiter wants queued at once on `dev`: its QUEUE bound for the current
 * open lease (large for a shared lease, which nobody waits to take over), else WELCOME's
 * max_queued (10 ms until told). The shim sizes its checkpoints by it. */
uint64_t slicer_arb_max_queued_ns(slicer_arb_client* c, int dev);

/* The process's memory on `dev` and the container's cap (0: none). */
void slicer_arb_memory(slicer_arb_client* c, int dev, uint64_t used, uint64_t cap);

/* In a forked child: the connection and thread are the parent's. The child reconnects on its
 * first gated launch. */
void slicer_arb_after_fork_child(slicer_arb_client* c);

/* Says BYE, stops the thread, frees the client. Launches must have stopped. */
void slicer_arb_stop(slicer_arb_client* c);

/* With SLICER_ARB_TRACE=FILE set at start: writes the lease timeline (`mono_ns event dev` lines:
 * request, grant, go, expire, revoke, drained, release, submit) to FILE. For measurements; the
 * timeline holds the first 65536 events. */
void slicer_arb_write_trace(slicer_arb_client* c);

/* Introspection for tests and logs. */
typedef struct {
  int connected;
  uint64_t client_id;
  uint64_t busy_total_ns[SLICER_ARB_MAX_GPUS];
  uint64_t blocked_total_ns[SLICER_ARB_MAX_GPUS];
  uint64_t grants;
  uint64_t waited_ns; /* total time slicer_arb_launch blocked */
  uint64_t connects;
} slicer_arb_stats;
void slicer_arb_get_stats(slicer_arb_client* c, slicer_arb_stats* out);

#ifdef __cplusplus
}
#endif

#endif /* SLICER_ARBITER_CLIENT_ARBITER_CLIENT_H_ */
