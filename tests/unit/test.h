/*
 * test.h: the unit-test harness. A test file declares cases with TEST_CASE(name) at the start of
 * a line (CMake reads those lines to register one CTest test per case) and checks with the
 * CHECK_* macros, which print both sides and fail the case at once. The executable runs the case
 * named on its command line, or every case when given none.
 */
#ifndef GENCACHE_TEST_H
#define GENCACHE_TEST_H

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gencache.h"

typedef void (*test_fn)(void);
void test_register(const char *name, test_fn fn);
void test_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 3, 4)));

#define TEST_CASE(name)                                                                            \
    static void test_##name(void);                                                                 \
    __attribute__((constructor)) static void test_register_##name(void)                            \
    {                                                                                              \
        test_register(#name, test_##name);                                                         \
    }                                                                                              \
    static void test_##name(void)

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            test_fail(__FILE__, __LINE__, "CHECK(%s) failed", #cond);                              \
    } while (0)

#define CHECK_INT_EQ(a, b)                                                                         \
    do {                                                                                           \
        long long check_a_ = (long long)(a), check_b_ = (long long)(b);                            \
        if (check_a_ != check_b_)                                                                  \
            test_fail(__FILE__, __LINE__, "%s == %s: %lld != %lld", #a, #b, check_a_, check_b_);   \
    } while (0)

#define CHECK_UINT_EQ(a, b)                                                                        \
    do {                                                                                           \
        unsigned long long check_a_ = (unsigned long long)(a);                                     \
        unsigned long long check_b_ = (unsigned long long)(b);                                     \
        if (check_a_ != check_b_)                                                                  \
            test_fail(__FILE__, __LINE__, "%s == %s: %llu != %llu", #a, #b, check_a_, check_b_);   \
    } while (0)

#define CHECK_UINT_LE(a, b)                                                                        \
    do {                                                                                           \
        unsigned long long check_a_ = (unsigned long long)(a);                                     \
        unsigned long long check_b_ = (unsigned long long)(b);                                     \
        if (!(check_a_ <= check_b_))                                                               \
            test_fail(__FILE__, __LINE__, "%s <= %s: %llu > %llu", #a, #b, check_a_, check_b_);    \
    } while (0)

#define CHECK_DBL_NEAR(a, b, tol)                                                                  \
    do {                                                                                           \
        double check_a_ = (double)(a), check_b_ = (double)(b), check_t_ = (double)(tol);           \
        if (!(check_a_ - check_b_ <= check_t_ && check_b_ - check_a_ <= check_t_))                 \
            test_fail(__FILE__, __LINE__, "%s ~= %s (tol %g): %.17g vs %.17g", #a, #b, check_t_,   \
                      check_a_, check_b_);                                                         \
    } while (0)

#define CHECK_STR_EQ(a, b)                                                                         \
    do {                                                                                           \
        const char *check_a_ = (a), *check_b_ = (b);                                               \
        if (check_a_ == NULL || check_b_ == NULL || strcmp(check_a_, check_b_) != 0)               \
            test_fail(__FILE__, __LINE__, "%s == %s: \"%s\" != \"%s\"", #a, #b,                    \
                      check_a_ ? check_a_ : "(null)", check_b_ ? check_b_ : "(null)");             \
    } while (0)

#define CHECK_MEM_EQ(a, b, n)                                                                      \
    do {                                                                                           \
        const unsigned char *check_a_ = (const unsigned char *)(a);                                \
        const unsigned char *check_b_ = (const unsigned char *)(b);                                \
        size_t check_n_ = (n);                                                                     \
        for (size_t check_i_ = 0; check_i_ < check_n_; check_i_++)                                 \
            if (check_a_[check_i_] != check_b_[check_i_])                                          \
                test_fail(__FILE__, __LINE__, "%s and %s differ at byte %zu: 0x%02x != 0x%02x",    \
                          #a, #b, check_i_, check_a_[check_i_], check_b_[check_i_]);               \
    } while (0)

/* Checks that a gencache call returned the expected code, naming both codes on failure. */
#define CHECK_RC(expr, expected)                                                                   \
    do {                                                                                           \
        int check_rc_ = (expr), check_want_ = (expected);                                          \
        if (check_rc_ != check_want_)                                                              \
            test_fail(__FILE__, __LINE__, "%s returned %s (%d), expected %s (%d)", #expr,          \
                      gencache_errname(check_rc_), check_rc_, gencache_errname(check_want_),       \
                      check_want_);                                                                \
    } while (0)

#define CHECK_OK(expr) CHECK_RC(expr, GENCACHE_OK)

#endif
