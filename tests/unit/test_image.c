/*
 * test_image.c: decoding, pixel digests, perceptual hashes and the match guard (src/image/),
 * on real image files from Debian's imagemagick-6-doc (scripts/deps.txt) and on the small
 * files of the fuzz corpus. Bit-exact agreement with Pillow and scipy over many files is checked
 * by tests/integration/test_image_hashes.py; here a few reference values are pinned.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <pthread.h>

#include "image/image.h"
#include "image/simd.h"
#include "test.h"

#define IM_DIR "/usr/share/doc/imagemagick-6-common/html/images/"

static const char *corpus(const char *name)
{
    static char path[4096];
    const char *src = getenv("GENCACHE_SOURCE_DIR");
    snprintf(path, sizeof path, "%s/tests/fuzz/corpus/fuzz_image/%s", src ? src : ".", name);
    return path;
}

static unsigned char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        test_fail(__FILE__, __LINE__, "cannot open %s (is imagemagick-6-doc installed?)", path);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)len + 1);
    CHECK(buf != NULL);
    CHECK(fread(buf, 1, (size_t)len, f) == (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return buf;
}

static gencache_image *load(const char *path)
{
    gencache_image *img = NULL;
    int rc = gencache_image_decode_file(path, NULL, &img);
    if (rc != GENCACHE_OK)
        test_fail(__FILE__, __LINE__, "decoding %s: %s", path, gencache_errname(rc));
    return img;
}

static void digest_of(const gencache_image *img, char *out)
{
    CHECK_OK(gencache_image_digest(img, out));
}

TEST_CASE(digest_known_vector)
{
    /* SHA-256("gencache-img-v1 2 1 3 8\n" 01 02 03 04 05 06), computed independently. */
    const unsigned char px[6] = {1, 2, 3, 4, 5, 6};
    gencache_image *img;
    CHECK_OK(gencache_image_from_pixels(px, 2, 1, 6, GENCACHE_PIXEL_RGB8, &img));
    char d[GENCACHE_DIGEST_MAX];
    digest_of(img, d);
    CHECK_STR_EQ(d, "sha256:7b0b84eb09732344c2c40a657bac8c86e454349af94c1f2288898a89ad6d17ca");
    gencache_image_free(img);
}

TEST_CASE(digest_real_png)
{
    /* rose.png is 70 x 46 RGB; the value is hashlib.sha256 over the header line and Pillow's
     * tobytes() of the same file. */
    char d[GENCACHE_DIGEST_MAX];
    CHECK_OK(gencache_image_digest_file(IM_DIR "rose.png", d));
    CHECK_STR_EQ(d, "sha256:229588ad24ddc572ca0053f6a9595089625179c5cbe078db48b7ae7b58e812f9");
    gencache_image *img = load(IM_DIR "rose.png");
    gencache_image_info info;
    CHECK_OK(gencache_image_info_get(img, &info));
    CHECK_UINT_EQ(info.width, 70);
    CHECK_UINT_EQ(info.height, 46);
    CHECK_UINT_EQ(info.channels, 3);
    CHECK_UINT_EQ(info.bits, 8);
    CHECK_INT_EQ(info.format, GENCACHE_IMAGE_PNG);
    gencache_image_free(img);
}

TEST_CASE(digest_opaque_alpha_and_gray_fold)
{
    unsigned char rgb[4 * 3 * 3], rgba[4 * 3 * 4], l8[4 * 3];
    for (int i = 0; i < 12; i++) {
        unsigned char v = (unsigned char)(i * 21 + 3);
        l8[i] = v;
        rgb[3 * i] = rgb[3 * i + 1] = rgb[3 * i + 2] = v;
        rgba[4 * i] = rgba[4 * i + 1] = rgba[4 * i + 2] = v;
        rgba[4 * i + 3] = 255;
    }
    gencache_image *a, *b, *c;
    CHECK_OK(gencache_image_from_pixels(rgb, 4, 3, 12, GENCACHE_PIXEL_RGB8, &a));
    CHECK_OK(gencache_image_from_pixels(rgba, 4, 3, 16, GENCACHE_PIXEL_RGBA8, &b));
    CHECK_OK(gencache_image_from_pixels(l8, 4, 3, 4, GENCACHE_PIXEL_L8, &c));
    char da[GENCACHE_DIGEST_MAX], db[GENCACHE_DIGEST_MAX], dc[GENCACHE_DIGEST_MAX];
    digest_of(a, da);
    digest_of(b, db);
    digest_of(c, dc);
    CHECK_STR_EQ(da, dc);
    CHECK_STR_EQ(db, dc);
    gencache_image_free(a);
    gencache_image_free(b);

    /* One translucent pixel keeps the alpha channel: a different digest. */
    rgba[4 * 5 + 3] = 254;
    CHECK_OK(gencache_image_from_pixels(rgba, 4, 3, 16, GENCACHE_PIXEL_RGBA8, &b));
    digest_of(b, db);
    CHECK(strcmp(db, dc) != 0);
    gencache_image_free(b);
    /* One coloured pixel keeps the colour channels. */
    rgb[3 * 7 + 1] ^= 1;
    CHECK_OK(gencache_image_from_pixels(rgb, 4, 3, 12, GENCACHE_PIXEL_RGB8, &a));
    digest_of(a, da);
    CHECK(strcmp(da, dc) != 0);
    gencache_image_free(a);
    gencache_image_free(c);
}

TEST_CASE(digest_changes_with_any_sample)
{
    gencache_image *img = load(IM_DIR "wizard.jpg");
    char base[GENCACHE_DIGEST_MAX], d[GENCACHE_DIGEST_MAX];
    digest_of(img, base);
    size_t n = img->stride * img->height;
    size_t at[4] = {0, n / 3, n / 2 + 1, n - 1};
    for (int i = 0; i < 4; i++) {
        img->pixels[at[i]] ^= 1;
        digest_of(img, d);
        CHECK(strcmp(d, base) != 0);
        img->pixels[at[i]] ^= 1;
    }
    digest_of(img, d);
    CHECK_STR_EQ(d, base);
    gencache_image_free(img);
}

TEST_CASE(from_pixels_stride_and_args)
{
    unsigned char padded[2 * 8], packed[2 * 6];
    for (int y = 0; y < 2; y++)
        for (int x = 0; x < 8; x++) {
            padded[y * 8 + x] = (unsigned char)(x < 6 ? y * 6 + x + 1 : 0xEE);
            if (x < 6)
                packed[y * 6 + x] = (unsigned char)(y * 6 + x + 1);
        }
    gencache_image *a, *b;
    CHECK_OK(gencache_image_from_pixels(padded, 2, 2, 8, GENCACHE_PIXEL_RGB8, &a));
    CHECK_OK(gencache_image_from_pixels(packed, 2, 2, 6, GENCACHE_PIXEL_RGB8, &b));
    char da[GENCACHE_DIGEST_MAX], db[GENCACHE_DIGEST_MAX];
    digest_of(a, da);
    digest_of(b, db);
    CHECK_STR_EQ(da, db);
    gencache_image_free(a);
    gencache_image_free(b);
    gencache_image *c = (gencache_image *)1;
    CHECK_RC(gencache_image_from_pixels(packed, 2, 2, 5, GENCACHE_PIXEL_RGB8, &c), GENCACHE_EINVAL);
    CHECK(c == NULL);
    CHECK_RC(gencache_image_from_pixels(packed, 0, 2, 6, GENCACHE_PIXEL_RGB8, &c), GENCACHE_EINVAL);
    CHECK_RC(gencache_image_from_pixels(packed, 2, 2, 6, (gencache_pixel_format)2, &c),
             GENCACHE_EINVAL);
    CHECK_RC(gencache_image_from_pixels(NULL, 2, 2, 6, GENCACHE_PIXEL_RGB8, &c), GENCACHE_EINVAL);
    /* Wider than the default limits. */
    CHECK_RC(gencache_image_from_pixels(packed, 70000, 1, 70000 * 3, GENCACHE_PIXEL_L8, &c),
             GENCACHE_ELIMIT);
    gencache_image_free(NULL);
}

/* The sample layout each kind of file decodes to (docs/image.md). */
TEST_CASE(decode_layouts)
{
    static const struct {
        const char *name;
        uint32_t channels, bits;
        gencache_image_format format;
    } cases[] = {
        {"rgb.png", 3, 8, GENCACHE_IMAGE_PNG},
        {"rgba.png", 4, 8, GENCACHE_IMAGE_PNG},
        {"gray.png", 1, 8, GENCACHE_IMAGE_PNG},
        {"palette_trns.png", 4, 8, GENCACHE_IMAGE_PNG},
        {"bilevel.png", 1, 8, GENCACHE_IMAGE_PNG},
        {"gray16.png", 1, 16, GENCACHE_IMAGE_PNG},
        {"rgb.jpg", 3, 8, GENCACHE_IMAGE_JPEG},
        {"progressive.jpg", 3, 8, GENCACHE_IMAGE_JPEG},
        {"gray.jpg", 1, 8, GENCACHE_IMAGE_JPEG},
        {"lossless.webp", 3, 8, GENCACHE_IMAGE_WEBP},
        {"lossy_alpha.webp", 4, 8, GENCACHE_IMAGE_WEBP},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        gencache_image *img = load(corpus(cases[i].name));
        gencache_image_info info;
        CHECK_OK(gencache_image_info_get(img, &info));
        if (info.channels != cases[i].channels || info.bits != cases[i].bits ||
            info.format != cases[i].format)
            test_fail(__FILE__, __LINE__, "%s: %u channels %u bits format %d", cases[i].name,
                      info.channels, info.bits, (int)info.format);
        gencache_image_free(img);
    }
    /* A bilevel PNG widens to 0 and 255 only. */
    gencache_image *img = load(IM_DIR "patterns/vertical2.png");
    for (size_t i = 0; i < img->stride * img->height; i++)
        CHECK(img->pixels[i] == 0 || img->pixels[i] == 255);
    gencache_image_free(img);
}

TEST_CASE(decode_memory_equals_file)
{
    size_t n;
    unsigned char *buf = slurp(IM_DIR "examples.jpg", &n);
    gencache_image *a, *b = load(IM_DIR "examples.jpg");
    CHECK_OK(gencache_image_decode_memory(buf, n, NULL, &a));
    CHECK_UINT_EQ(a->stride * a->height, b->stride * b->height);
    CHECK(memcmp(a->pixels, b->pixels, a->stride * a->height) == 0);
    gencache_image_free(a);
    gencache_image_free(b);
    free(buf);
}

static void expect_refused(const unsigned char *data, size_t n, int want, const char *what)
{
    gencache_image *img = (gencache_image *)1;
    int rc = gencache_image_decode_memory(data, n, NULL, &img);
    if (rc != want || img != NULL)
        test_fail(__FILE__, __LINE__, "%s: got %s, want %s", what, gencache_errname(rc),
                  gencache_errname(want));
}

TEST_CASE(hostile_truncated_files)
{
    static const char *files[] = {IM_DIR "rose.png", IM_DIR "wizard.jpg", IM_DIR "examples.jpg",
                                  IM_DIR "objects.jpg"};
    for (size_t f = 0; f < 4; f++) {
        size_t n;
        unsigned char *buf = slurp(files[f], &n);
        /* Cut at the signature, inside the header, and inside the pixel data. */
        size_t cuts[] = {1, 5, 40, n / 3, n / 2, n - 40};
        for (size_t c = 0; c < sizeof cuts / sizeof cuts[0]; c++) {
            char what[256];
            snprintf(what, sizeof what, "%s cut to %zu bytes", files[f], cuts[c]);
            expect_refused(buf, cuts[c], GENCACHE_EPARSE, what);
        }
        free(buf);
    }
    size_t n;
    unsigned char *buf = slurp(corpus("lossless.webp"), &n);
    expect_refused(buf, n - 10, GENCACHE_EPARSE, "truncated webp");
    expect_refused(buf, 20, GENCACHE_EPARSE, "webp header only");
    free(buf);
}

TEST_CASE(hostile_garbage_and_corruption)
{
    unsigned char junk[512];
    uint32_t s = 12345;
    for (size_t i = 0; i < sizeof junk; i++) {
        s = s * 1103515245u + 12345u;
        junk[i] = (unsigned char)(s >> 16);
    }
    expect_refused(junk, sizeof junk, GENCACHE_EUNSUPPORTED, "random bytes");
    expect_refused((const unsigned char *)"", 0, GENCACHE_EPARSE, "empty input");
    /* A PNG signature followed by garbage, and a JPEG SOI followed by garbage. */
    memcpy(junk, "\x89PNG\r\n\x1a\n", 8);
    expect_refused(junk, sizeof junk, GENCACHE_EPARSE, "png signature + garbage");
    junk[0] = 0xFF, junk[1] = 0xD8, junk[2] = 0xFF;
    expect_refused(junk, sizeof junk, GENCACHE_EPARSE, "jpeg signature + garbage");
    /* Flipped bits inside the compressed data of a real PNG: the CRC catches it. */
    size_t n;
    unsigned char *buf = slurp(IM_DIR "rose.png", &n);
    buf[n / 2] ^= 0x55;
    expect_refused(buf, n, GENCACHE_EPARSE, "png with corrupt IDAT");
    free(buf);
}

/* A syntactically valid PNG header that claims 100000 x 100000 RGB pixels (30 GB decoded). */
TEST_CASE(hostile_huge_dimensions)
{
    size_t n;
    unsigned char *buf = slurp(corpus("huge_header.png"), &n);
    expect_refused(buf, n, GENCACHE_ELIMIT, "100000 x 100000 png");
    free(buf);
    /* Limits apply to real files too, and by their own fields. */
    gencache_image_limits lim;
    gencache_image_limits_init(&lim);
    lim.max_width = 100;
    gencache_image *img = (gencache_image *)1;
    CHECK_RC(gencache_image_decode_file(IM_DIR "wizard.jpg", &lim, &img), GENCACHE_ELIMIT);
    CHECK(img == NULL);
    gencache_image_limits_init(&lim);
    lim.max_pixels = 1000;
    CHECK_RC(gencache_image_decode_file(IM_DIR "rose.png", &lim, &img), GENCACHE_ELIMIT);
    gencache_image_limits_init(&lim);
    lim.max_bytes = 70 * 46 * 3 - 1;
    CHECK_RC(gencache_image_decode_file(IM_DIR "rose.png", &lim, &img), GENCACHE_ELIMIT);
    lim.max_bytes = 70 * 46 * 3;
    CHECK_OK(gencache_image_decode_file(IM_DIR "rose.png", &lim, &img));
    gencache_image_free(img);
    gencache_image_limits_init(&lim);
    lim.max_file_bytes = 1000;
    CHECK_RC(gencache_image_decode_file(IM_DIR "wizard.jpg", &lim, &img), GENCACHE_ELIMIT);
    gencache_image_limits_init(&lim);
    lim.max_height = 20;
    CHECK_RC(gencache_image_decode_file(corpus("lossless.webp"), &lim, &img), GENCACHE_OK);
    gencache_image_free(img);
    lim.max_height = 5;
    CHECK_RC(gencache_image_decode_file(corpus("lossless.webp"), &lim, &img), GENCACHE_ELIMIT);
    lim.struct_size = 4;
    CHECK_RC(gencache_image_decode_file(IM_DIR "rose.png", &lim, &img), GENCACHE_EINVAL);
}

/* Valid files in layouts the decoders refuse. */
TEST_CASE(unsupported_layouts)
{
    static const char *names[] = {"cmyk.jpg", "animated.webp"};
    for (size_t i = 0; i < 2; i++) {
        gencache_image *img = (gencache_image *)1;
        int rc = gencache_image_decode_file(corpus(names[i]), NULL, &img);
        if (rc != GENCACHE_EUNSUPPORTED || img != NULL)
            test_fail(__FILE__, __LINE__, "%s: %s", names[i], gencache_errname(rc));
    }
}

TEST_CASE(file_errors)
{
    gencache_image *img = (gencache_image *)1;
    char d[GENCACHE_DIGEST_MAX] = "x";
    CHECK_RC(gencache_image_decode_file("/nonexistent/file.png", NULL, &img), GENCACHE_EIO);
    CHECK(img == NULL);
    CHECK_RC(gencache_image_decode_file("/", NULL, &img), GENCACHE_EIO);
    CHECK_RC(gencache_image_digest_file("/nonexistent.png", d), GENCACHE_EIO);
    CHECK_STR_EQ(d, "");
    /* A text file: this test's own harness header. */
    char text[4096];
    const char *src = getenv("GENCACHE_SOURCE_DIR");
    snprintf(text, sizeof text, "%s/tests/unit/test.h", src ? src : ".");
    CHECK_RC(gencache_image_digest_file(text, d), GENCACHE_EUNSUPPORTED);
    CHECK_RC(gencache_image_digest_file(NULL, d), GENCACHE_EINVAL);
    CHECK_RC(gencache_image_decode_file(NULL, NULL, &img), GENCACHE_EINVAL);
    CHECK_RC(gencache_image_digest(NULL, d), GENCACHE_EINVAL);
}

/* Values printed by Python's imagehash algorithms (Pillow 9.4 + scipy) for the same files. */
TEST_CASE(hash_reference_values)
{
    static const struct {
        const char *file;
        const char *hex[6]; /* ahash 64, 256; dhash 64, 256; phash 64, 256 */
    } cases[] = {
        {IM_DIR "rose.png",
         {"0105437f7d016070", "010000230033007f201f3c6f118f33ef3deb68d721cb080336033c013e003f00",
          "713d9797916185c1", "9e263f263362d7d6cb5e62db651b671ae31ad1d6d3db12db6c13682768a37c63",
          "a239461fc53b8de1", "a2753947465a1f83c5ea2bf88d2fe13c9c6717201c8257a7d8fc62334a9c3e33"}},
        {IM_DIR "wizard.jpg",
         {"ffdfcf878185c7ff", "ffffffffe7fff0fff1ffe0ffe119e01be06fe02fe023e06be02bf66fffffffff",
          "403e3d353b190f02", "0d0032001d8044f127f84d9b4e734e634fcb4acb45cb02cb84cbaccb0e0820c1",
          "b88cc773ccc6f181", "b83d8cdac7d23327cccec6d9d1f6813830e26cf23625993bcb39a64eccc642c1"}},
        /* Symmetric content: many DCT coefficients are zero up to rounding. */
        {IM_DIR "patterns/vertical2.png",
         {"5555555555555555", "4f0d4f0d4f0d4f0d4f0d4f0d4f0d4f0d4f0d4f0d4f0d4f0d4f0d4f0d4f0d4f0d",
          "9191919191919191", "8101810181018101810181018101810181018101810181018101810181018101",
          "8000000000000000", "8000000000000000000000000000000000000000000000000000000000000000"}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        gencache_image *img = load(cases[i].file);
        for (int k = 0; k < 6; k++) {
            char hex[GENCACHE_HASH_HEX_MAX];
            unsigned char raw[GENCACHE_HASH_MAX_BYTES];
            unsigned bits = k % 2 ? 256 : 64;
            CHECK_OK(gencache_image_hash(img, (gencache_hash_algo)(k / 2), bits, raw, hex));
            if (strcmp(hex, cases[i].hex[k]) != 0)
                test_fail(__FILE__, __LINE__, "%s algo %d bits %u: %s, want %s", cases[i].file,
                          k / 2, bits, hex, cases[i].hex[k]);
            char b[3];
            snprintf(b, sizeof b, "%02x", raw[0]);
            CHECK(memcmp(b, hex, 2) == 0);
        }
        uint64_t v;
        CHECK_OK(gencache_image_hash64(img, GENCACHE_HASH_PHASH, &v));
        CHECK_UINT_EQ(v, strtoull(cases[i].hex[4], NULL, 16));
        gencache_image_free(img);
    }
}

TEST_CASE(hash_args)
{
    gencache_image *img = load(IM_DIR "rose.png");
    char hex[GENCACHE_HASH_HEX_MAX] = "x";
    CHECK_RC(gencache_image_hash(img, GENCACHE_HASH_PHASH, 128, NULL, hex), GENCACHE_EINVAL);
    CHECK_STR_EQ(hex, "");
    CHECK_RC(gencache_image_hash(img, (gencache_hash_algo)7, 64, NULL, hex), GENCACHE_EINVAL);
    CHECK_RC(gencache_image_hash(NULL, GENCACHE_HASH_PHASH, 64, NULL, hex), GENCACHE_EINVAL);
    CHECK_RC(gencache_image_hash64(img, GENCACHE_HASH_PHASH, NULL), GENCACHE_EINVAL);
    gencache_image_free(img);
}

/* Tiny images take the upscaling paths of the resize (1 x 1 up to 64 x 64). */
TEST_CASE(hash_tiny_images)
{
    unsigned char px[3 * 3 * 3];
    for (int i = 0; i < 27; i++)
        px[i] = (unsigned char)(i * 9);
    for (uint32_t w = 1; w <= 3; w++)
        for (uint32_t h = 1; h <= 3; h++) {
            gencache_image *img;
            CHECK_OK(gencache_image_from_pixels(px, w, h, w * 3, GENCACHE_PIXEL_RGB8, &img));
            for (int a = 0; a < 3; a++) {
                char hex[GENCACHE_HASH_HEX_MAX];
                CHECK_OK(gencache_image_hash(img, (gencache_hash_algo)a, 256, NULL, hex));
                CHECK_UINT_EQ(strlen(hex), 64);
            }
            gencache_image_free(img);
        }
}

TEST_CASE(match_guard)
{
    gencache_image *a = load(IM_DIR "wizard.jpg"), *b = load(IM_DIR "wizard.png");
    gencache_image_sig sa, sb;
    CHECK_OK(gencache_image_sig_get(a, &sa));
    CHECK_OK(gencache_image_sig_get(b, &sb));
    unsigned d = 99;
    /* wizard.png is the same drawing at 1104 x 1468, with transparency. */
    int rc = gencache_image_match(&sa, &sa, NULL, &d);
    CHECK_OK(rc);
    CHECK_UINT_EQ(d, 0);
    gencache_match_options o;
    gencache_match_options_init(&o);
    /* Same hashes, different aspect ratio: refused. */
    gencache_image_sig wide = sa;
    wide.width = sa.width * 2;
    CHECK_RC(gencache_image_match(&sa, &wide, &o, &d), GENCACHE_ENOTFOUND);
    o.aspect_tolerance = 1.5;
    CHECK_OK(gencache_image_match(&sa, &wide, &o, &d));
    /* pHash within radius but dHash too far: refused, the distance still reported. */
    gencache_match_options_init(&o);
    gencache_image_sig other = sa;
    other.phash ^= 0x7;
    other.dhash ^= 0xFFFF;
    CHECK_RC(gencache_image_match(&sa, &other, &o, &d), GENCACHE_ENOTFOUND);
    CHECK_UINT_EQ(d, 3);
    o.dhash_radius = 16;
    /* Both radii pass now (3 and 16 bits), their sum (19) does not; 0 lifts that limit. */
    CHECK_RC(gencache_image_match(&sa, &other, &o, &d), GENCACHE_ENOTFOUND);
    o.combined_radius = 19;
    CHECK_OK(gencache_image_match(&sa, &other, &o, &d));
    o.combined_radius = 18;
    CHECK_RC(gencache_image_match(&sa, &other, &o, &d), GENCACHE_ENOTFOUND);
    o.combined_radius = 0;
    CHECK_OK(gencache_image_match(&sa, &other, &o, &d));
    o.phash_radius = 2;
    CHECK_RC(gencache_image_match(&sa, &other, &o, &d), GENCACHE_ENOTFOUND);
    /* Featureless images never match, not even themselves. */
    gencache_image_sig flat = sa;
    flat.phash = 0x8000000000000001ull;
    CHECK_RC(gencache_image_match(&flat, &flat, NULL, &d), GENCACHE_ENOTFOUND);
    o.struct_size = 1;
    CHECK_RC(gencache_image_match(&sa, &sb, &o, &d), GENCACHE_EINVAL);
    CHECK_RC(gencache_image_match(NULL, &sb, NULL, &d), GENCACHE_EINVAL);
    gencache_image_free(a);
    gencache_image_free(b);
}

/* The signature of a real image file. */
static gencache_image_sig sig_of(const char *path)
{
    gencache_image *img = load(path);
    gencache_image_sig s;
    CHECK_OK(gencache_image_sig_get(img, &s));
    gencache_image_free(img);
    return s;
}

/* A solid colour and a black image: the hashes nearly agree, the guard refuses. */
TEST_CASE(match_flat_images_refused)
{
    gencache_image_sig sa = sig_of(IM_DIR "navy.png"), sb = sig_of(IM_DIR "black.png");
    unsigned d;
    CHECK_RC(gencache_image_match(&sa, &sb, NULL, &d), GENCACHE_ENOTFOUND);
    CHECK_UINT_LE(d, 8);
}

/* Two different dither patterns of the same size: 7 pHash bits and 9 dHash bits apart, each
 * within its own radius, but a benign variant seldom moves both hashes that far at once. The
 * combined radius tells them apart; without it the guard takes one for the other. */
TEST_CASE(match_distinct_patterns_refused)
{
    gencache_image_sig sa = sig_of(IM_DIR "patterns/gray60.png");
    gencache_image_sig sb = sig_of(IM_DIR "patterns/gray85.png");
    gencache_match_options o;
    gencache_match_options_init(&o);
    unsigned pd = (unsigned)__builtin_popcountll(sa.phash ^ sb.phash);
    unsigned dd = (unsigned)__builtin_popcountll(sa.dhash ^ sb.dhash);
    CHECK_UINT_LE(pd, o.phash_radius);
    CHECK_UINT_LE(dd, o.dhash_radius);
    CHECK_UINT_LE(o.combined_radius + 1, pd + dd);
    unsigned d = 99;
    CHECK_RC(gencache_image_match(&sa, &sb, NULL, &d), GENCACHE_ENOTFOUND);
    CHECK_UINT_EQ(d, pd);
    o.combined_radius = 0;
    CHECK_OK(gencache_image_match(&sa, &sb, &o, &d));
    /* Each still matches itself under the default guard. */
    CHECK_OK(gencache_image_match(&sa, &sa, NULL, &d));
    CHECK_UINT_EQ(d, 0);
}

/* The defaults as documented in include/gencache/image.h and docs/config.md. */
TEST_CASE(match_options_defaults)
{
    gencache_match_options o;
    memset(&o, 0xAB, sizeof o);
    gencache_match_options_init(&o);
    CHECK_UINT_EQ(o.struct_size, sizeof o);
    CHECK_UINT_EQ(o.phash_radius, 10);
    CHECK_UINT_EQ(o.dhash_radius, 12);
    CHECK_UINT_EQ(o.min_detail, 8);
    CHECK_UINT_EQ(o.combined_radius, 14);
    CHECK(o.aspect_tolerance == 0.02);
    gencache_match_options_init(NULL); /* does nothing */
}

/* Every hash of every layout, with each set of vector kernels and without: the same bits. */
TEST_CASE(simd_matches_scalar)
{
    static const char *files[] = {IM_DIR "examples.jpg", IM_DIR "wizard.png", IM_DIR "objects.jpg",
                                  IM_DIR "piechart.png", IM_DIR "patterns/vertical2.png"};
    static const char *corpus_files[] = {"gray16.png", "palette_trns.png", "rgba.png"};
    gencache_image *imgs[16];
    size_t n = 0;
    for (size_t i = 0; i < 5; i++)
        imgs[n++] = load(files[i]);
    for (size_t i = 0; i < 3; i++)
        imgs[n++] = load(corpus(corpus_files[i]));
    /* Random pixels at widths around the vector sizes, in each 8-bit layout. */
    static const uint32_t widths[] = {15, 16, 17, 33, 100, 257};
    uint32_t seed = 99;
    for (size_t i = 0; i < 6; i++) {
        uint32_t w = widths[i], h = 40 + (uint32_t)i * 7;
        unsigned char *px = malloc((size_t)w * h * 4);
        for (size_t j = 0; j < (size_t)w * h * 4; j++) {
            seed = seed * 1664525u + 1013904223u;
            px[j] = (unsigned char)(seed >> 24);
        }
        gencache_pixel_format f = i % 3 == 0   ? GENCACHE_PIXEL_RGB8
                                  : i % 3 == 1 ? GENCACHE_PIXEL_RGBA8
                                               : GENCACHE_PIXEL_L8;
        CHECK_OK(gencache_image_from_pixels(px, w, h, (size_t)w * f, f, &imgs[n++]));
        free(px);
    }
    int max = gencache__simd_max_level();
    for (size_t i = 0; i < n; i++)
        for (int a = 0; a < 3; a++)
            for (unsigned bits = 64; bits <= 256; bits += 192) {
                char on[GENCACHE_HASH_HEX_MAX], off[GENCACHE_HASH_HEX_MAX];
                gencache__simd_enable(0);
                CHECK_OK(gencache_image_hash(imgs[i], (gencache_hash_algo)a, bits, NULL, off));
                /* Every vector level this CPU runs (AVX2, AVX-512). */
                for (int level = GENCACHE__SIMD_AVX2; level <= max; level++) {
                    gencache__simd_set_level(level);
                    CHECK_INT_EQ(gencache__simd_level(), level);
                    CHECK_OK(gencache_image_hash(imgs[i], (gencache_hash_algo)a, bits, NULL, on));
                    if (strcmp(on, off) != 0)
                        test_fail(__FILE__, __LINE__,
                                  "image %zu algo %d bits %u: level %d %s, scalar %s", i, a, bits,
                                  level, on, off);
                }
                gencache__simd_enable(1);
            }
    for (size_t i = 0; i < n; i++)
        gencache_image_free(imgs[i]);
}

typedef struct hash_job {
    gencache_image *img;
    char want[GENCACHE_HASH_HEX_MAX];
    int failures;
} hash_job;

static void *hash_worker(void *p)
{
    hash_job *jobs = p;
    for (int round = 0; round < 20; round++)
        for (int j = 0; j < 4; j++) {
            char hex[GENCACHE_HASH_HEX_MAX];
            if (gencache_image_hash(jobs[j].img, GENCACHE_HASH_PHASH, 256, NULL, hex) != 0 ||
                strcmp(hex, jobs[j].want) != 0)
                __atomic_add_fetch(&jobs[j].failures, 1, __ATOMIC_RELAXED);
        }
    return NULL;
}

/* Hashing shares cached resize coefficients between threads: results stay exact. */
TEST_CASE(hash_concurrent)
{
    static const char *files[] = {IM_DIR "rose.png", IM_DIR "wizard.jpg", IM_DIR "frame.jpg",
                                  IM_DIR "sprite.jpg"};
    hash_job jobs[4];
    memset(jobs, 0, sizeof jobs);
    for (int j = 0; j < 4; j++) {
        jobs[j].img = load(files[j]);
        CHECK_OK(gencache_image_hash(jobs[j].img, GENCACHE_HASH_PHASH, 256, NULL, jobs[j].want));
    }
    pthread_t th[4];
    for (int t = 0; t < 4; t++)
        CHECK(pthread_create(&th[t], NULL, hash_worker, jobs) == 0);
    for (int t = 0; t < 4; t++)
        pthread_join(th[t], NULL);
    for (int j = 0; j < 4; j++) {
        CHECK_INT_EQ(jobs[j].failures, 0);
        gencache_image_free(jobs[j].img);
    }
}
