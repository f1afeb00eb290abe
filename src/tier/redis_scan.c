/*
 * redis_scan.c: the Redis tier's operations over many keys. remove_if walks the tier's keys with
 * SCAN (MATCH on the key prefix), reads only each record's head (GETRANGE 0 4095, pipelined per
 * SCAN batch) to build the metadata-only entry the predicate sees, and removes the matches (and
 * their reuse records) with a compare-and-delete script, so a value rewritten between the read
 * and the delete survives.
 * Each SCAN step has its own deadline; the walk visits at most SCAN_LIMIT keys per call.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tier/entry_codec.h"
#include "tier/redis_ops.h"

#define SCAN_COUNT "256"
#define SCAN_LIMIT 10000000u
#define HEAD_BYTES 4096
#define MAX_BATCH  1024

/* KEYS[1]; ARGV[1]: the record's checksum and creation time (bytes 24-39) it must still have. */
static const char del_if_same[] = "if redis.call('GETRANGE', KEYS[1], 24, 39) == ARGV[1] then\n"
                                  "  return redis.call('DEL', KEYS[1])\n"
                                  "end\n"
                                  "return 0\n";

/* The same, and KEYS[2], the entry's reuse records (src/reuse/records_redis.c), with it. */
static const char del_if_same_with_records[] =
    "if redis.call('GETRANGE', KEYS[1], 24, 39) == ARGV[1] then\n"
    "  redis.call('DEL', KEYS[2])\n"
    "  return redis.call('DEL', KEYS[1])\n"
    "end\n"
    "return 0\n";

static int send_del_if_same(gencache__redis_conn *c, const char *rkey, size_t rlen,
                            const char *reuse_key, uint64_t checksum, uint64_t created, uint64_t dl)
{
    unsigned char ident[16];
    gencache__le64_put(ident, checksum);
    gencache__le64_put(ident + 8, created);
    gencache__redis_arg a[6] = {{{"EVAL"}, {4}},
                                {{del_if_same_with_records}, {sizeof del_if_same_with_records - 1}},
                                {{"2"}, {1}},
                                {{rkey}, {rlen}},
                                {{reuse_key}, {strlen(reuse_key)}},
                                {{ident}, {16}}};
    return gencache__redis_send(c, 6, a, dl);
}

void gencache__redis_drop_corrupt(gencache__redis_tier *r, const char *rkey, gencache__entry *e)
{
    gencache__log_msg(r->log, GENCACHE_LOG_WARN,
                      "redis tier %s: dropping %s: stored value fails "
                      "its check",
                      r->where, rkey);
    atomic_fetch_add(&r->corrupt, 1);
    uint64_t dl = gencache__redis_now_ns() + (uint64_t)r->timeout_ms * 1000000u;
    unsigned char ident[16];
    gencache__redis_arg del_same[5] = {{{"EVAL"}, {4}},
                                       {{del_if_same}, {sizeof del_if_same - 1}},
                                       {{"1"}, {1}},
                                       {{rkey}, {strlen(rkey)}},
                                       {{ident}, {16}}};
    gencache__redis_arg del[2] = {{{"DEL"}, {3}}, {{rkey}, {strlen(rkey)}}};
    redisReply *rep = NULL;
    if (e) {
        gencache__le64_put(ident, gencache__entry_checksum(e));
        gencache__le64_put(ident + 8, e->created_ms);
        gencache__redis_route_command(r, 3, 5, del_same, dl, &rep);
    } else {
        gencache__redis_route_command(r, 1, 2, del, dl, &rep);
    }
    if (rep)
        freeReplyObject(rep);
    if (e && r->base.on_evict)
        r->base.on_evict(r->base.on_evict_userdata, e, GENCACHE__EVICT_CORRUPT);
}

/* Builds the metadata-only entry of one record head; NULL when it is not a record of ours. */
static gencache__entry *head_entry(gencache__redis_tier *r, gencache__redis_conn *c,
                                   const redisReply *rep, const redisReply *key, uint64_t dl,
                                   int *rc)
{
    if (rep->type != REDIS_REPLY_STRING || rep->len < GENCACHE__CODEC_MIN_LEN)
        return NULL;
    const unsigned char *p = (const unsigned char *)rep->str + GENCACHE__CODEC_OFF_LEN;
    size_t rec_len = (size_t)p[0] | (size_t)p[1] << 8 | (size_t)p[2] << 16 | (size_t)p[3] << 24;
    redisReply *full = NULL;
    const char *buf = rep->str;
    size_t len = (size_t)rep->len;
    if (rec_len > len && rec_len <= 5u * GENCACHE__CODEC_STR_MAX + 4096u) {
        /* A long record (many tags): read all of it. */
        char end[24];
        snprintf(end, sizeof end, "%zu", rec_len - 1);
        gencache__redis_arg a[4] = {{{"GETRANGE"}, {8}},
                                    {{key->str}, {(size_t)key->len}},
                                    {{"0"}, {1}},
                                    {{end}, {strlen(end)}}};
        *rc = gencache__redis_command(c, dl, &full, 4, a);
        if (*rc != GENCACHE_OK || full->type != REDIS_REPLY_STRING) {
            if (full)
                freeReplyObject(full);
            return NULL;
        }
        buf = full->str;
        len = (size_t)full->len;
    }
    gencache__codec_meta m;
    gencache__entry *e = NULL;
    gencache__seal quiet = {.keys = r->seal.keys}; /* a scan refuses nothing anyone asked for */
    if (gencache__codec_decode_sealed(&quiet, r->alloc, buf, len, &m) == GENCACHE_OK) {
        gencache__codec_entry_new(r->alloc, &m, false, &e);
        gencache__codec_meta_clear(&m);
    }
    if (full)
        freeReplyObject(full);
    return e;
}

typedef struct match {
    const redisReply *key;
    uint64_t checksum, created_ms;
    char reuse_key[GENCACHE__REDIS_REUSE_KEY_SIZE];
} match;

/* Keys [from, from + n) of a SCAN batch: reads their heads, asks pred, removes the matches. */
static int scan_batch(gencache__redis_tier *r, gencache__redis_conn *c, const redisReply *keys,
                      size_t from, size_t n, gencache__entry_pred pred, void *userdata,
                      uint64_t *count, uint64_t dl)
{
    int rc = GENCACHE_OK;
    for (size_t i = 0; i < n && rc == GENCACHE_OK; i++) {
        const redisReply *k = keys->element[from + i];
        gencache__redis_arg a[4] = {
            {{"GETRANGE"}, {8}}, {{k->str}, {(size_t)k->len}}, {{"0"}, {1}}, {{"4095"}, {4}}};
        rc = gencache__redis_send(c, 4, a, dl);
    }
    if (rc != GENCACHE_OK)
        return rc;
    redisReply **heads = calloc(n ? n : 1, sizeof *heads);
    match *matches = calloc(n ? n : 1, sizeof *matches);
    if (!heads || !matches) {
        free(heads);
        free(matches);
        return GENCACHE_ENOMEM;
    }
    for (size_t i = 0; i < n && rc == GENCACHE_OK; i++)
        rc = gencache__redis_reply(c, dl, &heads[i]);
    size_t n_match = 0;
    for (size_t i = 0; i < n && rc == GENCACHE_OK; i++) {
        const redisReply *k = keys->element[from + i];
        gencache__entry *e = head_entry(r, c, heads[i], k, dl, &rc);
        if (!e)
            continue;
        if (pred(userdata, e)) {
            matches[n_match] = (match){k, gencache__entry_checksum(e), e->created_ms, ""};
            snprintf(matches[n_match].reuse_key, sizeof matches[n_match].reuse_key,
                     GENCACHE__REDIS_REUSE_PREFIX "{%s}", e->key);
            n_match++;
        }
        gencache__entry_release(e);
    }
    for (size_t i = 0; i < n; i++)
        if (heads[i])
            freeReplyObject(heads[i]);
    free(heads);
    size_t sent = 0;
    for (; sent < n_match && rc == GENCACHE_OK; sent++)
        rc = send_del_if_same(c, matches[sent].key->str, (size_t)matches[sent].key->len,
                              matches[sent].reuse_key, matches[sent].checksum,
                              matches[sent].created_ms, dl);
    free(matches);
    for (size_t i = 0; i < sent && rc == GENCACHE_OK; i++) {
        redisReply *rep = NULL;
        rc = gencache__redis_reply(c, dl, &rep);
        if (rc == GENCACHE_OK && rep->type == REDIS_REPLY_INTEGER && rep->integer > 0)
            (*count)++;
        if (rep)
            freeReplyObject(rep);
    }
    return rc;
}

int gencache__redis_scan_step(gencache__redis_conn *c, char cursor[32], const char *count,
                              uint64_t dl, redisReply **out)
{
    return gencache__redis_scan_match(c, cursor, GENCACHE__REDIS_PREFIX "*", count, dl, out);
}

int gencache__redis_scan_match(gencache__redis_conn *c, char cursor[32], const char *pattern,
                               const char *count, uint64_t dl, redisReply **out)
{
    gencache__redis_arg a[6] = {{{"SCAN"}, {4}},  {{cursor}, {strlen(cursor)}},
                                {{"MATCH"}, {5}}, {{pattern}, {strlen(pattern)}},
                                {{"COUNT"}, {5}}, {{count}, {strlen(count)}}};
    redisReply *rep = NULL;
    int rc = gencache__redis_command(c, dl, &rep, 6, a);
    if (rc == GENCACHE_OK &&
        (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
         rep->element[0]->type != REDIS_REPLY_STRING || rep->element[0]->len >= 31 ||
         rep->element[1]->type != REDIS_REPLY_ARRAY))
        rc = GENCACHE_EPARSE;
    if (rc == GENCACHE_OK) {
        memcpy(cursor, rep->element[0]->str, (size_t)rep->element[0]->len);
        cursor[rep->element[0]->len] = '\0';
        *out = rep;
    } else if (rep) {
        freeReplyObject(rep);
    }
    return rc;
}

/* Walks one node's keys. */
static int remove_if_node(gencache__redis_tier *r, gencache__redis_node *n,
                          gencache__entry_pred pred, void *userdata, uint64_t *count)
{
    char cursor[32] = "0";
    uint64_t visited = 0;
    int rc = GENCACHE_OK;
    gencache__redis_conn *c = gencache__redis_acquire(
        r, n, gencache__redis_now_ns() + (uint64_t)r->timeout_ms * 1000000u);
    if (!c)
        return GENCACHE_EUNAVAILABLE;
    do {
        uint64_t dl = gencache__redis_now_ns() + (uint64_t)r->timeout_ms * 1000000u;
        redisReply *rep = NULL;
        rc = gencache__redis_scan_step(c, cursor, SCAN_COUNT, dl, &rep);
        if (rc == GENCACHE_OK) {
            visited += rep->element[1]->elements;
            const redisReply *keys = rep->element[1];
            for (size_t i = 0; i < keys->elements && rc == GENCACHE_OK; i += MAX_BATCH) {
                size_t k = keys->elements - i < MAX_BATCH ? keys->elements - i : MAX_BATCH;
                for (size_t j = 0; j < k; j++)
                    if (keys->element[i + j]->type != REDIS_REPLY_STRING)
                        rc = GENCACHE_EPARSE;
                if (rc == GENCACHE_OK)
                    rc = scan_batch(r, c, keys, i, k, pred, userdata, count, dl);
            }
        }
        if (rep)
            freeReplyObject(rep);
    } while (rc == GENCACHE_OK && strcmp(cursor, "0") != 0 && visited < SCAN_LIMIT);
    gencache__redis_release(r, n, c, rc == GENCACHE_OK);
    if (rc != GENCACHE_OK)
        gencache__log_msg(r->log, GENCACHE_LOG_WARN, "redis tier %s: invalidation scan stopped: %s",
                          n->where, gencache_strerror(rc));
    return rc;
}

int gencache__redis_remove_if(gencache__tier *t, gencache__entry_pred pred, void *userdata,
                              uint64_t *count)
{
    gencache__redis_tier *r = (gencache__redis_tier *)t;
    if (count)
        *count = 0;
    if (!pred || !count)
        return GENCACHE_EINVAL;
    /* On a cluster every primary holds its own share of the keys: walk each. */
    if (r->cluster && atomic_load(&r->refreshes) == 0)
        gencache__redis_refresh_if_due(r);
    gencache__redis_node *nodes[GENCACHE__REDIS_MAX_NODES];
    size_t n = gencache__redis_primaries(r, nodes, GENCACHE__REDIS_MAX_NODES);
    int rc = GENCACHE_OK;
    for (size_t i = 0; i < n; i++) {
        int nrc = remove_if_node(r, nodes[i], pred, userdata, count);
        if (nrc != GENCACHE_OK && rc != GENCACHE_ENOMEM)
            rc = nrc;
    }
    if (rc != GENCACHE_OK) {
        atomic_fetch_add(&r->backend_errors, 1);
        return rc == GENCACHE_ENOMEM ? rc : GENCACHE_EUNAVAILABLE;
    }
    return GENCACHE_OK;
}
