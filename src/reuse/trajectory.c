/*
 * trajectory.c: approximate step reuse (gencache/reuse.h). A stored intermediate latent is an
 * ordinary entry; beside it the trajectory index keeps its prompt's embedding, named by the hash
 * of the stored key so that every removal path drops it (gencache__reuse_forget()), and the
 * trajectory's embedding entry names it so that a lost index can be rebuilt (traj_io.c). A
 * checkpoint is no request-level record: it never serves a similar_prompt lookup, which the
 * index answers better. A lookup reads the best candidates back with the caller's own rights: a
 * vector can say which entry to try, never whose. Threshold tables are set at init and read
 * without a lock afterwards.
 */
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "key/key.h"
#include "reuse.h"
#include "traj_index.h"

#define MAX_MODELS 16
#define MAX_CANDS  8

typedef struct model_table {
    char *model;
    gencache__traj_table table;
} model_table;

struct gencache__traj_state {
    gencache__traj *index;
    gencache__traj_table fallback; /* the default table */
    model_table models[MAX_MODELS];
    size_t n_models;
    _Atomic uint64_t hits, misses, steps_skipped;
    _Atomic uint64_t mutations; /* adds and drops: unchanged means nothing to save */
    bool saved_once;            /* under the reuse state's save lock: saved_at is meaningful */
    uint64_t saved_at;          /* under that lock: mutations when last read or written */
};

static const gencache_trajectory_threshold default_rows[] = {
    {0.70f, 5}, {0.80f, 10}, {0.85f, 15}, {0.90f, 20}, {0.95f, 25},
};

int gencache__traj_state_new(gencache__traj_state **out)
{
    gencache__traj_state *st = calloc(1, sizeof *st);
    if (!st)
        return GENCACHE_ENOMEM;
    int rc = gencache__traj_new(&st->index);
    if (rc != GENCACHE_OK) {
        free(st);
        return rc;
    }
    /* Exact search until gencache_trajectory_set_graph() asks for graphs. */
    gencache__traj_ann_opts ann;
    gencache__traj_ann_opts_init(&ann);
    ann.min_vectors = SIZE_MAX;
    gencache__traj_set_ann(st->index, &ann);
    st->fallback.n = sizeof default_rows / sizeof default_rows[0];
    memcpy(st->fallback.rows, default_rows, sizeof default_rows);
    *out = st;
    return GENCACHE_OK;
}

void gencache__traj_state_free(gencache__traj_state *st)
{
    if (!st)
        return;
    gencache__traj_free(st->index);
    for (size_t i = 0; i < st->n_models; i++)
        free(st->models[i].model);
    free(st);
}

static void drop(gencache__traj_state *st, uint64_t key_hash)
{
    if (gencache__traj_drop(st->index, key_hash))
        atomic_fetch_add_explicit(&st->mutations, 1, memory_order_relaxed);
}

void gencache__traj_state_forget(gencache__traj_state *st, uint64_t key_hash)
{
    if (st)
        drop(st, key_hash);
}

void gencache__traj_state_load(gencache *c, gencache__traj_state *st, const char *path,
                               const gencache__reuse_layers *layers)
{
    uint64_t added = 0, before = atomic_load(&st->mutations);
    int rc = gencache__traj_load_file(st->index, path, layers, &added);
    if (rc == GENCACHE_OK) {
        /* The file says just this; a store made meanwhile (the first load runs while other
         * threads may already store) leaves the count above it, so it is saved. */
        st->saved_at = before + added;
        atomic_fetch_add(&st->mutations, added);
        st->saved_once = true;
        return;
    }
    if (rc != GENCACHE_EIO)
        gencache__log_msg(&c->log, GENCACHE_LOG_WARN,
                          "trajectory: %s is unreadable (%s); rebuilding the index from the "
                          "disk tier",
                          path, gencache_strerror(rc));
    /* Missing or damaged (nothing was added then): the disk tier says what is stored. A record
     * is named by its entry, so one added twice is replaced, never doubled. */
    rc = gencache__traj_rebuild(c, st->index, &added);
    atomic_fetch_add(&st->mutations, added + 1); /* saved at the next flush, even if empty */
    if (rc != GENCACHE_OK) {
        gencache__log_msg(&c->log, GENCACHE_LOG_WARN,
                          "trajectory: cannot rebuild the index from the disk tier (%s); what "
                          "it lacks fills again as latents are stored",
                          gencache_strerror(rc));
        return;
    }
    if (added)
        gencache__log_msg(&c->log, GENCACHE_LOG_INFO,
                          "trajectory: rebuilt %" PRIu64 " index records from the disk tier",
                          added);
}

int gencache__traj_state_save(gencache *c, gencache__traj_state *st, const char *path,
                              const gencache__reuse_layers *layers)
{
    (void)c;
    uint64_t now = atomic_load(&st->mutations);
    if (st->saved_once && now == st->saved_at)
        return GENCACHE_OK;
    int rc = gencache__traj_save_file(st->index, path, layers);
    if (rc == GENCACHE_OK) {
        st->saved_at = now; /* changes made while writing are saved next time */
        st->saved_once = true;
    }
    return rc;
}

static const gencache__traj_table *table_for(const gencache__traj_state *st, const char *model)
{
    for (size_t i = 0; model && i < st->n_models; i++)
        if (strcmp(st->models[i].model, model) == 0)
            return &st->models[i].table;
    return &st->fallback;
}

static int cmp_rows(const void *a, const void *b)
{
    const gencache_trajectory_threshold *x = a, *y = b;
    return x->similarity < y->similarity ? -1 : x->similarity > y->similarity ? 1 : 0;
}

int gencache_trajectory_set_graph(gencache *cache, uint64_t min_vectors)
{
    gencache__traj_state *st = gencache__reuse_traj_state(cache);
    if (!st || (min_vectors > 0 && min_vectors < 64))
        return GENCACHE_EINVAL;
    gencache__traj_ann_opts ann;
    gencache__traj_ann_opts_init(&ann);
    ann.min_vectors = min_vectors && min_vectors < SIZE_MAX ? (size_t)min_vectors : SIZE_MAX;
    gencache__traj_set_ann(st->index, &ann);
    return GENCACHE_OK;
}

int gencache_trajectory_set_thresholds(gencache *cache, const char *model,
                                       const gencache_trajectory_threshold *rows, size_t n)
{
    gencache__traj_state *st = gencache__reuse_traj_state(cache);
    if (!st || (n && !rows) || n > GENCACHE_TRAJECTORY_MAX_THRESHOLDS || (!model && n == 0))
        return GENCACHE_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!(rows[i].similarity >= -1.0f && rows[i].similarity <= 1.0f) || rows[i].step == 0)
            return GENCACHE_EINVAL;
    gencache__traj_table t = {.n = n};
    if (n)
        memcpy(t.rows, rows, n * sizeof *rows);
    qsort(t.rows, n, sizeof *t.rows, cmp_rows);
    if (!model) {
        st->fallback = t;
        return GENCACHE_OK;
    }
    size_t i = 0;
    while (i < st->n_models && strcmp(st->models[i].model, model) != 0)
        i++;
    if (n == 0) { /* back to the default */
        if (i < st->n_models) {
            free(st->models[i].model);
            st->models[i] = st->models[--st->n_models];
        }
        return GENCACHE_OK;
    }
    if (i == st->n_models) {
        if (st->n_models == MAX_MODELS)
            return GENCACHE_ELIMIT;
        char *copy = strdup(model);
        if (!copy)
            return GENCACHE_ENOMEM;
        st->models[st->n_models++].model = copy;
    }
    st->models[i].table = t;
    return GENCACHE_OK;
}

int gencache_trajectory_get_thresholds(gencache *cache, const char *model,
                                       gencache_trajectory_threshold *rows, size_t cap, size_t *n)
{
    gencache__traj_state *st = gencache__reuse_traj_state(cache);
    if (!st || !n || (cap && !rows))
        return GENCACHE_EINVAL;
    const gencache__traj_table *t = table_for(st, model);
    *n = t->n;
    if (cap < t->n)
        return GENCACHE_ELIMIT;
    memcpy(rows, t->rows, t->n * sizeof *rows);
    return GENCACHE_OK;
}

int gencache_trajectory_dim(gencache *cache, const char *lname, const char *model, size_t *dim)
{
    if (dim)
        *dim = 0;
    gencache__traj_state *st = gencache__reuse_traj_state(cache);
    int li = st && lname ? gencache__reuse_layer_index(cache, lname) : -1;
    if (li < 0 || !model || !dim)
        return GENCACHE_EINVAL;
    uint32_t held = 0;
    int rc = gencache__traj_dim(st->index, (uint32_t)li, gencache__checksum(model, strlen(model)),
                                &held);
    *dim = held;
    return rc;
}

int gencache_trajectory_stats_get(gencache *cache, gencache_trajectory_stats *out)
{
    gencache__traj_state *st = gencache__reuse_traj_state(cache);
    if (!st || !out || out->struct_size < sizeof *out)
        return GENCACHE_EINVAL;
    memset(out, 0, sizeof *out);
    out->struct_size = sizeof *out;
    out->vectors = gencache__traj_count(st->index);
    out->hits = atomic_load(&st->hits);
    out->misses = atomic_load(&st->misses);
    out->steps_skipped = atomic_load(&st->steps_skipped);
    return GENCACHE_OK;
}

/* The embedding as f32 in *out (a copy: the caller frees it), checked. */
static int embedding_f32(gencache *c, gencache_dtype dtype, const void *emb, size_t dim,
                         float **out)
{
    *out = NULL;
    if (!emb || dim == 0 || dim > GENCACHE__TRAJ_DIM_MAX ||
        (dtype != GENCACHE_DTYPE_F32 && dtype != GENCACHE_DTYPE_F16)) {
        gencache__log_msg(
            &c->log, GENCACHE_LOG_WARN,
            "trajectory: the embedding must be a non-empty f32 or f16 vector of at most "
            "%u elements",
            GENCACHE__TRAJ_DIM_MAX);
        return GENCACHE_EINVAL;
    }
    float *v = malloc(dim * sizeof *v);
    if (!v)
        return GENCACHE_ENOMEM;
    int rc = gencache_tensor_convert(GENCACHE_DTYPE_F32, v, dtype, emb, dim);
    double ss = 0;
    for (size_t i = 0; rc == GENCACHE_OK && i < dim; i++)
        ss += (double)v[i] * v[i];
    if (rc == GENCACHE_OK && !(ss > 0 && isfinite(ss))) {
        gencache__log_msg(&c->log, GENCACHE_LOG_WARN,
                          "trajectory: the embedding is zero or not finite: it has no direction");
        rc = GENCACHE_EINVAL;
    }
    if (rc != GENCACHE_OK) {
        free(v);
        return rc == GENCACHE_EUNSUPPORTED ? GENCACHE_EINVAL : rc;
    }
    *out = v;
    return GENCACHE_OK;
}

/* GENCACHE_EINVAL, logged, when (layer, model) holds vectors of another dimension. */
static int check_dim(gencache *c, gencache__traj_state *st, uint32_t li, const char *lname,
                     const char *model, size_t dim)
{
    uint32_t held = 0;
    uint64_t mh = gencache__checksum(model, strlen(model));
    if (gencache__traj_dim(st->index, li, mh, &held) == GENCACHE_OK && held != dim) {
        gencache__log_msg(&c->log, GENCACHE_LOG_WARN,
                          "trajectory: layer '%s' holds %u-dimensional embeddings for model '%s'; "
                          "this one has %zu",
                          lname, held, model, dim);
        return GENCACHE_EINVAL;
    }
    return GENCACHE_OK;
}

static void key_of(const char *lname, const unsigned char *bytes, char *out)
{
    size_t ln = strlen(lname);
    memcpy(out, lname, ln);
    out[ln] = '/';
    gencache__reuse_hex_encode(bytes, 32, out + ln + 1);
}

int gencache_trajectory_store(gencache *cache, const gencache_caller *caller,
                              const gencache_request *req, const char *lname, unsigned step,
                              gencache_dtype dtype, const void *embedding, size_t dim,
                              const void *data, size_t size, const gencache_meta *meta,
                              char *key_out)
{
    if (key_out)
        key_out[0] = '\0';
    gencache__traj_state *st = gencache__reuse_traj_state(cache);
    if (!st || !req || !lname || step == 0)
        return GENCACHE_EINVAL;
    int li = gencache__reuse_layer_index(cache, lname);
    if (li < 0 || !req->model)
        return GENCACHE_EINVAL;
    float *v = NULL;
    int rc = embedding_f32(cache, dtype, embedding, dim, &v);
    if (rc == GENCACHE_OK)
        rc = check_dim(cache, st, (uint32_t)li, lname, req->model, dim);
    char key[GENCACHE_KEY_MAX];
    if (rc == GENCACHE_OK)
        rc = gencache_request_key(req, lname, key, sizeof key);
    if (rc == GENCACHE_OK)
        rc = gencache_put_as(cache, caller, key, data, size, meta);
    gencache__traj_rec rec = {.layer = (uint32_t)li, .step = step};
    if (rc == GENCACHE_OK) {
        rec.model_hash = gencache__checksum(req->model, strlen(req->model));
        rec.tenant_hash = gencache__reuse_tenant_hash(cache, rec.layer, caller);
        gencache__reuse_hex_decode(strchr(key, '/') + 1, rec.hex);
        if (key_out)
            memcpy(key_out, key, strlen(key) + 1);
        int krc = gencache__reuse_stored_key_hash(cache, caller, key, &rec.key_hash);
        if (krc == GENCACHE_OK)
            rc = gencache__traj_add(st->index, &rec, v, (uint32_t)dim);
        else if (krc != GENCACHE_ENOTFOUND) /* gone again at once: nothing to index */
            rc = krc;
        if (krc == GENCACHE_OK && rc == GENCACHE_OK)
            atomic_fetch_add_explicit(&st->mutations, 1, memory_order_relaxed);
        /* An eviction between the read-back and the add found no vector to drop: look again,
         * so that no vector outlives its entry. */
        uint64_t again = 0;
        if (krc == GENCACHE_OK && rc == GENCACHE_OK &&
            gencache__reuse_stored_key_hash(cache, caller, key, &again) == GENCACHE_ENOTFOUND)
            drop(st, rec.key_hash);
        if (rc == GENCACHE_EINVAL) /* a zero vector, or a racing store of another dimension */
            gencache__log_msg(&cache->log, GENCACHE_LOG_WARN,
                              "trajectory: %s is stored but not indexed: a zero or non-finite "
                              "embedding, or a dimension unlike the one stored for model '%s'",
                              key, req->model);
        int nrc = rc == GENCACHE_OK ? gencache__traj_note(cache, caller, req, lname, step, rec.hex,
                                                          v, (uint32_t)dim, meta)
                                    : GENCACHE_OK;
        if (nrc != GENCACHE_OK) /* the index has it; only a rebuild would miss it */
            gencache__log_msg(&cache->log, GENCACHE_LOG_WARN,
                              "trajectory: %s is indexed but its trajectory's embedding entry "
                              "could not be written (%s): a rebuilt index will lack it",
                              key, gencache_strerror(nrc));
    }
    free(v);
    return rc;
}

int gencache_trajectory_lookup(gencache *cache, const gencache_caller *caller, const char *lname,
                               const char *model, gencache_dtype dtype, const void *embedding,
                               size_t dim, gencache_handle **out, gencache_trajectory_match *match)
{
    if (out)
        *out = NULL;
    if (match && match->struct_size < sizeof *match)
        return GENCACHE_EINVAL;
    if (match) {
        memset(match, 0, sizeof *match);
        match->struct_size = sizeof *match;
    }
    gencache__traj_state *st = gencache__reuse_traj_state(cache);
    if (!st || !lname || !model || !out)
        return GENCACHE_EINVAL;
    int li = gencache__reuse_layer_index(cache, lname);
    if (li < 0)
        return GENCACHE_EINVAL;
    float *v = NULL;
    int rc = embedding_f32(cache, dtype, embedding, dim, &v);
    if (rc == GENCACHE_OK)
        rc = check_dim(cache, st, (uint32_t)li, lname, model, dim);
    gencache__traj_cand cands[MAX_CANDS];
    size_t n = 0;
    if (rc == GENCACHE_OK)
        rc = gencache__traj_find(st->index, (uint32_t)li, gencache__checksum(model, strlen(model)),
                                 gencache__reuse_tenant_hash(cache, (uint32_t)li, caller), v,
                                 (uint32_t)dim, table_for(st, model), cands, MAX_CANDS, &n);
    free(v);
    if (rc != GENCACHE_OK)
        return rc;
    for (size_t i = 0; i < n; i++) {
        char key[GENCACHE_KEY_MAX];
        key_of(lname, cands[i].rec.hex, key);
        rc = gencache_get_as(cache, caller, key, out);
        if (rc == GENCACHE_ENOTFOUND) {
            drop(st, cands[i].rec.key_hash); /* stale */
            continue;
        }
        if (rc != GENCACHE_OK)
            return rc;
        atomic_fetch_add_explicit(&st->hits, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&st->steps_skipped, cands[i].rec.step, memory_order_relaxed);
        if (match) {
            memcpy(match->key, key, strlen(key) + 1);
            match->step = cands[i].rec.step;
            match->similarity = cands[i].similarity;
        }
        return GENCACHE_OK;
    }
    atomic_fetch_add_explicit(&st->misses, 1, memory_order_relaxed);
    return GENCACHE_ENOTFOUND;
}
