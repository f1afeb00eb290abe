/*
 * test_config.c: the size and duration grammar, gencache.yaml loaded in the library (every
 * refusal names FILE:LINE: key.path), the layer registry (what gencache_layer_define() stores
 * comes back from gencache_layer_get(), older struct sizes included) and the keyspace of a cache
 * as a view of that registry.
 */
#include <stdlib.h>

#include "test.h"

static gencache_config *parse_ok(const char *text)
{
    gencache_config *cfg = NULL;
    char err[GENCACHE_CONFIG_ERR_MAX];
    int rc = gencache_config_parse("t.yaml", text, strlen(text), &cfg, err, sizeof err);
    if (rc != GENCACHE_OK)
        test_fail(__FILE__, __LINE__, "parse failed: %s (%s)", err, gencache_errname(rc));
    return cfg;
}

TEST_CASE(size_grammar)
{
    static const struct {
        const char *s;
        uint64_t v;
    } good[] = {
        {"0", 0},
        {"4096", 4096},
        {"10B", 10},
        {"1K", 1024},
        {"512M", 512ull << 20},
        {"1G", 1ull << 30},
        {"2T", 2ull << 40},
        {"1KiB", 1024},
        {"3MiB", 3ull << 20},
        {"1GiB", 1ull << 30},
        {"1TiB", 1ull << 40},
        {"1KB", 1000},
        {"1MB", 1000000},
        {"1GB", 1000000000},
        {"1TB", 1000000000000ull},
        {"18446744073709551615", UINT64_MAX},
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        uint64_t v = 1;
        CHECK_OK(gencache_parse_size(good[i].s, &v));
        CHECK_UINT_EQ(v, good[i].v);
    }
    static const char *const bad[] = {"",          "G",   "-1",  "1.5G",
                                      "1 G",       "1g",  "1gb", "1Gi",
                                      "1GIB",      "1KK", "1X",  "18446744073709551616",
                                      "16777216T", " 1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint64_t v = 7;
        CHECK_RC(gencache_parse_size(bad[i], &v), GENCACHE_EINVAL);
        CHECK_UINT_EQ(v, 0);
    }
    uint64_t v;
    CHECK_RC(gencache_parse_size(NULL, &v), GENCACHE_EINVAL);
    CHECK_RC(gencache_parse_size("1", NULL), GENCACHE_EINVAL);
}

TEST_CASE(duration_grammar)
{
    static const struct {
        const char *s;
        uint64_t ms;
    } good[] = {
        {"0", 0},         {"90", 90000},   {"500ms", 500},    {"90s", 90000},
        {"30m", 1800000}, {"2h", 7200000}, {"7d", 604800000}, {"1w", 604800000},
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        uint64_t v = 1;
        CHECK_OK(gencache_parse_duration_ms(good[i].s, &v));
        CHECK_UINT_EQ(v, good[i].ms);
    }
    static const char *const bad[] = {
        "", "s", "1.5h", "1min", "1M", "1y", "-1s", "1 s", "18446744073709551615w"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint64_t v = 7;
        CHECK_RC(gencache_parse_duration_ms(bad[i], &v), GENCACHE_EINVAL);
        CHECK_UINT_EQ(v, 0);
    }
}

/* Each refusal: the text, its return code, and the start and part of the message. */
static const struct {
    const char *text;
    int rc;
    const char *where;
    const char *what;
} bad_configs[] = {
    {"lisen: x\n", GENCACHE_ECONFIG, "t.yaml:1: lisen", "unknown key"},
    {"tiers:\n  memory:\n    max_bytes: lots\n", GENCACHE_ECONFIG,
     "t.yaml:3: tiers.memory.max_bytes", "expected a size like 1G"},
    {"tiers:\n  memory:\n    max_bytes: 1.5G\n", GENCACHE_ECONFIG,
     "t.yaml:3: tiers.memory.max_bytes", "expected a size"},
    {"tiers:\n  tape: {}\n", GENCACHE_ECONFIG, "t.yaml:2: tiers.tape", "unknown key"},
    {"tiers:\n  gpu:\n    enabled: true\n", GENCACHE_ECONFIG, "t.yaml:3: tiers.gpu.enabled",
     "no GPU tier"},
    {"tiers:\n  memory:\n    enabled: false\n", GENCACHE_ECONFIG, "t.yaml:3: tiers.memory.enabled",
     "cannot be disabled"},
    {"tiers:\n  disk:\n    enabled: maybe\n", GENCACHE_ECONFIG, "t.yaml:3: tiers.disk.enabled",
     "expected true or false"},
    {"tiers:\n  redis:\n    enabled: true\n", GENCACHE_ECONFIG, "t.yaml:3: tiers.redis.enabled",
     "needs a url"},
    {"tiers:\n  redis:\n    url: http://x\n", GENCACHE_ECONFIG, "t.yaml:3: tiers.redis.url",
     "redis://"},
    {"tiers:\n  redis:\n    timeout_ms: 0\n", GENCACHE_ECONFIG, "t.yaml:3: tiers.redis.timeout_ms",
     "from 1 to 60000"},
    {"layers:\n  result:\n    ttl: 7x\n", GENCACHE_ECONFIG, "t.yaml:3: layers.result.ttl",
     "expected a duration"},
    {"layers:\n  result:\n    scope: everyone\n", GENCACHE_ECONFIG, "t.yaml:3: layers.result.scope",
     "global, tenant"},
    {"layers:\n  result:\n    policy: lfu\n", GENCACHE_ECONFIG, "t.yaml:3: layers.result.policy",
     "write_back"},
    {"layers:\n  result:\n    shared: sometimes\n", GENCACHE_ECONFIG,
     "t.yaml:3: layers.result.shared", "true or false"},
    {"layers:\n  result:\n    sliding_ttl: 2\n", GENCACHE_ECONFIG,
     "t.yaml:3: layers.result.sliding_ttl", "true or false"},
    {"tiers:\n  memory:\n    policy: mru\n", GENCACHE_ECONFIG, "t.yaml:3: tiers.memory.policy",
     "lru, gdsf or s3fifo"},
    {"layers:\n  result:\n    policy: fifo\n", GENCACHE_ECONFIG, "t.yaml:3: layers.result.policy",
     "write_back, write_through, lru, gdsf or s3fifo"},
    {"layers:\n  result:\n    eviction: mru\n", GENCACHE_ECONFIG,
     "t.yaml:3: layers.result.eviction", "lru, gdsf or s3fifo"},
    {"layers:\n  result:\n    prompt_normalization: loud\n", GENCACHE_ECONFIG,
     "t.yaml:3: layers.result.prompt_normalization", "exact, safe"},
    {"layers:\n  result:\n    image_match: fuzzy\n", GENCACHE_ECONFIG,
     "t.yaml:3: layers.result.image_match", "exact or perceptual"},
    {"layers:\n  result:\n    colour: red\n", GENCACHE_ECONFIG, "t.yaml:3: layers.result.colour",
     "unknown key"},
    {"layers:\n  Bad-Name:\n    ttl: 1s\n", GENCACHE_ECONFIG, "t.yaml:2: layers.Bad-Name", "a-z"},
    {"layers:\n  extra:\n    ttl: 1s\n", GENCACHE_ECONFIG, "t.yaml:2: layers.extra",
     "needs fields"},
    {"layers:\n  extra:\n    fields: model\n", GENCACHE_ECONFIG, "t.yaml:3: layers.extra.fields",
     "list"},
    {"layers:\n  extra:\n    fields: []\n", GENCACHE_ECONFIG, "t.yaml:3: layers.extra.fields",
     "at least one"},
    {"layers:\n  extra:\n    fields: [\"a=b\"]\n", GENCACHE_ECONFIG,
     "t.yaml:3: layers.extra.fields", "not valid"},
    {"layers:\n  result:\n    prompt_normalization: safe\n  condition:\n"
     "    prompt_normalization: exact\n",
     GENCACHE_ECONFIG, "t.yaml:4: layers.condition.prompt_normalization", "same mode"},
    {"models:\n  m1:\n    prompt_normalization: 3\n", GENCACHE_ECONFIG,
     "t.yaml:3: models.m1.prompt_normalization", "exact"},
    {"models:\n  m1:\n    mode: safe\n", GENCACHE_ECONFIG, "t.yaml:3: models.m1.mode",
     "unknown key"},
    {"tenants:\n  name: a\n", GENCACHE_ECONFIG, "t.yaml:2: tenants", "expected a list"},
    {"tenants:\n  - name: a\n", GENCACHE_ECONFIG, "t.yaml:2: tenants[0]", "a name and a token"},
    {"tenants:\n  - name: a\n    token: short\n", GENCACHE_ECONFIG, "t.yaml:3: tenants[0].token",
     "at least 16"},
    {"tenants:\n  - name: \"a b\"\n", GENCACHE_ECONFIG, "t.yaml:2: tenants[0].name", "letters"},
    {"tenants:\n  - name: a\n    token: aaaaaaaaaaaaaaaaaaaa\n    priority: urgent\n",
     GENCACHE_ECONFIG, "t.yaml:4: tenants[0].priority", "high, normal or batch"},
    {"tenants:\n  - name: a\n    token: aaaaaaaaaaaaaaaaaaaa\n    quota_bytes: -1\n",
     GENCACHE_ECONFIG, "t.yaml:4: tenants[0].quota_bytes", "expected a size"},
    {"tenants:\n  - {name: a, token: aaaaaaaaaaaaaaaaaaaa}\n"
     "  - {name: a, token: bbbbbbbbbbbbbbbbbbbb}\n",
     GENCACHE_ECONFIG, "t.yaml:3: tenants[1]", "used twice"},
    {"tenants:\n  - {name: a, token: aaaaaaaaaaaaaaaaaaaa}\n"
     "  - {name: b, token: aaaaaaaaaaaaaaaaaaaa}\n",
     GENCACHE_ECONFIG, "t.yaml:3: tenants[1]", "share a token"},
    {"preferred: result/*\n", GENCACHE_ECONFIG, "t.yaml:1: preferred", "list"},
    {"preferred:\n  - nolayer\n", GENCACHE_ECONFIG, "t.yaml:2: preferred", "<layer>/"},
    {"preferred:\n  - \"result/*\"\n  - \"upscaled/*\"\n", GENCACHE_ECONFIG, "t.yaml:3: preferred",
     "names no layer 'upscaled'"},
    {"sensitive:\n  - ok\n  - \"a(b\"\n", GENCACHE_ECONFIG, "t.yaml:3: sensitive",
     "bad regular expression"},
    {"sensitive:\n  - \"n+++\"\n", GENCACHE_ECONFIG, "t.yaml:2: sensitive",
     "repetition of a repetition"},
    {"sensitive:\n  - \"[a]{2}*\"\n", GENCACHE_ECONFIG, "t.yaml:2: sensitive",
     "repetition of a repetition"},
    {"upstream:\n  url: ftp://x\n", GENCACHE_ECONFIG, "t.yaml:2: upstream.url", "http://"},
    {"upstream:\n  timeout: soon\n", GENCACHE_ECONFIG, "t.yaml:2: upstream.timeout", "duration"},
    {"prewarm:\n  concurrency: 0\n", GENCACHE_ECONFIG, "t.yaml:2: prewarm.concurrency",
     "from 1 to 1024"},
    {"memory_pressure:\n  warn_ratio: 2\n", GENCACHE_ECONFIG,
     "t.yaml:2: memory_pressure.warn_ratio", "ratio"},
    {"memory_pressure:\n  shortened_ttl: 0s\n", GENCACHE_ECONFIG,
     "t.yaml:2: memory_pressure.shortened_ttl", "above 0"},
    {"limits:\n  max_body: 0\n", GENCACHE_ECONFIG, "t.yaml:2: limits.max_body", "above 0"},
    {"limits:\n  timeout: 100ms\n", GENCACHE_ECONFIG, "t.yaml:2: limits.timeout", "from 1s"},
    {"limits:\n  max_header: 1K\n", GENCACHE_ECONFIG, "t.yaml:2: limits.max_header", "unknown key"},
    {"limits:\n  header_timeout: 10ms\n", GENCACHE_ECONFIG, "t.yaml:2: limits.header_timeout",
     "from 100ms to 1h"},
    {"limits:\n  header_timeout: 2h\n", GENCACHE_ECONFIG, "t.yaml:2: limits.header_timeout",
     "from 100ms to 1h"},
    {"limits:\n  max_connections_per_client: -1\n", GENCACHE_ECONFIG,
     "t.yaml:2: limits.max_connections_per_client", "from 0 to 1000000"},
    {"limits:\n  max_inflight_bytes: 0\n", GENCACHE_ECONFIG, "t.yaml:2: limits.max_inflight_bytes",
     "must be above 0"},
    {"limits:\n  prewarm_max_bytes: lots\n", GENCACHE_ECONFIG, "t.yaml:2: limits.prewarm_max_bytes",
     "size"},
    {"listen: a\nlisten: b\n", GENCACHE_ECONFIG, "t.yaml:2: listen", "duplicate key"},
    {"listen: \"\"\n", GENCACHE_ECONFIG, "t.yaml:1: listen", "must not be empty"},
    {"log_level: loud\n", GENCACHE_ECONFIG, "t.yaml:1: log_level", "expected error, warn"},
    {"? [a]\n: 1\n", GENCACHE_ECONFIG, "t.yaml:1: (top level)", "plain strings"},
    {"- just\n- a list\n", GENCACHE_ECONFIG, "t.yaml:1: (top level)", "mapping"},
    {"tiers: {memory: {max_bytes: 1G}\n", GENCACHE_EPARSE, "t.yaml:2: ", "YAML syntax error"},
    {"listen: a\n---\nlisten: b\n", GENCACHE_EPARSE, "t.yaml:2: ", "a second YAML document"},
    /* Values that used to pass the check and fail (or mean something else) later. */
    {"tiers:\n  redis:\n    url: redis://127.0.0.1:99999999\n", GENCACHE_ECONFIG,
     "t.yaml:3: tiers.redis.url", "port 1-65535"},
    {"tiers:\n  redis:\n    url: redis://h:6379/x\n", GENCACHE_ECONFIG, "t.yaml:3: tiers.redis.url",
     "expected redis://"},
    {"tiers:\n  memory:\n    max_bytes: 0\n", GENCACHE_ECONFIG, "t.yaml:3: tiers.memory.max_bytes",
     "must be above 0"},
    {"tiers:\n  memory:\n    max_pinned_bytes: 0\n", GENCACHE_ECONFIG,
     "t.yaml:3: tiers.memory.max_pinned_bytes", "must be above 0"},
    {"tiers:\n  disk:\n    max_bytes: 0\n", GENCACHE_ECONFIG, "t.yaml:3: tiers.disk.max_bytes",
     "must be above 0"},
    {"sensitive:\n  - \"a\\0b\"\n", GENCACHE_ECONFIG, "t.yaml:2: sensitive",
     "contains a NUL character"},
    {"listen: \"127.0.0.1\\0:1\"\n", GENCACHE_ECONFIG, "t.yaml:1: listen", "NUL character"},
    {"http:\n  fast_get: sometimes\n", GENCACHE_ECONFIG, "t.yaml:2: http.fast_get", ""},
    {"http:\n  fast_gets: true\n", GENCACHE_ECONFIG, "t.yaml:2: http.fast_gets", "unknown key"},
};

TEST_CASE(error_paths)
{
    for (size_t i = 0; i < sizeof bad_configs / sizeof bad_configs[0]; i++) {
        const char *t = bad_configs[i].text;
        gencache_config *cfg = (gencache_config *)&cfg;
        char err[GENCACHE_CONFIG_ERR_MAX];
        int rc = gencache_config_parse("t.yaml", t, strlen(t), &cfg, err, sizeof err);
        if (rc != bad_configs[i].rc || cfg != NULL ||
            strncmp(err, bad_configs[i].where, strlen(bad_configs[i].where)) != 0 ||
            !strstr(err, bad_configs[i].what))
            test_fail(__FILE__, __LINE__, "config %zu %s: got %s \"%s\", expected %s \"%s...%s\"",
                      i, t, gencache_errname(rc), err, gencache_errname(bad_configs[i].rc),
                      bad_configs[i].where, bad_configs[i].what);
    }
}

/* Deep flow nesting is refused before libyaml, whose scanner takes quadratic time on it; brackets
 * inside quoted strings do not count. */
TEST_CASE(deep_nesting_is_refused)
{
    size_t depth = 100000, n = 0;
    char *t = malloc(2 * depth + 16);
    CHECK(t != NULL);
    n += (size_t)sprintf(t, "a: ");
    for (size_t i = 0; i < depth; i++)
        t[n++] = '[';
    for (size_t i = 0; i < depth; i++)
        t[n++] = ']';
    t[n++] = '\n';
    gencache_config *cfg = NULL;
    char err[GENCACHE_CONFIG_ERR_MAX];
    CHECK_RC(gencache_config_parse("t.yaml", t, n, &cfg, err, sizeof err), GENCACHE_EPARSE);
    CHECK_STR_EQ(err, "t.yaml:1: (document): nested deeper than 64 levels");
    free(t);
    const char *quoted =
        "sensitive:\n  - \"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
        "[[[[[[[[[[[[x]\"  # [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\n";
    CHECK_OK(gencache_config_parse("t.yaml", quoted, strlen(quoted), &cfg, err, sizeof err));
    gencache_config_free(cfg);
}

/* The keys that protect the listener from slow and idle clients. */
TEST_CASE(connection_limits)
{
    gencache_config *cfg = parse_ok("limits:\n  header_timeout: 1500ms\n"
                                    "  max_connections_per_client: 0\n");
    gencache_config_server s = {.struct_size = sizeof s};
    CHECK_OK(gencache_config_server_get(cfg, &s));
    CHECK_UINT_EQ(s.header_timeout_ms, 1500);
    CHECK_UINT_EQ(s.max_connections_per_client, 0);
    CHECK_INT_EQ(s.has_max_connections_per_client, 1); /* 0 is "no cap", not "not set" */
    gencache_config_free(cfg);
    cfg = parse_ok("limits:\n  max_connections_per_client: 16\n");
    CHECK_OK(gencache_config_server_get(cfg, &s));
    CHECK_UINT_EQ(s.max_connections_per_client, 16);
    CHECK_UINT_EQ(s.header_timeout_ms, 0); /* not set: the daemon's default */
    gencache_config_free(cfg);
    cfg = parse_ok("");
    CHECK_OK(gencache_config_server_get(cfg, &s));
    CHECK_INT_EQ(s.has_max_connections_per_client, 0);
    CHECK_UINT_EQ(s.max_inflight_bytes, 0);
    CHECK_UINT_EQ(s.prewarm_max_bytes, 0);
    gencache_config_free(cfg);
}

/* http.fast_get: set or not, and its value, so that the daemon's default (on) holds when the
 * file says nothing. */
TEST_CASE(http_fast_get)
{
    gencache_config_server s = {.struct_size = sizeof s};
    gencache_config *cfg = parse_ok("http:\n  fast_get: false\n");
    CHECK_OK(gencache_config_server_get(cfg, &s));
    CHECK_INT_EQ(s.has_fast_get, 1);
    CHECK_INT_EQ(s.fast_get, 0);
    gencache_config_free(cfg);
    cfg = parse_ok("http:\n  fast_get: true\n");
    CHECK_OK(gencache_config_server_get(cfg, &s));
    CHECK_INT_EQ(s.has_fast_get, 1);
    CHECK_INT_EQ(s.fast_get, 1);
    gencache_config_free(cfg);
    cfg = parse_ok("");
    CHECK_OK(gencache_config_server_get(cfg, &s));
    CHECK_INT_EQ(s.has_fast_get, 0);
    gencache_config_free(cfg);
}

/* The memory the daemon holds beyond its tiers: request bodies in flight, prewarm lists. */
TEST_CASE(memory_limits)
{
    gencache_config *cfg = parse_ok("limits:\n  max_inflight_bytes: 128M\n"
                                    "  prewarm_max_bytes: 1MiB\n");
    gencache_config_server s = {.struct_size = sizeof s};
    CHECK_OK(gencache_config_server_get(cfg, &s));
    CHECK_UINT_EQ(s.max_inflight_bytes, 128ull << 20);
    CHECK_UINT_EQ(s.prewarm_max_bytes, 1ull << 20);
    gencache_config_free(cfg);
}

TEST_CASE(load_errors)
{
    gencache_config *cfg = (gencache_config *)&cfg;
    char err[GENCACHE_CONFIG_ERR_MAX];
    CHECK_RC(gencache_config_load("/nonexistent/gencache.yaml", &cfg, err, sizeof err),
             GENCACHE_EIO);
    CHECK(cfg == NULL);
    CHECK_STR_EQ(err, "/nonexistent/gencache.yaml: cannot open: No such file or directory");
    CHECK_RC(gencache_config_load(NULL, &cfg, err, sizeof err), GENCACHE_EINVAL);
    CHECK_RC(gencache_config_load("x", NULL, err, sizeof err), GENCACHE_EINVAL);
    CHECK_RC(gencache_config_parse(NULL, NULL, 1, &cfg, NULL, 0), GENCACHE_EINVAL);
    /* A tiny error buffer truncates, never overflows; NULL is allowed. */
    char small[8];
    CHECK_RC(gencache_config_parse(NULL, "lisen: x", 8, &cfg, small, sizeof small),
             GENCACHE_ECONFIG);
    CHECK_STR_EQ(small, "<config");
    CHECK_RC(gencache_config_parse(NULL, "lisen: x", 8, &cfg, NULL, 0), GENCACHE_ECONFIG);
    gencache_config_free(NULL);
}

TEST_CASE(empty_is_defaults)
{
    static const char *const texts[] = {"", "# a comment\n", "---\n"};
    for (size_t i = 0; i < 3; i++) {
        gencache_config *cfg = parse_ok(texts[i]);
        gencache_options o, d;
        gencache_options_init(&o);
        gencache_options_init(&d);
        CHECK_OK(gencache_config_options(cfg, &o));
        CHECK(memcmp(&o, &d, sizeof o) == 0);
        gencache_config_server s = {.struct_size = sizeof s};
        CHECK_OK(gencache_config_server_get(cfg, &s));
        CHECK(s.listen == NULL && s.max_body == 0 && s.upstream_url == NULL);
        CHECK_UINT_EQ(gencache_config_tenant_count(cfg), 0);
        CHECK(gencache_config_layer(cfg, 0) == NULL);
        gencache_config_free(cfg);
    }
}

TEST_CASE(example_file)
{
    const char *src = getenv("GENCACHE_SOURCE_DIR");
    char path[1024];
    snprintf(path, sizeof path, "%s/examples/gencache.yaml", src ? src : ".");
    gencache_config *cfg = NULL;
    char err[GENCACHE_CONFIG_ERR_MAX];
    int rc = gencache_config_load(path, &cfg, err, sizeof err);
    if (rc != GENCACHE_OK)
        test_fail(__FILE__, __LINE__, "%s", err);
    CHECK_STR_EQ(gencache_config_path(cfg), path);
    gencache_options o;
    gencache_options_init(&o);
    CHECK_OK(gencache_config_options(cfg, &o));
    CHECK_UINT_EQ(o.mem_max_bytes, 8ull << 30);
    CHECK_UINT_EQ(o.disk_max_bytes, 200ull << 30);
    CHECK_STR_EQ(o.data_dir, "/var/lib/gencache");
    CHECK(o.redis_url == NULL); /* enabled: false wins over the url */
    gencache_config_server s = {.struct_size = sizeof s};
    CHECK_OK(gencache_config_server_get(cfg, &s));
    CHECK_STR_EQ(s.listen, "127.0.0.1:8787");
    CHECK_UINT_EQ(s.upstream_timeout_ms, 120000);
    CHECK_UINT_EQ(s.max_body, 256ull << 20);
    CHECK_UINT_EQ(s.pressure_ttl_ms, 600000);
    CHECK_UINT_EQ(gencache_config_tenant_count(cfg), 3);
    gencache_config_tenant t = {.struct_size = sizeof t};
    CHECK_OK(gencache_config_tenant_get(cfg, 1, &t));
    CHECK_STR_EQ(t.name, "studio");
    CHECK_INT_EQ(t.priority, GENCACHE_PRIORITY_HIGH);
    CHECK_UINT_EQ(t.quota_bytes, 50ull << 30);
    CHECK_RC(gencache_config_tenant_get(cfg, 3, &t), GENCACHE_ENOTFOUND);
    t.struct_size = 0;
    CHECK_RC(gencache_config_tenant_get(cfg, 0, &t), GENCACHE_EINVAL);
    CHECK(gencache_config_preferred_match(cfg, "text_embedding/00"));
    CHECK(!gencache_config_preferred_match(cfg, "result/00"));
    CHECK(gencache_config_sensitive_match(cfg, "my Passport Number is"));
    CHECK(!gencache_config_sensitive_match(cfg, "a cat"));
    CHECK(!gencache_config_sensitive_match(cfg, NULL));
    CHECK_STR_EQ(gencache_config_sensitive(cfg, 1), "social security number");
    CHECK(gencache_config_sensitive(cfg, 2) == NULL);
    gencache_norm_mode m;
    CHECK_STR_EQ(gencache_config_model(cfg, 0, &m), "sdxl-base-1.0");
    CHECK_INT_EQ(m, GENCACHE_NORM_CLIP);

    /* Opened memory-only, the layers of the file are in the registry. */
    gencache_options_init(&o);
    gencache *c = NULL;
    CHECK_OK(gencache_open_config(&c, cfg, &o));
    gencache_layer_options lo = {.struct_size = sizeof lo};
    gencache_layer_options_init(&lo);
    CHECK_OK(gencache_layer_get(c, "upscaled", &lo));
    CHECK_UINT_EQ(lo.ttl_ms, 86400000);
    CHECK_UINT_EQ(lo.n_fields, 5);
    CHECK_STR_EQ(lo.fields[1], "image!");
    CHECK_OK(gencache_layer_get(c, "result", &lo));
    CHECK_UINT_EQ(lo.ttl_ms, 7ull * 86400000);
    CHECK_INT_EQ(lo.write_through, 1);
    CHECK_STR_EQ(lo.fields[0], "*");
    gencache_close(c);
    gencache_config_free(cfg);
}

TEST_CASE(layer_registry_round_trip)
{
    gencache *c = NULL;
    CHECK_OK(gencache_open(&c, NULL));
    static const char *const fields[] = {"model", "image!", "params.upscaler"};
    gencache_layer_options lo = {.struct_size = sizeof lo};
    gencache_layer_options_init(&lo);
    CHECK_INT_EQ(lo.shared, 1);
    CHECK_INT_EQ(lo.prompt_normalization, -1);
    lo.name = "upscaled";
    lo.fields = fields;
    lo.n_fields = 3;
    lo.scope = GENCACHE_SCOPE_TENANT;
    lo.ttl_ms = 12345;
    lo.sliding_ttl = 1;
    lo.write_through = 1;
    lo.shared = 0;
    lo.image_match = GENCACHE_IMAGE_MATCH_PERCEPTUAL;
    CHECK_OK(gencache_layer_define(c, &lo));
    gencache_layer_options got = {.struct_size = sizeof got};
    gencache_layer_options_init(&got);
    CHECK_OK(gencache_layer_get(c, "upscaled", &got));
    CHECK_STR_EQ(got.name, "upscaled");
    CHECK_UINT_EQ(got.n_fields, 3);
    for (size_t i = 0; i < 3; i++)
        CHECK_STR_EQ(got.fields[i], fields[i]);
    CHECK_INT_EQ(got.scope, GENCACHE_SCOPE_TENANT);
    CHECK_UINT_EQ(got.ttl_ms, 12345);
    CHECK_INT_EQ(got.sliding_ttl, 1);
    CHECK_INT_EQ(got.write_through, 1);
    CHECK_INT_EQ(got.shared, 0);
    CHECK_INT_EQ(got.prompt_normalization, -1);
    CHECK_INT_EQ(got.eviction, GENCACHE_EVICTION_DEFAULT);
    CHECK_INT_EQ(got.image_match, GENCACHE_IMAGE_MATCH_PERCEPTUAL);
    CHECK_UINT_EQ(gencache_layer_count(c), 6);
    CHECK_STR_EQ(gencache_layer_name(c, 5), "upscaled");
    CHECK(gencache_layer_name(c, 6) == NULL);

    /* Redefined without fields: the recipe stays, the rest is replaced. */
    gencache_layer_options_init(&lo);
    lo.name = "upscaled";
    lo.ttl_ms = 5;
    CHECK_OK(gencache_layer_define(c, &lo));
    CHECK_OK(gencache_layer_get(c, "upscaled", &got));
    CHECK_UINT_EQ(got.n_fields, 3);
    CHECK_UINT_EQ(got.ttl_ms, 5);
    CHECK_INT_EQ(got.scope, GENCACHE_SCOPE_GLOBAL);

    /* A caller built against 0.1 passes the shorter struct and reads only that much back. */
    struct {
        gencache_layer_options o;
        char canary[64];
    } v1;
    memset(&v1, 0xAB, sizeof v1);
    v1.o.struct_size = offsetof(gencache_layer_options, write_through) + sizeof(int);
    v1.o.name = "legacy";
    v1.o.scope = GENCACHE_SCOPE_GLOBAL;
    v1.o.ttl_ms = 9;
    v1.o.sliding_ttl = 0;
    v1.o.write_through = 0;
    CHECK_OK(gencache_layer_define(c, &v1.o));
    CHECK_OK(gencache_layer_get(c, "legacy", &got));
    CHECK_INT_EQ(got.shared, 1);
    CHECK(got.fields == NULL && got.n_fields == 0);
    memset(&v1, 0xAB, sizeof v1);
    v1.o.struct_size = 0; /* a 0.1 caller did not set it before gencache_layer_get() */
    CHECK_OK(gencache_layer_get(c, "legacy", &v1.o));
    CHECK_UINT_EQ(v1.o.ttl_ms, 9);
    CHECK_UINT_EQ(v1.o.n_fields, 0xABABABABABABABABull); /* past the 0.1 struct: untouched */

    /* Refusals. */
    gencache_layer_options_init(&lo);
    lo.name = "fifo";
    lo.eviction = GENCACHE_EVICTION_S3FIFO; /* every policy is accepted per layer */
    CHECK_OK(gencache_layer_define(c, &lo));
    CHECK_OK(gencache_layer_get(c, "fifo", &got));
    CHECK_INT_EQ(got.eviction, GENCACHE_EVICTION_S3FIFO);
    lo.name = "x";
    lo.eviction = (gencache_eviction)-2;
    CHECK_RC(gencache_layer_define(c, &lo), GENCACHE_EINVAL);
    lo.eviction = (gencache_eviction)9;
    CHECK_RC(gencache_layer_define(c, &lo), GENCACHE_EINVAL);
    gencache_layer_options_init(&lo);
    lo.name = "x";
    lo.fields = fields;
    lo.n_fields = 0;
    CHECK_RC(gencache_layer_define(c, &lo), GENCACHE_EINVAL);
    static const char *const bad_field[] = {"a=b"};
    lo.fields = bad_field;
    lo.n_fields = 1;
    CHECK_RC(gencache_layer_define(c, &lo), GENCACHE_EINVAL);
    lo.fields = NULL;
    lo.prompt_normalization = 17;
    CHECK_RC(gencache_layer_define(c, &lo), GENCACHE_EINVAL);
    lo.prompt_normalization = -1;
    lo.image_match = (gencache_image_match_mode)5;
    CHECK_RC(gencache_layer_define(c, &lo), GENCACHE_EINVAL);
    lo.image_match = GENCACHE_IMAGE_MATCH_EXACT;
    lo.struct_size = 8;
    CHECK_RC(gencache_layer_define(c, &lo), GENCACHE_EINVAL);
    CHECK_RC(gencache_layer_get(c, "x", &got), GENCACHE_ENOTFOUND);
    gencache_close(c);
}

/* The key of req in layer with keyspace ks. */
static void key_of(const gencache_keyspace *ks, const char *req, const char *layer, char *out)
{
    gencache_request *r = NULL;
    CHECK_OK(gencache_request_parse(ks, req, strlen(req), GENCACHE_REQUEST_TRUST_TENANT, &r));
    CHECK_OK(gencache_request_key(r, layer, out, GENCACHE_KEY_MAX));
    gencache_request_free(r);
}

TEST_CASE(keyspace_view_follows_registry)
{
    const char *req = "{\"model\": \"m\", \"prompt\": \"A  cat\", \"width\": 64, \"seed\": 1}";
    gencache *c = NULL;
    CHECK_OK(gencache_open(&c, NULL));
    gencache_keyspace *view = NULL, *plain = NULL;
    CHECK_OK(gencache_keyspace_from_cache(c, &view));
    CHECK_OK(gencache_keyspace_new(&plain));
    char a[GENCACHE_KEY_MAX], b[GENCACHE_KEY_MAX];
    key_of(view, req, "text_embedding", a);
    key_of(plain, req, "text_embedding", b);
    CHECK_STR_EQ(a, b); /* the defaults are one table */

    /* Redefine the layer through the cache: the view derives keys with the new recipe. */
    static const char *const fields[] = {"model", "prompt", "width"};
    gencache_layer_options lo = {.struct_size = sizeof lo};
    gencache_layer_options_init(&lo);
    lo.name = "text_embedding";
    lo.fields = fields;
    lo.n_fields = 3;
    CHECK_OK(gencache_layer_define(c, &lo));
    key_of(view, req, "text_embedding", a);
    CHECK(strcmp(a, b) != 0);
    CHECK_OK(
        gencache_keyspace_set_layer(plain, "text_embedding", fields, 3, GENCACHE_SCOPE_GLOBAL));
    key_of(plain, req, "text_embedding", b);
    CHECK_STR_EQ(a, b);

    /* A recipe set on the view makes a layer of the cache, and a scope set there is the cache's. */
    static const char *const f2[] = {"model"};
    CHECK_OK(gencache_keyspace_set_layer(view, "by_model", f2, 1, GENCACHE_SCOPE_TENANT));
    char k[GENCACHE_KEY_MAX];
    key_of(view, req, "by_model", k);
    CHECK_OK(gencache_key_check(c, k));
    CHECK_OK(gencache_layer_get(c, "by_model", &lo));
    CHECK_INT_EQ(lo.scope, GENCACHE_SCOPE_TENANT);
    CHECK_OK(gencache_put(c, k, "v", 1, NULL));

    /* A layer defined without fields is a cache layer with no recipe: no key from requests. */
    gencache_layer_options_init(&lo);
    lo.name = "blobs";
    CHECK_OK(gencache_layer_define(c, &lo));
    size_t n = gencache_keyspace_layer_count(view);
    for (size_t i = 0; i < n; i++)
        CHECK(strcmp(gencache_keyspace_layer_name(view, i), "blobs") != 0);
    gencache_request *r = NULL;
    CHECK_OK(gencache_request_parse(view, req, strlen(req), 0, &r));
    CHECK_RC(gencache_request_key(r, "blobs", k, sizeof k), GENCACHE_ENOTFOUND);

    /* A layer's prompt_normalization is the default mode of models without their own. */
    gencache_layer_options_init(&lo);
    lo.name = "result";
    lo.fields = (const char *const[]){"*"};
    lo.n_fields = 1;
    lo.scope = GENCACHE_SCOPE_TENANT;
    lo.prompt_normalization = GENCACHE_NORM_EXACT;
    CHECK_OK(gencache_layer_define(c, &lo));
    gencache_request *r2 = NULL;
    CHECK_OK(gencache_request_parse(view, req, strlen(req), 0, &r2));
    CHECK_STR_EQ(gencache_request_prompt(r2), "A  cat");
    gencache_request_free(r2);

    /* The view outlives the cache (and so does a request parsed with it). */
    gencache_close(c);
    CHECK_OK(gencache_request_key(r, "text_embedding", k, sizeof k));
    CHECK_OK(gencache_keyspace_set_layer(view, "late", f2, 1, GENCACHE_SCOPE_GLOBAL));
    gencache_request_free(r);
    gencache_keyspace_free(view);
    gencache_keyspace_free(plain);
    CHECK_RC(gencache_keyspace_from_cache(NULL, &view), GENCACHE_EINVAL);
    CHECK(view == NULL);
}

TEST_CASE(config_applies_layers_and_models)
{
    gencache_config *cfg = parse_ok("layers:\n"
                                    "  text_embedding:\n"
                                    "    ttl: 2h\n"
                                    "    sliding_ttl: true\n"
                                    "    shared: false\n"
                                    "    eviction: lru\n"
                                    "  condition:\n"
                                    "    scope: global\n"
                                    "  tiny:\n"
                                    "    fields: [model]\n"
                                    "models:\n"
                                    "  exact-model:\n"
                                    "    prompt_normalization: exact\n"
                                    "tiers:\n"
                                    "  memory: {max_bytes: 64M, max_entries: 10}\n"
                                    "  disk: {enabled: false}\n"
                                    "preferred:\n  - \"tiny/*\"\n  - \"*/abc\"\n");
    gencache_options o;
    gencache_options_init(&o);
    o.data_dir = "/should/be/cleared";
    CHECK_OK(gencache_config_options(cfg, &o));
    CHECK(o.data_dir == NULL);
    CHECK_UINT_EQ(o.mem_max_bytes, 64ull << 20);
    CHECK_UINT_EQ(o.mem_max_entries, 10);
    gencache *c = NULL;
    CHECK_OK(gencache_open_config(&c, cfg, NULL));
    gencache_layer_options lo = {.struct_size = sizeof lo};
    gencache_layer_options_init(&lo);
    CHECK_OK(gencache_layer_get(c, "text_embedding", &lo));
    CHECK_UINT_EQ(lo.ttl_ms, 7200000);
    CHECK_INT_EQ(lo.sliding_ttl, 1);
    CHECK_INT_EQ(lo.shared, 0);
    CHECK_UINT_EQ(lo.n_fields, 3); /* recipe kept */
    CHECK_OK(gencache_layer_get(c, "condition", &lo));
    CHECK_INT_EQ(lo.scope, GENCACHE_SCOPE_GLOBAL);
    CHECK_UINT_EQ(lo.ttl_ms, 600000); /* kept */
    gencache_keyspace *ks = NULL;
    CHECK_OK(gencache_keyspace_from_cache(c, &ks));
    const char *req = "{\"model\": \"exact-model\", \"prompt\": \" A  b \"}";
    gencache_request *r = NULL;
    CHECK_OK(gencache_request_parse(ks, req, strlen(req), 0, &r));
    CHECK_STR_EQ(gencache_request_prompt(r), " A  b ");
    char k[GENCACHE_KEY_MAX];
    CHECK_OK(gencache_request_key(r, "tiny", k, sizeof k));
    CHECK(gencache_config_preferred_match(cfg, k));
    gencache_request_free(r);
    gencache_keyspace_free(ks);
    gencache_close(c);
    CHECK_RC(gencache_open_config(&c, NULL, NULL), GENCACHE_EINVAL);
    CHECK(c == NULL);
    CHECK_RC(gencache_config_apply(cfg, NULL), GENCACHE_EINVAL);
    gencache_config_server s = {.struct_size = 0};
    CHECK_RC(gencache_config_server_get(cfg, &s), GENCACHE_EINVAL);
    gencache_config_free(cfg);
}

/* tiers.redis.cluster: seed nodes become one redis-cluster:// URL; malformed seeds, an empty
 * list, and url together with cluster are refused with the path. */
TEST_CASE(redis_cluster_seeds)
{
    gencache_config *cfg =
        parse_ok("tiers:\n  redis:\n    cluster: [10.0.0.1:7000, \"[::1]:7001\", h:7002]\n");
    gencache_options o;
    gencache_options_init(&o);
    CHECK_OK(gencache_config_options(cfg, &o));
    CHECK_STR_EQ(o.redis_url, "redis-cluster://10.0.0.1:7000,[::1]:7001,h:7002");
    CHECK(o.redis_bloom_fp_rate == 0); /* off unless asked for */
    gencache_config_free(cfg);
    cfg = parse_ok("tiers:\n  redis:\n    url: redis://h\n    bloom_fp_rate: 0.02\n"
                   "    bloom_capacity: 5000\n");
    gencache_options_init(&o);
    CHECK_OK(gencache_config_options(cfg, &o));
    CHECK_DBL_NEAR(o.redis_bloom_fp_rate, 0.02, 1e-12);
    CHECK_UINT_EQ(o.redis_bloom_capacity, 5000);
    gencache_config_free(cfg);
    static const struct {
        const char *text, *what;
    } bad[] = {
        {"tiers:\n  redis:\n    cluster: []\n", "list of HOST:PORT"},
        {"tiers:\n  redis:\n    cluster: h:1\n", "list of HOST:PORT"},
        {"tiers:\n  redis:\n    cluster: [h]\n", "expected HOST:PORT"},
        {"tiers:\n  redis:\n    cluster: [\"h:1,h:2\"]\n", "expected HOST:PORT"},
        {"tiers:\n  redis:\n    cluster: [h:0]\n", "expected HOST:PORT"},
        {"tiers:\n  redis:\n    cluster: [\"redis-cluster://h:1\"]\n", "expected HOST:PORT"},
        {"tiers:\n  redis:\n    url: redis://h\n    cluster: [h:1]\n", "not both"},
        {"tiers:\n  redis:\n    cluster: [h:1]\n    url: redis://h\n", "not both"},
        {"tiers:\n  redis:\n    bloom_fp_rate: 0\n", "like 0.01"},
        {"tiers:\n  redis:\n    bloom_fp_rate: 0.6\n", "like 0.01"},
        {"tiers:\n  redis:\n    bloom_fp_rate: often\n", "like 0.01"},
        {"tiers:\n  redis:\n    bloom_capacity: 0\n", "from 1"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        gencache_config *c = (gencache_config *)&c;
        char err[GENCACHE_CONFIG_ERR_MAX];
        int rc =
            gencache_config_parse("t.yaml", bad[i].text, strlen(bad[i].text), &c, err, sizeof err);
        if (rc != GENCACHE_ECONFIG || c != NULL || !strstr(err, "tiers.redis") ||
            !strstr(err, bad[i].what))
            test_fail(__FILE__, __LINE__, "config %zu: got %s \"%s\", expected \"%s\"", i,
                      gencache_errname(rc), err, bad[i].what);
    }
}
