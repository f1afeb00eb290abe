/*
 * desc.c: tensor descriptors and element conversions: shape checks with overflow guards, codec
 * names, byte swapping, and gencache_tensor_convert() between f32, f16 and bf16 through the
 * kernels of the CPU. Conversions between the two 16-bit formats go through f32 in small blocks
 * on the stack, so no allocation happens on this path.
 */
#include <string.h>

#include "internal.h"
#include "tensor/tensor.h"

/* Element counts and byte sizes stay below 2^62 so that every product and sum computed from them
 * fits in 64 bits without further checks. */
#define NUMEL_MAX (UINT64_C(1) << 62)

int gencache__tensor_numel(uint32_t ndim, const int64_t *shape, uint64_t *out)
{
    *out = 0;
    if (ndim > GENCACHE_MAX_DIMS || (ndim > 0 && !shape))
        return GENCACHE_EINVAL;
    uint64_t n = 1;
    bool zero = false;
    for (uint32_t i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return GENCACHE_EINVAL;
        if (shape[i] == 0)
            zero = true;
    }
    if (zero)
        return GENCACHE_OK;
    for (uint32_t i = 0; i < ndim; i++) {
        uint64_t d = (uint64_t)shape[i];
        if (d > NUMEL_MAX || n > NUMEL_MAX / d)
            return GENCACHE_ELIMIT;
        n *= d;
    }
    *out = n;
    return GENCACHE_OK;
}

int gencache_tensor_numel(uint32_t ndim, const int64_t *shape, uint64_t *out)
{
    if (!out)
        return GENCACHE_EINVAL;
    return gencache__tensor_numel(ndim, shape, out);
}

int gencache_tensor_check(gencache_dtype dtype, uint32_t ndim, const int64_t *shape, uint64_t size)
{
    size_t es = gencache_dtype_size(dtype);
    if (es == 0)
        return GENCACHE_EINVAL;
    uint64_t n;
    int rc = gencache__tensor_numel(ndim, shape, &n);
    if (rc != GENCACHE_OK)
        return rc;
    if (n > NUMEL_MAX / es)
        return GENCACHE_ELIMIT;
    return n * es == size ? GENCACHE_OK : GENCACHE_EINVAL;
}

int gencache_tensor_byteswap(gencache_dtype dtype, void *data, size_t size)
{
    size_t es = gencache_dtype_size(dtype);
    if (es == 0 || size % es != 0 || (size > 0 && !data))
        return GENCACHE_EINVAL;
    unsigned char *p = data;
    for (size_t i = 0; i < size; i += es) {
        for (size_t a = 0, b = es - 1; a < b; a++, b--) {
            unsigned char t = p[i + a];
            p[i + a] = p[i + b];
            p[i + b] = t;
        }
    }
    return GENCACHE_OK;
}

static const char *const codec_names[] = {
    [GENCACHE_CODEC_NONE] = "none",
    [GENCACHE_CODEC_F16] = "f16",
    [GENCACHE_CODEC_BF16] = "bf16",
    [GENCACHE_CODEC_INT8] = "int8",
    [GENCACHE_CODEC_INT8_CHANNEL] = "int8-channel",
    [GENCACHE_CODEC_INT8_GROUP] = "int8-group",
};
#define N_CODECS (sizeof codec_names / sizeof codec_names[0])

const char *gencache_codec_name(gencache_codec codec)
{
    if ((unsigned)codec >= N_CODECS)
        return NULL;
    return codec_names[codec];
}

int gencache_codec_parse(const char *name, gencache_codec *out)
{
    if (out)
        *out = GENCACHE_CODEC_NONE;
    if (!name || !out)
        return GENCACHE_EINVAL;
    for (unsigned i = 0; i < N_CODECS; i++) {
        if (strcmp(name, codec_names[i]) == 0) {
            *out = (gencache_codec)i;
            return GENCACHE_OK;
        }
    }
    return GENCACHE_EINVAL;
}

static bool is_float(gencache_dtype d)
{
    return d == GENCACHE_DTYPE_F32 || d == GENCACHE_DTYPE_F16 || d == GENCACHE_DTYPE_BF16;
}

/* f16 <-> bf16: widen a block to f32, then narrow it. */
static int convert_16(const gencache__codec_kernels *k, gencache_dtype dst_dtype, uint16_t *dst,
                      gencache_dtype src_dtype, const uint16_t *src, size_t count)
{
    float buf[1024];
    int bad = 0;
    for (size_t i = 0; i < count; i += 1024) {
        size_t n = count - i < 1024 ? count - i : 1024;
        if (src_dtype == GENCACHE_DTYPE_F16)
            k->f16_to_f32(buf, src + i, n);
        else
            k->bf16_to_f32(buf, src + i, n);
        if (dst_dtype == GENCACHE_DTYPE_F16)
            bad |= k->f32_to_f16(dst + i, buf, n);
        else
            bad |= k->f32_to_bf16(dst + i, buf, n);
    }
    return bad;
}

int gencache__tensor_convert_with(const gencache__codec_kernels *k, gencache_dtype dst_dtype,
                                  void *dst, gencache_dtype src_dtype, const void *src,
                                  size_t count)
{
    if (!is_float(dst_dtype) || !is_float(src_dtype))
        return GENCACHE_EUNSUPPORTED;
    if (count == 0)
        return GENCACHE_OK;
    if (!dst || !src)
        return GENCACHE_EINVAL;
    if (dst_dtype == src_dtype) {
        memcpy(dst, src, count * gencache_dtype_size(src_dtype));
        return GENCACHE_OK;
    }
    int bad = 0;
    if (src_dtype == GENCACHE_DTYPE_F32) {
        if (dst_dtype == GENCACHE_DTYPE_F16)
            bad = k->f32_to_f16(dst, src, count);
        else
            bad = k->f32_to_bf16(dst, src, count);
    } else if (dst_dtype == GENCACHE_DTYPE_F32) {
        if (src_dtype == GENCACHE_DTYPE_F16)
            k->f16_to_f32(dst, src, count);
        else
            k->bf16_to_f32(dst, src, count);
    } else {
        bad = convert_16(k, dst_dtype, dst, src_dtype, src, count);
    }
    return bad ? GENCACHE_EINVAL : GENCACHE_OK;
}

int gencache_tensor_convert(gencache_dtype dst_dtype, void *dst, gencache_dtype src_dtype,
                            const void *src, size_t count)
{
    return gencache__tensor_convert_with(gencache__codec_kernels_best(), dst_dtype, dst, src_dtype,
                                         src, count);
}
