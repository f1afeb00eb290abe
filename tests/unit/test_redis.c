/*
 * test_redis.c: the Redis tier against a real redis-server started by each case on a free
 * loopback port: round trips, TTLs in Redis, the refresh script (and its reload after the server
 * forgot it), the size limit, damaged values, invalidation by scan, and a Redis that dies, hangs
 * or restarts under load: misses and dropped puts only, no call longer than the timeout plus a
 * little, and hits again within a second of the restart. Last, the counts the tier's threads
 * keep move only once what they count is done (a Bloom filter rebuild, a resync).
 */
#define _GNU_SOURCE
#include <pthread.h>

#include "redis_server.h"
#include "tier/redis_ops.h"
#include "tier_util.h"

#define LARGE      (1536u * 1024u)
#define TIMEOUT_MS 100
/* What a call may take beyond the timeout (scheduling on a loaded 2-core machine, sanitizers). */
#define SLACK_MS 200
/* The timeout of the tests that are not about timeouts: a loaded machine must not fail them. */
#define PATIENT_TIMEOUT_MS 5000

static uint64_t wall_ms(void)
{
    return gencache__clock_realtime_ms(NULL);
}

/* A tier on the server at port, with options o (its url filled in here). */
static gencache__tier *open_tier_with(int port, gencache__redis_options o)
{
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", port);
    o.url = url;
    gencache__tier *t = NULL;
    CHECK_OK(gencache__redis_tier_open(&o, &t));
    CHECK(t != NULL);
    return t;
}

static gencache__tier *open_tier_within(int port, uint64_t max_value, tu_evictions *ev,
                                        int timeout_ms)
{
    gencache__tier *t = open_tier_with(
        port, (gencache__redis_options){.timeout_ms = timeout_ms, .max_value_bytes = max_value});
    if (ev) {
        t->on_evict = tu_on_evict;
        t->on_evict_userdata = ev;
    }
    return t;
}

static gencache__tier *open_tier(int port, uint64_t max_value, tu_evictions *ev)
{
    return open_tier_within(port, max_value, ev, PATIENT_TIMEOUT_MS);
}

static int start(void)
{
    int port = rs_start();
    CHECK(port > 0);
    return port;
}

static void rkey(char *buf, uint64_t id)
{
    char key[GENCACHE__KEY_MAX + 1];
    tu_key(key, "result", id);
    sprintf(buf, "%s%s", GENCACHE__REDIS_PREFIX, key);
}

static long long pttl(redisContext *c, uint64_t id)
{
    char k[160];
    rkey(k, id);
    redisReply *r = redisCommand(c, "PTTL %s", k);
    CHECK(r && r->type == REDIS_REPLY_INTEGER);
    long long v = r->integer;
    freeReplyObject(r);
    return v;
}

static int get_id(gencache__tier *t, uint64_t id, bool touch, gencache__entry **out)
{
    char key[GENCACHE__KEY_MAX + 1];
    tu_key(key, "result", id);
    return t->ops->get(t, key, tu_hash(key), wall_ms(), touch, out);
}

static int put_spec(gencache__tier *t, const tu_spec *s)
{
    gencache__entry *e = tu_entry(s);
    int rc = t->ops->put(t, e, s->now_ms);
    gencache__entry_release(e);
    return rc;
}

TEST_CASE(round_trip)
{
    int port = start();
    gencache__tier *t = open_tier(port, 0, NULL);
    CHECK_STR_EQ(t->ops->name, "redis");
    CHECK(t->ops->caps & GENCACHE__TIER_SHARED);
    uint64_t now = wall_ms();
    size_t sizes[] = {0, 1, 4096, 65537, LARGE};
    for (unsigned i = 0; i < 5; i++)
        CHECK_OK(put_spec(t, &(tu_spec){.id = i,
                                        .size = sizes[i],
                                        .now_ms = now,
                                        .tenant = "acme",
                                        .model = "svd",
                                        .tags = "x,y",
                                        .ctype = "video/mp4",
                                        .ttl_ms = 60000}));
    for (unsigned i = 0; i < 5; i++) {
        gencache__entry *e = NULL;
        CHECK_OK(get_id(t, i, true, &e));
        tu_check_value(e, i, sizes[i]);
        CHECK_STR_EQ(e->tenant, "acme");
        CHECK_STR_EQ(e->model, "svd");
        CHECK_STR_EQ(e->tags, "x,y");
        CHECK_STR_EQ(e->content_type, "video/mp4");
        CHECK_UINT_EQ(e->cost_ms, 100 + i);
        CHECK_UINT_EQ(e->created_ms, now);
        /* The expiry is what Redis says is left, read on the clock passed to get. */
        uint64_t exp = atomic_load(&e->expires_ms);
        CHECK(exp > now + 50000 && exp <= wall_ms() + 60000);
        CHECK_INT_EQ(e->layer, 0);
        gencache__entry_release(e);
    }
    gencache__entry *e = (gencache__entry *)1;
    CHECK_RC(get_id(t, 77, true, &e), GENCACHE_ENOTFOUND);
    CHECK(e == NULL);
    char key[GENCACHE__KEY_MAX + 1];
    tu_key(key, "result", 4);
    CHECK_OK(t->ops->del(t, key, tu_hash(key)));
    CHECK_RC(t->ops->del(t, key, tu_hash(key)), GENCACHE_ENOTFOUND);
    CHECK_RC(get_id(t, 4, true, &e), GENCACHE_ENOTFOUND);
    /* The layout other nodes rely on: one string per entry under the prefix. */
    redisContext *c = rs_client();
    CHECK(c != NULL);
    char k[160];
    rkey(k, 3);
    redisReply *r = redisCommand(c, "STRLEN %s", k);
    CHECK(r && r->type == REDIS_REPLY_INTEGER && r->integer > 65537);
    freeReplyObject(r);
    redisFree(c);
    CHECK_RC(t->ops->get(t, "bad key", 0, now, true, &e), GENCACHE_EINVAL);
    /* A database number in the URL. */
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/3", port);
    gencache__redis_options o3 = {.url = url, .timeout_ms = PATIENT_TIMEOUT_MS};
    gencache__tier *t3 = NULL;
    CHECK_OK(gencache__redis_tier_open(&o3, &t3));
    CHECK_OK(put_spec(t3, &(tu_spec){.id = 30, .size = 10, .now_ms = now}));
    CHECK_OK(get_id(t3, 30, true, &e));
    gencache__entry_release(e);
    CHECK_RC(get_id(t, 30, true, &e), GENCACHE_ENOTFOUND); /* not in database 0 */
    t3->ops->close(t3);
    gencache_tier_stats st;
    t->ops->stats(t, &st);
    CHECK_STR_EQ(st.tier, "redis");
    CHECK_UINT_EQ(st.backend_errors, 0);
    t->ops->close(t);
    rs_stop();
}

TEST_CASE(ttl_lives_in_redis_and_hits_refresh_it)
{
    int port = start();
    gencache__tier *t = open_tier(port, 0, NULL);
    redisContext *c = rs_client();
    CHECK(c != NULL);
    uint64_t now = wall_ms();
    CHECK_OK(put_spec(t, &(tu_spec){.id = 1, .size = 100, .now_ms = now, .ttl_ms = 60000}));
    CHECK_OK(put_spec(t, &(tu_spec){.id = 2, .size = 100, .now_ms = now}));
    CHECK_OK(put_spec(
        t, &(tu_spec){.id = 3, .size = LARGE, .now_ms = now, .ttl_ms = 10000, .sliding = true}));
    long long v = pttl(c, 1);
    CHECK(v > 59000 && v <= 60000);
    CHECK_INT_EQ(pttl(c, 2), -1);
    /* Shorten the sliding one behind the tier's back; a hit puts the full TTL back. */
    char k[160];
    rkey(k, 3);
    freeReplyObject(redisCommand(c, "PEXPIRE %s 2000", k));
    gencache__entry *e = NULL;
    CHECK_OK(get_id(t, 3, false, &e)); /* a peek refreshes nothing */
    gencache__entry_release(e);
    CHECK(pttl(c, 3) <= 2000);
    CHECK_OK(get_id(t, 3, true, &e));
    tu_check_value(e, 3, LARGE);
    gencache__entry_release(e);
    v = pttl(c, 3);
    CHECK(v > 9000 && v <= 10000);
    /* A fixed TTL is not refreshed by hits. */
    rkey(k, 1);
    freeReplyObject(redisCommand(c, "PEXPIRE %s 3000", k));
    uint64_t before = wall_ms();
    CHECK_OK(get_id(t, 1, true, &e));
    /* The entry expires when Redis's copy does, not when the writer said (60 s). */
    CHECK(atomic_load(&e->expires_ms) <= before + 3000 + 1000);
    gencache__entry_release(e);
    CHECK(pttl(c, 1) <= 3000);
    /* Redis forgot the script (as after a restart): the tier loads it again. */
    freeReplyObject(redisCommand(c, "SCRIPT FLUSH"));
    freeReplyObject(redisCommand(c, "PEXPIRE %s 2000", k));
    rkey(k, 3);
    freeReplyObject(redisCommand(c, "PEXPIRE %s 2000", k));
    CHECK_OK(get_id(t, 3, true, &e));
    gencache__entry_release(e);
    CHECK(pttl(c, 3) > 9000);
    /* Redis expires it: a miss. */
    freeReplyObject(redisCommand(c, "PEXPIRE %s 1", k));
    usleep(20000);
    CHECK_RC(get_id(t, 3, true, &e), GENCACHE_ENOTFOUND);
    /* Already expired when put: not stored. */
    gencache__entry *old =
        tu_entry(&(tu_spec){.id = 9, .size = 10, .now_ms = now - 10000, .ttl_ms = 5});
    CHECK_OK(t->ops->put(t, old, now));
    gencache__entry_release(old);
    CHECK_RC(get_id(t, 9, true, &e), GENCACHE_ENOTFOUND);
    redisFree(c);
    t->ops->close(t);
    rs_stop();
}

TEST_CASE(value_size_limit)
{
    int port = start();
    gencache__tier *t = open_tier(port, 1000, NULL);
    uint64_t now = wall_ms();
    gencache__entry *e = tu_entry(&(tu_spec){.id = 1, .size = 1001, .now_ms = now});
    CHECK_RC(t->ops->put(t, e, now), GENCACHE_ETOOBIG);
    gencache__entry_release(e);
    CHECK_OK(put_spec(t, &(tu_spec){.id = 2, .size = 1000, .now_ms = now}));
    CHECK_RC(get_id(t, 1, true, &e), GENCACHE_ENOTFOUND);
    CHECK_OK(get_id(t, 2, true, &e));
    gencache__entry_release(e);
    t->ops->close(t);
    rs_stop();
}

TEST_CASE(damaged_values_are_dropped)
{
    int port = start();
    tu_evictions ev = {0};
    gencache__tier *t = open_tier(port, 0, &ev);
    redisContext *c = rs_client();
    uint64_t now = wall_ms();
    CHECK_OK(put_spec(t, &(tu_spec){.id = 1, .size = LARGE, .now_ms = now}));
    char k[160];
    rkey(k, 1);
    /* One flipped byte in the value. */
    redisReply *r = redisCommand(c, "GETRANGE %s -10 -10", k);
    CHECK(r && r->type == REDIS_REPLY_STRING && r->len == 1);
    char b = (char)(r->str[0] ^ 1);
    freeReplyObject(r);
    redisReply *len = redisCommand(c, "STRLEN %s", k);
    freeReplyObject(redisCommand(c, "SETRANGE %s %lld %b", k, len->integer - 10, &b, (size_t)1));
    freeReplyObject(len);
    gencache__entry *e = NULL;
    CHECK_RC(get_id(t, 1, true, &e), GENCACHE_ENOTFOUND);
    CHECK_INT_EQ(ev.n[GENCACHE__EVICT_CORRUPT], 1);
    r = redisCommand(c, "EXISTS %s", k);
    CHECK_INT_EQ(r->integer, 0);
    freeReplyObject(r);
    /* Things that are not records at all, under our prefix. */
    const char *junk[] = {"", "x", "GCE", "GCE\x09 newer format",
                          "not a record at all, but long "
                          "enough to pass the length check of the decoder: ................."
                          "..................................................."};
    for (unsigned i = 0; i < 5; i++) {
        rkey(k, 10 + i);
        freeReplyObject(redisCommand(c, "SET %s %b", k, junk[i], strlen(junk[i])));
        CHECK_RC(get_id(t, 10 + i, true, &e), GENCACHE_ENOTFOUND);
    }
    /* A record whose size disagrees with the string. */
    CHECK_OK(put_spec(t, &(tu_spec){.id = 20, .size = 5000, .now_ms = now}));
    rkey(k, 20);
    freeReplyObject(redisCommand(c, "APPEND %s extra", k));
    CHECK_RC(get_id(t, 20, true, &e), GENCACHE_ENOTFOUND);
    gencache_tier_stats st;
    t->ops->stats(t, &st);
    CHECK_UINT_EQ(st.evictions_corrupt, 7);
    /* The connection is still in step after all that. */
    CHECK_OK(put_spec(t, &(tu_spec){.id = 21, .size = 5000, .now_ms = now}));
    CHECK_OK(get_id(t, 21, true, &e));
    tu_check_value(e, 21, 5000);
    gencache__entry_release(e);
    /* A whole, valid record under a key that is not its own is not served either. */
    char k22[160];
    rkey(k, 21);
    rkey(k22, 22);
    freeReplyObject(redisCommand(c, "COPY %s %s", k, k22));
    CHECK_RC(get_id(t, 22, true, &e), GENCACHE_ENOTFOUND);
    t->ops->stats(t, &st);
    CHECK_UINT_EQ(st.evictions_corrupt, 8);
    redisFree(c);
    t->ops->close(t);
    rs_stop();
}

static bool match_tenant(void *ud, const gencache__entry *e)
{
    CHECK(e->value == NULL);
    return e->tenant && strcmp(e->tenant, ud) == 0;
}

TEST_CASE(remove_if_scans_metadata)
{
    int port = start();
    gencache__tier *t = open_tier(port, 0, NULL);
    redisContext *c = rs_client();
    uint64_t now = wall_ms();
    for (uint64_t i = 0; i < 600; i++)
        CHECK_OK(put_spec(t, &(tu_spec){.id = i,
                                        .size = i == 5 ? LARGE : 200,
                                        .now_ms = now,
                                        .tenant = i % 3 ? "zeta" : "acme"}));
    /* Keys of other programs are left alone. */
    freeReplyObject(redisCommand(c, "SET other:key hello"));
    uint64_t n = 0;
    CHECK_OK(t->ops->remove_if(t, match_tenant, "acme", &n));
    CHECK_UINT_EQ(n, 200);
    gencache__entry *e = NULL;
    CHECK_RC(get_id(t, 0, true, &e), GENCACHE_ENOTFOUND);
    CHECK_OK(get_id(t, 5, true, &e));
    gencache__entry_release(e);
    redisReply *r = redisCommand(c, "DBSIZE");
    CHECK_INT_EQ(r->integer, 401);
    freeReplyObject(r);
    redisFree(c);
    t->ops->close(t);
    rs_stop();
}

TEST_CASE(bad_urls_and_no_server)
{
    const char *bad[] = {
        "http://127.0.0.1:6379",    "redis://",     "redis://h:0",   "redis://h:99999",
        "redis://127.0.0.1:6379/x", "redis://[::1", "redis://h:12ab"};
    for (unsigned i = 0; i < sizeof bad / sizeof *bad; i++) {
        gencache__redis_options o = {.url = bad[i], .timeout_ms = 50};
        gencache__tier *t = (gencache__tier *)1;
        CHECK_RC(gencache__redis_tier_open(&o, &t), GENCACHE_ECONFIG);
        CHECK(t == NULL);
    }
    /* Nobody listens: the tier opens, gets miss, puts are dropped, deletes say unavailable. */
    int port = rs_free_port();
    gencache__tier *t = open_tier(port, 0, NULL);
    uint64_t now = wall_ms();
    gencache__entry *e = NULL;
    for (int i = 0; i < 10; i++) {
        CHECK_RC(get_id(t, 1, true, &e), GENCACHE_ENOTFOUND);
        CHECK_OK(put_spec(t, &(tu_spec){.id = 1, .size = 10, .now_ms = now}));
    }
    char key[GENCACHE__KEY_MAX + 1];
    tu_key(key, "result", 1);
    CHECK_RC(t->ops->del(t, key, tu_hash(key)), GENCACHE_EUNAVAILABLE);
    uint64_t n = 0;
    CHECK_RC(t->ops->remove_if(t, match_tenant, "acme", &n), GENCACHE_EUNAVAILABLE);
    gencache_tier_stats st;
    t->ops->stats(t, &st);
    CHECK(st.backend_errors >= 20);
    t->ops->close(t);
}

typedef struct loader {
    gencache__tier *t;
    int id;
    atomic_int *stop;
    double max_ms;
    int errors;
    atomic_int hits;
} loader;

static void *load(void *arg)
{
    loader *l = arg;
    for (uint64_t i = 0; !atomic_load(l->stop); i++) {
        uint64_t id = (uint64_t)l->id * 1000 + i % 50;
        struct timespec t0;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        int rc;
        if (i % 2 == 0) {
            rc = put_spec(
                l->t,
                &(tu_spec){.id = id, .size = i % 10 == 0 ? 300000 : 2000, .now_ms = wall_ms()});
            if (rc != GENCACHE_OK)
                l->errors++;
        } else {
            gencache__entry *e = NULL;
            rc = get_id(l->t, id - 1, true, &e); /* the put just before */
            if (rc == GENCACHE_OK) {
                atomic_fetch_add(&l->hits, 1);
                gencache__entry_release(e);
            } else if (rc != GENCACHE_ENOTFOUND) {
                l->errors++;
            }
        }
        double ms = rs_ms_since(&t0);
        if (ms > l->max_ms)
            l->max_ms = ms;
    }
    return NULL;
}

static int hits_of(loader l[3])
{
    return atomic_load(&l[0].hits) + atomic_load(&l[1].hits) + atomic_load(&l[2].hits);
}

static uint64_t backend_errors(gencache__tier *t)
{
    gencache_tier_stats st;
    t->ops->stats(t, &st);
    return st.backend_errors;
}

TEST_CASE(redis_killed_during_load_then_restarted)
{
    int port = start();
    gencache__tier *t = open_tier_within(port, 0, NULL, TIMEOUT_MS);
    atomic_int stop = 0;
    loader l[3];
    pthread_t th[3];
    for (int i = 0; i < 3; i++) {
        l[i] = (loader){.t = t, .id = i, .stop = &stop};
        atomic_init(&l[i].hits, 0);
        pthread_create(&th[i], NULL, load, &l[i]);
    }
    /* At least 300 ms of load, and until the first hits (a loaded machine may take longer). */
    usleep(300000);
    uint64_t t0_ms = wall_ms();
    while (hits_of(l) == 0 && wall_ms() - t0_ms < 5000)
        usleep(5000);
    CHECK(hits_of(l) > 0);
    rs_stop(); /* SIGKILL */
    /* At least 500 ms against the dead server, and until the tier has seen it fail. */
    usleep(500000);
    t0_ms = wall_ms();
    while (backend_errors(t) == 0 && wall_ms() - t0_ms < 5000)
        usleep(5000);
    atomic_store(&stop, 1);
    double max_ms = 0;
    for (int i = 0; i < 3; i++) {
        pthread_join(th[i], NULL);
        CHECK_INT_EQ(l[i].errors, 0);
        if (l[i].max_ms > max_ms)
            max_ms = l[i].max_ms;
    }
    printf("longest call while Redis died: %.1f ms (timeout %d ms)\n", max_ms, TIMEOUT_MS);
    CHECK(max_ms <= TIMEOUT_MS + SLACK_MS);
    CHECK(backend_errors(t) > 0);

    /* Restart on the same port: the tier finds it again within a second. */
    CHECK_INT_EQ(rs_start_on(port), 0);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    double back_ms = -1;
    while (rs_ms_since(&t0) < 3000) {
        CHECK_OK(put_spec(t, &(tu_spec){.id = 4242, .size = 100, .now_ms = wall_ms()}));
        gencache__entry *e = NULL;
        if (get_id(t, 4242, true, &e) == GENCACHE_OK) {
            gencache__entry_release(e);
            back_ms = rs_ms_since(&t0);
            break;
        }
        usleep(2000);
    }
    printf("hits resumed %.1f ms after Redis answered again\n", back_ms);
    CHECK(back_ms >= 0 && back_ms <= 1000);
    t->ops->close(t);
    rs_stop();
}

TEST_CASE(hung_redis_costs_at_most_the_timeout)
{
    int port = start();
    gencache__tier *t = open_tier_within(port, 0, NULL, TIMEOUT_MS);
    uint64_t now = wall_ms();
    CHECK_OK(put_spec(t, &(tu_spec){.id = 1, .size = 100, .now_ms = now}));
    kill(rs_pid, SIGSTOP);
    double max_ms = 0;
    for (int i = 0; i < 8; i++) {
        struct timespec t0;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        gencache__entry *e = NULL;
        CHECK_RC(get_id(t, 1, true, &e), GENCACHE_ENOTFOUND);
        CHECK_OK(put_spec(t, &(tu_spec){.id = 2, .size = 100, .now_ms = now}));
        double ms = rs_ms_since(&t0);
        if (ms > max_ms)
            max_ms = ms;
    }
    printf("longest get+put against a stopped Redis: %.1f ms\n", max_ms);
    /* get and put each wait one timeout at most; after the breaker opens, neither waits. */
    CHECK(max_ms <= 2 * TIMEOUT_MS + SLACK_MS);
    kill(rs_pid, SIGCONT);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    gencache__entry *e = NULL;
    while (get_id(t, 1, true, &e) != GENCACHE_OK && rs_ms_since(&t0) < 2000)
        usleep(5000);
    CHECK(e != NULL);
    gencache__entry_release(e);
    t->ops->close(t);
    rs_stop();
}

TEST_CASE(shared_between_two_caches)
{
    int port = start();
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", port);
    gencache_options o;
    gencache_options_init(&o);
    o.redis_url = url;
    gencache *a = NULL, *b = NULL;
    CHECK_OK(gencache_open(&a, &o));
    CHECK_OK(gencache_open(&b, &o));
    gencache_layer_options lo = {.struct_size = sizeof lo};
    gencache_layer_options_init(&lo);
    lo.name = "result";
    lo.write_through = 1;
    CHECK_OK(gencache_layer_define(a, &lo));
    CHECK_OK(gencache_layer_define(b, &lo));
    char key[GENCACHE__KEY_MAX + 1];
    tu_key(key, "result", 6);
    unsigned char v[5000];
    tu_fill(v, sizeof v, 6);
    CHECK_OK(gencache_put(a, key, v, sizeof v, NULL));
    gencache_handle *h = NULL;
    CHECK_OK(gencache_get(b, key, &h));
    CHECK_STR_EQ(gencache_handle_meta(h)->tier, "redis");
    CHECK_MEM_EQ(gencache_handle_data(h), v, sizeof v);
    gencache_handle_release(h);
    gencache_close(a);
    gencache_close(b);
    rs_stop();
}

/* ---- the counts of the tier's threads move once what they count is done ---- */

typedef struct rebuild_run {
    gencache__redis_tier *r;
    unsigned gen;
    _Atomic bool stop, done;
    int rc;
} rebuild_run;

static void *run_rebuild(void *arg)
{
    rebuild_run *rr = arg;
    rr->rc = gencache__redis_bloom_rebuild(rr->r, rr->gen, &rr->stop);
    atomic_store(&rr->done, true);
    return NULL;
}

/* A rebuild of the Bloom filter is counted, with the keys it found, before the filter turns
 * ready: whoever waits for ready reads that rebuild's count. An observer spins on ready while
 * each rebuild ends; a filter sized for millions of keys makes the old one slow to free, which
 * kept the window open while the count followed the free. */
TEST_CASE(bloom_rebuild_counted_before_ready)
{
    int port = start();
    gencache__tier *t = open_tier_with(port, (gencache__redis_options){.timeout_ms = 5000,
                                                                       .bloom_fp_rate = 0.01,
                                                                       .bloom_capacity = 4000000});
    gencache__redis_tier *r = (gencache__redis_tier *)t;
    enum { KEYS = 20, ROUNDS = 100 };
    for (uint64_t id = 0; id < KEYS; id++)
        CHECK_OK(put_spec(t, &(tu_spec){.id = id, .size = 64, .now_ms = wall_ms()}));
    /* As the subscriber leaves it once it listens (none runs on this tier). */
    atomic_store(&r->subscribed, true);
    unsigned gen = atomic_load(&r->sub_gen);
    for (uint64_t i = 0; i < ROUNDS; i++) {
        atomic_store(&r->bloom_ready, false);
        rebuild_run rr = {.r = r, .gen = gen};
        pthread_t th;
        CHECK(pthread_create(&th, NULL, run_rebuild, &rr) == 0);
        while (!atomic_load(&r->bloom_ready) && !atomic_load(&rr.done))
            ; /* no sleep: the window this looks for is microseconds wide */
        uint64_t rebuilds = atomic_load(&r->bloom_rebuilds);
        uint64_t keys = atomic_load(&r->bloom_rebuild_keys);
        pthread_join(th, NULL);
        CHECK_OK(rr.rc);
        CHECK(atomic_load(&r->bloom_ready));
        CHECK_UINT_EQ(rebuilds, i + 1);
        CHECK_UINT_EQ(keys, KEYS);
    }
    t->ops->close(t);
    rs_stop();
}

static void ignore_invalidation(void *ud, const gencache_filter *f, uint64_t created_before_ms)
{
    (void)ud;
    (void)f;
    (void)created_before_ms;
}

/* Drops the local copies, slowly, and counts that it did. */
static void slow_resync(void *ud)
{
    usleep(100000);
    atomic_fetch_add((_Atomic uint64_t *)ud, 1);
}

/* The subscriber counts a resync once resync() has returned: whoever waits for the count finds
 * the local copies gone (a slow resync() here, so that the opposite order would show). */
TEST_CASE(resync_counted_once_copies_dropped)
{
    int port = start();
    gencache__tier *t = open_tier(port, 0, NULL);
    _Atomic uint64_t dropped = 0;
    gencache__redis_coherence_cb cb = {
        .invalidate = ignore_invalidation, .resync = slow_resync, .userdata = &dropped};
    gencache__redis_coherence *co = NULL;
    CHECK_OK(gencache__redis_coherence_start(t, &cb, &co));
    uint64_t t0 = wall_ms();
    while (!gencache__redis_coherence_subscribed(co) && wall_ms() - t0 < 5000)
        usleep(5000);
    CHECK(gencache__redis_coherence_subscribed(co));
    CHECK_UINT_EQ(gencache__redis_coherence_resyncs(co), 0);
    /* The connection is lost; the subscriber subscribes again, then resyncs. */
    rs_stop();
    CHECK(rs_start_on(port) == 0);
    t0 = wall_ms();
    uint64_t resyncs = 0;
    while ((resyncs = gencache__redis_coherence_resyncs(co)) == 0 && wall_ms() - t0 < 5000)
        usleep(1000);
    CHECK(resyncs >= 1);
    CHECK_UINT_LE(resyncs, atomic_load(&dropped));
    gencache__redis_coherence_stop(co);
    t->ops->close(t);
    rs_stop();
}
