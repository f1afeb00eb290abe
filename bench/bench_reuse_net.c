/*
 * bench_reuse_net.c: what sharing the reuse records through Redis costs (src/reuse/
 * records_redis.c), against one redis-server started here on loopback:
 *  1. store latency: gencache_store() of image_latent requests with an image signature on a cache
 *     whose image_latent is shared (the record is written to Redis and published: one EVAL)
 *     against a cache where it is not (the baseline), interleaved in the same run; median, p99,
 *     the difference and the ratio;
 *  2. propagation: from a store on one cache returning until another cache's lookup of a near
 *     duplicate matches it (median and p99 of Q);
 *  3. catching up: a cache opened after N records were stored reads them all (SCAN and HGETALL);
 *     the time to the end of its first load and records per second.
 * Layout: redis-server pinned to CPU 0, this process to CPU 1.
 * Usage: bench_reuse_net [N_RECORDS] [Q]   (default 100000 and 200)
 */
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../tests/unit/redis_server.h"
#include "bench_util.h"
#include "gencache.h"
#include "reuse/reuse.h"

static uint64_t rng_state = 0x2545f4914f6cdd1dull;

static uint64_t rnd(void)
{
    return bench_splitmix64(&rng_state);
}

static void pin(int cpu)
{
    cpu_set_t s;
    CPU_ZERO(&s);
    CPU_SET(cpu, &s);
    sched_setaffinity(0, sizeof s, &s);
}

static void must(int rc, const char *what)
{
    if (rc != GENCACHE_OK) {
        fprintf(stderr, "bench_reuse_net: %s: %s\n", what, gencache_strerror(rc));
        exit(1);
    }
}

static unsigned long warnings;

static void count_warning(void *ud, gencache_log_level level, const char *message)
{
    (void)ud;
    if (level <= GENCACHE_LOG_WARN && warnings++ < 3)
        fprintf(stderr, "bench_reuse_net: %s\n", message);
}

static gencache *open_cache(const char *url, bool shared)
{
    gencache_options o;
    gencache_options_init(&o);
    o.log_fn = count_warning;
    o.redis_url = url;
    o.mem_max_bytes = 0;
    gencache *c = NULL;
    must(gencache_open(&c, &o), "open");
    gencache_layer_options lo;
    gencache_layer_options_init(&lo);
    must(gencache_layer_get(c, "image_latent", &lo), "layer");
    lo.image_match = GENCACHE_IMAGE_MATCH_PERCEPTUAL;
    lo.shared = shared;
    must(gencache_layer_define(c, &lo), "define");
    gencache_reuse_stats st = {.struct_size = sizeof st};
    must(gencache_reuse_stats_get(c, &st), "first use");
    return c;
}

/* A request with a random digest and the signature sig. */
static gencache_request *make_request(gencache *c, const gencache_image_sig *sig)
{
    char json[256];
    int n = snprintf(json, sizeof json, "{\"model\": \"i2v\", \"image\": {\"digest\": \"sha256:");
    for (int i = 0; i < 4; i++)
        n += snprintf(json + n, sizeof json - (size_t)n, "%016llx", (unsigned long long)rnd());
    snprintf(json + n, sizeof json - (size_t)n, "\"}}");
    gencache_keyspace *ks = NULL;
    must(gencache_keyspace_from_cache(c, &ks), "keyspace");
    gencache_request *req = NULL;
    must(gencache_request_parse(ks, json, strlen(json), 0, &req), "parse");
    gencache_keyspace_free(ks);
    must(gencache_request_set_image_sig(req, sig), "sig");
    return req;
}

static gencache_image_sig random_sig(void)
{
    uint64_t p;
    do
        p = rnd();
    while (__builtin_popcountll(p) < 16); /* detailed enough for the guard's min_detail */
    return (gencache_image_sig){.width = 832, .height = 480, .phash = p, .dhash = rnd()};
}

static double store_us(gencache *c, const gencache_image_sig *sig)
{
    gencache_request *req = make_request(c, sig);
    double t0 = bench_now_us();
    must(gencache_store(c, NULL, req, "image_latent", "latent", 6, NULL, NULL), "store");
    double t = bench_now_us() - t0;
    gencache_request_free(req);
    return t;
}

int main(int argc, char **argv)
{
    long n_records = argc > 1 ? atol(argv[1]) : 100000;
    int q = argc > 2 ? atoi(argv[2]) : 200;
    pin(0); /* redis-server inherits this */
    int port = rs_start();
    if (port <= 0) {
        fprintf(stderr, "bench_reuse_net: cannot start redis-server\n");
        return 1;
    }
    pin(1);
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", port);
    gencache *a = open_cache(url, true), *local = open_cache(url, false),
             *b = open_cache(url, true);

    /* 1. store latency, shared against not shared, interleaved */
    int m = 2000;
    double *sh = malloc(sizeof *sh * (size_t)m), *lo = malloc(sizeof *lo * (size_t)m);
    for (int i = 0; i < m; i++) {
        gencache_image_sig s1 = random_sig(), s2 = random_sig();
        sh[i] = store_us(a, &s1);
        lo[i] = store_us(local, &s2);
    }
    double sh_med = bench_quantile(sh, m, 0.5), sh_p99 = bench_quantile(sh, m, 0.99);
    double lo_med = bench_quantile(lo, m, 0.5), lo_p99 = bench_quantile(lo, m, 0.99);
    printf("store (%d each, interleaved): shared layer median %.1f us p99 %.1f us; not shared "
           "(baseline) median %.1f us p99 %.1f us; +%.1f us, ratio %.2fx\n",
           m, sh_med, sh_p99, lo_med, lo_p99, sh_med - lo_med, sh_med / lo_med);

    /* 2. propagation: a's store until b's lookup of a near duplicate matches */
    double *prop = malloc(sizeof *prop * (size_t)q);
    for (int i = 0; i < q; i++) {
        gencache_image_sig s = random_sig();
        gencache_image_sig near = s;
        near.phash ^= 0x3; /* 2 bits away */
        gencache_request *probe = make_request(b, &near);
        store_us(a, &s);
        double t0 = bench_now_us();
        for (;;) {
            gencache_handle *h = NULL;
            gencache_match mt = {.struct_size = sizeof mt};
            int rc = gencache_lookup(b, NULL, probe, "image_latent", &h, &mt);
            if (rc == GENCACHE_OK) {
                gencache_handle_release(h);
                break;
            }
            if (bench_now_us() - t0 > 5e6) {
                fprintf(stderr, "bench_reuse_net: no match after 5 s\n");
                return 1;
            }
        }
        prop[i] = bench_now_us() - t0;
        gencache_request_free(probe);
    }
    printf("propagation (%d): store on one cache until another's lookup matches: median %.0f us "
           "p99 %.0f us\n",
           q, bench_quantile(prop, q, 0.5), bench_quantile(prop, q, 0.99));

    /* 3. a late cache reads n_records records */
    for (long i = 0; i < n_records; i++) {
        gencache_image_sig s = random_sig();
        store_us(a, &s);
    }
    gencache_reuse_stats st = {.struct_size = sizeof st};
    must(gencache_reuse_stats_get(a, &st), "stats");
    double t0 = bench_now_s();
    gencache *late = open_cache(url, true);
    uint64_t heard = 0, loaded = 0, rebuilds = 0;
    while (rebuilds == 0 && bench_now_s() - t0 < 600) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
        gencache__reuse_net_counts(gencache__reuse_net_of(late), &heard, &loaded, &rebuilds);
    }
    double secs = bench_now_s() - t0;
    /* What Redis holds: a store whose EVAL ran past the tier's timeout kept its record local. */
    long long held = -1;
    redisContext *rc = redisConnect("127.0.0.1", port);
    redisReply *rep =
        rc ? redisCommand(rc, "EVAL %s 0", "return #redis.call('KEYS', 'gencache:reuse:v1:*')")
           : NULL;
    if (rep && rep->type == REDIS_REPLY_INTEGER)
        held = rep->integer;
    if (rep)
        freeReplyObject(rep);
    if (rc)
        redisFree(rc);
    printf("catch-up: a cache opened after %llu records were stored (Redis holds %lld) read %llu "
           "in %.2f s (%.0f records/s; SCAN COUNT 256, 5 ms between steps)\n",
           (unsigned long long)st.images, held, (unsigned long long)loaded, secs,
           (double)loaded / secs);
    gencache_close(late);
    gencache_close(a);
    gencache_close(local);
    gencache_close(b);
    free(sh);
    free(lo);
    free(prop);
    rs_stop();
    return 0;
}
