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
/* IMAGE records of (layer, ctx, tenant_hash) whose image passes `guard` against sig, nearest
 * first, at most cap of them; *refused counts those within the pHash radius the guard refused. */
int gencache__reuse_find_image(gencache__reuse *r, uint32_t layer, uint64_t ctx,
                               uint64_t tenant_hash, const gencache_image_sig *sig,
                               const gencache_match_options *guard, gencache__reuse_cand *out,
                               size_t cap, size_t *n, uint64_t *refused);
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

/* The trajectory state of a cache (src/reuse/trajectory.c): the index, the threshold tables,
 * the counters. */
typedef struct gencache__traj_state gencache__traj_state;
int gencache__traj_state_new(gencache__traj_state **out);
void gencache__traj_state_free(gencache__traj_state *st);
/* The entry whose stored key hashes to key_hash is gone: takes only the index's lock. */
void gencache__traj_state_forget(gencache__traj_state *st, uint64_t key_hash);
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
