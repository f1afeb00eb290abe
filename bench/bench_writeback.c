/*
 * bench_writeback.c: what a put costs when memory is full and every put evicts an entry that
 * must be demoted to disk. A write-back layer (image_latent) hands the evicted entry to the
 * background writer; a write-through layer (result) asks for its own durable write. Baselines in
 * the same run: memcpy of the value (the floor of any put) and write+fdatasync of a file of the
 * same size (what a put would pay if demotion were synchronous, as it was before the write-back
 * queue).
 * Usage: bench_writeback [ROUNDS]   (default 5; values of 1.5 MiB, memory of 16 MiB, bursts of
 * 24 puts, well under the queue's 64 MiB bound). Prints medians and ratios.
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

int main(int argc, char **argv)
{
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
