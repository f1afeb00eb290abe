/*
 * mrc.c: the miss-ratio curve of the memory tier, what hit ratio and compute savings a tier of
 * other sizes would have had, from spatially sampled keys (SHARDS). A key is sampled when bits
 * of its hash fall below a threshold, so every access to a sampled key is seen and none to the
 * others: the sampled keys behave like the whole population at the sampling rate. For each scale
 * a miniature memory tier (the real one: same code, same policies) of rate * scale * the tier's
 * size replays the sampled accesses with metadata-only entries charged their real size, known by
 * their keys' 64-bit hashes (they hold no key). Memory is bounded by the sampled share of the
 * largest scale's entries. Samples wait in a small buffer and reach the miniature tiers in
 * batches, one lock round per tier per batch; every sample is replayed exactly once, in the order
 * the threads took them, at the latest when the curve is read.
 */
#include <math.h>

#include "policy/mrc.h"

#define SAMPLE_BITS  24
#define COST_STRIPES 8  /* a power of two */
#define BATCH        32 /* samples a buffer holds before they are replayed */

static const double scales[GENCACHE__MRC_POINTS] = {0.5, 2, 4};

/* Sampled accesses not yet replayed, in the order the threads took them: one order for all
 * threads, since a key's put and its next get may come from different threads (a daemon's
 * connections) and a get replayed before its put would count a miss. Two buffers take turns: a
 * thread that fills one starts the other and replays the full one outside the buffer lock (but
 * under replay_lock, taken before the buffer lock is let go, so batches are replayed in order and
 * a buffer is refilled only once its replay is over). */
typedef struct queue {
    pthread_mutex_t lock;        /* before replay_lock */
    pthread_mutex_t replay_lock; /* before the miniature tiers' shard locks */
    unsigned cur;                /* the buffer being filled, under lock */
    unsigned n;                  /* samples in it, under lock */
    gencache__mem_sample s[2][BATCH];
} queue;

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
    queue q;
};

/* Replays n samples on every miniature tier and adds up what they did. replay_lock held. */
static void replay(gencache__mrc *m, const gencache__mem_sample *x, unsigned n)
{
    uint64_t gets = 0, put_cost = 0;
    for (unsigned j = 0; j < n; j++) {
        if (x[j].op == GENCACHE__SAMPLE_PUT)
            put_cost += x[j].cost_ms;
        else
            gets++;
    }
    for (int i = 0; i < GENCACHE__MRC_POINTS; i++) {
        uint64_t hits, saved_ms;
        gencache__mem_tier_replay(m->mini[i], x, n, &hits, &saved_ms);
        if (gets)
            atomic_fetch_add_explicit(&m->lookups[i], gets, memory_order_relaxed);
        /* After the lookups, and read before them: a reader never sees more hits than lookups. */
        if (hits)
            atomic_fetch_add_explicit(&m->hits[i], hits, memory_order_release);
        if (saved_ms)
            atomic_fetch_add_explicit(&m->saved_ms[i], saved_ms, memory_order_relaxed);
    }
    if (put_cost)
        atomic_fetch_add_explicit(&m->sampled_put_cost_ms, put_cost, memory_order_relaxed);
}

/* Queues one sampled access (e: the entry found or stored, NULL for a get that missed); the
 * thread that fills a buffer replays it. */
static void sample(gencache__mrc *m, gencache__sample_op op, uint64_t hash, uint64_t now_ms,
                   const gencache__entry *e)
{
    queue *q = &m->q;
    pthread_mutex_lock(&q->lock);
    gencache__mem_sample *x = &q->s[q->cur][q->n++];
    x->hash = hash;
    x->now_ms = now_ms;
    x->op = (uint8_t)op;
    if (e) {
        x->layer = e->layer;
        x->ttl_ms = e->ttl_ms;
        x->sliding = e->sliding;
        x->charge = e->charge;
        x->cost_ms = e->cost_ms;
        x->expires_ms = atomic_load_explicit(&e->expires_ms, memory_order_relaxed);
    }
    if (q->n < BATCH) {
        pthread_mutex_unlock(&q->lock);
        return;
    }
    /* Waits for the other buffer's replay, if it is still going, before refilling it. */
    pthread_mutex_lock(&q->replay_lock);
    unsigned full = q->cur;
    q->cur ^= 1;
    q->n = 0;
    pthread_mutex_unlock(&q->lock);
    replay(m, q->s[full], BATCH);
    pthread_mutex_unlock(&q->replay_lock);
}

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
    pthread_mutex_init(&m->q.lock, NULL);
    pthread_mutex_init(&m->q.replay_lock, NULL);
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
    /* Samples still buffered are dropped: nobody can read the curve any more. */
    pthread_mutex_destroy(&m->q.lock);
    pthread_mutex_destroy(&m->q.replay_lock);
    gencache__free(m->alloc, m);
}

void gencache__mrc_set_layer_policy(gencache__mrc *m, uint32_t layer, int kind)
{
    for (int i = 0; m && i < GENCACHE__MRC_POINTS; i++)
        gencache__mem_tier_set_layer_policy(m->mini[i], layer, kind);
}

void gencache__mrc_get(gencache__mrc *m, uint64_t hash, uint64_t now_ms,
                       const gencache__entry *found)
{
    if (!m || !sampled(m, hash))
        return;
    sample(m, found ? GENCACHE__SAMPLE_GET_FOUND : GENCACHE__SAMPLE_GET, hash, now_ms, found);
}

void gencache__mrc_put(gencache__mrc *m, const gencache__entry *e, uint64_t now_ms)
{
    if (!m)
        return;
    if (e->cost_ms) /* left alone when there is nothing to add */
        atomic_fetch_add_explicit(&m->put_cost[(e->hash >> 40) & (COST_STRIPES - 1)].ms, e->cost_ms,
                                  memory_order_relaxed);
    if (sampled(m, e->hash))
        sample(m, GENCACHE__SAMPLE_PUT, e->hash, now_ms, e);
}

double gencache__mrc_rate(const gencache__mrc *m)
{
    return m->rate;
}

void gencache__mrc_points(gencache__mrc *m, gencache_mrc_point *out)
{
    /* Every sample taken before this call counts: a full buffer's replay still going ends first,
     * then the one being filled is replayed. */
    if (m) {
        queue *q = &m->q;
        pthread_mutex_lock(&q->lock);
        pthread_mutex_lock(&q->replay_lock);
        if (q->n)
            replay(m, q->s[q->cur], q->n);
        q->n = 0;
        pthread_mutex_unlock(&q->replay_lock);
        pthread_mutex_unlock(&q->lock);
    }
    uint64_t all = 0;
    for (int i = 0; m && i < COST_STRIPES; i++)
        all += atomic_load_explicit(&m->put_cost[i].ms, memory_order_relaxed);
    uint64_t some = m ? atomic_load(&m->sampled_put_cost_ms) : 0;
    double up = some ? (double)all / (double)some : m ? 1.0 / m->rate : 0.0;
    for (int i = 0; i < GENCACHE__MRC_POINTS; i++) {
        uint64_t h = m ? atomic_load_explicit(&m->hits[i], memory_order_acquire) : 0;
        uint64_t n = m ? atomic_load_explicit(&m->lookups[i], memory_order_relaxed) : 0;
        uint64_t ms = m ? atomic_load(&m->saved_ms[i]) : 0;
        out[i].scale = scales[i];
        out[i].lookups = n;
        out[i].hit_ratio = n ? (double)h / (double)n : 0.0;
        out[i].gpu_seconds_saved = (double)ms / 1000.0 * up;
    }
}
