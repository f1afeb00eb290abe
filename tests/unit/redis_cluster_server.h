/*
 * redis_cluster_server.h: a real 3-primary Redis Cluster on loopback for the cluster tests and
 * benchmark: three redis-server children (cluster mode, no persistence, a 1 s node timeout, and
 * full coverage not required, so a dead primary takes down only its own slots), joined with
 * `redis-cli --cluster create`, each in its own directory under a temporary one. Every child is
 * killed at exit (and by PR_SET_PDEATHSIG if the test process dies). Include after test.h or
 * bench_util.h, and after defining _GNU_SOURCE.
 */
#ifndef GENCACHE_TEST_REDIS_CLUSTER_SERVER_H
#define GENCACHE_TEST_REDIS_CLUSTER_SERVER_H

#include <errno.h>
#include <ftw.h>
#include <sys/stat.h>

#include "redis_server.h"

#define RC_NODES 3 /* primaries */
#define RC_MAX   6 /* with one replica each (rc_start_with_replicas) */

typedef struct rc_node {
    pid_t pid;
    int port, bus_port;
    char dir[256];
    char id[48]; /* the cluster node id */
} rc_node;

static rc_node rc_nodes[RC_MAX];
static int rc_n = RC_NODES; /* nodes started */
static char rc_dir[128];
static int rc_atexit_set;

static inline void rc_kill(int i)
{
    if (rc_nodes[i].pid > 0) {
        kill(rc_nodes[i].pid, SIGKILL);
        waitpid(rc_nodes[i].pid, NULL, 0);
    }
    rc_nodes[i].pid = -1;
}

static inline int rc_rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static inline void rc_stop(void)
{
    for (int i = 0; i < RC_MAX; i++)
        rc_kill(i);
    if (rc_dir[0])
        nftw(rc_dir, rc_rm_one, 16, FTW_DEPTH | FTW_PHYS);
    rc_dir[0] = '\0';
}

/* Starts (or restarts, keeping its nodes.conf) node i and waits until it answers PING. */
static inline int rc_spawn(int i)
{
    rc_node *n = &rc_nodes[i];
    char port[16], bus[16];
    snprintf(port, sizeof port, "%d", n->port);
    snprintf(bus, sizeof bus, "%d", n->bus_port);
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        execlp("redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1",
               "--cluster-enabled", "yes", "--cluster-port", bus, "--cluster-config-file",
               "nodes.conf", "--cluster-node-timeout", "1000", "--cluster-require-full-coverage",
               "no", "--dir", n->dir, "--save", "", "--appendonly", "no", "--daemonize", "no",
               "--loglevel", "warning", "--logfile", "redis.log", (char *)NULL);
        perror("exec redis-server");
        _exit(127);
    }
    n->pid = pid;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (rs_ms_since(&t0) < 5000) {
        if (rs_ping(n->port))
            return 0;
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            n->pid = -1;
            return -1;
        }
        usleep(5000);
    }
    rc_kill(i);
    return -1;
}

/* A connection to node i (2 s timeouts); NULL when it cannot be had. */
static inline redisContext *rc_client(int i)
{
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", rc_nodes[i].port, tv);
    if (!c || c->err) {
        if (c)
            redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv);
    return c;
}

/* True when node i says cluster_state:ok and knows every slot. */
static inline int rc_node_ok(int i)
{
    redisContext *c = rc_client(i);
    if (!c)
        return 0;
    redisReply *r = redisCommand(c, "CLUSTER INFO");
    int ok = r && r->type == REDIS_REPLY_STRING && strstr(r->str, "cluster_state:ok") &&
             strstr(r->str, "cluster_slots_assigned:16384") &&
             strstr(r->str, rc_n == RC_MAX ? "cluster_known_nodes:6" : "cluster_known_nodes:3");
    if (r)
        freeReplyObject(r);
    redisFree(c);
    return ok;
}

/* Waits (up to ms) until every live node says the cluster is ok. */
static inline int rc_wait_ok(int ms)
{
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (rs_ms_since(&t0) < ms) {
        int ok = 1;
        for (int i = 0; i < rc_n && ok; i++)
            ok = rc_nodes[i].pid <= 0 || rc_node_ok(i);
        if (ok)
            return 0;
        usleep(20000);
    }
    return -1;
}

static inline int rc_read_id(int i)
{
    redisContext *c = rc_client(i);
    if (!c)
        return -1;
    redisReply *r = redisCommand(c, "CLUSTER MYID");
    int ok = r && r->type == REDIS_REPLY_STRING && (size_t)r->len < sizeof rc_nodes[i].id;
    if (ok)
        memcpy(rc_nodes[i].id, r->str, (size_t)r->len + 1);
    if (r)
        freeReplyObject(r);
    redisFree(c);
    return ok ? 0 : -1;
}

/* Two free ports that stay free for a moment (the node's and its cluster bus). */
static inline int rc_ports(int *port, int *bus)
{
    *port = rs_free_port();
    *bus = rs_free_port();
    return *port > 0 && *bus > 0 && *port != *bus ? 0 : -1;
}

/* Starts n nodes and joins them (replicas: per primary); 0 when every node agrees the cluster is
 * ok and serves its slots. */
static inline int rc_start_n(int n, int replicas)
{
    if (!rc_atexit_set) {
        atexit(rc_stop);
        rc_atexit_set = 1;
    }
    rc_n = n;
    snprintf(rc_dir, sizeof rc_dir, "/tmp/gencache-cluster-XXXXXX");
    if (!mkdtemp(rc_dir)) {
        rc_dir[0] = '\0';
        return -1;
    }
    for (int i = 0; i < n; i++) {
        rc_node *nd = &rc_nodes[i];
        snprintf(nd->dir, sizeof nd->dir, "%s/n%d", rc_dir, i);
        if (mkdir(nd->dir, 0700) != 0)
            return -1;
        int started = -1;
        for (int tries = 0; tries < 5 && started != 0; tries++)
            if (rc_ports(&nd->port, &nd->bus_port) == 0)
                started = rc_spawn(i);
        if (started != 0)
            return -1;
    }
    char cmd[1024];
    int w = snprintf(cmd, sizeof cmd, "redis-cli --cluster create");
    for (int i = 0; i < n; i++)
        w += snprintf(cmd + w, sizeof cmd - (size_t)w, " 127.0.0.1:%d", rc_nodes[i].port);
    snprintf(cmd + w, sizeof cmd - (size_t)w,
             " --cluster-replicas %d --cluster-yes >%s/create.log 2>&1", replicas, rc_dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "redis-cli --cluster create failed (see %s/create.log)\n", rc_dir);
        return -1;
    }
    for (int i = 0; i < n; i++)
        if (rc_read_id(i) != 0)
            return -1;
    return rc_wait_ok(20000);
}

/* The 3-primary cluster without replicas. */
static inline int rc_start(void)
{
    return rc_start_n(RC_NODES, 0);
}

/* 3 primaries, each with one replica. */
static inline int rc_start_with_replicas(void)
{
    return rc_start_n(RC_MAX, 1);
}

/* True when node i is a primary (ROLE). */
static inline int rc_is_primary(int i)
{
    redisContext *c = rc_client(i);
    if (!c)
        return 0;
    redisReply *r = redisCommand(c, "ROLE");
    int primary = r && r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
                  r->element[0]->type == REDIS_REPLY_STRING &&
                  strcmp(r->element[0]->str, "master") == 0;
    if (r)
        freeReplyObject(r);
    redisFree(c);
    return primary;
}

/* "redis-cluster://127.0.0.1:P1,..." naming the first `seeds` nodes. */
static inline void rc_url(char *buf, size_t size, int seeds)
{
    int w = snprintf(buf, size, "redis-cluster://");
    for (int i = 0; i < seeds && i < RC_NODES; i++)
        w += snprintf(buf + w, size - (size_t)w, "%s127.0.0.1:%d", i ? "," : "", rc_nodes[i].port);
}

/* The node (its index) serving slot, from node `ask`'s CLUSTER SLOTS; -1 if unknown. */
static inline int rc_owner(int ask, unsigned slot)
{
    redisContext *c = rc_client(ask);
    if (!c)
        return -1;
    redisReply *r = redisCommand(c, "CLUSTER SLOTS");
    int owner = -1;
    for (size_t i = 0; r && r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        redisReply *e = r->element[i];
        if (e->element[0]->integer <= (long long)slot && (long long)slot <= e->element[1]->integer)
            for (int k = 0; k < rc_n; k++)
                if (e->element[2]->element[1]->integer == rc_nodes[k].port)
                    owner = k;
    }
    if (r)
        freeReplyObject(r);
    redisFree(c);
    return owner;
}

#endif
