/*
 * trajectory.c: POST /v1/trajectories and POST /v1/trajectories/lookup, approximate step reuse
 * (gencache/reuse.h) over HTTP. A store is multipart/form-data: a part "trajectory" with
 * {"layer", "request" (its model and step inside), "embedding" (base64) or a part "embedding"
 * (raw little-endian f32/f16), "dtype", "dim"} and a part "latent" with the bytes to keep. A
 * lookup is {"layer", "model", "embedding", "dtype", "dim"} as JSON, or the raw embedding with
 * those in headers; it answers the nearest latent the threshold table allows with its key, step
 * and similarity, 404 when none is similar enough, and 400 with both dimensions named when the
 * embedding's differs from the one the layer holds for the model. Every call is made with the
 * token's tenant: on a tenant-scoped layer a match never reaches another tenant's latents.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "gencached.h"
#include "multipart.h"

#define DEFAULT_LAYER "trajectory"

/* An embedding as the client sent it: dim elements of dtype at data (owned or borrowed). */
typedef struct embedding {
    gencache_dtype dtype;
    const void *data;
    size_t dim;
    unsigned char *owned;
} embedding;

static int b64_value(unsigned char ch)
{
    if (ch >= 'A' && ch <= 'Z')
        return ch - 'A';
    if (ch >= 'a' && ch <= 'z')
        return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9')
        return ch - '0' + 52;
    return ch == '+' ? 62 : ch == '/' ? 63 : -1;
}

/* Standard base64 (RFC 4648 section 4), padding optional, nothing else allowed. Returns 0 with a
 * malloc'd *out, or -1. */
static int b64_decode(const char *s, size_t n, unsigned char **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    while (n && s[n - 1] == '=' && n % 4 != 1)
        n--; /* padding is optional; at most two characters of it are dropped */
    if (n % 4 == 1)
        return -1;
    unsigned char *buf = malloc(n / 4 * 3 + 3);
    if (!buf)
        return -1;
    size_t k = 0;
    uint32_t acc = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64_value((unsigned char)s[i]);
        if (v < 0) {
            free(buf);
            return -1;
        }
        acc = acc << 6 | (uint32_t)v;
        if (i % 4 == 3) {
            buf[k++] = (unsigned char)(acc >> 16);
            buf[k++] = (unsigned char)(acc >> 8);
            buf[k++] = (unsigned char)acc;
            acc = 0;
        }
    }
    if (n % 4 == 2) {
        buf[k++] = (unsigned char)(acc >> 4);
    } else if (n % 4 == 3) {
        buf[k++] = (unsigned char)(acc >> 10);
        buf[k++] = (unsigned char)(acc >> 2);
    }
    *out = buf;
    *len = k;
    return 0;
}

/* True when v is a JSON number with a whole value in [lo, hi] (documents are read with
 * JSON_DECODE_INT_AS_REAL, so that a request's 64-bit seed does not fail the reader). */
static bool whole(const json_t *v, double lo, double hi, uint64_t *out)
{
    double x = json_number_value(v);
    if (!json_is_number(v) || !(x >= lo && x <= hi) || x != (double)(uint64_t)x)
        return false;
    *out = (uint64_t)x;
    return true;
}

/* "f32"/"float32" or "f16"/"float16" (NULL: f32). */
static int dtype_of(const char *name, gencache_dtype *out)
{
    if (!name || strcmp(name, "f32") == 0 || strcmp(name, "float32") == 0)
        *out = GENCACHE_DTYPE_F32;
    else if (strcmp(name, "f16") == 0 || strcmp(name, "float16") == 0)
        *out = GENCACHE_DTYPE_F16;
    else
        return -1;
    return 0;
}

/* Checks the bytes against the dtype and the stated dimension (0: none). Returns 0, or -1 with
 * a message in err. */
static int embedding_set(embedding *e, const void *bytes, size_t len, uint64_t stated, char *err,
                         size_t esize)
{
    size_t item = e->dtype == GENCACHE_DTYPE_F16 ? 2 : 4;
    e->data = bytes;
    e->dim = len / item;
    if (len == 0 || len % item != 0) {
        snprintf(err, esize, "the embedding is %zu bytes: not a whole, non-empty vector of %s", len,
                 gencache_dtype_name(e->dtype));
        return -1;
    }
    if (stated && stated != e->dim) {
        snprintf(err, esize, "\"dim\" says %" PRIu64 " but the embedding holds %zu %s values",
                 stated, e->dim, gencache_dtype_name(e->dtype));
        return -1;
    }
    return 0;
}

/* The embedding of a JSON document: "embedding" (base64, or taken from raw when it is absent and
 * raw is not NULL), "dtype", "dim". Returns 0, or -1 with a message in err. */
static int embedding_from_json(const json_t *doc, const gcd_part *raw, embedding *e, char *err,
                               size_t esize)
{
    json_t *b64 = json_object_get(doc, "embedding"), *dim = json_object_get(doc, "dim");
    json_t *dt = json_object_get(doc, "dtype");
    if ((dt && !json_is_string(dt)) || dtype_of(json_string_value(dt), &e->dtype) != 0) {
        snprintf(err, esize, "\"dtype\" is \"f32\" or \"f16\" (the embedding's element type)");
        return -1;
    }
    uint64_t stated = 0;
    if (dim && !whole(dim, 1, 1e15, &stated)) {
        snprintf(err, esize, "\"dim\" is a positive integer");
        return -1;
    }
    if (b64 && raw) {
        snprintf(err, esize, "send the embedding once: as \"embedding\" or as a part, not both");
        return -1;
    }
    if (raw)
        return embedding_set(e, raw->data, raw->len, stated, err, esize);
    size_t len = 0;
    if (!json_is_string(b64) ||
        b64_decode(json_string_value(b64), json_string_length(b64), &e->owned, &len) != 0) {
        snprintf(err, esize, "\"embedding\" is the vector's little-endian %s bytes in base64",
                 e->dtype == GENCACHE_DTYPE_F16 ? "f16" : "f32");
        return -1;
    }
    return embedding_set(e, e->owned, len, stated, err, esize);
}

/* 400 dimension_mismatch when (layer, model) holds embeddings of another dimension. Returns
 * true to go on. */
static bool dim_fits(struct MHD_Connection *c, gcd_request *req, const char *layer,
                     const char *model, const embedding *e, enum MHD_Result *r)
{
    size_t held = 0;
    if (gencache_trajectory_dim(req->srv->cache, layer, model, &held) != GENCACHE_OK ||
        held == e->dim)
        return true;
    *r = gcd_reply_error(c, req, MHD_HTTP_BAD_REQUEST, "dimension_mismatch",
                         "layer %s holds %zu-dimensional embeddings for model %s; this one has %zu",
                         layer, held, model, e->dim);
    return false;
}

/* The error of a library call that was given an embedding. */
static enum MHD_Result reply_traj_error(struct MHD_Connection *c, gcd_request *req, int err,
                                        const char *layer, const char *what)
{
    if (err == GENCACHE_EINVAL)
        return gcd_reply_error(c, req, MHD_HTTP_BAD_REQUEST, "bad_embedding",
                               "%s: the embedding is zero or not finite (it has no direction), "
                               "or another store fixed another dimension for this model in "
                               "layer %s",
                               what, layer);
    if (err == GENCACHE_EPERM)
        return gcd_reply_error(c, req, MHD_HTTP_FORBIDDEN, "forbidden",
                               "the entry belongs to another tenant");
    return gcd_reply_gencache(c, req, err, what);
}

/* ---- POST /v1/trajectories ---- */

static const char FORM_HELP[] =
    "a trajectory is stored as multipart/form-data: a part \"trajectory\" ({\"layer\": NAME, "
    "\"request\": {\"model\": ..., \"step\": N, ...}, \"embedding\": BASE64, \"dtype\": "
    "\"f32\"|\"f16\", \"dim\": D}), a part \"latent\" (the bytes), and optionally a part "
    "\"embedding\" (raw little-endian floats) instead of the base64 member";

/* The request's model and step ("step": a whole number from 1). */
static bool model_and_step(const json_t *request, const char **model, unsigned *step)
{
    uint64_t s = 0;
    *model = json_string_value(json_object_get(request, "model"));
    if (!*model || !whole(json_object_get(request, "step"), 1, 1e6, &s))
        return false;
    *step = (unsigned)s;
    return true;
}

/* The latent's metadata from the PUT headers of the request; the content type is the part's. */
static bool latent_meta(struct MHD_Connection *c, gcd_request *req, const gcd_part *latent,
                        gencache_meta *m, enum MHD_Result *r)
{
    gcd_put_headers h = {
        .cost_ms = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Gencache-Cost-Ms"),
        .ttl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Gencache-TTL"),
        .tags = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Gencache-Tags"),
        .pinned = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Gencache-Pinned"),
        .dtype = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Gencache-Dtype"),
        .shape = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Gencache-Shape"),
        .content_type = latent->content_type[0] ? latent->content_type : NULL,
    };
    gencache_encode_options codec;
    char err[200];
    gencache_meta_init(m);
    gencache_encode_options_init(&codec);
    if (gcd_put_headers_parse(&h, m, &codec, err, sizeof err) != 0) {
        *r = gcd_reply_error(c, req, MHD_HTTP_BAD_REQUEST, "bad_header", "%s", err);
        return false;
    }
    uint64_t bytes = 0;
    if (m->dtype != GENCACHE_DTYPE_NONE &&
        (gcd_shape_bytes(m, &bytes) != 0 || bytes != latent->len)) {
        *r = gcd_reply_error(c, req, MHD_HTTP_BAD_REQUEST, "shape_mismatch",
                             "X-Gencache-Shape '%s' of %s does not describe the latent's %zu "
                             "bytes",
                             h.shape ? h.shape : "", gencache_dtype_name(m->dtype), latent->len);
        return false;
    }
    return true;
}

/* Stores the latent once the form is read; doc is the part "trajectory", parsed. */
static enum MHD_Result store_form(struct MHD_Connection *c, gcd_request *req, const gcd_part *doc,
                                  json_t *j, const gcd_part *latent, const gcd_part *raw)
{
    const char *layer = json_string_value(json_object_get(j, "layer"));
    json_t *request = json_object_get(j, "request");
    const char *model = NULL;
    unsigned step = 0;
    size_t off = 0, n = 0;
    enum MHD_Result r = MHD_YES;
    if (json_object_get(j, "layer") && !layer)
        return gcd_reply_error(c, req, MHD_HTTP_BAD_REQUEST, "bad_request",
                               "\"layer\" is a layer's name");
    layer = layer ? layer : DEFAULT_LAYER;
    if (!json_is_object(request) || !model_and_step(request, &model, &step) ||
        !gcd_json_member_span(doc->data, doc->len, "request", &off, &n))
        return gcd_reply_error(c, req, MHD_HTTP_BAD_REQUEST, "bad_request",
                               "trajectory: \"request\" is an object with the \"model\" and the "
                               "\"step\" (a whole number from 1) the latent was taken after");
    char err[256];
    embedding e = {0};
    if (embedding_from_json(j, raw, &e, err, sizeof err) != 0)
        return gcd_reply_error(c, req, MHD_HTTP_BAD_REQUEST, "bad_embedding", "%s", err);
    gencache_meta m;
    bool sensitive = false;
    gencache_request *parsed = NULL;
    if (gcd_check_layer(c, req, layer, &r) && dim_fits(c, req, layer, model, &e, &r) &&
        latent_meta(c, req, latent, &m, &r))
        parsed = gcd_lookup_parse_request(c, req, doc->data + off, n, &sensitive, &r);
    if (!parsed) {
        free(e.owned);
        return r;
    }
    if (sensitive) {
        gencache_request_free(parsed);
        free(e.owned);
        return gcd_reply_error(c, req, MHD_HTTP_BAD_REQUEST, "uncacheable",
                               "the prompt matches a sensitive-content rule of the configuration");
    }
    m.model = gencache_request_model(parsed);
    gencache_caller who = gcd_caller_of(req);
    char key[GENCACHE_KEY_MAX];
    int rc = gencache_trajectory_store(req->srv->cache, &who, parsed, layer, step, e.dtype, e.data,
                                       e.dim, latent->data, latent->len, &m, key);
    free(e.owned);
    if (rc == GENCACHE_EUNCACHEABLE) {
        const char *why = gencache_request_uncacheable_reason(parsed, layer);
        r = gcd_reply_error(c, req, MHD_HTTP_BAD_REQUEST, "uncacheable", "layer %s: %s", layer,
                            why ? why : "the request has no key in this layer");
    }
    gencache_request_free(parsed);
    if (rc == GENCACHE_EUNCACHEABLE)
        return r;
    if (rc != GENCACHE_OK)
        return reply_traj_error(c, req, rc, layer, "storing the trajectory");
    json_t *out =
        json_pack("{s:s,s:I,s:I}", "key", key, "step", (json_int_t)step, "dim", (json_int_t)e.dim);
    char *text = out ? json_dumps(out, JSON_COMPACT) : NULL;
    json_decref(out);
    if (!text)
        return gcd_reply_gencache(c, req, GENCACHE_ENOMEM, "answering");
    r = gcd_reply_bytes(c, req, MHD_HTTP_CREATED, "application/json", text, strlen(text));
    free(text);
    return r;
}

enum MHD_Result gcd_trajectory_store_handle(struct MHD_Connection *c, gcd_request *req)
{
    const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    if (!gcd_multipart_is_form(ct))
        return gcd_reply_error(c, req, MHD_HTTP_BAD_REQUEST, "bad_request", "%s", FORM_HELP);
    gcd_part parts[GCD_MULTIPART_MAX_PARTS];
    size_t n = 0;
    char err[256] = "";
    if (gcd_multipart_parse(ct, req->body ? req->body : "", req->body_len, parts, &n, err,
                            sizeof err) != 0)
        return gcd_reply_error(c, req, MHD_HTTP_BAD_REQUEST, "bad_multipart", "trajectory: %s",
                               err);
    const gcd_part *doc = gcd_multipart_find(parts, n, "trajectory");
    const gcd_part *latent = gcd_multipart_find(parts, n, "latent");
    const gcd_part *raw = gcd_multipart_find(parts, n, "embedding");
    json_t *j = doc ? json_loadb(doc->data, doc->len, JSON_DECODE_INT_AS_REAL, NULL) : NULL;
    if (!latent || !json_is_object(j) || n != 2u + (raw != NULL)) {
        json_decref(j);
        return gcd_reply_error(c, req, MHD_HTTP_BAD_REQUEST, "bad_multipart", "%s", FORM_HELP);
    }
    enum MHD_Result r = store_form(c, req, doc, j, latent, raw);
    json_decref(j);
    return r;
}

/* ---- POST /v1/trajectories/lookup ---- */

static void release_handle(void *cls)
{
    gencache_handle_release(cls);
}

static enum MHD_Result reply_latent(struct MHD_Connection *c, gcd_request *req, gencache_handle *h,
                                    const gencache_trajectory_match *m)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer_with_free_callback_cls(
        gencache_handle_size(h), (void *)gencache_handle_data(h), release_handle, h);
    if (!resp) {
        gencache_handle_release(h);
        return MHD_NO;
    }
    gcd_entry_meta_headers(resp, gencache_handle_meta(h));
    char buf[96];
    MHD_add_response_header(resp, "X-Gencache-Key", m->key);
    snprintf(buf, sizeof buf, "trajectory; step=%u; similarity=%.6f", m->step, m->similarity);
    MHD_add_response_header(resp, "X-Gencache-Match", buf);
    snprintf(buf, sizeof buf, "%u", m->step);
    MHD_add_response_header(resp, "X-Gencache-Step", buf);
    snprintf(buf, sizeof buf, "%.6f", m->similarity);
    MHD_add_response_header(resp, "X-Gencache-Similarity", buf);
    return gcd_reply_queue(c, req, MHD_HTTP_OK, resp);
}

/* A lookup of the raw embedding in the body, described by headers. */
static int lookup_raw(struct MHD_Connection *c, gcd_request *req, const char **layer,
                      const char **model, embedding *e, char *err, size_t esize)
{
    const char *dt = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Gencache-Dtype");
    const char *dim = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Gencache-Dim");
    uint64_t stated = 0;
    *layer = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Gencache-Layer");
    *model = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Gencache-Model");
    if (!*model) {
        snprintf(err, esize,
                 "a raw embedding comes with X-Gencache-Model (and X-Gencache-Layer, "
                 "X-Gencache-Dtype f32|f16, X-Gencache-Dim)");
        return -1;
    }
    if (dtype_of(dt, &e->dtype) != 0 || (dim && (gcd_parse_u64(dim, &stated) != 0 || !stated))) {
        snprintf(err, esize, "X-Gencache-Dtype is f32 or f16, X-Gencache-Dim a positive integer");
        return -1;
    }
    return embedding_set(e, req->body ? req->body : "", req->body_len, stated, err, esize);
}

enum MHD_Result gcd_trajectory_lookup_handle(struct MHD_Connection *c, gcd_request *req)
{
    const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    bool raw = ct && strncmp(ct, "application/octet-stream", 24) == 0;
    const char *layer = NULL, *model = NULL;
    embedding e = {0};
    char err[256];
    json_t *j = NULL;
    int bad = 0;
    if (raw) {
        bad = lookup_raw(c, req, &layer, &model, &e, err, sizeof err);
    } else {
        j = json_loadb(req->body ? req->body : "", req->body_len, JSON_DECODE_INT_AS_REAL, NULL);
        layer = json_string_value(json_object_get(j, "layer"));
        model = json_string_value(json_object_get(j, "model"));
        if (!json_is_object(j) || !model || (json_object_get(j, "layer") && !layer)) {
            json_decref(j);
            return gcd_reply_error(c, req, MHD_HTTP_BAD_REQUEST, "bad_request",
                                   "trajectory lookup: expected {\"layer\": NAME, \"model\": "
                                   "NAME, \"embedding\": BASE64, \"dtype\": \"f32\"|\"f16\"}, or "
                                   "the raw embedding as application/octet-stream");
        }
        bad = embedding_from_json(j, NULL, &e, err, sizeof err);
    }
    layer = layer ? layer : DEFAULT_LAYER;
    enum MHD_Result r = MHD_YES;
    if (bad) {
        r = gcd_reply_error(c, req, MHD_HTTP_BAD_REQUEST, "bad_embedding", "%s", err);
    } else if (gcd_check_layer(c, req, layer, &r) && dim_fits(c, req, layer, model, &e, &r)) {
        gencache_caller who = gcd_caller_of(req);
        gencache_handle *h = NULL;
        gencache_trajectory_match m = {.struct_size = sizeof m};
        int rc = gencache_trajectory_lookup(req->srv->cache, &who, layer, model, e.dtype, e.data,
                                            e.dim, &h, &m);
        if (rc == GENCACHE_OK)
            r = reply_latent(c, req, h, &m);
        else if (rc == GENCACHE_ENOTFOUND)
            r = gcd_reply_error(c, req, MHD_HTTP_NOT_FOUND, "not_found",
                                "no latent in layer %s is similar enough for model %s", layer,
                                model);
        else
            r = reply_traj_error(c, req, rc, layer, "looking up the trajectory");
    }
    free(e.owned);
    json_decref(j); /* layer and model point into it */
    return r;
}

/* ---- counters ---- */

char *gcd_trajectory_metrics(gcd_server *srv)
{
    gencache_trajectory_stats st = {.struct_size = sizeof st};
    if (gencache_trajectory_stats_get(srv->cache, &st) != GENCACHE_OK)
        memset(&st, 0, sizeof st);
    size_t cap = 1024;
    char *out = malloc(cap);
    if (!out)
        return NULL;
    snprintf(out, cap,
             "# HELP gencache_trajectory_vectors Embeddings held in the trajectory "
             "index.\n# TYPE gencache_trajectory_vectors gauge\n"
             "gencache_trajectory_vectors %" PRIu64 "\n"
             "# HELP gencache_trajectory_lookups_total Trajectory lookups, by outcome.\n"
             "# TYPE gencache_trajectory_lookups_total counter\n"
             "gencache_trajectory_lookups_total{outcome=\"hit\"} %" PRIu64 "\n"
             "gencache_trajectory_lookups_total{outcome=\"miss\"} %" PRIu64 "\n"
             "# HELP gencache_trajectory_steps_skipped_total Denoising steps the served "
             "latents let generations skip.\n"
             "# TYPE gencache_trajectory_steps_skipped_total counter\n"
             "gencache_trajectory_steps_skipped_total %" PRIu64 "\n",
             st.vectors, st.hits, st.misses, st.steps_skipped);
    return out;
}

json_t *gcd_trajectory_stats_json(gcd_server *srv)
{
    gencache_trajectory_stats st = {.struct_size = sizeof st};
    if (gencache_trajectory_stats_get(srv->cache, &st) != GENCACHE_OK)
        memset(&st, 0, sizeof st);
    return json_pack("{s:I,s:I,s:I,s:I}", "vectors", (json_int_t)st.vectors, "hits",
                     (json_int_t)st.hits, "misses", (json_int_t)st.misses, "steps_skipped",
                     (json_int_t)st.steps_skipped);
}
