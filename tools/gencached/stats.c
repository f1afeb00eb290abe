/*
 * stats.c: GET /v1/stats, the library's counters as JSON. Layers and tiers are objects keyed by
 * name, so a client reads one counter without searching a list; the numbers are the snapshot
 * gencache_stats_get() takes (each counter atomic, the set not one instant).
 * A caller with a tenant token sees only its own counters (tenancy.c): the library's counters
 * are global, and tier sizes, hit counts or invalidations would tell it about other tenants.
 */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "config.h"

static json_t *layer_json(const gencache_layer_stats *l)
{
    return json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:f}", "lookups", (json_int_t)l->lookups, "hits",
                     (json_int_t)l->hits, "misses", (json_int_t)l->misses, "ghost_hits",
                     (json_int_t)l->ghost_hits, "puts", (json_int_t)l->puts, "cost_ms_saved",
                     (json_int_t)l->cost_ms_saved, "hit_ratio",
                     l->lookups ? (double)l->hits / (double)l->lookups : 0.0);
}

static json_t *tier_json(const gencache_tier_stats *t)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    const struct {
        const char *name;
        uint64_t v;
    } f[] = {
        {"bytes", t->bytes},
        {"entries", t->entries},
        {"max_bytes", t->max_bytes},
        {"max_entries", t->max_entries},
        {"pinned_entries", t->pinned_entries},
        {"evictions_capacity", t->evictions_capacity},
        {"evictions_expired", t->evictions_expired},
        {"evictions_corrupt", t->evictions_corrupt},
        {"backend_errors", t->backend_errors},
        {"hits", t->hits},
        {"crypt_rejected", t->crypt_rejected},
        {"redirects", t->redirects},
        {"filter_skips", t->filter_skips},
        {"invalidations_published", t->invalidations_published},
    };
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        json_object_set_new(o, f[i].name, json_integer((json_int_t)f[i].v));
    return o;
}

/* The memory tier's miss-ratio curve: [{"scale", "hit_ratio", "gpu_seconds_saved"}, ...] for
 * a tier of 0.5, 2 and 4 times its size; NULL when the cache keeps none. */
static json_t *mrc_json(gencache *cache)
{
    gencache_mrc mrc = {.struct_size = sizeof mrc};
    if (gencache_mrc_get(cache, &mrc) != GENCACHE_OK || mrc.n_points == 0)
        return NULL;
    json_t *a = json_array();
    for (uint32_t i = 0; a && i < mrc.n_points && i < GENCACHE_MRC_POINTS; i++)
        json_array_append_new(a, json_pack("{s:f,s:f,s:f}", "scale", mrc.points[i].scale,
                                           "hit_ratio", mrc.points[i].hit_ratio,
                                           "gpu_seconds_saved", mrc.points[i].gpu_seconds_saved));
    return a;
}

static enum MHD_Result reply_json(struct MHD_Connection *c, gcd_request *req, json_t *doc)
{
    char *text = doc ? json_dumps(doc, JSON_INDENT(2)) : NULL;
    json_decref(doc);
    if (!text)
        return gcd_reply_gencache(c, req, GENCACHE_ENOMEM, "writing the counters");
    enum MHD_Result r =
        gcd_reply_bytes(c, req, MHD_HTTP_OK, "application/json", text, strlen(text));
    free(text);
    return r;
}

enum MHD_Result gcd_stats_handle(struct MHD_Connection *c, gcd_request *req)
{
    if (!gcd_tenant_admin(req)) {
        json_t *doc = gcd_tenancy_stats_json(req->srv, req->tenant);
        if (doc) {
            uint64_t now = gcd_now_ms();
            json_object_set_new(doc, "version", json_string(gencache_version()));
            json_object_set_new(doc, "uptime_s",
                                json_integer((json_int_t)((now - req->srv->started_ms) / 1000)));
        }
        return reply_json(c, req, doc);
    }
    gencache_stats *st = calloc(1, sizeof *st);
    if (!st)
        return gcd_reply_gencache(c, req, GENCACHE_ENOMEM, "reading the counters");
    st->struct_size = sizeof *st;
    int err = gencache_stats_get(req->srv->cache, st);
    if (err != 0) {
        free(st);
        return gcd_reply_gencache(c, req, err, "reading the counters");
    }
    json_t *layers = json_object(), *tiers = json_object();
    for (uint32_t i = 0; i < st->n_layers && i < GENCACHE_MAX_LAYERS; i++)
        if (st->layers[i].layer)
            json_object_set_new(layers, st->layers[i].layer, layer_json(&st->layers[i]));
    for (uint32_t i = 0; i < st->n_tiers && i < GENCACHE_MAX_TIERS; i++)
        if (st->tiers[i].tier) {
            json_t *t = tier_json(&st->tiers[i]);
            json_t *mrc = i == 0 ? mrc_json(req->srv->cache) : NULL; /* tiers[0]: memory */
            if (t && mrc)
                json_object_set_new(t, "mrc", mrc);
            else
                json_decref(mrc);
            json_object_set_new(tiers, st->tiers[i].tier, t);
        }
    uint64_t now = gcd_now_ms();
    json_t *doc = json_pack("{s:s,s:I,s:o,s:o,s:I}", "version", gencache_version(), "uptime_s",
                            (json_int_t)((now - req->srv->started_ms) / 1000), "layers", layers,
                            "tiers", tiers, "invalidated", (json_int_t)st->invalidated);
    free(st);
    if (doc) {
        json_object_set_new(doc, "memory_pressure",
                            json_pack("{s:f,s:i,s:I}", "ratio", gcd_pressure_ratio(req->srv),
                                      "level", (int)gcd_pressure_level(req->srv), "batch_evicted",
                                      (json_int_t)gcd_pressure_evicted(req->srv)));
        json_object_set_new(doc, "reuse", gcd_lookup_stats_json(req->srv));
        json_object_set_new(doc, "trajectory", gcd_trajectory_stats_json(req->srv));
        /* What the status page shows beyond the library's counters (ui.c). */
        const char *h = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "history");
        gcd_ui_stats_json(req->srv, doc, h != NULL);
    }
    return reply_json(c, req, doc);
}
