/*
 * gencache/config.h: part of the public API of libgencache: the configuration file
 * (gencache.yaml, docs/config.md), and the one grammar of sizes and durations every surface uses.
 * Include <gencache.h>, which includes this file; it is not meant to be included alone.
 */
#ifndef GENCACHE_API_CONFIG_H
#define GENCACHE_API_CONFIG_H

#ifndef GENCACHE_H
#error "include <gencache.h>, not <gencache/config.h>"
#endif

/* Parses a size in bytes: decimal digits, then optionally one unit: "B" (bytes), "K" "M" "G" "T"
 * or "KiB" "MiB" "GiB" "TiB" (powers of 1024), "KB" "MB" "GB" "TB" (powers of 1000). No sign,
 * fraction, space or other spelling. "1G" is 1073741824, "1GB" 1000000000, "4096" 4096.
 * Returns GENCACHE_OK, or GENCACHE_EINVAL (NULL argument, malformed, above 2^64-1); *out is 0 on
 * failure. Thread-safety: safe. */
GENCACHE_API int gencache_parse_size(const char *s, uint64_t *out);

/* Parses a duration into milliseconds: decimal digits, then optionally one unit: "ms", "s",
 * "m" (minutes), "h", "d", "w" (weeks); a bare number is seconds. "90s", "30m", "7d", "500ms".
 * Returns GENCACHE_OK, or GENCACHE_EINVAL (NULL argument, malformed, overflow); *out is 0 on
 * failure. Thread-safety: safe. */
GENCACHE_API int gencache_parse_duration_ms(const char *s, uint64_t *out);

/* A loaded, validated configuration file. Immutable once loaded. */
typedef struct gencache_config gencache_config;

#define GENCACHE_CONFIG_ERR_MAX 512 /* error buffer that always suffices */

/* Loads and validates the YAML file at path: every key, type and value is checked, and the
 * layers are checked by defining them in a scratch registry, so a config that loads also
 * applies. The file holds one YAML document whose root is a mapping (an empty file is the
 * defaults). On failure err (NUL-terminated, truncated to err_size; may be NULL) reads
 * "FILE:LINE: key.path: message", e.g. "gencache.yaml:12: tiers.memory.max_bytes: expected a
 * size like 1G, 512M or 4096"; a file that cannot be read gives "FILE: cannot open: REASON".
 * On success *out is a new config; free it with gencache_config_free().
 * Returns GENCACHE_OK, GENCACHE_EINVAL (NULL path or out), GENCACHE_EIO (cannot read the file),
 * GENCACHE_ELIMIT (larger than 16 MiB), GENCACHE_EPARSE (not YAML, a second document, flow
 * collections nested deeper than 64 levels), GENCACHE_ECONFIG (a key or value refused: among
 * them a string holding a NUL character, a size of 0, a redis url whose port is outside
 * 1-65535), GENCACHE_ENOMEM. Thread-safety: safe. */
GENCACHE_API int gencache_config_load(const char *path, gencache_config **out, char *err,
                                      size_t err_size);

/* gencache_config_load() on len bytes of YAML in memory; `name` stands for the file name in
 * messages (NULL: "<config>"). text is borrowed and need not be NUL-terminated.
 * Thread-safety: safe. */
GENCACHE_API int gencache_config_parse(const char *name, const char *text, size_t len,
                                       gencache_config **out, char *err, size_t err_size);

/* Frees a config. Strings handed out by the accessors below become invalid.
 * gencache_config_free(NULL) does nothing. Thread-safety: one thread at a time per config. */
GENCACHE_API void gencache_config_free(gencache_config *cfg);

/* The path (or name) the config was loaded from; owned by the config. Thread-safety: safe. */
GENCACHE_API const char *gencache_config_path(const gencache_config *cfg);

/* Writes what the config sets of `tiers:` and `data_dir` into *opts (filled beforehand by
 * gencache_options_init(); what the file leaves out keeps opts's value): mem_max_bytes,
 * mem_max_entries, mem_max_pinned_bytes, mem_policy, mrc_sample_rate (tiers.memory.policy and
 * .mrc_sample_rate), pressure_warn_ratio and pressure_ttl_ms (from
 * memory_pressure), data_dir (NULL when tiers.disk.enabled is false), disk_max_bytes,
 * disk_max_entries, redis_url (NULL when tiers.redis.enabled is false), redis_timeout_ms,
 * redis_max_value_bytes, and log_level. Strings point into the config.
 * Returns GENCACHE_OK, GENCACHE_EINVAL (NULL argument). Thread-safety: safe. */
GENCACHE_API int gencache_config_options(const gencache_config *cfg, gencache_options *opts);

/* Applies the config's layers (added or redefined in the cache's layer registry), models (their
 * prompt normalization modes), tenants (gencache_tenant_define(): priority, quota, admin) and
 * preferred patterns (gencache_preferred_add()) to an open cache; keys derived with
 * gencache_keyspace_from_cache() follow them. Returns GENCACHE_OK, GENCACHE_EINVAL (NULL argument),
 * GENCACHE_ELIMIT (the cache has too many layers or tenants already), GENCACHE_ENOMEM.
 * Thread-safety: init only (before the cache is used). */
GENCACHE_API int gencache_config_apply(const gencache_config *cfg, gencache *cache);

/* Opens a cache as the config describes: gencache_open() with opts (NULL: gencache_options_init()
 * then gencache_config_options(); a caller with flags of its own fills opts that way and then
 * overrides), then gencache_config_apply(). Keys only a daemon uses (listen, tokens, upstream,
 * limits, ...) are ignored here. On success *out is a new cache; close it with gencache_close().
 * Returns what gencache_open() and gencache_config_apply() return. Thread-safety: safe. */
GENCACHE_API int gencache_open_config(gencache **out, const gencache_config *cfg,
                                      const gencache_options *opts);

/* The settings of a server process (gencached) the config holds. Every field is 0 or NULL
 * when the file does not set it; strings point into the config. */
typedef struct gencache_config_server {
    size_t struct_size;            /* sizeof(gencache_config_server); set by the caller */
    const char *listen;            /* "HOST:PORT" */
    uint64_t max_body;             /* limits.max_body, bytes */
    unsigned max_connections;      /* limits.max_connections */
    unsigned threads;              /* limits.threads */
    unsigned timeout_s;            /* limits.timeout, seconds */
    const char *upstream_url;      /* upstream.url */
    uint64_t upstream_timeout_ms;  /* upstream.timeout */
    unsigned upstream_concurrency; /* upstream.concurrency */
    unsigned prewarm_concurrency;  /* prewarm.concurrency */
    double pressure_warn_ratio;    /* memory_pressure.warn_ratio, in (0, 1] */
    uint64_t pressure_ttl_ms;      /* memory_pressure.shortened_ttl */
    int log_level_set;             /* nonzero: log_level is set (gencache_config_options()) */
    uint64_t header_timeout_ms;    /* limits.header_timeout; 0: not set (the daemon's default) */
    unsigned max_connections_per_client; /* limits.max_connections_per_client (0: no cap) */
    int has_max_connections_per_client;  /* nonzero: the file sets it (0 is a value) */
    uint64_t max_inflight_bytes;         /* limits.max_inflight_bytes: request bodies held at once,
                                            bytes; 0: not set (the daemon's default) */
    uint64_t prewarm_max_bytes;          /* limits.prewarm_max_bytes: request bytes one tenant's
                                            unfinished prewarm jobs hold; 0: not set */
    int has_fast_get;                    /* nonzero: the file sets http.fast_get */
    int fast_get; /* http.fast_get: nonzero when the daemon's own loop serves simple GETs */
} gencache_config_server;

/* Fills *out (out->struct_size must be set) with the server settings. Returns GENCACHE_OK or
 * GENCACHE_EINVAL. Thread-safety: safe. */
GENCACHE_API int gencache_config_server_get(const gencache_config *cfg,
                                            gencache_config_server *out);

/* One entry of `tenants:`. Strings point into the config. */
typedef struct gencache_config_tenant {
    size_t struct_size;         /* sizeof(gencache_config_tenant); set by the caller */
    const char *name;           /* letters, digits, '_', '-', '.'; at most 64 */
    const char *token;          /* the bearer token, printable ASCII, at least 16 characters */
    gencache_priority priority; /* default NORMAL (gencache/tenant.h) */
    uint64_t quota_bytes;       /* 0: no quota */
    int admin;                  /* nonzero: sees global stats, may invalidate any entry */
} gencache_config_tenant;

/* The number of tenants, and tenant i into *out (out->struct_size must be set; as much of the
 * struct is written as it says). Returns GENCACHE_OK, GENCACHE_EINVAL (NULL argument,
 * struct_size too small), GENCACHE_ENOTFOUND (i out of range). Thread-safety: safe. */
GENCACHE_API size_t gencache_config_tenant_count(const gencache_config *cfg);
GENCACHE_API int gencache_config_tenant_get(const gencache_config *cfg, size_t i,
                                            gencache_config_tenant *out);

/* Pattern i of `preferred:` (shell patterns of keys stored pinned; each names a layer the
 * config knows) and source i of `sensitive:` (POSIX extended regular expressions); NULL past
 * the end. Owned by the config. Thread-safety: safe. */
GENCACHE_API const char *gencache_config_preferred(const gencache_config *cfg, size_t i);
GENCACHE_API const char *gencache_config_sensitive(const gencache_config *cfg, size_t i);

/* Nonzero when `key` matches a `preferred:` pattern (fnmatch). Thread-safety: safe. */
GENCACHE_API int gencache_config_preferred_match(const gencache_config *cfg, const char *key);

/* Nonzero when `text` matches a `sensitive:` expression (case-insensitive): a request with such
 * a prompt is never cached. NULL text matches nothing. Thread-safety: safe. */
GENCACHE_API int gencache_config_sensitive_match(const gencache_config *cfg, const char *text);

/* The layers the file names, in file order: layer i's name, or NULL past the end (owned by the
 * config). Their effective definitions are read from a cache the config was applied to
 * (gencache_layer_get()). Thread-safety: safe. */
GENCACHE_API const char *gencache_config_layer(const gencache_config *cfg, size_t i);

/* Model i of `models:` (its name, owned by the config, and its normalization mode into *mode);
 * NULL past the end. Thread-safety: safe. */
GENCACHE_API const char *gencache_config_model(const gencache_config *cfg, size_t i,
                                               gencache_norm_mode *mode);

#endif /* GENCACHE_API_CONFIG_H */
