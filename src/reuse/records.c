/*
 * records.c: the table of reuse records. Records live in slots (a freed slot is reused); two
 * chained hash tables find them by stored-key hash (every removal) and by recipe context (seed
 * lookups), and two near-duplicate indexes of the image module (src/image/hash_index.c) find
 * image records by pHash and prompt records by SimHash, the slot being the index's id. One
 * reader-writer lock guards it all; the indexes' own locks nest inside it and nothing else is
 * called while it is held.
 */
#include <stdlib.h>
#include <string.h>

#include "reuse.h"

#define NONE UINT32_MAX

typedef struct slot {
    gencache__reuse_rec rec;
    uint32_t next_key, next_ctx; /* chains of the two tables */
    bool live;
} slot;

struct gencache__reuse {
    pthread_rwlock_t lock;
    slot *slots;
    uint32_t n_slots, cap, free_head; /* free slots chain through next_key */
    uint32_t *by_key, *by_ctx;        /* heads; mask + 1 buckets each */
    uint32_t mask;
    uint64_t images, results, prompts, stamp;
    uint64_t mutations; /* adds and drops so far: what tells a save whether anything changed */
    /* Live records, written under the lock and read without it: a drop with none to find (every
     * eviction asks, most caches hold no records) then takes no lock. */
    _Atomic uint64_t live;
    gencache_hash_index *phash;   /* image records: (pHash, slot) */
    gencache_hash_index *simhash; /* prompt records: (SimHash, slot) */
};

int gencache__reuse_new(gencache__reuse **out)
{
    *out = NULL;
    gencache__reuse *r = calloc(1, sizeof *r);
    if (!r)
        return GENCACHE_ENOMEM;
    r->free_head = NONE;
    int rc = gencache_hash_index_new(&r->phash);
    if (rc == GENCACHE_OK)
        rc = gencache_hash_index_new(&r->simhash);
    if (rc != GENCACHE_OK || pthread_rwlock_init(&r->lock, NULL) != 0) {
        gencache_hash_index_free(r->phash);
        gencache_hash_index_free(r->simhash);
        free(r);
        return rc != GENCACHE_OK ? rc : GENCACHE_ENOMEM;
    }
    *out = r;
    return GENCACHE_OK;
}

void gencache__reuse_free(gencache__reuse *r)
{
    if (!r)
        return;
    gencache_hash_index_free(r->phash);
    gencache_hash_index_free(r->simhash);
    free(r->slots);
    free(r->by_key);
    free(r->by_ctx);
    pthread_rwlock_destroy(&r->lock);
    free(r);
}

static uint32_t bucket(const gencache__reuse *r, uint64_t h)
{
    return (uint32_t)(h ^ (h >> 32)) & r->mask;
}

/* Doubles the slots and rebuilds both tables at the new size (load factor at most 1). */
static int grow(gencache__reuse *r)
{
    uint32_t ncap = r->cap ? r->cap * 2 : 256;
    if (ncap <= r->cap)
        return GENCACHE_ELIMIT;
    slot *ns = realloc(r->slots, sizeof *ns * ncap);
    if (!ns)
        return GENCACHE_ENOMEM;
    r->slots = ns;
    uint32_t *bk = malloc(sizeof *bk * ncap), *bc = malloc(sizeof *bc * ncap);
    if (!bk || !bc) {
        free(bk);
        free(bc);
        return GENCACHE_ENOMEM; /* the slots grew, the tables did not: still consistent */
    }
    memset(bk, 0xff, sizeof *bk * ncap);
    memset(bc, 0xff, sizeof *bc * ncap);
    free(r->by_key);
    free(r->by_ctx);
    r->by_key = bk;
    r->by_ctx = bc;
    r->cap = ncap;
    r->mask = ncap - 1;
    for (uint32_t i = 0; i < r->n_slots; i++) {
        slot *s = &r->slots[i];
        if (!s->live)
            continue;
        uint32_t b = bucket(r, s->rec.key_hash);
        s->next_key = r->by_key[b];
        r->by_key[b] = i;
        b = bucket(r, s->rec.ctx);
        s->next_ctx = r->by_ctx[b];
        r->by_ctx[b] = i;
    }
    /* Free slots chained through next_key above the rebuilt ones are lost from the free list;
     * it is rebuilt from the live flags. */
    r->free_head = NONE;
    for (uint32_t i = r->n_slots; i-- > 0;)
        if (!r->slots[i].live) {
            r->slots[i].next_key = r->free_head;
            r->free_head = i;
        }
    return GENCACHE_OK;
}

/* Unlinks slot i from the chain starting at *head (next selects the chain). */
static void unlink_slot(gencache__reuse *r, uint32_t *head, uint32_t i, bool by_key)
{
    for (uint32_t *p = head; *p != NONE;) {
        slot *s = &r->slots[*p];
        uint32_t *next = by_key ? &s->next_key : &s->next_ctx;
        if (*p == i) {
            *p = *next;
            return;
        }
        p = next;
    }
}

static void remove_slot(gencache__reuse *r, uint32_t i)
{
    slot *s = &r->slots[i];
    unlink_slot(r, &r->by_key[bucket(r, s->rec.key_hash)], i, true);
    unlink_slot(r, &r->by_ctx[bucket(r, s->rec.ctx)], i, false);
    if (s->rec.kind == GENCACHE__REUSE_IMAGE) {
        gencache_hash_index_remove(r->phash, s->rec.sig.phash, i);
        r->images--;
    } else if (s->rec.kind == GENCACHE__REUSE_PROMPT) {
        gencache_hash_index_remove(r->simhash, s->rec.simhash, i);
        r->prompts--;
    } else {
        r->results--;
    }
    s->live = false;
    atomic_store_explicit(&r->live, atomic_load_explicit(&r->live, memory_order_relaxed) - 1,
                          memory_order_relaxed);
    s->next_key = r->free_head;
    r->free_head = i;
}

static size_t drop_locked(gencache__reuse *r, uint64_t key_hash, unsigned kind,
                          bool (*keep)(void *ud, const gencache__reuse_rec *rec), void *ud)
{
    if (!r->cap)
        return 0;
    size_t n = 0;
    uint32_t i = r->by_key[bucket(r, key_hash)];
    while (i != NONE) {
        slot *s = &r->slots[i];
        uint32_t next = s->next_key;
        if (s->rec.key_hash == key_hash && (!kind || s->rec.kind == kind) &&
            !(keep && keep(ud, &s->rec))) {
            remove_slot(r, i);
            n++;
        }
        i = next;
    }
    return n;
}

int gencache__reuse_add(gencache__reuse *r, const gencache__reuse_rec *rec)
{
    pthread_rwlock_wrlock(&r->lock);
    drop_locked(r, rec->key_hash, rec->kind, NULL, NULL);
    int rc = GENCACHE_OK;
    if (r->free_head == NONE && r->n_slots == r->cap)
        rc = grow(r);
    if (rc != GENCACHE_OK) {
        pthread_rwlock_unlock(&r->lock);
        return rc;
    }
    uint32_t i = r->free_head != NONE ? r->free_head : r->n_slots;
    if (rec->kind == GENCACHE__REUSE_IMAGE)
        rc = gencache_hash_index_insert(r->phash, rec->sig.phash, i);
    else if (rec->kind == GENCACHE__REUSE_PROMPT)
        rc = gencache_hash_index_insert(r->simhash, rec->simhash, i);
    if (rc != GENCACHE_OK) {
        pthread_rwlock_unlock(&r->lock);
        return rc;
    }
    if (i == r->free_head)
        r->free_head = r->slots[i].next_key;
    else
        r->n_slots++;
    slot *s = &r->slots[i];
    s->rec = *rec;
    s->rec.stamp = ++r->stamp;
    s->live = true;
    uint32_t b = bucket(r, rec->key_hash);
    s->next_key = r->by_key[b];
    r->by_key[b] = i;
    b = bucket(r, rec->ctx);
    s->next_ctx = r->by_ctx[b];
    r->by_ctx[b] = i;
    if (rec->kind == GENCACHE__REUSE_IMAGE)
        r->images++;
    else if (rec->kind == GENCACHE__REUSE_PROMPT)
        r->prompts++;
    else
        r->results++;
    atomic_store_explicit(&r->live, atomic_load_explicit(&r->live, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    r->mutations++;
    pthread_rwlock_unlock(&r->lock);
    return GENCACHE_OK;
}

size_t gencache__reuse_drop(gencache__reuse *r, uint64_t key_hash)
{
    return gencache__reuse_drop_unless(r, key_hash, NULL, NULL);
}

size_t gencache__reuse_drop_unless(gencache__reuse *r, uint64_t key_hash,
                                   bool (*keep)(void *ud, const gencache__reuse_rec *rec), void *ud)
{
    /* A record added meanwhile is one whose put raced this drop: either order is allowed. */
    if (atomic_load_explicit(&r->live, memory_order_relaxed) == 0)
        return 0;
    pthread_rwlock_wrlock(&r->lock);
    size_t n = drop_locked(r, key_hash, 0, keep, ud);
    r->mutations += n;
    pthread_rwlock_unlock(&r->lock);
    return n;
}

static bool same_recipe(const gencache__reuse_rec *a, unsigned kind, uint32_t layer, uint64_t ctx,
                        uint64_t tenant_hash)
{
    return a->kind == kind && a->layer == layer && a->ctx == ctx && a->tenant_hash == tenant_hash;
}

/* Inserts c into out[0..*n) kept sorted by better(), dropping the worst past cap. */
static void keep_best(gencache__reuse_cand *out, size_t cap, size_t *n,
                      const gencache__reuse_cand *c, bool by_distance)
{
    size_t pos = *n;
    while (pos > 0) {
        const gencache__reuse_cand *p = &out[pos - 1];
        bool worse = by_distance ? p->distance > c->distance ||
                                       (p->distance == c->distance && p->rec.stamp < c->rec.stamp)
                                 : p->rec.stamp < c->rec.stamp;
        if (!worse)
            break;
        pos--;
    }
    if (pos >= cap)
        return;
    size_t last = *n < cap ? *n : cap - 1;
    memmove(&out[pos + 1], &out[pos], (last - pos) * sizeof *out);
    out[pos] = *c;
    if (*n < cap)
        (*n)++;
}

/* The guards a query of the pHash alone allows: the radius, and detail on both sides. */
static bool phash_only_match(uint64_t query, uint64_t stored, const gencache_match_options *guard,
                             unsigned *distance)
{
    *distance = (unsigned)__builtin_popcountll(query ^ stored);
    return *distance <= guard->phash_radius &&
           (unsigned)__builtin_popcountll(query) >= guard->min_detail &&
           (unsigned)__builtin_popcountll(stored) >= guard->min_detail;
}

int gencache__reuse_image_sig_of(gencache__reuse *r, uint64_t tenant_hash,
                                 const unsigned char digest[32], uint64_t phash,
                                 gencache_image_sig *out)
{
    gencache_hash_hit hits[64];
    size_t count = 0;
    pthread_rwlock_rdlock(&r->lock);
    /* The same pixels hash alike: the record of the digest sits at distance 0. */
    int rc = gencache_hash_index_query(r->phash, phash, 0, hits, 64, &count);
    if (rc == GENCACHE_OK)
        rc = GENCACHE_ENOTFOUND;
    for (size_t i = 0; rc == GENCACHE_ENOTFOUND && i < count && i < 64; i++) {
        const slot *s = &r->slots[hits[i].id];
        if (s->live && s->rec.kind == GENCACHE__REUSE_IMAGE && s->rec.tenant_hash == tenant_hash &&
            s->rec.sig.width != 0 && memcmp(s->rec.digest, digest, 32) == 0) {
            *out = s->rec.sig;
            rc = GENCACHE_OK;
        }
    }
    pthread_rwlock_unlock(&r->lock);
    return rc;
}

int gencache__reuse_find_image(gencache__reuse *r, uint32_t layer, uint64_t ctx,
                               uint64_t tenant_hash, const gencache_image_sig *sig,
                               const gencache_match_options *guard, gencache__reuse_cand *out,
                               size_t cap, size_t *n, uint64_t *refused)
{
    *n = 0;
    *refused = 0;
    gencache_hash_hit local[64];
    gencache_hash_hit *hits = local;
    size_t count = 0;
    pthread_rwlock_rdlock(&r->lock);
    int rc = gencache_hash_index_query(r->phash, sig->phash, guard->phash_radius, hits, 64, &count);
    if (rc == GENCACHE_OK && count > 64) {
        /* Many images within the radius: rare, fetch them all. */
        hits = malloc(sizeof *hits * count);
        if (!hits)
            rc = GENCACHE_ENOMEM;
        else
            rc = gencache_hash_index_query(r->phash, sig->phash, guard->phash_radius, hits, count,
                                           &count);
    }
    for (size_t i = 0; rc == GENCACHE_OK && i < count; i++) {
        const slot *s = &r->slots[hits[i].id];
        if (!s->live || !same_recipe(&s->rec, GENCACHE__REUSE_IMAGE, layer, ctx, tenant_hash))
            continue;
        gencache__reuse_cand c = {.rec = s->rec};
        if (sig->width == 0
                ? !phash_only_match(sig->phash, s->rec.sig.phash, guard, &c.distance)
                : gencache_image_match(sig, &s->rec.sig, guard, &c.distance) != GENCACHE_OK) {
            (*refused)++;
            continue;
        }
        keep_best(out, cap, n, &c, true);
    }
    pthread_rwlock_unlock(&r->lock);
    if (hits != local)
        free(hits);
    return rc;
}

int gencache__reuse_find_prompt(gencache__reuse *r, uint32_t layer, uint64_t ctx,
                                uint64_t tenant_hash, uint64_t simhash, uint64_t text_hash,
                                unsigned radius, gencache__reuse_cand *out, size_t cap, size_t *n)
{
    *n = 0;
    gencache_hash_hit hits[64];
    size_t count = 0;
    pthread_rwlock_rdlock(&r->lock);
    /* Beyond 64 candidates within the radius the nearest 64 are enough: a prompt has one. */
    int rc = gencache_hash_index_query(r->simhash, simhash, radius, hits, 64, &count);
    for (size_t i = 0; rc == GENCACHE_OK && i < count && i < 64; i++) {
        const slot *s = &r->slots[hits[i].id];
        if (!s->live || !same_recipe(&s->rec, GENCACHE__REUSE_PROMPT, layer, ctx, tenant_hash) ||
            (radius == 0 && s->rec.text_hash != text_hash))
            continue;
        gencache__reuse_cand c = {.rec = s->rec, .distance = hits[i].distance};
        keep_best(out, cap, n, &c, true);
    }
    pthread_rwlock_unlock(&r->lock);
    return rc;
}

int gencache__reuse_find_seed(gencache__reuse *r, uint32_t layer, uint64_t ctx,
                              uint64_t tenant_hash, gencache__reuse_cand *out, size_t cap,
                              size_t *n)
{
    *n = 0;
    pthread_rwlock_rdlock(&r->lock);
    for (uint32_t i = r->cap ? r->by_ctx[bucket(r, ctx)] : NONE; i != NONE;
         i = r->slots[i].next_ctx) {
        const slot *s = &r->slots[i];
        if (!same_recipe(&s->rec, GENCACHE__REUSE_SEED, layer, ctx, tenant_hash))
            continue;
        gencache__reuse_cand c = {.rec = s->rec};
        keep_best(out, cap, n, &c, false);
    }
    pthread_rwlock_unlock(&r->lock);
    return GENCACHE_OK;
}

uint64_t gencache__reuse_mutations(gencache__reuse *r)
{
    pthread_rwlock_rdlock(&r->lock);
    uint64_t n = r->mutations;
    pthread_rwlock_unlock(&r->lock);
    return n;
}

void gencache__reuse_counts(gencache__reuse *r, uint64_t *images, uint64_t *results,
                            uint64_t *prompts)
{
    pthread_rwlock_rdlock(&r->lock);
    *images = r->images;
    *results = r->results;
    *prompts = r->prompts;
    pthread_rwlock_unlock(&r->lock);
}

/* ---- the file ---- */

void gencache__reuse_each(gencache__reuse *r, void (*fn)(void *ud, const gencache__reuse_rec *rec),
                          void *ud)
{
    pthread_rwlock_rdlock(&r->lock);
    for (uint32_t i = 0; i < r->n_slots; i++)
        if (r->slots[i].live)
            fn(ud, &r->slots[i].rec);
    pthread_rwlock_unlock(&r->lock);
}
