/* test_mem.c: the memory tier's own machinery (src/tier/mem.c, src/policy/lru.c) below the tier
 * contract: the slot table with keys whose hashes collide and runs broken by deletes, the LRU
 * rule that leaves the most recent eighth of a list in place, and eviction across shards, which
 * compares the shards' published hints and must still take the globally least recent entry
 * after gets, deletes and replacements made those hints stale; and the replay of the miss-ratio
 * curve's sampled accesses on a tier of keyless metadata entries. */
#include <pthread.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "test.h"
#include "internal.h"
#include "policy/policy.h"

static gencache__tier *open_tier(unsigned shards, uint64_t max_entries)
{
    gencache__mem_options o = {.max_entries = max_entries, .shards = shards};
    gencache__tier *t = NULL;
    CHECK_OK(gencache__mem_tier_open(&o, &t));
    return t;
}

/* An entry of key with the hash given (0: the key's own), holding one byte: its number. */
static gencache__entry *entry_of(const char *key, uint64_t hash, unsigned char tag)
{
    gencache__entry_spec spec = {.key = key, .size = 1, .hash = hash};
    gencache__entry *e = NULL;
    CHECK_OK(gencache__entry_new(NULL, &spec, &e));
    e->value[0] = tag;
    return e;
}

/* The byte stored under key with that hash, or -1 when the tier has none. */
static int lookup(gencache__tier *t, const char *key, uint64_t hash)
{
    gencache__entry *e = NULL;
    int rc = t->ops->get(t, key, hash, 1, false, &e);
    if (rc != GENCACHE_OK) {
        CHECK(e == NULL);
        CHECK_INT_EQ(rc, GENCACHE_ENOTFOUND);
        return -1;
    }
    int tag = e->value[0];
    gencache__entry_release(e);
    return tag;
}

TEST_CASE(equal_hashes_kept_apart)
{
    /* Keys of every length sharing one hash, as a collision would have them: each is found by
     * its own bytes, never by a prefix or an extension of another. */
    gencache__tier *t = open_tier(1, 0);
    static const char *const keys[] = {"k", "k1", "k12", "k2", "text_embedding/ab", "x"};
    enum { N = sizeof keys / sizeof keys[0] };
    const uint64_t h = 0x1234;
    for (unsigned i = 0; i < N; i++) {
        gencache__entry *e = entry_of(keys[i], h, (unsigned char)i);
        CHECK_OK(t->ops->put(t, e, 1));
        gencache__entry_release(e);
    }
    for (unsigned i = 0; i < N; i++)
        CHECK_INT_EQ(lookup(t, keys[i], h), i);
    CHECK_INT_EQ(lookup(t, "k123", h), -1);
    CHECK_INT_EQ(lookup(t, "", h), -1);
    CHECK_INT_EQ(lookup(t, "k1", h + 1), -1); /* the right bytes under another hash */

    /* A replacement keeps the others; deleting from the middle of the run keeps the rest. */
    gencache__entry *e = entry_of("k12", h, 42);
    CHECK_OK(t->ops->put(t, e, 1));
    gencache__entry_release(e);
    CHECK_INT_EQ(lookup(t, "k12", h), 42);
    CHECK_OK(t->ops->del(t, "k1", h));
    CHECK_RC(t->ops->del(t, "k1", h), GENCACHE_ENOTFOUND);
    CHECK_INT_EQ(lookup(t, "k1", h), -1);
    CHECK_INT_EQ(lookup(t, "k", h), 0);
    CHECK_INT_EQ(lookup(t, "k12", h), 42);
    CHECK_INT_EQ(lookup(t, "k2", h), 3);
    CHECK_INT_EQ(lookup(t, "x", h), 5);
    gencache_tier_stats st;
    t->ops->stats(t, &st);
    CHECK_UINT_EQ(st.entries, N - 1);
    t->ops->close(t);
}

TEST_CASE(deletes_keep_every_probe_run)
{
    /* Hashes crowded onto a few home slots make long runs that wrap around the array; deleting
     * every third entry moves the others back, and every one must still be found. The table
     * grows past its first size on the way. */
    gencache__tier *t = open_tier(1, 0);
    enum { N = 3000 };
    char key[64];
    for (unsigned i = 0; i < N; i++) {
        snprintf(key, sizeof key, "k/%u", i);
        /* Home slots 0-3 and the last ones of the array, whatever its size. */
        uint64_t h = i % 2 ? (uint64_t)(i % 4) : ~(uint64_t)(i % 4);
        gencache__entry *e = entry_of(key, h, (unsigned char)i);
        CHECK_OK(t->ops->put(t, e, 1));
        gencache__entry_release(e);
    }
    for (unsigned i = 0; i < N; i += 3) {
        snprintf(key, sizeof key, "k/%u", i);
        CHECK_OK(t->ops->del(t, key, i % 2 ? (uint64_t)(i % 4) : ~(uint64_t)(i % 4)));
    }
    for (unsigned i = 0; i < N; i++) {
        snprintf(key, sizeof key, "k/%u", i);
        int want = i % 3 == 0 ? -1 : (int)(unsigned char)i;
        CHECK_INT_EQ(lookup(t, key, i % 2 ? (uint64_t)(i % 4) : ~(uint64_t)(i % 4)), want);
    }
    t->ops->close(t);
}

/* ---- LRU as CLOCK ---- */

TEST_CASE(lru_hit_sets_a_bit_and_the_sweep_gives_a_second_chance)
{
    const gencache__policy_ops *lru = gencache__policy_of(GENCACHE_EVICTION_LRU);
    gencache__policy_shared sh = {.ghost_entries = 16};
    gencache__policy_shard p = {.shared = &sh};
    enum { N = 16 };
    gencache__entry *es[N];
    for (unsigned i = 0; i < N; i++) {
        char key[32];
        snprintf(key, sizeof key, "k/%u", i);
        es[i] = entry_of(key, 0, (unsigned char)i);
        CHECK_OK(lru->insert(&p, es[i]));
    }
    /* Head 15 ... tail 0. A hit moves nothing on a list of 8 or more. */
    CHECK(p.head[0] == es[15] && p.tail[0] == es[0]);
    lru->hit(&p, es[0]);
    lru->hit(&p, es[1]);
    lru->hit(&p, es[5]);
    CHECK(p.head[0] == es[15] && p.tail[0] == es[0]);
    CHECK(es[15]->lru_next == es[14]);
    /* The sweep sends 0 and 1 back to the head without their bits; 2 is the candidate. */
    double rank;
    CHECK(lru->candidate(&p, NULL, &rank) == es[2]);
    CHECK(p.head[0] == es[1] && es[1]->lru_next == es[0] && es[0]->lru_next == es[15]);
    CHECK(es[0]->pol_ref == 0 && es[1]->pol_ref == 0 && es[5]->pol_ref == 1);
    CHECK(lru->candidate(&p, NULL, &rank) == es[2]);  /* asking again changes nothing */
    CHECK(lru->candidate(&p, es[2], &rank) == es[3]); /* never the entry being stored */
    /* Every entry referenced: one turn clears them all and the tail goes. */
    for (unsigned i = 0; i < N; i++)
        lru->hit(&p, es[i]);
    gencache__entry *tail = p.tail[0];
    CHECK(lru->candidate(&p, NULL, &rank) == tail);
    for (unsigned i = 0; i < N; i++)
        CHECK_INT_EQ(es[i]->pol_ref, 0);
    /* Below 8 entries a hit moves its entry to the head: exact LRU. */
    for (unsigned i = 0; i < N - 7; i++)
        lru->remove(&p, es[i]);
    CHECK_UINT_EQ(p.count[0], 7);
    gencache__entry *last = p.tail[0];
    lru->hit(&p, last);
    CHECK(p.head[0] == last && last->pol_ref == 0);
    for (unsigned i = N - 7; i < N; i++)
        lru->remove(&p, es[i]);
    for (unsigned i = 0; i < N; i++)
        gencache__entry_release(es[i]);
    CHECK(p.head[0] == NULL && p.tail[0] == NULL);
    CHECK_UINT_EQ(p.count[0], 0);
    lru->fini(&p);
}

/* ---- eviction across shards ---- */

static uint64_t fake_now = 1700000000000ull;

static uint64_t fake_clock(void *ud)
{
    (void)ud;
    return fake_now;
}

static void key_of(char *buf, unsigned n)
{
    sprintf(buf, "image_latent/%064x", n);
}

/* Which of the keys 0..n-1 the cache holds, by peeks (which change nothing). */
static void held_keys(gencache *c, unsigned n, bool *out)
{
    char key[128];
    for (unsigned i = 0; i < n; i++) {
        key_of(key, i);
        gencache_handle *h = NULL;
        out[i] = gencache_peek(c, key, &h) == GENCACHE_OK;
        gencache_handle_release(h);
    }
}

/* An LRU cache of at most max_entries entries over `shards` shards, on the fake clock. */
static gencache *open_lru(uint64_t max_entries, unsigned shards)
{
    gencache *c = NULL;
    gencache_options o;
    gencache_options_init(&o);
    o.mem_policy = GENCACHE_EVICTION_LRU;
    o.mem_max_entries = max_entries;
    o.mem_shards = shards;
    o.mrc_sample_rate = 0;
    o.clock_fn = fake_clock;
    CHECK_OK(gencache_open(&c, &o));
    return c;
}

TEST_CASE(lru_victim_is_global_after_stale_hints)
{
    /* 64 shards hold 24 entries, so each shard's list is short (under eight: exact LRU, not
     * CLOCK, src/policy/lru.c): the victims must be exactly an LRU model's, whatever gets,
     * deletes and replacements did to the shards' published hints between evictions. */
    enum { CAP = 24, KEYS = 96, STEPS = 3000 };
    gencache *c = open_lru(CAP, 64);
    uint64_t last[KEYS] = {0}; /* the model: last access of each key held, 0: not held */
    unsigned held = 0;
    uint64_t x = 1;
    for (unsigned step = 0; step < STEPS; step++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull; /* an LCG: its high bits */
        unsigned k = (unsigned)((x >> 33) % KEYS), op = (unsigned)((x >> 53) % 10);
        char key[128];
        key_of(key, k);
        fake_now++;
        if (op < 5) { /* get */
            gencache_handle *h = NULL;
            int rc = gencache_get(c, key, &h);
            CHECK_INT_EQ(rc, last[k] ? GENCACHE_OK : GENCACHE_ENOTFOUND);
            gencache_handle_release(h);
            if (last[k])
                last[k] = fake_now;
        } else if (op < 9) { /* put: new or replacing */
            unsigned char v = (unsigned char)k;
            CHECK_OK(gencache_put(c, key, &v, 1, NULL));
            if (!last[k])
                held++;
            last[k] = fake_now;
            if (held > CAP) {
                unsigned victim = KEYS;
                for (unsigned i = 0; i < KEYS; i++)
                    if (last[i] && (victim == KEYS || last[i] < last[victim]))
                        victim = i;
                last[victim] = 0;
                held--;
            }
        } else { /* delete */
            CHECK_RC(gencache_del(c, key), last[k] ? GENCACHE_OK : GENCACHE_ENOTFOUND);
            if (last[k])
                held--;
            last[k] = 0;
        }
        if (step % 50 != 0 && op < 5)
            continue;
        bool held_now[KEYS];
        held_keys(c, KEYS, held_now);
        for (unsigned i = 0; i < KEYS; i++)
            if (held_now[i] != (last[i] != 0))
                test_fail(__FILE__, __LINE__, "step %u: key %u %s, the LRU model says %s", step, i,
                          held_now[i] ? "held" : "gone", last[i] ? "held" : "gone");
    }
    gencache_close(c);
}

/* A model of one shard's CLOCK list (src/policy/lru.c), linked through arrays of key numbers. */
enum { CLOCK_KEYS = 96, NONE = -1 };

typedef struct clock_model {
    int prev[CLOCK_KEYS], next[CLOCK_KEYS], head, tail;
    unsigned count;
    unsigned second_chances; /* referenced entries the sweeps sent back to the head */
    bool ref[CLOCK_KEYS], held[CLOCK_KEYS];
} clock_model;

static void model_push(clock_model *m, int k)
{
    m->prev[k] = NONE;
    m->next[k] = m->head;
    if (m->head != NONE)
        m->prev[m->head] = k;
    else
        m->tail = k;
    m->head = k;
    m->count++;
    m->held[k] = true;
}

static void model_unlink(clock_model *m, int k)
{
    if (m->prev[k] != NONE)
        m->next[m->prev[k]] = m->next[k];
    else
        m->head = m->next[k];
    if (m->next[k] != NONE)
        m->prev[m->next[k]] = m->prev[k];
    else
        m->tail = m->prev[k];
    m->count--;
    m->held[k] = false;
}

/* lru_candidate(): the sweep from the tail, skipping `keep`. */
static int model_sweep(clock_model *m, int keep)
{
    unsigned budget = m->count + 2;
    int e = m->tail;
    while (e != NONE && budget-- > 0) {
        if (e == keep) {
            e = m->prev[e];
            continue;
        }
        if (!m->ref[e])
            break;
        int prev = m->prev[e];
        m->ref[e] = false;
        m->second_chances++;
        model_unlink(m, e);
        model_push(m, e);
        e = prev != NONE ? prev : m->tail;
    }
    if (e != NONE && e == keep)
        e = m->prev[e];
    return e;
}

/* The tier's candidate(): without `keep` first, with it when the first answer was keep. */
static int model_candidate(clock_model *m, int keep)
{
    int c = model_sweep(m, NONE);
    return c == keep ? model_sweep(m, keep) : c;
}

TEST_CASE(lru_clock_matches_its_model)
{
    /* One shard of 24 entries, so its list is CLOCK's (8 or more): gets, puts (new and
     * replacing) and deletes, and after every step the cache holds exactly the model's keys. The
     * model sweeps when the tier asks for a candidate: after an insert that goes over the limit
     * and again after each eviction (to publish the shard's hint). */
    enum { CAP = 24, STEPS = 3000 };
    gencache *c = open_lru(CAP, 1);
    clock_model m = {.head = NONE, .tail = NONE};
    uint64_t x = 3;
    unsigned evictions = 0;
    for (unsigned step = 0; step < STEPS; step++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        int k = (int)((x >> 33) % CLOCK_KEYS);
        unsigned op = (unsigned)((x >> 53) % 10);
        char key[128];
        key_of(key, (unsigned)k);
        fake_now++;
        if (op < 5) { /* get */
            gencache_handle *h = NULL;
            CHECK_RC(gencache_get(c, key, &h), m.held[k] ? GENCACHE_OK : GENCACHE_ENOTFOUND);
            gencache_handle_release(h);
            if (m.held[k] && m.count >= 8) {
                m.ref[k] = true;
            } else if (m.held[k] && m.head != k) {
                model_unlink(&m, k);
                model_push(&m, k);
            }
        } else if (op < 9) { /* put: new or replacing */
            unsigned char v = (unsigned char)k;
            CHECK_OK(gencache_put(c, key, &v, 1, NULL));
            if (m.held[k])
                model_unlink(&m, k);
            m.ref[k] = false;
            model_push(&m, k);
            if (m.count > CAP) {
                unsigned before = m.count;
                int victim = model_candidate(&m, k);
                CHECK(victim != NONE && m.count == before);
                model_unlink(&m, victim);
                model_candidate(&m, k);
                evictions++;
            }
        } else { /* delete */
            CHECK_RC(gencache_del(c, key), m.held[k] ? GENCACHE_OK : GENCACHE_ENOTFOUND);
            if (m.held[k])
                model_unlink(&m, k);
        }
        bool held_now[CLOCK_KEYS];
        held_keys(c, CLOCK_KEYS, held_now);
        for (int i = 0; i < CLOCK_KEYS; i++)
            if (held_now[i] != m.held[i])
                test_fail(__FILE__, __LINE__, "step %u: key %d %s, the CLOCK model says %s", step,
                          i, held_now[i] ? "held" : "gone", m.held[i] ? "held" : "gone");
    }
    CHECK(evictions > 500);
    CHECK(m.second_chances > 100); /* the run is not plain FIFO or exact LRU */
    gencache_close(c);
}

/* ---- the freed-entry pool (src/entry.c) ---- */

#define POOLED GENCACHE__POOLS /* 0 in sanitizer builds */

/* An entry of the C library's allocator with size value bytes. */
static gencache__entry *sized_entry(const char *key, size_t size)
{
    gencache__entry_spec spec = {.key = key, .size = size};
    gencache__entry *e = NULL;
    CHECK_OK(gencache__entry_new(NULL, &spec, &e));
    return e;
}

TEST_CASE(entry_keeps_shape_and_content_type_only_when_given)
{
    /* The header holds pointers: a shape and a content type other than the default take room
     * after the strings; an entry without them points at shared constants. */
    gencache__entry *plain = sized_entry("result/p", 16);
    CHECK_STR_EQ(plain->content_type, "application/octet-stream");
    for (unsigned i = 0; i < GENCACHE_MAX_DIMS; i++)
        CHECK_INT_EQ(plain->shape[i], 0);
    gencache_meta m;
    gencache_meta_init(&m);
    m.content_type = "image/png";
    m.dtype = GENCACHE_DTYPE_F16;
    m.ndim = 3;
    m.shape[0] = 4;
    m.shape[1] = 64;
    m.shape[2] = 7;
    gencache__entry_spec spec = {.key = "result/p", .meta = &m, .size = 16};
    gencache__entry *e = NULL;
    CHECK_OK(gencache__entry_new(NULL, &spec, &e));
    CHECK_STR_EQ(e->content_type, "image/png");
    CHECK(e->content_type != m.content_type); /* a copy: inputs are borrowed */
    CHECK_INT_EQ(e->ndim, 3);
    CHECK_INT_EQ(e->shape[0], 4);
    CHECK_INT_EQ(e->shape[1], 64);
    CHECK_INT_EQ(e->shape[2], 7);
    CHECK_INT_EQ(e->shape[3], 0);
    CHECK_UINT_EQ((uintptr_t)e->shape % 8, 0);
    CHECK((const unsigned char *)(e->shape + GENCACHE_MAX_DIMS) <= e->value);
    CHECK_UINT_EQ((uintptr_t)e->value % GENCACHE__VALUE_ALIGN, 0);
    CHECK(e->alloc_bytes >= plain->alloc_bytes + sizeof(int64_t) * GENCACHE_MAX_DIMS);
    /* The value bytes do not overlap the metadata. */
    memset(e->value, 0xee, e->size);
    CHECK_INT_EQ(e->shape[2], 7);
    CHECK_STR_EQ(e->content_type, "image/png");
    gencache__entry_release(e);
    m.content_type = "application/octet-stream"; /* the default: not copied */
    CHECK_OK(gencache__entry_new(NULL, &spec, &e));
    CHECK(e->content_type == plain->content_type);
    gencache__entry_release(e);
    gencache__entry_release(plain);
}

TEST_CASE(entry_copies_a_given_value_before_writing_its_header)
{
    /* A spec with data has the value copied in first (streamed when small), then the header and
     * the strings written: every layout (shape, content type, a value too small or too large
     * to stream, none) ends with the value intact and the metadata intact beside it, also in
     * reused memory that held other bytes. */
    enum { BIG = GENCACHE__STREAM_MAX + 4096 };
    static unsigned char src[BIG + 1]; /* copied from src + 1 */
    for (size_t i = 0; i < sizeof src; i++)
        src[i] = (unsigned char)(i * 37 + 11);
    static const size_t sizes[] = {0, 1, 100, GENCACHE__STREAM_MIN, 4096, 4096 + 17, BIG};
    gencache_meta m;
    gencache_meta_init(&m);
    m.content_type = "image/png";
    m.ndim = 2;
    m.shape[0] = 3;
    m.shape[1] = 5;
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        for (int with_meta = 0; with_meta < 2; with_meta++) {
            /* Memory of this size freed with other bytes in it first, for the pool to hand on. */
            gencache__entry_spec spec = {
                .key = "text_embedding/dd",
                .meta = with_meta ? &m : NULL,
                .size = sizes[k],
                .data = src + 1,
            };
            gencache__entry *old = NULL;
            gencache__entry_spec blank = spec;
            blank.data = NULL;
            CHECK_OK(gencache__entry_new(NULL, &blank, &old));
            memset(old->value, 0xa5, old->size);
            gencache__entry_release(old);
            gencache__entry *e = NULL;
            CHECK_OK(gencache__entry_new(NULL, &spec, &e));
            CHECK_UINT_EQ(e->size, sizes[k]);
            CHECK_UINT_EQ((uintptr_t)e->value % GENCACHE__VALUE_ALIGN, 0);
            CHECK_MEM_EQ(e->value, src + 1, sizes[k]);
            CHECK(e->value + e->size <= (unsigned char *)e + e->alloc_bytes);
            CHECK_STR_EQ(e->key, "text_embedding/dd");
            CHECK_STR_EQ(e->layer_name, "text_embedding");
            CHECK_UINT_EQ(atomic_load(&e->refs), 1);
            if (with_meta) {
                CHECK_STR_EQ(e->content_type, "image/png");
                CHECK_INT_EQ(e->shape[0], 3);
                CHECK_INT_EQ(e->shape[1], 5);
                CHECK((const unsigned char *)(e->shape + GENCACHE_MAX_DIMS) <= e->value);
            } else {
                CHECK_STR_EQ(e->content_type, "application/octet-stream");
            }
            gencache__entry_release(e);
        }
    }
}

TEST_CASE(freed_entry_memory_is_reused_for_the_same_size_only)
{
    /* A put that evicts frees one entry and makes another of the same size: the second takes
     * the first's memory. An entry of another size gets memory of its own, and a reused entry
     * is a new one in every field. */
    gencache__entry_pool_clear();
    gencache__entry *a = sized_entry("text_embedding/aa", 4096);
    a->value[0] = 0x5a;
    atomic_store(&a->hits, 9);
    size_t bytes = a->alloc_bytes;
    CHECK_UINT_EQ(a->charge, bytes);
    void *mem = a;
    gencache__entry_release(a);
    gencache__entry *other = sized_entry("text_embedding/bb", 100); /* another size */
    CHECK(other->alloc_bytes != bytes);
    gencache__entry *b = sized_entry("text_embedding/cc", 4096);
    CHECK_UINT_EQ(b->alloc_bytes, bytes);
    if (POOLED) {
        CHECK((void *)b == mem);
        CHECK((void *)other != mem);
    }
    CHECK_STR_EQ(b->key, "text_embedding/cc");
    CHECK_STR_EQ(b->layer_name, "text_embedding");
    CHECK_UINT_EQ(atomic_load(&b->hits), 0);
    CHECK_UINT_EQ(atomic_load(&b->refs), 1);
    CHECK_UINT_EQ(b->size, 4096);
    CHECK_UINT_EQ((uintptr_t)b->value % GENCACHE__VALUE_ALIGN, 0);
    gencache__entry_release(b);
    gencache__entry_release(other);
}

TEST_CASE(pool_is_bounded)
{
    /* More entries freed at once than the pool keeps: it keeps a few (at most 4 and 256 KiB),
     * the next entries of that size take them, and an entry over 64 KiB is never kept. */
    enum { N = 12, SIZE = 8000 };
    gencache__entry *es[N];
    gencache__entry_pool_clear(); /* what earlier tests left */
    const size_t start = gencache__entry_pool_bytes();
    CHECK_UINT_EQ(start, 0);
    for (int i = 0; i < N; i++)
        es[i] = sized_entry("text_embedding/aa", SIZE);
    size_t bytes = es[0]->alloc_bytes;
    for (int i = 0; i < N; i++)
        gencache__entry_release(es[i]);
    size_t pooled = gencache__entry_pool_bytes();
    CHECK_UINT_LE(pooled, start + 4 * bytes);
    CHECK_UINT_LE(pooled, 256u << 10);
    if (POOLED)
        CHECK(pooled > start);
    for (int i = 0; i < N; i++) {
        es[i] = sized_entry("text_embedding/aa", SIZE);
        memset(es[i]->value, i, SIZE); /* the whole value is ours to write */
    }
    CHECK_UINT_EQ(gencache__entry_pool_bytes(), start);
    for (int i = 0; i < N; i++)
        gencache__entry_release(es[i]);
    for (int i = 0; i < N; i++) /* empty the pool of this size again */
        es[i] = sized_entry("text_embedding/aa", SIZE);
    gencache__entry *big = sized_entry("text_embedding/aa", 1u << 20);
    memset(big->value, 1, 1u << 20);
    gencache__entry_release(big);
    CHECK_UINT_EQ(gencache__entry_pool_bytes(), start);
    for (int i = 0; i < N; i++)
        gencache__entry_release(es[i]);
}

typedef struct counting_alloc {
    _Atomic long mallocs, frees;
} counting_alloc;

static void *count_malloc(void *ud, size_t n)
{
    atomic_fetch_add(&((counting_alloc *)ud)->mallocs, 1);
    return malloc(n);
}

static void count_free(void *ud, void *p)
{
    atomic_fetch_add(&((counting_alloc *)ud)->frees, 1);
    free(p);
}

TEST_CASE(caller_allocator_sees_every_entry)
{
    /* Puts into a full cache with the caller's allocator: every entry is allocated and freed
     * through it (none waits in a pool), and all of it is given back by close. */
    counting_alloc n = {0};
    gencache_allocator a = {.malloc_fn = count_malloc, .free_fn = count_free, .userdata = &n};
    gencache_options o;
    gencache_options_init(&o);
    o.allocator = &a;
    o.mem_max_bytes = 64u << 10;
    gencache *c = NULL;
    CHECK_OK(gencache_open(&c, &o));
    unsigned char v[4096] = {0};
    char key[128];
    long before = atomic_load(&n.mallocs);
    enum { PUTS = 200 };
    for (int i = 0; i < PUTS; i++) {
        snprintf(key, sizeof key, "text_embedding/%064x", i);
        CHECK_OK(gencache_put(c, key, v, sizeof v, NULL));
    }
    /* Each put allocated its own entry through the caller (the miniature tiers may add more). */
    CHECK(atomic_load(&n.mallocs) - before >= PUTS);
    gencache_close(c);
    CHECK_INT_EQ(atomic_load(&n.mallocs), atomic_load(&n.frees));
}

/* A cache of the default allocator whose memory tier holds about a dozen 4 KB entries. */
static gencache *open_small(void)
{
    gencache_options o;
    gencache_options_init(&o);
    o.mem_max_bytes = 64u << 10;
    gencache *c = NULL;
    CHECK_OK(gencache_open(&c, &o));
    return c;
}

TEST_CASE(handle_keeps_its_bytes_while_puts_reuse_memory)
{
    /* A handle's entry is evicted, then many puts of the same size evict and allocate: its
     * memory is not reused while the handle holds it, so its bytes stay as they were. */
    gencache *c = open_small();
    unsigned char v[4096];
    char key[128];
    snprintf(key, sizeof key, "text_embedding/%064x", 0xabc);
    memset(v, 0xee, sizeof v);
    CHECK_OK(gencache_put(c, key, v, sizeof v, NULL));
    gencache_handle *h = NULL;
    CHECK_OK(gencache_get(c, key, &h));
    for (int i = 0; i < 200; i++) {
        memset(v, i, sizeof v);
        snprintf(key, sizeof key, "text_embedding/%064x", i);
        CHECK_OK(gencache_put(c, key, v, sizeof v, NULL));
    }
    snprintf(key, sizeof key, "text_embedding/%064x", 0xabc);
    gencache_handle *gone = NULL;
    CHECK_RC(gencache_get(c, key, &gone), GENCACHE_ENOTFOUND); /* evicted meanwhile */
    const unsigned char *d = gencache_handle_data(h);
    CHECK_UINT_EQ(gencache_handle_size(h), 4096);
    for (int i = 0; i < 4096; i++)
        if (d[i] != 0xee)
            test_fail(__FILE__, __LINE__, "byte %d is 0x%02x, was 0xee", i, d[i]);
    gencache_handle_release(h);
    gencache_close(c);
}

TEST_CASE(streaming_copy_matches_memcpy)
{
    /* Every length around the streaming bounds and its 64-byte blocks, to aligned and
     * unaligned destinations, from an unaligned source. */
    enum { MIN = GENCACHE__STREAM_MIN, MAX = GENCACHE__STREAM_MAX, END = MAX + 100 };
    static unsigned char src[END + 64], dst[END + 128];
    for (size_t i = 0; i < sizeof src; i++)
        src[i] = (unsigned char)(i * 131 + 7);
    static const size_t lens[] = {
        0, 1, 63, 64, MIN - 1, MIN, MIN + 1, MIN + 63, 2048, MAX - 1, MAX, MAX + 1, END,
    };
    for (size_t k = 0; k < sizeof lens / sizeof lens[0]; k++) {
        for (size_t off = 0; off < 64; off += 16) {
            unsigned char *d = (unsigned char *)(((uintptr_t)dst + 63) & ~(uintptr_t)63) + off;
            memset(dst, 0xcc, sizeof dst);
            bool streamed = gencache__copy_stream(d, src + 3, lens[k]); /* a fence owed? */
#ifdef __SSE2__
            CHECK_INT_EQ(streamed, lens[k] >= MIN && lens[k] <= MAX);
            if (streamed)
                _mm_sfence();
#else
            CHECK(!streamed);
#endif
            CHECK_MEM_EQ(d, src + 3, lens[k]);
            CHECK_UINT_EQ(d[lens[k]], 0xcc); /* nothing written past the end */
            if (d > dst)
                CHECK_UINT_EQ(d[-1], 0xcc);
        }
    }
}

typedef struct churn_arg {
    gencache *c;
    size_t pooled; /* the thread's pool just before it exits */
} churn_arg;

static void *churn(void *p)
{
    churn_arg *a = p;
    unsigned char v[4096] = {1};
    char key[128];
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof key, "text_embedding/%064x", i);
        if (gencache_put(a->c, key, v, sizeof v, NULL) != GENCACHE_OK)
            return NULL;
        gencache_handle *h = NULL;
        if (gencache_get(a->c, key, &h) == GENCACHE_OK)
            gencache_handle_release(h);
    }
    a->pooled = gencache__entry_pool_bytes();
    return a;
}

TEST_CASE(thread_exit_frees_its_pools)
{
    /* A thread that evicted (its pool holds victims' memory) and released handles (its handle
     * pool holds them) exits: the exit hooks free both, the cache and other threads go on. */
    gencache *c = open_small();
    for (int round = 0; round < 3; round++) {
        churn_arg a = {c, 0};
        pthread_t t;
        void *ret = NULL;
        CHECK_INT_EQ(pthread_create(&t, NULL, churn, &a), 0);
        CHECK_INT_EQ(pthread_join(t, &ret), 0);
        CHECK(ret == &a);
        if (POOLED)
            CHECK(a.pooled > 0);
    }
    gencache_handle *h = NULL;
    char key[128];
    snprintf(key, sizeof key, "text_embedding/%064x", 99);
    CHECK_OK(gencache_get(c, key, &h)); /* the last put of the last thread */
    gencache_handle_release(h);
    gencache_close(c);
}

typedef struct counting_putter {
    gencache__tier *t;
    unsigned first, n;
} counting_putter;

static void *put_distinct(void *p)
{
    const counting_putter *a = p;
    for (unsigned i = 0; i < a->n; i++) {
        char key[32];
        snprintf(key, sizeof key, "k%u", a->first + i);
        gencache__entry *e = entry_of(key, 0, 1);
        CHECK_OK(a->t->ops->put(a->t, e, 1));
        gencache__entry_release(e);
    }
    return NULL;
}

/* The tier counts its entries and its evictions per shard, under the shard locks, and adds the
 * shards up when asked: with two threads putting distinct keys into a full tier, every entry put
 * is either still in the table or counted as evicted, and the entry limit holds. */
TEST_CASE(entry_and_eviction_counts_add_up_across_shards)
{
    enum { MAX = 100, EACH = 3000 };
    gencache__tier *t = open_tier(16, MAX);
    counting_putter a[2] = {{t, 0, EACH}, {t, EACH, EACH}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        CHECK(pthread_create(&th[i], NULL, put_distinct, &a[i]) == 0);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    gencache_tier_stats st;
    t->ops->stats(t, &st);
    CHECK_UINT_LE(st.entries, MAX);
    CHECK_UINT_LE(MAX - 2, st.entries); /* two threads may each evict once for one extra entry */
    CHECK_UINT_EQ(st.entries + st.evictions_capacity, 2 * EACH);
    unsigned left = 0;
    for (unsigned i = 0; i < 2 * EACH; i++) {
        char key[32];
        snprintf(key, sizeof key, "k%u", i);
        left += lookup(t, key, gencache__checksum(key, strlen(key))) == 1;
    }
    CHECK_UINT_EQ(left, st.entries);
    /* A delete leaves the eviction count alone. */
    for (unsigned i = 0; i < 2 * EACH; i++) {
        char key[32];
        snprintf(key, sizeof key, "k%u", i);
        t->ops->del(t, key, gencache__checksum(key, strlen(key)));
    }
    gencache_tier_stats after;
    t->ops->stats(t, &after);
    CHECK_UINT_EQ(after.entries, 0);
    CHECK_UINT_EQ(after.evictions_capacity, st.evictions_capacity);
    t->ops->close(t);
}

/* A sample of the miss-ratio curve's kind for key, charged 1,000 bytes. */
static gencache__mem_sample sample_of(gencache__sample_op op, const char *key, uint64_t now_ms,
                                      uint64_t cost_ms, uint64_t expires_ms)
{
    return (gencache__mem_sample){
        .hash = gencache__checksum(key, strlen(key)),
        .now_ms = now_ms,
        .expires_ms = expires_ms,
        .charge = 1000,
        .cost_ms = cost_ms,
        .op = (uint8_t)op,
    };
}

typedef struct hash_search {
    uint64_t hash;
    gencache__entry *found;
} hash_search;

static void find_by_hash(void *ud, gencache__entry *e)
{
    hash_search *h = ud;
    if (e->hash == h->hash)
        h->found = e;
}

/* The metadata entry stored for key (the tiers of the curve hold no keys), or NULL. */
static gencache__entry *stored(gencache__tier *t, const char *key)
{
    hash_search h = {gencache__checksum(key, strlen(key)), NULL};
    t->ops->each(t, find_by_hash, &h);
    return h.found;
}

/* Replays the samples, checking what the gets hit and saved. */
static void replay(gencache__tier *t, const gencache__mem_sample *x, size_t n, uint64_t hits,
                   uint64_t saved_ms)
{
    uint64_t h = 99, saved = 99;
    gencache__mem_tier_replay(t, x, n, &h, &saved);
    CHECK_UINT_EQ(h, hits);
    CHECK_UINT_EQ(saved, saved_ms);
}

TEST_CASE(replay_of_sampled_gets_and_puts)
{
    gencache__tier *t = open_tier(1, 0);
    const char *a = "text_embedding/ab", *b = "text_embedding/cd", *c = "text_embedding/ef";
    /* A put stores a keyless metadata entry unless a live one has the hash: the first stays. */
    gencache__mem_sample puts[] = {
        sample_of(GENCACHE__SAMPLE_PUT, a, 1, 7, 100),
        sample_of(GENCACHE__SAMPLE_PUT, a, 2, 9, 0),
    };
    replay(t, puts, 2, 0, 0);
    CHECK(stored(t, a) != NULL);
    CHECK_UINT_EQ(stored(t, a)->cost_ms, 7);
    CHECK_UINT_EQ(stored(t, a)->key_len, 0);
    CHECK_UINT_EQ(stored(t, a)->size, 0);
    gencache_tier_stats st;
    t->ops->stats(t, &st);
    CHECK_UINT_EQ(st.entries, 1);
    CHECK_UINT_EQ(st.bytes, 1000); /* charged what the real value was */

    /* A get that hits counts and refreshes; one that misses stores only what the real tier
     * found. */
    gencache__mem_sample gets[] = {
        sample_of(GENCACHE__SAMPLE_GET, a, 50, 0, 0),
        sample_of(GENCACHE__SAMPLE_GET, b, 51, 0, 0),
        sample_of(GENCACHE__SAMPLE_GET_FOUND, c, 52, 5, 120),
        sample_of(GENCACHE__SAMPLE_GET_FOUND, c, 53, 5, 120),
    };
    replay(t, gets, 4, 2, 7 + 5);
    gencache__entry *e = stored(t, a);
    CHECK_UINT_EQ(atomic_load(&e->hits), 1);
    CHECK_UINT_EQ(atomic_load(&e->last_access_ms), 50);
    CHECK_UINT_EQ(gencache__mem_tier_layer_hits(t, e->layer), 2);
    CHECK(stored(t, b) == NULL);
    CHECK_UINT_EQ(stored(t, c)->cost_ms, 5);
    CHECK_UINT_EQ(atomic_load(&stored(t, c)->expires_ms), 120);

    /* Expired: a get misses and drops it; a put replaces it, which is no eviction. */
    gencache__mem_sample late[] = {
        sample_of(GENCACHE__SAMPLE_GET, a, 100, 0, 0),
        sample_of(GENCACHE__SAMPLE_PUT, c, 130, 11, 0),
        sample_of(GENCACHE__SAMPLE_GET, c, 140, 0, 0),
    };
    replay(t, late, 3, 1, 11);
    t->ops->stats(t, &st);
    CHECK_UINT_EQ(st.entries, 1);
    CHECK_UINT_EQ(st.evictions_expired, 1);
    CHECK_UINT_EQ(st.evictions_capacity, 0);
    CHECK(stored(t, a) == NULL);
    CHECK_UINT_EQ(stored(t, c)->cost_ms, 11);
    t->ops->close(t);

    /* At the limits a store evicts the least recent entry, and one larger than the whole tier
     * is left out. */
    gencache__mem_options o = {.max_bytes = 2000, .shards = 1};
    CHECK_OK(gencache__mem_tier_open(&o, &t));
    gencache__mem_sample full[] = {
        sample_of(GENCACHE__SAMPLE_PUT, a, 1, 1, 0),
        sample_of(GENCACHE__SAMPLE_PUT, b, 2, 2, 0),
        sample_of(GENCACHE__SAMPLE_PUT, c, 3, 3, 0),
        sample_of(GENCACHE__SAMPLE_PUT, "text_embedding/gh", 4, 4, 0),
    };
    full[3].charge = 2001;
    replay(t, full, 4, 0, 0);
    t->ops->stats(t, &st);
    CHECK_UINT_EQ(st.entries, 2);
    CHECK_UINT_EQ(st.evictions_capacity, 1);
    CHECK(stored(t, a) == NULL);
    CHECK_UINT_EQ(stored(t, b)->cost_ms, 2);
    CHECK_UINT_EQ(stored(t, c)->cost_ms, 3);
    CHECK(stored(t, "text_embedding/gh") == NULL);
    t->ops->close(t);
}
