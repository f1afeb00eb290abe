/*
 * multipart.c: multipart/form-data bodies. A body is "--BOUNDARY" CRLF, then per part a header
 * block ending in an empty line and the part's bytes, each part closed by CRLF "--BOUNDARY",
 * the last boundary followed by "--". The bytes of a part are found by searching for the next
 * CRLF "--BOUNDARY", which RFC 2046 guarantees a sender never lets appear inside a part; nothing
 * is copied, and a body that ends before its closing boundary is refused as truncated.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "multipart.h"

#define BOUNDARY_MAX 70

static int fail(char *err, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t size, const char *fmt, ...)
{
    if (err && size) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, size, fmt, ap);
        va_end(ap);
    }
    return -1;
}

bool gcd_multipart_is_form(const char *ct)
{
    if (!ct)
        return false;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    static const char type[] = "multipart/form-data";
    size_t n = sizeof type - 1;
    return strncasecmp(ct, type, n) == 0 &&
           (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ' || ct[n] == '\t');
}

/* RFC 2046's bchars: digits, letters and '()+_,-./:=? and space (not last). */
static bool bchar(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           strchr("'()+_,-./:=? ", c) != NULL;
}

/* The value of parameter `name` in a header value's parameters (after its first ';'), unquoted,
 * into out. Returns false when absent, malformed or too long. */
static bool param(const char *v, const char *name, char *out, size_t size)
{
    size_t nlen = strlen(name);
    for (const char *p = strchr(v, ';'); p; p = strchr(p, ';')) {
        p++;
        while (*p == ' ' || *p == '\t')
            p++;
        if (strncasecmp(p, name, nlen) != 0 || p[nlen] != '=')
            continue;
        p += nlen + 1;
        size_t n = 0;
        if (*p == '"') {
            for (p++; *p && *p != '"'; p++) {
                if (*p == '\\' && p[1])
                    p++;
                if (n + 1 >= size)
                    return false;
                out[n++] = *p;
            }
            if (*p != '"')
                return false;
        } else {
            for (; *p && *p != ';' && *p != ' ' && *p != '\t'; p++) {
                if (n + 1 >= size)
                    return false;
                out[n++] = *p;
            }
        }
        out[n] = '\0';
        return true;
    }
    return false;
}

/* Finds needle (m bytes) in hay (n bytes). */
static const char *find(const char *hay, size_t n, const char *needle, size_t m)
{
    if (m == 0 || n < m)
        return NULL;
    for (const char *p = hay, *end = hay + n - m; p <= end;) {
        const char *q = memchr(p, needle[0], (size_t)(end - p) + 1);
        if (!q)
            return NULL;
        if (memcmp(q, needle, m) == 0)
            return q;
        p = q + 1;
    }
    return NULL;
}

/* Reads one part's header block [h, end) into *part. */
static int part_headers(const char *h, const char *end, gcd_part *part, size_t index, char *err,
                        size_t esize)
{
    bool disposition = false;
    while (h < end) {
        const char *eol = find(h, (size_t)(end - h), "\r\n", 2);
        size_t n = eol ? (size_t)(eol - h) : (size_t)(end - h);
        char line[512];
        if (n >= sizeof line)
            return fail(err, esize, "part %zu: a header line longer than %zu bytes", index + 1,
                        sizeof line - 1);
        memcpy(line, h, n);
        line[n] = '\0';
        if (memchr(h, '\0', n))
            return fail(err, esize, "part %zu: a NUL byte in its headers", index + 1);
        char *colon = strchr(line, ':');
        if (!colon)
            return fail(err, esize, "part %zu: a header line without ':'", index + 1);
        *colon = '\0';
        const char *v = colon + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        if (strcasecmp(line, "Content-Disposition") == 0) {
            if (strncasecmp(v, "form-data", 9) != 0 || (v[9] && v[9] != ';' && v[9] != ' '))
                return fail(err, esize, "part %zu: Content-Disposition is not form-data",
                            index + 1);
            if (!param(v, "name", part->name, sizeof part->name) || !part->name[0])
                return fail(err, esize,
                            "part %zu: Content-Disposition without a name of 1-%d "
                            "characters",
                            index + 1, GCD_MULTIPART_NAME_MAX);
            char fname[256];
            part->has_filename = param(v, "filename", fname, sizeof fname);
            disposition = true;
        } else if (strcasecmp(line, "Content-Type") == 0) {
            snprintf(part->content_type, sizeof part->content_type, "%s", v);
        }
        h = eol ? eol + 2 : end;
    }
    if (!disposition)
        return fail(err, esize, "part %zu: no Content-Disposition: form-data; name=...", index + 1);
    for (const char *c = part->name; *c; c++)
        if ((unsigned char)*c < 0x20 || (unsigned char)*c > 0x7e)
            return fail(err, esize, "part %zu: its name has a control or non-ASCII byte",
                        index + 1);
    return 0;
}

int gcd_multipart_parse(const char *content_type, const char *body, size_t len, gcd_part *parts,
                        size_t *n_parts, char *err, size_t esize)
{
    *n_parts = 0;
    if (!gcd_multipart_is_form(content_type))
        return fail(err, esize, "the body is not multipart/form-data");
    char boundary[BOUNDARY_MAX + 2];
    if (!param(content_type, "boundary", boundary, sizeof boundary) || !boundary[0] ||
        strlen(boundary) > BOUNDARY_MAX)
        return fail(err, esize, "multipart/form-data needs a boundary of 1-%d characters",
                    BOUNDARY_MAX);
    size_t blen = strlen(boundary);
    for (size_t i = 0; i < blen; i++)
        if (!bchar(boundary[i]) || (i == blen - 1 && boundary[i] == ' '))
            return fail(err, esize, "the boundary has a character RFC 2046 does not allow");
    char delim[BOUNDARY_MAX + 5]; /* CRLF "--" boundary */
    int dlen = snprintf(delim, sizeof delim, "\r\n--%s", boundary);
    if (!body)
        body = "";
    const char *end = body + len;
    /* The first delimiter may open the body (no CRLF before it) or follow a preamble. */
    const char *p;
    if (len >= (size_t)dlen - 2 && memcmp(body, delim + 2, (size_t)dlen - 2) == 0)
        p = body + dlen - 2;
    else if ((p = find(body, len, delim, (size_t)dlen)) != NULL)
        p += dlen;
    else
        return fail(err, esize, "the body does not contain the boundary");
    for (size_t i = 0;; i++) {
        /* After a delimiter: "--" closes the body, else optional white space and CRLF. */
        if (end - p >= 2 && p[0] == '-' && p[1] == '-') {
            if (i == 0)
                return fail(err, esize, "the form has no parts");
            *n_parts = i;
            return 0;
        }
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        if (end - p < 2 || p[0] != '\r' || p[1] != '\n')
            return fail(err, esize, "part %zu: the boundary line does not end in CRLF", i + 1);
        p += 2;
        if (i == GCD_MULTIPART_MAX_PARTS)
            return fail(err, esize, "the form has more than %d parts", GCD_MULTIPART_MAX_PARTS);
        gcd_part *part = &parts[i];
        memset(part, 0, sizeof *part);
        const char *hend;
        if (end - p >= 2 && p[0] == '\r' && p[1] == '\n')
            hend = p; /* no headers at all: refused below for lack of a name */
        else if ((hend = find(p, (size_t)(end - p), "\r\n\r\n", 4)) == NULL)
            return fail(err, esize, "part %zu: its header block does not end", i + 1);
        if (part_headers(p, hend, part, i, err, esize) != 0)
            return -1;
        p = hend + (hend == p ? 2 : 4);
        const char *next = find(p, (size_t)(end - p), delim, (size_t)dlen);
        if (!next)
            return fail(err, esize, "part %zu ('%s'): the body ends before the closing boundary",
                        i + 1, part->name);
        part->data = p;
        part->len = (size_t)(next - p);
        for (size_t j = 0; j < i; j++)
            if (strcmp(parts[j].name, part->name) == 0)
                return fail(err, esize, "two parts are named '%s'", part->name);
        p = next + dlen;
    }
}

const gcd_part *gcd_multipart_find(const gcd_part *parts, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(parts[i].name, name) == 0)
            return &parts[i];
    return NULL;
}
