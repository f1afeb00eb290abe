/*
 * test_key_alloc.c: allocation failures in request parsing, normalization and key derivation.
 * This executable replaces malloc and friends (glibc supports replacing them) with versions that
 * fail the n-th allocation and count live blocks; each case fails every allocation in turn and
 * checks that the call reports GENCACHE_ENOMEM (or another clean error), leaves *out NULL and
 * leaks nothing. Under a sanitizer, which owns malloc, the cases only run the calls once.
 */
#include <stdbool.h>

#include "test.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define INTERPOSE 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) ||                         \
    __has_feature(memory_sanitizer)
#define INTERPOSE 0
#endif
#endif
#ifndef INTERPOSE
#define INTERPOSE 1
#endif

static long fail_at = -1; /* allocations left before one fails; -1: never */
static long live;         /* blocks allocated and not freed */
static long failures;     /* allocations refused so far */

#if INTERPOSE
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);

static bool refuse(void)
{
    if (fail_at < 0)
        return false;
    if (fail_at-- == 0) {
        failures++;
        return true;
    }
    return false;
}

void *malloc(size_t n)
{
    if (refuse())
        return NULL;
    void *p = __libc_malloc(n);
    live += p != NULL;
    return p;
}

void *calloc(size_t n, size_t size)
{
    if (refuse())
        return NULL;
    void *p = __libc_calloc(n, size);
    live += p != NULL;
    return p;
}

void *realloc(void *old, size_t n)
{
    if (refuse())
        return NULL;
    void *p = __libc_realloc(old, n);
    if (!old && p)
        live++;
    return p;
}

void free(void *p)
{
    if (p)
        live--;
    __libc_free(p);
}
#endif

static const char REQUEST[] =
    "{\"model\": \"wan\", \"prompt\": \"  A red fox \\u00e9 &amp; Colour\", \"negative_prompt\": "
    "\"blurry\", \"seed\": 42, \"guidance\": 7.5, \"params\": {\"lora\": {\"w\": 0.5, \"ids\": "
    "[1, 2, [3]]}, \"big\": 18446744073709551615}, \"image\": {\"digest\": \"sha256:"
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\"}, \"tenant\": \"acme\"}";

/* One full use of the key API; returns its first error (or GENCACHE_OK). */
static int use_api(gencache_norm_mode mode)
{
    gencache_keyspace *ks = NULL;
    int rc = gencache_keyspace_new(&ks);
    if (rc != GENCACHE_OK) {
        CHECK(ks == NULL);
        return rc;
    }
    rc = gencache_keyspace_set_mode(ks, "wan", mode);
    if (rc == GENCACHE_OK)
        rc = gencache_keyspace_add_synonym(ks, "fox", "vixen");
    const char *fields[] = {"model", "params.lora!"};
    if (rc == GENCACHE_OK)
        rc = gencache_keyspace_set_layer(ks, "lora", fields, 2, GENCACHE_SCOPE_TENANT);
    gencache_request *req = NULL;
    if (rc == GENCACHE_OK) {
        rc = gencache_request_parse(ks, REQUEST, sizeof REQUEST - 1, GENCACHE_REQUEST_TRUST_TENANT,
                                    &req);
        if (rc != GENCACHE_OK)
            CHECK(req == NULL);
    }
    for (size_t i = 0; rc == GENCACHE_OK && i < gencache_keyspace_layer_count(ks); i++) {
        const char *layer = gencache_keyspace_layer_name(ks, i);
        char key[GENCACHE_KEY_MAX];
        char *canon = NULL;
        rc = gencache_request_key(req, layer, key, sizeof key);
        if (rc == GENCACHE_EUNCACHEABLE)
            rc = GENCACHE_OK;
        else if (rc == GENCACHE_OK) {
            rc = gencache_request_canonical(req, layer, &canon, NULL);
            if (rc != GENCACHE_OK)
                CHECK(canon == NULL);
            gencache_free(canon);
        }
    }
    if (rc == GENCACHE_OK)
        rc = gencache_request_set_tenant(req, "globex");
    char *norm = NULL;
    if (rc == GENCACHE_OK) {
        rc = gencache_normalize(mode, "Caf\xc3\xa9  &amp; COLOUR", 19, &norm, NULL);
        if (rc != GENCACHE_OK)
            CHECK(norm == NULL);
    }
    gencache_free(norm);
    gencache_request_free(req);
    gencache_keyspace_free(ks);
    return rc;
}

static void each_allocation_fails(gencache_norm_mode mode)
{
    CHECK_OK(use_api(mode)); /* warm up one-time state (library init, default tables) */
    if (!INTERPOSE)
        return;
    long n;
    for (n = 0; n < 100000; n++) {
        long before = live, failed_before = failures;
        fail_at = n;
        int rc = use_api(mode);
        fail_at = -1;
        if (live != before) {
            /* OpenSSL keeps per-thread error state, allocated at its first error: only growth
             * on a repeat of the same failure is a leak. */
            before = live;
            fail_at = n;
            use_api(mode);
            fail_at = -1;
        }
        if (live != before)
            test_fail(__FILE__, __LINE__, "allocation %ld failing leaked %ld blocks (rc %s)", n,
                      live - before, gencache_errname(rc));
        if (failures == failed_before) {
            CHECK_OK(rc); /* every allocation succeeded: the whole use must have */
            break;
        }
        if (rc == GENCACHE_OK)
            continue; /* a failure some caller tolerated (a cache, a fallback) */
        if (rc != GENCACHE_ENOMEM && rc != GENCACHE_EPARSE && rc != GENCACHE_EINVAL)
            test_fail(__FILE__, __LINE__, "allocation %ld failing gave %s", n,
                      gencache_errname(rc));
    }
    CHECK(n > 20); /* the use allocates: the test reached its failure paths */
}

TEST_CASE(safe_mode_survives_every_allocation_failure)
{
    each_allocation_fails(GENCACHE_NORM_SAFE);
}

TEST_CASE(aggressive_mode_survives_every_allocation_failure)
{
    each_allocation_fails(GENCACHE_NORM_AGGRESSIVE);
}

TEST_CASE(tokens_mode_refusal_survives_every_allocation_failure)
{
    /* Tokens mode refuses this request (no prompt_tokens): the refusal path must not leak. */
    CHECK_RC(use_api(GENCACHE_NORM_TOKENS), GENCACHE_EINVAL);
    if (!INTERPOSE)
        return;
    for (long n = 0; n < 100000; n++) {
        long before = live, failed_before = failures;
        fail_at = n;
        int rc = use_api(GENCACHE_NORM_TOKENS);
        fail_at = -1;
        CHECK(rc != GENCACHE_OK);
        if (live != before) { /* see each_allocation_fails() */
            before = live;
            fail_at = n;
            use_api(GENCACHE_NORM_TOKENS);
            fail_at = -1;
        }
        if (live != before)
            test_fail(__FILE__, __LINE__, "allocation %ld failing leaked %ld blocks", n,
                      live - before);
        if (failures == failed_before)
            break;
    }
}
