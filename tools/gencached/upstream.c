/*
 * upstream.c: one call to the upstream generator. The proxy forwards the client's request JSON
 * unchanged as a POST and takes the answer's bytes and Content-Type as the generated result.
 * Every failure is classified as an error or a timeout and described in one line; an answer is
 * never longer than the limit the caller gives, so a runaway upstream cannot exhaust memory.
 * A call blocks its thread; generate.c runs them on its own workers, never on MHD's.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "gencached.h"

#define CONNECT_TIMEOUT_MS 5000

typedef struct sink {
    char *data;
    size_t size;
    size_t cap;
    uint64_t max;
    bool over; /* the answer passed max: the transfer is aborted */
    const int *cancel;
    char content_type[256];
} sink;

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    sink *s = userdata;
    size_t n = size * nmemb;
    if (s->size + n > s->max) {
        s->over = true;
        return 0; /* CURLE_WRITE_ERROR */
    }
    if (s->size + n > s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64 * 1024;
        while (cap < s->size + n)
            cap *= 2;
        if (cap > s->max)
            cap = (size_t)s->max;
        char *nd = realloc(s->data, cap);
        if (!nd)
            return 0;
        s->data = nd;
        s->cap = cap;
    }
    memcpy(s->data + s->size, ptr, n);
    s->size += n;
    return n;
}

static size_t on_header(char *buf, size_t size, size_t nitems, void *userdata)
{
    sink *s = userdata;
    size_t n = size * nitems;
    static const char name[] = "content-type:";
    if (n > sizeof name - 1 && strncasecmp(buf, name, sizeof name - 1) == 0) {
        const char *v = buf + sizeof name - 1;
        const char *end = buf + n;
        while (v < end && (*v == ' ' || *v == '\t'))
            v++;
        while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
            end--;
        size_t len = (size_t)(end - v);
        if (len >= sizeof s->content_type)
            len = sizeof s->content_type - 1;
        memcpy(s->content_type, v, len);
        s->content_type[len] = '\0';
        /* Stored in metadata and echoed back in a header: printable ASCII only. */
        for (char *p = s->content_type; *p; p++)
            if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
                *p = '?';
    }
    return n;
}

static int on_progress(void *clientp, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    (void)dltotal;
    (void)dlnow;
    (void)ultotal;
    (void)ulnow;
    const sink *s = clientp;
    return s->cancel && __atomic_load_n(s->cancel, __ATOMIC_ACQUIRE) ? 1 : 0;
}

int gcd_upstream_init(void)
{
    return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -1;
}

void gcd_upstream_cleanup(void)
{
    curl_global_cleanup();
}

void gcd_upstream_call(const char *url, unsigned timeout_ms, const char *body, size_t len,
                       uint64_t max_bytes, const int *cancel, gcd_upstream_reply *out)
{
    gcd_upstream_call_typed(url, timeout_ms, NULL, body, len, max_bytes, cancel, out);
}

void gcd_upstream_call_typed(const char *url, unsigned timeout_ms, const char *content_type,
                             const char *body, size_t len, uint64_t max_bytes, const int *cancel,
                             gcd_upstream_reply *out)
{
    memset(out, 0, sizeof *out);
    out->outcome = GCD_UPSTREAM_ERROR;
    sink s = {.max = max_bytes, .cancel = cancel};
    uint64_t t0 = gcd_mono_ns();
    CURL *h = curl_easy_init();
    struct curl_slist *hdrs = NULL;
    char ct[200];
    snprintf(ct, sizeof ct, "Content-Type: %s", content_type ? content_type : "application/json");
    hdrs = curl_slist_append(hdrs, ct);
    hdrs = hdrs ? curl_slist_append(hdrs, "Expect:") : NULL; /* no 100-continue round trip */
    if (!h || !hdrs) {
        snprintf(out->message, sizeof out->message, "out of memory setting up the call");
        goto done;
    }
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &s);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &s);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, &s);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L); /* threads: no SIGALRM for DNS timeouts */
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
                     (long)(timeout_ms < CONNECT_TIMEOUT_MS ? timeout_ms : CONNECT_TIMEOUT_MS));
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    char errbuf[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);

    CURLcode rc = curl_easy_perform(h);
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    if (rc == CURLE_OPERATION_TIMEDOUT) {
        out->outcome = GCD_UPSTREAM_TIMEOUT;
        snprintf(out->message, sizeof out->message, "upstream %.160s did not answer within %u ms",
                 url, timeout_ms);
    } else if (rc == CURLE_WRITE_ERROR && s.over) {
        snprintf(out->message, sizeof out->message,
                 "upstream answer is larger than the limit of %llu bytes",
                 (unsigned long long)max_bytes);
    } else if (rc == CURLE_ABORTED_BY_CALLBACK) {
        snprintf(out->message, sizeof out->message, "upstream call cancelled: shutting down");
    } else if (rc != CURLE_OK) {
        snprintf(out->message, sizeof out->message, "upstream %.160s: %.80s", url,
                 errbuf[0] ? errbuf : curl_easy_strerror(rc));
    } else if (status < 200 || status > 299) {
        snprintf(out->message, sizeof out->message, "upstream answered with status %ld", status);
    } else {
        out->outcome = GCD_UPSTREAM_OK;
        out->data = s.data ? s.data : malloc(1);
        s.data = NULL;
        out->size = s.size;
        snprintf(out->content_type, sizeof out->content_type, "%s",
                 s.content_type[0] ? s.content_type : "application/octet-stream");
        if (!out->data) {
            out->outcome = GCD_UPSTREAM_ERROR;
            snprintf(out->message, sizeof out->message, "out of memory");
        }
    }
done:
    out->duration_ms = (gcd_mono_ns() - t0) / 1000000u;
    free(s.data);
    curl_slist_free_all(hdrs);
    if (h)
        curl_easy_cleanup(h);
}
