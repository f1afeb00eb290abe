/*
 * decode_png.c: PNG through libpng. Samples keep the file's own layout: gray, gray+alpha, RGB or
 * RGBA at 8 or 16 bits (big-endian, as libpng delivers them); palettes become RGB, or RGBA when
 * the palette carries transparency; gray of 1, 2 or 4 bits is widened to 8 bits by bit
 * replication (0..15 -> 0..255, as Pillow does). libpng reports errors by longjmp, so everything
 * allocated after setjmp lives in volatile locals and is freed on the error path.
 */
#include <png.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

#include "image.h"

typedef struct png_src {
    const unsigned char *data;
    size_t size;
    size_t pos;
} png_src;

typedef struct png_err {
    int code; /* GENCACHE_E* reported by the longjmp */
} png_err;

static void read_fn(png_structp png, png_bytep out, size_t n)
{
    png_src *src = png_get_io_ptr(png);
    if (n > src->size - src->pos) {
        /* Truncated: the decoder needed bytes the file does not have. */
        png_error(png, "truncated PNG");
    }
    memcpy(out, src->data + src->pos, n);
    src->pos += n;
}

static void error_fn(png_structp png, png_const_charp msg)
{
    (void)msg;
    png_longjmp(png, 1);
}

static void warning_fn(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg; /* Warnings (bad ancillary CRC, unknown chunks) do not change the pixels. */
}

int gencache__image_decode_png(const unsigned char *data, size_t size,
                               const gencache_image_limits *limits, gencache_image **out)
{
    *out = NULL;
    /* The dimensions sit at fixed offsets of the IHDR chunk, which must come first: refuse an
     * oversized image before libpng reads anything else. */
    if (size >= 24 && memcmp(data + 12, "IHDR", 4) == 0) {
        uint32_t w = (uint32_t)data[16] << 24 | (uint32_t)data[17] << 16 | (uint32_t)data[18] << 8 |
                     data[19];
        uint32_t h = (uint32_t)data[20] << 24 | (uint32_t)data[21] << 16 | (uint32_t)data[22] << 8 |
                     data[23];
        if (w > limits->max_width || h > limits->max_height || (uint64_t)w * h > limits->max_pixels)
            return GENCACHE_ELIMIT;
    }
    png_src src = {data, size, 0};
    png_err err = {GENCACHE_EPARSE};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &err, error_fn, warning_fn);
    if (!png)
        return GENCACHE_ENOMEM;
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return GENCACHE_ENOMEM;
    }
    /* Modified after setjmp and read after a longjmp: must be volatile. */
    gencache_image *volatile img = NULL;
    png_bytep *volatile rows = NULL;
    volatile int rc = GENCACHE_EPARSE;

    if (setjmp(png_jmpbuf(png))) {
        free(rows);
        gencache_image_free(img);
        png_destroy_read_struct(&png, &info, NULL);
        return rc;
    }
    png_set_read_fn(png, &src, read_fn);
    /* Dimensions are checked against our limits below, right after the header, so they get
     * GENCACHE_ELIMIT; libpng's own bound covers the memory one ancillary chunk may take once
     * decompressed (iCCP, zTXt: a compressed chunk can be a bomb of its own). */
    png_set_user_limits(png, PNG_UINT_31_MAX, PNG_UINT_31_MAX);
    png_set_chunk_malloc_max(png, 8u << 20);
    png_set_chunk_cache_max(png, 1000);
    png_read_info(png, info);

    png_uint_32 width, height;
    int depth, color, interlace;
    png_get_IHDR(png, info, &width, &height, &depth, &color, &interlace, NULL, NULL);
    if (width > limits->max_width || height > limits->max_height ||
        (uint64_t)width * height > limits->max_pixels) {
        rc = GENCACHE_ELIMIT;
        png_longjmp(png, 1);
    }
    if (color == PNG_COLOR_TYPE_PALETTE) {
        png_set_palette_to_rgb(png);
        if (png_get_valid(png, info, PNG_INFO_tRNS))
            png_set_tRNS_to_alpha(png);
    } else if (depth < 8) {
        png_set_expand_gray_1_2_4_to_8(png);
    }
    /* A tRNS chunk on a gray or RGB image names one transparent colour; the samples themselves
     * are unchanged and are what we keep. */
    png_set_interlace_handling(png);
    png_read_update_info(png, info);

    uint32_t channels = png_get_channels(png, info);
    uint32_t bits = png_get_bit_depth(png, info);
    gencache_image *im;
    rc = gencache__image_alloc(limits, width, height, channels, bits, &im);
    if (rc != GENCACHE_OK)
        png_longjmp(png, 1);
    img = im;
    img->format = GENCACHE_IMAGE_PNG;
    rc = GENCACHE_EPARSE;
    if (png_get_rowbytes(png, info) != img->stride)
        png_error(png, "unexpected row size");
    png_bytep *r = malloc(sizeof *r * height);
    if (!r) {
        rc = GENCACHE_ENOMEM;
        png_longjmp(png, 1);
    }
    rows = r;
    for (png_uint_32 y = 0; y < height; y++)
        r[y] = img->pixels + (size_t)y * img->stride;
    png_read_image(png, r);
    /* Read on to IEND: a file cut after its last row is still a truncated file (the zlib
     * checksum and the chunk CRCs after it were never checked). */
    png_read_end(png, NULL);

    free(rows);
    png_destroy_read_struct(&png, &info, NULL);
    *out = img;
    return GENCACHE_OK;
}
