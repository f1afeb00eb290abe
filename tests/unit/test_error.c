/* test_error.c: the error table: every code has a distinct name and a message, and unknown codes
 * are reported as such rather than crashing or aliasing a known one. */
#include "test.h"

static const int codes[] = {
#define CODE(name, code, msg) GENCACHE_##name,
    GENCACHE_ERRNO_MAP(CODE)
#undef CODE
};
#define N_CODES (sizeof codes / sizeof codes[0])

TEST_CASE(names_and_messages)
{
    CHECK_STR_EQ(gencache_errname(GENCACHE_OK), "OK");
    CHECK_STR_EQ(gencache_errname(GENCACHE_ENOTFOUND), "ENOTFOUND");
    CHECK_STR_EQ(gencache_strerror(GENCACHE_ENOTFOUND), "not found");
    CHECK_STR_EQ(gencache_strerror(GENCACHE_OK), "success");
    for (size_t i = 0; i < N_CODES; i++) {
        CHECK(strlen(gencache_errname(codes[i])) > 0);
        CHECK(strcmp(gencache_strerror(codes[i]), "unknown error") != 0);
        CHECK(codes[i] <= 0);
    }
}

TEST_CASE(codes_are_distinct)
{
    for (size_t i = 0; i < N_CODES; i++)
        for (size_t j = i + 1; j < N_CODES; j++) {
            CHECK(codes[i] != codes[j]);
            CHECK(strcmp(gencache_errname(codes[i]), gencache_errname(codes[j])) != 0);
        }
}

TEST_CASE(codes_never_renumbered)
{
    /* Published numbers: other programs store and compare them. */
    CHECK_INT_EQ(GENCACHE_EINVAL, -1);
    CHECK_INT_EQ(GENCACHE_ENOMEM, -2);
    CHECK_INT_EQ(GENCACHE_ENOTFOUND, -3);
    CHECK_INT_EQ(GENCACHE_ETOOBIG, -4);
    CHECK_INT_EQ(GENCACHE_EFULL, -5);
    CHECK_INT_EQ(GENCACHE_ECORRUPT, -7);
}

TEST_CASE(unknown_codes)
{
    CHECK_STR_EQ(gencache_errname(-9999), "EUNKNOWN");
    CHECK_STR_EQ(gencache_strerror(-9999), "unknown error");
    CHECK_STR_EQ(gencache_errname(42), "EUNKNOWN");
}

TEST_CASE(version)
{
    CHECK_STR_EQ(gencache_version(), GENCACHE_VERSION_STRING);
}

TEST_CASE(dtypes)
{
    gencache_dtype d;
    CHECK_OK(gencache_dtype_parse("bf16", &d));
    CHECK_INT_EQ(d, GENCACHE_DTYPE_BF16);
    CHECK_UINT_EQ(gencache_dtype_size(d), 2);
    CHECK_STR_EQ(gencache_dtype_name(GENCACHE_DTYPE_I64), "i64");
    CHECK_RC(gencache_dtype_parse("float32", &d), GENCACHE_EINVAL);
    CHECK_INT_EQ(d, GENCACHE_DTYPE_NONE);
    CHECK(gencache_dtype_name((gencache_dtype)99) == NULL);
    CHECK_UINT_EQ(gencache_dtype_size((gencache_dtype)99), 0);
}
