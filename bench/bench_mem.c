/*
 * bench_mem.c: the in-process memory tier.
 *   1. gencache_get of a 1.5 MB entry (a zero-copy handle), median ns, against a memcpy of the
 *      same 1.5 MB measured in the same run: what a copying cache would pay per hit.
 *   2. put/get throughput of 4 KB entries with 2 threads (70% get, 30% put), ops/s, against the
 *      same loop with 1 thread.
 * Usage: bench_mem [ROUNDS]   (prints medians over ROUNDS rounds, default 15)
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gencache.h"
#include "internal.h"

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

static void bench_get_large(int rounds)
{
    enum { SIZE = 1536 * 1024, ITERS = 2000 };
    gencache *c;
    if (gencache_open(&c, NULL) != GENCACHE_OK)
        exit(1);
    unsigned char *src = malloc(SIZE), *dst = malloc(SIZE);
    memset(src, 0x5a, SIZE);
    const char *key = "image_latent/00000000000000000000000000000000000000000000000000000000000000ff";
    if (gencache_put(c, key, src, SIZE, NULL) != GENCACHE_OK)
        exit(1);
    uint64_t *get_ns = malloc(sizeof(uint64_t) * rounds);
    uint64_t *cpy_ns = malloc(sizeof(uint64_t) * rounds);
    volatile unsigned char sink = 0;
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

typedef struct worker_arg {
    gencache *c;
    int id;
    long ops;
} worker_arg;

static void *worker(void *p)
{
    worker_arg *a = p;
    unsigned char val[4096];
    memset(val, a->id, sizeof val);
    char key[128];
    uint64_t x = 88172645463325252ull + (uint64_t)a->id;
    for (long i = 0; i < a->ops; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        sprintf(key, "text_embedding/%064llx", (unsigned long long)(x % 50000));
        if (x % 10 < 3) {
            gencache_put(a->c, key, val, sizeof val, NULL);
        } else {
            gencache_handle *h;
            if (gencache_get(a->c, key, &h) == GENCACHE_OK)
                gencache_handle_release(h);
        }
    }
    return NULL;
}

static double run_threads(int nthreads, long ops_each)
{
    gencache_options o;
    gencache_options_init(&o);
    o.mem_max_bytes = 64ull << 20; /* ~14,000 entries of 4 KB: steady eviction */
    gencache *c;
    if (gencache_open(&c, &o) != GENCACHE_OK)
        exit(1);
    pthread_t t[8];
    worker_arg args[8];
    uint64_t t0 = gencache__clock_mono_ns();
    for (int i = 0; i < nthreads; i++) {
        args[i] = (worker_arg){c, i + 1, ops_each};
        pthread_create(&t[i], NULL, worker, &args[i]);
    }
    for (int i = 0; i < nthreads; i++)
        pthread_join(t[i], NULL);
    uint64_t dt = gencache__clock_mono_ns() - t0;
    gencache_close(c);
    return (double)nthreads * (double)ops_each / ((double)dt / 1e9);
}

static void bench_small(int rounds)
{
    enum { OPS = 200000 };
    double *one = malloc(sizeof(double) * rounds), *two = malloc(sizeof(double) * rounds);
    for (int r = 0; r < rounds; r++) {
        one[r] = run_threads(1, OPS);
        two[r] = run_threads(2, OPS);
    }
    uint64_t a[64], b[64];
    for (int r = 0; r < rounds; r++) {
        a[r] = (uint64_t)one[r];
        b[r] = (uint64_t)two[r];
    }
    uint64_t m1 = median(a, rounds), m2 = median(b, rounds);
    printf("4 KB put/get (30%% put), 1 thread:  median %llu ops/s\n", (unsigned long long)m1);
    printf("4 KB put/get (30%% put), 2 threads: median %llu ops/s (%.2fx of 1 thread)\n",
           (unsigned long long)m2, (double)m2 / (double)m1);
    free(one);
    free(two);
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 15;
    if (rounds < 1 || rounds > 64)
        rounds = 15;
    bench_get_large(rounds);
    bench_small(rounds < 7 ? rounds : 7);
    return 0;
}
