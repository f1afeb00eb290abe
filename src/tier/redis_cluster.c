/*
 * redis_cluster.c: routing for a Redis Cluster. Each key belongs to one of 16384 hash slots
 * (CRC16 of the key or of its {hash tag}); the tier keeps a map from slot to node, read with
 * CLUSTER SLOTS from any node that answers, and sends each command to the node the map names.
 * A node that no longer serves a slot answers MOVED (the map is updated for that slot at once
 * and read again soon) or, while a slot migrates, ASK (only that command goes to the target,
 * preceded by ASKING). The map is also read again every GENCACHE__REDIS_REFRESH_MS, so a
 * failover is found without waiting for a redirect. A single server is the same code with one
 * node that serves every slot and never redirects.
 */
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coalesce/coalesce.h"
#include "tier/redis_ops.h"

unsigned gencache__redis_slot(const char *key, size_t len)
{
    const char *open = memchr(key, '{', len);
    if (open) {
        size_t rest = len - (size_t)(open - key) - 1;
        const char *close = memchr(open + 1, '}', rest);
        if (close && close > open + 1) {
            key = open + 1;
            len = (size_t)(close - key);
        }
    }
    uint16_t crc = 0;
    for (size_t i = 0; i < len; i++) {
        crc ^= (uint16_t)((unsigned char)key[i] << 8);
        for (int b = 0; b < 8; b++)
            crc = (uint16_t)(crc & 0x8000 ? (crc << 1) ^ 0x1021 : crc << 1);
    }
    return crc & (GENCACHE__REDIS_SLOTS - 1);
}

void gencache__redis_key(const gencache__redis_tier *r, char *buf, const char *key)
{
    snprintf(buf, GENCACHE__REDIS_KEY_SIZE,
             r->cluster ? GENCACHE__REDIS_PREFIX "{%s}" : GENCACHE__REDIS_PREFIX "%s", key);
}

void gencache__redis_node_free(gencache__redis_tier *r, gencache__redis_node *n)
{
    if (!n)
        return;
    for (int i = 0; i < GENCACHE__REDIS_POOL; i++) {
        gencache__redis_disconnect(&n->conns[i]);
        free(n->conns[i].buf);
    }
    pthread_mutex_destroy(&n->lock);
    pthread_cond_destroy(&n->freed);
    gencache__free(r->alloc, n);
}

static gencache__redis_node *node_new(gencache__redis_tier *r, const char *host, long port, long db)
{
    char service[8];
    snprintf(service, sizeof service, "%ld", port);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    int gai = getaddrinfo(host, service, &hints, &res);
    if (gai != 0 || !res) {
        gencache__log_msg(r->log, GENCACHE_LOG_ERROR, "redis tier: cannot resolve %s: %s", host,
                          gai_strerror(gai));
        return NULL;
    }
    gencache__redis_node *n = gencache__calloc(r->alloc, 1, sizeof *n);
    if (!n) {
        freeaddrinfo(res);
        return NULL;
    }
    memcpy(&n->addr, res->ai_addr, res->ai_addrlen);
    n->addr_len = res->ai_addrlen;
    freeaddrinfo(res);
    n->db = (int)db;
    if (r->cluster)
        snprintf(n->where, sizeof n->where, "%s:%ld", host, port);
    else
        snprintf(n->where, sizeof n->where, "%s:%ld/%ld", host, port, db);
    n->backoff_ms = GENCACHE__REDIS_BACKOFF_MIN_MS;
    pthread_mutex_init(&n->lock, NULL);
    gencache__cond_init_mono(&n->freed);
    for (int i = 0; i < GENCACHE__REDIS_POOL; i++)
        n->conns[i].fd = -1;
    return n;
}

int gencache__redis_node_get(gencache__redis_tier *r, const char *host, long port, long db,
                             gencache__redis_node **out)
{
    *out = NULL;
    char name[sizeof((gencache__redis_node *)0)->where];
    if (r->cluster)
        snprintf(name, sizeof name, "%s:%ld", host, port);
    else
        snprintf(name, sizeof name, "%s:%ld/%ld", host, port, db);
    pthread_mutex_lock(&r->topo_lock);
    unsigned count = atomic_load(&r->n_nodes);
    for (unsigned i = 0; i < count; i++) {
        if (strcmp(r->nodes[i]->where, name) == 0) {
            *out = r->nodes[i];
            pthread_mutex_unlock(&r->topo_lock);
            return GENCACHE_OK;
        }
    }
    int rc = GENCACHE_OK;
    if (count == GENCACHE__REDIS_MAX_NODES) {
        rc = GENCACHE_EFULL;
    } else {
        gencache__redis_node *n = node_new(r, host, port, db);
        if (!n) {
            rc = GENCACHE_ECONFIG;
        } else {
            r->nodes[count] = n;
            atomic_store(&r->n_nodes, count + 1);
            *out = n;
        }
    }
    pthread_mutex_unlock(&r->topo_lock);
    return rc;
}

static int node_index(gencache__redis_tier *r, const gencache__redis_node *n)
{
    unsigned count = atomic_load(&r->n_nodes);
    for (unsigned i = 0; i < count; i++)
        if (r->nodes[i] == n)
            return (int)i;
    return -1;
}

gencache__redis_node *gencache__redis_node_for(gencache__redis_tier *r, unsigned slot)
{
    unsigned i = atomic_load_explicit(&r->slots[slot], memory_order_acquire);
    return i == 0xff ? r->nodes[0] : r->nodes[i];
}

/* Splits "host:port" (host may be "[v6]" or a bare v6 address: the port follows the last ':'). */
static bool split_hostport(const char *s, size_t len, char *host, size_t host_size, long *port)
{
    const char *colon = NULL;
    for (size_t i = len; i-- > 0;)
        if (s[i] == ':') {
            colon = s + i;
            break;
        }
    if (!colon || colon == s)
        return false;
    const char *h = s;
    size_t hl = (size_t)(colon - s);
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    if (hl == 0 || hl >= host_size)
        return false;
    memcpy(host, h, hl);
    host[hl] = '\0';
    char num[8];
    size_t pl = len - (size_t)(colon - s) - 1;
    if (pl == 0 || pl >= sizeof num)
        return false;
    memcpy(num, colon + 1, pl);
    num[pl] = '\0';
    char *end;
    errno = 0;
    *port = strtol(num, &end, 10);
    return !errno && !*end && *port >= 1 && *port <= 65535;
}

bool gencache__redis_redirect_parse(const char *s, size_t len, gencache__redis_redirect *out)
{
    memset(out, 0, sizeof *out);
    size_t skip;
    if (len > 6 && memcmp(s, "MOVED ", 6) == 0) {
        out->kind = GENCACHE__REDIS_MOVED;
        skip = 6;
    } else if (len > 4 && memcmp(s, "ASK ", 4) == 0) {
        out->kind = GENCACHE__REDIS_ASK;
        skip = 4;
    } else {
        return false;
    }
    s += skip;
    len -= skip;
    const char *sp = memchr(s, ' ', len);
    if (!sp || sp == s || (size_t)(sp - s) > 5)
        goto bad;
    unsigned slot = 0;
    for (const char *p = s; p < sp; p++) {
        if (*p < '0' || *p > '9')
            goto bad;
        slot = slot * 10 + (unsigned)(*p - '0');
    }
    size_t al = len - (size_t)(sp + 1 - s);
    if (slot >= GENCACHE__REDIS_SLOTS || al == 0 || al >= sizeof out->addr)
        goto bad;
    out->slot = slot;
    memcpy(out->addr, sp + 1, al);
    out->addr[al] = '\0';
    return true;
bad:
    out->kind = GENCACHE__REDIS_NO_REDIRECT;
    return false;
}

/* Applies one CLUSTER SLOTS reply; queried: the node that answered (an empty host means its). */
static int apply_slots(gencache__redis_tier *r, gencache__redis_node *queried,
                       const redisReply *rep)
{
    if (rep->type != REDIS_REPLY_ARRAY)
        return GENCACHE_EPARSE;
    char qhost[272];
    long qport;
    if (!split_hostport(queried->where, strlen(queried->where), qhost, sizeof qhost, &qport))
        qhost[0] = '\0';
    for (size_t i = 0; i < rep->elements; i++) {
        const redisReply *e = rep->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
            e->element[0]->type != REDIS_REPLY_INTEGER ||
            e->element[1]->type != REDIS_REPLY_INTEGER ||
            e->element[2]->type != REDIS_REPLY_ARRAY || e->element[2]->elements < 2)
            return GENCACHE_EPARSE;
        long long from = e->element[0]->integer, to = e->element[1]->integer;
        const redisReply *ip = e->element[2]->element[0], *port = e->element[2]->element[1];
        if (from < 0 || to >= GENCACHE__REDIS_SLOTS || from > to ||
            ip->type != REDIS_REPLY_STRING || port->type != REDIS_REPLY_INTEGER ||
            port->integer < 1 || port->integer > 65535)
            return GENCACHE_EPARSE;
        const char *host = ip->len ? ip->str : qhost;
        if (!host[0])
            continue;
        gencache__redis_node *n = NULL;
        int rc = gencache__redis_node_get(r, host, (long)port->integer, 0, &n);
        if (rc != GENCACHE_OK)
            return rc;
        int idx = node_index(r, n);
        for (long long s = from; s <= to; s++)
            atomic_store_explicit(&r->slots[s], (unsigned char)idx, memory_order_release);
    }
    return GENCACHE_OK;
}

int gencache__redis_refresh(gencache__redis_tier *r, uint64_t deadline_ns)
{
    /* Nodes the map names first (they are the live ones as far as anyone knows), then seeds. */
    unsigned count = atomic_load(&r->n_nodes);
    int rc = GENCACHE_EUNAVAILABLE;
    for (unsigned k = 0; k < count && rc != GENCACHE_OK; k++) {
        gencache__redis_node *n = r->nodes[(k + atomic_load(&r->refreshes)) % count];
        gencache__redis_conn *c = gencache__redis_acquire(r, n, deadline_ns);
        if (!c)
            continue;
        gencache__redis_arg a[2] = {{{"CLUSTER"}, {7}}, {{"SLOTS"}, {5}}};
        redisReply *rep = NULL;
        rc = gencache__redis_command(c, deadline_ns, &rep, 2, a);
        gencache__redis_release(r, n, c, rc == GENCACHE_OK);
        if (rc == GENCACHE_OK) {
            rc = apply_slots(r, n, rep);
            if (rc != GENCACHE_OK)
                gencache__log_msg(r->log, GENCACHE_LOG_WARN,
                                  "redis tier %s: unexpected CLUSTER SLOTS reply", n->where);
        }
        if (rep)
            freeReplyObject(rep);
    }
    atomic_fetch_add(&r->refreshes, 1);
    return rc;
}

void gencache__redis_refresh_soon(gencache__redis_tier *r)
{
    if (r->cluster)
        atomic_store(&r->refresh_due_ns, 0);
}

void gencache__redis_refresh_if_due(gencache__redis_tier *r)
{
    if (!r->cluster)
        return;
    uint64_t now = gencache__redis_now_ns();
    if (now < atomic_load(&r->refresh_due_ns))
        return;
    bool idle = false;
    if (!atomic_compare_exchange_strong(&r->refreshing, &idle, true))
        return;
    /* Not sooner than the minimum interval, whatever asks for it: a storm of redirects reads the
     * map once. */
    atomic_store(&r->refresh_due_ns, now + (uint64_t)GENCACHE__REDIS_REFRESH_MIN_MS * 1000000u);
    int rc = gencache__redis_refresh(r, now + (uint64_t)r->timeout_ms * 1000000u);
    if (rc == GENCACHE_OK)
        atomic_store(&r->refresh_due_ns,
                     gencache__redis_now_ns() + (uint64_t)GENCACHE__REDIS_REFRESH_MS * 1000000u);
    atomic_store(&r->refreshing, false);
}

size_t gencache__redis_primaries(gencache__redis_tier *r, gencache__redis_node **out, size_t max)
{
    bool seen[GENCACHE__REDIS_MAX_NODES] = {false};
    bool any = false;
    for (unsigned s = 0; s < GENCACHE__REDIS_SLOTS; s++) {
        unsigned i = atomic_load_explicit(&r->slots[s], memory_order_acquire);
        if (i != 0xff) {
            seen[i] = true;
            any = true;
        }
    }
    size_t k = 0;
    unsigned count = atomic_load(&r->n_nodes);
    for (unsigned i = 0; i < count && k < max; i++)
        if (seen[i] || !any)
            out[k++] = r->nodes[i];
    return k;
}

int gencache__redis_route(gencache__redis_tier *r, const char *rkey, size_t rlen,
                          uint64_t deadline_ns, gencache__redis_op op, void *arg)
{
    if (r->cluster && atomic_load(&r->refreshes) == 0)
        gencache__redis_refresh_if_due(r); /* the first call learns the map before it routes */
    unsigned slot = r->cluster ? gencache__redis_slot(rkey, rlen) : 0;
    gencache__redis_node *n = r->cluster ? gencache__redis_node_for(r, slot) : r->nodes[0];
    bool asking = false;
    int rc = GENCACHE_EUNAVAILABLE;
    for (int hop = 0; hop <= GENCACHE__REDIS_MAX_REDIRECTS; hop++) {
        gencache__redis_conn *c = gencache__redis_acquire(r, n, deadline_ns);
        if (!c) {
            gencache__redis_refresh_soon(r); /* a node that fails may have been replaced */
            rc = GENCACHE_EUNAVAILABLE;
            break;
        }
        gencache__redis_redirect redir = {GENCACHE__REDIS_NO_REDIRECT};
        bool conn_ok = false;
        rc = op(r, n, c, asking, arg, deadline_ns, &redir, &conn_ok);
        gencache__redis_release(r, n, c, conn_ok);
        if (redir.kind == GENCACHE__REDIS_NO_REDIRECT)
            break;
        rc = GENCACHE_EUNAVAILABLE;
        atomic_fetch_add(&r->redirects, 1);
        char host[272];
        long port;
        gencache__redis_node *next = NULL;
        if (!r->cluster ||
            !split_hostport(redir.addr, strlen(redir.addr), host, sizeof host, &port) ||
            gencache__redis_node_get(r, host, port, 0, &next) != GENCACHE_OK) {
            gencache__log_msg(r->log, GENCACHE_LOG_WARN, "redis tier %s: cannot follow %s to %s",
                              n->where, redir.kind == GENCACHE__REDIS_MOVED ? "MOVED" : "ASK",
                              redir.addr);
            break;
        }
        if (redir.kind == GENCACHE__REDIS_MOVED) {
            int idx = node_index(r, next);
            if (idx >= 0)
                atomic_store_explicit(&r->slots[redir.slot], (unsigned char)idx,
                                      memory_order_release);
            gencache__redis_refresh_soon(r);
        }
        asking = redir.kind == GENCACHE__REDIS_ASK;
        n = next;
    }
    gencache__redis_refresh_if_due(r);
    return rc;
}

typedef struct command_arg {
    int argc;
    const gencache__redis_arg *argv;
    redisReply *reply;
} command_arg;

static int command_op(gencache__redis_tier *r, gencache__redis_node *n, gencache__redis_conn *c,
                      bool asking, void *arg, uint64_t dl, gencache__redis_redirect *redir,
                      bool *conn_ok)
{
    (void)r;
    (void)n;
    command_arg *a = arg;
    gencache__redis_arg ask[1] = {{{"ASKING"}, {6}}};
    int rc = asking ? gencache__redis_send(c, 1, ask, dl) : GENCACHE_OK;
    if (rc == GENCACHE_OK)
        rc = gencache__redis_send(c, a->argc, a->argv, dl);
    redisReply *rep = NULL;
    if (rc == GENCACHE_OK && asking) {
        rc = gencache__redis_reply(c, dl, &rep);
        if (rep)
            freeReplyObject(rep);
        rep = NULL;
    }
    if (rc == GENCACHE_OK)
        rc = gencache__redis_reply(c, dl, &rep);
    *conn_ok = rc == GENCACHE_OK;
    if (rc == GENCACHE_OK && rep->type == REDIS_REPLY_ERROR &&
        gencache__redis_redirect_parse(rep->str, (size_t)rep->len, redir)) {
        freeReplyObject(rep);
        return GENCACHE_OK;
    }
    a->reply = rep;
    return rc;
}

int gencache__redis_route_command(gencache__redis_tier *r, int key_arg, int argc,
                                  const gencache__redis_arg *argv, uint64_t deadline_ns,
                                  redisReply **out)
{
    *out = NULL;
    command_arg a = {argc, argv, NULL};
    int rc = gencache__redis_route(r, argv[key_arg].p[0], argv[key_arg].n[0], deadline_ns,
                                   command_op, &a);
    if (rc == GENCACHE_OK)
        *out = a.reply;
    else if (a.reply)
        freeReplyObject(a.reply);
    return rc;
}
