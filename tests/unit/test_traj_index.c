/*
 * test_traj_index.c: the trajectory index itself (src/reuse/traj_index.c, ann.cpp) below the
 * public API: the approximate graph agreeing with exact search, removals leaving the graph and
 * their places being reused, a graph built at once from the vectors held, the float16 copies and
 * the loops used without F16C, the graph dropped again
 * when a group shrinks, tenants kept apart,
 * removals during a search queued instead of waiting for it, and concurrent adds, drops and
 * searches on a group with a graph.
 */
#define _GNU_SOURCE /* pthread_timedjoin_np */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <time.h>

#include "reuse/ann.h"
#include "reuse/traj_index.h"
#include "test.h"

/* hnswlib takes its per-node mutexes (65,536 of them per graph, and one per node) in either
 * order while linking a node, which ThreadSanitizer's deadlock detector reports as potential
 * deadlocks, most often without a stack to suppress by name. None can form: the index lets one
 * thread at a time into hnswlib's writing code (its write lock). The detector is off for this
 * file; data races are still reported. Read by TSan builds only. */
const char *__tsan_default_options(void);
const char *__tsan_default_options(void)
{
    return "detect_deadlocks=0";
}

#define DIM      64
#define CLUSTERS 40

static uint64_t rng = 0x853c49e6748fea9bull;

/* xorshift64*: reproducible data without libc's shared state. */
static uint64_t rnd(void)
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 0x2545f4914f6cdd1dull;
}

/* A standard normal draw (Box-Muller, one of the pair). */
static float gauss(void)
{
    double u = ((double)(rnd() >> 11) + 0.5) / 9007199254740992.0;
    double w = (double)(rnd() >> 11) / 9007199254740992.0;
    return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * w));
}

static float centres[CLUSTERS][DIM];

static void make_centres(void)
{
    for (int c = 0; c < CLUSTERS; c++)
        for (int k = 0; k < DIM; k++)
            centres[c][k] = gauss();
}

/* A vector near centre c: clustered data, as text embeddings are. */
static void near_centre(float *v, int c, float spread)
{
    for (int k = 0; k < DIM; k++)
        v[k] = centres[c][k] + spread * gauss();
}

static const gencache__traj_table any = {.n = 1, .rows = {{-1.0f, 100}}};

static gencache__traj *open_index(size_t min_vectors)
{
    gencache__traj *t = NULL;
    CHECK_OK(gencache__traj_new(&t));
    gencache__traj_ann_opts o;
    gencache__traj_ann_opts_init(&o);
    o.min_vectors = min_vectors;
    o.ef_construction = 100;
    o.ef_search = 64;
    gencache__traj_set_ann(t, &o);
    return t;
}

static void add(gencache__traj *t, uint64_t key, uint64_t tenant, const float *v)
{
    gencache__traj_rec r = {
        .layer = 1, .model_hash = 7, .key_hash = key, .tenant_hash = tenant, .step = 5};
    memcpy(r.hex, &key, sizeof key);
    CHECK_OK(gencache__traj_add(t, &r, v, DIM));
}

/* The key of the best candidate, 0 when none. */
static uint64_t best(gencache__traj *t, uint64_t tenant, const float *q, unsigned flags)
{
    gencache__traj_cand c[8];
    size_t n = 0;
    CHECK_OK(gencache__traj_find_ex(t, 1, 7, tenant, q, DIM, &any, c, 8, &n, flags));
    return n ? c[0].rec.key_hash : 0;
}

static float data[3000][DIM];

static void fill(gencache__traj *t, int n)
{
    for (int i = 0; i < n; i++) {
        near_centre(data[i], (int)(rnd() % CLUSTERS), 0.6f);
        add(t, (uint64_t)i + 1, 0, data[i]);
    }
}

TEST_CASE(graph_agrees_with_exact)
{
    make_centres();
    gencache__traj *t = open_index(256);
    fill(t, 3000);
    CHECK(gencache__traj_graph_bytes(t) > 0);
    int agree = 0, q = 300;
    for (int j = 0; j < q; j++) {
        float v[DIM];
        int src = (int)(rnd() % 3000);
        for (int k = 0; k < DIM; k++)
            v[k] = data[src][k] + 0.2f * gauss();
        uint64_t exact = best(t, 0, v, GENCACHE__TRAJ_EXACT), approx = best(t, 0, v, 0);
        CHECK(exact != 0);
        agree += exact == approx;
    }
    /* Measured 1.0 here; below 0.95 the graph is broken, not merely approximate. */
    CHECK_UINT_LE((uint64_t)(0.95 * q), (uint64_t)agree);
    gencache__traj_free(t);
}

TEST_CASE(graph_built_at_once)
{
    make_centres();
    gencache__traj *t = open_index(SIZE_MAX);
    fill(t, 3000);
    CHECK_UINT_EQ(gencache__traj_graph_bytes(t), 0);
    gencache__traj_ann_opts o;
    gencache__traj_ann_opts_init(&o);
    o.min_vectors = 256;
    o.ef_construction = 100;
    o.ef_search = 64;
    gencache__traj_set_ann(t, &o);
    CHECK_OK(gencache__traj_build_graphs(t));
    CHECK(gencache__traj_graph_bytes(t) > 0);
    int agree = 0;
    for (int i = 0; i < 3000; i += 10)
        agree += best(t, 0, data[i], 0) == (uint64_t)i + 1;
    CHECK_UINT_LE(285, (uint64_t)agree);
    /* The graph built at once takes adds and removals like one grown vector by vector. */
    CHECK_UINT_EQ(gencache__traj_drop(t, 1), 1);
    CHECK(best(t, 0, data[0], 0) != 1);
    add(t, 1, 0, data[0]);
    CHECK_UINT_EQ(best(t, 0, data[0], 0), 1);
    CHECK_UINT_EQ(gencache__traj_count(t), 3000);
    gencache__traj_free(t);
}

TEST_CASE(graph_follows_removals)
{
    make_centres();
    gencache__traj *t = open_index(256);
    fill(t, 2000);
    size_t bytes = gencache__traj_graph_bytes(t);
    /* The nearest record, once dropped, is never found again, by either search. */
    for (int i = 0; i < 50; i++) {
        int src = (int)(rnd() % 2000);
        uint64_t key = best(t, 0, data[src], 0);
        CHECK(key != 0);
        CHECK_UINT_EQ(gencache__traj_drop(t, key), 1);
        CHECK(best(t, 0, data[src], 0) != key);
        CHECK(best(t, 0, data[src], GENCACHE__TRAJ_EXACT) != key);
        CHECK_UINT_EQ(gencache__traj_drop(t, key), 0);
    }
    CHECK_UINT_EQ(gencache__traj_count(t), 1950);
    /* Churn: 1,000 drops and 1,000 adds reuse the graph's places instead of growing it. */
    for (uint64_t k = 1; k <= 1000; k++)
        gencache__traj_drop(t, k);
    for (int i = 0; i < 1000; i++) {
        near_centre(data[i], (int)(rnd() % CLUSTERS), 0.6f);
        add(t, 10000 + (uint64_t)i, 0, data[i]);
    }
    CHECK_UINT_EQ(gencache__traj_graph_bytes(t), bytes);
    for (int i = 0; i < 1000; i += 97)
        CHECK_UINT_EQ(best(t, 0, data[i], 0), 10000 + (uint64_t)i);
    /* A group that shrinks well below the size goes back to exact search only. */
    for (uint64_t k = 1001; k <= 2000; k++)
        gencache__traj_drop(t, k);
    for (uint64_t k = 10000; k < 10990; k++)
        gencache__traj_drop(t, k);
    CHECK_UINT_EQ(gencache__traj_count(t), 10);
    CHECK_UINT_EQ(gencache__traj_graph_bytes(t), 0);
    for (int i = 990; i < 1000; i++)
        CHECK_UINT_EQ(best(t, 0, data[i], 0), 10000 + (uint64_t)i);
    gencache__traj_free(t);
}

TEST_CASE(graph_keeps_tenants_apart)
{
    make_centres();
    gencache__traj *t = open_index(128);
    /* Tenant 1 holds many vectors (a graph), tenant 2 a few (exact), near the same points. */
    for (int i = 0; i < 600; i++) {
        near_centre(data[i], i % CLUSTERS, 0.3f);
        add(t, (uint64_t)i + 1, 1, data[i]);
    }
    for (int i = 0; i < 20; i++)
        add(t, 5000 + (uint64_t)i, 2, data[i]);
    CHECK(gencache__traj_graph_bytes(t) > 0);
    for (int i = 0; i < 40; i++) {
        uint64_t k1 = best(t, 1, data[i], 0), k2 = best(t, 2, data[i], 0);
        CHECK(k1 >= 1 && k1 <= 600);
        CHECK(k2 >= 5000 && k2 < 5020);
        CHECK_UINT_EQ(best(t, 3, data[i], 0), 0);
    }
    /* One model has one dimension, whichever tenant stores it. */
    float wide[DIM * 2] = {1.0f};
    gencache__traj_rec r = {.layer = 1, .model_hash = 7, .key_hash = 99999, .tenant_hash = 3};
    CHECK_RC(gencache__traj_add(t, &r, wide, DIM * 2), GENCACHE_EINVAL);
    gencache__traj_cand c[1];
    size_t n = 0;
    CHECK_RC(gencache__traj_find(t, 1, 7, 3, wide, DIM * 2, &any, c, 1, &n), GENCACHE_EINVAL);
    CHECK_UINT_EQ(n, 0);
    gencache__traj_free(t);
}

/* ---- the float16 copies ---- */

TEST_CASE(half_conversions)
{
    static const struct {
        float f;
        uint16_t h;
        bool exact; /* f is a half: it decodes back to f */
    } cases[] = {
        {0.0f, 0x0000, true},
        {-0.0f, 0x8000, true},
        {1.0f, 0x3c00, true},
        {-2.0f, 0xc000, true},
        {0.5f, 0x3800, true},
        {65504.0f, 0x7bff, true},
        {1e9f, 0x7bff, false},                    /* overflow: the largest half */
        {6.103515625e-05f, 0x0400, true},         /* 2^-14, the smallest normal */
        {5.960464477539063e-08f, 0x0001, true},   /* 2^-24, the smallest subnormal */
        {2.9802322387695312e-08f, 0x0000, false}, /* 2^-25: a tie, to even (zero) */
        {1e-9f, 0x0000, false},
        {1.00048828125f, 0x3c00, false}, /* 1 + 2^-11: a tie, to even */
        {1.00146484375f, 0x3c02, false}, /* 1 + 3 * 2^-11: a tie, to even (up) */
        {1.0009765625f, 0x3c01, true},   /* 1 + 2^-10 */
        {-0.0360107421875f, 0xa89c, true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        CHECK_UINT_EQ(gencache__ann_half_from_float(cases[i].f), cases[i].h);
        if (cases[i].exact)
            CHECK_DBL_NEAR(gencache__ann_float_from_half(cases[i].h), cases[i].f, 0.0);
    }
    /* Every half survives the round trip. */
    for (uint32_t h = 0; h < 0x7c00; h++) {
        CHECK_UINT_EQ(gencache__ann_half_from_float(gencache__ann_float_from_half((uint16_t)h)), h);
        uint16_t neg = (uint16_t)(h | 0x8000);
        CHECK_UINT_EQ(gencache__ann_half_from_float(gencache__ann_float_from_half(neg)), neg);
    }
}

TEST_CASE(portable_path_agrees)
{
    /* The loops without F16C (chosen at run time on older CPUs) build the same kind of graph. */
    make_centres();
    gencache__ann_force_portable(true);
    gencache__traj *t = open_index(256);
    fill(t, 1500);
    gencache__ann_force_portable(false);
    CHECK(gencache__traj_graph_bytes(t) > 0);
    int agree = 0;
    for (int i = 0; i < 1500; i += 10) {
        gencache__traj_cand c[1];
        size_t n = 0;
        CHECK_OK(gencache__traj_find(t, 1, 7, 0, data[i], DIM, &any, c, 1, &n));
        CHECK_UINT_EQ(n, 1);
        agree += c[0].rec.key_hash == (uint64_t)i + 1;
        CHECK_DBL_NEAR(c[0].similarity, 1.0, 1e-5); /* re-ranked: the exact similarity */
    }
    CHECK_UINT_LE(143, (uint64_t)agree);
    gencache__traj_free(t);
}

/* ---- removals while a search holds the read lock ---- */

typedef struct dropper {
    gencache__traj *t;
    uint64_t key;
    size_t result;
    int runs;
} dropper;

static void *run_drop(void *ud)
{
    dropper *d = ud;
    d->result = gencache__traj_drop(d->t, d->key);
    return NULL;
}

/* Inside the search: a removal from another thread must finish while the search still holds
 * the read lock (it would wait for the whole scan before). */
static void drop_inside_scan(void *ud)
{
    dropper *d = ud;
    if (d->runs++)
        return;
    pthread_t th;
    CHECK(pthread_create(&th, NULL, run_drop, d) == 0);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 30;
    int rc = pthread_timedjoin_np(th, NULL, &until);
    if (rc == ETIMEDOUT) {
        /* Blocked on the lock this search holds: fail without hanging the suite. */
        test_fail(__FILE__, __LINE__, "a removal waited for the search to end");
    }
    CHECK_INT_EQ(rc, 0);
}

TEST_CASE(drop_during_search_does_not_wait)
{
    make_centres();
    for (unsigned flags = 0; flags <= GENCACHE__TRAJ_EXACT; flags++) {
        gencache__traj *t = open_index(256);
        fill(t, 1000);
        uint64_t key = best(t, 0, data[17], flags);
        CHECK_UINT_EQ(key, 18);
        dropper d = {.t = t, .key = key};
        gencache__traj_set_scan_hook(t, drop_inside_scan, &d);
        /* The search that ran while the removal was queued does not return it... */
        CHECK(best(t, 0, data[17], flags) != key);
        CHECK_INT_EQ(d.runs, 1);
        CHECK_UINT_EQ(d.result, 0); /* queued, not applied */
        gencache__traj_set_scan_hook(t, NULL, NULL);
        /* ...and once the search ended the removal was applied. */
        CHECK_UINT_EQ(gencache__traj_count(t), 999);
        CHECK(best(t, 0, data[17], flags) != key);
        CHECK_UINT_EQ(gencache__traj_drop(t, key), 0);
        /* A store of the same key after the queued removal holds the new vector. */
        add(t, key, 0, data[17]);
        CHECK_UINT_EQ(best(t, 0, data[17], flags), key);
        CHECK_UINT_EQ(gencache__traj_count(t), 1000);
        gencache__traj_free(t);
    }
}

/* ---- concurrent adds, drops and searches on a group with a graph ---- */

typedef struct worker {
    gencache__traj *t;
    int id;
} worker;

static void *run_worker(void *ud)
{
    worker *w = ud;
    uint64_t base = 100000 * (uint64_t)(w->id + 1);
    float v[DIM];
    for (int i = 0; i < 400; i++) {
        for (int k = 0; k < DIM; k++)
            v[k] = centres[(i + w->id) % CLUSTERS][k] + 0.1f * (float)((i * 7 + k) % 13);
        gencache__traj_rec r = {.layer = 1, .model_hash = 7, .key_hash = base + (uint64_t)i};
        if (gencache__traj_add(w->t, &r, v, DIM) != GENCACHE_OK)
            return "add failed";
        gencache__traj_cand c[8];
        size_t n = 0;
        if (gencache__traj_find(w->t, 1, 7, 0, v, DIM, &any, c, 8, &n) != GENCACHE_OK || !n)
            return "search failed";
        if (i % 2)
            gencache__traj_drop(w->t, base + (uint64_t)i - 1);
    }
    return NULL;
}

TEST_CASE(threads_add_drop_search)
{
    make_centres();
    gencache__traj *t = open_index(300);
    pthread_t th[4];
    worker w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (worker){t, i};
        CHECK(pthread_create(&th[i], NULL, run_worker, &w[i]) == 0);
    }
    for (int i = 0; i < 4; i++) {
        void *err = NULL;
        pthread_join(th[i], &err);
        if (err)
            test_fail(__FILE__, __LINE__, "worker %d: %s", i, (const char *)err);
    }
    /* Each worker kept its odd-numbered keys: 200 each. */
    CHECK_UINT_EQ(gencache__traj_count(t), 800);
    CHECK(gencache__traj_graph_bytes(t) > 0);
    gencache__traj_free(t);
}
