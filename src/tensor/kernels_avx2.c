/*
 * kernels_avx2.c: the codec kernels with AVX2, F16C and FMA, chosen at run time when the CPU
 * has them. Every function gives bit-for-bit the results of kernels_scalar.c: the same clamps
 * before the same round-half-to-even conversions, quantization's exact products rounded once,
 * and the same scalar code for the tail elements that do not fill a vector.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "tensor/tensor.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#include <immintrin.h>

#define AVX2 __attribute__((target("avx2,f16c,fma")))
#define RNE  (_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)

AVX2 static int v_f32_to_f16(uint16_t *dst, const float *src, size_t n)
{
    const __m256i expm = _mm256_set1_epi32(0x7F800000);
    const __m256 hi = _mm256_set1_ps(GENCACHE__F16_MAX), lo = _mm256_set1_ps(-GENCACHE__F16_MAX);
    __m256i bad = _mm256_setzero_si256();
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 x = _mm256_loadu_ps(src + i);
        __m256i e = _mm256_and_si256(_mm256_castps_si256(x), expm);
        bad = _mm256_or_si256(bad, _mm256_cmpeq_epi32(e, expm));
        x = _mm256_min_ps(_mm256_max_ps(x, lo), hi);
        _mm_storeu_si128((__m128i *)(dst + i), _mm256_cvtps_ph(x, RNE));
    }
    int r = !_mm256_testz_si256(bad, bad);
    for (; i < n; i++) {
        float x = src[i];
        r |= !isfinite(x);
        dst[i] = gencache__f32_to_f16_one(x);
    }
    return r;
}

/* Rounds 8 finite f32 bit patterns to bf16 (in the low half of each lane), saturating. */
AVX2 static inline __m256i bf16_round8(__m256i b)
{
    const __m256i one = _mm256_set1_epi32(1), bias = _mm256_set1_epi32(0x7FFF);
    const __m256i expm = _mm256_set1_epi32(0x7F80), signm = _mm256_set1_epi32(0x8000);
    const __m256i maxv = _mm256_set1_epi32((int)GENCACHE__BF16_MAX_BITS);
    __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(b, 16), one);
    __m256i r = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(b, bias), lsb), 16);
    __m256i inf = _mm256_cmpeq_epi32(_mm256_and_si256(r, expm), expm);
    __m256i sat = _mm256_or_si256(_mm256_and_si256(r, signm), maxv);
    return _mm256_blendv_epi8(r, sat, inf);
}

/* Stores the low 16 bits of 8 lanes as 8 consecutive uint16. */
AVX2 static inline void store_u16x8(uint16_t *dst, __m256i r)
{
    __m256i p = _mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0xD8);
    _mm_storeu_si128((__m128i *)dst, _mm256_castsi256_si128(p));
}

AVX2 static int v_f32_to_bf16(uint16_t *dst, const float *src, size_t n)
{
    const __m256i expm = _mm256_set1_epi32(0x7F800000);
    __m256i bad = _mm256_setzero_si256();
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i b = _mm256_loadu_si256((const __m256i *)(src + i));
        bad = _mm256_or_si256(bad, _mm256_cmpeq_epi32(_mm256_and_si256(b, expm), expm));
        store_u16x8(dst + i, bf16_round8(b));
    }
    int r = !_mm256_testz_si256(bad, bad);
    for (; i < n; i++) {
        float x = src[i];
        r |= !isfinite(x);
        dst[i] = gencache__f32_to_bf16_one(x);
    }
    return r;
}

AVX2 static void v_f16_to_f32(float *dst, const uint16_t *src, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
    for (; i < n; i++)
        dst[i] = gencache__f16_to_f32_one(src[i]);
}

AVX2 static inline __m256 load_bf16x8(const uint16_t *src)
{
    __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)src));
    return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}

AVX2 static void v_bf16_to_f32(float *dst, const uint16_t *src, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, load_bf16x8(src + i));
    for (; i < n; i++)
        dst[i] = gencache__bf16_to_f32_one(src[i]);
}

AVX2 static int v_amax_f32(const float *src, size_t n, float *out)
{
    const __m256i absm = _mm256_set1_epi32(0x7FFFFFFF);
    __m256i m0 = _mm256_setzero_si256(), m1 = _mm256_setzero_si256();
    size_t i = 0;
    const int pf = n * sizeof *src >= GENCACHE__PREFETCH_MIN;
    for (; i + 16 <= n; i += 16) {
        if (pf)
            gencache__prefetch(src + i);
        __m256i a = _mm256_loadu_si256((const __m256i *)(src + i));
        __m256i b = _mm256_loadu_si256((const __m256i *)(src + i + 8));
        m0 = _mm256_max_epu32(m0, _mm256_and_si256(a, absm));
        m1 = _mm256_max_epu32(m1, _mm256_and_si256(b, absm));
    }
    /* Horizontal maximum with shuffles: short blocks (groups, KV rows) are common. */
    __m256i m8 = _mm256_max_epu32(m0, m1);
    __m128i m4 = _mm_max_epu32(_mm256_castsi256_si128(m8), _mm256_extracti128_si256(m8, 1));
    m4 = _mm_max_epu32(m4, _mm_shuffle_epi32(m4, 0x4E));
    m4 = _mm_max_epu32(m4, _mm_shuffle_epi32(m4, 0xB1));
    uint32_t m = (uint32_t)_mm_cvtsi128_si32(m4);
    float tail;
    uint32_t tb;
    gencache__codec_kernels_scalar()->amax_f32(src + i, n - i, &tail);
    memcpy(&tb, &tail, sizeof tb);
    m = tb > m ? tb : m;
    memcpy(out, &m, sizeof m);
    return m >= 0x7F800000u;
}

AVX2 static int amax16(const uint16_t *src, size_t n, uint16_t *out)
{
    const __m256i absm = _mm256_set1_epi16(0x7FFF);
    __m256i m0 = _mm256_setzero_si256(), m1 = _mm256_setzero_si256();
    size_t i = 0;
    const int pf = n * sizeof *src >= GENCACHE__PREFETCH_MIN;
    for (; i + 32 <= n; i += 32) {
        if (pf)
            gencache__prefetch(src + i);
        __m256i a = _mm256_loadu_si256((const __m256i *)(src + i));
        __m256i b = _mm256_loadu_si256((const __m256i *)(src + i + 16));
        m0 = _mm256_max_epu16(m0, _mm256_and_si256(a, absm));
        m1 = _mm256_max_epu16(m1, _mm256_and_si256(b, absm));
    }
    /* Horizontal maximum: fold to 8 lanes, then PHMINPOSUW on the complement. */
    __m256i m16 = _mm256_max_epu16(m0, m1);
    __m128i m8 = _mm_max_epu16(_mm256_castsi256_si128(m16), _mm256_extracti128_si256(m16, 1));
    __m128i inv = _mm_minpos_epu16(_mm_xor_si128(m8, _mm_set1_epi16(-1)));
    uint16_t m = (uint16_t) ~(uint16_t)_mm_cvtsi128_si32(inv);
    for (; i < n; i++) {
        uint16_t a = src[i] & 0x7FFFu;
        m = a > m ? a : m;
    }
    *out = m;
    return 0;
}

AVX2 static int v_amax_f16(const uint16_t *src, size_t n, float *out)
{
    uint16_t m;
    amax16(src, n, &m);
    *out = gencache__f16_to_f32_one(m);
    return m >= 0x7C00u;
}

AVX2 static int v_amax_bf16(const uint16_t *src, size_t n, float *out)
{
    uint16_t m;
    amax16(src, n, &m);
    *out = gencache__bf16_to_f32_one(m);
    return m >= 0x7F80u;
}

/* 8 values -> 8 int32: the exact product x * inv rounded once to an integer by a fused
 * multiply-add of 1.5 * 2^23, whose ulp is 1, then taken out of the sum's low bits. The sum
 * rounds as MXCSR says, so the loops run only under round-to-nearest-even (rounds_to_nearest()).
 * The kernels' contract keeps |x * inv| below 127.5. */
AVX2 static inline __m256i q8(__m256 x, __m256 inv)
{
    __m256 y = _mm256_fmadd_ps(x, inv, _mm256_set1_ps(12582912.0f));
    return _mm256_sub_epi32(_mm256_castps_si256(y), _mm256_set1_epi32(0x4B400000));
}

/* Whether MXCSR rounds to nearest (its RC field is 0), as it does unless a program changed it. */
static inline int rounds_to_nearest(void)
{
    return (_mm_getcsr() & 0x6000u) == 0;
}

/* Packs four vectors of 8 int32 in [-127, 127] into 32 int8 in order. packs works within 128-bit
 * lanes, so the dwords come out as a0-3 b0-3 c0-3 d0-3 | a4-7 b4-7 c4-7 d4-7; the permute puts
 * them back in order. */
AVX2 static inline __m256i pack_i8x32(__m256i a, __m256i b, __m256i c, __m256i d)
{
    const __m256i idx = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(a, b), _mm256_packs_epi32(c, d));
    return _mm256_permutevar8x32_epi32(p, idx);
}

/* Outputs at least this large are written with non-temporal stores: they would not stay in the
 * cache anyway, and streaming saves reading each destination line before writing it. */
#define STREAM_MIN GENCACHE__LARGE_BLOCK

/* The quantization loop for one source format: LOAD(p) gives 8 f32 from element pointer p,
 * ONE(x) quantizes one element in scalar code (for the unaligned head and the tail). */
#define QUANT_LOOP(LOAD, ONE)                                                                      \
    const __m256 vi = _mm256_set1_ps(inv);                                                         \
    /* Under another rounding mode the scalar loop at the end does it all. */                      \
    size_t i = 0, vn = rounds_to_nearest() ? n : 0;                                                \
    if (vn >= STREAM_MIN) {                                                                        \
        size_t head = (32 - ((uintptr_t)dst & 31)) & 31;                                           \
        for (; i < head; i++)                                                                      \
            dst[i] = ONE(src[i]);                                                                  \
        for (; i + 32 <= vn; i += 32) {                                                            \
            for (size_t b = 0; b < 32 * sizeof *src; b += 64)                                      \
                gencache__prefetch((const char *)(src + i) + b);                                   \
            _mm256_stream_si256((__m256i *)(dst + i),                                              \
                                pack_i8x32(q8(LOAD(src + i), vi), q8(LOAD(src + i + 8), vi),       \
                                           q8(LOAD(src + i + 16), vi),                             \
                                           q8(LOAD(src + i + 24), vi)));                           \
        }                                                                                          \
        _mm_sfence();                                                                              \
    }                                                                                              \
    for (; i + 32 <= vn; i += 32)                                                                  \
        _mm256_storeu_si256((__m256i *)(dst + i),                                                  \
                            pack_i8x32(q8(LOAD(src + i), vi), q8(LOAD(src + i + 8), vi),           \
                                       q8(LOAD(src + i + 16), vi), q8(LOAD(src + i + 24), vi)));   \
    for (; i < n; i++)                                                                             \
        dst[i] = ONE(src[i]);

AVX2 static inline __m256 load_f16x8(const uint16_t *src)
{
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)src));
}

AVX2 static void v_quant_f32(int8_t *dst, const float *src, size_t n,
                             float inv){QUANT_LOOP(_mm256_loadu_ps, GENCACHE__QUANT_ONE_F32)}

AVX2 static void v_quant_f16(int8_t *dst, const uint16_t *src, size_t n,
                             float inv){QUANT_LOOP(load_f16x8, GENCACHE__QUANT_ONE_F16)}

AVX2 static void v_quant_bf16(int8_t *dst, const uint16_t *src, size_t n,
                              float inv){QUANT_LOOP(load_bf16x8, GENCACHE__QUANT_ONE_BF16)}

/* 8 int8 -> 8 f32 products q * scale. */
AVX2 static inline __m256 dq8(const int8_t *src, __m256 scale)
{
    __m256i w = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)src));
    return _mm256_mul_ps(_mm256_cvtepi32_ps(w), scale);
}

AVX2 static void v_dequant_f32(float *dst, const int8_t *src, size_t n, float scale)
{
    const __m256 vs = _mm256_set1_ps(scale);
    const __m256 hi = _mm256_set1_ps(FLT_MAX), lo = _mm256_set1_ps(-FLT_MAX);
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_min_ps(_mm256_max_ps(dq8(src + i, vs), lo), hi));
    for (; i < n; i++)
        dst[i] = gencache__dequant_clamp((float)src[i] * scale);
}

AVX2 static void v_dequant_f16(uint16_t *dst, const int8_t *src, size_t n, float scale)
{
    const __m256 vs = _mm256_set1_ps(scale);
    const __m256 hi = _mm256_set1_ps(GENCACHE__F16_MAX), lo = _mm256_set1_ps(-GENCACHE__F16_MAX);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 a = _mm256_min_ps(_mm256_max_ps(dq8(src + i, vs), lo), hi);
        __m256 b = _mm256_min_ps(_mm256_max_ps(dq8(src + i + 8, vs), lo), hi);
        __m256i h = _mm256_set_m128i(_mm256_cvtps_ph(b, RNE), _mm256_cvtps_ph(a, RNE));
        _mm256_storeu_si256((__m256i *)(dst + i), h);
    }
    for (; i < n; i++)
        dst[i] = gencache__f32_to_f16_one(gencache__dequant_clamp((float)src[i] * scale));
}

AVX2 static void v_dequant_bf16(uint16_t *dst, const int8_t *src, size_t n, float scale)
{
    const __m256 vs = _mm256_set1_ps(scale);
    const __m256 hi = _mm256_set1_ps(FLT_MAX), lo = _mm256_set1_ps(-FLT_MAX);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 y = _mm256_min_ps(_mm256_max_ps(dq8(src + i, vs), lo), hi);
        store_u16x8(dst + i, bf16_round8(_mm256_castps_si256(y)));
    }
    for (; i < n; i++)
        dst[i] = gencache__f32_to_bf16_one(gencache__dequant_clamp((float)src[i] * scale));
}

static const gencache__codec_kernels avx2_kernels = {
    "avx2",       v_f32_to_f16,  v_f32_to_bf16, v_f16_to_f32,   v_bf16_to_f32,
    v_amax_f32,   v_amax_f16,    v_amax_bf16,   v_quant_f32,    v_quant_f16,
    v_quant_bf16, v_dequant_f32, v_dequant_f16, v_dequant_bf16, NULL,
};

const gencache__codec_kernels *gencache__codec_kernels_avx2(void)
{
    /* F16C and FMA are read from CPUID directly: not every compiler's __builtin_cpu_supports
     * knows F16C. The AVX2 check also covers the operating system's support for the AVX
     * registers. */
    unsigned a, b, c, d;
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2") || !__get_cpuid(1, &a, &b, &c, &d))
        return NULL;
    return (c & bit_F16C) && (c & bit_FMA) ? &avx2_kernels : NULL;
}

#else

const gencache__codec_kernels *gencache__codec_kernels_avx2(void)
{
    return NULL;
}

#endif
