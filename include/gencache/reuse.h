/*
 * gencache/reuse.h: part of the public API of libgencache: lookups by request that may reuse an
 * entry beyond the exact key (DESIGN.md section 4, "Reuse beyond the key"): a perceptual match of
 * the input image on a layer with image_match perceptual, and a stored result of any seed for a
 * seedless request that says "cache": "any_seed". Every such answer is opt-in and reported as a
 * match, never served silently. Include <gencache.h>, which includes this file.
 */
#ifndef GENCACHE_API_REUSE_H
#define GENCACHE_API_REUSE_H

#ifndef GENCACHE_H
#error "include <gencache.h>, not <gencache/reuse.h>"
#endif

/* How a lookup found what it serves. */
typedef enum gencache_match_kind {
    GENCACHE_MATCH_NONE = 0,       /* nothing served */
    GENCACHE_MATCH_EXACT = 1,      /* the request's own key */
    GENCACHE_MATCH_PERCEPTUAL = 2, /* an entry of a near-duplicate input image */
    GENCACHE_MATCH_ANY_SEED = 3,   /* a result of the same seedless recipe, made with some seed */
    GENCACHE_MATCH_SIMILAR_PROMPT = 4, /* an entry of a near-duplicate prompt */
} gencache_match_kind;

/* What a lookup served, and why. */
typedef struct gencache_match {
    size_t struct_size;           /* sizeof(gencache_match); the caller sets it before the call */
    gencache_match_kind kind;     /* NONE on a miss */
    unsigned distance;            /* PERCEPTUAL: Hamming distance of the pHashes (0-64);
                                     SIMILAR_PROMPT: of the prompts' SimHashes; else 0 */
    char key[GENCACHE_KEY_MAX];   /* the key served, as the caller names it; "" on a miss */
    char of[GENCACHE_DIGEST_MAX]; /* PERCEPTUAL: the pixel digest of the stored image; else "" */
    char seed[24];                /* ANY_SEED: the served result's seed, decimal; else "" */
} gencache_match;

/* The name of a match kind as the X-Gencache-Match header writes it ("exact", "perceptual",
 * "any_seed", "similar_prompt"; "none"); NULL for a value outside the enum. Thread-safety: safe. */
GENCACHE_API const char *gencache_match_kind_name(gencache_match_kind kind);

/* Attaches the input image's signature (gencache_image_sig_get()) to a parsed request, as the
 * request JSON does with the image object's "phash", "dhash", "width" and "height". A request
 * without one is looked up by its pixel digest only. A signature with width and height both 0
 * carries the pHash alone (its dhash is ignored), as {"digest": ..., "phash": ...} does in JSON:
 * a lookup then takes the dHash and size from a stored record of the same digest (same tenant)
 * when there is one, and otherwise applies only the pHash radius and min_detail guards; a store
 * records no image for it unless such a record supplies the rest. Returns GENCACHE_OK,
 * GENCACHE_EINVAL (NULL argument, one of width and height 0, or a request without an image).
 * Thread-safety: one thread at a time per request. */
GENCACHE_API int gencache_request_set_image_sig(gencache_request *req,
                                                const gencache_image_sig *sig);

/* Stores `size` bytes under the request's key in `layer` (gencache_request_key()) on behalf of
 * caller (NULL: the cache's owner; see gencache_put_as()), and records what later lookups may
 * reuse it for: on a layer whose image_match is perceptual, the request's image signature (when
 * it has one); on a seeded layer, the seedless recipe and the seed; on a layer without a seed
 * whose recipe takes the prompt (text_embedding, condition), the prompt's fingerprint (the
 * SimHash of its aggressive normalization). These records follow the
 * entry: del, invalidation and eviction from every local tier remove them, and they are saved in
 * the disk tier's directory (reuse.idx) by gencache_flush() and gencache_close(). key_out (may be
 * NULL, GENCACHE_KEY_MAX bytes) receives the key. data, meta and req are borrowed for the call.
 * Returns what gencache_request_key() and gencache_put_as() return (GENCACHE_EUNCACHEABLE for a
 * request without a key in the layer). Thread-safety: safe. */
GENCACHE_API int gencache_store(gencache *cache, const gencache_caller *caller,
                                const gencache_request *req, const char *layer, const void *data,
                                size_t size, const gencache_meta *meta, char *key_out);

/* Looks up a request in `layer` on behalf of caller (NULL: the owner): first by its exact key;
 * on a miss, when the layer's image_match is perceptual and the request carries an image
 * signature, among the stored entries of the same recipe (every field but the image equal,
 * tenant included on a tenant-scoped layer) whose image passes the guard (gencache_reuse_set_
 * guard()) against the request's, nearest pHash first; and for a seedless request with
 * "cache": "any_seed", among the stored results of its recipe with any seed (the most recently
 * stored first); and for a request with "cache": "similar_prompt", among the stored entries of
 * the same recipe but the prompt whose prompt is a near duplicate: at the default radius 0, the
 * same prompt once normalized with the aggressive mode (case, punctuation, entities, British
 * spellings), whatever the model's own mode (gencache_reuse_set_prompt_radius()). On success
 * *out is a new handle (see gencache_get_as(); the hit is counted on the served key) and *match
 * (struct_size set; may be NULL) says how it was found. A match never reaches another tenant's
 * namespace: the served entry is read with the caller's rights. Returns GENCACHE_OK,
 * GENCACHE_ENOTFOUND (a miss: match->kind NONE), GENCACHE_EINVAL (NULL cache, req, layer or out;
 * short struct_size), GENCACHE_EUNCACHEABLE (no key in the layer and no match path applies),
 * GENCACHE_ENOMEM. Thread-safety: safe. */
GENCACHE_API int gencache_lookup(gencache *cache, const gencache_caller *caller,
                                 const gencache_request *req, const char *layer,
                                 gencache_handle **out, gencache_match *match);

/* Sets the guard a perceptual candidate must pass (gencache_match_options: pHash and dHash
 * radii, aspect tolerance, min_detail); the defaults are gencache_match_options_init()'s. The
 * options are copied. Returns GENCACHE_OK, GENCACHE_EINVAL (NULL, short struct_size, a pHash
 * radius over 14, a negative tolerance). Thread-safety: init only. */
GENCACHE_API int gencache_reuse_set_guard(gencache *cache, const gencache_match_options *opts);

/* Sets how far apart (in SimHash bits, 0-16) the prompts of a "similar_prompt" match may be;
 * 0 (the default): the same prompt after aggressive normalization. A larger radius also serves
 * prompts that differ in a word or two, which a model may well tell apart: opt in knowingly.
 * Returns GENCACHE_OK, GENCACHE_EINVAL. Thread-safety: init only. */
GENCACHE_API int gencache_reuse_set_prompt_radius(gencache *cache, unsigned radius);

/* The radius in force (0 for a NULL cache). Thread-safety: safe. */
GENCACHE_API unsigned gencache_reuse_get_prompt_radius(gencache *cache);

/* Copies the guard in force into *out (out->struct_size must be set). Returns GENCACHE_OK or
 * GENCACHE_EINVAL. Thread-safety: safe (the guard changes only at init). */
GENCACHE_API int gencache_reuse_get_guard(gencache *cache, gencache_match_options *out);

/* Writes the reuse records to the disk tier's directory now (reuse.idx, replaced atomically),
 * unless nothing changed since they were last read or written; gencache_flush() and
 * gencache_close() do it too (gencached also calls it every minute). Without a disk tier it does
 * nothing.
 * Returns GENCACHE_OK, GENCACHE_EINVAL, GENCACHE_EIO, GENCACHE_ENOSPC, GENCACHE_ENOMEM.
 * Thread-safety: safe. */
GENCACHE_API int gencache_reuse_save(gencache *cache);

typedef struct gencache_reuse_layer_stats {
    const char *layer;            /* valid until the cache is closed */
    uint64_t perceptual_hits;     /* lookups served by a perceptual match */
    uint64_t any_seed_hits;       /* lookups served by a result of another seed */
    uint64_t guard_refusals;      /* candidates within the pHash radius that the guard refused */
    uint64_t similar_prompt_hits; /* lookups served by a near-duplicate prompt */
} gencache_reuse_layer_stats;

typedef struct gencache_reuse_stats {
    size_t struct_size; /* sizeof(gencache_reuse_stats); the caller sets it before the call */
    uint32_t n_layers;
    gencache_reuse_layer_stats layers[GENCACHE_MAX_LAYERS];
    uint64_t images;  /* image signatures held (the near-duplicate index's size) */
    uint64_t results; /* seedless recipes of stored results held */
    uint64_t prompts; /* prompt fingerprints held */
} gencache_reuse_stats;

/* Fills *out with the reuse counters. Returns GENCACHE_OK or GENCACHE_EINVAL.
 * Thread-safety: safe. */
GENCACHE_API int gencache_reuse_stats_get(gencache *cache, gencache_reuse_stats *out);

/* ---- approximate step reuse: the trajectory index ----
 * A generator stores the intermediate latent of a denoising run at chosen steps, each as an
 * ordinary entry of a layer whose recipe names the step (docs/reuse.md: "Approximate step
 * reuse"), together with the prompt's pooled embedding. A later generation of the same model
 * looks up its own prompt's embedding: the nearest stored latent whose cosine similarity is high
 * enough for its step (a per-model threshold table) is served, and the generation resumes from
 * that step instead of from noise. This is approximate by nature: opt-in, reported with its step
 * and similarity, never served for an exact lookup. */

#define GENCACHE_TRAJECTORY_MAX_THRESHOLDS 16

/* One row of a threshold table: a match at least this similar may skip up to `step` steps. */
typedef struct gencache_trajectory_threshold {
    float similarity; /* cosine similarity, -1 to 1 */
    unsigned step;    /* the largest step such a match may resume from; at least 1 */
} gencache_trajectory_threshold;

/* What a trajectory lookup served. */
typedef struct gencache_trajectory_match {
    size_t struct_size;         /* sizeof(gencache_trajectory_match); the caller sets it */
    char key[GENCACHE_KEY_MAX]; /* the key served; "" on a miss */
    unsigned step;              /* the step its latent was taken after: resume from here */
    float similarity;           /* cosine similarity of the two embeddings */
} gencache_trajectory_match;

/* Stores `size` bytes (an intermediate latent, taken after denoising step `step`, at least 1)
 * under the request's key in `layer` on behalf of caller (NULL: the owner), as
 * gencache_put_as() does, and adds it to the trajectory index of (layer, the request's model) with
 * the prompt's pooled embedding: `dim` elements of `dtype` (GENCACHE_DTYPE_F32, or F16, converted
 * to f32). Each step needs its own key: the layer's recipe should name the field that carries the
 * step (the Python helper sends it as "step"). The first embedding stored for (layer, model) fixes
 * the dimension; the index is normalized copies, the embedding is borrowed for the call. The record
 * follows the entry (del, invalidation, eviction) and, on a tenant-scoped layer, is only ever
 * matched for the caller's tenant. With a disk tier the index is saved in its directory
 * (traj.idx) with the reuse records (gencache_reuse_save(), gencache_flush(), gencache_close())
 * and read back after a restart; each trajectory (the request without its step) also keeps one
 * small entry of its own in the layer, content type
 * "application/vnd.gencache.trajectory-embedding", that holds the embedding once and names its
 * checkpoints, from which a lost or damaged traj.idx is rebuilt. The checkpoint creates no
 * other reuse record (no similar_prompt fingerprint). key_out (may be NULL, GENCACHE_KEY_MAX
 * bytes) receives the key.
 * Returns GENCACHE_OK, GENCACHE_EINVAL (NULL argument, step 0, dim 0 or over 1,048,576, a
 * request without a model, an unknown layer, a zero or non-finite embedding, a dtype other than
 * F32/F16, a dimension unlike the one (layer, model) holds: the log says which), the errors of
 * gencache_request_key() and gencache_put_as().
 * Thread-safety: safe. */
GENCACHE_API int gencache_trajectory_store(gencache *cache, const gencache_caller *caller,
                                           const gencache_request *req, const char *layer,
                                           unsigned step, gencache_dtype dtype,
                                           const void *embedding, size_t dim, const void *data,
                                           size_t size, const gencache_meta *meta, char *key_out);

/* Looks up, among the latents stored in `layer` for `model` (and, on a tenant-scoped layer, for
 * the caller's tenant), those whose step the model's threshold table allows at their cosine
 * similarity to the embedding (dim elements of dtype F32 or F16): a latent of step s qualifies
 * when the similarity reaches a row whose step is at least s. The one that skips the most steps
 * wins, the more similar on a tie (exact search over every stored vector). On success *out is a
 * new handle on its bytes (release it with gencache_handle_release(); read with the caller's
 * rights, the hit counted on the served key) and *match (may be NULL; struct_size set) names its
 * key, step and similarity. Returns GENCACHE_OK, GENCACHE_ENOTFOUND (nothing similar enough;
 * *match zeroed), GENCACHE_EINVAL (NULL argument, short struct_size, unknown layer, zero or
 * non-finite embedding, a dtype other than F32/F16, a dimension unlike the one stored for
 * (layer, model): the log says which), GENCACHE_ENOMEM. Thread-safety: safe. */
GENCACHE_API int gencache_trajectory_lookup(gencache *cache, const gencache_caller *caller,
                                            const char *layer, const char *model,
                                            gencache_dtype dtype, const void *embedding, size_t dim,
                                            gencache_handle **out,
                                            gencache_trajectory_match *match);

/* Sets the threshold table of `model` (NULL: the default for models without one) to n rows
 * (copied; any order; 0 rows for a model: back to the default). The default table is 0.70 -> 5,
 * 0.80 -> 10, 0.85 -> 15, 0.90 -> 20, 0.95 -> 25 (steps of a 50-step schedule). At most 16
 * models have their own table. Returns GENCACHE_OK, GENCACHE_EINVAL (NULL cache or rows with
 * n > 0, n over GENCACHE_TRAJECTORY_MAX_THRESHOLDS, a similarity outside [-1, 1], a step 0, a
 * NULL model with n 0), GENCACHE_ELIMIT (a 17th model). Thread-safety: init only. */
GENCACHE_API int gencache_trajectory_set_thresholds(gencache *cache, const char *model,
                                                    const gencache_trajectory_threshold *rows,
                                                    size_t n);

/* Copies the table in force for model (NULL: the default) into rows (cap rows); *n receives
 * its row count, sorted by similarity. Returns GENCACHE_OK, GENCACHE_EINVAL (NULL argument),
 * GENCACHE_ELIMIT (cap too small: *n says how many). Thread-safety: safe. */
GENCACHE_API int gencache_trajectory_get_thresholds(gencache *cache, const char *model,
                                                    gencache_trajectory_threshold *rows, size_t cap,
                                                    size_t *n);

/* Gives each set of trajectory vectors (one layer, model and tenant) of min_vectors or more an
 * approximate nearest-neighbour graph (HNSW: float16 copies of the vectors, its candidates
 * re-ranked exactly), so that a lookup costs about a millisecond at 10^6 vectors instead of the
 * exact scan's hundreds (recall and costs: docs/BENCHMARKS.md). 0, the default, keeps every
 * lookup exact. The graph is linked under the index's write lock: building one for a set that
 * crosses min_vectors takes seconds at 4,096 vectors, each later store into it about a
 * millisecond, and loading traj.idx after a restart pays that per vector, so leave it off unless
 * exact lookups are too slow. Applies to sets that build their graph from then on. Returns
 * GENCACHE_OK, GENCACHE_EINVAL (NULL cache, min_vectors 1 to 63). Thread-safety: init only. */
GENCACHE_API int gencache_trajectory_set_graph(gencache *cache, uint64_t min_vectors);

/* The dimension of the embeddings stored in `layer` for `model`, which every later store and
 * lookup must match, into *dim. Returns GENCACHE_OK, GENCACHE_ENOTFOUND (none stored yet: any
 * dimension is accepted; *dim 0), GENCACHE_EINVAL (NULL argument, unknown layer).
 * Thread-safety: safe. */
GENCACHE_API int gencache_trajectory_dim(gencache *cache, const char *layer, const char *model,
                                         size_t *dim);

typedef struct gencache_trajectory_stats {
    size_t struct_size;     /* sizeof(gencache_trajectory_stats); the caller sets it */
    uint64_t vectors;       /* embeddings held in the index */
    uint64_t hits;          /* lookups served */
    uint64_t misses;        /* lookups that found nothing similar enough */
    uint64_t steps_skipped; /* the sum of the served steps */
} gencache_trajectory_stats;

/* Fills *out. Returns GENCACHE_OK or GENCACHE_EINVAL. Thread-safety: safe. */
GENCACHE_API int gencache_trajectory_stats_get(gencache *cache, gencache_trajectory_stats *out);

#endif /* GENCACHE_API_REUSE_H */
