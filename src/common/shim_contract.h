/* The contract between the device plugin (which sets these variables in a container's
 * environment through Allocate), `slicer run`, the shim libslicer.so (which reads them in every
 * process of the container) and the arbiter client compiled into it. Plain C: the shim includes it and nothing
 * else from src/.
 *
 * SLICER_MEMORY_LIMITS   Comma-separated `<GPU-UUID>=<bytes>` pairs, one per GPU the container
 *                        holds, e.g. "GPU-1111...=4026531840,GPU-2222...=8053063680". The key `*`
 *                        applies to every GPU not named (used by `slicer run --memory`).
 * SLICER_ENFORCE         "1": the shim was injected on purpose and must cap. If the limits are
 *                        then missing or malformed, every allocation fails with
 *                        CUDA_ERROR_OUT_OF_MEMORY and a message on stderr (fail closed).
 * SLICER_OPT_OUT_ALLOWED "1": the config lets containers of this resource opt out.
 * SLICER_OPT_OUT         "1" (set in the container's own spec): do not cap, honoured only with
 *                        SLICER_OPT_OUT_ALLOWED=1; otherwise ignored with a warning.
 * SLICER_CONTAINER_ID    Opaque token, unique per Allocate (per container): processes with the
 *                        same token share one memory ledger per GPU.
 * SLICER_LEDGER_DIR      Directory shared by the processes of one container where the ledger
 *                        lives (default /dev/shm).
 * SLICER_ARBITER_SOCKET  Unix socket of the node arbiter (optional; caps never need it).
 * SLICER_LOG             "debug" for verbose shim logging on stderr.
 */
#ifndef SLICER_COMMON_SHIM_CONTRACT_H_
#define SLICER_COMMON_SHIM_CONTRACT_H_

#define SLICER_ENV_MEMORY_LIMITS "SLICER_MEMORY_LIMITS"
#define SLICER_ENV_ENFORCE "SLICER_ENFORCE"
#define SLICER_ENV_OPT_OUT_ALLOWED "SLICER_OPT_OUT_ALLOWED"
#define SLICER_ENV_OPT_OUT "SLICER_OPT_OUT"
#define SLICER_ENV_CONTAINER_ID "SLICER_CONTAINER_ID"
#define SLICER_ENV_LEDGER_DIR "SLICER_LEDGER_DIR"
#define SLICER_ENV_ARBITER_SOCKET "SLICER_ARBITER_SOCKET"
#define SLICER_ENV_LOG "SLICER_LOG"

/* File name of the shim inside a container and on the host. */
#define SLICER_SHIM_NAME "libslicer.so"
/* Where Allocate mounts the shim's directory inside a container. */
#define SLICER_SHIM_CONTAINER_DIR "/usr/local/lib/gpu-slicer"
/* A ledger's file in SLICER_LEDGER_DIR: PREFIX <container id> "-" <GPU key> SUFFIX (both parts
 * with characters other than [A-Za-z0-9._-] replaced by '_'). `slicer run` removes its own. */
#define SLICER_LEDGER_PREFIX "slicer-"
#define SLICER_LEDGER_SUFFIX ".ledger"

#endif /* SLICER_COMMON_SHIM_CONTRACT_H_ */
