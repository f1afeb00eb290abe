/*
 * redis_server.h: a real redis-server for the Redis tier's tests and benchmark, started as a
 * child on a free loopback port (no persistence) and killed at exit, also when a check fails.
 * PR_SET_PDEATHSIG takes it down if the test process itself is killed.
 */
#ifndef GENCACHE_TEST_REDIS_SERVER_H
#define GENCACHE_TEST_REDIS_SERVER_H

#include <arpa/inet.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static pid_t rs_pid = -1;
static int rs_port;
static int rs_atexit_set;

static inline void rs_stop(void)
{
    if (rs_pid > 0) {
        kill(rs_pid, SIGKILL);
        waitpid(rs_pid, NULL, 0);
    }
    rs_pid = -1;
}

static inline int rs_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    return ntohs(a.sin_port);
}

static inline double rs_ms_since(const struct timespec *t0)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t0->tv_sec) * 1e3 + (double)(now.tv_nsec - t0->tv_nsec) / 1e6;
}

/* A PING that answers PONG. */
static inline int rs_ping(int port)
{
    struct timeval tv = {0, 200000};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    int ok = 0;
    if (c && !c->err) {
        redisSetTimeout(c, tv);
        redisReply *r = redisCommand(c, "PING");
        ok = r && r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0;
        if (r)
            freeReplyObject(r);
    }
    if (c)
        redisFree(c);
    return ok;
}

/* Starts redis-server on port and waits (up to 5 s) until it answers. Returns 0 or -1. */
static inline int rs_start_on(int port)
{
    if (!rs_atexit_set) {
        atexit(rs_stop);
        rs_atexit_set = 1;
    }
    char p[16];
    snprintf(p, sizeof p, "%d", port);
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        execlp("redis-server", "redis-server", "--port", p, "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning", "--logfile",
               "/dev/null", (char *)NULL);
        perror("exec redis-server");
        _exit(127);
    }
    rs_pid = pid;
    rs_port = port;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (rs_ms_since(&t0) < 5000) {
        if (rs_ping(port))
            return 0;
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            rs_pid = -1;
            return -1;
        }
        usleep(5000);
    }
    rs_stop();
    return -1;
}

/* Starts redis-server on a free port; a few tries in case another process takes the port. */
static inline int rs_start(void)
{
    for (int i = 0; i < 5; i++) {
        int port = rs_free_port();
        if (port > 0 && rs_start_on(port) == 0)
            return port;
    }
    fprintf(stderr, "cannot start redis-server (is the redis-server package installed?)\n");
    return -1;
}

/* A plain hiredis connection to the test server. */
static inline redisContext *rs_client(void)
{
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", rs_port, tv);
    if (!c || c->err)
        return NULL;
    return c;
}

#endif
