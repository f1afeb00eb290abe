/*
 * bloom.c: the Bloom filter in front of the Redis tier. m bits and k probes come from the
 * textbook optimum for n keys at false-positive rate p (m = -n ln p / ln^2 2, k = m/n ln 2);
 * the k probe positions are h1 + i*h2 (double hashing) from the two halves of one 64-bit key
 * hash, remixed. Bits are set with atomic OR, so adds never lose each other's bits.
 */
#include <math.h>
#include <stdlib.h>

#include "tier/bloom.h"

struct gencache__bloom {
    uint64_t bits; /* m, a multiple of 64 */
    unsigned k;
    _Atomic uint64_t adds;
    _Atomic uint64_t words[];
};

gencache__bloom *gencache__bloom_new(uint64_t capacity, double fp_rate)
{
    if (capacity == 0 || capacity > (1ull << 34) || !(fp_rate > 0 && fp_rate < 1))
        return NULL;
    double m = ceil(-(double)capacity * log(fp_rate) / (M_LN2 * M_LN2));
    uint64_t words = ((uint64_t)m + 63) / 64;
    if (words < 1)
        words = 1;
    unsigned k = (unsigned)lround((double)(words * 64) / (double)capacity * M_LN2);
    if (k < 1)
        k = 1;
    if (k > 16)
        k = 16;
    gencache__bloom *b = calloc(1, sizeof *b + words * sizeof(uint64_t));
    if (!b)
        return NULL;
    b->bits = words * 64;
    b->k = k;
    return b;
}

void gencache__bloom_free(gencache__bloom *b)
{
    free(b);
}

/* A 64-bit finalizer (splitmix64), so probes do not inherit any structure of the key hash. */
static uint64_t mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

void gencache__bloom_add(gencache__bloom *b, uint64_t hash)
{
    uint64_t h = mix(hash), h1 = h, h2 = mix(h ^ 0x9e3779b97f4a7c15ull) | 1;
    for (unsigned i = 0; i < b->k; i++) {
        uint64_t bit = (h1 + i * h2) % b->bits;
        atomic_fetch_or_explicit(&b->words[bit / 64], 1ull << (bit % 64), memory_order_release);
    }
    atomic_fetch_add_explicit(&b->adds, 1, memory_order_relaxed);
}

bool gencache__bloom_maybe(const gencache__bloom *b, uint64_t hash)
{
    uint64_t h = mix(hash), h1 = h, h2 = mix(h ^ 0x9e3779b97f4a7c15ull) | 1;
    for (unsigned i = 0; i < b->k; i++) {
        uint64_t bit = (h1 + i * h2) % b->bits;
        uint64_t w =
            atomic_load_explicit(&((gencache__bloom *)b)->words[bit / 64], memory_order_acquire);
        if (!(w & (1ull << (bit % 64))))
            return false;
    }
    return true;
}

size_t gencache__bloom_bytes(const gencache__bloom *b)
{
    return sizeof *b + (size_t)(b->bits / 8);
}

unsigned gencache__bloom_hashes(const gencache__bloom *b)
{
    return b->k;
}

uint64_t gencache__bloom_adds(const gencache__bloom *b)
{
    return atomic_load_explicit(&((gencache__bloom *)b)->adds, memory_order_relaxed);
}
