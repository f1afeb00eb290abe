/*
 * fastparse.h: the reader of the simple entry GETs the daemon answers without libmicrohttpd
 * (fastget.c; docs/internals/fastget.md). Socket-free; every declaration has one contract.
 */
#ifndef GENCACHED_FASTPARSE_H
#define GENCACHED_FASTPARSE_H

#include <stdbool.h>
#include <stddef.h>

/* The longest head read here; a longer one is libmicrohttpd's (which takes up to ~15 KiB). A GET
 * of an entry with a token and the usual client headers is 200-400 bytes. */
#define GCD_FAST_HEAD_MAX 2048
/* Header values at least this long (a token, an If-None-Match list) are libmicrohttpd's. */
#define GCD_FAST_VALUE_MAX 512
/* The path every request read here starts with; the key follows it. */
#define GCD_FAST_PREFIX "/v1/entries/"

/* A request the loop answers: pointers into the bytes given to gcd_fast_parse(). */
typedef struct gcd_fast_req {
    size_t len;      /* bytes of its head (it has no body) */
    bool head;       /* HEAD, else GET */
    const char *url; /* GCD_FAST_PREFIX and the key: plain characters, no query, no escapes */
    size_t url_len;
    const char *auth; /* Authorization's value (trimmed), or NULL */
    size_t auth_len;  /* below GCD_FAST_VALUE_MAX */
    const char *inm;  /* If-None-Match's value (trimmed), or NULL */
    size_t inm_len;   /* below GCD_FAST_VALUE_MAX */
    bool close;       /* Connection: close */
} gcd_fast_req;

typedef enum gcd_fast_parse_result {
    GCD_FAST_MORE,  /* the bytes so far are a prefix of a request read here: wait for more */
    GCD_FAST_OTHER, /* anything else: libmicrohttpd's */
    GCD_FAST_OK,    /* *r describes the request at the start of the bytes */
} gcd_fast_parse_result;

/* Reads the request at the start of b (n bytes, n > 0): a GET or HEAD of GCD_FAST_PREFIX<key>
 * over HTTP/1.1 with CRLF line ends, a Host header, and no header but Host, Authorization,
 * If-None-Match, Connection (keep-alive or close), Accept, Accept-Encoding, Accept-Language,
 * Accept-Charset and User-Agent, each at most once, with values of printable ASCII. The verdict
 * on a prefix of a request that is OK is MORE; a prefix that is OTHER stays OTHER however it goes
 * on. Thread-safety: safe. */
gcd_fast_parse_result gcd_fast_parse(const char *b, size_t n, gcd_fast_req *r);

#endif
