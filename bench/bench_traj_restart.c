/*
 * bench_traj_restart.c: what bringing the trajectory index back after a restart costs. N
 * checkpoints (N/5 trajectories of 5 steps, random DIM-d embeddings, 256-byte latents) are stored
 * through the public API in a cache with a disk tier (the layer writes back, the default), which
 * is closed (flushing the entries and writing traj.idx). Then, R times each, interleaved: a cache
 * is opened and the index brought back by its first use, (a) from traj.idx, (b) rebuilt from the
 * disk tier's embedding entries after traj.idx is removed. The baseline, timed in the same run,
 * is reading traj.idx's bytes with stdio: the least any load from a file can cost. Prints the
 * medians and the ratios to the baseline.
 *
 *   bench_traj_restart [N] [R] [DIM]       default 20000, 5, 768
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_util.h"
#include "gencache.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
    return bench_splitmix64(&rng_state);
}

static const char *const fields[] = {"model", "prompt", "step"};

static gencache *open_cache(const char *dir)
{
    gencache_options o;
    gencache_options_init(&o);
    o.data_dir = dir;
    o.log_level = GENCACHE_LOG_ERROR;
    gencache *c = NULL;
    gencache_layer_options l;
    gencache_layer_options_init(&l);
    l.name = "trajectory";
    l.fields = fields;
    l.n_fields = 3;
    if (gencache_open(&c, &o) != GENCACHE_OK || gencache_layer_define(c, &l) != GENCACHE_OK) {
        fprintf(stderr, "cannot open a cache in %s\n", dir);
        exit(1);
    }
    return c;
}

static uint64_t vectors(gencache *c)
{
    gencache_trajectory_stats st = {.struct_size = sizeof st};
    if (gencache_trajectory_stats_get(c, &st) != GENCACHE_OK)
        exit(1);
    return st.vectors;
}

/* Opens a cache on dir and times its first use, which loads or rebuilds the index (us). */
static double time_restart(const char *dir, size_t want)
{
    gencache *c = open_cache(dir);
    double a = bench_now_us();
    uint64_t got = vectors(c);
    double us = bench_now_us() - a;
    gencache_close(c);
    if (got != want) {
        fprintf(stderr, "the index holds %llu records, not %zu\n", (unsigned long long)got, want);
        exit(1);
    }
    return us;
}

/* Reads the file whole (us); *size gets its bytes. */
static double time_read(const char *path, char *buf, size_t cap, size_t *size)
{
    double a = bench_now_us();
    FILE *f = fopen(path, "rb");
    size_t n = f ? fread(buf, 1, cap, f) : 0;
    if (f)
        fclose(f);
    double us = bench_now_us() - a;
    if (n == 0 || n == cap)
        exit(1);
    *size = n;
    return us;
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 20000;
    int r = argc > 2 ? atoi(argv[2]) : 5;
    size_t dim = argc > 3 ? strtoull(argv[3], NULL, 10) : 768;
    if (n < 5 || r <= 0 || dim == 0)
        return 2;
    n -= n % 5;
    char dir[] = "/tmp/bench-traj-restart-XXXXXX", path[64], cmd[128];
    if (!mkdtemp(dir))
        return 1;
    snprintf(path, sizeof path, "%s/traj.idx", dir);
    gencache *c = open_cache(dir);
    gencache_keyspace *ks = NULL;
    if (gencache_keyspace_from_cache(c, &ks) != GENCACHE_OK)
        return 1;
    float *e = malloc(dim * sizeof *e);
    char latent[256] = {0}, json[160];
    double t0 = bench_now_s();
    for (size_t i = 0; i < n; i++) {
        if (i % 5 == 0)
            for (size_t k = 0; k < dim; k++)
                e[k] = (float)((double)(rnd() >> 11) / 9007199254740992.0 - 0.5);
        unsigned step = 5 + (unsigned)(i % 5) * 5;
        snprintf(json, sizeof json, "{\"model\":\"m\",\"prompt\":\"p%zu\",\"step\":%u}", i / 5,
                 step);
        gencache_request *req = NULL;
        if (gencache_request_parse(ks, json, strlen(json), 0, &req) != GENCACHE_OK ||
            gencache_trajectory_store(c, NULL, req, "trajectory", step, GENCACHE_DTYPE_F32, e, dim,
                                      latent, sizeof latent, NULL, NULL) != GENCACHE_OK)
            return 1;
        gencache_request_free(req);
    }
    gencache_keyspace_free(ks);
    gencache_close(c);
    double store_s = bench_now_s() - t0;
    size_t cap = n * (dim * 4 + 200) + 4096;
    char *buf = malloc(cap);
    double *tl = malloc((size_t)r * sizeof *tl), *tr = malloc((size_t)r * sizeof *tr);
    double *tb = malloc((size_t)r * sizeof *tb);
    size_t size = 0;
    if (!buf || !tl || !tr || !tb)
        return 1;
    for (int j = 0; j < r; j++) {
        tb[j] = time_read(path, buf, cap, &size);
        tl[j] = time_restart(dir, n);
        if (remove(path) != 0)
            return 1;
        tr[j] = time_restart(dir, n); /* its close writes traj.idx again */
    }
    double base = bench_median(tb, r), load = bench_median(tl, r), rebuild = bench_median(tr, r);
    printf("bench_traj_restart: %zu checkpoints (%zu trajectories), %zu-d, stored in %.1f s\n", n,
           n / 5, dim, store_s);
    printf("  read traj.idx (%.1f MiB) with stdio (baseline): median %10.0f us\n",
           (double)size / 1048576.0, base);
    printf("  load the index from traj.idx:        median %10.0f us  (%.2fx the baseline)\n", load,
           load / base);
    printf("  rebuild it from the disk tier:       median %10.0f us  (%.2fx the baseline, %.2fx "
           "the load)\n",
           rebuild, rebuild / base, rebuild / load);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        return 1;
    free(e);
    free(buf);
    free(tl);
    free(tr);
    free(tb);
    return 0;
}
