/*
 * cli.h: what the subcommands of the `gencache` tool share. Each verb is one function
 * `int cmd_<verb>(int argc, char **argv)` (argv[0] is the verb) returning the process exit code:
 * 0 success, 1 a failure it reported (miss, refused request), 2 bad usage.
 */
#ifndef GENCACHE_CLI_H
#define GENCACHE_CLI_H

#include <stdio.h>

#include <jansson.h>

typedef int (*cli_cmd_fn)(int argc, char **argv);

typedef struct cli_command {
    const char *name;
    cli_cmd_fn fn;
    const char *usage;   /* arguments, shown by --help */
    const char *summary; /* one line */
} cli_command;

/* Prints "gencache: <message>" to stderr. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Reports bad usage ("gencache: VERB: WHAT ARG (try 'gencache VERB --help')") and returns 2, the
 * exit code for it. arg may be NULL. */
int cli_usage_error(const char *verb, const char *what, const char *arg);

/* Prints doc as JSON on stdout (two-space indent, one trailing newline) and takes its reference.
 * Returns 0, or 1 after reporting that it could not be written (doc NULL means out of memory). */
int cli_print_json(json_t *doc);

/* {"error": {"code": "<GENCACHE_* name without the prefix>", "message": msg}}: the error object of
 * --json and --jsonl output, shaped as the daemon's. A new reference (NULL when out of memory). */
json_t *cli_json_error(int rc, const char *msg);

/* The daemon URL: --url, else $GENCACHE_URL, else http://127.0.0.1:8787. */
const char *cli_default_url(void);

/* Verbs. Each lives in its own cmd_*.c file, except the four that talk to a daemon over HTTP
 * (get, put, del, stats), which share cmd_client.c. */
int cmd_get(int argc, char **argv);
int cmd_put(int argc, char **argv);
int cmd_del(int argc, char **argv);
int cmd_stats(int argc, char **argv);
int cmd_invalidate(int argc, char **argv);
int cmd_normalize(int argc, char **argv);
int cmd_key(int argc, char **argv);
int cmd_imgid(int argc, char **argv);
int cmd_imghash(int argc, char **argv);
int cmd_similar(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_import(int argc, char **argv);
int cmd_prewarm(int argc, char **argv);
int cmd_lookup(int argc, char **argv);
int cmd_replay(int argc, char **argv);
int cmd_checkpoint(int argc, char **argv);
int cmd_resume(int argc, char **argv);

#endif
