/*
 * records_redis.c: the reuse records of shared layers, kept in the Redis tier next to their
 * entries, so that every node matches what any node stored. An entry's records live in one hash,
 * GENCACHE__REDIS_REUSE_PREFIX "{<stored key>}" (the entry's hash tag, so the same cluster slot),
 * one field per record kind plus "at", the store time; it expires with the entry and a delete of
 * the entry deletes it. The script that writes a record also publishes it on
 * GENCACHE__REDIS_REUSE_CHANNEL, and every node's subscriber hands it to the local table. After
 * each subscription a loader thread reads every hash (SCAN of every primary) into the table, for
 * what was published while the node was away or before it started. A record whose entry no tier
 * holds is asked about in Redis (gencache__reuse_net_check): gone there, it is dropped; there with
 * no entry for longer than GRACE_MS (the entry's write-back would have landed), it is deleted.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache.h"
#include "coalesce/coalesce.h"
#include "reuse.h"
#include "tier/redis_ops.h"

/* A value: the record (GENCACHE__REUSE_REC_BYTES), then the stored key's 32 hex bytes. A message:
 * MAGIC, the publishing node's id (u64), the value. */
#define MAGIC         "GCR1"
#define VALUE_BYTES   (GENCACHE__REUSE_REC_BYTES + 32)
#define MSG_BYTES     (4 + 8 + VALUE_BYTES)
#define SCAN_COUNT    "256"
#define SCAN_PAUSE_NS 5000000u
#define RETRY_MS      1000u
/* How long a record may wait in Redis for its entry: a write-back layer's value reaches Redis
 * after the store returns, the record before it. */
#define GRACE_MS 30000u

struct gencache__reuse_net {
    gencache *cache;
    gencache__redis_tier *r;
    gencache__reuse *records;
    pthread_t thread;
    pthread_mutex_t mu; /* guards stop, wanted, ready; wakes the loader */
    pthread_cond_t wake;
    bool stop, wanted, ready;
    _Atomic bool stop_flag; /* stop, readable by the scan without the lock */
    _Atomic uint64_t heard, loaded, rebuilds;
    _Atomic bool failing; /* the last share failed: logged once until one succeeds again */
};

/* KEYS[1]: the hash; ARGV: field, value, at (ms), ttl (ms, "0": none), channel, message. */
static const char share_script[] = "redis.call('HSET', KEYS[1], ARGV[1], ARGV[2], 'at', ARGV[3])\n"
                                   "if ARGV[4] == '0' then redis.call('PERSIST', KEYS[1])\n"
                                   "else redis.call('PEXPIRE', KEYS[1], ARGV[4]) end\n"
                                   "redis.call('PUBLISH', ARGV[5], ARGV[6])\n"
                                   "return 1\n";

/* KEYS[1]: the entry, KEYS[2]: its hash; ARGV: field, now (ms), grace (ms). 0: the record is
 * gone (or was garbage and is deleted now); 1: there, its entry may yet arrive; 2: the entry is
 * there. */
static const char check_script[] =
    "if redis.call('EXISTS', KEYS[1]) == 1 then return 2 end\n"
    "if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0 then return 0 end\n"
    "local at = tonumber(redis.call('HGET', KEYS[2], 'at')) or 0\n"
    "if tonumber(ARGV[2]) - at > tonumber(ARGV[3]) then\n"
    "  redis.call('DEL', KEYS[2])\n"
    "  return 0\n"
    "end\n"
    "return 1\n";

static uint64_t deadline(const gencache__redis_tier *r)
{
    return gencache__redis_now_ns() + (uint64_t)r->timeout_ms * 1000000u;
}

/* The stored key of rec ("<layer>/<hex>") into key (GENCACHE__KEY_MAX + 1 bytes). */
static void stored_key(const gencache__reuse_net *n, const gencache__reuse_rec *rec, char *key)
{
    const char *name = n->cache->layers[rec->layer].name;
    size_t ln = strlen(name);
    memcpy(key, name, ln);
    key[ln] = '/';
    gencache__reuse_hex_encode(rec->stored, 32, key + ln + 1);
}

static void hash_key(const char *key, char *out)
{
    snprintf(out, GENCACHE__REDIS_REUSE_KEY_SIZE, GENCACHE__REDIS_REUSE_PREFIX "{%s}", key);
}

/* Adds the record of a value read from Redis or heard; false when it is not one of ours. */
static bool add_value(gencache__reuse_net *n, const unsigned char *v)
{
    gencache__reuse_rec rec;
    char name[GENCACHE__LAYER_NAME_MAX + 1];
    gencache__reuse_rec_decode(v, &rec, name);
    memcpy(rec.stored, v + GENCACHE__REUSE_REC_BYTES, 32);
    int li = gencache__reuse_layer_index(n->cache, name);
    /* A layer this node does not share keeps its own records (and another tenant's scope). */
    if (li < 0 || !n->cache->layers[li].shared || rec.kind < GENCACHE__REUSE_IMAGE ||
        rec.kind > GENCACHE__REUSE_PROMPT)
        return false;
    rec.layer = (uint32_t)li;
    return gencache__reuse_add(n->records, &rec) == GENCACHE_OK;
}

int gencache__reuse_net_share(gencache__reuse_net *n, const gencache__reuse_rec *rec,
                              uint64_t ttl_ms, uint64_t size)
{
    gencache__redis_tier *r = n->r;
    if (size > r->max_value_bytes)
        return GENCACHE_OK; /* the entry never reaches Redis: the record stays this node's */
    unsigned char msg[MSG_BYTES];
    memcpy(msg, MAGIC, 4);
    gencache__le64_put(msg + 4, r->node_id);
    gencache__reuse_rec_encode(rec, n->cache->layers[rec->layer].name, msg + 12);
    memcpy(msg + 12 + GENCACHE__REUSE_REC_BYTES, rec->stored, 32);
    char key[GENCACHE__KEY_MAX + 1], hkey[GENCACHE__REDIS_REUSE_KEY_SIZE], field[4], at[24],
        ttl[24];
    stored_key(n, rec, key);
    hash_key(key, hkey);
    snprintf(field, sizeof field, "%u", rec->kind);
    snprintf(at, sizeof at, "%llu", (unsigned long long)gencache__cache_now_ms(n->cache));
    snprintf(ttl, sizeof ttl, "%llu", (unsigned long long)ttl_ms);
    gencache__redis_arg a[10] = {
        {{"EVAL"}, {4}},
        {{share_script}, {sizeof share_script - 1}},
        {{"1"}, {1}},
        {{hkey}, {strlen(hkey)}},
        {{field}, {strlen(field)}},
        {{msg + 12}, {VALUE_BYTES}},
        {{at}, {strlen(at)}},
        {{ttl}, {strlen(ttl)}},
        {{GENCACHE__REDIS_REUSE_CHANNEL}, {sizeof GENCACHE__REDIS_REUSE_CHANNEL - 1}},
        {{msg}, {MSG_BYTES}}};
    redisReply *rep = NULL;
    int rc = gencache__redis_route_command(r, 3, 10, a, deadline(r), &rep);
    if (rc == GENCACHE_OK && rep->type != REDIS_REPLY_INTEGER)
        rc = GENCACHE_EIO;
    bool was_failing = atomic_exchange(&n->failing, rc != GENCACHE_OK);
    if (rc != GENCACHE_OK && !was_failing)
        gencache__log_msg(r->log, GENCACHE_LOG_WARN,
                          "reuse: records are kept by the node that stores them until Redis "
                          "takes one again (%s: %s)",
                          key,
                          rc == GENCACHE_EIO && rep->type == REDIS_REPLY_ERROR
                              ? rep->str
                              : gencache_strerror(rc));
    else if (rc == GENCACHE_OK && was_failing)
        gencache__log_msg(r->log, GENCACHE_LOG_INFO, "reuse: Redis takes records again");
    if (rep)
        freeReplyObject(rep);
    return rc;
}

int gencache__reuse_net_check(gencache__reuse_net *n, const gencache__reuse_rec *rec)
{
    static const unsigned char none[32];
    if (memcmp(rec->stored, none, 32) == 0)
        return GENCACHE_OK; /* read from the file: this node's own, and its entry is gone */
    gencache__redis_tier *r = n->r;
    char key[GENCACHE__KEY_MAX + 1], rkey[GENCACHE__REDIS_KEY_SIZE],
        hkey[GENCACHE__REDIS_REUSE_KEY_SIZE], field[4], now[24], grace[24];
    stored_key(n, rec, key);
    gencache__redis_key(r, rkey, key);
    hash_key(key, hkey);
    snprintf(field, sizeof field, "%u", rec->kind);
    snprintf(now, sizeof now, "%llu", (unsigned long long)gencache__cache_now_ms(n->cache));
    snprintf(grace, sizeof grace, "%u", GRACE_MS);
    gencache__redis_arg a[8] = {{{"EVAL"}, {4}},
                                {{check_script}, {sizeof check_script - 1}},
                                {{"2"}, {1}},
                                {{rkey}, {strlen(rkey)}},
                                {{hkey}, {strlen(hkey)}},
                                {{field}, {strlen(field)}},
                                {{now}, {strlen(now)}},
                                {{grace}, {strlen(grace)}}};
    redisReply *rep = NULL;
    int rc = gencache__redis_route_command(r, 3, 8, a, deadline(r), &rep);
    if (rc == GENCACHE_OK)
        rc = rep->type != REDIS_REPLY_INTEGER ? GENCACHE_EUNAVAILABLE
             : rep->integer == 0              ? GENCACHE_OK
                                              : GENCACHE_EEXIST;
    else
        rc = GENCACHE_EUNAVAILABLE;
    if (rep)
        freeReplyObject(rep);
    return rc;
}

void gencache__reuse_net_heard(gencache__reuse_net *n, const void *msg, size_t len)
{
    const unsigned char *p = msg;
    if (len != MSG_BYTES || memcmp(p, MAGIC, 4) != 0) {
        gencache__log_msg(n->r->log, GENCACHE_LOG_WARN,
                          "reuse: ignoring a malformed message on " GENCACHE__REDIS_REUSE_CHANNEL);
        return;
    }
    if (gencache__le64_get(p + 4) == n->r->node_id)
        return; /* this node's own: in the table already */
    if (add_value(n, p + 12))
        atomic_fetch_add(&n->heard, 1);
}

/* ---- the loader ---- */

/* Reads the hashes named in keys (one SCAN step's) on c, pipelined, into the table. */
static int load_batch(gencache__reuse_net *n, gencache__redis_conn *c, const redisReply *keys,
                      uint64_t dl)
{
    size_t sent = 0;
    int rc = GENCACHE_OK;
    for (size_t i = 0; i < keys->elements && rc == GENCACHE_OK; i++) {
        const redisReply *k = keys->element[i];
        if (k->type != REDIS_REPLY_STRING)
            continue;
        gencache__redis_arg a[2] = {{{"HGETALL"}, {7}}, {{k->str}, {(size_t)k->len}}};
        rc = gencache__redis_send(c, 2, a, dl);
        if (rc == GENCACHE_OK)
            sent++;
    }
    for (size_t i = 0; i < sent && rc == GENCACHE_OK; i++) {
        redisReply *rep = NULL;
        rc = gencache__redis_reply(c, dl, &rep);
        for (size_t f = 0;
             rc == GENCACHE_OK && rep->type == REDIS_REPLY_ARRAY && f + 1 < rep->elements; f += 2) {
            const redisReply *name = rep->element[f], *value = rep->element[f + 1];
            if (name->type == REDIS_REPLY_STRING && name->len == 1 && name->str[0] >= '1' &&
                name->str[0] <= '3' && value->type == REDIS_REPLY_STRING &&
                value->len == VALUE_BYTES && add_value(n, (const unsigned char *)value->str))
                atomic_fetch_add(&n->loaded, 1);
        }
        if (rep)
            freeReplyObject(rep);
    }
    return rc;
}

static int load_node(gencache__reuse_net *n, gencache__redis_node *node)
{
    gencache__redis_tier *r = n->r;
    char cursor[32] = "0";
    int rc = GENCACHE_OK;
    do {
        uint64_t dl = gencache__redis_now_ns() + (uint64_t)(r->timeout_ms + 1000) * 1000000u;
        gencache__redis_conn *c = gencache__redis_acquire(r, node, dl);
        if (!c)
            return GENCACHE_EUNAVAILABLE;
        redisReply *rep = NULL;
        rc = gencache__redis_scan_match(c, cursor, GENCACHE__REDIS_REUSE_PREFIX "*", SCAN_COUNT, dl,
                                        &rep);
        if (rc == GENCACHE_OK)
            rc = load_batch(n, c, rep->element[1], dl);
        gencache__redis_release(r, node, c, rc == GENCACHE_OK);
        if (rep)
            freeReplyObject(rep);
        struct timespec ts = {0, SCAN_PAUSE_NS};
        nanosleep(&ts, NULL);
    } while (rc == GENCACHE_OK && strcmp(cursor, "0") != 0 && !atomic_load(&n->stop_flag));
    return atomic_load(&n->stop_flag) ? GENCACHE_EUNAVAILABLE : rc;
}

static int rebuild(gencache__reuse_net *n)
{
    gencache__redis_tier *r = n->r;
    if (r->cluster)
        gencache__redis_refresh(r, deadline(r));
    gencache__redis_node *nodes[GENCACHE__REDIS_MAX_NODES];
    size_t count = gencache__redis_primaries(r, nodes, GENCACHE__REDIS_MAX_NODES);
    int rc = GENCACHE_OK;
    for (size_t i = 0; i < count && rc == GENCACHE_OK; i++)
        rc = load_node(n, nodes[i]);
    if (rc == GENCACHE_OK)
        atomic_fetch_add(&n->rebuilds, 1);
    return rc;
}

static void *loader(void *arg)
{
    gencache__reuse_net *n = arg;
    pthread_mutex_lock(&n->mu);
    while (!n->stop) {
        if (!n->wanted || !n->ready) {
            pthread_cond_wait(&n->wake, &n->mu);
            continue;
        }
        n->wanted = false;
        pthread_mutex_unlock(&n->mu);
        int rc = rebuild(n);
        pthread_mutex_lock(&n->mu);
        if (rc != GENCACHE_OK && !n->stop) {
            /* A node did not answer: try again in a while (a new subscription asks anyway). */
            uint64_t at = gencache__redis_now_ns() + (uint64_t)RETRY_MS * 1000000u;
            struct timespec ts = {(time_t)(at / 1000000000u), (long)(at % 1000000000u)};
            pthread_cond_timedwait(&n->wake, &n->mu, &ts);
            n->wanted = true;
        }
    }
    pthread_mutex_unlock(&n->mu);
    return NULL;
}

static void signal_with(gencache__reuse_net *n, bool wanted, bool ready)
{
    pthread_mutex_lock(&n->mu);
    n->wanted |= wanted;
    n->ready |= ready;
    pthread_cond_broadcast(&n->wake);
    pthread_mutex_unlock(&n->mu);
}

void gencache__reuse_net_want(gencache__reuse_net *n)
{
    signal_with(n, true, false);
}

void gencache__reuse_net_ready(gencache__reuse_net *n)
{
    signal_with(n, false, true);
}

int gencache__reuse_net_new(gencache *cache, gencache__tier *shared, gencache__reuse *records,
                            gencache__reuse_net **out)
{
    *out = NULL;
    gencache__reuse_net *n = calloc(1, sizeof *n);
    if (!n)
        return GENCACHE_ENOMEM;
    n->cache = cache;
    n->r = (gencache__redis_tier *)shared;
    n->records = records;
    pthread_mutex_init(&n->mu, NULL);
    gencache__cond_init_mono(&n->wake);
    if (pthread_create(&n->thread, NULL, loader, n) != 0) {
        pthread_mutex_destroy(&n->mu);
        pthread_cond_destroy(&n->wake);
        free(n);
        return GENCACHE_ENOMEM;
    }
    *out = n;
    return GENCACHE_OK;
}

void gencache__reuse_net_free(gencache__reuse_net *n)
{
    if (!n)
        return;
    pthread_mutex_lock(&n->mu);
    n->stop = true;
    atomic_store(&n->stop_flag, true);
    pthread_cond_broadcast(&n->wake);
    pthread_mutex_unlock(&n->mu);
    pthread_join(n->thread, NULL);
    pthread_mutex_destroy(&n->mu);
    pthread_cond_destroy(&n->wake);
    free(n);
}

void gencache__reuse_net_counts(gencache__reuse_net *n, uint64_t *heard, uint64_t *loaded,
                                uint64_t *rebuilds)
{
    *heard = atomic_load(&n->heard);
    *loaded = atomic_load(&n->loaded);
    *rebuilds = atomic_load(&n->rebuilds);
}
