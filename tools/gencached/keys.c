/*
 * keys.c: POST /v1/keys, the canonical keys of a request (DESIGN.md section 2) in every layer of
 * the daemon's keyspace, and its normalized prompt. A layer in which the request has no key (a
 * result without a seed, an image_latent without an image) is listed under "uncacheable" instead.
 * The body's "tenant" is ignored (tenants come from tokens), and so are image paths: the daemon
 * never opens a file because a client named it. With tokens, the caller's tenant enters the keys
 * of tenant-scoped layers. A prompt or negative_prompt matching a `sensitive:` rule of the config
 * makes every layer uncacheable; "reasons" says why for each uncacheable layer.
 */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "gencached.h"

#define SENSITIVE_REASON "the prompt matches a sensitive-content rule of the configuration"

/* True when the request names its image by a path on this machine; *sensitive when its prompt or
 * negative_prompt matches a sensitive-content rule. */
static bool has_image_path(gcd_server *srv, const char *body, size_t len, bool *sensitive)
{
    json_t *doc = json_loadb(body, len, 0, NULL);
    bool found = json_object_get(json_object_get(doc, "image"), "path") != NULL;
    *sensitive = gcd_sensitive(srv, json_string_value(json_object_get(doc, "prompt"))) ||
                 gcd_sensitive(srv, json_string_value(json_object_get(doc, "negative_prompt")));
    json_decref(doc);
    return found;
}

static enum MHD_Result reply_parse_error(struct MHD_Connection *c, gcd_request *req, int err,
                                         const char *msg)
{
    const char *detail = msg[0] ? msg : gencache_strerror(err);
    switch (err) {
    case GENCACHE_EINVAL:
    case GENCACHE_EPARSE:
    case GENCACHE_EUNSUPPORTED:
        return gcd_reply_error(c, req, MHD_HTTP_BAD_REQUEST, "bad_request", "request: %s", detail);
    case GENCACHE_ELIMIT:
        return gcd_reply_error(c, req, MHD_HTTP_CONTENT_TOO_LARGE, "limit", "request: %s", detail);
    default:
        return gcd_reply_gencache(c, req, err, "parsing the request");
    }
}

enum MHD_Result gcd_keys_handle(struct MHD_Connection *c, gcd_request *req)
{
    const char *body = req->body ? req->body : "";
    bool sensitive = false;
    if (has_image_path(req->srv, body, req->body_len, &sensitive))
        return gcd_reply_error(c, req, MHD_HTTP_BAD_REQUEST, "bad_request",
                               "request: image paths are not accepted over HTTP; send "
                               "{\"digest\": \"sha256:<hex>\"} (gencache imgid FILE prints it)");
    gencache_request *r = NULL;
    char msg[GENCACHE_ERRMSG_MAX] = "";
    int err =
        gencache_request_parse_ex(req->srv->keyspace, body, req->body_len, 0, &r, msg, sizeof msg);
    if (err != 0)
        return reply_parse_error(c, req, err, msg);
    if (req->tenant && (err = gencache_request_set_tenant(r, req->tenant)) != 0) {
        gencache_request_free(r);
        return gcd_reply_gencache(c, req, err, "setting the tenant");
    }

    json_t *keys = json_object(), *uncacheable = json_array(), *reasons = json_object();
    const gencache_keyspace *ks = req->srv->keyspace;
    size_t n = gencache_keyspace_layer_count(ks);
    for (size_t i = 0; i < n && err == 0; i++) {
        const char *layer = gencache_keyspace_layer_name(ks, i);
        char key[GENCACHE_KEY_MAX];
        int kerr =
            sensitive ? GENCACHE_EUNCACHEABLE : gencache_request_key(r, layer, key, sizeof key);
        if (kerr == 0) {
            json_object_set_new(keys, layer, json_string(key));
        } else if (kerr == GENCACHE_EUNCACHEABLE) {
            const char *why =
                sensitive ? SENSITIVE_REASON : gencache_request_uncacheable_reason(r, layer);
            json_array_append_new(uncacheable, json_string(layer));
            json_object_set_new(reasons, layer, json_string(why ? why : "uncacheable"));
        } else {
            err = kerr;
        }
    }
    if (err != 0) {
        json_decref(keys);
        json_decref(uncacheable);
        json_decref(reasons);
        gencache_request_free(r);
        return gcd_reply_gencache(c, req, err, "deriving the keys");
    }
    const char *prompt = gencache_request_prompt(r);
    json_t *doc = json_pack("{s:o,s:o,s:o,s:o}", "keys", keys, "prompt",
                            prompt ? json_string(prompt) : json_null(), "uncacheable", uncacheable,
                            "reasons", reasons);
    gencache_request_free(r);
    char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (!text)
        return gcd_reply_gencache(c, req, GENCACHE_ENOMEM, "writing the keys");
    enum MHD_Result res =
        gcd_reply_bytes(c, req, MHD_HTTP_OK, "application/json", text, strlen(text));
    free(text);
    return res;
}
