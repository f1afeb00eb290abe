/*
 * tenancy.c: what the daemon keeps per tenant, since the library's counters and limits are global:
 * the keys each tenant stored with their sizes (for quota_bytes), per-layer lookup counters (what
 * GET /v1/stats shows a tenant), and the memory-pressure state. The cache may evict or expire an
 * entry without telling the daemon, so a tenant's byte count is an upper bound that
 * gcd_quota_reconcile() brings back to what the cache still holds (peeking each key); it runs
 * before a put is refused, after deletes and invalidations, and every ten seconds.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

#define DEFAULT_WARN_RATIO      0.85
#define PRESSURE_HYSTERESIS     0.05
#define DEFAULT_PRESSURE_TTL_MS (10ull * 60 * 1000)

typedef struct tracked {
    struct tracked *next;
    uint64_t size;
    char key[];
} tracked;

typedef struct layer_counts {
    char name[40];
    uint64_t lookups, hits, misses, puts, cost_ms_saved;
} layer_counts;

typedef struct tenant_state {
    const gcd_tenant *t;
    pthread_mutex_t mu;
    tracked **buckets; /* n_buckets, a power of two */
    size_t n_buckets;
    uint64_t bytes, entries;
    layer_counts layers[GENCACHE_MAX_LAYERS];
    size_t n_layers;
} tenant_state;

struct gcd_tenancy {
    tenant_state *tenants; /* cfg->n_tenants */
    size_t n;
    _Atomic double ratio;
    atomic_uint level;
    atomic_uint_fast64_t evicted;
};

static tenant_state *state_of(gcd_server *srv, const char *tenant)
{
    struct gcd_tenancy *ty = srv->tenancy;
    if (!ty || !tenant)
        return NULL;
    for (size_t i = 0; i < ty->n; i++)
        if (strcmp(ty->tenants[i].t->name, tenant) == 0)
            return &ty->tenants[i];
    return NULL;
}

int gcd_tenancy_init(gcd_server *srv)
{
    struct gcd_tenancy *ty = calloc(1, sizeof *ty);
    if (!ty)
        return -1;
    size_t n = srv->cfg->n_tenants;
    ty->tenants = calloc(n ? n : 1, sizeof *ty->tenants);
    if (!ty->tenants) {
        free(ty);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        tenant_state *ts = &ty->tenants[i];
        ts->t = &srv->cfg->tenants[i];
        pthread_mutex_init(&ts->mu, NULL);
        ts->n_buckets = 256;
        ts->buckets = calloc(ts->n_buckets, sizeof *ts->buckets);
        ty->n = i + 1;
        if (!ts->buckets) {
            srv->tenancy = ty;
            gcd_tenancy_free(srv);
            return -1;
        }
    }
    atomic_init(&ty->ratio, 0.0);
    atomic_init(&ty->level, 0u);
    atomic_init(&ty->evicted, 0u);
    srv->tenancy = ty;
    return 0;
}

void gcd_tenancy_free(gcd_server *srv)
{
    struct gcd_tenancy *ty = srv->tenancy;
    if (!ty)
        return;
    for (size_t i = 0; i < ty->n; i++) {
        tenant_state *ts = &ty->tenants[i];
        for (size_t b = 0; ts->buckets && b < ts->n_buckets; b++) {
            for (tracked *e = ts->buckets[b], *next; e; e = next) {
                next = e->next;
                free(e);
            }
        }
        free(ts->buckets);
        pthread_mutex_destroy(&ts->mu);
    }
    free(ty->tenants);
    free(ty);
    srv->tenancy = NULL;
}

/* ---- tracked keys (the tenant's lock held) -------------------------------------------------- */

static size_t hash_key(const char *key)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *key; key++)
        h = (h ^ (unsigned char)*key) * 1099511628211ull;
    return (size_t)h;
}

static tracked **slot_of(tenant_state *ts, const char *key)
{
    tracked **p = &ts->buckets[hash_key(key) & (ts->n_buckets - 1)];
    while (*p && strcmp((*p)->key, key) != 0)
        p = &(*p)->next;
    return p;
}

static void grow(tenant_state *ts)
{
    if (ts->entries < ts->n_buckets * 2)
        return;
    size_t nb = ts->n_buckets * 2;
    tracked **b = calloc(nb, sizeof *b);
    if (!b)
        return; /* longer chains, still correct */
    for (size_t i = 0; i < ts->n_buckets; i++) {
        for (tracked *e = ts->buckets[i], *next; e; e = next) {
            next = e->next;
            size_t h = hash_key(e->key) & (nb - 1);
            e->next = b[h];
            b[h] = e;
        }
    }
    free(ts->buckets);
    ts->buckets = b;
    ts->n_buckets = nb;
}

static void drop(tenant_state *ts, tracked **slot)
{
    tracked *e = *slot;
    *slot = e->next;
    ts->bytes -= e->size;
    ts->entries--;
    free(e);
}

/* Drops the keys the cache no longer holds for this tenant (evicted, expired, deleted, or
 * replaced by another tenant's entry). */
static void reconcile_locked(gcd_server *srv, tenant_state *ts)
{
    for (size_t b = 0; b < ts->n_buckets; b++) {
        tracked **p = &ts->buckets[b];
        while (*p) {
            gencache_handle *h = NULL;
            bool keep = false;
            if (gencache_peek(srv->cache, (*p)->key, &h) == 0) {
                const char *owner = gencache_handle_meta(h)->tenant;
                keep = owner && strcmp(owner, ts->t->name) == 0;
                gencache_handle_release(h);
            }
            if (keep)
                p = &(*p)->next;
            else
                drop(ts, p);
        }
    }
}

int gcd_quota_reserve(gcd_server *srv, const char *tenant, const char *key, uint64_t size)
{
    tenant_state *ts = state_of(srv, tenant);
    if (!ts)
        return 0;
    pthread_mutex_lock(&ts->mu);
    tracked **slot = slot_of(ts, key);
    uint64_t old = *slot ? (*slot)->size : 0;
    uint64_t quota = ts->t->quota_bytes;
    if (quota && ts->bytes - old + size > quota) {
        reconcile_locked(srv, ts);
        slot = slot_of(ts, key);
        old = *slot ? (*slot)->size : 0;
        if (ts->bytes - old + size > quota) {
            pthread_mutex_unlock(&ts->mu);
            return GENCACHE_EFULL;
        }
    }
    if (*slot) {
        ts->bytes = ts->bytes - old + size;
        (*slot)->size = size;
    } else {
        size_t kl = strlen(key);
        tracked *e = malloc(sizeof *e + kl + 1);
        if (!e) {
            pthread_mutex_unlock(&ts->mu);
            return GENCACHE_ENOMEM;
        }
        memcpy(e->key, key, kl + 1);
        e->size = size;
        e->next = NULL;
        *slot = e;
        ts->bytes += size;
        ts->entries++;
        grow(ts);
    }
    pthread_mutex_unlock(&ts->mu);
    return 0;
}

void gcd_quota_cancel(gcd_server *srv, const char *tenant, const char *key)
{
    tenant_state *ts = state_of(srv, tenant);
    if (!ts)
        return;
    pthread_mutex_lock(&ts->mu);
    tracked **slot = slot_of(ts, key);
    if (*slot)
        drop(ts, slot);
    pthread_mutex_unlock(&ts->mu);
}

void gcd_quota_reconcile(gcd_server *srv, const char *tenant)
{
    struct gcd_tenancy *ty = srv->tenancy;
    for (size_t i = 0; ty && i < ty->n; i++) {
        tenant_state *ts = &ty->tenants[i];
        if (tenant && strcmp(ts->t->name, tenant) != 0)
            continue;
        pthread_mutex_lock(&ts->mu);
        reconcile_locked(srv, ts);
        pthread_mutex_unlock(&ts->mu);
    }
}

void gcd_quota_usage(gcd_server *srv, const char *tenant, uint64_t *bytes, uint64_t *entries)
{
    *bytes = *entries = 0;
    tenant_state *ts = state_of(srv, tenant);
    if (!ts)
        return;
    pthread_mutex_lock(&ts->mu);
    *bytes = ts->bytes;
    *entries = ts->entries;
    pthread_mutex_unlock(&ts->mu);
}

/* ---- counters ------------------------------------------------------------------------------- */

void gcd_tenant_count(gcd_server *srv, const char *tenant, const char *layer, int what,
                      uint64_t cost_ms)
{
    tenant_state *ts = state_of(srv, tenant);
    if (!ts || !layer)
        return;
    pthread_mutex_lock(&ts->mu);
    layer_counts *lc = NULL;
    for (size_t i = 0; i < ts->n_layers && !lc; i++)
        if (strcmp(ts->layers[i].name, layer) == 0)
            lc = &ts->layers[i];
    if (!lc && ts->n_layers < GENCACHE_MAX_LAYERS && strlen(layer) < sizeof lc->name) {
        lc = &ts->layers[ts->n_layers++];
        memset(lc, 0, sizeof *lc);
        strcpy(lc->name, layer);
    }
    if (lc) {
        if (what == GCD_COUNT_HIT) {
            lc->lookups++;
            lc->hits++;
            lc->cost_ms_saved += cost_ms;
        } else if (what == GCD_COUNT_MISS) {
            lc->lookups++;
            lc->misses++;
        } else {
            lc->puts++;
        }
    }
    pthread_mutex_unlock(&ts->mu);
}

json_t *gcd_tenancy_stats_json(gcd_server *srv, const char *tenant)
{
    tenant_state *ts = state_of(srv, tenant);
    if (!ts)
        return NULL;
    json_t *layers = json_object();
    pthread_mutex_lock(&ts->mu);
    for (size_t i = 0; layers && i < ts->n_layers; i++) {
        const layer_counts *l = &ts->layers[i];
        json_object_set_new(layers, l->name,
                            json_pack("{s:I,s:I,s:I,s:I,s:I,s:f}", "lookups",
                                      (json_int_t)l->lookups, "hits", (json_int_t)l->hits, "misses",
                                      (json_int_t)l->misses, "puts", (json_int_t)l->puts,
                                      "cost_ms_saved", (json_int_t)l->cost_ms_saved, "hit_ratio",
                                      l->lookups ? (double)l->hits / (double)l->lookups : 0.0));
    }
    uint64_t bytes = ts->bytes, entries = ts->entries;
    pthread_mutex_unlock(&ts->mu);
    static const char *const prio[] = {"high", "normal", "batch"};
    return json_pack("{s:s,s:s,s:o,s:{s:I,s:I,s:I}}", "tenant", ts->t->name, "priority",
                     prio[ts->t->priority], "layers", layers, "usage", "bytes", (json_int_t)bytes,
                     "entries", (json_int_t)entries, "quota_bytes", (json_int_t)ts->t->quota_bytes);
}

/* ---- memory pressure ------------------------------------------------------------------------ */

double gcd_pressure_ratio(gcd_server *srv)
{
    return srv->tenancy ? atomic_load(&srv->tenancy->ratio) : 0.0;
}

unsigned gcd_pressure_level(gcd_server *srv)
{
    return srv->tenancy ? atomic_load(&srv->tenancy->level) : 0u;
}

uint64_t gcd_pressure_evicted(gcd_server *srv)
{
    return srv->tenancy ? (uint64_t)atomic_load(&srv->tenancy->evicted) : 0u;
}

uint64_t gcd_pressure_ttl_ms(gcd_server *srv, const char *tenant, const char *layer,
                             uint64_t ttl_ms)
{
    if (gcd_pressure_level(srv) < 2)
        return ttl_ms;
    const gcd_tenant *t = gcd_tenant_find(srv->cfg, tenant);
    if (t && t->priority == GCD_PRIO_HIGH)
        return ttl_ms;
    uint64_t cap = srv->cfg->ext && srv->cfg->ext->pressure_ttl_ms ? srv->cfg->ext->pressure_ttl_ms
                                                                   : DEFAULT_PRESSURE_TTL_MS;
    uint64_t want = ttl_ms;
    if (!want) {
        gencache_layer_options lo;
        gencache_layer_options_init(&lo);
        if (layer && gencache_layer_get(srv->cache, layer, &lo) == 0)
            want = lo.ttl_ms;
    }
    return want && want < cap ? want : cap;
}

/* Moves every entry of batch-priority tenants out of memory (the library demotes them: disk and
 * Redis keep their copies, and write-back values are queued for disk first); returns how many. */
static uint64_t demote_batch(gcd_server *srv)
{
    uint64_t total = 0;
    for (size_t i = 0; i < srv->cfg->n_tenants; i++) {
        const gcd_tenant *t = &srv->cfg->tenants[i];
        if (t->priority != GCD_PRIO_BATCH)
            continue;
        gencache_filter f;
        gencache_filter_init(&f);
        f.tenant = t->name;
        uint64_t n = 0;
        if (gencache_demote(srv->cache, &f, &n) == 0)
            total += n;
    }
    return total;
}

/* A full memory tier is the normal state of a cache. Above warn_ratio, batch tenants' entries
 * leave memory first (level 1: nothing is deleted). Only when the library reports the tiers below
 * as unable to absorb more (the disk tier nearly full, or demotion not keeping up) are the
 * lifetimes of new entries shortened (level 2). */
void gcd_pressure_check(gcd_server *srv)
{
    struct gcd_tenancy *ty = srv->tenancy;
    if (!ty)
        return;
    double warn =
        srv->cfg->pressure_warn_ratio > 0 ? srv->cfg->pressure_warn_ratio : DEFAULT_WARN_RATIO;
    gencache_pressure p = {.struct_size = sizeof p};
    if (gencache_pressure_get(srv->cache, &p) != 0)
        return;
    unsigned level = atomic_load(&ty->level);
    unsigned next = level;
    if (p.mem_ratio >= warn) {
        if (level == 0)
            gcd_log(GENCACHE_LOG_INFO,
                    "memory pressure: the memory tier is %.0f%% full (threshold %.0f%%); "
                    "batch-priority tenants' entries leave memory first (kept on disk)",
                    p.mem_ratio * 100, warn * 100);
        uint64_t n = demote_batch(srv);
        if (n) {
            atomic_fetch_add(&ty->evicted, n);
            gcd_log(GENCACHE_LOG_DEBUG, "memory pressure: %" PRIu64 " batch entries demoted", n);
        }
        if (next == 0)
            next = 1;
    } else if (p.mem_ratio < warn - PRESSURE_HYSTERESIS && !p.degraded) {
        next = 0;
    }
    if (p.degraded)
        next = 2;
    else if (next == 2)
        next = p.mem_ratio >= warn ? 1 : 0;
    if (next == 2 && level < 2)
        gcd_log(GENCACHE_LOG_WARN,
                "pressure: the tiers below memory cannot keep up (disk %.0f%% full, %" PRIu64
                " bytes waiting to be written); shortening the TTL of new entries (tenants of "
                "high priority excepted)",
                p.disk_ratio * 100, p.writeback_bytes);
    else if (next < 2 && level == 2)
        gcd_log(GENCACHE_LOG_INFO, "pressure: relieved; new entries keep their TTL");
    atomic_store(&ty->level, next);
    atomic_store(&ty->ratio, p.mem_ratio);
}
