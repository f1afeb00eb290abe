/*
 * test_tenant.c: tenants in the library. A tenant-scoped entry is unaddressable by any other
 * tenant; a global entry is shared for reading and protected for writing; quotas are counted
 * exactly through every way an entry comes and goes (put, replace, delete, invalidation, expiry,
 * eviction, restart); counters are kept per tenant; bad callers are refused.
 */
#define _GNU_SOURCE
#include <pthread.h>

#include "tier_util.h"

static uint64_t fake_now = 1000000;

static uint64_t fake_clock(void *ud)
{
    (void)ud;
    return __atomic_load_n(&fake_now, __ATOMIC_RELAXED);
}

static gencache *open_cache(const char *dir, uint64_t mem_bytes)
{
    gencache_options o;
    gencache_options_init(&o);
    o.data_dir = dir;
    o.mem_max_bytes = mem_bytes;
    o.clock_fn = fake_clock;
    gencache *c = NULL;
    CHECK_OK(gencache_open(&c, &o));
    return c;
}

static void define(gencache *c, const char *name, uint64_t quota, int admin)
{
    gencache_tenant_options t;
    gencache_tenant_options_init(&t);
    t.name = name;
    t.quota_bytes = quota;
    t.admin = admin;
    CHECK_OK(gencache_tenant_define(c, &t));
}

static gencache_caller as(const char *tenant)
{
    gencache_caller who;
    gencache_caller_init(&who);
    who.tenant = tenant;
    return who;
}

static int put_as(gencache *c, const char *tenant, const char *key, size_t size, int fill)
{
    static _Thread_local unsigned char buf[1 << 16]; /* quota_writer threads put at once */
    memset(buf, fill, size);
    gencache_caller who = as(tenant);
    return gencache_put_as(c, &who, key, buf, size, NULL);
}

/* The first byte of what `tenant` reads under key, or -1 for a miss. */
static int read_as(gencache *c, const char *tenant, const char *key)
{
    gencache_caller who = as(tenant);
    gencache_handle *h = NULL;
    int rc = gencache_get_as(c, &who, key, &h);
    if (rc == GENCACHE_ENOTFOUND)
        return -1;
    CHECK_OK(rc);
    int first = gencache_handle_size(h) ? ((const unsigned char *)gencache_handle_data(h))[0] : 0;
    gencache_handle_release(h);
    return first;
}

static uint64_t usage(gencache *c, const char *tenant)
{
    gencache_tenant_stats s = {.struct_size = sizeof s};
    CHECK_OK(gencache_tenant_stats_get(c, tenant, &s));
    return s.bytes;
}

TEST_CASE(tenant_scoped_entries_are_unaddressable)
{
    gencache *c = open_cache(NULL, 0);
    char key[GENCACHE__KEY_MAX + 1];
    tu_key(key, "result", 1);
    CHECK_OK(put_as(c, "alice", key, 100, 'a'));
    CHECK_INT_EQ(read_as(c, "alice", key), 'a');
    CHECK_INT_EQ(read_as(c, "bob", key), -1);
    /* Bob writing the same key makes his own entry; Alice's is untouched. */
    CHECK_OK(put_as(c, "bob", key, 100, 'b'));
    CHECK_INT_EQ(read_as(c, "alice", key), 'a');
    CHECK_INT_EQ(read_as(c, "bob", key), 'b');
    /* Not under the plain key either: the entries live in their tenants' namespaces. */
    gencache_handle *h = NULL;
    CHECK_RC(gencache_get(c, key, &h), GENCACHE_ENOTFOUND);
    /* Bob deleting "it" deletes his own. */
    gencache_caller bob = as("bob");
    CHECK_OK(gencache_del_as(c, &bob, key));
    CHECK_RC(gencache_del_as(c, &bob, key), GENCACHE_ENOTFOUND);
    CHECK_INT_EQ(read_as(c, "alice", key), 'a');
    /* The handle names the key as the caller gave it. */
    gencache_caller alice = as("alice");
    CHECK_OK(gencache_peek_as(c, &alice, key, &h));
    CHECK_STR_EQ(gencache_handle_meta(h)->key, key);
    CHECK_STR_EQ(gencache_handle_meta(h)->tenant, "alice");
    gencache_handle_release(h);
    gencache_close(c);
}

TEST_CASE(global_entries_are_shared_and_protected)
{
    gencache *c = open_cache(NULL, 0);
    define(c, "root", 0, 1);
    char key[GENCACHE__KEY_MAX + 1];
    tu_key(key, "image_latent", 2);
    CHECK_OK(put_as(c, "alice", key, 100, 'a'));
    CHECK_INT_EQ(read_as(c, "bob", key), 'a');
    CHECK_RC(put_as(c, "bob", key, 100, 'b'), GENCACHE_EPERM);
    gencache_caller bob = as("bob");
    CHECK_RC(gencache_del_as(c, &bob, key), GENCACHE_EPERM);
    CHECK_INT_EQ(read_as(c, "alice", key), 'a');
    CHECK_OK(put_as(c, "alice", key, 100, 'A')); /* its writer may replace it */
    CHECK_OK(put_as(c, "root", key, 100, 'r'));  /* and an admin may */
    gencache_caller root = as("root");
    CHECK_OK(gencache_del_as(c, &root, key));
    CHECK_INT_EQ(read_as(c, "alice", key), -1);
    gencache_close(c);
}

TEST_CASE(quota_is_exact_through_put_replace_delete)
{
    gencache *c = open_cache(NULL, 0);
    define(c, "alice", 10000, 0);
    char k1[GENCACHE__KEY_MAX + 1], k2[GENCACHE__KEY_MAX + 1], k3[GENCACHE__KEY_MAX + 1];
    tu_key(k1, "result", 1);
    tu_key(k2, "result", 2);
    tu_key(k3, "image_latent", 3);
    CHECK_OK(put_as(c, "alice", k1, 4000, 1));
    CHECK_OK(put_as(c, "alice", k2, 4000, 2));
    CHECK_UINT_EQ(usage(c, "alice"), 8000);
    CHECK_RC(put_as(c, "alice", k3, 4000, 3), GENCACHE_ELIMIT);
    CHECK_INT_EQ(read_as(c, "alice", k3), -1); /* refused: nothing stored */
    CHECK_UINT_EQ(usage(c, "alice"), 8000);
    CHECK_OK(put_as(c, "alice", k2, 2000, 2)); /* a replacement counts the difference */
    CHECK_UINT_EQ(usage(c, "alice"), 6000);
    CHECK_OK(put_as(c, "alice", k3, 4000, 3));
    CHECK_UINT_EQ(usage(c, "alice"), 10000);
    gencache_caller alice = as("alice");
    CHECK_OK(gencache_del_as(c, &alice, k1));
    CHECK_UINT_EQ(usage(c, "alice"), 6000);
    gencache_filter f;
    gencache_filter_init(&f);
    f.layer = "image_latent";
    uint64_t n = 0;
    CHECK_OK(gencache_invalidate_as(c, &alice, &f, &n));
    CHECK_UINT_EQ(n, 1);
    CHECK_UINT_EQ(usage(c, "alice"), 2000);
    /* Bob's usage is his own. */
    CHECK_OK(put_as(c, "bob", k1, 9000, 9));
    CHECK_UINT_EQ(usage(c, "bob"), 9000);
    CHECK_UINT_EQ(usage(c, "alice"), 2000);
    gencache_close(c);
}

TEST_CASE(quota_follows_expiry_and_eviction)
{
    gencache *c = open_cache(NULL, 8 * 4096);
    define(c, "alice", 0, 0);
    char key[GENCACHE__KEY_MAX + 1];
    gencache_meta m;
    gencache_meta_init(&m);
    m.ttl_ms = 1000;
    unsigned char v[1000] = {0};
    gencache_caller alice = as("alice");
    tu_key(key, "text_embedding", 1);
    CHECK_OK(gencache_put_as(c, &alice, key, v, sizeof v, &m));
    CHECK_UINT_EQ(usage(c, "alice"), 1000);
    __atomic_add_fetch(&fake_now, 2000, __ATOMIC_RELAXED);
    CHECK_OK(gencache_maintain(c, NULL));
    CHECK_UINT_EQ(usage(c, "alice"), 0);
    /* No disk tier: an entry evicted for room is gone, and stops counting. */
    for (uint64_t id = 1; id <= 40; id++) {
        tu_key(key, "text_embedding", 100 + id);
        CHECK_OK(put_as(c, "alice", key, 3000, 1));
    }
    gencache_tier_stats ts;
    gencache_stats s = {.struct_size = sizeof s};
    CHECK_OK(gencache_stats_get(c, &s));
    ts = s.tiers[0];
    gencache_tenant_stats t = {.struct_size = sizeof t};
    CHECK_OK(gencache_tenant_stats_get(c, "alice", &t));
    CHECK_UINT_EQ(t.entries, ts.entries);
    CHECK_UINT_EQ(t.bytes, 3000 * ts.entries);
    gencache_close(c);
}

TEST_CASE(quota_counts_demoted_entries_and_survives_restart)
{
    char *dir = tu_tmpdir("tenant-restart");
    gencache *c = open_cache(dir, 8 * 4096);
    define(c, "alice", 1 << 20, 0);
    char key[GENCACHE__KEY_MAX + 1];
    for (uint64_t id = 1; id <= 40; id++) {
        tu_key(key, (id & 1) ? "result" : "image_latent", id);
        CHECK_OK(put_as(c, "alice", key, 3000, (int)id));
    }
    /* Memory holds a few; the rest were demoted to disk and still count. */
    CHECK_UINT_EQ(usage(c, "alice"), 40 * 3000);
    for (uint64_t id = 1; id <= 40; id++) {
        tu_key(key, (id & 1) ? "result" : "image_latent", id);
        CHECK_INT_EQ(read_as(c, "alice", key), (int)id);
    }
    gencache_close(c);
    c = open_cache(dir, 0);
    define(c, "alice", 1 << 20, 0);
    CHECK_UINT_EQ(usage(c, "alice"), 40 * 3000);
    tu_key(key, "result", 1);
    CHECK_INT_EQ(read_as(c, "alice", key), 1);
    gencache_close(c);
    tu_rm_rf(dir);
    free(dir);
}

TEST_CASE(counters_are_per_tenant)
{
    gencache *c = open_cache(NULL, 0);
    char key[GENCACHE__KEY_MAX + 1];
    tu_key(key, "result", 1);
    gencache_caller alice = as("alice");
    alice.cost_ms = 700;
    unsigned char v[10] = {0};
    CHECK_OK(gencache_put_as(c, &alice, key, v, sizeof v, NULL));
    gencache_handle *h = NULL;
    CHECK_OK(gencache_get_as(c, &alice, key, &h));
    gencache_handle_release(h);
    CHECK_RC(gencache_get_as(c, &alice,
                             "result/"
                             "0000000000000000000000000000000000000000000000000000000000000000",
                             &h),
             GENCACHE_ENOTFOUND);
    CHECK_INT_EQ(read_as(c, "bob", key), -1);
    gencache_tenant_stats s = {.struct_size = sizeof s};
    CHECK_OK(gencache_tenant_stats_get(c, "alice", &s));
    CHECK_STR_EQ(s.layers[0].layer, "result");
    CHECK_UINT_EQ(s.layers[0].lookups, 2);
    CHECK_UINT_EQ(s.layers[0].hits, 1);
    CHECK_UINT_EQ(s.layers[0].misses, 1);
    CHECK_UINT_EQ(s.layers[0].puts, 1);
    CHECK_UINT_EQ(s.layers[0].cost_ms_saved, 700);
    CHECK_OK(gencache_tenant_stats_get(c, "bob", &s));
    CHECK_UINT_EQ(s.layers[0].lookups, 1);
    CHECK_UINT_EQ(s.layers[0].hits, 0);
    CHECK_RC(gencache_tenant_stats_get(c, "carol", &s), GENCACHE_ENOTFOUND);
    gencache_close(c);
}

TEST_CASE(invalidation_is_confined_to_the_caller)
{
    gencache *c = open_cache(NULL, 0);
    define(c, "root", 0, 1);
    char key[GENCACHE__KEY_MAX + 1];
    for (uint64_t id = 1; id <= 3; id++) {
        tu_key(key, "result", id);
        CHECK_OK(put_as(c, "alice", key, 10, 'a'));
        CHECK_OK(put_as(c, "bob", key, 10, 'b'));
    }
    gencache_caller bob = as("bob");
    gencache_filter f;
    gencache_filter_init(&f);
    f.tenant = "alice";
    uint64_t n = 9;
    CHECK_OK(gencache_invalidate_as(c, &bob, &f, &n));
    CHECK_UINT_EQ(n, 0);
    gencache_filter_init(&f);
    f.layer = "result";
    CHECK_OK(gencache_invalidate_as(c, &bob, &f, &n));
    CHECK_UINT_EQ(n, 3);
    tu_key(key, "result", 2);
    CHECK_INT_EQ(read_as(c, "alice", key), 'a');
    gencache_filter_init(&f);
    f.key = key;
    gencache_caller alice = as("alice");
    CHECK_OK(gencache_invalidate_as(c, &alice, &f, &n));
    CHECK_UINT_EQ(n, 1);
    CHECK_INT_EQ(read_as(c, "alice", key), -1);
    gencache_caller root = as("root");
    gencache_filter_init(&f);
    f.tenant = "alice";
    CHECK_OK(gencache_invalidate_as(c, &root, &f, &n));
    CHECK_UINT_EQ(n, 2);
    gencache_close(c);
}

TEST_CASE(bad_callers_are_refused)
{
    gencache *c = open_cache(NULL, 0);
    char key[GENCACHE__KEY_MAX + 1];
    tu_key(key, "result", 1);
    gencache_handle *h = (gencache_handle *)&h;
    gencache_caller who = as("no spaces allowed");
    CHECK_RC(gencache_get_as(c, &who, key, &h), GENCACHE_EINVAL);
    CHECK(h == NULL);
    who = as("");
    CHECK_RC(put_as(c, "", key, 1, 0), GENCACHE_EINVAL);
    who = as("alice");
    who.struct_size = 4;
    CHECK_RC(gencache_get_as(c, &who, key, &h), GENCACHE_EINVAL);
    CHECK_RC(gencache_del_as(c, &who, key), GENCACHE_EINVAL);
    CHECK_RC(gencache_get_as(NULL, NULL, key, &h), GENCACHE_EINVAL);
    CHECK_RC(gencache_get_as(c, NULL, "result/xyz", &h), GENCACHE_EINVAL);
    CHECK_RC(put_as(c, "alice",
                    "nolayer/0000000000000000000000000000000000000000000000000000000000000000", 1,
                    0),
             GENCACHE_ENOTFOUND);
    gencache_tenant_options t;
    gencache_tenant_options_init(&t);
    t.name = "alice";
    t.priority = (gencache_priority)7;
    CHECK_RC(gencache_tenant_define(c, &t), GENCACHE_EINVAL);
    char name[16];
    int rc = GENCACHE_OK;
    for (int i = 0; i < GENCACHE_MAX_TENANTS + 1 && rc == GENCACHE_OK; i++) {
        snprintf(name, sizeof name, "t%d", i);
        t.name = name;
        t.priority = GENCACHE_PRIORITY_BATCH;
        rc = gencache_tenant_define(c, &t);
    }
    CHECK_RC(rc, GENCACHE_ELIMIT);
    gencache_tenant_options got;
    CHECK_OK(gencache_tenant_get(c, "t3", &got));
    CHECK_INT_EQ(got.priority, GENCACHE_PRIORITY_BATCH);
    CHECK_RC(gencache_tenant_get(c, "nobody", &got), GENCACHE_ENOTFOUND);
    gencache_close(c);
}

typedef struct quota_arg {
    gencache *c;
    int id;
    int stored;
} quota_arg;

static void *quota_writer(void *p)
{
    quota_arg *a = p;
    char key[GENCACHE__KEY_MAX + 1];
    for (int i = 0; i < 200; i++) {
        tu_key(key, "result", (uint64_t)(a->id * 1000 + i));
        if (put_as(a->c, "alice", key, 1000, 1) == GENCACHE_OK)
            a->stored++;
    }
    return NULL;
}

/* Two threads racing against one quota never take the tenant past it. */
TEST_CASE(quota_holds_under_concurrent_puts)
{
    gencache *c = open_cache(NULL, 0);
    define(c, "alice", 50000, 0);
    pthread_t t[2];
    quota_arg args[2] = {{c, 1, 0}, {c, 2, 0}};
    for (int i = 0; i < 2; i++)
        CHECK(pthread_create(&t[i], NULL, quota_writer, &args[i]) == 0);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    CHECK_UINT_EQ((uint64_t)(args[0].stored + args[1].stored), 50);
    CHECK_UINT_EQ(usage(c, "alice"), 50000);
    gencache_close(c);
}

/* Who may pin is the library's rule: a tenant's own pin is refused (only an admin asks for one),
 * and keys matching a preferred pattern are pinned whoever puts them. */
TEST_CASE(pins_come_from_admins_and_preferred_patterns)
{
    gencache *c = open_cache(NULL, 0);
    define(c, "root", 0, 1);
    CHECK_OK(gencache_preferred_add(c, "text_embedding/*"));
    CHECK_RC(gencache_preferred_add(c, ""), GENCACHE_EINVAL);
    char key[GENCACHE__KEY_MAX + 1];
    gencache_meta m;
    gencache_meta_init(&m);
    m.pinned = 1;
    gencache_caller alice = as("alice"), root = as("root");
    tu_key(key, "result", 1);
    CHECK_RC(gencache_put_as(c, &alice, key, "x", 1, &m), GENCACHE_EPERM);
    CHECK_INT_EQ(read_as(c, "alice", key), -1);
    CHECK_OK(gencache_put_as(c, &root, key, "x", 1, &m));
    const struct {
        const char *layer;
        const gencache_caller *who;
        int pinned;
    } cases[] = {
        {"text_embedding", &alice, 1}, {"text_embedding", NULL, 1}, {"image_latent", &alice, 0}};
    for (size_t i = 0; i < 3; i++) {
        tu_key(key, cases[i].layer, 10 + i);
        CHECK_OK(gencache_put_as(c, cases[i].who, key, "y", 1, NULL));
        gencache_handle *h = NULL;
        CHECK_OK(gencache_peek_as(c, cases[i].who, key, &h));
        CHECK_INT_EQ(gencache_handle_meta(h)->pinned, cases[i].pinned);
        gencache_handle_release(h);
    }
    tu_key(key, "text_embedding", 20);
    CHECK_OK(gencache_put(c, key, "z", 1, NULL)); /* the plain put too */
    gencache_handle *h = NULL;
    CHECK_OK(gencache_peek(c, key, &h));
    CHECK_INT_EQ(gencache_handle_meta(h)->pinned, 1);
    gencache_handle_release(h);
    gencache_close(c);
}
