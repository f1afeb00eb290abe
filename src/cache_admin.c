/*
 * cache_admin.c: the operations over many entries at once: invalidation (removes from every
 * tier), demotion (out of memory only), flush (what only memory holds goes to disk), expiry, and
 * the statistics and pressure report. Invalidation withdraws matching writes from the write-back
 * queue before it sweeps the tiers, so nothing it removed comes back.
 */
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "reuse/reuse.h"
#include "policy/mrc.h"

void gencache_filter_init(gencache_filter *filter)
{
    memset(filter, 0, sizeof *filter);
    filter->struct_size = sizeof *filter;
}

typedef struct match_state {
    const gencache_filter *f;
    uint64_t created_before; /* entries created before this ms match; 0: any */
    /* Hashes of the keys removed, to count an entry held by several tiers once. */
    uint64_t *hashes;
    size_t n, cap;
    const gencache_allocator *alloc;
    gencache *cache;
    bool oom;
} match_state;

static bool str_eq(const char *entry_value, const char *wanted)
{
    return entry_value && strcmp(entry_value, wanted) == 0;
}

/* True when e matches the filter; no side effect. */
static bool filter_accepts(void *ud, const gencache__entry *e)
{
    const match_state *st = ud;
    const gencache_filter *f = st->f;
    if (f->key && strcmp(e->key, f->key) != 0)
        return false;
    if (f->layer && strcmp(e->layer_name, f->layer) != 0)
        return false;
    if (f->tenant && !str_eq(e->tenant, f->tenant))
        return false;
    if (f->model && !str_eq(e->model, f->model))
        return false;
    if (f->tag && !gencache__entry_has_tag(e, f->tag))
        return false;
    return !st->created_before || e->created_ms < st->created_before;
}

/* filter_accepts(), recording the hash of each match so it is counted once over the tiers. */
static bool filter_match(void *ud, const gencache__entry *e)
{
    match_state *st = ud;
    if (!filter_accepts(st, e))
        return false;
    gencache__cache_forget_usage(st->cache, e->tenant, e->key, e->hash);
    gencache__reuse_forget(st->cache, e->hash);
    if (st->n == st->cap) {
        size_t ncap = st->cap ? st->cap * 2 : 64;
        uint64_t *nh = gencache__malloc(st->alloc, ncap * sizeof *nh);
        if (!nh) {
            st->oom = true; /* still removed; only the count may be high */
            return true;
        }
        if (st->n)
            memcpy(nh, st->hashes, st->n * sizeof *nh);
        gencache__free(st->alloc, st->hashes);
        st->hashes = nh;
        st->cap = ncap;
    }
    st->hashes[st->n++] = e->hash;
    return true;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Checks a filter and prepares the state that matches entries against it. */
static int match_begin(gencache *cache, const gencache_filter *filter, match_state *st)
{
    if (!cache || !filter || filter->struct_size < sizeof *filter)
        return GENCACHE_EINVAL;
    if (!filter->key && !filter->layer && !filter->tenant && !filter->tag && !filter->model &&
        !filter->older_than_ms)
        return GENCACHE_EINVAL;
    *st = (match_state){.f = filter, .alloc = cache->alloc, .cache = cache};
    if (filter->older_than_ms) {
        uint64_t now = gencache__cache_now_ms(cache);
        st->created_before = now > filter->older_than_ms ? now - filter->older_than_ms : 1;
    }
    return GENCACHE_OK;
}

int gencache_invalidate(gencache *cache, const gencache_filter *filter, uint64_t *count)
{
    if (count)
        *count = 0;
    match_state st;
    int rc = match_begin(cache, filter, &st);
    if (rc != GENCACHE_OK)
        return rc;
    if (cache->wb)
        gencache__writeback_forget_if(cache->wb, filter_match, &st);
    uint64_t removed_total = 0;
    for (unsigned i = 0; i < cache->n_tiers; i++) {
        uint64_t n = 0;
        cache->tiers[i]->ops->remove_if(cache->tiers[i], filter_match, &st, &n);
        removed_total += n;
        /* Memory may have evicted a matching entry into the write-back queue after the first
         * withdrawal: withdraw again before the tiers below are swept, or its write would land
         * behind the sweep and bring it back (as in gencache_del()). */
        if (i == 0 && cache->wb)
            gencache__writeback_forget_if(cache->wb, filter_match, &st);
    }
    uint64_t unique = 0;
    if (st.oom) {
        unique = removed_total;
    } else if (st.n) {
        qsort(st.hashes, st.n, sizeof *st.hashes, cmp_u64);
        for (size_t i = 0; i < st.n; i++)
            if (i == 0 || st.hashes[i] != st.hashes[i - 1])
                unique++;
    }
    gencache__free(cache->alloc, st.hashes);
    gencache__cache_publish(cache, filter, st.created_before);
    atomic_fetch_add(&cache->invalidated, unique);
    if (count)
        *count = unique;
    return GENCACHE_OK;
}

int gencache_demote(gencache *cache, const gencache_filter *filter, uint64_t *count)
{
    if (count)
        *count = 0;
    match_state st;
    int rc = match_begin(cache, filter, &st);
    if (rc != GENCACHE_OK)
        return rc;
    return gencache__mem_tier_evict_if(cache->tiers[0], filter_accepts, &st, count);
}

typedef struct flush_state {
    gencache *c;
    uint64_t now;
    gencache__entry **list;
    size_t n, cap;
    bool oom;
} flush_state;

/* Notes each memory entry that a flush must write (called under a shard lock: no I/O here). */
static void flush_collect(void *ud, gencache__entry *e)
{
    flush_state *st = ud;
    if (!gencache__cache_needs_disk(st->c, e, st->now) ||
        st->c->layers[e->layer].scope == GENCACHE_SCOPE_SESSION)
        return;
    if (st->n == st->cap) {
        size_t ncap = st->cap ? 2 * st->cap : 256;
        gencache__entry **nl = gencache__malloc(st->c->alloc, ncap * sizeof *nl);
        if (!nl) {
            st->oom = true;
            return;
        }
        if (st->n)
            memcpy(nl, st->list, st->n * sizeof *nl);
        gencache__free(st->c->alloc, st->list);
        st->list = nl;
        st->cap = ncap;
    }
    st->list[st->n++] = gencache__entry_retain(e);
}

int gencache_flush(gencache *cache, uint64_t *count)
{
    if (count)
        *count = 0;
    if (!cache)
        return GENCACHE_EINVAL;
    if (!cache->wb)
        return GENCACHE_OK;
    flush_state st = {.c = cache, .now = gencache__cache_now_ms(cache)};
    gencache__tier *mem = cache->tiers[0];
    if (cache->disk_tier >= 0 && mem->ops->each)
        mem->ops->each(mem, flush_collect, &st);
    for (size_t i = 0; i < st.n; i++) {
        gencache__writeback_push(cache->wb, st.list[i], GENCACHE__WB_DISK);
        gencache__entry_release(st.list[i]);
    }
    gencache__free(cache->alloc, st.list);
    gencache__writeback_drain(cache->wb);
    gencache_reuse_save(cache);
    if (st.oom)
        gencache__log_msg(&cache->log, GENCACHE_LOG_ERROR,
                          "flush: out of memory listing entries; %zu of them written", st.n);
    if (count)
        *count = st.n;
    return st.oom ? GENCACHE_ENOMEM : GENCACHE_OK;
}

int gencache_pressure_get(gencache *cache, gencache_pressure *out)
{
    if (!cache || !out || out->struct_size < sizeof *out)
        return GENCACHE_EINVAL;
    memset(out, 0, sizeof *out);
    out->struct_size = sizeof *out;
    gencache_tier_stats ts;
    cache->tiers[0]->ops->stats(cache->tiers[0], &ts);
    if (ts.max_bytes)
        out->mem_ratio = (double)ts.bytes / (double)ts.max_bytes;
    if (cache->disk_tier >= 0) {
        gencache__tier *d = cache->tiers[cache->disk_tier];
        d->ops->stats(d, &ts);
        if (ts.max_bytes)
            out->disk_ratio = (double)ts.bytes / (double)ts.max_bytes;
    }
    if (cache->wb) {
        gencache__writeback_stats ws;
        gencache__writeback_get_stats(cache->wb, &ws);
        out->writeback_bytes = ws.queued_bytes;
        out->writeback_stalls = ws.stalls;
        out->writeback_max_bytes = cache->writeback_max_bytes;
    }
    out->degraded =
        out->disk_ratio > 0.95 ||
        (out->writeback_max_bytes && out->writeback_bytes * 4 >= out->writeback_max_bytes * 3);
    out->level = atomic_load(&cache->pressure_level);
    out->batch_demoted = atomic_load(&cache->batch_demoted);
    return GENCACHE_OK;
}

/* Entries of batch-priority tenants: what leaves memory first under pressure. */
static bool batch_entry(void *ud, const gencache__entry *e)
{
    gencache *c = ud;
    gencache__tenant *t = e->tenant ? gencache__tenant_find(c->tenants, e->tenant) : NULL;
    return t && gencache__tenant_priority(t) == GENCACHE_PRIORITY_BATCH;
}

#define PRESSURE_HYSTERESIS 0.05

int gencache_pressure_relieve(gencache *cache, gencache_pressure *out)
{
    if (!cache || (out && out->struct_size < sizeof *out))
        return GENCACHE_EINVAL;
    gencache_pressure p = {.struct_size = sizeof p};
    pthread_mutex_lock(&cache->pressure_mu);
    gencache_pressure_get(cache, &p);
    unsigned level = atomic_load(&cache->pressure_level), next = level;
    if (p.mem_ratio >= cache->pressure_warn_ratio) {
        uint64_t n = 0;
        gencache__mem_tier_evict_if(cache->tiers[0], batch_entry, cache, &n);
        atomic_fetch_add(&cache->batch_demoted, n);
        if (next == 0)
            next = 1;
    } else if (p.mem_ratio < cache->pressure_warn_ratio - PRESSURE_HYSTERESIS) {
        next = 0;
    }
    if (p.degraded)
        next = 2;
    else if (next == 2)
        next = p.mem_ratio >= cache->pressure_warn_ratio ? 1 : 0;
    atomic_store(&cache->pressure_level, next);
    pthread_mutex_unlock(&cache->pressure_mu);
    if (out)
        gencache_pressure_get(cache, out);
    return GENCACHE_OK;
}

int gencache_maintain(gencache *cache, uint64_t *count)
{
    if (count)
        *count = 0;
    if (!cache)
        return GENCACHE_EINVAL;
    uint64_t now = gencache__cache_now_ms(cache), total = 0;
    for (unsigned i = 0; i < cache->n_tiers; i++) {
        gencache__tier *t = cache->tiers[i];
        uint64_t n = 0;
        if (t->ops->expire && t->ops->expire(t, now, &n) == GENCACHE_OK)
            total += n;
    }
    if (count)
        *count = total;
    return GENCACHE_OK;
}

/* ---- statistics ---- */

int gencache_stats_get(gencache *cache, gencache_stats *out)
{
    if (!cache || !out || out->struct_size < sizeof *out)
        return GENCACHE_EINVAL;
    memset(out, 0, sizeof *out);
    out->struct_size = sizeof *out;
    out->n_layers = cache->n_layers;
    /* The tiers below first: a lower tier's hit is counted after its layer's, so memory's share
     * (the rest) never comes out negative. */
    uint64_t below = 0, hits = 0;
    for (unsigned i = 1; i < cache->n_tiers; i++)
        below += atomic_load(&cache->tier_hits[i]);
    for (unsigned i = 0; i < cache->n_layers; i++) {
        layer *l = &cache->layers[i];
        gencache_layer_stats *s = &out->layers[i];
        s->layer = l->name;
        s->hits = atomic_load(&l->hits); /* found below memory, then memory's own */
        if (cache->n_tiers > 0)
            s->hits += gencache__mem_tier_layer_hits(cache->tiers[0], i);
        s->misses = atomic_load(&l->misses);
        s->lookups = s->hits + s->misses;
        hits += s->hits;
        s->ghost_hits = atomic_load(&l->ghost_hits);
        s->puts = atomic_load(&l->puts);
        s->cost_ms_saved = atomic_load(&l->cost_ms_saved);
    }
    out->n_tiers = cache->n_tiers;
    for (unsigned i = 0; i < cache->n_tiers; i++) {
        cache->tiers[i]->ops->stats(cache->tiers[i], &out->tiers[i]);
        out->tiers[i].hits = i == 0 ? 0 : atomic_load(&cache->tier_hits[i]);
    }
    if (cache->n_tiers > 0)
        out->tiers[0].hits = hits > below ? hits - below : 0;
    out->invalidated = atomic_load(&cache->invalidated);
    return GENCACHE_OK;
}

int gencache_mrc_get(gencache *cache, gencache_mrc *out)
{
    if (!cache || !out || out->struct_size < sizeof *out)
        return GENCACHE_EINVAL;
    memset(out, 0, sizeof *out);
    out->struct_size = sizeof *out;
    if (!cache->mrc)
        return GENCACHE_OK;
    out->sample_rate = gencache__mrc_rate(cache->mrc);
    out->n_points = GENCACHE_MRC_POINTS;
    gencache__mrc_points(cache->mrc, out->points);
    return GENCACHE_OK;
}

/* ---- coherence with the other nodes of the shared tier ---- */

/* Another node deleted or invalidated: drop what this node holds of it outside the shared tier
 * (which the publisher already swept), queued writes included, so none of it is served again
 * or written back. */
static void drop_local(void *ud, const gencache_filter *f, uint64_t created_before_ms)
{
    gencache *cache = ud;
    if (f->key && !f->layer && !f->tenant && !f->tag && !f->model && !created_before_ms) {
        uint64_t hash = gencache__checksum(f->key, strlen(f->key));
        if (cache->wb)
            gencache__writeback_forget(cache->wb, f->key, hash);
        /* Lowest tier first: a get racing with this finds the copies gone from below before
         * it could promote one into memory. The subscriber applies the drop again shortly. */
        for (unsigned i = cache->n_tiers; i-- > 0;)
            if ((int)i != cache->shared_tier)
                cache->tiers[i]->ops->del(cache->tiers[i], f->key, hash);
        gencache__tenants_forget_key(cache->tenants, f->key, hash);
        gencache__reuse_forget(cache, hash);
        return;
    }
    match_state st = {
        .f = f, .created_before = created_before_ms, .alloc = cache->alloc, .cache = cache};
    if (cache->wb)
        gencache__writeback_forget_if(cache->wb, filter_match, &st);
    for (unsigned i = 0; i < cache->n_tiers; i++) {
        uint64_t n = 0;
        if ((int)i != cache->shared_tier)
            cache->tiers[i]->ops->remove_if(cache->tiers[i], filter_match, &st, &n);
    }
    gencache__free(cache->alloc, st.hashes);
}

/* Entries of layers that reach the shared tier (what other nodes may have invalidated). */
static bool shared_layer_entry(void *ud, const gencache__entry *e)
{
    gencache *cache = ud;
    for (unsigned i = 0; i < cache->n_layers; i++) {
        if (strcmp(cache->layers[i].name, e->layer_name) == 0) {
            if (!cache->layers[i].shared)
                return false;
            gencache__cache_forget_usage(cache, e->tenant, e->key, e->hash);
            return true;
        }
    }
    return false;
}

/* The subscriber was away and may have missed invalidations: drop every local copy of a shared
 * entry; the next get reads the shared tier, which holds only what survived them. */
static void resync_local(void *ud)
{
    gencache *cache = ud;
    for (unsigned i = 0; i < cache->n_tiers; i++) {
        uint64_t n = 0;
        if ((int)i != cache->shared_tier)
            cache->tiers[i]->ops->remove_if(cache->tiers[i], shared_layer_entry, cache, &n);
    }
}

int gencache__cache_coherence_start(gencache *c)
{
    if (c->shared_tier < 0)
        return GENCACHE_OK;
    gencache__redis_coherence_cb cb = {.invalidate = drop_local,
                                       .resync = resync_local,
                                       .userdata = c,
                                       .reuse_heard = gencache__reuse_heard,
                                       .subscribed = gencache__reuse_subscribed};
    int rc = gencache__reuse_share_start(c);
    if (rc != GENCACHE_OK)
        return rc;
    return gencache__redis_coherence_start(c->tiers[c->shared_tier], &cb, &c->coherence);
}

void gencache__cache_coherence_stop(gencache *c)
{
    gencache__redis_coherence_stop(c->coherence);
    c->coherence = NULL;
    gencache__reuse_share_stop(c);
}

void gencache__cache_publish(gencache *c, const gencache_filter *f, uint64_t created_before_ms)
{
    if (c->shared_tier >= 0)
        gencache__redis_publish_invalidation(c->tiers[c->shared_tier], f, created_before_ms);
}

gencache__tier *gencache__cache_shared_for(gencache *c, const char *key)
{
    int idx;
    if (c->shared_tier < 0 || gencache__cache_key_layer(c, key, &idx) != GENCACHE_OK ||
        !c->layers[idx].shared)
        return NULL;
    return c->tiers[c->shared_tier];
}
