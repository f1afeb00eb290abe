/*
 * ann.h: an approximate nearest-neighbour graph over unit vectors (ann.cpp, a small C++ shim
 * over Debian's header-only hnswlib). The graph is HNSW; it holds a float16 copy of each vector,
 * which is enough to steer the search, and the caller re-ranks what it returns with its own
 * float32 vectors. Nodes are the caller's numbers: a removed node stays in the graph as a
 * tombstone that routes searches but is never returned, and putting a vector under a removed
 * node's number reuses its place (so the graph does not grow with churn). Nothing here is API.
 */
#ifndef GENCACHE_REUSE_ANN_H
#define GENCACHE_REUSE_ANN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct gencache__ann gencache__ann;

/* A graph for dim-dimensional vectors: m links per node (2m on the bottom layer),
 * ef_construction candidates while linking, ef_search candidates while searching (at least k).
 * capacity is a first size; the graph grows as nodes are put. GENCACHE_OK, GENCACHE_EINVAL (a
 * zero dim or m), GENCACHE_ENOMEM. Thread-safety: safe. */
int gencache__ann_new(uint32_t dim, uint32_t m, uint32_t ef_construction, uint32_t ef_search,
                      size_t capacity, gencache__ann **out);
void gencache__ann_free(gencache__ann *a);
/* Sets node's vector (borrowed; unit length): a new node, or a removed one brought back.
 * GENCACHE_ENOMEM (the graph is unchanged, node is not in it). Thread-safety: one thread at a
 * time, with no search running (the caller's write lock). */
int gencache__ann_put(gencache__ann *a, uint32_t node, const float *vec);
/* Puts count new nodes (never put before) at once, nodes[i] with the vector at vecs + i * dim:
 * for building a graph from vectors already held. GENCACHE_ENOMEM (some nodes may then be in
 * the graph: free it). Thread-safety: as gencache__ann_put(). */
int gencache__ann_put_many(gencache__ann *a, const uint32_t *nodes, const float *vecs,
                           size_t count);
/* Removes node from the results (it stays as a tombstone until put again). Unknown or removed
 * nodes are ignored. Thread-safety: as gencache__ann_put(). */
void gencache__ann_remove(gencache__ann *a, uint32_t node);
/* The at most k live nodes nearest to query (unit length), nearest first, with their
 * similarity as the float16 copies give it; *n says how many. GENCACHE_OK, GENCACHE_ENOMEM.
 * Thread-safety: safe against other searches (the caller's read lock). */
int gencache__ann_search(gencache__ann *a, const float *query, size_t k, uint32_t *nodes,
                         float *sims, size_t *n);
/* Sets how many candidates a search weighs. Thread-safety: as gencache__ann_put(). */
void gencache__ann_set_ef(gencache__ann *a, uint32_t ef_search);
/* The bytes the graph holds (vectors, links, labels, per-node locks). Thread-safety: as search. */
size_t gencache__ann_bytes(const gencache__ann *a);

/* The float16 conversions of the portable path (round to nearest even), and a switch that makes
 * graphs created from now on use the portable path even where F16C is present: for tests.
 * Thread-safety: safe. */
uint16_t gencache__ann_half_from_float(float f);
float gencache__ann_float_from_half(uint16_t h);
void gencache__ann_force_portable(bool on);

#ifdef __cplusplus
}
#endif

#endif
