/*
 * gencache.h: the public C API of libgencache, a cache for generative-video inference.
 *
 * This header is the specification: what is not declared here is not API. Every function says
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

#define GENCACHE_VERSION_MAJOR 0
#define GENCACHE_VERSION_MINOR 1
#define GENCACHE_VERSION_PATCH 0
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
    size_t struct_size;           /* sizeof(gencache_options); set by gencache_options_init() */
    uint64_t mem_max_bytes;       /* memory tier byte limit; 0: unlimited. Default 1 GiB */
    uint64_t mem_max_entries;     /* memory tier entry limit; 0: unlimited. Default 0 */
    unsigned mem_shards;          /* hash table shards, rounded up to a power of two; default 16 */
    uint64_t ghost_max_entries;   /* evicted keys remembered for ghost hits; 0: none. Default
                                     65536 */
    int verify_mem_reads;         /* nonzero: verify the checksum on every memory-tier hit (costs
                                     a pass over the value); default 0 */
    gencache_log_fn log_fn;       /* NULL: no logging */
    void *log_userdata;
    gencache_log_level log_level; /* messages above this level are dropped; default INFO */
    gencache_clock_fn clock_fn;   /* NULL: the system's real-time clock */
    void *clock_userdata;
    const gencache_allocator *allocator; /* NULL: malloc/free. Borrowed: must outlive the cache
                                            and every handle */
    const char *data_dir;         /* disk tier directory (created if absent); NULL: no disk tier */
    uint64_t disk_max_bytes;      /* disk tier byte limit; 0: unlimited. Default 10 GiB */
    uint64_t disk_max_entries;    /* disk tier entry limit; 0: unlimited. Default 0 */
    const char *redis_url;        /* "redis://HOST:PORT[/DB]"; NULL: no redis tier */
    uint32_t redis_timeout_ms;    /* longest a Redis call may stall a caller; default 100 */
    uint64_t redis_max_value_bytes; /* larger values are not sent to Redis; default 64 MiB */
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

/* Closes the cache and frees what it owns. Handles still held stay valid until released: their
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

typedef struct gencache_layer_options {
    size_t struct_size;   /* sizeof(gencache_layer_options); set by _init() */
    const char *name;     /* [a-z0-9_], 1-32 bytes */
    gencache_scope scope; /* default GLOBAL */
    uint64_t ttl_ms;      /* default time to live; 0: no expiry. Default 0 */
    int sliding_ttl;      /* nonzero: a hit pushes the expiry to now + ttl_ms. Default 0 */
    int write_through;    /* nonzero: a put also writes to the disk and redis tiers at once;
                             zero: entries reach disk only when evicted from memory. Default 0 */
} gencache_layer_options;

/* Fills *opts with the defaults above (name NULL). Thread-safety: safe. */
GENCACHE_API void gencache_layer_options_init(gencache_layer_options *opts);

/* Defines a layer, or redefines the TTL and scope of an existing one (entries already stored
 * keep the expiry they were given). The name is copied. At most GENCACHE_MAX_LAYERS layers.
 * Returns GENCACHE_OK, GENCACHE_EINVAL (bad name or options), GENCACHE_ELIMIT (too many layers),
 * GENCACHE_ENOMEM. Thread-safety: init only (before any other call uses the cache). */
GENCACHE_API int gencache_layer_define(gencache *cache, const gencache_layer_options *opts);

#define GENCACHE_MAX_LAYERS 32

/* Copies the options of layer `name` into *out (out->name points into the cache, valid until it
 * is closed). Returns GENCACHE_OK, GENCACHE_EINVAL, GENCACHE_ENOTFOUND. Thread-safety: safe. */
GENCACHE_API int gencache_layer_get(gencache *cache, const char *name, gencache_layer_options *out);

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
    size_t struct_size;             /* in: sizeof(gencache_meta); set by gencache_meta_init() */
    const char *content_type;       /* in: MIME type; NULL: application/octet-stream */
    const char *tenant;             /* in: owner for tenant-scoped layers; NULL or "": none */
    const char *model;              /* in: model that made it, for invalidation; NULL: none */
    const char *tags;               /* in: comma-separated tags; NULL: none */
    gencache_dtype dtype;           /* in: tensor dtype; NONE: not a tensor */
    uint32_t ndim;                  /* in: tensor rank, <= GENCACHE_MAX_DIMS */
    int64_t shape[GENCACHE_MAX_DIMS]; /* in: tensor dimensions, ndim of them */
    uint64_t cost_ms;               /* in: time it took to compute: what a hit saves */
    uint64_t ttl_ms;                /* in: time to live; 0: the layer's default */
    int pinned;                     /* in: nonzero: never evicted (still expires, deletable) */
    /* Filled by the cache; ignored on put. */
    const char *key;                /* "<layer>/<hex>" */
    const char *layer;              /* the layer's name */
    uint64_t size;                  /* value size in bytes */
    uint64_t checksum;              /* XXH3-64 of the value */
    uint64_t created_ms;            /* wall-clock ms when stored */
    uint64_t expires_ms;            /* wall-clock ms when it expires; 0: never */
    uint64_t last_access_ms;        /* wall-clock ms of the latest access (this lookup's, when it
                                       counted one; else the put's or an earlier hit's) */
    uint64_t hits;                  /* hits counted so far, this lookup's included */
    const char *tier;               /* tier the value was found in ("mem", "disk", ...) */
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
 * (no room: the rest is pinned or being written), GENCACHE_ENOMEM.
 * Thread-safety: safe. */
GENCACHE_API int gencache_put(gencache *cache, const char *key, const void *data, size_t size,
                              const gencache_meta *meta);

/* A read handle: a reference to a stored value. Its bytes stay valid and unchanged until it is
 * released, even if the entry is evicted, replaced, invalidated or the cache is closed. */
typedef struct gencache_handle gencache_handle;

/* Looks up `key`. On a hit, *out is a new handle pointing at the stored bytes (no copy); release
 * it with gencache_handle_release(). A hit counts the access and, for a sliding-TTL layer,
 * extends the expiry. Expired entries are misses.
 * Returns GENCACHE_OK, GENCACHE_ENOTFOUND (miss, or a layer that is not defined), GENCACHE_EINVAL
 * (malformed key), GENCACHE_ENOMEM. Thread-safety: safe. */
GENCACHE_API int gencache_get(gencache *cache, const char *key, gencache_handle **out);

/* Like gencache_get(), but a hit counts no access and changes no expiry (for HEAD requests and
 * probes). Thread-safety: safe. */
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
 * layer that is not defined), GENCACHE_EINVAL (malformed key). Handles on the value stay valid. Thread-safety: safe. */
GENCACHE_API int gencache_del(gencache *cache, const char *key);

/* Which entries gencache_invalidate() removes: every set field must match (AND); unset fields
 * (NULL / 0) match anything. A filter with no field set is refused (GENCACHE_EINVAL), so that
 * "everything" is never removed by accident. */
typedef struct gencache_filter {
    size_t struct_size;       /* sizeof(gencache_filter); set by gencache_filter_init() */
    const char *key;          /* exactly this key */
    const char *layer;        /* entries of this layer */
    const char *tenant;       /* entries owned by this tenant */
    const char *tag;          /* entries carrying this tag among their tags */
    const char *model;        /* entries made by this model */
    uint64_t older_than_ms;   /* entries created more than this many ms ago; 0: any age */
} gencache_filter;

/* Fills *filter so that it matches nothing in particular (all fields unset).
 * Thread-safety: safe. */
GENCACHE_API void gencache_filter_init(gencache_filter *filter);

/* Removes every entry that matches `filter` from every tier; pinned entries too.
 * *count (may be NULL) receives how many were removed.
 * Returns GENCACHE_OK, GENCACHE_EINVAL (NULL or empty filter). Thread-safety: safe. */
GENCACHE_API int gencache_invalidate(gencache *cache, const gencache_filter *filter,
                                     uint64_t *count);

/* Removes expired entries now (lookups already treat them as misses; this gives their memory
 * back). *count (may be NULL) receives how many were removed. Thread-safety: safe. */
GENCACHE_API int gencache_maintain(gencache *cache, uint64_t *count);

/* ---------------------------------------------------------------------------------------------
 * Statistics
 */
#define GENCACHE_MAX_TIERS 8

typedef struct gencache_layer_stats {
    const char *layer;        /* valid until the cache is closed */
    uint64_t lookups;         /* gets of this layer */
    uint64_t hits;            /* lookups that found a value */
    uint64_t misses;          /* lookups that found none */
    uint64_t ghost_hits;      /* misses on a key evicted recently: a larger tier would have hit */
    uint64_t puts;            /* values stored */
    uint64_t cost_ms_saved;   /* sum of cost_ms over hits: compute time the cache saved */
} gencache_layer_stats;

typedef struct gencache_tier_stats {
    const char *tier;               /* "mem", "disk", "redis", "gpu" */
    uint64_t bytes;                 /* bytes held, values and their overhead */
    uint64_t entries;               /* entries held */
    uint64_t max_bytes;             /* 0: unlimited */
    uint64_t max_entries;           /* 0: unlimited */
    uint64_t pinned_entries;        /* entries that are never evicted */
    uint64_t evictions_capacity;    /* entries evicted to respect the limits */
    uint64_t evictions_expired;     /* entries removed because their TTL ran out */
    uint64_t evictions_corrupt;     /* entries dropped because they failed their checksum */
    uint64_t backend_errors;        /* failed operations on the backend (I/O, network) */
} gencache_tier_stats;

typedef struct gencache_stats {
    size_t struct_size; /* sizeof(gencache_stats); the caller sets it before the call */
    uint32_t n_layers;
    gencache_layer_stats layers[GENCACHE_MAX_LAYERS];
    uint32_t n_tiers;
    gencache_tier_stats tiers[GENCACHE_MAX_TIERS];
    uint64_t invalidated;     /* entries removed by gencache_del() and gencache_invalidate() */
} gencache_stats;

/* Fills *out with a snapshot of the counters (each counter is read atomically; the set as a whole
 * is not one instant). out->struct_size must be set. Returns GENCACHE_OK or GENCACHE_EINVAL.
 * Thread-safety: safe. */
GENCACHE_API int gencache_stats_get(gencache *cache, gencache_stats *out);

/* ---------------------------------------------------------------------------------------------
 * Canonical requests and keys (src/key/)
 */
/* Prompt normalization modes (DESIGN.md section 2). The lossless modes (exact, safe, clip, tokens)
 * only merge prompts that every text encoder in use cleans to the same string; aggressive is an
 * opt-in, lossy semantic mode. */
typedef enum gencache_norm_mode {
    GENCACHE_NORM_EXACT = 0,      /* the bytes as given (UTF-8 validated) */
    GENCACHE_NORM_SAFE = 1,       /* printable-ASCII prompts without '&': white space collapsed */
    GENCACHE_NORM_CLIP = 2,       /* safe, and those prompts lowercased (A-Z only) */
    GENCACHE_NORM_TOKENS = 3,     /* keys take prompt_tokens + tokenizer instead of the text */
    GENCACHE_NORM_AGGRESSIVE = 4, /* NFKC, entities, case folding, punctuation, spellings */
} gencache_norm_mode;

/* Parses a mode name ("exact", "safe", "clip", "tokens", "aggressive") into *out.
 * Returns GENCACHE_OK, or GENCACHE_EINVAL for NULL arguments or an unknown name (*out is then
 * GENCACHE_NORM_SAFE, the default). Thread-safety: safe. */
GENCACHE_API int gencache_norm_mode_parse(const char *name, gencache_norm_mode *out);

/* The mode's name ("safe"); NULL for a value outside the enum. The string is static.
 * Thread-safety: safe. */
GENCACHE_API const char *gencache_norm_mode_name(gencache_norm_mode mode);

/* Normalizes len bytes of UTF-8 text with `mode` (no configured synonyms; see
 * gencache_keyspace_add_synonym()). GENCACHE_NORM_TOKENS normalizes nothing: it returns the text
 * as given, like exact (the tokens mode keys on token ids, not on text).
 * On success *out is a new NUL-terminated string of *out_len bytes (out_len may be NULL); free it
 * with gencache_free(). On failure *out is NULL and *out_len 0.
 * Returns GENCACHE_OK, GENCACHE_EINVAL (NULL in with len > 0, NULL out, unknown mode),
 * GENCACHE_EPARSE (invalid UTF-8: overlong forms, surrogates, code points above U+10FFFF, or a
 * NUL byte), GENCACHE_ENOMEM. Thread-safety: safe. */
GENCACHE_API int gencache_normalize(gencache_norm_mode mode, const char *in, size_t len, char **out,
                                    size_t *out_len);

/* Frees memory the library handed out (strings from gencache_normalize(),
 * gencache_request_canonical()). gencache_free(NULL) does nothing. Thread-safety: safe. */
GENCACHE_API void gencache_free(void *ptr);

/* A keyspace: the layer recipes (which request fields enter each layer's key, and its scope) and
 * the prompt normalization mode per model. Requests parsed with a keyspace hold a reference to it,
 * so gencache_keyspace_free() may be called while they live. */
typedef struct gencache_keyspace gencache_keyspace;

/* Creates a keyspace with the defaults of DESIGN.md section 2: layers result ("*": every request
 * parameter, tenant scope), image_latent (model, image!, width, height, crop, rotation; global),
 * text_embedding (model, prompt, negative_prompt; global), condition (model, prompt,
 * negative_prompt, image, width, height; tenant) and session (name; session scope), and mode
 * safe for every model. On success *out is a new keyspace; free it with
 * gencache_keyspace_free(). Returns GENCACHE_OK, GENCACHE_EINVAL (NULL out), GENCACHE_ENOMEM.
 * Thread-safety: safe. */
GENCACHE_API int gencache_keyspace_new(gencache_keyspace **out);

/* Drops the caller's reference; the keyspace is freed when no request holds it any more.
 * gencache_keyspace_free(NULL) does nothing. Thread-safety: safe. */
GENCACHE_API void gencache_keyspace_free(gencache_keyspace *ks);

/* Defines a layer's recipe, or replaces an existing one. `layer` is [a-z0-9_], 1-32 bytes; at most
 * GENCACHE_MAX_LAYERS layers. Each field is a request field name ("model", "width", "params" for
 * every params.* field, "params.lora" for one), "*" for every request parameter (what result
 * uses), and may end in '!' to mark it required: a request without it has no key in this layer
 * (GENCACHE_EUNCACHEABLE). Scope TENANT adds the field `tenant` to the key; scope SESSION adds
 * `session` and requires it. Field names are 1-64 bytes of printable ASCII without '=', '*', '!'
 * or empty dotted parts. The strings are copied. Returns GENCACHE_OK, GENCACHE_EINVAL (bad name, field or scope; n_fields 0),
 * GENCACHE_ELIMIT (too many layers or fields), GENCACHE_ENOMEM.
 * Thread-safety: init only (before requests are parsed with this keyspace). */
GENCACHE_API int gencache_keyspace_set_layer(gencache_keyspace *ks, const char *layer,
                                             const char *const *fields, size_t n_fields,
                                             gencache_scope scope);

/* Sets the normalization mode for requests whose "model" equals `model`, or the default for
 * every other request when model is NULL. The name is copied. Returns GENCACHE_OK,
 * GENCACHE_EINVAL (bad mode), GENCACHE_ENOMEM. Thread-safety: init only. */
GENCACHE_API int gencache_keyspace_set_mode(gencache_keyspace *ks, const char *model,
                                            gencache_norm_mode mode);

/* Adds a synonym for the aggressive mode: the word `from` is replaced by `to` after the other
 * aggressive steps (both are normalized aggressively first; `from` must then be one word, `to`
 * one or more). A later synonym for the same word replaces the earlier one. Returns GENCACHE_OK,
 * GENCACHE_EINVAL (NULL, empty, invalid UTF-8, `from` not one word), GENCACHE_ELIMIT (more than
 * 4096 synonyms), GENCACHE_ENOMEM. Thread-safety: init only. */
GENCACHE_API int gencache_keyspace_add_synonym(gencache_keyspace *ks, const char *from,
                                               const char *to);

/* The number of layers, and the name of layer i (0-based, definition order; NULL when i is out
 * of range). The name is owned by the keyspace. Thread-safety: safe. */
GENCACHE_API size_t gencache_keyspace_layer_count(const gencache_keyspace *ks);
GENCACHE_API const char *gencache_keyspace_layer_name(const gencache_keyspace *ks, size_t i);

/* A parsed request: its fields encoded canonically, the prompt normalized. Immutable after
 * parsing except for its tenant. */
typedef struct gencache_request gencache_request;

enum { GENCACHE_REQUEST_TRUST_TENANT = 1u << 0 }; /* honour the body's "tenant" (CLI, in-process) */

#define GENCACHE_REQUEST_MAX_BYTES (1u << 20) /* longest request JSON accepted */
#define GENCACHE_ERRMSG_MAX 256               /* error message buffer that always suffices */

/* Parses request JSON (DESIGN.md section 2) with keyspace ks (NULL: the built-in defaults).
 * Known fields are type-checked: model, scheduler, tokenizer, session, name, prompt,
 * negative_prompt strings; seed an integer; steps, frames, width, height non-negative integers;
 * guidance, fps, rotation numbers; image {"path": FILE} or {"digest": "sha256:<64 lowercase
 * hex>"}; params an object; prompt_tokens, negative_prompt_tokens arrays of integers; cache
 * "default" or "allow_random". Other fields are request parameters of any JSON type (they enter
 * result's key). Objects are flattened to dotted names (an empty object adds no field); names
 * are 1-64 printable ASCII characters other than space, '.' and '='; null is the same as an
 * absent field. Image {"path": ...} is resolved to its pixel digest through
 * gencache_image_digest_file(). The body's "tenant" is ignored unless flags has
 * GENCACHE_REQUEST_TRUST_TENANT. In tokens mode, a prompt needs its prompt_tokens and the
 * tokens need a tokenizer. json is borrowed; it need not be NUL-terminated.
 * On success *out is a new request; free it with gencache_request_free().
 * Returns GENCACHE_OK, GENCACHE_EINVAL (NULL arguments; a field of the wrong type or range; an
 * object or null inside an array; a bad name; a malformed digest), GENCACHE_EPARSE (not JSON,
 * not an object, invalid UTF-8, a \u0000 escape, duplicate names), GENCACHE_ELIMIT (longer than
 * GENCACHE_REQUEST_MAX_BYTES, nested deeper than 8 levels, more than 1024 fields, an integer
 * beyond 64 bits, a number beyond the binary64 range), the errors of
 * gencache_image_digest_file() for an image path, GENCACHE_ENOMEM.
 * Thread-safety: safe. */
GENCACHE_API int gencache_request_parse(const gencache_keyspace *ks, const char *json, size_t len,
                                        unsigned flags, gencache_request **out);

/* gencache_request_parse(), and on failure a one-line English message saying what is wrong and
 * where (e.g. "field 'steps': expected a non-negative integer") into err (NUL-terminated,
 * truncated to err_size; err may be NULL). Thread-safety: safe. */
GENCACHE_API int gencache_request_parse_ex(const gencache_keyspace *ks, const char *json,
                                           size_t len, unsigned flags, gencache_request **out,
                                           char *err, size_t err_size);

/* Sets the request's tenant (copied; NULL clears it). The daemon calls this with the tenant of the
 * caller's token. Returns GENCACHE_OK, GENCACHE_EINVAL (NULL req; empty, longer than 256 bytes
 * or invalid UTF-8 tenant), GENCACHE_ENOMEM. Thread-safety: one thread at a time per request. */
GENCACHE_API int gencache_request_set_tenant(gencache_request *req, const char *tenant);

/* Writes "<layer>/<64 hex>" and a NUL into out (GENCACHE_KEY_MAX bytes suffice).
 * Returns GENCACHE_OK, GENCACHE_EINVAL (NULL argument, out_size too small),
 * GENCACHE_ENOTFOUND (unknown layer), GENCACHE_EUNCACHEABLE (a recipe that depends on the seed,
 * such as result's, for a request without seed and without "cache": "allow_random"; or a
 * required field missing, such as image_latent's image or a session-scoped layer's session).
 * On failure out (when out_size > 0) holds "". Thread-safety: safe (the request is read only). */
GENCACHE_API int gencache_request_key(const gencache_request *req, const char *layer, char *out,
                                      size_t out_size);

/* Why gencache_request_key() answers GENCACHE_EUNCACHEABLE for this layer: a static English
 * sentence, or NULL when the request has a key in it (or the layer is unknown).
 * Thread-safety: safe. */
GENCACHE_API const char *gencache_request_uncacheable_reason(const gencache_request *req,
                                                             const char *layer);

/* The canonical document of a layer: "gencache-key-v1\n<layer>\n" and one "name=VALUE\n" line per
 * field, the exact bytes whose SHA-256 is the key. *out (NUL-terminated, *out_len bytes; out_len
 * may be NULL) is freed with gencache_free(). Returns what gencache_request_key() returns, and
 * GENCACHE_ENOMEM. Thread-safety: safe. */
GENCACHE_API int gencache_request_canonical(const gencache_request *req, const char *layer,
                                            char **out, size_t *out_len);

/* The normalized prompt (in tokens mode: the prompt as given), or NULL when the request has none.
 * Owned by the request. Thread-safety: safe. */
GENCACHE_API const char *gencache_request_prompt(const gencache_request *req);

/* The request's "model", or NULL. Owned by the request. Thread-safety: safe. */
GENCACHE_API const char *gencache_request_model(const gencache_request *req);

/* The normalization mode the request was parsed with (its model's). Thread-safety: safe. */
GENCACHE_API gencache_norm_mode gencache_request_mode(const gencache_request *req);

/* Frees a request. gencache_request_free(NULL) does nothing. Thread-safety: one thread at a
 * time per request. */
GENCACHE_API void gencache_request_free(gencache_request *req);

#define GENCACHE_KEY_MAX 98 /* 32-byte layer name + '/' + 64 hex + NUL */

/* @@KEY-SECTION@@ */

/* ---------------------------------------------------------------------------------------------
 * Image identity (src/image/)
 */
/* Longest pixel digest string: "sha256:" + 64 hex digits + NUL. */
#define GENCACHE_DIGEST_MAX 72

/* Decodes the image file at `path` (PNG, JPEG or WebP, found by its signature, with the default
 * limits of gencache_image_limits_init()) and writes its pixel digest "sha256:<64 lowercase hex>"
 * and a NUL into out. The digest covers the decoded pixels only, never the container or its
 * metadata (DESIGN.md section 3; the exact rule is in docs/image.md). out is "" on failure.
 * Returns GENCACHE_OK, GENCACHE_EINVAL (NULL argument), GENCACHE_EIO (cannot read the file),
 * GENCACHE_EPARSE (corrupt or truncated image), GENCACHE_EUNSUPPORTED (not PNG/JPEG/WebP, or a
 * layout we do not decode such as CMYK JPEG or animated WebP), GENCACHE_ELIMIT (dimensions or
 * memory over the limits), GENCACHE_ENOMEM. Thread-safety: safe. */
GENCACHE_API int gencache_image_digest_file(const char *path, char out[GENCACHE_DIGEST_MAX]);

/* Decoded pixels: width x height samples of 1 (gray), 2 (gray+alpha), 3 (RGB) or 4 (RGBA)
 * channels of 8 or 16 bits, as the file stores them (palettes expanded to RGB or RGBA, gray of 1,
 * 2 or 4 bits widened to 8 bits). EXIF orientation is not applied. Immutable once made. */
typedef struct gencache_image gencache_image;

/* The container an image came from. */
typedef enum gencache_image_format {
    GENCACHE_IMAGE_RAW = 0, /* gencache_image_from_pixels() */
    GENCACHE_IMAGE_PNG = 1,
    GENCACHE_IMAGE_JPEG = 2,
    GENCACHE_IMAGE_WEBP = 3,
} gencache_image_format;

/* Bounds a decoder enforces before it allocates, so a small hostile file (a decompression bomb,
 * a header claiming 100000 x 100000) is refused with GENCACHE_ELIMIT instead of exhausting
 * memory. */
typedef struct gencache_image_limits {
    size_t struct_size;      /* sizeof(gencache_image_limits); set by _init() */
    uint32_t max_width;      /* pixels; default 16384 */
    uint32_t max_height;     /* pixels; default 16384 */
    uint64_t max_pixels;     /* width * height; default 64 Mi (67108864) */
    uint64_t max_bytes;      /* bytes of decoded samples; default 512 MiB */
    uint64_t max_file_bytes; /* bytes of an encoded file read by _decode_file(); default 256 MiB */
} gencache_image_limits;

/* Fills *limits with the defaults above. Thread-safety: safe. */
GENCACHE_API void gencache_image_limits_init(gencache_image_limits *limits);

/* Decodes an encoded image held in memory; the format is found by its signature. `limits` may be
 * NULL for the defaults; data and limits are borrowed for the call. On success *out is a new
 * image; free it with gencache_image_free().
 * Returns GENCACHE_OK, GENCACHE_EINVAL (NULL out or data, struct_size too small),
 * GENCACHE_EPARSE (corrupt, truncated or empty input), GENCACHE_EUNSUPPORTED (unknown format,
 * CMYK/YCCK JPEG, animated WebP), GENCACHE_ELIMIT, GENCACHE_ENOMEM.
 * Thread-safety: safe. */
GENCACHE_API int gencache_image_decode_memory(const void *data, size_t size,
                                              const gencache_image_limits *limits,
                                              gencache_image **out);

/* Reads the file at `path` (at most limits->max_file_bytes) and decodes it like
 * gencache_image_decode_memory(). Returns the same codes, plus GENCACHE_EIO when the file cannot
 * be opened or read. Thread-safety: safe. */
GENCACHE_API int gencache_image_decode_file(const char *path, const gencache_image_limits *limits,
                                            gencache_image **out);

/* Layouts accepted by gencache_image_from_pixels(); the value is the number of channels. */
typedef enum gencache_pixel_format {
    GENCACHE_PIXEL_L8 = 1,    /* 8-bit gray */
    GENCACHE_PIXEL_RGB8 = 3,  /* 8-bit R, G, B */
    GENCACHE_PIXEL_RGBA8 = 4, /* 8-bit R, G, B, A (not premultiplied) */
} gencache_pixel_format;

/* Makes an image from pixels a caller decoded itself: `height` rows of `width` pixels, each row
 * starting `stride` bytes after the previous one (stride >= width * channels; padding is not
 * copied). The pixels are copied. The default limits apply.
 * Returns GENCACHE_OK, GENCACHE_EINVAL (NULL pointer, zero size, unknown format, stride too
 * small), GENCACHE_ELIMIT, GENCACHE_ENOMEM. Thread-safety: safe. */
GENCACHE_API int gencache_image_from_pixels(const void *pixels, uint32_t width, uint32_t height,
                                            size_t stride, gencache_pixel_format format,
                                            gencache_image **out);

/* Frees an image. gencache_image_free(NULL) does nothing. Thread-safety: one thread at a time
 * per image (no other call may use it meanwhile). */
GENCACHE_API void gencache_image_free(gencache_image *img);

/* What an image is. */
typedef struct gencache_image_info {
    uint32_t width;               /* pixels */
    uint32_t height;              /* pixels */
    uint32_t channels;            /* 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA, as decoded */
    uint32_t bits;                /* bits per sample: 8 or 16 */
    gencache_image_format format; /* the container it came from */
} gencache_image_info;

/* Fills *out with the image's dimensions and layout. Returns GENCACHE_OK or GENCACHE_EINVAL.
 * Thread-safety: safe. */
GENCACHE_API int gencache_image_info_get(const gencache_image *img, gencache_image_info *out);

/* Writes the image's pixel digest "sha256:<64 lowercase hex>" and a NUL into out: SHA-256 over
 * "gencache-img-v1 <width> <height> <channels> <bits>\n" and the samples row-major without
 * padding, 16-bit samples big-endian, after two canonical reductions so that the same pixels
 * give one digest whatever container holds them: an alpha channel whose samples are all opaque
 * is dropped, and colour whose every pixel has R = G = B is written as gray (docs/image.md).
 * out is "" on failure. Returns GENCACHE_OK, GENCACHE_EINVAL, GENCACHE_ENOMEM.
 * Thread-safety: safe (the image is only read). */
GENCACHE_API int gencache_image_digest(const gencache_image *img, char out[GENCACHE_DIGEST_MAX]);

/* Perceptual hash algorithms, computed as the Python imagehash library (4.3, with Pillow 9.4 and
 * scipy) computes average_hash, dhash and phash. */
typedef enum gencache_hash_algo {
    GENCACHE_HASH_AHASH = 0, /* pixel > mean of a hs x hs Lanczos thumbnail */
    GENCACHE_HASH_DHASH = 1, /* right neighbour > left, on a (hs+1) x hs thumbnail */
    GENCACHE_HASH_PHASH = 2, /* DCT of a 4hs x 4hs thumbnail: low hs x hs block > its median */
} gencache_hash_algo;

/* Longest hash as hex: 256 bits = 64 hex digits, and a NUL. */
#define GENCACHE_HASH_HEX_MAX 65
/* Longest hash as bytes: 256 bits. */
#define GENCACHE_HASH_MAX_BYTES 32

/* Computes a perceptual hash of `bits` bits (64: hash size 8, or 256: hash size 16). The bits are
 * row-major, the first bit the most significant: `out` (may be NULL) receives bits / 8 bytes,
 * `hex` (may be NULL) the lowercase hex string imagehash prints, and a NUL. The hash is of the
 * image's luminance L = (R*19595 + G*38470 + B*7471 + 0x8000) >> 16, alpha ignored, as Pillow's
 * convert("L") computes it (for 16-bit samples the rules Pillow applies are in docs/image.md).
 * Returns GENCACHE_OK, GENCACHE_EINVAL (NULL image, unknown algorithm, bits not 64 or 256),
 * GENCACHE_ENOMEM. Thread-safety: safe. */
GENCACHE_API int gencache_image_hash(const gencache_image *img, gencache_hash_algo algo,
                                     unsigned bits, unsigned char *out, char *hex);

/* gencache_image_hash() at 64 bits, as an integer whose most significant bit is the hash's first
 * bit (so "%016llx" prints what imagehash prints). *out is 0 on failure.
 * Returns GENCACHE_OK, GENCACHE_EINVAL (NULL image or out, unknown algorithm), GENCACHE_ENOMEM.
 * Thread-safety: safe. */
GENCACHE_API int gencache_image_hash64(const gencache_image *img, gencache_hash_algo algo,
                                       uint64_t *out);

/* What the near-duplicate guard compares: dimensions and two 64-bit hashes. */
typedef struct gencache_image_sig {
    uint32_t width;  /* pixels */
    uint32_t height; /* pixels */
    uint64_t phash;  /* 64-bit pHash: the index key */
    uint64_t dhash;  /* 64-bit dHash: the second, independent opinion */
} gencache_image_sig;

/* Fills *out with the image's signature. Returns GENCACHE_OK, GENCACHE_EINVAL, GENCACHE_ENOMEM.
 * Thread-safety: safe. */
GENCACHE_API int gencache_image_sig_get(const gencache_image *img, gencache_image_sig *out);

/* The guard of DESIGN.md section 3. */
typedef struct gencache_match_options {
    size_t struct_size;      /* sizeof(gencache_match_options); set by _init() */
    unsigned phash_radius;   /* max Hamming distance of the pHashes; default 8 */
    unsigned dhash_radius;   /* max Hamming distance of the dHashes; default 12 */
    double aspect_tolerance; /* max relative difference of width/height; default 0.02 */
    unsigned min_detail;     /* an image whose pHash has fewer than this many bits set is
                                featureless (flat colour, a faint highlight): a pHash splits at the
                                median, so a detailed image sets about half its bits, while a flat
                                one has its coefficients tied at zero and sets almost none; such
                                images never match. Default 8 */
} gencache_match_options;

/* Fills *opts with the defaults above. Thread-safety: safe. */
GENCACHE_API void gencache_match_options_init(gencache_match_options *opts);

/* Decides whether `candidate` may stand in for `query`: their aspect ratios differ by at most
 * opts->aspect_tolerance (relative), their pHashes by at most phash_radius bits, their dHashes
 * by at most dhash_radius bits, and neither is featureless (see min_detail). opts may be NULL for
 * the defaults. *distance (may be NULL) receives the pHash distance in either case.
 * Returns GENCACHE_OK (a match), GENCACHE_ENOTFOUND (not a match), GENCACHE_EINVAL.
 * Thread-safety: safe. */
GENCACHE_API int gencache_image_match(const gencache_image_sig *query,
                                      const gencache_image_sig *candidate,
                                      const gencache_match_options *opts, unsigned *distance);

/* An index of 64-bit hashes for "which stored hashes lie within Hamming distance r of this one"
 * (multi-index hashing: five substrings of 13 or 12 bits, each with its own table; fast up to
 * r = 9, a full scan past r = 14). Each entry is a pair (hash, id); id is the caller's name for
 * what the hash belongs to. Memory: about 56 bytes per entry. */
typedef struct gencache_hash_index gencache_hash_index;

/* One answer of gencache_hash_index_query(). */
typedef struct gencache_hash_hit {
    uint64_t hash;     /* the stored hash */
    uint64_t id;       /* its id */
    unsigned distance; /* Hamming distance to the query, 0-64 */
} gencache_hash_hit;

/* Makes an empty index. *out is a new index; free it with gencache_hash_index_free().
 * Returns GENCACHE_OK, GENCACHE_EINVAL, GENCACHE_ENOMEM. Thread-safety: safe. */
GENCACHE_API int gencache_hash_index_new(gencache_hash_index **out);

/* Frees the index. free(NULL) does nothing. Thread-safety: one thread, no other call meanwhile. */
GENCACHE_API void gencache_hash_index_free(gencache_hash_index *idx);

/* Adds (hash, id). Returns GENCACHE_OK, GENCACHE_EEXIST (that exact pair is already there),
 * GENCACHE_ELIMIT (2^32 - 1 entries), GENCACHE_EINVAL, GENCACHE_ENOMEM. Thread-safety: safe
 * (a writer lock). */
GENCACHE_API int gencache_hash_index_insert(gencache_hash_index *idx, uint64_t hash, uint64_t id);

/* Removes (hash, id). Returns GENCACHE_OK, GENCACHE_ENOTFOUND, GENCACHE_EINVAL.
 * Thread-safety: safe (a writer lock). */
GENCACHE_API int gencache_hash_index_remove(gencache_hash_index *idx, uint64_t hash, uint64_t id);

/* The number of entries (0 for NULL). Thread-safety: safe (a reader lock). */
GENCACHE_API size_t gencache_hash_index_size(gencache_hash_index *idx);

/* Finds every entry within Hamming distance `radius` (0-64) of `hash`, nearest first (ties by
 * id, then hash). Up to `cap` of them are written to hits (may be NULL when cap is 0); *count
 * receives how many there are in all, which may exceed cap.
 * Returns GENCACHE_OK (also when nothing is found: *count is 0), GENCACHE_EINVAL,
 * GENCACHE_ENOMEM. Thread-safety: safe (a reader lock: queries run in parallel). */
GENCACHE_API int gencache_hash_index_query(gencache_hash_index *idx, uint64_t hash,
                                           unsigned radius, gencache_hash_hit *hits, size_t cap,
                                           size_t *count);

/* Writes every entry to `path` (a new file written beside it, then renamed over it, so a reader
 * never sees half a file). Returns GENCACHE_OK, GENCACHE_EINVAL, GENCACHE_EIO, GENCACHE_ENOSPC,
 * GENCACHE_ENOMEM. Thread-safety: safe (a reader lock). */
GENCACHE_API int gencache_hash_index_save(gencache_hash_index *idx, const char *path);

/* Reads an index written by gencache_hash_index_save(). *out is a new index.
 * Returns GENCACHE_OK, GENCACHE_EINVAL, GENCACHE_EIO (cannot read), GENCACHE_EPARSE (not an index
 * file, truncated), GENCACHE_ECORRUPT (checksum mismatch), GENCACHE_EVERSION, GENCACHE_ENOMEM.
 * Thread-safety: safe. */
GENCACHE_API int gencache_hash_index_load(const char *path, gencache_hash_index **out);

/* @@IMAGE-SECTION@@ */

/* ---------------------------------------------------------------------------------------------
 * Tensors, codecs, sessions and KV windows (src/tensor/, src/session/)
 */
/* Byte order of a tensor's elements. Stored tensors are always little-endian; BIG describes a
 * foreign buffer that gencache_tensor_byteswap() turns around before it is stored. */
typedef enum gencache_byte_order {
    GENCACHE_BYTE_ORDER_LITTLE = 0,
    GENCACHE_BYTE_ORDER_BIG = 1,
} gencache_byte_order;

/* What a tensor is: element type, shape (row-major, C order) and byte order. A rank-0 tensor
 * (ndim 0) is a scalar of one element. */
typedef struct gencache_tensor_desc {
    gencache_dtype dtype;
    uint32_t ndim;                    /* <= GENCACHE_MAX_DIMS */
    int64_t shape[GENCACHE_MAX_DIMS]; /* ndim dimensions, each >= 0; the rest ignored */
    gencache_byte_order byte_order;   /* LITTLE for everything gencache stores */
} gencache_tensor_desc;

/* Checks that `size` bytes hold exactly a tensor of this dtype and shape (element count times
 * the dtype's size). shape may be NULL when ndim is 0.
 * Returns GENCACHE_OK, GENCACHE_EINVAL (unknown dtype or NONE, ndim > GENCACHE_MAX_DIMS, a
 * negative dimension, size mismatch), GENCACHE_ELIMIT (element count or byte size beyond 2^62).
 * Thread-safety: safe. */
GENCACHE_API int gencache_tensor_check(gencache_dtype dtype, uint32_t ndim, const int64_t *shape,
                                       uint64_t size);

/* *out receives the element count of a shape (1 for ndim 0). Returns GENCACHE_OK,
 * GENCACHE_EINVAL (NULL out, ndim > GENCACHE_MAX_DIMS, a negative dimension), GENCACHE_ELIMIT
 * (count beyond 2^62); *out is 0 on failure. Thread-safety: safe. */
GENCACHE_API int gencache_tensor_numel(uint32_t ndim, const int64_t *shape, uint64_t *out);

/* Reverses the bytes of each element of `size` bytes of `dtype` in place (little- <-> big-
 * endian). Returns GENCACHE_OK, GENCACHE_EINVAL (unknown dtype, size not a multiple of the
 * element size). Thread-safety: safe (on distinct buffers). */
GENCACHE_API int gencache_tensor_byteswap(gencache_dtype dtype, void *data, size_t size);

/* How a tensor is stored (the X-Gencache-Codec header of DESIGN.md). The int8 codecs are
 * symmetric: q = round_half_even(x * 127 / amax), clamped to [-127, 127], with scale
 * amax / 127 per tensor, per channel (index of one axis) or per group of consecutive elements;
 * their payload layout is in docs/tensors.md. */
typedef enum gencache_codec {
    GENCACHE_CODEC_NONE = 0,         /* "none": the bytes as given */
    GENCACHE_CODEC_F16 = 1,          /* "f16": floats stored as f16 */
    GENCACHE_CODEC_BF16 = 2,         /* "bf16": floats stored as bf16 */
    GENCACHE_CODEC_INT8 = 3,         /* "int8": one scale for the tensor */
    GENCACHE_CODEC_INT8_CHANNEL = 4, /* "int8-channel": one scale per index of an axis */
    GENCACHE_CODEC_INT8_GROUP = 5,   /* "int8-group": one scale per group_size elements */
} gencache_codec;

/* The codec's name ("none", "f16", "bf16", "int8", "int8-channel", "int8-group"); NULL for an
 * unknown value. Thread-safety: safe. */
GENCACHE_API const char *gencache_codec_name(gencache_codec codec);

/* Parses a codec name. Returns GENCACHE_OK, or GENCACHE_EINVAL for an unknown name (*out is
 * then GENCACHE_CODEC_NONE). Thread-safety: safe. */
GENCACHE_API int gencache_codec_parse(const char *name, gencache_codec *out);

/* Converts `count` elements between f32, f16 and bf16 (any pair; the same dtype copies). src and
 * dst must not overlap. Narrowing rounds half to even; a finite value beyond the narrower
 * format's range saturates to its largest finite value (f16: +-65504), so finite stays finite.
 * NaN and Inf are REJECTED by a narrowing conversion (GENCACHE_EINVAL; dst is then
 * unspecified) and carried exactly by a widening one (f16/bf16 -> f32; a NaN comes out quiet).
 * Uses AVX-512 or AVX2+F16C when the CPU has them; every path gives identical bits.
 * Returns GENCACHE_OK, GENCACHE_EINVAL (NULL pointer with count > 0, NaN/Inf when narrowing),
 * GENCACHE_EUNSUPPORTED (a dtype other than f32, f16, bf16). Thread-safety: safe. */
GENCACHE_API int gencache_tensor_convert(gencache_dtype dst_dtype, void *dst,
                                         gencache_dtype src_dtype, const void *src, size_t count);

/* How gencache_quant_encode() quantizes. */
typedef struct gencache_quant_options {
    size_t struct_size;    /* sizeof(gencache_quant_options); set by _init() */
    gencache_codec codec;  /* INT8, INT8_CHANNEL or INT8_GROUP; default INT8 */
    uint32_t axis;         /* INT8_CHANNEL: the channel axis, < ndim; default 0 */
    uint32_t group_size;   /* INT8_GROUP: consecutive elements per scale, >= 1; default 128 */
} gencache_quant_options;

/* Fills *opts with the defaults above. Thread-safety: safe. */
GENCACHE_API void gencache_quant_options_init(gencache_quant_options *opts);

/* *out receives the size in bytes of the payload gencache_quant_encode() makes for a tensor
 * described by desc (header, scales, int8 data). opts may be NULL for the defaults.
 * Returns GENCACHE_OK, GENCACHE_EINVAL (bad desc or options), GENCACHE_EUNSUPPORTED (dtype not
 * f32/f16/bf16), GENCACHE_ELIMIT. Thread-safety: safe. */
GENCACHE_API int gencache_quant_size(const gencache_tensor_desc *desc,
                                     const gencache_quant_options *opts, size_t *out);

/* Quantizes the little-endian f32/f16/bf16 tensor `data` (`size` bytes, described by desc) to
 * int8 and writes the payload (docs/tensors.md) to dst. Every element x of a block with scale s
 * comes back from gencache_quant_decode() within s/2 (plus f32 rounding). A block whose largest
 * magnitude is below 2^-120 is stored as zeros with scale 0. *out_size (may be NULL) receives
 * the payload's size. Returns GENCACHE_OK, GENCACHE_EINVAL (bad desc or options, size not
 * matching the shape, a NaN or Inf element: rejected), GENCACHE_EUNSUPPORTED (dtype),
 * GENCACHE_ETOOBIG (dst_size smaller than gencache_quant_size()), GENCACHE_ELIMIT.
 * Thread-safety: safe. */
GENCACHE_API int gencache_quant_encode(const gencache_tensor_desc *desc, const void *data,
                                       size_t size, const gencache_quant_options *opts, void *dst,
                                       size_t dst_size, size_t *out_size);

/* What a quantized payload holds, as read from its header. */
typedef struct gencache_quant_info {
    gencache_codec codec;       /* INT8, INT8_CHANNEL or INT8_GROUP */
    uint32_t axis;              /* INT8_CHANNEL's axis; else 0 */
    uint32_t group_size;        /* INT8_GROUP's group size; else 0 */
    uint64_t n_scales;          /* f32 scales stored */
    uint64_t scales_offset;     /* byte offset of the scales in the payload */
    uint64_t data_offset;       /* byte offset of the int8 elements (64-byte aligned) */
    gencache_tensor_desc desc;  /* the tensor that was quantized (its dtype and shape) */
} gencache_quant_info;

/* Validates a quantized payload completely (magic, version, codec, shape, scale count, finite
 * non-negative scales, exact size) and describes it in *out (zeroed on failure).
 * Returns GENCACHE_OK, GENCACHE_EINVAL (NULL argument), GENCACHE_EPARSE (not a valid payload),
 * GENCACHE_EVERSION (a layout version this library does not know). Thread-safety: safe. */
GENCACHE_API int gencache_quant_info_get(const void *payload, size_t size,
                                         gencache_quant_info *out);

/* Dequantizes a payload into dst as `dtype` (F32, F16 or BF16; NONE: the original dtype),
 * q * scale computed in f32 and narrowed as gencache_tensor_convert() does. *out_size (may be
 * NULL) receives the bytes written (element count times the dtype's size).
 * Returns GENCACHE_OK, GENCACHE_EINVAL, GENCACHE_EPARSE / GENCACHE_EVERSION (as
 * gencache_quant_info_get()), GENCACHE_EUNSUPPORTED (dtype), GENCACHE_ETOOBIG (dst too small).
 * Thread-safety: safe. */
GENCACHE_API int gencache_quant_decode(const void *payload, size_t size, gencache_dtype dtype,
                                       void *dst, size_t dst_size, size_t *out_size);

/* ---- safetensors files (Hugging Face's format) -------------------------------------------- */

/* Default and hard ceiling of a file's JSON header: 100 MiB. */
#define GENCACHE_SAFETENSORS_MAX_HEADER (100ull * 1024 * 1024)

/* One tensor of a safetensors file: read from one, or given to the writer. */
typedef struct gencache_safetensors_tensor {
    const char *name;                 /* UTF-8, unique in the file */
    gencache_dtype dtype;             /* F32, F16, BF16, I8, U8, I32 or I64 */
    uint32_t ndim;                    /* <= GENCACHE_MAX_DIMS */
    int64_t shape[GENCACHE_MAX_DIMS];
    const void *data;                 /* little-endian, row-major elements */
    uint64_t size;                    /* bytes: element count times the dtype's size */
} gencache_safetensors_tensor;

/* A parsed safetensors file. Immutable once parsed. Thread-safety: safe (reads), one thread at a
 * time for close. */
typedef struct gencache_safetensors gencache_safetensors;

typedef struct gencache_safetensors_options {
    size_t struct_size;        /* sizeof(gencache_safetensors_options); set by _init() */
    uint64_t max_header_bytes; /* larger JSON headers are refused; default and ceiling
                                  GENCACHE_SAFETENSORS_MAX_HEADER */
    char *errbuf;              /* NULL, or a buffer that receives a sentence saying what was
                                  wrong with a refused file */
    size_t errbuf_size;
} gencache_safetensors_options;

/* Fills *opts with the defaults above. Thread-safety: safe. */
GENCACHE_API void gencache_safetensors_options_init(gencache_safetensors_options *opts);

/* Parses a safetensors file held in memory and validates it strictly: an 8-byte little-endian
 * header length within the limit and the buffer, a JSON object header (UTF-8, no duplicate
 * names), known dtypes, at most GENCACHE_MAX_DIMS non-negative dimensions, data_offsets that are
 * in range, contiguous from 0 with no gap or overlap and cover the data exactly, each tensor's
 * byte length equal to its shape times its dtype's size, and an optional "__metadata__" object
 * of strings. Tensors are listed in the order of their data. `data` is borrowed and must
 * outlive *out (tensor data points into it). opts may be NULL.
 * Returns GENCACHE_OK, GENCACHE_EINVAL (NULL argument), GENCACHE_EPARSE (malformed or
 * inconsistent file), GENCACHE_EUNSUPPORTED (a dtype gencache does not carry, such as F64, or
 * more than GENCACHE_MAX_DIMS dims), GENCACHE_ELIMIT (header past the limit), GENCACHE_ENOMEM.
 * On success *out is a new object; free it with gencache_safetensors_close().
 * Thread-safety: safe. */
GENCACHE_API int gencache_safetensors_parse(const void *data, size_t size,
                                            const gencache_safetensors_options *opts,
                                            gencache_safetensors **out);

/* Like gencache_safetensors_parse() on the contents of the file at `path`, which is mapped
 * read-only and owned by *out. Returns those codes and GENCACHE_EIO (cannot open or read),
 * GENCACHE_ENOTFOUND (no such file). Thread-safety: safe. */
GENCACHE_API int gencache_safetensors_open(const char *path,
                                           const gencache_safetensors_options *opts,
                                           gencache_safetensors **out);

/* Frees a parsed file; pointers obtained from it become invalid. close(NULL) does nothing.
 * Thread-safety: one thread at a time. */
GENCACHE_API void gencache_safetensors_close(gencache_safetensors *st);

/* The number of tensors in the file. Thread-safety: safe. */
GENCACHE_API size_t gencache_safetensors_count(const gencache_safetensors *st);

/* Fills *out with tensor `index` (0 <= index < count); its strings and data point into st.
 * Returns GENCACHE_OK, GENCACHE_EINVAL (index out of range). Thread-safety: safe. */
GENCACHE_API int gencache_safetensors_get(const gencache_safetensors *st, size_t index,
                                          gencache_safetensors_tensor *out);

/* Fills *out with the tensor called `name`. Returns GENCACHE_OK, GENCACHE_ENOTFOUND,
 * GENCACHE_EINVAL. Thread-safety: safe. */
GENCACHE_API int gencache_safetensors_find(const gencache_safetensors *st, const char *name,
                                           gencache_safetensors_tensor *out);

/* The value of "__metadata__" entry `key`, or NULL when absent; owned by st.
 * Thread-safety: safe. */
GENCACHE_API const char *gencache_safetensors_metadata(const gencache_safetensors *st,
                                                       const char *key);

/* Receives a file's bytes in order; returns 0, or a negative GENCACHE_E* code to stop. */
typedef int (*gencache_write_fn)(void *userdata, const void *data, size_t size);

/* Writes n tensors (in the order given, data contiguous, header padded with spaces to a multiple
 * of 8 bytes) and an optional "__metadata__" of n_metadata key/value string pairs
 * (metadata[2i] is a key, metadata[2i+1] its value) through `write`. Everything is borrowed.
 * Returns GENCACHE_OK, GENCACHE_EINVAL (NULL arguments, duplicate or empty names, a name or key
 * that is not UTF-8, "__metadata__" as a tensor name, a size not matching the shape, an
 * unknown dtype), GENCACHE_ENOMEM, or the first error `write` returns. Thread-safety: safe. */
GENCACHE_API int gencache_safetensors_write_to(gencache_write_fn write, void *userdata,
                                               const gencache_safetensors_tensor *tensors,
                                               size_t n, const char *const *metadata,
                                               size_t n_metadata);

/* gencache_safetensors_write_to() into the file at `path`, written beside it and renamed into
 * place, so a reader never sees half a file. Returns those codes and GENCACHE_EIO.
 * Thread-safety: safe (on distinct paths). */
GENCACHE_API int gencache_safetensors_write(const char *path,
                                            const gencache_safetensors_tensor *tensors, size_t n,
                                            const char *const *metadata, size_t n_metadata);

/* ---- sessions: in-flight state of one generation ------------------------------------------
 * A session holds named values that live for a number of denoising steps (per-step features) or
 * for the whole session (GENCACHE_PERSISTENT: text embeddings). A value put with steps = N while
 * the session is at step k is available at steps k .. k+N-1 and freed by the
 * gencache_session_step() that moves the session to step k+N. Session values draw on the
 * cache's memory budget: they count against the memory tier's byte limit (evicting cached
 * entries to make room) and give it back when freed. A session idle for longer than its TTL is
 * ended by gencache_session_reap() (or by the next gencache_session_open() on the same cache),
 * so a client that vanishes does not hold memory for ever.
 * Thread-safety: safe (each session has its own lock), except gencache_session_close(). */
typedef struct gencache_session gencache_session;

typedef struct gencache_session_options {
    size_t struct_size; /* sizeof(gencache_session_options); set by _init() */
    uint64_t ttl_ms;    /* idle time after which the session may be reaped; 0: never. Default
                           300000 (5 min) */
    uint64_t max_bytes; /* this session's own byte limit; 0: only the cache's budget. Default 0 */
} gencache_session_options;

/* Fills *opts with the defaults above. Thread-safety: safe. */
GENCACHE_API void gencache_session_options_init(gencache_session_options *opts);

/* The value lives for the whole session, whatever its steps. */
#define GENCACHE_PERSISTENT 1u

/* Opens session `id` (1-128 printable ASCII bytes) at step 0 on `cache`, first reaping the
 * cache's sessions whose TTL has run out. opts may be NULL. On success *out is the session;
 * end it with gencache_session_close(), before the cache is closed.
 * Returns GENCACHE_OK, GENCACHE_EINVAL (bad id or options), GENCACHE_EEXIST (a session with
 * this id is open on this cache), GENCACHE_ENOMEM. Thread-safety: safe. */
GENCACHE_API int gencache_session_open(gencache *cache, const char *id,
                                       const gencache_session_options *opts,
                                       gencache_session **out);

/* Stores a copy of `size` bytes under `name` (1-255 bytes), replacing a value of that name,
 * for `steps` steps from the current one, or for the whole session with GENCACHE_PERSISTENT in
 * flags (steps is then ignored). meta may be NULL; its dtype, ndim and shape describe a tensor
 * (checked against size), its other fields are ignored. Values are 64-byte aligned.
 * Returns GENCACHE_OK, GENCACHE_EINVAL (bad name, steps 0 without PERSISTENT, unknown flags,
 * tensor shape not matching size), GENCACHE_ELIMIT (the session's max_bytes would be exceeded),
 * GENCACHE_EFULL (the cache's memory budget cannot make room), GENCACHE_ETIMEDOUT (the session
 * was reaped), GENCACHE_ENOMEM. Thread-safety: safe (calls on one session are serialized). */
GENCACHE_API int gencache_session_put(gencache_session *s, const char *name, const void *data,
                                      size_t size, const gencache_meta *meta, uint32_t steps,
                                      unsigned flags);

/* Looks up `name`: *data and *size receive the stored bytes (no copy), valid until the value
 * expires, is replaced or the session ends; desc (may be NULL) receives its tensor description
 * (dtype NONE when not a tensor). Returns GENCACHE_OK, GENCACHE_ENOTFOUND (absent or expired),
 * GENCACHE_EINVAL, GENCACHE_ETIMEDOUT (reaped). *data is NULL and *size 0 on failure.
 * Thread-safety: safe, but the bytes may be freed by another thread's step or put. */
GENCACHE_API int gencache_session_get(gencache_session *s, const char *name, const void **data,
                                      size_t *size, gencache_tensor_desc *desc);

/* Advances the session one step and frees the values that expire with it. *freed_bytes (may be
 * NULL) receives the bytes given back to the budget (value sizes plus bookkeeping).
 * Returns GENCACHE_OK, GENCACHE_EINVAL, GENCACHE_ETIMEDOUT (reaped). Thread-safety: safe. */
GENCACHE_API int gencache_session_step(gencache_session *s, uint64_t *freed_bytes);

/* A session's state. */
typedef struct gencache_session_stats {
    uint64_t step;    /* current step, from 0 */
    uint64_t entries; /* values held */
    uint64_t bytes;   /* bytes charged to the cache's budget */
    int reaped;       /* nonzero: ended by its TTL; only close remains */
} gencache_session_stats;

/* Fills *out. Returns GENCACHE_OK, GENCACHE_EINVAL. Thread-safety: safe. */
GENCACHE_API int gencache_session_stats_get(gencache_session *s, gencache_session_stats *out);

/* Ends the session: frees its values, gives their bytes back to the cache's budget, and frees
 * s. close(NULL) does nothing. Thread-safety: one thread at a time; no other call on s may run
 * meanwhile or follow. */
GENCACHE_API void gencache_session_close(gencache_session *s);

/* Ends every session of `cache` idle (no put, get or step) for longer than its TTL at now_ms
 * (wall-clock ms since the epoch; 0: now): their values are freed and the budget returned. The
 * session objects stay until their owner calls gencache_session_close(); other calls on them
 * return GENCACHE_ETIMEDOUT, and their ids may be opened again. *count (may be NULL) receives
 * how many were ended. Returns GENCACHE_OK, GENCACHE_EINVAL. Thread-safety: safe. */
GENCACHE_API int gencache_session_reap(gencache *cache, uint64_t now_ms, uint64_t *count);

/* ---- KV windows: attention keys and values per layer ---------------------------------------
 * Each layer keeps its K rows and its V rows in one contiguous buffer each, in position order,
 * so a retrieve is a pointer into that buffer, not a copy (unless rows are stored as int8, when
 * it dequantizes into one buffer per layer). Pruning drops the oldest rows, handing them first
 * to an offload callback (the next tier) when one is set.
 * Thread-safety: one thread at a time per window (a window belongs to one generation). */
typedef struct gencache_kv gencache_kv;

/* Rows pruned from one layer, handed to the offload callback. Pointers valid during the call. */
typedef struct gencache_kv_block {
    uint32_t layer;
    int64_t first_pos;      /* position of the first row */
    uint64_t n_positions;   /* rows */
    gencache_dtype dtype;   /* of the rows below: the window's dtype, or I8 when stored as int8 */
    const void *k, *v;      /* n_positions rows each, contiguous */
    uint64_t k_row_bytes, v_row_bytes;
    const float *k_scales, *v_scales; /* int8 rows: one scale per row (q * scale); else NULL */
} gencache_kv_block;

/* Receives pruned rows (the disk tier, or the caller's own store). Called on the pruning
 * thread, with no lock of the window held. */
typedef void (*gencache_kv_offload_fn)(void *userdata, const gencache_kv_block *block);

typedef struct gencache_kv_options {
    size_t struct_size;     /* sizeof(gencache_kv_options); set by _init() */
    uint32_t n_layers;      /* >= 1; required */
    gencache_dtype dtype;   /* element type of K and V; default F16 */
    uint64_t k_elems;       /* elements of K per position (heads x head_dim); >= 1; required */
    uint64_t v_elems;       /* elements of V per position; >= 1; required */
    int int8;               /* nonzero: keep rows as int8 with one scale per row (dtype must be
                               F32, F16 or BF16); retrieve dequantizes. Default 0 */
    uint64_t initial_positions; /* rows reserved per layer at the first append; default 64 */
    gencache_kv_offload_fn offload; /* NULL: pruned rows are dropped */
    void *offload_userdata;
    gencache *cache;        /* non-NULL: the window's buffers count against this cache's memory
                               budget (borrowed; must outlive the window). Default NULL */
} gencache_kv_options;

/* Fills *opts with the defaults above (n_layers, k_elems, v_elems 0). Thread-safety: safe. */
GENCACHE_API void gencache_kv_options_init(gencache_kv_options *opts);

/* Creates an empty window. On success *out is new; free it with gencache_kv_free().
 * Returns GENCACHE_OK, GENCACHE_EINVAL (bad options), GENCACHE_ENOMEM.
 * Thread-safety: safe. */
GENCACHE_API int gencache_kv_new(const gencache_kv_options *opts, gencache_kv **out);

/* Appends one position's K (k_elems elements) and V (v_elems elements) to `layer`. The first
 * append to a layer may use any position >= 0; each later one must be the next position.
 * Returns GENCACHE_OK, GENCACHE_EINVAL (bad layer, position out of order, NULL rows, NaN/Inf
 * in a row of an int8 window), GENCACHE_EFULL (the cache's budget cannot make room),
 * GENCACHE_ENOMEM. Thread-safety: one thread at a time per window. */
GENCACHE_API int gencache_kv_append(gencache_kv *kv, uint32_t layer, int64_t pos, const void *k,
                                    const void *v);

/* Rows of a layer as retrieve returns them. */
typedef struct gencache_kv_view {
    const void *k, *v;    /* n_positions rows each, contiguous, in the window's dtype */
    int64_t first_pos;    /* position of the first row */
    uint64_t n_positions; /* rows: first_pos .. first_pos + n_positions - 1 */
} gencache_kv_view;

/* Fills *out with the layer's rows from its oldest kept position up to, not including,
 * end_pos (end_pos past the last row means every row). The pointers stay valid until the next
 * append, prune or retrieve of this layer, or the window is freed.
 * int8 windows dequantize into one buffer per layer and keep what they dequantized, so a
 * retrieve after an append converts only the new rows (after a prune, all of them again).
 * Returns GENCACHE_OK, GENCACHE_EINVAL (bad layer), GENCACHE_ENOTFOUND (no row before
 * end_pos), GENCACHE_ENOMEM / GENCACHE_EFULL (int8 windows: the dequantization buffer).
 * Thread-safety: one thread at a time per window. */
GENCACHE_API int gencache_kv_retrieve(gencache_kv *kv, uint32_t layer, int64_t end_pos,
                                      gencache_kv_view *out);

/* Keeps the last keep_last_n positions of every layer and removes the older ones, handing them
 * to the offload callback first. *bytes_moved (may be NULL) receives the bytes of the rows
 * removed (and offloaded, when a callback is set). Returns GENCACHE_OK, GENCACHE_EINVAL.
 * Thread-safety: one thread at a time per window. */
GENCACHE_API int gencache_kv_prune(gencache_kv *kv, uint64_t keep_last_n, uint64_t *bytes_moved);

typedef struct gencache_kv_stats {
    uint64_t positions;       /* rows held, summed over layers */
    uint64_t bytes;           /* bytes of buffers held (capacity, not only rows) */
    uint64_t bytes_offloaded; /* row bytes handed to the offload callback, in total */
    uint64_t bytes_dropped;   /* row bytes pruned with no callback set, in total */
} gencache_kv_stats;

/* Fills *out. Returns GENCACHE_OK, GENCACHE_EINVAL. Thread-safety: one thread at a time. */
GENCACHE_API int gencache_kv_stats_get(const gencache_kv *kv, gencache_kv_stats *out);

/* Frees the window and gives its bytes back to the cache's budget. free(NULL) does nothing.
 * Thread-safety: one thread at a time. */
GENCACHE_API void gencache_kv_free(gencache_kv *kv);

/* ---- chunked decoding ---------------------------------------------------------------------- */

typedef struct gencache_chunk_options {
    size_t struct_size;       /* sizeof(gencache_chunk_options); set by _init() */
    int64_t shape[5];         /* the latent [B, C, T, H, W]; each >= 1 */
    gencache_dtype dtype;     /* latent element type; default F16 */
    uint64_t bytes_per_frame; /* the decoder's working memory per latent frame */
    uint64_t budget_bytes;    /* memory one chunk may use */
    uint32_t overlap;         /* frames each chunk repeats from the previous one, for temporal
                                 continuity; default 0 */
} gencache_chunk_options;

/* Fills *opts with the defaults above (shape, bytes_per_frame and budget 0).
 * Thread-safety: safe. */
GENCACHE_API void gencache_chunk_options_init(gencache_chunk_options *opts);

/* One chunk of latent frames: [start, start + frames). */
typedef struct gencache_chunk {
    int64_t start;   /* first frame */
    int64_t frames;  /* frames in the chunk, overlap included */
    int64_t overlap; /* leading frames shared with the previous chunk (0 for the first) */
} gencache_chunk;

/* Splits the T latent frames into chunks that each fit the budget: a frame costs its latent
 * bytes (B*C*H*W*dtype size) plus bytes_per_frame, a chunk at most floor(budget / cost) frames.
 * Chunks are as long as fits, consecutive ones share `overlap` frames, and the last ends at T.
 * A pure function. With chunks NULL, *n_chunks receives the count needed.
 * Returns GENCACHE_OK, GENCACHE_EINVAL (bad options; overlap >= the frames a chunk can hold),
 * GENCACHE_ELIMIT (the budget is smaller than one frame), GENCACHE_ETOOBIG (max_chunks too
 * small: *n_chunks then says how many are needed). Thread-safety: safe. */
GENCACHE_API int gencache_chunk_plan(const gencache_chunk_options *opts, gencache_chunk *chunks,
                                     size_t max_chunks, size_t *n_chunks);

/* @@TENSOR-SECTION@@ */

#ifdef __cplusplus
}
#endif

#endif /* GENCACHE_H */
