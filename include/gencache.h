/*
 * gencache.h: the public C API of libgencache, a cache for generative-video inference.
 *
 * This header is the specification: what is not declared here (or in the headers under gencache/ it
 * includes for the key, image and tensor modules) is not API. Every function says
 * what it does, the error codes it returns, who owns what, and whether it may be called from
 * several threads at once. Fallible functions return an int: GENCACHE_OK (0) on success, a
 * negative GENCACHE_E* code on failure; out-parameters are set to NULL / 0 on failure.
 *
 * Keys are strings "<layer>/<64 lowercase hex digits>" (DESIGN.md section 2), for example
 * "result/9f86d0...". A layer is a kind of artifact (result, image_latent, text_embedding,
 * condition, session, or one defined with gencache_layer_define()) with its own TTL and scope.
 */
#ifndef GENCACHE_H
#define GENCACHE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define GENCACHE_API __attribute__((visibility("default")))
#else
#define GENCACHE_API
#endif

#define GENCACHE_VERSION_MAJOR  0
#define GENCACHE_VERSION_MINOR  1
#define GENCACHE_VERSION_PATCH  0
#define GENCACHE_VERSION_STRING "0.1.0"

/* The library's version string, e.g. "0.1.0". Thread-safety: safe. */
GENCACHE_API const char *gencache_version(void);

/* ---------------------------------------------------------------------------------------------
 * Errors
 *
 * One table generates the enum, gencache_errname() and gencache_strerror(). Codes are never
 * renumbered; new ones are appended.
 */
#define GENCACHE_ERRNO_MAP(X)                                                                      \
    X(OK, 0, "success")                                                                            \
    X(EINVAL, -1, "invalid argument")                                                              \
    X(ENOMEM, -2, "out of memory")                                                                 \
    X(ENOTFOUND, -3, "not found")                                                                  \
    X(ETOOBIG, -4, "value larger than the tier allows")                                            \
    X(EFULL, -5, "cache full: every entry that could make room is pinned or in use")               \
    X(EIO, -6, "input/output error")                                                               \
    X(ECORRUPT, -7, "stored data failed its checksum")                                             \
    X(EBUSY, -8, "resource is locked by another process")                                          \
    X(EPARSE, -9, "malformed input")                                                               \
    X(EUNSUPPORTED, -10, "unsupported format or operation")                                        \
    X(ELIMIT, -11, "input exceeds a configured limit")                                             \
    X(ETIMEDOUT, -12, "operation timed out")                                                       \
    X(EUNAVAILABLE, -13, "backend unavailable")                                                    \
    X(ECONFIG, -14, "invalid configuration")                                                       \
    X(EVERSION, -15, "data format version not supported")                                          \
    X(EPERM, -16, "operation not permitted")                                                       \
    X(EEXIST, -17, "already exists")                                                               \
    X(ENOSPC, -18, "no space left on device")                                                      \
    X(EUNCACHEABLE, -19, "request is not cacheable")

typedef enum gencache_errno {
#define GENCACHE_ERRNO_ENUM(name, code, msg) GENCACHE_##name = (code),
    GENCACHE_ERRNO_MAP(GENCACHE_ERRNO_ENUM)
#undef GENCACHE_ERRNO_ENUM
} gencache_errno;

/* A human-readable sentence for an error code ("not found"); "unknown error" for a code that is
 * not in the table. The string is static. Thread-safety: safe. */
GENCACHE_API const char *gencache_strerror(int err);

/* The code's name without the prefix ("ENOTFOUND", "OK"); "EUNKNOWN" for a code not in the
 * table. The string is static. Thread-safety: safe. */
GENCACHE_API const char *gencache_errname(int err);

/* ---------------------------------------------------------------------------------------------
 * Logging and time
 */
typedef enum gencache_log_level {
    GENCACHE_LOG_ERROR = 0,
    GENCACHE_LOG_WARN = 1,
    GENCACHE_LOG_INFO = 2,
    GENCACHE_LOG_DEBUG = 3,
} gencache_log_level;

/* Receives one log message (no trailing newline). Called from whichever thread logs; it must be
 * thread-safe and must not call back into the cache. */
typedef void (*gencache_log_fn)(void *userdata, gencache_log_level level, const char *message);

/* Returns the current wall-clock time in milliseconds since the Unix epoch. Tests inject one to
 * move time by hand. Must be thread-safe. */
typedef uint64_t (*gencache_clock_fn)(void *userdata);

/* Memory allocator for the cache's own allocations (entries, handles, tables). The functions
 * follow malloc/free semantics; a NULL return is reported as GENCACHE_ENOMEM. Used by tests to
 * inject allocation failures. Must be thread-safe. */
typedef struct gencache_allocator {
    void *(*malloc_fn)(void *userdata, size_t size);
    void (*free_fn)(void *userdata, void *ptr);
    void *userdata;
} gencache_allocator;

/* ---------------------------------------------------------------------------------------------
 * Tensors: the dtype of a stored tensor, recorded in its entry's metadata.
 */
typedef enum gencache_dtype {
    GENCACHE_DTYPE_NONE = 0, /* not a tensor */
    GENCACHE_DTYPE_F32 = 1,
    GENCACHE_DTYPE_F16 = 2,
    GENCACHE_DTYPE_BF16 = 3,
    GENCACHE_DTYPE_I8 = 4,
    GENCACHE_DTYPE_U8 = 5,
    GENCACHE_DTYPE_I32 = 6,
    GENCACHE_DTYPE_I64 = 7,
} gencache_dtype;

#define GENCACHE_MAX_DIMS 8

/* The dtype's name as DESIGN.md writes it ("f32", "bf16", ...); NULL for an unknown value.
 * Thread-safety: safe. */
GENCACHE_API const char *gencache_dtype_name(gencache_dtype dtype);

/* Parses a dtype name ("f32", "f16", "bf16", "i8", "u8", "i32", "i64").
 * Returns GENCACHE_OK, or GENCACHE_EINVAL for an unknown name (*out is then GENCACHE_DTYPE_NONE).
 * Thread-safety: safe. */
GENCACHE_API int gencache_dtype_parse(const char *name, gencache_dtype *out);

/* Size of one element in bytes; 0 for GENCACHE_DTYPE_NONE or an unknown value.
 * Thread-safety: safe. */
GENCACHE_API size_t gencache_dtype_size(gencache_dtype dtype);

/* ---------------------------------------------------------------------------------------------
 * Opening and closing a cache
 */
typedef struct gencache gencache;

typedef struct gencache_options {
    size_t struct_size;         /* sizeof(gencache_options); set by gencache_options_init() */
    uint64_t mem_max_bytes;     /* memory tier byte limit; 0: unlimited. Default 1 GiB */
    uint64_t mem_max_entries;   /* memory tier entry limit; 0: unlimited. Default 0 */
    unsigned mem_shards;        /* hash table shards, rounded up to a power of two; default 16 */
    uint64_t ghost_max_entries; /* evicted keys remembered for ghost hits; 0: none. Default
                                   65536. From 8192 up a sample of the keys is kept (1 in 16 at
                                   the default): ghost_hits is then an estimate */
    int verify_mem_reads;       /* nonzero: verify the checksum on every memory-tier hit (costs
                                   a pass over the value); default 0 */
    gencache_log_fn log_fn;     /* NULL: no logging */
    void *log_userdata;
    gencache_log_level log_level; /* messages above this level are dropped; default INFO */
    gencache_clock_fn clock_fn;   /* NULL: the system's coarse real-time clock (one kernel
                                     tick, a few ms, of resolution) */
    void *clock_userdata;
    const gencache_allocator *allocator; /* NULL: malloc/free. Borrowed: must outlive the cache
                                            and every handle */
    const char *data_dir;      /* disk tier directory (created if absent); NULL: no disk tier */
    uint64_t disk_max_bytes;   /* disk tier byte limit; 0: unlimited. Default 10 GiB */
    uint64_t disk_max_entries; /* disk tier entry limit; 0: unlimited. Default 0 */
    const char *redis_url;     /* "redis://HOST:PORT[/DB]"; NULL: no redis tier */
    uint32_t redis_timeout_ms; /* longest a Redis call may stall a caller; default 100 */
    uint64_t redis_max_value_bytes; /* larger values are not sent to Redis; default 64 MiB */
    uint64_t writeback_max_bytes;   /* bound of the queue of entries on their way from memory to
                                       disk and Redis (written by a background thread); a put or
                                       eviction that finds it full waits. Default 64 MiB */
    uint64_t mem_max_pinned_bytes;  /* most bytes pinned entries may hold in the memory tier: a
                                       pin that would pass it is stored unpinned (evictable), and
                                       counted in gencache_tier_stats.pins_refused. 0: half of
                                       mem_max_bytes (none when that is unlimited). Default 0 */
    double pressure_warn_ratio;     /* memory fill (bytes / limit) from which gencache_pressure_
                                       relieve() moves batch-priority tenants' entries out of
                                       memory first; 0: 0.85. Default 0 */
    uint64_t pressure_ttl_ms;       /* while the cache is degraded, the TTL of new entries of every
                                       caller but high-priority tenants is capped at this; 0: 10
                                       minutes. Default 0 */
    int mem_policy;                 /* the memory tier's eviction policy, a gencache_eviction
                                       (layers may name their own). Default LRU: on the real
                                       request log GDSF saved within 1% of it and S3-FIFO less
                                       (docs/BENCHMARKS.md) */
    double mrc_sample_rate;         /* share of keys (0..1] the memory tier's miss-ratio curve
                                       samples (gencache_mrc_get()); 0: no curve; outside [0, 1]:
                                       GENCACHE_EINVAL. Default 1/16 */
    double redis_bloom_fp_rate;     /* above 0: a Bloom filter of the shared tier's keys in front
                                       of it, sized for this false-positive rate at
                                       redis_bloom_capacity keys; a get it rules out skips the
                                       round trip (docs/tiers.md). 0: none. Default 0 */
    uint64_t redis_bloom_capacity;  /* keys the filter is sized for; 0: 1,000,000. Default 0 */
    /* Encryption at rest of the disk and Redis tiers (AES-256-GCM; docs/tiers.md). Each source
     * is a file path or "env:NAME" (an environment variable) holding a 256-bit key as 64
     * hexadecimal digits (a file may also hold the 32 raw bytes). The first key seals every new
     * record; all of them open records (keys being rotated out). Records sealed under a key not
     * listed, records failing their tag, and unencrypted records are misses, counted in
     * gencache_tier_stats.crypt_rejected. A source that cannot be read makes gencache_open()
     * fail with GENCACHE_ECONFIG. NULL or 0: no encryption. At most 16 sources; borrowed for
     * the call. Default NULL, 0 */
    const char *const *encryption_keys;
    size_t n_encryption_keys;
} gencache_options;

/* Fills *opts with the defaults above. Thread-safety: safe. */
GENCACHE_API void gencache_options_init(gencache_options *opts);

/* Opens a cache with the default layers (result, image_latent, text_embedding, condition,
 * session; DESIGN.md section 2), a memory tier, a disk tier when opts->data_dir is set and a
 * Redis tier when opts->redis_url is set. opts may be NULL for the defaults; it is borrowed for
 * the call (strings included). On success *out is a new cache; close it with gencache_close().
 * Returns GENCACHE_OK, GENCACHE_EINVAL (NULL out, struct_size out of range, incomplete
 * allocator), GENCACHE_ENOMEM, and for the disk tier GENCACHE_EBUSY (another process has the
 * data directory), GENCACHE_EVERSION (a data directory of an unknown format), GENCACHE_EIO.
 * A Redis server that cannot be reached is not an error: the tier retries in the background.
 * Thread-safety: safe (each call makes an independent cache). */
GENCACHE_API int gencache_open(gencache **out, const gencache_options *opts);

/* Closes the cache and frees what it owns. Before the tiers close, every entry of a write-back
 * layer that only memory holds is written to the disk tier (session-scoped layers excepted) and
 * the write-back queue is drained, so a clean shutdown loses nothing a restart could serve
 * (docs/tiers.md says what survives what). Handles still held stay valid until released: their
 * bytes outlive the cache. gencache_close(NULL) does nothing.
 * Thread-safety: one thread at a time, and no other call on this cache may run meanwhile. */
GENCACHE_API void gencache_close(gencache *cache);

/* ---------------------------------------------------------------------------------------------
 * Layers
 */
typedef enum gencache_scope {
    GENCACHE_SCOPE_GLOBAL = 0,  /* one entry serves every tenant */
    GENCACHE_SCOPE_TENANT = 1,  /* entries belong to one tenant */
    GENCACHE_SCOPE_SESSION = 2, /* entries belong to one generation session */
} gencache_scope;

/* How the memory tier chooses which entries leave for lack of room (docs/tiers.md). Pinned
 * entries are never chosen, and expiry does not depend on the policy. */
typedef enum gencache_eviction {
    GENCACHE_EVICTION_DEFAULT = -1, /* a layer's: whatever the memory tier's policy is */
    GENCACHE_EVICTION_LRU = 0,      /* least recently used first, approximated by CLOCK: a hit
                                       sets a bit, eviction gives hit entries a second chance */
    GENCACHE_EVICTION_GDSF = 1,     /* cost-aware: lowest clock + hits * cost_ms / bytes first, the
                                       clock rising to each victim's value (an entry of no known
                                       cost counts 1 ms: size-aware recency) */
    GENCACHE_EVICTION_S3FIFO = 2,   /* S3-FIFO: a small FIFO for new entries, a main FIFO with
                                       second chances, a ghost queue of recent evictions */
} gencache_eviction;

/* How lookups of a layer match input images (DESIGN.md section 3). */
typedef enum gencache_image_match_mode {
    GENCACHE_IMAGE_MATCH_EXACT = 0,      /* the pixel digest only */
    GENCACHE_IMAGE_MATCH_PERCEPTUAL = 1, /* opt-in near-duplicate lookup; stored for the lookups
                                            that use it, keys are unchanged */
} gencache_image_match_mode;

/* One layer of the cache's layer registry: its key recipe, scope, lifetime and storage policy.
 * The registry is the one table of layers: the cache's TTLs and write policy and the key
 * recipes of its keyspace (gencache_keyspace_from_cache()) are both read from it. Fields after
 * write_through were appended in 0.2; a caller compiled against the older, shorter struct still
 * works (struct_size tells the library how much of the struct it may read). */
typedef struct gencache_layer_options {
    size_t struct_size;   /* sizeof(gencache_layer_options); set by _init() */
    const char *name;     /* [a-z0-9_], 1-32 bytes */
    gencache_scope scope; /* default GLOBAL */
    uint64_t ttl_ms;      /* default time to live; 0: no expiry. Default 0 */
    int sliding_ttl;      /* nonzero: a hit pushes the expiry to now + ttl_ms. Default 0 */
    int write_through;    /* nonzero: a put also writes to the disk and redis tiers at once;
                             zero (write-back): entries reach disk in the background when they
                             leave memory, and at the latest at gencache_close(). Default 0 */
    /* Appended in 0.2. */
    const char *const *fields; /* the key recipe, n_fields request field names in the syntax of
                                  gencache_keyspace_set_layer(); NULL: keep the layer's current
                                  recipe (a new layer then has none: its keys can be stored and
                                  checked, not derived from requests) */
    size_t n_fields;
    int shared;                 /* nonzero: entries reach the shared (redis) tier: at once for a
                                   write-through layer, in the background for a write-back one.
                                   Default 1 (the built-in session layer: 0) */
    int prompt_normalization;   /* a gencache_norm_mode, or -1 (default): each model's own mode.
                                   Prompts are normalized per model, so a layer's mode becomes the
                                   default mode of the models that have none */
    gencache_eviction eviction; /* the layer's eviction policy in the memory tier; default
                                   GENCACHE_EVICTION_DEFAULT (the tier's, mem_policy) */
    gencache_image_match_mode image_match; /* default EXACT */
} gencache_layer_options;

/* Fills *opts with the defaults above (name NULL, fields NULL). Thread-safety: safe. */
GENCACHE_API void gencache_layer_options_init(gencache_layer_options *opts);

/* Defines a layer in the cache's registry, or redefines an existing one: every option is
 * replaced (entries already stored keep the expiry they were given), and the key recipe too when
 * opts->fields is set; a scope change re-scopes the current recipe. The name and fields are
 * copied. At most GENCACHE_MAX_LAYERS layers. opts->struct_size may be that of the 0.1 struct
 * (up to write_through); the later fields then take their defaults.
 * Returns GENCACHE_OK, GENCACHE_EINVAL (bad name, scope, field, mode or image_match; n_fields 0
 * with fields set; an unknown eviction policy), GENCACHE_ELIMIT
 * (too many layers or fields), GENCACHE_ENOMEM. Thread-safety: init only (before any other call
 * uses the cache or its keyspace). */
GENCACHE_API int gencache_layer_define(gencache *cache, const gencache_layer_options *opts);

#define GENCACHE_MAX_LAYERS 32

/* Copies the registry entry of layer `name` into *out. out->struct_size says how much of the
 * struct may be written: set it (gencache_layer_options_init() does), or leave it 0 for the 0.1
 * fields only (what callers of 0.1, which did not set it, get).
 * out->name and out->fields point into the cache's registry, valid until the layer is
 * redefined or the cache is closed; fields are written as defined (a required field keeps its
 * '!'); a layer without a recipe has fields NULL and n_fields 0.
 * Returns GENCACHE_OK, GENCACHE_EINVAL, GENCACHE_ENOTFOUND. Thread-safety: safe. */
GENCACHE_API int gencache_layer_get(gencache *cache, const char *name, gencache_layer_options *out);

/* The number of layers in the cache's registry and the name of layer i (definition order; NULL
 * past the end). The name is owned by the cache. Thread-safety: safe. */
GENCACHE_API size_t gencache_layer_count(gencache *cache);
GENCACHE_API const char *gencache_layer_name(gencache *cache, size_t i);

/* Checks that `key` is "<known layer>/<64 lowercase hex>". Returns GENCACHE_OK,
 * GENCACHE_EINVAL (malformed key), GENCACHE_ENOTFOUND (well-formed, layer not defined).
 * Thread-safety: safe. */
GENCACHE_API int gencache_key_check(gencache *cache, const char *key);

/* ---------------------------------------------------------------------------------------------
 * Entries
 */

/* Metadata of an entry. On put, the caller fills the fields marked "in"; the cache copies what it
 * keeps. From a handle, every field is filled and the strings point into the handle (valid until
 * it is released). */
typedef struct gencache_meta {
    size_t struct_size;               /* in: sizeof(gencache_meta); set by gencache_meta_init() */
    const char *content_type;         /* in: MIME type; NULL: application/octet-stream */
    const char *tenant;               /* in: owner for tenant-scoped layers; NULL or "": none */
    const char *model;                /* in: model that made it, for invalidation; NULL: none */
    const char *tags;                 /* in: comma-separated tags; NULL: none */
    gencache_dtype dtype;             /* in: tensor dtype; NONE: not a tensor */
    uint32_t ndim;                    /* in: tensor rank, <= GENCACHE_MAX_DIMS */
    int64_t shape[GENCACHE_MAX_DIMS]; /* in: tensor dimensions, ndim of them */
    uint64_t cost_ms;                 /* in: time it took to compute: what a hit saves */
    uint64_t ttl_ms;                  /* in: time to live; 0: the layer's default */
    int pinned; /* in: nonzero: never evicted (still expires, deletable), within
                   the memory tier's pinned-bytes ceiling (beyond it the entry
                   is stored unpinned) */
    /* Filled by the cache; ignored on put. */
    const char *key;         /* "<layer>/<hex>" */
    const char *layer;       /* the layer's name */
    uint64_t size;           /* value size in bytes */
    uint64_t checksum;       /* XXH3-64 of the value */
    uint64_t created_ms;     /* wall-clock ms when stored */
    uint64_t expires_ms;     /* wall-clock ms when it expires; 0: never */
    uint64_t last_access_ms; /* wall-clock ms of the latest access (this lookup's, when it
                                counted one; else the put's or an earlier hit's) */
    uint64_t hits;           /* hits counted so far, this lookup's included */
    const char *tier;        /* tier the value was found in ("mem", "disk", ...) */
} gencache_meta;

/* Fills *meta with defaults: no tenant, model or tags, not a tensor, layer TTL, not pinned.
 * Thread-safety: safe. */
GENCACHE_API void gencache_meta_init(gencache_meta *meta);

/* Stores `size` bytes under `key`, replacing any entry with that key (handles on the old value
 * stay valid). data and meta are borrowed for the call; the cache copies them. meta may be NULL
 * for the defaults. A tensor's size must equal its element count times its dtype's size.
 * Evicts least recently used entries to fit the tier's limits.
 * Returns GENCACHE_OK, GENCACHE_EINVAL (bad key, meta or tensor shape), GENCACHE_ENOTFOUND
 * (unknown layer), GENCACHE_ETOOBIG (larger than the memory tier's byte limit), GENCACHE_EFULL
 * (no room: the rest is pinned or being written), GENCACHE_ENOMEM; for a write-through layer
 * with a disk tier, the disk's error when it cannot store the value (GENCACHE_ENOSPC,
 * GENCACHE_EIO, ...): the put then stores nothing, so an acknowledged write-through put is on
 * disk.
 * Thread-safety: safe. */
GENCACHE_API int gencache_put(gencache *cache, const char *key, const void *data, size_t size,
                              const gencache_meta *meta);

/* Adds a shell pattern (fnmatch: a star matches any run of characters) of keys that every put
 * stores pinned, whoever makes it: the entries a deployment always wants in memory. A pattern is
 * matched against the key the caller names (for a tenant, before its namespace). Pins stay
 * within the memory tier's pinned-bytes ceiling. The pattern is copied. Returns GENCACHE_OK,
 * GENCACHE_EINVAL (NULL or empty), GENCACHE_ENOMEM. Thread-safety: init only. */
GENCACHE_API int gencache_preferred_add(gencache *cache, const char *pattern);

/* A read handle: a reference to a stored value. Its bytes stay valid and unchanged until it is
 * released, even if the entry is evicted, replaced, invalidated or the cache is closed. */
typedef struct gencache_handle gencache_handle;

/* Looks up `key`. On a hit, *out is a new handle pointing at the stored bytes (no copy); release
 * it with gencache_handle_release(). A hit counts the access and, for a sliding-TTL layer,
 * extends the expiry. Expired entries are misses.
 * Returns GENCACHE_OK, GENCACHE_ENOTFOUND (miss, or a layer that is not defined), GENCACHE_EINVAL
 * (malformed key), GENCACHE_ENOMEM. Thread-safety: safe. */
GENCACHE_API int gencache_get(gencache *cache, const char *key, gencache_handle **out);

/* Like gencache_get(), but changes nothing: no access or lookup is counted, no expiry moves, an
 * entry found below memory is not promoted and nothing is evicted (for HEAD requests, ownership
 * checks and probes). Thread-safety: safe. */
GENCACHE_API int gencache_peek(gencache *cache, const char *key, gencache_handle **out);

/* The handle's bytes: valid until the handle is released. Never NULL for a valid handle (a zero-
 * length value gives a non-NULL pointer). Thread-safety: safe. */
GENCACHE_API const void *gencache_handle_data(const gencache_handle *handle);

/* The number of bytes at gencache_handle_data(). Thread-safety: safe. */
GENCACHE_API size_t gencache_handle_size(const gencache_handle *handle);

/* The entry's metadata as it was at the lookup; owned by the handle. Thread-safety: safe. */
GENCACHE_API const gencache_meta *gencache_handle_meta(const gencache_handle *handle);

/* Takes another reference on a handle; each retain needs its own release. Returns handle.
 * Thread-safety: safe. */
GENCACHE_API gencache_handle *gencache_handle_retain(gencache_handle *handle);

/* Drops a reference; the bytes are freed with the last one. release(NULL) does nothing.
 * Thread-safety: safe. */
GENCACHE_API void gencache_handle_release(gencache_handle *handle);

/* Removes `key` from every tier. Returns GENCACHE_OK, GENCACHE_ENOTFOUND (nothing stored, or a
 * layer that is not defined), GENCACHE_EINVAL (malformed key). Handles on the value stay valid.
 * Thread-safety: safe. */
GENCACHE_API int gencache_del(gencache *cache, const char *key);

/* Which entries gencache_invalidate() removes: every set field must match (AND); unset fields
 * (NULL / 0) match anything. A filter with no field set is refused (GENCACHE_EINVAL), so that
 * "everything" is never removed by accident. */
typedef struct gencache_filter {
    size_t struct_size;     /* sizeof(gencache_filter); set by gencache_filter_init() */
    const char *key;        /* exactly this key */
    const char *layer;      /* entries of this layer */
    const char *tenant;     /* entries owned by this tenant */
    const char *tag;        /* entries carrying this tag among their tags */
    const char *model;      /* entries made by this model */
    uint64_t older_than_ms; /* entries created more than this many ms ago; 0: any age */
} gencache_filter;

/* Fills *filter so that it matches nothing in particular (all fields unset).
 * Thread-safety: safe. */
GENCACHE_API void gencache_filter_init(gencache_filter *filter);

/* Removes every entry that matches `filter` from every tier; pinned entries too.
 * *count (may be NULL) receives how many were removed.
 * Returns GENCACHE_OK, GENCACHE_EINVAL (NULL or empty filter). Thread-safety: safe. */
GENCACHE_API int gencache_invalidate(gencache *cache, const gencache_filter *filter,
                                     uint64_t *count);

/* Moves every unpinned entry that matches `filter` out of the memory tier, and only out of it:
 * entries of write-back layers that no persistent tier holds yet are queued for the disk tier
 * first (as on any eviction), so durable copies are never touched. This is how memory pressure
 * is relieved; gencache_invalidate() is how data is removed. *count (may be NULL) receives how
 * many entries left memory. Returns GENCACHE_OK, GENCACHE_EINVAL (NULL or empty filter).
 * Thread-safety: safe. */
GENCACHE_API int gencache_demote(gencache *cache, const gencache_filter *filter, uint64_t *count);

/* Writes every entry of a write-back layer that only memory holds to the disk tier (session-
 * scoped layers excepted) and waits until the write-back queue is empty: after it returns, a
 * kill -9 loses nothing that was stored before the call. Without a disk tier it only drains the
 * queue. *count (may be NULL) receives how many entries it wrote. Returns GENCACHE_OK,
 * GENCACHE_EINVAL. Thread-safety: safe. */
GENCACHE_API int gencache_flush(gencache *cache, uint64_t *count);

/* Removes expired entries now (lookups already treat them as misses; this gives their memory
 * back). *count (may be NULL) receives how many were removed. Thread-safety: safe. */
GENCACHE_API int gencache_maintain(gencache *cache, uint64_t *count);

/* ---------------------------------------------------------------------------------------------
 * Statistics
 */
#define GENCACHE_MAX_TIERS 8

typedef struct gencache_layer_stats {
    const char *layer;      /* valid until the cache is closed */
    uint64_t lookups;       /* gets of this layer */
    uint64_t hits;          /* lookups that found a value */
    uint64_t misses;        /* lookups that found none */
    uint64_t ghost_hits;    /* misses on a key evicted recently: a larger tier would have hit.
                               Estimated from sampled keys (see ghost_max_entries): a multiple
                               of 16 by default, relative error about sqrt(15 / ghost_hits) */
    uint64_t puts;          /* values stored */
    uint64_t cost_ms_saved; /* compute time the cache saved: over hits, the requester's cost
                               (gencache_caller.cost_ms) or else the entry's cost_ms */
} gencache_layer_stats;

typedef struct gencache_tier_stats {
    const char *tier;                 /* "mem", "disk", "redis", "gpu" */
    uint64_t bytes;                   /* bytes held, values and their overhead */
    uint64_t entries;                 /* entries held */
    uint64_t max_bytes;               /* 0: unlimited */
    uint64_t max_entries;             /* 0: unlimited */
    uint64_t pinned_entries;          /* entries that are never evicted */
    uint64_t evictions_capacity;      /* entries evicted to respect the limits */
    uint64_t evictions_expired;       /* entries removed because their TTL ran out */
    uint64_t evictions_corrupt;       /* entries dropped because they failed their checksum */
    uint64_t backend_errors;          /* failed operations on the backend (I/O, network) */
    uint64_t hits;                    /* lookups (gencache_get) this tier answered */
    uint64_t pinned_bytes;            /* bytes held by pinned entries */
    uint64_t pins_refused;            /* pinned puts stored unpinned: the pinned-bytes ceiling */
    uint64_t crypt_rejected;          /* records of an encrypting tier (disk, redis) read as misses
                                         because they were sealed under a key this cache does not
                                         hold, failed their authentication tag (tampered with or
                                         damaged; such records are also dropped), or were stored
                                         unencrypted */
    uint64_t redirects;               /* redis on a cluster: MOVED and ASK redirects followed */
    uint64_t filter_skips;            /* redis: gets the Bloom filter answered as misses with no
                                         round trip (tiers.redis.bloom_fp_rate) */
    uint64_t invalidations_published; /* redis: delete and invalidation messages this cache sent
                                         to the other nodes sharing the tier */
} gencache_tier_stats;

typedef struct gencache_stats {
    size_t struct_size; /* sizeof(gencache_stats); the caller sets it before the call */
    uint32_t n_layers;
    gencache_layer_stats layers[GENCACHE_MAX_LAYERS];
    uint32_t n_tiers;
    gencache_tier_stats tiers[GENCACHE_MAX_TIERS];
    uint64_t invalidated; /* entries removed by gencache_del() and gencache_invalidate() */
} gencache_stats;

/* How hard the tiers are pressed, for a caller deciding whether to shed work. A full memory
 * tier is the normal state of a cache and is not pressure by itself: what is left of room below
 * it, and whether demotion keeps up, is. */
typedef struct gencache_pressure {
    size_t struct_size;       /* sizeof(gencache_pressure); the caller sets it before the call */
    double mem_ratio;         /* memory tier bytes / byte limit; 0 when unlimited */
    double disk_ratio;        /* disk tier bytes / byte limit; 0 without a disk tier or limit */
    uint64_t writeback_bytes; /* bytes queued on their way below memory */
    uint64_t writeback_max_bytes; /* the queue's bound */
    uint64_t writeback_stalls;    /* puts and evictions that waited for room in the queue */
    int degraded;                 /* nonzero when demotion cannot keep up (the queue is over three
                                     quarters of its bound) or the disk tier is over 95% of its
                                     limit: the time to shorten lifetimes or refuse low-priority
                                     work. Never set merely because memory is full */
    unsigned level;               /* the policy's state, as the last gencache_pressure_relieve()
                                     left it: 0 normal; 1 memory at or over pressure_warn_ratio
                                     (batch tenants' entries leave memory first, nothing is
                                     deleted); 2 degraded (new entries of callers below high
                                     priority get a TTL of at most pressure_ttl_ms) */
    uint64_t batch_demoted;       /* entries the policy has moved out of memory so far */
} gencache_pressure;

/* Fills *out (out->struct_size must be set). Returns GENCACHE_OK or GENCACHE_EINVAL.
 * Thread-safety: safe. */
GENCACHE_API int gencache_pressure_get(gencache *cache, gencache_pressure *out);

/* One step of the memory-pressure policy; call it periodically (a daemon does once a second).
 * At or above pressure_warn_ratio of the memory tier, the entries of batch-priority tenants
 * leave memory (gencache_demote(): disk and Redis keep them); while the report is degraded,
 * puts cap the TTL of new entries of every caller but high-priority tenants at pressure_ttl_ms.
 * Level 1 ends below warn_ratio - 0.05. *out (may be NULL; struct_size set) receives the report
 * after the step, with the level it set. Returns GENCACHE_OK or GENCACHE_EINVAL.
 * Thread-safety: safe (steps from several threads are serialized). */
GENCACHE_API int gencache_pressure_relieve(gencache *cache, gencache_pressure *out);

/* Fills *out with a snapshot of the counters (each counter is read atomically; the set as a whole
 * is not one instant). out->struct_size must be set. Returns GENCACHE_OK or GENCACHE_EINVAL.
 * Thread-safety: safe. */
GENCACHE_API int gencache_stats_get(gencache *cache, gencache_stats *out);

/* One point of the memory tier's miss-ratio curve: what a memory tier `scale` times as large
 * (same policy) would have done with the lookups since the cache was opened. */
typedef struct gencache_mrc_point {
    double scale;             /* size relative to the memory tier's byte (and entry) limit */
    double hit_ratio;         /* estimated hits / lookups at that size */
    double gpu_seconds_saved; /* estimated compute its hits would have saved, in seconds (the
                                 stored entries' cost_ms, over the whole key population) */
    uint64_t lookups;         /* sampled lookups the estimate rests on */
} gencache_mrc_point;

#define GENCACHE_MRC_POINTS 3

/* The memory tier's miss-ratio curve, estimated from spatially sampled keys (SHARDS): a share
 * mrc_sample_rate of the keys, chosen by their hash, is replayed through miniature memory tiers
 * of that share of 0.5, 2 and 4 times the tier's size, holding metadata only, each entry known by
 * its key's 64-bit hash (so the memory it costs is about mrc_sample_rate * 6.5 times the metadata
 * of the tier's entries).
 * The estimate's error shrinks as the sampled keys grow in number (docs/tiers.md). */
typedef struct gencache_mrc {
    size_t struct_size; /* sizeof(gencache_mrc); the caller sets it before the call */
    double sample_rate; /* share of keys sampled; 0: no curve (mrc_sample_rate 0, or a memory
                           tier without a byte limit) */
    uint32_t n_points;  /* GENCACHE_MRC_POINTS, or 0 without a curve */
    gencache_mrc_point points[GENCACHE_MRC_POINTS]; /* scales 0.5, 2, 4 */
} gencache_mrc;

/* Fills *out with the memory tier's miss-ratio curve. out->struct_size must be set. The curve
 * counts every get and put made before the call, by any thread: sampled accesses wait in a
 * queue of the cache (a few dozen) and the call replays them first. Returns
 * GENCACHE_OK (n_points 0 when the cache keeps no curve) or GENCACHE_EINVAL.
 * Thread-safety: safe. */
GENCACHE_API int gencache_mrc_get(gencache *cache, gencache_mrc *out);

/* ---------------------------------------------------------------------------------------------
 * Canonical requests and keys (src/key/)
 */
#include "gencache/keys.h"

/* ---------------------------------------------------------------------------------------------
 * Image identity (src/image/)
 */
#include "gencache/image.h"

/* ---------------------------------------------------------------------------------------------
 * Tensors, codecs, sessions and KV windows (src/tensor/, src/session/)
 */
#include "gencache/tensor.h"
#include "gencache/coalesce.h" /* single flight (src/coalesce/) */

/* ---------------------------------------------------------------------------------------------
 * Tenants and calls on a tenant's behalf (src/tenant.c, src/cache_tenant.c)
 */
#include "gencache/tenant.h"

/* ---------------------------------------------------------------------------------------------
 * Configuration files, sizes and durations (src/config/)
 */
#include "gencache/config.h"

/* ---------------------------------------------------------------------------------------------
 * Storing tensors with a codec and reading them back (src/tensor/codec.c)
 */
#include "gencache/codec.h"

/* ---------------------------------------------------------------------------------------------
 * Lookups by request, and reuse beyond the exact key (src/reuse/)
 */
#include "gencache/reuse.h"

#ifdef __cplusplus
}
#endif

#endif /* GENCACHE_H */
