/*
 * simd.h: the AVX2 kernels of simd_avx2.c. Callers check gencache__simd_available() first; every
 * kernel produces exactly what its scalar counterpart in luma.c / resize.c produces.
 */
#ifndef GENCACHE_IMAGE_SIMD_H
#define GENCACHE_IMAGE_SIMD_H

#include <stdint.h>

#include "image.h"
#include "resize.h"

/* True when the CPU has AVX2 and the kernels are not switched off. */
int gencache__simd_available(void);
/* Tests compare both paths: 0 switches the kernels off, 1 back on (when the CPU has AVX2). */
void gencache__simd_enable(int on);

/* One row of the luminance plane as 16-bit values into out (32-byte aligned); scratch holds
 * width bytes. */
void gencache__simd_luma_row16(const gencache_image *img, uint32_t y, int16_t *out,
                               uint8_t *scratch);

/* The horizontal coefficients of one resize, split into 16-bit halves: k = hi << shift + lo. */
typedef struct gencache__simd_hplan {
    int16_t *hi, *lo; /* out_size rows of kpad values, 32-byte aligned */
    int32_t *slack;   /* per output: 255 * sum of its lo values, the most the lo part can add */
    int *start;       /* per output: first input sample read, its window start rounded down to
                         a multiple of 16 (the weights are shifted to match), so every load of
                         a 32-byte aligned row is aligned */
    int kpad;         /* ksize rounded up to 16 */
    int shift;
    const gencache__resize_coeffs *c; /* borrowed */
} gencache__simd_hplan;

/* Returns GENCACHE_OK, GENCACHE_ENOMEM, or GENCACHE_EUNSUPPORTED when the split could overflow
 * (extreme downscales: use the scalar pass). */
int gencache__simd_hplan_init(gencache__simd_hplan *hp, const gencache__resize_coeffs *c);
void gencache__simd_hplan_free(gencache__simd_hplan *hp);
/* The horizontal pass of one row; `in` is 32-byte aligned and holds in_size samples followed by
 * kpad zeros. */
void gencache__simd_resize_row(const gencache__simd_hplan *hp, const int16_t *in, uint8_t *out);
/* The horizontal pass of two rows at once (same results as two calls of the above). */
void gencache__simd_resize_rows2(const gencache__simd_hplan *hp, const int16_t *in0,
                                 const int16_t *in1, uint8_t *out0, uint8_t *out1);
/* The vertical pass, as gencache__resize_vertical(). */
void gencache__simd_resize_vertical(const gencache__resize_coeffs *c, const uint8_t *in,
                                    uint32_t width, uint32_t first_row, uint8_t *out);

#endif
