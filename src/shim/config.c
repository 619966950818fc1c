#include "src/shim/config.h"

#include <stdio.h>
#include <string.h>

#include "src/common/shim_contract.h"

static int is_true(const char* v) { return v != NULL && strcmp(v, "1") == 0; }

static int valid_key(const char* s, size_t n) {
  if (n == 1 && s[0] == '*') return 1;
  if (n < 5 || n > SLICER_MAX_KEY) return 0;
  if (strncmp(s, "GPU-", 4) != 0 && strncmp(s, "MIG-", 4) != 0) return 0;
  for (size_t i = 4; i < n; ++i) {
    char c = s[i];
    int ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') ||
             c == '-' || c == '/';
    if (!ok) return 0;
  }
  return 1;
}

/* Decimal bytes, 1..2^63. */
static int parse_bytes(const char* s, size_t n, uint64_t* out) {
  if (n == 0 || n > 19) return 0;
  uint64_t v = 0;
  for (size_t i = 0; i < n; ++i) {
    if (s[i] < '0' || s[i] > '9') return 0;
    v = v * 10 + (uint64_t)(s[i] - '0');
  }
  if (v == 0 || v > (UINT64_C(1) << 63)) return 0;
  *out = v;
  return 1;
}

static void deny(slicer_config* cfg, const char* what) {
  cfg->mode = SLICER_MODE_DENY;
  snprintf(cfg->reason, sizeof cfg->reason, "%s", what);
}

static int parse_limits(slicer_config* cfg, const char* text) {
  const char* p = text;
  while (1) {
    const char* end = strchr(p, ',');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    const char* eq = memchr(p, '=', len);
    char why[200];
    if (eq == NULL) {
      snprintf(why, sizeof why, "item \"%.*s\" is not <GPU-UUID>=<bytes>", (int)(len > 80 ? 80 : len), p);
    } else if (!valid_key(p, (size_t)(eq - p))) {
      snprintf(why, sizeof why, "\"%.*s\" is not a GPU UUID (GPU-...) or *",
               (int)((eq - p) > 80 ? 80 : (eq - p)), p);
    } else if (!parse_bytes(eq + 1, len - (size_t)(eq - p) - 1, &cfg->limits[cfg->nlimits].bytes)) {
      snprintf(why, sizeof why, "\"%.*s\" is not a byte count (a positive decimal integer)",
               (int)((len - (size_t)(eq - p) - 1) > 40 ? 40 : (len - (size_t)(eq - p) - 1)), eq + 1);
    } else if (cfg->nlimits == SLICER_MAX_LIMITS) {
      snprintf(why, sizeof why, "more than %d GPUs named", SLICER_MAX_LIMITS);
    } else {
      slicer_limit* l = &cfg->limits[cfg->nlimits];
      memcpy(l->key, p, (size_t)(eq - p));
      l->key[eq - p] = '\0';
      for (int i = 0; i < cfg->nlimits; ++i) {
        if (strcmp(cfg->limits[i].key, l->key) == 0) {
          snprintf(why, sizeof why, "GPU %s named twice", l->key);
          goto bad;
        }
      }
      cfg->nlimits++;
      if (end == NULL) return 1;
      p = end + 1;
      continue;
    }
  bad:
    snprintf(cfg->reason, sizeof cfg->reason, SLICER_ENV_MEMORY_LIMITS " is malformed: %s", why);
    cfg->mode = SLICER_MODE_DENY;
    cfg->nlimits = 0;
    return 0;
  }
}

void slicer_config_load(slicer_config* cfg, slicer_getenv_fn getenv_fn) {
  memset(cfg, 0, sizeof *cfg);
  const char* log = getenv_fn(SLICER_ENV_LOG);
  cfg->debug = log != NULL && strcmp(log, "debug") == 0;

  const char* dir = getenv_fn(SLICER_ENV_LEDGER_DIR);
  snprintf(cfg->ledger_dir, sizeof cfg->ledger_dir, "%s", dir && *dir ? dir : "/dev/shm");
  const char* sock = getenv_fn(SLICER_ENV_ARBITER_SOCKET);
  snprintf(cfg->arbiter_socket, sizeof cfg->arbiter_socket, "%s", sock ? sock : "");
  const char* id = getenv_fn(SLICER_ENV_CONTAINER_ID);
  snprintf(cfg->container_id, sizeof cfg->container_id, "%s", id && *id ? id : "default");

  const char* enforce = getenv_fn(SLICER_ENV_ENFORCE);
  const char* limits = getenv_fn(SLICER_ENV_MEMORY_LIMITS);
  int must = is_true(enforce);

  if (enforce != NULL && *enforce != '\0' && strcmp(enforce, "0") != 0 && !must) {
    deny(cfg, SLICER_ENV_ENFORCE " must be 1 or 0");
    return;
  }
  if (limits == NULL || *limits == '\0') {
    if (must) deny(cfg, SLICER_ENV_ENFORCE "=1 but " SLICER_ENV_MEMORY_LIMITS
                        " is not set: the container's memory cap is missing");
    else cfg->mode = SLICER_MODE_OFF;
    return;
  }
  if (!parse_limits(cfg, limits)) return;

  for (size_t i = 0; cfg->container_id[i] != '\0'; ++i) {
    char c = cfg->container_id[i];
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-' ||
          c == '_' || c == '.')) {
      deny(cfg, SLICER_ENV_CONTAINER_ID " may hold only letters, digits, '-', '_' and '.'");
      return;
    }
  }
  if (id != NULL && strlen(id) > 128) {
    deny(cfg, SLICER_ENV_CONTAINER_ID " is longer than 128 characters");
    return;
  }
  if (cfg->ledger_dir[0] != '/' || (dir != NULL && strlen(dir) >= sizeof cfg->ledger_dir - 80)) {
    deny(cfg, SLICER_ENV_LEDGER_DIR " must be an absolute path of a directory");
    return;
  }

  cfg->mode = SLICER_MODE_ENFORCE;
  if (is_true(getenv_fn(SLICER_ENV_OPT_OUT))) {
    if (is_true(getenv_fn(SLICER_ENV_OPT_OUT_ALLOWED))) {
      cfg->mode = SLICER_MODE_OFF;
      snprintf(cfg->reason, sizeof cfg->reason,
               SLICER_ENV_OPT_OUT "=1 and the config allows it: memory is not capped");
    } else {
      snprintf(cfg->reason, sizeof cfg->reason,
               SLICER_ENV_OPT_OUT "=1 ignored: the config does not allow this resource to opt "
               "out (" SLICER_ENV_OPT_OUT_ALLOWED " is not 1); memory stays capped");
    }
  }
}

int slicer_config_limit(const slicer_config* cfg, const char* key, uint64_t* bytes) {
  int star = -1;
  for (int i = 0; i < cfg->nlimits; ++i) {
    if (strcmp(cfg->limits[i].key, key) == 0) {
      *bytes = cfg->limits[i].bytes;
      return 0;
    }
    if (strcmp(cfg->limits[i].key, "*") == 0) star = i;
  }
  if (star < 0) return -1;
  *bytes = cfg->limits[star].bytes;
  return 0;
}
