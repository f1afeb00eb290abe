/*
 * simd_avx512.c: AVX-512 versions of the kernels of simd_avx2.c (luminance, horizontal and
 * vertical Lanczos passes), chosen at run time when the CPU has AVX-512 F, BW, VL, VBMI and VNNI
 * (gencache__simd_level). They compute exactly the integers of the scalar code in luma.c and
 * resize.c, by the same means as the AVX2 kernels at twice the width:
 * - luminance: a one-source byte permute (VBMI) spreads the 16 RGB or RGBA pixels of one load
 *   into (R, G) and (G, B) 16-bit pairs across the whole register, and two VPDPWSSD (VNNI) form
 *   the fixed-point sums, where AVX2 needs four 128-bit loads and lane-local shuffles (the
 *   two-source permute, VPERMT2B, costs twice as much on the Xeons we measured);
 * - horizontal pass: the same hi/lo split of the coefficients (plans with align 32), each
 *   VPDPWSSD doing 32 multiply-adds and the accumulation of one output's window, four rows per
 *   coefficient load, with the next rows' pixels prefetched meanwhile;
 * - vertical pass: with the split of its own axis, two rows of 16 columns per VPDPWSSD (or, for
 *   an axis without a split, 16 columns per step with 32-bit products).
 */
#include <immintrin.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "image.h"
#include "resize.h"
#include "simd.h"

#define PRECISION_BITS 22

#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vbmi,avx512vnni,avx2")))

/* Byte permutes that spread 16 packed pixels, held in the low 48 (RGB) or all 64 (RGBA) bytes
 * of one register, into (R, G) and (G, B) 16-bit pairs, one pixel per dword: byte 4i picks the
 * first sample of pixel i, byte 4i + 2 the second; the odd bytes are zeroed by a mask. Index
 * [c - 3][pair]. */
static uint8_t perm[2][2][64];
/* The order that puts back the words of two blended vectors: word 2i holds pixel i, word 2i + 1
 * pixel 16 + i. */
static uint16_t unzip[32];
static pthread_once_t perm_once = PTHREAD_ONCE_INIT;

static void perm_init(void)
{
    for (int c = 3; c <= 4; c++)
        for (int i = 0; i < 16; i++) {
            int px = c * i;
            perm[c - 3][0][4 * i] = (uint8_t)px;           /* R */
            perm[c - 3][0][4 * i + 2] = (uint8_t)(px + 1); /* G */
            perm[c - 3][1][4 * i] = (uint8_t)(px + 1);     /* G */
            perm[c - 3][1][4 * i + 2] = (uint8_t)(px + 2); /* B */
        }
    for (int i = 0; i < 16; i++) {
        unzip[i] = (uint16_t)(2 * i);
        unzip[16 + i] = (uint16_t)(2 * i + 1);
    }
}

/* The luminance of the 16 pixels of v, pixel i in the high word of dword i. The weight of G,
 * 38470, does not fit a signed 16-bit lane, so it is split between the pairs. */
AVX512 static inline __m512i luma16(__m512i v, __m512i idx_rg, __m512i idx_gb, __m512i w_rg,
                                    __m512i w_gb, __m512i round)
{
    const __mmask64 even = 0x5555555555555555ull;
    __m512i rg = _mm512_maskz_permutexvar_epi8(even, idx_rg, v);
    __m512i gb = _mm512_maskz_permutexvar_epi8(even, idx_gb, v);
    return _mm512_dpwssd_epi32(_mm512_dpwssd_epi32(round, rg, w_rg), gb, w_gb);
}

AVX512 void gencache__simd512_luma_row16(const gencache_image *img, uint32_t y, int16_t *out,
                                         uint8_t *scratch)
{
    const uint8_t *p = img->pixels + (size_t)y * img->stride;
    uint32_t w = img->width, x = 0;
    if (img->bits == 8 && (img->channels == 3 || img->channels == 4)) {
        const int c = (int)img->channels;
        pthread_once(&perm_once, perm_init);
        const __m512i i_rg = _mm512_loadu_si512(perm[c - 3][0]);
        const __m512i i_gb = _mm512_loadu_si512(perm[c - 3][1]);
        const __m512i order = _mm512_loadu_si512(unzip);
        const __m512i w_rg = _mm512_set1_epi32(19595 | (32767 << 16));
        const __m512i w_gb = _mm512_set1_epi32((38470 - 32767) | (7471 << 16));
        const __m512i round = _mm512_set1_epi32(0x8000);
        const __mmask32 odd_words = 0xAAAAAAAAu;
        /* 32 pixels (32 * c bytes) per step, 16 per load; the second load is masked to the
         * bytes of the step, so nothing past the row is read. */
        const __mmask64 tail = c == 4 ? ~0ull : (1ull << 48) - 1;
        for (; x + 32 <= w; x += 32) {
            const uint8_t *q = p + (size_t)x * c;
            __m512i a = _mm512_loadu_si512(q);
            __m512i b = _mm512_maskz_loadu_epi8(tail, q + 16 * c);
            __m512i l0 = luma16(a, i_rg, i_gb, w_rg, w_gb, round);
            __m512i l1 = luma16(b, i_rg, i_gb, w_rg, w_gb, round);
            __m512i mix = _mm512_mask_blend_epi16(odd_words, _mm512_srli_epi32(l0, 16), l1);
            _mm512_storeu_si512(out + x, _mm512_permutexvar_epi16(order, mix));
        }
    } else if (img->bits == 8 && img->channels == 1) {
        for (; x + 32 <= w; x += 32)
            _mm512_storeu_si512(out + x,
                                _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)(p + x))));
    }
    /* The tail, or a whole row of a rarer layout. */
    gencache__simd_luma_tail16(img, y, x, out, scratch);
}

/* The exact sum of one output of one row (without the rounding half). */
AVX512 static inline int32_t dot_exact(const gencache__simd_hplan *hp, const int16_t *in,
                                       uint32_t xx)
{
    const int16_t *src = in + hp->start[xx];
    const int len = hp->len[xx];
    const int16_t *hi = hp->hi + (size_t)xx * hp->kpad;
    const int16_t *lo = hp->lo + (size_t)xx * hp->kpad;
    __m512i ah = _mm512_setzero_si512(), al = _mm512_setzero_si512();
    for (int j = 0; j < len; j += 32) {
        __m512i v = _mm512_loadu_si512(src + j);
        ah = _mm512_dpwssd_epi32(ah, v, _mm512_loadu_si512(hi + j));
        al = _mm512_dpwssd_epi32(al, v, _mm512_loadu_si512(lo + j));
    }
    __m512i a = _mm512_add_epi32(_mm512_mullo_epi32(ah, _mm512_set1_epi32(hp->mul)), al);
    return _mm512_reduce_add_epi32(a);
}

AVX512 static inline uint8_t clip8_one(int32_t sum)
{
    return gencache__resize_clip8((int64_t)sum + (1 << (PRECISION_BITS - 1)));
}

/* The sums of 16 vectors' lanes, vector i's in lane i, by a tree that halves the count of
 * vectors at each step. Where the pairing allows, one shuffle brings one vector's halves under the
 * other's and a blend supplies the rest (a shuffle and a blend instead of two shuffles, which
 * share one port with the permutes of the luminance kernel): 21 shuffles for 16 vectors. */
AVX512 static inline __m512i reduce16(const __m512i *a)
{
    __m512i b[8], c[4];
    /* b[i] blocks: a[2i] (blocks 0+2, 1+3), a[2i+1] (0+2, 1+3) */
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++)
        b[i] = _mm512_add_epi32(_mm512_shuffle_i32x4(a[2 * i], a[2 * i + 1], 0x4E),
                                _mm512_mask_blend_epi32(0xFF00, a[2 * i], a[2 * i + 1]));
        /* c[i] block k: the four partial sums of a[4i + k] */
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++)
        c[i] = _mm512_add_epi32(_mm512_shuffle_i32x4(b[2 * i], b[2 * i + 1], 0x88),
                                _mm512_shuffle_i32x4(b[2 * i], b[2 * i + 1], 0xDD));
    /* block k of d0: the dwords of c[0]'s block k summed in two halves, then those of c[1]'s;
     * d1 likewise of c[2] and c[3] */
    __m512i d0 = _mm512_add_epi32(_mm512_castps_si512(_mm512_shuffle_ps(
                                      _mm512_castsi512_ps(c[0]), _mm512_castsi512_ps(c[1]), 0x4E)),
                                  _mm512_mask_blend_epi32(0xCCCC, c[0], c[1]));
    __m512i d1 = _mm512_add_epi32(_mm512_castps_si512(_mm512_shuffle_ps(
                                      _mm512_castsi512_ps(c[2]), _mm512_castsi512_ps(c[3]), 0x4E)),
                                  _mm512_mask_blend_epi32(0xCCCC, c[2], c[3]));
    __m512i e = _mm512_add_epi32(_mm512_castps_si512(_mm512_shuffle_ps(
                                     _mm512_castsi512_ps(d0), _mm512_castsi512_ps(d1), 0x88)),
                                 _mm512_castps_si512(_mm512_shuffle_ps(
                                     _mm512_castsi512_ps(d0), _mm512_castsi512_ps(d1), 0xDD)));
    /* the halves summed: dword j of block k is the sum of c[j]'s block k, that of a[4j + k] */
    const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    return _mm512_permutexvar_epi32(order, e);
}

AVX512 static inline __m512i clip8_vec(__m512i sum)
{
    __m512i v = _mm512_srai_epi32(
        _mm512_add_epi32(sum, _mm512_set1_epi32(1 << (PRECISION_BITS - 1))), PRECISION_BITS);
    return _mm512_min_epi32(_mm512_max_epi32(v, _mm512_setzero_si512()), _mm512_set1_epi32(255));
}

/* Sixteen outputs of one row from their hi accumulators, as finish8_hi() in simd_avx2.c: the
 * exact sum lies within the output's slacks of hi * mul, and where both ends give the same byte
 * that byte is the answer; the few others get their lo part computed exactly. */
AVX512 static inline void finish16_hi(const gencache__simd_hplan *hp, const __m512i *a,
                                      const int16_t *in, uint32_t xx, uint8_t *out)
{
    __m512i mid = _mm512_mullo_epi32(reduce16(a), _mm512_set1_epi32(hp->mul));
    __m512i lower = _mm512_sub_epi32(mid, _mm512_loadu_si512(hp->slack_neg + xx));
    __m512i upper = _mm512_add_epi32(mid, _mm512_loadu_si512(hp->slack + xx));
    __m512i rl = clip8_vec(lower), ru = clip8_vec(upper);
    unsigned ambiguous = (unsigned)_mm512_cmpneq_epi32_mask(rl, ru);
    _mm_storeu_si128((__m128i *)out, _mm512_cvtepi32_epi8(rl));
    if (ambiguous) {
        int32_t lo[16];
        _mm512_storeu_si512(lo, mid);
        for (int i = 0; i < 16; i++)
            if (ambiguous & (1u << i)) {
                const int16_t *src = in + hp->start[xx + i];
                const int len = hp->len[xx + i];
                const int16_t *k = hp->lo + (size_t)(xx + i) * hp->kpad;
                __m512i al = _mm512_setzero_si512();
                for (int j = 0; j < len; j += 32)
                    al = _mm512_dpwssd_epi32(al, _mm512_loadu_si512(src + j),
                                             _mm512_loadu_si512(k + j));
                out[i] = clip8_one(lo[i] + _mm512_reduce_add_epi32(al));
            }
    }
}

AVX512 void gencache__simd512_resize_row(const gencache__simd_hplan *hp, const int16_t *in,
                                         uint8_t *out)
{
    for (uint32_t xx = 0; xx < hp->c->out_size; xx++)
        out[xx] = clip8_one(dot_exact(hp, in, xx));
}

/* The horizontal pass of R rows at once (in + r * in_stride to out + r * out_stride): each
 * coefficient load serves R rows, and R independent sums hide the multiply-add latency. The
 * loads, not the multiply-adds, bound the pass with fewer rows. The pf_bytes at pf are
 * prefetched a few lines per output, spread over the pass. */
AVX512 static inline __attribute__((always_inline)) void
resize_rows(const gencache__simd_hplan *hp, const int16_t *in, size_t in_stride, uint8_t *out,
            size_t out_stride, const int R, const uint8_t *pf, size_t pf_bytes)
{
    const uint32_t out_size = hp->c->out_size;
    uint32_t xx = 0;
    size_t pf_at = 0, pf_step = (pf_bytes / out_size + 64) & ~(size_t)63;
    for (; xx + 16 <= out_size; xx += 16) {
        __m512i a[4][16];
        for (int i = 0; i < 16; i++) {
            for (size_t e = pf_at + pf_step; pf_at < e && pf_at < pf_bytes; pf_at += 64)
                _mm_prefetch((const char *)pf + pf_at, _MM_HINT_T0);
            const int start = hp->start[xx + (uint32_t)i], len = hp->len[xx + (uint32_t)i];
            const int16_t *src = in + start;
            const int16_t *hi = hp->hi + (size_t)(xx + (uint32_t)i) * hp->kpad;
            __m512i h[4];
#pragma GCC unroll 4
            for (int r = 0; r < R; r++)
                h[r] = _mm512_setzero_si512();
            for (int j = 0; j < len; j += 32) {
                __m512i kh = _mm512_load_si512(hi + j);
#pragma GCC unroll 4
                for (int r = 0; r < R; r++)
                    h[r] = _mm512_dpwssd_epi32(
                        h[r], _mm512_load_si512(src + (size_t)r * in_stride + j), kh);
            }
#pragma GCC unroll 4
            for (int r = 0; r < R; r++)
                a[r][i] = h[r];
        }
        for (int r = 0; r < R; r++)
            finish16_hi(hp, a[r], in + (size_t)r * in_stride, xx,
                        out + (size_t)r * out_stride + xx);
    }
    for (; xx < out_size; xx++)
        for (int r = 0; r < R; r++)
            out[(size_t)r * out_stride + xx] =
                clip8_one(dot_exact(hp, in + (size_t)r * in_stride, xx));
}

AVX512 void gencache__simd512_resize_rows4(const gencache__simd_hplan *hp, const int16_t *in,
                                           size_t in_stride, uint8_t *out, size_t out_stride,
                                           const void *prefetch, size_t prefetch_bytes)
{
    resize_rows(hp, in, in_stride, out, out_stride, 4, prefetch, prefetch_bytes);
}

AVX512 void gencache__simd512_resize_vertical(const gencache__resize_coeffs *c, const uint8_t *in,
                                              uint32_t width, uint32_t first_row, uint8_t *out)
{
    const __m512i half = _mm512_set1_epi32(1 << (PRECISION_BITS - 1));
    for (uint32_t yy = 0; yy < c->out_size; yy++) {
        int ymin = c->bounds[yy * 2] - (int)first_row, ymax = c->bounds[yy * 2 + 1];
        const int32_t *k = &c->k[(size_t)yy * c->ksize];
        uint8_t *dst = out + (size_t)yy * width;
        uint32_t xx = 0;
        for (; xx + 16 <= width; xx += 16) {
            __m512i acc = half;
            for (int y = 0; y < ymax; y++) {
                __m128i px =
                    _mm_loadu_si128((const __m128i *)(in + (size_t)(y + ymin) * width + xx));
                acc = _mm512_add_epi32(
                    acc, _mm512_mullo_epi32(_mm512_cvtepu8_epi32(px), _mm512_set1_epi32(k[y])));
            }
            /* clip8 of each lane: the sum already holds the rounding half. */
            __m512i v = _mm512_srai_epi32(acc, PRECISION_BITS);
            v = _mm512_min_epi32(_mm512_max_epi32(v, _mm512_setzero_si512()),
                                 _mm512_set1_epi32(255));
            _mm_storeu_si128((__m128i *)(dst + xx), _mm512_cvtepi32_epi8(v));
        }
        for (; xx < width; xx++) {
            int32_t ss = 1 << (PRECISION_BITS - 1);
            for (int y = 0; y < ymax; y++)
                ss += (int32_t)in[(size_t)(y + ymin) * width + xx] * k[y];
            dst[xx] = gencache__resize_clip8(ss);
        }
    }
}

AVX512 void gencache__simd512_resize_vertical_split(const gencache__simd_hplan *vp,
                                                    const uint8_t *in, uint32_t width,
                                                    uint32_t first_row, uint8_t *out)
{
    const gencache__resize_coeffs *c = vp->c;
    const __m512i half = _mm512_set1_epi32(1 << (PRECISION_BITS - 1));
    const __m512i mul = _mm512_set1_epi32(vp->mul);
    for (uint32_t yy = 0; yy < c->out_size; yy++) {
        /* The window is rows [top, top + n); coefficient j of the plan weighs row
         * start + j - bias. Pairs of coefficients start at even j, so each pair is one dword of
         * the plan; the row of a pair outside the window has weight 0, and the other row of
         * the pair stands in for it so that nothing outside the buffer is read. */
        const int top = c->bounds[yy * 2], n = c->bounds[yy * 2 + 1];
        const int base = vp->start[yy] - vp->bias;
        const int j0 = (top - base) & ~1, j1 = top - base + n;
        const int16_t *hi = vp->hi + (size_t)yy * vp->kpad;
        const int16_t *lo = vp->lo + (size_t)yy * vp->kpad;
        for (uint32_t xx = 0; xx < width; xx += 32) {
            const __mmask32 cols = width - xx >= 32 ? ~0u : (1u << (width - xx)) - 1;
            __m512i h0 = _mm512_setzero_si512(), h1 = _mm512_setzero_si512();
            __m512i l0 = _mm512_setzero_si512(), l1 = _mm512_setzero_si512();
            for (int j = j0; j < j1; j += 2) {
                int r0 = base + j, r1 = r0 + 1;
                if (r0 < top)
                    r0 = r1;
                if (r1 >= top + n)
                    r1 = r0;
                __m512i a = _mm512_cvtepu8_epi16(
                    _mm256_maskz_loadu_epi8(cols, in + (size_t)(r0 - (int)first_row) * width + xx));
                __m512i b = _mm512_cvtepu8_epi16(
                    _mm256_maskz_loadu_epi8(cols, in + (size_t)(r1 - (int)first_row) * width + xx));
                /* Per 128-bit block k: columns 8k..8k+3 in pl, 8k+4..8k+7 in ph. */
                __m512i pl = _mm512_unpacklo_epi16(a, b), ph = _mm512_unpackhi_epi16(a, b);
                int32_t kh, kl;
                memcpy(&kh, hi + j, sizeof kh);
                memcpy(&kl, lo + j, sizeof kl);
                __m512i vh = _mm512_set1_epi32(kh), vl = _mm512_set1_epi32(kl);
                h0 = _mm512_dpwssd_epi32(h0, pl, vh);
                h1 = _mm512_dpwssd_epi32(h1, ph, vh);
                l0 = _mm512_dpwssd_epi32(l0, pl, vl);
                l1 = _mm512_dpwssd_epi32(l1, ph, vl);
            }
            __m512i v0 = _mm512_add_epi32(_mm512_mullo_epi32(h0, mul), _mm512_add_epi32(l0, half));
            __m512i v1 = _mm512_add_epi32(_mm512_mullo_epi32(h1, mul), _mm512_add_epi32(l1, half));
            v0 = _mm512_min_epi32(
                _mm512_max_epi32(_mm512_srai_epi32(v0, PRECISION_BITS), _mm512_setzero_si512()),
                _mm512_set1_epi32(255));
            v1 = _mm512_min_epi32(
                _mm512_max_epi32(_mm512_srai_epi32(v1, PRECISION_BITS), _mm512_setzero_si512()),
                _mm512_set1_epi32(255));
            /* The in-block pack puts the columns back in order. */
            _mm256_mask_storeu_epi8(out + (size_t)yy * width + xx, cols,
                                    _mm512_cvtepi16_epi8(_mm512_packs_epi32(v0, v1)));
        }
    }
}
