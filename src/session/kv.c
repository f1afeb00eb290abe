/*
 * kv.c: attention KV windows. Each layer keeps its K rows and its V rows in one contiguous
 * buffer each, in position order, with the live rows at [head, head + n): a retrieve is a
 * pointer into the buffer, a prune only moves head forward, and an append that reaches the end
 * either slides the live rows back to the start (when at least half the buffer is free, so each
 * row moves O(1) times on average) or doubles the buffer. With int8 storage a row is quantized
 * with its own scale, and retrieve dequantizes into one reusable buffer per layer.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "tensor/tensor.h"

typedef struct kv_layer {
    unsigned char *k, *v; /* cap rows each */
    float *ks, *vs;       /* int8: one scale per row; else NULL */
    uint64_t cap, head, n;
    int64_t first_pos;      /* position of row `head` */
    unsigned char *dk, *dv; /* int8: dequantized rows for retrieve */
    uint64_t dcap;          /* rows dk and dv can hold */
    uint64_t dn;            /* rows of dk/dv that mirror the rows from `head` on */
} kv_layer;

struct gencache_kv {
    gencache_kv_options o;
    const gencache__codec_kernels *kern;
    size_t kb, vb;   /* stored row bytes */
    size_t kob, vob; /* row bytes as retrieve returns them */
    kv_layer *layers;
    uint64_t held; /* bytes of buffers held (charged to the cache when it has one) */
    uint64_t offloaded, dropped;
};

void gencache_kv_options_init(gencache_kv_options *opts)
{
    memset(opts, 0, sizeof *opts);
    opts->struct_size = sizeof *opts;
    opts->dtype = GENCACHE_DTYPE_F16;
    opts->initial_positions = 64;
}

static bool is_float(gencache_dtype d)
{
    return d == GENCACHE_DTYPE_F32 || d == GENCACHE_DTYPE_F16 || d == GENCACHE_DTYPE_BF16;
}

/* Accounts for `delta` more (or fewer) bytes held, against the cache's budget if there is one. */
static int charge(gencache_kv *kv, int64_t delta)
{
    if (kv->o.cache && delta != 0) {
        int rc = gencache__cache_charge(kv->o.cache, delta);
        if (rc != GENCACHE_OK)
            return rc;
    }
    kv->held = (uint64_t)((int64_t)kv->held + delta);
    return GENCACHE_OK;
}

int gencache_kv_new(const gencache_kv_options *opts, gencache_kv **out)
{
    if (out)
        *out = NULL;
    if (!opts || !out || opts->struct_size < sizeof *opts || opts->n_layers == 0 ||
        opts->n_layers > (1u << 20) || opts->k_elems == 0 || opts->v_elems == 0 ||
        gencache_dtype_size(opts->dtype) == 0 || (opts->int8 && !is_float(opts->dtype)))
        return GENCACHE_EINVAL;
    size_t es = gencache_dtype_size(opts->dtype);
    if (opts->k_elems > (UINT64_C(1) << 32) || opts->v_elems > (UINT64_C(1) << 32))
        return GENCACHE_EINVAL;
    gencache_kv *kv = calloc(1, sizeof *kv);
    if (!kv)
        return GENCACHE_ENOMEM;
    kv->o = *opts;
    if (kv->o.initial_positions == 0)
        kv->o.initial_positions = 64;
    kv->kern = gencache__codec_kernels_best();
    kv->kob = (size_t)opts->k_elems * es;
    kv->vob = (size_t)opts->v_elems * es;
    kv->kb = opts->int8 ? (size_t)opts->k_elems : kv->kob;
    kv->vb = opts->int8 ? (size_t)opts->v_elems : kv->vob;
    kv->layers = calloc(opts->n_layers, sizeof *kv->layers);
    if (!kv->layers) {
        free(kv);
        return GENCACHE_ENOMEM;
    }
    *out = kv;
    return GENCACHE_OK;
}

static uint64_t layer_bytes(const gencache_kv *kv, uint64_t cap)
{
    return cap * (kv->kb + kv->vb + (kv->o.int8 ? 2 * sizeof(float) : 0));
}

/* Makes room for one more row at head + n. */
static int make_room(gencache_kv *kv, kv_layer *L)
{
    if (L->head + L->n < L->cap)
        return GENCACHE_OK;
    if (L->head > 0 && L->head >= L->n) {
        memmove(L->k, L->k + L->head * kv->kb, L->n * kv->kb);
        memmove(L->v, L->v + L->head * kv->vb, L->n * kv->vb);
        if (kv->o.int8) {
            memmove(L->ks, L->ks + L->head, L->n * sizeof(float));
            memmove(L->vs, L->vs + L->head, L->n * sizeof(float));
        }
        L->head = 0;
        return GENCACHE_OK;
    }
    uint64_t cap = L->cap ? L->cap * 2 : kv->o.initial_positions;
    if (cap > (UINT64_C(1) << 40) / (kv->kb + kv->vb + 8))
        return GENCACHE_ENOMEM;
    int64_t delta = (int64_t)(layer_bytes(kv, cap) - layer_bytes(kv, L->cap));
    int rc = charge(kv, delta);
    if (rc != GENCACHE_OK)
        return rc;
    unsigned char *k = realloc(L->k, (size_t)(cap * kv->kb));
    if (k)
        L->k = k;
    unsigned char *v = k ? realloc(L->v, (size_t)(cap * kv->vb)) : NULL;
    if (v)
        L->v = v;
    bool ok = k && v;
    if (ok && kv->o.int8) {
        float *ks = realloc(L->ks, (size_t)cap * sizeof(float));
        if (ks)
            L->ks = ks;
        float *vs = ks ? realloc(L->vs, (size_t)cap * sizeof(float)) : NULL;
        if (vs)
            L->vs = vs;
        ok = ks && vs;
    }
    if (!ok) {
        /* Buffers that did grow keep their old contents; cap stays, so they are merely larger. */
        charge(kv, -delta);
        return GENCACHE_ENOMEM;
    }
    L->cap = cap;
    return GENCACHE_OK;
}

static int amax_row(const gencache_kv *kv, const void *row, size_t n, float *out)
{
    switch (kv->o.dtype) {
    case GENCACHE_DTYPE_F32:
        return kv->kern->amax_f32(row, n, out);
    case GENCACHE_DTYPE_F16:
        return kv->kern->amax_f16(row, n, out);
    default:
        return kv->kern->amax_bf16(row, n, out);
    }
}

static float quant_row(const gencache_kv *kv, int8_t *dst, const void *row, size_t n, float amax)
{
    float scale, inv;
    gencache__quant_scale(amax, &scale, &inv);
    switch (kv->o.dtype) {
    case GENCACHE_DTYPE_F32:
        kv->kern->quant_f32(dst, row, n, inv);
        break;
    case GENCACHE_DTYPE_F16:
        kv->kern->quant_f16(dst, row, n, inv);
        break;
    default:
        kv->kern->quant_bf16(dst, row, n, inv);
        break;
    }
    return scale;
}

int gencache_kv_append(gencache_kv *kv, uint32_t layer, int64_t pos, const void *k, const void *v)
{
    if (!kv || layer >= kv->o.n_layers || pos < 0 || !k || !v)
        return GENCACHE_EINVAL;
    kv_layer *L = &kv->layers[layer];
    if (L->n > 0 && pos != L->first_pos + (int64_t)L->n)
        return GENCACHE_EINVAL;
    float ka = 0, va = 0;
    if (kv->o.int8 && (amax_row(kv, k, (size_t)kv->o.k_elems, &ka) ||
                       amax_row(kv, v, (size_t)kv->o.v_elems, &va)))
        return GENCACHE_EINVAL;
    int rc = make_room(kv, L);
    if (rc != GENCACHE_OK)
        return rc;
    if (L->n == 0) {
        L->head = 0;
        L->first_pos = pos;
    }
    uint64_t row = L->head + L->n;
    if (kv->o.int8) {
        L->ks[row] = quant_row(kv, (int8_t *)(L->k + row * kv->kb), k, (size_t)kv->o.k_elems, ka);
        L->vs[row] = quant_row(kv, (int8_t *)(L->v + row * kv->vb), v, (size_t)kv->o.v_elems, va);
    } else {
        memcpy(L->k + row * kv->kb, k, kv->kb);
        memcpy(L->v + row * kv->vb, v, kv->vb);
    }
    L->n++;
    return GENCACHE_OK;
}

static void dequant_rows(const gencache_kv *kv, unsigned char *dst, const unsigned char *src,
                         const float *scales, uint64_t rows, size_t elems, size_t out_row)
{
    for (uint64_t r = 0; r < rows; r++) {
        const int8_t *q = (const int8_t *)(src + r * elems);
        void *y = dst + r * out_row;
        switch (kv->o.dtype) {
        case GENCACHE_DTYPE_F32:
            kv->kern->dequant_f32(y, q, elems, scales[r]);
            break;
        case GENCACHE_DTYPE_F16:
            kv->kern->dequant_f16(y, q, elems, scales[r]);
            break;
        default:
            kv->kern->dequant_bf16(y, q, elems, scales[r]);
            break;
        }
    }
}

int gencache_kv_retrieve(gencache_kv *kv, uint32_t layer, int64_t end_pos, gencache_kv_view *out)
{
    if (out)
        memset(out, 0, sizeof *out);
    if (!kv || !out || layer >= kv->o.n_layers)
        return GENCACHE_EINVAL;
    kv_layer *L = &kv->layers[layer];
    if (L->n == 0 || end_pos <= L->first_pos)
        return GENCACHE_ENOTFOUND;
    uint64_t m = (uint64_t)(end_pos - L->first_pos);
    if (m > L->n)
        m = L->n;
    if (!kv->o.int8) {
        out->k = L->k + L->head * kv->kb;
        out->v = L->v + L->head * kv->vb;
    } else {
        if (m > L->dcap) {
            uint64_t cap = L->cap; /* never more rows than the layer can hold */
            int64_t delta = (int64_t)((cap - L->dcap) * (kv->kob + kv->vob));
            int rc = charge(kv, delta);
            if (rc != GENCACHE_OK)
                return rc;
            unsigned char *dk = realloc(L->dk, (size_t)(cap * kv->kob));
            if (dk)
                L->dk = dk;
            unsigned char *dv = dk ? realloc(L->dv, (size_t)(cap * kv->vob)) : NULL;
            if (dv)
                L->dv = dv;
            if (!dk || !dv) {
                charge(kv, -delta);
                return GENCACHE_ENOMEM;
            }
            L->dcap = cap;
        }
        /* Rows never change once appended, so only rows not dequantized yet are: a decode
         * loop (append one, retrieve all) pays for one row per retrieve. */
        if (m > L->dn) {
            uint64_t h = L->head + L->dn, r = m - L->dn;
            dequant_rows(kv, L->dk + L->dn * kv->kob, L->k + h * kv->kb, L->ks + h, r,
                         (size_t)kv->o.k_elems, kv->kob);
            dequant_rows(kv, L->dv + L->dn * kv->vob, L->v + h * kv->vb, L->vs + h, r,
                         (size_t)kv->o.v_elems, kv->vob);
            L->dn = m;
        }
        out->k = L->dk;
        out->v = L->dv;
    }
    out->first_pos = L->first_pos;
    out->n_positions = m;
    return GENCACHE_OK;
}

int gencache_kv_prune(gencache_kv *kv, uint64_t keep_last_n, uint64_t *bytes_moved)
{
    if (bytes_moved)
        *bytes_moved = 0;
    if (!kv)
        return GENCACHE_EINVAL;
    uint64_t moved = 0;
    for (uint32_t i = 0; i < kv->o.n_layers; i++) {
        kv_layer *L = &kv->layers[i];
        if (L->n <= keep_last_n)
            continue;
        uint64_t drop = L->n - keep_last_n;
        uint64_t bytes = drop * (kv->kb + kv->vb);
        if (kv->o.offload) {
            gencache_kv_block b;
            memset(&b, 0, sizeof b);
            b.layer = i;
            b.first_pos = L->first_pos;
            b.n_positions = drop;
            b.dtype = kv->o.int8 ? GENCACHE_DTYPE_I8 : kv->o.dtype;
            b.k = L->k + L->head * kv->kb;
            b.v = L->v + L->head * kv->vb;
            b.k_row_bytes = kv->kb;
            b.v_row_bytes = kv->vb;
            if (kv->o.int8) {
                b.k_scales = L->ks + L->head;
                b.v_scales = L->vs + L->head;
            }
            kv->o.offload(kv->o.offload_userdata, &b);
            kv->offloaded += bytes;
        } else {
            kv->dropped += bytes;
        }
        moved += bytes;
        L->head += drop;
        L->n -= drop;
        L->dn = 0; /* the dequantized rows no longer start at head */
        L->first_pos += (int64_t)drop;
        if (L->n == 0)
            L->head = 0;
    }
    if (bytes_moved)
        *bytes_moved = moved;
    return GENCACHE_OK;
}

int gencache_kv_stats_get(const gencache_kv *kv, gencache_kv_stats *out)
{
    if (out)
        memset(out, 0, sizeof *out);
    if (!kv || !out)
        return GENCACHE_EINVAL;
    for (uint32_t i = 0; i < kv->o.n_layers; i++)
        out->positions += kv->layers[i].n;
    out->bytes = kv->held;
    out->bytes_offloaded = kv->offloaded;
    out->bytes_dropped = kv->dropped;
    return GENCACHE_OK;
}

void gencache_kv_free(gencache_kv *kv)
{
    if (!kv)
        return;
    for (uint32_t i = 0; i < kv->o.n_layers; i++) {
        kv_layer *L = &kv->layers[i];
        free(L->k);
        free(L->v);
        free(L->ks);
        free(L->vs);
        free(L->dk);
        free(L->dv);
    }
    charge(kv, -(int64_t)kv->held);
    free(kv->layers);
    free(kv);
}
