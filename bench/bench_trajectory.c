/*
 * bench_trajectory.c: nearest-neighbour search in the trajectory index (src/reuse/traj_index.c):
 * the approximate search (an HNSW graph, re-ranked exactly) against exact search of the same
 * index, timed in the same run, interleaved query by query. Prints the time to add the N
 * vectors, the median and p99 of both searches and the ratio of medians, recall@1 of the
 * approximate search against exact search, and memory per vector (resident set growth while
 * adding, over N; the float32 vector itself is DIM * 4 bytes of it).
 *
 * Two data sets, both documented in docs/BENCHMARKS.md:
 *   trace   proxy embeddings of the real prompts (TRACE, default ../shared/traces/sd-discord-
 *           dream-2.tsv): each distinct word is a fixed pseudo-random Gaussian direction (seeded
 *           by the word's hash), a prompt is the IDF-weighted sum of its distinct words'
 *           directions. N stored vectors are variants of prompts drawn from the trace: each word
 *           kept with probability 0.85, 0 to 2 words of the trace's vocabulary added (drawn as
 *           they occur), plus Gaussian noise of 5% of the norm; queries are fresh variants
 *           drawn the same way. So vectors cluster as prompts do: users edit their prompts.
 *   random  isotropic Gaussian vectors, queries a stored vector plus noise (cosine about 0.9):
 *           the known worst case for graph search, unlike text embeddings.
 * The threshold table accepts every similarity, so the best candidate is the nearest vector.
 *
 *   bench_trajectory [N] [Q] [DIM] [DATA] [M] [EF_CONSTRUCTION] [EF_SEARCH] [MIN_VECTORS]
 *                    default 100000, 200, 768, trace, then the library's defaults
 *   bench_trajectory crossover [DIM] [DATA]
 *                    sizes 256 to 16,384: the median of both searches, where the graph pays
 * TRACE comes from the environment variable GENCACHE_TRACE when set.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_util.h"
#include "reuse/traj_index.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
    return bench_splitmix64(&rng_state);
}

static double uniform(void)
{
    return (double)(rnd() >> 11) / 9007199254740992.0;
}

/* Roughly normal: the sum of four uniforms, centred. */
static float gauss(void)
{
    double s = 0;
    for (int i = 0; i < 4; i++)
        s += uniform();
    return (float)((s - 2.0) * 1.7320508);
}

static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, res = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &res) != 2)
            res = 0;
        fclose(f);
    }
    return res * (sysconf(_SC_PAGESIZE) / 1024);
}

static double p99(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
    int i = (int)ceil(0.99 * n) - 1;
    return v[i < 0 ? 0 : i];
}

/* ---- the trace's prompts as word lists ---- */

typedef struct corpus {
    uint32_t dim;
    /* The vocabulary: an open-addressing table from word hash to word number. */
    uint64_t *hashes;
    uint32_t *ids;
    size_t table_size;
    uint32_t n_words;
    uint32_t *df;     /* prompts holding each word */
    float *word_vecs; /* n_words * dim */
    float *idf;       /* per word */
    uint32_t *words;  /* every prompt's distinct words, one after another */
    size_t n_occ, cap_occ;
    size_t *start; /* prompt p: words[start[p] .. start[p + 1]) */
    size_t n_prompts, cap_prompts;
} corpus;

static uint32_t word_id(corpus *c, const char *w, size_t len)
{
    uint64_t h = gencache__checksum(w, len) | 1;
    size_t i = (size_t)(h * 0x9e3779b97f4a7c15ull >> 20) & (c->table_size - 1);
    while (c->hashes[i] && c->hashes[i] != h)
        i = (i + 1) & (c->table_size - 1);
    if (!c->hashes[i]) {
        c->hashes[i] = h;
        c->ids[i] = c->n_words++;
    }
    return c->ids[i];
}

static void push_word(corpus *c, uint32_t id)
{
    for (size_t i = c->start[c->n_prompts]; i < c->n_occ; i++)
        if (c->words[i] == id)
            return; /* distinct words only */
    if (c->n_occ == c->cap_occ) {
        c->cap_occ = c->cap_occ ? c->cap_occ * 2 : 1 << 20;
        c->words = realloc(c->words, c->cap_occ * sizeof *c->words);
    }
    c->words[c->n_occ++] = id;
}

/* The start of the tab-separated column i of line, and in *end its end; NULL without one. */
static char *column(char *line, int i, char **end)
{
    for (; i > 0 && line; i--)
        if ((line = strchr(line, '\t')))
            line++;
    if (line)
        *end = line + strcspn(line, "\t\n");
    return line;
}

/* Reads the prompt column (the third) of every row; lowercases and splits on what is not a
 * letter or digit (bytes of UTF-8 sequences count as letters). */
static int corpus_read(corpus *c, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        perror(path);
        return -1;
    }
    c->table_size = 1 << 20;
    c->hashes = calloc(c->table_size, sizeof *c->hashes);
    c->ids = calloc(c->table_size, sizeof *c->ids);
    char *line = NULL, *end = NULL;
    size_t cap = 0;
    for (long row = 0; getline(&line, &cap, f) > 0; row++) {
        char *p = row ? column(line, 2, &end) : NULL; /* row 0: the header */
        if (!p)
            continue;
        if (c->n_prompts + 2 > c->cap_prompts) {
            c->cap_prompts = c->cap_prompts ? c->cap_prompts * 2 : 65536;
            c->start = realloc(c->start, c->cap_prompts * sizeof *c->start);
        }
        c->start[c->n_prompts] = c->n_occ;
        char word[256];
        size_t wl = 0;
        for (char *q = p; q <= end; q++) {
            unsigned char ch = q < end ? (unsigned char)*q : ' ';
            bool in = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch >= 0x80 ||
                      (ch >= 'A' && ch <= 'Z');
            if (in && wl < sizeof word)
                word[wl++] = (char)(ch >= 'A' && ch <= 'Z' ? ch + 32 : ch);
            else if (!in && wl) {
                push_word(c, word_id(c, word, wl));
                wl = 0;
            }
        }
        if (c->n_occ > c->start[c->n_prompts]) /* prompts without words are skipped */
            c->start[++c->n_prompts] = c->n_occ;
    }
    free(line);
    fclose(f);
    c->df = calloc(c->n_words, sizeof *c->df);
    c->idf = malloc(c->n_words * sizeof *c->idf);
    c->word_vecs = malloc((size_t)c->n_words * c->dim * sizeof *c->word_vecs);
    for (size_t i = 0; i < c->n_occ; i++)
        c->df[c->words[i]]++;
    for (uint32_t w = 0; w < c->n_words; w++) {
        c->idf[w] = (float)log(1.0 + (double)c->n_prompts / c->df[w]);
        uint64_t saved = rng_state;
        rng_state = 0x51ed2701f3a5c7b3ull ^ ((uint64_t)w * 0x9e3779b97f4a7c15ull);
        for (uint32_t k = 0; k < c->dim; k++)
            c->word_vecs[(size_t)w * c->dim + k] = gauss();
        rng_state = saved;
    }
    return 0;
}

/* A variant of a random prompt of the trace, as described at the top. */
static void variant(const corpus *c, float *v)
{
    memset(v, 0, c->dim * sizeof *v);
    size_t p = rnd() % c->n_prompts;
    int added = (int)(rnd() % 3), used = 0;
    for (size_t i = c->start[p]; i < c->start[p + 1]; i++)
        if (uniform() < 0.85 || (i + 1 == c->start[p + 1] && !used)) {
            uint32_t w = c->words[i];
            used++;
            for (uint32_t k = 0; k < c->dim; k++)
                v[k] += c->idf[w] * c->word_vecs[(size_t)w * c->dim + k];
        }
    for (int a = 0; a < added; a++) {
        uint32_t w = c->words[rnd() % c->n_occ];
        for (uint32_t k = 0; k < c->dim; k++)
            v[k] += c->idf[w] * c->word_vecs[(size_t)w * c->dim + k];
    }
    double ss = 0;
    for (uint32_t k = 0; k < c->dim; k++)
        ss += (double)v[k] * v[k];
    float noise = (float)(0.05 * sqrt(ss / c->dim));
    for (uint32_t k = 0; k < c->dim; k++)
        v[k] += noise * gauss();
}

/* ---- the data set behind one run ---- */

typedef struct source {
    bool trace;
    corpus c;
    uint32_t dim;
    float *stored; /* random: the stored vectors, for the queries near them */
    size_t n_stored;
} source;

static void next_vector(source *s, float *v)
{
    if (s->trace) {
        variant(&s->c, v);
        return;
    }
    for (uint32_t k = 0; k < s->dim; k++)
        v[k] = gauss();
}

static void next_query(source *s, float *v)
{
    if (s->trace) {
        variant(&s->c, v);
        return;
    }
    /* A stored vector (all are unit length after adding) plus noise: cosine about 0.9. */
    const float *src = &s->stored[(rnd() % s->n_stored) * s->dim];
    for (uint32_t k = 0; k < s->dim; k++)
        v[k] = src[k] + 0.48f / sqrtf((float)s->dim) * gauss();
}

static const gencache__traj_table any = {.n = 1, .rows = {{-1.0f, 100}}};

#define MAX_EFS 8

typedef struct result {
    double add_s, build_s, add_graph_med, per_vec, graph_per_vec;
    double exact_med, exact_p99;
    double approx_med[MAX_EFS], approx_p99[MAX_EFS], recall[MAX_EFS];
} result;

static int add_one(gencache__traj *t, source *s, float *v, size_t i)
{
    next_vector(s, v);
    if (!s->trace && i < s->n_stored) {
        double ss = 0;
        for (uint32_t k = 0; k < s->dim; k++)
            ss += (double)v[k] * v[k];
        for (uint32_t k = 0; k < s->dim; k++)
            s->stored[i * s->dim + k] = v[k] / (float)sqrt(ss);
    }
    gencache__traj_rec rec = {.layer = 0, .model_hash = 42, .key_hash = i + 1, .step = 5};
    return gencache__traj_add(t, &rec, v, s->dim) == GENCACHE_OK ? 0 : -1;
}

/* Adds n vectors with graphs off (exact only), then builds the graph at once, as a cache that
 * loads its vectors would; then times ADDS more adds one at a time into the built graph, and Q
 * searches. */
#define ADDS 200
static int run(source *s, size_t n, int q, const gencache__traj_ann_opts *opts, const uint32_t *efs,
               int n_efs, result *r)
{
    gencache__traj *t = NULL;
    if (gencache__traj_new(&t) != GENCACHE_OK)
        return -1;
    gencache__traj_ann_opts off = *opts;
    off.min_vectors = SIZE_MAX;
    gencache__traj_set_ann(t, &off);
    float *v = malloc(s->dim * sizeof *v);
    if (!s->trace) {
        s->stored = malloc(n * s->dim * sizeof *s->stored);
        s->n_stored = n;
    }
    long before = rss_kib();
    double t0 = bench_now_s();
    for (size_t i = 0; i < n; i++)
        if (add_one(t, s, v, i) != 0)
            return -1;
    r->add_s = bench_now_s() - t0;
    gencache__traj_set_ann(t, opts);
    t0 = bench_now_s();
    if (gencache__traj_build_graphs(t) != GENCACHE_OK)
        return -1;
    r->build_s = bench_now_s() - t0;
    double tadd[ADDS];
    for (int i = 0; i < ADDS; i++) {
        double a = bench_now_us();
        if (add_one(t, s, v, n + (size_t)i) != 0)
            return -1;
        tadd[i] = bench_now_us() - a;
    }
    r->add_graph_med = bench_median(tadd, ADDS);
    /* The random set's copy of the stored vectors (for its queries) is not the index's. */
    double copy = s->trace ? 0 : (double)n * s->dim * sizeof(float);
    r->per_vec = ((double)(rss_kib() - before) * 1024.0 - copy) / (double)(n + ADDS);
    r->graph_per_vec = (double)gencache__traj_graph_bytes(t) / (double)(n + ADDS);
    /* Each query: exact search, then the approximate one at each ef, interleaved. */
    double *te = malloc((size_t)q * sizeof *te), *ta = malloc((size_t)q * n_efs * sizeof *ta);
    int agree[MAX_EFS] = {0};
    gencache__traj_ann_opts o = *opts;
    for (int j = 0; j < q; j++) {
        next_query(s, v);
        gencache__traj_cand ce[1], ca[1];
        size_t ne = 0, na = 0;
        double a = bench_now_us();
        if (gencache__traj_find_ex(t, 0, 42, 0, v, s->dim, &any, ce, 1, &ne,
                                   GENCACHE__TRAJ_EXACT) != GENCACHE_OK)
            return -1;
        te[j] = bench_now_us() - a;
        for (int e = 0; e < n_efs; e++) {
            o.ef_search = efs[e];
            gencache__traj_set_ann(t, &o);
            a = bench_now_us();
            if (gencache__traj_find_ex(t, 0, 42, 0, v, s->dim, &any, ca, 1, &na, 0) != GENCACHE_OK)
                return -1;
            ta[e * q + j] = bench_now_us() - a;
            agree[e] += ne && na && ce[0].rec.key_hash == ca[0].rec.key_hash;
        }
    }
    r->exact_med = bench_median(te, q);
    r->exact_p99 = p99(te, q);
    for (int e = 0; e < n_efs; e++) {
        r->approx_med[e] = bench_median(&ta[e * q], q);
        r->approx_p99[e] = p99(&ta[e * q], q);
        r->recall[e] = (double)agree[e] / q;
    }
    gencache__traj_free(t);
    free(s->stored);
    s->stored = NULL;
    free(v);
    free(ta);
    free(te);
    return 0;
}

static int open_source(source *s, const char *data, uint32_t dim)
{
    memset(s, 0, sizeof *s);
    s->dim = s->c.dim = dim;
    s->trace = strcmp(data, "random") != 0;
    if (!s->trace)
        return 0;
    const char *path = getenv("GENCACHE_TRACE");
    if (corpus_read(&s->c, path ? path : "../shared/traces/sd-discord-dream-2.tsv") != 0)
        return -1;
    return 0;
}

static int crossover(uint32_t dim, const char *data)
{
    source s;
    if (open_source(&s, data, dim) != 0)
        return 1;
    gencache__traj_ann_opts o;
    gencache__traj_ann_opts_init(&o);
    printf("trajectory index, where the graph pays: dim=%u data=%s M=%u efConstruction=%u "
           "ef=%u\n",
           dim, s.trace ? "trace" : "random", o.m, o.ef_construction, o.ef_search);
    printf("  %8s %12s %12s %8s %8s %10s\n", "N", "exact us", "graph us", "ratio", "recall",
           "build s");
    for (size_t n = 256; n <= 16384; n *= 2) {
        o.min_vectors = n;
        result r;
        if (run(&s, n, 200, &o, &o.ef_search, 1, &r) != 0)
            return 1;
        printf("  %8zu %12.1f %12.1f %8.2f %8.3f %10.2f\n", n, r.exact_med, r.approx_med[0],
               r.approx_med[0] / r.exact_med, r.recall[0], r.build_s);
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "crossover") == 0)
        return crossover(argc > 2 ? (uint32_t)atoi(argv[2]) : 768, argc > 3 ? argv[3] : "trace");
    size_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 100000;
    int q = argc > 2 ? atoi(argv[2]) : 200;
    uint32_t dim = argc > 3 ? (uint32_t)atoi(argv[3]) : 768;
    const char *data = argc > 4 ? argv[4] : "trace";
    gencache__traj_ann_opts o;
    gencache__traj_ann_opts_init(&o);
    if (argc > 5)
        o.m = (uint32_t)atoi(argv[5]);
    if (argc > 6)
        o.ef_construction = (uint32_t)atoi(argv[6]);
    /* EF_SEARCH may be a list, "64,128,256": each is searched on the same graph. */
    uint32_t efs[MAX_EFS] = {o.ef_search};
    int n_efs = 1;
    if (argc > 7) {
        n_efs = 0;
        for (char *p = argv[7]; *p && n_efs < MAX_EFS; p += *p == ',')
            efs[n_efs++] = (uint32_t)strtoul(p, &p, 10);
    }
    o.ef_search = efs[0];
    if (argc > 8)
        o.min_vectors = strtoull(argv[8], NULL, 10);
    if (n == 0 || q <= 0 || dim == 0 || o.m == 0)
        return 2;
    source s;
    if (open_source(&s, data, dim) != 0)
        return 1;
    result r;
    if (run(&s, n, q, &o, efs, n_efs, &r) != 0)
        return 1;
    printf("trajectory index: N=%zu dim=%u Q=%d data=%s\n", n, dim, q,
           s.trace ? "trace" : "random");
    printf("  adding N with graphs off: %.1f s; building the graph: %.1f s;\n"
           "  adding one more into the graph: median %.0f us\n",
           r.add_s, r.build_s, r.add_graph_med);
    if (s.trace)
        printf("  data: %zu prompts of the trace, %u distinct words\n", s.c.n_prompts, s.c.n_words);
    printf("  graph: HNSW M=%u efConstruction=%u, from %zu vectors%s\n", o.m, o.ef_construction,
           o.min_vectors, n < o.min_vectors ? " (not built: N is below)" : "");
    printf("  exact:           median %.1f us  p99 %.1f us\n", r.exact_med, r.exact_p99);
    for (int e = 0; e < n_efs; e++)
        printf("  approximate ef=%u: median %.1f us  p99 %.1f us  ratio to exact (medians) %.4f  "
               "recall@1 %.3f\n",
               efs[e], r.approx_med[e], r.approx_p99[e], r.approx_med[e] / r.exact_med,
               r.recall[e]);
    printf("  memory per vector in the index: %.0f bytes (%u of them the f32 vector, %.0f the "
           "graph)\n",
           r.per_vec, (unsigned)(dim * sizeof(float)), r.graph_per_vec);
    return 0;
}
