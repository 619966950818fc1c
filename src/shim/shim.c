/* libslicer.so: per-container GPU memory caps, preloaded into every process of a container.
 *
 * How calls reach it: the functions of hooks.h are exported under their driver names, so direct
 * calls bind here first (LD_PRELOAD or /etc/ld.so.preload); dlsym is interposed so that lookups
 * by handle (dlopen("libcuda.so.1") + dlsym, as the CUDA runtime and pynvml do) return the same
 * wrappers; and cuGetProcAddress / cuGetProcAddress_v2 return the wrapper of the variant that the
 * driver chose. Every other function goes to the driver untouched.
 *
 * Launches (cuLaunchKernel*, cuLaunchCooperativeKernel*, cuGraphLaunch*) and synchronizes do
 * enter the shim when the node arbiter is in use (SLICER_ARBITER_SOCKET): they are gated by its
 * leases and timed for its LOAD reports (docs/arbiter.md, "Shim integration"). Without an
 * arbiter a launch hook is a load, a compare and the driver's call (bench/shim/launch_ab.cc).
 *
 * Policy (docs/shim.md): each allocation is charged to the container's ledger for its GPU before
 * the driver is asked, and given back if the driver fails or when it is freed. Past the cap the
 * call returns CUDA_ERROR_OUT_OF_MEMORY and the driver is not called. cuMemGetInfo_v2,
 * cuDeviceTotalMem_v2 and NVML's memory info report the cap.
 *
 * Nothing happens at load time: configuration, libcuda's symbols and ledgers are set up on the
 * first hooked call, so the many processes of a container that never touch a GPU pay nothing.
 * No hook holds a lock while it calls the driver, and no hook calls an exported hooked symbol
 * (only the real pointers), so a driver that calls back in, or a cuInit made inside a hook,
 * cannot deadlock.
 */
#include <cuda.h>
#include <dlfcn.h>
#include <errno.h>
#include <nvml.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "src/arbiter/client/arbiter_client.h"
#include "src/common/shim_contract.h"
#include "src/shim/config.h"
#include "src/shim/hooks.h"
#include "src/shim/ledger.h"

/* cuda.h maps this name to cuGetProcAddress_v2; the shim also exports the old entry point. */
#undef cuGetProcAddress

#define SLICER_EXPORT __attribute__((visibility("default")))
/* `, a, b` for a parameter or argument list `(a, b)`, nothing for `()` (GNU comma elision). */
#define SLICER_TAIL(...) , ##__VA_ARGS__

/* ---- Logging: one line per event, key=value, stderr ------------------------------------------ */

static slicer_config g_cfg;

__attribute__((format(printf, 2, 3))) static void slog(const char* level, const char* fmt, ...) {
  char buf[768];
  int n = snprintf(buf, sizeof buf, "slicer-shim: level=%s pid=%d ", level, (int)getpid());
  va_list ap;
  va_start(ap, fmt);
  int m = vsnprintf(buf + n, sizeof buf - (size_t)n - 1, fmt, ap);
  va_end(ap);
  size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
  if (len > sizeof buf - 2) len = sizeof buf - 2;
  buf[len++] = '\n';
  ssize_t w = write(2, buf, len);
  (void)w;
}

#define SLOG_DEBUG(...) \
  do {                  \
    if (g_cfg.debug) slog("debug", __VA_ARGS__); \
  } while (0)

/* ---- Once, without pthread_once (in libpthread on old glibc) --------------------------------- */

typedef struct {
  int done; /* atomic */
  pthread_mutex_t mu;
} once_t;
#define ONCE_INIT {0, PTHREAD_MUTEX_INITIALIZER}

static void run_once(once_t* o, void (*fn)(void)) {
  if (__atomic_load_n(&o->done, __ATOMIC_ACQUIRE)) return;
  pthread_mutex_lock(&o->mu);
  if (!o->done) {
    fn();
    __atomic_store_n(&o->done, 1, __ATOMIC_RELEASE);
  }
  pthread_mutex_unlock(&o->mu);
}

/* ---- The table --------------------------------------------------------------------------------- */

enum { LIB_CUDA, LIB_NVML };
enum { FLAV_PLAIN, FLAV_PTSZ };

#define X(lib, ret, base, variant, since, flav, hook, params, args) IDX_##variant,
enum { SLICER_HOOKS(X) IDX_COUNT };
#undef X

#define X(lib, ret, base, variant, since, flav, hook, params, args) \
  typedef ret (*pfn_##variant) params;
SLICER_HOOKS(X)
#undef X

#define X(lib, ret, base, variant, since, flav, hook, params, args) \
  static ret hook(pfn_##variant real SLICER_TAIL params);
SLICER_HOOKS(X)
#undef X

/* The wrappers' prototypes (cuda.h declares some of them too; the compiler checks they agree). */
#define X(lib, ret, base, variant, since, flav, hook, params, args) SLICER_EXPORT ret variant params;
SLICER_HOOKS(X)
#undef X

typedef struct {
  int lib;
  int flavour;
  int since;
  const char* base;
  const char* variant;
  void* wrapper;
  void* real; /* atomic; set once, from the library's own symbol or what dlsym returned */
} hook_entry;

#define X(lib, ret, base, variant, since, flav, hook, params, args) \
  {LIB_##lib, FLAV_##flav, since, #base, #variant, (void*)&variant, NULL},
static hook_entry g_hooks[IDX_COUNT] = {SLICER_HOOKS(X)};
#undef X

/* ---- Real dlsym and the driver libraries -------------------------------------------------------- */

typedef void* (*dlsym_fn)(void*, const char*);
static dlsym_fn g_real_dlsym;

static void* null_dlsym(void* handle, const char* name) { return NULL; }

/* glibc's dlsym (GLIBC_2.34 where libdl moved into libc, the base version before). Visible to the
 * assembly entry point below. */
__attribute__((visibility("hidden"))) dlsym_fn slicer_real_dlsym(void) {
  dlsym_fn f = __atomic_load_n(&g_real_dlsym, __ATOMIC_ACQUIRE);
  if (f != NULL) return f;
  f = (dlsym_fn)dlvsym(RTLD_NEXT, "dlsym", "GLIBC_2.34");
#ifdef SLICER_GLIBC_BASE
  if (f == NULL) f = (dlsym_fn)dlvsym(RTLD_NEXT, "dlsym", SLICER_GLIBC_BASE);
#endif
  if (f == NULL) f = null_dlsym;
  __atomic_store_n(&g_real_dlsym, f, __ATOMIC_RELEASE);
  return f;
}

static void set_real(hook_entry* e, void* p) {
  void* expected = NULL;
  if (p != NULL && p != e->wrapper) {
    __atomic_compare_exchange_n(&e->real, &expected, p, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
  }
}

/* Driver functions the shim calls itself and does not hook. */
typedef CUresult (*pfn_ctx_get_device)(CUdevice*);
typedef CUresult (*pfn_device_get_uuid)(CUuuid*, CUdevice);
typedef nvmlReturn_t (*pfn_nvml_get_uuid)(nvmlDevice_t, char*, unsigned int);
typedef CUresult (*pfn_device_get_count)(int*);
static pfn_device_get_count g_cuDeviceGetCount;
static pfn_ctx_get_device g_cuCtxGetDevice;
static pfn_device_get_uuid g_cuDeviceGetUuid;
static pfn_nvml_get_uuid g_nvmlDeviceGetUUID;
/* For time shares (the arbiter): draining, stream capture, checkpoints. */
static struct {
  CUresult (*ctx_get_current)(CUcontext*);
  CUresult (*ctx_push)(CUcontext);
  CUresult (*ctx_pop)(CUcontext*);
  CUresult (*primary_retain)(CUcontext*, CUdevice);
  CUresult (*primary_release)(CUdevice);
  CUresult (*stream_is_capturing)(CUstream, CUstreamCaptureStatus*);
  CUresult (*stream_query)(CUstream);
  CUresult (*event_create)(CUevent*, unsigned int);
  CUresult (*event_record)(CUevent, CUstream);
  CUresult (*event_elapsed)(float*, CUevent, CUevent);
  CUresult (*capture_mode)(CUstreamCaptureMode*);
} g_drv;

static void* open_lib(const char* soname) {
  void* h = dlopen(soname, RTLD_LAZY | RTLD_NOLOAD);
  if (h == NULL) h = dlopen(soname, RTLD_LAZY);
  return h;
}

static void resolve_lib(int lib, void* handle) {
  if (handle == NULL) return;
  dlsym_fn real = slicer_real_dlsym();
  for (int i = 0; i < IDX_COUNT; ++i) {
    if (g_hooks[i].lib == lib) set_real(&g_hooks[i], real(handle, g_hooks[i].variant));
  }
}

static once_t g_cuda_once = ONCE_INIT;
static void cuda_init(void) {
  void* h = open_lib("libcuda.so.1");
  if (h == NULL) {
    slog("error", "event=libcuda_missing detail=\"%s\"", dlerror());
    return;
  }
  resolve_lib(LIB_CUDA, h);
  dlsym_fn real = slicer_real_dlsym();
  g_cuCtxGetDevice = (pfn_ctx_get_device)real(h, "cuCtxGetDevice");
  g_cuDeviceGetCount = (pfn_device_get_count)real(h, "cuDeviceGetCount");
  g_cuDeviceGetUuid = (pfn_device_get_uuid)real(h, "cuDeviceGetUuid_v2");
  if (g_cuDeviceGetUuid == NULL) g_cuDeviceGetUuid = (pfn_device_get_uuid)real(h, "cuDeviceGetUuid");
  *(void**)&g_drv.ctx_get_current = real(h, "cuCtxGetCurrent");
  *(void**)&g_drv.ctx_push = real(h, "cuCtxPushCurrent_v2");
  *(void**)&g_drv.ctx_pop = real(h, "cuCtxPopCurrent_v2");
  *(void**)&g_drv.primary_retain = real(h, "cuDevicePrimaryCtxRetain");
  *(void**)&g_drv.primary_release = real(h, "cuDevicePrimaryCtxRelease_v2");
  *(void**)&g_drv.stream_is_capturing = real(h, "cuStreamIsCapturing");
  *(void**)&g_drv.stream_query = real(h, "cuStreamQuery");
  *(void**)&g_drv.event_create = real(h, "cuEventCreate");
  *(void**)&g_drv.event_record = real(h, "cuEventRecord");
  *(void**)&g_drv.event_elapsed = real(h, "cuEventElapsedTime_v2");
  if (g_drv.event_elapsed == NULL) *(void**)&g_drv.event_elapsed = real(h, "cuEventElapsedTime");
  *(void**)&g_drv.capture_mode = real(h, "cuThreadExchangeStreamCaptureMode");
}

static once_t g_nvml_once = ONCE_INIT;
static void nvml_init(void) {
  void* h = open_lib("libnvidia-ml.so.1");
  if (h == NULL) return;
  resolve_lib(LIB_NVML, h);
  g_nvmlDeviceGetUUID = (pfn_nvml_get_uuid)slicer_real_dlsym()(h, "nvmlDeviceGetUUID");
}

/* ---- Configuration ----------------------------------------------------------------------------- */

static const char* env(const char* name) { return getenv(name); }
static void after_fork_child(void);
static void arb_after_fork_child(void);

static once_t g_config_once = ONCE_INIT;
static void config_init(void) {
  slicer_config_load(&g_cfg, env);
  pthread_atfork(NULL, NULL, after_fork_child);
  switch (g_cfg.mode) {
    case SLICER_MODE_OFF:
      if (g_cfg.reason[0]) slog("info", "event=caps_off reason=\"%s\"", g_cfg.reason);
      else SLOG_DEBUG("event=caps_off reason=\"no %s in the environment\"", SLICER_ENV_MEMORY_LIMITS);
      break;
    case SLICER_MODE_ENFORCE:
      if (g_cfg.reason[0]) slog("warn", "event=opt_out_refused reason=\"%s\"", g_cfg.reason);
      SLOG_DEBUG("event=caps_on limits=%d container=%s ledger_dir=%s arbiter=\"%s\"",
                 g_cfg.nlimits, g_cfg.container_id, g_cfg.ledger_dir, g_cfg.arbiter_socket);
      break;
    case SLICER_MODE_DENY:
      break; /* said at the first refused allocation, where the user will look */
  }
}

static slicer_mode mode(void) {
  run_once(&g_config_once, config_init);
  return g_cfg.mode;
}

static __attribute__((noinline)) void* real_of_first(int idx) {
  run_once(g_hooks[idx].lib == LIB_CUDA ? &g_cuda_once : &g_nvml_once,
           g_hooks[idx].lib == LIB_CUDA ? cuda_init : nvml_init);
  return __atomic_load_n(&g_hooks[idx].real, __ATOMIC_ACQUIRE);
}

/* Inline: every exported wrapper starts here (a launch-bound loop pays it per launch). */
static inline void* real_of(int idx) {
  void* p = __atomic_load_n(&g_hooks[idx].real, __ATOMIC_ACQUIRE);
  if (__builtin_expect(p != NULL, 1)) return p;
  return real_of_first(idx);
}

/* ---- GPUs and their ledgers -------------------------------------------------------------------- */

enum { GPU_NO_CAP = 1, GPU_READY, GPU_BROKEN };

typedef struct {
  int state;
  char key[SLICER_MAX_KEY + 1];
  uint64_t cap;
  const slicer_ledger_ops* ops;
  void* impl;
  int warned;    /* atomic: over-cap messages printed */
  int ordinal;   /* atomic; device ordinal once seen by one (-1: only through NVML) */
  uint64_t mine; /* atomic; bytes this process has charged here (reported to the arbiter) */
} gpu_state;

#define MAX_GPUS 64
static pthread_mutex_t g_gpu_mu = PTHREAD_MUTEX_INITIALIZER;
static gpu_state g_gpus[MAX_GPUS]; /* by key, filled in order; never removed */
static int g_ngpus;                /* atomic */
static gpu_state* g_by_ordinal[MAX_GPUS]; /* atomic pointers: cache of ordinal -> state */

/* The state for a device key ("GPU-..." / "MIG-..."), created on first use. */
static gpu_state* gpu_for_key(const char* gpu_key, const char* mig_key) {
  pthread_mutex_lock(&g_gpu_mu);
  gpu_state* g = NULL;
  for (int i = 0; i < g_ngpus; ++i) {
    if (strcmp(g_gpus[i].key, gpu_key) == 0) g = &g_gpus[i];
  }
  if (g == NULL && g_ngpus < MAX_GPUS) {
    g = &g_gpus[g_ngpus];
    snprintf(g->key, sizeof g->key, "%s", gpu_key);
    g->ordinal = -1;
    uint64_t cap;
    const char* matched = gpu_key;
    int found = slicer_config_limit(&g_cfg, gpu_key, &cap) == 0;
    if (!found && mig_key != NULL && slicer_config_limit(&g_cfg, mig_key, &cap) == 0) {
      found = 1;
      matched = mig_key;
    }
    if (!found) {
      g->state = GPU_NO_CAP;
    } else {
      char err[256];
      slicer_ledger* l = slicer_ledger_open(g_cfg.ledger_dir, g_cfg.container_id, matched, err,
                                            sizeof err);
      if (l == NULL) {
        g->state = GPU_BROKEN;
        slog("error", "event=ledger_unusable gpu=%s detail=\"%s\" effect=\"allocations on this GPU "
             "fail (fail closed)\"", gpu_key, err);
      } else {
        g->cap = cap;
        g->ops = &slicer_file_ledger_ops;
        g->impl = l;
        g->state = GPU_READY;
        SLOG_DEBUG("event=ledger_open gpu=%s cap=%llu", gpu_key, (unsigned long long)cap);
      }
    }
    __atomic_store_n(&g_ngpus, g_ngpus + 1, __ATOMIC_RELEASE);
  }
  pthread_mutex_unlock(&g_gpu_mu);
  return g;
}

static void format_uuid(char* out, size_t n, const char* prefix, const unsigned char* b) {
  snprintf(out, n,
           "%s-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", prefix,
           b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
           b[14], b[15]);
}

static CUresult gpu_for_ordinal(CUdevice dev, gpu_state** out) {
  if (dev < 0 || dev >= MAX_GPUS) return CUDA_ERROR_INVALID_DEVICE;
  gpu_state* g = __atomic_load_n(&g_by_ordinal[dev], __ATOMIC_ACQUIRE);
  if (g == NULL) {
    run_once(&g_cuda_once, cuda_init);
    if (g_cuDeviceGetUuid == NULL) return CUDA_ERROR_NOT_INITIALIZED;
    CUuuid uuid;
    CUresult r = g_cuDeviceGetUuid(&uuid, dev);
    if (r != CUDA_SUCCESS) return r;
    char gpu_key[64], mig_key[64];
    format_uuid(gpu_key, sizeof gpu_key, "GPU", (const unsigned char*)uuid.bytes);
    format_uuid(mig_key, sizeof mig_key, "MIG", (const unsigned char*)uuid.bytes);
    g = gpu_for_key(gpu_key, mig_key);
    if (g == NULL) return CUDA_ERROR_INVALID_DEVICE;
    __atomic_store_n(&g->ordinal, (int)dev, __ATOMIC_RELEASE);
    __atomic_store_n(&g_by_ordinal[dev], g, __ATOMIC_RELEASE);
  }
  *out = g;
  return CUDA_SUCCESS;
}

/* 1 when the process sees exactly one device (the common container): then the current device is
 * device 0 and the per-call cuCtxGetDevice, the costliest step of a cheap pool allocation, is
 * skipped. A call made without a current context still fails in the driver and is credited. */
static int g_single_device = -1; /* atomic: -1 not known yet */

static __attribute__((noinline)) CUresult current_ordinal_slow(CUdevice* dev) {
  run_once(&g_cuda_once, cuda_init);
  int single = __atomic_load_n(&g_single_device, __ATOMIC_ACQUIRE);
  if (single < 0 && g_cuDeviceGetCount != NULL) {
    int n = 0;
    if (g_cuDeviceGetCount(&n) == CUDA_SUCCESS) {
      single = n == 1;
      __atomic_store_n(&g_single_device, single, __ATOMIC_RELEASE);
    }
  }
  if (single == 1) {
    *dev = 0;
    return CUDA_SUCCESS;
  }
  if (g_cuCtxGetDevice == NULL) return CUDA_ERROR_NOT_INITIALIZED;
  return g_cuCtxGetDevice(dev);
}

/* Inline for the launch path: one load once a single device is known (set after cuda_init). */
static inline CUresult current_ordinal(CUdevice* dev) {
  if (__builtin_expect(__atomic_load_n(&g_single_device, __ATOMIC_ACQUIRE) == 1, 1)) {
    *dev = 0;
    return CUDA_SUCCESS;
  }
  return current_ordinal_slow(dev);
}

static CUresult current_gpu(gpu_state** out) {
  CUdevice dev;
  CUresult r = current_ordinal(&dev);
  if (r != CUDA_SUCCESS) return r;
  return gpu_for_ordinal(dev, out);
}

static void arb_report_memory(gpu_state* g, int64_t delta);

static int g_denied_said; /* atomic */

/* Charges `bytes` to g. CUDA_SUCCESS, or CUDA_ERROR_OUT_OF_MEMORY with a message. */
static CUresult charge(gpu_state* g, uint64_t bytes, const char* fn) {
  switch (g->state) {
    case GPU_READY: break;
    case GPU_NO_CAP:
      if (__atomic_fetch_add(&g->warned, 1, __ATOMIC_RELAXED) < 3) {
        slog("error", "event=alloc_refused fn=%s gpu=%s reason=\"%s names no cap for this GPU "
             "(and no '*')\"", fn, g->key, SLICER_ENV_MEMORY_LIMITS);
      }
      return CUDA_ERROR_OUT_OF_MEMORY;
    default:
      return CUDA_ERROR_OUT_OF_MEMORY;
  }
  uint64_t used = 0;
  int r = g->ops->reserve(g->impl, bytes, g->cap, &used);
  if (r == 0) {
    arb_report_memory(g, (int64_t)bytes);
    return CUDA_SUCCESS;
  }
  if (__atomic_fetch_add(&g->warned, 1, __ATOMIC_RELAXED) < 8) {
    if (r > 0) {
      slog("warn", "event=over_cap fn=%s gpu=%s requested=%llu used=%llu cap=%llu "
           "result=CUDA_ERROR_OUT_OF_MEMORY", fn, g->key, (unsigned long long)bytes,
           (unsigned long long)used, (unsigned long long)g->cap);
    } else {
      slog("error", "event=ledger_full fn=%s gpu=%s slots=%d result=CUDA_ERROR_OUT_OF_MEMORY", fn,
           g->key, SLICER_LEDGER_SLOTS);
    }
  }
  return CUDA_ERROR_OUT_OF_MEMORY;
}

static void uncharge(gpu_state* g, uint64_t bytes) {
  if (g != NULL && g->state == GPU_READY && bytes > 0) {
    g->ops->release(g->impl, bytes);
    arb_report_memory(g, -(int64_t)bytes);
  }
}

static CUresult denied(const char* fn) {
  if (__atomic_exchange_n(&g_denied_said, 1, __ATOMIC_RELAXED) == 0) {
    slog("error", "event=alloc_refused fn=%s reason=\"%s\" effect=\"every GPU allocation fails "
         "(fail closed) until the container's cap environment is fixed\"", fn, g_cfg.reason);
  }
  return CUDA_ERROR_OUT_OF_MEMORY;
}

/* ---- What this process holds: allocation -> (bytes, GPU) ------------------------------------- */

enum { KIND_PTR = 1, KIND_VMM, KIND_ARRAY, KIND_MIPMAP, KIND_POOL };

typedef struct {
  uint64_t key;
  uint64_t bytes;
  gpu_state* gpu;
  int kind; /* 0 empty, -1 tombstone */
} track_entry;

static pthread_mutex_t g_track_mu = PTHREAD_MUTEX_INITIALIZER;
static track_entry* g_track;
static size_t g_track_cap, g_track_used; /* used counts tombstones too */

static size_t track_hash(int kind, uint64_t key) {
  uint64_t h = (key ^ ((uint64_t)kind << 59)) * UINT64_C(0x9E3779B97F4A7C15);
  return (size_t)(h >> 20);
}

/* Lock held. */
static track_entry* track_find(int kind, uint64_t key) {
  if (g_track == NULL) return NULL;
  for (size_t i = track_hash(kind, key) & (g_track_cap - 1), n = 0; n < g_track_cap;
       i = (i + 1) & (g_track_cap - 1), ++n) {
    track_entry* e = &g_track[i];
    if (e->kind == 0) return NULL;
    if (e->kind == kind && e->key == key) return e;
  }
  return NULL;
}

/* Lock held. Returns 0, or -1 when out of host memory. */
static int track_insert(int kind, uint64_t key, uint64_t bytes, gpu_state* g) {
  if ((g_track_used + 1) * 2 > g_track_cap) {
    size_t cap = g_track_cap ? g_track_cap * 2 : 1024;
    track_entry* old = g_track;
    size_t old_cap = g_track_cap;
    track_entry* t = calloc(cap, sizeof *t);
    if (t == NULL) return -1;
    g_track = t;
    g_track_cap = cap;
    g_track_used = 0;
    for (size_t i = 0; i < old_cap; ++i) {
      if (old[i].kind > 0) track_insert(old[i].kind, old[i].key, old[i].bytes, old[i].gpu);
    }
    free(old);
  }
  for (size_t i = track_hash(kind, key) & (g_track_cap - 1);; i = (i + 1) & (g_track_cap - 1)) {
    track_entry* e = &g_track[i];
    if (e->kind <= 0 || (e->kind == kind && e->key == key)) {
      if (e->kind == 0) g_track_used++;
      e->kind = kind;
      e->key = key;
      e->bytes = bytes;
      e->gpu = g;
      return 0;
    }
  }
}

static void track(int kind, uint64_t key, uint64_t bytes, gpu_state* g) {
  pthread_mutex_lock(&g_track_mu);
  int r = track_insert(kind, key, bytes, g);
  pthread_mutex_unlock(&g_track_mu);
  /* Without a record the free cannot be credited: keep the charge (safe side) and say so. */
  if (r != 0) slog("error", "event=track_failed detail=\"out of host memory\"");
}

/* Removes the record; returns 1 and its contents if there was one. */
static int untrack(int kind, uint64_t key, uint64_t* bytes, gpu_state** g) {
  pthread_mutex_lock(&g_track_mu);
  track_entry* e = track_find(kind, key);
  int found = e != NULL;
  if (found) {
    *bytes = e->bytes;
    *g = e->gpu;
    e->kind = -1;
  }
  pthread_mutex_unlock(&g_track_mu);
  return found;
}

static int lookup(int kind, uint64_t key, gpu_state** g) {
  pthread_mutex_lock(&g_track_mu);
  track_entry* e = track_find(kind, key);
  int found = e != NULL;
  if (found) *g = e->gpu;
  pthread_mutex_unlock(&g_track_mu);
  return found;
}

static void after_fork_child(void) {
  /* The child holds none of the parent's GPU memory (CUDA does not survive fork) and none of its
   * ledger slot locks. */
  pthread_mutex_init(&g_track_mu, NULL);
  pthread_mutex_init(&g_gpu_mu, NULL);
  if (g_track != NULL) memset(g_track, 0, g_track_cap * sizeof *g_track);
  g_track_used = 0;
  for (int i = 0; i < g_ngpus; ++i) {
    g_gpus[i].mine = 0;
    if (g_gpus[i].state == GPU_READY) g_gpus[i].ops->after_fork_child(g_gpus[i].impl);
  }
  arb_after_fork_child();
}

/* ---- Allocation hooks ------------------------------------------------------------------------- */

static CUresult missing(const char* fn) {
  slog("error", "event=driver_symbol_missing fn=%s result=CUDA_ERROR_NOT_FOUND", fn);
  return CUDA_ERROR_NOT_FOUND;
}

/* Before an allocation of `bytes` on device `ordinal` (-1: the current context's). On success *g
 * is the GPU charged, or NULL when caps are off. */
static CUresult begin(int ordinal, uint64_t bytes, const char* fn, gpu_state** g) {
  *g = NULL;
  slicer_mode m = mode();
  if (m == SLICER_MODE_OFF) return CUDA_SUCCESS;
  if (m == SLICER_MODE_DENY) return denied(fn);
  CUresult r = ordinal < 0 ? current_gpu(g) : gpu_for_ordinal(ordinal, g);
  if (r != CUDA_SUCCESS) {
    *g = NULL;
    return r;
  }
  r = charge(*g, bytes, fn);
  if (r != CUDA_SUCCESS) *g = NULL;
  return r;
}

/* After the driver answered: keep the charge and record it, or give it back. */
static CUresult finish(CUresult r, gpu_state* g, int kind, uint64_t key, uint64_t bytes) {
  if (g == NULL) return r;
  if (r == CUDA_SUCCESS) track(kind, key, bytes, g);
  else uncharge(g, bytes);
  return r;
}

static CUresult hook_mem_alloc(pfn_cuMemAlloc_v2 real, CUdeviceptr* dptr, size_t bytesize) {
  if (real == NULL) return missing("cuMemAlloc_v2");
  gpu_state* g;
  CUresult r = begin(-1, bytesize, "cuMemAlloc_v2", &g);
  if (r != CUDA_SUCCESS) return r;
  r = real(dptr, bytesize);
  return finish(r, g, KIND_PTR, r == CUDA_SUCCESS ? *dptr : 0, bytesize);
}

static CUresult hook_mem_alloc_managed(pfn_cuMemAllocManaged real, CUdeviceptr* dptr,
                                       size_t bytesize, unsigned int flags) {
  if (real == NULL) return missing("cuMemAllocManaged");
  /* Managed memory is charged in full to the current device (docs/shim.md). */
  gpu_state* g;
  CUresult r = begin(-1, bytesize, "cuMemAllocManaged", &g);
  if (r != CUDA_SUCCESS) return r;
  r = real(dptr, bytesize, flags);
  return finish(r, g, KIND_PTR, r == CUDA_SUCCESS ? *dptr : 0, bytesize);
}

static CUresult hook_mem_alloc_pitch(pfn_cuMemAllocPitch_v2 real, CUdeviceptr* dptr,
                                     size_t* pPitch, size_t width, size_t height,
                                     unsigned int elem) {
  if (real == NULL) return missing("cuMemAllocPitch_v2");
  /* The pitch is known only afterwards: charge the widest pitch the driver uses (512-byte
   * alignment), then settle on the real size. */
  uint64_t guess = ((uint64_t)width + 511) / 512 * 512 * (uint64_t)height;
  gpu_state* g;
  CUresult r = begin(-1, guess, "cuMemAllocPitch_v2", &g);
  if (r != CUDA_SUCCESS) return r;
  r = real(dptr, pPitch, width, height, elem);
  if (g == NULL || r != CUDA_SUCCESS) return finish(r, g, KIND_PTR, 0, guess);
  uint64_t actual = (uint64_t)*pPitch * height;
  if (actual < guess) {
    uncharge(g, guess - actual);
  } else if (actual > guess && charge(g, actual - guess, "cuMemAllocPitch_v2") != CUDA_SUCCESS) {
    pfn_cuMemFree_v2 free_fn = (pfn_cuMemFree_v2)real_of(IDX_cuMemFree_v2);
    if (free_fn != NULL) free_fn(*dptr);
    uncharge(g, guess);
    return CUDA_ERROR_OUT_OF_MEMORY;
  }
  return finish(r, g, KIND_PTR, *dptr, actual);
}

static CUresult hook_mem_alloc_async(pfn_cuMemAllocAsync real, CUdeviceptr* dptr, size_t bytesize,
                                     CUstream hStream) {
  if (real == NULL) return missing("cuMemAllocAsync");
  gpu_state* g;
  CUresult r = begin(-1, bytesize, "cuMemAllocAsync", &g);
  if (r != CUDA_SUCCESS) return r;
  r = real(dptr, bytesize, hStream);
  return finish(r, g, KIND_PTR, r == CUDA_SUCCESS ? *dptr : 0, bytesize);
}

static CUresult hook_mem_alloc_from_pool(pfn_cuMemAllocFromPoolAsync real, CUdeviceptr* dptr,
                                         size_t bytesize, CUmemoryPool pool, CUstream hStream) {
  if (real == NULL) return missing("cuMemAllocFromPoolAsync");
  /* The pool's device, when the shim saw the pool made or handed out; else the current one. */
  gpu_state* pool_gpu = NULL;
  int known = lookup(KIND_POOL, (uint64_t)(uintptr_t)pool, &pool_gpu);
  if (known && pool_gpu == NULL) return real(dptr, bytesize, pool, hStream); /* host pool */
  gpu_state* g = NULL;
  CUresult r;
  slicer_mode m = mode();
  if (m == SLICER_MODE_DENY) return denied("cuMemAllocFromPoolAsync");
  if (m == SLICER_MODE_ENFORCE) {
    if (known) {
      g = pool_gpu;
    } else if ((r = current_gpu(&g)) != CUDA_SUCCESS) {
      return r;
    }
    if ((r = charge(g, bytesize, "cuMemAllocFromPoolAsync")) != CUDA_SUCCESS) return r;
  }
  r = real(dptr, bytesize, pool, hStream);
  return finish(r, g, KIND_PTR, r == CUDA_SUCCESS ? *dptr : 0, bytesize);
}

static void note_pool(CUmemoryPool pool, int ordinal) {
  if (mode() != SLICER_MODE_ENFORCE) return;
  gpu_state* g = NULL;
  if (ordinal >= 0 && gpu_for_ordinal(ordinal, &g) != CUDA_SUCCESS) return;
  track(KIND_POOL, (uint64_t)(uintptr_t)pool, 0, g);
}

static CUresult hook_mem_pool_create(pfn_cuMemPoolCreate real, CUmemoryPool* pool,
                                     const CUmemPoolProps* props) {
  if (real == NULL) return missing("cuMemPoolCreate");
  CUresult r = real(pool, props);
  if (r == CUDA_SUCCESS && props != NULL) {
    note_pool(*pool, props->location.type == CU_MEM_LOCATION_TYPE_DEVICE ? props->location.id : -1);
  }
  return r;
}

static CUresult hook_device_get_mem_pool(pfn_cuDeviceGetMemPool real, CUmemoryPool* pool,
                                         CUdevice dev) {
  if (real == NULL) return missing("cuDeviceGetMemPool");
  CUresult r = real(pool, dev);
  if (r == CUDA_SUCCESS && pool != NULL) note_pool(*pool, dev);
  return r;
}

static CUresult hook_mem_pool_destroy(pfn_cuMemPoolDestroy real, CUmemoryPool pool) {
  if (real == NULL) return missing("cuMemPoolDestroy");
  uint64_t bytes;
  gpu_state* g;
  untrack(KIND_POOL, (uint64_t)(uintptr_t)pool, &bytes, &g);
  return real(pool);
}

static CUresult hook_mem_create(pfn_cuMemCreate real, CUmemGenericAllocationHandle* handle,
                                size_t size, const CUmemAllocationProp* prop,
                                unsigned long long flags) {
  if (real == NULL) return missing("cuMemCreate");
  /* Only device-located physical memory counts; host and host-NUMA locations are host memory. */
  if (prop == NULL || prop->location.type != CU_MEM_LOCATION_TYPE_DEVICE) {
    return real(handle, size, prop, flags);
  }
  gpu_state* g;
  CUresult r = begin(prop->location.id, size, "cuMemCreate", &g);
  if (r != CUDA_SUCCESS) return r;
  r = real(handle, size, prop, flags);
  return finish(r, g, KIND_VMM, r == CUDA_SUCCESS ? *handle : 0, size);
}

static uint64_t format_bytes(CUarray_format f) {
  switch ((int)f) {
    case CU_AD_FORMAT_UNSIGNED_INT8: case CU_AD_FORMAT_SIGNED_INT8: case CU_AD_FORMAT_UNORM_INT8X1:
    case CU_AD_FORMAT_SNORM_INT8X1:
      return 1;
    case CU_AD_FORMAT_UNSIGNED_INT16: case CU_AD_FORMAT_SIGNED_INT16: case CU_AD_FORMAT_HALF:
    case CU_AD_FORMAT_UNORM_INT8X2: case CU_AD_FORMAT_SNORM_INT8X2: case CU_AD_FORMAT_UNORM_INT16X1:
    case CU_AD_FORMAT_SNORM_INT16X1:
      return 2;
    case CU_AD_FORMAT_UNORM_INT16X4: case CU_AD_FORMAT_SNORM_INT16X4:
      return 8;
    default:
      return 4; /* 32-bit formats, and an upper bound for packed and block-compressed ones */
  }
}

static uint64_t array_bytes(size_t w, size_t h, size_t d, CUarray_format f, unsigned channels) {
  uint64_t n = (uint64_t)w * (h ? h : 1);
  n *= d ? d : 1;
  return n * format_bytes(f) * (channels ? channels : 1);
}

static CUresult hook_array_create(pfn_cuArrayCreate_v2 real, CUarray* pHandle,
                                  const CUDA_ARRAY_DESCRIPTOR* desc) {
  if (real == NULL) return missing("cuArrayCreate_v2");
  if (desc == NULL || pHandle == NULL) return real(pHandle, desc);
  uint64_t bytes = array_bytes(desc->Width, desc->Height, 1, desc->Format, desc->NumChannels);
  gpu_state* g;
  CUresult r = begin(-1, bytes, "cuArrayCreate_v2", &g);
  if (r != CUDA_SUCCESS) return r;
  r = real(pHandle, desc);
  return finish(r, g, KIND_ARRAY, r == CUDA_SUCCESS ? (uint64_t)(uintptr_t)*pHandle : 0, bytes);
}

static CUresult hook_array3d_create(pfn_cuArray3DCreate_v2 real, CUarray* pHandle,
                                    const CUDA_ARRAY3D_DESCRIPTOR* desc) {
  if (real == NULL) return missing("cuArray3DCreate_v2");
  if (desc == NULL || pHandle == NULL) return real(pHandle, desc);
  uint64_t bytes =
      array_bytes(desc->Width, desc->Height, desc->Depth, desc->Format, desc->NumChannels);
  gpu_state* g;
  CUresult r = begin(-1, bytes, "cuArray3DCreate_v2", &g);
  if (r != CUDA_SUCCESS) return r;
  r = real(pHandle, desc);
  return finish(r, g, KIND_ARRAY, r == CUDA_SUCCESS ? (uint64_t)(uintptr_t)*pHandle : 0, bytes);
}

static CUresult hook_mipmapped_array_create(pfn_cuMipmappedArrayCreate real,
                                            CUmipmappedArray* pHandle,
                                            const CUDA_ARRAY3D_DESCRIPTOR* desc,
                                            unsigned int levels) {
  if (real == NULL) return missing("cuMipmappedArrayCreate");
  if (desc == NULL || pHandle == NULL) return real(pHandle, desc, levels);
  uint64_t bytes = 0;
  size_t w = desc->Width, h = desc->Height, d = desc->Depth;
  for (unsigned i = 0; i < (levels ? levels : 1) && i < 64; ++i) {
    bytes += array_bytes(w ? w : 1, h, d, desc->Format, desc->NumChannels);
    w /= 2, h /= 2, d /= 2;
  }
  gpu_state* g;
  CUresult r = begin(-1, bytes, "cuMipmappedArrayCreate", &g);
  if (r != CUDA_SUCCESS) return r;
  r = real(pHandle, desc, levels);
  return finish(r, g, KIND_MIPMAP, r == CUDA_SUCCESS ? (uint64_t)(uintptr_t)*pHandle : 0, bytes);
}

/* ---- Free hooks: the record is taken before the driver frees, so that an address the driver
 * hands out again at once cannot meet the old record; it is put back if the free fails. ---- */

#define FREE_HOOK_BODY(kind, key, call)                       \
  uint64_t bytes = 0;                                         \
  gpu_state* g = NULL;                                        \
  int had = untrack(kind, key, &bytes, &g);                   \
  CUresult r = call;                                          \
  if (had) {                                                  \
    if (r == CUDA_SUCCESS) uncharge(g, bytes);                \
    else track(kind, key, bytes, g);                          \
  }                                                           \
  return r;

static CUresult hook_mem_free(pfn_cuMemFree_v2 real, CUdeviceptr dptr) {
  if (real == NULL) return missing("cuMemFree_v2");
  FREE_HOOK_BODY(KIND_PTR, dptr, real(dptr))
}

static CUresult hook_mem_free_async(pfn_cuMemFreeAsync real, CUdeviceptr dptr, CUstream hStream) {
  if (real == NULL) return missing("cuMemFreeAsync");
  /* Credited when the free is queued: the pool reuses the memory for this container's next
   * allocations; what it keeps cached is not charged (docs/shim.md). */
  FREE_HOOK_BODY(KIND_PTR, dptr, real(dptr, hStream))
}

static CUresult hook_mem_release(pfn_cuMemRelease real, CUmemGenericAllocationHandle handle) {
  if (real == NULL) return missing("cuMemRelease");
  FREE_HOOK_BODY(KIND_VMM, handle, real(handle))
}

static CUresult hook_array_destroy(pfn_cuArrayDestroy real, CUarray hArray) {
  if (real == NULL) return missing("cuArrayDestroy");
  FREE_HOOK_BODY(KIND_ARRAY, (uint64_t)(uintptr_t)hArray, real(hArray))
}

static CUresult hook_mipmapped_array_destroy(pfn_cuMipmappedArrayDestroy real,
                                             CUmipmappedArray h) {
  if (real == NULL) return missing("cuMipmappedArrayDestroy");
  FREE_HOOK_BODY(KIND_MIPMAP, (uint64_t)(uintptr_t)h, real(h))
}

/* ---- What programs size themselves by ---------------------------------------------------------- */

/* The capped view of one GPU: total = min(cap, device), used = the container's, free = what the
 * cap leaves, never more than the device has free. */
static void capped_view(gpu_state* g, uint64_t* free_b, uint64_t* total, uint64_t* used_out) {
  if (g->state != GPU_READY) {
    *free_b = 0;
    if (used_out) *used_out = *total;
    return;
  }
  uint64_t used = g->ops->used(g->impl);
  uint64_t cap = g->cap < *total ? g->cap : *total;
  uint64_t room = used < cap ? cap - used : 0;
  *total = cap;
  if (*free_b > room) *free_b = room;
  if (used_out) *used_out = used < cap ? used : cap;
}

static CUresult hook_mem_get_info(pfn_cuMemGetInfo_v2 real, size_t* free_b, size_t* total) {
  if (real == NULL) return missing("cuMemGetInfo_v2");
  CUresult r = real(free_b, total);
  if (r != CUDA_SUCCESS || free_b == NULL || total == NULL) return r;
  slicer_mode m = mode();
  if (m == SLICER_MODE_OFF) return r;
  if (m == SLICER_MODE_DENY) {
    *free_b = 0;
    return r;
  }
  gpu_state* g;
  if (current_gpu(&g) != CUDA_SUCCESS) return r;
  uint64_t f = *free_b, t = *total;
  capped_view(g, &f, &t, NULL);
  *free_b = (size_t)f;
  *total = (size_t)t;
  return r;
}

static CUresult hook_device_total_mem(pfn_cuDeviceTotalMem_v2 real, size_t* bytes, CUdevice dev) {
  if (real == NULL) return missing("cuDeviceTotalMem_v2");
  CUresult r = real(bytes, dev);
  if (r != CUDA_SUCCESS || bytes == NULL || mode() != SLICER_MODE_ENFORCE) return r;
  gpu_state* g;
  if (gpu_for_ordinal(dev, &g) == CUDA_SUCCESS && g->state == GPU_READY && g->cap < *bytes) {
    *bytes = (size_t)g->cap;
  }
  return r;
}

/* NVML: the device's UUID names its ledger. */
static gpu_state* nvml_gpu(nvmlDevice_t device) {
  run_once(&g_nvml_once, nvml_init);
  if (g_nvmlDeviceGetUUID == NULL) return NULL;
  char uuid[NVML_DEVICE_UUID_V2_BUFFER_SIZE];
  if (g_nvmlDeviceGetUUID(device, uuid, sizeof uuid) != NVML_SUCCESS) return NULL;
  uuid[sizeof uuid - 1] = '\0';
  return gpu_for_key(uuid, NULL);
}

static nvmlReturn_t hook_nvml_memory_info(pfn_nvmlDeviceGetMemoryInfo real, nvmlDevice_t device,
                                          nvmlMemory_t* memory) {
  if (real == NULL) return NVML_ERROR_FUNCTION_NOT_FOUND;
  nvmlReturn_t r = real(device, memory);
  if (r != NVML_SUCCESS || memory == NULL || mode() != SLICER_MODE_ENFORCE) return r;
  gpu_state* g = nvml_gpu(device);
  if (g == NULL || g->state != GPU_READY) return r;
  uint64_t f = memory->free, t = memory->total, used;
  capped_view(g, &f, &t, &used);
  memory->total = t;
  memory->free = f;
  memory->used = used;
  return r;
}

static nvmlReturn_t hook_nvml_memory_info_v2(pfn_nvmlDeviceGetMemoryInfo_v2 real,
                                             nvmlDevice_t device, nvmlMemory_v2_t* memory) {
  if (real == NULL) return NVML_ERROR_FUNCTION_NOT_FOUND;
  nvmlReturn_t r = real(device, memory);
  if (r != NVML_SUCCESS || memory == NULL || mode() != SLICER_MODE_ENFORCE) return r;
  gpu_state* g = nvml_gpu(device);
  if (g == NULL || g->state != GPU_READY) return r;
  uint64_t f = memory->free, t = memory->total, used;
  capped_view(g, &f, &t, &used);
  memory->total = t;
  memory->free = f;
  memory->used = used;
  memory->reserved = 0;
  return r;
}

/* ---- Time shares: the node arbiter's client (docs/arbiter.md) -------------------------------
 *
 * With SLICER_ARBITER_SOCKET set, the first launch starts the arbiter client (a thread that owns
 * the connection); every launch on a device asks it for the lease first. Without it the launch
 * hooks cost one load and one predictable branch before the driver. The client blocks a launch
 * only while another process holds the GPU; while this process is alone (open-ended lease) or
 * the arbiter is down (fail-open) a launch costs a few atomic loads.
 *
 * The shim keeps the work it has queued on a stream bounded (so that a hand-over is quick):
 * every `budget` launches, or when the client asks (SLICER_ARB_CHECKPOINT), it records an event
 * and waits for the one recorded at the previous checkpoint. The budget adapts to the GPU time a
 * launch takes (timed events), aiming at half of the arbiter's maxQueued between checkpoints,
 * so that at most about maxQueued of work is ever queued. Ungated launches pay a thread-local
 * count for this (the per-stream bookkeeping runs once per budget).
 * Launches on a stream that is capturing a graph are never gated (nothing runs then; a block
 * would only stall the capture). */

enum { ARB_UNKNOWN = 0, ARB_OFF, ARB_ON };

/* Streams with work queued since the device last went idle, per device: a stream or event
 * synchronize ends the busy interval only when every one of them is idle. */
#define ARB_TRACKED_STREAMS 4
typedef struct {
  CUstream s[ARB_TRACKED_STREAMS]; /* atomic; NULL: free. The legacy stream 0 is kArbNullStream */
  int overflow;                    /* atomic: more streams than tracked; only a ctx sync ends it */
} arb_stream_set;

/* What a launch under an open lease reads and writes of the shim's own globals, in one cache
 * line: a real launch evicts the hook's data between launches (bench/shim/launch_ab.cc). Device
 * 0's per-device entries live here, the others' in the array below (arb_streams). */
static struct {
  arb_stream_set streams0;
  int mode;                /* atomic: ARB_* */
  uint32_t pad_;
  slicer_arb_client* arb;  /* set before `mode` becomes ARB_ON */
  /* atomic: device 0's gate once attached, in a process that sees one device (then every launch
   * is on device 0): arb_gate's inline path. NULL: the general path. */
  const slicer_arb_gate* gate0;
} g_arb_hot __attribute__((aligned(64)));
_Static_assert(sizeof g_arb_hot == 64, "the launch path's globals fill one cache line");
static arb_stream_set g_arb_streams_more[SLICER_ARB_MAX_GPUS - 1];
static int g_arb_attached[SLICER_ARB_MAX_GPUS];  /* atomic */
static CUcontext g_arb_ctx[SLICER_ARB_MAX_GPUS]; /* atomic: the context to drain per device */

static inline arb_stream_set* arb_streams(int dev) {
  return dev == 0 ? &g_arb_hot.streams0 : &g_arb_streams_more[dev - 1];
}
#define kArbNullStream ((CUstream)(uintptr_t) ~(uintptr_t)0)

static CUstream arb_key(CUstream s) { return s == NULL ? kArbNullStream : s; }
static CUstream arb_unkey(CUstream k) { return k == kArbNullStream ? NULL : k; }

static void arb_streams_clear(int dev) {
  for (int i = 0; i < ARB_TRACKED_STREAMS; ++i) {
    __atomic_store_n(&arb_streams(dev)->s[i], NULL, __ATOMIC_RELAXED);
  }
  __atomic_store_n(&arb_streams(dev)->overflow, 0, __ATOMIC_RELEASE);
}

static __attribute__((noinline)) void arb_add_stream(int dev, CUstream k) {
  CUstream* s = arb_streams(dev)->s;
  for (int i = 0; i < ARB_TRACKED_STREAMS; ++i) {
    CUstream expected = NULL;
    if (__atomic_compare_exchange_n(&s[i], &expected, k, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) {
      return;
    }
    if (expected == k) return;
  }
  __atomic_store_n(&arb_streams(dev)->overflow, 1, __ATOMIC_RELEASE);
}

/* Inline for the launch path: a stream already tracked costs a few loads. */
static inline void arb_note_stream(int dev, CUstream stream) {
  CUstream k = arb_key(stream);
  CUstream* s = arb_streams(dev)->s;
  for (int i = 0; i < ARB_TRACKED_STREAMS; ++i) {
    if (__atomic_load_n(&s[i], __ATOMIC_RELAXED) == k) return;
  }
  arb_add_stream(dev, k);
}

/* Drains device `dev` for a hand-over: waits for everything the process queued there. Runs on the
 * client's thread or a launching thread; calls the driver's own functions, never the hooks. The
 * thread's capture mode is relaxed meanwhile, so that another thread's graph capture is neither
 * broken by nor breaks the drain. */
static int arb_drain(void* user, int dev) {
  (void)user;
  pfn_cuCtxSynchronize sync = (pfn_cuCtxSynchronize)real_of(IDX_cuCtxSynchronize);
  if (sync == NULL || g_drv.ctx_push == NULL || g_drv.ctx_pop == NULL) return -1;
  CUcontext ctx = __atomic_load_n(&g_arb_ctx[dev], __ATOMIC_ACQUIRE);
  int retained = 0;
  if (ctx == NULL) {
    if (g_drv.primary_retain == NULL || g_drv.primary_retain(&ctx, dev) != CUDA_SUCCESS) return -1;
    retained = 1;
  }
  CUstreamCaptureMode mode = CU_STREAM_CAPTURE_MODE_RELAXED;
  int exchanged = g_drv.capture_mode != NULL && g_drv.capture_mode(&mode) == CUDA_SUCCESS;
  CUresult r = g_drv.ctx_push(ctx);
  if (r == CUDA_SUCCESS) {
    r = sync();
    CUcontext popped;
    g_drv.ctx_pop(&popped);
  }
  if (exchanged) g_drv.capture_mode(&mode);
  if (retained && g_drv.primary_release != NULL) g_drv.primary_release(dev);
  if (r != CUDA_SUCCESS) {
    SLOG_DEBUG("event=drain_failed dev=%d result=%d", dev, (int)r);
    return -1;
  }
  arb_streams_clear(dev);
  return 0;
}

/* Under TSan shim.c is not instrumented (src/shim/CMakeLists.txt), so TSan cannot see that a thread
 * which reads `mode` == ARB_ON sees the client another thread made: the hand-off is told to it here.
 * Without it, a thread that never took g_arb_once's lock reports the client's own locks as racing
 * with the calloc that made them. Nothing in other builds. */
#if defined(SLICER_SHIM_TSAN_ANNOTATE)
void __tsan_acquire(void* addr);
void __tsan_release(void* addr);
#define arb_published() __tsan_release(&g_arb_hot.mode)
#define arb_seen() __tsan_acquire(&g_arb_hot.mode)
#else
#define arb_published() ((void)0)
#define arb_seen() ((void)0)
#endif

static once_t g_arb_once = ONCE_INIT;
static void arb_init(void) {
  mode(); /* reads the environment (g_cfg) once */
  slicer_arb_client* c = NULL;
  if (g_cfg.arbiter_socket[0] != '\0') {
    slicer_arb_options o;
    memset(&o, 0, sizeof o);
    o.socket_path = g_cfg.arbiter_socket;
    o.priority = SLICER_ARB_PRIO_UNSET;
    o.fail_closed = -1;
    o.drain = arb_drain;
    c = slicer_arb_start(&o);
    if (c == NULL) {
      slog("error", "event=arbiter_client_failed socket=%s effect=\"launches are not gated\"",
           g_cfg.arbiter_socket);
    } else {
      SLOG_DEBUG("event=arbiter_client_started socket=%s", g_cfg.arbiter_socket);
    }
  }
  g_arb_hot.arb = c;
  arb_published();
  __atomic_store_n(&g_arb_hot.mode, c != NULL ? ARB_ON : ARB_OFF, __ATOMIC_RELEASE);
}

/* At load, while the process has one thread: what the client's open-lease launches need is
 * cheap to register now and costs a launch ~10-20 ms later (slicer_arb_prepare). */
__attribute__((constructor)) static void arb_prepare_at_load(void) {
  const char* socket = getenv(SLICER_ENV_ARBITER_SOCKET);
  if (socket != NULL && socket[0] != '\0') slicer_arb_prepare();
}

/* The client, started at the first launch; NULL when no arbiter is configured. */
static inline slicer_arb_client* arb_for_launch(void) {
  int m = __atomic_load_n(&g_arb_hot.mode, __ATOMIC_ACQUIRE);
  if (__builtin_expect(m == ARB_OFF, 1)) return NULL;
  if (m == ARB_UNKNOWN) run_once(&g_arb_once, arb_init);
  arb_seen();
  return g_arb_hot.arb;
}

/* The client if a launch has started it (synchronize hooks never start it). */
static inline slicer_arb_client* arb_started(void) {
  if (__builtin_expect(__atomic_load_n(&g_arb_hot.mode, __ATOMIC_ACQUIRE) != ARB_ON, 1)) {
    return NULL;
  }
  arb_seen();
  return g_arb_hot.arb;
}

static __attribute__((noinline)) void arb_attach(slicer_arb_client* c, int dev) {
  if (dev < 0 || dev >= SLICER_ARB_MAX_GPUS) return;
  CUuuid uuid;
  if (g_cuDeviceGetUuid == NULL || g_cuDeviceGetUuid(&uuid, dev) != CUDA_SUCCESS) return;
  char key[64];
  format_uuid(key, sizeof key, "GPU", (const unsigned char*)uuid.bytes);
  CUcontext ctx = NULL;
  if (g_drv.ctx_get_current != NULL && g_drv.ctx_get_current(&ctx) == CUDA_SUCCESS && ctx) {
    __atomic_store_n(&g_arb_ctx[dev], ctx, __ATOMIC_RELEASE);
  }
  slicer_arb_attach(c, dev, key);
  /* Memory taken before the first launch started the client was never reported: report it now. */
  gpu_state* g = dev < MAX_GPUS ? __atomic_load_n(&g_by_ordinal[dev], __ATOMIC_ACQUIRE) : NULL;
  if (g != NULL) slicer_arb_memory(c, dev, __atomic_load_n(&g->mine, __ATOMIC_RELAXED), g->cap);
  __atomic_store_n(&g_arb_attached[dev], 1, __ATOMIC_RELEASE);
  if (dev == 0 && __atomic_load_n(&g_single_device, __ATOMIC_ACQUIRE) == 1) {
    __atomic_store_n(&g_arb_hot.gate0, slicer_arb_gate_of(c, 0), __ATOMIC_RELEASE);
  }
  SLOG_DEBUG("event=arbiter_attach dev=%d gpu=%s", dev, key);
}

static void arb_report_memory(gpu_state* g, int64_t delta) {
  uint64_t mine = delta >= 0 ? __atomic_add_fetch(&g->mine, (uint64_t)delta, __ATOMIC_RELAXED)
                             : __atomic_sub_fetch(&g->mine, (uint64_t)-delta, __ATOMIC_RELAXED);
  slicer_arb_client* c = arb_started();
  int dev = __atomic_load_n(&g->ordinal, __ATOMIC_ACQUIRE);
  if (c != NULL && dev >= 0) slicer_arb_memory(c, dev, mine, g->cap);
}

/* ---- Checkpoints: bounded queued work under contention ---- */

#define ARB_CK_STREAMS 64
#define ARB_CK_EVENTS 3
#define ARB_CK_FIRST_BUDGET 8
#define ARB_CK_MAX_BUDGET 4096

typedef struct {
  CUcontext ctx;
  CUstream stream; /* key form (arb_key) */
  int in_use, busy;
  CUevent ev[ARB_CK_EVENTS];
  uint32_t launches_before[ARB_CK_EVENTS]; /* launches between the previous event and this one */
  /* At the record: wall time minus the client's busy time on the device (its idle time so far,
   * give or take a constant). */
  int64_t idle_at[ARB_CK_EVENTS];
  int recorded[ARB_CK_EVENTS];
  int next;
  uint32_t since; /* launches since the newest event */
  uint32_t budget;
  /* One launch takes more GPU time than a checkpoint's target (half of maxQueued): waiting for
   * the previous checkpoint would leave two launches queued, so each waits for the one before. */
  int one_at_a_time;
} ck_entry;

static pthread_mutex_t g_ck_mu = PTHREAD_MUTEX_INITIALIZER;
static ck_entry g_ck[ARB_CK_STREAMS];

static ck_entry* ck_find(CUcontext ctx, CUstream key) {
  ck_entry* free_e = NULL;
  for (int i = 0; i < ARB_CK_STREAMS; ++i) {
    ck_entry* e = &g_ck[i];
    if (e->in_use && e->ctx == ctx && e->stream == key) return e;
    if (!e->in_use && free_e == NULL) free_e = e;
  }
  if (free_e != NULL) {
    memset(free_e, 0, sizeof *free_e);
    free_e->in_use = 1;
    free_e->ctx = ctx;
    free_e->stream = key;
    free_e->budget = ARB_CK_FIRST_BUDGET;
  }
  return free_e;
}

/* Records this checkpoint's event and waits for the previous one (for this one when launches are
 * longer than `target_ns`: queued work then stays at one launch); then re-estimates the GPU time
 * per launch from the two events before, less the time the process had nothing queued on the
 * device in between (`idle`: wall time minus the client's busy time). A bursty stream's idle
 * gaps between requests are not its launches' GPU time: counting them put a latency client's
 * small kernels one at a time, each waiting for the last. No lock held while the driver runs. */
static int64_t arb_mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* For the exit log (SLICER_LOG=debug): how often and how long the shim saw its process wait, by
 * kind. Slow paths only. */
typedef struct {
  uint64_t n, ns;
} arb_wait_count;
static arb_wait_count g_arb_ck_waits, g_arb_slow_launches;
static void arb_count(arb_wait_count* w, int64_t ns) {
  __atomic_add_fetch(&w->n, 1, __ATOMIC_RELAXED);
  if (ns > 0) __atomic_add_fetch(&w->ns, (uint64_t)ns, __ATOMIC_RELAXED);
}

static void ck_run(slicer_arb_client* c, int dev, ck_entry* e, CUstream stream, uint64_t target_ns,
                   int64_t idle) {
  pfn_cuEventSynchronize wait = (pfn_cuEventSynchronize)real_of(IDX_cuEventSynchronize);
  int k = e->next, prev = (k + ARB_CK_EVENTS - 1) % ARB_CK_EVENTS;
  int prev2 = (k + ARB_CK_EVENTS - 2) % ARB_CK_EVENTS;
  if (e->ev[k] == NULL && g_drv.event_create(&e->ev[k], CU_EVENT_DEFAULT) != CUDA_SUCCESS) {
    e->ev[k] = NULL;
  }
  if (e->ev[k] == NULL || g_drv.event_record(e->ev[k], stream) != CUDA_SUCCESS) {
    pfn_cuStreamSynchronize ssync = (pfn_cuStreamSynchronize)real_of(IDX_cuStreamSynchronize);
    if (ssync != NULL) ssync(stream);
    memset(e->recorded, 0, sizeof e->recorded);
    return;
  }
  e->recorded[k] = 1;
  e->launches_before[k] = e->since;
  e->idle_at[k] = idle;
  e->next = (k + 1) % ARB_CK_EVENTS;
  int on = e->one_at_a_time ? k : prev;
  if (!e->recorded[on] || wait == NULL) return;
  slicer_arb_wait_begin(c, dev);
  int64_t w0 = g_cfg.debug ? arb_mono_ns() : 0; /* timed for the exit log only */
  CUresult waited = wait(e->ev[on]);
  if (g_cfg.debug) arb_count(&g_arb_ck_waits, arb_mono_ns() - w0);
  slicer_arb_wait_end(c, dev);
  if (waited != CUDA_SUCCESS) return;
  float ms = 0;
  uint32_t n = e->launches_before[prev];
  if (e->recorded[prev2] && n > 0 && g_drv.event_elapsed != NULL &&
      g_drv.event_elapsed(&ms, e->ev[prev2], e->ev[prev]) == CUDA_SUCCESS) {
    double span = (double)ms * 1e6 - (double)(e->idle_at[prev] - e->idle_at[prev2]);
    if (span <= 0) { /* mostly idle: says nothing about the launches */
      SLOG_DEBUG("event=checkpoint n=%u span_us=%.0f effect=\"budget kept\"", n, span / 1e3);
      return;
    }
    double per_launch = span / n;
    double b = per_launch > 0 ? (double)target_ns / per_launch : ARB_CK_MAX_BUDGET;
    /* At most double at a time: one span of small kernels must not let the queue grow tenfold. */
    double most = 2.0 * (e->budget > 0 ? e->budget : ARB_CK_FIRST_BUDGET);
    if (b > most) b = most;
    e->budget = b < 1 ? 1 : (b > ARB_CK_MAX_BUDGET ? ARB_CK_MAX_BUDGET : (uint32_t)b);
    e->one_at_a_time = b < 1;
    uint64_t seen = __atomic_load_n(&g_arb_ck_waits.n, __ATOMIC_RELAXED);
    if (g_cfg.debug && (seen <= 32 || seen % 64 == 0)) {
      slog("debug", "event=checkpoint n=%u span_us=%.0f target_us=%.0f budget=%u", n, span / 1e3,
           target_ns / 1e3, e->budget);
    }
  }
}

/* Counts `launches` on `stream` and runs a checkpoint when its budget is spent or `force`.
 * Returns the stream's budget (launches between checkpoints) when one ran, 0 when none was due;
 * `*waited` says whether this thread waited for earlier work (the lease may have been revoked
 * meanwhile). */
static uint32_t arb_checkpoint(slicer_arb_client* c, int dev, int force, CUstream stream,
                               uint32_t launches, int* waited) {
  *waited = 0;
  if (g_drv.ctx_get_current == NULL || g_drv.event_create == NULL || g_drv.event_record == NULL) {
    return ARB_CK_MAX_BUDGET;
  }
  CUcontext ctx = NULL;
  g_drv.ctx_get_current(&ctx);
  pthread_mutex_lock(&g_ck_mu);
  ck_entry* e = ck_find(ctx, arb_key(stream));
  int due = 0;
  if (e != NULL) {
    e->since += launches;
    due = !e->busy && (force || e->since >= e->budget);
    if (due) e->busy = 1;
  }
  pthread_mutex_unlock(&g_ck_mu);
  if (e == NULL) {
    /* More streams than the table holds: wait for this one's work when asked. */
    pfn_cuStreamSynchronize ssync = (pfn_cuStreamSynchronize)real_of(IDX_cuStreamSynchronize);
    if (force && ssync != NULL) *waited = ssync(stream) == CUDA_SUCCESS;
    return ARB_CK_FIRST_BUDGET;
  }
  if (!due) return 0;
  uint64_t max_queued = slicer_arb_max_queued_ns(c, dev);
  ck_run(c, dev, e, stream, max_queued / 2, arb_mono_ns() - (int64_t)slicer_arb_busy_ns(c, dev));
  *waited = 1;
  pthread_mutex_lock(&g_ck_mu);
  e->since = 0;
  e->busy = 0;
  uint32_t budget = e->budget;
  pthread_mutex_unlock(&g_ck_mu);
  return budget;
}

/* Ungated launches (alone, or fail-open) are counted as well; every `budget`
 * of them the launching stream gets a checkpoint, so that a holder's queue is already short
 * when another client arrives and revokes it (a preempted holder's queued work is what a higher
 * class would otherwise share the GPU with). The count is per thread: no atomic on this path. */
static __thread uint32_t t_arb_pass_launches __attribute__((tls_model("initial-exec")));
/* Launches between this thread's checkpoints: the budget of the stream its last checkpoint ran on
 * (0: not known yet). Per thread, not per device: threads launching onto different streams (the
 * main thread and autograd's, a side stream of small kernels) each keep their own; one budget for
 * the process let the stream of small kernels (a few microseconds each, budget ~3000) set the
 * count for the thread queueing the big ones, whose queue then grew to seconds. */
static __thread uint32_t t_arb_budget __attribute__((tls_model("initial-exec")));

/* After a checkpoint wait, before submitting: the lease may have been revoked while this thread
 * waited (a saturating holder spends most of its time in checkpoint waits, so that is where a
 * REVOKE usually finds it). Asking again lets the hand-over drain without this launch, which
 * would otherwise add one more kernel to the work the next holder (or a preempting higher class)
 * shares the GPU with. */
static void arb_regate(slicer_arb_client* c, int dev) {
  slicer_arb_launched(c, dev);
  slicer_arb_launch(c, dev); /* a due checkpoint just ran */
}

/* An open lease's launch count reached the stream's budget: its checkpoint (not while the stream
 * captures a graph: nothing it captures runs now). */
static __attribute__((noinline)) void arb_pass_checkpoint(slicer_arb_client* c, int dev,
                                                          CUstream stream, uint32_t n) {
  t_arb_pass_launches = 0;
  CUstreamCaptureStatus cs = CU_STREAM_CAPTURE_STATUS_NONE;
  if (g_drv.stream_is_capturing == NULL || g_drv.stream_is_capturing(stream, &cs) != CUDA_SUCCESS ||
      cs == CU_STREAM_CAPTURE_STATUS_NONE) {
    int waited;
    uint32_t b = arb_checkpoint(c, dev, 1, stream, n, &waited);
    /* Not due on this stream (0): the thread keeps its count. A stream of small kernels may raise
     * it only gradually, so that the next checkpoint of the thread's big ones is not far off. */
    if (b != 0) t_arb_budget = t_arb_budget != 0 && b > 2 * t_arb_budget ? 2 * t_arb_budget : b;
    if (waited) arb_regate(c, dev);
  }
}

/* A launch while another client may hold the GPU: asks for the lease (skipped during capture). */
static __attribute__((noinline)) int arb_gate_slow(slicer_arb_client* c, int dev,
                                                   CUstream stream) {
  CUstreamCaptureStatus cs = CU_STREAM_CAPTURE_STATUS_NONE;
  if (g_drv.stream_is_capturing != NULL && g_drv.stream_is_capturing(stream, &cs) == CUDA_SUCCESS &&
      cs != CU_STREAM_CAPTURE_STATUS_NONE) {
    return -1; /* nothing runs during capture; the graph's launch is gated instead */
  }
  CUcontext ctx = NULL;
  if (g_drv.ctx_get_current != NULL && g_drv.ctx_get_current(&ctx) == CUDA_SUCCESS && ctx) {
    __atomic_store_n(&g_arb_ctx[dev], ctx, __ATOMIC_RELEASE);
  }
  arb_note_stream(dev, stream);
  int r = slicer_arb_launch(c, dev);
  int waited;
  arb_checkpoint(c, dev, r == SLICER_ARB_CHECKPOINT, stream, 1, &waited);
  if (waited) arb_regate(c, dev);
  return dev;
}

/* A launch let through under an open lease: notes its stream, counts it toward the stream's next
 * checkpoint. Returns 1 when the checkpoint ran (it may have re-gated the launch). */
static inline __attribute__((always_inline)) int arb_pass_launch(slicer_arb_client* c, int dev,
                                                                 CUstream stream) {
  /* Noted after the launch counted itself (the slow path notes first, and only once it knows the
   * stream is not capturing): a sync on another thread in between may end the busy interval
   * early, and the next launch starts it again. Only the busy time reported is affected. */
  arb_note_stream(dev, stream);
  uint32_t n = ++t_arb_pass_launches;
  uint32_t budget = t_arb_budget;
  if (__builtin_expect(n >= (budget ? budget : ARB_CK_FIRST_BUDGET), 0)) {
    arb_pass_checkpoint(c, dev, stream, n);
    return 1;
  }
  return 0;
}

/* arb_gate without the inline open: any device, the first launches, a lease that is not open. */
static __attribute__((noinline)) int arb_gate_general(slicer_arb_client* c, CUstream stream) {
  CUdevice dev;
  if (current_ordinal(&dev) != CUDA_SUCCESS || dev < 0 || dev >= SLICER_ARB_MAX_GPUS) return -1;
  if (!__atomic_load_n(&g_arb_attached[dev], __ATOMIC_ACQUIRE)) arb_attach(c, dev);
  if (!slicer_arb_launch_open(c, dev)) return arb_gate_slow(c, dev, stream);
  arb_pass_launch(c, dev, stream);
  return dev;
}

/* Before a submission on `stream` (the per-thread default stream already made explicit).
 * Returns the device for arb_submitted after the submission, or -1. Inline: a lone client's
 * launch in a single-device process reads one line of these globals, its gate and its thread's
 * slot, and marks the slot; *mark is then the slot, which the caller clears after the submission
 * without reading anything else (bench/shim/launch_ab.cc measures it). NULL: arb_submitted. */
static inline __attribute__((always_inline)) int arb_gate(slicer_arb_client* c, CUstream stream,
                                                          const slicer_arb_gate*** mark) {
  *mark = NULL;
  const slicer_arb_gate* gate = __atomic_load_n(&g_arb_hot.gate0, __ATOMIC_ACQUIRE);
  const slicer_arb_gate** slot = gate != NULL ? slicer_arb_open_fast(gate) : NULL;
  if (__builtin_expect(slot == NULL, 0)) return arb_gate_general(c, stream);
  /* After a checkpoint the launch may have been re-gated: arb_submitted decides. */
  if (__builtin_expect(!arb_pass_launch(c, 0, stream), 1)) *mark = slot;
  return 0;
}

/* After the submission that arb_gate let through on `dev` without handing out its mark. */
static __attribute__((noinline)) void arb_submitted(slicer_arb_client* c, int dev) {
  const slicer_arb_gate* gate = __atomic_load_n(&g_arb_hot.gate0, __ATOMIC_RELAXED);
  if (dev == 0 && gate != NULL && slicer_arb_close_fast(gate)) return;
  slicer_arb_submitted(c, dev);
}

static uint64_t g_arb_synced_calls, g_arb_busy_syncs; /* atomic; for the exit log */

/* Around a synchronize hook: its wait counts as blocked on the GPU (the arbiter leases only the
 * processes that mostly wait on their own work). arb_wait_begin returns the device the wait is
 * counted on, or -1 (no arbiter client yet); arb_wait_end takes it. */
static int arb_wait_begin(void) {
  slicer_arb_client* c = arb_started();
  CUdevice dev;
  if (c == NULL || current_ordinal(&dev) != CUDA_SUCCESS || dev < 0 || dev >= SLICER_ARB_MAX_GPUS) {
    return -1;
  }
  slicer_arb_wait_begin(c, dev);
  return dev;
}
static void arb_wait_end(int dev) {
  if (dev >= 0) slicer_arb_wait_end(arb_started(), dev);
}

/* After a successful stream or event synchronize (`stream` NULL with has_stream 0 for events):
 * the busy interval ends when every stream the process used on the device is idle. */
static void arb_after_sync(int has_stream, CUstream stream) {
  slicer_arb_client* c = arb_started();
  if (c == NULL) return;
  CUdevice dev;
  if (current_ordinal(&dev) != CUDA_SUCCESS || dev < 0 || dev >= SLICER_ARB_MAX_GPUS) return;
  int idle = !__atomic_load_n(&arb_streams(dev)->overflow, __ATOMIC_ACQUIRE);
  CUstream* s = arb_streams(dev)->s;
  for (int i = 0; i < ARB_TRACKED_STREAMS; ++i) {
    CUstream k = __atomic_load_n(&s[i], __ATOMIC_ACQUIRE);
    if (k == NULL) continue;
    if ((has_stream && k == arb_key(stream)) ||
        (g_drv.stream_query != NULL && g_drv.stream_query(arb_unkey(k)) == CUDA_SUCCESS)) {
      __atomic_compare_exchange_n(&s[i], &k, NULL, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED);
    } else {
      idle = 0;
    }
  }
  if (idle) {
    slicer_arb_synced(c, dev);
    __atomic_add_fetch(&g_arb_synced_calls, 1, __ATOMIC_RELAXED);
  } else {
    __atomic_add_fetch(&g_arb_busy_syncs, 1, __ATOMIC_RELAXED);
  }
}

static void arb_after_ctx_sync(void) {
  slicer_arb_client* c = arb_started();
  if (c == NULL) return;
  CUdevice dev;
  if (current_ordinal(&dev) != CUDA_SUCCESS || dev < 0 || dev >= SLICER_ARB_MAX_GPUS) return;
  arb_streams_clear(dev);
  slicer_arb_synced(c, dev);
  __atomic_add_fetch(&g_arb_synced_calls, 1, __ATOMIC_RELAXED);
}

static void arb_after_fork_child(void) {
  /* CUDA does not survive fork: the child's contexts, streams and events are new. */
  pthread_mutex_init(&g_ck_mu, NULL);
  memset(g_ck, 0, sizeof g_ck);
  memset(&g_arb_hot.streams0, 0, sizeof g_arb_hot.streams0);
  memset(g_arb_streams_more, 0, sizeof g_arb_streams_more);
  memset(g_arb_ctx, 0, sizeof g_arb_ctx);
  t_arb_pass_launches = 0;
  t_arb_budget = 0;
  if (g_arb_hot.arb != NULL) slicer_arb_after_fork_child(g_arb_hot.arb);
}

/* With SLICER_LOG=debug: what the arbiter client did, once at exit (tests and operators). */
__attribute__((destructor)) static void arb_at_exit(void) {
  slicer_arb_client* c = arb_started();
  slicer_arb_write_trace(c);
  if (c == NULL || !g_cfg.debug) return;
  slicer_arb_stats st;
  slicer_arb_get_stats(c, &st);
  slog("debug",
       "event=arbiter_stats connected=%d client_id=%llu grants=%llu waited_ms=%.1f "
       "connects=%llu busy_ms_gpu0=%.1f syncs_ending_busy=%llu syncs_leaving_work=%llu "
       "streams_overflow_gpu0=%d blocked_ms_gpu0=%.1f checkpoint_waits=%llu checkpoint_wait_ms=%.1f "
       "slow_launches=%llu slow_launch_ms=%.1f",
       st.connected, (unsigned long long)st.client_id, (unsigned long long)st.grants,
       st.waited_ns / 1e6, (unsigned long long)st.connects, st.busy_total_ns[0] / 1e6,
       (unsigned long long)g_arb_synced_calls, (unsigned long long)g_arb_busy_syncs,
       g_arb_hot.streams0.overflow, st.blocked_total_ns[0] / 1e6,
       (unsigned long long)g_arb_ck_waits.n, g_arb_ck_waits.ns / 1e6,
       (unsigned long long)g_arb_slow_launches.n, g_arb_slow_launches.ns / 1e6);
}

/* ---- Launch and synchronize hooks ---- */

/* The per-thread default stream made explicit, for the calls the shim makes itself. */
static CUstream per_thread(CUstream s) { return s == NULL ? CU_STREAM_PER_THREAD : s; }

/* Waits inside a launch: when the device's queue is full (about a thousand launches), the driver
 * holds the launch until room frees up. A process that keeps the GPU busy without ever
 * synchronizing (a trainer that reads a loss every few hundred launches) waits there and nowhere
 * else, and that wait is what tells the arbiter it is bound. One launch in 16 is timed (a clock
 * read before and after: under 1% of a launch); one that took longer than a launch can take
 * without waiting reports its wait and times the next launch too, so that while the queue stays
 * full every launch's wait is counted, until one is fast again. Per thread: no atomic. */
#define ARB_LAUNCH_SAMPLE_MASK 15u
#define ARB_LAUNCH_SLOW_NS 50000 /* a launch is a few microseconds when nothing holds it back */
static __thread uint32_t t_arb_tick __attribute__((tls_model("initial-exec")));

/* Before a launch: its start time when this launch is to be timed, else 0. */
static inline __attribute__((always_inline)) int64_t arb_launch_clock(void) {
  if (__builtin_expect((++t_arb_tick & ARB_LAUNCH_SAMPLE_MASK) != 0, 1)) return 0;
  return arb_mono_ns();
}

/* After a timed launch on `dev` (-1: not counted) that began at `t0`. */
static __attribute__((noinline)) void arb_launch_timed(slicer_arb_client* c, int dev, int64_t t0) {
  int64_t t1 = arb_mono_ns();
  if (t1 - t0 <= ARB_LAUNCH_SLOW_NS) return;
  if (dev >= 0) slicer_arb_wait_add(c, dev, t0, t1);
  arb_count(&g_arb_slow_launches, t1 - t0);
  t_arb_tick = ARB_LAUNCH_SAMPLE_MASK; /* the next launch is timed too */
}

#define LAUNCH_BODY(name, stream, call)                \
  if (real == NULL) return missing(name);              \
  slicer_arb_client* c = arb_for_launch();             \
  if (__builtin_expect(c == NULL, 1)) return call;     \
  const slicer_arb_gate** mark;                        \
  int dev = arb_gate(c, stream, &mark);                \
  int64_t t0 = arb_launch_clock();                     \
  CUresult r = call;                                   \
  if (__builtin_expect(t0 != 0, 0)) arb_launch_timed(c, dev, t0); \
  if (__builtin_expect(mark != NULL, 1)) {             \
    slicer_arb_unmark(mark);                           \
  } else if (dev >= 0) {                               \
    arb_submitted(c, dev);                             \
  }                                                    \
  return r;

static CUresult hook_launch_kernel(pfn_cuLaunchKernel real, CUfunction f, unsigned int gx,
                                   unsigned int gy, unsigned int gz, unsigned int bx,
                                   unsigned int by, unsigned int bz, unsigned int shmem,
                                   CUstream hStream, void** params, void** extra) {
  LAUNCH_BODY("cuLaunchKernel", hStream,
              real(f, gx, gy, gz, bx, by, bz, shmem, hStream, params, extra))
}

static CUresult hook_launch_kernel_ptsz(pfn_cuLaunchKernel_ptsz real, CUfunction f, unsigned int gx,
                                        unsigned int gy, unsigned int gz, unsigned int bx,
                                        unsigned int by, unsigned int bz, unsigned int shmem,
                                        CUstream hStream, void** params, void** extra) {
  LAUNCH_BODY("cuLaunchKernel_ptsz", per_thread(hStream),
              real(f, gx, gy, gz, bx, by, bz, shmem, hStream, params, extra))
}

static CUresult hook_launch_kernel_ex(pfn_cuLaunchKernelEx real, const CUlaunchConfig* config,
                                      CUfunction f, void** params, void** extra) {
  LAUNCH_BODY("cuLaunchKernelEx", config ? config->hStream : NULL, real(config, f, params, extra))
}

static CUresult hook_launch_kernel_ex_ptsz(pfn_cuLaunchKernelEx_ptsz real,
                                           const CUlaunchConfig* config, CUfunction f,
                                           void** params, void** extra) {
  LAUNCH_BODY("cuLaunchKernelEx_ptsz", per_thread(config ? config->hStream : NULL),
              real(config, f, params, extra))
}

static CUresult hook_launch_cooperative(pfn_cuLaunchCooperativeKernel real, CUfunction f,
                                        unsigned int gx, unsigned int gy, unsigned int gz,
                                        unsigned int bx, unsigned int by, unsigned int bz,
                                        unsigned int shmem, CUstream hStream, void** params) {
  LAUNCH_BODY("cuLaunchCooperativeKernel", hStream,
              real(f, gx, gy, gz, bx, by, bz, shmem, hStream, params))
}

static CUresult hook_launch_cooperative_ptsz(pfn_cuLaunchCooperativeKernel_ptsz real, CUfunction f,
                                             unsigned int gx, unsigned int gy, unsigned int gz,
                                             unsigned int bx, unsigned int by, unsigned int bz,
                                             unsigned int shmem, CUstream hStream, void** params) {
  LAUNCH_BODY("cuLaunchCooperativeKernel_ptsz", per_thread(hStream),
              real(f, gx, gy, gz, bx, by, bz, shmem, hStream, params))
}

static CUresult hook_graph_launch(pfn_cuGraphLaunch real, CUgraphExec g, CUstream hStream) {
  LAUNCH_BODY("cuGraphLaunch", hStream, real(g, hStream))
}

static CUresult hook_graph_launch_ptsz(pfn_cuGraphLaunch_ptsz real, CUgraphExec g,
                                       CUstream hStream) {
  LAUNCH_BODY("cuGraphLaunch_ptsz", per_thread(hStream), real(g, hStream))
}

static CUresult hook_ctx_synchronize(pfn_cuCtxSynchronize real) {
  if (real == NULL) return missing("cuCtxSynchronize");
  int w = arb_wait_begin();
  CUresult r = real();
  arb_wait_end(w);
  if (r == CUDA_SUCCESS) arb_after_ctx_sync();
  return r;
}

static CUresult hook_ctx_synchronize_v2(pfn_cuCtxSynchronize_v2 real, CUcontext ctx) {
  if (real == NULL) return missing("cuCtxSynchronize_v2");
  int w = arb_wait_begin();
  CUresult r = real(ctx);
  arb_wait_end(w);
  if (r == CUDA_SUCCESS && arb_started() != NULL) {
    CUcontext cur = NULL;
    /* Another context than the current one: its device is not known cheaply; nothing said. */
    if (ctx == NULL || (g_drv.ctx_get_current != NULL &&
                        g_drv.ctx_get_current(&cur) == CUDA_SUCCESS && cur == ctx)) {
      arb_after_ctx_sync();
    }
  }
  return r;
}

static CUresult hook_stream_synchronize(pfn_cuStreamSynchronize real, CUstream hStream) {
  if (real == NULL) return missing("cuStreamSynchronize");
  int w = arb_wait_begin();
  CUresult r = real(hStream);
  arb_wait_end(w);
  if (r == CUDA_SUCCESS) arb_after_sync(1, hStream);
  return r;
}

static CUresult hook_stream_synchronize_ptsz(pfn_cuStreamSynchronize_ptsz real, CUstream hStream) {
  if (real == NULL) return missing("cuStreamSynchronize_ptsz");
  int w = arb_wait_begin();
  CUresult r = real(hStream);
  arb_wait_end(w);
  if (r == CUDA_SUCCESS) arb_after_sync(1, per_thread(hStream));
  return r;
}

static CUresult hook_event_synchronize(pfn_cuEventSynchronize real, CUevent hEvent) {
  if (real == NULL) return missing("cuEventSynchronize");
  int w = arb_wait_begin();
  CUresult r = real(hEvent);
  arb_wait_end(w);
  if (r == CUDA_SUCCESS) arb_after_sync(0, NULL);
  return r;
}

/* ---- Copies to the host: they wait for the stream's work before they copy (pageable memory, or
 * a synchronous copy), and that wait is blocked time like a synchronize's. Not gated: a copy
 * usually follows the kernels that produced its data. */

#define COPY_BODY(name, call)             \
  if (real == NULL) return missing(name); \
  int w = arb_wait_begin();               \
  CUresult r = call;                      \
  arb_wait_end(w);                        \
  return r;

static CUresult hook_memcpy_dtoh(pfn_cuMemcpyDtoH_v2 real, void* dst, CUdeviceptr src, size_t n) {
  COPY_BODY("cuMemcpyDtoH_v2", real(dst, src, n))
}
static CUresult hook_memcpy_dtoh_ptds(pfn_cuMemcpyDtoH_v2_ptds real, void* dst, CUdeviceptr src,
                                      size_t n) {
  COPY_BODY("cuMemcpyDtoH_v2_ptds", real(dst, src, n))
}
static CUresult hook_memcpy_dtoh_async(pfn_cuMemcpyDtoHAsync_v2 real, void* dst, CUdeviceptr src,
                                       size_t n, CUstream s) {
  COPY_BODY("cuMemcpyDtoHAsync_v2", real(dst, src, n, s))
}
static CUresult hook_memcpy_dtoh_async_ptsz(pfn_cuMemcpyDtoHAsync_v2_ptsz real, void* dst,
                                            CUdeviceptr src, size_t n, CUstream s) {
  COPY_BODY("cuMemcpyDtoHAsync_v2_ptsz", real(dst, src, n, s))
}
static CUresult hook_memcpy(pfn_cuMemcpy real, CUdeviceptr dst, CUdeviceptr src, size_t n) {
  COPY_BODY("cuMemcpy", real(dst, src, n))
}
static CUresult hook_memcpy_ptds(pfn_cuMemcpy_ptds real, CUdeviceptr dst, CUdeviceptr src,
                                 size_t n) {
  COPY_BODY("cuMemcpy_ptds", real(dst, src, n))
}
static CUresult hook_memcpy_async(pfn_cuMemcpyAsync real, CUdeviceptr dst, CUdeviceptr src,
                                  size_t n, CUstream s) {
  COPY_BODY("cuMemcpyAsync", real(dst, src, n, s))
}
static CUresult hook_memcpy_async_ptsz(pfn_cuMemcpyAsync_ptsz real, CUdeviceptr dst,
                                       CUdeviceptr src, size_t n, CUstream s) {
  COPY_BODY("cuMemcpyAsync_ptsz", real(dst, src, n, s))
}

/* ---- cuGetProcAddress ------------------------------------------------------------------------ */

/* The hooked variant that the driver's answer `p` for (symbol, version, flags) is, or NULL when
 * the symbol is not hooked. By address first (the driver returned its exported function); else by
 * cuGetProcAddress's own rule: the newest variant introduced at or before `version`, per-thread
 * variants only when asked for. */
static hook_entry* variant_for(const char* symbol, void* p, int version, cuuint64_t flags,
                               int* known) {
  *known = 0;
  if (symbol == NULL || symbol[0] != 'c' || symbol[1] != 'u') return NULL;
  hook_entry* best = NULL;
  int per_thread = (flags & CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM) != 0;
  for (int i = 0; i < IDX_COUNT; ++i) {
    hook_entry* e = &g_hooks[i];
    if (e->lib != LIB_CUDA || strcmp(e->base, symbol) != 0) continue;
    *known = 1;
    if (__atomic_load_n(&e->real, __ATOMIC_ACQUIRE) == p) return e;
    if (e->since > version || (e->flavour == FLAV_PTSZ && !per_thread)) continue;
    if (best == NULL || (e->flavour == FLAV_PTSZ && best->flavour != FLAV_PTSZ) ||
        (e->flavour == best->flavour && e->since >= best->since)) {
      best = e;
    }
  }
  return best;
}

typedef CUresult (*pfn_gpa2)(const char*, void**, int, cuuint64_t, CUdriverProcAddressQueryResult*);
typedef CUresult (*pfn_gpa1)(const char*, void**, int, cuuint64_t);

/* Replaces the driver's answer in *pfn with the matching wrapper. `again` asks the driver the
 * same question for another version (to check answers for versions newer than the table). */
static void wrap_answer(const char* symbol, void** pfn, int version, cuuint64_t flags,
                        CUdriverProcAddressQueryResult* status, pfn_gpa2 again2, pfn_gpa1 again1) {
  void* p = *pfn;
  run_once(&g_cuda_once, cuda_init);
  int known;
  hook_entry* e = variant_for(symbol, p, version, flags, &known);
  if (e == NULL) {
    if (known) {
      /* An older variant than the table holds (e.g. the 32-bit cuMemAlloc of CUDA < 3.2): it
       * would take memory past the cap, so it is not handed out. */
      slog("error", "event=old_variant_refused symbol=%s cudaVersion=%d", symbol, version);
      *pfn = NULL;
      if (status != NULL) *status = CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT;
    }
    return;
  }
  if (__atomic_load_n(&e->real, __ATOMIC_ACQUIRE) != p && version > SLICER_TABLE_CUDA_VERSION) {
    /* A version newer than the table: the driver may hold a variant the shim does not know. Only
     * if it gives the same answer as for the table's version is the wrapper the right one. */
    void* q = NULL;
    CUresult r = again2 ? again2(symbol, &q, SLICER_TABLE_CUDA_VERSION, flags, NULL)
                        : again1(symbol, &q, SLICER_TABLE_CUDA_VERSION, flags);
    if (r != CUDA_SUCCESS || q != p) {
      slog("error", "event=unknown_variant symbol=%s cudaVersion=%d effect=\"not handed out: the "
           "shim knows variants up to CUDA %d\"", symbol, version, SLICER_TABLE_CUDA_VERSION);
      *pfn = NULL;
      if (status != NULL) *status = CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;
      return;
    }
  }
  set_real(e, p);
  SLOG_DEBUG("event=proc_wrapped symbol=%s variant=%s cudaVersion=%d flags=%llu", symbol,
             e->variant, version, (unsigned long long)flags);
  *pfn = e->wrapper;
}

static CUresult hook_get_proc_address(pfn_cuGetProcAddress_v2 real, const char* symbol, void** pfn,
                                      int cudaVersion, cuuint64_t flags,
                                      CUdriverProcAddressQueryResult* symbolStatus) {
  if (real == NULL) return missing("cuGetProcAddress_v2");
  CUresult r = real(symbol, pfn, cudaVersion, flags, symbolStatus);
  if (r == CUDA_SUCCESS && pfn != NULL && *pfn != NULL) {
    wrap_answer(symbol, pfn, cudaVersion, flags, symbolStatus, real, NULL);
  }
  return r;
}

static CUresult hook_get_proc_address_v1(pfn_cuGetProcAddress real, const char* symbol,
                                         void** pfn, int cudaVersion, cuuint64_t flags) {
  if (real == NULL) return missing("cuGetProcAddress");
  CUresult r = real(symbol, pfn, cudaVersion, flags);
  if (r == CUDA_SUCCESS && pfn != NULL && *pfn != NULL) {
    wrap_answer(symbol, pfn, cudaVersion, flags, NULL, NULL, real);
  }
  return r;
}

/* ---- The exported wrappers, generated from the table ------------------------------------------- */

#define X(lib, ret, base, variant, since, flav, hook, params, args)      \
  SLICER_EXPORT ret variant params {                                     \
    return hook((pfn_##variant)real_of(IDX_##variant) SLICER_TAIL args); \
  }
SLICER_HOOKS(X)
#undef X

/* ---- dlsym ------------------------------------------------------------------------------------ */

/* Lookups by handle of a hooked name get the wrapper; the real function is remembered. */
__attribute__((visibility("hidden"))) void* slicer_dlsym_hook(void* handle, const char* name) {
  void* p = slicer_real_dlsym()(handle, name);
  if (p == NULL || name == NULL || !((name[0] == 'c' && name[1] == 'u') || name[0] == 'n')) {
    return p;
  }
  for (int i = 0; i < IDX_COUNT; ++i) {
    if (strcmp(g_hooks[i].variant, name) == 0) {
      set_real(&g_hooks[i], p);
      return g_hooks[i].wrapper;
    }
  }
  return p;
}

/* dlsym(RTLD_NEXT, name) means "after the caller", and glibc finds the caller by the return
 * address: such calls must reach glibc with the caller's return address intact, so the entry
 * point jumps (not calls) to the real dlsym. */
#if defined(__x86_64__)
__asm__(
    ".text\n"
    ".globl dlsym\n"
    ".type dlsym,@function\n"
    "dlsym:\n"
    "  cmpq $-1, %rdi\n" /* RTLD_NEXT */
    "  je 1f\n"
    "  jmp slicer_dlsym_hook\n"
    "1:\n"
    "  pushq %rdi\n"
    "  pushq %rsi\n"
    "  subq $8, %rsp\n"
    "  call slicer_real_dlsym\n"
    "  addq $8, %rsp\n"
    "  popq %rsi\n"
    "  popq %rdi\n"
    "  jmp *%rax\n"
    ".size dlsym, .-dlsym\n");
#elif defined(__aarch64__)
__asm__(
    ".text\n"
    ".globl dlsym\n"
    ".type dlsym,%function\n"
    "dlsym:\n"
    "  cmn x0, #1\n"
    "  b.ne slicer_dlsym_hook\n"
    "  stp x0, x1, [sp, #-32]!\n"
    "  str x30, [sp, #16]\n"
    "  bl slicer_real_dlsym\n"
    "  mov x16, x0\n"
    "  ldr x30, [sp, #16]\n"
    "  ldp x0, x1, [sp], #32\n"
    "  br x16\n"
    ".size dlsym, .-dlsym\n");
#else
#error "libslicer.so: dlsym entry point not written for this architecture"
#endif
