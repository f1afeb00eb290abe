/*
 * traj_index.c: the trajectory index, the embeddings of stored intermediate latents searched by
 * cosine similarity. Vectors are grouped by (layer, model, tenant), each group one contiguous
 * array of unit vectors, so a query never sees another tenant's vectors and a small group is
 * searched exactly by a brute-force dot product over one array (the compiler vectorizes it).
 * A group of ann_min vectors or more also gets an HNSW graph (ann.h) that finds candidates
 * approximately; they are re-ranked here with the exact vectors. A record is named by the hash
 * of its stored key, as the other reuse records are, and an open-addressing table finds it from
 * that hash for removal; removal moves a group's last vector into the hole, so groups stay
 * dense, and leaves a tombstone in the graph that the next vector reuses. A removal never waits
 * for a search: when a search holds the read lock, it is queued, hidden from every result at
 * once, and applied by the next writer or the search that ends.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ann.h"
#include "traj_index.h"

#define NO_NODE UINT32_MAX
/* Pending removals are applied under the write lock, blocking, past this many. */
#define PENDING_MAX 4096

typedef struct tmeta {
    uint64_t key_hash;
    unsigned char hex[32];
    uint32_t step;
    uint32_t node; /* its node in the group's graph; NO_NODE without a graph */
} tmeta;

typedef struct group {
    uint32_t layer;
    uint64_t model_hash;
    uint64_t tenant_hash;
    uint32_t dim;
    size_t n, cap;
    float *vecs; /* n * dim, each of unit length */
    tmeta *meta;
    gencache__ann *ann;   /* NULL: exact search only */
    uint32_t *node_pos;   /* node -> position in vecs; n_nodes of them */
    uint32_t *free_nodes; /* removed nodes, reused first; n_free of them */
    uint32_t n_nodes, n_free, cap_nodes;
    size_t ann_retry_at; /* a failed build is tried again at this many vectors */
} group;

typedef struct slot {
    uint64_t key_hash; /* 0: empty */
    uint32_t group, pos;
} slot;

struct gencache__traj {
    pthread_rwlock_t lock;
    group *groups;
    size_t n_groups, cap_groups;
    slot *table; /* open addressing, linear probing; size a power of two */
    size_t table_size, table_used;
    uint64_t count;
    gencache__traj_ann_opts opts;
    /* Removals queued while a search held the read lock (pend_lock; taken after lock). */
    pthread_mutex_t pend_lock;
    uint64_t *pend;
    size_t n_pend, cap_pend;
    _Atomic size_t pend_hint; /* n_pend, read without pend_lock to skip it when 0 */
    void (*scan_hook)(void *ud);
    void *scan_hook_ud;
};

void gencache__traj_ann_opts_init(gencache__traj_ann_opts *o)
{
    o->min_vectors = GENCACHE__TRAJ_ANN_MIN;
    o->m = 16;
    o->ef_construction = 200;
    o->ef_search = 96;
}

int gencache__traj_new(gencache__traj **out)
{
    gencache__traj *t = calloc(1, sizeof *t);
    if (!t)
        return GENCACHE_ENOMEM;
    if (pthread_rwlock_init(&t->lock, NULL) != 0) {
        free(t);
        return GENCACHE_ENOMEM;
    }
    if (pthread_mutex_init(&t->pend_lock, NULL) != 0) {
        pthread_rwlock_destroy(&t->lock);
        free(t);
        return GENCACHE_ENOMEM;
    }
    gencache__traj_ann_opts_init(&t->opts);
    *out = t;
    return GENCACHE_OK;
}

void gencache__traj_set_ann(gencache__traj *t, const gencache__traj_ann_opts *opts)
{
    pthread_rwlock_wrlock(&t->lock);
    t->opts = *opts;
    for (size_t i = 0; i < t->n_groups; i++)
        if (t->groups[i].ann)
            gencache__ann_set_ef(t->groups[i].ann, opts->ef_search);
    pthread_rwlock_unlock(&t->lock);
}

void gencache__traj_set_scan_hook(gencache__traj *t, void (*fn)(void *ud), void *ud)
{
    pthread_rwlock_wrlock(&t->lock);
    t->scan_hook = fn;
    t->scan_hook_ud = ud;
    pthread_rwlock_unlock(&t->lock);
}

static void group_drop_graph(group *g)
{
    gencache__ann_free(g->ann);
    g->ann = NULL;
    free(g->node_pos);
    free(g->free_nodes);
    g->node_pos = g->free_nodes = NULL;
    g->n_nodes = g->n_free = g->cap_nodes = 0;
    for (size_t i = 0; i < g->n; i++)
        g->meta[i].node = NO_NODE;
}

void gencache__traj_free(gencache__traj *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->n_groups; i++) {
        group_drop_graph(&t->groups[i]);
        free(t->groups[i].vecs);
        free(t->groups[i].meta);
    }
    free(t->groups);
    free(t->table);
    free(t->pend);
    pthread_mutex_destroy(&t->pend_lock);
    pthread_rwlock_destroy(&t->lock);
    free(t);
}
/* Key hash 0 marks an empty slot: the real hash 0 is stored as 1 (a collision costs nothing
 * worse than a wrong removal candidate, which is checked against the group's record). */
static uint64_t nz(uint64_t h)
{
    return h ? h : 1;
}

static size_t probe_start(const gencache__traj *t, uint64_t h)
{
    return (size_t)(h * 0x9e3779b97f4a7c15ull >> 7) & (t->table_size - 1);
}

static slot *table_find(gencache__traj *t, uint64_t h)
{
    if (!t->table_size)
        return NULL;
    for (size_t i = probe_start(t, h);; i = (i + 1) & (t->table_size - 1)) {
        if (t->table[i].key_hash == 0)
            return NULL;
        if (t->table[i].key_hash == h)
            return &t->table[i];
    }
}

static void table_put_nogrow(gencache__traj *t, slot s)
{
    size_t i = probe_start(t, s.key_hash);
    while (t->table[i].key_hash != 0)
        i = (i + 1) & (t->table_size - 1);
    t->table[i] = s;
    t->table_used++;
}

static int table_put(gencache__traj *t, slot s)
{
    if ((t->table_used + 1) * 2 > t->table_size) {
        size_t size = t->table_size ? t->table_size * 2 : 64;
        slot *old = t->table;
        size_t old_size = t->table_size;
        t->table = calloc(size, sizeof *t->table);
        if (!t->table) {
            t->table = old;
            return GENCACHE_ENOMEM;
        }
        t->table_size = size;
        t->table_used = 0;
        for (size_t i = 0; i < old_size; i++)
            if (old[i].key_hash)
                table_put_nogrow(t, old[i]);
        free(old);
    }
    table_put_nogrow(t, s);
    return GENCACHE_OK;
}

/* Removes the slot, shifting later members of its probe run back (no tombstones). */
static void table_remove(gencache__traj *t, slot *s)
{
    size_t mask = t->table_size - 1, i = (size_t)(s - t->table);
    t->table[i].key_hash = 0;
    t->table_used--;
    for (size_t j = (i + 1) & mask; t->table[j].key_hash; j = (j + 1) & mask) {
        size_t home = probe_start(t, t->table[j].key_hash);
        /* Move j into the hole at i when its home does not lie cyclically in (i, j]. */
        bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (stays)
            continue;
        t->table[i] = t->table[j];
        t->table[j].key_hash = 0;
        i = j;
    }
}

static group *find_group(gencache__traj *t, uint32_t layer, uint64_t model_hash,
                         uint64_t tenant_hash, uint32_t *index)
{
    for (size_t i = 0; i < t->n_groups; i++) {
        group *g = &t->groups[i];
        if (g->layer == layer && g->model_hash == model_hash && g->tenant_hash == tenant_hash) {
            if (index)
                *index = (uint32_t)i;
            return g;
        }
    }
    return NULL;
}

/* The dimension of (layer, model) in any tenant's group; 0: none stored. Groups that have been
 * emptied keep their dimension: a model's vectors have one size. */
static uint32_t model_dim(const gencache__traj *t, uint32_t layer, uint64_t model_hash)
{
    for (size_t i = 0; i < t->n_groups; i++)
        if (t->groups[i].layer == layer && t->groups[i].model_hash == model_hash &&
            t->groups[i].n > 0)
            return t->groups[i].dim;
    return 0;
}

int gencache__traj_dim(gencache__traj *t, uint32_t layer, uint64_t model_hash, uint32_t *dim)
{
    pthread_rwlock_rdlock(&t->lock);
    *dim = model_dim(t, layer, model_hash);
    pthread_rwlock_unlock(&t->lock);
    return *dim ? GENCACHE_OK : GENCACHE_ENOTFOUND;
}

/* Room for want nodes. GENCACHE_ENOMEM. */
static int nodes_reserve(group *g, uint32_t want)
{
    if (want <= g->cap_nodes)
        return GENCACHE_OK;
    uint32_t cap = g->cap_nodes ? g->cap_nodes : 1024;
    while (cap < want)
        cap *= 2;
    uint32_t *np = realloc(g->node_pos, cap * sizeof *np);
    if (!np)
        return GENCACHE_ENOMEM;
    g->node_pos = np;
    uint32_t *nf = realloc(g->free_nodes, cap * sizeof *nf);
    if (!nf)
        return GENCACHE_ENOMEM;
    g->free_nodes = nf;
    g->cap_nodes = cap;
    return GENCACHE_OK;
}

/* A node for a new vector: a removed one first. GENCACHE_ENOMEM. */
static int node_take(group *g, uint32_t *node)
{
    if (g->n_free) {
        *node = g->free_nodes[--g->n_free];
        return GENCACHE_OK;
    }
    int rc = nodes_reserve(g, g->n_nodes + 1);
    if (rc == GENCACHE_OK)
        *node = g->n_nodes++;
    return rc;
}

/* Links the vector at pos into the graph. On failure the graph does not hold it. */
static int graph_put(group *g, uint32_t pos)
{
    uint32_t node = 0;
    int rc = node_take(g, &node);
    if (rc != GENCACHE_OK)
        return rc;
    rc = gencache__ann_put(g->ann, node, &g->vecs[(size_t)pos * g->dim]);
    if (rc != GENCACHE_OK) {
        g->free_nodes[g->n_free++] = node;
        return rc;
    }
    g->node_pos[node] = pos;
    g->meta[pos].node = node;
    return GENCACHE_OK;
}

/* Gives the group a graph of its vectors, node i for position i. On failure it stays exact,
 * and tries again when it has doubled. */
static int graph_build(const gencache__traj *t, group *g)
{
    int rc = gencache__ann_new(g->dim, t->opts.m, t->opts.ef_construction, t->opts.ef_search,
                               g->cap, &g->ann);
    uint32_t n = (uint32_t)g->n;
    if (rc == GENCACHE_OK)
        rc = nodes_reserve(g, n);
    for (uint32_t pos = 0; rc == GENCACHE_OK && pos < n; pos++) {
        g->node_pos[pos] = pos;
        g->meta[pos].node = pos;
    }
    if (rc == GENCACHE_OK) {
        g->n_nodes = n;
        rc = gencache__ann_put_many(g->ann, g->node_pos, g->vecs, n);
    }
    if (rc != GENCACHE_OK) {
        group_drop_graph(g);
        g->ann_retry_at = g->n * 2;
    }
    return rc;
}

static void remove_locked(gencache__traj *t, slot *s)
{
    group *g = &t->groups[s->group];
    uint32_t pos = s->pos, last = (uint32_t)g->n - 1;
    table_remove(t, s);
    if (g->ann && g->meta[pos].node != NO_NODE) {
        gencache__ann_remove(g->ann, g->meta[pos].node);
        g->free_nodes[g->n_free++] = g->meta[pos].node;
    }
    if (pos != last) {
        memcpy(&g->vecs[(size_t)pos * g->dim], &g->vecs[(size_t)last * g->dim],
               sizeof(float) * g->dim);
        g->meta[pos] = g->meta[last];
        slot *moved = table_find(t, nz(g->meta[pos].key_hash));
        if (moved)
            moved->pos = pos;
        if (g->ann && g->meta[pos].node != NO_NODE)
            g->node_pos[g->meta[pos].node] = pos;
    }
    g->n--;
    t->count--;
    /* Well below the size where the graph pays, exact search is faster and the graph's memory
     * goes back; the gap keeps a group near the size from building and dropping in turn. */
    if (g->ann && g->n < t->opts.min_vectors / 4)
        group_drop_graph(g);
}

/* Removes the record of key_hash, if held. Under the write lock. */
static size_t drop_locked(gencache__traj *t, uint64_t key_hash)
{
    slot *s = table_find(t, nz(key_hash));
    if (s && t->groups[s->group].meta[s->pos].key_hash == key_hash) {
        remove_locked(t, s);
        return 1;
    }
    return 0;
}

/* Applies the queued removals. Under the write lock. */
static void apply_pending(gencache__traj *t)
{
    if (atomic_load_explicit(&t->pend_hint, memory_order_acquire) == 0)
        return;
    pthread_mutex_lock(&t->pend_lock);
    for (size_t i = 0; i < t->n_pend; i++)
        drop_locked(t, t->pend[i]);
    t->n_pend = 0;
    atomic_store_explicit(&t->pend_hint, 0, memory_order_release);
    pthread_mutex_unlock(&t->pend_lock);
}

/* Is key_hash queued for removal? */
static bool pending(gencache__traj *t, uint64_t key_hash)
{
    if (atomic_load_explicit(&t->pend_hint, memory_order_acquire) == 0)
        return false;
    bool found = false;
    pthread_mutex_lock(&t->pend_lock);
    for (size_t i = 0; i < t->n_pend && !found; i++)
        found = t->pend[i] == key_hash;
    pthread_mutex_unlock(&t->pend_lock);
    return found;
}

/* Scales v to unit length in place; GENCACHE_EINVAL for a zero or non-finite vector. */
static int normalize(float *v, uint32_t dim)
{
    double ss = 0;
    for (uint32_t i = 0; i < dim; i++)
        ss += (double)v[i] * v[i];
    if (!(ss > 0) || !isfinite(ss))
        return GENCACHE_EINVAL;
    float inv = (float)(1.0 / sqrt(ss));
    for (uint32_t i = 0; i < dim; i++)
        v[i] *= inv;
    return GENCACHE_OK;
}

static int group_add(gencache__traj *t, const gencache__traj_rec *rec, uint32_t dim,
                     uint32_t *index)
{
    if (t->n_groups == t->cap_groups) {
        size_t cap = t->cap_groups ? t->cap_groups * 2 : 4;
        group *ng = realloc(t->groups, cap * sizeof *ng);
        if (!ng)
            return GENCACHE_ENOMEM;
        t->groups = ng;
        t->cap_groups = cap;
    }
    *index = (uint32_t)t->n_groups++;
    t->groups[*index] = (group){.layer = rec->layer,
                                .model_hash = rec->model_hash,
                                .tenant_hash = rec->tenant_hash,
                                .dim = dim};
    return GENCACHE_OK;
}

static int group_reserve(group *g)
{
    if (g->n < g->cap)
        return GENCACHE_OK;
    size_t cap = g->cap ? g->cap * 2 : 16;
    float *nv = realloc(g->vecs, cap * g->dim * sizeof *nv);
    if (!nv)
        return GENCACHE_ENOMEM;
    g->vecs = nv;
    tmeta *nm = realloc(g->meta, cap * sizeof *nm);
    if (!nm)
        return GENCACHE_ENOMEM;
    g->meta = nm;
    g->cap = cap;
    return GENCACHE_OK;
}

int gencache__traj_add(gencache__traj *t, const gencache__traj_rec *rec, const float *vec,
                       uint32_t dim)
{
    if (dim == 0)
        return GENCACHE_EINVAL;
    float *unit = malloc(sizeof(float) * dim);
    if (!unit)
        return GENCACHE_ENOMEM;
    memcpy(unit, vec, sizeof(float) * dim);
    int rc = normalize(unit, dim);
    if (rc != GENCACHE_OK) {
        free(unit);
        return rc;
    }
    pthread_rwlock_wrlock(&t->lock);
    apply_pending(t);
    uint64_t h = nz(rec->key_hash);
    slot *old = table_find(t, h);
    if (old)
        remove_locked(t, old);
    uint32_t held = model_dim(t, rec->layer, rec->model_hash), gi = 0;
    group *g = find_group(t, rec->layer, rec->model_hash, rec->tenant_hash, &gi);
    if ((held && held != dim) || (g && g->dim != dim && g->n > 0)) {
        rc = GENCACHE_EINVAL;
        goto out;
    }
    if (!g) {
        rc = group_add(t, rec, dim, &gi);
        if (rc != GENCACHE_OK)
            goto out;
        g = &t->groups[gi];
    }
    if (g->n == 0 && g->dim != dim) { /* an emptied group of a model stored anew */
        group_drop_graph(g);
        free(g->vecs);
        free(g->meta);
        *g = (group){.layer = g->layer,
                     .model_hash = g->model_hash,
                     .tenant_hash = g->tenant_hash,
                     .dim = dim};
    }
    rc = group_reserve(g);
    if (rc == GENCACHE_OK)
        rc = table_put(t, (slot){.key_hash = h, .group = gi, .pos = (uint32_t)g->n});
    if (rc != GENCACHE_OK)
        goto out;
    uint32_t pos = (uint32_t)g->n;
    memcpy(&g->vecs[(size_t)pos * dim], unit, sizeof(float) * dim);
    tmeta *m = &g->meta[pos];
    m->key_hash = rec->key_hash;
    memcpy(m->hex, rec->hex, sizeof m->hex);
    m->step = rec->step;
    m->node = NO_NODE;
    if (g->ann && (rc = graph_put(g, pos)) != GENCACHE_OK) {
        table_remove(t, table_find(t, h));
        goto out;
    }
    g->n++;
    t->count++;
    if (!g->ann && g->n >= t->opts.min_vectors && g->n >= g->ann_retry_at)
        (void)graph_build(t, g); /* on failure the group stays exact */
out:
    pthread_rwlock_unlock(&t->lock);
    free(unit);
    return rc;
}

size_t gencache__traj_drop(gencache__traj *t, uint64_t key_hash)
{
    /* A search holding the read lock may take long (an exact scan of a large group): queue the
     * removal instead of waiting, unless the queue is already long. */
    if (pthread_rwlock_trywrlock(&t->lock) != 0) {
        pthread_mutex_lock(&t->pend_lock);
        bool queued = false;
        if (t->n_pend < PENDING_MAX) {
            if (t->n_pend == t->cap_pend) {
                size_t cap = t->cap_pend ? t->cap_pend * 2 : 16;
                uint64_t *np = realloc(t->pend, cap * sizeof *np);
                if (np) {
                    t->pend = np;
                    t->cap_pend = cap;
                }
            }
            if (t->n_pend < t->cap_pend) {
                t->pend[t->n_pend++] = key_hash;
                atomic_store_explicit(&t->pend_hint, t->n_pend, memory_order_release);
                queued = true;
            }
        }
        pthread_mutex_unlock(&t->pend_lock);
        if (queued)
            return 0;
        pthread_rwlock_wrlock(&t->lock);
    }
    apply_pending(t);
    size_t n = drop_locked(t, key_hash);
    pthread_rwlock_unlock(&t->lock);
    return n;
}

/* Applies queued removals if nobody holds the lock; never waits. */
static void try_apply_pending(gencache__traj *t)
{
    if (atomic_load_explicit(&t->pend_hint, memory_order_acquire) == 0)
        return;
    if (pthread_rwlock_trywrlock(&t->lock) != 0)
        return;
    apply_pending(t);
    pthread_rwlock_unlock(&t->lock);
}

uint64_t gencache__traj_count(gencache__traj *t)
{
    try_apply_pending(t);
    pthread_rwlock_rdlock(&t->lock);
    uint64_t n = t->count;
    pthread_rwlock_unlock(&t->lock);
    return n;
}

int gencache__traj_build_graphs(gencache__traj *t)
{
    int rc = GENCACHE_OK;
    pthread_rwlock_wrlock(&t->lock);
    apply_pending(t);
    for (size_t i = 0; i < t->n_groups; i++) {
        group *g = &t->groups[i];
        if (!g->ann && g->n && g->n >= t->opts.min_vectors) {
            int grc = graph_build(t, g);
            rc = rc == GENCACHE_OK ? grc : rc;
        }
    }
    pthread_rwlock_unlock(&t->lock);
    return rc;
}

size_t gencache__traj_graph_bytes(gencache__traj *t)
{
    pthread_rwlock_rdlock(&t->lock);
    size_t bytes = 0;
    for (size_t i = 0; i < t->n_groups; i++)
        if (t->groups[i].ann)
            bytes += gencache__ann_bytes(t->groups[i].ann) +
                     (size_t)t->groups[i].cap_nodes * 2 * sizeof(uint32_t);
    pthread_rwlock_unlock(&t->lock);
    return bytes;
}

static float dot_portable(const float *restrict a, const float *restrict b, uint32_t dim)
{
    /* Eight partial sums: lets the compiler vectorize without reassociating floats itself. */
    float s[8] = {0};
    uint32_t i = 0;
    for (; i + 8 <= dim; i += 8)
        for (int k = 0; k < 8; k++)
            s[k] += a[i + k] * b[i + k];
    float r = 0;
    for (; i < dim; i++)
        r += a[i] * b[i];
    return r + ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define HAVE_AVX2_DOT 1

/* The default build targets baseline x86-64 (SSE2): AVX2 with FMA, chosen at run time, scans
 * several times faster (bench/bench_trajectory.c prints the ratio against a scalar scan). */
__attribute__((target("avx2,fma"))) static float dot_avx2(const float *a, const float *b,
                                                          uint32_t dim)
{
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    __m256 s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    uint32_t i = 0;
    for (; i + 32 <= dim; i += 32) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
    }
    for (; i + 8 <= dim; i += 8)
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    __m256 s = _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3));
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    float r = _mm_cvtss_f32(h);
    for (; i < dim; i++)
        r += a[i] * b[i];
    return r;
}
#endif

typedef float (*dot_fn)(const float *, const float *, uint32_t);

static dot_fn pick_dot(void)
{
#ifdef HAVE_AVX2_DOT
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return dot_avx2;
#endif
    return dot_portable;
}

/* Does x rank before y? More steps that may be skipped first, then the nearer vector. */
static bool before(const gencache__traj_cand *x, const gencache__traj_cand *y)
{
    return x->rec.step != y->rec.step ? x->rec.step > y->rec.step : x->similarity > y->similarity;
}

static int cmp_cands(const void *a, const void *b)
{
    return before(a, b) ? -1 : before(b, a) ? 1 : 0;
}

/* Keeps the cap best candidates seen in out (unordered): a new one replaces the worst. */
static void keep(gencache__traj_cand *out, size_t cap, size_t *n, const gencache__traj_cand *c)
{
    if (*n < cap) {
        out[(*n)++] = *c;
        return;
    }
    size_t worst = 0;
    for (size_t i = 1; i < *n; i++)
        if (before(&out[worst], &out[i]))
            worst = i;
    if (before(c, &out[worst]))
        out[worst] = *c;
}

typedef struct scan {
    const group *g;
    const float *unit;
    const gencache__traj_table *table;
    float lowest;
    dot_fn dot;
    gencache__traj_cand *out;
    size_t cap, *n;
} scan;

/* Weighs the vector at pos exactly and keeps it if the table lets it skip its step. */
static void consider(const scan *s, uint32_t pos)
{
    const group *g = s->g;
    float sim = s->dot(s->unit, &g->vecs[(size_t)pos * g->dim], g->dim);
    const tmeta *m = &g->meta[pos];
    if (sim < s->lowest || m->step > gencache__traj_max_step(s->table, sim))
        return;
    gencache__traj_cand c = {.similarity = sim};
    c.rec.layer = g->layer;
    c.rec.model_hash = g->model_hash;
    c.rec.key_hash = m->key_hash;
    c.rec.tenant_hash = g->tenant_hash;
    memcpy(c.rec.hex, m->hex, sizeof c.rec.hex);
    c.rec.step = m->step;
    keep(s->out, s->cap, s->n, &c);
}

/* The graph's candidates, re-ranked exactly: ef_search of them (the search weighs that many
 * anyway), so that the several steps stored for one prompt do not crowd out the next prompts. */
static int scan_graph(const scan *s, size_t k)
{
    uint32_t *nodes = malloc(k * sizeof *nodes);
    float *sims = malloc(k * sizeof *sims);
    size_t got = 0;
    int rc = nodes && sims ? gencache__ann_search(s->g->ann, s->unit, k, nodes, sims, &got)
                           : GENCACHE_ENOMEM;
    for (size_t i = 0; i < got; i++)
        consider(s, s->g->node_pos[nodes[i]]);
    free(nodes);
    free(sims);
    return rc;
}

int gencache__traj_find_ex(gencache__traj *t, uint32_t layer, uint64_t model_hash,
                           uint64_t tenant_hash, const float *query, uint32_t dim,
                           const gencache__traj_table *table, gencache__traj_cand *out, size_t cap,
                           size_t *n, unsigned flags)
{
    *n = 0;
    float *unit = malloc(sizeof(float) * (dim ? dim : 1));
    if (!unit)
        return GENCACHE_ENOMEM;
    memcpy(unit, query, sizeof(float) * dim);
    int rc = dim ? normalize(unit, dim) : GENCACHE_EINVAL;
    if (rc != GENCACHE_OK) {
        free(unit);
        return rc;
    }
    scan s = {.unit = unit,
              .table = table,
              .lowest = table->n ? table->rows[0].similarity : 2.0f,
              .dot = pick_dot(),
              .out = out,
              .cap = cap,
              .n = n};
    pthread_rwlock_rdlock(&t->lock);
    if (t->scan_hook)
        t->scan_hook(t->scan_hook_ud);
    uint32_t held = model_dim(t, layer, model_hash);
    const group *g = find_group(t, layer, model_hash, tenant_hash, NULL);
    s.g = g;
    if (held && held != dim)
        rc = GENCACHE_EINVAL;
    else if (g && g->n && g->ann && !(flags & GENCACHE__TRAJ_EXACT))
        rc = scan_graph(&s, t->opts.ef_search > cap ? t->opts.ef_search : cap);
    else
        for (uint32_t pos = 0; g && pos < g->n; pos++)
            consider(&s, pos);
    /* A removal queued while this search ran is not a result (checked before unlocking: the
     * queue cannot be applied meanwhile). */
    for (size_t i = 0; i < *n;)
        if (pending(t, out[i].rec.key_hash))
            out[i] = out[--*n];
        else
            i++;
    pthread_rwlock_unlock(&t->lock);
    try_apply_pending(t);
    free(unit);
    if (rc != GENCACHE_OK)
        *n = 0;
    qsort(out, *n, sizeof *out, cmp_cands);
    return rc;
}

int gencache__traj_find(gencache__traj *t, uint32_t layer, uint64_t model_hash,
                        uint64_t tenant_hash, const float *query, uint32_t dim,
                        const gencache__traj_table *table, gencache__traj_cand *out, size_t cap,
                        size_t *n)
{
    return gencache__traj_find_ex(t, layer, model_hash, tenant_hash, query, dim, table, out, cap, n,
                                  0);
}

unsigned gencache__traj_max_step(const gencache__traj_table *table, float similarity)
{
    unsigned best = 0;
    for (size_t i = 0; i < table->n; i++)
        if (similarity >= table->rows[i].similarity && table->rows[i].step > best)
            best = table->rows[i].step;
    return best;
}

void gencache__traj_each(gencache__traj *t,
                         void (*fn)(void *ud, const gencache__traj_rec *rec, const float *unit,
                                    uint32_t dim),
                         void *ud)
{
    pthread_rwlock_rdlock(&t->lock);
    for (size_t gi = 0; gi < t->n_groups; gi++) {
        const group *g = &t->groups[gi];
        for (size_t i = 0; i < g->n; i++) {
            if (pending(t, g->meta[i].key_hash))
                continue; /* removed already, in all but the queue */
            gencache__traj_rec rec = {.layer = g->layer, .model_hash = g->model_hash};
            rec.key_hash = g->meta[i].key_hash;
            rec.tenant_hash = g->tenant_hash;
            memcpy(rec.hex, g->meta[i].hex, sizeof rec.hex);
            rec.step = g->meta[i].step;
            fn(ud, &rec, &g->vecs[i * g->dim], g->dim);
        }
    }
    pthread_rwlock_unlock(&t->lock);
}
