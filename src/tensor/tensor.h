/*
 * tensor.h: what the files of src/tensor/ (and the session module's int8 KV storage) share: the
 * element kernels behind the dtype codecs. Each implementation (portable scalar, AVX2+F16C,
 * AVX-512) fills one table of function pointers, and every table computes bit-for-bit the same
 * results: round half to even everywhere, finite inputs saturate to the largest finite value of
 * the narrower format, NaN and Inf are reported to the caller (which rejects them).
 */
#ifndef GENCACHE_TENSOR_H
#define GENCACHE_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#include "gencache.h"

/* Largest finite f16 and bf16 values, as f32. */
#define GENCACHE__F16_MAX       65504.0f
#define GENCACHE__BF16_MAX_BITS 0x7F7Fu

/* Quantized tensors whose largest magnitude is below this are stored as zeros with scale 0:
 * 127 / amax would overflow f32 (docs/tensors.md). 2^-120. */
#define GENCACHE__QUANT_MIN_AMAX 7.52316384526264e-37f

typedef struct gencache__codec_kernels {
    const char *name; /* "scalar", "avx2", "avx512" */
    /* Narrowing conversions: round half to even, saturating at the largest finite value.
     * Return nonzero when an input is NaN or Inf (the output is then unspecified). */
    int (*f32_to_f16)(uint16_t *dst, const float *src, size_t n);
    int (*f32_to_bf16)(uint16_t *dst, const float *src, size_t n);
    /* Widening conversions: exact; a NaN comes out quiet with its payload, as F16C does. */
    void (*f16_to_f32)(float *dst, const uint16_t *src, size_t n);
    void (*bf16_to_f32)(float *dst, const uint16_t *src, size_t n);
    /* Largest |x| of n elements (as f32). Return nonzero when an input is NaN or Inf. n may be
     * 0 (*out = 0). */
    int (*amax_f32)(const float *src, size_t n, float *out);
    int (*amax_f16)(const uint16_t *src, size_t n, float *out);
    int (*amax_bf16)(const uint16_t *src, size_t n, float *out);
    /* q[i] = the exact product x[i] * inv rounded once to an integer, half to even. The inputs
     * are finite and every |x[i] * inv| is below 127.5: inv is 127 over at least the largest
     * |x[i]| (gencache__quant_scale()), or 0. The scalar kernels also clamp larger products to
     * +-127; the vector kernels do not look, and give unspecified int8 values for them. */
    void (*quant_f32)(int8_t *dst, const float *src, size_t n, float inv);
    void (*quant_f16)(int8_t *dst, const uint16_t *src, size_t n, float inv);
    void (*quant_bf16)(int8_t *dst, const uint16_t *src, size_t n, float inv);
    /* y[i] = q[i] * scale in f32, then narrowed (saturating) to the destination dtype. */
    void (*dequant_f32)(float *dst, const int8_t *src, size_t n, float scale);
    void (*dequant_f16)(uint16_t *dst, const int8_t *src, size_t n, float scale);
    void (*dequant_bf16)(uint16_t *dst, const int8_t *src, size_t n, float scale);
    /* Per-group quantization of f16, one pass: for each of `groups` groups of `group` elements
     * (a multiple of 32), its largest |x|, the scale and inverse of that as the per-group loop
     * of quant.c computes them, the scale stored as little-endian f32 at scales + 4 * g, and the
     * group quantized into dst + g * group. Returns nonzero when an input is NaN or Inf. NULL in
     * a table without it: quant.c then runs amax_f16 and quant_f16 per group. */
    int (*quant_groups_f16)(int8_t *dst, unsigned char *scales, const uint16_t *src, size_t groups,
                            size_t group);
} gencache__codec_kernels;

/* The portable implementation; always available. */
const gencache__codec_kernels *gencache__codec_kernels_scalar(void);
/* The vector implementations, or NULL when this CPU (or this build) lacks the instructions. */
const gencache__codec_kernels *gencache__codec_kernels_avx2(void);
const gencache__codec_kernels *gencache__codec_kernels_avx512(void);
/* The AVX-512 table without the VBMI quantization loops, which the one above takes where the CPU
 * has VBMI (tests and benchmarks compare both). */
const gencache__codec_kernels *gencache__codec_kernels_avx512bw(void);
/* The widest implementation this CPU runs, chosen once. The environment variable GENCACHE_SIMD
 * (scalar, avx2) narrows the choice, for benchmarks and bug reports. */
const gencache__codec_kernels *gencache__codec_kernels_best(void);

/* Scalar element helpers, shared by the vector files for their tails so every path agrees. */
uint16_t gencache__f32_to_f16_one(float x);  /* finite x; saturating, RNE */
uint16_t gencache__f32_to_bf16_one(float x); /* finite x; saturating, RNE */
float gencache__f16_to_f32_one(uint16_t h);
float gencache__bf16_to_f32_one(uint16_t h);
int8_t gencache__quant_one(float x, float inv);
float gencache__dequant_clamp(float y); /* clamps to +-FLT_MAX */
/* Elements from which the quantization kernels stream their output (non-temporal stores): an
 * output of 1 MiB or more does not stay in the L2 cache anyway. */
#define GENCACHE__LARGE_BLOCK ((size_t)1 << 20)

/* Inputs of at least GENCACHE__PREFETCH_MIN bytes are read with software prefetches
 * GENCACHE__PREFETCH_AHEAD bytes ahead of the loads: one core alone does not keep enough reads
 * in flight to reach the memory's bandwidth, and the maxima and quantization passes over a large
 * tensor are bound by it (docs/BENCHMARKS.md). 1 KiB ahead was the fastest of the distances
 * from 0.5 to 8 KiB tried for per-tensor quantization from DRAM. A prefetch never faults, so one
 * past the end of the input is harmless; its address is formed as an integer. */
#define GENCACHE__PREFETCH_AHEAD 1024u
#define GENCACHE__PREFETCH_MIN   (256u * 1024u)

static inline void gencache__prefetch(const void *p)
{
    __builtin_prefetch((const void *)((uintptr_t)p + GENCACHE__PREFETCH_AHEAD));
}

/* scale = amax / 127 and its inverse; tiny blocks quantize to zero (127 / amax would overflow).
 * Shared by quant.c and the one-pass group kernels, which must agree to the bit. */
static inline void gencache__quant_scale(float amax, float *scale, float *inv)
{
    if (!(amax >= GENCACHE__QUANT_MIN_AMAX)) {
        *scale = 0.0f;
        *inv = 0.0f;
        return;
    }
    *scale = amax / 127.0f;
    *inv = 127.0f / amax;
}

/* One element quantized with `inv` in scope, from each source format: the vector quantization
 * loops use these for their heads and tails. */
#define GENCACHE__QUANT_ONE_F32(x)  gencache__quant_one((x), inv)
#define GENCACHE__QUANT_ONE_F16(x)  gencache__quant_one(gencache__f16_to_f32_one(x), inv)
#define GENCACHE__QUANT_ONE_BF16(x) gencache__quant_one(gencache__bf16_to_f32_one(x), inv)

/* Element count of a shape with overflow checks: GENCACHE_OK, GENCACHE_EINVAL (negative dim,
 * ndim > GENCACHE_MAX_DIMS), GENCACHE_ELIMIT (count or bytes past 2^62). */
int gencache__tensor_numel(uint32_t ndim, const int64_t *shape, uint64_t *out);

/* The safetensors name of a dtype ("F32", "BF16", ...); NULL for one the format does not carry. */
const char *gencache__safetensors_dtype_name(gencache_dtype dtype);

/* gencache_tensor_convert() with a chosen implementation (tests compare them). */
int gencache__tensor_convert_with(const gencache__codec_kernels *k, gencache_dtype dst_dtype,
                                  void *dst, gencache_dtype src_dtype, const void *src,
                                  size_t count);

/* gencache_quant_encode() / gencache_quant_decode() with a chosen implementation. */
int gencache__quant_encode_with(const gencache__codec_kernels *k, const gencache_tensor_desc *desc,
                                const void *data, size_t size, const gencache_quant_options *opts,
                                void *dst, size_t dst_size, size_t *out_size);
int gencache__quant_decode_with(const gencache__codec_kernels *k, const void *payload, size_t size,
                                gencache_dtype dtype, void *dst, size_t dst_size, size_t *out_size);

#endif
