/*
 * lru.c: least recently used. One list per shard, most recent at the head; the tail is the
 * victim. A hit moves the entry to the head unless it is already among the most recent eighth of
 * the list: every placing at the head takes a tick of the shard's counter, and an entry placed
 * fewer ticks ago than an eighth of the list's length cannot be further down than that. Such an
 * entry stays where it is, which spares the hit path the two neighbours' cache lines; its place
 * is then at most an eighth of the list away from exact LRU's, and lists under eight entries are
 * exact. Its rank is the victim's last access, so a tier with several shards evicts the stalest
 * of their tails: LRU up to ties between shards.
 */
#include "policy/policy.h"

/* Places e at the head. */
static void place(gencache__policy_shard *p, gencache__entry *e)
{
    e->pol_tick = ++p->tick;
    gencache__policy_list_push(p, 0, e);
}

static int lru_insert(gencache__policy_shard *p, gencache__entry *e)
{
    place(p, e);
    return GENCACHE_OK;
}

static void lru_remove(gencache__policy_shard *p, gencache__entry *e)
{
    gencache__policy_list_unlink(p, 0, e);
}

static void lru_hit(gencache__policy_shard *p, gencache__entry *e)
{
    if (p->tick - e->pol_tick < p->count[0] / 8)
        return; /* among the most recent eighth already */
    gencache__policy_list_unlink(p, 0, e);
    place(p, e);
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
