/*
 * bench_image.c: the costs of image identity, each against a baseline measured in the same run.
 * 1. pHash (64 bits) of a decoded 1024 x 1024 RGB image, median per hash, first with each kernel
 *    set this CPU runs (scalar, AVX2, AVX-512), then with the default one against the Python
 *    reference (Pillow convert + Lanczos resize + scipy DCT, bench_image_ref.py run by
 *    /usr/bin/python3 on the same pixels); the hashes must agree.
 * 2. Pixel digest throughput against OpenSSL's SHA-256 of the same sample bytes.
 * 3. Near-duplicate query at radius 8 over 1,000,000 random 64-bit hashes, median per query,
 *    against a linear popcount scan of the same hashes.
 *
 * usage: bench_image [ROUNDS]   (default 31; run from anywhere: the companion script is found
 * beside this source file)
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "gencache.h"
#include "image/image.h"
#include "image/simd.h"
#include "bench_util.h"

#ifndef BENCH_SOURCE_DIR
#define BENCH_SOURCE_DIR __FILE__
#endif

static uint64_t rng = 0x243F6A8885A308D3ull;

static uint64_t rnd(void)
{
    uint64_t z = (rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* A photo-like test image: smooth shapes at several scales plus fine noise, so the thumbnail has
 * structure and every resize tap sees varied input. */
static unsigned char *make_image(uint32_t w, uint32_t h)
{
    unsigned char *px = malloc((size_t)w * h * 3);
    for (uint32_t y = 0; y < h; y++)
        for (uint32_t x = 0; x < w; x++) {
            double fx = (double)x / w, fy = (double)y / h;
            double v = 0.5 + 0.25 * sin(6.1 * fx + 2.3 * fy) + 0.15 * cos(17.0 * fx * fy) +
                       0.1 * sin(40.0 * (fx - fy));
            for (int c = 0; c < 3; c++) {
                double n = (double)(rnd() & 31) - 16.0;
                double s = 255.0 * v * (0.8 + 0.1 * c) + n;
                px[((size_t)y * w + x) * 3 + c] = (unsigned char)(s < 0 ? 0 : s > 255 ? 255 : s);
            }
        }
    return px;
}

static void bench_phash(int rounds)
{
    const uint32_t w = 1024, h = 1024;
    unsigned char *px = make_image(w, h);
    gencache_image *img;
    if (gencache_image_from_pixels(px, w, h, (size_t)w * 3, GENCACHE_PIXEL_RGB8, &img) != 0) {
        fprintf(stderr, "from_pixels failed\n");
        exit(1);
    }
    char hex[GENCACHE_HASH_HEX_MAX];
    double *t = calloc((size_t)rounds, sizeof *t);
    /* Each kernel set this CPU runs, rounds interleaved so that they share the machine's load;
     * all must give the same hash. Then the default set, against the reference. */
    static const char *const level_names[] = {"scalar", "avx2", "avx512"};
    int max = gencache__simd_max_level(), def = gencache__simd_level();
    double *tl[3];
    char lhex[3][GENCACHE_HASH_HEX_MAX];
    for (int l = 0; l <= max; l++)
        tl[l] = calloc((size_t)rounds, sizeof *tl[l]);
    for (int r = 0; r < rounds; r++)
        for (int l = 0; l <= max; l++) {
            gencache__simd_set_level(l);
            double t0 = bench_now_ns();
            gencache_image_hash(img, GENCACHE_HASH_PHASH, 64, NULL, lhex[l]);
            tl[l][r] = bench_now_ns() - t0;
        }
    gencache__simd_set_level(def);
    printf("phash64 of a decoded %ux%u RGB image, each path (median of %d, fastest):", w, h,
           rounds);
    int same = 1;
    for (int l = 0; l <= max; l++) {
        double med = bench_median(tl[l], rounds);
        printf(" %s%s %.1f us (%.1f)%s", level_names[l], l == def ? " [default]" : "", med / 1e3,
               tl[l][0] / 1e3, l < max ? "," : "");
        same &= strcmp(lhex[l], lhex[0]) == 0;
        free(tl[l]);
    }
    printf("; hashes %s\n", same ? "agree" : "DIFFER");
    gencache_image_hash(img, GENCACHE_HASH_PHASH, 64, NULL, hex);
    for (int r = 0; r < rounds; r++) {
        double t0 = bench_now_ns();
        gencache_image_hash(img, GENCACHE_HASH_PHASH, 64, NULL, hex);
        t[r] = bench_now_ns() - t0;
    }
    double c_ns = bench_median(t, rounds), c_min = t[0]; /* bench_median() sorted t */

    /* The reference, on the same pixels. */
    char raw[] = "/tmp/bench_image_XXXXXX";
    int fd = mkstemp(raw);
    if (fd < 0 || write(fd, px, (size_t)w * h * 3) != (ssize_t)((size_t)w * h * 3)) {
        fprintf(stderr, "cannot write %s\n", raw);
        exit(1);
    }
    close(fd);
    char script[4096];
    snprintf(script, sizeof script, "%s", BENCH_SOURCE_DIR);
    char *slash = strrchr(script, '/');
    if (slash)
        strcpy(slash + 1, "bench_image_ref.py");
    else
        strcpy(script, "bench_image_ref.py");
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s' '%s' %u %u %d", script, raw, w, h, rounds);
    FILE *p = popen(cmd, "r");
    double py_s = 0, py_min = 0;
    char py_hex[64] = "";
    if (!p || fscanf(p, "%lf %lf %63s", &py_s, &py_min, py_hex) != 3) {
        fprintf(stderr, "reference run failed: %s\n", cmd);
        py_s = 0;
    }
    if (p)
        pclose(p);
    unlink(raw);
    printf("phash64 of a decoded %ux%u RGB image: gencache [%s] %.1f us, Python reference %.1f us "
           "(medians), ratio %.1fx; fastest runs %.1f us vs %.1f us, ratio %.1fx; hashes %s "
           "(%s vs %s)\n",
           w, h, level_names[def], c_ns / 1e3, py_s * 1e6, py_s * 1e9 / c_ns, c_min / 1e3,
           py_min * 1e6, py_min * 1e9 / c_min, strcmp(hex, py_hex) == 0 ? "agree" : "DIFFER", hex,
           py_hex);
    gencache_image_free(img);
    free(px);
    free(t);
}

static void bench_digest(int rounds, uint32_t w, uint32_t h)
{
    unsigned char *px = make_image(w, h);
    gencache_image *img;
    if (gencache_image_from_pixels(px, w, h, (size_t)w * 3, GENCACHE_PIXEL_RGB8, &img) != 0)
        exit(1);
    size_t bytes = (size_t)w * h * 3;
    double *td = calloc((size_t)rounds, sizeof *td), *ts = calloc((size_t)rounds, sizeof *ts);
    char d[GENCACHE_DIGEST_MAX];
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen;
    /* The same bytes: the image's own sample buffer. The order alternates so neither side
     * always finds the buffer warm. */
    const unsigned char *samples = img->pixels;
    for (int r = 0; r < rounds; r++) {
        for (int k = 0; k < 2; k++) {
            double t0 = bench_now_ns();
            if ((k + r) % 2 == 0) {
                gencache_image_digest(img, d);
                td[r] = bench_now_ns() - t0;
            } else {
                EVP_Digest(samples, bytes, md, &mdlen, EVP_sha256(), NULL);
                ts[r] = bench_now_ns() - t0;
            }
        }
    }
    /* The ratio of each round's pair, whose two runs are adjacent in time, is steadier on a
     * busy machine than the ratio of the two medians. */
    double *pr = calloc((size_t)rounds, sizeof *pr);
    for (int r = 0; r < rounds; r++)
        pr[r] = ts[r] / td[r];
    double ratio = bench_median(pr, rounds);
    double dn = bench_median(td, rounds), sn = bench_median(ts, rounds);
    printf("digest of %ux%u RGB (%.1f MB): gencache %.0f MB/s, OpenSSL SHA-256 of the same "
           "bytes %.0f MB/s (medians), ratio %.2fx (median of paired rounds)\n",
           w, h, bytes / 1e6, bytes / dn * 1e3, bytes / sn * 1e3, ratio);
    free(pr);
    gencache_image_free(img);
    free(px);
    free(td);
    free(ts);
}

static volatile size_t sink;

__attribute__((target("popcnt"))) static size_t linear_scan(const uint64_t *h, size_t n, uint64_t q,
                                                            unsigned radius)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += (unsigned)__builtin_popcountll(h[i] ^ q) <= radius;
    return c;
}

static void bench_index(int rounds)
{
    enum { N = 1000000, QUERIES = 1000 };
    unsigned radius = 8;
    uint64_t *hashes = malloc(sizeof *hashes * N);
    gencache_hash_index *idx;
    if (gencache_hash_index_new(&idx) != 0)
        exit(1);
    double t0 = bench_now_ns();
    for (size_t i = 0; i < N; i++) {
        hashes[i] = rnd();
        gencache_hash_index_insert(idx, hashes[i], i);
    }
    double build = bench_now_ns() - t0;
    /* Queries: half near a stored hash (1-6 bits flipped), half random. */
    uint64_t *q = malloc(sizeof *q * QUERIES);
    for (int i = 0; i < QUERIES; i++) {
        q[i] = hashes[rnd() % N];
        if (i % 2)
            q[i] = rnd();
        else
            for (unsigned b = 0; b < 1 + rnd() % 6; b++)
                q[i] ^= 1ull << (rnd() % 64);
    }
    double *ti = calloc(QUERIES, sizeof *ti), *tl = calloc((size_t)rounds, sizeof *tl);
    gencache_hash_hit hits[64];
    size_t count, total_hits = 0;
    for (int i = 0; i < QUERIES; i++) {
        double s = bench_now_ns();
        gencache_hash_index_query(idx, q[i], radius, hits, 64, &count);
        ti[i] = bench_now_ns() - s;
        total_hits += count;
    }
    /* The linear scan: one popcount per stored hash (the POPCNT instruction, as the index). */
    size_t scan_hits = 0;
    __builtin_cpu_init();
    int popcnt = __builtin_cpu_supports("popcnt");
    for (int r = 0; r < rounds; r++) {
        uint64_t qq = q[r % QUERIES];
        double s = bench_now_ns();
        size_t c = popcnt ? linear_scan(hashes, N, qq, radius) : 0;
        tl[r] = bench_now_ns() - s;
        scan_hits += c;
    }
    double qi = bench_median(ti, QUERIES), ql = bench_median(tl, rounds);
    printf("near-duplicate query, radius %u over %d hashes: index %.1f us median, linear "
           "popcount scan %.1f us, ratio %.0fx (index built in %.2f s, %zu hits in %d "
           "queries)\n",
           radius, N, qi / 1e3, ql / 1e3, ql / qi, build / 1e9, total_hits, QUERIES);
    sink = scan_hits;
    gencache_hash_index_free(idx);
    free(hashes);
    free(q);
    free(ti);
    free(tl);
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 31;
    if (rounds < 3)
        rounds = 3;
    bench_phash(rounds);
    bench_digest(rounds, 1024, 1024);
    bench_digest(rounds > 11 ? 11 : rounds, 4096, 4096);
    bench_index(rounds);
    return 0;
}
