/*
 * test_image_index.c: the near-duplicate index (src/image/hash_index*.c). Every query is checked
 * against a brute-force scan of the same entries, at every radius, including hashes planted at
 * known distances; removal, duplicates, persistence (and refusal of damaged files), and readers
 * running while a writer changes the index.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test.h"

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rnd(void)
{
    /* splitmix64 */
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Flips `d` distinct random bits of h. */
static uint64_t flip(uint64_t h, unsigned d)
{
    uint64_t mask = 0;
    while ((unsigned)__builtin_popcountll(mask) < d)
        mask |= 1ull << (rnd() % 64);
    return h ^ mask;
}

typedef struct ref_entry {
    uint64_t hash, id;
} ref_entry;

static int cmp_hit(const void *a, const void *b)
{
    const gencache_hash_hit *x = a, *y = b;
    if (x->distance != y->distance)
        return x->distance < y->distance ? -1 : 1;
    if (x->id != y->id)
        return x->id < y->id ? -1 : 1;
    return (x->hash > y->hash) - (x->hash < y->hash);
}

/* The index's answer must equal the brute-force answer, in the same order. */
static void check_query(gencache_hash_index *idx, const ref_entry *ref, size_t n, uint64_t q,
                        unsigned radius)
{
    gencache_hash_hit *want = malloc(sizeof *want * (n + 1));
    size_t nw = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned d = (unsigned)__builtin_popcountll(ref[i].hash ^ q);
        if (d <= radius) {
            want[nw].hash = ref[i].hash;
            want[nw].id = ref[i].id;
            want[nw].distance = d;
            nw++;
        }
    }
    qsort(want, nw, sizeof *want, cmp_hit);
    gencache_hash_hit *got = malloc(sizeof *got * (nw + 1));
    size_t count = 12345;
    CHECK_OK(gencache_hash_index_query(idx, q, radius, got, nw + 1, &count));
    if (count != nw)
        test_fail(__FILE__, __LINE__, "query %016llx r=%u: %zu hits, brute force %zu",
                  (unsigned long long)q, radius, count, nw);
    for (size_t i = 0; i < nw; i++)
        if (got[i].hash != want[i].hash || got[i].id != want[i].id ||
            got[i].distance != want[i].distance)
            test_fail(__FILE__, __LINE__, "query r=%u: hit %zu differs", radius, i);
    free(want);
    free(got);
}

/* A new index of n random hashes with ids 0..n-1, also written to ref. */
static gencache_hash_index *random_index(ref_entry *ref, size_t n)
{
    gencache_hash_index *idx;
    CHECK_OK(gencache_hash_index_new(&idx));
    for (size_t i = 0; i < n; i++) {
        ref[i].hash = rnd();
        ref[i].id = i;
        CHECK_OK(gencache_hash_index_insert(idx, ref[i].hash, ref[i].id));
    }
    return idx;
}

TEST_CASE(query_equals_brute_force)
{
    enum { N = 20000 };
    ref_entry *ref = malloc(sizeof *ref * (N + 400));
    gencache_hash_index *idx = random_index(ref, N);
    size_t n = N;
    /* Plant neighbours of 20 centres at every distance 0..19. */
    uint64_t centres[20];
    for (int c = 0; c < 20; c++) {
        centres[c] = rnd();
        for (unsigned d = 0; d < 20; d++, n++) {
            ref[n].hash = flip(centres[c], d);
            ref[n].id = 1000000 + n;
            CHECK_OK(gencache_hash_index_insert(idx, ref[n].hash, ref[n].id));
        }
    }
    CHECK_UINT_EQ(gencache_hash_index_size(idx), n);
    for (int c = 0; c < 20; c++)
        for (unsigned r = 0; r <= 20; r += (r < 12 ? 1 : 4))
            check_query(idx, ref, n, c % 2 ? centres[c] : flip(centres[c], c % 5), r);
    check_query(idx, ref, n, rnd(), 24);
    check_query(idx, ref, n, rnd(), 64);
    /* cap smaller than the count: the nearest come first, count tells the total. */
    gencache_hash_hit top[3];
    size_t count;
    CHECK_OK(gencache_hash_index_query(idx, centres[0], 10, top, 3, &count));
    CHECK(count >= 11);
    CHECK_UINT_EQ(top[0].distance, 0);
    CHECK_UINT_EQ(top[1].distance, 1);
    CHECK_UINT_EQ(top[2].distance, 2);
    CHECK_OK(gencache_hash_index_query(idx, centres[0], 10, NULL, 0, &count));
    CHECK(count >= 11);
    CHECK_RC(gencache_hash_index_query(idx, 0, 65, top, 3, &count), GENCACHE_EINVAL);
    CHECK_RC(gencache_hash_index_query(idx, 0, 5, NULL, 3, &count), GENCACHE_EINVAL);
    CHECK_RC(gencache_hash_index_query(NULL, 0, 5, top, 3, &count), GENCACHE_EINVAL);
    gencache_hash_index_free(idx);
    free(ref);
}

/* Flips d[c] distinct random bits inside each substring c (bits 13c.., 13 wide, the last 12). */
static uint64_t flip_chunks(uint64_t h, const unsigned *d)
{
    for (unsigned c = 0; c < 5; c++) {
        unsigned width = c < 4 ? 13 : 12, done = 0;
        uint64_t mask = 0;
        while (done < d[c]) {
            uint64_t bit = 1ull << (13 * c + rnd() % width);
            if (!(mask & bit)) {
                mask |= bit;
                done++;
            }
        }
        h ^= mask;
    }
    return h;
}

/* Neighbours whose differences are spread over the substrings as evenly as a distance allows:
 * the cases where only one table holds a hit within its substring radius (a in the first
 * r % 5 + 1 tables, a - 1 in the others, for r = 5a + b). Every such neighbour must be found. */
TEST_CASE(query_finds_evenly_spread_neighbours)
{
    enum { N = 5000, PER = 60 };
    ref_entry *ref = malloc(sizeof *ref * (N + 15 * PER));
    gencache_hash_index *idx = random_index(ref, N);
    size_t n = N;
    uint64_t q = rnd();
    for (unsigned r = 0; r <= 14; r++)
        for (unsigned k = 0; k < PER; k++, n++) {
            /* r bits dealt over the five substrings, starting at a random one. */
            unsigned d[5] = {0, 0, 0, 0, 0}, start = (unsigned)(rnd() % 5);
            for (unsigned i = 0; i < r; i++)
                d[(start + i) % 5]++;
            ref[n].hash = flip_chunks(q, d);
            ref[n].id = 2000000 + n;
            int rc = gencache_hash_index_insert(idx, ref[n].hash, ref[n].id);
            CHECK_OK(rc);
        }
    for (unsigned r = 0; r <= 15; r++)
        check_query(idx, ref, n, q, r);
    size_t count;
    CHECK_OK(gencache_hash_index_query(idx, q, 10, NULL, 0, &count));
    CHECK(count >= 11 * PER);
    gencache_hash_index_free(idx);
    free(ref);
}

TEST_CASE(insert_remove_duplicates)
{
    gencache_hash_index *idx;
    CHECK_OK(gencache_hash_index_new(&idx));
    CHECK_OK(gencache_hash_index_insert(idx, 0xABCDEFull, 1));
    CHECK_RC(gencache_hash_index_insert(idx, 0xABCDEFull, 1), GENCACHE_EEXIST);
    CHECK_OK(gencache_hash_index_insert(idx, 0xABCDEFull, 2)); /* same hash, other id */
    CHECK_OK(gencache_hash_index_insert(idx, 0xABCDEEull, 1)); /* same id, other hash */
    CHECK_UINT_EQ(gencache_hash_index_size(idx), 3);
    gencache_hash_hit hits[4];
    size_t count;
    CHECK_OK(gencache_hash_index_query(idx, 0xABCDEFull, 0, hits, 4, &count));
    CHECK_UINT_EQ(count, 2);
    CHECK_UINT_EQ(hits[0].id, 1);
    CHECK_UINT_EQ(hits[1].id, 2);
    CHECK_OK(gencache_hash_index_remove(idx, 0xABCDEFull, 1));
    CHECK_RC(gencache_hash_index_remove(idx, 0xABCDEFull, 1), GENCACHE_ENOTFOUND);
    CHECK_RC(gencache_hash_index_remove(idx, 0x123ull, 9), GENCACHE_ENOTFOUND);
    CHECK_OK(gencache_hash_index_query(idx, 0xABCDEFull, 1, hits, 4, &count));
    CHECK_UINT_EQ(count, 2);
    CHECK_UINT_EQ(hits[0].id, 2);
    CHECK_UINT_EQ(hits[0].distance, 0);
    CHECK_UINT_EQ(hits[1].hash, 0xABCDEEull);
    CHECK_UINT_EQ(hits[1].distance, 1);
    CHECK_UINT_EQ(gencache_hash_index_size(idx), 2);
    CHECK_RC(gencache_hash_index_insert(NULL, 1, 1), GENCACHE_EINVAL);
    CHECK_RC(gencache_hash_index_remove(NULL, 1, 1), GENCACHE_EINVAL);
    CHECK_RC(gencache_hash_index_new(NULL), GENCACHE_EINVAL);
    gencache_hash_index_free(idx);
    gencache_hash_index_free(NULL);
}

/* Removing half of the entries leaves exactly the other half findable. */
TEST_CASE(remove_many)
{
    enum { N = 5000 };
    ref_entry *ref = malloc(sizeof *ref * N);
    gencache_hash_index *idx;
    CHECK_OK(gencache_hash_index_new(&idx));
    uint64_t centre = rnd();
    for (size_t i = 0; i < N; i++) {
        ref[i].hash = i % 2 ? rnd() : flip(centre, (unsigned)(i % 9));
        ref[i].id = i;
        CHECK_OK(gencache_hash_index_insert(idx, ref[i].hash, ref[i].id));
    }
    size_t kept = 0;
    for (size_t i = 0; i < N; i++) {
        if (i % 3 == 0)
            CHECK_OK(gencache_hash_index_remove(idx, ref[i].hash, ref[i].id));
        else
            ref[kept++] = ref[i];
    }
    CHECK_UINT_EQ(gencache_hash_index_size(idx), kept);
    for (unsigned r = 0; r <= 10; r++)
        check_query(idx, ref, kept, centre, r);
    gencache_hash_index_free(idx);
    free(ref);
}

static void tmp_path(char *buf, size_t n, const char *name)
{
    snprintf(buf, n, "/tmp/gencache-test-index-%ld-%s", (long)getpid(), name);
}

TEST_CASE(save_load_round_trip)
{
    enum { N = 3000 };
    ref_entry *ref = malloc(sizeof *ref * N);
    gencache_hash_index *idx, *back;
    CHECK_OK(gencache_hash_index_new(&idx));
    for (size_t i = 0; i < N; i++) {
        ref[i].hash = rnd();
        ref[i].id = rnd();
        CHECK_OK(gencache_hash_index_insert(idx, ref[i].hash, ref[i].id));
    }
    char path[256];
    tmp_path(path, sizeof path, "rt");
    CHECK_OK(gencache_hash_index_save(idx, path));
    CHECK_OK(gencache_hash_index_load(path, &back));
    CHECK_UINT_EQ(gencache_hash_index_size(back), N);
    for (int k = 0; k < 5; k++)
        check_query(back, ref, N, ref[k * 7].hash, 12);
    /* Saving over an existing file replaces it. */
    CHECK_OK(gencache_hash_index_remove(idx, ref[0].hash, ref[0].id));
    CHECK_OK(gencache_hash_index_save(idx, path));
    gencache_hash_index_free(back);
    CHECK_OK(gencache_hash_index_load(path, &back));
    CHECK_UINT_EQ(gencache_hash_index_size(back), N - 1);
    gencache_hash_index_free(back);
    /* An empty index round-trips too. */
    gencache_hash_index *empty;
    CHECK_OK(gencache_hash_index_new(&empty));
    CHECK_OK(gencache_hash_index_save(empty, path));
    CHECK_OK(gencache_hash_index_load(path, &back));
    CHECK_UINT_EQ(gencache_hash_index_size(back), 0);
    gencache_hash_index_free(back);
    gencache_hash_index_free(empty);
    CHECK_RC(gencache_hash_index_save(idx, "/nonexistent-dir/x.idx"), GENCACHE_EIO);
    unlink(path);
    gencache_hash_index_free(idx);
    free(ref);
}

static void write_bytes(const char *path, const unsigned char *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    CHECK(fwrite(p, 1, n, f) == n);
    fclose(f);
}

TEST_CASE(load_refuses_damaged_files)
{
    gencache_hash_index *idx, *back = (gencache_hash_index *)1;
    CHECK_OK(gencache_hash_index_new(&idx));
    for (int i = 0; i < 10; i++)
        CHECK_OK(gencache_hash_index_insert(idx, rnd(), (uint64_t)i));
    char path[256], bad[256];
    tmp_path(path, sizeof path, "good");
    tmp_path(bad, sizeof bad, "bad");
    CHECK_OK(gencache_hash_index_save(idx, path));
    FILE *f = fopen(path, "rb");
    unsigned char buf[1024];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    CHECK_UINT_EQ(n, 24 + 10 * 16 + 8);

    unsigned char copy[1024];
    memcpy(copy, buf, n);
    copy[24 + 5 * 16 + 3] ^= 1; /* one bit of one hash */
    write_bytes(bad, copy, n);
    CHECK_RC(gencache_hash_index_load(bad, &back), GENCACHE_ECORRUPT);
    CHECK(back == NULL);
    write_bytes(bad, buf, n - 1); /* truncated */
    CHECK_RC(gencache_hash_index_load(bad, &back), GENCACHE_EPARSE);
    write_bytes(bad, buf, 10); /* shorter than a header */
    CHECK_RC(gencache_hash_index_load(bad, &back), GENCACHE_EPARSE);
    memcpy(copy, buf, n);
    copy[16] = 0xFF; /* a count the size cannot hold */
    write_bytes(bad, copy, n);
    CHECK_RC(gencache_hash_index_load(bad, &back), GENCACHE_EPARSE);
    memcpy(copy, buf, n);
    copy[8] = 2; /* a future version */
    write_bytes(bad, copy, n);
    CHECK_RC(gencache_hash_index_load(bad, &back), GENCACHE_EVERSION);
    memcpy(copy, buf, n);
    copy[0] = 'X'; /* not an index file */
    write_bytes(bad, copy, n);
    CHECK_RC(gencache_hash_index_load(bad, &back), GENCACHE_EPARSE);
    CHECK_RC(gencache_hash_index_load("/nonexistent.idx", &back), GENCACHE_EIO);
    CHECK_RC(gencache_hash_index_load(NULL, &back), GENCACHE_EINVAL);
    unlink(path);
    unlink(bad);
    gencache_hash_index_free(idx);
}

typedef struct reader_arg {
    gencache_hash_index *idx;
    uint64_t stable[64]; /* present for the whole test */
    int failures;
} reader_arg;

static void *reader(void *p)
{
    reader_arg *a = p;
    for (int round = 0; round < 300; round++)
        for (int k = 0; k < 64; k++) {
            gencache_hash_hit hits[8];
            size_t count;
            if (gencache_hash_index_query(a->idx, a->stable[k], 0, hits, 8, &count) !=
                    GENCACHE_OK ||
                count < 1 || hits[0].hash != a->stable[k])
                __atomic_add_fetch(&a->failures, 1, __ATOMIC_RELAXED);
        }
    return NULL;
}

/* Readers always find the entries that stay, while a writer inserts and removes others. */
TEST_CASE(concurrent_readers_and_writer)
{
    reader_arg a;
    memset(&a, 0, sizeof a);
    CHECK_OK(gencache_hash_index_new(&a.idx));
    for (int k = 0; k < 64; k++) {
        a.stable[k] = rnd();
        CHECK_OK(gencache_hash_index_insert(a.idx, a.stable[k], 1000u + (unsigned)k));
    }
    pthread_t th[3];
    for (int i = 0; i < 3; i++)
        CHECK(pthread_create(&th[i], NULL, reader, &a) == 0);
    for (int round = 0; round < 20; round++) {
        uint64_t hs[200];
        for (int i = 0; i < 200; i++) {
            hs[i] = rnd();
            CHECK_OK(gencache_hash_index_insert(a.idx, hs[i], (uint64_t)i));
        }
        for (int i = 0; i < 200; i++)
            CHECK_OK(gencache_hash_index_remove(a.idx, hs[i], (uint64_t)i));
    }
    for (int i = 0; i < 3; i++)
        pthread_join(th[i], NULL);
    CHECK_INT_EQ(a.failures, 0);
    CHECK_UINT_EQ(gencache_hash_index_size(a.idx), 64);
    gencache_hash_index_free(a.idx);
}
