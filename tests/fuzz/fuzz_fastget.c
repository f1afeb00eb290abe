/*
 * fuzz_fastget.c: libFuzzer target for the reader of the requests gencached answers without
 * libmicrohttpd (tools/gencached/fastparse.c). The input is the bytes a client sent. Besides
 * surviving every input, the reader must keep the invariants the server relies on: an OK request
 * lies within the bytes and ends its head there, its URL is the entry prefix and plain key
 * characters, the key shorter than GENCACHE_KEY_MAX (the server copies it into such a buffer), its
 * header values lie within the head, free of line ends and shorter than GCD_FAST_VALUE_MAX; every
 * prefix of an OK head is MORE (a head arriving a byte at a time gets the same answer as one
 * arriving whole); bytes after an OK head change nothing; and a prefix of MORE bytes is MORE.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fastparse.h"
#include "gencache.h"

static void require(int cond)
{
    if (!cond)
        abort();
}

static int plain(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '_' || ch == '-' || ch == '.' || ch == '/';
}

/* A value's span lies within the head and holds no line end. */
static void value_ok(const char *b, size_t len, const char *v, size_t n)
{
    if (!v)
        return;
    require(v >= b && v + n <= b + len && n < GCD_FAST_VALUE_MAX);
    require(!memchr(v, '\r', n) && !memchr(v, '\n', n));
}

static void check_ok(const char *b, size_t n, const gcd_fast_req *r)
{
    size_t pl = strlen(GCD_FAST_PREFIX);
    require(r->len >= 4 && r->len <= n && memcmp(b + r->len - 4, "\r\n\r\n", 4) == 0);
    require(memcmp(b, r->head ? "HEAD " : "GET ", r->head ? 5 : 4) == 0);
    require(r->url >= b && r->url + r->url_len <= b + r->len && r->url_len > pl);
    require(memcmp(r->url, GCD_FAST_PREFIX, pl) == 0);
    require(r->url_len - pl < GENCACHE_KEY_MAX);
    for (size_t i = pl; i < r->url_len; i++)
        require(plain(r->url[i]));
    value_ok(b, r->len, r->auth, r->auth_len);
    value_ok(b, r->len, r->inm, r->inm_len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 4 * GCD_FAST_HEAD_MAX)
        return 0;
    const char *b = (const char *)data;
    gcd_fast_req r, p;
    gcd_fast_parse_result v = gcd_fast_parse(b, size, &r);
    if (v == GCD_FAST_OK) {
        check_ok(b, size, &r);
        for (size_t k = 1; k < r.len; k++)
            require(gcd_fast_parse(b, k, &p) == GCD_FAST_MORE);
        require(gcd_fast_parse(b, r.len, &p) == GCD_FAST_OK && p.len == r.len);
    } else if (v == GCD_FAST_MORE) {
        for (size_t k = 1; k < size; k++)
            require(gcd_fast_parse(b, k, &p) == GCD_FAST_MORE);
    } else {
        require(v == GCD_FAST_OTHER);
    }
    return 0;
}
