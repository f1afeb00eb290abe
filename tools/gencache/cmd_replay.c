/*
 * cmd_replay.c: `gencache replay TRACE.tsv`, what a cache of a given size and eviction policy
 * would have saved on a real request log. It drives the library itself, not a model of it: for
 * each layer, policy and capacity it opens a cache with only a memory tier of that capacity and
 * policy, and sends each request's get (and on a miss its put, with the request's cost) through
 * the public API under a clock that ticks once per request. The trace has no times, so nothing
 * expires. Values are stored at 1/scale of their modeled size with the per-entry overhead taken
 * out, so each entry holds exactly 1/scale of its modeled bytes of a capacity/scale tier: the
 * same hit ratios as at full size, at a fraction of the memory and time.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gencache.h"
#include "replay.h"

#define MAX_POLICIES   3
#define MAX_CAPACITIES 16
#define TARGET_VALUE   2048 /* auto scale: at least this many bytes stored per value */

typedef struct capacity {
    double pct;     /* of the working set; 0: bytes */
    uint64_t bytes; /* when pct is 0 */
} capacity;

typedef struct result {
    uint64_t requests, hits, bytes, hit_bytes, cost_ms, saved_ms;
    double seconds;
    gencache_mrc mrc;         /* the library's estimate for other sizes, with --mrc */
    uint64_t stored_saved_ms; /* the library's own count: the stored entries' costs over hits */
} result;

/* What to run and how to print it, from the command line. */
typedef struct run_plan {
    int policies[MAX_POLICIES];
    size_t n_pol;
    capacity caps[MAX_CAPACITIES];
    size_t n_caps;
    uint64_t scale;  /* 0: each layer's own (auto_scale) */
    double mrc_rate; /* 0: no miss-ratio curve */
    bool json, bar, mixed;
} run_plan;

static const char *const policy_names[] = {"lru", "gdsf", "s3fifo"};

static uint64_t replay_clock(void *ud)
{
    return *(const uint64_t *)ud;
}

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Splits a comma-separated list in place into at most max items. Returns the count, or -1. */
static int split(char *s, char **items, int max)
{
    int n = 0;
    for (char *tok = strtok(s, ","); tok; tok = strtok(NULL, ",")) {
        if (n == max)
            return -1;
        items[n++] = tok;
    }
    return n;
}

static int parse_capacity(const char *s, capacity *c)
{
    size_t len = strlen(s);
    memset(c, 0, sizeof *c);
    if (len > 1 && s[len - 1] == '%') {
        char *end;
        c->pct = strtod(s, &end);
        return end == s + len - 1 && c->pct > 0 && c->pct <= 100 ? 0 : -1;
    }
    return gencache_parse_size(s, &c->bytes) == GENCACHE_OK && c->bytes > 0 ? 0 : -1;
}

/* LAYER=VALUE: the index of LAYER among the replayed layers and VALUE; -1 when malformed. */
static int layer_arg(const replay_options *o, char *arg, char **value)
{
    char *eq = strchr(arg, '=');
    if (!eq || eq == arg || !eq[1])
        return -1;
    *eq = '\0';
    *value = eq + 1;
    for (size_t i = 0; i < o->n_layers; i++)
        if (strcmp(o->layers[i], arg) == 0)
            return (int)i;
    return -2;
}

static int add_recipe(replay_options *o, char *arg)
{
    char *eq = strchr(arg, '=');
    if (!eq || eq == arg || !eq[1] || o->n_recipes == REPLAY_MAX_LAYERS)
        return -1;
    *eq = '\0';
    replay_recipe *r = &o->recipes[o->n_recipes];
    r->layer = arg;
    r->fields = calloc(64, sizeof *r->fields);
    int n = r->fields ? split(eq + 1, r->fields, 64) : -1;
    if (n <= 0) {
        free(r->fields);
        return -1;
    }
    r->n_fields = (size_t)n;
    o->n_recipes++;
    return 0;
}

/* Bytes each entry is charged beyond its value in a layer (its metadata and key), measured by
 * storing an empty value. */
static uint64_t entry_overhead(const char *key)
{
    gencache_options o;
    gencache_options_init(&o);
    o.ghost_max_entries = 0;
    o.mrc_sample_rate = 0;
    gencache *c = NULL;
    uint64_t bytes = 0;
    if (gencache_open(&c, &o) == GENCACHE_OK && gencache_put(c, key, "", 0, NULL) == GENCACHE_OK) {
        gencache_stats st = {.struct_size = sizeof st};
        if (gencache_stats_get(c, &st) == GENCACHE_OK)
            bytes = st.tiers[0].bytes;
    }
    gencache_close(c);
    return bytes;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The largest power of two that keeps the mean stored value at TARGET_VALUE bytes or more and
 * 99% of the values at twice the per-entry overhead or more. A value whose share is below the
 * overhead is stored empty, charged the overhead: a little more than its share. */
static uint64_t auto_scale(const replay_layer *L, size_t n_rows, uint64_t overhead)
{
    uint64_t *sizes = malloc((n_rows ? n_rows : 1) * sizeof *sizes);
    size_t n = 0;
    for (size_t r = 0; sizes && r < n_rows; r++)
        if (L->keys[r])
            sizes[n++] = L->sizes[r];
    if (!sizes || n == 0) {
        free(sizes);
        return 1;
    }
    qsort(sizes, n, sizeof *sizes, cmp_u64);
    uint64_t p1 = sizes[n / 100];
    free(sizes);
    uint64_t mean = L->working_set_bytes / (L->distinct ? L->distinct : 1);
    uint64_t s = 1;
    while (mean / (s * 2) >= TARGET_VALUE && p1 / (s * 2) >= 2 * overhead)
        s *= 2;
    return s;
}

static void progress(const char *what, size_t done, size_t total)
{
    int w = 30, filled = total ? (int)((double)done / (double)total * w) : w;
    fprintf(stderr, "\r%-40.40s [%.*s%*s] %3d%%", what, filled, "##############################",
            w - filled, "", total ? (int)(100.0 * (double)done / (double)total) : 100);
    if (done == total)
        fputs("\r\033[K", stderr);
    fflush(stderr);
}

/* Replays layers Ls[0..n) through one fresh memory-only cache: each request's get (and put on a
 * miss) in each layer in turn. res[i] gets layer i's counts. Returns a GENCACHE_* code. */
static int run(const replay_layer *const *Ls, size_t n, size_t n_rows, int policy,
               uint64_t cap_bytes, uint64_t scale, const uint64_t *overheads, double mrc_rate,
               const unsigned char *zeros, const char *label, bool bar, result *res)
{
    memset(res, 0, n * sizeof *res);
    uint64_t now = 1;
    gencache_options o;
    gencache_options_init(&o);
    o.mem_max_bytes = cap_bytes / scale ? cap_bytes / scale : 1;
    o.mem_max_pinned_bytes = o.mem_max_bytes;
    o.mem_shards = 1;
    o.mem_policy = policy;
    o.ghost_max_entries = 0;
    o.mrc_sample_rate = mrc_rate;
    o.clock_fn = replay_clock;
    o.clock_userdata = &now;
    gencache *c = NULL;
    int rc = gencache_open(&c, &o);
    for (size_t l = 0; rc == GENCACHE_OK && l < n; l++) {
        gencache_layer_options lo;
        gencache_layer_options_init(&lo);
        rc = gencache_layer_get(c, Ls[l]->name, &lo);
        if (rc == GENCACHE_OK) {
            lo.fields = NULL; /* keys are given, not derived here */
            lo.ttl_ms = 0;    /* the trace has no times: nothing expires */
            lo.sliding_ttl = 0;
            rc = gencache_layer_define(c, &lo);
        }
    }
    gencache_meta m;
    gencache_meta_init(&m);
    double t0 = mono_s();
    for (size_t r = 0; rc == GENCACHE_OK && r < n_rows; r++) {
        if (bar && (r & 4095) == 0)
            progress(label, r, n_rows);
        for (size_t l = 0; rc == GENCACHE_OK && l < n; l++) {
            const replay_layer *L = Ls[l];
            const char *key = L->keys[r];
            if (!key)
                continue;
            now++;
            result *x = &res[l];
            x->requests++;
            x->bytes += L->sizes[r];
            x->cost_ms += L->cost_ms[r];
            gencache_handle *h = NULL;
            int grc = gencache_get(c, key, &h);
            if (grc == GENCACHE_OK) {
                x->hits++;
                x->hit_bytes += L->sizes[r];
                x->saved_ms += L->cost_ms[r];
                gencache_handle_release(h);
                continue;
            }
            if (grc != GENCACHE_ENOTFOUND) {
                rc = grc;
                break;
            }
            uint64_t stored = L->sizes[r] / scale;
            m.cost_ms = L->cost_ms[r];
            int prc =
                gencache_put(c, key, zeros, stored > overheads[l] ? stored - overheads[l] : 0, &m);
            if (prc != GENCACHE_OK && prc != GENCACHE_ETOOBIG && prc != GENCACHE_EFULL)
                rc = prc;
        }
    }
    double secs = mono_s() - t0;
    gencache_mrc mrc = {.struct_size = sizeof mrc};
    if (rc == GENCACHE_OK)
        rc = gencache_mrc_get(c, &mrc);
    gencache_stats *st = calloc(1, sizeof *st);
    if (rc == GENCACHE_OK && !st)
        rc = GENCACHE_ENOMEM;
    if (st)
        st->struct_size = sizeof *st;
    if (rc == GENCACHE_OK)
        rc = gencache_stats_get(c, st);
    for (size_t l = 0; l < n; l++) {
        res[l].seconds = secs;
        res[l].mrc = mrc;
        for (uint32_t i = 0; rc == GENCACHE_OK && i < st->n_layers; i++)
            if (strcmp(st->layers[i].layer, Ls[l]->name) == 0)
                res[l].stored_saved_ms = st->layers[i].cost_ms_saved;
    }
    free(st);
    if (bar)
        progress(label, n_rows, n_rows);
    gencache_close(c);
    return rc;
}

static double ratio(uint64_t a, uint64_t b)
{
    return b ? (double)a / (double)b : 0.0;
}

/* tier: in a mixed run, the tier all layers share, for a row of one of them (NULL otherwise). */
static void print_result(bool json, const replay_layer *L, const char *policy, const capacity *cap,
                         uint64_t cap_bytes, uint64_t scale, const result *r,
                         const replay_layer *tier)
{
    uint64_t ws = tier ? tier->working_set_bytes : L->working_set_bytes;
    if (json) {
        printf("{\"layer\": \"%s\", \"policy\": \"%s\", \"capacity_bytes\": %llu, "
               "\"capacity_pct\": %.6g, \"working_set_bytes\": %llu, \"requests\": %llu, "
               "\"hits\": %llu, \"hit_ratio\": %.6f, \"byte_hit_ratio\": %.6f, "
               "\"gpu_seconds_saved\": %.3f, \"gpu_seconds_total\": %.3f, \"scale\": %llu, "
               "\"requests_per_second\": %.0f",
               L->name, policy, (unsigned long long)cap_bytes, 100.0 * ratio(cap_bytes, ws),
               (unsigned long long)L->working_set_bytes, (unsigned long long)r->requests,
               (unsigned long long)r->hits, ratio(r->hits, r->requests),
               ratio(r->hit_bytes, r->bytes), (double)r->saved_ms / 1000.0,
               (double)r->cost_ms / 1000.0, (unsigned long long)scale,
               r->seconds > 0 ? (double)r->requests / r->seconds : 0.0);
        printf(", \"gpu_seconds_saved_stored\": %.3f", (double)r->stored_saved_ms / 1000.0);
        if (tier || strcmp(L->name, "all") == 0)
            printf(", \"mixed\": true");
        if (r->mrc.n_points) {
            printf(", \"mrc_sample_rate\": %g, \"mrc\": [", r->mrc.sample_rate);
            for (uint32_t i = 0; i < r->mrc.n_points; i++)
                printf("%s{\"scale\": %g, \"hit_ratio\": %.6f, \"gpu_seconds_saved\": %.3f}",
                       i ? ", " : "", r->mrc.points[i].scale, r->mrc.points[i].hit_ratio,
                       r->mrc.points[i].gpu_seconds_saved);
            printf("]");
        }
        printf("}\n");
        return;
    }
    char capbuf[32];
    if (cap->pct > 0)
        snprintf(capbuf, sizeof capbuf, "%g%%", cap->pct);
    else
        snprintf(capbuf, sizeof capbuf, "%llu", (unsigned long long)cap->bytes);
    printf("%-15s %-7s %8s %14llu %9.4f %9.4f %12.1f %12.1f %9.0f\n", L->name, policy, capbuf,
           (unsigned long long)cap_bytes, ratio(r->hits, r->requests),
           ratio(r->hit_bytes, r->bytes), (double)r->saved_ms / 1000.0, (double)r->cost_ms / 1000.0,
           r->seconds > 0 ? (double)r->requests / r->seconds : 0.0);
    for (uint32_t i = 0; i < r->mrc.n_points; i++)
        printf("%-15s %-7s %7gx %14s %9.4f %9s %12.1f   (miss-ratio curve estimate)\n", "", "",
               r->mrc.points[i].scale, "", r->mrc.points[i].hit_ratio, "",
               r->mrc.points[i].gpu_seconds_saved);
}

/* Fills o from the command line. Returns -1 to go on, else the exit code. */
static int parse_args(int argc, char **argv, replay_options *o, run_plan *pl)
{
    static const struct option longs[] = {{"layers", required_argument, 0, 'l'},
                                          {"policy", required_argument, 0, 'p'},
                                          {"capacity", required_argument, 0, 'c'},
                                          {"layer-fields", required_argument, 0, 'f'},
                                          {"json", no_argument, 0, 'j'},
                                          {"extra", required_argument, 0, 'e'},
                                          {"model", required_argument, 0, 'm'},
                                          {"cost-share", required_argument, 0, 's'},
                                          {"size", required_argument, 0, 'z'},
                                          {"scale", required_argument, 0, 'S'},
                                          {"limit", required_argument, 0, 'n'},
                                          {"no-progress", no_argument, 0, 'q'},
                                          {"mrc", required_argument, 0, 'M'},
                                          {"mixed", no_argument, 0, 'X'},
                                          {0, 0, 0, 0}};
    char *layers = NULL, *pols = NULL, *capstr = NULL, *shares[REPLAY_MAX_LAYERS],
         *sizes[REPLAY_MAX_LAYERS];
    size_t n_shares = 0, n_sizes = 0;
    bool no_extra = false;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        switch (c) {
        case 'l':
            layers = optarg;
            break;
        case 'p':
            pols = optarg;
            break;
        case 'c':
            capstr = optarg;
            break;
        case 'f':
            if (add_recipe(o, optarg) != 0)
                return cli_usage_error("replay", "bad --layer-fields (NAME=f1,f2,...):", optarg);
            break;
        case 'j':
            pl->json = true;
            break;
        case 'e':
            o->extra = *optarg ? optarg : NULL;
            no_extra = !*optarg;
            break;
        case 'm':
            o->model = optarg;
            break;
        case 's':
        case 'z':
            if ((c == 's' ? n_shares : n_sizes) == REPLAY_MAX_LAYERS)
                return cli_usage_error("replay", "too many", c == 's' ? "--cost-share" : "--size");
            if (c == 's')
                shares[n_shares++] = optarg;
            else
                sizes[n_sizes++] = optarg;
            break;
        case 'S':
            if (gencache_parse_size(optarg, &pl->scale) != GENCACHE_OK || pl->scale == 0)
                return cli_usage_error("replay", "bad --scale:", optarg);
            break;
        case 'n':
            o->limit = (size_t)strtoull(optarg, NULL, 10);
            break;
        case 'q':
            pl->bar = false;
            break;
        case 'X':
            pl->mixed = true;
            break;
        case 'M': {
            char *end;
            pl->mrc_rate = strtod(optarg, &end);
            if (*end || !(pl->mrc_rate > 0 && pl->mrc_rate <= 1))
                return cli_usage_error("replay", "bad --mrc (a sampling rate in (0, 1]):", optarg);
            break;
        }
        default:
            return cli_usage_error("replay", "bad option", NULL);
        }
    }
    if (optind != argc - 1)
        return cli_usage_error("replay", "expects one TRACE.tsv", NULL);
    o->trace = argv[optind];
    static char def_layers[] = "result,text_embedding,condition";
    int n = split(layers ? layers : def_layers, (char **)o->layers, REPLAY_MAX_LAYERS);
    if (n <= 0)
        return cli_usage_error("replay", "bad --layers", layers);
    o->n_layers = (size_t)n;
    char def_pols[] = "lru,gdsf,s3fifo", *pv[MAX_POLICIES];
    n = split(pols ? pols : def_pols, pv, MAX_POLICIES);
    if (n <= 0)
        return cli_usage_error("replay", "bad --policy", pols);
    for (int i = 0; i < n; i++) {
        int k = -1;
        for (int j = 0; j < MAX_POLICIES; j++)
            if (strcmp(pv[i], policy_names[j]) == 0)
                k = j;
        if (k < 0)
            return cli_usage_error("replay", "unknown policy (lru, gdsf, s3fifo):", pv[i]);
        pl->policies[pl->n_pol++] = k;
    }
    char def_caps[] = "0.1%,1%,10%", *cv[MAX_CAPACITIES];
    n = split(capstr ? capstr : def_caps, cv, MAX_CAPACITIES);
    if (n <= 0)
        return cli_usage_error("replay", "bad --capacity", capstr);
    for (int i = 0; i < n; i++)
        if (parse_capacity(cv[i], &pl->caps[pl->n_caps++]) != 0)
            return cli_usage_error("replay", "bad capacity (0.1%, 5%, 512M, ...):", cv[i]);
    for (size_t i = 0; i < o->n_layers; i++)
        o->shares[i] = replay_default_share(o->layers[i]);
    for (size_t i = 0; i < n_shares + n_sizes; i++) {
        bool is_share = i < n_shares;
        char *v = NULL;
        int l = layer_arg(o, is_share ? shares[i] : sizes[i - n_shares], &v);
        char *end = NULL;
        if (l == -2)
            return cli_usage_error("replay", "names a layer not replayed:",
                                   is_share ? shares[i] : sizes[i - n_shares]);
        if (l >= 0 && is_share) {
            o->shares[l] = strtod(v, &end);
            if (*end || o->shares[l] < 0)
                l = -1;
        } else if (l >= 0 && gencache_parse_size(v, &o->sizes[l]) != GENCACHE_OK) {
            l = -1;
        }
        if (l < 0)
            return cli_usage_error(
                "replay", is_share ? "bad --cost-share (LAYER=0.05):" : "bad --size (LAYER=BYTES):",
                v ? v : "");
    }
    if (!o->extra && !no_extra) {
        /* FILE.tsv's companion FILE.extra.tsv, when there is one. */
        static char x[4096];
        size_t len = strlen(o->trace);
        if (len > 4 && len < sizeof x - 16 && strcmp(o->trace + len - 4, ".tsv") == 0) {
            memcpy(x, o->trace, len - 4);
            strcpy(x + len - 4, ".extra.tsv");
            if (access(x, R_OK) == 0)
                o->extra = x;
        }
    }
    return -1;
}

int cmd_replay(int argc, char **argv)
{
    replay_options o = {.model = "stable-diffusion-v1-4"};
    run_plan pl = {.bar = isatty(2)};
    bool keyless = false;
    int code = parse_args(argc, argv, &o, &pl);
    replay_trace tr = {0};
    if (code < 0 && replay_trace_load(&o, &tr) != 0)
        code = 1;
    if (code < 0 && !pl.json)
        printf("%-15s %-7s %8s %14s %9s %9s %12s %12s %9s\n", "layer", "policy", "capacity",
               "bytes", "hit_ratio", "byte_hit", "gpu_s_saved", "gpu_s_total", "req/s");
    /* One run per layer, or with --mixed one run of every layer through one tier. */
    size_t n_groups = pl.mixed ? 1 : tr.n_layers, per = pl.mixed ? tr.n_layers : 1;
    for (size_t g = 0; code < 0 && g < n_groups; g++) {
        const replay_layer *Ls[REPLAY_MAX_LAYERS];
        uint64_t overheads[REPLAY_MAX_LAYERS], s = 0, max_size = 0;
        replay_layer all = {.name = "all"};
        size_t n = 0;
        for (size_t l = g * per; l < g * per + per; l++) {
            replay_layer *L = &tr.layers[l];
            const char *first = NULL;
            for (size_t r = 0; r < tr.n_rows; r++) {
                if (L->keys[r] && !first)
                    first = L->keys[r];
                if (L->keys[r] && L->sizes[r] > max_size)
                    max_size = L->sizes[r];
            }
            if (!first) {
                cli_error("replay: no request of the trace has a key in layer %s", L->name);
                keyless = true; /* the other layers are still replayed */
                continue;
            }
            overheads[n] = entry_overhead(first);
            uint64_t ls = pl.scale ? pl.scale : auto_scale(L, tr.n_rows, overheads[n]);
            s = s && s < ls ? s : ls; /* one tier: the finest of the layers' scales */
            all.requests += L->requests;
            all.distinct += L->distinct;
            all.working_set_bytes += L->working_set_bytes;
            Ls[n++] = L;
        }
        if (n == 0)
            continue;
        const replay_layer *shown = pl.mixed ? &all : Ls[0];
        unsigned char *zeros = calloc(1, max_size / s + 1);
        if (!zeros) {
            cli_error("replay: out of memory");
            code = 1;
            break;
        }
        for (size_t p = 0; code < 0 && p < pl.n_pol; p++) {
            for (size_t k = 0; code < 0 && k < pl.n_caps; k++) {
                uint64_t cap =
                    pl.caps[k].pct > 0
                        ? (uint64_t)((double)shown->working_set_bytes * pl.caps[k].pct / 100.0)
                        : pl.caps[k].bytes;
                char label[64];
                snprintf(label, sizeof label, "%s %s %llu", shown->name,
                         policy_names[pl.policies[p]], (unsigned long long)cap);
                result res[REPLAY_MAX_LAYERS], sum = {0};
                int rc = run(Ls, n, tr.n_rows, pl.policies[p], cap, s, overheads, pl.mrc_rate,
                             zeros, label, pl.bar, res);
                if (rc != GENCACHE_OK) {
                    cli_error("replay: %s: %s", label, gencache_strerror(rc));
                    code = 1;
                    break;
                }
                for (size_t l = 0; l < n; l++) {
                    sum.requests += res[l].requests;
                    sum.hits += res[l].hits;
                    sum.bytes += res[l].bytes;
                    sum.hit_bytes += res[l].hit_bytes;
                    sum.cost_ms += res[l].cost_ms;
                    sum.saved_ms += res[l].saved_ms;
                    sum.stored_saved_ms += res[l].stored_saved_ms;
                    sum.seconds = res[l].seconds;
                    sum.mrc = res[l].mrc;
                    if (pl.mixed)
                        print_result(pl.json, Ls[l], policy_names[pl.policies[p]], &pl.caps[k], cap,
                                     s, &res[l], &all);
                }
                print_result(pl.json, shown, policy_names[pl.policies[p]], &pl.caps[k], cap, s,
                             &sum, NULL);
            }
        }
        free(zeros);
    }
    if (keyless && code < 0)
        code = 1;
    if (fflush(stdout) != 0 && code < 0) {
        cli_error("write failed");
        code = 1;
    }
    replay_trace_free(&tr);
    for (size_t i = 0; i < o.n_recipes; i++)
        free(o.recipes[i].fields);
    return code < 0 ? 0 : code;
}
