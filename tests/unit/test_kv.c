/*
 * test_kv.c: KV windows: rows come back in position order as one contiguous block (a pointer
 * into the layer's buffer, not a copy), positions must follow each other, pruning keeps the
 * newest rows and hands the older ones to the offload callback with their bytes counted, int8
 * storage stays within half a row scale, and growth is charged to a cache's budget.
 */
#include <math.h>

#include "test.h"

enum { KE = 5, VE = 3 };

/* Row contents that identify layer, position and element. */
static float kval(uint32_t layer, int64_t pos, int e)
{
    return (float)(layer * 100000 + pos * 10 + e);
}

static float vval(uint32_t layer, int64_t pos, int e)
{
    return -(float)(layer * 100000 + pos * 10 + e);
}

static void append(gencache_kv *kv, uint32_t layer, int64_t pos)
{
    float k[KE], v[VE];
    for (int e = 0; e < KE; e++)
        k[e] = kval(layer, pos, e);
    for (int e = 0; e < VE; e++)
        v[e] = vval(layer, pos, e);
    CHECK_OK(gencache_kv_append(kv, layer, pos, k, v));
}

static void check_rows(const gencache_kv_view *w, uint32_t layer, int64_t first, uint64_t n)
{
    CHECK_INT_EQ(w->first_pos, first);
    CHECK_UINT_EQ(w->n_positions, n);
    const float *k = w->k, *v = w->v;
    for (uint64_t r = 0; r < n; r++) {
        for (int e = 0; e < KE; e++)
            CHECK(k[r * KE + e] == kval(layer, first + (int64_t)r, e));
        for (int e = 0; e < VE; e++)
            CHECK(v[r * VE + e] == vval(layer, first + (int64_t)r, e));
    }
}

static gencache_kv *new_kv(int int8, gencache_kv_offload_fn fn, void *ud)
{
    gencache_kv_options o;
    gencache_kv_options_init(&o);
    o.n_layers = 3;
    o.dtype = GENCACHE_DTYPE_F32;
    o.k_elems = KE;
    o.v_elems = VE;
    o.int8 = int8;
    o.initial_positions = 4;
    o.offload = fn;
    o.offload_userdata = ud;
    gencache_kv *kv;
    CHECK_OK(gencache_kv_new(&o, &kv));
    return kv;
}

TEST_CASE(retrieve_order)
{
    gencache_kv *kv = new_kv(0, NULL, NULL);
    for (int64_t p = 10; p < 30; p++)
        for (uint32_t l = 0; l < 3; l++)
            append(kv, l, p);
    gencache_kv_view w;
    for (uint32_t l = 0; l < 3; l++) {
        CHECK_OK(gencache_kv_retrieve(kv, l, 30, &w));
        check_rows(&w, l, 10, 20);
        CHECK_OK(gencache_kv_retrieve(kv, l, 1000, &w)); /* past the end: everything */
        check_rows(&w, l, 10, 20);
        CHECK_OK(gencache_kv_retrieve(kv, l, 15, &w)); /* up to, not including, 15 */
        check_rows(&w, l, 10, 5);
        CHECK_OK(gencache_kv_retrieve(kv, l, 11, &w));
        check_rows(&w, l, 10, 1);
        CHECK_RC(gencache_kv_retrieve(kv, l, 10, &w), GENCACHE_ENOTFOUND);
        CHECK(w.k == NULL && w.n_positions == 0);
    }
    /* Zero copy: the same rows come back at the same address. */
    gencache_kv_view a, b;
    CHECK_OK(gencache_kv_retrieve(kv, 1, 30, &a));
    CHECK_OK(gencache_kv_retrieve(kv, 1, 20, &b));
    CHECK(a.k == b.k && a.v == b.v);
    gencache_kv_stats st;
    CHECK_OK(gencache_kv_stats_get(kv, &st));
    CHECK_UINT_EQ(st.positions, 60);
    CHECK(st.bytes >= 60 * (KE + VE) * 4);
    gencache_kv_free(kv);
}

TEST_CASE(bad_calls)
{
    gencache_kv *kv = new_kv(0, NULL, NULL);
    float k[KE] = {0}, v[VE] = {0};
    CHECK_RC(gencache_kv_append(kv, 3, 0, k, v), GENCACHE_EINVAL); /* no such layer */
    CHECK_RC(gencache_kv_append(kv, 0, -1, k, v), GENCACHE_EINVAL);
    CHECK_RC(gencache_kv_append(kv, 0, 0, NULL, v), GENCACHE_EINVAL);
    CHECK_OK(gencache_kv_append(kv, 0, 5, k, v));
    CHECK_RC(gencache_kv_append(kv, 0, 5, k, v), GENCACHE_EINVAL); /* repeated */
    CHECK_RC(gencache_kv_append(kv, 0, 7, k, v), GENCACHE_EINVAL); /* skipped 6 */
    CHECK_RC(gencache_kv_append(kv, 0, 4, k, v), GENCACHE_EINVAL); /* backwards */
    CHECK_OK(gencache_kv_append(kv, 0, 6, k, v));
    gencache_kv_view w;
    CHECK_RC(gencache_kv_retrieve(kv, 1, 100, &w), GENCACHE_ENOTFOUND); /* empty layer */
    CHECK_RC(gencache_kv_retrieve(kv, 9, 100, &w), GENCACHE_EINVAL);
    gencache_kv_free(kv);
    gencache_kv_free(NULL);

    gencache_kv_options o;
    gencache_kv_options_init(&o);
    CHECK_RC(gencache_kv_new(&o, &kv), GENCACHE_EINVAL); /* no layers, no sizes */
    CHECK(kv == NULL);
    o.n_layers = 1;
    o.k_elems = 1;
    o.v_elems = 1;
    o.dtype = GENCACHE_DTYPE_I32;
    o.int8 = 1;
    CHECK_RC(gencache_kv_new(&o, &kv), GENCACHE_EINVAL); /* int8 needs a float dtype */
    o.int8 = 0;
    CHECK_OK(gencache_kv_new(&o, &kv)); /* any dtype is fine stored as is */
    gencache_kv_free(kv);
}

typedef struct sink {
    int calls;
    uint64_t rows, bytes;
    int64_t next_pos[3];
    int bad;
} sink;

static void offload(void *ud, const gencache_kv_block *b)
{
    sink *s = ud;
    s->calls++;
    s->rows += b->n_positions;
    s->bytes += b->n_positions * (b->k_row_bytes + b->v_row_bytes);
    /* Offloaded rows arrive in order, each layer continuing where it stopped. */
    if (s->next_pos[b->layer] != 0 && b->first_pos != s->next_pos[b->layer])
        s->bad++;
    s->next_pos[b->layer] = b->first_pos + (int64_t)b->n_positions;
    if (b->dtype == GENCACHE_DTYPE_F32) {
        const float *k = b->k;
        for (uint64_t r = 0; r < b->n_positions; r++)
            if (k[r * KE] != kval(b->layer, b->first_pos + (int64_t)r, 0))
                s->bad++;
    } else if (b->dtype != GENCACHE_DTYPE_I8 || !b->k_scales || !b->v_scales) {
        s->bad++;
    }
}

TEST_CASE(prune_and_offload)
{
    sink s = {0};
    gencache_kv *kv = new_kv(0, offload, &s);
    int64_t next = 0;
    for (int round = 0; round < 40; round++) {
        /* Append a varying number of positions, then keep the last 6: buffers slide and grow. */
        int add = 1 + round % 9;
        for (int i = 0; i < add; i++, next++)
            for (uint32_t l = 0; l < 3; l++)
                append(kv, l, next);
        uint64_t moved = 0;
        gencache_kv_stats before;
        CHECK_OK(gencache_kv_stats_get(kv, &before));
        CHECK_OK(gencache_kv_prune(kv, 6, &moved));
        uint64_t held = before.positions / 3;
        uint64_t dropped = held > 6 ? held - 6 : 0;
        CHECK_UINT_EQ(moved, dropped * 3 * (KE + VE) * 4);
        for (uint32_t l = 0; l < 3; l++) {
            gencache_kv_view w;
            CHECK_OK(gencache_kv_retrieve(kv, l, next, &w));
            uint64_t keep = held < 6 ? held : 6;
            check_rows(&w, l, next - (int64_t)keep, keep);
        }
    }
    CHECK_INT_EQ(s.bad, 0);
    gencache_kv_stats st;
    CHECK_OK(gencache_kv_stats_get(kv, &st));
    CHECK_UINT_EQ(st.positions, 18);
    CHECK_UINT_EQ(s.rows, (uint64_t)(next - 6) * 3);
    CHECK_UINT_EQ(st.bytes_offloaded, s.bytes);
    CHECK_UINT_EQ(st.bytes_dropped, 0);
    /* Buffers stay small: sliding, not growing without bound. */
    CHECK_UINT_LE(st.bytes, 3 * 32 * (KE + VE) * 4);
    /* Keeping 0 empties every layer; appends then start anew at any position. */
    CHECK_OK(gencache_kv_prune(kv, 0, NULL));
    gencache_kv_view w;
    CHECK_RC(gencache_kv_retrieve(kv, 0, 1 << 30, &w), GENCACHE_ENOTFOUND);
    append(kv, 0, 1000);
    CHECK_OK(gencache_kv_retrieve(kv, 0, 2000, &w));
    check_rows(&w, 0, 1000, 1);
    gencache_kv_free(kv);

    /* With no callback, pruned rows are dropped and counted as such. */
    kv = new_kv(0, NULL, NULL);
    for (int64_t p = 0; p < 10; p++)
        append(kv, 2, p);
    uint64_t moved;
    CHECK_OK(gencache_kv_prune(kv, 4, &moved));
    CHECK_UINT_EQ(moved, 6 * (KE + VE) * 4);
    CHECK_OK(gencache_kv_stats_get(kv, &st));
    CHECK_UINT_EQ(st.bytes_dropped, moved);
    CHECK_UINT_EQ(st.bytes_offloaded, 0);
    CHECK_OK(gencache_kv_prune(kv, 100, &moved)); /* nothing to prune */
    CHECK_UINT_EQ(moved, 0);
    gencache_kv_free(kv);
}

TEST_CASE(int8_storage)
{
    sink s = {0};
    gencache_kv *kv = new_kv(1, offload, &s);
    for (int64_t p = 0; p < 50; p++)
        for (uint32_t l = 0; l < 3; l++)
            append(kv, l, p);
    for (uint32_t l = 0; l < 3; l++) {
        gencache_kv_view w;
        CHECK_OK(gencache_kv_retrieve(kv, l, 50, &w));
        CHECK_UINT_EQ(w.n_positions, 50);
        const float *k = w.k, *v = w.v;
        for (int64_t r = 0; r < 50; r++) {
            /* Each row's scale is its largest magnitude / 127. */
            double ks = fabs((double)kval(l, r, KE - 1)) / 127,
                   vs = fabs((double)vval(l, r, VE - 1)) / 127;
            for (int e = 0; e < KE; e++)
                CHECK(fabs((double)k[r * KE + e] - kval(l, r, e)) <=
                      ks / 2 * (1 + 1e-6) + 1e-6 * fabs(kval(l, r, e)));
            for (int e = 0; e < VE; e++)
                CHECK(fabs((double)v[r * VE + e] - vval(l, r, e)) <=
                      vs / 2 * (1 + 1e-6) + 1e-6 * fabs(vval(l, r, e)));
        }
    }
    uint64_t moved;
    CHECK_OK(gencache_kv_prune(kv, 10, &moved));
    CHECK_UINT_EQ(moved, 3 * 40 * (KE + VE)); /* int8 rows: one byte per element */
    CHECK_UINT_EQ(s.rows, 120);
    CHECK_INT_EQ(s.bad, 0);
    gencache_kv_view w;
    CHECK_OK(gencache_kv_retrieve(kv, 0, 50, &w));
    CHECK_INT_EQ(w.first_pos, 40);
    CHECK_UINT_EQ(w.n_positions, 10);
    CHECK(fabs(((const float *)w.k)[0] - kval(0, 40, 0)) < 4);
    /* A decode loop: append one, retrieve all, prune now and then. Every retrieve shows every
     * row (dequantized rows are reused between retrieves, and refreshed after a prune). */
    for (int64_t p = 50; p < 90; p++) {
        append(kv, 1, p);
        if (p % 7 == 0)
            CHECK_OK(gencache_kv_prune(kv, 5, NULL));
        CHECK_OK(gencache_kv_retrieve(kv, 1, p + 1, &w));
        CHECK_INT_EQ(w.first_pos + (int64_t)w.n_positions, p + 1);
        for (uint64_t r = 0; r < w.n_positions; r++) {
            int64_t pos = w.first_pos + (int64_t)r;
            float want = kval(1, pos, KE - 1);
            CHECK(fabs(((const float *)w.k)[r * KE + KE - 1] - want) <= want / 254 + 1e-3);
        }
    }
    /* NaN in a row of an int8 window is refused, and nothing is appended. */
    float k[KE] = {1, 2, NAN, 4, 5}, v[VE] = {1, 2, 3};
    CHECK_RC(gencache_kv_append(kv, 0, 50, k, v), GENCACHE_EINVAL);
    k[2] = 3;
    CHECK_OK(gencache_kv_append(kv, 0, 50, k, v));
    gencache_kv_free(kv);
}

TEST_CASE(budget)
{
    gencache_options co;
    gencache_options_init(&co);
    co.mem_max_bytes = 60 * 1024;
    gencache *c;
    CHECK_OK(gencache_open(&c, &co));
    gencache_kv_options o;
    gencache_kv_options_init(&o);
    o.n_layers = 1;
    o.dtype = GENCACHE_DTYPE_F32;
    o.k_elems = 256;
    o.v_elems = 256;
    o.initial_positions = 8;
    o.cache = c;
    gencache_kv *kv;
    CHECK_OK(gencache_kv_new(&o, &kv));
    static float row[256];
    int64_t p = 0;
    int rc;
    while ((rc = gencache_kv_append(kv, 0, p, row, row)) == GENCACHE_OK)
        p++;
    CHECK_RC(rc, GENCACHE_EFULL);
    CHECK_INT_EQ(p, 16); /* 2 KiB a row: buffers of 8 and 16 rows fit in 60 KiB, 32 do not */
    gencache_kv_stats st;
    CHECK_OK(gencache_kv_stats_get(kv, &st));
    CHECK_UINT_EQ(st.positions, (uint64_t)p);
    gencache_kv_free(kv); /* gives the bytes back */
    CHECK_OK(gencache_kv_new(&o, &kv));
    for (int64_t i = 0; i < 16; i++)
        CHECK_OK(gencache_kv_append(kv, 0, i, row, row));
    gencache_kv_free(kv);
    gencache_close(c);
}
