/*
 * test_redis_cluster.c: the Redis tier on a real 3-primary Redis Cluster on loopback (started
 * and stopped by each case): hash slots as Redis computes them, keys spread over every primary
 * and read through another node's tier, slots migrated while a reader and a writer run (ASK,
 * then MOVED: no miss and no error), and a primary killed (misses for its slots only, every call
 * within its deadline) and restarted (hits again).
 */
#define _GNU_SOURCE
#include <pthread.h>

#include "tier_util.h"
#include "redis_cluster_server.h"
#include "tier/redis_ops.h"

#define TIMEOUT_MS 200
#define SLACK_MS   300
/* The timeout of the cases that are not about timeouts: a loaded machine must not fail them. */
#define PATIENT_TIMEOUT_MS 5000

static uint64_t wall_ms(void)
{
    return gencache__clock_realtime_ms(NULL);
}

static gencache__tier *open_cluster(int seeds)
{
    char url[256];
    rc_url(url, sizeof url, seeds);
    gencache__redis_options o = {.url = url, .timeout_ms = TIMEOUT_MS};
    gencache__tier *t = NULL;
    CHECK_OK(gencache__redis_tier_open(&o, &t));
    CHECK(t != NULL);
    return t;
}

static int put_id(gencache__tier *t, uint64_t id, size_t size)
{
    gencache__entry *e = tu_entry(&(tu_spec){.id = id,
                                             .size = size,
                                             .now_ms = wall_ms(),
                                             .tenant = id % 2 ? "odd" : "even",
                                             .ttl_ms = 600000});
    int rc = t->ops->put(t, e, wall_ms());
    gencache__entry_release(e);
    return rc;
}

static int get_id(gencache__tier *t, uint64_t id, gencache__entry **out)
{
    char key[GENCACHE__KEY_MAX + 1];
    tu_key(key, "result", id);
    return t->ops->get(t, key, tu_hash(key), wall_ms(), true, out);
}

/* The slot of entry id's Redis key, and the node that serves it. */
static unsigned slot_of(gencache__tier *t, uint64_t id)
{
    char key[GENCACHE__KEY_MAX + 1], rkey[GENCACHE__REDIS_KEY_SIZE];
    tu_key(key, "result", id);
    gencache__redis_key((gencache__redis_tier *)t, rkey, key);
    return gencache__redis_slot(rkey, strlen(rkey));
}

static uint64_t errors(gencache__tier *t)
{
    gencache_tier_stats s;
    t->ops->stats(t, &s);
    return s.backend_errors;
}

static bool tenant_odd(void *ud, const gencache__entry *e)
{
    (void)ud;
    return e->tenant && strcmp(e->tenant, "odd") == 0;
}

TEST_CASE(slot_hash)
{
    /* Vectors from the Redis Cluster specification and hash tag rules. */
    CHECK_UINT_EQ(gencache__redis_slot("123456789", 9), 0x31C3 % 16384);
    CHECK_UINT_EQ(gencache__redis_slot("foo", 3), 12182);
    CHECK_UINT_EQ(gencache__redis_slot("bar", 3), 5061);
    CHECK_UINT_EQ(gencache__redis_slot("{user1000}.following", 20),
                  gencache__redis_slot("user1000", 8));
    CHECK_UINT_EQ(gencache__redis_slot("{user1000}.followers", 20),
                  gencache__redis_slot("{user1000}.following", 20));
    /* An empty tag is no tag; only the first '{' counts. */
    CHECK(gencache__redis_slot("foo{}{bar}", 10) != gencache__redis_slot("bar", 3));
    CHECK_UINT_EQ(gencache__redis_slot("foo{{bar}}zap", 13), gencache__redis_slot("{bar", 4));
    CHECK_UINT_EQ(gencache__redis_slot("foo{bar}{zap}", 13), gencache__redis_slot("bar", 3));
    /* Without a closing brace the whole key counts (Redis answers 6400 for "{unclosed"). */
    CHECK(gencache__redis_slot("{unclosed", 9) != gencache__redis_slot("unclosed", 8));

    gencache__redis_redirect rd;
    CHECK(gencache__redis_redirect_parse("MOVED 3999 127.0.0.1:6381", 25, &rd));
    CHECK_INT_EQ(rd.kind, GENCACHE__REDIS_MOVED);
    CHECK_UINT_EQ(rd.slot, 3999);
    CHECK_STR_EQ(rd.addr, "127.0.0.1:6381");
    CHECK(gencache__redis_redirect_parse("ASK 0 [::1]:7000", 16, &rd));
    CHECK_INT_EQ(rd.kind, GENCACHE__REDIS_ASK);
    const char *bad[] = {"MOVED",   "MOVED 16384 h:1", "MOVED x h:1",
                         "MOVED 1", "ERR wrong",       "ASK 12 "};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        CHECK(!gencache__redis_redirect_parse(bad[i], strlen(bad[i]), &rd));
        CHECK_INT_EQ(rd.kind, GENCACHE__REDIS_NO_REDIRECT);
    }

    /* Seed lists: malformed ones are configuration errors. */
    const char *urls[] = {"redis-cluster://",       "redis-cluster://host", "redis-cluster://h:0",
                          "redis-cluster://h:1,",   "redis-cluster://:5",   "redis-cluster://h:1/2",
                          "redis-cluster://h:99999"};
    for (size_t i = 0; i < sizeof urls / sizeof *urls; i++) {
        gencache__redis_options o = {.url = urls[i], .timeout_ms = 50};
        gencache__tier *t = (gencache__tier *)1;
        CHECK_RC(gencache__redis_tier_open(&o, &t), GENCACHE_ECONFIG);
        CHECK(t == NULL);
    }
    gencache__redis_options o = {.url = "redis-cluster://127.0.0.1:1,[::1]:2", .timeout_ms = 50};
    gencache__tier *t = NULL;
    CHECK_OK(gencache__redis_tier_open(&o, &t));
    CHECK_UINT_EQ(((gencache__redis_tier *)t)->n_seeds, 2);
    /* Nothing listens there: a miss, within the deadline. */
    gencache__entry *e = NULL;
    CHECK_RC(get_id(t, 1, &e), GENCACHE_ENOTFOUND);
    t->ops->close(t);
}

TEST_CASE(spread_across_nodes)
{
    CHECK(rc_start() == 0);
    gencache__tier *a = open_cluster(1), *b = open_cluster(3);
    enum { N = 600 };
    for (uint64_t id = 0; id < N; id++)
        CHECK_OK(put_id(a, id, 64 + id % 4000));
    /* Every primary holds a share; the tier's slot agrees with Redis's. */
    long long total = 0;
    for (int i = 0; i < RC_NODES; i++) {
        redisContext *c = rc_client(i);
        CHECK(c != NULL);
        redisReply *r = redisCommand(c, "DBSIZE");
        CHECK(r && r->type == REDIS_REPLY_INTEGER);
        CHECK(r->integer > N / 6);
        total += r->integer;
        freeReplyObject(r);
        for (uint64_t id = 0; id < 50; id++) {
            char key[GENCACHE__KEY_MAX + 1], rkey[GENCACHE__REDIS_KEY_SIZE];
            tu_key(key, "result", id);
            gencache__redis_key((gencache__redis_tier *)a, rkey, key);
            r = redisCommand(c, "CLUSTER KEYSLOT %s", rkey);
            CHECK(r && r->type == REDIS_REPLY_INTEGER);
            CHECK_UINT_EQ((uint64_t)r->integer, slot_of(a, id));
            freeReplyObject(r);
        }
        redisFree(c);
    }
    CHECK_INT_EQ(total, N);
    /* Another node's tier reads them all. */
    for (uint64_t id = 0; id < N; id++) {
        gencache__entry *e = NULL;
        CHECK_OK(get_id(b, id, &e));
        tu_check_value(e, id, 64 + id % 4000);
        gencache__entry_release(e);
    }
    CHECK_UINT_EQ(errors(a), 0);
    CHECK_UINT_EQ(errors(b), 0);
    /* Routing came from the slot map, not from redirects. */
    CHECK_UINT_LE(atomic_load(&((gencache__redis_tier *)b)->redirects), 3);
    /* Invalidation walks every primary. */
    char key[GENCACHE__KEY_MAX + 1];
    tu_key(key, "result", 7);
    CHECK_OK(b->ops->del(b, key, tu_hash(key)));
    CHECK_RC(b->ops->del(b, key, tu_hash(key)), GENCACHE_ENOTFOUND);
    uint64_t removed = 0;
    CHECK_OK(a->ops->remove_if(a, tenant_odd, NULL, &removed));
    CHECK_UINT_EQ(removed, N / 2 - 1);
    gencache__entry *e = NULL;
    CHECK_RC(get_id(b, 9, &e), GENCACHE_ENOTFOUND);
    CHECK_OK(get_id(b, 10, &e));
    gencache__entry_release(e);
    a->ops->close(a);
    b->ops->close(b);
    rc_stop();
}

typedef struct load {
    gencache__tier *t;
    const uint64_t *ids;
    size_t n;
    _Atomic bool stop;
    _Atomic uint64_t gets, misses, puts;
} load;

static void *reader(void *arg)
{
    load *l = arg;
    while (!atomic_load(&l->stop)) {
        for (size_t i = 0; i < l->n; i++) {
            gencache__entry *e = NULL;
            if (get_id(l->t, l->ids[i], &e) == GENCACHE_OK)
                gencache__entry_release(e);
            else
                atomic_fetch_add(&l->misses, 1);
            atomic_fetch_add(&l->gets, 1);
        }
    }
    return NULL;
}

static void *writer(void *arg)
{
    load *l = arg;
    while (!atomic_load(&l->stop)) {
        for (size_t i = 0; i < l->n; i++) {
            put_id(l->t, l->ids[i], 1000);
            atomic_fetch_add(&l->puts, 1);
        }
    }
    return NULL;
}

static void cmd_ok(int node, const char *fmt, const char *a, const char *b)
{
    redisContext *c = rc_client(node);
    CHECK(c != NULL);
    redisReply *r = redisCommand(c, fmt, a, b);
    if (!r || r->type == REDIS_REPLY_ERROR)
        test_fail(__FILE__, __LINE__, "node %d: %s: %s", node, fmt, r ? r->str : "no reply");
    freeReplyObject(r);
    redisFree(c);
}

/* Moves slot from node src to node dst as redis-cli's reshard does, pausing between the steps so
 * the clients see the slot in its migrating state (ASK) and then moved (MOVED). */
static void migrate_slot(unsigned slot, int src, int dst)
{
    char s[16], port[16];
    snprintf(s, sizeof s, "%u", slot);
    snprintf(port, sizeof port, "%d", rc_nodes[dst].port);
    cmd_ok(dst, "CLUSTER SETSLOT %s IMPORTING %s", s, rc_nodes[src].id);
    cmd_ok(src, "CLUSTER SETSLOT %s MIGRATING %s", s, rc_nodes[dst].id);
    usleep(20000);
    redisContext *c = rc_client(src);
    CHECK(c != NULL);
    for (;;) {
        redisReply *keys = redisCommand(c, "CLUSTER GETKEYSINSLOT %s 100", s);
        CHECK(keys && keys->type == REDIS_REPLY_ARRAY);
        if (keys->elements == 0) {
            freeReplyObject(keys);
            break;
        }
        /* One key at a time, so some of the slot is here and some there for a while. */
        for (size_t i = 0; i < keys->elements; i++) {
            const char *argv[8] = {"MIGRATE", "127.0.0.1", port,   "",
                                   "0",       "5000",      "KEYS", keys->element[i]->str};
            size_t lens[8];
            for (int k = 0; k < 8; k++)
                lens[k] = strlen(argv[k]);
            lens[7] = (size_t)keys->element[i]->len;
            redisReply *r = redisCommandArgv(c, 8, argv, lens);
            CHECK(r && r->type != REDIS_REPLY_ERROR);
            freeReplyObject(r);
            usleep(5000);
        }
        freeReplyObject(keys);
    }
    redisFree(c);
    usleep(20000);
    /* The target first: while the source already redirects there, the target must not still
     * send clients back (it does while it is importing). */
    cmd_ok(dst, "CLUSTER SETSLOT %s NODE %s", s, rc_nodes[dst].id);
    for (int i = 0; i < RC_NODES; i++)
        if (i != dst)
            cmd_ok(i, "CLUSTER SETSLOT %s NODE %s", s, rc_nodes[dst].id);
}

TEST_CASE(slot_migration_under_load)
{
    CHECK(rc_start() == 0);
    gencache__tier *t = open_cluster(3), *w = open_cluster(3);
    /* Keys served by node 0, in distinct slots (several keys per slot for the first ones). */
    enum { HOT = 40 };
    uint64_t ids[HOT];
    unsigned slots[HOT];
    size_t n = 0, n_slots = 0;
    for (uint64_t id = 0; n < HOT && id < 100000; id++) {
        unsigned s = slot_of(t, id);
        if (rc_owner(0, s) != 0)
            continue;
        bool seen = false;
        for (size_t k = 0; k < n_slots; k++)
            seen = seen || slots[k] == s;
        if (!seen)
            slots[n_slots++] = s;
        ids[n++] = id;
    }
    CHECK_UINT_EQ(n, HOT);
    for (size_t i = 0; i < n; i++)
        CHECK_OK(put_id(t, ids[i], 1000));
    load rl = {.t = t, .ids = ids, .n = HOT}, wl = {.t = w, .ids = ids, .n = HOT};
    pthread_t rt, wt;
    CHECK(pthread_create(&rt, NULL, reader, &rl) == 0);
    CHECK(pthread_create(&wt, NULL, writer, &wl) == 0);
    for (size_t k = 0; k < n_slots; k++)
        migrate_slot(slots[k], 0, 1 + (int)(k % 2));
    /* Both go round every key once more after the last move (a loaded machine may have starved
     * them meanwhile): at least 100 ms, at most 5 s. */
    uint64_t gets0 = atomic_load(&rl.gets), puts0 = atomic_load(&wl.puts), t0 = wall_ms();
    usleep(100000);
    while ((atomic_load(&rl.gets) < gets0 + 2 * HOT || atomic_load(&wl.puts) < puts0 + 2 * HOT) &&
           wall_ms() - t0 < 5000)
        usleep(5000);
    atomic_store(&rl.stop, true);
    atomic_store(&wl.stop, true);
    pthread_join(rt, NULL);
    pthread_join(wt, NULL);
    gencache__redis_tier *rt_ = (gencache__redis_tier *)t, *wt_ = (gencache__redis_tier *)w;
    fprintf(stderr, "%zu slots moved: %llu gets, %llu puts, %llu + %llu redirects followed\n",
            n_slots, (unsigned long long)atomic_load(&rl.gets),
            (unsigned long long)atomic_load(&wl.puts),
            (unsigned long long)atomic_load(&rt_->redirects),
            (unsigned long long)atomic_load(&wt_->redirects));
    CHECK_UINT_EQ(atomic_load(&rl.misses), 0);
    CHECK_UINT_EQ(errors(t), 0);
    CHECK_UINT_EQ(errors(w), 0);
    CHECK_UINT_EQ(atomic_load(&wt_->dropped_puts), 0);
    CHECK(atomic_load(&rt_->redirects) + atomic_load(&wt_->redirects) > 0);
    gencache_tier_stats rs, ws;
    t->ops->stats(t, &rs);
    w->ops->stats(w, &ws);
    CHECK_UINT_EQ(rs.redirects, atomic_load(&rt_->redirects));
    CHECK_UINT_EQ(ws.redirects, atomic_load(&wt_->redirects));
    CHECK(atomic_load(&rl.gets) > HOT);
    /* Every key now lives on its new node, and reads from there. */
    for (size_t i = 0; i < n; i++) {
        CHECK(rc_owner(0, slot_of(t, ids[i])) != 0);
        gencache__entry *e = NULL;
        CHECK_OK(get_id(t, ids[i], &e));
        tu_check_value(e, ids[i], 1000);
        gencache__entry_release(e);
    }
    t->ops->close(t);
    w->ops->close(w);
    rc_stop();
}

TEST_CASE(primary_killed_and_restarted)
{
    CHECK(rc_start() == 0);
    gencache__tier *t = open_cluster(3);
    enum { N = 300 };
    int owner[N];
    for (uint64_t id = 0; id < N; id++) {
        CHECK_OK(put_id(t, id, 512));
        owner[id] = rc_owner(0, slot_of(t, id));
        CHECK(owner[id] >= 0);
    }
    rc_kill(2);
    uint64_t hits = 0, dead_misses = 0;
    for (int round = 0; round < 2; round++) {
        for (uint64_t id = 0; id < N; id++) {
            gencache__entry *e = NULL;
            uint64_t t0 = wall_ms();
            int rc = get_id(t, id, &e);
            CHECK_UINT_LE(wall_ms() - t0, TIMEOUT_MS + SLACK_MS);
            if (owner[id] == 2) {
                CHECK_RC(rc, GENCACHE_ENOTFOUND);
                dead_misses++;
            } else {
                /* The other primaries keep serving their slots. */
                CHECK_OK(rc);
                gencache__entry_release(e);
                hits++;
            }
        }
    }
    CHECK(dead_misses > 0);
    CHECK(hits > 0);
    CHECK(errors(t) > 0);
    /* Puts to the dead node's slots are dropped, not errors. */
    for (uint64_t id = 0; id < N; id++)
        CHECK_OK(put_id(t, id, 512));
    /* Restarted (empty: no persistence), it serves its slots again. */
    CHECK(rc_spawn(2) == 0);
    CHECK(rc_wait_ok(10000) == 0);
    uint64_t id2 = 0;
    while (owner[id2] != 2)
        id2++;
    uint64_t t0 = wall_ms();
    bool back = false;
    while (!back && wall_ms() - t0 < 10000) {
        CHECK_OK(put_id(t, id2, 512));
        gencache__entry *e = NULL;
        back = get_id(t, id2, &e) == GENCACHE_OK;
        gencache__entry_release(e);
        if (!back)
            usleep(50000);
    }
    CHECK(back);
    fprintf(stderr, "hits again %llu ms after the restart\n", (unsigned long long)(wall_ms() - t0));
    t->ops->close(t);
    rc_stop();
}

/* ---- coherence: two caches (two nodes) sharing one Redis ---- */

#include "cache.h"

static gencache *open_node(const char *url)
{
    gencache_options o;
    gencache_options_init(&o);
    o.redis_url = url;
    o.redis_timeout_ms = TIMEOUT_MS;
    gencache *c = NULL;
    CHECK_OK(gencache_open(&c, &o));
    /* Wait for its subscriber, so the test does not race the first SUBSCRIBE. */
    uint64_t t0 = wall_ms();
    while (!gencache__redis_coherence_subscribed(c->coherence) && wall_ms() - t0 < 5000)
        usleep(5000);
    CHECK(gencache__redis_coherence_subscribed(c->coherence));
    return c;
}

static void node_put(gencache *c, uint64_t id, const char *tag)
{
    char key[GENCACHE__KEY_MAX + 1];
    tu_key(key, "result", id);
    gencache_meta m;
    gencache_meta_init(&m);
    m.tags = tag;
    char v[64];
    snprintf(v, sizeof v, "value %llu", (unsigned long long)id);
    CHECK_OK(gencache_put(c, key, v, strlen(v), &m));
}

/* GENCACHE_OK and the tier that answered, or the miss. */
static int node_get(gencache *c, uint64_t id, char tier[16])
{
    char key[GENCACHE__KEY_MAX + 1];
    tu_key(key, "result", id);
    gencache_handle *h = NULL;
    int rc = gencache_get(c, key, &h);
    if (rc == GENCACHE_OK) {
        const gencache_meta *m = gencache_handle_meta(h);
        snprintf(tier, 16, "%s", m && m->tier ? m->tier : "?");
        gencache_handle_release(h);
    }
    return rc;
}

/* Polls until node c misses id; the milliseconds it took, or -1 after limit_ms. */
static long ms_until_miss(gencache *c, uint64_t id, long limit_ms)
{
    uint64_t t0 = wall_ms();
    char tier[16];
    while ((long)(wall_ms() - t0) <= limit_ms) {
        if (node_get(c, id, tier) == GENCACHE_ENOTFOUND)
            return (long)(wall_ms() - t0);
        usleep(2000);
    }
    return -1;
}

/* Publishes what is not a message of ours on the invalidation channel of the server at port. */
static void publish_junk(int port)
{
    struct timeval tv = {2, 0};
    redisContext *rc = redisConnectWithTimeout("127.0.0.1", port, tv);
    CHECK(rc && !rc->err);
    static const char *const junk[] = {"", "GCI1", "GCI1aaaaaaaabbbbbbbb\xff\xff\xff\x7f",
                                       "GCI2aaaaaaaabbbbbbbb\xff\xff\xff\xff\xff\xff\xff\xff"
                                       "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"};
    for (size_t i = 0; i < sizeof junk / sizeof *junk; i++) {
        redisReply *r =
            redisCommand(rc, "PUBLISH gencache:v1:invalidate %b", junk[i], strlen(junk[i]));
        CHECK(r && r->type == REDIS_REPLY_INTEGER);
        freeReplyObject(r);
    }
    redisFree(rc);
}

/* junk_port: a server to publish malformed messages on first (0: none); the subscribers must
 * ignore them and keep working. */
static void coherence_case(const char *url, int junk_port)
{
    gencache *a = open_node(url), *b = open_node(url);
    char tier[16];
    if (junk_port)
        publish_junk(junk_port);
    for (uint64_t id = 0; id < 6; id++)
        node_put(a, id, id < 3 ? "red" : "blue");
    /* b reads them from the shared tier and keeps local copies. */
    for (uint64_t id = 0; id < 6; id++) {
        CHECK_OK(node_get(b, id, tier));
        CHECK_STR_EQ(tier, "redis");
        CHECK_OK(node_get(b, id, tier));
        CHECK_STR_EQ(tier, "mem");
    }
    /* A delete on a reaches b's memory within a second. */
    char key[GENCACHE__KEY_MAX + 1];
    tu_key(key, "result", 0);
    CHECK_OK(gencache_del(a, key));
    long ms = ms_until_miss(b, 0, 1000);
    CHECK(ms >= 0);
    fprintf(stderr, "delete seen by the other node after %ld ms\n", ms);
    /* So does an invalidation by tag; other entries stay. */
    gencache_filter f;
    gencache_filter_init(&f);
    f.tag = "red";
    uint64_t n = 0;
    CHECK_OK(gencache_invalidate(a, &f, &n));
    CHECK_UINT_EQ(n, 2);
    for (uint64_t id = 1; id < 3; id++)
        CHECK(ms_until_miss(b, id, 1000) >= 0);
    for (uint64_t id = 3; id < 6; id++) {
        CHECK_OK(node_get(b, id, tier));
        CHECK_STR_EQ(tier, "mem");
    }
    gencache_close(a);
    gencache_close(b);
}

TEST_CASE(invalidation_reaches_other_nodes)
{
    int port = rs_start();
    CHECK(port > 0);
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", port);
    coherence_case(url, port);
    rs_stop();
}

TEST_CASE(invalidation_reaches_other_nodes_on_cluster)
{
    CHECK(rc_start() == 0);
    char url[256];
    rc_url(url, sizeof url, 3);
    coherence_case(url, rc_nodes[1].port);
    rc_stop();
}

TEST_CASE(reconnect_drops_local_shared_copies)
{
    int port = rs_start();
    CHECK(port > 0);
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", port);
    gencache *a = open_node(url), *b = open_node(url);
    char tier[16];
    node_put(a, 1, NULL);
    CHECK_OK(node_get(b, 1, tier));
    CHECK_OK(node_get(b, 1, tier));
    CHECK_STR_EQ(tier, "mem");
    /* Redis restarts empty: whatever was invalidated meanwhile, b cannot have heard of it. */
    rs_stop();
    CHECK(rs_start_on(port) == 0);
    uint64_t t0 = wall_ms();
    while (gencache__redis_coherence_resyncs(b->coherence) == 0 && wall_ms() - t0 < 5000)
        usleep(5000);
    CHECK_UINT_EQ(gencache__redis_coherence_resyncs(b->coherence), 1);
    /* b dropped its local copy on subscribing again: the shared tier (empty now) decides. */
    CHECK_RC(node_get(b, 1, tier), GENCACHE_ENOTFOUND);
    /* a's first put after the restart may find a dead pooled connection (dropped): retry. */
    t0 = wall_ms();
    int rc = GENCACHE_ENOTFOUND;
    while (rc != GENCACHE_OK && wall_ms() - t0 < 3000) {
        node_put(a, 1, NULL);
        rc = node_get(b, 1, tier);
        if (rc != GENCACHE_OK)
            usleep(20000);
    }
    CHECK_OK(rc);
    CHECK_STR_EQ(tier, "redis");
    gencache_close(a);
    gencache_close(b);
    rs_stop();
}

/* ---- the Bloom filter in front of the shared tier ---- */

#include "tier/bloom.h"

TEST_CASE(bloom_filter)
{
    CHECK(gencache__bloom_new(0, 0.01) == NULL);
    CHECK(gencache__bloom_new(100, 0) == NULL);
    CHECK(gencache__bloom_new(100, 1) == NULL);
    enum { N = 100000 };
    gencache__bloom *b = gencache__bloom_new(N, 0.01);
    CHECK(b != NULL);
    for (uint64_t i = 0; i < N; i++)
        gencache__bloom_add(b, gencache__checksum(&i, sizeof i));
    for (uint64_t i = 0; i < N; i++)
        CHECK(gencache__bloom_maybe(b, gencache__checksum(&i, sizeof i)));
    uint64_t fp = 0;
    for (uint64_t i = N; i < 2 * N; i++)
        fp += gencache__bloom_maybe(b, gencache__checksum(&i, sizeof i));
    /* 1% asked; the optimum sizing gives about that at capacity. */
    CHECK(fp > N / 1000 && fp < N / 50);
    CHECK_UINT_EQ(gencache__bloom_hashes(b), 7);
    CHECK(gencache__bloom_bytes(b) < (size_t)N * 13 / 10); /* ~1.2 bytes per key at 1% */
    CHECK_UINT_EQ(gencache__bloom_adds(b), N);
    gencache__bloom_free(b);
}

static gencache *open_bloom_node(const char *url)
{
    gencache_options o;
    gencache_options_init(&o);
    o.redis_url = url;
    o.redis_timeout_ms = PATIENT_TIMEOUT_MS;
    o.redis_bloom_fp_rate = 0.01;
    o.redis_bloom_capacity = 10000;
    gencache *c = NULL;
    CHECK_OK(gencache_open(&c, &o));
    return c;
}

static gencache__redis_tier *shared_of(gencache *c)
{
    CHECK(c->shared_tier >= 0);
    return (gencache__redis_tier *)c->tiers[c->shared_tier];
}

static void wait_ready(gencache *c)
{
    uint64_t t0 = wall_ms();
    while (!atomic_load(&shared_of(c)->bloom_ready) && wall_ms() - t0 < 5000)
        usleep(2000);
    CHECK(atomic_load(&shared_of(c)->bloom_ready));
}

/* Waits (up to 5 s) until node c has resynced more than `before` times. */
static void wait_resynced(gencache *c, uint64_t before)
{
    uint64_t t0 = wall_ms();
    while (gencache__redis_coherence_resyncs(c->coherence) <= before && wall_ms() - t0 < 5000)
        usleep(2000);
    CHECK(gencache__redis_coherence_resyncs(c->coherence) > before);
}

/* How many of the keys of ids [from, to) filter r rules out. */
static unsigned ruled_out(gencache__redis_tier *r, uint64_t from, uint64_t to)
{
    unsigned n = 0;
    for (uint64_t id = from; id < to; id++) {
        char key[GENCACHE__KEY_MAX + 1];
        tu_key(key, "result", id);
        n += gencache__redis_bloom_rules_out(r, key);
    }
    return n;
}

/* Polls until node c finds id (from any tier); ms taken, or -1 after limit_ms. */
static long ms_until_hit(gencache *c, uint64_t id, long limit_ms)
{
    uint64_t t0 = wall_ms();
    char tier[16];
    while ((long)(wall_ms() - t0) <= limit_ms) {
        if (node_get(c, id, tier) == GENCACHE_OK)
            return (long)(wall_ms() - t0);
        usleep(1000);
    }
    return -1;
}

TEST_CASE(bloom_skips_round_trips_without_false_negatives)
{
    int port = rs_start();
    CHECK(port > 0);
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", port);
    gencache *a = open_bloom_node(url);
    for (uint64_t id = 1000; id < 1050; id++)
        node_put(a, id, NULL);
    /* b starts after those writes: its first rebuild (SCAN) must hold them. */
    gencache *b = open_bloom_node(url);
    wait_ready(a);
    wait_ready(b);
    char tier[16];
    for (uint64_t id = 1000; id < 1050; id++) {
        CHECK_OK(node_get(b, id, tier));
        CHECK_STR_EQ(tier, "redis");
    }
    /* Keys nobody wrote: misses, nearly all without a round trip. */
    gencache__redis_tier *rb = shared_of(b);
    uint64_t skips0 = atomic_load(&rb->bloom_skips);
    for (uint64_t id = 5000; id < 5200; id++)
        CHECK_RC(node_get(b, id, tier), GENCACHE_ENOTFOUND);
    CHECK(atomic_load(&rb->bloom_skips) - skips0 >= 190);
    /* The public statistics carry the count. */
    gencache_stats st = {.struct_size = sizeof st};
    CHECK_OK(gencache_stats_get(b, &st));
    const gencache_tier_stats *shared = NULL;
    for (uint32_t i = 0; i < st.n_tiers; i++)
        if (strcmp(st.tiers[i].tier, "redis") == 0)
            shared = &st.tiers[i];
    CHECK(shared != NULL);
    CHECK_UINT_EQ(shared->filter_skips, atomic_load(&rb->bloom_skips));
    /* Keys a writes now: b finds each once a's written message arrives (bound: 1 s). */
    long worst = 0;
    for (uint64_t id = 2000; id < 2100; id++) {
        node_put(a, id, NULL);
        long ms = ms_until_hit(b, id, 1000);
        CHECK(ms >= 0);
        worst = ms > worst ? ms : worst;
    }
    fprintf(stderr, "slowest key another node wrote found after %ld ms\n", worst);
    /* Redis restarts empty: the lost connection switches b's filter off, and the filter rebuilt
     * once b subscribed again rules out what Redis lost. */
    redisContext *rc = rs_client();
    CHECK(rc != NULL);
    char key[GENCACHE__KEY_MAX + 1], rkey[GENCACHE__REDIS_KEY_SIZE];
    tu_key(key, "result", 2000);
    gencache__redis_key(rb, rkey, key);
    redisReply *rep = redisCommand(rc, "DUMP %s", rkey);
    CHECK(rep && rep->type == REDIS_REPLY_STRING);
    redisFree(rc);
    uint64_t rebuilds = atomic_load(&rb->bloom_rebuilds);
    uint64_t resyncs = gencache__redis_coherence_resyncs(b->coherence);
    rs_stop();
    CHECK(rs_start_on(port) == 0);
    wait_resynced(b, resyncs);
    wait_ready(b);
    CHECK(atomic_load(&rb->bloom_rebuilds) > rebuilds);
    CHECK(ruled_out(rb, 2000, 2010) >= 8);
    /* A key written by something that does not publish (a plain RESTORE of a record a wrote):
     * that filter rules it out, until a lost subscription (the server stays up) turns the
     * filter off, and the rebuild after subscribing again holds the key. b's memory copy went
     * with the first resync: the key is found through Redis, never missed meanwhile. */
    rc = rs_client();
    CHECK(rc != NULL);
    redisReply *r2 = redisCommand(rc, "RESTORE %s 0 %b", rkey, rep->str, (size_t)rep->len);
    CHECK(r2 && r2->type == REDIS_REPLY_STATUS);
    freeReplyObject(r2);
    freeReplyObject(rep);
    CHECK(gencache__redis_bloom_rules_out(rb, key));
    rebuilds = atomic_load(&rb->bloom_rebuilds);
    resyncs = gencache__redis_coherence_resyncs(b->coherence);
    r2 = redisCommand(rc, "CLIENT KILL TYPE pubsub");
    CHECK(r2 && r2->type == REDIS_REPLY_INTEGER && r2->integer >= 1);
    freeReplyObject(r2);
    redisFree(rc);
    wait_resynced(b, resyncs);
    CHECK(ms_until_hit(b, 2000, 3000) >= 0);
    wait_ready(b);
    CHECK(atomic_load(&rb->bloom_rebuilds) > rebuilds);
    CHECK(!gencache__redis_bloom_rules_out(rb, key));
    CHECK(ruled_out(rb, 2001, 2011) >= 8);
    gencache_close(a);
    gencache_close(b);
    rs_stop();
}

/* ---- single flight across nodes ---- */

typedef struct flyer {
    gencache *c;
    const char *key;
    _Atomic int *computed;
    int kind, waited, rc;
    char value[32];
} flyer;

static void *fly(void *arg)
{
    flyer *f = arg;
    gencache_claim_result res;
    f->rc = gencache_claim(f->c, f->key, NULL, &res);
    f->kind = res.kind;
    f->waited = res.waited;
    if (f->rc != GENCACHE_OK)
        return NULL;
    if (res.kind == GENCACHE_CLAIM_LEASE) {
        atomic_fetch_add(f->computed, 1);
        usleep(200000); /* the upstream call */
        f->rc = gencache_lease_fulfil(res.lease, "generated", 9, NULL);
        snprintf(f->value, sizeof f->value, "generated");
        return NULL;
    }
    const void *data = gencache_handle_data(res.handle);
    size_t size = gencache_handle_size(res.handle);
    snprintf(f->value, sizeof f->value, "%.*s", (int)size, (const char *)data);
    gencache_handle_release(res.handle);
    return NULL;
}

static void single_flight_case(const char *url)
{
    enum { NODES = 3, PER_NODE = 10 };
    gencache *nodes[NODES];
    for (int i = 0; i < NODES; i++)
        nodes[i] = open_node(url);
    char key[GENCACHE__KEY_MAX + 1];
    tu_key(key, "result", 4242);
    _Atomic int computed = 0;
    flyer fs[NODES * PER_NODE];
    pthread_t th[NODES * PER_NODE];
    for (int i = 0; i < NODES * PER_NODE; i++) {
        fs[i] = (flyer){.c = nodes[i % NODES], .key = key, .computed = &computed};
        CHECK(pthread_create(&th[i], NULL, fly, &fs[i]) == 0);
    }
    for (int i = 0; i < NODES * PER_NODE; i++)
        pthread_join(th[i], NULL);
    CHECK_INT_EQ(atomic_load(&computed), 1);
    for (int i = 0; i < NODES * PER_NODE; i++) {
        CHECK_OK(fs[i].rc);
        CHECK_STR_EQ(fs[i].value, "generated");
    }
    /* The holder's shared lease is gone once its flight ended. */
    redisContext *rc = NULL;
    for (int i = 0; i < 50; i++) {
        char lkey[200];
        snprintf(lkey, sizeof lkey, "gencache:lease:%s%s%s",
                 shared_of(nodes[0])->cluster ? "{" : "", key,
                 shared_of(nodes[0])->cluster ? "}" : "");
        gencache__redis_tier *rt = shared_of(nodes[0]);
        gencache__redis_node *n =
            rt->cluster ? gencache__redis_node_for(rt, gencache__redis_slot(lkey, strlen(lkey)))
                        : rt->nodes[0];
        char host[64];
        int port = 0;
        sscanf(n->where, "%63[^:]:%d", host, &port);
        struct timeval tv = {2, 0};
        rc = redisConnectWithTimeout(host, port, tv);
        CHECK(rc && !rc->err);
        redisReply *r = redisCommand(rc, "EXISTS %s", lkey);
        CHECK(r && r->type == REDIS_REPLY_INTEGER);
        long long exists = r->integer;
        freeReplyObject(r);
        redisFree(rc);
        if (!exists)
            break;
        CHECK(i < 49);
        usleep(20000);
    }
    for (int i = 0; i < NODES; i++)
        gencache_close(nodes[i]);
}

TEST_CASE(single_flight_across_nodes)
{
    int port = rs_start();
    CHECK(port > 0);
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", port);
    single_flight_case(url);
    rs_stop();
}

TEST_CASE(single_flight_across_cluster_nodes)
{
    CHECK(rc_start() == 0);
    char url[256];
    rc_url(url, sizeof url, 3);
    single_flight_case(url);
    rc_stop();
}

TEST_CASE(dead_holder_lease_expires_and_passes_on)
{
    int port = rs_start();
    CHECK(port > 0);
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", port);
    gencache *a = open_node(url);
    char key[GENCACHE__KEY_MAX + 1];
    tu_key(key, "result", 77);
    /* A node took the lease and died: nobody renews it. */
    redisContext *rc = rs_client();
    CHECK(rc != NULL);
    redisReply *r = redisCommand(rc, "SET gencache:lease:%s deadbeef PX 400", key);
    CHECK(r && r->type == REDIS_REPLY_STATUS);
    freeReplyObject(r);
    redisFree(rc);
    gencache_claim_options o;
    gencache_claim_options_init(&o);
    o.wait_timeout_ms = 0;
    gencache_claim_result res;
    CHECK_RC(gencache_claim(a, key, &o, &res), GENCACHE_EBUSY);
    o.wait_timeout_ms = 5000;
    uint64_t t0 = wall_ms();
    CHECK_OK(gencache_claim(a, key, &o, &res));
    uint64_t waited = wall_ms() - t0;
    CHECK_INT_EQ(res.kind, GENCACHE_CLAIM_LEASE);
    CHECK_INT_EQ(res.waited, 1);
    CHECK(waited >= 200 && waited < 3000);
    CHECK_OK(gencache_lease_fulfil(res.lease, "v", 1, NULL));
    gencache_close(a);
    rs_stop();
}

/* The filter's rebuild walks every primary of a cluster and reads the hash-tagged keys. */
TEST_CASE(bloom_on_cluster)
{
    CHECK(rc_start() == 0);
    char url[256];
    rc_url(url, sizeof url, 3);
    gencache *a = open_bloom_node(url);
    for (uint64_t id = 3000; id < 3300; id++)
        node_put(a, id, NULL);
    /* All in Redis (a put the tier drops, after a timeout, still returns OK). */
    CHECK_UINT_EQ(atomic_load(&shared_of(a)->dropped_puts), 0);
    gencache *b = open_bloom_node(url);
    wait_ready(b);
    gencache__redis_tier *rb = shared_of(b);
    CHECK(atomic_load(&rb->bloom_rebuild_keys) >= 300);
    char tier[16];
    for (uint64_t id = 3000; id < 3300; id++) {
        CHECK_OK(node_get(b, id, tier));
        CHECK_STR_EQ(tier, "redis");
    }
    uint64_t skips0 = atomic_load(&rb->bloom_skips);
    for (uint64_t id = 8000; id < 8100; id++)
        CHECK_RC(node_get(b, id, tier), GENCACHE_ENOTFOUND);
    CHECK(atomic_load(&rb->bloom_skips) - skips0 >= 95);
    /* Written now, through another node: found once the message arrives. */
    node_put(a, 8000, NULL);
    CHECK(ms_until_hit(b, 8000, 1000) >= 0);
    gencache_close(a);
    gencache_close(b);
    rc_stop();
}

/* A primary dies and its replica takes over: its keys are read again, values intact, once the
 * tier has learnt the new slot map (a failing node asks for a map read). */
TEST_CASE(primary_failover_to_replica)
{
    CHECK(rc_start_with_replicas() == 0);
    gencache__tier *t = open_cluster(3);
    enum { N = 200 };
    int owner[N];
    for (uint64_t id = 0; id < N; id++) {
        CHECK_OK(put_id(t, id, 700));
        owner[id] = rc_owner(0, slot_of(t, id));
        CHECK(owner[id] >= 0);
    }
    /* Every write has reached the replicas. */
    uint64_t t0 = wall_ms();
    long long on_replicas = 0;
    while (on_replicas != N && wall_ms() - t0 < 5000) {
        on_replicas = 0;
        for (int i = 0; i < RC_MAX; i++) {
            if (rc_is_primary(i))
                continue;
            redisContext *c = rc_client(i);
            CHECK(c != NULL);
            redisReply *r = redisCommand(c, "DBSIZE");
            CHECK(r && r->type == REDIS_REPLY_INTEGER);
            on_replicas += r->integer;
            freeReplyObject(r);
            redisFree(c);
        }
        if (on_replicas != N)
            usleep(20000);
    }
    CHECK_INT_EQ(on_replicas, N);
    int victim = owner[0];
    rc_kill(victim);
    t0 = wall_ms();
    uint64_t misses = 0;
    bool all_back = false;
    while (!all_back && wall_ms() - t0 < 15000) {
        all_back = true;
        for (uint64_t id = 0; id < N; id++) {
            if (owner[id] != victim)
                continue;
            gencache__entry *e = NULL;
            uint64_t c0 = wall_ms();
            int rc = get_id(t, id, &e);
            CHECK_UINT_LE(wall_ms() - c0, TIMEOUT_MS + SLACK_MS);
            if (rc == GENCACHE_OK) {
                tu_check_value(e, id, 700);
                gencache__entry_release(e);
            } else {
                CHECK_RC(rc, GENCACHE_ENOTFOUND);
                misses++;
                all_back = false;
            }
        }
        if (!all_back)
            usleep(50000);
    }
    CHECK(all_back);
    CHECK(misses > 0); /* the failover took a while, and meanwhile those were misses */
    int other = (victim + 1) % RC_MAX;
    CHECK(rc_owner(other, slot_of(t, 0)) != victim);
    fprintf(stderr, "keys of the dead primary read again from its replica after %llu ms\n",
            (unsigned long long)(wall_ms() - t0));
    t->ops->close(t);
    rc_stop();
}
