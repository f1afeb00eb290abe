/*
 * config.c: gencache.yaml for the daemon. The library reads and checks the file; this file
 * copies the daemon's settings (listen, limits, tenants, upstream, ...) into gcd_config, where
 * the flags can override them, and answers the per-request questions the file decides (is a key
 * preferred, is a prompt sensitive) through the library's rules.
 */
#include <stdlib.h>
#include <string.h>

#include "config.h"

/* The tier settings the file gives, read through the library's option filler: fields start at
 * values the file cannot produce here, so a change means the file set them. */
static void copy_tiers(gencache_config *lib, gcd_config *cfg, struct gcd_config_ext *e)
{
    gencache_options o;
    gencache_options_init(&o);
    o.data_dir = NULL;
    o.redis_url = NULL;
    o.mem_max_bytes = o.disk_max_bytes = 0;
    o.mem_max_entries = o.disk_max_entries = 0;
    o.redis_timeout_ms = 0;
    o.log_level = (gencache_log_level)-1;
    gencache_config_options(lib, &o);
    if (o.mem_max_bytes)
        cfg->max_memory = o.mem_max_bytes;
    if (o.disk_max_bytes)
        cfg->max_disk = o.disk_max_bytes;
    if (o.data_dir)
        cfg->data_dir = o.data_dir;
    cfg->redis_url = o.redis_url;
    if (o.redis_timeout_ms)
        cfg->redis_timeout_ms = o.redis_timeout_ms;
    if ((int)o.log_level >= 0)
        cfg->log_level = o.log_level;
    e->mem_max_entries = o.mem_max_entries;
    e->disk_max_entries = o.disk_max_entries;
    o.data_dir = ".";
    gencache_config_options(lib, &o);
    e->disk_disabled = o.data_dir == NULL;
}

int gcd_config_load(const char *path, gcd_config *cfg, char *err, size_t err_size)
{
    err[0] = '\0';
    struct gcd_config_ext *e = calloc(1, sizeof *e);
    if (!e) {
        snprintf(err, err_size, "%s: out of memory", path);
        return -1;
    }
    cfg->ext = e;
    cfg->config_path = path;
    if (gencache_config_load(path, &e->lib, err, err_size) != GENCACHE_OK)
        return -1;
    copy_tiers(e->lib, cfg, e);
    gencache_config_server s = {.struct_size = sizeof s};
    gencache_config_server_get(e->lib, &s);
    if (s.listen)
        cfg->listen = s.listen;
    if (s.max_body)
        cfg->max_body = s.max_body;
    if (s.max_connections)
        cfg->max_connections = s.max_connections;
    if (s.threads)
        cfg->threads = s.threads;
    if (s.timeout_s)
        cfg->timeout_s = s.timeout_s;
    if (s.header_timeout_ms)
        cfg->header_timeout_ms = (unsigned)s.header_timeout_ms;
    if (s.max_inflight_bytes)
        cfg->max_inflight = s.max_inflight_bytes;
    if (s.prewarm_max_bytes)
        cfg->prewarm_max_bytes = s.prewarm_max_bytes;
    if (s.has_fast_get)
        cfg->fast_get = s.fast_get != 0;
    if (s.has_max_connections_per_client) {
        cfg->max_per_client = s.max_connections_per_client;
        cfg->max_per_client_set = true;
    }
    cfg->upstream_url = s.upstream_url;
    cfg->upstream_timeout_ms = (unsigned)s.upstream_timeout_ms;
    cfg->upstream_concurrency = s.upstream_concurrency;
    cfg->prewarm_concurrency = s.prewarm_concurrency;
    if (s.pressure_warn_ratio > 0)
        cfg->pressure_warn_ratio = s.pressure_warn_ratio;
    size_t n = gencache_config_tenant_count(e->lib);
    cfg->tenants = calloc(n ? n : 1, sizeof *cfg->tenants);
    if (!cfg->tenants) {
        snprintf(err, err_size, "%s: out of memory", path);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        gencache_config_tenant t = {.struct_size = sizeof t};
        gencache_config_tenant_get(e->lib, i, &t);
        gcd_tenant *d = &cfg->tenants[cfg->n_tenants++];
        d->name = t.name;
        d->token = t.token;
        d->token_len = strlen(t.token);
        d->priority = t.priority;
        d->admin = t.admin != 0;
    }
    return 0;
}

void gcd_config_free(gcd_config *cfg)
{
    struct gcd_config_ext *e = cfg->ext;
    if (!e)
        return;
    gencache_config_free(e->lib);
    free(cfg->tenants);
    cfg->tenants = NULL;
    cfg->n_tenants = 0;
    free(e);
    cfg->ext = NULL;
}

int gcd_config_open_cache(const gcd_config *cfg, const gencache_options *opts, const gcd_logger *lg,
                          gencache **out)
{
    const struct gcd_config_ext *e = cfg->ext;
    int err = e && e->lib ? gencache_open_config(out, e->lib, opts) : gencache_open(out, opts);
    if (err != GENCACHE_OK)
        gcd_log(lg, GENCACHE_LOG_ERROR, "cannot open the cache%s%s: %s (%s)",
                opts->data_dir ? " in " : "", opts->data_dir ? opts->data_dir : "",
                gencache_strerror(err), gencache_errname(err));
    return err == GENCACHE_OK ? 0 : -1;
}

bool gcd_sensitive(gcd_server *srv, const char *text)
{
    const struct gcd_config_ext *e = srv->cfg->ext;
    return e && gencache_config_sensitive_match(e->lib, text);
}
