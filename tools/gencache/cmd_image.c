/*
 * cmd_image.c: the image verbs of `gencache`. `imgid` prints pixel digests, `imghash` perceptual
 * hashes (one `<value>  FILE` line per file, as sha256sum does), and `similar` the files that are
 * near duplicates of a query image, nearest first. A file that cannot be read or decoded is
 * reported on stderr and the others are still processed; the exit status is then 1. With --json
 * each prints one JSON array instead, an object per FILE (an error object for a failed one).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "gencache.h"
#include "cli.h"

/* Reports a file that failed on stderr and, for --json (out not NULL), as an element of out. */
static void report(const char *path, int rc, json_t *out)
{
    char msg[512];
    if (rc == GENCACHE_EIO)
        snprintf(msg, sizeof msg, "cannot read: %s", strerror(errno ? errno : EIO));
    else
        snprintf(msg, sizeof msg, "%s (%s)", gencache_strerror(rc), gencache_errname(rc));
    cli_error("%s: %s", path, msg);
    if (out) {
        json_t *e = cli_json_error(rc, msg);
        json_object_set_new(e, "file", json_string(path));
        json_array_append_new(out, e);
    }
}

/* Prints the --json array (when there is one) and returns the exit status. */
static int finish(json_t *out, int status)
{
    if (out && cli_print_json(out) != 0)
        return 1;
    return status;
}

/* Splits "--name=value" / "--name value"; returns the value or NULL when arg is not --name. */
static const char *opt_value(const char *name, int argc, char **argv, int *i)
{
    size_t n = strlen(name);
    if (strncmp(argv[*i], name, n) != 0)
        return NULL;
    if (argv[*i][n] == '=')
        return argv[*i] + n + 1;
    if (argv[*i][n] != '\0')
        return NULL;
    if (*i + 1 >= argc)
        return "";
    return argv[++*i];
}

int cmd_imgid(int argc, char **argv)
{
    int first = 1;
    json_t *out = NULL;
    if (first < argc && strcmp(argv[first], "--json") == 0) {
        out = json_array();
        first++;
    }
    if (first < argc && strcmp(argv[first], "--") == 0)
        first++;
    if (first >= argc) {
        cli_error("imgid: no FILE given");
        json_decref(out);
        return 2;
    }
    int status = 0;
    for (int i = first; i < argc; i++) {
        char digest[GENCACHE_DIGEST_MAX];
        errno = 0;
        int rc = gencache_image_digest_file(argv[i], digest);
        if (rc != GENCACHE_OK) {
            report(argv[i], rc, out);
            status = 1;
            continue;
        }
        if (out)
            json_array_append_new(out, json_pack("{s:s,s:s}", "file", argv[i], "digest", digest));
        else
            printf("%s  %s\n", digest, argv[i]);
    }
    return finish(out, status);
}

static int parse_algo(const char *s, gencache_hash_algo *out)
{
    if (strcmp(s, "ahash") == 0)
        *out = GENCACHE_HASH_AHASH;
    else if (strcmp(s, "dhash") == 0)
        *out = GENCACHE_HASH_DHASH;
    else if (strcmp(s, "phash") == 0)
        *out = GENCACHE_HASH_PHASH;
    else
        return -1;
    return 0;
}

int cmd_imghash(int argc, char **argv)
{
    gencache_hash_algo algo = GENCACHE_HASH_PHASH;
    unsigned bits = 64;
    bool as_json = false;
    int i = 1;
    for (; i < argc && argv[i][0] == '-' && argv[i][1] != '\0'; i++) {
        const char *v;
        if (strcmp(argv[i], "--") == 0) {
            i++;
            break;
        }
        if ((v = opt_value("--algo", argc, argv, &i)) != NULL) {
            if (parse_algo(v, &algo) != 0) {
                cli_error("imghash: --algo must be ahash, dhash or phash, not '%s'", v);
                return 2;
            }
        } else if ((v = opt_value("--bits", argc, argv, &i)) != NULL) {
            if (strcmp(v, "64") == 0)
                bits = 64;
            else if (strcmp(v, "256") == 0)
                bits = 256;
            else {
                cli_error("imghash: --bits must be 64 or 256, not '%s'", v);
                return 2;
            }
        } else if (strcmp(argv[i], "--json") == 0) {
            as_json = true;
        } else {
            cli_error("imghash: unknown option '%s'", argv[i]);
            return 2;
        }
    }
    if (i >= argc) {
        cli_error("imghash: no FILE given");
        return 2;
    }
    int status = 0;
    json_t *out = as_json ? json_array() : NULL;
    static const char *const algo_names[] = {"ahash", "dhash", "phash"};
    const char *algo_name = algo == GENCACHE_HASH_AHASH   ? algo_names[0]
                            : algo == GENCACHE_HASH_DHASH ? algo_names[1]
                                                          : algo_names[2];
    for (; i < argc; i++) {
        gencache_image *img;
        errno = 0;
        int rc = gencache_image_decode_file(argv[i], NULL, &img);
        char hex[GENCACHE_HASH_HEX_MAX];
        if (rc == GENCACHE_OK) {
            rc = gencache_image_hash(img, algo, bits, NULL, hex);
            gencache_image_free(img);
        }
        if (rc != GENCACHE_OK) {
            report(argv[i], rc, out);
            status = 1;
            continue;
        }
        if (out)
            json_array_append_new(out, json_pack("{s:s,s:s,s:i,s:s}", "file", argv[i], "algo",
                                                 algo_name, "bits", (int)bits, "hash", hex));
        else
            printf("%s  %s\n", hex, argv[i]);
    }
    return finish(out, status);
}

static int sig_of(const char *path, gencache_image_sig *sig, json_t *out)
{
    gencache_image *img;
    errno = 0;
    int rc = gencache_image_decode_file(path, NULL, &img);
    if (rc == GENCACHE_OK) {
        rc = gencache_image_sig_get(img, sig);
        gencache_image_free(img);
    }
    if (rc != GENCACHE_OK)
        report(path, rc, out);
    return rc;
}

int cmd_similar(int argc, char **argv)
{
    gencache_match_options opts;
    gencache_match_options_init(&opts);
    bool as_json = false;
    int i = 1;
    for (; i < argc && argv[i][0] == '-' && argv[i][1] != '\0'; i++) {
        const char *v;
        if (strcmp(argv[i], "--") == 0) {
            i++;
            break;
        }
        if ((v = opt_value("--radius", argc, argv, &i)) != NULL) {
            char *end;
            errno = 0;
            long r = strtol(v, &end, 10);
            if (*v == '\0' || *end != '\0' || errno || r < 0 || r > 64) {
                cli_error("similar: --radius must be an integer from 0 to 64, not '%s'", v);
                return 2;
            }
            opts.phash_radius = (unsigned)r;
        } else if (strcmp(argv[i], "--json") == 0) {
            as_json = true;
        } else {
            cli_error("similar: unknown option '%s'", argv[i]);
            return 2;
        }
    }
    if (argc - i < 2) {
        cli_error("similar: need a QUERY and at least one FILE");
        return 2;
    }
    json_t *out = as_json ? json_array() : NULL;
    gencache_image_sig query;
    if (sig_of(argv[i], &query, out) != GENCACHE_OK)
        return finish(out, 1);
    int first = i + 1, n = argc - first;
    gencache_image_sig *sigs = calloc((size_t)n, sizeof *sigs);
    gencache_hash_index *idx = NULL;
    gencache_hash_hit *hits = calloc((size_t)n, sizeof *hits);
    if (!sigs || !hits || gencache_hash_index_new(&idx) != GENCACHE_OK) {
        cli_error("similar: out of memory");
        free(sigs);
        free(hits);
        json_decref(out);
        return 1;
    }
    int status = 0;
    for (int k = 0; k < n; k++) {
        if (sig_of(argv[first + k], &sigs[k], out) != GENCACHE_OK) {
            status = 1;
            continue;
        }
        gencache_hash_index_insert(idx, sigs[k].phash, (uint64_t)k);
    }
    /* The index finds the candidates by pHash; the guard then checks each one. Hits come
     * nearest first, ties in argument order (the id is the position). */
    size_t count = 0;
    int rc =
        gencache_hash_index_query(idx, query.phash, opts.phash_radius, hits, (size_t)n, &count);
    if (rc != GENCACHE_OK) {
        cli_error("similar: %s", gencache_strerror(rc));
        status = 1;
    }
    int matched = 0;
    for (size_t h = 0; h < count && h < (size_t)n; h++) {
        unsigned d;
        int k = (int)hits[h].id;
        if (gencache_image_match(&query, &sigs[k], &opts, &d) == GENCACHE_OK) {
            if (out)
                json_array_append_new(
                    out, json_pack("{s:s,s:i}", "file", argv[first + k], "distance", (int)d));
            else
                printf("%u  %s\n", d, argv[first + k]);
            matched++;
        }
    }
    gencache_hash_index_free(idx);
    free(sigs);
    free(hits);
    if (!matched && status == 0)
        status = 1;
    return finish(out, status);
}
