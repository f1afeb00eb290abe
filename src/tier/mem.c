/*
 * mem.c: the memory tier, a sharded hash table of reference-counted entries. Each shard has its
 * own lock, an open-addressing table of (hash, entry) slots (a miss touches no entry) and one
 * eviction-policy instance per policy kind (src/policy/), which orders its unpinned entries
 * (pinned entries are never given to a policy, so every candidate is evictable). Each layer's
 * entries go to the tier's policy or the layer's own. Limits are global: eviction takes the
 * lowest-ranked candidate among all shards, so the order is the policy's up to ties between
 * shards; each shard publishes a lower bound of its candidate's rank, so finding it takes the
 * locks of the shards that changed since they were last asked, not of all of them.
 * A get hands out a reference to the stored entry itself: zero copy, and the bytes stay valid
 * after the entry leaves the table. Lock order: at most one shard lock at a time.
 */
#include <assert.h>
#include <string.h>

#include "internal.h"
#include "policy/policy.h"

#define INITIAL_SLOTS 128

/* One place of a shard's table: the key's hash beside the entry, so a probe compares hashes
 * without touching entries, and a miss touches none. */
typedef struct slot {
    uint64_t hash;
    gencache__entry *e; /* NULL: empty */
} slot;

/* What pick_victim() knows of a shard's next victim of one policy kind without taking its lock:
 * a lower bound of its rank (a double's bits), and when it was last accessed. Anything that may
 * lower the rank (an entry coming in or leaving) sets it to HINT_UNKNOWN; hits only ever raise
 * it. */
typedef struct victim_hint {
    _Atomic uint64_t rank_bits; /* HINT_UNKNOWN: look under the lock; +inf: no candidate */
    _Atomic uint64_t access_ms;
} victim_hint;

typedef struct shard {
    pthread_mutex_t lock;
    slot *slots;
    size_t cap; /* power of two; at most half the slots are used */
    /* Entries in the table, and those it evicted for lack of room: written only under the lock
     * (a load and a store), read without it by the limits and the statistics, which add up the
     * shards, so that a put takes no shared counter's read-modify-write for either. */
    _Atomic uint64_t count;
    _Atomic uint64_t ev_capacity;
    victim_hint hint[GENCACHE__POLICY_KINDS];
    gencache__policy_shard pol[GENCACHE__POLICY_KINDS]; /* one instance per policy kind */
    /* Hits counted by gets, per layer index: written only under the lock, so an increment needs
     * no read-modify-write (atomics so that gencache__mem_tier_layer_hits() reads them without
     * it). */
    _Atomic uint64_t layer_hits[GENCACHE_MAX_LAYERS];
} shard;

typedef struct mem_tier {
    gencache__tier base;
    gencache__mem_options opts;
    shard *shards;
    unsigned nshards;          /* power of two */
    _Atomic uint64_t bytes;    /* charges of the entries in the table */
    _Atomic uint64_t reserved; /* bytes held for memory outside the table */
    _Atomic uint64_t pinned;
    _Atomic uint64_t pinned_bytes; /* charges of pinned entries, reserved by mem_put */
    _Atomic uint64_t pins_refused;
    _Atomic uint64_t ev_capacity; /* evicted for room by gencache__mem_tier_evict_if() */
    _Atomic uint64_t ev_expired, ev_corrupt;
    gencache__policy_shared pol_shared;
    const gencache__policy_ops *pol_ops[GENCACHE__POLICY_KINDS];
    uint8_t layer_policy[GENCACHE_MAX_LAYERS]; /* each layer's policy kind */
    _Atomic unsigned kinds_used;               /* bit k: some entry went to policy kind k */
} mem_tier;

static shard *shard_of(mem_tier *m, uint64_t hash)
{
    return &m->shards[(hash >> 40) & (m->nshards - 1)];
}

/* Adds delta to a counter only the shard's lock holder writes: no read-modify-write needed. */
static void shard_count_add(_Atomic uint64_t *n, uint64_t delta)
{
    atomic_store_explicit(n, atomic_load_explicit(n, memory_order_relaxed) + delta,
                          memory_order_relaxed);
}

/* Entries in the table: the shards' counts, read without their locks. */
static uint64_t tier_entries(mem_tier *m)
{
    uint64_t n = 0;
    for (unsigned i = 0; i < m->nshards; i++)
        n += atomic_load_explicit(&m->shards[i].count, memory_order_relaxed);
    return n;
}

/* ---- victim hints ---- */

/* -inf: lower than every rank, so an unknown shard is always looked at. */
#define HINT_UNKNOWN 0xfff0000000000000ull
#define HINT_NONE    0x7ff0000000000000ull /* +inf */

/* A rank and the bits a hint keeps of it. */
typedef union rank_word {
    double rank;
    uint64_t bits;
} rank_word;

static uint64_t rank_bits(double r)
{
    return (rank_word){.rank = r}.bits;
}

static double bits_rank(uint64_t u)
{
    return (rank_word){.bits = u}.rank;
}

/* The shard's next victim of kind k may now rank lower than its hint says. Shard lock held. */
static void hint_forget(shard *s, unsigned k)
{
    atomic_store_explicit(&s->hint[k].rank_bits, HINT_UNKNOWN, memory_order_relaxed);
}

/* ---- policy (shard lock held) ---- */

static const gencache__policy_ops *policy_ops(const mem_tier *m, const gencache__entry *e)
{
    return m->pol_ops[e->pol_kind];
}

/* Gives an unpinned entry to the policy of its layer. */
static int policy_insert(mem_tier *m, shard *s, gencache__entry *e)
{
    unsigned k = e->layer < GENCACHE_MAX_LAYERS ? m->layer_policy[e->layer] : m->opts.policy;
    e->pol_kind = (uint8_t)k;
    if ((atomic_load_explicit(&m->kinds_used, memory_order_relaxed) & (1u << k)) == 0)
        atomic_fetch_or(&m->kinds_used, 1u << k);
    hint_forget(s, k);
    return m->pol_ops[k]->insert(&s->pol[k], e);
}

/* ---- table (shard lock held) ---- */

/* The slot holding key (key_len bytes), or NULL. */
static slot *table_find(shard *s, const char *key, size_t key_len, uint64_t hash)
{
    size_t mask = s->cap - 1;
    for (size_t i = hash & mask; s->slots[i].e; i = (i + 1) & mask) {
        if (s->slots[i].hash != hash)
            continue;
        /* The key's bytes follow the header (gencache__entry_key()): read without waiting for
         * the header's line, which the caller reads next and which loads meanwhile. */
        const gencache__entry *e = s->slots[i].e;
        if (e->key_len == key_len && memcmp(gencache__entry_key(e), key, key_len) == 0)
            return &s->slots[i];
    }
    return NULL;
}

/* Puts e into the first free slot of its probe sequence (it is not in the table). */
static void slot_place(slot *slots, size_t cap, gencache__entry *e)
{
    size_t i = e->hash & (cap - 1);
    while (slots[i].e)
        i = (i + 1) & (cap - 1);
    slots[i] = (slot){e->hash, e};
}

/* Doubles the slot array. False when the allocation failed (nothing changes). */
static bool table_grow(mem_tier *m, shard *s)
{
    size_t n = s->cap * 2;
    slot *ns = gencache__calloc(m->opts.alloc, n, sizeof *ns);
    if (!ns)
        return false;
    for (size_t i = 0; i < s->cap; i++)
        if (s->slots[i].e)
            slot_place(ns, n, s->slots[i].e);
    gencache__free(m->opts.alloc, s->slots);
    s->slots = ns;
    s->cap = n;
    return true;
}

/* Links e into the table. GENCACHE_ENOMEM (nothing changes) when the table cannot grow past half
 * full or its policy has no room. */
static int table_link(mem_tier *m, shard *s, gencache__entry *e)
{
    /* Growing past half full keeps probes short; a failed growth is harmless until the table
     * would have no free slot left to end a probe. */
    uint64_t count = atomic_load_explicit(&s->count, memory_order_relaxed);
    if ((count + 1) * 2 > s->cap && !table_grow(m, s) && count + 2 > s->cap)
        return GENCACHE_ENOMEM;
    if (!e->pinned) {
        int rc = policy_insert(m, s, e);
        if (rc != GENCACHE_OK)
            return rc;
    }
    slot_place(s->slots, s->cap, e);
    e->linked = true;
    shard_count_add(&s->count, 1);
    atomic_fetch_add(&m->bytes, e->charge);
    if (e->pinned)
        atomic_fetch_add(&m->pinned, 1);
    return GENCACHE_OK;
}

/* Empties slot i and moves the rest of its run back, so that no probe stops early. */
static void slot_remove(shard *s, size_t i)
{
    size_t mask = s->cap - 1;
    s->slots[i] = (slot){0, NULL};
    for (size_t j = (i + 1) & mask; s->slots[j].e; j = (j + 1) & mask) {
        size_t home = s->slots[j].hash & mask;
        if (((j - home) & mask) >= ((j - i) & mask)) {
            s->slots[i] = s->slots[j];
            s->slots[j] = (slot){0, NULL};
            i = j;
        }
    }
}

/* Takes e out of the table. The table's reference passes to the caller. */
static void table_unlink(mem_tier *m, shard *s, gencache__entry *e)
{
    size_t mask = s->cap - 1, i = e->hash & mask;
    while (s->slots[i].e != e)
        i = (i + 1) & mask;
    slot_remove(s, i);
    e->linked = false;
    if (!e->pinned) {
        policy_ops(m, e)->remove(&s->pol[e->pol_kind], e);
        hint_forget(s, e->pol_kind);
    }
    shard_count_add(&s->count, (uint64_t)-1);
    atomic_fetch_sub(&m->bytes, e->charge);
    if (e->pinned) {
        atomic_fetch_sub(&m->pinned, 1);
        atomic_fetch_sub(&m->pinned_bytes, e->charge);
    }
}

/* Hands an entry the table let go of to the eviction callback, then drops the reference. A
 * count of 1 seen by a holder is final (nobody else holds one, so nobody can take one): the
 * usual victim, which no handle holds, is freed without a read-modify-write. */
static void dispose(mem_tier *m, gencache__entry *e, gencache__evict_reason reason)
{
    if (m->base.on_evict)
        m->base.on_evict(m->base.on_evict_userdata, e, reason);
    if (atomic_load_explicit(&e->refs, memory_order_acquire) == 1)
        gencache__entry_free(e);
    else
        gencache__entry_release(e);
}

/* ---- limits ---- */

static bool over_limits(mem_tier *m)
{
    uint64_t max_b = m->opts.max_bytes, max_e = m->opts.max_entries;
    if (max_b && atomic_load(&m->bytes) + atomic_load(&m->reserved) > max_b)
        return true;
    return max_e && tier_entries(m) > max_e;
}

/* The next victim of policy kind k in a shard, skipping `keep` (the entry being inserted). When
 * keep is not in its way, what it finds becomes the shard's hint. Shard lock held. */
static gencache__entry *candidate(mem_tier *m, shard *s, unsigned k, const gencache__entry *keep,
                                  double *rank)
{
    gencache__entry *c = m->pol_ops[k]->candidate(&s->pol[k], NULL, rank);
    if (c && c == keep) {
        /* Not a hint: without keep in the way the shard would offer keep itself. */
        hint_forget(s, k);
        return m->pol_ops[k]->candidate(&s->pol[k], keep, rank);
    }
    victim_hint *h = &s->hint[k];
    atomic_store_explicit(&h->rank_bits, c ? rank_bits(*rank) : HINT_NONE, memory_order_relaxed);
    if (c) {
        atomic_store_explicit(&h->access_ms,
                              atomic_load_explicit(&c->last_access_ms, memory_order_relaxed),
                              memory_order_relaxed);
        /* c is most likely the shard's next entry evicted, by this put or a later one. Its slot
         * and its list neighbour (whose link the unlink writes) are asked for now, so that the
         * unlink does not wait for the slot's line, then the entry's links, then the
         * neighbour's, one after the other. */
        __builtin_prefetch(&s->slots[c->hash & (s->cap - 1)], 1);
        if (c->lru_prev)
            __builtin_prefetch(&c->lru_prev->lru_next, 1);
    }
    return c;
}

typedef struct victim_pick {
    shard *s;
    unsigned kind;
    double next_rank; /* the lowest hint of kind's other shards: what the victim must not pass */
} victim_pick;

/* Where the next victim is: for each policy kind in use, the shard whose candidate ranks lowest;
 * between kinds, the candidate accessed longest ago. Shards are compared by their hints; only a
 * shard whose hint is unknown is looked at under its lock (after an entry came or left), so an
 * eviction takes a lock or two rather than one per shard. False when no shard has a candidate. */
static bool pick_victim(mem_tier *m, const gencache__entry *keep, victim_pick *out)
{
    unsigned used = atomic_load_explicit(&m->kinds_used, memory_order_relaxed);
    bool found = false;
    uint64_t best_access = 0;
    for (unsigned k = 0; k < GENCACHE__POLICY_KINDS; k++) {
        if (!(used & (1u << k)))
            continue;
        shard *best = NULL;
        double best_rank = 0, next_rank = bits_rank(HINT_NONE);
        for (unsigned i = 0; i < m->nshards; i++) {
            shard *s = &m->shards[i];
            uint64_t bits = atomic_load_explicit(&s->hint[k].rank_bits, memory_order_relaxed);
            if (bits == HINT_UNKNOWN) {
                double r;
                pthread_mutex_lock(&s->lock);
                gencache__entry *c = candidate(m, s, k, keep, &r);
                pthread_mutex_unlock(&s->lock);
                bits = c ? rank_bits(r) : HINT_NONE;
            }
            if (bits == HINT_NONE)
                continue;
            double rank = bits_rank(bits);
            if (!best || rank < best_rank) {
                if (best)
                    next_rank = best_rank;
                best = s;
                best_rank = rank;
            } else if (rank < next_rank) {
                next_rank = rank;
            }
        }
        if (!best)
            continue;
        uint64_t access = atomic_load_explicit(&best->hint[k].access_ms, memory_order_relaxed);
        if (!found || access < best_access) {
            found = true;
            best_access = access;
            out->s = best;
            out->kind = k;
            out->next_rank = next_rank;
        }
    }
    return found;
}

/* Evicts the policies' victims until the limits hold. `keep` is evicted only when nothing else
 * can be; then GENCACHE_EFULL is returned (keep is out of the table). */
static int make_room(mem_tier *m, gencache__entry *keep)
{
    unsigned stale = 0; /* picks whose hint turned out too low */
    while (over_limits(m)) {
        victim_pick pick;
        gencache__entry *victim = NULL;
        if (pick_victim(m, keep, &pick)) {
            double rank;
            pthread_mutex_lock(&pick.s->lock);
            victim = candidate(m, pick.s, pick.kind, keep, &rank);
            if (victim && rank > pick.next_rank && stale < m->nshards) {
                /* Hits raised this shard's victim past another shard's hint: look again (a
                 * bounded number of times, so a stream of hits cannot keep a put waiting). */
                stale++;
                victim = NULL;
            } else if (victim) {
                if (m->base.before_evict)
                    m->base.before_evict(m->base.on_evict_userdata, victim);
                policy_ops(m, victim)->evicting(&pick.s->pol[pick.kind], victim);
                table_unlink(m, pick.s, victim);
                shard_count_add(&pick.s->ev_capacity, 1);
                candidate(m, pick.s, pick.kind, keep, &rank); /* the shard's hint again */
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
        dispose(m, victim, GENCACHE__EVICT_CAPACITY);
    }
    return GENCACHE_OK;
}

/* ---- tier operations ---- */

/* The live entry of slot sl (a key's, found in shard s, whose lock the caller holds; NULL: none),
 * or NULL. An expired entry is taken out of the table and left in *expired, for the caller to
 * dispose of once it has unlocked. A get (touch) counts the hit and refreshes the entry. */
static inline __attribute__((always_inline)) gencache__entry *
find_live(mem_tier *m, shard *s, slot *sl, uint64_t now_ms, bool touch, gencache__entry **expired)
{
    *expired = NULL;
    if (!sl)
        return NULL;
    gencache__entry *e = sl->e;
    if (gencache__entry_expired(e, now_ms)) {
        table_unlink(m, s, e);
        *expired = e;
        return NULL;
    }
    if (touch) {
        if (!e->pinned && m->pol_ops[e->pol_kind]->hit)
            m->pol_ops[e->pol_kind]->hit(&s->pol[e->pol_kind], e);
        atomic_store_explicit(&e->last_access_ms, now_ms, memory_order_relaxed);
        /* Only hits under this lock change the counts: no read-modify-write needed. */
        atomic_store_explicit(&e->hits, atomic_load_explicit(&e->hits, memory_order_relaxed) + 1,
                              memory_order_relaxed);
        if (e->layer < GENCACHE_MAX_LAYERS) {
            _Atomic uint64_t *n = &s->layer_hits[e->layer];
            atomic_store_explicit(n, atomic_load_explicit(n, memory_order_relaxed) + 1,
                                  memory_order_relaxed);
        }
        if (e->sliding && e->ttl_ms)
            atomic_store_explicit(&e->expires_ms, now_ms + e->ttl_ms, memory_order_relaxed);
    }
    return e;
}

/* Looks key up under its shard's lock: the live entry, with a new reference for the caller, or
 * NULL. An expired entry found on the way is disposed of unlocked. Inlined: it is the whole of a
 * hit. */
static inline __attribute__((always_inline)) gencache__entry *
lookup(mem_tier *m, const char *key, size_t key_len, uint64_t hash, uint64_t now_ms, bool touch)
{
    shard *s = shard_of(m, hash);
    gencache__entry *expired;
    pthread_mutex_lock(&s->lock);
    gencache__entry *e =
        find_live(m, s, table_find(s, key, key_len, hash), now_ms, touch, &expired);
    if (e)
        gencache__entry_retain(e);
    pthread_mutex_unlock(&s->lock);
    if (expired) {
        atomic_fetch_add(&m->ev_expired, 1);
        dispose(m, expired, GENCACHE__EVICT_EXPIRED);
    }
    return e;
}

int gencache__mem_tier_get(gencache__tier *t, const char *key, size_t key_len, uint64_t hash,
                           uint64_t now_ms, bool touch, gencache__entry **out)
{
    mem_tier *m = (mem_tier *)t;
    *out = NULL;
    gencache__entry *e = lookup(m, key, key_len, hash, now_ms, touch);
    if (!e)
        return GENCACHE_ENOTFOUND;

    if (m->opts.verify_reads &&
        gencache__checksum(e->value, e->size) != gencache__entry_checksum(e)) {
        gencache__log_msg(m->opts.log, GENCACHE_LOG_ERROR, "mem: %s failed its checksum; dropped",
                          e->key);
        shard *s = shard_of(m, hash);
        pthread_mutex_lock(&s->lock);
        slot *now = e->linked ? table_find(s, key, key_len, hash) : NULL;
        bool linked = now && now->e == e;
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

static int mem_get(gencache__tier *t, const char *key, uint64_t hash, uint64_t now_ms, bool touch,
                   gencache__entry **out)
{
    return gencache__mem_tier_get(t, key, strlen(key), hash, now_ms, touch, out);
}

/* ---- the miss-ratio curve's replay (one shard, its lock held throughout) ---- */

/* The slot of the entry whose key hashes to `hash`, or NULL. The curve's miniature tiers know
 * their metadata entries by the 64-bit hash alone, as the ghost list does: a probe then reads
 * no entry, and the entries hold no key. */
static slot *find_hash(shard *s, uint64_t hash)
{
    size_t mask = s->cap - 1;
    for (size_t i = hash & mask; s->slots[i].e; i = (i + 1) & mask)
        if (s->slots[i].hash == hash)
            return &s->slots[i];
    return NULL;
}

/* make_room() for a tier of one shard whose lock the caller holds, taking the same steps in the
 * same order (a CLOCK candidate's sweep moves entries, so when it runs matters): the candidate
 * of each policy kind whose hint is unknown, the one accessed longest ago between kinds, the
 * shard's hint again after the eviction. keep, just stored, goes only when nothing else can. */
static void replay_make_room(mem_tier *m, shard *s, gencache__entry *keep)
{
    while (over_limits(m)) {
        unsigned used = atomic_load_explicit(&m->kinds_used, memory_order_relaxed), kind = 0;
        bool found = false;
        uint64_t best_access = 0;
        double rank;
        for (unsigned k = 0; k < GENCACHE__POLICY_KINDS; k++) {
            if (!(used & (1u << k)))
                continue;
            uint64_t bits = atomic_load_explicit(&s->hint[k].rank_bits, memory_order_relaxed);
            if (bits == HINT_UNKNOWN)
                bits = candidate(m, s, k, keep, &rank) ? rank_bits(rank) : HINT_NONE;
            if (bits == HINT_NONE)
                continue;
            uint64_t access = atomic_load_explicit(&s->hint[k].access_ms, memory_order_relaxed);
            if (!found || access < best_access) {
                found = true;
                best_access = access;
                kind = k;
            }
        }
        gencache__entry *victim = found ? candidate(m, s, kind, keep, &rank) : NULL;
        if (!victim) {
            if (keep->linked) {
                table_unlink(m, s, keep);
                gencache__entry_release(keep);
            }
            return;
        }
        policy_ops(m, victim)->evicting(&s->pol[kind], victim);
        table_unlink(m, s, victim);
        shard_count_add(&s->ev_capacity, 1);
        candidate(m, s, kind, keep, &rank); /* the shard's hint again */
        dispose(m, victim, GENCACHE__EVICT_CAPACITY);
    }
}

/* Stores a metadata-only entry for sample x (its hash is not in the table), keyless and charged
 * what the real value was, then evicts to the limits, taking mem_put()'s steps. */
static void replay_store(mem_tier *m, shard *s, const gencache__mem_sample *x)
{
    if (m->opts.max_bytes && x->charge > m->opts.max_bytes)
        return; /* too big for this tier: a put would be refused */
    gencache__entry_spec spec = {
        .key = "",
        .layer = x->layer,
        .now_ms = x->now_ms,
        .ttl_ms = x->ttl_ms,
        .sliding = x->sliding,
        .hash = x->hash,
    };
    gencache__entry *g;
    if (gencache__entry_new(m->opts.alloc, &spec, &g) != GENCACHE_OK)
        return;        /* the curve misses one entry: it is an estimate */
    g->hash = x->hash; /* even the one hash in 2^64 that entry_new() reads as "none given" */
    g->charge = x->charge;
    g->cost_ms = x->cost_ms;
    atomic_store_explicit(&g->expires_ms, x->expires_ms, memory_order_relaxed);
    if (table_link(m, s, g) != GENCACHE_OK) {
        gencache__entry_release(g);
        return;
    }
    /* The new entry's one reference is now the table's. */
    double rank;
    if (over_limits(m))
        candidate(m, s, g->pol_kind, g, &rank);
    replay_make_room(m, s, g);
}

void gencache__mem_tier_replay(gencache__tier *t, const gencache__mem_sample *x, size_t n,
                               uint64_t *hits, uint64_t *saved_ms)
{
    mem_tier *m = (mem_tier *)t;
    shard *s = &m->shards[0];
    assert(m->nshards == 1 && !m->base.on_evict && !m->base.before_evict);
    uint64_t h = 0, saved = 0;
    pthread_mutex_lock(&s->lock);
    for (size_t i = 0; i < n; i++, x++) {
        gencache__entry *e;
        if (x->op == GENCACHE__SAMPLE_PUT) {
            /* A tier of this size that holds the key would have hit: its caller would not have
             * stored it again. An expired value is replaced, which is not an eviction. */
            slot *sl = find_hash(s, x->hash);
            e = sl ? sl->e : NULL;
            if (e && !gencache__entry_expired(e, x->now_ms))
                continue;
            if (e) {
                table_unlink(m, s, e);
                gencache__entry_release(e);
            }
        } else {
            gencache__entry *expired;
            e = find_live(m, s, find_hash(s, x->hash), x->now_ms, true, &expired);
            if (expired) {
                atomic_fetch_add(&m->ev_expired, 1);
                dispose(m, expired, GENCACHE__EVICT_EXPIRED);
            }
            if (e) {
                h++;
                saved += e->cost_ms;
                continue;
            }
            /* A smaller tier misses where the real one hit: its caller would compute the value
             * and store it, as the real one's did on its miss. */
            if (x->op != GENCACHE__SAMPLE_GET_FOUND)
                continue;
        }
        replay_store(m, s, x);
    }
    pthread_mutex_unlock(&s->lock);
    *hits = h;
    *saved_ms = saved;
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

/* Stores e (a new reference for the table), replacing the key's value. The time plays no part:
 * an older value goes whether it expired or not. */
static int mem_put(gencache__tier *t, gencache__entry *e, uint64_t now_ms)
{
    (void)now_ms;
    mem_tier *m = (mem_tier *)t;
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
    slot *sl = table_find(s, e->key, e->key_len, e->hash);
    gencache__entry *old = sl ? sl->e : NULL;
    if (old)
        table_unlink(m, s, old);
    /* The table's reference. A count of 1 is the caller's alone (a new entry, or one a lower
     * tier just built): nobody else can reach e to change it, so a store does. */
    if (atomic_load_explicit(&e->refs, memory_order_relaxed) == 1)
        atomic_store_explicit(&e->refs, 2, memory_order_relaxed);
    else
        gencache__entry_retain(e);
    int rc = table_link(m, s, e);
    if (rc == GENCACHE_OK && !e->pinned && over_limits(m)) {
        /* An eviction follows: the shard's hint, which the insert made unknown, is found now,
         * under the lock already held, rather than by taking it again. */
        double rank;
        candidate(m, s, e->pol_kind, e, &rank);
    }
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
    slot *sl = table_find(s, key, strlen(key), hash);
    gencache__entry *e = sl ? sl->e : NULL;
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
    /* Chosen first, taken out after: taking one out moves others between slots. */
    for (size_t i = 0; i < s->cap; i++) {
        gencache__entry *e = s->slots[i].e;
        if (e && pred(ud, e)) {
            e->hnext = taken;
            taken = e;
        }
    }
    for (gencache__entry *e = taken; e; e = e->hnext) {
        if (for_room && m->base.before_evict)
            m->base.before_evict(m->base.on_evict_userdata, e);
        table_unlink(m, s, e);
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
        for (size_t j = 0; j < s->cap; j++)
            if (s->slots[j].e)
                fn(userdata, s->slots[j].e);
        pthread_mutex_unlock(&s->lock);
    }
}

static void mem_stats(gencache__tier *t, gencache_tier_stats *out)
{
    mem_tier *m = (mem_tier *)t;
    memset(out, 0, sizeof *out);
    out->tier = "mem";
    out->bytes = atomic_load(&m->bytes) + atomic_load(&m->reserved);
    out->entries = tier_entries(m);
    out->max_bytes = m->opts.max_bytes;
    out->max_entries = m->opts.max_entries;
    out->pinned_entries = atomic_load(&m->pinned);
    out->pinned_bytes = atomic_load(&m->pinned_bytes);
    out->pins_refused = atomic_load(&m->pins_refused);
    out->evictions_capacity = atomic_load(&m->ev_capacity);
    for (unsigned i = 0; i < m->nshards; i++)
        out->evictions_capacity +=
            atomic_load_explicit(&m->shards[i].ev_capacity, memory_order_relaxed);
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
        if (!s->slots)
            continue;
        for (size_t j = 0; j < s->cap; j++) {
            gencache__entry *e = s->slots[j].e;
            if (e) {
                e->lru_prev = e->lru_next = NULL;
                e->linked = false;
                gencache__entry_release(e);
            }
        }
        for (unsigned k = 0; k < GENCACHE__POLICY_KINDS; k++)
            gencache__policy_of((int)k)->fini(&s->pol[k]);
        gencache__free(m->opts.alloc, s->slots);
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
    for (unsigned k = 0; k < GENCACHE__POLICY_KINDS; k++)
        m->pol_ops[k] = gencache__policy_of((int)k);
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
        s->slots = gencache__calloc(opts->alloc, INITIAL_SLOTS, sizeof *s->slots);
        if (!s->slots) {
            m->nshards = i; /* close frees only the shards made so far */
            mem_close(&m->base);
            return GENCACHE_ENOMEM;
        }
        s->cap = INITIAL_SLOTS;
        for (unsigned k = 0; k < GENCACHE__POLICY_KINDS; k++) {
            s->pol[k].shared = &m->pol_shared;
            atomic_init(&s->hint[k].rank_bits, HINT_NONE);
            atomic_init(&s->hint[k].access_ms, 0);
        }
        pthread_mutex_init(&s->lock, NULL);
    }
    *out = &m->base;
    return GENCACHE_OK;
}

uint64_t gencache__mem_tier_layer_hits(gencache__tier *t, uint32_t layer)
{
    mem_tier *m = (mem_tier *)t;
    uint64_t n = 0;
    for (unsigned i = 0; layer < GENCACHE_MAX_LAYERS && i < m->nshards; i++)
        n += atomic_load_explicit(&m->shards[i].layer_hits[layer], memory_order_relaxed);
    return n;
}

void gencache__mem_tier_set_layer_policy(gencache__tier *t, uint32_t layer, int kind)
{
    mem_tier *m = (mem_tier *)t;
    if (layer < GENCACHE_MAX_LAYERS)
        m->layer_policy[layer] = (uint8_t)(gencache__policy_of(kind) ? kind : (int)m->opts.policy);
}
