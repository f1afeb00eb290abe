/*
 * metrics.c: GET /metrics in the Prometheus text format (version 0.0.4), with the metric names
 * of DESIGN.md section 5. Most numbers are the library's counters (gencache_stats_get), hits per
 * tier included; the ones only the daemon sees live here: the request latency histogram, hits by
 * (layer, tier) (the library counts per layer and per tier, not per pair), coalesced requests
 * and upstream outcomes. Every counter here is updated with atomics or under one short lock, so
 * recording never slows a request down; the fast path's threads keep their own counters, which
 * only they write (no read-modify-write shared between cores), and a scrape adds them up.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pthread.h>

#include "gencached.h"

/* Request duration buckets in seconds: from a memory hit to a slow generation. */
static const double BUCKETS[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                 0.25,   0.5,   1,      2.5,   5,    10,    30,   60};
#define N_BUCKETS      (sizeof BUCKETS / sizeof BUCKETS[0])
#define MAX_HIT_LABELS (GENCACHE_MAX_LAYERS * GENCACHE_MAX_TIERS)

typedef struct histogram {
    uint64_t buckets[N_BUCKETS]; /* non-cumulative; summed on output */
    uint64_t count;
    uint64_t sum_ns;
} histogram;

typedef struct hit_label {
    char layer[40];
    char tier[16];
    uint64_t hits; /* atomic */
} hit_label;

/* One server's counters (srv->metrics). */
struct gcd_metrics {
    histogram hist[GCD_ROUTE_COUNT]; /* by route */
    uint64_t coalesced;
    uint64_t bypassed;
    uint64_t upstream[3];   /* by gcd_upstream_outcome */
    uint64_t fast_handoffs; /* connections fastget.c handed to MHD */
    /* Labels are only appended (under hits_mu), each written before n_hit_labels (atomic) is
     * raised past it, and never changed after: a served hit finds its pair and counts it without
     * the lock. */
    pthread_mutex_t hits_mu;
    hit_label hit_labels[MAX_HIT_LABELS];
    size_t n_hit_labels;
    struct gcd_metrics_local *locals; /* under hits_mu; freed with the metrics */
};

/* One thread's own counters: written by that thread only, with relaxed loads and stores, read by
 * the scrape with relaxed loads. */
struct gcd_metrics_local {
    struct gcd_metrics_local *next;
    histogram entries;             /* requests of GCD_ROUTE_ENTRY */
    uint64_t fast_served;          /* requests fastget.c answered */
    uint64_t hits[MAX_HIT_LABELS]; /* by index in hit_labels */
};

int gcd_metrics_new(gcd_server *srv)
{
    struct gcd_metrics *m = calloc(1, sizeof *m);
    if (!m || pthread_mutex_init(&m->hits_mu, NULL) != 0) {
        free(m);
        return -1;
    }
    srv->metrics = m;
    return 0;
}

void gcd_metrics_free(gcd_server *srv)
{
    struct gcd_metrics *m = srv->metrics;
    if (!m)
        return;
    pthread_mutex_destroy(&m->hits_mu);
    for (struct gcd_metrics_local *l = m->locals, *next; l; l = next) {
        next = l->next;
        free(l);
    }
    free(m);
    srv->metrics = NULL;
}

struct gcd_metrics_local *gcd_metrics_local_new(struct gcd_metrics *m)
{
    struct gcd_metrics_local *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    pthread_mutex_lock(&m->hits_mu);
    l->next = m->locals;
    m->locals = l;
    pthread_mutex_unlock(&m->hits_mu);
    return l;
}

static void add_shared(uint64_t *p, uint64_t v)
{
    __atomic_add_fetch(p, v, __ATOMIC_RELAXED);
}

/* Only the owning thread writes *p: a plain add, atomic only in that readers never see it torn. */
static void add_local(uint64_t *p, uint64_t v)
{
    __atomic_store_n(p, __atomic_load_n(p, __ATOMIC_RELAXED) + v, __ATOMIC_RELAXED);
}

static void observe(histogram *h, double seconds, void (*add)(uint64_t *, uint64_t))
{
    size_t i = 0;
    while (i < N_BUCKETS && seconds > BUCKETS[i])
        i++;
    if (i < N_BUCKETS)
        add(&h->buckets[i], 1);
    add(&h->count, 1);
    add(&h->sum_ns, (uint64_t)(seconds * 1e9));
}

void gcd_metrics_request(struct gcd_metrics *m, gcd_route_id route, double seconds)
{
    if ((unsigned)route >= GCD_ROUTE_COUNT)
        route = GCD_ROUTE_NONE;
    observe(&m->hist[route], seconds, add_shared);
}

void gcd_metrics_local_request(struct gcd_metrics_local *l, double seconds)
{
    observe(&l->entries, seconds, add_local);
    add_local(&l->fast_served, 1);
}

/* The index of the (layer, tier) pair in m->hit_labels, added when new; MAX_HIT_LABELS when the
 * table is full. */
static size_t hit_label_index(struct gcd_metrics *m, const char *layer, const char *tier)
{
    hit_label *hl = m->hit_labels;
    size_t n = __atomic_load_n(&m->n_hit_labels, __ATOMIC_ACQUIRE);
    for (size_t i = 0; i < n; i++)
        if (strcmp(hl[i].layer, layer) == 0 && strcmp(hl[i].tier, tier) == 0)
            return i;
    /* A new pair: looked for again under the lock, since another thread may have added it. */
    pthread_mutex_lock(&m->hits_mu);
    n = m->n_hit_labels;
    size_t i = 0;
    for (; i < n; i++)
        if (strcmp(hl[i].layer, layer) == 0 && strcmp(hl[i].tier, tier) == 0)
            break;
    if (i == n && i < MAX_HIT_LABELS) {
        snprintf(hl[i].layer, sizeof hl[i].layer, "%s", layer);
        snprintf(hl[i].tier, sizeof hl[i].tier, "%s", tier);
        __atomic_store_n(&m->n_hit_labels, n + 1, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&m->hits_mu);
    return i;
}

void gcd_metrics_hit(struct gcd_metrics *m, const char *layer, const char *tier)
{
    if (!layer || !tier || !*tier)
        return;
    size_t i = hit_label_index(m, layer, tier);
    if (i < MAX_HIT_LABELS)
        add_shared(&m->hit_labels[i].hits, 1);
}

void gcd_metrics_local_hit(struct gcd_metrics *m, struct gcd_metrics_local *l, const char *layer,
                           const char *tier)
{
    if (!layer || !tier || !*tier)
        return;
    size_t i = hit_label_index(m, layer, tier);
    if (i < MAX_HIT_LABELS)
        add_local(&l->hits[i], 1);
}

void gcd_metrics_coalesced(struct gcd_metrics *m)
{
    __atomic_add_fetch(&m->coalesced, 1, __ATOMIC_RELAXED);
}

void gcd_metrics_bypassed(struct gcd_metrics *m)
{
    __atomic_add_fetch(&m->bypassed, 1, __ATOMIC_RELAXED);
}

void gcd_metrics_counts(struct gcd_metrics *m, uint64_t *coalesced, uint64_t *bypassed)
{
    *coalesced = __atomic_load_n(&m->coalesced, __ATOMIC_RELAXED);
    *bypassed = __atomic_load_n(&m->bypassed, __ATOMIC_RELAXED);
}

void gcd_metrics_fast_handoff(struct gcd_metrics *m)
{
    __atomic_add_fetch(&m->fast_handoffs, 1, __ATOMIC_RELAXED);
}

void gcd_metrics_upstream(struct gcd_metrics *m, gcd_upstream_outcome outcome)
{
    if ((unsigned)outcome < 3)
        __atomic_add_fetch(&m->upstream[outcome], 1, __ATOMIC_RELAXED);
}

/* ---- output ------------------------------------------------------------------------------- */

typedef struct buf {
    char *p;
    size_t len, cap;
    bool failed;
} buf;

static void put(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(buf *b, const char *fmt, ...)
{
    if (b->failed)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->failed = true;
            return;
        }
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap * 2 + (size_t)n;
        char *np = realloc(b->p, cap);
        if (!np) {
            b->failed = true;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
}

static void head(buf *b, const char *name, const char *type, const char *help)
{
    put(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Label values are layer and tier names (restricted characters), escaped all the same. */
static const char *esc(const char *s, char *out, size_t size)
{
    size_t j = 0;
    for (; *s && j + 3 < size; s++) {
        if (*s == '\\' || *s == '"') {
            out[j++] = '\\';
            out[j++] = *s;
        } else if (*s == '\n') {
            out[j++] = '\\';
            out[j++] = 'n';
        } else {
            out[j++] = *s;
        }
    }
    out[j] = '\0';
    return out;
}

static void layers_out(buf *b, const gencache_stats *st, struct gcd_metrics *m)
{
    char l[80];
    head(b, "gencache_lookups_total", "counter", "Lookups by layer and outcome (hit or miss).");
    for (uint32_t i = 0; i < st->n_layers; i++) {
        const gencache_layer_stats *s = &st->layers[i];
        if (!s->layer)
            continue;
        esc(s->layer, l, sizeof l);
        put(b, "gencache_lookups_total{layer=\"%s\",outcome=\"hit\"} %llu\n", l,
            (unsigned long long)s->hits);
        put(b, "gencache_lookups_total{layer=\"%s\",outcome=\"miss\"} %llu\n", l,
            (unsigned long long)s->misses);
    }

    /* gencache_hits_total{layer,tier} keeps DESIGN.md's labels, but the library counts hits
     * per layer and per tier (gencache_tier_stats.hits), never per (layer, tier): the pair is
     * the daemon's own count of the hits it serves (gcd_metrics_hit). What it did not see (other
     * clients of the same cache) is tier "unknown", so a layer's tiers add up to its hits. The
     * library's per-tier count is gencache_tier_hits_total{tier} below. */
    head(b, "gencache_hits_total", "counter", "Hits by layer and the tier that served them.");
    pthread_mutex_lock(&m->hits_mu);
    size_t n = m->n_hit_labels;
    hit_label *copy = malloc((n ? n : 1) * sizeof *copy);
    for (size_t j = 0; copy && j < n; j++) {
        memcpy(copy[j].layer, m->hit_labels[j].layer, sizeof copy[j].layer);
        memcpy(copy[j].tier, m->hit_labels[j].tier, sizeof copy[j].tier);
        copy[j].hits = __atomic_load_n(&m->hit_labels[j].hits, __ATOMIC_RELAXED);
        for (const struct gcd_metrics_local *lc = m->locals; lc; lc = lc->next)
            copy[j].hits += __atomic_load_n(&lc->hits[j], __ATOMIC_RELAXED);
    }
    pthread_mutex_unlock(&m->hits_mu);
    if (!copy)
        n = 0;
    for (uint32_t i = 0; i < st->n_layers; i++) {
        const gencache_layer_stats *s = &st->layers[i];
        if (!s->layer)
            continue;
        esc(s->layer, l, sizeof l);
        uint64_t attributed = 0;
        for (size_t j = 0; j < n; j++) {
            if (strcmp(copy[j].layer, s->layer) != 0)
                continue;
            char t[40];
            put(b, "gencache_hits_total{layer=\"%s\",tier=\"%s\"} %llu\n", l,
                esc(copy[j].tier, t, sizeof t), (unsigned long long)copy[j].hits);
            attributed += copy[j].hits;
        }
        put(b, "gencache_hits_total{layer=\"%s\",tier=\"unknown\"} %llu\n", l,
            (unsigned long long)(s->hits > attributed ? s->hits - attributed : 0));
    }
    free(copy);

    head(b, "gencache_compute_seconds_saved_total", "counter",
         "Compute time the cache saved: the sum of the stored cost of every hit, by layer.");
    for (uint32_t i = 0; i < st->n_layers; i++)
        if (st->layers[i].layer)
            put(b, "gencache_compute_seconds_saved_total{layer=\"%s\"} %.3f\n",
                esc(st->layers[i].layer, l, sizeof l),
                (double)st->layers[i].cost_ms_saved / 1000.0);

    head(
        b, "gencache_ghost_hits_total", "counter",
        "Misses on keys evicted recently: hits a larger cache would have had, by layer; "
        "estimated from sampled keys (1 in 16 by default), relative error about sqrt(15 / count).");
    for (uint32_t i = 0; i < st->n_layers; i++)
        if (st->layers[i].layer)
            put(b, "gencache_ghost_hits_total{layer=\"%s\"} %llu\n",
                esc(st->layers[i].layer, l, sizeof l),
                (unsigned long long)st->layers[i].ghost_hits);
}

static void tiers_out(buf *b, const gencache_stats *st)
{
    char t[40];
    head(b, "gencache_tier_hits_total", "counter",
         "Hits by the tier that answered them, over every layer (the library's count).");
    for (uint32_t i = 0; i < st->n_tiers; i++)
        if (st->tiers[i].tier)
            put(b, "gencache_tier_hits_total{tier=\"%s\"} %llu\n",
                esc(st->tiers[i].tier, t, sizeof t), (unsigned long long)st->tiers[i].hits);
    head(b, "gencache_bytes", "gauge", "Bytes held by each tier.");
    for (uint32_t i = 0; i < st->n_tiers; i++)
        if (st->tiers[i].tier)
            put(b, "gencache_bytes{tier=\"%s\"} %llu\n", esc(st->tiers[i].tier, t, sizeof t),
                (unsigned long long)st->tiers[i].bytes);
    head(b, "gencache_entries", "gauge", "Entries held by each tier.");
    for (uint32_t i = 0; i < st->n_tiers; i++)
        if (st->tiers[i].tier)
            put(b, "gencache_entries{tier=\"%s\"} %llu\n", esc(st->tiers[i].tier, t, sizeof t),
                (unsigned long long)st->tiers[i].entries);
    head(b, "gencache_evictions_total", "counter",
         "Entries removed by the cache, by tier and reason (capacity, expired, corrupt).");
    for (uint32_t i = 0; i < st->n_tiers; i++) {
        const gencache_tier_stats *s = &st->tiers[i];
        if (!s->tier)
            continue;
        esc(s->tier, t, sizeof t);
        put(b, "gencache_evictions_total{tier=\"%s\",reason=\"capacity\"} %llu\n", t,
            (unsigned long long)s->evictions_capacity);
        put(b, "gencache_evictions_total{tier=\"%s\",reason=\"expired\"} %llu\n", t,
            (unsigned long long)s->evictions_expired);
        put(b, "gencache_evictions_total{tier=\"%s\",reason=\"corrupt\"} %llu\n", t,
            (unsigned long long)s->evictions_corrupt);
    }
    head(b, "gencache_backend_errors_total", "counter",
         "Failed operations on a tier's backend (I/O, network).");
    for (uint32_t i = 0; i < st->n_tiers; i++)
        if (st->tiers[i].tier)
            put(b, "gencache_backend_errors_total{tier=\"%s\"} %llu\n",
                esc(st->tiers[i].tier, t, sizeof t),
                (unsigned long long)st->tiers[i].backend_errors);
    head(b, "gencache_encryption_rejected_total", "counter",
         "Records of an encrypting tier read as misses: sealed under a key not configured, "
         "failing their authentication tag (tampered with or damaged), or unencrypted.");
    for (uint32_t i = 0; i < st->n_tiers; i++)
        if (st->tiers[i].tier && strcmp(st->tiers[i].tier, "mem") != 0)
            put(b, "gencache_encryption_rejected_total{tier=\"%s\"} %llu\n",
                esc(st->tiers[i].tier, t, sizeof t),
                (unsigned long long)st->tiers[i].crypt_rejected);
    /* The shared tier's traffic between nodes: only a Redis tier has it. */
    const gencache_tier_stats *redis = NULL;
    for (uint32_t i = 0; i < st->n_tiers; i++)
        if (st->tiers[i].tier && strcmp(st->tiers[i].tier, "redis") == 0)
            redis = &st->tiers[i];
    if (!redis)
        return;
    const struct {
        const char *name, *help;
        uint64_t v;
    } shared[] = {
        {"gencache_redis_redirects_total", "MOVED and ASK redirects followed on a Redis Cluster.",
         redis->redirects},
        {"gencache_redis_filter_skips_total",
         "Gets the Bloom filter in front of Redis answered as misses with no round trip.",
         redis->filter_skips},
        {"gencache_invalidations_published_total",
         "Delete and invalidation messages sent to the other nodes sharing the Redis tier.",
         redis->invalidations_published},
    };
    for (size_t k = 0; k < sizeof shared / sizeof shared[0]; k++) {
        head(b, shared[k].name, "counter", shared[k].help);
        put(b, "%s{tier=\"redis\"} %llu\n", shared[k].name, (unsigned long long)shared[k].v);
    }
}

/* The memory tier's miss-ratio curve: what a tier of 0.5, 2 and 4 times its size would do. */
static void mrc_out(buf *b, gencache *cache, const gencache_stats *st)
{
    gencache_mrc mrc = {.struct_size = sizeof mrc};
    if (st->n_tiers == 0 || !st->tiers[0].tier || gencache_mrc_get(cache, &mrc) != GENCACHE_OK ||
        mrc.n_points == 0)
        return;
    char t[64];
    esc(st->tiers[0].tier, t, sizeof t);
    head(b, "gencache_mrc_hit_ratio", "gauge",
         "Estimated hit ratio of the tier at `scale` times its size (sampled miss-ratio curve).");
    for (uint32_t i = 0; i < mrc.n_points && i < GENCACHE_MRC_POINTS; i++)
        put(b, "gencache_mrc_hit_ratio{tier=\"%s\",scale=\"%g\"} %.6f\n", t, mrc.points[i].scale,
            mrc.points[i].hit_ratio);
    head(b, "gencache_mrc_gpu_seconds_saved", "gauge",
         "Estimated compute seconds the tier at `scale` times its size would have saved.");
    for (uint32_t i = 0; i < mrc.n_points && i < GENCACHE_MRC_POINTS; i++)
        put(b, "gencache_mrc_gpu_seconds_saved{tier=\"%s\",scale=\"%g\"} %.3f\n", t,
            mrc.points[i].scale, mrc.points[i].gpu_seconds_saved);
}

/* The memory-pressure state tenancy.c keeps (warning threshold, degradation steps). */
static void pressure_out(buf *b, gcd_server *srv)
{
    head(b, "gencache_memory_pressure_ratio", "gauge",
         "Memory tier bytes over its limit, as of the last pressure check.");
    put(b, "gencache_memory_pressure_ratio %.4f\n", gcd_pressure_ratio(srv));
    head(b, "gencache_memory_pressure_level", "gauge",
         "Degradation step: 0 normal, 1 above the warning ratio (batch tenants' entries evicted), "
         "2 still above (new entries of non-high tenants get shortened TTLs).");
    put(b, "gencache_memory_pressure_level %u\n", gcd_pressure_level(srv));
    head(b, "gencache_memory_pressure_evictions_total", "counter",
         "Entries of batch-priority tenants evicted because of memory pressure.");
    put(b, "gencache_memory_pressure_evictions_total %llu\n",
        (unsigned long long)gcd_pressure_evicted(srv));
}

static void connections_out(buf *b, gcd_server *srv)
{
    uint64_t open, head_timeouts, shed;
    gcd_conns_counts(srv, &open, &head_timeouts, &shed);
    head(b, "gencache_connections", "gauge", "Open client connections.");
    put(b, "gencache_connections %llu\n", (unsigned long long)open);
    head(b, "gencache_connections_closed_total", "counter",
         "Connections the daemon closed: head_timeout (no complete request head within "
         "limits.header_timeout), shed (idle keep-alive or slow head, closed to make room).");
    put(b, "gencache_connections_closed_total{reason=\"head_timeout\"} %llu\n",
        (unsigned long long)head_timeouts);
    put(b, "gencache_connections_closed_total{reason=\"shed\"} %llu\n", (unsigned long long)shed);
    head(b, "gencache_inflight_body_bytes", "gauge",
         "Request body bytes held now, against limits.max_inflight_bytes.");
    put(b, "gencache_inflight_body_bytes %llu\n",
        (unsigned long long)__atomic_load_n(&srv->inflight, __ATOMIC_RELAXED));
    head(b, "gencache_inflight_refused_total", "counter",
         "Requests answered 503 busy because their body did not fit the in-flight budget.");
    put(b, "gencache_inflight_refused_total %llu\n",
        (unsigned long long)__atomic_load_n(&srv->inflight_refused, __ATOMIC_RELAXED));
}

/* Adds what h holds now to *out; the count is read after the buckets. */
static void hist_add(histogram *out, const histogram *h)
{
    for (size_t i = 0; i < N_BUCKETS; i++)
        out->buckets[i] += __atomic_load_n(&h->buckets[i], __ATOMIC_RELAXED);
    out->count += __atomic_load_n(&h->count, __ATOMIC_RELAXED);
    out->sum_ns += __atomic_load_n(&h->sum_ns, __ATOMIC_RELAXED);
}

static void daemon_out(buf *b, struct gcd_metrics *m)
{
    uint64_t fast_served = 0;
    histogram entries;
    memset(&entries, 0, sizeof entries);
    pthread_mutex_lock(&m->hits_mu);
    for (const struct gcd_metrics_local *l = m->locals; l; l = l->next) {
        hist_add(&entries, &l->entries);
        fast_served += __atomic_load_n(&l->fast_served, __ATOMIC_RELAXED);
    }
    pthread_mutex_unlock(&m->hits_mu);
    head(b, "gencache_request_duration_seconds", "histogram",
         "HTTP request duration, from the request line to the last byte queued, by route.");
    for (int s = 0; s < GCD_ROUTE_COUNT; s++) {
        histogram h = entries; /* the threads' own counts: entries only */
        if (s != GCD_ROUTE_ENTRY)
            memset(&h, 0, sizeof h);
        hist_add(&h, &m->hist[s]);
        if (!h.count && s != GCD_ROUTE_GENERATE)
            continue; /* routes never called stay out of the output */
        const char *name = gcd_route_name((gcd_route_id)s);
        uint64_t cum = 0;
        for (size_t i = 0; i < N_BUCKETS; i++) {
            cum += h.buckets[i];
            put(b, "gencache_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} %llu\n", name,
                BUCKETS[i], (unsigned long long)cum);
        }
        /* +Inf is never below the last bucket, even when a request was counted in between. */
        uint64_t count = h.count < cum ? cum : h.count;
        put(b, "gencache_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %llu\n", name,
            (unsigned long long)count);
        put(b, "gencache_request_duration_seconds_sum{route=\"%s\"} %.9f\n", name,
            (double)h.sum_ns / 1e9);
        put(b, "gencache_request_duration_seconds_count{route=\"%s\"} %llu\n", name,
            (unsigned long long)count);
    }
    head(b, "gencache_coalesced_total", "counter",
         "Generate requests that waited for an identical request's upstream call.");
    put(b, "gencache_coalesced_total %llu\n",
        (unsigned long long)__atomic_load_n(&m->coalesced, __ATOMIC_RELAXED));
    head(b, "gencache_bypassed_total", "counter",
         "Generate requests forwarded without the cache (no seed, or a sensitive prompt).");
    put(b, "gencache_bypassed_total %llu\n",
        (unsigned long long)__atomic_load_n(&m->bypassed, __ATOMIC_RELAXED));
    head(b, "gencache_upstream_requests_total", "counter",
         "Calls to the upstream generator by outcome (ok, error, timeout).");
    static const char *const names[] = {"ok", "error", "timeout"};
    for (int i = 0; i < 3; i++)
        put(b, "gencache_upstream_requests_total{outcome=\"%s\"} %llu\n", names[i],
            (unsigned long long)__atomic_load_n(&m->upstream[i], __ATOMIC_RELAXED));
    head(b, "gencache_fast_get_requests_total", "counter",
         "Entry GETs and HEADs answered by the daemon's own loop (http.fast_get), not "
         "libmicrohttpd.");
    put(b, "gencache_fast_get_requests_total %llu\n", (unsigned long long)fast_served);
    head(b, "gencache_fast_get_handoffs_total", "counter",
         "Connections the daemon's own loop handed to libmicrohttpd because their next request "
         "was not a simple entry GET.");
    put(b, "gencache_fast_get_handoffs_total %llu\n",
        (unsigned long long)__atomic_load_n(&m->fast_handoffs, __ATOMIC_RELAXED));
}

enum MHD_Result gcd_metrics_handle(struct MHD_Connection *c, gcd_request *req)
{
    /* The numbers cover every tenant's traffic: an admin token (or the open mode) only. */
    if (!gcd_tenant_admin(req))
        return gcd_reply_error(c, req, MHD_HTTP_FORBIDDEN, "forbidden",
                               "/metrics covers every tenant: it needs an admin tenant's token");
    gencache_stats *st = calloc(1, sizeof *st);
    if (!st)
        return gcd_reply_gencache(c, req, GENCACHE_ENOMEM, "reading the counters");
    st->struct_size = sizeof *st;
    int err = gencache_stats_get(req->srv->cache, st);
    if (err != 0) {
        free(st);
        return gcd_reply_gencache(c, req, err, "reading the counters");
    }
    if (st->n_layers > GENCACHE_MAX_LAYERS)
        st->n_layers = GENCACHE_MAX_LAYERS;
    if (st->n_tiers > GENCACHE_MAX_TIERS)
        st->n_tiers = GENCACHE_MAX_TIERS;
    buf b = {.cap = 16384};
    b.p = malloc(b.cap);
    if (!b.p) {
        free(st);
        return gcd_reply_gencache(c, req, GENCACHE_ENOMEM, "writing the metrics");
    }
    layers_out(&b, st, req->srv->metrics);
    tiers_out(&b, st);
    mrc_out(&b, req->srv->cache, st);
    daemon_out(&b, req->srv->metrics);
    pressure_out(&b, req->srv);
    connections_out(&b, req->srv);
    char *reuse = gcd_lookup_metrics(req->srv);
    if (reuse)
        put(&b, "%s", reuse);
    b.failed |= reuse == NULL;
    free(reuse);
    char *traj = gcd_trajectory_metrics(req->srv);
    if (traj)
        put(&b, "%s", traj);
    b.failed |= traj == NULL;
    free(traj);
    free(st);
    if (b.failed) {
        free(b.p);
        return gcd_reply_gencache(c, req, GENCACHE_ENOMEM, "writing the metrics");
    }
    struct MHD_Response *resp = MHD_create_response_from_buffer(b.len, b.p, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(b.p);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8");
    return gcd_reply_queue(c, req, MHD_HTTP_OK, resp);
}
