/* test_alloc.c: failed allocations. A counting allocator fails the n-th allocation, for every n
 * a scenario reaches; each call must then return GENCACHE_ENOMEM (or succeed), the cache must stay
 * usable, and when everything is closed no allocation may be left. */
#include <pthread.h>

#include "test.h"

typedef struct failing {
    long fail_at;     /* allocation number that fails; -1: none */
    long count;       /* allocations so far */
    long outstanding; /* allocated and not freed */
    pthread_mutex_t lock;
} failing;

static void *f_malloc(void *ud, size_t n)
{
    failing *f = ud;
    pthread_mutex_lock(&f->lock);
    long k = f->count++;
    bool fail = f->fail_at >= 0 && k >= f->fail_at;
    if (!fail)
        f->outstanding++;
    pthread_mutex_unlock(&f->lock);
    return fail ? NULL : malloc(n);
}

static void f_free(void *ud, void *p)
{
    failing *f = ud;
    pthread_mutex_lock(&f->lock);
    f->outstanding--;
    pthread_mutex_unlock(&f->lock);
    free(p);
}

/* Runs every API that allocates. Returns how many allocations it made. Every call must either
 * succeed or report ENOMEM; a miss is fine once an earlier put failed. */
static long scenario(failing *f)
{
    gencache_allocator a = {f_malloc, f_free, f};
    gencache_options o;
    gencache_options_init(&o);
    o.allocator = &a;
    o.mem_max_entries = 4;
    o.mem_shards = 2;
    o.ghost_max_entries = 16;
    gencache *c = NULL;
    int rc = gencache_open(&c, &o);
    if (rc != GENCACHE_OK) {
        CHECK_RC(rc, GENCACHE_ENOMEM);
        CHECK(c == NULL);
        return f->count;
    }
    char key[128];
    for (unsigned i = 0; i < 200; i++) {
        sprintf(key, "image_latent/%064x", i % 9);
        rc = gencache_put(c, key, "0123456789", 10, NULL);
        CHECK(rc == GENCACHE_OK || rc == GENCACHE_ENOMEM);
        gencache_handle *h = NULL;
        rc = gencache_get(c, key, &h);
        CHECK(rc == GENCACHE_OK || rc == GENCACHE_ENOMEM || rc == GENCACHE_ENOTFOUND);
        if (rc == GENCACHE_OK)
            CHECK_MEM_EQ(gencache_handle_data(h), "0123456789", 10);
        else
            CHECK(h == NULL);
        gencache_handle_release(h);
    }
    gencache_filter flt;
    gencache_filter_init(&flt);
    flt.layer = "image_latent";
    uint64_t n;
    rc = gencache_invalidate(c, &flt, &n);
    CHECK_OK(rc); /* an allocation failure there only affects the count */
    gencache_close(c);
    return f->count;
}

TEST_CASE(every_allocation_fails_once)
{
    failing f = {.fail_at = -1};
    pthread_mutex_init(&f.lock, NULL);
    long total = scenario(&f);
    CHECK_INT_EQ(f.outstanding, 0);
    CHECK(total > 10);
    /* Fail from the k-th allocation on, for every k up to what the scenario made. */
    for (long k = 0; k <= total; k++) {
        f.fail_at = k;
        f.count = 0;
        f.outstanding = 0;
        scenario(&f);
        if (f.outstanding != 0)
            test_fail(__FILE__, __LINE__, "failing from allocation %ld leaks %ld blocks", k,
                      f.outstanding);
    }
    pthread_mutex_destroy(&f.lock);
}

TEST_CASE(intermittent_failures)
{
    /* Failing from k on is the harsh case; here one allocation in seven fails and the cache
     * must keep serving what it has. */
    failing f = {.fail_at = -1};
    pthread_mutex_init(&f.lock, NULL);
    gencache_allocator a = {f_malloc, f_free, &f};
    gencache_options o;
    gencache_options_init(&o);
    o.allocator = &a;
    gencache *c = NULL;
    CHECK_OK(gencache_open(&c, &o));
    int ok = 0, enomem = 0;
    for (unsigned i = 0; i < 700; i++) {
        char key[128];
        sprintf(key, "text_embedding/%064x", i);
        f.fail_at = (i % 7 == 3) ? f.count : -1;
        int rc = gencache_put(c, key, &i, sizeof i, NULL);
        f.fail_at = -1;
        if (rc == GENCACHE_OK)
            ok++;
        else {
            CHECK_RC(rc, GENCACHE_ENOMEM);
            enomem++;
        }
    }
    CHECK_INT_EQ(enomem, 100);
    CHECK_INT_EQ(ok, 600);
    gencache_stats st = {.struct_size = sizeof st};
    CHECK_OK(gencache_stats_get(c, &st));
    CHECK_UINT_EQ(st.tiers[0].entries, 600);
    gencache_close(c);
    CHECK_INT_EQ(f.outstanding, 0);
    pthread_mutex_destroy(&f.lock);
}
