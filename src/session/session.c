/*
 * session.c: the in-flight state of one generation. A session holds named values that live for
 * a number of denoising steps or for the whole session; every byte it holds is charged to the
 * cache's memory budget (gencache__cache_charge) and given back when the value is freed, so
 * sessions and cached entries share one limit. Sessions of all caches sit in one registry, which
 * lets gencache_session_reap() end those whose client went away. Lock order: the registry lock,
 * then a session's lock, then whatever the cache takes inside gencache__cache_charge().
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define ID_MAX          128
#define NAME_MAX_LEN    255
#define PERSISTENT_STEP UINT64_MAX

typedef struct value {
    struct value *next;
    const char *name;    /* in the same allocation */
    unsigned char *data; /* in the same allocation, 64-byte aligned */
    size_t size;
    gencache_tensor_desc desc;
    uint64_t last_step; /* available through this step; PERSISTENT_STEP: whole session */
    uint64_t charge;    /* bytes charged to the cache: the whole allocation */
} value;

struct gencache_session {
    gencache *cache;
    const gencache_allocator *alloc;
    char id[ID_MAX + 1];
    uint64_t ttl_ms;
    uint64_t max_bytes;
    pthread_mutex_t mu; /* guards everything below */
    uint64_t step;
    uint64_t bytes;
    uint64_t entries;
    uint64_t last_active_ms;
    bool reaped;
    value *values;
    /* Registry links, under reg_mu. */
    gencache_session *reg_prev, *reg_next;
    bool registered;
};

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static gencache_session *reg_head;

void gencache_session_options_init(gencache_session_options *opts)
{
    memset(opts, 0, sizeof *opts);
    opts->struct_size = sizeof *opts;
    opts->ttl_ms = 5u * 60u * 1000u;
    opts->max_bytes = 0;
}

static void reg_unlink(gencache_session *s)
{
    if (!s->registered)
        return;
    if (s->reg_prev)
        s->reg_prev->reg_next = s->reg_next;
    else
        reg_head = s->reg_next;
    if (s->reg_next)
        s->reg_next->reg_prev = s->reg_prev;
    s->reg_prev = s->reg_next = NULL;
    s->registered = false;
}

/* Frees every value matching `all` or expired at the current step; returns the bytes freed and
 * gives them back to the cache. Called with s->mu held. */
static uint64_t free_values(gencache_session *s, bool all)
{
    uint64_t freed = 0;
    value **pp = &s->values;
    while (*pp) {
        value *v = *pp;
        if (all || (v->last_step != PERSISTENT_STEP && v->last_step < s->step)) {
            *pp = v->next;
            freed += v->charge;
            s->entries--;
            gencache__free(s->alloc, v);
        } else {
            pp = &v->next;
        }
    }
    if (freed) {
        s->bytes -= freed;
        gencache__cache_charge(s->cache, -(int64_t)freed);
    }
    return freed;
}

static bool id_valid(const char *id)
{
    size_t n = id ? strlen(id) : 0;
    if (n == 0 || n > ID_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (id[i] < 0x21 || id[i] > 0x7E)
            return false;
    return true;
}

int gencache_session_reap(gencache *cache, uint64_t now_ms, uint64_t *count)
{
    if (count)
        *count = 0;
    if (!cache)
        return GENCACHE_EINVAL;
    if (now_ms == 0)
        now_ms = gencache__cache_now_ms(cache);
    uint64_t n = 0;
    pthread_mutex_lock(&reg_mu);
    gencache_session *s = reg_head;
    while (s) {
        gencache_session *next = s->reg_next;
        if (s->cache == cache && s->ttl_ms > 0) {
            pthread_mutex_lock(&s->mu);
            if (now_ms > s->last_active_ms && now_ms - s->last_active_ms > s->ttl_ms) {
                free_values(s, true);
                s->reaped = true;
                reg_unlink(s);
                n++;
            }
            pthread_mutex_unlock(&s->mu);
        }
        s = next;
    }
    pthread_mutex_unlock(&reg_mu);
    if (count)
        *count = n;
    return GENCACHE_OK;
}

int gencache_session_open(gencache *cache, const char *id, const gencache_session_options *opts,
                          gencache_session **out)
{
    if (out)
        *out = NULL;
    if (!cache || !out || !id_valid(id) || (opts && opts->struct_size < sizeof *opts))
        return GENCACHE_EINVAL;
    gencache_session_options defaults;
    if (!opts) {
        gencache_session_options_init(&defaults);
        opts = &defaults;
    }
    gencache_session_reap(cache, 0, NULL);
    const gencache_allocator *alloc = gencache__cache_allocator(cache);
    gencache_session *s = gencache__calloc(alloc, 1, sizeof *s);
    if (!s)
        return GENCACHE_ENOMEM;
    s->cache = cache;
    s->alloc = alloc;
    strcpy(s->id, id);
    s->ttl_ms = opts->ttl_ms;
    s->max_bytes = opts->max_bytes;
    s->last_active_ms = gencache__cache_now_ms(cache);
    pthread_mutex_init(&s->mu, NULL);

    pthread_mutex_lock(&reg_mu);
    for (gencache_session *o = reg_head; o; o = o->reg_next) {
        if (o->cache == cache && strcmp(o->id, id) == 0) {
            pthread_mutex_unlock(&reg_mu);
            pthread_mutex_destroy(&s->mu);
            gencache__free(alloc, s);
            return GENCACHE_EEXIST;
        }
    }
    s->reg_next = reg_head;
    if (reg_head)
        reg_head->reg_prev = s;
    reg_head = s;
    s->registered = true;
    pthread_mutex_unlock(&reg_mu);
    *out = s;
    return GENCACHE_OK;
}

static value *find(gencache_session *s, const char *name, value ***link)
{
    value **pp = &s->values;
    for (; *pp; pp = &(*pp)->next) {
        if (strcmp((*pp)->name, name) == 0) {
            if (link)
                *link = pp;
            return *pp;
        }
    }
    return NULL;
}

static bool name_valid(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    return n > 0 && n <= NAME_MAX_LEN;
}

int gencache_session_put(gencache_session *s, const char *name, const void *data, size_t size,
                         const gencache_meta *meta, uint32_t steps, unsigned flags)
{
    if (!s || !name_valid(name) || (size > 0 && !data) || (flags & ~GENCACHE_PERSISTENT) ||
        (steps == 0 && !(flags & GENCACHE_PERSISTENT)) ||
        (meta && meta->struct_size < sizeof *meta))
        return GENCACHE_EINVAL;
    gencache_tensor_desc desc;
    memset(&desc, 0, sizeof desc);
    if (meta && meta->dtype != GENCACHE_DTYPE_NONE) {
        if (gencache_tensor_check(meta->dtype, meta->ndim, meta->shape, size) != GENCACHE_OK)
            return GENCACHE_EINVAL;
        desc.dtype = meta->dtype;
        desc.ndim = meta->ndim;
        memcpy(desc.shape, meta->shape, meta->ndim * sizeof desc.shape[0]);
    }
    size_t nlen = strlen(name);
    if (size > SIZE_MAX / 2)
        return GENCACHE_ETOOBIG;
    size_t total = sizeof(value) + nlen + 1 + (GENCACHE__VALUE_ALIGN - 1) + size;

    pthread_mutex_lock(&s->mu);
    int rc = GENCACHE_OK;
    if (s->reaped) {
        rc = GENCACHE_ETIMEDOUT;
        goto out;
    }
    value **link = NULL;
    value *old = find(s, name, &link);
    uint64_t after = s->bytes - (old ? old->charge : 0) + total;
    if (s->max_bytes && after > s->max_bytes) {
        rc = GENCACHE_ELIMIT;
        goto out;
    }
    rc = gencache__cache_charge(s->cache, (int64_t)total);
    if (rc != GENCACHE_OK)
        goto out;
    value *v = gencache__malloc(s->alloc, total);
    if (!v) {
        gencache__cache_charge(s->cache, -(int64_t)total);
        rc = GENCACHE_ENOMEM;
        goto out;
    }
    char *nm = (char *)(v + 1);
    memcpy(nm, name, nlen + 1);
    uintptr_t d = ((uintptr_t)(nm + nlen + 1) + GENCACHE__VALUE_ALIGN - 1) &
                  ~(uintptr_t)(GENCACHE__VALUE_ALIGN - 1);
    v->name = nm;
    v->data = (unsigned char *)d;
    v->size = size;
    if (size)
        memcpy(v->data, data, size);
    v->desc = desc;
    v->charge = total;
    v->last_step = (flags & GENCACHE_PERSISTENT) ? PERSISTENT_STEP : s->step + steps - 1;
    if (old) {
        *link = old->next;
        s->bytes -= old->charge;
        s->entries--;
        gencache__cache_charge(s->cache, -(int64_t)old->charge);
        gencache__free(s->alloc, old);
    }
    v->next = s->values;
    s->values = v;
    s->bytes += total;
    s->entries++;
    s->last_active_ms = gencache__cache_now_ms(s->cache);
out:
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int gencache_session_get(gencache_session *s, const char *name, const void **data, size_t *size,
                         gencache_tensor_desc *desc)
{
    if (data)
        *data = NULL;
    if (size)
        *size = 0;
    if (desc)
        memset(desc, 0, sizeof *desc);
    if (!s || !name || !data || !size)
        return GENCACHE_EINVAL;
    pthread_mutex_lock(&s->mu);
    int rc = GENCACHE_ENOTFOUND;
    if (s->reaped) {
        rc = GENCACHE_ETIMEDOUT;
    } else {
        value *v = find(s, name, NULL);
        if (v) {
            *data = v->data;
            *size = v->size;
            if (desc)
                *desc = v->desc;
            rc = GENCACHE_OK;
        }
        s->last_active_ms = gencache__cache_now_ms(s->cache);
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int gencache_session_step(gencache_session *s, uint64_t *freed_bytes)
{
    if (freed_bytes)
        *freed_bytes = 0;
    if (!s)
        return GENCACHE_EINVAL;
    pthread_mutex_lock(&s->mu);
    int rc = GENCACHE_OK;
    if (s->reaped) {
        rc = GENCACHE_ETIMEDOUT;
    } else {
        s->step++;
        uint64_t freed = free_values(s, false);
        if (freed_bytes)
            *freed_bytes = freed;
        s->last_active_ms = gencache__cache_now_ms(s->cache);
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int gencache_session_stats_get(gencache_session *s, gencache_session_stats *out)
{
    if (out)
        memset(out, 0, sizeof *out);
    if (!s || !out)
        return GENCACHE_EINVAL;
    pthread_mutex_lock(&s->mu);
    out->step = s->step;
    out->entries = s->entries;
    out->bytes = s->bytes;
    out->reaped = s->reaped;
    pthread_mutex_unlock(&s->mu);
    return GENCACHE_OK;
}

void gencache_session_close(gencache_session *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&reg_mu);
    reg_unlink(s);
    pthread_mutex_unlock(&reg_mu);
    pthread_mutex_lock(&s->mu);
    free_values(s, true);
    pthread_mutex_unlock(&s->mu);
    pthread_mutex_destroy(&s->mu);
    gencache__free(s->alloc, s);
}
