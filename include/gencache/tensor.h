/*
 * gencache/tensor.h: part of the public API of libgencache: tensors, dtype codecs, int8
 * quantization, safetensors, sessions, KV windows and the chunk planner. Include <gencache.h>,
 * which includes this file; it is not meant to be included alone.
 */
#ifndef GENCACHE_API_TENSOR_H
#define GENCACHE_API_TENSOR_H

#ifndef GENCACHE_H
#error "include <gencache.h>, not <gencache/tensor.h>"
#endif

/* Byte order of a tensor's elements. Stored tensors are always little-endian; BIG describes a
 * foreign buffer that gencache_tensor_byteswap() turns around before it is stored. */
typedef enum gencache_byte_order {
    GENCACHE_BYTE_ORDER_LITTLE = 0,
    GENCACHE_BYTE_ORDER_BIG = 1,
} gencache_byte_order;

/* What a tensor is: element type, shape (row-major, C order) and byte order. A rank-0 tensor
 * (ndim 0) is a scalar of one element. */
typedef struct gencache_tensor_desc {
    gencache_dtype dtype;
    uint32_t ndim;                    /* <= GENCACHE_MAX_DIMS */
    int64_t shape[GENCACHE_MAX_DIMS]; /* ndim dimensions, each >= 0; the rest ignored */
    gencache_byte_order byte_order;   /* LITTLE for everything gencache stores */
} gencache_tensor_desc;

/* Checks that `size` bytes hold exactly a tensor of this dtype and shape (element count times
 * the dtype's size). shape may be NULL when ndim is 0.
 * Returns GENCACHE_OK, GENCACHE_EINVAL (unknown dtype or NONE, ndim > GENCACHE_MAX_DIMS, a
 * negative dimension, size mismatch), GENCACHE_ELIMIT (element count or byte size beyond 2^62).
 * Thread-safety: safe. */
GENCACHE_API int gencache_tensor_check(gencache_dtype dtype, uint32_t ndim, const int64_t *shape,
                                       uint64_t size);

/* *out receives the element count of a shape (1 for ndim 0). Returns GENCACHE_OK,
 * GENCACHE_EINVAL (NULL out, ndim > GENCACHE_MAX_DIMS, a negative dimension), GENCACHE_ELIMIT
 * (count beyond 2^62); *out is 0 on failure. Thread-safety: safe. */
GENCACHE_API int gencache_tensor_numel(uint32_t ndim, const int64_t *shape, uint64_t *out);

/* Reverses the bytes of each element of `size` bytes of `dtype` in place (little- <-> big-
 * endian). Returns GENCACHE_OK, GENCACHE_EINVAL (unknown dtype, size not a multiple of the
 * element size). Thread-safety: safe (on distinct buffers). */
GENCACHE_API int gencache_tensor_byteswap(gencache_dtype dtype, void *data, size_t size);

/* How a tensor is stored (the X-Gencache-Codec header of DESIGN.md). The int8 codecs are
 * symmetric: q = round_half_even(x * inv), the exact product with inv = 127 / amax (f32)
 * rounded once, so |q| <= 127, with scale amax / 127 per tensor, per channel (index of one
 * axis) or per group of consecutive elements; their payload layout is in docs/tensors.md. */
typedef enum gencache_codec {
    GENCACHE_CODEC_NONE = 0,         /* "none": the bytes as given */
    GENCACHE_CODEC_F16 = 1,          /* "f16": floats stored as f16 */
    GENCACHE_CODEC_BF16 = 2,         /* "bf16": floats stored as bf16 */
    GENCACHE_CODEC_INT8 = 3,         /* "int8": one scale for the tensor */
    GENCACHE_CODEC_INT8_CHANNEL = 4, /* "int8-channel": one scale per index of an axis */
    GENCACHE_CODEC_INT8_GROUP = 5,   /* "int8-group": one scale per group_size elements */
} gencache_codec;

/* The codec's name ("none", "f16", "bf16", "int8", "int8-channel", "int8-group"); NULL for an
 * unknown value. Thread-safety: safe. */
GENCACHE_API const char *gencache_codec_name(gencache_codec codec);

/* Parses a codec name. Returns GENCACHE_OK, or GENCACHE_EINVAL for an unknown name (*out is
 * then GENCACHE_CODEC_NONE). Thread-safety: safe. */
GENCACHE_API int gencache_codec_parse(const char *name, gencache_codec *out);

/* Converts `count` elements between f32, f16 and bf16 (any pair; the same dtype copies). src and
 * dst must not overlap. Narrowing rounds half to even; a finite value beyond the narrower
 * format's range saturates to its largest finite value (f16: +-65504), so finite stays finite.
 * NaN and Inf are REJECTED by a narrowing conversion (GENCACHE_EINVAL; dst is then
 * unspecified) and carried exactly by a widening one (f16/bf16 -> f32; a NaN comes out quiet).
 * Uses AVX-512 or AVX2+F16C when the CPU has them; every path gives identical bits.
 * Returns GENCACHE_OK, GENCACHE_EINVAL (NULL pointer with count > 0, NaN/Inf when narrowing),
 * GENCACHE_EUNSUPPORTED (a dtype other than f32, f16, bf16). Thread-safety: safe. */
GENCACHE_API int gencache_tensor_convert(gencache_dtype dst_dtype, void *dst,
                                         gencache_dtype src_dtype, const void *src, size_t count);

/* How gencache_quant_encode() quantizes. */
typedef struct gencache_quant_options {
    size_t struct_size;   /* sizeof(gencache_quant_options); set by _init() */
    gencache_codec codec; /* INT8, INT8_CHANNEL or INT8_GROUP; default INT8 */
    uint32_t axis;        /* INT8_CHANNEL: the channel axis, < ndim; default 0 */
    uint32_t group_size;  /* INT8_GROUP: consecutive elements per scale, >= 1; default 128 */
} gencache_quant_options;

/* Fills *opts with the defaults above. Thread-safety: safe. */
GENCACHE_API void gencache_quant_options_init(gencache_quant_options *opts);

/* *out receives the size in bytes of the payload gencache_quant_encode() makes for a tensor
 * described by desc (header, scales, int8 data). opts may be NULL for the defaults.
 * Returns GENCACHE_OK, GENCACHE_EINVAL (bad desc or options), GENCACHE_EUNSUPPORTED (dtype not
 * f32/f16/bf16), GENCACHE_ELIMIT. Thread-safety: safe. */
GENCACHE_API int gencache_quant_size(const gencache_tensor_desc *desc,
                                     const gencache_quant_options *opts, size_t *out);

/* Quantizes the little-endian f32/f16/bf16 tensor `data` (`size` bytes, described by desc) to
 * int8 and writes the payload (docs/tensors.md) to dst. Every element x of a block with scale s
 * comes back from gencache_quant_decode() within s/2 (plus f32 rounding). A block whose largest
 * magnitude is below 2^-120 is stored as zeros with scale 0. *out_size (may be NULL) receives
 * the payload's size. Returns GENCACHE_OK, GENCACHE_EINVAL (bad desc or options, size not
 * matching the shape, a NaN or Inf element: rejected), GENCACHE_EUNSUPPORTED (dtype),
 * GENCACHE_ETOOBIG (dst_size smaller than gencache_quant_size()), GENCACHE_ELIMIT.
 * Thread-safety: safe. */
GENCACHE_API int gencache_quant_encode(const gencache_tensor_desc *desc, const void *data,
                                       size_t size, const gencache_quant_options *opts, void *dst,
                                       size_t dst_size, size_t *out_size);

/* What a quantized payload holds, as read from its header. */
typedef struct gencache_quant_info {
    gencache_codec codec;      /* INT8, INT8_CHANNEL or INT8_GROUP */
    uint32_t axis;             /* INT8_CHANNEL's axis; else 0 */
    uint32_t group_size;       /* INT8_GROUP's group size; else 0 */
    uint64_t n_scales;         /* f32 scales stored */
    uint64_t scales_offset;    /* byte offset of the scales in the payload */
    uint64_t data_offset;      /* byte offset of the int8 elements (64-byte aligned) */
    gencache_tensor_desc desc; /* the tensor that was quantized (its dtype and shape) */
} gencache_quant_info;

/* Validates a quantized payload completely (magic, version, codec, shape, scale count, finite
 * non-negative scales, exact size) and describes it in *out (zeroed on failure).
 * Returns GENCACHE_OK, GENCACHE_EINVAL (NULL argument), GENCACHE_EPARSE (not a valid payload),
 * GENCACHE_EVERSION (a layout version this library does not know). Thread-safety: safe. */
GENCACHE_API int gencache_quant_info_get(const void *payload, size_t size,
                                         gencache_quant_info *out);

/* Dequantizes a payload into dst as `dtype` (F32, F16 or BF16; NONE: the original dtype),
 * q * scale computed in f32 and narrowed as gencache_tensor_convert() does. *out_size (may be
 * NULL) receives the bytes written (element count times the dtype's size).
 * Returns GENCACHE_OK, GENCACHE_EINVAL, GENCACHE_EPARSE / GENCACHE_EVERSION (as
 * gencache_quant_info_get()), GENCACHE_EUNSUPPORTED (dtype), GENCACHE_ETOOBIG (dst too small).
 * Thread-safety: safe. */
GENCACHE_API int gencache_quant_decode(const void *payload, size_t size, gencache_dtype dtype,
                                       void *dst, size_t dst_size, size_t *out_size);

/* ---- safetensors files (Hugging Face's format) -------------------------------------------- */

/* Default and hard ceiling of a file's JSON header: 100 MiB. */
#define GENCACHE_SAFETENSORS_MAX_HEADER (100ull * 1024 * 1024)

/* One tensor of a safetensors file: read from one, or given to the writer. */
typedef struct gencache_safetensors_tensor {
    const char *name;     /* UTF-8, unique in the file */
    gencache_dtype dtype; /* F32, F16, BF16, I8, U8, I32 or I64 */
    uint32_t ndim;        /* <= GENCACHE_MAX_DIMS */
    int64_t shape[GENCACHE_MAX_DIMS];
    const void *data; /* little-endian, row-major elements */
    uint64_t size;    /* bytes: element count times the dtype's size */
} gencache_safetensors_tensor;

/* A parsed safetensors file. Immutable once parsed. Thread-safety: safe (reads), one thread at a
 * time for close. */
typedef struct gencache_safetensors gencache_safetensors;

typedef struct gencache_safetensors_options {
    size_t struct_size;        /* sizeof(gencache_safetensors_options); set by _init() */
    uint64_t max_header_bytes; /* larger JSON headers are refused; default and ceiling
                                  GENCACHE_SAFETENSORS_MAX_HEADER */
    char *errbuf;              /* NULL, or a buffer that receives a sentence saying what was
                                  wrong with a refused file */
    size_t errbuf_size;
} gencache_safetensors_options;

/* Fills *opts with the defaults above. Thread-safety: safe. */
GENCACHE_API void gencache_safetensors_options_init(gencache_safetensors_options *opts);

/* Parses a safetensors file held in memory and validates it strictly: an 8-byte little-endian
 * header length within the limit and the buffer, a JSON object header (UTF-8, no duplicate
 * names), known dtypes, at most GENCACHE_MAX_DIMS non-negative dimensions, data_offsets that are
 * in range, contiguous from 0 with no gap or overlap and cover the data exactly, each tensor's
 * byte length equal to its shape times its dtype's size, and an optional "__metadata__" object
 * of strings. Tensors are listed in the order of their data. `data` is borrowed and must
 * outlive *out (tensor data points into it). opts may be NULL.
 * Returns GENCACHE_OK, GENCACHE_EINVAL (NULL argument), GENCACHE_EPARSE (malformed or
 * inconsistent file), GENCACHE_EUNSUPPORTED (a dtype gencache does not carry, such as F64, or
 * more than GENCACHE_MAX_DIMS dims), GENCACHE_ELIMIT (header past the limit), GENCACHE_ENOMEM.
 * On success *out is a new object; free it with gencache_safetensors_close().
 * Thread-safety: safe. */
GENCACHE_API int gencache_safetensors_parse(const void *data, size_t size,
                                            const gencache_safetensors_options *opts,
                                            gencache_safetensors **out);

/* Like gencache_safetensors_parse() on the contents of the file at `path`, which is mapped
 * read-only and owned by *out. Returns those codes and GENCACHE_EIO (cannot open or read),
 * GENCACHE_ENOTFOUND (no such file). Thread-safety: safe. */
GENCACHE_API int gencache_safetensors_open(const char *path,
                                           const gencache_safetensors_options *opts,
                                           gencache_safetensors **out);

/* Frees a parsed file; pointers obtained from it become invalid. close(NULL) does nothing.
 * Thread-safety: one thread at a time. */
GENCACHE_API void gencache_safetensors_close(gencache_safetensors *st);

/* The number of tensors in the file. Thread-safety: safe. */
GENCACHE_API size_t gencache_safetensors_count(const gencache_safetensors *st);

/* Fills *out with tensor `index` (0 <= index < count); its strings and data point into st.
 * Returns GENCACHE_OK, GENCACHE_EINVAL (index out of range). Thread-safety: safe. */
GENCACHE_API int gencache_safetensors_get(const gencache_safetensors *st, size_t index,
                                          gencache_safetensors_tensor *out);

/* Fills *out with the tensor called `name`. Returns GENCACHE_OK, GENCACHE_ENOTFOUND,
 * GENCACHE_EINVAL. Thread-safety: safe. */
GENCACHE_API int gencache_safetensors_find(const gencache_safetensors *st, const char *name,
                                           gencache_safetensors_tensor *out);

/* The value of "__metadata__" entry `key`, or NULL when absent; owned by st.
 * Thread-safety: safe. */
GENCACHE_API const char *gencache_safetensors_metadata(const gencache_safetensors *st,
                                                       const char *key);

/* Receives a file's bytes in order; returns 0, or a negative GENCACHE_E* code to stop. */
typedef int (*gencache_write_fn)(void *userdata, const void *data, size_t size);

/* Writes n tensors (in the order given, data contiguous, header padded with spaces to a multiple
 * of 8 bytes) and an optional "__metadata__" of n_metadata key/value string pairs
 * (metadata[2i] is a key, metadata[2i+1] its value) through `write`. Everything is borrowed.
 * Returns GENCACHE_OK, GENCACHE_EINVAL (NULL arguments, duplicate or empty names, a name or key
 * that is not UTF-8, "__metadata__" as a tensor name, a size not matching the shape, an
 * unknown dtype), GENCACHE_ENOMEM, or the first error `write` returns. Thread-safety: safe. */
GENCACHE_API int gencache_safetensors_write_to(gencache_write_fn write, void *userdata,
                                               const gencache_safetensors_tensor *tensors, size_t n,
                                               const char *const *metadata, size_t n_metadata);

/* gencache_safetensors_write_to() into the file at `path`, written beside it and renamed into
 * place, so a reader never sees half a file. Returns those codes and GENCACHE_EIO.
 * Thread-safety: safe (on distinct paths). */
GENCACHE_API int gencache_safetensors_write(const char *path,
                                            const gencache_safetensors_tensor *tensors, size_t n,
                                            const char *const *metadata, size_t n_metadata);

/* ---- sessions: in-flight state of one generation ------------------------------------------
 * A session holds named values that live for a number of denoising steps (per-step features) or
 * for the whole session (GENCACHE_PERSISTENT: text embeddings). A value put with steps = N while
 * the session is at step k is available at steps k .. k+N-1 and freed by the
 * gencache_session_step() that moves the session to step k+N. Session values draw on the
 * cache's memory budget: they count against the memory tier's byte limit (evicting cached
 * entries to make room) and give it back when freed. A session idle for longer than its TTL is
 * ended by gencache_session_reap() (or by the next gencache_session_open() on the same cache),
 * so a client that vanishes does not hold memory for ever.
 * Thread-safety: safe (each session has its own lock), except gencache_session_close(). */
typedef struct gencache_session gencache_session;

typedef struct gencache_session_options {
    size_t struct_size; /* sizeof(gencache_session_options); set by _init() */
    uint64_t ttl_ms;    /* idle time after which the session may be reaped; 0: never. Default
                           300000 (5 min) */
    uint64_t max_bytes; /* this session's own byte limit; 0: only the cache's budget. Default 0 */
} gencache_session_options;

/* Fills *opts with the defaults above. Thread-safety: safe. */
GENCACHE_API void gencache_session_options_init(gencache_session_options *opts);

/* The value lives for the whole session, whatever its steps. */
#define GENCACHE_PERSISTENT 1u

/* Opens session `id` (1-128 printable ASCII bytes) at step 0 on `cache`, first reaping the
 * cache's sessions whose TTL has run out. opts may be NULL. On success *out is the session;
 * end it with gencache_session_close(), before the cache is closed.
 * Returns GENCACHE_OK, GENCACHE_EINVAL (bad id or options), GENCACHE_EEXIST (a session with
 * this id is open on this cache), GENCACHE_ENOMEM. Thread-safety: safe. */
GENCACHE_API int gencache_session_open(gencache *cache, const char *id,
                                       const gencache_session_options *opts,
                                       gencache_session **out);

/* Stores a copy of `size` bytes under `name` (1-255 bytes), replacing a value of that name,
 * for `steps` steps from the current one, or for the whole session with GENCACHE_PERSISTENT in
 * flags (steps is then ignored). meta may be NULL; its dtype, ndim and shape describe a tensor
 * (checked against size), its other fields are ignored. Values are 64-byte aligned.
 * Returns GENCACHE_OK, GENCACHE_EINVAL (bad name, steps 0 without PERSISTENT, unknown flags,
 * tensor shape not matching size), GENCACHE_ELIMIT (the session's max_bytes would be exceeded),
 * GENCACHE_EFULL (the cache's memory budget cannot make room), GENCACHE_ETIMEDOUT (the session
 * was reaped), GENCACHE_ENOMEM. Thread-safety: safe (calls on one session are serialized). */
GENCACHE_API int gencache_session_put(gencache_session *s, const char *name, const void *data,
                                      size_t size, const gencache_meta *meta, uint32_t steps,
                                      unsigned flags);

/* Looks up `name`: *data and *size receive the stored bytes (no copy), valid until the value
 * expires, is replaced or the session ends; desc (may be NULL) receives its tensor description
 * (dtype NONE when not a tensor). Returns GENCACHE_OK, GENCACHE_ENOTFOUND (absent or expired),
 * GENCACHE_EINVAL, GENCACHE_ETIMEDOUT (reaped). *data is NULL and *size 0 on failure.
 * Thread-safety: safe, but the bytes may be freed by another thread's step or put. */
GENCACHE_API int gencache_session_get(gencache_session *s, const char *name, const void **data,
                                      size_t *size, gencache_tensor_desc *desc);

/* Advances the session one step and frees the values that expire with it. *freed_bytes (may be
 * NULL) receives the bytes given back to the budget (value sizes plus bookkeeping).
 * Returns GENCACHE_OK, GENCACHE_EINVAL, GENCACHE_ETIMEDOUT (reaped). Thread-safety: safe. */
GENCACHE_API int gencache_session_step(gencache_session *s, uint64_t *freed_bytes);

/* A session's state. */
typedef struct gencache_session_stats {
    uint64_t step;    /* current step, from 0 */
    uint64_t entries; /* values held */
    uint64_t bytes;   /* bytes charged to the cache's budget */
    int reaped;       /* nonzero: ended by its TTL; only close remains */
} gencache_session_stats;

/* Fills *out. Returns GENCACHE_OK, GENCACHE_EINVAL. Thread-safety: safe. */
GENCACHE_API int gencache_session_stats_get(gencache_session *s, gencache_session_stats *out);

/* Ends the session: frees its values, gives their bytes back to the cache's budget, and frees
 * s. close(NULL) does nothing. Thread-safety: one thread at a time; no other call on s may run
 * meanwhile or follow. */
GENCACHE_API void gencache_session_close(gencache_session *s);

/* Ends every session of `cache` idle (no put, get or step) for longer than its TTL at now_ms
 * (wall-clock ms since the epoch; 0: now): their values are freed and the budget returned. The
 * session objects stay until their owner calls gencache_session_close(); other calls on them
 * return GENCACHE_ETIMEDOUT, and their ids may be opened again. *count (may be NULL) receives
 * how many were ended. Returns GENCACHE_OK, GENCACHE_EINVAL. Thread-safety: safe. */
GENCACHE_API int gencache_session_reap(gencache *cache, uint64_t now_ms, uint64_t *count);

/* ---- KV windows: attention keys and values per layer ---------------------------------------
 * Each layer keeps its K rows and its V rows in one contiguous buffer each, in position order,
 * so a retrieve is a pointer into that buffer, not a copy (unless rows are stored as int8, when
 * it dequantizes into one buffer per layer). Pruning drops the oldest rows, handing them first
 * to an offload callback (the next tier) when one is set.
 * Thread-safety: one thread at a time per window (a window belongs to one generation). */
typedef struct gencache_kv gencache_kv;

/* Rows pruned from one layer, handed to the offload callback. Pointers valid during the call. */
typedef struct gencache_kv_block {
    uint32_t layer;
    int64_t first_pos;    /* position of the first row */
    uint64_t n_positions; /* rows */
    gencache_dtype dtype; /* of the rows below: the window's dtype, or I8 when stored as int8 */
    const void *k, *v;    /* n_positions rows each, contiguous */
    uint64_t k_row_bytes, v_row_bytes;
    const float *k_scales, *v_scales; /* int8 rows: one scale per row (q * scale); else NULL */
} gencache_kv_block;

/* Receives pruned rows (the disk tier, or the caller's own store). Called on the pruning
 * thread, with no lock of the window held. */
typedef void (*gencache_kv_offload_fn)(void *userdata, const gencache_kv_block *block);

typedef struct gencache_kv_options {
    size_t struct_size;         /* sizeof(gencache_kv_options); set by _init() */
    uint32_t n_layers;          /* >= 1; required */
    gencache_dtype dtype;       /* element type of K and V; default F16 */
    uint64_t k_elems;           /* elements of K per position (heads x head_dim); >= 1; required */
    uint64_t v_elems;           /* elements of V per position; >= 1; required */
    int int8;                   /* nonzero: keep rows as int8 with one scale per row (dtype must be
                                   F32, F16 or BF16); retrieve dequantizes. Default 0 */
    uint64_t initial_positions; /* rows reserved per layer at the first append; default 64 */
    gencache_kv_offload_fn offload; /* NULL: pruned rows are dropped */
    void *offload_userdata;
    gencache *cache; /* non-NULL: the window's buffers count against this cache's memory
                        budget (borrowed; must outlive the window). Default NULL */
} gencache_kv_options;

/* Fills *opts with the defaults above (n_layers, k_elems, v_elems 0). Thread-safety: safe. */
GENCACHE_API void gencache_kv_options_init(gencache_kv_options *opts);

/* Creates an empty window. On success *out is new; free it with gencache_kv_free().
 * Returns GENCACHE_OK, GENCACHE_EINVAL (bad options), GENCACHE_ENOMEM.
 * Thread-safety: safe. */
GENCACHE_API int gencache_kv_new(const gencache_kv_options *opts, gencache_kv **out);

/* Appends one position's K (k_elems elements) and V (v_elems elements) to `layer`. The first
 * append to a layer may use any position >= 0; each later one must be the next position.
 * Returns GENCACHE_OK, GENCACHE_EINVAL (bad layer, position out of order, NULL rows, NaN/Inf
 * in a row of an int8 window), GENCACHE_EFULL (the cache's budget cannot make room),
 * GENCACHE_ENOMEM. Thread-safety: one thread at a time per window. */
GENCACHE_API int gencache_kv_append(gencache_kv *kv, uint32_t layer, int64_t pos, const void *k,
                                    const void *v);

/* Rows of a layer as retrieve returns them. */
typedef struct gencache_kv_view {
    const void *k, *v;    /* n_positions rows each, contiguous, in the window's dtype */
    int64_t first_pos;    /* position of the first row */
    uint64_t n_positions; /* rows: first_pos .. first_pos + n_positions - 1 */
} gencache_kv_view;

/* Fills *out with the layer's rows from its oldest kept position up to, not including,
 * end_pos (end_pos past the last row means every row). The pointers stay valid until the next
 * append, prune or retrieve of this layer, or the window is freed.
 * int8 windows dequantize into one buffer per layer and keep what they dequantized, so a
 * retrieve after an append converts only the new rows (after a prune, all of them again).
 * Returns GENCACHE_OK, GENCACHE_EINVAL (bad layer), GENCACHE_ENOTFOUND (no row before
 * end_pos), GENCACHE_ENOMEM / GENCACHE_EFULL (int8 windows: the dequantization buffer).
 * Thread-safety: one thread at a time per window. */
GENCACHE_API int gencache_kv_retrieve(gencache_kv *kv, uint32_t layer, int64_t end_pos,
                                      gencache_kv_view *out);

/* Keeps the last keep_last_n positions of every layer and removes the older ones, handing them
 * to the offload callback first. *bytes_moved (may be NULL) receives the bytes of the rows
 * removed (and offloaded, when a callback is set). Returns GENCACHE_OK, GENCACHE_EINVAL.
 * Thread-safety: one thread at a time per window. */
GENCACHE_API int gencache_kv_prune(gencache_kv *kv, uint64_t keep_last_n, uint64_t *bytes_moved);

typedef struct gencache_kv_stats {
    uint64_t positions;       /* rows held, summed over layers */
    uint64_t bytes;           /* bytes of buffers held (capacity, not only rows) */
    uint64_t bytes_offloaded; /* row bytes handed to the offload callback, in total */
    uint64_t bytes_dropped;   /* row bytes pruned with no callback set, in total */
} gencache_kv_stats;

/* Fills *out. Returns GENCACHE_OK, GENCACHE_EINVAL. Thread-safety: one thread at a time. */
GENCACHE_API int gencache_kv_stats_get(const gencache_kv *kv, gencache_kv_stats *out);

/* Frees the window and gives its bytes back to the cache's budget. free(NULL) does nothing.
 * Thread-safety: one thread at a time. */
GENCACHE_API void gencache_kv_free(gencache_kv *kv);

/* ---- chunked decoding ---------------------------------------------------------------------- */

typedef struct gencache_chunk_options {
    size_t struct_size;       /* sizeof(gencache_chunk_options); set by _init() */
    int64_t shape[5];         /* the latent [B, C, T, H, W]; each >= 1 */
    gencache_dtype dtype;     /* latent element type; default F16 */
    uint64_t bytes_per_frame; /* the decoder's working memory per latent frame */
    uint64_t budget_bytes;    /* memory one chunk may use */
    uint32_t overlap;         /* frames each chunk repeats from the previous one, for temporal
                                 continuity; default 0 */
} gencache_chunk_options;

/* Fills *opts with the defaults above (shape, bytes_per_frame and budget 0).
 * Thread-safety: safe. */
GENCACHE_API void gencache_chunk_options_init(gencache_chunk_options *opts);

/* One chunk of latent frames: [start, start + frames). */
typedef struct gencache_chunk {
    int64_t start;   /* first frame */
    int64_t frames;  /* frames in the chunk, overlap included */
    int64_t overlap; /* leading frames shared with the previous chunk (0 for the first) */
} gencache_chunk;

/* Splits the T latent frames into chunks that each fit the budget: a frame costs its latent
 * bytes (B*C*H*W*dtype size) plus bytes_per_frame, a chunk at most floor(budget / cost) frames.
 * Chunks are as long as fits, consecutive ones share `overlap` frames, and the last ends at T.
 * A pure function. With chunks NULL, *n_chunks receives the count needed.
 * Returns GENCACHE_OK, GENCACHE_EINVAL (bad options; overlap >= the frames a chunk can hold),
 * GENCACHE_ELIMIT (the budget is smaller than one frame), GENCACHE_ETOOBIG (max_chunks too
 * small: *n_chunks then says how many are needed). Thread-safety: safe. */
GENCACHE_API int gencache_chunk_plan(const gencache_chunk_options *opts, gencache_chunk *chunks,
                                     size_t max_chunks, size_t *n_chunks);

#endif /* GENCACHE_API_TENSOR_H */
