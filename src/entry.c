/*
 * entry.c: the entry object, one stored value with its metadata in a single allocation. An entry
 * is immutable once published except for its access counters and expiry, which are atomics; it
 * lives as long as its last reference (a tier's or a handle's), which is what lets a read handle
 * outlive eviction without copying.
 */
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "internal.h"

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
    const char *ctype =
        m && m->content_type && *m->content_type ? m->content_type : "application/octet-stream";

    size_t key_len = strlen(spec->key);
    const char *slash = memchr(spec->key, '/', key_len);
    size_t layer_len = slash ? (size_t)(slash - spec->key) : key_len;
    size_t strings = key_len + 1 + layer_len + 1 + opt_len(tenant) + opt_len(model) +
                     opt_len(tags) + opt_len(ctype);
    size_t head = sizeof(gencache__entry) + strings;
    head = (head + GENCACHE__VALUE_ALIGN - 1) & ~(size_t)(GENCACHE__VALUE_ALIGN - 1);
    if (spec->size > SIZE_MAX - head - GENCACHE__VALUE_ALIGN)
        return GENCACHE_ENOMEM;
    /* Over-allocate by one alignment unit so the value can start on an aligned address whatever
     * alignment the allocator gives. */
    size_t total = head + spec->size + GENCACHE__VALUE_ALIGN;
    unsigned char *mem = gencache__malloc(alloc, total);
    if (!mem)
        return GENCACHE_ENOMEM;

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
    e->content_type = place(&cursor, ctype);
    uintptr_t v = (uintptr_t)cursor;
    v = (v + GENCACHE__VALUE_ALIGN - 1) & ~(uintptr_t)(GENCACHE__VALUE_ALIGN - 1);
    e->value = (unsigned char *)v;

    e->hash = spec->hash ? spec->hash : gencache__checksum(spec->key, key_len);
    if (m) {
        e->dtype = m->dtype;
        e->ndim = m->ndim;
        memcpy(e->shape, m->shape, sizeof e->shape);
        e->cost_ms = m->cost_ms;
        e->pinned = m->pinned != 0;
    }
    e->size = spec->size;
    e->charge = total;
    e->ttl_ms = spec->ttl_ms;
    e->sliding = spec->sliding;
    e->created_ms = spec->now_ms;
    atomic_init(&e->expires_ms, spec->ttl_ms ? spec->now_ms + spec->ttl_ms : 0);
    atomic_init(&e->last_access_ms, spec->now_ms);
    atomic_init(&e->hits, 0);
    *out = e;
    return GENCACHE_OK;
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
