/*
 * traj_index.c: the trajectory index, the embeddings of stored intermediate latents searched by
 * cosine similarity. Vectors are grouped by (layer, model, dimension), each group one contiguous
 * array of unit vectors, so a query is a brute-force dot product over one array (exact search;
 * the compiler vectorizes the inner loop). A record is named by the hash of its stored key, as
 * the other reuse records are, and an open-addressing table finds it from that hash for removal;
 * removal moves a group's last vector into the hole, so groups stay dense.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "reuse.h"

typedef struct tmeta {
    uint64_t key_hash;
    uint64_t tenant_hash;
    unsigned char hex[32];
    uint32_t step;
} tmeta;

typedef struct group {
    uint32_t layer;
    uint64_t model_hash;
    uint32_t dim;
    size_t n, cap;
    float *vecs; /* n * dim, each of unit length */
    tmeta *meta;
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
};

int gencache__traj_new(gencache__traj **out)
{
    gencache__traj *t = calloc(1, sizeof *t);
    if (!t)
        return GENCACHE_ENOMEM;
    if (pthread_rwlock_init(&t->lock, NULL) != 0) {
        free(t);
        return GENCACHE_ENOMEM;
    }
    *out = t;
    return GENCACHE_OK;
}

void gencache__traj_free(gencache__traj *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->n_groups; i++) {
        free(t->groups[i].vecs);
        free(t->groups[i].meta);
    }
    free(t->groups);
    free(t->table);
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

static group *find_group(gencache__traj *t, uint32_t layer, uint64_t model_hash, uint32_t *index)
{
    for (size_t i = 0; i < t->n_groups; i++) {
        group *g = &t->groups[i];
        if (g->layer == layer && g->model_hash == model_hash) {
            if (index)
                *index = (uint32_t)i;
            return g;
        }
    }
    return NULL;
}

int gencache__traj_dim(gencache__traj *t, uint32_t layer, uint64_t model_hash, uint32_t *dim)
{
    pthread_rwlock_rdlock(&t->lock);
    group *g = find_group(t, layer, model_hash, NULL);
    *dim = g ? g->dim : 0;
    pthread_rwlock_unlock(&t->lock);
    return g ? GENCACHE_OK : GENCACHE_ENOTFOUND;
}

static void remove_locked(gencache__traj *t, slot *s)
{
    group *g = &t->groups[s->group];
    uint32_t pos = s->pos, last = (uint32_t)g->n - 1;
    table_remove(t, s);
    if (pos != last) {
        memcpy(&g->vecs[(size_t)pos * g->dim], &g->vecs[(size_t)last * g->dim],
               sizeof(float) * g->dim);
        g->meta[pos] = g->meta[last];
        slot *moved = table_find(t, nz(g->meta[pos].key_hash));
        if (moved)
            moved->pos = pos;
    }
    g->n--;
    t->count--;
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
    uint64_t h = nz(rec->key_hash);
    slot *old = table_find(t, h);
    if (old)
        remove_locked(t, old);
    uint32_t gi = 0;
    group *g = find_group(t, rec->layer, rec->model_hash, &gi);
    if (g && g->dim != dim) {
        rc = GENCACHE_EINVAL;
        goto out;
    }
    if (!g) {
        if (t->n_groups == t->cap_groups) {
            size_t cap = t->cap_groups ? t->cap_groups * 2 : 4;
            group *ng = realloc(t->groups, cap * sizeof *ng);
            if (!ng) {
                rc = GENCACHE_ENOMEM;
                goto out;
            }
            t->groups = ng;
            t->cap_groups = cap;
        }
        gi = (uint32_t)t->n_groups++;
        g = &t->groups[gi];
        *g = (group){.layer = rec->layer, .model_hash = rec->model_hash, .dim = dim};
    }
    if (g->n == g->cap) {
        size_t cap = g->cap ? g->cap * 2 : 16;
        float *nv = realloc(g->vecs, cap * dim * sizeof *nv);
        if (nv)
            g->vecs = nv;
        tmeta *nm = nv ? realloc(g->meta, cap * sizeof *nm) : NULL;
        if (!nm) {
            rc = GENCACHE_ENOMEM;
            goto out;
        }
        g->meta = nm;
        g->cap = cap;
    }
    rc = table_put(t, (slot){.key_hash = h, .group = gi, .pos = (uint32_t)g->n});
    if (rc != GENCACHE_OK)
        goto out;
    memcpy(&g->vecs[g->n * dim], unit, sizeof(float) * dim);
    tmeta *m = &g->meta[g->n];
    m->key_hash = rec->key_hash;
    m->tenant_hash = rec->tenant_hash;
    memcpy(m->hex, rec->hex, sizeof m->hex);
    m->step = rec->step;
    g->n++;
    t->count++;
out:
    pthread_rwlock_unlock(&t->lock);
    free(unit);
    return rc;
}

size_t gencache__traj_drop(gencache__traj *t, uint64_t key_hash)
{
    pthread_rwlock_wrlock(&t->lock);
    slot *s = table_find(t, nz(key_hash));
    size_t n = 0;
    if (s && t->groups[s->group].meta[s->pos].key_hash == key_hash) {
        remove_locked(t, s);
        n = 1;
    }
    pthread_rwlock_unlock(&t->lock);
    return n;
}

uint64_t gencache__traj_count(gencache__traj *t)
{
    pthread_rwlock_rdlock(&t->lock);
    uint64_t n = t->count;
    pthread_rwlock_unlock(&t->lock);
    return n;
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

int gencache__traj_find(gencache__traj *t, uint32_t layer, uint64_t model_hash,
                        uint64_t tenant_hash, const float *query, uint32_t dim,
                        const gencache__traj_table *table, gencache__traj_cand *out, size_t cap,
                        size_t *n)
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
    float lowest = table->n ? table->rows[0].similarity : 2.0f;
    dot_fn dot = pick_dot();
    pthread_rwlock_rdlock(&t->lock);
    group *g = find_group(t, layer, model_hash, NULL);
    if (g && g->dim != dim)
        rc = GENCACHE_EINVAL;
    for (size_t i = 0; rc == GENCACHE_OK && g && i < g->n; i++) {
        float sim = dot(unit, &g->vecs[i * dim], dim);
        if (sim < lowest || g->meta[i].tenant_hash != tenant_hash)
            continue;
        if (g->meta[i].step > gencache__traj_max_step(table, sim))
            continue;
        gencache__traj_cand c = {.similarity = sim};
        c.rec.layer = layer;
        c.rec.model_hash = model_hash;
        c.rec.key_hash = g->meta[i].key_hash;
        c.rec.tenant_hash = g->meta[i].tenant_hash;
        memcpy(c.rec.hex, g->meta[i].hex, sizeof c.rec.hex);
        c.rec.step = g->meta[i].step;
        keep(out, cap, n, &c);
    }
    pthread_rwlock_unlock(&t->lock);
    free(unit);
    qsort(out, *n, sizeof *out, cmp_cands);
    return rc;
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
            gencache__traj_rec rec = {.layer = g->layer, .model_hash = g->model_hash};
            rec.key_hash = g->meta[i].key_hash;
            rec.tenant_hash = g->meta[i].tenant_hash;
            memcpy(rec.hex, g->meta[i].hex, sizeof rec.hex);
            rec.step = g->meta[i].step;
            fn(ud, &rec, &g->vecs[i * g->dim], g->dim);
        }
    }
    pthread_rwlock_unlock(&t->lock);
}
