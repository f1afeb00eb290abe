/*
 * coalesce.h: the flight table behind gencache_claim() (include/gencache/coalesce.h), private to
 * src/coalesce/. A cache's table hangs off the cache (gencache__cache_flights_slot()), made on
 * the first claim and taken down by gencache_close(). Invariant: at most one flight per key, and a
 * flight holds exactly one live lease or is being handed to its oldest waiter under its bucket's
 * lock; no lock of this module is held across a tier call (gencache_get/put/peek) or a completion
 * callback.
 */
#ifndef GENCACHE_COALESCE_INTERNAL_H
#define GENCACHE_COALESCE_INTERNAL_H

#include "internal.h"

#define GENCACHE__FLIGHT_BUCKETS 64

typedef struct gencache__flights gencache__flights;
typedef struct gencache__flight gencache__flight;
typedef struct gencache__waiter gencache__waiter;

struct gencache_lease {
    gencache__flights *fl; /* holds one reference on the table */
    gencache__flight *f;   /* NULL once taken back (timeout) or the table closed */
    int ended;             /* when f is NULL: GENCACHE_ETIMEDOUT or GENCACHE_EUNAVAILABLE */
    uint32_t timeout_ms;   /* 0: never times out */
    uint64_t hash;         /* of key and namespace: bucket selection */
    char key[GENCACHE__KEY_MAX + 1];
    char tenant[GENCACHE_TENANT_NAME_MAX + 1]; /* on whose behalf it stores; "": the owner */
};

struct gencache__waiter {
    gencache__waiter *next;
    gencache__flight *f;         /* the flight waited for, until finished */
    pthread_cond_t cv;           /* blocking claims only: signalled under the bucket lock */
    gencache_claim_done_fn done; /* NULL: a blocking claim */
    void *userdata;
    uint64_t deadline_ns;  /* monotonic; 0: none */
    gencache_lease *lease; /* preallocated, handed over when the lease passes to us */
    bool finished;
    int status;
    gencache_claim_result res;
};

struct gencache__flight {
    gencache__flight *next;     /* in the bucket */
    gencache_lease *lease;      /* the holder's; NULL only inside a hand-over */
    uint64_t lease_deadline_ns; /* monotonic; 0: none */
    bool storing;               /* fulfil is storing the value: not timed out meanwhile */
    gencache__waiter *head, **tail;
    uint64_t hash;
    char key[GENCACHE__KEY_MAX + 1];
    /* The tenant whose namespace holds the key (tenant-scoped layers); "" for a global layer:
     * the same key in two namespaces is two flights. */
    char ns[GENCACHE_TENANT_NAME_MAX + 1];
    /* Across nodes (remote.c): the table (for the lease's release), the token of the lease
     * this node holds on the key in the shared tier (0: none), and whether the flight waits for
     * another node's holder (its lease is then a placeholder the remote watcher owns). */
    gencache__flights *owner;
    uint64_t remote_token;
    bool remote_wait;
};

typedef struct gencache__flight_bucket {
    pthread_mutex_t mu; /* the flights of this bucket and their waiters */
    gencache__flight *head;
    _Atomic uint64_t stored; /* bumped when a flight here stores its value */
} gencache__flight_bucket;

struct gencache__flights {
    gencache *cache;
    _Atomic uint32_t refs; /* the cache's (until close), one per lease and per waiting claim */
    _Atomic bool closed;
    pthread_mutex_t tmu; /* the timer fields below; taken after a bucket lock */
    pthread_cond_t tcv;  /* monotonic clock */
    pthread_t timer;
    bool timer_started, timer_stop;
    uint64_t next_deadline_ns;       /* earliest deadline the timer must wake for; UINT64_MAX */
    struct gencache__remote *remote; /* single flight across nodes (remote.c); NULL: unused */
    gencache__flight_bucket b[GENCACHE__FLIGHT_BUCKETS];
};

/* The cache's table, made when `create` is set and there is none. NULL: none (create == false),
 * or out of memory. The pointer is valid until gencache_close(cache). */
gencache__flights *gencache__flights_for(gencache *cache, bool create);
void gencache__flights_retain(gencache__flights *fl);
void gencache__flights_release(gencache__flights *fl);

/* Starts the timer thread if it is not running. GENCACHE_OK or GENCACHE_ENOMEM. */
int gencache__flights_timer_start(gencache__flights *fl);
/* Makes the timer wake by deadline_ns (monotonic). Callable with a bucket lock held. */
void gencache__flights_timer_note(gencache__flights *fl, uint64_t deadline_ns);

/* A list of async waiters whose callbacks are due, collected under a bucket lock and run by
 * gencache__waiters_run() after it is released. */
typedef struct gencache__waiter_list {
    gencache__waiter *head;
} gencache__waiter_list;

/* Finishes waiter w (already out of its flight's list) with status and result fields; a
 * blocking waiter is signalled, an async one queued on `due`. Called with the bucket lock. */
void gencache__waiter_finish(gencache__waiter *w, int status, gencache_claim_kind kind,
                             gencache_handle *handle, gencache_lease *lease,
                             gencache__waiter_list *due);
/* Calls the callbacks of `due` and frees those waiters. Called with no lock held. */
void gencache__waiters_run(gencache__waiter_list *due);

/* Hands f's lease to its oldest waiter, or, with none, unlinks and frees f. f->lease must already
 * be detached from f. Called with the bucket lock. */
void gencache__flight_pass_on(gencache__flights *fl, gencache__flight_bucket *b,
                              gencache__flight *f, gencache__waiter_list *due);
/* Ends f for every waiter with status (and a retained handle each when status is OK and h is
 * set), unlinks and frees it. Called with the bucket lock. */
void gencache__flight_end(gencache__flight_bucket *b, gencache__flight *f, int status,
                          gencache_handle *h, gencache__waiter_list *due);

void gencache__lease_free(gencache_lease *lease);

/* ---- single flight across nodes (remote.c) ---- */

/* What claim() does after it started a flight f (unlocked) with lease `mine`: takes the key's
 * lease in the shared tier. GENCACHE_OK: the caller computes (it holds both leases, or the
 * shared tier cannot say and only the local one counts). GENCACHE_EBUSY: another node holds it,
 * or its value is stored already: the flight now waits for that, and the caller must wait as a
 * waiter of f. */
int gencache__remote_claim(gencache__flights *fl, gencache__flight_bucket *b, gencache__flight *f,
                           gencache_lease *mine, const char *tenant, uint32_t lease_timeout_ms);
/* Hands the watcher a flight that waits for another node (call with f's bucket lock held, then
 * set f->remote_wait). False when out of memory: the caller computes instead. */
bool gencache__remote_watch(gencache__flights *fl, gencache__flight *f, gencache_lease *mine,
                            const char *tenant);
/* A flight that held the shared lease is ending: the lease is deleted soon, off this thread.
 * Callable with a bucket lock held. */
void gencache__remote_release(gencache__flights *fl, const char *key, uint64_t token);
/* At gencache_close(): stops the watcher; after the flights ended, deletes the leases still
 * held and frees the placeholders. */
void gencache__remote_stop(gencache__flights *fl);
void gencache__remote_close(gencache__flights *fl);
/* Ends the flight of lease with a hit on h (another node stored the value), like a fulfil that
 * stores nothing. The lease is freed. */
int gencache__lease_end_hit(gencache_lease *lease, gencache_handle *h);

/* Initializes a condition variable whose timed waits use CLOCK_MONOTONIC deadlines. */
void gencache__cond_init_mono(pthread_cond_t *cv);

#endif
