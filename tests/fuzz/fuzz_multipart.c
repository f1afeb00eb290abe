/*
 * fuzz_multipart.c: libFuzzer target for the daemon's multipart/form-data parser
 * (tools/gencached/multipart.c, compiled in here: it is a pure function of its input), the body
 * of a multipart lookup. Any byte string must be split into parts that lie inside it, each with
 * a name, or be refused with a message. The first byte picks one of a few boundaries.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../tools/gencached/multipart.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const types[] = {
        "multipart/form-data; boundary=XyZ",
        "multipart/form-data; boundary=\"a b'c\"",
        "multipart/form-data; boundary=-",
        "multipart/form-data",
    };
    if (size == 0)
        return 0;
    const char *ct = types[data[0] % 4];
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    gcd_part parts[GCD_MULTIPART_MAX_PARTS];
    size_t n = 0;
    char err[256] = "";
    if (gcd_multipart_parse(ct, body, len, parts, &n, err, sizeof err) != 0) {
        if (n != 0 || err[0] == '\0')
            abort();
        return 0;
    }
    if (n == 0 || n > GCD_MULTIPART_MAX_PARTS)
        abort();
    for (size_t i = 0; i < n; i++) {
        if (!parts[i].name[0] || parts[i].data < body || parts[i].data + parts[i].len > body + len)
            abort();
        if (gcd_multipart_find(parts, n, parts[i].name) != &parts[i])
            abort(); /* names are unique */
    }
    return 0;
}
