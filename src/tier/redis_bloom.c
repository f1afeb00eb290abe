/*
 * redis_bloom.c: a Bloom filter of the keys the Redis tier holds, per node, so a get for a key
 * no node wrote skips its round trip. The filter is kept current from this node's puts (added
 * before the SET is sent) and from every other node's: each put publishes its key on
 * GENCACHE__REDIS_WRITTEN_CHANNEL in the same pipeline, ahead of the SET, and the subscriber
 * thread adds what it hears. It decides only while that subscription is unbroken and a full
 * rebuild (SCAN of every primary, at a bounded rate) made under it has completed: a lost
 * connection, which may have lost messages, turns it off until the next rebuild. Keys are never
 * removed (deletes and expiry leave false positives); the periodic rebuild sheds them.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tier/bloom.h"
#include "tier/redis_ops.h"

#define SCAN_COUNT "1000"
/* Between SCAN steps: at most ~1000 keys per 5 ms per node, so a rebuild never crowds out the
 * traffic it serves. */
#define SCAN_PAUSE_NS 5000000u

int gencache__redis_bloom_open(gencache__redis_tier *r, double fp_rate, uint64_t capacity)
{
    pthread_rwlock_init(&r->bloom_lock, NULL);
    if (!(fp_rate > 0))
        return GENCACHE_OK;
    r->bloom_fp_rate = fp_rate;
    r->bloom_capacity = capacity ? capacity : 1000000;
    r->bloom = gencache__bloom_new(r->bloom_capacity, fp_rate);
    return r->bloom ? GENCACHE_OK : GENCACHE_ENOMEM;
}

void gencache__redis_bloom_close(gencache__redis_tier *r)
{
    gencache__bloom_free(r->bloom);
    gencache__bloom_free(r->bloom_next);
    r->bloom = r->bloom_next = NULL;
    pthread_rwlock_destroy(&r->bloom_lock);
}

void gencache__redis_bloom_note(gencache__redis_tier *r, const char *key, size_t len)
{
    if (!(r->bloom_fp_rate > 0)) /* set once at open; r->bloom itself is swapped under the lock */
        return;
    uint64_t h = gencache__checksum(key, len);
    pthread_rwlock_rdlock(&r->bloom_lock);
    gencache__bloom_add(r->bloom, h);
    if (r->bloom_next)
        gencache__bloom_add(r->bloom_next, h);
    pthread_rwlock_unlock(&r->bloom_lock);
}

bool gencache__redis_bloom_rules_out(gencache__redis_tier *r, const char *key)
{
    if (!(r->bloom_fp_rate > 0) || !atomic_load(&r->bloom_ready))
        return false;
    uint64_t h = gencache__checksum(key, strlen(key));
    pthread_rwlock_rdlock(&r->bloom_lock);
    bool out = atomic_load(&r->bloom_ready) && !gencache__bloom_maybe(r->bloom, h);
    pthread_rwlock_unlock(&r->bloom_lock);
    if (out)
        atomic_fetch_add(&r->bloom_skips, 1);
    return out;
}

void gencache__redis_bloom_lost(gencache__redis_tier *r)
{
    atomic_store(&r->bloom_ready, false);
}

/* The entry key inside a Redis key of the tier ("gencache:v1:" then the key, braced on a
 * cluster); NULL for anything else. */
static const char *entry_key(const gencache__redis_tier *r, const char *rkey, size_t rlen,
                             size_t *len)
{
    size_t pl = sizeof GENCACHE__REDIS_PREFIX - 1;
    if (rlen <= pl || memcmp(rkey, GENCACHE__REDIS_PREFIX, pl) != 0)
        return NULL;
    rkey += pl;
    rlen -= pl;
    if (r->cluster) {
        if (rlen < 3 || rkey[0] != '{' || rkey[rlen - 1] != '}')
            return NULL;
        rkey++;
        rlen -= 2;
    }
    *len = rlen;
    return rkey;
}

static int scan_node(gencache__redis_tier *r, gencache__redis_node *n, gencache__bloom *into,
                     const _Atomic bool *stop, uint64_t *keys)
{
    char cursor[32] = "0";
    int rc = GENCACHE_OK;
    do {
        uint64_t dl = gencache__redis_now_ns() + (uint64_t)(r->timeout_ms + 1000) * 1000000u;
        gencache__redis_conn *c = gencache__redis_acquire(r, n, dl);
        if (!c)
            return GENCACHE_EUNAVAILABLE;
        redisReply *rep = NULL;
        rc = gencache__redis_scan_step(c, cursor, SCAN_COUNT, dl, &rep);
        gencache__redis_release(r, n, c, rc == GENCACHE_OK);
        if (rc == GENCACHE_OK) {
            const redisReply *ks = rep->element[1];
            for (size_t i = 0; i < ks->elements; i++) {
                size_t len;
                const char *k =
                    ks->element[i]->type == REDIS_REPLY_STRING
                        ? entry_key(r, ks->element[i]->str, (size_t)ks->element[i]->len, &len)
                        : NULL;
                if (k) {
                    gencache__bloom_add(into, gencache__checksum(k, len));
                    (*keys)++;
                }
            }
        }
        if (rep)
            freeReplyObject(rep);
        struct timespec ts = {0, SCAN_PAUSE_NS};
        nanosleep(&ts, NULL);
    } while (rc == GENCACHE_OK && strcmp(cursor, "0") != 0 && !atomic_load(stop));
    return atomic_load(stop) ? GENCACHE_EUNAVAILABLE : rc;
}

int gencache__redis_bloom_rebuild(gencache__redis_tier *r, unsigned gen, const _Atomic bool *stop)
{
    if (!(r->bloom_fp_rate > 0))
        return GENCACHE_OK;
    gencache__bloom *next = gencache__bloom_new(r->bloom_capacity, r->bloom_fp_rate);
    if (!next)
        return GENCACHE_ENOMEM;
    /* From here on every key noted goes into the new filter too; SCAN returns every key that
     * exists for its whole run, and a key written meanwhile is noted. */
    pthread_rwlock_wrlock(&r->bloom_lock);
    r->bloom_next = next;
    pthread_rwlock_unlock(&r->bloom_lock);
    if (r->cluster)
        gencache__redis_refresh(r, gencache__redis_now_ns() + (uint64_t)r->timeout_ms * 1000000u);
    gencache__redis_node *nodes[GENCACHE__REDIS_MAX_NODES];
    size_t n = gencache__redis_primaries(r, nodes, GENCACHE__REDIS_MAX_NODES);
    int rc = GENCACHE_OK;
    uint64_t keys = 0;
    for (size_t i = 0; i < n && rc == GENCACHE_OK; i++)
        rc = scan_node(r, nodes[i], next, stop, &keys);
    gencache__bloom *old = NULL;
    pthread_rwlock_wrlock(&r->bloom_lock);
    r->bloom_next = NULL;
    if (rc == GENCACHE_OK) {
        old = r->bloom;
        r->bloom = next;
        /* Counted before it can turn ready: whoever sees it ready sees this rebuild counted
         * (and, seeing the count, the keys it found). */
        atomic_store(&r->bloom_rebuild_keys, keys);
        atomic_fetch_add(&r->bloom_rebuilds, 1);
        /* Ready only if no message can have been missed since the scan began. */
        atomic_store(&r->bloom_ready,
                     atomic_load(&r->subscribed) && atomic_load(&r->sub_gen) == gen);
    } else {
        old = next;
    }
    pthread_rwlock_unlock(&r->bloom_lock);
    gencache__bloom_free(old);
    return rc;
}
