/*
 * bench_writeback.c: what a put costs when memory is full and every put evicts an entry that
 * must be demoted to disk. A write-back layer (image_latent) hands the evicted entry to the
 * background writer; a write-through layer (result) asks for its own durable write. Baselines in
 * the same run: memcpy of the value (the floor of any put) and write+fdatasync of a file of the
 * same size (what a put would pay if demotion were synchronous, as it was before the write-back
 * queue).
 * Usage: bench_writeback [ROUNDS]   (default 5; values of 1.5 MiB, memory of 16 MiB, bursts of
 * 24 puts, well under the queue's 64 MiB bound). Prints medians and ratios.
 *
 * bench_writeback flush [N_SMALL [N_LARGE [ROUNDS [SMALL_SIZE]]]] times instead gencache_close() of
 * a cache whose memory holds N_SMALL (default 20000) SMALL_SIZE (default 4 KiB), then N_LARGE
 * (default 1000) 1.5 MiB entries of a write-back layer that no disk copy has yet: the close flushes
 * them all through the write-back queue. Baseline in the same run: the same close with batches of
 * one job (one disk commit, one flush, per entry). Prints medians of ROUNDS (default 1) and the
 * ratio.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_util.h"

#define VALUE (1536u * 1024u)
#define BURST 24

static int rm_one(const char *p, const struct stat *s, int f, struct FTW *w)
{
    (void)s;
    (void)f;
    (void)w;
    return remove(p);
}

static gencache *open_cache(const char *dir)
{
    gencache_options o;
    gencache_options_init(&o);
    o.data_dir = dir; /* NULL: memory only, evictions are dropped */
    o.mem_max_bytes = 16u << 20;
    gencache *c = NULL;
    if (gencache_open(&c, &o) != GENCACHE_OK)
        abort();
    return c;
}

/* Median microseconds of a put into `layer` once memory is full (each put evicts one entry). */
static double burst(const char *dir, const char *layer, const unsigned char *value, int round)
{
    gencache *c = open_cache(dir);
    char key[GENCACHE__KEY_MAX + 1];
    double t[BURST];
    for (int i = 0; i < 12 + BURST; i++) {
        snprintf(key, sizeof key, "%s/%016x%048d", layer, round * 1000 + i, 0);
        double t0 = bench_now_us();
        if (gencache_put(c, key, value, VALUE, NULL) != GENCACHE_OK)
            abort();
        if (i >= 12)
            t[i - 12] = bench_now_us() - t0;
    }
    gencache_close(c); /* writes what is still queued or only in memory */
    return bench_median(t, BURST);
}

static double memcpy_us(const unsigned char *value)
{
    unsigned char *dst = malloc(VALUE);
    double t[BURST];
    for (int i = 0; i < BURST; i++) {
        double t0 = bench_now_us();
        memcpy(dst, value, VALUE);
        __asm__ volatile("" : : "r"(dst) : "memory");
        t[i] = bench_now_us() - t0;
    }
    free(dst);
    return bench_median(t, BURST);
}

static double fsync_us(const char *dir, const unsigned char *value)
{
    char path[512];
    double t[BURST];
    for (int i = 0; i < BURST; i++) {
        snprintf(path, sizeof path, "%s/plain-%d", dir, i);
        double t0 = bench_now_us();
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0 || write(fd, value, VALUE) != (ssize_t)VALUE || fdatasync(fd) != 0)
            abort();
        close(fd);
        t[i] = bench_now_us() - t0;
        unlink(path);
    }
    return bench_median(t, BURST);
}

/* Seconds gencache_close() takes to flush n entries of `size` bytes, written batch_jobs at a
 * time, into an empty disk tier under dir. */
static double close_s(const char *dir, size_t n, size_t size, size_t batch_jobs)
{
    gencache_options o;
    gencache_options_init(&o);
    o.data_dir = dir;
    o.mem_max_bytes = (uint64_t)n * (size + 4096) * 2;
    o.disk_max_bytes = (uint64_t)n * (size + 4096) * 2;
    gencache *c = NULL;
    if (gencache_open(&c, &o) != GENCACHE_OK)
        abort();
    if (gencache__cache_set_writeback_batch(c, batch_jobs) != GENCACHE_OK)
        abort();
    unsigned char *value = malloc(size);
    char key[GENCACHE__KEY_MAX + 1];
    for (size_t i = 0; i < n; i++) {
        for (size_t b = 0; b < size; b++)
            value[b] = (unsigned char)(i * 7 + b * 131);
        snprintf(key, sizeof key, "image_latent/%016zx%048d", i, 0);
        if (gencache_put(c, key, value, size, NULL) != GENCACHE_OK)
            abort();
    }
    free(value);
    gencache_stats s = {.struct_size = sizeof s};
    if (gencache_stats_get(c, &s) != GENCACHE_OK || s.n_tiers < 2 || s.tiers[1].entries != 0)
        abort(); /* the entries must be in memory only, for the close to flush */
    double t0 = bench_now_s();
    gencache_close(c);
    double t = bench_now_s() - t0;
    /* What the close wrote must be there. */
    if (gencache_open(&c, &o) != GENCACHE_OK || gencache_stats_get(c, &s) != GENCACHE_OK ||
        s.tiers[1].entries != n)
        abort();
    gencache_close(c);
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    return t;
}

static void flush_case(const char *top, size_t n, size_t size, int rounds)
{
    if (n == 0)
        return;
    double *one = calloc((size_t)rounds, sizeof *one), *many = calloc((size_t)rounds, sizeof *many);
    char dir[600];
    snprintf(dir, sizeof dir, "%s/flush", top);
    for (int r = 0; r < rounds; r++) {
        /* Alternate which goes first: the disk is still writing back the previous run's pages. */
        if (r % 2 == 0)
            one[r] = close_s(dir, n, size, 1);
        many[r] = close_s(dir, n, size, GENCACHE__WB_BATCH_JOBS);
        if (r % 2 == 1)
            one[r] = close_s(dir, n, size, 1);
    }
    double m1 = bench_median(one, rounds), mn = bench_median(many, rounds);
    printf("close flushing %zu entries of %zu bytes (median of %d)\n", n, size, rounds);
    printf("  one commit per entry (batch of 1)   %8.2f s  %8.0f entries/s\n", m1, n / m1);
    printf("  batches of up to %d jobs           %8.2f s  %8.0f entries/s  %.1fx faster\n",
           GENCACHE__WB_BATCH_JOBS, mn, n / mn, m1 / mn);
    fflush(stdout);
    free(one);
    free(many);
}

static int flush_main(int argc, char **argv)
{
    size_t n_small = argc > 2 ? (size_t)atol(argv[2]) : 20000;
    size_t n_large = argc > 3 ? (size_t)atol(argv[3]) : 1000;
    int rounds = argc > 4 ? atoi(argv[4]) : 1;
    size_t small = argc > 5 ? (size_t)atol(argv[5]) : 4096;
    if (rounds < 1)
        rounds = 1;
    char top[] = "/tmp/gencache-bench-wbf-XXXXXX";
    if (!mkdtemp(top))
        return 1;
    printf("disk tier on %s\n", top);
    flush_case(top, n_small, small ? small : 4096, rounds);
    flush_case(top, n_large, VALUE, rounds);
    nftw(top, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "flush") == 0)
        return flush_main(argc, argv);
    int rounds = argc > 1 ? atoi(argv[1]) : 5;
    if (rounds < 1)
        rounds = 1;
    char top[] = "/tmp/gencache-bench-wb-XXXXXX";
    if (!mkdtemp(top))
        return 1;
    unsigned char *value = malloc(VALUE);
    for (size_t i = 0; i < VALUE; i++)
        value[i] = (unsigned char)(i * 131 + 7);
    double *wb = calloc((size_t)rounds, sizeof *wb), *wt = calloc((size_t)rounds, sizeof *wt);
    double *mc = calloc((size_t)rounds, sizeof *mc), *fs = calloc((size_t)rounds, sizeof *fs);
    double *mo = calloc((size_t)rounds, sizeof *mo);
    for (int r = 0; r < rounds; r++) {
        char dir[600];
        snprintf(dir, sizeof dir, "%s/r%d", top, r);
        mo[r] = burst(NULL, "image_latent", value, r);
        wb[r] = burst(dir, "image_latent", value, r);
        wt[r] = burst(dir, "result", value, r);
        mc[r] = memcpy_us(value);
        fs[r] = fsync_us(top, value);
    }
    double m_wb = bench_median(wb, rounds), m_wt = bench_median(wt, rounds);
    double m_mc = bench_median(mc, rounds), m_fs = bench_median(fs, rounds);
    double m_mo = bench_median(mo, rounds);
    printf("put of 1.5 MiB into a full memory tier, each put evicting one entry to disk\n");
    printf("(medians of %d rounds of %d puts; disk tier on %s)\n", rounds, BURST, top);
    printf("  memcpy of the value          %9.1f us\n", m_mc);
    printf("  write+fdatasync of the value %9.1f us\n", m_fs);
    printf("  put, no disk tier (no demotion)%7.1f us  %.2fx memcpy\n", m_mo, m_mo / m_mc);
    printf("  write-back put (image_latent)%9.1f us  %.2fx memcpy, %.3fx memcpy+fdatasync\n", m_wb,
           m_wb / m_mc, m_wb / (m_mc + m_fs));
    printf("  write-through put (result)   %9.1f us  %.2fx memcpy, %.3fx memcpy+fdatasync\n", m_wt,
           m_wt / m_mc, m_wt / (m_mc + m_fs));
    nftw(top, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(wb);
    free(wt);
    free(mc);
    free(fs);
    free(mo);
    free(value);
    return 0;
}
