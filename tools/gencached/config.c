/*
 * config.c: gencache.yaml, read with libyaml's document API into gcd_config and its extension
 * (config.h). The file is checked completely before anything is used: an unknown key, a value of
 * the wrong type or a bad value is an error naming the file, the line and the dotted key path
 * ("gencache.yaml:12: tiers.memory.max_bytes: expected a size like 1G"), so a typo never turns
 * silently into a default. Keys the file leaves out keep the built-in defaults (today's
 * behaviour: memory and disk tiers, no Redis, the library's layers).
 */
#include <ctype.h>
#include <errno.h>
#include <fnmatch.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "config.h"

typedef struct ctx {
    const char *file;
    yaml_document_t *doc;
    gcd_config *cfg;
    struct gcd_config_ext *ext;
    char *err;
    size_t err_size;
} ctx;

/* Formats the error once (the first one wins) and returns -1. */
__attribute__((format(printf, 4, 5))) static int fail(ctx *x, const yaml_node_t *n,
                                                      const char *path, const char *fmt, ...)
{
    char msg[320];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(x->err, x->err_size, "%s:%zu: %s: %s", x->file, n ? n->start_mark.line + 1 : 0, path,
             msg);
    return -1;
}

static char *own(ctx *x, const char *s)
{
    char *d = strdup(s);
    if (!d)
        return NULL;
    char **no = realloc(x->ext->owned, (x->ext->n_owned + 1) * sizeof *no);
    if (!no) {
        free(d);
        return NULL;
    }
    x->ext->owned = no;
    no[x->ext->n_owned++] = d;
    return d;
}

static const char *scalar(const yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

/* A string scalar; quoted or plain. */
static int get_str(ctx *x, yaml_node_t *n, const char *path, const char **out)
{
    const char *s = scalar(n);
    if (!s)
        return fail(x, n, path, "expected a string");
    *out = s;
    return 0;
}

static int get_owned_str(ctx *x, yaml_node_t *n, const char *path, const char **out)
{
    const char *s = NULL;
    if (get_str(x, n, path, &s) != 0)
        return -1;
    if (!*s)
        return fail(x, n, path, "must not be empty");
    if (!(*out = own(x, s)))
        return fail(x, n, path, "out of memory");
    return 0;
}

static int get_bool(ctx *x, yaml_node_t *n, const char *path, bool *out)
{
    const char *s = scalar(n);
    static const char *const yes[] = {"true", "True", "TRUE", "yes", "on"};
    static const char *const no[] = {"false", "False", "FALSE", "no", "off"};
    for (size_t i = 0; s && i < 5; i++) {
        if (strcmp(s, yes[i]) == 0)
            return (*out = true), 0;
        if (strcmp(s, no[i]) == 0)
            return (*out = false), 0;
    }
    return fail(x, n, path, "expected true or false");
}

/* Reads the decimal digits at *p (at least one, no overflow) into *v and advances *p past them.
 * Returns 0 or -1. */
static int leading_u64(const char **p, uint64_t *v)
{
    const char *q = *p;
    uint64_t n = 0;
    if (*q < '0' || *q > '9')
        return -1;
    for (; *q >= '0' && *q <= '9'; q++) {
        if (n > (UINT64_MAX - (uint64_t)(*q - '0')) / 10)
            return -1;
        n = n * 10 + (uint64_t)(*q - '0');
    }
    *p = q;
    *v = n;
    return 0;
}

int gcd_parse_size(const char *s, uint64_t *out)
{
    uint64_t v;
    const char *p = s;
    if (leading_u64(&p, &v) != 0)
        return -1;
    unsigned shift = 0;
    const char *units = "KMGT";
    const char *u = *p ? strchr(units, toupper((unsigned char)*p)) : NULL;
    if (u) {
        shift = 10u * (unsigned)(u - units + 1);
        p++;
        if ((*p == 'i' || *p == 'I') && (p[1] == 'b' || p[1] == 'B'))
            p += 2;
        else if (*p == 'b' || *p == 'B')
            p++;
    } else if (*p == 'b' || *p == 'B') {
        p++;
    }
    if (*p != '\0' || (shift && v > (UINT64_MAX >> shift)))
        return -1;
    *out = v << shift;
    return 0;
}

int gcd_parse_duration_ms(const char *s, uint64_t *out)
{
    uint64_t v;
    const char *p = s;
    if (leading_u64(&p, &v) != 0)
        return -1;
    uint64_t mul;
    if (!*p || strcmp(p, "s") == 0)
        mul = 1000;
    else if (strcmp(p, "ms") == 0)
        mul = 1;
    else if (strcmp(p, "m") == 0)
        mul = 60000;
    else if (strcmp(p, "h") == 0)
        mul = 3600000;
    else if (strcmp(p, "d") == 0)
        mul = 86400000;
    else if (strcmp(p, "w") == 0)
        mul = 7ull * 86400000;
    else
        return -1;
    if (v > UINT64_MAX / mul)
        return -1;
    *out = v * mul;
    return 0;
}

static int get_size(ctx *x, yaml_node_t *n, const char *path, uint64_t *out)
{
    const char *s = scalar(n);
    if (!s || gcd_parse_size(s, out) != 0)
        return fail(x, n, path, "expected a size like 1G, 512M or 4096");
    return 0;
}

static int get_duration(ctx *x, yaml_node_t *n, const char *path, uint64_t *out)
{
    const char *s = scalar(n);
    if (!s || gcd_parse_duration_ms(s, out) != 0)
        return fail(x, n, path, "expected a duration like 30m, 7d, 90s or 500ms");
    return 0;
}

static int get_uint(ctx *x, yaml_node_t *n, const char *path, uint64_t lo, uint64_t hi,
                    unsigned *out)
{
    const char *s = scalar(n);
    uint64_t v;
    if (!s || gcd_parse_u64(s, &v) != 0 || v < lo || v > hi)
        return fail(x, n, path, "expected a whole number from %" PRIu64 " to %" PRIu64, lo, hi);
    *out = (unsigned)v;
    return 0;
}

static int get_ratio(ctx *x, yaml_node_t *n, const char *path, double *out)
{
    const char *s = scalar(n);
    char *end = NULL;
    errno = 0;
    double v = s ? strtod(s, &end) : 0;
    if (!s || !*s || *end || errno || !(v > 0.0 && v <= 1.0))
        return fail(x, n, path, "expected a ratio above 0 and at most 1, like 0.85");
    *out = v;
    return 0;
}

static int get_mode(ctx *x, yaml_node_t *n, const char *path, gencache_norm_mode *out)
{
    const char *s = scalar(n);
    if (!s || gencache_norm_mode_parse(s, out) != 0)
        return fail(x, n, path, "expected exact, safe, clip, tokens or aggressive");
    return 0;
}

/* Iterates a mapping: calls fn(x, key, value, path) for each pair, refusing duplicate keys. */
typedef int (*pair_fn)(ctx *x, const char *key, yaml_node_t *kn, yaml_node_t *v, const char *path,
                       void *arg);

static int each_pair(ctx *x, yaml_node_t *map, const char *path, pair_fn fn, void *arg)
{
    if (!map || map->type != YAML_MAPPING_NODE)
        return fail(x, map, *path ? path : "(top level)", "expected a mapping of keys");
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *kn = yaml_document_get_node(x->doc, p->key);
        yaml_node_t *vn = yaml_document_get_node(x->doc, p->value);
        const char *key = scalar(kn);
        if (!key)
            return fail(x, kn, *path ? path : "(top level)", "keys must be plain strings");
        char sub[256];
        snprintf(sub, sizeof sub, "%s%s%s", path, *path ? "." : "", key);
        for (yaml_node_pair_t *q = map->data.mapping.pairs.start; q < p; q++)
            if (strcmp(scalar(yaml_document_get_node(x->doc, q->key)), key) == 0)
                return fail(x, kn, sub, "duplicate key");
        if (fn(x, key, kn, vn, sub, arg) != 0)
            return -1;
    }
    return 0;
}

static int unknown(ctx *x, yaml_node_t *kn, const char *path, const char *known)
{
    return fail(x, kn, path, "unknown key (expected one of: %s)", known);
}

/* ---- tiers ---------------------------------------------------------------------------------- */

static int tier_pair(ctx *x, const char *key, yaml_node_t *kn, yaml_node_t *v, const char *path,
                     void *arg)
{
    const char *tier = arg;
    gcd_config *cfg = x->cfg;
    struct gcd_config_ext *e = x->ext;
    bool b;
    if (strcmp(tier, "memory") == 0) {
        if (strcmp(key, "max_bytes") == 0)
            return get_size(x, v, path, &cfg->max_memory);
        if (strcmp(key, "max_entries") == 0)
            return get_size(x, v, path, &e->mem_max_entries);
        if (strcmp(key, "enabled") == 0) {
            if (get_bool(x, v, path, &b) != 0)
                return -1;
            return b ? 0 : fail(x, v, path, "the memory tier cannot be disabled");
        }
        return unknown(x, kn, path, "max_bytes, max_entries, enabled");
    }
    if (strcmp(tier, "disk") == 0) {
        if (strcmp(key, "max_bytes") == 0)
            return get_size(x, v, path, &cfg->max_disk);
        if (strcmp(key, "max_entries") == 0)
            return get_size(x, v, path, &e->disk_max_entries);
        if (strcmp(key, "enabled") == 0) {
            if (get_bool(x, v, path, &b) != 0)
                return -1;
            e->disk_disabled = !b;
            return 0;
        }
        return unknown(x, kn, path, "max_bytes, max_entries, enabled");
    }
    if (strcmp(tier, "redis") == 0) {
        if (strcmp(key, "url") == 0) {
            const char *s = NULL;
            if (get_str(x, v, path, &s) != 0)
                return -1;
            if (strncmp(s, "redis://", 8) != 0 || !s[8])
                return fail(x, v, path, "expected redis://HOST:PORT[/DB]");
            return get_owned_str(x, v, path, &cfg->redis_url);
        }
        if (strcmp(key, "timeout_ms") == 0)
            return get_uint(x, v, path, 1, 60000, &cfg->redis_timeout_ms);
        if (strcmp(key, "max_value_bytes") == 0)
            return get_size(x, v, path, &e->redis_max_value_bytes);
        if (strcmp(key, "enabled") == 0)
            return get_bool(x, v, path, &b); /* applied by tiers_pair */
        return unknown(x, kn, path, "enabled, url, timeout_ms, max_value_bytes");
    }
    /* gpu */
    if (strcmp(key, "enabled") == 0) {
        if (get_bool(x, v, path, &b) != 0)
            return -1;
        return b ? fail(x, v, path, "this build has no GPU tier; set enabled: false") : 0;
    }
    if (strcmp(key, "max_bytes") == 0 || strcmp(key, "max_entries") == 0) {
        uint64_t ignored;
        return get_size(x, v, path, &ignored);
    }
    return unknown(x, kn, path, "enabled, max_bytes, max_entries");
}

static int tiers_pair(ctx *x, const char *key, yaml_node_t *kn, yaml_node_t *v, const char *path,
                      void *arg)
{
    (void)arg;
    static const char *const names[] = {"memory", "disk", "redis", "gpu"};
    for (size_t i = 0; i < 4; i++) {
        if (strcmp(key, names[i]) != 0)
            continue;
        if (i == 2) {
            /* redis: enabled: false wins over a url; enabled: true needs one. */
            int enabled = -1;
            yaml_node_t *en = NULL;
            if (v && v->type == YAML_MAPPING_NODE)
                for (yaml_node_pair_t *p = v->data.mapping.pairs.start;
                     p < v->data.mapping.pairs.top; p++) {
                    const char *k = scalar(yaml_document_get_node(x->doc, p->key));
                    if (k && strcmp(k, "enabled") == 0) {
                        bool b;
                        en = yaml_document_get_node(x->doc, p->value);
                        if (get_bool(x, en, "tiers.redis.enabled", &b) != 0)
                            return -1;
                        enabled = b;
                    }
                }
            if (each_pair(x, v, path, tier_pair, (void *)names[i]) != 0)
                return -1;
            if (enabled == 0)
                x->cfg->redis_url = NULL;
            else if (enabled == 1 && !x->cfg->redis_url)
                return fail(x, en, "tiers.redis.enabled", "the redis tier needs a url");
            return 0;
        }
        return each_pair(x, v, path, tier_pair, (void *)names[i]);
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

static int layer_pair(ctx *x, const char *key, yaml_node_t *kn, yaml_node_t *v, const char *path,
                      void *arg)
{
    gcd_layer_cfg *l = arg;
    if (strcmp(key, "fields") == 0) {
        if (!v || v->type != YAML_SEQUENCE_NODE)
            return fail(x, v, path, "expected a list of request field names");
        size_t n = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
        if (n == 0)
            return fail(x, v, path, "needs at least one field");
        if (n > 64)
            return fail(x, v, path, "at most 64 fields");
        l->fields = calloc(n, sizeof *l->fields);
        if (!l->fields)
            return fail(x, v, path, "out of memory");
        for (size_t i = 0; i < n; i++) {
            yaml_node_t *f = yaml_document_get_node(x->doc, v->data.sequence.items.start[i]);
            const char *s = NULL;
            if (get_owned_str(x, f, path, &s) != 0)
                return -1;
            l->fields[l->n_fields++] = (char *)s;
        }
        return 0;
    }
    if (strcmp(key, "scope") == 0) {
        const char *s = scalar(v);
        static const char *const names[] = {"global", "tenant", "session"};
        for (int i = 0; s && i < 3; i++)
            if (strcmp(s, names[i]) == 0) {
                l->scope = (gencache_scope)i;
                l->has_scope = true;
                return 0;
            }
        return fail(x, v, path, "expected global, tenant or session");
    }
    if (strcmp(key, "ttl") == 0) {
        l->has_ttl = true;
        return get_duration(x, v, path, &l->ttl_ms);
    }
    if (strcmp(key, "policy") == 0) {
        const char *s = scalar(v);
        if (s && (strcmp(s, "write_through") == 0 || strcmp(s, "write_back") == 0)) {
            l->has_policy = true;
            l->write_through = strcmp(s, "write_through") == 0;
            return 0;
        }
        return fail(x, v, path, "expected write_back or write_through");
    }
    if (strcmp(key, "prompt_normalization") == 0) {
        l->has_mode = true;
        return get_mode(x, v, path, &l->mode);
    }
    if (strcmp(key, "image_match") == 0) {
        const char *s = scalar(v);
        if (s && (strcmp(s, "exact") == 0 || strcmp(s, "perceptual") == 0))
            return (l->image_match = (char *)own(x, s)) ? 0 : fail(x, v, path, "out of memory");
        return fail(x, v, path, "expected exact or perceptual");
    }
    return unknown(x, kn, path, "fields, scope, ttl, policy, prompt_normalization, image_match");
}

static int layers_pair(ctx *x, const char *key, yaml_node_t *kn, yaml_node_t *v, const char *path,
                       void *arg)
{
    (void)arg;
    struct gcd_config_ext *e = x->ext;
    if (!layer_name_ok(key))
        return fail(x, kn, path, "a layer name is 1-32 characters of a-z, 0-9 and _");
    if (e->n_layers == GENCACHE_MAX_LAYERS)
        return fail(x, kn, path, "at most %d layers", GENCACHE_MAX_LAYERS);
    gcd_layer_cfg *nl = realloc(e->layers, (e->n_layers + 1) * sizeof *nl);
    if (!nl)
        return fail(x, kn, path, "out of memory");
    e->layers = nl;
    gcd_layer_cfg *l = &nl[e->n_layers++];
    memset(l, 0, sizeof *l);
    l->line = (int)kn->start_mark.line + 1;
    if (!(l->name = own(x, key)))
        return fail(x, kn, path, "out of memory");
    if (v && v->type == YAML_SCALAR_NODE && !*scalar(v))
        return 0; /* "name:" alone: keep the layer as it is */
    return each_pair(x, v, path, layer_pair, l);
}

static int model_pair(ctx *x, const char *key, yaml_node_t *kn, yaml_node_t *v, const char *path,
                      void *arg)
{
    gcd_model_cfg *m = arg;
    if (strcmp(key, "prompt_normalization") == 0)
        return get_mode(x, v, path, &m->mode);
    return unknown(x, kn, path, "prompt_normalization");
}

static int models_pair(ctx *x, const char *key, yaml_node_t *kn, yaml_node_t *v, const char *path,
                       void *arg)
{
    (void)arg;
    struct gcd_config_ext *e = x->ext;
    gcd_model_cfg *nm = realloc(e->models, (e->n_models + 1) * sizeof *nm);
    if (!nm)
        return fail(x, kn, path, "out of memory");
    e->models = nm;
    gcd_model_cfg *m = &nm[e->n_models++];
    m->mode = GENCACHE_NORM_SAFE;
    if (!(m->name = own(x, key)))
        return fail(x, kn, path, "out of memory");
    return each_pair(x, v, path, model_pair, m);
}

/* ---- tenants -------------------------------------------------------------------------------- */

static int tenant_pair(ctx *x, const char *key, yaml_node_t *kn, yaml_node_t *v, const char *path,
                       void *arg)
{
    gcd_tenant *t = arg;
    if (strcmp(key, "name") == 0) {
        const char *s = NULL;
        if (get_owned_str(x, v, path, &s) != 0)
            return -1;
        if (strlen(s) > 64)
            return fail(x, v, path, "at most 64 characters");
        for (const char *p = s; *p; p++)
            if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-' && *p != '.')
                return fail(x, v, path, "a tenant name is letters, digits, '_', '-' and '.'");
        t->name = (char *)s;
        return 0;
    }
    if (strcmp(key, "token") == 0) {
        const char *s = NULL;
        if (get_owned_str(x, v, path, &s) != 0)
            return -1;
        if (strlen(s) < 16)
            return fail(x, v, path, "a token needs at least 16 characters");
        for (const char *p = s; *p; p++)
            if ((unsigned char)*p <= 0x20 || (unsigned char)*p > 0x7e)
                return fail(x, v, path, "a token is printable ASCII without spaces");
        t->token = (char *)s;
        t->token_len = strlen(s);
        return 0;
    }
    if (strcmp(key, "priority") == 0) {
        const char *s = scalar(v);
        static const char *const names[] = {"high", "normal", "batch"};
        for (int i = 0; s && i < 3; i++)
            if (strcmp(s, names[i]) == 0) {
                t->priority = (gcd_priority)i;
                return 0;
            }
        return fail(x, v, path, "expected high, normal or batch");
    }
    if (strcmp(key, "quota_bytes") == 0)
        return get_size(x, v, path, &t->quota_bytes);
    if (strcmp(key, "admin") == 0)
        return get_bool(x, v, path, &t->admin);
    return unknown(x, kn, path, "name, token, priority, quota_bytes, admin");
}

static int parse_tenants(ctx *x, yaml_node_t *v, const char *path)
{
    if (!v || v->type != YAML_SEQUENCE_NODE)
        return fail(x, v, path, "expected a list of {name, token, priority, quota_bytes}");
    size_t n = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
    gcd_config *cfg = x->cfg;
    cfg->tenants = calloc(n ? n : 1, sizeof *cfg->tenants);
    if (!cfg->tenants)
        return fail(x, v, path, "out of memory");
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *tn = yaml_document_get_node(x->doc, v->data.sequence.items.start[i]);
        char sub[64];
        snprintf(sub, sizeof sub, "%s[%zu]", path, i);
        gcd_tenant *t = &cfg->tenants[cfg->n_tenants++];
        t->priority = GCD_PRIO_NORMAL;
        if (each_pair(x, tn, sub, tenant_pair, t) != 0)
            return -1;
        if (!t->name || !t->token)
            return fail(x, tn, sub, "a tenant needs a name and a token");
        for (size_t j = 0; j < i; j++) {
            if (strcmp(cfg->tenants[j].name, t->name) == 0)
                return fail(x, tn, sub, "tenant name '%s' is used twice", t->name);
            if (strcmp(cfg->tenants[j].token, t->token) == 0)
                return fail(x, tn, sub, "two tenants share a token");
        }
    }
    return 0;
}

/* ---- lists ---------------------------------------------------------------------------------- */

static int parse_list(ctx *x, yaml_node_t *v, const char *path, char ***out, size_t *n_out,
                      yaml_node_t ***nodes)
{
    if (!v || v->type != YAML_SEQUENCE_NODE)
        return fail(x, v, path, "expected a list of strings");
    size_t n = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
    *out = calloc(n ? n : 1, sizeof **out);
    *nodes = calloc(n ? n : 1, sizeof **nodes);
    if (!*out || !*nodes)
        return fail(x, v, path, "out of memory");
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *item = yaml_document_get_node(x->doc, v->data.sequence.items.start[i]);
        const char *s = NULL;
        if (get_owned_str(x, item, path, &s) != 0)
            return -1;
        (*out)[i] = (char *)s;
        (*nodes)[i] = item;
        *n_out = i + 1;
    }
    return 0;
}

static int parse_preferred(ctx *x, yaml_node_t *v, const char *path)
{
    yaml_node_t **nodes = NULL;
    int rc = parse_list(x, v, path, &x->ext->preferred, &x->ext->n_preferred, &nodes);
    for (size_t i = 0; rc == 0 && i < x->ext->n_preferred; i++) {
        const char *p = x->ext->preferred[i];
        const char *slash = strchr(p, '/');
        if (!slash || slash == p)
            rc = fail(x, nodes[i], path, "'%s': expected <layer>/<hex or pattern>, like result/*",
                      p);
    }
    free(nodes);
    return rc;
}

static int parse_sensitive(ctx *x, yaml_node_t *v, const char *path)
{
    yaml_node_t **nodes = NULL;
    struct gcd_config_ext *e = x->ext;
    int rc = parse_list(x, v, path, &e->sensitive_src, &e->n_sensitive, &nodes);
    if (rc == 0) {
        e->sensitive = calloc(e->n_sensitive ? e->n_sensitive : 1, sizeof *e->sensitive);
        if (!e->sensitive)
            rc = fail(x, v, path, "out of memory");
    }
    size_t compiled = 0;
    for (; rc == 0 && compiled < e->n_sensitive; compiled++) {
        int re = regcomp(&e->sensitive[compiled], e->sensitive_src[compiled],
                         REG_EXTENDED | REG_ICASE | REG_NOSUB);
        if (re != 0) {
            char msg[128];
            regerror(re, NULL, msg, sizeof msg);
            rc = fail(x, nodes[compiled], path, "bad regular expression '%s': %s",
                      e->sensitive_src[compiled], msg);
            break;
        }
    }
    if (rc != 0 && e->sensitive) {
        /* Only the ones compiled are freed later. */
        for (size_t i = 0; i < compiled; i++)
            regfree(&e->sensitive[i]);
        free(e->sensitive);
        e->sensitive = NULL;
        e->n_sensitive = 0;
    }
    free(nodes);
    return rc;
}

/* ---- top level ------------------------------------------------------------------------------ */

static int section_pair(ctx *x, const char *key, yaml_node_t *kn, yaml_node_t *v, const char *path,
                        void *arg)
{
    const char *section = arg;
    gcd_config *cfg = x->cfg;
    if (strcmp(section, "upstream") == 0) {
        if (strcmp(key, "url") == 0) {
            const char *s = NULL;
            if (get_str(x, v, path, &s) != 0)
                return -1;
            if (strncmp(s, "http://", 7) != 0 && strncmp(s, "https://", 8) != 0)
                return fail(x, v, path, "expected an http:// or https:// URL");
            return get_owned_str(x, v, path, &cfg->upstream_url);
        }
        if (strcmp(key, "timeout") == 0) {
            uint64_t ms;
            if (get_duration(x, v, path, &ms) != 0)
                return -1;
            if (ms == 0 || ms > 86400000)
                return fail(x, v, path, "expected a duration from 1ms to 1d");
            cfg->upstream_timeout_ms = (unsigned)ms;
            return 0;
        }
        if (strcmp(key, "concurrency") == 0)
            return get_uint(x, v, path, 1, 1024, &cfg->upstream_concurrency);
        return unknown(x, kn, path, "url, timeout, concurrency");
    }
    if (strcmp(section, "prewarm") == 0) {
        if (strcmp(key, "concurrency") == 0)
            return get_uint(x, v, path, 1, 1024, &cfg->prewarm_concurrency);
        return unknown(x, kn, path, "concurrency");
    }
    if (strcmp(section, "memory_pressure") == 0) {
        if (strcmp(key, "warn_ratio") == 0)
            return get_ratio(x, v, path, &cfg->pressure_warn_ratio);
        if (strcmp(key, "shortened_ttl") == 0) {
            if (get_duration(x, v, path, &x->ext->pressure_ttl_ms) != 0)
                return -1;
            return x->ext->pressure_ttl_ms ? 0 : fail(x, v, path, "must be above 0");
        }
        return unknown(x, kn, path, "warn_ratio, shortened_ttl");
    }
    /* limits */
    if (strcmp(key, "max_body") == 0) {
        if (get_size(x, v, path, &cfg->max_body) != 0)
            return -1;
        return cfg->max_body ? 0 : fail(x, v, path, "must be above 0");
    }
    if (strcmp(key, "max_connections") == 0)
        return get_uint(x, v, path, 1, 1000000, &cfg->max_connections);
    if (strcmp(key, "threads") == 0)
        return get_uint(x, v, path, 1, 1024, &cfg->threads);
    if (strcmp(key, "timeout") == 0) {
        uint64_t ms;
        if (get_duration(x, v, path, &ms) != 0)
            return -1;
        if (ms < 1000 || ms > 86400000)
            return fail(x, v, path, "expected a duration from 1s to 1d");
        cfg->timeout_s = (unsigned)(ms / 1000);
        return 0;
    }
    return unknown(x, kn, path, "max_body, max_connections, threads, timeout");
}

static int top_pair(ctx *x, const char *key, yaml_node_t *kn, yaml_node_t *v, const char *path,
                    void *arg)
{
    (void)arg;
    gcd_config *cfg = x->cfg;
    if (strcmp(key, "listen") == 0)
        return get_owned_str(x, v, path, &cfg->listen);
    if (strcmp(key, "data_dir") == 0)
        return get_owned_str(x, v, path, &cfg->data_dir);
    if (strcmp(key, "log_level") == 0) {
        const char *s = scalar(v);
        static const char *const names[] = {"error", "warn", "info", "debug"};
        for (int i = 0; s && i < 4; i++)
            if (strcmp(s, names[i]) == 0) {
                cfg->log_level = (gencache_log_level)i;
                return 0;
            }
        return fail(x, v, path, "expected error, warn, info or debug");
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
    static const char *const sections[] = {"upstream", "prewarm", "memory_pressure", "limits"};
    for (size_t i = 0; i < 4; i++)
        if (strcmp(key, sections[i]) == 0)
            return each_pair(x, v, path, section_pair, (void *)sections[i]);
    return unknown(x, kn, path,
                   "listen, data_dir, log_level, tiers, layers, models, tenants, preferred, "
                   "upstream, prewarm, memory_pressure, sensitive, limits");
}

/* Checks that span several keys: layer prompt_normalization must agree (the keyspace keeps one
 * mode per model, not per layer). */
static int cross_checks(ctx *x)
{
    const gcd_layer_cfg *first = NULL;
    for (size_t i = 0; i < x->ext->n_layers; i++) {
        const gcd_layer_cfg *l = &x->ext->layers[i];
        if (!l->fields && !gcd_config_builtin_layer(l->name)) {
            snprintf(x->err, x->err_size,
                     "%s:%d: layers.%s: a new layer needs fields (the request fields its key "
                     "is made of)",
                     x->file, l->line, l->name);
            return -1;
        }
        if (!l->has_mode)
            continue;
        if (first && first->mode != l->mode) {
            snprintf(x->err, x->err_size,
                     "%s:%d: layers.%s.prompt_normalization: differs from layer %s's; prompts "
                     "are normalized per model, so every layer must name the same mode (use "
                     "models: for per-model modes)",
                     x->file, l->line, l->name, first->name);
            return -1;
        }
        first = l;
    }
    return 0;
}

int gcd_config_load(const char *path, gcd_config *cfg, char *err, size_t err_size)
{
    err[0] = '\0';
    struct gcd_config_ext *e = calloc(1, sizeof *e);
    if (!e) {
        snprintf(err, err_size, "%s: out of memory", path);
        return -1;
    }
    cfg->ext = e;
    cfg->config_path = path;
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, err_size, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    yaml_parser_t parser;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&parser)) {
        fclose(f);
        snprintf(err, err_size, "%s: out of memory", path);
        return -1;
    }
    yaml_parser_set_input_file(&parser, f);
    int rc = 0;
    if (!yaml_parser_load(&parser, &doc)) {
        snprintf(err, err_size, "%s:%zu: YAML syntax error: %s%s%s", path,
                 parser.problem_mark.line + 1, parser.problem ? parser.problem : "unknown",
                 parser.context ? " " : "", parser.context ? parser.context : "");
        yaml_parser_delete(&parser);
        fclose(f);
        return -1;
    }
    ctx x = {.file = path, .doc = &doc, .cfg = cfg, .ext = e, .err = err, .err_size = err_size};
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    /* An empty file (or only comments) is the defaults. */
    if (root && !(root->type == YAML_SCALAR_NODE && !*scalar(root)))
        rc = each_pair(&x, root, "", top_pair, NULL);
    if (rc == 0)
        rc = cross_checks(&x);
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    fclose(f);
    return rc;
}

void gcd_config_free(gcd_config *cfg)
{
    struct gcd_config_ext *e = cfg->ext;
    if (!e)
        return;
    for (size_t i = 0; i < e->n_layers; i++)
        free(e->layers[i].fields);
    free(e->layers);
    free(e->models);
    free(e->preferred);
    for (size_t i = 0; i < e->n_sensitive && e->sensitive; i++)
        regfree(&e->sensitive[i]);
    free(e->sensitive);
    free(e->sensitive_src);
    for (size_t i = 0; i < e->n_owned; i++)
        free(e->owned[i]);
    free(e->owned);
    free(cfg->tenants);
    cfg->tenants = NULL;
    cfg->n_tenants = 0;
    free(e);
    cfg->ext = NULL;
}

bool gcd_preferred(gcd_server *srv, const char *key)
{
    const struct gcd_config_ext *e = srv->cfg->ext;
    for (size_t i = 0; e && i < e->n_preferred; i++)
        if (fnmatch(e->preferred[i], key, 0) == 0)
            return true;
    return false;
}

bool gcd_sensitive(gcd_server *srv, const char *text)
{
    const struct gcd_config_ext *e = srv->cfg->ext;
    if (!text || !e)
        return false;
    for (size_t i = 0; i < e->n_sensitive; i++)
        if (regexec(&e->sensitive[i], text, 0, NULL, 0) == 0)
            return true;
    return false;
}
