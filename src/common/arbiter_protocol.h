/* The wire protocol between the node arbiter (`slicer arbiter`) and its clients (the shim in
 * every GPU process, through src/arbiter/client/). Plain C: the shim includes it and nothing else
 * from src/ but shim_contract.h.
 *
 * Transport: one AF_UNIX SOCK_SEQPACKET connection per client process to the arbiter's socket
 * (SLICER_ARBITER_SOCKET in the container). SEQPACKET keeps message boundaries and reports the
 * peer's death as EOF/HUP, so a client killed mid-lease is noticed at once.
 *
 * Framing: every message is one packet: a slicer_arb_hdr followed by the body of its type.
 * `size` is the whole packet (header + body) and must equal the size of that type's struct;
 * nothing is longer than SLICER_ARB_MAX_MSG. Integers are host byte order (both ends are on one
 * machine). Strings are NUL-terminated inside their fixed arrays; a string that fills its array
 * without a NUL is a protocol error.
 *
 * Versioning: `version` is SLICER_ARB_VERSION. The arbiter answers a HELLO of another version
 * with ERROR(SLICER_ARB_E_VERSION) and closes; a client that gets that error runs ungated (or
 * waits, if fail-closed) exactly as when the arbiter is down. New fields go into new message
 * types, never into old structs.
 *
 * Identity: the arbiter takes the client's pid and uid from SO_PEERCRED and its cgroup from
 * /proc/<pid>/cgroup. What HELLO claims (container token, replica IDs, weight, priority) is
 * checked against that: a claim that disagrees with the kernel or with the kubelet's records is
 * answered with ERROR(SLICER_ARB_E_IDENTITY) and the connection is closed. A connection only ever
 * acts on its own leases and reports.
 *
 * Conversation (c = client, a = arbiter):
 *   c HELLO                  a WELCOME | ERROR+close
 *   c ATTACH(gpu, uuid)      (no reply; ERROR+close if invalid) -- once per GPU the process uses
 *   c REQUEST(gpu)           a GRANT(gpu, quantum) when it is this client's turn
 *   a REVOKE(gpu)            the holder must drain its queued work and RELEASE soon
 *   c RELEASE(gpu, busy)     ends the lease; `more_work` asks for the next turn at once
 *   c REPORT(gpu, busy, mem) periodically (~1 s): cumulative GPU busy time and memory
 *   c LOAD(gpu, busy, blocked) every ~50 ms while busy, when WELCOME's features has
 *                            SLICER_ARB_FEATURE_LOAD: how much of its busy time the process
 *                            spent waiting for its own GPU work (the arbiter leases only the
 *                            clients that keep the GPU busy on their own; docs/arbiter.md)
 *   a QUEUE(gpu, max_queued) how much work the holder of an open lease may keep queued (its
 *                            checkpoints' bound): little among bound clients, so that a hand-over
 *                            is quick; much for a shared lease, which nobody waits to take over
 *   c BYE                    orderly end (EOF means the same)
 * An observe-only client (HELLO flag SLICER_ARB_HELLO_OBSERVE: an MPS client, which the MPS
 * server runs beside the others and a lease would serialise) sends HELLO, ATTACH, REPORT and BYE
 * only: it is counted for metrics (memory, busy time, pod) and never scheduled; a REQUEST,
 * RELEASE or LOAD from it is answered with ERROR(SLICER_ARB_E_STATE) and closes it. It never
 * waits for the arbiter, fail-closed or not (an arbiter older than the flag would schedule it,
 * but it never asks for a lease, so it runs ungated there too).
 * A GRANT with quantum_ns == 0 is open-ended: the client submits freely until REVOKE (the lone
 * client that saturates the GPU, and every client that does not, run ungated this way, paying
 * nothing per launch).
 */
#ifndef SLICER_COMMON_ARBITER_PROTOCOL_H_
#define SLICER_COMMON_ARBITER_PROTOCOL_H_

#include <stdint.h>

#define SLICER_ARB_MAGIC 0x42524153u /* "SARB" little-endian */
#define SLICER_ARB_VERSION 1
#define SLICER_ARB_MAX_MSG 1024
#define SLICER_ARB_MAX_GPUS 16 /* GPU slots per client: 0..15 */
#define SLICER_ARB_UUID_LEN 48
#define SLICER_ARB_TOKEN_LEN 72
#define SLICER_ARB_REPLICAS_LEN 640
/* Most replica IDs one HELLO may claim (more is refused with SLICER_ARB_E_LIMIT). */
#define SLICER_ARB_MAX_REPLICAS 64

/* Default socket path on the node (`slicer arbiter --socket`). */
#define SLICER_ARB_DEFAULT_SOCKET "/var/run/gpu-slicer/arbiter.sock"

/* Environment read by the client library (besides SLICER_ARBITER_SOCKET and
 * SLICER_CONTAINER_ID from shim_contract.h):
 * SLICER_REPLICA_IDS     comma-separated replica IDs (<GPU-UUID>::<n>) of the container, set by
 *                        Allocate; an entry "::<n>" is replica n of the GPU named before it
 *                        ("GPU-a::0,::3,GPU-b::2"). The arbiter checks them against the
 *                        kubelet's records.
 * SLICER_WEIGHT          requested weight (standalone `slicer run --weight`); honoured within
 *                        the arbiter's configured limits.
 * SLICER_PRIORITY        requested class: high, normal, low.
 * SLICER_ARBITER_FAIL_CLOSED "1": wait for the arbiter instead of running ungated while it is
 *                        unreachable (the arbiter's own failClosed setting, remembered from
 *                        WELCOME, applies as well).
 * SLICER_ARBITER_OBSERVE "1": observe-only (above): report, never be gated. Set by Allocate for
 *                        MPS containers and by `slicer run --mps`. */
#define SLICER_ENV_REPLICA_IDS "SLICER_REPLICA_IDS"
#define SLICER_ENV_WEIGHT "SLICER_WEIGHT"
#define SLICER_ENV_PRIORITY "SLICER_PRIORITY"
#define SLICER_ENV_ARBITER_FAIL_CLOSED "SLICER_ARBITER_FAIL_CLOSED"
#define SLICER_ENV_ARBITER_OBSERVE "SLICER_ARBITER_OBSERVE"

typedef enum {
  SLICER_ARB_HELLO = 1,
  SLICER_ARB_WELCOME = 2,
  SLICER_ARB_ATTACH = 3,
  SLICER_ARB_REQUEST = 4,
  SLICER_ARB_GRANT = 5,
  SLICER_ARB_REVOKE = 6,
  SLICER_ARB_RELEASE = 7,
  SLICER_ARB_REPORT = 8,
  SLICER_ARB_BYE = 9,
  SLICER_ARB_ERROR = 10,
  SLICER_ARB_LOAD = 11,
  SLICER_ARB_QUEUE = 12,
  SLICER_ARB_TYPE_MAX = 12,
} slicer_arb_type;

typedef enum {
  SLICER_ARB_E_MALFORMED = 1, /* bad magic, size, type or string: connection closed */
  SLICER_ARB_E_VERSION = 2,   /* unsupported version: connection closed */
  SLICER_ARB_E_IDENTITY = 3,  /* claim contradicts the kernel / kubelet: connection closed */
  SLICER_ARB_E_STATE = 4,     /* message out of order (e.g. REQUEST before HELLO): closed */
  SLICER_ARB_E_FLOOD = 5,     /* too many messages: connection closed */
  SLICER_ARB_E_LIMIT = 6,     /* too many clients / GPUs: connection closed */
  SLICER_ARB_E_OVERSIZE = 7,  /* packet longer than SLICER_ARB_MAX_MSG: connection closed */
} slicer_arb_error;

typedef enum {
  SLICER_ARB_PRIO_UNSET = 0,
  SLICER_ARB_PRIO_HIGH = 1,
  SLICER_ARB_PRIO_NORMAL = 2,
  SLICER_ARB_PRIO_LOW = 3,
} slicer_arb_priority;

typedef enum {
  SLICER_ARB_POLICY_OFF = 0,
  SLICER_ARB_POLICY_FAIR = 1,
  SLICER_ARB_POLICY_PRIORITY = 2,
} slicer_arb_policy;

typedef struct {
  uint32_t magic;
  uint16_t version;
  uint16_t type;
  uint32_t size; /* whole packet, header included */
  uint32_t seq;  /* sender's counter; echoed nowhere, for logs */
} slicer_arb_hdr;

typedef struct {
  slicer_arb_hdr h;
  int32_t pid;                /* as the client sees it (informational: pid namespaces differ) */
  uint32_t flags;             /* SLICER_ARB_HELLO_* */
  uint32_t weight_milli;      /* requested weight x 1000; 0: none */
  uint32_t priority;          /* slicer_arb_priority requested */
  char container[SLICER_ARB_TOKEN_LEN];     /* SLICER_CONTAINER_ID; "" when unset */
  char replicas[SLICER_ARB_REPLICAS_LEN];   /* SLICER_REPLICA_IDS; "" when unset */
} slicer_arb_hello_msg;
#define SLICER_ARB_HELLO_FAIL_CLOSED 1u
#define SLICER_ARB_HELLO_OBSERVE 2u /* reports only, never scheduled (above) */

typedef struct {
  slicer_arb_hdr h;
  uint64_t client_id;    /* the arbiter's name for this connection (logs, metrics) */
  uint32_t policy;       /* slicer_arb_policy */
  uint32_t fail_closed;  /* 1: clients wait for the arbiter while it is unreachable */
  uint64_t quantum_ns;   /* base quantum (for the client's queue bound) */
  uint64_t max_queued_ns; /* keep at most this much work queued while gated */
  uint32_t report_ms;    /* REPORT interval */
  uint32_t features;     /* SLICER_ARB_FEATURE_*; 0 from arbiters older than the field */
} slicer_arb_welcome_msg;
/* The arbiter takes LOAD messages (an older one closes a connection that sends one). */
#define SLICER_ARB_FEATURE_LOAD 1u
/* The arbiter counts SLICER_ARB_HELLO_OBSERVE clients for metrics only. */
#define SLICER_ARB_FEATURE_OBSERVE 2u

typedef struct {
  slicer_arb_hdr h;
  uint32_t gpu; /* client's slot, < SLICER_ARB_MAX_GPUS */
  uint32_t reserved;
  char uuid[SLICER_ARB_UUID_LEN]; /* "GPU-..." or "MIG-..." */
} slicer_arb_attach_msg;

/* REQUEST, GRANT, REVOKE carry one GPU slot. */
typedef struct {
  slicer_arb_hdr h;
  uint32_t gpu;
  uint32_t reserved;
  uint64_t quantum_ns; /* GRANT: lease length; 0 = open-ended (until REVOKE). Else 0. */
} slicer_arb_lease_msg;

typedef struct {
  slicer_arb_hdr h;
  uint32_t gpu;
  uint32_t more_work; /* RELEASE: 1 = queue me again at once */
  uint64_t busy_total_ns; /* cumulative GPU busy time on this GPU since ATTACH (monotonic) */
  uint64_t mem_used;      /* bytes this process holds on the GPU */
  uint64_t mem_cap;       /* the container's cap on the GPU; 0: none */
} slicer_arb_usage_msg; /* RELEASE and REPORT */

/* LOAD: cumulative since ATTACH, both monotonic. `blocked` is the part of `busy` the process's
 * threads spent waiting for its own work on the GPU (synchronize calls, the shim's checkpoints,
 * drains); a process that keeps the GPU busy by itself waits most of its busy time, one that
 * is bound by its CPU (launch-bound inference, a notebook) waits little. */
typedef struct {
  slicer_arb_hdr h;
  uint32_t gpu;
  uint32_t reserved;
  uint64_t busy_total_ns;
  uint64_t blocked_total_ns;
} slicer_arb_load_msg;

/* QUEUE (arbiter to client; older clients ignore it): until the next GRANT, keep at most
 * `max_queued_ns` of work queued on the GPU (WELCOME's max_queued after every GRANT). */
typedef struct {
  slicer_arb_hdr h;
  uint32_t gpu;
  uint32_t reserved;
  uint64_t max_queued_ns;
} slicer_arb_queue_msg;

typedef struct {
  slicer_arb_hdr h;
  uint32_t code; /* slicer_arb_error */
  uint32_t reserved;
  char text[200];
} slicer_arb_err_msg;

typedef struct {
  slicer_arb_hdr h;
} slicer_arb_bye_msg;

/* The body size each type must have; 0 for an unknown type. */
static inline uint32_t slicer_arb_size_of(uint32_t type) {
  switch (type) {
    case SLICER_ARB_HELLO: return (uint32_t)sizeof(slicer_arb_hello_msg);
    case SLICER_ARB_WELCOME: return (uint32_t)sizeof(slicer_arb_welcome_msg);
    case SLICER_ARB_ATTACH: return (uint32_t)sizeof(slicer_arb_attach_msg);
    case SLICER_ARB_REQUEST:
    case SLICER_ARB_GRANT:
    case SLICER_ARB_REVOKE: return (uint32_t)sizeof(slicer_arb_lease_msg);
    case SLICER_ARB_RELEASE:
    case SLICER_ARB_REPORT: return (uint32_t)sizeof(slicer_arb_usage_msg);
    case SLICER_ARB_BYE: return (uint32_t)sizeof(slicer_arb_bye_msg);
    case SLICER_ARB_ERROR: return (uint32_t)sizeof(slicer_arb_err_msg);
    case SLICER_ARB_LOAD: return (uint32_t)sizeof(slicer_arb_load_msg);
    case SLICER_ARB_QUEUE: return (uint32_t)sizeof(slicer_arb_queue_msg);
    default: return 0;
  }
}

static inline void slicer_arb_init(slicer_arb_hdr* h, uint32_t type, uint32_t seq) {
  h->magic = SLICER_ARB_MAGIC;
  h->version = SLICER_ARB_VERSION;
  h->type = (uint16_t)type;
  h->size = slicer_arb_size_of(type);
  h->seq = seq;
}

/* 0 when a received packet of `len` bytes is a well-formed message (magic, version, type and
 * size agree); else the slicer_arb_error to answer with. */
static inline uint32_t slicer_arb_check(const void* buf, long len) {
  const slicer_arb_hdr* h = (const slicer_arb_hdr*)buf;
  if (len > SLICER_ARB_MAX_MSG) return SLICER_ARB_E_OVERSIZE;
  if (len < (long)sizeof(slicer_arb_hdr) || h->magic != SLICER_ARB_MAGIC) {
    return SLICER_ARB_E_MALFORMED;
  }
  if (h->version != SLICER_ARB_VERSION) return SLICER_ARB_E_VERSION;
  uint32_t want = slicer_arb_size_of(h->type);
  if (want == 0 || h->size != want || (long)want != len) return SLICER_ARB_E_MALFORMED;
  return 0;
}

/* 1 when `s` has a NUL within `n` bytes. */
static inline int slicer_arb_str_ok(const char* s, unsigned long n) {
  for (unsigned long i = 0; i < n; ++i) {
    if (s[i] == '\0') return 1;
  }
  return 0;
}

#ifdef __cplusplus
#include <type_traits>
static_assert(sizeof(slicer_arb_hello_msg) <= SLICER_ARB_MAX_MSG, "HELLO too large");
static_assert(std::is_trivially_copyable_v<slicer_arb_hello_msg>, "wire structs are PODs");
#endif

#endif /* SLICER_COMMON_ARBITER_PROTOCOL_H_ */
