/*
 * fuzz_request.c: libFuzzer target for request parsing, the one input gencache takes from every
 * client. Any byte string must either parse or be refused with an error code and a message;
 * a parsed request must give every layer a key or a clean refusal, and its canonical document must
 * hash to that key. The first input byte picks the normalization mode, so every mode is reached.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gencache.h"

static gencache_keyspace *keyspaces[5];

static void setup(void)
{
    for (int m = 0; m < 5; m++) {
        if (gencache_keyspace_new(&keyspaces[m]) != GENCACHE_OK)
            abort();
        gencache_keyspace_set_mode(keyspaces[m], NULL, (gencache_norm_mode)m);
        gencache_keyspace_add_synonym(keyspaces[m], "kitten", "cat");
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!keyspaces[0])
        setup();
    if (size == 0)
        return 0;
    const gencache_keyspace *ks = keyspaces[data[0] % 5];
    unsigned flags = (data[0] & 0x80) ? GENCACHE_REQUEST_TRUST_TENANT : 0;
    const char *json = (const char *)data + 1;
    size_t len = size - 1;

    /* Every mode over the raw bytes as a prompt. */
    for (int m = 0; m < 5; m++) {
        char *out = NULL;
        size_t out_len = 0;
        int rc = gencache_normalize((gencache_norm_mode)m, json, len, &out, &out_len);
        if (rc == GENCACHE_OK && (out == NULL || strlen(out) != out_len))
            abort();
        if (rc != GENCACHE_OK && out != NULL)
            abort();
        gencache_free(out);
    }

    gencache_request *req = NULL;
    char err[GENCACHE_ERRMSG_MAX];
    int rc = gencache_request_parse_ex(ks, json, len, flags, &req, err, sizeof err);
    if (rc != GENCACHE_OK) {
        if (req != NULL || rc >= 0)
            abort();
        return 0;
    }
    if (data[0] & 0x40)
        gencache_request_set_tenant(req, "fuzz-tenant");
    for (size_t i = 0; i < gencache_keyspace_layer_count(ks); i++) {
        const char *layer = gencache_keyspace_layer_name(ks, i);
        char key[GENCACHE_KEY_MAX];
        rc = gencache_request_key(req, layer, key, sizeof key);
        char *canon = NULL;
        size_t canon_len = 0;
        int rc2 = gencache_request_canonical(req, layer, &canon, &canon_len);
        if (rc != rc2)
            abort();
        if (rc == GENCACHE_OK) {
            if (strlen(key) != strlen(layer) + 65 || strncmp(key, layer, strlen(layer)) != 0)
                abort();
            if (memcmp(canon, "gencache-key-v1\n", 16) != 0 || strlen(canon) != canon_len)
                abort();
        } else if (rc != GENCACHE_EUNCACHEABLE ||
                   !gencache_request_uncacheable_reason(req, layer)) {
            abort();
        }
        gencache_free(canon);
    }
    gencache_request_free(req);
    return 0;
}
