/*
 * bench_tensor.c: throughput of the tensor codecs and of KV-window retrieval, each against a
 * baseline measured in the same run. Quantization (f16 -> int8, per tensor) and dequantization
 * (int8 -> f16) of a 64 MiB f16 tensor are compared with memcpy of the same 64 MiB, for each
 * kernel implementation this CPU runs; a retrieve of 64 positions x 32 layers is compared with
 * concatenating per-position K and V rows into fresh buffers. Medians of several runs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gencache.h"
#include "tensor/tensor.h"
#include "bench_util.h"

#define RUNS 9

static volatile unsigned char sink;

int main(int argc, char **argv)
{
    size_t mib = argc > 1 ? (size_t)atoi(argv[1]) : 64;
    size_t bytes = mib << 20, n = bytes / 2;
    uint16_t *src = malloc(bytes), *back = malloc(bytes);
    unsigned char *copy = malloc(bytes);
    uint64_t r = 88172645463325252ull;
    for (size_t i = 0; i < n; i++) {
        r ^= r << 13;
        r ^= r >> 7;
        r ^= r << 17;
        src[i] = (uint16_t)(r & 0xBBFF); /* finite f16 values of both signs */
    }
    gencache_tensor_desc d;
    memset(&d, 0, sizeof d);
    d.dtype = GENCACHE_DTYPE_F16;
    d.ndim = 1;
    d.shape[0] = (int64_t)n;
    size_t qsize;
    if (gencache_quant_size(&d, NULL, &qsize) != GENCACHE_OK)
        return 1;
    unsigned char *q = malloc(qsize);
    /* Touch every destination page once so no run pays for first-touch faults. */
    memset(copy, 1, bytes);
    memset(back, 1, bytes);
    memset(q, 1, qsize);

    double t[RUNS];
    for (int i = 0; i < RUNS; i++) {
        double t0 = bench_now_s();
        memcpy(copy, src, bytes);
        t[i] = bench_now_s() - t0;
        sink ^= copy[i];
    }
    double memcpy_s = bench_median(t, RUNS);
    printf("tensor of %zu MiB f16 (%zu elements), median of %d runs\n", mib, n, RUNS);
    printf("%-36s %8.3f ms  %6.2f GB/s\n", "memcpy (baseline)", memcpy_s * 1e3,
           (double)bytes / memcpy_s / 1e9);

    const gencache__codec_kernels *impls[3] = {gencache__codec_kernels_scalar(),
                                               gencache__codec_kernels_avx2(),
                                               gencache__codec_kernels_avx512()};
    for (int k = 0; k < 3; k++) {
        if (!impls[k])
            continue;
        for (int i = 0; i < RUNS; i++) {
            double t0 = bench_now_s();
            size_t got;
            if (gencache__quant_encode_with(impls[k], &d, src, bytes, NULL, q, qsize, &got) != 0)
                return 1;
            t[i] = bench_now_s() - t0;
        }
        double qs = bench_median(t, RUNS);
        for (int i = 0; i < RUNS; i++) {
            double t0 = bench_now_s();
            size_t got;
            if (gencache__quant_decode_with(impls[k], q, qsize, GENCACHE_DTYPE_F16, back, bytes,
                                            &got) != 0)
                return 1;
            t[i] = bench_now_s() - t0;
        }
        double ds = bench_median(t, RUNS);
        /* Per group of 128: each group's maximum and values are read while in L1, so the
         * tensor is read from memory once instead of twice. */
        gencache_quant_options go;
        gencache_quant_options_init(&go);
        go.codec = GENCACHE_CODEC_INT8_GROUP;
        size_t gsize;
        if (gencache_quant_size(&d, &go, &gsize) != GENCACHE_OK)
            return 1;
        unsigned char *gq = malloc(gsize);
        memset(gq, 1, gsize);
        for (int i = 0; i < RUNS; i++) {
            double t0 = bench_now_s();
            size_t got;
            if (gencache__quant_encode_with(impls[k], &d, src, bytes, &go, gq, gsize, &got) != 0)
                return 1;
            t[i] = bench_now_s() - t0;
        }
        double gs = bench_median(t, RUNS);
        free(gq);
        char label[64];
        snprintf(label, sizeof label, "quantize f16->int8-group128 [%s]", impls[k]->name);
        printf("%-36s %8.3f ms  %6.2f GB/s  %.2fx memcpy\n", label, gs * 1e3,
               (double)bytes / gs / 1e9, memcpy_s / gs);
        snprintf(label, sizeof label, "quantize f16->int8 [%s]", impls[k]->name);
        printf("%-36s %8.3f ms  %6.2f GB/s  %.2fx memcpy\n", label, qs * 1e3,
               (double)bytes / qs / 1e9, memcpy_s / qs);
        snprintf(label, sizeof label, "dequantize int8->f16 [%s]", impls[k]->name);
        printf("%-36s %8.3f ms  %6.2f GB/s  %.2fx memcpy\n", label, ds * 1e3,
               (double)bytes / ds / 1e9, memcpy_s / ds);
    }

    /* KV: 32 layers, 64 positions, K and V rows of 8 heads x 128 f16 each (2 KiB). */
    enum { LAYERS = 32, POS = 64, ELEMS = 1024 };
    size_t row = ELEMS * 2;
    gencache_kv_options o;
    gencache_kv_options_init(&o);
    o.n_layers = LAYERS;
    o.dtype = GENCACHE_DTYPE_F16;
    o.k_elems = ELEMS;
    o.v_elems = ELEMS;
    gencache_kv *kv;
    if (gencache_kv_new(&o, &kv) != GENCACHE_OK)
        return 1;
    /* The baseline store: one allocation per position and layer, as a dict of tensors. */
    unsigned char **krows = malloc(sizeof *krows * LAYERS * POS);
    unsigned char **vrows = malloc(sizeof *vrows * LAYERS * POS);
    for (int l = 0; l < LAYERS; l++) {
        for (int p = 0; p < POS; p++) {
            unsigned char *k = malloc(row), *v = malloc(row);
            memset(k, l + p, row);
            memset(v, l - p, row);
            krows[l * POS + p] = k;
            vrows[l * POS + p] = v;
            if (gencache_kv_append(kv, (uint32_t)l, p, k, v) != GENCACHE_OK)
                return 1;
        }
    }
    double kt[RUNS], ct[RUNS];
    for (int i = 0; i < RUNS; i++) {
        double t0 = bench_now_s();
        for (int l = 0; l < LAYERS; l++) {
            gencache_kv_view w;
            if (gencache_kv_retrieve(kv, (uint32_t)l, POS, &w) != GENCACHE_OK)
                return 1;
            sink ^= ((const unsigned char *)w.k)[0] ^ ((const unsigned char *)w.v)[row * POS - 1];
        }
        kt[i] = bench_now_s() - t0;
        t0 = bench_now_s();
        for (int l = 0; l < LAYERS; l++) {
            unsigned char *k = malloc(row * POS), *v = malloc(row * POS);
            for (int p = 0; p < POS; p++) {
                memcpy(k + (size_t)p * row, krows[l * POS + p], row);
                memcpy(v + (size_t)p * row, vrows[l * POS + p], row);
            }
            sink ^= k[0] ^ v[row * POS - 1];
            free(k);
            free(v);
        }
        ct[i] = bench_now_s() - t0;
    }
    double kvs = bench_median(kt, RUNS), cs = bench_median(ct, RUNS);
    printf("KV retrieve %d positions x %d layers (%zu KiB a layer)\n", POS, LAYERS,
           2 * row * POS / 1024);
    printf("%-36s %8.3f us\n", "concatenate per-position rows", cs * 1e6);
    printf("%-36s %8.3f us  %.0fx the concatenation's speed\n", "gencache_kv_retrieve", kvs * 1e6,
           cs / kvs);

    /* The same with int8 storage. Retrieve dequantizes rows into one buffer per layer and keeps
     * them, so two cases: right after a prune every row is dequantized again ("cold"); in a
     * decode step (append one position to each layer, then retrieve) only the new row is. */
    gencache_kv *kv8;
    o.int8 = 1;
    if (gencache_kv_new(&o, &kv8) != GENCACHE_OK)
        return 1;
    int64_t next = 0;
    for (; next < POS; next++)
        for (int l = 0; l < LAYERS; l++)
            if (gencache_kv_append(kv8, (uint32_t)l, next, src + (size_t)next * ELEMS,
                                   src + (size_t)(next + 1) * ELEMS) != GENCACHE_OK)
                return 1;
    double cold[RUNS], step[RUNS];
    for (int i = 0; i < RUNS; i++) {
        for (int l = 0; l < LAYERS; l++)
            if (gencache_kv_append(kv8, (uint32_t)l, next, src + (size_t)i * ELEMS,
                                   src + (size_t)(i + 1) * ELEMS) != GENCACHE_OK)
                return 1;
        next++;
        if (gencache_kv_prune(kv8, POS, NULL) != GENCACHE_OK)
            return 1;
        double t0 = bench_now_s();
        for (int l = 0; l < LAYERS; l++) {
            gencache_kv_view w;
            if (gencache_kv_retrieve(kv8, (uint32_t)l, next, &w) != GENCACHE_OK)
                return 1;
            sink ^= ((const unsigned char *)w.k)[0];
        }
        cold[i] = bench_now_s() - t0;
        t0 = bench_now_s();
        for (int l = 0; l < LAYERS; l++) {
            gencache_kv_view w;
            if (gencache_kv_append(kv8, (uint32_t)l, next, src, src + ELEMS) != GENCACHE_OK ||
                gencache_kv_retrieve(kv8, (uint32_t)l, next + 1, &w) != GENCACHE_OK)
                return 1;
            sink ^= ((const unsigned char *)w.k)[0];
        }
        next++;
        step[i] = bench_now_s() - t0;
        if (gencache_kv_prune(kv8, POS, NULL) != GENCACHE_OK)
            return 1;
    }
    double k8c = bench_median(cold, RUNS), k8s = bench_median(step, RUNS);
    printf("%-36s %8.3f us  %.2fx the concatenation's speed\n", "int8 rows, all dequantized",
           k8c * 1e6, cs / k8c);
    printf("%-36s %8.3f us  %.2fx the concatenation's speed\n", "int8 rows, append 1 + retrieve",
           k8s * 1e6, cs / k8s);

    for (int i = 0; i < LAYERS * POS; i++) {
        free(krows[i]);
        free(vrows[i]);
    }
    free(krows);
    free(vrows);
    gencache_kv_free(kv);
    gencache_kv_free(kv8);
    free(src);
    free(back);
    free(copy);
    free(q);
    return 0;
}
