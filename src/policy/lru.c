/*
 * lru.c: least recently used, approximated by CLOCK (second chance) on one list per shard. A hit
 * sets the entry's referenced bit, a byte in the line the lookup reads anyway, and moves nothing;
 * the victim is looked for at the tail: a referenced entry there loses its bit and goes back to
 * the head, and the first unreferenced one is the candidate. So an entry leaves only after a
 * whole turn of the list without a hit, as with LRU, but the hit path touches no neighbour and
 * eviction pays for the moves instead, once per hit entry per turn. Lists under eight entries
 * are kept exact (a hit moves its entry to the head): there a turn is too short for one bit to
 * order anything, and the neighbours' lines are few. The rank is the candidate's last access,
 * so a tier with several shards evicts the stalest of their candidates.
 */
#include "policy/policy.h"

/* Lists shorter than this are exact LRU. */
#define EXACT_BELOW 8

static int lru_insert(gencache__policy_shard *p, gencache__entry *e)
{
    e->pol_ref = 0;
    gencache__policy_list_push(p, 0, e);
    return GENCACHE_OK;
}

static void lru_remove(gencache__policy_shard *p, gencache__entry *e)
{
    gencache__policy_list_unlink(p, 0, e);
}

static void lru_hit(gencache__policy_shard *p, gencache__entry *e)
{
    if (p->count[0] >= EXACT_BELOW) {
        e->pol_ref = 1;
    } else if (p->head[0] != e) {
        gencache__policy_list_unlink(p, 0, e);
        gencache__policy_list_push(p, 0, e);
    }
}

static gencache__entry *lru_candidate(gencache__policy_shard *p, const gencache__entry *keep,
                                      double *rank)
{
    /* One turn at most (keep may be met twice): after it every bit the sweep met is clear. */
    uint64_t budget = p->count[0] + 2;
    gencache__entry *e = p->tail[0];
    while (e && budget-- > 0) {
        if (e == keep) {
            e = e->lru_prev;
            continue;
        }
        if (!e->pol_ref)
            break;
        gencache__entry *prev = e->lru_prev;
        e->pol_ref = 0;
        gencache__policy_list_unlink(p, 0, e);
        gencache__policy_list_push(p, 0, e);
        e = prev ? prev : p->tail[0];
    }
    if (e && e == keep)
        e = e->lru_prev;
    if (e)
        *rank = (double)atomic_load_explicit(&e->last_access_ms, memory_order_relaxed);
    return e;
}

static void lru_evicting(gencache__policy_shard *p, gencache__entry *e)
{
    (void)p;
    (void)e;
}

static void lru_fini(gencache__policy_shard *p)
{
    (void)p;
}

const gencache__policy_ops gencache__policy_lru = {
    .name = "lru",
    .insert = lru_insert,
    .remove = lru_remove,
    .hit = lru_hit,
    .candidate = lru_candidate,
    .evicting = lru_evicting,
    .fini = lru_fini,
};
