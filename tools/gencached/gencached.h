/*
 * gencached.h: what the files of the gencached daemon share. The daemon is a thin HTTP layer
 * over the public API of libgencache (include/gencache.h, nothing else): main.c reads the flags
 * and owns the process, http.c runs libmicrohttpd and routes requests, and one file per group of
 * endpoints turns requests into library calls. Names here are gcd_*; nothing is exported.
 */
#ifndef GENCACHED_H
#define GENCACHED_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sys/socket.h>

#include <microhttpd.h>

#include "gencache.h"

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
    gencache_log_level log_level;
    const char *redis_url;        /* shared Redis tier; NULL: none */
    unsigned redis_timeout_ms;    /* 0: the library's default */
} gcd_config;

/* The running server: one per process. */
typedef struct gcd_server {
    const gcd_config *cfg;
    gencache *cache;
    gencache_keyspace *keyspace; /* the layer recipes POST /v1/keys derives keys with */
    struct MHD_Daemon *mhd;
    uint16_t port;       /* the port actually bound (differs from cfg when it asked 0) */
    uint64_t started_ms; /* wall clock at start, for uptime */
} gcd_server;

/* ---- log.c: timestamped lines on stderr ----------------------------------------------------- */

/* Sets the most verbose level that is written. */
void gcd_log_set_level(gencache_log_level level);
/* Writes "<UTC timestamp> <LEVEL> <message>" as one line to stderr (one write, so lines from
 * several threads never interleave). Thread-safe. */
void gcd_log(gencache_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The library's log callback (gencache_log_fn) and MHD's (MHD_LogCallback). */
void gcd_log_library(void *userdata, gencache_log_level level, const char *message);
void gcd_log_mhd(void *cls, const char *fmt, va_list ap);
/* Wall-clock milliseconds and monotonic nanoseconds. */
uint64_t gcd_now_ms(void);
uint64_t gcd_mono_ns(void);

/* ---- http.c: the server --------------------------------------------------------------------- */

/* Per-request state, created on the first call of the access handler and freed when MHD reports
 * the request complete. */
typedef struct gcd_request {
    gcd_server *srv;
    char method[16];
    char path[160]; /* a prefix of the URL, for the access log */
    int route;      /* GCD_ROUTE_* */
    char *body;     /* uploaded bytes (PUT, POST); NULL until the first byte */
    size_t body_len;
    size_t body_cap;
    uint64_t body_limit;
    uint64_t expected;  /* the announced Content-Length; 0 for a chunked body */
    uint64_t discarded; /* bytes dropped after the body passed its limit */
    bool too_big;       /* past body_limit: the rest is counted and dropped */
    bool no_memory;     /* the body buffer could not grow: dropped likewise */
    bool wants_body;    /* PUT or POST to a route that reads a body */
    unsigned status;    /* the status queued, for the access log */
    uint64_t start_ns;
    void *put; /* entries.c's parsed PUT headers, freed by it */
} gcd_request;

enum {
    GCD_ROUTE_NONE = 0,
    GCD_ROUTE_HEALTH,
    GCD_ROUTE_STATS,
    GCD_ROUTE_KEYS,
    GCD_ROUTE_ENTRY,
};

/* Splits "HOST:PORT" (or "[V6]:PORT") and resolves it; refuses addresses beyond loopback.
 * Returns 0, or -1 after logging why. */
int gcd_listen_resolve(const char *listen, struct sockaddr_storage *ss, socklen_t *len);
/* Binds cfg->addr and starts the worker threads. Returns 0, or -1 after logging why. */
int gcd_http_start(gcd_server *srv);
/* Stops accepting, closes every connection (releasing the handles they held) and joins the
 * threads. */
void gcd_http_stop(gcd_server *srv);

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
/* Queues `resp` (adding nothing), records the status and destroys our reference. */
enum MHD_Result gcd_reply_queue(struct MHD_Connection *c, gcd_request *req, unsigned status,
                                struct MHD_Response *resp);
/* Parses a whole unsigned decimal number ("0".."18446744073709551615", no sign or space).
 * Returns 0 or -1. */
int gcd_parse_u64(const char *s, uint64_t *out);

/* ---- entries.c: /v1/entries/{layer}/{hex} --------------------------------------------------- */

/* Serves GET, HEAD and DELETE (no body). */
enum MHD_Result gcd_entries_handle(struct MHD_Connection *c, gcd_request *req, const char *key);
/* PUT, first call: checks the key and headers before any byte of the body is read, so a bad
 * request is refused at once. Returns MHD_YES with nothing queued to go on reading the body. */
enum MHD_Result gcd_entries_put_begin(struct MHD_Connection *c, gcd_request *req, const char *key,
                                      bool *queued);
/* PUT, body complete: stores it. */
enum MHD_Result gcd_entries_put_end(struct MHD_Connection *c, gcd_request *req, const char *key);
/* Frees what put_begin kept in req->put. */
void gcd_entries_request_free(gcd_request *req);

/* ---- codec.c: X-Gencache-Codec on PUT, ?as= on GET ------------------------------------------ */

/* How a PUT asked its tensor to be stored. */
typedef struct gcd_codec_args {
    gencache_codec codec;         /* NONE: as given */
    gencache_quant_options quant; /* the int8 codecs' options */
} gcd_codec_args;

/* Reads X-Gencache-Codec (and -Axis, -Group-Size) for a PUT whose dtype and shape are parsed in
 * m. Returns 0, or -1 with a message for a 400 in err. */
int gcd_codec_parse_put(struct MHD_Connection *c, const gencache_meta *m, gcd_codec_args *out,
                        char *err, size_t err_size);
/* Encodes a validated tensor body; *out (malloc'd) is what to store and m is updated to describe
 * it (ctype receives the marked content type of an int8 payload). Returns 0 or a GENCACHE_E*. */
int gcd_codec_encode(const gcd_codec_args *a, gencache_meta *m, const void *body, size_t len,
                     void **out, size_t *out_len, char *ctype, size_t ctype_size);

/* A tensor decoded for a GET. */
typedef struct gcd_decoded {
    void *data; /* malloc'd */
    size_t size;
    gencache_dtype dtype;
    uint32_t ndim;
    int64_t shape[GENCACHE_MAX_DIMS];
    gencache_codec codec;   /* how it was stored (NONE for a plain tensor) */
    char content_type[256]; /* the entry's, without the codec mark */
} gcd_decoded;

/* True when a GET of this entry must be decoded: ?as= given, or an int8 payload. */
bool gcd_codec_needed(const gencache_meta *m, const char *as);
/* Decodes the entry's bytes to `as` (NULL: the tensor's original dtype). Returns 0, or a
 * GENCACHE_E* with a message in err. */
int gcd_codec_decode(const gencache_meta *m, const void *data, size_t size, const char *as,
                     gcd_decoded *out, char *err, size_t err_size);

/* ---- stats.c and keys.c --------------------------------------------------------------------- */

enum MHD_Result gcd_stats_handle(struct MHD_Connection *c, gcd_request *req);
enum MHD_Result gcd_keys_handle(struct MHD_Connection *c, gcd_request *req);

#endif
