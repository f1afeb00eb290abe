/*
 * invalidate.c: POST /v1/invalidate with a JSON filter {key, layer, tenant, tag, model,
 * older_than}, also reachable as POST /invalidate?key=... with the same names as query
 * parameters, answered {"invalidated": N}. Every field given must match (gencache_filter). With
 * tenant tokens, a caller removes only entries it stored itself: the filter's tenant is always
 * the caller's, and naming another tenant is 403 (an admin tenant's filter is taken as given). An
 * empty filter is refused, so "everything" is never removed by accident.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "config.h"

static const char *const names[] = {"key", "layer", "tenant", "tag", "model", "older_than"};
#define N_NAMES (sizeof names / sizeof names[0])

bool gcd_has_body(struct MHD_Connection *c)
{
    const char *cl =
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    const char *te =
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING);
    return (cl && strcmp(cl, "0") != 0) || te;
}

typedef struct filter_args {
    const char *v[N_NAMES]; /* strings of the filter, NULL when absent */
    uint64_t older_than_ms;
    bool has_older_than;
} filter_args;

#define BAD(...) gcd_reply_error(c, req, MHD_HTTP_BAD_REQUEST, "bad_request", __VA_ARGS__)

static enum MHD_Result from_query(struct MHD_Connection *c, gcd_request *req, filter_args *a,
                                  bool *ok)
{
    *ok = false;
    for (size_t i = 0; i < N_NAMES; i++)
        a->v[i] = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, names[i]);
    if (a->v[5]) {
        if (gencache_parse_duration_ms(a->v[5], &a->older_than_ms) != 0)
            return BAD("older_than '%.64s': expected seconds or a duration like 30m or 7d",
                       a->v[5]);
        a->has_older_than = true;
        a->v[5] = NULL;
    }
    *ok = true;
    return MHD_YES;
}

static enum MHD_Result from_json(struct MHD_Connection *c, gcd_request *req, json_t *doc,
                                 filter_args *a, bool *ok)
{
    *ok = false;
    if (!json_is_object(doc))
        return BAD("the body must be a JSON object like {\"layer\": \"result\"}");
    const char *name;
    json_t *v;
    json_object_foreach(doc, name, v)
    {
        size_t i = 0;
        while (i < N_NAMES && strcmp(names[i], name) != 0)
            i++;
        if (i == N_NAMES)
            return BAD("unknown field '%.64s' (expected key, layer, tenant, tag, model, "
                       "older_than)",
                       name);
        if (json_is_null(v))
            continue;
        if (i == 5) {
            if (json_is_integer(v) && json_integer_value(v) >= 0 &&
                (uint64_t)json_integer_value(v) <= UINT64_MAX / 1000) {
                a->older_than_ms = (uint64_t)json_integer_value(v) * 1000;
            } else if (!json_is_string(v) ||
                       gencache_parse_duration_ms(json_string_value(v), &a->older_than_ms) != 0) {
                return BAD("field 'older_than': expected a non-negative number of seconds or a "
                           "duration string like \"30m\" or \"7d\"");
            }
            a->has_older_than = true;
            continue;
        }
        if (!json_is_string(v))
            return BAD("field '%s': expected a string", name);
        a->v[i] = json_string_value(v);
        if (!*a->v[i])
            return BAD("field '%s': must not be empty", name);
    }
    *ok = true;
    return MHD_YES;
}

enum MHD_Result gcd_invalidate_handle(struct MHD_Connection *c, gcd_request *req)
{
    gcd_server *srv = req->srv;
    filter_args a;
    memset(&a, 0, sizeof a);
    bool ok = false;
    enum MHD_Result r;
    json_t *doc = NULL;
    if (req->body_len > 0) {
        for (size_t i = 0; i < N_NAMES; i++)
            if (MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, names[i]))
                return BAD("give the filter either as query parameters or as a JSON body, not "
                           "both");
        json_error_t je;
        doc = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
        if (!doc)
            return BAD("malformed JSON at line %d, column %d: %s", je.line, je.column, je.text);
        r = from_json(c, req, doc, &a, &ok);
    } else {
        r = from_query(c, req, &a, &ok);
    }
    if (!ok) {
        json_decref(doc);
        return r;
    }

    gencache_filter f;
    gencache_filter_init(&f);
    f.key = a.v[0];
    f.layer = a.v[1];
    f.tenant = a.v[2];
    f.tag = a.v[3];
    f.model = a.v[4];
    f.older_than_ms = a.older_than_ms;
    if (!f.key && !f.layer && !f.tenant && !f.tag && !f.model && !f.older_than_ms) {
        json_decref(doc);
        return gcd_reply_error(c, req, MHD_HTTP_BAD_REQUEST, "empty_filter",
                               "give at least one of key, layer, tenant, tag, model or a "
                               "non-zero older_than");
    }
    if (f.key) {
        const char *code;
        int kerr;
        if (gcd_route_key_status(srv->cache, f.key, &code, &kerr) != 0) {
            r = kerr == GENCACHE_ENOTFOUND
                    ? gcd_reply_error(c, req, MHD_HTTP_NOT_FOUND, "unknown_layer",
                                      "key '%.120s': unknown layer", f.key)
                    : gcd_reply_error(c, req, MHD_HTTP_BAD_REQUEST, "bad_key",
                                      "malformed key '%.120s': expected <layer>/<64 lowercase "
                                      "hex digits>",
                                      f.key);
            json_decref(doc);
            return r;
        }
    }
    if (f.layer) {
        gencache_layer_options lo;
        gencache_layer_options_init(&lo);
        if (gencache_layer_get(srv->cache, f.layer, &lo) != 0) {
            r = gcd_reply_error(c, req, MHD_HTTP_NOT_FOUND, "unknown_layer",
                                "unknown layer '%.64s'", f.layer);
            json_decref(doc);
            return r;
        }
    }
    if (!gcd_tenant_admin(req)) {
        /* A tenant removes only what it stored: its own name is the filter's tenant. */
        if (f.tenant && strcmp(f.tenant, req->tenant) != 0) {
            json_decref(doc);
            return gcd_reply_error(c, req, MHD_HTTP_FORBIDDEN, "forbidden",
                                   "a tenant can only invalidate its own entries");
        }
        f.tenant = req->tenant;
    }
    /* On the caller's behalf: a key names an entry of its namespace, and the library confines
     * a non-admin tenant to its own entries too. */
    gencache_caller who;
    gencache_caller_init(&who);
    who.tenant = req->tenant;
    uint64_t n = 0;
    int err = gencache_invalidate_as(srv->cache, &who, &f, &n);
    json_decref(doc); /* the filter's strings point into it */
    if (err != 0)
        return gcd_reply_gencache(c, req, err, "invalidating");
    gcd_log(&srv->log, GENCACHE_LOG_DEBUG, "invalidate%s%s: %" PRIu64 " entries removed",
            req->tenant ? " by tenant " : "", req->tenant ? req->tenant : "", n);
    char json[64];
    int len = snprintf(json, sizeof json, "{\"invalidated\": %" PRIu64 "}", n);
    return gcd_reply_bytes(c, req, MHD_HTTP_OK, "application/json", json, (size_t)len);
}
