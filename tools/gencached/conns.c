/*
 * conns.c: keeps slow, idle and greedy clients from taking every connection slot. libmicrohttpd
 * measures idleness only, so a client that trickles its head a byte at a time, or holds idle
 * keep-alive connections, could hold a slot for ever; this file tracks every connection (MHD's
 * connection notifications, and the ones fastget.c serves itself) with what it is doing: sending
 * its head, being served, or idling between requests. A head must be complete within
 * limits.header_timeout; and when a new connection leaves fewer than a reserve of slots free, the
 * longest-idle keep-alive connection (else the oldest head still arriving) is closed to make room,
 * so a fresh client (a health check) is served while the slots are full of such clients. A
 * connection MHD is serving is never touched (MHD's own timeout covers a stalled reply); one
 * fastget.c is serving is closed when its reply makes no progress for limits.timeout. Closing is
 * shutdown(2) of the connection's socket: MHD (or fastget.c) sees the end of the stream and closes
 * the connection in its own thread. Invariant: a tracked socket is still open (MHD closes it only
 * after the CLOSED notification, fastget.c only after untracking it, both under the same lock), so
 * shutdown() never reaches another connection's socket. A connection's state and the time it
 * entered it are one atomic word that only the thread serving the connection writes, without the
 * lock (every request changes it twice or three times); the sweep and the choice of a connection to
 * shed read it under the lock. Times come from the coarse monotonic clock: a few milliseconds of
 * resolution are far below the limits enforced here.
 */
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "gencached.h"

/* A HEAD connection younger than this is never shed to make room: it is most likely a client
 * whose head is on its way. */
#define SHED_MIN_AGE_NS (1000ull * 1000000ull)

typedef enum conn_state {
    CONN_HEAD, /* accepted, or its next request line arrived: the head is on its way */
    CONN_BUSY, /* the head is complete: being served (a body, a suspended generate, a reply) */
    CONN_IDLE, /* keep-alive, between requests */
} conn_state;

typedef struct conn {
    struct conn *prev, *next; /* every tracked connection, in no particular order */
    int fd;
    struct sockaddr_storage peer; /* the client's address (family 0: unknown) */
    /* Atomic, written by the connection's own thread only: the coarse monotonic time in ns when
     * it entered its state, with the state (a conn_state) in the two low bits instead of the
     * time's. */
    uint64_t stamp;
    bool closing; /* shut down by us; MHD (or fastget.c) will close it */
    bool fast;    /* served by fastget.c, which has no timeout of its own */
} conn;

#define STATE_BITS 3ull

static uint64_t stamp_load(const conn *k)
{
    return __atomic_load_n(&k->stamp, __ATOMIC_RELAXED);
}

static conn_state stamp_state(uint64_t stamp)
{
    return (conn_state)(stamp & STATE_BITS);
}

/* How long ago the stamp was taken. A state entered after `now` was read (another thread moves
 * its connection without the lock) is zero time old, not a wrapped-around age. */
static uint64_t stamp_age(uint64_t stamp, uint64_t now)
{
    uint64_t since = stamp & ~STATE_BITS;
    return now > since ? now - since : 0;
}

/* Moves k to a new state from now on; called by the thread serving k, with or without the lock. */
static void set_state(conn *k, conn_state st, uint64_t now)
{
    __atomic_store_n(&k->stamp, (now & ~STATE_BITS) | st, __ATOMIC_RELAXED);
}

struct gcd_conns {
    pthread_mutex_t mu;
    conn list; /* sentinel */
    unsigned open;
    unsigned reserve;         /* slots kept free for newcomers by shedding */
    unsigned limit;           /* limits.max_connections */
    uint64_t head_timeout_ns; /* limits.header_timeout */
    uint64_t idle_max_ns;     /* limits.timeout: longest keep-alive idle, trickling or not */
    uint64_t head_timeouts, shed;
    const gcd_logger *log;
};

int gcd_conns_new(gcd_server *srv)
{
    struct gcd_conns *cs = calloc(1, sizeof *cs);
    if (!cs)
        return -1;
    pthread_mutex_init(&cs->mu, NULL);
    cs->list.prev = cs->list.next = &cs->list;
    cs->limit = srv->cfg->max_connections;
    /* An eighth of the slots (at least one) stay free for whoever comes next. */
    cs->reserve = cs->limit / 8 ? cs->limit / 8 : 1;
    cs->head_timeout_ns = (uint64_t)srv->cfg->header_timeout_ms * 1000000ull;
    cs->idle_max_ns = (uint64_t)srv->cfg->timeout_s * 1000000000ull;
    cs->log = &srv->log;
    srv->conns = cs;
    return 0;
}

void gcd_conns_free(gcd_server *srv)
{
    struct gcd_conns *cs = srv->conns;
    if (!cs)
        return;
    /* MHD is stopped: every connection was notified closed and untracked. */
    pthread_mutex_destroy(&cs->mu);
    free(cs);
    srv->conns = NULL;
}

static void unlink_conn(conn *k)
{
    k->prev->next = k->next;
    k->next->prev = k->prev;
}

static void append(struct gcd_conns *cs, conn *k)
{
    k->prev = cs->list.prev;
    k->next = &cs->list;
    cs->list.prev->next = k;
    cs->list.prev = k;
}

static void shut(conn *k)
{
    k->closing = true;
    shutdown(k->fd, SHUT_RDWR);
}

/* Closes one connection to make room: the longest-idle keep-alive one, else the oldest head
 * older than SHED_MIN_AGE_NS. Called with cs->mu held. */
static void shed_one(struct gcd_conns *cs, uint64_t now)
{
    conn *victim = NULL;
    uint64_t oldest = 0;
    for (conn *k = cs->list.next; k != &cs->list; k = k->next) {
        uint64_t stamp = stamp_load(k), age = stamp_age(stamp, now);
        if (stamp_state(stamp) == CONN_IDLE && !k->closing && (!victim || age > oldest)) {
            victim = k;
            oldest = age;
        }
    }
    for (conn *k = victim ? &cs->list : cs->list.next; k != &cs->list; k = k->next) {
        uint64_t stamp = stamp_load(k), age = stamp_age(stamp, now);
        if (stamp_state(stamp) == CONN_HEAD && !k->closing && age >= SHED_MIN_AGE_NS &&
            (!victim || age > oldest)) {
            victim = k;
            oldest = age;
        }
    }
    if (victim) {
        shut(victim);
        cs->shed++;
    }
}

static conn *conn_of(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

void gcd_conns_notify(void *cls, struct MHD_Connection *c, void **socket_context,
                      enum MHD_ConnectionNotificationCode code)
{
    gcd_server *srv = cls;
    struct gcd_conns *cs = srv->conns;
    uint64_t now = gcd_mono_coarse_ns();
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        conn *k = ci ? calloc(1, sizeof *k) : NULL;
        *socket_context = k;
        if (!k)
            return; /* untracked: served, never shed */
        k->fd = ci->connect_fd;
        const union MHD_ConnectionInfo *ai =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        if (ai && ai->client_addr)
            memcpy(&k->peer, ai->client_addr,
                   ai->client_addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                          : sizeof(struct sockaddr_in));
        set_state(k, CONN_HEAD, now);
        pthread_mutex_lock(&cs->mu);
        append(cs, k);
        cs->open++;
        if (cs->open + cs->reserve > cs->limit)
            shed_one(cs, now);
        pthread_mutex_unlock(&cs->mu);
        return;
    }
    conn *k = *socket_context;
    if (!k)
        return;
    *socket_context = NULL;
    pthread_mutex_lock(&cs->mu);
    unlink_conn(k);
    cs->open--;
    pthread_mutex_unlock(&cs->mu);
    free(k);
}

void *gcd_conns_uri(void *cls, const char *uri, struct MHD_Connection *c)
{
    (void)uri;
    (void)cls;
    conn *k = conn_of(c);
    if (k && stamp_state(stamp_load(k)) == CONN_IDLE)
        set_state(k, CONN_HEAD, gcd_mono_coarse_ns());
    return NULL; /* the request's state starts empty: on_request creates it */
}

static void mark(gcd_server *srv, struct MHD_Connection *c, conn_state st)
{
    conn *k = conn_of(c);
    if (k && stamp_state(stamp_load(k)) != st)
        set_state(k, st, gcd_mono_coarse_ns());
}

void gcd_conns_busy(gcd_server *srv, struct MHD_Connection *c)
{
    mark(srv, c, CONN_BUSY);
}

void gcd_conns_idle(gcd_server *srv, struct MHD_Connection *c)
{
    mark(srv, c, CONN_IDLE);
}

void gcd_conns_sweep(gcd_server *srv)
{
    struct gcd_conns *cs = srv->conns;
    if (!cs)
        return;
    uint64_t now = gcd_mono_coarse_ns(), overdue = 0;
    pthread_mutex_lock(&cs->mu);
    for (conn *k = cs->list.next; k != &cs->list; k = k->next) {
        if (k->closing)
            continue;
        uint64_t stamp = stamp_load(k), age = stamp_age(stamp, now);
        conn_state st = stamp_state(stamp);
        if (st == CONN_HEAD && age > cs->head_timeout_ns) {
            shut(k);
            cs->head_timeouts++;
            overdue++;
        } else if (st == CONN_IDLE && age > cs->idle_max_ns) {
            shut(k); /* MHD's idle timeout misses a client that trickles its next head */
        } else if (st == CONN_BUSY && k->fast && age > cs->idle_max_ns) {
            shut(k); /* a reply the client stopped reading: as MHD's timeout does */
        }
    }
    /* Slots taken by heads too young to shed when they came: make the reserve free again, so
     * the next newcomer is accepted. */
    unsigned closing = 0;
    for (conn *k = cs->list.next; k != &cs->list; k = k->next)
        closing += k->closing;
    for (unsigned want = cs->open - closing + cs->reserve; want > cs->limit; want--) {
        uint64_t before = cs->shed;
        shed_one(cs, now);
        if (cs->shed == before)
            break;
    }
    pthread_mutex_unlock(&cs->mu);
    if (overdue)
        gcd_log(cs->log, GENCACHE_LOG_INFO,
                "closed %llu connections whose request head took longer than %llu ms",
                (unsigned long long)overdue, (unsigned long long)(cs->head_timeout_ns / 1000000));
}

void gcd_conns_counts(gcd_server *srv, uint64_t *open, uint64_t *head_timeouts, uint64_t *shed)
{
    struct gcd_conns *cs = srv->conns;
    *open = *head_timeouts = *shed = 0;
    if (!cs)
        return;
    pthread_mutex_lock(&cs->mu);
    *open = cs->open;
    *head_timeouts = cs->head_timeouts;
    *shed = cs->shed;
    pthread_mutex_unlock(&cs->mu);
}

/* ---- connections the fast path (fastget.c) serves ------------------------------------------ */

/* True when a and b are the same client host (the port aside). */
static bool same_host(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return false;
    if (a->ss_family == AF_INET)
        return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
               ((const struct sockaddr_in *)b)->sin_addr.s_addr;
    if (a->ss_family == AF_INET6)
        return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
                      &((const struct sockaddr_in6 *)b)->sin6_addr, sizeof(struct in6_addr)) == 0;
    return false;
}

struct gcd_conn *gcd_conns_track(gcd_server *srv, int fd, const struct sockaddr *peer,
                                 socklen_t len, const char **why)
{
    struct gcd_conns *cs = srv->conns;
    conn *k = calloc(1, sizeof *k);
    *why = "out of memory";
    if (!k)
        return NULL;
    k->fd = fd;
    k->fast = true;
    if (len <= sizeof k->peer)
        memcpy(&k->peer, peer, len);
    uint64_t now = gcd_mono_coarse_ns();
    set_state(k, CONN_HEAD, now);
    pthread_mutex_lock(&cs->mu);
    /* The limits libmicrohttpd applies to the connections it accepts, over all of them: the
     * ones served here and the ones handed over to it. */
    unsigned same = 0;
    if (srv->cfg->max_per_client && k->peer.ss_family)
        for (conn *o = cs->list.next; o != &cs->list; o = o->next)
            same += !o->closing && same_host(&o->peer, &k->peer);
    *why = cs->open >= cs->limit ? "connection limit reached"
           : srv->cfg->max_per_client && same >= srv->cfg->max_per_client
               ? "per-client connection limit reached"
               : NULL;
    if (!*why) {
        append(cs, k);
        cs->open++;
        if (cs->open + cs->reserve > cs->limit)
            shed_one(cs, now);
    }
    pthread_mutex_unlock(&cs->mu);
    if (*why) {
        free(k);
        return NULL;
    }
    return (struct gcd_conn *)k;
}

bool gcd_conns_full(gcd_server *srv)
{
    pthread_mutex_lock(&srv->conns->mu);
    bool full = srv->conns->open >= srv->conns->limit;
    pthread_mutex_unlock(&srv->conns->mu);
    return full;
}

void gcd_conns_untrack(gcd_server *srv, struct gcd_conn *gc)
{
    conn *k = (conn *)gc;
    if (!k)
        return;
    pthread_mutex_lock(&srv->conns->mu);
    unlink_conn(k);
    srv->conns->open--;
    pthread_mutex_unlock(&srv->conns->mu);
    free(k);
}

void gcd_conns_fast_head(gcd_server *srv, struct gcd_conn *gc, uint64_t now)
{
    conn *k = (conn *)gc;
    /* Only the first bytes of a head start its deadline. */
    if (stamp_state(stamp_load(k)) == CONN_IDLE)
        set_state(k, CONN_HEAD, now);
}

void gcd_conns_fast_busy(gcd_server *srv, struct gcd_conn *gc, uint64_t now)
{
    set_state((conn *)gc, CONN_BUSY, now);
}

void gcd_conns_fast_idle(gcd_server *srv, struct gcd_conn *gc, uint64_t now)
{
    set_state((conn *)gc, CONN_IDLE, now);
}
