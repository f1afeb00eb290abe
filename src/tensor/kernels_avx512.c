/*
 * kernels_avx512.c: the codec kernels with AVX-512 (F and BW), chosen at run time when the CPU
 * has them. They follow kernels_avx2.c at twice the width and give bit-for-bit the results of
 * kernels_scalar.c: the same clamps before the same round-half-to-even conversions, and the same
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

AVX512 static int w_amax_f32(const float *src, size_t n, float *out)
{
    const __m512i absm = _mm512_set1_epi32(0x7FFFFFFF);
    __m512i m0 = _mm512_setzero_si512();
    size_t i = 0;
    const int pf = n * sizeof *src >= GENCACHE__PREFETCH_MIN;
    for (; i + 16 <= n; i += 16) {
        if (pf)
            gencache__prefetch(src + i);
        m0 = _mm512_max_epu32(m0,
                              _mm512_and_si512(_mm512_loadu_si512((const void *)(src + i)), absm));
    }
    uint32_t m = _mm512_reduce_max_epu32(m0);
    for (; i < n; i++) {
        uint32_t a;
        memcpy(&a, src + i, sizeof a);
        a &= 0x7FFFFFFFu;
        m = a > m ? a : m;
    }
    memcpy(out, &m, sizeof m);
    return m >= 0x7F800000u;
}

AVX512 static uint16_t amax16(const uint16_t *src, size_t n)
{
    const __m512i absm = _mm512_set1_epi16(0x7FFF);
    __m512i m0 = _mm512_setzero_si512();
    size_t i = 0;
    const int pf = n * sizeof *src >= GENCACHE__PREFETCH_MIN;
    for (; i + 32 <= n; i += 32) {
        if (pf)
            gencache__prefetch(src + i);
        m0 = _mm512_max_epu16(m0,
                              _mm512_and_si512(_mm512_loadu_si512((const void *)(src + i)), absm));
    }
    uint16_t lanes[32];
    _mm512_storeu_si512((void *)lanes, m0);
    uint16_t m = 0;
    for (int k = 0; k < 32; k++)
        m = lanes[k] > m ? lanes[k] : m;
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

/* 16 values -> 16 int8: x * inv rounded half to even, clamped to [-127, 127]. */
AVX512 static inline __m128i q16(__m512 x, __m512 inv)
{
    const __m512 hi = _mm512_set1_ps(127.0f), lo = _mm512_set1_ps(-127.0f);
    __m512 v = _mm512_roundscale_ps(_mm512_mul_ps(x, inv), RNE);
    v = _mm512_min_ps(_mm512_max_ps(v, lo), hi);
    return _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(v));
}

/* Four 16-byte quarters as one 64-byte line, for one whole-line non-temporal store. */
AVX512 static inline __m512i line64(__m128i a, __m128i b, __m128i c, __m128i d)
{
    __m512i v = _mm512_inserti32x4(_mm512_castsi128_si512(a), b, 1);
    return _mm512_inserti32x4(_mm512_inserti32x4(v, c, 2), d, 3);
}

/* Outputs at least this large are written with non-temporal stores, as in kernels_avx2.c: they
 * would not stay in the cache anyway, and streaming saves reading each destination line first. */
#define STREAM_MIN GENCACHE__LARGE_BLOCK

/* The quantization loop for one source format: LOAD(p) gives 16 f32 from element pointer p,
 * ONE(x) quantizes one element in scalar code (for the unaligned head and the tail). */
#define QUANT_LOOP(LOAD, ONE)                                                                      \
    const __m512 vi = _mm512_set1_ps(inv);                                                         \
    size_t i = 0;                                                                                  \
    if (n >= STREAM_MIN) {                                                                         \
        size_t head = head_to_line(dst, 1, n);                                                     \
        for (; i < head; i++)                                                                      \
            dst[i] = ONE(src[i]);                                                                  \
        for (; i + 64 <= n; i += 64) {                                                             \
            for (size_t b = 0; b < 64 * sizeof *src; b += 64)                                      \
                gencache__prefetch((const char *)(src + i) + b);                                   \
            _mm512_stream_si512((void *)(dst + i),                                                 \
                                line64(q16(LOAD(src + i), vi), q16(LOAD(src + i + 16), vi),        \
                                       q16(LOAD(src + i + 32), vi), q16(LOAD(src + i + 48), vi))); \
        }                                                                                          \
        _mm_sfence();                                                                              \
    }                                                                                              \
    for (; i + 16 <= n; i += 16)                                                                   \
        _mm_storeu_si128((__m128i *)(dst + i), q16(LOAD(src + i), vi));                            \
    for (; i < n; i++)                                                                             \
        dst[i] = ONE(src[i]);

AVX512 static void w_quant_f32(int8_t *dst, const float *src, size_t n,
                               float inv){QUANT_LOOP(_mm512_loadu_ps, GENCACHE__QUANT_ONE_F32)}

AVX512 static void w_quant_f16(int8_t *dst, const uint16_t *src, size_t n,
                               float inv){QUANT_LOOP(load_f16x16, GENCACHE__QUANT_ONE_F16)}

AVX512 static void w_quant_bf16(int8_t *dst, const uint16_t *src, size_t n,
                                float inv){QUANT_LOOP(load_bf16x16, GENCACHE__QUANT_ONE_BF16)}

/* The largest of 32 uint16 lanes. */
AVX512 static inline uint16_t max_u16x32(__m512i m)
{
    __m256i h = _mm256_max_epu16(_mm512_castsi512_si256(m), _mm512_extracti64x4_epi64(m, 1));
    __m128i x = _mm_max_epu16(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
    /* PHMINPOSUW finds the smallest: of the complements, whose smallest is the largest. */
    x = _mm_minpos_epu16(_mm_xor_si128(x, _mm_set1_epi16(-1)));
    return (uint16_t)~_mm_cvtsi128_si32(x);
}

AVX512 static int w_quant_groups_f16(int8_t *dst, unsigned char *scales, const uint16_t *src,
                                     size_t groups, size_t group)
{
    const __m512i absm = _mm512_set1_epi16(0x7FFF);
    const int pf = groups * group * sizeof *src >= GENCACHE__PREFETCH_MIN;
    for (size_t g = 0; g < groups; g++) {
        const uint16_t *x = src + g * group;
        int8_t *q = dst + g * group;
        __m512i m = _mm512_setzero_si512();
        for (size_t i = 0; i < group; i += 32) {
            if (pf)
                gencache__prefetch(x + i);
            m = _mm512_max_epu16(m,
                                 _mm512_and_si512(_mm512_loadu_si512((const void *)(x + i)), absm));
        }
        uint16_t a = max_u16x32(m);
        if (a >= 0x7C00u)
            return 1;
        float scale, inv;
        gencache__quant_scale(gencache__f16_to_f32_one(a), &scale, &inv);
        memcpy(scales + 4 * g, &scale, sizeof scale); /* x86 is little-endian */
        const __m512 vi = _mm512_set1_ps(inv);
        size_t i = 0;
        for (; i + 64 <= group; i += 64)
            _mm512_storeu_si512((void *)(q + i), line64(q16(load_f16x16(x + i), vi),
                                                        q16(load_f16x16(x + i + 16), vi),
                                                        q16(load_f16x16(x + i + 32), vi),
                                                        q16(load_f16x16(x + i + 48), vi)));
        if (i < group) {
            _mm_storeu_si128((__m128i *)(q + i), q16(load_f16x16(x + i), vi));
            _mm_storeu_si128((__m128i *)(q + i + 16), q16(load_f16x16(x + i + 16), vi));
        }
    }
    return 0;
}

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

static const gencache__codec_kernels avx512_kernels = {
    "avx512",     w_f32_to_f16,  w_f32_to_bf16, w_f16_to_f32,   w_bf16_to_f32,
    w_amax_f32,   w_amax_f16,    w_amax_bf16,   w_quant_f32,    w_quant_f16,
    w_quant_bf16, w_dequant_f32, w_dequant_f16, w_dequant_bf16, w_quant_groups_f16,
};

const gencache__codec_kernels *gencache__codec_kernels_avx512(void)
{
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl"))
        return &avx512_kernels;
    return NULL;
}

#else

const gencache__codec_kernels *gencache__codec_kernels_avx512(void)
{
    return NULL;
}

#endif
