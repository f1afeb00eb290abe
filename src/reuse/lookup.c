/*
 * lookup.c: lookups and stores by request (gencache/reuse.h) over the cache's public calls. A
 * store puts the entry under the request's key and records what it may also serve: its image's
 * signature on a perceptual lname, its seed on a seeded one. A lookup tries the exact key first;
 * only its miss consults the records, and every candidate is read back with the caller's own
 * rights (gencache_get_as), so a record can widen what a key finds but never whose entries it
 * reaches. A candidate whose entry is gone is a stale record: dropped, and the next one tried.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "key/key.h"
#include "reuse.h"

#define MAX_CANDS 8

struct gencache__reuse_state {
    gencache__reuse *records;
    gencache_match_options guard;
    char *path;              /* data_dir/reuse.idx; NULL without a disk tier */
    char *traj_path;         /* data_dir/traj.idx; NULL without a disk tier */
    pthread_mutex_t save_mu; /* serializes loading and saving the file */
    _Atomic bool loaded;     /* the file was read (lazily: config layers come after open) */
    bool saved_once;         /* under save_mu: saved_at is meaningful */
    uint64_t saved_at;       /* under save_mu: the records' mutations when last read or written */
    _Atomic uint64_t perceptual_hits[GENCACHE_MAX_LAYERS];
    _Atomic uint64_t any_seed_hits[GENCACHE_MAX_LAYERS];
    _Atomic uint64_t refusals[GENCACHE_MAX_LAYERS];
    _Atomic uint64_t prompt_hits[GENCACHE_MAX_LAYERS];
    unsigned prompt_radius;     /* SimHash bits; 0: the same aggressively normalized prompt */
    gencache__traj_state *traj; /* approximate step reuse (trajectory.c) */
    gencache__reuse_net *net;   /* records of shared layers through Redis; NULL: none */
};

const char *gencache_match_kind_name(gencache_match_kind kind)
{
    switch (kind) {
    case GENCACHE_MATCH_NONE:
        return "none";
    case GENCACHE_MATCH_EXACT:
        return "exact";
    case GENCACHE_MATCH_PERCEPTUAL:
        return "perceptual";
    case GENCACHE_MATCH_ANY_SEED:
        return "any_seed";
    case GENCACHE_MATCH_SIMILAR_PROMPT:
        return "similar_prompt";
    }
    return NULL;
}

int gencache_request_set_image_sig(gencache_request *req, const gencache_image_sig *sig)
{
    if (!req || !sig || (sig->width == 0) != (sig->height == 0) || !req->image_digest[0])
        return GENCACHE_EINVAL;
    req->image_sig = *sig;
    if (sig->width == 0)
        req->image_sig.dhash = 0; /* the pHash alone */
    req->has_image_sig = true;
    return GENCACHE_OK;
}

/* ---- the records' file ---- */

static int layer_index_of(void *ud, const char *name)
{
    gencache *c = ud;
    for (unsigned i = 0; i < c->n_layers; i++)
        if (strcmp(c->layers[i].name, name) == 0)
            return (int)i;
    return -1;
}

static const char *layer_name_of(void *ud, uint32_t i)
{
    gencache *c = ud;
    return i < c->n_layers ? c->layers[i].name : NULL;
}

int gencache__reuse_open(gencache *cache, const char *data_dir)
{
    struct gencache__reuse_state *st = calloc(1, sizeof *st);
    if (!st)
        return GENCACHE_ENOMEM;
    gencache_match_options_init(&st->guard);
    int rc = gencache__reuse_new(&st->records);
    if (rc == GENCACHE_OK)
        rc = gencache__traj_state_new(&st->traj);
    if (rc == GENCACHE_OK && data_dir) {
        size_t n = strlen(data_dir) + sizeof "/reuse.idx";
        st->path = malloc(n);
        st->traj_path = malloc(n);
        if (!st->path || !st->traj_path)
            rc = GENCACHE_ENOMEM;
        else
            snprintf(st->path, n, "%s/reuse.idx", data_dir);
        if (rc == GENCACHE_OK)
            snprintf(st->traj_path, n, "%s/traj.idx", data_dir);
    }
    if (rc != GENCACHE_OK || pthread_mutex_init(&st->save_mu, NULL) != 0) {
        gencache__reuse_free(st->records);
        gencache__traj_state_free(st->traj);
        free(st->path);
        free(st->traj_path);
        free(st);
        return rc != GENCACHE_OK ? rc : GENCACHE_ENOMEM;
    }
    cache->reuse = st;
    return GENCACHE_OK;
}

/* Reads the file once, at the first use: the layers a config defines exist by then, and the
 * records name their layers. Called with save_mu held. */
static void load_locked(gencache *cache, struct gencache__reuse_state *st)
{
    if (atomic_load(&st->loaded))
        return;
    atomic_store(&st->loaded, true);
    if (st->net)
        gencache__reuse_net_ready(st->net); /* the layers exist: Redis's records may be read */
    if (!st->path)
        return;
    gencache__reuse_layers layers = {layer_index_of, layer_name_of, cache};
    gencache__traj_state_load(cache, st->traj, st->traj_path, &layers);
    int rc = gencache__reuse_load_file(st->records, st->path, &layers);
    if (rc == GENCACHE_OK) {
        st->saved_at = gencache__reuse_mutations(st->records); /* the file says just this */
        st->saved_once = true;
    }
    if (rc != GENCACHE_OK && rc != GENCACHE_EIO)
        gencache__log_msg(&cache->log, GENCACHE_LOG_WARN,
                          "reuse: %s is unreadable (%s); perceptual and seed matches start empty "
                          "and fill again as entries are stored",
                          st->path, gencache_strerror(rc));
}

static struct gencache__reuse_state *state(gencache *cache)
{
    struct gencache__reuse_state *st = cache->reuse;
    if (st && !atomic_load(&st->loaded)) {
        pthread_mutex_lock(&st->save_mu);
        load_locked(cache, st);
        pthread_mutex_unlock(&st->save_mu);
    }
    return st;
}

int gencache_reuse_save(gencache *cache)
{
    if (!cache)
        return GENCACHE_EINVAL;
    struct gencache__reuse_state *st = cache->reuse;
    if (!st || !st->path)
        return GENCACHE_OK;
    gencache__reuse_layers layers = {layer_index_of, layer_name_of, cache};
    pthread_mutex_lock(&st->save_mu); /* two saves would race on the temporary file */
    load_locked(cache, st);           /* never overwrite records not read yet */
    uint64_t now = gencache__reuse_mutations(st->records);
    int rc = GENCACHE_OK;
    if (!st->saved_once || now != st->saved_at) {
        rc = gencache__reuse_save_file(st->records, st->path, &layers);
        if (rc == GENCACHE_OK) {
            st->saved_at = now; /* changes made while writing are saved next time */
            st->saved_once = true;
        }
    }
    if (rc != GENCACHE_OK)
        gencache__log_msg(&cache->log, GENCACHE_LOG_ERROR, "reuse: cannot write %s: %s", st->path,
                          gencache_strerror(rc));
    int trc = gencache__traj_state_save(cache, st->traj, st->traj_path, &layers);
    pthread_mutex_unlock(&st->save_mu);
    if (trc != GENCACHE_OK)
        gencache__log_msg(&cache->log, GENCACHE_LOG_ERROR, "trajectory: cannot write %s: %s",
                          st->traj_path, gencache_strerror(trc));
    return rc != GENCACHE_OK ? rc : trc;
}

void gencache__reuse_close(gencache *cache)
{
    struct gencache__reuse_state *st = cache->reuse;
    if (!st)
        return;
    gencache_reuse_save(cache);
    cache->reuse = NULL;
    gencache__reuse_free(st->records);
    gencache__traj_state_free(st->traj);
    pthread_mutex_destroy(&st->save_mu);
    free(st->path);
    free(st->traj_path);
    free(st);
}

void gencache__reuse_forget(gencache *cache, uint64_t key_hash)
{
    if (cache->reuse) {
        gencache__reuse_drop(cache->reuse->records, key_hash);
        gencache__traj_state_forget(cache->reuse->traj, key_hash);
    }
}

int gencache__reuse_share_start(gencache *cache)
{
    struct gencache__reuse_state *st = cache->reuse;
    if (!st || cache->shared_tier < 0)
        return GENCACHE_OK;
    int rc =
        gencache__reuse_net_new(cache, cache->tiers[cache->shared_tier], st->records, &st->net);
    if (rc == GENCACHE_OK && atomic_load(&st->loaded))
        gencache__reuse_net_ready(st->net);
    return rc;
}

void gencache__reuse_share_stop(gencache *cache)
{
    struct gencache__reuse_state *st = cache->reuse;
    if (st) {
        gencache__reuse_net_free(st->net);
        st->net = NULL;
    }
}

void gencache__reuse_heard(void *ud, const void *msg, size_t len)
{
    gencache *cache = ud;
    struct gencache__reuse_state *st = cache->reuse;
    /* Before the first use the layers may not be defined yet: the load that follows it reads
     * what this message says from Redis. */
    if (st && st->net && atomic_load(&st->loaded))
        gencache__reuse_net_heard(st->net, msg, len);
}

void gencache__reuse_subscribed(void *ud)
{
    gencache *cache = ud;
    if (cache->reuse && cache->reuse->net)
        gencache__reuse_net_want(cache->reuse->net);
}

gencache__reuse_net *gencache__reuse_net_of(gencache *cache)
{
    return cache->reuse ? cache->reuse->net : NULL;
}

/* Records of a shared layer that Redis holds too (their stored key is known). */
static bool in_redis(void *ud, const gencache__reuse_rec *rec)
{
    static const unsigned char none[32];
    const gencache *cache = ud;
    return cache->layers[rec->layer].shared && memcmp(rec->stored, none, 32) != 0;
}

void gencache__reuse_evicted(gencache *cache, uint64_t key_hash)
{
    /* The shared tier, not the sharing state: this runs on eviction threads, also while
     * gencache_close() stops the sharing. */
    if (cache->reuse && cache->shared_tier >= 0) {
        gencache__reuse_drop_unless(cache->reuse->records, key_hash, in_redis, cache);
        gencache__traj_state_forget(cache->reuse->traj, key_hash);
    } else {
        gencache__reuse_forget(cache, key_hash);
    }
}

gencache__traj_state *gencache__reuse_traj_state(gencache *cache)
{
    struct gencache__reuse_state *st = cache ? state(cache) : NULL;
    return st ? st->traj : NULL;
}

int gencache__reuse_layer_index(gencache *c, const char *name)
{
    return layer_index_of(c, name);
}

int gencache_reuse_set_guard(gencache *cache, const gencache_match_options *opts)
{
    if (!cache || !opts || opts->struct_size < sizeof *opts || opts->phash_radius > 64 ||
        !(opts->aspect_tolerance >= 0) || !cache->reuse)
        return GENCACHE_EINVAL;
    cache->reuse->guard = *opts;
    return GENCACHE_OK;
}

int gencache_reuse_set_prompt_radius(gencache *cache, unsigned radius)
{
    if (!cache || !cache->reuse || radius > 16)
        return GENCACHE_EINVAL;
    cache->reuse->prompt_radius = radius;
    return GENCACHE_OK;
}

unsigned gencache_reuse_get_prompt_radius(gencache *cache)
{
    return cache && cache->reuse ? cache->reuse->prompt_radius : 0;
}

int gencache_reuse_get_guard(gencache *cache, gencache_match_options *out)
{
    if (!cache || !out || out->struct_size < sizeof *out || !cache->reuse)
        return GENCACHE_EINVAL;
    *out = cache->reuse->guard;
    return GENCACHE_OK;
}

int gencache_reuse_stats_get(gencache *cache, gencache_reuse_stats *out)
{
    if (!cache || !out || out->struct_size < sizeof *out)
        return GENCACHE_EINVAL;
    memset(out, 0, sizeof *out);
    out->struct_size = sizeof *out;
    struct gencache__reuse_state *st = state(cache);
    out->n_layers = cache->n_layers;
    for (unsigned i = 0; i < cache->n_layers; i++) {
        gencache_reuse_layer_stats *l = &out->layers[i];
        l->layer = cache->layers[i].name;
        if (st) {
            l->perceptual_hits = atomic_load(&st->perceptual_hits[i]);
            l->any_seed_hits = atomic_load(&st->any_seed_hits[i]);
            l->guard_refusals = atomic_load(&st->refusals[i]);
            l->similar_prompt_hits = atomic_load(&st->prompt_hits[i]);
        }
    }
    if (st)
        gencache__reuse_counts(st->records, &out->images, &out->results, &out->prompts);
    return GENCACHE_OK;
}

/* ---- store ---- */

void gencache__reuse_hex_decode(const char *hex, unsigned char *out)
{
    for (int i = 0; i < 32; i++) {
        unsigned hi = (unsigned)(hex[2 * i] <= '9' ? hex[2 * i] - '0' : hex[2 * i] - 'a' + 10);
        unsigned lo =
            (unsigned)(hex[2 * i + 1] <= '9' ? hex[2 * i + 1] - '0' : hex[2 * i + 1] - 'a' + 10);
        out[i] = (unsigned char)(hi << 4 | lo);
    }
}

void gencache__reuse_hex_encode(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

/* The tenant a record of this layer belongs to: the caller's, on a layer that is not global. */
uint64_t gencache__reuse_tenant_hash(const gencache *c, uint32_t li, const gencache_caller *caller)
{
    if (c->layers[li].scope == GENCACHE_SCOPE_GLOBAL || !caller || !caller->tenant)
        return 0;
    return gencache__checksum(caller->tenant, strlen(caller->tenant)) | 1;
}

/* The hash of the key as stored (a tenant's namespace may rename it): read back, unchanged. */
int gencache__reuse_stored_key_hash(gencache *c, const gencache_caller *caller, const char *key,
                                    uint64_t *out)
{
    gencache_handle *h = NULL;
    int rc = gencache_peek_as(c, caller, key, &h);
    if (rc != GENCACHE_OK)
        return rc;
    *out = h->entry->hash;
    gencache_handle_release(h);
    return GENCACHE_OK;
}

/* The request's image signature, completed from a stored record of the same digest when the
 * request gives the pHash alone; a width of 0 says it could not be. */
static gencache_image_sig image_sig(struct gencache__reuse_state *st, uint64_t tenant,
                                    const gencache_request *req)
{
    gencache_image_sig sig = req->image_sig;
    if (sig.width == 0) {
        unsigned char digest[32];
        gencache__reuse_hex_decode(req->image_digest + 7, digest);
        gencache__reuse_image_sig_of(st->records, tenant, digest, sig.phash, &sig);
    }
    return sig;
}

/* Reads the entry just stored under key back: the hash and hex digits of its stored key (a
 * tenant's namespace may rename it) into rec, its time to live (0: none) and its size. */
static int read_back(gencache *c, const gencache_caller *caller, const char *key,
                     gencache__reuse_rec *rec, uint64_t *ttl_ms, uint64_t *size)
{
    gencache_handle *h = NULL;
    int rc = gencache_peek_as(c, caller, key, &h);
    if (rc != GENCACHE_OK)
        return rc;
    rec->key_hash = h->entry->hash;
    gencache__reuse_hex_decode(strchr(h->entry->key, '/') + 1, rec->stored);
    uint64_t expires = atomic_load(&h->entry->expires_ms), now = gencache__cache_now_ms(c);
    *ttl_ms = expires == 0 ? 0 : expires > now ? expires - now : 1;
    *size = h->entry->size;
    gencache_handle_release(h);
    return GENCACHE_OK;
}

/* Adds rec to the table and, on a shared layer, to Redis for the other nodes. A record Redis
 * does not take stays this node's (records_redis.c logs it): the store has succeeded all the
 * same. */
static int add_and_share(gencache *c, struct gencache__reuse_state *st,
                         const gencache__reuse_rec *rec, uint64_t ttl_ms, uint64_t size)
{
    int rc = gencache__reuse_add(st->records, rec);
    if (rc == GENCACHE_OK && st->net && c->layers[rec->layer].shared)
        gencache__reuse_net_share(st->net, rec, ttl_ms, size);
    return rc;
}

/* Records what the entry just stored under key may also serve. */
static int record(gencache *c, const gencache_caller *caller, const gencache_request *req,
                  const char *lname, const char *key)
{
    struct gencache__reuse_state *st = state(c);
    int idx;
    int rc = gencache__cache_key_layer(c, key, &idx);
    const gencache__layer_recipe *lr = gencache__registry_find(c->ks, lname);
    if (rc != GENCACHE_OK || !lr || !st)
        return rc;
    bool image = lr->image_match == GENCACHE_IMAGE_MATCH_PERCEPTUAL && req->has_image_sig;
    bool seed = lr->seeded && req->has_seed && req->seed_text[0];
    bool prompt = !lr->seeded && req->prompt;
    if (!image && !seed && !prompt)
        return GENCACHE_OK;
    gencache__reuse_rec rec = {.layer = (uint32_t)idx};
    rec.tenant_hash = gencache__reuse_tenant_hash(c, rec.layer, caller);
    gencache__reuse_hex_decode(strchr(key, '/') + 1, rec.hex);
    uint64_t ttl_ms = 0, size = 0;
    if ((rc = read_back(c, caller, key, &rec, &ttl_ms, &size)) != GENCACHE_OK)
        return rc == GENCACHE_ENOTFOUND ? GENCACHE_OK : rc; /* already gone again */
    uint64_t whole = 0;
    if (image && (rc = gencache__request_context(req, lname, NULL, &whole)) == GENCACHE_OK &&
        (rc = gencache__request_context(req, lname, "image", &rec.ctx)) == GENCACHE_OK &&
        rec.ctx != whole) { /* equal: the recipe has no image, nothing to match */
        rec.kind = GENCACHE__REUSE_IMAGE;
        rec.sig = image_sig(st, rec.tenant_hash, req);
        gencache__reuse_hex_decode(req->image_digest + 7, rec.digest);
        if (rec.sig.width != 0) /* the pHash alone cannot be guarded against later queries */
            rc = add_and_share(c, st, &rec, ttl_ms, size);
    }
    if (rc == GENCACHE_OK && seed &&
        (rc = gencache__request_context(req, lname, "seed", &rec.ctx)) == GENCACHE_OK) {
        rec.kind = GENCACHE__REUSE_SEED;
        memset(&rec.sig, 0, sizeof rec.sig);
        memset(rec.digest, 0, sizeof rec.digest);
        snprintf(rec.seed, sizeof rec.seed, "%s", req->seed_text);
        rc = add_and_share(c, st, &rec, ttl_ms, size);
    }
    if (rc == GENCACHE_OK && prompt) {
        /* Only a recipe that takes the prompt: then leaving it out changes the document. */
        gencache__reuse_rec p = rec;
        memset(&p.sig, 0, sizeof p.sig);
        memset(p.digest, 0, sizeof p.digest);
        p.seed[0] = '\0';
        p.kind = GENCACHE__REUSE_PROMPT;
        if ((rc = gencache__request_context(req, lname, NULL, &whole)) == GENCACHE_OK &&
            (rc = gencache__request_context(req, lname, "prompt", &p.ctx)) == GENCACHE_OK &&
            p.ctx != whole &&
            (rc = gencache__prompt_fingerprint(req->prompt, &p.simhash, &p.text_hash)) ==
                GENCACHE_OK)
            rc = add_and_share(c, st, &p, ttl_ms, size);
    }
    return rc;
}

int gencache_store(gencache *cache, const gencache_caller *caller, const gencache_request *req,
                   const char *lname, const void *data, size_t size, const gencache_meta *meta,
                   char *key_out)
{
    if (key_out)
        key_out[0] = '\0';
    if (!cache || !req || !lname)
        return GENCACHE_EINVAL;
    char key[GENCACHE_KEY_MAX];
    int rc = gencache_request_key(req, lname, key, sizeof key);
    if (rc == GENCACHE_OK)
        rc = gencache_put_as(cache, caller, key, data, size, meta);
    if (rc != GENCACHE_OK)
        return rc;
    if (key_out)
        memcpy(key_out, key, strlen(key) + 1);
    rc = record(cache, caller, req, lname, key);
    if (rc != GENCACHE_OK)
        gencache__log_msg(&cache->log, GENCACHE_LOG_WARN,
                          "reuse: %s is stored but not recorded for matches: %s", key,
                          gencache_strerror(rc));
    return GENCACHE_OK;
}

/* ---- lookup ---- */

/* True when the record of an entry no tier served is to be dropped: always for a layer this
 * node keeps to itself; on a shared layer, when Redis no longer holds it either (its entry may
 * still be on its way there from another node's write-back). */
static bool stale(gencache *c, const gencache__reuse_rec *rec)
{
    gencache__reuse_net *net = c->reuse->net;
    if (!net || !c->layers[rec->layer].shared)
        return true;
    return gencache__reuse_net_check(net, rec) == GENCACHE_OK;
}

/* Reads the candidates in order with the caller's rights; the first still stored is served. */
static int serve_first(gencache *c, const gencache_caller *caller, const char *lname,
                       const gencache__reuse_cand *cands, size_t n, gencache_handle **out,
                       size_t *which)
{
    for (size_t i = 0; i < n; i++) {
        char key[GENCACHE_KEY_MAX];
        size_t ln = strlen(lname);
        memcpy(key, lname, ln);
        key[ln] = '/';
        gencache__reuse_hex_encode(cands[i].rec.hex, 32, key + ln + 1);
        int rc = gencache_get_as(c, caller, key, out);
        if (rc == GENCACHE_OK) {
            *which = i;
            return GENCACHE_OK;
        }
        if (rc != GENCACHE_ENOTFOUND)
            return rc;
        if (stale(c, &cands[i].rec))
            gencache__reuse_drop(c->reuse->records, cands[i].rec.key_hash);
    }
    return GENCACHE_ENOTFOUND;
}

static void match_set(gencache_match *m, gencache_match_kind kind, const char *lname,
                      const gencache__reuse_cand *cand)
{
    if (!m)
        return;
    m->kind = kind;
    size_t ln = strlen(lname);
    memcpy(m->key, lname, ln);
    m->key[ln] = '/';
    gencache__reuse_hex_encode(cand->rec.hex, 32, m->key + ln + 1);
    if (kind == GENCACHE_MATCH_PERCEPTUAL) {
        m->distance = cand->distance;
        memcpy(m->of, "sha256:", 7);
        gencache__reuse_hex_encode(cand->rec.digest, 32, m->of + 7);
    } else if (kind == GENCACHE_MATCH_SIMILAR_PROMPT) {
        m->distance = cand->distance;
    } else {
        snprintf(m->seed, sizeof m->seed, "%s", cand->rec.seed);
    }
}

/* The records' answer for kind (IMAGE: the guard's candidates, nearest first; SEED: results of
 * the seedless recipe, newest first), served with the caller's rights. */
static int lookup_records(gencache *c, const gencache_caller *caller, const gencache_request *req,
                          const char *lname, uint32_t idx, unsigned kind, gencache_handle **out,
                          gencache_match *m)
{
    struct gencache__reuse_state *st = c->reuse;
    bool image = kind == GENCACHE__REUSE_IMAGE, prompt = kind == GENCACHE__REUSE_PROMPT;
    uint64_t ctx, tenant = gencache__reuse_tenant_hash(c, idx, caller), refused = 0, sim = 0,
                  text = 0;
    int rc = gencache__request_context(req, lname,
                                       image    ? "image"
                                       : prompt ? "prompt"
                                                : "seed",
                                       &ctx);
    if (rc == GENCACHE_OK && prompt)
        rc = gencache__prompt_fingerprint(req->prompt, &sim, &text);
    if (rc != GENCACHE_OK)
        return rc;
    gencache__reuse_cand cands[MAX_CANDS];
    size_t n = 0, which = 0;
    gencache_image_sig sig = image ? image_sig(st, tenant, req) : req->image_sig;
    if (image)
        rc = gencache__reuse_find_image(st->records, idx, ctx, tenant, &sig, &st->guard, cands,
                                        MAX_CANDS, &n, &refused);
    else if (prompt)
        rc = gencache__reuse_find_prompt(st->records, idx, ctx, tenant, sim, text,
                                         st->prompt_radius, cands, MAX_CANDS, &n);
    else
        rc = gencache__reuse_find_seed(st->records, idx, ctx, tenant, cands, MAX_CANDS, &n);
    if (refused)
        atomic_fetch_add_explicit(&st->refusals[idx], refused, memory_order_relaxed);
    if (rc == GENCACHE_OK)
        rc = serve_first(c, caller, lname, cands, n, out, &which);
    if (rc != GENCACHE_OK)
        return rc;
    _Atomic uint64_t *hits = image    ? &st->perceptual_hits[idx]
                             : prompt ? &st->prompt_hits[idx]
                                      : &st->any_seed_hits[idx];
    atomic_fetch_add_explicit(hits, 1, memory_order_relaxed);
    match_set(m,
              image    ? GENCACHE_MATCH_PERCEPTUAL
              : prompt ? GENCACHE_MATCH_SIMILAR_PROMPT
                       : GENCACHE_MATCH_ANY_SEED,
              lname, &cands[which]);
    return GENCACHE_OK;
}

int gencache_lookup(gencache *cache, const gencache_caller *caller, const gencache_request *req,
                    const char *lname, gencache_handle **out, gencache_match *match)
{
    if (out)
        *out = NULL;
    if (match && match->struct_size < sizeof *match)
        return GENCACHE_EINVAL;
    if (match) {
        memset(match, 0, sizeof *match);
        match->struct_size = sizeof *match;
    }
    if (!cache || !req || !lname || !out)
        return GENCACHE_EINVAL;
    char key[GENCACHE_KEY_MAX];
    int krc = gencache_request_key(req, lname, key, sizeof key);
    if (krc == GENCACHE_OK) {
        int rc = gencache_get_as(cache, caller, key, out);
        if (rc == GENCACHE_OK && match) {
            match->kind = GENCACHE_MATCH_EXACT;
            memcpy(match->key, key, strlen(key) + 1);
        }
        if (rc != GENCACHE_ENOTFOUND)
            return rc;
    } else if (krc != GENCACHE_EUNCACHEABLE) {
        return krc;
    }
    const gencache__layer_recipe *lr = gencache__registry_find(cache->ks, lname);
    int idx = layer_index_of(cache, lname); /* the registry's index: layers are never removed */
    if (!lr || idx < 0 || !state(cache))
        return krc == GENCACHE_OK ? GENCACHE_ENOTFOUND : krc;
    bool perceptual = krc == GENCACHE_OK && lr->image_match == GENCACHE_IMAGE_MATCH_PERCEPTUAL &&
                      req->has_image_sig;
    bool any_seed = lr->seeded && req->any_seed && !req->has_seed;
    int rc = krc == GENCACHE_OK ? GENCACHE_ENOTFOUND : krc;
    if (perceptual)
        rc = lookup_records(cache, caller, req, lname, (uint32_t)idx, GENCACHE__REUSE_IMAGE, out,
                            match);
    if (rc == GENCACHE_ENOTFOUND || (rc == GENCACHE_EUNCACHEABLE && any_seed)) {
        if (any_seed)
            rc = lookup_records(cache, caller, req, lname, (uint32_t)idx, GENCACHE__REUSE_SEED, out,
                                match);
    }
    if (rc == GENCACHE_ENOTFOUND && req->similar_prompt && req->prompt && !lr->seeded)
        rc = lookup_records(cache, caller, req, lname, (uint32_t)idx, GENCACHE__REUSE_PROMPT, out,
                            match);
    return rc;
}
