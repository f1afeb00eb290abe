/*
 * cmd_invalidate.c: `gencache invalidate`, removal by filter through a daemon's
 * POST /v1/invalidate. Each option is one field of the filter and every field given must match
 * (the daemon's rule); at least one is required, so the command can never mean "everything". It
 * prints how many entries went: the number, or {"invalidated": N} with --json.
 */
#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>

#include "gencache.h"
#include "cli.h"
#include "client.h"

enum { O_URL = 256, O_TOKEN, O_KEY, O_LAYER, O_TENANT, O_TAG, O_MODEL, O_OLDER, O_JSON };

/* The filter fields, in the order of the options above (O_KEY ... O_MODEL). */
static const char *const fields[] = {"key", "layer", "tenant", "tag", "model"};

int cmd_invalidate(int argc, char **argv)
{
    static const struct option opts[] = {{"url", required_argument, NULL, O_URL},
                                         {"token", required_argument, NULL, O_TOKEN},
                                         {"key", required_argument, NULL, O_KEY},
                                         {"layer", required_argument, NULL, O_LAYER},
                                         {"tenant", required_argument, NULL, O_TENANT},
                                         {"tag", required_argument, NULL, O_TAG},
                                         {"model", required_argument, NULL, O_MODEL},
                                         {"older-than", required_argument, NULL, O_OLDER},
                                         {"json", no_argument, NULL, O_JSON},
                                         {NULL, 0, NULL, 0}};
    const char *url = cli_default_url();
    const char *token = cli_default_token();
    bool as_json = false;
    json_t *filter = json_object();
    int opt, rc = 0;
    uint64_t ms;
    char name[16];
    optind = 1;
    opterr = 0;
    while (rc == 0 && (opt = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        switch (opt) {
        case O_URL:
            url = optarg;
            break;
        case O_TOKEN:
            token = optarg;
            break;
        case O_KEY:
        case O_LAYER:
        case O_TENANT:
        case O_TAG:
        case O_MODEL:
            snprintf(name, sizeof name, "--%s", fields[opt - O_KEY]);
            if (!*optarg)
                rc = cli_usage_error(argv[0], "empty value for", name);
            else if (json_object_get(filter, fields[opt - O_KEY]))
                rc = cli_usage_error(argv[0], "given twice:", name);
            else
                json_object_set_new(filter, fields[opt - O_KEY], json_string(optarg));
            break;
        case O_OLDER:
            /* Checked here with the daemon's own grammar, so a typo never reaches it. */
            if (gencache_parse_duration_ms(optarg, &ms) != GENCACHE_OK)
                rc = cli_usage_error(argv[0],
                                     "--older-than expects seconds or a duration like 30m or 7d, "
                                     "not",
                                     optarg);
            else
                json_object_set_new(filter, "older_than", json_string(optarg));
            break;
        case O_JSON:
            as_json = true;
            break;
        case ':':
            rc = cli_usage_error(argv[0], "missing value for", argv[optind - 1]);
            break;
        default:
            rc = cli_usage_error(argv[0], "unknown option", argv[optind - 1]);
            break;
        }
    }
    if (rc == 0 && optind != argc)
        rc = cli_usage_error(argv[0], "unexpected argument", argv[optind]);
    if (rc == 0 && json_object_size(filter) == 0)
        rc = cli_usage_error(argv[0],
                             "give at least one of --key, --layer, --tenant, --tag, --model, "
                             "--older-than",
                             NULL);
    char *body = rc == 0 ? json_dumps(filter, JSON_COMPACT) : NULL;
    json_decref(filter);
    if (rc)
        return rc;
    if (!body) {
        cli_error("invalidate: out of memory");
        return 1;
    }
    cli_client cl;
    rc = cli_client_open(&cl, url, token);
    if (rc) {
        free(body);
        return rc;
    }
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    rc = cli_client_request(&cl, "POST", "/v1/invalidate", NULL, h, body, strlen(body));
    curl_slist_free_all(h);
    free(body);
    if (rc == 0 && cl.status != 200)
        rc = cli_client_report(&cl, "invalidate");
    if (rc == 0) {
        json_t *doc = cl.body.data ? json_loads(cl.body.data, 0, NULL) : NULL;
        json_t *n = json_object_get(doc, "invalidated");
        if (!json_is_integer(n)) {
            cli_error("invalidate: the daemon sent no {\"invalidated\": N}");
            rc = 1;
        } else if (as_json) {
            printf("{\"invalidated\": %" JSON_INTEGER_FORMAT "}\n", json_integer_value(n));
        } else {
            printf("%" JSON_INTEGER_FORMAT "\n", json_integer_value(n));
        }
        json_decref(doc);
    }
    cli_client_close(&cl);
    if (rc == 0 && fflush(stdout) != 0) {
        cli_error("invalidate: write failed");
        rc = 1;
    }
    return rc;
}
