/*
 * axis_cache.c: resize coefficients by (input size, output size), computed once and shared.
 * Computing them costs two sin() calls per tap (a 1024 -> 32 axis has 6,000 taps), as much as
 * resampling the image itself, and a workload sees the same few image sizes again and again.
 * Published entries are immutable and live until the process ends; the table is small and
 * bounded (slots and bytes), and past that an axis is computed for the call and freed after it.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "axis_cache.h"

#define SLOTS            64
#define MAX_ENTRY_COEFFS (64u * 1024u) /* out_size * ksize of an entry worth keeping */

static gencache__axis *slots[SLOTS];
static unsigned used;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static gencache__axis *find(uint32_t in, uint32_t out, int want_hp)
{
    for (unsigned i = 0; i < used; i++)
        if (slots[i]->c.in_size == in && slots[i]->c.out_size == out &&
            slots[i]->want_hp == want_hp)
            return slots[i];
    return NULL;
}

static void axis_free(gencache__axis *ax)
{
    if (ax->has_hp)
        gencache__simd_hplan_free(&ax->hp);
    gencache__resize_coeffs_free(&ax->c);
    free(ax);
}

int gencache__axis_get(uint32_t in, uint32_t out, int want_hp, gencache__axis **axp)
{
    *axp = NULL;
    pthread_mutex_lock(&lock);
    gencache__axis *hit = find(in, out, want_hp);
    pthread_mutex_unlock(&lock);
    if (hit) {
        *axp = hit;
        return GENCACHE_OK;
    }
    gencache__axis *ax = calloc(1, sizeof *ax);
    if (!ax)
        return GENCACHE_ENOMEM;
    int rc = gencache__resize_coeffs_init(&ax->c, in, out);
    if (rc != GENCACHE_OK) {
        free(ax);
        return rc;
    }
    ax->want_hp = want_hp;
    if (want_hp) {
        rc = gencache__simd_hplan_init(&ax->hp, &ax->c, want_hp);
        if (rc == GENCACHE_ENOMEM) {
            axis_free(ax);
            return rc;
        }
        ax->has_hp = rc == GENCACHE_OK; /* EUNSUPPORTED: the scalar pass will run */
        if (ax->has_hp)
            ax->hp.c = &ax->c;
    }
    if ((uint64_t)out * (uint64_t)ax->c.ksize <= MAX_ENTRY_COEFFS) {
        pthread_mutex_lock(&lock);
        /* Another thread may have published the same axis meanwhile: use that one. */
        gencache__axis *again = find(in, out, want_hp);
        if (!again && used < SLOTS) {
            ax->cached = 1;
            slots[used++] = ax;
        }
        pthread_mutex_unlock(&lock);
        if (again) {
            axis_free(ax);
            ax = again;
        }
    }
    *axp = ax;
    return GENCACHE_OK;
}

void gencache__axis_put(gencache__axis *ax)
{
    if (ax && !ax->cached)
        axis_free(ax);
}
