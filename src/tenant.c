/*
 * tenant.c: the tenant registry. Each tenant has its rules (priority, quota, admin), per-layer
 * counters, and an exact account of its stored bytes: a table of the keys it holds in this node's
 * memory and disk tiers with their sizes, kept by the events that add or remove an entry (put,
 * delete, invalidation, expiry, an eviction with nowhere to demote to, a disk eviction) rather
 * than by periodic re-counting. Tenants are only ever added, never removed, so a tenant pointer
 * stays valid until the cache closes and lookups by name need no lock.
 */
#include <string.h>

#include "internal.h"

typedef struct usage_item {
    struct usage_item *next;
    uint64_t hash;
    uint64_t size;
    char key[];
} usage_item;

struct gencache__tenant {
    char name[GENCACHE_TENANT_NAME_MAX + 1];
    _Atomic int priority; /* gencache_priority */
    _Atomic uint64_t quota_bytes;
    _Atomic bool admin;
    const gencache_allocator *alloc;

    pthread_mutex_t mu; /* the usage table and its totals */
    usage_item **buckets;
    size_t nbuckets; /* power of two */
    uint64_t bytes, entries;

    _Atomic uint64_t lookups[GENCACHE_MAX_LAYERS], hits[GENCACHE_MAX_LAYERS],
        misses[GENCACHE_MAX_LAYERS], puts[GENCACHE_MAX_LAYERS], saved[GENCACHE_MAX_LAYERS];
};

struct gencache__tenants {
    const gencache_allocator *alloc;
    pthread_mutex_t mu; /* adding tenants */
    gencache__tenant *t[GENCACHE_MAX_TENANTS];
    _Atomic unsigned n; /* t[0..n) are published */
};

int gencache__tenants_new(const gencache_allocator *a, gencache__tenants **out)
{
    gencache__tenants *ts = gencache__calloc(a, 1, sizeof *ts);
    if (!ts)
        return GENCACHE_ENOMEM;
    ts->alloc = a;
    pthread_mutex_init(&ts->mu, NULL);
    *out = ts;
    return GENCACHE_OK;
}

static void tenant_free(gencache__tenant *t)
{
    for (size_t b = 0; t->buckets && b < t->nbuckets; b++)
        for (usage_item *it = t->buckets[b], *next; it; it = next) {
            next = it->next;
            gencache__free(t->alloc, it);
        }
    gencache__free(t->alloc, t->buckets);
    pthread_mutex_destroy(&t->mu);
    gencache__free(t->alloc, t);
}

void gencache__tenants_free(gencache__tenants *ts)
{
    if (!ts)
        return;
    for (unsigned i = 0; i < atomic_load(&ts->n); i++)
        tenant_free(ts->t[i]);
    pthread_mutex_destroy(&ts->mu);
    gencache__free(ts->alloc, ts);
}

bool gencache__tenant_name_valid(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > GENCACHE_TENANT_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = name[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '.' || ch == '-'))
            return false;
    }
    return true;
}

gencache__tenant *gencache__tenant_find(gencache__tenants *ts, const char *name)
{
    if (!ts || !name)
        return NULL;
    unsigned n = atomic_load_explicit(&ts->n, memory_order_acquire);
    for (unsigned i = 0; i < n; i++)
        if (strcmp(ts->t[i]->name, name) == 0)
            return ts->t[i];
    return NULL;
}

int gencache__tenant_obtain(gencache__tenants *ts, const char *name, gencache__tenant **out)
{
    *out = NULL;
    if (!gencache__tenant_name_valid(name))
        return GENCACHE_EINVAL;
    gencache__tenant *t = gencache__tenant_find(ts, name);
    if (t) {
        *out = t;
        return GENCACHE_OK;
    }
    pthread_mutex_lock(&ts->mu);
    int rc = GENCACHE_OK;
    t = gencache__tenant_find(ts, name); /* another thread may have added it meanwhile */
    if (!t) {
        unsigned n = atomic_load(&ts->n);
        if (n == GENCACHE_MAX_TENANTS) {
            rc = GENCACHE_ELIMIT;
        } else if (!(t = gencache__calloc(ts->alloc, 1, sizeof *t)) ||
                   !(t->buckets = gencache__calloc(ts->alloc, 64, sizeof *t->buckets))) {
            gencache__free(ts->alloc, t);
            t = NULL;
            rc = GENCACHE_ENOMEM;
        } else {
            strcpy(t->name, name);
            t->alloc = ts->alloc;
            t->nbuckets = 64;
            atomic_init(&t->priority, GENCACHE_PRIORITY_NORMAL);
            pthread_mutex_init(&t->mu, NULL);
            ts->t[n] = t;
            atomic_store_explicit(&ts->n, n + 1, memory_order_release);
        }
    }
    pthread_mutex_unlock(&ts->mu);
    *out = t;
    return rc;
}

void gencache__tenant_configure(gencache__tenant *t, gencache_priority priority,
                                uint64_t quota_bytes, bool admin)
{
    atomic_store(&t->priority, (int)priority);
    atomic_store(&t->quota_bytes, quota_bytes);
    atomic_store(&t->admin, admin);
}

const char *gencache__tenant_name(const gencache__tenant *t)
{
    return t->name;
}

gencache_priority gencache__tenant_priority(const gencache__tenant *t)
{
    return (gencache_priority)atomic_load(&t->priority);
}

bool gencache__tenant_admin(const gencache__tenant *t)
{
    return atomic_load(&t->admin);
}

void gencache__tenant_options(const gencache__tenant *t, gencache_tenant_options *out)
{
    gencache_tenant_options_init(out);
    out->name = t->name;
    out->priority = (gencache_priority)atomic_load(&t->priority);
    out->quota_bytes = atomic_load(&t->quota_bytes);
    out->admin = atomic_load(&t->admin);
}

/* ---- the usage table (t->mu held) ---- */

static usage_item **slot_of(gencache__tenant *t, const char *key, uint64_t hash)
{
    usage_item **p = &t->buckets[hash & (t->nbuckets - 1)];
    while (*p && !((*p)->hash == hash && strcmp((*p)->key, key) == 0))
        p = &(*p)->next;
    return p;
}

/* Doubles the table when it is dense; a failed allocation only makes chains longer. */
static void grow(gencache__tenant *t)
{
    if (t->entries < 2 * t->nbuckets)
        return;
    size_t nb = 2 * t->nbuckets;
    usage_item **b = gencache__calloc(t->alloc, nb, sizeof *b);
    if (!b)
        return;
    for (size_t i = 0; i < t->nbuckets; i++)
        for (usage_item *it = t->buckets[i], *next; it; it = next) {
            next = it->next;
            it->next = b[it->hash & (nb - 1)];
            b[it->hash & (nb - 1)] = it;
        }
    gencache__free(t->alloc, t->buckets);
    t->buckets = b;
    t->nbuckets = nb;
}

int gencache__tenant_charge(gencache__tenant *t, const char *key, uint64_t hash, uint64_t size,
                            bool enforce, uint64_t *old_size)
{
    *old_size = UINT64_MAX; /* none */
    pthread_mutex_lock(&t->mu);
    usage_item **slot = slot_of(t, key, hash);
    uint64_t old = *slot ? (*slot)->size : 0;
    uint64_t quota = atomic_load(&t->quota_bytes);
    if (enforce && quota && t->bytes - old + size > quota) {
        pthread_mutex_unlock(&t->mu);
        return GENCACHE_ELIMIT;
    }
    if (*slot) {
        *old_size = old;
        (*slot)->size = size;
        t->bytes = t->bytes - old + size;
    } else {
        size_t kl = strlen(key);
        usage_item *it = gencache__malloc(t->alloc, sizeof *it + kl + 1);
        if (!it) {
            pthread_mutex_unlock(&t->mu);
            return GENCACHE_ENOMEM;
        }
        it->next = NULL;
        it->hash = hash;
        it->size = size;
        memcpy(it->key, key, kl + 1);
        *slot = it;
        t->bytes += size;
        t->entries++;
        grow(t);
    }
    pthread_mutex_unlock(&t->mu);
    return GENCACHE_OK;
}

void gencache__tenant_uncharge(gencache__tenant *t, const char *key, uint64_t hash,
                               uint64_t restore_size)
{
    pthread_mutex_lock(&t->mu);
    usage_item **slot = slot_of(t, key, hash);
    usage_item *it = *slot;
    if (it && restore_size != UINT64_MAX) {
        t->bytes = t->bytes - it->size + restore_size;
        it->size = restore_size;
    } else if (it) {
        *slot = it->next;
        t->bytes -= it->size;
        t->entries--;
        gencache__free(t->alloc, it);
    }
    pthread_mutex_unlock(&t->mu);
}

void gencache__tenants_forget(gencache__tenants *ts, const char *tenant, const char *key,
                              uint64_t hash)
{
    gencache__tenant *t = gencache__tenant_find(ts, tenant);
    if (t)
        gencache__tenant_uncharge(t, key, hash, UINT64_MAX);
}

void gencache__tenants_forget_key(gencache__tenants *ts, const char *key, uint64_t hash)
{
    unsigned n = atomic_load_explicit(&ts->n, memory_order_acquire);
    for (unsigned i = 0; i < n; i++)
        gencache__tenant_uncharge(ts->t[i], key, hash, UINT64_MAX);
}

/* ---- counters ---- */

void gencache__tenant_count(gencache__tenant *t, uint32_t layer, gencache__tenant_event ev,
                            uint64_t cost_ms)
{
    if (layer >= GENCACHE_MAX_LAYERS)
        return;
    switch (ev) {
    case GENCACHE__TENANT_HIT:
        atomic_fetch_add_explicit(&t->lookups[layer], 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&t->hits[layer], 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&t->saved[layer], cost_ms, memory_order_relaxed);
        break;
    case GENCACHE__TENANT_MISS:
        atomic_fetch_add_explicit(&t->lookups[layer], 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&t->misses[layer], 1, memory_order_relaxed);
        break;
    case GENCACHE__TENANT_PUT:
        atomic_fetch_add_explicit(&t->puts[layer], 1, memory_order_relaxed);
        break;
    }
}

void gencache__tenant_stats(gencache__tenant *t, gencache_tenant_stats *out)
{
    out->tenant = t->name;
    out->priority = (gencache_priority)atomic_load(&t->priority);
    out->quota_bytes = atomic_load(&t->quota_bytes);
    pthread_mutex_lock(&t->mu);
    out->bytes = t->bytes;
    out->entries = t->entries;
    pthread_mutex_unlock(&t->mu);
    for (uint32_t i = 0; i < out->n_layers && i < GENCACHE_MAX_LAYERS; i++) {
        gencache_layer_stats *s = &out->layers[i];
        s->lookups = atomic_load(&t->lookups[i]);
        s->hits = atomic_load(&t->hits[i]);
        s->misses = atomic_load(&t->misses[i]);
        s->puts = atomic_load(&t->puts[i]);
        s->cost_ms_saved = atomic_load(&t->saved[i]);
    }
}
