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

typedef struct fetched {
    char *data;
    size_t len, cap;
    char dtype[16];
    char shape[GENCACHE_MAX_DIMS * 21 + 1];
    bool has_dtype, has_shape;
    bool too_big;
} fetched;

static size_t on_body(char *data, size_t size, size_t nmemb, void *userdata)
{
    fetched *f = userdata;
    size_t n = size * nmemb;
    if (f->len + n + 1 > f->cap) {
        size_t cap = f->cap ? f->cap : 65536;
        while (cap < f->len + n + 1)
            cap *= 2;
        char *p = realloc(f->data, cap);
        if (!p) {
            f->too_big = true;
            return 0;
        }
        f->data = p;
        f->cap = cap;
    }
    memcpy(f->data + f->len, data, n);
    f->len += n;
    f->data[f->len] = '\0';
    return n;
}

/* Copies the value of header `name` from a raw header line into out, trimmed. */
static bool header_value(const char *line, size_t n, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    if (n <= nl || strncasecmp(line, name, nl) != 0 || line[nl] != ':')
        return false;
    const char *v = line + nl + 1, *end = line + n;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && isspace((unsigned char)end[-1]))
        end--;
    size_t len = (size_t)(end - v);
    if (len >= cap)
        len = cap - 1;
    memcpy(out, v, len);
    out[len] = '\0';
    return true;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *userdata)
{
    fetched *f = userdata;
    size_t n = size * nmemb;
    if (n >= 5 && strncmp(data, "HTTP/", 5) == 0)
        f->has_dtype = f->has_shape = false;
    if (header_value(data, n, "X-Gencache-Dtype", f->dtype, sizeof f->dtype))
        f->has_dtype = true;
    if (header_value(data, n, "X-Gencache-Shape", f->shape, sizeof f->shape))
        f->has_shape = true;
    return n;
}

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

static void entry_url(char *out, size_t cap, const char *base, const char *key)
{
    size_t n = strlen(base);
    while (n > 0 && base[n - 1] == '/')
        n--;
    snprintf(out, cap, "%.*s/v1/entries/%s", (int)n, base, key);
}

static void setup(CURL *c, const char *url, char *errbuf)
{
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L);
}

/* Prints why a request failed: transport error, or the daemon's status and body. */
static void report(const char *what, const char *key, CURLcode rc, long status, const char *errbuf,
                   const fetched *f)
{
    if (rc != CURLE_OK)
        cli_error("%s %s: %s", what, key, errbuf[0] ? errbuf : curl_easy_strerror(rc));
    else if (status == 404)
        cli_error("%s %s: not found", what, key);
    else
        cli_error("%s %s: the daemon answered %ld%s%.300s", what, key, status,
                  f && f->len ? ": " : "", f && f->len ? f->data : "");
}

static int stdout_write(void *ud, const void *data, size_t size)
{
    return fwrite(data, 1, size, ud) == size ? 0 : GENCACHE_EIO;
}

int cmd_export(int argc, char **argv)
{
    const char *url = NULL, *out = NULL, *format = "safetensors";
    static const struct option longopts[] = {
        {"url", required_argument, NULL, 'u'},
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
        cli_error("usage: gencache export --format safetensors [--url URL] -o FILE KEY...");
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
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return 1;
    CURL *c = curl_easy_init();
    fetched *f = calloc((size_t)nkeys, sizeof *f);
    gencache_safetensors_tensor *t = calloc((size_t)nkeys, sizeof *t);
    int result = c && f && t ? 0 : 1;
    for (int i = 0; i < nkeys && result == 0; i++) {
        char u[4096], errbuf[CURL_ERROR_SIZE] = "";
        entry_url(u, sizeof u, url, keys[i]);
        setup(c, u, errbuf);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &f[i]);
        curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(c, CURLOPT_HEADERDATA, &f[i]);
        CURLcode rc = curl_easy_perform(c);
        long status = 0;
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        if (rc != CURLE_OK || status != 200) {
            report("export", keys[i], rc, status, errbuf, &f[i]);
            result = 1;
            break;
        }
        t[i].name = keys[i];
        t[i].data = f[i].data ? f[i].data : "";
        t[i].size = f[i].len;
        if (!f[i].has_dtype || !f[i].has_shape) {
            cli_error("export %s: not a tensor entry (no X-Gencache-Dtype and X-Gencache-Shape)",
                      keys[i]);
            result = 1;
        } else if (gencache_dtype_parse(f[i].dtype, &t[i].dtype) != GENCACHE_OK ||
                   !parse_shape(f[i].shape, &t[i].ndim, t[i].shape) ||
                   gencache_tensor_check(t[i].dtype, t[i].ndim, t[i].shape, t[i].size) !=
                       GENCACHE_OK) {
            cli_error("export %s: dtype '%s' and shape '%s' do not describe its %zu bytes", keys[i],
                      f[i].dtype, f[i].shape, f[i].len);
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
    if (c)
        curl_easy_cleanup(c);
    curl_global_cleanup();
    return result;
}

int cmd_import(int argc, char **argv)
{
    const char *url = NULL, *codec = NULL, *ttl = NULL;
    static const struct option longopts[] = {
        {"url", required_argument, NULL, 'u'},
        {"codec", required_argument, NULL, 'c'},
        {"ttl", required_argument, NULL, 't'},
        {NULL, 0, NULL, 0},
    };
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (ch) {
        case 'u':
            url = optarg;
            break;
        case 'c':
            codec = optarg;
            break;
        case 't':
            ttl = optarg;
            break;
        default:
            return 2;
        }
    }
    if (optind != argc - 1) {
        cli_error("usage: gencache import [--url URL] [--codec C] [--ttl SECONDS] FILE");
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
    int result = 0;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        gencache_safetensors_close(st);
        return 1;
    }
    CURL *c = curl_easy_init();
    if (!c)
        result = 1;
    for (size_t i = 0; i < n && result == 0; i++) {
        gencache_safetensors_tensor t;
        gencache_safetensors_get(st, i, &t);
        char u[4096], errbuf[CURL_ERROR_SIZE] = "", hdr[GENCACHE_MAX_DIMS * 21 + 64];
        entry_url(u, sizeof u, url, t.name);
        setup(c, u, errbuf);
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
        h = curl_slist_append(h, "Expect:");
        fetched reply = {0};
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, "PUT");
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, t.size ? t.data : "");
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)t.size);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &reply);
        CURLcode crc = curl_easy_perform(c);
        long status = 0;
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        if (crc != CURLE_OK || status < 200 || status > 299) {
            report("import", t.name, crc, status, errbuf, &reply);
            result = 1;
        }
        free(reply.data);
        curl_slist_free_all(h);
    }
    if (result == 0)
        printf("imported %zu tensors from %s\n", n, path);
    if (c)
        curl_easy_cleanup(c);
    curl_global_cleanup();
    gencache_safetensors_close(st);
    return result;
}
