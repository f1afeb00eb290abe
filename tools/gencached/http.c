/*
 * http.c: the libmicrohttpd plumbing: the listener, the request lifecycle and body accumulation;
 * where a request goes is route.c's decision, and this file applies it. MHD runs a pool of worker
 * threads, each with its own epoll loop, and calls on_request() several times per request: once
 * when the headers are in, once per piece of body, and once when the request is complete, which is
 * when it is answered. Requests with a body (PUT, POST) have their headers and length checked on
 * the first call, so a bad or oversize upload is refused before its body is read. A body is never
 * held beyond its limit: past it the bytes are counted and dropped.
 */
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "gencached.h"

/* Connection memory: holds the request line and headers (so it bounds their size; MHD answers
 * 414 or 431 beyond it) and the read buffer for bodies. libmicrohttpd clears the whole pool
 * after every request of a keep-alive connection: at 64 KiB that memset was 13% of a small GET's
 * server time. 16 KiB still takes heads of about 15 KiB (the largest header gencached reads,
 * X-Gencache-Tags, is 1 KiB) and reads bodies 8 KiB at a time. */
#define CONNECTION_MEMORY (16u * 1024u)
/* A chunked upload past its limit is read and dropped (so the client gets its 413) until this
 * much more has arrived; then the connection is cut. */
#define DISCARD_MAX (64ull << 20)

/* Takes n bytes of the server's in-flight body budget for req. Returns false, taking nothing,
 * when they do not fit. */
static bool budget_take(gcd_request *req, uint64_t n)
{
    gcd_server *srv = req->srv;
    uint64_t cur = __atomic_load_n(&srv->inflight, __ATOMIC_RELAXED);
    do {
        if (cur + n > srv->cfg->max_inflight)
            return false;
    } while (!__atomic_compare_exchange_n(&srv->inflight, &cur, cur + n, true, __ATOMIC_RELAXED,
                                          __ATOMIC_RELAXED));
    req->reserved += n;
    return true;
}

static void budget_refused(gcd_request *req)
{
    __atomic_add_fetch(&req->srv->inflight_refused, 1, __ATOMIC_RELAXED);
}

/* First call of a request that carries a body: checks its announced length against the limit.
 * Returns true when it queued a refusal. */
static bool refuse_body(struct MHD_Connection *c, gcd_request *req, enum MHD_Result *r)
{
    const char *cl =
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    const char *te =
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING);
    if (cl) {
        uint64_t n;
        if (gcd_parse_u64(cl, &n) != 0) {
            *r = gcd_reply_error(c, req, MHD_HTTP_BAD_REQUEST, "bad_request",
                                 "Content-Length '%s' is not a number", cl);
            return true;
        }
        if (n > req->body_limit) {
            *r = gcd_reply_error(c, req, MHD_HTTP_CONTENT_TOO_LARGE, "body_too_large",
                                 "body of %llu bytes exceeds the limit of %llu bytes",
                                 (unsigned long long)n, (unsigned long long)req->body_limit);
            return true;
        }
        req->expected = n; /* so the buffer is allocated once, at its final size */
        if (!budget_take(req, n)) {
            budget_refused(req);
            *r = gcd_reply_error(c, req, MHD_HTTP_SERVICE_UNAVAILABLE, "busy",
                                 "request bodies in flight fill the daemon's budget of %llu "
                                 "bytes; try again shortly",
                                 (unsigned long long)req->srv->cfg->max_inflight);
            return true;
        }
        return false;
    }
    if (!te || strcasecmp(te, "chunked") != 0) {
        *r = gcd_reply_error(c, req, MHD_HTTP_LENGTH_REQUIRED, "length_required",
                             "%s needs a Content-Length or a chunked body", req->method);
        return true;
    }
    return false;
}

/* Frees what the body holds and counts it, and the piece of n bytes being taken, as dropped:
 * the rest of the body is read and dropped, and the request answered once it ends. */
static void drop_body(gcd_request *req, size_t n)
{
    req->too_big = true;
    free(req->body);
    req->body = NULL;
    req->discarded = req->body_len + n;
    req->body_len = req->body_cap = 0;
}

/* Appends a piece of body, or drops it once the body has passed its limit. Returns false when
 * the connection should be cut. */
static bool take_body(gcd_request *req, const char *data, size_t n)
{
    if (!req->too_big && req->body_len + n > req->body_limit)
        drop_body(req, 0); /* this piece is counted just below */
    if (req->too_big) {
        req->discarded += n;
        return req->discarded <= req->body_limit + DISCARD_MAX;
    }
    if (req->body_len + n > req->body_cap) {
        size_t cap = req->body_cap ? req->body_cap * 2 : 64 * 1024;
        if (!req->body_cap && req->expected)
            cap = (size_t)req->expected;
        if (cap < req->body_len + n)
            cap = req->body_len + n;
        if (cap > req->body_limit)
            cap = (size_t)req->body_limit;
        /* A chunked body takes from the budget as its buffer grows. */
        if (cap > req->reserved && !budget_take(req, cap - req->reserved)) {
            budget_refused(req);
            req->over_budget = true;
            drop_body(req, n);
            return true;
        }
        char *nb = realloc(req->body, cap);
        if (!nb) {
            /* Answered with 500 once the body is over; what still comes is dropped. */
            req->no_memory = true;
            drop_body(req, n);
            return true;
        }
        req->body = nb;
        req->body_cap = cap;
    }
    memcpy(req->body + req->body_len, data, n);
    req->body_len += n;
    return true;
}

static enum MHD_Result health(struct MHD_Connection *c, gcd_request *req)
{
    return gcd_reply_bytes(c, req, MHD_HTTP_OK, "text/plain", "ok", 2);
}

/* Who answers each route once its request is complete (route.c has decided it may). */
typedef enum MHD_Result (*handler_fn)(struct MHD_Connection *c, gcd_request *req);
static const handler_fn HANDLERS[GCD_ROUTE_COUNT] = {
    [GCD_ROUTE_HEALTH] = health,
    [GCD_ROUTE_STATS] = gcd_stats_handle,
    [GCD_ROUTE_KEYS] = gcd_keys_handle,
    [GCD_ROUTE_ENTRY] = gcd_entries_handle,
    [GCD_ROUTE_GENERATE] = gcd_generate_handle,
    [GCD_ROUTE_PREWARM] = gcd_prewarm_handle,
    [GCD_ROUTE_JOB] = gcd_jobs_handle,
    [GCD_ROUTE_METRICS] = gcd_metrics_handle,
    [GCD_ROUTE_INVALIDATE] = gcd_invalidate_handle,
    [GCD_ROUTE_LOOKUP] = gcd_lookup_handle,
    [GCD_ROUTE_STORE] = gcd_store_handle,
    [GCD_ROUTE_UI] = gcd_ui_handle,
    [GCD_ROUTE_TRAJ_STORE] = gcd_trajectory_store_handle,
    [GCD_ROUTE_TRAJ_MATCH] = gcd_trajectory_lookup_handle,
};

/* First call of a request: takes its tenant from its token, and for a request whose route reads
 * a body, checks the announced length (and a PUT's headers) before any byte of it is read. A
 * refusal is queued at once; anything else is answered once the request is complete: a response
 * queued now would make MHD close the connection (it cannot know the request is over), and
 * keep-alive matters for small GETs. */
static enum MHD_Result begin(struct MHD_Connection *c, gcd_request *req, const gcd_route_match *m)
{
    /* Bearer token -> req->tenant (auth.c); refused at once, before any body is read. */
    enum MHD_Result r = MHD_YES;
    if (!gcd_auth_check(c, req, &r))
        return r;
    bool reads = m->status == 0 && (m->body == GCD_BODY_SMALL || m->body == GCD_BODY_LARGE ||
                                    (m->body == GCD_BODY_IF_SENT && gcd_has_body(c)));
    if (!reads)
        return MHD_YES;
    req->wants_body = true;
    req->body_limit = req->srv->cfg->max_body;
    /* An upload to /v1/generate carries the image itself (upload.c): up to max_body too. */
    bool upload = m->route == GCD_ROUTE_GENERATE &&
                  gcd_upload_is(MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                            MHD_HTTP_HEADER_CONTENT_TYPE));
    if (m->body != GCD_BODY_LARGE && !upload && req->body_limit > GENCACHE_REQUEST_MAX_BYTES)
        req->body_limit = GENCACHE_REQUEST_MAX_BYTES;
    if (refuse_body(c, req, &r))
        return r;
    if (m->route == GCD_ROUTE_ENTRY) {
        bool queued = false;
        r = gcd_entries_put_begin(c, req, &queued);
        if (queued || r != MHD_YES)
            return r;
    }
    return MHD_YES; /* read the body */
}

/* The request is complete: the body's refusals, then the route's verdict, then its handler. */
static enum MHD_Result finish(struct MHD_Connection *c, gcd_request *req, const gcd_route_match *m)
{
    if (req->status)
        return MHD_YES;
    if (req->no_memory)
        return gcd_reply_gencache(c, req, GENCACHE_ENOMEM, "reading the body");
    if (req->over_budget)
        return gcd_reply_error(c, req, MHD_HTTP_SERVICE_UNAVAILABLE, "busy",
                               "request bodies in flight fill the daemon's budget of %llu bytes; "
                               "try again shortly",
                               (unsigned long long)req->srv->cfg->max_inflight);
    if (req->wants_body && req->too_big)
        return gcd_reply_error(c, req, MHD_HTTP_CONTENT_TOO_LARGE, "body_too_large",
                               "body of %llu bytes or more exceeds the limit of %llu bytes",
                               (unsigned long long)req->discarded,
                               (unsigned long long)req->body_limit);
    if (m->status == MHD_HTTP_METHOD_NOT_ALLOWED)
        return gcd_reply_method(c, req, m->allow);
    if (m->status != 0 || !HANDLERS[m->route])
        return gcd_reply_error(c, req, MHD_HTTP_NOT_FOUND, "unknown_route", "no endpoint at %s",
                               req->path);
    return HANDLERS[m->route](c, req);
}

/* Copies as much of src as fits into dst (size > 0), always terminated. */
static void copy_prefix(char *dst, size_t size, const char *src)
{
    size_t n = strnlen(src, size - 1);
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    (void)version;
    gcd_server *srv = cls;
    gcd_request *req = *con_cls;
    gcd_route_match m;

    if (!req) {
        gcd_route_resolve(method, url, &m);
        req = calloc(1, sizeof *req);
        if (!req)
            return MHD_NO;
        *con_cls = req;
        req->srv = srv;
        req->start_ns = gcd_mono_ns();
        req->route = m.route;
        req->tail = m.tail;
        req->match = m;
        req->tail_off = m.tail ? (size_t)(m.tail - url) : 0;
        copy_prefix(req->method, sizeof req->method, method);
        copy_prefix(req->path, sizeof req->path, url);
        gcd_conns_busy(srv, c); /* the head is complete: its deadline no longer applies */
        return begin(c, req, &m);
    }
    /* The request line does not change between the calls of one request: its route is the first
     * call's (resolved once; a body comes in many calls), its tail at the same place of this
     * call's URL. */
    m = req->match;
    m.tail = m.tail ? url + req->tail_off : NULL;
    req->tail = m.tail;

    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (req->status) /* already answered: drop what still arrives */
            return MHD_YES;
        if (!take_body(req, upload_data, n)) {
            gcd_log(&srv->log, GENCACHE_LOG_WARN, "%s %s: body far beyond its limit, closing",
                    req->method, req->path);
            return MHD_NO;
        }
        return MHD_YES;
    }
    return finish(c, req, &m);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    gcd_server *srv = cls;
    gcd_conns_idle(srv, c); /* keep-alive: idle until the next request line */
    gcd_request *req = *con_cls;
    if (!req)
        return;
    *con_cls = NULL;
    double ms = (double)(gcd_mono_ns() - req->start_ns) / 1e6;
    gcd_metrics_request(req->srv->metrics, req->route, ms / 1e3);
    if (toe == MHD_REQUEST_TERMINATED_COMPLETED_OK)
        gcd_log(&req->srv->log, GENCACHE_LOG_DEBUG, "%s %s %u %.3f ms", req->method, req->path,
                req->status, ms);
    else
        gcd_log(&req->srv->log, GENCACHE_LOG_DEBUG, "%s %s %u %.3f ms (terminated: %d)",
                req->method, req->path, req->status, ms, (int)toe);
    gcd_entries_request_free(req);
    gcd_generate_request_free(req);
    free(req->body);
    if (req->reserved)
        __atomic_sub_fetch(&srv->inflight, req->reserved, __ATOMIC_RELAXED);
    free(req);
}

int gcd_listen_resolve(const gcd_logger *lg, const char *listen, bool any_address,
                       struct sockaddr_storage *ss, socklen_t *len)
{
    char host[256];
    const char *colon = strrchr(listen, ':');
    if (!colon || colon == listen || colon[1] == '\0' || (size_t)(colon - listen) >= sizeof host) {
        gcd_log(lg, GENCACHE_LOG_ERROR, "--listen '%s': expected HOST:PORT", listen);
        return -1;
    }
    size_t hl = (size_t)(colon - listen);
    memcpy(host, listen, hl);
    host[hl] = '\0';
    if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
        memmove(host, host + 1, hl - 2);
        host[hl - 2] = '\0';
    }
    uint64_t port;
    if (gcd_parse_u64(colon + 1, &port) != 0 || port > 65535) {
        gcd_log(lg, GENCACHE_LOG_ERROR, "--listen '%s': bad port '%s'", listen, colon + 1);
        return -1;
    }
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    int rc = getaddrinfo(host, colon + 1, &hints, &ai);
    if (rc != 0 || !ai) {
        gcd_log(lg, GENCACHE_LOG_ERROR, "--listen '%s': cannot resolve '%s': %s", listen, host,
                gai_strerror(rc));
        return -1;
    }
    memcpy(ss, ai->ai_addr, ai->ai_addrlen);
    *len = ai->ai_addrlen;
    freeaddrinfo(ai);

    /* Without tenant tokens nothing but this host may reach the cache. */
    bool loopback = any_address;
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
        loopback = loopback || (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
        loopback = loopback || IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr);
    }
    if (!loopback) {
        gcd_log(lg, GENCACHE_LOG_ERROR,
                "listen '%s': refusing to listen beyond loopback without tenant tokens (tenants: "
                "in the config file)",
                listen);
        return -1;
    }
    return 0;
}

int gcd_http_start(gcd_server *srv)
{
    const gcd_config *cfg = srv->cfg;
    struct sockaddr_storage ss = cfg->addr;
    if (gcd_generate_start(srv) != 0) /* the proxy's upstream workers */
        return -1;
    /* Suspend/resume: a proxied request waits for its upstream without holding a thread. With
     * the fast path, fastget.c owns the listener and hands MHD the connections it does not
     * serve itself (MHD_add_connection needs the inter-thread channel to notice them). */
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG |
                     MHD_ALLOW_SUSPEND_RESUME;
    if (cfg->fast_get)
        flags |= MHD_USE_NO_LISTEN_SOCKET | MHD_USE_ITC;
    else if (ss.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    struct MHD_OptionItem opts[] = {
        /* First, so that every message of MHD's goes to our log. */
        {MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)gcd_log_mhd, (void *)&srv->log},
        {MHD_OPTION_THREAD_POOL_SIZE, (intptr_t)(cfg->threads > 1 ? cfg->threads : 0), NULL},
        {MHD_OPTION_CONNECTION_LIMIT, (intptr_t)cfg->max_connections, NULL},
        {MHD_OPTION_CONNECTION_TIMEOUT, (intptr_t)cfg->timeout_s, NULL},
        {MHD_OPTION_CONNECTION_MEMORY_LIMIT, (intptr_t)CONNECTION_MEMORY, NULL},
        {MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)on_completed, (void *)srv},
        /* Slow and idle clients (conns.c); the per-address cap is MHD's own. */
        {MHD_OPTION_NOTIFY_CONNECTION, (intptr_t)gcd_conns_notify, (void *)srv},
        {MHD_OPTION_URI_LOG_CALLBACK, (intptr_t)gcd_conns_uri, (void *)srv},
        {MHD_OPTION_PER_IP_CONNECTION_LIMIT, (intptr_t)cfg->max_per_client, NULL},
        {MHD_OPTION_STRICT_FOR_CLIENT, 1, NULL},
        {MHD_OPTION_SIGPIPE_HANDLED_BY_APP, 1, NULL},
        /* Last, so that the fast path can leave it out. */
        {cfg->fast_get ? MHD_OPTION_END : MHD_OPTION_SOCK_ADDR, 0, (void *)&ss},
        {MHD_OPTION_END, 0, NULL},
    };
    srv->mhd = MHD_start_daemon(flags, 0, NULL, NULL, on_request, srv, MHD_OPTION_ARRAY, opts,
                                MHD_OPTION_END);
    if (!srv->mhd) {
        gcd_log(&srv->log, GENCACHE_LOG_ERROR,
                "cannot listen on %s (address in use, or no permission?)", cfg->listen);
        return -1;
    }
    if (cfg->fast_get)
        return gcd_fastget_start(srv); /* binds the address, sets srv->port */
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(srv->mhd, MHD_DAEMON_INFO_BIND_PORT);
    srv->port = info ? info->port : 0;
    return 0;
}

void gcd_http_stop(gcd_server *srv)
{
    /* No connection is handed to MHD any more, and the fast path's are closed. */
    gcd_fastget_stop(srv);
    /* Every suspended connection is resumed (answered 503) before MHD may stop. */
    gcd_generate_stop(srv);
    if (srv->mhd)
        MHD_stop_daemon(srv->mhd);
    srv->mhd = NULL;
}
