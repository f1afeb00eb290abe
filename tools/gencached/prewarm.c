/*
 * prewarm.c: POST /v1/prewarm and GET /v1/jobs/{id}. A job is a list of request JSON documents
 * that runs through the proxy (gcd_generate_submit, the same path as POST /v1/generate) in the
 * background (a thread of its own starts each job, so no MHD thread ever runs a job's hits), at
 * most `concurrency` at a time; its counters say how each was served. Jobs live
 * in memory, at most MAX_JOBS of them: a new job drops the oldest finished one. Invariant: a job
 * is freed only when finished and no thread pumps it, so no callback can still reach it.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "gencached.h"

#define MAX_JOBS            64
#define MAX_JOBS_PER_TENANT 8
#define MAX_JOB_REQUESTS    100000
#define DEFAULT_CONCURRENCY 4
/* What one held request costs beyond its bytes: its pointer, length and allocation header. */
#define REQUEST_OVERHEAD 32

typedef struct job {
    struct gcd_prewarm *pw; /* the server's prewarm state the job belongs to */
    char id[24];
    char *tenant; /* the submitter's: the only one who sees the job */
    char **bodies;
    size_t *lens;
    size_t total;
    size_t next;    /* the next request to submit */
    size_t running; /* submitted, not answered */
    size_t done, hits, misses, coalesced, bypassed, errors;
    uint64_t held; /* bytes of the requests not yet submitted (each is freed once submitted) */
    char first_error[320];
    bool pumping; /* claimed by a thread in pump_claimed(): it re-checks before leaving */
    uint64_t created_ms, finished_ms;
    struct job *next_job;   /* newest first */
    struct job *next_start; /* in the queue of jobs the starter thread has yet to pump */
} job;

/* One server's jobs (srv->prewarm). */
struct gcd_prewarm {
    pthread_mutex_t mu; /* every job's fields and the list */
    job *jobs;
    size_t n_jobs;
    uint64_t seq;
    gcd_server *srv;
    unsigned limit;    /* requests of one job in flight at once */
    pthread_cond_t cv; /* a job to start, or stopping */
    job *starts;       /* jobs to start, oldest first */
    pthread_t starter;
    bool starter_running;
    bool stopping;
};

int gcd_prewarm_new(gcd_server *srv)
{
    struct gcd_prewarm *pw = calloc(1, sizeof *pw);
    if (!pw)
        return -1;
    pthread_mutex_init(&pw->mu, NULL);
    pthread_cond_init(&pw->cv, NULL);
    pw->srv = srv;
    pw->limit = srv->cfg->prewarm_concurrency ? srv->cfg->prewarm_concurrency : DEFAULT_CONCURRENCY;
    srv->prewarm = pw;
    return 0;
}

static void job_free(job *jb)
{
    for (size_t i = 0; i < jb->total; i++)
        free(jb->bodies[i]);
    free(jb->bodies);
    free(jb->lens);
    free(jb->tenant);
    free(jb);
}

static bool finished(const job *jb)
{
    return jb->done == jb->total && !jb->pumping;
}

static void pump_claimed(job *jb);

static void item_done(void *ctx, gcd_gen_outcome outcome, gcd_gen_result *res)
{
    job *jb = ctx;
    struct gcd_prewarm *pw = jb->pw;
    pthread_mutex_lock(&pw->mu);
    switch (outcome) {
    case GCD_GEN_HIT:
        jb->hits++;
        break;
    case GCD_GEN_MISS:
        jb->misses++;
        break;
    case GCD_GEN_COALESCED:
        jb->coalesced++;
        break;
    case GCD_GEN_BYPASS:
        jb->bypassed++;
        break;
    default:
        if (!jb->errors++)
            snprintf(jb->first_error, sizeof jb->first_error, "%u %s: %s", res->status,
                     res->error_code ? res->error_code : "error", res->message);
        break;
    }
    jb->running--;
    jb->done++;
    if (jb->done == jb->total)
        jb->finished_ms = gcd_now_ms();
    /* Claimed under the lock: a job being pumped is never finished, so never freed. */
    bool go_on = !jb->pumping && jb->next < jb->total;
    if (go_on)
        jb->pumping = true;
    pthread_mutex_unlock(&pw->mu);
    /* Unless go_on, the job may be finished and freed by now: touch nothing. */
    if (go_on)
        pump_claimed(jb);
}

/* Submits requests while fewer than the limit run. The caller has set jb->pumping under pw->mu
 * (one pump per job at a time). Answers may come back inside submit (hits, errors) or on other
 * threads; whoever finds no pump running and work left claims the next one. */
static void pump_claimed(job *jb)
{
    struct gcd_prewarm *pw = jb->pw;
    pthread_mutex_lock(&pw->mu);
    while (jb->running < pw->limit && jb->next < jb->total) {
        size_t i = jb->next++;
        jb->running++;
        pthread_mutex_unlock(&pw->mu);
        gcd_generate_submit(pw->srv, jb->bodies[i], jb->lens[i], jb->tenant, true, item_done, jb);
        pthread_mutex_lock(&pw->mu);
        /* The proxy has its own copy: the job keeps only its counters. */
        free(jb->bodies[i]);
        jb->bodies[i] = NULL;
        jb->held -= jb->lens[i] + REQUEST_OVERHEAD;
    }
    jb->pumping = false;
    pthread_mutex_unlock(&pw->mu);
}

static void *starter_main(void *arg)
{
    struct gcd_prewarm *pw = arg;
    pthread_mutex_lock(&pw->mu);
    for (;;) {
        while (!pw->starts && !pw->stopping)
            pthread_cond_wait(&pw->cv, &pw->mu);
        job *jb = pw->starts;
        if (!jb)
            break;
        pw->starts = jb->next_start;
        jb->pumping = true; /* nothing is submitted yet: no one else pumps it */
        pthread_mutex_unlock(&pw->mu);
        pump_claimed(jb);
        pthread_mutex_lock(&pw->mu);
    }
    pthread_mutex_unlock(&pw->mu);
    return NULL;
}

void gcd_prewarm_free(gcd_server *srv)
{
    struct gcd_prewarm *pw = srv->prewarm;
    if (!pw)
        return;
    pthread_mutex_lock(&pw->mu);
    pw->stopping = true;
    pthread_cond_broadcast(&pw->cv);
    bool joined = pw->starter_running;
    pw->starter_running = false;
    pthread_mutex_unlock(&pw->mu);
    /* The proxy is stopped: what the starter still pumps fails at once. */
    if (joined)
        pthread_join(pw->starter, NULL);
    pthread_mutex_lock(&pw->mu);
    job *list = pw->jobs;
    pw->jobs = NULL;
    pw->n_jobs = 0;
    pthread_mutex_unlock(&pw->mu);
    for (job *jb = list, *next; jb; jb = next) {
        next = jb->next_job;
        job_free(jb);
    }
    pthread_cond_destroy(&pw->cv);
    pthread_mutex_destroy(&pw->mu);
    free(pw);
    srv->prewarm = NULL;
}

static bool add_body(job *jb, const char *text, size_t len, size_t *cap)
{
    if (jb->total == *cap) {
        size_t ncap = *cap ? *cap * 2 : 64;
        char **nb = realloc(jb->bodies, ncap * sizeof *nb);
        if (!nb)
            return false;
        jb->bodies = nb;
        size_t *nl = realloc(jb->lens, ncap * sizeof *nl);
        if (!nl)
            return false;
        jb->lens = nl;
        *cap = ncap;
    }
    char *copy = malloc(len + 1);
    if (!copy)
        return false;
    memcpy(copy, text, len);
    copy[len] = '\0';
    jb->bodies[jb->total] = copy;
    jb->lens[jb->total] = len;
    jb->held += len + REQUEST_OVERHEAD;
    jb->total++;
    return true;
}

/* True (with a 413 message in err) once jb holds more than max_held bytes of requests; checked
 * as the job is built, so a huge list is refused before it is all copied. */
static bool over_held(const job *jb, uint64_t max_held, char *err, size_t err_size)
{
    if (!max_held || jb->held <= max_held)
        return false;
    snprintf(err, err_size,
             "the job's requests take more than limits.prewarm_max_bytes (%llu bytes)",
             (unsigned long long)max_held);
    return true;
}

/* What take_line adds a JSON line to. */
typedef struct line_ctx {
    job *jb;
    size_t *cap;
    uint64_t max_held;
} line_ctx;

/* gcd_jsonl_split's callback: one request line into the job. */
static unsigned take_line(void *ctx, const char *line, size_t len, char *err, size_t err_size)
{
    line_ctx *lc = ctx;
    if (lc->jb->total >= MAX_JOB_REQUESTS) {
        snprintf(err, err_size, "more than %d requests in one job", MAX_JOB_REQUESTS);
        return 413;
    }
    if (!add_body(lc->jb, line, len, lc->cap)) {
        snprintf(err, err_size, "out of memory");
        return 500;
    }
    return over_held(lc->jb, lc->max_held, err, err_size) ? 413 : 0;
}

/* Fills jb from {"requests": [...]} or from JSON lines, holding at most max_held bytes of
 * requests (0: no limit). Returns 0, or an HTTP status with a message in err. */
static unsigned parse_job(job *jb, const char *body, size_t len, uint64_t max_held, char *err,
                          size_t err_size)
{
    size_t cap = 0;
    json_error_t jerr;
    json_t *doc = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (doc && json_is_object(doc) && json_object_get(doc, "requests")) {
        json_t *list = json_object_get(doc, "requests");
        if (!json_is_array(list)) {
            json_decref(doc);
            snprintf(err, err_size, "\"requests\" must be an array of request objects");
            return 400;
        }
        size_t i;
        json_t *item;
        json_array_foreach(list, i, item)
        {
            if (!json_is_object(item)) {
                json_decref(doc);
                snprintf(err, err_size, "requests[%zu] is not an object", i);
                return 400;
            }
            if (jb->total >= MAX_JOB_REQUESTS) {
                json_decref(doc);
                snprintf(err, err_size, "more than %d requests in one job", MAX_JOB_REQUESTS);
                return 413;
            }
            char *text = json_dumps(item, JSON_COMPACT);
            bool ok = text && add_body(jb, text, strlen(text), &cap);
            free(text);
            if (!ok) {
                json_decref(doc);
                snprintf(err, err_size, "out of memory");
                return 500;
            }
            if (over_held(jb, max_held, err, err_size)) {
                json_decref(doc);
                return 413;
            }
        }
        json_decref(doc);
        return 0;
    }
    json_decref(doc);
    /* JSON lines: one request per non-blank line; each is checked when it runs. */
    line_ctx lc = {jb, &cap, max_held};
    return gcd_jsonl_split(body, len, take_line, &lc, err, err_size);
}

static json_t *job_json(const job *jb)
{
    json_t *o = json_pack("{s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "id", jb->id, "state",
                          jb->done == jb->total ? "done" : "running", "total",
                          (json_int_t)jb->total, "done", (json_int_t)jb->done, "hits",
                          (json_int_t)jb->hits, "misses", (json_int_t)jb->misses, "coalesced",
                          (json_int_t)jb->coalesced, "errors", (json_int_t)jb->errors, "bypassed",
                          (json_int_t)jb->bypassed, "running", (json_int_t)jb->running);
    if (o && jb->errors)
        json_object_set_new(o, "first_error", json_string(jb->first_error));
    return o;
}

static enum MHD_Result reply_json(struct MHD_Connection *c, gcd_request *req, unsigned status,
                                  json_t *doc, const char *location)
{
    char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (!text)
        return gcd_reply_gencache(c, req, GENCACHE_ENOMEM, "writing the job");
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    if (location)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_LOCATION, location);
    return gcd_reply_queue(c, req, status, resp);
}

static bool same_tenant(const job *jb, const char *tenant)
{
    return (!jb->tenant && !tenant) || (jb->tenant && tenant && strcmp(jb->tenant, tenant) == 0);
}

/* Unfinished jobs of one tenant. Called with pw->mu held. */
static unsigned running_jobs_locked(const struct gcd_prewarm *pw, const char *tenant)
{
    unsigned n = 0;
    for (job *jb = pw->jobs; jb; jb = jb->next_job)
        if (!finished(jb) && same_tenant(jb, tenant))
            n++;
    return n;
}

/* Request bytes the unfinished jobs of one tenant still hold. Called with pw->mu held. */
static uint64_t held_bytes_locked(const struct gcd_prewarm *pw, const char *tenant)
{
    uint64_t n = 0;
    for (job *jb = pw->jobs; jb; jb = jb->next_job)
        if (same_tenant(jb, tenant))
            n += jb->held;
    return n;
}

/* Makes room for one more job of `tenant`: drops its own oldest finished job, or else the oldest
 * finished job of anyone (the table is full of finished jobs only when every tenant is under its
 * cap of running ones). Called with pw->mu held. */
static bool make_room_locked(struct gcd_prewarm *pw, const char *tenant)
{
    if (pw->n_jobs < MAX_JOBS)
        return true;
    job **victim = NULL, **own = NULL;
    for (job **pp = &pw->jobs; *pp; pp = &(*pp)->next_job) {
        if (!finished(*pp))
            continue;
        victim = pp; /* the list is newest first: the last finished is the oldest */
        if (same_tenant(*pp, tenant))
            own = pp;
    }
    if (own)
        victim = own;
    if (!victim)
        return false;
    job *jb = *victim;
    *victim = jb->next_job;
    pw->n_jobs--;
    job_free(jb);
    return true;
}

enum MHD_Result gcd_prewarm_handle(struct MHD_Connection *c, gcd_request *req)
{
    struct gcd_prewarm *pw = req->srv->prewarm;
    job *jb = calloc(1, sizeof *jb);
    if (!jb)
        return gcd_reply_gencache(c, req, GENCACHE_ENOMEM, "creating the job");
    jb->pw = pw;
    char err[200] = "";
    uint64_t max_held = req->srv->cfg->prewarm_max_bytes;
    unsigned st =
        parse_job(jb, req->body ? req->body : "", req->body_len, max_held, err, sizeof err);
    if (st == 0 && jb->total == 0) {
        st = 400;
        snprintf(err, sizeof err, "no requests: send {\"requests\": [...]} or JSON lines");
    }
    if (st == 0 && req->tenant && !(jb->tenant = strdup(req->tenant))) {
        st = 500;
        snprintf(err, sizeof err, "out of memory");
    }
    if (st != 0) {
        job_free(jb);
        const char *code = "bad_request";
        if (st == 413)
            code = "limit";
        else if (st == 500)
            code = "internal";
        return gcd_reply_error(c, req, st, code, "prewarm: %s", err);
    }
    jb->created_ms = gcd_now_ms();

    pthread_mutex_lock(&pw->mu);
    if (!pw->starter_running && !pw->stopping) {
        if (pthread_create(&pw->starter, NULL, starter_main, pw) == 0)
            pw->starter_running = true;
    }
    if (!pw->starter_running) {
        pthread_mutex_unlock(&pw->mu);
        job_free(jb);
        return gcd_reply_error(c, req, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable",
                               "prewarm: cannot start the prewarm thread");
    }
    /* One tenant's backlog must not take every job slot: with tenants, each may run at most
     * MAX_JOBS_PER_TENANT jobs at once. */
    if (req->tenant && running_jobs_locked(pw, req->tenant) >= MAX_JOBS_PER_TENANT) {
        pthread_mutex_unlock(&pw->mu);
        job_free(jb);
        return gcd_reply_error(c, req, MHD_HTTP_TOO_MANY_REQUESTS, "too_many_jobs",
                               "tenant %s already runs %d prewarm jobs; try again when one is "
                               "done",
                               req->tenant, MAX_JOBS_PER_TENANT);
    }
    /* Nor may its waiting requests take more than their share of memory. */
    uint64_t held = held_bytes_locked(pw, req->tenant);
    if (max_held && held + jb->held > max_held) {
        pthread_mutex_unlock(&pw->mu);
        uint64_t want = jb->held;
        job_free(jb);
        return gcd_reply_error(c, req, MHD_HTTP_TOO_MANY_REQUESTS, "too_many_jobs",
                               "prewarm jobs already hold %llu bytes of requests; %llu more would "
                               "pass limits.prewarm_max_bytes (%llu): try again when they have "
                               "run",
                               (unsigned long long)held, (unsigned long long)want,
                               (unsigned long long)max_held);
    }
    if (!make_room_locked(pw, req->tenant)) {
        pthread_mutex_unlock(&pw->mu);
        job_free(jb);
        return gcd_reply_error(c, req, MHD_HTTP_SERVICE_UNAVAILABLE, "too_many_jobs",
                               "%d prewarm jobs are running; try again when one is done", MAX_JOBS);
    }
    pw->seq++;
    snprintf(jb->id, sizeof jb->id, "%" PRIx64 "-%" PRIu64, jb->created_ms, pw->seq);
    jb->next_job = pw->jobs;
    pw->jobs = jb;
    pw->n_jobs++;
    size_t total = jb->total;
    char id[sizeof jb->id];
    memcpy(id, jb->id, sizeof id);
    job **tail = &pw->starts;
    while (*tail)
        tail = &(*tail)->next_start;
    *tail = jb;
    pthread_cond_signal(&pw->cv);
    pthread_mutex_unlock(&pw->mu);
    char location[64];
    snprintf(location, sizeof location, "/v1/jobs/%s", id);
    json_t *doc = json_pack("{s:s,s:I}", "job", id, "total", (json_int_t)total);
    return reply_json(c, req, MHD_HTTP_ACCEPTED, doc, location);
}

enum MHD_Result gcd_jobs_handle(struct MHD_Connection *c, gcd_request *req)
{
    const char *id = req->tail ? req->tail : "";
    struct gcd_prewarm *pw = req->srv->prewarm;
    pthread_mutex_lock(&pw->mu);
    const job *jb = pw->jobs;
    for (; jb; jb = jb->next_job) {
        if (strcmp(jb->id, id) == 0 && same_tenant(jb, req->tenant))
            break;
    }
    json_t *doc = jb ? job_json(jb) : NULL;
    pthread_mutex_unlock(&pw->mu);
    if (!jb)
        return gcd_reply_error(c, req, MHD_HTTP_NOT_FOUND, "unknown_job", "no job '%.64s'", id);
    return reply_json(c, req, MHD_HTTP_OK, doc, NULL);
}
