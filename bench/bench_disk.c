/*
 * bench_disk.c: the disk tier against the plain file system, measured in the same run.
 *   1. Where values live: PUT and warm GET of 4 KiB, 1.5 MiB and 16 MiB values inline in LMDB
 *      versus in content-addressed files (the measurement behind the inline threshold).
 *   2. PUT throughput (durable: fsync) against write+fsync of plain files of the same size.
 *   3. GET of 1.5 MiB with a warm page cache against open+read()+close of a file of that size.
 *   4. Opening a tier that holds 100,000 entries (restart recovery).
 *   5. PUT throughput of 4 threads at once, 1.5 MiB values, inline versus files (writers of
 *      files overlap their fsyncs; LMDB serializes its write transactions).
 *   6. Churn: a full tier (200 MiB) taking 1,500 puts of 0.5-2.5 MiB values (each put evicts),
 *      inline versus files: put time late in the run and what the tier occupies on disk.
 * Usage: bench_disk [DIR]   (default: a new directory under /tmp, removed at the end)
 * Prints medians and ratios.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "tier/disk.h"
#include "bench_util.h"

#define KIB 1024u
#define MIB (1024u * 1024u)

static void key_of(char *buf, uint64_t n)
{
    snprintf(buf, GENCACHE__KEY_MAX + 1, "result/%016llx%048d", (unsigned long long)n, 0);
}

static gencache__entry *make_entry(uint64_t n, size_t size)
{
    char key[GENCACHE__KEY_MAX + 1];
    key_of(key, n);
    gencache__entry_spec spec = {.key = key, .size = size, .now_ms = 1000};
    gencache__entry *e;
    if (gencache__entry_new(NULL, &spec, &e) != GENCACHE_OK)
        abort();
    uint64_t x = n * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < size; i += 8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        memcpy(e->value + i, &x, size - i < 8 ? size - i : 8);
    }
    e->checksum = gencache__checksum(e->value, size);
    return e;
}

static int rm_one(const char *p, const struct stat *s, int f, struct FTW *w)
{
    (void)s;
    (void)f;
    (void)w;
    return remove(p);
}

static void rm_rf(const char *p)
{
    nftw(p, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static gencache__tier *open_tier(const char *dir, size_t inline_max, bool durable)
{
    gencache__disk_options o = {.path = dir};
    gencache__disk_tuning tune;
    gencache__disk_tuning_init(&tune);
    tune.inline_max = inline_max;
    tune.durable = durable;
    gencache__tier *t = NULL;
    int rc = gencache__disk_tier_open_ex(&o, &tune, &t);
    if (rc != GENCACHE_OK) {
        fprintf(stderr, "open %s: %s\n", dir, gencache_strerror(rc));
        exit(1);
    }
    return t;
}

/* Median microseconds of a durable put and a warm get with the given inline threshold. */
static void tier_put_get(const char *base, const char *name, size_t size, size_t inline_max, int n,
                         double *put_us, double *get_us)
{
    char dir[2200];
    snprintf(dir, sizeof dir, "%s/%s", base, name);
    gencache__tier *t = open_tier(dir, inline_max, true);
    double *pt = calloc((size_t)n, sizeof *pt), *gt = calloc((size_t)n, sizeof *gt);
    gencache__entry **es = calloc((size_t)n, sizeof *es);
    for (int i = 0; i < n; i++)
        es[i] = make_entry((uint64_t)i, size);
    for (int i = 0; i < n; i++) {
        double t0 = bench_now_us();
        if (t->ops->put(t, es[i], 1000) != GENCACHE_OK)
            abort();
        pt[i] = bench_now_us() - t0;
    }
    for (int round = 0; round < 2; round++) { /* the first round warms the page cache */
        for (int i = 0; i < n; i++) {
            gencache__entry *e = NULL;
            double t0 = bench_now_us();
            if (t->ops->get(t, es[i]->key, es[i]->hash, 2000, false, &e) != GENCACHE_OK)
                abort();
            gt[i] = bench_now_us() - t0;
            gencache__entry_release(e);
        }
    }
    *put_us = bench_median(pt, n);
    *get_us = bench_median(gt, n);
    for (int i = 0; i < n; i++)
        gencache__entry_release(es[i]);
    free(es);
    free(pt);
    free(gt);
    t->ops->close(t);
}

/* Medians of write+fsync+close of new plain files, and of open+read+close of them (warm). */
static void plain_files(const char *base, size_t size, int n, double *write_us, double *read_us)
{
    char dir[2200];
    snprintf(dir, sizeof dir, "%s/plain-%zu", base, size);
    mkdir(dir, 0755);
    gencache__entry *e = make_entry(1, size);
    double *wt = calloc((size_t)n, sizeof *wt), *rt = calloc((size_t)n, sizeof *rt);
    unsigned char *buf = malloc(size);
    for (int i = 0; i < n; i++) {
        char path[2300];
        snprintf(path, sizeof path, "%s/%d", dir, i);
        double t0 = bench_now_us();
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0 || write(fd, e->value, size) != (ssize_t)size || fdatasync(fd) != 0)
            abort();
        close(fd);
        wt[i] = bench_now_us() - t0;
    }
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < n; i++) {
            char path[2300];
            snprintf(path, sizeof path, "%s/%d", dir, i);
            double t0 = bench_now_us();
            int fd = open(path, O_RDONLY);
            size_t done = 0;
            while (done < size) {
                ssize_t r = read(fd, buf + done, size - done);
                if (r <= 0)
                    abort();
                done += (size_t)r;
            }
            close(fd);
            rt[i] = bench_now_us() - t0;
        }
    }
    *write_us = bench_median(wt, n);
    *read_us = bench_median(rt, n);
    free(buf);
    free(wt);
    free(rt);
    gencache__entry_release(e);
}

typedef struct putter {
    gencache__tier *t;
    int first, n;
    size_t size;
} putter;

static void *put_many(void *arg)
{
    putter *p = arg;
    for (int i = p->first; i < p->first + p->n; i++) {
        gencache__entry *e = make_entry((uint64_t)i, p->size);
        if (p->t->ops->put(p->t, e, 1000) != GENCACHE_OK)
            abort();
        gencache__entry_release(e);
    }
    return NULL;
}

/* Puts per second of `threads` writers together. */
static double concurrent_puts(const char *base, const char *name, size_t inline_max, int threads,
                              int per_thread, size_t size)
{
    char dir[2200];
    snprintf(dir, sizeof dir, "%s/%s", base, name);
    gencache__tier *t = open_tier(dir, inline_max, true);
    pthread_t th[16];
    putter p[16];
    double t0 = bench_now_us();
    for (int i = 0; i < threads; i++) {
        p[i] = (putter){t, i * per_thread, per_thread, size};
        pthread_create(&th[i], NULL, put_many, &p[i]);
    }
    for (int i = 0; i < threads; i++)
        pthread_join(th[i], NULL);
    double s = (bench_now_us() - t0) / 1e6;
    t->ops->close(t);
    return threads * per_thread / s;
}

static uint64_t du_bytes(const char *dir)
{
    char cmd[2400];
    snprintf(cmd, sizeof cmd, "du -sb %s", dir);
    FILE *p = popen(cmd, "r");
    unsigned long long n = 0;
    if (!p || fscanf(p, "%llu", &n) != 1)
        n = 0;
    if (p)
        pclose(p);
    return n;
}

static void churn(const char *base, const char *name, size_t inline_max)
{
    char dir[2200];
    snprintf(dir, sizeof dir, "%s/%s", base, name);
    gencache__disk_options o = {.path = dir, .max_bytes = 200u * MIB};
    gencache__disk_tuning tune;
    gencache__disk_tuning_init(&tune);
    tune.inline_max = inline_max;
    tune.durable = false; /* the allocator's cost, not the device's */
    gencache__tier *t = NULL;
    if (gencache__disk_tier_open_ex(&o, &tune, &t) != GENCACHE_OK)
        abort();
    enum { N = 1500, LAST = 300 };
    double *pt = calloc(N, sizeof *pt);
    for (int i = 0; i < N; i++) {
        size_t size = 512 * KIB + (size_t)((i * 7919) % 2048) * KIB;
        gencache__entry *e = make_entry((uint64_t)i, size);
        double t0 = bench_now_us();
        if (t->ops->put(t, e, 1000 + (uint64_t)i) != GENCACHE_OK)
            abort();
        pt[i] = bench_now_us() - t0;
        gencache__entry_release(e);
    }
    gencache_tier_stats st;
    t->ops->stats(t, &st);
    t->ops->close(t);
    printf(
        "churn %-6s: put median (last %d) %8.1f us | tier accounts %.0f MiB | on disk %.0f MiB\n",
        name, LAST, bench_median(pt + N - LAST, LAST), st.bytes / (double)MIB,
        du_bytes(dir) / (double)MIB);
    free(pt);
}

static void recovery(const char *base, int entries)
{
    char dir[2200];
    snprintf(dir, sizeof dir, "%s/recovery", base);
    gencache__tier *t = open_tier(dir, 256 * KIB, false);
    double t0 = bench_now_us();
    for (int i = 0; i < entries; i++) {
        gencache__entry *e = make_entry((uint64_t)i, 512);
        if (t->ops->put(t, e, 1000) != GENCACHE_OK)
            abort();
        gencache__entry_release(e);
    }
    double fill_s = (bench_now_us() - t0) / 1e6;
    t->ops->close(t);
    double opens[5];
    for (int i = 0; i < 5; i++) {
        t0 = bench_now_us();
        t = open_tier(dir, 256 * KIB, true);
        opens[i] = (bench_now_us() - t0) / 1e3;
        gencache_tier_stats st;
        t->ops->stats(t, &st);
        if (st.entries != (uint64_t)entries)
            abort();
        t->ops->close(t);
    }
    printf("recovery: open of a tier holding %d entries: median %.2f ms over 5 opens "
           "(goal <= 1000 ms; filled in %.1f s)\n",
           entries, bench_median(opens, 5), fill_s);
}

int main(int argc, char **argv)
{
    char base[2048];
    bool own = argc < 2;
    if (own) {
        snprintf(base, sizeof base, "/tmp/gencache-bench-disk-XXXXXX");
        if (!mkdtemp(base))
            return 1;
    } else {
        snprintf(base, sizeof base, "%s", argv[1]);
        mkdir(base, 0755);
    }
    printf("bench_disk in %s (durable puts: fsync)\n", base);
    struct {
        const char *label;
        size_t size;
        int n;
    } sizes[] = {{"4KiB", 4 * KIB, 200}, {"1.5MiB", 1536 * KIB, 40}, {"16MiB", 16 * MIB, 12}};
    for (int s = 0; s < 3; s++) {
        double ip, ig, fp, fg, wp, rp;
        char name[64];
        snprintf(name, sizeof name, "inline-%s", sizes[s].label);
        tier_put_get(base, name, sizes[s].size, SIZE_MAX, sizes[s].n, &ip, &ig);
        snprintf(name, sizeof name, "file-%s", sizes[s].label);
        tier_put_get(base, name, sizes[s].size, 0, sizes[s].n, &fp, &fg);
        plain_files(base, sizes[s].size, sizes[s].n, &wp, &rp);
        printf("%-7s put  (median us): LMDB inline %9.1f | blob file %9.1f | plain write+fsync "
               "%9.1f\n",
               sizes[s].label, ip, fp, wp);
        printf("%-7s get  (median us): LMDB inline %9.1f | blob file %9.1f | plain open+read "
               "%9.1f\n",
               sizes[s].label, ig, fg, rp);
        printf("%-7s ratios: put throughput vs plain: inline %.2fx, file %.2fx; get speed vs "
               "plain read(): inline %.2fx, file %.2fx (goal >= 0.8x for 1.5MiB)\n",
               sizes[s].label, wp / ip, wp / fp, rp / ig, rp / fg);
    }
    double ci = concurrent_puts(base, "conc-inline", SIZE_MAX, 4, 10, 1536 * KIB);
    double cf = concurrent_puts(base, "conc-file", 0, 4, 10, 1536 * KIB);
    printf("1.5MiB  put throughput, 4 threads: LMDB inline %.1f/s | blob file %.1f/s (%.2fx)\n", ci,
           cf, cf / ci);
    churn(base, "inline", SIZE_MAX);
    churn(base, "file", 0);
    recovery(base, 100000);
    if (own)
        rm_rf(base);
    return 0;
}
