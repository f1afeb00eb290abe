/*
 * bench_disk.c: the disk tier against the plain file system, measured in the same run.
 *   1. Where values live: PUT and warm GET of 4 KiB, 1.5 MiB and 16 MiB values inline in LMDB
 *      versus in blob files (the measurement behind the inline threshold).
 *   2. Durable PUT against write+fdatasync of a new plain file of the same size, interleaved
 *      (each round runs the tier, the tier with two flushes per commit, and the plain file, in
 *      rotating order), at 4 KiB, 1.5 MiB and 16 MiB with the default inline threshold; the
 *      headline ratio is the median of the rounds' ratios (200, 100 and 30 rounds, after 5
 *      rounds not counted). Then where a 1.5 MiB put's time goes (the put without its flush,
 *      the flush, the copy into LMDB's page, against write and fdatasync of a plain file), and
 *      bare LMDB with MDB_WRITEMAP (sparse or fallocated file) against the tier's way of writing.
 *   3. Encryption at rest: PUT and warm GET of 4 KiB and 1.5 MiB through an encrypting tier
 *      against the plain tier, interleaved, without fsync (the cipher's cost, not the device's);
 *      the same through the Redis tier (a redis-server started on a free loopback port).
 *   4. Opening a tier that holds 100,000 entries (restart recovery).
 *   5. PUT throughput of 4 threads at once, 1.5 MiB values, inline versus files (writers of
 *      files overlap their fsyncs; LMDB serializes its write transactions).
 *   6. Churn: a full tier (200 MiB) taking 1,500 puts of 0.5-2.5 MiB values (each put evicts),
 *      inline versus files: put time late in the run and what the tier occupies on disk.
 * Usage: bench_disk [--only durable|phases|crypt] [DIR]   (default: every section, in a new
 * directory under /tmp, removed at the end; durable: section 2's puts, phases: what follows
 * them in section 2).
 * Prints medians and ratios. BENCH_INLINE_MAX=N in the environment sets section 2's inline
 * threshold (bytes); BENCH_DURABLE_SIZE=4KiB|1.5MiB|16MiB runs section 2's puts at that size only.
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

#include "../tests/unit/redis_server.h"
#include "internal.h"
#include "tier/crypt.h"
#include "tier/disk.h"
#include "tier/redis.h"
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

static gencache__tier *open_tier_ex(const char *dir, size_t inline_max, bool durable,
                                    bool sync_meta, const gencache__crypt *keys)
{
    gencache__disk_options o = {.path = dir, .keys = keys};
    gencache__disk_tuning tune;
    gencache__disk_tuning_init(&tune);
    tune.inline_max = inline_max;
    tune.durable = durable;
    tune.sync_meta = sync_meta;
    gencache__tier *t = NULL;
    int rc = gencache__disk_tier_open_ex(&o, &tune, &t);
    if (rc != GENCACHE_OK) {
        fprintf(stderr, "open %s: %s\n", dir, gencache_strerror(rc));
        exit(1);
    }
    return t;
}

static gencache__tier *open_tier(const char *dir, size_t inline_max, bool durable)
{
    return open_tier_ex(dir, inline_max, durable, false, NULL);
}

static void put_or_die(gencache__tier *t, gencache__entry *e)
{
    int rc = t->ops->put(t, e, 1000);
    if (rc != GENCACHE_OK) {
        fprintf(stderr, "put: %s\n", gencache_strerror(rc));
        exit(1);
    }
}

/* write+fdatasync+close of a new file (sync false: write+close), the baseline of a durable put. */
static double plain_file_us(const char *dir, int i, const gencache__entry *e, bool sync)
{
    char path[2300];
    snprintf(path, sizeof path, "%s/%d", dir, i);
    double t0 = bench_now_us();
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || write(fd, e->value, e->size) != (ssize_t)e->size || (sync && fdatasync(fd) != 0))
        abort();
    close(fd);
    return bench_now_us() - t0;
}

static double plain_put_us(const char *dir, int i, const gencache__entry *e)
{
    return plain_file_us(dir, i, e, true);
}

/* Rounds of section 2 run before the measured ones and not counted. */
#define DURABLE_WARMUP 5

/* Section 2: durable puts, interleaved with the baseline. */
static void durable_puts(const char *base, const char *label, size_t size, int n)
{
    char d1[2200], d2[2200], d3[2200];
    snprintf(d1, sizeof d1, "%s/durable-%s", base, label);
    snprintf(d2, sizeof d2, "%s/strict-%s", base, label);
    snprintf(d3, sizeof d3, "%s/plain-durable-%s", base, label);
    mkdir(d3, 0755);
    gencache__disk_tuning def;
    gencache__disk_tuning_init(&def);
    if (getenv("BENCH_INLINE_MAX"))
        def.inline_max = (size_t)atoll(getenv("BENCH_INLINE_MAX"));
    gencache__tier *one = open_tier_ex(d1, def.inline_max, true, false, NULL);
    gencache__tier *two = open_tier_ex(d2, def.inline_max, true, true, NULL);
    double *a = calloc((size_t)n, sizeof *a), *b = calloc((size_t)n, sizeof *b);
    double *c = calloc((size_t)n, sizeof *c), *ra = calloc((size_t)n, sizeof *ra);
    double *rb = calloc((size_t)n, sizeof *rb);
    /* DURABLE_WARMUP rounds first, not counted: the first commits of a new index create its
     * B-trees and the first puts fault in the allocator's memory, which no later put pays. */
    for (int j = -DURABLE_WARMUP; j < n; j++) {
        int i = j < 0 ? n - j : j; /* warm-up rounds use keys and file names of their own */
        gencache__entry *e = make_entry((uint64_t)i + 1, size);
        double ta = 0, tb = 0, tc = 0;
        for (int k = 0; k < 3; k++) {
            int which = (i + k) % 3; /* rotate who goes first */
            if (which == 2) {
                tc = plain_put_us(d3, i, e);
                continue;
            }
            gencache__tier *t = which == 0 ? one : two;
            double t0 = bench_now_us();
            put_or_die(t, e);
            *(which == 0 ? &ta : &tb) = bench_now_us() - t0;
        }
        gencache__entry_release(e);
        if (j < 0)
            continue;
        a[i] = ta;
        b[i] = tb;
        c[i] = tc;
        ra[i] = c[i] / a[i];
        rb[i] = c[i] / b[i];
    }
    double ma = bench_median(a, n), mb = bench_median(b, n), mc = bench_median(c, n);
    double qa1 = bench_quantile(ra, n, 0.25), qa3 = bench_quantile(ra, n, 0.75);
    printf("%-7s durable put (median us over %d rounds, after %d not counted): tier %9.1f | tier, "
           "two flushes per commit %9.1f | write+fdatasync %9.1f\n",
           label, n, DURABLE_WARMUP, ma, mb, mc);
    /* The headline is the median of the per-round ratios: each round's three puts share the
     * moment's load, so the ratio of a round is steadier than the ratio of the medians, which
     * pairs puts measured seconds apart. */
    printf("%-7s durable put throughput vs write+fdatasync: tier %.2fx (median of per-round "
           "ratios, quartiles %.2f-%.2f; ratio of the medians %.2fx) | two flushes %.2fx (median "
           "of per-round ratios; goal >= 0.9x at 1.5MiB and up)\n",
           label, bench_median(ra, n), qa1, qa3, mc / ma, bench_median(rb, n));
    free(a);
    free(b);
    free(c);
    free(ra);
    free(rb);
    one->ops->close(one);
    two->ops->close(two);
}

/* Section 2b: where a durable put's time goes, against write+fdatasync's, at one size. Each
 * round runs, in rotating order: the durable put; the same put into a tier without flushes (its
 * copies, LMDB's work, the write into the page cache); write of a new file without a flush;
 * write+fdatasync of a new file; a memcpy of the value (the copy the tier makes beyond the
 * plain write: into the page LMDB reserves for it); and a put of a 64-byte value without a flush
 * (the transaction's own work: B-trees, totals, commit). Medians, and medians of the per-round
 * differences. */
static void durable_phases(const char *base, const char *label, size_t size, int n)
{
    char d1[2200], d2[2200], d3[2200], d4[2200];
    snprintf(d1, sizeof d1, "%s/phase-durable-%s", base, label);
    snprintf(d2, sizeof d2, "%s/phase-nosync-%s", base, label);
    snprintf(d3, sizeof d3, "%s/phase-write-%s", base, label);
    snprintf(d4, sizeof d4, "%s/phase-fdatasync-%s", base, label);
    mkdir(d3, 0755);
    mkdir(d4, 0755);
    gencache__disk_tuning def;
    gencache__disk_tuning_init(&def);
    gencache__tier *dur = open_tier_ex(d1, def.inline_max, true, false, NULL);
    gencache__tier *nos = open_tier_ex(d2, def.inline_max, false, false, NULL);
    unsigned char *copy = malloc(size);
    double *t[6], *flush_tier = calloc((size_t)n, sizeof(double));
    double *flush_plain = calloc((size_t)n, sizeof(double));
    double *extra = calloc((size_t)n, sizeof(double));
    for (int k = 0; k < 6; k++)
        t[k] = calloc((size_t)n, sizeof(double));
    if (!copy)
        abort();
    memset(copy, 1, size);
    for (int j = -DURABLE_WARMUP; j < n; j++) {
        int i = j < 0 ? n - j : j;
        gencache__entry *e = make_entry((uint64_t)i + 1, size);
        gencache__entry *small = make_entry((uint64_t)i + 1 + 10000000, 64);
        double r[6];
        for (int k = 0; k < 6; k++) {
            int which = (i + k) % 6;
            double t0 = bench_now_us();
            if (which == 0 || which == 1)
                put_or_die(which == 0 ? dur : nos, e);
            else if (which == 2)
                r[2] = plain_file_us(d3, i, e, false);
            else if (which == 3)
                r[3] = plain_put_us(d4, i, e);
            else if (which == 4) {
                memcpy(copy, e->value, size);
                /* copy is never read: without this the compiler may drop the memcpy. */
                __asm__ volatile("" : : "r"(copy) : "memory");
            } else
                put_or_die(nos, small);
            if (which != 2 && which != 3)
                r[which] = bench_now_us() - t0;
        }
        gencache__entry_release(e);
        gencache__entry_release(small);
        if (j < 0)
            continue;
        for (int k = 0; k < 6; k++)
            t[k][i] = r[k];
        flush_tier[i] = r[0] - r[1];
        flush_plain[i] = r[3] - r[2];
        extra[i] = r[1] - r[2];
    }
    double m[6];
    for (int k = 0; k < 6; k++)
        m[k] = bench_median(t[k], n);
    printf("%-7s durable put phases (median us over %d rounds): tier %.1f = without its flush "
           "%.1f + flush %.1f | write+fdatasync %.1f = write %.1f + flush %.1f\n",
           label, n, m[0], m[1], bench_median(flush_tier, n), m[3], m[2],
           bench_median(flush_plain, n));
    printf("%-7s durable put phases: the tier's work beyond a plain write %.1f us (median of "
           "per-round differences), against one memcpy of the value %.1f us and a whole "
           "transaction of a 64-byte value without a flush %.1f us; its flush minus the plain "
           "file's %.1f us\n",
           label, bench_median(extra, n), m[4], m[5],
           bench_median(flush_tier, n) - bench_median(flush_plain, n));
    for (int k = 0; k < 6; k++)
        free(t[k]);
    free(flush_tier);
    free(flush_plain);
    free(extra);
    free(copy);
    dur->ops->close(dur);
    nos->ops->close(nos);
}

/* One put into a bare LMDB environment as the tier makes it: a reserved value, a copy into it,
 * a commit (one fdatasync with MDB_NOMETASYNC, or msync with MDB_WRITEMAP). */
static double lmdb_put_us(MDB_env *env, uint64_t n, const gencache__entry *e)
{
    double t0 = bench_now_us();
    MDB_txn *txn;
    MDB_dbi dbi;
    MDB_val k = {sizeof n, &n}, v = {e->size, NULL};
    if (mdb_txn_begin(env, NULL, 0, &txn) != MDB_SUCCESS ||
        mdb_dbi_open(txn, NULL, 0, &dbi) != MDB_SUCCESS ||
        mdb_put(txn, dbi, &k, &v, MDB_RESERVE) != MDB_SUCCESS)
        abort();
    memcpy(v.mv_data, e->value, e->size);
    if (mdb_txn_commit(txn) != MDB_SUCCESS)
        abort();
    return bench_now_us() - t0;
}

static MDB_env *lmdb_open(const char *dir, unsigned flags, uint64_t map_size, off_t prealloc)
{
    MDB_env *env;
    mkdir(dir, 0755);
    if (mdb_env_create(&env) != MDB_SUCCESS || mdb_env_set_mapsize(env, map_size) != MDB_SUCCESS ||
        mdb_env_open(env, dir, flags | MDB_NOTLS | MDB_NOMETASYNC, 0644) != MDB_SUCCESS)
        abort();
    if (prealloc) {
        /* The blocks the puts will write, allocated ahead: a full disk then fails here, with
         * an error, instead of as SIGBUS on a store into the map. */
        char path[2300];
        snprintf(path, sizeof path, "%s/data.mdb", dir);
        int fd = open(path, O_RDWR);
        if (fd < 0 || posix_fallocate(fd, 0, prealloc) != 0)
            abort();
        close(fd);
    }
    return env;
}

/* Section 2c: would MDB_WRITEMAP, which drops the copy into LMDB's own page (values written
 * straight into the shared map), make a durable put cheaper? Bare LMDB, no tier: the tier's way
 * (dirty pages, pwrite, fdatasync), WRITEMAP on the sparse file LMDB makes (extended to the map
 * size; a full disk is SIGBUS), WRITEMAP on a file whose blocks were allocated ahead with
 * posix_fallocate, and write+fdatasync of a new file, in rotating order. */
static void writemap_ab(const char *base, const char *label, size_t size, int n)
{
    char dir[3][2200], d4[2200];
    static const char *names[3] = {"copy", "writemap", "writemap-falloc"};
    for (int k = 0; k < 3; k++)
        snprintf(dir[k], sizeof dir[k], "%s/lmdb-%s-%s", base, names[k], label);
    snprintf(d4, sizeof d4, "%s/lmdb-plain-%s", base, label);
    mkdir(d4, 0755);
    uint64_t map = 4ull << 30;
    off_t need = (off_t)(n + DURABLE_WARMUP + 8) * (off_t)(size + 64 * KIB);
    MDB_env *env[3] = {lmdb_open(dir[0], 0, map, 0), lmdb_open(dir[1], MDB_WRITEMAP, map, 0),
                       lmdb_open(dir[2], MDB_WRITEMAP, map, need)};
    double *t[4], *r[3];
    for (int k = 0; k < 4; k++)
        t[k] = calloc((size_t)n, sizeof(double));
    for (int k = 0; k < 3; k++)
        r[k] = calloc((size_t)n, sizeof(double));
    for (int j = -DURABLE_WARMUP; j < n; j++) {
        int i = j < 0 ? n - j : j;
        gencache__entry *e = make_entry((uint64_t)i + 1, size);
        double x[4];
        for (int k = 0; k < 4; k++) {
            int which = (i + k) % 4;
            x[which] =
                which == 3 ? plain_put_us(d4, i, e) : lmdb_put_us(env[which], (uint64_t)i, e);
        }
        gencache__entry_release(e);
        if (j < 0)
            continue;
        for (int k = 0; k < 4; k++)
            t[k][i] = x[k];
        for (int k = 0; k < 3; k++)
            r[k][i] = x[3] / x[k];
    }
    double m[4];
    for (int k = 0; k < 4; k++)
        m[k] = bench_median(t[k], n);
    printf("%-7s bare LMDB durable put (median us over %d rounds): copy %.1f | writemap %.1f | "
           "writemap, fallocated %.1f | write+fdatasync %.1f\n",
           label, n, m[0], m[1], m[2], m[3]);
    printf("%-7s bare LMDB durable put vs write+fdatasync (median of per-round ratios): copy "
           "%.2fx | writemap %.2fx | writemap, fallocated %.2fx\n",
           label, bench_median(r[0], n), bench_median(r[1], n), bench_median(r[2], n));
    for (int k = 0; k < 4; k++)
        free(t[k]);
    for (int k = 0; k < 3; k++) {
        free(r[k]);
        mdb_env_close(env[k]);
    }
}

static gencache__crypt *bench_keys(void)
{
    static const char hex[] = "8e2bd4c3a0f1965b7c4d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b";
    setenv("BENCH_DISK_KEY", hex, 1);
    const char *src[] = {"env:BENCH_DISK_KEY"};
    gencache__crypt *keys = NULL;
    if (gencache__crypt_new(NULL, NULL, src, 1, &keys) != GENCACHE_OK)
        abort();
    return keys;
}

/* Section 3: the cost of encryption at rest, interleaved with the plain tier: t[0] plain,
 * t[1] encrypting; both closed here. */
static void crypt_cost(const char *tier, gencache__tier *t[2], const char *label, size_t size,
                       int n)
{
    double *put[2], *get[2];
    for (int k = 0; k < 2; k++) {
        put[k] = calloc((size_t)n, sizeof *put[k]);
        get[k] = calloc((size_t)n, sizeof *get[k]);
    }
    gencache__entry **es = calloc((size_t)n, sizeof *es);
    for (int i = 0; i < n; i++) {
        es[i] = make_entry((uint64_t)i + 1, size);
        for (int k = 0; k < 2; k++) {
            int w = (i + k) % 2;
            double t0 = bench_now_us();
            put_or_die(t[w], es[i]);
            put[w][i] = bench_now_us() - t0;
        }
    }
    for (int round = 0; round < 2; round++) { /* the first round warms the page cache */
        for (int i = 0; i < n; i++) {
            for (int k = 0; k < 2; k++) {
                int w = (i + k) % 2;
                gencache__entry *e = NULL;
                double t0 = bench_now_us();
                if (t[w]->ops->get(t[w], es[i]->key, es[i]->hash, 2000, false, &e) != GENCACHE_OK)
                    abort();
                get[w][i] = bench_now_us() - t0;
                gencache__entry_release(e);
            }
        }
    }
    double pp = bench_median(put[0], n), ps = bench_median(put[1], n);
    double gp = bench_median(get[0], n), gs = bench_median(get[1], n);
    printf("%-7s encryption, %s tier (median us over %d): put plain %8.1f | encrypted %8.1f "
           "(%.2fx the time, +%.1f us) ; get plain %8.1f | encrypted %8.1f (%.2fx, +%.1f us)\n",
           label, tier, n, pp, ps, ps / pp, ps - pp, gp, gs, gs / gp, gs - gp);
    for (int i = 0; i < n; i++)
        gencache__entry_release(es[i]);
    free(es);
    for (int k = 0; k < 2; k++) {
        free(put[k]);
        free(get[k]);
        t[k]->ops->close(t[k]);
    }
}

static void crypt_cost_disk(const char *base, const char *label, size_t size, int n)
{
    gencache__crypt *keys = bench_keys();
    char d1[2200], d2[2200];
    snprintf(d1, sizeof d1, "%s/crypt-plain-%s", base, label);
    snprintf(d2, sizeof d2, "%s/crypt-sealed-%s", base, label);
    gencache__disk_tuning def;
    gencache__disk_tuning_init(&def);
    gencache__tier *t[2] = {open_tier_ex(d1, def.inline_max, false, false, NULL),
                            open_tier_ex(d2, def.inline_max, false, false, keys)};
    crypt_cost("disk (no fsync)", t, label, size, n);
    gencache__crypt_free(keys);
}

static void crypt_cost_redis(int port, const char *label, size_t size, int n)
{
    gencache__crypt *keys = bench_keys();
    gencache__tier *t[2] = {NULL, NULL};
    for (int k = 0; k < 2; k++) {
        char url[64]; /* one database each: both store the same keys */
        snprintf(url, sizeof url, "redis://127.0.0.1:%d/%d", port, k);
        gencache__redis_options o = {.url = url, .timeout_ms = 5000, .keys = k ? keys : NULL};
        if (gencache__redis_tier_open(&o, &t[k]) != GENCACHE_OK)
            abort();
    }
    crypt_cost("redis", t, label, size, n);
    gencache__crypt_free(keys);
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
    const char *only = NULL;
    if (argc >= 3 && strcmp(argv[1], "--only") == 0) {
        only = argv[2];
        argc -= 2;
        argv += 2;
    }
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
    printf("bench_disk in %s\n", base);
    struct {
        const char *label;
        size_t size;
        int n, n_durable;
    } sizes[] = {
        {"4KiB", 4 * KIB, 200, 200}, {"1.5MiB", 1536 * KIB, 40, 100}, {"16MiB", 16 * MIB, 12, 30}};
    for (int s = 0; s < 3 && !only; s++) {
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
        printf("%-7s ratios: get speed vs plain read(): inline %.2fx, file %.2fx (goal >= 0.8x "
               "for 1.5MiB)\n",
               sizes[s].label, rp / ig, rp / fg);
    }
    const char *pick = getenv("BENCH_DURABLE_SIZE"); /* one size of section 2 only */
    for (int s = 0; s < 3 && (!only || strcmp(only, "durable") == 0); s++)
        if (!pick || strcmp(pick, sizes[s].label) == 0)
            durable_puts(base, sizes[s].label, sizes[s].size, sizes[s].n_durable);
    if (!only || strcmp(only, "phases") == 0) {
        durable_phases(base, "1.5MiB", 1536 * KIB, 100);
        for (int s = 0; s < 2; s++)
            writemap_ab(base, sizes[s].label, sizes[s].size, sizes[s].n_durable);
    }
    if (!only || strcmp(only, "crypt") == 0) {
        for (int s = 0; s < 2; s++)
            crypt_cost_disk(base, sizes[s].label, sizes[s].size, s == 0 ? 2000 : 100);
        int port = rs_start();
        for (int s = 0; s < 2 && port > 0; s++)
            crypt_cost_redis(port, sizes[s].label, sizes[s].size, s == 0 ? 2000 : 100);
        rs_stop();
    }
    if (!only) {
        double ci = concurrent_puts(base, "conc-inline", SIZE_MAX, 4, 10, 1536 * KIB);
        double cf = concurrent_puts(base, "conc-file", 0, 4, 10, 1536 * KIB);
        printf("1.5MiB  put throughput, 4 threads: LMDB inline %.1f/s | blob file %.1f/s (%.2fx)\n",
               ci, cf, cf / ci);
        churn(base, "inline", SIZE_MAX);
        churn(base, "file", 0);
        recovery(base, 100000);
    }
    if (own)
        rm_rf(base);
    return 0;
}
