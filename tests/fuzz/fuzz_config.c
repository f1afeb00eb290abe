/*
 * fuzz_config.c: libFuzzer target for gencache.yaml, a file an operator writes by hand. Any byte
 * string must either load or be refused with an error code and a "NAME:LINE: ..." message; a
 * config that loads must apply to a cache (the loader promised it would) and answer every
 * accessor.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gencache.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    gencache_config *cfg = NULL;
    char err[GENCACHE_CONFIG_ERR_MAX];
    int rc = gencache_config_parse("f.yaml", (const char *)data, size, &cfg, err, sizeof err);
    if (rc != GENCACHE_OK) {
        if (cfg || strncmp(err, "f.yaml:", 7) != 0)
            abort();
        return 0;
    }
    gencache_options o;
    gencache_options_init(&o);
    o.ghost_max_entries = 0;
    gencache *c = NULL;
    if (gencache_open_config(&c, cfg, &o) != GENCACHE_OK)
        abort();
    gencache_keyspace *ks = NULL;
    if (gencache_keyspace_from_cache(c, &ks) != GENCACHE_OK)
        abort();
    gencache_request *req = NULL;
    const char *json = "{\"model\": \"m\", \"prompt\": \"A cat\", \"seed\": 1}";
    if (gencache_request_parse(ks, json, strlen(json), 0, &req) != GENCACHE_OK)
        abort();
    char key[GENCACHE_KEY_MAX];
    for (size_t i = 0; i < gencache_keyspace_layer_count(ks); i++) {
        rc = gencache_request_key(req, gencache_keyspace_layer_name(ks, i), key, sizeof key);
        if (rc == GENCACHE_OK && gencache_key_check(c, key) != GENCACHE_OK)
            abort();
        if (rc == GENCACHE_OK)
            (void)gencache_config_preferred_match(cfg, key);
    }
    gencache_request_free(req);
    gencache_keyspace_free(ks);
    gencache_config_server s = {.struct_size = sizeof s};
    gencache_config_server_get(cfg, &s);
    gencache_config_tenant t = {.struct_size = sizeof t};
    for (size_t i = 0; gencache_config_tenant_get(cfg, i, &t) == GENCACHE_OK; i++)
        if (!t.name || !t.token)
            abort();
    (void)gencache_config_sensitive_match(cfg, "a prompt");
    gencache_close(c);
    gencache_config_free(cfg);
    return 0;
}
