/*
 * decode.c: the front door of image decoding. It reads a file under a size limit, recognises the
 * container by its signature and hands the bytes to the PNG, JPEG or WebP decoder; it also makes
 * images from pixels a caller decoded. Every image is allocated through gencache__image_alloc(),
 * which checks the limits before a byte of pixel memory is taken, so a hostile header can never
 * make us allocate more than the limits allow.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "image.h"

void gencache_image_limits_init(gencache_image_limits *limits)
{
    if (!limits)
        return;
    memset(limits, 0, sizeof *limits);
    limits->struct_size = sizeof *limits;
    limits->max_width = 16384;
    limits->max_height = 16384;
    limits->max_pixels = 64ull << 20;
    limits->max_bytes = 512ull << 20;
    limits->max_file_bytes = 256ull << 20;
}

/* Copies the caller's limits over the defaults, so an older, shorter struct still works. */
static int resolve_limits(const gencache_image_limits *in, gencache_image_limits *out)
{
    gencache_image_limits_init(out);
    if (!in)
        return GENCACHE_OK;
    if (in->struct_size < sizeof *in)
        return GENCACHE_EINVAL;
    *out = *in;
    out->struct_size = sizeof *out;
    return GENCACHE_OK;
}

int gencache__image_alloc(const gencache_image_limits *limits, uint32_t width, uint32_t height,
                          uint32_t channels, uint32_t bits, gencache_image **out)
{
    *out = NULL;
    if (width == 0 || height == 0)
        return GENCACHE_EPARSE;
    if (channels < 1 || channels > 4 || (bits != 8 && bits != 16))
        return GENCACHE_EUNSUPPORTED;
    if (width > limits->max_width || height > limits->max_height)
        return GENCACHE_ELIMIT;
    uint64_t pixels = (uint64_t)width * height;
    if (pixels > limits->max_pixels)
        return GENCACHE_ELIMIT;
    uint64_t stride = (uint64_t)width * channels * (bits / 8);
    uint64_t bytes = stride * height;
    if (bytes > limits->max_bytes || bytes > SIZE_MAX / 2)
        return GENCACHE_ELIMIT;
    gencache_image *img = calloc(1, sizeof *img);
    if (!img)
        return GENCACHE_ENOMEM;
    img->pixels = malloc((size_t)bytes);
    if (!img->pixels) {
        free(img);
        return GENCACHE_ENOMEM;
    }
    img->width = width;
    img->height = height;
    img->channels = channels;
    img->bits = bits;
    img->stride = (size_t)stride;
    *out = img;
    return GENCACHE_OK;
}

void gencache_image_free(gencache_image *img)
{
    if (!img)
        return;
    free(img->pixels);
    free(img);
}

int gencache_image_decode_memory(const void *data, size_t size, const gencache_image_limits *limits,
                                 gencache_image **out)
{
    if (out)
        *out = NULL;
    if (!out || (!data && size > 0))
        return GENCACHE_EINVAL;
    gencache_image_limits lim;
    int rc = resolve_limits(limits, &lim);
    if (rc != GENCACHE_OK)
        return rc;
    const unsigned char *p = data;
    if (size == 0)
        return GENCACHE_EPARSE;
    if (size >= 8 && memcmp(p, "\x89PNG\r\n\x1a\n", 8) == 0)
        return gencache__image_decode_png(p, size, &lim, out);
    if (size >= 3 && p[0] == 0xFF && p[1] == 0xD8 && p[2] == 0xFF)
        return gencache__image_decode_jpeg(p, size, &lim, out);
    if (size >= 12 && memcmp(p, "RIFF", 4) == 0 && memcmp(p + 8, "WEBP", 4) == 0)
        return gencache__image_decode_webp(p, size, &lim, out);
    /* A prefix of a known signature is a truncated file, not an unknown format. */
    static const unsigned char png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (size < 8 && memcmp(p, png_sig, size) == 0)
        return GENCACHE_EPARSE;
    if (size < 3 && p[0] == 0xFF && (size == 1 || p[1] == 0xD8))
        return GENCACHE_EPARSE;
    if (size < 12 && memcmp(p, "RIFF", size < 4 ? size : 4) == 0)
        return GENCACHE_EPARSE;
    return GENCACHE_EUNSUPPORTED;
}

/* Reads a whole regular file of at most max_bytes into a new buffer. */
static int read_file(const char *path, uint64_t max_bytes, unsigned char **buf_out,
                     size_t *size_out)
{
    *buf_out = NULL;
    *size_out = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return GENCACHE_EIO;
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return GENCACHE_EIO;
    }
    if ((uint64_t)st.st_size > max_bytes) {
        fclose(f);
        return GENCACHE_ELIMIT;
    }
    /* The size can change under us; read up to one byte past it to notice growth. */
    size_t cap = (size_t)st.st_size + 1, n = 0;
    unsigned char *buf = malloc(cap);
    if (!buf) {
        fclose(f);
        return GENCACHE_ENOMEM;
    }
    for (;;) {
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0)
            break;
        if (n == cap) {
            if ((uint64_t)cap > max_bytes) {
                free(buf);
                fclose(f);
                return GENCACHE_ELIMIT;
            }
            size_t ncap = cap * 2;
            unsigned char *nb = realloc(buf, ncap);
            if (!nb) {
                free(buf);
                fclose(f);
                return GENCACHE_ENOMEM;
            }
            buf = nb;
            cap = ncap;
        }
    }
    int err = ferror(f);
    fclose(f);
    if (err) {
        free(buf);
        return GENCACHE_EIO;
    }
    *buf_out = buf;
    *size_out = n;
    return GENCACHE_OK;
}

int gencache_image_decode_file(const char *path, const gencache_image_limits *limits,
                               gencache_image **out)
{
    if (out)
        *out = NULL;
    if (!path || !out)
        return GENCACHE_EINVAL;
    gencache_image_limits lim;
    int rc = resolve_limits(limits, &lim);
    if (rc != GENCACHE_OK)
        return rc;
    unsigned char *buf;
    size_t size;
    rc = read_file(path, lim.max_file_bytes, &buf, &size);
    if (rc != GENCACHE_OK)
        return rc;
    rc = gencache_image_decode_memory(buf, size, &lim, out);
    free(buf);
    return rc;
}

int gencache_image_from_pixels(const void *pixels, uint32_t width, uint32_t height, size_t stride,
                               gencache_pixel_format format, gencache_image **out)
{
    if (out)
        *out = NULL;
    if (!out || !pixels || width == 0 || height == 0)
        return GENCACHE_EINVAL;
    if (format != GENCACHE_PIXEL_L8 && format != GENCACHE_PIXEL_RGB8 &&
        format != GENCACHE_PIXEL_RGBA8)
        return GENCACHE_EINVAL;
    uint32_t channels = (uint32_t)format;
    if (stride / channels < width)
        return GENCACHE_EINVAL;
    gencache_image_limits lim;
    gencache_image_limits_init(&lim);
    gencache_image *img;
    int rc = gencache__image_alloc(&lim, width, height, channels, 8, &img);
    if (rc != GENCACHE_OK)
        return rc;
    img->format = GENCACHE_IMAGE_RAW;
    const unsigned char *src = pixels;
    for (uint32_t y = 0; y < height; y++)
        memcpy(img->pixels + (size_t)y * img->stride, src + (size_t)y * stride, img->stride);
    *out = img;
    return GENCACHE_OK;
}

int gencache_image_info_get(const gencache_image *img, gencache_image_info *out)
{
    if (!out)
        return GENCACHE_EINVAL;
    memset(out, 0, sizeof *out);
    if (!img)
        return GENCACHE_EINVAL;
    out->width = img->width;
    out->height = img->height;
    out->channels = img->channels;
    out->bits = img->bits;
    out->format = img->format;
    return GENCACHE_OK;
}
