/*
 * auth.c: bearer tokens. When the config names tenants, every request but /healthz must carry
 * "Authorization: Bearer <token>" with one of their tokens, and the tenant it maps to becomes
 * req->tenant; the tenant is never read from a body or any other header. Tokens are compared in
 * time that does not depend on where a guess first differs, and every configured token is tried,
 * so neither the timing nor the answer tells a client how close its guess was.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "gencached.h"

/* Compares a presented token with a configured one; the time depends only on the configured
 * token's length. */
static bool token_equal(const char *given, size_t given_len, const gcd_tenant *t)
{
    unsigned char diff = given_len != t->token_len;
    for (size_t i = 0; i < t->token_len; i++) {
        unsigned char g = i < given_len ? (unsigned char)given[i] : 0;
        diff |= (unsigned char)(g ^ (unsigned char)t->token[i]);
    }
    return diff == 0;
}

/* The tenant a token maps to, or NULL. */
static const gcd_tenant *token_lookup(const gcd_config *cfg, const char *token, size_t len)
{
    const gcd_tenant *found = NULL;
    for (size_t i = 0; i < cfg->n_tenants; i++) {
        /* No early exit: every token is compared. */
        if (token_equal(token, len, &cfg->tenants[i]) && !found)
            found = &cfg->tenants[i];
    }
    return found;
}

const gcd_tenant *gcd_auth_bearer(const gcd_config *cfg, const char *h)
{
    if (strncasecmp(h, "Bearer ", 7) != 0)
        return NULL;
    const char *tok = h + 7;
    while (*tok == ' ')
        tok++;
    size_t len = strlen(tok);
    while (len && (tok[len - 1] == ' ' || tok[len - 1] == '\t'))
        len--;
    return len ? token_lookup(cfg, tok, len) : NULL;
}

bool gcd_tenant_admin(const gcd_request *req)
{
    return !req->tenant || req->admin;
}

static enum MHD_Result unauthorized(struct MHD_Connection *c, gcd_request *req, const char *why)
{
    /* gcd_reply_error queues its own response; the challenge header must be on it, so the
     * error body is built here the same way. */
    char body[256];
    int n = snprintf(body, sizeof body,
                     "{\"error\": {\"code\": \"unauthorized\", \"message\": \"%s\"}}\n", why);
    struct MHD_Response *resp =
        MHD_create_response_from_buffer((size_t)n, body, MHD_RESPMEM_MUST_COPY);
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer realm=\"gencache\"");
    return gcd_reply_queue(c, req, MHD_HTTP_UNAUTHORIZED, resp);
}

bool gcd_auth_check(struct MHD_Connection *c, gcd_request *req, enum MHD_Result *r)
{
    const gcd_config *cfg = req->srv->cfg;
    req->tenant = NULL;
    req->admin = false;
    if (cfg->n_tenants == 0 || req->route == GCD_ROUTE_HEALTH)
        return true;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h) {
        *r = unauthorized(c, req, "this server needs an Authorization: Bearer <token> header");
        return false;
    }
    if (strncasecmp(h, "Bearer ", 7) != 0) {
        *r = unauthorized(c, req, "the Authorization header must be Bearer <token>");
        return false;
    }
    const gcd_tenant *t = gcd_auth_bearer(cfg, h);
    if (!t) {
        *r = unauthorized(c, req, "unknown token");
        return false;
    }
    req->tenant = t->name;
    req->admin = t->admin;
    /* Metrics are the whole cache's counters: they would tell a tenant about the others. */
    if (req->route == GCD_ROUTE_METRICS && !t->admin) {
        *r = gcd_reply_error(c, req, MHD_HTTP_FORBIDDEN, "forbidden",
                             "/metrics needs the token of a tenant with admin: true");
        return false;
    }
    return true;
}
