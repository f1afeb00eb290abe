/*
 * gencache/image.h: part of the public API of libgencache: image identity: decoding, pixel digests,
 * perceptual hashes, the near-duplicate index (DESIGN.md section 3). Include <gencache.h>, which
 * includes this file; it is not meant to be included alone.
 */
#ifndef GENCACHE_API_IMAGE_H
#define GENCACHE_API_IMAGE_H

#ifndef GENCACHE_H
#error "include <gencache.h>, not <gencache/image.h>"
#endif

/* Longest pixel digest string: "sha256:" + 64 hex digits + NUL. */
#define GENCACHE_DIGEST_MAX 72

/* Decodes the image file at `path` (PNG, JPEG or WebP, found by its signature, with the default
 * limits of gencache_image_limits_init()) and writes its pixel digest "sha256:<64 lowercase hex>"
 * and a NUL into out. The digest covers the decoded pixels only, never the container or its
 * metadata (DESIGN.md section 3; the exact rule is in docs/image.md). out is "" on failure.
 * Returns GENCACHE_OK, GENCACHE_EINVAL (NULL argument), GENCACHE_EIO (cannot read the file),
 * GENCACHE_EPARSE (corrupt or truncated image), GENCACHE_EUNSUPPORTED (not PNG/JPEG/WebP, or a
 * layout we do not decode such as CMYK JPEG or animated WebP), GENCACHE_ELIMIT (dimensions or
 * memory over the limits), GENCACHE_ENOMEM. Thread-safety: safe. */
GENCACHE_API int gencache_image_digest_file(const char *path, char out[GENCACHE_DIGEST_MAX]);

/* Decoded pixels: width x height samples of 1 (gray), 2 (gray+alpha), 3 (RGB) or 4 (RGBA)
 * channels of 8 or 16 bits, as the file stores them (palettes expanded to RGB or RGBA, gray of 1,
 * 2 or 4 bits widened to 8 bits). EXIF orientation is not applied. Immutable once made. */
typedef struct gencache_image gencache_image;

/* The container an image came from. */
typedef enum gencache_image_format {
    GENCACHE_IMAGE_RAW = 0, /* gencache_image_from_pixels() */
    GENCACHE_IMAGE_PNG = 1,
    GENCACHE_IMAGE_JPEG = 2,
    GENCACHE_IMAGE_WEBP = 3,
} gencache_image_format;

/* Bounds a decoder enforces before it allocates, so a small hostile file (a decompression bomb,
 * a header claiming 100000 x 100000) is refused with GENCACHE_ELIMIT instead of exhausting
 * memory. */
typedef struct gencache_image_limits {
    size_t struct_size;      /* sizeof(gencache_image_limits); set by _init() */
    uint32_t max_width;      /* pixels; default 16384 */
    uint32_t max_height;     /* pixels; default 16384 */
    uint64_t max_pixels;     /* width * height; default 64 Mi (67108864) */
    uint64_t max_bytes;      /* bytes of decoded samples; default 512 MiB */
    uint64_t max_file_bytes; /* bytes of an encoded file read by _decode_file(); default 256 MiB */
} gencache_image_limits;

/* Fills *limits with the defaults above. Thread-safety: safe. */
GENCACHE_API void gencache_image_limits_init(gencache_image_limits *limits);

/* Decodes an encoded image held in memory; the format is found by its signature. `limits` may be
 * NULL for the defaults; data and limits are borrowed for the call. On success *out is a new
 * image; free it with gencache_image_free().
 * Returns GENCACHE_OK, GENCACHE_EINVAL (NULL out or data, struct_size too small),
 * GENCACHE_EPARSE (corrupt, truncated or empty input), GENCACHE_EUNSUPPORTED (unknown format,
 * CMYK/YCCK JPEG, animated WebP), GENCACHE_ELIMIT, GENCACHE_ENOMEM.
 * Thread-safety: safe. */
GENCACHE_API int gencache_image_decode_memory(const void *data, size_t size,
                                              const gencache_image_limits *limits,
                                              gencache_image **out);

/* Reads the file at `path` (at most limits->max_file_bytes) and decodes it like
 * gencache_image_decode_memory(). Returns the same codes, plus GENCACHE_EIO when the file cannot
 * be opened or read. Thread-safety: safe. */
GENCACHE_API int gencache_image_decode_file(const char *path, const gencache_image_limits *limits,
                                            gencache_image **out);

/* Layouts accepted by gencache_image_from_pixels(); the value is the number of channels. */
typedef enum gencache_pixel_format {
    GENCACHE_PIXEL_L8 = 1,    /* 8-bit gray */
    GENCACHE_PIXEL_RGB8 = 3,  /* 8-bit R, G, B */
    GENCACHE_PIXEL_RGBA8 = 4, /* 8-bit R, G, B, A (not premultiplied) */
} gencache_pixel_format;

/* Makes an image from pixels a caller decoded itself: `height` rows of `width` pixels, each row
 * starting `stride` bytes after the previous one (stride >= width * channels; padding is not
 * copied). The pixels are copied. The default limits apply.
 * Returns GENCACHE_OK, GENCACHE_EINVAL (NULL pointer, zero size, unknown format, stride too
 * small), GENCACHE_ELIMIT, GENCACHE_ENOMEM. Thread-safety: safe. */
GENCACHE_API int gencache_image_from_pixels(const void *pixels, uint32_t width, uint32_t height,
                                            size_t stride, gencache_pixel_format format,
                                            gencache_image **out);

/* Frees an image. gencache_image_free(NULL) does nothing. Thread-safety: one thread at a time
 * per image (no other call may use it meanwhile). */
GENCACHE_API void gencache_image_free(gencache_image *img);

/* What an image is. */
typedef struct gencache_image_info {
    uint32_t width;               /* pixels */
    uint32_t height;              /* pixels */
    uint32_t channels;            /* 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA, as decoded */
    uint32_t bits;                /* bits per sample: 8 or 16 */
    gencache_image_format format; /* the container it came from */
} gencache_image_info;

/* Fills *out with the image's dimensions and layout. Returns GENCACHE_OK or GENCACHE_EINVAL.
 * Thread-safety: safe. */
GENCACHE_API int gencache_image_info_get(const gencache_image *img, gencache_image_info *out);

/* Writes the image's pixel digest "sha256:<64 lowercase hex>" and a NUL into out: SHA-256 over
 * "gencache-img-v1 <width> <height> <channels> <bits>\n" and the samples row-major without
 * padding, 16-bit samples big-endian, after two canonical reductions so that the same pixels
 * give one digest whatever container holds them: an alpha channel whose samples are all opaque
 * is dropped, and colour whose every pixel has R = G = B is written as gray (docs/image.md).
 * out is "" on failure. Returns GENCACHE_OK, GENCACHE_EINVAL, GENCACHE_ENOMEM.
 * Thread-safety: safe (the image is only read). */
GENCACHE_API int gencache_image_digest(const gencache_image *img, char out[GENCACHE_DIGEST_MAX]);

/* Perceptual hash algorithms, computed as the Python imagehash library (4.3, with Pillow 9.4 and
 * scipy) computes average_hash, dhash and phash. */
typedef enum gencache_hash_algo {
    GENCACHE_HASH_AHASH = 0, /* pixel > mean of a hs x hs Lanczos thumbnail */
    GENCACHE_HASH_DHASH = 1, /* right neighbour > left, on a (hs+1) x hs thumbnail */
    GENCACHE_HASH_PHASH = 2, /* DCT of a 4hs x 4hs thumbnail: low hs x hs block > its median */
} gencache_hash_algo;

/* Longest hash as hex: 256 bits = 64 hex digits, and a NUL. */
#define GENCACHE_HASH_HEX_MAX 65
/* Longest hash as bytes: 256 bits. */
#define GENCACHE_HASH_MAX_BYTES 32

/* Computes a perceptual hash of `bits` bits (64: hash size 8, or 256: hash size 16). The bits are
 * row-major, the first bit the most significant: `out` (may be NULL) receives bits / 8 bytes,
 * `hex` (may be NULL) the lowercase hex string imagehash prints, and a NUL. The hash is of the
 * image's luminance L = (R*19595 + G*38470 + B*7471 + 0x8000) >> 16, alpha ignored, as Pillow's
 * convert("L") computes it (for 16-bit samples the rules Pillow applies are in docs/image.md).
 * Returns GENCACHE_OK, GENCACHE_EINVAL (NULL image, unknown algorithm, bits not 64 or 256),
 * GENCACHE_ENOMEM. Thread-safety: safe. */
GENCACHE_API int gencache_image_hash(const gencache_image *img, gencache_hash_algo algo,
                                     unsigned bits, unsigned char *out, char *hex);

/* gencache_image_hash() at 64 bits, as an integer whose most significant bit is the hash's first
 * bit (so "%016llx" prints what imagehash prints). *out is 0 on failure.
 * Returns GENCACHE_OK, GENCACHE_EINVAL (NULL image or out, unknown algorithm), GENCACHE_ENOMEM.
 * Thread-safety: safe. */
GENCACHE_API int gencache_image_hash64(const gencache_image *img, gencache_hash_algo algo,
                                       uint64_t *out);

/* What the near-duplicate guard compares: dimensions and two 64-bit hashes. */
typedef struct gencache_image_sig {
    uint32_t width;  /* pixels */
    uint32_t height; /* pixels */
    uint64_t phash;  /* 64-bit pHash: the index key */
    uint64_t dhash;  /* 64-bit dHash: the second, independent opinion */
} gencache_image_sig;

/* Fills *out with the image's signature. Returns GENCACHE_OK, GENCACHE_EINVAL, GENCACHE_ENOMEM.
 * Thread-safety: safe. */
GENCACHE_API int gencache_image_sig_get(const gencache_image *img, gencache_image_sig *out);

/* The guard of DESIGN.md section 3. */
typedef struct gencache_match_options {
    size_t struct_size;       /* sizeof(gencache_match_options); set by _init() */
    unsigned phash_radius;    /* max Hamming distance of the pHashes; default 10 */
    unsigned dhash_radius;    /* max Hamming distance of the dHashes; default 12 */
    double aspect_tolerance;  /* max relative difference of width/height; default 0.02 */
    unsigned min_detail;      /* an image whose pHash has fewer than this many bits set is
                                 featureless (flat colour, a faint highlight): a pHash splits at the
                                 median, so a detailed image sets about half its bits, while a flat
                                 one has its coefficients tied at zero and sets almost none; such
                                 images never match. Default 8 */
    unsigned combined_radius; /* max pHash distance + dHash distance (the distance of the two
                                 hashes read as one 128-bit hash); 0: no such limit (so a struct
                                 zeroed by hand keeps the guard it had before this field). A benign
                                 variant rarely moves both hashes far, two different images that
                                 come close in one hash rarely do in the other (docs/image.md).
                                 Default 14 */
} gencache_match_options;

/* Fills *opts with the defaults above. Thread-safety: safe. */
GENCACHE_API void gencache_match_options_init(gencache_match_options *opts);

/* Decides whether `candidate` may stand in for `query`: their aspect ratios differ by at most
 * opts->aspect_tolerance (relative), their pHashes by at most phash_radius bits, their dHashes
 * by at most dhash_radius bits, both distances together by at most combined_radius bits (unless
 * it is 0), and neither is featureless (see min_detail). opts may be NULL for the defaults.
 * *distance (may be NULL) receives the pHash distance in either case.
 * Returns GENCACHE_OK (a match), GENCACHE_ENOTFOUND (not a match), GENCACHE_EINVAL.
 * Thread-safety: safe. */
GENCACHE_API int gencache_image_match(const gencache_image_sig *query,
                                      const gencache_image_sig *candidate,
                                      const gencache_match_options *opts, unsigned *distance);

/* An index of 64-bit hashes for "which stored hashes lie within Hamming distance r of this one"
 * (multi-index hashing: five substrings of 13 or 12 bits, each with its own table; fast up to
 * r = 10, a full scan past r = 14). Each entry is a pair (hash, id); id is the caller's name for
 * what the hash belongs to. Memory: about 56 bytes per entry. */
typedef struct gencache_hash_index gencache_hash_index;

/* One answer of gencache_hash_index_query(). */
typedef struct gencache_hash_hit {
    uint64_t hash;     /* the stored hash */
    uint64_t id;       /* its id */
    unsigned distance; /* Hamming distance to the query, 0-64 */
} gencache_hash_hit;

/* Makes an empty index. *out is a new index; free it with gencache_hash_index_free().
 * Returns GENCACHE_OK, GENCACHE_EINVAL, GENCACHE_ENOMEM. Thread-safety: safe. */
GENCACHE_API int gencache_hash_index_new(gencache_hash_index **out);

/* Frees the index. free(NULL) does nothing. Thread-safety: one thread, no other call meanwhile. */
GENCACHE_API void gencache_hash_index_free(gencache_hash_index *idx);

/* Adds (hash, id). Returns GENCACHE_OK, GENCACHE_EEXIST (that exact pair is already there),
 * GENCACHE_ELIMIT (2^32 - 1 entries), GENCACHE_EINVAL, GENCACHE_ENOMEM. Thread-safety: safe
 * (a writer lock). */
GENCACHE_API int gencache_hash_index_insert(gencache_hash_index *idx, uint64_t hash, uint64_t id);

/* Removes (hash, id). Returns GENCACHE_OK, GENCACHE_ENOTFOUND, GENCACHE_EINVAL.
 * Thread-safety: safe (a writer lock). */
GENCACHE_API int gencache_hash_index_remove(gencache_hash_index *idx, uint64_t hash, uint64_t id);

/* The number of entries (0 for NULL). Thread-safety: safe (a reader lock). */
GENCACHE_API size_t gencache_hash_index_size(gencache_hash_index *idx);

/* Finds every entry within Hamming distance `radius` (0-64) of `hash`, nearest first (ties by
 * id, then hash). Up to `cap` of them are written to hits (may be NULL when cap is 0); *count
 * receives how many there are in all, which may exceed cap.
 * Returns GENCACHE_OK (also when nothing is found: *count is 0), GENCACHE_EINVAL,
 * GENCACHE_ENOMEM. Thread-safety: safe (a reader lock: queries run in parallel). */
GENCACHE_API int gencache_hash_index_query(gencache_hash_index *idx, uint64_t hash, unsigned radius,
                                           gencache_hash_hit *hits, size_t cap, size_t *count);

/* Writes every entry to `path` (a new file written beside it, then renamed over it, so a reader
 * never sees half a file). Returns GENCACHE_OK, GENCACHE_EINVAL, GENCACHE_EIO, GENCACHE_ENOSPC,
 * GENCACHE_ENOMEM. Thread-safety: safe (a reader lock). */
GENCACHE_API int gencache_hash_index_save(gencache_hash_index *idx, const char *path);

/* Reads an index written by gencache_hash_index_save(). *out is a new index.
 * Returns GENCACHE_OK, GENCACHE_EINVAL, GENCACHE_EIO (cannot read), GENCACHE_EPARSE (not an index
 * file, truncated), GENCACHE_ECORRUPT (checksum mismatch), GENCACHE_EVERSION, GENCACHE_ENOMEM.
 * Thread-safety: safe. */
GENCACHE_API int gencache_hash_index_load(const char *path, gencache_hash_index **out);

#endif /* GENCACHE_API_IMAGE_H */
