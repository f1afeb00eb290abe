/*
 * bench_trajectory_hnsw.cpp: whether an approximate index (HNSW, Debian's header-only
 * libhnswlib-dev) would earn its place in the trajectory index. The same data as
 * bench_trajectory.c: N random unit vectors, queries that are a stored vector plus noise
 * (cosine about 0.9). The baseline, timed in the same run, interleaved, is exact search: every
 * inner product, with the same distance function HNSW uses. Prints the build time, the median
 * and p99 query time of both, the ratio of medians, recall@1 of HNSW against exact, and the
 * memory HNSW holds per vector (resident set growth while building, over N).
 *
 *   bench_trajectory_hnsw [N] [Q] [DIM] [M] [EF_CONSTRUCTION] [EF]
 *                         default 100000, 200, 768, 16, 100, 64
 */
#include <hnswlib/hnswlib.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <unistd.h>
#include <vector>

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd()
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static float gauss()
{
    double s = 0;
    for (int i = 0; i < 4; i++)
        s += (double)(rnd() >> 11) / 9007199254740992.0;
    return (float)((s - 2.0) * 1.7320508);
}

static void unit(float *v, size_t dim)
{
    double ss = 0;
    for (size_t i = 0; i < dim; i++)
        ss += (double)v[i] * v[i];
    float inv = (float)(1.0 / std::sqrt(ss));
    for (size_t i = 0; i < dim; i++)
        v[i] *= inv;
}

static long rss_kib()
{
    FILE *f = std::fopen("/proc/self/statm", "r");
    long pages = 0, res = 0;
    if (f) {
        if (std::fscanf(f, "%ld %ld", &pages, &res) != 2)
            res = 0;
        std::fclose(f);
    }
    return res * (sysconf(_SC_PAGESIZE) / 1024);
}

static double now_us()
{
    using namespace std::chrono;
    return (double)duration_cast<nanoseconds>(steady_clock::now().time_since_epoch()).count() / 1e3;
}

static double pct(std::vector<double> v, double p)
{
    std::sort(v.begin(), v.end());
    size_t i = (size_t)std::ceil(p * (double)v.size());
    return v[i ? i - 1 : 0];
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 100000;
    int q = argc > 2 ? std::atoi(argv[2]) : 200;
    size_t dim = argc > 3 ? std::strtoull(argv[3], nullptr, 10) : 768;
    size_t m = argc > 4 ? std::strtoull(argv[4], nullptr, 10) : 16;
    size_t efc = argc > 5 ? std::strtoull(argv[5], nullptr, 10) : 100;
    size_t ef = argc > 6 ? std::strtoull(argv[6], nullptr, 10) : 64;
    if (!n || q <= 0 || !dim)
        return 2;
    std::vector<float> data(n * dim);
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < dim; k++)
            data[i * dim + k] = gauss();
        unit(&data[i * dim], dim);
    }
    hnswlib::InnerProductSpace space(dim);
    long before = rss_kib();
    double t0 = now_us();
    hnswlib::HierarchicalNSW<float> index(&space, n, m, efc);
    for (size_t i = 0; i < n; i++)
        index.addPoint(&data[i * dim], i);
    double build_s = (now_us() - t0) / 1e6;
    double per_vec = (double)(rss_kib() - before) * 1024.0 / (double)n;
    index.setEf(ef);
    hnswlib::DISTFUNC<float> dist = space.get_dist_func();
    void *param = space.get_dist_func_param();
    std::vector<double> th, te;
    std::vector<float> v(dim);
    int agree = 0;
    for (int j = 0; j < q; j++) {
        size_t src = rnd() % n;
        for (size_t k = 0; k < dim; k++)
            v[k] = data[src * dim + k] + 0.48f / std::sqrt((float)dim) * gauss();
        unit(v.data(), dim);
        double a = now_us();
        size_t best = 0;
        float bd = 1e30f;
        for (size_t i = 0; i < n; i++) {
            float d = dist(v.data(), &data[i * dim], param); /* 1 - inner product */
            if (d < bd) {
                bd = d;
                best = i;
            }
        }
        te.push_back(now_us() - a);
        a = now_us();
        auto res = index.searchKnn(v.data(), 1);
        th.push_back(now_us() - a);
        agree += !res.empty() && res.top().second == best;
    }
    double mh = pct(th, 0.5), me = pct(te, 0.5);
    std::printf("HNSW (hnswlib, M=%zu efConstruction=%zu ef=%zu) against exact search: N=%zu "
                "dim=%zu Q=%d\n",
                m, efc, ef, n, dim, q);
    std::printf("  build: %.1f s; memory per vector: %.0f bytes (the vector included)\n", build_s,
                per_vec);
    std::printf("  HNSW:  median %.1f us  p99 %.1f us\n", mh, pct(th, 0.99));
    std::printf("  exact: median %.1f us  p99 %.1f us\n", me, pct(te, 0.99));
    std::printf("  ratio HNSW/exact (medians): %.4f\n", mh / me);
    std::printf("  recall@1 against exact: %.3f\n", (double)agree / q);
    return 0;
}
