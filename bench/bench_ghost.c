/*
 * bench_ghost.c: how far the cache's sampled ghost list (src/policy/ghost.c) strays from the exact
 * one, on the real request log. The ghost-hit count estimates the hits a tier larger by the ghost
 * list's capacity would have had; this replays the log through the library (gencache_put on a
 * miss, gencache_get first) with a memory tier of C entries and compares, per layer:
 *   - the sampled estimate (1 key in 16, what gencache_open() picks for the default capacity)
 *     with the exact count (every key remembered), both for a ghost list of G evicted keys;
 *   - both with what a replay at C + G entries actually hit beyond the replay at C.
 * C is 1% and 10% of the layer's distinct keys; G is C (the question "what would twice the
 * tier give") and 65536 (the default, more than this log evicts: "what would an unbounded tier
 * give"). Which keys the sample holds depends on their hashes, so the keys are derived with
 * SEEDS different seeds (the same requests, other hash values); each seed is one estimate, and
 * the median and largest error over the seeds are printed.
 * Keys: text_embedding from the prompt, result from the seed-free recipe (prompt, steps, cfg,
 * width, height), each "<layer>/<64 hex>" made from the fields' XXH3 (the cache's keys are
 * SHA-256 of a canonical document; any well-mixed hash gives the same sample statistics).
 * Usage: bench_ghost [TRACE.tsv] [SEEDS]   (default ../shared/traces/sd-discord-dream-2.tsv, 15)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gencache.h"
#include "internal.h"

enum { MAX_FIELDS = 8, SAMPLE_SHIFT = 4, DEFAULT_GHOST = 65536 };

typedef struct trace {
    char **recipe[2]; /* per request: the text each layer's key is made from */
    size_t n;
} trace;

static const char *const layer_names[2] = {"text_embedding", "result"};

static char *dup_str(const char *s)
{
    char *d = strdup(s);
    if (!d)
        exit(1);
    return d;
}

/* Reads the log's prompt, steps, cfg, width and height columns. */
static void trace_load(const char *path, trace *t)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "bench_ghost: cannot open %s\n", path);
        exit(1);
    }
    size_t cap = 65536;
    t->recipe[0] = malloc(cap * sizeof(char *));
    t->recipe[1] = malloc(cap * sizeof(char *));
    t->n = 0;
    char *line = NULL;
    size_t len = 0;
    bool header = true;
    while (getline(&line, &len, f) > 0) {
        if (header) {
            header = false;
            continue;
        }
        line[strcspn(line, "\r\n")] = '\0';
        char *field[MAX_FIELDS] = {0};
        char *p = line;
        for (int i = 0; i < MAX_FIELDS && p; i++) {
            field[i] = p;
            p = strchr(p, '\t');
            if (p)
                *p++ = '\0';
        }
        if (!field[7])
            continue; /* timestamp user prompt seed steps cfg width height */
        if (t->n == cap) {
            cap *= 2;
            t->recipe[0] = realloc(t->recipe[0], cap * sizeof(char *));
            t->recipe[1] = realloc(t->recipe[1], cap * sizeof(char *));
            if (!t->recipe[0] || !t->recipe[1])
                exit(1);
        }
        char buf[8192];
        t->recipe[0][t->n] = dup_str(field[2]);
        snprintf(buf, sizeof buf, "%s\t%s\t%s\t%s\t%s", field[2], field[4], field[5], field[6],
                 field[7]);
        t->recipe[1][t->n] = dup_str(buf);
        t->n++;
    }
    free(line);
    fclose(f);
}

/* The key of a recipe under a seed: "<layer>/<64 hex>". */
static void make_key(char *out, size_t out_len, const char *layer, const char *recipe,
                     unsigned seed)
{
    char buf[8400];
    uint64_t h[4];
    for (unsigned i = 0; i < 4; i++) {
        int n = snprintf(buf, sizeof buf, "%u.%u.%s", seed, i, recipe);
        h[i] = gencache__checksum(buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
    }
    snprintf(out, out_len, "%s/%016llx%016llx%016llx%016llx", layer, (unsigned long long)h[0],
             (unsigned long long)h[1], (unsigned long long)h[2], (unsigned long long)h[3]);
}

typedef struct replay_result {
    uint64_t hits, ghost_hits, lookups;
} replay_result;

/* The replay's clock: one millisecond per request, so that recency orders every access (a real
 * clock would give most of a fast replay the same millisecond). */
static uint64_t tick_ms;

static uint64_t tick_clock(void *unused)
{
    (void)unused;
    return tick_ms;
}

/* Replays keys[0..n) through a cache of `entries` entries with a ghost list of `ghost` keys
 * sampled at 2^-shift (ghost 0: none). */
static replay_result replay(char **keys, size_t n, const char *layer, uint64_t entries,
                            uint64_t ghost, unsigned shift)
{
    gencache_options o;
    gencache_options_init(&o);
    o.mem_max_bytes = 0;
    o.mem_max_entries = entries;
    o.mrc_sample_rate = 0;
    o.clock_fn = tick_clock;
    gencache *c;
    if (gencache_open(&c, &o) != GENCACHE_OK || gencache__cache_set_ghosts(c, ghost, shift) != 0)
        exit(1);
    unsigned char v = 1;
    for (size_t i = 0; i < n; i++) {
        tick_ms = 1000 + i;
        gencache_handle *h;
        if (gencache_get(c, keys[i], &h) == GENCACHE_OK)
            gencache_handle_release(h);
        else if (gencache_put(c, keys[i], &v, 1, NULL) != GENCACHE_OK)
            exit(1);
    }
    gencache_stats st = {.struct_size = sizeof st};
    if (gencache_stats_get(c, &st) != GENCACHE_OK)
        exit(1);
    replay_result r = {0, 0, 0};
    for (unsigned i = 0; i < st.n_layers; i++)
        if (strcmp(st.layers[i].layer, layer) == 0)
            r = (replay_result){st.layers[i].hits, st.layers[i].ghost_hits, st.layers[i].lookups};
    gencache_close(c);
    return r;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static size_t distinct(char **keys, size_t n)
{
    char **sorted = malloc(n * sizeof *sorted);
    memcpy(sorted, keys, n * sizeof *sorted);
    qsort(sorted, n, sizeof *sorted, cmp_str);
    size_t d = 0;
    for (size_t i = 0; i < n; i++)
        if (i == 0 || strcmp(sorted[i], sorted[i - 1]) != 0)
            d++;
    free(sorted);
    return d;
}

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : "../shared/traces/sd-discord-dream-2.tsv";
    int seeds = argc > 2 ? atoi(argv[2]) : 15;
    if (seeds < 1 || seeds > 64) {
        fprintf(stderr, "usage: bench_ghost [TRACE.tsv] [SEEDS 1..64]\n");
        return 2;
    }
    trace t;
    trace_load(path, &t);
    printf("trace %s: %zu requests; sampled ghost list at 1/%u against the exact one, %d seeds\n",
           path, t.n, 1u << SAMPLE_SHIFT, seeds);
    printf("%-15s %6s %6s %7s %7s %8s %8s %8s %8s %8s %9s\n", "layer", "C", "G", "exact", "replay",
           "est med", "err med", "err max", "rms err", "expected", "ratio err");
    char **keys = malloc(t.n * sizeof *keys);
    char *text = malloc(t.n * 96);
    if (!keys || !text)
        return 1;
    for (int l = 0; l < 2; l++) {
        for (size_t i = 0; i < t.n; i++) {
            keys[i] = text + i * 96;
            make_key(keys[i], 96, layer_names[l], t.recipe[l][i], 0);
        }
        size_t d = distinct(keys, t.n);
        for (int ci = 0; ci < 2; ci++) {
            uint64_t cap = (uint64_t)((double)d * (ci == 0 ? 0.01 : 0.10));
            for (int gi = 0; gi < 2; gi++) {
                uint64_t g = gi == 0 ? cap : DEFAULT_GHOST;
                double err[64], est[64], exact_sum = 0, replay_sum = 0, sq = 0, pp = 0;
                for (int s = 0; s < seeds; s++) {
                    for (size_t i = 0; i < t.n; i++)
                        make_key(keys[i], 96, layer_names[l], t.recipe[l][i], (unsigned)s + 1);
                    replay_result ex = replay(keys, t.n, layer_names[l], cap, g, 0);
                    replay_result sm = replay(keys, t.n, layer_names[l], cap, g, SAMPLE_SHIFT);
                    replay_result big = replay(keys, t.n, layer_names[l], cap + g, 0, 0);
                    exact_sum += (double)ex.ghost_hits;
                    replay_sum += (double)(big.hits - ex.hits);
                    est[s] = (double)sm.ghost_hits;
                    double e = ex.ghost_hits ? est[s] / (double)ex.ghost_hits - 1 : 0;
                    err[s] = e < 0 ? -e : e;
                    sq += e * e;
                    double diff = (est[s] - (double)ex.ghost_hits) / (double)ex.lookups;
                    pp = diff < 0 ? (-diff > pp ? -diff : pp) : (diff > pp ? diff : pp);
                }
                qsort(est, (size_t)seeds, sizeof *est, cmp_double);
                qsort(err, (size_t)seeds, sizeof *err, cmp_double);
                double exact = exact_sum / seeds, rate = 1.0 / (1u << SAMPLE_SHIFT);
                /* A count thinned to `rate` and scaled back: relative standard deviation
                 * sqrt((1 - rate) / (rate * N)) for N independent events. */
                double expected = exact > 0 ? sqrt((1 - rate) / (rate * exact)) : 0;
                printf("%-15s %6llu %6llu %7.0f %7.0f %8.0f %7.1f%% %7.1f%% %7.1f%% %7.1f%% "
                       "%7.2fpp\n",
                       layer_names[l], (unsigned long long)cap, (unsigned long long)g, exact,
                       replay_sum / seeds, est[seeds / 2], 100 * err[seeds / 2],
                       100 * err[seeds - 1], 100 * sqrt(sq / seeds), 100 * expected, 100 * pp);
                fflush(stdout);
            }
        }
    }
    printf("exact: the exact ghost list's count (mean over seeds); replay: hits of a tier of C + G "
           "entries less those of C (mean); est med: the sampled estimate's median; err: |estimate "
           "/ exact - 1| over the seeds (median, largest, root mean square); expected: the "
           "sampling's relative standard deviation for that many ghost hits, sqrt(15 / exact); "
           "ratio err: the largest error as a share of lookups (percentage points of the "
           "ghost-hit ratio)\n");
    free(text);
    free(keys);
    for (size_t i = 0; i < t.n; i++) {
        free(t.recipe[0][i]);
        free(t.recipe[1][i]);
    }
    free(t.recipe[0]);
    free(t.recipe[1]);
    return 0;
}
