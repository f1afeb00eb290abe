/*
 * bench_daemon.c: entry GETs from gencached over loopback HTTP with keep-alive, against the same
 * GETs from memcached, redis-server and a plain TCP server (which answers each request line with
 * the value's bytes and nothing else: the ceiling of one server thread on this kernel), measured
 * in the same run and the same layout. The benchmark starts every server itself (free ports, a
 * temporary data directory, no persistence), each with one worker thread pinned to the server
 * CPU, and runs its client on another CPU (what `taskset -c` does). The client is one thread
 * with an epoll loop over N keep-alive connections, each with one request outstanding (closed
 * loop, like wrk -t1 -cN), and it speaks each server's own protocol; so the figures compare the
 * servers, not client libraries. Rounds alternate between the servers, each round starting with
 * the next one, so that drift in the machine's load touches them alike; the medians over rounds
 * and the ratios are printed. cpu_us/op is the server's CPU time per reply (all its threads), and
 * `user` the share of it spent in user mode (the rest is the kernel's socket work).
 *
 *   bench_daemon [--sizes B,B] [--conns N,N] [--seconds S] [--rounds R] [--server-cpu C]
 *                [--client-cpu C] [--gencached PATH] [--memcached PATH] [--redis-server PATH]
 *                [--compare PATH] [--mhd yes|no]
 * --compare starts a second gencached (another build) as one more server of the same rounds, so
 * two builds are compared in one run, under the same load; its ratio to the first is printed.
 * --mhd yes starts the --gencached build once more with http.fast_get: false (every request
 * through libmicrohttpd) as gencached-mhd, so the daemon's own GET loop is compared with it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <dirent.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define KEY_HEX   "6a1f3b0c9e5d47a8b2c4d6e8f0a1b3c5d7e9f1a3b5c7d9e1f3a5b7c9d1e3f5a7"
#define MAX_CONNS 256
#define MAX_SIZES 4
#define HEAD_MAX  4096

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

/* Reads until `stop` has arrived (or n bytes when stop is NULL); returns the bytes read. */
static size_t read_until(int fd, char *buf, size_t cap, const char *stop, size_t n)
{
    size_t have = 0;
    for (;;) {
        if (stop ? (buf[have] = '\0', strstr(buf, stop) != NULL) : have >= n)
            return have;
        if (have + 1 >= cap) {
            fprintf(stderr, "bench_daemon: reply too long\n");
            exit(1);
        }
        ssize_t r = read(fd, buf + have, cap - have - 1);
        if (r <= 0)
            die("reading a reply");
        have += (size_t)r;
    }
}

/* Nanoseconds the process has run on a CPU, all its threads together (schedstat): what a request
 * costs the server, whatever else the machine was doing meanwhile. */
static uint64_t cpu_ns(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    uint64_t sum = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char f[300];
        snprintf(f, sizeof f, "/proc/%d/task/%s/schedstat", (int)pid, e->d_name);
        FILE *fp = fopen(f, "r");
        unsigned long long v = 0;
        if (fp && fscanf(fp, "%llu", &v) == 1)
            sum += v;
        if (fp)
            fclose(fp);
    }
    if (d)
        closedir(d);
    return sum;
}

/* The process's CPU time in user mode and in the kernel, in clock ticks (/proc/PID/stat). */
static void cpu_split(pid_t pid, uint64_t *user, uint64_t *sys)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    *user = *sys = 0;
    FILE *fp = fopen(path, "r");
    size_t n = fp ? fread(buf, 1, sizeof buf - 1, fp) : 0;
    if (fp)
        fclose(fp);
    buf[n] = '\0';
    /* Fields 14 and 15 (utime, stime) follow the command name, which may hold spaces. */
    char *p = strrchr(buf, ')');
    unsigned long long u, s;
    if (p && sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &u, &s) == 2) {
        *user = u;
        *sys = s;
    }
}

/* ---- the plain TCP server: each "GET\n" is answered with the value's bytes ------------------- */

typedef struct tcp_conn {
    size_t left; /* bytes of the current reply still to send; 0: waiting for a request */
    bool out;    /* registered for EPOLLOUT (else EPOLLIN) */
} tcp_conn;

static void tcp_server(int lfd, const char *value, size_t size)
{
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd};
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) != 0)
        _exit(1);
    static tcp_conn conns[65536];
    struct epoll_event evs[64];
    char in[256];
    for (;;) {
        int n = epoll_wait(ep, evs, 64, -1);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == lfd) {
                int c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);
                if (c < 0 || c >= 65536)
                    continue;
                int one = 1;
                setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                conns[c].left = 0;
                conns[c].out = false;
                struct epoll_event ce = {.events = EPOLLIN, .data.fd = c};
                epoll_ctl(ep, EPOLL_CTL_ADD, c, &ce);
                continue;
            }
            tcp_conn *tc = &conns[fd];
            if (!tc->left) {
                ssize_t r = read(fd, in, sizeof in);
                if (r <= 0) {
                    close(fd);
                    continue;
                }
                tc->left = size * (size_t)(memchr(in, '\n', (size_t)r) != NULL);
            }
            while (tc->left) {
                ssize_t w = write(fd, value + (size - tc->left), tc->left);
                if (w <= 0)
                    break;
                tc->left -= (size_t)w;
            }
            if (tc->out != (tc->left != 0)) { /* only when the wait changes: no extra call */
                tc->out = tc->left != 0;
                struct epoll_event ce = {.events = tc->out ? EPOLLOUT : EPOLLIN, .data.fd = fd};
                epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ce);
            }
        }
    }
}

static pid_t spawn_tcp(int port, int cpu, const char *value, size_t size)
{
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof a) != 0 || listen(lfd, 1024) != 0)
        die("plain TCP server: listen");
    pid_t pid = fork();
    if (pid < 0)
        die("fork");
    if (pid == 0) {
        pin(cpu);
        tcp_server(lfd, value, size);
        _exit(0);
    }
    close(lfd);
    return pid;
}

/* ---- the client --------------------------------------------------------------------------- */

/* The servers; P_HTTP_B (--compare) and P_HTTP_MHD (--mhd yes) speak P_HTTP's protocol. */
typedef enum proto { P_HTTP, P_MEMCACHED, P_REDIS, P_TCP, P_HTTP_B, P_HTTP_MHD, P_COUNT } proto;
static const char *const PROTO_NAMES[P_COUNT] = {"gencached", "memcached",   "redis-server",
                                                 "plain-tcp", "gencached-b", "gencached-mhd"};

/* The protocol server p speaks. */
static proto wire(proto p)
{
    return p == P_HTTP_B || p == P_HTTP_MHD ? P_HTTP : p;
}

typedef struct conn {
    int fd;
    uint64_t t0;      /* when the outstanding request was sent */
    size_t head_len;  /* bytes of the reply head gathered */
    bool in_body;     /* the head is complete */
    size_t body_left; /* body bytes still to come, with the protocol's trailer */
    char head[HEAD_MAX];
} conn;

typedef struct run_result {
    double ops; /* replies per second */
    double cpu; /* server CPU microseconds per reply */
    double p50; /* microseconds */
    double p99;
    double user; /* share of the server's CPU time spent in user mode, 0-1 */
} run_result;

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void bad_reply(proto p, const char *head)
{
    fprintf(stderr, "bench_daemon: %s: unexpected reply '%.60s'\n", PROTO_NAMES[p], head);
    exit(1);
}

/* The head of a reply is complete in c->head (head_len bytes, `end` past its terminator):
 * checks it and sets how many body bytes follow. */
static void parse_head(proto p, conn *c, const char *end, size_t size)
{
    size_t len = 0;
    c->body_left = 0;
    if (p == P_HTTP) {
        if (strncmp(c->head, "HTTP/1.1 200", 12) != 0)
            bad_reply(p, c->head);
        const char *cl = strcasestr(c->head, "\r\nContent-Length:");
        if (!cl)
            bad_reply(p, c->head);
        len = strtoull(cl + 17, NULL, 10);
    } else if (p == P_MEMCACHED) {
        const char *sp = memrchr(c->head, ' ', (size_t)(end - c->head));
        if (strncmp(c->head, "VALUE ", 6) != 0 || !sp)
            bad_reply(p, c->head);
        len = strtoull(sp + 1, NULL, 10);
        c->body_left = 7; /* "\r\nEND\r\n" */
    } else {
        if (c->head[0] != '$')
            bad_reply(p, c->head);
        len = strtoull(c->head + 1, NULL, 10);
        c->body_left = 2;
    }
    if (len != size)
        bad_reply(p, c->head);
    size_t after = c->head_len - (size_t)(end - c->head);
    c->body_left += len;
    if (after > c->body_left)
        bad_reply(p, c->head);
    c->body_left -= after;
    c->in_body = true;
}

/* Runs N connections against one server for `seconds`; every reply is checked for its status
 * and length. */
static run_result run_load(proto p, int port, pid_t server, const char *req, size_t req_len,
                           size_t size, int nconns, double seconds, uint64_t **lat_buf,
                           size_t *lat_cap)
{
    static conn conns[MAX_CONNS];
    static char sink[1 << 20];
    int ep = epoll_create1(0);
    if (ep < 0)
        die("epoll_create1");
    for (int i = 0; i < nconns; i++) {
        conn *c = &conns[i];
        memset(c, 0, offsetof(conn, head));
        c->fd = connect_port(port, false);
        fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) != 0)
            die("epoll_ctl");
    }
    const char *term = wire(p) == P_HTTP ? "\r\n\r\n" : "\r\n";
    size_t n = 0;
    uint64_t cpu0 = cpu_ns(server), user0, sys0, user1, sys1;
    cpu_split(server, &user0, &sys0);
    uint64_t start = now_ns(), stop = start + (uint64_t)(seconds * 1e9), last = start;
    for (int i = 0; i < nconns; i++) {
        conns[i].t0 = now_ns();
        write_all(conns[i].fd, req, req_len);
    }
    int outstanding = nconns;
    struct epoll_event evs[MAX_CONNS];
    while (outstanding) {
        int ne = epoll_wait(ep, evs, MAX_CONNS, 5000);
        if (ne <= 0)
            die("waiting for replies");
        for (int e = 0; e < ne; e++) {
            conn *c = evs[e].data.ptr;
            ssize_t r;
            if (!c->in_body && p != P_TCP) {
                r = read(c->fd, c->head + c->head_len, HEAD_MAX - 1 - c->head_len);
                if (r < 0 && errno == EAGAIN)
                    continue;
                if (r <= 0)
                    die("reading a reply head");
                c->head_len += (size_t)r;
                c->head[c->head_len] = '\0';
                char *end = strstr(c->head, term);
                if (!end) {
                    if (c->head_len >= HEAD_MAX - 1)
                        bad_reply(p, c->head);
                    continue;
                }
                parse_head(wire(p), c, end + strlen(term), size);
            } else if (!c->in_body) {
                c->in_body = true;
                c->body_left = size;
            }
            while (c->body_left) {
                r = read(c->fd, sink, c->body_left < sizeof sink ? c->body_left : sizeof sink);
                if (r < 0 && errno == EAGAIN)
                    break;
                if (r <= 0)
                    die("reading a reply body");
                c->body_left -= (size_t)r;
            }
            if (c->body_left)
                continue;
            uint64_t t1 = now_ns();
            if (n == *lat_cap) {
                *lat_cap = *lat_cap ? *lat_cap * 2 : 1 << 20;
                *lat_buf = realloc(*lat_buf, *lat_cap * sizeof **lat_buf);
                if (!*lat_buf)
                    die("realloc");
            }
            (*lat_buf)[n++] = t1 - c->t0;
            last = t1;
            c->in_body = false;
            c->head_len = 0;
            if (t1 >= stop) {
                outstanding--;
                continue;
            }
            c->t0 = t1;
            write_all(c->fd, req, req_len);
        }
    }
    uint64_t cpu1 = cpu_ns(server);
    cpu_split(server, &user1, &sys1);
    for (int i = 0; i < nconns; i++)
        close(conns[i].fd);
    close(ep);
    qsort(*lat_buf, n, sizeof **lat_buf, cmp_u64);
    run_result rr = {
        .ops = (double)n / ((double)(last - start) / 1e9),
        .cpu = (double)(cpu1 - cpu0) / 1e3 / (double)n,
        .p50 = (double)(*lat_buf)[(size_t)(0.50 * (double)(n - 1))] / 1e3,
        .p99 = (double)(*lat_buf)[(size_t)(0.99 * (double)(n - 1))] / 1e3,
        .user = user1 + sys1 > user0 + sys0
                    ? (double)(user1 - user0) / (double)(user1 + sys1 - user0 - sys0)
                    : 0,
    };
    return rr;
}

/* The connection reads blocking for the setup calls, and non-blocking in run_load's loop. */
static void setup_value(proto p, int port, const char *value, size_t size)
{
    int fd = connect_port(port, false);
    char head[512], reply[HEAD_MAX];
    int n = 0;
    if (p == P_HTTP)
        n = snprintf(head, sizeof head,
                     "PUT /v1/entries/result/%.56s%08zx HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     "Content-Length: %zu\r\nX-Gencache-Cost-Ms: 1000\r\n\r\n",
                     KEY_HEX, size, size);
    else if (p == P_MEMCACHED)
        n = snprintf(head, sizeof head, "set bench%zu 0 0 %zu\r\n", size, size);
    else if (p == P_REDIS)
        n = snprintf(head, sizeof head, "*3\r\n$3\r\nSET\r\n$%d\r\nbench%zu\r\n$%zu\r\n",
                     snprintf(NULL, 0, "bench%zu", size), size, size);
    write_all(fd, head, (size_t)n);
    write_all(fd, value, size);
    if (p != P_HTTP)
        write_all(fd, "\r\n", 2);
    read_until(fd, reply, sizeof reply, "\r\n", 0);
    bool ok = p == P_HTTP        ? strncmp(reply, "HTTP/1.1 201", 12) == 0
              : p == P_MEMCACHED ? strncmp(reply, "STORED", 6) == 0
                                 : strncmp(reply, "+OK", 3) == 0;
    if (!ok)
        bad_reply(p, reply);
    close(fd);
}

/* The request each protocol sends for the value of `size` bytes. */
static size_t make_request(proto p, size_t size, char *out, size_t cap)
{
    int n;
    if (p == P_HTTP)
        n = snprintf(out, cap,
                     "GET /v1/entries/result/%.56s%08zx HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
                     KEY_HEX, size);
    else if (p == P_MEMCACHED)
        n = snprintf(out, cap, "get bench%zu\r\n", size);
    else if (p == P_REDIS)
        n = snprintf(out, cap, "*2\r\n$3\r\nGET\r\n$%d\r\nbench%zu\r\n",
                     snprintf(NULL, 0, "bench%zu", size), size);
    else
        n = snprintf(out, cap, "GET\n");
    return (size_t)n;
}

static const char *arg_value(int argc, char **argv, const char *name, const char *def)
{
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], name) == 0)
            return argv[i + 1];
    return def;
}

/* "a,b,c" -> up to max numbers; returns the count. */
static int parse_list(const char *s, size_t *out, int max)
{
    int n = 0;
    for (const char *p = s; *p && n < max;) {
        char *end;
        out[n++] = strtoull(p, &end, 10);
        p = *end == ',' ? end + 1 : end;
        if (end == p && *p)
            break;
    }
    return n;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, size_t n)
{
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* The ratios of another gencached (p: a second build, or this one with the fast path off) to
 * the first, and to memcached and Redis. */
static void print_other(const char *what, proto p, const double *ops, const double *p99,
                        const double *cpu)
{
    const char *n = PROTO_NAMES[p];
    printf("%s: %s/gencached ops/s %.2fx, p99 %.2fx, CPU per request %.2fx; %s/memcached ops/s "
           "%.2fx, CPU per request %.2fx; p99 %s/redis %.2fx\n",
           what, n, ops[p] / ops[P_HTTP], p99[p] / p99[P_HTTP], cpu[p] / cpu[P_HTTP], n,
           ops[p] / ops[P_MEMCACHED], cpu[p] / cpu[P_MEMCACHED], n, p99[p] / p99[P_REDIS]);
}

int main(int argc, char **argv)
{
    static const char *const options[] = {
        "--sizes",     "--conns",     "--seconds",      "--rounds",  "--server-cpu", "--client-cpu",
        "--gencached", "--memcached", "--redis-server", "--compare", "--mhd"};
    const char *usage =
        "usage: bench_daemon [--sizes B,B] [--conns N,N] [--seconds S] [--rounds R] "
        "[--server-cpu C] [--client-cpu C] [--gencached PATH] [--memcached PATH] "
        "[--redis-server PATH] [--compare PATH] [--mhd yes|no]\n";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0) {
            fputs(usage, stdout);
            return 0;
        }
        size_t k = 0;
        while (k < sizeof options / sizeof *options && strcmp(argv[i], options[k]) != 0)
            k++;
        if (k == sizeof options / sizeof *options || i + 1 == argc) {
            fprintf(stderr, "bench_daemon: %s: %s\n%s", argv[i],
                    k == sizeof options / sizeof *options ? "unknown option" : "needs a value",
                    usage);
            return 2;
        }
        i++; /* its value */
    }
    size_t sizes[MAX_SIZES], conns[MAX_SIZES];
    int nsizes = parse_list(arg_value(argc, argv, "--sizes", "4096,1572864"), sizes, MAX_SIZES);
    int nconns = parse_list(arg_value(argc, argv, "--conns", "1,16"), conns, MAX_SIZES);
    double seconds = strtod(arg_value(argc, argv, "--seconds", "2"), NULL);
    int rounds = atoi(arg_value(argc, argv, "--rounds", "3"));
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
    const char *memcached = arg_value(argc, argv, "--memcached", "/usr/bin/memcached");
    const char *redis = arg_value(argc, argv, "--redis-server", "/usr/bin/redis-server");
    const char *compare = arg_value(argc, argv, "--compare", NULL);
    const char *mhd_arg = arg_value(argc, argv, "--mhd", "no");
    bool mhd = strcmp(mhd_arg, "yes") == 0;
    if (!mhd && strcmp(mhd_arg, "no") != 0) {
        fprintf(stderr, "bench_daemon: --mhd: yes or no\n");
        return 2;
    }
    /* The servers of this run, in the order of the first round. */
    proto order[P_COUNT];
    int nservers = 0;
    for (int p = P_HTTP; p <= P_TCP; p++)
        order[nservers++] = (proto)p;
    if (compare)
        order[nservers++] = P_HTTP_B;
    if (mhd)
        order[nservers++] = P_HTTP_MHD;
    for (int i = 0; i < nsizes; i++)
        if (sizes[i] == 0 || sizes[i] > (64u << 20)) {
            fprintf(stderr, "bench_daemon: bad --sizes\n");
            return 2;
        }
    for (int i = 0; i < nconns; i++)
        if (conns[i] == 0 || conns[i] > MAX_CONNS) {
            fprintf(stderr, "bench_daemon: --conns: 1 to %d\n", MAX_CONNS);
            return 2;
        }
    if (!nsizes || !nconns || rounds < 1 || !(seconds > 0)) {
        fprintf(stderr, "bench_daemon: bad --sizes, --conns, --seconds or --rounds\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);

    char dir[] = "/tmp/bench_daemon.XXXXXX";
    if (!mkdtemp(dir))
        die("mkdtemp");
    char data_dir[PATH_MAX], glog[PATH_MAX], mlog[PATH_MAX], rlog[PATH_MAX], listen_s[64];
    char data_dir_b[PATH_MAX], glog_b[PATH_MAX], listen_b[64];
    char data_dir_c[PATH_MAX], glog_c[PATH_MAX], listen_c[64], config_c[PATH_MAX];
    char mport_s[16], rport_s[16];
    snprintf(data_dir, sizeof data_dir, "%s/data", dir);
    snprintf(glog, sizeof glog, "%s/gencached.log", dir);
    snprintf(mlog, sizeof mlog, "%s/memcached.log", dir);
    snprintf(rlog, sizeof rlog, "%s/redis.log", dir);
    snprintf(data_dir_b, sizeof data_dir_b, "%s/data-b", dir);
    snprintf(glog_b, sizeof glog_b, "%s/gencached-b.log", dir);
    snprintf(data_dir_c, sizeof data_dir_c, "%s/data-mhd", dir);
    snprintf(glog_c, sizeof glog_c, "%s/gencached-mhd.log", dir);
    snprintf(config_c, sizeof config_c, "%s/mhd.yaml", dir);
    int port[P_COUNT];
    for (int p = 0; p < P_COUNT; p++)
        port[p] = free_port();
    snprintf(listen_s, sizeof listen_s, "127.0.0.1:%d", port[P_HTTP]);
    snprintf(listen_b, sizeof listen_b, "127.0.0.1:%d", port[P_HTTP_B]);
    snprintf(listen_c, sizeof listen_c, "127.0.0.1:%d", port[P_HTTP_MHD]);
    snprintf(mport_s, sizeof mport_s, "%d", port[P_MEMCACHED]);
    snprintf(rport_s, sizeof rport_s, "%d", port[P_REDIS]);
    char *gargv[] = {
        (char *)gencached, "--listen", listen_s,      "--data-dir", data_dir, "--threads", "1",
        "--max-memory",    "1G",       "--log-level", "warn",       NULL};
    char *gargv_b[] = {(char *)compare, "--listen", listen_b,       "--data-dir", data_dir_b,
                       "--threads",     "1",        "--max-memory", "1G",         "--log-level",
                       "warn",          NULL};
    char *gargv_c[] = {(char *)gencached,
                       "--config",
                       config_c,
                       "--listen",
                       listen_c,
                       "--data-dir",
                       data_dir_c,
                       "--threads",
                       "1",
                       "--max-memory",
                       "1G",
                       "--log-level",
                       "warn",
                       NULL};
    /* memcached: one worker thread, items up to 64 MiB, no persistence of any kind. */
    char *margv[] = {(char *)memcached,
                     "-l",
                     "127.0.0.1",
                     "-p",
                     mport_s,
                     "-U",
                     "0",
                     "-t",
                     "1",
                     "-m",
                     "1024",
                     "-I",
                     "64m",
                     "-c",
                     "1024",
                     "-u",
                     "nobody",
                     NULL};
    char *rargv[] = {(char *)redis, "--port", rport_s, "--bind",
                     "127.0.0.1",   "--save", "",      "--appendonly",
                     "no",          "--dir",  dir,     "--proto-max-bulk-len",
                     "128mb",       NULL};
    pid_t pids[P_COUNT] = {0};
    pids[P_HTTP] = spawn(gargv, server_cpu, glog);
    pids[P_MEMCACHED] = spawn(margv, server_cpu, mlog);
    pids[P_REDIS] = spawn(rargv, server_cpu, rlog);
    pin(client_cpu);
    wait_port(port[P_HTTP], pids[P_HTTP], "gencached");
    wait_port(port[P_MEMCACHED], pids[P_MEMCACHED], "memcached");
    wait_port(port[P_REDIS], pids[P_REDIS], "redis-server");
    if (compare) {
        pids[P_HTTP_B] = spawn(gargv_b, server_cpu, glog_b);
        wait_port(port[P_HTTP_B], pids[P_HTTP_B], "gencached (--compare)");
    }
    if (mhd) {
        FILE *f = fopen(config_c, "w");
        if (!f || fputs("http:\n  fast_get: false\n", f) < 0 || fclose(f) != 0)
            die("writing the gencached-mhd config");
        pids[P_HTTP_MHD] = spawn(gargv_c, server_cpu, glog_c);
        wait_port(port[P_HTTP_MHD], pids[P_HTTP_MHD], "gencached (--mhd yes)");
    }

    size_t max_size = 0;
    for (int i = 0; i < nsizes; i++)
        max_size = sizes[i] > max_size ? sizes[i] : max_size;
    char *value = malloc(max_size);
    if (!value)
        die("malloc");
    for (size_t i = 0; i < max_size; i++)
        value[i] = (char)(i * 2654435761u >> 13);
    for (int i = 0; i < nsizes; i++)
        for (int k = 0; k < nservers; k++)
            if (order[k] != P_TCP)
                setup_value(wire(order[k]), port[order[k]], value, sizes[i]);

    /* One check of the bytes themselves, through gencached: the load loop checks lengths. */
    {
        char req[512];
        size_t rl = make_request(P_HTTP, sizes[0], req, sizeof req);
        int fd = connect_port(port[P_HTTP], false);
        write_all(fd, req, rl);
        size_t cap = sizes[0] + HEAD_MAX;
        char *buf = malloc(cap + 1);
        if (!buf)
            die("malloc");
        size_t got = read_until(fd, buf, cap + 1, "\r\n\r\n", 0);
        size_t head = (size_t)(strstr(buf, "\r\n\r\n") + 4 - buf);
        if (got < head + sizes[0])
            read_until(fd, buf + got, cap + 1 - got, NULL, head + sizes[0] - got);
        if (memcmp(buf + head, value, sizes[0]) != 0) {
            fprintf(stderr, "bench_daemon: gencached returned other bytes\n");
            return 1;
        }
        free(buf);
        close(fd);
    }

    printf("bench_daemon: GET over loopback, keep-alive, one request outstanding per connection, "
           "%d rounds of %.1f s per server and case, servers alternating\n",
           rounds, seconds);
    printf("layout: every server on CPU %d with one worker thread (gencached --threads 1, "
           "memcached -t 1, redis-server, plain TCP epoll loop); client on CPU %d (one thread, "
           "epoll)\n",
           server_cpu, client_cpu);
    uint64_t *lat = NULL;
    size_t lat_cap = 0;
    bool ok = true;
    for (int si = 0; si < nsizes; si++) {
        for (int ci = 0; ci < nconns; ci++) {
            size_t size = sizes[si];
            int nc = (int)conns[ci];
            double ops[P_COUNT][16], p50[P_COUNT][16], p99[P_COUNT][16], cpu[P_COUNT][16];
            double usr[P_COUNT][16];
            int nr = rounds > 16 ? 16 : rounds;
            pids[P_TCP] = spawn_tcp(port[P_TCP], server_cpu, value, size);
            pid_t tcp_pid = pids[P_TCP];
            wait_port(port[P_TCP], tcp_pid, "plain TCP server");
            for (int r = -1; r < nr; r++) { /* round -1 warms every server up, uncounted */
                /* Each round starts with the next server, so no server always follows the
                 * same one (or always runs first, after the pause between rounds). */
                for (int k = 0; k < nservers; k++) {
                    int p = order[(k + (r < 0 ? 0 : r)) % nservers];
                    char req[512];
                    size_t rl = make_request(wire((proto)p), size, req, sizeof req);
                    run_result rr = run_load((proto)p, port[p], pids[p], req, rl, size, nc,
                                             r < 0 ? seconds / 4 : seconds, &lat, &lat_cap);
                    if (r >= 0) {
                        ops[p][r] = rr.ops;
                        p50[p][r] = rr.p50;
                        p99[p][r] = rr.p99;
                        cpu[p][r] = rr.cpu;
                        usr[p][r] = rr.user;
                    }
                }
            }
            kill(tcp_pid, SIGTERM);
            waitpid(tcp_pid, NULL, 0);
            printf("\n%zu-byte values, %d connection%s (medians of %d rounds)\n", size, nc,
                   nc == 1 ? "" : "s", nr);
            printf("%-14s %12s %10s %10s %10s %12s %6s\n", "server", "ops/s", "MB/s", "p50_us",
                   "p99_us", "cpu_us/op", "user");
            double med_ops[P_COUNT], med_p99[P_COUNT], med_cpu[P_COUNT];
            for (int k = 0; k < nservers; k++) {
                int p = order[k];
                med_ops[p] = median(ops[p], (size_t)nr);
                med_p99[p] = median(p99[p], (size_t)nr);
                med_cpu[p] = median(cpu[p], (size_t)nr);
                printf("%-14s %12.0f %10.1f %10.1f %10.1f %12.2f %5.0f%%\n", PROTO_NAMES[p],
                       med_ops[p], med_ops[p] * (double)size / 1e6, median(p50[p], (size_t)nr),
                       med_p99[p], med_cpu[p], 100 * median(usr[p], (size_t)nr));
            }
            printf("ratio gencached/memcached ops/s %.2fx, gencached/redis %.2fx, "
                   "gencached/plain-tcp %.2fx; p99 gencached/redis %.2fx\n",
                   med_ops[P_HTTP] / med_ops[P_MEMCACHED], med_ops[P_HTTP] / med_ops[P_REDIS],
                   med_ops[P_HTTP] / med_ops[P_TCP], med_p99[P_HTTP] / med_p99[P_REDIS]);
            printf("server CPU per request: gencached/memcached %.2fx, gencached/plain-tcp "
                   "%.2fx (ops/s a whole CPU would give: gencached %.0f, memcached %.0f)\n",
                   med_cpu[P_HTTP] / med_cpu[P_MEMCACHED], med_cpu[P_HTTP] / med_cpu[P_TCP],
                   1e6 / med_cpu[P_HTTP], 1e6 / med_cpu[P_MEMCACHED]);
            if (compare)
                print_other("compared build", P_HTTP_B, med_ops, med_p99, med_cpu);
            if (mhd)
                print_other("fast path off", P_HTTP_MHD, med_ops, med_p99, med_cpu);
        }
    }
    printf("\nload average at the end: ");
    FILE *la = fopen("/proc/loadavg", "r");
    char lbuf[64] = "";
    if (la && fgets(lbuf, sizeof lbuf, la))
        fputs(lbuf, stdout);
    else
        putchar('\n');
    if (la)
        fclose(la);

    for (int k = 0; k < nservers; k++)
        if (order[k] != P_TCP)
            kill(pids[order[k]], SIGTERM);
    int st;
    waitpid(pids[P_HTTP], &st, 0);
    ok = WIFEXITED(st) && WEXITSTATUS(st) == 0;
    waitpid(pids[P_MEMCACHED], NULL, 0);
    waitpid(pids[P_REDIS], NULL, 0);
    if (compare) {
        waitpid(pids[P_HTTP_B], &st, 0);
        ok = ok && WIFEXITED(st) && WEXITSTATUS(st) == 0;
    }
    if (mhd) {
        waitpid(pids[P_HTTP_MHD], &st, 0);
        ok = ok && WIFEXITED(st) && WEXITSTATUS(st) == 0;
    }
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "bench_daemon: could not remove %s\n", dir);
    if (!ok)
        fprintf(stderr, "bench_daemon: gencached did not exit cleanly\n");
    free(lat);
    free(value);
    return ok ? 0 : 1;
}
