/*
 * simd.h: the AVX2 kernels of simd_avx2.c and the AVX-512 ones of simd_avx512.c. Callers ask
 * gencache__simd_level() which set to use; every kernel produces exactly what its scalar
 * counterpart in luma.c / resize.c produces.
 */
#ifndef GENCACHE_IMAGE_SIMD_H
#define GENCACHE_IMAGE_SIMD_H

#include <stdint.h>

#include "image.h"
#include "resize.h"

/* The kernel sets, narrowest first. */
enum { GENCACHE__SIMD_SCALAR = 0, GENCACHE__SIMD_AVX2 = 1, GENCACHE__SIMD_AVX512 = 2 };

/* The widest set this CPU runs (AVX-512 needs F, BW, VL, VBMI and VNNI). */
int gencache__simd_max_level(void);
/* The set the hashes use: the fastest one this CPU runs (docs/BENCHMARKS.md has the timings
 * that chose it), narrowed by the environment variable GENCACHE_SIMD (scalar, avx2, avx512)
 * or by gencache__simd_set_level(). */
int gencache__simd_level(void);
/* Tests and benchmarks compare the paths: sets the level, clamped to what the CPU runs. Not
 * meant to be called while other threads hash. */
void gencache__simd_set_level(int level);
/* True when gencache__simd_level() is at least AVX2. */
int gencache__simd_available(void);
/* 0 switches the vector kernels off, 1 back to the default level. */
void gencache__simd_enable(int on);

/* One row of the luminance plane as 16-bit values into out (32-byte aligned); scratch holds
 * width bytes. */
void gencache__simd_luma_row16(const gencache_image *img, uint32_t y, int16_t *out,
                               uint8_t *scratch);
void gencache__simd512_luma_row16(const gencache_image *img, uint32_t y, int16_t *out,
                                  uint8_t *scratch);
/* out[x0..width) of that row by the scalar rules, widened: the tail a vector kernel leaves, or
 * a whole row (x0 = 0) of a layout without one. */
void gencache__simd_luma_tail16(const gencache_image *img, uint32_t y, uint32_t x0, int16_t *out,
                                uint8_t *scratch);

/* The horizontal coefficients of one resize, split into 16-bit parts: k = hi * mul + lo, with
 * lo centred (|lo| <= mul / 2) so that the sum of the lo products, which the kernels mostly only
 * bound, has the narrowest range. */
typedef struct gencache__simd_hplan {
    int16_t *hi, *lo;   /* out_size rows of kpad values, 32-byte aligned */
    int32_t *slack;     /* per output: 255 * sum of its positive lo values, the most the lo part
                           can add */
    int32_t *slack_neg; /* per output: 255 * sum of minus its negative lo values, the most the lo
                           part can take away */
    int *start;         /* per output: first row buffer element read, its window start (plus
                           bias) rounded down to a multiple of `align` (the weights are shifted to
                           match), so every load of a 64-byte aligned buffer is aligned */
    int *len;           /* per output: elements from start that cover its window, a multiple of
                           align (the AVX-512 kernels read only these; the AVX2 ones read kpad) */
    int kpad;           /* ksize plus the alignment lead, rounded up to a multiple of align */
    int align;          /* samples per vector: 16 (AVX2) or 32 (AVX-512) */
    int bias;           /* where sample 0 of a row sits in the row buffers the kernels read (below
                           align; 0 for AVX2): chosen so that the windows need the fewest vectors */
    int mul;            /* the smallest that makes every hi fit in 16 bits */
    const gencache__resize_coeffs *c; /* borrowed */
} gencache__simd_hplan;

/* The split for the kernels of `level` (AVX2 or AVX-512). Returns GENCACHE_OK, GENCACHE_ENOMEM,
 * or GENCACHE_EUNSUPPORTED when the split could overflow (extreme downscales: use the scalar
 * pass). */
int gencache__simd_hplan_init(gencache__simd_hplan *hp, const gencache__resize_coeffs *c,
                              int level);
void gencache__simd_hplan_free(gencache__simd_hplan *hp);
/* The horizontal pass of one row; `in` is 64-byte aligned and holds hp->bias zeros, in_size
 * samples and kpad zeros. The plan must have been made for the same level. */
void gencache__simd_resize_row(const gencache__simd_hplan *hp, const int16_t *in, uint8_t *out);
void gencache__simd512_resize_row(const gencache__simd_hplan *hp, const int16_t *in, uint8_t *out);
/* The horizontal pass of two rows at once (same results as two calls of the above). */
void gencache__simd_resize_rows2(const gencache__simd_hplan *hp, const int16_t *in0,
                                 const int16_t *in1, uint8_t *out0, uint8_t *out1);
/* The AVX-512 horizontal pass of four rows at once: row r is read at in + r * in_stride and
 * written to out + r * out_stride (same results as four calls of gencache__simd512_resize_row).
 * The prefetch_bytes at prefetch (the pixels of the rows to come; NULL and 0 for none) are
 * brought into cache meanwhile. */
void gencache__simd512_resize_rows4(const gencache__simd_hplan *hp, const int16_t *in,
                                    size_t in_stride, uint8_t *out, size_t out_stride,
                                    const void *prefetch, size_t prefetch_bytes);
/* The vertical pass, as gencache__resize_vertical(). */
void gencache__simd_resize_vertical(const gencache__resize_coeffs *c, const uint8_t *in,
                                    uint32_t width, uint32_t first_row, uint8_t *out);
void gencache__simd512_resize_vertical(const gencache__resize_coeffs *c, const uint8_t *in,
                                       uint32_t width, uint32_t first_row, uint8_t *out);
/* The same from the AVX-512 split of the vertical axis (vp, made by gencache__simd_hplan_init for
 * that axis): 16-bit multiply-adds on pairs of rows, exact in both parts. */
void gencache__simd512_resize_vertical_split(const gencache__simd_hplan *vp, const uint8_t *in,
                                             uint32_t width, uint32_t first_row, uint8_t *out);

#endif
