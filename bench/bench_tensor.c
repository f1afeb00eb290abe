/*
 * bench_tensor.c: throughput of the tensor codecs and of KV-window retrieval, each against a
 * baseline measured in the same run, at the three places a tensor can live on this machine: the
 * core's L2 cache, the shared L3 cache and DRAM. It starts with a bandwidth sweep (memcpy and a
 * plain read pass from 256 KiB to 512 MiB) that shows where each level ends, since a virtual
 * machine's lscpu reports the host's caches, not its share of them. Then, at each level,
 * per-tensor and per-group quantization (f16 -> int8) and dequantization (int8 -> f16) against
 * memcpy of the same tensor, for each kernel table this CPU runs; every kernel of every table at
 * each level (what the dispatch rule of docs/tensors.md rests on, and a check that every
 * dispatched kernel is at least as fast as the AVX2 one); and a KV retrieve of 64 positions x 32
 * layers against concatenating per-position rows. Everything is timed in the thread's CPU time
 * (cpu_now_s); every figure is a median of rounds, every ratio the median of the rounds' ratios.
 *
 * usage: bench_tensor [ROUNDS [DRAM_MIB]]   (default 9 rounds, a 128 MiB tensor for DRAM)
 */
#include <stdint.h>
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
 * over a large tensor is often descheduled midway, and the wall clock charges the wait to
 * whichever operation it hit: the ratios moved by 2x from one round to the next. CPU time counts
 * the cycles the thread ran, memory stalls included, for the baselines and the codecs alike. */
static double cpu_now_s(void)
{
    return (double)bench_thread_cpu_ns() * 1e-9;
}

/* The median of n values, leaving them in place (bench_median sorts its argument, and the
 * samples are paired by round afterwards). */
static double median_of(const double *v, int n)
{
    double tmp[MAXRUNS];
    memcpy(tmp, v, sizeof *v * (size_t)n);
    return bench_median(tmp, n);
}

/* A buffer with every page touched, so no timed run pays for faults, that starts 16 bytes past
 * a cache line: where glibc's malloc puts a large block (after its 16-byte chunk header), so
 * where the tensors of real callers (numpy arrays, decoded payloads) start. Vector loads and
 * stores that straddle cache lines are part of what the kernels meet. Freed with free_touched. */
#define ALLOC_SKEW 16

static void *alloc_touched(size_t bytes)
{
    unsigned char *p = aligned_alloc(64, (bytes + ALLOC_SKEW + 63) & ~(size_t)63);
    if (!p) {
        fprintf(stderr, "bench_tensor: out of memory (%zu bytes)\n", bytes);
        exit(1);
    }
    memset(p + ALLOC_SKEW, 1, bytes);
    return p + ALLOC_SKEW;
}

static void free_touched(void *p)
{
    if (p)
        free((unsigned char *)p - ALLOC_SKEW);
}

/* A plain read pass: every byte loaded once into independent accumulators of 16 bytes, with no
 * other work, and a large input read as the library's kernels read it (tensor.h,
 * kernels_avx512.c): prefetched, and its two halves at once (`streams` 2; 1 reads it front to
 * back, for the sweep's comparison). The time is that of the loads alone: the floor of any
 * kernel that has to read the same bytes. */
typedef uint64_t u64x2 __attribute__((vector_size(16)));

static void read_streams(const void *buf, size_t bytes, int streams)
{
    const u64x2 *p = buf;
    u64x2 a = {0, 0}, b = a, c = a, d = a;
    size_t i = 0, n = bytes / 16;
    if (bytes >= GENCACHE__PREFETCH_MIN && streams == 2) {
        size_t half = n / 8 * 4;
        const u64x2 *q = p + half;
        for (; i < half; i += 4) {
            gencache__prefetch(p + i);
            gencache__prefetch(q + i);
            a |= p[i] | p[i + 1];
            b |= p[i + 2] | p[i + 3];
            c |= q[i] | q[i + 1];
            d |= q[i + 2] | q[i + 3];
        }
        i = 2 * half;
    }
    const int pf = bytes >= GENCACHE__PREFETCH_MIN;
    for (; i + 4 <= n; i += 4) {
        if (pf)
            gencache__prefetch(p + i);
        a |= p[i];
        b |= p[i + 1];
        c |= p[i + 2];
        d |= p[i + 3];
    }
    a |= b | c | d;
    sink ^= (unsigned char)(a[0] ^ a[1]);
}

static void read_pass(const void *buf, size_t bytes)
{
    read_streams(buf, bytes, 2);
}

/* The arithmetic floor of exact per-tensor quantization on this CPU: every f16 element widened
 * to f32 with the conversion instruction (VCVTPH2PS) and multiplied by a scale, the products
 * folded with XOR so that none is dead, and nothing rounded, narrowed or stored. Quantizing
 * with f32 arithmetic does at least this much work after the read pass that finds the maximum,
 * so the read pass plus this pass bounds what per-tensor quantization can reach in the cache
 * levels, where the conversions, not the loads, set the pace. Returns 0 where the CPU has neither
 * AVX-512 nor AVX2 with F16C, which the library's kernels would use. */
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

__attribute__((target("avx512f"))) static void widen_pass_avx512(const uint16_t *src, size_t n)
{
    const __m512 s = _mm512_set1_ps(0.75f);
    __m512i a = _mm512_setzero_si512(), b = a;
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        __m512 p0 = _mm512_mul_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const void *)(src + i))), s);
        __m512 p1 =
            _mm512_mul_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const void *)(src + i + 16))), s);
        __m512 p2 =
            _mm512_mul_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const void *)(src + i + 32))), s);
        __m512 p3 =
            _mm512_mul_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const void *)(src + i + 48))), s);
        a = _mm512_ternarylogic_epi32(a, _mm512_castps_si512(p0), _mm512_castps_si512(p1), 0x96);
        b = _mm512_ternarylogic_epi32(b, _mm512_castps_si512(p2), _mm512_castps_si512(p3), 0x96);
    }
    sink ^= (unsigned char)_mm512_reduce_or_epi32(_mm512_xor_si512(a, b));
}

__attribute__((target("avx2,f16c"))) static void widen_pass_avx2(const uint16_t *src, size_t n)
{
    const __m256 s = _mm256_set1_ps(0.75f);
    __m256 a = _mm256_setzero_ps(), b = a;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256 p0 = _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128((const void *)(src + i))), s);
        __m256 p1 = _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128((const void *)(src + i + 8))), s);
        __m256 p2 =
            _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128((const void *)(src + i + 16))), s);
        __m256 p3 =
            _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128((const void *)(src + i + 24))), s);
        a = _mm256_xor_ps(a, _mm256_xor_ps(p0, p1));
        b = _mm256_xor_ps(b, _mm256_xor_ps(p2, p3));
    }
    __m256i x = _mm256_castps_si256(_mm256_xor_ps(a, b));
    sink ^= (unsigned char)(_mm256_extract_epi32(x, 0) ^ _mm256_extract_epi32(x, 7));
}

static int widen_pass(const uint16_t *src, size_t n)
{
    if (gencache__codec_kernels_avx512()) {
        widen_pass_avx512(src, n);
        return 1;
    }
    if (gencache__codec_kernels_avx2()) {
        widen_pass_avx2(src, n);
        return 1;
    }
    return 0;
}
#else
static int widen_pass(const uint16_t *src, size_t n)
{
    (void)src;
    (void)n;
    return 0;
}
#endif

/* The next value of a xorshift generator: the inputs are the same in every run. */
static uint64_t next_rand(uint64_t *r)
{
    *r ^= *r << 13;
    *r ^= *r >> 7;
    *r ^= *r << 17;
    return *r;
}

/* n finite f16 values of both signs, all exponents but the top one. */
static void fill_f16(uint16_t *dst, size_t n)
{
    uint64_t r = 88172645463325252ull;
    for (size_t i = 0; i < n; i++)
        dst[i] = (uint16_t)(next_rand(&r) & 0xBBFF);
}

/* Calls of an operation on `bytes` per timed sample: enough for a sample of about 64 MiB moved,
 * so that small tensors are timed well above the clock's cost. */
static int calls_for(size_t bytes)
{
    size_t c = ((size_t)64 << 20) / bytes;
    return c < 1 ? 1 : c > 4096 ? 4096 : (int)c;
}

/* memcpy and the read pass (as one stream and as two) from 256 KiB to 512 MiB, medians of 5
 * samples. The levels show as steps: reads from L2 run at several times the L3 rate, and the L3
 * rate falls to the DRAM rate where the buffers outgrow this virtual machine's share of the L3
 * cache. */
static void bench_sweep(void)
{
    enum { SAMPLES = 5 };
    const size_t max = (size_t)512 << 20;
    unsigned char *s = alloc_touched(max), *d = alloc_touched(max);
    printf("bandwidth sweep, one thread, thread CPU time, medians of %d samples (memcpy moves "
           "each byte once: read + write; reads prefetched, as one stream and as two)\n",
           SAMPLES);
    printf("%10s %12s %14s %14s\n", "bytes", "memcpy GB/s", "read 1 GB/s", "read 2 GB/s");
    for (size_t b = (size_t)256 << 10; b <= max; b *= 2) {
        double t[3][SAMPLES];
        int calls = calls_for(b);
        for (int i = 0; i < SAMPLES; i++) {
            for (int op = 0; op < 3; op++) {
                for (int rep = 0; rep < 2; rep++) {
                    int m = rep ? calls : 1;
                    double t0 = cpu_now_s();
                    for (int c = 0; c < m; c++)
                        if (op == 0)
                            memcpy(d, s, b);
                        else
                            read_streams(s, b, op);
                    t[op][i] = (cpu_now_s() - t0) / m;
                }
            }
            sink ^= d[b - 1];
        }
        if (b < (size_t)1 << 20)
            printf("%6zu KiB", b >> 10);
        else
            printf("%6zu MiB", b >> 20);
        printf(" %12.2f %14.2f %14.2f\n", (double)b / bench_median(t[0], SAMPLES) / 1e9,
               (double)b / bench_median(t[1], SAMPLES) / 1e9,
               (double)b / bench_median(t[2], SAMPLES) / 1e9);
    }
    free_touched(s);
    free_touched(d);
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

/* The codecs on one tensor of `bytes` f16 at one level of the memory: memcpy of the tensor (the
 * baseline), per-tensor quantization, dequantization and per-group quantization, for each table
 * (the scalar one, for reference, in the first 3 rounds of the cached levels only) and the table
 * the library dispatches to ("best"). Each round times every operation of every table in turn
 * (every other round in reverse order), so a change of the machine's load hits them alike; each
 * operation runs once untimed and then `calls` times timed, so it meets the cache as its own
 * previous run left it (memcpy leaves dirty lines that would otherwise be charged to whatever
 * runs next). The read pass gives the floor of per-tensor quantization, which has to read the
 * tensor twice: the maximum first, then the quantization. */
static void bench_codecs(const char *level, size_t bytes, int runs,
                         const gencache__codec_kernels *const *impls, int with_scalar, int cold)
{
    /* At the DRAM level every timed run starts with none of its buffers in the cache: a read
     * of EVICT bytes, untimed, pushes out what the run before left (the tail of its tensor, its
     * dirty lines), so no operation gains from the order they run in. */
    enum { EVICT = 256 << 20 };
    unsigned char *evict = cold ? alloc_touched(EVICT) : NULL;
    size_t n = bytes / 2;
    uint16_t *src = alloc_touched(bytes), *back = alloc_touched(bytes);
    unsigned char *copy = alloc_touched(bytes);
    fill_f16(src, n);
    gencache_tensor_desc d;
    memset(&d, 0, sizeof d);
    d.dtype = GENCACHE_DTYPE_F16;
    d.ndim = 1;
    d.shape[0] = (int64_t)n;
    gencache_quant_options go;
    gencache_quant_options_init(&go);
    go.codec = GENCACHE_CODEC_INT8_GROUP;
    size_t qsize, gsize;
    if (gencache_quant_size(&d, NULL, &qsize) != GENCACHE_OK ||
        gencache_quant_size(&d, &go, &gsize) != GENCACHE_OK)
        exit(1);
    unsigned char *q = alloc_touched(qsize), *gq = alloc_touched(gsize);
    int calls = calls_for(bytes);
    static double tt[4][4][MAXRUNS];
    double rd[MAXRUNS], wd[MAXRUNS], rr[MAXRUNS];
    int has_widen = 0;
    int kruns[4];
    for (int k = 0; k < 4; k++)
        kruns[k] = k != 0 ? runs : with_scalar ? 3 : 0;
    printf("\nlevel %s: tensor of %zu KiB f16 (%zu elements), %d calls per sample, medians of %d "
           "rounds in thread CPU time%s; ratios are medians of each round's memcpy time over "
           "the codec's [fastest over fastest]\n",
           level, bytes >> 10, n, calls, runs, cold ? ", each run starting with a cold cache" : "");
    for (int i = 0; i < runs; i++) {
        read_pass(src, bytes);
        if (evict)
            read_pass(evict, EVICT);
        double t0 = cpu_now_s();
        for (int c = 0; c < calls; c++)
            read_pass(src, bytes);
        rd[i] = (cpu_now_s() - t0) / calls;
        /* In DRAM the loads set the pace, and the read pass is the floor there. */
        t0 = cpu_now_s();
        for (int c = 0; c < calls && !cold; c++)
            has_widen = widen_pass(src, n);
        wd[i] = (cpu_now_s() - t0) / calls;
        for (int kk = 0; kk < 4; kk++) {
            int k = i % 2 ? 3 - kk : kk; /* every other round in reverse order */
            if (!impls[k] || i >= kruns[k])
                continue;
            for (int op = 0; op < 4; op++) {
                for (int rep = 0; rep < 2; rep++) {
                    size_t got;
                    int rc = 0, m = rep ? calls : 1;
                    if (evict && rep)
                        read_pass(evict, EVICT);
                    t0 = cpu_now_s();
                    for (int c = 0; c < m && rc == 0; c++) {
                        if (op == 0)
                            memcpy(copy, src, bytes);
                        else if (op == 1)
                            rc = gencache__quant_encode_with(impls[k], &d, src, bytes, NULL, q,
                                                             qsize, &got);
                        else if (op == 2)
                            rc = gencache__quant_decode_with(impls[k], q, qsize, GENCACHE_DTYPE_F16,
                                                             back, bytes, &got);
                        else /* per group of 128: one pass, each group read while in L1 */
                            rc = gencache__quant_encode_with(impls[k], &d, src, bytes, &go, gq,
                                                             gsize, &got);
                    }
                    tt[k][op][i] = (cpu_now_s() - t0) / m;
                    if (rc != 0)
                        exit(1);
                }
            }
            sink ^= copy[i];
        }
    }
    static const char *const ops[4] = {NULL, "quantize f16->int8", "dequantize int8->f16",
                                       "quantize f16->int8-group128"};
    static const int order[3] = {3, 1, 2};
    for (int i = 0; i < runs; i++)
        rr[i] = tt[3][0][i] / (2 * rd[i]);
    double ceiling = bench_median(rr, runs), rmed = median_of(rd, runs);
    printf("%-36s %9.4f ms  %6.2f GB/s; two reads: per-tensor quantization <= %.2fx memcpy\n",
           "read pass over the tensor (floor)", rmed * 1e3, (double)bytes / rmed / 1e9, ceiling);
    if (has_widen) {
        for (int i = 0; i < runs; i++)
            rr[i] = tt[3][0][i] / (rd[i] + wd[i]);
        double wmed = median_of(wd, runs);
        printf("%-36s %9.4f ms  %6.2f GB/s; with the read pass: per-tensor quantization <= %.2fx "
               "memcpy\n",
               "widen f16 and scale (arithmetic floor)", wmed * 1e3, (double)bytes / wmed / 1e9,
               bench_median(rr, runs));
    }
    for (int k = 0; k < 4; k++) {
        if (!impls[k] || kruns[k] == 0)
            continue;
        int kr = kruns[k];
        const char *name = k == 3 ? "best" : impls[k]->name;
        char label[64];
        double mfast = tt[k][0][0];
        for (int i = 1; i < kr; i++)
            mfast = tt[k][0][i] < mfast ? tt[k][0][i] : mfast;
        snprintf(label, sizeof label, "memcpy (baseline) [%s rounds]", name);
        double ms = median_of(tt[k][0], kr);
        printf("%-36s %9.4f ms  %6.2f GB/s\n", label, ms * 1e3, (double)bytes / ms / 1e9);
        for (int j = 0; j < 3; j++) {
            int op = order[j];
            double fast = tt[k][op][0];
            for (int i = 0; i < kr; i++) {
                rr[i] = tt[k][0][i] / tt[k][op][i];
                fast = tt[k][op][i] < fast ? tt[k][op][i] : fast;
            }
            double ratio = bench_median(rr, kr);
            double med = median_of(tt[k][op], kr);
            snprintf(label, sizeof label, "%s [%s]", ops[op], name);
            printf("%-36s %9.4f ms  %6.2f GB/s  %.2fx memcpy [%.2fx]\n", label, med * 1e3,
                   (double)bytes / med / 1e9, ratio, mfast / fast);
        }
    }
    free_touched(src);
    free_touched(back);
    free_touched(copy);
    free_touched(q);
    free_touched(gq);
    free_touched(evict);
}

/* A dispatched kernel counts as slower than the AVX2 one when the median of the rounds' AVX2 time
 * over its time is below this: on this shared machine two timings of one and the same kernel
 * differ by up to 5% (the "(avx2/avx2)" row prints that every run). */
#define SLOWER 0.95

/* Every kernel of every table this CPU runs, at the three levels: a block of 4,096 elements (a
 * group or a KV row) called repeatedly, which stays in L1/L2; 1 M elements (4 MiB of f32) called
 * 32 times, which stays in L3; and 48 M elements (96 MiB of f16, 192 MiB of f32), which streams
 * from DRAM. Each round times the tables in turn (every other round in reverse order), each
 * kernel once untimed first. The ratios are the medians of the rounds' AVX2 time over the
 * other's (above 1: faster than AVX2): the AVX-512 table's kernel, and the one the library
 * dispatches to (impls[3]), which is the AVX2 or the AVX-512 kernel or one that picks either by
 * size. The scalar table runs 3 rounds at the cached levels, for reference. A last row times the
 * AVX2 quant_f16 against itself, and the last line names the dispatched kernels that measured
 * slower than AVX2 at some level. */
static void bench_kernels(const gencache__codec_kernels *const *impls, int kruns)
{
    enum { LEVELS = 3 };
    static const size_t elems[LEVELS] = {4096, (size_t)1 << 20, (size_t)48 << 20};
    static const int reps[LEVELS] = {256, 32, 1};
    static const char *const level_names[LEVELS] = {"block", "L3", "DRAM"};
    const size_t big = elems[LEVELS - 1];
    float *f32 = alloc_touched(4 * big), *of32 = alloc_touched(4 * big);
    uint16_t *h16 = alloc_touched(2 * big), *b16 = alloc_touched(2 * big);
    uint16_t *o16 = alloc_touched(2 * big);
    int8_t *q8 = alloc_touched(big), *oq = alloc_touched(big);
    uint64_t r = 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; i < big; i++) {
        next_rand(&r);
        h16[i] = (uint16_t)(r & 0xBBFF);
        f32[i] = (float)((int32_t)(r >> 40 & 0xFFFF) - 32768) * 0.01f;
        q8[i] = (int8_t)(r >> 24);
        uint32_t fb;
        memcpy(&fb, &f32[i], sizeof fb);
        b16[i] = (uint16_t)(fb >> 16);
    }
    if (!impls[1] || !impls[2]) {
        printf("\nkernels: this CPU runs %s only; no AVX-512 to compare with AVX2\n",
               impls[3]->name);
        goto out;
    }
    printf("\nkernels, medians of %d rounds in thread CPU time: block = %zu elements x %d calls, "
           "L3 = %zu M elements x %d calls, DRAM = %zu M elements; ratios: AVX2 time over the "
           "other's, medians of the rounds' (above 1: faster than AVX2)\n",
           kruns, elems[0], reps[0], elems[1] >> 20, reps[1], elems[2] >> 20);
    printf("%-13s", "kernel");
    for (int l = 0; l < LEVELS; l++)
        printf(" | %-5s %8s %8s %8s %8s", level_names[l], l ? "scal ms" : "scal us",
               l ? "avx2 ms" : "avx2 us", "512/avx2", "best/avx2");
    printf(" | dispatch\n");
    char slow[512] = "";
    for (int row = 0; row <= K_COUNT; row++) {
        /* The last row times the AVX2 quant_f16 against itself: how far apart two timings of
         * one and the same kernel come out here, the noise of every ratio above it. */
        const int noise = row == K_COUNT, w = noise ? K_Q_F16 : row;
        const gencache__codec_kernels *tab[4] = {impls[0], impls[1], noise ? impls[1] : impls[2],
                                                 impls[3]};
        /* Where the dispatched kernel comes from: 1 or 2 when it is that table's, 3 when it is
         * neither (a kernel that picks by size) and has to be timed itself. */
        int from = noise                                ? 2
                   : same_kernel(impls[3], impls[2], w) ? 2
                   : same_kernel(impls[3], impls[1], w) ? 1
                                                        : 3;
        printf("%-13s", noise ? "(avx2/avx2)" : kernel_names[w]);
        int is_slow = 0;
        for (int l = 0; l < LEVELS; l++) {
            double t[4][MAXRUNS], pr[2][MAXRUNS];
            int sruns = l < LEVELS - 1 && !noise ? (kruns < 3 ? kruns : 3) : 0;
            for (int i = 0; i < kruns; i++) {
                for (int kk = 0; kk < 4; kk++) {
                    int k = i % 2 ? 3 - kk : kk; /* every other round in reverse order */
                    if ((k == 0 && i >= sruns) || (k == 3 && from != 3))
                        continue;
                    for (int rep = 0; rep < 2; rep++) {
                        int m = rep ? reps[l] : 1;
                        double t0 = cpu_now_s();
                        for (int j = 0; j < m; j++)
                            run_kernel(tab[k], w, elems[l], f32, h16, b16, q8, of32, o16, oq);
                        t[k][i] = (cpu_now_s() - t0) / m;
                    }
                }
                pr[0][i] = t[1][i] / t[2][i];
                pr[1][i] = t[1][i] / t[from][i];
            }
            double scale = l ? 1e3 : 1e6;
            double r512 = bench_median(pr[0], kruns), rbest = bench_median(pr[1], kruns);
            if (sruns)
                printf(" | %-5s %8.1f", "", bench_median(t[0], sruns) * scale);
            else
                printf(" | %-5s %8s", "", "-");
            printf(" %8.2f %7.2fx %8.2fx", bench_median(t[1], kruns) * scale, r512, rbest);
            if (!noise && from != 1 && rbest < SLOWER)
                is_slow = 1;
        }
        printf(" | %s\n", noise ? "-" : from == 3 ? "by size" : impls[from]->name);
        if (is_slow && strlen(slow) + strlen(kernel_names[w]) + 2 < sizeof slow) {
            strcat(slow, " ");
            strcat(slow, kernel_names[w]);
        }
    }
    printf("dispatched kernels slower than AVX2 (best/avx2 below %.2f at some level):%s\n", SLOWER,
           slow[0] ? slow : " none");
out:
    free_touched(f32);
    free_touched(of32);
    free_touched(h16);
    free_touched(b16);
    free_touched(o16);
    free_touched(q8);
    free_touched(oq);
}

/* KV: 32 layers, 64 positions, K and V rows of 8 heads x 128 f16 each (2 KiB), in thread CPU
 * time like the rest: a retrieve of every layer (KV_CALLS times per sample: one takes about a
 * microsecond) against concatenating each layer's per-position rows into fresh buffers, as a
 * dict of per-position tensors would; then the same with int8 storage. */
static int bench_kv(int runs, const uint16_t *src)
{
    enum { LAYERS = 32, POS = 64, ELEMS = 1024, KV_CALLS = 256, CAT_CALLS = 8 };
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
    double kt[MAXRUNS], ct[MAXRUNS], rr[MAXRUNS];
    for (int i = 0; i < runs; i++) {
        double t0 = cpu_now_s();
        for (int c = 0; c < KV_CALLS; c++) {
            for (int l = 0; l < LAYERS; l++) {
                gencache_kv_view w;
                if (gencache_kv_retrieve(kv, (uint32_t)l, POS, &w) != GENCACHE_OK)
                    return 1;
                sink ^=
                    ((const unsigned char *)w.k)[0] ^ ((const unsigned char *)w.v)[row * POS - 1];
            }
        }
        kt[i] = (cpu_now_s() - t0) / KV_CALLS;
        t0 = cpu_now_s();
        for (int c = 0; c < CAT_CALLS; c++) {
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
        }
        ct[i] = (cpu_now_s() - t0) / CAT_CALLS;
        rr[i] = ct[i] / kt[i];
    }
    double kvs = median_of(kt, runs), cs = median_of(ct, runs);
    printf("\nKV retrieve %d positions x %d layers (%zu KiB a layer), medians of %d rounds in "
           "thread CPU time\n",
           POS, LAYERS, 2 * row * POS / 1024, runs);
    printf("%-36s %8.3f us\n", "concatenate per-position rows", cs * 1e6);
    printf("%-36s %8.3f us  %.0fx the concatenation's speed\n", "gencache_kv_retrieve", kvs * 1e6,
           bench_median(rr, runs));

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
    double cold[MAXRUNS], step[MAXRUNS], rc[MAXRUNS], rs[MAXRUNS];
    for (int i = 0; i < runs; i++) {
        for (int l = 0; l < LAYERS; l++)
            if (gencache_kv_append(kv8, (uint32_t)l, next, src + (size_t)i * ELEMS,
                                   src + (size_t)(i + 1) * ELEMS) != GENCACHE_OK)
                return 1;
        next++;
        if (gencache_kv_prune(kv8, POS, NULL) != GENCACHE_OK)
            return 1;
        double t0 = cpu_now_s();
        for (int l = 0; l < LAYERS; l++) {
            gencache_kv_view w;
            if (gencache_kv_retrieve(kv8, (uint32_t)l, next, &w) != GENCACHE_OK)
                return 1;
            sink ^= ((const unsigned char *)w.k)[0];
        }
        cold[i] = cpu_now_s() - t0;
        t0 = cpu_now_s();
        for (int l = 0; l < LAYERS; l++) {
            gencache_kv_view w;
            if (gencache_kv_append(kv8, (uint32_t)l, next, src, src + ELEMS) != GENCACHE_OK ||
                gencache_kv_retrieve(kv8, (uint32_t)l, next + 1, &w) != GENCACHE_OK)
                return 1;
            sink ^= ((const unsigned char *)w.k)[0];
        }
        next++;
        step[i] = cpu_now_s() - t0;
        rc[i] = ct[i] / cold[i];
        rs[i] = ct[i] / step[i];
        if (gencache_kv_prune(kv8, POS, NULL) != GENCACHE_OK)
            return 1;
    }
    printf("%-36s %8.3f us  %.2fx the concatenation's speed\n", "int8 rows, all dequantized",
           median_of(cold, runs) * 1e6, bench_median(rc, runs));
    printf("%-36s %8.3f us  %.2fx the concatenation's speed\n", "int8 rows, append 1 + retrieve",
           median_of(step, runs) * 1e6, bench_median(rs, runs));

    for (int i = 0; i < LAYERS * POS; i++) {
        free(krows[i]);
        free(vrows[i]);
    }
    free(krows);
    free(vrows);
    gencache_kv_free(kv);
    gencache_kv_free(kv8);
    return 0;
}

int main(int argc, char **argv)
{
    int runs = argc > 1 ? atoi(argv[1]) : RUNS;
    size_t dram_mib = argc > 2 ? (size_t)atoi(argv[2]) : 128;
    if (runs < 3)
        runs = 3;
    if (runs > MAXRUNS)
        runs = MAXRUNS;
    if (dram_mib < 1)
        dram_mib = 1;
    /* Each table, then the one the library dispatches to ("best"). */
    const gencache__codec_kernels *impls[4] = {
        gencache__codec_kernels_scalar(), gencache__codec_kernels_avx2(),
        gencache__codec_kernels_avx512(), gencache__codec_kernels_best()};

    bench_sweep();
    /* The levels, from the sweep on this machine (docs/BENCHMARKS.md): a core's L2 is 2 MiB, and
     * memcpy of 512 KiB (1 MiB of buffers) runs at the L2 rate; the L3 rate holds to 16 MiB of
     * buffers and falls between 24 and 96 MiB, past which reads run at the DRAM rate. */
    bench_codecs("L2", (size_t)512 << 10, runs, impls, 1, 0);
    bench_codecs("L3", (size_t)8 << 20, runs, impls, 1, 0);
    bench_codecs("DRAM", dram_mib << 20, runs, impls, 0, 1);
    bench_kernels(impls, runs);

    /* Finite f16 rows for the int8 KV case. */
    enum { KV_SRC = 256 * 1024 };
    uint16_t *src = alloc_touched(2 * KV_SRC);
    fill_f16(src, KV_SRC);
    int rc = bench_kv(runs, src);
    free_touched(src);
    return rc;
}
