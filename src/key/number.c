/*
 * number.c: the canonical encoding of JSON numbers (DESIGN.md section 2), which other languages
 * must reproduce bit for bit. A number written as an integer is exact whatever its size up to 64
 * bits (`i:`); any other number is a binary64, written `i:` when it is integral with |x| <= 2^53
 * (so 7 and 7.0 agree and -0 is 0) and as its 16 hex IEEE-754 digits (`f:`) otherwise.
 */
#define _GNU_SOURCE /* strtod_l */
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "key.h"

static locale_t c_locale;
static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;

static void c_locale_init(void)
{
    c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0);
}

/* strtod in the C locale whatever the process's locale ('.' is JSON's decimal point). */
static double parse_double(const char *lit, size_t len)
{
    char tmp[64];
    char *heap = NULL, *s = tmp;
    if (len >= sizeof tmp) {
        heap = malloc(len + 1);
        if (!heap)
            return NAN;
        s = heap;
    }
    memcpy(s, lit, len);
    s[len] = '\0';
    pthread_once(&c_locale_once, c_locale_init);
    double x = c_locale ? strtod_l(s, NULL, c_locale) : strtod(s, NULL);
    free(heap);
    return x;
}

/* parsed: the literal's binary64 value when the caller has it (correctly rounded, as strtod
 * gives it), or NULL to convert it here. */
static int encode_number(const char *lit, size_t len, const double *parsed, gencache__buf *out)
{
    bool integer_form = len > 0;
    for (size_t i = 0; i < len; i++)
        if (lit[i] == '.' || lit[i] == 'e' || lit[i] == 'E')
            integer_form = false;
    if (integer_form) {
        bool neg = lit[0] == '-';
        uint64_t mag = 0;
        for (size_t i = neg ? 1 : 0; i < len; i++) {
            unsigned d = (unsigned)(lit[i] - '0');
            if (d > 9)
                return GENCACHE_EINVAL;
            if (mag > (UINT64_MAX - d) / 10)
                return GENCACHE_ELIMIT;
            mag = mag * 10 + d;
        }
        if (neg && mag > (uint64_t)INT64_MAX + 1)
            return GENCACHE_ELIMIT;
        gencache__buf_append(out, neg && mag ? "i:-" : "i:", neg && mag ? 3 : 2);
        gencache__buf_put_u64(out, mag);
        return GENCACHE_OK;
    }
    double x = parsed ? *parsed : parse_double(lit, len);
    if (!isfinite(x))
        return GENCACHE_EINVAL;
    if (x == trunc(x) && fabs(x) <= 9007199254740992.0) {
        gencache__buf_append(out, x < 0 ? "i:-" : "i:", x < 0 ? 3 : 2);
        gencache__buf_put_u64(out, (uint64_t)fabs(x));
        return GENCACHE_OK;
    }
    uint64_t bits;
    memcpy(&bits, &x, sizeof bits);
    char hex[18] = {'f', ':'};
    for (int i = 0; i < 16; i++)
        hex[2 + i] = "0123456789abcdef"[(bits >> (60 - 4 * i)) & 15];
    gencache__buf_append(out, hex, sizeof hex);
    return GENCACHE_OK;
}

int gencache__key_encode_number(const char *lit, size_t len, gencache__buf *out)
{
    return encode_number(lit, len, NULL, out);
}

int gencache__key_encode_number_parsed(const char *lit, size_t len, double value,
                                       gencache__buf *out)
{
    return encode_number(lit, len, &value, out);
}
