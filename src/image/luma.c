/*
 * luma.c: the 8-bit gray plane Pillow's convert("L") makes of an image, which is where every
 * imagehash algorithm starts. Colour uses ITU-R 601-2 weights in 16-bit fixed point with
 * rounding, L = (R*19595 + G*38470 + B*7471 + 0x8000) >> 16, alpha ignored. 16-bit files follow
 * what Pillow 9.4 does when it opens them: RGB, RGBA and gray+alpha keep the high byte of each
 * sample, while plain 16-bit gray becomes Pillow's 32-bit "I" mode, which convert("L") clamps to
 * 0..255 rather than scales.
 */
#include <stdlib.h>
#include <string.h>

#include "image.h"

static inline uint8_t rgb_to_l(unsigned r, unsigned g, unsigned b)
{
    return (uint8_t)((r * 19595u + g * 38470u + b * 7471u + 0x8000u) >> 16);
}

void gencache__image_luma_row(const gencache_image *img, uint32_t y, uint8_t *out)
{
    const uint8_t *p = img->pixels + (size_t)y * img->stride;
    uint32_t w = img->width;
    if (img->bits == 8) {
        switch (img->channels) {
        case 1:
            memcpy(out, p, w);
            break;
        case 2:
            for (uint32_t x = 0; x < w; x++)
                out[x] = p[2 * x];
            break;
        case 3:
            for (uint32_t x = 0; x < w; x++, p += 3)
                out[x] = rgb_to_l(p[0], p[1], p[2]);
            break;
        default:
            for (uint32_t x = 0; x < w; x++, p += 4)
                out[x] = rgb_to_l(p[0], p[1], p[2]);
            break;
        }
        return;
    }
    /* 16-bit, big-endian: p[0] is the high byte. */
    switch (img->channels) {
    case 1:
        for (uint32_t x = 0; x < w; x++, p += 2) {
            unsigned v = (unsigned)p[0] << 8 | p[1];
            out[x] = (uint8_t)(v > 255 ? 255 : v);
        }
        break;
    case 2:
        for (uint32_t x = 0; x < w; x++)
            out[x] = p[4 * x];
        break;
    default: {
        size_t px = img->channels * 2;
        for (uint32_t x = 0; x < w; x++, p += px)
            out[x] = rgb_to_l(p[0], p[2], p[4]);
        break;
    }
    }
}

int gencache__image_luma(const gencache_image *img, unsigned char **out)
{
    *out = malloc((size_t)img->width * img->height);
    if (!*out)
        return GENCACHE_ENOMEM;
    for (uint32_t y = 0; y < img->height; y++)
        gencache__image_luma_row(img, y, *out + (size_t)y * img->width);
    return GENCACHE_OK;
}
