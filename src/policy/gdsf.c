/*
 * gdsf.c: Greedy-Dual-Size-Frequency, the cost-aware policy. Each entry's priority is
 * L + frequency * cost / size, where cost is the compute a hit saves (cost_ms; 1 ms when
 * unknown, which makes the order size-aware recency) and size the bytes it holds. The victim is
 * the lowest priority, and the clock L rises to each victim's priority, so entries that stop
 * being used age out however valuable they once were. A shard keeps a binary min-heap of its
 * entries with their priorities beside them (each entry knows its place); the clock is shared by
 * the whole tier, so priorities of different shards compare directly.
 */
#include <string.h>

#include "policy/policy.h"

static double clock_get(const gencache__policy_shared *s)
{
    uint64_t bits = atomic_load_explicit(&s->clock_bits, memory_order_relaxed);
    double d;
    memcpy(&d, &bits, sizeof d);
    return d;
}

/* Raises the clock to v unless it is already higher. */
static void clock_raise(gencache__policy_shared *s, double v)
{
    uint64_t bits = atomic_load_explicit(&s->clock_bits, memory_order_relaxed);
    for (;;) {
        double cur;
        memcpy(&cur, &bits, sizeof cur);
        if (cur >= v)
            return;
        uint64_t nb;
        memcpy(&nb, &v, sizeof nb);
        if (atomic_compare_exchange_weak(&s->clock_bits, &bits, nb))
            return;
    }
}

static void heap_set(gencache__policy_shard *p, size_t i, gencache__heap_slot slot)
{
    p->heap[i] = slot;
    slot.e->pol_index = (uint32_t)i;
}

static void sift_up(gencache__policy_shard *p, size_t i)
{
    gencache__heap_slot x = p->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (p->heap[parent].priority <= x.priority)
            break;
        heap_set(p, i, p->heap[parent]);
        i = parent;
    }
    heap_set(p, i, x);
}

static void sift_down(gencache__policy_shard *p, size_t i)
{
    gencache__heap_slot x = p->heap[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= p->heap_len)
            break;
        if (c + 1 < p->heap_len && p->heap[c + 1].priority < p->heap[c].priority)
            c++;
        if (x.priority <= p->heap[c].priority)
            break;
        heap_set(p, i, p->heap[c]);
        i = c;
    }
    heap_set(p, i, x);
}

static void reprioritize(gencache__policy_shard *p, gencache__entry *e)
{
    e->pol_priority = clock_get(p->shared) + (double)e->pol_freq * gencache__policy_value(e);
}

static int gdsf_insert(gencache__policy_shard *p, gencache__entry *e)
{
    if (p->heap_len == p->heap_cap) {
        size_t ncap = p->heap_cap ? p->heap_cap * 2 : 64;
        gencache__heap_slot *nh = gencache__malloc(p->shared->alloc, ncap * sizeof *nh);
        if (!nh)
            return GENCACHE_ENOMEM;
        if (p->heap_len)
            memcpy(nh, p->heap, p->heap_len * sizeof *nh);
        gencache__free(p->shared->alloc, p->heap);
        p->heap = nh;
        p->heap_cap = ncap;
    }
    e->pol_freq = 1;
    reprioritize(p, e);
    heap_set(p, p->heap_len++, (gencache__heap_slot){e->pol_priority, e});
    sift_up(p, p->heap_len - 1);
    return GENCACHE_OK;
}

static void gdsf_remove(gencache__policy_shard *p, gencache__entry *e)
{
    size_t i = e->pol_index;
    gencache__heap_slot last = p->heap[--p->heap_len];
    if (i < p->heap_len) {
        heap_set(p, i, last);
        sift_down(p, i);
        sift_up(p, last.e->pol_index);
    }
}

static void gdsf_hit(gencache__policy_shard *p, gencache__entry *e)
{
    if (e->pol_freq < UINT16_MAX)
        e->pol_freq++;
    reprioritize(p, e); /* only ever rises: the clock never goes back */
    p->heap[e->pol_index].priority = e->pol_priority;
    sift_down(p, e->pol_index);
}

static gencache__entry *gdsf_candidate(gencache__policy_shard *p, const gencache__entry *keep,
                                       double *rank)
{
    if (p->heap_len == 0)
        return NULL;
    gencache__entry *e = p->heap[0].e;
    if (e == keep) {
        /* The next lowest is one of the root's children. */
        e = NULL;
        for (size_t c = 1; c <= 2 && c < p->heap_len; c++)
            if (!e || p->heap[c].priority < e->pol_priority)
                e = p->heap[c].e;
    }
    if (e)
        *rank = e->pol_priority;
    return e;
}

static void gdsf_evicting(gencache__policy_shard *p, gencache__entry *e)
{
    clock_raise(p->shared, e->pol_priority);
}

static void gdsf_fini(gencache__policy_shard *p)
{
    gencache__free(p->shared->alloc, p->heap);
    p->heap = NULL;
    p->heap_len = p->heap_cap = 0;
}

const gencache__policy_ops gencache__policy_gdsf = {
    .name = "gdsf",
    .insert = gdsf_insert,
    .remove = gdsf_remove,
    .hit = gdsf_hit,
    .candidate = gdsf_candidate,
    .evicting = gdsf_evicting,
    .fini = gdsf_fini,
};
