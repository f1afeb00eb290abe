/*
 * no_peek_off.c: loaded with LD_PRELOAD into gencached by test_fastget.py, it makes the kernel
 * look like one without SO_PEEK_OFF for TCP (before Linux 6.9): setting that option fails with
 * EINVAL, as it does there, and every other setsockopt() goes through unchanged. So the fast
 * path's fallback (each answered request discarded as soon as it is answered) is tested on any
 * kernel.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <sys/socket.h>

typedef int (*setsockopt_fn)(int, int, int, const void *, socklen_t);

int setsockopt(int fd, int level, int name, const void *value, socklen_t len)
{
    static setsockopt_fn next;
    if (level == SOL_SOCKET && name == SO_PEEK_OFF) {
        errno = EINVAL;
        return -1;
    }
    if (!next)
        next = (setsockopt_fn)dlsym(RTLD_NEXT, "setsockopt");
    if (!next) {
        errno = ENOSYS;
        return -1;
    }
    return next(fd, level, name, value, len);
}
