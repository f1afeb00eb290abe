/*
 * test_writeback.c: what memory decisions may and may not do to the tiers below. Eviction and
 * gencache_demote() move entries down (through the write-back queue) and never delete a durable
 * copy; a probe changes nothing; a clean close leaves every write-back value on disk; a delete
 * or invalidation is never undone by a queued write; hits credit the requester's cost.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include "tier_util.h"

#define VALUE 4000

static gencache *open_cache(const char *dir, uint64_t mem_bytes)
{
    gencache_options o;
    gencache_options_init(&o);
    o.data_dir = dir;
    o.mem_max_bytes = mem_bytes;
    o.ghost_max_entries = 0;
    gencache *c = NULL;
    CHECK_OK(gencache_open(&c, &o));
    return c;
}

static void put_value(gencache *c, const char *layer, uint64_t id, uint64_t cost_ms)
{
    char key[GENCACHE__KEY_MAX + 1];
    unsigned char v[VALUE];
    tu_key(key, layer, id);
    tu_fill(v, sizeof v, id);
    gencache_meta m;
    gencache_meta_init(&m);
    m.cost_ms = cost_ms;
    CHECK_OK(gencache_put(c, key, v, sizeof v, &m));
}

/* Gets key `id` of `layer` and checks its bytes; returns the tier it came from (static). */
static const char *get_value(gencache *c, const char *layer, uint64_t id)
{
    char key[GENCACHE__KEY_MAX + 1];
    unsigned char v[VALUE];
    tu_key(key, layer, id);
    tu_fill(v, sizeof v, id);
    gencache_handle *h = NULL;
    CHECK_OK(gencache_get(c, key, &h));
    CHECK_UINT_EQ(gencache_handle_size(h), sizeof v);
    CHECK_MEM_EQ(gencache_handle_data(h), v, sizeof v);
    const char *tier = gencache_handle_meta(h)->tier;
    gencache_handle_release(h);
    return tier;
}

static gencache_tier_stats tier_stats(gencache *c, unsigned i)
{
    gencache_stats s = {.struct_size = sizeof s};
    CHECK_OK(gencache_stats_get(c, &s));
    CHECK(i < s.n_tiers);
    return s.tiers[i];
}

static uint64_t demote_layer(gencache *c, const char *layer)
{
    gencache_filter f;
    gencache_filter_init(&f);
    f.layer = layer;
    uint64_t n = 0;
    CHECK_OK(gencache_demote(c, &f, &n));
    return n;
}

TEST_CASE(peek_changes_nothing)
{
    char *dir = tu_tmpdir("wb-peek");
    gencache *c = open_cache(dir, 0);
    put_value(c, "result", 1, 10); /* write-through: memory and disk */
    CHECK_UINT_EQ(demote_layer(c, "result"), 1);
    CHECK_UINT_EQ(tier_stats(c, 0).entries, 0);

    char key[GENCACHE__KEY_MAX + 1];
    tu_key(key, "result", 1);
    for (int i = 0; i < 3; i++) {
        gencache_handle *h = NULL;
        CHECK_OK(gencache_peek(c, key, &h));
        CHECK_STR_EQ(gencache_handle_meta(h)->tier, "disk");
        gencache_handle_release(h);
    }
    /* Not promoted, not counted. */
    CHECK_UINT_EQ(tier_stats(c, 0).entries, 0);
    gencache_stats s = {.struct_size = sizeof s};
    CHECK_OK(gencache_stats_get(c, &s));
    CHECK_UINT_EQ(s.layers[0].lookups, 0);
    CHECK_UINT_EQ(s.tiers[1].hits, 0);

    /* A get promotes, and counts the tier that answered. */
    CHECK_STR_EQ(get_value(c, "result", 1), "disk");
    CHECK_STR_EQ(get_value(c, "result", 1), "mem");
    CHECK_OK(gencache_stats_get(c, &s));
    CHECK_UINT_EQ(s.tiers[0].hits, 1);
    CHECK_UINT_EQ(s.tiers[1].hits, 1);
    gencache_close(c);
    tu_rm_rf(dir);
    free(dir);
}

TEST_CASE(peek_never_evicts)
{
    char *dir = tu_tmpdir("wb-peek-evict");
    /* Room for about four values. */
    gencache *c = open_cache(dir, 5 * (VALUE + 512));
    put_value(c, "result", 100, 10);
    demote_layer(c, "result");
    for (uint64_t id = 1; id <= 4; id++)
        put_value(c, "result", id, 10);
    gencache_tier_stats before = tier_stats(c, 0);
    char key[GENCACHE__KEY_MAX + 1];
    tu_key(key, "result", 100);
    gencache_handle *h = NULL;
    CHECK_OK(gencache_peek(c, key, &h));
    gencache_handle_release(h);
    gencache_tier_stats after = tier_stats(c, 0);
    CHECK_UINT_EQ(after.entries, before.entries);
    CHECK_UINT_EQ(after.evictions_capacity, before.evictions_capacity);
    for (uint64_t id = 1; id <= 4; id++)
        CHECK_STR_EQ(get_value(c, "result", id), "mem");
    gencache_close(c);
    tu_rm_rf(dir);
    free(dir);
}

TEST_CASE(demote_keeps_write_back_values)
{
    char *dir = tu_tmpdir("wb-demote");
    gencache *c = open_cache(dir, 0);
    for (uint64_t id = 1; id <= 50; id++)
        put_value(c, "image_latent", id, 10);
    CHECK_UINT_EQ(tier_stats(c, 1).entries, 0); /* write-back: only memory has them */
    CHECK_UINT_EQ(demote_layer(c, "image_latent"), 50);
    CHECK_UINT_EQ(tier_stats(c, 0).entries, 0);
    /* Readable at once, whether still queued or already on disk. */
    for (uint64_t id = 1; id <= 50; id++)
        get_value(c, "image_latent", id);
    CHECK_OK(gencache_flush(c, NULL));
    CHECK_UINT_EQ(tier_stats(c, 1).entries, 50);
    gencache_close(c);
    tu_rm_rf(dir);
    free(dir);
}

TEST_CASE(demote_refuses_empty_filter)
{
    gencache *c = open_cache(NULL, 0);
    gencache_filter f;
    gencache_filter_init(&f);
    uint64_t n = 7;
    CHECK_RC(gencache_demote(c, &f, &n), GENCACHE_EINVAL);
    CHECK_UINT_EQ(n, 0);
    CHECK_RC(gencache_demote(c, NULL, NULL), GENCACHE_EINVAL);
    CHECK_RC(gencache_demote(NULL, &f, NULL), GENCACHE_EINVAL);
    gencache_close(c);
}

TEST_CASE(demote_skips_pinned)
{
    gencache *c = open_cache(NULL, 0);
    char key[GENCACHE__KEY_MAX + 1];
    tu_key(key, "image_latent", 1);
    gencache_meta m;
    gencache_meta_init(&m);
    m.pinned = 1;
    CHECK_OK(gencache_put(c, key, "x", 1, &m));
    CHECK_UINT_EQ(demote_layer(c, "image_latent"), 0);
    CHECK_UINT_EQ(tier_stats(c, 0).entries, 1);
    gencache_close(c);
}

/* Pinned entries cannot be evicted, so they are capped: past the pinned-bytes ceiling a pin is
 * stored as an ordinary entry (and counted), and the ceiling frees up as pins leave. */
TEST_CASE(pinned_bytes_have_a_ceiling)
{
    gencache_options o;
    gencache_options_init(&o);
    o.mem_max_bytes = 1u << 20;
    o.mem_max_pinned_bytes = 3 * (VALUE + 512);
    gencache *c = NULL;
    CHECK_OK(gencache_open(&c, &o));
    char key[GENCACHE__KEY_MAX + 1];
    unsigned char v[VALUE] = {0};
    gencache_meta m;
    gencache_meta_init(&m);
    m.pinned = 1;
    for (uint64_t id = 1; id <= 6; id++) {
        tu_key(key, "image_latent", id);
        CHECK_OK(gencache_put(c, key, v, sizeof v, &m));
    }
    gencache_tier_stats t = tier_stats(c, 0);
    CHECK_UINT_EQ(t.pinned_entries, 3);
    CHECK_UINT_EQ(t.pins_refused, 3);
    CHECK_UINT_LE(t.pinned_bytes, o.mem_max_pinned_bytes);
    tu_key(key, "image_latent", 6);
    gencache_handle *h = NULL;
    CHECK_OK(gencache_peek(c, key, &h));
    CHECK_INT_EQ(gencache_handle_meta(h)->pinned, 0);
    gencache_handle_release(h);
    tu_key(key, "image_latent", 1);
    CHECK_OK(gencache_del(c, key));
    tu_key(key, "image_latent", 7);
    CHECK_OK(gencache_put(c, key, v, sizeof v, &m));
    t = tier_stats(c, 0);
    CHECK_UINT_EQ(t.pinned_entries, 3);
    CHECK_UINT_EQ(t.pins_refused, 3);
    gencache_close(c);

    /* The default ceiling is half of the memory tier. */
    gencache_options_init(&o);
    o.mem_max_bytes = 8 * (VALUE + 512);
    CHECK_OK(gencache_open(&c, &o));
    for (uint64_t id = 1; id <= 8; id++) {
        tu_key(key, "image_latent", id);
        CHECK_OK(gencache_put(c, key, v, sizeof v, &m));
    }
    t = tier_stats(c, 0);
    CHECK_UINT_LE(t.pinned_bytes, o.mem_max_bytes / 2);
    CHECK(t.pins_refused >= 4);
    gencache_close(c);
}

TEST_CASE(clean_close_persists_write_back_layers)
{
    char *dir = tu_tmpdir("wb-close");
    gencache *c = open_cache(dir, 0);
    const char *layers[] = {"image_latent", "text_embedding", "condition", "result"};
    for (size_t l = 0; l < 4; l++)
        for (uint64_t id = 1; id <= 20; id++)
            put_value(c, layers[l], id, 10);
    put_value(c, "session", 1, 10);
    gencache_close(c);

    c = open_cache(dir, 0);
    for (size_t l = 0; l < 4; l++)
        for (uint64_t id = 1; id <= 20; id++)
            CHECK_STR_EQ(get_value(c, layers[l], id), "disk");
    /* In-flight session state does not outlive the process. */
    char key[GENCACHE__KEY_MAX + 1];
    tu_key(key, "session", 1);
    gencache_handle *h = NULL;
    CHECK_RC(gencache_get(c, key, &h), GENCACHE_ENOTFOUND);
    gencache_close(c);
    tu_rm_rf(dir);
    free(dir);
}

TEST_CASE(eviction_demotes_without_loss)
{
    char *dir = tu_tmpdir("wb-evict");
    /* Memory holds ~8 values; 400 are stored: every one must stay readable throughout. */
    gencache *c = open_cache(dir, 8 * (VALUE + 512));
    for (uint64_t id = 1; id <= 400; id++) {
        put_value(c, "text_embedding", id, 10);
        if (id % 50 == 0)
            for (uint64_t back = id - 49; back <= id; back += 7)
                get_value(c, "text_embedding", back);
    }
    for (uint64_t id = 1; id <= 400; id++)
        get_value(c, "text_embedding", id);
    CHECK_OK(gencache_flush(c, NULL));
    CHECK_UINT_EQ(tier_stats(c, 1).entries, 400);
    gencache_close(c);
    tu_rm_rf(dir);
    free(dir);
}

TEST_CASE(delete_is_not_undone_by_a_queued_write)
{
    char *dir = tu_tmpdir("wb-del");
    gencache *c = open_cache(dir, 0);
    for (uint64_t id = 1; id <= 200; id++)
        put_value(c, "image_latent", id, 10);
    demote_layer(c, "image_latent"); /* 200 writes queued */
    char key[GENCACHE__KEY_MAX + 1];
    for (uint64_t id = 1; id <= 200; id += 2) {
        tu_key(key, "image_latent", id);
        CHECK_OK(gencache_del(c, key));
    }
    gencache_filter f;
    gencache_filter_init(&f);
    tu_key(key, "image_latent", 200);
    f.key = key;
    uint64_t n = 0;
    CHECK_OK(gencache_invalidate(c, &f, &n));
    CHECK_UINT_EQ(n, 1);
    gencache_close(c);

    c = open_cache(dir, 0);
    for (uint64_t id = 1; id <= 200; id++) {
        tu_key(key, "image_latent", id);
        gencache_handle *h = NULL;
        int rc = gencache_get(c, key, &h);
        CHECK_INT_EQ(rc, (id % 2 == 1 || id == 200) ? GENCACHE_ENOTFOUND : GENCACHE_OK);
        gencache_handle_release(h);
    }
    gencache_close(c);
    tu_rm_rf(dir);
    free(dir);
}

TEST_CASE(newer_value_wins_over_queued_one)
{
    char *dir = tu_tmpdir("wb-newer");
    gencache *c = open_cache(dir, 0);
    char key[GENCACHE__KEY_MAX + 1];
    tu_key(key, "image_latent", 1);
    CHECK_OK(gencache_put(c, key, "old", 3, NULL));
    demote_layer(c, "image_latent");
    CHECK_OK(gencache_put(c, key, "new!", 4, NULL));
    gencache_close(c);
    c = open_cache(dir, 0);
    gencache_handle *h = NULL;
    CHECK_OK(gencache_get(c, key, &h));
    CHECK_UINT_EQ(gencache_handle_size(h), 4);
    CHECK_MEM_EQ(gencache_handle_data(h), "new!", 4);
    gencache_handle_release(h);
    gencache_close(c);
    tu_rm_rf(dir);
    free(dir);
}

TEST_CASE(full_memory_is_not_pressure)
{
    char *dir = tu_tmpdir("wb-pressure");
    gencache *c = open_cache(dir, 16 * (VALUE + 512));
    for (uint64_t id = 1; id <= 160; id++) /* memory filled ten times over */
        put_value(c, "result", id, 10);
    gencache_pressure p = {.struct_size = sizeof p};
    CHECK_OK(gencache_pressure_get(c, &p));
    CHECK(p.mem_ratio > 0.8);
    CHECK_INT_EQ(p.degraded, 0);
    CHECK_UINT_EQ(p.writeback_max_bytes, 64ull << 20);
    /* TTLs stay what the layer says. */
    gencache_layer_options lo = {.struct_size = sizeof lo};
    gencache_layer_options_init(&lo);
    CHECK_OK(gencache_layer_get(c, "result", &lo));
    char key[GENCACHE__KEY_MAX + 1];
    for (uint64_t id = 1; id <= 160; id += 13) {
        tu_key(key, "result", id);
        gencache_handle *h = NULL;
        CHECK_OK(gencache_peek(c, key, &h));
        const gencache_meta *m = gencache_handle_meta(h);
        CHECK_UINT_EQ(m->ttl_ms, lo.ttl_ms);
        gencache_handle_release(h);
    }
    gencache_pressure bad = {.struct_size = 1};
    CHECK_RC(gencache_pressure_get(c, &bad), GENCACHE_EINVAL);
    gencache_close(c);
    tu_rm_rf(dir);
    free(dir);
}

TEST_CASE(hit_credits_the_requesters_cost)
{
    gencache *c = open_cache(NULL, 0);
    put_value(c, "result", 1, 100);
    char key[GENCACHE__KEY_MAX + 1];
    tu_key(key, "result", 1);
    gencache_caller lo;
    gencache_caller_init(&lo);
    lo.cost_ms = 2500;
    gencache_handle *h = NULL;
    CHECK_OK(gencache_get_as(c, &lo, key, &h));
    CHECK_UINT_EQ(gencache_handle_meta(h)->cost_ms, 100); /* the stored cost is unchanged */
    gencache_handle_release(h);
    CHECK_OK(gencache_get_as(c, NULL, key, &h)); /* no cost given: the stored one */
    gencache_handle_release(h);
    gencache_stats s = {.struct_size = sizeof s};
    CHECK_OK(gencache_stats_get(c, &s));
    CHECK_UINT_EQ(s.layers[0].cost_ms_saved, 2600);
    lo.struct_size = 1;
    CHECK_RC(gencache_get_as(c, &lo, key, &h), GENCACHE_EINVAL);
    CHECK(h == NULL);
    gencache_close(c);
}

typedef struct writer_arg {
    gencache *c;
    uint64_t first, count;
} writer_arg;

static void *writer(void *p)
{
    writer_arg *a = p;
    for (uint64_t id = a->first; id < a->first + a->count; id++) {
        put_value(a->c, (id & 1) ? "image_latent" : "result", id, 10);
        uint64_t back = a->first + (id * 7919) % (id - a->first + 1);
        get_value(a->c, (back & 1) ? "image_latent" : "result", back);
    }
    return NULL;
}

/* Two threads fill memory ten times over with durable layers, with a queue small enough to
 * stall: nothing is lost, on disk or after a restart. */
TEST_CASE(pressure_under_load_loses_nothing)
{
    char *dir = tu_tmpdir("wb-load");
    gencache_options o;
    gencache_options_init(&o);
    o.data_dir = dir;
    o.mem_max_bytes = 40 * (VALUE + 512);
    o.writeback_max_bytes = 4 * (VALUE + 512);
    gencache *c = NULL;
    CHECK_OK(gencache_open(&c, &o));
    pthread_t t[2];
    writer_arg args[2] = {{c, 1, 200}, {c, 1001, 200}};
    for (int i = 0; i < 2; i++)
        CHECK(pthread_create(&t[i], NULL, writer, &args[i]) == 0);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    gencache_close(c);
    c = open_cache(dir, 0);
    for (int i = 0; i < 2; i++)
        for (uint64_t id = args[i].first; id < args[i].first + args[i].count; id++)
            CHECK_STR_EQ(get_value(c, (id & 1) ? "image_latent" : "result", id), "disk");
    gencache_close(c);
    tu_rm_rf(dir);
    free(dir);
}

/* A full disk (a file-size limit in a child process): a write-through put that cannot reach disk
 * fails, stores nothing anywhere, and every put that was acknowledged is on disk after a restart.
 */
TEST_CASE(write_through_put_fails_when_the_disk_is_full)
{
    char *dir = tu_tmpdir("wb-full");
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit rl = {4u << 20, RLIM_INFINITY};
        CHECK(setrlimit(RLIMIT_FSIZE, &rl) == 0);
        gencache *c = open_cache(dir, 0);
        char key[GENCACHE__KEY_MAX + 1];
        static unsigned char v[300 << 10];
        uint64_t acked = 0;
        int rc = GENCACHE_OK;
        for (uint64_t id = 1; id <= 200 && rc == GENCACHE_OK; id++) {
            tu_key(key, "result", id);
            tu_fill(v, sizeof v, id);
            rc = gencache_put(c, key, v, sizeof v, NULL);
            if (rc == GENCACHE_OK)
                acked = id;
        }
        /* LMDB reports the limit as ENOSPC or, mid-commit, as an I/O error. */
        if (rc != GENCACHE_EIO)
            CHECK_INT_EQ(rc, GENCACHE_ENOSPC);
        CHECK(acked >= 1);
        /* The refused value is nowhere, memory included. */
        tu_key(key, "result", acked + 1);
        gencache_handle *h = NULL;
        CHECK_RC(gencache_get(c, key, &h), GENCACHE_ENOTFOUND);
        gencache_close(c);
        struct rlimit open_rl = {RLIM_INFINITY, RLIM_INFINITY};
        CHECK(setrlimit(RLIMIT_FSIZE, &open_rl) == 0);
        c = open_cache(dir, 0);
        for (uint64_t id = 1; id <= acked; id++) {
            tu_key(key, "result", id);
            tu_fill(v, sizeof v, id);
            CHECK_OK(gencache_get(c, key, &h));
            CHECK_STR_EQ(gencache_handle_meta(h)->tier, "disk");
            CHECK_MEM_EQ(gencache_handle_data(h), v, sizeof v);
            gencache_handle_release(h);
        }
        gencache_close(c);
        _exit(0);
    }
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    tu_rm_rf(dir);
    free(dir);
}

/* The pressure policy: at warn_ratio batch tenants' entries leave memory (and only memory); while
 * the tiers below cannot keep up (here: a disk tier filled to its limit) new entries of every
 * caller but high-priority tenants get the capped TTL; when that passes, TTLs are whole again. */
TEST_CASE(pressure_policy_demotes_batch_then_caps_ttls)
{
    char *dir = tu_tmpdir("wb-policy");
    gencache_options o;
    gencache_options_init(&o);
    o.data_dir = dir;
    o.mem_max_bytes = 64 * (VALUE + 512);
    o.disk_max_bytes = 4ull << 20;
    o.pressure_warn_ratio = 0.5;
    o.pressure_ttl_ms = 1000;
    gencache *c = NULL;
    CHECK_OK(gencache_open(&c, &o));
    gencache_tenant_options t;
    gencache_tenant_options_init(&t);
    t.name = "bulk";
    t.priority = GENCACHE_PRIORITY_BATCH;
    CHECK_OK(gencache_tenant_define(c, &t));
    t.name = "vip";
    t.priority = GENCACHE_PRIORITY_HIGH;
    CHECK_OK(gencache_tenant_define(c, &t));
    gencache_caller bulk, vip, plain;
    gencache_caller_init(&bulk);
    bulk.tenant = "bulk";
    gencache_caller_init(&vip);
    vip.tenant = "vip";
    gencache_caller_init(&plain);
    plain.tenant = "plain";
    char key[GENCACHE__KEY_MAX + 1];
    unsigned char v[VALUE];
    for (uint64_t id = 1; id <= 40; id++) {
        tu_key(key, "image_latent", id);
        tu_fill(v, sizeof v, id);
        CHECK_OK(gencache_put_as(c, id <= 30 ? &bulk : &vip, key, v, sizeof v, NULL));
    }
    gencache_pressure p = {.struct_size = sizeof p};
    CHECK_OK(gencache_pressure_relieve(c, &p));
    CHECK_INT_EQ(p.level, 1);
    CHECK_UINT_EQ(p.batch_demoted, 30);
    CHECK_INT_EQ(p.degraded, 0);
    CHECK_OK(gencache_flush(c, NULL));
    for (uint64_t id = 1; id <= 40; id++) {
        tu_key(key, "image_latent", id);
        gencache_handle *h = NULL;
        CHECK_OK(gencache_peek_as(c, id <= 30 ? &bulk : &vip, key, &h));
        CHECK_STR_EQ(gencache_handle_meta(h)->tier, id <= 30 ? "disk" : "mem");
        gencache_handle_release(h);
    }

    /* Fill the disk tier to its limit: from now on the report is degraded. */
    for (uint64_t id = 100; id < 100 + (4u << 20) / VALUE + 64; id++) {
        tu_key(key, "result", id);
        CHECK_OK(gencache_put(c, key, v, sizeof v, NULL));
    }
    CHECK_OK(gencache_pressure_relieve(c, &p));
    CHECK(p.disk_ratio > 0.95);
    CHECK_INT_EQ(p.level, 2);
    gencache_layer_options lo = {.struct_size = sizeof lo};
    gencache_layer_options_init(&lo);
    CHECK_OK(gencache_layer_get(c, "result", &lo));
    const gencache_caller *who[] = {&plain, &vip, NULL};
    const uint64_t want[] = {1000, lo.ttl_ms, 1000};
    for (int i = 0; i < 3; i++) {
        tu_key(key, "result", 900 + (uint64_t)i);
        CHECK_OK(gencache_put_as(c, who[i], key, v, 16, NULL));
        gencache_handle *h = NULL;
        CHECK_OK(gencache_peek_as(c, who[i], key, &h));
        CHECK_UINT_EQ(gencache_handle_meta(h)->ttl_ms, want[i]);
        gencache_handle_release(h);
    }
    gencache_pressure bad = {.struct_size = 2};
    CHECK_RC(gencache_pressure_relieve(c, &bad), GENCACHE_EINVAL);
    CHECK_RC(gencache_pressure_relieve(NULL, NULL), GENCACHE_EINVAL);
    gencache_close(c);
    tu_rm_rf(dir);
    free(dir);
}

/* ---- batches: the queue driven directly, with a writer that waits at a gate ---- */

typedef struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int started, finished, allowed; /* batches */
    size_t last_n;                  /* jobs in the batch that started last */
    uint64_t jobs;                  /* jobs written */
} gate;

static void gated_many(void *ud, gencache__entry *const *es, const unsigned *targets, size_t n)
{
    (void)es;
    (void)targets;
    gate *g = ud;
    pthread_mutex_lock(&g->mu);
    g->started++;
    g->last_n = n;
    pthread_cond_broadcast(&g->cv);
    while (g->finished >= g->allowed)
        pthread_cond_wait(&g->cv, &g->mu);
    g->finished++;
    g->jobs += n;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

static void gated_one(void *ud, gencache__entry *e, unsigned targets)
{
    gated_many(ud, &e, &targets, 1);
}

static void gate_allow(gate *g, int batches)
{
    pthread_mutex_lock(&g->mu);
    g->allowed = batches;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

static void gate_wait_started(gate *g, int batches)
{
    pthread_mutex_lock(&g->mu);
    while (g->started < batches)
        pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
}

#define BATCH_KEYS 11

/* Opens a queue whose writer is blocked in a batch of keys 1..10 (key 0 went alone first). */
static gencache__writeback *open_blocked_batch(gate *g, gencache__entry **es, uint64_t bound)
{
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    gencache__writeback *wb = NULL;
    CHECK_OK(gencache__writeback_open(NULL, bound, gated_one, g, &wb));
    CHECK_OK(gencache__writeback_set_batch(wb, gated_many, 256, 64u << 20));
    for (uint64_t i = 0; i < BATCH_KEYS; i++)
        es[i] = tu_entry(&(tu_spec){.layer = "image_latent", .id = i, .size = 100});
    gencache__writeback_push(wb, es[0], GENCACHE__WB_DISK);
    gate_wait_started(g, 1); /* the writer holds key 0; the others queue up behind it */
    for (uint64_t i = 1; i < BATCH_KEYS; i++)
        gencache__writeback_push(wb, es[i], GENCACHE__WB_DISK);
    gate_allow(g, 1);
    gate_wait_started(g, 2);
    CHECK_UINT_EQ(g->last_n, BATCH_KEYS - 1);
    return wb;
}

static void close_blocked_batch(gate *g, gencache__writeback *wb, gencache__entry **es)
{
    gate_allow(g, 1000);
    gencache__writeback_close(wb);
    for (uint64_t i = 0; i < BATCH_KEYS; i++)
        gencache__entry_release(es[i]);
    pthread_cond_destroy(&g->cv);
    pthread_mutex_destroy(&g->mu);
}

TEST_CASE(batch_being_written_stays_findable)
{
    gate g = {0};
    gencache__entry *es[BATCH_KEYS];
    gencache__writeback *wb = open_blocked_batch(&g, es, 64u << 20);
    gencache__writeback_stats st;
    gencache__writeback_get_stats(wb, &st);
    CHECK_UINT_EQ(st.queued_entries, 0); /* all ten are in the writer's hands */
    for (uint64_t i = 1; i < BATCH_KEYS; i++) {
        gencache__entry *e = gencache__writeback_find(wb, es[i]->key, es[i]->hash);
        CHECK(e == es[i]);
        gencache__entry_release(e);
    }
    /* A newer value of a key being written queues behind the batch and is the one found. */
    gencache__entry *newer = tu_entry(&(tu_spec){.layer = "image_latent", .id = 3, .size = 200});
    gencache__writeback_push(wb, newer, GENCACHE__WB_DISK);
    gencache__entry *e = gencache__writeback_find(wb, newer->key, newer->hash);
    CHECK(e == newer);
    gencache__entry_release(e);
    gate_allow(&g, 3); /* the batch, then the newer value */
    gencache__writeback_drain(wb);
    CHECK_UINT_EQ(g.jobs, BATCH_KEYS + 1);
    CHECK(gencache__writeback_find(wb, es[5]->key, es[5]->hash) == NULL);
    gencache__entry_release(newer);
    close_blocked_batch(&g, wb, es);
}

typedef struct forget_arg {
    gencache__writeback *wb;
    gencache__entry *e;
    gate *g;
    int finished_at_return; /* batches the writer had finished when forget returned */
    bool withdrew;
} forget_arg;

static void *forget_thread(void *p)
{
    forget_arg *a = p;
    a->withdrew = gencache__writeback_forget(a->wb, a->e->key, a->e->hash);
    pthread_mutex_lock(&a->g->mu);
    a->finished_at_return = a->g->finished;
    pthread_mutex_unlock(&a->g->mu);
    return NULL;
}

/* A delete of a key in the batch being written waits for the batch: the delete that follows
 * the forget then runs after the write, so the write cannot undo it. */
TEST_CASE(forget_waits_out_the_batch_being_written)
{
    gate g = {0};
    gencache__entry *es[BATCH_KEYS];
    gencache__writeback *wb = open_blocked_batch(&g, es, 64u << 20);
    forget_arg a = {.wb = wb, .e = es[7], .g = &g, .finished_at_return = -1};
    pthread_t t;
    CHECK(pthread_create(&t, NULL, forget_thread, &a) == 0);
    struct timespec pause = {0, 50 * 1000 * 1000};
    nanosleep(&pause, NULL);
    pthread_mutex_lock(&g.mu);
    CHECK_INT_EQ(a.finished_at_return, -1); /* still waiting */
    pthread_mutex_unlock(&g.mu);
    gate_allow(&g, 2);
    pthread_join(t, NULL);
    CHECK_INT_EQ(a.finished_at_return, 2);
    CHECK(!a.withdrew); /* it was being written, not queued */
    CHECK(gencache__writeback_find(wb, es[7]->key, es[7]->hash) == NULL);
    close_blocked_batch(&g, wb, es);
}

typedef struct room_arg {
    gencache__writeback *wb;
    gate *g;
    int finished_at_return;
} room_arg;

static void *room_thread(void *p)
{
    room_arg *r = p;
    gencache__writeback_wait_room(r->wb);
    pthread_mutex_lock(&r->g->mu);
    r->finished_at_return = r->g->finished;
    pthread_mutex_unlock(&r->g->mu);
    return NULL;
}

/* The bytes of the batch being written still count against the queue's bound. */
TEST_CASE(batch_bytes_count_against_the_bound)
{
    gate g = {0};
    gencache__entry *es[BATCH_KEYS];
    uint64_t charge = 0;
    {
        gencache__entry *probe = tu_entry(&(tu_spec){.layer = "image_latent", .size = 100});
        charge = probe->charge;
        gencache__entry_release(probe);
    }
    /* Room for the batch of ten plus two more. */
    gencache__writeback *wb = open_blocked_batch(&g, es, 12 * charge);
    gencache__writeback_stats st;
    gencache__entry *more[3];
    for (uint64_t i = 0; i < 2; i++) {
        more[i] = tu_entry(&(tu_spec){.layer = "image_latent", .id = 100 + i, .size = 100});
        gencache__writeback_push_nowait(wb, more[i], GENCACHE__WB_DISK);
    }
    gencache__writeback_get_stats(wb, &st);
    CHECK_UINT_EQ(st.stalls, 0);
    more[2] = tu_entry(&(tu_spec){.layer = "image_latent", .id = 102, .size = 100});
    gencache__writeback_push_nowait(wb, more[2], GENCACHE__WB_DISK); /* over the bound now */
    room_arg r = {.wb = wb, .g = &g, .finished_at_return = -1};
    pthread_t t;
    CHECK(pthread_create(&t, NULL, room_thread, &r) == 0);
    struct timespec pause = {0, 50 * 1000 * 1000};
    nanosleep(&pause, NULL);
    pthread_mutex_lock(&g.mu);
    CHECK_INT_EQ(r.finished_at_return, -1); /* waiting: the queue alone is within the bound */
    pthread_mutex_unlock(&g.mu);
    gate_allow(&g, 2); /* the batch ends: room again */
    pthread_join(t, NULL);
    CHECK_INT_EQ(r.finished_at_return, 2);
    gencache__writeback_get_stats(wb, &st);
    CHECK_UINT_EQ(st.stalls, 1);
    for (int i = 0; i < 3; i++)
        gencache__entry_release(more[i]);
    close_blocked_batch(&g, wb, es);
}

typedef struct churn_arg {
    gencache *c;
    uint64_t first, count;
    bool invalidate; /* remove by gencache_invalidate() on the key, not gencache_del() */
} churn_arg;

/* Puts a write-back key, reads it back (from memory, the queue or disk), and deletes every third
 * one, which must then miss, while other threads do the same. */
static void *churn(void *p)
{
    churn_arg *a = p;
    char key[GENCACHE__KEY_MAX + 1];
    for (uint64_t id = a->first; id < a->first + a->count; id++) {
        put_value(a->c, "image_latent", id, 10);
        get_value(a->c, "image_latent", id);
        if (id % 3 == 0) {
            tu_key(key, "image_latent", id);
            if (a->invalidate) {
                gencache_filter f;
                gencache_filter_init(&f);
                f.key = key;
                CHECK_OK(gencache_invalidate(a->c, &f, NULL));
            } else {
                CHECK_OK(gencache_del(a->c, key));
            }
            gencache_handle *h = NULL;
            CHECK_RC(gencache_get(a->c, key, &h), GENCACHE_ENOTFOUND);
        }
    }
    return NULL;
}

/* Three threads churn through a memory tier a tenth of their data, so the writer takes batches
 * while gets look in them and deletes race them; after a restart every deleted key is absent and
 * every other one is on disk. */
static void churn_and_check(bool invalidate)
{
    char *dir = tu_tmpdir("wb-churn");
    gencache_options o;
    gencache_options_init(&o);
    o.data_dir = dir;
    o.mem_max_bytes = 30 * (VALUE + 512);
    o.ghost_max_entries = 0;
    gencache *c = NULL;
    CHECK_OK(gencache_open(&c, &o));
    pthread_t t[3];
    churn_arg args[3] = {
        {c, 1, 100, invalidate}, {c, 1001, 100, invalidate}, {c, 2001, 100, invalidate}};
    for (int i = 0; i < 3; i++)
        CHECK(pthread_create(&t[i], NULL, churn, &args[i]) == 0);
    for (int i = 0; i < 3; i++)
        pthread_join(t[i], NULL);
    gencache_close(c);
    c = open_cache(dir, 0);
    char key[GENCACHE__KEY_MAX + 1];
    for (int i = 0; i < 3; i++)
        for (uint64_t id = args[i].first; id < args[i].first + args[i].count; id++) {
            if (id % 3 != 0) {
                CHECK_STR_EQ(get_value(c, "image_latent", id), "disk");
                continue;
            }
            tu_key(key, "image_latent", id);
            gencache_handle *h = NULL;
            CHECK_RC(gencache_get(c, key, &h), GENCACHE_ENOTFOUND);
        }
    gencache_close(c);
    tu_rm_rf(dir);
    free(dir);
}

TEST_CASE(batches_under_concurrent_puts_gets_and_deletes)
{
    churn_and_check(false);
}

/* The same with invalidation, which sweeps the queue and the tiers by filter. */
TEST_CASE(batches_under_concurrent_puts_gets_and_invalidations)
{
    churn_and_check(true);
}

/* A group write that evicts its own earlier values from a small disk tier: those values are
 * still in memory and must count as not on disk, so the next flush writes them again. */
TEST_CASE(value_evicted_within_its_group_is_flushed_again)
{
    char *dir = tu_tmpdir("wb-group-evict");
    gencache_options o;
    gencache_options_init(&o);
    o.data_dir = dir;
    o.disk_max_entries = 4;
    o.ghost_max_entries = 0;
    gencache *c = NULL;
    CHECK_OK(gencache_open(&c, &o));
    for (uint64_t id = 1; id <= 10; id++)
        put_value(c, "image_latent", id, 10);
    uint64_t n = 0;
    CHECK_OK(gencache_flush(c, &n));
    CHECK_UINT_EQ(n, 10);
    CHECK_UINT_EQ(tier_stats(c, 1).entries, 4);
    CHECK_OK(gencache_flush(c, &n));
    CHECK_UINT_EQ(n, 6); /* the six the group's later values pushed out */
    gencache_close(c);
    tu_rm_rf(dir);
    free(dir);
}
