/*
 * baseline_cache.h: the smallest reasonable in-process cache in C, the yardstick bench_mem.c
 * measures gencache's memory tier against. One mutex, an open-addressing table (linear probing,
 * backward-shift deletion), reference-counted items so a reader's bytes outlive eviction, and
 * CLOCK eviction under a byte limit. No TTL, tiers, tenants, statistics or checksums.
 */
#ifndef GENCACHE_BASELINE_CACHE_H
#define GENCACHE_BASELINE_CACHE_H

#include <stddef.h>
#include <stdint.h>

typedef struct bl_cache bl_cache;
typedef struct bl_item bl_item;

/* max_bytes: limit on the values' bytes (0: none). NULL on allocation failure. */
bl_cache *bl_cache_new(size_t max_bytes);
void bl_cache_free(bl_cache *c);
/* Stores a copy of data under key (NUL-terminated), replacing an older value. 0 or -1 (ENOMEM). */
int bl_cache_put(bl_cache *c, const char *key, const void *data, size_t size);
/* A new reference to key's item, or NULL on a miss; release it with bl_item_release(). */
bl_item *bl_cache_get(bl_cache *c, const char *key);
const void *bl_item_data(const bl_item *it);
size_t bl_item_size(const bl_item *it);
void bl_item_release(bl_item *it);

#endif
