/*
 * image.h: what the files of the image module share. A decoded image keeps the file's own sample
 * layout (1-4 channels, 8 or 16 bits, palettes expanded, sub-byte gray widened to 8 bits) in one
 * tightly packed buffer, 16-bit samples stored big-endian as PNG stores them, so the pixel digest
 * can hash the buffer as it is. Nothing here is API.
 */
#ifndef GENCACHE_IMAGE_INTERNAL_H
#define GENCACHE_IMAGE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "gencache.h"

struct gencache_image {
    uint32_t width;               /* pixels, >= 1 */
    uint32_t height;              /* pixels, >= 1 */
    uint32_t channels;            /* 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA */
    uint32_t bits;                /* bits per sample: 8 or 16 */
    gencache_image_format format; /* the container it was decoded from */
    size_t stride;                /* bytes per row: width * channels * bits / 8, no padding */
    unsigned char *pixels;        /* height * stride bytes */
};

/* Checks width x height x channels x bits against the limits and allocates an image with its
 * pixel buffer. Returns GENCACHE_OK, GENCACHE_ELIMIT, GENCACHE_EPARSE (zero size),
 * GENCACHE_ENOMEM. */
int gencache__image_alloc(const gencache_image_limits *limits, uint32_t width, uint32_t height,
                          uint32_t channels, uint32_t bits, gencache_image **out);

/* The per-format decoders. Each reads `size` bytes at `data` and returns a new image, or an
 * error with *out NULL: GENCACHE_EPARSE (corrupt, truncated), GENCACHE_ELIMIT (over a limit),
 * GENCACHE_EUNSUPPORTED (valid but a layout we do not decode), GENCACHE_ENOMEM. `limits` is
 * already filled. */
int gencache__image_decode_png(const unsigned char *data, size_t size,
                               const gencache_image_limits *limits, gencache_image **out);
int gencache__image_decode_jpeg(const unsigned char *data, size_t size,
                                const gencache_image_limits *limits, gencache_image **out);
int gencache__image_decode_webp(const unsigned char *data, size_t size,
                                const gencache_image_limits *limits, gencache_image **out);

/* The 8-bit luminance plane Pillow's convert("L") gives for this image (see luma.c), written to
 * a new buffer of width * height bytes that the caller frees. Returns GENCACHE_OK or
 * GENCACHE_ENOMEM. */
int gencache__image_luma(const gencache_image *img, unsigned char **out);
/* One row of that plane: width bytes. */
void gencache__image_luma_row(const gencache_image *img, uint32_t y, uint8_t *out);

/* Pillow's fixed-point separable resize with the Lanczos-3 filter, for one 8-bit plane. Writes
 * out_w * out_h bytes to out. Returns GENCACHE_OK or GENCACHE_ENOMEM. */
int gencache__image_resize_lanczos(const unsigned char *in, uint32_t in_w, uint32_t in_h,
                                   unsigned char *out, uint32_t out_w, uint32_t out_h);

/* The unnormalized DCT-II of scipy.fftpack.dct (type 2, norm None) of n doubles in place,
 * computed with the same operations in the same order as scipy's pocketfft so the results agree
 * to the last bit. n is 32 or 64. */
void gencache__image_dct2(double *x, size_t n);

#endif
