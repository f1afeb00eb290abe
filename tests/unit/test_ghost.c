/* test_ghost.c: the ghost set remembers the most recent `capacity` hashes exactly (FIFO), and its
 * open-addressing table stays consistent through many insertions and FIFO deletions, checked
 * against a plain array. The cache's sampled list remembers only the hashes of its sample, counts
 * each hit on one as 2^shift, and keeps about `capacity` evictions' worth over its shards. */
#include <pthread.h>

#include "test.h"
#include "internal.h"

TEST_CASE(fifo)
{
    gencache__ghost *g;
    CHECK_OK(gencache__ghost_new(NULL, 3, &g));
    gencache__ghost_add(g, 10);
    gencache__ghost_add(g, 20);
    gencache__ghost_add(g, 30);
    gencache__ghost_add(g, 20); /* already there: no change */
    CHECK(gencache__ghost_contains(g, 10));
    gencache__ghost_add(g, 40); /* pushes out 10 */
    CHECK(!gencache__ghost_contains(g, 10));
    CHECK(gencache__ghost_contains(g, 20));
    CHECK(gencache__ghost_contains(g, 40));
    CHECK_UINT_EQ(gencache__ghost_count(g), 3);
    gencache__ghost_add(g, 0); /* the hash 0 is a hash like any other */
    CHECK(gencache__ghost_contains(g, 0));
    gencache__ghost_free(g);
    gencache__ghost_free(NULL);
}

TEST_CASE(bad_capacity)
{
    gencache__ghost *g = (gencache__ghost *)&g;
    CHECK_RC(gencache__ghost_new(NULL, 0, &g), GENCACHE_EINVAL);
    CHECK(g == NULL);
}

TEST_CASE(matches_reference)
{
    enum { CAP = 100, OPS = 20000 };
    gencache__ghost *g;
    CHECK_OK(gencache__ghost_new(NULL, CAP, &g));
    uint64_t ref[CAP];
    size_t n = 0, head = 0;
    uint64_t x = 12345;
    for (int i = 0; i < OPS; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        /* Few distinct values and clustered low bits: long probe runs, many deletions. */
        uint64_t h = (x >> 33) % 400 * 256;
        bool in_ref = false;
        for (size_t j = 0; j < n; j++)
            if (ref[(head + j) % CAP] == h)
                in_ref = true;
        CHECK_INT_EQ(gencache__ghost_contains(g, h), in_ref);
        gencache__ghost_add(g, h);
        if (!in_ref) {
            if (n == CAP) {
                head = (head + 1) % CAP;
                n--;
            }
            ref[(head + n) % CAP] = h;
            n++;
        }
    }
    for (size_t j = 0; j < n; j++)
        CHECK(gencache__ghost_contains(g, ref[(head + j) % CAP]));
    gencache__ghost_free(g);
}

/* A well-mixed 64-bit value from a counter (splitmix64's finalizer). */
static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

TEST_CASE(sampled_remembers_its_sample_only)
{
    gencache__ghosts *g;
    CHECK_OK(gencache__ghosts_new(NULL, 65536, 4, &g));
    CHECK_UINT_EQ(gencache__ghosts_shift(g), 4);
    uint64_t in = 0x0123456789abcdefull;  /* top 4 bits 0: sampled */
    uint64_t out = 0x1123456789abcdefull; /* top 4 bits 1: not */
    gencache__ghosts_add(g, in);
    gencache__ghosts_add(g, out);
    CHECK_UINT_EQ(gencache__ghosts_hit(g, in), 16);
    CHECK_UINT_EQ(gencache__ghosts_hit(g, out), 0);
    CHECK_UINT_EQ(gencache__ghosts_hit(g, in + 1), 0); /* sampled, never added */
    gencache__ghosts_free(g);
    gencache__ghosts_add(NULL, in); /* no list: nothing, and no ghost hits */
    CHECK_UINT_EQ(gencache__ghosts_hit(NULL, in), 0);
    gencache__ghosts_free(NULL);
}

TEST_CASE(sampled_estimate_is_near_the_count)
{
    /* 20,000 distinct evicted keys, all within the window: the sum of the hits' weights over them
     * estimates 20,000 (binomial sampling: a standard deviation of about 550). */
    enum { N = 20000 };
    gencache__ghosts *g;
    CHECK_OK(gencache__ghosts_new(NULL, 65536, 4, &g));
    for (uint64_t i = 0; i < N; i++)
        gencache__ghosts_add(g, mix(i));
    uint64_t est = 0, stray = 0;
    for (uint64_t i = 0; i < N; i++) {
        est += gencache__ghosts_hit(g, mix(i));
        stray += gencache__ghosts_hit(g, mix(i + N)); /* never evicted */
    }
    CHECK(est > N - 5 * 550 && est < N + 5 * 550);
    CHECK_UINT_EQ(est % 16, 0);
    CHECK_UINT_EQ(stray, 0);
    gencache__ghosts_free(g);
}

TEST_CASE(sampled_window_spans_the_shards)
{
    /* Every key sampled, 4096 remembered over 8 shards of 512: the latest 2,000 keys (about 250
     * per shard) are all there, the first 5,000 (followed by 5,000 more in every shard's share)
     * are all gone. */
    enum { N = 10000 };
    gencache__ghosts *g;
    CHECK_OK(gencache__ghosts_new(NULL, 4096, 0, &g));
    for (uint64_t i = 0; i < N; i++)
        gencache__ghosts_add(g, mix(i));
    for (uint64_t i = 0; i < N; i++) {
        uint64_t w = gencache__ghosts_hit(g, mix(i));
        if (i < 5000 && w != 0)
            test_fail(__FILE__, __LINE__, "key %llu of the first 5000 still remembered",
                      (unsigned long long)i);
        if (i >= N - 2000 && w != 1)
            test_fail(__FILE__, __LINE__, "key %llu of the latest 2000 forgotten",
                      (unsigned long long)i);
    }
    gencache__ghosts_free(g);
}

TEST_CASE(sampled_bad_arguments)
{
    gencache__ghosts *g = (gencache__ghosts *)&g;
    CHECK_RC(gencache__ghosts_new(NULL, 0, 0, &g), GENCACHE_EINVAL);
    CHECK(g == NULL);
    CHECK_RC(gencache__ghosts_new(NULL, 1024, 17, &g), GENCACHE_EINVAL);
    CHECK_RC(gencache__ghosts_new(NULL, (1ull << 30) + 1, 0, &g), GENCACHE_EINVAL);
    CHECK_OK(gencache__ghosts_new(NULL, 4, 4, &g)); /* fewer keys than 1 in 16: keeps one */
    gencache__ghosts_add(g, 7);
    CHECK_UINT_EQ(gencache__ghosts_hit(g, 7), 16);
    gencache__ghosts_free(g);
}

typedef struct ghosts_worker {
    gencache__ghosts *g;
    uint64_t base, found;
} ghosts_worker;

static void *ghosts_work(void *p)
{
    ghosts_worker *w = p;
    for (uint64_t i = 0; i < 20000; i++) {
        gencache__ghosts_add(w->g, mix(w->base + i));
        w->found += gencache__ghosts_hit(w->g, mix(w->base + i)) != 0;
    }
    return NULL;
}

TEST_CASE(sampled_concurrent_adds_and_lookups)
{
    /* The cache's sampled ghost list (src/policy/ghost.c) from two threads at once, on the
     * shards' locks (run under TSan). Every key fits (40,000 keys, about 5,000 per shard of
     * 8,192), so each lookup finds its key however the threads interleave, and afterwards every
     * key of both threads is there. */
    gencache__ghosts *g;
    CHECK_OK(gencache__ghosts_new(NULL, 65536, 0, &g));
    ghosts_worker w[2] = {{g, 0, 0}, {g, 1u << 30, 0}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        CHECK_INT_EQ(pthread_create(&t[i], NULL, ghosts_work, &w[i]), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    CHECK_UINT_EQ(w[0].found, 20000);
    CHECK_UINT_EQ(w[1].found, 20000);
    uint64_t after = 0;
    for (uint64_t i = 0; i < 20000; i++)
        after += (gencache__ghosts_hit(g, mix(i)) != 0) +
                 (gencache__ghosts_hit(g, mix((1u << 30) + i)) != 0);
    CHECK_UINT_EQ(after, 40000);
    gencache__ghosts_free(g);
}
