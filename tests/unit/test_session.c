/*
 * test_session.c: step-lifetime sessions on a real cache: a value put with steps = N at step k
 * is there at steps k .. k+N-1 and gone after, persistent values stay, every byte is charged to
 * the cache's memory budget and given back, idle sessions are reaped by their TTL, and bad
 * arguments and allocation failures leave the session and the budget as they were.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "test.h"

static uint64_t fake_now = 1000000;

static uint64_t fake_clock(void *ud)
{
    (void)ud;
    return fake_now;
}

static gencache *open_cache(uint64_t max_bytes, const gencache_allocator *alloc)
{
    gencache_options o;
    gencache_options_init(&o);
    o.mem_max_bytes = max_bytes;
    o.clock_fn = fake_clock;
    o.allocator = alloc;
    gencache *c;
    CHECK_OK(gencache_open(&c, &o));
    return c;
}

static bool has(gencache_session *s, const char *name)
{
    const void *d;
    size_t n;
    int rc = gencache_session_get(s, name, &d, &n, NULL);
    CHECK(rc == GENCACHE_OK || rc == GENCACHE_ENOTFOUND);
    return rc == GENCACHE_OK;
}

TEST_CASE(lifetimes)
{
    gencache *c = open_cache(0, NULL);
    gencache_session *s;
    CHECK_OK(gencache_session_open(c, "gen-1", NULL, &s));
    char buf[1000];
    memset(buf, 7, sizeof buf);
    CHECK_OK(gencache_session_put(s, "one", buf, 100, NULL, 1, 0));
    CHECK_OK(gencache_session_put(s, "three", buf, 300, NULL, 3, 0));
    CHECK_OK(gencache_session_put(s, "text_emb", buf, 1000, NULL, 0, GENCACHE_PERSISTENT));
    gencache_session_stats st;
    CHECK_OK(gencache_session_stats_get(s, &st));
    CHECK_UINT_EQ(st.step, 0);
    CHECK_UINT_EQ(st.entries, 3);
    uint64_t bytes0 = st.bytes;
    CHECK(bytes0 >= 1400);

    const void *d;
    size_t n;
    gencache_tensor_desc desc;
    CHECK_OK(gencache_session_get(s, "three", &d, &n, &desc));
    CHECK_UINT_EQ(n, 300);
    CHECK_UINT_EQ((uintptr_t)d % 64, 0);
    CHECK_INT_EQ(desc.dtype, GENCACHE_DTYPE_NONE);
    CHECK_MEM_EQ(d, buf, 300);

    uint64_t freed = 0;
    CHECK_OK(gencache_session_step(s, &freed)); /* step 1: "one" (steps 0..0) expires */
    CHECK(!has(s, "one"));
    CHECK(has(s, "three") && has(s, "text_emb"));
    CHECK(freed >= 100 && freed < 300);
    CHECK_OK(gencache_session_step(s, &freed)); /* step 2 */
    CHECK_UINT_EQ(freed, 0);
    CHECK(has(s, "three"));
    /* Put at step 2 for 2 steps: available at 2 and 3, gone at 4. */
    CHECK_OK(gencache_session_put(s, "late", buf, 10, NULL, 2, 0));
    CHECK_OK(gencache_session_step(s, &freed)); /* step 3: "three" (0..2) expires */
    CHECK(!has(s, "three"));
    CHECK(freed >= 300);
    CHECK(has(s, "late"));
    CHECK_OK(gencache_session_step(s, &freed)); /* step 4 */
    CHECK(!has(s, "late"));
    for (int i = 0; i < 50; i++)
        CHECK_OK(gencache_session_step(s, NULL));
    CHECK(has(s, "text_emb"));
    CHECK_OK(gencache_session_stats_get(s, &st));
    CHECK_UINT_EQ(st.step, 54);
    CHECK_UINT_EQ(st.entries, 1);
    CHECK_OK(gencache_session_get(s, "text_emb", &d, &n, NULL));
    CHECK_UINT_EQ(n, 1000);
    CHECK_RC(gencache_session_get(s, "nothing", &d, &n, NULL), GENCACHE_ENOTFOUND);
    CHECK(d == NULL && n == 0);
    gencache_session_close(s);
    gencache_close(c);
}

TEST_CASE(replace_and_tensors)
{
    gencache *c = open_cache(0, NULL);
    gencache_session *s;
    CHECK_OK(gencache_session_open(c, "gen-2", NULL, &s));
    float x[24];
    for (int i = 0; i < 24; i++)
        x[i] = (float)i;
    gencache_meta m;
    gencache_meta_init(&m);
    m.dtype = GENCACHE_DTYPE_F32;
    m.ndim = 3;
    m.shape[0] = 2;
    m.shape[1] = 3;
    m.shape[2] = 4;
    CHECK_OK(gencache_session_put(s, "feat", x, sizeof x, &m, 5, 0));
    CHECK_RC(gencache_session_put(s, "bad", x, sizeof x - 4, &m, 5, 0), GENCACHE_EINVAL);
    const void *d;
    size_t n;
    gencache_tensor_desc desc;
    CHECK_OK(gencache_session_get(s, "feat", &d, &n, &desc));
    CHECK_INT_EQ(desc.dtype, GENCACHE_DTYPE_F32);
    CHECK_UINT_EQ(desc.ndim, 3);
    CHECK_INT_EQ(desc.shape[2], 4);
    /* Replacing a value gives the old one's bytes back: the total stays put. */
    gencache_session_stats a, b;
    CHECK_OK(gencache_session_stats_get(s, &a));
    x[0] = 99;
    CHECK_OK(gencache_session_put(s, "feat", x, sizeof x, &m, 1, 0));
    CHECK_OK(gencache_session_stats_get(s, &b));
    CHECK_UINT_EQ(a.bytes, b.bytes);
    CHECK_UINT_EQ(b.entries, 1);
    CHECK_OK(gencache_session_get(s, "feat", &d, &n, NULL));
    CHECK(((const float *)d)[0] == 99);
    CHECK_OK(gencache_session_step(s, NULL)); /* the replacement had steps = 1 */
    CHECK(!has(s, "feat"));
    /* A zero-length value is a value. */
    CHECK_OK(gencache_session_put(s, "flag", NULL, 0, NULL, 1, 0));
    CHECK_OK(gencache_session_get(s, "flag", &d, &n, NULL));
    CHECK_UINT_EQ(n, 0);
    gencache_session_close(s);
    gencache_close(c);
}

TEST_CASE(bad_arguments)
{
    gencache *c = open_cache(0, NULL);
    gencache_session *s = (gencache_session *)1;
    CHECK_RC(gencache_session_open(c, "", NULL, &s), GENCACHE_EINVAL);
    CHECK(s == NULL);
    CHECK_RC(gencache_session_open(c, "has space", NULL, &s), GENCACHE_EINVAL);
    char longid[200];
    memset(longid, 'a', sizeof longid);
    longid[199] = '\0';
    CHECK_RC(gencache_session_open(c, longid, NULL, &s), GENCACHE_EINVAL);
    CHECK_RC(gencache_session_open(NULL, "x", NULL, &s), GENCACHE_EINVAL);
    gencache_session_options so;
    gencache_session_options_init(&so);
    so.struct_size = 3;
    CHECK_RC(gencache_session_open(c, "x", &so, &s), GENCACHE_EINVAL);
    CHECK_OK(gencache_session_open(c, "x", NULL, &s));
    gencache_session *s2;
    CHECK_RC(gencache_session_open(c, "x", NULL, &s2), GENCACHE_EEXIST);
    /* The same id on another cache is another session. */
    gencache *c2 = open_cache(0, NULL);
    CHECK_OK(gencache_session_open(c2, "x", NULL, &s2));
    gencache_session_close(s2);
    gencache_close(c2);

    char b[4] = {0};
    CHECK_RC(gencache_session_put(s, "v", b, 4, NULL, 0, 0), GENCACHE_EINVAL); /* 0 steps */
    CHECK_RC(gencache_session_put(s, "v", b, 4, NULL, 1, 0x10), GENCACHE_EINVAL);
    CHECK_RC(gencache_session_put(s, "", b, 4, NULL, 1, 0), GENCACHE_EINVAL);
    CHECK_RC(gencache_session_put(s, "v", NULL, 4, NULL, 1, 0), GENCACHE_EINVAL);
    char longname[300];
    memset(longname, 'n', sizeof longname);
    longname[299] = '\0';
    CHECK_RC(gencache_session_put(s, longname, b, 4, NULL, 1, 0), GENCACHE_EINVAL);
    gencache_meta m;
    gencache_meta_init(&m);
    m.struct_size = 1;
    CHECK_RC(gencache_session_put(s, "v", b, 4, &m, 1, 0), GENCACHE_EINVAL);
    CHECK_RC(gencache_session_step(NULL, NULL), GENCACHE_EINVAL);
    const void *d;
    size_t n;
    CHECK_RC(gencache_session_get(s, NULL, &d, &n, NULL), GENCACHE_EINVAL);
    gencache_session_stats st;
    CHECK_OK(gencache_session_stats_get(s, &st));
    CHECK_UINT_EQ(st.entries, 0);
    CHECK_UINT_EQ(st.bytes, 0);
    gencache_session_close(s);
    gencache_session_close(NULL);
    /* Closed: the id is free again. */
    CHECK_OK(gencache_session_open(c, "x", NULL, &s));
    gencache_session_close(s);
    gencache_close(c);
}

static char key_of(int i, char *out)
{
    snprintf(out, 128, "result/%064d", i);
    return 0;
}

TEST_CASE(budget)
{
    /* A 1 MiB memory tier shared by cached entries and sessions. */
    gencache *c = open_cache(1 << 20, NULL);
    static char big[600 * 1024];
    memset(big, 1, sizeof big);
    gencache_session *s;
    CHECK_OK(gencache_session_open(c, "b", NULL, &s));
    CHECK_OK(gencache_session_put(s, "a", big, sizeof big, NULL, 1, 0));
    /* No room for a second one: nothing evictable is left. */
    CHECK_RC(gencache_session_put(s, "b", big, sizeof big, NULL, 1, 0), GENCACHE_EFULL);
    gencache_session_stats st;
    CHECK_OK(gencache_session_stats_get(s, &st));
    CHECK_UINT_EQ(st.entries, 1);
    /* Cached entries cannot use what the session holds. */
    char key[128];
    key_of(1, key);
    CHECK_RC(gencache_put(c, key, big, sizeof big, NULL), GENCACHE_EFULL);
    /* The step frees "a", and its bytes serve the cache again. */
    uint64_t freed;
    CHECK_OK(gencache_session_step(s, &freed));
    CHECK(freed >= sizeof big);
    CHECK_OK(gencache_put(c, key, big, sizeof big, NULL));
    /* A session put evicts cached entries to make room. */
    CHECK_OK(gencache_session_put(s, "b", big, sizeof big, NULL, 1, 0));
    gencache_handle *h;
    CHECK_RC(gencache_get(c, key, &h), GENCACHE_ENOTFOUND);
    /* The session's own limit. */
    gencache_session *s2;
    gencache_session_options so;
    gencache_session_options_init(&so);
    so.max_bytes = 1000;
    CHECK_OK(gencache_session_open(c, "small", &so, &s2));
    CHECK_OK(gencache_session_put(s2, "x", big, 500, NULL, 1, 0));
    CHECK_RC(gencache_session_put(s2, "y", big, 500, NULL, 1, 0), GENCACHE_ELIMIT);
    CHECK_OK(gencache_session_put(s2, "x", big, 600, NULL, 1, 0)); /* a replacement fits */
    gencache_session_close(s2);
    /* Closing gives everything back: the cache can hold 600 KiB again. */
    gencache_session_close(s);
    CHECK_OK(gencache_put(c, key, big, sizeof big, NULL));
    gencache_close(c);
}

TEST_CASE(reap_idle_sessions)
{
    gencache *c = open_cache(1 << 20, NULL);
    static char big[600 * 1024];
    gencache_session_options so;
    gencache_session_options_init(&so);
    so.ttl_ms = 1000;
    gencache_session *s, *keep;
    CHECK_OK(gencache_session_open(c, "vanishing", &so, &s));
    so.ttl_ms = 0; /* never reaped */
    CHECK_OK(gencache_session_open(c, "forever", &so, &keep));
    CHECK_OK(gencache_session_put(s, "a", big, sizeof big, NULL, 100, 0));
    uint64_t n = 9;
    fake_now += 1000;
    CHECK_OK(gencache_session_reap(c, 0, &n)); /* idle exactly the TTL: not yet */
    CHECK_UINT_EQ(n, 0);
    CHECK(has(s, "a")); /* this use renews it */
    fake_now += 1001;
    CHECK_OK(gencache_session_reap(c, 0, &n));
    CHECK_UINT_EQ(n, 1);
    const void *d;
    size_t sz;
    CHECK_RC(gencache_session_get(s, "a", &d, &sz, NULL), GENCACHE_ETIMEDOUT);
    CHECK_RC(gencache_session_step(s, NULL), GENCACHE_ETIMEDOUT);
    CHECK_RC(gencache_session_put(s, "b", big, 1, NULL, 1, 0), GENCACHE_ETIMEDOUT);
    gencache_session_stats st;
    CHECK_OK(gencache_session_stats_get(s, &st));
    CHECK(st.reaped);
    CHECK_UINT_EQ(st.bytes, 0);
    /* Its bytes are back in the budget, and its id can be opened again. */
    char key[128];
    key_of(2, key);
    CHECK_OK(gencache_put(c, key, big, sizeof big, NULL));
    gencache_session *again;
    CHECK_OK(gencache_session_open(c, "vanishing", NULL, &again));
    gencache_session_close(again);
    gencache_session_close(s);
    /* An explicit time works too, and opening a session reaps the others. */
    gencache_session *t;
    so.ttl_ms = 10;
    CHECK_OK(gencache_session_open(c, "t", &so, &t));
    CHECK_OK(gencache_session_reap(c, fake_now + 5, &n));
    CHECK_UINT_EQ(n, 0);
    fake_now += 11;
    gencache_session *u;
    CHECK_OK(gencache_session_open(c, "u", NULL, &u));
    CHECK_OK(gencache_session_stats_get(t, &st));
    CHECK(st.reaped);
    CHECK_OK(gencache_session_stats_get(keep, &st));
    CHECK(!st.reaped);
    gencache_session_close(u);
    gencache_session_close(t);
    gencache_session_close(keep);
    CHECK_RC(gencache_session_reap(NULL, 0, &n), GENCACHE_EINVAL);
    gencache_close(c);
}

static atomic_int fail_countdown;

static void *failing_malloc(void *ud, size_t size)
{
    (void)ud;
    if (atomic_fetch_sub(&fail_countdown, 1) == 1)
        return NULL;
    return malloc(size);
}

static void plain_free(void *ud, void *p)
{
    (void)ud;
    free(p);
}

TEST_CASE(allocation_failure)
{
    gencache_allocator a = {failing_malloc, plain_free, NULL};
    atomic_store(&fail_countdown, 0);
    gencache *c = open_cache(1 << 20, &a);
    gencache_session *s;
    atomic_store(&fail_countdown, 1);
    CHECK_RC(gencache_session_open(c, "f", NULL, &s), GENCACHE_ENOMEM);
    CHECK(s == NULL);
    CHECK_OK(gencache_session_open(c, "f", NULL, &s));
    static char big[900 * 1024];
    atomic_store(&fail_countdown, 1);
    CHECK_RC(gencache_session_put(s, "a", big, sizeof big, NULL, 1, 0), GENCACHE_ENOMEM);
    gencache_session_stats st;
    CHECK_OK(gencache_session_stats_get(s, &st));
    CHECK_UINT_EQ(st.entries, 0);
    /* The failed put reserved nothing: the whole budget is still there. */
    CHECK_OK(gencache_session_put(s, "a", big, sizeof big, NULL, 1, 0));
    gencache_session_close(s);
    gencache_close(c);
}

typedef struct worker {
    gencache *cache;
    int id;
    int failures;
} worker;

static void *work(void *arg)
{
    worker *w = arg;
    char id[32], buf[256];
    snprintf(id, sizeof id, "w%d", w->id);
    gencache_session *s;
    if (gencache_session_open(w->cache, id, NULL, &s) != GENCACHE_OK) {
        w->failures++;
        return NULL;
    }
    memset(buf, w->id, sizeof buf);
    for (int i = 0; i < 300; i++) {
        char name[16];
        snprintf(name, sizeof name, "f%d", i % 5);
        if (gencache_session_put(s, name, buf, sizeof buf, NULL, 2, 0) != GENCACHE_OK)
            w->failures++;
        const void *d;
        size_t n;
        if (gencache_session_get(s, name, &d, &n, NULL) != GENCACHE_OK || n != sizeof buf ||
            ((const char *)d)[0] != (char)w->id)
            w->failures++;
        if (gencache_session_step(s, NULL) != GENCACHE_OK)
            w->failures++;
    }
    gencache_session_close(s);
    return NULL;
}

TEST_CASE(concurrent_sessions)
{
    /* Sessions on several threads, while another thread keeps reaping (none is idle long
     * enough to go) and opening short-lived sessions: the registry and the budget hold. */
    gencache *c = open_cache(0, NULL);
    pthread_t th[4];
    worker w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (worker){.cache = c, .id = i + 1};
        CHECK(pthread_create(&th[i], NULL, work, &w[i]) == 0);
    }
    for (int i = 0; i < 200; i++) {
        uint64_t n;
        CHECK_OK(gencache_session_reap(c, 0, &n));
        CHECK_UINT_EQ(n, 0);
        gencache_session *s;
        CHECK_OK(gencache_session_open(c, "main", NULL, &s));
        gencache_session_close(s);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        CHECK_INT_EQ(w[i].failures, 0);
    }
    gencache_close(c);
}
