/*
 * test_chunk.c: the chunk planner splits T latent frames into chunks that fit a memory budget,
 * repeats the requested overlap between neighbours, ends exactly at T, and refuses plans that
 * cannot work (a budget below one frame, an overlap as long as a chunk) with a clear code.
 */
#include "test.h"

static gencache_chunk_options base(void)
{
    gencache_chunk_options o;
    gencache_chunk_options_init(&o);
    /* f16 latent [1, 4, 16, 8, 8]: 512 bytes a frame; with 1536 for the decoder, 2048. */
    int64_t shape[5] = {1, 4, 16, 8, 8};
    memcpy(o.shape, shape, sizeof shape);
    o.bytes_per_frame = 1536;
    o.budget_bytes = 4 * 2048 + 100; /* 4 frames per chunk */
    return o;
}

TEST_CASE(no_overlap)
{
    gencache_chunk_options o = base();
    gencache_chunk c[8];
    size_t n;
    CHECK_OK(gencache_chunk_plan(&o, c, 8, &n));
    CHECK_UINT_EQ(n, 4);
    for (size_t i = 0; i < 4; i++) {
        CHECK_INT_EQ(c[i].start, (int64_t)i * 4);
        CHECK_INT_EQ(c[i].frames, 4);
        CHECK_INT_EQ(c[i].overlap, 0);
    }
}

TEST_CASE(overlap)
{
    gencache_chunk_options o = base();
    o.overlap = 1;
    gencache_chunk c[8];
    size_t n;
    CHECK_OK(gencache_chunk_plan(&o, c, 8, &n));
    /* [0,4) [3,7) [6,10) [9,13) [12,16) */
    CHECK_UINT_EQ(n, 5);
    for (size_t i = 0; i < 5; i++) {
        CHECK_INT_EQ(c[i].start, (int64_t)i * 3);
        CHECK_INT_EQ(c[i].frames, 4);
        CHECK_INT_EQ(c[i].overlap, i ? 1 : 0);
    }
    o.overlap = 3; /* one new frame per chunk */
    CHECK_OK(gencache_chunk_plan(&o, NULL, 0, &n));
    CHECK_UINT_EQ(n, 13);
    o.shape[2] = 17; /* the last chunk is shorter */
    o.overlap = 1;
    CHECK_OK(gencache_chunk_plan(&o, c, 8, &n));
    CHECK_UINT_EQ(n, 6);
    CHECK_INT_EQ(c[5].start, 15);
    CHECK_INT_EQ(c[5].frames, 2);
    CHECK_INT_EQ(c[5].overlap, 1);
}

TEST_CASE(edges)
{
    gencache_chunk_options o = base();
    gencache_chunk c[4];
    size_t n = 99;
    /* Budget below one frame. */
    o.budget_bytes = 2047;
    CHECK_RC(gencache_chunk_plan(&o, c, 4, &n), GENCACHE_ELIMIT);
    CHECK_UINT_EQ(n, 0);
    /* Exactly one frame per chunk. */
    o.budget_bytes = 2048;
    CHECK_OK(gencache_chunk_plan(&o, NULL, 0, &n));
    CHECK_UINT_EQ(n, 16);
    /* Overlap as long as a chunk: no progress possible. */
    o.overlap = 1;
    CHECK_RC(gencache_chunk_plan(&o, c, 4, &n), GENCACHE_EINVAL);
    o.budget_bytes = 4 * 2048;
    o.overlap = 4;
    CHECK_RC(gencache_chunk_plan(&o, c, 4, &n), GENCACHE_EINVAL);
    o.overlap = 5;
    CHECK_RC(gencache_chunk_plan(&o, c, 4, &n), GENCACHE_EINVAL);
    /* Everything fits: one chunk, and the overlap does not matter. */
    o.budget_bytes = 1 << 30;
    o.overlap = 100;
    CHECK_OK(gencache_chunk_plan(&o, c, 4, &n));
    CHECK_UINT_EQ(n, 1);
    CHECK_INT_EQ(c[0].start, 0);
    CHECK_INT_EQ(c[0].frames, 16);
    /* T = 1. */
    o.shape[2] = 1;
    o.budget_bytes = 2048;
    o.overlap = 0;
    CHECK_OK(gencache_chunk_plan(&o, c, 4, &n));
    CHECK_UINT_EQ(n, 1);
    CHECK_INT_EQ(c[0].frames, 1);
    /* Too small an array: ETOOBIG with the count needed. */
    o = base();
    CHECK_RC(gencache_chunk_plan(&o, c, 3, &n), GENCACHE_ETOOBIG);
    CHECK_UINT_EQ(n, 4);
    /* Bad shapes, dtypes, options. */
    o.shape[3] = 0;
    CHECK_RC(gencache_chunk_plan(&o, c, 4, &n), GENCACHE_EINVAL);
    o = base();
    o.shape[0] = -1;
    CHECK_RC(gencache_chunk_plan(&o, c, 4, &n), GENCACHE_EINVAL);
    o = base();
    o.dtype = GENCACHE_DTYPE_NONE;
    CHECK_RC(gencache_chunk_plan(&o, c, 4, &n), GENCACHE_EINVAL);
    o = base();
    o.struct_size = 8;
    CHECK_RC(gencache_chunk_plan(&o, c, 4, &n), GENCACHE_EINVAL);
    CHECK_RC(gencache_chunk_plan(NULL, c, 4, &n), GENCACHE_EINVAL);
    /* Sizes that overflow 64 bits. */
    o = base();
    o.shape[3] = INT64_MAX;
    o.shape[4] = INT64_MAX;
    CHECK_RC(gencache_chunk_plan(&o, c, 4, &n), GENCACHE_ELIMIT);
    o = base();
    o.bytes_per_frame = UINT64_MAX;
    CHECK_RC(gencache_chunk_plan(&o, c, 4, &n), GENCACHE_ELIMIT);
}

TEST_CASE(random_plans_are_valid)
{
    uint64_t r = 12345;
    gencache_chunk c[4096];
    for (int iter = 0; iter < 2000; iter++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        gencache_chunk_options o = base();
        o.shape[2] = (int64_t)(1 + (r >> 33) % 300);
        o.bytes_per_frame = (r >> 20) % 5000;
        uint64_t cost = 512 + o.bytes_per_frame;
        uint64_t fit = 1 + (r >> 45) % 40;
        o.budget_bytes = fit * cost + (r >> 10) % cost;
        o.overlap = (uint32_t)((r >> 50) % (fit + 1));
        size_t n;
        int rc = gencache_chunk_plan(&o, c, 4096, &n);
        if ((uint64_t)o.shape[2] > fit && o.overlap >= fit) {
            CHECK_RC(rc, GENCACHE_EINVAL);
            continue;
        }
        CHECK_OK(rc);
        CHECK_INT_EQ(c[0].start, 0);
        CHECK_INT_EQ(c[n - 1].start + c[n - 1].frames, o.shape[2]);
        for (size_t i = 0; i < n; i++) {
            CHECK(c[i].frames >= 1);
            CHECK_UINT_LE((uint64_t)c[i].frames * cost, o.budget_bytes);
            if (i > 0) {
                CHECK_INT_EQ(c[i].start, c[i - 1].start + c[i - 1].frames - (int64_t)o.overlap);
                CHECK(c[i].frames > c[i].overlap); /* every chunk brings a new frame */
            }
        }
    }
}
