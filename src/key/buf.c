/*
 * buf.c: the growable byte buffer that src/key/ builds canonical documents and normalized text
 * in. An allocation failure is sticky: later appends do nothing and the caller checks once at
 * the end, which keeps the encoders free of error plumbing.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "key.h"

bool gencache__buf_reserve(gencache__buf *b, size_t extra)
{
    if (b->failed)
        return false;
    if (extra <= b->cap - b->len)
        return true;
    if (extra > SIZE_MAX / 2 - b->len) {
        b->failed = true;
        return false;
    }
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < extra)
        cap *= 2;
    char *p = b->borrowed ? malloc(cap) : realloc(b->data, cap);
    if (!p) {
        b->failed = true;
        return false;
    }
    if (b->borrowed && b->len)
        memcpy(p, b->data, b->len);
    b->borrowed = false;
    b->data = p;
    b->cap = cap;
    return true;
}

void gencache__buf_printf(gencache__buf *b, const char *fmt, ...)
{
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->failed = true;
        return;
    }
    if ((size_t)n < sizeof tmp) {
        gencache__buf_append(b, tmp, (size_t)n);
        return;
    }
    if (!gencache__buf_reserve(b, (size_t)n + 1))
        return;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

bool gencache__buf_terminate(gencache__buf *b)
{
    if (!gencache__buf_reserve(b, 1))
        return false;
    b->data[b->len] = '\0';
    return true;
}

void gencache__buf_put_u64(gencache__buf *b, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[sizeof tmp - 1 - n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    gencache__buf_append(b, tmp + sizeof tmp - n, n);
}

void gencache__buf_free(gencache__buf *b)
{
    if (!b->borrowed)
        free(b->data);
    memset(b, 0, sizeof *b);
}
