/*
 * redis.c: the shared tier. Each entry is one Redis string under "gencache:v1:<key>" holding the
 * entry_codec record followed by the value, with its TTL set in Redis (PX). A get is one round
 * trip of MULTI, GET, EVALSHA <refresh script>, EXEC: the read and the TTL refresh (the script
 * reads the TTL from the record in place and PEXPIREs) happen atomically. A small pool of
 * connections serves concurrent callers, every operation has one deadline (timeout_ms), and a
 * circuit breaker turns a Redis that is down into fast misses and dropped puts (counted in
 * backend_errors), never errors or stalls.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "tier/entry_codec.h"
#include "tier/redis.h"
#include "tier/redis_ops.h"

/* The refresh: KEYS[1]; ARGV[1]: "1" to count the access. The TTL a hit re-arms (0: none) is the
 * u64 at byte 8 of a record (v1 or v2; entry_codec.h, GENCACHE__CODEC_OFF_REFRESH), read in
 * place; anything else under the key is left alone for the tier to judge. Lua numbers print as
 * integers below 1e14 (%.14g). It answers the key's PTTL after the refresh, which becomes the
 * entry's expiry: Redis's clock decides, not the writer's. It runs in one MULTI/EXEC with the GET,
 * so the read and the refresh are one atomic step, while the value itself never passes through
 * Lua (a Lua script returning a 1.5 MiB string costs Redis 1.5-2 times a plain GET;
 * docs/tiers.md). */
const char gencache__redis_get_script[] =
    "if ARGV[1] == '1' then\n"
    "  local h = redis.call('GETRANGE', KEYS[1], 0, 15)\n"
    "  local v = string.sub(h, 1, 4)\n"
    "  if string.len(h) == 16 and (v == 'GCE\\1' or v == 'GCE\\2') then\n"
    "    local ttl = struct.unpack('<I8', h, 9)\n"
    "    if ttl > 0 and ttl < 1e14 then redis.call('PEXPIRE', KEYS[1], ttl) end\n"
    "  end\n"
    "end\n"
    "return redis.call('PTTL', KEYS[1])\n";

/* ---- the pool and the breaker ---- */

static uint64_t deadline(gencache__redis_tier *r)
{
    return gencache__redis_now_ns() + (uint64_t)r->timeout_ms * 1000000u;
}

gencache__redis_conn *gencache__redis_acquire(gencache__redis_tier *tier, gencache__redis_node *r,
                                              uint64_t deadline_ns)
{
    pthread_mutex_lock(&r->lock);
    if (r->open) {
        /* One caller probes the server once the backoff has passed; the others fail fast. */
        if (r->probing || gencache__redis_now_ns() < r->retry_at_ns) {
            pthread_mutex_unlock(&r->lock);
            return NULL;
        }
        r->probing = true;
    }
    gencache__redis_conn *c = NULL;
    for (;;) {
        for (int i = 0; i < GENCACHE__REDIS_POOL && !c; i++) {
            /* Prefer a connected one. */
            if (!r->conns[i].busy && r->conns[i].fd >= 0 && r->conns[i].gen == r->gen)
                c = &r->conns[i];
        }
        for (int i = 0; i < GENCACHE__REDIS_POOL && !c; i++)
            if (!r->conns[i].busy)
                c = &r->conns[i];
        if (c)
            break;
        struct timespec ts = {(time_t)(deadline_ns / 1000000000u),
                              (long)(deadline_ns % 1000000000u)};
        if (pthread_cond_timedwait(&r->freed, &r->lock, &ts) == ETIMEDOUT &&
            gencache__redis_now_ns() >= deadline_ns)
            break;
    }
    if (!c) {
        if (r->open)
            r->probing = false;
        pthread_mutex_unlock(&r->lock);
        return NULL;
    }
    c->busy = true;
    bool stale = c->gen != r->gen;
    unsigned gen = r->gen;
    pthread_mutex_unlock(&r->lock);
    if (stale)
        gencache__redis_disconnect(c);
    if (c->fd < 0) {
        c->gen = gen;
        int rc = gencache__redis_connect(r, c, deadline_ns);
        if (rc != GENCACHE_OK) {
            gencache__log_msg(tier->log, GENCACHE_LOG_DEBUG, "redis tier %s: connect: %s", r->where,
                              gencache_strerror(rc));
            gencache__redis_release(tier, r, c, false);
            return NULL;
        }
    }
    return c;
}

void gencache__redis_release(gencache__redis_tier *tier, gencache__redis_node *r,
                             gencache__redis_conn *c, bool ok)
{
    if (!ok)
        gencache__redis_disconnect(c); /* its stream position is unknown */
    pthread_mutex_lock(&r->lock);
    if (ok) {
        if (r->open)
            gencache__log_msg(tier->log, GENCACHE_LOG_INFO, "redis tier %s: reachable again",
                              r->where);
        r->failures = 0;
        r->open = false;
        r->probing = false;
        r->backoff_ms = GENCACHE__REDIS_BACKOFF_MIN_MS;
    } else {
        r->failures++;
        if (r->probing || r->failures >= GENCACHE__REDIS_TRIP) {
            if (!r->open)
                gencache__log_msg(tier->log, GENCACHE_LOG_WARN,
                                  "redis tier %s: unreachable; gets miss and puts are dropped "
                                  "until it answers again",
                                  r->where);
            else if (r->backoff_ms < GENCACHE__REDIS_BACKOFF_MAX_MS)
                r->backoff_ms *= 2;
            if (r->backoff_ms > GENCACHE__REDIS_BACKOFF_MAX_MS)
                r->backoff_ms = GENCACHE__REDIS_BACKOFF_MAX_MS;
            r->open = true;
            r->probing = false;
            r->retry_at_ns = gencache__redis_now_ns() + (uint64_t)r->backoff_ms * 1000000u;
            r->gen++; /* the other pooled connections are as dead as this one */
        }
    }
    c->busy = false;
    pthread_cond_signal(&r->freed);
    pthread_mutex_unlock(&r->lock);
}

/* ---- operations ---- */

/* Loads the get script on n (once per server start: Redis forgets scripts when it restarts). */
static int load_script(gencache__redis_node *n, gencache__redis_conn *c, uint64_t dl, char sha[41])
{
    gencache__redis_arg a[3] = {
        {{"SCRIPT"}, {6}},
        {{"LOAD"}, {4}},
        {{gencache__redis_get_script}, {sizeof gencache__redis_get_script - 1}}};
    redisReply *rep = NULL;
    int rc = gencache__redis_command(c, dl, &rep, 3, a);
    if (rc == GENCACHE_OK && (rep->type != REDIS_REPLY_STRING || rep->len != 40))
        rc = GENCACHE_EUNAVAILABLE;
    if (rc == GENCACHE_OK) {
        pthread_mutex_lock(&n->lock);
        memcpy(n->sha, rep->str, 40);
        n->sha[40] = '\0';
        pthread_mutex_unlock(&n->lock);
        memcpy(sha, rep->str, 40);
        sha[40] = '\0';
    }
    if (rep)
        freeReplyObject(rep);
    return rc;
}

typedef struct get_arg {
    const char *rkey;
    size_t rlen;
    bool touch;
    gencache__entry *e;
    int64_t pttl;
} get_arg;

/* One read on the node that (as far as the map knows) serves the key. */
static int get_op(gencache__redis_tier *r, gencache__redis_node *n, gencache__redis_conn *c,
                  bool asking, void *arg, uint64_t dl, gencache__redis_redirect *redir,
                  bool *conn_ok)
{
    get_arg *g = arg;
    int rc = GENCACHE_OK;
    gencache__entry *e = NULL;
    char sha[41];
    pthread_mutex_lock(&n->lock);
    memcpy(sha, n->sha, sizeof sha);
    pthread_mutex_unlock(&n->lock);
    if (!sha[0])
        rc = load_script(n, c, dl, sha);
    gencache__redis_arg ask[1] = {{{"ASKING"}, {6}}};
    gencache__redis_arg multi[1] = {{{"MULTI"}, {5}}};
    gencache__redis_arg get[2] = {{{"GET"}, {3}}, {{g->rkey}, {g->rlen}}};
    gencache__redis_arg eval[5] = {{{"EVALSHA"}, {7}},
                                   {{sha}, {40}},
                                   {{"1"}, {1}},
                                   {{g->rkey}, {g->rlen}},
                                   {{g->touch ? "1" : "0"}, {1}}};
    gencache__redis_arg exec[1] = {{{"EXEC"}, {4}}};
    if (rc == GENCACHE_OK && asking)
        rc = gencache__redis_send(c, 1, ask, dl);
    if (rc == GENCACHE_OK)
        rc = gencache__redis_send(c, 1, multi, dl);
    if (rc == GENCACHE_OK)
        rc = gencache__redis_send(c, 2, get, dl);
    if (rc == GENCACHE_OK)
        rc = gencache__redis_send(c, 5, eval, dl);
    if (rc == GENCACHE_OK)
        rc = gencache__redis_send(c, 1, exec, dl);
    bool noscript = false;
    int64_t pttl = -2;
    if (rc == GENCACHE_OK)
        rc = gencache__redis_read_entry(r->alloc, &r->seal, c, asking, dl, &e, &noscript, &pttl,
                                        redir);
    if (noscript) {
        /* Redis restarted and forgot the script: load it, and refresh this hit separately. */
        int lrc = load_script(n, c, dl, sha);
        redisReply *rep = NULL;
        if (lrc == GENCACHE_OK && e && asking)
            lrc = gencache__redis_send(c, 1, ask, dl);
        if (lrc == GENCACHE_OK && e && asking)
            lrc = gencache__redis_reply(c, dl, &rep);
        if (rep)
            freeReplyObject(rep);
        rep = NULL;
        if (lrc == GENCACHE_OK && e)
            lrc = gencache__redis_command(c, dl, &rep, 5, eval);
        if (lrc == GENCACHE_OK && rep && rep->type == REDIS_REPLY_INTEGER)
            pttl = rep->integer;
        if (rep)
            freeReplyObject(rep);
        if (lrc != GENCACHE_OK)
            rc = lrc == GENCACHE_EPARSE ? GENCACHE_EUNAVAILABLE : lrc; /* and close the conn */
        if (rc != GENCACHE_OK && e) {
            gencache__entry_release(e);
            e = NULL;
        }
    }
    if (rc == GENCACHE_EPARSE) {
        gencache__log_msg(r->log, GENCACHE_LOG_WARN, "redis tier %s: get: unexpected reply",
                          n->where);
        rc = GENCACHE_EUNAVAILABLE; /* out of step: the connection is closed */
    }
    *conn_ok = rc == GENCACHE_OK || rc == GENCACHE_ENOTFOUND || rc == GENCACHE_ECORRUPT ||
               rc == GENCACHE_EIO;
    g->e = e;
    g->pttl = pttl;
    return rc;
}

static int redis_get(gencache__tier *t, const char *key, uint64_t hash, uint64_t now_ms, bool touch,
                     gencache__entry **out)
{
    gencache__redis_tier *r = (gencache__redis_tier *)t;
    (void)hash;
    if (out)
        *out = NULL;
    const char *layer;
    size_t layer_len;
    if (!out || gencache__key_split(key, &layer, &layer_len) != GENCACHE_OK)
        return GENCACHE_EINVAL;
    if (gencache__redis_bloom_rules_out(r, key)) {
        atomic_fetch_add(&r->misses, 1); /* no node wrote it: no round trip */
        return GENCACHE_ENOTFOUND;
    }
    char rkey[GENCACHE__REDIS_KEY_SIZE];
    gencache__redis_key(r, rkey, key);
    get_arg g = {.rkey = rkey, .rlen = strlen(rkey), .touch = touch, .pttl = -2};
    int rc = gencache__redis_route(r, rkey, g.rlen, deadline(r), get_op, &g);
    gencache__entry *e = g.e;
    int64_t pttl = g.pttl;
    if (rc == GENCACHE_OK &&
        (gencache__checksum(e->value, e->size) != e->checksum || strcmp(e->key, key) != 0))
        rc = GENCACHE_ECORRUPT; /* damaged, or a record copied under another key */
    if (rc == GENCACHE_ECORRUPT) {
        gencache__redis_drop_corrupt(r, rkey, e);
        gencache__entry_release(e);
        return GENCACHE_ENOTFOUND;
    }
    if (rc != GENCACHE_OK) {
        gencache__entry_release(e);
        if (rc != GENCACHE_ENOTFOUND)
            atomic_fetch_add(&r->backend_errors, 1);
        if (rc == GENCACHE_ENOTFOUND)
            atomic_fetch_add(&r->misses, 1);
        return GENCACHE_ENOTFOUND;
    }
    /* The expiry is what Redis says is left (so a copy promoted to a faster tier never outlives
     * the shared one), not what the writer's clock said. */
    if (pttl == -2 || pttl == 0) {
        gencache__entry_release(e); /* expired between the GET and the PTTL */
        atomic_fetch_add(&r->misses, 1);
        return GENCACHE_ENOTFOUND;
    }
    atomic_store(&e->expires_ms, pttl > 0 ? now_ms + (uint64_t)pttl : 0);
    if (touch) {
        atomic_fetch_add(&e->hits, 1);
        atomic_store(&e->last_access_ms, now_ms);
    }
    atomic_fetch_add(&r->hits, 1);
    *out = e;
    return GENCACHE_OK;
}

typedef struct put_arg {
    const gencache__redis_arg *set;
    int set_argc;
    const char *key;
    size_t key_len;
    redisReply *reply; /* the SET's */
} put_arg;

/* SET, then PUBLISH of the key on the written channel (other nodes' Bloom filters), in one round
 * trip. The SET runs first, so a node that hears of the key finds it. */
static int put_op(gencache__redis_tier *r, gencache__redis_node *n, gencache__redis_conn *c,
                  bool asking, void *arg, uint64_t dl, gencache__redis_redirect *redir,
                  bool *conn_ok)
{
    (void)r;
    (void)n;
    put_arg *pa = arg;
    gencache__redis_arg ask[1] = {{{"ASKING"}, {6}}};
    gencache__redis_arg pub[3] = {
        {{"PUBLISH"}, {7}},
        {{GENCACHE__REDIS_WRITTEN_CHANNEL}, {sizeof GENCACHE__REDIS_WRITTEN_CHANNEL - 1}},
        {{pa->key}, {pa->key_len}}};
    int rc = asking ? gencache__redis_send(c, 1, ask, dl) : GENCACHE_OK;
    if (rc == GENCACHE_OK)
        rc = gencache__redis_send(c, pa->set_argc, pa->set, dl);
    if (rc == GENCACHE_OK)
        rc = gencache__redis_send(c, 3, pub, dl);
    redisReply *replies[3] = {NULL, NULL, NULL};
    int first = asking ? 0 : 1;
    for (int i = first; i < 3 && rc == GENCACHE_OK; i++)
        rc = gencache__redis_reply(c, dl, &replies[i]);
    *conn_ok = rc == GENCACHE_OK;
    if (rc == GENCACHE_OK && replies[1]->type == REDIS_REPLY_ERROR &&
        gencache__redis_redirect_parse(replies[1]->str, (size_t)replies[1]->len, redir)) {
        /* The PUBLISH went out for nothing: harmless (a key heard of may always be absent). */
    } else if (rc == GENCACHE_OK) {
        pa->reply = replies[1];
        replies[1] = NULL;
    }
    for (int i = 0; i < 3; i++)
        if (replies[i])
            freeReplyObject(replies[i]);
    return rc;
}

static int redis_put(gencache__tier *t, gencache__entry *e, uint64_t now_ms)
{
    gencache__redis_tier *r = (gencache__redis_tier *)t;
    const char *layer;
    size_t layer_len;
    if (!e || !e->value || gencache__key_split(e->key, &layer, &layer_len) != GENCACHE_OK)
        return GENCACHE_EINVAL;
    if (r->max_value_bytes && e->size > r->max_value_bytes)
        return GENCACHE_ETOOBIG;
    uint64_t expires = atomic_load(&e->expires_ms);
    if (expires && expires <= now_ms)
        return GENCACHE_OK; /* already over */
    gencache__codec_value sv;
    unsigned char *sealed = NULL;
    int rc = gencache__codec_value_seal(&r->seal, r->alloc, e, &sv, &sealed);
    if (rc != GENCACHE_OK)
        return rc;
    size_t clen = gencache__codec_value_size(e, &sv);
    unsigned char stackbuf[1024];
    unsigned char *rec = clen <= sizeof stackbuf ? stackbuf : gencache__malloc(r->alloc, clen);
    size_t len;
    rc = rec ? gencache__codec_encode_value(&r->seal, e, &sv, expires, now_ms,
                                            atomic_load(&e->hits), rec, clen, &len)
             : GENCACHE_ENOMEM;
    if (rc != GENCACHE_OK) {
        if (rec != stackbuf)
            gencache__free(r->alloc, rec);
        gencache__codec_value_free(r->alloc, sealed);
        return rc;
    }
    char rkey[GENCACHE__REDIS_KEY_SIZE], px[24];
    gencache__redis_key(r, rkey, e->key);
    snprintf(px, sizeof px, "%llu", (unsigned long long)(expires ? expires - now_ms : 0));
    gencache__redis_arg a[5] = {{{"SET"}, {3}},
                                {{rkey}, {strlen(rkey)}},
                                {{rec, sv.data}, {len, e->size}},
                                {{"PX"}, {2}},
                                {{px}, {strlen(px)}}};
    size_t klen = strlen(e->key);
    put_arg pa = {.set = a, .set_argc = expires ? 5 : 3, .key = e->key, .key_len = klen};
    gencache__redis_bloom_note(r, e->key, klen);
    rc = gencache__redis_route(r, rkey, strlen(rkey), deadline(r), put_op, &pa);
    redisReply *rep = pa.reply;
    /* Noted again now that the SET has run: a filter rebuild that began meanwhile has it. */
    gencache__redis_bloom_note(r, e->key, klen);
    if (rc == GENCACHE_OK && rep->type != REDIS_REPLY_STATUS) {
        gencache__log_msg(r->log, GENCACHE_LOG_WARN, "redis tier %s: SET: %s", r->where,
                          rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply");
        rc = GENCACHE_EIO; /* the server answered: the connection is fine */
    }
    if (rep)
        freeReplyObject(rep);
    if (rec != stackbuf)
        gencache__free(r->alloc, rec);
    gencache__codec_value_free(r->alloc, sealed);
    if (rc != GENCACHE_OK) {
        /* Dropped: the shared tier is an optimization, its absence is not the caller's error. */
        atomic_fetch_add(&r->backend_errors, 1);
        atomic_fetch_add(&r->dropped_puts, 1);
    }
    return GENCACHE_OK;
}

static int redis_del(gencache__tier *t, const char *key, uint64_t hash)
{
    gencache__redis_tier *r = (gencache__redis_tier *)t;
    (void)hash;
    const char *layer;
    size_t layer_len;
    if (gencache__key_split(key, &layer, &layer_len) != GENCACHE_OK)
        return GENCACHE_EINVAL;
    char rkey[GENCACHE__REDIS_KEY_SIZE], reuse_key[GENCACHE__REDIS_REUSE_KEY_SIZE];
    gencache__redis_key(r, rkey, key);
    /* The entry's reuse records (src/reuse/records_redis.c) go with it, in the same slot. */
    snprintf(reuse_key, sizeof reuse_key, GENCACHE__REDIS_REUSE_PREFIX "{%s}", key);
    static const char del_both[] = "redis.call('DEL', KEYS[2])\n"
                                   "return redis.call('DEL', KEYS[1])\n";
    gencache__redis_arg a[5] = {{{"EVAL"}, {4}},
                                {{del_both}, {sizeof del_both - 1}},
                                {{"2"}, {1}},
                                {{rkey}, {strlen(rkey)}},
                                {{reuse_key}, {strlen(reuse_key)}}};
    redisReply *rep = NULL;
    int rc = gencache__redis_route_command(r, 3, 5, a, deadline(r), &rep);
    if (rc != GENCACHE_OK || rep->type == REDIS_REPLY_ERROR) {
        if (rep)
            freeReplyObject(rep);
        atomic_fetch_add(&r->backend_errors, 1);
        return GENCACHE_EUNAVAILABLE;
    }
    rc = rep->type == REDIS_REPLY_INTEGER && rep->integer > 0 ? GENCACHE_OK : GENCACHE_ENOTFOUND;
    freeReplyObject(rep);
    return rc;
}

static void redis_stats(gencache__tier *t, gencache_tier_stats *out)
{
    gencache__redis_tier *r = (gencache__redis_tier *)t;
    memset(out, 0, sizeof *out);
    out->tier = "redis";
    /* bytes and entries stay 0: the tier is shared, and counting it would cost a scan. */
    out->evictions_corrupt = atomic_load(&r->corrupt);
    out->backend_errors = atomic_load(&r->backend_errors);
    out->crypt_rejected = atomic_load(&r->seal.rejected);
    out->redirects = atomic_load(&r->redirects);
    out->filter_skips = atomic_load(&r->bloom_skips);
    out->invalidations_published = atomic_load(&r->published);
}

static void redis_close(gencache__tier *t)
{
    if (!t)
        return;
    gencache__redis_tier *r = (gencache__redis_tier *)t;
    unsigned count = atomic_load(&r->n_nodes);
    for (unsigned i = 0; i < count; i++)
        gencache__redis_node_free(r, r->nodes[i]);
    pthread_mutex_destroy(&r->topo_lock);
    gencache__redis_bloom_close(r);
    gencache__free(r->alloc, r->where);
    gencache__free(r->alloc, r);
}

static const gencache__tier_ops redis_ops = {
    .name = "redis",
    .caps = GENCACHE__TIER_PERSISTENT | GENCACHE__TIER_SHARED,
    .get = redis_get,
    .put = redis_put,
    .del = redis_del,
    .remove_if = gencache__redis_remove_if,
    .expire = NULL, /* Redis expires entries itself */
    .stats = redis_stats,
    .close = redis_close,
};

int gencache__redis_url_split(const char *url, char *host, size_t host_size, long *port, long *db)
{
    const char *p = url;
    if (!p || strncmp(p, "redis://", 8) != 0)
        return GENCACHE_ECONFIG;
    p += 8;
    size_t hl;
    if (*p == '[') {
        const char *close = strchr(p, ']');
        if (!close)
            return GENCACHE_ECONFIG;
        hl = (size_t)(close - p - 1);
        if (hl == 0 || hl >= host_size)
            return GENCACHE_ECONFIG;
        memcpy(host, p + 1, hl);
        p = close + 1;
    } else {
        hl = strcspn(p, ":/");
        if (hl == 0 || hl >= host_size)
            return GENCACHE_ECONFIG;
        memcpy(host, p, hl);
        p += hl;
    }
    host[hl] = '\0';
    *port = 6379;
    *db = 0;
    char *end;
    if (*p == ':') {
        errno = 0;
        *port = strtol(p + 1, &end, 10);
        if (errno || end == p + 1 || *port < 1 || *port > 65535)
            return GENCACHE_ECONFIG;
        p = end;
    }
    if (*p == '/' && p[1]) {
        errno = 0;
        *db = strtol(p + 1, &end, 10);
        if (errno || end == p + 1 || *end || *db < 0 || *db > 100000)
            return GENCACHE_ECONFIG;
        p = end;
    } else if (*p == '/') {
        p++;
    }
    return *p ? GENCACHE_ECONFIG : GENCACHE_OK;
}

int gencache__redis_cluster_url_next(const char **cursor, char *host, size_t host_size, long *port)
{
    const char *p = *cursor;
    if (strncmp(p, GENCACHE__REDIS_CLUSTER_SCHEME, sizeof GENCACHE__REDIS_CLUSTER_SCHEME - 1) == 0)
        p += sizeof GENCACHE__REDIS_CLUSTER_SCHEME - 1;
    else if (*p == ',')
        p++;
    if (!*p)
        return GENCACHE_ENOTFOUND;
    size_t len = strcspn(p, ",");
    const char *colon = NULL;
    for (size_t i = len; i-- > 0;)
        if (p[i] == ':') {
            colon = p + i;
            break;
        }
    if (!colon)
        return GENCACHE_ECONFIG;
    const char *h = p;
    size_t hl = (size_t)(colon - p);
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    if (hl == 0 || hl >= host_size || memchr(h, '/', hl))
        return GENCACHE_ECONFIG;
    memcpy(host, h, hl);
    host[hl] = '\0';
    char num[8];
    size_t pl = len - (size_t)(colon - p) - 1;
    if (pl == 0 || pl >= sizeof num)
        return GENCACHE_ECONFIG;
    memcpy(num, colon + 1, pl);
    num[pl] = '\0';
    char *end;
    errno = 0;
    *port = strtol(num, &end, 10);
    if (errno || *end || *port < 1 || *port > 65535)
        return GENCACHE_ECONFIG;
    *cursor = p + len;
    return GENCACHE_OK;
}

/* Parses redis://HOST[:PORT][/DB] (HOST may be [IPv6]) into the one node of a single server. */
static int parse_url(gencache__redis_tier *r, const char *url)
{
    char host[256];
    long port, db;
    int rc = gencache__redis_url_split(url, host, sizeof host, &port, &db);
    if (rc != GENCACHE_OK)
        return rc;
    gencache__redis_node *n;
    return gencache__redis_node_get(r, host, port, db, &n);
}

/* Parses redis-cluster://HOST:PORT[,HOST:PORT...] into the seed nodes of a cluster. */
static int parse_cluster_url(gencache__redis_tier *r, const char *url)
{
    char host[256];
    long port;
    size_t n_seeds = 0;
    int rc = gencache__redis_cluster_url_next(&url, host, sizeof host, &port);
    while (rc == GENCACHE_OK) {
        gencache__redis_node *n;
        rc = gencache__redis_node_get(r, host, port, 0, &n);
        if (rc != GENCACHE_OK)
            return rc;
        n_seeds++;
        rc = gencache__redis_cluster_url_next(&url, host, sizeof host, &port);
    }
    return rc == GENCACHE_ENOTFOUND && n_seeds ? GENCACHE_OK : GENCACHE_ECONFIG;
}

int gencache__redis_tier_open(const gencache__redis_options *opts, gencache__tier **out)
{
    if (out)
        *out = NULL;
    if (!opts || !out || !opts->url)
        return GENCACHE_EINVAL;
    gencache__redis_tier *r = gencache__calloc(opts->alloc, 1, sizeof *r);
    if (!r)
        return GENCACHE_ENOMEM;
    r->base.ops = &redis_ops;
    r->alloc = opts->alloc;
    r->log = opts->log;
    r->timeout_ms = opts->timeout_ms ? opts->timeout_ms : 100;
    r->max_value_bytes = opts->max_value_bytes;
    r->cluster = strncmp(opts->url, GENCACHE__REDIS_CLUSTER_SCHEME,
                         sizeof GENCACHE__REDIS_CLUSTER_SCHEME - 1) == 0;
    pthread_mutex_init(&r->topo_lock, NULL);
    int brc = gencache__redis_bloom_open(r, opts->bloom_fp_rate, opts->bloom_capacity);
    for (unsigned s = 0; s < GENCACHE__REDIS_SLOTS; s++)
        atomic_init(&r->slots[s], r->cluster ? 0xff : 0);
    int rc = GENCACHE_ENOMEM;
    r->where = gencache__malloc(r->alloc, strlen(opts->url) + 1);
    if (r->where && brc == GENCACHE_OK) {
        strcpy(r->where, opts->url);
        rc = r->cluster ? parse_cluster_url(r, opts->url) : parse_url(r, opts->url);
    }
    r->seal.keys = opts->keys;
    if (rc != GENCACHE_OK) {
        if (rc == GENCACHE_ECONFIG)
            gencache__log_msg(r->log, GENCACHE_LOG_ERROR,
                              "redis tier: bad url \"%s\" (expected redis://HOST[:PORT][/DB] or "
                              "redis-cluster://HOST:PORT[,HOST:PORT...])",
                              opts->url);
        redis_close(&r->base);
        return rc;
    }
    r->n_seeds = atomic_load(&r->n_nodes);
    if (getrandom(&r->node_id, sizeof r->node_id, 0) != sizeof r->node_id)
        r->node_id = gencache__redis_now_ns() ^ ((uint64_t)getpid() << 32) ^ (uintptr_t)r;
    /* Not connecting here: a Redis that is down at start is the same as one that goes down
     * later (misses), and the first call connects (and, on a cluster, reads the slot map). */
    *out = &r->base;
    return GENCACHE_OK;
}
