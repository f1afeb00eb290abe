/*
 * lookup.c: POST /v1/lookup and POST /v1/store, the request-level reads and writes of
 * gencache/reuse.h. A lookup body is {"layer": L, "request": {...}} and the answer is the entry's
 * bytes with X-Gencache-Key (the key served) and X-Gencache-Match ("exact", "perceptual;
 * distance=N; of=<digest>", "any_seed; seed=N" or "similar_prompt; distance=N"), or 404. A store
 * body is the value, with the request in X-Gencache-Request and the layer in X-Gencache-Layer. The
 * request is parsed from its own bytes in the body (never re-serialized: a 64-bit seed must keep
 * its digits), image paths are refused (the daemon opens no file a client names), and every call is
 * made with the token's tenant, so a match never reaches another tenant's entries. A lookup may
 * also come as multipart/form-data: the same document in a part named "request" and the image file
 * itself in a part named "image", which the daemon decodes to write its digest and signature into
 * the request's image.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "gencached.h"
#include "multipart.h"

/* Skips JSON white space. */
static size_t skip_ws(const char *s, size_t i, size_t len)
{
    while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
        i++;
    return i;
}

/* The end of the JSON value starting at s[i] (the text is already known to be valid JSON). */
static size_t skip_value(const char *s, size_t i, size_t len)
{
    int depth = 0;
    for (; i < len; i++) {
        char ch = s[i];
        if (ch == '"') {
            for (i++; i < len && s[i] != '"'; i++)
                if (s[i] == '\\')
                    i++;
            if (depth == 0)
                return i + 1;
        } else if (ch == '{' || ch == '[') {
            depth++;
        } else if (ch == '}' || ch == ']') {
            if (--depth <= 0)
                return i + 1;
        } else if (depth == 0 &&
                   (ch == ',' || ch == ' ' || ch == '\n' || ch == '\r' || ch == '\t')) {
            return i;
        }
    }
    return i;
}

/* Finds the raw text of the top-level member `name` of a valid JSON object. */
static bool member_span(const char *s, size_t len, const char *name, size_t *off, size_t *n)
{
    size_t nlen = strlen(name);
    size_t i = skip_ws(s, 0, len);
    if (i >= len || s[i] != '{')
        return false;
    i++;
    while (i < len) {
        i = skip_ws(s, i, len);
        if (i >= len || s[i] != '"')
            return false;
        size_t kstart = i + 1;
        size_t kend = skip_value(s, i, len) - 1; /* the closing quote */
        i = skip_ws(s, kend + 1, len);
        if (i >= len || s[i] != ':')
            return false;
        i = skip_ws(s, i + 1, len);
        size_t vend = skip_value(s, i, len);
        if (kend - kstart == nlen && memcmp(s + kstart, name, nlen) == 0) {
            *off = i;
            *n = vend - i;
            return true;
        }
        i = skip_ws(s, vend, len);
        if (i < len && s[i] == ',')
            i++;
    }
    return false;
}

static gencache_caller caller_of(const gcd_request *req)
{
    gencache_caller who;
    gencache_caller_init(&who);
    who.tenant = req->tenant;
    return who;
}

/* Parses request JSON for the caller: no image paths, the token's tenant. NULL after queueing
 * the error in *r. *sensitive: the prompt matches a `sensitive:` rule (never cached). */
static gencache_request *parse_request(struct MHD_Connection *c, gcd_request *req, const char *text,
                                       size_t len, bool *sensitive, enum MHD_Result *r)
{
    json_t *doc = json_loadb(text, len, 0, NULL);
    bool path = json_object_get(json_object_get(doc, "image"), "path") != NULL;
    *sensitive =
        gcd_sensitive(req->srv, json_string_value(json_object_get(doc, "prompt"))) ||
        gcd_sensitive(req->srv, json_string_value(json_object_get(doc, "negative_prompt")));
    json_decref(doc);
    if (path) {
        *r = gcd_reply_error(c, req, MHD_HTTP_BAD_REQUEST, "bad_request",
                             "request: image paths are not accepted over HTTP; send {\"digest\": "
                             "\"sha256:<hex>\", \"phash\": ..., \"dhash\": ..., \"width\": ..., "
                             "\"height\": ...} (gencache lookup computes them from a file)");
        return NULL;
    }
    gencache_request *parsed = NULL;
    char msg[GENCACHE_ERRMSG_MAX] = "";
    int err = gencache_request_parse_ex(req->srv->keyspace, text, len, 0, &parsed, msg, sizeof msg);
    if (err == 0 && req->tenant)
        err = gencache_request_set_tenant(parsed, req->tenant);
    if (err == 0)
        return parsed;
    gencache_request_free(parsed);
    if (err == GENCACHE_ELIMIT)
        *r = gcd_reply_error(c, req, MHD_HTTP_CONTENT_TOO_LARGE, "limit", "request: %s",
                             msg[0] ? msg : gencache_strerror(err));
    else if (err == GENCACHE_EINVAL || err == GENCACHE_EPARSE)
        *r = gcd_reply_error(c, req, MHD_HTTP_BAD_REQUEST, "bad_request", "request: %s",
                             msg[0] ? msg : gencache_strerror(err));
    else
        *r = gcd_reply_gencache(c, req, err, "parsing the request");
    return NULL;
}

/* True when the layer exists; otherwise queues 404 unknown_layer. */
static bool check_layer(struct MHD_Connection *c, gcd_request *req, const char *layer,
                        enum MHD_Result *r)
{
    gencache_layer_options o;
    gencache_layer_options_init(&o);
    if (layer && gencache_layer_get(req->srv->cache, layer, &o) == GENCACHE_OK)
        return true;
    *r = gcd_reply_error(c, req, MHD_HTTP_NOT_FOUND, "unknown_layer", "unknown layer '%.64s'",
                         layer ? layer : "");
    return false;
}

static enum MHD_Result reply_uncacheable(struct MHD_Connection *c, gcd_request *req,
                                         const gencache_request *r, const char *layer)
{
    const char *why = gencache_request_uncacheable_reason(r, layer);
    return gcd_reply_error(c, req, MHD_HTTP_BAD_REQUEST, "uncacheable", "layer %s: %s", layer,
                           why ? why : "the request has no key in this layer");
}

static void release_handle(void *cls)
{
    gencache_handle_release(cls);
}

/* The X-Gencache-Match value of a match. */
static void match_header(const gencache_match *m, char *out, size_t size)
{
    if (m->kind == GENCACHE_MATCH_PERCEPTUAL)
        snprintf(out, size, "perceptual; distance=%u; of=%s", m->distance, m->of);
    else if (m->kind == GENCACHE_MATCH_ANY_SEED)
        snprintf(out, size, "any_seed; seed=%s", m->seed);
    else if (m->kind == GENCACHE_MATCH_SIMILAR_PROMPT)
        snprintf(out, size, "similar_prompt; distance=%u", m->distance);
    else
        snprintf(out, size, "%s", gencache_match_kind_name(m->kind));
}

static enum MHD_Result reply_entry(struct MHD_Connection *c, gcd_request *req, gencache_handle *h,
                                   const gencache_match *m)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer_with_free_callback_cls(
        gencache_handle_size(h), (void *)gencache_handle_data(h), release_handle, h);
    if (!resp) {
        gencache_handle_release(h);
        return MHD_NO;
    }
    const gencache_meta *meta = gencache_handle_meta(h);
    char buf[160];
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                            meta->content_type && *meta->content_type ? meta->content_type
                                                                      : "application/octet-stream");
    MHD_add_response_header(resp, "X-Gencache-Key", m->key);
    match_header(m, buf, sizeof buf);
    MHD_add_response_header(resp, "X-Gencache-Match", buf);
    if (meta->tier)
        MHD_add_response_header(resp, "X-Gencache-Tier", meta->tier);
    snprintf(buf, sizeof buf, "%" PRIu64, meta->cost_ms);
    MHD_add_response_header(resp, "X-Gencache-Cost-Ms", buf);
    return gcd_reply_queue(c, req, MHD_HTTP_OK, resp);
}

int gcd_image_describe(const void *bytes, size_t len, char *out, size_t size, char *err,
                       size_t esize)
{
    gencache_image *img = NULL;
    char digest[GENCACHE_DIGEST_MAX];
    gencache_image_sig sig;
    int rc = gencache_image_decode_memory(bytes, len, NULL, &img);
    if (rc == GENCACHE_OK)
        rc = gencache_image_digest(img, digest);
    if (rc == GENCACHE_OK)
        rc = gencache_image_sig_get(img, &sig);
    gencache_image_free(img);
    if (rc != GENCACHE_OK) {
        snprintf(err, esize, "the image part cannot be decoded: %s", gencache_strerror(rc));
        return rc;
    }
    snprintf(out, size,
             "{\"digest\":\"%s\",\"phash\":\"%016" PRIx64 "\",\"dhash\":\"%016" PRIx64
             "\",\"width\":%" PRIu32 ",\"height\":%" PRIu32 "}",
             digest, sig.phash, sig.dhash, sig.width, sig.height);
    return GENCACHE_OK;
}

bool gcd_json_object_text(const char *text, size_t len)
{
    json_t *j = json_loadb(text, len, JSON_DECODE_INT_AS_REAL, NULL);
    bool ok = json_is_object(j);
    json_decref(j);
    return ok;
}

char *gcd_splice_image(const char *text, size_t len, const char *image, size_t *out_len)
{
    size_t off = 0, n = 0, ilen = strlen(image);
    bool present = member_span(text, len, "image", &off, &n);
    size_t open = skip_ws(text, 0, len) + 1; /* just after '{' */
    bool empty = skip_ws(text, open, len) < len && text[skip_ws(text, open, len)] == '}';
    char *out = malloc(len + ilen + 16);
    if (!out)
        return NULL;
    if (present) {
        memcpy(out, text, off);
        memcpy(out + off, image, ilen);
        memcpy(out + off + ilen, text + off + n, len - off - n);
        *out_len = len - n + ilen;
    } else {
        memcpy(out, text, open);
        int k = sprintf(out + open, "\"image\":%s%s", image, empty ? "" : ",");
        memcpy(out + open + (size_t)k, text + open, len - open);
        *out_len = len + (size_t)k;
    }
    return out;
}

/* A multipart lookup: the document of part "request" with the image of part "image" described
 * into its request. *doc_out is a new buffer. Returns true, or false after queueing the error. */
static bool multipart_document(struct MHD_Connection *c, gcd_request *req, const char *ct,
                               char **doc_out, size_t *doc_len, enum MHD_Result *r)
{
    gcd_part parts[GCD_MULTIPART_MAX_PARTS];
    size_t n = 0;
    char err[256] = "";
    if (gcd_multipart_parse(ct, req->body, req->body_len, parts, &n, err, sizeof err) != 0) {
        *r = gcd_reply_error(c, req, MHD_HTTP_BAD_REQUEST, "bad_multipart", "lookup: %s", err);
        return false;
    }
    const gcd_part *doc = gcd_multipart_find(parts, n, "request");
    const gcd_part *image = gcd_multipart_find(parts, n, "image");
    size_t off = 0, len = 0;
    json_t *j = doc ? json_loadb(doc->data, doc->len, JSON_DECODE_INT_AS_REAL, NULL) : NULL;
    bool ok = j && json_is_object(json_object_get(j, "request")) &&
              member_span(doc->data, doc->len, "request", &off, &len);
    json_decref(j);
    if (!image || !ok || n != 2) {
        *r = gcd_reply_error(c, req, MHD_HTTP_BAD_REQUEST, "bad_multipart",
                             "lookup: a multipart lookup has exactly two parts: \"request\" "
                             "({\"layer\": NAME, \"request\": {...}}) and \"image\" (the file)");
        return false;
    }
    char desc[256];
    int rc = gcd_image_describe(image->data, image->len, desc, sizeof desc, err, sizeof err);
    if (rc != GENCACHE_OK) {
        unsigned status = rc == GENCACHE_ENOMEM   ? MHD_HTTP_INTERNAL_SERVER_ERROR
                          : rc == GENCACHE_ELIMIT ? MHD_HTTP_CONTENT_TOO_LARGE
                                                  : MHD_HTTP_BAD_REQUEST;
        *r = gcd_reply_error(c, req, status, "bad_image", "lookup: %s", err);
        return false;
    }
    size_t rlen = 0;
    char *spliced = gcd_splice_image(doc->data + off, len, desc, &rlen);
    char *out = spliced ? malloc(doc->len - len + rlen + 1) : NULL;
    if (!out) {
        free(spliced);
        *r = gcd_reply_gencache(c, req, GENCACHE_ENOMEM, "reading the lookup");
        return false;
    }
    memcpy(out, doc->data, off);
    memcpy(out + off, spliced, rlen);
    memcpy(out + off + rlen, doc->data + off + len, doc->len - off - len);
    *doc_len = doc->len - len + rlen;
    out[*doc_len] = '\0';
    free(spliced);
    *doc_out = out;
    return true;
}

static enum MHD_Result lookup_document(struct MHD_Connection *c, gcd_request *req, const char *body,
                                       size_t body_len);

enum MHD_Result gcd_lookup_handle(struct MHD_Connection *c, gcd_request *req)
{
    const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    if (gcd_multipart_is_form(ct)) {
        char *text = NULL;
        size_t len = 0;
        enum MHD_Result r = MHD_YES;
        if (!multipart_document(c, req, ct, &text, &len, &r))
            return r;
        r = lookup_document(c, req, text, len);
        free(text);
        return r;
    }
    return lookup_document(c, req, req->body ? req->body : "", req->body_len);
}

/* A lookup document {"layer": L, "request": {...}} (body bytes, len). */
static enum MHD_Result lookup_document(struct MHD_Connection *c, gcd_request *req, const char *body,
                                       size_t body_len)
{
    json_error_t jerr;
    json_t *doc = json_loadb(body, body_len, JSON_DECODE_INT_AS_REAL, &jerr);
    const char *layer = json_string_value(json_object_get(doc, "layer"));
    size_t off = 0, n = 0;
    if (!doc || !json_is_object(doc) || !layer ||
        !json_is_object(json_object_get(doc, "request")) ||
        !member_span(body, body_len, "request", &off, &n)) {
        json_decref(doc);
        return gcd_reply_error(c, req, MHD_HTTP_BAD_REQUEST, "bad_request",
                               "lookup: expected {\"layer\": NAME, \"request\": {...}}");
    }
    enum MHD_Result r = MHD_YES;
    char lname[GENCACHE_KEY_MAX];
    snprintf(lname, sizeof lname, "%s", layer);
    json_decref(doc);
    if (!check_layer(c, req, lname, &r))
        return r;
    bool sensitive = false;
    gencache_request *parsed = parse_request(c, req, body + off, n, &sensitive, &r);
    if (!parsed)
        return r;
    gencache_caller who = caller_of(req);
    gencache_handle *h = NULL;
    gencache_match m = {.struct_size = sizeof m};
    int err = sensitive ? GENCACHE_ENOTFOUND
                        : gencache_lookup(req->srv->cache, &who, parsed, lname, &h, &m);
    if (err == GENCACHE_EUNCACHEABLE)
        r = reply_uncacheable(c, req, parsed, lname);
    gencache_request_free(parsed);
    if (err == GENCACHE_OK)
        return reply_entry(c, req, h, &m);
    if (err == GENCACHE_EUNCACHEABLE)
        return r;
    if (err == GENCACHE_ENOTFOUND)
        return gcd_reply_error(c, req, MHD_HTTP_NOT_FOUND, "not_found",
                               "no entry in layer %s for this request", lname);
    return gcd_reply_gencache(c, req, err, "looking up the request");
}

static const char *header(struct MHD_Connection *c, const char *name)
{
    return MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
}

enum MHD_Result gcd_store_handle(struct MHD_Connection *c, gcd_request *req)
{
    const char *layer = header(c, "X-Gencache-Layer");
    const char *text = header(c, "X-Gencache-Request");
    if (!layer || !text)
        return gcd_reply_error(c, req, MHD_HTTP_BAD_REQUEST, "bad_request",
                               "store: needs the headers X-Gencache-Layer and X-Gencache-Request");
    gencache_meta meta;
    gencache_meta_init(&meta);
    const char *cost = header(c, "X-Gencache-Cost-Ms"), *ttl = header(c, "X-Gencache-TTL");
    uint64_t ttl_s = 0;
    if ((cost && gcd_parse_u64(cost, &meta.cost_ms) != 0) ||
        (ttl && (gcd_parse_u64(ttl, &ttl_s) != 0 || ttl_s > UINT64_MAX / 1000)))
        return gcd_reply_error(c, req, MHD_HTTP_BAD_REQUEST, "bad_header",
                               "X-Gencache-Cost-Ms and X-Gencache-TTL are whole numbers");
    meta.ttl_ms = ttl_s * 1000;
    meta.content_type = header(c, MHD_HTTP_HEADER_CONTENT_TYPE);
    enum MHD_Result r = MHD_YES;
    if (!check_layer(c, req, layer, &r))
        return r;
    bool sensitive = false;
    gencache_request *parsed = parse_request(c, req, text, strlen(text), &sensitive, &r);
    if (!parsed)
        return r;
    if (sensitive) {
        gencache_request_free(parsed);
        return gcd_reply_error(c, req, MHD_HTTP_BAD_REQUEST, "uncacheable",
                               "the prompt matches a sensitive-content rule of the configuration");
    }
    meta.model = gencache_request_model(parsed);
    gencache_caller who = caller_of(req);
    char key[GENCACHE_KEY_MAX];
    int err = gencache_store(req->srv->cache, &who, parsed, layer, req->body ? req->body : "",
                             req->body_len, &meta, key);
    if (err == GENCACHE_EUNCACHEABLE)
        r = reply_uncacheable(c, req, parsed, layer);
    gencache_request_free(parsed);
    if (err == GENCACHE_EUNCACHEABLE)
        return r;
    if (err == GENCACHE_EPERM)
        return gcd_reply_error(c, req, MHD_HTTP_FORBIDDEN, "forbidden",
                               "the entry belongs to another tenant");
    if (err != GENCACHE_OK)
        return gcd_reply_gencache(c, req, err, "storing the entry");
    char out[GENCACHE_KEY_MAX + 16];
    int len = snprintf(out, sizeof out, "{\"key\":\"%s\"}", key);
    return gcd_reply_bytes(c, req, MHD_HTTP_CREATED, "application/json", out, (size_t)len);
}

char *gcd_lookup_metrics(gcd_server *srv)
{
    gencache_reuse_stats *st = calloc(1, sizeof *st);
    if (!st)
        return NULL;
    st->struct_size = sizeof *st;
    size_t cap = 1024 + (size_t)GENCACHE_MAX_LAYERS * 3 * 128, n = 0;
    char *out = malloc(cap);
    if (!out || gencache_reuse_stats_get(srv->cache, st) != GENCACHE_OK) {
        free(out);
        free(st);
        return NULL;
    }
    n += (size_t)snprintf(out + n, cap - n,
                          "# HELP gencache_match_hits_total Lookups served beyond the exact key, "
                          "by layer and kind (perceptual, any_seed, similar_prompt).\n"
                          "# TYPE gencache_match_hits_total counter\n");
    for (uint32_t i = 0; i < st->n_layers && i < GENCACHE_MAX_LAYERS; i++) {
        const gencache_reuse_layer_stats *l = &st->layers[i];
        n += (size_t)snprintf(out + n, cap - n,
                              "gencache_match_hits_total{layer=\"%s\",kind=\"perceptual\"} %" PRIu64
                              "\ngencache_match_hits_total{layer=\"%s\",kind=\"any_seed\"} %" PRIu64
                              "\ngencache_match_hits_total{layer=\"%s\",kind=\"similar_prompt\"} "
                              "%" PRIu64 "\n",
                              l->layer, l->perceptual_hits, l->layer, l->any_seed_hits, l->layer,
                              l->similar_prompt_hits);
    }
    n += (size_t)snprintf(out + n, cap - n,
                          "# HELP gencache_match_guard_refusals_total Perceptual candidates the "
                          "guard refused, by layer.\n"
                          "# TYPE gencache_match_guard_refusals_total counter\n");
    for (uint32_t i = 0; i < st->n_layers && i < GENCACHE_MAX_LAYERS; i++)
        n += (size_t)snprintf(out + n, cap - n,
                              "gencache_match_guard_refusals_total{layer=\"%s\"} %" PRIu64 "\n",
                              st->layers[i].layer, st->layers[i].guard_refusals);
    snprintf(out + n, cap - n,
             "# HELP gencache_match_records Reuse records held, by kind.\n"
             "# TYPE gencache_match_records gauge\n"
             "gencache_match_records{kind=\"image\"} %" PRIu64 "\n"
             "gencache_match_records{kind=\"result\"} %" PRIu64 "\n"
             "gencache_match_records{kind=\"prompt\"} %" PRIu64 "\n",
             st->images, st->results, st->prompts);
    free(st);
    return out;
}

json_t *gcd_lookup_stats_json(gcd_server *srv)
{
    gencache_reuse_stats *st = calloc(1, sizeof *st);
    if (!st)
        return NULL;
    st->struct_size = sizeof *st;
    json_t *layers = json_object();
    if (gencache_reuse_stats_get(srv->cache, st) == GENCACHE_OK)
        for (uint32_t i = 0; i < st->n_layers && i < GENCACHE_MAX_LAYERS; i++)
            json_object_set_new(
                layers, st->layers[i].layer,
                json_pack("{s:I,s:I,s:I,s:I}", "perceptual_hits",
                          (json_int_t)st->layers[i].perceptual_hits, "any_seed_hits",
                          (json_int_t)st->layers[i].any_seed_hits, "similar_prompt_hits",
                          (json_int_t)st->layers[i].similar_prompt_hits, "guard_refusals",
                          (json_int_t)st->layers[i].guard_refusals));
    json_t *doc = json_pack("{s:o,s:I,s:I,s:I}", "layers", layers, "images", (json_int_t)st->images,
                            "results", (json_int_t)st->results, "prompts", (json_int_t)st->prompts);
    free(st);
    return doc;
}

bool gcd_json_member_span(const char *text, size_t len, const char *name, size_t *off, size_t *n)
{
    return member_span(text, len, name, off, n);
}

gencache_request *gcd_lookup_parse_request(struct MHD_Connection *c, gcd_request *req,
                                           const char *text, size_t len, bool *sensitive,
                                           enum MHD_Result *r)
{
    return parse_request(c, req, text, len, sensitive, r);
}

gencache_caller gcd_caller_of(const gcd_request *req)
{
    return caller_of(req);
}

bool gcd_check_layer(struct MHD_Connection *c, gcd_request *req, const char *layer,
                     enum MHD_Result *r)
{
    return check_layer(c, req, layer, r);
}
