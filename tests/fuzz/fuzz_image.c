/*
 * fuzz_image.c: libFuzzer target for the image decoders, the one input gencache takes from
 * strangers in binary form. It decodes the bytes from memory under tight limits (so the fuzzer
 * explores parsers rather than allocators) and, when they decode, digests and hashes the pixels,
 * checking the invariants every decoded image must satisfy.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gencache.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    gencache_image_limits lim;
    gencache_image_limits_init(&lim);
    lim.max_width = 2048;
    lim.max_height = 2048;
    lim.max_pixels = 1u << 20;
    lim.max_bytes = 16u << 20;
    gencache_image *img = NULL;
    int rc = gencache_image_decode_memory(data, size, &lim, &img);
    if (rc != GENCACHE_OK) {
        if (img != NULL || rc > 0)
            abort();
        return 0;
    }
    gencache_image_info info;
    if (gencache_image_info_get(img, &info) != GENCACHE_OK || info.width == 0 || info.height == 0 ||
        info.width > lim.max_width || info.height > lim.max_height || info.channels < 1 ||
        info.channels > 4 || (info.bits != 8 && info.bits != 16))
        abort();
    char digest[GENCACHE_DIGEST_MAX];
    if (gencache_image_digest(img, digest) != GENCACHE_OK || strlen(digest) != 71 ||
        strncmp(digest, "sha256:", 7) != 0)
        abort();
    for (int algo = GENCACHE_HASH_AHASH; algo <= GENCACHE_HASH_PHASH; algo++) {
        char hex[GENCACHE_HASH_HEX_MAX];
        if (gencache_image_hash(img, (gencache_hash_algo)algo, 64, NULL, hex) != GENCACHE_OK ||
            strlen(hex) != 16)
            abort();
    }
    gencache_image_free(img);
    return 0;
}
