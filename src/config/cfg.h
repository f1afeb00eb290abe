/*
 * cfg.h: what the files of src/config/ share. A config is read in two steps: yaml.c turns the
 * text into a libyaml document and walks its mappings, sections.c checks each key into a
 * gencache_config; config.c then hands the result out and applies it to caches. Every string a
 * config holds is owned by it (cfg->owned). Nothing here is API.
 */
#ifndef GENCACHE_CONFIG_CFG_H
#define GENCACHE_CONFIG_CFG_H

#include <regex.h>
#include <stdbool.h>

#include <yaml.h>

#include "internal.h"

/* One entry of `layers:`: what the file sets, each with a has_ flag (the rest is kept). */
typedef struct gencache__cfg_layer {
    char *name;
    int line, fields_line;
    char **fields; /* n_fields; NULL: keep the layer's recipe */
    size_t n_fields;
    bool has_scope, has_ttl, has_sliding, has_policy, has_shared, has_mode, has_eviction,
        has_image_match;
    gencache_scope scope;
    uint64_t ttl_ms;
    bool sliding, write_through, shared;
    gencache_norm_mode mode;
    gencache_eviction eviction;
    gencache_image_match_mode image_match;
} gencache__cfg_layer;

typedef struct gencache__cfg_model {
    char *name;
    gencache_norm_mode mode;
} gencache__cfg_model;

struct gencache_config {
    char *path;
    /* tiers and data_dir, each with a has_ flag (what gencache_config_options() writes) */
    const char *data_dir, *redis_url;
    uint64_t mem_max_bytes, mem_max_entries, disk_max_bytes, disk_max_entries,
        redis_max_value_bytes, mem_max_pinned_bytes; /* 0: the library's default */
    unsigned redis_timeout_ms;
    bool has_mem_max_bytes, has_mem_max_entries, has_disk_max_bytes, has_disk_max_entries,
        has_redis_max_value_bytes, disk_disabled, redis_disabled;
    gencache_log_level log_level;
    double redis_bloom_fp_rate;    /* 0: no filter */
    uint64_t redis_bloom_capacity; /* 0: the library's default */
    gencache_config_server server;
    gencache__cfg_layer *layers;
    size_t n_layers;
    gencache_eviction mem_policy; /* tiers.memory.policy, when has_mem_policy */
    bool has_mem_policy;
    double mrc_sample_rate; /* tiers.memory.mrc_sample_rate, when has_mrc_sample_rate */
    bool has_mrc_sample_rate;
    gencache__cfg_model *models;
    size_t n_models;
    gencache_config_tenant *tenants;
    size_t n_tenants;
    char **preferred;
    int *preferred_line; /* the line of each pattern, for messages */
    size_t n_preferred;
    char **sensitive_src;
    regex_t *sensitive; /* n_sensitive compiled (case-insensitive, extended) */
    size_t n_sensitive;
    char **owned;
    size_t n_owned;
    gencache_match_options guard; /* perceptual: the near-duplicate guard (has_guard: set) */
    bool has_guard;
    unsigned prompt_radius; /* similar_prompt.radius (has_prompt_radius: set) */
    bool has_prompt_radius;
    /* encryption: key sources ("env:NAME" or a path), the current one first; at most
     * GENCACHE__CRYPT_KEYS_MAX (src/tier/crypt.h) */
    const char *encryption_keys[16];
    size_t n_encryption_keys;
    bool has_encryption_current;
    /* trajectory: threshold tables (gencache_trajectory_set_thresholds()); model NULL: the
     * default table */
    struct gencache__cfg_traj {
        const char *model; /* owned by the config */
        gencache_trajectory_threshold rows[GENCACHE_TRAJECTORY_MAX_THRESHOLDS];
        size_t n;
    } traj[17];
    size_t n_traj;
    unsigned traj_graph_min; /* trajectory.graph_min_vectors; 0: exact search only */
};

/* The walk over one document. */
typedef struct gencache__cfg_ctx {
    const char *file;
    yaml_document_t *doc;
    gencache_config *cfg;
    char *err;
    size_t err_size;
} gencache__cfg_ctx;

/* Formats "FILE:LINE: path: message" into the error buffer (the first error wins) and returns
 * -1. n gives the line; NULL: line 0. */
int gencache__cfg_fail(gencache__cfg_ctx *x, const yaml_node_t *n, const char *path,
                       const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* A copy of s owned by the config; NULL when out of memory. */
char *gencache__cfg_own(gencache_config *cfg, const char *s);
/* The text of a scalar node; NULL for any other node. */
const char *gencache__cfg_scalar(const yaml_node_t *n);

/* Calls fn for each pair of a mapping, with its dotted path; refuses keys that are not plain
 * strings and duplicate keys. */
typedef int (*gencache__cfg_pair_fn)(gencache__cfg_ctx *x, const char *key, yaml_node_t *kn,
                                     yaml_node_t *v, const char *path, void *arg);
int gencache__cfg_each_pair(gencache__cfg_ctx *x, yaml_node_t *map, const char *path,
                            gencache__cfg_pair_fn fn, void *arg);

/* Typed values: each returns 0, or -1 after gencache__cfg_fail(). */
int gencache__cfg_str(gencache__cfg_ctx *x, yaml_node_t *n, const char *path, const char **out);
int gencache__cfg_owned_str(gencache__cfg_ctx *x, yaml_node_t *n, const char *path,
                            const char **out);
int gencache__cfg_bool(gencache__cfg_ctx *x, yaml_node_t *n, const char *path, bool *out);
int gencache__cfg_size(gencache__cfg_ctx *x, yaml_node_t *n, const char *path, uint64_t *out);
int gencache__cfg_duration(gencache__cfg_ctx *x, yaml_node_t *n, const char *path, uint64_t *out);
int gencache__cfg_uint(gencache__cfg_ctx *x, yaml_node_t *n, const char *path, uint64_t lo,
                       uint64_t hi, unsigned *out);
/* One of names[0..n) (their index into *out); message "expected <list>". */
int gencache__cfg_enum(gencache__cfg_ctx *x, yaml_node_t *n, const char *path,
                       const char *const *names, int count, const char *expected, int *out);
int gencache__cfg_unknown(gencache__cfg_ctx *x, yaml_node_t *kn, const char *path,
                          const char *known);

/* encryption.c: the `encryption:` mapping at v into x->cfg. */
int gencache__cfg_encryption(gencache__cfg_ctx *x, yaml_node_t *v, const char *path);

/* sections.c: the top-level mapping into x->cfg, then the checks that span keys. */
int gencache__cfg_top(gencache__cfg_ctx *x, yaml_node_t *root);

/* config.c: the layers and models of cfg applied to cache; on failure, which layer (index into
 * cfg->layers, or cfg->n_layers for a model) in *bad. */
int gencache__cfg_apply(const gencache_config *cfg, gencache *cache, size_t *bad);

#endif
