/*
 * codec.c: the HTTP face of tensor codecs: X-Gencache-Codec (with -Axis and -Group-Size) on PUT
 * and ?as= on GET. How an encoded entry is stored, marked and decoded is the library's rule
 * (include/gencache/codec.h), shared with the C API and the Python package; this file only
 * calls the library with the options parse.c read from the headers (parse.c also words the
 * refusals of the headers and of ?as= for a 400). The invariant: a client always receives a
 * plain tensor whose dtype and shape headers describe the body exactly.
 */
#include <string.h>

#include "gencached.h"

int gcd_codec_encode(const gcd_codec_args *a, gencache_meta *m, const void *body, size_t len,
                     gencache_encoded **out)
{
    int rc = gencache_tensor_encode(body, len, m, &a->opts, out);
    if (rc != 0)
        return rc;
    const gencache_meta *em = gencache_encoded_meta(*out);
    m->content_type = em->content_type;
    m->dtype = em->dtype;
    m->ndim = em->ndim;
    memcpy(m->shape, em->shape, sizeof m->shape);
    return 0;
}
