/*
 * main.c: gencached, the HTTP daemon over libgencache. It loads the config file (through the
 * library, config.c) and then the flags over it, opens the cache with the configured layers, starts
 * the server and then waits for SIGINT or SIGTERM, checking memory pressure every second meanwhile.
 * Those signals are blocked in every thread before any thread starts and taken with sigwait() here,
 * so the shutdown (stop the server, close the cache) runs in ordinary code, never in a signal
 * handler.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config.h"

#define DEFAULT_LISTEN      "127.0.0.1:8787"
#define DEFAULT_DATA_DIR    "./gencache-data"
#define DEFAULT_MAX_BODY    (256ull << 20)
#define MAINTAIN_INTERVAL_S 10

static void usage(FILE *out)
{
    fprintf(out,
            "usage: gencached [OPTIONS]\n\n"
            "The gencache daemon: an HTTP API over a gencache cache (see docs/daemon.md).\n\n"
            "options:\n"
            "  --config FILE          configuration file, gencache.yaml (docs/config.md);\n"
            "                         the other flags override what it sets\n"
            "  --check-config FILE    validate a configuration file, print a summary, exit\n"
            "  --listen HOST:PORT     address to listen on (default " DEFAULT_LISTEN "; port 0\n"
            "                         picks a free one); loopback only unless the config\n"
            "                         names tenants with tokens\n"
            "  --data-dir DIR         disk tier directory, created if absent\n"
            "                         (default " DEFAULT_DATA_DIR ")\n"
            "  --max-memory BYTES     memory tier limit (suffixes K, M, G, T; default 1G)\n"
            "  --max-disk BYTES       disk tier limit (default 10G)\n"
            "  --redis URL            shared Redis tier, redis://HOST:PORT[/DB], or a Redis\n"
            "                         Cluster, redis-cluster://HOST:PORT,... (default: none)\n"
            "  --redis-timeout MS     longest a Redis call may delay a request (default 100)\n"
            "  --max-body BYTES       largest request body (default 256M)\n"
            "  --threads N            worker threads (default: the number of CPUs; with\n"
            "                         http.fast_get as many again for the fast path)\n"
            "  --max-connections N    concurrent connections (default 1024)\n"
            "  --timeout SECONDS      idle connection timeout (default 60)\n"
            "  --header-timeout DURATION  a request's line and headers must be complete\n"
            "                         this long after they began (100ms to 1h; default 5s)\n"
            "  --max-connections-per-client N  connections one client address may hold\n"
            "                         (0: no cap; default a quarter of --max-connections)\n"
            "  --max-inflight-bytes BYTES  request body bytes held at once, all requests\n"
            "                         together (default 512M, at least --max-body)\n"
            "  --prewarm-max-bytes BYTES   request bytes one tenant's unfinished prewarm\n"
            "                         jobs may hold (default 64M)\n"
            "  --upstream URL         generator POST /v1/generate forwards misses to\n"
            "  --upstream-timeout S   longest upstream call in seconds (default 120)\n"
            "  --upstream-concurrency N  most upstream calls at once (default 16)\n"
            "  --prewarm-concurrency N   requests a prewarm job runs at once (default 4)\n"
            "  --log-level LEVEL      error, warn, info or debug (default info; debug logs\n"
            "                         every request)\n"
            "  --help                 show this help and exit\n"
            "  --version              show the version and exit\n");
}

static int parse_uint(const char *s, unsigned lo, unsigned hi, unsigned *out)
{
    uint64_t v;
    if (gcd_parse_u64(s, &v) != 0 || v < lo || v > hi)
        return -1;
    *out = (unsigned)v;
    return 0;
}

static int parse_level(const char *s, gencache_log_level *out)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, names[i]) == 0) {
            *out = (gencache_log_level)i;
            return 0;
        }
    }
    return -1;
}

/* mkdir -p: the data directory and any missing parents. */
static int make_dirs(const char *path)
{
    char buf[PATH_MAX];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf)
        return -1;
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        char saved = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return -1;
        buf[i] = saved;
    }
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
        errno = ENOTDIR;
        return -1;
    }
    return 0;
}

static void bad_usage(const char *fmt, const char *arg)
{
    fputs("gencached: ", stderr);
    fprintf(stderr, fmt, arg);
    fputs(" (try --help)\n", stderr);
}

/* The file named by --config FILE, --config=FILE or --check-config (which sets *check). Returns
 * NULL when none; sets *bad when the flag has no value. */
static const char *find_config(int argc, char **argv, bool *check, bool *bad)
{
    const char *path = NULL;
    *check = *bad = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool chk = strncmp(a, "--check-config", 14) == 0;
        size_t n = chk ? 14 : strncmp(a, "--config", 8) == 0 ? 8 : 0;
        if (!n || (a[n] != '\0' && a[n] != '='))
            continue;
        if (a[n] == '=')
            path = a + n + 1;
        else if (i + 1 < argc)
            path = argv[++i];
        else
            *bad = true;
        *check = *check || chk;
    }
    return path;
}

/* Fills cfg from argv. Returns -1 to exit 0 (help, version), 0 to run, 2 on bad usage. */
static int parse_args(int argc, char **argv, gcd_config *cfg)
{
    enum {
        O_CONFIG = 256,
        O_CHECK_CONFIG,
        O_LISTEN,
        O_DATA,
        O_MEM,
        O_DISK,
        O_BODY,
        O_THREADS,
        O_CONNS,
        O_TIMEOUT,
        O_LEVEL,
        O_REDIS,
        O_REDIS_TIMEOUT,
        O_UPSTREAM, /* the proxy's flags (override the config file) */
        O_UPSTREAM_TIMEOUT,
        O_UPSTREAM_CONC,
        O_PREWARM_CONC,
        O_HEADER_TIMEOUT, /* the limits of slow clients and memory (limits.* in the file) */
        O_PER_CLIENT,
        O_INFLIGHT,
        O_PREWARM_MAX,
        O_HELP,
        O_VERSION
    };
    static const struct option longopts[] = {
        {"config", required_argument, NULL, O_CONFIG},
        {"check-config", required_argument, NULL, O_CHECK_CONFIG},
        {"listen", required_argument, NULL, O_LISTEN},
        {"data-dir", required_argument, NULL, O_DATA},
        {"max-memory", required_argument, NULL, O_MEM},
        {"max-disk", required_argument, NULL, O_DISK},
        {"max-body", required_argument, NULL, O_BODY},
        {"threads", required_argument, NULL, O_THREADS},
        {"max-connections", required_argument, NULL, O_CONNS},
        {"timeout", required_argument, NULL, O_TIMEOUT},
        {"log-level", required_argument, NULL, O_LEVEL},
        {"redis", required_argument, NULL, O_REDIS},
        {"redis-timeout", required_argument, NULL, O_REDIS_TIMEOUT},
        {"upstream", required_argument, NULL, O_UPSTREAM},
        {"upstream-timeout", required_argument, NULL, O_UPSTREAM_TIMEOUT},
        {"upstream-concurrency", required_argument, NULL, O_UPSTREAM_CONC},
        {"prewarm-concurrency", required_argument, NULL, O_PREWARM_CONC},
        {"header-timeout", required_argument, NULL, O_HEADER_TIMEOUT},
        {"max-connections-per-client", required_argument, NULL, O_PER_CLIENT},
        {"max-inflight-bytes", required_argument, NULL, O_INFLIGHT},
        {"prewarm-max-bytes", required_argument, NULL, O_PREWARM_MAX},
        {"help", no_argument, NULL, O_HELP},
        {"version", no_argument, NULL, O_VERSION},
        {NULL, 0, NULL, 0},
    };
    opterr = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (opt) {
        case O_CONFIG:
        case O_CHECK_CONFIG:
            break; /* loaded by find_config() before the other flags */
        case O_LISTEN:
            cfg->listen = optarg;
            break;
        case O_DATA:
            if (!*optarg) {
                bad_usage("--data-dir needs a directory%s", "");
                return 2;
            }
            cfg->data_dir = optarg;
            break;
        case O_MEM:
        case O_DISK:
        case O_BODY: {
            uint64_t v;
            if (gencache_parse_size(optarg, &v) != GENCACHE_OK || (opt == O_BODY && v == 0)) {
                bad_usage("bad size '%s': expected a number with an optional unit, like 512M, "
                          "1G (powers of 1024) or 1GB (powers of 1000)",
                          optarg);
                return 2;
            }
            if (opt == O_MEM)
                cfg->max_memory = v;
            else if (opt == O_DISK)
                cfg->max_disk = v;
            else
                cfg->max_body = v;
            break;
        }
        case O_THREADS:
            if (parse_uint(optarg, 1, 1024, &cfg->threads) != 0) {
                bad_usage("bad --threads '%s': expected 1 to 1024", optarg);
                return 2;
            }
            break;
        case O_CONNS:
            if (parse_uint(optarg, 1, 1000000, &cfg->max_connections) != 0) {
                bad_usage("bad --max-connections '%s': expected 1 to 1000000", optarg);
                return 2;
            }
            break;
        case O_TIMEOUT:
            if (parse_uint(optarg, 1, 86400, &cfg->timeout_s) != 0) {
                bad_usage("bad --timeout '%s': expected 1 to 86400 seconds", optarg);
                return 2;
            }
            break;
        case O_REDIS:
            if ((strncmp(optarg, "redis://", 8) != 0 || !optarg[8]) &&
                (strncmp(optarg, "redis-cluster://", 16) != 0 || !optarg[16])) {
                bad_usage("bad --redis '%s': expected redis://HOST:PORT[/DB] or "
                          "redis-cluster://HOST:PORT[,HOST:PORT...]",
                          optarg);
                return 2;
            }
            cfg->redis_url = optarg;
            break;
        case O_REDIS_TIMEOUT:
            if (parse_uint(optarg, 1, 60000, &cfg->redis_timeout_ms) != 0) {
                bad_usage("bad --redis-timeout '%s': expected 1 to 60000 ms", optarg);
                return 2;
            }
            break;
        case O_UPSTREAM:
            if (strncmp(optarg, "http://", 7) != 0 && strncmp(optarg, "https://", 8) != 0) {
                bad_usage("bad --upstream '%s': expected an http:// or https:// URL", optarg);
                return 2;
            }
            cfg->upstream_url = optarg;
            break;
        case O_UPSTREAM_TIMEOUT: {
            char *end = NULL;
            double sec = strtod(optarg, &end);
            if (!end || end == optarg || *end || !(sec >= 0.001 && sec <= 86400)) {
                bad_usage("bad --upstream-timeout '%s': expected 0.001 to 86400 seconds", optarg);
                return 2;
            }
            cfg->upstream_timeout_ms = (unsigned)(sec * 1000 + 0.5);
            break;
        }
        case O_UPSTREAM_CONC:
        case O_PREWARM_CONC:
            if (parse_uint(optarg, 1, 1024,
                           opt == O_UPSTREAM_CONC ? &cfg->upstream_concurrency
                                                  : &cfg->prewarm_concurrency) != 0) {
                bad_usage("bad concurrency '%s': expected 1 to 1024", optarg);
                return 2;
            }
            break;
        case O_HEADER_TIMEOUT: {
            uint64_t ms;
            if (gencache_parse_duration_ms(optarg, &ms) != GENCACHE_OK || ms < 100 ||
                ms > 3600000) {
                bad_usage("bad --header-timeout '%s': expected a duration from 100ms to 1h, like "
                          "5s or 500ms",
                          optarg);
                return 2;
            }
            cfg->header_timeout_ms = (unsigned)ms;
            break;
        }
        case O_PER_CLIENT:
            if (parse_uint(optarg, 0, 1000000, &cfg->max_per_client) != 0) {
                bad_usage("bad --max-connections-per-client '%s': expected 0 (no cap) to 1000000",
                          optarg);
                return 2;
            }
            cfg->max_per_client_set = true;
            break;
        case O_INFLIGHT:
        case O_PREWARM_MAX: {
            uint64_t v;
            if (gencache_parse_size(optarg, &v) != GENCACHE_OK || v == 0) {
                bad_usage(opt == O_INFLIGHT ? "bad --max-inflight-bytes '%s': expected a size "
                                              "above 0, like 512M or 1G"
                                            : "bad --prewarm-max-bytes '%s': expected a size "
                                              "above 0, like 64M",
                          optarg);
                return 2;
            }
            if (opt == O_INFLIGHT)
                cfg->max_inflight = v;
            else
                cfg->prewarm_max_bytes = v;
            break;
        }
        case O_LEVEL:
            if (parse_level(optarg, &cfg->log_level) != 0) {
                bad_usage("bad --log-level '%s': expected error, warn, info or debug", optarg);
                return 2;
            }
            break;
        case 'h':
        case O_HELP:
            usage(stdout);
            return -1;
        case O_VERSION:
            printf("gencached %s\n", gencache_version());
            return -1;
        case ':':
            bad_usage("option '%s' needs a value", argv[optind - 1]);
            return 2;
        default:
            bad_usage("unknown option '%s'", argv[optind - 1]);
            return 2;
        }
    }
    if (optind < argc) {
        bad_usage("unexpected argument '%s'", argv[optind]);
        return 2;
    }
    return 0;
}

int main(int argc, char **argv)
{
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    gcd_config cfg = {
        .listen = DEFAULT_LISTEN,
        .data_dir = DEFAULT_DATA_DIR,
        .max_body = DEFAULT_MAX_BODY,
        .threads = ncpu > 0 ? (unsigned)ncpu : 1,
        .max_connections = 1024,
        .timeout_s = 60,
        .header_timeout_ms = 5000,
        .max_inflight = 512ull << 20,
        .prewarm_max_bytes = 64ull << 20,
        .log_level = GENCACHE_LOG_INFO,
        .fast_get = true,
    };
    /* The config file first, so that every other flag overrides what it sets. */
    bool check = false, no_value = false;
    const char *config = find_config(argc, argv, &check, &no_value);
    if (config && !no_value) {
        char err[512];
        if (gcd_config_load(config, &cfg, err, sizeof err) != 0) {
            fprintf(stderr, "gencached: %s\n", err);
            gcd_config_free(&cfg);
            return 2;
        }
    }
    int rc = parse_args(argc, argv, &cfg);
    if (rc != 0) {
        gcd_config_free(&cfg);
        return rc < 0 ? 0 : rc;
    }
    /* By default one client address may hold a quarter of the slots, so no single client can
     * take them all. */
    if (!cfg.max_per_client_set)
        cfg.max_per_client = cfg.max_connections / 4 ? cfg.max_connections / 4 : 1;
    /* One body of the largest size is always let in. */
    if (cfg.max_inflight < cfg.max_body)
        cfg.max_inflight = cfg.max_body;
    /* What main says before the server exists (the server has a logger of its own). */
    gcd_logger boot_log = {.level = cfg.log_level};
    socklen_t addr_len;
    if (gcd_listen_resolve(&boot_log, cfg.listen, cfg.n_tenants > 0, &cfg.addr, &addr_len) != 0) {
        gcd_config_free(&cfg);
        return 2;
    }
    if (check) {
        /* The file's layers are applied to a throwaway memory-only cache and printed from it. */
        gencache_options po;
        gencache_options_init(&po);
        if (cfg.ext)
            gencache_config_options(cfg.ext->lib, &po);
        po.data_dir = NULL;
        po.redis_url = NULL;
        po.ghost_max_entries = 0;
        po.log_fn = gcd_log_library;
        po.log_userdata = &boot_log;
        gencache *probe = NULL;
        int ok = gcd_config_open_cache(&cfg, &po, &boot_log, &probe) == 0;
        if (ok)
            gcd_config_print(&cfg, probe, stdout);
        gencache_close(probe);
        gcd_config_free(&cfg);
        return ok ? 0 : 2;
    }
    bool disk = !(cfg.ext && cfg.ext->disk_disabled);

    /* Every thread started from here on (the cache's, MHD's) inherits this mask, so the signals
     * reach only the sigwait() below. */
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
    signal(SIGPIPE, SIG_IGN);
    /* Values and request bodies of 256 KiB and more get mappings of their own, returned to the
     * system when freed. Left to glibc's sliding threshold they land in per-thread arenas that
     * keep freed memory: tests/soak/soak.py measured 227 MiB resident with a 64 MiB cap and a
     * 64 MiB in-flight budget that way, 91 MiB this way. MALLOC_MMAP_THRESHOLD_ still rules. */
    if (!getenv("MALLOC_MMAP_THRESHOLD_"))
        mallopt(M_MMAP_THRESHOLD, 256 * 1024);

    if (disk && make_dirs(cfg.data_dir) != 0) {
        gcd_log(&boot_log, GENCACHE_LOG_ERROR, "cannot create data directory %s: %s", cfg.data_dir,
                strerror(errno));
        return 1;
    }

    /* The file's tier settings, then the flags over them (cfg holds both). */
    gencache_options opts;
    gencache_options_init(&opts);
    if (cfg.ext)
        gencache_config_options(cfg.ext->lib, &opts);
    if (cfg.max_memory)
        opts.mem_max_bytes = cfg.max_memory;
    if (cfg.max_disk)
        opts.disk_max_bytes = cfg.max_disk;
    opts.data_dir = disk ? cfg.data_dir : NULL;
    opts.redis_url = cfg.redis_url;
    if (cfg.redis_timeout_ms)
        opts.redis_timeout_ms = cfg.redis_timeout_ms;
    opts.log_level = cfg.log_level;

    gcd_server srv;
    if (gcd_server_open(&srv, &cfg, &opts) != 0) {
        gcd_config_free(&cfg);
        return 1;
    }
    if (gcd_http_start(&srv) != 0) {
        gcd_server_close(&srv);
        gcd_config_free(&cfg);
        return 1;
    }
    if (cfg.n_tenants)
        gcd_log(&srv.log, GENCACHE_LOG_INFO, "%zu tenants; requests need a bearer token",
                cfg.n_tenants);
    gcd_log(&srv.log, GENCACHE_LOG_INFO,
            "gencached %s listening on %s (port %u), data in %s, redis %s, %u threads",
            gencache_version(), cfg.listen, (unsigned)srv.port, disk ? cfg.data_dir : "(no disk)",
            cfg.redis_url ? cfg.redis_url : "off", cfg.threads);

    /* Memory pressure is checked every second. Expired entries are misses already; the sweep
     * every MAINTAIN_INTERVAL_S gives their memory and disk back (and takes them off their
     * tenants' usage). */
    int sig = 0;
    struct timespec tick = {.tv_sec = 1};
    for (unsigned ticks = 1;; ticks++) {
        sig = sigtimedwait(&stop_signals, NULL, &tick);
        if (sig == SIGINT || sig == SIGTERM)
            break;
        gcd_server_tick(&srv, ticks, MAINTAIN_INTERVAL_S);
    }
    gcd_log(&srv.log, GENCACHE_LOG_INFO, "%s received, shutting down",
            sig == SIGINT ? "SIGINT" : "SIGTERM");
    gcd_server_close(&srv);
    gcd_config_free(&cfg);
    gcd_log(&boot_log, GENCACHE_LOG_INFO, "stopped");
    return 0;
}
