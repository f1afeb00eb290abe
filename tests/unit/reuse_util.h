/*
 * reuse_util.h: what the reuse tests share: real images (Debian's imagemagick-6-common) and
 * variants made from them, requests carrying an image's signature, and stores and lookups
 * through a cache.
 */
#ifndef GENCACHE_TESTS_REUSE_UTIL_H
#define GENCACHE_TESTS_REUSE_UTIL_H

#include "image/image.h"
#include "test.h"

#define IM_DIR "/usr/share/doc/imagemagick-6-common/html/images/"

/* ---- images and their variants ---- */

static inline gencache_image *load(const char *name)
{
    gencache_image *img = NULL;
    CHECK_OK(gencache_image_decode_file(name, NULL, &img));
    CHECK_UINT_EQ(img->bits, 8);
    return img;
}

/* An 8-bit RGB copy of img's pixels through fn(x, y, channel) -> sample. */
typedef unsigned (*pixel_fn)(const gencache_image *src, uint32_t x, uint32_t y, uint32_t ch);

static inline unsigned sample(const gencache_image *s, uint32_t x, uint32_t y, uint32_t ch)
{
    uint32_t c = s->channels >= 3 ? ch : 0;
    return s->pixels[(size_t)y * s->stride + (size_t)x * s->channels + c];
}

static inline gencache_image *remake(const gencache_image *src, uint32_t w, uint32_t h, pixel_fn fn)
{
    unsigned char *px = malloc((size_t)w * h * 3);
    CHECK(px != NULL);
    for (uint32_t y = 0; y < h; y++)
        for (uint32_t x = 0; x < w; x++)
            for (uint32_t c = 0; c < 3; c++)
                px[((size_t)y * w + x) * 3 + c] = (unsigned char)fn(src, x, y, c);
    gencache_image *out = NULL;
    CHECK_OK(gencache_image_from_pixels(px, w, h, (size_t)w * 3, GENCACHE_PIXEL_RGB8, &out));
    free(px);
    return out;
}

static inline unsigned half(const gencache_image *s, uint32_t x, uint32_t y, uint32_t c)
{
    return (sample(s, 2 * x, 2 * y, c) + sample(s, 2 * x + 1, 2 * y, c) +
            sample(s, 2 * x, 2 * y + 1, c) + sample(s, 2 * x + 1, 2 * y + 1, c) + 2) /
           4;
}

static inline unsigned brighter(const gencache_image *s, uint32_t x, uint32_t y, uint32_t c)
{
    unsigned v = sample(s, x, y, c) * 11 / 10;
    return v > 255 ? 255 : v;
}

static inline unsigned rotated(const gencache_image *s, uint32_t x, uint32_t y, uint32_t c)
{
    return sample(s, y, s->height - 1 - x, c); /* 90 degrees clockwise */
}

static inline unsigned cropped(const gencache_image *s, uint32_t x, uint32_t y, uint32_t c)
{
    return sample(s, x + s->width / 4, y, c); /* the right three quarters */
}

static inline unsigned flat(const gencache_image *s, uint32_t x, uint32_t y, uint32_t c)
{
    (void)s, (void)x, (void)y;
    return c == 0 ? 200 : 40;
}

static inline unsigned flat2(const gencache_image *s, uint32_t x, uint32_t y, uint32_t c)
{
    (void)s, (void)x, (void)y;
    return c == 2 ? 180 : 20;
}

/* ---- requests ---- */

typedef struct img_req {
    char digest[GENCACHE_DIGEST_MAX];
    gencache_image_sig sig;
} img_req;

static inline img_req describe(const gencache_image *img)
{
    img_req r;
    CHECK_OK(gencache_image_digest(img, r.digest));
    CHECK_OK(gencache_image_sig_get(img, &r.sig));
    return r;
}

/* A parsed request for `model` and the image, with its signature attached. */
static inline gencache_request *request(gencache *cache, const char *model, const img_req *im)
{
    char json[512];
    snprintf(json, sizeof json,
             "{\"model\": \"%s\", \"prompt\": \"a cat\", \"image\": {\"digest\": \"%s\"}}", model,
             im->digest);
    gencache_keyspace *ks = NULL;
    CHECK_OK(gencache_keyspace_from_cache(cache, &ks));
    gencache_request *req = NULL;
    CHECK_OK(gencache_request_parse(ks, json, strlen(json), 0, &req));
    gencache_keyspace_free(ks);
    CHECK_OK(gencache_request_set_image_sig(req, &im->sig));
    return req;
}

static inline void make_perceptual(gencache *cache, const char *layer)
{
    gencache_layer_options o = {.struct_size = sizeof o};
    gencache_layer_options_init(&o);
    CHECK_OK(gencache_layer_get(cache, layer, &o));
    o.image_match = GENCACHE_IMAGE_MATCH_PERCEPTUAL;
    CHECK_OK(gencache_layer_define(cache, &o));
}

static inline gencache *open_cache(const char *data_dir, uint64_t max_entries)
{
    gencache_options o;
    gencache_options_init(&o);
    o.data_dir = data_dir;
    o.mem_max_entries = max_entries;
    gencache *c = NULL;
    CHECK_OK(gencache_open(&c, &o));
    make_perceptual(c, "image_latent");
    make_perceptual(c, "condition");
    return c;
}

static inline void store(gencache *c, const gencache_caller *who, const char *layer,
                         const char *model, const img_req *im, const char *value, char *key)
{
    gencache_request *req = request(c, model, im);
    CHECK_OK(gencache_store(c, who, req, layer, value, strlen(value), NULL, key));
    gencache_request_free(req);
}

/* Looks up req (freed here) and returns the match kind; *value (may be NULL) gets the bytes
 * served. */
static inline gencache_match_kind lookup_req(gencache *c, const gencache_caller *who,
                                             gencache_request *req, const char *layer,
                                             gencache_match *m, char *value)
{
    gencache_handle *h = NULL;
    m->struct_size = sizeof *m;
    int rc = gencache_lookup(c, who, req, layer, &h, m);
    gencache_request_free(req);
    if (rc == GENCACHE_ENOTFOUND) {
        CHECK(h == NULL);
        CHECK_INT_EQ(m->kind, GENCACHE_MATCH_NONE);
        return GENCACHE_MATCH_NONE;
    }
    CHECK_OK(rc);
    if (value) {
        memcpy(value, gencache_handle_data(h), gencache_handle_size(h));
        value[gencache_handle_size(h)] = '\0';
    }
    gencache_handle_release(h);
    return m->kind;
}

static inline gencache_match_kind lookup(gencache *c, const gencache_caller *who, const char *layer,
                                         const char *model, const img_req *im, gencache_match *m,
                                         char *value)
{
    return lookup_req(c, who, request(c, model, im), layer, m, value);
}

typedef struct images {
    gencache_image *orig, *other;
    img_req o, small, bright, rot, crop, oth, flat_a, flat_b;
} images;

static inline void images_load(images *im)
{
    im->orig = load(IM_DIR "wizard.jpg");
    im->other = load(IM_DIR "bluebells_clipped.jpg");
    im->o = describe(im->orig);
    im->oth = describe(im->other);
    gencache_image *v = remake(im->orig, im->orig->width / 2, im->orig->height / 2, half);
    im->small = describe(v);
    gencache_image_free(v);
    v = remake(im->orig, im->orig->width, im->orig->height, brighter);
    im->bright = describe(v);
    gencache_image_free(v);
    v = remake(im->orig, im->orig->height, im->orig->width, rotated);
    im->rot = describe(v);
    gencache_image_free(v);
    v = remake(im->orig, im->orig->width - im->orig->width / 4, im->orig->height, cropped);
    im->crop = describe(v);
    gencache_image_free(v);
    v = remake(im->orig, 64, 64, flat);
    im->flat_a = describe(v);
    gencache_image_free(v);
    v = remake(im->orig, 64, 64, flat2);
    im->flat_b = describe(v);
    gencache_image_free(v);
}

static inline void images_free(images *im)
{
    gencache_image_free(im->orig);
    gencache_image_free(im->other);
}

#endif
