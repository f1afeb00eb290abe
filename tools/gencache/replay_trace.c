/*
 * replay_trace.c: the request log `gencache replay` reads, turned into what a replay needs: for
 * each layer, each request's key (computed by the library from the request, as a service would),
 * the size of the value the layer would store for it (the size model of docs/tiers.md) and what a
 * hit on it saves (gen_seconds times the layer's share). The log is tab-separated with one header
 * line naming its columns; a row-aligned companion file (FILE.extra.tsv beside FILE.tsv) may
 * supply more columns. A request that has no key in a layer is not part of that layer's replay.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "gencache.h"
#include "replay.h"

#define MAX_LINE (1u << 20)

/* CLIP ViT-L/14's output for one prompt, 77 tokens x 768 in fp16: what text_embedding holds. */
#define EMBEDDING_BYTES (77u * 768u * 2u)

typedef struct table {
    char **names; /* n_cols header names */
    size_t n_cols;
    char **cells; /* n_rows * n_cols, each NUL-terminated inside `text` */
    size_t n_rows;
    char *text;
} table;

static void table_free(table *t)
{
    free(t->names);
    free(t->cells);
    free(t->text);
    memset(t, 0, sizeof *t);
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        cli_error("replay: %s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 20, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - n - 1, f);
        if (n < cap - 1)
            break;
        char *grown = realloc(buf, cap * 2);
        if (!grown) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = grown;
        cap *= 2;
    }
    bool err = ferror(f);
    fclose(f);
    if (!buf || err) {
        cli_error("replay: %s: %s", path, buf ? "read failed" : "out of memory");
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* Splits a TSV file into cells in place. Returns 0, or 1 after reporting what is wrong. */
static int table_load(const char *path, table *t)
{
    size_t len;
    memset(t, 0, sizeof *t);
    t->text = slurp(path, &len);
    if (!t->text)
        return 1;
    size_t lines = 0;
    for (size_t i = 0; i < len; i++)
        lines += t->text[i] == '\n';
    char *p = t->text, *end = t->text + len;
    size_t cap_cells = 0;
    for (size_t line = 0; p < end; line++) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *stop = nl ? nl : end;
        if (stop > p && stop[-1] == '\r')
            stop[-1] = '\0';
        *stop = '\0';
        if ((size_t)(stop - p) > MAX_LINE) {
            cli_error("replay: %s:%zu: line too long", path, line + 1);
            return 1;
        }
        size_t n = 1;
        for (char *q = p; q < stop; q++)
            n += *q == '\t';
        if (line == 0) {
            t->n_cols = n;
            t->names = calloc(n, sizeof *t->names);
            cap_cells = (lines + 1) * n;
            t->cells = calloc(cap_cells ? cap_cells : 1, sizeof *t->cells);
            if (!t->names || !t->cells) {
                cli_error("replay: out of memory");
                return 1;
            }
        } else if (*p == '\0' && !nl) {
            break; /* no newline at the end */
        } else if (n != t->n_cols) {
            cli_error("replay: %s:%zu: %zu columns, the header has %zu", path, line + 1, n,
                      t->n_cols);
            return 1;
        }
        char **row = line == 0 ? t->names : &t->cells[t->n_rows * t->n_cols];
        size_t c = 0;
        row[c++] = p;
        for (char *q = p; q < stop; q++)
            if (*q == '\t') {
                *q = '\0';
                row[c++] = q + 1;
            }
        if (line > 0)
            t->n_rows++;
        p = nl ? nl + 1 : end;
    }
    if (t->n_cols == 0) {
        cli_error("replay: %s: empty (a header line is needed)", path);
        return 1;
    }
    return 0;
}

static int column(const table *t, const char *name)
{
    for (size_t i = 0; i < t->n_cols; i++)
        if (strcmp(t->names[i], name) == 0)
            return (int)i;
    return -1;
}

/* The cell of a named column in row r of the trace or its companion; NULL when neither has it. */
typedef struct columns {
    const table *main, *extra;
} columns;

static const char *cell(const columns *cs, const char *name, size_t r)
{
    int c = column(cs->main, name);
    if (c >= 0)
        return cs->main->cells[r * cs->main->n_cols + (size_t)c];
    if (cs->extra && (c = column(cs->extra, name)) >= 0)
        return cs->extra->cells[r * cs->extra->n_cols + (size_t)c];
    return NULL;
}

static bool parse_u64(const char *s, uint64_t *out)
{
    if (!s || !*s)
        return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || *s == '-')
        return false;
    *out = v;
    return true;
}

static bool parse_num(const char *s, double *out)
{
    if (!s || !*s)
        return false;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end)
        return false;
    *out = v;
    return true;
}

/* The request JSON of row r: what a service would ask the cache about. NULL with *bad naming
 * the column when a number is malformed (an empty cell is an absent field); NULL with *bad NULL
 * when out of memory. */
static json_t *row_request(const columns *cs, size_t r, const char *model, const char **bad)
{
    static const char *const numbers[] = {"seed",     "steps", "width",    "height",      "frames",
                                          "n_images", "cfg",   "guidance", "gen_seconds", "bytes"};
    *bad = NULL;
    for (size_t i = 0; i < sizeof numbers / sizeof numbers[0]; i++) {
        const char *v = cell(cs, numbers[i], r);
        uint64_t u;
        double d;
        bool integral = i < 6 || i == 9, guidance = i == 6 || i == 7;
        /* Guidance may be any number; a "nan" the log could not tell is an absent one. */
        if (v && *v &&
            !(integral   ? parse_u64(v, &u)
              : guidance ? parse_num(v, &d)
                         : parse_num(v, &d) && d >= 0)) {
            *bad = numbers[i];
            return NULL;
        }
    }
    json_t *o = json_object();
    if (!o)
        return NULL;
    json_object_set_new(o, "model", json_string(model));
    const char *prompt = cell(cs, "prompt", r);
    if (prompt)
        json_object_set_new(o, "prompt", json_string(prompt));
    static const char *const ints[][2] = {{"seed", "seed"},     {"steps", "steps"},
                                          {"width", "width"},   {"height", "height"},
                                          {"frames", "frames"}, {"n_images", "n_images"}};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        uint64_t v;
        if (parse_u64(cell(cs, ints[i][0], r), &v))
            json_object_set_new(o, ints[i][1], json_integer((json_int_t)v));
    }
    double g;
    if ((parse_num(cell(cs, "cfg", r), &g) || parse_num(cell(cs, "guidance", r), &g)) &&
        isfinite(g))
        json_object_set_new(o, "guidance", json_real(g));
    const char *sampler = cell(cs, "sampler", r);
    if (sampler && *sampler)
        json_object_set_new(o, "scheduler", json_string(sampler));
    return o;
}

/* The size model (docs/tiers.md). */
static uint64_t model_size(const char *layer, const columns *cs, size_t r, uint64_t fixed)
{
    if (fixed)
        return fixed;
    uint64_t w = 512, h = 512, frames = 1, n = 1, bytes;
    parse_u64(cell(cs, "width", r), &w);
    parse_u64(cell(cs, "height", r), &h);
    parse_u64(cell(cs, "frames", r), &frames);
    parse_u64(cell(cs, "n_images", r), &n);
    frames = frames ? frames : 1;
    n = n ? n : 1;
    uint64_t latent = 4 * ((w + 7) / 8) * ((h + 7) / 8) * frames * 2; /* fp16, 4 channels */
    if (strcmp(layer, "result") == 0)
        return parse_u64(cell(cs, "bytes", r), &bytes) ? bytes : w * h * 3 * n * frames;
    if (strcmp(layer, "image_latent") == 0)
        return latent;
    if (strcmp(layer, "condition") == 0)
        return EMBEDDING_BYTES + latent;
    return EMBEDDING_BYTES;
}

double replay_default_share(const char *layer)
{
    if (strcmp(layer, "result") == 0)
        return 1.0;
    if (strcmp(layer, "condition") == 0)
        return 0.05;
    if (strcmp(layer, "image_latent") == 0)
        return 0.02;
    return 0.01; /* a text-encoder pass next to a whole generation */
}

/* Derives every layer's keys, sizes and costs for each row. Returns 0, or 1 after reporting. */
static int derive(const columns *cs, const replay_options *o, gencache_keyspace *ks,
                  replay_trace *tr)
{
    for (size_t l = 0; l < tr->n_layers; l++) {
        replay_layer *L = &tr->layers[l];
        L->keys = calloc(tr->n_rows ? tr->n_rows : 1, sizeof *L->keys);
        L->sizes = calloc(tr->n_rows ? tr->n_rows : 1, sizeof *L->sizes);
        L->cost_ms = calloc(tr->n_rows ? tr->n_rows : 1, sizeof *L->cost_ms);
        if (!L->keys || !L->sizes || !L->cost_ms) {
            cli_error("replay: out of memory");
            return 1;
        }
    }
    char key[GENCACHE_KEY_MAX], err[GENCACHE_ERRMSG_MAX];
    for (size_t r = 0; r < tr->n_rows; r++) {
        const char *bad;
        json_t *req = row_request(cs, r, o->model, &bad);
        if (bad) {
            bool whole =
                strcmp(bad, "cfg") && strcmp(bad, "guidance") && strcmp(bad, "gen_seconds");
            cli_error("replay: %s: row %zu: column %s: expected a %snumber", o->trace, r + 2, bad,
                      whole ? "non-negative whole " : "");
            return 1;
        }
        char *text = req ? json_dumps(req, JSON_COMPACT) : NULL;
        json_decref(req);
        gencache_request *q = NULL;
        int rc = text ? gencache_request_parse_ex(ks, text, strlen(text), 0, &q, err, sizeof err)
                      : GENCACHE_ENOMEM;
        free(text);
        if (rc != GENCACHE_OK) {
            cli_error("replay: %s: row %zu: %s", o->trace, r + 2,
                      rc == GENCACHE_ENOMEM ? "out of memory" : err);
            return 1;
        }
        double secs = 0;
        parse_num(cell(cs, "gen_seconds", r), &secs);
        for (size_t l = 0; l < tr->n_layers; l++) {
            replay_layer *L = &tr->layers[l];
            if (gencache_request_key(q, L->name, key, sizeof key) != GENCACHE_OK)
                continue; /* no key in this layer: not part of its replay */
            L->keys[r] = strdup(key);
            if (!L->keys[r]) {
                gencache_request_free(q);
                cli_error("replay: out of memory");
                return 1;
            }
            L->sizes[r] = model_size(L->name, cs, r, L->fixed_size);
            L->cost_ms[r] = (uint64_t)(secs * L->share * 1000.0 + 0.5);
        }
        gencache_request_free(q);
    }
    return 0;
}

/* The distinct keys of a layer and their bytes (each key's first size). */
static int working_set(replay_trace *tr, replay_layer *L)
{
    size_t cap = 1;
    while (cap < tr->n_rows * 2)
        cap <<= 1;
    const char **slots = calloc(cap, sizeof *slots);
    if (!slots) {
        cli_error("replay: out of memory");
        return 1;
    }
    for (size_t r = 0; r < tr->n_rows; r++) {
        const char *k = L->keys[r];
        if (!k)
            continue;
        L->requests++;
        uint64_t h = 1469598103934665603ull;
        for (const char *p = k; *p; p++)
            h = (h ^ (unsigned char)*p) * 1099511628211ull;
        size_t i = (size_t)h & (cap - 1);
        while (slots[i] && strcmp(slots[i], k) != 0)
            i = (i + 1) & (cap - 1);
        if (!slots[i]) {
            slots[i] = k;
            L->distinct++;
            L->working_set_bytes += L->sizes[r];
        }
    }
    free(slots);
    return 0;
}

int replay_trace_load(const replay_options *o, replay_trace *tr)
{
    memset(tr, 0, sizeof *tr);
    table main_t, extra_t = {0};
    if (table_load(o->trace, &main_t) != 0)
        return 1;
    columns cs = {&main_t, NULL};
    if (o->extra) {
        if (table_load(o->extra, &extra_t) != 0) {
            table_free(&main_t);
            return 1;
        }
        if (extra_t.n_rows != main_t.n_rows) {
            cli_error("replay: %s has %zu rows, %s %zu: they must be row-aligned", o->extra,
                      extra_t.n_rows, o->trace, main_t.n_rows);
            table_free(&main_t);
            table_free(&extra_t);
            return 1;
        }
        cs.extra = &extra_t;
    }
    tr->n_rows = main_t.n_rows;
    if (o->limit && o->limit < tr->n_rows)
        tr->n_rows = o->limit;
    tr->n_layers = o->n_layers;
    for (size_t l = 0; l < o->n_layers; l++) {
        tr->layers[l].name = o->layers[l];
        tr->layers[l].share = o->shares[l];
        tr->layers[l].fixed_size = o->sizes[l];
    }

    /* Keys come from the library, with the default layers or the recipes --layer-fields sets. */
    gencache_options co;
    gencache_options_init(&co);
    co.ghost_max_entries = 0;
    co.mrc_sample_rate = 0;
    gencache *kc = NULL;
    gencache_keyspace *ks = NULL;
    int rc = gencache_open(&kc, &co);
    if (rc == GENCACHE_OK)
        rc = gencache_keyspace_from_cache(kc, &ks);
    for (size_t i = 0; rc == GENCACHE_OK && i < o->n_recipes; i++) {
        const replay_recipe *rr = &o->recipes[i];
        gencache_layer_options lo;
        gencache_layer_options_init(&lo);
        if (gencache_layer_get(kc, rr->layer, &lo) != GENCACHE_OK) {
            gencache_layer_options_init(&lo);
            lo.name = rr->layer;
        }
        lo.fields = (const char *const *)rr->fields;
        lo.n_fields = rr->n_fields;
        rc = gencache_layer_define(kc, &lo);
        if (rc != GENCACHE_OK)
            cli_error("replay: --layer-fields %s: %s", rr->layer, gencache_strerror(rc));
    }
    int ret = rc == GENCACHE_OK ? 0 : 1;
    for (size_t l = 0; ret == 0 && l < tr->n_layers; l++) {
        gencache_layer_options lo;
        gencache_layer_options_init(&lo);
        if (gencache_layer_get(kc, tr->layers[l].name, &lo) != GENCACHE_OK) {
            cli_error("replay: unknown layer '%s'", tr->layers[l].name);
            ret = 1;
        }
    }
    if (ret == 0)
        ret = derive(&cs, o, ks, tr);
    for (size_t l = 0; ret == 0 && l < tr->n_layers; l++)
        ret = working_set(tr, &tr->layers[l]);
    gencache_keyspace_free(ks);
    gencache_close(kc);
    table_free(&main_t);
    table_free(&extra_t);
    return ret;
}

void replay_trace_free(replay_trace *tr)
{
    for (size_t l = 0; l < tr->n_layers; l++) {
        replay_layer *L = &tr->layers[l];
        for (size_t r = 0; L->keys && r < tr->n_rows; r++)
            free(L->keys[r]);
        free(L->keys);
        free(L->sizes);
        free(L->cost_ms);
    }
    memset(tr, 0, sizeof *tr);
}
