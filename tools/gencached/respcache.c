/*
 * respcache.c: reuse of built GET responses for small entries. Building a libmicrohttpd response
 * takes an allocation for the response and three per header (five headers a hit), which for a
 * 4 KiB value is a sizable part of the server's work. A response depends only on the stored
 * bytes and their metadata, the tier that served them and the seconds of TTL left; so each
 * worker thread keeps its last few responses, each holding the read handle of its bytes, and
 * a GET whose lookup (made as always: counted, tenant-checked, TTL-refreshed) returns the same
 * bytes from the same tier with the same TTL queues the kept response again. Same bytes means
 * the same stored version: the kept handle keeps those bytes alive, so their address cannot be
 * reused by another entry. Empty values are never kept: the API promises only that their
 * pointer is not NULL, not that no other entry shares it. What that costs: the bytes of an entry
 * deleted or evicted meanwhile stay allocated until its slot is reused, at most RC_SLOTS values of
 * RC_MAX_BYTES per worker thread. Invariant: the kept responses are destroyed only after MHD
 * stopped (gcd_respcache_free), so no thread uses a slot that is being freed.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "gencached.h"

#define RC_SLOTS     8
#define RC_MAX_BYTES (64u * 1024u) /* larger values gain nothing and would pin more memory */

typedef struct rc_slot {
    const void *data;          /* the entry's bytes; NULL: empty slot */
    struct MHD_Response *resp; /* the cache's reference */
    uint64_t ttl_left;         /* the X-Gencache-TTL it carries (0: none) */
    char tier[16];
    uint64_t used; /* the thread's clock at its latest use, for replacement */
} rc_slot;

typedef struct rc_thread {
    struct rc_thread *next;
    gcd_server *srv;
    rc_slot slots[RC_SLOTS];
    uint64_t clock;
} rc_thread;

struct gcd_respcache {
    pthread_mutex_t mu;
    rc_thread *threads; /* every worker thread's slots, for the free */
};

static __thread rc_thread *tls;

int gcd_respcache_new(gcd_server *srv)
{
    struct gcd_respcache *rc = calloc(1, sizeof *rc);
    if (!rc || pthread_mutex_init(&rc->mu, NULL) != 0) {
        free(rc);
        return -1;
    }
    srv->respcache = rc;
    return 0;
}

void gcd_respcache_free(gcd_server *srv)
{
    struct gcd_respcache *rc = srv->respcache;
    if (!rc)
        return;
    /* MHD has stopped: its threads are gone, and no connection holds a response any more, so
     * this last reference frees each (and releases its handle). */
    for (rc_thread *t = rc->threads, *next; t; t = next) {
        next = t->next;
        for (int i = 0; i < RC_SLOTS; i++)
            if (t->slots[i].resp)
                MHD_destroy_response(t->slots[i].resp);
        free(t);
    }
    pthread_mutex_destroy(&rc->mu);
    free(rc);
    srv->respcache = NULL;
}

/* This thread's slots for srv, created on first use; NULL when out of memory. */
static rc_thread *slots_of(gcd_server *srv)
{
    if (tls && tls->srv == srv)
        return tls;
    rc_thread *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->srv = srv;
    pthread_mutex_lock(&srv->respcache->mu);
    t->next = srv->respcache->threads;
    srv->respcache->threads = t;
    pthread_mutex_unlock(&srv->respcache->mu);
    tls = t;
    return t;
}

struct MHD_Response *gcd_respcache_find(gcd_server *srv, const void *data, size_t size,
                                        uint64_t ttl_left, const char *tier)
{
    if (!srv->respcache || size == 0 || size > RC_MAX_BYTES)
        return NULL;
    rc_thread *t = slots_of(srv);
    if (!t)
        return NULL;
    for (int i = 0; i < RC_SLOTS; i++) {
        rc_slot *s = &t->slots[i];
        if (s->data == data && s->resp && s->ttl_left == ttl_left &&
            strcmp(s->tier, tier ? tier : "") == 0) {
            s->used = ++t->clock;
            return s->resp;
        }
    }
    return NULL;
}

void gcd_respcache_keep(gcd_server *srv, const void *data, size_t size, uint64_t ttl_left,
                        const char *tier, struct MHD_Response *resp)
{
    if (!srv->respcache || size == 0 || size > RC_MAX_BYTES || strlen(tier ? tier : "") >= 16) {
        MHD_destroy_response(resp);
        return;
    }
    rc_thread *t = slots_of(srv);
    if (!t) {
        MHD_destroy_response(resp);
        return;
    }
    rc_slot *victim = &t->slots[0];
    for (int i = 1; i < RC_SLOTS; i++)
        if (t->slots[i].used < victim->used)
            victim = &t->slots[i];
    if (victim->resp)
        MHD_destroy_response(victim->resp); /* freed once its last connection is done */
    victim->data = data;
    victim->resp = resp;
    victim->ttl_left = ttl_left;
    strcpy(victim->tier, tier ? tier : "");
    victim->used = ++t->clock;
}
