/*
 * fastget.c: the daemon's own server loop for the request that matters most, a keep-alive GET
 * (or HEAD) of /v1/entries/{layer}/{hex}. Its threads own the listening socket and every new
 * connection. At each request boundary a thread looks at the bytes waiting on the socket without
 * taking them (recv with MSG_PEEK); a complete, simple request (HTTP/1.1, no body, only headers
 * this file fully understands) is then taken off the socket (recv with MSG_TRUNC, which on a TCP
 * socket discards the bytes without copying them) and answered here, with the same status,
 * headers and body libmicrohttpd's route would give. Anything else, and anything this file has
 * any doubt about, leaves the socket untouched and goes to libmicrohttpd (MHD_add_connection()),
 * which serves that connection for the rest of its life. Where the kernel has SO_PEEK_OFF for TCP,
 * an answered request's bytes stay in the socket, skipped by the peek offset, and leave it a few
 * kilobytes at a time (one discard for many requests). Invariant: a connection is handed over only
 * between requests, with no reply of ours still unsent, every answered request's bytes taken and
 * none of the next request's; a reply's read handle is held until its last byte is sent or the
 * connection is closed.
 */
#define _GNU_SOURCE /* accept4 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "fastparse.h"
#include "gencached.h"

#define EVENTS   64
#define PAUSE_MS 20
/* With SO_PEEK_OFF, the bytes of answered requests leave the socket once this many are there, or
 * once their connection has answered nothing for FLUSH_MS (so an idle connection holds none). */
#define PENDING_MAX 4096u
#define FLUSH_MS    200
#define FLUSH_NS    (FLUSH_MS * 1000000ull)
/* The heads of replies to small stored values are kept per thread (HC_SLOTS of them, each holding
 * its value's read handle) and sent again while nothing in them changes. */
#define HC_SLOTS     8
#define HC_HEAD_MAX  512
#define HC_MAX_BYTES (64u * 1024u) /* a larger value's head is a small part of its reply */

typedef struct fg_conn {
    struct fg_conn *prev, *next; /* the thread's connections */
    int fd;
    struct gcd_conn *track; /* conns.c's record */
    struct sockaddr_storage peer;
    socklen_t peer_len;
    /* The reply being sent: */
    bool sending;
    bool close_after; /* the request said Connection: close */
    bool peer_done;   /* the client shut its side down: nothing more will come */
    bool busy;        /* conns.c knows the reply waits for room */
    char *head;       /* status line and headers: head_buf, or malloc'd when larger */
    char head_buf[1024];
    size_t head_len, head_cap;
    const void *body; /* the entry's bytes (held by h), owned, or an error's text */
    size_t body_len;
    gencache_handle *h; /* held until the body is sent */
    void *owned;        /* malloc'd body (a decoded tensor, an error document) */
    size_t sent;        /* of head_len + body_len */
    /* For the metrics and the access log of the request being answered: */
    uint64_t start_ns;
    unsigned status;
    gcd_request req; /* method, path, tenant: what reply.c and ui.c read of a request */
    /* With SO_PEEK_OFF (peek_off), answered requests stay in the socket before the peek offset: */
    bool peek_off;
    size_t pending;    /* bytes of answered requests still in the socket */
    size_t koff;       /* the socket's peek offset as the kernel has it */
    uint64_t quiet_ns; /* coarse monotonic time of the latest request answered */
} fg_conn;

/* A kept head: the status line, Date, Connection, the entry's headers, ETag, Content-Length. It
 * depends on the stored version (named by its bytes' address, which the held handle keeps from
 * being reused), the tier it was found in, the TTL seconds left, the Date second and whether the
 * request asked for Connection: close. */
typedef struct hc_slot {
    gencache_handle *h; /* NULL: empty */
    const void *data;
    bool close_after;
    uint64_t ttl_left;
    time_t date_s;
    char tier[16];
    uint64_t used; /* the thread's hc_clock at its latest use */
    size_t len;
    char head[HC_HEAD_MAX];
} hc_slot;

typedef struct fg_thread {
    gcd_server *srv;
    pthread_t thread;
    bool started;
    int ep;      /* epoll: the listener, the stop event, the connections */
    int stop_fd; /* eventfd written by gcd_fastget_stop() */
    fg_conn list;
    char peek[GCD_FAST_HEAD_MAX];
    char date[48]; /* "Date: ...\r\n" for date_s */
    size_t date_len;
    time_t date_s;
    bool paused; /* the listener is out of ep: every connection slot is taken */
    /* Clocks, read once per batch of events (clocks_read): */
    uint64_t now_ns;        /* monotonic: the start of the batch's requests */
    uint64_t now_coarse_ns; /* coarse monotonic: conns.c's states, the flush of pending bytes */
    time_t wall_s;          /* coarse wall clock, seconds: Date */
    uint64_t flushed_ns;    /* now_coarse_ns at the latest flush_quiet() */
    unsigned n_pending;     /* connections with pending bytes */
    hc_slot heads[HC_SLOTS];
    uint64_t hc_clock;
    struct gcd_metrics_local *counts; /* this thread's own counters */
    /* Where discards point recv: the kernel writes nothing there (MSG_TRUNC), but a buffer of the
     * length asked for keeps the sanitizers' view of recv true. */
    char sink[PENDING_MAX + GCD_FAST_HEAD_MAX];
} fg_thread;

struct gcd_fastget {
    int lfd;
    unsigned n;
    fg_thread *threads;
};

/* Markers in epoll data for what is not a connection. */
static char LISTENER, STOPPER;

/* ---- replies ------------------------------------------------------------------------------- */

static bool head_put(fg_conn *c, const char *s, size_t n)
{
    if (c->head_len + n > c->head_cap) {
        size_t cap = (c->head_len + n) * 2;
        char *nh = malloc(cap);
        if (!nh)
            return false;
        memcpy(nh, c->head, c->head_len);
        if (c->head != c->head_buf)
            free(c->head);
        c->head = nh;
        c->head_cap = cap;
    }
    memcpy(c->head + c->head_len, s, n);
    c->head_len += n;
    return true;
}

/* A failed append leaves head_len at SIZE_MAX, checked once the head is built. */
static void head_add(void *ctx, const char *name, const char *value)
{
    fg_conn *c = ctx;
    if (c->head_len == SIZE_MAX)
        return;
    if (!head_put(c, name, strlen(name)) || !head_put(c, ": ", 2) ||
        !head_put(c, value, strlen(value)) || !head_put(c, "\r\n", 2))
        c->head_len = SIZE_MAX;
}

/* The status line, Date and Connection, as libmicrohttpd starts its replies. */
static void head_begin(fg_thread *t, fg_conn *c, unsigned status)
{
    c->head = c->head_buf;
    c->head_cap = sizeof c->head_buf;
    c->head_len = 0;
    c->status = status;
    /* The status lines of every small GET are written out; formatting them was a measurable
     * share of a request's user time. */
    if (status == 200) {
        head_put(c, "HTTP/1.1 200 OK\r\n", 17);
    } else if (status == 404) {
        head_put(c, "HTTP/1.1 404 Not Found\r\n", 24);
    } else {
        char line[64];
        int n = snprintf(line, sizeof line, "HTTP/1.1 %u %s\r\n", status,
                         MHD_get_reason_phrase_for(status));
        head_put(c, line, (size_t)n);
    }
    if (t->wall_s != t->date_s) {
        struct tm tm;
        gmtime_r(&t->wall_s, &tm);
        t->date_len = strftime(t->date, sizeof t->date, "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
        t->date_s = t->wall_s;
    }
    head_put(c, t->date, t->date_len);
    if (c->close_after)
        head_put(c, "Connection: close\r\n", 19);
}

/* Content-Length and the blank line. Returns false when the head could not be built. */
static bool head_end(fg_conn *c, size_t length)
{
    char v[24];
    head_add(c, "Content-Length", gcd_u64_dec(length, v));
    if (c->head_len == SIZE_MAX || !head_put(c, "\r\n", 2))
        return false;
    return true;
}

/* Drops what the reply held: the handle, an owned body, a grown head. */
static void reply_free(fg_conn *c)
{
    gencache_handle_release(c->h);
    c->h = NULL;
    free(c->owned);
    c->owned = NULL;
    if (c->head != c->head_buf)
        free(c->head);
    c->head = c->head_buf;
    c->head_len = 0;
    c->body = NULL;
    c->body_len = 0;
    c->sent = 0;
    c->sending = false;
    c->busy = false;
}

/* An error document, as reply.c builds it. Returns false when out of memory. */
static bool reply_error(fg_thread *t, fg_conn *c, unsigned status, const char *code,
                        const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static bool reply_error(fg_thread *t, fg_conn *c, unsigned status, const char *code,
                        const char *fmt, ...)
{
    char message[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    char *text = gcd_error_text(code, message);
    if (!text)
        return false;
    gcd_error_note(t->srv, &c->req, status, code, message);
    head_begin(t, c, status);
    head_add(c, "Content-Type", "application/json");
    c->owned = text;
    c->body = text;
    c->body_len = strlen(text);
    return head_end(c, c->body_len);
}

/* ---- kept heads ----------------------------------------------------------------------------- */

/* The slot of the version whose bytes are at data, for a request with or without
 * Connection: close; NULL when none. */
static hc_slot *head_slot(fg_thread *t, const void *data, bool close_after)
{
    for (int i = 0; i < HC_SLOTS; i++) {
        hc_slot *s = &t->heads[i];
        if (s->h && s->data == data && s->close_after == close_after)
            return s;
    }
    return NULL;
}

/* True when the slot's head is the one the version gets now. */
static bool head_fresh(fg_thread *t, hc_slot *s, uint64_t ttl_left, const char *tier)
{
    if (s->ttl_left != ttl_left || s->date_s != t->wall_s || strcmp(s->tier, tier ? tier : ""))
        return false;
    s->used = ++t->hc_clock;
    return true;
}

/* Keeps c's head, just built for its handle's bytes, in s (that version's slot) or, when s is NULL,
 * in the least recently used slot, which then holds the handle. A head too long is not kept. */
static void head_keep(fg_thread *t, hc_slot *s, fg_conn *c, uint64_t ttl_left, const char *tier)
{
    tier = tier ? tier : "";
    if (c->head_len > HC_HEAD_MAX || strlen(tier) >= sizeof s->tier)
        return;
    if (!s) {
        s = &t->heads[0];
        for (int i = 1; i < HC_SLOTS; i++)
            if (t->heads[i].used < s->used)
                s = &t->heads[i];
        gencache_handle_release(s->h);
        s->h = gencache_handle_retain(c->h);
        s->data = gencache_handle_data(c->h);
        s->close_after = c->close_after;
    }
    s->ttl_left = ttl_left;
    s->date_s = t->wall_s;
    strcpy(s->tier, tier);
    s->used = ++t->hc_clock;
    memcpy(s->head, c->head, c->head_len);
    s->len = c->head_len;
}

static void heads_free(fg_thread *t)
{
    for (int i = 0; i < HC_SLOTS; i++) {
        gencache_handle_release(t->heads[i].h);
        t->heads[i].h = NULL;
    }
}

/* A hit: the stored bytes (or their decoded form) with the entry's headers, or 304. */
static bool reply_hit(fg_thread *t, fg_conn *c, const gcd_fast_req *r, const char *inm)
{
    const gencache_meta *m = gencache_handle_meta(c->h);
    const void *data = gencache_handle_data(c->h);
    size_t size = gencache_handle_size(c->h);
    gencache_meta view;
    char etag[48];
    bool decoded = gcd_codec_needed(m, NULL);
    gcd_decoded d = {0};
    if (decoded) {
        char err[160] = "";
        int rc = gcd_codec_decode(m, data, size, NULL, &d, err, sizeof err);
        if (rc != 0) {
            gencache_handle_release(c->h);
            c->h = NULL;
            if (rc == GENCACHE_EINVAL && err[0])
                return reply_error(t, c, 400, "bad_conversion", "%s", err);
            const char *code;
            unsigned status = gcd_gencache_status(rc, &code);
            return reply_error(t, c, status, code, "%s: %s (%s)",
                               err[0] ? err : "decoding the tensor", gencache_strerror(rc),
                               gencache_errname(rc));
        }
        gcd_entry_decoded_view(m, &d, &view, etag);
        m = &view;
        c->owned = d.data;
        data = d.data;
        size = d.size;
    } else {
        gcd_entry_etag(m->checksum, etag);
    }
    if (inm && gcd_etag_matches(inm, etag)) {
        head_begin(t, c, 304);
        head_add(c, "ETag", etag);
        return head_end(c, 0);
    }
    if (!r->head) {
        c->body = data;
        c->body_len = size;
    }
    /* Read after the lookup, which may have slid the expiry from its own clock's now. */
    uint64_t ttl_left = gcd_entry_ttl_left(m);
    /* A zero-length value's bytes may be at an address every such value shares. */
    bool keep = !decoded && size && size <= HC_MAX_BYTES;
    hc_slot *s = keep ? head_slot(t, data, c->close_after) : NULL;
    if (s && head_fresh(t, s, ttl_left, m->tier)) {
        memcpy(c->head_buf, s->head, s->len);
        c->head = c->head_buf;
        c->head_len = s->len;
        c->status = 200;
        return true;
    }
    head_begin(t, c, 200);
    gcd_entry_headers(m, ttl_left, head_add, c);
    if (decoded && d.codec != GENCACHE_CODEC_NONE)
        head_add(c, "X-Gencache-Codec", gencache_codec_name(d.codec));
    head_add(c, "ETag", etag);
    if (!head_end(c, size))
        return false;
    if (keep)
        head_keep(t, s, c, ttl_left, m->tier);
    return true;
}

/* ---- the connection's life ----------------------------------------------------------------- */

/* The clocks a batch of events reads (see fg_thread). */
static void clocks_read(fg_thread *t)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME_COARSE, &ts);
    t->wall_s = ts.tv_sec;
    t->now_ns = gcd_mono_ns();
    t->now_coarse_ns = gcd_mono_coarse_ns();
}

/* Takes len bytes off the socket without copying them (tcp(7): MSG_TRUNC discards). They were
 * peeked, so they are all there: fewer means the connection is lost. */
static bool discard(fg_thread *t, fg_conn *c, size_t len)
{
    ssize_t got;
    if (len > sizeof t->sink)
        return false;
    do
        got = recv(c->fd, t->sink, len, MSG_TRUNC | MSG_DONTWAIT);
    while (got < 0 && errno == EINTR);
    if (got != (ssize_t)len)
        return false;
    c->koff = c->koff > len ? c->koff - len : 0; /* the kernel moves the offset back as much */
    return true;
}

/* Takes the answered requests' bytes still in the socket off it. */
static bool flush_pending(fg_thread *t, fg_conn *c)
{
    size_t len = c->pending;
    if (!len)
        return true;
    c->pending = 0;
    t->n_pending--;
    return discard(t, c, len);
}

/* Moves the socket's peek offset to the first byte not answered, where the next peek starts. */
static bool peek_sync(fg_conn *c)
{
    if (!c->peek_off || c->koff == c->pending)
        return true;
    int off = (int)c->pending;
    if (setsockopt(c->fd, SOL_SOCKET, SO_PEEK_OFF, &off, sizeof off) != 0)
        return false;
    c->koff = c->pending;
    return true;
}

/* The request of len bytes at the peek offset is answered: its bytes leave the socket, now, or
 * with SO_PEEK_OFF together with those of the requests after it, PENDING_MAX bytes at a time. */
static bool take(fg_thread *t, fg_conn *c, size_t len)
{
    if (!c->peek_off)
        return discard(t, c, len);
    if (!c->pending)
        t->n_pending++;
    c->pending += len;
    c->quiet_ns = t->now_coarse_ns;
    return c->pending < PENDING_MAX || flush_pending(t, c);
}

static void conn_remove(fg_thread *t, fg_conn *c)
{
    if (c->pending) {
        c->pending = 0;
        t->n_pending--;
    }
    epoll_ctl(t->ep, EPOLL_CTL_DEL, c->fd, NULL);
    c->prev->next = c->next;
    c->next->prev = c->prev;
    gcd_conns_untrack(t->srv, c->track);
}

/* The request being answered is over (sent, or its connection lost): its metrics and log line. */
static void request_done(fg_thread *t, fg_conn *c, bool completed)
{
    uint64_t now = gcd_mono_ns();
    double ms = now > c->start_ns ? (double)(now - c->start_ns) / 1e6 : 0;
    gcd_metrics_local_request(t->counts, ms / 1e3);
    gcd_log(&t->srv->log, GENCACHE_LOG_DEBUG, "%s %s %u %.3f ms%s", c->req.method, c->req.path,
            c->status, ms, completed ? "" : " (terminated)");
}

static void conn_close(fg_thread *t, fg_conn *c)
{
    if (c->sending)
        request_done(t, c, false);
    reply_free(c);
    conn_remove(t, c);
    close(c->fd);
    free(c);
}

/* Gives the connection, with the next request's bytes still unread, to libmicrohttpd. */
static void hand_off(fg_thread *t, fg_conn *c)
{
    /* The answered requests leave the socket, and libmicrohttpd's reads start at the next one. */
    int none = -1;
    if (!flush_pending(t, c) ||
        (c->peek_off && setsockopt(c->fd, SOL_SOCKET, SO_PEEK_OFF, &none, sizeof none) != 0)) {
        conn_close(t, c);
        return;
    }
    gcd_metrics_fast_handoff(t->srv->metrics);
    conn_remove(t, c);
    int fd = c->fd;
    struct sockaddr_storage peer = c->peer;
    socklen_t len = c->peer_len;
    free(c);
    /* MHD closes the socket when it cannot take it. */
    if (MHD_add_connection(t->srv->mhd, fd, (const struct sockaddr *)&peer, len) != MHD_YES)
        gcd_log(&t->srv->log, GENCACHE_LOG_WARN,
                "http: cannot hand a connection over to libmicrohttpd: %s", strerror(errno));
}

/* Sends what is left of the reply. Returns 1 when all of it is sent, 0 when the socket is full
 * (EPOLLOUT will say when to go on), -1 when the connection is lost. */
static int send_rest(fg_conn *c)
{
    while (c->sent < c->head_len + c->body_len) {
        struct iovec iov[2];
        int n = 0;
        if (c->sent < c->head_len)
            iov[n++] = (struct iovec){c->head + c->sent, c->head_len - c->sent};
        size_t in_body = c->sent > c->head_len ? c->sent - c->head_len : 0;
        if (c->body_len > in_body)
            iov[n++] = (struct iovec){(char *)c->body + in_body, c->body_len - in_body};
        struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t)n};
        ssize_t w = sendmsg(c->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
        }
        c->sent += (size_t)w;
    }
    return 1;
}

/* Answers the request r at the start of the peeked bytes. Returns 1 when answered (the reply is
 * queued in c and the request's bytes taken), 0 to hand the connection over untouched, -1 when
 * the connection must be closed. */
static int answer(fg_thread *t, fg_conn *c, const gcd_fast_req *r)
{
    gcd_server *srv = t->srv;
    char key[GENCACHE_KEY_MAX];
    size_t klen = r->url_len - strlen(GCD_FAST_PREFIX);
    memcpy(key, r->url + strlen(GCD_FAST_PREFIX), klen);
    key[klen] = '\0';
    gencache_caller who;
    gencache_caller_init(&who);
    const gcd_tenant *tenant = NULL;
    if (srv->cfg->n_tenants) {
        /* Anything but a known token is libmicrohttpd's to refuse, with its challenge. */
        char v[GCD_FAST_VALUE_MAX];
        if (!r->auth)
            return 0;
        memcpy(v, r->auth, r->auth_len);
        v[r->auth_len] = '\0';
        tenant = gcd_auth_bearer(srv->cfg, v);
        if (!tenant)
            return 0;
        who.tenant = tenant->name;
    }
    c->start_ns = t->now_ns;
    c->close_after = r->close;
    memset(&c->req, 0, sizeof c->req);
    c->req.srv = srv;
    memcpy(c->req.method, r->head ? "HEAD" : "GET", r->head ? 5 : 4);
    size_t pl = r->url_len < sizeof c->req.path ? r->url_len : sizeof c->req.path - 1;
    memcpy(c->req.path, r->url, pl);
    c->req.path[pl] = '\0';
    c->req.route = GCD_ROUTE_ENTRY;
    c->req.tenant = who.tenant;
    c->req.admin = tenant && tenant->admin;

    /* HEAD is a probe: it does not count as a use of the entry. */
    int err = r->head ? gencache_peek_as(srv->cache, &who, key, &c->h)
                      : gencache_get_as(srv->cache, &who, key, &c->h);
    if (err != 0) {
        const char *code;
        int kerr;
        /* A malformed key or an unknown layer is refused before the library counts anything:
         * libmicrohttpd's route answers those (and anything else about the key) itself. */
        if (err == GENCACHE_EINVAL || gcd_route_key_status(srv->cache, key, &code, &kerr) != 0)
            return 0;
    } else if (!r->head) {
        const gencache_meta *m = gencache_handle_meta(c->h);
        char layer[40];
        gcd_entry_layer(key, layer, sizeof layer);
        gcd_metrics_local_hit(srv->metrics, t->counts, layer, m->tier);
        gcd_ui_hit(srv, who.tenant, key, m->hits);
    }
    /* The request is ours: its bytes leave the socket (they are there: they were peeked). */
    if (!take(t, c, r->len)) {
        gencache_handle_release(c->h);
        c->h = NULL;
        return -1;
    }
    char inm[GCD_FAST_VALUE_MAX];
    if (r->inm) {
        memcpy(inm, r->inm, r->inm_len);
        inm[r->inm_len] = '\0';
    }
    bool ok;
    if (err == GENCACHE_ENOTFOUND) {
        ok = reply_error(t, c, 404, "not_found", "no entry %s", key);
    } else if (err != 0) {
        const char *code;
        unsigned status = gcd_gencache_status(err, &code);
        ok = reply_error(t, c, status, code, "looking up the entry: %s (%s)",
                         gencache_strerror(err), gencache_errname(err));
    } else {
        ok = reply_hit(t, c, r, r->inm ? inm : NULL);
    }
    if (r->head) { /* the headers of the GET, no body */
        c->body = NULL;
        c->body_len = 0;
    }
    if (!ok) {
        gcd_log(&srv->log, GENCACHE_LOG_WARN, "%s %s: out of memory building the reply",
                c->req.method, c->req.path);
        reply_free(c);
        return -1;
    }
    c->sending = true;
    c->sent = 0;
    return 1;
}

/* Sends the pending reply, then answers the requests waiting on the socket, until the socket has
 * nothing more, a reply waits for room, or the connection goes to libmicrohttpd or is closed. */
static void serve(fg_thread *t, fg_conn *c, uint32_t events)
{
    /* Both directions down: a reset, or conns.c shut the socket (an overdue head, an idle
     * connection shed). Nothing can be read or sent any more; a peeked head stays peekable
     * after shutdown(2), so this is the only sign of it. */
    if (events & (EPOLLHUP | EPOLLERR)) {
        conn_close(t, c);
        return;
    }
    if (events & EPOLLRDHUP)
        c->peer_done = true;
    bool drained = false;
    for (;;) {
        if (c->sending) {
            size_t before = c->sent;
            int s = send_rest(c);
            if (s < 0) {
                conn_close(t, c);
                return;
            }
            if (s == 0) {
                /* Only progress restarts the clock: a client that sends but never reads is cut
                 * after limits.timeout like any other. */
                if (!c->busy || c->sent != before)
                    gcd_conns_fast_busy(t->srv, c->track, t->now_coarse_ns);
                c->busy = true;
                return;
            }
            request_done(t, c, true);
            reply_free(c);
            if (c->close_after) {
                shutdown(c->fd, SHUT_WR);
                conn_close(t, c);
                return;
            }
            gcd_conns_fast_idle(t->srv, c->track, t->now_coarse_ns);
            if (drained && !c->peer_done)
                return;
        }
        ssize_t n;
        do
            n = recv(c->fd, t->peek, sizeof t->peek, MSG_PEEK | MSG_DONTWAIT);
        while (n < 0 && errno == EINTR);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
            conn_close(t, c);
            return;
        }
        if (n < 0)
            return;
        if (c->peek_off)
            c->koff += (size_t)n; /* the peek moved the offset past what it copied */
        gcd_fast_req r;
        gcd_fast_parse_result p = gcd_fast_parse(t->peek, (size_t)n, &r);
        if (p == GCD_FAST_MORE && c->peer_done) { /* the head can never be complete */
            conn_close(t, c);
            return;
        }
        if (p == GCD_FAST_MORE && (size_t)n < sizeof t->peek) {
            if (!peek_sync(c)) { /* the next peek starts at the same head again */
                conn_close(t, c);
                return;
            }
            gcd_conns_fast_head(t->srv, c->track, t->now_coarse_ns); /* its head deadline runs */
            return;
        }
        if (p != GCD_FAST_OK) {
            hand_off(t, c);
            return;
        }
        /* Answering: shedding must not take the connection for an idle one while its reply is
         * made and sent (completion or a hand-off sets its state again). */
        gcd_conns_fast_busy(t->srv, c->track, t->now_coarse_ns);
        int a = answer(t, c, &r);
        /* Nothing followed this request when it was peeked: once its reply is sent there is no
         * need to look again; bytes that arrive later raise a new edge. */
        drained = a > 0 && (size_t)n == r.len;
        if (a == 0) {
            hand_off(t, c);
            return;
        }
        /* Bytes peeked beyond the request (pipelined ones) are peeked again. */
        if (a < 0 || !peek_sync(c)) {
            conn_close(t, c);
            return;
        }
    }
}

/* Takes the answered requests off the sockets of connections quiet for FLUSH_MS, so that an
 * idle connection holds no bytes in the kernel. */
static void flush_quiet(fg_thread *t)
{
    t->flushed_ns = t->now_coarse_ns;
    for (fg_conn *c = t->list.next, *next; c != &t->list; c = next) {
        next = c->next;
        if (c->pending && t->now_coarse_ns - c->quiet_ns >= FLUSH_NS &&
            (!flush_pending(t, c) || !peek_sync(c)))
            conn_close(t, c);
    }
}

/* Stops or resumes taking connections from the listener in this thread. */
static void listen_pause(fg_thread *t, bool pause)
{
    struct epoll_event le = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.ptr = &LISTENER};
    if (pause == t->paused)
        return;
    if (epoll_ctl(t->ep, pause ? EPOLL_CTL_DEL : EPOLL_CTL_ADD, t->srv->fastget->lfd, &le) == 0)
        t->paused = pause;
}

static void accept_all(fg_thread *t, int lfd)
{
    for (;;) {
        /* As libmicrohttpd does at its connection limit: newcomers wait in the backlog until a
         * connection closes (or conns.c sheds one), rather than being refused. */
        if (gcd_conns_full(t->srv)) {
            listen_pause(t, true);
            return;
        }
        struct sockaddr_storage peer;
        socklen_t len = sizeof peer;
        int fd = accept4(lfd, (struct sockaddr *)&peer, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                gcd_log(&t->srv->log, GENCACHE_LOG_WARN, "http: accept: %s", strerror(errno));
            return;
        }
        const char *why = NULL;
        fg_conn *c = calloc(1, sizeof *c);
        struct gcd_conn *track =
            c ? gcd_conns_track(t->srv, fd, (struct sockaddr *)&peer, len, &why) : NULL;
        if (!track) {
            gcd_log(&t->srv->log, GENCACHE_LOG_DEBUG, "http: connection refused: %s",
                    c ? why : "out of memory");
            free(c);
            close(fd);
            continue;
        }
        int one = 1, zero = 0;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        /* Linux 6.9 and later: peeks start at an offset, which lets answered requests stay. */
        c->peek_off = setsockopt(fd, SOL_SOCKET, SO_PEEK_OFF, &zero, sizeof zero) == 0;
        c->fd = fd;
        c->track = track;
        c->peer = peer;
        c->peer_len = len;
        c->head = c->head_buf;
        c->head_cap = sizeof c->head_buf;
        c->prev = &t->list;
        c->next = t->list.next;
        t->list.next->prev = c;
        t->list.next = c;
        /* Edge-triggered: a peeked request stays in the socket, and is looked at again only
         * when more bytes arrive or the reply's room frees up. */
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                                 .data.ptr = c};
        if (epoll_ctl(t->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
            gcd_log(&t->srv->log, GENCACHE_LOG_WARN, "http: epoll_ctl: %s", strerror(errno));
            c->prev->next = c->next;
            c->next->prev = c->prev;
            gcd_conns_untrack(t->srv, track);
            close(fd);
            free(c);
            continue;
        }
        serve(t, c, 0); /* the request may be there already */
    }
}

static void *loop(void *arg)
{
    fg_thread *t = arg;
    struct epoll_event ev[EVENTS];
    for (;;) {
        /* While the slots are full, look every PAUSE_MS for one that freed up; while bytes of
         * answered requests wait in sockets, every FLUSH_MS for connections gone quiet. */
        int n = epoll_wait(t->ep, ev, EVENTS, t->paused ? PAUSE_MS : t->n_pending ? FLUSH_MS : -1);
        clocks_read(t);
        if (t->paused && !gcd_conns_full(t->srv)) {
            listen_pause(t, false);
            accept_all(t, t->srv->fastget->lfd);
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            gcd_log(&t->srv->log, GENCACHE_LOG_ERROR, "http: epoll_wait: %s", strerror(errno));
            break;
        }
        for (int i = 0; i < n; i++) {
            void *p = ev[i].data.ptr;
            if (p == &STOPPER)
                goto out;
            if (p == &LISTENER)
                accept_all(t, t->srv->fastget->lfd);
            else
                serve(t, p, ev[i].events);
        }
        if (t->n_pending && t->now_coarse_ns - t->flushed_ns >= FLUSH_NS)
            flush_quiet(t);
    }
out:
    /* The server stops: like libmicrohttpd, it closes the connections it serves. */
    while (t->list.next != &t->list)
        conn_close(t, t->list.next);
    heads_free(t);
    return NULL;
}

/* ---- start and stop ------------------------------------------------------------------------ */

static int listen_socket(gcd_server *srv)
{
    const gcd_config *cfg = srv->cfg;
    int family = cfg->addr.ss_family;
    socklen_t len = family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    struct sockaddr_storage ss = cfg->addr;
    if (bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, SOMAXCONN) != 0 ||
        getsockname(fd, (struct sockaddr *)&ss, &len) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    srv->port = ntohs(family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                         : ((struct sockaddr_in *)&ss)->sin_port);
    return fd;
}

static int thread_start(gcd_server *srv, fg_thread *t)
{
    t->srv = srv;
    t->list.prev = t->list.next = &t->list;
    t->ep = epoll_create1(EPOLL_CLOEXEC);
    t->stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    t->counts = gcd_metrics_local_new(srv->metrics);
    if (t->ep < 0 || t->stop_fd < 0 || !t->counts)
        return -1;
    struct epoll_event se = {.events = EPOLLIN, .data.ptr = &STOPPER};
    /* Every thread waits on the one listener; the kernel wakes one of them per connection. */
    struct epoll_event le = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.ptr = &LISTENER};
    if (epoll_ctl(t->ep, EPOLL_CTL_ADD, t->stop_fd, &se) != 0 ||
        epoll_ctl(t->ep, EPOLL_CTL_ADD, srv->fastget->lfd, &le) != 0)
        return -1;
    int e = pthread_create(&t->thread, NULL, loop, t);
    if (e != 0) {
        errno = e; /* pthread_create returns its error; the caller logs errno */
        return -1;
    }
    t->started = true;
    return 0;
}

int gcd_fastget_start(gcd_server *srv)
{
    unsigned n = srv->cfg->threads ? srv->cfg->threads : 1;
    struct gcd_fastget *fg = calloc(1, sizeof *fg);
    fg_thread *ts = calloc(n, sizeof *ts);
    if (!fg || !ts) {
        free(fg);
        free(ts);
        gcd_log(&srv->log, GENCACHE_LOG_ERROR, "cannot start the server: out of memory");
        return -1;
    }
    for (unsigned i = 0; i < n; i++)
        ts[i].ep = ts[i].stop_fd = -1;
    fg->threads = ts;
    fg->n = n;
    srv->fastget = fg;
    fg->lfd = listen_socket(srv);
    if (fg->lfd < 0) {
        gcd_log(&srv->log, GENCACHE_LOG_ERROR, "cannot listen on %s: %s", srv->cfg->listen,
                strerror(errno));
        gcd_fastget_stop(srv);
        return -1;
    }
    for (unsigned i = 0; i < n; i++) {
        if (thread_start(srv, &ts[i]) != 0) {
            gcd_log(&srv->log, GENCACHE_LOG_ERROR, "cannot start the server's threads: %s",
                    strerror(errno));
            gcd_fastget_stop(srv);
            return -1;
        }
    }
    return 0;
}

void gcd_fastget_stop(gcd_server *srv)
{
    struct gcd_fastget *fg = srv->fastget;
    if (!fg)
        return;
    for (unsigned i = 0; i < fg->n; i++) {
        fg_thread *t = &fg->threads[i];
        if (t->started) {
            uint64_t one = 1;
            ssize_t w = write(t->stop_fd, &one, sizeof one);
            (void)w;
            pthread_join(t->thread, NULL);
        }
        if (t->ep >= 0)
            close(t->ep);
        if (t->stop_fd >= 0)
            close(t->stop_fd);
    }
    if (fg->lfd >= 0)
        close(fg->lfd);
    free(fg->threads);
    free(fg);
    srv->fastget = NULL;
}
