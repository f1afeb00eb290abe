/*
 * hash_index.c: the near-duplicate index of 64-bit perceptual hashes, by multi-index hashing
 * (Norouzi et al.): five substring tables, and a query within radius r = 5a + b (b < 5) probes
 * the buckets within a bits of the query's substring in the first b + 1 tables and within a - 1
 * bits in the others (two hashes within r agree that closely on at least one substring: were
 * every substring farther apart, the distance would be at least (b + 1)(a + 1) + (4 - b)a > r),
 * filters their entries by a 32-bit fingerprint and checks the survivors' full distance. A
 * candidate is reported only from the first table where its substring is that close, so no
 * result appears twice and no set of seen entries is needed. Radii too large for probing to pay
 * (a > 2) fall back to a scan of the entries. A reader-writer lock lets queries run in parallel.
 */
#include <stdlib.h>
#include <string.h>

#include "hash_index.h"
#include "image.h"

#define NBUCKETS(c) ((size_t)1 << chunk_bits(c))
#define NO_SLOT     UINT32_MAX

static unsigned chunk_bits(unsigned c)
{
    return c < GENCACHE__HIDX_CHUNKS - 1 ? GENCACHE__HIDX_BITS
                                         : 64 - GENCACHE__HIDX_BITS * (GENCACHE__HIDX_CHUNKS - 1);
}

static uint32_t chunk_of(uint64_t h, unsigned c)
{
    return (uint32_t)(h >> (c * GENCACHE__HIDX_BITS)) & (uint32_t)((1u << chunk_bits(c)) - 1);
}

/* The 32 bits that follow table c's substring (cyclically): none of them is in the substring. */
static uint32_t fingerprint(uint64_t h, unsigned c)
{
    unsigned r = ((c + 1) * GENCACHE__HIDX_BITS) & 63;
    return (uint32_t)(r ? (h >> r) | (h << (64 - r)) : h);
}

int gencache_hash_index_new(gencache_hash_index **out)
{
    if (!out)
        return GENCACHE_EINVAL;
    *out = NULL;
    gencache_hash_index *idx = calloc(1, sizeof *idx);
    if (!idx)
        return GENCACHE_ENOMEM;
    idx->free_head = NO_SLOT;
    for (unsigned c = 0; c < GENCACHE__HIDX_CHUNKS; c++) {
        idx->tables[c] = calloc(NBUCKETS(c), sizeof(gencache__hidx_bucket));
        if (!idx->tables[c]) {
            for (unsigned j = 0; j < c; j++)
                free(idx->tables[j]);
            free(idx);
            return GENCACHE_ENOMEM;
        }
    }
    if (pthread_rwlock_init(&idx->lock, NULL) != 0) {
        for (unsigned c = 0; c < GENCACHE__HIDX_CHUNKS; c++)
            free(idx->tables[c]);
        free(idx);
        return GENCACHE_ENOMEM;
    }
    *out = idx;
    return GENCACHE_OK;
}

void gencache_hash_index_free(gencache_hash_index *idx)
{
    if (!idx)
        return;
    for (unsigned c = 0; c < GENCACHE__HIDX_CHUNKS; c++) {
        for (size_t b = 0; b < NBUCKETS(c); b++) {
            free(idx->tables[c][b].fps);
            free(idx->tables[c][b].slots);
        }
        free(idx->tables[c]);
    }
    free(idx->hashes);
    free(idx->ids);
    free(idx->free_next);
    free(idx->live);
    pthread_rwlock_destroy(&idx->lock);
    free(idx);
}

/* Makes room for one more entry in the bucket. */
static int bucket_reserve(gencache__hidx_bucket *b)
{
    if (b->n < b->cap)
        return GENCACHE_OK;
    uint32_t ncap = b->cap ? b->cap * 2 : 4;
    uint32_t *nf = realloc(b->fps, sizeof *nf * ncap);
    if (!nf)
        return GENCACHE_ENOMEM;
    b->fps = nf;
    uint32_t *ns = realloc(b->slots, sizeof *ns * ncap);
    if (!ns)
        return GENCACHE_ENOMEM; /* fps grew, cap did not: still consistent */
    b->slots = ns;
    b->cap = ncap;
    return GENCACHE_OK;
}

static void bucket_del_slot(gencache__hidx_bucket *b, uint32_t slot)
{
    for (uint32_t i = 0; i < b->n; i++)
        if (b->slots[i] == slot) {
            b->fps[i] = b->fps[b->n - 1];
            b->slots[i] = b->slots[b->n - 1];
            b->n--;
            return;
        }
}

/* The slot of (hash, id), or NO_SLOT. */
static uint32_t find_slot(const gencache_hash_index *idx, uint64_t hash, uint64_t id)
{
    const gencache__hidx_bucket *b = &idx->tables[0][chunk_of(hash, 0)];
    uint32_t fp = fingerprint(hash, 0);
    for (uint32_t i = 0; i < b->n; i++) {
        uint32_t s = b->slots[i];
        if (b->fps[i] == fp && idx->hashes[s] == hash && idx->ids[s] == id)
            return s;
    }
    return NO_SLOT;
}

static int grow_slots(gencache_hash_index *idx)
{
    uint32_t ncap = idx->slot_cap ? idx->slot_cap * 2 : 64;
    if (ncap < idx->slot_cap)
        return GENCACHE_ELIMIT;
    uint64_t *nh = realloc(idx->hashes, sizeof *nh * ncap);
    if (!nh)
        return GENCACHE_ENOMEM;
    idx->hashes = nh;
    uint64_t *ni = realloc(idx->ids, sizeof *ni * ncap);
    if (!ni)
        return GENCACHE_ENOMEM;
    idx->ids = ni;
    uint32_t *nf = realloc(idx->free_next, sizeof *nf * ncap);
    if (!nf)
        return GENCACHE_ENOMEM;
    idx->free_next = nf;
    uint8_t *nl = realloc(idx->live, ncap);
    if (!nl)
        return GENCACHE_ENOMEM;
    idx->live = nl;
    idx->slot_cap = ncap;
    return GENCACHE_OK;
}

int gencache__hidx_insert_unlocked(gencache_hash_index *idx, uint64_t hash, uint64_t id)
{
    if (idx->count >= UINT32_MAX - 1)
        return GENCACHE_ELIMIT;
    /* Reserve everything first, so a failed allocation leaves the index as it was. */
    if (idx->free_head == NO_SLOT && idx->slots == idx->slot_cap) {
        int rc = grow_slots(idx);
        if (rc != GENCACHE_OK)
            return rc;
    }
    for (unsigned c = 0; c < GENCACHE__HIDX_CHUNKS; c++) {
        int rc = bucket_reserve(&idx->tables[c][chunk_of(hash, c)]);
        if (rc != GENCACHE_OK)
            return rc;
    }
    uint32_t slot;
    if (idx->free_head != NO_SLOT) {
        slot = idx->free_head;
        idx->free_head = idx->free_next[slot];
    } else {
        slot = idx->slots++;
    }
    idx->hashes[slot] = hash;
    idx->ids[slot] = id;
    idx->live[slot] = 1;
    for (unsigned c = 0; c < GENCACHE__HIDX_CHUNKS; c++) {
        gencache__hidx_bucket *b = &idx->tables[c][chunk_of(hash, c)];
        b->fps[b->n] = fingerprint(hash, c);
        b->slots[b->n] = slot;
        b->n++;
    }
    idx->count++;
    return GENCACHE_OK;
}

int gencache_hash_index_insert(gencache_hash_index *idx, uint64_t hash, uint64_t id)
{
    if (!idx)
        return GENCACHE_EINVAL;
    pthread_rwlock_wrlock(&idx->lock);
    int rc;
    if (find_slot(idx, hash, id) != NO_SLOT)
        rc = GENCACHE_EEXIST;
    else
        rc = gencache__hidx_insert_unlocked(idx, hash, id);
    pthread_rwlock_unlock(&idx->lock);
    return rc;
}

int gencache_hash_index_remove(gencache_hash_index *idx, uint64_t hash, uint64_t id)
{
    if (!idx)
        return GENCACHE_EINVAL;
    pthread_rwlock_wrlock(&idx->lock);
    int rc = GENCACHE_ENOTFOUND;
    uint32_t slot = find_slot(idx, hash, id);
    if (slot != NO_SLOT) {
        for (unsigned c = 0; c < GENCACHE__HIDX_CHUNKS; c++)
            bucket_del_slot(&idx->tables[c][chunk_of(hash, c)], slot);
        idx->live[slot] = 0;
        idx->free_next[slot] = idx->free_head;
        idx->free_head = slot;
        idx->count--;
        rc = GENCACHE_OK;
    }
    pthread_rwlock_unlock(&idx->lock);
    return rc;
}

size_t gencache_hash_index_size(gencache_hash_index *idx)
{
    if (!idx)
        return 0;
    pthread_rwlock_rdlock(&idx->lock);
    size_t n = (size_t)idx->count;
    pthread_rwlock_unlock(&idx->lock);
    return n;
}

/* Results gathered by a query: on the stack while few, then on the heap. */
typedef struct hits {
    gencache_hash_hit *v;
    size_t n, cap;
    gencache_hash_hit local[64];
    int oom;
} hits;

static void hits_add(hits *h, uint64_t hash, uint64_t id, unsigned d)
{
    if (h->n == h->cap) {
        size_t ncap = h->cap * 2;
        gencache_hash_hit *nv =
            h->v == h->local ? malloc(sizeof *nv * ncap) : realloc(h->v, sizeof *nv * ncap);
        if (!nv) {
            h->oom = 1;
            return;
        }
        if (h->v == h->local)
            memcpy(nv, h->local, sizeof h->local);
        h->v = nv;
        h->cap = ncap;
    }
    h->v[h->n].hash = hash;
    h->v[h->n].id = id;
    h->v[h->n].distance = d;
    h->n++;
}

static int cmp_hit(const void *a, const void *b)
{
    const gencache_hash_hit *x = a, *y = b;
    if (x->distance != y->distance)
        return x->distance < y->distance ? -1 : 1;
    if (x->id != y->id)
        return x->id < y->id ? -1 : 1;
    return (x->hash > y->hash) - (x->hash < y->hash);
}

/* Fingerprint survivors of one query: entries whose full hash must be fetched. */
typedef struct cands {
    uint32_t slot[512];
    uint8_t table[512];
    size_t n;
} cands;

/* Checks the survivors' full hashes (fetched together, see below) and reports those within the
 * radius that no earlier table reports. */
static inline __attribute__((always_inline)) void check_cands_body(const gencache_hash_index *idx,
                                                                   cands *cd, uint64_t q,
                                                                   unsigned radius, const int *s,
                                                                   hits *h)
{
    for (size_t i = 0; i < cd->n; i++)
        __builtin_prefetch(&idx->hashes[cd->slot[i]]);
    for (size_t i = 0; i < cd->n; i++) {
        uint32_t slot = cd->slot[i];
        uint64_t x = idx->hashes[slot] ^ q;
        unsigned d = (unsigned)__builtin_popcountll(x);
        if (d > radius)
            continue;
        int earlier = 0;
        for (unsigned j = 0; j < cd->table[i] && !earlier; j++)
            earlier = __builtin_popcount(chunk_of(x, j)) <= s[j];
        if (!earlier)
            hits_add(h, idx->hashes[slot], idx->ids[slot], d);
    }
    cd->n = 0;
}

/* Filters the entries of bucket `key` of table c by fingerprint. Every entry there differs from
 * the query in popcount(key ^ the query's substring) bits of the substring, and the fingerprint
 * holds other bits, so an entry within the radius has a fingerprint within the radius less that
 * many bits. */
static inline __attribute__((always_inline)) void scan_bucket_body(const gencache_hash_index *idx,
                                                                   uint32_t key, unsigned c,
                                                                   uint64_t q, unsigned radius,
                                                                   const int *s, cands *cd, hits *h)
{
    const gencache__hidx_bucket *b = &idx->tables[c][key];
    const uint32_t *fps = b->fps;
    uint32_t qfp = fingerprint(q, c);
    unsigned limit = radius - (unsigned)__builtin_popcount(key ^ chunk_of(q, c));
    for (uint32_t i = 0; i < b->n; i++) {
        if ((unsigned)__builtin_popcount(fps[i] ^ qfp) > limit)
            continue;
        if (cd->n == sizeof cd->slot / sizeof cd->slot[0])
            check_cands_body(idx, cd, q, radius, s, h);
        cd->slot[cd->n] = b->slots[i];
        cd->table[cd->n] = (uint8_t)c;
        cd->n++;
    }
}

/* The buckets a query visits in table c: its own substring and those within s bits of it (none
 * when s < 0). */
static size_t probe_keys(unsigned c, uint64_t q, int s, uint32_t *keys)
{
    uint32_t key = chunk_of(q, c);
    unsigned nb = chunk_bits(c);
    size_t n = 0;
    if (s < 0)
        return 0;
    keys[n++] = key;
    if (s >= 1)
        for (unsigned i = 0; i < nb; i++) {
            uint32_t k1 = key ^ (1u << i);
            keys[n++] = k1;
            if (s >= 2)
                for (unsigned j = i + 1; j < nb; j++)
                    keys[n++] = k1 ^ (1u << j);
        }
    return n;
}

/* The fingerprints of the visited buckets lie at unrelated addresses, each a few cache lines
 * long: asking for all of them before scanning any lets the memory system fetch them in parallel
 * instead of one bucket's latency after another. */
static void prefetch_bucket(const gencache__hidx_bucket *b)
{
    const char *p = (const char *)b->fps;
    size_t bytes = (size_t)b->n * sizeof *b->fps;
    if (bytes > 1024)
        bytes = 1024;
    for (size_t off = 0; off < bytes; off += 64)
        __builtin_prefetch(p + off);
}

/* Keys of at most 1 + 13 + 78 buckets per table (s <= 2). */
#define MAX_PROBES (1 + GENCACHE__HIDX_BITS + GENCACHE__HIDX_BITS * (GENCACHE__HIDX_BITS - 1) / 2)

/* The scan of a query, compiled twice: with the POPCNT instruction (most of a query's time is
 * popcounts) and without, for CPUs that lack it. The bodies above are inlined into each. */
#define PROBE_TABLES_BODY                                                                          \
    uint32_t keys[GENCACHE__HIDX_CHUNKS][MAX_PROBES];                                              \
    size_t n[GENCACHE__HIDX_CHUNKS];                                                               \
    for (unsigned c = 0; c < GENCACHE__HIDX_CHUNKS; c++) {                                         \
        n[c] = probe_keys(c, q, s[c], keys[c]);                                                    \
        for (size_t i = 0; i < n[c]; i++)                                                          \
            __builtin_prefetch(&idx->tables[c][keys[c][i]]);                                       \
    }                                                                                              \
    for (unsigned c = 0; c < GENCACHE__HIDX_CHUNKS; c++)                                           \
        for (size_t i = 0; i < n[c]; i++)                                                          \
            prefetch_bucket(&idx->tables[c][keys[c][i]]);                                          \
    cands cd;                                                                                      \
    cd.n = 0;                                                                                      \
    for (unsigned c = 0; c < GENCACHE__HIDX_CHUNKS; c++)                                           \
        for (size_t i = 0; i < n[c]; i++)                                                          \
            scan_bucket_body(idx, keys[c][i], c, q, radius, s, &cd, h);                            \
    check_cands_body(idx, &cd, q, radius, s, h)

#define SCAN_ALL_BODY                                                                              \
    for (uint32_t sl = 0; sl < idx->slots; sl++) {                                                 \
        if (!idx->live[sl])                                                                        \
            continue;                                                                              \
        unsigned d = (unsigned)__builtin_popcountll(idx->hashes[sl] ^ q);                          \
        if (d <= radius)                                                                           \
            hits_add(h, idx->hashes[sl], idx->ids[sl], d);                                         \
    }

__attribute__((target("popcnt"))) static void probe_tables_popcnt(const gencache_hash_index *idx,
                                                                  uint64_t q, unsigned radius,
                                                                  const int *s, hits *h)
{
    PROBE_TABLES_BODY;
}

static void probe_tables_plain(const gencache_hash_index *idx, uint64_t q, unsigned radius,
                               const int *s, hits *h)
{
    PROBE_TABLES_BODY;
}

__attribute__((target("popcnt"))) static void scan_all_popcnt(const gencache_hash_index *idx,
                                                              uint64_t q, unsigned radius, hits *h)
{
    SCAN_ALL_BODY
}

static void scan_all_plain(const gencache_hash_index *idx, uint64_t q, unsigned radius, hits *h)
{
    SCAN_ALL_BODY
}

/* Whether the CPU has POPCNT: probed once (a plain flag rather than an ifunc, which sanitizer
 * runtimes cannot run before they start). */
static int have_popcnt(void)
{
    static int state = -1;
    int st = __atomic_load_n(&state, __ATOMIC_RELAXED);
    if (st < 0) {
        __builtin_cpu_init();
        st = __builtin_cpu_supports("popcnt") ? 1 : 0;
        __atomic_store_n(&state, st, __ATOMIC_RELAXED);
    }
    return st;
}

int gencache_hash_index_query(gencache_hash_index *idx, uint64_t hash, unsigned radius,
                              gencache_hash_hit *out, size_t cap, size_t *count)
{
    if (count)
        *count = 0;
    if (!idx || !count || radius > 64 || (cap > 0 && !out))
        return GENCACHE_EINVAL;
    hits h;
    h.v = h.local;
    h.n = 0;
    h.cap = sizeof h.local / sizeof h.local[0];
    h.oom = 0;
    pthread_rwlock_rdlock(&idx->lock);
    /* The substring radius of each table: a in the first b + 1, a - 1 in the others. */
    int a = (int)(radius / GENCACHE__HIDX_CHUNKS), b = (int)(radius % GENCACHE__HIDX_CHUNKS);
    int s[GENCACHE__HIDX_CHUNKS];
    for (int c = 0; c < GENCACHE__HIDX_CHUNKS; c++)
        s[c] = c <= b ? a : a - 1;
    if (a <= 2) {
        if (have_popcnt())
            probe_tables_popcnt(idx, hash, radius, s, &h);
        else
            probe_tables_plain(idx, hash, radius, s, &h);
    } else if (have_popcnt()) {
        scan_all_popcnt(idx, hash, radius, &h);
    } else {
        scan_all_plain(idx, hash, radius, &h);
    }
    pthread_rwlock_unlock(&idx->lock);
    int rc = GENCACHE_OK;
    if (h.oom) {
        rc = GENCACHE_ENOMEM;
    } else {
        qsort(h.v, h.n, sizeof *h.v, cmp_hit);
        size_t m = h.n < cap ? h.n : cap;
        if (m)
            memcpy(out, h.v, m * sizeof *out);
        *count = h.n;
    }
    if (h.v != h.local)
        free(h.v);
    return rc;
}
