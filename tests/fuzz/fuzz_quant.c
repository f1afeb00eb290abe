/*
 * fuzz_quant.c: libFuzzer target for quantized tensor payloads, which come back from disk, from
 * Redis and from other nodes. Any input must be refused by gencache_quant_info_get() or decode
 * completely inside its declared size; decoding to every float dtype must agree with decoding to
 * f32 and narrowing.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gencache.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    gencache_quant_info info;
    if (gencache_quant_info_get(data, size, &info) != GENCACHE_OK)
        return 0;
    uint64_t n;
    if (gencache_tensor_numel(info.desc.ndim, info.desc.shape, &n) != GENCACHE_OK)
        abort();
    if (info.data_offset + n != size)
        abort(); /* the payload holds every element exactly */
    if (n > (1u << 24))
        return 0; /* valid, but too large to decode three times per input */
    float *f = malloc(n * 4 + 4);
    uint16_t *h = malloc(n * 2 + 2), *h2 = malloc(n * 2 + 2);
    if (!f || !h || !h2)
        abort();
    size_t got;
    if (gencache_quant_decode(data, size, GENCACHE_DTYPE_F32, f, n * 4, &got) != GENCACHE_OK ||
        got != n * 4)
        abort();
    static const gencache_dtype narrow[] = {GENCACHE_DTYPE_F16, GENCACHE_DTYPE_BF16};
    for (int k = 0; k < 2; k++) {
        if (gencache_quant_decode(data, size, narrow[k], h, n * 2, &got) != GENCACHE_OK)
            abort();
        /* Decoded values are finite, so narrowing them never fails. */
        if (gencache_tensor_convert(narrow[k], h2, GENCACHE_DTYPE_F32, f, n) != GENCACHE_OK)
            abort();
        if (memcmp(h, h2, n * 2) != 0)
            abort();
    }
    if (n > 0 && gencache_quant_decode(data, size, GENCACHE_DTYPE_F32, f, n * 4 - 1, &got) !=
                     GENCACHE_ETOOBIG)
        abort();
    free(f);
    free(h);
    free(h2);
    return 0;
}
