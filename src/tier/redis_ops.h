/*
 * redis_ops.h: what the Redis tier's files share beyond redis.h: the connection pool with its
 * circuit breaker (redis.c) and the scan-based operations (redis_scan.c).
 */
#ifndef GENCACHE_TIER_REDIS_OPS_H
#define GENCACHE_TIER_REDIS_OPS_H

#include "tier/redis.h"

extern const char gencache__redis_get_script[];

/* Lends a connected connection, or NULL when the breaker is open, no connection frees up before
 * the deadline, or connecting fails (counted as a failure). */
gencache__redis_conn *gencache__redis_acquire(gencache__redis_tier *r, uint64_t deadline_ns);
/* Gives c back. ok: the exchange completed (the server answered, whatever it said); otherwise
 * c is closed and the failure feeds the breaker. */
void gencache__redis_release(gencache__redis_tier *r, gencache__redis_conn *c, bool ok);

/* Removes a stored value that failed its check (rkey: the Redis key), only if it is still the
 * same record (when e is known); counts it and reports it to on_evict. */
void gencache__redis_drop_corrupt(gencache__redis_tier *r, const char *rkey, gencache__entry *e);

int gencache__redis_remove_if(gencache__tier *t, gencache__entry_pred pred, void *userdata,
                              uint64_t *count);

#endif
