/* test_ghost.c: the ghost set remembers the most recent `capacity` hashes exactly (FIFO), and its
 * open-addressing table stays consistent through many insertions and FIFO deletions, checked
 * against a plain array. */
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
