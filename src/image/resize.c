/*
 * resize.c: Pillow's Image.resize(size, LANCZOS) for one 8-bit plane, reproduced step for step so
 * the thumbnails that perceptual hashes are made of agree with Pillow's to the last bit. The filter
 * is Lanczos-3 stretched by the scale (support 3 x scale when shrinking), coefficients are
 * computed in double, divided by their sum, and each rounded to 22 fractional bits; the
 * horizontal pass runs first and rounds and clamps to 8 bits, then the vertical pass. The kernel
 * is truncated at the image borders (and renormalized), as Pillow does.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "image.h"
#include "resize.h"

#define PRECISION_BITS (32 - 8 - 2)

static double sinc(double x)
{
    if (x == 0.0)
        return 1.0;
    x = x * M_PI;
    return sin(x) / x;
}

static double lanczos(double x)
{
    if (-3.0 <= x && x < 3.0)
        return sinc(x) * sinc(x / 3);
    return 0.0;
}

void gencache__resize_coeffs_free(gencache__resize_coeffs *c)
{
    if (!c)
        return;
    free(c->k);
    free(c->bounds);
    c->k = NULL;
    c->bounds = NULL;
}

int gencache__resize_coeffs_init(gencache__resize_coeffs *c, uint32_t in_size, uint32_t out_size)
{
    memset(c, 0, sizeof *c);
    /* Pillow's box is float; in0 = 0 and in1 = in_size are exact for any size we accept. */
    double scale = (double)((float)in_size - 0.0f) / out_size;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    double support = 3.0 * filterscale;
    int ksize = (int)ceil(support) * 2 + 1;
    double *kk = malloc(sizeof *kk * (size_t)out_size * (size_t)ksize);
    int32_t *k32 = malloc(sizeof *k32 * (size_t)out_size * (size_t)ksize);
    int *bounds = malloc(sizeof *bounds * 2 * (size_t)out_size);
    if (!kk || !k32 || !bounds) {
        free(kk);
        free(k32);
        free(bounds);
        return GENCACHE_ENOMEM;
    }
    for (uint32_t xx = 0; xx < out_size; xx++) {
        double center = 0.0 + (xx + 0.5) * scale;
        double ww = 0.0;
        double ss = 1.0 / filterscale;
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0)
            xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > (int)in_size)
            xmax = (int)in_size;
        xmax -= xmin;
        double *k = &kk[(size_t)xx * ksize];
        int x;
        for (x = 0; x < xmax; x++) {
            double w = lanczos((x + xmin - center + 0.5) * ss);
            k[x] = w;
            ww += w;
        }
        for (x = 0; x < xmax; x++) {
            if (ww != 0.0)
                k[x] /= ww;
        }
        for (; x < ksize; x++)
            k[x] = 0;
        bounds[xx * 2 + 0] = xmin;
        bounds[xx * 2 + 1] = xmax;
    }
    for (size_t i = 0; i < (size_t)out_size * ksize; i++) {
        if (kk[i] < 0)
            k32[i] = (int32_t)(-0.5 + kk[i] * (1 << PRECISION_BITS));
        else
            k32[i] = (int32_t)(0.5 + kk[i] * (1 << PRECISION_BITS));
    }
    free(kk);
    c->k = k32;
    c->bounds = bounds;
    c->ksize = ksize;
    c->out_size = out_size;
    c->in_size = in_size;
    return GENCACHE_OK;
}

uint8_t gencache__resize_clip8(int64_t v)
{
    if (v >= ((int64_t)1 << PRECISION_BITS << 8))
        return 255;
    if (v <= 0)
        return 0;
    return (uint8_t)(v >> PRECISION_BITS);
}

void gencache__resize_row(const gencache__resize_coeffs *c, const uint8_t *in, uint8_t *out)
{
    for (uint32_t xx = 0; xx < c->out_size; xx++) {
        int xmin = c->bounds[xx * 2], xmax = c->bounds[xx * 2 + 1];
        const int32_t *k = &c->k[(size_t)xx * c->ksize];
        const uint8_t *p = in + xmin;
        int32_t ss = 1 << (PRECISION_BITS - 1);
        for (int x = 0; x < xmax; x++)
            ss += (int32_t)p[x] * k[x];
        out[xx] = gencache__resize_clip8(ss);
    }
}

void gencache__resize_vertical(const gencache__resize_coeffs *c, const uint8_t *in, uint32_t width,
                               uint32_t first_row, uint8_t *out)
{
    for (uint32_t yy = 0; yy < c->out_size; yy++) {
        int ymin = c->bounds[yy * 2] - (int)first_row, ymax = c->bounds[yy * 2 + 1];
        const int32_t *k = &c->k[(size_t)yy * c->ksize];
        for (uint32_t xx = 0; xx < width; xx++) {
            int32_t ss = 1 << (PRECISION_BITS - 1);
            for (int y = 0; y < ymax; y++)
                ss += (int32_t)in[(size_t)(y + ymin) * width + xx] * k[y];
            out[(size_t)yy * width + xx] = gencache__resize_clip8(ss);
        }
    }
}

int gencache__image_resize_lanczos(const unsigned char *in, uint32_t in_w, uint32_t in_h,
                                   unsigned char *out, uint32_t out_w, uint32_t out_h)
{
    if (in_w == out_w && in_h == out_h) {
        memcpy(out, in, (size_t)in_w * in_h);
        return GENCACHE_OK;
    }
    gencache__resize_coeffs ch, cv;
    int rc = gencache__resize_coeffs_init(&ch, in_w, out_w);
    if (rc != GENCACHE_OK)
        return rc;
    rc = gencache__resize_coeffs_init(&cv, in_h, out_h);
    if (rc != GENCACHE_OK) {
        gencache__resize_coeffs_free(&ch);
        return rc;
    }
    if (in_w == out_w) {
        /* Only the vertical pass runs, on the input itself. */
        gencache__resize_vertical(&cv, in, in_w, 0, out);
    } else {
        /* The horizontal pass covers only the rows the vertical pass reads. */
        uint32_t first = (uint32_t)cv.bounds[0];
        uint32_t last = (uint32_t)(cv.bounds[out_h * 2 - 2] + cv.bounds[out_h * 2 - 1]);
        uint8_t *tmp = malloc((size_t)out_w * (last - first));
        if (!tmp) {
            gencache__resize_coeffs_free(&ch);
            gencache__resize_coeffs_free(&cv);
            return GENCACHE_ENOMEM;
        }
        for (uint32_t y = first; y < last; y++)
            gencache__resize_row(&ch, in + (size_t)y * in_w, tmp + (size_t)(y - first) * out_w);
        if (in_h == out_h)
            memcpy(out, tmp, (size_t)out_w * out_h);
        else
            gencache__resize_vertical(&cv, tmp, out_w, first, out);
        free(tmp);
    }
    gencache__resize_coeffs_free(&ch);
    gencache__resize_coeffs_free(&cv);
    return GENCACHE_OK;
}
