/*
 * ghost.c: the ghost list, hashes of keys recently evicted for lack of room. A miss on a ghost
 * key is a "ghost hit": a hit the cache would have had with more room, which is how an operator
 * sizes the cache from data. Keys are kept FIFO in a ring; an open-addressing set (linear probing,
 * backward-shift deletion) answers membership, and remembers when each key was added so a caller
 * can ask for the recent ones only. Each hash is in the ring at most once.
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
