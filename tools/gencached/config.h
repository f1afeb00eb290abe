/*
 * config.h: the parsed gencache.yaml (config.c) beyond what gcd_config holds directly: tiers,
 * layer recipes, models, preferred keys and sensitive-content rules. Only the files of engineer A
 * (main.c, config.c, tenancy.c, entries.c, keys.c, invalidate.c) read it.
 */
#ifndef GENCACHED_CONFIG_H
#define GENCACHED_CONFIG_H

#include <regex.h>
#include <stdio.h>

#include <jansson.h>

#include "gencached.h"

typedef struct gcd_layer_cfg {
    char *name;
    int line;
    char **fields; /* n_fields; NULL: the layer's current recipe */
    size_t n_fields;
    bool has_scope, has_ttl, has_policy, has_mode;
    gencache_scope scope;
    uint64_t ttl_ms;
    bool write_through;
    gencache_norm_mode mode;
    char *image_match; /* validated, not applied */
} gcd_layer_cfg;

typedef struct gcd_model_cfg {
    char *name;
    gencache_norm_mode mode;
} gcd_model_cfg;

struct gcd_config_ext {
    /* tiers */
    uint64_t mem_max_entries, disk_max_entries, redis_max_value_bytes;
    bool disk_disabled;
    /* layers and models */
    gcd_layer_cfg *layers;
    size_t n_layers;
    gcd_model_cfg *models;
    size_t n_models;
    /* preferred: fnmatch patterns of keys stored pinned */
    char **preferred;
    size_t n_preferred;
    /* sensitive: compiled POSIX extended regexes (case-insensitive) */
    regex_t *sensitive;
    char **sensitive_src;
    size_t n_sensitive;
    /* memory_pressure */
    uint64_t pressure_ttl_ms; /* TTL cap of new puts in the second degradation step */
    /* every string the config owns (listen, data_dir, urls, tenants) */
    char **owned;
    size_t n_owned;
};

/* Loads `path` into cfg (whose fields hold the defaults): every value the file sets replaces the
 * default. Returns 0, or -1 with "FILE:LINE: key.path: what is wrong" in err. */
int gcd_config_load(const char *path, gcd_config *cfg, char *err, size_t err_size);
/* Frees what gcd_config_load() allocated. */
void gcd_config_free(gcd_config *cfg);
/* Prints a human summary of the effective configuration. */
void gcd_config_print(const gcd_config *cfg, FILE *out);
/* Applies layers and models to the cache and keyspace (init only, before serving). Returns 0, or
 * -1 after logging why. */
int gcd_config_apply(const gcd_config *cfg, gencache *cache, gencache_keyspace *ks);
/* stats.c's view of one tenant (tenancy.c): {"tenant", "priority", "layers": {name: counters},
 * "usage": {bytes, entries, quota_bytes}}; NULL for an unknown tenant. */
json_t *gcd_tenancy_stats_json(gcd_server *srv, const char *tenant);

/* True for the layers the library and the keyspace define by themselves. */
bool gcd_config_builtin_layer(const char *name);

/* Parsers shared with main.c's flags. "1G", "512M", "4096" (powers of 1024). */
int gcd_parse_size(const char *s, uint64_t *out);
/* "30m", "7d", "90s", "500ms", "2h", "1w"; a bare number is seconds. */
int gcd_parse_duration_ms(const char *s, uint64_t *out);

#endif
