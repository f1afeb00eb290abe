/*
 * test_reuse_nodes.c: the reuse records of shared layers reaching other caches through a real
 * redis-server: matches across nodes, tenant scope, delete and invalidation, a node opened
 * later, junk on the channel and in Redis, a record whose entry is gone, and a node's own
 * eviction keeping what Redis still holds.
 */
#include <pthread.h>
#include <unistd.h>

#include "reuse_util.h"

#include "redis_server.h"
#include "reuse/reuse.h"

static _Atomic unsigned share_warnings; /* "records are kept by the node" log lines */

static void note_log(void *ud, gencache_log_level level, const char *message)
{
    (void)ud;
    if (level == GENCACHE_LOG_WARN && strstr(message, "records are kept by the node"))
        share_warnings++;
}

static gencache *open_node_sized(const char *url, uint64_t mem_max_entries)
{
    gencache_options o;
    gencache_options_init(&o);
    o.redis_url = url;
    o.log_fn = note_log;
    o.mem_max_entries = mem_max_entries;
    gencache *c = NULL;
    CHECK_OK(gencache_open(&c, &o));
    make_perceptual(c, "image_latent");
    make_perceptual(c, "condition");
    gencache_reuse_stats st = {.struct_size = sizeof st};
    CHECK_OK(gencache_reuse_stats_get(c, &st)); /* the first use: the layers are known */
    return c;
}

static gencache *open_node(const char *url)
{
    return open_node_sized(url, 0);
}

/* Looks up until the answer is `want` (the records travel by pub/sub and write-back), at most
 * 3 s; returns the last answer. */
static gencache_match_kind lookup_until(gencache *c, const gencache_caller *who, const char *layer,
                                        const img_req *im, gencache_match_kind want,
                                        gencache_match *m, char *value)
{
    gencache_match_kind got = GENCACHE_MATCH_NONE;
    for (int i = 0; i < 300; i++) {
        got = lookup(c, who, layer, "m1", im, m, value);
        if (got == want)
            break;
        usleep(10000);
    }
    return got;
}

static long long redis_int(redisContext *rc, const char *cmd, const char *key)
{
    redisReply *rep = redisCommand(rc, "%s %s", cmd, key);
    CHECK(rep != NULL && rep->type == REDIS_REPLY_INTEGER);
    long long v = rep->integer;
    freeReplyObject(rep);
    return v;
}

/* Waits (3 s at most) until Redis holds the entry of key: a write-back layer's value arrives
 * after the store returns. */
static void wait_in_redis(redisContext *rc, const char *key)
{
    char rkey[160];
    snprintf(rkey, sizeof rkey, "gencache:v1:%s", key);
    for (int i = 0; i < 300 && redis_int(rc, "EXISTS", rkey) == 0; i++)
        usleep(10000);
    CHECK_INT_EQ(redis_int(rc, "EXISTS", rkey), 1);
}

/* Two caches on one real redis-server, and a plain connection to it. */
typedef struct two_nodes {
    char url[64];
    redisContext *rc;
    images im;
    gencache *a, *b;
} two_nodes;

static void two_nodes_open(two_nodes *t)
{
    int port = rs_start();
    CHECK(port > 0);
    snprintf(t->url, sizeof t->url, "redis://127.0.0.1:%d", port);
    t->rc = redisConnect("127.0.0.1", port);
    CHECK(t->rc != NULL && t->rc->err == 0);
    images_load(&t->im);
    t->a = open_node(t->url);
    t->b = open_node(t->url);
}

static void two_nodes_close(two_nodes *t)
{
    gencache_close(t->a);
    gencache_close(t->b);
    redisFree(t->rc);
    images_free(&t->im);
    rs_stop();
}

static gencache_caller tenant_caller(const char *tenant)
{
    gencache_caller c;
    gencache_caller_init(&c);
    c.tenant = tenant;
    return c;
}

TEST_CASE(records_shared_between_nodes)
{
    two_nodes t;
    two_nodes_open(&t);
    gencache *a = t.a, *b = t.b;
    redisContext *rc = t.rc;
    images im = t.im;
    char key[GENCACHE_KEY_MAX], value[64], hkey[160];
    gencache_match m;
    /* b never stored the wizard: a's record reaches it. */
    store(a, NULL, "image_latent", "m1", &im.o, "latent-of-wizard", key);
    CHECK_INT_EQ(
        lookup_until(b, NULL, "image_latent", &im.small, GENCACHE_MATCH_PERCEPTUAL, &m, value),
        GENCACHE_MATCH_PERCEPTUAL);
    CHECK_STR_EQ(value, "latent-of-wizard");
    CHECK_STR_EQ(m.key, key);
    CHECK_STR_EQ(m.of, im.o.digest);
    CHECK_INT_EQ(lookup(b, NULL, "image_latent", "m2", &im.small, &m, NULL), GENCACHE_MATCH_NONE);
    snprintf(hkey, sizeof hkey, "gencache:reuse:v1:{%s}", key);
    CHECK_INT_EQ(redis_int(rc, "EXISTS", hkey), 1);
    uint64_t heard, loaded, rebuilds;
    gencache__reuse_net_counts(gencache__reuse_net_of(b), &heard, &loaded, &rebuilds);
    CHECK_UINT_LE(1, heard + loaded);
    /* A tenant-scoped layer: another tenant's lookup never finds it, on any node. */
    gencache_caller acme = tenant_caller("acme"), globex = tenant_caller("globex");
    char ckey[GENCACHE_KEY_MAX];
    store(a, &acme, "condition", "m1", &im.o, "acme-cond", ckey);
    CHECK_INT_EQ(
        lookup_until(b, &acme, "condition", &im.bright, GENCACHE_MATCH_PERCEPTUAL, &m, value),
        GENCACHE_MATCH_PERCEPTUAL);
    CHECK_STR_EQ(value, "acme-cond");
    CHECK_INT_EQ(lookup(b, &globex, "condition", "m1", &im.bright, &m, NULL), GENCACHE_MATCH_NONE);
    CHECK_INT_EQ(lookup(b, NULL, "condition", "m1", &im.bright, &m, NULL), GENCACHE_MATCH_NONE);
    /* An invalidation by filter on a removes the records of what it removes from Redis too. */
    redisReply *keys = redisCommand(rc, "KEYS gencache:reuse:v1:{condition/*");
    CHECK(keys != NULL && keys->type == REDIS_REPLY_ARRAY);
    CHECK_UINT_EQ(keys->elements, 1);
    freeReplyObject(keys);
    gencache_filter f;
    gencache_filter_init(&f);
    f.layer = "condition";
    uint64_t removed = 0;
    CHECK_OK(gencache_invalidate(a, &f, &removed));
    CHECK_UINT_LE(1, removed);
    keys = redisCommand(rc, "KEYS gencache:reuse:v1:{condition/*");
    CHECK(keys != NULL && keys->type == REDIS_REPLY_ARRAY);
    CHECK_UINT_EQ(keys->elements, 0);
    freeReplyObject(keys);
    CHECK_INT_EQ(lookup_until(b, &acme, "condition", &im.bright, GENCACHE_MATCH_NONE, &m, NULL),
                 GENCACHE_MATCH_NONE);
    /* A delete on a removes the entry's records from Redis and from b. */
    CHECK_OK(gencache_del(a, key));
    CHECK_INT_EQ(redis_int(rc, "EXISTS", hkey), 0);
    CHECK_INT_EQ(lookup_until(b, NULL, "image_latent", &im.small, GENCACHE_MATCH_NONE, &m, NULL),
                 GENCACHE_MATCH_NONE);
    /* Junk on the channel and in Redis is ignored, by the subscriber and by the loader. */
    static const char *junk[] = {"PUBLISH gencache:v1:reuse junk",
                                 "HSET gencache:reuse:v1:{image_latent/00} 1 short at 5",
                                 "HSET gencache:reuse:v1:{image_latent/01} 9 x 1 y",
                                 "SET gencache:reuse:v1:{image_latent/02} not-a-hash"};
    for (size_t i = 0; i < sizeof junk / sizeof junk[0]; i++) {
        redisReply *rep = redisCommand(rc, junk[i]);
        CHECK(rep != NULL && rep->type != REDIS_REPLY_ERROR);
        freeReplyObject(rep);
    }
    /* A node that starts later reads what Redis holds. */
    store(a, NULL, "image_latent", "m1", &im.o, "wizard-again", key);
    wait_in_redis(rc, key);
    gencache *late = open_node(t.url);
    CHECK_INT_EQ(
        lookup_until(late, NULL, "image_latent", &im.small, GENCACHE_MATCH_PERCEPTUAL, &m, value),
        GENCACHE_MATCH_PERCEPTUAL);
    CHECK_STR_EQ(value, "wizard-again");
    for (int i = 0; i < 300; i++) { /* the match may come before the load has finished */
        gencache__reuse_net_counts(gencache__reuse_net_of(late), &heard, &loaded, &rebuilds);
        if (rebuilds)
            break;
        usleep(10000);
    }
    CHECK_UINT_EQ(loaded, 1); /* the wizard's image record: no junk */
    CHECK_UINT_LE(1, rebuilds);
    gencache_close(late);
    two_nodes_close(&t);
}

/* Waits (3 s at most) until c holds n image records. */
static void wait_images(gencache *c, uint64_t n)
{
    gencache_reuse_stats st = {.struct_size = sizeof st};
    for (int i = 0; i < 300; i++) {
        CHECK_OK(gencache_reuse_stats_get(c, &st));
        if (st.images == n)
            break;
        usleep(10000);
    }
    CHECK_UINT_EQ(st.images, n);
}

TEST_CASE(shared_record_whose_entry_is_gone_misses)
{
    two_nodes t;
    two_nodes_open(&t);
    gencache *a = t.a, *b = t.b;
    redisContext *rc = t.rc;
    images im = t.im;
    char key[GENCACHE_KEY_MAX], rkey[160], hkey[160];
    gencache_match m;
    store(a, NULL, "image_latent", "m1", &im.o, "wizard", key);
    wait_in_redis(rc, key);
    wait_images(b, 1);
    snprintf(rkey, sizeof rkey, "gencache:v1:%s", key);
    snprintf(hkey, sizeof hkey, "gencache:reuse:v1:{%s}", key);
    /* The entry leaves Redis behind the nodes' backs (maxmemory, a FLUSH of one key): b,
     * which holds no copy, misses; the record, young, stays for an entry that may yet come. */
    CHECK_INT_EQ(redis_int(rc, "DEL", rkey), 1);
    CHECK_INT_EQ(lookup(b, NULL, "image_latent", "m1", &im.small, &m, NULL), GENCACHE_MATCH_NONE);
    CHECK_INT_EQ(redis_int(rc, "EXISTS", hkey), 1);
    wait_images(b, 1);
    /* Once older than its entry could take to arrive, the next miss deletes it. */
    redisReply *rep = redisCommand(rc, "HSET %s at 0", hkey);
    CHECK(rep != NULL);
    freeReplyObject(rep);
    CHECK_INT_EQ(lookup(b, NULL, "image_latent", "m1", &im.small, &m, NULL), GENCACHE_MATCH_NONE);
    CHECK_INT_EQ(redis_int(rc, "EXISTS", hkey), 0);
    wait_images(b, 0);
    /* The record expires with its entry. */
    gencache_request *req = request(a, "m1", &im.bright);
    gencache_meta meta;
    gencache_meta_init(&meta);
    meta.ttl_ms = 60000;
    CHECK_OK(gencache_store(a, NULL, req, "image_latent", "b", 1, &meta, key));
    gencache_request_free(req);
    snprintf(hkey, sizeof hkey, "gencache:reuse:v1:{%s}", key);
    long long pttl = redis_int(rc, "PTTL", hkey);
    CHECK(pttl > 50000 && pttl <= 60000);
    /* Redis gone: a lookup still answers (a miss), never an error; stores succeed, their
     * records stay with a, and the log says so once. */
    rs_stop();
    CHECK_INT_EQ(lookup(b, NULL, "image_latent", "m1", &im.small, &m, NULL), GENCACHE_MATCH_NONE);
    unsigned before = share_warnings;
    for (int i = 0; i < 5; i++)
        store(a, NULL, "image_latent", i % 2 ? "m7" : "m8", &im.o, "while away", key);
    CHECK_UINT_EQ(share_warnings - before, 1);
    CHECK_INT_EQ(lookup(a, NULL, "image_latent", "m7", &im.small, &m, NULL),
                 GENCACHE_MATCH_PERCEPTUAL);
    two_nodes_close(&t);
}

TEST_CASE(own_record_outlives_local_eviction)
{
    int port = rs_start();
    CHECK(port > 0);
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", port);
    redisContext *rc = redisConnect("127.0.0.1", port);
    CHECK(rc != NULL && rc->err == 0);
    images im;
    images_load(&im);
    gencache *a = open_node_sized(url, 4);
    char key[GENCACHE_KEY_MAX];
    store(a, NULL, "image_latent", "m1", &im.o, "wizard", key);
    wait_in_redis(rc, key);
    /* Memory lets the wizard go; Redis still holds it, and so the record stays. */
    unsigned char v[64] = {0};
    bool left = false;
    for (int i = 0; i < 4096 && !left; i++) {
        char k[GENCACHE_KEY_MAX];
        snprintf(k, sizeof k, "result/%064x", i);
        CHECK_OK(gencache_put(a, k, v, sizeof v, NULL));
        gencache_handle *p = NULL;
        CHECK_OK(gencache_peek(a, key, &p)); /* a peek promotes nothing */
        left = strcmp(gencache_handle_meta(p)->tier, "mem") != 0;
        gencache_handle_release(p);
    }
    CHECK(left);
    gencache_reuse_stats rs = {.struct_size = sizeof rs};
    CHECK_OK(gencache_reuse_stats_get(a, &rs));
    CHECK_UINT_EQ(rs.images, 1);
    gencache_request *req = request(a, "m1", &im.small);
    gencache_handle *h = NULL;
    gencache_match m = {.struct_size = sizeof m};
    CHECK_OK(gencache_lookup(a, NULL, req, "image_latent", &h, &m));
    CHECK_INT_EQ(m.kind, GENCACHE_MATCH_PERCEPTUAL);
    CHECK_STR_EQ(gencache_handle_meta(h)->tier, "redis"); /* it had left memory */
    CHECK_MEM_EQ(gencache_handle_data(h), "wizard", 6);
    gencache_handle_release(h);
    gencache_request_free(req);
    gencache_close(a);
    redisFree(rc);
    images_free(&im);
    rs_stop();
}
