/*
 * mem.c: the memory tier, a sharded hash table of reference-counted entries. Each shard has its
 * own lock, chained buckets and one eviction-policy instance per policy in use (src/policy/),
 * which orders its unpinned entries (pinned entries are never given to a policy, so every
 * candidate is evictable). Each layer's entries go to the tier's policy or the layer's own.
 * Limits are global: eviction takes the lowest-ranked candidate among all shards, so the order is
 * the policy's up to ties between shards.
 * A get hands out a reference to the stored entry itself: zero copy, and the bytes stay valid
 * after the entry leaves the table. Lock order: at most one shard lock at a time.
 */
#include <string.h>

#include "internal.h"
#include "policy/policy.h"

#define INITIAL_BUCKETS 64

typedef struct shard {
    pthread_mutex_t lock;
    gencache__entry **buckets;
    size_t nbuckets; /* power of two */
    size_t count;
    gencache__policy_shard pol[GENCACHE__POLICY_KINDS]; /* one instance per policy kind */
} shard;

typedef struct mem_tier {
    gencache__tier base;
    gencache__mem_options opts;
    shard *shards;
    unsigned nshards;          /* power of two */
    _Atomic uint64_t bytes;    /* charges of the entries in the table */
    _Atomic uint64_t reserved; /* bytes held for memory outside the table */
    _Atomic uint64_t entries;
    _Atomic uint64_t pinned;
    _Atomic uint64_t pinned_bytes; /* charges of pinned entries, reserved by mem_put */
    _Atomic uint64_t pins_refused;
    _Atomic uint64_t ev_capacity, ev_expired, ev_corrupt;
    gencache__policy_shared pol_shared;
    uint8_t layer_policy[GENCACHE_MAX_LAYERS]; /* each layer's policy kind */
    _Atomic unsigned kinds_used;               /* bit k: some entry went to policy kind k */
} mem_tier;

static shard *shard_of(mem_tier *m, uint64_t hash)
{
    return &m->shards[(hash >> 40) & (m->nshards - 1)];
}

static gencache__entry **bucket_of(shard *s, uint64_t hash)
{
    return &s->buckets[hash & (s->nbuckets - 1)];
}

/* ---- policy (shard lock held) ---- */

static const gencache__policy_ops *policy_ops(const gencache__entry *e)
{
    return gencache__policy_of(e->pol_kind);
}

/* Gives an unpinned entry to the policy of its layer. */
static int policy_insert(mem_tier *m, shard *s, gencache__entry *e)
{
    unsigned k = e->layer < GENCACHE_MAX_LAYERS ? m->layer_policy[e->layer] : m->opts.policy;
    e->pol_kind = (uint8_t)k;
    if ((atomic_load_explicit(&m->kinds_used, memory_order_relaxed) & (1u << k)) == 0)
        atomic_fetch_or(&m->kinds_used, 1u << k);
    return policy_ops(e)->insert(&s->pol[k], e);
}

/* ---- table (shard lock held) ---- */

static gencache__entry *table_find(shard *s, const char *key, uint64_t hash)
{
    for (gencache__entry *e = *bucket_of(s, hash); e; e = e->hnext)
        if (e->hash == hash && strcmp(e->key, key) == 0)
            return e;
    return NULL;
}

/* Doubles the bucket array. A failed allocation is harmless: chains just grow longer. */
static void table_grow(mem_tier *m, shard *s)
{
    size_t n = s->nbuckets * 2;
    gencache__entry **nb = gencache__calloc(m->opts.alloc, n, sizeof *nb);
    if (!nb)
        return;
    for (size_t i = 0; i < s->nbuckets; i++) {
        gencache__entry *e = s->buckets[i];
        while (e) {
            gencache__entry *next = e->hnext;
            gencache__entry **b = &nb[e->hash & (n - 1)];
            e->hnext = *b;
            *b = e;
            e = next;
        }
    }
    gencache__free(m->opts.alloc, s->buckets);
    s->buckets = nb;
    s->nbuckets = n;
}

/* Links e into the table. GENCACHE_ENOMEM (nothing changes) when its policy has no room. */
static int table_link(mem_tier *m, shard *s, gencache__entry *e)
{
    if (!e->pinned) {
        int rc = policy_insert(m, s, e);
        if (rc != GENCACHE_OK)
            return rc;
    }
    gencache__entry **b = bucket_of(s, e->hash);
    e->hnext = *b;
    *b = e;
    e->linked = true;
    s->count++;
    atomic_fetch_add(&m->bytes, e->charge);
    atomic_fetch_add(&m->entries, 1);
    if (e->pinned)
        atomic_fetch_add(&m->pinned, 1);
    return GENCACHE_OK;
}

/* Takes e out of the table. The table's reference passes to the caller. */
static void table_unlink(mem_tier *m, shard *s, gencache__entry *e)
{
    gencache__entry **pp = bucket_of(s, e->hash);
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    e->hnext = NULL;
    e->linked = false;
    if (!e->pinned)
        policy_ops(e)->remove(&s->pol[e->pol_kind], e);
    s->count--;
    atomic_fetch_sub(&m->bytes, e->charge);
    atomic_fetch_sub(&m->entries, 1);
    if (e->pinned) {
        atomic_fetch_sub(&m->pinned, 1);
        atomic_fetch_sub(&m->pinned_bytes, e->charge);
    }
}

/* Hands an entry the table let go of to the eviction callback, then drops the reference. */
static void dispose(mem_tier *m, gencache__entry *e, gencache__evict_reason reason)
{
    if (m->base.on_evict)
        m->base.on_evict(m->base.on_evict_userdata, e, reason);
    gencache__entry_release(e);
}

/* ---- limits ---- */

static bool over_limits(mem_tier *m)
{
    uint64_t max_b = m->opts.max_bytes, max_e = m->opts.max_entries;
    if (max_b && atomic_load(&m->bytes) + atomic_load(&m->reserved) > max_b)
        return true;
    return max_e && atomic_load(&m->entries) > max_e;
}

/* The next victim of policy kind k in a shard, skipping `keep` (the entry being inserted). */
static gencache__entry *candidate(shard *s, unsigned k, const gencache__entry *keep, double *rank)
{
    return gencache__policy_of((int)k)->candidate(&s->pol[k], keep, rank);
}

typedef struct victim_pick {
    shard *s;
    unsigned kind;
} victim_pick;

/* Where the next victim is: for each policy kind in use, the shard whose candidate ranks lowest;
 * between kinds, the candidate accessed longest ago. False when no shard has a candidate. */
static bool pick_victim(mem_tier *m, const gencache__entry *keep, victim_pick *out)
{
    unsigned used = atomic_load_explicit(&m->kinds_used, memory_order_relaxed);
    bool found = false;
    uint64_t best_access = 0;
    for (unsigned k = 0; k < GENCACHE__POLICY_KINDS; k++) {
        if (!(used & (1u << k)))
            continue;
        shard *best = NULL;
        double best_rank = 0;
        uint64_t access = 0;
        for (unsigned i = 0; i < m->nshards; i++) {
            shard *s = &m->shards[i];
            double rank;
            pthread_mutex_lock(&s->lock);
            gencache__entry *c = candidate(s, k, keep, &rank);
            if (c && (!best || rank < best_rank)) {
                best = s;
                best_rank = rank;
                access = atomic_load_explicit(&c->last_access_ms, memory_order_relaxed);
            }
            pthread_mutex_unlock(&s->lock);
        }
        if (best && (!found || access < best_access)) {
            found = true;
            best_access = access;
            out->s = best;
            out->kind = k;
        }
    }
    return found;
}

/* Evicts the policies' victims until the limits hold. `keep` is evicted only when nothing else
 * can be; then GENCACHE_EFULL is returned (keep is out of the table). */
static int make_room(mem_tier *m, gencache__entry *keep)
{
    while (over_limits(m)) {
        victim_pick pick;
        gencache__entry *victim = NULL;
        if (pick_victim(m, keep, &pick)) {
            double rank;
            pthread_mutex_lock(&pick.s->lock);
            victim = candidate(pick.s, pick.kind, keep, &rank);
            if (victim) {
                if (m->base.before_evict)
                    m->base.before_evict(m->base.on_evict_userdata, victim);
                policy_ops(victim)->evicting(&pick.s->pol[pick.kind], victim);
                table_unlink(m, pick.s, victim);
            }
            pthread_mutex_unlock(&pick.s->lock);
            if (!victim)
                continue; /* another thread emptied that shard meanwhile: look again */
        } else if (keep) {
            shard *s = shard_of(m, keep->hash);
            pthread_mutex_lock(&s->lock);
            if (keep->linked) {
                table_unlink(m, s, keep);
                victim = keep;
            }
            pthread_mutex_unlock(&s->lock);
            if (victim)
                gencache__entry_release(victim);
            return GENCACHE_EFULL;
        } else {
            return GENCACHE_EFULL;
        }
        atomic_fetch_add(&m->ev_capacity, 1);
        dispose(m, victim, GENCACHE__EVICT_CAPACITY);
    }
    return GENCACHE_OK;
}

/* ---- tier operations ---- */

static int mem_get(gencache__tier *t, const char *key, uint64_t hash, uint64_t now_ms, bool touch,
                   gencache__entry **out)
{
    mem_tier *m = (mem_tier *)t;
    shard *s = shard_of(m, hash);
    *out = NULL;
    pthread_mutex_lock(&s->lock);
    gencache__entry *e = table_find(s, key, hash);
    if (!e) {
        pthread_mutex_unlock(&s->lock);
        return GENCACHE_ENOTFOUND;
    }
    if (gencache__entry_expired(e, now_ms)) {
        table_unlink(m, s, e);
        pthread_mutex_unlock(&s->lock);
        atomic_fetch_add(&m->ev_expired, 1);
        dispose(m, e, GENCACHE__EVICT_EXPIRED);
        return GENCACHE_ENOTFOUND;
    }
    if (touch) {
        if (!e->pinned)
            policy_ops(e)->hit(&s->pol[e->pol_kind], e);
        atomic_store_explicit(&e->last_access_ms, now_ms, memory_order_relaxed);
        /* Only hits under this lock change the count: no read-modify-write needed. */
        atomic_store_explicit(&e->hits, atomic_load_explicit(&e->hits, memory_order_relaxed) + 1,
                              memory_order_relaxed);
        if (e->sliding && e->ttl_ms)
            atomic_store_explicit(&e->expires_ms, now_ms + e->ttl_ms, memory_order_relaxed);
    }
    gencache__entry_retain(e);
    pthread_mutex_unlock(&s->lock);

    if (m->opts.verify_reads && gencache__checksum(e->value, e->size) != e->checksum) {
        gencache__log_msg(m->opts.log, GENCACHE_LOG_ERROR, "mem: %s failed its checksum; dropped",
                          e->key);
        pthread_mutex_lock(&s->lock);
        bool linked = e->linked && table_find(s, key, hash) == e;
        if (linked)
            table_unlink(m, s, e);
        pthread_mutex_unlock(&s->lock);
        if (linked) {
            atomic_fetch_add(&m->ev_corrupt, 1);
            dispose(m, e, GENCACHE__EVICT_CORRUPT);
        }
        gencache__entry_release(e);
        return GENCACHE_ENOTFOUND;
    }
    *out = e;
    return GENCACHE_OK;
}

/* Reserves room under the pinned-bytes ceiling for e; false when it does not fit. */
static bool reserve_pin(mem_tier *m, const gencache__entry *e)
{
    uint64_t cur = atomic_load(&m->pinned_bytes);
    do {
        if (m->opts.max_pinned_bytes && cur + e->charge > m->opts.max_pinned_bytes)
            return false;
    } while (!atomic_compare_exchange_weak(&m->pinned_bytes, &cur, cur + e->charge));
    return true;
}

static int mem_put(gencache__tier *t, gencache__entry *e, uint64_t now_ms)
{
    mem_tier *m = (mem_tier *)t;
    (void)now_ms;
    if (m->opts.max_bytes && e->charge > m->opts.max_bytes)
        return GENCACHE_ETOOBIG;
    /* Pinned entries can never be evicted, so their bytes are capped: past the ceiling a pin is
     * stored as an ordinary entry. The entry is not visible to anyone else yet. */
    if (e->pinned && !reserve_pin(m, e)) {
        e->pinned = false;
        atomic_fetch_add(&m->pins_refused, 1);
    }
    shard *s = shard_of(m, e->hash);
    pthread_mutex_lock(&s->lock);
    gencache__entry *old = table_find(s, e->key, e->hash);
    if (old)
        table_unlink(m, s, old);
    int rc = table_link(m, s, gencache__entry_retain(e));
    if (rc == GENCACHE_OK && s->count > s->nbuckets)
        table_grow(m, s);
    pthread_mutex_unlock(&s->lock);
    if (rc != GENCACHE_OK) {
        if (e->pinned)
            atomic_fetch_sub(&m->pinned_bytes, e->charge);
        gencache__entry_release(e); /* the reference table_link did not take */
        gencache__entry_release(old);
        return rc;
    }
    /* A replaced value is not an eviction: its handles keep it alive, nothing is demoted. */
    gencache__entry_release(old);
    return make_room(m, e);
}

static int mem_del(gencache__tier *t, const char *key, uint64_t hash)
{
    mem_tier *m = (mem_tier *)t;
    shard *s = shard_of(m, hash);
    pthread_mutex_lock(&s->lock);
    gencache__entry *e = table_find(s, key, hash);
    if (e)
        table_unlink(m, s, e);
    pthread_mutex_unlock(&s->lock);
    if (!e)
        return GENCACHE_ENOTFOUND;
    gencache__entry_release(e);
    return GENCACHE_OK;
}

/* Takes every entry of a shard for which pred holds out of the table, chained through hnext. */
static gencache__entry *shard_take_if(mem_tier *m, shard *s, gencache__entry_pred pred, void *ud,
                                      bool for_room)
{
    gencache__entry *taken = NULL;
    pthread_mutex_lock(&s->lock);
    for (size_t b = 0; b < s->nbuckets; b++) {
        gencache__entry *e = s->buckets[b];
        while (e) {
            gencache__entry *next = e->hnext;
            if (pred(ud, e)) {
                if (for_room && m->base.before_evict)
                    m->base.before_evict(m->base.on_evict_userdata, e);
                table_unlink(m, s, e);
                e->hnext = taken;
                taken = e;
            }
            e = next;
        }
    }
    pthread_mutex_unlock(&s->lock);
    return taken;
}

static int mem_remove_if(gencache__tier *t, gencache__entry_pred pred, void *ud, uint64_t *count)
{
    mem_tier *m = (mem_tier *)t;
    uint64_t n = 0;
    for (unsigned i = 0; i < m->nshards; i++) {
        gencache__entry *e = shard_take_if(m, &m->shards[i], pred, ud, false);
        while (e) {
            gencache__entry *next = e->hnext;
            e->hnext = NULL;
            gencache__entry_release(e);
            n++;
            e = next;
        }
    }
    if (count)
        *count = n;
    return GENCACHE_OK;
}

static bool expired_pred(void *ud, const gencache__entry *e)
{
    return gencache__entry_expired(e, *(const uint64_t *)ud);
}

/* Takes every entry pred accepts out of every shard and hands each to the eviction callback for
 * `reason`, counting it in *counter. Returns how many left. */
static uint64_t evict_where(mem_tier *m, gencache__entry_pred pred, void *ud,
                            gencache__evict_reason reason, _Atomic uint64_t *counter)
{
    uint64_t n = 0;
    for (unsigned i = 0; i < m->nshards; i++) {
        gencache__entry *e =
            shard_take_if(m, &m->shards[i], pred, ud, reason == GENCACHE__EVICT_CAPACITY);
        while (e) {
            gencache__entry *next = e->hnext;
            e->hnext = NULL;
            atomic_fetch_add(counter, 1);
            dispose(m, e, reason);
            n++;
            e = next;
        }
    }
    return n;
}

static int mem_expire(gencache__tier *t, uint64_t now_ms, uint64_t *count)
{
    mem_tier *m = (mem_tier *)t;
    uint64_t n = evict_where(m, expired_pred, &now_ms, GENCACHE__EVICT_EXPIRED, &m->ev_expired);
    if (count)
        *count = n;
    return GENCACHE_OK;
}

typedef struct unpinned_pred {
    gencache__entry_pred pred;
    void *userdata;
} unpinned_pred;

static bool unpinned_match(void *ud, const gencache__entry *e)
{
    const unpinned_pred *p = ud;
    return !e->pinned && p->pred(p->userdata, e);
}

int gencache__mem_tier_evict_if(gencache__tier *t, gencache__entry_pred pred, void *userdata,
                                uint64_t *count)
{
    mem_tier *m = (mem_tier *)t;
    unpinned_pred p = {pred, userdata};
    uint64_t n = evict_where(m, unpinned_match, &p, GENCACHE__EVICT_CAPACITY, &m->ev_capacity);
    if (count)
        *count = n;
    return GENCACHE_OK;
}

static void mem_each(gencache__tier *t, void (*fn)(void *userdata, gencache__entry *e),
                     void *userdata)
{
    mem_tier *m = (mem_tier *)t;
    for (unsigned i = 0; i < m->nshards; i++) {
        shard *s = &m->shards[i];
        pthread_mutex_lock(&s->lock);
        for (size_t b = 0; b < s->nbuckets; b++)
            for (gencache__entry *e = s->buckets[b]; e; e = e->hnext)
                fn(userdata, e);
        pthread_mutex_unlock(&s->lock);
    }
}

static void mem_stats(gencache__tier *t, gencache_tier_stats *out)
{
    mem_tier *m = (mem_tier *)t;
    memset(out, 0, sizeof *out);
    out->tier = "mem";
    out->bytes = atomic_load(&m->bytes) + atomic_load(&m->reserved);
    out->entries = atomic_load(&m->entries);
    out->max_bytes = m->opts.max_bytes;
    out->max_entries = m->opts.max_entries;
    out->pinned_entries = atomic_load(&m->pinned);
    out->pinned_bytes = atomic_load(&m->pinned_bytes);
    out->pins_refused = atomic_load(&m->pins_refused);
    out->evictions_capacity = atomic_load(&m->ev_capacity);
    out->evictions_expired = atomic_load(&m->ev_expired);
    out->evictions_corrupt = atomic_load(&m->ev_corrupt);
}

static void mem_close(gencache__tier *t)
{
    mem_tier *m = (mem_tier *)t;
    if (!m)
        return;
    for (unsigned i = 0; i < m->nshards; i++) {
        shard *s = &m->shards[i];
        if (!s->buckets)
            continue;
        for (size_t b = 0; b < s->nbuckets; b++) {
            gencache__entry *e = s->buckets[b];
            while (e) {
                gencache__entry *next = e->hnext;
                e->hnext = e->lru_prev = e->lru_next = NULL;
                e->linked = false;
                gencache__entry_release(e);
                e = next;
            }
        }
        for (unsigned k = 0; k < GENCACHE__POLICY_KINDS; k++)
            gencache__policy_of((int)k)->fini(&s->pol[k]);
        gencache__free(m->opts.alloc, s->buckets);
        pthread_mutex_destroy(&s->lock);
    }
    gencache__free(m->opts.alloc, m->shards);
    gencache__free(m->opts.alloc, m);
}

static const gencache__tier_ops mem_ops = {
    .name = "mem",
    .caps = GENCACHE__TIER_ZERO_COPY,
    .get = mem_get,
    .put = mem_put,
    .del = mem_del,
    .remove_if = mem_remove_if,
    .expire = mem_expire,
    .stats = mem_stats,
    .each = mem_each,
    .close = mem_close,
};

int gencache__mem_tier_reserve(gencache__tier *t, int64_t delta)
{
    mem_tier *m = (mem_tier *)t;
    if (delta <= 0) {
        atomic_fetch_sub(&m->reserved, (uint64_t)-delta);
        return GENCACHE_OK;
    }
    if (m->opts.max_bytes && (uint64_t)delta > m->opts.max_bytes)
        return GENCACHE_EFULL;
    atomic_fetch_add(&m->reserved, (uint64_t)delta);
    int rc = make_room(m, NULL);
    if (rc != GENCACHE_OK)
        atomic_fetch_sub(&m->reserved, (uint64_t)delta);
    return rc;
}

int gencache__mem_tier_open(const gencache__mem_options *opts, gencache__tier **out)
{
    *out = NULL;
    unsigned n = 1;
    while (n < opts->shards && n < 1024)
        n <<= 1;
    mem_tier *m = gencache__calloc(opts->alloc, 1, sizeof *m);
    if (!m)
        return GENCACHE_ENOMEM;
    m->base.ops = &mem_ops;
    m->opts = *opts;
    if (!gencache__policy_of((int)m->opts.policy))
        m->opts.policy = GENCACHE_EVICTION_LRU;
    memset(m->layer_policy, (int)m->opts.policy, sizeof m->layer_policy);
    m->pol_shared.alloc = opts->alloc;
    m->pol_shared.ghost_entries = opts->ghost_entries ? opts->ghost_entries : 4096;
    m->nshards = n;
    m->shards = gencache__calloc(opts->alloc, n, sizeof *m->shards);
    if (!m->shards) {
        gencache__free(opts->alloc, m);
        return GENCACHE_ENOMEM;
    }
    for (unsigned i = 0; i < n; i++) {
        shard *s = &m->shards[i];
        s->buckets = gencache__calloc(opts->alloc, INITIAL_BUCKETS, sizeof *s->buckets);
        if (!s->buckets) {
            m->nshards = i; /* close frees only the shards made so far */
            mem_close(&m->base);
            return GENCACHE_ENOMEM;
        }
        s->nbuckets = INITIAL_BUCKETS;
        for (unsigned k = 0; k < GENCACHE__POLICY_KINDS; k++)
            s->pol[k].shared = &m->pol_shared;
        pthread_mutex_init(&s->lock, NULL);
    }
    *out = &m->base;
    return GENCACHE_OK;
}

void gencache__mem_tier_set_layer_policy(gencache__tier *t, uint32_t layer, int kind)
{
    mem_tier *m = (mem_tier *)t;
    if (layer < GENCACHE_MAX_LAYERS)
        m->layer_policy[layer] = (uint8_t)(gencache__policy_of(kind) ? kind : (int)m->opts.policy);
}
