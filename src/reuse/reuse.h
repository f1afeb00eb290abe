/*
 * reuse.h: what the files of src/reuse/ share, and the hooks the orchestrator calls. The reuse
 * records say, for a stored entry, what else a lookup may serve it for: its input image's
 * signature (a perceptual match) or its seed (a result for a seedless request). A record names
 * its entry by the hash of the stored key, the one thing every removal path knows, so del,
 * invalidation and eviction drop it without a request in hand; a record whose entry has gone by
 * another way (a Redis TTL, a restart that lost it) is found stale at its first use and dropped
 * then. Nothing here is API.
 */
#ifndef GENCACHE_REUSE_INTERNAL_H
#define GENCACHE_REUSE_INTERNAL_H

#include "internal.h"

enum {
    GENCACHE__REUSE_IMAGE = 1,  /* sig and digest are set */
    GENCACHE__REUSE_SEED = 2,   /* seed is set */
    GENCACHE__REUSE_PROMPT = 3, /* simhash and text_hash are set */
};

typedef struct gencache__reuse gencache__reuse;

/* One record as callers give and get it. */
typedef struct gencache__reuse_rec {
    unsigned kind;            /* GENCACHE__REUSE_* */
    uint32_t layer;           /* the cache's layer index */
    uint64_t key_hash;        /* gencache__checksum() of the stored key (eviction's name) */
    uint64_t ctx;             /* gencache__request_context() without the image or seed */
    uint64_t tenant_hash;     /* gencache__checksum() of the caller's tenant; 0: none */
    unsigned char hex[32];    /* the key's 64 hex digits as bytes, as the caller names it */
    gencache_image_sig sig;   /* IMAGE */
    unsigned char digest[32]; /* IMAGE: the image's pixel digest */
    char seed[24];            /* SEED: decimal */
    uint64_t simhash;         /* PROMPT: gencache__prompt_fingerprint()'s SimHash */
    uint64_t text_hash;       /* PROMPT: and its hash of the normalized text */
    uint64_t stamp;           /* store order, for "the newest first" */
    unsigned char stored[32]; /* the stored key's hex digits as bytes (a tenant's namespace may
                                 rename the key); all 0: unknown (records_redis.c) */
} gencache__reuse_rec;

/* A candidate found by a query: a copy of its record, and its pHash distance (IMAGE). */
typedef struct gencache__reuse_cand {
    gencache__reuse_rec rec;
    unsigned distance;
} gencache__reuse_cand;

int gencache__reuse_new(gencache__reuse **out);
void gencache__reuse_free(gencache__reuse *r);
/* Adds rec, replacing the record of the same key_hash and kind. GENCACHE_OK, GENCACHE_ENOMEM,
 * GENCACHE_ELIMIT. */
int gencache__reuse_add(gencache__reuse *r, const gencache__reuse_rec *rec);
/* Drops every record of the entry whose stored key hashes to key_hash. Returns how many. */
size_t gencache__reuse_drop(gencache__reuse *r, uint64_t key_hash);
/* The same, but keeps the records keep() says to (called under the table's write lock: it
 * must not call back into r). */
size_t gencache__reuse_drop_unless(gencache__reuse *r, uint64_t key_hash,
                                   bool (*keep)(void *ud, const gencache__reuse_rec *rec),
                                   void *ud);
/* IMAGE records of (layer, ctx, tenant_hash) whose image passes `guard` against sig, nearest
 * first, at most cap of them; *refused counts those within the pHash radius the guard refused. */
int gencache__reuse_find_image(gencache__reuse *r, uint32_t layer, uint64_t ctx,
                               uint64_t tenant_hash, const gencache_image_sig *sig,
                               const gencache_match_options *guard, gencache__reuse_cand *out,
                               size_t cap, size_t *n, uint64_t *refused);
/* The full signature of the image whose pixel digest is digest and whose pHash is phash, from
 * an IMAGE record of tenant_hash: GENCACHE_OK, or GENCACHE_ENOTFOUND when none holds it. A query
 * sig of width 0 to gencache__reuse_find_image() carries the pHash alone and passes the radius
 * and min_detail guards only. */
int gencache__reuse_image_sig_of(gencache__reuse *r, uint64_t tenant_hash,
                                 const unsigned char digest[32], uint64_t phash,
                                 gencache_image_sig *out);
/* SEED records of (layer, ctx, tenant_hash), newest first, at most cap of them. */
int gencache__reuse_find_seed(gencache__reuse *r, uint32_t layer, uint64_t ctx,
                              uint64_t tenant_hash, gencache__reuse_cand *out, size_t cap,
                              size_t *n);
/* PROMPT records of (layer, ctx, tenant_hash) whose SimHash lies within radius of simhash
 * (radius 0: whose normalized text hashes to text_hash too), nearest first. */
int gencache__reuse_find_prompt(gencache__reuse *r, uint32_t layer, uint64_t ctx,
                                uint64_t tenant_hash, uint64_t simhash, uint64_t text_hash,
                                unsigned radius, gencache__reuse_cand *out, size_t cap, size_t *n);
/* The fingerprint of a prompt (src/reuse/simhash.c): the SimHash of the words and word pairs of
 * its aggressive normalization, and the hash of that normalized text. Returns GENCACHE_OK,
 * GENCACHE_EPARSE (invalid UTF-8), GENCACHE_ENOMEM. */
int gencache__prompt_fingerprint(const char *prompt, uint64_t *simhash, uint64_t *text_hash);
/* Calls fn for every record under the reader lock (fn must not call back into r). */
void gencache__reuse_each(gencache__reuse *r, void (*fn)(void *ud, const gencache__reuse_rec *rec),
                          void *ud);
/* How many adds and drops there have been: unchanged means nothing to save. */
uint64_t gencache__reuse_mutations(gencache__reuse *r);
/* How many records of each kind are held. */
void gencache__reuse_counts(gencache__reuse *r, uint64_t *images, uint64_t *results,
                            uint64_t *prompts);

/* The layer index of a name, and the name of an index, for the file (layers are saved by name:
 * their indexes may differ after a restart with another config). */
typedef struct gencache__reuse_layers {
    int (*index_of)(void *ud, const char *name); /* -1: no such layer */
    const char *(*name_of)(void *ud, uint32_t index);
    void *ud;
} gencache__reuse_layers;

/* One record as the file and the Redis tier hold it: its layer by name (NUL-padded to
 * GENCACHE__LAYER_NAME_MAX + 1 bytes), kind, key_hash, ctx, tenant_hash, stamp, hex, width,
 * height, phash, dhash, digest, seed, simhash and text_hash, little-endian; not `stored`. decode
 * writes the layer's name (NUL-terminated) to name and leaves rec->layer 0. */
#define GENCACHE__REUSE_REC_BYTES                                                                  \
    (GENCACHE__LAYER_NAME_MAX + 1 + 1 + 4 * 8 + 32 + 2 * 4 + 2 * 8 + 32 + 24 + 2 * 8)
void gencache__reuse_rec_encode(const gencache__reuse_rec *rec, const char *name,
                                unsigned char *out);
void gencache__reuse_rec_decode(const unsigned char *in, gencache__reuse_rec *rec, char *name);

/* An index file being written (records_io.c): a 24-byte header (magic, version, record count),
 * records that start with their layer's name (GENCACHE__LAYER_NAME_MAX + 1 bytes, NUL-padded),
 * and the XXH3-64 of everything before it; replaced whole. */
typedef struct gencache__idx_writer {
    unsigned char *buf;
    size_t n, cap;
    uint64_t count;
    const gencache__reuse_layers *layers;
    bool oom;
} gencache__idx_writer;
/* GENCACHE_OK or GENCACHE_ENOMEM. */
int gencache__idx_begin(gencache__idx_writer *w, const gencache__reuse_layers *layers);
/* Appends a record of `bytes` (its name included) for layer, writing the name: returns where the
 * rest goes, or NULL (out of memory, or a layer without a name: the record is skipped). */
unsigned char *gencache__idx_record(gencache__idx_writer *w, uint32_t layer, size_t bytes);
/* Fills the header and checksum, replaces path and frees the buffer: GENCACHE_OK, ENOMEM (a
 * record could not be added), or the errors of gencache__file_replace(). */
int gencache__idx_finish(gencache__idx_writer *w, const unsigned char magic[8], uint64_t version,
                         const char *path);
/* Checks an index file's header: at least a header and a checksum, then magic and version.
 * GENCACHE_OK (*count: the record count it claims, not yet checked), GENCACHE_EPARSE (too short
 * or another magic), GENCACHE_EVERSION. */
int gencache__idx_header(const unsigned char *buf, size_t size, const unsigned char magic[8],
                         uint64_t version, uint64_t *count);
/* Writes every record to path (a temporary file renamed over it). */
int gencache__reuse_save_file(gencache__reuse *r, const char *path,
                              const gencache__reuse_layers *layers);
/* Adds the records of the file at path; records of layers that no longer exist are skipped.
 * GENCACHE_EIO (no file), GENCACHE_EPARSE, GENCACHE_ECORRUPT, GENCACHE_EVERSION,
 * GENCACHE_ENOMEM; on an error nothing is added. */
int gencache__reuse_load_file(gencache__reuse *r, const char *path,
                              const gencache__reuse_layers *layers);

/* ---- hooks for src/cache.c and src/cache_admin.c (src/reuse/lookup.c) ---- */

/* Opens the cache's reuse records, loading data_dir/reuse.idx when there is one (NULL: no disk
 * tier). A missing or damaged file is logged and the records start empty. */
int gencache__reuse_open(gencache *cache, const char *data_dir);
/* Saves (with a disk tier) and frees the records. */
void gencache__reuse_close(gencache *cache);
/* The entry whose stored key hashes to key_hash is gone from this node. Never blocks on I/O and
 * takes only the records' own lock: callable under a tier's lock. */
void gencache__reuse_forget(gencache *cache, uint64_t key_hash);
/* The same for an entry this node's local tiers let go of (eviction, expiry): records of a shared
 * layer that Redis holds stay, since Redis may still hold the entry (a lookup that finds it gone
 * there drops them). */
void gencache__reuse_evicted(gencache *cache, uint64_t key_hash);

/* ---- records of shared layers through the Redis tier (src/reuse/records_redis.c) ---- */

typedef struct gencache__reuse_net gencache__reuse_net;

/* Starts sharing the records of the cache's shared layers through the Redis tier `shared`: a
 * loader thread reads every record Redis holds into `records` when asked (want) and once the
 * layers are known (ready). GENCACHE_OK, GENCACHE_ENOMEM. */
int gencache__reuse_net_new(gencache *cache, gencache__tier *shared, gencache__reuse *records,
                            gencache__reuse_net **out);
/* Stops and joins the loader (before the tier closes). NULL: nothing. */
void gencache__reuse_net_free(gencache__reuse_net *n);
void gencache__reuse_net_want(gencache__reuse_net *n);
void gencache__reuse_net_ready(gencache__reuse_net *n);
/* Writes rec (whose `stored` is set) to Redis beside its entry, expiring in ttl_ms (0: with no
 * expiry), and announces it to the other nodes; size: the entry's bytes (an entry too large for
 * the tier keeps its record to this node). GENCACHE_OK, GENCACHE_EUNAVAILABLE, GENCACHE_EIO. */
int gencache__reuse_net_share(gencache__reuse_net *n, const gencache__reuse_rec *rec,
                              uint64_t ttl_ms, uint64_t size);
/* A message of the reuse channel (the subscriber thread). */
void gencache__reuse_net_heard(gencache__reuse_net *n, const void *msg, size_t len);
/* Asks Redis about rec, whose entry no tier served: GENCACHE_OK when the record is gone there
 * (or has waited longer than its entry can take to arrive, and is deleted now): drop it;
 * GENCACHE_EEXIST: keep it (the entry is there, or may still come); GENCACHE_EUNAVAILABLE. */
int gencache__reuse_net_check(gencache__reuse_net *n, const gencache__reuse_rec *rec);
/* Records heard from other nodes, records read by the loader, loads completed. */
void gencache__reuse_net_counts(gencache__reuse_net *n, uint64_t *heard, uint64_t *loaded,
                                uint64_t *rebuilds);

/* Hooks for src/cache_admin.c: start after the tiers open and before the subscriber; stop after
 * the subscriber and before the tiers close. heard and subscribed are the subscriber's callbacks
 * (userdata: the cache). */
int gencache__reuse_share_start(gencache *cache);
void gencache__reuse_share_stop(gencache *cache);
void gencache__reuse_heard(void *cache, const void *msg, size_t len);
void gencache__reuse_subscribed(void *cache);
/* The cache's sharing state (tests); NULL: none. */
gencache__reuse_net *gencache__reuse_net_of(gencache *cache);

/* ---- the trajectory index (src/reuse/traj_index.c) ---- */

typedef struct gencache__traj gencache__traj;

/* One stored intermediate latent as the index names it. */
typedef struct gencache__traj_rec {
    uint32_t layer;        /* the cache's layer index */
    uint64_t model_hash;   /* gencache__checksum() of the model's name */
    uint64_t key_hash;     /* gencache__checksum() of the stored key (eviction's name) */
    uint64_t tenant_hash;  /* as for the other records; 0: none */
    unsigned char hex[32]; /* the key's 64 hex digits as bytes */
    uint32_t step;         /* the denoising step the latent was taken after */
} gencache__traj_rec;

typedef struct gencache__traj_cand {
    gencache__traj_rec rec;
    float similarity; /* cosine, -1 to 1 */
} gencache__traj_cand;

/* A threshold table: rows sorted by similarity, ascending. */
typedef struct gencache__traj_table {
    gencache_trajectory_threshold rows[GENCACHE_TRAJECTORY_MAX_THRESHOLDS];
    size_t n;
} gencache__traj_table;

int gencache__traj_new(gencache__traj **out);
void gencache__traj_free(gencache__traj *t);
/* Adds the record with its embedding (normalized here), replacing one of the same key_hash.
 * GENCACHE_EINVAL: a zero or non-finite vector, or dim unlike the group's (layer, model).
 * GENCACHE_ENOMEM. */
int gencache__traj_add(gencache__traj *t, const gencache__traj_rec *rec, const float *vec,
                       uint32_t dim);
/* Drops the record of key_hash; returns how many (0 or 1). Takes only the index's lock, and
 * never waits for a search: while one runs, the removal is queued (and 0 returned), hidden from
 * every search at once and applied by the next writer. */
size_t gencache__traj_drop(gencache__traj *t, uint64_t key_hash);
/* The dimension of (layer, model): GENCACHE_OK, or GENCACHE_ENOTFOUND when none is stored. */
int gencache__traj_dim(gencache__traj *t, uint32_t layer, uint64_t model_hash, uint32_t *dim);
uint64_t gencache__traj_count(gencache__traj *t);
/* Records of (layer, model, tenant) whose step the table allows at their similarity to query,
 * best first (the most steps skipped, then the most similar), at most cap of them. Exact search
 * below a group size, approximate above it (traj_index.h).
 * GENCACHE_EINVAL: a zero vector or a dimension unlike the group's. */
int gencache__traj_find(gencache__traj *t, uint32_t layer, uint64_t model_hash,
                        uint64_t tenant_hash, const float *query, uint32_t dim,
                        const gencache__traj_table *table, gencache__traj_cand *out, size_t cap,
                        size_t *n);
/* The largest step the table lets a match of this similarity skip (0: none). */
unsigned gencache__traj_max_step(const gencache__traj_table *table, float similarity);
/* Calls fn for every record and its unit vector under the reader lock (fn must not call back
 * into t). */
void gencache__traj_each(gencache__traj *t,
                         void (*fn)(void *ud, const gencache__traj_rec *rec, const float *unit,
                                    uint32_t dim),
                         void *ud);

/* ---- the trajectory index beyond one process (src/reuse/traj_io.c) ---- */

/* The largest embedding, in elements, that the index takes (and its files hold). */
#define GENCACHE__TRAJ_DIM_MAX (1u << 20)

/* The content type of a trajectory's embedding entry. */
extern const char gencache__traj_emb_type[];
/* Writes every record and its vector to path (a temporary file renamed over it). */
int gencache__traj_save_file(gencache__traj *t, const char *path,
                             const gencache__reuse_layers *layers);
/* Adds the records of the file at path (*added: how many); records of layers that no longer
 * exist are skipped. GENCACHE_EIO (no file), GENCACHE_EPARSE, GENCACHE_ECORRUPT,
 * GENCACHE_EVERSION (nothing is added), GENCACHE_ENOMEM. */
int gencache__traj_load_file(gencache__traj *t, const char *path,
                             const gencache__reuse_layers *layers, uint64_t *added);
/* Names the checkpoint (step, its key's 32 bytes `hex`) in the embedding entry of req's
 * trajectory in lname, creating the entry with vec (dim f32, as given) or starting it again
 * when it holds another embedding. The errors of gencache_put_as(). */
int gencache__traj_note(gencache *c, const gencache_caller *caller, const gencache_request *req,
                        const char *lname, unsigned step, const unsigned char *hex,
                        const float *vec, uint32_t dim, const gencache_meta *ck_meta);
/* Adds to t the records of every checkpoint still stored that an embedding entry on the disk
 * tier names (*added: how many). Without a disk tier it does nothing. GENCACHE_OK, the disk
 * tier's scan errors, GENCACHE_ENOMEM. */
int gencache__traj_rebuild(gencache *c, gencache__traj *t, uint64_t *added);

/* The trajectory state of a cache (src/reuse/trajectory.c): the index, the threshold tables,
 * the counters. */
typedef struct gencache__traj_state gencache__traj_state;
int gencache__traj_state_new(gencache__traj_state **out);
void gencache__traj_state_free(gencache__traj_state *st);
/* The entry whose stored key hashes to key_hash is gone: takes only the index's lock. */
void gencache__traj_state_forget(gencache__traj_state *st, uint64_t key_hash);
/* Reads path (data_dir/traj.idx) into the index, or, when it is missing or damaged, rebuilds
 * the index from the disk tier; logs what it did. Called once, under the reuse state's save
 * lock. */
void gencache__traj_state_load(gencache *c, gencache__traj_state *st, const char *path,
                               const gencache__reuse_layers *layers);
/* Writes path unless nothing changed since it was last read or written. Called under the reuse
 * state's save lock. GENCACHE_OK or the errors of gencache__traj_save_file(). */
int gencache__traj_state_save(gencache *c, gencache__traj_state *st, const char *path,
                              const gencache__reuse_layers *layers);
/* The cache's trajectory state; NULL without reuse state (src/reuse/lookup.c). */
gencache__traj_state *gencache__reuse_traj_state(gencache *cache);
/* The tenant a record of layer li belongs to on behalf of caller (0: none or a global layer), and
 * the hash of key as stored (src/reuse/lookup.c). */
uint64_t gencache__reuse_tenant_hash(const gencache *c, uint32_t li, const gencache_caller *caller);
int gencache__reuse_stored_key_hash(gencache *c, const gencache_caller *caller, const char *key,
                                    uint64_t *out);
int gencache__reuse_layer_index(gencache *c, const char *name);
/* 64 lowercase hex digits to 32 bytes, and n bytes to 2n hex digits and a NUL. */
void gencache__reuse_hex_decode(const char *hex, unsigned char *out);
void gencache__reuse_hex_encode(const unsigned char *in, size_t n, char *out);

#endif
