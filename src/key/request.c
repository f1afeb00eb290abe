/*
 * request.c: a request's JSON (read by json.cpp, simdjson) into the sorted field list that keys
 * are derived from. Known fields are type-checked; every other field is a request parameter of
 * any JSON type; objects are flattened to dotted names. Numbers are encoded from the literal text
 * the reader keeps for each (a double would lose 64-bit integers and the integer/real
 * distinction).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "key.h"

#define MAX_DEPTH    8 /* nested objects and arrays */
#define MAX_FIELDS   1024
#define NAME_MAX_LEN 64

typedef struct parse_ctx {
    const gencache_keyspace *ks;
    const char *json;
    size_t len;
    gencache__json doc;
    gencache_request *req;
    size_t cap_fields;
    char *err;
    size_t err_size;
    char path[(NAME_MAX_LEN + 1) * (MAX_DEPTH + 2)]; /* the dotted name being parsed */
} parse_ctx;

/* Values are nodes of c->doc, named by index. */
static const gencache__jnode *node(const parse_ctx *c, size_t v)
{
    return &c->doc.nodes[v];
}

static gencache__jtype type_of(const parse_ctx *c, size_t v)
{
    return (gencache__jtype)c->doc.nodes[v].type;
}

static const char *str_of(const parse_ctx *c, size_t v)
{
    return c->doc.strings + c->doc.nodes[v].off;
}

static const char *name_of(const parse_ctx *c, size_t v)
{
    return c->doc.strings + c->doc.nodes[v].name_off;
}

/* Each member m of an array or object v, in document order. */
#define FOR_EACH_MEMBER(c, v, m) for (size_t m = (v) + 1; m < node(c, v)->end; m = node(c, m)->end)

static int fail(parse_ctx *c, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(parse_ctx *c, int rc, const char *fmt, ...)
{
    if (c->err && c->err_size > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->err, c->err_size, fmt, ap);
        va_end(ap);
    }
    return rc;
}

/* ---- encodings ----------------------------------------------------------------------------- */

static int encode_number(parse_ctx *c, size_t v, gencache__buf *out)
{
    const gencache__jnode *n = node(c, v);
    int rc = gencache__key_encode_number_parsed(c->json + n->off, n->len, n->num, out);
    if (rc == GENCACHE_ELIMIT)
        return fail(c, rc, "field '%s': integer %.*s does not fit in 64 bits", c->path,
                    (int)(n->len > 40 ? 40 : n->len), c->json + n->off);
    if (rc != GENCACHE_OK)
        return fail(c, rc, "field '%s': number %.*s is not finite", c->path,
                    (int)(n->len > 40 ? 40 : n->len), c->json + n->off);
    return GENCACHE_OK;
}

static void encode_string(const char *s, size_t n, gencache__buf *out)
{
    gencache__buf_append(out, "s:", 2);
    gencache__buf_put_u64(out, n);
    gencache__buf_putc(out, ':');
    gencache__buf_append(out, s, n);
}

static int encode_value(parse_ctx *c, size_t v, int depth, gencache__buf *out)
{
    if (depth > MAX_DEPTH)
        return fail(c, GENCACHE_ELIMIT, "field '%s': nested deeper than %d levels", c->path,
                    MAX_DEPTH);
    switch (type_of(c, v)) {
    case GENCACHE__J_STRING:
        encode_string(str_of(c, v), node(c, v)->len, out);
        return GENCACHE_OK;
    case GENCACHE__J_NUMBER:
        return encode_number(c, v, out);
    case GENCACHE__J_TRUE:
        gencache__buf_append(out, "b:true", 6);
        return GENCACHE_OK;
    case GENCACHE__J_FALSE:
        gencache__buf_append(out, "b:false", 7);
        return GENCACHE_OK;
    case GENCACHE__J_ARRAY: {
        gencache__buf_append(out, "a:", 2);
        gencache__buf_put_u64(out, node(c, v)->count);
        gencache__buf_putc(out, ':');
        FOR_EACH_MEMBER(c, v, e)
        {
            if (type_of(c, e) == GENCACHE__J_NULL)
                return fail(c, GENCACHE_EINVAL, "field '%s': null inside an array", c->path);
            if (type_of(c, e) == GENCACHE__J_OBJECT)
                return fail(c, GENCACHE_EINVAL, "field '%s': object inside an array", c->path);
            int rc = encode_value(c, e, depth + 1, out);
            if (rc != GENCACHE_OK)
                return rc;
            gencache__buf_putc(out, ';');
        }
        return GENCACHE_OK;
    }
    default:
        return fail(c, GENCACHE_EINVAL, "field '%s': unexpected JSON type", c->path);
    }
}

/* ---- fields -------------------------------------------------------------------------------- */

static int add_field(parse_ctx *c, const char *name, size_t name_len, const char *val,
                     size_t val_len, unsigned flags)
{
    gencache_request *r = c->req;
    if (r->n_fields == MAX_FIELDS)
        return fail(c, GENCACHE_ELIMIT, "more than %d fields", MAX_FIELDS);
    if (r->n_fields == c->cap_fields) {
        size_t cap = c->cap_fields ? c->cap_fields * 2 : 32;
        gencache__kfield *p = realloc(r->fields, cap * sizeof *p);
        if (!p)
            return GENCACHE_ENOMEM;
        r->fields = p;
        c->cap_fields = cap;
    }
    gencache__kfield *f = &r->fields[r->n_fields++];
    f->name_off = (uint32_t)r->text.len;
    f->name_len = (uint32_t)name_len;
    gencache__buf_append(&r->text, name, name_len);
    f->val_off = (uint32_t)r->text.len;
    f->val_len = (uint32_t)val_len;
    gencache__buf_append(&r->text, val, val_len);
    f->flags = flags;
    return r->text.failed ? GENCACHE_ENOMEM : GENCACHE_OK;
}

static bool name_ok(const char *k, size_t n)
{
    if (n == 0 || n > NAME_MAX_LEN)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)k[i];
        if (ch < 0x21 || ch > 0x7E || ch == '.' || ch == '=')
            return false;
    }
    return true;
}

/* Encodes v as the field c->path (objects are flattened below it). */
static int add_value(parse_ctx *c, size_t v, int depth, unsigned flags)
{
    if (type_of(c, v) == GENCACHE__J_NULL)
        return GENCACHE_OK;
    if (depth > MAX_DEPTH)
        return fail(c, GENCACHE_ELIMIT, "field '%s': nested deeper than %d levels", c->path,
                    MAX_DEPTH);
    if (type_of(c, v) == GENCACHE__J_OBJECT) {
        size_t base = strlen(c->path);
        FOR_EACH_MEMBER(c, v, m)
        {
            const char *k = name_of(c, m);
            size_t klen = node(c, m)->name_len;
            if (!name_ok(k, klen))
                return fail(c, GENCACHE_EINVAL,
                            "field '%s': member name '%.64s' must be 1-64 printable ASCII "
                            "characters without '.', '=' or spaces",
                            c->path, k);
            /* klen <= NAME_MAX_LEN, and depth <= MAX_DEPTH: it fits */
            c->path[base] = '.';
            memcpy(c->path + base + 1, k, klen + 1);
            int rc = add_value(c, m, depth + 1, flags);
            c->path[base] = '\0';
            if (rc != GENCACHE_OK)
                return rc;
        }
        return GENCACHE_OK;
    }
    char storage[512];
    gencache__buf val = gencache__buf_on(storage, sizeof storage);
    int rc = encode_value(c, v, depth, &val);
    if (rc == GENCACHE_OK)
        rc = val.failed ? GENCACHE_ENOMEM
                        : add_field(c, c->path, strlen(c->path), val.data, val.len, flags);
    gencache__buf_free(&val);
    return rc;
}

static bool is_hex_digest(const char *s)
{
    if (strncmp(s, "sha256:", 7) != 0 || strlen(s) != 7 + 64)
        return false;
    for (size_t i = 7; i < 7 + 64; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

/* The pixel digest of an image file, through the image module when it is built in. */
static int image_digest_of_file(const char *path, char *out, size_t out_size)
{
#ifdef GENCACHE_DIGEST_MAX
    char d[GENCACHE_DIGEST_MAX];
    int rc = gencache_image_digest_file(path, d);
    if (rc == GENCACHE_OK)
        snprintf(out, out_size, "%s", d);
    return rc;
#else
    (void)path, (void)out, (void)out_size;
    return GENCACHE_EUNSUPPORTED;
#endif
}

/* A 64-bit hash written as imagehash prints it: 16 lowercase hex digits. */
static bool parse_hash16(const parse_ctx *c, long v, uint64_t *out)
{
    if (type_of(c, (size_t)v) != GENCACHE__J_STRING || node(c, (size_t)v)->len != 16)
        return false;
    const char *s = str_of(c, (size_t)v);
    uint64_t h = 0;
    for (int i = 0; i < 16; i++) {
        char ch = s[i];
        unsigned d = ch >= '0' && ch <= '9'   ? (unsigned)(ch - '0')
                     : ch >= 'a' && ch <= 'f' ? (unsigned)(ch - 'a' + 10)
                                              : 16u;
        if (d == 16)
            return false;
        h = h << 4 | d;
    }
    *out = h;
    return true;
}

static bool parse_dim(const parse_ctx *c, long v, uint32_t *out)
{
    if (type_of(c, (size_t)v) != GENCACHE__J_NUMBER)
        return false;
    double d = node(c, (size_t)v)->num;
    if (!(d >= 1 && d <= 1e6) || d != (double)(uint32_t)d)
        return false;
    *out = (uint32_t)d;
    return true;
}

/* The optional signature of the input image (phash, dhash, width, height: all, the phash alone,
 * or none), which perceptual lookups use (src/reuse/); it never enters a key. The phash alone
 * leaves dhash, width and height 0: the guards that need them apply only when the stored record
 * of the same digest supplies them (docs/reuse.md). */
static int add_image_sig(parse_ctx *c, size_t v)
{
    long p = gencache__json_member(&c->doc, v, "phash"),
         d = gencache__json_member(&c->doc, v, "dhash");
    long w = gencache__json_member(&c->doc, v, "width"),
         h = gencache__json_member(&c->doc, v, "height");
    if (p < 0 && d < 0 && w < 0 && h < 0)
        return GENCACHE_OK;
    gencache_image_sig sig = {0};
    bool phash_only = p >= 0 && d < 0 && w < 0 && h < 0;
    if (!phash_only && (p < 0 || d < 0 || w < 0 || h < 0))
        return fail(c, GENCACHE_EINVAL,
                    "field 'image': a signature needs phash alone or all of phash, dhash, width "
                    "and height");
    if (!parse_hash16(c, p, &sig.phash) || (!phash_only && !parse_hash16(c, d, &sig.dhash)))
        return fail(c, GENCACHE_EINVAL,
                    "field 'image.phash'/'image.dhash': expected 16 lowercase hex digits");
    if (!phash_only && (!parse_dim(c, w, &sig.width) || !parse_dim(c, h, &sig.height)))
        return fail(c, GENCACHE_EINVAL,
                    "field 'image.width'/'image.height': expected an integer of 1-1000000 pixels");
    c->req->image_sig = sig;
    c->req->has_image_sig = true;
    return GENCACHE_OK;
}

#define IMAGE_SHAPE                                                                                \
    "field 'image': expected {\"path\": FILE} or {\"digest\": \"sha256:<hex>\"}, optionally with " \
    "phash, dhash, width and height"

static int add_image(parse_ctx *c, size_t v)
{
    if (type_of(c, v) != GENCACHE__J_OBJECT)
        return fail(c, GENCACHE_EINVAL, IMAGE_SHAPE);
    FOR_EACH_MEMBER(c, v, m)
    {
        const char *k = name_of(c, m);
        if (strcmp(k, "path") != 0 && strcmp(k, "digest") != 0 && strcmp(k, "phash") != 0 &&
            strcmp(k, "dhash") != 0 && strcmp(k, "width") != 0 && strcmp(k, "height") != 0)
            return fail(c, GENCACHE_EINVAL, IMAGE_SHAPE);
    }
    long p = gencache__json_member(&c->doc, v, "path"),
         d = gencache__json_member(&c->doc, v, "digest");
    if ((p >= 0) == (d >= 0))
        return fail(c, GENCACHE_EINVAL, IMAGE_SHAPE);
    char digest[80];
    if (d >= 0) {
        if (type_of(c, (size_t)d) != GENCACHE__J_STRING || !is_hex_digest(str_of(c, (size_t)d)))
            return fail(c, GENCACHE_EINVAL,
                        "field 'image.digest': expected \"sha256:\" and 64 lowercase hex digits");
        snprintf(digest, sizeof digest, "%s", str_of(c, (size_t)d));
    } else {
        if (type_of(c, (size_t)p) != GENCACHE__J_STRING || node(c, (size_t)p)->len == 0)
            return fail(c, GENCACHE_EINVAL, "field 'image.path': expected a file name");
        int rc = image_digest_of_file(str_of(c, (size_t)p), digest, sizeof digest);
        if (rc != GENCACHE_OK)
            return fail(c, rc, "field 'image.path': cannot read image '%.200s': %s",
                        str_of(c, (size_t)p), gencache_strerror(rc));
        if (!is_hex_digest(digest))
            return fail(c, GENCACHE_EIO, "field 'image.path': bad digest from the image module");
    }
    int rc = add_image_sig(c, v);
    if (rc != GENCACHE_OK)
        return rc;
    memcpy(c->req->image_digest, digest, 7 + 64 + 1); /* checked: "sha256:" and 64 digits */
    char val[96];
    int n = snprintf(val, sizeof val, "d:%s", digest);
    return add_field(c, "image", 5, val, (size_t)n, GENCACHE__KF_PARAM);
}

static int add_prompt(parse_ctx *c, const char *name, size_t v)
{
    gencache_request *r = c->req;
    if (type_of(c, v) != GENCACHE__J_STRING)
        return fail(c, GENCACHE_EINVAL, "field '%s': expected a string", name);
    const char *s = str_of(c, v);
    size_t n = node(c, v)->len;
    gencache__buf norm = {0};
    int rc = gencache__key_normalize(r->mode, s, n, c->ks->synonyms, c->ks->n_synonyms, &norm);
    if (rc == GENCACHE_OK && !gencache__buf_terminate(&norm))
        rc = GENCACHE_ENOMEM;
    if (rc != GENCACHE_OK) {
        gencache__buf_free(&norm);
        return rc == GENCACHE_EPARSE ? fail(c, rc, "field '%s': invalid UTF-8", name) : rc;
    }
    char storage[512];
    gencache__buf val = gencache__buf_on(storage, sizeof storage);
    encode_string(norm.data, norm.len, &val);
    unsigned flags = r->mode == GENCACHE_NORM_TOKENS ? GENCACHE__KF_HIDDEN : GENCACHE__KF_PARAM;
    rc = val.failed ? GENCACHE_ENOMEM : add_field(c, name, strlen(name), val.data, val.len, flags);
    gencache__buf_free(&val);
    if (rc == GENCACHE_OK && strcmp(name, "prompt") == 0 && !r->prompt) {
        r->prompt = norm.data;
        return GENCACHE_OK;
    }
    gencache__buf_free(&norm);
    return rc;
}

/* Kinds of known top-level fields. */
enum kind { K_STRING, K_INT, K_UINT, K_NUMBER, K_TOKENS, K_OBJECT, K_ANY };

static const struct {
    const char *name;
    size_t len;
    enum kind kind;
    unsigned flags;
} known[] = {
    {"model", 5, K_STRING, GENCACHE__KF_PARAM},
    {"scheduler", 9, K_STRING, GENCACHE__KF_PARAM},
    {"tokenizer", 9, K_STRING, GENCACHE__KF_PARAM},
    {"session", 7, K_STRING, 0},
    {"name", 4, K_STRING, 0},
    {"seed", 4, K_INT, GENCACHE__KF_PARAM},
    {"steps", 5, K_UINT, GENCACHE__KF_PARAM},
    {"frames", 6, K_UINT, GENCACHE__KF_PARAM},
    {"width", 5, K_UINT, GENCACHE__KF_PARAM},
    {"height", 6, K_UINT, GENCACHE__KF_PARAM},
    {"guidance", 8, K_NUMBER, GENCACHE__KF_PARAM},
    {"fps", 3, K_NUMBER, GENCACHE__KF_PARAM},
    {"rotation", 8, K_NUMBER, GENCACHE__KF_PARAM},
    {"params", 6, K_OBJECT, GENCACHE__KF_PARAM},
    {"prompt_tokens", 13, K_TOKENS, GENCACHE__KF_PARAM},
    {"negative_prompt_tokens", 22, K_TOKENS, GENCACHE__KF_PARAM},
};
#define N_KNOWN (sizeof known / sizeof known[0])

static int check_kind(parse_ctx *c, const char *k, size_t v, enum kind kind)
{
    gencache__jtype t = type_of(c, v);
    switch (kind) {
    case K_STRING:
        if (t != GENCACHE__J_STRING)
            return fail(c, GENCACHE_EINVAL, "field '%s': expected a string", k);
        break;
    case K_INT:
    case K_UINT: {
        const char *what = kind == K_INT ? "an integer" : "a non-negative integer";
        if (t != GENCACHE__J_NUMBER)
            return fail(c, GENCACHE_EINVAL, "field '%s': expected %s", k, what);
        char storage[64];
        gencache__buf e = gencache__buf_on(storage, sizeof storage);
        int rc = encode_number(c, v, &e);
        bool ok = rc == GENCACHE_OK && e.len > 2 && e.data[0] == 'i' &&
                  (kind == K_INT || e.data[2] != '-');
        gencache__buf_free(&e);
        if (rc != GENCACHE_OK)
            return rc;
        if (!ok)
            return fail(c, GENCACHE_EINVAL, "field '%s': expected %s", k, what);
        break;
    }
    case K_NUMBER:
        if (t != GENCACHE__J_NUMBER)
            return fail(c, GENCACHE_EINVAL, "field '%s': expected a number", k);
        break;
    case K_TOKENS:
        if (t != GENCACHE__J_ARRAY)
            return fail(c, GENCACHE_EINVAL, "field '%s': expected an array of integers", k);
        FOR_EACH_MEMBER(c, v, e)
        {
            int rc = check_kind(c, k, e, K_INT);
            if (rc != GENCACHE_OK)
                return rc == GENCACHE_EINVAL
                           ? fail(c, rc, "field '%s': expected an array of integers", k)
                           : rc;
        }
        break;
    case K_OBJECT:
        if (t != GENCACHE__J_OBJECT)
            return fail(c, GENCACHE_EINVAL, "field '%s': expected an object", k);
        break;
    case K_ANY:
        break;
    }
    return GENCACHE_OK;
}

/* True when the name k of klen bytes is lit (a string literal). */
#define NAME_IS(k, klen, lit) ((klen) == sizeof(lit) - 1 && memcmp((k), (lit), (klen)) == 0)

static int add_top(parse_ctx *c, const char *k, size_t klen, size_t v, unsigned flags)
{
    gencache_request *r = c->req;
    if (type_of(c, v) == GENCACHE__J_NULL)
        return GENCACHE_OK;
    if (NAME_IS(k, klen, "cache")) {
        const char *s = type_of(c, v) == GENCACHE__J_STRING ? str_of(c, v) : "";
        if (strcmp(s, "allow_random") == 0)
            r->allow_random = true;
        else if (strcmp(s, "any_seed") == 0)
            r->any_seed = true;
        else if (strcmp(s, "similar_prompt") == 0)
            r->similar_prompt = true;
        else if (strcmp(s, "default") != 0)
            return fail(c, GENCACHE_EINVAL,
                        "field 'cache': expected \"default\", \"allow_random\", "
                        "\"any_seed\" or \"similar_prompt\"");
        return GENCACHE_OK;
    }
    if (NAME_IS(k, klen, "tenant")) {
        if (!(flags & GENCACHE_REQUEST_TRUST_TENANT))
            return GENCACHE_OK; /* the daemon takes the tenant from the caller's token */
        if (type_of(c, v) != GENCACHE__J_STRING || node(c, v)->len == 0 ||
            node(c, v)->len > GENCACHE__KEY_TENANT_MAX)
            return fail(c, GENCACHE_EINVAL, "field 'tenant': expected a string of 1-%d bytes",
                        GENCACHE__KEY_TENANT_MAX);
        return gencache_request_set_tenant(r, str_of(c, v));
    }
    if (NAME_IS(k, klen, "image"))
        return add_image(c, v);
    if (NAME_IS(k, klen, "prompt") || NAME_IS(k, klen, "negative_prompt"))
        return add_prompt(c, k, v);
    memcpy(c->path, k, klen + 1); /* name_ok() bounded it */
    enum kind kind = K_ANY;
    unsigned fflags = GENCACHE__KF_PARAM;
    for (size_t i = 0; i < N_KNOWN; i++) {
        if (known[i].len == klen && memcmp(k, known[i].name, klen) == 0) {
            kind = known[i].kind;
            fflags = known[i].flags;
            break;
        }
    }
    int rc = check_kind(c, k, v, kind);
    if (rc != GENCACHE_OK)
        return rc;
    if (NAME_IS(k, klen, "seed")) {
        r->has_seed = true;
        const gencache__jnode *n = node(c, v);
        if (n->type == GENCACHE__J_NUMBER && n->len < sizeof r->seed_text) {
            memcpy(r->seed_text, c->json + n->off, n->len);
            r->seed_text[n->len] = '\0';
        }
    }
    if (NAME_IS(k, klen, "model")) {
        r->model = strdup(str_of(c, v));
        if (!r->model)
            return GENCACHE_ENOMEM;
    }
    return add_value(c, v, 1, fflags);
}

static int cmp_fields_ctx(const gencache__kfield *a, const gencache__kfield *b, const char *text)
{
    /* Names are short and mostly differ early: compared inline, bytewise as unsigned. */
    size_t n = a->name_len < b->name_len ? a->name_len : b->name_len;
    const unsigned char *x = (const unsigned char *)text + a->name_off;
    const unsigned char *y = (const unsigned char *)text + b->name_off;
    for (size_t i = 0; i < n; i++)
        if (x[i] != y[i])
            return x[i] < y[i] ? -1 : 1;
    return a->name_len < b->name_len ? -1 : a->name_len > b->name_len;
}

/* Insertion sort: requests have a few dozen fields, and qsort has no context argument. */
static void sort_fields(gencache_request *r)
{
    for (size_t i = 1; i < r->n_fields; i++) {
        gencache__kfield f = r->fields[i];
        size_t j = i;
        while (j > 0 && cmp_fields_ctx(&r->fields[j - 1], &f, r->text.data) > 0) {
            r->fields[j] = r->fields[j - 1];
            j--;
        }
        r->fields[j] = f;
    }
}

static bool has_field(const gencache_request *r, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < r->n_fields; i++)
        if (r->fields[i].name_len == n &&
            memcmp(r->text.data + r->fields[i].name_off, name, n) == 0)
            return true;
    return false;
}

static int check_tokens(parse_ctx *c)
{
    gencache_request *r = c->req;
    if (has_field(r, "prompt") && !has_field(r, "prompt_tokens"))
        return fail(c, GENCACHE_EINVAL, "tokens mode: 'prompt' needs 'prompt_tokens'");
    if (has_field(r, "negative_prompt") && !has_field(r, "negative_prompt_tokens"))
        return fail(c, GENCACHE_EINVAL,
                    "tokens mode: 'negative_prompt' needs 'negative_prompt_tokens'");
    if ((has_field(r, "prompt_tokens") || has_field(r, "negative_prompt_tokens")) &&
        !has_field(r, "tokenizer"))
        return fail(c, GENCACHE_EINVAL, "tokens mode: token ids need 'tokenizer'");
    return GENCACHE_OK;
}

static int parse_request(parse_ctx *c, unsigned flags)
{
    gencache_request *r = c->req;
    long model = gencache__json_member(&c->doc, 0, "model");
    r->mode = gencache__keyspace_mode_for(c->ks, model >= 0 && type_of(c, (size_t)model) ==
                                                                   GENCACHE__J_STRING
                                                     ? str_of(c, (size_t)model)
                                                     : NULL);
    int rc;
    FOR_EACH_MEMBER(c, 0, v)
    {
        const char *k = name_of(c, v);
        if (!name_ok(k, node(c, v)->name_len))
            return fail(c, GENCACHE_EINVAL,
                        "field name '%.64s' must be 1-64 printable ASCII characters without "
                        "'.', '=' or spaces",
                        k);
        rc = add_top(c, k, node(c, v)->name_len, v, flags);
        if (rc != GENCACHE_OK)
            return rc;
    }
    if (r->mode == GENCACHE_NORM_TOKENS && (rc = check_tokens(c)) != GENCACHE_OK)
        return rc;
    sort_fields(r);
    return GENCACHE_OK;
}

int gencache_request_parse_ex(const gencache_keyspace *ks, const char *json, size_t len,
                              unsigned flags, gencache_request **out, char *err, size_t err_size)
{
    parse_ctx c = {.json = json, .len = len, .err = err, .err_size = err_size};
    if (err && err_size > 0)
        err[0] = '\0';
    if (!out)
        return fail(&c, GENCACHE_EINVAL, "no output argument");
    *out = NULL;
    if (!json && len > 0)
        return fail(&c, GENCACHE_EINVAL, "no request text");
    if (len > GENCACHE_REQUEST_MAX_BYTES)
        return fail(&c, GENCACHE_ELIMIT, "request is %zu bytes, more than the %u allowed", len,
                    GENCACHE_REQUEST_MAX_BYTES);
    c.ks = ks ? ks : gencache__keyspace_default();
    if (!c.ks)
        return GENCACHE_ENOMEM;
    if (!json)
        c.json = json = "";

    int rc = gencache__json_parse(json, len, &c.doc, err, err_size);
    if (rc != GENCACHE_OK) {
        gencache__json_free(&c.doc);
        return rc;
    }
    gencache_request *r = calloc(1, sizeof *r);
    if (!r) {
        gencache__json_free(&c.doc);
        return GENCACHE_ENOMEM;
    }
    r->ks = gencache__keyspace_retain(c.ks);
    /* Names and encodings take about as many bytes as the JSON text: one allocation, usually. */
    gencache__buf_reserve(&r->text, len + 64);
    c.req = r;
    rc = parse_request(&c, flags);
    gencache__json_free(&c.doc);
    if (rc != GENCACHE_OK) {
        gencache_request_free(r);
        return rc;
    }
    *out = r;
    return GENCACHE_OK;
}

int gencache_request_parse(const gencache_keyspace *ks, const char *json, size_t len,
                           unsigned flags, gencache_request **out)
{
    return gencache_request_parse_ex(ks, json, len, flags, out, NULL, 0);
}

int gencache_request_set_tenant(gencache_request *req, const char *tenant)
{
    if (!req)
        return GENCACHE_EINVAL;
    if (tenant) {
        size_t n = strlen(tenant);
        if (n == 0 || n > GENCACHE__KEY_TENANT_MAX || !gencache__utf8_valid(tenant, n))
            return GENCACHE_EINVAL;
    }
    char *t = tenant ? strdup(tenant) : NULL;
    if (tenant && !t)
        return GENCACHE_ENOMEM;
    free(req->tenant);
    req->tenant = t;
    return GENCACHE_OK;
}

const char *gencache_request_prompt(const gencache_request *req)
{
    return req ? req->prompt : NULL;
}

const char *gencache_request_model(const gencache_request *req)
{
    return req ? req->model : NULL;
}

gencache_norm_mode gencache_request_mode(const gencache_request *req)
{
    return req ? req->mode : GENCACHE_NORM_SAFE;
}

void gencache_request_free(gencache_request *req)
{
    if (!req)
        return;
    gencache_keyspace_free(req->ks);
    free(req->fields);
    gencache__buf_free(&req->text);
    free(req->prompt);
    free(req->model);
    free(req->tenant);
    free(req);
}
