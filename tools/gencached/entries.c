/*
 * entries.c: GET, HEAD, PUT and DELETE on /v1/entries/{layer}/{hex}. A GET hands the cache's own
 * bytes to MHD (no copy): the response holds the read handle and MHD releases it when it has
 * sent the last byte or dropped the connection, so an entry evicted meanwhile is still sent
 * whole. Every PUT header is checked before the body is read; only the tensor shape against the
 * body size has to wait for the body.
 * With tenant tokens configured, every call is made on behalf of the token's tenant
 * (gencache_*_as): the library keeps private entries in their tenant's namespace, so another
 * tenant's GET, HEAD or DELETE finds nothing there, exactly like a miss.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gencached.h"

/* Longest well-formed key: a 32-byte layer name, "/", 64 hex digits. */
#define KEY_MAX (GENCACHE_KEY_MAX - 1)

typedef struct put_args {
    gencache_meta meta; /* strings point at MHD's header values: valid for the request */
    gcd_codec_args codec;
} put_args;

void gcd_entries_request_free(gcd_request *req)
{
    free(req->put);
    req->put = NULL;
}

/* Checks the key from the URL. Returns true when it is good; otherwise queues the error. */
static bool check_key(struct MHD_Connection *c, gcd_request *req, const char *key,
                      enum MHD_Result *r)
{
    const char *code;
    int err;
    unsigned status = gcd_route_key_status(req->srv->cache, key, &code, &err);
    if (status == 0)
        return true;
    if (status == MHD_HTTP_NOT_FOUND) {
        const char *slash = strchr(key, '/');
        int n = slash ? (int)(slash - key) : (int)strlen(key);
        *r = gcd_reply_error(c, req, status, code, "unknown layer '%.*s'", n, key);
    } else if (status == MHD_HTTP_BAD_REQUEST) {
        *r = gcd_reply_error(c, req, status, code,
                             "malformed key '%.120s': expected <layer>/<64 lowercase hex digits>",
                             key);
    } else {
        *r = gcd_reply_gencache(c, req, err, "checking the key");
    }
    return false;
}

static enum MHD_Result reply_miss(struct MHD_Connection *c, gcd_request *req, const char *key)
{
    return gcd_reply_error(c, req, MHD_HTTP_NOT_FOUND, "not_found", "no entry %s", key);
}

void gcd_entry_layer(const char *key, char *out, size_t size)
{
    const char *slash = strchr(key, '/');
    size_t n = slash ? (size_t)(slash - key) : strlen(key);
    if (n >= size)
        n = size - 1;
    memcpy(out, key, n);
    out[n] = '\0';
}

static void release_handle(void *cls)
{
    gencache_handle_release(cls);
}

static const char *header(struct MHD_Connection *c, const char *name)
{
    return MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
}

const char *gcd_u64_dec(uint64_t v, char *buf)
{
    char tmp[21];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        buf[i] = tmp[n - 1 - i];
    buf[n] = '\0';
    return buf;
}

void gcd_entry_etag(uint64_t checksum, char out[19])
{
    static const char hex[] = "0123456789abcdef";
    out[0] = '"';
    for (int i = 0; i < 16; i++)
        out[1 + i] = hex[(checksum >> (60 - 4 * i)) & 0xf];
    out[17] = '"';
    out[18] = '\0';
}

/* The coarse clock is the one the library's expiry reads by default, and the figure is rounded
 * up to seconds anyway. */
uint64_t gcd_entry_ttl_left(const gencache_meta *m)
{
    if (!m->expires_ms)
        return UINT64_MAX;
    uint64_t now = gcd_now_coarse_ms();
    return m->expires_ms > now ? (m->expires_ms - now + 999) / 1000 : 0;
}

void gcd_entry_headers(const gencache_meta *m, uint64_t ttl_left, gcd_header_fn add, void *ctx)
{
    char buf[GENCACHE_MAX_DIMS * 21 + 1];
    add(ctx, MHD_HTTP_HEADER_CONTENT_TYPE,
        m->content_type && *m->content_type ? m->content_type : "application/octet-stream");
    if (m->tier)
        add(ctx, "X-Gencache-Tier", m->tier);
    add(ctx, "X-Gencache-Cost-Ms", gcd_u64_dec(m->cost_ms, buf));
    if (m->dtype != GENCACHE_DTYPE_NONE) {
        const char *name = gencache_dtype_name(m->dtype);
        add(ctx, "X-Gencache-Dtype", name ? name : "unknown");
        size_t n = 0;
        buf[0] = '\0';
        for (uint32_t i = 0; i < m->ndim && i < GENCACHE_MAX_DIMS; i++)
            n += (size_t)snprintf(buf + n, sizeof buf - n, "%s%" PRId64, i ? "," : "", m->shape[i]);
        add(ctx, "X-Gencache-Shape", buf);
    }
    if (m->tags && *m->tags)
        add(ctx, "X-Gencache-Tags", m->tags);
    if (m->model && *m->model)
        add(ctx, "X-Gencache-Model", m->model);
    if (m->pinned)
        add(ctx, "X-Gencache-Pinned", "1");
    if (ttl_left != UINT64_MAX)
        add(ctx, "X-Gencache-TTL", gcd_u64_dec(ttl_left, buf));
}

static void add_to_response(void *ctx, const char *name, const char *value)
{
    MHD_add_response_header(ctx, name, value);
}

static void add_meta_headers(struct MHD_Response *resp, const gencache_meta *m, uint64_t ttl_left)
{
    gcd_entry_headers(m, ttl_left, add_to_response, resp);
}

void gcd_entry_meta_headers(struct MHD_Response *resp, const gencache_meta *m)
{
    add_meta_headers(resp, m, gcd_entry_ttl_left(m));
}

void gcd_entry_decoded_view(const gencache_meta *m, const gcd_decoded *d, gencache_meta *view,
                            char etag[48])
{
    /* The representation differs from the stored bytes: so does its validator. */
    snprintf(etag, 48, "\"%016" PRIx64 "-%s\"", m->checksum, gencache_dtype_name(d->dtype));
    *view = *m;
    view->content_type = d->content_type;
    view->dtype = d->dtype;
    view->ndim = d->ndim;
    memcpy(view->shape, d->shape, sizeof view->shape);
}

/* Answers with the entry decoded (an int8 payload, or ?as=): a new buffer, so no zero copy. */
static enum MHD_Result reply_decoded(struct MHD_Connection *c, gcd_request *req, gencache_handle *h,
                                     const char *as)
{
    const gencache_meta *m = gencache_handle_meta(h);
    gcd_decoded d;
    char err[160] = "";
    int rc = gcd_codec_decode(m, gencache_handle_data(h), gencache_handle_size(h), as, &d, err,
                              sizeof err);
    if (rc != 0) {
        gencache_handle_release(h);
        if (rc == GENCACHE_EINVAL && err[0])
            return gcd_reply_error(c, req, MHD_HTTP_BAD_REQUEST, "bad_conversion", "%s", err);
        return gcd_reply_gencache(c, req, rc, err[0] ? err : "decoding the tensor");
    }
    char etag[48];
    gencache_meta view;
    gcd_entry_decoded_view(m, &d, &view, etag);
    const char *inm =
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_NONE_MATCH);
    struct MHD_Response *resp;
    unsigned status = MHD_HTTP_OK;
    if (inm && gcd_etag_matches(inm, etag)) {
        free(d.data);
        resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
        status = MHD_HTTP_NOT_MODIFIED;
    } else {
        resp = MHD_create_response_from_buffer(d.size, d.data, MHD_RESPMEM_MUST_FREE);
        if (!resp)
            free(d.data);
    }
    if (!resp) {
        gencache_handle_release(h);
        return MHD_NO;
    }
    if (status == MHD_HTTP_OK) {
        add_meta_headers(resp, &view, gcd_entry_ttl_left(&view));
        if (d.codec != GENCACHE_CODEC_NONE)
            MHD_add_response_header(resp, "X-Gencache-Codec", gencache_codec_name(d.codec));
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, etag);
    gencache_handle_release(h);
    return gcd_reply_queue(c, req, status, resp);
}

/* The caller as the library sees it: the tenant from the token (NULL in the open mode). */
static gencache_caller caller_of(const gcd_request *req)
{
    gencache_caller who;
    gencache_caller_init(&who);
    who.tenant = req->tenant;
    return who;
}

static enum MHD_Result forbidden_shared(struct MHD_Connection *c, gcd_request *req, const char *key)
{
    return gcd_reply_error(c, req, MHD_HTTP_FORBIDDEN, "forbidden",
                           "entry %s is shared and was stored by another tenant", key);
}

/* Another tenant's private entry is not addressable (a miss); a shared entry may be deleted only
 * by the tenant that stored it: the library decides both. */
static enum MHD_Result handle_delete(struct MHD_Connection *c, gcd_request *req, const char *key)
{
    gencache_caller who = caller_of(req);
    int err = gencache_del_as(req->srv->cache, &who, key);
    if (err == GENCACHE_ENOTFOUND)
        return reply_miss(c, req, key);
    if (err == GENCACHE_EPERM)
        return forbidden_shared(c, req, key);
    if (err != 0)
        return gcd_reply_gencache(c, req, err, "deleting the entry");
    return gcd_reply_bytes(c, req, MHD_HTTP_NO_CONTENT, NULL, "", 0);
}

static enum MHD_Result put_end(struct MHD_Connection *c, gcd_request *req, const char *key);

enum MHD_Result gcd_entries_handle(struct MHD_Connection *c, gcd_request *req)
{
    const char *key = req->tail ? req->tail : "";
    if (strcmp(req->method, "PUT") == 0)
        return put_end(c, req, key);
    enum MHD_Result r = MHD_NO;
    if (strcmp(req->method, "DELETE") == 0)
        return check_key(c, req, key, &r) ? handle_delete(c, req, key) : r;
    /* A GET or HEAD asks the library at once: it checks the key as it looks (a malformed key is
     * EINVAL, an unknown layer ENOTFOUND), so a hit validates it once. Only a failed lookup is
     * checked again here, to tell a bad key or an unknown layer from a miss. */
    const char *as = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "as");

    bool head = strcmp(req->method, "HEAD") == 0;
    char layer[40];
    gcd_entry_layer(key, layer, sizeof layer);
    /* HEAD is a probe: it must not count as a use of the entry. A GET may say what computing the
     * value would have cost this requester: the savings credit that, not the stored cost. The
     * library looks in the caller's namespace and counts the lookup for its tenant. */
    gencache_caller who = caller_of(req);
    const char *cost = header(c, "X-Gencache-Cost-Ms");
    if (cost && gcd_parse_u64(cost, &who.cost_ms) != 0)
        return !check_key(c, req, key, &r)
                   ? r
                   : gcd_reply_error(c, req, MHD_HTTP_BAD_REQUEST, "bad_header",
                                     "X-Gencache-Cost-Ms '%.64s': expected a whole number of "
                                     "milliseconds",
                                     cost);
    gencache_handle *h = NULL;
    int err = head ? gencache_peek_as(req->srv->cache, &who, key, &h)
                   : gencache_get_as(req->srv->cache, &who, key, &h);
    if (!head && err == 0) {
        gcd_metrics_hit(req->srv->metrics, layer, gencache_handle_meta(h)->tier);
        gcd_ui_hit(req->srv, req->tenant, key, gencache_handle_meta(h)->hits);
    }
    if (err != 0 && !check_key(c, req, key, &r))
        return r;
    if (err == GENCACHE_ENOTFOUND)
        return reply_miss(c, req, key);
    if (err != 0)
        return gcd_reply_gencache(c, req, err, "looking up the entry");

    const gencache_meta *m = gencache_handle_meta(h);
    if (gcd_codec_needed(m, as))
        return reply_decoded(c, req, h, as);
    char etag[19];
    gcd_entry_etag(m->checksum, etag);
    const char *inm =
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_NONE_MATCH);
    if (inm && gcd_etag_matches(inm, etag)) {
        gencache_handle_release(h);
        struct MHD_Response *resp =
            MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
        if (!resp)
            return MHD_NO;
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, etag);
        return gcd_reply_queue(c, req, MHD_HTTP_NOT_MODIFIED, resp);
    }

    /* A small entry's response built for an earlier GET of the same bytes, tier and TTL is
     * queued again (respcache.c); the lookup above was made as always. */
    const void *data = gencache_handle_data(h);
    size_t size = gencache_handle_size(h);
    uint64_t ttl_left = gcd_entry_ttl_left(m);
    struct MHD_Response *kept =
        head ? NULL : gcd_respcache_find(req->srv, data, size, ttl_left, m->tier);
    if (kept) {
        gencache_handle_release(h); /* the kept response holds its own */
        r = MHD_queue_response(c, MHD_HTTP_OK, kept);
        if (r == MHD_YES)
            req->status = MHD_HTTP_OK;
        return r;
    }
    struct MHD_Response *resp = MHD_create_response_from_buffer_with_free_callback_cls(
        size, (void *)data, release_handle, h);
    if (!resp) {
        gencache_handle_release(h);
        return MHD_NO;
    }
    /* From here the response owns the handle. */
    add_meta_headers(resp, m, ttl_left);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, etag);
    if (head)
        return gcd_reply_queue(c, req, MHD_HTTP_OK, resp);
    r = MHD_queue_response(c, MHD_HTTP_OK, resp);
    if (r == MHD_YES)
        req->status = MHD_HTTP_OK;
    /* Our reference goes to the cache (or is dropped by it). */
    gcd_respcache_keep(req->srv, data, size, ttl_left, m->tier, resp);
    return r;
}

#define BAD_HEADER(...)                                                                            \
    do {                                                                                           \
        *queued = true;                                                                            \
        return gcd_reply_error(c, req, MHD_HTTP_BAD_REQUEST, "bad_header", __VA_ARGS__);           \
    } while (0)

enum MHD_Result gcd_entries_put_begin(struct MHD_Connection *c, gcd_request *req, bool *queued)
{
    const char *key = req->tail ? req->tail : "";
    enum MHD_Result r = MHD_NO;
    *queued = false;
    if (!check_key(c, req, key, &r)) {
        *queued = true;
        return r;
    }
    put_args *a = calloc(1, sizeof *a);
    if (!a)
        return MHD_NO;
    req->put = a;
    gencache_meta *m = &a->meta;
    gencache_meta_init(m);
    gencache_encode_options_init(&a->codec.opts);

    gcd_put_headers h = {
        .cost_ms = header(c, "X-Gencache-Cost-Ms"),
        .ttl = header(c, "X-Gencache-TTL"),
        .tags = header(c, "X-Gencache-Tags"),
        .model = header(c, "X-Gencache-Model"),
        .content_type = header(c, MHD_HTTP_HEADER_CONTENT_TYPE),
        .pinned = header(c, "X-Gencache-Pinned"),
        .dtype = header(c, "X-Gencache-Dtype"),
        .shape = header(c, "X-Gencache-Shape"),
        .codec = header(c, "X-Gencache-Codec"),
        .codec_axis = header(c, "X-Gencache-Codec-Axis"),
        .codec_group_size = header(c, "X-Gencache-Codec-Group-Size"),
    };
    char err[200];
    if (gcd_put_headers_parse(&h, m, &a->codec.opts, err, sizeof err) != 0)
        BAD_HEADER("%s", err);
    return MHD_YES;
}

/* PUT, body complete: stores it. */
static enum MHD_Result put_end(struct MHD_Connection *c, gcd_request *req, const char *key)
{
    put_args *a = req->put;
    if (!a)
        return MHD_NO;
    gencache_meta *m = &a->meta;
    if (m->dtype != GENCACHE_DTYPE_NONE) {
        /* Count the bytes the shape implies, refusing overflow on the way. */
        uint64_t bytes;
        bool overflow = gcd_shape_bytes(m, &bytes) != 0;
        if (overflow || bytes != req->body_len)
            return gcd_reply_error(c, req, MHD_HTTP_BAD_REQUEST, "shape_mismatch",
                                   "X-Gencache-Shape '%s' of %s is %s%llu bytes, the body is "
                                   "%zu bytes",
                                   header(c, "X-Gencache-Shape"), gencache_dtype_name(m->dtype),
                                   overflow ? "more than " : "", (unsigned long long)bytes,
                                   req->body_len);
    }
    const void *bytes = req->body ? req->body : "";
    size_t len = req->body_len;
    gencache_encoded *encoded = NULL;
    if (a->codec.opts.codec != GENCACHE_CODEC_NONE) {
        int err = gcd_codec_encode(&a->codec, m, bytes, len, &encoded);
        if (err == GENCACHE_EINVAL)
            return gcd_reply_error(c, req, MHD_HTTP_BAD_REQUEST, "bad_tensor",
                                   "X-Gencache-Codec %s: the tensor holds NaN or Inf, or its "
                                   "options do not fit its shape",
                                   gencache_codec_name(a->codec.opts.codec));
        if (err != 0)
            return gcd_reply_gencache(c, req, err, "encoding the tensor");
        bytes = gencache_encoded_data(encoded);
        len = gencache_encoded_size(encoded);
    }
    /* The owner comes from the token, never from the request. The library keeps a private
     * entry in the tenant's namespace, refuses to replace another tenant's shared entry (or any
     * tenant could poison what the others read), and holds the tenant to its quota. */
    gencache_caller who = caller_of(req);
    char layer[40];
    gcd_entry_layer(key, layer, sizeof layer);
    int err = gencache_put_as(req->srv->cache, &who, key, bytes, len, m);
    gencache_encoded_free(encoded); /* after the put: m's strings may point into it */
    /* Who may pin is the library's rule: tenants get pins from the preferred patterns. */
    if (err == GENCACHE_EPERM && m->pinned)
        return gcd_reply_error(c, req, MHD_HTTP_FORBIDDEN, "forbidden",
                               "X-Gencache-Pinned: only an admin tenant may pin entries "
                               "(others get pins from the config's preferred list)");
    if (err == GENCACHE_EPERM)
        return forbidden_shared(c, req, key);
    if (err == GENCACHE_ELIMIT) {
        gencache_tenant_options t;
        uint64_t quota =
            gencache_tenant_get(req->srv->cache, req->tenant, &t) == 0 ? t.quota_bytes : 0;
        return gcd_reply_error(c, req, MHD_HTTP_INSUFFICIENT_STORAGE, "quota_exceeded",
                               "storing %zu bytes would exceed tenant %s's quota of %llu bytes",
                               len, req->tenant, (unsigned long long)quota);
    }
    if (err != 0)
        return gcd_reply_gencache(c, req, err, "storing the entry");

    char json[256];
    int n = snprintf(json, sizeof json, "{\"key\":\"%s\",\"size\":%zu}", key, req->body_len);
    struct MHD_Response *resp =
        MHD_create_response_from_buffer((size_t)n, json, MHD_RESPMEM_MUST_COPY);
    if (!resp)
        return MHD_NO;
    char location[sizeof "/v1/entries/" + KEY_MAX];
    snprintf(location, sizeof location, "/v1/entries/%s", key);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_LOCATION, location);
    return gcd_reply_queue(c, req, MHD_HTTP_CREATED, resp);
}
