/*
 * client.h: the one HTTP client of the gencache tool's daemon verbs (libcurl, one reused handle
 * so consecutive requests keep their connection). A request either streams a 200 body to a FILE
 * or collects it, keeps the response headers, and sends the bearer token when one is given.
 */
#ifndef GENCACHE_CLI_CLIENT_H
#define GENCACHE_CLI_CLIENT_H

#include <stdbool.h>
#include <stdio.h>

#include <curl/curl.h>

typedef struct cli_buffer {
    char *data; /* NUL-terminated when not NULL */
    size_t len, cap;
} cli_buffer;

typedef struct cli_client {
    CURL *curl;
    char base[2048];  /* the daemon URL without a trailing slash */
    char auth[1100];  /* "Authorization: Bearer <token>", or "" */
    char errbuf[CURL_ERROR_SIZE];
    long status;      /* HTTP status of the last request; 0 when none came back */
    FILE *out;        /* where a 200 body goes; NULL: into body */
    bool out_failed;
    cli_buffer body;    /* the body when not streamed (errors, JSON documents) */
    cli_buffer headers; /* raw response header lines of the last response */
} cli_client;

/* Appends n bytes (at most up to max in all). Returns false when memory ran out. */
bool cli_buffer_add(cli_buffer *b, const char *data, size_t n, size_t max);

/* The token: $GENCACHE_TOKEN, or NULL. */
const char *cli_default_token(void);

/* Prepares a client for the daemon at url; token may be NULL. Returns 0, 2 for a bad URL or
 * token (reported), 1 when libcurl cannot start. */
int cli_client_open(cli_client *cl, const char *url, const char *token);
void cli_client_close(cli_client *cl);

/* One request: method GET, HEAD, PUT, POST or DELETE on base + path, then key percent-encoded
 * where a path may not carry a byte as is (key may be NULL). headers are the caller's; the token
 * is added. Returns 0 when an HTTP answer came back (cl->status says which), 1 after printing why
 * none did. */
int cli_client_request(cli_client *cl, const char *method, const char *path, const char *key,
                       const struct curl_slist *headers, const void *body, size_t body_len);

/* Copies the value of response header `name` (trimmed) into out. Returns false when absent. */
bool cli_client_header(const cli_client *cl, const char *name, char *out, size_t cap);

/* Prints the daemon's error for a failed request ("not found: WHAT" for a plain miss, else its
 * JSON message and status) and returns 1. */
int cli_client_report(const cli_client *cl, const char *what);

#endif
