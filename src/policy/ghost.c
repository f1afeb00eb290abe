/*
 * ghost.c: the ghost list, hashes of keys recently evicted for lack of room. A miss on a ghost
 * key is a "ghost hit": a hit the cache would have had with more room, which is how an operator
 * sizes the cache from data. Keys are kept FIFO in a ring; an open-addressing set (linear probing,
 * backward-shift deletion) answers membership, and remembers when each key was added so a caller
 * can ask for the recent ones only. Each hash is in the ring at most once.
 * The cache's own estimate (gencache__ghosts) samples keys by hash, as the miss-ratio curve does:
 * only keys whose hash falls under a threshold are remembered or looked up, each standing for
 * 1 / rate keys, and the sampled keys are spread over shards with a lock each. Every other key
 * costs one compare on the eviction and the miss paths.
 */
#include <string.h>

#include "internal.h"

struct gencache__ghost {
    pthread_mutex_t lock;
    const gencache_allocator *alloc;
    uint64_t *ring;  /* capacity slots, oldest at head */
    uint64_t *table; /* mask + 1 slots; 0 marks an empty slot */
    uint64_t *added; /* beside table: the value of `adds` when that slot's hash came in */
    uint64_t adds;   /* additions so far */
    size_t capacity, head, count, mask;
};

/* 0 marks an empty table slot, so the hash 0 is stored as 1. */
static uint64_t norm(uint64_t h)
{
    return h ? h : 1;
}

static size_t slot_of(const gencache__ghost *g, uint64_t h)
{
    /* The hashes are XXH3 outputs: their low bits are already well mixed. */
    return (size_t)h & g->mask;
}

static bool table_find(const gencache__ghost *g, uint64_t h, size_t *pos)
{
    for (size_t i = slot_of(g, h);; i = (i + 1) & g->mask) {
        if (g->table[i] == 0)
            return false;
        if (g->table[i] == h) {
            *pos = i;
            return true;
        }
    }
}

static void table_insert(gencache__ghost *g, uint64_t h)
{
    size_t i = slot_of(g, h);
    while (g->table[i] != 0)
        i = (i + 1) & g->mask;
    g->table[i] = h;
    g->added[i] = ++g->adds;
}

static void table_delete(gencache__ghost *g, uint64_t h)
{
    size_t hole;
    if (!table_find(g, h, &hole))
        return;
    g->table[hole] = 0;
    /* Backward shift: pull later members of the probe run into the hole so that every lookup
     * still finds its key before an empty slot. */
    for (size_t i = (hole + 1) & g->mask; g->table[i] != 0; i = (i + 1) & g->mask) {
        size_t home = slot_of(g, g->table[i]);
        /* Move the key if its home is not in the cyclic range (hole, i]. */
        bool in_range = hole < i ? (home > hole && home <= i) : (home > hole || home <= i);
        if (!in_range) {
            g->table[hole] = g->table[i];
            g->added[hole] = g->added[i];
            g->table[i] = 0;
            hole = i;
        }
    }
}

int gencache__ghost_new(const gencache_allocator *a, uint64_t capacity, gencache__ghost **out)
{
    *out = NULL;
    if (capacity == 0 || capacity > ((uint64_t)1 << 30))
        return GENCACHE_EINVAL;
    gencache__ghost *g = gencache__calloc(a, 1, sizeof *g);
    if (!g)
        return GENCACHE_ENOMEM;
    size_t tsize = 2;
    while (tsize < capacity * 2)
        tsize <<= 1;
    g->alloc = a;
    g->capacity = (size_t)capacity;
    g->mask = tsize - 1;
    g->ring = gencache__calloc(a, g->capacity, sizeof *g->ring);
    g->table = gencache__calloc(a, tsize, sizeof *g->table);
    g->added = gencache__calloc(a, tsize, sizeof *g->added);
    if (!g->ring || !g->table || !g->added) {
        gencache__free(a, g->ring);
        gencache__free(a, g->table);
        gencache__free(a, g->added);
        gencache__free(a, g);
        return GENCACHE_ENOMEM;
    }
    pthread_mutex_init(&g->lock, NULL);
    *out = g;
    return GENCACHE_OK;
}

void gencache__ghost_free(gencache__ghost *g)
{
    if (!g)
        return;
    pthread_mutex_destroy(&g->lock);
    gencache__free(g->alloc, g->ring);
    gencache__free(g->alloc, g->table);
    gencache__free(g->alloc, g->added);
    gencache__free(g->alloc, g);
}

void gencache__ghost_add(gencache__ghost *g, uint64_t hash)
{
    if (!g)
        return;
    uint64_t h = norm(hash);
    size_t pos;
    pthread_mutex_lock(&g->lock);
    if (!table_find(g, h, &pos)) {
        if (g->count == g->capacity) {
            table_delete(g, g->ring[g->head]);
            g->head = (g->head + 1) % g->capacity;
            g->count--;
        }
        g->ring[(g->head + g->count) % g->capacity] = h;
        g->count++;
        table_insert(g, h);
    }
    pthread_mutex_unlock(&g->lock);
}

bool gencache__ghost_contains(gencache__ghost *g, uint64_t hash)
{
    if (!g)
        return false;
    size_t pos;
    pthread_mutex_lock(&g->lock);
    bool found = table_find(g, norm(hash), &pos);
    pthread_mutex_unlock(&g->lock);
    return found;
}

uint64_t gencache__ghost_count(gencache__ghost *g)
{
    if (!g)
        return 0;
    pthread_mutex_lock(&g->lock);
    uint64_t n = g->count;
    pthread_mutex_unlock(&g->lock);
    return n;
}

bool gencache__ghost_recent(gencache__ghost *g, uint64_t hash, uint64_t window)
{
    if (!g)
        return false;
    size_t pos;
    pthread_mutex_lock(&g->lock);
    bool found = table_find(g, norm(hash), &pos) && g->adds - g->added[pos] < window;
    pthread_mutex_unlock(&g->lock);
    return found;
}

/* ---- the cache's sampled, sharded ghost list ---- */

/* Sampled keys most ghost lists remember: below this the sampling rate rises (up to every key),
 * above it the rate falls (down to 1 / 2^GHOSTS_MAX_SHIFT). */
#define GHOSTS_SAMPLED_MIN 4096
#define GHOSTS_MAX_SHIFT   4
#define GHOSTS_SHARDS_MAX  8

struct gencache__ghosts {
    const gencache_allocator *alloc;
    unsigned shift;           /* a key is sampled when the top `shift` bits of its hash are 0 */
    unsigned shard_mask;      /* shards - 1 */
    gencache__ghost **shards; /* each with its own lock and allocation; picked by bits 52..54 of
                                 the hash (bits 40..49 pick memory's shards) */
};

unsigned gencache__ghosts_default_shift(uint64_t capacity)
{
    unsigned s = 0;
    while (s < GHOSTS_MAX_SHIFT && (capacity >> (s + 1)) >= GHOSTS_SAMPLED_MIN)
        s++;
    return s;
}

int gencache__ghosts_new(const gencache_allocator *a, uint64_t capacity, unsigned shift,
                         gencache__ghosts **out)
{
    *out = NULL;
    if (capacity == 0 || capacity > ((uint64_t)1 << 30) || shift > 16)
        return GENCACHE_EINVAL;
    uint64_t sampled = capacity >> shift;
    if (sampled == 0)
        sampled = 1;
    unsigned n = 1; /* a shard per 512 sampled keys, at most GHOSTS_SHARDS_MAX */
    while (n < GHOSTS_SHARDS_MAX && sampled / (n * 2) >= 512)
        n *= 2;
    gencache__ghosts *g = gencache__calloc(a, 1, sizeof *g);
    if (!g)
        return GENCACHE_ENOMEM;
    g->alloc = a;
    g->shift = shift;
    g->shard_mask = n - 1;
    g->shards = gencache__calloc(a, n, sizeof *g->shards);
    if (!g->shards) {
        gencache__free(a, g);
        return GENCACHE_ENOMEM;
    }
    for (unsigned i = 0; i < n; i++) {
        int rc = gencache__ghost_new(a, (sampled + n - 1) / n, &g->shards[i]);
        if (rc != GENCACHE_OK) {
            gencache__ghosts_free(g);
            return rc;
        }
    }
    *out = g;
    return GENCACHE_OK;
}

void gencache__ghosts_free(gencache__ghosts *g)
{
    if (!g)
        return;
    for (unsigned i = 0; g->shards && i <= g->shard_mask; i++)
        gencache__ghost_free(g->shards[i]);
    gencache__free(g->alloc, g->shards);
    gencache__free(g->alloc, g);
}

/* The shard of a sampled hash; NULL for a hash outside the sample. */
static gencache__ghost *ghosts_shard_of(const gencache__ghosts *g, uint64_t hash)
{
    if (g->shift && hash >> (64 - g->shift) != 0)
        return NULL;
    return g->shards[(hash >> 52) & g->shard_mask];
}

void gencache__ghosts_add(gencache__ghosts *g, uint64_t hash)
{
    gencache__ghost *s = g ? ghosts_shard_of(g, hash) : NULL;
    if (s)
        gencache__ghost_add(s, hash);
}

uint64_t gencache__ghosts_hit(gencache__ghosts *g, uint64_t hash)
{
    gencache__ghost *s = g ? ghosts_shard_of(g, hash) : NULL;
    return s && gencache__ghost_contains(s, hash) ? (uint64_t)1 << g->shift : 0;
}

unsigned gencache__ghosts_shift(const gencache__ghosts *g)
{
    return g ? g->shift : 0;
}
