/*
 * ui.c: what the status page (GET /ui) shows beyond the library's counters, and the page itself.
 * The daemon keeps three small things for it: a history of every layer's lookup and hit counts
 * (one sample every UI_SAMPLE_S seconds, the last UI_HISTORY of them), the keys with the most hits
 * (the library's own per-entry hit count, read from the handle of each hit the daemon serves),
 * and the latest error replies. All three are bounded, so the page costs the same memory after a
 * year as after a minute; a hit takes the lock only when its count could enter the table. They
 * reach the page through GET /v1/stats (admin tenants, or the open mode), which is also what the
 * page's numbers are checked against.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "gencached.h"

#define UI_SAMPLE_S   5              /* seconds between history samples */
#define UI_HISTORY    120            /* samples kept: ten minutes */
#define UI_TOP        10             /* keys in the top-keys table */
#define UI_TOP_AGE_MS (600u * 1000u) /* a key not hit for this long leaves the table */
#define UI_ERRORS     32             /* error replies kept */

typedef struct ui_sample {
    uint64_t at_ms; /* wall clock */
    uint64_t lookups[GENCACHE_MAX_LAYERS];
    uint64_t hits[GENCACHE_MAX_LAYERS];
} ui_sample;

typedef struct ui_top {
    const char *tenant; /* points into the config; NULL in the open mode */
    char key[GENCACHE_KEY_MAX];
    uint64_t hits;    /* the library's count as of the latest hit */
    uint64_t last_ms; /* wall clock of the latest hit */
} ui_top;

typedef struct ui_error {
    uint64_t at_ms;
    unsigned status;
    char method[16];
    char path[96];
    char code[32];
    char message[200];
} ui_error;

struct gcd_ui {
    pthread_mutex_t mu;
    const char *layers[GENCACHE_MAX_LAYERS]; /* names, in the order of the samples */
    uint32_t n_layers;
    ui_sample hist[UI_HISTORY]; /* a ring: next_hist is the oldest once full */
    size_t n_hist, next_hist;
    ui_top top[UI_TOP];
    size_t n_top;
    uint64_t top_min;           /* atomic: with a full table, the smallest count in it; else 0 */
    ui_error errors[UI_ERRORS]; /* a ring, like hist */
    size_t n_errors, next_error;
    uint64_t errors_total;
};

int gcd_ui_new(gcd_server *srv)
{
    struct gcd_ui *ui = calloc(1, sizeof *ui);
    if (!ui || pthread_mutex_init(&ui->mu, NULL) != 0) {
        free(ui);
        return -1;
    }
    srv->ui = ui;
    return 0;
}

void gcd_ui_free(gcd_server *srv)
{
    struct gcd_ui *ui = srv->ui;
    if (!ui)
        return;
    pthread_mutex_destroy(&ui->mu);
    free(ui);
    srv->ui = NULL;
}

/* Recomputes top_min; with ui->mu held. */
static void top_min_update(struct gcd_ui *ui)
{
    uint64_t min = 0;
    if (ui->n_top == UI_TOP) {
        min = UINT64_MAX;
        for (size_t i = 0; i < ui->n_top; i++)
            min = ui->top[i].hits < min ? ui->top[i].hits : min;
    }
    __atomic_store_n(&ui->top_min, min, __ATOMIC_RELAXED);
}

void gcd_ui_hit(gcd_server *srv, const char *tenant, const char *key, uint64_t hits)
{
    struct gcd_ui *ui = srv->ui;
    if (!ui || !key || hits <= __atomic_load_n(&ui->top_min, __ATOMIC_RELAXED))
        return;
    size_t klen = strlen(key);
    if (klen >= GENCACHE_KEY_MAX)
        return;
    uint64_t now = gcd_now_coarse_ms();
    pthread_mutex_lock(&ui->mu);
    ui_top *slot = NULL;
    for (size_t i = 0; i < ui->n_top && !slot; i++)
        if (ui->top[i].tenant == tenant && strcmp(ui->top[i].key, key) == 0)
            slot = &ui->top[i];
    bool fresh = !slot;
    if (!slot && ui->n_top < UI_TOP)
        slot = &ui->top[ui->n_top++];
    else if (!slot) { /* full: this key replaces the smallest count, when it is larger */
        slot = &ui->top[0];
        for (size_t i = 1; i < ui->n_top; i++)
            if (ui->top[i].hits < slot->hits)
                slot = &ui->top[i];
        if (slot->hits >= hits)
            slot = NULL;
    }
    if (slot) {
        if (fresh) {
            memcpy(slot->key, key, klen + 1);
            slot->tenant = tenant;
        }
        slot->hits = hits;
        slot->last_ms = now;
        top_min_update(ui);
    }
    pthread_mutex_unlock(&ui->mu);
}

/* Copies as much of src as fits, always terminated. */
static void copy_text(char *dst, size_t size, const char *src)
{
    size_t n = src ? strnlen(src, size - 1) : 0;
    if (n)
        memcpy(dst, src, n);
    dst[n] = '\0';
}

void gcd_ui_error(gcd_server *srv, const gcd_request *req, unsigned status, const char *code,
                  const char *message)
{
    struct gcd_ui *ui = srv ? srv->ui : NULL;
    if (!ui)
        return;
    uint64_t now = gcd_now_ms();
    pthread_mutex_lock(&ui->mu);
    ui_error *e = &ui->errors[ui->next_error];
    ui->next_error = (ui->next_error + 1) % UI_ERRORS;
    if (ui->n_errors < UI_ERRORS)
        ui->n_errors++;
    ui->errors_total++;
    e->at_ms = now;
    e->status = status;
    copy_text(e->method, sizeof e->method, req ? req->method : "");
    copy_text(e->path, sizeof e->path, req ? req->path : "");
    copy_text(e->code, sizeof e->code, code);
    copy_text(e->message, sizeof e->message, message);
    pthread_mutex_unlock(&ui->mu);
}

void gcd_ui_sample(gcd_server *srv, unsigned tick)
{
    struct gcd_ui *ui = srv->ui;
    if (!ui || (tick % UI_SAMPLE_S != 0 && tick != 1)) /* the first tick: a baseline at once */
        return;
    gencache_stats *st = calloc(1, sizeof *st);
    if (!st)
        return;
    st->struct_size = sizeof *st;
    if (gencache_stats_get(srv->cache, st) != GENCACHE_OK) {
        free(st);
        return;
    }
    uint64_t now = gcd_now_ms();
    pthread_mutex_lock(&ui->mu);
    /* The layer registry is fixed once the cache is open: the names keep their places. */
    uint32_t n = st->n_layers < GENCACHE_MAX_LAYERS ? st->n_layers : GENCACHE_MAX_LAYERS;
    ui->n_layers = n;
    ui_sample *s = &ui->hist[ui->next_hist];
    ui->next_hist = (ui->next_hist + 1) % UI_HISTORY;
    if (ui->n_hist < UI_HISTORY)
        ui->n_hist++;
    s->at_ms = now;
    for (uint32_t i = 0; i < n; i++) {
        ui->layers[i] = st->layers[i].layer;
        s->lookups[i] = st->layers[i].lookups;
        s->hits[i] = st->layers[i].hits;
    }
    /* Keys nobody asked for lately leave the table (evicted, expired or just cold). */
    size_t kept = 0;
    for (size_t i = 0; i < ui->n_top; i++)
        if (now - ui->top[i].last_ms <= UI_TOP_AGE_MS)
            ui->top[kept++] = ui->top[i];
    ui->n_top = kept;
    top_min_update(ui);
    pthread_mutex_unlock(&ui->mu);
    free(st);
}

static int cmp_top(const void *a, const void *b)
{
    const ui_top *x = a, *y = b;
    return x->hits < y->hits ? 1 : x->hits > y->hits ? -1 : strcmp(x->key, y->key);
}

/* The history as {"interval_s", "layers": [...], "samples": [{"t_ms", "lookups": [...],
 * "hits": [...]}, ...]}, oldest first; with ui->mu held. */
static json_t *history_json(struct gcd_ui *ui)
{
    json_t *names = json_array(), *samples = json_array();
    for (uint32_t i = 0; i < ui->n_layers; i++)
        json_array_append_new(names, json_string(ui->layers[i] ? ui->layers[i] : "?"));
    size_t start = ui->n_hist < UI_HISTORY ? 0 : ui->next_hist;
    for (size_t k = 0; k < ui->n_hist; k++) {
        const ui_sample *s = &ui->hist[(start + k) % UI_HISTORY];
        json_t *l = json_array(), *h = json_array();
        for (uint32_t i = 0; i < ui->n_layers; i++) {
            json_array_append_new(l, json_integer((json_int_t)s->lookups[i]));
            json_array_append_new(h, json_integer((json_int_t)s->hits[i]));
        }
        json_array_append_new(samples, json_pack("{s:I,s:o,s:o}", "t_ms", (json_int_t)s->at_ms,
                                                 "lookups", l, "hits", h));
    }
    return json_pack("{s:i,s:o,s:o}", "interval_s", UI_SAMPLE_S, "layers", names, "samples",
                     samples);
}

void gcd_ui_stats_json(gcd_server *srv, json_t *doc, bool history)
{
    struct gcd_ui *ui = srv->ui;
    if (!ui || !doc)
        return;
    uint64_t coalesced = 0, bypassed = 0;
    gcd_metrics_counts(srv->metrics, &coalesced, &bypassed);
    /* The sum over layers of what their hits saved, in seconds of the generator's time. */
    double saved_ms = 0;
    json_t *layers = json_object_get(doc, "layers");
    const char *name;
    json_t *l;
    json_object_foreach(layers, name, l)
    {
        saved_ms += (double)json_integer_value(json_object_get(l, "cost_ms_saved"));
    }
    json_object_set_new(doc, "gpu_seconds_saved", json_real(saved_ms / 1000.0));

    pthread_mutex_lock(&ui->mu);
    ui_top top[UI_TOP];
    size_t n_top = ui->n_top;
    memcpy(top, ui->top, n_top * sizeof *top);
    json_t *errors = json_array();
    size_t start = ui->n_errors < UI_ERRORS ? 0 : ui->next_error;
    for (size_t k = ui->n_errors; k-- > 0;) { /* newest first */
        const ui_error *e = &ui->errors[(start + k) % UI_ERRORS];
        json_array_append_new(errors,
                              json_pack("{s:I,s:i,s:s,s:s,s:s,s:s}", "t_ms", (json_int_t)e->at_ms,
                                        "status", (int)e->status, "method", e->method, "path",
                                        e->path, "code", e->code, "message", e->message));
    }
    uint64_t errors_total = ui->errors_total;
    json_t *hist = history ? history_json(ui) : NULL;
    pthread_mutex_unlock(&ui->mu);

    json_object_set_new(doc, "requests",
                        json_pack("{s:I,s:I,s:I}", "coalesced", (json_int_t)coalesced, "bypassed",
                                  (json_int_t)bypassed, "errors", (json_int_t)errors_total));
    qsort(top, n_top, sizeof *top, cmp_top);
    json_t *keys = json_array();
    for (size_t i = 0; i < n_top; i++) {
        json_t *o = json_pack("{s:s,s:I,s:I}", "key", top[i].key, "hits", (json_int_t)top[i].hits,
                              "last_hit_ms", (json_int_t)top[i].last_ms);
        if (o && top[i].tenant)
            json_object_set_new(o, "tenant", json_string(top[i].tenant));
        json_array_append_new(keys, o);
    }
    json_object_set_new(doc, "top_keys", keys);
    json_object_set_new(doc, "recent_errors", errors);
    if (hist)
        json_object_set_new(doc, "history", hist);
}

enum MHD_Result gcd_ui_handle(struct MHD_Connection *c, gcd_request *req)
{
    /* The page shows the global counters: whoever may read them may read it. */
    if (!gcd_tenant_admin(req))
        return gcd_reply_error(c, req, MHD_HTTP_FORBIDDEN, "forbidden",
                               "the status page shows every tenant's counters: it needs an admin "
                               "tenant's token");
    struct MHD_Response *resp = MHD_create_response_from_buffer(
        gcd_ui_page_len, (void *)gcd_ui_page, MHD_RESPMEM_PERSISTENT);
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/html; charset=utf-8");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    /* Nothing external may load: the page is self-contained by design. */
    MHD_add_response_header(resp, "Content-Security-Policy",
                            "default-src 'none'; script-src 'unsafe-inline'; style-src "
                            "'unsafe-inline'; connect-src 'self'; img-src 'self' data:");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    return gcd_reply_queue(c, req, MHD_HTTP_OK, resp);
}
