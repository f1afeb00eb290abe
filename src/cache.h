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
    gencache_scope scope;
    uint64_t ttl_ms;
    bool sliding;
    bool write_through;
    bool shared;
    _Atomic uint64_t lookups, hits, misses, ghost_hits, puts, cost_ms_saved;
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
    _Atomic uint64_t tier_hits[GENCACHE_MAX_TIERS];
    gencache__writeback *wb; /* NULL without tiers below memory */
    uint64_t writeback_max_bytes;
    gencache__ghost *ghost;
    gencache__tenants *tenants;
    char **preferred; /* n_preferred fnmatch patterns of keys every put pins */
    size_t n_preferred;
    _Atomic(struct gencache__flights *) flights; /* src/coalesce/: made on the first claim */
    double pressure_warn_ratio;
    uint64_t pressure_ttl_ms;
    gencache__crypt *keys; /* encryption at rest; NULL: none. Freed after the tiers */
    pthread_mutex_t pressure_mu; /* serializes gencache_pressure_relieve() */
    _Atomic unsigned pressure_level;
    _Atomic uint64_t batch_demoted;
    _Atomic bool tenant_usage_loaded; /* the disk tier's entries are in the usage tables */
    _Atomic uint64_t invalidated;
};

struct gencache_handle {
    _Atomic uint32_t refs;
    gencache__entry *entry;
    gencache_meta meta;
    char shown_key[]; /* the key as the caller gave it, when it differs from the stored one */
};

/* What one call is made for: on whose behalf, and what a hit saves it. */
typedef struct gencache__call {
    gencache__tenant *tenant; /* NULL: the cache's owner (the plain functions) */
    uint64_t cost_ms;         /* 0: credit the stored cost */
} gencache__call;

/* Resolves a key to its layer index. GENCACHE_EINVAL (malformed), GENCACHE_ENOTFOUND. */
int gencache__cache_key_layer(const gencache *c, const char *key, int *idx);
/* Looks up the stored key `key`; shown_key (NULL: key) is what the handle's meta->key says.
 * touch: a get; !touch: a peek (changes nothing). */
int gencache__cache_lookup(gencache *c, const char *key, const char *shown_key,
                           const gencache__call *call, bool touch, gencache_handle **out);
/* Stores under the stored key `key`. charge: the tenant whose usage counts the value (NULL:
 * the meta's tenant, unenforced); enforce: refuse with GENCACHE_ELIMIT over its quota. */
int gencache__cache_put(gencache *c, const char *key, const void *data, size_t size,
                        const gencache_meta *meta, gencache__tenant *charge, bool enforce);
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
