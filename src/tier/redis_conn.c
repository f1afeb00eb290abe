/*
 * redis_conn.c: one connection to Redis, driven with non-blocking sockets and poll() so that no
 * operation outlives its deadline, whatever the server does (dies, hangs, trickles). Commands are
 * written with sendmsg() from the caller's buffers (a value is never copied into a command
 * buffer); ordinary replies are parsed by hiredis's reader; the reply that carries a stored entry
 * is parsed here so that its value bytes go from the socket straight into the new entry.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tier/entry_codec.h"
#include "tier/redis.h"

#define READ_CHUNK (256u << 10)

uint64_t gencache__redis_now_ns(void)
{
    return gencache__clock_mono_ns();
}

/* Waits for events on fd until the deadline: GENCACHE_OK, GENCACHE_ETIMEDOUT, EUNAVAILABLE. */
static int wait_fd(int fd, short events, uint64_t deadline_ns)
{
    for (;;) {
        uint64_t now = gencache__redis_now_ns();
        if (now >= deadline_ns)
            return GENCACHE_ETIMEDOUT;
        uint64_t ms = (deadline_ns - now + 999999) / 1000000;
        struct pollfd p = {.fd = fd, .events = events};
        int n = poll(&p, 1, ms > 60000 ? 60000 : (int)ms);
        if (n > 0)
            return (p.revents & (POLLERR | POLLNVAL)) && !(p.revents & POLLIN)
                       ? GENCACHE_EUNAVAILABLE
                       : GENCACHE_OK;
        if (n < 0 && errno != EINTR)
            return GENCACHE_EUNAVAILABLE;
    }
}

void gencache__redis_disconnect(gencache__redis_conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    if (c->reader)
        redisReaderFree(c->reader);
    c->reader = NULL;
    c->len = 0;
}

int gencache__redis_connect(gencache__redis_node *r, gencache__redis_conn *c, uint64_t deadline_ns)
{
    gencache__redis_disconnect(c);
    c->reader = redisReaderCreate();
    if (!c->reader)
        return GENCACHE_ENOMEM;
    /* Keep the reader's buffer across large replies instead of freeing it after each. */
    c->reader->maxbuf = 0;
    int fd = socket(r->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return GENCACHE_EUNAVAILABLE;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int rc = GENCACHE_OK;
    if (connect(fd, (struct sockaddr *)&r->addr, r->addr_len) != 0) {
        if (errno != EINPROGRESS) {
            rc = GENCACHE_EUNAVAILABLE;
        } else {
            rc = wait_fd(fd, POLLOUT, deadline_ns);
            int err = 0;
            socklen_t len = sizeof err;
            if (rc == GENCACHE_OK && (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err))
                rc = GENCACHE_EUNAVAILABLE;
        }
    }
    if (rc != GENCACHE_OK) {
        close(fd);
        return rc;
    }
    c->fd = fd;
    if (r->db) {
        char db[16];
        snprintf(db, sizeof db, "%d", r->db);
        gencache__redis_arg a[2] = {{{"SELECT"}, {6}}, {{db}, {strlen(db)}}};
        redisReply *rep = NULL;
        rc = gencache__redis_command(c, deadline_ns, &rep, 2, a);
        if (rc == GENCACHE_OK && rep->type != REDIS_REPLY_STATUS)
            rc = GENCACHE_EUNAVAILABLE;
        if (rep)
            freeReplyObject(rep);
        if (rc != GENCACHE_OK)
            gencache__redis_disconnect(c);
    }
    return rc;
}

int gencache__redis_send(gencache__redis_conn *c, int argc, const gencache__redis_arg *argv,
                         uint64_t deadline_ns)
{
    /* Per argument: "$<len>\r\n", up to two parts, "\r\n". */
    enum { MAX_ARGS = 16 };
    if (argc > MAX_ARGS || c->fd < 0)
        return GENCACHE_EUNAVAILABLE;
    char heads[MAX_ARGS + 1][32];
    struct iovec iov[1 + 4 * MAX_ARGS];
    int n = 0;
    iov[n].iov_base = heads[0];
    iov[n++].iov_len = (size_t)snprintf(heads[0], sizeof heads[0], "*%d\r\n", argc);
    for (int i = 0; i < argc; i++) {
        size_t len = argv[i].n[0] + argv[i].n[1];
        iov[n].iov_base = heads[i + 1];
        iov[n++].iov_len = (size_t)snprintf(heads[i + 1], sizeof heads[i + 1], "$%zu\r\n", len);
        for (int j = 0; j < 2; j++) {
            if (argv[i].n[j]) {
                iov[n].iov_base = (void *)argv[i].p[j];
                iov[n++].iov_len = argv[i].n[j];
            }
        }
        iov[n].iov_base = (void *)"\r\n";
        iov[n++].iov_len = 2;
    }
    struct iovec *v = iov;
    int left = n;
    while (left > 0) {
        struct msghdr msg = {.msg_iov = v, .msg_iovlen = (size_t)left};
        ssize_t w = sendmsg(c->fd, &msg, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                return GENCACHE_EUNAVAILABLE;
            int rc = wait_fd(c->fd, POLLOUT, deadline_ns);
            if (rc != GENCACHE_OK)
                return rc;
            continue;
        }
        size_t done = (size_t)w;
        while (left > 0 && done >= v->iov_len) {
            done -= v->iov_len;
            v++;
            left--;
        }
        if (left > 0) {
            v->iov_base = (char *)v->iov_base + done;
            v->iov_len -= done;
        }
    }
    return GENCACHE_OK;
}

/* Reads what is available (waiting until the deadline for something) into buf. */
static int read_some(gencache__redis_conn *c, void *buf, size_t cap, size_t *got,
                     uint64_t deadline_ns)
{
    for (;;) {
        ssize_t n = read(c->fd, buf, cap);
        if (n > 0) {
            *got = (size_t)n;
            return GENCACHE_OK;
        }
        if (n == 0)
            return GENCACHE_EUNAVAILABLE; /* closed by the server */
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return GENCACHE_EUNAVAILABLE;
        int rc = wait_fd(c->fd, POLLIN, deadline_ns);
        if (rc != GENCACHE_OK)
            return rc;
    }
}

int gencache__redis_reply(gencache__redis_conn *c, uint64_t deadline_ns, redisReply **out)
{
    *out = NULL;
    char buf[16384];
    for (;;) {
        void *rep = NULL;
        if (redisReaderGetReply(c->reader, &rep) != REDIS_OK)
            return GENCACHE_EPARSE;
        if (rep) {
            *out = rep;
            return GENCACHE_OK;
        }
        size_t got;
        int rc = read_some(c, buf, sizeof buf, &got, deadline_ns);
        if (rc != GENCACHE_OK)
            return rc;
        if (redisReaderFeed(c->reader, buf, got) != REDIS_OK)
            return GENCACHE_ENOMEM;
    }
}

int gencache__redis_command(gencache__redis_conn *c, uint64_t deadline_ns, redisReply **out,
                            int argc, const gencache__redis_arg *argv)
{
    *out = NULL;
    int rc = gencache__redis_send(c, argc, argv, deadline_ns);
    if (rc == GENCACHE_OK)
        rc = gencache__redis_reply(c, deadline_ns, out);
    return rc;
}

/* Makes c->buf hold at least n unconsumed bytes (from c->pos), reading more as needed. */
static int buffer_at_least(gencache__redis_conn *c, size_t n, uint64_t deadline_ns)
{
    if (c->pos && c->len - c->pos < n) {
        memmove(c->buf, c->buf + c->pos, c->len - c->pos);
        c->len -= c->pos;
        c->pos = 0;
    }
    if (c->cap < n || c->cap < READ_CHUNK) {
        size_t cap = c->cap ? c->cap : READ_CHUNK;
        while (cap < n)
            cap *= 2;
        char *b = realloc(c->buf, cap);
        if (!b)
            return GENCACHE_ENOMEM;
        c->buf = b;
        c->cap = cap;
    }
    while (c->len - c->pos < n) {
        size_t got;
        int rc = read_some(c, c->buf + c->len, c->cap - c->len, &got, deadline_ns);
        if (rc != GENCACHE_OK)
            return rc;
        c->len += got;
    }
    return GENCACHE_OK;
}

/* Consumes n more bytes of the reply: what is buffered first, then from the socket. */
static int skip_bytes(gencache__redis_conn *c, size_t n, uint64_t deadline_ns)
{
    size_t have = c->len - c->pos;
    if (have >= n) {
        c->pos += n;
        return GENCACHE_OK;
    }
    n -= have;
    c->pos = c->len = 0;
    while (n) {
        size_t got;
        int rc = read_some(c, c->buf, n < c->cap ? n : c->cap, &got, deadline_ns);
        if (rc != GENCACHE_OK)
            return rc;
        n -= got;
    }
    return GENCACHE_OK;
}

/* The next reply line (without CRLF) at *line, *len; consumed. */
static int next_line(gencache__redis_conn *c, uint64_t deadline_ns, const char **line, size_t *len)
{
    size_t want = 1;
    for (;;) {
        int rc = buffer_at_least(c, want, deadline_ns);
        if (rc != GENCACHE_OK)
            return rc;
        char *eol = memchr(c->buf + c->pos, '\n', c->len - c->pos);
        if (eol) {
            *line = c->buf + c->pos;
            *len = (size_t)(eol - *line);
            if (*len && (*line)[*len - 1] == '\r')
                (*len)--;
            c->pos = (size_t)(eol - c->buf) + 1;
            return GENCACHE_OK;
        }
        if (c->len - c->pos > 4096)
            return GENCACHE_EPARSE;
        want = c->len - c->pos + 1;
    }
}

/* A bulk string holding a record and a value, received into a new entry. */
static int read_bulk_entry(const gencache_allocator *alloc, gencache__seal *seal,
                           gencache__redis_conn *c, uint64_t deadline_ns, gencache__entry **out)
{
    const char *line;
    size_t llen;
    int rc = next_line(c, deadline_ns, &line, &llen);
    if (rc != GENCACHE_OK)
        return rc;
    if (llen >= 2 && line[0] == '$' && line[1] == '-')
        return GENCACHE_ENOTFOUND;
    if (llen < 2 || line[0] != '$')
        return GENCACHE_EPARSE;
    char num[24];
    if (llen - 1 >= sizeof num)
        return GENCACHE_EPARSE;
    memcpy(num, line + 1, llen - 1);
    num[llen - 1] = '\0';
    char *end;
    errno = 0;
    unsigned long long total = strtoull(num, &end, 10);
    if (errno || *end || total > ((size_t)1 << 40))
        return GENCACHE_EPARSE;

    /* The record's length is at a fixed offset; buffer the whole record. */
    size_t rec_len = 0;
    if (total >= GENCACHE__CODEC_MIN_LEN) {
        rc = buffer_at_least(c, GENCACHE__CODEC_MIN_LEN, deadline_ns);
        if (rc != GENCACHE_OK)
            return rc;
        const unsigned char *p = (const unsigned char *)c->buf + c->pos + GENCACHE__CODEC_OFF_LEN;
        rec_len = (size_t)p[0] | (size_t)p[1] << 8 | (size_t)p[2] << 16 | (size_t)p[3] << 24;
    }
    gencache__codec_meta m;
    int drc = GENCACHE_ECORRUPT;
    if (rec_len >= GENCACHE__CODEC_MIN_LEN && rec_len <= total &&
        rec_len <= 5u * GENCACHE__CODEC_STR_MAX + 4096u) {
        rc = buffer_at_least(c, rec_len, deadline_ns);
        if (rc != GENCACHE_OK)
            return rc;
        drc = gencache__codec_decode_sealed(seal, alloc, c->buf + c->pos, rec_len, &m);
        if (drc == GENCACHE_OK && m.size != total - rec_len) {
            gencache__codec_meta_clear(&m);
            drc = GENCACHE_ECORRUPT;
        }
    }
    gencache__entry *e = NULL;
    if (drc == GENCACHE_OK) {
        drc = gencache__codec_entry_new(alloc, &m, true, &e);
        if (drc != GENCACHE_OK)
            gencache__codec_meta_clear(&m);
    }
    if (drc != GENCACHE_OK) {
        /* Consume the rest of the string so the connection stays in step. */
        rc = skip_bytes(c, (size_t)total + 2, deadline_ns);
        if (rc != GENCACHE_OK)
            return rc;
        if (drc == GENCACHE_EPERM)
            return GENCACHE_ENOTFOUND; /* sealed under a key we lack: counted, left for others */
        return drc == GENCACHE_ENOMEM ? GENCACHE_ENOMEM : GENCACHE_ECORRUPT;
    }
    c->pos += rec_len;
    /* Value bytes already buffered, then the rest straight from the socket into the entry. */
    size_t size = e->size, filled = c->len - c->pos;
    if (filled > size)
        filled = size;
    memcpy(e->value, c->buf + c->pos, filled);
    c->pos += filled;
    if (filled < size)
        c->pos = c->len = 0;
    while (filled < size) {
        size_t got;
        rc = read_some(c, e->value + filled, size - filled, &got, deadline_ns);
        if (rc != GENCACHE_OK) {
            gencache__entry_release(e);
            gencache__codec_meta_clear(&m);
            return rc;
        }
        filled += got;
    }
    rc = skip_bytes(c, 2, deadline_ns); /* CRLF */
    uint64_t sum = 0;
    if (rc == GENCACHE_OK) {
        /* A sealed value is decrypted in place; the caller then checks the plaintext's XXH3. */
        drc = gencache__codec_value_open(seal, &m, e->value, e->size, &sum);
        e->checksum = sum;
        if (drc != GENCACHE_OK)
            rc = drc == GENCACHE_EPERM ? GENCACHE_ENOTFOUND : GENCACHE_ECORRUPT;
    }
    gencache__codec_meta_clear(&m);
    if (rc != GENCACHE_OK) {
        gencache__entry_release(e);
        return rc;
    }
    *out = e;
    return GENCACHE_OK;
}

static bool line_is(const char *line, size_t len, const char *want)
{
    return len == strlen(want) && memcmp(line, want, len) == 0;
}

/* An error line ("-..."): a redirect fills *redir; anything else is only noted. */
static void note_error(const char *line, size_t len, gencache__redis_redirect *redir, bool *err)
{
    if (!*err && redir->kind == GENCACHE__REDIS_NO_REDIRECT)
        gencache__redis_redirect_parse(line + 1, len - 1, redir);
    *err = true;
}

static int read_entry(const gencache_allocator *alloc, gencache__seal *seal,
                      gencache__redis_conn *c, bool asking, uint64_t deadline_ns,
                      gencache__entry **out, bool *noscript, int64_t *pttl,
                      gencache__redis_redirect *redir)
{
    *out = NULL;
    *noscript = false;
    *pttl = -2;
    redir->kind = GENCACHE__REDIS_NO_REDIRECT;
    c->pos = c->len = 0;
    const char *line;
    size_t len;
    /* [ASKING,] MULTI, GET and EVALSHA were accepted, or refused at queueing time (a cluster
     * node that does not serve the key, a cluster that is down): then EXEC aborts. */
    static const char *const acks[] = {"+OK", "+OK", "+QUEUED", "+QUEUED"};
    bool queue_error = false;
    for (int i = asking ? 0 : 1; i < 4; i++) {
        int rc = next_line(c, deadline_ns, &line, &len);
        if (rc != GENCACHE_OK)
            return rc;
        if (i >= 2 && len >= 1 && line[0] == '-')
            note_error(line, len, redir, &queue_error);
        else if (!line_is(line, len, acks[i]))
            return GENCACHE_EPARSE;
    }
    /* ... and EXEC ran both: [value or nil, refresh result or error], or refused. */
    int rc = next_line(c, deadline_ns, &line, &len);
    if (rc != GENCACHE_OK)
        return rc;
    if (len >= 1 && line[0] == '-') {
        bool exec_error = false;
        note_error(line, len, redir, &exec_error);
        if (c->pos != c->len)
            return GENCACHE_EPARSE;
        return redir->kind != GENCACHE__REDIS_NO_REDIRECT ? GENCACHE_ENOTFOUND : GENCACHE_EIO;
    }
    if (queue_error || !line_is(line, len, "*2"))
        return GENCACHE_EPARSE;
    int erc = read_bulk_entry(alloc, seal, c, deadline_ns, out);
    if (erc != GENCACHE_OK && erc != GENCACHE_ENOTFOUND && erc != GENCACHE_ECORRUPT)
        return erc;
    rc = next_line(c, deadline_ns, &line, &len);
    if (rc == GENCACHE_OK && len >= 9 && memcmp(line, "-NOSCRIPT", 9) == 0)
        *noscript = true;
    else if (rc == GENCACHE_OK && (len < 2 || len > 22 || line[0] != ':'))
        rc = GENCACHE_EPARSE;
    else if (rc == GENCACHE_OK) {
        char num[24];
        memcpy(num, line + 1, len - 1);
        num[len - 1] = '\0';
        *pttl = strtoll(num, NULL, 10);
    }
    if (rc == GENCACHE_OK && c->pos != c->len)
        rc = GENCACHE_EPARSE; /* more than one reply's worth: out of step */
    if (rc != GENCACHE_OK) {
        gencache__entry_release(*out);
        *out = NULL;
        return rc;
    }
    return erc;
}

int gencache__redis_read_entry(const gencache_allocator *alloc, gencache__seal *seal,
                               gencache__redis_conn *c, bool asking, uint64_t deadline_ns,
                               gencache__entry **out, bool *noscript, int64_t *pttl,
                               gencache__redis_redirect *redir)
{
    int rc = read_entry(alloc, seal, c, asking, deadline_ns, out, noscript, pttl, redir);
    /* A redirect noted in a reply that then broke off is not one to follow: the connection is
     * closed and the call fails as any broken reply does. */
    if (rc != GENCACHE_ENOTFOUND)
        redir->kind = GENCACHE__REDIS_NO_REDIRECT;
    return rc;
}
