/*
 * hash_index.h: the layout of the near-duplicate index, shared by its query code
 * (hash_index.c) and its file format (hash_index_io.c).
 */
#ifndef GENCACHE_IMAGE_HASH_INDEX_H
#define GENCACHE_IMAGE_HASH_INDEX_H

#include <pthread.h>
#include <stdint.h>

#include "gencache.h"

/* Multi-index hashing: the 64 bits are cut into CHUNKS substrings (four of 13 bits and one of
 * 12); each has a table from its value to the entries carrying it. Two hashes within distance r
 * agree within floor(r / CHUNKS) bits on at least one substring (pigeonhole), so a query probes,
 * in each table, every value within that distance of its own substring. */
#define GENCACHE__HIDX_CHUNKS 5
#define GENCACHE__HIDX_BITS   13

/* A bucket holds, per entry, a 32-bit fingerprint (32 hash bits outside the table's substring)
 * and the entry's slot. A query streams through the fingerprints only: a hash within distance r
 * has a fingerprint within r too, and a random one rarely does (0.35% at r = 8), so the full
 * hash is fetched for few entries. */
typedef struct gencache__hidx_bucket {
    uint32_t *fps;   /* n of them, cap allocated */
    uint32_t *slots; /* slots[i]: the entry fps[i] belongs to */
    uint32_t n, cap;
} gencache__hidx_bucket;

struct gencache_hash_index {
    pthread_rwlock_t lock;
    uint64_t count; /* live entries; each sits in exactly one bucket of each table */
    gencache__hidx_bucket *tables[GENCACHE__HIDX_CHUNKS]; /* 2^13 buckets each */
    /* The entries by slot. A freed slot is chained through free_next and reused. */
    uint64_t *hashes, *ids;
    uint32_t *free_next;
    uint8_t *live;
    uint32_t slots, slot_cap, free_head; /* free_head: UINT32_MAX when empty */
};

/* Adds (hash, id) without taking the lock or checking for duplicates (the loader's fast path). */
int gencache__hidx_insert_unlocked(gencache_hash_index *idx, uint64_t hash, uint64_t id);

#endif
