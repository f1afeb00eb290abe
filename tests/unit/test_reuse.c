/*
 * test_reuse.c: lookups by request beyond the exact key (src/reuse/): perceptual matches of real
 * images and of variants made from them here (half size, brighter), the guard refusing crops,
 * rotations, other images and flat ones, tenant scope, removal of records with their entries
 * (del, invalidation, eviction), the records surviving a restart, results of any seed; the
 * records of shared layers across caches are in test_reuse_nodes.c.
 */
#include <pthread.h>
#include <unistd.h>

#include "reuse_util.h"

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
