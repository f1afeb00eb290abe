/*
 * key.h: what the files of src/key/ share. A request is parsed once into a sorted list of
 * (flattened name, canonical value encoding) pairs; a layer's key is then the SHA-256 of the
 * pairs its recipe selects. Encodings are computed at parse time, so key derivation only selects,
 * concatenates and hashes. Nothing here is API.
 */
#ifndef GENCACHE_KEY_H
#define GENCACHE_KEY_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "internal.h"

#define GENCACHE__KEY_MAX_FIELDS_PER_LAYER 64
#define GENCACHE__KEY_FIELD_NAME_MAX       64
#define GENCACHE__KEY_MAX_SYNONYMS         4096
#define GENCACHE__KEY_TENANT_MAX           256

/* ---- growable byte buffer ------------------------------------------------------------------ */

typedef struct gencache__buf {
    char *data;
    size_t len, cap;
    bool failed;   /* an allocation failed; every later append is a no-op */
    bool borrowed; /* data is the caller's storage (a stack array): never freed or realloc'd */
} gencache__buf;

/* A buffer that starts in the caller's storage and moves to the heap if it outgrows it. */
static inline gencache__buf gencache__buf_on(char *storage, size_t size)
{
    gencache__buf b = {storage, 0, size, false, true};
    return b;
}

/* Makes room for extra more bytes; false (and the buffer marked failed) when it cannot. */
bool gencache__buf_reserve(gencache__buf *b, size_t extra);

static inline void gencache__buf_append(gencache__buf *b, const void *data, size_t n)
{
    if (n == 0 || (n > b->cap - b->len && !gencache__buf_reserve(b, n)) || b->failed)
        return;
    memcpy(b->data + b->len, data, n);
    b->len += n;
}

static inline void gencache__buf_putc(gencache__buf *b, char c)
{
    if ((b->len == b->cap && !gencache__buf_reserve(b, 1)) || b->failed)
        return;
    b->data[b->len++] = c;
}
void gencache__buf_printf(gencache__buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Appends the decimal digits of v (printf is a large share of a request's parse time). */
void gencache__buf_put_u64(gencache__buf *b, uint64_t v);
/* Makes sure the buffer ends in a NUL that is not counted in len. Returns false after an
 * allocation failure. */
bool gencache__buf_terminate(gencache__buf *b);
void gencache__buf_free(gencache__buf *b);

/* ---- UTF-8 and normalization --------------------------------------------------------------- */

/* True when s[0..len) is well-formed UTF-8 without NUL bytes. */
bool gencache__utf8_valid(const char *s, size_t len);

/* Synonyms for the aggressive mode, sorted by `from` (both already normalized). */
typedef struct gencache__synonym {
    char *from;
    char *to;
} gencache__synonym;

/* Normalizes text with mode into out (appended; not terminated). Synonyms may be NULL/0.
 * Returns GENCACHE_OK, GENCACHE_EPARSE (invalid UTF-8), GENCACHE_EINVAL (mode),
 * GENCACHE_ENOMEM. */
int gencache__key_normalize(gencache_norm_mode mode, const char *in, size_t len,
                            const gencache__synonym *syn, size_t n_syn, gencache__buf *out);

/* The aggressive pipeline alone (input already validated). */
int gencache__key_aggressive(const char *in, size_t len, const gencache__synonym *syn, size_t n_syn,
                             gencache__buf *out);

/* Decodes HTML character references (named ones from the HTML 4 table, and numeric ones) into
 * out. Unknown or malformed references are copied as they are. */
void gencache__key_html_unescape(const char *in, size_t len, gencache__buf *out);

/* The American spelling of a British word (lowercase, NUL-terminated), or NULL. */
const char *gencache__key_american(const char *word, size_t len);
/* The embedded British -> American table, sorted by British spelling (tests compare it with
 * data/british_american.tsv). */
size_t gencache__key_spelling_count(void);
void gencache__key_spelling_get(size_t i, const char **british, const char **american);

/* ---- keyspace ------------------------------------------------------------------------------ */

typedef struct gencache__recipe_field {
    char *name; /* without the trailing '!' */
    size_t len;
    bool required; /* written with a trailing '!' */
    bool all;      /* "*": every request parameter */
} gencache__recipe_field;

/* One layer of the registry (DESIGN.md section 2): its key recipe and everything else a layer
 * is configured with. The cache reads its TTL and write policy from here (src/cache.c), key
 * derivation its fields and scope. */
typedef struct gencache__layer_recipe {
    char name[GENCACHE__LAYER_NAME_MAX + 1];
    gencache__recipe_field *fields; /* n_fields; 0: no recipe (keys stored, never derived) */
    size_t n_fields;
    char **specs; /* the fields as defined ("image!"), for gencache_layer_get() */
    gencache_scope scope;
    bool seeded;     /* depends on the seed: "*" or "seed" among the fields */
    uint64_t ttl_ms; /* 0: no expiry */
    bool sliding;    /* a hit pushes the expiry to now + ttl_ms */
    bool write_through;
    bool shared; /* entries may go to the Redis tier */
    int mode;    /* gencache_norm_mode, or -1: the model's */
    gencache_eviction eviction;
    gencache_image_match_mode image_match;
} gencache__layer_recipe;

typedef struct gencache__model_mode {
    char *model;
    gencache_norm_mode mode;
} gencache__model_mode;

struct gencache_keyspace {
    _Atomic unsigned refs;
    gencache *cache; /* the cache whose registry this is; NULL once it closed, or for none */
    gencache__layer_recipe layers[GENCACHE_MAX_LAYERS];
    size_t n_layers;
    gencache_norm_mode default_mode;
    gencache__model_mode *modes;
    size_t n_modes;
    gencache__synonym *synonyms;
    size_t n_synonyms;
};

/* The built-in default keyspace (never freed), for requests parsed without one. */
gencache_keyspace *gencache__keyspace_default(void);
gencache_keyspace *gencache__keyspace_retain(const gencache_keyspace *ks);
gencache_norm_mode gencache__keyspace_mode_for(const gencache_keyspace *ks, const char *model);
/* The layer's registry entry when it has a key recipe, else NULL. */
const gencache__layer_recipe *gencache__keyspace_find(const gencache_keyspace *ks,
                                                      const char *layer);

/* ---- the layer registry (layers.c) ---------------------------------------------------------- */

/* The registry entry of `layer` (with or without a recipe), or NULL. */
gencache__layer_recipe *gencache__registry_find(gencache_keyspace *ks, const char *layer);
/* Defines or redefines a layer from opts (a full-size copy, see gencache_layer_define()).
 * Returns the GENCACHE_* code of gencache_layer_define(). */
int gencache__registry_define(gencache_keyspace *ks, const gencache_layer_options *opts);
/* The registry entry as options (name and fields point into the entry). */
void gencache__registry_options(const gencache__layer_recipe *r, gencache_layer_options *o);
/* Fills a keyspace with the default layers of DESIGN.md section 2: the one table of them. */
int gencache__registry_defaults(gencache_keyspace *ks);
/* Frees what a registry entry owns. */
void gencache__registry_clear(gencache__layer_recipe *r);

/* ---- requests ------------------------------------------------------------------------------ */

enum {
    GENCACHE__KF_PARAM = 1u << 0,  /* a request parameter: enters "*" recipes */
    GENCACHE__KF_HIDDEN = 1u << 1, /* prompt text in tokens mode: enters no key */
};

typedef struct gencache__kfield {
    uint32_t name_off, name_len; /* into the request's buffer */
    uint32_t val_off, val_len;
    unsigned flags;
} gencache__kfield;

struct gencache_request {
    gencache_keyspace *ks; /* a reference */
    gencache_norm_mode mode;
    gencache__kfield *fields; /* sorted by name, bytewise */
    size_t n_fields;
    gencache__buf text; /* names and encodings */
    char *prompt;       /* normalized; NULL: none */
    char *model;        /* NULL: none */
    char *tenant;       /* NULL: none */
    bool has_seed;
    bool allow_random;
    bool any_seed;       /* "cache": "any_seed": a stored result of any seed may serve */
    bool similar_prompt; /* "cache": "similar_prompt": a near-duplicate prompt may serve */
    bool has_image_sig;  /* image_sig holds the input image's signature */
    gencache_image_sig image_sig;
    char image_digest[GENCACHE_DIGEST_MAX]; /* "" when the request has no image */
    char seed_text[24]; /* the seed's decimal digits as written; "" without one */
};

/* A 64-bit hash of the layer's canonical document with every line of the field `skip` left out
 * ("image" or "seed"): two requests with one hash differ at most in that field. The seed rule
 * (a seeded recipe needs a seed) is not applied when skip is "seed". Returns the codes of
 * gencache_request_key(). */
int gencache__request_context(const gencache_request *req, const char *layer, const char *skip,
                              uint64_t *out);

/* Appends the encoding of a JSON number literal (DESIGN.md section 2) to out.
 * Returns GENCACHE_OK, GENCACHE_ELIMIT (integer literal beyond 64 bits), GENCACHE_EINVAL
 * (not finite). */
int gencache__key_encode_number(const char *lit, size_t len, gencache__buf *out);
/* The same for a literal already converted (value: its correctly rounded binary64, which the
 * JSON reader computed while validating it), sparing a second conversion. */
int gencache__key_encode_number_parsed(const char *lit, size_t len, double value,
                                       gencache__buf *out);

#endif
