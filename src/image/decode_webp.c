/*
 * decode_webp.c: still WebP (lossy or lossless) through libwebp, to RGB, or to RGBA when the file
 * has alpha; the same pixels Pillow gets, as it also decodes with libwebp's defaults (fancy
 * upsampling for lossy). Animated files are refused. The header is checked against the limits
 * before libwebp decodes into our buffer, so it never allocates the image itself.
 */
#include <stdlib.h>
#include <string.h>

#include <webp/decode.h>

#include "image.h"

int gencache__image_decode_webp(const unsigned char *data, size_t size,
                                const gencache_image_limits *limits, gencache_image **out)
{
    *out = NULL;
    WebPBitstreamFeatures f;
    VP8StatusCode st = WebPGetFeatures(data, size, &f);
    if (st == VP8_STATUS_NOT_ENOUGH_DATA || st == VP8_STATUS_BITSTREAM_ERROR)
        return GENCACHE_EPARSE;
    if (st == VP8_STATUS_OUT_OF_MEMORY)
        return GENCACHE_ENOMEM;
    if (st != VP8_STATUS_OK)
        return GENCACHE_EUNSUPPORTED;
    if (f.has_animation)
        return GENCACHE_EUNSUPPORTED;
    if (f.width <= 0 || f.height <= 0)
        return GENCACHE_EPARSE;
    uint32_t channels = f.has_alpha ? 4 : 3;
    gencache_image *img;
    int rc =
        gencache__image_alloc(limits, (uint32_t)f.width, (uint32_t)f.height, channels, 8, &img);
    if (rc != GENCACHE_OK)
        return rc;
    img->format = GENCACHE_IMAGE_WEBP;
    size_t total = img->stride * img->height;
    uint8_t *p;
    if (channels == 4)
        p = WebPDecodeRGBAInto(data, size, img->pixels, total, (int)img->stride);
    else
        p = WebPDecodeRGBInto(data, size, img->pixels, total, (int)img->stride);
    if (!p) {
        gencache_image_free(img);
        return GENCACHE_EPARSE;
    }
    *out = img;
    return GENCACHE_OK;
}
