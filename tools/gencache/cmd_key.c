/*
 * cmd_key.c: `gencache key`, the keys of a request from the command line: one "<layer>/<hex>"
 * line per layer (every layer of the keyspace unless --layer names some). With --config FILE
 * the layers and models are those of a gencache.yaml, read by the library as the daemon reads
 * it, so the keys printed are the keys the daemon derives. A layer the
 * request has no key in gets a note on stderr instead of a line. --lines also prints each
 * layer's canonical document and --json prints everything as one JSON object, for checking other
 * implementations against this one. --jsonl is the bulk mode: one request per input line, one
 * JSON object of keys per output line, in order, in one process (a line that is not a request
 * gets an error object on its output line, and the rest go on).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "gencache.h"
#include "cli.h"

#define MAX_LAYERS_ARG 32

static char *read_request(const char *path, size_t *len)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f) {
        cli_error("key: %s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = GENCACHE_REQUEST_MAX_BYTES + 2;
    char *buf = malloc(cap);
    size_t n = buf ? fread(buf, 1, cap - 1, f) : 0;
    int err = ferror(f);
    if (f != stdin)
        fclose(f);
    if (!buf || err) {
        cli_error("key: %s: read failed", path);
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* The keyspace of a cache opened (memory only) with the config's layers and models. Returns 0,
 * 1 after printing why the file was refused, or a GENCACHE_* code. */
static int keyspace_of_config(const char *path, gencache_keyspace **ks)
{
    gencache_config *cfg = NULL;
    char err[GENCACHE_CONFIG_ERR_MAX];
    int rc = gencache_config_load(path, &cfg, err, sizeof err);
    if (rc != GENCACHE_OK) {
        cli_error("key: %s", err[0] ? err : gencache_strerror(rc));
        return 1;
    }
    gencache_options o;
    gencache_options_init(&o); /* the file's tiers play no part in keys */
    o.ghost_max_entries = 0;
    gencache *cache = NULL;
    rc = gencache_open_config(&cache, cfg, &o);
    if (rc == GENCACHE_OK)
        rc = gencache_keyspace_from_cache(cache, ks);
    gencache_close(cache); /* the keyspace outlives it */
    gencache_config_free(cfg);
    return rc;
}

/* Writes s as a JSON string. Layer names and keys are plain ASCII; this keeps the bulk mode's
 * output loop free of allocations while staying correct for any bytes a config might allow. */
static void put_json_string(const char *s, FILE *out)
{
    putc('"', out);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(out, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(out, "\\u%04x", *p);
        else
            putc(*p, out);
    }
    putc('"', out);
}

static void put_line_error(size_t line, int rc, const char *msg, FILE *out)
{
    json_t *o = json_pack("{s:{s:s,s:s,s:I}}", "error", "code", gencache_errname(rc), "message",
                          msg, "line", (json_int_t)line);
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    if (text)
        fputs(text, out);
    else
        fputs("{\"error\":{\"code\":\"ENOMEM\",\"message\":\"out of memory\"}}", out);
    putc('\n', out);
    free(text);
    json_decref(o);
}

/* The keys of one request line: {"keys":{"<layer>":"<key>",...}} plus "uncacheable":[...] for
 * the layers it has no key in. Returns 0, or 1 when the line got an error object. */
static int key_line(const gencache_keyspace *ks, const char *text, size_t len, size_t line,
                    const char *const *layers, size_t n_layers, const char *tenant, FILE *out)
{
    if (len == 0) {
        put_line_error(line, GENCACHE_EPARSE, "empty line: expected a request JSON object", out);
        return 1;
    }
    gencache_request *req = NULL;
    char err[GENCACHE_ERRMSG_MAX];
    err[0] = '\0';
    int rc = gencache_request_parse_ex(ks, text, len, GENCACHE_REQUEST_TRUST_TENANT, &req, err,
                                       sizeof err);
    if (rc == 0 && tenant)
        rc = gencache_request_set_tenant(req, tenant);
    if (rc != 0) {
        put_line_error(line, rc, err[0] ? err : gencache_strerror(rc), out);
        gencache_request_free(req);
        return 1;
    }
    char keys[MAX_LAYERS_ARG][GENCACHE_KEY_MAX];
    bool have[MAX_LAYERS_ARG];
    size_t n_unc = 0;
    for (size_t i = 0; i < n_layers; i++) {
        rc = gencache_request_key(req, layers[i], keys[i], sizeof keys[i]);
        have[i] = rc == 0;
        if (rc == GENCACHE_EUNCACHEABLE) {
            n_unc++;
        } else if (rc != 0) {
            put_line_error(line, rc, gencache_strerror(rc), out);
            gencache_request_free(req);
            return 1;
        }
    }
    gencache_request_free(req);
    fputs("{\"keys\":{", out);
    for (size_t i = 0, first = 1; i < n_layers; i++) {
        if (!have[i])
            continue;
        if (!first)
            putc(',', out);
        first = 0;
        put_json_string(layers[i], out);
        putc(':', out);
        put_json_string(keys[i], out);
    }
    putc('}', out);
    if (n_unc) {
        fputs(",\"uncacheable\":[", out);
        for (size_t i = 0, first = 1; i < n_layers; i++) {
            if (have[i])
                continue;
            if (!first)
                putc(',', out);
            first = 0;
            put_json_string(layers[i], out);
        }
        putc(']', out);
    }
    fputs("}\n", out);
    return 0;
}

/* --jsonl: every line of path ("-": stdin) through key_line(). Returns the exit status: 0, or 1
 * when a line got an error object or the input could not be read. */
static int key_jsonl(const gencache_keyspace *ks, const char *path, const char *const *layers,
                     size_t n_layers, const char *tenant)
{
    FILE *in = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!in) {
        cli_error("key: %s: %s", path, strerror(errno));
        return 1;
    }
    static char outbuf[1 << 20];
    setvbuf(stdout, outbuf, _IOFBF, sizeof outbuf);
    char *text = NULL;
    size_t cap = 0, line = 0;
    ssize_t n;
    int status = 0;
    while ((n = getline(&text, &cap, in)) >= 0) {
        size_t len = (size_t)n;
        line++;
        if (len > 0 && text[len - 1] == '\n')
            len--;
        if (len > 0 && text[len - 1] == '\r')
            len--;
        if (len > GENCACHE_REQUEST_MAX_BYTES) {
            put_line_error(line, GENCACHE_ELIMIT, "request larger than the limit", stdout);
            status = 1;
            continue;
        }
        status |= key_line(ks, text, len, line, layers, n_layers, tenant, stdout);
    }
    if (ferror(in)) {
        cli_error("key: %s: read failed after line %zu", path, line);
        status = 1;
    }
    free(text);
    if (in != stdin)
        fclose(in);
    return status;
}

static bool keyspace_has_layer(const gencache_keyspace *ks, const char *name)
{
    for (size_t i = 0; i < gencache_keyspace_layer_count(ks); i++)
        if (strcmp(gencache_keyspace_layer_name(ks, i), name) == 0)
            return true;
    return false;
}

int cmd_key(int argc, char **argv)
{
    const char *layers[MAX_LAYERS_ARG];
    size_t n_layers = 0;
    const char *path = NULL, *tenant = NULL, *config = NULL;
    int explicit_layers = 0;
    int lines = 0, as_json = 0, jsonl = 0, have_mode = 0;
    gencache_norm_mode mode = GENCACHE_NORM_SAFE;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--layer") == 0 && i + 1 < argc) {
            if (n_layers == MAX_LAYERS_ARG) {
                cli_error("key: too many --layer options");
                return 2;
            }
            layers[n_layers++] = argv[++i];
        } else if (strcmp(argv[i], "--mode") == 0 && i + 1 < argc) {
            if (gencache_norm_mode_parse(argv[++i], &mode) != 0) {
                cli_error("key: unknown mode '%s' (exact, safe, clip, tokens, aggressive)",
                          argv[i]);
                return 2;
            }
            have_mode = 1;
        } else if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            config = argv[++i];
        } else if (strcmp(argv[i], "--tenant") == 0 && i + 1 < argc) {
            tenant = argv[++i];
        } else if (strcmp(argv[i], "--lines") == 0) {
            lines = 1;
        } else if (strcmp(argv[i], "--json") == 0) {
            as_json = 1;
        } else if (strcmp(argv[i], "--jsonl") == 0) {
            jsonl = 1;
        } else if ((argv[i][0] != '-' || strcmp(argv[i], "-") == 0) && !path) {
            path = argv[i];
        } else {
            cli_error("key: unexpected argument '%s'", argv[i]);
            return 2;
        }
    }
    if (jsonl && !path)
        path = "-";
    if (!path || lines + as_json + jsonl > 1) {
        cli_error("usage: gencache key [--config FILE] [--layer L]... [--mode M] [--tenant T] "
                  "[--lines|--json|--jsonl] REQUEST.json|REQUESTS.jsonl|-");
        return 2;
    }

    gencache_keyspace *ks = NULL;
    int rc = config ? keyspace_of_config(config, &ks) : gencache_keyspace_new(&ks);
    if (rc == 1)
        return 1;
    if (rc == 0 && have_mode)
        rc = gencache_keyspace_set_mode(ks, NULL, mode);
    if (rc != 0) {
        cli_error("key: %s", gencache_strerror(rc));
        gencache_keyspace_free(ks);
        return 1;
    }
    /* In bulk mode a layer that does not exist is an error of the command, not of every line. */
    for (size_t i = 0; jsonl && i < n_layers; i++) {
        if (!keyspace_has_layer(ks, layers[i])) {
            cli_error("key: unknown layer '%s'", layers[i]);
            gencache_keyspace_free(ks);
            return 1;
        }
    }
    if (n_layers == 0) {
        for (size_t i = 0; i < gencache_keyspace_layer_count(ks) && i < MAX_LAYERS_ARG; i++)
            layers[n_layers++] = gencache_keyspace_layer_name(ks, i);
    } else {
        explicit_layers = 1;
    }
    if (jsonl) {
        rc = key_jsonl(ks, path, layers, n_layers, tenant);
        gencache_keyspace_free(ks);
        if (fflush(stdout) != 0) {
            cli_error("key: write failed");
            return 1;
        }
        return rc;
    }
    size_t len = 0;
    char *json = read_request(path, &len);
    if (!json) {
        gencache_keyspace_free(ks);
        return 1;
    }
    if (len > GENCACHE_REQUEST_MAX_BYTES) {
        cli_error("key: %s: request larger than %u bytes", path, GENCACHE_REQUEST_MAX_BYTES);
        free(json);
        gencache_keyspace_free(ks);
        return 1;
    }
    gencache_request *req = NULL;
    char err[GENCACHE_ERRMSG_MAX];
    rc = gencache_request_parse_ex(ks, json, len, GENCACHE_REQUEST_TRUST_TENANT, &req, err,
                                   sizeof err);
    if (rc == 0 && tenant)
        rc = gencache_request_set_tenant(req, tenant);
    if (rc != 0) {
        cli_error("key: %s: %s (%s)", path, err[0] ? err : gencache_strerror(rc),
                  gencache_errname(rc));
        free(json);
        gencache_keyspace_free(ks);
        gencache_request_free(req);
        return 1;
    }
    int status = 0;
    json_t *jkeys = json_object(), *jcanon = json_object(), *junc = json_array();
    for (size_t i = 0; i < n_layers; i++) {
        char key[GENCACHE_KEY_MAX];
        rc = gencache_request_key(req, layers[i], key, sizeof key);
        if (rc == GENCACHE_ENOTFOUND) {
            cli_error("key: unknown layer '%s'", layers[i]);
            status = 1;
            continue;
        }
        if (rc == GENCACHE_EUNCACHEABLE) {
            if (!as_json)
                cli_error("key: layer '%s': not cacheable: %s", layers[i],
                          gencache_request_uncacheable_reason(req, layers[i]));
            json_array_append_new(junc, json_string(layers[i]));
            if (explicit_layers)
                status = 1;
            continue;
        }
        char *canon = NULL;
        size_t canon_len = 0;
        if (rc == 0)
            rc = gencache_request_canonical(req, layers[i], &canon, &canon_len);
        if (rc != 0) {
            cli_error("key: layer '%s': %s", layers[i], gencache_strerror(rc));
            status = 1;
            continue;
        }
        if (as_json) {
            json_object_set_new(jkeys, layers[i], json_string(key));
            json_object_set_new(jcanon, layers[i], json_stringn(canon, canon_len));
        } else {
            printf("%s\n", key);
            if (lines) {
                fwrite(canon, 1, canon_len, stdout);
                putchar('\n');
            }
        }
        gencache_free(canon);
    }
    if (as_json) {
        json_t *o = json_object();
        json_object_set_new(o, "keys", jkeys);
        json_object_set_new(o, "canonical", jcanon);
        json_object_set_new(o, "uncacheable", junc);
        json_object_set_new(o, "mode",
                            json_string(gencache_norm_mode_name(gencache_request_mode(req))));
        const char *p = gencache_request_prompt(req);
        json_object_set_new(o, "prompt", p ? json_string(p) : json_null());
        char *text = json_dumps(o, JSON_INDENT(2));
        if (text)
            puts(text);
        free(text);
        json_decref(o);
    } else {
        json_decref(jkeys);
        json_decref(jcanon);
        json_decref(junc);
    }
    free(json);
    gencache_request_free(req);
    gencache_keyspace_free(ks);
    if (fflush(stdout) != 0) {
        cli_error("key: write failed");
        return 1;
    }
    return status;
}
