/*
 * client.c: the HTTP client the daemon verbs share (get, put, del, stats, prewarm, export,
 * import). It turns transport failures into one clear message and leaves the HTTP status to the
 * verb; the daemon's own JSON error message is what the user sees when a request is refused.
 */
#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "cli.h"
#include "client.h"

#define ERROR_BODY_MAX (64 * 1024)

bool cli_buffer_add(cli_buffer *b, const char *data, size_t n, size_t max)
{
    if (b->len + n > max)
        n = max > b->len ? max - b->len : 0;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *nd = realloc(b->data, cap);
        if (!nd)
            return false;
        b->data = nd;
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, n);
    b->len += n;
    b->data[b->len] = '\0';
    return true;
}

const char *cli_default_token(void)
{
    const char *t = getenv("GENCACHE_TOKEN");
    return t && *t ? t : NULL;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *userdata)
{
    cli_client *cl = userdata;
    size_t n = size * nmemb;
    long status = 0;
    curl_easy_getinfo(cl->curl, CURLINFO_RESPONSE_CODE, &status);
    if (status == 200 && cl->out) {
        if (fwrite(data, 1, n, cl->out) != n) {
            cl->out_failed = true;
            return 0;
        }
        return n;
    }
    /* Error documents are small; a collected 200 body (stats, tensors) is taken whole. */
    if (!cli_buffer_add(&cl->body, data, n, status == 200 ? SIZE_MAX / 2 : ERROR_BODY_MAX))
        return 0;
    return n;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *userdata)
{
    cli_client *cl = userdata;
    size_t n = size * nmemb;
    /* A new status line starts a new header block (after a 100 Continue, say). */
    if (n >= 5 && strncmp(data, "HTTP/", 5) == 0)
        cl->headers.len = 0;
    cli_buffer_add(&cl->headers, data, n, ERROR_BODY_MAX);
    return n;
}

int cli_client_open(cli_client *cl, const char *url, const char *token)
{
    memset(cl, 0, sizeof *cl);
    size_t n = strlen(url);
    while (n > 0 && url[n - 1] == '/')
        n--;
    if (n == 0 || n >= sizeof cl->base) {
        cli_error("bad daemon URL '%s'", url);
        return 2;
    }
    memcpy(cl->base, url, n);
    cl->base[n] = '\0';
    if (token) {
        for (const char *p = token; *p; p++) {
            if (!isgraph((unsigned char)*p)) {
                cli_error("the token must be printable ASCII without spaces");
                return 2;
            }
        }
        if ((size_t)snprintf(cl->auth, sizeof cl->auth, "Authorization: Bearer %s", token) >=
            sizeof cl->auth) {
            cli_error("the token is too long");
            return 2;
        }
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || !(cl->curl = curl_easy_init())) {
        cli_error("cannot initialize libcurl");
        return 1;
    }
    return 0;
}

void cli_client_close(cli_client *cl)
{
    if (cl->curl)
        curl_easy_cleanup(cl->curl);
    free(cl->body.data);
    free(cl->headers.data);
    memset(cl, 0, sizeof *cl);
    curl_global_cleanup();
}

/* Appends `key` to `out`, percent-encoding every byte a path may not carry as is. */
static void append_key(char *out, size_t cap, const char *key)
{
    size_t n = strlen(out);
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)key; *p && n + 4 < cap; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            *p == '_' || *p == '-' || *p == '.' || *p == '~' || *p == '/') {
            out[n++] = (char)*p;
        } else {
            out[n++] = '%';
            out[n++] = hex[*p >> 4];
            out[n++] = hex[*p & 15];
        }
    }
    out[n] = '\0';
}

int cli_client_request(cli_client *cl, const char *method, const char *path, const char *key,
                       const struct curl_slist *headers, const void *body, size_t body_len)
{
    char url[4096];
    snprintf(url, sizeof url, "%s%s", cl->base, path);
    if (key)
        append_key(url, sizeof url, key);
    /* The caller's headers, the token, and no "Expect: 100-continue" round trip. */
    struct curl_slist *h = NULL;
    for (const struct curl_slist *s = headers; s; s = s->next)
        h = curl_slist_append(h, s->data);
    if (cl->auth[0])
        h = curl_slist_append(h, cl->auth);
    h = curl_slist_append(h, "Expect:");

    CURL *c = cl->curl;
    curl_easy_reset(c);
    cl->body.len = 0;
    cl->headers.len = 0;
    cl->status = 0;
    cl->errbuf[0] = '\0';
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, cl->errbuf);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, cl);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, cl);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    /* The key goes to the daemon as typed: "result/../x" is a malformed key, not another path. */
    curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    if (strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    } else if (strcmp(method, "PUT") == 0 || strcmp(method, "POST") == 0) {
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body ? body : "");
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    } else if (strcmp(method, "GET") != 0) {
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    }
    CURLcode rc = curl_easy_perform(c);
    curl_slist_free_all(h);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &cl->status);
    if (cl->out_failed) {
        cli_error("cannot write the entry: %s", strerror(errno));
        return 1;
    }
    if (rc != CURLE_OK) {
        if (rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST ||
            rc == CURLE_OPERATION_TIMEDOUT)
            cli_error("cannot reach the daemon at %s: %s", cl->base,
                      cl->errbuf[0] ? cl->errbuf : curl_easy_strerror(rc));
        else
            cli_error("request to %s failed: %s", cl->base,
                      cl->errbuf[0] ? cl->errbuf : curl_easy_strerror(rc));
        return 1;
    }
    return 0;
}

bool cli_client_header(const cli_client *cl, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    const char *p = cl->headers.data;
    while (p && *p) {
        const char *eol = strchr(p, '\n');
        size_t n = eol ? (size_t)(eol - p) : strlen(p);
        if (n > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1, *end = p + n;
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
        p = eol ? eol + 1 : NULL;
    }
    return false;
}

int cli_client_report(const cli_client *cl, const char *what)
{
    json_t *doc = cl->body.data ? json_loads(cl->body.data, 0, NULL) : NULL;
    json_t *err = json_object_get(doc, "error");
    const char *code = json_string_value(json_object_get(err, "code"));
    const char *msg = json_string_value(json_object_get(err, "message"));
    if (cl->status == 404 && (!code || strcmp(code, "not_found") == 0))
        fprintf(stderr, "not found: %s\n", what);
    else if (msg)
        cli_error("%s: %s (HTTP %ld)", what, msg, cl->status);
    else
        cli_error("%s: the daemon answered HTTP %ld", what, cl->status);
    json_decref(doc);
    return 1;
}

int cli_read_all(const char *path, cli_buffer *b)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f) {
        cli_error("cannot read %s: %s", path, strerror(errno));
        return 1;
    }
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (!cli_buffer_add(b, chunk, n, SIZE_MAX / 2)) {
            cli_error("out of memory reading %s", path);
            if (f != stdin)
                fclose(f);
            return 1;
        }
    }
    bool failed = ferror(f);
    if (f != stdin)
        fclose(f);
    if (failed) {
        cli_error("cannot read %s: %s", path, strerror(errno));
        return 1;
    }
    return 0;
}
