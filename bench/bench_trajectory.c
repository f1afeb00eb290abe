/*
 * bench_trajectory.c: exact nearest-neighbour search in the trajectory index (src/reuse/
 * traj_index.c). N random 768-d unit vectors of one (layer, model) are added; Q queries, each a
 * stored vector plus noise (cosine about 0.9 to its source), are answered by the index with the
 * default threshold table. The baseline, timed in the same run, interleaved, is a bare scan of
 * the same vectors held in one plain array: a plain C loop of dot products and an argmax, as the
 * compiler makes it for the default target. The ratio says what the index's AVX2 scan gains
 * over it, net of its bookkeeping (lock, tenant and step checks, candidates).
 * Prints the median and p99 of both, the ratio of medians, recall@1 of the index against the
 * bare scan, and memory per vector (resident set growth while adding, over N).
 *
 *   bench_trajectory [N] [Q] [DIM]       default 100000, 200, 768
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_util.h"
#include "reuse/reuse.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Roughly normal: the sum of four uniforms, centred. */
static float gauss(void)
{
    double s = 0;
    for (int i = 0; i < 4; i++)
        s += (double)(rnd() >> 11) / 9007199254740992.0;
    return (float)((s - 2.0) * 1.7320508);
}

static void unit(float *v, uint32_t dim)
{
    double ss = 0;
    for (uint32_t i = 0; i < dim; i++)
        ss += (double)v[i] * v[i];
    float inv = (float)(1.0 / sqrt(ss));
    for (uint32_t i = 0; i < dim; i++)
        v[i] *= inv;
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

/* The baseline: the index of the most similar vector by a bare scan. */
static size_t bare_scan(const float *vecs, size_t n, const float *q, uint32_t dim, float *best)
{
    size_t arg = 0;
    float top = -2;
    for (size_t i = 0; i < n; i++) {
        const float *v = &vecs[i * dim];
        float s = 0;
        for (uint32_t k = 0; k < dim; k++)
            s += v[k] * q[k];
        if (s > top) {
            top = s;
            arg = i;
        }
    }
    *best = top;
    return arg;
}

static double p99(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
    int i = (int)ceil(0.99 * n) - 1;
    return v[i < 0 ? 0 : i];
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 100000;
    int q = argc > 2 ? atoi(argv[2]) : 200;
    uint32_t dim = argc > 3 ? (uint32_t)atoi(argv[3]) : 768;
    if (n == 0 || q <= 0 || dim == 0)
        return 2;
    gencache__traj *t = NULL;
    if (gencache__traj_new(&t) != GENCACHE_OK)
        return 1;
    float *plain = malloc(n * dim * sizeof *plain);
    float *v = malloc(dim * sizeof *v);
    if (!plain || !v)
        return 1;
    long before = rss_kib();
    double t0 = bench_now_s();
    for (size_t i = 0; i < n; i++) {
        for (uint32_t k = 0; k < dim; k++)
            v[k] = gauss();
        unit(v, dim);
        memcpy(&plain[i * dim], v, dim * sizeof *v);
        gencache__traj_rec rec = {.layer = 0, .model_hash = 42, .key_hash = i + 1, .step = 5};
        memcpy(rec.hex, &i, sizeof i);
        if (gencache__traj_add(t, &rec, v, dim) != GENCACHE_OK)
            return 1;
    }
    double add_s = bench_now_s() - t0;
    /* The plain array was allocated before `before` was read but touched while adding: its
     * share is subtracted. */
    double per_vec =
        ((double)(rss_kib() - before) * 1024.0 - (double)n * dim * sizeof(float)) / (double)n;

    gencache__traj_table table = {
        .n = 5, .rows = {{0.70f, 5}, {0.80f, 10}, {0.85f, 15}, {0.90f, 20}, {0.95f, 25}}};
    double *ti = malloc((size_t)q * sizeof *ti), *tb = malloc((size_t)q * sizeof *tb);
    int agree = 0, found = 0;
    for (int j = 0; j < q; j++) {
        size_t src = rnd() % n;
        for (uint32_t k = 0; k < dim; k++)
            v[k] = plain[src * dim + k] + 0.48f / sqrtf((float)dim) * gauss();
        unit(v, dim);
        float bare_sim = 0;
        double a = bench_now_us();
        size_t arg = bare_scan(plain, n, v, dim, &bare_sim);
        tb[j] = bench_now_us() - a;
        gencache__traj_cand c[8];
        size_t nc = 0;
        a = bench_now_us();
        if (gencache__traj_find(t, 0, 42, 0, v, dim, &table, c, 8, &nc) != GENCACHE_OK)
            return 1;
        ti[j] = bench_now_us() - a;
        if (nc) {
            found++;
            size_t got = 0;
            memcpy(&got, c[0].rec.hex, sizeof got);
            agree += got == arg;
        }
    }
    double mi = bench_median(ti, q), mb = bench_median(tb, q);
    printf("trajectory index, exact search: N=%zu dim=%u Q=%d (adding took %.1f s)\n", n, dim, q,
           add_s);
    printf("  index:     median %.1f us  p99 %.1f us\n", mi, p99(ti, q));
    printf("  bare scan: median %.1f us  p99 %.1f us\n", mb, p99(tb, q));
    printf("  ratio index/bare scan (medians): %.2f\n", mi / mb);
    printf("  queries answered: %d of %d; recall@1 against the bare scan: %.3f\n", found, q,
           found ? (double)agree / found : 0.0);
    printf("  memory per vector in the index: %.0f bytes (%u of them the f32 vector)\n", per_vec,
           (unsigned)(dim * sizeof(float)));
    gencache__traj_free(t);
    free(plain);
    free(v);
    free(ti);
    free(tb);
    return 0;
}
