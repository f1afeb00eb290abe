/*
 * entry.c: the entry object, one stored value with its metadata in a single allocation. An entry
 * is immutable once published except for its access counters and expiry, which are atomics; it
 * lives as long as its last reference (a tier's or a handle's), which is what lets a read handle
 * outlive eviction without copying. Memory of the C library's allocator goes back through a
 * small pool of the freeing thread, so that a put that evicts reuses its victim's memory.
 */
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "internal.h"

/* ---- the freed-entry pool ----
 * A put into a full tier allocates one entry and, evicting, frees one of about the same size. For
 * values of a few KiB glibc's malloc serves neither from its per-thread cache: each pair costs a
 * free that coalesces and may trim the heap's top, and a malloc that faults the pages back in.
 * So the memory of an entry whose last reference goes waits in a pool of the thread that let go
 * of it (a put's victim is freed by the putting thread, after its own entry was made), and that
 * thread's next entry of exactly the same allocation size takes it. The pool is bounded (a few
 * entries, a few hundred KiB per thread, entries of at most 64 KiB): that is all the memory it
 * holds beyond the tiers' limits, and a thread's pool is freed when the thread exits. Only entries
 * of the C library's allocator are pooled: a caller's allocator sees every allocation and free.
 * Sanitizer builds pool nothing, so a use after the last release is still caught. */
#define ENTRY_POOL_MAX       (GENCACHE__POOLS ? 4 : 0)
#define ENTRY_POOL_MAX_ENTRY (64u << 10) /* larger allocations bypass the pool */
#define ENTRY_POOL_MAX_BYTES (256u << 10)

#if ENTRY_POOL_MAX > 0
/* One thread's pool: freed entries' memory and its size, newest last. */
static __thread struct {
    struct {
        void *mem;
        size_t size;
    } held[ENTRY_POOL_MAX];
    unsigned n;
    size_t bytes;
    bool registered; /* the exit destructor knows this thread's pool */
} pool;

static void pool_drain(void *unused)
{
    (void)unused; /* the exiting thread's own pool */
    for (unsigned i = 0; i < pool.n; i++)
        free(pool.held[i].mem);
    pool.n = 0;
    pool.bytes = 0;
    /* An entry freed later in the thread's exit (another exit hook) registers the pool again,
     * and the C library runs this hook once more. */
    pool.registered = false;
}

static gencache__thread_exit pool_exit = GENCACHE__THREAD_EXIT_INIT(pool_drain);

/* Memory of exactly `size` bytes from the pool, or NULL. */
static void *pool_take(size_t size)
{
    for (unsigned i = pool.n; i-- > 0;) {
        if (pool.held[i].size == size) {
            void *p = pool.held[i].mem;
            pool.held[i] = pool.held[--pool.n];
            pool.bytes -= size;
            return p;
        }
    }
    return NULL;
}

/* True when p (size bytes) went to the pool. */
static bool pool_keep(void *p, size_t size)
{
    if (size > ENTRY_POOL_MAX_ENTRY || pool.n >= ENTRY_POOL_MAX ||
        pool.bytes + size > ENTRY_POOL_MAX_BYTES)
        return false;
    if (!pool.registered && !(pool.registered = gencache__thread_exit_register(&pool_exit, &pool)))
        return false;
    pool.held[pool.n].mem = p;
    pool.held[pool.n].size = size;
    pool.n++;
    pool.bytes += size;
    return true;
}
#else
static void *pool_take(size_t size)
{
    (void)size;
    return NULL;
}

static bool pool_keep(void *p, size_t size)
{
    (void)p;
    (void)size;
    return false;
}
#endif

size_t gencache__entry_pool_bytes(void)
{
#if ENTRY_POOL_MAX > 0
    return pool.bytes;
#else
    return 0;
#endif
}

void gencache__entry_pool_clear(void)
{
#if ENTRY_POOL_MAX > 0
    pool_drain(NULL);
#endif
}

static void *entry_alloc(const gencache_allocator *alloc, size_t size)
{
    if (alloc)
        return gencache__malloc(alloc, size);
    void *p = pool_take(size);
    return p ? p : malloc(size);
}

void gencache__entry_free(gencache__entry *e)
{
    if (e->alloc)
        gencache__free(e->alloc, e);
    else if (!pool_keep(e, e->alloc_bytes))
        free(e);
}

/* What an entry without a shape or a content type points at. */
static const int64_t no_shape[GENCACHE_MAX_DIMS];
static const char default_content_type[] = "application/octet-stream";

static size_t opt_len(const char *s)
{
    return s && *s ? strlen(s) + 1 : 0;
}

/* Copies s (when present) to *cursor and advances it. */
static const char *place(char **cursor, const char *s)
{
    size_t n = opt_len(s);
    if (n == 0)
        return NULL;
    char *dst = *cursor;
    memcpy(dst, s, n);
    *cursor += n;
    return dst;
}

int gencache__entry_new(const gencache_allocator *alloc, const gencache__entry_spec *spec,
                        gencache__entry **out)
{
    *out = NULL;
    const gencache_meta *m = spec->meta;
    const char *tenant = m ? m->tenant : NULL;
    const char *model = m ? m->model : NULL;
    const char *tags = m ? m->tags : NULL;
    /* The usual content type is the constant's; only another one is copied. */
    const char *ctype = m && m->content_type && *m->content_type &&
                                strcmp(m->content_type, default_content_type) != 0
                            ? m->content_type
                            : NULL;
    bool has_shape = false;
    for (unsigned i = 0; m && i < GENCACHE_MAX_DIMS; i++)
        has_shape |= m->shape[i] != 0;

    size_t key_len = spec->key_len ? spec->key_len : strlen(spec->key);
    const char *slash = memchr(spec->key, '/', key_len);
    size_t layer_len = slash ? (size_t)(slash - spec->key) : key_len;
    size_t strings = key_len + 1 + layer_len + 1 + opt_len(tenant) + opt_len(model) +
                     opt_len(tags) + opt_len(ctype);
    /* A shape goes after the strings, on an 8-byte boundary. */
    size_t shape_at = (sizeof(gencache__entry) + strings + 7) & ~(size_t)7;
    size_t value_at = has_shape ? shape_at + sizeof no_shape : sizeof(gencache__entry) + strings;
    size_t head = (value_at + GENCACHE__VALUE_ALIGN - 1) & ~(size_t)(GENCACHE__VALUE_ALIGN - 1);
    if (spec->size > SIZE_MAX - head - GENCACHE__VALUE_ALIGN)
        return GENCACHE_ENOMEM;
    /* Over-allocate by one alignment unit so the value can start on an aligned address whatever
     * alignment the allocator gives. */
    size_t total = head + spec->size + GENCACHE__VALUE_ALIGN;
    unsigned char *mem = entry_alloc(alloc, total);
    if (!mem)
        return GENCACHE_ENOMEM;
    uintptr_t v = (uintptr_t)(mem + value_at);
    v = (v + GENCACHE__VALUE_ALIGN - 1) & ~(uintptr_t)(GENCACHE__VALUE_ALIGN - 1);
    /* The value first, and its streamed stores fenced only after the header below is written:
     * they drain while it is, rather than while the caller's next lock waits for them. */
    bool fence =
        spec->data && spec->size && gencache__copy_stream((void *)v, spec->data, spec->size);

    gencache__entry *e = (gencache__entry *)mem;
    memset(e, 0, sizeof *e);
    atomic_init(&e->refs, 1);
    e->alloc = alloc;
    e->layer = spec->layer;
    /* The key first, right after the header: lookups read it with the header's hot fields. */
    char *cursor = (char *)(e + 1);
    memcpy(cursor, spec->key, key_len + 1);
    e->key = cursor; /* == gencache__entry_key(e) */
    e->key_len = (uint32_t)key_len;
    cursor += key_len + 1;
    memcpy(cursor, spec->key, layer_len);
    cursor[layer_len] = '\0';
    e->layer_name = cursor;
    cursor += layer_len + 1;
    e->tenant = place(&cursor, tenant);
    e->model = place(&cursor, model);
    e->tags = place(&cursor, tags);
    e->content_type = ctype ? place(&cursor, ctype) : default_content_type;
    e->shape = no_shape;
    if (has_shape) {
        int64_t *shape = (int64_t *)(void *)(mem + shape_at);
        memcpy(shape, m->shape, sizeof no_shape);
        e->shape = shape;
    }
    e->value = (unsigned char *)v; /* past the shape, rounded up to GENCACHE__VALUE_ALIGN */

    e->hash = spec->hash ? spec->hash : gencache__checksum(spec->key, key_len);
    if (m) {
        e->dtype = m->dtype;
        e->ndim = m->ndim;
        e->cost_ms = m->cost_ms;
        e->pinned = m->pinned != 0;
    }
    e->size = spec->size;
    e->charge = total;
    e->alloc_bytes = total;
    e->ttl_ms = spec->ttl_ms;
    e->sliding = spec->sliding;
    e->created_ms = spec->now_ms;
    atomic_init(&e->expires_ms, spec->ttl_ms ? spec->now_ms + spec->ttl_ms : 0);
    atomic_init(&e->last_access_ms, spec->now_ms);
    atomic_init(&e->hits, 0);
#ifdef __SSE2__
    if (fence)
        _mm_sfence(); /* the value's bytes are visible before whatever publishes e */
#else
    (void)fence;
#endif
    *out = e;
    return GENCACHE_OK;
}

uint64_t gencache__entry_checksum_compute(gencache__entry *e)
{
    uint64_t sum = gencache__checksum(e->value, e->size);
    atomic_store_explicit(&e->checksum, sum, memory_order_relaxed);
    atomic_store_explicit(&e->sum_lazy, false, memory_order_release);
    return sum;
}

bool gencache__entry_has_tag(const gencache__entry *e, const char *tag)
{
    if (!e->tags || !tag || !*tag)
        return false;
    size_t n = strlen(tag);
    const char *p = e->tags;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        /* Tags are stored as given; surrounding blanks do not count. */
        const char *s = p;
        while (len && (*s == ' ' || *s == '\t')) {
            s++;
            len--;
        }
        while (len && (s[len - 1] == ' ' || s[len - 1] == '\t'))
            len--;
        if (len == n && memcmp(s, tag, n) == 0)
            return true;
        if (!end)
            break;
        p = end + 1;
    }
    return false;
}

bool gencache__key_hex64(const char *p)
{
#ifdef __SSE2__
    /* Sixteen bytes at a time: a byte passes when it lies in '0'..'9' or 'a'..'f'. Bytes of 0x80
     * and up are negative in the signed compares and fail both ranges. */
    __m128i ok = _mm_set1_epi8(-1);
    for (int i = 0; i < GENCACHE__KEY_HEX_LEN; i += 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(p + i));
        __m128i digit = _mm_and_si128(_mm_cmpgt_epi8(v, _mm_set1_epi8('0' - 1)),
                                      _mm_cmplt_epi8(v, _mm_set1_epi8('9' + 1)));
        __m128i af = _mm_and_si128(_mm_cmpgt_epi8(v, _mm_set1_epi8('a' - 1)),
                                   _mm_cmplt_epi8(v, _mm_set1_epi8('f' + 1)));
        ok = _mm_and_si128(ok, _mm_or_si128(digit, af));
    }
    return _mm_movemask_epi8(ok) == 0xFFFF;
#else
    bool ok = true;
    for (int i = 0; i < GENCACHE__KEY_HEX_LEN; i++) {
        char c = p[i];
        ok &= (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
    }
    return ok;
#endif
}

static bool layer_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
}

int gencache__key_split(const char *key, const char **layer, size_t *layer_len)
{
    *layer = NULL;
    *layer_len = 0;
    if (!key)
        return GENCACHE_EINVAL;
    size_t n = 0;
    while (n <= GENCACHE__LAYER_NAME_MAX && layer_char(key[n]))
        n++;
    if (n == 0 || n > GENCACHE__LAYER_NAME_MAX || key[n] != '/')
        return GENCACHE_EINVAL;
    /* The length first, so the vector loads stay inside the string. */
    const char *hex = key + n + 1;
    if (strnlen(hex, GENCACHE__KEY_HEX_LEN + 1) != GENCACHE__KEY_HEX_LEN ||
        !gencache__key_hex64(hex))
        return GENCACHE_EINVAL;
    *layer = key;
    *layer_len = n;
    return GENCACHE_OK;
}
