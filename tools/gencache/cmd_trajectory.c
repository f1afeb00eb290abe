/*
 * cmd_trajectory.c: `gencache checkpoint` and `gencache resume`, approximate step reuse against a
 * daemon (POST /v1/trajectories and POST /v1/trajectories/lookup). An embedding is a file of
 * little-endian floats, f32 or (--dtype f16) f16, as numpy's tofile() writes it. checkpoint
 * stores a latent file with the request and its step and prints the key; resume prints
 * `KEY STEP SIMILARITY` of the latent a similar enough prompt stored, or exits 1 when there is
 * none. Both act as the token's tenant.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "gencache.h"
#include "cli.h"
#include "client.h"

enum { O_URL = 256, O_TOKEN, O_LAYER, O_MODEL, O_DTYPE, O_STEP, O_COST, O_JSON };

/* The options both verbs share. */
typedef struct traj_args {
    const char *url, *token, *layer, *model, *dtype, *output;
    const char *step, *cost_ms;
    bool as_json;
} traj_args;

/* Parses argv; returns -1 to go on, or the exit code of a usage error. */
static int parse_args(int argc, char **argv, traj_args *a)
{
    static const struct option opts[] = {
        {"url", required_argument, NULL, O_URL},      {"token", required_argument, NULL, O_TOKEN},
        {"layer", required_argument, NULL, O_LAYER},  {"model", required_argument, NULL, O_MODEL},
        {"dtype", required_argument, NULL, O_DTYPE},  {"step", required_argument, NULL, O_STEP},
        {"cost-ms", required_argument, NULL, O_COST}, {"output", required_argument, NULL, 'o'},
        {"json", no_argument, NULL, O_JSON},          {NULL, 0, NULL, 0}};
    bool resume = strcmp(argv[0], "resume") == 0;
    *a = (traj_args){.url = cli_default_url(),
                     .token = cli_default_token(),
                     .layer = "trajectory",
                     .dtype = "f32"};
    int opt;
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":o:", opts, NULL)) != -1) {
        const char **slot = opt == O_URL     ? &a->url
                            : opt == O_TOKEN ? &a->token
                            : opt == O_LAYER ? &a->layer
                            : opt == O_DTYPE ? &a->dtype
                                             : NULL;
        if (slot) {
            *slot = optarg;
        } else if (opt == O_MODEL && resume) {
            a->model = optarg;
        } else if (opt == 'o' && resume) {
            a->output = optarg;
        } else if (opt == O_STEP && !resume) {
            a->step = optarg;
        } else if (opt == O_COST && !resume) {
            a->cost_ms = optarg;
        } else if (opt == O_JSON) {
            a->as_json = true;
        } else if (opt == ':') {
            return cli_usage_error(argv[0], "missing value for", argv[optind - 1]);
        } else {
            return cli_usage_error(argv[0], "unknown option", argv[optind - 1]);
        }
    }
    if (strcmp(a->dtype, "f32") != 0 && strcmp(a->dtype, "f16") != 0)
        return cli_usage_error(argv[0], "--dtype is f32 or f16, not", a->dtype);
    /* Header values: printable ASCII only, or a header could be split. */
    const char *values[] = {a->layer, a->model, a->cost_ms};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++)
        for (const char *p = values[i]; p && *p; p++)
            if (*p < 0x20 || *p > 0x7e)
                return cli_usage_error(argv[0], "header values are printable ASCII:", values[i]);
    return -1;
}

/* POSTs body to path with the header lines (NULL-terminated); cli_client_request()'s result. */
static int post(cli_client *cl, const char *path, const char *const *lines, const void *body,
                size_t len)
{
    struct curl_slist *h = NULL;
    for (; *lines; lines++)
        h = curl_slist_append(h, *lines);
    int rc = cli_client_request(cl, "POST", path, NULL, h, body, len);
    curl_slist_free_all(h);
    return rc;
}

/* Writes the answer's bytes to path. Returns 0 or 1 after reporting. */
static int write_file(const char *path, const cli_buffer *b)
{
    FILE *f = fopen(path, "wb");
    bool ok = f && fwrite(b->data ? b->data : "", 1, b->len, f) == b->len;
    if (f && fclose(f) != 0)
        ok = false;
    if (!ok)
        cli_error("resume: cannot write %s: %s", path, strerror(errno));
    return ok ? 0 : 1;
}

int cmd_resume(int argc, char **argv)
{
    traj_args a;
    int status = parse_args(argc, argv, &a);
    if (status >= 0)
        return status;
    if (!a.model)
        return cli_usage_error(argv[0], "needs", "--model M");
    if (argc - optind != 1)
        return cli_usage_error(argv[0], "expected one EMBEDDING file (or -)", NULL);
    cli_buffer emb = {0};
    if ((status = cli_read_all(argv[optind], &emb)) != 0)
        return status;
    cli_client cl;
    int rc = cli_client_open(&cl, a.url, a.token);
    if (rc) {
        free(emb.data);
        return rc;
    }
    char model[1100], layer[300], dtype[64];
    snprintf(model, sizeof model, "X-Gencache-Model: %s", a.model);
    snprintf(layer, sizeof layer, "X-Gencache-Layer: %s", a.layer);
    snprintf(dtype, sizeof dtype, "X-Gencache-Dtype: %s", a.dtype);
    const char *lines[] = {"Content-Type: application/octet-stream", model, layer, dtype, NULL};
    rc = post(&cl, "/v1/trajectories/lookup", lines, emb.data, emb.len);
    free(emb.data);
    if (rc != 0) {
        status = 1;
    } else if (cl.status == 200) {
        char key[GENCACHE_KEY_MAX + 8] = "", step[32] = "", sim[64] = "";
        cli_client_header(&cl, "X-Gencache-Key", key, sizeof key);
        cli_client_header(&cl, "X-Gencache-Step", step, sizeof step);
        cli_client_header(&cl, "X-Gencache-Similarity", sim, sizeof sim);
        if (a.as_json)
            status = cli_print_json(json_pack("{s:s,s:i,s:f}", "key", key, "step", atoi(step),
                                              "similarity", strtod(sim, NULL)));
        else if (printf("%s %s %s\n", key, step, sim) < 0 || fflush(stdout) != 0)
            status = 1;
        if (a.output && write_file(a.output, &cl.body) != 0)
            status = 1;
    } else {
        bool miss = cl.status == 404 && strstr(cl.body.data ? cl.body.data : "", "\"not_found\"");
        if (miss && a.as_json)
            cli_print_json(cli_json_error(GENCACHE_ENOTFOUND, "no latent is similar enough"));
        else
            cli_client_report(&cl, "resume");
        status = 1;
    }
    cli_client_close(&cl);
    return status;
}

/* The part "trajectory": {"layer", "dtype", "request"}, the request's own text (its numbers keep
 * their digits), with --step written in as its first member. NULL after reporting why. */
static char *trajectory_doc(const traj_args *a, const cli_buffer *text)
{
    json_error_t jerr;
    const char *t = text->data ? text->data : "";
    json_t *req = json_loadb(t, text->len, JSON_DECODE_INT_AS_REAL, &jerr);
    bool has_step = json_object_get(req, "step") != NULL, ok = json_is_object(req);
    json_decref(req);
    if (!ok) {
        cli_error("checkpoint: the request is not a JSON object (%s, line %d)", jerr.text,
                  jerr.line);
        return NULL;
    }
    char *end = NULL;
    long step = a->step ? strtol(a->step, &end, 10) : 0;
    if (a->step && (*end || step < 1 || step > 1000000)) {
        cli_error("checkpoint: --step is a whole number from 1, not '%s'", a->step);
        return NULL;
    }
    if (a->step && has_step) {
        cli_error("checkpoint: the request names its step already: leave out --step");
        return NULL;
    }
    json_t *meta = json_pack("{s:s,s:s}", "layer", a->layer, "dtype", a->dtype);
    char *head = meta ? json_dumps(meta, JSON_COMPACT) : NULL;
    json_decref(meta);
    size_t open = strcspn(t, "{") + 1; /* just after the request's opening brace */
    size_t rest = open, cap = (head ? strlen(head) : 0) + text->len + 64;
    while (rest < text->len && strchr(" \t\r\n", t[rest]))
        rest++;
    bool empty = rest < text->len && t[rest] == '}';
    char *doc = head ? malloc(cap) : NULL;
    if (doc && a->step) /* {"layer":...,"dtype":...} with the request spliced in before its brace */
        snprintf(doc, cap, "%.*s,\"request\":%.*s\"step\":%ld%s%.*s}", (int)(strlen(head) - 1),
                 head, (int)open, t, step, empty ? "" : ",", (int)(text->len - open), t + open);
    else if (doc)
        snprintf(doc, cap, "%.*s,\"request\":%.*s}", (int)(strlen(head) - 1), head, (int)text->len,
                 t);
    else
        cli_error("checkpoint: out of memory");
    free(head);
    return doc;
}

/* Appends one part of a form. */
static bool add_part(cli_buffer *b, const char *boundary, const char *name, const char *type,
                     const char *data, size_t len)
{
    char head[300];
    int n = snprintf(head, sizeof head,
                     "--%s\r\nContent-Disposition: form-data; name=\"%s\"\r\n"
                     "Content-Type: %s\r\n\r\n",
                     boundary, name, type);
    return cli_buffer_add(b, head, (size_t)n, SIZE_MAX) &&
           cli_buffer_add(b, data ? data : "", len, SIZE_MAX) &&
           cli_buffer_add(b, "\r\n", 2, SIZE_MAX);
}

/* A boundary no file is likely to hold: 24 random hex digits. */
static void make_boundary(char *out, size_t size)
{
    unsigned char r[12] = {0};
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0 || read(fd, r, sizeof r) != (ssize_t)sizeof r) {
        unsigned long x = (unsigned long)time(NULL) ^ (unsigned long)getpid() << 16;
        memcpy(r, &x, sizeof x < sizeof r ? sizeof x : sizeof r);
    }
    if (fd >= 0)
        close(fd);
    int n = snprintf(out, size, "gencache-");
    for (size_t i = 0; i < sizeof r && (size_t)n + 2 < size; i++)
        n += snprintf(out + n, size - (size_t)n, "%02x", r[i]);
}

int cmd_checkpoint(int argc, char **argv)
{
    traj_args a;
    int status = parse_args(argc, argv, &a);
    if (status >= 0)
        return status;
    if (argc - optind != 3)
        return cli_usage_error(argv[0], "expected REQUEST.json EMBEDDING LATENT", NULL);
    cli_buffer text = {0}, emb = {0}, latent = {0}, form = {0};
    status = cli_read_all(argv[optind], &text);
    if (!status)
        status = cli_read_all(argv[optind + 1], &emb);
    if (!status)
        status = cli_read_all(argv[optind + 2], &latent);
    char *doc = status ? NULL : trajectory_doc(&a, &text);
    if (!doc && !status)
        status = 1; /* reported */
    char boundary[64], type[128];
    make_boundary(boundary, sizeof boundary);
    snprintf(type, sizeof type, "Content-Type: multipart/form-data; boundary=%s", boundary);
    bool built =
        doc && add_part(&form, boundary, "trajectory", "application/json", doc, strlen(doc)) &&
        add_part(&form, boundary, "embedding", "application/octet-stream", emb.data, emb.len) &&
        add_part(&form, boundary, "latent", "application/octet-stream", latent.data, latent.len) &&
        cli_buffer_add(&form, "--", 2, SIZE_MAX) &&
        cli_buffer_add(&form, boundary, strlen(boundary), SIZE_MAX) &&
        cli_buffer_add(&form, "--\r\n", 4, SIZE_MAX);
    bool had_doc = doc != NULL;
    free(doc);
    free(text.data);
    free(emb.data);
    free(latent.data);
    cli_client cl;
    int rc = built ? cli_client_open(&cl, a.url, a.token) : 1;
    if (!built || rc) {
        if (had_doc && !built)
            cli_error("checkpoint: out of memory");
        free(form.data);
        return status ? status : rc;
    }
    char cost[64];
    snprintf(cost, sizeof cost, "X-Gencache-Cost-Ms: %s", a.cost_ms ? a.cost_ms : "0");
    const char *lines[] = {type, cost, NULL};
    rc = post(&cl, "/v1/trajectories", lines, form.data, form.len);
    free(form.data);
    if (rc != 0) {
        status = 1;
    } else if (cl.status == 201) {
        json_t *out = json_loadb(cl.body.data ? cl.body.data : "", cl.body.len, 0, NULL);
        const char *key = json_string_value(json_object_get(out, "key"));
        if (a.as_json)
            status = cli_print_json(json_incref(out));
        else if (!key || printf("%s\n", key) < 0 || fflush(stdout) != 0)
            status = 1;
        json_decref(out);
    } else {
        status = cli_client_report(&cl, "checkpoint");
    }
    cli_client_close(&cl);
    return status;
}
