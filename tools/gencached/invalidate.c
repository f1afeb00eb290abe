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

bool gcd_has_body(struct MHD_Connection *c)
{
    const char *cl =
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    const char *te =
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING);
    return (cl && strcmp(cl, "0") != 0) || te;
}

#define BAD(...) gcd_reply_error(c, req, MHD_HTTP_BAD_REQUEST, "bad_request", __VA_ARGS__)

enum MHD_Result gcd_invalidate_handle(struct MHD_Connection *c, gcd_request *req)
{
    gcd_server *srv = req->srv;
    gcd_filter_args a;
    char msg[200];
    int bad;
    enum MHD_Result r;
    json_t *doc = NULL;
    if (req->body_len > 0) {
        for (size_t i = 0; i < 6; i++)
            if (MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, gcd_filter_names[i]))
                return BAD("give the filter either as query parameters or as a JSON body, not "
                           "both");
        json_error_t je;
        doc = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
        if (!doc)
            return BAD("malformed JSON at line %d, column %d: %s", je.line, je.column, je.text);
        bad = gcd_filter_from_json(doc, &a, msg, sizeof msg);
    } else {
        const char *values[6];
        for (size_t i = 0; i < 6; i++)
            values[i] = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, gcd_filter_names[i]);
        bad = gcd_filter_from_query(values, &a, msg, sizeof msg);
    }
    if (bad) {
        json_decref(doc);
        return BAD("%s", msg);
    }

    gencache_filter f;
    gencache_filter_init(&f);
    f.key = a.v[GCD_FILTER_KEY];
    f.layer = a.v[GCD_FILTER_LAYER];
    f.tenant = a.v[GCD_FILTER_TENANT];
    f.tag = a.v[GCD_FILTER_TAG];
    f.model = a.v[GCD_FILTER_MODEL];
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
