/*
 * test_writeback_redis.c: a full cache (memory, disk and a real redis-server) under memory
 * pressure. Two threads fill a small memory tier ten times over with the durable layers (result:
 * write-through; image_latent: write-back and shared) while reading back what they wrote; then
 * nothing may be lost: every key readable from some tier, after gencache_flush() every shared key
 * readable by a second cache on the same Redis with the TTL its layer says, and after a clean
 * close every key on disk.
 */
#define _GNU_SOURCE
#include <pthread.h>

#include "redis_server.h"
#include "tier/redis.h"
#include "tier_util.h"

#define MEM_BYTES (192u * 1024u)
#define THREADS   2
/* Values of 3000-4999 bytes, enough of them to fill memory ten times. */
#define PER_THREAD ((10u * MEM_BYTES) / (THREADS * 4000u))
#define MINUTE_MS  60000ull
#define DAY_MS     (24ull * 60ull * MINUTE_MS)
/* How much less than the layer's TTL a PTTL may be: the time since the value was written. */
#define TTL_SLACK_MS (2ull * MINUTE_MS)

static const char *layer_of(uint64_t id)
{
    return id % 2 ? "image_latent" : "result";
}

static size_t size_of(uint64_t id)
{
    return 3000 + (size_t)(id * 37 % 2000);
}

static uint64_t id_of(unsigned thread, unsigned i)
{
    return (uint64_t)thread * 100000u + i;
}

static void put_value(gencache *c, uint64_t id)
{
    char key[GENCACHE__KEY_MAX + 1];
    tu_key(key, layer_of(id), id);
    size_t n = size_of(id);
    unsigned char *v = malloc(n);
    tu_fill(v, n, id);
    gencache_meta m;
    gencache_meta_init(&m);
    m.cost_ms = 50;
    CHECK_OK(gencache_put(c, key, v, n, &m));
    free(v);
}

/* Reads id through `c` (a get, or a peek) and checks its bytes; returns the tier's name. */
static const char *check_value(gencache *c, uint64_t id, bool peek)
{
    char key[GENCACHE__KEY_MAX + 1];
    tu_key(key, layer_of(id), id);
    gencache_handle *h = NULL;
    int rc = peek ? gencache_peek(c, key, &h) : gencache_get(c, key, &h);
    if (rc != GENCACHE_OK)
        test_fail(__FILE__, __LINE__, "%s: %s", key, gencache_errname(rc));
    size_t n = size_of(id);
    CHECK_UINT_EQ(gencache_handle_size(h), n);
    unsigned char *want = malloc(n);
    tu_fill(want, n, id);
    CHECK_MEM_EQ(gencache_handle_data(h), want, n);
    free(want);
    const char *tier = gencache_handle_meta(h)->tier;
    gencache_handle_release(h);
    return tier;
}

typedef struct filler {
    gencache *c;
    unsigned thread;
    _Atomic unsigned *done; /* per thread: how many of its puts have returned */
} filler;

/* Puts this thread's values, reading back one already stored (by either thread) after each:
 * nothing may go missing while memory is evicting and the write-back queue is full. */
static void *fill(void *p)
{
    filler *f = p;
    unsigned r = 12345u + f->thread;
    for (unsigned i = 0; i < PER_THREAD; i++) {
        put_value(f->c, id_of(f->thread, i));
        atomic_store(&f->done[f->thread], i + 1);
        r = r * 1103515245u + 12345u;
        unsigned t = (r >> 4) % THREADS, n = atomic_load(&f->done[t]);
        if (n)
            check_value(f->c, id_of(t, (r >> 8) % n), false);
    }
    return NULL;
}

static gencache_tier_stats tier_stats(gencache *c, const char *name)
{
    gencache_stats s = {.struct_size = sizeof s};
    CHECK_OK(gencache_stats_get(c, &s));
    for (uint32_t i = 0; i < s.n_tiers; i++)
        if (strcmp(s.tiers[i].tier, name) == 0)
            return s.tiers[i];
    test_fail(__FILE__, __LINE__, "no tier %s", name);
}

static uint64_t layer_ttl(gencache *c, const char *layer)
{
    gencache_layer_options lo = {.struct_size = sizeof lo};
    gencache_layer_options_init(&lo);
    CHECK_OK(gencache_layer_get(c, layer, &lo));
    return lo.ttl_ms;
}

static long long redis_pttl(redisContext *rc, uint64_t id)
{
    char key[GENCACHE__KEY_MAX + 1];
    tu_key(key, layer_of(id), id);
    redisReply *r = redisCommand(rc, "PTTL %s%s", GENCACHE__REDIS_PREFIX, key);
    CHECK(r && r->type == REDIS_REPLY_INTEGER);
    long long v = r->integer;
    freeReplyObject(r);
    return v;
}

TEST_CASE(pressure_loses_nothing)
{
    int port = rs_start();
    CHECK(port > 0);
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", port);
    char *dir = tu_tmpdir("wbredis");
    gencache_options o;
    gencache_options_init(&o);
    o.mem_max_bytes = MEM_BYTES;
    o.data_dir = dir;
    o.redis_url = url;
    o.redis_timeout_ms = 5000; /* a loaded machine or a sanitizer must not turn puts into drops */
    o.writeback_max_bytes = 64u * 1024u; /* small: evictions wait for the writer */
    o.ghost_max_entries = 0;
    gencache *a = NULL;
    CHECK_OK(gencache_open(&a, &o));
    /* The layers as the defaults define them: what this test is about. */
    gencache_layer_options lo = {.struct_size = sizeof lo};
    gencache_layer_options_init(&lo);
    CHECK_OK(gencache_layer_get(a, "result", &lo));
    CHECK(lo.write_through && lo.shared);
    CHECK_UINT_EQ(lo.ttl_ms, 7 * DAY_MS);
    CHECK_OK(gencache_layer_get(a, "image_latent", &lo));
    CHECK(!lo.write_through && lo.shared);
    CHECK_UINT_EQ(lo.ttl_ms, 30 * MINUTE_MS);

    pthread_t th[THREADS];
    filler args[THREADS];
    _Atomic unsigned done[THREADS] = {0};
    for (unsigned t = 0; t < THREADS; t++) {
        args[t] = (filler){a, t, done};
        CHECK_INT_EQ(pthread_create(&th[t], NULL, fill, &args[t]), 0);
    }
    for (unsigned t = 0; t < THREADS; t++)
        pthread_join(th[t], NULL);
    gencache_tier_stats mem = tier_stats(a, "mem");
    CHECK(mem.evictions_capacity >= THREADS * PER_THREAD / 2); /* memory really was full */

    /* Every key, from whichever tier holds it. */
    unsigned from[3] = {0, 0, 0}; /* mem, disk, redis */
    for (unsigned t = 0; t < THREADS; t++) {
        for (unsigned i = 0; i < PER_THREAD; i++) {
            const char *tier = check_value(a, id_of(t, i), true);
            from[strcmp(tier, "mem") == 0 ? 0 : strcmp(tier, "disk") == 0 ? 1 : 2]++;
        }
    }
    CHECK(from[1] > 0);
    printf("%u keys: %u in memory, %u on disk, %u only in redis\n", THREADS * PER_THREAD, from[0],
           from[1], from[2]);

    /* After a flush, a node without a disk finds every shared key in Redis, with its layer's
     * TTL (read from Redis itself, before any read could refresh it). */
    CHECK_OK(gencache_flush(a, NULL));
    gencache_options ob;
    gencache_options_init(&ob);
    ob.redis_url = url;
    ob.redis_timeout_ms = 5000;
    gencache *b = NULL;
    CHECK_OK(gencache_open(&b, &ob));
    redisContext *rc = rs_client();
    CHECK(rc != NULL);
    for (unsigned t = 0; t < THREADS; t++) {
        for (unsigned i = 0; i < PER_THREAD; i++) {
            uint64_t id = id_of(t, i);
            long long ttl = (long long)layer_ttl(b, layer_of(id));
            long long pttl = redis_pttl(rc, id);
            if (pttl > ttl || pttl < ttl - (long long)TTL_SLACK_MS)
                test_fail(__FILE__, __LINE__, "%s %llu: PTTL %lld, layer TTL %lld", layer_of(id),
                          (unsigned long long)id, pttl, ttl);
            CHECK_STR_EQ(check_value(b, id, true), "redis");
        }
    }
    redisFree(rc);
    CHECK_UINT_EQ(tier_stats(a, "redis").backend_errors, 0);
    CHECK_UINT_EQ(tier_stats(b, "redis").backend_errors, 0);
    gencache_close(b);
    gencache_close(a);

    /* A clean close left every value on disk: without Redis, the data directory serves all. */
    ob.redis_url = NULL;
    ob.data_dir = dir;
    gencache *d = NULL;
    CHECK_OK(gencache_open(&d, &ob));
    for (unsigned t = 0; t < THREADS; t++)
        for (unsigned i = 0; i < PER_THREAD; i++)
            CHECK_STR_EQ(check_value(d, id_of(t, i), true), "disk");
    gencache_close(d);
    rs_stop();
    tu_rm_rf(dir);
    free(dir);
}
