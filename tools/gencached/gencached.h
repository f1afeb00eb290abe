/*
 * gencached.h: what the files of the gencached daemon share. The daemon is a thin HTTP layer
 * over the public API of libgencache (include/gencache.h, nothing else): main.c reads the flags
 * and owns the process, server.c owns everything a server holds, route.c decides where a request
 * goes, http.c runs libmicrohttpd and hands complete requests to the routes' handlers, and one
 * file per group of endpoints turns requests into library calls. Names here are gcd_*; nothing is
 * exported.
 */
#ifndef GENCACHED_H
#define GENCACHED_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sys/socket.h>

#include <jansson.h>
#include <microhttpd.h>

#include "gencache.h"
#include "parse.h"
#include "route.h"

/* ---- config.c: the settings of gencache.yaml and the flags ----------------------------------- */

/* One tenant of `tenants:`, as auth.c and the pressure policy need it (the library holds the
 * tenant's rules: quota, namespace); its token is what a client sends as
 * "Authorization: Bearer <token>". Strings point into the loaded config. */
typedef struct gcd_tenant {
    const char *name;
    const char *token;
    size_t token_len;
    gencache_priority priority; /* batch leaves memory first under pressure */
    bool admin; /* sees the global /v1/stats and /metrics; invalidates any entries */
} gcd_tenant;

struct gcd_config_ext; /* config.h: the library's gencache_config and what main.c reads of it */

/* What the flags configure; filled by main.c before the server starts, read-only afterwards. */
typedef struct gcd_config {
    const char *listen;           /* "HOST:PORT" */
    struct sockaddr_storage addr; /* listen, resolved */
    const char *data_dir;         /* disk tier directory */
    uint64_t max_memory;          /* memory tier byte limit; 0: the library's default */
    uint64_t max_disk;            /* disk tier byte limit; 0: the library's default */
    uint64_t max_body;            /* largest request body in bytes */
    unsigned threads;             /* MHD worker threads */
    unsigned max_connections;     /* concurrent connections */
    unsigned timeout_s;           /* idle connection timeout in seconds */
    unsigned header_timeout_ms;   /* a request head must be complete this long after the
                                     connection opened (or its request line arrived) */
    unsigned max_per_client;      /* connections from one client address; 0: no cap */
    bool max_per_client_set;      /* the file set max_per_client (else a quarter of the slots) */
    uint64_t max_inflight;        /* request body bytes held at once, all requests together
                                     (at least max_body) */
    uint64_t prewarm_max_bytes;   /* request bytes one tenant's unfinished prewarm jobs hold */
    gencache_log_level log_level;
    const char *redis_url;     /* shared Redis tier; NULL: none */
    unsigned redis_timeout_ms; /* 0: the library's default */
    /* From the config file only: */
    const char *config_path; /* NULL: built-in defaults only */
    gcd_tenant *tenants;     /* n_tenants; none: the open, loopback-only mode */
    size_t n_tenants;
    const char *upstream_url;      /* upstream: url (NULL: none) */
    unsigned upstream_timeout_ms;  /* upstream: timeout; 0: the proxy's default */
    unsigned prewarm_concurrency;  /* prewarm: concurrency; 0: the prewarm's default */
    unsigned upstream_concurrency; /* most upstream calls in flight; 0: default 16 */
    double pressure_warn_ratio;    /* memory_pressure: warn_ratio (default 0.85) */
    bool fast_get;                 /* http: fast_get (default true): fastget.c serves GETs */
    struct gcd_config_ext *ext;
} gcd_config;

/* ---- log.c: timestamped lines on stderr ----------------------------------------------------- */

/* Where a server's lines go and how verbose they are. Each server has its own; main.c has one
 * for what it says before the server exists. */
typedef struct gcd_logger {
    gencache_log_level level; /* the most verbose level written; set before any thread logs */
} gcd_logger;

/* Writes "<UTC timestamp> <LEVEL> <message>" as one line to stderr (one write, so lines from
 * several threads never interleave) when level is within lg's. Thread-safe. */
void gcd_log(const gcd_logger *lg, gencache_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The library's log callback (gencache_log_fn) and MHD's (MHD_LogCallback); userdata and cls
 * are the gcd_logger. */
void gcd_log_library(void *userdata, gencache_log_level level, const char *message);
void gcd_log_mhd(void *cls, const char *fmt, va_list ap);
/* Wall-clock milliseconds and monotonic nanoseconds. */
uint64_t gcd_now_ms(void);
uint64_t gcd_mono_ns(void);
/* The same from the kernel's coarse clocks (a few milliseconds of resolution, no clock read):
 * for the per-request bookkeeping whose deadlines are milliseconds to seconds long. */
uint64_t gcd_now_coarse_ms(void);
uint64_t gcd_mono_coarse_ns(void);

/* ---- server.c: one running server and everything it owns ------------------------------------ */

/* A server: the cache, the listener and the state of its endpoints. Nothing of it is global, so
 * several can run in one process; every file reaches the state through the gcd_server its
 * request or caller carries. */
typedef struct gcd_server {
    const gcd_config *cfg;
    gcd_logger log;
    gencache *cache;
    gencache_keyspace *keyspace; /* the layer recipes POST /v1/keys derives keys with */
    struct MHD_Daemon *mhd;
    uint16_t port;               /* the port actually bound (differs from cfg when it asked 0) */
    uint64_t started_ms;         /* wall clock at start, for uptime */
    struct gcd_tenancy *tenancy; /* tenancy.c: the memory-pressure state */
    struct gcd_metrics *metrics; /* metrics.c: the counters only the daemon sees */
    struct gcd_proxy *proxy;     /* generate.c: upstream workers and their queues */
    struct gcd_prewarm *prewarm; /* prewarm.c: the jobs and their starter thread */
    struct gcd_conns *conns;     /* conns.c: every open connection and what it is doing */
    uint64_t inflight;           /* request body bytes reserved now (atomic; http.c) */
    uint64_t inflight_refused;   /* bodies refused 503 for the budget (atomic) */
    struct gcd_ui *ui;           /* ui.c: history, top keys and errors for the status page */
    struct gcd_respcache *respcache; /* respcache.c: built GET responses of small entries */
    struct gcd_fastget *fastget;     /* fastget.c: the listener and its threads; NULL: off */
} gcd_server;

/* Fills srv for cfg (which must outlive it): opens the cache with opts and the config's layers,
 * and creates the endpoints' state. Nothing listens yet. Returns 0, or -1 after logging why
 * (srv is then closed). */
int gcd_server_open(gcd_server *srv, const gcd_config *cfg, const gencache_options *opts);
/* The once-a-second housekeeping: memory pressure, and every `maintain_every` ticks the sweep
 * of expired entries. */
void gcd_server_tick(gcd_server *srv, unsigned tick, unsigned maintain_every);
/* Stops serving (if started: gcd_http_start) and frees everything srv owns, the cache
 * included. */
void gcd_server_close(gcd_server *srv);

/* ---- http.c: the libmicrohttpd plumbing ----------------------------------------------------- */

/* Per-request state, created on the first call of the access handler and freed when MHD reports
 * the request complete. */
typedef struct gcd_request {
    gcd_server *srv;
    char method[16];
    char path[160]; /* a prefix of the URL, for the access log */
    gcd_route_id route;
    const char *tail;      /* the route's {layer}/{hex} or {id}, from this call's URL; NULL: none */
    gcd_route_match match; /* route.c's verdict on the request line, from the first call */
    size_t tail_off;       /* where the tail starts in the URL */
    char *body;            /* uploaded bytes (PUT, POST); NULL until the first byte */
    size_t body_len;
    size_t body_cap;
    uint64_t body_limit;
    uint64_t expected;  /* the announced Content-Length; 0 for a chunked body */
    uint64_t discarded; /* bytes dropped after the body passed its limit */
    bool too_big;       /* past body_limit: the rest is counted and dropped */
    bool over_budget;   /* the in-flight byte budget ran out: dropped likewise, answered 503 */
    uint64_t reserved;  /* bytes of the in-flight budget this request holds */
    bool no_memory;     /* the body buffer could not grow: dropped likewise */
    bool wants_body;    /* PUT or POST to a route that reads a body */
    unsigned status;    /* the status queued, for the access log */
    uint64_t start_ns;
    void *put; /* entries.c's parsed PUT headers, freed by it */
    /* The caller's tenant name, from its bearer token (http.c, first call); NULL in the open,
     * tokenless mode. Never taken from a body or another header. Points into the config. */
    const char *tenant;
    bool admin; /* the token's tenant has admin: true (auth.c) */
    void *gen;  /* generate.c's state of a proxied request, freed by gcd_generate_request_free */
} gcd_request;

/* Splits "HOST:PORT" (or "[V6]:PORT") and resolves it; refuses addresses beyond loopback unless
 * any_address (tenant tokens are configured). Returns 0, or -1 after logging why. */
int gcd_listen_resolve(const gcd_logger *lg, const char *listen, bool any_address,
                       struct sockaddr_storage *ss, socklen_t *len);
/* Binds cfg->addr and starts the worker threads. Returns 0, or -1 after logging why. */
int gcd_http_start(gcd_server *srv);
/* Stops accepting, closes every connection (releasing the handles they held) and joins the
 * threads. */
void gcd_http_stop(gcd_server *srv);

/* ---- conns.c: slow, idle and greedy clients ------------------------------------------------ */

/* Creates and frees srv->conns. Returns 0 or -1. */
int gcd_conns_new(gcd_server *srv);
void gcd_conns_free(gcd_server *srv);
/* MHD_OPTION_NOTIFY_CONNECTION and MHD_OPTION_URI_LOG_CALLBACK (cls: the server). The first
 * tracks every connection, and when a new one leaves fewer than a reserve of slots free, closes
 * the longest-idle keep-alive connection (else the oldest one still sending its head); the
 * second restarts the head deadline of a keep-alive connection when its next request begins. */
void gcd_conns_notify(void *cls, struct MHD_Connection *c, void **socket_context,
                      enum MHD_ConnectionNotificationCode code);
void *gcd_conns_uri(void *cls, const char *uri, struct MHD_Connection *c);
/* The request's head is complete (first call of the access handler) / the request is over and
 * the connection idles until the next one (keep-alive). */
void gcd_conns_busy(gcd_server *srv, struct MHD_Connection *c);
void gcd_conns_idle(gcd_server *srv, struct MHD_Connection *c);
/* Closes the connections whose head is overdue, and keep-alive connections idle for longer than
 * limits.timeout however they trickle (every second, from gcd_server_tick). */
void gcd_conns_sweep(gcd_server *srv);
/* Connections closed so far: head overdue, and shed (idle or slow) to make room. */
void gcd_conns_counts(gcd_server *srv, uint64_t *open, uint64_t *head_timeouts, uint64_t *shed);
/* The connections fastget.c accepts itself are tracked the same way, and the limits MHD applies
 * to those it accepts are applied to them over every open connection: track returns NULL (and
 * why) when the connection must be closed at once (max_connections, or max_per_client from its
 * address). A tracked connection is shut down (shutdown(2)) when idle or slow like any other, and
 * also when its reply made no progress for limits.timeout (busy: the time of the last progress);
 * untrack it before closing its socket or handing it to MHD. The state calls: its next head
 * began (only from idle) / it is being answered / it idles between requests, from `now` (the
 * coarse monotonic clock, gcd_mono_coarse_ns(), read by the caller: once per batch of events is
 * enough). Each is called from the thread that serves the connection, and takes no lock. */
struct gcd_conn;
struct gcd_conn *gcd_conns_track(gcd_server *srv, int fd, const struct sockaddr *peer,
                                 socklen_t len, const char **why);
void gcd_conns_untrack(gcd_server *srv, struct gcd_conn *k);
/* True when max_connections connections are open: the next one waits in the listen backlog. */
bool gcd_conns_full(gcd_server *srv);
void gcd_conns_fast_head(gcd_server *srv, struct gcd_conn *k, uint64_t now);
void gcd_conns_fast_busy(gcd_server *srv, struct gcd_conn *k, uint64_t now);
void gcd_conns_fast_idle(gcd_server *srv, struct gcd_conn *k, uint64_t now);

/* ---- fastget.c: keep-alive GET and HEAD of /v1/entries/ without libmicrohttpd -------------- */

/* With http.fast_get (the default), gcd_http_start() calls start: it binds cfg->addr, sets
 * srv->port and runs cfg->threads threads that accept every connection and answer simple GET and
 * HEAD requests of entries themselves; a connection whose next request is anything else is
 * handed, its bytes unread, to srv->mhd (which must run with MHD_USE_NO_LISTEN_SOCKET) for the
 * rest of its life. Returns 0, or -1 after logging why. stop (before MHD stops) joins the
 * threads and closes the connections still served here, releasing the handles they hold; it does
 * nothing when start was not called. */
int gcd_fastget_start(gcd_server *srv);
void gcd_fastget_stop(gcd_server *srv);

/* ---- auth.c: bearer tokens -> tenants ------------------------------------------------------- */

/* First call of every request: with tenants configured, anything but /healthz needs a known
 * "Authorization: Bearer <token>"; sets req->tenant (NULL in the tokenless mode). Returns true to
 * go on, false after queueing 401 unauthorized (with WWW-Authenticate: Bearer) into *r. */
bool gcd_auth_check(struct MHD_Connection *c, gcd_request *req, enum MHD_Result *r);
/* The tenant whose token an Authorization header's value ("Bearer <token>") carries, or NULL.
 * Every configured token is compared, in time independent of the guess. */
const gcd_tenant *gcd_auth_bearer(const gcd_config *cfg, const char *h);
/* True in the open mode (no tenant) and for an admin tenant: global counters may be shown. */
bool gcd_tenant_admin(const gcd_request *req);

/* ---- tenancy.c: per-tenant statistics, memory pressure -------------------------------------- */

/* Creates srv->tenancy (after the cache is open; before the server starts); frees it. */
int gcd_tenancy_init(gcd_server *srv);
void gcd_tenancy_free(gcd_server *srv);
/* Memory pressure as the library's last policy step left it (gencache_pressure_relieve, every
 * second): the memory tier's fill, and the level: 0 normal, 1 at or above
 * memory_pressure.warn_ratio (batch tenants' entries are demoted out of memory, never deleted),
 * 2 the tiers below cannot keep up (the library caps the TTL of new puts of non-high tenants at
 * memory_pressure.shortened_ttl). Thread-safe. */
double gcd_pressure_ratio(gcd_server *srv);
unsigned gcd_pressure_level(gcd_server *srv);
/* Entries demoted out of memory by the batch-priority step so far. */
uint64_t gcd_pressure_evicted(gcd_server *srv);
/* One step of the library's pressure policy, with its transitions logged (every second). */
void gcd_pressure_check(gcd_server *srv);

/* ---- config.c, keys.c, invalidate.c --------------------------------------------------------- */

/* True when text matches a `sensitive:` rule of the config: a request whose prompt or
 * negative_prompt matches must not be cached (POST /v1/generate bypasses the cache). Thread-safe.
 */
bool gcd_sensitive(gcd_server *srv, const char *text);
/* True when the request announces a body (Content-Length above 0, or chunked). */
bool gcd_has_body(struct MHD_Connection *c);
/* POST /v1/invalidate (JSON body) and POST /invalidate?key=... (query). */
enum MHD_Result gcd_invalidate_handle(struct MHD_Connection *c, gcd_request *req);

/* ---- reply.c: responses --------------------------------------------------------------------- */

/* Queues {"error": {"code": code, "message": ...}} with `status`. Returns MHD's verdict. */
enum MHD_Result gcd_reply_error(struct MHD_Connection *c, gcd_request *req, unsigned status,
                                const char *code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* 405 with an Allow header listing `allow`. */
enum MHD_Result gcd_reply_method(struct MHD_Connection *c, gcd_request *req, const char *allow);
/* The error for a failed library call: 404 ENOTFOUND, 400 EINVAL/EPARSE, 507 EFULL/ETOOBIG,
 * 413 ELIMIT, 503 EUNAVAILABLE/ETIMEDOUT, 500 otherwise. `what` starts the message. */
enum MHD_Result gcd_reply_gencache(struct MHD_Connection *c, gcd_request *req, int err,
                                   const char *what);
/* Queues a copy of `len` bytes with the given status and content type. */
enum MHD_Result gcd_reply_bytes(struct MHD_Connection *c, gcd_request *req, unsigned status,
                                const char *content_type, const void *data, size_t len);
/* The text of {"error": {"code": code, "message": message}}, message first made printable ASCII
 * in place: a new string the caller frees, NULL when out of memory. */
char *gcd_error_text(const char *code, char *message);
/* What every error reply leaves behind: the status page's latest errors (a miss aside) and a
 * log line (WARN for 5xx, else DEBUG). srv and req may be NULL. */
void gcd_error_note(gcd_server *srv, const gcd_request *req, unsigned status, const char *code,
                    const char *message);
/* The HTTP status and error code of a library error, as gcd_reply_gencache() answers it. */
unsigned gcd_gencache_status(int err, const char **code);
/* Queues `resp` (adding nothing), records the status and destroys our reference. */
enum MHD_Result gcd_reply_queue(struct MHD_Connection *c, gcd_request *req, unsigned status,
                                struct MHD_Response *resp);

/* ---- entries.c: /v1/entries/{layer}/{hex} --------------------------------------------------- */

/* The key is req->tail. Serves GET, HEAD and DELETE, and a PUT whose body is complete. */
enum MHD_Result gcd_entries_handle(struct MHD_Connection *c, gcd_request *req);
/* PUT, first call: checks the key and headers before any byte of the body is read, so a bad
 * request is refused at once. Returns MHD_YES with nothing queued to go on reading the body. */
enum MHD_Result gcd_entries_put_begin(struct MHD_Connection *c, gcd_request *req, bool *queued);
/* Frees what put_begin kept in req->put. */
void gcd_entries_request_free(gcd_request *req);
/* Adds the headers a GET of an entry carries for its metadata: Content-Type, X-Gencache-Tier,
 * -Cost-Ms, -Dtype, -Shape, -Tags, -Model, -Pinned, -TTL. */
void gcd_entry_meta_headers(struct MHD_Response *resp, const gencache_meta *m);
/* The layer part of a checked key ("layer/hex"), cut to size - 1 bytes, for the per-layer and
 * per-tenant counters. */
void gcd_entry_layer(const char *key, char *out, size_t size);
/* Where gcd_entry_headers() puts each header (name and value are valid for the call). */
typedef void (*gcd_header_fn)(void *ctx, const char *name, const char *value);
/* The same headers, in the same order, handed to add; ttl_left as gcd_entry_ttl_left() gives it.
 * Both GET paths (libmicrohttpd's and fastget.c's) take their headers from here. */
void gcd_entry_headers(const gencache_meta *m, uint64_t ttl_left, gcd_header_fn add, void *ctx);
/* Writes v in decimal into buf (at least 21 bytes) and returns buf. Every GET formats its cost
 * header, and snprintf is a measurable share of a small hit's time. */
const char *gcd_u64_dec(uint64_t v, char *buf);
/* Whole seconds of TTL left, as X-Gencache-TTL says them; UINT64_MAX when the entry does not
 * expire. */
uint64_t gcd_entry_ttl_left(const gencache_meta *m);
/* The ETag of stored bytes: their checksum as 16 lowercase hex digits in quotes. */
void gcd_entry_etag(uint64_t checksum, char out[19]);
/* What a decoded GET (an int8 payload, or ?as=) describes: m with d's content type, dtype and
 * shape in *view (strings still m's and d's), and its own ETag. */
void gcd_entry_decoded_view(const gencache_meta *m, const gcd_decoded *d, gencache_meta *view,
                            char etag[48]);

/* ---- respcache.c: built GET responses, reused -------------------------------------------- */

/* Creates srv->respcache; frees it, and every response it keeps, once MHD has stopped. */
int gcd_respcache_new(gcd_server *srv);
void gcd_respcache_free(gcd_server *srv);
/* This worker thread's kept response for these bytes (the address of an entry's data as a read
 * handle gives it), tier and seconds of TTL left (UINT64_MAX: none), or NULL. The response
 * stays the cache's: queue it without destroying it. */
struct MHD_Response *gcd_respcache_find(gcd_server *srv, const void *data, size_t size,
                                        uint64_t ttl_left, const char *tier);
/* Takes over the caller's reference to resp (a GET response for those bytes, tier and TTL, that
 * owns a read handle of them), keeping it for later GETs or dropping it. */
void gcd_respcache_keep(gcd_server *srv, const void *data, size_t size, uint64_t ttl_left,
                        const char *tier, struct MHD_Response *resp);

/* ---- codec.c: X-Gencache-Codec on PUT, ?as= on GET ------------------------------------------ */

/* How a PUT asked its tensor to be stored. */
typedef struct gcd_codec_args {
    gencache_encode_options opts; /* codec NONE: as given */
} gcd_codec_args;

/* The PUT's X-Gencache-Codec headers are read with the others (parse.h); the ?as= conversion
 * of a GET is gcd_codec_decode (parse.h). */
/* Encodes a validated tensor body with the library (gencache_tensor_encode): *out holds what to
 * store, and m's dtype, shape and content type are updated to describe it (the content type
 * points into *out). Returns 0 or a GENCACHE_E*. */
int gcd_codec_encode(const gcd_codec_args *a, gencache_meta *m, const void *body, size_t len,
                     gencache_encoded **out);

/* ---- stats.c and keys.c --------------------------------------------------------------------- */

enum MHD_Result gcd_stats_handle(struct MHD_Connection *c, gcd_request *req);
enum MHD_Result gcd_keys_handle(struct MHD_Connection *c, gcd_request *req);

/* ---- generate.c, upstream.c, prewarm.c, metrics.c: proxy, prewarm, metrics ------------------ */

/* How a proxied generate request was served. */
typedef enum gcd_gen_outcome {
    GCD_GEN_HIT = 0,   /* the result layer had it */
    GCD_GEN_MISS,      /* this request called the upstream and stored the answer */
    GCD_GEN_COALESCED, /* waited for an identical request's upstream call */
    GCD_GEN_BYPASS,    /* uncacheable (no seed, or sensitive): forwarded, not stored */
    GCD_GEN_ERROR,     /* bad request, upstream failure, or shutdown: see the result's status */
} gcd_gen_outcome;

/* The answer to a proxied request, shared by every request that waited for the same upstream
 * call; reference-counted, immutable once published. */
typedef struct gcd_gen_result {
    int refs;               /* atomic */
    unsigned status;        /* 200, or the HTTP status of the error */
    const char *error_code; /* static; NULL when status is 200 */
    char message[300];      /* the error's message */
    const void *data;       /* the generated bytes: owned, or a hit's handle's */
    size_t size;
    void *owned;             /* malloc'd data, or NULL */
    gencache_handle *handle; /* a hit's read handle, or NULL */
    char content_type[256];
    char key[GENCACHE_KEY_MAX]; /* the result layer's key; "" for a bypass */
    char tier[16];              /* the tier a hit came from; "" otherwise */
    uint64_t cost_ms;           /* the stored cost of a hit; the upstream's duration otherwise */
} gcd_gen_result;

/* Called once per submission with the outcome and a borrowed result (valid for the call); from
 * the submitting thread (hits, bad requests) or from an upstream worker thread. */
typedef void (*gcd_gen_done_fn)(void *ctx, gcd_gen_outcome outcome, gcd_gen_result *res);

/* Creates srv->proxy and starts its upstream workers (on failure srv->proxy may be left for
 * gcd_generate_free). Stop fails every queued or running call (waiters get 503 shutting_down)
 * and returns when no callback is left to run; free stops, then frees srv->proxy once no
 * request can reach it (after MHD is stopped). Both do nothing without a proxy. */
int gcd_generate_start(gcd_server *srv);
void gcd_generate_stop(gcd_server *srv);
void gcd_generate_free(gcd_server *srv);
/* Runs one request JSON through the cache: hit, coalesced wait, upstream call or bypass. body is
 * copied; tenant (NULL: none) must outlive the call only. background (prewarm): its upstream
 * call waits behind interactive ones and uses at most three quarters of the workers. done is
 * always called exactly once. */
void gcd_generate_submit(gcd_server *srv, const char *body, size_t len, const char *tenant,
                         bool background, gcd_gen_done_fn done, void *ctx);
/* POST /v1/generate with its complete body; suspends the connection while the upstream runs and
 * answers when resumed (MHD calls it again). */
enum MHD_Result gcd_generate_handle(struct MHD_Connection *c, gcd_request *req);
void gcd_generate_request_free(gcd_request *req);

/* upstream.c: one blocking POST of a JSON body to the upstream generator (libcurl). */
typedef enum gcd_upstream_outcome {
    GCD_UPSTREAM_OK = 0,
    GCD_UPSTREAM_ERROR,   /* refused, reset, error status, oversize answer */
    GCD_UPSTREAM_TIMEOUT, /* no complete answer within the timeout */
} gcd_upstream_outcome;
typedef struct gcd_upstream_reply {
    gcd_upstream_outcome outcome;
    void *data; /* malloc'd answer body (OK only) */
    size_t size;
    char content_type[256]; /* the upstream's Content-Type */
    char message[256];      /* why it failed */
    uint64_t duration_ms;
} gcd_upstream_reply;
/* libcurl's global setup and its end: each proxy calls them once, before its workers start and
 * after they stop (libcurl counts the calls, so several servers may each call them, though not
 * from two threads at once). Returns 0 or -1. */
int gcd_upstream_init(void);
void gcd_upstream_cleanup(void);
/* cancel (may be NULL) is polled during the transfer: nonzero aborts it as an error. */
void gcd_upstream_call(const char *url, unsigned timeout_ms, const char *body, size_t len,
                       uint64_t max_bytes, const int *cancel, gcd_upstream_reply *out);

/* prewarm.c: POST /v1/prewarm and GET /v1/jobs/{id}. */
/* Creates srv->prewarm (no thread yet: the first job starts one). Returns 0 or -1. */
int gcd_prewarm_new(gcd_server *srv);
/* After gcd_generate_stop(): joins the starter thread and frees every job and srv->prewarm. */
void gcd_prewarm_free(gcd_server *srv);
enum MHD_Result gcd_prewarm_handle(struct MHD_Connection *c, gcd_request *req);
enum MHD_Result gcd_jobs_handle(struct MHD_Connection *c, gcd_request *req); /* id: req->tail */

/* metrics.c: GET /metrics and the counters only the daemon sees. */
enum MHD_Result gcd_metrics_handle(struct MHD_Connection *c, gcd_request *req);
/* Creates and frees srv->metrics. Returns 0 or -1. */
int gcd_metrics_new(gcd_server *srv);
void gcd_metrics_free(gcd_server *srv);
/* Recording; each takes the server's counters and is thread-safe. */
void gcd_metrics_request(struct gcd_metrics *m, gcd_route_id route, double seconds);
/* A hit the daemon served, for gencache_hits_total{layer,tier}: the library counts hits per layer
 * and per tier but not per pair. */
void gcd_metrics_hit(struct gcd_metrics *m, const char *layer, const char *tier);
void gcd_metrics_coalesced(struct gcd_metrics *m);
/* A connection fastget.c gave to libmicrohttpd (the requests it answered are counted per thread,
 * by gcd_metrics_local_request()). */
void gcd_metrics_fast_handoff(struct gcd_metrics *m);
/* Counters of one thread of its own (fastget.c's), added to the server's at every scrape: the
 * request's duration (route entries) with a fast-path request counted, and a hit, as
 * gcd_metrics_request() and gcd_metrics_hit() count them, without a
 * read-modify-write shared with other threads. gcd_metrics_local_new() returns NULL when out of
 * memory; the counters live until gcd_metrics_free(). Thread-safety: new is safe; the others
 * only from the one thread that owns l. */
struct gcd_metrics_local;
struct gcd_metrics_local *gcd_metrics_local_new(struct gcd_metrics *m);
void gcd_metrics_local_request(struct gcd_metrics_local *l, double seconds);
void gcd_metrics_local_hit(struct gcd_metrics *m, struct gcd_metrics_local *l, const char *layer,
                           const char *tier);
void gcd_metrics_upstream(struct gcd_metrics *m, gcd_upstream_outcome outcome);
/* A generate request that did not use the cache (no seed, or a sensitive prompt). */
void gcd_metrics_bypassed(struct gcd_metrics *m);
/* The coalesced and bypassed generate requests so far. */
void gcd_metrics_counts(struct gcd_metrics *m, uint64_t *coalesced, uint64_t *bypassed);

/* ---- ui.c: the status page and what only it shows ------------------------------------------- */

/* The page, embedded at build time from tools/gencached/ui.html. */
extern const unsigned char gcd_ui_page[];
extern const size_t gcd_ui_page_len;

/* Creates and frees srv->ui. Returns 0 or -1. */
int gcd_ui_new(gcd_server *srv);
void gcd_ui_free(gcd_server *srv);
/* A hit the daemon served: key (as the caller named it) of tenant (NULL: none; must outlive the
 * server, like the config's names) now has `hits` hits as the library counts them (its
 * gencache_meta.hits). Cheap unless the count could enter the top-keys table. Thread-safe. */
void gcd_ui_hit(gcd_server *srv, const char *tenant, const char *key, uint64_t hits);
/* An error reply (reply.c): kept among the latest for the page. req may be NULL. Thread-safe. */
void gcd_ui_error(gcd_server *srv, const gcd_request *req, unsigned status, const char *code,
                  const char *message);
/* The once-a-second tick: every few seconds a sample of each layer's lookups and hits, and the
 * top-keys table loses the keys not hit for a while. */
void gcd_ui_sample(gcd_server *srv, unsigned tick);
/* Adds to an admin's /v1/stats document: gpu_seconds_saved (the layers' cost_ms_saved summed,
 * in seconds), requests {coalesced, bypassed, errors}, top_keys and recent_errors, and with
 * `history` the samples. */
void gcd_ui_stats_json(gcd_server *srv, json_t *doc, bool history);
/* GET, HEAD /ui: the page, for admin tenants and the open mode (403 for others). */
enum MHD_Result gcd_ui_handle(struct MHD_Connection *c, gcd_request *req);

/* ---- lookup.c: POST /v1/lookup and POST /v1/store (gencache/reuse.h) ------------------------ */

/* POST /v1/lookup: {"layer": L, "request": {...}} -> the entry, X-Gencache-Key, X-Gencache-Match;
 * 404 on a miss. */
enum MHD_Result gcd_lookup_handle(struct MHD_Connection *c, gcd_request *req);
/* POST /v1/store: the body is the value; X-Gencache-Layer and X-Gencache-Request name where. */
enum MHD_Result gcd_store_handle(struct MHD_Connection *c, gcd_request *req);
/* The reuse counters as Prometheus text (a new string the caller frees; NULL when out of memory),
 * and as the "reuse" object of /v1/stats (a new reference; NULL when out of memory). */
char *gcd_lookup_metrics(gcd_server *srv);
struct json_t *gcd_lookup_stats_json(gcd_server *srv);
/* The image object {"digest", "phash", "dhash", "width", "height"} of an encoded image (PNG,
 * JPEG, WebP), as JSON text into out. Returns 0, or a library error with a message in err. */
int gcd_image_describe(const void *bytes, size_t len, char *out, size_t size, char *err,
                       size_t esize);
/* True when text (len bytes) is one JSON object. */
bool gcd_json_object_text(const char *text, size_t len);
/* A malloc'd copy of a JSON object's text with its "image" member set to image (JSON text):
 * replaced where it is, else added first; *out_len its length. NULL when out of memory. The
 * text must be a valid JSON object (gcd_json_object_text). */
char *gcd_splice_image(const char *text, size_t len, const char *image, size_t *out_len);

/* The raw text of the top-level member `name` of a valid JSON object (text, len): *off and *n.
 * False when there is none. */
bool gcd_json_member_span(const char *text, size_t len, const char *name, size_t *off, size_t *n);
/* Parses request JSON as /v1/lookup does (no image paths, the token's tenant, *sensitive set
 * when the prompt matches a `sensitive:` rule). NULL after queueing the error in *r. */
gencache_request *gcd_lookup_parse_request(struct MHD_Connection *c, gcd_request *req,
                                           const char *text, size_t len, bool *sensitive,
                                           enum MHD_Result *r);

/* The library caller a request acts as: its token's tenant (NULL in the open mode). */
gencache_caller gcd_caller_of(const gcd_request *req);
/* True when the layer exists; otherwise queues 404 unknown_layer into *r. */
bool gcd_check_layer(struct MHD_Connection *c, gcd_request *req, const char *layer,
                     enum MHD_Result *r);

/* ---- trajectory.c: POST /v1/trajectories and POST /v1/trajectories/lookup ------------------- */

/* POST /v1/trajectories: a multipart form (part "trajectory": layer, request with model and
 * step, embedding; part "latent"; optionally part "embedding", raw) -> 201 {"key", "step",
 * "dim"}. */
enum MHD_Result gcd_trajectory_store_handle(struct MHD_Connection *c, gcd_request *req);
/* POST /v1/trajectories/lookup: an embedding (JSON with base64, or raw with headers) -> the
 * nearest allowed latent with X-Gencache-Key, X-Gencache-Step, X-Gencache-Similarity and
 * X-Gencache-Match "trajectory; step=N; similarity=S"; 404 on a miss; 400 dimension_mismatch. */
enum MHD_Result gcd_trajectory_lookup_handle(struct MHD_Connection *c, gcd_request *req);
/* The trajectory counters as Prometheus text (a new string the caller frees; NULL when out of
 * memory), and as the "trajectory" object of /v1/stats (a new reference). */
char *gcd_trajectory_metrics(gcd_server *srv);
struct json_t *gcd_trajectory_stats_json(gcd_server *srv);

/* ---- upload.c: POST /v1/generate with the image itself ------------------------------------- */

/* An upload read: the request to look up (its image described) and the form to forward. */
typedef struct gcd_upload {
    char *request; /* the request JSON, its image replaced by its digest and signature */
    size_t request_len;
    char *forward; /* what the upstream receives: multipart/form-data, request and image */
    size_t forward_len;
    char forward_type[128]; /* its Content-Type */
    unsigned status;        /* on failure: the HTTP status, error code and message */
    char code[32];
    char message[320];
} gcd_upload;

/* True when a /v1/generate body of this Content-Type carries the image: multipart/form-data,
 * image/png, image/jpeg, image/webp. */
bool gcd_upload_is(const char *content_type);
/* Reads an upload (header_request: X-Gencache-Request, for a raw image body). Returns 0, or -1
 * with up->status, code and message set. Free with gcd_upload_free() either way. */
int gcd_upload_read(const char *content_type, const char *header_request, const char *body,
                    size_t len, gcd_upload *up);
void gcd_upload_free(gcd_upload *up);
/* gcd_generate_submit() of an upload: up->request decides the key, up->forward goes upstream. */
void gcd_generate_submit_upload(gcd_server *srv, const gcd_upload *up, const char *tenant,
                                gcd_gen_done_fn done, void *ctx);
/* gcd_upstream_call() with a body of another Content-Type than application/json. */
void gcd_upstream_call_typed(const char *url, unsigned timeout_ms, const char *content_type,
                             const char *body, size_t len, uint64_t max_bytes, const int *cancel,
                             gcd_upstream_reply *out);

#endif
