/*
 * route.c: the route table. Each path (exact, or a prefix followed by an identifier) names the
 * methods it takes, in the order the Allow header lists them, and the one method that carries a
 * body, so a 405 and its Allow header come from the same line of the table as the dispatch.
 */
#include <stdbool.h>
#include <string.h>

#include "route.h"

typedef struct route_def {
    const char *path;
    bool prefix; /* path is followed by the tail ({layer}/{hex}, {id}) */
    gcd_route_id route;
    const char *allow;       /* the methods taken, "A, B" */
    const char *body_method; /* the method that sends a body, or NULL */
    gcd_body body;
} route_def;

static const route_def ROUTES[] = {
    {"/healthz", false, GCD_ROUTE_HEALTH, "GET, HEAD", NULL, GCD_BODY_NONE},
    {"/v1/stats", false, GCD_ROUTE_STATS, "GET, HEAD", NULL, GCD_BODY_NONE},
    {"/v1/keys", false, GCD_ROUTE_KEYS, "POST", "POST", GCD_BODY_SMALL},
    {"/v1/invalidate", false, GCD_ROUTE_INVALIDATE, "POST", "POST", GCD_BODY_IF_SENT},
    {"/invalidate", false, GCD_ROUTE_INVALIDATE, "POST", "POST", GCD_BODY_IF_SENT},
    {"/v1/generate", false, GCD_ROUTE_GENERATE, "POST", "POST", GCD_BODY_SMALL},
    {"/v1/prewarm", false, GCD_ROUTE_PREWARM, "POST", "POST", GCD_BODY_LARGE},
    {"/metrics", false, GCD_ROUTE_METRICS, "GET, HEAD", NULL, GCD_BODY_NONE},
    {"/v1/jobs/", true, GCD_ROUTE_JOB, "GET, HEAD", NULL, GCD_BODY_NONE},
    {"/v1/entries/", true, GCD_ROUTE_ENTRY, "GET, HEAD, PUT, DELETE", "PUT", GCD_BODY_LARGE},
    {"/v1/lookup", false, GCD_ROUTE_LOOKUP, "POST", "POST", GCD_BODY_LARGE},
    {"/v1/store", false, GCD_ROUTE_STORE, "POST", "POST", GCD_BODY_LARGE},
    {"/ui", false, GCD_ROUTE_UI, "GET, HEAD", NULL, GCD_BODY_NONE},
    {"/v1/trajectories", false, GCD_ROUTE_TRAJ_STORE, "POST", "POST", GCD_BODY_LARGE},
    {"/v1/trajectories/lookup", false, GCD_ROUTE_TRAJ_MATCH, "POST", "POST", GCD_BODY_LARGE},
};

static const char *const NAMES[GCD_ROUTE_COUNT] = {
    [GCD_ROUTE_NONE] = "unknown",    [GCD_ROUTE_HEALTH] = "healthz",
    [GCD_ROUTE_STATS] = "stats",     [GCD_ROUTE_KEYS] = "keys",
    [GCD_ROUTE_ENTRY] = "entries",   [GCD_ROUTE_GENERATE] = "generate",
    [GCD_ROUTE_PREWARM] = "prewarm", [GCD_ROUTE_JOB] = "jobs",
    [GCD_ROUTE_METRICS] = "metrics", [GCD_ROUTE_INVALIDATE] = "invalidate",
    [GCD_ROUTE_LOOKUP] = "lookup",   [GCD_ROUTE_STORE] = "store",
    [GCD_ROUTE_UI] = "ui",
};

/* True when method is one of the comma-separated names in list. */
static bool listed(const char *list, const char *method)
{
    size_t n = strlen(method);
    for (const char *p = list; *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        size_t len = strcspn(p, ",");
        if (len == n && n && memcmp(p, method, n) == 0)
            return true;
        p += len;
    }
    return false;
}

void gcd_route_resolve(const char *method, const char *path, gcd_route_match *out)
{
    memset(out, 0, sizeof *out);
    out->status = 404;
    for (size_t i = 0; i < sizeof ROUTES / sizeof ROUTES[0]; i++) {
        const route_def *d = &ROUTES[i];
        size_t n = strlen(d->path);
        if (d->prefix ? strncmp(path, d->path, n) != 0 : strcmp(path, d->path) != 0)
            continue;
        out->route = d->route;
        out->tail = d->prefix ? path + n : NULL;
        out->allow = d->allow;
        if (!listed(d->allow, method)) {
            out->status = 405;
            return;
        }
        out->status = 0;
        out->body = d->body_method && strcmp(method, d->body_method) == 0 ? d->body : GCD_BODY_NONE;
        return;
    }
}

const char *gcd_route_name(gcd_route_id route)
{
    if (route == GCD_ROUTE_TRAJ_STORE) /* named here: the table above keeps its two columns */
        return "trajectories";
    if (route == GCD_ROUTE_TRAJ_MATCH)
        return "trajectories_lookup";
    return (unsigned)route < GCD_ROUTE_COUNT ? NAMES[route] : "other";
}

unsigned gcd_route_key_status(gencache *cache, const char *key, const char **code, int *err)
{
    *err = strlen(key) >= GENCACHE_KEY_MAX ? GENCACHE_EINVAL : gencache_key_check(cache, key);
    switch (*err) {
    case GENCACHE_OK:
        *code = NULL;
        return 0;
    case GENCACHE_EINVAL:
        *code = "bad_key";
        return 400;
    case GENCACHE_ENOTFOUND:
        *code = "unknown_layer";
        return 404;
    default:
        *code = "internal";
        return 500;
    }
}
