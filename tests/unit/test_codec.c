/*
 * test_codec.c: storing a tensor with a codec and reading it back (include/gencache/codec.h):
 * what each codec stores and how the entry is marked, round trips at odd sizes for every codec
 * and source dtype, conversions on read, the refusals (NaN/Inf, non-float tensors, bad options,
 * bytes that do not match their metadata), entries written the way the daemon always wrote them,
 * and an int8 entry decoded after the cache is closed and reopened on its disk tier.
 */
#define _GNU_SOURCE
#include <math.h>

#include "tier_util.h"

#define KEY "image_latent/00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

static const gencache_dtype FLOATS[] = {GENCACHE_DTYPE_F32, GENCACHE_DTYPE_F16,
                                        GENCACHE_DTYPE_BF16};

static uint64_t rng = 0x2545F4914F6CDD1Dull;

static float rnd(float range)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return ((float)(uint32_t)(rng >> 11) / 4294967296.0f * 2.0f - 1.0f) * range;
}

static void meta_tensor(gencache_meta *m, gencache_dtype dt, uint32_t ndim, const int64_t *shape)
{
    gencache_meta_init(m);
    m->dtype = dt;
    m->ndim = ndim;
    for (uint32_t i = 0; i < ndim; i++)
        m->shape[i] = shape[i];
}

static size_t numel(uint32_t ndim, const int64_t *shape)
{
    uint64_t n;
    CHECK_OK(gencache_tensor_numel(ndim, shape, &n));
    return (size_t)n;
}

/* n random floats in [-range, range] as `dt` (converted from f32); *f32 (may be NULL) receives
 * the exact f32 values the tensor holds. Both malloc'd. */
static void *random_floats(gencache_dtype dt, size_t n, float range, float **f32)
{
    float *src = malloc(n ? n * 4 : 1);
    CHECK(src != NULL);
    for (size_t i = 0; i < n; i++)
        src[i] = rnd(range);
    void *out = malloc(n ? n * gencache_dtype_size(dt) : 1);
    CHECK(out != NULL);
    CHECK_OK(gencache_tensor_convert(dt, out, GENCACHE_DTYPE_F32, src, n));
    if (f32) {
        CHECK_OK(gencache_tensor_convert(GENCACHE_DTYPE_F32, src, dt, out, n));
        *f32 = src;
    } else {
        free(src);
    }
    return out;
}

static void encode_opts(gencache_encode_options *o, gencache_codec codec, uint32_t axis,
                        uint32_t group)
{
    gencache_encode_options_init(o);
    o->codec = codec;
    o->axis = axis;
    o->group_size = group;
}

/* Decodes meta/data into a new buffer as `want`; checks the info against the result. */
static void *decode_all(const gencache_meta *m, const void *data, size_t size, gencache_dtype want,
                        gencache_decode_info *info)
{
    CHECK_OK(gencache_tensor_decode_info(m, data, size, want, info));
    void *out = malloc(info->size ? (size_t)info->size : 1);
    CHECK(out != NULL);
    size_t written = 99;
    CHECK_OK(gencache_tensor_decode(m, data, size, want, out, (size_t)info->size, &written));
    CHECK_UINT_EQ(written, info->size);
    return out;
}

TEST_CASE(options_defaults)
{
    gencache_encode_options o;
    memset(&o, 0xAB, sizeof o);
    gencache_encode_options_init(&o);
    CHECK_UINT_EQ(o.struct_size, sizeof o);
    CHECK_INT_EQ(o.codec, GENCACHE_CODEC_NONE);
    CHECK_UINT_EQ(o.axis, 0);
    CHECK_UINT_EQ(o.group_size, 128);
    gencache_encode_options_init(NULL); /* does nothing */
}

TEST_CASE(none_keeps_every_dtype_exactly)
{
    static const gencache_dtype all[] = {
        GENCACHE_DTYPE_F32, GENCACHE_DTYPE_F16, GENCACHE_DTYPE_BF16, GENCACHE_DTYPE_I8,
        GENCACHE_DTYPE_U8,  GENCACHE_DTYPE_I32, GENCACHE_DTYPE_I64};
    int64_t shape[3] = {3, 5, 7};
    for (size_t d = 0; d < sizeof all / sizeof all[0]; d++) {
        size_t size = 105 * gencache_dtype_size(all[d]);
        unsigned char *data = malloc(size);
        for (size_t i = 0; i < size; i++)
            data[i] = (unsigned char)(i * 37 + d);
        gencache_meta m;
        meta_tensor(&m, all[d], 3, shape);
        m.content_type = "application/x-test";
        m.model = "wan2.2";
        m.tags = "a,b";
        m.cost_ms = 1234;
        gencache_encoded *e = NULL;
        CHECK_OK(gencache_tensor_encode(data, size, &m, NULL, &e));
        CHECK_UINT_EQ(gencache_encoded_size(e), size);
        CHECK_MEM_EQ(gencache_encoded_data(e), data, size);
        const gencache_meta *em = gencache_encoded_meta(e);
        CHECK_INT_EQ(em->dtype, all[d]);
        CHECK_UINT_EQ(em->ndim, 3);
        CHECK_INT_EQ(em->shape[2], 7);
        CHECK_STR_EQ(em->content_type, "application/x-test");
        CHECK_STR_EQ(em->model, "wan2.2");
        CHECK_STR_EQ(em->tags, "a,b");
        CHECK(em->tenant == NULL);
        CHECK_UINT_EQ(em->cost_ms, 1234);
        CHECK(em->model != m.model); /* copied, not borrowed */
        CHECK(!gencache_tensor_needs_decode(em, GENCACHE_DTYPE_NONE));
        CHECK(!gencache_tensor_needs_decode(em, all[d]));
        gencache_decode_info info;
        void *back = decode_all(em, gencache_encoded_data(e), size, GENCACHE_DTYPE_NONE, &info);
        CHECK_INT_EQ(info.codec, GENCACHE_CODEC_NONE);
        CHECK_INT_EQ(info.desc.dtype, all[d]);
        CHECK(!info.needs_decode);
        CHECK_UINT_EQ(info.content_type_len, strlen("application/x-test"));
        CHECK_MEM_EQ(back, data, size);
        free(back);
        gencache_encoded_free(e);
        free(data);
    }
}

TEST_CASE(narrowing_codecs_store_a_plain_tensor)
{
    static const int64_t shapes[][3] = {{1, 1, 1}, {3, 5, 7}, {2, 0, 3}, {1, 1, 1031}};
    for (size_t s = 0; s < 4; s++) {
        for (int c = 0; c < 2; c++) {
            gencache_codec codec = c ? GENCACHE_CODEC_BF16 : GENCACHE_CODEC_F16;
            gencache_dtype to = c ? GENCACHE_DTYPE_BF16 : GENCACHE_DTYPE_F16;
            size_t n = numel(3, shapes[s]);
            float *exact;
            float *x = random_floats(GENCACHE_DTYPE_F32, n, 1000.0f, &exact);
            gencache_meta m;
            meta_tensor(&m, GENCACHE_DTYPE_F32, 3, shapes[s]);
            gencache_encode_options o;
            encode_opts(&o, codec, 0, 128);
            gencache_encoded *e;
            CHECK_OK(gencache_tensor_encode(x, n * 4, &m, &o, &e));
            const gencache_meta *em = gencache_encoded_meta(e);
            CHECK_INT_EQ(em->dtype, to);
            CHECK_UINT_EQ(gencache_encoded_size(e), n * 2);
            CHECK_STR_EQ(em->content_type, "application/octet-stream"); /* never marked */
            uint16_t *want = malloc(n * 2 + 1);
            CHECK_OK(gencache_tensor_convert(to, want, GENCACHE_DTYPE_F32, x, n));
            CHECK_MEM_EQ(gencache_encoded_data(e), want, n * 2);
            /* Read as stored: no decoding; read as f32: widened exactly. */
            CHECK(!gencache_tensor_needs_decode(em, GENCACHE_DTYPE_NONE));
            CHECK(gencache_tensor_needs_decode(em, GENCACHE_DTYPE_F32));
            gencache_decode_info info;
            float *back =
                decode_all(em, gencache_encoded_data(e), n * 2, GENCACHE_DTYPE_F32, &info);
            CHECK(info.needs_decode);
            CHECK_UINT_EQ(info.size, n * 4);
            for (size_t i = 0; i < n; i++) {
                float tol = fabsf(exact[i]) * (c ? 1.0f / 256 : 1.0f / 2048) + 1e-6f;
                CHECK_DBL_NEAR(back[i], exact[i], tol);
            }
            free(back);
            free(want);
            free(exact);
            free(x);
            gencache_encoded_free(e);
        }
    }
}

/* One int8 round trip: payload identical to gencache_quant_encode()'s, entry marked, decoded
 * within half a step of each element's scale (bounded here by the tensor's amax / 254). */
static void int8_round_trip(gencache_dtype dt, gencache_codec codec, uint32_t ndim,
                            const int64_t *shape, uint32_t axis, uint32_t group)
{
    size_t n = numel(ndim, shape);
    float *exact;
    void *x = random_floats(dt, n, 50.0f, &exact);
    size_t size = n * gencache_dtype_size(dt);
    gencache_meta m;
    meta_tensor(&m, dt, ndim, shape);
    m.content_type = "application/vnd.gencache.numpy";
    gencache_encode_options o;
    encode_opts(&o, codec, axis, group);
    gencache_encoded *e;
    CHECK_OK(gencache_tensor_encode(x, size, &m, &o, &e));
    const gencache_meta *em = gencache_encoded_meta(e);
    char ct[128];
    snprintf(ct, sizeof ct, "application/vnd.gencache.numpy; codec=%s", gencache_codec_name(codec));
    CHECK_STR_EQ(em->content_type, ct);
    CHECK_INT_EQ(em->dtype, GENCACHE_DTYPE_NONE);
    CHECK_UINT_EQ(em->ndim, 0);

    gencache_tensor_desc desc = {.dtype = dt, .ndim = ndim};
    for (uint32_t i = 0; i < ndim; i++)
        desc.shape[i] = shape[i];
    gencache_quant_options q;
    gencache_quant_options_init(&q);
    q.codec = codec;
    q.axis = axis;
    q.group_size = group;
    size_t qsize;
    CHECK_OK(gencache_quant_size(&desc, &q, &qsize));
    void *payload = malloc(qsize);
    CHECK_OK(gencache_quant_encode(&desc, x, size, &q, payload, qsize, NULL));
    CHECK_UINT_EQ(gencache_encoded_size(e), qsize);
    CHECK_MEM_EQ(gencache_encoded_data(e), payload, qsize);

    CHECK(gencache_tensor_needs_decode(em, GENCACHE_DTYPE_NONE));
    gencache_decode_info info;
    void *back = decode_all(em, payload, qsize, GENCACHE_DTYPE_NONE, &info);
    CHECK_INT_EQ(info.codec, codec);
    CHECK(info.needs_decode);
    CHECK_INT_EQ(info.desc.dtype, dt);
    CHECK_UINT_EQ(info.desc.ndim, ndim);
    for (uint32_t i = 0; i < ndim; i++)
        CHECK_INT_EQ(info.desc.shape[i], shape[i]);
    CHECK_UINT_EQ(info.size, size);
    CHECK_UINT_EQ(info.content_type_len, strlen("application/vnd.gencache.numpy"));
    CHECK_MEM_EQ(info.content_type, "application/vnd.gencache.numpy", info.content_type_len);
    float *got = malloc(n ? n * 4 : 1);
    CHECK_OK(gencache_tensor_convert(GENCACHE_DTYPE_F32, got, dt, back, n));
    float amax = 0;
    for (size_t i = 0; i < n; i++)
        amax = fmaxf(amax, fabsf(exact[i]));
    float bound = amax / 254.0f * 1.01f + amax / 128.0f; /* half a step, plus the 16-bit
                                                             output's rounding */
    for (size_t i = 0; i < n; i++)
        CHECK_DBL_NEAR(got[i], exact[i], bound);
    /* As f32 whatever the source: the same values the payload decodes to directly. */
    float *as32 = decode_all(em, payload, qsize, GENCACHE_DTYPE_F32, &info);
    CHECK_UINT_EQ(info.size, n * 4);
    float *direct = malloc(n ? n * 4 : 1);
    CHECK_OK(gencache_quant_decode(payload, qsize, GENCACHE_DTYPE_F32, direct, n * 4, NULL));
    CHECK_MEM_EQ(as32, direct, n * 4);
    free(direct);
    free(as32);
    free(got);
    free(back);
    free(payload);
    free(exact);
    free(x);
    gencache_encoded_free(e);
}

TEST_CASE(int8_codecs_round_trip_at_odd_sizes)
{
    static const int64_t s1[1] = {1}, s2[2] = {7, 13}, s3[3] = {3, 5, 11}, s4[4] = {2, 3, 1, 9};
    for (size_t d = 0; d < 3; d++) {
        gencache_dtype dt = FLOATS[d];
        int8_round_trip(dt, GENCACHE_CODEC_INT8, 1, s1, 0, 128);
        int8_round_trip(dt, GENCACHE_CODEC_INT8, 3, s3, 0, 128);
        int8_round_trip(dt, GENCACHE_CODEC_INT8, 0, NULL, 0, 128); /* a scalar */
        int8_round_trip(dt, GENCACHE_CODEC_INT8_CHANNEL, 2, s2, 1, 128);
        int8_round_trip(dt, GENCACHE_CODEC_INT8_CHANNEL, 3, s3, 2, 128);
        int8_round_trip(dt, GENCACHE_CODEC_INT8_CHANNEL, 4, s4, 0, 128);
        int8_round_trip(dt, GENCACHE_CODEC_INT8_GROUP, 2, s2, 0, 4);
        int8_round_trip(dt, GENCACHE_CODEC_INT8_GROUP, 3, s3, 0, 7);
        int8_round_trip(dt, GENCACHE_CODEC_INT8_GROUP, 4, s4, 0, 1000);
    }
}

TEST_CASE(want_conversions)
{
    int64_t shape[1] = {9};
    float x[9] = {0.5f, -1.25f, 3.0f, 100.0f, -0.0f, 7.75f, 1e-3f, 65504.0f, 1e9f};
    gencache_meta m;
    meta_tensor(&m, GENCACHE_DTYPE_F32, 1, shape);
    for (size_t d = 0; d < 3; d++) {
        gencache_decode_info info;
        void *out = decode_all(&m, x, sizeof x, FLOATS[d], &info);
        CHECK_INT_EQ(info.desc.dtype, FLOATS[d]);
        CHECK_INT_EQ(info.needs_decode, FLOATS[d] != GENCACHE_DTYPE_F32);
        void *want = malloc(9 * 4);
        CHECK_OK(gencache_tensor_convert(FLOATS[d], want, GENCACHE_DTYPE_F32, x, 9));
        CHECK_MEM_EQ(out, want, info.size);
        free(want);
        free(out);
    }
    /* Integers convert to nothing else, but reading them as themselves is a copy. */
    int32_t ints[3] = {1, -2, 3};
    int64_t s3[1] = {3};
    meta_tensor(&m, GENCACHE_DTYPE_I32, 1, s3);
    gencache_decode_info info;
    CHECK_RC(gencache_tensor_decode_info(&m, ints, sizeof ints, GENCACHE_DTYPE_F32, &info),
             GENCACHE_EUNSUPPORTED);
    CHECK_INT_EQ(info.size, 0);
    int32_t back[3];
    size_t w = 7;
    CHECK_RC(
        gencache_tensor_decode(&m, ints, sizeof ints, GENCACHE_DTYPE_F16, back, sizeof back, &w),
        GENCACHE_EUNSUPPORTED);
    CHECK_UINT_EQ(w, 0);
    CHECK_OK(
        gencache_tensor_decode(&m, ints, sizeof ints, GENCACHE_DTYPE_I32, back, sizeof back, &w));
    CHECK_MEM_EQ(back, ints, sizeof ints);
    /* A float tensor to an integer dtype, or to a dtype that does not exist. */
    meta_tensor(&m, GENCACHE_DTYPE_F32, 1, shape);
    CHECK_RC(gencache_tensor_decode_info(&m, x, sizeof x, GENCACHE_DTYPE_I8, &info),
             GENCACHE_EUNSUPPORTED);
    CHECK_RC(gencache_tensor_decode_info(&m, x, sizeof x, (gencache_dtype)99, &info),
             GENCACHE_EINVAL);
}

TEST_CASE(nan_and_inf_are_refused_by_narrowing)
{
    int64_t shape[1] = {4};
    float bad[2][4] = {{1.0f, NAN, 2.0f, 3.0f}, {1.0f, 2.0f, -INFINITY, 3.0f}};
    static const gencache_codec narrowing[] = {GENCACHE_CODEC_F16, GENCACHE_CODEC_BF16,
                                               GENCACHE_CODEC_INT8, GENCACHE_CODEC_INT8_CHANNEL,
                                               GENCACHE_CODEC_INT8_GROUP};
    gencache_meta m;
    meta_tensor(&m, GENCACHE_DTYPE_F32, 1, shape);
    for (int b = 0; b < 2; b++) {
        for (size_t c = 0; c < 5; c++) {
            gencache_encode_options o;
            encode_opts(&o, narrowing[c], 0, 2);
            gencache_encoded *e = (gencache_encoded *)&m;
            CHECK_RC(gencache_tensor_encode(bad[b], sizeof bad[b], &m, &o, &e), GENCACHE_EINVAL);
            CHECK(e == NULL);
        }
        /* Stored as given, it is carried exactly, and refused only when narrowed on read. */
        gencache_encoded *e;
        CHECK_OK(gencache_tensor_encode(bad[b], sizeof bad[b], &m, NULL, &e));
        uint16_t h[4];
        size_t w = 5;
        CHECK_RC(gencache_tensor_decode(gencache_encoded_meta(e), gencache_encoded_data(e),
                                        sizeof bad[b], GENCACHE_DTYPE_F16, h, sizeof h, &w),
                 GENCACHE_EINVAL);
        CHECK_UINT_EQ(w, 0);
        float f[4];
        CHECK_OK(gencache_tensor_decode(gencache_encoded_meta(e), gencache_encoded_data(e),
                                        sizeof bad[b], GENCACHE_DTYPE_NONE, f, sizeof f, &w));
        CHECK_MEM_EQ(f, bad[b], sizeof f);
        gencache_encoded_free(e);
    }
}

TEST_CASE(encode_errors)
{
    int64_t shape[2] = {2, 3};
    float x[6] = {1, 2, 3, 4, 5, 6};
    gencache_meta m;
    meta_tensor(&m, GENCACHE_DTYPE_F32, 2, shape);
    gencache_encode_options o;
    gencache_encoded *e = NULL;
    CHECK_RC(gencache_tensor_encode(x, sizeof x, &m, NULL, NULL), GENCACHE_EINVAL);
    CHECK_RC(gencache_tensor_encode(x, sizeof x, NULL, NULL, &e), GENCACHE_EINVAL);
    CHECK_RC(gencache_tensor_encode(NULL, sizeof x, &m, NULL, &e), GENCACHE_EINVAL);
    CHECK_RC(gencache_tensor_encode(x, sizeof x - 4, &m, NULL, &e), GENCACHE_EINVAL);
    CHECK_RC(gencache_tensor_encode(x, sizeof x + 4, &m, NULL, &e), GENCACHE_EINVAL);
    CHECK(e == NULL);
    /* Options: too small a struct, unknown codec, axis past the rank, empty groups. */
    encode_opts(&o, GENCACHE_CODEC_INT8, 0, 128);
    o.struct_size = sizeof o - 1;
    CHECK_RC(gencache_tensor_encode(x, sizeof x, &m, &o, &e), GENCACHE_EINVAL);
    encode_opts(&o, (gencache_codec)6, 0, 128);
    CHECK_RC(gencache_tensor_encode(x, sizeof x, &m, &o, &e), GENCACHE_EINVAL);
    encode_opts(&o, GENCACHE_CODEC_INT8_CHANNEL, 2, 128);
    CHECK_RC(gencache_tensor_encode(x, sizeof x, &m, &o, &e), GENCACHE_EINVAL);
    encode_opts(&o, GENCACHE_CODEC_INT8_GROUP, 0, 0);
    CHECK_RC(gencache_tensor_encode(x, sizeof x, &m, &o, &e), GENCACHE_EINVAL);
    /* The options of the other codecs are ignored. */
    encode_opts(&o, GENCACHE_CODEC_INT8, 7, 0);
    CHECK_OK(gencache_tensor_encode(x, sizeof x, &m, &o, &e));
    gencache_encoded_free(e);
    /* The meta: not a tensor, a negative dimension, too many dimensions, a struct too small, a
     * content type that would read back as an int8 payload. */
    gencache_meta bad = m;
    bad.dtype = GENCACHE_DTYPE_NONE;
    CHECK_RC(gencache_tensor_encode(x, sizeof x, &bad, NULL, &e), GENCACHE_EINVAL);
    bad = m;
    bad.shape[1] = -3;
    CHECK_RC(gencache_tensor_encode(x, sizeof x, &bad, NULL, &e), GENCACHE_EINVAL);
    bad = m;
    bad.ndim = GENCACHE_MAX_DIMS + 1;
    CHECK_RC(gencache_tensor_encode(x, sizeof x, &bad, NULL, &e), GENCACHE_EINVAL);
    bad = m;
    bad.struct_size = 8;
    CHECK_RC(gencache_tensor_encode(x, sizeof x, &bad, NULL, &e), GENCACHE_EINVAL);
    bad = m;
    bad.content_type = "application/octet-stream; codec=int8-group";
    CHECK_RC(gencache_tensor_encode(x, sizeof x, &bad, NULL, &e), GENCACHE_EINVAL);
    bad.content_type = "text/plain; codec=zstd"; /* not an int8 mark: kept as given */
    CHECK_OK(gencache_tensor_encode(x, sizeof x, &bad, NULL, &e));
    CHECK_STR_EQ(gencache_encoded_meta(e)->content_type, "text/plain; codec=zstd");
    gencache_encoded_free(e);
    /* A codec on integers. */
    int32_t ints[6] = {0};
    meta_tensor(&m, GENCACHE_DTYPE_I32, 2, shape);
    for (int c = GENCACHE_CODEC_F16; c <= GENCACHE_CODEC_INT8_GROUP; c++) {
        encode_opts(&o, (gencache_codec)c, 0, 2);
        CHECK_RC(gencache_tensor_encode(ints, sizeof ints, &m, &o, &e), GENCACHE_EUNSUPPORTED);
    }
    /* The accessors and free on NULL. */
    CHECK(gencache_encoded_data(NULL) == NULL);
    CHECK_UINT_EQ(gencache_encoded_size(NULL), 0);
    CHECK(gencache_encoded_meta(NULL) == NULL);
    gencache_encoded_free(NULL);
}

TEST_CASE(decode_errors)
{
    int64_t shape[1] = {4};
    float x[4] = {1, 2, 3, 4};
    gencache_meta m;
    meta_tensor(&m, GENCACHE_DTYPE_F32, 1, shape);
    gencache_decode_info info;
    float out[4];
    size_t w = 1;
    CHECK_RC(gencache_tensor_decode_info(NULL, x, sizeof x, 0, &info), GENCACHE_EINVAL);
    CHECK_RC(gencache_tensor_decode_info(&m, x, sizeof x, 0, NULL), GENCACHE_EINVAL);
    CHECK_RC(gencache_tensor_decode_info(&m, NULL, sizeof x, 0, &info), GENCACHE_EINVAL);
    CHECK_RC(gencache_tensor_decode(&m, x, sizeof x, 0, NULL, sizeof out, &w), GENCACHE_EINVAL);
    CHECK_RC(gencache_tensor_decode(&m, x, sizeof x, 0, out, sizeof out - 1, &w), GENCACHE_ETOOBIG);
    CHECK_UINT_EQ(w, 0);
    /* Bytes that do not match their metadata. */
    CHECK_RC(gencache_tensor_decode_info(&m, x, sizeof x - 4, 0, &info), GENCACHE_EPARSE);
    CHECK(info.content_type == NULL && info.size == 0);
    /* Not a tensor: plain bytes, whatever their content type says, unless marked. */
    gencache_meta bytes;
    gencache_meta_init(&bytes);
    CHECK_RC(gencache_tensor_decode_info(&bytes, "abc", 3, 0, &info), GENCACHE_EINVAL);
    CHECK(!gencache_tensor_needs_decode(&bytes, GENCACHE_DTYPE_NONE));
    CHECK(gencache_tensor_needs_decode(&bytes, GENCACHE_DTYPE_F32));
    CHECK(!gencache_tensor_needs_decode(NULL, GENCACHE_DTYPE_F32));
    /* Marked, but the bytes are no int8 payload: refused, never read past. */
    bytes.content_type = "application/octet-stream; codec=int8";
    CHECK(gencache_tensor_needs_decode(&bytes, GENCACHE_DTYPE_NONE));
    CHECK_RC(gencache_tensor_decode_info(&bytes, "abcdefgh", 8, 0, &info), GENCACHE_EPARSE);
    CHECK_RC(gencache_tensor_decode(&bytes, "abcdefgh", 8, 0, out, sizeof out, &w),
             GENCACHE_EPARSE);
    /* A mark on an entry that says it is a tensor is not a mark: it is that tensor. */
    m.content_type = "application/octet-stream; codec=int8";
    CHECK(!gencache_tensor_needs_decode(&m, GENCACHE_DTYPE_NONE));
    CHECK_OK(gencache_tensor_decode_info(&m, x, sizeof x, 0, &info));
    CHECK_INT_EQ(info.codec, GENCACHE_CODEC_NONE);
    CHECK_UINT_EQ(info.content_type_len, strlen(m.content_type));
    /* Handles: NULL. */
    CHECK_RC(gencache_handle_decode_info(NULL, 0, &info), GENCACHE_EINVAL);
    CHECK_RC(gencache_handle_decode(NULL, 0, out, sizeof out, &w), GENCACHE_EINVAL);
}

/* An entry stored the way gencached wrote int8 entries before the library owned the rule:
 * gencache_put of the quant payload, dtype NONE, content type "<type>; codec=<name>". */
TEST_CASE(entries_written_by_the_daemon_stay_readable)
{
    int64_t shape[2] = {5, 3};
    float *exact;
    float *x = random_floats(GENCACHE_DTYPE_F32, 15, 4.0f, &exact);
    gencache_tensor_desc desc = {.dtype = GENCACHE_DTYPE_F32, .ndim = 2, .shape = {5, 3}};
    gencache_quant_options q;
    gencache_quant_options_init(&q);
    q.codec = GENCACHE_CODEC_INT8_GROUP;
    q.group_size = 4;
    size_t qsize;
    CHECK_OK(gencache_quant_size(&desc, &q, &qsize));
    void *payload = malloc(qsize);
    CHECK_OK(gencache_quant_encode(&desc, x, 60, &q, payload, qsize, NULL));

    gencache *c;
    CHECK_OK(gencache_open(&c, NULL));
    gencache_meta m;
    gencache_meta_init(&m);
    m.content_type = "application/octet-stream; codec=int8-group";
    CHECK_OK(gencache_put(c, KEY, payload, qsize, &m));
    gencache_handle *h;
    CHECK_OK(gencache_get(c, KEY, &h));
    gencache_decode_info info;
    CHECK_OK(gencache_handle_decode_info(h, GENCACHE_DTYPE_NONE, &info));
    CHECK_INT_EQ(info.codec, GENCACHE_CODEC_INT8_GROUP);
    CHECK_UINT_EQ(info.desc.ndim, 2);
    CHECK_INT_EQ(info.desc.shape[0], 5);
    CHECK_UINT_EQ(info.content_type_len, strlen("application/octet-stream"));
    float back[15];
    size_t w;
    CHECK_OK(gencache_handle_decode(h, GENCACHE_DTYPE_NONE, back, sizeof back, &w));
    CHECK_UINT_EQ(w, sizeof back);
    float direct[15];
    CHECK_OK(
        gencache_quant_decode(payload, qsize, GENCACHE_DTYPE_F32, direct, sizeof direct, NULL));
    CHECK_MEM_EQ(back, direct, sizeof back);

    /* And gencache_put_tensor writes exactly those bytes and that content type. */
    gencache_meta t;
    meta_tensor(&t, GENCACHE_DTYPE_F32, 2, shape);
    gencache_encode_options o;
    encode_opts(&o, GENCACHE_CODEC_INT8_GROUP, 0, 4);
    CHECK_OK(gencache_put_tensor(c, KEY, x, 60, &t, &o));
    gencache_handle *h2;
    CHECK_OK(gencache_get(c, KEY, &h2));
    CHECK_UINT_EQ(gencache_handle_size(h2), qsize);
    CHECK_MEM_EQ(gencache_handle_data(h2), payload, qsize);
    CHECK_STR_EQ(gencache_handle_meta(h2)->content_type, m.content_type);
    CHECK_INT_EQ(gencache_handle_meta(h2)->dtype, GENCACHE_DTYPE_NONE);
    gencache_handle_release(h2);
    gencache_handle_release(h);
    gencache_close(c);
    free(payload);
    free(exact);
    free(x);
}

TEST_CASE(put_tensor_errors_store_nothing)
{
    gencache *c;
    CHECK_OK(gencache_open(&c, NULL));
    int64_t shape[1] = {2};
    float x[2] = {1.0f, NAN};
    gencache_meta m;
    meta_tensor(&m, GENCACHE_DTYPE_F32, 1, shape);
    gencache_encode_options o;
    encode_opts(&o, GENCACHE_CODEC_INT8, 0, 128);
    CHECK_RC(gencache_put_tensor(NULL, KEY, x, sizeof x, &m, &o), GENCACHE_EINVAL);
    CHECK_RC(gencache_put_tensor(c, NULL, x, sizeof x, &m, &o), GENCACHE_EINVAL);
    CHECK_RC(gencache_put_tensor(c, KEY, x, sizeof x, &m, &o), GENCACHE_EINVAL);
    CHECK_RC(gencache_put_tensor(c, KEY, x, 4, &m, NULL), GENCACHE_EINVAL);
    CHECK_RC(gencache_put_tensor(c, "image_latent/00", x, sizeof x, &m, NULL), GENCACHE_EINVAL);
    gencache_handle *h = NULL;
    CHECK_RC(gencache_get(c, KEY, &h), GENCACHE_ENOTFOUND);
    /* Codec NONE stores the tensor as given, NaN included. */
    CHECK_OK(gencache_put_tensor(c, KEY, x, sizeof x, &m, NULL));
    CHECK_OK(gencache_get(c, KEY, &h));
    CHECK_INT_EQ(gencache_handle_meta(h)->dtype, GENCACHE_DTYPE_F32);
    CHECK_MEM_EQ(gencache_handle_data(h), x, sizeof x);
    gencache_handle_release(h);
    gencache_close(c);
}

TEST_CASE(int8_entry_decodes_after_a_disk_restart)
{
    char *dir = tu_tmpdir("codec");
    int64_t shape[3] = {4, 7, 9};
    size_t n = 4 * 7 * 9;
    void *x = random_floats(GENCACHE_DTYPE_BF16, n, 10.0f, NULL);
    gencache_meta m;
    meta_tensor(&m, GENCACHE_DTYPE_BF16, 3, shape);
    m.content_type = "application/vnd.gencache.torch";
    gencache_encode_options o;
    encode_opts(&o, GENCACHE_CODEC_INT8_CHANNEL, 1, 128);

    gencache_options opts;
    gencache_options_init(&opts);
    opts.data_dir = dir;
    gencache *c;
    CHECK_OK(gencache_open(&c, &opts));
    CHECK_OK(gencache_put_tensor(c, KEY, x, n * 2, &m, &o));
    gencache_handle *h;
    CHECK_OK(gencache_get(c, KEY, &h));
    gencache_decode_info before;
    CHECK_OK(gencache_handle_decode_info(h, GENCACHE_DTYPE_NONE, &before));
    uint16_t *first = malloc(n * 2);
    CHECK_OK(gencache_handle_decode(h, GENCACHE_DTYPE_NONE, first, n * 2, NULL));
    gencache_handle_release(h);
    gencache_close(c);

    CHECK_OK(gencache_open(&c, &opts));
    CHECK_OK(gencache_get(c, KEY, &h));
    CHECK_STR_EQ(gencache_handle_meta(h)->tier, "disk");
    CHECK_STR_EQ(gencache_handle_meta(h)->content_type,
                 "application/vnd.gencache.torch; codec=int8-channel");
    CHECK(gencache_tensor_needs_decode(gencache_handle_meta(h), GENCACHE_DTYPE_NONE));
    gencache_decode_info after;
    CHECK_OK(gencache_handle_decode_info(h, GENCACHE_DTYPE_NONE, &after));
    CHECK_INT_EQ(after.codec, GENCACHE_CODEC_INT8_CHANNEL);
    CHECK_INT_EQ(after.desc.dtype, GENCACHE_DTYPE_BF16);
    CHECK_UINT_EQ(after.desc.ndim, 3);
    for (int i = 0; i < 3; i++)
        CHECK_INT_EQ(after.desc.shape[i], shape[i]);
    CHECK_UINT_EQ(after.size, before.size);
    CHECK_MEM_EQ(after.content_type, "application/vnd.gencache.torch", after.content_type_len);
    CHECK_UINT_EQ(after.content_type_len, strlen("application/vnd.gencache.torch"));
    uint16_t *second = malloc(n * 2);
    CHECK_OK(gencache_handle_decode(h, GENCACHE_DTYPE_NONE, second, n * 2, NULL));
    CHECK_MEM_EQ(second, first, n * 2);
    gencache_handle_release(h);
    gencache_close(c);

    free(second);
    free(first);
    free(x);
    tu_rm_rf(dir);
    free(dir);
}
