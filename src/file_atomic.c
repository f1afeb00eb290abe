/*
 * file_atomic.c: whole small files written so that a crash never leaves half of one (the near-
 * duplicate index, the reuse records). The bytes go to a temporary file beside the target, which
 * is synced and renamed over it: a reader finds the old file or the new one.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

int gencache__errno_code(int e)
{
    if (e == ENOSPC || e == EDQUOT)
        return GENCACHE_ENOSPC;
    if (e == ENOMEM)
        return GENCACHE_ENOMEM;
    return GENCACHE_EIO;
}

static int write_all(int fd, const unsigned char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return gencache__errno_code(errno);
        }
        p += w;
        n -= (size_t)w;
    }
    return GENCACHE_OK;
}

int gencache__file_replace(const char *path, const void *data, size_t size)
{
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 32);
    if (!tmp)
        return GENCACHE_ENOMEM;
    snprintf(tmp, plen + 32, "%s.tmp.%ld", path, (long)getpid());
    int rc;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = gencache__errno_code(errno);
    } else {
        rc = write_all(fd, data, size);
        if (rc == GENCACHE_OK && fsync(fd) != 0)
            rc = gencache__errno_code(errno);
        if (close(fd) != 0 && rc == GENCACHE_OK)
            rc = gencache__errno_code(errno);
        if (rc == GENCACHE_OK && rename(tmp, path) != 0)
            rc = gencache__errno_code(errno);
        if (rc != GENCACHE_OK)
            unlink(tmp);
    }
    free(tmp);
    return rc;
}

int gencache__file_read(const char *path, unsigned char **out, size_t *size)
{
    *out = NULL;
    *size = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return GENCACHE_EIO;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return GENCACHE_EIO;
    }
    size_t n = (size_t)st.st_size;
    unsigned char *buf = malloc(n ? n : 1);
    if (!buf) {
        close(fd);
        return GENCACHE_ENOMEM;
    }
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    if (got != n) {
        free(buf);
        return GENCACHE_EIO;
    }
    *out = buf;
    *size = n;
    return GENCACHE_OK;
}
