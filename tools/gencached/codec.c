/*
 * codec.c: how tensor entries are stored and read back over HTTP (X-Gencache-Codec on PUT,
 * ?as= on GET). f16 and bf16 narrow a float tensor before it is stored, so the entry simply is
 * an f16/bf16 tensor. The int8 codecs store the library's quantized payload (scales and int8
 * elements, docs/tensors.md) and mark it with a "codec" parameter on the entry's content type;
 * a GET decodes such an entry back to a float tensor, so a client always receives a plain
 * tensor whose dtype and shape headers describe the body exactly.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "gencached.h"

/* The content-type parameter that marks a stored int8 payload: "<type>; codec=int8". */
#define CODEC_PARAM "; codec="

static bool is_float(gencache_dtype d)
{
    return d == GENCACHE_DTYPE_F32 || d == GENCACHE_DTYPE_F16 || d == GENCACHE_DTYPE_BF16;
}

static bool is_int8_codec(gencache_codec codec)
{
    return codec == GENCACHE_CODEC_INT8 || codec == GENCACHE_CODEC_INT8_CHANNEL ||
           codec == GENCACHE_CODEC_INT8_GROUP;
}

int gcd_codec_parse_put(struct MHD_Connection *c, const gencache_meta *m, gcd_codec_args *out,
                        char *err, size_t err_size)
{
    memset(out, 0, sizeof *out);
    gencache_quant_options_init(&out->quant);
    const char *name = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Gencache-Codec");
    if (!name || strcasecmp(name, "none") == 0)
        return 0;
    if (gencache_codec_parse(name, &out->codec) != 0) {
        snprintf(err, err_size,
                 "X-Gencache-Codec '%.64s': expected none, f16, bf16, int8, int8-channel or "
                 "int8-group",
                 name);
        return -1;
    }
    if (!is_float(m->dtype)) {
        snprintf(err, err_size,
                 "X-Gencache-Codec %s needs a float tensor: X-Gencache-Dtype f32, f16 or bf16 "
                 "with X-Gencache-Shape",
                 name);
        return -1;
    }
    out->quant.codec = out->codec;
    const char *v;
    uint64_t n;
    if ((v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Gencache-Codec-Axis"))) {
        if (out->codec != GENCACHE_CODEC_INT8_CHANNEL || gcd_parse_u64(v, &n) != 0 ||
            n >= m->ndim) {
            snprintf(err, err_size,
                     "X-Gencache-Codec-Axis '%.32s': int8-channel only, an axis below the "
                     "tensor's rank",
                     v);
            return -1;
        }
        out->quant.axis = (uint32_t)n;
    }
    if ((v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Gencache-Codec-Group-Size"))) {
        if (out->codec != GENCACHE_CODEC_INT8_GROUP || gcd_parse_u64(v, &n) != 0 || n == 0 ||
            n > UINT32_MAX) {
            snprintf(err, err_size,
                     "X-Gencache-Codec-Group-Size '%.32s': int8-group only, a whole number >= 1",
                     v);
            return -1;
        }
        out->quant.group_size = (uint32_t)n;
    }
    return 0;
}

int gcd_codec_encode(const gcd_codec_args *a, gencache_meta *m, const void *body, size_t len,
                     void **out, size_t *out_len, char *ctype, size_t ctype_size)
{
    *out = NULL;
    *out_len = 0;
    gencache_tensor_desc desc = {.dtype = m->dtype, .ndim = m->ndim};
    memcpy(desc.shape, m->shape, sizeof desc.shape);
    if (a->codec == GENCACHE_CODEC_F16 || a->codec == GENCACHE_CODEC_BF16) {
        gencache_dtype to = a->codec == GENCACHE_CODEC_F16 ? GENCACHE_DTYPE_F16
                                                           : GENCACHE_DTYPE_BF16;
        size_t count = len / gencache_dtype_size(m->dtype);
        void *dst = malloc(count ? count * 2 : 1);
        if (!dst)
            return GENCACHE_ENOMEM;
        int rc = gencache_tensor_convert(to, dst, m->dtype, body, count);
        if (rc != 0) {
            free(dst);
            return rc;
        }
        m->dtype = to;
        *out = dst;
        *out_len = count * 2;
        return 0;
    }
    size_t size;
    int rc = gencache_quant_size(&desc, &a->quant, &size);
    if (rc != 0)
        return rc;
    void *dst = malloc(size ? size : 1);
    if (!dst)
        return GENCACHE_ENOMEM;
    rc = gencache_quant_encode(&desc, body, len, &a->quant, dst, size, &size);
    if (rc != 0) {
        free(dst);
        return rc;
    }
    /* The payload carries its own dtype and shape; the entry is opaque bytes whose content type
     * says how to read them. */
    snprintf(ctype, ctype_size, "%s" CODEC_PARAM "%s",
             m->content_type ? m->content_type : "application/octet-stream",
             gencache_codec_name(a->codec));
    m->content_type = ctype;
    m->dtype = GENCACHE_DTYPE_NONE;
    m->ndim = 0;
    *out = dst;
    *out_len = size;
    return 0;
}

/* The stored content type without the codec parameter, and the codec it names (NONE when
 * absent). */
static gencache_codec stored_codec(const char *ctype, char *base, size_t base_size)
{
    const char *p = ctype ? strstr(ctype, CODEC_PARAM) : NULL;
    gencache_codec codec = GENCACHE_CODEC_NONE;
    if (!p || gencache_codec_parse(p + strlen(CODEC_PARAM), &codec) != 0 ||
        !is_int8_codec(codec)) {
        snprintf(base, base_size, "%s", ctype ? ctype : "application/octet-stream");
        return GENCACHE_CODEC_NONE;
    }
    snprintf(base, base_size, "%.*s", (int)(p - ctype), ctype);
    return codec;
}

bool gcd_codec_needed(const gencache_meta *m, const char *as)
{
    char base[256];
    return as != NULL || stored_codec(m->content_type, base, sizeof base) != GENCACHE_CODEC_NONE;
}

int gcd_codec_decode(const gencache_meta *m, const void *data, size_t size, const char *as,
                     gcd_decoded *out, char *err, size_t err_size)
{
    memset(out, 0, sizeof *out);
    gencache_dtype want = GENCACHE_DTYPE_NONE;
    if (as && (gencache_dtype_parse(as, &want) != 0 || !is_float(want))) {
        snprintf(err, err_size, "?as=%.32s: expected f32, f16 or bf16", as);
        return GENCACHE_EINVAL;
    }
    gencache_codec codec = stored_codec(m->content_type, out->content_type,
                                        sizeof out->content_type);
    if (codec != GENCACHE_CODEC_NONE) {
        gencache_quant_info info;
        int rc = gencache_quant_info_get(data, size, &info);
        if (rc != 0) {
            snprintf(err, err_size, "the stored %s payload is not valid",
                     gencache_codec_name(codec));
            return rc;
        }
        if (want == GENCACHE_DTYPE_NONE)
            want = info.desc.dtype;
        uint64_t count;
        rc = gencache_tensor_numel(info.desc.ndim, info.desc.shape, &count);
        if (rc != 0)
            return rc;
        size_t bytes = (size_t)count * gencache_dtype_size(want);
        out->data = malloc(bytes ? bytes : 1);
        if (!out->data)
            return GENCACHE_ENOMEM;
        rc = gencache_quant_decode(data, size, want, out->data, bytes, &out->size);
        if (rc != 0) {
            free(out->data);
            out->data = NULL;
            return rc;
        }
        out->dtype = want;
        out->ndim = info.desc.ndim;
        memcpy(out->shape, info.desc.shape, sizeof out->shape);
        out->codec = codec;
        return 0;
    }
    if (!is_float(m->dtype)) {
        snprintf(err, err_size, "?as=%.32s: the entry is not a float tensor", as);
        return GENCACHE_EINVAL;
    }
    size_t count = size / gencache_dtype_size(m->dtype);
    size_t bytes = count * gencache_dtype_size(want);
    out->data = malloc(bytes ? bytes : 1);
    if (!out->data)
        return GENCACHE_ENOMEM;
    /* A stored float tensor is finite or was widened exactly; narrowing it again can only fail
     * on a NaN/Inf that a client stored deliberately, which is reported. */
    int rc = gencache_tensor_convert(want, out->data, m->dtype, data, count);
    if (rc != 0) {
        free(out->data);
        out->data = NULL;
        snprintf(err, err_size, "the tensor holds NaN or Inf, which %s cannot carry", as);
        return rc;
    }
    out->size = bytes;
    out->dtype = want;
    out->ndim = m->ndim;
    memcpy(out->shape, m->shape, sizeof out->shape);
    return 0;
}
