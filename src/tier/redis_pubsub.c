/*
 * redis_pubsub.c: coherence between the nodes that share a Redis tier. A delete or an
 * invalidation on one node is published on one channel (GENCACHE__REDIS_CHANNEL; on a cluster,
 * plain PUBLISH reaches every node's subscribers); every node runs one subscriber thread that
 * hands each message from another node to the cache, which drops its local copies. A subscriber
 * that loses its connection may have missed messages: once it is subscribed again it asks the
 * cache to drop its local copies of shared entries (the shared tier is the truth; docs/tiers.md).
 * Liveness: a PING after a second of silence, and a connection with no answer for two more
 * seconds counts as lost. The same subscription carries the keys other nodes write, for the
 * Bloom filter (redis_bloom.c), whose rebuilds run on a second thread, and the reuse records
 * nodes store (src/reuse/records_redis.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "coalesce/coalesce.h"
#include "tier/entry_codec.h"
#include "tier/redis_ops.h"

#define CHANNEL  "gencache:v1:invalidate"
#define MAGIC    "GCI1"
#define POLL_MS  200
#define QUIET_MS 1000
#define DEAD_MS  2000
#define RETRY_MS 100
#define N_FIELDS 5
#define ABSENT   0xffffffffu
/* Longer strings are never stored (entry_codec.h), so a filter with one matches nothing. */
#define MAX_FIELD_LEN GENCACHE__CODEC_STR_MAX
/* Each invalidation is applied again this long after it arrived: a get that read a lower local
 * tier just before the drop may have promoted its copy into memory just after. */
#define AGAIN_MS 100
#define N_AGAIN  32

struct gencache__redis_coherence {
    gencache__redis_tier *r;
    gencache__redis_coherence_cb cb;
    pthread_t thread;
    pthread_mutex_t lock; /* guards stop, fd (for shutdown) and wakes the retry wait */
    pthread_cond_t wake;
    bool stop;
    int fd; /* the subscriber's socket while connected; -1: none */
    _Atomic bool subscribed;
    _Atomic uint64_t received, resyncs;
    /* The Bloom filter's rebuilder (only with a filter): rebuilds when asked (after each
     * subscription) and every GENCACHE__REDIS_BLOOM_REBUILD_MS. */
    pthread_t rebuilder;
    bool has_rebuilder;
    bool rebuild_wanted; /* under lock */
    unsigned rebuild_gen;
    _Atomic bool stop_flag; /* stop, readable without the lock (the rebuild's SCAN checks it) */
    /* Invalidations to apply once more (subscriber thread only): copies of the messages. */
    struct {
        char *msg; /* NULL: free slot */
        size_t len;
        uint64_t due_ns;
    } again[N_AGAIN];
};

/* ---- messages: MAGIC, u64 origin, u64 created_before_ms, then key, layer, tenant, tag, model
 * each as u32 length (ABSENT: not set) and bytes ---- */

static size_t encode(unsigned char *buf, size_t cap, uint64_t origin, const gencache_filter *f,
                     uint64_t created_before_ms)
{
    const char *fields[N_FIELDS] = {f->key, f->layer, f->tenant, f->tag, f->model};
    size_t need = 4 + 16;
    for (int i = 0; i < N_FIELDS; i++)
        need += 4 + (fields[i] ? strlen(fields[i]) : 0);
    if (need > cap)
        return 0;
    memcpy(buf, MAGIC, 4);
    gencache__le64_put(buf + 4, origin);
    gencache__le64_put(buf + 12, created_before_ms);
    size_t at = 20;
    for (int i = 0; i < N_FIELDS; i++) {
        uint32_t len = fields[i] ? (uint32_t)strlen(fields[i]) : ABSENT;
        buf[at] = (unsigned char)len;
        buf[at + 1] = (unsigned char)(len >> 8);
        buf[at + 2] = (unsigned char)(len >> 16);
        buf[at + 3] = (unsigned char)(len >> 24);
        at += 4;
        if (fields[i]) {
            memcpy(buf + at, fields[i], len);
            at += len;
        }
    }
    return at;
}

static uint64_t le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* Decodes into f, whose strings point into store (NUL-terminated copies). False: not ours. */
static bool decode(const char *msg, size_t len, uint64_t *origin, gencache_filter *f,
                   uint64_t *created_before_ms, char *store, size_t store_cap)
{
    const unsigned char *p = (const unsigned char *)msg;
    if (len < 20 || memcmp(p, MAGIC, 4) != 0)
        return false;
    *origin = le64(p + 4);
    *created_before_ms = le64(p + 12);
    gencache_filter_init(f);
    const char **fields[N_FIELDS] = {&f->key, &f->layer, &f->tenant, &f->tag, &f->model};
    size_t at = 20, used = 0;
    for (int i = 0; i < N_FIELDS; i++) {
        if (len - at < 4)
            return false;
        uint32_t n = (uint32_t)p[at] | (uint32_t)p[at + 1] << 8 | (uint32_t)p[at + 2] << 16 |
                     (uint32_t)p[at + 3] << 24;
        at += 4;
        if (n == ABSENT)
            continue;
        if (n > MAX_FIELD_LEN || len - at < n || store_cap - used < (size_t)n + 1 ||
            memchr(p + at, '\0', n))
            return false;
        memcpy(store + used, p + at, n);
        store[used + n] = '\0';
        *fields[i] = store + used;
        used += (size_t)n + 1;
        at += n;
    }
    return at == len &&
           (f->key || f->layer || f->tenant || f->tag || f->model || *created_before_ms);
}

/* ---- publishing ---- */

int gencache__redis_publish_invalidation(gencache__tier *t, const gencache_filter *f,
                                         uint64_t created_before_ms)
{
    gencache__redis_tier *r = (gencache__redis_tier *)t;
    const char *fields[N_FIELDS] = {f->key, f->layer, f->tenant, f->tag, f->model};
    size_t cap = 20;
    for (int i = 0; i < N_FIELDS; i++) {
        size_t n = fields[i] ? strlen(fields[i]) : 0;
        if (n > MAX_FIELD_LEN)
            return GENCACHE_OK; /* matches no stored entry: nothing for the others to drop */
        cap += 4 + n;
    }
    unsigned char *buf = malloc(cap);
    if (!buf)
        return GENCACHE_ENOMEM;
    size_t len = encode(buf, cap, r->node_id, f, created_before_ms);
    int rc = len ? GENCACHE_EUNAVAILABLE : GENCACHE_EINVAL;
    gencache__redis_arg a[3] = {
        {{"PUBLISH"}, {7}}, {{CHANNEL}, {sizeof CHANNEL - 1}}, {{buf}, {len}}};
    unsigned count = atomic_load(&r->n_nodes);
    uint64_t dl = gencache__redis_now_ns() + (uint64_t)r->timeout_ms * 1000000u;
    /* Any node will do: a cluster passes the message on to every node. */
    for (unsigned i = 0; len && i < count && rc != GENCACHE_OK; i++) {
        gencache__redis_node *n = r->nodes[i];
        gencache__redis_conn *c = gencache__redis_acquire(r, n, dl);
        if (!c)
            continue;
        redisReply *rep = NULL;
        rc = gencache__redis_command(c, dl, &rep, 3, a);
        gencache__redis_release(r, n, c, rc == GENCACHE_OK);
        if (rc == GENCACHE_OK && rep->type != REDIS_REPLY_INTEGER)
            rc = GENCACHE_EIO;
        if (rep)
            freeReplyObject(rep);
    }
    free(buf);
    if (rc == GENCACHE_OK)
        atomic_fetch_add(&r->published, 1);
    else
        atomic_fetch_add(&r->backend_errors, 1);
    return rc;
}

/* ---- the subscriber ---- */

static void deliver(gencache__redis_coherence *co, const redisReply *rep)
{
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 3 ||
        rep->element[0]->type != REDIS_REPLY_STRING ||
        strcmp(rep->element[0]->str, "message") != 0 || rep->element[2]->type != REDIS_REPLY_STRING)
        return; /* a subscribe confirmation or a PING's answer */
    if (rep->element[1]->type == REDIS_REPLY_STRING &&
        strcmp(rep->element[1]->str, GENCACHE__REDIS_WRITTEN_CHANNEL) == 0) {
        gencache__redis_bloom_note(co->r, rep->element[2]->str, (size_t)rep->element[2]->len);
        return;
    }
    if (rep->element[1]->type == REDIS_REPLY_STRING &&
        strcmp(rep->element[1]->str, GENCACHE__REDIS_REUSE_CHANNEL) == 0) {
        if (co->cb.reuse_heard)
            co->cb.reuse_heard(co->cb.userdata, rep->element[2]->str, (size_t)rep->element[2]->len);
        return;
    }
    size_t cap = (size_t)rep->element[2]->len + N_FIELDS; /* the strings and their NULs */
    char *store = malloc(cap);
    gencache_filter f;
    uint64_t origin, created_before;
    if (!store || !decode(rep->element[2]->str, (size_t)rep->element[2]->len, &origin, &f,
                          &created_before, store, cap)) {
        free(store);
        gencache__log_msg(co->r->log, GENCACHE_LOG_WARN,
                          "redis tier %s: ignoring a malformed message on " CHANNEL, co->r->where);
        return;
    }
    atomic_fetch_add(&co->received, 1);
    if (origin != co->r->node_id)
        co->cb.invalidate(co->cb.userdata, &f, created_before);
    free(store);
    if (origin == co->r->node_id)
        return;
    for (int i = 0; i < N_AGAIN; i++) {
        if (!co->again[i].msg) {
            co->again[i].msg = malloc(rep->element[2]->len);
            if (co->again[i].msg) {
                memcpy(co->again[i].msg, rep->element[2]->str, rep->element[2]->len);
                co->again[i].len = rep->element[2]->len;
                co->again[i].due_ns = gencache__redis_now_ns() + (uint64_t)AGAIN_MS * 1000000u;
            }
            break;
        }
    }
}

/* Applies the invalidations whose second pass is due (all of them with force); returns the
 * earliest due time left (UINT64_MAX: none). */
static uint64_t run_again(gencache__redis_coherence *co, bool force)
{
    uint64_t now = gencache__redis_now_ns(), next = UINT64_MAX;
    for (int i = 0; i < N_AGAIN; i++) {
        if (!co->again[i].msg)
            continue;
        if (force || co->again[i].due_ns <= now) {
            size_t cap = co->again[i].len + N_FIELDS;
            char *store = force ? NULL : malloc(cap);
            gencache_filter f;
            uint64_t origin, created_before;
            if (store && decode(co->again[i].msg, co->again[i].len, &origin, &f, &created_before,
                                store, cap))
                co->cb.invalidate(co->cb.userdata, &f, created_before);
            free(store);
            free(co->again[i].msg);
            co->again[i].msg = NULL;
        } else if (co->again[i].due_ns < next) {
            next = co->again[i].due_ns;
        }
    }
    return next;
}

/* Waits ms or until stop; true when stopping. */
static bool pause_ms(gencache__redis_coherence *co, unsigned ms)
{
    pthread_mutex_lock(&co->lock);
    if (!co->stop) {
        uint64_t at = gencache__redis_now_ns() + (uint64_t)ms * 1000000u;
        struct timespec ts = {(time_t)(at / 1000000000u), (long)(at % 1000000000u)};
        pthread_cond_timedwait(&co->wake, &co->lock, &ts);
    }
    bool stop = co->stop;
    pthread_mutex_unlock(&co->lock);
    return stop;
}

static bool stopping(gencache__redis_coherence *co)
{
    pthread_mutex_lock(&co->lock);
    bool stop = co->stop;
    pthread_mutex_unlock(&co->lock);
    return stop;
}

/* Subscribes on c; GENCACHE_OK once Redis confirms. */
static int subscribe(gencache__redis_conn *c, uint64_t dl)
{
    gencache__redis_arg a[4] = {
        {{"SUBSCRIBE"}, {9}},
        {{CHANNEL}, {sizeof CHANNEL - 1}},
        {{GENCACHE__REDIS_WRITTEN_CHANNEL}, {sizeof GENCACHE__REDIS_WRITTEN_CHANNEL - 1}},
        {{GENCACHE__REDIS_REUSE_CHANNEL}, {sizeof GENCACHE__REDIS_REUSE_CHANNEL - 1}}};
    int rc = gencache__redis_send(c, 4, a, dl);
    for (int i = 0; i < 3 && rc == GENCACHE_OK; i++) {
        redisReply *rep = NULL;
        rc = gencache__redis_reply(c, dl, &rep);
        if (rc == GENCACHE_OK && (rep->type != REDIS_REPLY_ARRAY || rep->elements != 3 ||
                                  rep->element[0]->type != REDIS_REPLY_STRING ||
                                  strcmp(rep->element[0]->str, "subscribe") != 0))
            rc = GENCACHE_EPARSE;
        if (rep)
            freeReplyObject(rep);
    }
    return rc;
}

/* Asks the rebuilder for a fresh filter made under subscription gen. */
static void want_rebuild(gencache__redis_coherence *co, unsigned gen)
{
    pthread_mutex_lock(&co->lock);
    co->rebuild_wanted = true;
    co->rebuild_gen = gen;
    pthread_cond_broadcast(&co->wake);
    pthread_mutex_unlock(&co->lock);
}

static struct timespec after_ns(uint64_t ns)
{
    uint64_t at = gencache__redis_now_ns() + ns;
    return (struct timespec){(time_t)(at / 1000000000u), (long)(at % 1000000000u)};
}

static void *rebuilder(void *arg)
{
    gencache__redis_coherence *co = arg;
    pthread_mutex_lock(&co->lock);
    while (!co->stop) {
        if (!co->rebuild_wanted) {
            struct timespec ts = after_ns((uint64_t)GENCACHE__REDIS_BLOOM_REBUILD_MS * 1000000u);
            if (pthread_cond_timedwait(&co->wake, &co->lock, &ts) != 0 && !co->stop &&
                atomic_load(&co->subscribed)) {
                co->rebuild_wanted = true; /* the periodic one sheds deleted keys */
                co->rebuild_gen = atomic_load(&co->r->sub_gen);
            }
            continue;
        }
        co->rebuild_wanted = false;
        unsigned gen = co->rebuild_gen;
        pthread_mutex_unlock(&co->lock);
        int rc = gencache__redis_bloom_rebuild(co->r, gen, &co->stop_flag);
        pthread_mutex_lock(&co->lock);
        if (rc != GENCACHE_OK && !co->stop && atomic_load(&co->r->sub_gen) == gen) {
            /* A node did not answer: try again shortly. */
            struct timespec ts = after_ns(200000000u);
            pthread_cond_timedwait(&co->wake, &co->lock, &ts);
            if (!co->rebuild_wanted) {
                co->rebuild_wanted = true;
                co->rebuild_gen = gen;
            }
        }
    }
    pthread_mutex_unlock(&co->lock);
    return NULL;
}

/* Reads messages until the connection is lost or the tier closes. */
static void listen_on(gencache__redis_coherence *co, gencache__redis_conn *c)
{
    uint64_t last_rx = gencache__redis_now_ns(), ping_at = 0;
    while (!stopping(co)) {
        redisReply *rep = NULL;
        uint64_t again = run_again(co, false);
        uint64_t now = gencache__redis_now_ns(), until = now + (uint64_t)POLL_MS * 1000000u;
        int rc = gencache__redis_reply(c, again < until ? again : until, &rep);
        now = gencache__redis_now_ns();
        if (rc == GENCACHE_ETIMEDOUT) {
            if (ping_at && now - ping_at > (uint64_t)DEAD_MS * 1000000u)
                return; /* no answer: the server or the path to it is gone */
            if (!ping_at && now - last_rx > (uint64_t)QUIET_MS * 1000000u) {
                gencache__redis_arg a[1] = {{{"PING"}, {4}}};
                if (gencache__redis_send(c, 1, a, now + (uint64_t)POLL_MS * 1000000u) !=
                    GENCACHE_OK)
                    return;
                ping_at = now;
            }
            continue;
        }
        if (rc != GENCACHE_OK)
            return;
        last_rx = now;
        ping_at = 0;
        deliver(co, rep);
        freeReplyObject(rep);
    }
}

static void *subscriber(void *arg)
{
    gencache__redis_coherence *co = arg;
    gencache__redis_tier *r = co->r;
    gencache__redis_conn c = {.fd = -1};
    bool was_subscribed = false;
    for (unsigned attempt = 0; !stopping(co); attempt++) {
        unsigned count = atomic_load(&r->n_nodes);
        gencache__redis_node *n = r->nodes[attempt % count];
        uint64_t dl = gencache__redis_now_ns() + (uint64_t)(r->timeout_ms + 1000) * 1000000u;
        int rc = gencache__redis_connect(n, &c, dl);
        if (rc == GENCACHE_OK) {
            pthread_mutex_lock(&co->lock);
            co->fd = co->stop ? -1 : c.fd;
            rc = co->stop ? GENCACHE_EUNAVAILABLE : GENCACHE_OK;
            pthread_mutex_unlock(&co->lock);
        }
        if (rc == GENCACHE_OK)
            rc = subscribe(&c, dl);
        if (rc == GENCACHE_OK) {
            unsigned gen = atomic_fetch_add(&r->sub_gen, 1) + 1;
            atomic_store(&r->subscribed, true);
            atomic_store(&co->subscribed, true);
            if (co->has_rebuilder)
                want_rebuild(co, gen);
            if (co->cb.subscribed)
                co->cb.subscribed(co->cb.userdata);
            if (was_subscribed) {
                /* Messages sent while we were away are lost: what this node holds of shared
                 * entries may be stale. Subscribed first, so nothing later is missed. */
                gencache__log_msg(r->log, GENCACHE_LOG_INFO,
                                  "redis tier %s: subscribed again; dropping local copies of "
                                  "shared entries",
                                  n->where);
                co->cb.resync(co->cb.userdata);
                /* Counted once done: whoever reads the count finds the copies gone. */
                atomic_fetch_add(&co->resyncs, 1);
            }
            was_subscribed = true;
            listen_on(co, &c);
            /* Messages may be lost from here on: the filter stops deciding. */
            atomic_store(&r->subscribed, false);
            atomic_fetch_add(&r->sub_gen, 1);
            gencache__redis_bloom_lost(r);
            atomic_store(&co->subscribed, false);
        }
        pthread_mutex_lock(&co->lock);
        co->fd = -1;
        pthread_mutex_unlock(&co->lock);
        gencache__redis_disconnect(&c);
        if (pause_ms(co, RETRY_MS))
            break;
    }
    gencache__redis_disconnect(&c);
    free(c.buf);
    run_again(co, true); /* frees them */
    return NULL;
}

int gencache__redis_coherence_start(gencache__tier *t, const gencache__redis_coherence_cb *cb,
                                    gencache__redis_coherence **out)
{
    *out = NULL;
    gencache__redis_tier *r = (gencache__redis_tier *)t;
    if (!cb || !cb->invalidate || !cb->resync)
        return GENCACHE_EINVAL;
    gencache__redis_coherence *co = calloc(1, sizeof *co);
    if (!co)
        return GENCACHE_ENOMEM;
    co->r = r;
    co->cb = *cb;
    co->fd = -1;
    pthread_mutex_init(&co->lock, NULL);
    gencache__cond_init_mono(&co->wake);
    /* The rebuilder first: the subscriber reads has_rebuilder. */
    if (r->bloom_fp_rate > 0)
        co->has_rebuilder = pthread_create(&co->rebuilder, NULL, rebuilder, co) == 0;
    if (pthread_create(&co->thread, NULL, subscriber, co) != 0) {
        if (co->has_rebuilder) {
            pthread_mutex_lock(&co->lock);
            co->stop = true;
            atomic_store(&co->stop_flag, true);
            pthread_cond_broadcast(&co->wake);
            pthread_mutex_unlock(&co->lock);
            pthread_join(co->rebuilder, NULL);
        }
        pthread_mutex_destroy(&co->lock);
        pthread_cond_destroy(&co->wake);
        free(co);
        return GENCACHE_ENOMEM;
    }
    *out = co;
    return GENCACHE_OK;
}

void gencache__redis_coherence_stop(gencache__redis_coherence *co)
{
    if (!co)
        return;
    pthread_mutex_lock(&co->lock);
    co->stop = true;
    atomic_store(&co->stop_flag, true);
    if (co->fd >= 0)
        shutdown(co->fd, SHUT_RDWR); /* wakes the reader at once */
    pthread_cond_broadcast(&co->wake);
    pthread_mutex_unlock(&co->lock);
    pthread_join(co->thread, NULL);
    if (co->has_rebuilder)
        pthread_join(co->rebuilder, NULL);
    atomic_store(&co->r->bloom_ready, false);
    pthread_mutex_destroy(&co->lock);
    pthread_cond_destroy(&co->wake);
    free(co);
}

bool gencache__redis_coherence_subscribed(const gencache__redis_coherence *co)
{
    return co && atomic_load(&co->subscribed);
}

uint64_t gencache__redis_coherence_resyncs(const gencache__redis_coherence *co)
{
    return co ? atomic_load(&co->resyncs) : 0;
}
