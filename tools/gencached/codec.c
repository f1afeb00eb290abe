/*
 * codec.c: the HTTP face of tensor codecs: X-Gencache-Codec (with -Axis and -Group-Size) on PUT
 * and ?as= on GET. How an encoded entry is stored, marked and decoded is the library's rule
 * (include/gencache/codec.h), shared with the C API and the Python package; this file only
 * turns headers into gencache_encode_options, calls the library, and words its refusals for a
 * 400. The invariant: a client always receives a plain tensor whose dtype and shape headers
 * describe the body exactly.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "gencached.h"

static bool is_float(gencache_dtype d)
{
    return d == GENCACHE_DTYPE_F32 || d == GENCACHE_DTYPE_F16 || d == GENCACHE_DTYPE_BF16;
}

int gcd_codec_parse_put(struct MHD_Connection *c, const gencache_meta *m, gcd_codec_args *out,
                        char *err, size_t err_size)
{
    memset(out, 0, sizeof *out);
    gencache_encode_options_init(&out->opts);
    const char *name = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Gencache-Codec");
    if (!name || strcasecmp(name, "none") == 0)
        return 0;
    if (gencache_codec_parse(name, &out->opts.codec) != 0) {
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
    const char *v;
    uint64_t n;
    if ((v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Gencache-Codec-Axis"))) {
        if (out->opts.codec != GENCACHE_CODEC_INT8_CHANNEL || gcd_parse_u64(v, &n) != 0 ||
            n >= m->ndim) {
            snprintf(err, err_size,
                     "X-Gencache-Codec-Axis '%.32s': int8-channel only, an axis below the "
                     "tensor's rank",
                     v);
            return -1;
        }
        out->opts.axis = (uint32_t)n;
    }
    if ((v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Gencache-Codec-Group-Size"))) {
        if (out->opts.codec != GENCACHE_CODEC_INT8_GROUP || gcd_parse_u64(v, &n) != 0 || n == 0 ||
            n > UINT32_MAX) {
            snprintf(err, err_size,
                     "X-Gencache-Codec-Group-Size '%.32s': int8-group only, a whole number >= 1",
                     v);
            return -1;
        }
        out->opts.group_size = (uint32_t)n;
    }
    return 0;
}

int gcd_codec_encode(const gcd_codec_args *a, gencache_meta *m, const void *body, size_t len,
                     gencache_encoded **out)
{
    int rc = gencache_tensor_encode(body, len, m, &a->opts, out);
    if (rc != 0)
        return rc;
    const gencache_meta *em = gencache_encoded_meta(*out);
    m->content_type = em->content_type;
    m->dtype = em->dtype;
    m->ndim = em->ndim;
    memcpy(m->shape, em->shape, sizeof m->shape);
    return 0;
}

bool gcd_codec_needed(const gencache_meta *m, const char *as)
{
    return as != NULL || gencache_tensor_needs_decode(m, GENCACHE_DTYPE_NONE);
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
    gencache_decode_info info;
    int rc = gencache_tensor_decode_info(m, data, size, want, &info);
    if (rc == GENCACHE_EINVAL || rc == GENCACHE_EUNSUPPORTED) {
        snprintf(err, err_size, "?as=%.32s: the entry is not a float tensor", as ? as : "");
        return GENCACHE_EINVAL;
    }
    if (rc != 0) {
        snprintf(err, err_size, "the stored tensor does not match its metadata");
        return rc;
    }
    out->data = malloc(info.size ? (size_t)info.size : 1);
    if (!out->data)
        return GENCACHE_ENOMEM;
    rc = gencache_tensor_decode(m, data, size, want, out->data, (size_t)info.size, &out->size);
    if (rc != 0) {
        free(out->data);
        out->data = NULL;
        /* A stored float tensor is finite or was widened exactly; narrowing it again can only
         * fail on a NaN/Inf that a client stored deliberately. */
        snprintf(err, err_size, "the tensor holds NaN or Inf, which %s cannot carry",
                 as ? as : gencache_dtype_name(info.desc.dtype));
        return rc;
    }
    out->dtype = info.desc.dtype;
    out->ndim = info.desc.ndim;
    memcpy(out->shape, info.desc.shape, sizeof out->shape);
    out->codec = info.codec;
    snprintf(out->content_type, sizeof out->content_type, "%.*s", (int)info.content_type_len,
             info.content_type);
    return 0;
}
