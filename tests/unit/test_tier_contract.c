/*
 * test_tier_contract.c: the contract of gencache__tier_ops (src/internal.h) as one list of cases
 * run against every tier: mem, disk (a temporary directory) and redis (a real redis-server on a
 * free loopback port). Each (tier, case) pair is its own CTest test,
 * unit.tier_contract.<tier>_<case>, and every_case_runs_on_every_tier fails when a pair is
 * missing. Where a tier legitimately differs (zero copy, TTLs judged by the backend's clock,
 * counters a shared tier cannot keep) the case asks the tier's capability and asserts what that
 * tier does instead: no clause is skipped silently.
 */
#define _GNU_SOURCE
#include <limits.h>
#include <pthread.h>

#include "redis_server.h"
#include "tier/disk.h"
#include "tier/redis.h"
#include "tier_util.h"

#define BIG        (96u * 1024u + 4u) /* over the disk fixture's inline limit: a value file */
#define INLINE_MAX (64u * 1024u)
#define MAX_BYTES  (64ull << 20)
#define HOUR_MS    3600000ull

/* ---- fixtures: one per tier ---- */

typedef struct fixture fixture;

typedef struct tier_kind {
    const char *name;
    void (*open)(fixture *f);
    /* Damages the stored value of key behind the tier's back. */
    void (*corrupt)(fixture *f, const char *key);
    /* Frees what open made besides the tier (which the runner closes first). */
    void (*cleanup)(fixture *f);
} tier_kind;

struct fixture {
    const tier_kind *kind;
    gencache__tier *t;
    tu_evictions ev;
    uint64_t now;        /* the clock the case starts at */
    char *dir;           /* disk */
    redisContext *redis; /* redis: a direct connection to the server */
};

static uint64_t wall_ms(void)
{
    return gencache__clock_realtime_ms(NULL);
}

static void watch_evictions(fixture *f)
{
    f->t->on_evict = tu_on_evict;
    f->t->on_evict_userdata = &f->ev;
}

/* mem: with verify_reads, the only configuration in which it promises never to return a damaged
 * value (without it a hit costs no pass over the bytes, and damage in RAM goes unseen). */
static void mem_open(fixture *f)
{
    gencache__mem_options o = {.max_bytes = MAX_BYTES, .shards = 4, .verify_reads = true};
    CHECK_OK(gencache__mem_tier_open(&o, &f->t));
    f->now = 1000000;
}

static void mem_corrupt(fixture *f, const char *key)
{
    /* Zero copy: the entry a peek returns is the stored one. */
    gencache__entry *e = NULL;
    CHECK_OK(f->t->ops->get(f->t, key, tu_hash(key), f->now, false, &e));
    CHECK(e->size > 0);
    e->value[e->size / 2] ^= 0x5a;
    gencache__entry_release(e);
}

static void no_cleanup(fixture *f)
{
    (void)f;
}

static void disk_open(fixture *f)
{
    f->dir = tu_tmpdir("contract");
    gencache__disk_options o = {.path = f->dir, .max_bytes = MAX_BYTES};
    gencache__disk_tuning tune;
    gencache__disk_tuning_init(&tune);
    tune.inline_max = INLINE_MAX; /* both value layouts: inline in LMDB and a file */
    tune.durable = false;         /* durability is test_disk_crash.c's topic */
    CHECK_OK(gencache__disk_tier_open_ex(&o, &tune, &f->t));
    f->now = 1000000;
}

static void flip_file_byte(const char *path, off_t off)
{
    FILE *fp = fopen(path, "r+b");
    CHECK(fp != NULL);
    CHECK_INT_EQ(fseeko(fp, off, SEEK_SET), 0);
    int c = fgetc(fp);
    CHECK(c != EOF);
    CHECK_INT_EQ(fseeko(fp, off, SEEK_SET), 0);
    CHECK(fputc(c ^ 0x5a, fp) != EOF);
    CHECK_INT_EQ(fclose(fp), 0);
}

static void disk_corrupt(fixture *f, const char *key)
{
    gencache__disk_tier *d = (gencache__disk_tier *)f->t;
    gencache__entry *e = NULL;
    CHECK_OK(f->t->ops->get(f->t, key, tu_hash(key), f->now, false, &e));
    CHECK(e->size > 0);
    if (e->size > INLINE_MAX) {
        char path[PATH_MAX];
        CHECK_OK(gencache__disk_blob_of(d, key, path, sizeof path));
        flip_file_byte(path, (off_t)(e->size / 2));
    } else {
        /* The inline value, rewritten in the tier's own LMDB environment. */
        MDB_txn *txn;
        CHECK_INT_EQ(mdb_txn_begin(d->env, NULL, 0, &txn), MDB_SUCCESS);
        MDB_val k = {strlen(key), (void *)key}, v;
        CHECK_INT_EQ(mdb_get(txn, d->vals, &k, &v), MDB_SUCCESS);
        CHECK_UINT_EQ(v.mv_size, e->size);
        unsigned char *copy = malloc(v.mv_size);
        memcpy(copy, v.mv_data, v.mv_size);
        copy[v.mv_size / 2] ^= 0x5a;
        MDB_val nv = {v.mv_size, copy};
        CHECK_INT_EQ(mdb_put(txn, d->vals, &k, &nv, 0), MDB_SUCCESS);
        CHECK_INT_EQ(mdb_txn_commit(txn), MDB_SUCCESS);
        free(copy);
    }
    gencache__entry_release(e);
}

static void disk_cleanup(fixture *f)
{
    tu_rm_rf(f->dir);
    free(f->dir);
}

static void redis_open(fixture *f)
{
    int port = rs_start();
    CHECK(port > 0);
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", port);
    /* A generous timeout: these cases are about the contract, not about a slow Redis. */
    gencache__redis_options o = {.url = url, .timeout_ms = 2000};
    CHECK_OK(gencache__redis_tier_open(&o, &f->t));
    f->redis = rs_client();
    CHECK(f->redis != NULL);
    f->now = wall_ms(); /* Redis's clock decides expiry: start the case on the real one */
}

static void redis_corrupt(fixture *f, const char *key)
{
    char rkey[160];
    snprintf(rkey, sizeof rkey, GENCACHE__REDIS_PREFIX "%s", key);
    redisReply *r = redisCommand(f->redis, "STRLEN %s", rkey);
    CHECK(r && r->type == REDIS_REPLY_INTEGER && r->integer > 0);
    long long last = r->integer - 1; /* the value is the tail of the string */
    freeReplyObject(r);
    r = redisCommand(f->redis, "GETRANGE %s %lld %lld", rkey, last, last);
    CHECK(r && r->type == REDIS_REPLY_STRING && r->len == 1);
    char b = (char)(r->str[0] ^ 0x5a);
    freeReplyObject(r);
    r = redisCommand(f->redis, "SETRANGE %s %lld %b", rkey, last, &b, (size_t)1);
    CHECK(r && r->type == REDIS_REPLY_INTEGER);
    freeReplyObject(r);
}

static void redis_cleanup(fixture *f)
{
    if (f->redis)
        redisFree(f->redis);
    rs_stop();
}

static const tier_kind tier_mem = {"mem", mem_open, mem_corrupt, no_cleanup};
static const tier_kind tier_disk = {"disk", disk_open, disk_corrupt, disk_cleanup};
static const tier_kind tier_redis = {"redis", redis_open, redis_corrupt, redis_cleanup};

/* ---- capabilities: where tiers legitimately differ ---- */

/* The tier returns the stored entry itself (mem); the others build a copy per get. */
static bool zero_copy(const fixture *f)
{
    return f->t->ops->caps & GENCACHE__TIER_ZERO_COPY;
}

/* The backend keeps the TTL and judges expiry on its own clock (redis): such a tier has no
 * expire operation, and now_ms only dates the expiry it reports. */
static bool backend_ttl(const fixture *f)
{
    return f->t->ops->expire == NULL;
}

/* A shared tier (redis) is not this node's: it keeps no entry or byte counts (a scan would cost
 * too much) and no access counts (a write per read); a hit only re-arms a sliding TTL. */
static bool shared(const fixture *f)
{
    return f->t->ops->caps & GENCACHE__TIER_SHARED;
}

/* ---- helpers ---- */

static void key_of(char *key, uint64_t id)
{
    tu_key(key, "result", id);
}

static gencache__entry *make(fixture *f, tu_spec s)
{
    if (!s.now_ms)
        s.now_ms = f->now;
    return tu_entry(&s);
}

static void put(fixture *f, tu_spec s, uint64_t now)
{
    gencache__entry *e = make(f, s);
    CHECK_OK(f->t->ops->put(f->t, e, now));
    gencache__entry_release(e);
}

static int get(fixture *f, uint64_t id, uint64_t now, bool touch, gencache__entry **out)
{
    char key[GENCACHE__KEY_MAX + 1];
    key_of(key, id);
    return f->t->ops->get(f->t, key, tu_hash(key), now, touch, out);
}

static gencache__entry *expect_hit(fixture *f, uint64_t id, size_t size, uint64_t now, bool touch)
{
    gencache__entry *e = NULL;
    CHECK_OK(get(f, id, now, touch, &e));
    tu_check_value(e, id, size);
    char key[GENCACHE__KEY_MAX + 1];
    key_of(key, id);
    CHECK_STR_EQ(e->key, key);
    return e;
}

static void expect_miss(fixture *f, uint64_t id, uint64_t now, bool touch)
{
    gencache__entry *e = (gencache__entry *)1;
    CHECK_RC(get(f, id, now, touch, &e), GENCACHE_ENOTFOUND);
    CHECK(e == NULL);
}

static int del(fixture *f, uint64_t id)
{
    char key[GENCACHE__KEY_MAX + 1];
    key_of(key, id);
    return f->t->ops->del(f->t, key, tu_hash(key));
}

static gencache_tier_stats stats(fixture *f)
{
    gencache_tier_stats st;
    memset(&st, 0xff, sizeof st); /* every field must be written */
    f->t->ops->stats(f->t, &st);
    return st;
}

/* Entries the tier counts: exact where it keeps counts, 0 where it cannot (shared). */
static void expect_entries(fixture *f, uint64_t n)
{
    gencache_tier_stats st = stats(f);
    CHECK_UINT_EQ(st.entries, shared(f) ? 0 : n);
}

/* ---- the contract ---- */

/* put then get returns the same bytes and the same metadata. */
static void put_get_roundtrip(fixture *f)
{
    static const size_t sizes[] = {0, 1, 4096, BIG};
    const uint64_t t0 = f->now;
    gencache__entry *stored[4];
    for (unsigned i = 0; i < 4; i++) {
        stored[i] = make(f, (tu_spec){.id = i,
                                      .size = sizes[i],
                                      .ttl_ms = i == 2 ? 0 : HOUR_MS,
                                      .tenant = i % 2 ? "acme" : NULL,
                                      .model = "wan2.2",
                                      .tags = "a,b",
                                      .ctype = "video/mp4"});
        CHECK_OK(f->t->ops->put(f->t, stored[i], t0));
    }
    for (unsigned i = 0; i < 4; i++) {
        uint64_t now = t0 + 10;
        gencache__entry *e = expect_hit(f, i, sizes[i], now, true);
        /* Zero copy (mem) hands out the stored entry; the others a copy of it. */
        if (zero_copy(f))
            CHECK(e == stored[i]);
        else
            CHECK(e != stored[i] && e->value != stored[i]->value);
        CHECK_STR_EQ(e->layer_name, "result");
        CHECK_INT_EQ(e->layer, 0);
        if (i % 2)
            CHECK_STR_EQ(e->tenant, "acme");
        else
            CHECK(e->tenant == NULL);
        CHECK_STR_EQ(e->model, "wan2.2");
        CHECK_STR_EQ(e->tags, "a,b");
        CHECK_STR_EQ(e->content_type, "video/mp4");
        CHECK_INT_EQ(e->dtype, stored[i]->dtype);
        CHECK_UINT_EQ(e->ndim, stored[i]->ndim);
        for (uint32_t d = 0; d < e->ndim; d++)
            CHECK_INT_EQ(e->shape[d], stored[i]->shape[d]);
        if (sizes[i] == 4096) {
            CHECK_INT_EQ(e->dtype, GENCACHE_DTYPE_F32);
            CHECK_UINT_EQ(e->ndim, 2);
            CHECK_INT_EQ(e->shape[1], 1024);
        }
        CHECK_UINT_EQ(e->cost_ms, 100 + i);
        CHECK_UINT_EQ(e->created_ms, t0);
        CHECK_UINT_EQ(e->ttl_ms, i == 2 ? 0 : HOUR_MS);
        CHECK_UINT_EQ(e->checksum, stored[i]->checksum);
        CHECK(!e->pinned);
        uint64_t exp = atomic_load(&e->expires_ms);
        if (i == 2) {
            CHECK_UINT_EQ(exp, 0);
        } else if (backend_ttl(f)) {
            /* What Redis says is left, dated on the clock passed to get. */
            CHECK_UINT_LE(exp, now + HOUR_MS);
            CHECK_UINT_LE(now + HOUR_MS - 5000, exp);
        } else {
            CHECK_UINT_EQ(exp, t0 + HOUR_MS);
        }
        CHECK_UINT_EQ(atomic_load(&e->hits), 1);
        CHECK_UINT_EQ(atomic_load(&e->last_access_ms), now);
        gencache__entry_release(e);
    }
    for (unsigned i = 0; i < 4; i++)
        gencache__entry_release(stored[i]);
    expect_entries(f, 4);
}

/* A put replaces the entry of the same key; what was read before stays valid and unchanged. */
static void put_replaces_same_key(fixture *f)
{
    static const size_t sizes[] = {100, BIG, 40};
    static const char *const tags[] = {"v0", "v1", "v2"};
    gencache__entry *held[3];
    for (unsigned v = 0; v < 3; v++) {
        gencache__entry *e = make(f, (tu_spec){.id = 7, .size = sizes[v], .tags = tags[v]});
        tu_fill(e->value, e->size, 7 + 1000 * v); /* same key, other bytes */
        e->checksum = gencache__checksum(e->value, e->size);
        CHECK_OK(f->t->ops->put(f->t, e, f->now + v));
        gencache__entry_release(e);
        held[v] = NULL;
        CHECK_OK(get(f, 7, f->now + v, false, &held[v]));
        CHECK_UINT_EQ(held[v]->size, sizes[v]);
        CHECK_STR_EQ(held[v]->tags, tags[v]);
        expect_entries(f, 1);
    }
    /* The older reads outlived their replacement (for mem: the very entries the table let go). */
    for (unsigned v = 0; v < 3; v++) {
        tu_check_value(held[v], 7 + 1000 * v, sizes[v]);
        CHECK_STR_EQ(held[v]->tags, tags[v]);
        CHECK_UINT_EQ(held[v]->checksum, gencache__checksum(held[v]->value, held[v]->size));
        gencache__entry_release(held[v]);
    }
    gencache__entry *e = NULL;
    CHECK_OK(get(f, 7, f->now + 5, true, &e));
    tu_check_value(e, 7 + 2000, 40);
    gencache__entry_release(e);
    CHECK_OK(del(f, 7));
    expect_miss(f, 7, f->now + 5, true);
}

/* del removes exactly its key; a second del, or a del of a key never stored, is ENOTFOUND. */
static void del_removes_then_enotfound(fixture *f)
{
    put(f, (tu_spec){.id = 1, .size = 64}, f->now);
    put(f, (tu_spec){.id = 2, .size = BIG}, f->now);
    put(f, (tu_spec){.id = 3, .size = 64}, f->now);
    CHECK_OK(del(f, 1));
    expect_miss(f, 1, f->now, true);
    CHECK_RC(del(f, 1), GENCACHE_ENOTFOUND);
    CHECK_OK(del(f, 2));
    expect_miss(f, 2, f->now, false);
    CHECK_RC(del(f, 2), GENCACHE_ENOTFOUND);
    CHECK_RC(del(f, 99), GENCACHE_ENOTFOUND);
    gencache__entry_release(expect_hit(f, 3, 64, f->now, true));
    expect_entries(f, 1);
    /* A deleted key can be stored again. */
    put(f, (tu_spec){.id = 1, .size = 64}, f->now);
    gencache__entry_release(expect_hit(f, 1, 64, f->now, true));
}

/* A get of a key the tier never held is ENOTFOUND with *out NULL, peek or not. */
static void get_missing_is_enotfound(fixture *f)
{
    expect_miss(f, 42, f->now, true);
    expect_miss(f, 42, f->now, false);
    put(f, (tu_spec){.id = 1, .size = 10}, f->now);
    expect_miss(f, 42, f->now, true);
    /* Another layer's key with the same hex part is another key. */
    char key[GENCACHE__KEY_MAX + 1];
    tu_key(key, "image_latent", 1);
    gencache__entry *e = (gencache__entry *)1;
    CHECK_RC(f->t->ops->get(f->t, key, tu_hash(key), f->now, true, &e), GENCACHE_ENOTFOUND);
    CHECK(e == NULL);
    gencache_tier_stats st = stats(f);
    CHECK_UINT_EQ(st.backend_errors, 0);
}

/* An expired entry is a miss. Local tiers judge on the now_ms passed in; a backend_ttl tier
 * (redis) on its own clock, so there now_ms cannot make an entry expire and real time must. */
static void expired_is_miss(fixture *f)
{
    const uint64_t t0 = f->now;
    if (!backend_ttl(f)) {
        put(f, (tu_spec){.id = 1, .size = 100, .ttl_ms = 500}, t0);
        put(f, (tu_spec){.id = 3, .size = 100}, t0); /* no expiry */
        gencache__entry_release(expect_hit(f, 1, 100, t0 + 499, false));
        expect_miss(f, 1, t0 + 500, false);
        /* It was removed, not hidden: an earlier clock does not bring it back. */
        expect_miss(f, 1, t0, true);
        gencache_tier_stats st = stats(f);
        CHECK_UINT_EQ(st.evictions_expired, 1);
        CHECK_INT_EQ(f->ev.n[GENCACHE__EVICT_EXPIRED], 1);
        gencache__entry_release(expect_hit(f, 3, 100, t0 + 10 * 365 * 24 * HOUR_MS, true));
        /* A put of an entry already expired at now_ms is never served. */
        gencache__entry *e = make(f, (tu_spec){.id = 2, .size = 100, .ttl_ms = 500});
        CHECK_OK(f->t->ops->put(f->t, e, t0 + 600));
        gencache__entry_release(e);
        expect_miss(f, 2, t0 + 600, true);
        expect_entries(f, 1);
        return;
    }
    put(f, (tu_spec){.id = 1, .size = 100, .ttl_ms = 300}, t0);
    put(f, (tu_spec){.id = 3, .size = 100}, t0);
    gencache__entry_release(expect_hit(f, 1, 100, t0, false));
    /* now_ms only dates the reported expiry: ten years on, Redis still holds the entry. */
    gencache__entry *e = expect_hit(f, 1, 100, t0 + 10 * 365 * 24 * HOUR_MS, false);
    CHECK(atomic_load(&e->expires_ms) > t0 + 10 * 365 * 24 * HOUR_MS);
    gencache__entry_release(e);
    while (wall_ms() < t0 + 400)
        usleep(10000);
    expect_miss(f, 1, wall_ms(), false);
    expect_miss(f, 1, t0, true);
    e = expect_hit(f, 3, 100, wall_ms(), true);
    CHECK_UINT_EQ(atomic_load(&e->expires_ms), 0);
    gencache__entry_release(e);
    /* A put of an entry already expired at now_ms is never served. */
    e = make(f, (tu_spec){.id = 2, .size = 100, .ttl_ms = 500, .now_ms = t0 - 1000});
    CHECK_OK(f->t->ops->put(f->t, e, wall_ms()));
    gencache__entry_release(e);
    expect_miss(f, 2, wall_ms(), true);
}

/* A peek (touch false) changes nothing a later get can observe: hits, last access, and a sliding
 * expiry; a touching get does change them, so the peek's restraint is what is measured. */
static void peek_changes_nothing(fixture *f)
{
    const uint64_t t0 = f->now;
    if (!backend_ttl(f)) {
        put(f, (tu_spec){.id = 1, .size = 100, .ttl_ms = 1000, .sliding = true}, t0);
        put(f, (tu_spec){.id = 2, .size = 100, .ttl_ms = 1000, .sliding = true}, t0);
        for (uint64_t at = 400; at <= 800; at += 400) {
            gencache__entry *e = expect_hit(f, 1, 100, t0 + at, false);
            CHECK_UINT_EQ(atomic_load(&e->hits), 0);
            CHECK_UINT_EQ(atomic_load(&e->last_access_ms), t0);
            CHECK_UINT_EQ(atomic_load(&e->expires_ms), t0 + 1000);
            gencache__entry_release(e);
        }
        gencache__entry *e = expect_hit(f, 2, 100, t0 + 800, true);
        CHECK_UINT_EQ(atomic_load(&e->hits), 1);
        CHECK_UINT_EQ(atomic_load(&e->expires_ms), t0 + 1800);
        gencache__entry_release(e);
        e = expect_hit(f, 1, 100, t0 + 999, false);
        CHECK_UINT_EQ(atomic_load(&e->hits), 0);
        CHECK_UINT_EQ(atomic_load(&e->last_access_ms), t0);
        gencache__entry_release(e);
        expect_miss(f, 1, t0 + 1000, false); /* the peeks never slid it */
        e = expect_hit(f, 2, 100, t0 + 1000, false);
        CHECK_UINT_EQ(atomic_load(&e->hits), 1);
        CHECK_UINT_EQ(atomic_load(&e->last_access_ms), t0 + 800);
        CHECK_UINT_EQ(atomic_load(&e->expires_ms), t0 + 1800);
        gencache__entry_release(e);
        return;
    }
    /* Redis: the expiry a get reports is now_ms + PTTL; with now_ms held at t0, a peek that left
     * the TTL alone reports an ever earlier expiry, a touching get a re-armed one. */
    put(f, (tu_spec){.id = 1, .size = 100, .ttl_ms = 5000, .sliding = true}, t0);
    gencache__entry *e = expect_hit(f, 1, 100, t0, false);
    uint64_t first = atomic_load(&e->expires_ms);
    CHECK_UINT_EQ(atomic_load(&e->hits), 0);
    CHECK_UINT_EQ(atomic_load(&e->last_access_ms), t0);
    gencache__entry_release(e);
    usleep(300000);
    e = expect_hit(f, 1, 100, t0, false);
    uint64_t second = atomic_load(&e->expires_ms);
    CHECK_UINT_LE(second + 250, first);
    CHECK_UINT_EQ(atomic_load(&e->hits), 0);
    CHECK_UINT_EQ(atomic_load(&e->last_access_ms), t0);
    gencache__entry_release(e);
    e = expect_hit(f, 1, 100, t0, true);
    CHECK_UINT_LE(second + 250, atomic_load(&e->expires_ms));
    CHECK_UINT_EQ(atomic_load(&e->hits), 1); /* counted in the copy handed out ... */
    gencache__entry_release(e);
    e = expect_hit(f, 1, 100, t0, false);
    CHECK_UINT_EQ(atomic_load(&e->hits), 0); /* ... not in Redis (see shared()) */
    CHECK_UINT_LE(second + 250, atomic_load(&e->expires_ms));
    gencache__entry_release(e);
    CHECK(shared(f));
}

typedef struct pred_state {
    uint64_t calls;
    uint64_t with_metadata; /* calls that saw the key and tags */
} pred_state;

static bool drop_tagged(void *ud, const gencache__entry *e)
{
    pred_state *p = ud;
    p->calls++;
    if (e->key && e->tags && e->tenant && e->size > 0)
        p->with_metadata++;
    return gencache__entry_has_tag(e, "drop");
}

static bool never(void *ud, const gencache__entry *e)
{
    (void)e;
    ((pred_state *)ud)->calls++;
    return false;
}

/* remove_if removes exactly the entries the predicate accepts and counts them. */
static void remove_if_counts_matches(fixture *f)
{
    for (uint64_t i = 0; i < 10; i++)
        put(f,
            (tu_spec){.id = i,
                      .size = i == 9 ? BIG : 100 + i,
                      .tags = i % 3 == 0 ? "x,drop" : "keep",
                      .tenant = i % 2 ? "t1" : "t2"},
            f->now);
    pred_state p = {0};
    uint64_t n = 99;
    CHECK_OK(f->t->ops->remove_if(f->t, never, &p, &n));
    CHECK_UINT_EQ(n, 0);
    CHECK_UINT_LE(10, p.calls);
    expect_entries(f, 10);
    p = (pred_state){0};
    CHECK_OK(f->t->ops->remove_if(f->t, drop_tagged, &p, &n));
    CHECK_UINT_EQ(n, 4); /* 0, 3, 6, 9 */
    CHECK_UINT_LE(10, p.calls);
    CHECK_UINT_LE(10, p.with_metadata);
    for (uint64_t i = 0; i < 10; i++) {
        if (i % 3 == 0)
            expect_miss(f, i, f->now, false);
        else
            gencache__entry_release(expect_hit(f, i, 100 + i, f->now, false));
    }
    expect_entries(f, 6);
    CHECK_OK(f->t->ops->remove_if(f->t, drop_tagged, &p, &n));
    CHECK_UINT_EQ(n, 0);
    /* Removal is not eviction: nothing is reported as evicted. */
    for (int r = 0; r < 3; r++)
        CHECK_INT_EQ(f->ev.n[r], 0);
    gencache_tier_stats st = stats(f);
    CHECK_UINT_EQ(st.evictions_capacity + st.evictions_expired + st.evictions_corrupt, 0);
}

/* stats name the tier and count what it holds (a shared tier: nothing, by design). */
static void stats_report_name_and_counts(fixture *f)
{
    gencache_tier_stats st = stats(f);
    CHECK_STR_EQ(st.tier, f->t->ops->name);
    CHECK_STR_EQ(st.tier, f->kind->name);
    CHECK_UINT_EQ(st.entries, 0);
    CHECK_UINT_EQ(st.bytes, 0);
    CHECK_UINT_EQ(st.max_bytes, shared(f) ? 0 : MAX_BYTES);
    CHECK_UINT_EQ(st.max_entries, 0);
    put(f, (tu_spec){.id = 1, .size = 10}, f->now);
    put(f, (tu_spec){.id = 2, .size = 4096}, f->now);
    put(f, (tu_spec){.id = 3, .size = BIG}, f->now);
    put(f, (tu_spec){.id = 4, .size = 10, .pinned = true}, f->now);
    st = stats(f);
    CHECK_STR_EQ(st.tier, f->t->ops->name);
    if (shared(f)) {
        CHECK_UINT_EQ(st.entries, 0);
        CHECK_UINT_EQ(st.bytes, 0);
        CHECK_UINT_EQ(st.pinned_entries, 0);
    } else {
        CHECK_UINT_EQ(st.entries, 4);
        CHECK_UINT_LE(10 + 4096 + BIG + 10, st.bytes);
        CHECK_UINT_LE(st.bytes, 2 * (10 + 4096 + BIG + 10) + 4 * 4096);
        CHECK_UINT_EQ(st.pinned_entries, 1);
    }
    CHECK_UINT_EQ(st.evictions_capacity + st.evictions_expired + st.evictions_corrupt, 0);
    CHECK_UINT_EQ(st.backend_errors, 0);
    uint64_t before = st.bytes;
    CHECK_OK(del(f, 3));
    CHECK_OK(del(f, 4));
    st = stats(f);
    if (!shared(f)) {
        CHECK_UINT_EQ(st.entries, 2);
        CHECK_UINT_EQ(st.pinned_entries, 0);
        CHECK_UINT_LE(st.bytes + BIG, before);
    }
    CHECK_OK(del(f, 1));
    CHECK_OK(del(f, 2));
    st = stats(f);
    CHECK_UINT_EQ(st.entries, 0);
    CHECK_UINT_EQ(st.bytes, 0);
}

/* A value that fails its checksum is never returned: a miss, counted, reported, and dropped. */
static void corrupt_value_never_returned(fixture *f)
{
    put(f, (tu_spec){.id = 1, .size = 100}, f->now);
    put(f, (tu_spec){.id = 2, .size = BIG}, f->now);
    put(f, (tu_spec){.id = 3, .size = 100}, f->now);
    char key[GENCACHE__KEY_MAX + 1];
    key_of(key, 1);
    f->kind->corrupt(f, key);
    key_of(key, 2);
    f->kind->corrupt(f, key);
    expect_miss(f, 1, f->now, false);
    expect_miss(f, 2, f->now, true);
    expect_miss(f, 1, f->now, true); /* dropped, not merely refused */
    gencache__entry_release(expect_hit(f, 3, 100, f->now, true));
    gencache_tier_stats st = stats(f);
    CHECK_UINT_EQ(st.evictions_corrupt, 2);
    CHECK_INT_EQ(f->ev.n[GENCACHE__EVICT_CORRUPT], 2);
    expect_entries(f, 1);
    /* The key can be stored again, and then serves the good value. */
    put(f, (tu_spec){.id = 1, .size = 100}, f->now);
    gencache__entry_release(expect_hit(f, 1, 100, f->now, true));
}

/* Closing a tier while entries it handed out are still referenced is safe: they stay valid. */
static void close_with_references_is_safe(fixture *f)
{
    static const size_t sizes[] = {10, 4096, BIG};
    gencache__entry *held[3];
    for (unsigned i = 0; i < 3; i++) {
        put(f, (tu_spec){.id = i, .size = sizes[i], .tenant = "acme", .tags = "a"}, f->now);
        held[i] = expect_hit(f, i, sizes[i], f->now, true);
    }
    put(f, (tu_spec){.id = 9, .size = 10}, f->now); /* one nobody holds */
    f->t->ops->close(f->t);
    f->t = NULL;
    for (unsigned i = 0; i < 3; i++) {
        tu_check_value(held[i], i, sizes[i]);
        CHECK_STR_EQ(held[i]->tenant, "acme");
        CHECK_STR_EQ(held[i]->tags, "a");
        CHECK_UINT_EQ(held[i]->checksum, gencache__checksum(held[i]->value, held[i]->size));
        gencache__entry_release(held[i]);
    }
}

/* Any thread may call any operation: concurrent puts, gets and dels of the same keys never
 * return a torn value (bytes of one put with the metadata of another). */
#define CONC_THREADS 4
#define CONC_KEYS    16

typedef struct conc_arg {
    fixture *f;
    unsigned seed;
    int ops;
} conc_arg;

/* A value's size and cost are functions of its seed, so a torn read cannot pass. */
static size_t conc_size(uint64_t seed)
{
    return seed % 8 == 0 ? BIG + (size_t)(seed % 64) : 256 + (size_t)(seed % 64) * 32;
}

static void conc_check(gencache__entry *e)
{
    uint64_t seed = e->cost_ms;
    CHECK_UINT_EQ(e->size, conc_size(seed));
    unsigned char *want = malloc(e->size);
    tu_fill(want, e->size, seed);
    CHECK_MEM_EQ(e->value, want, e->size);
    free(want);
    CHECK_UINT_EQ(e->checksum, gencache__checksum(e->value, e->size));
}

static void *conc_worker(void *p)
{
    conc_arg *a = p;
    fixture *f = a->f;
    for (int i = 0; i < a->ops; i++) {
        a->seed = a->seed * 1103515245u + 12345u;
        uint64_t id = (a->seed >> 8) % CONC_KEYS;
        unsigned op = (a->seed >> 20) % 8;
        if (op < 3) {
            uint64_t seed = ((uint64_t)a->seed << 8) | id;
            gencache__entry *e = make(f, (tu_spec){.id = id, .size = conc_size(seed)});
            tu_fill(e->value, e->size, seed);
            e->checksum = gencache__checksum(e->value, e->size);
            e->cost_ms = seed;
            CHECK_OK(f->t->ops->put(f->t, e, f->now));
            gencache__entry_release(e);
        } else if (op < 7) {
            gencache__entry *e = NULL;
            int rc = get(f, id, f->now, op < 5, &e);
            CHECK(rc == GENCACHE_OK || rc == GENCACHE_ENOTFOUND);
            if (rc == GENCACHE_OK) {
                conc_check(e);
                gencache__entry_release(e);
            } else {
                CHECK(e == NULL);
            }
        } else {
            int rc = del(f, id);
            CHECK(rc == GENCACHE_OK || rc == GENCACHE_ENOTFOUND);
        }
    }
    return NULL;
}

static void concurrent_use_never_tears(fixture *f)
{
    pthread_t th[CONC_THREADS];
    conc_arg args[CONC_THREADS];
    for (unsigned i = 0; i < CONC_THREADS; i++) {
        args[i] = (conc_arg){f, 7u + i * 7919u, shared(f) ? 150 : 300};
        CHECK_INT_EQ(pthread_create(&th[i], NULL, conc_worker, &args[i]), 0);
    }
    for (unsigned i = 0; i < CONC_THREADS; i++)
        pthread_join(th[i], NULL);
    uint64_t present = 0;
    for (uint64_t id = 0; id < CONC_KEYS; id++) {
        gencache__entry *e = NULL;
        if (get(f, id, f->now, false, &e) == GENCACHE_OK) {
            conc_check(e);
            gencache__entry_release(e);
            present++;
        }
    }
    expect_entries(f, present);
    gencache_tier_stats st = stats(f);
    CHECK_UINT_EQ(st.evictions_corrupt, 0);
    CHECK_UINT_EQ(st.backend_errors, 0);
}

/* A replacement carries its own metadata even when touching gets of the value it replaced race
 * with the put: the reader's access record (hits, last access, expiry) belongs to the value it
 * read, never to the one that took its place. Here the replaced values expire at once and their
 * replacement never does. */
typedef struct race_arg {
    fixture *f;
    _Atomic bool stop;
    uint64_t hits;
} race_arg;

static void *race_reader(void *p)
{
    race_arg *a = p;
    while (!atomic_load(&a->stop)) {
        gencache__entry *e = NULL;
        if (get(a->f, 5, a->f->now, true, &e) == GENCACHE_OK) {
            a->hits++;
            gencache__entry_release(e);
        }
    }
    return NULL;
}

static void replace_keeps_own_metadata_under_gets(fixture *f)
{
    const uint64_t t0 = f->now;
    race_arg a = {.f = f};
    pthread_t th;
    CHECK_INT_EQ(pthread_create(&th, NULL, race_reader, &a), 0);
    unsigned rounds = shared(f) ? 300 : 2000;
    for (unsigned i = 0; i < rounds; i++) {
        /* Expires 1 ms after t0 (created a second earlier), then one with no expiry. */
        put(f, (tu_spec){.id = 5, .size = 8192, .ttl_ms = 1001, .now_ms = t0 - 1000}, t0);
        put(f, (tu_spec){.id = 5, .size = 8192, .tags = "forever"}, t0);
    }
    atomic_store(&a.stop, true);
    pthread_join(th, NULL);
    CHECK(a.hits > 0);
    /* A day later (for redis: now), the last put, which never expires, is still there. */
    uint64_t later = backend_ttl(f) ? wall_ms() : t0 + 24 * HOUR_MS;
    gencache__entry *e = expect_hit(f, 5, 8192, later, false);
    CHECK_STR_EQ(e->tags, "forever");
    CHECK_UINT_EQ(e->ttl_ms, 0);
    CHECK_UINT_EQ(atomic_load(&e->expires_ms), 0);
    gencache__entry_release(e);
    e = expect_hit(f, 5, 8192, later, true);
    CHECK_UINT_EQ(atomic_load(&e->expires_ms), 0);
    gencache__entry_release(e);
}

/* ---- registration ---- */

/* Every clause; each must be registered below for every tier. */
#define CONTRACT_CASES(X)                                                                          \
    X(put_get_roundtrip)                                                                           \
    X(put_replaces_same_key)                                                                       \
    X(del_removes_then_enotfound)                                                                  \
    X(get_missing_is_enotfound)                                                                    \
    X(expired_is_miss)                                                                             \
    X(peek_changes_nothing)                                                                        \
    X(remove_if_counts_matches)                                                                    \
    X(stats_report_name_and_counts)                                                                \
    X(corrupt_value_never_returned)                                                                \
    X(close_with_references_is_safe)                                                               \
    X(concurrent_use_never_tears)                                                                  \
    X(replace_keeps_own_metadata_under_gets)

static void run(const tier_kind *kind, void (*clause)(fixture *))
{
    fixture f = {.kind = kind};
    kind->open(&f);
    CHECK(f.t != NULL);
    CHECK_STR_EQ(f.t->ops->name, kind->name);
    watch_evictions(&f);
    clause(&f);
    if (f.t)
        f.t->ops->close(f.t);
    kind->cleanup(&f);
}

/* One line per (tier, clause): CMake registers each literal TEST_CASE line, so the list stays
 * unformatted. */
/* clang-format off */
#define RUN(tier, clause) { run(&tier_##tier, clause); }

TEST_CASE(mem_put_get_roundtrip) RUN(mem, put_get_roundtrip)
TEST_CASE(mem_put_replaces_same_key) RUN(mem, put_replaces_same_key)
TEST_CASE(mem_del_removes_then_enotfound) RUN(mem, del_removes_then_enotfound)
TEST_CASE(mem_get_missing_is_enotfound) RUN(mem, get_missing_is_enotfound)
TEST_CASE(mem_expired_is_miss) RUN(mem, expired_is_miss)
TEST_CASE(mem_peek_changes_nothing) RUN(mem, peek_changes_nothing)
TEST_CASE(mem_remove_if_counts_matches) RUN(mem, remove_if_counts_matches)
TEST_CASE(mem_stats_report_name_and_counts) RUN(mem, stats_report_name_and_counts)
TEST_CASE(mem_corrupt_value_never_returned) RUN(mem, corrupt_value_never_returned)
TEST_CASE(mem_close_with_references_is_safe) RUN(mem, close_with_references_is_safe)
TEST_CASE(mem_concurrent_use_never_tears) RUN(mem, concurrent_use_never_tears)
TEST_CASE(mem_replace_keeps_own_metadata_under_gets) RUN(mem, replace_keeps_own_metadata_under_gets)

TEST_CASE(disk_put_get_roundtrip) RUN(disk, put_get_roundtrip)
TEST_CASE(disk_put_replaces_same_key) RUN(disk, put_replaces_same_key)
TEST_CASE(disk_del_removes_then_enotfound) RUN(disk, del_removes_then_enotfound)
TEST_CASE(disk_get_missing_is_enotfound) RUN(disk, get_missing_is_enotfound)
TEST_CASE(disk_expired_is_miss) RUN(disk, expired_is_miss)
TEST_CASE(disk_peek_changes_nothing) RUN(disk, peek_changes_nothing)
TEST_CASE(disk_remove_if_counts_matches) RUN(disk, remove_if_counts_matches)
TEST_CASE(disk_stats_report_name_and_counts) RUN(disk, stats_report_name_and_counts)
TEST_CASE(disk_corrupt_value_never_returned) RUN(disk, corrupt_value_never_returned)
TEST_CASE(disk_close_with_references_is_safe) RUN(disk, close_with_references_is_safe)
TEST_CASE(disk_concurrent_use_never_tears) RUN(disk, concurrent_use_never_tears)
TEST_CASE(disk_replace_keeps_own_metadata_under_gets) RUN(disk, replace_keeps_own_metadata_under_gets)

TEST_CASE(redis_put_get_roundtrip) RUN(redis, put_get_roundtrip)
TEST_CASE(redis_put_replaces_same_key) RUN(redis, put_replaces_same_key)
TEST_CASE(redis_del_removes_then_enotfound) RUN(redis, del_removes_then_enotfound)
TEST_CASE(redis_get_missing_is_enotfound) RUN(redis, get_missing_is_enotfound)
TEST_CASE(redis_expired_is_miss) RUN(redis, expired_is_miss)
TEST_CASE(redis_peek_changes_nothing) RUN(redis, peek_changes_nothing)
TEST_CASE(redis_remove_if_counts_matches) RUN(redis, remove_if_counts_matches)
TEST_CASE(redis_stats_report_name_and_counts) RUN(redis, stats_report_name_and_counts)
TEST_CASE(redis_corrupt_value_never_returned) RUN(redis, corrupt_value_never_returned)
TEST_CASE(redis_close_with_references_is_safe) RUN(redis, close_with_references_is_safe)
TEST_CASE(redis_concurrent_use_never_tears) RUN(redis, concurrent_use_never_tears)
TEST_CASE(redis_replace_keeps_own_metadata_under_gets) RUN(redis, replace_keeps_own_metadata_under_gets)

/* CMake registers only the literal TEST_CASE lines above: a clause added to CONTRACT_CASES but
 * not registered for some tier would silently not run there. This case makes that a failure. */
TEST_CASE(every_case_runs_on_every_tier)
{
    char exe[PATH_MAX], cmd[PATH_MAX + 16];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    CHECK(len > 0);
    exe[len] = '\0';
    snprintf(cmd, sizeof cmd, "'%s' --list", exe);
    FILE *p = popen(cmd, "r");
    CHECK(p != NULL);
    char listed[8192] = "\n";
    size_t n = strlen(listed);
    char line[128];
    while (fgets(line, sizeof line, p) && n + strlen(line) < sizeof listed - 1) {
        strcpy(listed + n, line);
        n += strlen(line);
    }
    CHECK_INT_EQ(pclose(p), 0);
    static const char *const tiers[] = {"mem", "disk", "redis"};
    static const char *const clauses[] = {
#define CLAUSE_NAME(c) #c,
        CONTRACT_CASES(CLAUSE_NAME)
#undef CLAUSE_NAME
    };
    int checked = 0;
    for (unsigned t = 0; t < 3; t++) {
        for (unsigned c = 0; c < sizeof clauses / sizeof *clauses; c++) {
            char want[128];
            snprintf(want, sizeof want, "\n%s_%s\n", tiers[t], clauses[c]);
            if (!strstr(listed, want))
                test_fail(__FILE__, __LINE__, "case %s_%s is not registered", tiers[t],
                          clauses[c]);
            checked++;
        }
    }
    CHECK_INT_EQ(checked, 36);
}
/* clang-format on */
