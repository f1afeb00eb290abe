/*
 * simhash.c: the fingerprint of a prompt for near-duplicate prompt lookups. The prompt is
 * normalized with the aggressive mode (case, punctuation, entities, British spellings: what
 * that mode merges), split into words, and each word and each pair of adjacent words (so that
 * word order counts) votes with its 64-bit hash on every bit of the SimHash (Charikar): prompts
 * that share most features get hashes a few bits apart. Beside it goes an exact 64-bit hash of
 * the normalized text, so a radius of 0 means "the same prompt once aggressively normalized".
 */
#include <string.h>

#include "reuse.h"

static void vote(int32_t *v, uint64_t h)
{
    for (int b = 0; b < 64; b++)
        v[b] += (h >> b) & 1 ? 1 : -1;
}

int gencache__prompt_fingerprint(const char *prompt, uint64_t *simhash, uint64_t *text_hash)
{
    *simhash = *text_hash = 0;
    char *norm = NULL;
    size_t len = 0;
    int rc = gencache_normalize(GENCACHE_NORM_AGGRESSIVE, prompt, strlen(prompt), &norm, &len);
    if (rc != GENCACHE_OK)
        return rc;
    int32_t v[64] = {0};
    const char *prev = NULL;
    for (size_t i = 0; i < len;) {
        while (i < len && norm[i] == ' ')
            i++;
        size_t start = i;
        while (i < len && norm[i] != ' ')
            i++;
        if (i == start)
            break;
        vote(v, gencache__checksum(norm + start, i - start));
        if (prev) /* the pair "prev word": the bytes from prev to the end of this word */
            vote(v, gencache__checksum(prev, (size_t)(norm + i - prev)) ^ 0x9e3779b97f4a7c15ull);
        prev = norm + start;
    }
    uint64_t h = 0;
    for (int b = 0; b < 64; b++)
        if (v[b] > 0)
            h |= 1ull << b;
    *simhash = h;
    *text_hash = gencache__checksum(norm, len);
    gencache_free(norm);
    return GENCACHE_OK;
}
