/*
 * test_cache_checksum.c: the value checksum a put may leave to its first reader. Whoever reads
 * it first (a handle's metadata, a demotion to disk, two threads at once) gets the sum of the
 * stored bytes; a put whose value memory verifies or that writes through computes it at once,
 * over the caller's bytes.
 */
#define _GNU_SOURCE
#include <pthread.h>

#include "tier_util.h" /* before cache.h, whose `layer` type its parameters would shadow */

#include "cache.h"

enum { SIZE = 4000 };

static gencache *open_with(const char *data_dir, int verify, uint64_t mem_bytes)
{
    gencache_options o;
    gencache_options_init(&o);
    o.data_dir = data_dir;
    o.verify_mem_reads = verify;
    o.mem_max_bytes = mem_bytes;
    gencache *c = NULL;
    CHECK_OK(gencache_open(&c, &o));
    return c;
}

/* Puts value n (SIZE bytes, from tu_fill) under key n of layer and returns its XXH3-64. */
static uint64_t put_value(gencache *c, const char *layer_name, uint64_t n)
{
    char key[GENCACHE__KEY_MAX + 1];
    unsigned char v[SIZE];
    tu_key(key, layer_name, n);
    tu_fill(v, sizeof v, n);
    CHECK_OK(gencache_put(c, key, v, sizeof v, NULL));
    return gencache__checksum(v, sizeof v);
}

/* The memory tier's own entry for key n of layer (a new reference, or NULL): what no handle
 * shows. */
static gencache__entry *mem_entry(gencache *c, const char *layer_name, uint64_t n)
{
    char key[GENCACHE__KEY_MAX + 1];
    tu_key(key, layer_name, n);
    gencache__entry *e = NULL;
    gencache__mem_tier_get(c->tiers[0], key, strlen(key), gencache__checksum(key, strlen(key)),
                           gencache__cache_now_ms(c), false, &e);
    return e;
}

/* The checksum a handle's metadata shows for key n of layer (a peek: counts nothing). */
static uint64_t meta_checksum(gencache *c, const char *layer_name, uint64_t n, const char **tier)
{
    char key[GENCACHE__KEY_MAX + 1];
    tu_key(key, layer_name, n);
    gencache_handle *h = NULL;
    CHECK_OK(gencache_peek(c, key, &h));
    CHECK_UINT_EQ(gencache_handle_size(h), SIZE);
    unsigned char v[SIZE];
    tu_fill(v, sizeof v, n);
    CHECK_MEM_EQ(gencache_handle_data(h), v, sizeof v);
    uint64_t sum = gencache_handle_meta(h)->checksum;
    if (tier)
        *tier = gencache_handle_meta(h)->tier; /* a static string */
    gencache_handle_release(h);
    return sum;
}

/* Whether the sum of key n's entry in memory is known yet; checks it when it is. */
static bool sum_known(gencache *c, const char *layer_name, uint64_t n, uint64_t want)
{
    gencache__entry *e = mem_entry(c, layer_name, n);
    CHECK(e != NULL);
    bool known = !atomic_load(&e->sum_lazy);
    if (known)
        CHECK_UINT_EQ(atomic_load(&e->checksum), want);
    gencache__entry_release(e);
    return known;
}

/* A put that writes nothing below memory leaves the value's checksum to its first reader, which
 * gets the sum of the stored bytes; a second reader gets the same without computing it again. */
TEST_CASE(checksum_computed_at_first_need)
{
    gencache *c = open_with(NULL, 0, 0);
    uint64_t want = put_value(c, "image_latent", 1);
    CHECK(!sum_known(c, "image_latent", 1, want));
    CHECK_UINT_EQ(meta_checksum(c, "image_latent", 1, NULL), want);
    CHECK(sum_known(c, "image_latent", 1, want));
    CHECK_UINT_EQ(meta_checksum(c, "image_latent", 1, NULL), want);
    /* A new value of the key has its own sum. */
    uint64_t other = put_value(c, "image_latent", 1 + (1ull << 32));
    CHECK(other != want);
    CHECK(!sum_known(c, "image_latent", 1 + (1ull << 32), other));
    CHECK_UINT_EQ(meta_checksum(c, "image_latent", 1 + (1ull << 32), NULL), other);
    gencache_close(c);
}

/* Memory that verifies its hits needs the sum of the caller's bytes at the put: taken after the
 * copy, a bit flipped in between would pass every check. So does a write-through put. */
TEST_CASE(checksum_at_put_when_verified_or_written_through)
{
    gencache *c = open_with(NULL, 1, 0);
    CHECK(sum_known(c, "image_latent", 2, put_value(c, "image_latent", 2)));
    gencache_close(c);

    char *dir = tu_tmpdir("cache-sum");
    c = open_with(dir, 0, 0);
    CHECK(sum_known(c, "result", 3, put_value(c, "result", 3)));              /* write-through */
    CHECK(!sum_known(c, "image_latent", 4, put_value(c, "image_latent", 4))); /* write-back */
    gencache_close(c);
    tu_rm_rf(dir);
    free(dir);
}

/* Values whose sum was left to later are demoted to disk with the right one: the disk tier
 * checks every value it reads against it, so a wrong sum would turn each read into a miss. */
TEST_CASE(checksum_of_lazy_value_survives_demotion)
{
    enum { N = 40 };
    char *dir = tu_tmpdir("cache-sum-demote");
    gencache *c = open_with(dir, 0, 64 << 10); /* a dozen values: the rest go to disk */
    uint64_t want[N];
    for (unsigned i = 0; i < N; i++)
        want[i] = put_value(c, "image_latent", 100 + i); /* write-back */
    CHECK_OK(gencache_flush(c, NULL));
    unsigned from_disk = 0;
    for (unsigned i = 0; i < N; i++) {
        const char *tier = NULL;
        CHECK_UINT_EQ(meta_checksum(c, "image_latent", 100 + i, &tier), want[i]);
        from_disk += strcmp(tier, "disk") == 0;
    }
    CHECK_UINT_LE(N / 2, from_disk);
    gencache_stats st = {.struct_size = sizeof st};
    CHECK_OK(gencache_stats_get(c, &st));
    CHECK_UINT_EQ(st.tiers[1].evictions_corrupt, 0);
    gencache_close(c);
    tu_rm_rf(dir);
    free(dir);
}

typedef struct sum_reader {
    gencache *c;
    uint64_t sums[64];
} sum_reader;

static void *read_sums(void *p)
{
    sum_reader *r = p;
    for (unsigned i = 0; i < 64; i++)
        r->sums[i] = meta_checksum(r->c, "image_latent", 500 + i, NULL);
    return NULL;
}

/* Two threads asking for the same lazy sums at once both get them right (and TSan sees no race:
 * the sum is published with a release store). */
TEST_CASE(checksum_two_first_readers)
{
    gencache *c = open_with(NULL, 0, 0);
    uint64_t want[64];
    for (unsigned i = 0; i < 64; i++)
        want[i] = put_value(c, "image_latent", 500 + i);
    sum_reader r[2] = {{c, {0}}, {c, {0}}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        CHECK(pthread_create(&t[i], NULL, read_sums, &r[i]) == 0);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    for (unsigned i = 0; i < 64; i++) {
        CHECK_UINT_EQ(r[0].sums[i], want[i]);
        CHECK_UINT_EQ(r[1].sums[i], want[i]);
    }
    gencache_close(c);
}
