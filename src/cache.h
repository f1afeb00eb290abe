/*
 * cache.h: the orchestrator's state, shared by the files that implement the public API over it:
 * cache.c (layers, open and close, the read and write paths), cache_admin.c (invalidation,
 * demotion, flush, maintenance, statistics) and cache_tenant.c (calls on a tenant's behalf).
 * Nothing here is API.
 */
#ifndef GENCACHE_CACHE_H
#define GENCACHE_CACHE_H

#include "internal.h"

/* The hot-path copy of one registry layer (same index), with its counters. */
typedef struct layer {
    char name[GENCACHE__LAYER_NAME_MAX + 1];
    size_t name_len;
    gencache_scope scope;
    uint64_t ttl_ms;
    bool sliding;
    bool write_through;
    bool shared;
    /* Lookups are hits + misses: not counted apart, so a hit touches two counters fewer. hits
     * are those found below the memory tier, which counts its own per layer
     * (gencache__mem_tier_layer_hits()): a memory hit adds to no shared counter here. */
    _Atomic uint64_t hits, misses, ghost_hits, puts, cost_ms_saved;
} layer;

struct gencache {
    const gencache_allocator *alloc;
    gencache__log log;
    gencache_clock_fn clock_fn;
    void *clock_userdata;
    bool verify_mem_reads;
    gencache_keyspace *ks; /* the layer registry; layers[i] mirrors ks->layers[i] */
    layer layers[GENCACHE_MAX_LAYERS];
    unsigned n_layers;
    gencache__tier *tiers[GENCACHE_MAX_TIERS]; /* tiers[0] is the memory tier */
    unsigned n_tiers;
    int disk_tier;   /* index of the persistent local tier; -1: none */
    int shared_tier; /* index of the shared tier; -1: none */
    _Atomic uint64_t tier_hits[GENCACHE_MAX_TIERS]; /* [0] unused: memory's hits are the layers'
                                                       hits less those of the tiers below */
    gencache__writeback *wb;                        /* NULL without tiers below memory */
    uint64_t writeback_max_bytes;
    gencache__ghosts *ghost;
    gencache__tenants *tenants;
    char **preferred; /* n_preferred fnmatch patterns of keys every put pins */
    size_t n_preferred;
    _Atomic(struct gencache__flights *) flights; /* src/coalesce/: made on the first claim */
    double pressure_warn_ratio;
    uint64_t pressure_ttl_ms;
    gencache__crypt *keys;       /* encryption at rest; NULL: none. Freed after the tiers */
    pthread_mutex_t pressure_mu; /* serializes gencache_pressure_relieve() */
    _Atomic unsigned pressure_level;
    _Atomic uint64_t batch_demoted;
    _Atomic bool tenant_usage_loaded; /* the disk tier's entries are in the usage tables */
    _Atomic uint64_t invalidated;
    struct gencache__reuse_state *reuse;  /* src/reuse/: what matches beyond the key may serve */
    struct gencache__mrc *mrc;            /* the memory tier's miss-ratio curve; NULL: none */
    gencache__redis_coherence *coherence; /* the shared tier's subscriber; NULL: none */
};

/* A read handle points at its entry (which it keeps alive) and notes what the lookup saw of the
 * entry's changing fields; the gencache_meta is filled in on the first gencache_handle_meta(). */
struct gencache_handle {
    _Atomic uint32_t refs;
    _Atomic uint32_t meta_state; /* the meta is unfilled, being filled, or ready */
    gencache__entry *entry;
    gencache_handle *next_free; /* in a thread's pool of released handles (src/cache.c) */
    const char *tier;           /* where the value was found */
    uint64_t expires_ms, last_access_ms, hits; /* the entry's, as the lookup left them */
    bool shown; /* shown_key is the key the caller named (the stored one differs) */
    gencache_meta meta;
    char shown_key[GENCACHE__KEY_MAX + 1];
};

/* What one call is made for: on whose behalf, and what a hit saves it. */
typedef struct gencache__call {
    gencache__tenant *tenant; /* NULL: the cache's owner (the plain functions) */
    uint64_t cost_ms;         /* 0: credit the stored cost */
} gencache__call;

/* A new handle on e (whose reference it takes over), found in tier (a static name); shown_key:
 * what its meta->key says when the stored key differs (NULL: the entry's key). Returns
 * GENCACHE_OK or GENCACHE_ENOMEM (e is then still the caller's). src/cache_handle.c. */
int gencache__handle_new(gencache__entry *e, const char *tier, const char *shown_key,
                         gencache_handle **out);
/* Resolves a key to its layer index. GENCACHE_EINVAL (malformed), GENCACHE_ENOTFOUND. */
int gencache__cache_key_layer(const gencache *c, const char *key, int *idx);
/* Looks up the stored key `key` of layer index idx (-1: check the key and find its layer here;
 * otherwise the caller has checked it); shown_key (NULL: key) is what the handle's meta->key
 * says. touch: a get; !touch: a peek (changes nothing). */
int gencache__cache_lookup(gencache *c, const char *key, int idx, const char *shown_key,
                           const gencache__call *call, bool touch, gencache_handle **out);
/* Stores under the stored key `key`. charge: the tenant whose usage counts the value (NULL:
 * the meta's tenant, unenforced); enforce: refuse with GENCACHE_ELIMIT over its quota. */
int gencache__cache_put(gencache *c, const char *key, const void *data, size_t size,
                        const gencache_meta *meta, gencache__tenant *charge, bool enforce);
/* Coherence with the other nodes of the shared tier (cache_admin.c): start after the tiers are
 * open, stop first thing in gencache_close(); publish after a delete or an invalidation. */
int gencache__cache_coherence_start(gencache *c);
void gencache__cache_coherence_stop(gencache *c);
void gencache__cache_publish(gencache *c, const gencache_filter *f, uint64_t created_before_ms);
/* Every removal path tells the usage tables: the entry is gone from this node's local tiers. */
void gencache__cache_forget_usage(gencache *c, const char *tenant, const char *key, uint64_t hash);
/* True when an entry leaving memory must still be written to disk to survive. */
bool gencache__cache_needs_disk(const gencache *c, const gencache__entry *e, uint64_t now);
/* *out = *meta, or the defaults for a NULL meta; GENCACHE_EINVAL for a short struct_size. */
int gencache__meta_copy(const gencache_meta *meta, gencache_meta *out);
/* True when key matches a gencache_preferred_add() pattern. */
bool gencache__cache_preferred(const gencache *c, const char *key);
/* Counts what the disk tier holds per tenant into the usage tables, once. */
void gencache__cache_load_usage(gencache *c);

#endif
