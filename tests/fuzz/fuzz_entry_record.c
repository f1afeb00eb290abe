/*
 * fuzz_entry_record.c: libFuzzer target for the entry record, the metadata the disk and Redis
 * tiers store beside a value. Redis is shared by every node, so these bytes are untrusted. Any
 * input must be refused by gencache__codec_decode() or decode to a record that is consistent
 * with itself: it fits in the input, it builds an entry, that entry encodes back to a record
 * that decodes to the same fields, and patching its mutable fields keeps it decodable. Sealed
 * (encrypted) records go through the clear-part decoder and, with the fixed key below (the one
 * the corpus's sealed seed was made with), through authentication and the inner decoder.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "tier/entry_codec.h"

static int str_eq(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* The key of the corpus's sealed seed (a test key, not a secret). */
#define FUZZ_KEY "6675a7a9c1b3d5e7f9021436587a9cbedf10325476983badcfe1032547698ba0"

static gencache__seal *fuzz_seal(void)
{
    static gencache__seal seal;
    static gencache__crypt *keys;
    if (!keys) {
        setenv("GENCACHE_FUZZ_KEY", FUZZ_KEY, 1);
        const char *src[] = {"env:GENCACHE_FUZZ_KEY"};
        if (gencache__crypt_new(NULL, NULL, src, 1, &keys) != GENCACHE_OK)
            abort();
        seal.keys = keys;
    }
    return &seal;
}

/* The clear-part and the keyed decoders: whatever they accept fits in the input. */
static void sealed_paths(const uint8_t *data, size_t size)
{
    gencache__codec_meta m;
    if (gencache__codec_decode_head(NULL, data, size, &m) == GENCACHE_OK) {
        if (m.record_len > size || !m.key)
            abort();
        gencache__codec_meta_clear(&m);
    }
    if (gencache__codec_decode_sealed(fuzz_seal(), NULL, data, size, &m) == GENCACHE_OK) {
        if (m.record_len > size || !m.key || (m.sealed && !m.opened))
            abort();
        gencache__codec_meta_clear(&m);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sealed_paths(data, size);
    gencache__codec_meta m;
    if (gencache__codec_decode(NULL, data, size, &m) != GENCACHE_OK)
        return 0;
    if (m.record_len > size || m.record_len < GENCACHE__CODEC_MIN_LEN || !m.key)
        abort();
    gencache__entry *e = NULL;
    if (gencache__codec_entry_new(NULL, &m, false, &e) != GENCACHE_OK) {
        gencache__codec_meta_clear(&m);
        return 0; /* decodable, yet not an entry this library would build (a bad key) */
    }
    size_t cap = gencache__codec_size(e), len = 0;
    unsigned char *buf = malloc(cap ? cap : 1);
    if (!buf || gencache__codec_encode(e, m.expires_ms, m.last_access_ms, m.hits, buf, cap, &len) !=
                    GENCACHE_OK)
        abort();
    gencache__codec_meta back;
    if (gencache__codec_decode(NULL, buf, len, &back) != GENCACHE_OK)
        abort();
    if (!str_eq(back.key, m.key) || !str_eq(back.tenant, m.tenant) ||
        !str_eq(back.model, m.model) || !str_eq(back.tags, m.tags) || back.dtype != m.dtype ||
        back.ndim != m.ndim || back.size != m.size || back.checksum != m.checksum ||
        back.created_ms != m.created_ms || back.expires_ms != m.expires_ms ||
        back.ttl_ms != m.ttl_ms || back.cost_ms != m.cost_ms || back.pinned != m.pinned)
        abort();
    if (gencache__codec_patch(buf, len, 1, 2, 3) != GENCACHE_OK)
        abort();
    gencache__codec_meta_clear(&back);
    if (gencache__codec_decode(NULL, buf, len, &back) != GENCACHE_OK || back.hits != 3)
        abort();
    gencache__codec_meta_clear(&back);
    free(buf);
    gencache__entry_release(e);
    gencache__codec_meta_clear(&m);
    return 0;
}
