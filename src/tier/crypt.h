/*
 * crypt.h: encryption at rest for the persistent and shared tiers (crypt.c). A keyring holds the
 * current key, which seals every new record, and the previous keys, which only open old ones.
 * Private to src/tier/ and cache.c.
 */
#ifndef GENCACHE_TIER_CRYPT_H
#define GENCACHE_TIER_CRYPT_H

#include "internal.h"

#define GENCACHE__CRYPT_KEY_LEN   32 /* AES-256 */
#define GENCACHE__CRYPT_NONCE_LEN 12 /* GCM's 96-bit nonce */
#define GENCACHE__CRYPT_TAG_LEN   16
#define GENCACHE__CRYPT_KEYS_MAX  16

/* Which subkey: every key is split in two (HMAC-SHA256 derivations), one for values and one for
 * metadata, so that a record's value and metadata can share one nonce. */
typedef enum gencache__crypt_part {
    GENCACHE__CRYPT_VALUE = 0,
    GENCACHE__CRYPT_META = 1,
} gencache__crypt_part;

typedef struct gencache__crypt gencache__crypt;

/* Reads one key from a source: "env:NAME" (the environment variable NAME) or a file path. The
 * key is 64 hexadecimal digits (surrounding white space ignored) or, for a file, exactly 32 raw
 * bytes. On failure err (err_size bytes) says why in one sentence and the result is
 * GENCACHE_ECONFIG (or GENCACHE_ENOMEM). Thread-safety: safe. */
int gencache__crypt_load_key(const char *source, unsigned char key[GENCACHE__CRYPT_KEY_LEN],
                             char *err, size_t err_size);

/* A keyring from sources[0] (the current key) and the older keys after it. Two sources holding
 * keys with one id are refused. Errors are logged. Returns GENCACHE_OK, GENCACHE_EINVAL (n == 0 or
 * more than GENCACHE__CRYPT_KEYS_MAX), GENCACHE_ECONFIG, GENCACHE_ENOMEM. Thread-safety: safe. */
int gencache__crypt_new(const gencache_allocator *alloc, const gencache__log *log,
                        const char *const *sources, size_t n, gencache__crypt **out);
/* Thread-safety: one thread at a time; nothing may use the keyring meanwhile. NULL: nothing. */
void gencache__crypt_free(gencache__crypt *c);

/* The id of the current key (the first 4 bytes of a SHA-256 of the key, so the same key has the
 * same id on every node and different keys almost surely differ). */
uint32_t gencache__crypt_current_id(const gencache__crypt *c);

/* A fresh random nonce from OpenSSL's CSPRNG. GENCACHE_OK or GENCACHE_EIO. */
int gencache__crypt_nonce(unsigned char nonce[GENCACHE__CRYPT_NONCE_LEN]);

/* Encrypts n bytes of in into out (which may be in) with the current key's subkey, the nonce and
 * the additional authenticated data (aad1, aad2: two ranges, either may be empty), and writes the
 * tag. GENCACHE_OK, GENCACHE_ENOMEM, GENCACHE_EIO. Thread-safety: safe. */
int gencache__crypt_seal(const gencache__crypt *c, gencache__crypt_part part,
                         const unsigned char *nonce, const void *aad1, size_t aad1_len,
                         const void *aad2, size_t aad2_len, const void *in, void *out, size_t n,
                         unsigned char *tag);

/* Decrypts with the key named key_id and checks the tag. GENCACHE_OK; GENCACHE_EPERM: no key
 * with that id (or c is NULL); GENCACHE_ECORRUPT: the tag does not match (damaged or tampered
 * with; out holds garbage). Thread-safety: safe. */
int gencache__crypt_open(const gencache__crypt *c, uint32_t key_id, gencache__crypt_part part,
                         const unsigned char *nonce, const void *aad1, size_t aad1_len,
                         const void *aad2, size_t aad2_len, const void *in, void *out, size_t n,
                         const unsigned char *tag);

/* What a tier uses to seal and open its records: the keyring (NULL: no encryption) and the
 * tier's count of records refused because of it (sealed under a key the ring lacks, failing
 * their tag, or unencrypted while encryption is on). */
typedef struct gencache__seal {
    const gencache__crypt *keys;
    _Atomic uint64_t rejected;
} gencache__seal;

#endif
