/*
 * cmd_normalize.c: `gencache normalize`, prompt normalization from the command line. With TEXT it
 * prints one normalized text; with --lines it normalizes every line of a file (or stdin) in one
 * process, and with --jsonl every line holding a JSON string, so that tests and benchmarks can
 * push a whole trace through the library in seconds. --json prints each result as a JSON object
 * {"mode": M, "prompt": NORMALIZED} on its own line instead of the bare text.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "gencache.h"
#include "cli.h"

/* Reads a whole file ("-": stdin). Returns NULL (and reports) on failure. */
static char *read_all(const char *path, size_t *len)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f) {
        cli_error("%s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0)
            break;
        if (n == cap) {
            char *p = realloc(buf, cap * 2 + 1);
            if (!p) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = p;
            cap *= 2;
        }
    }
    int err = ferror(f);
    if (f != stdin)
        fclose(f);
    if (!buf || err) {
        cli_error("%s: read failed", path);
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

static int as_json; /* --json: one {"mode": M, "prompt": P} object per result */

/* Prints one normalized text: bare (with a newline), as a JSON string (jsonl), or as an object. */
static int emit(gencache_norm_mode mode, const char *norm, size_t len, int jsonl, FILE *out)
{
    if (!as_json && !jsonl) {
        fwrite(norm, 1, len, out);
        fputc('\n', out);
        return 0;
    }
    json_t *o = as_json ? json_pack("{s:s,s:s%}", "mode", gencache_norm_mode_name(mode), "prompt",
                                    norm, len)
                        : json_stringn(norm, len);
    char *text = o ? json_dumps(o, JSON_ENCODE_ANY | JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(o);
    if (!text)
        return 1;
    fputs(text, out);
    fputc('\n', out);
    free(text);
    return 0;
}

static int normalize_one(gencache_norm_mode mode, const char *s, size_t len, FILE *out, size_t line)
{
    char *norm = NULL;
    size_t norm_len = 0;
    int rc = gencache_normalize(mode, s, len, &norm, &norm_len);
    if (rc != 0) {
        if (line)
            cli_error("normalize: line %zu: %s", line, gencache_strerror(rc));
        else
            cli_error("normalize: %s", gencache_strerror(rc));
        return 1;
    }
    rc = emit(mode, norm, norm_len, 0, out);
    gencache_free(norm);
    if (rc)
        cli_error("normalize: out of memory");
    return rc;
}

static int normalize_jsonl(gencache_norm_mode mode, const char *s, size_t len)
{
    size_t line = 0;
    for (size_t i = 0; i < len;) {
        const char *nl = memchr(s + i, '\n', len - i);
        size_t end = nl ? (size_t)(nl - s) : len;
        line++;
        json_error_t jerr;
        json_t *v = json_loadb(s + i, end - i, JSON_DECODE_ANY, &jerr);
        if (!v || !json_is_string(v)) {
            cli_error("normalize: line %zu: expected a JSON string", line);
            json_decref(v);
            return 1;
        }
        char *norm = NULL;
        size_t norm_len = 0;
        int rc =
            gencache_normalize(mode, json_string_value(v), json_string_length(v), &norm, &norm_len);
        json_decref(v);
        if (rc != 0) {
            cli_error("normalize: line %zu: %s", line, gencache_strerror(rc));
            return 1;
        }
        rc = emit(mode, norm, norm_len, 1, stdout);
        gencache_free(norm);
        if (rc) {
            cli_error("normalize: line %zu: out of memory", line);
            return 1;
        }
        i = end + 1;
    }
    return 0;
}

int cmd_normalize(int argc, char **argv)
{
    gencache_norm_mode mode = GENCACHE_NORM_SAFE;
    int lines = 0, jsonl = 0;
    const char *arg = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--mode") == 0 && i + 1 < argc) {
            if (gencache_norm_mode_parse(argv[++i], &mode) != 0) {
                cli_error("normalize: unknown mode '%s' (exact, safe, clip, tokens, aggressive)",
                          argv[i]);
                return 2;
            }
        } else if (strcmp(argv[i], "--lines") == 0) {
            lines = 1;
        } else if (strcmp(argv[i], "--jsonl") == 0) {
            jsonl = 1;
        } else if (strcmp(argv[i], "--json") == 0) {
            as_json = 1;
        } else if (strcmp(argv[i], "--") == 0 && i + 1 < argc && !arg) {
            arg = argv[++i];
        } else if ((argv[i][0] != '-' || strcmp(argv[i], "-") == 0 || lines || jsonl) && !arg) {
            arg = argv[i];
        } else {
            cli_error("normalize: unexpected argument '%s'", argv[i]);
            return 2;
        }
    }
    if (!arg || (lines && jsonl)) {
        cli_error("usage: gencache normalize [--mode M] [--lines|--jsonl] [--json] TEXT|FILE|-");
        return 2;
    }
    if (!lines && !jsonl && strcmp(arg, "-") != 0)
        return normalize_one(mode, arg, strlen(arg), stdout, 0);

    size_t len = 0;
    char *text = read_all(arg, &len);
    if (!text)
        return 1;
    int rc = 0;
    if (jsonl) {
        rc = normalize_jsonl(mode, text, len);
    } else if (lines) {
        size_t line = 0;
        for (size_t i = 0; i < len && rc == 0;) {
            const char *nl = memchr(text + i, '\n', len - i);
            size_t end = nl ? (size_t)(nl - text) : len;
            rc = normalize_one(mode, text + i, end - i, stdout, ++line);
            i = end + 1;
        }
    } else {
        rc = normalize_one(mode, text, len, stdout, 0);
    }
    free(text);
    if (fflush(stdout) != 0) {
        cli_error("normalize: write failed");
        return 1;
    }
    return rc;
}
