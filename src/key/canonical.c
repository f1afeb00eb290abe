/*
 * canonical.c: key derivation v1 (DESIGN.md section 2). A layer's canonical document is
 * "gencache-key-v1\n<layer>\n" followed by one "name=VALUE\n" line per selected field, in
 * bytewise name order; the key is "<layer>/" and the lowercase hex SHA-256 of that document.
 * Selection never lets a field outside a recipe reach a key, except that "*" takes every request
 * parameter; in tokens mode a recipe's prompt means prompt_tokens and tokenizer.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>

#include "key.h"

static const char HEADER[] = "gencache-key-v1\n";

static bool name_is(const char *name, size_t len, const char *want, size_t want_len)
{
    return len >= want_len && name[0] == want[0] && memcmp(name, want, want_len) == 0 &&
           (len == want_len || name[want_len] == '.');
}

/* Does recipe field rf select request field (name, len, flags)? */
static bool selects(const gencache__recipe_field *rf, bool tokens, const char *name, size_t len,
                    unsigned flags)
{
    if (flags & GENCACHE__KF_HIDDEN)
        return false;
    if (rf->all)
        return (flags & GENCACHE__KF_PARAM) != 0;
    if (tokens && rf->len == 6 && memcmp(rf->name, "prompt", 6) == 0)
        return name_is(name, len, "prompt_tokens", 13) || name_is(name, len, "tokenizer", 9);
    if (tokens && rf->len == 15 && memcmp(rf->name, "negative_prompt", 15) == 0)
        return name_is(name, len, "negative_prompt_tokens", 22) ||
               name_is(name, len, "tokenizer", 9);
    return name_is(name, len, rf->name, rf->len);
}

static bool selected(const gencache__layer_recipe *lr, bool tokens, const char *name, size_t len,
                     unsigned flags)
{
    for (size_t i = 0; i < lr->n_fields; i++)
        if (selects(&lr->fields[i], tokens, name, len, flags))
            return true;
    return lr->scope == GENCACHE_SCOPE_SESSION && name_is(name, len, "session", 7);
}

static bool present(const gencache_request *req, const char *want, size_t want_len)
{
    for (size_t i = 0; i < req->n_fields; i++) {
        const gencache__kfield *f = &req->fields[i];
        if (!(f->flags & GENCACHE__KF_HIDDEN) &&
            name_is(req->text.data + f->name_off, f->name_len, want, want_len))
            return true;
    }
    return false;
}

/* The rules of why_uncacheable() other than the seed rule. */
static const char *why_uncacheable_seeded(const gencache_request *req,
                                          const gencache__layer_recipe *lr)
{
    bool tokens = req->mode == GENCACHE_NORM_TOKENS;
    if (lr->scope == GENCACHE_SCOPE_SESSION && !present(req, "session", 7))
        return "the layer is session-scoped and the request has no \"session\"";
    for (size_t i = 0; i < lr->n_fields; i++) {
        const gencache__recipe_field *rf = &lr->fields[i];
        if (!rf->required)
            continue;
        const char *want = rf->name;
        size_t want_len = rf->len;
        if (tokens && want_len == 6 && memcmp(want, "prompt", 6) == 0)
            want = "prompt_tokens", want_len = 13;
        else if (tokens && want_len == 15 && memcmp(want, "negative_prompt", 15) == 0)
            want = "negative_prompt_tokens", want_len = 22;
        if (!present(req, want, want_len))
            return "the request lacks a field this layer requires (such as image_latent's "
                   "\"image\")";
    }
    return NULL;
}

/* NULL when the request has a key in this layer, else why not (a static sentence). */
static const char *why_uncacheable(const gencache_request *req, const gencache__layer_recipe *lr)
{
    if (lr->seeded && !req->has_seed && !req->allow_random)
        return "the request has no seed (a fresh random generation); give a \"seed\", or "
               "\"cache\": \"allow_random\" to cache it anyway";
    return why_uncacheable_seeded(req, lr);
}

const char *gencache_request_uncacheable_reason(const gencache_request *req, const char *layer)
{
    if (!req || !layer)
        return NULL;
    const gencache__layer_recipe *lr = gencache__keyspace_find(req->ks, layer);
    return lr ? why_uncacheable(req, lr) : NULL;
}

static void put_line(gencache__buf *b, const char *name, size_t name_len, const char *val,
                     size_t val_len)
{
    gencache__buf_append(b, name, name_len);
    gencache__buf_putc(b, '=');
    gencache__buf_append(b, val, val_len);
    gencache__buf_putc(b, '\n');
}

/* skip: a field whose lines are left out (gencache__request_context()), or NULL. */
static int build(const gencache_request *req, const char *layer, const char *skip, gencache__buf *b)
{
    if (!req || !layer)
        return GENCACHE_EINVAL;
    const gencache__layer_recipe *lr = gencache__keyspace_find(req->ks, layer);
    if (!lr)
        return GENCACHE_ENOTFOUND;
    bool skip_seed = skip && strcmp(skip, "seed") == 0;
    if (skip_seed ? why_uncacheable_seeded(req, lr) != NULL : why_uncacheable(req, lr) != NULL)
        return GENCACHE_EUNCACHEABLE;
    size_t skip_len = skip ? strlen(skip) : 0;
    int rc;
    bool tokens = req->mode == GENCACHE_NORM_TOKENS;
    bool tenant = lr->scope == GENCACHE_SCOPE_TENANT && req->tenant;
    char tstorage[GENCACHE__KEY_TENANT_MAX + 32];
    gencache__buf tval = gencache__buf_on(tstorage, sizeof tstorage);
    if (tenant) {
        size_t n = strlen(req->tenant);
        gencache__buf_append(&tval, "s:", 2);
        gencache__buf_put_u64(&tval, n);
        gencache__buf_putc(&tval, ':');
        gencache__buf_append(&tval, req->tenant, n);
    }
    gencache__buf_append(b, HEADER, sizeof HEADER - 1);
    gencache__buf_append(b, lr->name, strlen(lr->name));
    gencache__buf_putc(b, '\n');
    for (size_t i = 0; i < req->n_fields; i++) {
        const gencache__kfield *f = &req->fields[i];
        const char *name = req->text.data + f->name_off;
        if (tenant) {
            size_t n = f->name_len < 6 ? f->name_len : 6;
            int d = memcmp(name, "tenant", n);
            if (d > 0 || (d == 0 && f->name_len > 6)) {
                put_line(b, "tenant", 6, tval.data, tval.len);
                tenant = false;
            }
        }
        if (skip && name_is(name, f->name_len, skip, skip_len))
            continue;
        if (selected(lr, tokens, name, f->name_len, f->flags))
            put_line(b, name, f->name_len, req->text.data + f->val_off, f->val_len);
    }
    if (tenant)
        put_line(b, "tenant", 6, tval.data, tval.len);
    rc = tval.failed || b->failed ? GENCACHE_ENOMEM : GENCACHE_OK;
    gencache__buf_free(&tval);
    return rc;
}

int gencache_request_canonical(const gencache_request *req, const char *layer, char **out,
                               size_t *out_len)
{
    if (out)
        *out = NULL;
    if (out_len)
        *out_len = 0;
    if (!out)
        return GENCACHE_EINVAL;
    gencache__buf b = {0};
    int rc = build(req, layer, NULL, &b);
    if (rc == GENCACHE_OK && !gencache__buf_terminate(&b))
        rc = GENCACHE_ENOMEM;
    if (rc != GENCACHE_OK) {
        gencache__buf_free(&b);
        return rc;
    }
    *out = b.data;
    if (out_len)
        *out_len = b.len;
    return GENCACHE_OK;
}

static EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void sha256_init(void)
{
    /* Fetching once spares every digest the provider lookup that EVP_sha256() implies. */
    sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

int gencache_request_key(const gencache_request *req, const char *layer, char *out, size_t out_size)
{
    if (out && out_size > 0)
        out[0] = '\0';
    if (!out)
        return GENCACHE_EINVAL;
    char storage[2048];
    gencache__buf b = gencache__buf_on(storage, sizeof storage);
    int rc = build(req, layer, NULL, &b);
    if (rc != GENCACHE_OK) {
        gencache__buf_free(&b);
        return rc;
    }
    size_t lname = strlen(layer);
    if (out_size < lname + 1 + 64 + 1) {
        gencache__buf_free(&b);
        return GENCACHE_EINVAL;
    }
    pthread_once(&sha256_once, sha256_init);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    int ok = EVP_Digest(b.data, b.len, md, &md_len, sha256_md ? sha256_md : EVP_sha256(), NULL);
    gencache__buf_free(&b);
    if (!ok || md_len != 32) {
        ERR_clear_error(); /* leave no stale error for the caller's own OpenSSL use */
        return GENCACHE_ENOMEM;
    }
    static const char hex[] = "0123456789abcdef";
    memcpy(out, layer, lname);
    out[lname] = '/';
    for (unsigned i = 0; i < 32; i++) {
        out[lname + 1 + 2 * i] = hex[md[i] >> 4];
        out[lname + 2 + 2 * i] = hex[md[i] & 15];
    }
    out[lname + 1 + 64] = '\0';
    return GENCACHE_OK;
}

int gencache__request_context(const gencache_request *req, const char *layer, const char *skip,
                              uint64_t *out)
{
    *out = 0;
    char storage[2048];
    gencache__buf b = gencache__buf_on(storage, sizeof storage);
    int rc = build(req, layer, skip, &b);
    if (rc == GENCACHE_OK)
        *out = gencache__checksum(b.data, b.len);
    gencache__buf_free(&b);
    return rc;
}
