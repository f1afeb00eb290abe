/*
 * crypt.c: AES-256-GCM through OpenSSL's EVP interface for the records of the disk and Redis
 * tiers. Each configured key is identified by the first 4 bytes of a SHA-256 over it, and split
 * into a value subkey and a metadata subkey (HMAC-SHA256 of fixed labels), so the two parts of a
 * record may use one random 96-bit nonce without ever repeating a (key, nonce) pair. Keys live in
 * the keyring's memory only; the subkeys are what the cipher sees.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "tier/crypt.h"

typedef struct ring_key {
    uint32_t id;
    unsigned char sub[2][GENCACHE__CRYPT_KEY_LEN]; /* value, metadata */
} ring_key;

struct gencache__crypt {
    const gencache_allocator *alloc;
    size_t n;
    ring_key keys[GENCACHE__CRYPT_KEYS_MAX]; /* [0]: the current key */
};

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* 64 hex digits, white space around them allowed. */
static bool parse_hex(const unsigned char *s, size_t n, unsigned char key[GENCACHE__CRYPT_KEY_LEN])
{
    while (n && isspace(s[n - 1]))
        n--;
    while (n && isspace(*s)) {
        s++;
        n--;
    }
    if (n != 2 * GENCACHE__CRYPT_KEY_LEN)
        return false;
    for (size_t i = 0; i < GENCACHE__CRYPT_KEY_LEN; i++) {
        int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        key[i] = (unsigned char)(hi << 4 | lo);
    }
    return true;
}

int gencache__crypt_load_key(const char *source, unsigned char key[GENCACHE__CRYPT_KEY_LEN],
                             char *err, size_t err_size)
{
    if (!source || !*source) {
        snprintf(err, err_size, "an encryption key source is empty");
        return GENCACHE_ECONFIG;
    }
    if (strncmp(source, "env:", 4) == 0) {
        const char *v = getenv(source + 4);
        if (!v) {
            snprintf(err, err_size, "environment variable %s (encryption key) is not set",
                     source + 4);
            return GENCACHE_ECONFIG;
        }
        if (!parse_hex((const unsigned char *)v, strlen(v), key)) {
            snprintf(err, err_size,
                     "environment variable %s must hold 64 hexadecimal digits (a 256-bit key)",
                     source + 4);
            return GENCACHE_ECONFIG;
        }
        return GENCACHE_OK;
    }
    FILE *f = fopen(source, "rbe");
    if (!f) {
        snprintf(err, err_size, "cannot read encryption key file %s: %s", source, strerror(errno));
        return GENCACHE_ECONFIG;
    }
    unsigned char buf[160];
    size_t n = fread(buf, 1, sizeof buf, f);
    bool more = n == sizeof buf;
    fclose(f);
    bool ok = !more && n == GENCACHE__CRYPT_KEY_LEN;
    if (ok) {
        memcpy(key, buf, GENCACHE__CRYPT_KEY_LEN);
    } else {
        ok = !more && parse_hex(buf, n, key);
    }
    OPENSSL_cleanse(buf, sizeof buf);
    if (!ok) {
        snprintf(err, err_size,
                 "encryption key file %s must hold 32 raw bytes or 64 hexadecimal digits "
                 "(a 256-bit key)",
                 source);
        return GENCACHE_ECONFIG;
    }
    return GENCACHE_OK;
}

static bool derive(const unsigned char key[GENCACHE__CRYPT_KEY_LEN], ring_key *k)
{
    static const char *const labels[2] = {"gencache value key v1", "gencache metadata key v1"};
    unsigned int len = 0;
    for (int i = 0; i < 2; i++)
        if (!HMAC(EVP_sha256(), key, GENCACHE__CRYPT_KEY_LEN, (const unsigned char *)labels[i],
                  strlen(labels[i]), k->sub[i], &len))
            return false;
    unsigned char digest[32];
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    bool ok = md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) &&
              EVP_DigestUpdate(md, "gencache key id v1", 18) &&
              EVP_DigestUpdate(md, key, GENCACHE__CRYPT_KEY_LEN) &&
              EVP_DigestFinal_ex(md, digest, &len);
    EVP_MD_CTX_free(md);
    if (ok)
        k->id = (uint32_t)digest[0] << 24 | (uint32_t)digest[1] << 16 | (uint32_t)digest[2] << 8 |
                digest[3];
    return ok;
}

int gencache__crypt_new(const gencache_allocator *alloc, const gencache__log *log,
                        const char *const *sources, size_t n, gencache__crypt **out)
{
    *out = NULL;
    if (!sources || n == 0 || n > GENCACHE__CRYPT_KEYS_MAX)
        return GENCACHE_EINVAL;
    gencache__crypt *c = gencache__calloc(alloc, 1, sizeof *c);
    if (!c)
        return GENCACHE_ENOMEM;
    c->alloc = alloc;
    for (size_t i = 0; i < n; i++) {
        unsigned char key[GENCACHE__CRYPT_KEY_LEN];
        char err[512];
        int rc = gencache__crypt_load_key(sources[i], key, err, sizeof err);
        if (rc == GENCACHE_OK && !derive(key, &c->keys[i])) {
            snprintf(err, sizeof err, "cannot derive the subkeys of %s", sources[i]);
            rc = GENCACHE_EIO;
        }
        OPENSSL_cleanse(key, sizeof key);
        for (size_t j = 0; rc == GENCACHE_OK && j < i; j++) {
            if (c->keys[j].id == c->keys[i].id) {
                snprintf(err, sizeof err,
                         "encryption keys %s and %s are the same key (id %08x): list each once",
                         sources[j], sources[i], c->keys[i].id);
                rc = GENCACHE_ECONFIG;
            }
        }
        if (rc != GENCACHE_OK) {
            gencache__log_msg(log, GENCACHE_LOG_ERROR, "encryption: %s", err);
            gencache__crypt_free(c);
            return rc;
        }
        c->n = i + 1;
    }
    *out = c;
    return GENCACHE_OK;
}

void gencache__crypt_free(gencache__crypt *c)
{
    if (!c)
        return;
    OPENSSL_cleanse(c->keys, sizeof c->keys);
    gencache__free(c->alloc, c);
}

uint32_t gencache__crypt_current_id(const gencache__crypt *c)
{
    return c->keys[0].id;
}

int gencache__crypt_nonce(unsigned char nonce[GENCACHE__CRYPT_NONCE_LEN])
{
    return RAND_bytes(nonce, GENCACHE__CRYPT_NONCE_LEN) == 1 ? GENCACHE_OK : GENCACHE_EIO;
}

/* EVP takes lengths as int: feed long inputs in pieces. */
#define PIECE (1 << 30)

static int run(EVP_CIPHER_CTX *x, bool enc, const unsigned char *sub, const unsigned char *nonce,
               const void *aad1, size_t aad1_len, const void *aad2, size_t aad2_len, const void *in,
               void *out, size_t n)
{
    int len;
    if ((enc ? EVP_EncryptInit_ex : EVP_DecryptInit_ex)(x, EVP_aes_256_gcm(), NULL, NULL, NULL) !=
            1 ||
        EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_GCM_SET_IVLEN, GENCACHE__CRYPT_NONCE_LEN, NULL) != 1 ||
        (enc ? EVP_EncryptInit_ex : EVP_DecryptInit_ex)(x, NULL, NULL, sub, nonce) != 1)
        return GENCACHE_EIO;
    const void *aad[2] = {aad1, aad2};
    size_t aad_len[2] = {aad1_len, aad2_len};
    for (int i = 0; i < 2; i++)
        if (aad_len[i] && (enc ? EVP_EncryptUpdate : EVP_DecryptUpdate)(x, NULL, &len, aad[i],
                                                                        (int)aad_len[i]) != 1)
            return GENCACHE_EIO;
    for (size_t off = 0; off < n; off += PIECE) {
        int k = n - off < PIECE ? (int)(n - off) : PIECE;
        if ((enc ? EVP_EncryptUpdate : EVP_DecryptUpdate)(x, (unsigned char *)out + off, &len,
                                                          (const unsigned char *)in + off, k) != 1)
            return GENCACHE_EIO;
    }
    return GENCACHE_OK;
}

int gencache__crypt_seal(const gencache__crypt *c, gencache__crypt_part part,
                         const unsigned char *nonce, const void *aad1, size_t aad1_len,
                         const void *aad2, size_t aad2_len, const void *in, void *out, size_t n,
                         unsigned char *tag)
{
    EVP_CIPHER_CTX *x = EVP_CIPHER_CTX_new();
    if (!x)
        return GENCACHE_ENOMEM;
    int len,
        rc = run(x, true, c->keys[0].sub[part], nonce, aad1, aad1_len, aad2, aad2_len, in, out, n);
    if (rc == GENCACHE_OK &&
        (EVP_EncryptFinal_ex(x, (unsigned char *)out + n, &len) != 1 ||
         EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_GCM_GET_TAG, GENCACHE__CRYPT_TAG_LEN, tag) != 1))
        rc = GENCACHE_EIO;
    EVP_CIPHER_CTX_free(x);
    return rc;
}

int gencache__crypt_open(const gencache__crypt *c, uint32_t key_id, gencache__crypt_part part,
                         const unsigned char *nonce, const void *aad1, size_t aad1_len,
                         const void *aad2, size_t aad2_len, const void *in, void *out, size_t n,
                         const unsigned char *tag)
{
    const ring_key *k = NULL;
    for (size_t i = 0; c && i < c->n && !k; i++)
        if (c->keys[i].id == key_id)
            k = &c->keys[i];
    if (!k)
        return GENCACHE_EPERM;
    EVP_CIPHER_CTX *x = EVP_CIPHER_CTX_new();
    if (!x)
        return GENCACHE_ENOMEM;
    unsigned char t[GENCACHE__CRYPT_TAG_LEN];
    memcpy(t, tag, sizeof t);
    int len, rc = run(x, false, k->sub[part], nonce, aad1, aad1_len, aad2, aad2_len, in, out, n);
    if (rc == GENCACHE_OK && EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_GCM_SET_TAG, sizeof t, t) != 1)
        rc = GENCACHE_EIO;
    if (rc == GENCACHE_OK && EVP_DecryptFinal_ex(x, (unsigned char *)out + n, &len) != 1)
        rc = GENCACHE_ECORRUPT;
    EVP_CIPHER_CTX_free(x);
    return rc;
}
