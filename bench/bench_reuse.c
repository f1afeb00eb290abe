/*
 * bench_reuse.c: what a perceptual lookup adds to a miss. A cache holds N image_latent entries
 * stored by request (gencache_store) with random image signatures on a layer with image_match
 * perceptual; then the same Q pre-parsed miss requests (digests and pHashes nobody stored) are
 * looked up twice, interleaved: once without their image signature (the exact key only: the
 * baseline, measured in the same run on the same cache) and once with it (the exact miss, then
 * the near-duplicate index and the guard). Prints the median and p99 of each, their difference
 * (the extra latency of consulting the index) and the ratio.
 *
 *   bench_reuse [N_STORED] [Q_QUERIES] [PHASH_RADIUS]   default 1000000, 20000 and the guard's
 *                                                       default (gencache_match_options_init())
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "gencache.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
    return bench_splitmix64(&rng_state);
}

/* A request for image i: a random digest and signature (the i-th of the run). */
static gencache_request *make_request(gencache_keyspace *ks, bool with_sig)
{
    char json[256];
    int n = snprintf(json, sizeof json, "{\"model\": \"i2v\", \"image\": {\"digest\": \"sha256:");
    for (int i = 0; i < 4; i++)
        n += snprintf(json + n, sizeof json - (size_t)n, "%016llx", (unsigned long long)rnd());
    snprintf(json + n, sizeof json - (size_t)n, "\"}}");
    gencache_request *req = NULL;
    if (gencache_request_parse(ks, json, strlen(json), 0, &req) != GENCACHE_OK)
        exit(1);
    gencache_image_sig sig = {.width = 832, .height = 480, .phash = rnd(), .dhash = rnd()};
    if (with_sig && gencache_request_set_image_sig(req, &sig) != GENCACHE_OK)
        exit(1);
    return req;
}

int main(int argc, char **argv)
{
    long stored = argc > 1 ? atol(argv[1]) : 1000000;
    int queries = argc > 2 ? atoi(argv[2]) : 20000;
    gencache_options o;
    gencache_options_init(&o);
    o.mem_max_bytes = 0; /* unlimited: nothing is evicted while filling */
    gencache *c = NULL;
    if (gencache_open(&c, &o) != GENCACHE_OK)
        return 1;
    gencache_layer_options lo;
    gencache_layer_options_init(&lo);
    gencache_layer_get(c, "image_latent", &lo);
    lo.image_match = GENCACHE_IMAGE_MATCH_PERCEPTUAL;
    if (gencache_layer_define(c, &lo) != GENCACHE_OK)
        return 1;
    gencache_match_options guard;
    gencache_match_options_init(&guard);
    if (argc > 3)
        guard.phash_radius = (unsigned)atoi(argv[3]);
    if (gencache_reuse_set_guard(c, &guard) != GENCACHE_OK)
        return 1;
    gencache_keyspace *ks = NULL;
    gencache_keyspace_from_cache(c, &ks);

    double t0 = bench_now_s();
    for (long i = 0; i < stored; i++) {
        gencache_request *req = make_request(ks, true);
        if (gencache_store(c, NULL, req, "image_latent", "latent!!", 8, NULL, NULL) != GENCACHE_OK)
            return 1;
        gencache_request_free(req);
    }
    double fill_s = bench_now_s() - t0;
    gencache_reuse_stats st = {.struct_size = sizeof st};
    gencache_reuse_stats_get(c, &st);

    gencache_request **plain = malloc(sizeof *plain * (size_t)queries);
    gencache_request **sig = malloc(sizeof *sig * (size_t)queries);
    double *tp = malloc(sizeof *tp * (size_t)queries), *ts = malloc(sizeof *ts * (size_t)queries);
    for (int i = 0; i < queries; i++) {
        plain[i] = make_request(ks, false);
        sig[i] = make_request(ks, true);
    }
    unsigned hits = 0;
    for (int round = 0; round < 2; round++) { /* the first round warms caches up */
        for (int i = 0; i < queries; i++) {
            gencache_handle *h = NULL;
            double a = bench_now_ns();
            int rc1 = gencache_lookup(c, NULL, plain[i], "image_latent", &h, NULL);
            double b = bench_now_ns();
            int rc2 = gencache_lookup(c, NULL, sig[i], "image_latent", &h, NULL);
            double e = bench_now_ns();
            hits += (rc1 == GENCACHE_OK) + (rc2 == GENCACHE_OK);
            gencache_handle_release(h);
            tp[i] = b - a;
            ts[i] = e - b;
        }
    }
    double mp = bench_median(tp, queries), ms = bench_median(ts, queries);
    double p99p = bench_quantile(tp, queries, 0.99), p99s = bench_quantile(ts, queries, 0.99);
    printf("stored %ld images by request in %.1f s (index holds %llu); guard: pHash radius %u, "
           "dHash radius %u, combined radius %u\n",
           stored, fill_s, (unsigned long long)st.images, guard.phash_radius, guard.dhash_radius,
           guard.combined_radius);
    printf("miss, exact key only (baseline):  median %.2f us  p99 %.2f us\n", mp / 1e3, p99p / 1e3);
    printf("miss, exact key + index + guard:  median %.2f us  p99 %.2f us\n", ms / 1e3, p99s / 1e3);
    printf("extra latency of the perceptual path: median %.2f us (ratio %.2fx)\n", (ms - mp) / 1e3,
           ms / mp);
    printf("hits among %d random queries (expected 0): %u\n", queries, hits);
    for (int i = 0; i < queries; i++) {
        gencache_request_free(plain[i]);
        gencache_request_free(sig[i]);
    }
    free(plain);
    free(sig);
    free(tp);
    free(ts);
    gencache_keyspace_free(ks);
    gencache_close(c);
    return 0;
}
