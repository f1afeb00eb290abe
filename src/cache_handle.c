/*
 * cache_handle.c: read handles. A handle is a reference to one entry (which it keeps alive, so
 * its bytes outlive eviction, replacement and the cache itself) plus what the lookup saw of the
 * entry's changing fields; its gencache_meta is filled in only when asked for. A hit allocates
 * nothing: released handles are kept in a small pool of the releasing thread.
 */
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"

/* A handle costs no allocation on a hit: released handles of the default allocator wait in a
 * small pool of the releasing thread for its next lookup (a thread's pool is freed when the
 * thread exits). Handles of a caller's allocator always go through it, so its failures stay
 * visible. Sanitizer builds allocate every handle, so a use after release is still caught. */
#define HANDLE_POOL_MAX (GENCACHE__POOLS ? 32 : 0)

enum { META_NONE, META_BUSY, META_READY };

#if HANDLE_POOL_MAX > 0
typedef struct handle_pool {
    gencache_handle *top;
    unsigned n;
    bool registered; /* the exit destructor knows this thread's pool */
} handle_pool;

static __thread handle_pool pool;

static void pool_drain(void *p)
{
    handle_pool *hp = p;
    while (hp->top) {
        gencache_handle *h = hp->top;
        hp->top = h->next_free;
        free(h);
    }
    hp->n = 0;
    hp->registered = false; /* a handle freed later in the thread's exit registers it again */
}

static gencache__thread_exit pool_exit = GENCACHE__THREAD_EXIT_INIT(pool_drain);

static gencache_handle *pool_take(void)
{
    gencache_handle *h = pool.top;
    if (h) {
        pool.top = h->next_free;
        pool.n--;
    }
    return h;
}

/* True when h went to the pool. */
static bool pool_keep(gencache_handle *h)
{
    if (pool.n >= HANDLE_POOL_MAX)
        return false;
    if (!pool.registered && !(pool.registered = gencache__thread_exit_register(&pool_exit, &pool)))
        return false;
    h->next_free = pool.top;
    pool.top = h;
    pool.n++;
    return true;
}
#else
static gencache_handle *pool_take(void)
{
    return NULL;
}

static bool pool_keep(gencache_handle *h)
{
    (void)h;
    return false;
}
#endif

static gencache_handle *handle_alloc(const gencache_allocator *a)
{
    if (a)
        return gencache__malloc(a, sizeof(gencache_handle));
    gencache_handle *h = pool_take();
    return h ? h : malloc(sizeof *h);
}

static void handle_free(gencache_handle *h, const gencache_allocator *a)
{
    if (a)
        gencache__free(a, h);
    else if (!pool_keep(h))
        free(h);
}

/* The handle points at the entry: its metadata is built only when someone asks for it
 * (gencache_handle_meta()), from the entry's immutable fields and what the lookup saw of the
 * changing ones. shown_key: the key as the caller named it, when the stored one differs (a
 * tenant namespace). */
int gencache__handle_new(gencache__entry *e, const char *tier, const char *shown_key,
                         gencache_handle **out)
{
    gencache_handle *h = handle_alloc(e->alloc);
    if (!h)
        return GENCACHE_ENOMEM;
    atomic_init(&h->refs, 1);
    atomic_init(&h->meta_state, META_NONE);
    h->entry = e;
    h->tier = tier;
    h->expires_ms = atomic_load_explicit(&e->expires_ms, memory_order_relaxed);
    h->last_access_ms = atomic_load_explicit(&e->last_access_ms, memory_order_relaxed);
    h->hits = atomic_load_explicit(&e->hits, memory_order_relaxed);
    h->shown = shown_key != NULL;
    if (shown_key)
        snprintf(h->shown_key, sizeof h->shown_key, "%s", shown_key);
    *out = h;
    return GENCACHE_OK;
}

static void meta_fill(gencache_handle *h)
{
    const gencache__entry *e = h->entry;
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
    m->key = h->shown ? h->shown_key : e->key;
    m->layer = e->layer_name;
    m->size = e->size;
    m->checksum = gencache__entry_checksum(e);
    m->created_ms = e->created_ms;
    m->expires_ms = h->expires_ms;
    m->last_access_ms = h->last_access_ms;
    m->hits = h->hits;
    m->tier = h->tier;
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
    if (!handle)
        return NULL;
    gencache_handle *h = (gencache_handle *)handle; /* the meta is filled in on first use */
    if (atomic_load_explicit(&h->meta_state, memory_order_acquire) == META_READY)
        return &h->meta;
    unsigned expected = META_NONE;
    if (atomic_compare_exchange_strong_explicit(&h->meta_state, &expected, META_BUSY,
                                                memory_order_acquire, memory_order_acquire)) {
        meta_fill(h);
        atomic_store_explicit(&h->meta_state, META_READY, memory_order_release);
    } else {
        while (atomic_load_explicit(&h->meta_state, memory_order_acquire) != META_READY)
            sched_yield(); /* another thread is filling it: a few hundred instructions */
    }
    return &h->meta;
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
    /* A count of 1 seen by a holder is final (nobody else can retain it), so the usual case
     * needs no atomic read-modify-write. */
    if (atomic_load_explicit(&handle->refs, memory_order_acquire) != 1 &&
        atomic_fetch_sub_explicit(&handle->refs, 1, memory_order_acq_rel) != 1)
        return;
    gencache__entry *e = handle->entry;
    const gencache_allocator *a = e->alloc;
    handle_free(handle, a);
    gencache__entry_release(e);
}
