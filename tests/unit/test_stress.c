/* test_stress.c: readers, writers, deleters and evictions at once on one cache. Every value
 * describes itself (key id, version, pattern), so a reader can tell a torn or mixed-up value
 * from a good one; the memory tier's limits force evictions all along. Run under TSan in CI. */
#include <pthread.h>

#include "test.h"

enum { KEYS = 256, THREADS = 4, OPS = 20000 };

typedef struct value_head {
    uint32_t id;
    uint32_t version;
    uint32_t len; /* payload bytes */
} value_head;

static gencache *cache;
static _Atomic long torn, hits, misses;

static unsigned char pattern(uint32_t id, uint32_t version, size_t i)
{
    return (unsigned char)(id * 31u + version * 7u + i);
}

static void key_of(char *buf, uint32_t id)
{
    sprintf(buf, "image_latent/%064x", id);
}

static void writer_put(uint32_t id, uint32_t version, unsigned char *buf)
{
    value_head h = {id, version, 64 + (id * 97 + version) % 3000};
    memcpy(buf, &h, sizeof h);
    for (size_t i = 0; i < h.len; i++)
        buf[sizeof h + i] = pattern(id, version, i);
    char key[128];
    key_of(key, id);
    int rc = gencache_put(cache, key, buf, sizeof h + h.len, NULL);
    if (rc != GENCACHE_OK)
        test_fail(__FILE__, __LINE__, "put: %s", gencache_errname(rc));
}

static void reader_check(uint32_t id)
{
    char key[128];
    key_of(key, id);
    gencache_handle *h = NULL;
    int rc = gencache_get(cache, key, &h);
    if (rc == GENCACHE_ENOTFOUND) {
        misses++;
        return;
    }
    if (rc != GENCACHE_OK)
        test_fail(__FILE__, __LINE__, "get: %s", gencache_errname(rc));
    const unsigned char *p = gencache_handle_data(h);
    value_head vh;
    memcpy(&vh, p, sizeof vh);
    bool ok = vh.id == id && gencache_handle_size(h) == sizeof vh + vh.len;
    for (size_t i = 0; ok && i < vh.len; i++)
        ok = p[sizeof vh + i] == pattern(id, vh.version, i);
    if (!ok)
        torn++;
    hits++;
    gencache_handle_release(h);
}

static void *worker(void *arg)
{
    uint64_t x = (uintptr_t)arg * 0x9E3779B97F4A7C15ull + 1;
    unsigned char *buf = malloc(sizeof(value_head) + 4096);
    for (int i = 0; i < OPS; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        uint32_t id = (uint32_t)(x % KEYS);
        unsigned op = (unsigned)(x >> 32) % 100;
        if (op < 60) {
            reader_check(id);
        } else if (op < 95) {
            writer_put(id, (uint32_t)i, buf);
        } else if (op < 99) {
            char key[128];
            key_of(key, id);
            int rc = gencache_del(cache, key);
            if (rc != GENCACHE_OK && rc != GENCACHE_ENOTFOUND)
                test_fail(__FILE__, __LINE__, "del: %s", gencache_errname(rc));
        } else {
            gencache_filter f;
            gencache_filter_init(&f);
            f.layer = "condition"; /* scans every shard while others write */
            uint64_t n;
            if (gencache_invalidate(cache, &f, &n) != GENCACHE_OK)
                test_fail(__FILE__, __LINE__, "invalidate failed");
        }
    }
    free(buf);
    return NULL;
}

TEST_CASE(readers_writers_evictions)
{
    gencache_options o;
    gencache_options_init(&o);
    o.mem_max_bytes = 128 * 1024; /* far less than KEYS values: constant eviction */
    o.mem_shards = 4;
    o.verify_mem_reads = 1;
    CHECK_OK(gencache_open(&cache, &o));
    pthread_t t[THREADS];
    for (uintptr_t i = 0; i < THREADS; i++)
        CHECK_INT_EQ(pthread_create(&t[i], NULL, worker, (void *)(i + 1)), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    gencache_stats st = {.struct_size = sizeof st};
    CHECK_OK(gencache_stats_get(cache, &st));
    printf("hits %ld misses %ld evictions %llu bytes %llu\n", (long)hits, (long)misses,
           (unsigned long long)st.tiers[0].evictions_capacity,
           (unsigned long long)st.tiers[0].bytes);
    CHECK_INT_EQ(torn, 0);
    CHECK(hits > 0);
    CHECK(st.tiers[0].evictions_capacity > 0);
    CHECK_UINT_LE(st.tiers[0].bytes, 128 * 1024);
    CHECK_UINT_EQ(st.tiers[0].evictions_corrupt, 0);
    gencache_close(cache);
}

static gencache_handle *shared_handles[KEYS];

static void *holder(void *arg)
{
    /* Takes handles, lets the writers evict under them, and reads them afterwards. */
    (void)arg;
    for (int round = 0; round < 200; round++) {
        int n = 0;
        for (uint32_t id = 0; id < KEYS; id++) {
            char key[128];
            key_of(key, id);
            if (gencache_get(cache, key, &shared_handles[n]) == GENCACHE_OK)
                n++;
        }
        for (int i = 0; i < n; i++) {
            const unsigned char *p = gencache_handle_data(shared_handles[i]);
            value_head vh;
            memcpy(&vh, p, sizeof vh);
            for (size_t j = 0; j < vh.len; j++)
                if (p[sizeof vh + j] != pattern(vh.id, vh.version, j)) {
                    torn++;
                    break;
                }
            gencache_handle_release(shared_handles[i]);
        }
    }
    return NULL;
}

TEST_CASE(handles_under_eviction)
{
    gencache_options o;
    gencache_options_init(&o);
    o.mem_max_bytes = 64 * 1024;
    CHECK_OK(gencache_open(&cache, &o));
    torn = 0;
    pthread_t w[2], r;
    CHECK_INT_EQ(pthread_create(&r, NULL, holder, NULL), 0);
    for (uintptr_t i = 0; i < 2; i++)
        CHECK_INT_EQ(pthread_create(&w[i], NULL, worker, (void *)(i + 7)), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(w[i], NULL);
    pthread_join(r, NULL);
    CHECK_INT_EQ(torn, 0);
    gencache_close(cache);
}

/* Threads that share one handle all ask for its meta at once: the first fills it in, the others
 * wait for it and see it whole. Threads also release handles other threads got (each thread
 * keeps its own pool of released handles). */
static gencache_handle *shared_handle;
static _Atomic int meta_wrong;

static void *meta_reader(void *arg)
{
    const char *key = arg;
    const gencache_meta *m = gencache_handle_meta(shared_handle);
    if (!m || strcmp(m->key, key) != 0 || m->size != 3 || strcmp(m->tier, "mem") != 0)
        meta_wrong++;
    for (int i = 0; i < 2000; i++) {
        gencache_handle *h = NULL;
        if (gencache_get(cache, key, &h) != GENCACHE_OK ||
            strcmp(gencache_handle_meta(h)->key, key) != 0)
            meta_wrong++;
        gencache_handle_release(h);
    }
    gencache_handle_release(shared_handle); /* each thread holds one reference */
    return NULL;
}

TEST_CASE(shared_handle_meta)
{
    enum { READERS = 4 };
    char key[128];
    key_of(key, 99);
    for (int round = 0; round < 50; round++) {
        CHECK_OK(gencache_open(&cache, NULL));
        CHECK_OK(gencache_put(cache, key, "abc", 3, NULL));
        CHECK_OK(gencache_get(cache, key, &shared_handle));
        for (int i = 1; i < READERS; i++)
            gencache_handle_retain(shared_handle);
        meta_wrong = 0;
        pthread_t t[READERS];
        for (int i = 0; i < READERS; i++)
            CHECK_INT_EQ(pthread_create(&t[i], NULL, meta_reader, key), 0);
        for (int i = 0; i < READERS; i++)
            pthread_join(t[i], NULL);
        CHECK_INT_EQ(meta_wrong, 0);
        gencache_close(cache);
    }
}
