/*
 * table.c: the flight table of a cache: made on the first claim, its striped buckets, the hand-over
 * of a lease from one holder to the next waiter, and the timer thread that takes back leases and
 * ends async waits whose time ran out. Invariant: every state change of a flight happens under
 * its bucket's lock, and callbacks run only after that lock is released; the timer thread never
 * holds its own mutex while it takes a bucket lock (order: bucket, then timer).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "coalesce/coalesce.h"

void gencache__cond_init_mono(pthread_cond_t *cv)
{
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(cv, &a);
    pthread_condattr_destroy(&a);
}

static gencache__flights *flights_new(gencache *cache)
{
    gencache__flights *fl = calloc(1, sizeof *fl);
    if (!fl)
        return NULL;
    fl->cache = cache;
    atomic_init(&fl->refs, 1);
    atomic_init(&fl->closed, false);
    pthread_mutex_init(&fl->tmu, NULL);
    gencache__cond_init_mono(&fl->tcv);
    fl->next_deadline_ns = UINT64_MAX;
    for (unsigned i = 0; i < GENCACHE__FLIGHT_BUCKETS; i++) {
        pthread_mutex_init(&fl->b[i].mu, NULL);
        atomic_init(&fl->b[i].stored, 0);
    }
    return fl;
}

gencache__flights *gencache__flights_for(gencache *cache, bool create)
{
    _Atomic(gencache__flights *) *slot = gencache__cache_flights_slot(cache);
    gencache__flights *fl = atomic_load_explicit(slot, memory_order_acquire);
    if (fl || !create)
        return fl;
    /* Made on the first claim; two first claims race with a compare-and-swap, the loser's
     * table is freed unused. */
    gencache__flights *made = flights_new(cache);
    if (!made)
        return NULL;
    if (atomic_compare_exchange_strong(slot, &fl, made))
        return made;
    gencache__flights_release(made);
    return fl;
}

void gencache__flights_retain(gencache__flights *fl)
{
    atomic_fetch_add_explicit(&fl->refs, 1, memory_order_relaxed);
}

void gencache__flights_release(gencache__flights *fl)
{
    if (atomic_fetch_sub_explicit(&fl->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (unsigned i = 0; i < GENCACHE__FLIGHT_BUCKETS; i++)
        pthread_mutex_destroy(&fl->b[i].mu);
    pthread_mutex_destroy(&fl->tmu);
    pthread_cond_destroy(&fl->tcv);
    free(fl);
}

void gencache__lease_free(gencache_lease *lease)
{
    if (!lease)
        return;
    gencache__flights_release(lease->fl);
    free(lease);
}

/* ---- waiters and hand-over ------------------------------------------------------------------- */

void gencache__waiter_finish(gencache__waiter *w, int status, gencache_claim_kind kind,
                             gencache_handle *handle, gencache_lease *lease,
                             gencache__waiter_list *due)
{
    w->finished = true;
    w->f = NULL;
    w->status = status;
    w->res = (gencache_claim_result){.kind = status == GENCACHE_OK ? kind : GENCACHE_CLAIM_NONE,
                                     .waited = 1,
                                     .handle = handle,
                                     .lease = lease};
    if (w->done) {
        w->next = due->head;
        due->head = w;
    } else {
        w->next = NULL;
        pthread_cond_signal(&w->cv);
    }
}

void gencache__waiters_run(gencache__waiter_list *due)
{
    for (gencache__waiter *w = due->head, *next; w; w = next) {
        next = w->next;
        w->done(w->userdata, w->status, &w->res);
        /* The unused preallocated lease; its reference kept the table alive until now. */
        gencache__lease_free(w->lease);
        free(w);
    }
    due->head = NULL;
}

static gencache__waiter *pop_waiter(gencache__flight *f)
{
    gencache__waiter *w = f->head;
    if (w) {
        f->head = w->next;
        if (!f->head)
            f->tail = &f->head;
        w->next = NULL;
    }
    return w;
}

static void unlink_flight(gencache__flight_bucket *b, gencache__flight *f)
{
    for (gencache__flight **pp = &b->head; *pp; pp = &(*pp)->next) {
        if (*pp == f) {
            *pp = f->next;
            return;
        }
    }
}

/* Frees an ended flight; the shared lease it held (across nodes) is deleted soon. */
static void flight_free(gencache__flight *f)
{
    if (f->remote_token && f->owner)
        gencache__remote_release(f->owner, f->key, f->remote_token);
    free(f);
}

static void set_lease_deadline(gencache__flights *fl, gencache__flight *f)
{
    uint32_t t = f->lease->timeout_ms;
    f->lease_deadline_ns = t ? gencache__clock_mono_ns() + (uint64_t)t * 1000000u : 0;
    if (f->lease_deadline_ns)
        gencache__flights_timer_note(fl, f->lease_deadline_ns);
}

void gencache__flight_pass_on(gencache__flights *fl, gencache__flight_bucket *b,
                              gencache__flight *f, gencache__waiter_list *due)
{
    gencache__waiter *w = pop_waiter(f);
    if (!w) {
        unlink_flight(b, f);
        flight_free(f);
        return;
    }
    gencache_lease *l = w->lease;
    w->lease = NULL;
    l->f = f;
    f->lease = l;
    f->storing = false;
    set_lease_deadline(fl, f);
    gencache__waiter_finish(w, GENCACHE_OK, GENCACHE_CLAIM_LEASE, NULL, l, due);
}

void gencache__flight_end(gencache__flight_bucket *b, gencache__flight *f, int status,
                          gencache_handle *h, gencache__waiter_list *due)
{
    for (gencache__waiter *w; (w = pop_waiter(f));) {
        if (status == GENCACHE_OK && h)
            gencache__waiter_finish(w, GENCACHE_OK, GENCACHE_CLAIM_HIT, gencache_handle_retain(h),
                                    NULL, due);
        else
            gencache__waiter_finish(w, status, GENCACHE_CLAIM_NONE, NULL, NULL, due);
    }
    unlink_flight(b, f);
    flight_free(f);
}

/* ---- the timer ------------------------------------------------------------------------------- */

/* Takes back the leases and ends the async waits of bucket b that are due at `now`; returns the
 * earliest deadline left in it (UINT64_MAX: none). */
static uint64_t expire_bucket(gencache__flights *fl, gencache__flight_bucket *b, uint64_t now,
                              gencache__waiter_list *due)
{
    uint64_t next = UINT64_MAX;
    pthread_mutex_lock(&b->mu);
    gencache__flight *f = b->head;
    while (f) {
        gencache__flight *after = f->next; /* f may be freed below */
        /* Async waits first, so that a waiter past its own deadline is not handed the lease. */
        for (gencache__waiter **pp = &f->head; *pp;) {
            gencache__waiter *w = *pp;
            if (w->done && w->deadline_ns && w->deadline_ns <= now) {
                *pp = w->next;
                if (f->tail == &w->next)
                    f->tail = pp;
                gencache__waiter_finish(w, GENCACHE_ETIMEDOUT, GENCACHE_CLAIM_NONE, NULL, NULL,
                                        due);
                continue;
            }
            if (w->done && w->deadline_ns && w->deadline_ns < next)
                next = w->deadline_ns;
            pp = &w->next;
        }
        if (f->lease && !f->storing && f->lease_deadline_ns && f->lease_deadline_ns <= now) {
            gencache_lease *l = f->lease;
            l->f = NULL;
            l->ended = GENCACHE_ETIMEDOUT;
            f->lease = NULL;
            gencache__log_msg(gencache__cache_log(fl->cache), GENCACHE_LOG_WARN,
                              "coalesce: the lease on %s timed out; passing it on", f->key);
            gencache__flight_pass_on(fl, b, f, due);
        } else if (f->lease_deadline_ns && f->lease_deadline_ns < next) {
            next = f->lease_deadline_ns;
        }
        f = after;
    }
    pthread_mutex_unlock(&b->mu);
    return next;
}

static void *timer_main(void *arg)
{
    gencache__flights *fl = arg;
    pthread_mutex_lock(&fl->tmu);
    while (!fl->timer_stop) {
        uint64_t now = gencache__clock_mono_ns();
        if (fl->next_deadline_ns == UINT64_MAX) {
            pthread_cond_wait(&fl->tcv, &fl->tmu);
            continue;
        }
        if (now < fl->next_deadline_ns) {
            struct timespec ts = {.tv_sec = (time_t)(fl->next_deadline_ns / 1000000000u),
                                  .tv_nsec = (long)(fl->next_deadline_ns % 1000000000u)};
            pthread_cond_timedwait(&fl->tcv, &fl->tmu, &ts);
            continue;
        }
        /* Deadlines noted while we scan lower next_deadline_ns again: none is lost. */
        fl->next_deadline_ns = UINT64_MAX;
        pthread_mutex_unlock(&fl->tmu);
        uint64_t next = UINT64_MAX;
        for (unsigned i = 0; i < GENCACHE__FLIGHT_BUCKETS; i++) {
            gencache__waiter_list due = {NULL};
            uint64_t n = expire_bucket(fl, &fl->b[i], now, &due);
            gencache__waiters_run(&due);
            if (n < next)
                next = n;
        }
        pthread_mutex_lock(&fl->tmu);
        if (next < fl->next_deadline_ns)
            fl->next_deadline_ns = next;
    }
    pthread_mutex_unlock(&fl->tmu);
    return NULL;
}

int gencache__flights_timer_start(gencache__flights *fl)
{
    int rc = GENCACHE_OK;
    pthread_mutex_lock(&fl->tmu);
    if (!fl->timer_started && !fl->timer_stop) {
        if (pthread_create(&fl->timer, NULL, timer_main, fl) == 0)
            fl->timer_started = true;
        else
            rc = GENCACHE_ENOMEM;
    }
    pthread_mutex_unlock(&fl->tmu);
    return rc;
}

void gencache__flights_timer_note(gencache__flights *fl, uint64_t deadline_ns)
{
    pthread_mutex_lock(&fl->tmu);
    if (deadline_ns < fl->next_deadline_ns) {
        fl->next_deadline_ns = deadline_ns;
        pthread_cond_signal(&fl->tcv);
    }
    pthread_mutex_unlock(&fl->tmu);
}

/* ---- closing --------------------------------------------------------------------------------- */

/* The hook in gencache_close(): stops the timer, fails every wait with GENCACHE_EUNAVAILABLE and
 * cuts every outstanding lease off the cache (ending one later returns GENCACHE_EUNAVAILABLE and
 * stores nothing). The table itself is freed when the last lease is ended. */
void gencache__coalesce_close(gencache *cache)
{
    gencache__flights *fl = atomic_exchange(gencache__cache_flights_slot(cache), NULL);
    if (!fl)
        return;
    atomic_store(&fl->closed, true);
    pthread_mutex_lock(&fl->tmu);
    fl->timer_stop = true;
    bool joined = fl->timer_started;
    pthread_cond_signal(&fl->tcv);
    pthread_mutex_unlock(&fl->tmu);
    if (joined)
        pthread_join(fl->timer, NULL);
    gencache__remote_stop(fl);
    for (unsigned i = 0; i < GENCACHE__FLIGHT_BUCKETS; i++) {
        gencache__flight_bucket *b = &fl->b[i];
        gencache__waiter_list due = {NULL};
        pthread_mutex_lock(&b->mu);
        while (b->head) {
            gencache__flight *f = b->head;
            if (f->lease) {
                f->lease->f = NULL;
                f->lease->ended = GENCACHE_EUNAVAILABLE;
                f->lease = NULL;
            }
            gencache__flight_end(b, f, GENCACHE_EUNAVAILABLE, NULL, &due);
        }
        pthread_mutex_unlock(&b->mu);
        gencache__waiters_run(&due);
    }
    gencache__remote_close(fl);
    gencache__flights_release(fl);
}
