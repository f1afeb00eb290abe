/*
 * traj_index.h: the trajectory index's settings beyond reuse.h (src/reuse/traj_index.c): when a
 * group of vectors gets an approximate (HNSW) graph, how the graph is built and searched, and
 * the seams the benchmark and the tests use. Nothing here is API.
 */
#ifndef GENCACHE_REUSE_TRAJ_INDEX_H
#define GENCACHE_REUSE_TRAJ_INDEX_H

#include "reuse.h"

/* The group size (vectors of one layer, model and tenant) from which a graph is built: below it
 * exact search is about as fast (bench/bench_trajectory.c measures the crossover). */
#define GENCACHE__TRAJ_ANN_MIN 4096

typedef struct gencache__traj_ann_opts {
    size_t min_vectors;       /* build a group's graph at this many; SIZE_MAX: never */
    uint32_t m;               /* graph links per node (twice that on the bottom layer) */
    uint32_t ef_construction; /* candidates weighed while linking a node */
    uint32_t ef_search;       /* candidates weighed by a search, all re-ranked exactly */
} gencache__traj_ann_opts;

/* Fills the defaults. Thread-safety: safe. */
void gencache__traj_ann_opts_init(gencache__traj_ann_opts *o);
/* Sets the graph settings for groups that build their graph from now on; ef_search applies to
 * the graphs already built too. Thread-safety: safe (takes the write lock), but meant for
 * init. */
void gencache__traj_set_ann(gencache__traj *t, const gencache__traj_ann_opts *opts);

/* gencache__traj_find() with flags: GENCACHE__TRAJ_EXACT searches every vector of the group
 * even when it has a graph (the benchmark's baseline and the tests' reference). */
#define GENCACHE__TRAJ_EXACT 1u
int gencache__traj_find_ex(gencache__traj *t, uint32_t layer, uint64_t model_hash,
                           uint64_t tenant_hash, const float *query, uint32_t dim,
                           const gencache__traj_table *table, gencache__traj_cand *out, size_t cap,
                           size_t *n, unsigned flags);

/* Builds the graph of every group of min_vectors or more that has none (after
 * gencache__traj_set_ann(), or after loading many vectors with graphs off), under the write
 * lock. GENCACHE_OK, GENCACHE_ENOMEM (those groups stay exact). Thread-safety: safe. */
int gencache__traj_build_graphs(gencache__traj *t);

/* The bytes the groups' graphs hold (the exact vectors not included). Thread-safety: safe. */
size_t gencache__traj_graph_bytes(gencache__traj *t);

/* Calls fn(ud) inside every search while it holds the read lock (NULL: none): a test seam for
 * what happens to removals meanwhile. fn must not search. Thread-safety: safe. */
void gencache__traj_set_scan_hook(gencache__traj *t, void (*fn)(void *ud), void *ud);

#endif
