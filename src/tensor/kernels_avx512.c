/*
 * kernels_avx512.c: the codec kernels with AVX-512 (F and BW), chosen at run time when the CPU
 * has them. They do what kernels_avx2.c does at twice the width, with their own narrowing in the
 * quantization loops (by VBMI's byte permute where the CPU has it) and large inputs read as two
 * streams, and give bit-for-bit the results of kernels_scalar.c: the same clamps around the same
 * round-half-to-even conversions, quantization's exact products rounded once, and the same
 * scalar code for the tail elements that do not fill a vector. bf16 is rounded with integer
 * operations, not VCVTNEPS2BF16, which flushes subnormals to zero.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "tensor/tensor.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl")))
#define RNE    (_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)

AVX512 static int w_f32_to_f16(uint16_t *dst, const float *src, size_t n)
{
    const __m512i expm = _mm512_set1_epi32(0x7F800000);
    const __m512 hi = _mm512_set1_ps(GENCACHE__F16_MAX), lo = _mm512_set1_ps(-GENCACHE__F16_MAX);
    __mmask16 bad = 0;
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 x = _mm512_loadu_ps(src + i);
        __m512i e = _mm512_and_si512(_mm512_castps_si512(x), expm);
        bad |= _mm512_cmpeq_epi32_mask(e, expm);
        x = _mm512_min_ps(_mm512_max_ps(x, lo), hi);
        _mm256_storeu_si256((__m256i *)(dst + i), _mm512_cvtps_ph(x, RNE));
    }
    int r = bad != 0;
    for (; i < n; i++) {
        r |= !isfinite(src[i]);
        dst[i] = gencache__f32_to_f16_one(src[i]);
    }
    return r;
}

/* Rounds 16 finite f32 bit patterns to bf16, saturating, and narrows them to 16 uint16. */
AVX512 static inline __m256i bf16_round16(__m512i b)
{
    const __m512i one = _mm512_set1_epi32(1), bias = _mm512_set1_epi32(0x7FFF);
    const __m512i expm = _mm512_set1_epi32(0x7F80), signm = _mm512_set1_epi32(0x8000);
    const __m512i maxv = _mm512_set1_epi32((int)GENCACHE__BF16_MAX_BITS);
    __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(b, 16), one);
    __m512i r = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(b, bias), lsb), 16);
    __mmask16 inf = _mm512_cmpeq_epi32_mask(_mm512_and_si512(r, expm), expm);
    __m512i sat = _mm512_or_si512(_mm512_and_si512(r, signm), maxv);
    return _mm512_cvtepi32_epi16(_mm512_mask_blend_epi32(inf, r, sat));
}

AVX512 static int w_f32_to_bf16(uint16_t *dst, const float *src, size_t n)
{
    const __m512i expm = _mm512_set1_epi32(0x7F800000);
    __mmask16 bad = 0;
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512i b = _mm512_loadu_si512((const void *)(src + i));
        bad |= _mm512_cmpeq_epi32_mask(_mm512_and_si512(b, expm), expm);
        _mm256_storeu_si256((__m256i *)(dst + i), bf16_round16(b));
    }
    int r = bad != 0;
    for (; i < n; i++) {
        r |= !isfinite(src[i]);
        dst[i] = gencache__f32_to_bf16_one(src[i]);
    }
    return r;
}

AVX512 static inline __m512 load_f16x16(const uint16_t *src)
{
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)src));
}

AVX512 static inline __m512 load_bf16x16(const uint16_t *src)
{
    __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)src));
    return _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
}

/* Elements to handle one at a time before dst reaches a 64-byte boundary (at most n): the vector
 * stores that follow then never split a cache line. Without this, the widening kernels, which
 * store 64 bytes per step into a destination malloc aligned to 16, measured slower than AVX2. */
static inline size_t head_to_line(const void *dst, size_t elem, size_t n)
{
    size_t h = ((64 - ((uintptr_t)dst & 63)) & 63) / elem;
    return h < n ? h : n;
}

AVX512 static void w_f16_to_f32(float *dst, const uint16_t *src, size_t n)
{
    size_t i = 0, head = head_to_line(dst, sizeof *dst, n);
    for (; i < head; i++)
        dst[i] = gencache__f16_to_f32_one(src[i]);
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(dst + i, load_f16x16(src + i));
    for (; i < n; i++)
        dst[i] = gencache__f16_to_f32_one(src[i]);
}

AVX512 static void w_bf16_to_f32(float *dst, const uint16_t *src, size_t n)
{
    size_t i = 0, head = head_to_line(dst, sizeof *dst, n);
    for (; i < head; i++)
        dst[i] = gencache__bf16_to_f32_one(src[i]);
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(dst + i, load_bf16x16(src + i));
    for (; i < n; i++)
        dst[i] = gencache__bf16_to_f32_one(src[i]);
}

/* The body of the maxima of |x|: absm clears the sign bits, W elements fill a vector (one cache
 * line), and four independent maxima m0-m3 keep the loop off the latency of one. A large input
 * is read as two streams at once, its halves, with software prefetches: one core reading one
 * stream from DRAM keeps too few lines in flight, and two measured 1.3x the bandwidth of one
 * here (docs/BENCHMARKS.md). Leaves the maximum of the first i elements in m0. */
#define AMAX_LOOP(MAX, W)                                                                          \
    if (n * sizeof *src >= GENCACHE__PREFETCH_MIN) {                                               \
        size_t half = n / (4 * (W)) * (2 * (W));                                                   \
        const __typeof__(*src) *hi = src + half;                                                   \
        for (; i < half; i += 2 * (W)) {                                                           \
            gencache__prefetch(src + i);                                                           \
            gencache__prefetch(src + i + (W));                                                     \
            gencache__prefetch(hi + i);                                                            \
            gencache__prefetch(hi + i + (W));                                                      \
            m0 = MAX(m0, _mm512_and_si512(_mm512_loadu_si512(src + i), absm));                     \
            m1 = MAX(m1, _mm512_and_si512(_mm512_loadu_si512(src + i + (W)), absm));               \
            m2 = MAX(m2, _mm512_and_si512(_mm512_loadu_si512(hi + i), absm));                      \
            m3 = MAX(m3, _mm512_and_si512(_mm512_loadu_si512(hi + i + (W)), absm));                \
        }                                                                                          \
        i = 2 * half;                                                                              \
    }                                                                                              \
    for (; i + 4 * (W) <= n; i += 4 * (W)) {                                                       \
        m0 = MAX(m0, _mm512_and_si512(_mm512_loadu_si512(src + i), absm));                         \
        m1 = MAX(m1, _mm512_and_si512(_mm512_loadu_si512(src + i + (W)), absm));                   \
        m2 = MAX(m2, _mm512_and_si512(_mm512_loadu_si512(src + i + 2 * (W)), absm));               \
        m3 = MAX(m3, _mm512_and_si512(_mm512_loadu_si512(src + i + 3 * (W)), absm));               \
    }                                                                                              \
    for (; i + (W) <= n; i += (W))                                                                 \
        m0 = MAX(m0, _mm512_and_si512(_mm512_loadu_si512(src + i), absm));                         \
    m0 = MAX(MAX(m0, m1), MAX(m2, m3));

AVX512 static int w_amax_f32(const float *src, size_t n, float *out)
{
    const __m512i absm = _mm512_set1_epi32(0x7FFFFFFF);
    __m512i m0 = _mm512_setzero_si512(), m1 = m0, m2 = m0, m3 = m0;
    size_t i = 0;
    AMAX_LOOP(_mm512_max_epu32, 16)
    __m256i h = _mm256_max_epu32(_mm512_castsi512_si256(m0), _mm512_extracti64x4_epi64(m0, 1));
    __m128i x = _mm_max_epu32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
    x = _mm_max_epu32(x, _mm_shuffle_epi32(x, 0x4E));
    x = _mm_max_epu32(x, _mm_shuffle_epi32(x, 0xB1));
    uint32_t m = (uint32_t)_mm_cvtsi128_si32(x);
    for (; i < n; i++) {
        uint32_t a;
        memcpy(&a, src + i, sizeof a);
        a &= 0x7FFFFFFFu;
        m = a > m ? a : m;
    }
    memcpy(out, &m, sizeof m);
    return m >= 0x7F800000u;
}

/* The largest of 32 uint16 lanes. */
AVX512 static inline uint16_t max_u16x32(__m512i m)
{
    __m256i h = _mm256_max_epu16(_mm512_castsi512_si256(m), _mm512_extracti64x4_epi64(m, 1));
    __m128i x = _mm_max_epu16(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
    /* PHMINPOSUW finds the smallest: of the complements, whose smallest is the largest. */
    x = _mm_minpos_epu16(_mm_xor_si128(x, _mm_set1_epi16(-1)));
    return (uint16_t)~_mm_cvtsi128_si32(x);
}

AVX512 static uint16_t amax16(const uint16_t *src, size_t n)
{
    const __m512i absm = _mm512_set1_epi16(0x7FFF);
    __m512i m0 = _mm512_setzero_si512(), m1 = m0, m2 = m0, m3 = m0;
    size_t i = 0;
    AMAX_LOOP(_mm512_max_epu16, 32)
    uint16_t m = max_u16x32(m0);
    for (; i < n; i++) {
        uint16_t a = src[i] & 0x7FFFu;
        m = a > m ? a : m;
    }
    return m;
}

AVX512 static int w_amax_f16(const uint16_t *src, size_t n, float *out)
{
    uint16_t m = amax16(src, n);
    *out = gencache__f16_to_f32_one(m);
    return m >= 0x7C00u;
}

AVX512 static int w_amax_bf16(const uint16_t *src, size_t n, float *out)
{
    uint16_t m = amax16(src, n);
    *out = gencache__bf16_to_f32_one(m);
    return m >= 0x7F80u;
}

#define VBMI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vbmi")))

/* 1.5 * 2^23, whose ulp is 1: added to a product of magnitude below 2^22 by one fused
 * multiply-add, it leaves the product rounded once to an integer, and that integer sits in the
 * sum's low bits, two's complement around QMAGIC_BITS. */
#define QMAGIC      12582912.0f
#define QMAGIC_BITS 0x4B400000

/* 16 values -> 16 sums x * inv + QMAGIC: the exact product rounded once, half to even
 * (embedded rounding, whatever MXCSR says). With |x * inv| < 127.5, as the kernels' contract
 * says, the low byte of each dword is the int8 result. */
AVX512 static inline __m512i q16(__m512 x, __m512 inv)
{
    return _mm512_castps_si512(_mm512_fmadd_round_ps(x, inv, _mm512_set1_ps(QMAGIC), RNE));
}

/* Four vectors of q16 sums -> 64 int8 in order, with AVX-512 BW: the integers taken out of the
 * sums and narrowed by two VPACKSSDW and a VPACKSSWB, which work within 128-bit lanes, so lane
 * L comes out as the dwords a[4L..4L+3] b[..] c[..] d[..] and one VPERMD puts them in order.
 * Cheaper than a VPMOVDB per 16 elements (two uops on the shuffle port). */
AVX512 static inline __m512i narrow64_bw(__m512i a, __m512i b, __m512i c, __m512i d)
{
    const __m512i idx = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    const __m512i m = _mm512_set1_epi32(QMAGIC_BITS);
    __m512i ab = _mm512_packs_epi32(_mm512_sub_epi32(a, m), _mm512_sub_epi32(b, m));
    __m512i cd = _mm512_packs_epi32(_mm512_sub_epi32(c, m), _mm512_sub_epi32(d, m));
    return _mm512_permutexvar_epi32(idx, _mm512_packs_epi16(ab, cd));
}

/* The same with AVX-512 VBMI: VPERMB takes the low byte of each dword straight from the sums,
 * one permute per vector into its quarter of the result, and nothing else. */
VBMI static inline __m512i narrow64_vbmi(__m512i a, __m512i b, __m512i c, __m512i d)
{
    /* Byte j of each quarter takes byte 4 * j of the source: the low byte of its dword j. */
    const __m512i idx = _mm512_set4_epi32(0x3C383430, 0x2C282420, 0x1C181410, 0x0C080400);
    __m512i r = _mm512_permutexvar_epi8(idx, a);
    r = _mm512_mask_permutexvar_epi8(r, 0x00000000FFFF0000ull, idx, b);
    r = _mm512_mask_permutexvar_epi8(r, 0x0000FFFF00000000ull, idx, c);
    return _mm512_mask_permutexvar_epi8(r, 0xFFFF000000000000ull, idx, d);
}

/* 16 values -> 16 int8, for the last elements that do not fill 64. */
AVX512 static inline __m128i q16_i8(__m512 x, __m512 inv)
{
    return _mm512_cvtepi32_epi8(_mm512_sub_epi32(q16(x, inv), _mm512_set1_epi32(QMAGIC_BITS)));
}

#define Q64(NARROW, LOAD, p, vi)                                                                   \
    NARROW(q16(LOAD(p), vi), q16(LOAD((p) + 16), vi), q16(LOAD((p) + 32), vi),                     \
           q16(LOAD((p) + 48), vi))

/* Outputs at least this large are written with non-temporal stores, as in kernels_avx2.c: they
 * would not stay in the cache anyway, and streaming saves reading each destination line first. */
#define STREAM_MIN GENCACHE__LARGE_BLOCK

/* The quantization loop for one source format: LOAD(p) gives 16 f32 from element pointer p,
 * ONE(x) quantizes one element in scalar code (for the unaligned head and the tail), NARROW
 * turns four vectors of q16 sums into 64 int8. */
#define QUANT_LOOP(LOAD, ONE, NARROW)                                                              \
    const __m512 vi = _mm512_set1_ps(inv);                                                         \
    size_t i = 0;                                                                                  \
    if (n >= STREAM_MIN) {                                                                         \
        size_t head = head_to_line(dst, 1, n);                                                     \
        for (; i < head; i++)                                                                      \
            dst[i] = ONE(src[i]);                                                                  \
        /* Two halves at once, as in AMAX_LOOP: two streams read faster than one. */               \
        size_t half = (n - i) / 128 * 64;                                                          \
        const __typeof__(*src) *sa = src + i, *sb = sa + half;                                     \
        int8_t *da = dst + i, *db = da + half;                                                     \
        for (size_t j = 0; j < half; j += 64) {                                                    \
            for (size_t b = 0; b < 64 * sizeof *src; b += 64) {                                    \
                gencache__prefetch((const char *)(sa + j) + b);                                    \
                gencache__prefetch((const char *)(sb + j) + b);                                    \
            }                                                                                      \
            _mm512_stream_si512((void *)(da + j), Q64(NARROW, LOAD, sa + j, vi));                  \
            _mm512_stream_si512((void *)(db + j), Q64(NARROW, LOAD, sb + j, vi));                  \
        }                                                                                          \
        for (i += 2 * half; i + 64 <= n; i += 64)                                                  \
            _mm512_stream_si512((void *)(dst + i), Q64(NARROW, LOAD, src + i, vi));                \
        _mm_sfence();                                                                              \
    }                                                                                              \
    for (; i + 64 <= n; i += 64)                                                                   \
        _mm512_storeu_si512((void *)(dst + i), Q64(NARROW, LOAD, src + i, vi));                    \
    for (; i + 16 <= n; i += 16)                                                                   \
        _mm_storeu_si128((__m128i *)(dst + i), q16_i8(LOAD(src + i), vi));                         \
    for (; i < n; i++)                                                                             \
        dst[i] = ONE(src[i]);

/* One group of `group` f16 elements (a multiple of 32) quantized with vi. */
#define QUANT_GROUP(NARROW, q, x, group, vi)                                                       \
    do {                                                                                           \
        size_t i_ = 0;                                                                             \
        for (; i_ + 64 <= (group); i_ += 64)                                                       \
            _mm512_storeu_si512((void *)((q) + i_), Q64(NARROW, load_f16x16, (x) + i_, vi));       \
        for (; i_ < (group); i_ += 16)                                                             \
            _mm_storeu_si128((__m128i *)((q) + i_), q16_i8(load_f16x16((x) + i_), vi));            \
    } while (0)

/* Per-group quantization in one pass: each group's maximum, scale and inverse, then the group,
 * while it is still in L1. */
#define QUANT_GROUPS_F16(NARROW)                                                                   \
    const __m512i absm = _mm512_set1_epi16(0x7FFF);                                                \
    const int pf = groups * group * sizeof *src >= GENCACHE__PREFETCH_MIN;                         \
    for (size_t g = 0; g < groups; g++) {                                                          \
        const uint16_t *x = src + g * group;                                                       \
        int8_t *q = dst + g * group;                                                               \
        __m512i m = _mm512_setzero_si512();                                                        \
        for (size_t i = 0; i < group; i += 32) {                                                   \
            if (pf)                                                                                \
                gencache__prefetch(x + i);                                                         \
            m = _mm512_max_epu16(                                                                  \
                m, _mm512_and_si512(_mm512_loadu_si512((const void *)(x + i)), absm));             \
        }                                                                                          \
        uint16_t a = max_u16x32(m);                                                                \
        if (a >= 0x7C00u)                                                                          \
            return 1;                                                                              \
        float scale, inv;                                                                          \
        gencache__quant_scale(gencache__f16_to_f32_one(a), &scale, &inv);                          \
        memcpy(scales + 4 * g, &scale, sizeof scale); /* x86 is little-endian */                   \
        QUANT_GROUP(NARROW, q, x, group, _mm512_set1_ps(inv));                                     \
    }                                                                                              \
    return 0;

/* The four quantization kernels of one table: TARGET their target attribute, P their prefix,
 * NARROW the narrowing they use. */
/* clang-format off */
#define QUANT_KERNELS(TARGET, P, NARROW)                                                           \
    TARGET static void P##_quant_f32(int8_t *dst, const float *src, size_t n, float inv)           \
    {                                                                                              \
        QUANT_LOOP(_mm512_loadu_ps, GENCACHE__QUANT_ONE_F32, NARROW)                               \
    }                                                                                              \
    TARGET static void P##_quant_f16(int8_t *dst, const uint16_t *src, size_t n, float inv)        \
    {                                                                                              \
        QUANT_LOOP(load_f16x16, GENCACHE__QUANT_ONE_F16, NARROW)                                   \
    }                                                                                              \
    TARGET static void P##_quant_bf16(int8_t *dst, const uint16_t *src, size_t n, float inv)       \
    {                                                                                              \
        QUANT_LOOP(load_bf16x16, GENCACHE__QUANT_ONE_BF16, NARROW)                                 \
    }                                                                                              \
    TARGET static int P##_quant_groups_f16(int8_t *dst, unsigned char *scales,                     \
                                           const uint16_t *src, size_t groups, size_t group)       \
    {                                                                                              \
        QUANT_GROUPS_F16(NARROW)                                                                   \
    }
/* clang-format on */

QUANT_KERNELS(AVX512, w, narrow64_bw)
QUANT_KERNELS(VBMI, b, narrow64_vbmi)

/* 16 int8 -> 16 f32 products q * scale, clamped to [lo, hi]. */
AVX512 static inline __m512 dq16(const int8_t *src, __m512 scale, __m512 lo, __m512 hi)
{
    __m512i w = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)src));
    __m512 y = _mm512_mul_ps(_mm512_cvtepi32_ps(w), scale);
    return _mm512_min_ps(_mm512_max_ps(y, lo), hi);
}

AVX512 static void w_dequant_f32(float *dst, const int8_t *src, size_t n, float scale)
{
    const __m512 vs = _mm512_set1_ps(scale);
    const __m512 hi = _mm512_set1_ps(FLT_MAX), lo = _mm512_set1_ps(-FLT_MAX);
    size_t i = 0, head = head_to_line(dst, sizeof *dst, n);
    for (; i < head; i++)
        dst[i] = gencache__dequant_clamp((float)src[i] * scale);
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(dst + i, dq16(src + i, vs, lo, hi));
    for (; i < n; i++)
        dst[i] = gencache__dequant_clamp((float)src[i] * scale);
}

AVX512 static void w_dequant_f16(uint16_t *dst, const int8_t *src, size_t n, float scale)
{
    const __m512 vs = _mm512_set1_ps(scale);
    const __m512 hi = _mm512_set1_ps(GENCACHE__F16_MAX), lo = _mm512_set1_ps(-GENCACHE__F16_MAX);
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256((__m256i *)(dst + i), _mm512_cvtps_ph(dq16(src + i, vs, lo, hi), RNE));
    for (; i < n; i++)
        dst[i] = gencache__f32_to_f16_one(gencache__dequant_clamp((float)src[i] * scale));
}

AVX512 static void w_dequant_bf16(uint16_t *dst, const int8_t *src, size_t n, float scale)
{
    const __m512 vs = _mm512_set1_ps(scale);
    const __m512 hi = _mm512_set1_ps(FLT_MAX), lo = _mm512_set1_ps(-FLT_MAX);
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256((__m256i *)(dst + i),
                            bf16_round16(_mm512_castps_si512(dq16(src + i, vs, lo, hi))));
    for (; i < n; i++)
        dst[i] = gencache__f32_to_bf16_one(gencache__dequant_clamp((float)src[i] * scale));
}

/* Every kernel with AVX-512 F and BW (Skylake-SP and later). */
static const gencache__codec_kernels avx512bw_kernels = {
    "avx512bw",   w_f32_to_f16,  w_f32_to_bf16, w_f16_to_f32,   w_bf16_to_f32,
    w_amax_f32,   w_amax_f16,    w_amax_bf16,   w_quant_f32,    w_quant_f16,
    w_quant_bf16, w_dequant_f32, w_dequant_f16, w_dequant_bf16, w_quant_groups_f16,
};

/* The same with the quantization loops narrowed by VBMI's byte permute (Ice Lake, Zen 4). */
static const gencache__codec_kernels avx512_kernels = {
    "avx512",     w_f32_to_f16,  w_f32_to_bf16, w_f16_to_f32,   w_bf16_to_f32,
    w_amax_f32,   w_amax_f16,    w_amax_bf16,   b_quant_f32,    b_quant_f16,
    b_quant_bf16, w_dequant_f32, w_dequant_f16, w_dequant_bf16, b_quant_groups_f16,
};

const gencache__codec_kernels *gencache__codec_kernels_avx512bw(void)
{
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl"))
        return &avx512bw_kernels;
    return NULL;
}

const gencache__codec_kernels *gencache__codec_kernels_avx512(void)
{
    const gencache__codec_kernels *bw = gencache__codec_kernels_avx512bw();
    if (bw && __builtin_cpu_supports("avx512vbmi"))
        return &avx512_kernels;
    return bw;
}

#else

const gencache__codec_kernels *gencache__codec_kernels_avx512bw(void)
{
    return NULL;
}

const gencache__codec_kernels *gencache__codec_kernels_avx512(void)
{
    return NULL;
}

#endif
