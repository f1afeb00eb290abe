/*
 * redis_ops.h: what the Redis tier's files share beyond redis.h: the per-node connection pool
 * with its circuit breaker (redis.c), cluster routing (redis_cluster.c) and the scan-based
 * operations (redis_scan.c).
 */
#ifndef GENCACHE_TIER_REDIS_OPS_H
#define GENCACHE_TIER_REDIS_OPS_H

#include "tier/redis.h"

extern const char gencache__redis_get_script[];

/* Lends a connected connection of node n, or NULL when n's breaker is open, no connection frees
 * up before the deadline, or connecting fails (counted as a failure). */
gencache__redis_conn *gencache__redis_acquire(gencache__redis_tier *r, gencache__redis_node *n,
                                              uint64_t deadline_ns);
/* Gives c back to n. ok: the exchange completed (the server answered, whatever it said);
 * otherwise c is closed and the failure feeds n's breaker. */
void gencache__redis_release(gencache__redis_tier *r, gencache__redis_node *n,
                             gencache__redis_conn *c, bool ok);

/* ---- cluster routing (redis_cluster.c) ---- */

/* The hash slot of a Redis key: CRC16 (XMODEM) of the key, or of the part between the first '{'
 * and the next '}' when that part is not empty, modulo 16384. */
unsigned gencache__redis_slot(const char *key, size_t len);
/* Writes the Redis key of an entry key (prefix, and on a cluster the hash tag) to buf, which
 * holds sizeof GENCACHE__REDIS_PREFIX + GENCACHE__KEY_MAX + 2 bytes. */
void gencache__redis_key(const gencache__redis_tier *r, char *buf, const char *key);
#define GENCACHE__REDIS_KEY_SIZE (sizeof GENCACHE__REDIS_PREFIX + GENCACHE__KEY_MAX + 2)

/* Makes the node for host:port (resolving host), or finds the one there is. GENCACHE_OK,
 * GENCACHE_ECONFIG (cannot resolve), GENCACHE_EFULL (too many nodes), GENCACHE_ENOMEM. */
int gencache__redis_node_get(gencache__redis_tier *r, const char *host, long port, long db,
                             gencache__redis_node **out);
void gencache__redis_node_free(gencache__redis_tier *r, gencache__redis_node *n);
/* The node that serves slot (the first seed while the map does not say). */
gencache__redis_node *gencache__redis_node_for(gencache__redis_tier *r, unsigned slot);
/* Reads the slot map (CLUSTER SLOTS) from the first node that answers before the deadline. */
int gencache__redis_refresh(gencache__redis_tier *r, uint64_t deadline_ns);
/* Asks for a slot map read at the next chance (a redirect or a dead node was seen). */
void gencache__redis_refresh_soon(gencache__redis_tier *r);
/* Reads the slot map when it is due, by one caller at a time. */
void gencache__redis_refresh_if_due(gencache__redis_tier *r);
/* The distinct nodes that serve at least one slot (every node when the map is unknown, the one
 * node of a single server), at most max of them. */
size_t gencache__redis_primaries(gencache__redis_tier *r, gencache__redis_node **out, size_t max);

/* One exchange about one key on connection c; asking: send ASKING first. On a redirect it fills
 * *redir (and the return value is ignored); *conn_ok says whether c is still in step. */
typedef int (*gencache__redis_op)(gencache__redis_tier *r, gencache__redis_node *n,
                                  gencache__redis_conn *c, bool asking, void *arg,
                                  uint64_t deadline_ns, gencache__redis_redirect *redir,
                                  bool *conn_ok);
/* Runs op on the node serving rkey's slot, following MOVED and ASK (at most
 * GENCACHE__REDIS_MAX_REDIRECTS). GENCACHE_EUNAVAILABLE when no connection could be had or the
 * redirects did not end; otherwise what op returned. */
int gencache__redis_route(gencache__redis_tier *r, const char *rkey, size_t rlen,
                          uint64_t deadline_ns, gencache__redis_op op, void *arg);
/* Routes one ordinary command whose argv[key_arg] is the key; *out is its reply (an error reply
 * other than a redirect included). */
int gencache__redis_route_command(gencache__redis_tier *r, int key_arg, int argc,
                                  const gencache__redis_arg *argv, uint64_t deadline_ns,
                                  redisReply **out);

/* ---- the Bloom filter (redis_bloom.c) ---- */

#define GENCACHE__REDIS_WRITTEN_CHANNEL "gencache:v1:written"
/* The reuse records of shared layers (src/reuse/records_redis.c): each entry's records live in one
 * hash, GENCACHE__REDIS_REUSE_PREFIX "{<stored key>}" (the entry's hash tag), and each record
 * stored is announced on the channel. A delete of the entry deletes the hash too. */
#define GENCACHE__REDIS_REUSE_CHANNEL  "gencache:v1:reuse"
#define GENCACHE__REDIS_REUSE_PREFIX   "gencache:reuse:v1:"
#define GENCACHE__REDIS_REUSE_KEY_SIZE (sizeof GENCACHE__REDIS_REUSE_PREFIX + GENCACHE__KEY_MAX + 2)
/* Makes the filter when the options ask for one. GENCACHE_OK, GENCACHE_ENOMEM. */
int gencache__redis_bloom_open(gencache__redis_tier *r, double fp_rate, uint64_t capacity);
void gencache__redis_bloom_close(gencache__redis_tier *r);
/* Adds an entry key (this node writes it, or another node said it did). */
void gencache__redis_bloom_note(gencache__redis_tier *r, const char *key, size_t len);
/* True when the filter is ready and says the key cannot be in Redis. */
bool gencache__redis_bloom_rules_out(gencache__redis_tier *r, const char *key);
/* The subscriber lost its connection: messages may be missed, so the filter stops deciding. */
void gencache__redis_bloom_lost(gencache__redis_tier *r);
/* Rebuilds the filter from SCAN over every primary (bounded rate); the new filter decides when
 * the subscription it was started under (gen) is still unbroken at the end. */
int gencache__redis_bloom_rebuild(gencache__redis_tier *r, unsigned gen, const _Atomic bool *stop);

/* ---- many keys (redis_scan.c) ---- */

/* One SCAN step over the tier's keys on c (SCAN cursor MATCH <prefix>* COUNT count): checks the
 * reply's shape and moves cursor on. *out is the reply (free it with freeReplyObject); its
 * element[1] holds the keys. GENCACHE_EPARSE for a reply of another shape; else as
 * gencache__redis_command. */
int gencache__redis_scan_step(gencache__redis_conn *c, char cursor[32], const char *count,
                              uint64_t dl, redisReply **out);

/* The same with another MATCH pattern (the reuse records' hashes, src/reuse/records_redis.c). */
int gencache__redis_scan_match(gencache__redis_conn *c, char cursor[32], const char *pattern,
                               const char *count, uint64_t dl, redisReply **out);

/* Removes a stored value that failed its check (rkey: the Redis key), only if it is still the
 * same record (when e is known); counts it and reports it to on_evict. */
void gencache__redis_drop_corrupt(gencache__redis_tier *r, const char *rkey, gencache__entry *e);

int gencache__redis_remove_if(gencache__tier *t, gencache__entry_pred pred, void *userdata,
                              uint64_t *count);

#endif
