/*
 * chunk.c: plans chunked decoding of a video latent. The decoder's memory grows with the number
 * of latent frames it decodes at once, so the T frames are split into chunks that each fit a
 * budget; consecutive chunks may repeat `overlap` frames so the decoder sees temporal context
 * across the seam. A pure function: same options, same plan.
 */
#include <string.h>

#include "internal.h"

void gencache_chunk_options_init(gencache_chunk_options *opts)
{
    memset(opts, 0, sizeof *opts);
    opts->struct_size = sizeof *opts;
    opts->dtype = GENCACHE_DTYPE_F16;
}

int gencache_chunk_plan(const gencache_chunk_options *opts, gencache_chunk *chunks,
                        size_t max_chunks, size_t *n_chunks)
{
    if (n_chunks)
        *n_chunks = 0;
    if (!opts || !n_chunks || opts->struct_size < sizeof *opts)
        return GENCACHE_EINVAL;
    size_t es = gencache_dtype_size(opts->dtype);
    if (es == 0)
        return GENCACHE_EINVAL;
    for (int i = 0; i < 5; i++)
        if (opts->shape[i] < 1)
            return GENCACHE_EINVAL;
    /* Bytes of one latent frame: B*C*H*W*es, refusing overflow. */
    const int64_t dims[4] = {opts->shape[0], opts->shape[1], opts->shape[3], opts->shape[4]};
    uint64_t frame = es;
    for (int i = 0; i < 4; i++) {
        if ((uint64_t)dims[i] > UINT64_MAX / frame)
            return GENCACHE_ELIMIT;
        frame *= (uint64_t)dims[i];
    }
    if (opts->bytes_per_frame > UINT64_MAX - frame)
        return GENCACHE_ELIMIT;
    uint64_t cost = frame + opts->bytes_per_frame;
    uint64_t fit = opts->budget_bytes / cost;
    if (fit == 0)
        return GENCACHE_ELIMIT;
    uint64_t T = (uint64_t)opts->shape[2];
    uint64_t per = fit < T ? fit : T;
    uint64_t overlap = opts->overlap;
    if (per < T && overlap >= per)
        return GENCACHE_EINVAL; /* no chunk would get past the previous one */
    /* Count: the first chunk covers per frames, each later one per - overlap new frames. */
    uint64_t n = 1;
    if (per < T)
        n += (T - per + (per - overlap) - 1) / (per - overlap);
    *n_chunks = (size_t)n;
    if (!chunks)
        return GENCACHE_OK;
    if (max_chunks < n)
        return GENCACHE_ETOOBIG;
    uint64_t start = 0;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t end = start + per < T ? start + per : T;
        chunks[i].start = (int64_t)start;
        chunks[i].frames = (int64_t)(end - start);
        chunks[i].overlap = i == 0 ? 0 : (int64_t)overlap;
        start = end - overlap;
    }
    return GENCACHE_OK;
}
