/*
 * cmd_prewarm.c: `gencache prewarm [--url URL] FILE.jsonl`. It posts the file (one request JSON
 * per line) to the daemon's POST /v1/prewarm, then polls GET /v1/jobs/{id} until the job is done,
 * drawing a progress bar on stderr when stderr is a terminal (a plain progress line otherwise),
 * and prints a summary. The exit status is 1 if any request failed, so scripts can rely on it.
 */
#include <getopt.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "cli.h"

#define MAX_FILE      (1024ull << 20)
#define MAX_ANSWER    (1u << 20)
#define POLL_MS       200
#define BAR_WIDTH     30
#define PLAIN_EVERY_S 2.0

typedef struct answer {
    char *data;
    size_t len;
} answer;

static size_t on_body(char *data, size_t size, size_t nmemb, void *userdata)
{
    answer *a = userdata;
    size_t n = size * nmemb;
    if (a->len + n > MAX_ANSWER)
        return n; /* job documents are small: what is past the cap is dropped */
    char *nd = realloc(a->data, a->len + n + 1);
    if (!nd)
        return 0;
    memcpy(nd + a->len, data, n);
    a->len += n;
    nd[a->len] = '\0';
    a->data = nd;
    return n;
}

/* One request; *status is the HTTP status, *doc the JSON body (or NULL). Returns 0, or 1 after
 * reporting a transport error. */
static int call(const char *base, const char *method, const char *path, const char *token,
                const char *body, size_t len, long *status, json_t **doc)
{
    *doc = NULL;
    *status = 0;
    char url[2048];
    snprintf(url, sizeof url, "%s%s", base, path);
    CURL *h = curl_easy_init();
    if (!h) {
        cli_error("prewarm: cannot start libcurl");
        return 1;
    }
    struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: application/x-ndjson");
    char auth[1100];
    if (token) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
        hdrs = curl_slist_append(hdrs, auth);
    }
    hdrs = curl_slist_append(hdrs, "Expect:");
    answer a = {0};
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    if (body) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    }
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &a);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 60L);
    CURLcode rc = curl_easy_perform(h);
    if (rc == CURLE_OK)
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(h);
    if (rc != CURLE_OK) {
        cli_error("prewarm: %s %s: %s", method, url, curl_easy_strerror(rc));
        free(a.data);
        return 1;
    }
    if (a.data)
        *doc = json_loads(a.data, 0, NULL);
    free(a.data);
    return 0;
}

static void report_http_error(const char *what, long status, json_t *doc)
{
    json_t *err = json_object_get(doc, "error");
    const char *msg = json_string_value(json_object_get(err, "message"));
    cli_error("prewarm: %s: HTTP %ld%s%s", what, status, msg ? ": " : "", msg ? msg : "");
}

static long long field(json_t *doc, const char *name)
{
    json_t *v = json_object_get(doc, name);
    return json_is_integer(v) ? (long long)json_integer_value(v) : 0;
}

static const char *id_of(json_t *job)
{
    const char *id = json_string_value(json_object_get(job, "id"));
    return id ? id : "?";
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void draw(json_t *job, bool tty, double elapsed)
{
    long long total = field(job, "total"), done = field(job, "done");
    double frac = total ? (double)done / (double)total : 1.0;
    if (tty) {
        char bar[BAR_WIDTH + 1];
        int filled = (int)(frac * BAR_WIDTH + 0.5);
        for (int i = 0; i < BAR_WIDTH; i++)
            bar[i] = i < filled ? '#' : '.';
        bar[BAR_WIDTH] = '\0';
        fprintf(stderr, "\r[%s] %3.0f%% %lld/%lld  hits %lld  misses %lld  errors %lld  %.0fs ",
                bar, 100 * frac, done, total, field(job, "hits"), field(job, "misses"),
                field(job, "errors"), elapsed);
    } else {
        fprintf(stderr, "prewarm: %lld/%lld done (%.0f%%), %lld errors, %.1fs\n", done, total,
                100 * frac, field(job, "errors"), elapsed);
    }
    fflush(stderr);
}

static int read_file(const char *path, char **out, size_t *len)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f) {
        cli_error("prewarm: cannot open %s", path);
        return 1;
    }
    size_t cap = 1 << 16, n = 0;
    char *data = malloc(cap);
    size_t got;
    while (data && (got = fread(data + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            if (cap >= MAX_FILE) {
                cli_error("prewarm: %s is larger than %llu bytes", path,
                          (unsigned long long)MAX_FILE);
                free(data);
                data = NULL;
                break;
            }
            char *nd = realloc(data, cap * 2);
            if (!nd) {
                free(data);
                data = NULL;
                break;
            }
            data = nd;
            cap *= 2;
        }
    }
    bool bad = ferror(f);
    if (f != stdin)
        fclose(f);
    if (!data || bad) {
        if (bad)
            cli_error("prewarm: cannot read %s", path);
        free(data);
        return 1;
    }
    *out = data;
    *len = n;
    return 0;
}

int cmd_prewarm(int argc, char **argv)
{
    enum { O_URL = 256, O_TOKEN };
    static const struct option opts[] = {{"url", required_argument, NULL, O_URL},
                                         {"token", required_argument, NULL, O_TOKEN},
                                         {NULL, 0, NULL, 0}};
    const char *url = cli_default_url();
    const char *token = getenv("GENCACHE_TOKEN");
    int opt;
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        switch (opt) {
        case O_URL:
            url = optarg;
            break;
        case O_TOKEN:
            token = optarg;
            break;
        case ':':
            cli_error("prewarm: missing value for %s", argv[optind - 1]);
            return 2;
        default:
            cli_error("prewarm: unknown option %s", argv[optind - 1]);
            return 2;
        }
    }
    if (optind + 1 != argc) {
        cli_error("prewarm: expected one FILE.jsonl (or - for stdin)");
        return 2;
    }
    if (token && !*token)
        token = NULL;
    char base[1024];
    snprintf(base, sizeof base, "%s", url);
    size_t bl = strlen(base);
    while (bl && base[bl - 1] == '/')
        base[--bl] = '\0';

    char *data = NULL;
    size_t len = 0;
    if (read_file(argv[optind], &data, &len) != 0)
        return 1;
    long status;
    json_t *doc;
    int rc = call(base, "POST", "/v1/prewarm", token, data, len, &status, &doc);
    free(data);
    if (rc)
        return 1;
    const char *id = json_string_value(json_object_get(doc, "job"));
    if (status != 202 || !id) {
        report_http_error("submitting the job", status, doc);
        json_decref(doc);
        return 1;
    }
    char path[256];
    snprintf(path, sizeof path, "/v1/jobs/%s", id);
    json_decref(doc);

    bool tty = isatty(STDERR_FILENO);
    double t0 = now_s(), last_plain = 0;
    json_t *job = NULL;
    for (;;) {
        rc = call(base, "GET", path, token, NULL, 0, &status, &doc);
        if (rc)
            return 1;
        if (status != 200 || !json_is_object(doc)) {
            report_http_error("polling the job", status, doc);
            json_decref(doc);
            return 1;
        }
        json_decref(job);
        job = doc;
        const char *state = json_string_value(json_object_get(job, "state"));
        bool done = state && strcmp(state, "done") == 0;
        double t = now_s() - t0;
        if (tty || done || t - last_plain >= PLAIN_EVERY_S) {
            draw(job, tty, t);
            last_plain = t;
        }
        if (done)
            break;
        usleep(POLL_MS * 1000);
    }
    if (tty)
        fputc('\n', stderr);
    long long errors = field(job, "errors");
    printf("prewarm %s: %lld requests in %.1f s: %lld hits, %lld misses, %lld coalesced, "
           "%lld bypassed, %lld errors\n",
           id_of(job), field(job, "total"), now_s() - t0, field(job, "hits"), field(job, "misses"),
           field(job, "coalesced"), field(job, "bypassed"), errors);
    const char *first = json_string_value(json_object_get(job, "first_error"));
    if (errors && first)
        cli_error("prewarm: first error: %s", first);
    json_decref(job);
    return errors ? 1 : 0;
}
