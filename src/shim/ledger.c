#include "src/shim/ledger.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "src/common/shim_contract.h"

#define MAX_SLOT_BYTES (UINT64_C(1) << 56)

typedef struct {
  uint64_t magic;
  uint32_t version;
  uint32_t nslots;
  uint64_t claimed; /* slots ever claimed (a prefix): sums scan only these */
  uint64_t reserved[5];
} ledger_header;

typedef struct {
  uint64_t pid;   /* informational (slicer status); liveness comes from the lock */
  uint64_t bytes;
  uint64_t reserved[2];
} ledger_slot;

_Static_assert(sizeof(ledger_header) == SLICER_LEDGER_HEADER, "header size");
_Static_assert(sizeof(ledger_slot) == SLICER_LEDGER_SLOT_SIZE, "slot size");

struct slicer_ledger {
  pthread_mutex_t mu;
  int fd;
  unsigned char* map;
  int slot;       /* -1 until claimed */
  uint64_t mine;  /* authoritative copy of this process's slot */
};

static ledger_header* header(slicer_ledger* l) { return (ledger_header*)l->map; }
static ledger_slot* slot_at(slicer_ledger* l, int i) {
  return (ledger_slot*)(l->map + SLICER_LEDGER_HEADER + (size_t)i * SLICER_LEDGER_SLOT_SIZE);
}

static int range_lock(int fd, int cmd, short type, off_t start, off_t len) {
  struct flock fl;
  memset(&fl, 0, sizeof fl);
  fl.l_type = type;
  fl.l_whence = SEEK_SET;
  fl.l_start = start;
  fl.l_len = len;
  int r;
  do {
    r = fcntl(fd, cmd, &fl);
  } while (r != 0 && errno == EINTR);
  return r;
}

static void header_lock(slicer_ledger* l) {
  range_lock(l->fd, F_SETLKW, F_WRLCK, 0, SLICER_LEDGER_HEADER);
}
static void header_unlock(slicer_ledger* l) {
  range_lock(l->fd, F_SETLK, F_UNLCK, 0, SLICER_LEDGER_HEADER);
}
static off_t slot_offset(int i) {
  return SLICER_LEDGER_HEADER + (off_t)i * SLICER_LEDGER_SLOT_SIZE;
}

/* Does another process hold slot i? Errors count as "held" so nothing is reclaimed by mistake. */
static int slot_held(slicer_ledger* l, int i) {
  struct flock fl;
  memset(&fl, 0, sizeof fl);
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = slot_offset(i);
  fl.l_len = SLICER_LEDGER_SLOT_SIZE;
  if (fcntl(l->fd, F_GETLK, &fl) != 0) return 1;
  return fl.l_type != F_UNLCK;
}

/* How many slots to scan: the claimed prefix, bounded (the value comes from the file). */
static int scan_count(slicer_ledger* l) {
  uint64_t n = __atomic_load_n(&header(l)->claimed, __ATOMIC_SEQ_CST);
  if (n > SLICER_LEDGER_SLOTS) n = SLICER_LEDGER_SLOTS;
  if ((int)n <= l->slot) n = (uint64_t)l->slot + 1;
  return (int)n;
}

static uint64_t sum_slots_upto(slicer_ledger* l, int n) {
  uint64_t sum = 0;
  for (int i = 0; i < n; ++i) {
    uint64_t v = i == l->slot ? l->mine : __atomic_load_n(&slot_at(l, i)->bytes, __ATOMIC_SEQ_CST);
    if (v > MAX_SLOT_BYTES) v = MAX_SLOT_BYTES;
    sum += v; /* at most 256 * 2^56 < 2^64: cannot wrap */
  }
  return sum;
}

/* The fast sum: the claimed prefix. The slow path and reports scan every slot. */
static uint64_t sum_slots(slicer_ledger* l) { return sum_slots_upto(l, scan_count(l)); }
static uint64_t sum_all_slots(slicer_ledger* l) { return sum_slots_upto(l, SLICER_LEDGER_SLOTS); }

/* Header lock held. */
static void reclaim_dead(slicer_ledger* l) {
  for (int i = 0; i < SLICER_LEDGER_SLOTS; ++i) {
    if (i == l->slot) continue;
    ledger_slot* s = slot_at(l, i);
    if (__atomic_load_n(&s->bytes, __ATOMIC_SEQ_CST) == 0) continue;
    if (!slot_held(l, i)) {
      __atomic_store_n(&s->bytes, 0, __ATOMIC_SEQ_CST);
      __atomic_store_n(&s->pid, 0, __ATOMIC_RELAXED);
    }
  }
}

/* Header lock held. Raises the claimed-prefix hint over every slot that holds bytes, so that a
 * hint damaged in the file cannot hide charges from the fast sums. */
static void repair_claimed(slicer_ledger* l) {
  uint64_t need = 0;
  for (int i = 0; i < SLICER_LEDGER_SLOTS; ++i) {
    if (i == l->slot || __atomic_load_n(&slot_at(l, i)->bytes, __ATOMIC_SEQ_CST) != 0) {
      need = (uint64_t)i + 1;
    }
  }
  uint64_t claimed = __atomic_load_n(&header(l)->claimed, __ATOMIC_SEQ_CST);
  if (claimed < need || claimed > SLICER_LEDGER_SLOTS) {
    __atomic_store_n(&header(l)->claimed, need, __ATOMIC_SEQ_CST);
  }
}

/* Header lock held. Makes the header ours if it is not (new, truncated or garbage file). */
static void check_header(slicer_ledger* l) {
  ledger_header* h = header(l);
  if (h->magic == SLICER_LEDGER_MAGIC && h->version == SLICER_LEDGER_VERSION &&
      h->nslots == SLICER_LEDGER_SLOTS) {
    return;
  }
  /* Not a ledger we understand: start over. Live processes re-store their own slots on their
   * next change; until then the container is undercounted by what they hold. */
  memset(l->map, 0, SLICER_LEDGER_FILE_SIZE);
  h->version = SLICER_LEDGER_VERSION;
  h->nslots = SLICER_LEDGER_SLOTS;
  __atomic_store_n(&h->magic, SLICER_LEDGER_MAGIC, __ATOMIC_SEQ_CST);
}

/* Header lock held. */
static int claim_slot(slicer_ledger* l) {
  check_header(l);
  for (int i = 0; i < SLICER_LEDGER_SLOTS; ++i) {
    if (range_lock(l->fd, F_SETLK, F_WRLCK, slot_offset(i), SLICER_LEDGER_SLOT_SIZE) == 0) {
      ledger_slot* s = slot_at(l, i);
      __atomic_store_n(&s->bytes, l->mine, __ATOMIC_SEQ_CST);
      __atomic_store_n(&s->pid, (uint64_t)getpid(), __ATOMIC_RELAXED);
      l->slot = i;
      uint64_t claimed = __atomic_load_n(&header(l)->claimed, __ATOMIC_SEQ_CST);
      if (claimed < (uint64_t)i + 1 || claimed > SLICER_LEDGER_SLOTS) {
        __atomic_store_n(&header(l)->claimed, (uint64_t)i + 1, __ATOMIC_SEQ_CST);
      }
      return 0;
    }
  }
  return -1;
}

static void sanitize(char* out, size_t n, const char* in) {
  size_t i = 0;
  for (; in[i] != '\0' && i + 1 < n; ++i) {
    char c = in[i];
    int ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
             c == '-' || c == '_' || c == '.';
    out[i] = ok ? c : '_';
  }
  out[i] = '\0';
}

slicer_ledger* slicer_ledger_open(const char* dir, const char* container, const char* gpu_key,
                                  char* err, size_t errlen) {
  char c[130], g[100], path[768];
  sanitize(c, sizeof c, container);
  sanitize(g, sizeof g, gpu_key);
  snprintf(path, sizeof path, "%s/" SLICER_LEDGER_PREFIX "%s-%s" SLICER_LEDGER_SUFFIX, dir, c, g);
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0666);
  if (fd < 0) {
    snprintf(err, errlen, "cannot open ledger %s: %s", path, strerror(errno));
    return NULL;
  }
  fchmod(fd, 0666); /* processes of one container may run as different users */
  slicer_ledger* l = calloc(1, sizeof *l);
  if (l == NULL) {
    close(fd);
    snprintf(err, errlen, "out of host memory");
    return NULL;
  }
  pthread_mutex_init(&l->mu, NULL);
  l->fd = fd;
  l->slot = -1;
  header_lock(l);
  off_t size = lseek(fd, 0, SEEK_END);
  if (size != SLICER_LEDGER_FILE_SIZE && ftruncate(fd, SLICER_LEDGER_FILE_SIZE) != 0) {
    snprintf(err, errlen, "cannot size ledger %s: %s", path, strerror(errno));
    header_unlock(l);
    close(fd);
    free(l);
    return NULL;
  }
  void* map = mmap(NULL, SLICER_LEDGER_FILE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (map == MAP_FAILED) {
    snprintf(err, errlen, "cannot map ledger %s: %s", path, strerror(errno));
    header_unlock(l);
    close(fd);
    free(l);
    return NULL;
  }
  l->map = map;
  check_header(l);
  header_unlock(l);
  return l;
}

int slicer_ledger_reserve(slicer_ledger* l, uint64_t bytes, uint64_t cap, uint64_t* used_out) {
  pthread_mutex_lock(&l->mu);
  if (l->slot < 0) {
    header_lock(l);
    int r = claim_slot(l);
    if (r != 0) reclaim_dead(l), r = claim_slot(l);
    header_unlock(l);
    if (r != 0) {
      pthread_mutex_unlock(&l->mu);
      return -1;
    }
  }
  if (bytes > MAX_SLOT_BYTES - l->mine) {
    if (used_out) *used_out = sum_slots(l);
    pthread_mutex_unlock(&l->mu);
    return 1;
  }
  ledger_slot* s = slot_at(l, l->slot);
  l->mine += bytes;
  __atomic_store_n(&s->bytes, l->mine, __ATOMIC_SEQ_CST);
  uint64_t sum = sum_slots(l);
  int result = 0;
  if (sum > cap) {
    header_lock(l);
    check_header(l);
    reclaim_dead(l);
    repair_claimed(l);
    sum = sum_all_slots(l);
    if (sum > cap) {
      l->mine -= bytes;
      sum -= bytes;
      result = 1;
    }
    __atomic_store_n(&s->bytes, l->mine, __ATOMIC_SEQ_CST);
    header_unlock(l);
  }
  if (used_out) *used_out = sum;
  pthread_mutex_unlock(&l->mu);
  return result;
}

void slicer_ledger_release(slicer_ledger* l, uint64_t bytes) {
  pthread_mutex_lock(&l->mu);
  l->mine -= bytes < l->mine ? bytes : l->mine;
  if (l->slot >= 0) __atomic_store_n(&slot_at(l, l->slot)->bytes, l->mine, __ATOMIC_SEQ_CST);
  pthread_mutex_unlock(&l->mu);
}

uint64_t slicer_ledger_used(slicer_ledger* l) {
  pthread_mutex_lock(&l->mu);
  header_lock(l);
  check_header(l);
  reclaim_dead(l);
  if (l->slot >= 0) __atomic_store_n(&slot_at(l, l->slot)->bytes, l->mine, __ATOMIC_SEQ_CST);
  repair_claimed(l);
  uint64_t sum = sum_all_slots(l);
  header_unlock(l);
  pthread_mutex_unlock(&l->mu);
  return sum;
}

uint64_t slicer_ledger_mine(slicer_ledger* l) {
  pthread_mutex_lock(&l->mu);
  uint64_t v = l->mine;
  pthread_mutex_unlock(&l->mu);
  return v;
}

void slicer_ledger_after_fork_child(slicer_ledger* l) {
  pthread_mutex_init(&l->mu, NULL);
  l->slot = -1;
  l->mine = 0;
}

static int ops_reserve(void* impl, uint64_t bytes, uint64_t cap, uint64_t* used_out) {
  return slicer_ledger_reserve(impl, bytes, cap, used_out);
}
static void ops_release(void* impl, uint64_t bytes) { slicer_ledger_release(impl, bytes); }
static uint64_t ops_used(void* impl) { return slicer_ledger_used(impl); }
static void ops_after_fork_child(void* impl) { slicer_ledger_after_fork_child(impl); }

const slicer_ledger_ops slicer_file_ledger_ops = {ops_reserve, ops_release, ops_used,
                                                  ops_after_fork_child};
