/*
 * fuzz_http.c: libFuzzer target for what gencached reads from a request before the library sees
 * it (tools/gencached/route.c and parse.c, socket-free): routing of a request line and the
 * verdict on an entry key, the PUT headers (cost, TTL, tags, model, content type, pin, dtype,
 * shape, codec), If-None-Match, the invalidate filter as a JSON body and as query values, the
 * prewarm JSON-lines splitter, and the ?as= conversion of a stored tensor, both of bytes as a
 * shared tier may hand them over and of a tensor the daemon encoded itself. Every input must be
 * answered or refused without a crash, and each answer keeps its invariants (checked here).
 *
 * Input: the first byte picks the reader; the rest are its fields, separated by '\n' (a field
 * that is a lone 0x01 byte is an absent header or parameter). For ?as=, the fields are followed
 * by binary bytes: see as_raw() and as_round_trip().
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gencache.h"
#include "parse.h"
#include "route.h"

#define MAX_FIELDS 16

static gencache *cache; /* memory only, the default layers: for the key verdicts */

static void open_cache(void)
{
    if (cache)
        return;
    gencache_options o;
    gencache_options_init(&o);
    o.data_dir = NULL;
    o.redis_url = NULL;
    o.mem_max_bytes = 1 << 20;
    if (gencache_open(&cache, &o) != GENCACHE_OK)
        abort();
}

/* Splits text (NUL-terminated, modified) at '\n' into at most max fields; a lone 0x01 is NULL.
 * Returns the count. */
static int split(char *text, const char **f, int max)
{
    int n = 0;
    for (char *p = text; n < max;) {
        char *nl = strchr(p, '\n');
        if (nl)
            *nl = '\0';
        f[n++] = strcmp(p, "\x01") == 0 ? NULL : p;
        if (!nl)
            break;
        p = nl + 1;
    }
    return n;
}

static void route(const char **f, int n)
{
    const char *method = n > 0 && f[0] ? f[0] : "";
    const char *path = n > 1 && f[1] ? f[1] : "";
    gcd_route_match m;
    gcd_route_resolve(method, path, &m);
    if (m.status != 0 && m.status != 404 && m.status != 405)
        abort();
    if ((m.status == 404) != (m.route == GCD_ROUTE_NONE) || (m.status != 404 && !m.allow))
        abort();
    if (m.tail && (m.tail < path || m.tail > path + strlen(path)))
        abort();
    if (!gcd_route_name(m.route))
        abort();
    if (m.status == 0 && m.route == GCD_ROUTE_ENTRY) {
        const char *code;
        int err;
        unsigned st = gcd_route_key_status(cache, m.tail, &code, &err);
        if (st != 0 && st != 400 && st != 404 && st != 500)
            abort();
        if ((st == 0) != (code == NULL))
            abort();
    }
}

static void put_headers(const char **f, int n)
{
    const char *v[11] = {0};
    for (int i = 0; i < n && i < 11; i++)
        v[i] = f[i];
    gcd_put_headers h = {v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10]};
    gencache_meta m;
    gencache_meta_init(&m);
    gencache_encode_options codec;
    gencache_encode_options_init(&codec);
    char err[200] = "";
    if (gcd_put_headers_parse(&h, &m, &codec, err, sizeof err) != 0) {
        if (!err[0])
            abort(); /* every refusal says why */
        return;
    }
    if (m.ndim > GENCACHE_MAX_DIMS || (h.shape && !h.dtype) || (h.dtype && !h.shape))
        abort();
    uint64_t bytes;
    (void)gcd_shape_bytes(&m, &bytes);
}

static void if_none_match(const char **f, int n)
{
    const char *list = n > 0 && f[0] ? f[0] : "";
    const char *etag = n > 1 && f[1] ? f[1] : "\"0123456789abcdef\"";
    bool match = gcd_etag_matches(list, etag);
    if (strcmp(list, "*") == 0 && !match)
        abort();
    /* A list that is exactly a plain tag (no separator, space or weak prefix) names it. */
    bool plain = *etag && !strpbrk(etag, ", \t") && strncmp(etag, "W/", 2) != 0;
    if (plain && strcmp(list, etag) == 0 && !match)
        abort();
}

static void filter_json(const char *text, size_t len)
{
    json_t *doc = json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, NULL);
    if (!doc)
        return;
    gcd_filter_args a;
    char err[200] = "";
    if (gcd_filter_from_json(doc, &a, err, sizeof err) == 0) {
        for (int i = 0; i < 5; i++)
            if (a.v[i] && !*a.v[i])
                abort(); /* empty strings are refused */
        const char *code;
        int kerr;
        if (a.v[GCD_FILTER_KEY])
            (void)gcd_route_key_status(cache, a.v[GCD_FILTER_KEY], &code, &kerr);
    } else if (!err[0]) {
        abort();
    }
    json_decref(doc);
}

static void filter_query(const char **f, int n)
{
    const char *v[6] = {0};
    for (int i = 0; i < n && i < 6; i++)
        v[i] = f[i];
    gcd_filter_args a;
    char err[200] = "";
    if (gcd_filter_from_query(v, &a, err, sizeof err) == 0) {
        if (a.has_older_than != (v[5] != NULL))
            abort();
    } else if (!err[0] || !v[5]) {
        abort(); /* only older_than can be refused */
    }
}

typedef struct lines {
    const char *body;
    size_t len;
    unsigned n, stop_at;
} lines;

static unsigned take_line(void *ctx, const char *line, size_t len, char *err, size_t err_size)
{
    lines *l = ctx;
    if (len == 0 || line < l->body || line + len > l->body + l->len || line[0] != '{')
        abort();
    if (line[len - 1] == ' ' || line[len - 1] == '\t' || line[len - 1] == '\r' ||
        memchr(line, '\n', len))
        abort(); /* trimmed, one line */
    if (++l->n == l->stop_at) {
        strncpy(err, "enough", err_size);
        return 413;
    }
    return 0;
}

static void jsonl(const char *body, size_t len, unsigned stop_at)
{
    lines l = {body, len, 0, stop_at};
    char err[200] = "";
    unsigned st = gcd_jsonl_split(body, len, take_line, &l, err, sizeof err);
    if (st != 0 && st != 400 && st != 413)
        abort();
    if (st == 413 && (l.n != stop_at || strcmp(err, "enough") != 0))
        abort();
    if (st && !err[0])
        abort();
}

static void check_decoded(int rc, const gcd_decoded *d, const char *err)
{
    if (rc != 0) {
        if (d->data || !err[0])
            abort();
        return;
    }
    uint64_t n = gencache_dtype_size(d->dtype);
    for (uint32_t i = 0; i < d->ndim; i++)
        n *= (uint64_t)d->shape[i];
    if (n != d->size)
        abort();
    free(d->data);
}

/* ?as= of stored bytes: fields as, content type; then dtype, ndim, u16 dimensions, bytes. */
static void as_raw(const char **f, int n, const uint8_t *bin, size_t len)
{
    if (len < 2)
        return;
    gencache_meta m;
    gencache_meta_init(&m);
    m.dtype = (gencache_dtype)(bin[0] % 9);
    m.ndim = bin[1] % (GENCACHE_MAX_DIMS + 1);
    size_t off = 2;
    for (uint32_t i = 0; i < m.ndim; i++, off += 2) {
        if (off + 2 > len)
            return;
        m.shape[i] = (int64_t)(bin[off] | bin[off + 1] << 8);
    }
    m.content_type = n > 1 ? f[1] : NULL;
    const char *as = n > 0 ? f[0] : NULL;
    size_t size = len - off;
    void *bytes = malloc(size ? size : 1);
    if (!bytes)
        abort();
    memcpy(bytes, bin + off, size);
    if (gcd_codec_needed(&m, as)) {
        gcd_decoded d;
        char err[160] = "";
        check_decoded(gcd_codec_decode(&m, bytes, size, as, &d, err, sizeof err), &d, err);
    }
    free(bytes);
}

/* ?as= of a tensor the daemon stored with a codec: fields as, codec, axis, group size (the PUT
 * headers); then dtype, rows, then the values. */
static void as_round_trip(const char **f, int n, const uint8_t *bin, size_t len)
{
    if (len < 2)
        return;
    char shape[32];
    gencache_dtype dt = bin[0] % 3 == 0   ? GENCACHE_DTYPE_F32
                        : bin[0] % 3 == 1 ? GENCACHE_DTYPE_F16
                                          : GENCACHE_DTYPE_BF16;
    size_t esz = gencache_dtype_size(dt);
    size_t rows = (size_t)(bin[1] % 8) + 1, count = (len - 2) / esz;
    if (count < rows || count > 4096)
        return;
    count -= count % rows;
    const char *dname = gencache_dtype_name(dt);
    snprintf(shape, sizeof shape, "%zu,%zu", rows, count / rows);
    gcd_put_headers h = {.dtype = dname,
                         .shape = shape,
                         .codec = n > 1 ? f[1] : NULL,
                         .codec_axis = n > 2 ? f[2] : NULL,
                         .codec_group_size = n > 3 ? f[3] : NULL};
    gencache_meta m;
    gencache_meta_init(&m);
    gencache_encode_options o;
    gencache_encode_options_init(&o);
    char err[200] = "";
    if (gcd_put_headers_parse(&h, &m, &o, err, sizeof err) != 0)
        return;
    void *values = malloc(count * esz);
    if (!values)
        abort();
    memcpy(values, bin + 2, count * esz);
    gencache_encoded *enc = NULL;
    if (gencache_tensor_encode(values, count * esz, &m, &o, &enc) == GENCACHE_OK) {
        const gencache_meta *em = gencache_encoded_meta(enc);
        const char *as = n > 0 ? f[0] : NULL;
        if (gcd_codec_needed(em, as)) {
            gcd_decoded d;
            char derr[160] = "";
            int rc = gcd_codec_decode(em, gencache_encoded_data(enc), gencache_encoded_size(enc),
                                      as, &d, derr, sizeof derr);
            check_decoded(rc, &d, derr);
        }
        gencache_encoded_free(enc);
    }
    free(values);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > (1 << 20))
        return 0;
    open_cache();
    uint8_t pick = data[0];
    data++;
    size--;
    /* The text part: up to the first NUL (header values and paths cannot carry one). */
    size_t tlen = strnlen((const char *)data, size);
    char *text = malloc(tlen + 1);
    if (!text)
        abort();
    memcpy(text, data, tlen);
    text[tlen] = '\0';
    const uint8_t *bin = data + tlen + (tlen < size);
    size_t blen = size - tlen - (tlen < size);
    const char *f[MAX_FIELDS];
    switch (pick % 8) {
    case 0:
        route(f, split(text, f, MAX_FIELDS));
        break;
    case 1:
        put_headers(f, split(text, f, MAX_FIELDS));
        break;
    case 2:
        if_none_match(f, split(text, f, MAX_FIELDS));
        break;
    case 3:
        filter_json((const char *)data, size);
        break;
    case 4:
        filter_query(f, split(text, f, MAX_FIELDS));
        break;
    case 5:
        jsonl((const char *)data, size, pick >> 3);
        break;
    case 6:
        as_raw(f, split(text, f, MAX_FIELDS), bin, blen);
        break;
    default:
        as_round_trip(f, split(text, f, MAX_FIELDS), bin, blen);
        break;
    }
    free(text);
    return 0;
}
