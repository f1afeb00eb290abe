/*
 * error.c: names and messages of the error codes, generated from GENCACHE_ERRNO_MAP so that the
 * enum, the names and the sentences can never disagree.
 */
#include "internal.h"

const char *gencache_strerror(int err)
{
    switch (err) {
#define GENCACHE_ERRNO_MSG(name, code, msg)                                                        \
    case (code):                                                                                   \
        return (msg);
        GENCACHE_ERRNO_MAP(GENCACHE_ERRNO_MSG)
#undef GENCACHE_ERRNO_MSG
    }
    return "unknown error";
}

const char *gencache_errname(int err)
{
    switch (err) {
#define GENCACHE_ERRNO_NAME(name, code, msg)                                                       \
    case (code):                                                                                   \
        return #name;
        GENCACHE_ERRNO_MAP(GENCACHE_ERRNO_NAME)
#undef GENCACHE_ERRNO_NAME
    }
    return "EUNKNOWN";
}

const char *gencache_version(void)
{
    return GENCACHE_VERSION_STRING;
}
