/*
 * config_print.c: the summary `gencached --check-config` prints: the effective settings after
 * the file and the flags, and the layers as the cache's registry holds them once the file's
 * layers are applied (so what is printed is what would run).
 */
#include <inttypes.h>
#include <stdio.h>

#include "config.h"

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

static void print_layers(gencache *cache, FILE *out)
{
    static const char *const scopes[] = {"global", "tenant", "session"};
    fprintf(out, "layers:\n");
    for (size_t i = 0; i < gencache_layer_count(cache); i++) {
        gencache_layer_options l;
        gencache_layer_options_init(&l);
        if (gencache_layer_get(cache, gencache_layer_name(cache, i), &l) != GENCACHE_OK)
            continue;
        fprintf(out, "  %s: fields [", l.name);
        for (size_t f = 0; f < l.n_fields; f++)
            fprintf(out, "%s%s", f ? ", " : "", l.fields[f]);
        fprintf(out, "] scope %s ttl %" PRIu64 "s%s policy %s%s", scopes[l.scope], l.ttl_ms / 1000,
                l.sliding_ttl ? " (sliding)" : "", l.write_through ? "write_through" : "write_back",
                l.shared ? "" : " not shared");
        if (l.prompt_normalization >= 0)
            fprintf(out, " prompt_normalization %s",
                    gencache_norm_mode_name((gencache_norm_mode)l.prompt_normalization));
        static const char *const evictions[] = {"tier", "lru", "gdsf", "s3fifo"};
        int ev = l.eviction >= GENCACHE_EVICTION_DEFAULT && l.eviction <= GENCACHE_EVICTION_S3FIFO
                     ? l.eviction
                     : GENCACHE_EVICTION_DEFAULT;
        fprintf(out, " eviction %s image_match %s\n", evictions[ev + 1],
                l.image_match == GENCACHE_IMAGE_MATCH_PERCEPTUAL ? "perceptual" : "exact");
    }
}

void gcd_config_print(const gcd_config *cfg, gencache *cache, FILE *out)
{
    const struct gcd_config_ext *e = cfg->ext;
    const gencache_config *lib = e ? e->lib : NULL;
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
    print_layers(cache, out);
    gencache_norm_mode mode;
    const char *model;
    for (size_t i = 0; (model = gencache_config_model(lib, i, &mode)); i++)
        fprintf(out, "model %s: prompt_normalization %s\n", model, gencache_norm_mode_name(mode));
    if (!cfg->n_tenants)
        fprintf(out, "tenants: none (no authentication; loopback only)\n");
    else
        fprintf(out, "tenants: %zu\n", cfg->n_tenants);
    for (size_t i = 0; i < cfg->n_tenants; i++) {
        gencache_config_tenant t = {.struct_size = sizeof t};
        if (gencache_config_tenant_get(lib, i, &t) != GENCACHE_OK)
            continue;
        fprintf(out, "  %s: priority %s%s, ", t.name, prio[t.priority], t.admin ? ", admin" : "");
        print_size(out, "quota ", t.quota_bytes, "none");
        fprintf(out, "\n");
    }
    const char *p;
    for (size_t i = 0; (p = gencache_config_preferred(lib, i)); i++)
        fprintf(out, "preferred: %s\n", p);
    size_t n_sensitive = 0;
    while (gencache_config_sensitive(lib, n_sensitive))
        n_sensitive++;
    fprintf(out, "sensitive rules: %zu\n", n_sensitive);
    fprintf(out, "upstream: %s", cfg->upstream_url ? cfg->upstream_url : "none");
    if (cfg->upstream_timeout_ms)
        fprintf(out, ", timeout %ums", cfg->upstream_timeout_ms);
    fprintf(out, "\n");
    fprintf(out, "memory_pressure: warn at %.0f%%\n",
            (cfg->pressure_warn_ratio > 0 ? cfg->pressure_warn_ratio : 0.85) * 100);
    gencache_match_options guard = {.struct_size = sizeof guard};
    if (gencache_reuse_get_guard(cache, &guard) == GENCACHE_OK)
        fprintf(out,
                "perceptual: phash_radius %u, dhash_radius %u, aspect_tolerance %g, min_detail %u, "
                "combined_radius %u\n",
                guard.phash_radius, guard.dhash_radius, guard.aspect_tolerance, guard.min_detail,
                guard.combined_radius);
    fprintf(out, "similar_prompt: radius %u\n", gencache_reuse_get_prompt_radius(cache));
    print_size(out, "limits: max_body ", cfg->max_body, "default");
    fprintf(out, ", max_connections %u, threads %u, timeout %us", cfg->max_connections,
            cfg->threads, cfg->timeout_s);
    fprintf(out, ", header_timeout %ums, max_connections_per_client %u%s\n", cfg->header_timeout_ms,
            cfg->max_per_client, cfg->max_per_client ? "" : " (no cap)");
    print_size(out, "limits: max_inflight_bytes ", cfg->max_inflight, "default");
    print_size(out, ", prewarm_max_bytes ", cfg->prewarm_max_bytes, "default");
    fprintf(out, "\n");
    fprintf(out, "http: fast_get %s\n", cfg->fast_get ? "true" : "false");
}
