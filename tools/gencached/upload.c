/*
 * upload.c: POST /v1/generate with the input image itself, for image-to-video. The client sends
 * either multipart/form-data (a part "request": the request JSON, a part "image": the file), or
 * the image file as the body (Content-Type image/png, image/jpeg or image/webp) with the request
 * JSON in the X-Gencache-Request header. The daemon decodes the image (at most limits.max_body
 * bytes), writes its pixel digest and signature into the request's image (the request's key
 * then names these pixels), and forwards to the upstream a form of its own: the rewritten
 * request and the image bytes as they came (docs/service.md, "Images"). A malformed upload is
 * refused before anything is looked up.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "gencached.h"
#include "multipart.h"

#define UPSTREAM_BOUNDARY "gencache-upload-7b1f4c2e9a"

/* True for the raw image bodies /v1/generate takes. */
static bool image_type(const char *ct)
{
    static const char *const types[] = {"image/png", "image/jpeg", "image/webp"};
    if (!ct)
        return false;
    for (size_t i = 0; i < 3; i++) {
        size_t n = strlen(types[i]);
        if (strncasecmp(ct, types[i], n) == 0 && (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' '))
            return true;
    }
    return false;
}

bool gcd_upload_is(const char *content_type)
{
    return gcd_multipart_is_form(content_type) || image_type(content_type);
}

static int failure(gcd_upload *up, unsigned status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int failure(gcd_upload *up, unsigned status, const char *code, const char *fmt, ...)
{
    up->status = status;
    snprintf(up->code, sizeof up->code, "%s", code);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(up->message, sizeof up->message, fmt, ap);
    va_end(ap);
    return -1;
}

/* The form the upstream receives: the request, then the image with its own type. */
static int build_forward(gcd_upload *up, const char *image, size_t image_len, const char *ct)
{
    char head[512];
    int h1 = snprintf(head, sizeof head,
                      "--" UPSTREAM_BOUNDARY "\r\nContent-Disposition: form-data; "
                      "name=\"request\"\r\nContent-Type: application/json\r\n\r\n");
    char head2[512];
    int h2 = snprintf(head2, sizeof head2,
                      "\r\n--" UPSTREAM_BOUNDARY "\r\nContent-Disposition: form-data; "
                      "name=\"image\"; filename=\"image\"\r\nContent-Type: %s\r\n\r\n",
                      ct && *ct ? ct : "application/octet-stream");
    static const char tail[] = "\r\n--" UPSTREAM_BOUNDARY "--\r\n";
    size_t n = (size_t)h1 + up->request_len + (size_t)h2 + image_len + sizeof tail - 1;
    char *out = malloc(n);
    if (!out)
        return failure(up, 500, "internal", "out of memory forwarding the image");
    size_t k = 0;
    memcpy(out + k, head, (size_t)h1), k += (size_t)h1;
    memcpy(out + k, up->request, up->request_len), k += up->request_len;
    memcpy(out + k, head2, (size_t)h2), k += (size_t)h2;
    memcpy(out + k, image, image_len), k += image_len;
    memcpy(out + k, tail, sizeof tail - 1);
    up->forward = out;
    up->forward_len = n;
    snprintf(up->forward_type, sizeof up->forward_type,
             "multipart/form-data; boundary=" UPSTREAM_BOUNDARY);
    return 0;
}

int gcd_upload_read(const char *content_type, const char *header_request, const char *body,
                    size_t len, gcd_upload *up)
{
    memset(up, 0, sizeof *up);
    const char *text, *image;
    size_t text_len, image_len;
    char image_ct[128] = "";
    if (gcd_multipart_is_form(content_type)) {
        gcd_part parts[GCD_MULTIPART_MAX_PARTS];
        size_t n = 0;
        char err[256];
        if (gcd_multipart_parse(content_type, body, len, parts, &n, err, sizeof err) != 0)
            return failure(up, 400, "bad_multipart", "generate: %s", err);
        const gcd_part *r = gcd_multipart_find(parts, n, "request");
        const gcd_part *i = gcd_multipart_find(parts, n, "image");
        if (!r || !i || n != 2)
            return failure(up, 400, "bad_multipart",
                           "generate: an upload has exactly two parts, \"request\" (the request "
                           "JSON) and \"image\" (the image file)");
        text = r->data, text_len = r->len;
        image = i->data, image_len = i->len;
        snprintf(image_ct, sizeof image_ct, "%s", i->content_type);
    } else {
        if (!header_request || !*header_request)
            return failure(up, 400, "bad_request",
                           "generate: an image body needs the request JSON in X-Gencache-Request");
        text = header_request, text_len = strlen(header_request);
        image = body ? body : "", image_len = len;
        snprintf(image_ct, sizeof image_ct, "%s", content_type);
    }
    char err[256];
    char desc[256];
    size_t rlen = 0;
    int rc = gcd_image_describe(image, image_len, desc, sizeof desc, err, sizeof err);
    if (rc != GENCACHE_OK)
        return failure(up,
                       rc == GENCACHE_ELIMIT   ? 413
                       : rc == GENCACHE_ENOMEM ? 500
                                               : 400,
                       "bad_image", "generate: %s", err);
    if (!gcd_json_object_text(text, text_len))
        return failure(up, 400, "bad_request", "generate: the request is not a JSON object");
    up->request = gcd_splice_image(text, text_len, desc, &rlen);
    if (!up->request)
        return failure(up, 500, "internal", "out of memory reading the upload");
    up->request_len = rlen;
    return build_forward(up, image, image_len, image_ct);
}

void gcd_upload_free(gcd_upload *up)
{
    free(up->request);
    free(up->forward);
    up->request = up->forward = NULL;
}
