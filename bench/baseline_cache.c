/*
 * baseline_cache.c: see baseline_cache.h. The table holds one reference to each item and each
 * reader one more; the mutex guards the table and the CLOCK hand, never an item's bytes.
 */
#include "baseline_cache.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

struct bl_item {
    _Atomic uint32_t refs;
    uint32_t key_len;
    size_t size;
    unsigned char *value;
    char key[];
};

typedef struct slot {
    uint64_t hash; /* 0: empty */
    bl_item *item;
    bool referenced; /* CLOCK bit: set by a hit, cleared by the hand */
} slot;

struct bl_cache {
    pthread_mutex_t mu;
    slot *slots;
    size_t cap; /* power of two, at most half full */
    size_t count;
    size_t bytes, max_bytes;
    size_t hand;
};

static uint64_t hash_of(const char *key, size_t len)
{
    uint64_t h = XXH3_64bits(key, len);
    return h ? h : 1;
}

bl_cache *bl_cache_new(size_t max_bytes)
{
    bl_cache *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->cap = 1024;
    c->slots = calloc(c->cap, sizeof *c->slots);
    if (!c->slots) {
        free(c);
        return NULL;
    }
    c->max_bytes = max_bytes;
    pthread_mutex_init(&c->mu, NULL);
    return c;
}

void bl_item_release(bl_item *it)
{
    if (it && atomic_fetch_sub_explicit(&it->refs, 1, memory_order_acq_rel) == 1)
        free(it);
}

void bl_cache_free(bl_cache *c)
{
    for (size_t i = 0; i < c->cap; i++)
        if (c->slots[i].hash)
            bl_item_release(c->slots[i].item);
    pthread_mutex_destroy(&c->mu);
    free(c->slots);
    free(c);
}

/* The slot holding key, or the empty slot where it would go. */
static size_t probe(const bl_cache *c, uint64_t h, const char *key, size_t len)
{
    size_t i = h & (c->cap - 1);
    while (c->slots[i].hash && !(c->slots[i].hash == h && c->slots[i].item->key_len == len &&
                                 memcmp(c->slots[i].item->key, key, len) == 0))
        i = (i + 1) & (c->cap - 1);
    return i;
}

/* Empties slot i and shifts the rest of its run back so that no probe stops early. */
static void remove_at(bl_cache *c, size_t i)
{
    size_t mask = c->cap - 1;
    c->slots[i] = (slot){0, NULL, false};
    for (size_t j = (i + 1) & mask; c->slots[j].hash; j = (j + 1) & mask) {
        size_t home = c->slots[j].hash & mask;
        if (((j - home) & mask) >= ((j - i) & mask)) {
            c->slots[i] = c->slots[j];
            c->slots[j] = (slot){0, NULL, false};
            i = j;
        }
    }
    c->count--;
}

static int grow(bl_cache *c)
{
    slot *old = c->slots;
    size_t n = c->cap;
    slot *ns = calloc(n * 2, sizeof *ns);
    if (!ns)
        return -1;
    c->slots = ns;
    c->cap = n * 2;
    for (size_t i = 0; i < n; i++)
        if (old[i].hash) {
            size_t j = old[i].hash & (c->cap - 1);
            while (ns[j].hash)
                j = (j + 1) & (c->cap - 1);
            ns[j] = old[i];
        }
    free(old);
    return 0;
}

bl_item *bl_cache_get(bl_cache *c, const char *key)
{
    size_t len = strlen(key);
    uint64_t h = hash_of(key, len);
    pthread_mutex_lock(&c->mu);
    slot *s = &c->slots[probe(c, h, key, len)];
    bl_item *it = s->item;
    if (s->hash) {
        s->referenced = true;
        atomic_fetch_add_explicit(&it->refs, 1, memory_order_relaxed);
    } else {
        it = NULL;
    }
    pthread_mutex_unlock(&c->mu);
    return it;
}

int bl_cache_put(bl_cache *c, const char *key, const void *data, size_t size)
{
    size_t len = strlen(key);
    bl_item *it = malloc(sizeof *it + len + 1 + size);
    if (!it)
        return -1;
    atomic_init(&it->refs, 1);
    it->key_len = (uint32_t)len;
    memcpy(it->key, key, len + 1);
    it->value = (unsigned char *)it->key + len + 1;
    it->size = size;
    memcpy(it->value, data, size);
    uint64_t h = hash_of(key, len);
    bl_item *dropped[8];
    size_t n_dropped = 0;
    pthread_mutex_lock(&c->mu);
    if ((c->count + 1) * 2 > c->cap && grow(c) != 0) {
        pthread_mutex_unlock(&c->mu);
        free(it);
        return -1;
    }
    size_t i = probe(c, h, key, len);
    if (c->slots[i].hash) {
        c->bytes -= c->slots[i].item->size;
        dropped[n_dropped++] = c->slots[i].item;
    } else {
        c->count++;
    }
    c->slots[i] = (slot){h, it, false};
    c->bytes += size;
    /* CLOCK: sweep the table, giving referenced items a second chance, until the limit holds. */
    while (c->max_bytes && c->bytes > c->max_bytes && c->count > 1 && n_dropped < 8) {
        slot *v = &c->slots[c->hand];
        if (v->hash && v->item != it && !v->referenced) {
            c->bytes -= v->item->size;
            dropped[n_dropped++] = v->item;
            remove_at(c, c->hand); /* a later item may have shifted into this slot: look again */
            continue;
        }
        v->referenced = false;
        c->hand = (c->hand + 1) & (c->cap - 1);
    }
    pthread_mutex_unlock(&c->mu);
    for (size_t k = 0; k < n_dropped; k++)
        bl_item_release(dropped[k]);
    return 0;
}

const void *bl_item_data(const bl_item *it)
{
    return it->value;
}

size_t bl_item_size(const bl_item *it)
{
    return it->size;
}
