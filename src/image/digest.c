/*
 * digest.c: the exact pixel digest of DESIGN.md section 3. It hashes a canonical form of the
 * samples so that the same pixels give one digest whatever container holds them: an alpha channel
 * whose every sample is opaque is dropped (RGBA from WebP vs RGB from PNG), and colour whose every
 * pixel has R = G = B is written as one gray channel (WebP has no gray). Nothing else is folded:
 * one changed sample always changes the digest. When no reduction applies the decoded buffer is
 * hashed in place, so the digest costs one SHA-256 pass plus a scan that usually stops early.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "image.h"

/* Rows are repacked through a buffer of about this size when a reduction applies. */
#define REPACK_BYTES (64u * 1024u)

/* True when every alpha sample is the maximum value. */
static int alpha_opaque(const gencache_image *img)
{
    size_t bps = img->bits / 8, px = img->channels * bps;
    size_t n = (size_t)img->width * img->height;
    const unsigned char *a = img->pixels + (img->channels - 1) * bps;
    if (bps == 1) {
        unsigned acc = 0xFF;
        for (size_t i = 0; i < n; i++)
            acc &= a[i * px];
        return acc == 0xFF;
    }
    unsigned acc = 0xFF;
    for (size_t i = 0; i < n; i++)
        acc &= (unsigned)a[i * px] & a[i * px + 1];
    return acc == 0xFF;
}

/* True when every pixel has R = G = B (channels 3 or 4). */
static int colour_is_gray(const gencache_image *img)
{
    size_t bps = img->bits / 8, px = img->channels * bps;
    size_t n = (size_t)img->width * img->height;
    const unsigned char *p = img->pixels;
    for (size_t i = 0; i < n; i++, p += px) {
        if (memcmp(p, p + bps, bps) != 0 || memcmp(p, p + 2 * bps, bps) != 0)
            return 0;
    }
    return 1;
}

static void to_hex(const unsigned char *md, unsigned n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (unsigned i = 0; i < n; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[2 * n] = '\0';
}

int gencache_image_digest(const gencache_image *img, char out[GENCACHE_DIGEST_MAX])
{
    if (out)
        out[0] = '\0';
    if (!img || !out)
        return GENCACHE_EINVAL;
    int has_alpha = img->channels == 2 || img->channels == 4;
    int colour = img->channels >= 3;
    int keep_alpha = has_alpha && !alpha_opaque(img);
    int keep_colour = colour && !colour_is_gray(img);
    uint32_t out_ch = (keep_colour ? 3 : 1) + (keep_alpha ? 1 : 0);
    size_t bps = img->bits / 8;

    char head[96];
    int hn = snprintf(head, sizeof head, "gencache-img-v1 %u %u %u %u\n", img->width, img->height,
                      out_ch, img->bits);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx)
        return GENCACHE_ENOMEM;
    int ok = EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) && EVP_DigestUpdate(ctx, head, (size_t)hn);
    if (ok && out_ch == img->channels) {
        ok = EVP_DigestUpdate(ctx, img->pixels, img->stride * img->height);
    } else if (ok) {
        /* Which source samples survive: the first (gray or R), G and B when colour stays, and
         * alpha when it stays. */
        size_t px = img->channels * bps, opx = out_ch * bps;
        size_t n = (size_t)img->width * img->height;
        size_t per = REPACK_BYTES / opx;
        unsigned char *buf = malloc(per * opx);
        if (!buf) {
            EVP_MD_CTX_free(ctx);
            return GENCACHE_ENOMEM;
        }
        size_t keep_bytes = (keep_colour ? 3 : 1) * bps;
        const unsigned char *src = img->pixels;
        for (size_t done = 0; ok && done < n;) {
            size_t m = n - done < per ? n - done : per;
            unsigned char *d = buf;
            for (size_t i = 0; i < m; i++, src += px) {
                memcpy(d, src, keep_bytes);
                d += keep_bytes;
                if (keep_alpha) {
                    memcpy(d, src + px - bps, bps);
                    d += bps;
                }
            }
            ok = EVP_DigestUpdate(ctx, buf, (size_t)(d - buf));
            done += m;
        }
        free(buf);
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    ok = ok && EVP_DigestFinal_ex(ctx, md, &mdlen);
    EVP_MD_CTX_free(ctx);
    if (!ok || mdlen != 32)
        return GENCACHE_ENOMEM;
    memcpy(out, "sha256:", 7);
    to_hex(md, mdlen, out + 7);
    return GENCACHE_OK;
}

int gencache_image_digest_file(const char *path, char out[GENCACHE_DIGEST_MAX])
{
    if (out)
        out[0] = '\0';
    if (!path || !out)
        return GENCACHE_EINVAL;
    gencache_image *img;
    int rc = gencache_image_decode_file(path, NULL, &img);
    if (rc != GENCACHE_OK)
        return rc;
    rc = gencache_image_digest(img, out);
    gencache_image_free(img);
    return rc;
}
