/*
 * config_apply.c: puts a loaded gencache.yaml into effect (layers into the cache and the
 * daemon's keyspace, normalization modes) and prints the summary of --check-config. A layer's
 * recipe in the cache (TTL, scope, write policy) and in the keyspace (fields, scope) must agree,
 * so a scope given without fields re-sets the layer's built-in fields with the new scope.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "config.h"

/* The keyspace's built-in recipes (gencache_keyspace_new(), DESIGN.md section 2). */
static const char *const f_result[] = {"*"};
static const char *const f_image_latent[] = {"model",  "image!", "width",
                                             "height", "crop",   "rotation"};
static const char *const f_text_embedding[] = {"model", "prompt", "negative_prompt"};
static const char *const f_condition[] = {"model", "prompt", "negative_prompt",
                                          "image", "width",  "height"};
static const char *const f_session[] = {"name"};
static const struct {
    const char *name;
    const char *const *fields;
    size_t n;
} builtin[] = {
    {"result", f_result, 1},
    {"image_latent", f_image_latent, 6},
    {"text_embedding", f_text_embedding, 3},
    {"condition", f_condition, 6},
    {"session", f_session, 1},
};

bool gcd_config_builtin_layer(const char *name)
{
    for (size_t i = 0; i < sizeof builtin / sizeof builtin[0]; i++)
        if (strcmp(builtin[i].name, name) == 0)
            return true;
    return false;
}

int gcd_config_apply(const gcd_config *cfg, gencache *cache, gencache_keyspace *ks)
{
    const struct gcd_config_ext *e = cfg->ext;
    if (!e)
        return 0;
    const gcd_layer_cfg *moded = NULL;
    for (size_t i = 0; i < e->n_layers; i++) {
        const gcd_layer_cfg *l = &e->layers[i];
        gencache_layer_options lo;
        gencache_layer_options_init(&lo);
        if (gencache_layer_get(cache, l->name, &lo) != 0)
            gencache_layer_options_init(&lo);
        lo.name = l->name;
        if (l->has_scope)
            lo.scope = l->scope;
        if (l->has_ttl)
            lo.ttl_ms = l->ttl_ms;
        if (l->has_policy)
            lo.write_through = l->write_through;
        int err = gencache_layer_define(cache, &lo);
        if (err != 0) {
            gcd_log(GENCACHE_LOG_ERROR, "%s:%d: layers.%s: cannot define the layer: %s",
                    cfg->config_path, l->line, l->name, gencache_strerror(err));
            return -1;
        }
        const char *const *fields = (const char *const *)l->fields;
        size_t n = l->n_fields;
        for (size_t b = 0; !fields && b < sizeof builtin / sizeof builtin[0]; b++)
            if (strcmp(builtin[b].name, l->name) == 0) {
                fields = builtin[b].fields;
                n = builtin[b].n;
            }
        if (fields && (l->fields || l->has_scope)) {
            err = gencache_keyspace_set_layer(ks, l->name, fields, n, lo.scope);
            if (err != 0) {
                gcd_log(GENCACHE_LOG_ERROR, "%s:%d: layers.%s.fields: %s", cfg->config_path,
                        l->line, l->name,
                        err == GENCACHE_EINVAL ? "a field name is not valid (1-64 printable "
                                                 "characters without '=', '*' inside, '!' only at "
                                                 "the end)"
                                               : gencache_strerror(err));
                return -1;
            }
        }
        if (l->has_mode)
            moded = l;
    }
    if (moded && gencache_keyspace_set_mode(ks, NULL, moded->mode) != 0)
        return -1;
    for (size_t i = 0; i < e->n_models; i++)
        if (gencache_keyspace_set_mode(ks, e->models[i].name, e->models[i].mode) != 0) {
            gcd_log(GENCACHE_LOG_ERROR, "models.%s: cannot set its normalization mode",
                    e->models[i].name);
            return -1;
        }
    return 0;
}

static void print_size(FILE *out, const char *label, uint64_t v, const char *none)
{
    if (!v)
        fprintf(out, "%s%s", label, none);
    else if (v % (1ull << 30) == 0)
        fprintf(out, "%s%" PRIu64 "G", label, v >> 30);
    else if (v % (1ull << 20) == 0)
        fprintf(out, "%s%" PRIu64 "M", label, v >> 20);
    else
        fprintf(out, "%s%" PRIu64, label, v);
}

void gcd_config_print(const gcd_config *cfg, FILE *out)
{
    const struct gcd_config_ext *e = cfg->ext;
    static const char *const scopes[] = {"global", "tenant", "session"};
    static const char *const prio[] = {"high", "normal", "batch"};
    fprintf(out, "%s: ok\n", cfg->config_path ? cfg->config_path : "(built-in defaults)");
    fprintf(out, "listen: %s\n", cfg->listen);
    fprintf(out, "tiers:\n");
    print_size(out, "  memory: max_bytes ", cfg->max_memory, "1G (default)");
    fprintf(out, ", max_entries %" PRIu64 "\n", e ? e->mem_max_entries : 0);
    if (e && e->disk_disabled) {
        fprintf(out, "  disk: disabled\n");
    } else {
        fprintf(out, "  disk: %s, ", cfg->data_dir);
        print_size(out, "max_bytes ", cfg->max_disk, "10G (default)");
        fprintf(out, ", max_entries %" PRIu64 "\n", e ? e->disk_max_entries : 0);
    }
    fprintf(out, "  redis: %s\n", cfg->redis_url ? cfg->redis_url : "disabled");
    fprintf(out, "  gpu: disabled\n");
    fprintf(out, "layers:%s\n", e && e->n_layers ? "" : " built-in");
    for (size_t i = 0; e && i < e->n_layers; i++) {
        const gcd_layer_cfg *l = &e->layers[i];
        fprintf(out, "  %s:", l->name);
        if (l->fields) {
            fprintf(out, " fields [");
            for (size_t f = 0; f < l->n_fields; f++)
                fprintf(out, "%s%s", f ? ", " : "", l->fields[f]);
            fprintf(out, "]");
        }
        if (l->has_scope)
            fprintf(out, " scope %s", scopes[l->scope]);
        if (l->has_ttl)
            fprintf(out, " ttl %" PRIu64 "s", l->ttl_ms / 1000);
        if (l->has_policy)
            fprintf(out, " policy %s", l->write_through ? "write_through" : "write_back");
        if (l->has_mode)
            fprintf(out, " prompt_normalization %s", gencache_norm_mode_name(l->mode));
        if (l->image_match)
            fprintf(out, " image_match %s (not applied)", l->image_match);
        fprintf(out, "\n");
    }
    for (size_t i = 0; e && i < e->n_models; i++)
        fprintf(out, "model %s: prompt_normalization %s\n", e->models[i].name,
                gencache_norm_mode_name(e->models[i].mode));
    if (!cfg->n_tenants)
        fprintf(out, "tenants: none (no authentication; loopback only)\n");
    else
        fprintf(out, "tenants: %zu\n", cfg->n_tenants);
    for (size_t i = 0; i < cfg->n_tenants; i++) {
        const gcd_tenant *t = &cfg->tenants[i];
        fprintf(out, "  %s: priority %s%s, ", t->name, prio[t->priority],
                t->admin ? ", admin" : "");
        print_size(out, "quota ", t->quota_bytes, "none");
        fprintf(out, "\n");
    }
    for (size_t i = 0; e && i < e->n_preferred; i++)
        fprintf(out, "preferred: %s\n", e->preferred[i]);
    fprintf(out, "sensitive rules: %zu\n", e ? e->n_sensitive : 0);
    fprintf(out, "upstream: %s", cfg->upstream_url ? cfg->upstream_url : "none");
    if (cfg->upstream_timeout_ms)
        fprintf(out, ", timeout %ums", cfg->upstream_timeout_ms);
    fprintf(out, "\n");
    fprintf(out, "memory_pressure: warn at %.0f%%\n",
            (cfg->pressure_warn_ratio > 0 ? cfg->pressure_warn_ratio : 0.85) * 100);
    print_size(out, "limits: max_body ", cfg->max_body, "default");
    fprintf(out, ", max_connections %u, threads %u, timeout %us\n", cfg->max_connections,
            cfg->threads, cfg->timeout_s);
}
