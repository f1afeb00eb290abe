/*
 * fastparse.c: the reader of the requests the daemon's own GET loop answers (fastget.c), free of
 * sockets so that it can be fuzzed (tests/fuzz/fuzz_fastget.c). It says "ok" only for a request
 * it understands completely, and "more" only while the bytes so far are a prefix of such a
 * request; so a request arriving a byte at a time gets the same verdict as one arriving whole,
 * and whatever it refuses is left for libmicrohttpd to read as if nothing had looked at it.
 */
#include <stdbool.h>
#include <string.h>
#include <strings.h>

#include "fastparse.h"
#include "gencache.h"

/* True when the bytes of b from *at agree with lit as far as both go (b may end first); when all
 * of lit was matched, *done is set and *at moves past it. */
static bool starts(const char *b, size_t n, const char *lit, size_t *at, bool *done)
{
    size_t l = strlen(lit);
    size_t k = n - *at < l ? n - *at : l;
    if (memcmp(b + *at, lit, k) != 0)
        return false;
    *done = k == l;
    if (*done)
        *at += l;
    return true;
}

static bool key_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '_' || ch == '-' || ch == '.' || ch == '/';
}

/* True when the n bytes at name are lit, in any case. lit is a string literal: its length is
 * known at compile time, and most names are told apart by their length alone. */
#define NAME_IS(name, n, lit) ((n) == sizeof(lit) - 1 && strncasecmp((name), (lit), (n)) == 0)

/* One header line name: value (both trimmed). Returns false for anything this file does not
 * understand completely. */
static bool take_header(gcd_fast_req *r, const char *name, size_t nn, const char *v, size_t vn,
                        unsigned *seen)
{
    /* Headers that do not change the answer. */
    if (NAME_IS(name, nn, "Accept") || NAME_IS(name, nn, "Accept-Encoding") ||
        NAME_IS(name, nn, "Accept-Language") || NAME_IS(name, nn, "Accept-Charset") ||
        NAME_IS(name, nn, "User-Agent"))
        return true;
    unsigned bit;
    if (NAME_IS(name, nn, "Host")) {
        bit = 1;
    } else if (NAME_IS(name, nn, "Authorization")) {
        bit = 2;
        r->auth = v;
        r->auth_len = vn;
    } else if (NAME_IS(name, nn, "If-None-Match")) {
        bit = 4;
        r->inm = v;
        r->inm_len = vn;
    } else if (NAME_IS(name, nn, "Connection")) {
        bit = 8;
        if (NAME_IS(v, vn, "close"))
            r->close = true;
        else if (!NAME_IS(v, vn, "keep-alive"))
            return false;
    } else {
        return false;
    }
    if (*seen & bit) /* twice: libmicrohttpd decides which one counts */
        return false;
    *seen |= bit;
    return vn < GCD_FAST_VALUE_MAX;
}

gcd_fast_parse_result gcd_fast_parse(const char *b, size_t n, gcd_fast_req *r)
{
    memset(r, 0, sizeof *r);
    size_t at = 0;
    bool done = false;
    if (n >= 1 && b[0] == 'H') {
        if (!starts(b, n, "HEAD ", &at, &done))
            return GCD_FAST_OTHER;
        r->head = true;
    } else if (!starts(b, n, "GET ", &at, &done)) {
        return GCD_FAST_OTHER;
    }
    if (!done)
        return GCD_FAST_MORE;
    r->url = b + at;
    if (!starts(b, n, GCD_FAST_PREFIX, &at, &done))
        return GCD_FAST_OTHER;
    if (!done)
        return GCD_FAST_MORE;
    /* The key: plain characters only, so the URL needs no decoding and has no query. */
    size_t key_start = at;
    while (at < n && key_char(b[at]))
        at++;
    if (at - key_start >= GENCACHE_KEY_MAX)
        return GCD_FAST_OTHER;
    if (at == n)
        return GCD_FAST_MORE;
    if (b[at] != ' ' || at == key_start)
        return GCD_FAST_OTHER;
    r->url_len = (size_t)(b + at - r->url);
    if (!starts(b, n, " HTTP/1.1\r\n", &at, &done))
        return GCD_FAST_OTHER;
    if (!done)
        return GCD_FAST_MORE;
    unsigned seen = 0;
    for (;;) {
        if (at == n)
            return GCD_FAST_MORE;
        if (b[at] == '\r') {
            if (at + 1 == n)
                return GCD_FAST_MORE;
            if (b[at + 1] != '\n' || !(seen & 1)) /* HTTP/1.1 needs a Host */
                return GCD_FAST_OTHER;
            r->len = at + 2;
            return GCD_FAST_OK;
        }
        const char *name = b + at;
        while (at < n && ((b[at] >= 'a' && b[at] <= 'z') || (b[at] >= 'A' && b[at] <= 'Z') ||
                          (b[at] >= '0' && b[at] <= '9') || b[at] == '-'))
            at++;
        if (at == n)
            return GCD_FAST_MORE;
        size_t nn = (size_t)(b + at - name);
        if (b[at] != ':' || nn == 0)
            return GCD_FAST_OTHER;
        at++;
        while (at < n && (b[at] == ' ' || b[at] == '\t'))
            at++;
        const char *v = b + at;
        while (at < n && ((unsigned char)b[at] >= 0x20 && (unsigned char)b[at] < 0x7f))
            at++;
        if (at == n)
            return GCD_FAST_MORE;
        if (b[at] != '\r')
            return GCD_FAST_OTHER;
        if (at + 1 == n)
            return GCD_FAST_MORE;
        if (b[at + 1] != '\n')
            return GCD_FAST_OTHER;
        size_t vn = (size_t)(b + at - v);
        while (vn && (v[vn - 1] == ' ' || v[vn - 1] == '\t'))
            vn--;
        at += 2;
        if (!take_header(r, name, nn, v, vn, &seen))
            return GCD_FAST_OTHER;
    }
}
