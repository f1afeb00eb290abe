/*
 * config.h: the daemon's view of gencache.yaml. The library loads and checks the file
 * (gencache_config_load(), include/gencache/config.h); config.c copies what the daemon's
 * settings need into gcd_config and keeps the library object for the rest (layers, models,
 * preferred keys, sensitive prompts).
 */
#ifndef GENCACHED_CONFIG_H
#define GENCACHED_CONFIG_H

#include <stdio.h>

#include <jansson.h>

#include "gencached.h"

struct gcd_config_ext {
    gencache_config *lib;                       /* the loaded file */
    uint64_t mem_max_entries, disk_max_entries; /* 0: the default */
    bool disk_disabled;
};

/* Loads `path` into cfg (whose fields hold the defaults): every value the file sets replaces the
 * default. Returns 0, or -1 with "FILE:LINE: key.path: what is wrong" in err. */
int gcd_config_load(const char *path, gcd_config *cfg, char *err, size_t err_size);
/* Frees what gcd_config_load() allocated. */
void gcd_config_free(gcd_config *cfg);
/* Prints a human summary of the effective configuration; cache is one the config was applied
 * to (its layers are printed). */
void gcd_config_print(const gcd_config *cfg, gencache *cache, FILE *out);
/* Opens the cache with opts and applies the file's layers and models to it (the cache's
 * keyspace follows). Returns 0, or -1 after logging why to lg. */
int gcd_config_open_cache(const gcd_config *cfg, const gencache_options *opts, const gcd_logger *lg,
                          gencache **out);
/* stats.c's view of one tenant (tenancy.c): {"tenant", "priority", "layers": {name: counters},
 * "usage": {bytes, entries, quota_bytes}}; NULL for an unknown tenant. */
json_t *gcd_tenancy_stats_json(gcd_server *srv, const char *tenant);

#endif
