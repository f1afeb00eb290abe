/*
 * test_reuse.c: lookups by request beyond the exact key (src/reuse/): perceptual matches of real
 * images and of variants made from them here (half size, brighter), the guard refusing crops,
 * rotations, other images and flat ones, tenant scope, removal of records with their entries
 * (del, invalidation, eviction), the records surviving a restart, results of any seed, and the
 * records of shared layers reaching other caches through a real redis-server.
 */
#include <pthread.h>
#include <unistd.h>

#include "image/image.h"
#include "test.h"

#define IM_DIR "/usr/share/doc/imagemagick-6-common/html/images/"

/* ---- images and their variants ---- */

static gencache_image *load(const char *name)
{
    gencache_image *img = NULL;
    CHECK_OK(gencache_image_decode_file(name, NULL, &img));
    CHECK_UINT_EQ(img->bits, 8);
    return img;
}

/* An 8-bit RGB copy of img's pixels through fn(x, y, channel) -> sample. */
typedef unsigned (*pixel_fn)(const gencache_image *src, uint32_t x, uint32_t y, uint32_t ch);

static unsigned sample(const gencache_image *s, uint32_t x, uint32_t y, uint32_t ch)
{
    uint32_t c = s->channels >= 3 ? ch : 0;
    return s->pixels[(size_t)y * s->stride + (size_t)x * s->channels + c];
}

static gencache_image *remake(const gencache_image *src, uint32_t w, uint32_t h, pixel_fn fn)
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

static unsigned half(const gencache_image *s, uint32_t x, uint32_t y, uint32_t c)
{
    return (sample(s, 2 * x, 2 * y, c) + sample(s, 2 * x + 1, 2 * y, c) +
            sample(s, 2 * x, 2 * y + 1, c) + sample(s, 2 * x + 1, 2 * y + 1, c) + 2) /
           4;
}

static unsigned brighter(const gencache_image *s, uint32_t x, uint32_t y, uint32_t c)
{
    unsigned v = sample(s, x, y, c) * 11 / 10;
    return v > 255 ? 255 : v;
}

static unsigned rotated(const gencache_image *s, uint32_t x, uint32_t y, uint32_t c)
{
    return sample(s, y, s->height - 1 - x, c); /* 90 degrees clockwise */
}

static unsigned cropped(const gencache_image *s, uint32_t x, uint32_t y, uint32_t c)
{
    return sample(s, x + s->width / 4, y, c); /* the right three quarters */
}

static unsigned flat(const gencache_image *s, uint32_t x, uint32_t y, uint32_t c)
{
    (void)s, (void)x, (void)y;
    return c == 0 ? 200 : 40;
}

static unsigned flat2(const gencache_image *s, uint32_t x, uint32_t y, uint32_t c)
{
    (void)s, (void)x, (void)y;
    return c == 2 ? 180 : 20;
}

/* ---- requests ---- */

typedef struct img_req {
    char digest[GENCACHE_DIGEST_MAX];
    gencache_image_sig sig;
} img_req;

static img_req describe(const gencache_image *img)
{
    img_req r;
    CHECK_OK(gencache_image_digest(img, r.digest));
    CHECK_OK(gencache_image_sig_get(img, &r.sig));
    return r;
}

/* A parsed request for `model` and the image, with its signature attached. */
static gencache_request *request(gencache *cache, const char *model, const img_req *im)
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

static void make_perceptual(gencache *cache, const char *layer)
{
    gencache_layer_options o = {.struct_size = sizeof o};
    gencache_layer_options_init(&o);
    CHECK_OK(gencache_layer_get(cache, layer, &o));
    o.image_match = GENCACHE_IMAGE_MATCH_PERCEPTUAL;
    CHECK_OK(gencache_layer_define(cache, &o));
}

static gencache *open_cache(const char *data_dir, uint64_t max_entries)
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

static void store(gencache *c, const gencache_caller *who, const char *layer, const char *model,
                  const img_req *im, const char *value, char *key)
{
    gencache_request *req = request(c, model, im);
    CHECK_OK(gencache_store(c, who, req, layer, value, strlen(value), NULL, key));
    gencache_request_free(req);
}

/* Looks up req (freed here) and returns the match kind; *value (may be NULL) gets the bytes
 * served. */
static gencache_match_kind lookup_req(gencache *c, const gencache_caller *who,
                                      gencache_request *req, const char *layer, gencache_match *m,
                                      char *value)
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

static gencache_match_kind lookup(gencache *c, const gencache_caller *who, const char *layer,
                                  const char *model, const img_req *im, gencache_match *m,
                                  char *value)
{
    return lookup_req(c, who, request(c, model, im), layer, m, value);
}

typedef struct images {
    gencache_image *orig, *other;
    img_req o, small, bright, rot, crop, oth, flat_a, flat_b;
} images;

static void images_load(images *im)
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

static void images_free(images *im)
{
    gencache_image_free(im->orig);
    gencache_image_free(im->other);
}

TEST_CASE(perceptual_variants_match)
{
    images im;
    images_load(&im);
    gencache *c = open_cache(NULL, 0);
    char key[GENCACHE_KEY_MAX], value[64];
    store(c, NULL, "image_latent", "m1", &im.o, "latent-of-wizard", key);
    gencache_match m;
    CHECK_INT_EQ(lookup(c, NULL, "image_latent", "m1", &im.o, &m, value), GENCACHE_MATCH_EXACT);
    CHECK(strcmp(m.key, key) == 0);
    const img_req *variants[] = {&im.small, &im.bright};
    for (size_t i = 0; i < 2; i++) {
        CHECK(strcmp(variants[i]->digest, im.o.digest) != 0); /* other pixels: exact misses */
        CHECK_INT_EQ(lookup(c, NULL, "image_latent", "m1", variants[i], &m, value),
                     GENCACHE_MATCH_PERCEPTUAL);
        CHECK(strcmp(value, "latent-of-wizard") == 0);
        CHECK(strcmp(m.key, key) == 0);
        CHECK(strcmp(m.of, im.o.digest) == 0);
        CHECK_UINT_LE(m.distance, 8);
    }
    /* Another model: the recipe differs in more than the image. */
    CHECK_INT_EQ(lookup(c, NULL, "image_latent", "m2", &im.small, &m, NULL), GENCACHE_MATCH_NONE);
    gencache_reuse_stats st = {.struct_size = sizeof st};
    CHECK_OK(gencache_reuse_stats_get(c, &st));
    CHECK_UINT_EQ(st.images, 1);
    CHECK_UINT_EQ(st.layers[1].perceptual_hits, 2);
    CHECK(strcmp(st.layers[1].layer, "image_latent") == 0);
    gencache_close(c);
    images_free(&im);
}

/* A cache holding the wizard and a flat image in image_latent for model m1. */
static gencache *open_with_wizard_and_flat(images *im, char *key)
{
    images_load(im);
    gencache *c = open_cache(NULL, 0);
    store(c, NULL, "image_latent", "m1", &im->o, "wizard", key);
    store(c, NULL, "image_latent", "m1", &im->flat_a, "flat", key);
    return c;
}

TEST_CASE(guard_refuses_other_crop_rotation_flat)
{
    images im;
    char key[GENCACHE_KEY_MAX];
    gencache *c = open_with_wizard_and_flat(&im, key);
    gencache_match m;
    const img_req *refused[] = {&im.oth, &im.crop, &im.rot, &im.flat_b};
    for (size_t i = 0; i < 4; i++)
        CHECK_INT_EQ(lookup(c, NULL, "image_latent", "m1", refused[i], &m, NULL),
                     GENCACHE_MATCH_NONE);
    /* Two flat images have equal hashes: the pHash radius alone would have matched them. */
    CHECK_UINT_EQ(im.flat_a.sig.phash, im.flat_b.sig.phash);
    gencache_reuse_stats st = {.struct_size = sizeof st};
    CHECK_OK(gencache_reuse_stats_get(c, &st));
    CHECK(st.layers[1].guard_refusals >= 1);
    gencache_close(c);
    images_free(&im);
}

TEST_CASE(exact_layer_never_matches)
{
    images im;
    images_load(&im);
    gencache_options o;
    gencache_options_init(&o);
    gencache *c = NULL;
    CHECK_OK(gencache_open(&c, &o)); /* the default: image_match exact */
    char key[GENCACHE_KEY_MAX];
    store(c, NULL, "image_latent", "m1", &im.o, "wizard", key);
    gencache_match m;
    CHECK_INT_EQ(lookup(c, NULL, "image_latent", "m1", &im.small, &m, NULL), GENCACHE_MATCH_NONE);
    gencache_reuse_stats st = {.struct_size = sizeof st};
    CHECK_OK(gencache_reuse_stats_get(c, &st));
    CHECK_UINT_EQ(st.images, 0);
    gencache_close(c);
    images_free(&im);
}

TEST_CASE(tenant_scope_respected)
{
    images im;
    images_load(&im);
    gencache *c = open_cache(NULL, 0);
    gencache_caller a, b;
    gencache_caller_init(&a);
    gencache_caller_init(&b);
    a.tenant = "acme";
    b.tenant = "globex";
    char key[GENCACHE_KEY_MAX];
    store(c, &a, "condition", "m1", &im.o, "acme-cond", key);
    gencache_match m;
    char value[64];
    CHECK_INT_EQ(lookup(c, &b, "condition", "m1", &im.small, &m, NULL), GENCACHE_MATCH_NONE);
    CHECK_INT_EQ(lookup(c, &b, "condition", "m1", &im.o, &m, NULL), GENCACHE_MATCH_NONE);
    CHECK_INT_EQ(lookup(c, NULL, "condition", "m1", &im.small, &m, NULL), GENCACHE_MATCH_NONE);
    CHECK_INT_EQ(lookup(c, &a, "condition", "m1", &im.small, &m, value), GENCACHE_MATCH_PERCEPTUAL);
    CHECK(strcmp(value, "acme-cond") == 0);
    /* A global layer's entry serves every tenant. */
    store(c, &a, "image_latent", "m1", &im.o, "shared-latent", key);
    CHECK_INT_EQ(lookup(c, &b, "image_latent", "m1", &im.bright, &m, value),
                 GENCACHE_MATCH_PERCEPTUAL);
    gencache_close(c);
    images_free(&im);
}

static uint64_t images_held(gencache *c)
{
    gencache_reuse_stats st = {.struct_size = sizeof st};
    CHECK_OK(gencache_reuse_stats_get(c, &st));
    return st.images;
}

TEST_CASE(del_and_invalidate_remove_records)
{
    images im;
    images_load(&im);
    gencache *c = open_cache(NULL, 0);
    char k1[GENCACHE_KEY_MAX], k2[GENCACHE_KEY_MAX];
    store(c, NULL, "image_latent", "m1", &im.o, "one", k1);
    store(c, NULL, "image_latent", "m2", &im.o, "two", k2);
    CHECK_UINT_EQ(images_held(c), 2);
    CHECK_OK(gencache_del(c, k1));
    CHECK_UINT_EQ(images_held(c), 1);
    gencache_match m;
    CHECK_INT_EQ(lookup(c, NULL, "image_latent", "m1", &im.small, &m, NULL), GENCACHE_MATCH_NONE);
    gencache_filter f;
    gencache_filter_init(&f);
    f.layer = "image_latent";
    uint64_t n = 0;
    CHECK_OK(gencache_invalidate(c, &f, &n));
    CHECK_UINT_EQ(n, 1);
    CHECK_UINT_EQ(images_held(c), 0);
    CHECK_INT_EQ(lookup(c, NULL, "image_latent", "m2", &im.small, &m, NULL), GENCACHE_MATCH_NONE);
    gencache_close(c);
    images_free(&im);
}

TEST_CASE(eviction_removes_records)
{
    images im;
    images_load(&im);
    gencache *c = open_cache(NULL, 2); /* two entries fit, and no tier below memory */
    char key[GENCACHE_KEY_MAX];
    store(c, NULL, "image_latent", "m1", &im.o, "one", key);
    store(c, NULL, "image_latent", "m2", &im.o, "two", key);
    CHECK_UINT_EQ(images_held(c), 2);
    store(c, NULL, "image_latent", "m3", &im.o, "three", key);
    CHECK_UINT_EQ(images_held(c), 2);
    /* Which entry left depends on the shards; whichever it was, its record went with it. */
    gencache_match m;
    unsigned matched = 0;
    const char *models[] = {"m1", "m2", "m3"};
    for (size_t i = 0; i < 3; i++)
        matched += lookup(c, NULL, "image_latent", models[i], &im.small, &m, NULL) ==
                   GENCACHE_MATCH_PERCEPTUAL;
    CHECK_UINT_EQ(matched, 2);
    gencache_close(c);
    images_free(&im);
}

static void temp_dir(char *out, size_t size)
{
    snprintf(out, size, "/tmp/gencache-reuse-XXXXXX");
    CHECK(mkdtemp(out) != NULL);
}

static void remove_dir(const char *dir)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK_INT_EQ(system(cmd), 0);
}

TEST_CASE(records_survive_restart)
{
    images im;
    images_load(&im);
    char dir[64];
    temp_dir(dir, sizeof dir);
    gencache *c = open_cache(dir, 0);
    char key[GENCACHE_KEY_MAX], value[64];
    store(c, NULL, "image_latent", "m1", &im.o, "persisted", key);
    gencache_close(c);

    c = open_cache(dir, 0);
    CHECK_UINT_EQ(images_held(c), 1);
    gencache_match m;
    CHECK_INT_EQ(lookup(c, NULL, "image_latent", "m1", &im.bright, &m, value),
                 GENCACHE_MATCH_PERCEPTUAL);
    CHECK(strcmp(value, "persisted") == 0);
    CHECK(strcmp(m.key, key) == 0);
    gencache_close(c);

    /* A damaged file is refused whole: the cache opens, the entries stay, matches start empty. */
    char path[128];
    snprintf(path, sizeof path, "%s/reuse.idx", dir);
    FILE *f = fopen(path, "r+b");
    CHECK(f != NULL);
    CHECK_INT_EQ(fseek(f, 40, SEEK_SET), 0);
    CHECK_INT_EQ(fputc('X', f), 'X');
    fclose(f);
    c = open_cache(dir, 0);
    CHECK_UINT_EQ(images_held(c), 0);
    CHECK_INT_EQ(lookup(c, NULL, "image_latent", "m1", &im.o, &m, NULL), GENCACHE_MATCH_EXACT);
    CHECK_INT_EQ(lookup(c, NULL, "image_latent", "m1", &im.bright, &m, NULL), GENCACHE_MATCH_NONE);
    /* Stored again, it is matched again, and the file is rewritten whole. */
    store(c, NULL, "image_latent", "m1", &im.o, "persisted", key);
    gencache_close(c);
    c = open_cache(dir, 0);
    CHECK_INT_EQ(lookup(c, NULL, "image_latent", "m1", &im.small, &m, NULL),
                 GENCACHE_MATCH_PERCEPTUAL);
    gencache_close(c);
    remove_dir(dir);
    images_free(&im);
}

TEST_CASE(stale_record_dropped_at_use)
{
    images im;
    images_load(&im);
    char dir[64];
    temp_dir(dir, sizeof dir);
    gencache *c = open_cache(dir, 0);
    char key[GENCACHE_KEY_MAX];
    store(c, NULL, "image_latent", "m1", &im.o, "x", key);
    CHECK_OK(gencache_reuse_save(c));
    gencache_close(c);
    /* The entries go (a lost disk), the records' file stays. */
    char cmd[256];
    snprintf(cmd, sizeof cmd, "cd '%s' && ls | grep -v reuse.idx | xargs rm -rf", dir);
    CHECK_INT_EQ(system(cmd), 0);
    c = open_cache(dir, 0);
    CHECK_UINT_EQ(images_held(c), 1);
    gencache_match m;
    CHECK_INT_EQ(lookup(c, NULL, "image_latent", "m1", &im.small, &m, NULL), GENCACHE_MATCH_NONE);
    CHECK_UINT_EQ(images_held(c), 0);
    gencache_close(c);
    remove_dir(dir);
    images_free(&im);
}

/* ---- any seed ---- */

static gencache_request *parse(gencache *c, const char *json)
{
    gencache_keyspace *ks = NULL;
    CHECK_OK(gencache_keyspace_from_cache(c, &ks));
    gencache_request *req = NULL;
    CHECK_OK(gencache_request_parse(ks, json, strlen(json), 0, &req));
    gencache_keyspace_free(ks);
    return req;
}

TEST_CASE(any_seed_serves_a_stored_seed)
{
    gencache *c = open_cache(NULL, 0);
    gencache_request *r7 =
        parse(c, "{\"model\": \"m\", \"prompt\": \"a fox\", \"seed\": 7, \"steps\": 30}");
    gencache_request *r9 =
        parse(c, "{\"model\": \"m\", \"prompt\": \"a fox\", \"seed\": 18446744073709551615, "
                 "\"steps\": 30}");
    CHECK_OK(gencache_store(c, NULL, r7, "result", "video-7", 7, NULL, NULL));
    CHECK_OK(gencache_store(c, NULL, r9, "result", "video-9", 7, NULL, NULL));
    gencache_request *any = parse(
        c, "{\"model\": \"m\", \"prompt\": \"a fox\", \"steps\": 30, \"cache\": \"any_seed\"}");
    gencache_handle *h = NULL;
    gencache_match m = {.struct_size = sizeof m};
    CHECK_OK(gencache_lookup(c, NULL, any, "result", &h, &m));
    CHECK_INT_EQ(m.kind, GENCACHE_MATCH_ANY_SEED);
    CHECK(strcmp(m.seed, "18446744073709551615") == 0); /* the newest first */
    CHECK_UINT_EQ(gencache_handle_size(h), 7);
    CHECK(memcmp(gencache_handle_data(h), "video-9", 7) == 0);
    gencache_handle_release(h);
    /* Without the directive a seedless request is a fresh generation: no key, no match. */
    gencache_request *plain = parse(c, "{\"model\": \"m\", \"prompt\": \"a fox\", \"steps\": 30}");
    CHECK_INT_EQ(gencache_lookup(c, NULL, plain, "result", &h, &m), GENCACHE_EUNCACHEABLE);
    /* Another recipe (steps) finds nothing. */
    gencache_request *other = parse(
        c, "{\"model\": \"m\", \"prompt\": \"a fox\", \"steps\": 31, \"cache\": \"any_seed\"}");
    CHECK_INT_EQ(gencache_lookup(c, NULL, other, "result", &h, &m), GENCACHE_ENOTFOUND);
    CHECK_INT_EQ(m.kind, GENCACHE_MATCH_NONE);
    /* A seeded request is served by its own key only. */
    gencache_request *seeded = parse(c, "{\"model\": \"m\", \"prompt\": \"a fox\", \"seed\": 8, "
                                        "\"steps\": 30, \"cache\": \"any_seed\"}");
    CHECK_INT_EQ(gencache_lookup(c, NULL, seeded, "result", &h, &m), GENCACHE_ENOTFOUND);
    /* Deleting a result drops its record: the older one serves. */
    char key[GENCACHE_KEY_MAX];
    CHECK_OK(gencache_request_key(r9, "result", key, sizeof key));
    CHECK_OK(gencache_del(c, key));
    CHECK_OK(gencache_lookup(c, NULL, any, "result", &h, &m));
    CHECK(strcmp(m.seed, "7") == 0);
    gencache_handle_release(h);
    gencache_reuse_stats st = {.struct_size = sizeof st};
    CHECK_OK(gencache_reuse_stats_get(c, &st));
    CHECK_UINT_EQ(st.layers[0].any_seed_hits, 2);
    CHECK_UINT_EQ(st.results, 1);
    gencache_request_free(r7);
    gencache_request_free(r9);
    gencache_request_free(any);
    gencache_request_free(plain);
    gencache_request_free(other);
    gencache_request_free(seeded);
    gencache_close(c);
}

TEST_CASE(request_image_signature_parsing)
{
    static const char *bad[] = {
        "{\"image\": {\"digest\": \"sha256:%s\", \"phash\": \"00ff00ff00ff00ff\", \"width\": 4}}",
        "{\"image\": {\"digest\": \"sha256:%s\", \"dhash\": \"00ff00ff00ff00ff\"}}",
        "{\"image\": {\"digest\": \"sha256:%s\", \"phash\": \"00ff00ff00ff00f\"}}",
        "{\"image\": {\"digest\": \"sha256:%s\", \"phash\": \"00FF00ff00ff00ff\", \"dhash\": "
        "\"00ff00ff00ff00ff\", \"width\": 4, \"height\": 3}}",
        "{\"image\": {\"digest\": \"sha256:%s\", \"phash\": \"00ff00ff00ff00ff\", \"dhash\": "
        "\"00ff00ff00ff00ff\", \"width\": 0, \"height\": 3}}",
        "{\"image\": {\"digest\": \"sha256:%s\", \"phash\": 5, \"dhash\": \"00ff00ff00ff00ff\", "
        "\"width\": 4, \"height\": 3}}",
        "{\"image\": {\"digest\": \"sha256:%s\", \"size\": 3}}",
        "{\"cache\": \"any\"}",
    };
    char hex[65];
    memset(hex, 'a', 64);
    hex[64] = '\0';
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char json[512];
        snprintf(json, sizeof json, bad[i], hex);
        gencache_request *req = NULL;
        char err[GENCACHE_ERRMSG_MAX];
        CHECK_INT_EQ(gencache_request_parse_ex(NULL, json, strlen(json), 0, &req, err, sizeof err),
                     GENCACHE_EINVAL);
        CHECK(req == NULL && err[0] != '\0');
    }
    char json[512];
    snprintf(json, sizeof json,
             "{\"image\": {\"digest\": \"sha256:%s\", \"phash\": \"00ff00ff00ff00ff\", \"dhash\": "
             "\"0123456789abcdef\", \"width\": 4, \"height\": 3}}",
             hex);
    gencache_request *req = NULL, *plain = NULL;
    CHECK_OK(gencache_request_parse(NULL, json, strlen(json), 0, &req));
    snprintf(json, sizeof json, "{\"image\": {\"digest\": \"sha256:%s\"}}", hex);
    CHECK_OK(gencache_request_parse(NULL, json, strlen(json), 0, &plain));
    /* The signature never enters a key. */
    char k1[GENCACHE_KEY_MAX], k2[GENCACHE_KEY_MAX];
    CHECK_OK(gencache_request_key(req, "image_latent", k1, sizeof k1));
    CHECK_OK(gencache_request_key(plain, "image_latent", k2, sizeof k2));
    CHECK(strcmp(k1, k2) == 0);
    gencache_image_sig sig = {.width = 0, .height = 3};
    CHECK_INT_EQ(gencache_request_set_image_sig(plain, &sig), GENCACHE_EINVAL);
    sig.height = 0; /* the pHash alone */
    CHECK_OK(gencache_request_set_image_sig(plain, &sig));
    snprintf(json, sizeof json,
             "{\"image\": {\"digest\": \"sha256:%s\", \"phash\": \"00ff00ff00ff00ff\"}}", hex);
    gencache_request *phash_only = NULL;
    CHECK_OK(gencache_request_parse(NULL, json, strlen(json), 0, &phash_only));
    CHECK_OK(gencache_request_key(phash_only, "image_latent", k1, sizeof k1));
    CHECK(strcmp(k1, k2) == 0);
    gencache_request_free(phash_only);
    gencache_request_free(req);
    gencache_request_free(plain);
    gencache_request *noimg = NULL;
    CHECK_OK(gencache_request_parse(NULL, "{}", 2, 0, &noimg));
    sig.width = sig.height = 1;
    CHECK_INT_EQ(gencache_request_set_image_sig(noimg, &sig), GENCACHE_EINVAL);
    gencache_request_free(noimg);
    CHECK(strcmp(gencache_match_kind_name(GENCACHE_MATCH_PERCEPTUAL), "perceptual") == 0);
    CHECK(gencache_match_kind_name((gencache_match_kind)99) == NULL);
}

/* Looks up the request JSON in layer (see lookup_req()). */
static gencache_match_kind lookup_json(gencache *c, const char *layer, const char *json,
                                       gencache_match *m, char *value)
{
    return lookup_req(c, NULL, parse(c, json), layer, m, value);
}

/* Looks up with the image given as its digest and pHash only, as {"digest", "phash"}. */
static gencache_match_kind lookup_phash_only(gencache *c, const char *model, const img_req *im,
                                             gencache_match *m)
{
    char json[512];
    snprintf(json, sizeof json,
             "{\"model\": \"%s\", \"prompt\": \"a cat\", \"image\": {\"digest\": \"%s\", "
             "\"phash\": \"%016llx\"}}",
             model, im->digest, (unsigned long long)im->sig.phash);
    return lookup_json(c, "image_latent", json, m, NULL);
}

TEST_CASE(phash_only_lookup_guards)
{
    images im;
    char key[GENCACHE_KEY_MAX];
    gencache *c = open_with_wizard_and_flat(&im, key);
    gencache_match m;
    /* Unknown digests: the pHash radius and min_detail decide. */
    CHECK_INT_EQ(lookup_phash_only(c, "m1", &im.small, &m), GENCACHE_MATCH_PERCEPTUAL);
    CHECK(strcmp(m.of, im.o.digest) == 0);
    CHECK_UINT_LE(m.distance, 8);
    CHECK_INT_EQ(lookup_phash_only(c, "m1", &im.bright, &m), GENCACHE_MATCH_PERCEPTUAL);
    CHECK_INT_EQ(lookup_phash_only(c, "m1", &im.o, &m), GENCACHE_MATCH_EXACT);
    CHECK_INT_EQ(lookup_phash_only(c, "m1", &im.oth, &m), GENCACHE_MATCH_NONE);
    CHECK_INT_EQ(lookup_phash_only(c, "m1", &im.flat_b, &m), GENCACHE_MATCH_NONE);
    CHECK_INT_EQ(lookup_phash_only(c, "m2", &im.small, &m), GENCACHE_MATCH_NONE);
    /* A rotation whose pHash passes the radius alone is refused once a stored record of its
     * digest supplies the size: the aspect guard then applies. */
    img_req rot_pixels = im.rot;
    rot_pixels.sig.phash = im.o.sig.phash ^ 1; /* within any radius of the stored image */
    CHECK_INT_EQ(lookup_phash_only(c, "m1", &rot_pixels, &m), GENCACHE_MATCH_PERCEPTUAL);
    img_req rot_record = rot_pixels;
    rot_record.sig.phash = rot_pixels.sig.phash;
    store(c, NULL, "image_latent", "m9", &rot_record, "rotated", key);
    CHECK_INT_EQ(lookup_phash_only(c, "m1", &rot_pixels, &m), GENCACHE_MATCH_NONE);
    /* A store with the pHash alone records nothing it could not guard, unless a record of its
     * digest completes it. */
    img_req partial = im.small;
    partial.sig.width = partial.sig.height = 0;
    store(c, NULL, "image_latent", "m5", &partial, "small", key);
    img_req known = rot_record;
    known.sig.width = known.sig.height = 0;
    store(c, NULL, "image_latent", "m6", &known, "rotated again", key);
    gencache_reuse_stats st = {.struct_size = sizeof st};
    CHECK_OK(gencache_reuse_stats_get(c, &st));
    CHECK_UINT_EQ(st.images, 4);
    gencache_close(c);
    images_free(&im);
}

/* ---- threads ---- */

typedef struct race {
    gencache *c;
    const images *im;
    int id;
    unsigned served;
} race;

static void *race_main(void *arg)
{
    race *r = arg;
    char model[16], key[GENCACHE_KEY_MAX];
    for (int i = 0; i < 200; i++) {
        snprintf(model, sizeof model, "m%d", (r->id * 7 + i) % 5);
        gencache_match m;
        if (r->id % 2 == 0) {
            store(r->c, NULL, "image_latent", model, &r->im->o, "v", key);
            if (i % 3 == 0)
                gencache_del(r->c, key);
        } else {
            r->served += lookup(r->c, NULL, "image_latent", model, &r->im->small, &m, NULL) ==
                         GENCACHE_MATCH_PERCEPTUAL;
        }
        if (i % 50 == 0)
            gencache_reuse_save(r->c);
    }
    return NULL;
}

TEST_CASE(concurrent_store_lookup_delete)
{
    images im;
    images_load(&im);
    char dir[64];
    temp_dir(dir, sizeof dir);
    gencache *c = open_cache(dir, 0);
    pthread_t t[4];
    race r[4];
    for (int i = 0; i < 4; i++) {
        r[i] = (race){.c = c, .im = &im, .id = i};
        CHECK_INT_EQ(pthread_create(&t[i], NULL, race_main, &r[i]), 0);
    }
    for (int i = 0; i < 4; i++)
        CHECK_INT_EQ(pthread_join(t[i], NULL), 0);
    /* A del racing a store of the same key may leave a record without its entry (dropped at
     * its first use) or an entry without its record (found by its key only): never a wrong
     * answer. Once the races are over, storing again makes everything matchable. */
    CHECK_UINT_LE(images_held(c), 5);
    char key[GENCACHE_KEY_MAX];
    gencache_match m;
    for (int k = 0; k < 5; k++) {
        char model[16];
        snprintf(model, sizeof model, "m%d", k);
        store(c, NULL, "image_latent", model, &im.o, "v", key);
        CHECK_INT_EQ(lookup(c, NULL, "image_latent", model, &im.small, &m, NULL),
                     GENCACHE_MATCH_PERCEPTUAL);
    }
    CHECK_UINT_EQ(images_held(c), 5);
    gencache_close(c);
    remove_dir(dir);
    images_free(&im);
}

/* ---- the guard from a config file ---- */

static int open_with_config(const char *text, gencache **out, char *err)
{
    char dir[64], path[96];
    temp_dir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/gencache.yaml", dir);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    fputs(text, f);
    fclose(f);
    gencache_config *cfg = NULL;
    int rc = gencache_config_load(path, &cfg, err, 256);
    if (rc == GENCACHE_OK) {
        gencache_options o;
        gencache_options_init(&o);
        rc = gencache_open_config(out, cfg, &o);
    }
    gencache_config_free(cfg);
    remove_dir(dir);
    return rc;
}

TEST_CASE(guard_from_config)
{
    images im;
    images_load(&im);
    char err[256] = "";
    gencache *c = NULL;
    CHECK_OK(
        open_with_config("layers:\n  image_latent:\n    image_match: perceptual\n"
                         "perceptual:\n  min_detail: 64\n  phash_radius: 9\n  combined_radius: 20\n"
                         "similar_prompt:\n  radius: 5\n",
                         &c, err));
    gencache_match_options g = {.struct_size = sizeof g};
    CHECK_OK(gencache_reuse_get_guard(c, &g));
    CHECK_UINT_EQ(g.min_detail, 64);
    CHECK_UINT_EQ(g.phash_radius, 9);
    CHECK_UINT_EQ(g.combined_radius, 20);
    CHECK_UINT_EQ(g.dhash_radius, 12); /* the rest keeps its defaults */
    CHECK_UINT_EQ(gencache_reuse_get_prompt_radius(c), 5);
    g.struct_size = 4;
    CHECK_INT_EQ(gencache_reuse_get_guard(c, &g), GENCACHE_EINVAL);
    char key[GENCACHE_KEY_MAX];
    gencache_match m;
    store(c, NULL, "image_latent", "m1", &im.o, "v", key);
    /* Every image counts as featureless now: nothing matches, the exact key still does. */
    CHECK_INT_EQ(lookup(c, NULL, "image_latent", "m1", &im.small, &m, NULL), GENCACHE_MATCH_NONE);
    CHECK_INT_EQ(lookup(c, NULL, "image_latent", "m1", &im.o, &m, NULL), GENCACHE_MATCH_EXACT);
    gencache_close(c);
    c = NULL;
    static const char *const bad[] = {
        "perceptual:\n  phash_radius: 33\n",       "perceptual:\n  aspect_tolerance: -1\n",
        "perceptual:\n  aspect_tolerance: wide\n", "perceptual:\n  radius: 3\n",
        "similar_prompt:\n  radius: 17\n",         "perceptual:\n  combined_radius: 129\n",
        "perceptual:\n  combined_radius: -1\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        CHECK_INT_EQ(open_with_config(bad[i], &c, err), GENCACHE_ECONFIG);
        CHECK(strstr(err, "perceptual.") != NULL || strstr(err, "similar_prompt.") != NULL);
        CHECK(c == NULL);
    }
    images_free(&im);
}

/* ---- near-duplicate prompts ---- */

static gencache_match_kind prompt_lookup(gencache *c, const char *json, gencache_match *m,
                                         char *value)
{
    return lookup_json(c, "text_embedding", json, m, value);
}

TEST_CASE(similar_prompt_matches_what_aggressive_merges)
{
    gencache *c = open_cache(NULL, 0);
    gencache_request *r = parse(c, "{\"model\": \"m\", \"prompt\": \"A Colour photo of a cat, "
                                   "&amp; a dog!\", \"negative_prompt\": \"blur\"}");
    char key[GENCACHE_KEY_MAX], value[64];
    CHECK_OK(gencache_store(c, NULL, r, "text_embedding", "emb-1", 5, NULL, key));
    gencache_request_free(r);
    gencache_match m;
    static const char *const same =
        "{\"model\": \"m\", \"prompt\": \"a color photo of a CAT & a dog\", \"negative_prompt\": "
        "\"blur\", \"cache\": \"similar_prompt\"}";
    CHECK_INT_EQ(prompt_lookup(c, same, &m, value), GENCACHE_MATCH_SIMILAR_PROMPT);
    CHECK(strcmp(value, "emb-1") == 0);
    CHECK(strcmp(m.key, key) == 0);
    CHECK_UINT_EQ(m.distance, 0);
    /* Without the directive: the safe mode tells them apart, no match. */
    CHECK_INT_EQ(prompt_lookup(c,
                               "{\"model\": \"m\", \"prompt\": \"a color photo of a CAT & a dog\", "
                               "\"negative_prompt\": \"blur\"}",
                               &m, NULL),
                 GENCACHE_MATCH_NONE);
    /* Another word order, another word, another negative prompt, another model: no match. */
    static const char *const other[] = {
        "{\"model\": \"m\", \"prompt\": \"a dog photo of a cat & a color\", \"negative_prompt\": "
        "\"blur\", \"cache\": \"similar_prompt\"}",
        "{\"model\": \"m\", \"prompt\": \"a color photo of a cat & a fox\", \"negative_prompt\": "
        "\"blur\", \"cache\": \"similar_prompt\"}",
        "{\"model\": \"m\", \"prompt\": \"a color photo of a cat & a dog\", \"negative_prompt\": "
        "\"noise\", \"cache\": \"similar_prompt\"}",
        "{\"model\": \"m2\", \"prompt\": \"a color photo of a cat & a dog\", \"negative_prompt\": "
        "\"blur\", \"cache\": \"similar_prompt\"}",
    };
    for (size_t i = 0; i < sizeof other / sizeof other[0]; i++)
        CHECK_INT_EQ(prompt_lookup(c, other[i], &m, NULL), GENCACHE_MATCH_NONE);
    /* A radius lets a near duplicate through: one more word in a long prompt. */
    r = parse(c, "{\"model\": \"m\", \"prompt\": \"portrait of an old sailor with a grey beard "
                 "and a pipe, oil painting, dramatic light, highly detailed, trending on "
                 "artstation, by greg rutkowski\"}");
    CHECK_OK(gencache_store(c, NULL, r, "text_embedding", "emb-2", 5, NULL, key));
    gencache_request_free(r);
    static const char *const near =
        "{\"model\": \"m\", \"prompt\": \"portrait of an old sailor with a grey beard and a pipe, "
        "oil painting, dramatic light, highly detailed, trending on artstation, by greg "
        "rutkowski, 4k\", \"cache\": \"similar_prompt\"}";
    CHECK_INT_EQ(prompt_lookup(c, near, &m, NULL), GENCACHE_MATCH_NONE); /* radius 0 */
    CHECK_INT_EQ(gencache_reuse_set_prompt_radius(c, 17), GENCACHE_EINVAL);
    CHECK_OK(gencache_reuse_set_prompt_radius(c, 16));
    CHECK_INT_EQ(prompt_lookup(c, near, &m, value), GENCACHE_MATCH_SIMILAR_PROMPT);
    CHECK(strcmp(value, "emb-2") == 0);
    CHECK(m.distance > 0 && m.distance <= 16);
    /* Deleting the entry drops its fingerprint. */
    gencache_reuse_stats st = {.struct_size = sizeof st};
    CHECK_OK(gencache_reuse_stats_get(c, &st));
    CHECK_UINT_EQ(st.prompts, 2);
    CHECK_UINT_EQ(st.layers[2].similar_prompt_hits, 2);
    CHECK_OK(gencache_del(c, key));
    CHECK_OK(gencache_reuse_stats_get(c, &st));
    CHECK_UINT_EQ(st.prompts, 1);
    CHECK_INT_EQ(prompt_lookup(c, near, &m, NULL), GENCACHE_MATCH_NONE);
    gencache_close(c);
}

TEST_CASE(prompt_fingerprints_survive_restart)
{
    char dir[64];
    temp_dir(dir, sizeof dir);
    gencache *c = open_cache(dir, 0);
    gencache_request *r = parse(c, "{\"model\": \"m\", \"prompt\": \"The Harbour at Dusk\"}");
    CHECK_OK(gencache_store(c, NULL, r, "text_embedding", "emb", 3, NULL, NULL));
    gencache_request_free(r);
    gencache_close(c);
    c = open_cache(dir, 0);
    gencache_match m;
    CHECK_INT_EQ(prompt_lookup(c,
                               "{\"model\": \"m\", \"prompt\": \"the harbor at dusk\", \"cache\": "
                               "\"similar_prompt\"}",
                               &m, NULL),
                 GENCACHE_MATCH_SIMILAR_PROMPT);
    gencache_close(c);
    remove_dir(dir);
}

/* ---- records shared through Redis ---- */

#include "redis_server.h"
#include "reuse/reuse.h"

static _Atomic unsigned share_warnings; /* "records are kept by the node" log lines */

static void note_log(void *ud, gencache_log_level level, const char *message)
{
    (void)ud;
    if (level == GENCACHE_LOG_WARN && strstr(message, "records are kept by the node"))
        share_warnings++;
}

static gencache *open_node_sized(const char *url, uint64_t mem_max_entries)
{
    gencache_options o;
    gencache_options_init(&o);
    o.redis_url = url;
    o.log_fn = note_log;
    o.mem_max_entries = mem_max_entries;
    gencache *c = NULL;
    CHECK_OK(gencache_open(&c, &o));
    make_perceptual(c, "image_latent");
    make_perceptual(c, "condition");
    gencache_reuse_stats st = {.struct_size = sizeof st};
    CHECK_OK(gencache_reuse_stats_get(c, &st)); /* the first use: the layers are known */
    return c;
}

static gencache *open_node(const char *url)
{
    return open_node_sized(url, 0);
}

/* Looks up until the answer is `want` (the records travel by pub/sub and write-back), at most
 * 3 s; returns the last answer. */
static gencache_match_kind lookup_until(gencache *c, const gencache_caller *who, const char *layer,
                                        const img_req *im, gencache_match_kind want,
                                        gencache_match *m, char *value)
{
    gencache_match_kind got = GENCACHE_MATCH_NONE;
    for (int i = 0; i < 300; i++) {
        got = lookup(c, who, layer, "m1", im, m, value);
        if (got == want)
            break;
        usleep(10000);
    }
    return got;
}

static long long redis_int(redisContext *rc, const char *cmd, const char *key)
{
    redisReply *rep = redisCommand(rc, "%s %s", cmd, key);
    CHECK(rep != NULL && rep->type == REDIS_REPLY_INTEGER);
    long long v = rep->integer;
    freeReplyObject(rep);
    return v;
}

/* Waits (3 s at most) until Redis holds the entry of key: a write-back layer's value arrives
 * after the store returns. */
static void wait_in_redis(redisContext *rc, const char *key)
{
    char rkey[160];
    snprintf(rkey, sizeof rkey, "gencache:v1:%s", key);
    for (int i = 0; i < 300 && redis_int(rc, "EXISTS", rkey) == 0; i++)
        usleep(10000);
    CHECK_INT_EQ(redis_int(rc, "EXISTS", rkey), 1);
}

/* Two caches on one real redis-server, and a plain connection to it. */
typedef struct two_nodes {
    char url[64];
    redisContext *rc;
    images im;
    gencache *a, *b;
} two_nodes;

static void two_nodes_open(two_nodes *t)
{
    int port = rs_start();
    CHECK(port > 0);
    snprintf(t->url, sizeof t->url, "redis://127.0.0.1:%d", port);
    t->rc = redisConnect("127.0.0.1", port);
    CHECK(t->rc != NULL && t->rc->err == 0);
    images_load(&t->im);
    t->a = open_node(t->url);
    t->b = open_node(t->url);
}

static void two_nodes_close(two_nodes *t)
{
    gencache_close(t->a);
    gencache_close(t->b);
    redisFree(t->rc);
    images_free(&t->im);
    rs_stop();
}

static gencache_caller tenant_caller(const char *tenant)
{
    gencache_caller c;
    gencache_caller_init(&c);
    c.tenant = tenant;
    return c;
}

TEST_CASE(records_shared_between_nodes)
{
    two_nodes t;
    two_nodes_open(&t);
    gencache *a = t.a, *b = t.b;
    redisContext *rc = t.rc;
    images im = t.im;
    char key[GENCACHE_KEY_MAX], value[64], hkey[160];
    gencache_match m;
    /* b never stored the wizard: a's record reaches it. */
    store(a, NULL, "image_latent", "m1", &im.o, "latent-of-wizard", key);
    CHECK_INT_EQ(
        lookup_until(b, NULL, "image_latent", &im.small, GENCACHE_MATCH_PERCEPTUAL, &m, value),
        GENCACHE_MATCH_PERCEPTUAL);
    CHECK_STR_EQ(value, "latent-of-wizard");
    CHECK_STR_EQ(m.key, key);
    CHECK_STR_EQ(m.of, im.o.digest);
    CHECK_INT_EQ(lookup(b, NULL, "image_latent", "m2", &im.small, &m, NULL), GENCACHE_MATCH_NONE);
    snprintf(hkey, sizeof hkey, "gencache:reuse:v1:{%s}", key);
    CHECK_INT_EQ(redis_int(rc, "EXISTS", hkey), 1);
    uint64_t heard, loaded, rebuilds;
    gencache__reuse_net_counts(gencache__reuse_net_of(b), &heard, &loaded, &rebuilds);
    CHECK_UINT_LE(1, heard + loaded);
    /* A tenant-scoped layer: another tenant's lookup never finds it, on any node. */
    gencache_caller acme = tenant_caller("acme"), globex = tenant_caller("globex");
    char ckey[GENCACHE_KEY_MAX];
    store(a, &acme, "condition", "m1", &im.o, "acme-cond", ckey);
    CHECK_INT_EQ(
        lookup_until(b, &acme, "condition", &im.bright, GENCACHE_MATCH_PERCEPTUAL, &m, value),
        GENCACHE_MATCH_PERCEPTUAL);
    CHECK_STR_EQ(value, "acme-cond");
    CHECK_INT_EQ(lookup(b, &globex, "condition", "m1", &im.bright, &m, NULL), GENCACHE_MATCH_NONE);
    CHECK_INT_EQ(lookup(b, NULL, "condition", "m1", &im.bright, &m, NULL), GENCACHE_MATCH_NONE);
    /* An invalidation by filter on a removes the records of what it removes from Redis too. */
    redisReply *keys = redisCommand(rc, "KEYS gencache:reuse:v1:{condition/*");
    CHECK(keys != NULL && keys->type == REDIS_REPLY_ARRAY);
    CHECK_UINT_EQ(keys->elements, 1);
    freeReplyObject(keys);
    gencache_filter f;
    gencache_filter_init(&f);
    f.layer = "condition";
    uint64_t removed = 0;
    CHECK_OK(gencache_invalidate(a, &f, &removed));
    CHECK_UINT_LE(1, removed);
    keys = redisCommand(rc, "KEYS gencache:reuse:v1:{condition/*");
    CHECK(keys != NULL && keys->type == REDIS_REPLY_ARRAY);
    CHECK_UINT_EQ(keys->elements, 0);
    freeReplyObject(keys);
    CHECK_INT_EQ(lookup_until(b, &acme, "condition", &im.bright, GENCACHE_MATCH_NONE, &m, NULL),
                 GENCACHE_MATCH_NONE);
    /* A delete on a removes the entry's records from Redis and from b. */
    CHECK_OK(gencache_del(a, key));
    CHECK_INT_EQ(redis_int(rc, "EXISTS", hkey), 0);
    CHECK_INT_EQ(lookup_until(b, NULL, "image_latent", &im.small, GENCACHE_MATCH_NONE, &m, NULL),
                 GENCACHE_MATCH_NONE);
    /* Junk on the channel and in Redis is ignored, by the subscriber and by the loader. */
    static const char *junk[] = {"PUBLISH gencache:v1:reuse junk",
                                 "HSET gencache:reuse:v1:{image_latent/00} 1 short at 5",
                                 "HSET gencache:reuse:v1:{image_latent/01} 9 x 1 y",
                                 "SET gencache:reuse:v1:{image_latent/02} not-a-hash"};
    for (size_t i = 0; i < sizeof junk / sizeof junk[0]; i++) {
        redisReply *rep = redisCommand(rc, junk[i]);
        CHECK(rep != NULL && rep->type != REDIS_REPLY_ERROR);
        freeReplyObject(rep);
    }
    /* A node that starts later reads what Redis holds. */
    store(a, NULL, "image_latent", "m1", &im.o, "wizard-again", key);
    wait_in_redis(rc, key);
    gencache *late = open_node(t.url);
    CHECK_INT_EQ(
        lookup_until(late, NULL, "image_latent", &im.small, GENCACHE_MATCH_PERCEPTUAL, &m, value),
        GENCACHE_MATCH_PERCEPTUAL);
    CHECK_STR_EQ(value, "wizard-again");
    for (int i = 0; i < 300; i++) { /* the match may come before the load has finished */
        gencache__reuse_net_counts(gencache__reuse_net_of(late), &heard, &loaded, &rebuilds);
        if (rebuilds)
            break;
        usleep(10000);
    }
    CHECK_UINT_EQ(loaded, 1); /* the wizard's image record: no junk */
    CHECK_UINT_LE(1, rebuilds);
    gencache_close(late);
    two_nodes_close(&t);
}

/* Waits (3 s at most) until c holds n image records. */
static void wait_images(gencache *c, uint64_t n)
{
    gencache_reuse_stats st = {.struct_size = sizeof st};
    for (int i = 0; i < 300; i++) {
        CHECK_OK(gencache_reuse_stats_get(c, &st));
        if (st.images == n)
            break;
        usleep(10000);
    }
    CHECK_UINT_EQ(st.images, n);
}

TEST_CASE(shared_record_whose_entry_is_gone_misses)
{
    two_nodes t;
    two_nodes_open(&t);
    gencache *a = t.a, *b = t.b;
    redisContext *rc = t.rc;
    images im = t.im;
    char key[GENCACHE_KEY_MAX], rkey[160], hkey[160];
    gencache_match m;
    store(a, NULL, "image_latent", "m1", &im.o, "wizard", key);
    wait_in_redis(rc, key);
    wait_images(b, 1);
    snprintf(rkey, sizeof rkey, "gencache:v1:%s", key);
    snprintf(hkey, sizeof hkey, "gencache:reuse:v1:{%s}", key);
    /* The entry leaves Redis behind the nodes' backs (maxmemory, a FLUSH of one key): b,
     * which holds no copy, misses; the record, young, stays for an entry that may yet come. */
    CHECK_INT_EQ(redis_int(rc, "DEL", rkey), 1);
    CHECK_INT_EQ(lookup(b, NULL, "image_latent", "m1", &im.small, &m, NULL), GENCACHE_MATCH_NONE);
    CHECK_INT_EQ(redis_int(rc, "EXISTS", hkey), 1);
    wait_images(b, 1);
    /* Once older than its entry could take to arrive, the next miss deletes it. */
    redisReply *rep = redisCommand(rc, "HSET %s at 0", hkey);
    CHECK(rep != NULL);
    freeReplyObject(rep);
    CHECK_INT_EQ(lookup(b, NULL, "image_latent", "m1", &im.small, &m, NULL), GENCACHE_MATCH_NONE);
    CHECK_INT_EQ(redis_int(rc, "EXISTS", hkey), 0);
    wait_images(b, 0);
    /* The record expires with its entry. */
    gencache_request *req = request(a, "m1", &im.bright);
    gencache_meta meta;
    gencache_meta_init(&meta);
    meta.ttl_ms = 60000;
    CHECK_OK(gencache_store(a, NULL, req, "image_latent", "b", 1, &meta, key));
    gencache_request_free(req);
    snprintf(hkey, sizeof hkey, "gencache:reuse:v1:{%s}", key);
    long long pttl = redis_int(rc, "PTTL", hkey);
    CHECK(pttl > 50000 && pttl <= 60000);
    /* Redis gone: a lookup still answers (a miss), never an error; stores succeed, their
     * records stay with a, and the log says so once. */
    rs_stop();
    CHECK_INT_EQ(lookup(b, NULL, "image_latent", "m1", &im.small, &m, NULL), GENCACHE_MATCH_NONE);
    unsigned before = share_warnings;
    for (int i = 0; i < 5; i++)
        store(a, NULL, "image_latent", i % 2 ? "m7" : "m8", &im.o, "while away", key);
    CHECK_UINT_EQ(share_warnings - before, 1);
    CHECK_INT_EQ(lookup(a, NULL, "image_latent", "m7", &im.small, &m, NULL),
                 GENCACHE_MATCH_PERCEPTUAL);
    two_nodes_close(&t);
}

TEST_CASE(own_record_outlives_local_eviction)
{
    int port = rs_start();
    CHECK(port > 0);
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", port);
    redisContext *rc = redisConnect("127.0.0.1", port);
    CHECK(rc != NULL && rc->err == 0);
    images im;
    images_load(&im);
    gencache *a = open_node_sized(url, 4);
    char key[GENCACHE_KEY_MAX];
    store(a, NULL, "image_latent", "m1", &im.o, "wizard", key);
    wait_in_redis(rc, key);
    /* Memory lets the wizard go; Redis still holds it, and so the record stays. */
    unsigned char v[64] = {0};
    bool left = false;
    for (int i = 0; i < 4096 && !left; i++) {
        char k[GENCACHE_KEY_MAX];
        snprintf(k, sizeof k, "result/%064x", i);
        CHECK_OK(gencache_put(a, k, v, sizeof v, NULL));
        gencache_handle *p = NULL;
        CHECK_OK(gencache_peek(a, key, &p)); /* a peek promotes nothing */
        left = strcmp(gencache_handle_meta(p)->tier, "mem") != 0;
        gencache_handle_release(p);
    }
    CHECK(left);
    gencache_reuse_stats rs = {.struct_size = sizeof rs};
    CHECK_OK(gencache_reuse_stats_get(a, &rs));
    CHECK_UINT_EQ(rs.images, 1);
    gencache_request *req = request(a, "m1", &im.small);
    gencache_handle *h = NULL;
    gencache_match m = {.struct_size = sizeof m};
    CHECK_OK(gencache_lookup(a, NULL, req, "image_latent", &h, &m));
    CHECK_INT_EQ(m.kind, GENCACHE_MATCH_PERCEPTUAL);
    CHECK_STR_EQ(gencache_handle_meta(h)->tier, "redis"); /* it had left memory */
    CHECK_MEM_EQ(gencache_handle_data(h), "wizard", 6);
    gencache_handle_release(h);
    gencache_request_free(req);
    gencache_close(a);
    redisFree(rc);
    images_free(&im);
    rs_stop();
}
