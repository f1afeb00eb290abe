/*
 * multipart.h: a parser of multipart/form-data bodies (RFC 7578 over RFC 2046), the way clients
 * send an image and its request together. The parts point into the body (no copies); anything
 * malformed is refused with one sentence that says what and where, never guessed at. Pure
 * functions: no MHD, no library calls (tests/unit/test_gencached_multipart.c).
 */
#ifndef GENCACHED_MULTIPART_H
#define GENCACHED_MULTIPART_H

#include <stdbool.h>
#include <stddef.h>

#define GCD_MULTIPART_MAX_PARTS 8 /* a form with more parts is refused */
#define GCD_MULTIPART_NAME_MAX  64

/* One part of a form. Pointers point into the body given to gcd_multipart_parse(). */
typedef struct gcd_part {
    char name[GCD_MULTIPART_NAME_MAX + 1]; /* Content-Disposition's name */
    bool has_filename;                     /* Content-Disposition named a filename */
    char content_type[128];                /* "" when the part has none */
    const char *data;
    size_t len;
} gcd_part;

/* True when a Content-Type header value is multipart/form-data (any case, any parameters). */
bool gcd_multipart_is_form(const char *content_type);

/* Splits body (len bytes) sent with Content-Type content_type into at most
 * GCD_MULTIPART_MAX_PARTS parts, in order. Refused: a content type that is not
 * multipart/form-data or lacks a boundary (or has one longer than 70 characters or with bytes RFC
 * 2046 forbids), a body that does not start with the boundary (a preamble is allowed), a part
 * whose header block does not end, a header line without a colon, a part without
 * Content-Disposition: form-data and a quoted name (1-64 printable characters), two parts of
 * one name, more parts than allowed, and a body whose closing boundary is missing. Returns 0, or
 * -1 with a message in err (err_size bytes, NUL-terminated). Thread-safety: safe. */
int gcd_multipart_parse(const char *content_type, const char *body, size_t len, gcd_part *parts,
                        size_t *n_parts, char *err, size_t err_size);

/* The part named name, or NULL. */
const gcd_part *gcd_multipart_find(const gcd_part *parts, size_t n, const char *name);

#endif
