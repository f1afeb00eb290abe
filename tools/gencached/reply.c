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

static enum MHD_Result reply_error_v(struct MHD_Connection *c, gcd_request *req, unsigned status,
                                     const char *code, const char *allow, const char *fmt,
                                     va_list ap)
{
    char message[512];
    vsnprintf(message, sizeof message, fmt, ap);
    /* Messages quote what the client sent; JSON strings must be UTF-8, so keep printable ASCII. */
    for (char *p = message; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
            *p = '?';
    json_t *doc = json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", message);
    char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
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
    if (req && !(status == 404 && strcmp(code, "not_found") == 0))
        gcd_ui_error(req->srv, req, status, code, message);
    if (status >= 500)
        gcd_log(req ? &req->srv->log : NULL, GENCACHE_LOG_WARN, "%s %s: %u %s: %s",
                req ? req->method : "?", req ? req->path : "?", status, code, message);
    else
        gcd_log(req ? &req->srv->log : NULL, GENCACHE_LOG_DEBUG, "%s %s: %u %s: %s",
                req ? req->method : "?", req ? req->path : "?", status, code, message);
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

enum MHD_Result gcd_reply_gencache(struct MHD_Connection *c, gcd_request *req, int err,
                                   const char *what)
{
    unsigned status;
    const char *code;
    switch (err) {
    case GENCACHE_ENOTFOUND:
        status = MHD_HTTP_NOT_FOUND;
        code = "not_found";
        break;
    case GENCACHE_EINVAL:
    case GENCACHE_EPARSE:
        status = MHD_HTTP_BAD_REQUEST;
        code = "bad_request";
        break;
    case GENCACHE_EUNSUPPORTED:
        status = MHD_HTTP_BAD_REQUEST;
        code = "unsupported";
        break;
    case GENCACHE_ETOOBIG:
        status = MHD_HTTP_INSUFFICIENT_STORAGE;
        code = "too_big";
        break;
    case GENCACHE_EFULL:
        status = MHD_HTTP_INSUFFICIENT_STORAGE;
        code = "cache_full";
        break;
    case GENCACHE_ENOSPC:
        status = MHD_HTTP_INSUFFICIENT_STORAGE;
        code = "insufficient_storage";
        break;
    case GENCACHE_ELIMIT:
        status = MHD_HTTP_CONTENT_TOO_LARGE;
        code = "limit";
        break;
    case GENCACHE_EUNAVAILABLE:
    case GENCACHE_ETIMEDOUT:
        status = MHD_HTTP_SERVICE_UNAVAILABLE;
        code = "unavailable";
        break;
    case GENCACHE_EPERM:
        status = MHD_HTTP_FORBIDDEN;
        code = "forbidden";
        break;
    default:
        status = MHD_HTTP_INTERNAL_SERVER_ERROR;
        code = "internal";
        break;
    }
    return gcd_reply_error(c, req, status, code, "%s: %s (%s)", what, gencache_strerror(err),
                           gencache_errname(err));
}
