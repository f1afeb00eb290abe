/*
 * cmd_client.c: the verbs that talk to a gencached daemon over HTTP (get, put, del, stats),
 * through the shared client of client.c. Each verb makes its requests on one reused handle
 * (keep-alive), with the bearer token of --token or $GENCACHE_TOKEN, and turns the answer
 * into an exit code: 0 done, 1 refused or missing (the daemon's own error message is printed),
 * 2 bad usage. Entry bytes go to their destination unchanged; a file named with -o is written
 * under a temporary name and renamed only when the whole body has arrived.
 */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "gencache.h"
#include "cli.h"
#include "client.h"

static bool parse_u64(const char *s, uint64_t *out)
{
    if (!s || !*s)
        return false;
    char *end;
    errno = 0;
    if (*s < '0' || *s > '9')
        return false;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end)
        return false;
    *out = v;
    return true;
}

/* Shared option parsing: --url is every verb's; the rest are listed per verb. */
enum {
    O_URL = 256,
    O_TOKEN,
    O_META,
    O_COST,
    O_TTL,
    O_TAGS,
    O_CTYPE,
    O_DTYPE,
    O_SHAPE,
    O_PINNED,
    O_JSON
};

int cmd_get(int argc, char **argv)
{
    static const struct option opts[] = {
        {"url", required_argument, NULL, O_URL},  {"token", required_argument, NULL, O_TOKEN},
        {"output", required_argument, NULL, 'o'}, {"meta", no_argument, NULL, O_META},
        {"json", no_argument, NULL, O_JSON},      {NULL, 0, NULL, 0}};
    const char *url = cli_default_url(), *output = NULL;
    const char *token = cli_default_token();
    bool meta = false, as_json = false;
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
        case 'o':
            output = optarg;
            break;
        case O_META:
            meta = true;
            break;
        case O_JSON: /* the metadata as one JSON object: implies --meta */
            meta = as_json = true;
            break;
        case ':':
            return cli_usage_error(argv[0], "missing value for", argv[optind - 1]);
        default:
            return cli_usage_error(argv[0], "unknown option", argv[optind - 1]);
        }
    }
    if (argc - optind != 1)
        return cli_usage_error(argv[0], "expected one KEY", NULL);
    const char *key = argv[optind];

    cli_client cl;
    int rc = cli_client_open(&cl, url, token);
    if (rc)
        return rc;
    char tmp[4096] = "";
    if (meta) {
        rc = cli_client_request(&cl, "HEAD", "/v1/entries/", key, NULL, NULL, 0);
        /* A HEAD answer has no body to carry the daemon's message: ask again with GET (which
         * fails the same way, so it counts no access). */
        if (rc == 0 && cl.status != 200 && cl.status != 404)
            rc = cli_client_request(&cl, "GET", "/v1/entries/", key, NULL, NULL, 0);
        if (rc == 0 && cl.status != 200)
            rc = cli_client_report(&cl, key);
        if (rc == 0) {
            /* The entry's metadata, as the daemon names it. */
            json_t *doc = as_json ? json_object() : NULL;
            char *save = NULL;
            for (char *line = strtok_r(cl.headers.data, "\r\n", &save); line;
                 line = strtok_r(NULL, "\r\n", &save)) {
                if (strncasecmp(line, "X-Gencache-", 11) == 0 ||
                    strncasecmp(line, "ETag:", 5) == 0 ||
                    strncasecmp(line, "Content-Type:", 13) == 0 ||
                    strncasecmp(line, "Content-Length:", 15) == 0) {
                    if (!doc) {
                        printf("%s\n", line);
                        continue;
                    }
                    char *colon = strchr(line, ':'), *v = colon + 1;
                    *colon = '\0';
                    v += strspn(v, " \t");
                    json_object_set_new(doc, line, json_string(v));
                }
            }
            if (doc)
                rc = cli_print_json(doc);
        }
        cli_client_close(&cl);
        return rc;
    }
    if (output && strcmp(output, "-") != 0) {
        snprintf(tmp, sizeof tmp, "%s.tmp.%ld", output, (long)getpid());
        cl.out = fopen(tmp, "wb");
        if (!cl.out) {
            cli_error("cannot write %s: %s", tmp, strerror(errno));
            cli_client_close(&cl);
            return 1;
        }
    } else {
        cl.out = stdout;
    }
    rc = cli_client_request(&cl, "GET", "/v1/entries/", key, NULL, NULL, 0);
    if (rc == 0 && cl.status != 200)
        rc = cli_client_report(&cl, key);
    if (cl.out != stdout) {
        if (fclose(cl.out) != 0 && rc == 0) {
            cli_error("cannot write %s: %s", output, strerror(errno));
            rc = 1;
        }
        if (rc == 0 && rename(tmp, output) != 0) {
            cli_error("cannot write %s: %s", output, strerror(errno));
            rc = 1;
        }
        if (rc != 0)
            unlink(tmp);
    } else if (fflush(stdout) != 0 && rc == 0) {
        cli_error("cannot write to stdout: %s", strerror(errno));
        rc = 1;
    }
    cli_client_close(&cl);
    return rc;
}

static struct curl_slist *add_header(struct curl_slist *list, const char *name, const char *value)
{
    char line[2048];
    snprintf(line, sizeof line, "%s: %s", name, value);
    return curl_slist_append(list, line);
}

int cmd_put(int argc, char **argv)
{
    static const struct option opts[] = {{"url", required_argument, NULL, O_URL},
                                         {"token", required_argument, NULL, O_TOKEN},
                                         {"cost-ms", required_argument, NULL, O_COST},
                                         {"ttl", required_argument, NULL, O_TTL},
                                         {"tags", required_argument, NULL, O_TAGS},
                                         {"content-type", required_argument, NULL, O_CTYPE},
                                         {"dtype", required_argument, NULL, O_DTYPE},
                                         {"shape", required_argument, NULL, O_SHAPE},
                                         {"pinned", no_argument, NULL, O_PINNED},
                                         {NULL, 0, NULL, 0}};
    const char *url = cli_default_url();
    const char *token = cli_default_token();
    char ttl_buf[24];
    const char *cost = NULL, *ttl = NULL, *tags = NULL, *ctype = NULL, *dtype = NULL, *shape = NULL;
    bool pinned = false;
    uint64_t num;
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
        case O_COST:
            if (!parse_u64(optarg, &num))
                return cli_usage_error(argv[0], "--cost-ms expects milliseconds, not", optarg);
            cost = optarg;
            break;
        case O_TTL:
            /* The library's duration grammar, as in gencache.yaml: "90", "90s", "30m", "7d". */
            if (gencache_parse_duration_ms(optarg, &num) != GENCACHE_OK || num % 1000 != 0)
                return cli_usage_error(
                    argv[0], "--ttl expects whole seconds or a duration like 30m, not", optarg);
            snprintf(ttl_buf, sizeof ttl_buf, "%llu", (unsigned long long)(num / 1000));
            ttl = ttl_buf;
            break;
        case O_TAGS:
            tags = optarg;
            break;
        case O_CTYPE:
            ctype = optarg;
            break;
        case O_DTYPE:
            dtype = optarg;
            break;
        case O_SHAPE:
            shape = optarg;
            break;
        case O_PINNED:
            pinned = true;
            break;
        case ':':
            return cli_usage_error(argv[0], "missing value for", argv[optind - 1]);
        default:
            return cli_usage_error(argv[0], "unknown option", argv[optind - 1]);
        }
    }
    if (argc - optind != 2)
        return cli_usage_error(argv[0], "expected KEY and FILE (or - for stdin)", NULL);
    if (!dtype != !shape)
        return cli_usage_error(argv[0], "--dtype and --shape go together", NULL);
    const char *key = argv[optind], *path = argv[optind + 1];

    cli_buffer data = {0};
    if (cli_read_all(path, &data) != 0) {
        free(data.data);
        return 1;
    }
    cli_client cl;
    int rc = cli_client_open(&cl, url, token);
    if (rc) {
        free(data.data);
        return rc;
    }
    struct curl_slist *h =
        add_header(NULL, "Content-Type", ctype ? ctype : "application/octet-stream");
    if (cost)
        h = add_header(h, "X-Gencache-Cost-Ms", cost);
    if (ttl)
        h = add_header(h, "X-Gencache-TTL", ttl);
    if (tags)
        h = add_header(h, "X-Gencache-Tags", tags);
    if (dtype) {
        h = add_header(h, "X-Gencache-Dtype", dtype);
        h = add_header(h, "X-Gencache-Shape", shape);
    }
    if (pinned)
        h = add_header(h, "X-Gencache-Pinned", "1");
    rc = cli_client_request(&cl, "PUT", "/v1/entries/", key, h, data.data, data.len);
    if (rc == 0 && cl.status != 201 && cl.status != 204)
        rc = cli_client_report(&cl, key);
    curl_slist_free_all(h);
    free(data.data);
    cli_client_close(&cl);
    return rc;
}

int cmd_del(int argc, char **argv)
{
    static const struct option opts[] = {{"url", required_argument, NULL, O_URL},
                                         {"token", required_argument, NULL, O_TOKEN},
                                         {NULL, 0, NULL, 0}};
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
        case ':':
            return cli_usage_error(argv[0], "missing value for", argv[optind - 1]);
        default:
            return cli_usage_error(argv[0], "unknown option", argv[optind - 1]);
        }
    }
    if (argc - optind != 1)
        return cli_usage_error(argv[0], "expected one KEY", NULL);
    cli_client cl;
    int rc = cli_client_open(&cl, url, token);
    if (rc)
        return rc;
    rc = cli_client_request(&cl, "DELETE", "/v1/entries/", argv[optind], NULL, NULL, 0);
    if (rc == 0 && cl.status != 204 && cl.status != 200)
        rc = cli_client_report(&cl, argv[optind]);
    cli_client_close(&cl);
    return rc;
}

static uint64_t num(json_t *obj, const char *name)
{
    json_t *v = json_object_get(obj, name);
    return json_is_integer(v) ? (uint64_t)json_integer_value(v) : 0;
}

/* "1.5 GiB": bytes for people. */
static const char *human_bytes(uint64_t n, char *out, size_t size)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)n;
    int u = 0;
    while (v >= 1024 && u < 4) {
        v /= 1024;
        u++;
    }
    snprintf(out, size, u ? "%.1f %s" : "%.0f %s", v, units[u]);
    return out;
}

static void print_stats(json_t *doc)
{
    const char *name;
    json_t *v;
    /* The summary first: what the cache is worth (hit ratio, GPU time saved, memory held). */
    uint64_t all_lookups = 0, all_hits = 0, saved_ms = 0;
    json_object_foreach(json_object_get(doc, "layers"), name, v)
    {
        all_lookups += num(v, "lookups");
        all_hits += num(v, "hits");
        saved_ms += num(v, "cost_ms_saved");
    }
    uint64_t saved_s = saved_ms / 1000;
    printf("hit ratio %.1f%% (%llu of %llu lookups), GPU-seconds saved %.3f (%lluh%02llum%02llus)"
           "\n",
           all_lookups ? 100.0 * (double)all_hits / (double)all_lookups : 0.0,
           (unsigned long long)all_hits, (unsigned long long)all_lookups, (double)saved_ms / 1000.0,
           (unsigned long long)(saved_s / 3600), (unsigned long long)(saved_s / 60 % 60),
           (unsigned long long)(saved_s % 60));
    char hb[32];
    json_object_foreach(json_object_get(doc, "tiers"), name, v)
    {
        printf("%s %s in %llu entries", name, human_bytes(num(v, "bytes"), hb, sizeof hb),
               (unsigned long long)num(v, "entries"));
        if (num(v, "max_bytes"))
            printf(" (%.1f%% of %s)", 100.0 * (double)num(v, "bytes") / (double)num(v, "max_bytes"),
                   human_bytes(num(v, "max_bytes"), hb, sizeof hb));
        putchar('\n');
    }
    putchar('\n');
    printf("%-16s %12s %12s %7s %14s %10s\n", "layer", "lookups", "hits", "hit%", "saved_s",
           "puts");
    json_object_foreach(json_object_get(doc, "layers"), name, v)
    {
        uint64_t lookups = num(v, "lookups"), hits = num(v, "hits");
        printf("%-16s %12llu %12llu %6.1f%% %14.3f %10llu\n", name, (unsigned long long)lookups,
               (unsigned long long)hits, lookups ? 100.0 * (double)hits / (double)lookups : 0.0,
               (double)num(v, "cost_ms_saved") / 1000.0, (unsigned long long)num(v, "puts"));
    }
    printf("\n%-16s %14s %10s %10s %10s %10s\n", "tier", "bytes", "entries", "evicted", "expired",
           "corrupt");
    json_object_foreach(json_object_get(doc, "tiers"), name, v)
    {
        printf("%-16s %14llu %10llu %10llu %10llu %10llu\n", name,
               (unsigned long long)num(v, "bytes"), (unsigned long long)num(v, "entries"),
               (unsigned long long)num(v, "evictions_capacity"),
               (unsigned long long)num(v, "evictions_expired"),
               (unsigned long long)num(v, "evictions_corrupt"));
    }
    json_object_foreach(json_object_get(doc, "tiers"), name, v)
    {
        json_t *mrc = json_object_get(v, "mrc"), *p;
        size_t i;
        if (!json_is_array(mrc) || json_array_size(mrc) == 0)
            continue;
        printf("\n%s at other sizes (estimated): ", name);
        json_array_foreach(mrc, i, p)
        {
            printf("%s%gx %.1f%% hits, %.0f s saved", i ? "; " : "",
                   json_number_value(json_object_get(p, "scale")),
                   100.0 * json_number_value(json_object_get(p, "hit_ratio")),
                   json_number_value(json_object_get(p, "gpu_seconds_saved")));
        }
        putchar('\n');
    }
    printf("\ninvalidated %llu\n", (unsigned long long)num(doc, "invalidated"));
}

int cmd_stats(int argc, char **argv)
{
    static const struct option opts[] = {{"url", required_argument, NULL, O_URL},
                                         {"token", required_argument, NULL, O_TOKEN},
                                         {"json", no_argument, NULL, O_JSON},
                                         {NULL, 0, NULL, 0}};
    const char *url = cli_default_url();
    const char *token = cli_default_token();
    bool raw = false;
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
            raw = true;
            break;
        case ':':
            return cli_usage_error(argv[0], "missing value for", argv[optind - 1]);
        default:
            return cli_usage_error(argv[0], "unknown option", argv[optind - 1]);
        }
    }
    if (optind != argc)
        return cli_usage_error(argv[0], "unexpected argument", argv[optind]);
    cli_client cl;
    int rc = cli_client_open(&cl, url, token);
    if (rc)
        return rc;
    rc = cli_client_request(&cl, "GET", "/v1/stats", NULL, NULL, NULL, 0);
    if (rc == 0 && cl.status != 200)
        rc = cli_client_report(&cl, "stats");
    if (rc == 0) {
        json_error_t jerr;
        json_t *doc = cl.body.data ? json_loads(cl.body.data, 0, &jerr) : NULL;
        if (!json_is_object(doc)) {
            cli_error("stats: the daemon sent something that is not a JSON object");
            rc = 1;
        } else if (raw) {
            fwrite(cl.body.data, 1, cl.body.len, stdout);
            if (cl.body.len && cl.body.data[cl.body.len - 1] != '\n')
                putchar('\n');
        } else {
            print_stats(doc);
        }
        json_decref(doc);
    }
    cli_client_close(&cl);
    return rc;
}
