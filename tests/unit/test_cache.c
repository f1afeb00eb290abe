/* test_cache.c: the core API over the memory tier: round trips, eviction order, byte and entry
 * limits, TTLs with an injected clock, pinning, handles that outlive their entry, ghost hits,
 * invalidation and the counters. */
#include <time.h>

#include "test.h"
#include "internal.h"

static uint64_t fake_now = 1700000000000ull;

static uint64_t fake_clock(void *ud)
{
    (void)ud;
    return fake_now;
}

static void key_of(char *buf, const char *layer, unsigned n)
{
    sprintf(buf, "%s/%064x", layer, n);
}

/* A cache with one shard (exact LRU: these tests check LRU's order, whatever the default policy;
 * tests/unit/test_policy.c has the other policies') and the injected clock. */
static gencache *open_small(uint64_t max_bytes, uint64_t max_entries)
{
    gencache_options o;
    gencache_options_init(&o);
    o.mem_policy = GENCACHE_EVICTION_LRU;
    o.mem_max_bytes = max_bytes;
    o.mem_max_entries = max_entries;
    o.mem_shards = 1;
    o.clock_fn = fake_clock;
    gencache *c = NULL;
    CHECK_OK(gencache_open(&c, &o));
    CHECK(c != NULL);
    return c;
}

static bool present(gencache *c, unsigned n)
{
    char key[128];
    key_of(key, "image_latent", n);
    gencache_handle *h = NULL;
    int rc = gencache_peek(c, key, &h);
    gencache_handle_release(h);
    return rc == GENCACHE_OK;
}

static void put_latent(gencache *c, unsigned n, size_t size)
{
    char key[128];
    key_of(key, "image_latent", n);
    unsigned char *buf = malloc(size ? size : 1);
    memset(buf, (int)(n & 0xff), size);
    CHECK_OK(gencache_put(c, key, buf, size, NULL));
    free(buf);
}

/* The stats of one layer in *st (which must have it). */
static const gencache_layer_stats *layer_stats(const gencache_stats *st, const char *layer)
{
    for (unsigned i = 0; i < st->n_layers; i++)
        if (strcmp(st->layers[i].layer, layer) == 0)
            return &st->layers[i];
    test_fail(__FILE__, __LINE__, "no stats for layer %s", layer);
    return NULL;
}

static void touch(gencache *c, unsigned n)
{
    char key[128];
    key_of(key, "image_latent", n);
    gencache_handle *h = NULL;
    CHECK_OK(gencache_get(c, key, &h));
    gencache_handle_release(h);
}

TEST_CASE(put_get_roundtrip)
{
    gencache *c = open_small(0, 0);
    const char *key = "result/00000000000000000000000000000000000000000000000000000000000000aa";
    const char value[] = "a video's bytes";
    gencache_meta m;
    gencache_meta_init(&m);
    m.content_type = "video/mp4";
    m.tenant = "acme";
    m.model = "wan2.2-t2v-5b";
    m.tags = "promo, newyear";
    m.cost_ms = 8600;
    CHECK_OK(gencache_put(c, key, value, sizeof value, &m));

    gencache_handle *h = NULL;
    CHECK_OK(gencache_get(c, key, &h));
    CHECK_UINT_EQ(gencache_handle_size(h), sizeof value);
    CHECK_MEM_EQ(gencache_handle_data(h), value, sizeof value);
    CHECK_UINT_EQ((uintptr_t)gencache_handle_data(h) % 64, 0);
    const gencache_meta *got = gencache_handle_meta(h);
    CHECK_STR_EQ(got->key, key);
    CHECK_STR_EQ(got->layer, "result");
    CHECK_STR_EQ(got->content_type, "video/mp4");
    CHECK_STR_EQ(got->tenant, "acme");
    CHECK_STR_EQ(got->model, "wan2.2-t2v-5b");
    CHECK_STR_EQ(got->tags, "promo, newyear");
    CHECK_STR_EQ(got->tier, "mem");
    CHECK_UINT_EQ(got->cost_ms, 8600);
    CHECK_UINT_EQ(got->size, sizeof value);
    CHECK_UINT_EQ(got->created_ms, fake_now);
    CHECK_UINT_EQ(got->hits, 1);
    CHECK_UINT_EQ(got->expires_ms, fake_now + 7ull * 24 * 3600 * 1000);
    CHECK(got->checksum != 0);
    gencache_handle_release(h);
    gencache_close(c);
}

TEST_CASE(zero_length_value)
{
    gencache *c = open_small(0, 0);
    char key[128];
    key_of(key, "text_embedding", 1);
    CHECK_OK(gencache_put(c, key, NULL, 0, NULL));
    gencache_handle *h = NULL;
    CHECK_OK(gencache_get(c, key, &h));
    CHECK_UINT_EQ(gencache_handle_size(h), 0);
    CHECK(gencache_handle_data(h) != NULL);
    CHECK_STR_EQ(gencache_handle_meta(h)->content_type, "application/octet-stream");
    gencache_handle_release(h);
    gencache_close(c);
}

TEST_CASE(miss_and_bad_keys)
{
    gencache *c = open_small(0, 0);
    gencache_handle *h = (gencache_handle *)&h;
    char key[128];
    key_of(key, "result", 7);
    CHECK_RC(gencache_get(c, key, &h), GENCACHE_ENOTFOUND);
    CHECK(h == NULL);
    const char *bad[] = {
        "",
        "result",
        "result/",
        "/00",
        "result/abc",
        "result/00000000000000000000000000000000000000000000000000000000000000AA",
        "result/00000000000000000000000000000000000000000000000000000000000000aa0",
        "Result/00000000000000000000000000000000000000000000000000000000000000aa",
        "res ult/00000000000000000000000000000000000000000000000000000000000000aa",
        "result/0000000000000000000000000000000000000000000000000000000000000g",
        "a_layer_name_that_is_far_too_long_x/"
        "0000000000000000000000000000000000000000000000000000000000000000",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_RC(gencache_put(c, bad[i], "x", 1, NULL), GENCACHE_EINVAL);
        CHECK_RC(gencache_get(c, bad[i], &h), GENCACHE_EINVAL);
        CHECK_RC(gencache_key_check(c, bad[i]), GENCACHE_EINVAL);
        CHECK_RC(gencache_del(c, bad[i]), GENCACHE_EINVAL);
    }
    key_of(key, "nosuchlayer", 1);
    CHECK_RC(gencache_key_check(c, key), GENCACHE_ENOTFOUND);
    CHECK_RC(gencache_put(c, key, "x", 1, NULL), GENCACHE_ENOTFOUND);
    CHECK_RC(gencache_get(c, key, &h), GENCACHE_ENOTFOUND);
    CHECK_RC(gencache_put(c, NULL, "x", 1, NULL), GENCACHE_EINVAL);
    key_of(key, "result", 1);
    CHECK_RC(gencache_put(c, key, NULL, 5, NULL), GENCACHE_EINVAL);
    CHECK_RC(gencache_get(c, key, NULL), GENCACHE_EINVAL);
    gencache_close(c);
}

TEST_CASE(lru_order)
{
    gencache *c = open_small(0, 3);
    put_latent(c, 1, 100);
    fake_now += 1;
    put_latent(c, 2, 100);
    fake_now += 1;
    put_latent(c, 3, 100);
    fake_now += 1;
    touch(c, 1); /* 2 is now the least recently used */
    fake_now += 1;
    put_latent(c, 4, 100);
    CHECK(present(c, 1));
    CHECK(!present(c, 2));
    CHECK(present(c, 3));
    CHECK(present(c, 4));
    fake_now += 1;
    put_latent(c, 5, 100); /* then 3 */
    CHECK(!present(c, 3));
    CHECK(present(c, 1));
    gencache_stats st = {.struct_size = sizeof st};
    CHECK_OK(gencache_stats_get(c, &st));
    CHECK_UINT_EQ(st.tiers[0].entries, 3);
    CHECK_UINT_EQ(st.tiers[0].evictions_capacity, 2);
    gencache_close(c);
}

TEST_CASE(lru_across_shards)
{
    /* With several shards the victim is still the globally least recently used entry. */
    gencache_options o;
    gencache_options_init(&o);
    o.mem_policy = GENCACHE_EVICTION_LRU;
    o.mem_max_entries = 8;
    o.mem_shards = 4;
    o.clock_fn = fake_clock;
    gencache *c;
    CHECK_OK(gencache_open(&c, &o));
    for (unsigned i = 0; i < 8; i++) {
        fake_now += 10;
        put_latent(c, i, 16);
    }
    fake_now += 10;
    touch(c, 0);
    fake_now += 10;
    put_latent(c, 100, 16);
    CHECK(present(c, 0));
    CHECK(!present(c, 1));
    for (unsigned i = 2; i < 8; i++)
        CHECK(present(c, i));
    gencache_close(c);
}

TEST_CASE(byte_limit)
{
    /* Each 10,000-byte value costs a little more than that with its header. */
    gencache *c = open_small(50000, 0);
    for (unsigned i = 0; i < 20; i++) {
        fake_now++;
        put_latent(c, i, 10000);
        gencache_stats st = {.struct_size = sizeof st};
        CHECK_OK(gencache_stats_get(c, &st));
        CHECK_UINT_LE(st.tiers[0].bytes, 50000);
    }
    CHECK(present(c, 19));
    CHECK(present(c, 16));
    CHECK(!present(c, 0));
    gencache_stats st = {.struct_size = sizeof st};
    CHECK_OK(gencache_stats_get(c, &st));
    CHECK_UINT_EQ(st.tiers[0].entries, 4);
    gencache_close(c);
}

TEST_CASE(too_big)
{
    gencache *c = open_small(4096, 0);
    char key[128];
    key_of(key, "result", 1);
    static char big[8192];
    CHECK_RC(gencache_put(c, key, big, sizeof big, NULL), GENCACHE_ETOOBIG);
    CHECK(!present(c, 1));
    gencache_close(c);
}

TEST_CASE(pinned_never_evicted)
{
    gencache *c = open_small(0, 3);
    char key[128];
    gencache_meta m;
    gencache_meta_init(&m);
    m.pinned = 1;
    key_of(key, "image_latent", 1);
    CHECK_OK(gencache_put(c, key, "p", 1, &m));
    for (unsigned i = 2; i < 50; i++) {
        fake_now++;
        put_latent(c, i, 10);
    }
    CHECK(present(c, 1));
    key_of(key, "image_latent", 2);
    CHECK_OK(gencache_put(c, key, "p", 1, &m));
    key_of(key, "image_latent", 3);
    CHECK_OK(gencache_put(c, key, "p", 1, &m));
    /* Three pinned entries fill the cache: an unpinned newcomer cannot stay. */
    key_of(key, "image_latent", 4);
    CHECK_RC(gencache_put(c, key, "x", 1, NULL), GENCACHE_EFULL);
    CHECK(!present(c, 4));
    key_of(key, "image_latent", 5);
    CHECK_RC(gencache_put(c, key, "x", 1, &m), GENCACHE_EFULL);
    CHECK(present(c, 1) && present(c, 2) && present(c, 3));
    gencache_stats st = {.struct_size = sizeof st};
    CHECK_OK(gencache_stats_get(c, &st));
    CHECK_UINT_EQ(st.tiers[0].pinned_entries, 3);
    /* Pinned entries can still be deleted. */
    key_of(key, "image_latent", 2);
    CHECK_OK(gencache_del(c, key));
    CHECK_OK(gencache_stats_get(c, &st));
    CHECK_UINT_EQ(st.tiers[0].pinned_entries, 2);
    gencache_close(c);
}

TEST_CASE(ttl_absolute)
{
    gencache *c = open_small(0, 0);
    put_latent(c, 1, 10); /* image_latent: 30 minutes, not sliding */
    fake_now += 29 * 60 * 1000;
    touch(c, 1);
    fake_now += 60 * 1000 - 1;
    CHECK(present(c, 1));
    fake_now += 1;
    CHECK(!present(c, 1));
    gencache_stats st = {.struct_size = sizeof st};
    CHECK_OK(gencache_stats_get(c, &st));
    CHECK_UINT_EQ(st.tiers[0].evictions_expired, 1);
    CHECK_UINT_EQ(st.tiers[0].entries, 0);
    gencache_close(c);
}

TEST_CASE(ttl_sliding)
{
    gencache *c = open_small(0, 0);
    char key[128];
    key_of(key, "result", 1);
    CHECK_OK(gencache_put(c, key, "v", 1, NULL));
    const uint64_t week = 7ull * 24 * 3600 * 1000;
    for (int i = 0; i < 3; i++) {
        fake_now += week - 1000; /* a hit before expiry pushes it a week further */
        gencache_handle *h = NULL;
        CHECK_OK(gencache_get(c, key, &h));
        CHECK_UINT_EQ(gencache_handle_meta(h)->expires_ms, fake_now + week);
        gencache_handle_release(h);
    }
    /* peek does not refresh */
    fake_now += week - 1;
    gencache_handle *h = NULL;
    CHECK_OK(gencache_peek(c, key, &h));
    gencache_handle_release(h);
    fake_now += 1;
    CHECK_RC(gencache_peek(c, key, &h), GENCACHE_ENOTFOUND);
    gencache_close(c);
}

TEST_CASE(ttl_override_and_layer_define)
{
    gencache *c = open_small(0, 0);
    gencache_layer_options lo = {.struct_size = sizeof lo};
    gencache_layer_options_init(&lo);
    lo.name = "thumb";
    lo.ttl_ms = 1000;
    CHECK_OK(gencache_layer_define(c, &lo));
    gencache_layer_options got = {.struct_size = sizeof got};
    CHECK_OK(gencache_layer_get(c, "thumb", &got));
    CHECK_UINT_EQ(got.ttl_ms, 1000);
    CHECK_RC(gencache_layer_get(c, "nope", &got), GENCACHE_ENOTFOUND);
    lo.name = "Bad-Name";
    CHECK_RC(gencache_layer_define(c, &lo), GENCACHE_EINVAL);

    char k1[128], k2[128];
    key_of(k1, "thumb", 1);
    key_of(k2, "thumb", 2);
    gencache_meta m;
    gencache_meta_init(&m);
    m.ttl_ms = 5000;
    CHECK_OK(gencache_put(c, k1, "a", 1, NULL));
    CHECK_OK(gencache_put(c, k2, "b", 1, &m));
    fake_now += 1000;
    gencache_handle *h = NULL;
    CHECK_RC(gencache_get(c, k1, &h), GENCACHE_ENOTFOUND);
    CHECK_OK(gencache_get(c, k2, &h));
    gencache_handle_release(h);
    fake_now += 4000;
    CHECK_RC(gencache_get(c, k2, &h), GENCACHE_ENOTFOUND);
    gencache_close(c);
}

TEST_CASE(too_many_layers)
{
    gencache *c = open_small(0, 0);
    gencache_layer_options lo = {.struct_size = sizeof lo};
    gencache_layer_options_init(&lo);
    char name[32];
    int rc = GENCACHE_OK;
    unsigned defined = 0;
    for (unsigned i = 0; i < GENCACHE_MAX_LAYERS + 2 && rc == GENCACHE_OK; i++) {
        sprintf(name, "extra%u", i);
        lo.name = name;
        rc = gencache_layer_define(c, &lo);
        if (rc == GENCACHE_OK)
            defined++;
    }
    CHECK_RC(rc, GENCACHE_ELIMIT);
    CHECK_UINT_EQ(defined + 5, GENCACHE_MAX_LAYERS);
    gencache_close(c);
}

TEST_CASE(maintain_frees_expired)
{
    gencache *c = open_small(0, 0);
    for (unsigned i = 0; i < 10; i++)
        put_latent(c, i, 100);
    char key[128];
    key_of(key, "result", 1);
    CHECK_OK(gencache_put(c, key, "r", 1, NULL));
    fake_now += 31 * 60 * 1000;
    uint64_t n = 0;
    CHECK_OK(gencache_maintain(c, &n));
    CHECK_UINT_EQ(n, 10);
    gencache_stats st = {.struct_size = sizeof st};
    CHECK_OK(gencache_stats_get(c, &st));
    CHECK_UINT_EQ(st.tiers[0].entries, 1);
    CHECK_UINT_EQ(st.tiers[0].evictions_expired, 10);
    gencache_close(c);
}

TEST_CASE(handle_outlives_eviction_replace_and_close)
{
    gencache *c = open_small(0, 2);
    put_latent(c, 1, 1000);
    char key[128];
    key_of(key, "image_latent", 1);
    gencache_handle *h1 = NULL, *h2 = NULL;
    CHECK_OK(gencache_get(c, key, &h1));
    unsigned char expect[1000];
    memset(expect, 1, sizeof expect);

    CHECK_OK(gencache_put(c, key, "new", 3, NULL)); /* replaced */
    CHECK_OK(gencache_get(c, key, &h2));
    CHECK_UINT_EQ(gencache_handle_size(h2), 3);
    CHECK_MEM_EQ(gencache_handle_data(h1), expect, sizeof expect);

    fake_now++;
    put_latent(c, 2, 10);
    fake_now++;
    put_latent(c, 3, 10); /* evicts 1 */
    CHECK(!present(c, 1));
    CHECK_MEM_EQ(gencache_handle_data(h2), "new", 3);

    gencache_handle *h3 = gencache_handle_retain(h1);
    CHECK(h3 == h1);
    gencache_close(c); /* the handles outlive the cache */
    CHECK_MEM_EQ(gencache_handle_data(h1), expect, sizeof expect);
    CHECK_STR_EQ(gencache_handle_meta(h1)->key, key);
    gencache_handle_release(h1);
    CHECK_MEM_EQ(gencache_handle_data(h3), expect, sizeof expect);
    gencache_handle_release(h3);
    gencache_handle_release(h2);
    gencache_handle_release(NULL);
}

TEST_CASE(handle_outlives_invalidate)
{
    gencache *c = open_small(0, 0);
    put_latent(c, 9, 500);
    char key[128];
    key_of(key, "image_latent", 9);
    gencache_handle *h = NULL;
    CHECK_OK(gencache_get(c, key, &h));
    gencache_filter f;
    gencache_filter_init(&f);
    f.layer = "image_latent";
    uint64_t n = 0;
    CHECK_OK(gencache_invalidate(c, &f, &n));
    CHECK_UINT_EQ(n, 1);
    CHECK(!present(c, 9));
    unsigned char expect[500];
    memset(expect, 9, sizeof expect);
    CHECK_MEM_EQ(gencache_handle_data(h), expect, sizeof expect);
    gencache_handle_release(h);
    gencache_close(c);
}

TEST_CASE(ghost_hits)
{
    gencache *c = open_small(0, 2);
    /* A small list remembers every key: gencache__ghosts_default_shift() samples none out. */
    CHECK_OK(gencache__cache_set_ghosts(c, 64, gencache__ghosts_default_shift(64)));
    put_latent(c, 1, 10);
    fake_now++;
    put_latent(c, 2, 10);
    fake_now++;
    put_latent(c, 3, 10); /* evicts 1 */
    char key[128];
    gencache_handle *h = NULL;
    key_of(key, "image_latent", 1);
    CHECK_RC(gencache_get(c, key, &h), GENCACHE_ENOTFOUND);
    key_of(key, "image_latent", 77); /* never stored: a plain miss */
    CHECK_RC(gencache_get(c, key, &h), GENCACHE_ENOTFOUND);
    touch(c, 3);
    gencache_stats st = {.struct_size = sizeof st};
    CHECK_OK(gencache_stats_get(c, &st));
    const gencache_layer_stats *ls = layer_stats(&st, "image_latent");
    CHECK_UINT_EQ(ls->lookups, 3);
    CHECK_UINT_EQ(ls->misses, 2);
    CHECK_UINT_EQ(ls->hits, 1);
    CHECK_UINT_EQ(ls->ghost_hits, 1);
    CHECK_UINT_EQ(ls->puts, 3);
    gencache_close(c);
}

TEST_CASE(ghost_hits_sampled)
{
    /* The default list samples 1 key in 16 by hash: a ghost hit on a sampled key counts 16, one
     * on any other key is not seen. Every key below is evicted and then missed on, so the count
     * is 16 times the number of sampled keys among them, exactly. */
    enum { KEYS = 400 };
    gencache *c = open_small(0, 2);
    gencache_options o;
    gencache_options_init(&o);
    CHECK_UINT_EQ(gencache__ghosts_default_shift(o.ghost_max_entries), 4);
    CHECK_UINT_EQ(gencache__ghosts_default_shift(8191), 0);
    CHECK_UINT_EQ(gencache__ghosts_default_shift(8192), 1);
    CHECK_UINT_EQ(gencache__ghosts_default_shift(1ull << 30), 4);
    for (unsigned i = 0; i < KEYS + 2; i++) {
        fake_now++;
        put_latent(c, i, 10);
    }
    uint64_t sampled = 0;
    for (unsigned i = 0; i < KEYS; i++) {
        char key[128];
        key_of(key, "image_latent", i);
        if (gencache__checksum(key, strlen(key)) >> 60 == 0)
            sampled++;
        gencache_handle *h = NULL;
        CHECK_RC(gencache_get(c, key, &h), GENCACHE_ENOTFOUND);
    }
    CHECK(sampled > 0 && sampled < KEYS / 4); /* about 25 */
    gencache_stats st = {.struct_size = sizeof st};
    CHECK_OK(gencache_stats_get(c, &st));
    const gencache_layer_stats *ls = layer_stats(&st, "image_latent");
    CHECK_UINT_EQ(ls->misses, KEYS);
    CHECK_UINT_EQ(ls->ghost_hits, 16 * sampled);
    gencache_close(c);
}

TEST_CASE(cost_saved_counts_hits)
{
    gencache *c = open_small(0, 0);
    char key[128];
    key_of(key, "result", 5);
    gencache_meta m;
    gencache_meta_init(&m);
    m.cost_ms = 4900;
    CHECK_OK(gencache_put(c, key, "v", 1, &m));
    for (int i = 0; i < 3; i++) {
        gencache_handle *h = NULL;
        CHECK_OK(gencache_get(c, key, &h));
        gencache_handle_release(h);
    }
    gencache_handle *h = NULL;
    CHECK_OK(gencache_peek(c, key, &h)); /* a probe saves nothing */
    gencache_handle_release(h);
    gencache_stats st = {.struct_size = sizeof st};
    CHECK_OK(gencache_stats_get(c, &st));
    CHECK_STR_EQ(st.layers[0].layer, "result");
    CHECK_UINT_EQ(st.layers[0].cost_ms_saved, 3 * 4900);
    CHECK_UINT_EQ(st.layers[0].hits, 3);
    st.struct_size = 1;
    CHECK_RC(gencache_stats_get(c, &st), GENCACHE_EINVAL);
    gencache_close(c);
}

static void put_with(gencache *c, const char *layer, unsigned n, const char *tenant,
                     const char *model, const char *tags)
{
    char key[128];
    key_of(key, layer, n);
    gencache_meta m;
    gencache_meta_init(&m);
    m.tenant = tenant;
    m.model = model;
    m.tags = tags;
    CHECK_OK(gencache_put(c, key, "v", 1, &m));
}

TEST_CASE(invalidate_filters)
{
    gencache *c = open_small(0, 0);
    put_with(c, "result", 1, "acme", "wan", "promo,xmas");
    put_with(c, "result", 2, "acme", "svd", "promo");
    put_with(c, "result", 3, "beta", "wan", NULL);
    put_with(c, "image_latent", 4, NULL, "wan", "xmas");
    put_with(c, "text_embedding", 5, NULL, "cog", "xmasx");
    fake_now += 10000;
    put_with(c, "text_embedding", 6, NULL, "cog", NULL);

    gencache_filter f;
    uint64_t n = 99;
    gencache_filter_init(&f);
    CHECK_RC(gencache_invalidate(c, &f, &n), GENCACHE_EINVAL); /* empty filter */
    CHECK_UINT_EQ(n, 0);
    CHECK_RC(gencache_invalidate(c, NULL, &n), GENCACHE_EINVAL);

    f.tag = "xmas"; /* whole tags only: "xmasx" does not match */
    CHECK_OK(gencache_invalidate(c, &f, &n));
    CHECK_UINT_EQ(n, 2);

    gencache_filter_init(&f);
    f.older_than_ms = 5000;
    CHECK_OK(gencache_invalidate(c, &f, &n));
    CHECK_UINT_EQ(n, 3); /* 2, 3, 5 */

    gencache_filter_init(&f);
    f.model = "cog";
    f.tenant = "acme"; /* AND: entry 6 has no tenant */
    CHECK_OK(gencache_invalidate(c, &f, &n));
    CHECK_UINT_EQ(n, 0);
    f.tenant = NULL;
    CHECK_OK(gencache_invalidate(c, &f, &n));
    CHECK_UINT_EQ(n, 1);

    gencache_stats st = {.struct_size = sizeof st};
    CHECK_OK(gencache_stats_get(c, &st));
    CHECK_UINT_EQ(st.tiers[0].entries, 0);
    CHECK_UINT_EQ(st.invalidated, 6);

    put_with(c, "result", 7, "acme", NULL, NULL);
    gencache_filter_init(&f);
    char key[128];
    key_of(key, "result", 7);
    f.key = key;
    f.tenant = "beta"; /* the key exists but belongs to another tenant */
    CHECK_OK(gencache_invalidate(c, &f, &n));
    CHECK_UINT_EQ(n, 0);
    f.tenant = "acme";
    CHECK_OK(gencache_invalidate(c, &f, &n));
    CHECK_UINT_EQ(n, 1);
    gencache_close(c);
}

TEST_CASE(del)
{
    gencache *c = open_small(0, 0);
    put_latent(c, 3, 10);
    char key[128];
    key_of(key, "image_latent", 3);
    CHECK_OK(gencache_del(c, key));
    CHECK_RC(gencache_del(c, key), GENCACHE_ENOTFOUND);
    CHECK(!present(c, 3));
    gencache_close(c);
}

TEST_CASE(tensor_meta)
{
    gencache *c = open_small(0, 0);
    char key[128];
    key_of(key, "image_latent", 1);
    gencache_meta m;
    gencache_meta_init(&m);
    m.dtype = GENCACHE_DTYPE_F16;
    m.ndim = 4;
    int64_t shape[4] = {1, 4, 8, 8};
    memcpy(m.shape, shape, sizeof shape);
    static uint16_t data[256];
    CHECK_OK(gencache_put(c, key, data, sizeof data, &m));
    gencache_handle *h = NULL;
    CHECK_OK(gencache_get(c, key, &h));
    CHECK_INT_EQ(gencache_handle_meta(h)->dtype, GENCACHE_DTYPE_F16);
    CHECK_UINT_EQ(gencache_handle_meta(h)->ndim, 4);
    CHECK_INT_EQ(gencache_handle_meta(h)->shape[3], 8);
    gencache_handle_release(h);

    CHECK_RC(gencache_put(c, key, data, sizeof data - 2, &m), GENCACHE_EINVAL); /* size */
    m.shape[0] = -1;
    CHECK_RC(gencache_put(c, key, data, sizeof data, &m), GENCACHE_EINVAL);
    m.shape[0] = 1;
    m.ndim = 9;
    CHECK_RC(gencache_put(c, key, data, sizeof data, &m), GENCACHE_EINVAL);
    m.ndim = 4;
    m.dtype = (gencache_dtype)42;
    CHECK_RC(gencache_put(c, key, data, sizeof data, &m), GENCACHE_EINVAL);
    m.dtype = GENCACHE_DTYPE_NONE; /* a shape without a dtype */
    CHECK_RC(gencache_put(c, key, data, sizeof data, &m), GENCACHE_EINVAL);
    m.dtype = GENCACHE_DTYPE_I64;
    m.ndim = 2;
    m.shape[0] = INT64_MAX;
    m.shape[1] = INT64_MAX; /* element count overflows */
    CHECK_RC(gencache_put(c, key, data, sizeof data, &m), GENCACHE_EINVAL);
    gencache_meta_init(&m);
    m.struct_size = 8;
    CHECK_RC(gencache_put(c, key, data, sizeof data, &m), GENCACHE_EINVAL);
    gencache_close(c);
}

TEST_CASE(corrupt_value_is_a_miss)
{
    gencache_options o;
    gencache_options_init(&o);
    o.verify_mem_reads = 1;
    o.clock_fn = fake_clock;
    gencache *c;
    CHECK_OK(gencache_open(&c, &o));
    put_latent(c, 1, 4096);
    char key[128];
    key_of(key, "image_latent", 1);
    gencache_handle *h = NULL;
    CHECK_OK(gencache_get(c, key, &h));
    /* Flip one bit behind the cache's back, as a stray write would. */
    ((unsigned char *)gencache_handle_data(h))[1234] ^= 0x10;
    gencache_handle_release(h);
    CHECK_RC(gencache_get(c, key, &h), GENCACHE_ENOTFOUND);
    CHECK(h == NULL);
    gencache_stats st = {.struct_size = sizeof st};
    CHECK_OK(gencache_stats_get(c, &st));
    CHECK_UINT_EQ(st.tiers[0].evictions_corrupt, 1);
    CHECK_UINT_EQ(st.tiers[0].entries, 0);
    gencache_close(c);
}

TEST_CASE(options_validation)
{
    gencache *c = (gencache *)&c;
    gencache_options o;
    gencache_options_init(&o);
    o.struct_size = 4;
    CHECK_RC(gencache_open(&c, &o), GENCACHE_EINVAL);
    CHECK(c == NULL);
    CHECK_RC(gencache_open(NULL, NULL), GENCACHE_EINVAL);
    gencache_allocator bad = {0};
    gencache_options_init(&o);
    o.allocator = &bad;
    CHECK_RC(gencache_open(&c, &o), GENCACHE_EINVAL);
    CHECK_OK(gencache_open(&c, NULL));
    gencache_close(c);
    gencache_close(NULL);
}

TEST_CASE(charge_reserves_room)
{
    /* Memory held outside the table (sessions, KV windows) pushes entries out. */
    gencache *c = open_small(100000, 0);
    for (unsigned i = 0; i < 8; i++) {
        fake_now++;
        put_latent(c, i, 10000);
    }
    CHECK_OK(gencache__cache_charge(c, 60000));
    gencache_stats st = {.struct_size = sizeof st};
    CHECK_OK(gencache_stats_get(c, &st));
    CHECK_UINT_LE(st.tiers[0].bytes, 100000);
    CHECK(!present(c, 0));
    CHECK(present(c, 7));
    CHECK_RC(gencache__cache_charge(c, 200000), GENCACHE_EFULL);
    CHECK_OK(gencache__cache_charge(c, -60000));
    CHECK_OK(gencache_stats_get(c, &st));
    CHECK_UINT_LE(st.tiers[0].bytes, 40000);
    gencache_close(c);
}

TEST_CASE(charge_on_empty_cache)
{
    /* Reserving room in an empty tier (empty shards, nothing to evict) must not crash, and a
     * reservation beyond the limit is refused without changing the total. */
    gencache *c = open_small(100000, 0);
    CHECK_OK(gencache__cache_charge(c, 50000));
    CHECK_RC(gencache__cache_charge(c, 60000), GENCACHE_EFULL);
    gencache_stats st = {.struct_size = sizeof st};
    CHECK_OK(gencache_stats_get(c, &st));
    CHECK_UINT_EQ(st.tiers[0].bytes, 50000);
    CHECK_OK(gencache__cache_charge(c, -50000));
    gencache_close(c);
}

/* A handle's meta is filled in on first use, yet says what the entry was at that handle's own
 * lookup, not at the time of the call. */
TEST_CASE(handle_meta_is_the_lookups_view)
{
    gencache *c = open_small(0, 0);
    char key[128];
    key_of(key, "result", 21); /* sliding TTL: each hit moves the expiry */
    CHECK_OK(gencache_put(c, key, "v", 1, NULL));
    uint64_t t1 = fake_now + 1000, t2 = fake_now + 5000;
    fake_now = t1;
    gencache_handle *h1 = NULL, *h2 = NULL;
    CHECK_OK(gencache_get(c, key, &h1));
    fake_now = t2;
    CHECK_OK(gencache_get(c, key, &h2));
    const gencache_meta *m2 = gencache_handle_meta(h2);
    const gencache_meta *m1 = gencache_handle_meta(h1);
    CHECK_UINT_EQ(m1->hits, 1);
    CHECK_UINT_EQ(m2->hits, 2);
    CHECK_UINT_EQ(m1->last_access_ms, t1);
    CHECK_UINT_EQ(m2->last_access_ms, t2);
    CHECK_UINT_EQ(m1->expires_ms, t1 + 7ull * 24 * 3600 * 1000);
    CHECK_UINT_EQ(m2->expires_ms, t2 + 7ull * 24 * 3600 * 1000);
    CHECK(gencache_handle_meta(h1) == m1); /* filled once, then the same */
    CHECK_STR_EQ(m1->key, key);
    gencache_handle_release(h1);
    CHECK_UINT_EQ(m2->hits, 2); /* another handle's release changes nothing */
    gencache_handle_release(h2);
    gencache_close(c);
}

/* Released handles are reused by later lookups: each one must say what its own lookup found. */
TEST_CASE(reused_handles_describe_their_own_entry)
{
    gencache *c = open_small(0, 0);
    char keys[3][128];
    key_of(keys[0], "result", 1);
    key_of(keys[1], "image_latent", 2);
    key_of(keys[2], "text_embedding", 3);
    for (int k = 0; k < 3; k++)
        CHECK_OK(gencache_put(c, keys[k], keys[k], strlen(keys[k]) + 1, NULL));
    for (unsigned i = 0; i < 300; i++) {
        int k = (int)(i % 3);
        gencache_handle *h = NULL;
        CHECK_OK(i % 2 ? gencache_get(c, keys[k], &h) : gencache_peek(c, keys[k], &h));
        CHECK_STR_EQ((const char *)gencache_handle_data(h), keys[k]);
        if (i % 5 != 0) /* some handles are released without their meta ever being asked for */
            CHECK_STR_EQ(gencache_handle_meta(h)->key, keys[k]);
        gencache_handle *again = gencache_handle_retain(h);
        gencache_handle_release(h);
        CHECK_STR_EQ(gencache_handle_meta(again)->key, keys[k]);
        gencache_handle_release(again);
    }
    gencache_close(c);
}

/* The key check reads the hex digits 16 at a time: a bad byte anywhere must be caught, and a
 * short or long key never read past its end. */
TEST_CASE(bad_key_bytes_anywhere)
{
    gencache *c = open_small(0, 0);
    const char bad[] = {'g', 'A', 'F', '/', ' ', '.', (char)0x80, (char)0xe6, ':', '`', '@'};
    char key[128];
    gencache_handle *h = NULL;
    for (size_t pos = 0; pos < 64; pos++) {
        for (size_t b = 0; b < sizeof bad; b++) {
            key_of(key, "text_embedding", 0x1234);
            key[strlen("text_embedding/") + pos] = bad[b];
            CHECK_RC(gencache_key_check(c, key), GENCACHE_EINVAL);
            CHECK_RC(gencache_get(c, key, &h), GENCACHE_EINVAL);
        }
    }
    /* Every length of hex part around 64 (a layer name of the right length before it too). */
    for (size_t n = 0; n < 80; n++) {
        snprintf(
            key, sizeof key, "result/%.*s", (int)n,
            "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
        CHECK_RC(gencache_key_check(c, key), n == 64 ? GENCACHE_OK : GENCACHE_EINVAL);
    }
    /* Known layer names as a prefix of another, or with the separator moved. */
    const char *einval[] = {
        "resul/t0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "result0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0",
        "result//123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    };
    for (size_t i = 0; i < sizeof einval / sizeof einval[0]; i++)
        CHECK_RC(gencache_key_check(c, einval[i]), GENCACHE_EINVAL);
    CHECK_RC(gencache_key_check(
                 c, "results/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"),
             GENCACHE_ENOTFOUND);
    CHECK_RC(gencache_key_check(
                 c, "resul/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"),
             GENCACHE_ENOTFOUND);
    gencache_close(c);
}

/* Lookups are counted as hits plus misses, and memory's hits as the rest of the layers' hits. */
TEST_CASE(stats_add_up)
{
    gencache *c = open_small(0, 0);
    put_latent(c, 1, 10);
    touch(c, 1);
    touch(c, 1);
    char key[128];
    key_of(key, "image_latent", 2);
    gencache_handle *h = NULL;
    CHECK_RC(gencache_get(c, key, &h), GENCACHE_ENOTFOUND);
    CHECK(present(c, 1)); /* a peek counts nothing */
    gencache_stats st;
    memset(&st, 0, sizeof st);
    st.struct_size = sizeof st;
    CHECK_OK(gencache_stats_get(c, &st));
    const gencache_layer_stats *ls = layer_stats(&st, "image_latent");
    CHECK_UINT_EQ(ls->hits, 2);
    CHECK_UINT_EQ(ls->misses, 1);
    CHECK_UINT_EQ(ls->lookups, 3);
    CHECK_UINT_EQ(st.tiers[0].hits, 2);
    gencache_close(c);
}

/* Without a clock_fn the cache keeps wall-clock milliseconds (a coarse clock: a few ms). */
TEST_CASE(default_clock_is_wall_clock)
{
    gencache *c = NULL;
    CHECK_OK(gencache_open(&c, NULL));
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t before = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    char key[128];
    key_of(key, "result", 5);
    CHECK_OK(gencache_put(c, key, "v", 1, NULL));
    gencache_handle *h = NULL;
    CHECK_OK(gencache_get(c, key, &h));
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t after = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    const gencache_meta *m = gencache_handle_meta(h);
    CHECK_UINT_LE(before, m->created_ms + 50);
    CHECK_UINT_LE(m->created_ms, after);
    CHECK_UINT_LE(m->created_ms, m->last_access_ms);
    gencache_handle_release(h);
    gencache_close(c);
}
