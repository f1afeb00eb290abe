/*
 * test_image_simd.c: the vector kernels of src/image/ (simd_avx2.c, simd_avx512.c) against the
 * scalar code of luma.c and resize.c, kernel by kernel, on the exact integers they produce
 * rather than on hashes (a thumbnail pixel off by one rarely changes a hash): luminance rows of
 * every layout and many widths, horizontal passes of random and extreme rows for many resize
 * ratios (both single-row and two-row kernels), and vertical passes. A level this CPU lacks is
 * skipped with a message.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image/axis_cache.h"
#include "image/image.h"
#include "image/resize.h"
#include "image/simd.h"
#include "test.h"

#define IM_DIR "/usr/share/doc/imagemagick-6-common/html/images/"

static uint32_t seed = 12345;

static uint32_t rnd(void)
{
    seed = seed * 1664525u + 1013904223u;
    return seed >> 8;
}

static int have(int level)
{
    if (gencache__simd_max_level() >= level)
        return 1;
    printf("this CPU lacks the %s kernels: nothing to compare\n",
           level == GENCACHE__SIMD_AVX2 ? "AVX2" : "AVX-512");
    return 0;
}

static void luma16(int level, const gencache_image *img, uint32_t y, int16_t *out, uint8_t *s)
{
    if (level == GENCACHE__SIMD_AVX512)
        gencache__simd512_luma_row16(img, y, out, s);
    else
        gencache__simd_luma_row16(img, y, out, s);
}

/* Every row of img through the level's luminance kernel equals the scalar row. */
static void check_luma(int level, const gencache_image *img, const char *what)
{
    uint32_t w = img->width;
    uint8_t *want = malloc(w), *scratch = malloc(w);
    int16_t *got = aligned_alloc(64, (((size_t)w + 32 + 31) & ~(size_t)31) * sizeof *got);
    CHECK(want && scratch && got);
    for (uint32_t y = 0; y < img->height; y++) {
        gencache__image_luma_row(img, y, want);
        luma16(level, img, y, got, scratch);
        for (uint32_t x = 0; x < w; x++)
            if (got[x] != want[x])
                test_fail(__FILE__, __LINE__, "%s level %d: %ux%u row %u px %u: %d, want %u", what,
                          level, w, img->height, y, x, got[x], want[x]);
    }
    free(want);
    free(scratch);
    free(got);
}

static void luma_random(int level)
{
    static const gencache_pixel_format fmts[] = {GENCACHE_PIXEL_RGB8, GENCACHE_PIXEL_RGBA8,
                                                 GENCACHE_PIXEL_L8};
    static const uint32_t widths[] = {1,  15, 16, 17, 31,  32,  33,  47,
                                      63, 64, 65, 95, 100, 257, 1024};
    for (size_t f = 0; f < 3; f++)
        for (size_t i = 0; i < sizeof widths / sizeof widths[0]; i++) {
            uint32_t w = widths[i], h = 3;
            size_t stride = (size_t)w * fmts[f] + (i % 3); /* padded rows too */
            unsigned char *px = malloc(stride * h);
            for (size_t j = 0; j < stride * h; j++)
                px[j] = (unsigned char)rnd();
            /* The extremes: white and black pixels, where the rounding ends. */
            memset(px, 255, stride < 96 ? stride : 96);
            gencache_image *img;
            CHECK_OK(gencache_image_from_pixels(px, w, h, stride, fmts[f], &img));
            check_luma(level, img, "random");
            gencache_image_free(img);
            free(px);
        }
}

static void luma_files(int level)
{
    static const char *files[] = {IM_DIR "wizard.png", IM_DIR "rose.png", IM_DIR "objects.jpg"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        gencache_image *img;
        CHECK_OK(gencache_image_decode_file(files[i], NULL, &img));
        check_luma(level, img, files[i]);
        gencache_image_free(img);
    }
}

TEST_CASE(luma_avx2_matches_scalar)
{
    if (!have(GENCACHE__SIMD_AVX2))
        return;
    luma_random(GENCACHE__SIMD_AVX2);
    luma_files(GENCACHE__SIMD_AVX2);
}

TEST_CASE(luma_avx512_matches_scalar)
{
    if (!have(GENCACHE__SIMD_AVX512))
        return;
    luma_random(GENCACHE__SIMD_AVX512);
    luma_files(GENCACHE__SIMD_AVX512);
}

/* Row contents for the horizontal pass: random, flat extremes, and steps, which drive sums to
 * the clamps and to the rounding boundaries where the hi/lo split must fall back. */
static void fill_row(uint8_t *row, uint32_t n, int kind)
{
    for (uint32_t x = 0; x < n; x++) {
        switch (kind) {
        case 0:
            row[x] = (uint8_t)rnd();
            break;
        case 1:
            row[x] = 255;
            break;
        case 2:
            row[x] = (uint8_t)((x / 7) % 2 ? 255 : 0);
            break;
        default:
            row[x] = (uint8_t)(x * 37 + kind);
            break;
        }
    }
}

/* The level's horizontal kernels (one row, and two rows (AVX2) or four (AVX-512)) against
 * gencache__resize_row(). */
static void check_horizontal(int level, uint32_t in, uint32_t out)
{
    gencache__axis *ax;
    CHECK_OK(gencache__axis_get(in, out, level, &ax));
    if (!ax->has_hp) { /* an extreme ratio: the scalar pass is used, nothing to compare */
        gencache__axis_put(ax);
        return;
    }
    size_t r16 = ((size_t)in + (size_t)ax->hp.kpad + 32 + 31) & ~(size_t)31;
    int16_t *rows = aligned_alloc(64, 4 * r16 * sizeof *rows);
    uint8_t *src = malloc(4 * (size_t)in), *want = malloc(4 * (size_t)out),
            *got = malloc(4 * (size_t)out);
    CHECK(rows && src && want && got);
    for (int kind = 0; kind < 5; kind++) {
        memset(rows, 0, 4 * r16 * sizeof *rows);
        for (uint32_t r = 0; r < 4; r++) {
            fill_row(src + r * in, in, (kind + (int)r) % 5);
            for (uint32_t x = 0; x < in; x++)
                rows[r * r16 + ax->hp.bias + x] = src[r * in + x];
            gencache__resize_row(&ax->c, src + r * in, want + r * out);
        }
        if (level == GENCACHE__SIMD_AVX512) {
            gencache__simd512_resize_row(&ax->hp, rows, got);
            CHECK_MEM_EQ(got, want, out);
            gencache__simd512_resize_rows4(&ax->hp, rows, r16, got, out, NULL, 0);
        } else {
            gencache__simd_resize_row(&ax->hp, rows, got);
            CHECK_MEM_EQ(got, want, out);
            gencache__simd_resize_rows2(&ax->hp, rows, rows + r16, got, got + out);
        }
        size_t n = level == GENCACHE__SIMD_AVX512 ? 4 : 2;
        if (memcmp(got, want, n * out) != 0)
            test_fail(__FILE__, __LINE__, "level %d %u -> %u, rows kind %d: %zu-row pass differs",
                      level, in, out, kind, n);
    }
    free(rows);
    free(src);
    free(want);
    free(got);
    gencache__axis_put(ax);
}

static void horizontal(int level)
{
    static const uint32_t sizes[][2] = {{1024, 32}, {1024, 8},  {1024, 9}, {1024, 64}, {1000, 33},
                                        {640, 17},  {257, 16},  {100, 32}, {33, 9},    {17, 16},
                                        {16, 64},   {5, 32},    {1, 8},    {4096, 32}, {1104, 32},
                                        {1468, 64}, {3000, 16}, {70, 9},   {48, 47},   {2, 3}};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        check_horizontal(level, sizes[i][0], sizes[i][1]);
    for (int i = 0; i < 40; i++)
        check_horizontal(level, 1 + rnd() % 2000, 1 + rnd() % 64);
}

TEST_CASE(horizontal_avx2_matches_scalar)
{
    if (have(GENCACHE__SIMD_AVX2))
        horizontal(GENCACHE__SIMD_AVX2);
}

TEST_CASE(horizontal_avx512_matches_scalar)
{
    if (have(GENCACHE__SIMD_AVX512))
        horizontal(GENCACHE__SIMD_AVX512);
}

/* The vertical kernels against gencache__resize_vertical(), on planes of several widths. */
static void vertical(int level)
{
    static const uint32_t cases[][3] = {{1024, 32, 32}, {1024, 8, 9},  {300, 64, 64},
                                        {40, 9, 17},    {16, 33, 15},  {7, 3, 1},
                                        {1000, 33, 70}, {257, 16, 31}, {2, 3, 33}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint32_t in = cases[i][0], out = cases[i][1], width = cases[i][2];
        gencache__resize_coeffs c;
        CHECK_OK(gencache__resize_coeffs_init(&c, in, out));
        for (int kind = 0; kind < 3; kind++) {
            uint8_t *plane = malloc((size_t)in * width);
            uint8_t *want = malloc((size_t)out * width), *got = malloc((size_t)out * width);
            for (uint32_t y = 0; y < in; y++)
                fill_row(plane + (size_t)y * width, width, kind == 2 ? (int)(y % 2) + 1 : kind);
            gencache__resize_vertical(&c, plane, width, 0, want);
            if (level == GENCACHE__SIMD_AVX512)
                gencache__simd512_resize_vertical(&c, plane, width, 0, got);
            else
                gencache__simd_resize_vertical(&c, plane, width, 0, got);
            if (memcmp(got, want, (size_t)out * width) != 0)
                test_fail(__FILE__, __LINE__, "level %d vertical %u -> %u, width %u, kind %d",
                          level, in, out, width, kind);
            if (level == GENCACHE__SIMD_AVX512) {
                /* The split form, on the plane from its first row and from a later one. */
                gencache__axis *ax;
                CHECK_OK(gencache__axis_get(in, out, level, &ax));
                if (ax->has_hp) {
                    uint32_t first = (uint32_t)c.bounds[0];
                    memset(got, 0xA5, (size_t)out * width);
                    gencache__simd512_resize_vertical_split(&ax->hp, plane + (size_t)first * width,
                                                            width, first, got);
                    if (memcmp(got, want, (size_t)out * width) != 0)
                        test_fail(__FILE__, __LINE__, "split vertical %u -> %u, width %u, kind %d",
                                  in, out, width, kind);
                }
                gencache__axis_put(ax);
            }
            free(plane);
            free(want);
            free(got);
        }
        gencache__resize_coeffs_free(&c);
    }
}

TEST_CASE(vertical_matches_scalar)
{
    if (have(GENCACHE__SIMD_AVX2))
        vertical(GENCACHE__SIMD_AVX2);
    if (have(GENCACHE__SIMD_AVX512))
        vertical(GENCACHE__SIMD_AVX512);
}

/* The level follows set_level() within what the CPU runs, and enable(0) turns the kernels off. */
TEST_CASE(level_selection)
{
    int max = gencache__simd_max_level();
    CHECK(max >= GENCACHE__SIMD_SCALAR && max <= GENCACHE__SIMD_AVX512);
    gencache__simd_set_level(GENCACHE__SIMD_AVX512 + 5);
    CHECK_INT_EQ(gencache__simd_level(), max);
    gencache__simd_set_level(-3);
    CHECK_INT_EQ(gencache__simd_level(), GENCACHE__SIMD_SCALAR);
    CHECK_INT_EQ(gencache__simd_available(), 0);
    gencache__simd_enable(1);
    CHECK_INT_EQ(gencache__simd_available(), max >= GENCACHE__SIMD_AVX2);
    gencache__simd_enable(0);
    CHECK_INT_EQ(gencache__simd_level(), GENCACHE__SIMD_SCALAR);
    gencache__simd_enable(1);
}
