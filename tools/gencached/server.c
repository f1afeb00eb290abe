/*
 * server.c: one gencached server and the life of everything it owns: the cache and its keyspace,
 * the pressure state, the counters, the prewarm jobs, the proxy and the listener. Nothing a
 * server uses is global, so two can run in one process. The invariant is the order: what a
 * request can reach is created before the listener starts, and freed only after it has stopped.
 */
#include <string.h>

#include "config.h"

int gcd_server_open(gcd_server *srv, const gcd_config *cfg, const gencache_options *opts)
{
    memset(srv, 0, sizeof *srv);
    srv->cfg = cfg;
    srv->log.level = cfg->log_level;
    srv->started_ms = gcd_now_ms();
    gencache_options o = *opts;
    o.log_fn = gcd_log_library;
    o.log_userdata = &srv->log;
    if (gcd_config_open_cache(cfg, &o, &srv->log, &srv->cache) != 0)
        return -1;
    /* Keys are derived from the cache's own layer registry, so /v1/keys and the stored layers
     * can never disagree. */
    if (gencache_keyspace_from_cache(srv->cache, &srv->keyspace) != GENCACHE_OK ||
        gcd_tenancy_init(srv) != 0 || gcd_metrics_new(srv) != 0 || gcd_prewarm_new(srv) != 0 ||
        gcd_conns_new(srv) != 0 || gcd_ui_new(srv) != 0 || gcd_respcache_new(srv) != 0) {
        gcd_log(&srv->log, GENCACHE_LOG_ERROR, "cannot set up the server: out of memory");
        gcd_server_close(srv);
        return -1;
    }
    return 0;
}

void gcd_server_tick(gcd_server *srv, unsigned tick, unsigned maintain_every)
{
    gcd_pressure_check(srv);
    gcd_conns_sweep(srv);
    gcd_ui_sample(srv, tick);
    if (!maintain_every || tick % maintain_every != 0)
        return;
    uint64_t n = 0;
    if (gencache_maintain(srv->cache, &n) == GENCACHE_OK && n)
        gcd_log(&srv->log, GENCACHE_LOG_DEBUG, "maintenance: %llu expired entries removed",
                (unsigned long long)n);
    /* The reuse records reach disk every minute, not only at exit (a no-op when unchanged):
     * a kill -9 loses at most a minute of them, never an entry. */
    if (tick % (maintain_every * 6) == 0)
        gencache_reuse_save(srv->cache);
}

void gcd_server_close(gcd_server *srv)
{
    gcd_http_stop(srv);
    gcd_respcache_free(srv); /* after MHD stopped, before the cache closes: releases handles */
    gcd_prewarm_free(srv);   /* after the proxy stopped: what a job still submits fails at once */
    gcd_generate_free(srv);  /* after MHD stopped: no request holds a wait on it any more */
    gcd_metrics_free(srv);
    gcd_conns_free(srv); /* after MHD stopped: every connection is untracked */
    gcd_tenancy_free(srv);
    gcd_ui_free(srv); /* after MHD stopped: no request records an error or a hit any more */
    gencache_keyspace_free(srv->keyspace);
    srv->keyspace = NULL;
    gencache_close(srv->cache);
    srv->cache = NULL;
}
