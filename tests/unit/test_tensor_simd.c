/*
 * test_tensor_simd.c: every vector implementation of the codec kernels gives the same bits as
 * the portable scalar one, on odd sizes (so vector bodies and scalar tails both run) and on
 * inputs chosen to hit the edges: ties, subnormals, values that saturate, signed zeros. A case
 * for an instruction set this CPU lacks says so and checks nothing else.
 */
#include <fenv.h>
#include <float.h>
#include <math.h>

#include "test.h"
#include "tensor/tensor.h"

static uint64_t rng_state = 0x2545F4914F6CDD1Dull;

static uint32_t rnd32(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 11);
}

static float bits_f(uint32_t b)
{
    float f;
    memcpy(&f, &b, sizeof f);
    return f;
}

/* Finite f32 values over the whole range, with ties and edge cases mixed in. */
static float rnd_finite(void)
{
    static const float edges[] = {0.0f,         -0.0f,   65504.0f, 65519.0f, 65520.0f,
                                  -65536.0f,    FLT_MAX, -FLT_MAX, 0x1p-24f, 0x1p-25f,
                                  0x1.ffcp-15f, 1e-40f,  -1e-45f,  2049.0f,  127.5f};
    for (;;) {
        uint32_t b = rnd32();
        switch (rnd32() % 6) {
        case 0:
            return edges[rnd32() % (sizeof edges / sizeof edges[0])];
        case 1:
            b = (b & 0xFFFFE000u) | 0x1000u;
            break;
        case 2:
            b = (b & 0xFFFF0000u) | 0x8000u;
            break;
        case 3:
            b = (b & 0x87FFFFFFu) | 0x38000000u;
            break;
        case 4:
            return (float)((int32_t)(rnd32() % 2001) - 1000) * 0.25f; /* quantization ties */
        default:
            break;
        }
        if ((b & 0x7F800000u) != 0x7F800000u)
            return bits_f(b);
    }
}

static const size_t sizes[] = {0, 1, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 1001, 4099};
#define N_SIZES (sizeof sizes / sizeof sizes[0])

static void compare(const gencache__codec_kernels *v)
{
    const gencache__codec_kernels *s = gencache__codec_kernels_scalar();
    enum { MAX = 4099 };
    static float x[MAX], fa[MAX], fb[MAX];
    static uint16_t h[MAX], ha[MAX], hb[MAX];
    static int8_t q[MAX], qa[MAX], qb[MAX];
    for (int round = 0; round < 8; round++) {
        for (size_t k = 0; k < N_SIZES; k++) {
            size_t n = sizes[k];
            for (size_t i = 0; i < n; i++) {
                x[i] = rnd_finite();
                h[i] = (uint16_t)rnd32();
                q[i] = (int8_t)rnd32();
            }
            CHECK_INT_EQ(v->f32_to_f16(ha, x, n), s->f32_to_f16(hb, x, n));
            CHECK_MEM_EQ(ha, hb, n * 2);
            CHECK_INT_EQ(v->f32_to_bf16(ha, x, n), s->f32_to_bf16(hb, x, n));
            CHECK_MEM_EQ(ha, hb, n * 2);
            /* Widening: every 16-bit pattern, NaNs and Infs included. */
            v->f16_to_f32(fa, h, n);
            s->f16_to_f32(fb, h, n);
            CHECK_MEM_EQ(fa, fb, n * 4);
            v->bf16_to_f32(fa, h, n);
            s->bf16_to_f32(fb, h, n);
            CHECK_MEM_EQ(fa, fb, n * 4);
            /* Maxima, with and without a NaN/Inf somewhere. */
            float ma, mb;
            CHECK_INT_EQ(v->amax_f32(x, n, &ma), s->amax_f32(x, n, &mb));
            CHECK_MEM_EQ(&ma, &mb, 4);
            CHECK_INT_EQ(v->amax_f16(h, n, &ma), s->amax_f16(h, n, &mb));
            CHECK_MEM_EQ(&ma, &mb, 4);
            CHECK_INT_EQ(v->amax_bf16(h, n, &ma), s->amax_bf16(h, n, &mb));
            CHECK_MEM_EQ(&ma, &mb, 4);
            if (n > 0) {
                size_t at = rnd32() % n;
                float keep = x[at];
                x[at] = round % 2 ? NAN : -INFINITY;
                CHECK_INT_EQ(v->amax_f32(x, n, &ma), 1);
                CHECK_INT_EQ(v->f32_to_f16(ha, x, n), 1);
                CHECK_INT_EQ(v->f32_to_bf16(ha, x, n), 1);
                x[at] = keep;
            }
            /* Quantization from f32 and from both 16-bit formats (the h patterns with NaN/Inf
             * removed), at the inverse scales the kernels' contract allows: 127 over each
             * input's largest |x| (what gencache__quant_scale() gives), smaller ones, 1 where
             * that keeps every product below 127.5 (products that are exact ties), and 0. */
            for (size_t i = 0; i < n; i++) {
                if ((h[i] & 0x7C00) == 0x7C00)
                    h[i] &= 0x83FF;
                x[i] = (float)((int32_t)(rnd32() % 4001) - 2000) * (round ? 0.0625f : 0.37f);
            }
            static const float shrink[] = {1.0f, 0.999f, 0.5f, 0.37f, 3e-3f, 0.0f};
            float a32, a16, ab, base32, base16, baseb, unused;
            CHECK_INT_EQ(s->amax_f32(x, n, &a32), 0);
            CHECK_INT_EQ(s->amax_f16(h, n, &a16), 0);
            CHECK_INT_EQ(s->amax_bf16(h, n, &ab), 0);
            gencache__quant_scale(a32, &unused, &base32);
            gencache__quant_scale(a16, &unused, &base16);
            gencache__quant_scale(ab, &unused, &baseb);
            for (size_t j = 0; j <= sizeof shrink / sizeof shrink[0]; j++) {
                float i32, i16, ib;
                if (j < sizeof shrink / sizeof shrink[0]) {
                    i32 = base32 * shrink[j];
                    i16 = base16 * shrink[j];
                    ib = baseb * shrink[j];
                } else { /* inverse 1 where it is allowed */
                    i32 = a32 < 127.0f ? 1.0f : 0.0f;
                    i16 = a16 < 127.0f ? 1.0f : 0.0f;
                    ib = ab < 127.0f ? 1.0f : 0.0f;
                }
                v->quant_f32(qa, x, n, i32);
                s->quant_f32(qb, x, n, i32);
                CHECK_MEM_EQ(qa, qb, n);
                v->quant_f16(qa, h, n, i16);
                s->quant_f16(qb, h, n, i16);
                CHECK_MEM_EQ(qa, qb, n);
                v->quant_bf16(qa, h, n, ib);
                s->quant_bf16(qb, h, n, ib);
                CHECK_MEM_EQ(qa, qb, n);
            }
            static const float scales[] = {0.0f, 1.0f, 1e-3f, 600.0f, FLT_MAX / 100, 1e-40f};
            for (size_t j = 0; j < sizeof scales / sizeof scales[0]; j++) {
                v->dequant_f32(fa, q, n, scales[j]);
                s->dequant_f32(fb, q, n, scales[j]);
                CHECK_MEM_EQ(fa, fb, n * 4);
                v->dequant_f16(ha, q, n, scales[j]);
                s->dequant_f16(hb, q, n, scales[j]);
                CHECK_MEM_EQ(ha, hb, n * 2);
                v->dequant_bf16(ha, q, n, scales[j]);
                s->dequant_bf16(hb, q, n, scales[j]);
                CHECK_MEM_EQ(ha, hb, n * 2);
            }
        }
    }
    /* Outputs large enough to be streamed, at every destination alignment mod 32. */
    {
        size_t big = (1u << 20) + 37;
        float *bx = malloc(big * 4);
        uint16_t *bh = malloc(big * 2);
        int8_t *ba = malloc(big + 32), *bb = malloc(big + 32);
        for (size_t i = 0; i < big; i++) {
            bx[i] = (float)((int32_t)(rnd32() % 4001) - 2000) * 0.37f;
            bh[i] = (uint16_t)(rnd32() & 0xBBFF);
        }
        /* Maxima of large inputs (prefetched, read as two streams). */
        float ma, mb;
        CHECK_INT_EQ(v->amax_f32(bx, big, &ma), s->amax_f32(bx, big, &mb));
        CHECK_MEM_EQ(&ma, &mb, 4);
        CHECK_INT_EQ(v->amax_f16(bh, big, &ma), s->amax_f16(bh, big, &mb));
        CHECK_MEM_EQ(&ma, &mb, 4);
        CHECK_INT_EQ(v->amax_bf16(bh, big, &ma), s->amax_bf16(bh, big, &mb));
        CHECK_MEM_EQ(&ma, &mb, 4);
        for (size_t off = 0; off < 32; off += 5) {
            v->quant_f32(ba + off, bx, big, 0.05f);
            s->quant_f32(bb + off, bx, big, 0.05f);
            CHECK_MEM_EQ(ba + off, bb + off, big);
            v->quant_f16(ba + off, bh, big, 0.9f);
            s->quant_f16(bb + off, bh, big, 0.9f);
            CHECK_MEM_EQ(ba + off, bb + off, big);
            v->quant_bf16(ba + off, bh, big, 1e-3f);
            s->quant_bf16(bb + off, bh, big, 1e-3f);
            CHECK_MEM_EQ(ba + off, bb + off, big);
        }
        free(bx);
        free(bh);
        free(ba);
        free(bb);
    }
    /* Widening outputs at every f32 offset within a cache line: the AVX-512 kernels handle the
     * elements before a 64-byte boundary one at a time. */
    {
        enum { WN = 211 };
        static float wa[WN + 16], wb[WN + 16];
        for (size_t i = 0; i < WN; i++) {
            h[i] = (uint16_t)rnd32();
            q[i] = (int8_t)rnd32();
        }
        for (size_t off = 0; off < 16; off++) {
            for (size_t n = 0; n < WN; n += 1 + n / 3) {
                v->f16_to_f32(wa + off, h, n);
                s->f16_to_f32(wb + off, h, n);
                CHECK_MEM_EQ(wa + off, wb + off, n * 4);
                v->bf16_to_f32(wa + off, h, n);
                s->bf16_to_f32(wb + off, h, n);
                CHECK_MEM_EQ(wa + off, wb + off, n * 4);
                v->dequant_f32(wa + off, q, n, 0.37f);
                s->dequant_f32(wb + off, q, n, 0.37f);
                CHECK_MEM_EQ(wa + off, wb + off, n * 4);
            }
        }
    }
    /* Whole payloads agree too. */
    gencache_tensor_desc d;
    memset(&d, 0, sizeof d);
    d.dtype = GENCACHE_DTYPE_F16;
    d.ndim = 3;
    d.shape[0] = 3;
    d.shape[1] = 11;
    d.shape[2] = 37;
    size_t n = 3 * 11 * 37;
    for (size_t i = 0; i < n; i++)
        h[i] = (uint16_t)(rnd32() & 0xBBFF);
    gencache_quant_options o;
    gencache_quant_options_init(&o);
    for (int c = GENCACHE_CODEC_INT8; c <= GENCACHE_CODEC_INT8_GROUP; c++) {
        o.codec = (gencache_codec)c;
        o.axis = 1;
        o.group_size = 33;
        static unsigned char pa[8192], pb[8192];
        size_t na, nb;
        CHECK_OK(gencache__quant_encode_with(v, &d, h, n * 2, &o, pa, sizeof pa, &na));
        CHECK_OK(gencache__quant_encode_with(s, &d, h, n * 2, &o, pb, sizeof pb, &nb));
        CHECK_UINT_EQ(na, nb);
        CHECK_MEM_EQ(pa, pb, na);
        CHECK_OK(gencache__quant_decode_with(v, pa, na, GENCACHE_DTYPE_BF16, ha, sizeof ha, NULL));
        CHECK_OK(gencache__quant_decode_with(s, pa, na, GENCACHE_DTYPE_BF16, hb, sizeof hb, NULL));
        CHECK_MEM_EQ(ha, hb, n * 2);
    }
}

TEST_CASE(avx2_matches_scalar)
{
    const gencache__codec_kernels *k = gencache__codec_kernels_avx2();
    if (!k) {
        printf("this CPU has no AVX2+F16C: nothing to compare\n");
        return;
    }
    CHECK_STR_EQ(k->name, "avx2");
    compare(k);
}

TEST_CASE(avx512_matches_scalar)
{
    const gencache__codec_kernels *k = gencache__codec_kernels_avx512();
    if (!k) {
        printf("this CPU has no AVX-512 (F, BW, VL): nothing to compare\n");
        return;
    }
    CHECK(strcmp(k->name, "avx512") == 0 || strcmp(k->name, "avx512bw") == 0);
    compare(k);
}

TEST_CASE(best_is_widest)
{
    const gencache__codec_kernels *b = gencache__codec_kernels_best();
    CHECK(b != NULL);
    const char *env = getenv("GENCACHE_SIMD");
    if (env && *env)
        return; /* narrowed on purpose */
    /* The whole widest table: each of its kernels measured at least as fast as the narrower
     * table's (bench_tensor), and avx512_matches_scalar compares it with the scalar code. */
    const gencache__codec_kernels *k512 = gencache__codec_kernels_avx512();
    const gencache__codec_kernels *k2 = gencache__codec_kernels_avx2();
    if (k512)
        CHECK(b == k512);
    else if (k2)
        CHECK(b == k2);
    else
        CHECK_STR_EQ(b->name, "scalar");
}

/* The one-pass group kernel against the per-group loop of the scalar table: whole payloads for
 * several group sizes (the last group short or whole), groups of zeros, of subnormals and of
 * single large values, and a NaN or an infinity in a middle group, which both refuse. */
static void check_groups(const gencache__codec_kernels *v)
{
    const gencache__codec_kernels *s = gencache__codec_kernels_scalar();
    static const uint32_t groups[] = {32, 64, 96, 128, 256};
    static const size_t counts[] = {1, 31, 128, 1000, 128 * 40 + 17, 4096};
    enum { MAXN = 4096 + 128 * 40 };
    static uint16_t h[MAXN];
    static unsigned char pa[MAXN + 4096], pb[MAXN + 4096];
    CHECK(v->quant_groups_f16 != NULL);
    for (size_t gi = 0; gi < sizeof groups / sizeof groups[0]; gi++)
        for (size_t ci = 0; ci < sizeof counts / sizeof counts[0]; ci++) {
            size_t n = counts[ci];
            for (size_t i = 0; i < n; i++) {
                size_t grp = i / groups[gi];
                switch (grp % 4) {
                case 0:
                    h[i] = (uint16_t)(rnd32() & 0xFBFF); /* finite, both signs */
                    break;
                case 1:
                    h[i] = (uint16_t)(rnd32() & 0x83FF); /* zeros and subnormals */
                    break;
                case 2:
                    h[i] = (uint16_t)(i % 7 == 0 ? 0x7BFF : 0x0001); /* one large value */
                    break;
                default:
                    h[i] = (uint16_t)(rnd32() % 2 ? 0x8000 : 0); /* signed zeros */
                    break;
                }
            }
            const gencache_tensor_desc d = {.dtype = GENCACHE_DTYPE_F16,
                                            .ndim = 1,
                                            .shape = {(int64_t)n},
                                            .byte_order = GENCACHE_BYTE_ORDER_LITTLE};
            gencache_quant_options o;
            gencache_quant_options_init(&o);
            o.codec = GENCACHE_CODEC_INT8_GROUP;
            o.group_size = groups[gi];
            size_t na, nb;
            memset(pa, 0x5A, sizeof pa);
            memset(pb, 0xA5, sizeof pb);
            CHECK_OK(gencache__quant_encode_with(v, &d, h, n * 2, &o, pa, sizeof pa, &na));
            CHECK_OK(gencache__quant_encode_with(s, &d, h, n * 2, &o, pb, sizeof pb, &nb));
            CHECK_UINT_EQ(na, nb);
            CHECK_MEM_EQ(pa, pb, na);
            if (n >= 3 * (size_t)groups[gi]) {
                for (int bad = 0; bad < 2; bad++) {
                    size_t at = groups[gi] + groups[gi] / 2;
                    uint16_t keep = h[at];
                    h[at] = bad ? 0x7E01 : 0xFC00; /* NaN, -Inf */
                    CHECK_INT_EQ(
                        gencache__quant_encode_with(v, &d, h, n * 2, &o, pa, sizeof pa, &na),
                        GENCACHE_EINVAL);
                    CHECK_INT_EQ(
                        gencache__quant_encode_with(s, &d, h, n * 2, &o, pb, sizeof pb, &nb),
                        GENCACHE_EINVAL);
                    h[at] = keep;
                }
            }
        }
}

TEST_CASE(quant_groups_match_scalar)
{
    const gencache__codec_kernels *k = gencache__codec_kernels_avx512();
    if (!k) {
        printf("this CPU has no AVX-512 (F, BW, VL): nothing to compare\n");
        return;
    }
    check_groups(k);
    check_groups(gencache__codec_kernels_best());
}

/* The AVX-512 table without VBMI, which the dispatch takes on CPUs without it, is checked here
 * too where the CPU has VBMI and the dispatch takes the other. */
TEST_CASE(avx512bw_matches_scalar)
{
    const gencache__codec_kernels *k = gencache__codec_kernels_avx512bw();
    if (!k) {
        printf("this CPU has no AVX-512 (F, BW, VL): nothing to compare\n");
        return;
    }
    CHECK_STR_EQ(k->name, "avx512bw");
    compare(k);
    check_groups(k);
}

/* Per-tensor quantization of a large tensor runs its second pass backwards in blocks
 * (quant.c): the payload must still be that of one forward pass of the scalar kernel, for every
 * table and source format, at sizes of one call, exactly two blocks and blocks plus a remainder,
 * and a NaN in the last element still refuses the tensor. */
TEST_CASE(per_tensor_blocks_match_one_pass)
{
    const gencache__codec_kernels *s = gencache__codec_kernels_scalar();
    const gencache__codec_kernels *tables[3] = {s, gencache__codec_kernels_avx2(),
                                                gencache__codec_kernels_avx512()};
    const size_t block = GENCACHE__LARGE_BLOCK;
    const size_t counts[] = {2 * block - 1, 2 * block, 3 * block + 12345};
    const size_t max = 3 * block + 12345;
    float *x = malloc(4 * max);
    uint16_t *h = malloc(2 * max);
    int8_t *want = malloc(max);
    size_t cap = max + 4096;
    unsigned char *payload = malloc(cap);
    CHECK(x && h && want && payload);
    for (size_t i = 0; i < max; i++) {
        x[i] = (float)((int32_t)(rnd32() % 200001) - 100000) * 0.013f;
        h[i] = (uint16_t)(rnd32() & 0xBBFF);
    }
    static const gencache_dtype dts[] = {GENCACHE_DTYPE_F32, GENCACHE_DTYPE_F16,
                                         GENCACHE_DTYPE_BF16};
    for (size_t ci = 0; ci < sizeof counts / sizeof counts[0]; ci++) {
        size_t n = counts[ci];
        for (size_t di = 0; di < 3; di++) {
            gencache_dtype dt = dts[di];
            const void *src = dt == GENCACHE_DTYPE_F32 ? (const void *)x : (const void *)h;
            float amax, scale, inv;
            if (dt == GENCACHE_DTYPE_F32) {
                CHECK_INT_EQ(s->amax_f32(x, n, &amax), 0);
                gencache__quant_scale(amax, &scale, &inv);
                s->quant_f32(want, x, n, inv);
            } else if (dt == GENCACHE_DTYPE_F16) {
                CHECK_INT_EQ(s->amax_f16(h, n, &amax), 0);
                gencache__quant_scale(amax, &scale, &inv);
                s->quant_f16(want, h, n, inv);
            } else {
                CHECK_INT_EQ(s->amax_bf16(h, n, &amax), 0);
                gencache__quant_scale(amax, &scale, &inv);
                s->quant_bf16(want, h, n, inv);
            }
            const gencache_tensor_desc d = {.dtype = dt,
                                            .ndim = 1,
                                            .shape = {(int64_t)n},
                                            .byte_order = GENCACHE_BYTE_ORDER_LITTLE};
            size_t es = gencache_dtype_size(dt);
            for (int t = 0; t < 3; t++) {
                if (!tables[t])
                    continue;
                size_t got;
                gencache_quant_info info;
                memset(payload, 0x5A, cap);
                CHECK_OK(gencache__quant_encode_with(tables[t], &d, src, n * es, NULL, payload, cap,
                                                     &got));
                CHECK_OK(gencache_quant_info_get(payload, got, &info));
                CHECK_UINT_EQ(got, info.data_offset + n);
                CHECK_MEM_EQ(payload + info.scales_offset, &scale, 4);
                CHECK_MEM_EQ(payload + info.data_offset, want, n);
            }
        }
    }
    /* A NaN (f16) in the very last element: the maximum pass sees it before anything is
     * quantized. */
    size_t n = counts[2];
    uint16_t keep = h[n - 1];
    h[n - 1] = 0x7E00;
    const gencache_tensor_desc d = {.dtype = GENCACHE_DTYPE_F16,
                                    .ndim = 1,
                                    .shape = {(int64_t)n},
                                    .byte_order = GENCACHE_BYTE_ORDER_LITTLE};
    for (int t = 0; t < 3; t++)
        if (tables[t])
            CHECK_INT_EQ(
                gencache__quant_encode_with(tables[t], &d, h, n * 2, NULL, payload, cap, NULL),
                GENCACHE_EINVAL);
    h[n - 1] = keep;
    free(x);
    free(h);
    free(want);
    free(payload);
}

/* The maxima read a large input as two streams and the rest on its own: one large value among
 * small ones is found wherever it sits (each stream's start and end, the remainder, the last
 * element), as is a NaN, for every table and format. */
TEST_CASE(amax_finds_one_value_anywhere)
{
    const gencache__codec_kernels *tables[3] = {gencache__codec_kernels_scalar(),
                                                gencache__codec_kernels_avx2(),
                                                gencache__codec_kernels_avx512()};
    const size_t n = (1u << 18) + 77; /* 512 KiB of f16: prefetched, two streams */
    float *x = malloc(4 * n);
    uint16_t *h = malloc(2 * n);
    CHECK(x && h);
    for (size_t i = 0; i < n; i++) {
        x[i] = (float)(i % 100) * (i % 2 ? -0.01f : 0.01f);
        h[i] = (uint16_t)((i % 2 ? 0x8000u : 0u) | (i % 0x2000u)); /* below 0x2000: small */
    }
    size_t half = n / 128 * 64;
    const size_t spots[] = {0, 1, half - 1, half, half + 1, 2 * half - 1, 2 * half, n - 2, n - 1};
    for (size_t si = 0; si < sizeof spots / sizeof spots[0]; si++) {
        size_t at = spots[si];
        float kx = x[at];
        uint16_t kh = h[at];
        x[at] = -1234.5f;
        h[at] = 0xC123; /* -2.57 as f16, -10.2 as bf16: larger than all the others */
        for (int t = 0; t < 3; t++) {
            if (!tables[t])
                continue;
            float m;
            CHECK_INT_EQ(tables[t]->amax_f32(x, n, &m), 0);
            CHECK(m == 1234.5f);
            CHECK_INT_EQ(tables[t]->amax_f16(h, n, &m), 0);
            CHECK(m == gencache__f16_to_f32_one(0x4123));
            CHECK_INT_EQ(tables[t]->amax_bf16(h, n, &m), 0);
            CHECK(m == gencache__bf16_to_f32_one(0x4123));
        }
        x[at] = NAN;
        h[at] = 0x7FC0; /* a NaN in f16 and in bf16 */
        for (int t = 0; t < 3; t++) {
            if (!tables[t])
                continue;
            float m;
            CHECK_INT_EQ(tables[t]->amax_f32(x, n, &m), 1);
            CHECK_INT_EQ(tables[t]->amax_f16(h, n, &m), 1);
            CHECK_INT_EQ(tables[t]->amax_bf16(h, n, &m), 1);
        }
        x[at] = kx;
        h[at] = kh;
    }
    free(x);
    free(h);
}

/* Every table of this CPU, the scalar one first. */
static size_t all_tables(const gencache__codec_kernels **t)
{
    size_t n = 0;
    t[n++] = gencache__codec_kernels_scalar();
    if (gencache__codec_kernels_avx2())
        t[n++] = gencache__codec_kernels_avx2();
    if (gencache__codec_kernels_avx512bw())
        t[n++] = gencache__codec_kernels_avx512bw();
    if (gencache__codec_kernels_avx512() &&
        gencache__codec_kernels_avx512() != gencache__codec_kernels_avx512bw())
        t[n++] = gencache__codec_kernels_avx512();
    return n;
}

/* The integer nearest the exact product, ties to even, worked out here independently of the
 * kernels: in long double, whose 64-bit significand holds the product of two f32 values. */
static int8_t nearest_of_product(float x, float inv)
{
    long double p = (long double)x * (long double)inv;
    long double r = roundl(p); /* ties away from zero */
    if (fabsl(p - truncl(p)) == 0.5L && fmodl(r, 2.0L) != 0.0L)
        r -= p > 0 ? 1.0L : -1.0L;
    return (int8_t)r;
}

/* Quantization rounds the exact product once. Rounding the f32 product first, then to an
 * integer, differs where that product lands on a half: e.g. 0.5 + 2^-25 rounds to 0.5 in f32,
 * then to 0, where the exact value rounds to 1. Every f16 value of magnitude up to each amax,
 * for 300 amax values, in every table; the test counts such double-rounding cases and needs
 * some, so it is known to tell the two rules apart. */
TEST_CASE(quant_rounds_the_exact_product_once)
{
    const gencache__codec_kernels *t[4];
    size_t nt = all_tables(t);
    enum { MAXN = 2 * 0x7C00 };
    uint16_t *h = malloc(2 * MAXN);
    int8_t *want = malloc(MAXN), *got = malloc(MAXN);
    CHECK(h && want && got);
    size_t twice = 0, total = 0;
    for (int k = 0; k < 300; k++) {
        /* amax: an f16 value, from the smallest normal to the largest finite. */
        uint16_t top = (uint16_t)(0x0400 + rnd32() % (0x7BFF - 0x0400 + 1));
        float amax = gencache__f16_to_f32_one(top), scale, inv;
        gencache__quant_scale(amax, &scale, &inv);
        size_t n = 0;
        for (uint16_t m = 0; m <= top; m++) {
            h[n++] = m;
            h[n++] = (uint16_t)(m | 0x8000u);
        }
        for (size_t i = 0; i < n; i++) {
            float x = gencache__f16_to_f32_one(h[i]);
            want[i] = nearest_of_product(x, inv);
            float r = nearbyintf(x * inv); /* f32 product, then the integer */
            twice += (int8_t)r != want[i];
        }
        total += n;
        for (size_t ti = 0; ti < nt; ti++) {
            memset(got, 0x55, n);
            t[ti]->quant_f16(got, h, n, inv);
            CHECK_MEM_EQ(got, want, n);
        }
    }
    printf("%zu elements, %zu where rounding twice would differ\n", total, twice);
    CHECK(twice > 0);
    free(h);
    free(want);
    free(got);
}

/* The results do not depend on the rounding mode a program has set: the scalar code rounds on
 * an exact product, the AVX-512 loops embed round-to-nearest-even, and the AVX2 loops, whose
 * fused multiply-add rounds as MXCSR says, leave the work to the scalar loop under another
 * mode. */
TEST_CASE(quant_ignores_the_rounding_mode)
{
    const gencache__codec_kernels *t[4];
    size_t nt = all_tables(t);
    enum { N = 4099 };
    static float x[N];
    static uint16_t h[N];
    static int8_t want[2][N], got[N];
    for (size_t i = 0; i < N; i++) {
        x[i] = (float)((int32_t)(rnd32() % 4001) - 2000) * 0.0625f; /* many exact ties */
        h[i] = (uint16_t)(rnd32() & 0xBBFF);
    }
    float a32, a16, scale, inv32, inv16;
    CHECK_INT_EQ(t[0]->amax_f32(x, N, &a32), 0);
    CHECK_INT_EQ(t[0]->amax_f16(h, N, &a16), 0);
    gencache__quant_scale(a32, &scale, &inv32);
    gencache__quant_scale(a16, &scale, &inv16);
    t[0]->quant_f32(want[0], x, N, inv32);
    t[0]->quant_f16(want[1], h, N, inv16);
    static const int modes[] = {FE_UPWARD, FE_DOWNWARD, FE_TOWARDZERO};
    for (size_t mi = 0; mi < sizeof modes / sizeof modes[0]; mi++) {
        for (size_t ti = 0; ti < nt; ti++) {
            CHECK_INT_EQ(fesetround(modes[mi]), 0);
            t[ti]->quant_f32(got, x, N, inv32);
            int same32 = memcmp(got, want[0], N) == 0;
            t[ti]->quant_f16(got, h, N, inv16);
            int same16 = memcmp(got, want[1], N) == 0;
            fesetround(FE_TONEAREST);
            CHECK(same32);
            CHECK(same16);
        }
    }
}
