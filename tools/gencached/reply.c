/*
 * reply.c: building and queueing responses. Every error leaves the daemon as the same JSON
 * document, {"error": {"code": "...", "message": "..."}}, with a status that says what kind of
 * failure it was; the mapping from library error codes to HTTP statuses lives here and only here.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "gencached.h"

enum MHD_Result gcd_reply_queue(struct MHD_Connection *c, gcd_request *req, unsigned status,
                                struct MHD_Response *resp)
{
    if (!resp)
        return MHD_NO;
    enum MHD_Result r = MHD_queue_response(c, status, resp);
    MHD_destroy_response(resp);
    if (req && r == MHD_YES)
        req->status = status;
    return r;
}

enum MHD_Result gcd_reply_bytes(struct MHD_Connection *c, gcd_request *req, unsigned status,
                                const char *content_type, const void *data, size_t len)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, (void *)data, MHD_RESPMEM_MUST_COPY);
    if (!resp)
        return MHD_NO;
    if (content_type)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    return gcd_reply_queue(c, req, status, resp);
}

char *gcd_error_text(const char *code, char *message)
{
    /* Messages quote what the client sent; JSON strings must be UTF-8, so keep printable ASCII. */
    for (char *p = message; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
            *p = '?';
    json_t *doc = json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", message);
    char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    return text;
}

void gcd_error_note(gcd_server *srv, const gcd_request *req, unsigned status, const char *code,
                    const char *message)
{
    if (srv && !(status == 404 && strcmp(code, "not_found") == 0))
        gcd_ui_error(srv, req, status, code, message);
    gcd_log(srv ? &srv->log : NULL, status >= 500 ? GENCACHE_LOG_WARN : GENCACHE_LOG_DEBUG,
            "%s %s: %u %s: %s", req ? req->method : "?", req ? req->path : "?", status, code,
            message);
}

static enum MHD_Result reply_error_v(struct MHD_Connection *c, gcd_request *req, unsigned status,
                                     const char *code, const char *allow, const char *fmt,
                                     va_list ap)
{
    char message[512];
    vsnprintf(message, sizeof message, fmt, ap);
    char *text = gcd_error_text(code, message);
    if (!text)
        return MHD_NO;
    size_t len = strlen(text);
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_COPY);
    free(text);
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    if (allow)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
    gcd_error_note(req ? req->srv : NULL, req, status, code, message);
    return gcd_reply_queue(c, req, status, resp);
}

enum MHD_Result gcd_reply_error(struct MHD_Connection *c, gcd_request *req, unsigned status,
                                const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    enum MHD_Result r = reply_error_v(c, req, status, code, NULL, fmt, ap);
    va_end(ap);
    return r;
}

static enum MHD_Result reply_error_allow(struct MHD_Connection *c, gcd_request *req,
                                         const char *allow, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    enum MHD_Result r =
        reply_error_v(c, req, MHD_HTTP_METHOD_NOT_ALLOWED, "method_not_allowed", allow, fmt, ap);
    va_end(ap);
    return r;
}

enum MHD_Result gcd_reply_method(struct MHD_Connection *c, gcd_request *req, const char *allow)
{
    return reply_error_allow(c, req, allow, "method %s is not allowed here (allowed: %s)",
                             req->method, allow);
}

unsigned gcd_gencache_status(int err, const char **code)
{
    switch (err) {
    case GENCACHE_ENOTFOUND:
        *code = "not_found";
        return MHD_HTTP_NOT_FOUND;
    case GENCACHE_EINVAL:
    case GENCACHE_EPARSE:
        *code = "bad_request";
        return MHD_HTTP_BAD_REQUEST;
    case GENCACHE_EUNSUPPORTED:
        *code = "unsupported";
        return MHD_HTTP_BAD_REQUEST;
    case GENCACHE_ETOOBIG:
        *code = "too_big";
        return MHD_HTTP_INSUFFICIENT_STORAGE;
    case GENCACHE_EFULL:
        *code = "cache_full";
        return MHD_HTTP_INSUFFICIENT_STORAGE;
    case GENCACHE_ENOSPC:
        *code = "insufficient_storage";
        return MHD_HTTP_INSUFFICIENT_STORAGE;
    case GENCACHE_ELIMIT:
        *code = "limit";
        return MHD_HTTP_CONTENT_TOO_LARGE;
    case GENCACHE_EUNAVAILABLE:
    case GENCACHE_ETIMEDOUT:
        *code = "unavailable";
        return MHD_HTTP_SERVICE_UNAVAILABLE;
    case GENCACHE_EPERM:
        *code = "forbidden";
        return MHD_HTTP_FORBIDDEN;
    default:
        *code = "internal";
        return MHD_HTTP_INTERNAL_SERVER_ERROR;
    }
}

enum MHD_Result gcd_reply_gencache(struct MHD_Connection *c, gcd_request *req, int err,
                                   const char *what)
{
    const char *code;
    unsigned status = gcd_gencache_status(err, &code);
    return gcd_reply_error(c, req, status, code, "%s: %s (%s)", what, gencache_strerror(err),
                           gencache_errname(err));
}
