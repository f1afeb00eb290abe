/*
 * bench_util.h: what the benchmarks share: a monotonic clock, the thread's CPU time, the median and
 * quantiles of a sample and a seeded random sequence. Figures are medians because the machines are
 * shared and noisy; a mean would follow the outliers.
 */
#ifndef GENCACHE_BENCH_UTIL_H
#define GENCACHE_BENCH_UTIL_H

#include <stdlib.h>
#include <time.h>

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

/* The calling thread's CPU time: the cycles it ran, memory stalls included, without the spells
 * another job on the same core descheduled it. */
static inline uint64_t bench_thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
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

/* The p-quantile (0 <= p <= 1, nearest rank below) of n > 0 values; sorts v in place. */
static inline double bench_quantile(double *v, int n, double p)
{
    qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
    return v[(int)(p * (n - 1))];
}

/* The next value of a splitmix64 sequence: fast, seeded by *state, the same on every run. */
static inline uint64_t bench_splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

#endif
