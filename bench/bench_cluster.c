/*
 * bench_cluster.c: the shared tier on a 3-primary Redis Cluster, against one redis-server, in the
 * same run (servers started here on loopback):
 *  1. hit throughput of 1, 2 and 3 nodes (a node = one Redis tier instance with its own pools and
 *     slot map, driven by 2 threads doing gets of stored 4 KiB entries; the daemon's HTTP layer is
 *     not included), per-node efficiency (throughput of N nodes / N x one node) and round trips
 *     per hit (operations sent, redirects and slot map reads included, per hit);
 *  2. invalidation propagation: a delete on one cache until another cache's local copy is gone
 *     (median of 100);
 *  3. the Bloom filter on a replay of a real trace (one get per request, a put after each miss,
 *     result keys): round trips saved, false positives, memory per key.
 * Layout: redis-server(s) pinned to CPU 0, this process to CPU 1 (a 2-core machine: the scaling
 * is bounded by the one core all servers share).
 * Usage: bench_cluster [TRACE.tsv]   (default /work/shared/traces/sd-discord-dream-2.tsv)
 */
#define _GNU_SOURCE
#include <openssl/sha.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "../tests/unit/redis_cluster_server.h"
#include "cache.h"
#include "tier/bloom.h"
#include "tier/redis_ops.h"

#define KEYS      1000
#define VALUE     4096
#define RUN_S     1.0
#define REPS      3
#define PER_NODE  2
#define MAX_NODES 3

static void pin(int cpu)
{
    cpu_set_t s;
    CPU_ZERO(&s);
    CPU_SET(cpu, &s);
    sched_setaffinity(0, sizeof s, &s);
}

static void key_of(char *buf, uint64_t i)
{
    snprintf(buf, GENCACHE__KEY_MAX + 1, "result/%064llx", (unsigned long long)(i * 2654435761u));
}

static gencache__tier *open_tier(const char *url)
{
    gencache__redis_options o = {.url = url, .timeout_ms = 2000};
    gencache__tier *t = NULL;
    if (gencache__redis_tier_open(&o, &t) != GENCACHE_OK) {
        fprintf(stderr, "cannot open %s\n", url);
        exit(1);
    }
    return t;
}

static void fill(gencache__tier *t)
{
    uint64_t now = gencache__clock_realtime_ms(NULL);
    for (uint64_t i = 0; i < KEYS; i++) {
        char key[GENCACHE__KEY_MAX + 1];
        key_of(key, i);
        gencache__entry_spec spec = {.key = key, .size = VALUE, .now_ms = now, .ttl_ms = 3600000};
        gencache__entry *e;
        if (gencache__entry_new(NULL, &spec, &e) != GENCACHE_OK)
            exit(1);
        memset(e->value, (int)i, VALUE);
        e->checksum = gencache__checksum(e->value, VALUE);
        t->ops->put(t, e, now);
        gencache__entry_release(e);
    }
}

typedef struct worker {
    gencache__tier *t;
    unsigned seed;
    double until;
    uint64_t hits, misses;
} worker;

static void *get_loop(void *arg)
{
    worker *w = arg;
    uint64_t x = w->seed * 0x9E3779B97F4A7C15ull + 1;
    while (bench_now_s() < w->until) {
        for (int k = 0; k < 64; k++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char key[GENCACHE__KEY_MAX + 1];
            key_of(key, x % KEYS);
            gencache__entry *e = NULL;
            if (w->t->ops->get(w->t, key, 0, gencache__clock_realtime_ms(NULL), false, &e) ==
                GENCACHE_OK) {
                w->hits++;
                gencache__entry_release(e);
            } else {
                w->misses++;
            }
        }
    }
    return NULL;
}

/* Hits per second of n nodes; *rt: operations sent per hit. */
static double throughput(const char *url, int n, double *rt)
{
    gencache__tier *nodes[MAX_NODES];
    for (int i = 0; i < n; i++)
        nodes[i] = open_tier(url);
    worker w[MAX_NODES * PER_NODE];
    pthread_t th[MAX_NODES * PER_NODE];
    double until = bench_now_s() + RUN_S;
    for (int i = 0; i < n * PER_NODE; i++) {
        w[i] = (worker){.t = nodes[i / PER_NODE], .seed = (unsigned)i + 1, .until = until};
        pthread_create(&th[i], NULL, get_loop, &w[i]);
    }
    uint64_t hits = 0, misses = 0;
    for (int i = 0; i < n * PER_NODE; i++) {
        pthread_join(th[i], NULL);
        hits += w[i].hits;
        misses += w[i].misses;
    }
    uint64_t extra = 0;
    for (int i = 0; i < n; i++) {
        gencache__redis_tier *r = (gencache__redis_tier *)nodes[i];
        extra += atomic_load(&r->redirects) + atomic_load(&r->refreshes);
        nodes[i]->ops->close(nodes[i]);
    }
    if (misses)
        fprintf(stderr, "warning: %llu misses\n", (unsigned long long)misses);
    *rt = hits ? (double)(hits + misses + extra) / (double)hits : 0;
    return (double)hits / RUN_S;
}

static void bench_throughput(const char *single, const char *cluster)
{
    printf("hit throughput (gets/s of stored 4 KiB entries, %d threads per node; median of %d "
           "interleaved runs of %.1f s)\n",
           PER_NODE, REPS, RUN_S);
    printf("%-6s %12s %12s %10s %12s %12s %10s %8s\n", "nodes", "single", "per node", "eff.",
           "cluster", "per node", "eff.", "rt/hit");
    double base_s = 0, base_c = 0;
    for (int n = 1; n <= MAX_NODES; n++) {
        double s[REPS], c[REPS], rts, rtc = 0;
        for (int i = 0; i < REPS; i++) {
            s[i] = throughput(single, n, &rts);
            c[i] = throughput(cluster, n, &rtc);
        }
        double ms = bench_median(s, REPS), mc = bench_median(c, REPS);
        if (n == 1) {
            base_s = ms;
            base_c = mc;
        }
        printf("%-6d %12.0f %12.0f %9.0f%% %12.0f %12.0f %9.0f%% %8.3f\n", n, ms, ms / n,
               100 * ms / (n * base_s), mc, mc / n, 100 * mc / (n * base_c), rtc);
    }
}

static gencache *open_cache(const char *url, double bloom)
{
    gencache_options o;
    gencache_options_init(&o);
    o.redis_url = url;
    o.redis_timeout_ms = 2000;
    o.redis_bloom_fp_rate = bloom;
    o.redis_bloom_capacity = 100000;
    gencache *c = NULL;
    if (gencache_open(&c, &o) != GENCACHE_OK)
        exit(1);
    double t0 = bench_now_s();
    while (!gencache__redis_coherence_subscribed(c->coherence) && bench_now_s() - t0 < 5)
        usleep(1000);
    return c;
}

static void bench_invalidation(const char *url, const char *name)
{
    gencache *a = open_cache(url, 0), *b = open_cache(url, 0);
    enum { N = 100 };
    double ms[N];
    for (int i = 0; i < N; i++) {
        char key[GENCACHE__KEY_MAX + 1];
        key_of(key, 900000 + (uint64_t)i);
        gencache_put(a, key, "x", 1, NULL);
        gencache_handle *h = NULL;
        gencache_get(b, key, &h); /* from Redis into b's memory */
        gencache_handle_release(h);
        double t0 = bench_now_us();
        gencache_del(a, key);
        for (;;) {
            gencache__entry *e = NULL;
            gencache__tier *mem = b->tiers[0];
            if (mem->ops->get(mem, key, gencache__checksum(key, strlen(key)),
                              gencache__clock_realtime_ms(NULL), false, &e) != GENCACHE_OK)
                break;
            gencache__entry_release(e);
            if (bench_now_us() - t0 > 2e6)
                break;
        }
        ms[i] = (bench_now_us() - t0) / 1e3;
    }
    double med = bench_median(ms, N);
    printf("invalidation propagation (%s, delete on one cache until another's local copy is "
           "gone, %d deletes): median %.2f ms, max %.2f ms\n",
           name, N, med, ms[N - 1]);
    gencache_close(a);
    gencache_close(b);
}

/* The trace's keys, one per line: for "result", SHA-256 of the request fields (prompt, seed,
 * steps, guidance, width, height); for "text_embedding", of the prompt alone. Equal requests
 * share a key as they do under the v1 recipe (whose exact bytes differ). */
static int trace_keys(const char *path, const char *kind, char (**out)[GENCACHE__KEY_MAX + 1],
                      size_t *n)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t cap = 65536, cnt = 0;
    char(*keys)[GENCACHE__KEY_MAX + 1] = malloc(cap * sizeof *keys);
    char *line = NULL;
    size_t ll = 0;
    ssize_t got;
    bool header = true;
    while ((got = getline(&line, &ll, f)) > 0) {
        if (header) {
            header = false;
            continue;
        }
        /* timestamp, user, then the request: hash what follows the second tab. */
        char *p = strchr(line, '\t');
        p = p ? strchr(p + 1, '\t') : NULL;
        if (!p)
            continue;
        size_t len = strlen(p + 1);
        if (strcmp(kind, "text_embedding") == 0) {
            char *end = strchr(p + 1, '\t');
            len = end ? (size_t)(end - (p + 1)) : len;
        }
        unsigned char d[32];
        SHA256((const unsigned char *)p + 1, len, d);
        if (cnt == cap)
            keys = realloc(keys, (cap *= 2) * sizeof *keys);
        int w = sprintf(keys[cnt], "%s/", kind);
        for (int i = 0; i < 32; i++)
            w += sprintf(keys[cnt] + w, "%02x", d[i]);
        cnt++;
    }
    free(line);
    fclose(f);
    *out = keys;
    *n = cnt;
    return 0;
}

static void bench_bloom(const char *url, const char *trace, const char *kind)
{
    char(*keys)[GENCACHE__KEY_MAX + 1];
    size_t n;
    if (trace_keys(trace, kind, &keys, &n) != 0) {
        fprintf(stderr, "cannot read %s\n", trace);
        return;
    }
    /* A fresh keyspace: the replay starts from an empty shared tier. */
    redisContext *rc = rs_client();
    redisReply *rep = rc ? redisCommand(rc, "FLUSHALL") : NULL;
    if (rep)
        freeReplyObject(rep);
    if (rc)
        redisFree(rc);
    gencache *c = open_cache(url, 0.01);
    gencache__redis_tier *r = (gencache__redis_tier *)c->tiers[c->shared_tier];
    double t0 = bench_now_s();
    while (!atomic_load(&r->bloom_ready) && bench_now_s() - t0 < 5)
        usleep(1000);
    gencache__tier *t = &r->base;
    uint64_t now = gencache__clock_realtime_ms(NULL), gets = 0, hits = 0,
             skips0 = atomic_load(&r->bloom_skips);
    for (size_t i = 0; i < n; i++) {
        gencache__entry *e = NULL;
        gets++;
        if (t->ops->get(t, keys[i], 0, now, false, &e) == GENCACHE_OK) {
            hits++;
            gencache__entry_release(e);
            continue;
        }
        gencache__entry_spec spec = {.key = keys[i], .size = 16, .now_ms = now, .ttl_ms = 3600000};
        if (gencache__entry_new(NULL, &spec, &e) != GENCACHE_OK)
            exit(1);
        memset(e->value, 1, 16);
        e->checksum = gencache__checksum(e->value, 16);
        t->ops->put(t, e, now);
        gencache__entry_release(e);
    }
    uint64_t skips = atomic_load(&r->bloom_skips) - skips0, misses = gets - hits;
    pthread_rwlock_rdlock(&r->bloom_lock);
    size_t bytes = gencache__bloom_bytes(r->bloom);
    unsigned k = gencache__bloom_hashes(r->bloom);
    pthread_rwlock_unlock(&r->bloom_lock);
    printf("bloom filter on the trace (%zu requests, %s keys; fp rate 0.01, capacity 100000, "
           "%u probes): %llu hits, %llu misses; round trips saved %llu of %llu gets (%.1f%%; "
           "without the filter every get is one); misses that still went to Redis %llu "
           "(%.2f%% of misses); filter %zu bytes = %.2f bytes per key of capacity, %.2f per "
           "distinct key stored (%llu)\n",
           n, kind, k, (unsigned long long)hits, (unsigned long long)misses,
           (unsigned long long)skips, (unsigned long long)gets,
           100.0 * (double)skips / (double)gets, (unsigned long long)(misses - skips),
           100.0 * (double)(misses - skips) / (double)misses, bytes, (double)bytes / 100000.0,
           (double)bytes / (double)misses, (unsigned long long)misses);
    gencache_close(c);
    free(keys);
}

int main(int argc, char **argv)
{
    const char *trace = argc > 1 ? argv[1] : "/work/shared/traces/sd-discord-dream-2.tsv";
    pin(0); /* the servers inherit this */
    int port = rs_start();
    if (port <= 0 || rc_start() != 0) {
        fprintf(stderr, "cannot start the servers\n");
        return 1;
    }
    pin(1);
    char single[64], cluster[256];
    snprintf(single, sizeof single, "redis://127.0.0.1:%d", port);
    rc_url(cluster, sizeof cluster, 3);
    printf("layout: redis-server(s) on CPU 0, clients on CPU 1; single redis :%d, cluster %s\n",
           port, cluster);
    gencache__tier *t = open_tier(single);
    fill(t);
    t->ops->close(t);
    t = open_tier(cluster);
    fill(t);
    t->ops->close(t);
    bench_throughput(single, cluster);
    bench_invalidation(single, "one redis-server");
    bench_invalidation(cluster, "3-primary cluster");
    bench_bloom(single, trace, "result");
    bench_bloom(single, trace, "text_embedding");
    rc_stop();
    rs_stop();
    return 0;
}
