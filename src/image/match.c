/*
 * match.c: the guard a near-duplicate candidate must pass before its entry is reused (DESIGN.md
 * section 3). The index finds candidates by pHash distance alone; the guard adds independent
 * checks, the aspect ratio, the dHash distance and the sum of both distances, so that two
 * different images whose pHashes happen to collide are not confused, and refuses featureless
 * images outright. The defaults come from the distance distributions of benign variants and of
 * distinct images that bench/reuse_recall.py prints.
 */
#include <math.h>
#include <string.h>

#include "image.h"

void gencache_match_options_init(gencache_match_options *opts)
{
    if (!opts)
        return;
    memset(opts, 0, sizeof *opts);
    opts->struct_size = sizeof *opts;
    opts->phash_radius = 10;
    opts->dhash_radius = 12;
    opts->aspect_tolerance = 0.02;
    opts->min_detail = 8;
    opts->combined_radius = 14;
}

/* pHash sets the bits of the coefficients above their median, so a detailed image sets about
 * half of them; a flat or nearly flat image has its coefficients tied at (rounded) zero and sets
 * almost none, and two different such images then look alike to every hash. */
static int featureless(uint64_t phash, unsigned min_detail)
{
    return (unsigned)__builtin_popcountll(phash) < min_detail;
}

int gencache_image_sig_get(const gencache_image *img, gencache_image_sig *out)
{
    if (!out)
        return GENCACHE_EINVAL;
    memset(out, 0, sizeof *out);
    if (!img)
        return GENCACHE_EINVAL;
    uint64_t p, d;
    int rc = gencache_image_hash64(img, GENCACHE_HASH_PHASH, &p);
    if (rc == GENCACHE_OK)
        rc = gencache_image_hash64(img, GENCACHE_HASH_DHASH, &d);
    if (rc != GENCACHE_OK)
        return rc;
    out->width = img->width;
    out->height = img->height;
    out->phash = p;
    out->dhash = d;
    return GENCACHE_OK;
}

int gencache_image_match(const gencache_image_sig *query, const gencache_image_sig *candidate,
                         const gencache_match_options *opts, unsigned *distance)
{
    if (distance)
        *distance = 0;
    gencache_match_options o;
    gencache_match_options_init(&o);
    if (opts) {
        if (opts->struct_size < sizeof *opts)
            return GENCACHE_EINVAL;
        o = *opts;
    }
    if (!query || !candidate || query->width == 0 || query->height == 0 || candidate->width == 0 ||
        candidate->height == 0 || !(o.aspect_tolerance >= 0))
        return GENCACHE_EINVAL;
    unsigned pd = (unsigned)__builtin_popcountll(query->phash ^ candidate->phash);
    unsigned dd = (unsigned)__builtin_popcountll(query->dhash ^ candidate->dhash);
    if (distance)
        *distance = pd;
    double qa = (double)query->width / query->height;
    double ca = (double)candidate->width / candidate->height;
    double rel = fabs(qa - ca) / (qa > ca ? qa : ca);
    if (rel > o.aspect_tolerance || pd > o.phash_radius || dd > o.dhash_radius ||
        (o.combined_radius && pd + dd > o.combined_radius) ||
        featureless(query->phash, o.min_detail) || featureless(candidate->phash, o.min_detail))
        return GENCACHE_ENOTFOUND;
    return GENCACHE_OK;
}
