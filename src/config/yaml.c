/*
 * yaml.c: reading gencache.yaml with libyaml's document API. The whole file is checked before a
 * config is handed out: one YAML document whose root is a mapping, every key known, every value
 * of the right type and range, and each error names the file, the line and the dotted key path
 * ("gencache.yaml:12: tiers.memory.max_bytes: expected a size like 1G"), so a typo never turns
 * silently into a default.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cfg.h"

int gencache__cfg_fail(gencache__cfg_ctx *x, const yaml_node_t *n, const char *path,
                       const char *fmt, ...)
{
    if (x->err && x->err_size && !x->err[0]) {
        char msg[320];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        snprintf(x->err, x->err_size, "%s:%zu: %s: %s", x->file,
                 n ? (size_t)n->start_mark.line + 1 : 0, path, msg);
    }
    return -1;
}

char *gencache__cfg_own(gencache_config *cfg, const char *s)
{
    char *d = strdup(s);
    if (!d)
        return NULL;
    char **no = realloc(cfg->owned, (cfg->n_owned + 1) * sizeof *no);
    if (!no) {
        free(d);
        return NULL;
    }
    cfg->owned = no;
    no[cfg->n_owned++] = d;
    return d;
}

const char *gencache__cfg_scalar(const yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

int gencache__cfg_str(gencache__cfg_ctx *x, yaml_node_t *n, const char *path, const char **out)
{
    const char *s = gencache__cfg_scalar(n);
    if (!s)
        return gencache__cfg_fail(x, n, path, "expected a string");
    /* C reads a string up to its first NUL: "a\0b" would quietly become "a". */
    if (strlen(s) != n->data.scalar.length)
        return gencache__cfg_fail(x, n, path, "contains a NUL character");
    *out = s;
    return 0;
}

int gencache__cfg_owned_str(gencache__cfg_ctx *x, yaml_node_t *n, const char *path,
                            const char **out)
{
    const char *s = NULL;
    if (gencache__cfg_str(x, n, path, &s) != 0)
        return -1;
    if (!*s)
        return gencache__cfg_fail(x, n, path, "must not be empty");
    if (!(*out = gencache__cfg_own(x->cfg, s)))
        return gencache__cfg_fail(x, n, path, "out of memory");
    return 0;
}

int gencache__cfg_bool(gencache__cfg_ctx *x, yaml_node_t *n, const char *path, bool *out)
{
    static const char *const names[] = {"false", "False", "FALSE", "no",  "off",
                                        "true",  "True",  "TRUE",  "yes", "on"};
    int i;
    if (gencache__cfg_enum(x, n, path, names, 10, "true or false", &i) != 0)
        return -1;
    *out = i >= 5;
    return 0;
}

int gencache__cfg_size(gencache__cfg_ctx *x, yaml_node_t *n, const char *path, uint64_t *out)
{
    const char *s = gencache__cfg_scalar(n);
    if (!s || gencache_parse_size(s, out) != GENCACHE_OK)
        return gencache__cfg_fail(x, n, path, "expected a size like 1G, 512M or 4096");
    return 0;
}

int gencache__cfg_duration(gencache__cfg_ctx *x, yaml_node_t *n, const char *path, uint64_t *out)
{
    const char *s = gencache__cfg_scalar(n);
    if (!s || gencache_parse_duration_ms(s, out) != GENCACHE_OK)
        return gencache__cfg_fail(x, n, path, "expected a duration like 30m, 7d, 90s or 500ms");
    return 0;
}

int gencache__cfg_uint(gencache__cfg_ctx *x, yaml_node_t *n, const char *path, uint64_t lo,
                       uint64_t hi, unsigned *out)
{
    const char *s = gencache__cfg_scalar(n);
    uint64_t v = 0;
    bool ok = s && *s;
    for (const char *p = s; ok && *p; p++) {
        ok = *p >= '0' && *p <= '9' && v <= (UINT64_MAX - (uint64_t)(*p - '0')) / 10;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    if (!ok || v < lo || v > hi)
        return gencache__cfg_fail(x, n, path,
                                  "expected a whole number from %" PRIu64 " to %" PRIu64, lo, hi);
    *out = (unsigned)v;
    return 0;
}

int gencache__cfg_enum(gencache__cfg_ctx *x, yaml_node_t *n, const char *path,
                       const char *const *names, int count, const char *expected, int *out)
{
    const char *s = gencache__cfg_scalar(n);
    for (int i = 0; s && i < count; i++)
        if (strcmp(s, names[i]) == 0) {
            *out = i;
            return 0;
        }
    return gencache__cfg_fail(x, n, path, "expected %s", expected);
}

int gencache__cfg_unknown(gencache__cfg_ctx *x, yaml_node_t *kn, const char *path,
                          const char *known)
{
    return gencache__cfg_fail(x, kn, path, "unknown key (expected one of: %s)", known);
}

int gencache__cfg_each_pair(gencache__cfg_ctx *x, yaml_node_t *map, const char *path,
                            gencache__cfg_pair_fn fn, void *arg)
{
    const char *where = *path ? path : "(top level)";
    if (!map || map->type != YAML_MAPPING_NODE)
        return gencache__cfg_fail(x, map, where, "expected a mapping of keys");
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *kn = yaml_document_get_node(x->doc, p->key);
        yaml_node_t *vn = yaml_document_get_node(x->doc, p->value);
        const char *key = gencache__cfg_scalar(kn);
        if (!key)
            return gencache__cfg_fail(x, kn, where, "keys must be plain strings");
        char sub[256];
        snprintf(sub, sizeof sub, "%s%s%s", path, *path ? "." : "", key);
        for (yaml_node_pair_t *q = map->data.mapping.pairs.start; q < p; q++)
            if (strcmp(gencache__cfg_scalar(yaml_document_get_node(x->doc, q->key)), key) == 0)
                return gencache__cfg_fail(x, kn, sub, "duplicate key");
        if (fn(x, key, kn, vn, sub, arg) != 0)
            return -1;
    }
    return 0;
}

static void set_err(char *err, size_t err_size, const char *fmt, const char *a, const char *b)
{
    if (err && err_size)
        snprintf(err, err_size, fmt, a, b);
}

/* Loads the one document of the parser's input into a new config. */
static int load(yaml_parser_t *parser, const char *name, gencache_config **out, char *err,
                size_t err_size)
{
    yaml_document_t doc;
    if (!yaml_parser_load(parser, &doc)) {
        if (err && err_size)
            snprintf(err, err_size, "%s:%zu: YAML syntax error: %s%s%s", name,
                     parser->problem_mark.line + 1, parser->problem ? parser->problem : "unknown",
                     parser->context ? " " : "", parser->context ? parser->context : "");
        return parser->error == YAML_MEMORY_ERROR ? GENCACHE_ENOMEM : GENCACHE_EPARSE;
    }
    gencache_config *cfg = calloc(1, sizeof *cfg);
    if (!cfg || !(cfg->path = strdup(name))) {
        free(cfg);
        yaml_document_delete(&doc);
        set_err(err, err_size, "%s: %s", name, "out of memory");
        return GENCACHE_ENOMEM;
    }
    cfg->log_level = (gencache_log_level)-1;
    gencache__cfg_ctx x = {.file = name, .doc = &doc, .cfg = cfg, .err = err, .err_size = err_size};
    int rc = GENCACHE_OK;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    /* An empty file (or only comments) is the defaults. */
    const char *s = gencache__cfg_scalar(root);
    if (root && !(s && !*s) && gencache__cfg_top(&x, root) != 0)
        rc = GENCACHE_ECONFIG;
    yaml_document_delete(&doc);
    if (rc == GENCACHE_OK) {
        /* A second document is refused: which one a reader would take is a guess. */
        yaml_document_t next;
        if (!yaml_parser_load(parser, &next)) {
            if (err && err_size)
                snprintf(err, err_size, "%s:%zu: YAML syntax error: %s", name,
                         parser->problem_mark.line + 1,
                         parser->problem ? parser->problem : "unknown");
            rc = GENCACHE_EPARSE;
        } else {
            yaml_node_t *r2 = yaml_document_get_root_node(&next);
            if (r2) {
                if (err && err_size)
                    snprintf(err, err_size,
                             "%s:%zu: (document): a second YAML document; a config file holds "
                             "one",
                             name, next.start_mark.line + 1);
                rc = GENCACHE_EPARSE;
            }
            yaml_document_delete(&next);
        }
    }
    if (rc != GENCACHE_OK) {
        gencache_config_free(cfg);
        return rc;
    }
    *out = cfg;
    return GENCACHE_OK;
}

/* Deepest flow nesting ([ and {) a config may have. libyaml checks every stored simple key on
 * each token, one per open flow level, so deep nesting costs it quadratic time: 100,000 levels
 * take tens of seconds. Nothing a config means needs more than a few levels. */
#define MAX_FLOW_DEPTH   64
#define MAX_CONFIG_BYTES (16u << 20)

/* Refuses input nested deeper than MAX_FLOW_DEPTH before libyaml sees it. Quoted scalars and
 * comments are skipped, so brackets inside strings (a sensitive regex) do not count. */
static int check_nesting(const char *text, size_t len, const char *name, char *err, size_t err_size)
{
    size_t depth = 0, line = 1;
    char quote = 0;
    bool comment = false;
    for (size_t i = 0; i < len; i++) {
        char ch = text[i];
        if (ch == '\n') {
            line++;
            comment = false;
            continue;
        }
        if (comment)
            continue;
        if (quote) {
            if (quote == '"' && ch == '\\' && i + 1 < len)
                i++;
            else if (ch == quote)
                quote = 0;
            continue;
        }
        if (ch == '#' &&
            (i == 0 || text[i - 1] == ' ' || text[i - 1] == '\t' || text[i - 1] == '\n')) {
            comment = true;
        } else if (ch == '"' || ch == '\'') {
            quote = ch;
        } else if (ch == '[' || ch == '{') {
            if (++depth > MAX_FLOW_DEPTH) {
                if (err && err_size)
                    snprintf(err, err_size, "%s:%zu: (document): nested deeper than %d levels",
                             name, line, MAX_FLOW_DEPTH);
                return GENCACHE_EPARSE;
            }
        } else if ((ch == ']' || ch == '}') && depth) {
            depth--;
        }
    }
    return GENCACHE_OK;
}

int gencache_config_parse(const char *name, const char *text, size_t len, gencache_config **out,
                          char *err, size_t err_size)
{
    if (err && err_size)
        err[0] = '\0';
    if (!out)
        return GENCACHE_EINVAL;
    *out = NULL;
    if (!text && len)
        return GENCACHE_EINVAL;
    if (!name)
        name = "<config>";
    int nrc = check_nesting(text ? text : "", len, name, err, err_size);
    if (nrc != GENCACHE_OK)
        return nrc;
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) {
        set_err(err, err_size, "%s: %s", name, "out of memory");
        return GENCACHE_ENOMEM;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)(text ? text : ""), len);
    int rc = load(&parser, name, out, err, err_size);
    yaml_parser_delete(&parser);
    return rc;
}

int gencache_config_load(const char *path, gencache_config **out, char *err, size_t err_size)
{
    if (err && err_size)
        err[0] = '\0';
    if (!out)
        return GENCACHE_EINVAL;
    *out = NULL;
    if (!path)
        return GENCACHE_EINVAL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        set_err(err, err_size, "%s: cannot open: %s", path, strerror(errno));
        return GENCACHE_EIO;
    }
    /* Read whole (a config is small) so that it can be checked before libyaml parses it. */
    char *text = malloc(MAX_CONFIG_BYTES + 1);
    if (!text) {
        fclose(f);
        set_err(err, err_size, "%s: %s", path, "out of memory");
        return GENCACHE_ENOMEM;
    }
    size_t len = fread(text, 1, MAX_CONFIG_BYTES + 1, f);
    int rc = GENCACHE_OK;
    if (ferror(f)) {
        set_err(err, err_size, "%s: cannot read: %s", path, strerror(errno));
        rc = GENCACHE_EIO;
    } else if (len > MAX_CONFIG_BYTES) {
        set_err(err, err_size, "%s: %s", path, "larger than 16 MiB: not a config file");
        rc = GENCACHE_ELIMIT;
    }
    fclose(f);
    if (rc == GENCACHE_OK)
        rc = gencache_config_parse(path, text, len, out, err, err_size);
    free(text);
    return rc;
}

void gencache_config_free(gencache_config *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < cfg->n_layers; i++)
        free(cfg->layers[i].fields);
    free(cfg->layers);
    free(cfg->models);
    free(cfg->tenants);
    free(cfg->preferred);
    free(cfg->preferred_line);
    for (size_t i = 0; cfg->sensitive && i < cfg->n_sensitive; i++)
        regfree(&cfg->sensitive[i]);
    free(cfg->sensitive);
    free(cfg->sensitive_src);
    for (size_t i = 0; i < cfg->n_owned; i++)
        free(cfg->owned[i]);
    free(cfg->owned);
    free(cfg->path);
    free(cfg);
}
