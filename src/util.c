/*
 * util.c: the small services every module uses: allocation through the cache's allocator,
 * the log callback, clocks and the value checksum (XXH3-64 through xxHash's runtime CPU
 * dispatch, so the widest vector unit the machine has is used).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <xxh_x86dispatch.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "internal.h"

void *gencache__malloc(const gencache_allocator *a, size_t size)
{
    if (size == 0)
        size = 1;
    if (a)
        return a->malloc_fn(a->userdata, size);
    return malloc(size);
}

void *gencache__calloc(const gencache_allocator *a, size_t n, size_t size)
{
    if (size != 0 && n > SIZE_MAX / size)
        return NULL;
    size_t bytes = n * size;
    void *p = gencache__malloc(a, bytes);
    if (p && bytes)
        memset(p, 0, bytes);
    return p;
}

void gencache__free(const gencache_allocator *a, void *ptr)
{
    if (!ptr)
        return;
    if (a)
        a->free_fn(a->userdata, ptr);
    else
        free(ptr);
}

/* pthread_once() takes no argument: the hook being set up is handed over under this lock. */
static pthread_mutex_t exit_hook_mu = PTHREAD_MUTEX_INITIALIZER;
static gencache__thread_exit *exit_hook_now;

static void exit_hook_make(void)
{
    exit_hook_now->ok = pthread_key_create(&exit_hook_now->key, exit_hook_now->drain) == 0;
}

bool gencache__thread_exit_register(gencache__thread_exit *hook, void *pool)
{
    pthread_mutex_lock(&exit_hook_mu);
    exit_hook_now = hook;
    pthread_once(&hook->once, exit_hook_make);
    pthread_mutex_unlock(&exit_hook_mu);
    return hook->ok && pthread_setspecific(hook->key, pool) == 0;
}

char *gencache__strdup(const gencache_allocator *a, const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = gencache__malloc(a, n);
    if (p)
        memcpy(p, s, n);
    return p;
}

void gencache__log_msg(const gencache__log *log, gencache_log_level level, const char *fmt, ...)
{
    if (!log || !log->fn || level > log->level)
        return;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    log->fn(log->userdata, level, buf);
}

uint64_t gencache__clock_realtime_ms(void *userdata)
{
    (void)userdata;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t gencache__clock_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t gencache__checksum(const void *data, size_t size)
{
    return XXH3_64bits_dispatch(data, size);
}

bool gencache__copy_stream(void *dst, const void *src, size_t size)
{
#ifdef __SSE2__
    unsigned char *d = dst;
    const unsigned char *s = src;
    if (size >= GENCACHE__STREAM_MIN && size <= GENCACHE__STREAM_MAX && ((uintptr_t)d & 15) == 0) {
        size_t n = size & ~(size_t)63;
        for (size_t i = 0; i < n; i += 64) {
            __m128i a = _mm_loadu_si128((const __m128i *)(const void *)(s + i));
            __m128i b = _mm_loadu_si128((const __m128i *)(const void *)(s + i + 16));
            __m128i c = _mm_loadu_si128((const __m128i *)(const void *)(s + i + 32));
            __m128i e = _mm_loadu_si128((const __m128i *)(const void *)(s + i + 48));
            _mm_stream_si128((__m128i *)(void *)(d + i), a);
            _mm_stream_si128((__m128i *)(void *)(d + i + 16), b);
            _mm_stream_si128((__m128i *)(void *)(d + i + 32), c);
            _mm_stream_si128((__m128i *)(void *)(d + i + 48), e);
        }
        memcpy(d + n, s + n, size - n);
        return true;
    }
#endif
    memcpy(dst, src, size);
    return false;
}

static const struct {
    const char *name;
    size_t size;
} dtypes[] = {
    [GENCACHE_DTYPE_NONE] = {NULL, 0}, [GENCACHE_DTYPE_F32] = {"f32", 4},
    [GENCACHE_DTYPE_F16] = {"f16", 2}, [GENCACHE_DTYPE_BF16] = {"bf16", 2},
    [GENCACHE_DTYPE_I8] = {"i8", 1},   [GENCACHE_DTYPE_U8] = {"u8", 1},
    [GENCACHE_DTYPE_I32] = {"i32", 4}, [GENCACHE_DTYPE_I64] = {"i64", 8},
};
#define N_DTYPES (sizeof dtypes / sizeof dtypes[0])

const char *gencache_dtype_name(gencache_dtype dtype)
{
    if ((unsigned)dtype >= N_DTYPES)
        return NULL;
    return dtypes[dtype].name;
}

int gencache_dtype_parse(const char *name, gencache_dtype *out)
{
    if (out)
        *out = GENCACHE_DTYPE_NONE;
    if (!name || !out)
        return GENCACHE_EINVAL;
    for (unsigned i = 1; i < N_DTYPES; i++) {
        if (strcmp(name, dtypes[i].name) == 0) {
            *out = (gencache_dtype)i;
            return GENCACHE_OK;
        }
    }
    return GENCACHE_EINVAL;
}

size_t gencache_dtype_size(gencache_dtype dtype)
{
    if ((unsigned)dtype >= N_DTYPES)
        return 0;
    return dtypes[dtype].size;
}
