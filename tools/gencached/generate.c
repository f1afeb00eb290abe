/*
 * generate.c: the caching proxy behind POST /v1/generate (and prewarm). A request's key is its
 * result-layer key; a hit is answered from the cache's own bytes, a miss becomes a "flight": one
 * upstream call on the proxy's worker threads. Which request calls the upstream is the library's
 * decision (gencache_claim_async, include/gencache/coalesce.h): the one that gets the key's lease
 * flies, and every identical request arriving meanwhile waits in the library's flight table and
 * is answered when the lease ends. Invariant: a flight with a key holds that key's lease and ends
 * it exactly once, after storing the answer, so for one key the upstream is called once at a
 * time. No lock of this file is held across a cache call; HTTP requests wait with their
 * connection suspended, never blocking an MHD worker thread.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "gencached.h"

#define RESULT_LAYER             "result"
#define DEFAULT_TIMEOUT_MS       120000u
#define DEFAULT_UPSTREAM_WORKERS 16u
#define STOP_DRAIN_NS            (3ull * 1000000000ull) /* longest wait for waiters' answers */

/* One upstream call for one request, or a request waiting in the library for the key's lease
 * (then it becomes a flight if the lease passes to it). */
typedef struct flight {
    char key[GENCACHE_KEY_MAX]; /* "" for a bypass: no lease, never stored */
    char *body;
    size_t len;
    char *model;  /* stored with the result, for invalidation by model */
    char *tenant; /* owner of the stored result */
    gcd_gen_done_fn done; /* the request this flight answers */
    void *ctx;
    gcd_gen_outcome outcome; /* what it will be told on success: MISS or BYPASS */
    gencache_lease *lease;   /* the key's lease while this flight holds it */
    struct flight *qnext;    /* in a queue */
    bool background;         /* prewarm work: queued behind interactive requests */
} flight;

static struct {
    pthread_mutex_t mu; /* the queues, stopping's writes */
    pthread_cond_t cv;  /* the queue has work, or stopping */
    gcd_server *srv;
    flight *qhead; /* interactive requests, first come first served */
    flight **qtail;
    flight *bhead; /* background (prewarm) work: taken only when no interactive request
                      waits, and by at most bg_limit workers at once, so that a backlog never
                      occupies every worker */
    flight **btail;
    unsigned bg_running;
    unsigned bg_limit;
    pthread_t *threads;
    unsigned n_threads;
    int stopping; /* read atomically by the upstream calls (cancel) */
    bool running;
    int suspended; /* HTTP requests suspended and not yet completed (atomic) */
} P = {.mu = PTHREAD_MUTEX_INITIALIZER,
       .cv = PTHREAD_COND_INITIALIZER,
       .qtail = &P.qhead,
       .btail = &P.bhead};

/* The answer of the flight this thread is ending. The library calls the waiters' callbacks on the
 * thread that ends a flight, before gencache_lease_fulfil/fail returns: a waiter whose wait ends
 * in an error (the upstream failed, or the answer could not be stored) takes this answer, so it
 * gets the very status, message or bytes the flight's own request got. */
typedef struct ending {
    const char *key;
    gcd_gen_result *r; /* NULL: out of memory */
} ending;
static __thread const ending *cur_ending;

/* ---- results ------------------------------------------------------------------------------ */

static gcd_gen_result *result_retain(gcd_gen_result *r)
{
    if (r)
        __atomic_add_fetch(&r->refs, 1, __ATOMIC_RELAXED);
    return r;
}

static void result_release(gcd_gen_result *r)
{
    if (!r || __atomic_sub_fetch(&r->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    gencache_handle_release(r->handle);
    free(r->owned);
    free(r);
}

static gcd_gen_result *result_new(void)
{
    gcd_gen_result *r = calloc(1, sizeof *r);
    if (r) {
        r->refs = 1;
        r->status = 200;
        r->data = "";
    }
    return r;
}

/* A failure answer; NULL only when even that cannot be allocated. */
static gcd_gen_result *result_error(unsigned status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static gcd_gen_result *result_error(unsigned status, const char *code, const char *fmt, ...)
{
    gcd_gen_result *r = result_new();
    if (!r)
        return NULL;
    r->status = status;
    r->error_code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->message, sizeof r->message, fmt, ap);
    va_end(ap);
    return r;
}

/* Calls done with an error and drops the result. */
static void fail(gcd_gen_done_fn done, void *ctx, gcd_gen_result *r)
{
    static gcd_gen_result oom = {.refs = 1 << 30,
                                 .status = 500,
                                 .error_code = "internal",
                                 .message = "out of memory",
                                 .data = ""};
    done(ctx, GCD_GEN_ERROR, r ? r : &oom);
    if (r)
        result_release(r);
}

/* ---- the worker pool ---------------------------------------------------------------------- */

static void flight_free(flight *f)
{
    free(f->body);
    free(f->model);
    free(f->tenant);
    free(f);
}

/* The library code that tells a waiter why the flight ended without a stored answer. */
static int lease_error(const gcd_gen_result *r)
{
    if (!r)
        return GENCACHE_ENOMEM;
    if (r->status == 504)
        return GENCACHE_ETIMEDOUT;
    if (r->status == 503)
        return GENCACHE_EUNAVAILABLE;
    return GENCACHE_EIO;
}

/* Stores a fresh answer like a PUT of its tenant would be (the lease stores it on the tenant's
 * behalf: its namespace, its quota; pinned when preferred, TTL shortened under pressure) and ends
 * the flight's lease. A failure to store is logged; the answer goes out all the same, to the
 * waiters too (cur_ending). */
static void store(gcd_server *srv, flight *f, const gcd_gen_result *r)
{
    gencache_meta m;
    gencache_meta_init(&m);
    m.content_type = r->content_type;
    m.model = f->model;
    m.cost_ms = r->cost_ms;
    m.pinned = gcd_preferred(srv, f->key);
    m.ttl_ms = gcd_pressure_ttl_ms(srv, f->tenant, RESULT_LAYER, 0);
    int err = gencache_lease_fulfil(f->lease, r->data, r->size, &m);
    if (err != 0)
        gcd_log(GENCACHE_LOG_WARN, "generate: storing %s (%zu bytes): %s; answered anyway", f->key,
                r->size,
                err == GENCACHE_ELIMIT ? "over the tenant's quota" : gencache_strerror(err));
}

/* Ends f's lease (storing a good answer), answers f's request with r, and frees f. */
static void flight_finish(flight *f, gcd_gen_result *r)
{
    if (f->lease) {
        ending e = {f->key, r};
        const ending *outer = cur_ending; /* a waiter's callback may end a flight of its own */
        cur_ending = &e;
        if (r && r->status == 200)
            store(P.srv, f, r);
        else
            gencache_lease_fail(f->lease, lease_error(r));
        f->lease = NULL;
        cur_ending = outer;
    }
    if (r && r->status == 200)
        f->done(f->ctx, f->outcome, r);
    else
        fail(f->done, f->ctx, result_retain(r));
    result_release(r);
    flight_free(f);
}

static gcd_gen_result *call_upstream(gcd_server *srv, flight *f)
{
    const gcd_config *cfg = srv->cfg;
    unsigned timeout = cfg->upstream_timeout_ms ? cfg->upstream_timeout_ms : DEFAULT_TIMEOUT_MS;
    gcd_upstream_reply rep;
    gcd_upstream_call(cfg->upstream_url, timeout, f->body, f->len, cfg->max_body, &P.stopping,
                      &rep);
    gcd_metrics_upstream(rep.outcome);
    if (rep.outcome == GCD_UPSTREAM_TIMEOUT)
        return result_error(504, "upstream_timeout", "%s", rep.message);
    if (rep.outcome != GCD_UPSTREAM_OK) {
        if (__atomic_load_n(&P.stopping, __ATOMIC_ACQUIRE))
            return result_error(503, "shutting_down", "%s", rep.message);
        return result_error(502, "upstream_error", "%s", rep.message);
    }
    gcd_gen_result *r = result_new();
    if (!r) {
        free(rep.data);
        return NULL;
    }
    r->owned = rep.data;
    r->data = rep.data;
    r->size = rep.size;
    r->cost_ms = rep.duration_ms;
    snprintf(r->content_type, sizeof r->content_type, "%s", rep.content_type);
    snprintf(r->key, sizeof r->key, "%s", f->key);
    return r;
}

static void *worker_main(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&P.mu);
        while (!P.stopping && !P.qhead && !(P.bhead && P.bg_running < P.bg_limit))
            pthread_cond_wait(&P.cv, &P.mu);
        flight *f = NULL;
        bool bg = false;
        if (P.qhead) {
            f = P.qhead;
            P.qhead = f->qnext;
            if (!P.qhead)
                P.qtail = &P.qhead;
        } else if (P.bhead && P.bg_running < P.bg_limit) {
            f = P.bhead;
            P.bhead = f->qnext;
            if (!P.bhead)
                P.btail = &P.bhead;
            P.bg_running++;
            bg = true;
        }
        if (!f) { /* stopping, and nothing left to run */
            pthread_mutex_unlock(&P.mu);
            return NULL;
        }
        pthread_mutex_unlock(&P.mu);
        flight_finish(f, call_upstream(P.srv, f));
        if (bg) {
            pthread_mutex_lock(&P.mu);
            P.bg_running--;
            pthread_cond_broadcast(&P.cv);
            pthread_mutex_unlock(&P.mu);
        }
    }
}

int gcd_generate_start(gcd_server *srv)
{
    const gcd_config *cfg = srv->cfg;
    if (gcd_upstream_init() != 0) {
        gcd_log(GENCACHE_LOG_ERROR, "cannot initialize libcurl");
        return -1;
    }
    unsigned n = cfg->upstream_concurrency ? cfg->upstream_concurrency : DEFAULT_UPSTREAM_WORKERS;
    P.srv = srv;
    P.stopping = 0;
    P.threads = calloc(n, sizeof *P.threads);
    if (!P.threads)
        return -1;
    for (unsigned i = 0; i < n; i++) {
        if (pthread_create(&P.threads[i], NULL, worker_main, NULL) != 0) {
            gcd_log(GENCACHE_LOG_ERROR, "cannot start the upstream workers");
            gcd_generate_stop();
            return -1;
        }
        P.n_threads++;
    }
    /* Keep a quarter of the workers (at least one) for interactive requests. */
    P.bg_limit = P.n_threads > 1 ? P.n_threads - (P.n_threads / 4 ? P.n_threads / 4 : 1) : 1;
    P.running = true;
    return 0;
}

void gcd_generate_stop(void)
{
    pthread_mutex_lock(&P.mu);
    __atomic_store_n(&P.stopping, 1, __ATOMIC_RELEASE);
    P.running = false;
    flight *queued = P.qhead;
    P.qhead = NULL;
    P.qtail = &P.qhead;
    /* Background work goes after the interactive requests, in one list. */
    flight **end = &queued;
    while (*end)
        end = &(*end)->qnext;
    *end = P.bhead;
    P.bhead = NULL;
    P.btail = &P.bhead;
    pthread_cond_broadcast(&P.cv);
    pthread_mutex_unlock(&P.mu);
    for (flight *f = queued, *next; f; f = next) {
        next = f->qnext;
        flight_finish(f, result_error(503, "shutting_down", "the daemon is shutting down"));
    }
    for (unsigned i = 0; i < P.n_threads; i++)
        pthread_join(P.threads[i], NULL);
    /* Every waiter is resumed now; give MHD the moment it needs to send their answers before
     * it is stopped and closes the connections. */
    uint64_t deadline = gcd_mono_ns() + STOP_DRAIN_NS;
    while (__atomic_load_n(&P.suspended, __ATOMIC_ACQUIRE) > 0 && gcd_mono_ns() < deadline)
        nanosleep(&(struct timespec){.tv_nsec = 5000000}, NULL);
    free(P.threads);
    P.threads = NULL;
    if (P.n_threads)
        gcd_upstream_cleanup();
    P.n_threads = 0;
}

/* ---- submitting --------------------------------------------------------------------------- */

/* What the key API does not say about a request: whether it names its image by a path on this
 * machine (refused: the daemon never opens a file because a client named it), and whether its
 * prompt or negative_prompt matches a sensitive-content rule (never cached). */
static void inspect(gcd_server *srv, const char *body, size_t len, bool *image_path,
                    bool *sensitive)
{
    json_t *doc = json_loadb(body, len, 0, NULL);
    *image_path = json_object_get(json_object_get(doc, "image"), "path") != NULL;
    *sensitive = gcd_sensitive(srv, json_string_value(json_object_get(doc, "prompt"))) ||
                 gcd_sensitive(srv, json_string_value(json_object_get(doc, "negative_prompt")));
    json_decref(doc);
}


static gcd_gen_result *parse_error(int err, const char *msg)
{
    const char *detail = msg[0] ? msg : gencache_strerror(err);
    switch (err) {
    case GENCACHE_EINVAL:
    case GENCACHE_EPARSE:
    case GENCACHE_EUNSUPPORTED:
        return result_error(400, "bad_request", "request: %s", detail);
    case GENCACHE_ELIMIT:
        return result_error(413, "limit", "request: %s", detail);
    default:
        return result_error(500, "internal", "parsing the request: %s", detail);
    }
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

/* Queues a flight for a worker. Called with P.mu held; false when stopping. */
static bool enqueue_locked(flight *f)
{
    if (P.stopping || !P.running)
        return false;
    f->qnext = NULL;
    if (f->background) {
        *P.btail = f;
        P.btail = &f->qnext;
    } else {
        *P.qtail = f;
        P.qtail = &f->qnext;
    }
    pthread_cond_signal(&P.cv);
    return true;
}

/* Queues f, or answers it 503 when the daemon is stopping. */
static void fly(flight *f)
{
    pthread_mutex_lock(&P.mu);
    bool queued = enqueue_locked(f);
    pthread_mutex_unlock(&P.mu);
    if (!queued)
        flight_finish(f, result_error(503, "shutting_down", "the daemon is shutting down"));
}

static flight *flight_new(const char *key, const char *body, size_t len, const char *model,
                          const char *tenant, gcd_gen_done_fn done, void *ctx,
                          gcd_gen_outcome outcome)
{
    flight *f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    snprintf(f->key, sizeof f->key, "%s", key);
    f->body = malloc(len ? len : 1);
    f->len = len;
    f->model = dup_or_null(model);
    f->tenant = dup_or_null(tenant);
    if (!f->body || (model && !f->model) || (tenant && !f->tenant)) {
        flight_free(f);
        return NULL;
    }
    memcpy(f->body, body, len);
    f->done = done;
    f->ctx = ctx;
    f->outcome = outcome;
    return f;
}

static gcd_gen_result *result_from_handle(gencache_handle *h)
{
    gcd_gen_result *r = result_new();
    if (!r) {
        gencache_handle_release(h);
        return NULL;
    }
    const gencache_meta *m = gencache_handle_meta(h);
    r->handle = h;
    r->data = gencache_handle_data(h);
    r->size = gencache_handle_size(h);
    r->cost_ms = m->cost_ms;
    snprintf(r->content_type, sizeof r->content_type, "%s",
             m->content_type && *m->content_type ? m->content_type : "application/octet-stream");
    snprintf(r->key, sizeof r->key, "%s", m->key ? m->key : "");
    snprintf(r->tier, sizeof r->tier, "%s", m->tier ? m->tier : "");
    return r;
}

/* Answers from the cache's bytes: a hit, or the entry an identical request's flight stored. */
static void serve_handle(gencache_handle *h, gcd_gen_outcome outcome, gcd_gen_done_fn done,
                         void *ctx)
{
    gcd_gen_result *r = result_from_handle(h);
    if (!r) {
        fail(done, ctx, NULL);
        return;
    }
    if (outcome == GCD_GEN_HIT)
        gcd_metrics_hit(RESULT_LAYER, r->tier);
    done(ctx, outcome, r);
    result_release(r);
}

/* Moves the queued background flight for key, if any, to the interactive queue: an interactive
 * request now waits for it. */
static void promote(const char *key)
{
    pthread_mutex_lock(&P.mu);
    flight **pp = &P.bhead;
    while (*pp && strcmp((*pp)->key, key) != 0)
        pp = &(*pp)->qnext;
    flight *g = *pp;
    if (g) {
        *pp = g->qnext;
        if (P.btail == &g->qnext)
            P.btail = pp;
        g->background = false;
        g->qnext = NULL;
        *P.qtail = g;
        P.qtail = &g->qnext;
    }
    pthread_mutex_unlock(&P.mu);
}

/* How a request that waited for an identical one's flight is answered (gencache_claim_done_fn):
 * with the stored entry, by flying itself when the lease passed to it, or with the flight's own
 * answer when it ended without storing one. */
static void on_claim(void *userdata, int status, const gencache_claim_result *res)
{
    flight *f = userdata;
    if (status == GENCACHE_OK && res->kind == GENCACHE_CLAIM_HIT) {
        serve_handle(res->handle, GCD_GEN_COALESCED, f->done, f->ctx);
        flight_free(f);
        return;
    }
    if (status == GENCACHE_OK && res->kind == GENCACHE_CLAIM_LEASE) {
        f->lease = res->lease;
        fly(f);
        return;
    }
    gcd_gen_result *r;
    if (cur_ending && strcmp(cur_ending->key, f->key) == 0)
        r = result_retain(cur_ending->r);
    else if (status == GENCACHE_EUNAVAILABLE)
        r = result_error(503, "shutting_down", "the daemon is shutting down");
    else
        r = result_error(502, "upstream_error", "waiting for an identical request: %s",
                         gencache_strerror(status));
    if (r && r->status == 200)
        f->done(f->ctx, GCD_GEN_COALESCED, r);
    else
        fail(f->done, f->ctx, result_retain(r));
    result_release(r);
    flight_free(f);
}

/* A cacheable request: a hit, the key's lease (this request calls the upstream), or a wait for
 * the request that holds it. The lookup and the wait are the library's; no lock is held here. */
static void claim_key(gcd_server *srv, const char *key, const char *body, size_t len,
                      const char *model, const char *tenant, bool background, gcd_gen_done_fn done,
                      void *ctx)
{
    flight *f = flight_new(key, body, len, model, tenant, done, ctx, GCD_GEN_MISS);
    if (!f) {
        fail(done, ctx, NULL);
        return;
    }
    f->background = background;
    gencache_claim_options o;
    gencache_claim_options_init(&o);
    o.tenant = tenant; /* the claim looks in, and stores to, the tenant's own namespace */
    /* Every holder is one of our flights and ends its lease when its upstream call ends (the
     * call has its own timeout), however long it waited in the queue: no lease timeout, and a
     * waiter waits as long as that takes; stopping ends every flight. */
    o.lease_timeout_ms = 0;
    o.wait_timeout_ms = UINT32_MAX;
    gencache_claim_result res;
    int err = gencache_claim_async(srv->cache, key, &o, on_claim, f, &res);
    if (err != 0) {
        flight_free(f);
        fail(done, ctx,
             result_error(500, "internal", "looking up %s: %s", key, gencache_strerror(err)));
        return;
    }
    if (res.kind == GENCACHE_CLAIM_HIT) { /* the library counted it for the tenant */
        flight_free(f);
        serve_handle(res.handle, GCD_GEN_HIT, done, ctx);
    } else if (res.kind == GENCACHE_CLAIM_LEASE) {
        f->lease = res.lease;
        if (!srv->cfg->upstream_url)
            flight_finish(f, result_error(503, "no_upstream",
                                          "no upstream generator is configured (--upstream URL "
                                          "or upstream.url)"));
        else
            fly(f);
    } else {
        /* f belongs to on_claim now, which may already have run: use only our own arguments. */
        gcd_metrics_coalesced();
        if (!background)
            promote(key);
    }
}

void gcd_generate_submit(gcd_server *srv, const char *body, size_t len, const char *tenant,
                         bool background, gcd_gen_done_fn done, void *ctx)
{
    if (!body)
        body = "";
    bool image_path, sensitive;
    inspect(srv, body, len, &image_path, &sensitive);
    if (image_path) {
        fail(done, ctx,
             result_error(400, "bad_request",
                          "request: image paths are not accepted over HTTP; send {\"digest\": "
                          "\"sha256:<hex>\"} (gencache imgid FILE prints it)"));
        return;
    }
    gencache_request *r = NULL;
    char msg[GENCACHE_ERRMSG_MAX] = "";
    int err = gencache_request_parse_ex(srv->keyspace, body, len, 0, &r, msg, sizeof msg);
    if (err != 0) {
        fail(done, ctx, parse_error(err, msg));
        return;
    }
    if (tenant && (err = gencache_request_set_tenant(r, tenant)) != 0) {
        gencache_request_free(r);
        fail(done, ctx,
             result_error(500, "internal", "setting the tenant: %s", gencache_strerror(err)));
        return;
    }
    char key[GENCACHE_KEY_MAX];
    err = gencache_request_key(r, RESULT_LAYER, key, sizeof key);
    if (err != 0 && err != GENCACHE_EUNCACHEABLE) {
        gencache_request_free(r);
        fail(done, ctx,
             result_error(500, "internal", "deriving the key: %s (%s)", gencache_strerror(err),
                          gencache_errname(err)));
        return;
    }
    if (err == 0 && !sensitive) {
        claim_key(srv, key, body, len, gencache_request_model(r), tenant, background, done, ctx);
        gencache_request_free(r);
        return;
    }
    gencache_request_free(r);
    if (!srv->cfg->upstream_url) {
        fail(done, ctx,
             result_error(503, "no_upstream",
                          "no upstream generator is configured (--upstream URL or upstream.url)"));
        return;
    }
    flight *f = flight_new("", body, len, NULL, NULL, done, ctx, GCD_GEN_BYPASS);
    if (!f) {
        fail(done, ctx, NULL);
        return;
    }
    f->background = background;
    fly(f);
}

/* ---- POST /v1/generate -------------------------------------------------------------------- */

/* A request's wait: filled by the done callback, read when MHD resumes the connection. */
typedef struct gen_state {
    pthread_mutex_t mu;
    struct MHD_Connection *c;
    bool suspended;
    bool done;
    gcd_gen_outcome outcome;
    gcd_gen_result *res;
} gen_state;

static void http_done(void *ctx, gcd_gen_outcome outcome, gcd_gen_result *res)
{
    gen_state *st = ctx;
    pthread_mutex_lock(&st->mu);
    st->outcome = outcome;
    st->res = result_retain(res);
    st->done = true;
    bool resume = st->suspended;
    struct MHD_Connection *c = st->c;
    pthread_mutex_unlock(&st->mu);
    /* st may be freed as soon as the connection runs again: touch nothing after this. */
    if (resume)
        MHD_resume_connection(c);
}

void gcd_generate_request_free(gcd_request *req)
{
    gen_state *st = req->gen;
    if (!st)
        return;
    req->gen = NULL;
    if (st->suspended)
        __atomic_sub_fetch(&P.suspended, 1, __ATOMIC_RELEASE);
    result_release(st->res);
    pthread_mutex_destroy(&st->mu);
    free(st);
}

static void release_result(void *cls)
{
    result_release(cls);
}

static const char *outcome_name(gcd_gen_outcome o)
{
    switch (o) {
    case GCD_GEN_HIT:
        return "hit";
    case GCD_GEN_MISS:
        return "miss";
    case GCD_GEN_COALESCED:
        return "coalesced";
    case GCD_GEN_BYPASS:
        return "bypass";
    default:
        return "error";
    }
}

static enum MHD_Result reply(struct MHD_Connection *c, gcd_request *req, gen_state *st)
{
    gcd_gen_result *r = st->res;
    if (r->status != 200)
        return gcd_reply_error(c, req, r->status, r->error_code ? r->error_code : "internal", "%s",
                               r->message);
    struct MHD_Response *resp = MHD_create_response_from_buffer_with_free_callback_cls(
        r->size, (void *)r->data, release_result, result_retain(r));
    if (!resp) {
        result_release(r);
        return MHD_NO;
    }
    char buf[32];
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r->content_type);
    MHD_add_response_header(resp, "X-Gencache", outcome_name(st->outcome));
    if (r->key[0])
        MHD_add_response_header(resp, "X-Gencache-Key", r->key);
    if (r->tier[0])
        MHD_add_response_header(resp, "X-Gencache-Tier", r->tier);
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)r->cost_ms);
    MHD_add_response_header(resp, "X-Gencache-Cost-Ms", buf);
    return gcd_reply_queue(c, req, MHD_HTTP_OK, resp);
}

enum MHD_Result gcd_generate_handle(struct MHD_Connection *c, gcd_request *req)
{
    gen_state *st = req->gen;
    if (!st) {
        st = calloc(1, sizeof *st);
        if (!st)
            return gcd_reply_gencache(c, req, GENCACHE_ENOMEM, "starting the request");
        pthread_mutex_init(&st->mu, NULL);
        st->c = c;
        req->gen = st;
        gcd_generate_submit(req->srv, req->body, req->body_len, req->tenant, false, http_done,
                            st);
        pthread_mutex_lock(&st->mu);
        if (!st->done) {
            /* Answered from the callback's thread: MHD calls us again once resumed. */
            st->suspended = true;
            __atomic_add_fetch(&P.suspended, 1, __ATOMIC_RELAXED);
            MHD_suspend_connection(c);
            pthread_mutex_unlock(&st->mu);
            return MHD_YES;
        }
        pthread_mutex_unlock(&st->mu);
    }
    pthread_mutex_lock(&st->mu);
    bool done = st->done;
    pthread_mutex_unlock(&st->mu);
    if (!done)
        return MHD_YES;
    return reply(c, req, st);
}
