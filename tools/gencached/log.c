/*
 * log.c: the daemon's log, one timestamped line per message on stderr. The library, libmicrohttpd
 * and the daemon itself all log through here, each through the gcd_logger of the server it
 * serves (so each server has its own level). Each line is built in a local buffer and written
 * with a single write(2), so lines from different worker threads never interleave.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gencached.h"

static const char *const level_names[] = {"ERROR", "WARN", "INFO", "DEBUG"};

/* Nanoseconds on the given clock. */
static uint64_t clock_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t gcd_now_ms(void)
{
    return clock_ns(CLOCK_REALTIME) / 1000000u;
}

uint64_t gcd_mono_ns(void)
{
    return clock_ns(CLOCK_MONOTONIC);
}

uint64_t gcd_now_coarse_ms(void)
{
    return clock_ns(CLOCK_REALTIME_COARSE) / 1000000u;
}

uint64_t gcd_mono_coarse_ns(void)
{
    return clock_ns(CLOCK_MONOTONIC_COARSE);
}

static void log_line(const gcd_logger *lg, gencache_log_level level, const char *fmt, va_list ap)
{
    if (lg && (int)level > (int)lg->level)
        return;
    char line[2048];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%S", &tm);
    const char *name = (unsigned)level < 4 ? level_names[level] : "DEBUG";
    n += (size_t)snprintf(line + n, sizeof line - n, ".%03ldZ %s ", ts.tv_nsec / 1000000L, name);
    int m = vsnprintf(line + n, sizeof line - n, fmt, ap);
    if (m < 0)
        m = 0;
    n += (size_t)m;
    if (n > sizeof line - 2)
        n = sizeof line - 2;
    /* MHD's messages end in a newline of their own; keep one. */
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        n--;
    line[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, n);
    (void)w;
}

void gcd_log(const gcd_logger *lg, gencache_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_line(lg, level, fmt, ap);
    va_end(ap);
}

void gcd_log_library(void *userdata, gencache_log_level level, const char *message)
{
    gcd_log(userdata, level, "cache: %s", message);
}

void gcd_log_mhd(void *cls, const char *fmt, va_list ap)
{
    char msg[1024];
    vsnprintf(msg, sizeof msg, fmt, ap);
    gcd_log(cls, GENCACHE_LOG_WARN, "http: %s", msg);
}
