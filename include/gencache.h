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
/* @@TENSOR-SECTION@@ */

#ifdef __cplusplus
}
#endif

#endif /* GENCACHE_H */
