/*
 * test_gencached_multipart.c: the daemon's multipart/form-data parser (tools/gencached/
 * multipart.c) without a socket: well-formed forms (with a preamble, an epilogue, quoted
 * parameters, binary parts holding CR, LF and dashes), and every way a form can be malformed,
 * each refused with a message.
 */
#include "multipart.h"
#include "test.h"

#define CT "multipart/form-data; boundary=XyZ"

static int parse(const char *ct, const char *body, size_t len, gcd_part *parts, size_t *n,
                 char *err)
{
    return gcd_multipart_parse(ct, body, len, parts, n, err, 256);
}

TEST_CASE(two_parts)
{
    static const char body[] = "--XyZ\r\n"
                               "Content-Disposition: form-data; name=\"request\"\r\n"
                               "Content-Type: application/json\r\n"
                               "\r\n"
                               "{\"layer\": \"image_latent\"}\r\n"
                               "--XyZ\r\n"
                               "content-disposition: form-data; name=image; filename=\"a.png\"\r\n"
                               "\r\n"
                               "\x89PNG\r\n--X\0\r\n-\r\n"
                               "--XyZ--\r\n";
    gcd_part parts[GCD_MULTIPART_MAX_PARTS];
    size_t n = 0;
    char err[256] = "";
    CHECK_INT_EQ(parse(CT, body, sizeof body - 1, parts, &n, err), 0);
    CHECK_UINT_EQ(n, 2);
    CHECK_STR_EQ(parts[0].name, "request");
    CHECK_STR_EQ(parts[0].content_type, "application/json");
    CHECK(!parts[0].has_filename);
    CHECK_UINT_EQ(parts[0].len, 25);
    CHECK(memcmp(parts[0].data, "{\"layer\": \"image_latent\"}", 25) == 0);
    CHECK_STR_EQ(parts[1].name, "image");
    CHECK(parts[1].has_filename);
    CHECK_STR_EQ(parts[1].content_type, "");
    CHECK_UINT_EQ(parts[1].len, 13); /* a NUL, CR, LF and dashes inside are data */
    CHECK(memcmp(parts[1].data, "\x89PNG\r\n--X\0\r\n-", 13) == 0);
    CHECK(gcd_multipart_find(parts, n, "image") == &parts[1]);
    CHECK(gcd_multipart_find(parts, n, "nope") == NULL);
}

TEST_CASE(preamble_epilogue_quoted_boundary)
{
    static const char body[] = "this is a preamble\r\n"
                               "--a b'c\r\n"
                               "Content-Disposition: form-data; name=\"x\"\r\n"
                               "\r\n"
                               "\r\n" /* an empty-looking part: its data is nothing */
                               "--a b'c--\r\nepilogue --a b'c";
    gcd_part parts[GCD_MULTIPART_MAX_PARTS];
    size_t n = 0;
    char err[256] = "";
    CHECK_INT_EQ(parse("Multipart/Form-Data; charset=utf-8; boundary=\"a b'c\"", body,
                       sizeof body - 1, parts, &n, err),
                 0);
    CHECK_UINT_EQ(n, 1);
    CHECK_UINT_EQ(parts[0].len, 0);
    CHECK(gcd_multipart_is_form(" multipart/form-data"));
    CHECK(!gcd_multipart_is_form("multipart/form-datax"));
    CHECK(!gcd_multipart_is_form("application/json"));
    CHECK(!gcd_multipart_is_form(NULL));
}

/* Every malformed form: refused, with a message. */
TEST_CASE(malformed_forms)
{
    static const struct {
        const char *ct, *body;
    } bad[] = {
        {"application/json", "{}"},
        {"multipart/form-data", "--XyZ\r\n\r\n--XyZ--"},          /* no boundary */
        {"multipart/form-data; boundary=", "--\r\n"},             /* empty boundary */
        {"multipart/form-data; boundary=\"unterminated", "--x"},  /* bad quoting */
        {"multipart/form-data; boundary=a\x01b", "--a\x01b\r\n"}, /* forbidden byte */
        {"multipart/form-data; boundary=ends-in-space ", "--x"},  /* unquoted: trimmed */
        {"multipart/form-data; boundary="
         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
         "--a"},  /* 71 characters */
        {CT, ""}, /* empty body */
        {CT, "no boundary anywhere"},
        {CT, "--XyZ--\r\n"},                                             /* no parts */
        {CT, "--XyZ"},                                                   /* ends at once */
        {CT, "--XyZjunk\r\n"},                                           /* no CRLF */
        {CT, "--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n"}, /* headers never end */
        {CT, "--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nvalue"}, /* truncated */
        {CT, "--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nvalue\r\n--XyZ"},
        {CT, "--XyZ\r\n\r\nvalue\r\n--XyZ--"},                         /* no headers */
        {CT, "--XyZ\r\nContent-Type: text/plain\r\n\r\nv\r\n--XyZ--"}, /* no disposition */
        {CT, "--XyZ\r\nContent-Disposition: attachment; name=\"a\"\r\n\r\nv\r\n--XyZ--"},
        {CT, "--XyZ\r\nContent-Disposition: form-data\r\n\r\nv\r\n--XyZ--"}, /* no name */
        {CT, "--XyZ\r\nContent-Disposition: form-data; name=\"\"\r\n\r\nv\r\n--XyZ--"},
        {CT, "--XyZ\r\nContent-Disposition: form-data; name=\"a\r\n\r\nv\r\n--XyZ--"},
        {CT, "--XyZ\r\nno colon here\r\n\r\nv\r\n--XyZ--"},
        {CT, "--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n"
             "--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n2\r\n--XyZ--"},
        {CT, "--XyZ\r\nContent-Disposition: form-data; name=\"\xc3\xa9\"\r\n\r\nv\r\n--XyZ--"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        gcd_part parts[GCD_MULTIPART_MAX_PARTS];
        size_t n = 99;
        char err[256] = "";
        if (parse(bad[i].ct, bad[i].body, strlen(bad[i].body), parts, &n, err) != -1)
            test_fail(__FILE__, __LINE__, "case %zu accepted: %s", i, bad[i].body);
        CHECK(err[0] != '\0');
        CHECK_UINT_EQ(n, 0);
    }
}

TEST_CASE(too_many_parts_and_long_headers)
{
    char body[4096];
    size_t n = 0;
    for (int i = 0; i <= GCD_MULTIPART_MAX_PARTS; i++)
        n += (size_t)snprintf(body + n, sizeof body - n,
                              "--XyZ\r\nContent-Disposition: form-data; name=\"p%d\"\r\n\r\nv\r\n",
                              i);
    n += (size_t)snprintf(body + n, sizeof body - n, "--XyZ--\r\n");
    gcd_part parts[GCD_MULTIPART_MAX_PARTS];
    size_t got = 0;
    char err[256] = "";
    CHECK_INT_EQ(parse(CT, body, n, parts, &got, err), -1);
    CHECK(strstr(err, "more than") != NULL);

    n = (size_t)snprintf(body, sizeof body, "--XyZ\r\nX-Long: ");
    memset(body + n, 'a', 600);
    n += 600;
    n += (size_t)snprintf(body + n, sizeof body - n,
                          "\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nv\r\n--XyZ--");
    CHECK_INT_EQ(parse(CT, body, n, parts, &got, err), -1);
    CHECK(strstr(err, "longer") != NULL);
}

/* Every prefix of a good form is refused (a truncated upload), never read past its end. */
TEST_CASE(every_truncation_refused)
{
    static const char body[] = "--XyZ\r\n"
                               "Content-Disposition: form-data; name=\"request\"\r\n"
                               "\r\n"
                               "{}\r\n"
                               "--XyZ\r\n"
                               "Content-Disposition: form-data; name=\"image\"\r\n"
                               "\r\n"
                               "bytes\r\n"
                               "--XyZ--";
    gcd_part parts[GCD_MULTIPART_MAX_PARTS];
    size_t n = 0;
    char err[256];
    CHECK_INT_EQ(parse(CT, body, sizeof body - 1, parts, &n, err), 0);
    for (size_t len = 0; len < sizeof body - 2; len++) {
        char *copy = malloc(len ? len : 1); /* exactly len bytes: ASan sees any overread */
        memcpy(copy, body, len);
        int rc = parse(CT, copy, len, parts, &n, err);
        free(copy);
        if (rc != -1)
            test_fail(__FILE__, __LINE__, "a prefix of %zu bytes was accepted", len);
    }
}
