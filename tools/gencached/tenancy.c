/*
 * tenancy.c: the daemon's side of tenants. The rules themselves (namespaces, who may replace or
 * delete a shared entry, exact quotas, per-tenant counters) live in the library, which takes the
 * config's tenants when the cache is opened; this file turns the per-tenant counters into the
 * JSON a tenant sees on GET /v1/stats, and steps the library's memory-pressure policy once a
 * second, logging its transitions.
 */
#include <inttypes.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "config.h"

#define DEFAULT_WARN_RATIO 0.85

struct gcd_tenancy {
    _Atomic double ratio;
    atomic_uint level;
    atomic_uint_fast64_t evicted;
};

int gcd_tenancy_init(gcd_server *srv)
{
    /* The config's tenants were defined in the library when the cache was opened
     * (gencache_open_config); only the pressure state is the daemon's. */
    struct gcd_tenancy *ty = calloc(1, sizeof *ty);
    if (!ty)
        return -1;
    atomic_init(&ty->ratio, 0.0);
    atomic_init(&ty->level, 0u);
    atomic_init(&ty->evicted, 0u);
    srv->tenancy = ty;
    return 0;
}

void gcd_tenancy_free(gcd_server *srv)
{
    free(srv->tenancy);
    srv->tenancy = NULL;
}

json_t *gcd_tenancy_stats_json(gcd_server *srv, const char *tenant)
{
    gencache_tenant_stats *st = calloc(1, sizeof *st);
    if (!st)
        return NULL;
    st->struct_size = sizeof *st;
    if (!tenant || gencache_tenant_stats_get(srv->cache, tenant, st) != 0) {
        free(st);
        return NULL;
    }
    json_t *layers = json_object();
    for (uint32_t i = 0; layers && i < st->n_layers; i++) {
        const gencache_layer_stats *l = &st->layers[i];
        if (!l->lookups && !l->puts)
            continue;
        json_object_set_new(layers, l->layer,
                            json_pack("{s:I,s:I,s:I,s:I,s:I,s:f}", "lookups",
                                      (json_int_t)l->lookups, "hits", (json_int_t)l->hits, "misses",
                                      (json_int_t)l->misses, "puts", (json_int_t)l->puts,
                                      "cost_ms_saved", (json_int_t)l->cost_ms_saved, "hit_ratio",
                                      l->lookups ? (double)l->hits / (double)l->lookups : 0.0));
    }
    static const char *const prio[] = {"high", "normal", "batch"};
    json_t *doc =
        json_pack("{s:s,s:s,s:o,s:{s:I,s:I,s:I}}", "tenant", tenant, "priority", prio[st->priority],
                  "layers", layers, "usage", "bytes", (json_int_t)st->bytes, "entries",
                  (json_int_t)st->entries, "quota_bytes", (json_int_t)st->quota_bytes);
    free(st);
    return doc;
}

/* ---- memory pressure ------------------------------------------------------------------------ */

double gcd_pressure_ratio(gcd_server *srv)
{
    return srv->tenancy ? atomic_load(&srv->tenancy->ratio) : 0.0;
}

unsigned gcd_pressure_level(gcd_server *srv)
{
    return srv->tenancy ? atomic_load(&srv->tenancy->level) : 0u;
}

uint64_t gcd_pressure_evicted(gcd_server *srv)
{
    return srv->tenancy ? (uint64_t)atomic_load(&srv->tenancy->evicted) : 0u;
}

/* The policy is the library's (gencache_pressure_relieve): at warn_ratio batch tenants' entries
 * leave memory first, and TTLs of new entries are capped only while the tiers below cannot keep
 * up. The daemon runs a step every second, logs the transitions and keeps the report for
 * /metrics and /v1/stats. */
void gcd_pressure_check(gcd_server *srv)
{
    struct gcd_tenancy *ty = srv->tenancy;
    if (!ty)
        return;
    gencache_pressure p = {.struct_size = sizeof p};
    if (gencache_pressure_relieve(srv->cache, &p) != 0)
        return;
    unsigned level = atomic_load(&ty->level);
    double warn =
        srv->cfg->pressure_warn_ratio > 0 ? srv->cfg->pressure_warn_ratio : DEFAULT_WARN_RATIO;
    if (level == 0 && p.level >= 1)
        gcd_log(&srv->log, GENCACHE_LOG_INFO,
                "memory pressure: the memory tier is %.0f%% full (threshold %.0f%%); "
                "batch-priority tenants' entries leave memory first (kept on disk)",
                p.mem_ratio * 100, warn * 100);
    if (p.level == 2 && level < 2)
        gcd_log(&srv->log, GENCACHE_LOG_WARN,
                "pressure: the tiers below memory cannot keep up (disk %.0f%% full, %" PRIu64
                " bytes waiting to be written); shortening the TTL of new entries (tenants of "
                "high priority excepted)",
                p.disk_ratio * 100, p.writeback_bytes);
    else if (p.level < 2 && level == 2)
        gcd_log(&srv->log, GENCACHE_LOG_INFO, "pressure: relieved; new entries keep their TTL");
    atomic_store(&ty->level, p.level);
    atomic_store(&ty->ratio, p.mem_ratio);
    atomic_store(&ty->evicted, p.batch_demoted);
}
