/*
 * lru.c: least recently used. One list per shard, most recent at the head; a hit moves the entry
 * to the head and the tail is the victim. Its rank is the victim's last access, so a tier with
 * several shards evicts the stalest of their tails: true LRU up to ties between shards.
 */
#include "policy/policy.h"

static int lru_insert(gencache__policy_shard *p, gencache__entry *e)
{
    gencache__policy_list_push(p, 0, e);
    return GENCACHE_OK;
}

static void lru_remove(gencache__policy_shard *p, gencache__entry *e)
{
    gencache__policy_list_unlink(p, 0, e);
}

static void lru_hit(gencache__policy_shard *p, gencache__entry *e)
{
    if (p->head[0] == e)
        return;
    gencache__policy_list_unlink(p, 0, e);
    gencache__policy_list_push(p, 0, e);
}

static gencache__entry *lru_candidate(gencache__policy_shard *p, const gencache__entry *keep,
                                      double *rank)
{
    gencache__entry *e = p->tail[0];
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
