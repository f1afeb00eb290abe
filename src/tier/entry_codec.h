/*
 * entry_codec.h: the one serialization of an entry's metadata that the persistent and shared
 * tiers (disk, redis) store beside a value. Private to src/tier/.
 */
#ifndef GENCACHE_TIER_ENTRY_CODEC_H
#define GENCACHE_TIER_ENTRY_CODEC_H

#include "internal.h"

#define GENCACHE__CODEC_MAGIC   "GCE"
#define GENCACHE__CODEC_VERSION 1
/* Byte offset of the little-endian u64 "refresh TTL" (the TTL a hit re-arms; 0: none) and of the
 * u32 total record length. The Redis tier's Lua script reads the former in place. */
#define GENCACHE__CODEC_OFF_LEN     4
#define GENCACHE__CODEC_OFF_REFRESH 8
/* Smallest possible record: the fixed header, five absent strings and the trailing check. */
#define GENCACHE__CODEC_MIN_LEN (88 + 5 * 4 + 8)
/* Longest string (tags, content type ...) a record may carry. */
#define GENCACHE__CODEC_STR_MAX 65536u

/* A decoded record. The strings are NUL-terminated copies owned by the struct (NULL: absent);
 * release them with gencache__codec_meta_clear(). */
typedef struct gencache__codec_meta {
    char *key, *tenant, *model, *tags, *content_type;
    gencache_dtype dtype;
    uint32_t ndim;
    int64_t shape[GENCACHE_MAX_DIMS];
    uint64_t size;     /* value bytes */
    uint64_t checksum; /* XXH3-64 of the value */
    uint64_t created_ms;
    uint64_t expires_ms; /* 0: never */
    uint64_t ttl_ms;     /* 0: no expiry */
    uint64_t cost_ms;
    uint64_t last_access_ms;
    uint64_t hits;
    bool pinned, sliding;
    size_t record_len; /* bytes the record occupied */
    const gencache_allocator *alloc;
} gencache__codec_meta;

/* Bytes gencache__codec_encode() writes for e. */
size_t gencache__codec_size(const gencache__entry *e);

/* Writes e's metadata (with the given mutable fields) to buf, which holds cap bytes.
 * Returns GENCACHE_OK, GENCACHE_EINVAL (cap too small, a string too long). */
int gencache__codec_encode(const gencache__entry *e, uint64_t expires_ms, uint64_t last_access_ms,
                           uint64_t hits, void *buf, size_t cap, size_t *len);

/* Reads a record from the start of buf (len bytes; trailing bytes, such as the value, are
 * ignored). Returns GENCACHE_OK, GENCACHE_EVERSION (a record of a later format),
 * GENCACHE_ECORRUPT (damaged or truncated), GENCACHE_ENOMEM. *out is cleared on failure. */
int gencache__codec_decode(const gencache_allocator *alloc, const void *buf, size_t len,
                           gencache__codec_meta *out);

void gencache__codec_meta_clear(gencache__codec_meta *m);

/* Rewrites the mutable fields of an encoded record in place and its check.
 * Returns GENCACHE_OK or GENCACHE_ECORRUPT. */
int gencache__codec_patch(void *buf, size_t len, uint64_t expires_ms, uint64_t last_access_ms,
                          uint64_t hits);

/* Builds an entry from a decoded record. with_value: room for m->size value bytes, to be filled
 * by the caller. Without it the entry is metadata only: size says how large the stored value is,
 * value is NULL, and layer is UINT32_MAX (unknown to the tier), which is what remove_if
 * predicates and on_evict callbacks of the persistent tiers receive. */
int gencache__codec_entry_new(const gencache_allocator *alloc, const gencache__codec_meta *m,
                              bool with_value, gencache__entry **out);

#endif
