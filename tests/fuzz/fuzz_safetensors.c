/*
 * fuzz_safetensors.c: libFuzzer target for the safetensors reader, the one parser that takes
 * whole files from outside. Any input must be either refused with an error code or accepted as
 * a file whose every tensor lies inside the input; an accepted file must survive a write and a
 * second parse unchanged (names, dtypes, shapes, bytes and metadata lookups).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gencache.h"

typedef struct membuf {
    unsigned char *p;
    size_t n, cap;
} membuf;

static int mem_write(void *ud, const void *data, size_t size)
{
    membuf *m = ud;
    if (m->n + size > m->cap) {
        size_t cap = (m->n + size) * 2 + 64;
        unsigned char *p = realloc(m->p, cap);
        if (!p)
            return GENCACHE_ENOMEM;
        m->p = p;
        m->cap = cap;
    }
    memcpy(m->p + m->n, data, size);
    m->n += size;
    return GENCACHE_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    gencache_safetensors *st = NULL;
    char err[256];
    gencache_safetensors_options o;
    gencache_safetensors_options_init(&o);
    o.errbuf = err;
    o.errbuf_size = sizeof err;
    /* A small header limit keeps the fuzzer in the interesting sizes. */
    o.max_header_bytes = 1 << 20;
    if (gencache_safetensors_parse(data, size, &o, &st) != GENCACHE_OK) {
        if (st)
            abort();
        return 0;
    }
    size_t n = gencache_safetensors_count(st);
    gencache_safetensors_tensor *t = calloc(n + 1, sizeof *t);
    if (!t)
        abort();
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (gencache_safetensors_get(st, i, &t[i]) != GENCACHE_OK)
            abort();
        const uint8_t *p = t[i].data;
        if (p < data || p + t[i].size > data + size)
            abort();
        if (gencache_tensor_check(t[i].dtype, t[i].ndim, t[i].shape, t[i].size) != GENCACHE_OK)
            abort();
        total += t[i].size;
    }
    if (total > size)
        abort();
    (void)gencache_safetensors_metadata(st, "format");

    membuf m = {0};
    if (gencache_safetensors_write_to(mem_write, &m, t, n, NULL, 0) == GENCACHE_OK) {
        gencache_safetensors *again = NULL;
        if (gencache_safetensors_parse(m.p, m.n, NULL, &again) != GENCACHE_OK)
            abort();
        if (gencache_safetensors_count(again) != n)
            abort();
        for (size_t i = 0; i < n; i++) {
            gencache_safetensors_tensor r;
            if (gencache_safetensors_find(again, t[i].name, &r) != GENCACHE_OK ||
                r.dtype != t[i].dtype || r.ndim != t[i].ndim || r.size != t[i].size ||
                memcmp(r.shape, t[i].shape, sizeof r.shape[0] * r.ndim) != 0 ||
                (r.size && memcmp(r.data, t[i].data, r.size) != 0))
                abort();
        }
        gencache_safetensors_close(again);
    }
    free(m.p);
    free(t);
    gencache_safetensors_close(st);
    return 0;
}
