/*
 * json.h: a request's JSON read into a flat tree that the C code of src/key/ walks. The parsing
 * is simdjson's (json.cpp, a small C++ shim over its On Demand API): the text is validated as
 * RFC 8259 JSON (UTF-8 included), strings are unescaped once, and every number keeps the literal
 * it was written as, which key derivation encodes (DESIGN.md section 2). Nothing here is API.
 */
#ifndef GENCACHE_KEY_JSON_H
#define GENCACHE_KEY_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "gencache.h"

#ifdef __cplusplus
extern "C" {
#endif

#define GENCACHE__JSON_MAX_DEPTH 1024 /* nested arrays and objects; deeper is GENCACHE_ELIMIT */

typedef enum gencache__jtype {
    GENCACHE__J_NULL,
    GENCACHE__J_FALSE,
    GENCACHE__J_TRUE,
    GENCACHE__J_NUMBER,
    GENCACHE__J_STRING,
    GENCACHE__J_ARRAY,
    GENCACHE__J_OBJECT,
} gencache__jtype;

/* One value. The values of a document are stored depth first: an array's or object's members
 * follow it, and `end` skips a value with everything inside it. */
typedef struct gencache__jnode {
    uint32_t type;               /* gencache__jtype */
    uint32_t name_off, name_len; /* an object member's name, in strings (NUL-terminated) */
    uint32_t off, len;           /* string: its bytes in strings (NUL-terminated); number: its
                                    literal in the parsed text */
    uint32_t count;              /* array, object: how many members */
    uint32_t end;                /* index of the node after this value and its members */
    double num;                  /* number: the literal's value (correctly rounded) */
} gencache__jnode;

typedef struct gencache__json {
    gencache__jnode *nodes; /* nodes[0] is the root */
    size_t n_nodes, cap_nodes;
    char *strings; /* unescaped names and strings, each followed by a NUL */
    size_t strings_len;
} gencache__json;

/* Parses text[0..len) into *doc (which the caller frees with gencache__json_free(), also after
 * a failure). Strings and names containing U+0000 are refused, and so are duplicate names in an
 * object. Returns GENCACHE_OK, GENCACHE_EPARSE (not JSON, or a root that is not an object),
 * GENCACHE_ELIMIT (a number beyond binary64, nesting deeper than GENCACHE__JSON_MAX_DEPTH),
 * GENCACHE_ENOMEM; err (may be NULL) gets a sentence for the first two. */
int gencache__json_parse(const char *text, size_t len, gencache__json *doc, char *err,
                         size_t err_size);
void gencache__json_free(gencache__json *doc);

/* The member of object node `obj` named name, or -1. */
long gencache__json_member(const gencache__json *doc, size_t obj, const char *name);

#ifdef __cplusplus
}
#endif

#endif
