/*
 * resize.h: the pieces of Pillow's Lanczos resize (resize.c), exposed so the hashing code can fuse
 * the luminance conversion with the horizontal pass and skip the intermediate gray plane.
 */
#ifndef GENCACHE_IMAGE_RESIZE_H
#define GENCACHE_IMAGE_RESIZE_H

#include <stdint.h>

/* Fixed-point coefficients of one axis: for output sample i, the input range starts at
 * bounds[2i] and has bounds[2i+1] samples, weighted by k[i * ksize + 0 ...]. */
typedef struct gencache__resize_coeffs {
    int32_t *k;  /* out_size * ksize weights, 22 fractional bits */
    int *bounds; /* out_size pairs (first input sample, count) */
    int ksize;   /* weights per output sample (the rest are zero) */
    uint32_t in_size, out_size;
} gencache__resize_coeffs;

int gencache__resize_coeffs_init(gencache__resize_coeffs *c, uint32_t in_size, uint32_t out_size);
void gencache__resize_coeffs_free(gencache__resize_coeffs *c);
/* Pillow's clip8: round-down of the 22-bit fixed point value, clamped to 0..255. */
uint8_t gencache__resize_clip8(int64_t v);
/* The horizontal pass for one row: in has c->in_size samples, out gets c->out_size. */
void gencache__resize_row(const gencache__resize_coeffs *c, const uint8_t *in, uint8_t *out);
/* The vertical pass: in holds rows first_row.. of `width` samples; out gets c->out_size rows. */
void gencache__resize_vertical(const gencache__resize_coeffs *c, const uint8_t *in, uint32_t width,
                               uint32_t first_row, uint8_t *out);

#endif
