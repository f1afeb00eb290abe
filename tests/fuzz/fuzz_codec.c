/*
 * fuzz_codec.c: libFuzzer target for reading a stored tensor entry (gencache_tensor_decode_info
 * and gencache_tensor_decode): the bytes and the metadata both come back from disk, Redis or
 * another node, and need not agree. Any input must be refused, or decode into exactly the size
 * decode_info announced without reading or writing outside the buffers; a buffer one byte short
 * is refused. Input: stored dtype, wanted dtype, flags (bit 0: content type carries the int8
 * mark; bits 1-4: ndim), ndim little-endian u16 dimensions, then the stored bytes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gencache.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    gencache_meta m;
    gencache_meta_init(&m);
    m.dtype = (gencache_dtype)(data[0] % 9);
    gencache_dtype want = (gencache_dtype)(data[1] % 9);
    m.content_type = (data[2] & 1) ? "application/octet-stream; codec=int8-channel" : NULL;
    m.ndim = (uint32_t)((data[2] >> 1) & 15);
    size_t off = 3;
    for (uint32_t i = 0; i < m.ndim && i < GENCACHE_MAX_DIMS; i++, off += 2) {
        if (off + 2 > size)
            return 0;
        m.shape[i] = (int64_t)(data[off] | data[off + 1] << 8);
    }
    /* Stored values are aligned (a handle's are on 64 bytes); so is this copy. */
    size_t n = size - off;
    unsigned char *bytes = malloc(n ? n : 1);
    if (!bytes)
        abort();
    memcpy(bytes, data + off, n);
    gencache_decode_info info;
    if (gencache_tensor_decode_info(&m, bytes, n, want, &info) != GENCACHE_OK) {
        if (info.size != 0 || info.content_type != NULL)
            abort(); /* zeroed on failure */
        free(bytes);
        return 0;
    }
    if (info.size > (1u << 24)) {
        free(bytes); /* valid, but too large to decode per input */
        return 0;
    }
    size_t cap = (size_t)info.size;
    unsigned char *out = malloc(cap ? cap : 1);
    if (!out)
        abort();
    size_t got = 1;
    int rc = gencache_tensor_decode(&m, bytes, n, want, out, cap, &got);
    /* Narrowing a stored NaN/Inf is the one refusal left once decode_info has accepted. */
    if (rc != GENCACHE_OK && rc != GENCACHE_EINVAL)
        abort();
    if (rc == GENCACHE_OK && got != cap)
        abort();
    if (cap > 0 &&
        gencache_tensor_decode(&m, bytes, n, want, out, cap - 1, &got) != GENCACHE_ETOOBIG)
        abort();
    free(out);
    free(bytes);
    return 0;
}
