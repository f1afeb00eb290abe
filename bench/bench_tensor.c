/*
 * bench_tensor.c: throughput of the tensor codecs and of KV-window retrieval, each against a
 * baseline measured in the same run. Quantization (f16 -> int8, per tensor) and dequantization
 * (int8 -> f16) of a 64 MiB f16 tensor are compared with memcpy of the same 64 MiB, for each
 * kernel implementation this CPU runs; a retrieve of 64 positions x 32 layers is compared with
 * concatenating per-position K and V rows into fresh buffers. Medians of several runs. Then
 * every kernel of every table on its own (bench_kernels), which is what the dispatch rule of
 * docs/tensors.md rests on. The codecs, memcpy and the kernels are timed in the thread's CPU
 * time (cpu_now_s), the KV cases on the wall clock.
 *
 * usage: bench_tensor [MIB [ROUNDS]]   (default 64 MiB, 9 rounds)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gencache.h"
#include "tensor/tensor.h"
#include "bench_util.h"

#define RUNS    9
#define MAXRUNS 63

static volatile unsigned char sink;

/* The calling thread's CPU time in seconds. On a machine whose two cores other jobs share, a pass
 * over 64 MiB is often descheduled midway, and the wall clock charges the wait to whichever
 * operation it hit: the ratios moved by 2x from one round to the next. CPU time counts the
 * cycles the thread ran, memory stalls included, for the memcpy baseline and the codecs alike. */
static double cpu_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* One kernel of a table, called on n elements of the given buffers: f32 holds finite values, h16
 * finite f16 values and b16 the bf16 roundings of f32 (no subnormals, as in real weights). */
enum {
    K_F32_F16,
    K_F32_BF16,
    K_F16_F32,
    K_BF16_F32,
    K_AMAX_F32,
    K_AMAX_F16,
    K_AMAX_BF16,
    K_Q_F32,
    K_Q_F16,
    K_Q_BF16,
    K_DQ_F32,
    K_DQ_F16,
    K_DQ_BF16,
    K_COUNT
};
static const char *const kernel_names[K_COUNT] = {
    "f32_to_f16",  "f32_to_bf16", "f16_to_f32",  "bf16_to_f32", "amax_f32",
    "amax_f16",    "amax_bf16",   "quant_f32",   "quant_f16",   "quant_bf16",
    "dequant_f32", "dequant_f16", "dequant_bf16"};

static void run_kernel(const gencache__codec_kernels *k, int which, size_t n, const float *f32,
                       const uint16_t *h16, const uint16_t *b16, const int8_t *q8, float *of32,
                       uint16_t *o16, int8_t *oq)
{
    float m;
    switch (which) {
    case K_F32_F16:
        sink ^= (unsigned char)k->f32_to_f16(o16, f32, n);
        break;
    case K_F32_BF16:
        sink ^= (unsigned char)k->f32_to_bf16(o16, f32, n);
        break;
    case K_F16_F32:
        k->f16_to_f32(of32, h16, n);
        break;
    case K_BF16_F32:
        k->bf16_to_f32(of32, b16, n);
        break;
    case K_AMAX_F32:
        sink ^= (unsigned char)k->amax_f32(f32, n, &m);
        break;
    case K_AMAX_F16:
        sink ^= (unsigned char)k->amax_f16(h16, n, &m);
        break;
    case K_AMAX_BF16:
        sink ^= (unsigned char)k->amax_bf16(b16, n, &m);
        break;
    case K_Q_F32:
        k->quant_f32(oq, f32, n, 0.01f);
        break;
    case K_Q_F16:
        k->quant_f16(oq, h16, n, 0.01f);
        break;
    case K_Q_BF16:
        k->quant_bf16(oq, b16, n, 0.01f);
        break;
    case K_DQ_F32:
        k->dequant_f32(of32, q8, n, 0.01f);
        break;
    case K_DQ_F16:
        k->dequant_f16(o16, q8, n, 0.01f);
        break;
    default:
        k->dequant_bf16(o16, q8, n, 0.01f);
        break;
    }
}

/* Whether two tables share their kernel `which` (the dispatched table mixes the others'). */
static int same_kernel(const gencache__codec_kernels *a, const gencache__codec_kernels *b,
                       int which)
{
    switch (which) {
    case K_F32_F16:
        return a->f32_to_f16 == b->f32_to_f16;
    case K_F32_BF16:
        return a->f32_to_bf16 == b->f32_to_bf16;
    case K_F16_F32:
        return a->f16_to_f32 == b->f16_to_f32;
    case K_BF16_F32:
        return a->bf16_to_f32 == b->bf16_to_f32;
    case K_AMAX_F32:
        return a->amax_f32 == b->amax_f32;
    case K_AMAX_F16:
        return a->amax_f16 == b->amax_f16;
    case K_AMAX_BF16:
        return a->amax_bf16 == b->amax_bf16;
    case K_Q_F32:
        return a->quant_f32 == b->quant_f32;
    case K_Q_F16:
        return a->quant_f16 == b->quant_f16;
    case K_Q_BF16:
        return a->quant_bf16 == b->quant_bf16;
    case K_DQ_F32:
        return a->dequant_f32 == b->dequant_f32;
    case K_DQ_F16:
        return a->dequant_f16 == b->dequant_f16;
    default:
        return a->dequant_bf16 == b->dequant_bf16;
    }
}

/* Every kernel of every table this CPU runs, at two sizes: a block that stays in the L1/L2
 * cache (4,096 elements, as a group or a KV row would be, called repeatedly) and a tensor of
 * 16 M elements that streams from memory. Each round times the tables back to back, and the
 * AVX-512 over AVX2 column is the median of the rounds' ratios, which holds up better on a busy
 * machine than a ratio of medians. docs/tensors.md says which kernels the dispatch takes from
 * which table; the last column is the table the dispatch (impls[3]) takes each kernel from. */
static void bench_kernels(const gencache__codec_kernels *const *impls, int kruns)
{
    enum { SMALL = 4096, SMALL_REPS = 256, BIG = 16 << 20 };
    float *f32 = malloc(sizeof *f32 * BIG), *of32 = malloc(sizeof *of32 * BIG);
    uint16_t *h16 = malloc(2 * (size_t)BIG), *b16 = malloc(2 * (size_t)BIG);
    uint16_t *o16 = malloc(2 * (size_t)BIG);
    int8_t *q8 = malloc(BIG), *oq = malloc(BIG);
    uint64_t r = 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; i < BIG; i++) {
        r ^= r << 13;
        r ^= r >> 7;
        r ^= r << 17;
        h16[i] = (uint16_t)(r & 0x3BFF);
        f32[i] = (float)((int32_t)(r >> 40 & 0xFFFF) - 32768) * 0.01f;
        q8[i] = (int8_t)(r >> 24);
        uint32_t fb;
        memcpy(&fb, &f32[i], sizeof fb);
        b16[i] = (uint16_t)(fb >> 16);
    }
    memset(of32, 1, sizeof *of32 * BIG);
    memset(o16, 1, 2 * (size_t)BIG);
    memset(oq, 1, BIG);
    printf("kernels, medians of %d rounds in thread CPU time: %d elements x %d calls (cache) | "
           "%d M elements (memory); the scalar table runs 3 rounds on the big tensor\n",
           kruns, SMALL, SMALL_REPS, BIG >> 20);
    printf("%-14s %10s %10s %10s %8s | %10s %10s %10s %8s | %s\n", "kernel", "scalar us", "avx2 us",
           "avx512 us", "512/avx2", "scalar ms", "avx2 ms", "avx512 ms", "512/avx2", "dispatch");
    for (int w = 0; w < K_COUNT; w++) {
        double med[2][3] = {{0}}, ratio[2] = {0};
        for (int s = 0; s < 2; s++) {
            double t[3][MAXRUNS], pr[MAXRUNS];
            for (int i = 0; i < kruns; i++) {
                for (int k = 0; k < 3; k++) {
                    if (!impls[k] || (s == 1 && k == 0 && i >= 3))
                        continue;
                    double t0 = cpu_now_s();
                    if (s == 0)
                        for (int j = 0; j < SMALL_REPS; j++)
                            run_kernel(impls[k], w, SMALL, f32, h16, b16, q8, of32, o16, oq);
                    else
                        run_kernel(impls[k], w, BIG, f32, h16, b16, q8, of32, o16, oq);
                    t[k][i] = cpu_now_s() - t0;
                }
                if (impls[1] && impls[2])
                    pr[i] = t[1][i] / t[2][i];
            }
            for (int k = 0; k < 3; k++)
                if (impls[k])
                    med[s][k] = bench_median(t[k], s == 1 && k == 0 && kruns > 3 ? 3 : kruns);
            if (impls[1] && impls[2])
                ratio[s] = bench_median(pr, kruns);
        }
        printf("%-14s", kernel_names[w]);
        for (int s = 0; s < 2; s++) {
            double scale = s == 0 ? 1e6 : 1e3;
            for (int k = 0; k < 3; k++)
                if (impls[k])
                    printf(" %10.1f", med[s][k] * scale);
                else
                    printf(" %10s", "-");
            if (impls[1] && impls[2])
                printf(" %7.2fx", ratio[s]);
            else
                printf(" %8s", "-");
            printf(" |");
        }
        /* A kernel of neither table: the dispatch picks one by size (docs/tensors.md). */
        const char *from = impls[1] || impls[2] ? "by size" : "scalar";
        if (impls[0] && same_kernel(impls[3], impls[0], w))
            from = "scalar";
        for (int k = 2; k >= 1; k--)
            if (impls[k] && same_kernel(impls[3], impls[k], w)) {
                from = impls[k]->name;
                break;
            }
        printf(" %s\n", from);
    }
    free(f32);
    free(of32);
    free(h16);
    free(b16);
    free(o16);
    free(q8);
    free(oq);
}

int main(int argc, char **argv)
{
    size_t mib = argc > 1 ? (size_t)atoi(argv[1]) : 64;
    int runs = argc > 2 ? atoi(argv[2]) : RUNS;
    if (mib < 1)
        mib = 1;
    if (runs < 3)
        runs = 3;
    if (runs > MAXRUNS)
        runs = MAXRUNS;
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

    /* Each round times memcpy of the tensor and each codec run of each table in turn (the
     * tables interleaved, so a change of the machine's load hits them alike); the ratios are
     * medians of the rounds' ratios, which hold up on a busy machine better than ratios of
     * medians, and, in brackets, the fastest memcpy over the fastest codec run. */
    static double tt[4][4][MAXRUNS];
    double rr[MAXRUNS];
    printf("tensor of %zu MiB f16 (%zu elements), medians of %d rounds in thread CPU time; "
           "ratios are medians of each round's memcpy time over the codec's [fastest over "
           "fastest]\n",
           mib, n, runs);
    /* Each table, then the one the library dispatches to ("best"). */
    const gencache__codec_kernels *impls[4] = {
        gencache__codec_kernels_scalar(), gencache__codec_kernels_avx2(),
        gencache__codec_kernels_avx512(), gencache__codec_kernels_best()};
    gencache_quant_options go;
    gencache_quant_options_init(&go);
    go.codec = GENCACHE_CODEC_INT8_GROUP;
    size_t gsize;
    if (gencache_quant_size(&d, &go, &gsize) != GENCACHE_OK)
        return 1;
    unsigned char *gq = malloc(gsize);
    memset(gq, 1, gsize);
    /* The scalar table takes a second per run on 64 MiB and is only there for reference: it runs
     * in the first 3 rounds. */
    int kruns[4];
    for (int k = 0; k < 4; k++)
        kruns[k] = k == 0 && runs > 3 ? 3 : runs;
    for (int i = 0; i < runs; i++) {
        for (int k = 0; k < 4; k++) {
            if (!impls[k] || i >= kruns[k])
                continue;
            /* Every operation runs twice in a row and the second run is timed, so it meets the
             * cache as its own previous run left it (memcpy leaves 64 MiB of dirty lines that
             * would otherwise be charged to whatever runs next). */
            for (int op = 0; op < 4; op++) {
                for (int rep = k == 0 ? 1 : 0; rep < 2; rep++) {
                    size_t got;
                    double t0 = cpu_now_s();
                    int rc = 0;
                    if (op == 0)
                        memcpy(copy, src, bytes);
                    else if (op == 1)
                        rc = gencache__quant_encode_with(impls[k], &d, src, bytes, NULL, q, qsize,
                                                         &got);
                    else if (op == 2)
                        rc = gencache__quant_decode_with(impls[k], q, qsize, GENCACHE_DTYPE_F16,
                                                         back, bytes, &got);
                    else /* per group of 128: one pass, each group read while in L1 */
                        rc = gencache__quant_encode_with(impls[k], &d, src, bytes, &go, gq, gsize,
                                                         &got);
                    tt[k][op][i] = cpu_now_s() - t0;
                    if (rc != 0)
                        return 1;
                }
            }
            sink ^= copy[i];
        }
    }
    static const char *const ops[4] = {NULL, "quantize f16->int8", "dequantize int8->f16",
                                       "quantize f16->int8-group128"};
    static const int order[3] = {3, 1, 2};
    for (int k = 0; k < 4; k++) {
        if (!impls[k])
            continue;
        int kr = kruns[k];
        const char *name = k == 3 ? "best" : impls[k]->name;
        char label[64];
        double mfast = tt[k][0][0];
        for (int i = 1; i < kr; i++)
            mfast = tt[k][0][i] < mfast ? tt[k][0][i] : mfast;
        snprintf(label, sizeof label, "memcpy (baseline) [%s rounds]", name);
        double ms = bench_median(tt[k][0], kr);
        printf("%-36s %8.3f ms  %6.2f GB/s\n", label, ms * 1e3, (double)bytes / ms / 1e9);
        for (int j = 0; j < 3; j++) {
            int op = order[j];
            double fast = tt[k][op][0];
            for (int i = 0; i < kr; i++) {
                rr[i] = tt[k][0][i] / tt[k][op][i];
                fast = tt[k][op][i] < fast ? tt[k][op][i] : fast;
            }
            double ratio = bench_median(rr, kr);
            double med = bench_median(tt[k][op], kr);
            snprintf(label, sizeof label, "%s [%s]", ops[op], name);
            printf("%-36s %8.3f ms  %6.2f GB/s  %.2fx memcpy [%.2fx]\n", label, med * 1e3,
                   (double)bytes / med / 1e9, ratio, mfast / fast);
        }
    }
    free(gq);

    bench_kernels(impls, runs);

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
