/*
 * test_key_vectors.c: the C library against the golden vectors of tests/vectors/keys.json, which
 * an independent Python implementation produced. Every vector's canonical documents, keys,
 * uncacheable layers and normalized prompt must match byte for byte; every invalid request must be
 * refused with the recorded error code.
 */
#include <jansson.h>

#include "test.h"

static json_t *load_vectors(void)
{
    const char *src = getenv("GENCACHE_SOURCE_DIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/vectors/keys.json", src ? src : ".");
    json_error_t err;
    json_t *doc = json_load_file(path, 0, &err);
    if (!doc)
        test_fail(__FILE__, __LINE__, "cannot load %s: %s", path, err.text);
    return doc;
}

static gencache_keyspace *keyspace_for(const json_t *v)
{
    gencache_keyspace *ks = NULL;
    CHECK_OK(gencache_keyspace_new(&ks));
    const char *mode = json_string_value(json_object_get(v, "mode"));
    gencache_norm_mode m;
    if (mode) {
        CHECK_OK(gencache_norm_mode_parse(mode, &m));
        CHECK_OK(gencache_keyspace_set_mode(ks, NULL, m));
    }
    const char *model;
    json_t *name;
    json_object_foreach(json_object_get(v, "modes"), model, name)
    {
        CHECK_OK(gencache_norm_mode_parse(json_string_value(name), &m));
        CHECK_OK(gencache_keyspace_set_mode(ks, model, m));
    }
    return ks;
}

TEST_CASE(vectors_match)
{
    json_t *doc = load_vectors();
    json_t *vectors = json_object_get(doc, "vectors");
    CHECK(json_array_size(vectors) >= 60);
    size_t i;
    json_t *v;
    json_array_foreach(vectors, i, v)
    {
        const char *name = json_string_value(json_object_get(v, "name"));
        const char *text = json_string_value(json_object_get(v, "request"));
        gencache_keyspace *ks = keyspace_for(v);
        gencache_request *req = NULL;
        char err[GENCACHE_ERRMSG_MAX];
        int rc = gencache_request_parse_ex(ks, text, strlen(text), GENCACHE_REQUEST_TRUST_TENANT,
                                           &req, err, sizeof err);
        if (rc != GENCACHE_OK)
            test_fail(__FILE__, __LINE__, "vector %s: parse failed: %s", name, err);
        const char *tenant = json_string_value(json_object_get(v, "tenant"));
        if (tenant)
            CHECK_OK(gencache_request_set_tenant(req, tenant));
        const json_t *want_prompt = json_object_get(v, "prompt");
        if (json_is_string(want_prompt))
            CHECK_STR_EQ(gencache_request_prompt(req), json_string_value(want_prompt));
        else
            CHECK(gencache_request_prompt(req) == NULL);
        const char *layer;
        json_t *want;
        json_object_foreach(json_object_get(v, "layers"), layer, want)
        {
            char key[GENCACHE_KEY_MAX];
            rc = gencache_request_key(req, layer, key, sizeof key);
            if (json_is_true(json_object_get(want, "uncacheable"))) {
                if (rc != GENCACHE_EUNCACHEABLE)
                    test_fail(__FILE__, __LINE__,
                              "vector %s layer %s: expected uncacheable, got %s", name, layer,
                              gencache_errname(rc));
                CHECK(gencache_request_uncacheable_reason(req, layer) != NULL);
                continue;
            }
            if (rc != GENCACHE_OK)
                test_fail(__FILE__, __LINE__, "vector %s layer %s: %s", name, layer,
                          gencache_errname(rc));
            char *canon = NULL;
            size_t canon_len = 0;
            CHECK_OK(gencache_request_canonical(req, layer, &canon, &canon_len));
            const json_t *wc = json_object_get(want, "canonical");
            if (canon_len != json_string_length(wc) ||
                memcmp(canon, json_string_value(wc), canon_len) != 0)
                test_fail(__FILE__, __LINE__, "vector %s layer %s: canonical\n%s\nexpected\n%s",
                          name, layer, canon, json_string_value(wc));
            gencache_free(canon);
            if (strcmp(key, json_string_value(json_object_get(want, "key"))) != 0)
                test_fail(__FILE__, __LINE__, "vector %s layer %s: key %s expected %s", name, layer,
                          key, json_string_value(json_object_get(want, "key")));
            CHECK(gencache_request_uncacheable_reason(req, layer) == NULL);
        }
        gencache_request_free(req);
        gencache_keyspace_free(ks);
    }
    json_decref(doc);
}

static int hexval(char c)
{
    return c <= '9' ? c - '0' : c - 'a' + 10;
}

TEST_CASE(invalid_requests_refused)
{
    json_t *doc = load_vectors();
    json_t *invalid = json_object_get(doc, "invalid");
    CHECK(json_array_size(invalid) >= 30);
    size_t i;
    json_t *v;
    json_array_foreach(invalid, i, v)
    {
        const char *name = json_string_value(json_object_get(v, "name"));
        const char *want = json_string_value(json_object_get(v, "error"));
        char buf[1024];
        size_t len;
        const char *hex = json_string_value(json_object_get(v, "request_hex"));
        if (hex) {
            len = strlen(hex) / 2;
            CHECK(len < sizeof buf);
            for (size_t k = 0; k < len; k++)
                buf[k] = (char)(hexval(hex[2 * k]) * 16 + hexval(hex[2 * k + 1]));
        } else {
            const json_t *t = json_object_get(v, "request");
            len = json_string_length(t);
            CHECK(len < sizeof buf);
            memcpy(buf, json_string_value(t), len);
        }
        gencache_keyspace *ks = keyspace_for(v);
        gencache_request *req = (gencache_request *)1;
        char err[GENCACHE_ERRMSG_MAX];
        int rc = gencache_request_parse_ex(ks, buf, len, GENCACHE_REQUEST_TRUST_TENANT, &req, err,
                                           sizeof err);
        if (strcmp(gencache_errname(rc), want) != 0)
            test_fail(__FILE__, __LINE__, "invalid %s: got %s, expected %s", name,
                      gencache_errname(rc), want);
        CHECK(req == NULL);
        if (err[0] == '\0')
            test_fail(__FILE__, __LINE__, "invalid %s: no error message", name);
        gencache_keyspace_free(ks);
    }
    json_decref(doc);
}
