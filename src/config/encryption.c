/*
 * encryption.c: the `encryption:` section of gencache.yaml (docs/config.md): where the key of
 * encryption at rest and the keys being rotated out come from. Every key is read once at load
 * time, so a missing or malformed key file is a configuration error with its line, not a
 * failure at the first write.
 */
#include <stdio.h>
#include <string.h>

#include "cfg.h"
#include "tier/crypt.h"

/* Reads one source now (to report it here) and appends it; current: it goes first. */
static int add_source(gencache__cfg_ctx *x, yaml_node_t *n, const char *path, const char *source,
                      bool current)
{
    gencache_config *c = x->cfg;
    unsigned char key[GENCACHE__CRYPT_KEY_LEN];
    char err[512];
    int rc = gencache__crypt_load_key(source, key, err, sizeof err);
    memset(key, 0, sizeof key);
    if (rc != GENCACHE_OK)
        return gencache__cfg_fail(x, n, path, "%s", err);
    if (c->n_encryption_keys == GENCACHE__CRYPT_KEYS_MAX)
        return gencache__cfg_fail(x, n, path, "at most %d keys", GENCACHE__CRYPT_KEYS_MAX);
    if (current && c->has_encryption_current)
        return gencache__cfg_fail(x, n, path, "name the current key once: key_file or key_env");
    char *own = gencache__cfg_own(c, source);
    if (!own)
        return gencache__cfg_fail(x, n, path, "out of memory");
    if (current) {
        memmove(c->encryption_keys + 1, c->encryption_keys,
                c->n_encryption_keys * sizeof c->encryption_keys[0]);
        c->encryption_keys[0] = own;
        c->has_encryption_current = true;
    } else {
        c->encryption_keys[c->n_encryption_keys] = own;
    }
    c->n_encryption_keys++;
    return 0;
}

/* An environment variable's name as a source ("env:NAME"). */
static int env_source(gencache__cfg_ctx *x, yaml_node_t *n, const char *path, bool current)
{
    const char *name = gencache__cfg_scalar(n);
    if (!name || !*name || strchr(name, '='))
        return gencache__cfg_fail(x, n, path, "expected the name of an environment variable");
    char src[512];
    if (snprintf(src, sizeof src, "env:%s", name) >= (int)sizeof src)
        return gencache__cfg_fail(x, n, path, "name too long");
    return add_source(x, n, path, src, current);
}

static int list(gencache__cfg_ctx *x, yaml_node_t *v, const char *path, bool env)
{
    if (!v || v->type != YAML_SEQUENCE_NODE)
        return gencache__cfg_fail(x, v, path, "expected a list");
    for (yaml_node_item_t *i = v->data.sequence.items.start; i < v->data.sequence.items.top; i++) {
        yaml_node_t *item = yaml_document_get_node(x->doc, *i);
        const char *s = gencache__cfg_scalar(item);
        if (env) {
            if (env_source(x, item, path, false) != 0)
                return -1;
        } else if (!s || !*s) {
            return gencache__cfg_fail(x, item, path, "expected a file path");
        } else if (add_source(x, item, path, s, false) != 0) {
            return -1;
        }
    }
    return 0;
}

static int pair(gencache__cfg_ctx *x, const char *key, yaml_node_t *kn, yaml_node_t *v,
                const char *path, void *arg)
{
    (void)arg;
    if (strcmp(key, "key_file") == 0) {
        const char *s = gencache__cfg_scalar(v);
        if (!s || !*s)
            return gencache__cfg_fail(x, v, path, "expected a file path");
        return add_source(x, v, path, s, true);
    }
    if (strcmp(key, "key_env") == 0)
        return env_source(x, v, path, true);
    if (strcmp(key, "previous_key_files") == 0)
        return list(x, v, path, false);
    if (strcmp(key, "previous_key_envs") == 0)
        return list(x, v, path, true);
    return gencache__cfg_unknown(x, kn, path,
                                 "key_file, key_env, previous_key_files, previous_key_envs");
}

int gencache__cfg_encryption(gencache__cfg_ctx *x, yaml_node_t *v, const char *path)
{
    if (gencache__cfg_each_pair(x, v, path, pair, NULL) != 0)
        return -1;
    gencache_config *c = x->cfg;
    if (!c->has_encryption_current)
        return gencache__cfg_fail(x, v, path,
                                  "needs key_file or key_env (the key new records are sealed "
                                  "with)");
    /* The keyring the cache will build: refuses one key listed twice. */
    gencache__crypt *ring = NULL;
    int rc = gencache__crypt_new(NULL, NULL, c->encryption_keys, c->n_encryption_keys, &ring);
    gencache__crypt_free(ring);
    if (rc != GENCACHE_OK)
        return gencache__cfg_fail(x, v, path, "the same key is listed twice");
    return 0;
}
