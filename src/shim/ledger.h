/* The memory ledger of one container on one GPU, shared by all the container's processes.
 *
 * Layout: one file per (container, GPU) under SLICER_LEDGER_DIR, mapped shared by every process
 * that allocates on that GPU: a 64-byte header and SLICER_LEDGER_SLOTS slots of 32 bytes. A
 * process claims one slot (on its first reservation) by taking a POSIX write lock on the slot's
 * byte range and holds that lock for its lifetime; the slot holds the bytes the process has
 * charged. The container's usage is the sum of the slots.
 *
 * Crash safety: the kernel drops a process's record locks when it dies, however it dies. A slot
 * that has bytes but no lock belongs to a dead process and is zeroed (reclaimed) by the next
 * process that finds the cap tight or asks for the usage. Locks belong to processes, not pids, so
 * pid reuse cannot keep a dead slot alive.
 *
 * Concurrency: a reservation writes its own slot first and then sums all slots (sequentially
 * consistent atomics), so of two racing reservations that together pass the cap at least one sees
 * the other and fails; only when the sum is over the cap does it take the header lock, reclaim
 * dead slots and decide again. The fast path makes no system call. Near the cap two racing
 * reservations can both fail where one would have fit; never can both succeed past it.
 *
 * Hostile or garbage content: every value read from the file is bounded (a slot counts at most
 * 2^56 bytes, sums saturate); a header that is not ours (magic, version, size) is rewritten and
 * processes re-store their own slot on their next change; a process's own slot value is taken
 * from its memory, not the file. A process of the container that writes the file can only hurt
 * its own container.
 *
 * Thread-safe: one mutex per ledger orders the process's own threads (record locks do not).
 */
#ifndef SLICER_SHIM_LEDGER_H_
#define SLICER_SHIM_LEDGER_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SLICER_LEDGER_SLOTS 256
#define SLICER_LEDGER_HEADER 64
#define SLICER_LEDGER_SLOT_SIZE 32
#define SLICER_LEDGER_FILE_SIZE (SLICER_LEDGER_HEADER + SLICER_LEDGER_SLOTS * SLICER_LEDGER_SLOT_SIZE)
#define SLICER_LEDGER_MAGIC UINT64_C(0x31474c4452434c53) /* "SLCRDLG1" little-endian */
#define SLICER_LEDGER_VERSION 1

typedef struct slicer_ledger slicer_ledger;

/* Opens (creating it if needed) the ledger file <dir>/slicer-<container>-<gpu_key>.ledger.
 * Returns NULL and a one-line reason in `err` when the file cannot be used. */
slicer_ledger* slicer_ledger_open(const char* dir, const char* container, const char* gpu_key,
                                  char* err, size_t errlen);

/* Charges `bytes` to this process if the container's total stays within `cap`.
 * Returns 0 (charged), 1 (over the cap; nothing charged) or -1 (no free slot: fails closed).
 * *used_out, when not NULL, gets the container's usage seen by the decision. */
int slicer_ledger_reserve(slicer_ledger* l, uint64_t bytes, uint64_t cap, uint64_t* used_out);

/* Gives back `bytes` charged earlier by this process (clamped at what it holds). */
void slicer_ledger_release(slicer_ledger* l, uint64_t bytes);

/* The container's usage on this GPU, after reclaiming dead processes' slots. */
uint64_t slicer_ledger_used(slicer_ledger* l);

/* What this process holds. */
uint64_t slicer_ledger_mine(slicer_ledger* l);

/* In a forked child: the parent's slot and lock are not the child's; start with nothing. */
void slicer_ledger_after_fork_child(slicer_ledger* l);

/* The shim talks to a ledger only through these operations. The file ledger above is the one
 * caps rely on; the arbiter only hears of the result (slicer_arb_memory, after a charge), so a
 * cap never waits on the arbiter. */
typedef struct {
  int (*reserve)(void* impl, uint64_t bytes, uint64_t cap, uint64_t* used_out);
  void (*release)(void* impl, uint64_t bytes);
  uint64_t (*used)(void* impl);
  void (*after_fork_child)(void* impl);
} slicer_ledger_ops;

extern const slicer_ledger_ops slicer_file_ledger_ops;

#ifdef __cplusplus
}
#endif

#endif /* SLICER_SHIM_LEDGER_H_ */
