/*
 * redis.h: private to the Redis tier (redis.c, redis_conn.c). Connections are plain non-blocking
 * sockets the tier drives itself with poll() against one deadline per operation, speaking RESP
 * through hiredis's reader (replies) and its own writer (commands, with values sent in place).
 */
#ifndef GENCACHE_TIER_REDIS_H
#define GENCACHE_TIER_REDIS_H

#include <sys/socket.h>

#include <hiredis/hiredis.h>

#include "internal.h"
#include "tier/crypt.h"

#define GENCACHE__REDIS_POOL 4
/* Every key the tier writes starts with this; SCAN matches it. The version names the value
 * layout (entry_codec record, then the value). */
#define GENCACHE__REDIS_PREFIX "gencache:v1:"
/* The circuit breaker opens after this many consecutive failures ... */
#define GENCACHE__REDIS_TRIP 3
/* ... for a backoff that starts here and doubles up to the maximum. */
#define GENCACHE__REDIS_BACKOFF_MIN_MS 25
#define GENCACHE__REDIS_BACKOFF_MAX_MS 400

typedef struct gencache__redis_conn {
    int fd;       /* -1: not connected */
    unsigned gen; /* the breaker generation it was opened in; older ones are closed on use */
    bool busy;    /* lent to a caller */
    redisReader *reader;
    char *buf;            /* raw reply bytes of an entry read (gencache__redis_read_entry) */
    size_t pos, len, cap; /* consumed, filled, allocated */
} gencache__redis_conn;

typedef struct gencache__redis_tier {
    gencache__tier base;
    struct sockaddr_storage addr;
    socklen_t addr_len;
    int db;
    char *where; /* host:port/db for log messages */
    uint32_t timeout_ms;
    uint64_t max_value_bytes;
    const gencache_allocator *alloc;
    const gencache__log *log;

    pthread_mutex_t lock; /* guards conns' busy flags, the breaker and sha */
    pthread_cond_t freed;
    gencache__redis_conn conns[GENCACHE__REDIS_POOL];
    unsigned failures;    /* consecutive */
    bool open;            /* breaker open: calls fail fast until retry_at_ns */
    bool probing;         /* one caller is trying the server after a backoff */
    uint64_t retry_at_ns; /* monotonic */
    uint32_t backoff_ms;
    unsigned gen;
    char sha[41]; /* of the refresh script; "" until loaded */

    _Atomic uint64_t backend_errors, dropped_puts, corrupt, hits, misses;
    gencache__seal seal; /* encryption at rest; keys NULL: none */
} gencache__redis_tier;

/* One command argument: up to two byte ranges sent back to back (a stored value is its codec
 * record followed by the entry's bytes, sent from where they are). */
typedef struct gencache__redis_arg {
    const void *p[2];
    size_t n[2];
} gencache__redis_arg;

/* Monotonic nanoseconds. */
uint64_t gencache__redis_now_ns(void);

/* Connects c (and SELECTs the database) before deadline_ns. GENCACHE_OK, GENCACHE_ETIMEDOUT,
 * GENCACHE_EUNAVAILABLE (refused, reset, ...), GENCACHE_ENOMEM. */
int gencache__redis_connect(gencache__redis_tier *r, gencache__redis_conn *c, uint64_t deadline_ns);
void gencache__redis_disconnect(gencache__redis_conn *c);

/* Sends one command. GENCACHE_OK, GENCACHE_ETIMEDOUT, GENCACHE_EUNAVAILABLE, GENCACHE_ENOMEM. */
int gencache__redis_send(gencache__redis_conn *c, int argc, const gencache__redis_arg *argv,
                         uint64_t deadline_ns);
/* Reads one reply (free it with freeReplyObject). Same codes as send, plus GENCACHE_EPARSE for a
 * protocol error. After any failure the connection must be closed. */
int gencache__redis_reply(gencache__redis_conn *c, uint64_t deadline_ns, redisReply **out);
/* send, then reply. */
int gencache__redis_command(gencache__redis_conn *c, uint64_t deadline_ns, redisReply **out,
                            int argc, const gencache__redis_arg *argv);

/* Reads the replies to MULTI, GET <key>, EVALSHA <refresh> ..., EXEC, receiving the value bytes
 * straight into a new entry. Returns GENCACHE_OK (*out set), GENCACHE_ENOTFOUND (no such key),
 * GENCACHE_ECORRUPT (the record does not decode or its size does not match; consumed). *pttl
 * gets the script's answer, the key's PTTL after the refresh (-1: no expiry, -2: none read).
 * *noscript tells that Redis had forgotten the refresh script (the value is still good). Other
 * codes (GENCACHE_ETIMEDOUT, GENCACHE_EUNAVAILABLE, GENCACHE_EPARSE, GENCACHE_ENOMEM): close the
 * connection. */
int gencache__redis_read_entry(gencache__redis_tier *r, gencache__redis_conn *c,
                               uint64_t deadline_ns, gencache__entry **out, bool *noscript,
                               int64_t *pttl);

#endif
