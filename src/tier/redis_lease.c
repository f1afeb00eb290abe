/*
 * redis_lease.c: the shared tier's side of single flight across nodes. A node about to compute
 * a key's value takes a lease in Redis, "gencache:lease:<key>" (hash-tagged like the entry on a
 * cluster, so both live in one slot and one script sees both), set NX with a random token and a
 * TTL; it renews the lease while it computes and deletes it (only if the token is still its own)
 * when it is done. A holder that dies stops renewing, and its lease expires and passes on.
 */
#include <stdio.h>
#include <string.h>

#include "tier/redis_ops.h"

#define LEASE_PREFIX "gencache:lease:"

/* KEYS[1] the lease, KEYS[2] the entry; ARGV token, TTL (ms). 2: the entry is there already
 * (nothing to compute); 1: the lease is ours; 0: another holder has it. */
static const char acquire_script[] =
    "if redis.call('EXISTS', KEYS[2]) == 1 then return 2 end\n"
    "if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end\n"
    "return 0\n";
/* KEYS[1] the lease; ARGV token [, TTL]: renew (with a TTL) or delete it, if still ours. */
static const char renew_script[] = "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end\n"
                                   "if ARGV[2] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) "
                                   "end\n"
                                   "return redis.call('DEL', KEYS[1])\n";

static void lease_key(const gencache__redis_tier *r, char *buf, size_t size, const char *key)
{
    snprintf(buf, size, r->cluster ? LEASE_PREFIX "{%s}" : LEASE_PREFIX "%s", key);
}

static uint64_t deadline(const gencache__redis_tier *r)
{
    return gencache__redis_now_ns() + (uint64_t)r->timeout_ms * 1000000u;
}

int gencache__redis_lease_acquire(gencache__tier *t, const char *key, uint64_t token,
                                  uint32_t ttl_ms)
{
    gencache__redis_tier *r = (gencache__redis_tier *)t;
    char lkey[sizeof LEASE_PREFIX + GENCACHE__KEY_MAX + 2], ekey[GENCACHE__REDIS_KEY_SIZE];
    char tok[24], ttl[16];
    lease_key(r, lkey, sizeof lkey, key);
    gencache__redis_key(r, ekey, key);
    snprintf(tok, sizeof tok, "%016llx", (unsigned long long)token);
    snprintf(ttl, sizeof ttl, "%u", ttl_ms ? ttl_ms : 1);
    gencache__redis_arg a[7] = {{{"EVAL"}, {4}},
                                {{acquire_script}, {sizeof acquire_script - 1}},
                                {{"2"}, {1}},
                                {{lkey}, {strlen(lkey)}},
                                {{ekey}, {strlen(ekey)}},
                                {{tok}, {strlen(tok)}},
                                {{ttl}, {strlen(ttl)}}};
    redisReply *rep = NULL;
    int rc = gencache__redis_route_command(r, 3, 7, a, deadline(r), &rep);
    if (rc == GENCACHE_OK)
        rc = rep->type != REDIS_REPLY_INTEGER ? GENCACHE_EUNAVAILABLE
             : rep->integer == 1              ? GENCACHE_OK
             : rep->integer == 2              ? GENCACHE_EEXIST
                                              : GENCACHE_EBUSY;
    else
        rc = GENCACHE_EUNAVAILABLE;
    if (rep)
        freeReplyObject(rep);
    return rc;
}

int gencache__redis_lease_renew(gencache__tier *t, const char *key, uint64_t token, uint32_t ttl_ms)
{
    gencache__redis_tier *r = (gencache__redis_tier *)t;
    char lkey[sizeof LEASE_PREFIX + GENCACHE__KEY_MAX + 2], tok[24], ttl[16];
    lease_key(r, lkey, sizeof lkey, key);
    snprintf(tok, sizeof tok, "%016llx", (unsigned long long)token);
    snprintf(ttl, sizeof ttl, "%u", ttl_ms);
    gencache__redis_arg a[6] = {{{"EVAL"}, {4}},        {{renew_script}, {sizeof renew_script - 1}},
                                {{"1"}, {1}},           {{lkey}, {strlen(lkey)}},
                                {{tok}, {strlen(tok)}}, {{ttl}, {strlen(ttl)}}};
    redisReply *rep = NULL;
    int rc = gencache__redis_route_command(r, 3, ttl_ms ? 6 : 5, a, deadline(r), &rep);
    if (rc == GENCACHE_OK)
        rc = rep->type == REDIS_REPLY_INTEGER && rep->integer == 1 ? GENCACHE_OK
                                                                   : GENCACHE_ENOTFOUND;
    if (rep)
        freeReplyObject(rep);
    return rc;
}
