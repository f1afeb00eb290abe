/*
 * kernels_scalar.c: the portable element kernels behind the dtype codecs, and the run-time choice
 * between them and the vector ones. These functions define the results: the AVX2 and AVX-512
 * kernels must match them bit for bit (tests/unit/test_tensor_simd.c compares every path), so
 * rounding here is written out by hand (round half to even on the bits) instead of relying on
 * the floating-point environment.
 */
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/tensor.h"

static uint32_t f32_bits(float x)
{
    uint32_t b;
    memcpy(&b, &x, sizeof b);
    return b;
}

static float bits_f32(uint32_t b)
{
    float x;
    memcpy(&x, &b, sizeof x);
    return x;
}

uint16_t gencache__f32_to_f16_one(float x)
{
    /* Saturate first: |x| >= 65520 would round to Inf, and finite values stay finite. */
    if (x > GENCACHE__F16_MAX)
        x = GENCACHE__F16_MAX;
    else if (x < -GENCACHE__F16_MAX)
        x = -GENCACHE__F16_MAX;
    uint32_t b = f32_bits(x);
    uint16_t sign = (uint16_t)((b >> 16) & 0x8000u);
    b &= 0x7FFFFFFFu;
    if (b >= 0x38800000u) {
        /* Normal f16: rebias the exponent (127 -> 15) and round 23 mantissa bits to 10; a carry
         * out of the mantissa correctly bumps the exponent. */
        uint32_t m = b - 0x38000000u;
        m += 0xFFFu + ((m >> 13) & 1u);
        return (uint16_t)(sign | (m >> 13));
    }
    uint32_t e = b >> 23;
    if (e < 102)
        return sign; /* below 2^-25: rounds to zero */
    /* Subnormal f16: the value in units of 2^-24 is mant >> (126 - e), rounded half to even. A
     * round-up from 0x3FF gives 0x400, the smallest normal, which is the right encoding. */
    uint32_t mant = (b & 0x7FFFFFu) | 0x800000u;
    uint32_t shift = 126 - e;
    uint32_t r = mant >> shift;
    uint32_t rem = mant & ((1u << shift) - 1u);
    uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (r & 1u)))
        r++;
    return (uint16_t)(sign | r);
}

float gencache__f16_to_f32_one(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1Fu;
    uint32_t mant = h & 0x3FFu;
    if (exp == 0) {
        /* Zero or subnormal: mant * 2^-24 is exact in f32. */
        float v = (float)mant * 5.9604644775390625e-8f;
        return bits_f32(f32_bits(v) | sign);
    }
    if (exp == 31) /* Inf, or NaN made quiet with its payload kept (what F16C does) */
        return bits_f32(sign | 0x7F800000u | (mant ? 0x400000u | (mant << 13) : 0));
    return bits_f32(sign | ((exp + 112u) << 23) | (mant << 13));
}

uint16_t gencache__f32_to_bf16_one(float x)
{
    uint32_t b = f32_bits(x);
    uint32_t r = (b + 0x7FFFu + ((b >> 16) & 1u)) >> 16;
    if ((r & 0x7F80u) == 0x7F80u) /* a finite value rounded up to Inf: saturate */
        r = (r & 0x8000u) | GENCACHE__BF16_MAX_BITS;
    return (uint16_t)r;
}

float gencache__bf16_to_f32_one(uint16_t h)
{
    return bits_f32((uint32_t)h << 16);
}

int8_t gencache__quant_one(float x, float inv)
{
    /* The exact product: two f32 significands of 24 bits fit in a double's 53, so nothing is
     * rounded before the one rounding to an integer, and no rounding mode enters. */
    double p = (double)x * (double)inv;
    if (p >= 127.0)
        return 127;
    if (p <= -127.0)
        return -127;
    int32_t i = (int32_t)p;
    double d = p - (double)i;
    int32_t odd = i & 1;
    int32_t up = (d > 0.5) | ((d == 0.5) & odd);
    int32_t down = (d < -0.5) | ((d == -0.5) & odd);
    return (int8_t)(i + up - down);
}

float gencache__dequant_clamp(float y)
{
    if (y > FLT_MAX)
        return FLT_MAX;
    if (y < -FLT_MAX)
        return -FLT_MAX;
    return y;
}

static int s_f32_to_f16(uint16_t *dst, const float *src, size_t n)
{
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        bad |= (f32_bits(src[i]) & 0x7F800000u) == 0x7F800000u;
        dst[i] = gencache__f32_to_f16_one(src[i]);
    }
    return bad;
}

static int s_f32_to_bf16(uint16_t *dst, const float *src, size_t n)
{
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        bad |= (f32_bits(src[i]) & 0x7F800000u) == 0x7F800000u;
        dst[i] = gencache__f32_to_bf16_one(src[i]);
    }
    return bad;
}

static void s_f16_to_f32(float *dst, const uint16_t *src, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = gencache__f16_to_f32_one(src[i]);
}

static void s_bf16_to_f32(float *dst, const uint16_t *src, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = gencache__bf16_to_f32_one(src[i]);
}

/* Maxima are taken on the magnitude bits: for non-negative IEEE values integer order is value
 * order, and Inf/NaN sort above every finite value, so one comparison finds both. */
static int s_amax_f32(const float *src, size_t n, float *out)
{
    uint32_t m = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t a = f32_bits(src[i]) & 0x7FFFFFFFu;
        m = a > m ? a : m;
    }
    *out = bits_f32(m);
    return m >= 0x7F800000u;
}

static int s_amax_f16(const uint16_t *src, size_t n, float *out)
{
    uint16_t m = 0;
    for (size_t i = 0; i < n; i++) {
        uint16_t a = src[i] & 0x7FFFu;
        m = a > m ? a : m;
    }
    *out = gencache__f16_to_f32_one(m);
    return m >= 0x7C00u;
}

static int s_amax_bf16(const uint16_t *src, size_t n, float *out)
{
    uint16_t m = 0;
    for (size_t i = 0; i < n; i++) {
        uint16_t a = src[i] & 0x7FFFu;
        m = a > m ? a : m;
    }
    *out = gencache__bf16_to_f32_one(m);
    return m >= 0x7F80u;
}

static void s_quant_f32(int8_t *dst, const float *src, size_t n, float inv)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = gencache__quant_one(src[i], inv);
}

static void s_quant_f16(int8_t *dst, const uint16_t *src, size_t n, float inv)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = gencache__quant_one(gencache__f16_to_f32_one(src[i]), inv);
}

static void s_quant_bf16(int8_t *dst, const uint16_t *src, size_t n, float inv)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = gencache__quant_one(gencache__bf16_to_f32_one(src[i]), inv);
}

static void s_dequant_f32(float *dst, const int8_t *src, size_t n, float scale)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = gencache__dequant_clamp((float)src[i] * scale);
}

static void s_dequant_f16(uint16_t *dst, const int8_t *src, size_t n, float scale)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = gencache__f32_to_f16_one(gencache__dequant_clamp((float)src[i] * scale));
}

static void s_dequant_bf16(uint16_t *dst, const int8_t *src, size_t n, float scale)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = gencache__f32_to_bf16_one(gencache__dequant_clamp((float)src[i] * scale));
}

static const gencache__codec_kernels scalar_kernels = {
    "scalar",     s_f32_to_f16,  s_f32_to_bf16, s_f16_to_f32,   s_bf16_to_f32,
    s_amax_f32,   s_amax_f16,    s_amax_bf16,   s_quant_f32,    s_quant_f16,
    s_quant_bf16, s_dequant_f32, s_dequant_f16, s_dequant_bf16, NULL,
};

const gencache__codec_kernels *gencache__codec_kernels_scalar(void)
{
    return &scalar_kernels;
}

static const gencache__codec_kernels *chosen;
static pthread_once_t chosen_once = PTHREAD_ONCE_INIT;

/* The widest table wins whole: bench_tensor measures every AVX-512 kernel at least as fast as
 * its AVX2 counterpart on cached blocks, in L3 and from DRAM (docs/BENCHMARKS.md), so no kernel
 * is borrowed from the narrower table. */
static void choose(void)
{
    const char *want = getenv("GENCACHE_SIMD");
    const gencache__codec_kernels *k512 = gencache__codec_kernels_avx512();
    const gencache__codec_kernels *k2 = gencache__codec_kernels_avx2();
    if (want && strcmp(want, "scalar") == 0)
        chosen = &scalar_kernels;
    else if (want && strcmp(want, "avx2") == 0)
        chosen = k2 ? k2 : &scalar_kernels;
    else
        chosen = k512 ? k512 : k2 ? k2 : &scalar_kernels;
}

const gencache__codec_kernels *gencache__codec_kernels_best(void)
{
    pthread_once(&chosen_once, choose);
    return chosen;
}
