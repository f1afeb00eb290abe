/*
 * test_tensor.c: tensor descriptors, dtype conversions (f32 <-> f16/bf16) and int8
 * quantization as the public API documents them: round half to even, saturation of finite
 * values, NaN/Inf rejected when narrowing, the per-element error bound of each int8 codec, and
 * a quantized payload that is validated before it is decoded.
 */
#include <float.h>
#include <math.h>

#include "test.h"
#include "tensor/tensor.h"

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint32_t rnd32(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 11);
}

static float rnd_float(float range)
{
    return ((float)rnd32() / 4294967296.0f * 2.0f - 1.0f) * range;
}

static float bits_f(uint32_t b)
{
    float f;
    memcpy(&f, &b, sizeof f);
    return f;
}

static uint32_t f_bits(float f)
{
    uint32_t b;
    memcpy(&b, &f, sizeof b);
    return b;
}

static const size_t odd_sizes[] = {0, 1, 7, 15, 17, 31, 33, 63, 64, 65, 1001, 4099};
#define N_SIZES (sizeof odd_sizes / sizeof odd_sizes[0])

TEST_CASE(check_shape)
{
    int64_t shape[3] = {2, 3, 4};
    CHECK_OK(gencache_tensor_check(GENCACHE_DTYPE_F16, 3, shape, 48));
    CHECK_RC(gencache_tensor_check(GENCACHE_DTYPE_F16, 3, shape, 47), GENCACHE_EINVAL);
    CHECK_RC(gencache_tensor_check(GENCACHE_DTYPE_NONE, 3, shape, 48), GENCACHE_EINVAL);
    CHECK_RC(gencache_tensor_check((gencache_dtype)99, 3, shape, 48), GENCACHE_EINVAL);
    CHECK_RC(gencache_tensor_check(GENCACHE_DTYPE_F16, 9, shape, 48), GENCACHE_EINVAL);
    CHECK_OK(gencache_tensor_check(GENCACHE_DTYPE_I64, 0, NULL, 8)); /* a scalar */
    int64_t neg[2] = {2, -1};
    CHECK_RC(gencache_tensor_check(GENCACHE_DTYPE_U8, 2, neg, 0), GENCACHE_EINVAL);
    int64_t zero[3] = {0, INT64_MAX, INT64_MAX};
    CHECK_OK(gencache_tensor_check(GENCACHE_DTYPE_F32, 3, zero, 0));
    int64_t huge[2] = {INT64_MAX / 2, 4};
    CHECK_RC(gencache_tensor_check(GENCACHE_DTYPE_U8, 2, huge, 0), GENCACHE_ELIMIT);
    int64_t big[2] = {UINT64_C(1) << 31, UINT64_C(1) << 31}; /* 2^62 elements of 8 bytes */
    CHECK_RC(gencache_tensor_check(GENCACHE_DTYPE_I64, 2, big, 0), GENCACHE_ELIMIT);
    uint64_t n = 7;
    CHECK_OK(gencache_tensor_numel(3, shape, &n));
    CHECK_UINT_EQ(n, 24);
    CHECK_RC(gencache_tensor_numel(2, neg, &n), GENCACHE_EINVAL);
    CHECK_UINT_EQ(n, 0);
}

TEST_CASE(byteswap)
{
    uint32_t v[2] = {0x11223344u, 0xA0B0C0D0u};
    CHECK_OK(gencache_tensor_byteswap(GENCACHE_DTYPE_F32, v, sizeof v));
    CHECK_UINT_EQ(v[0], 0x44332211u);
    CHECK_UINT_EQ(v[1], 0xD0C0B0A0u);
    CHECK_RC(gencache_tensor_byteswap(GENCACHE_DTYPE_F32, v, 6), GENCACHE_EINVAL);
    uint8_t b[3] = {1, 2, 3};
    CHECK_OK(gencache_tensor_byteswap(GENCACHE_DTYPE_U8, b, 3));
    CHECK_UINT_EQ(b[0], 1);
    CHECK_RC(gencache_tensor_byteswap(GENCACHE_DTYPE_NONE, b, 3), GENCACHE_EINVAL);
}

TEST_CASE(codec_names)
{
    static const char *names[] = {"none", "f16", "bf16", "int8", "int8-channel", "int8-group"};
    for (int i = 0; i < 6; i++) {
        gencache_codec c;
        CHECK_STR_EQ(gencache_codec_name((gencache_codec)i), names[i]);
        CHECK_OK(gencache_codec_parse(names[i], &c));
        CHECK_INT_EQ(c, i);
    }
    gencache_codec c = GENCACHE_CODEC_INT8;
    CHECK_RC(gencache_codec_parse("int4", &c), GENCACHE_EINVAL);
    CHECK_INT_EQ(c, GENCACHE_CODEC_NONE);
    CHECK(gencache_codec_name((gencache_codec)6) == NULL);
}

/* The f16 nearest to x (round half to even), computed in double: an independent reference. */
static uint16_t ref_f16(float x)
{
    double a = fabs((double)x);
    uint16_t sign = signbit(x) ? 0x8000 : 0;
    if (a >= 65504.0)
        return sign | 0x7BFF; /* saturation, as documented */
    /* Candidates: every f16 magnitude below is k * 2^(e-10) within its binade. */
    int e;
    frexp(a, &e);      /* a = m * 2^e, m in [0.5, 1) */
    int exp16 = e - 1; /* a in [2^exp16, 2^(exp16+1)) */
    if (exp16 < -14)
        exp16 = -14; /* subnormal spacing */
    double ulp = ldexp(1.0, exp16 - 10);
    double k = floor(a / ulp);
    double rem = a - k * ulp;
    if (rem > ulp / 2 || (rem == ulp / 2 && fmod(k, 2.0) != 0))
        k += 1;
    double v = k * ulp;
    /* Encode v exactly. */
    if (v == 0)
        return sign;
    if (v < ldexp(1.0, -14))
        return sign | (uint16_t)(v / ldexp(1.0, -24));
    int ve;
    double m = frexp(v, &ve);
    uint16_t biased = (uint16_t)(ve - 1 + 15);
    uint16_t mant = (uint16_t)((m * 2 - 1) * 1024);
    return sign | (uint16_t)(biased << 10) | mant;
}

static uint16_t ref_bf16(float x)
{
    uint32_t b = f_bits(x);
    uint32_t lo = b & 0xFFFF0000u, hi = lo + 0x10000u;
    double d = fabs((double)x), dl = fabs((double)bits_f(lo)), dh = fabs((double)bits_f(hi));
    uint32_t r;
    if ((hi & 0x7F800000u) == 0x7F800000u) /* rounding up overflows: saturate */
        r = d - dl < dh - d ? lo : (b & 0x80000000u) | 0x7F7F0000u;
    else if (d - dl < dh - d)
        r = lo;
    else if (d - dl > dh - d)
        r = hi;
    else
        r = (lo >> 16) & 1 ? hi : lo;
    if ((r & 0x7F800000u) == 0x7F800000u)
        r = (b & 0x80000000u) | 0x7F7F0000u;
    return (uint16_t)(r >> 16);
}

/* Random finite f32 bit patterns, with some halfway cases for both 16-bit formats. */
static float rnd_finite(void)
{
    for (;;) {
        uint32_t b = rnd32();
        switch (rnd32() % 4) {
        case 0:
            b = (b & 0xFFFFE000u) | 0x1000u; /* f16 tie */
            break;
        case 1:
            b = (b & 0xFFFF0000u) | 0x8000u; /* bf16 tie */
            break;
        case 2:
            b = (b & 0x87FFFFFFu) | 0x38000000u; /* around the f16 range */
            break;
        default:
            break;
        }
        if ((b & 0x7F800000u) != 0x7F800000u)
            return bits_f(b);
    }
}

TEST_CASE(f32_to_f16_matches_reference)
{
    for (size_t s = 0; s < N_SIZES; s++) {
        size_t n = odd_sizes[s];
        float *x = malloc(n * 4 + 4);
        uint16_t *h = malloc(n * 2 + 2);
        for (size_t i = 0; i < n; i++)
            x[i] = rnd_finite();
        CHECK_OK(gencache_tensor_convert(GENCACHE_DTYPE_F16, h, GENCACHE_DTYPE_F32, x, n));
        for (size_t i = 0; i < n; i++)
            if (h[i] != ref_f16(x[i]))
                test_fail(__FILE__, __LINE__, "f16(%a) = 0x%04x, expected 0x%04x", (double)x[i],
                          h[i], ref_f16(x[i]));
        free(x);
        free(h);
    }
}

TEST_CASE(f32_to_bf16_matches_reference)
{
    for (size_t s = 0; s < N_SIZES; s++) {
        size_t n = odd_sizes[s];
        float *x = malloc(n * 4 + 4);
        uint16_t *h = malloc(n * 2 + 2);
        for (size_t i = 0; i < n; i++)
            x[i] = rnd_finite();
        CHECK_OK(gencache_tensor_convert(GENCACHE_DTYPE_BF16, h, GENCACHE_DTYPE_F32, x, n));
        for (size_t i = 0; i < n; i++)
            if (h[i] != ref_bf16(x[i]))
                test_fail(__FILE__, __LINE__, "bf16(%a) = 0x%04x, expected 0x%04x", (double)x[i],
                          h[i], ref_bf16(x[i]));
        free(x);
        free(h);
    }
}

TEST_CASE(f16_exhaustive_round_trip)
{
    /* Every f16 widens exactly and narrows back to itself; NaNs stay NaN (made quiet). */
    static uint16_t h[65536], back[65536];
    static float f[65536];
    for (uint32_t i = 0; i < 65536; i++)
        h[i] = (uint16_t)i;
    CHECK_OK(gencache_tensor_convert(GENCACHE_DTYPE_F32, f, GENCACHE_DTYPE_F16, h, 65536));
    for (uint32_t i = 0; i < 65536; i++) {
        bool nan = (i & 0x7C00) == 0x7C00 && (i & 0x3FF);
        bool inf = (i & 0x7FFF) == 0x7C00;
        if (nan) {
            CHECK(isnan(f[i]));
            CHECK(f_bits(f[i]) & 0x400000u); /* quiet */
            f[i] = 0;
        } else if (inf) {
            CHECK(isinf(f[i]));
            f[i] = 0;
        }
    }
    CHECK_OK(gencache_tensor_convert(GENCACHE_DTYPE_F16, back, GENCACHE_DTYPE_F32, f, 65536));
    for (uint32_t i = 0; i < 65536; i++)
        if ((i & 0x7C00) != 0x7C00)
            CHECK_UINT_EQ(back[i], i);
}

TEST_CASE(bf16_round_trip)
{
    static uint16_t h[65536], back[65536];
    static float f[65536];
    for (uint32_t i = 0; i < 65536; i++)
        h[i] = (i & 0x7F80) == 0x7F80 ? 0 : (uint16_t)i;
    CHECK_OK(gencache_tensor_convert(GENCACHE_DTYPE_F32, f, GENCACHE_DTYPE_BF16, h, 65536));
    CHECK_OK(gencache_tensor_convert(GENCACHE_DTYPE_BF16, back, GENCACHE_DTYPE_F32, f, 65536));
    CHECK_MEM_EQ(back, h, sizeof h);
    /* f16 -> bf16 -> f32 agrees with f16 -> f32 -> bf16 -> f32. */
    uint16_t a[4] = {0x3C00, 0x7BFF, 0x0001, 0x8400}, b[4];
    float fa[4], fb[4];
    CHECK_OK(gencache_tensor_convert(GENCACHE_DTYPE_BF16, b, GENCACHE_DTYPE_F16, a, 4));
    CHECK_OK(gencache_tensor_convert(GENCACHE_DTYPE_F32, fa, GENCACHE_DTYPE_F16, a, 4));
    CHECK_OK(gencache_tensor_convert(GENCACHE_DTYPE_F32, fb, GENCACHE_DTYPE_BF16, b, 4));
    for (int i = 0; i < 4; i++)
        CHECK_UINT_EQ(b[i], ref_bf16(fa[i]));
}

TEST_CASE(special_values)
{
    float x[12] = {-0.0f,
                   65519.0f,            /* rounds to the f16 max */
                   65520.0f,            /* would round to Inf: saturates */
                   -1e30f,              /* saturates to -max */
                   bits_f(0x00000001u), /* smallest f32 denormal: f16 0 */
                   0x1p-25f,            /* tie between 0 and the smallest f16: even, 0 */
                   0x1.000002p-25f,     /* just above the tie: smallest f16 subnormal */
                   0x1p-24f,            /* smallest f16 subnormal */
                   0x1.ff8p-15f,        /* largest f16 subnormal */
                   0x1.ffcp-15f,        /* tie above it: rounds to even, the smallest normal */
                   FLT_MAX,
                   2049.0f}; /* tie: 2048 (even) */
    uint16_t want[12] = {0x8000, 0x7BFF, 0x7BFF, 0xFBFF, 0x0000, 0x0000,
                         0x0001, 0x0001, 0x03FF, 0x0400, 0x7BFF, 0x6800};
    uint16_t h[12];
    CHECK_OK(gencache_tensor_convert(GENCACHE_DTYPE_F16, h, GENCACHE_DTYPE_F32, x, 12));
    for (int i = 0; i < 12; i++)
        if (h[i] != want[i])
            test_fail(__FILE__, __LINE__, "f16(%a) = 0x%04x, expected 0x%04x", (double)x[i], h[i],
                      want[i]);
    uint16_t b[12];
    CHECK_OK(gencache_tensor_convert(GENCACHE_DTYPE_BF16, b, GENCACHE_DTYPE_F32, x, 12));
    CHECK_UINT_EQ(b[0], 0x8000);
    CHECK_UINT_EQ(b[4], 0x0000);    /* denormal 2^-149 rounds to zero */
    CHECK_UINT_EQ(b[10], 0x7F7F);   /* FLT_MAX saturates to the bf16 max, not Inf */
    CHECK_UINT_EQ(b[3], 0xF14A);    /* -1e30 = 0xF149F2CA rounds up */
    float dn = bits_f(0x00018000u); /* a denormal that bf16 keeps: 0x0001 or 0x0002 tie */
    CHECK_OK(gencache_tensor_convert(GENCACHE_DTYPE_BF16, b, GENCACHE_DTYPE_F32, &dn, 1));
    CHECK_UINT_EQ(b[0], 0x0002); /* 0x0001|0x8000: tie, rounds to even */

    /* NaN and Inf are rejected when narrowing, at any position (vector body or tail). */
    for (size_t pos = 0; pos < 40; pos += 13) {
        float y[40];
        uint16_t o[40];
        for (int i = 0; i < 40; i++)
            y[i] = 1.0f;
        y[pos] = NAN;
        CHECK_RC(gencache_tensor_convert(GENCACHE_DTYPE_F16, o, GENCACHE_DTYPE_F32, y, 40),
                 GENCACHE_EINVAL);
        CHECK_RC(gencache_tensor_convert(GENCACHE_DTYPE_BF16, o, GENCACHE_DTYPE_F32, y, 40),
                 GENCACHE_EINVAL);
        y[pos] = -INFINITY;
        CHECK_RC(gencache_tensor_convert(GENCACHE_DTYPE_F16, o, GENCACHE_DTYPE_F32, y, 40),
                 GENCACHE_EINVAL);
        CHECK_RC(gencache_tensor_convert(GENCACHE_DTYPE_BF16, o, GENCACHE_DTYPE_F32, y, 40),
                 GENCACHE_EINVAL);
    }
    /* f16 Inf -> bf16 is a narrowing through f32: rejected too. */
    uint16_t inf16 = 0x7C00, o16;
    CHECK_RC(gencache_tensor_convert(GENCACHE_DTYPE_BF16, &o16, GENCACHE_DTYPE_F16, &inf16, 1),
             GENCACHE_EINVAL);
    /* Widening carries Inf exactly. */
    float wf;
    CHECK_OK(gencache_tensor_convert(GENCACHE_DTYPE_F32, &wf, GENCACHE_DTYPE_F16, &inf16, 1));
    CHECK(isinf(wf) && wf > 0);
    /* Unsupported dtypes. */
    CHECK_RC(gencache_tensor_convert(GENCACHE_DTYPE_I8, &o16, GENCACHE_DTYPE_F32, &wf, 1),
             GENCACHE_EUNSUPPORTED);
    CHECK_RC(gencache_tensor_convert(GENCACHE_DTYPE_F16, NULL, GENCACHE_DTYPE_F32, &wf, 1),
             GENCACHE_EINVAL);
}

static const gencache_dtype float_dtypes[] = {GENCACHE_DTYPE_F32, GENCACHE_DTYPE_F16,
                                              GENCACHE_DTYPE_BF16};

/* Fills n elements of dtype with random values in [-range, range]; returns them as f32 too. */
static void *make_tensor(gencache_dtype dt, size_t n, float range, float *as_f32)
{
    float *f = malloc(n * 4 + 4);
    for (size_t i = 0; i < n; i++)
        f[i] = rnd_float(range);
    void *data = malloc(n * 4 + 4);
    CHECK_OK(gencache_tensor_convert(dt, data, GENCACHE_DTYPE_F32, f, n));
    CHECK_OK(gencache_tensor_convert(GENCACHE_DTYPE_F32, as_f32, dt, data, n));
    free(f);
    return data;
}

static float payload_scale(const unsigned char *payload, uint64_t i)
{
    float s;
    memcpy(&s, payload + 88 + 4 * i, 4);
    return s;
}

/* Encodes, decodes to f32 and checks every element against its block's bound. */
static void check_bound(gencache_dtype dt, uint32_t ndim, const int64_t *shape,
                        const gencache_quant_options *o, float range)
{
    gencache_tensor_desc d;
    memset(&d, 0, sizeof d);
    d.dtype = dt;
    d.ndim = ndim;
    memcpy(d.shape, shape, ndim * sizeof *shape);
    uint64_t n;
    CHECK_OK(gencache_tensor_numel(ndim, shape, &n));
    float *x = malloc(n * 4 + 4), *y = malloc(n * 4 + 4);
    void *data = make_tensor(dt, n, range, x);
    size_t qsize, got;
    CHECK_OK(gencache_quant_size(&d, o, &qsize));
    unsigned char *q = malloc(qsize);
    CHECK_RC(gencache_quant_encode(&d, data, n * gencache_dtype_size(dt), o, q, qsize - 1, &got),
             GENCACHE_ETOOBIG);
    CHECK_OK(gencache_quant_encode(&d, data, n * gencache_dtype_size(dt), o, q, qsize, &got));
    CHECK_UINT_EQ(got, qsize);
    gencache_quant_info info;
    CHECK_OK(gencache_quant_info_get(q, qsize, &info));
    CHECK_INT_EQ(info.codec, o->codec);
    CHECK_INT_EQ(info.desc.dtype, dt);
    CHECK_UINT_EQ(info.desc.ndim, ndim);
    CHECK_UINT_EQ(info.data_offset % 64, 0);
    CHECK_UINT_EQ(info.data_offset + n, qsize);
    CHECK_OK(gencache_quant_decode(q, qsize, GENCACHE_DTYPE_F32, y, n * 4, &got));
    CHECK_UINT_EQ(got, n * 4);
    uint64_t inner = 1, channels = 1;
    if (o->codec == GENCACHE_CODEC_INT8_CHANNEL) {
        channels = (uint64_t)shape[o->axis];
        for (uint32_t i = o->axis + 1; i < ndim; i++)
            inner *= (uint64_t)shape[i];
        CHECK_UINT_EQ(info.n_scales, channels);
    }
    for (uint64_t i = 0; i < n; i++) {
        uint64_t block = 0;
        if (o->codec == GENCACHE_CODEC_INT8_CHANNEL)
            block = (i / inner) % channels;
        else if (o->codec == GENCACHE_CODEC_INT8_GROUP)
            block = i / o->group_size;
        double s = payload_scale(q, block);
        /* scale/2, plus the f32 rounding of x * (127 / amax) and of q * scale. */
        double bound = s / 2 * (1 + 1e-6) + fabs((double)x[i]) * 1e-6;
        double err = fabs((double)x[i] - (double)y[i]);
        if (!(err <= bound))
            test_fail(__FILE__, __LINE__,
                      "%s %s n=%" PRIu64 " element %" PRIu64 ": |%.9g - %.9g| = %.3g > %.3g",
                      gencache_codec_name(o->codec), gencache_dtype_name(dt), n, i, (double)x[i],
                      (double)y[i], err, bound);
    }
    /* Decoding to the original dtype and to every float dtype works and agrees with f32. */
    for (int k = 0; k < 3; k++) {
        void *z = malloc(n * 4 + 4);
        float *zf = malloc(n * 4 + 4);
        CHECK_OK(gencache_quant_decode(q, qsize, float_dtypes[k], z, n * 4, &got));
        CHECK_UINT_EQ(got, n * gencache_dtype_size(float_dtypes[k]));
        CHECK_OK(gencache_tensor_convert(GENCACHE_DTYPE_F32, zf, float_dtypes[k], z, n));
        float *yy = malloc(n * 4 + 4);
        uint16_t *tmp = malloc(n * 2 + 2);
        if (float_dtypes[k] != GENCACHE_DTYPE_F32) {
            CHECK_OK(gencache_tensor_convert(float_dtypes[k], tmp, GENCACHE_DTYPE_F32, y, n));
            CHECK_OK(gencache_tensor_convert(GENCACHE_DTYPE_F32, yy, float_dtypes[k], tmp, n));
        } else {
            memcpy(yy, y, n * 4);
        }
        CHECK_MEM_EQ(zf, yy, n * 4);
        free(z);
        free(zf);
        free(yy);
        free(tmp);
    }
    free(x);
    free(y);
    free(q);
    free(data);
}

TEST_CASE(int8_tensor_error_bound)
{
    gencache_quant_options o;
    gencache_quant_options_init(&o);
    for (int k = 0; k < 3; k++) {
        for (size_t s = 0; s < N_SIZES; s++) {
            int64_t shape[1] = {(int64_t)odd_sizes[s]};
            check_bound(float_dtypes[k], 1, shape, &o, 3.0f);
            check_bound(float_dtypes[k], 1, shape, &o, 1e-3f);
        }
        int64_t big[2] = {3, 65536 + 5};
        check_bound(float_dtypes[k], 2, big, &o, 1000.0f);
    }
}

TEST_CASE(int8_channel_and_group_error_bound)
{
    gencache_quant_options o;
    gencache_quant_options_init(&o);
    int64_t shape[4] = {2, 5, 7, 17};
    for (int k = 0; k < 3; k++) {
        o.codec = GENCACHE_CODEC_INT8_CHANNEL;
        for (uint32_t axis = 0; axis < 4; axis++) {
            o.axis = axis;
            check_bound(float_dtypes[k], 4, shape, &o, 50.0f);
        }
        o.codec = GENCACHE_CODEC_INT8_GROUP;
        o.axis = 0;
        static const uint32_t groups[] = {1, 7, 32, 128, 1000, 5000};
        for (size_t g = 0; g < sizeof groups / sizeof groups[0]; g++) {
            o.group_size = groups[g];
            check_bound(float_dtypes[k], 4, shape, &o, 50.0f);
        }
    }
    /* Per-channel scales follow each channel's own range. */
    float x[2 * 3] = {1, 100, 0.5f, -2, -200, 0.25f}; /* shape [2, 3], channels on axis 1 */
    gencache_tensor_desc d;
    memset(&d, 0, sizeof d);
    d.dtype = GENCACHE_DTYPE_F32;
    d.ndim = 2;
    d.shape[0] = 2;
    d.shape[1] = 3;
    o.codec = GENCACHE_CODEC_INT8_CHANNEL;
    o.axis = 1;
    unsigned char q[256];
    size_t got;
    CHECK_OK(gencache_quant_encode(&d, x, sizeof x, &o, q, sizeof q, &got));
    CHECK_DBL_NEAR(payload_scale(q, 0), 2.0 / 127, 1e-9);
    CHECK_DBL_NEAR(payload_scale(q, 1), 200.0 / 127, 1e-7);
    CHECK_DBL_NEAR(payload_scale(q, 2), 0.5 / 127, 1e-9);
    o.axis = 2;
    CHECK_RC(gencache_quant_encode(&d, x, sizeof x, &o, q, sizeof q, &got), GENCACHE_EINVAL);
    o.codec = GENCACHE_CODEC_INT8_GROUP;
    o.group_size = 0;
    CHECK_RC(gencache_quant_size(&d, &o, &got), GENCACHE_EINVAL);
    o.codec = GENCACHE_CODEC_F16;
    CHECK_RC(gencache_quant_size(&d, &o, &got), GENCACHE_EINVAL);
}

TEST_CASE(int8_special_values)
{
    gencache_tensor_desc d;
    memset(&d, 0, sizeof d);
    d.dtype = GENCACHE_DTYPE_F32;
    d.ndim = 1;
    d.shape[0] = 37;
    float x[37], y[37];
    unsigned char q[256];
    size_t got;
    /* NaN or Inf anywhere: rejected. */
    for (int pos = 0; pos < 37; pos += 9) {
        for (int i = 0; i < 37; i++)
            x[i] = (float)i;
        x[pos] = NAN;
        CHECK_RC(gencache_quant_encode(&d, x, sizeof x, NULL, q, sizeof q, &got), GENCACHE_EINVAL);
        x[pos] = INFINITY;
        CHECK_RC(gencache_quant_encode(&d, x, sizeof x, NULL, q, sizeof q, &got), GENCACHE_EINVAL);
        CHECK_UINT_EQ(got, 0);
    }
    /* All zeros (and -0): scale 0, decodes to zeros. */
    for (int i = 0; i < 37; i++)
        x[i] = i % 2 ? -0.0f : 0.0f;
    CHECK_OK(gencache_quant_encode(&d, x, sizeof x, NULL, q, sizeof q, &got));
    CHECK(payload_scale(q, 0) == 0.0f);
    CHECK_OK(gencache_quant_decode(q, got, GENCACHE_DTYPE_F32, y, sizeof y, NULL));
    for (int i = 0; i < 37; i++)
        CHECK(y[i] == 0.0f);
    /* Denormals only: below 2^-120, stored as zeros with scale 0 (documented). */
    for (int i = 0; i < 37; i++)
        x[i] = bits_f(0x00000100u * (uint32_t)i);
    CHECK_OK(gencache_quant_encode(&d, x, sizeof x, NULL, q, sizeof q, &got));
    CHECK(payload_scale(q, 0) == 0.0f);
    /* Extremes: FLT_MAX quantizes to 127 and decodes finite; to f16 it saturates. */
    for (int i = 0; i < 37; i++)
        x[i] = i == 5 ? -FLT_MAX : (i == 6 ? FLT_MAX : 1e30f);
    CHECK_OK(gencache_quant_encode(&d, x, sizeof x, NULL, q, sizeof q, &got));
    gencache_quant_info info;
    CHECK_OK(gencache_quant_info_get(q, got, &info));
    CHECK_INT_EQ(((int8_t *)q)[info.data_offset + 5], -127);
    CHECK_INT_EQ(((int8_t *)q)[info.data_offset + 6], 127);
    CHECK_OK(gencache_quant_decode(q, got, GENCACHE_DTYPE_F32, y, sizeof y, NULL));
    CHECK(isfinite(y[5]) && isfinite(y[6]) && y[6] > 3e38f);
    uint16_t h[37];
    CHECK_OK(gencache_quant_decode(q, got, GENCACHE_DTYPE_F16, h, sizeof h, NULL));
    CHECK_UINT_EQ(h[6], 0x7BFF);
    CHECK_UINT_EQ(h[5], 0xFBFF);
    /* Ties round half to even: amax 127 gives scale 1, so 2.5 -> 2, 3.5 -> 4, -2.5 -> -2. */
    float t[5] = {127.0f, 2.5f, 3.5f, -2.5f, 0.5f};
    d.shape[0] = 5;
    CHECK_OK(gencache_quant_encode(&d, t, sizeof t, NULL, q, sizeof q, &got));
    int8_t *qq = (int8_t *)q + 128;
    CHECK_INT_EQ(qq[0], 127);
    CHECK_INT_EQ(qq[1], 2);
    CHECK_INT_EQ(qq[2], 4);
    CHECK_INT_EQ(qq[3], -2);
    CHECK_INT_EQ(qq[4], 0);
    /* Integer dtypes are not quantized. */
    d.dtype = GENCACHE_DTYPE_I32;
    CHECK_RC(gencache_quant_size(&d, NULL, &got), GENCACHE_EUNSUPPORTED);
    d.dtype = GENCACHE_DTYPE_F32;
    d.byte_order = GENCACHE_BYTE_ORDER_BIG;
    CHECK_RC(gencache_quant_size(&d, NULL, &got), GENCACHE_EINVAL);
}

TEST_CASE(quant_payload_rejects_malformed)
{
    gencache_tensor_desc d;
    memset(&d, 0, sizeof d);
    d.dtype = GENCACHE_DTYPE_F16;
    d.ndim = 2;
    d.shape[0] = 4;
    d.shape[1] = 9;
    uint16_t x[36];
    for (int i = 0; i < 36; i++)
        x[i] = (uint16_t)(0x3C00 + i);
    gencache_quant_options o;
    gencache_quant_options_init(&o);
    o.codec = GENCACHE_CODEC_INT8_GROUP;
    o.group_size = 8;
    unsigned char q[512], bad[512];
    size_t n;
    CHECK_OK(gencache_quant_encode(&d, x, sizeof x, &o, q, sizeof q, &n));
    gencache_quant_info info;
    CHECK_OK(gencache_quant_info_get(q, n, &info));
    CHECK_UINT_EQ(info.n_scales, 5);
    CHECK_UINT_EQ(info.group_size, 8);
    /* Every truncation is refused. */
    for (size_t cut = 0; cut < n; cut++)
        CHECK_RC(gencache_quant_info_get(q, cut, &info), GENCACHE_EPARSE);
    CHECK_RC(gencache_quant_info_get(q, n + 1, &info), GENCACHE_EPARSE);
    struct {
        size_t off;
        unsigned char val;
        int rc;
    } flips[] = {
        {0, 'X', GENCACHE_EPARSE},   {4, 2, GENCACHE_EVERSION}, {5, 9, GENCACHE_EPARSE},
        {5, 1, GENCACHE_EPARSE},     {6, 6, GENCACHE_EPARSE},   {7, 9, GENCACHE_EPARSE},
        {7, 3, GENCACHE_EPARSE},     {8, 1, GENCACHE_EPARSE},   {12, 9, GENCACHE_EPARSE},
        {16, 6, GENCACHE_EPARSE},    {24, 5, GENCACHE_EPARSE},  {47, 0x80, GENCACHE_EPARSE},
        {91, 0x7F, GENCACHE_EPARSE}, /* scale 0 becomes NaN/Inf/large: first scale's top byte */
        {91, 0xBF, GENCACHE_EPARSE}, /* negative scale */
    };
    for (size_t i = 0; i < sizeof flips / sizeof flips[0]; i++) {
        memcpy(bad, q, n);
        bad[flips[i].off] = flips[i].val;
        if (flips[i].off == 91)
            bad[90] = 0xC0; /* 0x7FC0....: NaN; 0xBFC0....: negative */
        int rc = gencache_quant_info_get(bad, n, &info);
        if (rc != flips[i].rc)
            test_fail(__FILE__, __LINE__, "flip %zu at %zu: %s", i, flips[i].off,
                      gencache_errname(rc));
        uint16_t y[36];
        CHECK_RC(gencache_quant_decode(bad, n, GENCACHE_DTYPE_F16, y, sizeof y, NULL), flips[i].rc);
    }
    uint16_t y[36];
    CHECK_RC(gencache_quant_decode(q, n, GENCACHE_DTYPE_F16, y, sizeof y - 1, NULL),
             GENCACHE_ETOOBIG);
    CHECK_RC(gencache_quant_decode(q, n, GENCACHE_DTYPE_I8, y, sizeof y, NULL),
             GENCACHE_EUNSUPPORTED);
    CHECK_RC(gencache_quant_info_get(NULL, n, &info), GENCACHE_EINVAL);
}
