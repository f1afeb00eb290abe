/*
 * bench_util.h: what the benchmarks share: a monotonic clock and the median of a sample. Figures
 * are medians because the machines are shared and noisy; a mean would follow the outliers.
 */
#ifndef GENCACHE_BENCH_UTIL_H
#define GENCACHE_BENCH_UTIL_H

#include <stdlib.h>

#include "internal.h"

static inline double bench_now_ns(void)
{
    return (double)gencache__clock_mono_ns();
}

static inline double bench_now_us(void)
{
    return bench_now_ns() / 1e3;
}

static inline double bench_now_s(void)
{
    return bench_now_ns() / 1e9;
}

static int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The median of n > 0 values; sorts v in place. */
static inline double bench_median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

#endif
