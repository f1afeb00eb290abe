/*
 * cmd_prewarm.c: `gencache prewarm [--url URL] FILE.jsonl`. It posts the file (one request JSON
 * per line) to the daemon's POST /v1/prewarm, then polls GET /v1/jobs/{id} until the job is done,
 * drawing a progress bar on stderr when stderr is a terminal (a plain progress line otherwise),
 * and prints a summary (--json: the job's final JSON document, with "seconds" added). The exit
 * status is 1 if any request failed, so scripts can rely on it.
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
#include "client.h"

#define MAX_FILE      (1024ull << 20)
#define POLL_MS       200
#define BAR_WIDTH     30
#define PLAIN_EVERY_S 2.0

/* One request; *status is the HTTP status, *doc the JSON body (or NULL). Returns 0, or 1 after
 * the client reported a transport error. */
static int call(cli_client *cl, const char *method, const char *path, const char *body, size_t len,
                long *status, json_t **doc)
{
    *doc = NULL;
    *status = 0;
    struct curl_slist *h =
        body ? curl_slist_append(NULL, "Content-Type: application/x-ndjson") : NULL;
    int rc = cli_client_request(cl, method, path, NULL, h, body, len);
    curl_slist_free_all(h);
    if (rc)
        return 1;
    *status = cl->status;
    if (cl->body.data)
        *doc = json_loads(cl->body.data, 0, NULL);
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

/* Submits the job and follows it to its end. Returns the exit status. */
static int prewarm(cli_client *cl, const char *data, size_t len, bool as_json)
{
    long status;
    json_t *doc;
    int rc = call(cl, "POST", "/v1/prewarm", data, len, &status, &doc);
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
        rc = call(cl, "GET", path, NULL, 0, &status, &doc);
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
    if (as_json) {
        json_object_set_new(job, "seconds", json_real(now_s() - t0));
        return cli_print_json(job) ? 1 : errors ? 1 : 0;
    }
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

int cmd_prewarm(int argc, char **argv)
{
    enum { O_URL = 256, O_TOKEN, O_JSON };
    static const struct option opts[] = {{"url", required_argument, NULL, O_URL},
                                         {"token", required_argument, NULL, O_TOKEN},
                                         {"json", no_argument, NULL, O_JSON},
                                         {NULL, 0, NULL, 0}};
    bool as_json = false;
    const char *url = cli_default_url();
    const char *token = cli_default_token();
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
        case O_JSON:
            as_json = true;
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
    char *data = NULL;
    size_t len = 0;
    if (read_file(argv[optind], &data, &len) != 0)
        return 1;
    cli_client cl;
    int rc = cli_client_open(&cl, url, token);
    if (rc) {
        free(data);
        return rc;
    }
    rc = prewarm(&cl, data, len, as_json);
    free(data);
    cli_client_close(&cl);
    return rc;
}
