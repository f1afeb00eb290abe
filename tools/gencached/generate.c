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
    gcd_server *srv;
    char key[GENCACHE_KEY_MAX]; /* "" for a bypass: no lease, never stored */
    char *body;
    size_t len;
    char *content_type;   /* of body as forwarded upstream; NULL: application/json */
    char *model;          /* stored with the result, for invalidation by model */
    char *tenant;         /* owner of the stored result */
    gcd_gen_done_fn done; /* the request this flight answers */
    void *ctx;
    gcd_gen_outcome outcome; /* what it will be told on success: MISS or BYPASS */
    gencache_lease *lease;   /* the key's lease while this flight holds it */
    struct flight *qnext;    /* in a queue */
    struct tenant_queue *tq; /* its tenant's interactive queue (for its share of workers) */
    uint64_t seq;            /* arrival order, between tenants */
    bool background;         /* prewarm work: queued behind interactive requests */
} flight;

/* One tenant's interactive requests waiting for an upstream worker, and how many of its calls
 * run. The open mode (no tenants) and requests of no known tenant share one. */
typedef struct tenant_queue {
    const char *name; /* points into the config; NULL: the open mode's queue */
    unsigned weight;  /* by priority: high 4, normal 2, batch 1 */
    unsigned running; /* its interactive calls on workers now */
    flight *head;
    flight **tail;
} tenant_queue;

/* The answer of a flight a thread is ending. The library calls the waiters' callbacks on the
 * thread that ends a flight, before gencache_lease_fulfil/fail returns: a waiter whose wait ends
 * in an error (the upstream failed, or the answer could not be stored) takes this answer, so it
 * gets the very status, message or bytes the flight's own request got. A waiter's callback may
 * end a flight of its own, so a thread can be ending several: the innermost is found first. */
typedef struct ending {
    const char *key;
    gcd_gen_result *r; /* NULL: out of memory */
    pthread_t thread;  /* the thread ending it */
    struct ending *next;
} ending;

/* One server's proxy (srv->proxy). */
struct gcd_proxy {
    pthread_mutex_t mu; /* the queues, stopping's writes, endings */
    pthread_cond_t cv;  /* the queue has work, or stopping */
    gcd_server *srv;
    tenant_queue *tqs; /* interactive requests, one queue per tenant: a free worker takes the
                          head of the queue whose tenant runs the fewest calls for its weight,
                          and no tenant runs more than tenant_cap at once, so one tenant's slow
                          or hanging calls never take every worker from the others */
    size_t n_tqs;
    unsigned tenant_cap; /* 0: no cap (fewer than two tenants, or one worker) */
    uint64_t seq;
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
    int suspended;      /* HTTP requests suspended and not yet completed (atomic) */
    bool curl;          /* libcurl's global state is initialized (gcd_upstream_init) */
    bool stopped;       /* gcd_generate_stop() has run */
    ending *endings;    /* flights being ended, innermost first */
    gcd_gen_result oom; /* the answer when not even an error can be allocated; never freed */
};

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
static void fail(struct gcd_proxy *p, gcd_gen_done_fn done, void *ctx, gcd_gen_result *r)
{
    done(ctx, GCD_GEN_ERROR, r ? r : &p->oom);
    if (r)
        result_release(r);
}

/* ---- the worker pool ---------------------------------------------------------------------- */

static void flight_free(flight *f)
{
    free(f->body);
    free(f->content_type);
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
 * waiters too (the proxy's endings). */
static void store(gcd_server *srv, flight *f, const gcd_gen_result *r)
{
    gencache_meta m;
    gencache_meta_init(&m);
    m.content_type = r->content_type;
    m.model = f->model;
    m.cost_ms = r->cost_ms;
    int err = gencache_lease_fulfil(f->lease, r->data, r->size, &m);
    if (err != 0)
        gcd_log(&srv->log, GENCACHE_LOG_WARN,
                "generate: storing %s (%zu bytes): %s; answered anyway", f->key, r->size,
                err == GENCACHE_ELIMIT ? "over the tenant's quota" : gencache_strerror(err));
}

/* Ends f's lease (storing a good answer), answers f's request with r, and frees f. */
static void flight_finish(flight *f, gcd_gen_result *r)
{
    struct gcd_proxy *p = f->srv->proxy;
    if (f->lease) {
        ending e = {f->key, r, pthread_self(), NULL};
        pthread_mutex_lock(&p->mu);
        e.next = p->endings;
        p->endings = &e;
        pthread_mutex_unlock(&p->mu);
        if (r && r->status == 200)
            store(f->srv, f, r);
        else
            gencache_lease_fail(f->lease, lease_error(r));
        f->lease = NULL;
        pthread_mutex_lock(&p->mu);
        ending **pp = &p->endings;
        while (*pp != &e)
            pp = &(*pp)->next;
        *pp = e.next;
        pthread_mutex_unlock(&p->mu);
    }
    if (r && r->status == 200)
        f->done(f->ctx, f->outcome, r);
    else
        fail(p, f->done, f->ctx, result_retain(r));
    result_release(r);
    flight_free(f);
}

static gcd_gen_result *call_upstream(gcd_server *srv, flight *f)
{
    const gcd_config *cfg = srv->cfg;
    struct gcd_proxy *p = srv->proxy;
    unsigned timeout = cfg->upstream_timeout_ms ? cfg->upstream_timeout_ms : DEFAULT_TIMEOUT_MS;
    gcd_upstream_reply rep;
    gcd_upstream_call_typed(cfg->upstream_url, timeout, f->content_type, f->body, f->len,
                            cfg->max_body, &p->stopping, &rep);
    gcd_metrics_upstream(srv->metrics, rep.outcome);
    if (rep.outcome == GCD_UPSTREAM_TIMEOUT)
        return result_error(504, "upstream_timeout", "%s", rep.message);
    if (rep.outcome != GCD_UPSTREAM_OK) {
        if (__atomic_load_n(&p->stopping, __ATOMIC_ACQUIRE))
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

/* The next interactive request a free worker takes: the head of the queue whose tenant runs
 * the fewest calls for its weight (ties: the earlier arrival), among tenants under the cap.
 * Called with p->mu held; NULL when none may run now. */
static flight *take_interactive(struct gcd_proxy *p)
{
    tenant_queue *best = NULL;
    for (size_t i = 0; i < p->n_tqs; i++) {
        tenant_queue *q = &p->tqs[i];
        if (!q->head || (p->tenant_cap && q->running >= p->tenant_cap))
            continue;
        uint64_t mine = (uint64_t)(q->running + 1) * (best ? best->weight : 1);
        uint64_t theirs = best ? (uint64_t)(best->running + 1) * q->weight : 0;
        if (!best || mine < theirs || (mine == theirs && q->head->seq < best->head->seq))
            best = q;
    }
    if (!best)
        return NULL;
    flight *f = best->head;
    best->head = f->qnext;
    if (!best->head)
        best->tail = &best->head;
    best->running++;
    return f;
}

static void *worker_main(void *arg)
{
    struct gcd_proxy *p = arg;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        flight *f = NULL;
        bool bg = false;
        while (!p->stopping && !(f = take_interactive(p)) &&
               !(p->bhead && p->bg_running < p->bg_limit))
            pthread_cond_wait(&p->cv, &p->mu);
        if (!f && p->bhead && p->bg_running < p->bg_limit) { /* no interactive one may run */
            f = p->bhead;
            p->bhead = f->qnext;
            if (!p->bhead)
                p->btail = &p->bhead;
            p->bg_running++;
            bg = true;
        }
        if (!f) { /* stopping, and nothing left to run */
            pthread_mutex_unlock(&p->mu);
            return NULL;
        }
        pthread_mutex_unlock(&p->mu);
        tenant_queue *tq = f->tq;
        flight_finish(f, call_upstream(p->srv, f));
        pthread_mutex_lock(&p->mu);
        if (bg)
            p->bg_running--;
        else
            tq->running--;
        pthread_cond_broadcast(&p->cv); /* a tenant at its cap may run again */
        pthread_mutex_unlock(&p->mu);
    }
}

int gcd_generate_start(gcd_server *srv)
{
    const gcd_config *cfg = srv->cfg;
    struct gcd_proxy *p = calloc(1, sizeof *p);
    if (!p)
        return -1;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->srv = srv;
    p->btail = &p->bhead;
    p->oom = (gcd_gen_result){.refs = 1 << 30, .status = 500, .error_code = "internal", .data = ""};
    snprintf(p->oom.message, sizeof p->oom.message, "out of memory");
    srv->proxy = p;
    /* One queue per configured tenant, and the last for the open mode (or an unknown one). */
    p->tqs = calloc(cfg->n_tenants + 1, sizeof *p->tqs);
    if (!p->tqs)
        return -1;
    p->n_tqs = cfg->n_tenants + 1;
    for (size_t i = 0; i < p->n_tqs; i++) {
        tenant_queue *q = &p->tqs[i];
        q->name = i < cfg->n_tenants ? cfg->tenants[i].name : NULL;
        /* The tenant's priority as the library holds it (the rule every surface shares). */
        gencache_tenant_options t;
        gencache_tenant_options_init(&t);
        gencache_priority pr = GENCACHE_PRIORITY_NORMAL;
        if (q->name && gencache_tenant_get(srv->cache, q->name, &t) == GENCACHE_OK)
            pr = t.priority;
        q->weight = pr == GENCACHE_PRIORITY_HIGH ? 4 : pr == GENCACHE_PRIORITY_BATCH ? 1 : 2;
        q->tail = &q->head;
    }
    if (gcd_upstream_init() != 0) {
        gcd_log(&srv->log, GENCACHE_LOG_ERROR, "cannot initialize libcurl");
        return -1;
    }
    p->curl = true;
    unsigned n = cfg->upstream_concurrency ? cfg->upstream_concurrency : DEFAULT_UPSTREAM_WORKERS;
    p->threads = calloc(n, sizeof *p->threads);
    if (!p->threads)
        return -1;
    for (unsigned i = 0; i < n; i++) {
        if (pthread_create(&p->threads[i], NULL, worker_main, p) != 0) {
            gcd_log(&srv->log, GENCACHE_LOG_ERROR, "cannot start the upstream workers");
            return -1;
        }
        p->n_threads++;
    }
    /* Keep a quarter of the workers (at least one) for interactive requests; and with several
     * tenants, a quarter of them free of any one tenant's calls. */
    p->bg_limit = p->n_threads > 1 ? p->n_threads - (p->n_threads / 4 ? p->n_threads / 4 : 1) : 1;
    p->tenant_cap = cfg->n_tenants > 1 && p->n_threads > 1 ? p->bg_limit : 0;
    p->running = true;
    return 0;
}

void gcd_generate_stop(gcd_server *srv)
{
    struct gcd_proxy *p = srv->proxy;
    if (!p || p->stopped)
        return;
    pthread_mutex_lock(&p->mu);
    __atomic_store_n(&p->stopping, 1, __ATOMIC_RELEASE);
    p->running = false;
    /* Every tenant's interactive requests, then the background work, in one list. */
    flight *queued = NULL;
    flight **end = &queued;
    for (size_t i = 0; i < p->n_tqs; i++) {
        *end = p->tqs[i].head;
        p->tqs[i].head = NULL;
        p->tqs[i].tail = &p->tqs[i].head;
        while (*end)
            end = &(*end)->qnext;
    }
    *end = p->bhead;
    p->bhead = NULL;
    p->btail = &p->bhead;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (flight *f = queued, *next; f; f = next) {
        next = f->qnext;
        flight_finish(f, result_error(503, "shutting_down", "the daemon is shutting down"));
    }
    for (unsigned i = 0; i < p->n_threads; i++)
        pthread_join(p->threads[i], NULL);
    /* Every waiter is resumed now; give MHD the moment it needs to send their answers before
     * it is stopped and closes the connections. */
    uint64_t deadline = gcd_mono_ns() + STOP_DRAIN_NS;
    while (__atomic_load_n(&p->suspended, __ATOMIC_ACQUIRE) > 0 && gcd_mono_ns() < deadline)
        nanosleep(&(struct timespec){.tv_nsec = 5000000}, NULL);
    free(p->threads);
    p->threads = NULL;
    p->n_threads = 0;
    if (p->curl)
        gcd_upstream_cleanup();
    p->curl = false;
    p->stopped = true;
}

void gcd_generate_free(gcd_server *srv)
{
    struct gcd_proxy *p = srv->proxy;
    if (!p)
        return;
    gcd_generate_stop(srv);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p->tqs);
    free(p);
    srv->proxy = NULL;
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

/* The interactive queue of f's tenant. */
static tenant_queue *queue_of(struct gcd_proxy *p, const flight *f)
{
    for (size_t i = 0; f->tenant && i + 1 < p->n_tqs; i++)
        if (strcmp(p->tqs[i].name, f->tenant) == 0)
            return &p->tqs[i];
    return &p->tqs[p->n_tqs - 1];
}

/* Appends f to its tenant's interactive queue. Called with p->mu held. */
static void push_interactive(struct gcd_proxy *p, flight *f)
{
    tenant_queue *q = queue_of(p, f);
    f->tq = q;
    f->qnext = NULL;
    *q->tail = f;
    q->tail = &f->qnext;
}

/* Queues a flight for a worker. Called with p->mu held; false when stopping. */
static bool enqueue_locked(struct gcd_proxy *p, flight *f)
{
    if (p->stopping || !p->running)
        return false;
    f->qnext = NULL;
    f->seq = ++p->seq;
    if (f->background) {
        *p->btail = f;
        p->btail = &f->qnext;
    } else {
        push_interactive(p, f);
    }
    /* Every worker re-checks: the one woken might find only a tenant at its cap. */
    pthread_cond_broadcast(&p->cv);
    return true;
}

/* Queues f, or answers it 503 when the daemon is stopping. */
static void fly(flight *f)
{
    struct gcd_proxy *p = f->srv->proxy;
    pthread_mutex_lock(&p->mu);
    bool queued = enqueue_locked(p, f);
    pthread_mutex_unlock(&p->mu);
    if (!queued)
        flight_finish(f, result_error(503, "shutting_down", "the daemon is shutting down"));
}

/* What a flight sends upstream: the request JSON, or an upload's form (upload.c). */
typedef struct forward {
    const char *body;
    size_t len;
    const char *content_type; /* NULL: application/json */
} forward;

static flight *flight_new(gcd_server *srv, const char *key, const forward *fw, const char *model,
                          const char *tenant, gcd_gen_done_fn done, void *ctx,
                          gcd_gen_outcome outcome)
{
    flight *f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    f->srv = srv;
    snprintf(f->key, sizeof f->key, "%s", key);
    f->body = malloc(fw->len ? fw->len : 1);
    f->len = fw->len;
    f->content_type = dup_or_null(fw->content_type);
    f->model = dup_or_null(model);
    f->tenant = dup_or_null(tenant);
    if (!f->body || (model && !f->model) || (tenant && !f->tenant) ||
        (fw->content_type && !f->content_type)) {
        flight_free(f);
        return NULL;
    }
    memcpy(f->body, fw->body, fw->len);
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
static void serve_handle(gcd_server *srv, gencache_handle *h, gcd_gen_outcome outcome,
                         gcd_gen_done_fn done, void *ctx)
{
    gcd_gen_result *r = result_from_handle(h);
    if (!r) {
        fail(srv->proxy, done, ctx, NULL);
        return;
    }
    if (outcome == GCD_GEN_HIT)
        gcd_metrics_hit(srv->metrics, RESULT_LAYER, r->tier);
    done(ctx, outcome, r);
    result_release(r);
}

/* Moves the queued background flight for key, if any, to the interactive queue: an interactive
 * request now waits for it. */
static void promote(struct gcd_proxy *p, const char *key)
{
    pthread_mutex_lock(&p->mu);
    flight **pp = &p->bhead;
    while (*pp && strcmp((*pp)->key, key) != 0)
        pp = &(*pp)->qnext;
    flight *g = *pp;
    if (g) {
        *pp = g->qnext;
        if (p->btail == &g->qnext)
            p->btail = pp;
        g->background = false;
        push_interactive(p, g);
        pthread_cond_broadcast(&p->cv);
    }
    pthread_mutex_unlock(&p->mu);
}

/* True when this thread is ending a flight for key: *r is then a new reference to its answer
 * (NULL: out of memory). */
static bool ending_answer(struct gcd_proxy *p, const char *key, gcd_gen_result **r)
{
    bool found = false;
    *r = NULL;
    pthread_mutex_lock(&p->mu);
    for (const ending *e = p->endings; e && !found; e = e->next) {
        found = pthread_equal(e->thread, pthread_self()) && strcmp(e->key, key) == 0;
        if (found)
            *r = result_retain(e->r);
    }
    pthread_mutex_unlock(&p->mu);
    return found;
}

/* How a request that waited for an identical one's flight is answered (gencache_claim_done_fn):
 * with the stored entry, by flying itself when the lease passed to it, or with the flight's own
 * answer when it ended without storing one. */
static void on_claim(void *userdata, int status, const gencache_claim_result *res)
{
    flight *f = userdata;
    if (status == GENCACHE_OK && res->kind == GENCACHE_CLAIM_HIT) {
        serve_handle(f->srv, res->handle, GCD_GEN_COALESCED, f->done, f->ctx);
        flight_free(f);
        return;
    }
    if (status == GENCACHE_OK && res->kind == GENCACHE_CLAIM_LEASE) {
        f->lease = res->lease;
        fly(f);
        return;
    }
    struct gcd_proxy *p = f->srv->proxy;
    gcd_gen_result *r;
    if (!ending_answer(p, f->key, &r)) {
        if (status == GENCACHE_EUNAVAILABLE)
            r = result_error(503, "shutting_down", "the daemon is shutting down");
        else
            r = result_error(502, "upstream_error", "waiting for an identical request: %s",
                             gencache_strerror(status));
    }
    if (r && r->status == 200)
        f->done(f->ctx, GCD_GEN_COALESCED, r);
    else
        fail(p, f->done, f->ctx, result_retain(r));
    result_release(r);
    flight_free(f);
}

/* A cacheable request: a hit, the key's lease (this request calls the upstream), or a wait for
 * the request that holds it. The lookup and the wait are the library's; no lock is held here. */
static void claim_key(gcd_server *srv, const char *key, const forward *fw, const char *model,
                      const char *tenant, bool background, gcd_gen_done_fn done, void *ctx)
{
    struct gcd_proxy *p = srv->proxy;
    flight *f = flight_new(srv, key, fw, model, tenant, done, ctx, GCD_GEN_MISS);
    if (!f) {
        fail(p, done, ctx, NULL);
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
        fail(p, done, ctx,
             result_error(500, "internal", "looking up %s: %s", key, gencache_strerror(err)));
        return;
    }
    if (res.kind == GENCACHE_CLAIM_HIT) { /* the library counted it for the tenant */
        flight_free(f);
        serve_handle(srv, res.handle, GCD_GEN_HIT, done, ctx);
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
        gcd_metrics_coalesced(srv->metrics);
        if (!background)
            promote(p, key);
    }
}

/* body (len bytes) is the request JSON; fw what goes upstream on a miss (NULL: body itself). */
static void submit(gcd_server *srv, const char *body, size_t len, const forward *fw,
                   const char *tenant, bool background, gcd_gen_done_fn done, void *ctx)
{
    if (!body)
        body = "";
    forward as_is = {body, len, NULL};
    if (!fw)
        fw = &as_is;
    bool image_path, sensitive;
    inspect(srv, body, len, &image_path, &sensitive);
    if (image_path) {
        fail(srv->proxy, done, ctx,
             result_error(400, "bad_request",
                          "request: image paths are not accepted over HTTP; send {\"digest\": "
                          "\"sha256:<hex>\"} (gencache imgid FILE prints it)"));
        return;
    }
    gencache_request *r = NULL;
    char msg[GENCACHE_ERRMSG_MAX] = "";
    int err = gencache_request_parse_ex(srv->keyspace, body, len, 0, &r, msg, sizeof msg);
    if (err != 0) {
        fail(srv->proxy, done, ctx, parse_error(err, msg));
        return;
    }
    if (tenant && (err = gencache_request_set_tenant(r, tenant)) != 0) {
        gencache_request_free(r);
        fail(srv->proxy, done, ctx,
             result_error(500, "internal", "setting the tenant: %s", gencache_strerror(err)));
        return;
    }
    char key[GENCACHE_KEY_MAX];
    err = gencache_request_key(r, RESULT_LAYER, key, sizeof key);
    if (err != 0 && err != GENCACHE_EUNCACHEABLE) {
        gencache_request_free(r);
        fail(srv->proxy, done, ctx,
             result_error(500, "internal", "deriving the key: %s (%s)", gencache_strerror(err),
                          gencache_errname(err)));
        return;
    }
    if (err == 0 && !sensitive) {
        claim_key(srv, key, fw, gencache_request_model(r), tenant, background, done, ctx);
        gencache_request_free(r);
        return;
    }
    gencache_request_free(r);
    gcd_metrics_bypassed(srv->metrics);
    if (!srv->cfg->upstream_url) {
        fail(srv->proxy, done, ctx,
             result_error(503, "no_upstream",
                          "no upstream generator is configured (--upstream URL or upstream.url)"));
        return;
    }
    /* Not stored, so no owner; the tenant is kept for its share of the workers. */
    flight *f = flight_new(srv, "", fw, NULL, tenant, done, ctx, GCD_GEN_BYPASS);
    if (!f) {
        fail(srv->proxy, done, ctx, NULL);
        return;
    }
    f->background = background;
    fly(f);
}

void gcd_generate_submit(gcd_server *srv, const char *body, size_t len, const char *tenant,
                         bool background, gcd_gen_done_fn done, void *ctx)
{
    submit(srv, body, len, NULL, tenant, background, done, ctx);
}

void gcd_generate_submit_upload(gcd_server *srv, const gcd_upload *up, const char *tenant,
                                gcd_gen_done_fn done, void *ctx)
{
    forward fw = {up->forward, up->forward_len, up->forward_type};
    submit(srv, up->request, up->request_len, &fw, tenant, false, done, ctx);
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
        __atomic_sub_fetch(&req->srv->proxy->suspended, 1, __ATOMIC_RELEASE);
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
        const char *ct =
            MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
        if (gcd_upload_is(ct)) {
            /* The image itself came (upload.c): refused at once when malformed. */
            gcd_upload up;
            if (gcd_upload_read(
                    ct, MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Gencache-Request"),
                    req->body, req->body_len, &up) != 0) {
                gcd_upload_free(&up);
                return gcd_reply_error(c, req, up.status, up.code, "%s", up.message);
            }
            gcd_generate_submit_upload(req->srv, &up, req->tenant, http_done, st);
            gcd_upload_free(&up);
        } else {
            gcd_generate_submit(req->srv, req->body, req->body_len, req->tenant, false, http_done,
                                st);
        }
        pthread_mutex_lock(&st->mu);
        if (!st->done) {
            /* Answered from the callback's thread: MHD calls us again once resumed. */
            st->suspended = true;
            __atomic_add_fetch(&req->srv->proxy->suspended, 1, __ATOMIC_RELAXED);
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
