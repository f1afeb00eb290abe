/*
 * bloom.h: a fixed-size Bloom filter over 64-bit key hashes, private to the Redis tier. Sized
 * from the number of keys it should hold and the false-positive rate wanted at that number;
 * adds and tests are lock-free (atomic word operations) and may run concurrently. A filter
 * answers "maybe present" for every key added to it, so a negative answer is exact.
 */
#ifndef GENCACHE_TIER_BLOOM_H
#define GENCACHE_TIER_BLOOM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct gencache__bloom gencache__bloom;

/* A filter for capacity keys at fp_rate (0 < fp_rate < 1). NULL when out of memory or the
 * arguments are out of range. */
gencache__bloom *gencache__bloom_new(uint64_t capacity, double fp_rate);
void gencache__bloom_free(gencache__bloom *b);
void gencache__bloom_add(gencache__bloom *b, uint64_t hash);
/* False only for a hash never added. */
bool gencache__bloom_maybe(const gencache__bloom *b, uint64_t hash);
/* The filter's size in bytes, its number of hash functions, and how many adds it has seen. */
size_t gencache__bloom_bytes(const gencache__bloom *b);
unsigned gencache__bloom_hashes(const gencache__bloom *b);
uint64_t gencache__bloom_adds(const gencache__bloom *b);

#endif
