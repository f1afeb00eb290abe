/*
 * replay.h: what the two halves of `gencache replay` share: the trace turned into keys, sizes and
 * costs per layer (replay_trace.c), and the runs of the library over it (cmd_replay.c).
 */
#ifndef GENCACHE_REPLAY_H
#define GENCACHE_REPLAY_H

#include <stdbool.h>
#include <stdint.h>

#include "cli.h"

#define REPLAY_MAX_LAYERS 8

/* --layer-fields NAME=f1,f2: a key recipe to replay with instead of the layer's default. */
typedef struct replay_recipe {
    char *layer;
    char **fields;
    size_t n_fields;
} replay_recipe;

typedef struct replay_options {
    const char *trace;
    const char *extra; /* row-aligned companion file, or NULL */
    const char *model; /* the request's "model" (the trace has none) */
    const char *layers[REPLAY_MAX_LAYERS];
    double shares[REPLAY_MAX_LAYERS];  /* of gen_seconds, per layer */
    uint64_t sizes[REPLAY_MAX_LAYERS]; /* fixed value size per layer; 0: the size model */
    size_t n_layers;
    replay_recipe recipes[REPLAY_MAX_LAYERS];
    size_t n_recipes;
    size_t limit; /* first rows only; 0: all */
} replay_options;

typedef struct replay_layer {
    const char *name;
    double share;
    uint64_t fixed_size;
    char **keys;       /* per row; NULL: the request has no key in this layer */
    uint64_t *sizes;   /* per row: modeled value bytes */
    uint64_t *cost_ms; /* per row: what a hit saves */
    uint64_t requests, distinct, working_set_bytes;
} replay_layer;

typedef struct replay_trace {
    size_t n_rows;
    replay_layer layers[REPLAY_MAX_LAYERS];
    size_t n_layers;
} replay_trace;

/* Loads o->trace (and o->extra) and derives every layer's keys through the library. Returns 0, or
 * 1 after reporting what is wrong. */
int replay_trace_load(const replay_options *o, replay_trace *tr);
void replay_trace_free(replay_trace *tr);
/* The share of gen_seconds a hit in `layer` saves unless --cost-share says otherwise. */
double replay_default_share(const char *layer);

#endif
