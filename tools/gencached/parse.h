/*
 * parse.h: everything gencached reads from a request that is not JSON handed to the library:
 * numbers in headers, the PUT metadata headers, If-None-Match, the invalidate filter (JSON body
 * or query), the prewarm JSON-lines splitter. Each is a pure function of strings, with no socket
 * and no libmicrohttpd, so the handlers and the fuzz target (tests/fuzz/fuzz_http.c) run the
 * same code. A refusal comes back as -1 (or an HTTP status) with a message for the client.
 */
#ifndef GENCACHED_PARSE_H
#define GENCACHED_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "gencache.h"

/* Parses a whole unsigned decimal number ("0".."18446744073709551615", no sign or space).
 * Returns 0, or -1 (NULL, empty, another character, overflow). Thread-safety: safe. */
int gcd_parse_u64(const char *s, uint64_t *out);

/* True when an If-None-Match list names `etag` (weak comparison: a W/ prefix is ignored) or is
 * "*". Thread-safety: safe. */
bool gcd_etag_matches(const char *list, const char *etag);

/* X-Gencache-Shape: "2,3,4" (spaces allowed around the commas; "" is a scalar) into m->ndim and
 * m->shape. Returns 0 or -1. Thread-safety: safe. */
int gcd_parse_shape(const char *s, gencache_meta *m);

/* The bytes a tensor of m's dtype and shape takes. Returns 0, or -1 when the count overflows
 * 64 bits (*bytes is then meaningless). Thread-safety: safe. */
int gcd_shape_bytes(const gencache_meta *m, uint64_t *bytes);

/* The header values a PUT may carry; NULL when absent. */
typedef struct gcd_put_headers {
    const char *cost_ms, *ttl, *tags, *model, *content_type, *pinned, *dtype, *shape;
    const char *codec, *codec_axis, *codec_group_size;
} gcd_put_headers;

/* Checks every PUT header and fills m (after gencache_meta_init; its strings point at the
 * values in h) and codec (after gencache_encode_options_init; codec NONE: store as given).
 * Returns 0, or -1 with a message for a 400 `bad_header` in err. Thread-safety: safe. */
int gcd_put_headers_parse(const gcd_put_headers *h, gencache_meta *m,
                          gencache_encode_options *codec, char *err, size_t err_size);

/* An invalidate filter as the client gave it: key, layer, tenant, tag, model (NULL: absent;
 * strings point into the document or the query) and older_than. */
enum { GCD_FILTER_KEY, GCD_FILTER_LAYER, GCD_FILTER_TENANT, GCD_FILTER_TAG, GCD_FILTER_MODEL };
typedef struct gcd_filter_args {
    const char *v[5];
    uint64_t older_than_ms;
    bool has_older_than;
} gcd_filter_args;

/* The names of the filter's fields in the order of v, then "older_than": query parameters and
 * JSON fields alike. */
extern const char *const gcd_filter_names[6];

/* From a parsed JSON body (doc keeps the strings alive). Returns 0, or -1 with a message for a
 * 400 `bad_request`. Thread-safety: safe. */
int gcd_filter_from_json(const json_t *doc, gcd_filter_args *a, char *err, size_t err_size);
/* From query values, in the order of gcd_filter_names (NULL: absent). Returns 0, or -1 with a
 * message for a 400 `bad_request`. Thread-safety: safe. */
int gcd_filter_from_query(const char *const values[6], gcd_filter_args *a, char *err,
                          size_t err_size);

/* Called for each request line of a JSON-lines body, trimmed, never empty; returns 0 to go on,
 * or an HTTP status (with its message in err) to stop. */
typedef unsigned (*gcd_line_fn)(void *ctx, const char *line, size_t len, char *err,
                                size_t err_size);
/* Splits a JSON-lines prewarm body: one request object per non-blank line (blank: only space,
 * TAB and CR). A line that is not a whole JSON object is 400. Returns 0, or the status that
 * stopped it with a message in err. Thread-safety: safe. */
unsigned gcd_jsonl_split(const char *body, size_t len, gcd_line_fn fn, void *ctx, char *err,
                         size_t err_size);

/* The ?as= conversion of a GET: a tensor entry decoded for the client. */
typedef struct gcd_decoded {
    void *data; /* malloc'd */
    size_t size;
    gencache_dtype dtype;
    uint32_t ndim;
    int64_t shape[GENCACHE_MAX_DIMS];
    gencache_codec codec;   /* how it was stored (NONE for a plain tensor) */
    char content_type[256]; /* the entry's, without the codec mark */
} gcd_decoded;

/* True when a GET of this entry must be decoded: ?as= given, or an int8 payload.
 * Thread-safety: safe. */
bool gcd_codec_needed(const gencache_meta *m, const char *as);
/* Decodes the entry's bytes (which a shared tier may have handed over in any state) to `as`
 * (NULL: the tensor's original dtype). Returns 0 (free out->data), or a GENCACHE_E* with a
 * message in err: EINVAL for a bad ?as= or an entry that is no float tensor.
 * Thread-safety: safe. */
int gcd_codec_decode(const gencache_meta *m, const void *data, size_t size, const char *as,
                     gcd_decoded *out, char *err, size_t err_size);

#endif
