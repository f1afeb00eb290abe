/*
 * bench_daemon.c: GET of large entries from gencached over loopback HTTP with keep-alive, against
 * GET of the same bytes from redis-server measured in the same run. The benchmark starts both
 * servers itself (free ports, a temporary data directory, Redis without persistence), pins them
 * to one CPU and itself to another (what `taskset -c` does), then alternates rounds of each client
 * so that drift in the machine's load touches them alike. It prints medians, p90, throughput and
 * the ratios. The HTTP client is a plain socket; Redis is read with hiredis, and again with a plain
 * socket client written like the HTTP one, so the figures separate the servers from the clients.
 *
 *   bench_daemon [--size BYTES] [--requests N] [--rounds R] [--server-cpu C] [--client-cpu C]
 *                [--gencached PATH] [--redis-server PATH]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#define KEY_HEX "6a1f3b0c9e5d47a8b2c4d6e8f0a1b3c5d7e9f1a3b5c7d9e1f3a5b7c9d1e3f5a7"

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *what)
{
    fprintf(stderr, "bench_daemon: %s: %s\n", what, strerror(errno));
    exit(1);
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0)
        die("finding a free port");
    close(fd);
    return ntohs(a.sin_port);
}

static void pin(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0)
        fprintf(stderr, "bench_daemon: cannot pin to CPU %d: %s\n", cpu, strerror(errno));
}

/* Starts argv pinned to `cpu`, its output sent to `log`. */
static pid_t spawn(char *const argv[], int cpu, const char *log)
{
    pid_t pid = fork();
    if (pid < 0)
        die("fork");
    if (pid == 0) {
        pin(cpu);
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        execv(argv[0], argv);
        fprintf(stderr, "cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    return pid;
}

static int connect_port(int port, bool quiet)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd < 0)
        die("socket");
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        if (!quiet)
            die("connect");
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static void wait_port(int port, pid_t pid, const char *name)
{
    for (int i = 0; i < 500; i++) {
        int fd = connect_port(port, true);
        if (fd >= 0) {
            close(fd);
            return;
        }
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            fprintf(stderr, "bench_daemon: %s exited before listening\n", name);
            exit(1);
        }
        usleep(10000);
    }
    fprintf(stderr, "bench_daemon: %s did not start listening\n", name);
    exit(1);
}

static void write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            die("write");
        c += w;
        n -= (size_t)w;
    }
}

/* Reads one HTTP response on a kept-alive connection into body (capacity cap). Returns its
 * status; *len gets the body length. */
static int http_read(int fd, char *body, size_t cap, size_t *len)
{
    static char head[65536];
    size_t have = 0;
    char *end = NULL;
    while (!end) {
        ssize_t r = read(fd, head + have, sizeof head - have - 1);
        if (r <= 0)
            die("reading an HTTP response");
        have += (size_t)r;
        head[have] = '\0';
        end = strstr(head, "\r\n\r\n");
        if (!end && have == sizeof head - 1) {
            fprintf(stderr, "bench_daemon: response header too long\n");
            exit(1);
        }
    }
    int status = atoi(head + 9);
    size_t clen = 0;
    for (char *p = head; p < end; p = strstr(p, "\r\n") + 2) {
        if (strncasecmp(p, "Content-Length:", 15) == 0) {
            clen = strtoull(p + 15, NULL, 10);
            break;
        }
    }
    if (clen > cap) {
        fprintf(stderr, "bench_daemon: body of %zu bytes, expected at most %zu\n", clen, cap);
        exit(1);
    }
    size_t in_head = have - (size_t)(end + 4 - head);
    memcpy(body, end + 4, in_head);
    size_t got = in_head;
    while (got < clen) {
        ssize_t r = read(fd, body + got, clen - got);
        if (r <= 0)
            die("reading an HTTP body");
        got += (size_t)r;
    }
    *len = clen;
    return status;
}

/* Reads one RESP bulk string reply ("$<len>\r\n<bytes>\r\n") into body, the same way
 * http_read() reads a response: large reads straight into the caller's buffer. */
static size_t resp_read(int fd, char *body, size_t cap)
{
    char head[64];
    size_t have = 0;
    char *end = NULL;
    while (!end) {
        ssize_t r = read(fd, head + have, sizeof head - have - 1);
        if (r <= 0)
            die("reading a RESP reply");
        have += (size_t)r;
        head[have] = '\0';
        end = strstr(head, "\r\n");
        if (!end && have == sizeof head - 1) {
            fprintf(stderr, "bench_daemon: bad RESP reply\n");
            exit(1);
        }
    }
    if (head[0] != '$') {
        fprintf(stderr, "bench_daemon: unexpected RESP reply %.20s\n", head);
        exit(1);
    }
    size_t len = strtoull(head + 1, NULL, 10);
    if (len > cap) {
        fprintf(stderr, "bench_daemon: RESP reply of %zu bytes\n", len);
        exit(1);
    }
    size_t in_head = have - (size_t)(end + 2 - head);
    size_t want = len + 2; /* the trailing CRLF too */
    size_t got = in_head < want ? in_head : want;
    memcpy(body, end + 2, got < len ? got : len);
    char crlf[2];
    while (got < want) {
        ssize_t r = got < len ? read(fd, body + got, len - got) : read(fd, crlf, want - got);
        if (r <= 0)
            die("reading a RESP body");
        got += (size_t)r;
    }
    return len;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

typedef struct result {
    uint64_t *lat; /* ns per request */
    size_t n;
    uint64_t total_ns;
} result;

static double pct(result *r, double p)
{
    qsort(r->lat, r->n, sizeof *r->lat, cmp_u64);
    size_t i = (size_t)(p * (double)(r->n - 1) + 0.5);
    return (double)r->lat[i] / 1000.0;
}

static const char *arg_value(int argc, char **argv, const char *name, const char *def)
{
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], name) == 0)
            return argv[i + 1];
    return def;
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0) {
            printf("usage: bench_daemon [--size BYTES] [--requests N] [--rounds R] "
                   "[--server-cpu C] [--client-cpu C] [--gencached PATH] "
                   "[--redis-server PATH]\n");
            return 0;
        }
    }
    size_t size = strtoull(arg_value(argc, argv, "--size", "1572864"), NULL, 10);
    size_t requests = strtoull(arg_value(argc, argv, "--requests", "1000"), NULL, 10);
    size_t rounds = strtoull(arg_value(argc, argv, "--rounds", "10"), NULL, 10);
    int server_cpu = atoi(arg_value(argc, argv, "--server-cpu", "0"));
    int client_cpu = atoi(arg_value(argc, argv, "--client-cpu", "1"));
    char exe_dir[PATH_MAX], default_gencached[PATH_MAX + 32];
    ssize_t n = readlink("/proc/self/exe", exe_dir, sizeof exe_dir - 1);
    exe_dir[n > 0 ? n : 0] = '\0';
    char *slash = strrchr(exe_dir, '/');
    if (slash)
        *slash = '\0';
    snprintf(default_gencached, sizeof default_gencached, "%s/../bin/gencached", exe_dir);
    const char *gencached = arg_value(argc, argv, "--gencached", default_gencached);
    const char *redis = arg_value(argc, argv, "--redis-server", "/usr/bin/redis-server");
    if (size == 0 || requests < rounds || rounds == 0) {
        fprintf(stderr, "bench_daemon: bad --size, --requests or --rounds\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);

    char dir[] = "/tmp/bench_daemon.XXXXXX";
    if (!mkdtemp(dir))
        die("mkdtemp");
    char data_dir[PATH_MAX], glog[PATH_MAX], rlog[PATH_MAX], listen[64], gport_s[16], rport_s[16];
    snprintf(data_dir, sizeof data_dir, "%s/data", dir);
    snprintf(glog, sizeof glog, "%s/gencached.log", dir);
    snprintf(rlog, sizeof rlog, "%s/redis.log", dir);
    int gport = free_port(), rport = free_port();
    snprintf(listen, sizeof listen, "127.0.0.1:%d", gport);
    snprintf(gport_s, sizeof gport_s, "%d", gport);
    snprintf(rport_s, sizeof rport_s, "%d", rport);
    char *gargv[] = {
        (char *)gencached, "--listen", listen,        "--data-dir", data_dir, "--threads", "1",
        "--max-memory",    "256M",     "--log-level", "warn",       NULL};
    char *rargv[] = {(char *)redis,  "--port", rport_s, "--bind", "127.0.0.1", "--save", "",
                     "--appendonly", "no",     "--dir", dir,      NULL};
    pid_t gpid = spawn(gargv, server_cpu, glog);
    pid_t rpid = spawn(rargv, server_cpu, rlog);
    pin(client_cpu);
    wait_port(gport, gpid, "gencached");
    wait_port(rport, rpid, "redis-server");

    char *value = malloc(size), *body = malloc(size);
    if (!value || !body)
        die("malloc");
    for (size_t i = 0; i < size; i++)
        value[i] = (char)(i * 2654435761u >> 13);

    /* Store the value in both. */
    int fd = connect_port(gport, false);
    char req[512];
    int rl = snprintf(req, sizeof req,
                      "PUT /v1/entries/result/" KEY_HEX " HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      "Content-Length: %zu\r\nX-Gencache-Cost-Ms: 1000\r\n\r\n",
                      size);
    write_all(fd, req, (size_t)rl);
    write_all(fd, value, size);
    size_t len;
    int status = http_read(fd, body, size, &len);
    if (status != 201) {
        fprintf(stderr, "bench_daemon: PUT answered %d\n", status);
        return 1;
    }
    redisContext *rc = redisConnect("127.0.0.1", rport);
    if (!rc || rc->err) {
        fprintf(stderr, "bench_daemon: cannot connect to redis\n");
        return 1;
    }
    redisReply *rep = redisCommand(rc, "SET bench %b", value, size);
    if (!rep || rep->type != REDIS_REPLY_STATUS) {
        fprintf(stderr, "bench_daemon: redis SET failed\n");
        return 1;
    }
    freeReplyObject(rep);

    rl = snprintf(req, sizeof req,
                  "GET /v1/entries/result/" KEY_HEX " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    result g = {calloc(requests, sizeof(uint64_t)), 0, 0};
    result r = {calloc(requests, sizeof(uint64_t)), 0, 0};
    result s = {calloc(requests, sizeof(uint64_t)), 0, 0};
    int rfd = connect_port(rport, false);
    static const char resp_get[] = "*2\r\n$3\r\nGET\r\n$5\r\nbench\r\n";
    size_t per_round = requests / rounds;
    for (size_t round = 0; round <= rounds; round++) {
        bool warm = round == 0; /* round 0 warms both up and is not counted */
        for (size_t i = 0; i < per_round; i++) {
            uint64_t t0 = now_ns();
            write_all(fd, req, (size_t)rl);
            status = http_read(fd, body, size, &len);
            uint64_t t1 = now_ns();
            if (status != 200 || len != size || (i == 0 && memcmp(body, value, size) != 0)) {
                fprintf(stderr, "bench_daemon: gencached GET: status %d, %zu bytes\n", status, len);
                return 1;
            }
            if (!warm) {
                g.lat[g.n++] = t1 - t0;
                g.total_ns += t1 - t0;
            }
        }
        for (size_t i = 0; i < per_round; i++) {
            uint64_t t0 = now_ns();
            rep = redisCommand(rc, "GET bench");
            uint64_t t1 = now_ns();
            if (!rep || rep->type != REDIS_REPLY_STRING || (size_t)rep->len != size ||
                (i == 0 && memcmp(rep->str, value, size) != 0)) {
                fprintf(stderr, "bench_daemon: redis GET failed\n");
                return 1;
            }
            freeReplyObject(rep);
            if (!warm) {
                r.lat[r.n++] = t1 - t0;
                r.total_ns += t1 - t0;
            }
        }
        for (size_t i = 0; i < per_round; i++) {
            uint64_t t0 = now_ns();
            write_all(rfd, resp_get, sizeof resp_get - 1);
            len = resp_read(rfd, body, size);
            uint64_t t1 = now_ns();
            if (len != size || (i == 0 && memcmp(body, value, size) != 0)) {
                fprintf(stderr, "bench_daemon: raw redis GET: %zu bytes\n", len);
                return 1;
            }
            if (!warm) {
                s.lat[s.n++] = t1 - t0;
                s.total_ns += t1 - t0;
            }
        }
    }
    close(rfd);
    close(fd);
    redisFree(rc);

    double g_mbs = (double)size * (double)g.n / ((double)g.total_ns / 1e9) / 1e6;
    double r_mbs = (double)size * (double)r.n / ((double)r.total_ns / 1e9) / 1e6;
    double s_mbs = (double)size * (double)s.n / ((double)s.total_ns / 1e9) / 1e6;
    double g_med = pct(&g, 0.5), r_med = pct(&r, 0.5), s_med = pct(&s, 0.5);
    printf("bench_daemon: GET of %zu-byte values over loopback, keep-alive, %zu requests each "
           "in %zu alternating rounds (plus a warm-up round)\n",
           size, g.n, rounds);
    printf("layout: servers on CPU %d (gencached --threads 1, redis-server), client on CPU %d\n",
           server_cpu, client_cpu);
    printf("%-22s %12s %12s %12s\n", "", "median_us", "p90_us", "MB/s");
    printf("%-22s %12.1f %12.1f %12.1f\n", "gencached (HTTP)", g_med, pct(&g, 0.9), g_mbs);
    printf("%-22s %12.1f %12.1f %12.1f\n", "redis-server (hiredis)", r_med, pct(&r, 0.9), r_mbs);
    printf("%-22s %12.1f %12.1f %12.1f\n", "redis-server (socket)", s_med, pct(&s, 0.9), s_mbs);
    printf("ratio gencached/redis (hiredis): median latency %.2fx, throughput %.2fx\n",
           g_med / r_med, g_mbs / r_mbs);
    printf("ratio gencached/redis (plain socket client, like the HTTP one): median latency "
           "%.2fx, throughput %.2fx\n",
           g_med / s_med, g_mbs / s_mbs);

    kill(gpid, SIGTERM);
    kill(rpid, SIGTERM);
    int st;
    waitpid(gpid, &st, 0);
    bool clean = WIFEXITED(st) && WEXITSTATUS(st) == 0;
    waitpid(rpid, &st, 0);
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "bench_daemon: could not remove %s\n", dir);
    if (!clean)
        fprintf(stderr, "bench_daemon: gencached did not exit cleanly\n");
    free(g.lat);
    free(r.lat);
    free(s.lat);
    free(value);
    free(body);
    return clean ? 0 : 1;
}
