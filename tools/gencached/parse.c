/*
 * parse.c: the daemon's readers of untrusted text (parse.h). Every function here takes strings
 * a client sent (or, for ?as=, bytes a shared tier handed over) and either fills a result or
 * writes the 400's message; none keeps a pointer past the call (beyond the strings it was given)
 * or touches a socket, so they are fuzzed directly (tests/fuzz/fuzz_http.c). The messages are
 * the ones clients see.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "parse.h"

#define TAGS_MAX         1024
#define CONTENT_TYPE_MAX 255
#define MODEL_MAX        128

int gcd_parse_u64(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    if (!s || !*s)
        return -1;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

bool gcd_etag_matches(const char *list, const char *etag)
{
    size_t elen = strlen(etag);
    const char *p = list;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (!*p)
            break;
        const char *end = p;
        while (*end && *end != ',')
            end++;
        const char *e = end;
        while (e > p && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        if (e - p >= 2 && p[0] == 'W' && p[1] == '/')
            p += 2;
        if ((e - p == 1 && *p == '*') || ((size_t)(e - p) == elen && memcmp(p, etag, elen) == 0))
            return true;
        p = end;
    }
    return false;
}

int gcd_parse_shape(const char *s, gencache_meta *m)
{
    m->ndim = 0;
    const char *p = s;
    while (*p == ' ')
        p++;
    if (!*p)
        return 0;
    for (;;) {
        while (*p == ' ')
            p++;
        if (*p < '0' || *p > '9' || m->ndim == GENCACHE_MAX_DIMS)
            return -1;
        uint64_t v = 0;
        for (; *p >= '0' && *p <= '9'; p++) {
            v = v * 10 + (uint64_t)(*p - '0');
            if (v > (uint64_t)INT64_MAX)
                return -1;
        }
        m->shape[m->ndim++] = (int64_t)v;
        while (*p == ' ')
            p++;
        if (!*p)
            return 0;
        if (*p++ != ',')
            return -1;
    }
}

int gcd_shape_bytes(const gencache_meta *m, uint64_t *bytes)
{
    uint64_t n = gencache_dtype_size(m->dtype);
    int rc = 0;
    for (uint32_t i = 0; i < m->ndim && i < GENCACHE_MAX_DIMS; i++) {
        uint64_t d = (uint64_t)m->shape[i];
        if (d && n > UINT64_MAX / d)
            rc = -1;
        else
            n *= d;
    }
    *bytes = n;
    return rc;
}

/* Printable ASCII only: header values end up in metadata that is echoed back in headers. */
static bool printable(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
            return false;
    return true;
}

static bool is_float(gencache_dtype d)
{
    return d == GENCACHE_DTYPE_F32 || d == GENCACHE_DTYPE_F16 || d == GENCACHE_DTYPE_BF16;
}

#define BAD(...)                                                                                   \
    do {                                                                                           \
        snprintf(err, err_size, __VA_ARGS__);                                                      \
        return -1;                                                                                 \
    } while (0)

/* X-Gencache-Codec (with -Axis and -Group-Size), for a tensor whose dtype and shape are in m. */
static int parse_codec(const gcd_put_headers *h, const gencache_meta *m,
                       gencache_encode_options *out, char *err, size_t err_size)
{
    const char *name = h->codec;
    if (!name || strcasecmp(name, "none") == 0)
        return 0;
    if (gencache_codec_parse(name, &out->codec) != 0)
        BAD("X-Gencache-Codec '%.64s': expected none, f16, bf16, int8, int8-channel or "
            "int8-group",
            name);
    if (!is_float(m->dtype))
        BAD("X-Gencache-Codec %s needs a float tensor: X-Gencache-Dtype f32, f16 or bf16 with "
            "X-Gencache-Shape",
            name);
    uint64_t n;
    const char *v;
    if ((v = h->codec_axis)) {
        if (out->codec != GENCACHE_CODEC_INT8_CHANNEL || gcd_parse_u64(v, &n) != 0 || n >= m->ndim)
            BAD("X-Gencache-Codec-Axis '%.32s': int8-channel only, an axis below the tensor's "
                "rank",
                v);
        out->axis = (uint32_t)n;
    }
    if ((v = h->codec_group_size)) {
        if (out->codec != GENCACHE_CODEC_INT8_GROUP || gcd_parse_u64(v, &n) != 0 || n == 0 ||
            n > UINT32_MAX)
            BAD("X-Gencache-Codec-Group-Size '%.32s': int8-group only, a whole number >= 1", v);
        out->group_size = (uint32_t)n;
    }
    return 0;
}

int gcd_put_headers_parse(const gcd_put_headers *h, gencache_meta *m,
                          gencache_encode_options *codec, char *err, size_t err_size)
{
    const char *v;
    if ((v = h->cost_ms) && gcd_parse_u64(v, &m->cost_ms) != 0)
        BAD("X-Gencache-Cost-Ms '%.64s': expected a whole number of milliseconds", v);
    if ((v = h->ttl)) {
        uint64_t s;
        if (gcd_parse_u64(v, &s) != 0 || s > UINT64_MAX / 1000)
            BAD("X-Gencache-TTL '%.64s': expected a whole number of seconds", v);
        m->ttl_ms = s * 1000;
    }
    if ((v = h->tags)) {
        if (strlen(v) > TAGS_MAX || !printable(v))
            BAD("X-Gencache-Tags: expected at most %d printable ASCII characters", TAGS_MAX);
        m->tags = *v ? v : NULL;
    }
    if ((v = h->model)) {
        /* The model the value was derived from: invalidating that model reaches this entry,
         * whatever its layer. */
        if (strlen(v) > MODEL_MAX || !printable(v))
            BAD("X-Gencache-Model: expected at most %d printable ASCII characters", MODEL_MAX);
        m->model = *v ? v : NULL;
    }
    if ((v = h->content_type)) {
        if (strlen(v) > CONTENT_TYPE_MAX || !printable(v))
            BAD("Content-Type: expected at most %d printable ASCII characters", CONTENT_TYPE_MAX);
        m->content_type = *v ? v : NULL;
    }
    if ((v = h->pinned)) {
        if (strcmp(v, "1") == 0)
            m->pinned = 1;
        else if (strcmp(v, "0") != 0)
            BAD("X-Gencache-Pinned '%.64s': expected 1 or 0", v);
    }
    const char *dtype = h->dtype, *shape = h->shape;
    if (dtype && gencache_dtype_parse(dtype, &m->dtype) != 0)
        BAD("X-Gencache-Dtype '%.64s': unknown dtype (expected f32, f16, bf16, i8, u8, i32 or "
            "i64)",
            dtype);
    if (dtype && !shape)
        BAD("X-Gencache-Dtype needs X-Gencache-Shape");
    if (shape && !dtype)
        BAD("X-Gencache-Shape needs X-Gencache-Dtype");
    if (shape && gcd_parse_shape(shape, m) != 0)
        BAD("X-Gencache-Shape '%.64s': expected up to %d comma-separated dimensions", shape,
            GENCACHE_MAX_DIMS);
    return parse_codec(h, m, codec, err, err_size);
}

const char *const gcd_filter_names[6] = {"key", "layer", "tenant", "tag", "model", "older_than"};

int gcd_filter_from_query(const char *const values[6], gcd_filter_args *a, char *err,
                          size_t err_size)
{
    memset(a, 0, sizeof *a);
    for (size_t i = 0; i < 5; i++)
        a->v[i] = values[i];
    if (values[5]) {
        if (gencache_parse_duration_ms(values[5], &a->older_than_ms) != 0)
            BAD("older_than '%.64s': expected seconds or a duration like 30m or 7d", values[5]);
        a->has_older_than = true;
    }
    return 0;
}

int gcd_filter_from_json(const json_t *doc, gcd_filter_args *a, char *err, size_t err_size)
{
    memset(a, 0, sizeof *a);
    if (!json_is_object(doc))
        BAD("the body must be a JSON object like {\"layer\": \"result\"}");
    const char *name;
    json_t *v;
    json_object_foreach((json_t *)doc, name, v)
    {
        size_t i = 0;
        while (i < 6 && strcmp(gcd_filter_names[i], name) != 0)
            i++;
        if (i == 6)
            BAD("unknown field '%.64s' (expected key, layer, tenant, tag, model, older_than)",
                name);
        if (json_is_null(v))
            continue;
        if (i == 5) {
            if (json_is_integer(v) && json_integer_value(v) >= 0 &&
                (uint64_t)json_integer_value(v) <= UINT64_MAX / 1000) {
                a->older_than_ms = (uint64_t)json_integer_value(v) * 1000;
            } else if (!json_is_string(v) ||
                       gencache_parse_duration_ms(json_string_value(v), &a->older_than_ms) != 0) {
                BAD("field 'older_than': expected a non-negative number of seconds or a "
                    "duration string like \"30m\" or \"7d\"");
            }
            a->has_older_than = true;
            continue;
        }
        if (!json_is_string(v))
            BAD("field '%s': expected a string", name);
        a->v[i] = json_string_value(v);
        if (!*a->v[i])
            BAD("field '%s': must not be empty", name);
    }
    return 0;
}

unsigned gcd_jsonl_split(const char *body, size_t len, gcd_line_fn fn, void *ctx, char *err,
                         size_t err_size)
{
    const char *p = body, *end = body + len;
    size_t line = 0;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *e = nl ? nl : end;
        line++;
        const char *s = p, *t = e;
        while (s < t && (*s == ' ' || *s == '\t' || *s == '\r'))
            s++;
        while (t > s && (t[-1] == ' ' || t[-1] == '\t' || t[-1] == '\r'))
            t--;
        if (t > s) {
            /* The whole line must be a JSON object: a line that only starts like one is as
             * malformed as any other (its fields are checked when it runs). */
            json_t *obj = *s == '{' ? json_loadb(s, (size_t)(t - s), 0, NULL) : NULL;
            bool is_object = json_is_object(obj);
            json_decref(obj);
            if (!is_object) {
                snprintf(err, err_size,
                         "line %zu: expected a request object, or a body {\"requests\": [...]}",
                         line);
                return 400;
            }
            unsigned st = fn(ctx, s, (size_t)(t - s), err, err_size);
            if (st)
                return st;
        }
        p = e + 1;
    }
    return 0;
}

bool gcd_codec_needed(const gencache_meta *m, const char *as)
{
    return as != NULL || gencache_tensor_needs_decode(m, GENCACHE_DTYPE_NONE);
}

int gcd_codec_decode(const gencache_meta *m, const void *data, size_t size, const char *as,
                     gcd_decoded *out, char *err, size_t err_size)
{
    memset(out, 0, sizeof *out);
    gencache_dtype want = GENCACHE_DTYPE_NONE;
    if (as && (gencache_dtype_parse(as, &want) != 0 || !is_float(want))) {
        snprintf(err, err_size, "?as=%.32s: expected f32, f16 or bf16", as);
        return GENCACHE_EINVAL;
    }
    gencache_decode_info info;
    int rc = gencache_tensor_decode_info(m, data, size, want, &info);
    if (rc == GENCACHE_EINVAL || rc == GENCACHE_EUNSUPPORTED) {
        snprintf(err, err_size, "?as=%.32s: the entry is not a float tensor", as ? as : "");
        return GENCACHE_EINVAL;
    }
    if (rc != 0) {
        snprintf(err, err_size, "the stored tensor does not match its metadata");
        return rc;
    }
    out->data = malloc(info.size ? (size_t)info.size : 1);
    if (!out->data)
        return GENCACHE_ENOMEM;
    rc = gencache_tensor_decode(m, data, size, want, out->data, (size_t)info.size, &out->size);
    if (rc != 0) {
        free(out->data);
        out->data = NULL;
        /* A stored float tensor is finite or was widened exactly; narrowing it again can only
         * fail on a NaN/Inf that a client stored deliberately. */
        snprintf(err, err_size, "the tensor holds NaN or Inf, which %s cannot carry",
                 as ? as : gencache_dtype_name(info.desc.dtype));
        return rc;
    }
    out->dtype = info.desc.dtype;
    out->ndim = info.desc.ndim;
    memcpy(out->shape, info.desc.shape, sizeof out->shape);
    out->codec = info.codec;
    snprintf(out->content_type, sizeof out->content_type, "%.*s", (int)info.content_type_len,
             info.content_type);
    return 0;
}
