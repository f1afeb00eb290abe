/*
 * axis_cache.h: shared, immutable resize coefficients for one axis (axis_cache.c).
 */
#ifndef GENCACHE_IMAGE_AXIS_CACHE_H
#define GENCACHE_IMAGE_AXIS_CACHE_H

#include <stdint.h>

#include "resize.h"
#include "simd.h"

typedef struct gencache__axis {
    gencache__resize_coeffs c;
    gencache__simd_hplan hp; /* valid when has_hp */
    int want_hp;             /* the GENCACHE__SIMD_ level whose split was asked for, or 0 */
    int has_hp;
    int cached; /* owned by the cache: never freed */
} gencache__axis;

/* The coefficients of in_size -> out_size (and, with want_hp a GENCACHE__SIMD_ level above
 * scalar, their split for that level's kernels). *ax is valid
 * until gencache__axis_put(). Returns GENCACHE_OK or GENCACHE_ENOMEM. Thread-safe. */
int gencache__axis_get(uint32_t in_size, uint32_t out_size, int want_hp, gencache__axis **ax);
void gencache__axis_put(gencache__axis *ax);

#endif
