/*
 * codec.c: how a tensor entry is stored with a codec and read back (include/gencache/codec.h).
 * f16/bf16 entries are plain narrowed tensors; int8 entries are the quantized payload of
 * quant.c, stored as opaque bytes whose content type ends in "; codec=<name>". The invariant:
 * every surface (C API, daemon, Python) stores and recognizes an encoded entry through this file
 * only, so an entry written by one reads back identically through the others; and a reader
 * trusts nothing about the stored bytes until decode_info has validated them against their
 * metadata.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "tensor/tensor.h"

#define DEFAULT_CONTENT_TYPE "application/octet-stream"

struct gencache_encoded {
    void *data; /* owned; NULL only while being built */
    size_t size;
    gencache_meta meta; /* strings point into `strings` */
    char *strings;
};

static bool is_float(gencache_dtype d)
{
    return d == GENCACHE_DTYPE_F32 || d == GENCACHE_DTYPE_F16 || d == GENCACHE_DTYPE_BF16;
}

static bool is_int8(gencache_codec c)
{
    return c == GENCACHE_CODEC_INT8 || c == GENCACHE_CODEC_INT8_CHANNEL ||
           c == GENCACHE_CODEC_INT8_GROUP;
}

static const char *content_type_or_default(const char *ct)
{
    return ct && *ct ? ct : DEFAULT_CONTENT_TYPE;
}

/* The int8 codec a content type's trailing mark names, or NONE; *base_len receives the length of
 * the content type without the mark. */
static gencache_codec marked_codec(const char *ct, size_t *base_len)
{
    *base_len = strlen(ct);
    const char *p = strstr(ct, GENCACHE_CODEC_MARK);
    for (; p; p = strstr(p + 1, GENCACHE_CODEC_MARK)) {
        gencache_codec c;
        if (gencache_codec_parse(p + strlen(GENCACHE_CODEC_MARK), &c) == GENCACHE_OK &&
            is_int8(c)) {
            *base_len = (size_t)(p - ct);
            return c;
        }
    }
    return GENCACHE_CODEC_NONE;
}

/* The int8 codec an entry is stored with (NONE: not an int8 payload). */
static gencache_codec stored_codec(const gencache_meta *m, size_t *base_len)
{
    const char *ct = content_type_or_default(m->content_type);
    gencache_codec c = marked_codec(ct, base_len);
    if (m->dtype == GENCACHE_DTYPE_NONE)
        return c;
    *base_len = strlen(ct); /* a tensor entry is that tensor, whatever its content type says */
    return GENCACHE_CODEC_NONE;
}

/* ---- encoding ------------------------------------------------------------------------------ */

void gencache_encode_options_init(gencache_encode_options *opts)
{
    if (!opts)
        return;
    memset(opts, 0, sizeof *opts);
    opts->struct_size = sizeof *opts;
    opts->codec = GENCACHE_CODEC_NONE;
    opts->axis = 0;
    opts->group_size = 128;
}

/* Checks the tensor and the options; *o receives the options to use. */
static int check_encode(const void *data, size_t size, const gencache_meta *meta,
                        const gencache_encode_options *opts, gencache_encode_options *o)
{
    if (!meta || (size > 0 && !data) || meta->struct_size < sizeof *meta)
        return GENCACHE_EINVAL;
    if (opts && opts->struct_size < sizeof *opts)
        return GENCACHE_EINVAL;
    if (opts)
        *o = *opts;
    else
        gencache_encode_options_init(o);
    if (!gencache_codec_name(o->codec))
        return GENCACHE_EINVAL;
    if (meta->dtype == GENCACHE_DTYPE_NONE)
        return GENCACHE_EINVAL;
    int rc = gencache_tensor_check(meta->dtype, meta->ndim, meta->shape, size);
    if (rc != GENCACHE_OK)
        return rc;
    size_t base_len;
    if (marked_codec(content_type_or_default(meta->content_type), &base_len) != GENCACHE_CODEC_NONE)
        return GENCACHE_EINVAL; /* it would read back as an int8 payload */
    if (o->codec == GENCACHE_CODEC_NONE)
        return GENCACHE_OK;
    if (!is_float(meta->dtype))
        return GENCACHE_EUNSUPPORTED;
    if (o->codec == GENCACHE_CODEC_INT8_CHANNEL && o->axis >= meta->ndim)
        return GENCACHE_EINVAL;
    if (o->codec == GENCACHE_CODEC_INT8_GROUP && o->group_size == 0)
        return GENCACHE_EINVAL;
    return GENCACHE_OK;
}

/* Copies the caller's strings into e->strings (the content type marked for an int8 codec) and
 * points e->meta at them. */
static int copy_meta(gencache_encoded *e, const gencache_meta *meta, gencache_codec codec)
{
    const char *ct = content_type_or_default(meta->content_type);
    const char *mark = is_int8(codec) ? GENCACHE_CODEC_MARK : "";
    const char *name = is_int8(codec) ? gencache_codec_name(codec) : "";
    const char *src[3] = {meta->tenant, meta->model, meta->tags};
    size_t len = strlen(ct) + strlen(mark) + strlen(name) + 1;
    for (int i = 0; i < 3; i++)
        len += src[i] ? strlen(src[i]) + 1 : 0;
    e->strings = malloc(len);
    if (!e->strings)
        return GENCACHE_ENOMEM;
    gencache_meta m;
    gencache_meta_init(&m);
    m.cost_ms = meta->cost_ms;
    m.ttl_ms = meta->ttl_ms;
    m.pinned = meta->pinned;
    char *p = e->strings;
    m.content_type = p;
    const char *parts[3] = {ct, mark, name};
    for (int i = 0; i < 3; i++) {
        size_t n = strlen(parts[i]);
        memcpy(p, parts[i], n);
        p += n;
    }
    *p++ = '\0';
    const char **dst[3] = {&m.tenant, &m.model, &m.tags};
    for (int i = 0; i < 3; i++) {
        if (!src[i])
            continue;
        size_t n = strlen(src[i]) + 1;
        memcpy(p, src[i], n);
        *dst[i] = p;
        p += n;
    }
    e->meta = m;
    return GENCACHE_OK;
}

/* Encodes a checked tensor into e->data and fills e->meta's tensor fields. */
static int encode_data(gencache_encoded *e, const void *data, size_t size,
                       const gencache_meta *meta, const gencache_encode_options *o)
{
    gencache_tensor_desc desc = {.dtype = meta->dtype, .ndim = meta->ndim};
    memcpy(desc.shape, meta->shape, sizeof desc.shape);
    e->meta.dtype = meta->dtype;
    e->meta.ndim = meta->ndim;
    memcpy(e->meta.shape, meta->shape, sizeof e->meta.shape);
    if (o->codec == GENCACHE_CODEC_NONE) {
        e->data = malloc(size ? size : 1);
        if (!e->data)
            return GENCACHE_ENOMEM;
        if (size)
            memcpy(e->data, data, size);
        e->size = size;
        return GENCACHE_OK;
    }
    if (o->codec == GENCACHE_CODEC_F16 || o->codec == GENCACHE_CODEC_BF16) {
        gencache_dtype to =
            o->codec == GENCACHE_CODEC_F16 ? GENCACHE_DTYPE_F16 : GENCACHE_DTYPE_BF16;
        size_t count = size / gencache_dtype_size(meta->dtype);
        e->data = malloc(count ? count * 2 : 1);
        if (!e->data)
            return GENCACHE_ENOMEM;
        int rc = gencache_tensor_convert(to, e->data, meta->dtype, data, count);
        if (rc != GENCACHE_OK)
            return rc;
        e->size = count * 2;
        e->meta.dtype = to;
        return GENCACHE_OK;
    }
    gencache_quant_options q;
    gencache_quant_options_init(&q);
    q.codec = o->codec;
    q.axis = o->axis;
    q.group_size = o->group_size;
    size_t need;
    int rc = gencache_quant_size(&desc, &q, &need);
    if (rc != GENCACHE_OK)
        return rc;
    e->data = malloc(need ? need : 1);
    if (!e->data)
        return GENCACHE_ENOMEM;
    rc = gencache_quant_encode(&desc, data, size, &q, e->data, need, &e->size);
    if (rc != GENCACHE_OK)
        return rc;
    /* The payload carries its own dtype and shape; the entry is opaque bytes. */
    e->meta.dtype = GENCACHE_DTYPE_NONE;
    e->meta.ndim = 0;
    memset(e->meta.shape, 0, sizeof e->meta.shape);
    return GENCACHE_OK;
}

int gencache_tensor_encode(const void *data, size_t size, const gencache_meta *meta,
                           const gencache_encode_options *opts, gencache_encoded **out)
{
    if (!out)
        return GENCACHE_EINVAL;
    *out = NULL;
    gencache_encode_options o;
    int rc = check_encode(data, size, meta, opts, &o);
    if (rc != GENCACHE_OK)
        return rc;
    gencache_encoded *e = calloc(1, sizeof *e);
    if (!e)
        return GENCACHE_ENOMEM;
    rc = copy_meta(e, meta, o.codec);
    if (rc == GENCACHE_OK)
        rc = encode_data(e, data, size, meta, &o);
    if (rc != GENCACHE_OK) {
        gencache_encoded_free(e);
        return rc;
    }
    *out = e;
    return GENCACHE_OK;
}

const void *gencache_encoded_data(const gencache_encoded *enc)
{
    return enc ? enc->data : NULL;
}

size_t gencache_encoded_size(const gencache_encoded *enc)
{
    return enc ? enc->size : 0;
}

const gencache_meta *gencache_encoded_meta(const gencache_encoded *enc)
{
    return enc ? &enc->meta : NULL;
}

void gencache_encoded_free(gencache_encoded *enc)
{
    if (!enc)
        return;
    free(enc->data);
    free(enc->strings);
    free(enc);
}

int gencache_put_tensor(gencache *cache, const char *key, const void *data, size_t size,
                        const gencache_meta *meta, const gencache_encode_options *opts)
{
    if (!cache || !key)
        return GENCACHE_EINVAL;
    gencache_encode_options o;
    int rc = check_encode(data, size, meta, opts, &o);
    if (rc != GENCACHE_OK)
        return rc;
    if (o.codec == GENCACHE_CODEC_NONE)
        return gencache_put(cache, key, data, size, meta);
    gencache_encoded *e;
    rc = gencache_tensor_encode(data, size, meta, opts, &e);
    if (rc != GENCACHE_OK)
        return rc;
    rc = gencache_put(cache, key, e->data, e->size, &e->meta);
    gencache_encoded_free(e);
    return rc;
}

/* ---- decoding ------------------------------------------------------------------------------ */

int gencache_tensor_needs_decode(const gencache_meta *meta, gencache_dtype want)
{
    if (!meta)
        return 0;
    size_t base_len;
    if (stored_codec(meta, &base_len) != GENCACHE_CODEC_NONE)
        return 1;
    return want != GENCACHE_DTYPE_NONE && want != meta->dtype;
}

/* Checks that `want` can be produced from a tensor of dtype `have`; *to receives the dtype
 * decoding writes. */
static int check_want(gencache_dtype have, gencache_dtype want, gencache_dtype *to)
{
    if (want != GENCACHE_DTYPE_NONE && gencache_dtype_size(want) == 0)
        return GENCACHE_EINVAL;
    *to = want == GENCACHE_DTYPE_NONE ? have : want;
    if (*to != have && (!is_float(have) || !is_float(*to)))
        return GENCACHE_EUNSUPPORTED;
    return GENCACHE_OK;
}

static int decode_info(const gencache_meta *meta, const void *data, size_t size,
                       gencache_dtype want, gencache_decode_info *out)
{
    if (!meta || (size > 0 && !data))
        return GENCACHE_EINVAL;
    if (want != GENCACHE_DTYPE_NONE && gencache_dtype_size(want) == 0)
        return GENCACHE_EINVAL;
    size_t base_len;
    gencache_codec codec = stored_codec(meta, &base_len);
    gencache_tensor_desc desc;
    if (codec != GENCACHE_CODEC_NONE) {
        gencache_quant_info q;
        int rc = gencache_quant_info_get(data, size, &q);
        if (rc != GENCACHE_OK)
            return rc == GENCACHE_EINVAL ? GENCACHE_EPARSE : rc;
        desc = q.desc;
    } else {
        if (meta->dtype == GENCACHE_DTYPE_NONE)
            return GENCACHE_EINVAL; /* not a tensor */
        if (gencache_dtype_size(meta->dtype) == 0)
            return GENCACHE_EPARSE;
        int rc = gencache_tensor_check(meta->dtype, meta->ndim, meta->shape, size);
        if (rc != GENCACHE_OK)
            return GENCACHE_EPARSE;
        memset(&desc, 0, sizeof desc);
        desc.dtype = meta->dtype;
        desc.ndim = meta->ndim;
        memcpy(desc.shape, meta->shape, meta->ndim * sizeof desc.shape[0]);
    }
    gencache_dtype to;
    int rc = check_want(desc.dtype, want, &to);
    if (rc != GENCACHE_OK)
        return rc;
    uint64_t count;
    rc = gencache__tensor_numel(desc.ndim, desc.shape, &count);
    if (rc != GENCACHE_OK)
        return GENCACHE_EPARSE;
    out->codec = codec;
    out->desc = desc;
    out->desc.dtype = to;
    out->desc.byte_order = GENCACHE_BYTE_ORDER_LITTLE;
    out->size = count * gencache_dtype_size(to);
    out->needs_decode = codec != GENCACHE_CODEC_NONE || to != desc.dtype;
    out->content_type = content_type_or_default(meta->content_type);
    out->content_type_len = base_len;
    return GENCACHE_OK;
}

int gencache_tensor_decode_info(const gencache_meta *meta, const void *data, size_t size,
                                gencache_dtype want, gencache_decode_info *out)
{
    if (!out)
        return GENCACHE_EINVAL;
    memset(out, 0, sizeof *out);
    int rc = decode_info(meta, data, size, want, out);
    if (rc != GENCACHE_OK)
        memset(out, 0, sizeof *out);
    return rc;
}

int gencache_tensor_decode(const gencache_meta *meta, const void *data, size_t size,
                           gencache_dtype want, void *dst, size_t dst_size, size_t *out_size)
{
    if (out_size)
        *out_size = 0;
    gencache_decode_info info;
    int rc = gencache_tensor_decode_info(meta, data, size, want, &info);
    if (rc != GENCACHE_OK)
        return rc;
    if (dst_size < info.size)
        return GENCACHE_ETOOBIG;
    if (info.size > 0 && !dst)
        return GENCACHE_EINVAL;
    if (info.codec != GENCACHE_CODEC_NONE) {
        rc = gencache_quant_decode(data, size, info.desc.dtype, dst, dst_size, NULL);
    } else if (info.size > 0) {
        /* The same dtype copies; the float pairs convert (narrowing refuses NaN/Inf, which a
         * caller may have stored deliberately in a plain tensor). */
        size_t count = (size_t)(info.size / gencache_dtype_size(info.desc.dtype));
        if (info.desc.dtype == meta->dtype)
            memcpy(dst, data, (size_t)info.size);
        else
            rc = gencache_tensor_convert(info.desc.dtype, dst, meta->dtype, data, count);
    }
    if (rc != GENCACHE_OK)
        return rc;
    if (out_size)
        *out_size = (size_t)info.size;
    return GENCACHE_OK;
}

int gencache_handle_decode_info(const gencache_handle *handle, gencache_dtype want,
                                gencache_decode_info *out)
{
    if (!handle) {
        if (out)
            memset(out, 0, sizeof *out);
        return GENCACHE_EINVAL;
    }
    return gencache_tensor_decode_info(gencache_handle_meta(handle), gencache_handle_data(handle),
                                       gencache_handle_size(handle), want, out);
}

int gencache_handle_decode(const gencache_handle *handle, gencache_dtype want, void *dst,
                           size_t dst_size, size_t *out_size)
{
    if (!handle) {
        if (out_size)
            *out_size = 0;
        return GENCACHE_EINVAL;
    }
    return gencache_tensor_decode(gencache_handle_meta(handle), gencache_handle_data(handle),
                                  gencache_handle_size(handle), want, dst, dst_size, out_size);
}
