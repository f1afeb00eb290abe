/*
 * config.c: a loaded gencache_config handed out (accessors) and put into effect: tier options
 * for gencache_open(), and the layers and models applied to a cache's layer registry. What the
 * file leaves out keeps the value the caller or the registry already has.
 */
#include <fnmatch.h>
#include <string.h>

#include "cfg.h"

const char *gencache_config_path(const gencache_config *cfg)
{
    return cfg ? cfg->path : NULL;
}

int gencache_config_options(const gencache_config *c, gencache_options *o)
{
    if (!c || !o)
        return GENCACHE_EINVAL;
    if (c->has_mem_max_bytes)
        o->mem_max_bytes = c->mem_max_bytes;
    if (c->has_mem_max_entries)
        o->mem_max_entries = c->mem_max_entries;
    if (c->mem_max_pinned_bytes)
        o->mem_max_pinned_bytes = c->mem_max_pinned_bytes;
    if (c->has_mem_policy)
        o->mem_policy = c->mem_policy;
    if (c->has_mrc_sample_rate)
        o->mrc_sample_rate = c->mrc_sample_rate;
    if (c->server.pressure_warn_ratio > 0)
        o->pressure_warn_ratio = c->server.pressure_warn_ratio;
    if (c->server.pressure_ttl_ms)
        o->pressure_ttl_ms = c->server.pressure_ttl_ms;
    if (c->data_dir)
        o->data_dir = c->data_dir;
    if (c->disk_disabled)
        o->data_dir = NULL;
    if (c->has_disk_max_bytes)
        o->disk_max_bytes = c->disk_max_bytes;
    if (c->has_disk_max_entries)
        o->disk_max_entries = c->disk_max_entries;
    if (c->redis_url)
        o->redis_url = c->redis_url;
    if (c->redis_disabled)
        o->redis_url = NULL;
    if (c->redis_timeout_ms)
        o->redis_timeout_ms = c->redis_timeout_ms;
    if (c->has_redis_max_value_bytes)
        o->redis_max_value_bytes = c->redis_max_value_bytes;
    if (c->redis_bloom_fp_rate > 0)
        o->redis_bloom_fp_rate = c->redis_bloom_fp_rate;
    if (c->redis_bloom_capacity)
        o->redis_bloom_capacity = c->redis_bloom_capacity;
    if (c->server.log_level_set)
        o->log_level = c->log_level;
    if (c->n_encryption_keys) {
        o->encryption_keys = c->encryption_keys;
        o->n_encryption_keys = c->n_encryption_keys;
    }
    return GENCACHE_OK;
}

/* One layer of the file over the registry's current definition of it. */
static int apply_layer(const gencache__cfg_layer *l, gencache *cache)
{
    gencache_layer_options o;
    gencache_layer_options_init(&o);
    int rc = gencache_layer_get(cache, l->name, &o);
    if (rc == GENCACHE_ENOTFOUND && !l->fields)
        return GENCACHE_EINVAL; /* a new layer needs its fields */
    if (rc != GENCACHE_OK && rc != GENCACHE_ENOTFOUND)
        return rc;
    o.struct_size = sizeof o;
    o.name = l->name;
    if (l->fields) {
        o.fields = (const char *const *)l->fields;
        o.n_fields = l->n_fields;
    } else {
        o.fields = NULL; /* keep the recipe */
        o.n_fields = 0;
    }
    if (l->has_scope)
        o.scope = l->scope;
    if (l->has_ttl)
        o.ttl_ms = l->ttl_ms;
    if (l->has_sliding)
        o.sliding_ttl = l->sliding;
    if (l->has_policy)
        o.write_through = l->write_through;
    if (l->has_shared)
        o.shared = l->shared;
    if (l->has_mode)
        o.prompt_normalization = (int)l->mode;
    if (l->has_eviction)
        o.eviction = l->eviction;
    if (l->has_image_match)
        o.image_match = l->image_match;
    return gencache_layer_define(cache, &o);
}

int gencache__cfg_apply(const gencache_config *c, gencache *cache, size_t *bad)
{
    *bad = 0;
    for (size_t i = 0; i < c->n_layers; i++) {
        int rc = apply_layer(&c->layers[i], cache);
        if (rc != GENCACHE_OK) {
            *bad = i;
            return rc;
        }
    }
    *bad = c->n_layers;
    if (!c->n_models)
        return GENCACHE_OK;
    gencache_keyspace *ks = NULL;
    int rc = gencache_keyspace_from_cache(cache, &ks);
    for (size_t i = 0; rc == GENCACHE_OK && i < c->n_models; i++)
        rc = gencache_keyspace_set_mode(ks, c->models[i].name, c->models[i].mode);
    gencache_keyspace_free(ks);
    return rc;
}

int gencache_config_apply(const gencache_config *cfg, gencache *cache)
{
    if (!cfg || !cache)
        return GENCACHE_EINVAL;
    size_t bad;
    int rc = gencache__cfg_apply(cfg, cache, &bad);
    /* Tenants and their rules belong to the cache, whichever surface opened it: an in-process
     * user of the same config gets the same namespaces and quotas as the daemon. */
    for (size_t i = 0; rc == GENCACHE_OK && i < cfg->n_tenants; i++) {
        const gencache_config_tenant *t = &cfg->tenants[i];
        gencache_tenant_options o;
        gencache_tenant_options_init(&o);
        o.name = t->name;
        o.priority = t->priority;
        o.quota_bytes = t->quota_bytes;
        o.admin = t->admin;
        rc = gencache_tenant_define(cache, &o);
    }
    for (size_t i = 0; rc == GENCACHE_OK && i < cfg->n_preferred; i++)
        rc = gencache_preferred_add(cache, cfg->preferred[i]);
    if (rc == GENCACHE_OK && cfg->has_guard)
        rc = gencache_reuse_set_guard(cache, &cfg->guard);
    if (rc == GENCACHE_OK && cfg->has_prompt_radius)
        rc = gencache_reuse_set_prompt_radius(cache, cfg->prompt_radius);
    for (size_t i = 0; rc == GENCACHE_OK && i < cfg->n_traj; i++)
        rc = gencache_trajectory_set_thresholds(cache, cfg->traj[i].model, cfg->traj[i].rows,
                                                cfg->traj[i].n);
    if (rc == GENCACHE_OK && cfg->traj_graph_min)
        rc = gencache_trajectory_set_graph(cache, cfg->traj_graph_min);
    return rc;
}

int gencache_open_config(gencache **out, const gencache_config *cfg, const gencache_options *opts)
{
    if (!out)
        return GENCACHE_EINVAL;
    *out = NULL;
    if (!cfg)
        return GENCACHE_EINVAL;
    gencache_options o;
    if (!opts) {
        gencache_options_init(&o);
        gencache_config_options(cfg, &o);
        opts = &o;
    }
    gencache *cache = NULL;
    int rc = gencache_open(&cache, opts);
    if (rc != GENCACHE_OK)
        return rc;
    rc = gencache_config_apply(cfg, cache);
    if (rc != GENCACHE_OK) {
        gencache_close(cache);
        return rc;
    }
    *out = cache;
    return GENCACHE_OK;
}

int gencache_config_server_get(const gencache_config *cfg, gencache_config_server *out)
{
    if (!cfg || !out || out->struct_size < sizeof(size_t))
        return GENCACHE_EINVAL;
    gencache_config_server s = cfg->server;
    s.struct_size = out->struct_size < sizeof s ? out->struct_size : sizeof s;
    memcpy(out, &s, s.struct_size);
    return GENCACHE_OK;
}

size_t gencache_config_tenant_count(const gencache_config *cfg)
{
    return cfg ? cfg->n_tenants : 0;
}

int gencache_config_tenant_get(const gencache_config *cfg, size_t i, gencache_config_tenant *out)
{
    if (!cfg || !out || out->struct_size < sizeof(size_t))
        return GENCACHE_EINVAL;
    if (i >= cfg->n_tenants)
        return GENCACHE_ENOTFOUND;
    gencache_config_tenant t = cfg->tenants[i];
    t.struct_size = out->struct_size < sizeof t ? out->struct_size : sizeof t;
    memcpy(out, &t, t.struct_size);
    return GENCACHE_OK;
}

const char *gencache_config_preferred(const gencache_config *cfg, size_t i)
{
    return cfg && i < cfg->n_preferred ? cfg->preferred[i] : NULL;
}

const char *gencache_config_sensitive(const gencache_config *cfg, size_t i)
{
    return cfg && i < cfg->n_sensitive ? cfg->sensitive_src[i] : NULL;
}

int gencache_config_preferred_match(const gencache_config *cfg, const char *key)
{
    for (size_t i = 0; cfg && key && i < cfg->n_preferred; i++)
        if (fnmatch(cfg->preferred[i], key, 0) == 0)
            return 1;
    return 0;
}

int gencache_config_sensitive_match(const gencache_config *cfg, const char *text)
{
    for (size_t i = 0; cfg && text && i < cfg->n_sensitive; i++)
        if (regexec(&cfg->sensitive[i], text, 0, NULL, 0) == 0)
            return 1;
    return 0;
}

const char *gencache_config_layer(const gencache_config *cfg, size_t i)
{
    return cfg && i < cfg->n_layers ? cfg->layers[i].name : NULL;
}

const char *gencache_config_model(const gencache_config *cfg, size_t i, gencache_norm_mode *mode)
{
    if (!cfg || i >= cfg->n_models)
        return NULL;
    if (mode)
        *mode = cfg->models[i].mode;
    return cfg->models[i].name;
}
