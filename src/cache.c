/*
 * cache.c: the orchestrator. It owns the layer table and an ordered list of tiers, fastest
 * first (mem, then disk and redis when configured). A get walks the tiers down and promotes what
 * it finds into the faster ones; a put lands in memory and, for write-through layers, in every
 * tier below; an entry evicted from memory is demoted to disk when it is still worth keeping.
 * The orchestrator never looks inside a tier: it speaks only through gencache__tier_ops.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

typedef struct layer {
    char name[GENCACHE__LAYER_NAME_MAX + 1];
    gencache_scope scope;
    uint64_t ttl_ms;
    bool sliding;
    bool write_through;
    _Atomic uint64_t lookups, hits, misses, ghost_hits, puts, cost_ms_saved;
} layer;

struct gencache {
    const gencache_allocator *alloc;
    gencache__log log;
    gencache_clock_fn clock_fn;
    void *clock_userdata;
    bool verify_mem_reads;
    layer layers[GENCACHE_MAX_LAYERS];
    unsigned n_layers;
    gencache__tier *tiers[GENCACHE_MAX_TIERS]; /* tiers[0] is the memory tier */
    unsigned n_tiers;
    gencache__ghost *ghost;
    _Atomic uint64_t invalidated;
};

struct gencache_handle {
    _Atomic uint32_t refs;
    gencache__entry *entry;
    gencache_meta meta;
};

#define MINUTE_MS (60u * 1000u)
#define DAY_MS (24u * 60u * MINUTE_MS)

/* The default layers of DESIGN.md section 2. */
static const struct {
    const char *name;
    gencache_scope scope;
    uint64_t ttl_ms;
    bool sliding;
    bool write_through;
} default_layers[] = {
    {"result", GENCACHE_SCOPE_TENANT, 7ull * DAY_MS, true, true},
    {"image_latent", GENCACHE_SCOPE_GLOBAL, 30ull * MINUTE_MS, false, false},
    {"text_embedding", GENCACHE_SCOPE_GLOBAL, 30ull * MINUTE_MS, false, false},
    {"condition", GENCACHE_SCOPE_TENANT, 10ull * MINUTE_MS, false, false},
    {"session", GENCACHE_SCOPE_SESSION, 5ull * MINUTE_MS, false, false},
};

static uint64_t now_ms(const gencache *c)
{
    return c->clock_fn(c->clock_userdata);
}

uint64_t gencache__cache_now_ms(gencache *cache)
{
    return now_ms(cache);
}

const gencache_allocator *gencache__cache_allocator(gencache *cache)
{
    return cache->alloc;
}

const gencache__log *gencache__cache_log(gencache *cache)
{
    return &cache->log;
}

int gencache__cache_charge(gencache *cache, int64_t delta_bytes)
{
    if (!cache)
        return GENCACHE_EINVAL;
    return gencache__mem_tier_reserve(cache->tiers[0], delta_bytes);
}

/* ---- layers ---- */

static int layer_index(const gencache *c, const char *name, size_t len)
{
    for (unsigned i = 0; i < c->n_layers; i++)
        if (strncmp(c->layers[i].name, name, len) == 0 && c->layers[i].name[len] == '\0')
            return (int)i;
    return -1;
}

static bool layer_name_valid(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > GENCACHE__LAYER_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = name[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_'))
            return false;
    }
    return true;
}

void gencache_layer_options_init(gencache_layer_options *opts)
{
    memset(opts, 0, sizeof *opts);
    opts->struct_size = sizeof *opts;
    opts->scope = GENCACHE_SCOPE_GLOBAL;
}

int gencache_layer_define(gencache *cache, const gencache_layer_options *opts)
{
    if (!cache || !opts || opts->struct_size < sizeof *opts || !layer_name_valid(opts->name))
        return GENCACHE_EINVAL;
    if (opts->scope < GENCACHE_SCOPE_GLOBAL || opts->scope > GENCACHE_SCOPE_SESSION)
        return GENCACHE_EINVAL;
    int i = layer_index(cache, opts->name, strlen(opts->name));
    if (i < 0) {
        if (cache->n_layers == GENCACHE_MAX_LAYERS)
            return GENCACHE_ELIMIT;
        i = (int)cache->n_layers++;
        strcpy(cache->layers[i].name, opts->name);
    }
    layer *l = &cache->layers[i];
    l->scope = opts->scope;
    l->ttl_ms = opts->ttl_ms;
    l->sliding = opts->sliding_ttl != 0;
    l->write_through = opts->write_through != 0;
    return GENCACHE_OK;
}

int gencache_layer_get(gencache *cache, const char *name, gencache_layer_options *out)
{
    if (!cache || !name || !out)
        return GENCACHE_EINVAL;
    int i = layer_index(cache, name, strlen(name));
    if (i < 0)
        return GENCACHE_ENOTFOUND;
    const layer *l = &cache->layers[i];
    gencache_layer_options_init(out);
    out->name = l->name;
    out->scope = l->scope;
    out->ttl_ms = l->ttl_ms;
    out->sliding_ttl = l->sliding;
    out->write_through = l->write_through;
    return GENCACHE_OK;
}

/* Resolves a key to its layer index. */
static int key_layer(const gencache *c, const char *key, int *idx)
{
    const char *name;
    size_t len;
    *idx = -1;
    int rc = gencache__key_split(key, &name, &len);
    if (rc != GENCACHE_OK)
        return rc;
    *idx = layer_index(c, name, len);
    return *idx < 0 ? GENCACHE_ENOTFOUND : GENCACHE_OK;
}

int gencache_key_check(gencache *cache, const char *key)
{
    if (!cache)
        return GENCACHE_EINVAL;
    int idx;
    return key_layer(cache, key, &idx);
}

/* ---- eviction and demotion ---- */

/* Called by a tier for each entry it evicted. Entries that leave for lack of room are
 * remembered as ghosts; entries leaving memory go down to the next tier when they are still
 * worth keeping (not about to expire, and not already there by write-through). */
static void on_evict(void *userdata, gencache__entry *e, gencache__evict_reason reason)
{
    gencache *c = userdata;
    if (reason != GENCACHE__EVICT_CAPACITY)
        return;
    gencache__ghost_add(c->ghost, e->hash);
    if (c->n_tiers < 2 || e->layer >= c->n_layers || c->layers[e->layer].write_through)
        return;
    uint64_t now = now_ms(c);
    uint64_t exp = atomic_load(&e->expires_ms);
    if (exp != 0 && exp <= now + 1000)
        return;
    for (unsigned i = 1; i < c->n_tiers; i++) {
        if (!(c->tiers[i]->ops->caps & GENCACHE__TIER_PERSISTENT) ||
            (c->tiers[i]->ops->caps & GENCACHE__TIER_SHARED))
            continue;
        c->tiers[i]->ops->put(c->tiers[i], e, now);
        break;
    }
}

/* ---- open and close ---- */

void gencache_options_init(gencache_options *opts)
{
    memset(opts, 0, sizeof *opts);
    opts->struct_size = sizeof *opts;
    opts->mem_max_bytes = 1ull << 30;
    opts->mem_shards = 16;
    opts->ghost_max_entries = 65536;
    opts->log_level = GENCACHE_LOG_INFO;
    opts->disk_max_bytes = 10ull << 30;
    opts->redis_timeout_ms = 100;
    opts->redis_max_value_bytes = 64ull << 20;
}

static int add_tier(gencache *c, gencache__tier *t)
{
    if (c->n_tiers == GENCACHE_MAX_TIERS) {
        t->ops->close(t);
        return GENCACHE_ELIMIT;
    }
    t->on_evict = on_evict;
    t->on_evict_userdata = c;
    c->tiers[c->n_tiers++] = t;
    return GENCACHE_OK;
}

int gencache_open(gencache **out, const gencache_options *user_opts)
{
    if (!out)
        return GENCACHE_EINVAL;
    *out = NULL;
    gencache_options opts;
    gencache_options_init(&opts);
    if (user_opts) {
        /* Callers built against an older, shorter struct get the defaults for the rest. */
        if (user_opts->struct_size < offsetof(gencache_options, data_dir) ||
            user_opts->struct_size > sizeof opts)
            return GENCACHE_EINVAL;
        memcpy(&opts, user_opts, user_opts->struct_size);
    }
    if (opts.allocator && (!opts.allocator->malloc_fn || !opts.allocator->free_fn))
        return GENCACHE_EINVAL;

    gencache *c = gencache__calloc(opts.allocator, 1, sizeof *c);
    if (!c)
        return GENCACHE_ENOMEM;
    c->alloc = opts.allocator;
    c->log.fn = opts.log_fn;
    c->log.userdata = opts.log_userdata;
    c->log.level = opts.log_level;
    c->clock_fn = opts.clock_fn ? opts.clock_fn : gencache__clock_realtime_ms;
    c->clock_userdata = opts.clock_userdata;
    for (size_t i = 0; i < sizeof default_layers / sizeof default_layers[0]; i++) {
        layer *l = &c->layers[c->n_layers++];
        strcpy(l->name, default_layers[i].name);
        l->scope = default_layers[i].scope;
        l->ttl_ms = default_layers[i].ttl_ms;
        l->sliding = default_layers[i].sliding;
        l->write_through = default_layers[i].write_through;
    }

    int rc = GENCACHE_OK;
    if (opts.ghost_max_entries)
        rc = gencache__ghost_new(c->alloc, opts.ghost_max_entries, &c->ghost);
    gencache__tier *mem = NULL;
    if (rc == GENCACHE_OK) {
        gencache__mem_options mo = {
            .max_bytes = opts.mem_max_bytes,
            .max_entries = opts.mem_max_entries,
            .shards = opts.mem_shards ? opts.mem_shards : 16,
            .verify_reads = opts.verify_mem_reads != 0,
            .alloc = c->alloc,
            .log = &c->log,
        };
        rc = gencache__mem_tier_open(&mo, &mem);
    }
    if (rc == GENCACHE_OK)
        rc = add_tier(c, mem);
    if (rc == GENCACHE_OK && opts.data_dir) {
        gencache__disk_options dopts = {
            .path = opts.data_dir,
            .max_bytes = opts.disk_max_bytes,
            .max_entries = opts.disk_max_entries,
            .alloc = c->alloc,
            .log = &c->log,
        };
        gencache__tier *disk = NULL;
        rc = gencache__disk_tier_open(&dopts, &disk);
        if (rc == GENCACHE_OK)
            rc = add_tier(c, disk);
    }
    if (rc == GENCACHE_OK && opts.redis_url) {
        gencache__redis_options ropts = {
            .url = opts.redis_url,
            .timeout_ms = opts.redis_timeout_ms,
            .max_value_bytes = opts.redis_max_value_bytes,
            .alloc = c->alloc,
            .log = &c->log,
        };
        gencache__tier *redis = NULL;
        rc = gencache__redis_tier_open(&ropts, &redis);
        if (rc == GENCACHE_OK)
            rc = add_tier(c, redis);
    }
    if (rc != GENCACHE_OK) {
        gencache_close(c);
        return rc;
    }
    *out = c;
    return GENCACHE_OK;
}

void gencache_close(gencache *cache)
{
    if (!cache)
        return;
    gencache__coalesce_close(cache);
    for (unsigned i = cache->n_tiers; i-- > 0;)
        cache->tiers[i]->ops->close(cache->tiers[i]);
    gencache__ghost_free(cache->ghost);
    gencache__free(cache->alloc, cache);
}

/* ---- put ---- */

void gencache_meta_init(gencache_meta *meta)
{
    memset(meta, 0, sizeof *meta);
    meta->struct_size = sizeof *meta;
}

/* A tensor's byte size must be its element count times its element size. */
static int check_tensor(const gencache_meta *m, size_t size)
{
    if (m->dtype == GENCACHE_DTYPE_NONE)
        return m->ndim == 0 ? GENCACHE_OK : GENCACHE_EINVAL;
    size_t esize = gencache_dtype_size(m->dtype);
    if (esize == 0 || m->ndim > GENCACHE_MAX_DIMS)
        return GENCACHE_EINVAL;
    uint64_t count = 1;
    for (uint32_t i = 0; i < m->ndim; i++) {
        if (m->shape[i] < 0)
            return GENCACHE_EINVAL;
        uint64_t d = (uint64_t)m->shape[i];
        if (d != 0 && count > UINT64_MAX / d)
            return GENCACHE_EINVAL;
        count *= d;
    }
    if (count > UINT64_MAX / esize || count * esize != size)
        return GENCACHE_EINVAL;
    return GENCACHE_OK;
}

int gencache_put(gencache *cache, const char *key, const void *data, size_t size,
                 const gencache_meta *meta)
{
    if (!cache || !key || (!data && size))
        return GENCACHE_EINVAL;
    if (meta && (meta->struct_size < sizeof *meta || check_tensor(meta, size) != GENCACHE_OK))
        return GENCACHE_EINVAL;
    int idx;
    int rc = key_layer(cache, key, &idx);
    if (rc != GENCACHE_OK)
        return rc;
    layer *l = &cache->layers[idx];
    uint64_t now = now_ms(cache);
    gencache__entry_spec spec = {
        .key = key,
        .layer = (uint32_t)idx,
        .meta = meta,
        .size = size,
        .now_ms = now,
        .ttl_ms = meta && meta->ttl_ms ? meta->ttl_ms : l->ttl_ms,
        .sliding = l->sliding,
    };
    gencache__entry *e;
    rc = gencache__entry_new(cache->alloc, &spec, &e);
    if (rc != GENCACHE_OK)
        return rc;
    if (size)
        memcpy(e->value, data, size);
    e->checksum = gencache__checksum(e->value, size);

    rc = cache->tiers[0]->ops->put(cache->tiers[0], e, now);
    bool stored = rc == GENCACHE_OK;
    if (l->write_through || (!stored && (rc == GENCACHE_ETOOBIG || rc == GENCACHE_EFULL))) {
        for (unsigned i = 1; i < cache->n_tiers; i++)
            if (cache->tiers[i]->ops->put(cache->tiers[i], e, now) == GENCACHE_OK)
                stored = true;
    }
    gencache__entry_release(e);
    if (!stored)
        return rc;
    atomic_fetch_add_explicit(&l->puts, 1, memory_order_relaxed);
    return GENCACHE_OK;
}

/* ---- get ---- */

static int handle_new(gencache__entry *e, const char *tier, gencache_handle **out)
{
    gencache_handle *h = gencache__malloc(e->alloc, sizeof *h);
    if (!h)
        return GENCACHE_ENOMEM;
    atomic_init(&h->refs, 1);
    h->entry = e;
    gencache_meta *m = &h->meta;
    memset(m, 0, sizeof *m);
    m->struct_size = sizeof *m;
    m->content_type = e->content_type;
    m->tenant = e->tenant;
    m->model = e->model;
    m->tags = e->tags;
    m->dtype = e->dtype;
    m->ndim = e->ndim;
    memcpy(m->shape, e->shape, sizeof m->shape);
    m->cost_ms = e->cost_ms;
    m->ttl_ms = e->ttl_ms;
    m->pinned = e->pinned;
    m->key = e->key;
    m->layer = e->layer_name;
    m->size = e->size;
    m->checksum = e->checksum;
    m->created_ms = e->created_ms;
    m->expires_ms = atomic_load_explicit(&e->expires_ms, memory_order_relaxed);
    m->last_access_ms = atomic_load_explicit(&e->last_access_ms, memory_order_relaxed);
    m->hits = atomic_load_explicit(&e->hits, memory_order_relaxed);
    m->tier = tier;
    *out = h;
    return GENCACHE_OK;
}

static int lookup(gencache *c, const char *key, bool touch, gencache_handle **out)
{
    if (!out)
        return GENCACHE_EINVAL;
    *out = NULL;
    if (!c || !key)
        return GENCACHE_EINVAL;
    int idx;
    int rc = key_layer(c, key, &idx);
    if (rc != GENCACHE_OK)
        return rc; /* an unknown layer holds nothing: a miss */
    layer *l = &c->layers[idx];
    uint64_t now = now_ms(c);
    uint64_t hash = gencache__checksum(key, strlen(key));
    gencache__entry *e = NULL;
    unsigned found = 0;
    for (; found < c->n_tiers; found++) {
        gencache__tier *t = c->tiers[found];
        if (t->ops->get(t, key, hash, now, touch, &e) == GENCACHE_OK)
            break;
    }
    if (touch)
        atomic_fetch_add_explicit(&l->lookups, 1, memory_order_relaxed);
    if (!e) {
        if (touch) {
            atomic_fetch_add_explicit(&l->misses, 1, memory_order_relaxed);
            if (gencache__ghost_contains(c->ghost, hash))
                atomic_fetch_add_explicit(&l->ghost_hits, 1, memory_order_relaxed);
        }
        return GENCACHE_ENOTFOUND;
    }
    if (found > 0) {
        /* A lower tier built this entry; nobody else sees it yet, so it can be completed. */
        e->layer = (uint32_t)idx;
        e->sliding = l->sliding;
        for (unsigned i = 0; i < found; i++)
            c->tiers[i]->ops->put(c->tiers[i], e, now);
    }
    if (touch) {
        atomic_fetch_add_explicit(&l->hits, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&l->cost_ms_saved, e->cost_ms, memory_order_relaxed);
    }
    rc = handle_new(e, c->tiers[found]->ops->name, out);
    if (rc != GENCACHE_OK)
        gencache__entry_release(e);
    return rc;
}

int gencache_get(gencache *cache, const char *key, gencache_handle **out)
{
    return lookup(cache, key, true, out);
}

int gencache_peek(gencache *cache, const char *key, gencache_handle **out)
{
    return lookup(cache, key, false, out);
}

const void *gencache_handle_data(const gencache_handle *handle)
{
    return handle ? handle->entry->value : NULL;
}

size_t gencache_handle_size(const gencache_handle *handle)
{
    return handle ? handle->entry->size : 0;
}

const gencache_meta *gencache_handle_meta(const gencache_handle *handle)
{
    return handle ? &handle->meta : NULL;
}

gencache_handle *gencache_handle_retain(gencache_handle *handle)
{
    if (handle)
        atomic_fetch_add_explicit(&handle->refs, 1, memory_order_relaxed);
    return handle;
}

void gencache_handle_release(gencache_handle *handle)
{
    if (!handle)
        return;
    if (atomic_fetch_sub_explicit(&handle->refs, 1, memory_order_acq_rel) != 1)
        return;
    gencache__entry *e = handle->entry;
    const gencache_allocator *a = e->alloc;
    gencache__entry_release(e);
    gencache__free(a, handle);
}

/* ---- delete and invalidate ---- */

int gencache_del(gencache *cache, const char *key)
{
    if (!cache || !key)
        return GENCACHE_EINVAL;
    int idx;
    int rc = key_layer(cache, key, &idx);
    if (rc != GENCACHE_OK)
        return rc;
    uint64_t hash = gencache__checksum(key, strlen(key));
    bool removed = false;
    for (unsigned i = 0; i < cache->n_tiers; i++)
        if (cache->tiers[i]->ops->del(cache->tiers[i], key, hash) == GENCACHE_OK)
            removed = true;
    if (!removed)
        return GENCACHE_ENOTFOUND;
    atomic_fetch_add(&cache->invalidated, 1);
    return GENCACHE_OK;
}

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
    bool oom;
} match_state;

static bool str_eq(const char *entry_value, const char *wanted)
{
    return entry_value && strcmp(entry_value, wanted) == 0;
}

static bool filter_match(void *ud, const gencache__entry *e)
{
    match_state *st = ud;
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
    if (st->created_before && e->created_ms >= st->created_before)
        return false;
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

int gencache_invalidate(gencache *cache, const gencache_filter *filter, uint64_t *count)
{
    if (count)
        *count = 0;
    if (!cache || !filter || filter->struct_size < sizeof *filter)
        return GENCACHE_EINVAL;
    if (!filter->key && !filter->layer && !filter->tenant && !filter->tag && !filter->model &&
        !filter->older_than_ms)
        return GENCACHE_EINVAL;
    match_state st = {.f = filter, .alloc = cache->alloc};
    if (filter->older_than_ms) {
        uint64_t now = now_ms(cache);
        st.created_before = now > filter->older_than_ms ? now - filter->older_than_ms : 1;
    }
    uint64_t removed_total = 0;
    for (unsigned i = 0; i < cache->n_tiers; i++) {
        uint64_t n = 0;
        cache->tiers[i]->ops->remove_if(cache->tiers[i], filter_match, &st, &n);
        removed_total += n;
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
    atomic_fetch_add(&cache->invalidated, unique);
    if (count)
        *count = unique;
    return GENCACHE_OK;
}

int gencache_maintain(gencache *cache, uint64_t *count)
{
    if (count)
        *count = 0;
    if (!cache)
        return GENCACHE_EINVAL;
    uint64_t now = now_ms(cache), total = 0;
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
    for (unsigned i = 0; i < cache->n_layers; i++) {
        layer *l = &cache->layers[i];
        gencache_layer_stats *s = &out->layers[i];
        s->layer = l->name;
        s->lookups = atomic_load(&l->lookups);
        s->hits = atomic_load(&l->hits);
        s->misses = atomic_load(&l->misses);
        s->ghost_hits = atomic_load(&l->ghost_hits);
        s->puts = atomic_load(&l->puts);
        s->cost_ms_saved = atomic_load(&l->cost_ms_saved);
    }
    out->n_tiers = cache->n_tiers;
    for (unsigned i = 0; i < cache->n_tiers; i++)
        cache->tiers[i]->ops->stats(cache->tiers[i], &out->tiers[i]);
    out->invalidated = atomic_load(&cache->invalidated);
    return GENCACHE_OK;
}
