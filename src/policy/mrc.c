/*
 * mrc.c: the miss-ratio curve of the memory tier, what hit ratio and compute savings a tier of
 * other sizes would have had, from spatially sampled keys (SHARDS). A key is sampled when bits
 * of its hash fall below a threshold, so every access to a sampled key is seen and none to the
 * others: the sampled keys behave like the whole population at the sampling rate. For each scale
 * a miniature memory tier (the real one: same code, same policies) of rate * scale * the tier's
 * size replays the sampled accesses with metadata-only entries charged their real size. Memory is
 * bounded by the sampled share of the largest scale's entries.
 */
#include <math.h>
#include <string.h>

#include "policy/mrc.h"

#define SAMPLE_BITS  24
#define COST_STRIPES 8 /* a power of two */

static const double scales[GENCACHE__MRC_POINTS] = {0.5, 2, 4};

struct gencache__mrc {
    const gencache_allocator *alloc;
    double rate;
    uint64_t threshold; /* a hash is sampled when its SAMPLE_BITS bits are below this */
    gencache__tier *mini[GENCACHE__MRC_POINTS];
    _Atomic uint64_t lookups[GENCACHE__MRC_POINTS], hits[GENCACHE__MRC_POINTS],
        saved_ms[GENCACHE__MRC_POINTS];
    /* The cost of every stored value, and of the sampled ones: their ratio scales the sample's
     * savings up to the whole population better than 1 / rate when costs are skewed. Every put
     * adds to the first, so it is spread over cache lines of their own, chosen by the key's
     * shard bits: threads putting into different shards of the memory tier add to different
     * lines instead of all to one. */
    struct {
        _Atomic uint64_t ms;
        char pad[64 - sizeof(uint64_t)];
    } put_cost[COST_STRIPES];
    _Atomic uint64_t sampled_put_cost_ms;
};

static bool sampled(const gencache__mrc *m, uint64_t hash)
{
    /* Bits 16..39: the memory tier picks shards from bits 40 and up, buckets from the lowest. */
    return ((hash >> 16) & ((1u << SAMPLE_BITS) - 1)) < m->threshold;
}

int gencache__mrc_new(const gencache__mrc_options *o, gencache__mrc **out)
{
    *out = NULL;
    if (!(o->rate > 0 && o->rate <= 1) || o->max_bytes == 0)
        return GENCACHE_EINVAL;
    gencache__mrc *m = gencache__calloc(o->alloc, 1, sizeof *m);
    if (!m)
        return GENCACHE_ENOMEM;
    m->alloc = o->alloc;
    m->rate = o->rate;
    m->threshold = (uint64_t)ceil(o->rate * (double)(1u << SAMPLE_BITS));
    for (int i = 0; i < GENCACHE__MRC_POINTS; i++) {
        double f = o->rate * scales[i];
        uint64_t bytes = (uint64_t)((double)o->max_bytes * f);
        uint64_t entries = (uint64_t)((double)o->max_entries * f);
        gencache__mem_options mo = {
            .max_bytes = bytes ? bytes : 1,
            .max_entries = o->max_entries && !entries ? 1 : entries,
            .shards = 1,
            .policy = o->policy,
            .alloc = o->alloc,
        };
        int rc = gencache__mem_tier_open(&mo, &m->mini[i]);
        if (rc != GENCACHE_OK) {
            gencache__mrc_free(m);
            return rc;
        }
    }
    *out = m;
    return GENCACHE_OK;
}

void gencache__mrc_free(gencache__mrc *m)
{
    if (!m)
        return;
    for (int i = 0; i < GENCACHE__MRC_POINTS; i++)
        if (m->mini[i])
            m->mini[i]->ops->close(m->mini[i]);
    gencache__free(m->alloc, m);
}

void gencache__mrc_set_layer_policy(gencache__mrc *m, uint32_t layer, int kind)
{
    for (int i = 0; m && i < GENCACHE__MRC_POINTS; i++)
        gencache__mem_tier_set_layer_policy(m->mini[i], layer, kind);
}

/* Stores a metadata-only copy of e in miniature tier i, unless it holds the key already (a
 * tier of that size would have hit, so its caller would not have stored it again): checked and
 * stored under one lock round of the tier. */
static void mini_put(gencache__mrc *m, int i, const gencache__entry *e, uint64_t now_ms)
{
    gencache__tier *t = m->mini[i];
    gencache__entry_spec spec = {
        .key = e->key,
        .layer = e->layer,
        .size = 0,
        .now_ms = now_ms,
        .ttl_ms = e->ttl_ms,
        .sliding = e->sliding,
        .hash = e->hash,
        .key_len = e->key_len,
    };
    gencache__entry *g;
    if (gencache__entry_new(m->alloc, &spec, &g) != GENCACHE_OK)
        return;            /* the curve misses one entry: it is an estimate */
    g->charge = e->charge; /* metadata only, charged what the real value holds */
    g->cost_ms = e->cost_ms;
    atomic_store_explicit(&g->expires_ms,
                          atomic_load_explicit(&e->expires_ms, memory_order_relaxed),
                          memory_order_relaxed);
    gencache__mem_tier_put_absent(t, g, now_ms);
    gencache__entry_release(g);
}

void gencache__mrc_get(gencache__mrc *m, const char *key, uint64_t hash, uint64_t now_ms,
                       const gencache__entry *found)
{
    if (!m || !sampled(m, hash))
        return;
    size_t key_len = strlen(key);
    for (int i = 0; i < GENCACHE__MRC_POINTS; i++) {
        uint64_t cost_ms = 0;
        atomic_fetch_add_explicit(&m->lookups[i], 1, memory_order_relaxed);
        if (gencache__mem_tier_touch(m->mini[i], key, key_len, hash, now_ms, &cost_ms) !=
            GENCACHE_OK) {
            /* A smaller tier misses where the real one hit: its caller would compute the value
             * and store it, as the real one's did on its miss. */
            if (found)
                mini_put(m, i, found, now_ms);
            continue;
        }
        atomic_fetch_add_explicit(&m->hits[i], 1, memory_order_relaxed);
        if (cost_ms)
            atomic_fetch_add_explicit(&m->saved_ms[i], cost_ms, memory_order_relaxed);
    }
}

void gencache__mrc_put(gencache__mrc *m, const gencache__entry *e, uint64_t now_ms)
{
    if (!m)
        return;
    if (e->cost_ms) /* left alone when there is nothing to add */
        atomic_fetch_add_explicit(&m->put_cost[(e->hash >> 40) & (COST_STRIPES - 1)].ms, e->cost_ms,
                                  memory_order_relaxed);
    if (!sampled(m, e->hash))
        return;
    atomic_fetch_add_explicit(&m->sampled_put_cost_ms, e->cost_ms, memory_order_relaxed);
    for (int i = 0; i < GENCACHE__MRC_POINTS; i++)
        mini_put(m, i, e, now_ms);
}

double gencache__mrc_rate(const gencache__mrc *m)
{
    return m->rate;
}

void gencache__mrc_points(gencache__mrc *m, gencache_mrc_point *out)
{
    uint64_t all = 0;
    for (int i = 0; m && i < COST_STRIPES; i++)
        all += atomic_load_explicit(&m->put_cost[i].ms, memory_order_relaxed);
    uint64_t some = m ? atomic_load(&m->sampled_put_cost_ms) : 0;
    double up = some ? (double)all / (double)some : m ? 1.0 / m->rate : 0.0;
    for (int i = 0; i < GENCACHE__MRC_POINTS; i++) {
        uint64_t n = m ? atomic_load(&m->lookups[i]) : 0;
        uint64_t h = m ? atomic_load(&m->hits[i]) : 0;
        uint64_t ms = m ? atomic_load(&m->saved_ms[i]) : 0;
        out[i].scale = scales[i];
        out[i].lookups = n;
        out[i].hit_ratio = n ? (double)h / (double)n : 0.0;
        out[i].gpu_seconds_saved = (double)ms / 1000.0 * up;
    }
}
