/*
 * remote.c: single flight across the nodes that share a Redis tier. A node whose claim starts a
 * local flight also takes the key's lease in the shared tier (src/tier/redis_lease.c). When
 * another node holds it, the local flight waits instead of computing: its lease becomes a
 * placeholder owned by this module's watcher thread, which every POLL_MS looks the key up (the
 * other node's value, once stored, ends the flight with a hit for every local waiter) and tries
 * the shared lease again (a holder that finished without a value, or died and let its lease
 * expire, passes it on: the oldest local waiter then computes). The watcher also renews the
 * shared leases this node holds and deletes them when their flights end. Lock order: a bucket
 * lock, then `mu`; no lock is held across a tier call.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "coalesce/coalesce.h"

#define POLL_MS        20
#define DEFAULT_TTL_MS 30000u /* a shared lease's TTL when the claim sets no lease timeout */

typedef struct rec {
    struct rec *next;
    char key[GENCACHE__KEY_MAX + 1];
    char tenant[GENCACHE_TENANT_NAME_MAX + 1];
    char ns[GENCACHE_TENANT_NAME_MAX + 1];
    uint64_t hash, token;
    uint32_t ttl_ms;
    uint64_t renew_at_ns;
    gencache_lease *placeholder; /* waits: the flight's lease, owned here */
} rec;

struct gencache__remote {
    pthread_mutex_t mu; /* the three lists and the thread's state */
    pthread_cond_t cv;
    pthread_t thread;
    bool started, stop;
    rec *waits, *held, *releases; /* new waits, held leases to renew, leases to delete */
};

static uint64_t new_token(void)
{
    uint64_t t = 0;
    if (getrandom(&t, sizeof t, 0) != sizeof t)
        t = gencache__clock_mono_ns() * 0x9E3779B97F4A7C15ull;
    return t ? t : 1;
}

static void *watcher(void *arg);

/* The table's state across nodes with its watcher thread running, made on the first use;
 * NULL when either cannot be had (then flights stay local). fl->tmu serializes the making. */
static struct gencache__remote *remote_of(gencache__flights *fl)
{
    pthread_mutex_lock(&fl->tmu);
    if (!fl->remote && !fl->timer_stop) {
        struct gencache__remote *rm = calloc(1, sizeof *rm);
        if (rm) {
            pthread_mutex_init(&rm->mu, NULL);
            gencache__cond_init_mono(&rm->cv);
            fl->remote = rm;
            gencache__flights_retain(fl);
            rm->started = pthread_create(&rm->thread, NULL, watcher, fl) == 0;
            if (!rm->started)
                gencache__flights_release(fl);
        }
    }
    struct gencache__remote *rm = fl->remote && fl->remote->started ? fl->remote : NULL;
    pthread_mutex_unlock(&fl->tmu);
    return rm;
}

/* Queues r on list for the watcher. */
static void push(gencache__flights *fl, rec **list, rec *r)
{
    struct gencache__remote *rm = fl->remote;
    pthread_mutex_lock(&rm->mu);
    r->next = *list;
    *list = r;
    pthread_cond_signal(&rm->cv);
    pthread_mutex_unlock(&rm->mu);
}

static rec *rec_new(const char *key, const char *tenant, uint64_t token, uint32_t ttl_ms)
{
    rec *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    snprintf(r->key, sizeof r->key, "%s", key);
    snprintf(r->tenant, sizeof r->tenant, "%s", tenant ? tenant : "");
    r->token = token;
    r->ttl_ms = ttl_ms;
    r->renew_at_ns = gencache__clock_mono_ns() + (uint64_t)ttl_ms * 1000000u / 3;
    return r;
}

int gencache__remote_claim(gencache__flights *fl, gencache__flight_bucket *b, gencache__flight *f,
                           gencache_lease *mine, const char *tenant, uint32_t lease_timeout_ms)
{
    gencache__tier *t = gencache__cache_shared_for(fl->cache, mine->key);
    if (!t || !remote_of(fl))
        return GENCACHE_OK; /* a local layer, or no shared tier: the local flight is all */
    uint64_t token = new_token();
    uint32_t ttl = lease_timeout_ms ? lease_timeout_ms : DEFAULT_TTL_MS;
    int rc = gencache__redis_lease_acquire(t, mine->key, token, ttl);
    if (rc == GENCACHE_EBUSY || rc == GENCACHE_EEXIST)
        return GENCACHE_EBUSY;
    if (rc != GENCACHE_OK)
        return GENCACHE_OK; /* Redis cannot say: compute here rather than wait on nothing */
    rec *r = rec_new(mine->key, tenant, token, ttl);
    pthread_mutex_lock(&b->mu);
    bool ours = mine->f == f;
    if (ours)
        f->remote_token = token;
    pthread_mutex_unlock(&b->mu);
    if (!ours) {
        /* Taken back meanwhile (a lease timeout): give the shared lease back. */
        gencache__redis_lease_renew(t, mine->key, token, 0);
        free(r);
    } else if (r) {
        push(fl, &fl->remote->held, r);
    }
    return GENCACHE_OK;
}

bool gencache__remote_watch(gencache__flights *fl, gencache__flight *f, gencache_lease *mine,
                            const char *tenant)
{
    rec *r = rec_new(f->key, tenant, 0, 0);
    if (!r)
        return false;
    snprintf(r->ns, sizeof r->ns, "%s", f->ns);
    r->hash = f->hash;
    r->placeholder = mine;
    push(fl, &fl->remote->waits, r);
    return true;
}

void gencache__remote_release(gencache__flights *fl, const char *key, uint64_t token)
{
    if (!fl->remote)
        return;
    rec *r = rec_new(key, NULL, token, 0);
    if (r)
        push(fl, &fl->remote->releases, r); /* else it expires with its TTL */
}

/* ---- the watcher ---- */

static gencache__flight *find_flight(gencache__flight_bucket *b, const rec *w)
{
    for (gencache__flight *f = b->head; f; f = f->next)
        if (f->hash == w->hash && strcmp(f->key, w->key) == 0 && strcmp(f->ns, w->ns) == 0)
            return f;
    return NULL;
}

/* One look at a flight that waits for another node. True: done with it (w freed). */
static bool poll_wait(gencache__flights *fl, gencache__tier *t, rec *w, rec **held)
{
    gencache_lease *ph = w->placeholder;
    gencache__flight_bucket *b = &fl->b[w->hash % GENCACHE__FLIGHT_BUCKETS];
    pthread_mutex_lock(&b->mu);
    bool attached = ph->f != NULL;
    pthread_mutex_unlock(&b->mu);
    if (!attached) { /* timed out or the cache closes: the placeholder is ours to free */
        gencache__lease_free(ph);
        free(w);
        return true;
    }
    gencache_caller who;
    gencache_caller_init(&who);
    who.tenant = w->tenant[0] ? w->tenant : NULL;
    gencache_handle *h = NULL;
    /* A peek: polling must not count lookups, misses or accesses. */
    if (gencache_peek_as(fl->cache, &who, w->key, &h) == GENCACHE_OK) {
        gencache__lease_end_hit(ph, h);
        gencache_handle_release(h);
        free(w);
        return true;
    }
    uint64_t token = new_token();
    uint32_t ttl = ph->timeout_ms ? ph->timeout_ms : DEFAULT_TTL_MS;
    int rc = t ? gencache__redis_lease_acquire(t, w->key, token, ttl) : GENCACHE_EUNAVAILABLE;
    if (rc == GENCACHE_EBUSY || rc == GENCACHE_EEXIST)
        return false; /* still held, or stored and about to be readable here */
    /* Ours (or Redis cannot say): the oldest local waiter computes. */
    if (rc == GENCACHE_OK) {
        pthread_mutex_lock(&b->mu);
        gencache__flight *f = find_flight(b, w);
        bool ok = f && f->lease == ph;
        if (ok) {
            f->remote_token = token;
            f->remote_wait = false;
            f->owner = fl;
        }
        pthread_mutex_unlock(&b->mu);
        if (ok) {
            rec *r = rec_new(w->key, NULL, token, ttl);
            if (r) {
                r->next = *held;
                *held = r;
            }
        } else {
            gencache__redis_lease_renew(t, w->key, token, 0);
        }
    }
    gencache_lease_abandon(ph); /* passes the flight on; with no waiter left, ends it */
    free(w);
    return true;
}

static void drop_held(rec **held, const rec *rel)
{
    for (rec **pp = held; *pp; pp = &(*pp)->next) {
        if ((*pp)->token == rel->token && strcmp((*pp)->key, rel->key) == 0) {
            rec *gone = *pp;
            *pp = gone->next;
            free(gone);
            return;
        }
    }
}

static void *watcher(void *arg)
{
    gencache__flights *fl = arg;
    struct gencache__remote *rm = fl->remote;
    rec *waits = NULL, *held = NULL;
    pthread_mutex_lock(&rm->mu);
    while (!rm->stop) {
        /* Take what other threads queued. */
        while (rm->waits) {
            rec *r = rm->waits;
            rm->waits = r->next;
            r->next = waits;
            waits = r;
        }
        while (rm->held) {
            rec *r = rm->held;
            rm->held = r->next;
            r->next = held;
            held = r;
        }
        rec *releases = rm->releases;
        rm->releases = NULL;
        pthread_mutex_unlock(&rm->mu);

        gencache__tier *t = NULL;
        for (rec *r = releases, *next; r; r = next) {
            next = r->next;
            t = gencache__cache_shared_for(fl->cache, r->key);
            if (t)
                gencache__redis_lease_renew(t, r->key, r->token, 0);
            drop_held(&held, r);
            free(r);
        }
        uint64_t now = gencache__clock_mono_ns();
        for (rec *r = held; r; r = r->next) {
            if (now >= r->renew_at_ns) {
                t = gencache__cache_shared_for(fl->cache, r->key);
                if (t)
                    gencache__redis_lease_renew(t, r->key, r->token, r->ttl_ms);
                r->renew_at_ns = now + (uint64_t)r->ttl_ms * 1000000u / 3;
            }
        }
        for (rec **pp = &waits; *pp;) {
            rec *w = *pp;
            rec *next = w->next;
            t = gencache__cache_shared_for(fl->cache, w->key);
            if (poll_wait(fl, t, w, &held))
                *pp = next;
            else
                pp = &w->next;
        }

        pthread_mutex_lock(&rm->mu);
        if (rm->stop || rm->waits || rm->held || rm->releases)
            continue;
        if (!waits && !held) {
            pthread_cond_wait(&rm->cv, &rm->mu);
        } else {
            uint64_t at = gencache__clock_mono_ns() + (uint64_t)POLL_MS * 1000000u;
            struct timespec ts = {(time_t)(at / 1000000000u), (long)(at % 1000000000u)};
            pthread_cond_timedwait(&rm->cv, &rm->mu, &ts);
        }
    }
    /* Hand back what is left for gencache__remote_close(). */
    for (rec *r; (r = waits);) {
        waits = r->next;
        r->next = rm->waits;
        rm->waits = r;
    }
    for (rec *r; (r = held);) {
        held = r->next;
        r->next = rm->held;
        rm->held = r;
    }
    pthread_mutex_unlock(&rm->mu);
    gencache__flights_release(fl);
    return NULL;
}

void gencache__remote_stop(gencache__flights *fl)
{
    struct gencache__remote *rm = fl->remote;
    if (!rm)
        return;
    pthread_mutex_lock(&rm->mu);
    rm->stop = true;
    bool join = rm->started;
    pthread_cond_signal(&rm->cv);
    pthread_mutex_unlock(&rm->mu);
    if (join)
        pthread_join(rm->thread, NULL);
}

void gencache__remote_close(gencache__flights *fl)
{
    struct gencache__remote *rm = fl->remote;
    if (!rm)
        return;
    /* The flights have ended: every placeholder is detached, every held lease queued. */
    for (rec *r = rm->releases, *next; r; r = next) {
        next = r->next;
        gencache__tier *t = gencache__cache_shared_for(fl->cache, r->key);
        if (t)
            gencache__redis_lease_renew(t, r->key, r->token, 0);
        free(r);
    }
    for (rec *r = rm->waits, *next; r; r = next) {
        next = r->next;
        gencache__lease_free(r->placeholder);
        free(r);
    }
    for (rec *r = rm->held, *next; r; r = next) {
        next = r->next;
        free(r);
    }
    rm->releases = rm->waits = rm->held = NULL;
    fl->remote = NULL;
    pthread_mutex_destroy(&rm->mu);
    pthread_cond_destroy(&rm->cv);
    free(rm);
}
