/*
 * test_disk.c: the disk tier's behaviour through its tier interface on a real directory: round
 * trips of inline and file-backed values, restart, limits and LRU eviction, TTL with the clock
 * passed in, invalidation by predicate, shared blobs, and concurrent use. Damage, locking,
 * versions, full disks and kill -9 are in test_disk_crash.c.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sys/stat.h>

#include "tier/disk.h"
#include "tier_util.h"

#define SMALL 4096
#define LARGE (1536u * 1024u)

static gencache__tier *open_tier(const char *dir, uint64_t max_bytes, uint64_t max_entries,
                                 tu_evictions *ev)
{
    gencache__disk_options o = {.path = dir, .max_bytes = max_bytes, .max_entries = max_entries};
    gencache__disk_tuning tune;
    gencache__disk_tuning_init(&tune);
    tune.inline_max = 256u << 10; /* so that both value layouts are exercised */
    tune.durable = false;         /* these cases do not test durability; the crash tests do */
    gencache__tier *t = NULL;
    CHECK_OK(gencache__disk_tier_open_ex(&o, &tune, &t));
    CHECK(t != NULL);
    if (ev) {
        t->on_evict = tu_on_evict;
        t->on_evict_userdata = ev;
    }
    return t;
}

static void put_one(gencache__tier *t, const tu_spec *s)
{
    gencache__entry *e = tu_entry(s);
    CHECK_OK(t->ops->put(t, e, s->now_ms));
    gencache__entry_release(e);
}

static int get_rc(gencache__tier *t, const char *layer, uint64_t id, uint64_t now, bool touch,
                  gencache__entry **out)
{
    char key[GENCACHE__KEY_MAX + 1];
    tu_key(key, layer, id);
    return t->ops->get(t, key, tu_hash(key), now, touch, out);
}

static void expect_hit(gencache__tier *t, uint64_t id, size_t size, uint64_t now)
{
    gencache__entry *e = NULL;
    CHECK_OK(get_rc(t, "result", id, now, true, &e));
    tu_check_value(e, id, size);
    gencache__entry_release(e);
}

static void expect_miss(gencache__tier *t, uint64_t id, uint64_t now)
{
    gencache__entry *e = (gencache__entry *)1;
    CHECK_RC(get_rc(t, "result", id, now, true, &e), GENCACHE_ENOTFOUND);
    CHECK(e == NULL);
}

TEST_CASE(round_trip)
{
    char *dir = tu_tmpdir("disk");
    gencache__tier *t = open_tier(dir, 0, 0, NULL);
    CHECK_STR_EQ(t->ops->name, "disk");
    CHECK(t->ops->caps & GENCACHE__TIER_PERSISTENT);
    size_t sizes[] = {0, 1, 63, SMALL, 256u << 10, (256u << 10) + 1, LARGE};
    for (unsigned i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        tu_spec s = {.id = i,
                     .size = sizes[i],
                     .now_ms = 1000,
                     .ttl_ms = 60000,
                     .tenant = i % 2 ? "acme" : NULL,
                     .model = "wan2.2",
                     .tags = "a,b",
                     .ctype = "video/mp4"};
        put_one(t, &s);
    }
    for (unsigned i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        gencache__entry *e = NULL;
        CHECK_OK(get_rc(t, "result", i, 2000, true, &e));
        tu_check_value(e, i, sizes[i]);
        char key[GENCACHE__KEY_MAX + 1];
        tu_key(key, "result", i);
        CHECK_STR_EQ(e->key, key);
        CHECK_STR_EQ(e->layer_name, "result");
        CHECK_INT_EQ(e->layer, 0);
        if (i % 2)
            CHECK_STR_EQ(e->tenant, "acme");
        else
            CHECK(e->tenant == NULL);
        CHECK_STR_EQ(e->model, "wan2.2");
        CHECK_STR_EQ(e->tags, "a,b");
        CHECK_STR_EQ(e->content_type, "video/mp4");
        CHECK_UINT_EQ(e->cost_ms, 100 + i);
        CHECK_UINT_EQ(e->ttl_ms, 60000);
        CHECK_UINT_EQ(e->created_ms, 1000);
        CHECK_UINT_EQ(atomic_load(&e->expires_ms), 61000);
        CHECK_UINT_EQ(atomic_load(&e->hits), 1);
        CHECK_UINT_EQ(atomic_load(&e->last_access_ms), 2000);
        CHECK_UINT_EQ(e->checksum, gencache__checksum(e->value, e->size));
        if (sizes[i] && sizes[i] % 4 == 0) {
            CHECK_INT_EQ(e->dtype, GENCACHE_DTYPE_F32);
            CHECK_UINT_EQ(e->ndim, 2);
            CHECK_INT_EQ(e->shape[1], (int64_t)(sizes[i] / 4));
        }
        gencache__entry_release(e);
    }
    /* A peek (touch false) counts nothing. */
    gencache__entry *e = NULL;
    CHECK_OK(get_rc(t, "result", 3, 3000, false, &e));
    CHECK_UINT_EQ(atomic_load(&e->hits), 1);
    gencache__entry_release(e);

    expect_miss(t, 999, 2000);
    char key[GENCACHE__KEY_MAX + 1];
    tu_key(key, "result", 6);
    CHECK_OK(t->ops->del(t, key, tu_hash(key)));
    CHECK_RC(t->ops->del(t, key, tu_hash(key)), GENCACHE_ENOTFOUND);
    expect_miss(t, 6, 2000);
    /* Replacing a key serves the new value. */
    tu_spec r = {.id = 0, .size = 100, .now_ms = 5000};
    put_one(t, &r);
    expect_hit(t, 0, 100, 5001);
    gencache_tier_stats st;
    t->ops->stats(t, &st);
    CHECK_STR_EQ(st.tier, "disk");
    CHECK_UINT_EQ(st.entries, 6);
    CHECK(st.bytes > 4 * SMALL);
    /* Bad input. */
    CHECK_RC(t->ops->get(t, "nope", 0, 0, true, &e), GENCACHE_EINVAL);
    CHECK_RC(t->ops->del(t, "result/xyz", 0), GENCACHE_EINVAL);
    t->ops->close(t);
    tu_rm_rf(dir);
    free(dir);
}

TEST_CASE(restart_keeps_everything)
{
    char *dir = tu_tmpdir("disk");
    gencache__tier *t = open_tier(dir, 0, 0, NULL);
    for (uint64_t i = 0; i < 40; i++) {
        tu_spec s = {
            .id = i, .size = i % 8 == 0 ? LARGE : SMALL + i, .now_ms = 1000, .pinned = i == 3};
        put_one(t, &s);
    }
    expect_hit(t, 5, SMALL + 5, 1500); /* an access still pending at close */
    gencache_tier_stats before;
    t->ops->stats(t, &before);
    t->ops->close(t);

    t = open_tier(dir, 0, 0, NULL);
    gencache_tier_stats after;
    t->ops->stats(t, &after);
    CHECK_UINT_EQ(after.entries, 40);
    CHECK_UINT_EQ(after.bytes, before.bytes);
    CHECK_UINT_EQ(after.pinned_entries, 1);
    for (uint64_t i = 0; i < 40; i++)
        expect_hit(t, i, i % 8 == 0 ? LARGE : SMALL + i, 2000);
    gencache__entry *e = NULL;
    CHECK_OK(get_rc(t, "result", 5, 3000, false, &e));
    CHECK_UINT_EQ(atomic_load(&e->hits), 2); /* the access before close was written at close */
    gencache__entry_release(e);
    t->ops->close(t);
    tu_rm_rf(dir);
    free(dir);
}

TEST_CASE(entry_limit_evicts_least_recently_used)
{
    char *dir = tu_tmpdir("disk");
    tu_evictions ev = {0};
    gencache__tier *t = open_tier(dir, 0, 10, &ev);
    for (uint64_t i = 0; i < 10; i++) {
        tu_spec s = {.id = i, .size = SMALL, .now_ms = 1000 + i};
        put_one(t, &s);
    }
    expect_hit(t, 0, SMALL, 2000); /* 0 becomes the most recent; 1 the oldest */
    tu_spec s = {.id = 10, .size = SMALL, .now_ms = 2001};
    put_one(t, &s);
    expect_miss(t, 1, 2002);
    expect_hit(t, 0, SMALL, 2003);
    CHECK_INT_EQ(ev.n[GENCACHE__EVICT_CAPACITY], 1);
    char key[GENCACHE__KEY_MAX + 1];
    tu_key(key, "result", 1);
    CHECK_STR_EQ(ev.last_key, key);
    CHECK_UINT_EQ(ev.last_size, SMALL);
    CHECK(ev.value_null);
    gencache_tier_stats st;
    t->ops->stats(t, &st);
    CHECK_UINT_EQ(st.entries, 10);
    CHECK_UINT_EQ(st.evictions_capacity, 1);
    t->ops->close(t);
    tu_rm_rf(dir);
    free(dir);
}

TEST_CASE(byte_limit_and_pinned)
{
    char *dir = tu_tmpdir("disk");
    uint64_t per = gencache__disk_charge(LARGE, 400);
    gencache__tier *t = open_tier(dir, 3 * per, 0, NULL);
    /* Larger than the whole tier: refused. */
    gencache__entry *big = tu_entry(&(tu_spec){.id = 50, .size = 4 * LARGE, .now_ms = 1});
    CHECK_RC(t->ops->put(t, big, 1), GENCACHE_ETOOBIG);
    gencache__entry_release(big);
    put_one(t, &(tu_spec){.id = 1, .size = LARGE, .now_ms = 10, .pinned = true});
    put_one(t, &(tu_spec){.id = 2, .size = LARGE, .now_ms = 20, .pinned = true});
    put_one(t, &(tu_spec){.id = 3, .size = LARGE, .now_ms = 30});
    put_one(t, &(tu_spec){.id = 4, .size = LARGE, .now_ms = 40});
    expect_miss(t, 3, 50); /* the only unpinned one that could go */
    expect_hit(t, 1, LARGE, 50);
    expect_hit(t, 2, LARGE, 50);
    expect_hit(t, 4, LARGE, 50);
    gencache_tier_stats st;
    t->ops->stats(t, &st);
    CHECK_UINT_LE(st.bytes, 3 * per);
    CHECK_UINT_EQ(st.pinned_entries, 2);
    /* Three pinned entries fill it: a fourth cannot make room. */
    put_one(t, &(tu_spec){.id = 5, .size = LARGE, .now_ms = 60, .pinned = true});
    gencache__entry *e = tu_entry(&(tu_spec){.id = 6, .size = LARGE, .now_ms = 70});
    CHECK_RC(t->ops->put(t, e, 70), GENCACHE_EFULL);
    gencache__entry_release(e);
    expect_miss(t, 6, 80);
    expect_hit(t, 5, LARGE, 80);
    /* No file is left behind by the refused put or the evictions. */
    t->ops->close(t);
    t = open_tier(dir, 3 * per, 0, NULL);
    t->ops->stats(t, &st);
    CHECK_UINT_EQ(st.entries, 3);
    t->ops->close(t);
    tu_rm_rf(dir);
    free(dir);
}

TEST_CASE(ttl_with_clock_passed_in)
{
    char *dir = tu_tmpdir("disk");
    tu_evictions ev = {0};
    gencache__tier *t = open_tier(dir, 0, 0, &ev);
    put_one(t, &(tu_spec){.id = 1, .size = SMALL, .now_ms = 1000, .ttl_ms = 1000});
    put_one(t, &(tu_spec){.id = 2, .size = LARGE, .now_ms = 1000, .ttl_ms = 1000});
    put_one(t, &(tu_spec){.id = 3, .size = SMALL, .now_ms = 1000, .ttl_ms = 1000, .sliding = true});
    put_one(t, &(tu_spec){.id = 4, .size = SMALL, .now_ms = 1000});
    expect_hit(t, 1, SMALL, 1999);
    expect_miss(t, 1, 2000);
    CHECK_INT_EQ(ev.n[GENCACHE__EVICT_EXPIRED], 1);
    expect_hit(t, 3, SMALL, 1800); /* sliding: now expires at 2800 */
    expect_hit(t, 3, SMALL, 2700);
    /* expire() removes what has run out; the sliding one survives until 3700. */
    uint64_t n = 0;
    CHECK_OK(t->ops->expire(t, 3000, &n));
    CHECK_UINT_EQ(n, 1); /* id 2 */
    expect_hit(t, 3, SMALL, 3600);
    expect_hit(t, 4, SMALL, 1u << 30); /* no TTL: never */
    /* An expired sliding expiry survives a restart (it was written at close). */
    t->ops->close(t);
    t = open_tier(dir, 0, 0, &ev);
    expect_miss(t, 3, 4601);
    gencache_tier_stats st;
    t->ops->stats(t, &st);
    CHECK_UINT_EQ(st.entries, 1);
    CHECK_UINT_EQ(st.evictions_expired, 1);
    /* An entry already expired when put is not stored. */
    gencache__entry *old = tu_entry(&(tu_spec){.id = 9, .size = 10, .now_ms = 1000, .ttl_ms = 5});
    CHECK_OK(t->ops->put(t, old, 2000));
    gencache__entry_release(old);
    expect_miss(t, 9, 1000);
    t->ops->close(t);
    tu_rm_rf(dir);
    free(dir);
}

static bool match_tenant(void *ud, const gencache__entry *e)
{
    CHECK(e->value == NULL); /* metadata only */
    CHECK(e->size > 0);
    return e->tenant && strcmp(e->tenant, ud) == 0;
}

static bool match_tag(void *ud, const gencache__entry *e)
{
    return gencache__entry_has_tag(e, ud);
}

TEST_CASE(remove_if_by_metadata)
{
    char *dir = tu_tmpdir("disk");
    gencache__tier *t = open_tier(dir, 0, 0, NULL);
    for (uint64_t i = 0; i < 3000; i++)
        put_one(t, &(tu_spec){.id = i,
                              .size = i % 500 == 0 ? LARGE : 64,
                              .now_ms = 1000,
                              .tenant = i % 3 == 0 ? "acme" : "zeta",
                              .tags = i % 2 ? "odd,x" : "even,x"});
    uint64_t n = 0;
    CHECK_OK(t->ops->remove_if(t, match_tenant, "acme", &n));
    CHECK_UINT_EQ(n, 1000);
    CHECK_OK(t->ops->remove_if(t, match_tag, "odd", &n));
    CHECK_UINT_EQ(n, 1000); /* the odd ones of tenant zeta */
    expect_miss(t, 0, 2000);
    expect_miss(t, 1, 2000);
    expect_hit(t, 2, 64, 2000);
    expect_hit(t, 1000, LARGE, 2000);
    gencache_tier_stats st;
    t->ops->stats(t, &st);
    CHECK_UINT_EQ(st.entries, 1000);
    CHECK_RC(t->ops->remove_if(t, NULL, NULL, &n), GENCACHE_EINVAL);
    t->ops->close(t);
    tu_rm_rf(dir);
    free(dir);
}

/* Files under values/: with a value in them, or all (the pool's files made ahead are empty). */
static size_t find_files(const char *dir, bool with_value)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "find %s/values -type f %s| wc -l", dir,
             with_value ? "-size +0 " : "");
    FILE *p = popen(cmd, "r");
    size_t n = 0;
    CHECK(p && fscanf(p, "%zu", &n) == 1);
    pclose(p);
    return n;
}

static size_t count_files(const char *dir)
{
    return find_files(dir, true);
}

TEST_CASE(each_value_has_its_own_file)
{
    char *dir = tu_tmpdir("disk");
    gencache__tier *t = open_tier(dir, 0, 0, NULL);
    gencache__entry *a = tu_entry(&(tu_spec){.id = 7, .size = LARGE, .now_ms = 1});
    CHECK_OK(t->ops->put(t, a, 1));
    /* Same bytes under another key: a file of its own (files are named by random ids). */
    char key[GENCACHE__KEY_MAX + 1];
    tu_key(key, "result", 8);
    gencache__entry_spec spec = {.key = key, .size = LARGE, .now_ms = 1};
    gencache__entry *b;
    CHECK_OK(gencache__entry_new(NULL, &spec, &b));
    memcpy(b->value, a->value, LARGE);
    b->checksum = a->checksum;
    CHECK_OK(t->ops->put(t, b, 1));
    CHECK_UINT_EQ(count_files(dir), 2);
    /* Rewriting a key replaces its file. */
    CHECK_OK(t->ops->put(t, b, 1));
    CHECK_UINT_EQ(count_files(dir), 2);
    CHECK_OK(t->ops->del(t, a->key, a->hash));
    CHECK_UINT_EQ(count_files(dir), 1);
    gencache__entry *got = NULL;
    CHECK_OK(t->ops->get(t, key, tu_hash(key), 2, true, &got));
    tu_check_value(got, 7, LARGE);
    gencache__entry_release(got);
    CHECK_OK(t->ops->del(t, key, tu_hash(key)));
    CHECK_UINT_EQ(count_files(dir), 0);
    /* A metadata-only entry cannot be stored. */
    b->value = NULL;
    CHECK_RC(t->ops->put(t, b, 1), GENCACHE_EINVAL);
    gencache__entry_release(a);
    gencache__entry_release(b);
    /* The empty files made ahead for later puts are removed at close. */
    CHECK(find_files(dir, false) > 0);
    t->ops->close(t);
    CHECK_UINT_EQ(find_files(dir, false), 0);
    tu_rm_rf(dir);
    free(dir);
}

typedef struct worker {
    gencache__tier *t;
    int id;
    int bad;
} worker;

static void *work(void *arg)
{
    worker *w = arg;
    for (uint64_t i = 0; i < 200; i++) {
        uint64_t id = (i * 7 + (uint64_t)w->id) % 64;
        size_t size = id % 16 == 0 ? 300u << 10 : 512 + id;
        if (i % 3 == 0) {
            gencache__entry *e = tu_entry(&(tu_spec){.id = id, .size = size, .now_ms = 1000 + i});
            if (w->t->ops->put(w->t, e, 1000 + i) != GENCACHE_OK)
                w->bad++;
            gencache__entry_release(e);
        } else if (i % 11 == 0) {
            char key[GENCACHE__KEY_MAX + 1];
            tu_key(key, "result", id);
            int rc = w->t->ops->del(w->t, key, tu_hash(key));
            if (rc != GENCACHE_OK && rc != GENCACHE_ENOTFOUND)
                w->bad++;
        } else {
            gencache__entry *e = NULL;
            int rc = get_rc(w->t, "result", id, 1000 + i, true, &e);
            if (rc == GENCACHE_OK) {
                unsigned char *want = malloc(size);
                tu_fill(want, size, id);
                if (e->size != size || memcmp(e->value, want, size) != 0)
                    w->bad++;
                free(want);
                gencache__entry_release(e);
            } else if (rc != GENCACHE_ENOTFOUND) {
                w->bad++;
            }
        }
    }
    return NULL;
}

TEST_CASE(concurrent_puts_gets_and_deletes)
{
    char *dir = tu_tmpdir("disk");
    gencache__tier *t = open_tier(dir, 0, 40, NULL);
    pthread_t th[4];
    worker w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (worker){.t = t, .id = i};
        pthread_create(&th[i], NULL, work, &w[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        CHECK_INT_EQ(w[i].bad, 0);
    }
    gencache_tier_stats st;
    t->ops->stats(t, &st);
    CHECK_UINT_LE(st.entries, 40);
    CHECK_UINT_EQ(st.evictions_corrupt, 0);
    CHECK_UINT_EQ(st.backend_errors, 0);
    t->ops->close(t);
    tu_rm_rf(dir);
    free(dir);
}

TEST_CASE(through_the_cache_survives_reopen)
{
    char *dir = tu_tmpdir("disk");
    gencache_options o;
    gencache_options_init(&o);
    o.data_dir = dir;
    gencache *c = NULL;
    CHECK_OK(gencache_open(&c, &o));
    gencache_layer_options lo = {.struct_size = sizeof lo};
    gencache_layer_options_init(&lo);
    lo.name = "result";
    lo.write_through = 1;
    CHECK_OK(gencache_layer_define(c, &lo));
    char key[GENCACHE__KEY_MAX + 1];
    tu_key(key, "result", 5);
    unsigned char *v = malloc(LARGE);
    tu_fill(v, LARGE, 5);
    CHECK_OK(gencache_put(c, key, v, LARGE, NULL));
    gencache_close(c);

    CHECK_OK(gencache_open(&c, &o));
    gencache_handle *h = NULL;
    CHECK_OK(gencache_get(c, key, &h));
    CHECK_STR_EQ(gencache_handle_meta(h)->tier, "disk");
    CHECK_UINT_EQ(gencache_handle_size(h), LARGE);
    CHECK_MEM_EQ(gencache_handle_data(h), v, LARGE);
    gencache_handle_release(h);
    /* A second cache on the same directory is refused while the first is open. */
    gencache *c2 = NULL;
    CHECK_RC(gencache_open(&c2, &o), GENCACHE_EBUSY);
    gencache_filter f;
    gencache_filter_init(&f);
    f.layer = "result";
    uint64_t n = 0;
    CHECK_OK(gencache_invalidate(c, &f, &n));
    CHECK_UINT_EQ(n, 1);
    gencache_close(c);
    CHECK_OK(gencache_open(&c, &o));
    CHECK_RC(gencache_get(c, key, &h), GENCACHE_ENOTFOUND);
    gencache_close(c);
    free(v);
    tu_rm_rf(dir);
    free(dir);
}

static void put_many_ids(gencache__tier *t, const tu_spec *specs, size_t n, uint64_t now, int *rcs)
{
    gencache__entry *es[16];
    CHECK(n <= 16);
    for (size_t i = 0; i < n; i++)
        es[i] = tu_entry(&specs[i]);
    t->ops->put_many(t, es, n, now, rcs);
    for (size_t i = 0; i < n; i++)
        gencache__entry_release(es[i]);
}

/* A group write stores what the same puts would, and reports each value as its put would:
 * inline values share one commit, a value with its own file, one too big and one already
 * expired get their own results; all of it is there after a reopen. */
TEST_CASE(put_many_reports_each_value)
{
    char *dir = tu_tmpdir("disk-many");
    gencache__tier *t = open_tier(dir, 2u << 20, 0, NULL);
    CHECK(t->ops->put_many != NULL);
    tu_spec s[12];
    for (size_t i = 0; i < 9; i++)
        s[i] = (tu_spec){.id = 1 + i, .size = 1000 + i, .now_ms = 1000};
    s[9] = (tu_spec){.id = 10, .size = 300u << 10, .now_ms = 1000}; /* in its own file */
    s[10] = (tu_spec){.id = 11, .size = 3u << 20, .now_ms = 1000};  /* over max_bytes */
    s[11] = (tu_spec){.id = 12, .size = 500, .now_ms = 10, .ttl_ms = 5};
    int rcs[12];
    put_many_ids(t, s, 12, 1000, rcs);
    for (size_t i = 0; i < 10; i++)
        CHECK_INT_EQ(rcs[i], GENCACHE_OK);
    CHECK_INT_EQ(rcs[10], GENCACHE_ETOOBIG);
    CHECK_INT_EQ(rcs[11], GENCACHE_OK); /* expired: nothing worth writing, as put says */
    t->ops->close(t);
    t = open_tier(dir, 2u << 20, 0, NULL);
    for (size_t i = 0; i < 10; i++)
        expect_hit(t, s[i].id, s[i].size, 1000);
    expect_miss(t, 11, 1000);
    expect_miss(t, 12, 1000);
    gencache_tier_stats st;
    t->ops->stats(t, &st);
    CHECK_UINT_EQ(st.entries, 10);
    t->ops->close(t);
    tu_rm_rf(dir);
    free(dir);
}

/* When the group's transaction fails (here: pinned values fill the tier), nothing of it stays
 * half-done: each value is put alone and gets the result its own put gives. */
TEST_CASE(put_many_failed_batch_falls_back_to_single_puts)
{
    char *dir = tu_tmpdir("disk-many-full");
    gencache__tier *t = open_tier(dir, 0, 5, NULL);
    for (uint64_t id = 1; id <= 4; id++)
        put_one(t, &(tu_spec){.id = id, .size = 1000, .now_ms = 1000, .pinned = true});
    tu_spec s[3];
    for (size_t i = 0; i < 3; i++)
        s[i] = (tu_spec){.id = 10 + i, .size = 1000, .now_ms = 1000, .pinned = true};
    int rcs[3];
    put_many_ids(t, s, 3, 1000, rcs);
    CHECK_INT_EQ(rcs[0], GENCACHE_OK);
    CHECK_INT_EQ(rcs[1], GENCACHE_EFULL);
    CHECK_INT_EQ(rcs[2], GENCACHE_EFULL);
    expect_hit(t, 10, 1000, 1000);
    expect_miss(t, 11, 1000);
    expect_miss(t, 12, 1000);
    gencache_tier_stats st;
    t->ops->stats(t, &st);
    CHECK_UINT_EQ(st.entries, 5);
    t->ops->close(t);
    tu_rm_rf(dir);
    free(dir);
}
