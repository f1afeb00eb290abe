/*
 * policy.c: what the eviction policies share: the table of policies by kind, the doubly linked
 * lists LRU and S3-FIFO keep their entries on, and the value of a hit that cost-aware ordering
 * reads. A list holds each entry at most once, through the entry's own links.
 */
#include <string.h>

#include "policy/policy.h"

const gencache__policy_ops *gencache__policy_of(int kind)
{
    switch (kind) {
    case GENCACHE_EVICTION_LRU:
        return &gencache__policy_lru;
    case GENCACHE_EVICTION_GDSF:
        return &gencache__policy_gdsf;
    case GENCACHE_EVICTION_S3FIFO:
        return &gencache__policy_s3fifo;
    default:
        return NULL;
    }
}

int gencache__policy_parse(const char *name)
{
    for (int k = 0; k < GENCACHE__POLICY_KINDS; k++)
        if (name && strcmp(name, gencache__policy_of(k)->name) == 0)
            return k;
    return -1;
}

void gencache__policy_list_push(gencache__policy_shard *p, int q, gencache__entry *e)
{
    e->lru_prev = NULL;
    e->lru_next = p->head[q];
    if (p->head[q])
        p->head[q]->lru_prev = e;
    else
        p->tail[q] = e;
    p->head[q] = e;
    p->bytes[q] += e->charge;
    p->count[q]++;
}

void gencache__policy_list_unlink(gencache__policy_shard *p, int q, gencache__entry *e)
{
    if (e->lru_prev)
        e->lru_prev->lru_next = e->lru_next;
    else
        p->head[q] = e->lru_next;
    if (e->lru_next)
        e->lru_next->lru_prev = e->lru_prev;
    else
        p->tail[q] = e->lru_prev;
    e->lru_prev = e->lru_next = NULL;
    p->bytes[q] -= e->charge;
    p->count[q]--;
}

double gencache__policy_value(const gencache__entry *e)
{
    double cost = e->cost_ms ? (double)e->cost_ms : 1.0;
    return cost / (double)(e->charge ? e->charge : 1);
}
