/* test_coalesce.c: single flight (gencache_claim): one computation for many concurrent misses,
 * the lease passing on when its holder abandons it or times out, independence of keys, hits,
 * async claims, and the error paths, closing the cache with leases outstanding included. */
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "test.h"
#include "coalesce/coalesce.h"

static const char VALUE[] = "the computed video";

static gencache *open_cache(uint64_t max_bytes)
{
    gencache_options o;
    gencache_options_init(&o);
    o.mem_max_bytes = max_bytes;
    gencache *c = NULL;
    CHECK_OK(gencache_open(&c, &o));
    return c;
}

static void key_of(char *buf, unsigned n)
{
    sprintf(buf, "image_latent/%064x", n);
}

static uint64_t now_ms(void)
{
    return gencache__clock_mono_ns() / 1000000u;
}

static void sleep_ms(unsigned ms)
{
    nanosleep(&(struct timespec){.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L},
              NULL);
}

static void check_value(gencache_handle *h)
{
    CHECK(h != NULL);
    CHECK_UINT_EQ(gencache_handle_size(h), sizeof VALUE);
    CHECK_MEM_EQ(gencache_handle_data(h), VALUE, sizeof VALUE);
}

/* ---- many threads, one key ---- */

typedef struct crowd {
    gencache *cache;
    char key[128];
    pthread_barrier_t start;
    atomic_int computed;
    atomic_int got_value;
    atomic_int waited;
    unsigned compute_ms;
} crowd;

static void *claimer(void *arg)
{
    crowd *cr = arg;
    pthread_barrier_wait(&cr->start);
    gencache_claim_result r;
    CHECK_OK(gencache_claim(cr->cache, cr->key, NULL, &r));
    if (r.kind == GENCACHE_CLAIM_LEASE) {
        CHECK(r.lease != NULL && r.handle == NULL);
        CHECK_STR_EQ(gencache_lease_key(r.lease), cr->key);
        atomic_fetch_add(&cr->computed, 1);
        sleep_ms(cr->compute_ms);
        CHECK_OK(gencache_lease_fulfil(r.lease, VALUE, sizeof VALUE, NULL));
        atomic_fetch_add(&cr->got_value, 1);
    } else {
        CHECK_INT_EQ(r.kind, GENCACHE_CLAIM_HIT);
        CHECK(r.lease == NULL);
        check_value(r.handle);
        gencache_handle_release(r.handle);
        atomic_fetch_add(&cr->got_value, 1);
        atomic_fetch_add(&cr->waited, r.waited != 0);
    }
    return NULL;
}

TEST_CASE(hundred_claims_compute_once)
{
    enum { N = 100 };
    crowd cr = {.cache = open_cache(64u << 20), .compute_ms = 100};
    key_of(cr.key, 1);
    pthread_barrier_init(&cr.start, NULL, N);
    pthread_t t[N];
    for (int i = 0; i < N; i++)
        CHECK_INT_EQ(pthread_create(&t[i], NULL, claimer, &cr), 0);
    for (int i = 0; i < N; i++)
        pthread_join(t[i], NULL);
    CHECK_INT_EQ(atomic_load(&cr.computed), 1);
    CHECK_INT_EQ(atomic_load(&cr.got_value), N);
    /* The computation takes 100 ms after a common start, so the others waited for it (a thread
     * the scheduler starts later than that finds the entry instead: a hit, not a wait). */
    CHECK(atomic_load(&cr.waited) >= N / 2);
    pthread_barrier_destroy(&cr.start);
    gencache_close(cr.cache);
}

/* ---- the lease passing on ---- */

typedef struct relay {
    gencache *cache;
    char key[128];
    atomic_int computed;
    atomic_int leases_waited; /* leases received after waiting */
    atomic_int got_value;
    atomic_int started;
} relay;

static void *relay_claimer(void *arg)
{
    relay *rl = arg;
    gencache_claim_result r;
    atomic_fetch_add(&rl->started, 1);
    CHECK_OK(gencache_claim(rl->cache, rl->key, NULL, &r));
    if (r.kind == GENCACHE_CLAIM_LEASE) {
        atomic_fetch_add(&rl->computed, 1);
        atomic_fetch_add(&rl->leases_waited, r.waited != 0);
        sleep_ms(20);
        CHECK_OK(gencache_lease_fulfil(r.lease, VALUE, sizeof VALUE, NULL));
    } else {
        CHECK_INT_EQ(r.kind, GENCACHE_CLAIM_HIT);
        check_value(r.handle);
        gencache_handle_release(r.handle);
    }
    atomic_fetch_add(&rl->got_value, 1);
    return NULL;
}

static void start_relay(relay *rl, pthread_t *t, int n)
{
    for (int i = 0; i < n; i++)
        CHECK_INT_EQ(pthread_create(&t[i], NULL, relay_claimer, rl), 0);
    while (atomic_load(&rl->started) < n)
        sleep_ms(1);
    sleep_ms(100); /* let them reach the wait */
}

TEST_CASE(abandon_passes_lease)
{
    enum { N = 8 };
    relay rl = {.cache = open_cache(64u << 20)};
    key_of(rl.key, 2);
    gencache_claim_result r;
    CHECK_OK(gencache_claim(rl.cache, rl.key, NULL, &r));
    CHECK_INT_EQ(r.kind, GENCACHE_CLAIM_LEASE);
    CHECK_INT_EQ(r.waited, 0);
    pthread_t t[N];
    start_relay(&rl, t, N);
    CHECK_INT_EQ(atomic_load(&rl.computed), 0);
    CHECK_OK(gencache_lease_abandon(r.lease));
    for (int i = 0; i < N; i++)
        pthread_join(t[i], NULL);
    CHECK_INT_EQ(atomic_load(&rl.computed), 1);
    CHECK_INT_EQ(atomic_load(&rl.leases_waited), 1);
    CHECK_INT_EQ(atomic_load(&rl.got_value), N);
    gencache_close(rl.cache);
}

TEST_CASE(hung_holder_times_out)
{
    enum { N = 4 };
    relay rl = {.cache = open_cache(64u << 20)};
    key_of(rl.key, 3);
    gencache_claim_options o;
    gencache_claim_options_init(&o);
    o.lease_timeout_ms = 300;
    gencache_claim_result r;
    uint64_t t0 = now_ms();
    CHECK_OK(gencache_claim(rl.cache, rl.key, &o, &r));
    CHECK_INT_EQ(r.kind, GENCACHE_CLAIM_LEASE);
    gencache_lease *hung = r.lease;
    pthread_t t[N];
    start_relay(&rl, t, N);
    for (int i = 0; i < N; i++)
        pthread_join(t[i], NULL);
    uint64_t elapsed = now_ms() - t0;
    CHECK_UINT_LE(300, elapsed);
    CHECK_INT_EQ(atomic_load(&rl.computed), 1);
    CHECK_INT_EQ(atomic_load(&rl.leases_waited), 1);
    CHECK_INT_EQ(atomic_load(&rl.got_value), N);
    /* The late holder learns that its lease is gone; its value is not stored over the other. */
    CHECK_RC(gencache_lease_fulfil(hung, "late", 4, NULL), GENCACHE_ETIMEDOUT);
    CHECK_OK(gencache_claim(rl.cache, rl.key, NULL, &r));
    CHECK_INT_EQ(r.kind, GENCACHE_CLAIM_HIT);
    check_value(r.handle);
    gencache_handle_release(r.handle);
    gencache_close(rl.cache);
}

TEST_CASE(timeout_fires_without_other_calls)
{
    gencache *c = open_cache(64u << 20);
    char key[128];
    key_of(key, 4);
    gencache_claim_options o;
    gencache_claim_options_init(&o);
    o.lease_timeout_ms = 50;
    o.wait_timeout_ms = 0;
    gencache_claim_result r;
    CHECK_OK(gencache_claim(c, key, &o, &r));
    gencache_lease *hung = r.lease;
    CHECK_RC(gencache_claim(c, key, &o, &r), GENCACHE_EBUSY);
    CHECK_INT_EQ(r.kind, GENCACHE_CLAIM_NONE);
    sleep_ms(250);
    /* No call happened meanwhile: the timer thread ended the flight. */
    CHECK_OK(gencache_claim(c, key, &o, &r));
    CHECK_INT_EQ(r.kind, GENCACHE_CLAIM_LEASE);
    CHECK_INT_EQ(r.waited, 0);
    CHECK_OK(gencache_lease_abandon(r.lease));
    CHECK_RC(gencache_lease_abandon(hung), GENCACHE_ETIMEDOUT);
    gencache_close(c);
}

/* ---- keys and hits ---- */

typedef struct one_wait {
    gencache *cache;
    const char *key;
    int rc;
    gencache_claim_result r;
} one_wait;

static void *wait_once(void *arg)
{
    one_wait *w = arg;
    w->rc = gencache_claim(w->cache, w->key, NULL, &w->r);
    return NULL;
}

TEST_CASE(different_keys_never_wait)
{
    gencache *c = open_cache(64u << 20);
    char a[128], b[128];
    key_of(a, 5);
    /* A key in the same bucket as a: the stripe is shared, the flight is not. */
    uint64_t ha = gencache__checksum(a, strlen(a)) % GENCACHE__FLIGHT_BUCKETS;
    unsigned n = 6;
    for (;; n++) {
        key_of(b, n);
        if (gencache__checksum(b, strlen(b)) % GENCACHE__FLIGHT_BUCKETS == ha)
            break;
    }
    gencache_claim_options o;
    gencache_claim_options_init(&o);
    o.wait_timeout_ms = 0;
    gencache_claim_result ra, rb;
    CHECK_OK(gencache_claim(c, a, &o, &ra));
    CHECK_INT_EQ(ra.kind, GENCACHE_CLAIM_LEASE);
    CHECK_OK(gencache_claim(c, b, &o, &rb));
    CHECK_INT_EQ(rb.kind, GENCACHE_CLAIM_LEASE);
    CHECK_INT_EQ(rb.waited, 0);
    CHECK_OK(gencache_lease_fulfil(rb.lease, VALUE, sizeof VALUE, NULL));
    CHECK_RC(gencache_claim(c, a, &o, &rb), GENCACHE_EBUSY);
    /* A claim blocked on a does not hold the shared bucket: b's flights go on meanwhile. */
    one_wait w = {.cache = c, .key = a};
    pthread_t t;
    CHECK_INT_EQ(pthread_create(&t, NULL, wait_once, &w), 0);
    sleep_ms(50);
    char b2[128];
    for (n++;; n++) {
        key_of(b2, n);
        if (gencache__checksum(b2, strlen(b2)) % GENCACHE__FLIGHT_BUCKETS == ha)
            break;
    }
    CHECK_OK(gencache_claim(c, b2, &o, &rb));
    CHECK_INT_EQ(rb.kind, GENCACHE_CLAIM_LEASE);
    CHECK_OK(gencache_lease_abandon(rb.lease));
    CHECK_OK(gencache_lease_fulfil(ra.lease, VALUE, sizeof VALUE, NULL));
    pthread_join(t, NULL);
    CHECK_OK(w.rc);
    CHECK_INT_EQ(w.r.kind, GENCACHE_CLAIM_HIT);
    gencache_handle_release(w.r.handle);
    gencache_close(c);
}

TEST_CASE(hit_needs_no_lease)
{
    gencache *c = open_cache(64u << 20);
    char key[128];
    key_of(key, 7);
    CHECK_OK(gencache_put(c, key, VALUE, sizeof VALUE, NULL));
    gencache_claim_result r;
    CHECK_OK(gencache_claim(c, key, NULL, &r));
    CHECK_INT_EQ(r.kind, GENCACHE_CLAIM_HIT);
    CHECK_INT_EQ(r.waited, 0);
    CHECK(r.lease == NULL);
    check_value(r.handle);
    gencache_handle_release(r.handle);
    gencache_close(c);
}

TEST_CASE(tenant_sees_only_its_own)
{
    gencache *c = open_cache(64u << 20);
    char key[128];
    sprintf(key, "result/%064x", 8u);
    gencache_caller acme;
    gencache_caller_init(&acme);
    acme.tenant = "acme";
    CHECK_OK(gencache_put_as(c, &acme, key, VALUE, sizeof VALUE, NULL));
    /* The same key in another tenant's namespace is another entry, and another flight. */
    gencache_claim_options o;
    gencache_claim_options_init(&o);
    o.tenant = "other";
    gencache_claim_result r;
    CHECK_OK(gencache_claim(c, key, &o, &r));
    CHECK_INT_EQ(r.kind, GENCACHE_CLAIM_LEASE);
    CHECK_OK(gencache_lease_fulfil(r.lease, "theirs", 6, NULL));
    o.tenant = "acme";
    CHECK_OK(gencache_claim(c, key, &o, &r));
    CHECK_INT_EQ(r.kind, GENCACHE_CLAIM_HIT);
    CHECK_UINT_EQ(gencache_handle_size(r.handle), sizeof VALUE);
    gencache_handle_release(r.handle);
    o.tenant = "other";
    CHECK_OK(gencache_claim(c, key, &o, &r));
    CHECK_INT_EQ(r.kind, GENCACHE_CLAIM_HIT);
    CHECK_MEM_EQ(gencache_handle_data(r.handle), "theirs", 6);
    CHECK_STR_EQ(gencache_handle_meta(r.handle)->tenant, "other");
    gencache_handle_release(r.handle);
    o.tenant = "not a name";
    CHECK_RC(gencache_claim(c, key, &o, &r), GENCACHE_EINVAL);
    gencache_close(c);
}

/* ---- failures ---- */

TEST_CASE(fail_reaches_every_waiter)
{
    gencache *c = open_cache(64u << 20);
    char key[128];
    key_of(key, 9);
    gencache_claim_result r;
    CHECK_OK(gencache_claim(c, key, NULL, &r));
    one_wait w[3];
    pthread_t t[3];
    for (int i = 0; i < 3; i++) {
        w[i] = (one_wait){.cache = c, .key = key};
        CHECK_INT_EQ(pthread_create(&t[i], NULL, wait_once, &w[i]), 0);
    }
    sleep_ms(100);
    CHECK_OK(gencache_lease_fail(r.lease, GENCACHE_EUNAVAILABLE));
    for (int i = 0; i < 3; i++) {
        pthread_join(t[i], NULL);
        CHECK_RC(w[i].rc, GENCACHE_EUNAVAILABLE);
        CHECK_INT_EQ(w[i].r.kind, GENCACHE_CLAIM_NONE);
    }
    gencache_close(c);
}

TEST_CASE(store_failure_reaches_waiters)
{
    gencache *c = open_cache(1024); /* smaller than the value below */
    char key[128];
    key_of(key, 10);
    gencache_claim_result r;
    CHECK_OK(gencache_claim(c, key, NULL, &r));
    one_wait w = {.cache = c, .key = key};
    pthread_t t;
    CHECK_INT_EQ(pthread_create(&t, NULL, wait_once, &w), 0);
    sleep_ms(100);
    static char big[4096];
    CHECK_RC(gencache_lease_fulfil(r.lease, big, sizeof big, NULL), GENCACHE_ETOOBIG);
    pthread_join(t, NULL);
    CHECK_RC(w.rc, GENCACHE_ETOOBIG);
    gencache_close(c);
}

TEST_CASE(wait_timeout)
{
    gencache *c = open_cache(64u << 20);
    char key[128];
    key_of(key, 11);
    gencache_claim_result r, r2;
    CHECK_OK(gencache_claim(c, key, NULL, &r));
    gencache_claim_options o;
    gencache_claim_options_init(&o);
    o.wait_timeout_ms = 50;
    uint64_t t0 = now_ms();
    CHECK_RC(gencache_claim(c, key, &o, &r2), GENCACHE_ETIMEDOUT);
    CHECK_UINT_LE(50, now_ms() - t0);
    CHECK_INT_EQ(r2.kind, GENCACHE_CLAIM_NONE);
    CHECK_OK(gencache_lease_fulfil(r.lease, VALUE, sizeof VALUE, NULL));
    gencache_close(c);
}

TEST_CASE(bad_arguments)
{
    gencache *c = open_cache(64u << 20);
    char key[128];
    key_of(key, 12);
    gencache_claim_result r;
    CHECK_RC(gencache_claim(NULL, key, NULL, &r), GENCACHE_EINVAL);
    CHECK_RC(gencache_claim(c, NULL, NULL, &r), GENCACHE_EINVAL);
    CHECK_RC(gencache_claim(c, key, NULL, NULL), GENCACHE_EINVAL);
    CHECK_RC(gencache_claim(c, "image_latent/nothex", NULL, &r), GENCACHE_EINVAL);
    CHECK_INT_EQ(r.kind, GENCACHE_CLAIM_NONE);
    char unknown[128];
    sprintf(unknown, "nolayer/%064x", 1u);
    CHECK_RC(gencache_claim(c, unknown, NULL, &r), GENCACHE_ENOTFOUND);
    gencache_claim_options o;
    gencache_claim_options_init(&o);
    o.struct_size = 4;
    CHECK_RC(gencache_claim(c, key, &o, &r), GENCACHE_EINVAL);
    CHECK_RC(gencache_claim_async(c, key, NULL, NULL, NULL, &r), GENCACHE_EINVAL);
    CHECK_RC(gencache_lease_fulfil(NULL, VALUE, 1, NULL), GENCACHE_EINVAL);
    CHECK_RC(gencache_lease_abandon(NULL), GENCACHE_EINVAL);
    CHECK_RC(gencache_lease_fail(NULL, GENCACHE_EIO), GENCACHE_EINVAL);
    CHECK(gencache_lease_key(NULL) == NULL);
    CHECK_OK(gencache_claim(c, key, NULL, &r));
    /* NULL data with a size leaves the lease held. */
    CHECK_RC(gencache_lease_fulfil(r.lease, NULL, 5, NULL), GENCACHE_EINVAL);
    CHECK_OK(gencache_lease_fulfil(r.lease, NULL, 0, NULL));
    gencache_close(c);
}

/* ---- async claims and closing ---- */

typedef struct async_box {
    atomic_int calls;
    int status;
    gencache_claim_result r;
} async_box;

static void on_done(void *ud, int status, const gencache_claim_result *r)
{
    async_box *b = ud;
    b->status = status;
    b->r = *r;
    atomic_fetch_add(&b->calls, 1);
}

TEST_CASE(async_waiter_gets_hit)
{
    gencache *c = open_cache(64u << 20);
    char key[128];
    key_of(key, 13);
    async_box box = {0};
    gencache_claim_result r, ra;
    CHECK_OK(gencache_claim_async(c, key, NULL, on_done, &box, &r));
    CHECK_INT_EQ(r.kind, GENCACHE_CLAIM_LEASE); /* no holder: answered at once */
    CHECK_OK(gencache_claim_async(c, key, NULL, on_done, &box, &ra));
    CHECK_INT_EQ(ra.kind, GENCACHE_CLAIM_PENDING);
    CHECK_INT_EQ(atomic_load(&box.calls), 0);
    CHECK_OK(gencache_lease_fulfil(r.lease, VALUE, sizeof VALUE, NULL));
    CHECK_INT_EQ(atomic_load(&box.calls), 1);
    CHECK_OK(box.status);
    CHECK_INT_EQ(box.r.kind, GENCACHE_CLAIM_HIT);
    CHECK_INT_EQ(box.r.waited, 1);
    check_value(box.r.handle);
    gencache_handle_release(box.r.handle);
    gencache_close(c);
}

TEST_CASE(async_wait_times_out)
{
    gencache *c = open_cache(64u << 20);
    char key[128];
    key_of(key, 14);
    async_box box = {0};
    gencache_claim_result r, ra;
    CHECK_OK(gencache_claim(c, key, NULL, &r));
    gencache_claim_options o;
    gencache_claim_options_init(&o);
    o.wait_timeout_ms = 50;
    CHECK_OK(gencache_claim_async(c, key, &o, on_done, &box, &ra));
    CHECK_INT_EQ(ra.kind, GENCACHE_CLAIM_PENDING);
    for (int i = 0; i < 200 && atomic_load(&box.calls) == 0; i++)
        sleep_ms(5);
    CHECK_INT_EQ(atomic_load(&box.calls), 1);
    CHECK_RC(box.status, GENCACHE_ETIMEDOUT);
    CHECK_INT_EQ(box.r.kind, GENCACHE_CLAIM_NONE);
    CHECK_OK(gencache_lease_abandon(r.lease));
    gencache_close(c);
}

TEST_CASE(close_with_leases_outstanding)
{
    gencache *c = open_cache(64u << 20);
    char k1[128], k2[128];
    key_of(k1, 15);
    key_of(k2, 16);
    gencache_claim_result r1, r2, ra;
    CHECK_OK(gencache_claim(c, k1, NULL, &r1));
    CHECK_OK(gencache_claim(c, k2, NULL, &r2));
    async_box box = {0};
    CHECK_OK(gencache_claim_async(c, k1, NULL, on_done, &box, &ra));
    CHECK_INT_EQ(ra.kind, GENCACHE_CLAIM_PENDING);
    gencache_close(c);
    CHECK_INT_EQ(atomic_load(&box.calls), 1);
    CHECK_RC(box.status, GENCACHE_EUNAVAILABLE);
    /* The leases outlive the cache: ending them stores nothing and touches nothing freed. */
    CHECK_RC(gencache_lease_fulfil(r1.lease, VALUE, sizeof VALUE, NULL), GENCACHE_EUNAVAILABLE);
    CHECK_RC(gencache_lease_abandon(r2.lease), GENCACHE_EUNAVAILABLE);
}

/* ---- a Redis that hangs ---- */

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

/* A loopback TCP listener that accepts connections and never answers: a hung Redis. */
typedef struct mute_server {
    int fd;
    int port;
    atomic_int stop;
    int conns[64];
    int n_conns;
    pthread_t thread;
} mute_server;

static void *mute_main(void *arg)
{
    mute_server *s = arg;
    while (!atomic_load(&s->stop)) {
        struct pollfd p = {.fd = s->fd, .events = POLLIN};
        if (poll(&p, 1, 20) == 1) {
            int c = accept(s->fd, NULL, NULL);
            if (c >= 0 && s->n_conns < 64)
                s->conns[s->n_conns++] = c;
            else if (c >= 0)
                close(c);
        }
    }
    return NULL;
}

static void mute_start(mute_server *s)
{
    memset(s, 0, sizeof *s);
    s->fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(s->fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    CHECK_INT_EQ(bind(s->fd, (struct sockaddr *)&a, sizeof a), 0);
    CHECK_INT_EQ(listen(s->fd, 64), 0);
    socklen_t len = sizeof a;
    CHECK_INT_EQ(getsockname(s->fd, (struct sockaddr *)&a, &len), 0);
    s->port = ntohs(a.sin_port);
    CHECK_INT_EQ(pthread_create(&s->thread, NULL, mute_main, s), 0);
}

static void mute_stop(mute_server *s)
{
    atomic_store(&s->stop, 1);
    pthread_join(s->thread, NULL);
    for (int i = 0; i < s->n_conns; i++)
        close(s->conns[i]);
    close(s->fd);
}

typedef struct slow_claim {
    gencache *cache;
    char key[128];
    atomic_int started, done;
    uint64_t ms;
} slow_claim;

static void *slow_claimer(void *arg)
{
    slow_claim *sc = arg;
    uint64_t t0 = now_ms();
    atomic_store(&sc->started, 1);
    gencache_claim_result r;
    CHECK_OK(gencache_claim(sc->cache, sc->key, NULL, &r));
    sc->ms = now_ms() - t0;
    atomic_store(&sc->done, 1);
    CHECK_INT_EQ(r.kind, GENCACHE_CLAIM_LEASE);
    CHECK_OK(gencache_lease_abandon(r.lease));
    return NULL;
}

TEST_CASE(hung_redis_delays_no_other_key)
{
    mute_server srv;
    mute_start(&srv);
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", srv.port);
    gencache_options o;
    gencache_options_init(&o);
    o.redis_url = url;
    o.redis_timeout_ms = 1500;
    gencache *c = NULL;
    CHECK_OK(gencache_open(&c, &o));
    char b[128];
    key_of(b, 17);
    CHECK_OK(gencache_put(c, b, VALUE, sizeof VALUE, NULL)); /* memory only: not write-through */

    /* A miss on key a walks down to the hung Redis and waits there for its timeout. */
    slow_claim sc = {.cache = c};
    key_of(sc.key, 18);
    pthread_t t;
    CHECK_INT_EQ(pthread_create(&t, NULL, slow_claimer, &sc), 0);
    while (!atomic_load(&sc.started))
        sleep_ms(1);
    sleep_ms(100);
    /* Meanwhile claims on key b are answered from memory: no lock of the flight table is held
     * across a's lookup. */
    uint64_t worst_us = 0;
    for (int i = 0; i < 100; i++) {
        uint64_t t0 = gencache__clock_mono_ns();
        gencache_claim_result r;
        CHECK_OK(gencache_claim(c, b, NULL, &r));
        CHECK_INT_EQ(r.kind, GENCACHE_CLAIM_HIT);
        gencache_handle_release(r.handle);
        uint64_t us = (gencache__clock_mono_ns() - t0) / 1000u;
        if (us > worst_us)
            worst_us = us;
    }
    int a_done_meanwhile = atomic_load(&sc.done);
    pthread_join(t, NULL);
    printf("hung redis: the claim that waited on Redis took %" PRIu64 " ms; 100 claims of "
           "another key meanwhile, slowest %" PRIu64 " us\n",
           sc.ms, worst_us);
    /* Behaviour, not timing: every claim of b returned while a's claim was still waiting. */
    CHECK_INT_EQ(a_done_meanwhile, 0);
    gencache_close(c);
    mute_stop(&srv);
}
