/* The shim's configuration, read once per process from the environment that the device plugin or
 * `slicer run` sets (src/common/shim_contract.h). Pure: the environment is read through a
 * function pointer so that tests feed it directly. Not thread-safe; the shim calls it once.
 */
#ifndef SLICER_SHIM_CONFIG_H_
#define SLICER_SHIM_CONFIG_H_

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SLICER_MAX_LIMITS 16
#define SLICER_MAX_KEY 80

typedef enum {
  SLICER_MODE_OFF = 0,  /* not configured, or opted out where allowed: pass everything through */
  SLICER_MODE_ENFORCE,  /* caps in force */
  SLICER_MODE_DENY,     /* fail closed: the configuration is missing or malformed */
} slicer_mode;

typedef struct {
  char key[SLICER_MAX_KEY + 1]; /* "GPU-<uuid>", "MIG-<uuid>" or "*" */
  uint64_t bytes;
} slicer_limit;

typedef struct {
  slicer_mode mode;
  char reason[320];  /* why DENY or OFF, or a warning for ENFORCE; empty when nothing to say */
  int nlimits;
  slicer_limit limits[SLICER_MAX_LIMITS];
  char container_id[129];
  char ledger_dir[512];
  char arbiter_socket[256];
  int debug;
} slicer_config;

typedef const char* (*slicer_getenv_fn)(const char* name);

/* Fills `cfg` from the environment. Never fails: a bad environment yields SLICER_MODE_DENY with
 * the reason naming the variable and what would be right. */
void slicer_config_load(slicer_config* cfg, slicer_getenv_fn getenv_fn);

/* The cap for a device key ("GPU-..."), falling back to "*". Returns 0 and sets *bytes, or -1
 * when neither is present. */
int slicer_config_limit(const slicer_config* cfg, const char* key, uint64_t* bytes);

#ifdef __cplusplus
}
#endif

#endif /* SLICER_SHIM_CONFIG_H_ */
