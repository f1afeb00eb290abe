/*
 * redis.h: private to the Redis tier (redis.c, redis_conn.c, redis_cluster.c, redis_scan.c).
 * The tier talks to one Redis server or to the primaries of a Redis Cluster; each server is a
 * node with its own connection pool and circuit breaker. Connections are plain non-blocking
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
 * layout (entry_codec record, then the value). On a cluster the rest of the key is a hash tag
 * ("gencache:v1:{<key>}"), so every key derived from one entry key lands in the same slot. */
#define GENCACHE__REDIS_PREFIX "gencache:v1:"
/* The circuit breaker opens after this many consecutive failures ... */
#define GENCACHE__REDIS_TRIP 3
/* ... for a backoff that starts here and doubles up to the maximum. */
#define GENCACHE__REDIS_BACKOFF_MIN_MS 25
#define GENCACHE__REDIS_BACKOFF_MAX_MS 400
/* Cluster: hash slots, the most nodes the tier keeps, redirects one operation follows, and how
 * often the slot map is read again when nothing asks for it sooner. */
#define GENCACHE__REDIS_SLOTS          16384
#define GENCACHE__REDIS_MAX_NODES      64
#define GENCACHE__REDIS_MAX_REDIRECTS  5
#define GENCACHE__REDIS_REFRESH_MS     5000
#define GENCACHE__REDIS_REFRESH_MIN_MS 100
/* The Bloom filter is rebuilt from SCAN this often, shedding deleted and expired keys and
 * catching keys whose written message was lost (docs/tiers.md). */
#define GENCACHE__REDIS_BLOOM_REBUILD_MS 60000

typedef struct gencache__redis_conn {
    int fd;       /* -1: not connected */
    unsigned gen; /* the breaker generation it was opened in; older ones are closed on use */
    bool busy;    /* lent to a caller */
    redisReader *reader;
    char *buf;            /* raw reply bytes of an entry read (gencache__redis_read_entry) */
    size_t pos, len, cap; /* consumed, filled, allocated */
} gencache__redis_conn;

/* One server: its address, its pool and its breaker. Nodes are created on first sight (a seed, a
 * slot map, a redirect) and live until the tier closes, so a pointer to one stays valid. */
typedef struct gencache__redis_node {
    struct sockaddr_storage addr;
    socklen_t addr_len;
    int db;
    char where[280]; /* host:port/db for log messages; host:port (cluster) names the node */

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
} gencache__redis_node;

typedef struct gencache__redis_tier {
    gencache__tier base;
    char *where; /* the URL's servers, for log messages */
    uint32_t timeout_ms;
    uint64_t max_value_bytes;
    const gencache_allocator *alloc;
    const gencache__log *log;
    bool cluster; /* slots are routed; keys carry a hash tag */

    /* Nodes: [0, n_seeds) are the configured ones. Appended under topo_lock, never removed. */
    pthread_mutex_t topo_lock; /* guards adding nodes and the refresh bookkeeping */
    gencache__redis_node *nodes[GENCACHE__REDIS_MAX_NODES];
    _Atomic unsigned n_nodes;
    unsigned n_seeds;
    /* The node index serving each slot (cluster); 0xff: unknown. Read without a lock. */
    _Atomic unsigned char slots[GENCACHE__REDIS_SLOTS];
    _Atomic uint64_t refresh_due_ns; /* monotonic: the next slot map read; 0: at once */
    _Atomic bool refreshing;         /* one caller reads the slot map at a time */

    _Atomic uint64_t backend_errors, dropped_puts, corrupt, hits, misses;
    _Atomic uint64_t redirects, refreshes; /* MOVED/ASK followed; slot maps read */
    uint64_t node_id;           /* random: tells this node's own published messages apart */
    _Atomic uint64_t published; /* invalidation messages sent */

    /* The Bloom filter in front of the tier (redis_bloom.c); bloom NULL: none. */
    double bloom_fp_rate;
    uint64_t bloom_capacity;
    pthread_rwlock_t bloom_lock; /* read: test and add; write: swap in a rebuilt filter */
    struct gencache__bloom *bloom, *bloom_next; /* in use; being rebuilt (NULL: none) */
    _Atomic bool bloom_ready; /* it holds every key: a negative answer skips Redis */
    _Atomic unsigned sub_gen; /* the subscriber's connection count; a lost one moves it */
    _Atomic bool subscribed;
    _Atomic uint64_t bloom_skips, bloom_rebuilds, bloom_rebuild_keys;

    /* Encryption at rest (src/tier/crypt.c). */
    gencache__seal seal; /* encryption at rest; keys NULL: none */
} gencache__redis_tier;

/* One command argument: up to two byte ranges sent back to back (a stored value is its codec
 * record followed by the entry's bytes, sent from where they are). */
typedef struct gencache__redis_arg {
    const void *p[2];
    size_t n[2];
} gencache__redis_arg;

/* A cluster's answer that the key lives elsewhere. */
typedef enum gencache__redis_redirect_kind {
    GENCACHE__REDIS_NO_REDIRECT = 0,
    GENCACHE__REDIS_MOVED = 1, /* the slot has moved for good: update the map */
    GENCACHE__REDIS_ASK = 2,   /* this one command goes to the target, after ASKING */
} gencache__redis_redirect_kind;

typedef struct gencache__redis_redirect {
    gencache__redis_redirect_kind kind;
    unsigned slot;
    char addr[272]; /* host:port */
} gencache__redis_redirect;

/* Parses an error reply "MOVED <slot> <host:port>" or "ASK ..." (without the leading '-'; in
 * redis_cluster.c). False, with out->kind GENCACHE__REDIS_NO_REDIRECT, for any other error. */
bool gencache__redis_redirect_parse(const char *s, size_t len, gencache__redis_redirect *out);

/* Monotonic nanoseconds. */
uint64_t gencache__redis_now_ns(void);

/* Connects c to node n (and SELECTs the database) before deadline_ns. GENCACHE_OK,
 * GENCACHE_ETIMEDOUT, GENCACHE_EUNAVAILABLE (refused, reset, ...), GENCACHE_ENOMEM. */
int gencache__redis_connect(gencache__redis_node *n, gencache__redis_conn *c, uint64_t deadline_ns);
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

/* Reads the replies to [ASKING,] MULTI, GET <key>, EVALSHA <refresh> ..., EXEC, receiving the
 * value bytes straight into a new entry. Returns GENCACHE_OK (*out set), GENCACHE_ENOTFOUND (no
 * such key), GENCACHE_ECORRUPT (the record does not decode or its size does not match;
 * consumed). *pttl gets the script's answer, the key's PTTL after the refresh (-1: no expiry, -2:
 * none read). *noscript tells that Redis had forgotten the refresh script (the value is still
 * good). A cluster node that does not serve the key answers with a redirect: *redir says where
 * to, and the return is GENCACHE_ENOTFOUND with the connection still in step. Other codes
 * (GENCACHE_ETIMEDOUT, GENCACHE_EUNAVAILABLE, GENCACHE_EPARSE, GENCACHE_ENOMEM): close the
 * connection. seal (NULL: records in the clear only) opens sealed records and counts the ones
 * it rejects. */
int gencache__redis_read_entry(const gencache_allocator *alloc, gencache__seal *seal,
                               gencache__redis_conn *c, bool asking, uint64_t deadline_ns,
                               gencache__entry **out, bool *noscript, int64_t *pttl,
                               gencache__redis_redirect *redir);

#endif
