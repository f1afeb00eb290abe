/*
 * cmd_tensor.c: `gencache export` and `gencache import`, which move tensor entries between a
 * gencached daemon and safetensors files (Hugging Face's format). Export fetches each key with
 * GET /v1/entries/{key}, takes its dtype and shape from the X-Gencache-Dtype and
 * X-Gencache-Shape headers, and writes one file whose tensor names are the keys. Import checks
 * the whole file (libgencache refuses malformed ones) and every tensor name before the first
 * PUT, so a bad file stores nothing.
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "gencache.h"
#include "cli.h"
#include "client.h"

/* "<layer>/<64 lowercase hex>", the form every key has. */
static bool key_form(const char *key)
{
    const char *slash = strchr(key, '/');
    if (!slash || slash == key || slash - key > 32)
        return false;
    for (const char *p = key; p < slash; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_'))
            return false;
    const char *h = slash + 1;
    if (strlen(h) != 64)
        return false;
    for (; *h; h++)
        if (!((*h >= '0' && *h <= '9') || (*h >= 'a' && *h <= 'f')))
            return false;
    return true;
}

/* Parses "1,4,64,64" (or "" for a scalar). */
static bool parse_shape(const char *s, uint32_t *ndim, int64_t *shape)
{
    *ndim = 0;
    if (!*s)
        return true;
    for (;;) {
        if (*ndim == GENCACHE_MAX_DIMS || !isdigit((unsigned char)*s))
            return false;
        errno = 0;
        char *end;
        unsigned long long v = strtoull(s, &end, 10);
        if (errno || v > INT64_MAX)
            return false;
        shape[(*ndim)++] = (int64_t)v;
        if (*end == '\0')
            return true;
        if (*end != ',')
            return false;
        s = end + 1;
    }
}

static int stdout_write(void *ud, const void *data, size_t size)
{
    return fwrite(data, 1, size, ud) == size ? 0 : GENCACHE_EIO;
}

int cmd_export(int argc, char **argv)
{
    const char *url = NULL, *out = NULL, *format = "safetensors", *token = cli_default_token();
    static const struct option longopts[] = {
        {"url", required_argument, NULL, 'u'},
        {"token", required_argument, NULL, 'k'},
        {"format", required_argument, NULL, 'f'},
        {"output", required_argument, NULL, 'o'},
        {NULL, 0, NULL, 0},
    };
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "o:", longopts, NULL)) != -1) {
        switch (ch) {
        case 'u':
            url = optarg;
            break;
        case 'k':
            token = optarg;
            break;
        case 'f':
            format = optarg;
            break;
        case 'o':
            out = optarg;
            break;
        default:
            return 2;
        }
    }
    if (strcmp(format, "safetensors") != 0) {
        cli_error("unknown format '%s' (only safetensors)", format);
        return 2;
    }
    if (!out || optind >= argc) {
        cli_error(
            "usage: gencache export --format safetensors [--url URL] [--token T] -o FILE KEY...");
        return 2;
    }
    int nkeys = argc - optind;
    char **keys = argv + optind;
    for (int i = 0; i < nkeys; i++) {
        if (!key_form(keys[i])) {
            cli_error("'%s' is not a key (<layer>/<64 lowercase hex>)", keys[i]);
            return 2;
        }
        for (int j = 0; j < i; j++) {
            if (strcmp(keys[i], keys[j]) == 0) {
                cli_error("key %s given twice", keys[i]);
                return 2;
            }
        }
    }
    if (!url)
        url = cli_default_url();
    cli_client cl;
    int result = cli_client_open(&cl, url, token);
    if (result)
        return result;
    cli_buffer *f = calloc((size_t)nkeys, sizeof *f);
    gencache_safetensors_tensor *t = calloc((size_t)nkeys, sizeof *t);
    if (!f || !t)
        result = 1;
    for (int i = 0; i < nkeys && result == 0; i++) {
        if (cli_client_request(&cl, "GET", "/v1/entries/", keys[i], NULL, NULL, 0) != 0) {
            result = 1;
            break;
        }
        if (cl.status != 200) {
            result = cli_client_report(&cl, keys[i]);
            break;
        }
        /* The body stays with this tensor until the file is written. */
        f[i] = cl.body;
        memset(&cl.body, 0, sizeof cl.body);
        char dtype[16], shape[GENCACHE_MAX_DIMS * 21 + 1];
        bool has_dtype = cli_client_header(&cl, "X-Gencache-Dtype", dtype, sizeof dtype);
        bool has_shape = cli_client_header(&cl, "X-Gencache-Shape", shape, sizeof shape);
        t[i].name = keys[i];
        t[i].data = f[i].data ? f[i].data : "";
        t[i].size = f[i].len;
        if (!has_dtype || !has_shape) {
            cli_error("export %s: not a tensor entry (no X-Gencache-Dtype and X-Gencache-Shape)",
                      keys[i]);
            result = 1;
        } else if (gencache_dtype_parse(dtype, &t[i].dtype) != GENCACHE_OK ||
                   !parse_shape(shape, &t[i].ndim, t[i].shape) ||
                   gencache_tensor_check(t[i].dtype, t[i].ndim, t[i].shape, t[i].size) !=
                       GENCACHE_OK) {
            cli_error("export %s: dtype '%s' and shape '%s' do not describe its %zu bytes", keys[i],
                      dtype, shape, f[i].len);
            result = 1;
        }
    }
    if (result == 0) {
        int rc;
        if (strcmp(out, "-") == 0)
            rc = gencache_safetensors_write_to(stdout_write, stdout, t, (size_t)nkeys, NULL, 0);
        else
            rc = gencache_safetensors_write(out, t, (size_t)nkeys, NULL, 0);
        if (rc == GENCACHE_OK && strcmp(out, "-") == 0 && fflush(stdout) != 0)
            rc = GENCACHE_EIO;
        if (rc != GENCACHE_OK) {
            cli_error("cannot write %s: %s", out, gencache_strerror(rc));
            result = 1;
        }
    }
    for (int i = 0; f && i < nkeys; i++)
        free(f[i].data);
    free(f);
    free(t);
    cli_client_close(&cl);
    return result;
}

int cmd_import(int argc, char **argv)
{
    const char *url = NULL, *codec = NULL, *ttl = NULL, *token = cli_default_token();
    static const struct option longopts[] = {
        {"url", required_argument, NULL, 'u'},   {"token", required_argument, NULL, 'k'},
        {"codec", required_argument, NULL, 'c'}, {"ttl", required_argument, NULL, 't'},
        {"json", no_argument, NULL, 'j'},        {NULL, 0, NULL, 0},
    };
    bool as_json = false;
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (ch) {
        case 'u':
            url = optarg;
            break;
        case 'k':
            token = optarg;
            break;
        case 'c':
            codec = optarg;
            break;
        case 't':
            ttl = optarg;
            break;
        case 'j':
            as_json = true;
            break;
        default:
            return 2;
        }
    }
    if (optind != argc - 1) {
        cli_error(
            "usage: gencache import [--url URL] [--token T] [--codec C] [--ttl SECONDS] FILE");
        return 2;
    }
    gencache_codec cd;
    if (codec && gencache_codec_parse(codec, &cd) != GENCACHE_OK) {
        cli_error("unknown codec '%s'", codec);
        return 2;
    }
    const char *path = argv[optind];
    char err[512] = "";
    gencache_safetensors_options so;
    gencache_safetensors_options_init(&so);
    so.errbuf = err;
    so.errbuf_size = sizeof err;
    gencache_safetensors *st;
    int rc = gencache_safetensors_open(path, &so, &st);
    if (rc != GENCACHE_OK) {
        cli_error("%s: %s", path, err[0] ? err : gencache_strerror(rc));
        return 1;
    }
    size_t n = gencache_safetensors_count(st);
    for (size_t i = 0; i < n; i++) {
        gencache_safetensors_tensor t;
        gencache_safetensors_get(st, i, &t);
        if (!key_form(t.name)) {
            cli_error("%s: tensor '%.100s' is not named by a key (<layer>/<64 lowercase hex>)",
                      path, t.name);
            gencache_safetensors_close(st);
            return 1;
        }
    }
    if (!url)
        url = cli_default_url();
    cli_client cl;
    int result = cli_client_open(&cl, url, token);
    for (size_t i = 0; i < n && result == 0; i++) {
        gencache_safetensors_tensor t;
        gencache_safetensors_get(st, i, &t);
        char hdr[GENCACHE_MAX_DIMS * 21 + 64];
        struct curl_slist *h = NULL;
        snprintf(hdr, sizeof hdr, "X-Gencache-Dtype: %s", gencache_dtype_name(t.dtype));
        h = curl_slist_append(h, hdr);
        size_t len = (size_t)snprintf(hdr, sizeof hdr, "X-Gencache-Shape:");
        for (uint32_t d = 0; d < t.ndim; d++)
            len += (size_t)snprintf(hdr + len, sizeof hdr - len, "%s%" PRId64, d ? "," : " ",
                                    t.shape[d]);
        if (t.ndim == 0)
            snprintf(hdr, sizeof hdr, "X-Gencache-Shape;"); /* curl's way to send it empty */
        h = curl_slist_append(h, hdr);
        h = curl_slist_append(h, "Content-Type: application/octet-stream");
        if (codec) {
            snprintf(hdr, sizeof hdr, "X-Gencache-Codec: %s", codec);
            h = curl_slist_append(h, hdr);
        }
        if (ttl) {
            snprintf(hdr, sizeof hdr, "X-Gencache-TTL: %.30s", ttl);
            h = curl_slist_append(h, hdr);
        }
        if (cli_client_request(&cl, "PUT", "/v1/entries/", t.name, h, t.data, t.size) != 0)
            result = 1;
        else if (cl.status < 200 || cl.status > 299)
            result = cli_client_report(&cl, t.name);
        curl_slist_free_all(h);
    }
    if (result == 0 && as_json)
        result = cli_print_json(json_pack("{s:s,s:I}", "file", path, "imported", (json_int_t)n));
    else if (result == 0)
        printf("imported %zu tensors from %s\n", n, path);
    cli_client_close(&cl);
    gencache_safetensors_close(st);
    return result;
}
