/*
 * gencache/codec.h: part of the public API of libgencache: storing a tensor with a codec and
 * reading it back. The rule of how an encoded entry is stored, marked and decoded lives here
 * once, so that the C API, the daemon (X-Gencache-Codec, ?as=) and the Python package store and
 * read the same bytes. Include <gencache.h>, which includes this file; it is not meant to be
 * included alone.
 *
 * How an entry is stored, by codec:
 *  - none: the tensor as given (its dtype, ndim and shape in the entry's metadata).
 *  - f16, bf16: the float tensor narrowed (round half to even, saturating; NaN/Inf refused); the
 *    entry simply is an f16/bf16 tensor and its metadata says so. Nothing marks that it was
 *    narrowed: reading it needs no decoding.
 *  - int8, int8-channel, int8-group: the int8 payload of gencache_quant_encode() (it carries
 *    the original dtype and shape). The entry is opaque bytes (dtype NONE, ndim 0) whose content
 *    type is the caller's (application/octet-stream when none) followed by the mark
 *    "; codec=<codec name>", e.g. "application/vnd.gencache.numpy; codec=int8-channel".
 *    Reading it always decodes the payload.
 */
#ifndef GENCACHE_API_CODEC_H
#define GENCACHE_API_CODEC_H

#ifndef GENCACHE_H
#error "include <gencache.h>, not <gencache/codec.h>"
#endif

/* The content-type parameter that marks an int8 payload; the codec's name follows it and ends
 * the content type. */
#define GENCACHE_CODEC_MARK "; codec="

/* How gencache_tensor_encode() and gencache_put_tensor() store a tensor. */
typedef struct gencache_encode_options {
    size_t struct_size;   /* sizeof(gencache_encode_options); set by _init() */
    gencache_codec codec; /* how the tensor is stored; default NONE */
    uint32_t axis;        /* INT8_CHANNEL: the channel axis, < ndim; default 0. Ignored by the
                             other codecs */
    uint32_t group_size;  /* INT8_GROUP: consecutive elements per scale, >= 1; default 128.
                             Ignored by the other codecs */
} gencache_encode_options;

/* Fills *opts with the defaults above. Thread-safety: safe. */
GENCACHE_API void gencache_encode_options_init(gencache_encode_options *opts);

/* A tensor encoded for storage: the bytes to store and the metadata that describes them.
 * Immutable once made. Thread-safety: safe (reads), one thread at a time for free. */
typedef struct gencache_encoded gencache_encoded;

/* Encodes the tensor `data` (`size` bytes, little-endian, row-major) that meta's dtype, ndim and
 * shape describe, as opts->codec says (opts NULL: the defaults, codec NONE, which copies).
 * The codecs other than NONE take f32, f16 or bf16 tensors only. meta's other "in" fields
 * (content type, tenant, model, tags, cost, TTL, pinned) are copied to the encoded metadata.
 * On success *out is a new object (free it with gencache_encoded_free()) that owns copies of
 * everything it needs; data and meta are borrowed for the call.
 * Returns GENCACHE_OK, GENCACHE_EINVAL (NULL data with size > 0, NULL meta or out, dtype NONE or
 * unknown, ndim > GENCACHE_MAX_DIMS, a negative dimension, size not matching the shape, bad
 * options: struct_size, unknown codec, INT8_CHANNEL axis >= ndim, INT8_GROUP group_size 0; a
 * content type that already ends in a codec mark; a NaN or Inf element with a codec other than
 * NONE), GENCACHE_EUNSUPPORTED (a codec other than NONE on a tensor that is not f32/f16/bf16),
 * GENCACHE_ELIMIT (element count or bytes beyond 2^62), GENCACHE_ENOMEM. *out is NULL on
 * failure. Thread-safety: safe. */
GENCACHE_API int gencache_tensor_encode(const void *data, size_t size, const gencache_meta *meta,
                                        const gencache_encode_options *opts,
                                        gencache_encoded **out);

/* The bytes to store: valid until the object is freed (non-NULL even when empty).
 * Thread-safety: safe. */
GENCACHE_API const void *gencache_encoded_data(const gencache_encoded *enc);

/* The number of bytes at gencache_encoded_data(). Thread-safety: safe. */
GENCACHE_API size_t gencache_encoded_size(const gencache_encoded *enc);

/* The metadata to store with those bytes: the caller's, with dtype, ndim, shape and content
 * type describing what is stored (see the top of this file); the fields the cache fills are
 * zero/NULL. Owned by the object (strings included); copy it to change a field before a put.
 * Thread-safety: safe. */
GENCACHE_API const gencache_meta *gencache_encoded_meta(const gencache_encoded *enc);

/* Frees the object; pointers obtained from it become invalid. free(NULL) does nothing.
 * Thread-safety: one thread at a time. */
GENCACHE_API void gencache_encoded_free(gencache_encoded *enc);

/* Encodes the tensor as gencache_tensor_encode() does and stores it under `key` with
 * gencache_put() (codec NONE stores data without a copy). Returns the codes of both.
 * Thread-safety: safe. */
GENCACHE_API int gencache_put_tensor(gencache *cache, const char *key, const void *data,
                                     size_t size, const gencache_meta *meta,
                                     const gencache_encode_options *opts);

/* What reading a tensor entry gives. */
typedef struct gencache_decode_info {
    gencache_codec codec;      /* INT8, INT8_CHANNEL or INT8_GROUP for an int8 payload; NONE for
                                  a plain tensor (f16/bf16-coded entries are plain tensors) */
    gencache_tensor_desc desc; /* the tensor decoding writes: the requested dtype (or the
                                  original one) and the shape */
    uint64_t size;             /* bytes decoding writes: element count times the dtype's size */
    int needs_decode;          /* nonzero: the stored bytes are not already that tensor */
    const char *content_type;  /* the entry's content type without the codec mark: its first
                                  content_type_len bytes (not NUL-terminated when marked). Points
                                  into meta->content_type, or to a static
                                  "application/octet-stream" when that is NULL */
    size_t content_type_len;
} gencache_decode_info;

/* Nonzero when reading the entry that meta describes as `want` (NONE: its own dtype) needs
 * gencache_tensor_decode(): an int8 payload (a dtype NONE entry whose content type ends in the
 * codec mark of an int8 codec), or a want other than NONE and the stored dtype. 0 for anything
 * else, NULL meta included. A pure function. Thread-safety: safe. */
GENCACHE_API int gencache_tensor_needs_decode(const gencache_meta *meta, gencache_dtype want);

/* Describes what gencache_tensor_decode() writes for the stored entry (`data`, `size` bytes,
 * with its metadata meta) decoded to `want`: GENCACHE_DTYPE_NONE for the tensor's original dtype
 * (an int8 payload's, or the stored one), else F32, F16 or BF16, or the stored dtype itself.
 * Validates an int8 payload completely and a plain tensor's size against its shape. A plain
 * tensor's data must be aligned for its elements, as a handle's bytes are (64 bytes).
 * Returns GENCACHE_OK, GENCACHE_EINVAL (NULL meta or out, NULL data with size > 0, an unknown
 * want, an entry that is not a tensor: dtype NONE and no codec mark), GENCACHE_EUNSUPPORTED
 * (a conversion to or from a dtype other than f32/f16/bf16), GENCACHE_EPARSE (the bytes are not
 * what the metadata says: a bad int8 payload, a size not matching the shape), GENCACHE_EVERSION
 * (an int8 payload layout this library does not know). *out is zeroed on failure.
 * Thread-safety: safe. */
GENCACHE_API int gencache_tensor_decode_info(const gencache_meta *meta, const void *data,
                                             size_t size, gencache_dtype want,
                                             gencache_decode_info *out);

/* Decodes the stored entry into dst (dst_size bytes, at least gencache_decode_info.size) as
 * gencache_tensor_decode_info() describes it: an int8 payload dequantized, a plain tensor copied
 * or converted (gencache_tensor_convert(): narrowing refuses NaN/Inf). *out_size (may be NULL)
 * receives the bytes written. Returns the codes of gencache_tensor_decode_info(), and
 * GENCACHE_ETOOBIG (dst_size too small), GENCACHE_EINVAL (NULL dst with bytes to write, a NaN or
 * Inf narrowed: dst is then unspecified). *out_size is 0 on failure. Thread-safety: safe. */
GENCACHE_API int gencache_tensor_decode(const gencache_meta *meta, const void *data, size_t size,
                                        gencache_dtype want, void *dst, size_t dst_size,
                                        size_t *out_size);

/* gencache_tensor_decode_info() of a handle's entry. out->content_type points into the handle
 * (valid until it is released). Thread-safety: safe. */
GENCACHE_API int gencache_handle_decode_info(const gencache_handle *handle, gencache_dtype want,
                                             gencache_decode_info *out);

/* gencache_tensor_decode() of a handle's entry. Thread-safety: safe. */
GENCACHE_API int gencache_handle_decode(const gencache_handle *handle, gencache_dtype want,
                                        void *dst, size_t dst_size, size_t *out_size);

#endif /* GENCACHE_API_CODEC_H */
