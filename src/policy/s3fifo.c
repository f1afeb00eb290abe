/*
 * s3fifo.c: S3-FIFO, three FIFO queues. New entries go to a small queue (a tenth of the shard's
 * bytes); one that was used while there moves on to the main queue when it reaches the small
 * queue's end, one that was not is evicted and its key remembered in a ghost queue. A new entry
 * whose key is in the ghost queue (among as many recent ghosts as the shard holds entries)
 * goes straight to main. Main is a FIFO with second chances: an entry used since it was queued is
 * requeued with one use less. A hit only counts (at most 3), so the hit path moves nothing.
 * Ranks are tier-wide queue ticks: a tier with several shards evicts the oldest of their victims.
 */
#include "policy/policy.h"

#define SMALL    0
#define MAIN     1
#define MAX_FREQ 3

static void enqueue(gencache__policy_shard *p, int q, gencache__entry *e)
{
    e->pol_queue = (uint8_t)q;
    e->pol_seq = atomic_fetch_add_explicit(&p->shared->seq, 1, memory_order_relaxed);
    gencache__policy_list_push(p, q, e);
}

static int s3_insert(gencache__policy_shard *p, gencache__entry *e)
{
    if (!p->ghost && p->shared->ghost_entries)
        gencache__ghost_new(p->shared->alloc, p->shared->ghost_entries, &p->ghost); /* may fail:
                                                                                       no ghosts */
    /* The ghost queue is as long as the shard holds entries: older ghosts no longer count. */
    uint64_t window = p->count[SMALL] + p->count[MAIN] + 1;
    e->pol_freq = 0;
    enqueue(p, gencache__ghost_recent(p->ghost, e->hash, window) ? MAIN : SMALL, e);
    return GENCACHE_OK;
}

static void s3_remove(gencache__policy_shard *p, gencache__entry *e)
{
    gencache__policy_list_unlink(p, e->pol_queue, e);
}

static void s3_hit(gencache__policy_shard *p, gencache__entry *e)
{
    (void)p;
    if (e->pol_freq < MAX_FREQ)
        e->pol_freq++;
}

/* The end of queue q, passing over `keep` (the entry being stored). */
static gencache__entry *queue_end(const gencache__policy_shard *p, int q,
                                  const gencache__entry *keep)
{
    gencache__entry *e = p->tail[q];
    return e && e == keep ? e->lru_prev : e;
}

static gencache__entry *s3_candidate(gencache__policy_shard *p, const gencache__entry *keep,
                                     double *rank)
{
    for (;;) {
        uint64_t total = p->bytes[SMALL] + p->bytes[MAIN];
        gencache__entry *small_end = queue_end(p, SMALL, keep);
        gencache__entry *main_end = queue_end(p, MAIN, keep);
        bool from_small = small_end && (p->bytes[SMALL] * 10 > total || !main_end);
        gencache__entry *e = from_small ? small_end : main_end;
        if (!e)
            return NULL;
        if (e->pol_freq == 0) {
            *rank = (double)e->pol_seq;
            return e;
        }
        /* Used since it was queued: a small entry is promoted, a main one gets another round. */
        gencache__policy_list_unlink(p, e->pol_queue, e);
        if (from_small)
            e->pol_freq = 0;
        else
            e->pol_freq--;
        enqueue(p, MAIN, e);
    }
}

static void s3_evicting(gencache__policy_shard *p, gencache__entry *e)
{
    if (e->pol_queue == SMALL)
        gencache__ghost_add(p->ghost, e->hash);
}

static void s3_fini(gencache__policy_shard *p)
{
    gencache__ghost_free(p->ghost);
    p->ghost = NULL;
}

const gencache__policy_ops gencache__policy_s3fifo = {
    .name = "s3fifo",
    .insert = s3_insert,
    .remove = s3_remove,
    .hit = s3_hit,
    .candidate = s3_candidate,
    .evicting = s3_evicting,
    .fini = s3_fini,
};
