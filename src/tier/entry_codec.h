/*
 * entry_codec.h: the one serialization of an entry's metadata that the persistent and shared
 * tiers (disk, redis) store beside a value. Private to src/tier/.
 */
#ifndef GENCACHE_TIER_ENTRY_CODEC_H
#define GENCACHE_TIER_ENTRY_CODEC_H

#include "internal.h"
#include "tier/crypt.h"

#define GENCACHE__CODEC_MAGIC   "GCE"
#define GENCACHE__CODEC_VERSION 1
/* The version of a record whose value and descriptive metadata are encrypted (AES-256-GCM). */
#define GENCACHE__CODEC_VERSION_SEALED 2
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
    /* Sealed (version 2) records: checksum above is the XXH3-64 of the stored, encrypted value
     * (what identifies the record and what a read of the stored bytes is checked against), and
     * these say how to open the value. opened: the metadata was decrypted (false after
     * gencache__codec_decode_head(), whose strings other than key are then NULL). */
    bool sealed, opened;
    uint32_t key_id;
    unsigned char nonce[GENCACHE__CRYPT_NONCE_LEN];
    unsigned char value_tag[GENCACHE__CRYPT_TAG_LEN];
    uint64_t value_checksum; /* XXH3-64 of the plaintext value (= checksum when not sealed) */
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

/* gencache__codec_decode() that opens sealed records with s's keys (s NULL or without keys:
 * none). Also GENCACHE_EPERM: sealed under a key s lacks; GENCACHE_ECORRUPT covers a record whose
 * metadata fails its authentication tag. Both count in s->rejected. Plain records decode as
 * always: whether a plain value may be served is gencache__codec_value_open()'s decision. */
int gencache__codec_decode_sealed(gencache__seal *s, const gencache_allocator *alloc,
                                  const void *buf, size_t len, gencache__codec_meta *out);

/* Decodes what every record holds in the clear (sizes, times, checksum, flags, key), opening no
 * seal: for the bookkeeping of removals and access records, which must work on records whose
 * key is gone. Plain records decode in full. Same codes as gencache__codec_decode() except
 * GENCACHE_EPERM. */
int gencache__codec_decode_head(const gencache_allocator *alloc, const void *buf, size_t len,
                                gencache__codec_meta *out);

void gencache__codec_meta_clear(gencache__codec_meta *m);

/* A value as a tier stores it: the entry's own bytes, or their encryption. */
typedef struct gencache__codec_value {
    const unsigned char *data; /* size bytes, as stored */
    uint64_t checksum;         /* XXH3-64 of data */
    bool sealed;
    uint32_t key_id;
    unsigned char nonce[GENCACHE__CRYPT_NONCE_LEN];
    unsigned char tag[GENCACHE__CRYPT_TAG_LEN];
} gencache__codec_value;

/* Prepares e's value for storing. Without keys (s NULL or s->keys NULL) v points at e's bytes;
 * with them the value is encrypted under the current key with a fresh random nonce into a
 * buffer, *owned (the calling thread's scratch buffer when it fits, else a new allocation),
 * which the caller gives back with gencache__codec_value_free() on the same thread after the
 * write (NULL when nothing was taken). Returns GENCACHE_OK, GENCACHE_ENOMEM, GENCACHE_EIO. */
int gencache__codec_value_seal(const gencache__seal *s, const gencache_allocator *alloc,
                               const gencache__entry *e, gencache__codec_value *v,
                               unsigned char **owned);
/* Gives back what gencache__codec_value_seal() put in *owned (NULL: nothing). */
void gencache__codec_value_free(const gencache_allocator *alloc, unsigned char *owned);

/* gencache__codec_value_seal() into dst (e->size bytes, e.g. space reserved in the store),
 * allocating nothing. s must have keys (else GENCACHE_EINVAL). */
int gencache__codec_value_seal_to(const gencache__seal *s, const gencache__entry *e,
                                  gencache__codec_value *v, unsigned char *dst);

/* Bytes gencache__codec_encode_value() writes for e stored as v (only v->sealed matters). */
size_t gencache__codec_value_size(const gencache__entry *e, const gencache__codec_value *v);

/* gencache__codec_encode() of e stored as v: a plain record for a plain value, else a sealed one
 * (its metadata encrypted under the key that sealed v, with v's nonce). Returns GENCACHE_OK,
 * GENCACHE_EINVAL, GENCACHE_ENOMEM, GENCACHE_EIO. */
int gencache__codec_encode_value(const gencache__seal *s, const gencache__entry *e,
                                 const gencache__codec_value *v, uint64_t expires_ms,
                                 uint64_t last_access_ms, uint64_t hits, void *buf, size_t cap,
                                 size_t *len);

/* Turns the stored bytes of m's value (size bytes at value, already read) into the value: a
 * sealed one is decrypted in place and its tag checked. On GENCACHE_OK *checksum is the XXH3-64
 * the plaintext must have. GENCACHE_ECORRUPT: the tag does not match (damaged or tampered with);
 * GENCACHE_EPERM: sealed under a key s lacks, or a plain record while s has keys (a record
 * written without encryption, or forged, is never served by an encrypting cache). Both count in
 * s->rejected. */
int gencache__codec_value_open(gencache__seal *s, const gencache__codec_meta *m,
                               unsigned char *value, size_t size, uint64_t *checksum);

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
