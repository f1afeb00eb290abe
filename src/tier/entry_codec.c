/*
 * entry_codec.c: one versioned, self-checking serialization of entry metadata, shared by the
 * disk tier (an LMDB record) and the Redis tier (the head of the stored string). The record
 * starts with a fixed header at fixed offsets (so the Redis Lua script can read the refresh TTL
 * in place), continues with the tensor shape and five length-prefixed strings, and ends with an
 * XXH3-64 of everything before it: a record that decodes is exactly the one that was written.
 *
 * Layout v1, little-endian: "GCE" u8 version | u32 record length | u64 refresh TTL | u64 size |
 * u64 checksum | u64 created | u64 expires | u64 ttl | u64 cost | u64 last access | u64 hits |
 * u32 flags (1 pinned, 2 sliding) | u8 dtype | u8 ndim | u16 zero | i64 shape[ndim] |
 * 5 x (u32 length or 0xffffffff for absent, bytes): key, tenant, model, tags, content type |
 * u64 XXH3-64 of the preceding bytes.
 */
#include <string.h>

#include "tier/entry_codec.h"

#define ABSENT       0xffffffffu
#define FIXED_LEN    88
#define FLAG_PINNED  1u
#define FLAG_SLIDING 2u

static size_t str_len(const char *s)
{
    return s ? strlen(s) : 0;
}

size_t gencache__codec_size(const gencache__entry *e)
{
    uint32_t ndim = e->ndim <= GENCACHE_MAX_DIMS ? e->ndim : GENCACHE_MAX_DIMS;
    return FIXED_LEN + 8u * ndim + 5u * 4u + str_len(e->key) + str_len(e->tenant) +
           str_len(e->model) + str_len(e->tags) + str_len(e->content_type) + 8u;
}

static unsigned char *put_str(unsigned char *p, const char *s)
{
    if (!s) {
        gencache__le32_put(p, ABSENT);
        return p + 4;
    }
    size_t n = strlen(s);
    gencache__le32_put(p, (uint32_t)n);
    memcpy(p + 4, s, n);
    return p + 4 + n;
}

static void put_mutable(unsigned char *p, uint64_t expires_ms, uint64_t last_access_ms,
                        uint64_t hits)
{
    gencache__le64_put(p + 40, expires_ms);
    gencache__le64_put(p + 64, last_access_ms);
    gencache__le64_put(p + 72, hits);
}

int gencache__codec_encode(const gencache__entry *e, uint64_t expires_ms, uint64_t last_access_ms,
                           uint64_t hits, void *buf, size_t cap, size_t *len)
{
    *len = 0;
    if (!e->key || e->ndim > GENCACHE_MAX_DIMS)
        return GENCACHE_EINVAL;
    const char *strs[5] = {e->key, e->tenant, e->model, e->tags, e->content_type};
    for (int i = 0; i < 5; i++)
        if (str_len(strs[i]) > GENCACHE__CODEC_STR_MAX)
            return GENCACHE_EINVAL;
    size_t need = gencache__codec_size(e);
    if (cap < need)
        return GENCACHE_EINVAL;
    unsigned char *p = buf;
    memcpy(p, GENCACHE__CODEC_MAGIC, 3);
    p[3] = GENCACHE__CODEC_VERSION;
    gencache__le32_put(p + 4, (uint32_t)need);
    gencache__le64_put(p + 8, e->sliding ? e->ttl_ms : 0);
    gencache__le64_put(p + 16, e->size);
    gencache__le64_put(p + 24, e->checksum);
    gencache__le64_put(p + 32, e->created_ms);
    gencache__le64_put(p + 48, e->ttl_ms);
    gencache__le64_put(p + 56, e->cost_ms);
    put_mutable(p, expires_ms, last_access_ms, hits);
    gencache__le32_put(p + 80, (e->pinned ? FLAG_PINNED : 0) | (e->sliding ? FLAG_SLIDING : 0));
    p[84] = (unsigned char)e->dtype;
    p[85] = (unsigned char)e->ndim;
    p[86] = p[87] = 0;
    unsigned char *q = p + FIXED_LEN;
    for (uint32_t i = 0; i < e->ndim; i++, q += 8)
        gencache__le64_put(q, (uint64_t)e->shape[i]);
    for (int i = 0; i < 5; i++)
        q = put_str(q, strs[i]);
    gencache__le64_put(q, gencache__checksum(p, (size_t)(q - p)));
    *len = need;
    return GENCACHE_OK;
}

int gencache__codec_patch(void *buf, size_t len, uint64_t expires_ms, uint64_t last_access_ms,
                          uint64_t hits)
{
    unsigned char *p = buf;
    if (len < GENCACHE__CODEC_MIN_LEN)
        return GENCACHE_ECORRUPT;
    uint32_t n = gencache__le32_get(p + 4);
    if (n < GENCACHE__CODEC_MIN_LEN || n > len ||
        gencache__le64_get(p + n - 8) != gencache__checksum(p, n - 8))
        return GENCACHE_ECORRUPT;
    put_mutable(p, expires_ms, last_access_ms, hits);
    gencache__le64_put(p + n - 8, gencache__checksum(p, n - 8));
    return GENCACHE_OK;
}

void gencache__codec_meta_clear(gencache__codec_meta *m)
{
    char **strs[5] = {&m->key, &m->tenant, &m->model, &m->tags, &m->content_type};
    for (int i = 0; i < 5; i++)
        gencache__free(m->alloc, *strs[i]);
    memset(m, 0, sizeof *m);
}

/* Copies one length-prefixed string at *p (bounded by end) into a new NUL-terminated string. */
static int take_str(const gencache_allocator *alloc, const unsigned char **p,
                    const unsigned char *end, char **out)
{
    *out = NULL;
    if (end - *p < 4)
        return GENCACHE_ECORRUPT;
    uint32_t n = gencache__le32_get(*p);
    *p += 4;
    if (n == ABSENT)
        return GENCACHE_OK;
    if (n > GENCACHE__CODEC_STR_MAX || (size_t)(end - *p) < n || memchr(*p, 0, n))
        return GENCACHE_ECORRUPT;
    char *s = gencache__malloc(alloc, (size_t)n + 1);
    if (!s)
        return GENCACHE_ENOMEM;
    memcpy(s, *p, n);
    s[n] = '\0';
    *p += n;
    *out = s;
    return GENCACHE_OK;
}

int gencache__codec_decode(const gencache_allocator *alloc, const void *buf, size_t len,
                           gencache__codec_meta *out)
{
    memset(out, 0, sizeof *out);
    out->alloc = alloc;
    const unsigned char *p = buf;
    if (len < 4 || memcmp(p, GENCACHE__CODEC_MAGIC, 3) != 0)
        return GENCACHE_ECORRUPT;
    if (p[3] != GENCACHE__CODEC_VERSION)
        return p[3] > GENCACHE__CODEC_VERSION ? GENCACHE_EVERSION : GENCACHE_ECORRUPT;
    if (len < GENCACHE__CODEC_MIN_LEN)
        return GENCACHE_ECORRUPT;
    uint32_t n = gencache__le32_get(p + 4);
    if (n < GENCACHE__CODEC_MIN_LEN || n > len ||
        gencache__le64_get(p + n - 8) != gencache__checksum(p, n - 8))
        return GENCACHE_ECORRUPT;
    const unsigned char *end = p + n - 8;
    out->size = gencache__le64_get(p + 16);
    out->checksum = gencache__le64_get(p + 24);
    out->created_ms = gencache__le64_get(p + 32);
    out->expires_ms = gencache__le64_get(p + 40);
    out->ttl_ms = gencache__le64_get(p + 48);
    out->cost_ms = gencache__le64_get(p + 56);
    out->last_access_ms = gencache__le64_get(p + 64);
    out->hits = gencache__le64_get(p + 72);
    uint32_t flags = gencache__le32_get(p + 80);
    out->pinned = flags & FLAG_PINNED;
    out->sliding = flags & FLAG_SLIDING;
    out->dtype = (gencache_dtype)p[84];
    out->ndim = p[85];
    if (out->ndim > GENCACHE_MAX_DIMS || (flags & ~(FLAG_PINNED | FLAG_SLIDING)) ||
        (out->dtype != GENCACHE_DTYPE_NONE && !gencache_dtype_name(out->dtype)))
        return GENCACHE_ECORRUPT;
    const unsigned char *q = p + FIXED_LEN;
    if ((size_t)(end - q) < 8u * out->ndim)
        return GENCACHE_ECORRUPT;
    for (uint32_t i = 0; i < out->ndim; i++, q += 8)
        out->shape[i] = (int64_t)gencache__le64_get(q);
    char **strs[5] = {&out->key, &out->tenant, &out->model, &out->tags, &out->content_type};
    int rc = GENCACHE_OK;
    for (int i = 0; i < 5 && rc == GENCACHE_OK; i++)
        rc = take_str(alloc, &q, end, strs[i]);
    const char *layer;
    size_t layer_len;
    if (rc == GENCACHE_OK && (q != end || gencache__key_split(out->key, &layer, &layer_len)))
        rc = GENCACHE_ECORRUPT;
    if (rc != GENCACHE_OK) {
        gencache__codec_meta_clear(out);
        return rc;
    }
    out->record_len = n;
    return GENCACHE_OK;
}

int gencache__codec_entry_new(const gencache_allocator *alloc, const gencache__codec_meta *m,
                              bool with_value, gencache__entry **out)
{
    *out = NULL;
    if (with_value && m->size > SIZE_MAX / 2)
        return GENCACHE_ENOMEM;
    gencache_meta meta;
    gencache_meta_init(&meta);
    meta.content_type = m->content_type;
    meta.tenant = m->tenant;
    meta.model = m->model;
    meta.tags = m->tags;
    meta.dtype = m->dtype;
    meta.ndim = m->ndim;
    memcpy(meta.shape, m->shape, sizeof meta.shape);
    meta.cost_ms = m->cost_ms;
    meta.ttl_ms = m->ttl_ms;
    meta.pinned = m->pinned;
    gencache__entry_spec spec = {
        .key = m->key,
        .layer = 0,
        .meta = &meta,
        .size = with_value ? (size_t)m->size : 0,
        .now_ms = m->created_ms,
        .ttl_ms = m->ttl_ms,
        .sliding = m->sliding,
    };
    gencache__entry *e;
    int rc = gencache__entry_new(alloc, &spec, &e);
    if (rc != GENCACHE_OK)
        return rc;
    e->checksum = m->checksum;
    atomic_store(&e->expires_ms, m->expires_ms);
    atomic_store(&e->last_access_ms, m->last_access_ms);
    atomic_store(&e->hits, m->hits);
    if (!with_value) {
        e->size = (size_t)m->size;
        e->value = NULL;
        e->layer = UINT32_MAX;
    }
    *out = e;
    return GENCACHE_OK;
}
