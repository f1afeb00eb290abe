/*
 * quant.c: symmetric int8 quantization of f32/f16/bf16 tensors (per tensor, per channel, per
 * group) and its inverse, over the payload layout of docs/tensors.md: an 88-byte little-endian
 * header, the f32 scales, then the int8 elements at a 64-byte aligned offset. The invariant: a
 * payload that gencache_quant_info_get() accepts can be decoded without reading outside it, so
 * decode validates first and then trusts the header.
 */
#include <math.h>
#include <string.h>

#include "internal.h"
#include "tensor/tensor.h"

#define QT_MAGIC      "GCQT"
#define QT_VERSION    1
#define QT_HEADER     88u
#define QT_MAX_SCALES (UINT64_C(1) << 58)

typedef struct layout {
    uint64_t numel;
    uint64_t n_scales;
    uint64_t outer, channels, inner; /* INT8_CHANNEL: element (o, c, i) at (o*C + c)*inner + i */
    uint64_t group;                  /* INT8_GROUP: elements per scale */
    uint64_t data_off, total;
} layout;

static void put_f32(unsigned char *p, float f)
{
    uint32_t b;
    memcpy(&b, &f, sizeof b);
    gencache__le32_put(p, b);
}

static float get_f32(const unsigned char *p)
{
    uint32_t b = gencache__le32_get(p);
    float f;
    memcpy(&f, &b, sizeof f);
    return f;
}

static bool is_float(gencache_dtype d)
{
    return d == GENCACHE_DTYPE_F32 || d == GENCACHE_DTYPE_F16 || d == GENCACHE_DTYPE_BF16;
}

/* Computes the layout of a payload for a tensor, codec and parameters. */
static int make_layout(const gencache_tensor_desc *d, gencache_codec codec, uint32_t axis,
                       uint32_t group_size, layout *L)
{
    memset(L, 0, sizeof *L);
    if (!is_float(d->dtype))
        return d->dtype == GENCACHE_DTYPE_NONE || gencache_dtype_size(d->dtype) == 0
                   ? GENCACHE_EINVAL
                   : GENCACHE_EUNSUPPORTED;
    if (d->byte_order != GENCACHE_BYTE_ORDER_LITTLE)
        return GENCACHE_EINVAL;
    int rc = gencache__tensor_numel(d->ndim, d->shape, &L->numel);
    if (rc != GENCACHE_OK)
        return rc;
    switch (codec) {
    case GENCACHE_CODEC_INT8:
        L->n_scales = 1;
        break;
    case GENCACHE_CODEC_INT8_CHANNEL:
        if (axis >= d->ndim)
            return GENCACHE_EINVAL;
        L->outer = 1;
        L->inner = 1;
        for (uint32_t i = 0; i < axis; i++)
            L->outer *= (uint64_t)d->shape[i];
        for (uint32_t i = axis + 1; i < d->ndim; i++)
            L->inner *= (uint64_t)d->shape[i];
        L->channels = (uint64_t)d->shape[axis];
        if (L->numel == 0)
            L->outer = L->inner = 0; /* the products above may have overflowed past a zero */
        L->n_scales = L->channels;
        break;
    case GENCACHE_CODEC_INT8_GROUP:
        if (group_size == 0)
            return GENCACHE_EINVAL;
        L->group = group_size;
        L->n_scales = (L->numel + group_size - 1) / group_size;
        break;
    default:
        return GENCACHE_EINVAL;
    }
    if (L->n_scales > QT_MAX_SCALES)
        return GENCACHE_ELIMIT;
    L->data_off = (QT_HEADER + 4 * L->n_scales + 63) & ~(uint64_t)63;
    L->total = L->data_off + L->numel;
    if (L->total > SIZE_MAX / 2)
        return GENCACHE_ELIMIT;
    return GENCACHE_OK;
}

static const gencache_quant_options *opts_or_default(const gencache_quant_options *opts,
                                                     gencache_quant_options *tmp)
{
    if (opts)
        return opts->struct_size >= sizeof *opts ? opts : NULL;
    gencache_quant_options_init(tmp);
    return tmp;
}

void gencache_quant_options_init(gencache_quant_options *opts)
{
    memset(opts, 0, sizeof *opts);
    opts->struct_size = sizeof *opts;
    opts->codec = GENCACHE_CODEC_INT8;
    opts->axis = 0;
    opts->group_size = 128;
}

int gencache_quant_size(const gencache_tensor_desc *desc, const gencache_quant_options *opts,
                        size_t *out)
{
    if (out)
        *out = 0;
    gencache_quant_options tmp;
    const gencache_quant_options *o = opts_or_default(opts, &tmp);
    if (!desc || !out || !o)
        return GENCACHE_EINVAL;
    layout L;
    int rc = make_layout(desc, o->codec, o->axis, o->group_size, &L);
    if (rc == GENCACHE_OK)
        *out = (size_t)L.total;
    return rc;
}

static int amax_block(const gencache__codec_kernels *k, gencache_dtype dt, const void *p, size_t n,
                      float *out)
{
    if (dt == GENCACHE_DTYPE_F32)
        return k->amax_f32(p, n, out);
    if (dt == GENCACHE_DTYPE_F16)
        return k->amax_f16(p, n, out);
    return k->amax_bf16(p, n, out);
}

static void quant_block(const gencache__codec_kernels *k, gencache_dtype dt, int8_t *q,
                        const void *p, size_t n, float inv)
{
    if (dt == GENCACHE_DTYPE_F32)
        k->quant_f32(q, p, n, inv);
    else if (dt == GENCACHE_DTYPE_F16)
        k->quant_f16(q, p, n, inv);
    else
        k->quant_bf16(q, p, n, inv);
}

/* Per-tensor quantization needs the maximum of the whole tensor before it can quantize the first
 * element, so it reads the tensor twice. The second pass walks the tensor backwards, a block of
 * GENCACHE__LARGE_BLOCK elements at a time (each block forwards, as the hardware prefetchers
 * expect, and large enough for the kernels to stream their output): it starts on the blocks the
 * maximum pass read last, the ones that may still be in the cache, where a forward pass would
 * find its first blocks evicted by the last ones. Below two blocks it is one call. */
static void quant_tensor(const gencache__codec_kernels *k, gencache_dtype dt, int8_t *q,
                         const unsigned char *x, size_t n, float inv)
{
    const size_t block = GENCACHE__LARGE_BLOCK, es = gencache_dtype_size(dt);
    if (n < 2 * block) {
        quant_block(k, dt, q, x, n, inv);
        return;
    }
    /* The last block takes the remainder, so every call streams. */
    size_t last = (n / block - 1) * block;
    quant_block(k, dt, q + last, x + last * es, n - last, inv);
    while (last > 0) {
        last -= block;
        quant_block(k, dt, q + last, x + last * es, block, inv);
    }
}

static void dequant_block(const gencache__codec_kernels *k, gencache_dtype dt, void *y,
                          const int8_t *q, size_t n, float scale)
{
    if (dt == GENCACHE_DTYPE_F32)
        k->dequant_f32(y, q, n, scale);
    else if (dt == GENCACHE_DTYPE_F16)
        k->dequant_f16(y, q, n, scale);
    else
        k->dequant_bf16(y, q, n, scale);
}

static void scale_of(float amax, float *scale, float *inv)
{
    gencache__quant_scale(amax, scale, inv);
}

int gencache__quant_encode_with(const gencache__codec_kernels *k, const gencache_tensor_desc *desc,
                                const void *data, size_t size, const gencache_quant_options *opts,
                                void *dst, size_t dst_size, size_t *out_size)
{
    if (out_size)
        *out_size = 0;
    gencache_quant_options tmp;
    const gencache_quant_options *o = opts_or_default(opts, &tmp);
    if (!desc || !o || (size > 0 && !data) || !dst)
        return GENCACHE_EINVAL;
    layout L;
    int rc = make_layout(desc, o->codec, o->axis, o->group_size, &L);
    if (rc != GENCACHE_OK)
        return rc;
    size_t es = gencache_dtype_size(desc->dtype);
    if ((uint64_t)size != L.numel * es)
        return GENCACHE_EINVAL;
    if (dst_size < L.total)
        return GENCACHE_ETOOBIG;

    unsigned char *out = dst;
    memset(out, 0, L.data_off);
    memcpy(out, QT_MAGIC, 4);
    out[4] = QT_VERSION;
    out[5] = (unsigned char)o->codec;
    out[6] = (unsigned char)desc->dtype;
    out[7] = (unsigned char)desc->ndim;
    gencache__le32_put(out + 8, o->codec == GENCACHE_CODEC_INT8_CHANNEL ? o->axis : 0);
    gencache__le32_put(out + 12, o->codec == GENCACHE_CODEC_INT8_GROUP ? o->group_size : 0);
    gencache__le64_put(out + 16, L.n_scales);
    for (uint32_t i = 0; i < desc->ndim; i++)
        gencache__le64_put(out + 24 + 8 * i, (uint64_t)desc->shape[i]);
    unsigned char *scales = out + QT_HEADER;
    int8_t *q = (int8_t *)(out + L.data_off);
    const unsigned char *x = data;
    float amax, scale, inv;

    if (o->codec == GENCACHE_CODEC_INT8) {
        if (amax_block(k, desc->dtype, x, L.numel, &amax))
            return GENCACHE_EINVAL;
        scale_of(amax, &scale, &inv);
        quant_tensor(k, desc->dtype, q, x, (size_t)L.numel, inv);
        put_f32(scales, scale);
    } else if (o->codec == GENCACHE_CODEC_INT8_GROUP) {
        uint64_t g = 0;
        /* Whole groups in one pass where the table has a kernel for it: each group is read once
         * and quantized while it is still in registers. */
        if (desc->dtype == GENCACHE_DTYPE_F16 && k->quant_groups_f16 && L.group % 32 == 0) {
            g = L.numel / L.group;
            if (k->quant_groups_f16(q, scales, (const uint16_t *)data, (size_t)g, (size_t)L.group))
                return GENCACHE_EINVAL;
        }
        for (; g < L.n_scales; g++) {
            uint64_t first = g * L.group;
            size_t n = (size_t)(L.numel - first < L.group ? L.numel - first : L.group);
            if (amax_block(k, desc->dtype, x + first * es, n, &amax))
                return GENCACHE_EINVAL;
            scale_of(amax, &scale, &inv);
            quant_block(k, desc->dtype, q + first, x + first * es, n, inv);
            put_f32(scales + 4 * g, scale);
        }
    } else {
        /* Channel blocks are strided: gather each channel's maximum over every outer index
         * first (kept in the scale slots), then quantize, then turn maxima into scales. */
        for (uint64_t c = 0; c < L.channels; c++)
            put_f32(scales + 4 * c, 0.0f);
        for (uint64_t ob = 0; ob < L.outer; ob++) {
            for (uint64_t c = 0; c < L.channels; c++) {
                uint64_t first = (ob * L.channels + c) * L.inner;
                if (amax_block(k, desc->dtype, x + first * es, (size_t)L.inner, &amax))
                    return GENCACHE_EINVAL;
                if (amax > get_f32(scales + 4 * c))
                    put_f32(scales + 4 * c, amax);
            }
        }
        for (uint64_t ob = 0; ob < L.outer; ob++) {
            for (uint64_t c = 0; c < L.channels; c++) {
                uint64_t first = (ob * L.channels + c) * L.inner;
                scale_of(get_f32(scales + 4 * c), &scale, &inv);
                quant_block(k, desc->dtype, q + first, x + first * es, (size_t)L.inner, inv);
            }
        }
        for (uint64_t c = 0; c < L.channels; c++) {
            scale_of(get_f32(scales + 4 * c), &scale, &inv);
            put_f32(scales + 4 * c, scale);
        }
    }
    if (out_size)
        *out_size = (size_t)L.total;
    return GENCACHE_OK;
}

int gencache_quant_encode(const gencache_tensor_desc *desc, const void *data, size_t size,
                          const gencache_quant_options *opts, void *dst, size_t dst_size,
                          size_t *out_size)
{
    return gencache__quant_encode_with(gencache__codec_kernels_best(), desc, data, size, opts, dst,
                                       dst_size, out_size);
}

int gencache_quant_info_get(const void *payload, size_t size, gencache_quant_info *out)
{
    if (out)
        memset(out, 0, sizeof *out);
    if (!payload || !out)
        return GENCACHE_EINVAL;
    const unsigned char *p = payload;
    if (size < QT_HEADER || memcmp(p, QT_MAGIC, 4) != 0)
        return GENCACHE_EPARSE;
    if (p[4] != QT_VERSION)
        return GENCACHE_EVERSION;
    gencache_codec codec = (gencache_codec)p[5];
    if (codec != GENCACHE_CODEC_INT8 && codec != GENCACHE_CODEC_INT8_CHANNEL &&
        codec != GENCACHE_CODEC_INT8_GROUP)
        return GENCACHE_EPARSE;
    gencache_tensor_desc d;
    memset(&d, 0, sizeof d);
    d.dtype = (gencache_dtype)p[6];
    d.ndim = p[7];
    if (!is_float(d.dtype) || d.ndim > GENCACHE_MAX_DIMS)
        return GENCACHE_EPARSE;
    for (uint32_t i = 0; i < GENCACHE_MAX_DIMS; i++) {
        uint64_t v = gencache__le64_get(p + 24 + 8 * i);
        if (v > INT64_MAX || (i >= d.ndim && v != 0))
            return GENCACHE_EPARSE;
        d.shape[i] = (int64_t)v;
    }
    uint32_t axis = gencache__le32_get(p + 8), group = gencache__le32_get(p + 12);
    if ((codec != GENCACHE_CODEC_INT8_CHANNEL && axis != 0) ||
        (codec != GENCACHE_CODEC_INT8_GROUP && group != 0))
        return GENCACHE_EPARSE;
    layout L;
    if (make_layout(&d, codec, axis, group, &L) != GENCACHE_OK)
        return GENCACHE_EPARSE;
    if (gencache__le64_get(p + 16) != L.n_scales || (uint64_t)size != L.total)
        return GENCACHE_EPARSE;
    for (uint64_t i = 0; i < L.n_scales; i++) {
        float s = get_f32(p + QT_HEADER + 4 * i);
        if (!(s >= 0.0f) || !isfinite(s))
            return GENCACHE_EPARSE;
    }
    out->codec = codec;
    out->axis = axis;
    out->group_size = group;
    out->n_scales = L.n_scales;
    out->scales_offset = QT_HEADER;
    out->data_offset = L.data_off;
    out->desc = d;
    return GENCACHE_OK;
}

int gencache__quant_decode_with(const gencache__codec_kernels *k, const void *payload, size_t size,
                                gencache_dtype dtype, void *dst, size_t dst_size, size_t *out_size)
{
    if (out_size)
        *out_size = 0;
    gencache_quant_info info;
    int rc = gencache_quant_info_get(payload, size, &info);
    if (rc != GENCACHE_OK)
        return rc;
    if (dtype == GENCACHE_DTYPE_NONE)
        dtype = info.desc.dtype;
    if (!is_float(dtype))
        return gencache_dtype_size(dtype) ? GENCACHE_EUNSUPPORTED : GENCACHE_EINVAL;
    layout L;
    make_layout(&info.desc, info.codec, info.axis, info.group_size, &L);
    size_t es = gencache_dtype_size(dtype);
    if (L.numel > 0 && !dst)
        return GENCACHE_EINVAL;
    if ((uint64_t)dst_size < L.numel * es)
        return GENCACHE_ETOOBIG;
    const unsigned char *p = payload;
    const unsigned char *scales = p + QT_HEADER;
    const int8_t *q = (const int8_t *)(p + L.data_off);
    unsigned char *y = dst;
    if (info.codec == GENCACHE_CODEC_INT8) {
        dequant_block(k, dtype, y, q, (size_t)L.numel, get_f32(scales));
    } else if (info.codec == GENCACHE_CODEC_INT8_GROUP) {
        for (uint64_t g = 0; g < L.n_scales; g++) {
            uint64_t first = g * L.group;
            size_t n = (size_t)(L.numel - first < L.group ? L.numel - first : L.group);
            dequant_block(k, dtype, y + first * es, q + first, n, get_f32(scales + 4 * g));
        }
    } else {
        for (uint64_t ob = 0; ob < L.outer; ob++) {
            for (uint64_t c = 0; c < L.channels; c++) {
                uint64_t first = (ob * L.channels + c) * L.inner;
                dequant_block(k, dtype, y + first * es, q + first, (size_t)L.inner,
                              get_f32(scales + 4 * c));
            }
        }
    }
    if (out_size)
        *out_size = (size_t)(L.numel * es);
    return GENCACHE_OK;
}

int gencache_quant_decode(const void *payload, size_t size, gencache_dtype dtype, void *dst,
                          size_t dst_size, size_t *out_size)
{
    return gencache__quant_decode_with(gencache__codec_kernels_best(), payload, size, dtype, dst,
                                       dst_size, out_size);
}
