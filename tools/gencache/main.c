/*
 * main.c: the `gencache` command-line tool. It dispatches to one function per verb; the verbs
 * that talk to a daemon do so over HTTP, the others call libgencache directly.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "gencache.h"
#include "cli.h"

static const cli_command commands[] = {
    {"get", cmd_get, "[--url URL] [--token T] [-o FILE] [--meta] [--json] KEY",
     "fetch an entry's bytes from a daemon (--meta: its metadata headers instead; --json: them\n"
     "            as a JSON object)"},
    {"put", cmd_put,
     "[--url URL] [--token T] [--cost-ms N] [--ttl DURATION] [--tags A,B] [--content-type T]\n"
     "            [--dtype D --shape A,B,..] [--pinned] KEY FILE|-",
     "store a file as an entry in a daemon"},
    {"del", cmd_del, "[--url URL] [--token T] KEY", "remove an entry from every tier of a daemon"},
    {"invalidate", cmd_invalidate,
     "[--url URL] [--token T] [--key K] [--layer L] [--tenant T] [--tag T] [--model M]\n"
     "            [--older-than DURATION] [--json]",
     "remove every entry that matches all the filters given; prints how many"},
    {"stats", cmd_stats, "[--url URL] [--token T] [--json]", "show a daemon's counters"},
    {"normalize", cmd_normalize, "[--mode M] [--lines|--jsonl] [--json] TEXT|FILE|-",
     "print a prompt normalized (modes: exact safe clip tokens aggressive)"},
    {"key", cmd_key,
     "[--config FILE] [--layer L]... [--mode M] [--tenant T]\n"
     "            [--lines|--json] REQUEST.json|-   or   --jsonl [REQUESTS.jsonl|-]",
     "print a request's keys, one <layer>/<hex> line per layer (--jsonl: one request per\n"
     "            line in, one {\"keys\": {LAYER: KEY}} line out, in order)"},
    {"imgid", cmd_imgid, "[--json] FILE...", "print each image's pixel digest: sha256:<hex>  FILE"},
    {"imghash", cmd_imghash, "[--algo ahash|dhash|phash] [--bits 64|256] [--json] FILE...",
     "print each image's perceptual hash as imagehash does: <hex>  FILE"},
    {"similar", cmd_similar, "[--radius R] [--json] QUERY FILE...",
     "list the FILEs that are near duplicates of QUERY, nearest first: <distance>  FILE"},
    {"export", cmd_export, "--format safetensors [--url URL] [--token T] -o FILE|- KEY...",
     "fetch tensor entries from a daemon into one safetensors file (tensor names = keys)"},
    {"import", cmd_import, "[--url URL] [--token T] [--codec C] [--ttl SECONDS] [--json] FILE",
     "store each tensor of a safetensors file in a daemon (tensor names must be keys)"},
    {"replay", cmd_replay,
     "[--layers L,...] [--policy lru,gdsf,s3fifo] [--capacity 0.1%,1%,BYTES,...]\n"
     "            [--layer-fields NAME=f1,f2,...] [--cost-share LAYER=F] [--size LAYER=BYTES]\n"
     "            [--extra FILE] [--model M] [--scale N] [--limit N] [--mrc RATE] [--mixed]\n"
     "            [--no-progress] [--json]\n"
     "            TRACE.tsv",
     "replay a request log through the library: hit ratio, byte hit ratio and GPU-seconds\n"
     "            saved per layer, policy and capacity (--json: one object per line)"},
    {"prewarm", cmd_prewarm, "[--url URL] [--token T] [--json] FILE.jsonl|-",
     "run a file of requests (one JSON per line) through a daemon's proxy, with progress"},
    {"lookup", cmd_lookup, "[--url URL] [--token T] --layer L [-o FILE] [--json] REQUEST.json|-",
     "look a request up in a daemon's layer, by its key or by a match the layer allows\n"
     "            (perceptual image, any seed, similar prompt); prints KEY MATCH DISTANCE, exit 1\n"
     "            on a miss"},
    {"checkpoint", cmd_checkpoint,
     "[--url URL] [--token T] [--layer L] [--dtype f32|f16] [--step N] [--cost-ms MS] [--json]\n"
     "            REQUEST.json EMBEDDING LATENT",
     "store an intermediate latent with its prompt's embedding (raw little-endian floats) in a\n"
     "            daemon's trajectory layer; prints the key"},
    {"resume", cmd_resume,
     "[--url URL] [--token T] [--layer L] --model M [--dtype f32|f16] [-o FILE] [--json]\n"
     "            EMBEDDING|-",
     "find the stored latent a similar prompt lets a generation resume from; prints\n"
     "            KEY STEP SIMILARITY, exit 1 when none is similar enough"},
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

void cli_error(const char *fmt, ...)
{
    va_list ap;
    fputs("gencache: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

int cli_usage_error(const char *verb, const char *what, const char *arg)
{
    cli_error("%s: %s%s%s (try 'gencache %s --help')", verb, what, arg ? " " : "", arg ? arg : "",
              verb);
    return 2;
}

int cli_print_json(json_t *doc)
{
    char *text = doc ? json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    json_decref(doc);
    if (!text) {
        cli_error("out of memory writing JSON");
        return 1;
    }
    int failed = puts(text) == EOF;
    free(text);
    if (failed || fflush(stdout) != 0) {
        cli_error("write failed");
        return 1;
    }
    return 0;
}

json_t *cli_json_error(int rc, const char *msg)
{
    return json_pack("{s:{s:s,s:s}}", "error", "code", gencache_errname(rc), "message",
                     msg ? msg : gencache_strerror(rc));
}

const char *cli_default_url(void)
{
    const char *env = getenv("GENCACHE_URL");
    return env && *env ? env : "http://127.0.0.1:8787";
}

static void usage(FILE *out)
{
    fprintf(out, "usage: gencache [--help] [--version] COMMAND [ARGS]\n\n"
                 "A cache for generative-video inference: keys, image identity, and a client\n"
                 "for the gencached daemon (default URL $GENCACHE_URL or "
                 "http://127.0.0.1:8787; the\nbearer token of a tenant: --token or "
                 "$GENCACHE_TOKEN).\n\ncommands:\n");
    /* A name too long for the column goes on a line of its own, its summary below it. */
    for (size_t i = 0; i < N_COMMANDS; i++)
        fprintf(out, "  %-9s%s%s\n            %s\n", commands[i].name,
                strlen(commands[i].name) > 9 ? "\n            " : " ", commands[i].summary,
                commands[i].usage);
    fprintf(out, "\n'gencache COMMAND --help' describes one command.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("gencache %s\n", gencache_version());
        return 0;
    }
    for (size_t i = 0; i < N_COMMANDS; i++) {
        if (strcmp(argv[1], commands[i].name) != 0)
            continue;
        for (int a = 2; a < argc; a++) {
            if (strcmp(argv[a], "--help") == 0 || strcmp(argv[a], "-h") == 0) {
                printf("usage: gencache %s %s\n\n%s\n", commands[i].name, commands[i].usage,
                       commands[i].summary);
                return 0;
            }
        }
        return commands[i].fn(argc - 1, argv + 1);
    }
    cli_error("unknown command '%s' (try --help)", argv[1]);
    return 2;
}
