/*
 * sections.c: the keys of gencache.yaml (docs/config.md), one function per section, and the
 * checks that span sections: layers are defined in a scratch cache, so a field name the key
 * module refuses is reported at load time with its line, and `preferred:` patterns must name a
 * layer that exists once the file's layers are defined.
 */
#include <ctype.h>
#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cfg.h"

#define fail      gencache__cfg_fail
#define scalar    gencache__cfg_scalar
#define each_pair gencache__cfg_each_pair
#define unknown   gencache__cfg_unknown

/* ---- tiers ---------------------------------------------------------------------------------- */

static int tier_limits(gencache__cfg_ctx *x, const char *key, yaml_node_t *v, const char *path,
                       uint64_t *max_bytes, bool *has_bytes, uint64_t *max_entries,
                       bool *has_entries)
{
    if (strcmp(key, "max_bytes") == 0) {
        *has_bytes = true;
        if (gencache__cfg_size(x, v, path, max_bytes) != 0)
            return -1;
        /* The C API reads 0 as "no limit"; a config that means that should say so plainly
         * rather than get it (or the default) from a zero. */
        if (*max_bytes == 0)
            return fail(x, v, path, "must be above 0 (omit the key for the default)");
        return 0;
    }
    *has_entries = true;
    return gencache__cfg_size(x, v, path, max_entries);
}

/* tiers.redis.cluster: a list of HOST:PORT seed nodes of a Redis Cluster, kept as the URL
 * redis-cluster://HOST:PORT,... that the library opens. */
static int redis_cluster_seeds(gencache__cfg_ctx *x, yaml_node_t *v, const char *path,
                               gencache_config *c)
{
    if (c->redis_url)
        return fail(x, v, path, "give either url or cluster, not both");
    if (v->type != YAML_SEQUENCE_NODE || v->data.sequence.items.start == v->data.sequence.items.top)
        return fail(x, v, path, "expected a list of HOST:PORT seed nodes");
    char url[4096] = GENCACHE__REDIS_CLUSTER_SCHEME;
    size_t len = strlen(url);
    for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top;
         it++) {
        yaml_node_t *n = yaml_document_get_node(x->doc, *it);
        const char *s = NULL;
        if (!n || gencache__cfg_str(x, n, path, &s) != 0)
            return -1;
        const char *cursor = s;
        char host[256];
        long port;
        size_t sl = strlen(s);
        if (strncmp(s, GENCACHE__REDIS_CLUSTER_SCHEME, sizeof GENCACHE__REDIS_CLUSTER_SCHEME - 1) ==
                0 ||
            strchr(s, ',') ||
            gencache__redis_cluster_url_next(&cursor, host, sizeof host, &port) != GENCACHE_OK ||
            *cursor)
            return fail(x, n, path, "expected HOST:PORT (port 1-65535)");
        if (len + sl + 2 >= sizeof url)
            return fail(x, n, path, "too many seed nodes");
        if (it != v->data.sequence.items.start)
            url[len++] = ',';
        memcpy(url + len, s, sl + 1);
        len += sl;
    }
    if (!(c->redis_url = gencache__cfg_own(c, url)))
        return fail(x, v, path, "out of memory");
    return 0;
}

static int tier_pair(gencache__cfg_ctx *x, const char *key, yaml_node_t *kn, yaml_node_t *v,
                     const char *path, void *arg)
{
    const char *tier = arg;
    gencache_config *c = x->cfg;
    bool b;
    bool limit = strcmp(key, "max_bytes") == 0 || strcmp(key, "max_entries") == 0;
    if (strcmp(tier, "memory") == 0) {
        if (limit)
            return tier_limits(x, key, v, path, &c->mem_max_bytes, &c->has_mem_max_bytes,
                               &c->mem_max_entries, &c->has_mem_max_entries);
        if (strcmp(key, "enabled") == 0) {
            if (gencache__cfg_bool(x, v, path, &b) != 0)
                return -1;
            return b ? 0 : fail(x, v, path, "the memory tier cannot be disabled");
        }
        if (strcmp(key, "max_pinned_bytes") == 0) {
            if (gencache__cfg_size(x, v, path, &c->mem_max_pinned_bytes) != 0)
                return -1;
            return c->mem_max_pinned_bytes ? 0
                                           : fail(x, v, path,
                                                  "must be above 0 (omit the key "
                                                  "for the default: half of max_bytes)");
        }
        if (strcmp(key, "policy") == 0) {
            static const char *const names[] = {"lru", "gdsf", "s3fifo"};
            int i;
            if (gencache__cfg_enum(x, v, path, names, 3, "lru, gdsf or s3fifo", &i) != 0)
                return -1;
            c->mem_policy = (gencache_eviction)i;
            return (c->has_mem_policy = true), 0;
        }
        if (strcmp(key, "mrc_sample_rate") == 0) {
            const char *s = scalar(v);
            char *end = NULL;
            errno = 0;
            double r = s ? strtod(s, &end) : 0;
            if (!s || !*s || *end || errno || !(r >= 0.0 && r <= 1.0))
                return fail(x, v, path, "expected a share from 0 (no curve) to 1, like 0.0625");
            c->mrc_sample_rate = r;
            return (c->has_mrc_sample_rate = true), 0;
        }
        return unknown(x, kn, path,
                       "max_bytes, max_entries, max_pinned_bytes, enabled, policy, "
                       "mrc_sample_rate");
    }
    if (strcmp(tier, "disk") == 0) {
        if (limit)
            return tier_limits(x, key, v, path, &c->disk_max_bytes, &c->has_disk_max_bytes,
                               &c->disk_max_entries, &c->has_disk_max_entries);
        if (strcmp(key, "enabled") == 0) {
            if (gencache__cfg_bool(x, v, path, &b) != 0)
                return -1;
            c->disk_disabled = !b;
            return 0;
        }
        return unknown(x, kn, path, "max_bytes, max_entries, enabled");
    }
    if (strcmp(tier, "redis") == 0) {
        if (strcmp(key, "url") == 0) {
            const char *s = NULL;
            if (gencache__cfg_str(x, v, path, &s) != 0)
                return -1;
            char host[256];
            long port, db;
            if (gencache__redis_url_split(s, host, sizeof host, &port, &db) != GENCACHE_OK)
                return fail(x, v, path,
                            "expected redis://HOST[:PORT][/DB] (port 1-65535, db 0-100000)");
            if (c->redis_url)
                return fail(x, v, path, "give either url or cluster, not both");
            return gencache__cfg_owned_str(x, v, path, &c->redis_url);
        }
        if (strcmp(key, "cluster") == 0)
            return redis_cluster_seeds(x, v, path, c);
        if (strcmp(key, "bloom_fp_rate") == 0) {
            const char *s = scalar(v);
            char *end = NULL;
            errno = 0;
            double r = s ? strtod(s, &end) : 0;
            if (!s || !*s || *end || errno || !(r > 0.0 && r <= 0.5))
                return fail(x, v, path, "expected a rate above 0 and at most 0.5, like 0.01");
            c->redis_bloom_fp_rate = r;
            return 0;
        }
        if (strcmp(key, "bloom_capacity") == 0) {
            unsigned cap = 0;
            if (gencache__cfg_uint(x, v, path, 1, 4000000000u, &cap) != 0)
                return -1;
            c->redis_bloom_capacity = cap;
            return 0;
        }
        if (strcmp(key, "timeout_ms") == 0)
            return gencache__cfg_uint(x, v, path, 1, 60000, &c->redis_timeout_ms);
        if (strcmp(key, "max_value_bytes") == 0) {
            c->has_redis_max_value_bytes = true;
            return gencache__cfg_size(x, v, path, &c->redis_max_value_bytes);
        }
        if (strcmp(key, "enabled") == 0) {
            if (gencache__cfg_bool(x, v, path, &b) != 0)
                return -1;
            c->redis_disabled = !b;
            return 0;
        }
        return unknown(x, kn, path,
                       "enabled, url, cluster, timeout_ms, max_value_bytes, bloom_fp_rate, "
                       "bloom_capacity");
    }
    /* gpu: there is no GPU tier in this build; its keys are accepted only switched off. */
    if (strcmp(key, "enabled") == 0) {
        if (gencache__cfg_bool(x, v, path, &b) != 0)
            return -1;
        return b ? fail(x, v, path, "this build has no GPU tier; set enabled: false") : 0;
    }
    if (limit) {
        uint64_t ignored;
        return gencache__cfg_size(x, v, path, &ignored);
    }
    return unknown(x, kn, path, "enabled, max_bytes, max_entries");
}

static int tiers_pair(gencache__cfg_ctx *x, const char *key, yaml_node_t *kn, yaml_node_t *v,
                      const char *path, void *arg)
{
    (void)arg;
    static const char *const names[] = {"memory", "disk", "redis", "gpu"};
    for (size_t i = 0; i < 4; i++) {
        if (strcmp(key, names[i]) != 0)
            continue;
        if (each_pair(x, v, path, tier_pair, (void *)names[i]) != 0)
            return -1;
        /* redis: enabled: false wins over a url; enabled: true needs one. */
        if (i == 2 && !x->cfg->redis_disabled && !x->cfg->redis_url)
            for (yaml_node_pair_t *p = v->data.mapping.pairs.start; p < v->data.mapping.pairs.top;
                 p++)
                if (strcmp(scalar(yaml_document_get_node(x->doc, p->key)), "enabled") == 0)
                    return fail(x, yaml_document_get_node(x->doc, p->value), "tiers.redis.enabled",
                                "the redis tier needs a url");
        return 0;
    }
    return unknown(x, kn, path, "memory, disk, redis, gpu");
}

/* ---- layers and models ---------------------------------------------------------------------- */

static bool layer_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 32)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_'))
            return false;
    return true;
}

static int get_mode(gencache__cfg_ctx *x, yaml_node_t *n, const char *path, gencache_norm_mode *out)
{
    const char *s = scalar(n);
    if (!s || gencache_norm_mode_parse(s, out) != GENCACHE_OK)
        return fail(x, n, path, "expected exact, safe, clip, tokens or aggressive");
    return 0;
}

static int layer_fields(gencache__cfg_ctx *x, gencache__cfg_layer *l, yaml_node_t *v,
                        const char *path)
{
    if (!v || v->type != YAML_SEQUENCE_NODE)
        return fail(x, v, path, "expected a list of request field names, like [model, prompt]");
    size_t n = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
    if (n == 0)
        return fail(x, v, path, "a layer needs at least one field");
    free(l->fields);
    l->n_fields = 0;
    l->fields = calloc(n, sizeof *l->fields);
    if (!l->fields)
        return fail(x, v, path, "out of memory");
    l->fields_line = (int)v->start_mark.line + 1;
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *f = yaml_document_get_node(x->doc, v->data.sequence.items.start[i]);
        const char *s = NULL;
        if (gencache__cfg_owned_str(x, f, path, &s) != 0)
            return -1;
        l->fields[l->n_fields++] = (char *)s;
    }
    return 0;
}

static int layer_pair(gencache__cfg_ctx *x, const char *key, yaml_node_t *kn, yaml_node_t *v,
                      const char *path, void *arg)
{
    gencache__cfg_layer *l = arg;
    int i;
    if (strcmp(key, "fields") == 0)
        return layer_fields(x, l, v, path);
    if (strcmp(key, "scope") == 0) {
        static const char *const names[] = {"global", "tenant", "session"};
        if (gencache__cfg_enum(x, v, path, names, 3, "global, tenant or session", &i) != 0)
            return -1;
        l->scope = (gencache_scope)i;
        return (l->has_scope = true), 0;
    }
    if (strcmp(key, "ttl") == 0)
        return (l->has_ttl = true), gencache__cfg_duration(x, v, path, &l->ttl_ms);
    if (strcmp(key, "sliding_ttl") == 0)
        return (l->has_sliding = true), gencache__cfg_bool(x, v, path, &l->sliding);
    if (strcmp(key, "shared") == 0)
        return (l->has_shared = true), gencache__cfg_bool(x, v, path, &l->shared);
    if (strcmp(key, "policy") == 0) {
        /* A layer's policy is its write policy or its eviction policy: the words differ. */
        static const char *const names[] = {"write_back", "write_through", "lru", "gdsf", "s3fifo"};
        if (gencache__cfg_enum(x, v, path, names, 5,
                               "write_back, write_through, lru, gdsf or s3fifo", &i) != 0)
            return -1;
        if (i >= 2) {
            l->eviction = (gencache_eviction)(i - 2);
            return (l->has_eviction = true), 0;
        }
        l->write_through = i == 1;
        return (l->has_policy = true), 0;
    }
    if (strcmp(key, "prompt_normalization") == 0)
        return (l->has_mode = true), get_mode(x, v, path, &l->mode);
    if (strcmp(key, "eviction") == 0) {
        static const char *const names[] = {"lru", "gdsf", "s3fifo"};
        if (gencache__cfg_enum(x, v, path, names, 3, "lru, gdsf or s3fifo", &i) != 0)
            return -1;
        l->eviction = (gencache_eviction)i;
        return (l->has_eviction = true), 0;
    }
    if (strcmp(key, "image_match") == 0) {
        static const char *const names[] = {"exact", "perceptual"};
        if (gencache__cfg_enum(x, v, path, names, 2, "exact or perceptual", &i) != 0)
            return -1;
        l->image_match = (gencache_image_match_mode)i;
        return (l->has_image_match = true), 0;
    }
    return unknown(x, kn, path,
                   "fields, scope, ttl, sliding_ttl, policy, shared, prompt_normalization, "
                   "eviction, image_match");
}

static int layers_pair(gencache__cfg_ctx *x, const char *key, yaml_node_t *kn, yaml_node_t *v,
                       const char *path, void *arg)
{
    (void)arg;
    gencache_config *c = x->cfg;
    if (!layer_name_ok(key))
        return fail(x, kn, path, "a layer name is 1-32 characters of a-z, 0-9 and _");
    if (c->n_layers == GENCACHE_MAX_LAYERS)
        return fail(x, kn, path, "at most %d layers", GENCACHE_MAX_LAYERS);
    gencache__cfg_layer *nl = realloc(c->layers, (c->n_layers + 1) * sizeof *nl);
    if (!nl)
        return fail(x, kn, path, "out of memory");
    c->layers = nl;
    gencache__cfg_layer *l = &nl[c->n_layers++];
    memset(l, 0, sizeof *l);
    l->line = (int)kn->start_mark.line + 1;
    if (!(l->name = gencache__cfg_own(c, key)))
        return fail(x, kn, path, "out of memory");
    const char *s = scalar(v);
    if (s && !*s)
        return 0; /* "name:" alone: keep the layer as it is */
    return each_pair(x, v, path, layer_pair, l);
}

static int model_pair(gencache__cfg_ctx *x, const char *key, yaml_node_t *kn, yaml_node_t *v,
                      const char *path, void *arg)
{
    gencache__cfg_model *m = arg;
    if (strcmp(key, "prompt_normalization") == 0)
        return get_mode(x, v, path, &m->mode);
    return unknown(x, kn, path, "prompt_normalization");
}

static int models_pair(gencache__cfg_ctx *x, const char *key, yaml_node_t *kn, yaml_node_t *v,
                       const char *path, void *arg)
{
    (void)arg;
    gencache_config *c = x->cfg;
    gencache__cfg_model *nm = realloc(c->models, (c->n_models + 1) * sizeof *nm);
    if (!nm)
        return fail(x, kn, path, "out of memory");
    c->models = nm;
    gencache__cfg_model *m = &nm[c->n_models++];
    m->mode = GENCACHE_NORM_SAFE;
    if (!(m->name = gencache__cfg_own(c, key)))
        return fail(x, kn, path, "out of memory");
    return each_pair(x, v, path, model_pair, m);
}

/* ---- tenants -------------------------------------------------------------------------------- */

static int tenant_pair(gencache__cfg_ctx *x, const char *key, yaml_node_t *kn, yaml_node_t *v,
                       const char *path, void *arg)
{
    gencache_config_tenant *t = arg;
    const char *s = NULL;
    if (strcmp(key, "name") == 0) {
        if (gencache__cfg_owned_str(x, v, path, &s) != 0)
            return -1;
        if (strlen(s) > 64)
            return fail(x, v, path, "at most 64 characters");
        for (const char *p = s; *p; p++)
            if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-' && *p != '.')
                return fail(x, v, path, "a tenant name is letters, digits, '_', '-' and '.'");
        t->name = s;
        return 0;
    }
    if (strcmp(key, "token") == 0) {
        if (gencache__cfg_owned_str(x, v, path, &s) != 0)
            return -1;
        if (strlen(s) < 16)
            return fail(x, v, path, "a token needs at least 16 characters");
        for (const char *p = s; *p; p++)
            if ((unsigned char)*p <= 0x20 || (unsigned char)*p > 0x7e)
                return fail(x, v, path, "a token is printable ASCII without spaces");
        t->token = s;
        return 0;
    }
    if (strcmp(key, "priority") == 0) {
        static const char *const names[] = {"high", "normal", "batch"};
        int i;
        if (gencache__cfg_enum(x, v, path, names, 3, "high, normal or batch", &i) != 0)
            return -1;
        t->priority = (gencache_priority)i;
        return 0;
    }
    if (strcmp(key, "quota_bytes") == 0)
        return gencache__cfg_size(x, v, path, &t->quota_bytes);
    if (strcmp(key, "admin") == 0) {
        bool b;
        if (gencache__cfg_bool(x, v, path, &b) != 0)
            return -1;
        t->admin = b;
        return 0;
    }
    return unknown(x, kn, path, "name, token, priority, quota_bytes, admin");
}

static int parse_tenants(gencache__cfg_ctx *x, yaml_node_t *v, const char *path)
{
    if (!v || v->type != YAML_SEQUENCE_NODE)
        return fail(x, v, path, "expected a list of {name, token, priority, quota_bytes}");
    size_t n = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
    gencache_config *c = x->cfg;
    free(c->tenants);
    c->n_tenants = 0;
    c->tenants = calloc(n ? n : 1, sizeof *c->tenants);
    if (!c->tenants)
        return fail(x, v, path, "out of memory");
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *tn = yaml_document_get_node(x->doc, v->data.sequence.items.start[i]);
        char sub[64];
        snprintf(sub, sizeof sub, "%s[%zu]", path, i);
        gencache_config_tenant *t = &c->tenants[c->n_tenants++];
        t->priority = GENCACHE_PRIORITY_NORMAL;
        if (each_pair(x, tn, sub, tenant_pair, t) != 0)
            return -1;
        if (!t->name || !t->token)
            return fail(x, tn, sub, "a tenant needs a name and a token");
        for (size_t j = 0; j < i; j++) {
            if (strcmp(c->tenants[j].name, t->name) == 0)
                return fail(x, tn, sub, "tenant name '%s' is used twice", t->name);
            if (strcmp(c->tenants[j].token, t->token) == 0)
                return fail(x, tn, sub, "two tenants share a token");
        }
    }
    return 0;
}

/* ---- lists ---------------------------------------------------------------------------------- */

/* A list of strings into *out (n_out of them); nodes receives each item's node (freed by the
 * caller). */
static int parse_list(gencache__cfg_ctx *x, yaml_node_t *v, const char *path, char ***out,
                      size_t *n_out, yaml_node_t ***nodes)
{
    if (!v || v->type != YAML_SEQUENCE_NODE)
        return fail(x, v, path, "expected a list of strings");
    size_t n = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
    free(*out);
    *n_out = 0;
    *out = calloc(n ? n : 1, sizeof **out);
    *nodes = calloc(n ? n : 1, sizeof **nodes);
    if (!*out || !*nodes)
        return fail(x, v, path, "out of memory");
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *item = yaml_document_get_node(x->doc, v->data.sequence.items.start[i]);
        const char *s = NULL;
        if (gencache__cfg_owned_str(x, item, path, &s) != 0)
            return -1;
        (*out)[i] = (char *)s;
        (*nodes)[i] = item;
        *n_out = i + 1;
    }
    return 0;
}

static int parse_preferred(gencache__cfg_ctx *x, yaml_node_t *v, const char *path)
{
    yaml_node_t **nodes = NULL;
    gencache_config *c = x->cfg;
    int rc = parse_list(x, v, path, &c->preferred, &c->n_preferred, &nodes);
    free(c->preferred_line);
    c->preferred_line = rc == 0 ? calloc(c->n_preferred ? c->n_preferred : 1, sizeof(int)) : NULL;
    if (rc == 0 && !c->preferred_line)
        rc = fail(x, v, path, "out of memory");
    for (size_t i = 0; rc == 0 && i < c->n_preferred; i++) {
        const char *p = c->preferred[i];
        const char *slash = strchr(p, '/');
        if (!slash || slash == p)
            rc = fail(x, nodes[i], path, "'%s': expected <layer>/<hex or pattern>, like result/*",
                      p);
        c->preferred_line[i] = (int)nodes[i]->start_mark.line + 1;
    }
    free(nodes);
    return rc;
}

/* True when a repetition operator directly follows another ("a++", "a*{2}"): undefined in POSIX
 * EREs, and glibc's regcomp() can take unbounded memory on a run of them. Bracket expressions
 * and escaped characters are skipped. */
static bool stacked_repetition(const char *re)
{
    bool after_rep = false;
    for (const char *p = re; *p; p++) {
        if (*p == '\\' && p[1]) {
            p++;
            after_rep = false;
        } else if (*p == '[') {
            p += p[1] == '^' ? 2 : 1;
            if (*p == ']')
                p++;
            while (*p && *p != ']')
                p++;
            if (!*p)
                return false; /* regcomp reports the unbalanced bracket */
            after_rep = false;
        } else if (*p == '*' || *p == '+' || *p == '?' || *p == '{') {
            if (after_rep)
                return true;
            if (*p == '{') {
                while (p[1] && p[1] != '}')
                    p++;
                if (p[1])
                    p++; /* on the '}' */
            }
            after_rep = true;
        } else {
            after_rep = false;
        }
    }
    return false;
}

#define SENSITIVE_MAX 1024 /* longest rule, bytes */

static int parse_sensitive(gencache__cfg_ctx *x, yaml_node_t *v, const char *path)
{
    yaml_node_t **nodes = NULL;
    gencache_config *c = x->cfg;
    if (c->sensitive) { /* a duplicate key is refused earlier; this keeps the invariant */
        for (size_t i = 0; i < c->n_sensitive; i++)
            regfree(&c->sensitive[i]);
        free(c->sensitive);
        c->sensitive = NULL;
    }
    int rc = parse_list(x, v, path, &c->sensitive_src, &c->n_sensitive, &nodes);
    size_t want = c->n_sensitive;
    c->n_sensitive = 0; /* counts the compiled ones, which are the ones freed */
    if (rc == 0 && !(c->sensitive = calloc(want ? want : 1, sizeof *c->sensitive)))
        rc = fail(x, v, path, "out of memory");
    for (; rc == 0 && c->n_sensitive < want; c->n_sensitive++) {
        const char *src = c->sensitive_src[c->n_sensitive];
        if (strlen(src) > SENSITIVE_MAX || stacked_repetition(src)) {
            rc = fail(x, nodes[c->n_sensitive], path,
                      "rule '%.64s': longer than %d bytes or a repetition of a repetition "
                      "(like a++)",
                      src, SENSITIVE_MAX);
            break;
        }
        int re = regcomp(&c->sensitive[c->n_sensitive], c->sensitive_src[c->n_sensitive],
                         REG_EXTENDED | REG_ICASE | REG_NOSUB);
        if (re != 0) {
            char msg[128];
            regerror(re, NULL, msg, sizeof msg);
            rc = fail(x, nodes[c->n_sensitive], path, "bad regular expression '%s': %s",
                      c->sensitive_src[c->n_sensitive], msg);
        }
    }
    free(nodes);
    return rc;
}

/* ---- top level ------------------------------------------------------------------------------ */

static int section_pair(gencache__cfg_ctx *x, const char *key, yaml_node_t *kn, yaml_node_t *v,
                        const char *path, void *arg)
{
    const char *section = arg;
    gencache_config_server *sv = &x->cfg->server;
    uint64_t ms;
    if (strcmp(section, "upstream") == 0) {
        if (strcmp(key, "url") == 0) {
            const char *s = NULL;
            if (gencache__cfg_str(x, v, path, &s) != 0)
                return -1;
            if (strncmp(s, "http://", 7) != 0 && strncmp(s, "https://", 8) != 0)
                return fail(x, v, path, "expected an http:// or https:// URL");
            return gencache__cfg_owned_str(x, v, path, &sv->upstream_url);
        }
        if (strcmp(key, "timeout") == 0) {
            if (gencache__cfg_duration(x, v, path, &ms) != 0)
                return -1;
            if (ms == 0 || ms > 86400000)
                return fail(x, v, path, "expected a duration from 1ms to 1d");
            sv->upstream_timeout_ms = ms;
            return 0;
        }
        if (strcmp(key, "concurrency") == 0)
            return gencache__cfg_uint(x, v, path, 1, 1024, &sv->upstream_concurrency);
        return unknown(x, kn, path, "url, timeout, concurrency");
    }
    if (strcmp(section, "prewarm") == 0) {
        if (strcmp(key, "concurrency") == 0)
            return gencache__cfg_uint(x, v, path, 1, 1024, &sv->prewarm_concurrency);
        return unknown(x, kn, path, "concurrency");
    }
    if (strcmp(section, "memory_pressure") == 0) {
        if (strcmp(key, "warn_ratio") == 0) {
            const char *s = scalar(v);
            char *end = NULL;
            errno = 0;
            double r = s ? strtod(s, &end) : 0;
            if (!s || !*s || *end || errno || !(r > 0.0 && r <= 1.0))
                return fail(x, v, path, "expected a ratio above 0 and at most 1, like 0.85");
            sv->pressure_warn_ratio = r;
            return 0;
        }
        if (strcmp(key, "shortened_ttl") == 0) {
            if (gencache__cfg_duration(x, v, path, &sv->pressure_ttl_ms) != 0)
                return -1;
            return sv->pressure_ttl_ms ? 0 : fail(x, v, path, "must be above 0");
        }
        return unknown(x, kn, path, "warn_ratio, shortened_ttl");
    }
    if (strcmp(section, "http") == 0) {
        if (strcmp(key, "fast_get") == 0) {
            bool on = false;
            if (gencache__cfg_bool(x, v, path, &on) != 0)
                return -1;
            sv->has_fast_get = 1;
            sv->fast_get = on;
            return 0;
        }
        return unknown(x, kn, path, "fast_get");
    }
    /* limits */
    if (strcmp(key, "max_body") == 0) {
        if (gencache__cfg_size(x, v, path, &sv->max_body) != 0)
            return -1;
        return sv->max_body ? 0 : fail(x, v, path, "must be above 0");
    }
    if (strcmp(key, "max_connections") == 0)
        return gencache__cfg_uint(x, v, path, 1, 1000000, &sv->max_connections);
    if (strcmp(key, "threads") == 0)
        return gencache__cfg_uint(x, v, path, 1, 1024, &sv->threads);
    if (strcmp(key, "timeout") == 0) {
        if (gencache__cfg_duration(x, v, path, &ms) != 0)
            return -1;
        if (ms < 1000 || ms > 86400000)
            return fail(x, v, path, "expected a duration from 1s to 1d");
        sv->timeout_s = (unsigned)(ms / 1000);
        return 0;
    }
    if (strcmp(key, "header_timeout") == 0) {
        if (gencache__cfg_duration(x, v, path, &ms) != 0)
            return -1;
        if (ms < 100 || ms > 3600000)
            return fail(x, v, path, "expected a duration from 100ms to 1h");
        sv->header_timeout_ms = ms;
        return 0;
    }
    if (strcmp(key, "max_connections_per_client") == 0) {
        sv->has_max_connections_per_client = 1;
        return gencache__cfg_uint(x, v, path, 0, 1000000, &sv->max_connections_per_client);
    }
    if (strcmp(key, "max_inflight_bytes") == 0 || strcmp(key, "prewarm_max_bytes") == 0) {
        uint64_t *out = key[0] == 'm' ? &sv->max_inflight_bytes : &sv->prewarm_max_bytes;
        if (gencache__cfg_size(x, v, path, out) != 0)
            return -1;
        return *out ? 0 : fail(x, v, path, "must be above 0 (omit the key for the default)");
    }
    return unknown(x, kn, path,
                   "max_body, max_connections, max_connections_per_client, threads, timeout, "
                   "header_timeout, max_inflight_bytes, prewarm_max_bytes");
}

/* perceptual: the guard a near-duplicate image must pass (gencache_reuse_set_guard()). */
static int perceptual_pair(gencache__cfg_ctx *x, const char *key, yaml_node_t *kn, yaml_node_t *v,
                           const char *path, void *arg)
{
    (void)arg;
    gencache_match_options *g = &x->cfg->guard;
    if (!x->cfg->has_guard) {
        gencache_match_options_init(g);
        x->cfg->has_guard = true;
    }
    if (strcmp(key, "phash_radius") == 0)
        return gencache__cfg_uint(x, v, path, 0, 32, &g->phash_radius);
    if (strcmp(key, "dhash_radius") == 0)
        return gencache__cfg_uint(x, v, path, 0, 64, &g->dhash_radius);
    if (strcmp(key, "min_detail") == 0)
        return gencache__cfg_uint(x, v, path, 0, 64, &g->min_detail);
    if (strcmp(key, "combined_radius") == 0)
        return gencache__cfg_uint(x, v, path, 0, 128, &g->combined_radius);
    if (strcmp(key, "aspect_tolerance") == 0) {
        const char *s = scalar(v);
        char *end = NULL;
        errno = 0;
        double r = s ? strtod(s, &end) : 0;
        if (!s || !*s || *end || errno || !(r >= 0.0 && r <= 1.0))
            return fail(x, v, path, "expected a ratio from 0 to 1, like 0.02");
        g->aspect_tolerance = r;
        return 0;
    }
    return unknown(x, kn, path,
                   "phash_radius, dhash_radius, aspect_tolerance, min_detail, combined_radius");
}

/* similar_prompt: how near a prompt match may be (gencache_reuse_set_prompt_radius()). */
static int similar_prompt_pair(gencache__cfg_ctx *x, const char *key, yaml_node_t *kn,
                               yaml_node_t *v, const char *path, void *arg)
{
    (void)arg;
    if (strcmp(key, "radius") == 0) {
        x->cfg->has_prompt_radius = true;
        return gencache__cfg_uint(x, v, path, 0, 16, &x->cfg->prompt_radius);
    }
    return unknown(x, kn, path, "radius");
}

/* trajectory: one row of a threshold table, "similarity: step". */
static int traj_row(gencache__cfg_ctx *x, const char *key, yaml_node_t *kn, yaml_node_t *v,
                    const char *path, void *arg)
{
    struct gencache__cfg_traj *t = arg;
    char *end = NULL;
    errno = 0;
    double sim = strtod(key, &end);
    if (!*key || *end || errno || !(sim >= -1.0 && sim <= 1.0))
        return fail(x, kn, path, "expected a cosine similarity from -1 to 1 as the key, like 0.85");
    if (t->n == GENCACHE_TRAJECTORY_MAX_THRESHOLDS)
        return fail(x, kn, path, "at most %d rows", GENCACHE_TRAJECTORY_MAX_THRESHOLDS);
    t->rows[t->n].similarity = (float)sim;
    if (gencache__cfg_uint(x, v, path, 1, 100000, &t->rows[t->n].step) != 0)
        return -1;
    t->n++;
    return 0;
}

/* A threshold table for model (NULL: the default) at v. */
static int traj_table(gencache__cfg_ctx *x, yaml_node_t *v, const char *path, const char *model)
{
    gencache_config *c = x->cfg;
    if (c->n_traj == sizeof c->traj / sizeof c->traj[0])
        return fail(x, v, path, "at most 16 models have their own table");
    struct gencache__cfg_traj *t = &c->traj[c->n_traj];
    memset(t, 0, sizeof *t);
    if (model && !(t->model = gencache__cfg_own(c, model)))
        return fail(x, v, path, "out of memory");
    if (each_pair(x, v, path, traj_row, t) != 0)
        return -1;
    if (t->n == 0)
        return fail(x, v, path, "expected at least one row, like {0.9: 20}");
    c->n_traj++;
    return 0;
}

static int traj_model_pair(gencache__cfg_ctx *x, const char *key, yaml_node_t *kn, yaml_node_t *v,
                           const char *path, void *arg)
{
    (void)kn;
    (void)arg;
    return traj_table(x, v, path, key);
}

/* trajectory: the threshold tables of approximate step reuse. */
static int trajectory_pair(gencache__cfg_ctx *x, const char *key, yaml_node_t *kn, yaml_node_t *v,
                           const char *path, void *arg)
{
    (void)arg;
    if (strcmp(key, "thresholds") == 0)
        return traj_table(x, v, path, NULL);
    if (strcmp(key, "models") == 0)
        return each_pair(x, v, path, traj_model_pair, NULL);
    if (strcmp(key, "graph_min_vectors") == 0) {
        if (gencache__cfg_uint(x, v, path, 0, 1u << 30, &x->cfg->traj_graph_min) != 0)
            return -1;
        if (x->cfg->traj_graph_min > 0 && x->cfg->traj_graph_min < 64)
            return fail(x, v, path, "expected 0 (exact search only) or at least 64");
        return 0;
    }
    return unknown(x, kn, path, "thresholds, models, graph_min_vectors");
}

static int top_pair(gencache__cfg_ctx *x, const char *key, yaml_node_t *kn, yaml_node_t *v,
                    const char *path, void *arg)
{
    (void)arg;
    gencache_config *c = x->cfg;
    if (strcmp(key, "listen") == 0)
        return gencache__cfg_owned_str(x, v, path, &c->server.listen);
    if (strcmp(key, "data_dir") == 0)
        return gencache__cfg_owned_str(x, v, path, &c->data_dir);
    if (strcmp(key, "log_level") == 0) {
        static const char *const names[] = {"error", "warn", "info", "debug"};
        int i;
        if (gencache__cfg_enum(x, v, path, names, 4, "error, warn, info or debug", &i) != 0)
            return -1;
        c->log_level = (gencache_log_level)i;
        c->server.log_level_set = 1;
        return 0;
    }
    if (strcmp(key, "tiers") == 0)
        return each_pair(x, v, path, tiers_pair, NULL);
    if (strcmp(key, "layers") == 0)
        return each_pair(x, v, path, layers_pair, NULL);
    if (strcmp(key, "models") == 0)
        return each_pair(x, v, path, models_pair, NULL);
    if (strcmp(key, "tenants") == 0)
        return parse_tenants(x, v, path);
    if (strcmp(key, "preferred") == 0)
        return parse_preferred(x, v, path);
    if (strcmp(key, "sensitive") == 0)
        return parse_sensitive(x, v, path);
    if (strcmp(key, "perceptual") == 0)
        return each_pair(x, v, path, perceptual_pair, NULL);
    if (strcmp(key, "similar_prompt") == 0)
        return each_pair(x, v, path, similar_prompt_pair, NULL);
    if (strcmp(key, "encryption") == 0)
        return gencache__cfg_encryption(x, v, path);
    if (strcmp(key, "trajectory") == 0)
        return each_pair(x, v, path, trajectory_pair, NULL);
    static const char *const sections[] = {"upstream", "prewarm", "memory_pressure", "limits",
                                           "http"};
    for (size_t i = 0; i < sizeof sections / sizeof sections[0]; i++)
        if (strcmp(key, sections[i]) == 0)
            return each_pair(x, v, path, section_pair, (void *)sections[i]);
    return unknown(x, kn, path,
                   "listen, data_dir, log_level, tiers, layers, models, tenants, preferred, "
                   "upstream, prewarm, memory_pressure, sensitive, limits, perceptual, "
                   "similar_prompt, encryption, trajectory, http");
}

/* Formats an error at a line remembered from the document. */
static int fail_at(gencache__cfg_ctx *x, int line, const char *fmt, const char *a, const char *b)
{
    char msg[320];
    snprintf(msg, sizeof msg, fmt, a, b);
    if (x->err && x->err_size && !x->err[0])
        snprintf(x->err, x->err_size, "%s:%d: %s", x->file, line, msg);
    return -1;
}

/* Layer prompt_normalization must agree (prompts are normalized per model, not per layer); a new
 * layer needs fields; the layers must define (in a scratch cache); preferred patterns must name
 * a layer. */
static int cross_checks(gencache__cfg_ctx *x)
{
    const gencache_config *c = x->cfg;
    const gencache__cfg_layer *first = NULL;
    for (size_t i = 0; i < c->n_layers; i++) {
        const gencache__cfg_layer *l = &c->layers[i];
        if (!l->has_mode)
            continue;
        if (first && first->mode != l->mode)
            return fail_at(x, l->line,
                           "layers.%s.prompt_normalization: differs from layer %s's; prompts are "
                           "normalized per model, so every layer must name the same mode (use "
                           "models: for per-model modes)",
                           l->name, first->name);
        first = l;
    }
    gencache_options o;
    gencache_options_init(&o);
    o.ghost_max_entries = 0;
    o.mem_shards = 1;
    gencache *scratch = NULL;
    int rc = gencache_open(&scratch, &o);
    if (rc != GENCACHE_OK)
        return fail_at(x, 0, "%s%s", "cannot check the layers: ", gencache_strerror(rc));
    size_t bad = 0;
    rc = gencache__cfg_apply(c, scratch, &bad);
    if (rc != GENCACHE_OK && bad < c->n_layers) {
        const gencache__cfg_layer *l = &c->layers[bad];
        gencache_layer_options lo;
        gencache_layer_options_init(&lo);
        if (!l->fields && gencache_layer_get(scratch, l->name, &lo) == GENCACHE_ENOTFOUND)
            fail_at(x, l->line,
                    "layers.%s: a new layer needs fields (the request fields its key "
                    "is made of)%s",
                    l->name, "");
        else if (rc == GENCACHE_EINVAL && l->fields)
            fail_at(x, l->fields_line, "layers.%s.fields: %s", l->name,
                    "a field name is not valid (1-64 printable characters without '=', '*' "
                    "inside, '!' only at the end)");
        else
            fail_at(x, l->line, "layers.%s: %s", l->name, gencache_strerror(rc));
    } else if (rc != GENCACHE_OK) {
        fail_at(x, 0, "models: %s%s", gencache_strerror(rc), "");
    }
    for (size_t i = 0; rc == GENCACHE_OK && i < c->n_preferred; i++) {
        const char *p = c->preferred[i];
        size_t n = (size_t)(strchr(p, '/') - p);
        char layer[256];
        snprintf(layer, sizeof layer, "%.*s", (int)(n < 255 ? n : 255), p);
        bool known = false;
        for (size_t j = 0; !known && j < gencache_layer_count(scratch); j++)
            known = fnmatch(layer, gencache_layer_name(scratch, j), 0) == 0;
        if (!known) {
            fail_at(x, c->preferred_line[i],
                    "preferred: '%s' names no layer '%s' (define it under "
                    "layers:)",
                    p, layer);
            rc = GENCACHE_ECONFIG;
        }
    }
    gencache_close(scratch);
    return rc == GENCACHE_OK ? 0 : -1;
}

int gencache__cfg_top(gencache__cfg_ctx *x, yaml_node_t *root)
{
    if (each_pair(x, root, "", top_pair, NULL) != 0)
        return -1;
    return cross_checks(x);
}
