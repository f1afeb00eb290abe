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
#include <time.h>

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

gencache__redis_conn *gencache__redis_acquire(gencache__redis_tier *r, uint64_t deadline_ns)
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
            gencache__log_msg(r->log, GENCACHE_LOG_DEBUG, "redis tier %s: connect: %s", r->where,
                              gencache_strerror(rc));
            gencache__redis_release(r, c, false);
            return NULL;
        }
    }
    return c;
}

void gencache__redis_release(gencache__redis_tier *r, gencache__redis_conn *c, bool ok)
{
    if (!ok)
        gencache__redis_disconnect(c); /* its stream position is unknown */
    pthread_mutex_lock(&r->lock);
    if (ok) {
        if (r->open)
            gencache__log_msg(r->log, GENCACHE_LOG_INFO, "redis tier %s: reachable again",
                              r->where);
        r->failures = 0;
        r->open = false;
        r->probing = false;
        r->backoff_ms = GENCACHE__REDIS_BACKOFF_MIN_MS;
    } else {
        r->failures++;
        if (r->probing || r->failures >= GENCACHE__REDIS_TRIP) {
            if (!r->open)
                gencache__log_msg(r->log, GENCACHE_LOG_WARN,
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

static void redis_key(char *buf, const char *key)
{
    snprintf(buf, sizeof GENCACHE__REDIS_PREFIX + GENCACHE__KEY_MAX, GENCACHE__REDIS_PREFIX "%s",
             key);
}

/* Loads the get script (once per server start: Redis forgets scripts when it restarts). */
static int load_script(gencache__redis_tier *r, gencache__redis_conn *c, uint64_t dl, char sha[41])
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
        pthread_mutex_lock(&r->lock);
        memcpy(r->sha, rep->str, 40);
        r->sha[40] = '\0';
        pthread_mutex_unlock(&r->lock);
        memcpy(sha, rep->str, 40);
        sha[40] = '\0';
    }
    if (rep)
        freeReplyObject(rep);
    return rc;
}

static int redis_get(gencache__tier *t, const char *key, uint64_t hash, uint64_t now_ms, bool touch,
                     gencache__entry **out)
{
    gencache__redis_tier *r = (gencache__redis_tier *)t;
    if (out)
        *out = NULL;
    const char *layer;
    size_t layer_len;
    if (!out || gencache__key_split(key, &layer, &layer_len) != GENCACHE_OK)
        return GENCACHE_EINVAL;
    uint64_t dl = deadline(r);
    gencache__redis_conn *c = gencache__redis_acquire(r, dl);
    if (!c) {
        atomic_fetch_add(&r->backend_errors, 1);
        return GENCACHE_ENOTFOUND;
    }
    char rkey[sizeof GENCACHE__REDIS_PREFIX + GENCACHE__KEY_MAX];
    redis_key(rkey, key);
    size_t rlen = strlen(rkey);
    int rc = GENCACHE_OK;
    gencache__entry *e = NULL;
    char sha[41];
    pthread_mutex_lock(&r->lock);
    memcpy(sha, r->sha, sizeof sha);
    pthread_mutex_unlock(&r->lock);
    if (!sha[0]) {
        rc = load_script(r, c, dl, sha);
    }
    gencache__redis_arg multi[1] = {{{"MULTI"}, {5}}};
    gencache__redis_arg get[2] = {{{"GET"}, {3}}, {{rkey}, {rlen}}};
    gencache__redis_arg eval[5] = {{{"EVALSHA"}, {7}},
                                   {{sha}, {40}},
                                   {{"1"}, {1}},
                                   {{rkey}, {rlen}},
                                   {{touch ? "1" : "0"}, {1}}};
    gencache__redis_arg exec[1] = {{{"EXEC"}, {4}}};
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
        rc = gencache__redis_read_entry(r, c, dl, &e, &noscript, &pttl);
    if (noscript) {
        /* Redis restarted and forgot the script: load it, and refresh this hit separately. */
        int lrc = load_script(r, c, dl, sha);
        redisReply *rep = NULL;
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
                          r->where);
        rc = GENCACHE_EUNAVAILABLE; /* out of step: the connection is closed */
    }
    bool conn_ok = rc == GENCACHE_OK || rc == GENCACHE_ENOTFOUND || rc == GENCACHE_ECORRUPT;
    gencache__redis_release(r, c, conn_ok);
    if (rc == GENCACHE_OK &&
        (gencache__checksum(e->value, e->size) != e->checksum || strcmp(e->key, key) != 0))
        rc = GENCACHE_ECORRUPT; /* damaged, or a record copied under another key */
    if (rc == GENCACHE_ECORRUPT) {
        gencache__redis_drop_corrupt(r, rkey, e);
        gencache__entry_release(e);
        return GENCACHE_ENOTFOUND;
    }
    if (rc != GENCACHE_OK) {
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
    char rkey[sizeof GENCACHE__REDIS_PREFIX + GENCACHE__KEY_MAX], px[24];
    redis_key(rkey, e->key);
    snprintf(px, sizeof px, "%llu", (unsigned long long)(expires ? expires - now_ms : 0));
    gencache__redis_arg a[5] = {{{"SET"}, {3}},
                                {{rkey}, {strlen(rkey)}},
                                {{rec, sv.data}, {len, e->size}},
                                {{"PX"}, {2}},
                                {{px}, {strlen(px)}}};
    uint64_t dl = deadline(r);
    gencache__redis_conn *c = gencache__redis_acquire(r, dl);
    if (!c) {
        rc = GENCACHE_EUNAVAILABLE;
    } else {
        redisReply *rep = NULL;
        rc = gencache__redis_command(c, dl, &rep, expires ? 5 : 3, a);
        bool conn_ok = rc == GENCACHE_OK;
        if (rc == GENCACHE_OK && rep->type != REDIS_REPLY_STATUS) {
            gencache__log_msg(r->log, GENCACHE_LOG_WARN, "redis tier %s: SET: %s", r->where,
                              rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply");
            rc = GENCACHE_EIO; /* the server answered: the connection is fine */
        }
        if (rep)
            freeReplyObject(rep);
        gencache__redis_release(r, c, conn_ok);
    }
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
    const char *layer;
    size_t layer_len;
    if (gencache__key_split(key, &layer, &layer_len) != GENCACHE_OK)
        return GENCACHE_EINVAL;
    char rkey[sizeof GENCACHE__REDIS_PREFIX + GENCACHE__KEY_MAX];
    redis_key(rkey, key);
    gencache__redis_arg a[2] = {{{"DEL"}, {3}}, {{rkey}, {strlen(rkey)}}};
    uint64_t dl = deadline(r);
    gencache__redis_conn *c = gencache__redis_acquire(r, dl);
    if (!c) {
        atomic_fetch_add(&r->backend_errors, 1);
        return GENCACHE_EUNAVAILABLE;
    }
    redisReply *rep = NULL;
    int rc = gencache__redis_command(c, dl, &rep, 2, a);
    gencache__redis_release(r, c, rc == GENCACHE_OK);
    if (rc != GENCACHE_OK) {
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
}

static void redis_close(gencache__tier *t)
{
    if (!t)
        return;
    gencache__redis_tier *r = (gencache__redis_tier *)t;
    for (int i = 0; i < GENCACHE__REDIS_POOL; i++) {
        gencache__redis_disconnect(&r->conns[i]);
        free(r->conns[i].buf);
    }
    pthread_mutex_destroy(&r->lock);
    pthread_cond_destroy(&r->freed);
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

/* Parses redis://HOST[:PORT][/DB] (HOST may be [IPv6]) and resolves HOST once. */
static int parse_url(gencache__redis_tier *r, const char *url)
{
    char host[256];
    long port, db;
    int rc = gencache__redis_url_split(url, host, sizeof host, &port, &db);
    if (rc != GENCACHE_OK)
        return rc;
    char service[8];
    snprintf(service, sizeof service, "%ld", port);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    int gai = getaddrinfo(host, service, &hints, &res);
    if (gai != 0 || !res) {
        gencache__log_msg(r->log, GENCACHE_LOG_ERROR, "redis tier: cannot resolve %s: %s", host,
                          gai_strerror(gai));
        return GENCACHE_ECONFIG;
    }
    memcpy(&r->addr, res->ai_addr, res->ai_addrlen);
    r->addr_len = res->ai_addrlen;
    freeaddrinfo(res);
    r->db = (int)db;
    size_t wl = strlen(host) + 32;
    r->where = gencache__malloc(r->alloc, wl);
    if (!r->where)
        return GENCACHE_ENOMEM;
    snprintf(r->where, wl, "%s:%ld/%ld", host, port, db);
    return GENCACHE_OK;
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
    r->seal.keys = opts->keys;
    r->backoff_ms = GENCACHE__REDIS_BACKOFF_MIN_MS;
    pthread_mutex_init(&r->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&r->freed, &ca);
    pthread_condattr_destroy(&ca);
    for (int i = 0; i < GENCACHE__REDIS_POOL; i++)
        r->conns[i].fd = -1;
    int rc = parse_url(r, opts->url);
    if (rc != GENCACHE_OK) {
        if (rc == GENCACHE_ECONFIG)
            gencache__log_msg(r->log, GENCACHE_LOG_ERROR,
                              "redis tier: bad url \"%s\" (expected redis://HOST[:PORT][/DB])",
                              opts->url);
        redis_close(&r->base);
        return rc;
    }
    /* Not connecting here: a Redis that is down at start is the same as one that goes down
     * later (misses), and the first call connects. */
    *out = &r->base;
    return GENCACHE_OK;
}
