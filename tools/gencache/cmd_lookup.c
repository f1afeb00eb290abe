/*
 * cmd_lookup.c: `gencache lookup [--url U] [--token T] --layer L [-o FILE] [--json]
 * REQUEST.json|-`, a request looked up in a daemon's layer by its exact key or by a match the layer
 * allows (POST /v1/lookup). An image named by "path" is read here, its pixel digest and signature
 * (pHash, dHash, size) computed, and only those are sent: the daemon never opens a client's file.
 * Prints `KEY MATCH DISTANCE` (MATCH exact, perceptual, any_seed or similar_prompt; --json: an
 * object) and exits 0; a miss exits 1, like any failure it reports; bad usage 2. -o writes the
 * entry's bytes to FILE.
 */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>

#include "gencache.h"
#include "cli.h"
#include "client.h"

enum { O_URL = 256, O_TOKEN, O_LAYER, O_JSON };

/* Replaces {"path": FILE} in the request's image by the file's digest and signature. Returns 0,
 * or 2 after reporting why not. */
static int describe_image(json_t *request)
{
    json_t *image = json_object_get(request, "image");
    const char *path = json_string_value(json_object_get(image, "path"));
    if (!path)
        return 0;
    gencache_image *img = NULL;
    char digest[GENCACHE_DIGEST_MAX];
    gencache_image_sig sig;
    int rc = gencache_image_decode_file(path, NULL, &img);
    if (rc == GENCACHE_OK)
        rc = gencache_image_digest(img, digest);
    if (rc == GENCACHE_OK)
        rc = gencache_image_sig_get(img, &sig);
    gencache_image_free(img);
    if (rc != GENCACHE_OK) {
        cli_error("lookup: cannot read image %s: %s", path, gencache_strerror(rc));
        return 1;
    }
    char phash[17], dhash[17];
    snprintf(phash, sizeof phash, "%016llx", (unsigned long long)sig.phash);
    snprintf(dhash, sizeof dhash, "%016llx", (unsigned long long)sig.dhash);
    json_object_set_new(request, "image",
                        json_pack("{s:s,s:s,s:s,s:I,s:I}", "digest", digest, "phash", phash,
                                  "dhash", dhash, "width", (json_int_t)sig.width, "height",
                                  (json_int_t)sig.height));
    return 0;
}

/* The body {"layer": L, "request": ...}: the request's own text when it names no image path
 * (its numbers keep their digits), else the request rewritten with its image described. */
static char *lookup_body(const char *layer, const cli_buffer *text, int *status)
{
    json_error_t jerr;
    json_t *req = json_loadb(text->data ? text->data : "", text->len, 0, &jerr);
    if (!json_is_object(req)) {
        cli_error("lookup: the request is not a JSON object (%s, line %d)", jerr.text, jerr.line);
        json_decref(req);
        *status = 1;
        return NULL;
    }
    bool has_path = json_object_get(json_object_get(req, "image"), "path") != NULL;
    if (has_path && (*status = describe_image(req)) != 0) {
        json_decref(req);
        return NULL;
    }
    char *rewritten = has_path ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    json_t *lname = json_string(layer);
    char *quoted = lname ? json_dumps(lname, JSON_ENCODE_ANY) : NULL;
    json_decref(lname);
    const char *r = rewritten ? rewritten : text->data;
    size_t rlen = rewritten ? strlen(rewritten) : text->len;
    size_t cap = rlen + (quoted ? strlen(quoted) : 0) + 32;
    char *body = quoted && (rewritten || !has_path) ? malloc(cap) : NULL;
    if (body)
        snprintf(body, cap, "{\"layer\":%s,\"request\":%.*s}", quoted, (int)rlen, r);
    free(rewritten);
    free(quoted);
    if (!body) {
        cli_error("lookup: out of memory");
        *status = 1;
    }
    return body;
}

/* Prints the answer's X-Gencache-Key and X-Gencache-Match as KEY MATCH DISTANCE, or as JSON. */
static int print_match(const char *key, char *match, bool as_json)
{
    const char *d = strstr(match, "distance="), *of = strstr(match, "of="),
               *seed = strstr(match, "seed=");
    unsigned distance = d ? (unsigned)strtoul(d + 9, NULL, 10) : 0u;
    if (of)
        of += 3;
    if (seed)
        seed += 5;
    match[strcspn(match, ";")] = '\0';
    if (as_json)
        return cli_print_json(json_pack("{s:s,s:s,s:i,s:s?,s:s?}", "key", key, "match", match,
                                        "distance", (int)distance, "of", of, "seed", seed));
    if (printf("%s %s %u\n", key, match, distance) < 0 || fflush(stdout) != 0) {
        cli_error("lookup: cannot write to stdout");
        return 1;
    }
    return 0;
}

int cmd_lookup(int argc, char **argv)
{
    static const struct option opts[] = {
        {"url", required_argument, NULL, O_URL},     {"token", required_argument, NULL, O_TOKEN},
        {"layer", required_argument, NULL, O_LAYER}, {"output", required_argument, NULL, 'o'},
        {"json", no_argument, NULL, O_JSON},         {NULL, 0, NULL, 0}};
    const char *url = cli_default_url(), *token = cli_default_token(), *layer = NULL;
    const char *output = NULL;
    bool as_json = false;
    int opt;
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":o:", opts, NULL)) != -1) {
        switch (opt) {
        case O_URL:
            url = optarg;
            break;
        case O_TOKEN:
            token = optarg;
            break;
        case O_LAYER:
            layer = optarg;
            break;
        case 'o':
            output = optarg;
            break;
        case O_JSON:
            as_json = true;
            break;
        case ':':
            return cli_usage_error(argv[0], "missing value for", argv[optind - 1]);
        default:
            return cli_usage_error(argv[0], "unknown option", argv[optind - 1]);
        }
    }
    if (!layer)
        return cli_usage_error(argv[0], "needs", "--layer L");
    if (argc - optind != 1)
        return cli_usage_error(argv[0], "expected one REQUEST.json (or -)", NULL);
    cli_buffer text = {0};
    int status = cli_read_all(argv[optind], &text);
    char *body = status ? NULL : lookup_body(layer, &text, &status);
    free(text.data);
    if (!body)
        return status;
    cli_client cl;
    int rc = cli_client_open(&cl, url, token);
    if (rc) {
        free(body);
        return rc;
    }
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    rc = cli_client_request(&cl, "POST", "/v1/lookup", NULL, h, body, strlen(body));
    curl_slist_free_all(h);
    free(body);
    if (rc != 0) {
        status = 1;
    } else if (cl.status == 200) {
        char key[GENCACHE_KEY_MAX + 8] = "", match[256] = "";
        cli_client_header(&cl, "X-Gencache-Key", key, sizeof key);
        cli_client_header(&cl, "X-Gencache-Match", match, sizeof match);
        status = print_match(key, match, as_json);
        FILE *f = output ? fopen(output, "wb") : NULL;
        if (output &&
            (!f || fwrite(cl.body.data ? cl.body.data : "", 1, cl.body.len, f) != cl.body.len)) {
            cli_error("lookup: cannot write %s: %s", output, strerror(errno));
            status = 1;
        }
        if (f && fclose(f) != 0 && status == 0) {
            cli_error("lookup: cannot write %s: %s", output, strerror(errno));
            status = 1;
        }
    } else {
        bool miss = cl.status == 404 && strstr(cl.body.data ? cl.body.data : "", "\"not_found\"");
        if (miss && as_json)
            cli_print_json(cli_json_error(GENCACHE_ENOTFOUND, "no entry for this request"));
        else
            cli_client_report(&cl, "lookup");
        status = 1;
    }
    cli_client_close(&cl);
    return status;
}
