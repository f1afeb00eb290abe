/*
 * bench_redis.c: the Redis tier against hiredis used directly, on the same redis-server (started
 * here on a free loopback port unless a URL is given), in the same run, interleaved so both see
 * the same machine: GET of a 1.5 MiB value (the tier's get runs the refresh script and verifies
 * the checksum; hiredis runs a plain GET) and SET of it. Prints medians and the overhead.
 * Usage: bench_redis [PORT_OF_A_RUNNING_REDIS]
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../tests/unit/redis_server.h"
#include "internal.h"
#include "tier/redis.h"
#include "bench_util.h"

#define SIZE (1536u * 1024u)
#define N    300

int main(int argc, char **argv)
{
    int port = argc > 1 ? atoi(argv[1]) : rs_start();
    if (port <= 0)
        return 1;
    rs_port = port;
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", port);
    gencache__redis_options o = {.url = url, .timeout_ms = 2000};
    gencache__tier *t = NULL;
    if (gencache__redis_tier_open(&o, &t) != GENCACHE_OK)
        return 1;
    redisContext *c = rs_client();
    if (!c)
        return 1;

    const char *key = "result/00000000000000000000000000000000000000000000000000000000000000b1";
    gencache__entry_spec spec = {.key = key,
                                 .size = SIZE,
                                 .now_ms = gencache__clock_realtime_ms(NULL),
                                 .ttl_ms = 3600000,
                                 .sliding = true};
    gencache__entry *e;
    if (gencache__entry_new(NULL, &spec, &e) != GENCACHE_OK)
        return 1;
    for (size_t i = 0; i < SIZE; i++)
        e->value[i] = (unsigned char)(i * 31 + (i >> 9));
    e->checksum = gencache__checksum(e->value, SIZE);

    double tg[N], hg[N], tp[N], hp[N];
    for (int i = 0; i < N; i++) {
        uint64_t now = gencache__clock_realtime_ms(NULL);
        double t0 = bench_now_us();
        t->ops->put(t, e, now);
        tp[i] = bench_now_us() - t0;
        t0 = bench_now_us();
        redisReply *r = redisCommand(c, "SET bench:plain %b", e->value, (size_t)SIZE);
        hp[i] = bench_now_us() - t0;
        freeReplyObject(r);

        gencache__entry *got = NULL;
        t0 = bench_now_us();
        if (t->ops->get(t, key, e->hash, now, true, &got) != GENCACHE_OK)
            return 1;
        tg[i] = bench_now_us() - t0;
        gencache__entry_release(got);
        t0 = bench_now_us();
        r = redisCommand(c, "GET bench:plain");
        hg[i] = bench_now_us() - t0;
        if (!r || r->type != REDIS_REPLY_STRING || r->len != SIZE)
            return 1;
        freeReplyObject(r);
    }
    double mtg = bench_median(tg, N), mhg = bench_median(hg, N), mtp = bench_median(tp, N),
           mhp = bench_median(hp, N);
    printf("redis 1.5MiB GET (median us over %d): tier %.1f | hiredis GET %.1f | overhead %+.1f%% "
           "(goal <= 10%%)\n",
           N, mtg, mhg, (mtg / mhg - 1) * 100);
    printf(
        "redis 1.5MiB SET (median us over %d): tier %.1f | hiredis SET %.1f | overhead %+.1f%%\n",
        N, mtp, mhp, (mtp / mhp - 1) * 100);
    gencache_tier_stats st;
    t->ops->stats(t, &st);
    if (st.backend_errors)
        printf("warning: %llu backend errors during the run\n",
               (unsigned long long)st.backend_errors);
    gencache__entry_release(e);
    redisFree(c);
    t->ops->close(t);
    rs_stop();
    return 0;
}
