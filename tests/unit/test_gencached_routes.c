/*
 * test_gencached_routes.c: the daemon's route table (tools/gencached/route.c) without a socket.
 * Every endpoint of DESIGN.md section 5 that gencached serves resolves to its route, with its
 * methods, its body rule and its tail; every other method on those paths is 405 with the Allow
 * header the path takes, every other path 404; entry keys get the library's verdict.
 */
#include "route.h"
#include "test.h"

#define HEX64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static gcd_route_match resolve(const char *method, const char *path)
{
    gcd_route_match m;
    gcd_route_resolve(method, path, &m);
    return m;
}

/* method path -> route, answered by its handler, reading its body as `body`. */
static void check_ok(const char *method, const char *path, gcd_route_id route, gcd_body body,
                     const char *tail)
{
    gcd_route_match m = resolve(method, path);
    if (m.status != 0 || m.route != route || m.body != body)
        test_fail(__FILE__, __LINE__, "%s %s: status %u route %d body %d, expected 0 %d %d", method,
                  path, m.status, (int)m.route, (int)m.body, (int)route, (int)body);
    if (tail)
        CHECK_STR_EQ(m.tail, tail);
    else
        CHECK(m.tail == NULL);
}

static void check_405(const char *method, const char *path, gcd_route_id route, const char *allow)
{
    gcd_route_match m = resolve(method, path);
    if (m.status != 405 || m.route != route)
        test_fail(__FILE__, __LINE__, "%s %s: status %u route %d, expected 405 %d", method, path,
                  m.status, (int)m.route, (int)route);
    CHECK_STR_EQ(m.allow, allow);
    CHECK_INT_EQ(m.body, GCD_BODY_NONE);
}

static void check_404(const char *method, const char *path)
{
    gcd_route_match m = resolve(method, path);
    if (m.status != 404 || m.route != GCD_ROUTE_NONE || m.allow || m.tail)
        test_fail(__FILE__, __LINE__, "%s '%s': status %u route %d, expected 404 and no route",
                  method, path, m.status, (int)m.route);
}

TEST_CASE(design_endpoints)
{
    check_ok("GET", "/healthz", GCD_ROUTE_HEALTH, GCD_BODY_NONE, NULL);
    check_ok("HEAD", "/healthz", GCD_ROUTE_HEALTH, GCD_BODY_NONE, NULL);
    check_ok("GET", "/metrics", GCD_ROUTE_METRICS, GCD_BODY_NONE, NULL);
    check_ok("HEAD", "/metrics", GCD_ROUTE_METRICS, GCD_BODY_NONE, NULL);
    check_ok("POST", "/v1/keys", GCD_ROUTE_KEYS, GCD_BODY_SMALL, NULL);
    const char *entry = "/v1/entries/result/" HEX64;
    check_ok("GET", entry, GCD_ROUTE_ENTRY, GCD_BODY_NONE, "result/" HEX64);
    check_ok("HEAD", entry, GCD_ROUTE_ENTRY, GCD_BODY_NONE, "result/" HEX64);
    check_ok("PUT", entry, GCD_ROUTE_ENTRY, GCD_BODY_LARGE, "result/" HEX64);
    check_ok("DELETE", entry, GCD_ROUTE_ENTRY, GCD_BODY_NONE, "result/" HEX64);
    /* ?as=f32 is a query: MHD hands the path without it. */
    check_ok("POST", "/v1/invalidate", GCD_ROUTE_INVALIDATE, GCD_BODY_IF_SENT, NULL);
    check_ok("POST", "/invalidate", GCD_ROUTE_INVALIDATE, GCD_BODY_IF_SENT, NULL);
    check_ok("POST", "/v1/generate", GCD_ROUTE_GENERATE, GCD_BODY_SMALL, NULL);
    check_ok("POST", "/v1/prewarm", GCD_ROUTE_PREWARM, GCD_BODY_LARGE, NULL);
    check_ok("GET", "/v1/jobs/18c2f3a1b2c-7", GCD_ROUTE_JOB, GCD_BODY_NONE, "18c2f3a1b2c-7");
    check_ok("HEAD", "/v1/jobs/1", GCD_ROUTE_JOB, GCD_BODY_NONE, "1");
    check_ok("GET", "/v1/stats", GCD_ROUTE_STATS, GCD_BODY_NONE, NULL);
    check_ok("HEAD", "/v1/stats", GCD_ROUTE_STATS, GCD_BODY_NONE, NULL);
}

/* The status page: GET and HEAD only, no body, no tail; nothing below /ui is a route. */
TEST_CASE(ui_page)
{
    check_ok("GET", "/ui", GCD_ROUTE_UI, GCD_BODY_NONE, NULL);
    check_ok("HEAD", "/ui", GCD_ROUTE_UI, GCD_BODY_NONE, NULL);
    check_405("POST", "/ui", GCD_ROUTE_UI, "GET, HEAD");
    check_405("PUT", "/ui", GCD_ROUTE_UI, "GET, HEAD");
    check_404("GET", "/ui/");
    check_404("GET", "/ui/x");
    check_404("GET", "/uix");
    CHECK_STR_EQ(gcd_route_name(GCD_ROUTE_UI), "ui");
}

TEST_CASE(lookup_and_store)
{
    check_ok("POST", "/v1/lookup", GCD_ROUTE_LOOKUP, GCD_BODY_LARGE, NULL);
    check_ok("POST", "/v1/store", GCD_ROUTE_STORE, GCD_BODY_LARGE, NULL);
    check_405("GET", "/v1/lookup", GCD_ROUTE_LOOKUP, "POST");
    check_405("PUT", "/v1/store", GCD_ROUTE_STORE, "POST");
    CHECK_STR_EQ(gcd_route_name(GCD_ROUTE_LOOKUP), "lookup");
    CHECK_STR_EQ(gcd_route_name(GCD_ROUTE_STORE), "store");
}

TEST_CASE(trajectories)
{
    check_ok("POST", "/v1/trajectories", GCD_ROUTE_TRAJ_STORE, GCD_BODY_LARGE, NULL);
    check_ok("POST", "/v1/trajectories/lookup", GCD_ROUTE_TRAJ_MATCH, GCD_BODY_LARGE, NULL);
    check_405("GET", "/v1/trajectories", GCD_ROUTE_TRAJ_STORE, "POST");
    check_405("PUT", "/v1/trajectories/lookup", GCD_ROUTE_TRAJ_MATCH, "POST");
    check_404("POST", "/v1/trajectories/");
    check_404("POST", "/v1/trajectories/lookup/x");
    check_404("POST", "/v1/trajectory");
    CHECK_STR_EQ(gcd_route_name(GCD_ROUTE_TRAJ_STORE), "trajectories");
    CHECK_STR_EQ(gcd_route_name(GCD_ROUTE_TRAJ_MATCH), "trajectories_lookup");
    CHECK_STR_EQ(gcd_route_name(GCD_ROUTE_UI), "ui");
    CHECK_STR_EQ(gcd_route_name(GCD_ROUTE_COUNT), "other");
}

TEST_CASE(methods_not_allowed)
{
    check_405("POST", "/healthz", GCD_ROUTE_HEALTH, "GET, HEAD");
    check_405("DELETE", "/healthz", GCD_ROUTE_HEALTH, "GET, HEAD");
    check_405("get", "/healthz", GCD_ROUTE_HEALTH, "GET, HEAD"); /* methods are case-sensitive */
    check_405("POST", "/metrics", GCD_ROUTE_METRICS, "GET, HEAD");
    check_405("PUT", "/v1/stats", GCD_ROUTE_STATS, "GET, HEAD");
    check_405("GET", "/v1/keys", GCD_ROUTE_KEYS, "POST");
    check_405("PUT", "/v1/keys", GCD_ROUTE_KEYS, "POST");
    check_405("GET", "/v1/generate", GCD_ROUTE_GENERATE, "POST");
    check_405("HEAD", "/v1/prewarm", GCD_ROUTE_PREWARM, "POST");
    check_405("GET", "/v1/invalidate", GCD_ROUTE_INVALIDATE, "POST");
    check_405("DELETE", "/invalidate", GCD_ROUTE_INVALIDATE, "POST");
    check_405("POST", "/v1/jobs/1", GCD_ROUTE_JOB, "GET, HEAD");
    check_405("DELETE", "/v1/jobs/1", GCD_ROUTE_JOB, "GET, HEAD");
    check_405("POST", "/v1/entries/result/" HEX64, GCD_ROUTE_ENTRY, "GET, HEAD, PUT, DELETE");
    check_405("PATCH", "/v1/entries/result/" HEX64, GCD_ROUTE_ENTRY, "GET, HEAD, PUT, DELETE");
    check_405("", "/v1/entries/x", GCD_ROUTE_ENTRY, "GET, HEAD, PUT, DELETE");
    check_405("GETX", "/v1/stats", GCD_ROUTE_STATS, "GET, HEAD");
    check_405("GE", "/v1/stats", GCD_ROUTE_STATS, "GET, HEAD");
}

/* Every method an Allow header names is one the path takes: a client that follows a 405's
 * Allow header is never answered 405 again. */
TEST_CASE(allow_lists_are_taken)
{
    static const char *const paths[] = {"/healthz",    "/metrics",     "/v1/keys",
                                        "/v1/stats",   "/v1/generate", "/v1/prewarm",
                                        "/invalidate", "/v1/jobs/x",   "/v1/entries/result/x"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        gcd_route_match m = resolve("OPTIONS", paths[i]);
        CHECK_UINT_EQ(m.status, 405);
        char list[64];
        snprintf(list, sizeof list, "%s", m.allow);
        for (char *save = NULL, *tok = strtok_r(list, ", ", &save); tok;
             tok = strtok_r(NULL, ", ", &save)) {
            gcd_route_match k = resolve(tok, paths[i]);
            if (k.status != 0 || k.route != m.route)
                test_fail(__FILE__, __LINE__, "%s %s: Allow names it, but status %u", tok, paths[i],
                          k.status);
        }
    }
}

TEST_CASE(unknown_paths)
{
    static const char *const paths[] = {
        "",          "/",           "/v1",          "/v1/",         "/healthz/",
        "/healthzz", "/HEALTHZ",    "/v1/stats/",   "/v1/stats/x",  "/V1/stats",
        "/v1/keys/", "/v1/entries", "/v1/entriesx", "/v2/entries/", "/metrics2",
        "/v1/jobs",  "/jobs/1",     "//healthz",    "/v1//keys",    "/v1/entries%2F"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        check_404("GET", paths[i]);
        check_404("POST", paths[i]);
    }
}

static gencache *open_memory_cache(void)
{
    gencache_options o;
    gencache_options_init(&o);
    gencache *c = NULL;
    CHECK_OK(gencache_open(&c, &o));
    return c;
}

static void check_key(gencache *c, const char *key, unsigned status, const char *code)
{
    const char *got = "unset";
    int err = 1;
    unsigned st = gcd_route_key_status(c, key, &got, &err);
    if (st != status)
        test_fail(__FILE__, __LINE__, "key '%.120s': status %u, expected %u", key, st, status);
    if (code)
        CHECK_STR_EQ(got, code);
    else
        CHECK(got == NULL);
}

TEST_CASE(entry_keys)
{
    gencache *c = open_memory_cache();
    check_key(c, "result/" HEX64, 0, NULL);
    check_key(c, "image_latent/" HEX64, 0, NULL);
    check_key(c, "nosuchlayer/" HEX64, 404, "unknown_layer");
    static const char *const bad[] = {
        "",
        "result",
        "result/",
        "/" HEX64,
        "result/abc",
        "result/" HEX64 "0",                                                      /* 65 digits */
        "result/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde", /* 63 digits */
        "result/0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef",
        "result/" HEX64 "/x",
        "result//" HEX64,
        "result/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdeg",
        "re sult/" HEX64,
        "result/ " HEX64,
        "a-layer-name-much-longer-than-thirty-two-bytes/" HEX64,
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        check_key(c, bad[i], 400, "bad_key");
    /* Longer than any key: refused before the library looks. */
    char longkey[512];
    memset(longkey, 'a', sizeof longkey - 1);
    longkey[sizeof longkey - 1] = '\0';
    check_key(c, longkey, 400, "bad_key");
    /* The path's tail is what the key check sees: an empty one is malformed. */
    gcd_route_match m = resolve("GET", "/v1/entries/");
    CHECK_UINT_EQ(m.status, 0);
    CHECK_STR_EQ(m.tail, "");
    check_key(c, m.tail, 400, "bad_key");
    gencache_close(c);
}

TEST_CASE(route_names)
{
    CHECK_STR_EQ(gcd_route_name(GCD_ROUTE_NONE), "unknown");
    CHECK_STR_EQ(gcd_route_name(GCD_ROUTE_HEALTH), "healthz");
    CHECK_STR_EQ(gcd_route_name(GCD_ROUTE_STATS), "stats");
    CHECK_STR_EQ(gcd_route_name(GCD_ROUTE_KEYS), "keys");
    CHECK_STR_EQ(gcd_route_name(GCD_ROUTE_ENTRY), "entries");
    CHECK_STR_EQ(gcd_route_name(GCD_ROUTE_GENERATE), "generate");
    CHECK_STR_EQ(gcd_route_name(GCD_ROUTE_PREWARM), "prewarm");
    CHECK_STR_EQ(gcd_route_name(GCD_ROUTE_JOB), "jobs");
    CHECK_STR_EQ(gcd_route_name(GCD_ROUTE_METRICS), "metrics");
    CHECK_STR_EQ(gcd_route_name(GCD_ROUTE_INVALIDATE), "invalidate");
    CHECK_STR_EQ(gcd_route_name(GCD_ROUTE_COUNT), "other");
}
