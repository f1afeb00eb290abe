/*
 * ann.cpp: the approximate nearest-neighbour graph of the trajectory index (ann.h), a shim over
 * hnswlib's HNSW (Debian's libhnswlib-dev, header-only). hnswlib is given its own "space": each
 * vector is stored as float16 (half the bytes of float32, dot products within about 1e-3 of the
 * exact ones) and compared by one minus the inner product, with an AVX2/F16C loop chosen at run
 * time, as the default build targets baseline x86-64. The caller's node numbers are hnswlib's
 * labels, so putting a removed node again takes hnswlib's update path and reuses its place.
 * No exception leaves this file.
 */
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>

/* hnswlib's own SIMD distances are not used (the space below brings its own), and its
 * prefetches read one link past the end of a node's upper-layer list, which AddressSanitizer
 * rightly reports: both are turned off. */
#define NO_MANUAL_VECTORIZATION
#include <hnswlib/hnswlib.h>

#include "ann.h"
#include "gencache.h"

/* IEEE binary16 from binary32, rounding to nearest even; inputs are components of unit vectors,
 * so infinities and NaNs do not occur (they are mapped like any overflow). */
extern "C" uint16_t gencache__ann_half_from_float(float f)
{
    uint32_t x;
    std::memcpy(&x, &f, sizeof x);
    uint32_t sign = (x >> 16) & 0x8000u, mag = x & 0x7fffffffu;
    if (mag >= 0x477ff000u) /* rounds to 65520 or more: the largest half */
        return (uint16_t)(sign | 0x7bffu);
    if (mag < 0x38800000u) { /* below 2^-14: subnormal half or zero */
        if (mag < 0x33000000u)
            return (uint16_t)sign;
        uint32_t mant = (mag & 0x7fffffu) | 0x800000u;
        int shift = 126 - (int)(mag >> 23); /* 14 to 24 */
        uint32_t h = mant >> shift, rest = mant & ((1u << shift) - 1), halfway = 1u << (shift - 1);
        if (rest > halfway || (rest == halfway && (h & 1)))
            h++;
        return (uint16_t)(sign | h);
    }
    uint32_t h = ((mag - 0x38000000u) >> 13), rest = mag & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1)))
        h++;
    return (uint16_t)(sign | h);
}

extern "C" float gencache__ann_float_from_half(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
    uint32_t x;
    if (exp == 0) {
        if (mant == 0) {
            x = sign;
        } else { /* subnormal: normalize */
            int e = -1;
            do {
                mant <<= 1;
                e++;
            } while (!(mant & 0x400u));
            x = sign | ((uint32_t)(127 - 15 - e) << 23) | ((mant & 0x3ffu) << 13);
        }
    } else if (exp == 31) {
        x = sign | 0x7f800000u | (mant << 13);
    } else {
        x = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    }
    float f;
    std::memcpy(&f, &x, sizeof f);
    return f;
}

namespace
{

/* Set by tests: graphs made from now on use the portable loops even where F16C is present. */
std::atomic<bool> force_portable{false};

float distance_portable(const void *a, const void *b, const void *param)
{
    const uint16_t *x = static_cast<const uint16_t *>(a), *y = static_cast<const uint16_t *>(b);
    size_t dim = *static_cast<const size_t *>(param);
    float s = 0;
    for (size_t i = 0; i < dim; i++)
        s += gencache__ann_float_from_half(x[i]) * gencache__ann_float_from_half(y[i]);
    return 1.0f - s;
}

void encode_portable(const float *in, uint16_t *out, size_t dim)
{
    for (size_t i = 0; i < dim; i++)
        out[i] = gencache__ann_half_from_float(in[i]);
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <immintrin.h>
#define HAVE_F16C_PATH 1

__attribute__((target("avx2,fma,f16c"))) float distance_f16c(const void *a, const void *b,
                                                             const void *param)
{
    const uint16_t *x = static_cast<const uint16_t *>(a), *y = static_cast<const uint16_t *>(b);
    size_t dim = *static_cast<const size_t *>(param), i = 0;
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    for (; i + 16 <= dim; i += 16) {
        __m256 x0 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i *>(x + i)));
        __m256 y0 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i *>(y + i)));
        __m256 x1 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i *>(x + i + 8)));
        __m256 y1 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i *>(y + i + 8)));
        s0 = _mm256_fmadd_ps(x0, y0, s0);
        s1 = _mm256_fmadd_ps(x1, y1, s1);
    }
    for (; i + 8 <= dim; i += 8) {
        __m256 x0 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i *>(x + i)));
        __m256 y0 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i *>(y + i)));
        s0 = _mm256_fmadd_ps(x0, y0, s0);
    }
    __m256 s = _mm256_add_ps(s0, s1);
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    float r = _mm_cvtss_f32(h);
    for (; i < dim; i++)
        r += _cvtsh_ss(x[i]) * _cvtsh_ss(y[i]);
    return 1.0f - r;
}

__attribute__((target("avx2,f16c"))) void encode_f16c(const float *in, uint16_t *out, size_t dim)
{
    size_t i = 0;
    for (; i + 8 <= dim; i += 8)
        _mm_storeu_si128(reinterpret_cast<__m128i *>(out + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(in + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < dim; i++)
        out[i] = _cvtss_sh(in[i], _MM_FROUND_TO_NEAREST_INT);
}
#endif

typedef void (*encode_fn)(const float *, uint16_t *, size_t);

#ifdef HAVE_F16C_PATH
/* F16C from CPUID leaf 1 (clang's __builtin_cpu_supports() does not know "f16c"). */
static bool cpu_has_f16c()
{
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C) != 0;
}
#endif

/* float16 vectors compared by 1 - inner product. */
class half_space : public hnswlib::SpaceInterface<float>
{
  public:
    explicit half_space(size_t dim) : dim_(dim), dist_(distance_portable), enc_(encode_portable)
    {
#ifdef HAVE_F16C_PATH
        if (!force_portable && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
            cpu_has_f16c()) {
            dist_ = distance_f16c;
            enc_ = encode_f16c;
        }
#endif
    }
    size_t get_data_size() override
    {
        return dim_ * sizeof(uint16_t);
    }
    hnswlib::DISTFUNC<float> get_dist_func() override
    {
        return dist_;
    }
    void *get_dist_func_param() override
    {
        return &dim_;
    }
    void encode(const float *in, uint16_t *out) const
    {
        enc_(in, out, dim_);
    }

  private:
    size_t dim_;
    hnswlib::DISTFUNC<float> dist_;
    encode_fn enc_;
};

typedef hnswlib::HierarchicalNSW<float> graph;

} // namespace

struct gencache__ann {
    half_space space;
    graph *g;
    size_t dim;
    size_t ef_search;
    explicit gencache__ann(size_t d) : space(d), g(nullptr), dim(d), ef_search(0) {}
};

extern "C" int gencache__ann_new(uint32_t dim, uint32_t m, uint32_t ef_construction,
                                 uint32_t ef_search, size_t capacity, gencache__ann **out)
{
    *out = nullptr;
    if (dim == 0 || m == 0)
        return GENCACHE_EINVAL;
    gencache__ann *a = new (std::nothrow) gencache__ann(dim);
    if (!a)
        return GENCACHE_ENOMEM;
    try {
        a->g = new graph(&a->space, capacity ? capacity : 16, m, ef_construction);
        a->g->setEf(ef_search);
    } catch (...) {
        delete a;
        return GENCACHE_ENOMEM;
    }
    a->ef_search = ef_search;
    *out = a;
    return GENCACHE_OK;
}

extern "C" void gencache__ann_free(gencache__ann *a)
{
    if (!a)
        return;
    delete a->g;
    delete a;
}

/* vec as the graph stores it, in a new buffer (std::free it); NULL when out of memory. */
static uint16_t *encoded(const gencache__ann *a, const float *vec)
{
    uint16_t *h = static_cast<uint16_t *>(std::malloc(a->dim * sizeof(uint16_t)));
    if (h)
        a->space.encode(vec, h);
    return h;
}

extern "C" int gencache__ann_put(gencache__ann *a, uint32_t node, const float *vec)
{
    uint16_t *h = encoded(a, vec);
    if (!h)
        return GENCACHE_ENOMEM;
    int rc = GENCACHE_OK;
    try {
        bool known = a->g->label_lookup_.count(node) != 0;
        if (!known && a->g->cur_element_count >= a->g->max_elements_)
            a->g->resizeIndex(a->g->max_elements_ * 2);
        a->g->addPoint(h, node);
    } catch (...) {
        rc = GENCACHE_ENOMEM;
    }
    std::free(h);
    return rc;
}

extern "C" int gencache__ann_put_many(gencache__ann *a, const uint32_t *nodes, const float *vecs,
                                      size_t count)
{
    /* One thread: hnswlib 0.6.2's concurrent inserts share its level generator unlocked and
     * lock nodes in an order ThreadSanitizer reports as a potential deadlock. */
    uint16_t *h = static_cast<uint16_t *>(std::malloc(a->dim * sizeof(uint16_t)));
    if (!h)
        return GENCACHE_ENOMEM;
    int rc = GENCACHE_OK;
    try {
        size_t need = a->g->cur_element_count + count;
        if (need > a->g->max_elements_)
            a->g->resizeIndex(need);
        for (size_t i = 0; i < count; i++) {
            a->space.encode(vecs + i * a->dim, h);
            a->g->addPoint(h, nodes[i]);
        }
    } catch (...) {
        rc = GENCACHE_ENOMEM;
    }
    std::free(h);
    return rc;
}

extern "C" void gencache__ann_remove(gencache__ann *a, uint32_t node)
{
    auto it = a->g->label_lookup_.find(node);
    if (it != a->g->label_lookup_.end() && !a->g->isMarkedDeleted(it->second))
        a->g->markDeletedInternal(it->second);
}

extern "C" int gencache__ann_search(gencache__ann *a, const float *query, size_t k, uint32_t *nodes,
                                    float *sims, size_t *n)
{
    *n = 0;
    uint16_t *h = encoded(a, query);
    if (!h)
        return GENCACHE_ENOMEM;
    int rc = GENCACHE_OK;
    try {
        auto found = a->g->searchKnn(h, k);
        /* A max-heap by distance: the farthest comes out first. */
        size_t cnt = found.size();
        for (size_t i = cnt; i-- > 0;) {
            nodes[i] = static_cast<uint32_t>(found.top().second);
            sims[i] = 1.0f - found.top().first;
            found.pop();
        }
        *n = cnt;
    } catch (...) {
        rc = GENCACHE_ENOMEM;
    }
    std::free(h);
    return rc;
}

extern "C" void gencache__ann_force_portable(bool on)
{
    force_portable = on;
}

extern "C" void gencache__ann_set_ef(gencache__ann *a, uint32_t ef_search)
{
    a->g->setEf(ef_search);
    a->ef_search = ef_search;
}

extern "C" size_t gencache__ann_bytes(const gencache__ann *a)
{
    const graph *g = a->g;
    size_t bytes = g->max_elements_ * (g->size_data_per_element_ + sizeof(void *) + sizeof(int) +
                                       sizeof(std::mutex) + 2 * sizeof(unsigned short));
    bytes += graph::max_update_element_locks * sizeof(std::mutex);
    /* Upper layers: about one node in M has them, m links each per level. */
    for (size_t i = 0; i < g->cur_element_count; i++)
        if (g->element_levels_[i] > 0)
            bytes += g->size_links_per_element_ * (size_t)g->element_levels_[i];
    bytes += g->label_lookup_.size() *
             (sizeof(hnswlib::labeltype) + sizeof(hnswlib::tableint) + 2 * sizeof(void *));
    return bytes;
}
