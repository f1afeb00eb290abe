/*
 * claim.c: gencache_claim() and the lease verbs (include/gencache/coalesce.h). A claim looks the
 * key up with no lock held, then, under the key's bucket lock, joins the key's flight or starts
 * one. Invariant: a claim that misses starts a flight only if no flight of its bucket stored a
 * value since just before its lookup (the bucket's `stored` counter), so a value stored between
 * the lookup and the lock is found by looking again, never computed twice.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "coalesce/coalesce.h"

#define DEFAULT_TIMEOUT_MS 600000u
#define MISS_RETRIES       4 /* lookups again after a racing store, before computing anyway */

void gencache_claim_options_init(gencache_claim_options *opts)
{
    if (!opts)
        return;
    memset(opts, 0, sizeof *opts);
    opts->struct_size = sizeof *opts;
    opts->wait_timeout_ms = DEFAULT_TIMEOUT_MS;
    opts->lease_timeout_ms = DEFAULT_TIMEOUT_MS;
}

const char *gencache_lease_key(const gencache_lease *lease)
{
    return lease ? lease->key : NULL;
}

/* Whether the layer of key keeps an entry per tenant (tenant- or session-scoped): then a
 * tenant's claim is about its own namespace. */
static bool tenant_scoped(gencache *cache, const char *key)
{
    const char *slash = strchr(key, '/');
    char name[GENCACHE__LAYER_NAME_MAX + 1];
    size_t n = slash ? (size_t)(slash - key) : 0;
    if (n == 0 || n > GENCACHE__LAYER_NAME_MAX)
        return false;
    memcpy(name, key, n);
    name[n] = '\0';
    gencache_layer_options lo;
    gencache_layer_options_init(&lo);
    return gencache_layer_get(cache, name, &lo) == GENCACHE_OK && lo.scope != GENCACHE_SCOPE_GLOBAL;
}

static gencache_caller caller_for(const char *tenant)
{
    gencache_caller who;
    gencache_caller_init(&who);
    who.tenant = tenant && tenant[0] ? tenant : NULL;
    return who;
}

/* gencache_get() on the tenant's behalf (the library looks in its namespace). */
static int lookup(gencache *cache, const char *key, const char *tenant, gencache_handle **h)
{
    *h = NULL;
    gencache_caller who = caller_for(tenant);
    return gencache_get_as(cache, &who, key, h);
}

static gencache__flight *find(gencache__flight_bucket *b, const char *key, const char *ns,
                              uint64_t hash)
{
    for (gencache__flight *f = b->head; f; f = f->next)
        if (f->hash == hash && strcmp(f->key, key) == 0 && strcmp(f->ns, ns) == 0)
            return f;
    return NULL;
}

static gencache_lease *lease_new(gencache__flights *fl, const char *key, const char *tenant,
                                 uint64_t hash, uint32_t timeout_ms)
{
    gencache_lease *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    gencache__flights_retain(fl);
    l->fl = fl;
    l->timeout_ms = timeout_ms;
    l->hash = hash;
    snprintf(l->key, sizeof l->key, "%s", key);
    snprintf(l->tenant, sizeof l->tenant, "%s", tenant ? tenant : "");
    return l;
}

static void append(gencache__flight *f, gencache__waiter *w)
{
    w->next = NULL;
    w->f = f;
    *f->tail = w;
    f->tail = &w->next;
}

/* Takes w out of its flight's list (a blocking wait that timed out). */
static void unlink_waiter(gencache__flight *f, gencache__waiter *w)
{
    for (gencache__waiter **pp = &f->head; *pp; pp = &(*pp)->next) {
        if (*pp == w) {
            *pp = w->next;
            if (f->tail == &w->next)
                f->tail = pp;
            return;
        }
    }
}

/* Waits, with b->mu held, until w is finished or its deadline passes. */
static void wait_blocking(gencache__flight_bucket *b, gencache__waiter *w)
{
    struct timespec ts = {.tv_sec = (time_t)(w->deadline_ns / 1000000000u),
                          .tv_nsec = (long)(w->deadline_ns % 1000000000u)};
    while (!w->finished) {
        int rc = pthread_cond_timedwait(&w->cv, &b->mu, &ts);
        if (rc == ETIMEDOUT && !w->finished) {
            unlink_waiter(w->f, w);
            w->finished = true;
            w->status = GENCACHE_ETIMEDOUT;
            w->res = (gencache_claim_result){GENCACHE_CLAIM_NONE, 1, NULL, NULL};
        }
    }
}

/* The state one claim prepares before taking the bucket lock, so that nothing is allocated
 * under it. */
typedef struct prep {
    gencache_lease *lease;    /* ours as a holder, or preallocated for a hand-over */
    gencache__flight *flight; /* used when we start the flight */
    gencache__waiter *async;  /* used when an async claim waits */
} prep;

static void prep_free(prep *p)
{
    gencache__lease_free(p->lease);
    free(p->flight);
    free(p->async);
}

static int claim(gencache *cache, const char *key, const gencache_claim_options *opts,
                 gencache_claim_done_fn done, void *userdata, bool async,
                 gencache_claim_result *result)
{
    if (result)
        *result = (gencache_claim_result){GENCACHE_CLAIM_NONE, 0, NULL, NULL};
    if (!cache || !key || !result || (async && !done))
        return GENCACHE_EINVAL;
    gencache_claim_options o;
    gencache_claim_options_init(&o);
    if (opts) {
        if (opts->struct_size < sizeof *opts)
            return GENCACHE_EINVAL;
        o = *opts;
    }
    int rc = gencache_key_check(cache, key);
    if (rc != GENCACHE_OK)
        return rc;
    gencache__flights *fl = gencache__flights_for(cache, true);
    if (!fl)
        return GENCACHE_ENOMEM;
    if (atomic_load(&fl->closed))
        return GENCACHE_EUNAVAILABLE;
    if ((o.lease_timeout_ms || (async && o.wait_timeout_ms)) &&
        gencache__flights_timer_start(fl) != GENCACHE_OK)
        return GENCACHE_ENOMEM;
    const char *tenant = o.tenant && o.tenant[0] ? o.tenant : NULL;
    if (tenant && !gencache__tenant_name_valid(tenant))
        return GENCACHE_EINVAL;
    const char *ns = tenant && tenant_scoped(cache, key) ? tenant : "";
    uint64_t hash = gencache__checksum(key, strlen(key)) ^ gencache__checksum(ns, strlen(ns));
    gencache__flight_bucket *b = &fl->b[hash % GENCACHE__FLIGHT_BUCKETS];

    prep p = {lease_new(fl, key, tenant, hash, o.lease_timeout_ms), calloc(1, sizeof *p.flight),
              async ? calloc(1, sizeof *p.async) : NULL};
    if (!p.lease || !p.flight || (async && !p.async)) {
        prep_free(&p);
        return GENCACHE_ENOMEM;
    }
    for (unsigned tries = 0;; tries++) {
        uint64_t stored = atomic_load(&b->stored);
        gencache_handle *h = NULL;
        rc = lookup(cache, key, tenant, &h);
        if (rc == GENCACHE_OK) {
            prep_free(&p);
            *result = (gencache_claim_result){GENCACHE_CLAIM_HIT, 0, h, NULL};
            return GENCACHE_OK;
        }
        if (rc != GENCACHE_ENOTFOUND) {
            prep_free(&p);
            return rc;
        }
        pthread_mutex_lock(&b->mu);
        gencache__flight *f = find(b, key, ns, hash);
        if (!f && atomic_load(&b->stored) != stored && tries < MISS_RETRIES) {
            pthread_mutex_unlock(&b->mu); /* a value may have landed meanwhile: look again */
            continue;
        }
        if (!f) {
            f = p.flight;
            p.flight = NULL;
            f->hash = hash;
            snprintf(f->key, sizeof f->key, "%s", key);
            snprintf(f->ns, sizeof f->ns, "%s", ns);
            f->tail = &f->head;
            f->lease = p.lease;
            p.lease->f = f;
            f->next = b->head;
            b->head = f;
            uint32_t t = o.lease_timeout_ms;
            f->lease_deadline_ns = t ? gencache__clock_mono_ns() + (uint64_t)t * 1000000u : 0;
            if (f->lease_deadline_ns)
                gencache__flights_timer_note(fl, f->lease_deadline_ns);
            f->owner = fl;
            pthread_mutex_unlock(&b->mu);
            gencache_lease *mine = p.lease;
            p.lease = NULL;
            /* Across nodes: unless another node computes the value, we do. */
            if (gencache__remote_claim(fl, b, f, mine, tenant, o.lease_timeout_ms) == GENCACHE_OK ||
                !(p.lease = lease_new(fl, key, tenant, hash, o.lease_timeout_ms))) {
                *result = (gencache_claim_result){GENCACHE_CLAIM_LEASE, 0, NULL, mine};
                prep_free(&p);
                return GENCACHE_OK;
            }
            pthread_mutex_lock(&b->mu);
            if (mine->f != f || !gencache__remote_watch(fl, f, mine, tenant)) {
                /* Taken back meanwhile (ours to end, as any lease), or nothing can watch the
                 * other node for us: compute. */
                pthread_mutex_unlock(&b->mu);
                *result = (gencache_claim_result){GENCACHE_CLAIM_LEASE, 0, NULL, mine};
                prep_free(&p);
                return GENCACHE_OK;
            }
            /* The flight waits for the other node; mine becomes the watcher's placeholder and
             * this claim waits on the flight like any other. */
            f->remote_wait = true;
        }
        if (o.wait_timeout_ms == 0) {
            pthread_mutex_unlock(&b->mu);
            prep_free(&p);
            return GENCACHE_EBUSY;
        }
        uint64_t deadline = gencache__clock_mono_ns() + (uint64_t)o.wait_timeout_ms * 1000000u;
        if (async) {
            gencache__waiter *w = p.async;
            p.async = NULL;
            w->done = done;
            w->userdata = userdata;
            w->deadline_ns = deadline;
            w->lease = p.lease;
            p.lease = NULL;
            append(f, w);
            gencache__flights_timer_note(fl, deadline);
            pthread_mutex_unlock(&b->mu);
            prep_free(&p);
            /* From here w belongs to the table: done() may already be running. */
            *result = (gencache_claim_result){GENCACHE_CLAIM_PENDING, 1, NULL, NULL};
            return GENCACHE_OK;
        }
        gencache__waiter w = {.deadline_ns = deadline, .lease = p.lease};
        gencache__cond_init_mono(&w.cv);
        append(f, &w);
        wait_blocking(b, &w);
        pthread_mutex_unlock(&b->mu);
        pthread_cond_destroy(&w.cv);
        /* A hand-over moved our lease into the flight (w.lease is NULL then); otherwise the
         * preallocated one goes, and with it the reference that kept the table alive. */
        p.lease = w.lease;
        prep_free(&p);
        *result = w.res;
        return w.status;
    }
}

int gencache_claim(gencache *cache, const char *key, const gencache_claim_options *opts,
                   gencache_claim_result *result)
{
    return claim(cache, key, opts, NULL, NULL, false, result);
}

int gencache_claim_async(gencache *cache, const char *key, const gencache_claim_options *opts,
                         gencache_claim_done_fn done, void *userdata, gencache_claim_result *result)
{
    return claim(cache, key, opts, done, userdata, true, result);
}

/* ---- ending a lease -------------------------------------------------------------------------- */

static gencache__flight_bucket *bucket_of(const gencache_lease *l)
{
    return &l->fl->b[l->hash % GENCACHE__FLIGHT_BUCKETS];
}

/* Locks the lease's bucket and returns its flight; NULL (unlocked) when it was taken back or
 * the cache closed, with *rc saying which. */
static gencache__flight *lease_flight(gencache_lease *l, int *rc)
{
    gencache__flight_bucket *b = bucket_of(l);
    pthread_mutex_lock(&b->mu);
    if (!l->f) {
        *rc = l->ended ? l->ended : GENCACHE_EUNAVAILABLE;
        pthread_mutex_unlock(&b->mu);
        return NULL;
    }
    return l->f;
}

int gencache_lease_fulfil(gencache_lease *lease, const void *data, size_t size,
                          const gencache_meta *meta)
{
    if (!lease || (!data && size))
        return GENCACHE_EINVAL;
    int rc = GENCACHE_OK;
    gencache__flight_bucket *b = bucket_of(lease);
    gencache__flight *f = lease_flight(lease, &rc);
    if (!f) {
        gencache__lease_free(lease);
        return rc;
    }
    f->storing = true; /* the put may wait on a slow tier: do not time the lease out meanwhile */
    pthread_mutex_unlock(&b->mu);

    gencache *cache = lease->fl->cache;
    gencache_caller who = caller_for(lease->tenant);
    rc = gencache_put_as(cache, &who, lease->key, data, size, meta);
    gencache_handle *h = NULL;
    if (rc == GENCACHE_OK && gencache_peek_as(cache, &who, lease->key, &h) != GENCACHE_OK)
        h = NULL;

    gencache__waiter_list due = {NULL};
    pthread_mutex_lock(&b->mu);
    f->lease = NULL;
    if (rc == GENCACHE_OK && !h) {
        /* Stored, yet gone at once (evicted by other puts): someone must compute it again. */
        gencache__flight_pass_on(lease->fl, b, f, &due);
    } else {
        if (rc == GENCACHE_OK)
            atomic_fetch_add(&b->stored, 1);
        gencache__flight_end(b, f, rc, h, &due);
    }
    pthread_mutex_unlock(&b->mu);
    gencache__waiters_run(&due);
    gencache_handle_release(h);
    gencache__lease_free(lease);
    return rc;
}

int gencache__lease_end_hit(gencache_lease *lease, gencache_handle *h)
{
    int rc = GENCACHE_OK;
    gencache__flight_bucket *b = bucket_of(lease);
    gencache__flight *f = lease_flight(lease, &rc);
    if (f) {
        gencache__waiter_list due = {NULL};
        f->lease = NULL;
        atomic_fetch_add(&b->stored, 1);
        gencache__flight_end(b, f, GENCACHE_OK, h, &due);
        pthread_mutex_unlock(&b->mu);
        gencache__waiters_run(&due);
    }
    gencache__lease_free(lease);
    return rc;
}

/* Ends a lease without a value: passes it on (err == 0) or fails every waiter with err. */
static int end_without_value(gencache_lease *lease, int err)
{
    if (!lease)
        return GENCACHE_EINVAL;
    int rc = GENCACHE_OK;
    gencache__flight_bucket *b = bucket_of(lease);
    gencache__flight *f = lease_flight(lease, &rc);
    if (f) {
        gencache__waiter_list due = {NULL};
        f->lease = NULL;
        if (err == 0)
            gencache__flight_pass_on(lease->fl, b, f, &due);
        else
            gencache__flight_end(b, f, err, NULL, &due);
        pthread_mutex_unlock(&b->mu);
        gencache__waiters_run(&due);
    }
    gencache__lease_free(lease);
    return rc;
}

int gencache_lease_abandon(gencache_lease *lease)
{
    return end_without_value(lease, 0);
}

int gencache_lease_fail(gencache_lease *lease, int err)
{
    if (err >= 0 || strcmp(gencache_errname(err), "EUNKNOWN") == 0)
        err = GENCACHE_EIO;
    return end_without_value(lease, err);
}
