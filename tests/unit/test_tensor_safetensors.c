/*
 * test_tensor_safetensors.c: safetensors files written by gencache read back identically, files
 * built by hand after the format's specification parse, and hostile files (truncated, lying
 * about their header length, overlapping or gapped offsets, unknown dtypes, shapes that do not
 * match their bytes, oversized headers, non-JSON) are refused with a clear error and no crash.
 */
#include <stdlib.h>
#include <unistd.h>

#include "test.h"

typedef struct membuf {
    unsigned char *p;
    size_t n, cap;
    int fail_after; /* > 0: the n-th write fails */
} membuf;

static int mem_write(void *ud, const void *data, size_t size)
{
    membuf *m = ud;
    if (m->fail_after > 0 && --m->fail_after == 0)
        return GENCACHE_EIO;
    if (m->n + size > m->cap) {
        m->cap = (m->n + size) * 2 + 64;
        m->p = realloc(m->p, m->cap);
    }
    memcpy(m->p + m->n, data, size);
    m->n += size;
    return GENCACHE_OK;
}

/* Builds a file from a header string and `data_len` bytes of data (0, 1, 2, ...). */
static unsigned char *make_file(const char *hdr, size_t data_len, size_t *size)
{
    size_t h = strlen(hdr);
    *size = 8 + h + data_len;
    unsigned char *p = malloc(*size + 1);
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)((uint64_t)h >> (8 * i));
    memcpy(p + 8, hdr, h);
    for (size_t i = 0; i < data_len; i++)
        p[8 + h + i] = (unsigned char)i;
    return p;
}

static int parse_str(const char *hdr, size_t data_len, char *err, size_t errlen)
{
    size_t size;
    unsigned char *p = make_file(hdr, data_len, &size);
    gencache_safetensors_options o;
    gencache_safetensors_options_init(&o);
    o.errbuf = err;
    o.errbuf_size = errlen;
    if (err)
        err[0] = '\0';
    gencache_safetensors *st = (gencache_safetensors *)1;
    int rc = gencache_safetensors_parse(p, size, &o, &st);
    if (rc != GENCACHE_OK)
        CHECK(st == NULL);
    gencache_safetensors_close(st);
    free(p);
    return rc;
}

TEST_CASE(handmade_file_parses)
{
    /* Written by hand after the specification: two tensors, metadata, padding spaces. */
    const char *hdr = "{\"__metadata__\":{\"format\":\"pt\"},"
                      "\"b\":{\"dtype\":\"F16\",\"shape\":[2,3],\"data_offsets\":[8,20]},"
                      "\"a\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[0,8]}}   ";
    size_t size;
    unsigned char *p = make_file(hdr, 20, &size);
    gencache_safetensors *st;
    CHECK_OK(gencache_safetensors_parse(p, size, NULL, &st));
    CHECK_UINT_EQ(gencache_safetensors_count(st), 2);
    gencache_safetensors_tensor t;
    CHECK_OK(gencache_safetensors_get(st, 0, &t)); /* in data order */
    CHECK_STR_EQ(t.name, "a");
    CHECK_INT_EQ(t.dtype, GENCACHE_DTYPE_I64);
    CHECK_UINT_EQ(t.ndim, 0);
    CHECK_UINT_EQ(t.size, 8);
    CHECK_OK(gencache_safetensors_find(st, "b", &t));
    CHECK_INT_EQ(t.dtype, GENCACHE_DTYPE_F16);
    CHECK_UINT_EQ(t.ndim, 2);
    CHECK_INT_EQ(t.shape[1], 3);
    CHECK_UINT_EQ(t.size, 12);
    CHECK_UINT_EQ(((const unsigned char *)t.data)[0], 8);
    CHECK(t.data == p + 8 + strlen(hdr) + 8);
    CHECK_RC(gencache_safetensors_find(st, "c", &t), GENCACHE_ENOTFOUND);
    CHECK_RC(gencache_safetensors_get(st, 2, &t), GENCACHE_EINVAL);
    CHECK_STR_EQ(gencache_safetensors_metadata(st, "format"), "pt");
    CHECK(gencache_safetensors_metadata(st, "other") == NULL);
    gencache_safetensors_close(st);
    free(p);
    /* An empty file list is a valid file. */
    CHECK_OK(parse_str("{}", 0, NULL, 0));
}

TEST_CASE(write_read_round_trip)
{
    static const gencache_dtype dts[] = {
        GENCACHE_DTYPE_F32, GENCACHE_DTYPE_F16, GENCACHE_DTYPE_BF16, GENCACHE_DTYPE_I8,
        GENCACHE_DTYPE_U8,  GENCACHE_DTYPE_I32, GENCACHE_DTYPE_I64};
    gencache_safetensors_tensor t[9];
    unsigned char *bufs[9];
    char names[9][80];
    memset(t, 0, sizeof t);
    for (int i = 0; i < 7; i++) {
        snprintf(names[i], sizeof names[i], "image_latent/%064x", i * 7919 + 1);
        t[i].name = names[i];
        t[i].dtype = dts[i];
        t[i].ndim = (uint32_t)(i % 4 + 1);
        for (uint32_t d = 0; d < t[i].ndim; d++)
            t[i].shape[d] = (int64_t)(d + i + 1);
        uint64_t n;
        CHECK_OK(gencache_tensor_numel(t[i].ndim, t[i].shape, &n));
        t[i].size = n * gencache_dtype_size(dts[i]);
        bufs[i] = malloc(t[i].size + 1);
        for (uint64_t b = 0; b < t[i].size; b++)
            bufs[i][b] = (unsigned char)(b * 31 + (uint64_t)i);
        t[i].data = bufs[i];
    }
    /* A scalar and an empty tensor, and a name with characters JSON must escape. */
    int64_t one = 42;
    t[7] = (gencache_safetensors_tensor){.name = "scal\"ar\\\n\xc3\xa9",
                                         .dtype = GENCACHE_DTYPE_I64,
                                         .ndim = 0,
                                         .data = &one,
                                         .size = 8};
    t[8] = (gencache_safetensors_tensor){.name = "empty",
                                         .dtype = GENCACHE_DTYPE_F32,
                                         .ndim = 2,
                                         .shape = {0, 5},
                                         .data = NULL,
                                         .size = 0};
    const char *meta[] = {"format", "pt", "source", "gencache"};
    membuf m = {0};
    CHECK_OK(gencache_safetensors_write_to(mem_write, &m, t, 9, meta, 2));
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = (hlen << 8) | m.p[i];
    CHECK_UINT_EQ((8 + hlen) % 8, 0); /* data starts 8-byte aligned */
    CHECK(m.p[8] == '{');
    gencache_safetensors *st;
    CHECK_OK(gencache_safetensors_parse(m.p, m.n, NULL, &st));
    CHECK_UINT_EQ(gencache_safetensors_count(st), 9);
    for (int i = 0; i < 9; i++) {
        gencache_safetensors_tensor r;
        CHECK_OK(gencache_safetensors_get(st, (size_t)i, &r));
        CHECK_STR_EQ(r.name, t[i].name);
        CHECK_INT_EQ(r.dtype, t[i].dtype);
        CHECK_UINT_EQ(r.ndim, t[i].ndim);
        for (uint32_t d = 0; d < r.ndim; d++)
            CHECK_INT_EQ(r.shape[d], t[i].shape[d]);
        CHECK_UINT_EQ(r.size, t[i].size);
        CHECK_MEM_EQ(r.data, t[i].data, r.size);
    }
    CHECK_STR_EQ(gencache_safetensors_metadata(st, "source"), "gencache");
    gencache_safetensors_close(st);

    /* Through a file, renamed into place. */
    char path[] = "/tmp/gencache-st-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    CHECK_OK(gencache_safetensors_write(path, t, 9, NULL, 0));
    CHECK_OK(gencache_safetensors_open(path, NULL, &st));
    gencache_safetensors_tensor r;
    CHECK_OK(gencache_safetensors_find(st, names[3], &r));
    CHECK_MEM_EQ(r.data, bufs[3], r.size);
    CHECK(gencache_safetensors_metadata(st, "format") == NULL);
    gencache_safetensors_close(st);
    unlink(path);
    CHECK_RC(gencache_safetensors_open(path, NULL, &st), GENCACHE_ENOTFOUND);
    CHECK_RC(gencache_safetensors_write("/nonexistent-dir/x.safetensors", t, 9, NULL, 0),
             GENCACHE_EIO);

    /* A failing sink stops the write with its error. */
    for (int k = 1; k <= 4; k++) {
        membuf f = {.fail_after = k};
        CHECK_RC(gencache_safetensors_write_to(mem_write, &f, t, 9, meta, 2), GENCACHE_EIO);
        free(f.p);
    }
    free(m.p);
    for (int i = 0; i < 7; i++)
        free(bufs[i]);
}

TEST_CASE(writer_refuses_bad_input)
{
    uint32_t v[4] = {0};
    gencache_safetensors_tensor t[2] = {
        {.name = "x", .dtype = GENCACHE_DTYPE_F32, .ndim = 1, .shape = {4}, .data = v, .size = 16},
        {.name = "y", .dtype = GENCACHE_DTYPE_F32, .ndim = 1, .shape = {4}, .data = v, .size = 16},
    };
    membuf m = {0};
    CHECK_OK(gencache_safetensors_write_to(mem_write, &m, t, 2, NULL, 0));
    free(m.p);
    struct {
        const char *what;
        gencache_safetensors_tensor t;
    } bad[] = {
        {"size",
         {.name = "y",
          .dtype = GENCACHE_DTYPE_F32,
          .ndim = 1,
          .shape = {4},
          .data = v,
          .size = 15}},
        {"dup",
         {.name = "x",
          .dtype = GENCACHE_DTYPE_F32,
          .ndim = 1,
          .shape = {4},
          .data = v,
          .size = 16}},
        {"empty",
         {.name = "", .dtype = GENCACHE_DTYPE_F32, .ndim = 1, .shape = {4}, .data = v, .size = 16}},
        {"meta",
         {.name = "__metadata__",
          .dtype = GENCACHE_DTYPE_F32,
          .ndim = 1,
          .shape = {4},
          .data = v,
          .size = 16}},
        {"utf8",
         {.name = "\xff\xfe",
          .dtype = GENCACHE_DTYPE_F32,
          .ndim = 1,
          .shape = {4},
          .data = v,
          .size = 16}},
        {"dtype",
         {.name = "y",
          .dtype = GENCACHE_DTYPE_NONE,
          .ndim = 1,
          .shape = {4},
          .data = v,
          .size = 16}},
        {"null",
         {.name = "y",
          .dtype = GENCACHE_DTYPE_F32,
          .ndim = 1,
          .shape = {4},
          .data = NULL,
          .size = 16}},
        {"ndim",
         {.name = "y", .dtype = GENCACHE_DTYPE_U8, .ndim = 9, .shape = {1}, .data = v, .size = 1}},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        t[1] = bad[i].t;
        membuf b = {0};
        int rc = gencache_safetensors_write_to(mem_write, &b, t, 2, NULL, 0);
        if (rc != GENCACHE_EINVAL)
            test_fail(__FILE__, __LINE__, "%s: %s", bad[i].what, gencache_errname(rc));
        CHECK_UINT_EQ(b.n, 0); /* nothing written */
        free(b.p);
    }
    const char *dupmeta[] = {"k", "1", "k", "2"};
    CHECK_RC(gencache_safetensors_write_to(mem_write, &m, t, 1, dupmeta, 2), GENCACHE_EINVAL);
    const char *nullmeta[] = {"k", NULL};
    CHECK_RC(gencache_safetensors_write_to(mem_write, &m, t, 1, nullmeta, 1), GENCACHE_EINVAL);
    CHECK_RC(gencache_safetensors_write_to(NULL, &m, t, 1, NULL, 0), GENCACHE_EINVAL);
}

TEST_CASE(hostile_headers)
{
    struct {
        const char *hdr;
        size_t data;
        int rc;
    } cases[] = {
        {"", 0, GENCACHE_EPARSE},
        {"[]", 0, GENCACHE_EPARSE},
        {"not json", 0, GENCACHE_EPARSE},
        {"{\"a\":", 0, GENCACHE_EPARSE},
        {" {}", 0, GENCACHE_EPARSE}, /* must start with '{' */
        {"{}", 4, GENCACHE_EPARSE},  /* data nobody claims */
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 7, GENCACHE_EPARSE},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 9, GENCACHE_EPARSE},
        /* overlapping */
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
         "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[2,6]}}",
         6, GENCACHE_EPARSE},
        /* gap */
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},"
         "\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[3,5]}}",
         5, GENCACHE_EPARSE},
        /* same range twice */
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},"
         "\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}}",
         2, GENCACHE_EPARSE},
        /* not starting at 0 */
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[1,3]}}", 3, GENCACHE_EPARSE},
        /* reversed, negative, huge, non-integer offsets */
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[2,0]}}", 2, GENCACHE_EPARSE},
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[-2,0]}}", 0, GENCACHE_EPARSE},
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,99999999999999999999]}}", 1,
         GENCACHE_EPARSE},
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1.0]}}", 1, GENCACHE_EPARSE},
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0]}}", 1, GENCACHE_EPARSE},
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1,2]}}", 1, GENCACHE_EPARSE},
        /* shape not matching the bytes, negative or absurd dims */
        {"{\"a\":{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[0,4]}}", 4, GENCACHE_EPARSE},
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[-4],\"data_offsets\":[0,4]}}", 4, GENCACHE_EPARSE},
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[4611686018427387904,4],\"data_offsets\":[0,0]}}", 0,
         GENCACHE_EPARSE},
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 1,
         GENCACHE_EUNSUPPORTED},
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":\"4\",\"data_offsets\":[0,4]}}", 4, GENCACHE_EPARSE},
        /* dtypes */
        {"{\"a\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]}}", 8,
         GENCACHE_EUNSUPPORTED},
        {"{\"a\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, GENCACHE_EPARSE},
        {"{\"a\":{\"dtype\":7,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, GENCACHE_EPARSE},
        /* missing or extra fields, wrong types */
        {"{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, GENCACHE_EPARSE},
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1],\"x\":1}}", 1,
         GENCACHE_EPARSE},
        {"{\"a\":[1,2]}", 0, GENCACHE_EPARSE},
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
         "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}",
         2, GENCACHE_EPARSE}, /* duplicate name */
        {"{\"\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, GENCACHE_EPARSE},
        {"{\"__metadata__\":{\"k\":1}}", 0, GENCACHE_EPARSE},
        {"{\"__metadata__\":[]}", 0, GENCACHE_EPARSE},
        {"{\"a\xff\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, GENCACHE_EPARSE},
    };
    char err[256];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = parse_str(cases[i].hdr, cases[i].data, err, sizeof err);
        if (rc != cases[i].rc)
            test_fail(__FILE__, __LINE__, "case %zu (%s): %s, expected %s", i, cases[i].hdr,
                      gencache_errname(rc), gencache_errname(cases[i].rc));
        CHECK(err[0] != '\0'); /* every refusal says why */
    }
}

TEST_CASE(hostile_lengths)
{
    gencache_safetensors *st = NULL;
    char err[256] = "";
    gencache_safetensors_options o;
    gencache_safetensors_options_init(&o);
    o.errbuf = err;
    o.errbuf_size = sizeof err;
    unsigned char small[16] = {0};
    /* Shorter than the length field. */
    for (size_t n = 0; n < 8; n++)
        CHECK_RC(gencache_safetensors_parse(small, n, &o, &st), GENCACHE_EPARSE);
    /* Header length past the end of the file. */
    small[0] = 9;
    memcpy(small + 8, "{}", 2);
    CHECK_RC(gencache_safetensors_parse(small, 10, &o, &st), GENCACHE_EPARSE);
    CHECK(strstr(err, "past the end") != NULL);
    /* Huge header lengths: refused by the limit before anything is read. */
    memset(small, 0xFF, 8);
    CHECK_RC(gencache_safetensors_parse(small, 16, &o, &st), GENCACHE_ELIMIT);
    uint64_t big = GENCACHE_SAFETENSORS_MAX_HEADER + 1;
    for (int i = 0; i < 8; i++)
        small[i] = (unsigned char)(big >> (8 * i));
    CHECK_RC(gencache_safetensors_parse(small, 16, &o, &st), GENCACHE_ELIMIT);
    /* A lower limit of the caller's. */
    o.max_header_bytes = 8;
    size_t size;
    unsigned char *p = make_file("{\"__metadata__\":{}}", 0, &size);
    CHECK_RC(gencache_safetensors_parse(p, size, &o, &st), GENCACHE_ELIMIT);
    o.max_header_bytes = 0; /* 0: the default */
    CHECK_OK(gencache_safetensors_parse(p, size, &o, &st));
    gencache_safetensors_close(st);
    free(p);
    CHECK(st != NULL);
    CHECK_RC(gencache_safetensors_parse(NULL, 10, &o, &st), GENCACHE_EINVAL);
    CHECK(st == NULL);
    o.struct_size = 4;
    CHECK_RC(gencache_safetensors_parse(small, 16, &o, &st), GENCACHE_EINVAL);
}

TEST_CASE(every_truncation_refused)
{
    uint16_t a[6] = {1, 2, 3, 4, 5, 6};
    uint8_t b[3] = {7, 8, 9};
    gencache_safetensors_tensor t[2] = {
        {.name = "a",
         .dtype = GENCACHE_DTYPE_F16,
         .ndim = 2,
         .shape = {2, 3},
         .data = a,
         .size = 12},
        {.name = "b", .dtype = GENCACHE_DTYPE_U8, .ndim = 1, .shape = {3}, .data = b, .size = 3},
    };
    membuf m = {0};
    CHECK_OK(gencache_safetensors_write_to(mem_write, &m, t, 2, NULL, 0));
    for (size_t n = 0; n < m.n; n++) {
        /* A copy of exactly n bytes, so a read past it is an ASan error. */
        unsigned char *c = malloc(n ? n : 1);
        memcpy(c, m.p, n);
        gencache_safetensors *st = NULL;
        int rc = gencache_safetensors_parse(c, n, NULL, &st);
        if (rc == GENCACHE_OK)
            test_fail(__FILE__, __LINE__, "a file cut to %zu of %zu bytes was accepted", n, m.n);
        free(c);
    }
    /* Every single-byte corruption of the header is either refused or still consistent. */
    for (size_t i = 0; i < m.n - 15; i++) {
        for (int v = 0; v < 256; v += 51) {
            unsigned char *c = malloc(m.n);
            memcpy(c, m.p, m.n);
            c[i] = (unsigned char)v;
            gencache_safetensors *st = NULL;
            if (gencache_safetensors_parse(c, m.n, NULL, &st) == GENCACHE_OK) {
                uint64_t total = 0;
                for (size_t k = 0; k < gencache_safetensors_count(st); k++) {
                    gencache_safetensors_tensor r;
                    CHECK_OK(gencache_safetensors_get(st, k, &r));
                    CHECK((const unsigned char *)r.data + r.size <= c + m.n);
                    total += r.size;
                }
                CHECK_UINT_LE(total, m.n);
                gencache_safetensors_close(st);
            }
            free(c);
        }
    }
    free(m.p);
}
