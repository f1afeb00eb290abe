/*
 * fuzz_redis_reply.c: libFuzzer target for the Redis tier's reader of a GET's replies (MULTI,
 * GET, EVALSHA, EXEC, with the value received straight into an entry). A shared Redis, or
 * anything that answers on its port, is untrusted: any bytes must give a clean error or an entry
 * whose value is all there (every byte readable: the checksum pass below touches each one; the
 * caller, redis_get, compares it with the record's), never a crash, an overread or a hang (the
 * input is all there is: the writer end is closed).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"
#include "tier/redis.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > (1u << 20))
        return 0; /* more than a socket buffer holds without a reader */
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
        abort();
    int big = 1 << 21;
    setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    setsockopt(sv[0], SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    size_t off = 0;
    while (off < size) {
        ssize_t n = write(sv[1], data + off, size - off);
        if (n <= 0)
            abort();
        off += (size_t)n;
    }
    close(sv[1]);
    fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK);

    const uint64_t max_value_bytes = 1u << 20;
    gencache__redis_conn c;
    memset(&c, 0, sizeof c);
    c.fd = sv[0];
    c.reader = redisReaderCreate();
    if (!c.reader)
        abort();
    gencache__entry *e = NULL;
    bool noscript = false;
    int64_t pttl = 0;
    uint64_t deadline = gencache__redis_now_ns() + 200u * 1000 * 1000;
    gencache__redis_redirect redir;
    int rc =
        gencache__redis_read_entry(NULL, NULL, &c, false, deadline, &e, &noscript, &pttl, &redir);
    if (redir.kind != GENCACHE__REDIS_NO_REDIRECT && (rc != GENCACHE_ENOTFOUND || e))
        abort(); /* a redirect is a miss here, followed by the caller */
    if (rc == GENCACHE_OK) {
        if (!e || e->size > max_value_bytes)
            abort();
        volatile uint64_t sum = gencache__checksum(e->value, e->size);
        (void)sum;
        gencache__entry_release(e);
    } else if (e) {
        abort(); /* *out is NULL on every failure */
    }
    gencache__redis_disconnect(&c);
    free(c.buf);
    return 0;
}
