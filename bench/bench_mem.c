/*
 * bench_mem.c: the in-process memory tier, against a minimal C cache (baseline_cache.c: one
 * mutex, open addressing, refcounted items) measured in the same run on the same keys.
 *   1. gencache_get of a 1.5 MB entry (a zero-copy handle), median ns, against a memcpy of the
 *      same 1.5 MB: what a copying cache would pay per hit.
 *   2. get hits (get + release of the handle) in random order over 10^3 and 10^6 resident
 *      entries of 64 bytes, median ns per hit, gencache / baseline.
 *   3. put/get throughput of 4 KB entries (70% get, 30% put) in a 64 MiB cache (steady
 *      eviction), ops/s with 1 and 2 threads, gencache / baseline (the median of the rounds'
 *      ratios) and 2 threads / 1 thread.
 *   4. with --policy P (lru, gdsf, s3fifo or all), instead of 1-3: for each policy against LRU
 *      in the same run, the hit path (gets of 4 KB and 1.5 MB entries that all hit, 1 and 2
 *      threads: ns per get) and the eviction cost per entry (a put into a full tier minus a put
 *      into one with room).
 * Usage: bench_mem [ROUNDS] [MAX_ENTRIES] [--policy P] [--only large|hits|mixed] [--cpu]
 *                  [--without ghost|mrc|both]
 * (medians over ROUNDS rounds, default 15; the hit test's largest table, default 1000000;
 * --only runs one of 1-3, for profiling; --cpu times 2 and the one-thread part of 3 by the
 * thread's CPU time, which a loaded machine disturbs less, and prints no two-thread figures;
 * --without opens the cache of 3 without the ghost list, the miss-ratio curve or both, to show
 * what they cost)
 */
#include <pthread.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

#include "baseline_cache.h"
#include "bench_util.h"
#include "gencache.h"
#include "internal.h"
#include "policy/policy.h"

/* --cpu: time the hit test and the one-thread mixed test by the thread's CPU time instead of the
 * wall clock. On a shared machine a process loses the CPU to others for unpredictable spells;
 * CPU time leaves those out (cache pollution by the others stays in). */
static bool cpu_time;

/* --without: the mixed test's cache keeps no ghost list / no miss-ratio curve. */
static bool mix_no_ghost, mix_no_mrc;

/* The clock of the hit test and the one-thread mixed test. */
static uint64_t bench_ns(void)
{
    return cpu_time ? bench_thread_cpu_ns() : gencache__clock_mono_ns();
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static uint64_t median(uint64_t *v, size_t n)
{
    qsort(v, n, sizeof *v, cmp_u64);
    return v[n / 2];
}

static uint64_t xorshift(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

/* n distinct keys of a layer, "<layer>/<64 hex>", in one allocation. */
static char **make_keys(const char *layer, size_t n)
{
    size_t stride = strlen(layer) + 1 + 64 + 1;
    char **keys = malloc(n * sizeof *keys);
    char *text = malloc(n * stride);
    if (!keys || !text)
        exit(1);
    for (size_t i = 0; i < n; i++) {
        keys[i] = text + i * stride;
        snprintf(keys[i], stride, "%s/%016llx%048llx", layer, (unsigned long long)i * 2654435761u,
                 (unsigned long long)i);
    }
    return keys;
}

static void free_keys(char **keys)
{
    free(keys[0]);
    free(keys);
}

static void bench_get_large(int rounds)
{
    enum { SIZE = 1536 * 1024, ITERS = 2000 };
    gencache *c;
    if (gencache_open(&c, NULL) != GENCACHE_OK)
        exit(1);
    unsigned char *src = malloc(SIZE), *dst = malloc(SIZE);
    memset(src, 0x5a, SIZE);
    const char *key =
        "image_latent/00000000000000000000000000000000000000000000000000000000000000ff";
    if (gencache_put(c, key, src, SIZE, NULL) != GENCACHE_OK)
        exit(1);
    uint64_t *get_ns = malloc(sizeof(uint64_t) * rounds);
    uint64_t *cpy_ns = malloc(sizeof(uint64_t) * rounds);
    volatile unsigned char sink = 0;
    (void)sink; /* written only, so that the loads it takes are not optimized out */
    for (int r = 0; r < rounds; r++) {
        uint64_t t0 = gencache__clock_mono_ns();
        for (int i = 0; i < ITERS; i++) {
            gencache_handle *h;
            gencache_get(c, key, &h);
            sink ^= ((const unsigned char *)gencache_handle_data(h))[i];
            gencache_handle_release(h);
        }
        uint64_t t1 = gencache__clock_mono_ns();
        for (int i = 0; i < ITERS / 20; i++) {
            memcpy(dst, src, SIZE);
            sink ^= dst[i];
        }
        uint64_t t2 = gencache__clock_mono_ns();
        get_ns[r] = (t1 - t0) / ITERS;
        cpy_ns[r] = (t2 - t1) / (ITERS / 20);
    }
    uint64_t g = median(get_ns, rounds), m = median(cpy_ns, rounds);
    printf("get 1.5 MB hit (zero-copy handle): median %llu ns per get\n", (unsigned long long)g);
    printf("memcpy 1.5 MB (baseline):          median %llu ns per copy\n", (unsigned long long)m);
    printf("ratio memcpy/get: %.0fx\n", (double)m / (double)(g ? g : 1));
    free(get_ns);
    free(cpy_ns);
    free(src);
    free(dst);
    gencache_close(c);
}

/* ---- hits over many entries ---- */

static void bench_hits(int rounds, size_t n)
{
    enum { VALUE = 64 };
    /* Short rounds, alternating between the caches, so that load from other processes on a
     * shared machine hits both alike; the ratio is the median of the rounds' ratios. */
    size_t iters = 200000;
    char **keys = make_keys("text_embedding", n);
    /* The order of the lookups: random, the same for both caches. */
    uint32_t *order = malloc(iters * sizeof *order);
    uint64_t x = 88172645463325252ull;
    for (size_t i = 0; i < iters; i++)
        order[i] = (uint32_t)(xorshift(&x) % n);
    unsigned char val[VALUE];
    memset(val, 7, sizeof val);

    gencache_options o;
    gencache_options_init(&o);
    o.mem_max_bytes = 0; /* everything stays resident */
    o.ghost_max_entries = 0;
    gencache *c;
    bl_cache *b = bl_cache_new(0);
    if (gencache_open(&c, &o) != GENCACHE_OK || !b)
        exit(1);
    for (size_t i = 0; i < n; i++)
        if (gencache_put(c, keys[i], val, sizeof val, NULL) != GENCACHE_OK ||
            bl_cache_put(b, keys[i], val, sizeof val) != 0)
            exit(1);
    uint64_t *g_ns = malloc(sizeof(uint64_t) * rounds), *b_ns = malloc(sizeof(uint64_t) * rounds);
    uint64_t *ratio = malloc(sizeof(uint64_t) * rounds);
    volatile unsigned sink = 0;
    (void)sink; /* written only, so that the loads it takes are not optimized out */
    size_t misses = 0;
    for (int r = 0; r < rounds; r++) {
        uint64_t t0 = bench_ns();
        for (size_t i = 0; i < iters; i++) {
            gencache_handle *h;
            if (gencache_get(c, keys[order[i]], &h) != GENCACHE_OK) {
                misses++;
                continue;
            }
            sink += ((const unsigned char *)gencache_handle_data(h))[0];
            gencache_handle_release(h);
        }
        uint64_t t1 = bench_ns();
        for (size_t i = 0; i < iters; i++) {
            bl_item *it = bl_cache_get(b, keys[order[i]]);
            if (!it) {
                misses++;
                continue;
            }
            sink += ((const unsigned char *)bl_item_data(it))[0];
            bl_item_release(it);
        }
        uint64_t t2 = bench_ns();
        g_ns[r] = (t1 - t0) * 100 / iters; /* hundredths of a ns */
        b_ns[r] = (t2 - t1) * 100 / iters;
        ratio[r] = g_ns[r] * 1000 / (b_ns[r] ? b_ns[r] : 1);
    }
    if (misses)
        fprintf(stderr, "bench_mem: %zu unexpected misses\n", misses);
    uint64_t g = median(g_ns, rounds), bl = median(b_ns, rounds), q = median(ratio, rounds);
    printf("get hit, %8zu entries of %d B: gencache %6.1f ns, baseline %6.1f ns, ratio %.2fx\n", n,
           VALUE, g / 100.0, bl / 100.0, q / 1000.0);
    free(ratio);
    free(g_ns);
    free(b_ns);
    free(order);
    gencache_close(c);
    bl_cache_free(b);
    free_keys(keys);
}

/* ---- mixed put/get with threads ---- */

enum { MIX_KEYS = 50000 };

typedef struct worker_arg {
    gencache *c;
    bl_cache *b;
    char **keys;
    int id;
    long ops;
    uint64_t cpu_ns; /* the worker's CPU time */
} worker_arg;

static void *worker(void *p)
{
    worker_arg *a = p;
    unsigned char val[4096];
    memset(val, a->id, sizeof val);
    uint64_t x = 88172645463325252ull + (uint64_t)a->id;
    uint64_t c0 = bench_thread_cpu_ns();
    for (long i = 0; i < a->ops; i++) {
        uint64_t r = xorshift(&x);
        const char *key = a->keys[r % MIX_KEYS];
        bool put = (r >> 32) % 10 < 3;
        if (a->c && put) {
            gencache_put(a->c, key, val, sizeof val, NULL);
        } else if (a->c) {
            gencache_handle *h;
            if (gencache_get(a->c, key, &h) == GENCACHE_OK)
                gencache_handle_release(h);
        } else if (put) {
            bl_cache_put(a->b, key, val, sizeof val);
        } else {
            bl_item_release(bl_cache_get(a->b, key));
        }
    }
    a->cpu_ns = bench_thread_cpu_ns() - c0;
    return NULL;
}

/* ops/s of nthreads workers on a fresh 64 MiB cache (~14,000 entries of 4 KB: steady eviction):
 * gencache's, or the baseline's when baseline is set. */
static double run_threads(char **keys, int nthreads, long ops_each, bool baseline)
{
    gencache *c = NULL;
    bl_cache *b = NULL;
    if (baseline) {
        b = bl_cache_new(64ull << 20);
        if (!b)
            exit(1);
    } else {
        gencache_options o;
        gencache_options_init(&o);
        o.mem_max_bytes = 64ull << 20;
        if (mix_no_ghost)
            o.ghost_max_entries = 0;
        if (mix_no_mrc)
            o.mrc_sample_rate = 0;
        if (gencache_open(&c, &o) != GENCACHE_OK)
            exit(1);
    }
    pthread_t t[8];
    worker_arg args[8];
    uint64_t t0 = gencache__clock_mono_ns();
    for (int i = 0; i < nthreads; i++) {
        args[i] = (worker_arg){c, b, keys, i + 1, ops_each, 0};
        pthread_create(&t[i], NULL, worker, &args[i]);
    }
    for (int i = 0; i < nthreads; i++)
        pthread_join(t[i], NULL);
    uint64_t dt = gencache__clock_mono_ns() - t0;
    if (cpu_time && nthreads == 1)
        dt = args[0].cpu_ns;
    if (c)
        gencache_close(c);
    if (b)
        bl_cache_free(b);
    return (double)nthreads * (double)ops_each / ((double)dt / 1e9);
}

static void bench_mixed(int rounds)
{
    enum { OPS = 200000 };
    char **keys = make_keys("text_embedding", MIX_KEYS);
    uint64_t g1[64], g2[64], b1[64], b2[64], r1[64], r2[64];
    /* The caches take turns, and each ratio is the median of the rounds' ratios (thousandths),
     * so that load from other processes on a shared machine hits both alike. */
    for (int r = 0; r < rounds; r++) {
        g1[r] = (uint64_t)run_threads(keys, 1, OPS, false);
        b1[r] = (uint64_t)run_threads(keys, 1, OPS, true);
        g2[r] = cpu_time ? 1 : (uint64_t)run_threads(keys, 2, OPS, false);
        b2[r] = cpu_time ? 1 : (uint64_t)run_threads(keys, 2, OPS, true);
        r1[r] = g1[r] * 1000 / (b1[r] ? b1[r] : 1);
        r2[r] = g2[r] * 1000 / (b2[r] ? b2[r] : 1);
    }
    double mg1 = (double)median(g1, rounds), mb1 = (double)median(b1, rounds);
    double mg2 = (double)median(g2, rounds), mb2 = (double)median(b2, rounds);
    double q1 = (double)median(r1, rounds) / 1000, q2 = (double)median(r2, rounds) / 1000;
    if (mix_no_ghost || mix_no_mrc)
        printf("(gencache without %s)\n", mix_no_ghost && mix_no_mrc
                                              ? "the ghost list and the miss-ratio curve"
                                          : mix_no_ghost ? "the ghost list"
                                                         : "the miss-ratio curve");
    printf("4 KB put/get (30%% put), 1 thread:  gencache %8.0f ops/s, baseline %8.0f ops/s, "
           "ratio %.2fx\n",
           mg1, mb1, q1);
    if (cpu_time) { /* the CPU time of two threads says nothing of their wall-clock rate */
        free_keys(keys);
        return;
    }
    printf("4 KB put/get (30%% put), 2 threads: gencache %8.0f ops/s, baseline %8.0f ops/s, "
           "ratio %.2fx\n",
           mg2, mb2, q2);
    printf("2-thread scaling (2 threads / 1 thread): gencache %.2fx, baseline %.2fx\n", mg2 / mg1,
           mb2 / mb1);
    free_keys(keys);
}

/* ---- eviction policies against LRU ---- */

static const char *const policy_names[] = {"lru", "gdsf", "s3fifo"};

typedef struct hit_arg {
    gencache *c;
    char (*keys)[128];
    int n_keys;
    long gets;
    unsigned seed;
} hit_arg;

static void *hit_worker(void *p)
{
    hit_arg *a = p;
    uint64_t x = 88172645463325252ull + a->seed;
    volatile unsigned char sink = 0;
    (void)sink; /* written only, so that the loads it takes are not optimized out */
    for (long i = 0; i < a->gets; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        gencache_handle *h;
        if (gencache_get(a->c, a->keys[x % (uint64_t)a->n_keys], &h) != GENCACHE_OK)
            exit(1); /* every get must hit: the tier holds them all */
        sink ^= ((const unsigned char *)gencache_handle_data(h))[0];
        gencache_handle_release(h);
    }
    return NULL;
}

/* A tier of policy p holding n_keys entries of size (costs vary), all of which fit. */
static gencache *filled(int p, size_t size, int n_keys, uint64_t max_bytes, char (*keys)[128])
{
    gencache_options o;
    gencache_options_init(&o);
    o.mem_policy = p;
    o.mem_max_bytes = max_bytes ? max_bytes : (uint64_t)n_keys * (size + 4096) * 2;
    o.mrc_sample_rate = 0;
    gencache *c;
    if (gencache_open(&c, &o) != GENCACHE_OK)
        exit(1);
    unsigned char *val = calloc(1, size);
    for (int i = 0; i < n_keys; i++) {
        sprintf(keys[i], "image_latent/%064x", i);
        gencache_meta m;
        gencache_meta_init(&m);
        m.cost_ms = 100 + (uint64_t)i % 900;
        if (gencache_put(c, keys[i], val, size, &m) != GENCACHE_OK)
            exit(1);
    }
    free(val);
    return c;
}

/* ns per get (per thread) of nthreads threads getting random keys of c. */
static uint64_t hit_round(gencache *c, char (*keys)[128], int n_keys, int nthreads, long gets,
                          unsigned seed)
{
    pthread_t t[8];
    hit_arg args[8];
    uint64_t t0 = gencache__clock_mono_ns();
    for (int i = 0; i < nthreads; i++) {
        args[i] = (hit_arg){c, keys, n_keys, gets, seed + (unsigned)i};
        pthread_create(&t[i], NULL, hit_worker, &args[i]);
    }
    for (int i = 0; i < nthreads; i++)
        pthread_join(t[i], NULL);
    return (gencache__clock_mono_ns() - t0) / (uint64_t)gets;
}

/* ns per entry that gencache__cache_charge() evicts from a full tier of 4 KB entries: the
 * policy's choice of victims plus their removal and release. */
static uint64_t evict_round(int p)
{
    enum { N = 20000, SIZE = 4096 };
    static char keys[N][128];
    gencache *c = filled(p, SIZE, N, (uint64_t)N * (SIZE + 512), keys);
    gencache_stats st = {.struct_size = sizeof st};
    gencache_stats_get(c, &st);
    uint64_t before = st.tiers[0].evictions_capacity, t0 = gencache__clock_mono_ns();
    if (gencache__cache_charge(c, (int64_t)(st.tiers[0].max_bytes / 2)) != GENCACHE_OK)
        exit(1);
    uint64_t dt = gencache__clock_mono_ns() - t0;
    gencache_stats_get(c, &st);
    uint64_t n = st.tiers[0].evictions_capacity - before;
    gencache__cache_charge(c, -(int64_t)(st.tiers[0].max_bytes / 2));
    gencache_close(c);
    return n ? dt / n : 0;
}

/* The policies alone, without the tier around them: ns per on-hit call on random entries of one
 * shard instance holding N entries, and ns per eviction (candidate, evicting, remove) until it is
 * empty. Median over rounds. */
static void policy_alone(int p, int rounds, uint64_t *hit, uint64_t *evict)
{
    enum { N = 10000, HITS = 1000000 };
    const gencache__policy_ops *ops = gencache__policy_of(p);
    uint64_t h[64], ev[64];
    gencache__entry **es = malloc(sizeof *es * N);
    for (int r = 0; r < rounds; r++) {
        gencache__policy_shared sh = {.ghost_entries = 4096};
        gencache__policy_shard ps = {.shared = &sh};
        for (int i = 0; i < N; i++) {
            char key[128];
            sprintf(key, "image_latent/%064x", i);
            gencache__entry_spec spec = {.key = key, .size = 0};
            if (gencache__entry_new(NULL, &spec, &es[i]) != GENCACHE_OK)
                exit(1);
            es[i]->charge = 4096 + (size_t)(i % 7) * 512;
            es[i]->cost_ms = 100 + (uint64_t)i % 900;
            if (ops->insert(&ps, es[i]) != GENCACHE_OK)
                exit(1);
        }
        uint64_t x = 88172645463325252ull + (uint64_t)r;
        uint64_t t0 = gencache__clock_mono_ns();
        for (int i = 0; i < HITS; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            /* What the tier does on a hit: count it, and call the policy's on-hit if any. */
            gencache__entry *e = es[x % N];
            atomic_store_explicit(&e->hits,
                                  atomic_load_explicit(&e->hits, memory_order_relaxed) + 1,
                                  memory_order_relaxed);
            if (ops->hit)
                ops->hit(&ps, e);
        }
        uint64_t t1 = gencache__clock_mono_ns();
        for (int i = 0; i < N; i++) {
            double rank;
            gencache__entry *v = ops->candidate(&ps, NULL, &rank);
            ops->evicting(&ps, v);
            ops->remove(&ps, v);
        }
        uint64_t t2 = gencache__clock_mono_ns();
        h[r] = (t1 - t0) / (HITS / 1000); /* picoseconds, for resolution */
        ev[r] = (t2 - t1) * 1000 / N;
        ops->fini(&ps);
        for (int i = 0; i < N; i++)
            gencache__entry_release(es[i]);
    }
    free(es);
    *hit = median(h, (size_t)rounds);
    *evict = median(ev, (size_t)rounds);
}

static void bench_policies(int rounds, int only)
{
    static const struct {
        const char *what;
        size_t size;
        int n_keys;
        long gets;
    } cases[] = {{"4 KB", 4096, 10000, 200000}, {"1.5 MB", 1536 * 1024, 32, 100000}};
    int use[3], n_use = 0;
    for (int p = 0; p < 3; p++)
        if (p == 0 || only < 0 || p == only)
            use[n_use++] = p;
    printf("medians of %d rounds; each round runs every policy in turn\n", rounds);
    uint64_t alone_hit[3], alone_ev[3];
    for (int i = 0; i < n_use; i++) {
        policy_alone(use[i], rounds, &alone_hit[i], &alone_ev[i]);
        printf("%-6s alone (10,000 entries): on-hit %.1f ns, eviction %.1f ns per entry\n",
               policy_names[use[i]], (double)alone_hit[i] / 1000, (double)alone_ev[i] / 1000);
    }
    for (size_t k = 0; k < 2; k++) {
        gencache *c[3];
        char(*keys)[128] = malloc(sizeof *keys * (size_t)cases[k].n_keys);
        for (int i = 0; i < n_use; i++)
            c[i] = filled(use[i], cases[k].size, cases[k].n_keys, 0, keys);
        for (int t = 1; t <= 2; t++) {
            uint64_t ns[3][64];
            for (int r = 0; r < rounds; r++)
                for (int i = 0; i < n_use; i++)
                    ns[i][r] =
                        hit_round(c[i], keys, cases[k].n_keys, t, cases[k].gets, (unsigned)r * 8);
            uint64_t lru = median(ns[0], (size_t)rounds);
            for (int i = 0; i < n_use; i++) {
                uint64_t m = i ? median(ns[i], (size_t)rounds) : lru;
                printf("%-6s hit %-6s %d thread%s: median %5llu ns per get (%.2fx LRU)\n",
                       policy_names[use[i]], cases[k].what, t, t > 1 ? "s" : " ",
                       (unsigned long long)m, (double)m / (double)(lru ? lru : 1));
            }
        }
        for (int i = 0; i < n_use; i++)
            gencache_close(c[i]);
        free(keys);
    }
    uint64_t ev[3][64];
    for (int r = 0; r < rounds; r++)
        for (int i = 0; i < n_use; i++)
            ev[i][r] = evict_round(use[i]);
    uint64_t lru = median(ev[0], (size_t)rounds);
    for (int i = 0; i < n_use; i++) {
        uint64_t m = i ? median(ev[i], (size_t)rounds) : lru;
        printf("%-6s eviction, 4 KB entries: median %5llu ns per entry (%.2fx LRU)\n",
               policy_names[use[i]], (unsigned long long)m, (double)m / (double)(lru ? lru : 1));
    }
}

int main(int argc, char **argv)
{
    int rounds = 15, policy = -2, positional = 0; /* policy -2: no policy section; -1: all */
    size_t max_entries = 1000000;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--cpu") == 0) {
            cpu_time = true;
        } else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) {
            only = argv[++i];
            if (strcmp(only, "large") != 0 && strcmp(only, "hits") != 0 &&
                strcmp(only, "mixed") != 0) {
                fprintf(stderr, "bench_mem: --only large|hits|mixed\n");
                return 2;
            }
        } else if (strcmp(argv[i], "--without") == 0 && i + 1 < argc) {
            const char *w = argv[++i];
            mix_no_ghost = strcmp(w, "ghost") == 0 || strcmp(w, "both") == 0;
            mix_no_mrc = strcmp(w, "mrc") == 0 || strcmp(w, "both") == 0;
            if (!mix_no_ghost && !mix_no_mrc) {
                fprintf(stderr, "bench_mem: --without ghost|mrc|both\n");
                return 2;
            }
        } else if (strcmp(argv[i], "--policy") == 0 && i + 1 < argc) {
            const char *p = argv[++i];
            policy = strcmp(p, "all") == 0 ? -1 : -3;
            for (int k = 0; k < 3; k++)
                if (strcmp(p, policy_names[k]) == 0)
                    policy = k;
            if (policy == -3) {
                fprintf(stderr, "bench_mem: --policy lru|gdsf|s3fifo|all\n");
                return 2;
            }
        } else if (positional++ == 0) {
            rounds = atoi(argv[i]);
        } else {
            max_entries = strtoull(argv[i], NULL, 10);
        }
    }
    if (rounds < 1 || rounds > 64)
        rounds = 15;
    if (policy != -2) {
        bench_policies(rounds, policy);
        return 0;
    }
    if (!only || strcmp(only, "large") == 0)
        bench_get_large(rounds);
    for (size_t n = 1000; n <= max_entries && (!only || strcmp(only, "hits") == 0); n *= 1000)
        bench_hits(rounds, n);
    if (!only || strcmp(only, "mixed") == 0)
        bench_mixed(rounds < 7 ? rounds : 7);
    return 0;
}
