/*
 * simd_avx2.c: AVX2 versions of the two loops that dominate a perceptual hash of a large image,
 * the luminance conversion and the horizontal Lanczos pass, plus the vertical pass. They compute
 * exactly the integers the scalar code (luma.c, resize.c) computes: luminance with the same
 * fixed-point weights and rounding, and each resampled sample as the same sum of pixel x 22-bit
 * coefficient products, only split so that 16-bit multiply-adds can form it (k = hi * mul + lo,
 * with mul chosen so hi fits in 16 bits and the lo sums cannot overflow). The functions are
 * compiled for AVX2 only; hash.c calls them when the CPU has it. The split and the choice of
 * kernel set (gencache__simd_level) are here too, shared with simd_avx512.c.
 */
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#include "image.h"
#include "resize.h"
#include "simd.h"

#define PRECISION_BITS 22

#define AVX2 __attribute__((target("avx2")))

/* (r, g) and (g, b) pairs of 4 RGB pixels per 128-bit lane, as 16-bit values. The weight of G,
 * 38470, does not fit a signed 16-bit lane, so it is split between the two pairs. */
AVX2 static inline __m256i luma8_rgb(__m256i v, __m256i m_rg, __m256i m_gb, __m256i w_rg,
                                     __m256i w_gb, __m256i round)
{
    __m256i rg = _mm256_shuffle_epi8(v, m_rg);
    __m256i gb = _mm256_shuffle_epi8(v, m_gb);
    __m256i s = _mm256_add_epi32(_mm256_madd_epi16(rg, w_rg), _mm256_madd_epi16(gb, w_gb));
    return _mm256_srli_epi32(_mm256_add_epi32(s, round), 16);
}

AVX2 void gencache__simd_luma_row16(const gencache_image *img, uint32_t y, int16_t *out,
                                    uint8_t *scratch)
{
    const uint8_t *p = img->pixels + (size_t)y * img->stride;
    uint32_t w = img->width, x = 0;
    if (img->bits == 8 && (img->channels == 3 || img->channels == 4)) {
        const int c = (int)img->channels;
        /* Pixel i of a lane sits at byte c * i; -1 (0x80) zeroes the high byte. */
        const __m256i m_rg =
            c == 3 ? _mm256_setr_epi8(0, -1, 1, -1, 3, -1, 4, -1, 6, -1, 7, -1, 9, -1, 10, -1, 0,
                                      -1, 1, -1, 3, -1, 4, -1, 6, -1, 7, -1, 9, -1, 10, -1)
                   : _mm256_setr_epi8(0, -1, 1, -1, 4, -1, 5, -1, 8, -1, 9, -1, 12, -1, 13, -1, 0,
                                      -1, 1, -1, 4, -1, 5, -1, 8, -1, 9, -1, 12, -1, 13, -1);
        const __m256i m_gb =
            c == 3 ? _mm256_setr_epi8(1, -1, 2, -1, 4, -1, 5, -1, 7, -1, 8, -1, 10, -1, 11, -1, 1,
                                      -1, 2, -1, 4, -1, 5, -1, 7, -1, 8, -1, 10, -1, 11, -1)
                   : _mm256_setr_epi8(1, -1, 2, -1, 5, -1, 6, -1, 9, -1, 10, -1, 13, -1, 14, -1, 1,
                                      -1, 2, -1, 5, -1, 6, -1, 9, -1, 10, -1, 13, -1, 14, -1);
        const __m256i w_rg = _mm256_set1_epi32(19595 | (32767 << 16));
        const __m256i w_gb = _mm256_set1_epi32((38470 - 32767) | (7471 << 16));
        const __m256i round = _mm256_set1_epi32(0x8000);
        /* 16 pixels per step, 4 per 128-bit load (a lane holds 4 whole pixels); the last load
         * reads 16 bytes from the position of pixel 12, so stop while that stays inside the
         * row. (Two 32-byte loads spread by a dword permute measured slower.) */
        size_t row_bytes = (size_t)w * c;
#pragma GCC unroll 2
        for (; (size_t)(x + 12) * c + 16 <= row_bytes; x += 16) {
            const uint8_t *q = p + (size_t)x * c;
            __m256i a =
                _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)q)),
                                        _mm_loadu_si128((const __m128i *)(q + 4 * c)), 1);
            __m256i b = _mm256_inserti128_si256(
                _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(q + 8 * c))),
                _mm_loadu_si128((const __m128i *)(q + 12 * c)), 1);
            __m256i la = luma8_rgb(a, m_rg, m_gb, w_rg, w_gb, round); /* px 0-3 | 4-7 */
            __m256i lb = luma8_rgb(b, m_rg, m_gb, w_rg, w_gb, round); /* px 8-11 | 12-15 */
            __m256i packed = _mm256_packus_epi32(la, lb);             /* 0-3 8-11 | 4-7 12-15 */
            packed = _mm256_permute4x64_epi64(packed, 0xD8);
            _mm256_store_si256((__m256i *)(out + x), packed);
        }
    } else if (img->bits == 8 && img->channels == 1) {
        for (; x + 16 <= w; x += 16) {
            __m128i v = _mm_loadu_si128((const __m128i *)(p + x));
            _mm256_storeu_si256((__m256i *)(out + x), _mm256_cvtepu8_epi16(v));
        }
    }
    /* The tail, or a whole row of a rarer layout. */
    gencache__simd_luma_tail16(img, y, x, out, scratch);
}

void gencache__simd_luma_tail16(const gencache_image *img, uint32_t y, uint32_t x0, int16_t *out,
                                uint8_t *scratch)
{
    const uint8_t *p = img->pixels + (size_t)y * img->stride;
    const uint32_t c = img->channels;
    if (img->bits == 8 && c != 2) {
        for (uint32_t x = x0; x < img->width; x++) {
            const uint8_t *q = p + (size_t)x * c;
            out[x] =
                c == 1 ? q[0]
                       : (int16_t)((q[0] * 19595u + q[1] * 38470u + q[2] * 7471u + 0x8000u) >> 16);
        }
        return;
    }
    gencache__image_luma_row(img, y, scratch);
    for (uint32_t x = x0; x < img->width; x++)
        out[x] = scratch[x];
}

int gencache__simd_hplan_init(gencache__simd_hplan *hp, const gencache__resize_coeffs *c, int level)
{
    memset(hp, 0, sizeof *hp);
    const int align = level >= GENCACHE__SIMD_AVX512 ? 32 : 16;
    int32_t maxk = 0;
    for (size_t i = 0; i < (size_t)c->out_size * c->ksize; i++) {
        int32_t a = c->k[i] < 0 ? -c->k[i] : c->k[i];
        if (a > maxk)
            maxk = a;
    }
    /* hi = k / mul rounded to nearest must fit in int16 (with its sign), and lo = k - hi * mul
     * then lies within mul / 2 of zero. The smallest such mul leaves the lo part, which the
     * kernels only bound unless the bound is ambiguous, the narrowest range (for 1024 -> 32,
     * mul 5 where a power of two would need 8, and a third of the ambiguous outputs). */
    int64_t mul = (maxk + 32766 - 1) / 32766;
    if (mul < 1)
        mul = 1;
    /* Room for the window shifted by up to align - 1 samples of alignment. */
    int kpad = (c->ksize + 2 * (align - 1)) & ~(align - 1);
    /* The lo sums: at most kpad * 255 * mul / 2 either way per output; keep them within int32. */
    if ((int64_t)kpad * 255 * (mul / 2 + 1) > INT32_MAX || mul > 32767)
        return GENCACHE_EUNSUPPORTED;
    /* aligned_alloc wants a multiple of the alignment. */
    size_t bytes = (sizeof(int16_t) * (size_t)c->out_size * kpad + 64 + 63) & ~(size_t)63;
    hp->hi = aligned_alloc(64, bytes);
    hp->lo = aligned_alloc(64, bytes);
    hp->slack = malloc(sizeof(int32_t) * ((size_t)c->out_size + 8));
    hp->slack_neg = malloc(sizeof(int32_t) * ((size_t)c->out_size + 8));
    hp->start = malloc(sizeof(int) * ((size_t)c->out_size + 8));
    hp->len = malloc(sizeof(int) * ((size_t)c->out_size + 8));
    if (!hp->hi || !hp->lo || !hp->slack || !hp->slack_neg || !hp->start || !hp->len) {
        free(hp->hi);
        free(hp->lo);
        free(hp->slack);
        free(hp->slack_neg);
        free(hp->start);
        free(hp->len);
        memset(hp, 0, sizeof *hp);
        return GENCACHE_ENOMEM;
    }
    /* The AVX-512 kernels read each window in whole vectors from its aligned start: the offset of
     * sample 0 in the row buffer that needs the fewest vectors in all is taken (for 1024 -> 32,
     * 16 makes every inner window of 192 samples exactly 6 vectors instead of 7). The AVX2
     * luminance stores aligned vectors, so its rows start at 0. */
    int bias = 0;
    if (align == 32) {
        int64_t best = INT64_MAX;
        for (int b = 0; b < align; b++) {
            int64_t vectors = 0;
            for (uint32_t xx = 0; xx < c->out_size; xx++)
                vectors +=
                    (((c->bounds[xx * 2] + b) & (align - 1)) + c->bounds[xx * 2 + 1] + align - 1) /
                    align;
            if (vectors < best) {
                best = vectors;
                bias = b;
            }
        }
    }
    for (uint32_t xx = 0; xx < c->out_size; xx++) {
        int n = c->bounds[xx * 2 + 1];
        int lead = (c->bounds[xx * 2] + bias) & (align - 1);
        hp->start[xx] = c->bounds[xx * 2] + bias - lead;
        hp->len[xx] = (lead + n + align - 1) & ~(align - 1);
        int32_t pos = 0, neg = 0;
        for (int j = 0; j < kpad; j++) {
            int32_t k = j >= lead && j - lead < n ? c->k[(size_t)xx * c->ksize + j - lead] : 0;
            int32_t hi = (int32_t)((k >= 0 ? k + mul / 2 : k - mul / 2) / mul);
            int32_t lo = k - hi * (int32_t)mul;
            hp->hi[(size_t)xx * kpad + j] = (int16_t)hi;
            hp->lo[(size_t)xx * kpad + j] = (int16_t)lo;
            if (lo > 0)
                pos += lo;
            else
                neg -= lo;
        }
        hp->slack[xx] = 255 * pos;
        hp->slack_neg[xx] = 255 * neg;
    }
    hp->kpad = kpad;
    hp->align = align;
    hp->bias = bias;
    hp->mul = (int)mul;
    hp->c = c;
    return GENCACHE_OK;
}

void gencache__simd_hplan_free(gencache__simd_hplan *hp)
{
    free(hp->hi);
    free(hp->lo);
    free(hp->slack);
    free(hp->slack_neg);
    free(hp->start);
    free(hp->len);
    memset(hp, 0, sizeof *hp);
}

/* One output sample's accumulator: the hi sums times mul plus the lo sums. No lane can
 * overflow: |hi sum * mul| stays below 255 times the sum of |k| (plus a little), about 2^30. */
AVX2 static inline __m256i dot(const gencache__simd_hplan *hp, const int16_t *in, uint32_t xx)
{
    const int16_t *src = in + hp->start[xx];
    const int16_t *hi = hp->hi + (size_t)xx * hp->kpad;
    const int16_t *lo = hp->lo + (size_t)xx * hp->kpad;
    __m256i ah = _mm256_setzero_si256(), al = _mm256_setzero_si256();
    for (int j = 0; j < hp->kpad; j += 16) {
        __m256i v = _mm256_load_si256((const __m256i *)(src + j));
        ah = _mm256_add_epi32(ah,
                              _mm256_madd_epi16(v, _mm256_load_si256((const __m256i *)(hi + j))));
        al = _mm256_add_epi32(al,
                              _mm256_madd_epi16(v, _mm256_load_si256((const __m256i *)(lo + j))));
    }
    return _mm256_add_epi32(_mm256_mullo_epi32(ah, _mm256_set1_epi32(hp->mul)), al);
}

/* `in` must hold in_size samples followed by at least kpad zeros. */
AVX2 void gencache__simd_resize_row(const gencache__simd_hplan *hp, const int16_t *in, uint8_t *out)
{
    const gencache__resize_coeffs *c = hp->c;
    const __m256i half = _mm256_set1_epi32(1 << (PRECISION_BITS - 1));
    uint32_t xx = 0;
    /* Eight outputs at a time: their accumulators are summed across lanes by a tree of
     * horizontal adds, then rounded and clamped together, as clip8 does one at a time. */
    for (; xx + 8 <= c->out_size; xx += 8) {
        __m256i a0 = dot(hp, in, xx), a1 = dot(hp, in, xx + 1);
        __m256i a2 = dot(hp, in, xx + 2), a3 = dot(hp, in, xx + 3);
        __m256i a4 = dot(hp, in, xx + 4), a5 = dot(hp, in, xx + 5);
        __m256i a6 = dot(hp, in, xx + 6), a7 = dot(hp, in, xx + 7);
        __m256i s01 = _mm256_hadd_epi32(a0, a1), s23 = _mm256_hadd_epi32(a2, a3);
        __m256i s45 = _mm256_hadd_epi32(a4, a5), s67 = _mm256_hadd_epi32(a6, a7);
        __m256i s0123 = _mm256_hadd_epi32(s01, s23), s4567 = _mm256_hadd_epi32(s45, s67);
        /* lanes: [0 1 2 3 | 0 1 2 3] and [4 5 6 7 | 4 5 6 7], low and high halves to add */
        __m256i lowhalves = _mm256_permute2x128_si256(s0123, s4567, 0x20);
        __m256i highhalves = _mm256_permute2x128_si256(s0123, s4567, 0x31);
        __m256i sum = _mm256_add_epi32(_mm256_add_epi32(lowhalves, highhalves), half);
        /* clip8: below zero -> 0, at or above 256 << 22 -> 255, else sum >> 22. */
        __m256i v = _mm256_srai_epi32(sum, PRECISION_BITS);
        v = _mm256_max_epi32(v, _mm256_setzero_si256());
        v = _mm256_min_epi32(v, _mm256_set1_epi32(255));
        int32_t o[8];
        _mm256_storeu_si256((__m256i *)o, v);
        for (int i = 0; i < 8; i++)
            out[xx + i] = (uint8_t)o[i];
    }
    for (; xx < c->out_size; xx++) {
        __m256i a = dot(hp, in, xx);
        __m128i s = _mm_add_epi32(_mm256_castsi256_si128(a), _mm256_extracti128_si256(a, 1));
        s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
        s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
        out[xx] =
            gencache__resize_clip8((int64_t)_mm_cvtsi128_si32(s) + (1 << (PRECISION_BITS - 1)));
    }
}

/* The hi part of one output for two rows at once: each coefficient load serves both rows. */
AVX2 static inline __attribute__((always_inline)) void dot2_hi(const gencache__simd_hplan *hp,
                                                               const int16_t *in0,
                                                               const int16_t *in1, uint32_t xx,
                                                               __m256i *r0, __m256i *r1)
{
    int start = hp->start[xx];
    const int16_t *s0 = in0 + start, *s1 = in1 + start;
    const int16_t *hi = hp->hi + (size_t)xx * hp->kpad;
    __m256i h0 = _mm256_setzero_si256(), h1 = _mm256_setzero_si256();
#pragma GCC unroll 4
    for (int j = 0; j < hp->kpad; j += 16) {
        __m256i kh = _mm256_load_si256((const __m256i *)(hi + j));
        h0 = _mm256_add_epi32(h0,
                              _mm256_madd_epi16(_mm256_load_si256((const __m256i *)(s0 + j)), kh));
        h1 = _mm256_add_epi32(h1,
                              _mm256_madd_epi16(_mm256_load_si256((const __m256i *)(s1 + j)), kh));
    }
    *r0 = h0;
    *r1 = h1;
}

/* The exact lo part of one output of one row. */
AVX2 static inline int32_t dot_lo(const gencache__simd_hplan *hp, const int16_t *in, uint32_t xx)
{
    const int16_t *src = in + hp->start[xx];
    const int16_t *lo = hp->lo + (size_t)xx * hp->kpad;
    __m256i al = _mm256_setzero_si256();
    for (int j = 0; j < hp->kpad; j += 16)
        al = _mm256_add_epi32(al, _mm256_madd_epi16(_mm256_load_si256((const __m256i *)(src + j)),
                                                    _mm256_load_si256((const __m256i *)(lo + j))));
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(al), _mm256_extracti128_si256(al, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
}

AVX2 static inline __m256i clip8_vec(__m256i sum)
{
    __m256i v = _mm256_srai_epi32(
        _mm256_add_epi32(sum, _mm256_set1_epi32(1 << (PRECISION_BITS - 1))), PRECISION_BITS);
    return _mm256_min_epi32(_mm256_max_epi32(v, _mm256_setzero_si256()), _mm256_set1_epi32(255));
}

/* Eight outputs of one row from their hi accumulators. The exact sum lies within the output's
 * slacks of hi * mul (the lo part adds at most 255 times its positive values and takes away at
 * most 255 times its negative ones). When both ends round and clamp to the same byte, that byte
 * is the answer without the lo part; otherwise (a fraction of a percent of the outputs for
 * 1024 -> 32) the lo part is computed exactly. */
AVX2 static inline __attribute__((always_inline)) void finish8_hi(const gencache__simd_hplan *hp,
                                                                  const __m256i *a,
                                                                  const int16_t *in, uint32_t xx,
                                                                  uint8_t *out)
{
    __m256i s01 = _mm256_hadd_epi32(a[0], a[1]), s23 = _mm256_hadd_epi32(a[2], a[3]);
    __m256i s45 = _mm256_hadd_epi32(a[4], a[5]), s67 = _mm256_hadd_epi32(a[6], a[7]);
    __m256i s0123 = _mm256_hadd_epi32(s01, s23), s4567 = _mm256_hadd_epi32(s45, s67);
    __m256i hsum = _mm256_add_epi32(_mm256_permute2x128_si256(s0123, s4567, 0x20),
                                    _mm256_permute2x128_si256(s0123, s4567, 0x31));
    __m256i mid = _mm256_mullo_epi32(hsum, _mm256_set1_epi32(hp->mul));
    __m256i lower =
        _mm256_sub_epi32(mid, _mm256_loadu_si256((const __m256i *)(hp->slack_neg + xx)));
    __m256i upper = _mm256_add_epi32(mid, _mm256_loadu_si256((const __m256i *)(hp->slack + xx)));
    __m256i rl = clip8_vec(lower), ru = clip8_vec(upper);
    int32_t r[8];
    _mm256_storeu_si256((__m256i *)r, rl);
    unsigned ambiguous =
        (unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(rl, ru))) ^ 0xFFu;
    if (ambiguous) {
        int32_t lo[8];
        _mm256_storeu_si256((__m256i *)lo, mid);
        for (int i = 0; i < 8; i++)
            if (ambiguous & (1u << i))
                r[i] = gencache__resize_clip8((int64_t)lo[i] + dot_lo(hp, in, xx + (uint32_t)i) +
                                              (1 << (PRECISION_BITS - 1)));
    }
    for (int i = 0; i < 8; i++)
        out[i] = (uint8_t)r[i];
}

AVX2 void gencache__simd_resize_rows2(const gencache__simd_hplan *hp, const int16_t *in0,
                                      const int16_t *in1, uint8_t *out0, uint8_t *out1)
{
    const gencache__resize_coeffs *c = hp->c;
    uint32_t xx = 0;
    for (; xx + 8 <= c->out_size; xx += 8) {
        __m256i a[8], b[8];
        for (int i = 0; i < 8; i++)
            dot2_hi(hp, in0, in1, xx + (uint32_t)i, &a[i], &b[i]);
        finish8_hi(hp, a, in0, xx, out0 + xx);
        finish8_hi(hp, b, in1, xx, out1 + xx);
    }
    if (xx < c->out_size) {
        gencache__simd_resize_row(hp, in0, out0);
        gencache__simd_resize_row(hp, in1, out1);
    }
}

AVX2 void gencache__simd_resize_vertical(const gencache__resize_coeffs *c, const uint8_t *in,
                                         uint32_t width, uint32_t first_row, uint8_t *out)
{
    const __m256i half = _mm256_set1_epi32(1 << (PRECISION_BITS - 1));
    for (uint32_t yy = 0; yy < c->out_size; yy++) {
        int ymin = c->bounds[yy * 2] - (int)first_row, ymax = c->bounds[yy * 2 + 1];
        const int32_t *k = &c->k[(size_t)yy * c->ksize];
        uint32_t xx = 0;
        for (; xx + 8 <= width; xx += 8) {
            __m256i acc = half;
            for (int y = 0; y < ymax; y++) {
                __m128i px =
                    _mm_loadl_epi64((const __m128i *)(in + (size_t)(y + ymin) * width + xx));
                acc = _mm256_add_epi32(
                    acc, _mm256_mullo_epi32(_mm256_cvtepu8_epi32(px), _mm256_set1_epi32(k[y])));
            }
            int32_t v[8];
            _mm256_storeu_si256((__m256i *)v, acc);
            for (int i = 0; i < 8; i++)
                out[(size_t)yy * width + xx + i] = gencache__resize_clip8(v[i]);
        }
        for (; xx < width; xx++) {
            int32_t ss = 1 << (PRECISION_BITS - 1);
            for (int y = 0; y < ymax; y++)
                ss += (int32_t)in[(size_t)(y + ymin) * width + xx] * k[y];
            out[(size_t)yy * width + xx] = gencache__resize_clip8(ss);
        }
    }
}

/* -1: not chosen yet; otherwise a GENCACHE__SIMD_ level. */
static int simd_state = -1;

int gencache__simd_max_level(void)
{
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2"))
        return GENCACHE__SIMD_SCALAR;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vbmi") &&
        __builtin_cpu_supports("avx512vnni"))
        return GENCACHE__SIMD_AVX512;
    return GENCACHE__SIMD_AVX2;
}

static int default_level(void)
{
    int max = gencache__simd_max_level();
    const char *want = getenv("GENCACHE_SIMD");
    if (want && strcmp(want, "scalar") == 0)
        return GENCACHE__SIMD_SCALAR;
    if (want && strcmp(want, "avx2") == 0 && max > GENCACHE__SIMD_AVX2)
        return GENCACHE__SIMD_AVX2;
    return max;
}

int gencache__simd_level(void)
{
    int st = __atomic_load_n(&simd_state, __ATOMIC_RELAXED);
    if (st < 0) {
        st = default_level();
        __atomic_store_n(&simd_state, st, __ATOMIC_RELAXED);
    }
    return st;
}

void gencache__simd_set_level(int level)
{
    int max = gencache__simd_max_level();
    if (level < GENCACHE__SIMD_SCALAR)
        level = GENCACHE__SIMD_SCALAR;
    __atomic_store_n(&simd_state, level < max ? level : max, __ATOMIC_RELAXED);
}

int gencache__simd_available(void)
{
    return gencache__simd_level() >= GENCACHE__SIMD_AVX2;
}

void gencache__simd_enable(int on)
{
    __atomic_store_n(&simd_state, on ? default_level() : GENCACHE__SIMD_SCALAR, __ATOMIC_RELAXED);
}
