/*
 * test_trajectory.c: approximate step reuse (src/reuse/trajectory.c, traj_index.c): known
 * neighbours and the threshold table, the best step winning, f16 embeddings, dimension
 * mismatches refused with a message, records leaving the index with their entries (del,
 * invalidation, eviction), tenant scope, concurrent stores, lookups and deletes, and the index
 * beyond one process: traj.idx read back after a restart, and the index rebuilt from the disk
 * tier when that file is lost or damaged.
 */
#include <math.h>
#include <pthread.h>
#include <sys/stat.h>

#include "test.h"

#define DIM 64

static const char *const fields[] = {"model", "prompt", "step"};

static void on_log(void *ud, gencache_log_level level, const char *msg)
{
    (void)level;
    char *last = ud;
    snprintf(last, 512, "%s", msg);
}

/* dir NULL: memory only. */
static gencache *open_dir(const char *dir, uint64_t mem_entries, uint64_t disk_entries,
                          gencache_scope scope, char *log_buf)
{
    gencache_options o;
    gencache_options_init(&o);
    o.data_dir = dir;
    o.mem_max_entries = mem_entries;
    o.disk_max_entries = disk_entries;
    if (log_buf) {
        o.log_fn = on_log;
        o.log_userdata = log_buf;
    }
    gencache *c = NULL;
    CHECK_OK(gencache_open(&c, &o));
    gencache_layer_options l = {.struct_size = sizeof l};
    gencache_layer_options_init(&l);
    l.name = "trajectory";
    l.fields = fields;
    l.n_fields = 3;
    l.scope = scope;
    CHECK_OK(gencache_layer_define(c, &l));
    return c;
}

static gencache *open_traj(uint64_t max_entries, gencache_scope scope, char *log_buf)
{
    return open_dir(NULL, max_entries, 0, scope, log_buf);
}

/* A unit vector along axis a, turned towards axis b so that its cosine with axis a is cos. */
static void vec(float *v, int a, int b, double cos)
{
    memset(v, 0, sizeof(float) * DIM);
    v[a] = (float)cos;
    v[b] = (float)sqrt(1 - cos * cos);
}

static int store(gencache *c, const gencache_caller *who, const char *model, const char *prompt,
                 unsigned step, const float *emb, size_t dim, char *key)
{
    char json[256];
    snprintf(json, sizeof json, "{\"model\": \"%s\", \"prompt\": \"%s\", \"step\": %u}", model,
             prompt, step);
    gencache_keyspace *ks = NULL;
    CHECK_OK(gencache_keyspace_from_cache(c, &ks));
    gencache_request *req = NULL;
    CHECK_OK(gencache_request_parse(ks, json, strlen(json), 0, &req));
    gencache_keyspace_free(ks);
    char value[64];
    snprintf(value, sizeof value, "%s@%u", prompt, step);
    int rc = gencache_trajectory_store(c, who, req, "trajectory", step, GENCACHE_DTYPE_F32, emb,
                                       dim, value, strlen(value), NULL, key);
    gencache_request_free(req);
    return rc;
}

/* The lookup's value ("" on a miss) and match. */
static int lookup(gencache *c, const gencache_caller *who, const char *model, const float *emb,
                  size_t dim, gencache_trajectory_match *m, char *value)
{
    gencache_handle *h = NULL;
    m->struct_size = sizeof *m;
    value[0] = '\0';
    int rc = gencache_trajectory_lookup(c, who, "trajectory", model, GENCACHE_DTYPE_F32, emb, dim,
                                        &h, m);
    if (rc == GENCACHE_OK) {
        size_t n = gencache_handle_size(h);
        memcpy(value, gencache_handle_data(h), n);
        value[n] = '\0';
        gencache_handle_release(h);
    } else {
        CHECK(h == NULL);
    }
    return rc;
}

TEST_CASE(known_neighbours_and_thresholds)
{
    gencache *c = open_traj(0, GENCACHE_SCOPE_GLOBAL, NULL);
    float e[DIM], q[DIM];
    vec(e, 0, 1, 1.0);
    char key[GENCACHE_KEY_MAX];
    for (unsigned s = 5; s <= 25; s += 5)
        CHECK_OK(store(c, NULL, "m1", "a red fox", s, e, DIM, key));
    vec(e, 2, 3, 1.0);
    CHECK_OK(store(c, NULL, "m1", "a blue bird", 10, e, DIM, key));
    gencache_trajectory_match m;
    char value[64];
    /* Each threshold row: just above it, its step; just below, the previous row's. */
    static const struct {
        double cos;
        unsigned step;
    } rows[] = {{0.96, 25}, {0.94, 20}, {0.91, 20}, {0.89, 15}, {0.86, 15}, {0.84, 10},
                {0.81, 10}, {0.79, 5},  {0.71, 5},  {0.69, 0},  {0.0, 0}};
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        vec(q, 0, 5, rows[i].cos);
        int rc = lookup(c, NULL, "m1", q, DIM, &m, value);
        if (rows[i].step == 0) {
            CHECK_INT_EQ(rc, GENCACHE_ENOTFOUND);
            CHECK_STR_EQ(m.key, "");
            continue;
        }
        CHECK_OK(rc);
        CHECK_UINT_EQ(m.step, rows[i].step);
        CHECK_DBL_NEAR(m.similarity, rows[i].cos, 1e-5);
        char want[64];
        snprintf(want, sizeof want, "a red fox@%u", rows[i].step);
        CHECK_STR_EQ(value, want);
        CHECK(strncmp(m.key, "trajectory/", 11) == 0);
    }
    /* The other neighbour, and a vector scaled (cosine ignores length). */
    vec(q, 2, 4, 0.99);
    for (int i = 0; i < DIM; i++)
        q[i] *= 7.5f;
    CHECK_OK(lookup(c, NULL, "m1", q, DIM, &m, value));
    CHECK_STR_EQ(value, "a blue bird@10");
    /* Another model holds nothing. */
    CHECK_INT_EQ(lookup(c, NULL, "m2", q, DIM, &m, value), GENCACHE_ENOTFOUND);
    gencache_trajectory_stats st = {.struct_size = sizeof st};
    CHECK_OK(gencache_trajectory_stats_get(c, &st));
    CHECK_UINT_EQ(st.vectors, 6);
    CHECK_UINT_EQ(st.misses, 3);
    CHECK_UINT_EQ(st.hits, 10);
    gencache_close(c);
}

TEST_CASE(custom_table_per_model)
{
    gencache *c = open_traj(0, GENCACHE_SCOPE_GLOBAL, NULL);
    gencache_trajectory_threshold t[] = {{0.99f, 40}, {0.5f, 2}};
    CHECK_OK(gencache_trajectory_set_thresholds(c, "m1", t, 2));
    gencache_trajectory_threshold got[8];
    size_t n = 0;
    CHECK_OK(gencache_trajectory_get_thresholds(c, "m1", got, 8, &n));
    CHECK_UINT_EQ(n, 2);
    CHECK(got[0].similarity == 0.5f && got[0].step == 2); /* sorted */
    CHECK_RC(gencache_trajectory_get_thresholds(c, "m1", got, 1, &n), GENCACHE_ELIMIT);
    CHECK_OK(gencache_trajectory_get_thresholds(c, "other", got, 8, &n));
    CHECK_UINT_EQ(n, 5); /* the default */
    float e[DIM], q[DIM];
    vec(e, 0, 1, 1.0);
    char key[GENCACHE_KEY_MAX], value[64];
    CHECK_OK(store(c, NULL, "m1", "p", 2, e, DIM, key));
    CHECK_OK(store(c, NULL, "m2", "p", 5, e, DIM, key));
    gencache_trajectory_match m;
    vec(q, 0, 1, 0.6);
    CHECK_OK(lookup(c, NULL, "m1", q, DIM, &m, value));
    CHECK_UINT_EQ(m.step, 2);
    CHECK_INT_EQ(lookup(c, NULL, "m2", q, DIM, &m, value), GENCACHE_ENOTFOUND);
    /* Bad tables. */
    gencache_trajectory_threshold bad[] = {{1.5f, 3}};
    CHECK_RC(gencache_trajectory_set_thresholds(c, "m1", bad, 1), GENCACHE_EINVAL);
    bad[0] = (gencache_trajectory_threshold){0.5f, 0};
    CHECK_RC(gencache_trajectory_set_thresholds(c, "m1", bad, 1), GENCACHE_EINVAL);
    CHECK_RC(gencache_trajectory_set_thresholds(c, NULL, NULL, 0), GENCACHE_EINVAL);
    /* Back to the default for m1: 0.6 is too far. */
    CHECK_OK(gencache_trajectory_set_thresholds(c, "m1", NULL, 0));
    CHECK_INT_EQ(lookup(c, NULL, "m1", q, DIM, &m, value), GENCACHE_ENOTFOUND);
    gencache_close(c);
}

TEST_CASE(dimension_mismatch_refused)
{
    char log_buf[512] = "";
    gencache *c = open_traj(0, GENCACHE_SCOPE_GLOBAL, log_buf);
    float e[DIM] = {1};
    char key[GENCACHE_KEY_MAX], value[64];
    CHECK_OK(store(c, NULL, "m1", "p", 5, e, DIM, key));
    CHECK_RC(store(c, NULL, "m1", "q", 5, e, DIM - 1, key), GENCACHE_EINVAL);
    CHECK(strstr(log_buf, "64-dimensional") != NULL);
    CHECK(strstr(log_buf, "63") != NULL);
    gencache_trajectory_match m;
    log_buf[0] = '\0';
    CHECK_RC(lookup(c, NULL, "m1", e, 32, &m, value), GENCACHE_EINVAL);
    CHECK(strstr(log_buf, "has 32") != NULL);
    /* Another model may have its own dimension. */
    CHECK_OK(store(c, NULL, "m2", "p", 5, e, 32, key));
    CHECK_OK(lookup(c, NULL, "m2", e, 32, &m, value));
    /* Zero vectors, NaN, bad dtypes, step 0, unknown layer. */
    float z[DIM] = {0};
    CHECK_RC(store(c, NULL, "m1", "z", 5, z, DIM, key), GENCACHE_EINVAL);
    CHECK_STR_EQ(key, ""); /* refused before anything was stored */
    CHECK_RC(lookup(c, NULL, "m1", z, DIM, &m, value), GENCACHE_EINVAL);
    z[3] = NAN;
    CHECK_RC(lookup(c, NULL, "m1", z, DIM, &m, value), GENCACHE_EINVAL);
    CHECK_RC(store(c, NULL, "m1", "p", 0, e, DIM, key), GENCACHE_EINVAL);
    gencache_handle *h = NULL;
    CHECK_RC(gencache_trajectory_lookup(c, NULL, "trajectory", "m1", GENCACHE_DTYPE_I8, e, DIM, &h,
                                        NULL),
             GENCACHE_EINVAL);
    CHECK_RC(
        gencache_trajectory_lookup(c, NULL, "nope", "m1", GENCACHE_DTYPE_F32, e, DIM, &h, NULL),
        GENCACHE_EINVAL);
    m.struct_size = 1;
    CHECK_RC(
        gencache_trajectory_lookup(c, NULL, "trajectory", "m1", GENCACHE_DTYPE_F32, e, DIM, &h, &m),
        GENCACHE_EINVAL);
    gencache_trajectory_stats st = {.struct_size = sizeof st};
    CHECK_OK(gencache_trajectory_stats_get(c, &st));
    CHECK_UINT_EQ(st.vectors, 2);
    gencache_close(c);
}

TEST_CASE(f16_embeddings)
{
    gencache *c = open_traj(0, GENCACHE_SCOPE_GLOBAL, NULL);
    float e[DIM];
    vec(e, 0, 1, 1.0);
    char key[GENCACHE_KEY_MAX];
    CHECK_OK(store(c, NULL, "m1", "p", 15, e, DIM, key));
    float q[DIM];
    vec(q, 0, 1, 0.9);
    uint16_t h16[DIM];
    CHECK_OK(gencache_tensor_convert(GENCACHE_DTYPE_F16, h16, GENCACHE_DTYPE_F32, q, DIM));
    gencache_handle *h = NULL;
    gencache_trajectory_match m = {.struct_size = sizeof m};
    CHECK_OK(gencache_trajectory_lookup(c, NULL, "trajectory", "m1", GENCACHE_DTYPE_F16, h16, DIM,
                                        &h, &m));
    CHECK_UINT_EQ(m.step, 15);
    CHECK_DBL_NEAR(m.similarity, 0.9, 1e-3);
    gencache_handle_release(h);
    gencache_close(c);
}

static uint64_t vectors(gencache *c)
{
    gencache_trajectory_stats st = {.struct_size = sizeof st};
    CHECK_OK(gencache_trajectory_stats_get(c, &st));
    return st.vectors;
}

TEST_CASE(del_invalidate_evict_remove)
{
    gencache *c = open_traj(4, GENCACHE_SCOPE_GLOBAL, NULL);
    float e[DIM];
    vec(e, 0, 1, 1.0);
    char k1[GENCACHE_KEY_MAX], k2[GENCACHE_KEY_MAX], value[64];
    CHECK_OK(store(c, NULL, "m1", "one", 25, e, DIM, k1));
    CHECK_OK(store(c, NULL, "m1", "two", 5, e, DIM, k2));
    CHECK_UINT_EQ(vectors(c), 2);
    /* The same key again replaces its vector. */
    CHECK_OK(store(c, NULL, "m1", "one", 25, e, DIM, k1));
    CHECK_UINT_EQ(vectors(c), 2);
    gencache_trajectory_match m;
    CHECK_OK(lookup(c, NULL, "m1", e, DIM, &m, value));
    CHECK_STR_EQ(m.key, k1);
    CHECK_OK(gencache_del(c, k1));
    CHECK_UINT_EQ(vectors(c), 1);
    CHECK_OK(lookup(c, NULL, "m1", e, DIM, &m, value));
    CHECK_STR_EQ(m.key, k2);
    gencache_filter f;
    gencache_filter_init(&f);
    f.layer = "trajectory";
    uint64_t n = 0;
    CHECK_OK(gencache_invalidate(c, &f, &n));
    CHECK_UINT_EQ(vectors(c), 0);
    CHECK_INT_EQ(lookup(c, NULL, "m1", e, DIM, &m, value), GENCACHE_ENOTFOUND);
    /* Eviction: memory holds 4 entries; 12 stores leave at most 4 vectors. */
    char key[GENCACHE_KEY_MAX];
    for (unsigned s = 1; s <= 12; s++)
        CHECK_OK(store(c, NULL, "m1", "many", s, e, DIM, key));
    CHECK_UINT_LE(vectors(c), 4);
    CHECK_OK(lookup(c, NULL, "m1", e, DIM, &m, value));
    CHECK(strncmp(value, "many@", 5) == 0);
    gencache_close(c);
}

TEST_CASE(tenant_scope_respected)
{
    gencache *c = open_traj(0, GENCACHE_SCOPE_TENANT, NULL);
    gencache_caller a, b;
    gencache_caller_init(&a);
    gencache_caller_init(&b);
    a.tenant = "acme";
    b.tenant = "globex";
    float e[DIM];
    vec(e, 0, 1, 1.0);
    char key[GENCACHE_KEY_MAX], value[64];
    CHECK_OK(store(c, &a, "m1", "secret", 20, e, DIM, key));
    gencache_trajectory_match m;
    CHECK_INT_EQ(lookup(c, &b, "m1", e, DIM, &m, value), GENCACHE_ENOTFOUND);
    CHECK_INT_EQ(lookup(c, NULL, "m1", e, DIM, &m, value), GENCACHE_ENOTFOUND);
    CHECK_OK(lookup(c, &a, "m1", e, DIM, &m, value));
    CHECK_STR_EQ(value, "secret@20");
    /* b's own, less similar vector is what b gets. */
    float q[DIM];
    vec(q, 0, 2, 0.8);
    CHECK_OK(store(c, &b, "m1", "public", 5, q, DIM, key));
    CHECK_OK(lookup(c, &b, "m1", e, DIM, &m, value));
    CHECK_STR_EQ(value, "public@5");
    gencache_close(c);
}

/* ---- concurrency ---- */

typedef struct worker {
    gencache *c;
    int id;
} worker;

static void *run_worker(void *arg)
{
    worker *w = arg;
    float e[DIM];
    char key[GENCACHE_KEY_MAX], value[64], prompt[32];
    for (int i = 0; i < 300; i++) {
        vec(e, (w->id + i) % DIM, (w->id + i + 1) % DIM, 0.95);
        snprintf(prompt, sizeof prompt, "w%d-%d", w->id, i % 40);
        CHECK_OK(store(w->c, NULL, "m1", prompt, 5 + (unsigned)(i % 5) * 5, e, DIM, key));
        gencache_trajectory_match m;
        int rc = lookup(w->c, NULL, "m1", e, DIM, &m, value);
        CHECK(rc == GENCACHE_OK || rc == GENCACHE_ENOTFOUND);
        if (i % 7 == 0) {
            rc = gencache_del(w->c, key);
            CHECK(rc == GENCACHE_OK || rc == GENCACHE_ENOTFOUND);
        }
    }
    return NULL;
}

TEST_CASE(threads_store_lookup_delete)
{
    gencache *c = open_traj(64, GENCACHE_SCOPE_GLOBAL, NULL);
    pthread_t t[4];
    worker w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (worker){c, i};
        CHECK(pthread_create(&t[i], NULL, run_worker, &w[i]) == 0);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    gencache_stats s = {.struct_size = sizeof s};
    CHECK_OK(gencache_stats_get(c, &s));
    /* Every vector left names an entry still held (memory only: no other tier). */
    CHECK_UINT_LE(vectors(c), s.tiers[0].entries);
    gencache_close(c);
}

/* ---- threshold tables from a config file ---- */

static int open_with_config(const char *text, gencache **out, char *err)
{
    gencache_config *cfg = NULL;
    int rc = gencache_config_parse("gencache.yaml", text, strlen(text), &cfg, err, 256);
    if (rc == GENCACHE_OK) {
        gencache_options o;
        gencache_options_init(&o);
        rc = gencache_open_config(out, cfg, &o);
    }
    gencache_config_free(cfg);
    return rc;
}

TEST_CASE(thresholds_from_config)
{
    char err[256] = "";
    gencache *c = NULL;
    CHECK_OK(open_with_config("trajectory:\n  thresholds: {0.6: 4, 0.9: 30}\n"
                              "  models:\n    sd-v1.5:\n      0.99: 45\n",
                              &c, err));
    gencache_trajectory_threshold rows[16];
    size_t n = 0;
    CHECK_OK(gencache_trajectory_get_thresholds(c, NULL, rows, 16, &n));
    CHECK_UINT_EQ(n, 2);
    CHECK(rows[0].similarity == 0.6f && rows[0].step == 4);
    CHECK(rows[1].similarity == 0.9f && rows[1].step == 30);
    CHECK_OK(gencache_trajectory_get_thresholds(c, "sd-v1.5", rows, 16, &n));
    CHECK_UINT_EQ(n, 1);
    CHECK(rows[0].step == 45);
    CHECK_OK(gencache_trajectory_get_thresholds(c, "other", rows, 16, &n));
    CHECK_UINT_EQ(n, 2); /* the configured default */
    gencache_close(c);
    static const char *const bad[] = {
        "trajectory:\n  thresholds: {1.5: 4}\n", "trajectory:\n  thresholds: {0.9: 0}\n",
        "trajectory:\n  thresholds: {abc: 4}\n", "trajectory:\n  thresholds: {}\n",
        "trajectory:\n  threshold: {0.9: 4}\n",  "trajectory:\n  models:\n    m: 5\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        c = NULL;
        CHECK(open_with_config(bad[i], &c, err) != GENCACHE_OK);
        CHECK(c == NULL);
        CHECK(strstr(err, "trajectory") != NULL);
    }
}

/* With a graph (set from 64 vectors), a lookup still finds the nearest stored trajectory and
 * reports its exact similarity; the graph's settings are refused outside their range. */
TEST_CASE(graph_search_finds_the_nearest)
{
    gencache *c = open_traj(100000, GENCACHE_SCOPE_GLOBAL, NULL);
    CHECK_RC(gencache_trajectory_set_graph(NULL, 0), GENCACHE_EINVAL);
    CHECK_RC(gencache_trajectory_set_graph(c, 63), GENCACHE_EINVAL);
    CHECK_OK(gencache_trajectory_set_graph(c, 64));
    enum { COUNT = 300 };
    float emb[DIM];
    char key[GENCACHE_KEY_MAX + 1], prompt[32], value[64];
    /* Stored: one vector per axis pair, each turned by its own angle, so every one is distinct. */
    for (int i = 0; i < COUNT; i++) {
        memset(emb, 0, sizeof emb);
        vec(emb, i % DIM, (i / DIM + 1 + i % DIM) % DIM, 0.50 + 0.0015 * i);
        snprintf(prompt, sizeof prompt, "p%d", i);
        CHECK_OK(store(c, NULL, "m", prompt, 20, emb, DIM, key));
    }
    gencache_trajectory_match m;
    for (int i = 0; i < COUNT; i += 37) {
        memset(emb, 0, sizeof emb);
        vec(emb, i % DIM, (i / DIM + 1 + i % DIM) % DIM, 0.50 + 0.0015 * i);
        CHECK_OK(lookup(c, NULL, "m", emb, DIM, &m, value));
        snprintf(prompt, sizeof prompt, "p%d@20", i);
        CHECK_STR_EQ(value, prompt);
        CHECK(m.similarity > 0.9999f);
    }
    gencache_close(c);
    char err[256] = "";
    c = NULL;
    CHECK_OK(open_with_config("trajectory:\n  graph_min_vectors: 4096\n", &c, err));
    gencache_close(c);
    c = NULL;
    CHECK(open_with_config("trajectory:\n  graph_min_vectors: 10\n", &c, err) != GENCACHE_OK);
    CHECK(c == NULL && strstr(err, "graph_min_vectors") != NULL);
}

/* ---- the index beyond one process ---- */

static char *temp_dir(void)
{
    char tmpl[] = "/tmp/gencache-traj-XXXXXX";
    CHECK(mkdtemp(tmpl) != NULL);
    return strdup(tmpl);
}

static void remove_dir(char *dir)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK_INT_EQ(system(cmd), 0);
    free(dir);
}

static void idx_path(const char *dir, char *out, size_t size)
{
    snprintf(out, size, "%s/traj.idx", dir);
}

/* Five checkpoints of "a red fox" along axis 0, one of "a blue bird" along axis 2. */
static void store_two(gencache *c, const gencache_caller *who, char keys[6][GENCACHE_KEY_MAX])
{
    float e[DIM];
    vec(e, 0, 1, 1.0);
    for (unsigned s = 5; s <= 25; s += 5)
        CHECK_OK(store(c, who, "m1", "a red fox", s, e, DIM, keys[s / 5 - 1]));
    vec(e, 2, 3, 1.0);
    CHECK_OK(store(c, who, "m1", "a blue bird", 10, e, DIM, keys[5]));
}

/* What each known neighbour finds: the fox at 0.92 (step 20), the bird at 0.99 (its step 10). */
static void check_neighbours(gencache *c, const gencache_caller *who, bool fox, bool bird)
{
    float q[DIM];
    gencache_trajectory_match m;
    char value[64];
    vec(q, 0, 5, 0.92);
    int rc = lookup(c, who, "m1", q, DIM, &m, value);
    CHECK_INT_EQ(rc, fox ? GENCACHE_OK : GENCACHE_ENOTFOUND);
    if (fox) {
        CHECK_UINT_EQ(m.step, 20);
        CHECK_STR_EQ(value, "a red fox@20");
    }
    vec(q, 2, 5, 0.99);
    rc = lookup(c, who, "m1", q, DIM, &m, value);
    CHECK_INT_EQ(rc, bird ? GENCACHE_OK : GENCACHE_ENOTFOUND);
    if (bird) {
        CHECK_UINT_EQ(m.step, 10);
        CHECK_STR_EQ(value, "a blue bird@10");
    }
}

TEST_CASE(index_survives_restart)
{
    char *dir = temp_dir();
    char keys[6][GENCACHE_KEY_MAX], path[512];
    gencache *c = open_dir(dir, 0, 0, GENCACHE_SCOPE_GLOBAL, NULL);
    store_two(c, NULL, keys);
    CHECK_UINT_EQ(vectors(c), 6);
    gencache_close(c);
    idx_path(dir, path, sizeof path);
    struct stat st;
    CHECK(stat(path, &st) == 0 && st.st_size > 6 * DIM * 4);
    char log_buf[512] = "";
    c = open_dir(dir, 0, 0, GENCACHE_SCOPE_GLOBAL, log_buf);
    CHECK_UINT_EQ(vectors(c), 6);
    CHECK(strstr(log_buf, "rebuil") == NULL); /* read from the file, not rebuilt */
    check_neighbours(c, NULL, true, true);
    /* A delete after the restart leaves the index, and the next restart knows it. */
    CHECK_OK(gencache_del(c, keys[3]));
    CHECK_UINT_EQ(vectors(c), 5);
    gencache_close(c);
    c = open_dir(dir, 0, 0, GENCACHE_SCOPE_GLOBAL, NULL);
    CHECK_UINT_EQ(vectors(c), 5);
    float q[DIM];
    gencache_trajectory_match m;
    char value[64];
    vec(q, 0, 5, 0.92);
    CHECK_OK(lookup(c, NULL, "m1", q, DIM, &m, value));
    CHECK_STR_EQ(value, "a red fox@15");
    gencache_close(c);
    remove_dir(dir);
}

TEST_CASE(lost_or_damaged_index_rebuilt)
{
    char *dir = temp_dir();
    char keys[6][GENCACHE_KEY_MAX], path[512];
    idx_path(dir, path, sizeof path);
    gencache *c = open_dir(dir, 0, 0, GENCACHE_SCOPE_GLOBAL, NULL);
    store_two(c, NULL, keys);
    /* A deleted checkpoint is not rebuilt, though its trajectory's embedding entry names it. */
    CHECK_OK(gencache_del(c, keys[4]));
    gencache_close(c);
    /* Lost. */
    CHECK_INT_EQ(remove(path), 0);
    c = open_dir(dir, 0, 0, GENCACHE_SCOPE_GLOBAL, NULL);
    CHECK_UINT_EQ(vectors(c), 5);
    check_neighbours(c, NULL, true, true);
    gencache_close(c);
    struct stat st;
    CHECK(stat(path, &st) == 0); /* written again at close */
    /* Damaged: one flipped byte fails the checksum. */
    FILE *f = fopen(path, "r+b");
    CHECK(f != NULL);
    CHECK(fseek(f, 100, SEEK_SET) == 0);
    int ch = fgetc(f);
    CHECK(fseek(f, 100, SEEK_SET) == 0);
    fputc(ch ^ 0x40, f);
    fclose(f);
    char log_buf[512] = "";
    c = open_dir(dir, 0, 0, GENCACHE_SCOPE_GLOBAL, log_buf);
    CHECK_UINT_EQ(vectors(c), 5);
    CHECK(strstr(log_buf, "rebuilt 5") != NULL);
    check_neighbours(c, NULL, true, true);
    gencache_close(c);
    /* Truncated, and a file of another kind. */
    static const char *const junk[] = {"GCTRAJX", "not an index at all, just text\n"};
    for (size_t i = 0; i < 2; i++) {
        f = fopen(path, "wb");
        CHECK(f != NULL);
        fputs(junk[i], f);
        fclose(f);
        c = open_dir(dir, 0, 0, GENCACHE_SCOPE_GLOBAL, NULL);
        CHECK_UINT_EQ(vectors(c), 5);
        gencache_close(c);
    }
    remove_dir(dir);
}

TEST_CASE(invalidated_stays_out_after_restart)
{
    char *dir = temp_dir();
    char keys[6][GENCACHE_KEY_MAX], path[512];
    idx_path(dir, path, sizeof path);
    gencache *c = open_dir(dir, 0, 0, GENCACHE_SCOPE_GLOBAL, NULL);
    store_two(c, NULL, keys);
    gencache_filter flt;
    gencache_filter_init(&flt);
    flt.layer = "trajectory";
    uint64_t n = 0;
    CHECK_OK(gencache_invalidate(c, &flt, &n));
    CHECK_UINT_EQ(n, 8); /* six checkpoints and the two trajectories' embedding entries */
    CHECK_UINT_EQ(vectors(c), 0);
    gencache_close(c);
    c = open_dir(dir, 0, 0, GENCACHE_SCOPE_GLOBAL, NULL);
    CHECK_UINT_EQ(vectors(c), 0);
    check_neighbours(c, NULL, false, false);
    gencache_close(c);
    CHECK_INT_EQ(remove(path), 0);
    c = open_dir(dir, 0, 0, GENCACHE_SCOPE_GLOBAL, NULL);
    CHECK_UINT_EQ(vectors(c), 0);
    gencache_close(c);
    remove_dir(dir);
}

TEST_CASE(disk_eviction_removes)
{
    char *dir = temp_dir();
    /* Memory holds 2 entries, the disk 6: 20 checkpoints (and their embedding entry) cannot all
     * stay, and no vector may outlive its latent. */
    gencache *c = open_dir(dir, 2, 6, GENCACHE_SCOPE_GLOBAL, NULL);
    float e[DIM];
    vec(e, 0, 1, 1.0);
    char key[GENCACHE_KEY_MAX], value[64];
    for (unsigned s = 1; s <= 20; s++)
        CHECK_OK(store(c, NULL, "m1", "many", s, e, DIM, key));
    CHECK_OK(gencache_flush(c, NULL)); /* the queued writes reach the disk tier, which evicts */
    CHECK(vectors(c) >= 1);
    CHECK_UINT_LE(vectors(c), 8);
    gencache_trajectory_match m;
    for (uint64_t left = vectors(c); left > 0; left--) {
        /* Each lookup serves a stored latent; deleting it leaves one record fewer. */
        CHECK_OK(lookup(c, NULL, "m1", e, DIM, &m, value));
        CHECK(strncmp(value, "many@", 5) == 0);
        CHECK_OK(gencache_del(c, m.key));
        CHECK_UINT_EQ(vectors(c), left - 1);
    }
    CHECK_INT_EQ(lookup(c, NULL, "m1", e, DIM, &m, value), GENCACHE_ENOTFOUND);
    gencache_close(c);
    remove_dir(dir);
}

TEST_CASE(rebuilt_index_keeps_tenants_apart)
{
    char *dir = temp_dir();
    char keys[6][GENCACHE_KEY_MAX], path[512];
    idx_path(dir, path, sizeof path);
    gencache_caller a, b;
    gencache_caller_init(&a);
    gencache_caller_init(&b);
    a.tenant = "acme";
    b.tenant = "globex";
    gencache *c = open_dir(dir, 0, 0, GENCACHE_SCOPE_TENANT, NULL);
    store_two(c, &a, keys);
    gencache_close(c);
    CHECK_INT_EQ(remove(path), 0);
    c = open_dir(dir, 0, 0, GENCACHE_SCOPE_TENANT, NULL);
    CHECK_UINT_EQ(vectors(c), 6);
    check_neighbours(c, &b, false, false);
    check_neighbours(c, NULL, false, false);
    check_neighbours(c, &a, true, true);
    gencache_close(c);
    remove_dir(dir);
}

TEST_CASE(checkpoints_make_no_prompt_records)
{
    gencache *c = open_traj(0, GENCACHE_SCOPE_GLOBAL, NULL);
    char keys[6][GENCACHE_KEY_MAX];
    store_two(c, NULL, keys);
    gencache_reuse_stats rs = {.struct_size = sizeof rs};
    CHECK_OK(gencache_reuse_stats_get(c, &rs));
    CHECK_UINT_EQ(rs.prompts, 0);
    /* Six latents and one embedding entry per trajectory, not one per checkpoint. */
    gencache_stats s = {.struct_size = sizeof s};
    CHECK_OK(gencache_stats_get(c, &s));
    CHECK_UINT_EQ(s.tiers[0].entries, 8);
    gencache_close(c);
}

TEST_CASE(dimension_reported)
{
    gencache *c = open_traj(0, GENCACHE_SCOPE_GLOBAL, NULL);
    size_t dim = 99;
    CHECK_INT_EQ(gencache_trajectory_dim(c, "trajectory", "m1", &dim), GENCACHE_ENOTFOUND);
    CHECK_UINT_EQ(dim, 0);
    float e[DIM];
    vec(e, 0, 1, 1.0);
    char key[GENCACHE_KEY_MAX];
    CHECK_OK(store(c, NULL, "m1", "a red fox", 5, e, DIM, key));
    CHECK_OK(gencache_trajectory_dim(c, "trajectory", "m1", &dim));
    CHECK_UINT_EQ(dim, DIM);
    CHECK_INT_EQ(gencache_trajectory_dim(c, "trajectory", "m2", &dim), GENCACHE_ENOTFOUND);
    CHECK_INT_EQ(gencache_trajectory_dim(c, "no_such_layer", "m1", &dim), GENCACHE_EINVAL);
    CHECK_INT_EQ(gencache_trajectory_dim(c, "trajectory", NULL, &dim), GENCACHE_EINVAL);
    CHECK_INT_EQ(gencache_trajectory_dim(c, "trajectory", "m1", NULL), GENCACHE_EINVAL);
    CHECK_INT_EQ(gencache_trajectory_dim(NULL, "trajectory", "m1", &dim), GENCACHE_EINVAL);
    gencache_close(c);
}

static void *run_saver(void *arg)
{
    worker *w = arg;
    for (int i = 0; i < 40; i++)
        CHECK_OK(gencache_reuse_save(w->c));
    return NULL;
}

TEST_CASE(threads_store_while_saving)
{
    char *dir = temp_dir();
    gencache *c = open_dir(dir, 64, 0, GENCACHE_SCOPE_GLOBAL, NULL);
    pthread_t t[4];
    worker w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (worker){c, i};
        CHECK(pthread_create(&t[i], NULL, i == 3 ? run_saver : run_worker, &w[i]) == 0);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    uint64_t before = vectors(c);
    CHECK(before > 0);
    gencache_close(c);
    /* What the last save wrote is what the index held at close: read back whole. */
    c = open_dir(dir, 64, 0, GENCACHE_SCOPE_GLOBAL, NULL);
    CHECK_UINT_EQ(vectors(c), before);
    float e[DIM];
    vec(e, 0, 1, 0.95);
    gencache_trajectory_match m;
    char value[64];
    int rc = lookup(c, NULL, "m1", e, DIM, &m, value);
    CHECK(rc == GENCACHE_OK || rc == GENCACHE_ENOTFOUND);
    gencache_close(c);
    remove_dir(dir);
}
