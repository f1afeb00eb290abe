/*
 * grammar.c: the one grammar of sizes and durations (docs/config.md). The config file, the
 * daemon's flags, the CLI and the Python package all read "1G" and "7d" through these two
 * functions, so a size means the same number of bytes wherever it is written.
 */
#include <string.h>

#include "internal.h"

/* Reads the decimal digits at *p (at least one, no overflow) into *v and advances *p. */
static int leading_u64(const char **p, uint64_t *v)
{
    const char *q = *p;
    uint64_t n = 0;
    if (*q < '0' || *q > '9')
        return -1;
    for (; *q >= '0' && *q <= '9'; q++) {
        if (n > (UINT64_MAX - (uint64_t)(*q - '0')) / 10)
            return -1;
        n = n * 10 + (uint64_t)(*q - '0');
    }
    *p = q;
    *v = n;
    return 0;
}

/* A unit and its multiplier; the suffix must match exactly. */
typedef struct unit {
    const char *name;
    uint64_t mul;
} unit;

static int scaled(const char *s, const unit *units, size_t n_units, uint64_t bare, uint64_t *out)
{
    uint64_t v;
    if (!out)
        return GENCACHE_EINVAL;
    *out = 0;
    if (!s || leading_u64(&s, &v) != 0)
        return GENCACHE_EINVAL;
    uint64_t mul = 0;
    if (!*s)
        mul = bare;
    for (size_t i = 0; !mul && i < n_units; i++)
        if (strcmp(s, units[i].name) == 0)
            mul = units[i].mul;
    if (!mul || v > UINT64_MAX / mul)
        return GENCACHE_EINVAL;
    *out = v * mul;
    return GENCACHE_OK;
}

#define KI 1024ull
#define KD 1000ull

int gencache_parse_size(const char *s, uint64_t *out)
{
    static const unit units[] = {
        {"B", 1},
        {"K", KI},
        {"M", KI * KI},
        {"G", KI * KI * KI},
        {"T", KI * KI * KI * KI},
        {"KiB", KI},
        {"MiB", KI * KI},
        {"GiB", KI * KI * KI},
        {"TiB", KI * KI * KI * KI},
        {"KB", KD},
        {"MB", KD * KD},
        {"GB", KD * KD * KD},
        {"TB", KD * KD * KD * KD},
    };
    return scaled(s, units, sizeof units / sizeof units[0], 1, out);
}

int gencache_parse_duration_ms(const char *s, uint64_t *out)
{
    static const unit units[] = {
        {"ms", 1},      {"s", 1000},     {"m", 60000},
        {"h", 3600000}, {"d", 86400000}, {"w", 7ull * 86400000},
    };
    return scaled(s, units, sizeof units / sizeof units[0], 1000, out);
}
