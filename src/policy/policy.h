/*
 * policy.h: eviction policies, one file each behind one small interface, shared by the tiers that
 * evict (the way Varnish's storage backends share one LRU). A tier keeps one policy instance per
 * shard and policy kind; the instance orders the shard's unpinned entries and names the next
 * victim, the tier decides when to evict and compares the victims its shards offer by their rank.
 * Every call is made under the lock of the shard that owns the instance. Pinned entries are never
 * given to a policy, and expiry is the tier's business: a policy only ever chooses among entries
 * that are otherwise fine to keep.
 */
#ifndef GENCACHE_POLICY_H
#define GENCACHE_POLICY_H

#include "internal.h"

#define GENCACHE__POLICY_KINDS 3 /* lru, gdsf, s3fifo: the values of gencache_eviction */

/* What the instances of one tier share: the GDSF clock and the order of queue entries. */
typedef struct gencache__policy_shared {
    _Atomic uint64_t clock_bits; /* GDSF's clock L, a double's bits: rises to each victim's value */
    _Atomic uint64_t seq;        /* S3-FIFO: one tick per entry into a queue, tier-wide */
    uint64_t ghost_entries;      /* S3-FIFO: most keys a shard's ghost queue remembers */
    const gencache_allocator *alloc;
} gencache__policy_shared;

/* One place of GDSF's heap: the priority beside the entry, so sifting reads one array. */
typedef struct gencache__heap_slot {
    double priority;
    gencache__entry *e;
} gencache__heap_slot;

/* The state of one instance (one kind, one shard). Each policy uses the fields it needs. */
typedef struct gencache__policy_shard {
    gencache__policy_shared *shared;
    gencache__entry *head[2], *tail[2]; /* LRU: list 0; S3-FIFO: 0 small, 1 main */
    uint64_t bytes[2];                  /* charges on each list */
    uint64_t count[2];                  /* entries on each list */
    gencache__heap_slot *heap;          /* GDSF: min-heap on priority */
    size_t heap_len, heap_cap;
    gencache__ghost *ghost; /* S3-FIFO: keys that left the small queue unused; made on demand */
} gencache__policy_shard;

typedef struct gencache__policy_ops {
    const char *name; /* "lru", "gdsf", "s3fifo": the config's words */
    /* e enters the shard (it is unpinned and in the table). GENCACHE_OK or GENCACHE_ENOMEM. */
    int (*insert)(gencache__policy_shard *p, gencache__entry *e);
    /* e leaves the shard, evicted or not. */
    void (*remove)(gencache__policy_shard *p, gencache__entry *e);
    /* A lookup counted an access to e: the policy's on-hit, the only call on the hit path. NULL
     * for a policy that needs none. */
    void (*hit)(gencache__policy_shard *p, gencache__entry *e);
    /* The entry this instance would evict next, never `keep`, or NULL when it has none. *rank
     * orders the candidates of instances of the same kind (lowest goes first). May reorder the
     * instance (S3-FIFO moves entries between its queues on the way). */
    gencache__entry *(*candidate)(gencache__policy_shard *p, const gencache__entry *keep,
                                  double *rank);
    /* The candidate e is about to be evicted for lack of room (remove follows). */
    void (*evicting)(gencache__policy_shard *p, gencache__entry *e);
    /* Frees what the instance allocated; it holds no entries any more. */
    void (*fini)(gencache__policy_shard *p);
} gencache__policy_ops;

extern const gencache__policy_ops gencache__policy_lru;
extern const gencache__policy_ops gencache__policy_gdsf;
extern const gencache__policy_ops gencache__policy_s3fifo;

/* The policy of a kind (a gencache_eviction value); NULL for one that is not. */
const gencache__policy_ops *gencache__policy_of(int kind);

/* Parses "lru", "gdsf" or "s3fifo". Returns the kind, or -1 for another word. */
int gencache__policy_parse(const char *name);

/* The double list helpers LRU and S3-FIFO share (through the entry's lru_prev/lru_next). */
void gencache__policy_list_push(gencache__policy_shard *p, int q, gencache__entry *e);
void gencache__policy_list_unlink(gencache__policy_shard *p, int q, gencache__entry *e);

/* What a hit on e is worth per byte it holds: cost_ms / charge, with 1 ms for an entry of no
 * known cost (then the order is size-aware recency). */
double gencache__policy_value(const gencache__entry *e);

#endif
