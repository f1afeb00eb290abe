/*
 * route.h: the daemon's endpoints as one table: which method on which path reaches which
 * handler, how a request there reads its body, and the 404 and 405 answers for everything else.
 * Routing is a pure function of the request line (and, for an entry key, of the cache's layer
 * registry): no socket and no libmicrohttpd, so every decision is unit-tested on its own
 * (tests/unit/test_gencached_routes.c). http.c applies the decisions; the handlers answer.
 */
#ifndef GENCACHED_ROUTE_H
#define GENCACHED_ROUTE_H

#include "gencache.h"

/* The endpoints of DESIGN.md section 5 the daemon serves. The order is the order of their
 * latency histograms on /metrics. */
typedef enum gcd_route_id {
    GCD_ROUTE_NONE = 0,   /* no endpoint at this path */
    GCD_ROUTE_HEALTH,     /* GET, HEAD /healthz */
    GCD_ROUTE_STATS,      /* GET, HEAD /v1/stats */
    GCD_ROUTE_KEYS,       /* POST /v1/keys */
    GCD_ROUTE_ENTRY,      /* GET, HEAD, PUT, DELETE /v1/entries/{layer}/{hex} */
    GCD_ROUTE_GENERATE,   /* POST /v1/generate */
    GCD_ROUTE_PREWARM,    /* POST /v1/prewarm */
    GCD_ROUTE_JOB,        /* GET, HEAD /v1/jobs/{id} */
    GCD_ROUTE_METRICS,    /* GET, HEAD /metrics */
    GCD_ROUTE_INVALIDATE, /* POST /v1/invalidate, POST /invalidate?key=... */
    GCD_ROUTE_LOOKUP,     /* POST /v1/lookup */
    GCD_ROUTE_STORE,      /* POST /v1/store */
    GCD_ROUTE_UI,         /* GET, HEAD /ui */
    GCD_ROUTE_TRAJ_STORE, /* POST /v1/trajectories */
    GCD_ROUTE_TRAJ_MATCH, /* POST /v1/trajectories/lookup */
    GCD_ROUTE_COUNT
} gcd_route_id;

/* How a request reads its body. */
typedef enum gcd_body {
    GCD_BODY_NONE = 0, /* none is read: what comes is counted and dropped */
    GCD_BODY_SMALL,    /* a JSON request: at most GENCACHE_REQUEST_MAX_BYTES (and max_body) */
    GCD_BODY_LARGE,    /* up to the configured max_body: entry values, prewarm lists */
    GCD_BODY_IF_SENT,  /* SMALL when the request announces a body, else none */
} gcd_body;

/* Where a request line leads. */
typedef struct gcd_route_match {
    gcd_route_id route; /* NONE for an unknown path */
    const char *tail;   /* the {layer}/{hex} or {id} part of the path (points into it); NULL for
                           a path without one */
    unsigned status;    /* 0: the route's handler answers; 404: unknown path; 405: the path
                           does not take this method */
    const char *allow;  /* the methods the path takes ("GET, HEAD"), for Allow; NULL for 404 */
    gcd_body body;      /* how this method on this route reads its body (NONE unless status 0) */
} gcd_route_match;

/* Resolves method (case-sensitive, as HTTP says) and path (without the query). Never fails;
 * out->status says what to answer. Thread-safety: safe. */
void gcd_route_resolve(const char *method, const char *path, gcd_route_match *out);
/* The route's name, the `route` label of gencache_request_duration_seconds: "healthz", "stats",
 * "keys", "entries", "generate", "prewarm", "jobs", "metrics", "invalidate", "lookup", "store",
 * "ui", "trajectories", "trajectories_lookup", and "unknown" for NONE. Thread-safety: safe. */
const char *gcd_route_name(gcd_route_id route);

/* The verdict on an entry key, from a URL or a filter, by the library's rule
 * (gencache_key_check): 0 when it names a layer of cache; 400 with *code "bad_key" when it is
 * malformed (or longer than any key); 404 with *code "unknown_layer" when it is well-formed but
 * its layer is not defined; otherwise 500 with *code "internal" and the library's error in *err.
 * Thread-safety: safe. */
unsigned gcd_route_key_status(gencache *cache, const char *key, const char **code, int *err);

#endif
