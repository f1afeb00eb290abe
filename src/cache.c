/*
 * cache.c: the orchestrator. It owns a layer registry (a keyspace, src/key/layers.c) and an
 * ordered list of tiers, fastest
 * first (mem, then disk and redis when configured). A get walks the tiers down and promotes what
 * it finds into the faster ones; a put lands in memory and, for write-through layers, in every
 * tier below; an entry evicted from memory is demoted to disk (through the write-back queue, off
 * the caller's thread) when it is still worth keeping. Memory decisions (eviction, demotion,
 * pressure) never remove a durable copy: only del and invalidate do.
 * The orchestrator never looks inside a tier: it speaks only through gencache__tier_ops.
 */
#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache.h"
#include "key/key.h"
#include "reuse/reuse.h"

/* Keys are short: XXH3 inlined hashes them in a few dozen instructions, where the library call
 * would go through the runtime dispatch meant for long values. Same function, same hashes as
 * gencache__checksum(). */
#define XXH_INLINE_ALL
#include <xxhash.h>
#include "policy/mrc.h"
#include "tier/crypt.h"

static uint64_t now_ms(const gencache *c)
{
    return c->clock_fn(c->clock_userdata);
}

/* The default clock. Expiry and access times are kept in milliseconds and TTLs are seconds to
 * days, so the kernel's coarse clock (one tick, a few ms, read without a timer access) is exact
 * enough, at a fraction of the cost of the precise one on every get and put. */
static uint64_t clock_coarse_ms(void *userdata)
{
    (void)userdata;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t gencache__cache_now_ms(gencache *cache)
{
    return now_ms(cache);
}

_Atomic(struct gencache__flights *) *gencache__cache_flights_slot(gencache *cache)
{
    return &cache->flights;
}

const gencache_allocator *gencache__cache_allocator(gencache *cache)
{
    return cache->alloc;
}

const gencache__log *gencache__cache_log(gencache *cache)
{
    return &cache->log;
}

int gencache__cache_charge(gencache *cache, int64_t delta_bytes)
{
    if (!cache)
        return GENCACHE_EINVAL;
    return gencache__mem_tier_reserve(cache->tiers[0], delta_bytes);
}

/* ---- layers ---- */

int gencache__cache_layers_sync(gencache *c)
{
    /* Registry layers are only ever added, never removed, so indexes stay stable. */
    for (size_t i = 0; i < c->ks->n_layers; i++) {
        const gencache__layer_recipe *r = &c->ks->layers[i];
        layer *l = &c->layers[i];
        if (i >= c->n_layers) {
            strcpy(l->name, r->name);
            l->name_len = strlen(l->name);
            c->n_layers = (unsigned)i + 1;
        }
        l->scope = r->scope;
        l->ttl_ms = r->ttl_ms;
        l->sliding = r->sliding;
        l->write_through = r->write_through;
        l->shared = r->shared;
        if (c->n_tiers > 0)
            gencache__mem_tier_set_layer_policy(c->tiers[0], (uint32_t)i, r->eviction);
        gencache__mrc_set_layer_policy(c->mrc, (uint32_t)i, r->eviction);
    }
    return GENCACHE_OK;
}

/* The struct of 0.1 ended with write_through: a caller built against it passes that size. */
#define LAYER_OPTIONS_V1_SIZE (offsetof(gencache_layer_options, write_through) + sizeof(int))

int gencache_layer_define(gencache *cache, const gencache_layer_options *opts)
{
    if (!cache || !opts || opts->struct_size < LAYER_OPTIONS_V1_SIZE)
        return GENCACHE_EINVAL;
    gencache_layer_options o;
    gencache_layer_options_init(&o);
    memcpy(&o, opts, opts->struct_size < sizeof o ? opts->struct_size : sizeof o);
    o.struct_size = sizeof o;
    int rc = gencache__registry_define(cache->ks, &o);
    if (rc == GENCACHE_OK && o.prompt_normalization >= 0)
        rc =
            gencache_keyspace_set_mode(cache->ks, NULL, (gencache_norm_mode)o.prompt_normalization);
    if (rc == GENCACHE_OK)
        rc = gencache__cache_layers_sync(cache);
    return rc;
}

int gencache_layer_get(gencache *cache, const char *name, gencache_layer_options *out)
{
    if (!cache || !name || !out)
        return GENCACHE_EINVAL;
    const gencache__layer_recipe *r = gencache__registry_find(cache->ks, name);
    if (!r)
        return GENCACHE_ENOTFOUND;
    size_t size = out->struct_size ? out->struct_size : LAYER_OPTIONS_V1_SIZE;
    if (size < LAYER_OPTIONS_V1_SIZE)
        return GENCACHE_EINVAL;
    gencache_layer_options o;
    gencache__registry_options(r, &o);
    o.struct_size = size < sizeof o ? size : sizeof o;
    memcpy(out, &o, o.struct_size);
    return GENCACHE_OK;
}

size_t gencache_layer_count(gencache *cache)
{
    return cache ? cache->n_layers : 0;
}

const char *gencache_layer_name(gencache *cache, size_t i)
{
    return cache && i < cache->n_layers ? cache->layers[i].name : NULL;
}

int gencache_keyspace_from_cache(gencache *cache, gencache_keyspace **out)
{
    if (!out)
        return GENCACHE_EINVAL;
    *out = NULL;
    if (!cache)
        return GENCACHE_EINVAL;
    *out = gencache__keyspace_retain(cache->ks);
    return GENCACHE_OK;
}

int gencache__cache_key_layer(const gencache *c, const char *key, int *idx)
{
    *idx = -1;
    if (!key)
        return GENCACHE_EINVAL;
    /* The usual case, checked in one pass: a defined layer's name (valid by construction), '/',
     * and the hex digits. */
    size_t len = strlen(key);
    size_t n = len > GENCACHE__KEY_HEX_LEN + 1 ? len - GENCACHE__KEY_HEX_LEN - 1 : 0;
    if (n > 0 && n <= GENCACHE__LAYER_NAME_MAX && key[n] == '/') {
        for (unsigned i = 0; i < c->n_layers; i++) {
            const layer *l = &c->layers[i];
            if (l->name_len == n && memcmp(key, l->name, n) == 0) {
                if (!gencache__key_hex64(key + n + 1))
                    return GENCACHE_EINVAL;
                *idx = (int)i;
                return GENCACHE_OK;
            }
        }
    }
    /* No defined layer: a well-formed key of an unknown one, or a malformed key. */
    const char *name;
    size_t name_len;
    int rc = gencache__key_split(key, &name, &name_len);
    return rc != GENCACHE_OK ? rc : GENCACHE_ENOTFOUND;
}

int gencache_key_check(gencache *cache, const char *key)
{
    if (!cache)
        return GENCACHE_EINVAL;
    int idx;
    return gencache__cache_key_layer(cache, key, &idx);
}

/* ---- eviction and demotion ---- */

/* The write-back queue's writer: puts e into the tiers its targets name. A value that expired
 * while queued is not worth a write. */
static void write_below(void *userdata, gencache__entry *e, unsigned targets)
{
    gencache *c = userdata;
    uint64_t now = now_ms(c);
    if (gencache__entry_expired(e, now))
        return;
    if ((targets & GENCACHE__WB_DISK) && c->disk_tier >= 0 && !atomic_load(&e->durable)) {
        gencache__tier *t = c->tiers[c->disk_tier];
        if (t->ops->put(t, e, now) == GENCACHE_OK)
            atomic_store(&e->durable, true);
        else if (e->tenant)
            gencache__cache_forget_usage(c, e->tenant, e->key, e->hash); /* the value is gone */
    }
    if ((targets & GENCACHE__WB_SHARED) && c->shared_tier >= 0) {
        gencache__tier *t = c->tiers[c->shared_tier];
        t->ops->put(t, e, now);
    }
}

/* The writer's batch: the disk tier's values in one put_many (one durable commit where the tier
 * can), then each shared target with its own put, as write_below does one entry at a time. */
static void write_below_many(void *userdata, gencache__entry *const *es, const unsigned *targets,
                             size_t n)
{
    gencache *c = userdata;
    gencache__tier *disk = c->disk_tier >= 0 ? c->tiers[c->disk_tier] : NULL;
    gencache__entry **todo = gencache__malloc(c->alloc, n * sizeof *todo);
    int *rcs = gencache__malloc(c->alloc, n * sizeof *rcs);
    if (!disk || !disk->ops->put_many || !todo || !rcs) {
        gencache__free(c->alloc, todo);
        gencache__free(c->alloc, rcs);
        for (size_t i = 0; i < n; i++)
            write_below(userdata, es[i], targets[i]);
        return;
    }
    uint64_t now = now_ms(c);
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if ((targets[i] & GENCACHE__WB_DISK) && !gencache__entry_expired(es[i], now) &&
            !atomic_load(&es[i]->durable))
            todo[m++] = es[i];
    /* Marked durable before the write, not after: a later value of the same group may evict an
     * earlier one from disk, and the eviction's callback (on_disk_evict, run inside put_many
     * after the commit) must be the last word on it. */
    for (size_t i = 0; i < m; i++)
        atomic_store(&todo[i]->durable, true);
    if (m)
        disk->ops->put_many(disk, todo, m, now, rcs);
    for (size_t i = 0; i < m; i++) {
        gencache__entry *e = todo[i];
        if (rcs[i] == GENCACHE_OK)
            continue;
        atomic_store(&e->durable, false);
        if (e->tenant)
            gencache__cache_forget_usage(c, e->tenant, e->key, e->hash); /* the value is gone */
    }
    gencache__free(c->alloc, todo);
    gencache__free(c->alloc, rcs);
    for (size_t i = 0; i < n; i++)
        if ((targets[i] & GENCACHE__WB_SHARED) && !gencache__entry_expired(es[i], now))
            write_below(userdata, es[i], GENCACHE__WB_SHARED);
}

int gencache__cache_set_writeback_batch(gencache *c, size_t max_jobs)
{
    if (!c->wb)
        return GENCACHE_OK;
    /* Half the queue's bound at most, so pushers can fill the other half while a batch is
     * written. */
    uint64_t bytes = c->writeback_max_bytes / 2;
    if (bytes > GENCACHE__WB_BATCH_BYTES)
        bytes = GENCACHE__WB_BATCH_BYTES;
    return gencache__writeback_set_batch(c->wb, write_below_many, max_jobs, bytes);
}

/* True when an entry leaving memory must still be written to disk to survive: a write-back
 * layer's value that no persistent tier holds and that is not about to expire. */
bool gencache__cache_needs_disk(const gencache *c, const gencache__entry *e, uint64_t now)
{
    if (!c->wb || c->disk_tier < 0 || e->layer >= c->n_layers ||
        c->layers[e->layer].write_through || atomic_load(&e->durable))
        return false;
    uint64_t exp = atomic_load(&e->expires_ms);
    return exp == 0 || exp > now + 1000;
}

/* Called by the memory tier, outside its locks, for each entry it let go of. Entries that leave
 * for lack of room are remembered as ghosts and demoted: queued for the disk tier when only
 * memory held them. */
static void on_mem_evict(void *userdata, gencache__entry *e, gencache__evict_reason reason)
{
    gencache *c = userdata;
    bool kept = false; /* a local tier still holds the value */
    if (reason == GENCACHE__EVICT_CAPACITY) {
        gencache__ghosts_add(c->ghost, e->hash);
        kept = atomic_load(&e->queued) || atomic_load(&e->durable);
        if (atomic_load(&e->queued))
            gencache__writeback_wait_room(c->wb); /* the push was made under the shard lock */
    }
    if (!kept && e->tenant)
        gencache__cache_forget_usage(c, e->tenant, e->key, e->hash);
    if (!kept)
        gencache__reuse_evicted(c, e->hash);
}

/* Called by the memory tier under a shard lock, for each entry about to leave for lack of room:
 * its write to disk is queued before it leaves the table, so a concurrent get finds it in one
 * place or the other. Does not wait for room (on_mem_evict does, with the lock released). */
static void before_mem_evict(void *userdata, gencache__entry *e)
{
    gencache *c = userdata;
    /* Without a queue nothing is demoted: no clock read per eviction. */
    if (c->wb && gencache__cache_needs_disk(c, e, now_ms(c))) {
        gencache__writeback_push_nowait(c->wb, e, GENCACHE__WB_DISK);
        atomic_store(&e->queued, true);
    }
}

/* Called by the disk tier for each entry it let go of (metadata only). When memory still holds
 * the value, that copy is no longer backed by disk: it will be demoted again when it leaves
 * memory, and it still counts for its tenant. Otherwise the node has lost the value. */
static void on_disk_evict(void *userdata, gencache__entry *e, gencache__evict_reason reason)
{
    gencache *c = userdata;
    if (reason == GENCACHE__EVICT_CAPACITY)
        gencache__ghosts_add(c->ghost, e->hash);
    gencache__tier *mem = c->tiers[0];
    gencache__entry *in_mem = NULL;
    if (reason != GENCACHE__EVICT_EXPIRED &&
        mem->ops->get(mem, e->key, e->hash, now_ms(c), false, &in_mem) == GENCACHE_OK) {
        atomic_store(&in_mem->durable, false);
        gencache__entry_release(in_mem);
        return;
    }
    if (e->tenant)
        gencache__cache_forget_usage(c, e->tenant, e->key, e->hash);
    gencache__reuse_evicted(c, e->hash);
}

/* Called by the shared tier: its evictions only feed the ghost list (it is not this node's). */
static void on_shared_evict(void *userdata, gencache__entry *e, gencache__evict_reason reason)
{
    gencache *c = userdata;
    if (reason == GENCACHE__EVICT_CAPACITY)
        gencache__ghosts_add(c->ghost, e->hash);
}

int gencache__cache_set_ghosts(gencache *cache, uint64_t capacity, unsigned shift)
{
    gencache__ghosts *g = NULL;
    if (capacity) {
        int rc = gencache__ghosts_new(cache->alloc, capacity, shift, &g);
        if (rc != GENCACHE_OK)
            return rc;
    }
    gencache__ghosts_free(cache->ghost);
    cache->ghost = g;
    return GENCACHE_OK;
}

void gencache__cache_forget_usage(gencache *c, const char *tenant, const char *key, uint64_t hash)
{
    if (tenant)
        gencache__tenants_forget(c->tenants, tenant, key, hash);
}

/* ---- open and close ---- */

void gencache_options_init(gencache_options *opts)
{
    memset(opts, 0, sizeof *opts);
    opts->struct_size = sizeof *opts;
    opts->mem_max_bytes = 1ull << 30;
    opts->mem_shards = 16;
    opts->ghost_max_entries = 65536;
    opts->log_level = GENCACHE_LOG_INFO;
    opts->disk_max_bytes = 10ull << 30;
    opts->redis_timeout_ms = 100;
    opts->redis_max_value_bytes = 64ull << 20;
    opts->writeback_max_bytes = 64ull << 20;
    opts->mem_policy = GENCACHE_EVICTION_LRU; /* measured: docs/BENCHMARKS.md, eviction policies */
    opts->mrc_sample_rate = 1.0 / 16;
}

static int add_tier(gencache *c, gencache__tier *t)
{
    if (c->n_tiers == GENCACHE_MAX_TIERS) {
        t->ops->close(t);
        return GENCACHE_ELIMIT;
    }
    unsigned i = c->n_tiers;
    unsigned caps = t->ops->caps;
    t->on_evict = i == 0 ? on_mem_evict : on_shared_evict;
    t->before_evict = i == 0 ? before_mem_evict : NULL;
    t->on_evict_userdata = c;
    if (i > 0 && (caps & GENCACHE__TIER_SHARED) && c->shared_tier < 0) {
        c->shared_tier = (int)i;
    } else if (i > 0 && (caps & GENCACHE__TIER_PERSISTENT) && c->disk_tier < 0) {
        c->disk_tier = (int)i;
        t->on_evict = on_disk_evict;
    }
    c->tiers[c->n_tiers++] = t;
    return GENCACHE_OK;
}

int gencache_open(gencache **out, const gencache_options *user_opts)
{
    if (!out)
        return GENCACHE_EINVAL;
    *out = NULL;
    gencache_options opts;
    gencache_options_init(&opts);
    if (user_opts) {
        /* Callers built against an older, shorter struct get the defaults for the rest. */
        if (user_opts->struct_size < offsetof(gencache_options, data_dir) ||
            user_opts->struct_size > sizeof opts)
            return GENCACHE_EINVAL;
        memcpy(&opts, user_opts, user_opts->struct_size);
    }
    if (opts.allocator && (!opts.allocator->malloc_fn || !opts.allocator->free_fn))
        return GENCACHE_EINVAL;

    gencache *c = gencache__calloc(opts.allocator, 1, sizeof *c);
    if (!c)
        return GENCACHE_ENOMEM;
    c->alloc = opts.allocator;
    c->log.fn = opts.log_fn;
    c->log.userdata = opts.log_userdata;
    c->log.level = opts.log_level;
    c->clock_fn = opts.clock_fn ? opts.clock_fn : clock_coarse_ms;
    c->clock_userdata = opts.clock_userdata;
    c->disk_tier = c->shared_tier = -1;
    c->writeback_max_bytes = opts.writeback_max_bytes ? opts.writeback_max_bytes : 64ull << 20;
    c->pressure_warn_ratio = opts.pressure_warn_ratio > 0 ? opts.pressure_warn_ratio : 0.85;
    c->pressure_ttl_ms = opts.pressure_ttl_ms ? opts.pressure_ttl_ms : 10ull * 60 * 1000;
    pthread_mutex_init(&c->pressure_mu, NULL);
    int rc = gencache__tenants_new(c->alloc, &c->tenants);
    if (rc == GENCACHE_OK)
        rc = gencache_keyspace_new(&c->ks);
    if (rc == GENCACHE_OK) {
        c->ks->cache = c;
        rc = gencache__cache_layers_sync(c);
    }
    if (rc == GENCACHE_OK && opts.ghost_max_entries)
        rc =
            gencache__ghosts_new(c->alloc, opts.ghost_max_entries,
                                 gencache__ghosts_default_shift(opts.ghost_max_entries), &c->ghost);
    if (rc == GENCACHE_OK && opts.n_encryption_keys)
        rc = gencache__crypt_new(c->alloc, &c->log, opts.encryption_keys, opts.n_encryption_keys,
                                 &c->keys);
    gencache__tier *mem = NULL;
    c->verify_mem_reads = opts.verify_mem_reads != 0; /* puts then sum every value at once */
    if (rc == GENCACHE_OK) {
        gencache__mem_options mo = {
            .max_bytes = opts.mem_max_bytes,
            .max_entries = opts.mem_max_entries,
            .max_pinned_bytes =
                opts.mem_max_pinned_bytes ? opts.mem_max_pinned_bytes : opts.mem_max_bytes / 2,
            .shards = opts.mem_shards ? opts.mem_shards : 16,
            .verify_reads = c->verify_mem_reads,
            .policy = opts.mem_policy,
            .alloc = c->alloc,
            .log = &c->log,
        };
        rc = gencache__mem_tier_open(&mo, &mem);
    }
    if (rc == GENCACHE_OK)
        rc = add_tier(c, mem);
    if (rc == GENCACHE_OK && !(opts.mrc_sample_rate >= 0 && opts.mrc_sample_rate <= 1))
        rc = GENCACHE_EINVAL;
    if (rc == GENCACHE_OK && opts.mrc_sample_rate > 0 && opts.mem_max_bytes) {
        gencache__mrc_options mo = {
            .rate = opts.mrc_sample_rate,
            .max_bytes = opts.mem_max_bytes,
            .max_entries = opts.mem_max_entries,
            .policy = opts.mem_policy,
            .alloc = c->alloc,
        };
        rc = gencache__mrc_new(&mo, &c->mrc);
    }
    if (rc == GENCACHE_OK)
        rc = gencache__cache_layers_sync(c); /* the layers' own eviction policies */
    if (rc == GENCACHE_OK && opts.data_dir) {
        gencache__disk_options dopts = {
            .path = opts.data_dir,
            .max_bytes = opts.disk_max_bytes,
            .max_entries = opts.disk_max_entries,
            .alloc = c->alloc,
            .log = &c->log,
            .keys = c->keys,
        };
        gencache__tier *disk = NULL;
        rc = gencache__disk_tier_open(&dopts, &disk);
        if (rc == GENCACHE_OK)
            rc = add_tier(c, disk);
    }
    if (rc == GENCACHE_OK && opts.redis_url) {
        gencache__redis_options ropts = {
            .url = opts.redis_url,
            .timeout_ms = opts.redis_timeout_ms,
            .max_value_bytes = opts.redis_max_value_bytes,
            .alloc = c->alloc,
            .log = &c->log,
            .bloom_fp_rate = opts.redis_bloom_fp_rate,
            .bloom_capacity = opts.redis_bloom_capacity,
            .keys = c->keys,
        };
        gencache__tier *redis = NULL;
        rc = gencache__redis_tier_open(&ropts, &redis);
        if (rc == GENCACHE_OK)
            rc = add_tier(c, redis);
    }
    if (rc == GENCACHE_OK && c->n_tiers > 1)
        rc = gencache__writeback_open(c->alloc, c->writeback_max_bytes, write_below, c, &c->wb);
    if (rc == GENCACHE_OK && c->wb)
        rc = gencache__cache_set_writeback_batch(c, GENCACHE__WB_BATCH_JOBS);
    if (rc == GENCACHE_OK)
        rc = gencache__reuse_open(c, c->disk_tier >= 0 ? opts.data_dir : NULL);
    if (rc == GENCACHE_OK)
        rc = gencache__cache_coherence_start(c);
    if (rc != GENCACHE_OK) {
        gencache_close(c);
        return rc;
    }
    *out = c;
    return GENCACHE_OK;
}

void gencache_close(gencache *cache)
{
    if (!cache)
        return;
    gencache__cache_coherence_stop(cache);
    gencache__coalesce_close(cache);
    if (cache->wb) {
        /* Everything only memory holds of a write-back layer goes to disk before the tiers
         * close: a clean shutdown loses no value a restart could serve. */
        gencache_flush(cache, NULL);
        gencache__writeback_close(cache->wb);
    }
    for (unsigned i = cache->n_tiers; i-- > 0;)
        cache->tiers[i]->ops->close(cache->tiers[i]);
    gencache__reuse_close(cache);
    gencache__ghosts_free(cache->ghost);
    gencache__mrc_free(cache->mrc);
    gencache__crypt_free(cache->keys); /* after the tiers, which borrow it */
    gencache__tenants_free(cache->tenants);
    for (size_t i = 0; i < cache->n_preferred; i++)
        gencache__free(cache->alloc, cache->preferred[i]);
    gencache__free(cache->alloc, cache->preferred);
    pthread_mutex_destroy(&cache->pressure_mu);
    if (cache->ks)
        cache->ks->cache = NULL; /* the keyspace may outlive the cache (requests hold it) */
    gencache_keyspace_free(cache->ks);
    gencache__free(cache->alloc, cache);
}

/* ---- put ---- */

void gencache_meta_init(gencache_meta *meta)
{
    memset(meta, 0, sizeof *meta);
    meta->struct_size = sizeof *meta;
}

/* A tensor's byte size must be its element count times its element size. */
static int check_tensor(const gencache_meta *m, size_t size)
{
    if (m->dtype == GENCACHE_DTYPE_NONE)
        return m->ndim == 0 ? GENCACHE_OK : GENCACHE_EINVAL;
    size_t esize = gencache_dtype_size(m->dtype);
    if (esize == 0 || m->ndim > GENCACHE_MAX_DIMS)
        return GENCACHE_EINVAL;
    uint64_t count = 1;
    for (uint32_t i = 0; i < m->ndim; i++) {
        if (m->shape[i] < 0)
            return GENCACHE_EINVAL;
        uint64_t d = (uint64_t)m->shape[i];
        if (d != 0 && count > UINT64_MAX / d)
            return GENCACHE_EINVAL;
        count *= d;
    }
    if (count > UINT64_MAX / esize || count * esize != size)
        return GENCACHE_EINVAL;
    return GENCACHE_OK;
}

int gencache_preferred_add(gencache *cache, const char *pattern)
{
    if (!cache || !pattern || !*pattern)
        return GENCACHE_EINVAL;
    char **grown = gencache__malloc(cache->alloc, (cache->n_preferred + 1) * sizeof *grown);
    char *copy = gencache__strdup(cache->alloc, pattern);
    if (!grown || !copy) {
        gencache__free(cache->alloc, grown);
        gencache__free(cache->alloc, copy);
        return GENCACHE_ENOMEM;
    }
    if (cache->n_preferred)
        memcpy(grown, cache->preferred, cache->n_preferred * sizeof *grown);
    grown[cache->n_preferred++] = copy;
    gencache__free(cache->alloc, cache->preferred);
    cache->preferred = grown;
    return GENCACHE_OK;
}

int gencache__meta_copy(const gencache_meta *meta, gencache_meta *out)
{
    if (meta && meta->struct_size < sizeof *meta)
        return GENCACHE_EINVAL;
    if (meta)
        *out = *meta;
    else
        gencache_meta_init(out);
    return GENCACHE_OK;
}

bool gencache__cache_preferred(const gencache *c, const char *key)
{
    for (size_t i = 0; i < c->n_preferred; i++)
        if (fnmatch(c->preferred[i], key, 0) == 0)
            return true;
    return false;
}

int gencache_put(gencache *cache, const char *key, const void *data, size_t size,
                 const gencache_meta *meta)
{
    if (cache && key && cache->n_preferred && gencache__cache_preferred(cache, key)) {
        gencache_meta m;
        if (gencache__meta_copy(meta, &m) != GENCACHE_OK)
            return GENCACHE_EINVAL;
        m.pinned = 1;
        return gencache__cache_put(cache, key, data, size, &m, NULL, false);
    }
    return gencache__cache_put(cache, key, data, size, meta, NULL, false);
}

/* The tenant whose usage a put counts: the caller, or for the owner's puts the meta's tenant
 * (created on first sight, so usage is exact for every tenant; NULL when the registry is full). */
static gencache__tenant *usage_tenant(gencache *c, const gencache_meta *meta,
                                      gencache__tenant *charge)
{
    if (charge || !meta || !meta->tenant || !*meta->tenant)
        return charge;
    gencache__tenant *t = NULL;
    gencache__tenant_obtain(c->tenants, meta->tenant, &t);
    return t;
}

int gencache__cache_put(gencache *cache, const char *key, const void *data, size_t size,
                        const gencache_meta *meta, gencache__tenant *charge, bool enforce)
{
    if (!cache || !key || (!data && size))
        return GENCACHE_EINVAL;
    if (meta && (meta->struct_size < sizeof *meta || check_tensor(meta, size) != GENCACHE_OK))
        return GENCACHE_EINVAL;
    int idx;
    int rc = gencache__cache_key_layer(cache, key, &idx);
    if (rc != GENCACHE_OK)
        return rc;
    layer *l = &cache->layers[idx];
    uint64_t now = now_ms(cache);
    gencache__tenant *owner = usage_tenant(cache, meta, charge);
    uint64_t ttl = meta && meta->ttl_ms ? meta->ttl_ms : l->ttl_ms;
    if (atomic_load_explicit(&cache->pressure_level, memory_order_relaxed) >= 2 &&
        !(owner && gencache__tenant_priority(owner) == GENCACHE_PRIORITY_HIGH) &&
        (ttl == 0 || ttl > cache->pressure_ttl_ms))
        ttl = cache->pressure_ttl_ms; /* degraded: shorter lives for all but high priority */
    gencache__entry_spec spec = {
        .key = key,
        .layer = (uint32_t)idx,
        .meta = meta,
        .size = size,
        .now_ms = now,
        .ttl_ms = ttl,
        .sliding = l->sliding,
        .hash = XXH3_64bits(key, l->name_len + 1 + GENCACHE__KEY_HEX_LEN),
        .key_len = l->name_len + 1 + GENCACHE__KEY_HEX_LEN,
        .data = data,
    };
    gencache__entry *e;
    rc = gencache__entry_new(cache->alloc, &spec, &e);
    if (rc != GENCACHE_OK)
        return rc;
    /* The checksum is needed at once only when this very put writes the value below memory (a
     * write-through layer over a disk or Redis tier) or memory verifies its hits; then it is
     * taken over the caller's bytes, which the caller has usually just touched, rather than over
     * the copy. Any other value is summed at its first need, from its stored bytes, which never
     * change (an ETag, a demotion or a shared write by the write-back thread, a verification:
     * all read it through gencache__entry_checksum()), and many values are never asked.
     * gencache__entry_new() has copied the value (entry.c says how). The caller's bytes must not
     * change during the call. */
    if ((l->write_through && cache->n_tiers > 1) || cache->verify_mem_reads)
        atomic_store_explicit(&e->checksum, gencache__checksum(data, size), memory_order_relaxed);
    else
        atomic_store_explicit(&e->sum_lazy, true, memory_order_relaxed);

    /* Counted before it is stored, so an eviction that follows at once is counted off after. */
    uint64_t old_size = UINT64_MAX;
    if (owner) {
        rc = gencache__tenant_charge(owner, key, e->hash, size, enforce, &old_size);
        if (rc != GENCACHE_OK) {
            gencache__entry_release(e);
            return rc;
        }
    }
    /* An older value of this key still queued for a lower tier must not land after this one. */
    if (cache->wb)
        gencache__writeback_forget(cache->wb, key, e->hash);
    rc = cache->tiers[0]->ops->put(cache->tiers[0], e, now);
    bool stored = rc == GENCACHE_OK;
    if (stored)
        gencache__mrc_put(cache->mrc, e, now);
    if (l->write_through || (!stored && (rc == GENCACHE_ETOOBIG || rc == GENCACHE_EFULL))) {
        for (unsigned i = 1; i < cache->n_tiers; i++) {
            if ((int)i == cache->shared_tier && !l->shared)
                continue;
            int trc = cache->tiers[i]->ops->put(cache->tiers[i], e, now);
            if (trc != GENCACHE_OK && (int)i == cache->disk_tier && l->write_through) {
                /* A write-through put promises durability: when the disk refuses (full, I/O
                 * error) the put fails, and no copy elsewhere may claim otherwise. */
                if (stored)
                    cache->tiers[0]->ops->del(cache->tiers[0], key, e->hash);
                stored = false;
                rc = trc;
                break;
            }
            if (trc != GENCACHE_OK)
                continue;
            stored = true;
            if ((int)i == cache->disk_tier)
                atomic_store(&e->durable, true);
        }
    } else if (stored && l->shared && cache->shared_tier >= 0) {
        /* A write-back layer's value reaches the other nodes without making this put wait. */
        gencache__writeback_push(cache->wb, e, GENCACHE__WB_SHARED);
    }
    if (!stored && owner)
        gencache__tenant_uncharge(owner, key, e->hash, old_size);
    gencache__entry_release(e);
    if (!stored)
        return rc;
    atomic_fetch_add_explicit(&l->puts, 1, memory_order_relaxed);
    if (charge)
        gencache__tenant_count(charge, (uint32_t)idx, GENCACHE__TENANT_PUT, 0);
    return GENCACHE_OK;
}

/* ---- get ---- */

/* The tier an entry was found in, below memory's table; -1 when none. The write-back queue
 * counts as memory (its entries left the table, not the process): 0 with *queued set. */
static int find_below(gencache *c, const char *key, uint64_t hash, uint64_t now, bool touch,
                      gencache__entry **e, bool *queued)
{
    if (c->wb && (*e = gencache__writeback_find(c->wb, key, hash)) != NULL) {
        *queued = true;
        return 0;
    }
    for (unsigned i = 1; i < c->n_tiers; i++) {
        gencache__tier *t = c->tiers[i];
        if (t->ops->get(t, key, hash, now, touch, e) == GENCACHE_OK)
            return (int)i;
    }
    return -1;
}

/* The rare part of a lookup: a miss, or a hit below memory's table. */
static int lookup_below(gencache *c, const char *key, uint64_t hash, int idx,
                        const gencache__call *call, uint64_t now, bool touch, gencache__entry **out)
{
    gencache__tenant *tenant = call ? call->tenant : NULL;
    layer *l = &c->layers[idx];
    bool queued = false;
    gencache__entry *e = NULL;
    int found = find_below(c, key, hash, now, touch, &e, &queued);
    if (touch)
        gencache__mrc_get(c->mrc, hash, now, found >= 0 ? e : NULL);
    if (found < 0) {
        if (touch) {
            atomic_fetch_add_explicit(&l->misses, 1, memory_order_relaxed);
            uint64_t ghost = gencache__ghosts_hit(c->ghost, hash);
            if (ghost)
                atomic_fetch_add_explicit(&l->ghost_hits, ghost, memory_order_relaxed);
            if (tenant)
                gencache__tenant_count(tenant, (uint32_t)idx, GENCACHE__TENANT_MISS, 0);
        }
        return found;
    }
    if (found > 0) {
        /* A lower tier built this entry; nobody else sees it yet, so it can be completed. */
        e->layer = (uint32_t)idx;
        e->sliding = l->sliding;
        if (found == c->disk_tier)
            atomic_store(&e->durable, true);
    }
    if (touch) {
        /* Promotion is part of a get only: a probe must not push hot entries out of memory. An
         * entry from the write-back queue goes back into memory too (it stays queued). */
        int promote_to = queued ? 1 : found;
        if (found > 0 && found == c->shared_tier && e->tenant) {
            /* Written by another node: from now on this node holds it too. */
            gencache__tenant *owner = NULL;
            uint64_t old;
            if (gencache__tenant_obtain(c->tenants, e->tenant, &owner) == GENCACHE_OK)
                gencache__tenant_charge(owner, key, hash, e->size, false, &old);
        }
        for (int i = 0; i < promote_to; i++)
            c->tiers[i]->ops->put(c->tiers[i], e, now);
        if (promote_to > 0)
            gencache__mrc_put(c->mrc, e, now);
    }
    *out = e;
    return found;
}

/* touch: a get (counts, refreshes, promotes); !touch: a peek, which changes nothing. */
int gencache__cache_lookup(gencache *c, const char *key, int idx, const char *shown_key,
                           const gencache__call *call, bool touch, gencache_handle **out)
{
    if (!out)
        return GENCACHE_EINVAL;
    *out = NULL;
    if (!c || !key)
        return GENCACHE_EINVAL;
    if (idx < 0) {
        int rc = gencache__cache_key_layer(c, key, &idx);
        if (rc != GENCACHE_OK)
            return rc; /* an unknown layer holds nothing: a miss */
    }
    layer *l = &c->layers[idx];
    uint64_t now = now_ms(c);
    /* Every stored key is "<layer>/<64 hex>". */
    size_t key_len = l->name_len + 1 + GENCACHE__KEY_HEX_LEN;
    uint64_t hash = XXH3_64bits(key, key_len);
    gencache__entry *e = NULL;
    int found = 0;
    bool in_table =
        gencache__mem_tier_get(c->tiers[0], key, key_len, hash, now, touch, &e) == GENCACHE_OK;
    if (in_table) {
        if (touch)
            gencache__mrc_get(c->mrc, hash, now, e);
    } else if ((found = lookup_below(c, key, hash, idx, call, now, touch, &e)) < 0) {
        return GENCACHE_ENOTFOUND;
    }
    if (touch) {
        /* Lookups are hits plus misses, and memory's hits are the layers' hits less those of the
         * tiers below (src/cache_admin.c adds them up): two shared counters fewer per hit. The
         * memory tier counted a hit in its table under its shard lock; the layer's counter
         * takes the others (the write-back queue's and the tiers' below). */
        uint64_t credit = call && call->cost_ms ? call->cost_ms : e->cost_ms;
        if (!in_table)
            atomic_fetch_add_explicit(&l->hits, 1, memory_order_relaxed);
        if (credit)
            atomic_fetch_add_explicit(&l->cost_ms_saved, credit, memory_order_relaxed);
        if (found > 0) /* after the layer's hit: see gencache_stats_get() */
            atomic_fetch_add_explicit(&c->tier_hits[found], 1, memory_order_relaxed);
        if (call && call->tenant)
            gencache__tenant_count(call->tenant, (uint32_t)idx, GENCACHE__TENANT_HIT, credit);
    }
    int rc = gencache__handle_new(e, c->tiers[found]->ops->name, shown_key, out);
    if (rc != GENCACHE_OK)
        gencache__entry_release(e);
    return rc;
}

int gencache_get(gencache *cache, const char *key, gencache_handle **out)
{
    return gencache__cache_lookup(cache, key, -1, NULL, NULL, true, out);
}

int gencache_peek(gencache *cache, const char *key, gencache_handle **out)
{
    return gencache__cache_lookup(cache, key, -1, NULL, NULL, false, out);
}

/* ---- delete and invalidate ---- */

int gencache_del(gencache *cache, const char *key)
{
    if (!cache || !key)
        return GENCACHE_EINVAL;
    int idx;
    int rc = gencache__cache_key_layer(cache, key, &idx);
    if (rc != GENCACHE_OK)
        return rc;
    uint64_t hash = gencache__checksum(key, strlen(key));
    bool removed = false;
    if (cache->wb && gencache__writeback_forget(cache->wb, key, hash))
        removed = true;
    for (unsigned i = 0; i < cache->n_tiers; i++) {
        if (cache->tiers[i]->ops->del(cache->tiers[i], key, hash) == GENCACHE_OK)
            removed = true;
        /* Memory (tiers[0]) may have evicted the entry into the queue between the withdrawal
         * above and its removal here: withdraw again, now that memory cannot push it, before
         * the tiers below are asked. */
        if (i == 0 && cache->wb && gencache__writeback_forget(cache->wb, key, hash))
            removed = true;
    }
    gencache_filter f = {.struct_size = sizeof f, .key = key};
    gencache__cache_publish(cache, &f, 0); /* other nodes may hold local copies */
    if (!removed)
        return GENCACHE_ENOTFOUND;
    gencache__tenants_forget_key(cache->tenants, key, hash);
    gencache__reuse_forget(cache, hash);
    atomic_fetch_add(&cache->invalidated, 1);
    return GENCACHE_OK;
}
