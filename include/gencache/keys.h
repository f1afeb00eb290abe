/*
 * gencache/keys.h: part of the public API of libgencache: canonical requests, prompt normalization
 * and keys (DESIGN.md section 2). Include <gencache.h>, which includes this file; it is not meant
 * to be included alone.
 */
#ifndef GENCACHE_API_KEYS_H
#define GENCACHE_API_KEYS_H

#ifndef GENCACHE_H
#error "include <gencache.h>, not <gencache/keys.h>"
#endif

/* Prompt normalization modes (DESIGN.md section 2). The lossless modes (exact, safe, clip, tokens)
 * only merge prompts that every text encoder in use cleans to the same string; aggressive is an
 * opt-in, lossy semantic mode. */
typedef enum gencache_norm_mode {
    GENCACHE_NORM_EXACT = 0,      /* the bytes as given (UTF-8 validated) */
    GENCACHE_NORM_SAFE = 1,       /* printable-ASCII prompts without '&': white space collapsed */
    GENCACHE_NORM_CLIP = 2,       /* safe, and those prompts lowercased (A-Z only) */
    GENCACHE_NORM_TOKENS = 3,     /* keys take prompt_tokens + tokenizer instead of the text */
    GENCACHE_NORM_AGGRESSIVE = 4, /* NFKC, entities, case folding, punctuation, spellings */
} gencache_norm_mode;

/* Parses a mode name ("exact", "safe", "clip", "tokens", "aggressive") into *out.
 * Returns GENCACHE_OK, or GENCACHE_EINVAL for NULL arguments or an unknown name (*out is then
 * GENCACHE_NORM_SAFE, the default). Thread-safety: safe. */
GENCACHE_API int gencache_norm_mode_parse(const char *name, gencache_norm_mode *out);

/* The mode's name ("safe"); NULL for a value outside the enum. The string is static.
 * Thread-safety: safe. */
GENCACHE_API const char *gencache_norm_mode_name(gencache_norm_mode mode);

/* Normalizes len bytes of UTF-8 text with `mode` (no configured synonyms; see
 * gencache_keyspace_add_synonym()). GENCACHE_NORM_TOKENS normalizes nothing: it returns the text
 * as given, like exact (the tokens mode keys on token ids, not on text).
 * On success *out is a new NUL-terminated string of *out_len bytes (out_len may be NULL); free it
 * with gencache_free(). On failure *out is NULL and *out_len 0.
 * Returns GENCACHE_OK, GENCACHE_EINVAL (NULL in with len > 0, NULL out, unknown mode),
 * GENCACHE_EPARSE (invalid UTF-8: overlong forms, surrogates, code points above U+10FFFF, or a
 * NUL byte), GENCACHE_ENOMEM. Thread-safety: safe. */
GENCACHE_API int gencache_normalize(gencache_norm_mode mode, const char *in, size_t len, char **out,
                                    size_t *out_len);

/* Frees memory the library handed out (strings from gencache_normalize(),
 * gencache_request_canonical()). gencache_free(NULL) does nothing. Thread-safety: safe. */
GENCACHE_API void gencache_free(void *ptr);

/* A keyspace: the layer recipes (which request fields enter each layer's key, and its scope) and
 * the prompt normalization mode per model. Requests parsed with a keyspace hold a reference to it,
 * so gencache_keyspace_free() may be called while they live. */
typedef struct gencache_keyspace gencache_keyspace;

/* Creates a keyspace with the defaults of DESIGN.md section 2: layers result ("*": every request
 * parameter, tenant scope), image_latent (model, image!, width, height, crop, rotation; global),
 * text_embedding (model, prompt, negative_prompt; global), condition (model, prompt,
 * negative_prompt, image, width, height; tenant) and session (name; session scope), and mode
 * safe for every model. On success *out is a new keyspace; free it with
 * gencache_keyspace_free(). Returns GENCACHE_OK, GENCACHE_EINVAL (NULL out), GENCACHE_ENOMEM.
 * Thread-safety: safe. */
GENCACHE_API int gencache_keyspace_new(gencache_keyspace **out);

/* The keyspace of an open cache: a view of the cache's layer registry (gencache_layer_define()
 * and this keyspace's gencache_keyspace_set_layer() change the same layers) plus its
 * normalization modes and synonyms. On success *out is a new reference; drop it with
 * gencache_keyspace_free() (it may outlive the cache: it then keeps the recipes it had).
 * Returns GENCACHE_OK, GENCACHE_EINVAL (NULL argument). Thread-safety: safe. */
GENCACHE_API int gencache_keyspace_from_cache(gencache *cache, gencache_keyspace **out);

/* Drops the caller's reference; the keyspace is freed when no request holds it any more.
 * gencache_keyspace_free(NULL) does nothing. Thread-safety: safe. */
GENCACHE_API void gencache_keyspace_free(gencache_keyspace *ks);

/* Defines a layer's recipe, or replaces an existing one (its TTL and storage options stay; a new
 * layer gets gencache_layer_options_init()'s, and on a cache's keyspace becomes a layer of
 * that cache). `layer` is [a-z0-9_], 1-32 bytes; at most
 * GENCACHE_MAX_LAYERS layers. Each field is a request field name ("model", "width", "params" for
 * every params.* field, "params.lora" for one), "*" for every request parameter (what result
 * uses), and may end in '!' to mark it required: a request without it has no key in this layer
 * (GENCACHE_EUNCACHEABLE). Scope TENANT adds the field `tenant` to the key; scope SESSION adds
 * `session` and requires it. Field names are 1-64 bytes of printable ASCII without '=', '*', '!'
 * or empty dotted parts. The strings are copied. Returns GENCACHE_OK, GENCACHE_EINVAL (bad name,
 * field or scope; n_fields 0), GENCACHE_ELIMIT (too many layers or fields), GENCACHE_ENOMEM.
 * Thread-safety: init only (before requests are parsed with this keyspace). */
GENCACHE_API int gencache_keyspace_set_layer(gencache_keyspace *ks, const char *layer,
                                             const char *const *fields, size_t n_fields,
                                             gencache_scope scope);

/* Sets the normalization mode for requests whose "model" equals `model`, or the default for
 * every other request when model is NULL. The name is copied. Returns GENCACHE_OK,
 * GENCACHE_EINVAL (bad mode), GENCACHE_ENOMEM. Thread-safety: init only. */
GENCACHE_API int gencache_keyspace_set_mode(gencache_keyspace *ks, const char *model,
                                            gencache_norm_mode mode);

/* Adds a synonym for the aggressive mode: the word `from` is replaced by `to` after the other
 * aggressive steps (both are normalized aggressively first; `from` must then be one word, `to`
 * one or more). A later synonym for the same word replaces the earlier one. Returns GENCACHE_OK,
 * GENCACHE_EINVAL (NULL, empty, invalid UTF-8, `from` not one word), GENCACHE_ELIMIT (more than
 * 4096 synonyms), GENCACHE_ENOMEM. Thread-safety: init only. */
GENCACHE_API int gencache_keyspace_add_synonym(gencache_keyspace *ks, const char *from,
                                               const char *to);

/* The number of layers, and the name of layer i (0-based, definition order; NULL when i is out
 * of range). The name is owned by the keyspace. Thread-safety: safe. */
GENCACHE_API size_t gencache_keyspace_layer_count(const gencache_keyspace *ks);
GENCACHE_API const char *gencache_keyspace_layer_name(const gencache_keyspace *ks, size_t i);

/* A parsed request: its fields encoded canonically, the prompt normalized. Immutable after
 * parsing except for its tenant. */
typedef struct gencache_request gencache_request;

enum { GENCACHE_REQUEST_TRUST_TENANT = 1u << 0 }; /* honour the body's "tenant" (CLI, in-process) */

#define GENCACHE_REQUEST_MAX_BYTES (1u << 20) /* longest request JSON accepted */
#define GENCACHE_ERRMSG_MAX        256        /* error message buffer that always suffices */

/* Parses request JSON (DESIGN.md section 2) with keyspace ks (NULL: the built-in defaults).
 * Known fields are type-checked: model, scheduler, tokenizer, session, name, prompt,
 * negative_prompt strings; seed an integer; steps, frames, width, height non-negative integers;
 * guidance, fps, rotation numbers; image {"path": FILE} or {"digest": "sha256:<64 lowercase
 * hex>"}, optionally with the image's signature for perceptual lookups: "phash" and "dhash" (16
 * lowercase hex digits each), "width" and "height" (1-1000000 pixels), all four, "phash" alone,
 * or none, never part of a key (gencache/reuse.h); params an object; prompt_tokens,
 * negative_prompt_tokens arrays of integers; cache "default", "allow_random", "any_seed" or
 * "similar_prompt" (gencache_lookup()). Other fields are request parameters of any JSON type (they
 * enter result's key). Objects are flattened to dotted names (an empty object adds no field); names
 * are 1-64 printable ASCII characters other than space, '.' and '='; null is the same as an
 * absent field. Image {"path": ...} is resolved to its pixel digest through
 * gencache_image_digest_file(). The body's "tenant" is ignored unless flags has
 * GENCACHE_REQUEST_TRUST_TENANT. In tokens mode, a prompt needs its prompt_tokens and the
 * tokens need a tokenizer. json is borrowed; it need not be NUL-terminated.
 * On success *out is a new request; free it with gencache_request_free().
 * Returns GENCACHE_OK, GENCACHE_EINVAL (NULL arguments; a field of the wrong type or range; an
 * object or null inside an array; a bad name; a malformed digest), GENCACHE_EPARSE (not JSON,
 * not an object, invalid UTF-8, a \u0000 escape, duplicate names), GENCACHE_ELIMIT (longer than
 * GENCACHE_REQUEST_MAX_BYTES, nested deeper than 8 levels, more than 1024 fields, an integer
 * beyond 64 bits, a number beyond the binary64 range), the errors of
 * gencache_image_digest_file() for an image path, GENCACHE_ENOMEM.
 * Thread-safety: safe. */
GENCACHE_API int gencache_request_parse(const gencache_keyspace *ks, const char *json, size_t len,
                                        unsigned flags, gencache_request **out);

/* gencache_request_parse(), and on failure a one-line English message saying what is wrong and
 * where (e.g. "field 'steps': expected a non-negative integer") into err (NUL-terminated,
 * truncated to err_size; err may be NULL). Thread-safety: safe. */
GENCACHE_API int gencache_request_parse_ex(const gencache_keyspace *ks, const char *json,
                                           size_t len, unsigned flags, gencache_request **out,
                                           char *err, size_t err_size);

/* Sets the request's tenant (copied; NULL clears it). The daemon calls this with the tenant of the
 * caller's token. Returns GENCACHE_OK, GENCACHE_EINVAL (NULL req; empty, longer than 256 bytes
 * or invalid UTF-8 tenant), GENCACHE_ENOMEM. Thread-safety: one thread at a time per request. */
GENCACHE_API int gencache_request_set_tenant(gencache_request *req, const char *tenant);

/* Writes "<layer>/<64 hex>" and a NUL into out (GENCACHE_KEY_MAX bytes suffice).
 * Returns GENCACHE_OK, GENCACHE_EINVAL (NULL argument, out_size too small),
 * GENCACHE_ENOTFOUND (unknown layer), GENCACHE_EUNCACHEABLE (a recipe that depends on the seed,
 * such as result's, for a request without seed and without "cache": "allow_random"; or a
 * required field missing, such as image_latent's image or a session-scoped layer's session).
 * On failure out (when out_size > 0) holds "". Thread-safety: safe (the request is read only). */
GENCACHE_API int gencache_request_key(const gencache_request *req, const char *layer, char *out,
                                      size_t out_size);

/* Why gencache_request_key() answers GENCACHE_EUNCACHEABLE for this layer: a static English
 * sentence, or NULL when the request has a key in it (or the layer is unknown).
 * Thread-safety: safe. */
GENCACHE_API const char *gencache_request_uncacheable_reason(const gencache_request *req,
                                                             const char *layer);

/* The canonical document of a layer: "gencache-key-v1\n<layer>\n" and one "name=VALUE\n" line per
 * field, the exact bytes whose SHA-256 is the key. *out (NUL-terminated, *out_len bytes; out_len
 * may be NULL) is freed with gencache_free(). Returns what gencache_request_key() returns, and
 * GENCACHE_ENOMEM. Thread-safety: safe. */
GENCACHE_API int gencache_request_canonical(const gencache_request *req, const char *layer,
                                            char **out, size_t *out_len);

/* The normalized prompt (in tokens mode: the prompt as given), or NULL when the request has none.
 * Owned by the request. Thread-safety: safe. */
GENCACHE_API const char *gencache_request_prompt(const gencache_request *req);

/* The request's "model", or NULL. Owned by the request. Thread-safety: safe. */
GENCACHE_API const char *gencache_request_model(const gencache_request *req);

/* The normalization mode the request was parsed with (its model's). Thread-safety: safe. */
GENCACHE_API gencache_norm_mode gencache_request_mode(const gencache_request *req);

/* Frees a request. gencache_request_free(NULL) does nothing. Thread-safety: one thread at a
 * time per request. */
GENCACHE_API void gencache_request_free(gencache_request *req);

#define GENCACHE_KEY_MAX 98 /* 32-byte layer name + '/' + 64 hex + NUL */

#endif /* GENCACHE_API_KEYS_H */
