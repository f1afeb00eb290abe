/*
 * mrc.h: the memory tier's miss-ratio curve (mrc.c): miniature tiers fed with spatially sampled
 * keys estimate the hit ratio and compute savings of a tier at other sizes. Thread-safe. Sampled
 * accesses are queued in the order they happen and replayed in batches; reading the points
 * replays them all. Lock order: the queue's lock, its replay lock, a miniature tier's shard lock.
 */
#ifndef GENCACHE_MRC_H
#define GENCACHE_MRC_H

#include "internal.h"

#define GENCACHE__MRC_POINTS GENCACHE_MRC_POINTS /* scales 0.5, 2 and 4 */

typedef struct gencache__mrc gencache__mrc;

typedef struct gencache__mrc_options {
    double rate;          /* share of keys sampled, (0, 1] */
    uint64_t max_bytes;   /* the real tier's limits (max_bytes above 0) */
    uint64_t max_entries; /* 0: none */
    int policy;           /* the real tier's policy */
    const gencache_allocator *alloc;
} gencache__mrc_options;

/* GENCACHE_OK, GENCACHE_EINVAL (rate or max_bytes out of range), GENCACHE_ENOMEM. */
int gencache__mrc_new(const gencache__mrc_options *o, gencache__mrc **out);
void gencache__mrc_free(gencache__mrc *m);
/* The layer's own policy, as the real tier has it. Init only. */
void gencache__mrc_set_layer_policy(gencache__mrc *m, uint32_t layer, int kind);
/* A get of the key with that hash (a lookup that counts); found: what the cache found for it (NULL
 * on a miss), so a smaller miniature tier can store it where it misses. Does nothing for a key
 * outside the sample or a NULL m. */
void gencache__mrc_get(gencache__mrc *m, uint64_t hash, uint64_t now_ms,
                       const gencache__entry *found);
/* e was stored in the real tier (a miniature tier that holds the key already keeps its own). */
void gencache__mrc_put(gencache__mrc *m, const gencache__entry *e, uint64_t now_ms);
/* The share of keys sampled. */
double gencache__mrc_rate(const gencache__mrc *m);
/* Fills GENCACHE__MRC_POINTS points, smallest scale first (zeros for a NULL m), after replaying
 * every buffered sample: each access sampled before the call is counted once. */
void gencache__mrc_points(gencache__mrc *m, gencache_mrc_point *out);

#endif
