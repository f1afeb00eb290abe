/*
 * hash.c: the perceptual hashes ahash, dhash and phash as the Python imagehash library computes
 * them (average_hash, dhash, phash with Pillow and scipy), bit for bit. Each starts from a small
 * Lanczos thumbnail of the luminance (luma.c, resize.c); the luminance rows are made one at a time
 * and fed straight into the horizontal pass, so no full gray plane is ever allocated. Bits are
 * row-major, first bit most significant, printed as lowercase hex as imagehash prints them.
 */
#include <stdlib.h>
#include <string.h>

#include "image.h"
#include "resize.h"
#include "simd.h"
#include "axis_cache.h"

/* Largest thumbnail: phash at hash size 16 uses 64 x 64. */
#define THUMB_MAX (64 * 64)

/* The Lanczos thumbnail of the image's luminance, tw x th bytes, as
 * image.convert("L").resize((tw, th), LANCZOS) gives it. */
static int thumbnail(const gencache_image *img, uint32_t tw, uint32_t th, uint8_t *out)
{
    uint32_t w = img->width, h = img->height;
    if (w == tw && h == th) {
        for (uint32_t y = 0; y < h; y++)
            gencache__image_luma_row(img, y, out + (size_t)y * w);
        return GENCACHE_OK;
    }
    if (w == tw) {
        /* Vertical pass only: it reads the full-width luminance plane. */
        unsigned char *l;
        int rc = gencache__image_luma(img, &l);
        if (rc != GENCACHE_OK)
            return rc;
        rc = gencache__image_resize_lanczos(l, w, h, out, tw, th);
        free(l);
        return rc;
    }
    int level = gencache__simd_level();
    gencache__axis *ah, *av;
    int rc = gencache__axis_get(w, tw, level, &ah);
    if (rc != GENCACHE_OK)
        return rc;
    /* The AVX-512 vertical pass uses the split of its axis too (for a square image, the same
     * cached entry as the horizontal one). */
    rc = gencache__axis_get(h, th, level >= GENCACHE__SIMD_AVX512 ? level : 0, &av);
    if (rc != GENCACHE_OK) {
        gencache__axis_put(ah);
        return rc;
    }
    if (level > GENCACHE__SIMD_SCALAR && !ah->has_hp)
        level = GENCACHE__SIMD_SCALAR;
    int simd = level > GENCACHE__SIMD_SCALAR, wide = level >= GENCACHE__SIMD_AVX512;
    size_t bias = simd ? (size_t)ah->hp.bias : 0; /* where a row's sample 0 goes */
    const gencache__resize_coeffs *ch = &ah->c, *cv = &av->c;
    uint32_t first = (uint32_t)cv->bounds[0];
    uint32_t last = (uint32_t)(cv->bounds[th * 2 - 2] + cv->bounds[th * 2 - 1]);
    uint8_t *tmp = malloc((size_t)tw * (last - first));
    uint8_t *row = malloc(w);
    /* Four (AVX-512) or two 16-bit luminance rows, each 64-byte aligned, starting bias zeros in
     * and followed by the zeros the kernels may read past it. */
    size_t r16 = simd ? ((size_t)w + (size_t)ah->hp.kpad + 32 + 31) & ~(size_t)31 : 0;
    size_t nrows = wide ? 4 : 2;
    int16_t *row16 = simd ? aligned_alloc(64, nrows * r16 * sizeof *row16) : NULL;
    if (row16)
        memset(row16, 0, nrows * r16 * sizeof *row16);
    if (!row || !tmp || (simd && !row16)) {
        rc = GENCACHE_ENOMEM;
        goto done;
    }
    /* Each luminance row goes straight into the horizontal pass; only the rows the vertical
     * pass reads are made. */
    uint32_t y = first;
    if (wide)
        for (; y + 4 <= last; y += 4) {
            for (uint32_t r = 0; r < 4; r++)
                gencache__simd512_luma_row16(img, y + r, row16 + r * r16 + bias, row);
            /* The next four rows' pixels are fetched while these are resampled: the luminance
             * kernel then finds them in cache rather than waiting on memory. */
            uint32_t ahead = last - (y + 4) < 4 ? last - (y + 4) : 4;
            gencache__simd512_resize_rows4(&ah->hp, row16, r16, tmp + (size_t)(y - first) * tw, tw,
                                           img->pixels + (size_t)(y + 4) * img->stride,
                                           ahead * img->stride);
        }
    else if (simd)
        for (; y + 2 <= last; y += 2) {
            gencache__simd_luma_row16(img, y, row16 + bias, row);
            gencache__simd_luma_row16(img, y + 1, row16 + r16 + bias, row);
            gencache__simd_resize_rows2(&ah->hp, row16, row16 + r16, tmp + (size_t)(y - first) * tw,
                                        tmp + (size_t)(y + 1 - first) * tw);
        }
    for (; y < last; y++) {
        uint8_t *dst = tmp + (size_t)(y - first) * tw;
        if (wide) {
            gencache__simd512_luma_row16(img, y, row16 + bias, row);
            gencache__simd512_resize_row(&ah->hp, row16, dst);
        } else if (simd) {
            gencache__simd_luma_row16(img, y, row16 + bias, row);
            gencache__simd_resize_row(&ah->hp, row16, dst);
        } else {
            gencache__image_luma_row(img, y, row);
            gencache__resize_row(ch, row, dst);
        }
    }
    if (h == th)
        memcpy(out, tmp, (size_t)tw * th);
    else if (wide && av->has_hp)
        gencache__simd512_resize_vertical_split(&av->hp, tmp, tw, first, out);
    else if (wide)
        gencache__simd512_resize_vertical(cv, tmp, tw, first, out);
    else if (simd)
        gencache__simd_resize_vertical(cv, tmp, tw, first, out);
    else
        gencache__resize_vertical(cv, tmp, tw, first, out);
done:
    free(row16);
    free(row);
    free(tmp);
    gencache__axis_put(ah);
    gencache__axis_put(av);
    return rc;
}

static void set_bit(unsigned char *bits, unsigned i, int v)
{
    if (v)
        bits[i >> 3] |= (unsigned char)(0x80u >> (i & 7));
}

static int ahash(const gencache_image *img, unsigned hs, unsigned char *bits)
{
    uint8_t px[THUMB_MAX];
    int rc = thumbnail(img, hs, hs, px);
    if (rc != GENCACHE_OK)
        return rc;
    unsigned n = hs * hs;
    uint64_t sum = 0;
    for (unsigned i = 0; i < n; i++)
        sum += px[i];
    /* numpy.mean: the float64 sum (exact here) divided by the count. */
    double mean = (double)sum / n;
    for (unsigned i = 0; i < n; i++)
        set_bit(bits, i, (double)px[i] > mean);
    return GENCACHE_OK;
}

static int dhash(const gencache_image *img, unsigned hs, unsigned char *bits)
{
    uint8_t px[THUMB_MAX];
    int rc = thumbnail(img, hs + 1, hs, px);
    if (rc != GENCACHE_OK)
        return rc;
    for (unsigned r = 0; r < hs; r++)
        for (unsigned c = 0; c < hs; c++)
            set_bit(bits, r * hs + c, px[r * (hs + 1) + c + 1] > px[r * (hs + 1) + c]);
    return GENCACHE_OK;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int phash(const gencache_image *img, unsigned hs, unsigned char *bits)
{
    unsigned n = hs * 4;
    uint8_t px[THUMB_MAX];
    int rc = thumbnail(img, n, n, px);
    if (rc != GENCACHE_OK)
        return rc;
    /* dct(dct(pixels, axis=0), axis=1): every column first, then the rows; only the first hs
     * rows of the result are kept, so only they take the second transform. */
    double m[64 * 64], col[64];
    for (unsigned x = 0; x < n; x++) {
        for (unsigned y = 0; y < n; y++)
            col[y] = px[y * n + x];
        gencache__image_dct2(col, n);
        for (unsigned y = 0; y < hs; y++)
            m[y * n + x] = col[y];
    }
    double low[16 * 16], sorted[16 * 16];
    for (unsigned y = 0; y < hs; y++) {
        gencache__image_dct2(&m[y * n], n);
        memcpy(&low[y * hs], &m[y * n], hs * sizeof(double));
    }
    unsigned cnt = hs * hs;
    memcpy(sorted, low, cnt * sizeof(double));
    qsort(sorted, cnt, sizeof(double), cmp_double);
    /* numpy.median of an even count: the mean of the two middle values. */
    double med = (sorted[cnt / 2 - 1] + sorted[cnt / 2]) / 2.0;
    for (unsigned i = 0; i < cnt; i++)
        set_bit(bits, i, low[i] > med);
    return GENCACHE_OK;
}

int gencache_image_hash(const gencache_image *img, gencache_hash_algo algo, unsigned bits,
                        unsigned char *out, char *hex)
{
    unsigned char buf[GENCACHE_HASH_MAX_BYTES];
    if (hex)
        hex[0] = '\0';
    if (out && (bits == 64 || bits == 256))
        memset(out, 0, bits / 8);
    if (!img || (bits != 64 && bits != 256))
        return GENCACHE_EINVAL;
    unsigned hs = bits == 64 ? 8 : 16;
    memset(buf, 0, sizeof buf);
    int rc;
    switch (algo) {
    case GENCACHE_HASH_AHASH:
        rc = ahash(img, hs, buf);
        break;
    case GENCACHE_HASH_DHASH:
        rc = dhash(img, hs, buf);
        break;
    case GENCACHE_HASH_PHASH:
        rc = phash(img, hs, buf);
        break;
    default:
        return GENCACHE_EINVAL;
    }
    if (rc != GENCACHE_OK)
        return rc;
    if (out)
        memcpy(out, buf, bits / 8);
    if (hex) {
        static const char digits[] = "0123456789abcdef";
        for (unsigned i = 0; i < bits / 8; i++) {
            hex[2 * i] = digits[buf[i] >> 4];
            hex[2 * i + 1] = digits[buf[i] & 15];
        }
        hex[bits / 4] = '\0';
    }
    return GENCACHE_OK;
}

int gencache_image_hash64(const gencache_image *img, gencache_hash_algo algo, uint64_t *out)
{
    if (!out)
        return GENCACHE_EINVAL;
    *out = 0;
    unsigned char b[8];
    int rc = gencache_image_hash(img, algo, 64, b, NULL);
    if (rc != GENCACHE_OK)
        return rc;
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | b[i];
    *out = v;
    return GENCACHE_OK;
}
