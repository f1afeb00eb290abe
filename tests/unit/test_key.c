/*
 * test_key.c: prompt normalization, layer recipes and key derivation (src/key/). The cases show
 * the parameter-sensitivity matrix (what changes which layer's key), that the lossless modes merge
 * only what the encoders' cleaning merges, and that every malformed input gets a clear error.
 */
#include <stdbool.h>

#include "test.h"
#include "key/key.h"

#define DIGEST_A "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static char *norm(gencache_norm_mode mode, const char *s)
{
    char *out = NULL;
    size_t len = 0;
    CHECK_OK(gencache_normalize(mode, s, strlen(s), &out, &len));
    CHECK_UINT_EQ(len, strlen(out));
    return out;
}

static void check_norm(gencache_norm_mode mode, const char *in, const char *want)
{
    char *got = norm(mode, in);
    if (strcmp(got, want) != 0)
        test_fail(__FILE__, __LINE__, "%s(\"%s\") = \"%s\", expected \"%s\"",
                  gencache_norm_mode_name(mode), in, got, want);
    gencache_free(got);
}

static gencache_request *parse_ks(const gencache_keyspace *ks, const char *json)
{
    gencache_request *req = NULL;
    char err[GENCACHE_ERRMSG_MAX];
    int rc = gencache_request_parse_ex(ks, json, strlen(json), GENCACHE_REQUEST_TRUST_TENANT, &req,
                                       err, sizeof err);
    if (rc != GENCACHE_OK)
        test_fail(__FILE__, __LINE__, "parse %s: %s (%s)", json, err, gencache_errname(rc));
    return req;
}

static gencache_request *parse(const char *json)
{
    return parse_ks(NULL, json);
}

/* The key of `layer` for a request, in a static buffer slot (two slots, for comparisons). */
static const char *key_of(const char *json, const char *layer, gencache_norm_mode mode)
{
    static char slots[2][GENCACHE_KEY_MAX];
    static int slot;
    gencache_keyspace *ks = NULL;
    CHECK_OK(gencache_keyspace_new(&ks));
    CHECK_OK(gencache_keyspace_set_mode(ks, NULL, mode));
    gencache_request *req = parse_ks(ks, json);
    char *out = slots[slot];
    slot ^= 1;
    int rc = gencache_request_key(req, layer, out, GENCACHE_KEY_MAX);
    if (rc != GENCACHE_OK)
        test_fail(__FILE__, __LINE__, "key %s of %s: %s", layer, json, gencache_errname(rc));
    gencache_request_free(req);
    gencache_keyspace_free(ks);
    return out;
}

#define SAME(a, b, layer, mode)   CHECK_STR_EQ(key_of(a, layer, mode), key_of(b, layer, mode))
#define DIFFER(a, b, layer, mode) CHECK(strcmp(key_of(a, layer, mode), key_of(b, layer, mode)) != 0)

TEST_CASE(mode_names_round_trip)
{
    for (int m = GENCACHE_NORM_EXACT; m <= GENCACHE_NORM_AGGRESSIVE; m++) {
        gencache_norm_mode got;
        CHECK_OK(gencache_norm_mode_parse(gencache_norm_mode_name((gencache_norm_mode)m), &got));
        CHECK_INT_EQ(got, m);
    }
    gencache_norm_mode got = GENCACHE_NORM_CLIP;
    CHECK_RC(gencache_norm_mode_parse("SAFE", &got), GENCACHE_EINVAL);
    CHECK_INT_EQ(got, GENCACHE_NORM_SAFE);
    CHECK_RC(gencache_norm_mode_parse(NULL, &got), GENCACHE_EINVAL);
    CHECK(gencache_norm_mode_name((gencache_norm_mode)99) == NULL);
}

TEST_CASE(safe_collapses_ascii_white_space)
{
    check_norm(GENCACHE_NORM_SAFE, "  a   red\tfox\r\n running  ", "a red fox running");
    check_norm(GENCACHE_NORM_SAFE, "A Red Fox", "A Red Fox");
    check_norm(GENCACHE_NORM_SAFE, " \t\r\n", "");
    check_norm(GENCACHE_NORM_SAFE, "", "");
    check_norm(GENCACHE_NORM_CLIP, "  A Red\tFOX ", "a red fox");
    check_norm(GENCACHE_NORM_EXACT, "  A  b ", "  A  b ");
    check_norm(GENCACHE_NORM_TOKENS, "  A  b ", "  A  b ");
}

/* An empty prompt (and one of white space only) normalizes to "" in every mode; clang's UBSan
 * caught arithmetic on the empty output buffer's null pointer here. */
TEST_CASE(empty_prompt_normalizes_to_empty)
{
    for (int m = GENCACHE_NORM_EXACT; m <= GENCACHE_NORM_AGGRESSIVE; m++) {
        if (m == GENCACHE_NORM_TOKENS)
            continue;
        check_norm((gencache_norm_mode)m, "", "");
    }
    check_norm(GENCACHE_NORM_SAFE, " \t\r\n ", "");
    check_norm(GENCACHE_NORM_CLIP, "   ", "");
}

TEST_CASE(lossless_modes_leave_other_prompts_alone)
{
    /* Entities, controls, exotic spaces, full-width forms, combining marks, mojibake: the
     * encoders' cleaning may treat any of these in context, so safe and clip must not touch them,
     * not even their ASCII white space or letters. */
    static const char *const inputs[] = {
        "salt &amp; pepper  Mix",
        "salt & Pepper",
        "A\xc2\xa0  B",
        "a\x0b  B",
        "a\x0c  B",
        "a\x1c  B",
        "a\x01  B",
        "a\x7f  B",
        "a\x1b[31m  B",
        "\xef\xbc\xa1\xef\xbc\xa2  C",
        "cafe\xcc\x81  Noir",
        "caf\xc3\xa9  Noir",
        "caf\xc3\x83\xc2\xa9  Noir",
        "\xe2\x80\x9cQuoted\xe2\x80\x9d  text",
        "\xe3\x80\x80ideographic  Space",
        "Zero\xe2\x80\x8bwidth  Space",
        "\xd9\x82\xd8\xb7\xd8\xa9  Cat",
        "emoji \xf0\x9f\x90\xb6  Dog",
    };
    for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++) {
        check_norm(GENCACHE_NORM_SAFE, inputs[i], inputs[i]);
        check_norm(GENCACHE_NORM_CLIP, inputs[i], inputs[i]);
    }
}

TEST_CASE(invalid_utf8_refused)
{
    static const char *const bad[] = {
        "\xff",         "\xc0\xaf", "\xe0\x80\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80",
        "\xf8\x88\x80", "\xe2\x82", "a\x80",        "\xc3",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        for (int m = GENCACHE_NORM_EXACT; m <= GENCACHE_NORM_AGGRESSIVE; m++) {
            char *out = (char *)1;
            size_t len = 7;
            CHECK_RC(gencache_normalize((gencache_norm_mode)m, bad[i], strlen(bad[i]), &out, &len),
                     GENCACHE_EPARSE);
            CHECK(out == NULL);
            CHECK_UINT_EQ(len, 0);
        }
    }
    char *out = NULL;
    CHECK_RC(gencache_normalize(GENCACHE_NORM_SAFE, "a\0b", 3, &out, NULL), GENCACHE_EPARSE);
    CHECK_RC(gencache_normalize(GENCACHE_NORM_SAFE, NULL, 3, &out, NULL), GENCACHE_EINVAL);
    CHECK_RC(gencache_normalize(GENCACHE_NORM_SAFE, "a", 1, NULL, NULL), GENCACHE_EINVAL);
    CHECK_RC(gencache_normalize((gencache_norm_mode)42, "a", 1, &out, NULL), GENCACHE_EINVAL);
    CHECK_OK(gencache_normalize(GENCACHE_NORM_SAFE, NULL, 0, &out, NULL));
    CHECK_STR_EQ(out, "");
    gencache_free(out);
    gencache_free(NULL);
}

TEST_CASE(aggressive_folds_what_it_promises)
{
    check_norm(GENCACHE_NORM_AGGRESSIVE, "The COLOUR of Grey  Armour", "the color of gray armor");
    check_norm(GENCACHE_NORM_AGGRESSIVE,
               "\xef\xbc\xa1\xef\xbc\xa2\xef\xbc\xa3 Stra\xc3\x9f"
               "e",
               "abc strasse");
    check_norm(GENCACHE_NORM_AGGRESSIVE, "salt &amp;amp; pepper, &quot;hot&quot;!",
               "salt pepper hot");
    check_norm(GENCACHE_NORM_AGGRESSIVE, "caf&eacute; &#233; &#xE9;",
               "caf\xc3\xa9 \xc3\xa9 \xc3\xa9");
    check_norm(GENCACHE_NORM_AGGRESSIVE, "cafe\xcc\x81", "caf\xc3\xa9");
    check_norm(GENCACHE_NORM_AGGRESSIVE, "don't  stop\xe2\x80\x99s", "dont stops");
    check_norm(GENCACHE_NORM_AGGRESSIVE, "sci-fi,cyber_punk", "sci fi cyber punk");
    check_norm(GENCACHE_NORM_AGGRESSIVE,
               "a\xc2\xa0"
               "b\xe3\x80\x80"
               "c\x0b"
               "d",
               "a b c d");
    check_norm(GENCACHE_NORM_AGGRESSIVE, "&bogus; &#0; &#x110000; &amp", "bogus 0 x110000 amp");
    check_norm(GENCACHE_NORM_AGGRESSIVE, " ... ", "");
    /* Symbols and emoji are not punctuation: they stay. */
    check_norm(GENCACHE_NORM_AGGRESSIVE, "a+b \xf0\x9f\x90\xb6", "a+b \xf0\x9f\x90\xb6");
}

TEST_CASE(aggressive_is_idempotent)
{
    static const char *const inputs[] = {
        "The COLOUR of Grey  Armour",
        "e'\xcc\x81 x",
        "&amp;amp;lt;",
        "\xef\xbc\xa6\xef\xbd\x89",
        "A\xcc\x8a"
        "ngstr\xc3\xb6m",
        "\xe2\x84\xab",
        "\xef\xac\x81ne",
        "x \xcc\x81 y",
        "ΣΊΣΥΦΟΣ ς",
        "İstanbul",
        "ǅemal",
        "a.b.c",
    };
    for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++) {
        char *once = norm(GENCACHE_NORM_AGGRESSIVE, inputs[i]);
        char *twice = norm(GENCACHE_NORM_AGGRESSIVE, once);
        if (strcmp(once, twice) != 0)
            test_fail(__FILE__, __LINE__, "not idempotent on \"%s\": \"%s\" then \"%s\"", inputs[i],
                      once, twice);
        gencache_free(once);
        gencache_free(twice);
    }
}

TEST_CASE(spelling_table_matches_tsv)
{
    const char *src = getenv("GENCACHE_SOURCE_DIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/data/british_american.tsv", src ? src : ".");
    FILE *f = fopen(path, "r");
    CHECK(f != NULL);
    char line[256];
    size_t n = 0;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#' || line[0] == '\n')
            continue;
        char *tab = strchr(line, '\t'), *nl = strchr(line, '\n');
        CHECK(tab && nl);
        *tab = '\0', *nl = '\0';
        const char *b, *a;
        gencache__key_spelling_get(n, &b, &a);
        CHECK(b != NULL);
        CHECK_STR_EQ(b, line);
        CHECK_STR_EQ(a, tab + 1);
        CHECK_STR_EQ(gencache__key_american(line, strlen(line)), tab + 1);
        n++;
    }
    fclose(f);
    CHECK_UINT_EQ(n, gencache__key_spelling_count());
    CHECK(n >= 200);
    CHECK(gencache__key_american("color", 5) == NULL);
}

TEST_CASE(synonyms_apply_in_aggressive_mode)
{
    gencache_keyspace *ks = NULL;
    CHECK_OK(gencache_keyspace_new(&ks));
    CHECK_OK(gencache_keyspace_set_mode(ks, NULL, GENCACHE_NORM_AGGRESSIVE));
    CHECK_OK(gencache_keyspace_add_synonym(ks, "Kitten", "cat"));
    CHECK_OK(gencache_keyspace_add_synonym(ks, "puppy", "young dog"));
    CHECK_OK(gencache_keyspace_add_synonym(ks, "colour", "hue")); /* keyed as "color" */
    CHECK_OK(gencache_keyspace_add_synonym(ks, "puppy", "dog"));  /* replaces */
    CHECK_RC(gencache_keyspace_add_synonym(ks, "two words", "x"), GENCACHE_EINVAL);
    CHECK_RC(gencache_keyspace_add_synonym(ks, "...", "x"), GENCACHE_EINVAL);
    CHECK_RC(gencache_keyspace_add_synonym(ks, "x", ""), GENCACHE_EINVAL);
    CHECK_RC(gencache_keyspace_add_synonym(ks, "\xff", "x"), GENCACHE_EINVAL);
    CHECK_RC(gencache_keyspace_add_synonym(ks, NULL, "x"), GENCACHE_EINVAL);
    gencache_request *req = parse_ks(ks, "{\"prompt\": \"A KITTEN, a Puppy & the Colour red\"}");
    CHECK_STR_EQ(gencache_request_prompt(req), "a cat a dog the hue red");
    gencache_request_free(req);
    gencache_keyspace_free(ks);
}

#define BASE                                                                                       \
    "\"model\": \"wan\", \"seed\": 1, \"steps\": 30, \"guidance\": 5.0, \"frames\": 16, "          \
    "\"fps\": 8, \"width\": 832, \"height\": 480, \"image\": {\"digest\": \"" DIGEST_A "\"}"

TEST_CASE(white_space_and_case_merge_only_in_their_modes)
{
    const char *a = "{" BASE ", \"prompt\": \"a  red fox\\n\"}";
    const char *b = "{" BASE ", \"prompt\": \"a red\\tfox\"}";
    const char *c = "{" BASE ", \"prompt\": \"A Red FOX\"}";
    const char *layers[] = {"result", "image_latent", "text_embedding", "condition"};
    for (size_t i = 0; i < 4; i++) {
        SAME(a, b, layers[i], GENCACHE_NORM_SAFE);
        SAME(a, b, layers[i], GENCACHE_NORM_CLIP);
        SAME(a, c, layers[i], GENCACHE_NORM_CLIP);
    }
    DIFFER(a, c, "text_embedding", GENCACHE_NORM_SAFE);
    DIFFER(a, b, "text_embedding", GENCACHE_NORM_EXACT);
    DIFFER(a, b, "result", GENCACHE_NORM_EXACT);
}

TEST_CASE(escaping_nfc_and_non_ascii_keep_keys_apart)
{
    static const char *const pairs[][2] = {
        {"salt &amp; pepper", "salt & pepper"},
        {"salt &amp;  pepper", "salt &amp; pepper"},
        {"caf\\u00e9", "cafe\\u0301"},
        {"a\\u00a0b", "a b"},
        {"\\uff21 b", "A b"},
        {"a \\u2003b", "a b"},
        {"\\u201cx\\u201d", "\\\"x\\\""},
        {"A\\u00e9  b", "a\\u00e9 b"},
    };
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        char a[256], b[256];
        snprintf(a, sizeof a, "{" BASE ", \"prompt\": \"%s\"}", pairs[i][0]);
        snprintf(b, sizeof b, "{" BASE ", \"prompt\": \"%s\"}", pairs[i][1]);
        DIFFER(a, b, "text_embedding", GENCACHE_NORM_SAFE);
        DIFFER(a, b, "text_embedding", GENCACHE_NORM_CLIP);
        DIFFER(a, b, "result", GENCACHE_NORM_CLIP);
    }
}

TEST_CASE(equal_tokens_share_keys_whatever_the_text)
{
    const char *a = "{" BASE ", \"prompt\": \"A photo\", \"prompt_tokens\": [1, 2, 3], "
                    "\"tokenizer\": \"clip@1\"}";
    const char *b = "{" BASE ", \"prompt\": \"a   PHOTO!!\", \"prompt_tokens\": [1, 2, 3], "
                    "\"tokenizer\": \"clip@1\"}";
    const char *c = "{" BASE ", \"prompt\": \"A photo\", \"prompt_tokens\": [1, 2, 4], "
                    "\"tokenizer\": \"clip@1\"}";
    const char *d = "{" BASE ", \"prompt\": \"A photo\", \"prompt_tokens\": [1, 2, 3], "
                    "\"tokenizer\": \"clip@2\"}";
    const char *layers[] = {"result", "text_embedding", "condition"};
    for (size_t i = 0; i < 3; i++) {
        SAME(a, b, layers[i], GENCACHE_NORM_TOKENS);
        DIFFER(a, c, layers[i], GENCACHE_NORM_TOKENS);
        DIFFER(a, d, layers[i], GENCACHE_NORM_TOKENS);
        DIFFER(a, b, layers[i], GENCACHE_NORM_SAFE);
    }
}

TEST_CASE(generation_params_change_result_not_image_latent)
{
    const char *base = "{" BASE ", \"prompt\": \"fox\", \"params\": {\"lora\": 0.5}}";
    static const char *const variants[][2] = {
        {"\"seed\": 1", "\"seed\": 2"},
        {"\"steps\": 30", "\"steps\": 31"},
        {"\"guidance\": 5.0", "\"guidance\": 5.5"},
        {"\"frames\": 16", "\"frames\": 24"},
        {"\"fps\": 8", "\"fps\": 12"},
        {"\"lora\": 0.5", "\"lora\": 0.6"},
        {"\"lora\": 0.5", "\"lora\": 0.5, \"x\": true"},
        {"\"prompt\": \"fox\"", "\"prompt\": \"owl\""},
    };
    for (size_t i = 0; i < sizeof variants / sizeof variants[0]; i++) {
        char other[512];
        const char *at = strstr(base, variants[i][0]);
        CHECK(at != NULL);
        snprintf(other, sizeof other, "%.*s%s%s", (int)(at - base), base, variants[i][1],
                 at + strlen(variants[i][0]));
        DIFFER(base, other, "result", GENCACHE_NORM_SAFE);
        SAME(base, other, "image_latent", GENCACHE_NORM_SAFE);
        if (i < 7) {
            SAME(base, other, "text_embedding", GENCACHE_NORM_SAFE);
            SAME(base, other, "condition", GENCACHE_NORM_SAFE);
        } else {
            DIFFER(base, other, "text_embedding", GENCACHE_NORM_SAFE);
        }
    }
}

TEST_CASE(resolution_crop_rotation_change_image_latent)
{
    const char *base = "{" BASE ", \"crop\": [0, 0, 64, 64], \"rotation\": 0}";
    static const char *const variants[][2] = {
        {"\"width\": 832", "\"width\": 640"},
        {"\"height\": 480", "\"height\": 360"},
        {"64, 64]", "32, 64]"},
        {"\"rotation\": 0", "\"rotation\": 90"},
        {"\"rotation\": 0", "\"rotation\": 0.5"},
        {"0123456789abcdef\"", "0123456789abcdee\""},
        {"\"model\": \"wan\"", "\"model\": \"svd\""},
    };
    for (size_t i = 0; i < sizeof variants / sizeof variants[0]; i++) {
        char other[512];
        const char *at = strstr(base, variants[i][0]);
        CHECK(at != NULL);
        snprintf(other, sizeof other, "%.*s%s%s", (int)(at - base), base, variants[i][1],
                 at + strlen(variants[i][0]));
        DIFFER(base, other, "image_latent", GENCACHE_NORM_SAFE);
        DIFFER(base, other, "result", GENCACHE_NORM_SAFE);
    }
}

TEST_CASE(seedless_result_is_uncacheable)
{
    gencache_request *req = parse("{\"model\": \"m\", \"prompt\": \"fox\"}");
    char key[GENCACHE_KEY_MAX] = "junk";
    CHECK_RC(gencache_request_key(req, "result", key, sizeof key), GENCACHE_EUNCACHEABLE);
    CHECK_STR_EQ(key, "");
    CHECK(strstr(gencache_request_uncacheable_reason(req, "result"), "seed") != NULL);
    char *canon = (char *)1;
    CHECK_RC(gencache_request_canonical(req, "result", &canon, NULL), GENCACHE_EUNCACHEABLE);
    CHECK(canon == NULL);
    CHECK_OK(gencache_request_key(req, "text_embedding", key, sizeof key));
    CHECK_RC(gencache_request_key(req, "image_latent", key, sizeof key), GENCACHE_EUNCACHEABLE);
    CHECK_RC(gencache_request_key(req, "session", key, sizeof key), GENCACHE_EUNCACHEABLE);
    CHECK_RC(gencache_request_key(req, "nope", key, sizeof key), GENCACHE_ENOTFOUND);
    CHECK(gencache_request_uncacheable_reason(req, "nope") == NULL);
    gencache_request_free(req);

    req = parse("{\"model\": \"m\", \"prompt\": \"fox\", \"cache\": \"allow_random\"}");
    CHECK_OK(gencache_request_key(req, "result", key, sizeof key));
    CHECK(strncmp(key, "result/", 7) == 0 && strlen(key) == 7 + 64);
    gencache_request_free(req);
    /* "cache" is a directive, never a parameter. */
    SAME("{\"seed\": 1, \"cache\": \"allow_random\"}", "{\"seed\": 1}", "result",
         GENCACHE_NORM_SAFE);
}

TEST_CASE(tenant_scope_and_trust)
{
    const char *body = "{\"seed\": 1, \"prompt\": \"fox\", \"tenant\": \"acme\"}";
    gencache_request *trusted = parse(body), *untrusted = NULL;
    CHECK_OK(gencache_request_parse(NULL, body, strlen(body), 0, &untrusted));
    char k1[GENCACHE_KEY_MAX], k2[GENCACHE_KEY_MAX];
    CHECK_OK(gencache_request_key(trusted, "result", k1, sizeof k1));
    CHECK_OK(gencache_request_key(untrusted, "result", k2, sizeof k2));
    CHECK(strcmp(k1, k2) != 0); /* the untrusted body's tenant was ignored */
    CHECK_OK(gencache_request_set_tenant(untrusted, "acme"));
    CHECK_OK(gencache_request_key(untrusted, "result", k2, sizeof k2));
    CHECK_STR_EQ(k1, k2);
    /* Global layers ignore the tenant. */
    CHECK_OK(gencache_request_key(trusted, "text_embedding", k1, sizeof k1));
    CHECK_OK(gencache_request_set_tenant(untrusted, "globex"));
    CHECK_OK(gencache_request_key(untrusted, "text_embedding", k2, sizeof k2));
    CHECK_STR_EQ(k1, k2);
    CHECK_OK(gencache_request_key(trusted, "condition", k1, sizeof k1));
    CHECK_OK(gencache_request_key(untrusted, "condition", k2, sizeof k2));
    CHECK(strcmp(k1, k2) != 0);
    CHECK_RC(gencache_request_set_tenant(untrusted, ""), GENCACHE_EINVAL);
    CHECK_RC(gencache_request_set_tenant(untrusted, "\xff"), GENCACHE_EINVAL);
    CHECK_RC(gencache_request_set_tenant(NULL, "a"), GENCACHE_EINVAL);
    CHECK_OK(gencache_request_set_tenant(untrusted, NULL));
    CHECK_OK(gencache_request_key(untrusted, "result", k2, sizeof k2));
    gencache_request_free(trusted);
    gencache_request_free(untrusted);
}

TEST_CASE(custom_layers_and_recipe_errors)
{
    gencache_keyspace *ks = NULL;
    CHECK_OK(gencache_keyspace_new(&ks));
    CHECK_UINT_EQ(gencache_keyspace_layer_count(ks), 5);
    CHECK_STR_EQ(gencache_keyspace_layer_name(ks, 0), "result");
    CHECK(gencache_keyspace_layer_name(ks, 5) == NULL);
    const char *lora[] = {"model", "params.lora!"};
    CHECK_OK(gencache_keyspace_set_layer(ks, "lora_weights", lora, 2, GENCACHE_SCOPE_GLOBAL));
    const char *emb[] = {"model", "prompt"}; /* redefine: negative_prompt no longer counts */
    CHECK_OK(gencache_keyspace_set_layer(ks, "text_embedding", emb, 2, GENCACHE_SCOPE_GLOBAL));
    CHECK_UINT_EQ(gencache_keyspace_layer_count(ks), 6);

    const char *bad_name[] = {"model"};
    CHECK_RC(gencache_keyspace_set_layer(ks, "Bad", bad_name, 1, GENCACHE_SCOPE_GLOBAL),
             GENCACHE_EINVAL);
    CHECK_RC(gencache_keyspace_set_layer(ks, "", bad_name, 1, GENCACHE_SCOPE_GLOBAL),
             GENCACHE_EINVAL);
    CHECK_RC(gencache_keyspace_set_layer(ks, "x", bad_name, 0, GENCACHE_SCOPE_GLOBAL),
             GENCACHE_EINVAL);
    CHECK_RC(gencache_keyspace_set_layer(ks, "x", bad_name, 1, (gencache_scope)7), GENCACHE_EINVAL);
    const char *bad_fields[][1] = {{"a=b"}, {""}, {"a b"}, {".a"}, {"a..b"}, {"*!"}, {"a*"}};
    for (size_t i = 0; i < sizeof bad_fields / sizeof bad_fields[0]; i++)
        CHECK_RC(gencache_keyspace_set_layer(ks, "x", bad_fields[i], 1, GENCACHE_SCOPE_GLOBAL),
                 GENCACHE_EINVAL);
    char many[33][4];
    for (int i = 0; i < 33; i++)
        snprintf(many[i], sizeof many[i], "l%d", i);
    int rc = GENCACHE_OK;
    for (int i = 0; i < 33 && rc == GENCACHE_OK; i++)
        rc = gencache_keyspace_set_layer(ks, many[i], bad_name, 1, GENCACHE_SCOPE_GLOBAL);
    CHECK_RC(rc, GENCACHE_ELIMIT);

    const char *a = "{\"model\": \"m\", \"prompt\": \"p\", \"negative_prompt\": \"n1\", "
                    "\"params\": {\"lora\": {\"name\": \"x\", \"w\": 1}, \"other\": 1}}";
    const char *b = "{\"model\": \"m\", \"prompt\": \"p\", \"negative_prompt\": \"n2\", "
                    "\"params\": {\"lora\": {\"name\": \"x\", \"w\": 1}, \"other\": 2}}";
    gencache_request *ra = parse_ks(ks, a), *rb = parse_ks(ks, b);
    gencache_keyspace_free(ks); /* the requests keep the keyspace alive */
    char k1[GENCACHE_KEY_MAX], k2[GENCACHE_KEY_MAX];
    CHECK_OK(gencache_request_key(ra, "lora_weights", k1, sizeof k1));
    CHECK_OK(gencache_request_key(rb, "lora_weights", k2, sizeof k2));
    CHECK_STR_EQ(k1, k2);
    char *canon = NULL;
    CHECK_OK(gencache_request_canonical(ra, "lora_weights", &canon, NULL));
    CHECK_STR_EQ(canon, "gencache-key-v1\nlora_weights\nmodel=s:1:m\nparams.lora.name=s:1:x\n"
                        "params.lora.w=i:1\n");
    gencache_free(canon);
    CHECK_OK(gencache_request_key(ra, "text_embedding", k1, sizeof k1));
    CHECK_OK(gencache_request_key(rb, "text_embedding", k2, sizeof k2));
    CHECK_STR_EQ(k1, k2);
    char small[20];
    CHECK_RC(gencache_request_key(ra, "text_embedding", small, sizeof small), GENCACHE_EINVAL);
    CHECK_RC(gencache_request_key(ra, NULL, k1, sizeof k1), GENCACHE_EINVAL);
    CHECK_RC(gencache_request_key(NULL, "result", k1, sizeof k1), GENCACHE_EINVAL);
    gencache_request_free(ra);
    gencache_request_free(rb);

    /* A required field that is missing: no key. */
    CHECK_OK(gencache_keyspace_new(&ks));
    CHECK_OK(gencache_keyspace_set_layer(ks, "lora_weights", lora, 2, GENCACHE_SCOPE_GLOBAL));
    gencache_request *rc_req = parse_ks(ks, "{\"model\": \"m\"}");
    CHECK_RC(gencache_request_key(rc_req, "lora_weights", k1, sizeof k1), GENCACHE_EUNCACHEABLE);
    gencache_request_free(rc_req);
    gencache_keyspace_free(ks);
    gencache_keyspace_free(NULL);
}

TEST_CASE(model_selects_mode)
{
    gencache_keyspace *ks = NULL;
    CHECK_OK(gencache_keyspace_new(&ks));
    CHECK_OK(gencache_keyspace_set_mode(ks, "sd15", GENCACHE_NORM_CLIP));
    CHECK_OK(gencache_keyspace_set_mode(ks, "wan", GENCACHE_NORM_EXACT));
    CHECK_OK(gencache_keyspace_set_mode(ks, "wan", GENCACHE_NORM_SAFE));
    CHECK_RC(gencache_keyspace_set_mode(ks, NULL, (gencache_norm_mode)9), GENCACHE_EINVAL);
    gencache_request *a = parse_ks(ks, "{\"model\": \"sd15\", \"prompt\": \" A  B \"}");
    gencache_request *b = parse_ks(ks, "{\"model\": \"wan\", \"prompt\": \" A  B \"}");
    gencache_request *c = parse_ks(ks, "{\"prompt\": \" A  B \"}");
    CHECK_STR_EQ(gencache_request_prompt(a), "a b");
    CHECK_INT_EQ(gencache_request_mode(a), GENCACHE_NORM_CLIP);
    CHECK_STR_EQ(gencache_request_prompt(b), "A B");
    CHECK_STR_EQ(gencache_request_prompt(c), "A B");
    CHECK_STR_EQ(gencache_request_model(a), "sd15");
    CHECK(gencache_request_model(c) == NULL);
    gencache_request_free(a);
    gencache_request_free(b);
    gencache_request_free(c);
    gencache_keyspace_free(ks);
}

TEST_CASE(malformed_requests_get_clear_errors)
{
    static const struct {
        const char *json;
        int rc;
        const char *msg; /* a word the message must contain */
    } cases[] = {
        {"", GENCACHE_EPARSE, "invalid JSON"},
        {"{\"seed\": 1,}", GENCACHE_EPARSE, "invalid JSON"},
        {"null", GENCACHE_EPARSE, "invalid JSON"},
        {"{\"steps\": \"50\"}", GENCACHE_EINVAL, "steps"},
        {"{\"params\": {\"a\": {\"b\": [1, {\"c\": 2}]}}}", GENCACHE_EINVAL, "params.a.b"},
        {"{\"params\": {\"x\": 99999999999999999999}}", GENCACHE_ELIMIT, "64 bits"},
        {"{\"image\": {\"digest\": \"md5:00\"}}", GENCACHE_EINVAL, "image.digest"},
        {"{\"image\": {}}", GENCACHE_EINVAL, "image"},
        {"{\"image\": {\"url\": \"http://x\"}}", GENCACHE_EINVAL, "image"},
        {"{\"image\": {\"path\": \"\"}}", GENCACHE_EINVAL, "image.path"},
        {"{\"image\": {\"path\": \"/nonexistent/dir/x.png\"}}", 1, "image.path"},
        {"{\"tenant\": 5}", GENCACHE_EINVAL, "tenant"},
        {"{\"prompt_tokens\": \"1 2\"}", GENCACHE_EINVAL, "prompt_tokens"},
        {"{\"a\": [[[[[[[[[1]]]]]]]]]}", GENCACHE_ELIMIT, "nested"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        gencache_request *req = (gencache_request *)1;
        char err[GENCACHE_ERRMSG_MAX];
        int rc = gencache_request_parse_ex(NULL, cases[i].json, strlen(cases[i].json),
                                           GENCACHE_REQUEST_TRUST_TENANT, &req, err, sizeof err);
        if (cases[i].rc == 1) /* any failure: the image module decides the code */
            CHECK(rc < 0);
        else if (rc != cases[i].rc)
            test_fail(__FILE__, __LINE__, "%s: %s, expected %s (%s)", cases[i].json,
                      gencache_errname(rc), gencache_errname(cases[i].rc), err);
        CHECK(req == NULL);
        if (!strstr(err, cases[i].msg))
            test_fail(__FILE__, __LINE__, "%s: message \"%s\" lacks \"%s\"", cases[i].json, err,
                      cases[i].msg);
    }
    /* A short error buffer is truncated, not overrun; NULL is fine. */
    gencache_request *req = NULL;
    char tiny[8];
    CHECK_RC(gencache_request_parse_ex(NULL, "{\"steps\": -1}", 13, 0, &req, tiny, sizeof tiny),
             GENCACHE_EINVAL);
    CHECK_UINT_EQ(strlen(tiny), 7);
    CHECK_RC(gencache_request_parse(NULL, "{\"steps\": -1}", 13, 0, &req), GENCACHE_EINVAL);
    CHECK_RC(gencache_request_parse(NULL, "{}", 2, 0, NULL), GENCACHE_EINVAL);
    CHECK_RC(gencache_request_parse(NULL, NULL, 2, 0, &req), GENCACHE_EINVAL);
    /* Not NUL-terminated input: only len bytes are read. */
    CHECK_OK(gencache_request_parse(NULL, "{\"seed\": 1}garbage", 11, 0, &req));
    gencache_request_free(req);
}

TEST_CASE(limits)
{
    size_t big = GENCACHE_REQUEST_MAX_BYTES + 1;
    char *json = malloc(big + 1);
    CHECK(json != NULL);
    memset(json, ' ', big);
    json[0] = '{';
    json[big - 1] = '}';
    json[big] = '\0';
    gencache_request *req = NULL;
    CHECK_RC(gencache_request_parse(NULL, json, big, 0, &req), GENCACHE_ELIMIT);
    /* Exactly the limit is accepted: "{" and "}" around white space. */
    json[big - 2] = '}';
    CHECK_OK(gencache_request_parse(NULL, json, big - 1, 0, &req));
    gencache_request_free(req);
    /* 1025 parameters. */
    size_t n = 0;
    n += (size_t)sprintf(json + n, "{\"params\": {");
    for (int i = 0; i < 1025; i++)
        n += (size_t)sprintf(json + n, "%s\"p%d\": %d", i ? ", " : "", i, i);
    n += (size_t)sprintf(json + n, "}}");
    CHECK_RC(gencache_request_parse(NULL, json, n, 0, &req), GENCACHE_ELIMIT);
    /* 1000 of them are fine, and all enter result. */
    n = 0;
    n += (size_t)sprintf(json + n, "{\"seed\": 1, \"params\": {");
    for (int i = 0; i < 1000; i++)
        n += (size_t)sprintf(json + n, "%s\"p%d\": %d", i ? ", " : "", i, i);
    n += (size_t)sprintf(json + n, "}}");
    CHECK_OK(gencache_request_parse(NULL, json, n, 0, &req));
    char *canon = NULL;
    size_t len = 0;
    CHECK_OK(gencache_request_canonical(req, "result", &canon, &len));
    size_t lines = 0;
    for (size_t i = 0; i < len; i++)
        lines += canon[i] == '\n';
    CHECK_UINT_EQ(lines, 2 + 1001);
    gencache_free(canon);
    gencache_request_free(req);
    free(json);
}

TEST_CASE(number_encoding)
{
    static const struct {
        const char *lit, *want;
    } cases[] = {
        {"7", "i:7"},
        {"7.0", "i:7"},
        {"-0", "i:0"},
        {"-0.0", "i:0"},
        {"0.1", "f:3fb999999999999a"},
        {"1e21", "f:444b1ae4d6e2ef50"},
        {"9007199254740992.0", "i:9007199254740992"},
        {"9007199254740994.0", "f:4340000000000001"},
        {"-9007199254740992e0", "i:-9007199254740992"},
        {"18446744073709551615", "i:18446744073709551615"},
        {"-9223372036854775808", "i:-9223372036854775808"},
        {"1E2", "i:100"},
        {"2.5e-1", "f:3fd0000000000000"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        gencache__buf b = {0};
        CHECK_OK(gencache__key_encode_number(cases[i].lit, strlen(cases[i].lit), &b));
        CHECK(gencache__buf_terminate(&b));
        CHECK_STR_EQ(b.data, cases[i].want);
        gencache__buf_free(&b);
    }
    gencache__buf b = {0};
    CHECK_RC(gencache__key_encode_number("18446744073709551616", 20, &b), GENCACHE_ELIMIT);
    CHECK_RC(gencache__key_encode_number("-9223372036854775809", 20, &b), GENCACHE_ELIMIT);
    CHECK_RC(gencache__key_encode_number("1e400", 5, &b), GENCACHE_EINVAL);
    gencache__buf_free(&b);
}

TEST_CASE(canonical_document_layout)
{
    gencache_request *req = parse("{\"tenant\": \"t1\", \"seed\": 5, \"model\": \"m\", "
                                  "\"prompt\": \"\\u00e9\\nb\", \"zeta\": [\"x\", 1.5, false], "
                                  "\"params\": {\"k\": null}}");
    char *canon = NULL;
    size_t len = 0;
    CHECK_OK(gencache_request_canonical(req, "result", &canon, &len));
    const char *want = "gencache-key-v1\nresult\nmodel=s:1:m\nprompt=s:4:\xc3\xa9\nb\nseed=i:5\n"
                       "tenant=s:2:t1\nzeta=a:3:s:1:x;f:3ff8000000000000;b:false;\n";
    CHECK_STR_EQ(canon, want);
    CHECK_UINT_EQ(len, strlen(want));
    gencache_free(canon);
    gencache_request_free(req);
}

/* safe mode decides "plain ASCII" 16 bytes at a time: one byte outside the set at any position,
 * inside a vector or in the tail, must leave the prompt as given; inside the set, white space
 * runs collapse wherever they are. Checked against a byte-by-byte reading of the rule. */
TEST_CASE(safe_mode_sees_every_byte)
{
    static const char *const probes[] = {"&",  "\x7f", "\x1f", "\xc3\xa9", "\t", "\n",
                                         "\r", " ",    "  ",   "~",        "!",  "\t \n"};
    for (size_t len = 1; len <= 40; len++) {
        for (size_t pos = 0; pos < len; pos++) {
            for (size_t p = 0; p < sizeof probes / sizeof probes[0]; p++) {
                char in[64];
                memset(in, 'a', len);
                size_t plen = strlen(probes[p]);
                if (pos + plen > len)
                    continue;
                memcpy(in + pos, probes[p], plen);
                bool plain = true;
                for (size_t i = 0; i < len; i++) {
                    unsigned char ch = (unsigned char)in[i];
                    if (!((ch >= 0x20 && ch <= 0x7e && ch != '&') || ch == '\t' || ch == '\n' ||
                          ch == '\r'))
                        plain = false;
                }
                char want[64];
                size_t wn = 0;
                if (plain) {
                    bool space = false;
                    for (size_t i = 0; i < len; i++) {
                        char ch = in[i];
                        if (ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r') {
                            space = wn > 0;
                            continue;
                        }
                        if (space)
                            want[wn++] = ' ';
                        space = false;
                        want[wn++] = ch;
                    }
                } else {
                    memcpy(want, in, len);
                    wn = len;
                }
                char *out = NULL;
                size_t out_len = 0;
                CHECK_OK(gencache_normalize(GENCACHE_NORM_SAFE, in, len, &out, &out_len));
                CHECK_UINT_EQ(out_len, wn);
                CHECK_MEM_EQ(out, want, wn);
                gencache_free(out);
            }
        }
    }
}

static int parse_rc(const char *json, size_t len)
{
    gencache_request *req = NULL;
    char err[GENCACHE_ERRMSG_MAX];
    int rc = gencache_request_parse_ex(NULL, json, len, 0, &req, err, sizeof err);
    CHECK(rc == GENCACHE_OK ? req != NULL : req == NULL);
    gencache_request_free(req);
    return rc;
}

/* What the JSON reader (src/key/json.cpp) must refuse or accept, beyond the key vectors. */
TEST_CASE(json_reader_edges)
{
    static const struct {
        const char *json;
        int rc;
    } cases[] = {
        {"{\"seed\": 1} {\"a\": 1}", GENCACHE_EPARSE}, /* two documents */
        {"{\"seed\": 1}]", GENCACHE_EPARSE},
        {"{\"seed\": 1} \n\t\r ", GENCACHE_OK},
        {"{\"seed\": tru}", GENCACHE_EPARSE},
        {"{\"seed\": nul}", GENCACHE_EPARSE},
        {"{\"seed\": nulll}", GENCACHE_EPARSE},
        {"{\"seed\": 01}", GENCACHE_EPARSE},
        {"{\"seed\": 1.}", GENCACHE_EPARSE},
        {"{\"seed\": -}", GENCACHE_EPARSE},
        {"{\"seed\": +1}", GENCACHE_EPARSE},
        {"{\"guidance\": -1e400}", GENCACHE_ELIMIT},
        {"{\"a\\u0000b\": 1}", GENCACHE_EPARSE},
        {"{\"params\": {\"a\": 1, \"b\": {\"c\": 1, \"c\": 2}}}", GENCACHE_EPARSE},
        {"{\"a\": \"\\ud83d\\ude00\"}", GENCACHE_OK}, /* a surrogate pair is fine */
        {"{\"a\": \"\\ude00\\ud83d\"}", GENCACHE_EPARSE},
        {"{\"a\": \"\\x\"}", GENCACHE_EPARSE},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = parse_rc(cases[i].json, strlen(cases[i].json));
        if (rc != cases[i].rc)
            test_fail(__FILE__, __LINE__, "%s: %s, expected %s", cases[i].json,
                      gencache_errname(rc), gencache_errname(cases[i].rc));
    }
    /* Objects of more than 32 members are checked for duplicates another way. */
    char big[4096];
    for (int dup = 0; dup < 2; dup++) {
        size_t n = (size_t)snprintf(big, sizeof big, "{\"params\": {");
        for (int m = 0; m < 60; m++)
            n += (size_t)snprintf(big + n, sizeof big - n, "%s\"m%d\": %d", m ? ", " : "",
                                  dup && m == 59 ? 7 : m, m);
        n += (size_t)snprintf(big + n, sizeof big - n, "}}");
        CHECK_RC(parse_rc(big, n), dup ? GENCACHE_EPARSE : GENCACHE_OK);
    }
    /* Nesting: beyond the reader's limit is ELIMIT, like the request's own depth limit. */
    static char deep[2 * 1100 + 64];
    size_t n = (size_t)snprintf(deep, sizeof deep, "{\"params\": {\"a\": ");
    for (int d = 0; d < 1100; d++)
        deep[n++] = '[';
    for (int d = 0; d < 1100; d++)
        deep[n++] = ']';
    n += (size_t)snprintf(deep + n, sizeof deep - n, "}}");
    CHECK_RC(parse_rc(deep, n), GENCACHE_ELIMIT);
    /* An underflowing literal is the binary64 it rounds to (0), as strtod reads it. */
    const char *tiny = "{\"seed\": 1, \"params\": {\"x\": 1e-400, \"y\": 2.5E+2, \"z\": -0.0}}";
    gencache_request *req = NULL;
    CHECK_OK(gencache_request_parse(NULL, tiny, strlen(tiny), 0, &req));
    char *doc = NULL;
    size_t doc_len = 0;
    CHECK_OK(gencache_request_canonical(req, "result", &doc, &doc_len));
    CHECK(strstr(doc, "params.x=i:0\n") != NULL);
    CHECK(strstr(doc, "params.y=i:250\n") != NULL);
    CHECK(strstr(doc, "params.z=i:0\n") != NULL);
    gencache_free(doc);
    gencache_request_free(req);
}
