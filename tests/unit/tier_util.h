/*
 * tier_util.h: helpers shared by the tier tests (test_disk*.c, test_redis*.c): deterministic
 * entries, temporary directories and an on_evict recorder. Include it after defining
 * _GNU_SOURCE (nftw, mkdtemp).
 */
#ifndef GENCACHE_TEST_TIER_UTIL_H
#define GENCACHE_TEST_TIER_UTIL_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "test.h"

/* "<layer>/<64 hex>" from a number. */
static inline void tu_key(char *buf, const char *layer, uint64_t n)
{
    int w = sprintf(buf, "%s/", layer);
    for (int i = 0; i < 64; i++)
        buf[w + i] = "0123456789abcdef"[((n >> ((i % 16) * 4)) & 15) ^ (uint64_t)(i / 16)];
    buf[w + 64] = '\0';
}

/* Fills a value deterministically from seed (xorshift). */
static inline void tu_fill(unsigned char *p, size_t n, uint64_t seed)
{
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = (unsigned char)x;
    }
}

typedef struct tu_spec {
    const char *layer;
    uint64_t id; /* key number and value seed */
    size_t size;
    uint64_t now_ms;
    uint64_t ttl_ms;
    bool sliding;
    bool pinned;
    const char *tenant, *model, *tags, *ctype;
} tu_spec;

static inline gencache__entry *tu_entry(const tu_spec *s)
{
    char key[GENCACHE__KEY_MAX + 1];
    tu_key(key, s->layer ? s->layer : "result", s->id);
    gencache_meta m;
    gencache_meta_init(&m);
    m.tenant = s->tenant;
    m.model = s->model;
    m.tags = s->tags;
    m.content_type = s->ctype;
    m.cost_ms = 100 + s->id;
    m.pinned = s->pinned;
    if (s->size % 4 == 0 && s->size) {
        m.dtype = GENCACHE_DTYPE_F32;
        m.ndim = 2;
        m.shape[0] = 1;
        m.shape[1] = (int64_t)(s->size / 4);
    }
    gencache__entry_spec spec = {.key = key,
                                 .layer = 0,
                                 .meta = &m,
                                 .size = s->size,
                                 .now_ms = s->now_ms,
                                 .ttl_ms = s->ttl_ms,
                                 .sliding = s->sliding};
    gencache__entry *e = NULL;
    CHECK_OK(gencache__entry_new(NULL, &spec, &e));
    tu_fill(e->value, s->size, s->id);
    e->checksum = gencache__checksum(e->value, s->size);
    return e;
}

/* Checks that e holds exactly what tu_entry(s) made. */
static inline void tu_check_value(const gencache__entry *e, uint64_t id, size_t size)
{
    CHECK(e != NULL);
    CHECK(e->value != NULL);
    CHECK_UINT_EQ(e->size, size);
    unsigned char *want = malloc(size ? size : 1);
    tu_fill(want, size, id);
    int same = memcmp(e->value, want, size) == 0;
    free(want);
    CHECK(same);
    CHECK_UINT_EQ(((uintptr_t)e->value) % GENCACHE__VALUE_ALIGN, 0);
}

static inline uint64_t tu_hash(const char *key)
{
    return gencache__checksum(key, strlen(key));
}

static int tu_rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static inline void tu_rm_rf(const char *path)
{
    nftw(path, tu_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static inline char *tu_tmpdir(const char *tag)
{
    char tmpl[256];
    snprintf(tmpl, sizeof tmpl, "/tmp/gencache-test-%s-XXXXXX", tag);
    char *d = mkdtemp(tmpl);
    CHECK(d != NULL);
    return strdup(d);
}

/* Records on_evict calls. */
typedef struct tu_evictions {
    int n[3];
    char last_key[GENCACHE__KEY_MAX + 1];
    uint64_t last_size;
    bool value_null;
} tu_evictions;

static inline void tu_on_evict(void *ud, gencache__entry *e, gencache__evict_reason reason)
{
    tu_evictions *ev = ud;
    ev->n[reason]++;
    snprintf(ev->last_key, sizeof ev->last_key, "%s", e->key);
    ev->last_size = e->size;
    ev->value_null = e->value == NULL;
}

#endif
