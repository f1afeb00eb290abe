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
 *
 * Layout v2 (sealed: the value and what describes it are encrypted, AES-256-GCM): the v1 header
 * with ttl, cost, dtype and ndim zero and the checksum taken over the encrypted value | u32 key
 * id | 12-byte nonce | 16-byte value tag | key (u32 length, bytes) | u32 length S | S bytes of
 * encrypted inner metadata (u64 ttl, u64 cost, u64 XXH3-64 of the plaintext value, u8 dtype,
 * u8 ndim, u16 zero, u32 zero, i64 shape[ndim], 4 strings: tenant, model, tags, content type) |
 * 16-byte metadata tag | u64 XXH3-64 of the preceding bytes. What stays in the clear is what the
 * tiers must read without the key (sizes, times, flags, the entry key, which is the Redis key
 * or LMDB key anyway); the metadata tag authenticates all of it except the mutable access
 * fields, and the value tag binds the value to the entry key.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "tier/entry_codec.h"

#define ABSENT       0xffffffffu
#define FIXED_LEN    88
#define SEALED_FIXED 120 /* FIXED_LEN, key id, nonce, value tag */
#define INNER_FIXED  32  /* ttl, cost, value checksum, dtype, ndim, zeros */
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

/* The fields both versions keep in the clear at the same offsets. */
static void put_header(unsigned char *p, unsigned version, size_t need, const gencache__entry *e,
                       uint64_t checksum, uint64_t expires_ms, uint64_t last_access_ms,
                       uint64_t hits)
{
    memcpy(p, GENCACHE__CODEC_MAGIC, 3);
    p[3] = (unsigned char)version;
    gencache__le32_put(p + 4, (uint32_t)need);
    gencache__le64_put(p + 8, e->sliding ? e->ttl_ms : 0);
    gencache__le64_put(p + 16, e->size);
    gencache__le64_put(p + 24, checksum);
    gencache__le64_put(p + 32, e->created_ms);
    put_mutable(p, expires_ms, last_access_ms, hits);
    gencache__le32_put(p + 80, (e->pinned ? FLAG_PINNED : 0) | (e->sliding ? FLAG_SLIDING : 0));
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
    put_header(p, GENCACHE__CODEC_VERSION, need, e, gencache__entry_checksum(e), expires_ms,
               last_access_ms, hits);
    gencache__le64_put(p + 48, e->ttl_ms);
    gencache__le64_put(p + 56, e->cost_ms);
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

/* The checks every record passes: magic, a known version, its length and its XXH3-64.
 * *n gets the record length. */
static int check_record(const unsigned char *p, size_t len, uint32_t *n)
{
    if (len < 4 || memcmp(p, GENCACHE__CODEC_MAGIC, 3) != 0)
        return GENCACHE_ECORRUPT;
    if (p[3] != GENCACHE__CODEC_VERSION && p[3] != GENCACHE__CODEC_VERSION_SEALED)
        return p[3] > GENCACHE__CODEC_VERSION_SEALED ? GENCACHE_EVERSION : GENCACHE_ECORRUPT;
    if (len < GENCACHE__CODEC_MIN_LEN)
        return GENCACHE_ECORRUPT;
    *n = gencache__le32_get(p + 4);
    if (*n < GENCACHE__CODEC_MIN_LEN || *n > len ||
        gencache__le64_get(p + *n - 8) != gencache__checksum(p, *n - 8))
        return GENCACHE_ECORRUPT;
    return GENCACHE_OK;
}

int gencache__codec_patch(void *buf, size_t len, uint64_t expires_ms, uint64_t last_access_ms,
                          uint64_t hits)
{
    unsigned char *p = buf;
    uint32_t n;
    if (check_record(p, len, &n) != GENCACHE_OK)
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

/* Reads the fields both versions keep in the clear; returns the flags. */
static uint32_t get_header(const unsigned char *p, gencache__codec_meta *out)
{
    out->size = gencache__le64_get(p + 16);
    out->checksum = gencache__le64_get(p + 24);
    out->created_ms = gencache__le64_get(p + 32);
    out->expires_ms = gencache__le64_get(p + 40);
    out->last_access_ms = gencache__le64_get(p + 64);
    out->hits = gencache__le64_get(p + 72);
    uint32_t flags = gencache__le32_get(p + 80);
    out->pinned = flags & FLAG_PINNED;
    out->sliding = flags & FLAG_SLIDING;
    return flags;
}

static int decode_plain(const gencache_allocator *alloc, const unsigned char *p, uint32_t n,
                        gencache__codec_meta *out)
{
    const unsigned char *end = p + n - 8;
    uint32_t flags = get_header(p, out);
    out->ttl_ms = gencache__le64_get(p + 48);
    out->cost_ms = gencache__le64_get(p + 56);
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
    out->value_checksum = out->checksum;
    return GENCACHE_OK;
}

/* The clear part of a sealed record: the header, the sealing parameters and the key. *inner and
 * *inner_len get the encrypted metadata (its tag follows it). */
static int decode_sealed_head(const gencache_allocator *alloc, const unsigned char *p, uint32_t n,
                              gencache__codec_meta *out, const unsigned char **inner,
                              uint32_t *inner_len)
{
    const unsigned char *end = p + n - 8;
    if (n < SEALED_FIXED + 8 + INNER_FIXED + GENCACHE__CRYPT_TAG_LEN)
        return GENCACHE_ECORRUPT;
    uint32_t flags = gencache__le32_get(p + 80);
    static const unsigned char zero[16];
    if ((flags & ~(FLAG_PINNED | FLAG_SLIDING)) || memcmp(p + 48, zero, 16) != 0 ||
        memcmp(p + 84, zero, 4) != 0)
        return GENCACHE_ECORRUPT;
    out->sealed = true;
    get_header(p, out);
    out->ttl_ms = out->sliding ? gencache__le64_get(p + 8) : 0; /* the inner copy is exact */
    out->key_id = gencache__le32_get(p + 88);
    memcpy(out->nonce, p + 92, GENCACHE__CRYPT_NONCE_LEN);
    memcpy(out->value_tag, p + 104, GENCACHE__CRYPT_TAG_LEN);
    const unsigned char *q = p + SEALED_FIXED;
    int rc = take_str(alloc, &q, end, &out->key);
    const char *layer;
    size_t layer_len;
    if (rc == GENCACHE_OK &&
        (!out->key || gencache__key_split(out->key, &layer, &layer_len) != GENCACHE_OK))
        rc = GENCACHE_ECORRUPT;
    if (rc != GENCACHE_OK)
        return rc;
    if (end - q < 4)
        return GENCACHE_ECORRUPT;
    *inner_len = gencache__le32_get(q);
    q += 4;
    if (*inner_len < INNER_FIXED ||
        (size_t)(end - q) != (size_t)*inner_len + GENCACHE__CRYPT_TAG_LEN)
        return GENCACHE_ECORRUPT;
    *inner = q;
    out->record_len = n;
    return GENCACHE_OK;
}

/* Decrypts and parses the inner metadata of a sealed record. */
static int open_inner(gencache__seal *s, const unsigned char *p, const unsigned char *inner,
                      uint32_t inner_len, gencache__codec_meta *out)
{
    unsigned char stackbuf[512];
    unsigned char *b =
        inner_len <= sizeof stackbuf ? stackbuf : gencache__malloc(out->alloc, inner_len);
    if (!b)
        return GENCACHE_ENOMEM;
    int rc = gencache__crypt_open(s ? s->keys : NULL, out->key_id, GENCACHE__CRYPT_META, out->nonce,
                                  p, 40, p + 80, (size_t)(inner - (p + 80)), inner, b, inner_len,
                                  inner + inner_len);
    const unsigned char *q = b + INNER_FIXED, *end = b + inner_len;
    if (rc == GENCACHE_OK) {
        out->ttl_ms = gencache__le64_get(b);
        out->cost_ms = gencache__le64_get(b + 8);
        out->value_checksum = gencache__le64_get(b + 16);
        out->dtype = (gencache_dtype)b[24];
        out->ndim = b[25];
        if (out->ndim > GENCACHE_MAX_DIMS || b[26] || b[27] || gencache__le32_get(b + 28) ||
            (out->dtype != GENCACHE_DTYPE_NONE && !gencache_dtype_name(out->dtype)) ||
            (size_t)(end - q) < 8u * out->ndim)
            rc = GENCACHE_ECORRUPT;
    }
    for (uint32_t i = 0; rc == GENCACHE_OK && i < out->ndim; i++, q += 8)
        out->shape[i] = (int64_t)gencache__le64_get(q);
    char **strs[4] = {&out->tenant, &out->model, &out->tags, &out->content_type};
    for (int i = 0; i < 4 && rc == GENCACHE_OK; i++)
        rc = take_str(out->alloc, &q, end, strs[i]);
    if (rc == GENCACHE_OK && q != end)
        rc = GENCACHE_ECORRUPT;
    OPENSSL_cleanse(b, inner_len);
    if (b != stackbuf)
        gencache__free(out->alloc, b);
    if ((rc == GENCACHE_EPERM || rc == GENCACHE_ECORRUPT) && s)
        atomic_fetch_add(&s->rejected, 1);
    if (rc == GENCACHE_OK)
        out->opened = true;
    return rc;
}

static int decode_any(gencache__seal *s, bool head_only, const gencache_allocator *alloc,
                      const void *buf, size_t len, gencache__codec_meta *out)
{
    memset(out, 0, sizeof *out);
    out->alloc = alloc;
    const unsigned char *p = buf;
    uint32_t n;
    int rc = check_record(p, len, &n);
    if (rc != GENCACHE_OK)
        return rc;
    if (p[3] == GENCACHE__CODEC_VERSION)
        return decode_plain(alloc, p, n, out);
    const unsigned char *inner = NULL;
    uint32_t inner_len = 0;
    rc = decode_sealed_head(alloc, p, n, out, &inner, &inner_len);
    if (rc == GENCACHE_OK && !head_only)
        rc = open_inner(s, p, inner, inner_len, out);
    if (rc != GENCACHE_OK)
        gencache__codec_meta_clear(out);
    return rc;
}

int gencache__codec_decode(const gencache_allocator *alloc, const void *buf, size_t len,
                           gencache__codec_meta *out)
{
    return decode_any(NULL, false, alloc, buf, len, out);
}

int gencache__codec_decode_sealed(gencache__seal *s, const gencache_allocator *alloc,
                                  const void *buf, size_t len, gencache__codec_meta *out)
{
    return decode_any(s, false, alloc, buf, len, out);
}

int gencache__codec_decode_head(const gencache_allocator *alloc, const void *buf, size_t len,
                                gencache__codec_meta *out)
{
    return decode_any(NULL, true, alloc, buf, len, out);
}

int gencache__codec_value_seal_to(const gencache__seal *s, const gencache__entry *e,
                                  gencache__codec_value *v, unsigned char *dst)
{
    memset(v, 0, sizeof *v);
    if (!s || !s->keys)
        return GENCACHE_EINVAL;
    v->sealed = true;
    v->key_id = gencache__crypt_current_id(s->keys);
    int rc = gencache__crypt_nonce(v->nonce);
    if (rc == GENCACHE_OK)
        rc = gencache__crypt_seal(s->keys, GENCACHE__CRYPT_VALUE, v->nonce, e->key, strlen(e->key),
                                  NULL, 0, e->value, dst, e->size, v->tag);
    if (rc != GENCACHE_OK) {
        memset(v, 0, sizeof *v);
        return rc;
    }
    v->data = dst;
    v->checksum = gencache__checksum(dst, e->size);
    return GENCACHE_OK;
}

/* Each thread keeps one buffer for sealing values up to SCRATCH_MAX bytes: a fresh allocation
 * per put of a 1.5 MiB value cost more in page faults than the cipher (docs/BENCHMARKS.md). */
#define SCRATCH_MAX (2u << 20)

typedef struct scratch {
    unsigned char *buf; /* SCRATCH_MAX bytes */
    bool busy;
} scratch;

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void scratch_free(void *p)
{
    scratch *sc = p;
    free(sc->buf);
    free(sc);
}

static void scratch_init(void)
{
    pthread_key_create(&scratch_key, scratch_free);
}

/* The thread's buffer when it is free and fits, else NULL. */
static unsigned char *scratch_take(size_t n)
{
    if (n > SCRATCH_MAX || pthread_once(&scratch_once, scratch_init) != 0)
        return NULL;
    scratch *sc = pthread_getspecific(scratch_key);
    if (!sc) {
        sc = calloc(1, sizeof *sc);
        if (sc)
            sc->buf = malloc(SCRATCH_MAX);
        if (!sc || !sc->buf || pthread_setspecific(scratch_key, sc) != 0) {
            if (sc)
                free(sc->buf);
            free(sc);
            return NULL;
        }
    }
    if (sc->busy)
        return NULL;
    sc->busy = true;
    return sc->buf;
}

void gencache__codec_value_free(const gencache_allocator *alloc, unsigned char *owned)
{
    if (!owned)
        return;
    scratch *sc =
        pthread_once(&scratch_once, scratch_init) == 0 ? pthread_getspecific(scratch_key) : NULL;
    if (sc && sc->buf == owned)
        sc->busy = false;
    else
        gencache__free(alloc, owned);
}

int gencache__codec_value_seal(const gencache__seal *s, const gencache_allocator *alloc,
                               const gencache__entry *e, gencache__codec_value *v,
                               unsigned char **owned)
{
    memset(v, 0, sizeof *v);
    *owned = NULL;
    if (!s || !s->keys) {
        v->data = e->value;
        v->checksum = gencache__entry_checksum(e);
        return GENCACHE_OK;
    }
    /* A caller's own allocator sees every allocation: no scratch buffer then. */
    unsigned char *b = alloc ? NULL : scratch_take(e->size);
    if (!b)
        b = gencache__malloc(alloc, e->size ? e->size : 1);
    if (!b)
        return GENCACHE_ENOMEM;
    int rc = gencache__codec_value_seal_to(s, e, v, b);
    if (rc != GENCACHE_OK) {
        gencache__codec_value_free(alloc, b);
        return rc;
    }
    *owned = b;
    return GENCACHE_OK;
}

static size_t inner_size(const gencache__entry *e)
{
    uint32_t ndim = e->ndim <= GENCACHE_MAX_DIMS ? e->ndim : GENCACHE_MAX_DIMS;
    return INNER_FIXED + 8u * ndim + 4u * 4u + str_len(e->tenant) + str_len(e->model) +
           str_len(e->tags) + str_len(e->content_type);
}

size_t gencache__codec_value_size(const gencache__entry *e, const gencache__codec_value *v)
{
    if (!v || !v->sealed)
        return gencache__codec_size(e);
    return SEALED_FIXED + 4u + str_len(e->key) + 4u + inner_size(e) + GENCACHE__CRYPT_TAG_LEN + 8u;
}

int gencache__codec_encode_value(const gencache__seal *s, const gencache__entry *e,
                                 const gencache__codec_value *v, uint64_t expires_ms,
                                 uint64_t last_access_ms, uint64_t hits, void *buf, size_t cap,
                                 size_t *len)
{
    if (!v || !v->sealed)
        return gencache__codec_encode(e, expires_ms, last_access_ms, hits, buf, cap, len);
    *len = 0;
    if (!s || !s->keys || v->key_id != gencache__crypt_current_id(s->keys) || !e->key ||
        e->ndim > GENCACHE_MAX_DIMS)
        return GENCACHE_EINVAL;
    const char *strs[4] = {e->tenant, e->model, e->tags, e->content_type};
    for (int i = 0; i < 4; i++)
        if (str_len(strs[i]) > GENCACHE__CODEC_STR_MAX)
            return GENCACHE_EINVAL;
    if (str_len(e->key) > GENCACHE__CODEC_STR_MAX)
        return GENCACHE_EINVAL;
    size_t need = gencache__codec_value_size(e, v);
    if (cap < need)
        return GENCACHE_EINVAL;
    unsigned char *p = buf;
    memset(p, 0, SEALED_FIXED);
    put_header(p, GENCACHE__CODEC_VERSION_SEALED, need, e, v->checksum, expires_ms, last_access_ms,
               hits);
    gencache__le32_put(p + 88, v->key_id);
    memcpy(p + 92, v->nonce, GENCACHE__CRYPT_NONCE_LEN);
    memcpy(p + 104, v->tag, GENCACHE__CRYPT_TAG_LEN);
    unsigned char *q = put_str(p + SEALED_FIXED, e->key);
    size_t ilen = inner_size(e);
    gencache__le32_put(q, (uint32_t)ilen);
    q += 4;
    unsigned char *inner = q;
    gencache__le64_put(q, e->ttl_ms);
    gencache__le64_put(q + 8, e->cost_ms);
    gencache__le64_put(q + 16, gencache__entry_checksum(e));
    q[24] = (unsigned char)e->dtype;
    q[25] = (unsigned char)e->ndim;
    memset(q + 26, 0, 6);
    q += INNER_FIXED;
    for (uint32_t i = 0; i < e->ndim; i++, q += 8)
        gencache__le64_put(q, (uint64_t)e->shape[i]);
    for (int i = 0; i < 4; i++)
        q = put_str(q, strs[i]);
    /* The metadata is encrypted in place; everything in the clear except the access fields
     * (bytes 40-79, rewritten by gencache__codec_patch()) is its additional data. */
    int rc = gencache__crypt_seal(s->keys, GENCACHE__CRYPT_META, v->nonce, p, 40, p + 80,
                                  (size_t)(inner - (p + 80)), inner, inner, ilen, q);
    if (rc != GENCACHE_OK) {
        OPENSSL_cleanse(p, need);
        return rc;
    }
    q += GENCACHE__CRYPT_TAG_LEN;
    gencache__le64_put(q, gencache__checksum(p, (size_t)(q - p)));
    *len = need;
    return GENCACHE_OK;
}

int gencache__codec_value_open(gencache__seal *s, const gencache__codec_meta *m,
                               unsigned char *value, size_t size, uint64_t *checksum)
{
    *checksum = 0;
    int rc = GENCACHE_OK;
    if (!m->sealed) {
        if (s && s->keys)
            rc = GENCACHE_EPERM;
    } else if (size != m->size || !m->key) {
        rc = GENCACHE_ECORRUPT;
    } else {
        rc =
            gencache__crypt_open(s ? s->keys : NULL, m->key_id, GENCACHE__CRYPT_VALUE, m->nonce,
                                 m->key, strlen(m->key), NULL, 0, value, value, size, m->value_tag);
    }
    if ((rc == GENCACHE_EPERM || rc == GENCACHE_ECORRUPT) && s)
        atomic_fetch_add(&s->rejected, 1);
    if (rc == GENCACHE_OK)
        *checksum = m->value_checksum;
    return rc;
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
