/*
 * internal.h: what the modules of libgencache share. The central object is the entry: one
 * immutable value with its metadata in a single allocation, reference counted, so a read handle
 * can keep the bytes alive after the tier that held them has let go. Names here are gencache__*;
 * nothing in this file is API.
 */
#ifndef GENCACHE_INTERNAL_H
#define GENCACHE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gencache.h"

#define GENCACHE__KEY_HEX_LEN    64
#define GENCACHE__LAYER_NAME_MAX 32
/* Longest key: layer name, '/', 64 hex digits. */
#define GENCACHE__KEY_MAX (GENCACHE__LAYER_NAME_MAX + 1 + GENCACHE__KEY_HEX_LEN)
/* Values start on this boundary so SIMD code and tensor libraries can use them in place. */
#define GENCACHE__VALUE_ALIGN 64

/* ---- allocation ---------------------------------------------------------------------------- */

/* Allocates through `a` (NULL: the C library). Returns NULL on failure. */
void *gencache__malloc(const gencache_allocator *a, size_t size);
void *gencache__calloc(const gencache_allocator *a, size_t n, size_t size);
void gencache__free(const gencache_allocator *a, void *ptr);
char *gencache__strdup(const gencache_allocator *a, const char *s);

/* ---- per-thread pools of freed memory ------------------------------------------------------
 * Handles and entries of the C library's allocator wait after their release in small pools of
 * the releasing thread (src/cache_handle.c, src/entry.c). Sanitizer builds pool nothing, so a
 * use after release is still caught there. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define GENCACHE__POOLS 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define GENCACHE__POOLS 0
#endif
#endif
#ifndef GENCACHE__POOLS
#define GENCACHE__POOLS 1
#endif

/* A thread-exit hook: drain(pool) runs when a thread that registered its pool exits. */
typedef struct gencache__thread_exit {
    void (*drain)(void *pool);
    pthread_once_t once;
    pthread_key_t key;
    bool ok; /* the key was made */
} gencache__thread_exit;
#define GENCACHE__THREAD_EXIT_INIT(drain_fn)                                                       \
    {                                                                                              \
        .drain = (drain_fn), .once = PTHREAD_ONCE_INIT                                             \
    }

/* Arranges for hook->drain(pool) to run when the calling thread exits (pool is the thread's
 * own). False when that cannot be arranged: the caller then keeps nothing in the pool. */
bool gencache__thread_exit_register(gencache__thread_exit *hook, void *pool);

/* ---- logging ------------------------------------------------------------------------------- */

typedef struct gencache__log {
    gencache_log_fn fn;
    void *userdata;
    gencache_log_level level;
} gencache__log;

void gencache__log_msg(const gencache__log *log, gencache_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- time ---------------------------------------------------------------------------------- */

/* Wall-clock milliseconds since the epoch. */
uint64_t gencache__clock_realtime_ms(void *userdata);
/* Monotonic nanoseconds, for measuring durations. */
uint64_t gencache__clock_mono_ns(void);

/* ---- little-endian fields -------------------------------------------------------------------
 * Every on-disk and on-wire layout of the project (tier records, quantized payloads, the hash
 * index file) is little-endian whatever the host is. */
static inline void gencache__le32_put(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static inline void gencache__le64_put(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static inline uint32_t gencache__le32_get(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t gencache__le64_get(const unsigned char *p)
{
    return (uint64_t)gencache__le32_get(p) | (uint64_t)gencache__le32_get(p + 4) << 32;
}

/* ---- checksums ----------------------------------------------------------------------------- */

/* XXH3-64 of a value (the checksum every stored value carries), and of a key (hash tables). */
uint64_t gencache__checksum(const void *data, size_t size);

/* Values of this many bytes are copied into the cache with streaming stores. Larger ones are
 * not: a large value is often read again soon (demoted to disk by the next puts' evictions),
 * and then it is better found in the last-level cache. */
#define GENCACHE__STREAM_MIN 1024
#define GENCACHE__STREAM_MAX (64u << 10)
/* Copies size bytes like memcpy. A copy of GENCACHE__STREAM_MIN to GENCACHE__STREAM_MAX bytes
 * into a 16-byte aligned dst bypasses the caches with streaming stores and returns true: the
 * caller must then issue a store fence (_mm_sfence()) before anything that makes dst visible to
 * another thread; work in between overlaps with the stores' drain. Returns false for a plain
 * copy, which needs no fence. */
bool gencache__copy_stream(void *dst, const void *src, size_t size);

/* ---- whole files (src/file_atomic.c) -------------------------------------------------------- */

/* Maps an errno value to GENCACHE_ENOSPC, GENCACHE_ENOMEM or GENCACHE_EIO. */
int gencache__errno_code(int e);
/* Writes size bytes as the whole file at path: a temporary file beside it, synced, renamed over
 * it. Returns GENCACHE_OK, GENCACHE_EIO, GENCACHE_ENOSPC, GENCACHE_ENOMEM. */
int gencache__file_replace(const char *path, const void *data, size_t size);
/* Reads the whole regular file at path into a new malloc'd buffer (*out, *size bytes).
 * Returns GENCACHE_OK, GENCACHE_EIO (missing, not a regular file, short read), GENCACHE_ENOMEM. */
int gencache__file_read(const char *path, unsigned char **out, size_t *size);

/* ---- keys ---------------------------------------------------------------------------------- */

/* Splits "<layer>/<64 lowercase hex>" into its layer name (returned through *layer / *layer_len,
 * pointing into key). Returns GENCACHE_OK or GENCACHE_EINVAL for a malformed key. */
int gencache__key_split(const char *key, const char **layer, size_t *layer_len);
/* True when the 64 bytes at p (which must be readable) are lowercase hex digits. */
bool gencache__key_hex64(const char *p);

/* ---- entries ------------------------------------------------------------------------------- */

typedef struct gencache__entry gencache__entry;
struct gencache__entry {
    /* Cold: immutable after creation and read by few paths (metadata, handles' descriptions,
     * the lower tiers' codecs); the strings live in the same allocation (the default content
     * type is a constant). */
    const char *layer_name;   /* the key's layer part, NUL-terminated */
    const char *model;        /* NULL: none */
    const char *tags;         /* NULL: none */
    const char *content_type; /* never NULL */
    const int64_t *shape;     /* GENCACHE_MAX_DIMS dimensions: in the allocation, or zeros */
    gencache_dtype dtype;
    uint32_t ndim;
    uint64_t created_ms; /* wall clock */
    /* XXH3-64 of the value: read it with gencache__entry_checksum(), which computes it at the
     * first need when sum_lazy is set (an atomic, since two threads may compute it at once). */
    _Atomic uint64_t checksum;

    /* Owned by the memory tier, under its shard lock: chains the entries it takes out of its
     * table together. */
    gencache__entry *hnext;

    /* Owned by the memory tier's eviction policy (src/policy/), under its shard lock. */
    double pol_priority; /* GDSF: clock + frequency * cost / charge */
    uint64_t pol_seq;    /* S3-FIFO: when it entered its queue (tier-wide ticks) */
    uint32_t pol_index;  /* GDSF: its place in the shard's heap */
    uint16_t pol_freq;   /* accesses the policy counts (GDSF: all; S3-FIFO: at most 3) */
    uint8_t pol_queue;   /* S3-FIFO: 0 small, 1 main */
    /* True while checksum is not computed yet: a put whose value nothing verifies or writes
     * below memory at once leaves it to the first reader (gencache__entry_checksum()). Set
     * before the entry is published, cleared (release) once checksum holds the sum. */
    _Atomic bool sum_lazy;

    /* What an eviction reads and writes (besides what a hit does): the list links, the tenant,
     * the demotion flags, the allocation's size. Right before the hit's fields, so an eviction
     * touches nothing of the cold part. */
    const char *key;    /* immutable */
    uint64_t hash;      /* hash of key: shard and slot selection */
    uint64_t ttl_ms;    /* 0: no expiry */
    const char *tenant; /* NULL: none */
    size_t alloc_bytes; /* the size of the allocation, header to the value's end */
    /* The LRU list's links (src/policy/), under the memory tier's shard lock, and the charge the
     * lists count. */
    gencache__entry *lru_prev, *lru_next;
    size_t charge; /* bytes counted against tier limits: the whole allocation */
    bool linked;   /* in the memory tier's table; under its shard lock */
    /* True once a persistent local tier (disk) holds this very value: leaving memory then loses
     * nothing, so eviction and shutdown need not write it again. */
    _Atomic bool durable;
    /* True once an eviction queued this value's write to disk (src/writeback.c). */
    _Atomic bool queued;

    /* What a hit reads and writes, at the end of the struct: the key's bytes come right after
     * it (gencache__entry_new() places them first), so a lookup reads one run of 72 + 81 bytes
     * (three or four cache lines). The access fields change with lookups (atomics, so readers
     * need no lock). */
    const gencache_allocator *alloc; /* frees this entry; borrowed, outlives every handle */
    uint64_t cost_ms;
    unsigned char *value;
    size_t size;                 /* value bytes */
    _Atomic uint64_t expires_ms; /* 0: never */
    _Atomic uint64_t last_access_ms;
    _Atomic uint64_t hits;
    _Atomic uint32_t refs; /* one per holder: each tier that stores it, each handle */
    uint32_t layer;        /* index into the cache's layer table */
    uint32_t key_len;      /* strlen(key) */
    bool pinned;
    bool sliding;     /* a hit moves expires_ms to now + ttl_ms */
    uint8_t pol_kind; /* the gencache_eviction of the policy instance holding it */
    uint8_t pol_ref;  /* LRU (CLOCK): hit since the sweep last passed it */
};

/* What an entry is made from: the key and its metadata. The value is copied from spec->data
 * when given; otherwise the caller or a tier fills it after creation. */
typedef struct gencache__entry_spec {
    const char *key;
    uint32_t layer;
    const gencache_meta *meta; /* may be NULL */
    size_t size;
    uint64_t now_ms;
    uint64_t ttl_ms; /* resolved: the meta's or the layer's */
    bool sliding;
    uint64_t hash;  /* the key's gencache__checksum() when the caller has it; 0: computed here */
    size_t key_len; /* strlen(key) when the caller has it; 0: computed here */
    /* NULL, or spec->size bytes copied into the value by gencache__copy_stream(), before
     * the header is written and fenced after it, so that a streamed copy drains meanwhile;
     * they must not change during the call. */
    const void *data;
} gencache__entry_spec;

/* Creates an entry with room for spec->size value bytes (spec->data's, else uninitialized) and
 * one reference.
 * With the C library's allocator (alloc NULL) it may reuse the memory of an entry this thread
 * freed (gencache__entry_free()). Returns GENCACHE_OK, GENCACHE_ENOMEM. */
int gencache__entry_new(const gencache_allocator *alloc, const gencache__entry_spec *spec,
                        gencache__entry **out);
/* e->key: gencache__entry_new() places the key's bytes right after the header, so a lookup can
 * read them without first loading the header's pointer to them. */
static inline const char *gencache__entry_key(const gencache__entry *e)
{
    return (const char *)(e + 1);
}
/* Computes a lazy entry's checksum from its value and publishes it (gencache__entry_checksum()). */
uint64_t gencache__entry_checksum_compute(gencache__entry *e);
/* The XXH3-64 of the entry's value: every consumer of the checksum (handles' metadata and ETags,
 * the codecs that write it below memory, verification) reads it through this. A put's entry may
 * have it computed only here, at the first need, from the value's bytes, which never change
 * after the entry is published; two threads asking at once both compute the same sum. */
static inline uint64_t gencache__entry_checksum(const gencache__entry *e)
{
    gencache__entry *w = (gencache__entry *)e; /* the lazy sum is a cache, not a change */
    if (atomic_load_explicit(&w->sum_lazy, memory_order_acquire))
        return gencache__entry_checksum_compute(w);
    return atomic_load_explicit(&w->checksum, memory_order_relaxed);
}
/* Retain, release and the expiry test are on every hit: inline. */
static inline gencache__entry *gencache__entry_retain(gencache__entry *e)
{
    atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
    return e;
}

/* Frees an entry whose last reference went. An entry of the C library's allocator may wait,
 * within small bounds, in a pool of the calling thread for that thread's next entry of the same
 * size: a put into a full tier then reuses its victim's memory instead of a free and a malloc.
 * Entries of a caller's allocator always go back to it. */
void gencache__entry_free(gencache__entry *e);
/* Bytes of freed entries waiting in the calling thread's pool, and freeing them (for tests). */
size_t gencache__entry_pool_bytes(void);
void gencache__entry_pool_clear(void);

static inline void gencache__entry_release(gencache__entry *e)
{
    /* acq_rel: the thread that frees must see every write made by the other holders. */
    if (e && atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel) == 1)
        gencache__entry_free(e);
}

/* True when the entry has expired at now_ms. */
static inline bool gencache__entry_expired(const gencache__entry *e, uint64_t now_ms)
{
    uint64_t exp = atomic_load_explicit(&((gencache__entry *)e)->expires_ms, memory_order_relaxed);
    return exp != 0 && now_ms >= exp;
}
/* True when the entry carries `tag` as one of its comma-separated tags. */
bool gencache__entry_has_tag(const gencache__entry *e, const char *tag);

/* ---- tiers ----------------------------------------------------------------------------------
 * A tier is a struct of function pointers (curl's vtls, Redis's connection types): the
 * orchestrator in cache.c calls them and never looks inside. Each function may be called from any
 * thread; the tier does its own locking. Entries cross tier boundaries by reference.
 */
typedef struct gencache__tier gencache__tier;

enum {
    GENCACHE__TIER_PERSISTENT = 1u << 0, /* survives a restart */
    GENCACHE__TIER_SHARED = 1u << 1,     /* seen by other gencache nodes */
    GENCACHE__TIER_ZERO_COPY = 1u << 2,  /* get returns the stored bytes themselves */
};

typedef enum gencache__evict_reason {
    GENCACHE__EVICT_CAPACITY = 0,
    GENCACHE__EVICT_EXPIRED = 1,
    GENCACHE__EVICT_CORRUPT = 2,
} gencache__evict_reason;

/* Decides, per entry, whether gencache__tier_ops.remove_if removes it. */
typedef bool (*gencache__entry_pred)(void *userdata, const gencache__entry *e);

typedef struct gencache__tier_ops {
    const char *name; /* "mem", "disk", "redis", "gpu": the X-Gencache-Tier value */
    unsigned caps;    /* GENCACHE__TIER_* bits */
    /* On a hit, *out is a new reference. An expired entry is removed and reported ENOTFOUND.
     * touch: count the access (hits, last access, sliding expiry). A tier that builds a new
     * entry (disk, redis) leaves its layer index 0: the orchestrator sets it before anyone else
     * sees the entry. */
    int (*get)(gencache__tier *t, const char *key, uint64_t hash, uint64_t now_ms, bool touch,
               gencache__entry **out);
    /* Stores e (the tier takes its own reference), replacing an entry with the same key. */
    int (*put)(gencache__tier *t, gencache__entry *e, uint64_t now_ms);
    /* Removes key; GENCACHE_ENOTFOUND when absent. */
    int (*del)(gencache__tier *t, const char *key, uint64_t hash);
    /* Removes every entry for which pred returns true; *count gets how many. */
    int (*remove_if)(gencache__tier *t, gencache__entry_pred pred, void *userdata, uint64_t *count);
    /* Removes entries expired at now_ms, counting them as expiry evictions; may be NULL for a
     * tier whose backend expires entries itself. */
    int (*expire)(gencache__tier *t, uint64_t now_ms, uint64_t *count);
    /* Fills the tier's counters (the tier field included). */
    void (*stats)(gencache__tier *t, gencache_tier_stats *out);
    /* Calls fn for every entry held, under the tier's lock: fn may only retain the entry and
     * note it. May be NULL for a tier that cannot enumerate cheaply (disk, redis). */
    void (*each)(gencache__tier *t, void (*fn)(void *userdata, gencache__entry *e), void *userdata);
    void (*close)(gencache__tier *t);
    /* Stores es[0..n) as n puts would, in as few durable commits as the tier can; rcs[i] gets
     * what put would have returned for es[i]. May be NULL: callers then put one at a time. */
    void (*put_many)(gencache__tier *t, gencache__entry *const *es, size_t n, uint64_t now_ms,
                     int *rcs);
} gencache__tier_ops;

/* Called by a tier, outside its locks, for each entry it evicts. */
typedef void (*gencache__evict_fn)(void *userdata, gencache__entry *e,
                                   gencache__evict_reason reason);

struct gencache__tier {
    const gencache__tier_ops *ops;
    gencache__evict_fn on_evict; /* may be NULL */
    /* Called under the tier's lock for each entry about to leave for lack of room, before it
     * leaves the table, so the entry is never out of sight of readers in between (the cache
     * queues its write to disk here). Must not block or take a tier's lock. May be NULL. */
    void (*before_evict)(void *userdata, gencache__entry *e);
    void *on_evict_userdata;
};

typedef struct gencache__mem_options {
    uint64_t max_bytes;        /* 0: unlimited */
    uint64_t max_pinned_bytes; /* 0: no ceiling on pinned bytes */
    uint64_t max_entries;      /* 0: unlimited */
    unsigned shards;           /* rounded up to a power of two */
    bool verify_reads;
    int policy;             /* gencache_eviction of layers that name none (src/policy/) */
    uint64_t ghost_entries; /* S3-FIFO: keys each shard's ghost queue remembers; 0: 4096 */
    const gencache_allocator *alloc;
    const gencache__log *log;
} gencache__mem_options;

int gencache__mem_tier_open(const gencache__mem_options *opts, gencache__tier **out);
/* The memory tier's get (gencache__tier_ops.get) for a key whose length the caller knows, which
 * spares the table's key comparisons a scan for the terminator. A get (touch) counts the hit for
 * the entry's layer index (gencache__mem_tier_layer_hits()). */
int gencache__mem_tier_get(gencache__tier *t, const char *key, size_t key_len, uint64_t hash,
                           uint64_t now_ms, bool touch, gencache__entry **out);
/* One sampled access as the miss-ratio curve (src/policy/mrc.c) buffers it for
 * gencache__mem_tier_replay(): a copy, since the entry it came from may be gone by then. The key
 * is known by its 64-bit hash alone (two sampled keys sharing one are rare enough to leave to the
 * estimate's error, as in the ghost list). */
typedef enum gencache__sample_op {
    GENCACHE__SAMPLE_GET,       /* a get that the real tier missed */
    GENCACHE__SAMPLE_GET_FOUND, /* a get that found the entry described below */
    GENCACHE__SAMPLE_PUT,       /* the entry described below was stored */
} gencache__sample_op;

typedef struct gencache__mem_sample {
    uint64_t hash;       /* the key's */
    uint64_t now_ms;     /* when the access happened */
    uint64_t ttl_ms;     /* the entry's (GET_FOUND, PUT), 0: no expiry */
    uint64_t expires_ms; /* the entry's, 0: never */
    uint64_t charge;     /* bytes the real entry is charged */
    uint64_t cost_ms;    /* the entry's compute cost */
    uint32_t layer;
    uint8_t op; /* a gencache__sample_op */
    bool sliding;
} gencache__mem_sample;

/* Replays n sampled accesses, in order, on a tier of keyless metadata-only entries known by
 * their keys' hashes (the curve's miniature tiers: one shard, no eviction callbacks; nothing else
 * may be stored there) under one round of its lock: a get touches the hash and, when it misses
 * and the sample carries an entry, stores a metadata copy of it; a put stores one unless a live
 * entry has the hash; either evicts to the limits. On return *hits
 * holds how many gets hit, *saved_ms their entries' costs. An entry that cannot be allocated is
 * left out (the curve is an estimate). */
void gencache__mem_tier_replay(gencache__tier *t, const gencache__mem_sample *s, size_t n,
                               uint64_t *hits, uint64_t *saved_ms);
/* The hits that gets found in the memory tier for entries of layer index `layer`, counted under
 * the shard locks the gets take anyway (so a hit adds no shared atomic of its own). */
uint64_t gencache__mem_tier_layer_hits(gencache__tier *t, uint32_t layer);
/* Reserves (delta > 0) or returns (delta < 0) bytes of the memory tier's byte limit for memory
 * held outside it (sessions, KV windows), evicting entries to make room. GENCACHE_EFULL when
 * the room cannot be made (nothing is reserved then). */
int gencache__mem_tier_reserve(gencache__tier *t, int64_t delta);
/* Sets the eviction policy (a gencache_eviction; another value: the tier's own) of the entries of
 * layer index `layer` stored from now on. Init only. */
void gencache__mem_tier_set_layer_policy(gencache__tier *t, uint32_t layer, int kind);
/* Takes every unpinned entry for which pred holds out of the memory tier and hands each to the
 * tier's eviction callback as a capacity eviction (so it is demoted, not deleted, like any entry
 * that leaves for lack of room). *count gets how many. */
int gencache__mem_tier_evict_if(gencache__tier *t, gencache__entry_pred pred, void *userdata,
                                uint64_t *count);

/* The same against a cache's memory tier: what sessions and KV windows call. */
int gencache__cache_charge(gencache *cache, int64_t delta_bytes);
/* Replaces the cache's ghost list by an empty one of `capacity` evicted keys sampled at 2^-shift
 * (0: none), to measure the sampling's error (bench/bench_ghost.c, tests). GENCACHE_OK, or what
 * gencache__ghosts_new() returns (the old list stays then). Init only: before any put. */
int gencache__cache_set_ghosts(gencache *cache, uint64_t capacity, unsigned shift);
/* Where the cache keeps its flight table (src/coalesce/): NULL until the first claim. */
struct gencache__flights;
_Atomic(struct gencache__flights *) *gencache__cache_flights_slot(gencache *cache);
/* The cache's allocator and log, for modules that allocate on its behalf. */
const gencache_allocator *gencache__cache_allocator(gencache *cache);
const gencache__log *gencache__cache_log(gencache *cache);
uint64_t gencache__cache_now_ms(gencache *cache);
/* Re-reads the cache's per-layer TTL and write policy from its layer registry (the keyspace
 * that gencache_keyspace_from_cache() returns) after the registry changed. Init only. */
int gencache__cache_layers_sync(gencache *cache);

/* The disk tier (src/tier/disk.c): LMDB index and metadata, values as the tier chooses; survives
 * restarts and kill -9. */
/* The keys of encryption at rest (src/tier/crypt.h); shared by the disk and Redis tiers. */
typedef struct gencache__crypt gencache__crypt;

typedef struct gencache__disk_options {
    const char *path;     /* data directory; created if absent */
    uint64_t max_bytes;   /* 0: unlimited */
    uint64_t max_entries; /* 0: unlimited */
    const gencache_allocator *alloc;
    const gencache__log *log;
    const gencache__crypt *keys; /* NULL: records in the clear; borrowed, outlives the tier */
} gencache__disk_options;

int gencache__disk_tier_open(const gencache__disk_options *opts, gencache__tier **out);

/* The Redis tier (src/tier/redis.c): shared by every node; TTLs live in Redis; when Redis is
 * down, gets miss and puts are dropped (counted), never errors and never longer stalls than
 * timeout_ms. */
typedef struct gencache__redis_options {
    const char *url; /* redis://HOST:PORT[/DB] */
    uint32_t timeout_ms;
    uint64_t max_value_bytes; /* larger values are not stored */
    const gencache_allocator *alloc;
    const gencache__log *log;
    double bloom_fp_rate;        /* a Bloom filter of the tier's keys in front of it; 0: none */
    uint64_t bloom_capacity;     /* keys the filter is sized for at that rate; 0: 1,000,000 */
    const gencache__crypt *keys; /* NULL: records in the clear; borrowed, outlives the tier */
} gencache__redis_options;

int gencache__redis_tier_open(const gencache__redis_options *opts, gencache__tier **out);
/* Splits redis://HOST[:PORT][/DB] (HOST may be [IPv6]; port 1-65535, default 6379; db 0-100000,
 * default 0) without resolving HOST. Returns GENCACHE_OK or GENCACHE_ECONFIG. */
int gencache__redis_url_split(const char *url, char *host, size_t host_size, long *port, long *db);
/* A Redis Cluster is named by its seed nodes: redis-cluster://HOST:PORT[,HOST:PORT...] (HOST
 * may be [IPv6]). Reads the next HOST:PORT from *cursor (the URL itself at first) and moves
 * *cursor past it. GENCACHE_OK, GENCACHE_ENOTFOUND (no more), GENCACHE_ECONFIG (malformed). */
#define GENCACHE__REDIS_CLUSTER_SCHEME "redis-cluster://"
int gencache__redis_cluster_url_next(const char **cursor, char *host, size_t host_size, long *port);

/* Coherence between nodes sharing a Redis tier (src/tier/redis_pubsub.c): deletes and
 * invalidations are published; a subscriber thread hands the other nodes' ones to invalidate()
 * (drop local copies: created_before_ms is the publisher's cut-off for older_than, 0: none), and
 * calls resync() after it subscribed again following a lost connection (messages may have been
 * missed). Both run on the subscriber thread. */
typedef struct gencache__redis_coherence gencache__redis_coherence;
typedef struct gencache__redis_coherence_cb {
    void (*invalidate)(void *userdata, const gencache_filter *f, uint64_t created_before_ms);
    void (*resync)(void *userdata);
    void *userdata;
    /* Optional (NULL: none), on the subscriber thread too: each message of the reuse records'
     * channel (msg borrowed for the call; every node's, this one's included), and each
     * subscription made, the first included (what was published before it may be missed). */
    void (*reuse_heard)(void *userdata, const void *msg, size_t len);
    void (*subscribed)(void *userdata);
} gencache__redis_coherence_cb;
/* Starts the subscriber of Redis tier t. GENCACHE_OK, GENCACHE_EINVAL, GENCACHE_ENOMEM. */
int gencache__redis_coherence_start(gencache__tier *t, const gencache__redis_coherence_cb *cb,
                                    gencache__redis_coherence **out);
/* Stops and joins the subscriber (before the cache it calls into goes away). NULL: nothing. */
void gencache__redis_coherence_stop(gencache__redis_coherence *co);
bool gencache__redis_coherence_subscribed(const gencache__redis_coherence *co);
/* The resyncs done: counted once resync() has returned. */
uint64_t gencache__redis_coherence_resyncs(const gencache__redis_coherence *co);
/* Publishes a delete (f->key) or an invalidation for the other nodes. GENCACHE_OK,
 * GENCACHE_EUNAVAILABLE (no node took it; counted as a backend error), GENCACHE_EINVAL. */
int gencache__redis_publish_invalidation(gencache__tier *t, const gencache_filter *f,
                                         uint64_t created_before_ms);
/* Single flight across nodes (src/tier/redis_lease.c): the lease on key in Redis, with a token
 * and a TTL. acquire: GENCACHE_OK (ours), GENCACHE_EEXIST (the entry is stored already),
 * GENCACHE_EBUSY (another holder), GENCACHE_EUNAVAILABLE (Redis cannot say). renew with ttl_ms 0
 * deletes it; both act only while the token is still the holder's (else GENCACHE_ENOTFOUND). */
int gencache__redis_lease_acquire(gencache__tier *t, const char *key, uint64_t token,
                                  uint32_t ttl_ms);
int gencache__redis_lease_renew(gencache__tier *t, const char *key, uint64_t token,
                                uint32_t ttl_ms);
/* The cache's shared tier when key's layer reaches it; NULL otherwise (cache_admin.c). */
gencache__tier *gencache__cache_shared_for(gencache *cache, const char *key);

/* ---- write-back queue (src/writeback.c) ---------------------------------------------------
 * Entries on their way from memory to the tiers below, written by one background thread so that
 * neither a put nor an eviction waits for a durable write it did not ask for. A queued entry stays
 * readable through gencache__writeback_find(), so a value is never invisible between leaving
 * memory and reaching disk; a delete withdraws queued copies of its key and waits out one being
 * written, so nothing deleted comes back. The queue's bytes are bounded: a push over the bound
 * waits for room (counted as a stall: demotion is not keeping up). */
enum {
    GENCACHE__WB_DISK = 1u << 0,   /* to the persistent local tier */
    GENCACHE__WB_SHARED = 1u << 1, /* to the shared tier (redis) */
};

/* The cache's write-back batches: at most this many jobs, and this many bytes (or half the
 * queue's bound, if less), per group write. */
#define GENCACHE__WB_BATCH_JOBS  256
#define GENCACHE__WB_BATCH_BYTES (64ull << 20)
/* Sets how many jobs the cache's writer takes per batch (1: one durable write per entry, the
 * behaviour before batches; for benchmarks and tests). Returns GENCACHE_OK, GENCACHE_ENOMEM.
 * Thread-safety: safe (waits for the batch being written). */
int gencache__cache_set_writeback_batch(gencache *c, size_t max_jobs);

/* Writes e to the tiers named by targets (GENCACHE__WB_* bits); runs on the writer thread. */
typedef void (*gencache__writeback_fn)(void *userdata, gencache__entry *e, unsigned targets);
/* Writes es[i] to the tiers named by targets[i], for i < n, as a group (one durable commit where
 * the tier can); runs on the writer thread. */
typedef void (*gencache__writeback_many_fn)(void *userdata, gencache__entry *const *es,
                                            const unsigned *targets, size_t n);

typedef struct gencache__writeback gencache__writeback;

typedef struct gencache__writeback_stats {
    uint64_t queued_bytes; /* charges of the entries waiting now */
    uint64_t queued_entries;
    uint64_t written; /* jobs completed */
    uint64_t stalls;  /* pushes that had to wait for room */
} gencache__writeback_stats;

/* Starts the writer thread. max_bytes: the queue's bound (at least one entry always fits).
 * Returns GENCACHE_OK, GENCACHE_ENOMEM, GENCACHE_EIO (no thread). */
int gencache__writeback_open(const gencache_allocator *a, uint64_t max_bytes,
                             gencache__writeback_fn fn, void *userdata, gencache__writeback **out);
/* From now on the writer takes up to max_jobs queued jobs at once, with charges adding up to at
 * most max_bytes (one job always), and writes them with fn while every one of them stays
 * findable. max_jobs of 1 (or fn NULL) writes one job at a time with the open's fn.
 * Returns GENCACHE_OK, GENCACHE_ENOMEM. */
int gencache__writeback_set_batch(gencache__writeback *wb, gencache__writeback_many_fn fn,
                                  size_t max_jobs, uint64_t max_bytes);
/* Queues e (the queue takes its own reference), replacing a queued job of the same key and
 * merging their targets. Waits while the queue is over its bound. */
void gencache__writeback_push(gencache__writeback *wb, gencache__entry *e, unsigned targets);
/* The same without waiting for room (the bound may be passed): for callers that hold a lock.
 * gencache__writeback_wait_room() then waits, with the lock released. */
void gencache__writeback_push_nowait(gencache__writeback *wb, gencache__entry *e, unsigned targets);
void gencache__writeback_wait_room(gencache__writeback *wb);
/* The queued (or being written) entry of key, as a new reference; NULL when none. */
gencache__entry *gencache__writeback_find(gencache__writeback *wb, const char *key, uint64_t hash);
/* Withdraws queued jobs of key and waits until none of key is being written. Returns true when
 * a queued job was withdrawn (the value existed nowhere else yet). */
bool gencache__writeback_forget(gencache__writeback *wb, const char *key, uint64_t hash);
/* Withdraws every queued job whose entry pred accepts, and waits out a matching write. Returns
 * how many queued jobs were withdrawn. */
uint64_t gencache__writeback_forget_if(gencache__writeback *wb, gencache__entry_pred pred,
                                       void *userdata);
/* Returns when every job queued before the call has been written. */
void gencache__writeback_drain(gencache__writeback *wb);
void gencache__writeback_get_stats(gencache__writeback *wb, gencache__writeback_stats *out);
/* Drains the queue, then stops the thread and frees the queue. NULL does nothing. */
void gencache__writeback_close(gencache__writeback *wb);

/* ---- tenants (src/tenant.c) ----------------------------------------------------------------
 * The registry of tenants: rules, per-layer counters, and the exact account of each one's stored
 * bytes (keys and sizes). Tenants are never removed: a pointer stays valid until the registry is
 * freed. */
typedef struct gencache__tenants gencache__tenants;
typedef struct gencache__tenant gencache__tenant;

typedef enum gencache__tenant_event {
    GENCACHE__TENANT_HIT,
    GENCACHE__TENANT_MISS,
    GENCACHE__TENANT_PUT,
} gencache__tenant_event;

int gencache__tenants_new(const gencache_allocator *a, gencache__tenants **out);
void gencache__tenants_free(gencache__tenants *ts);
bool gencache__tenant_name_valid(const char *name);
/* The tenant of that name, or NULL. Lock-free. */
gencache__tenant *gencache__tenant_find(gencache__tenants *ts, const char *name);
/* The tenant of that name, created with the defaults when new. GENCACHE_EINVAL (bad name),
 * GENCACHE_ELIMIT (registry full), GENCACHE_ENOMEM. */
int gencache__tenant_obtain(gencache__tenants *ts, const char *name, gencache__tenant **out);
void gencache__tenant_configure(gencache__tenant *t, gencache_priority priority,
                                uint64_t quota_bytes, bool admin);
const char *gencache__tenant_name(const gencache__tenant *t);
bool gencache__tenant_admin(const gencache__tenant *t);
gencache_priority gencache__tenant_priority(const gencache__tenant *t);
void gencache__tenant_options(const gencache__tenant *t, gencache_tenant_options *out);
/* Counts `size` bytes under key (replacing what the key counted). enforce: GENCACHE_ELIMIT when
 * the quota would be exceeded (nothing changes). *old_size: what the key counted before, or
 * UINT64_MAX when it was new, for gencache__tenant_uncharge() to undo. */
int gencache__tenant_charge(gencache__tenant *t, const char *key, uint64_t hash, uint64_t size,
                            bool enforce, uint64_t *old_size);
/* Sets key back to restore_size, or (UINT64_MAX) stops counting it. */
void gencache__tenant_uncharge(gencache__tenant *t, const char *key, uint64_t hash,
                               uint64_t restore_size);
/* Stops counting key for the tenant of that name (if there is one). */
void gencache__tenants_forget(gencache__tenants *ts, const char *tenant, const char *key,
                              uint64_t hash);
/* Stops counting key for whichever tenant counts it (a delete knows the key, not the owner). */
void gencache__tenants_forget_key(gencache__tenants *ts, const char *key, uint64_t hash);
/* layer: the cache's layer index. */
void gencache__tenant_count(gencache__tenant *t, uint32_t layer, gencache__tenant_event ev,
                            uint64_t cost_ms);
/* Fills the tenant's fields of *out; out->n_layers says how many layer slots to fill. */
void gencache__tenant_stats(gencache__tenant *t, gencache_tenant_stats *out);

/* ---- ghost keys ----------------------------------------------------------------------------
 * Hashes of recently evicted keys (keys only, no values), so a miss can tell whether a larger
 * tier would have hit. Thread-safe; FIFO replacement. */
typedef struct gencache__ghost gencache__ghost;

int gencache__ghost_new(const gencache_allocator *a, uint64_t capacity, gencache__ghost **out);
void gencache__ghost_free(gencache__ghost *g);
void gencache__ghost_add(gencache__ghost *g, uint64_t hash);
bool gencache__ghost_contains(gencache__ghost *g, uint64_t hash);
uint64_t gencache__ghost_count(gencache__ghost *g);
/* True when hash is remembered and was added among the `window` latest additions. */
bool gencache__ghost_recent(gencache__ghost *g, uint64_t hash, uint64_t window);

/* The cache's ghost list: a sample of the evicted keys, those whose hash has its top `shift`
 * bits clear (a share of 2^-shift), spread over shards with a lock each, remembering about
 * capacity * 2^-shift of them: a window of about `capacity` evictions. Each sampled ghost hit
 * stands for 2^shift. Thread-safe. */
typedef struct gencache__ghosts gencache__ghosts;

/* The shift gencache_open() uses for a capacity: 0 (every key) up to 8191, then the largest
 * that still samples 4096 keys, at most 4 (1 key in 16). */
unsigned gencache__ghosts_default_shift(uint64_t capacity);
/* GENCACHE_OK, GENCACHE_EINVAL (capacity 0 or over 2^30, shift over 16), GENCACHE_ENOMEM. */
int gencache__ghosts_new(const gencache_allocator *a, uint64_t capacity, unsigned shift,
                         gencache__ghosts **out);
void gencache__ghosts_free(gencache__ghosts *g);
/* hash was evicted for lack of room (kept only when sampled). Does nothing for a NULL g. */
void gencache__ghosts_add(gencache__ghosts *g, uint64_t hash);
/* A miss on hash: what it adds to the ghost-hit estimate, 2^shift when hash is a sampled ghost,
 * else 0 (also for a NULL g). */
uint64_t gencache__ghosts_hit(gencache__ghosts *g, uint64_t hash);
unsigned gencache__ghosts_shift(const gencache__ghosts *g);

/* ---- single flight (src/coalesce/) ----------------------------------------------------------- */

/* Called by gencache_close() before the tiers close: stops the cache's flight table (if a claim
 * ever made one), fails every wait with GENCACHE_EUNAVAILABLE and cuts outstanding leases off
 * the cache. */
void gencache__coalesce_close(gencache *cache);

#endif
