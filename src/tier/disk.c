/*
 * disk.c: opening and closing the disk tier. A data directory holds a FORMAT file (the on-disk
 * format version), a LOCK file that one open tier holds with flock() for its whole life (a second
 * opener, in this process or another, gets GENCACHE_EBUSY), the LMDB index in index/ and large
 * values in values/. Opening does constant work in the index (totals are stored, not recounted)
 * plus a sweep of files a crash may have left behind, so a big tier opens fast.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tier/disk.h"
#include "tier/disk_guard.h"

#define FORMAT_NAME   "FORMAT"
#define FORMAT_PREFIX "gencache-disk-format "

void gencache__disk_tuning_init(gencache__disk_tuning *t)
{
    t->inline_max = 4u << 20;
    t->durable = true;
    t->sync_meta = false;
    t->map_size = 1ull << 40;
}

uint64_t gencache__disk_charge(uint64_t size, size_t record_len)
{
    return size + record_len + GENCACHE__DISK_LOC_LEN + 128u;
}

int gencache__disk_map_mdb(gencache__disk_tier *d, int rc, const char *what)
{
    if (rc == MDB_SUCCESS)
        return GENCACHE_OK;
    if (rc == MDB_NOTFOUND)
        return GENCACHE_ENOTFOUND;
    gencache__log_msg(d->log, GENCACHE_LOG_ERROR, "disk tier %s: %s: %s", d->path, what,
                      mdb_strerror(rc));
    switch (rc) {
    case MDB_MAP_FULL:
    case ENOSPC:
    case EDQUOT:
    case EFBIG:
        return GENCACHE_ENOSPC;
    case ENOMEM:
        return GENCACHE_ENOMEM;
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
    case MDB_INVALID:
        return GENCACHE_ECORRUPT;
    case MDB_VERSION_MISMATCH:
        return GENCACHE_EVERSION;
    case EACCES:
    case EPERM:
    case EROFS:
        return GENCACHE_EPERM;
    default:
        return GENCACHE_EIO;
    }
}

int gencache__disk_map_errno(gencache__disk_tier *d, int err, const char *what, const char *path)
{
    gencache__log_msg(d->log, GENCACHE_LOG_ERROR, "disk tier: %s %s: %s", what, path,
                      strerror(err));
    switch (err) {
    case ENOSPC:
    case EDQUOT:
    case EFBIG:
        return GENCACHE_ENOSPC;
    case ENOMEM:
        return GENCACHE_ENOMEM;
    case ENOENT:
        return GENCACHE_ENOTFOUND;
    case EACCES:
    case EPERM:
    case EROFS:
        return GENCACHE_EPERM;
    default:
        return GENCACHE_EIO;
    }
}

/* mkdir -p: creates path and its missing parents. */
static int make_dirs(const char *path)
{
    char buf[PATH_MAX];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(buf, path, n + 1);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST)
        return -1;
    return 0;
}

int gencache__disk_fsync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    int err = errno;
    close(fd);
    errno = err;
    return rc;
}

/* Writes the FORMAT file of this build's format: a temporary file, fsync, rename, and a flush of
 * the directory, so the file is either the old one or the new one, whole. */
static int write_format(gencache__disk_tier *d)
{
    char path[PATH_MAX], tmp[PATH_MAX];
    snprintf(path, sizeof path, "%s/" FORMAT_NAME, d->path);
    snprintf(tmp, sizeof tmp, "%s/" FORMAT_NAME ".tmp", d->path);
    FILE *f = fopen(tmp, "we");
    if (!f)
        return gencache__disk_map_errno(d, errno, "cannot create", tmp);
    int wr = fprintf(f, FORMAT_PREFIX "%d\n", GENCACHE__DISK_FORMAT);
    int fl = fflush(f);
    int sy = d->tune.durable ? fsync(fileno(f)) : 0;
    int err = errno;
    fclose(f);
    if (wr < 0 || fl != 0 || sy != 0) {
        unlink(tmp);
        return gencache__disk_map_errno(d, err, "cannot write", tmp);
    }
    if (rename(tmp, path) != 0 || (d->tune.durable && gencache__disk_fsync_dir(d->path) != 0)) {
        err = errno;
        unlink(tmp);
        return gencache__disk_map_errno(d, err, "cannot install", path);
    }
    return GENCACHE_OK;
}

/* Reads the FORMAT file into *format (1 or 2, the two this build reads), or writes it for a new
 * directory. */
static int check_format(gencache__disk_tier *d, int *format)
{
    char path[PATH_MAX], index[PATH_MAX];
    snprintf(path, sizeof path, "%s/" FORMAT_NAME, d->path);
    FILE *f = fopen(path, "re");
    if (f) {
        char line[128] = "";
        bool ok = fgets(line, sizeof line, f) != NULL;
        fclose(f);
        char *end = NULL;
        long v = 0;
        size_t plen = strlen(FORMAT_PREFIX);
        if (ok && strncmp(line, FORMAT_PREFIX, plen) == 0) {
            errno = 0;
            v = strtol(line + plen, &end, 10);
            ok = errno == 0 && end != line + plen && (*end == '\n' || *end == '\0');
        } else {
            ok = false;
        }
        if (!ok || v < 1 || v > GENCACHE__DISK_FORMAT) {
            gencache__log_msg(d->log, GENCACHE_LOG_ERROR,
                              "disk tier %s: unsupported format (%s says \"%.*s\"; this build "
                              "reads formats 1 to %d)",
                              d->path, path, (int)strcspn(line, "\n"), line, GENCACHE__DISK_FORMAT);
            return GENCACHE_EVERSION;
        }
        *format = (int)v;
        return GENCACHE_OK;
    }
    if (errno != ENOENT)
        return gencache__disk_map_errno(d, errno, "cannot read", path);
    /* No FORMAT file: only an empty (new) directory may be initialized. */
    snprintf(index, sizeof index, "%s/index/data.mdb", d->path);
    if (access(index, F_OK) == 0) {
        gencache__log_msg(d->log, GENCACHE_LOG_ERROR,
                          "disk tier %s: index present but no FORMAT file: refusing to guess "
                          "the format",
                          d->path);
        return GENCACHE_EVERSION;
    }
    *format = GENCACHE__DISK_FORMAT;
    return write_format(d);
}

static int take_lock(gencache__disk_tier *d)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/LOCK", d->path);
    d->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (d->lock_fd < 0)
        return gencache__disk_map_errno(d, errno, "cannot open lock file", path);
    if (flock(d->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        int err = errno;
        close(d->lock_fd);
        d->lock_fd = -1;
        if (err == EWOULDBLOCK) {
            gencache__log_msg(d->log, GENCACHE_LOG_ERROR,
                              "disk tier %s: the directory is in use by another cache (%s is "
                              "locked); one directory serves one open cache at a time",
                              d->path, path);
            return GENCACHE_EBUSY;
        }
        return gencache__disk_map_errno(d, err, "cannot lock", path);
    }
    return GENCACHE_OK;
}

/* One flush per commit (the data pages; the meta page goes out with the next commit's flush,
 * or gencache__disk_sync()), two with sync_meta, none without durability. */
static unsigned env_sync_flags(const gencache__disk_tuning *t)
{
    if (!t->durable)
        return MDB_NOSYNC;
    return t->sync_meta ? 0 : MDB_NOMETASYNC;
}

void gencache__disk_sync(gencache__disk_tier *d)
{
    if (!d->tune.durable || d->tune.sync_meta || atomic_exchange(&d->unsynced, 0) == 0)
        return;
    int rc = mdb_env_sync(d->env, 1);
    if (rc != MDB_SUCCESS) {
        atomic_fetch_add(&d->unsynced, 1);
        atomic_fetch_add(&d->backend_errors, 1);
        gencache__disk_map_mdb(d, rc, "cannot sync");
    }
}

static int read_u64(MDB_txn *txn, MDB_dbi dbi, const char *name, uint64_t *out)
{
    MDB_val k = {strlen(name), (void *)name}, v;
    *out = 0;
    int rc = mdb_get(txn, dbi, &k, &v);
    if (rc == MDB_SUCCESS && v.mv_size == 8)
        memcpy(out, v.mv_data, 8);
    return rc == MDB_NOTFOUND ? MDB_SUCCESS : rc;
}

/* The totals record of the main database (absent in a new index: zeros). */
static int read_totals(MDB_txn *txn, MDB_dbi main, uint64_t totals[2])
{
    MDB_val k = {sizeof GENCACHE__DISK_TOTALS_KEY - 1, (void *)GENCACHE__DISK_TOTALS_KEY}, v;
    totals[0] = totals[1] = 0;
    int rc = mdb_get(txn, main, &k, &v);
    if (rc == MDB_SUCCESS && v.mv_size == 2 * sizeof(uint64_t))
        memcpy(totals, v.mv_data, 2 * sizeof(uint64_t));
    return rc == MDB_NOTFOUND ? MDB_SUCCESS : rc;
}

/* Format 1 kept the totals in a table named "info": they move to the main database's record
 * and the table is dropped, in the transaction that opens the index. That runs whatever FORMAT
 * says (without the table it does nothing): the index describes itself, and without durability
 * a power loss can leave FORMAT 2 over an index that still has the table. */
static int upgrade_totals(MDB_txn *txn, MDB_dbi main, uint64_t totals[2])
{
    MDB_dbi info;
    int rc = mdb_dbi_open(txn, "info", 0, &info);
    if (rc == MDB_NOTFOUND)
        return MDB_SUCCESS;
    if (rc == MDB_SUCCESS)
        rc = read_u64(txn, info, "bytes", &totals[0]);
    if (rc == MDB_SUCCESS)
        rc = read_u64(txn, info, "pinned", &totals[1]);
    MDB_val k = {sizeof GENCACHE__DISK_TOTALS_KEY - 1, (void *)GENCACHE__DISK_TOTALS_KEY};
    MDB_val v = {2 * sizeof(uint64_t), totals};
    if (rc == MDB_SUCCESS)
        rc = mdb_put(txn, main, &k, &v, 0);
    if (rc == MDB_SUCCESS)
        rc = mdb_drop(txn, info, 1);
    return rc;
}

bool gencache__disk_index_whole(gencache__disk_tier *d, uint64_t *have, uint64_t *need)
{
    MDB_envinfo info;
    struct stat sb;
    *have = *need = 0;
    if (!d->page_size || mdb_env_info(d->env, &info) != MDB_SUCCESS || fstat(d->index_fd, &sb) != 0)
        return true;
    *have = (uint64_t)sb.st_size;
    *need = ((uint64_t)info.me_last_pgno + 1) * d->page_size;
    return *have >= *need;
}

static int open_index(gencache__disk_tier *d)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/index", d->path);
    if (make_dirs(path) != 0)
        return gencache__disk_map_errno(d, errno, "cannot create", path);
    /* The map is address space, not disk; where the system refuses a large mapping (ulimit -v,
     * strict overcommit), try smaller ones down to 1 GiB. */
    int rc = ENOMEM;
    for (uint64_t map = d->tune.map_size; rc == ENOMEM && map >= (1ull << 30); map /= 4) {
        if (d->env)
            mdb_env_close(d->env);
        d->env = NULL;
        rc = mdb_env_create(&d->env);
        if (rc == MDB_SUCCESS)
            rc = mdb_env_set_maxdbs(d->env, 8);
        if (rc == MDB_SUCCESS)
            rc = mdb_env_set_maxreaders(d->env, 512);
        if (rc == MDB_SUCCESS)
            rc = mdb_env_set_mapsize(d->env, (size_t)map);
        if (rc == MDB_SUCCESS)
            rc = mdb_env_open(d->env, path, MDB_NOTLS | env_sync_flags(&d->tune), 0644);
    }
    if (rc != MDB_SUCCESS)
        return gencache__disk_map_mdb(d, rc, "cannot open index");
    /* Reader slots of a process killed mid-read would pin old pages forever. */
    int dead = 0;
    mdb_reader_check(d->env, &dead);

    /* LMDB reads its pages through the map: a data.mdb shorter than the pages its meta page
     * names (a copy cut short, a file truncated by hand) would kill the process with SIGBUS on
     * the first read past the end. Such an index is refused here, with a reason. */
    MDB_stat est;
    d->page_size = 0;
    if (mdb_env_get_fd(d->env, &d->index_fd) == MDB_SUCCESS &&
        mdb_env_stat(d->env, &est) == MDB_SUCCESS)
        d->page_size = est.ms_psize;
    uint64_t have, need;
    if (!gencache__disk_index_whole(d, &have, &need)) {
        gencache__log_msg(d->log, GENCACHE_LOG_ERROR,
                          "disk tier %s: %s/data.mdb is %llu bytes, its pages need %llu: the file "
                          "was truncated; refusing to open it",
                          d->path, path, (unsigned long long)have, (unsigned long long)need);
        return GENCACHE_ECORRUPT;
    }

    MDB_txn *txn;
    rc = mdb_txn_begin(d->env, NULL, 0, &txn);
    if (rc != MDB_SUCCESS)
        return gencache__disk_map_mdb(d, rc, "cannot begin");
    static const char *names[] = {"meta", "vals", "lru", "exp", "blobs"};
    MDB_dbi *dbis[] = {&d->meta, &d->vals, &d->lru, &d->exp, &d->blobs};
    rc = mdb_dbi_open(txn, NULL, 0, &d->main);
    for (int i = 0; i < 5 && rc == MDB_SUCCESS; i++)
        rc = mdb_dbi_open(txn, names[i], MDB_CREATE, dbis[i]);
    uint64_t totals[2] = {0, 0}; /* bytes, pinned entries */
    MDB_stat st = {0};
    if (rc == MDB_SUCCESS)
        rc = read_totals(txn, d->main, totals);
    if (rc == MDB_SUCCESS)
        rc = upgrade_totals(txn, d->main, totals);
    if (rc == MDB_SUCCESS)
        rc = mdb_stat(txn, d->meta, &st);
    if (rc != MDB_SUCCESS) {
        mdb_txn_abort(txn);
        return gencache__disk_map_mdb(d, rc, "cannot read index");
    }
    rc = mdb_txn_commit(txn);
    if (rc != MDB_SUCCESS)
        return gencache__disk_map_mdb(d, rc, "cannot commit");
    atomic_store(&d->bytes, totals[0]);
    atomic_store(&d->pinned, totals[1]);
    atomic_store(&d->entries, (uint64_t)st.ms_entries);
    return GENCACHE_OK;
}

/* After open_index() moved an older index to this format: the index's commit is made durable
 * first, then the FORMAT file says so. A crash in between leaves the old FORMAT over an index of
 * the new layout, which this build reads (it prefers the totals record) and upgrades again. */
static int upgrade_format(gencache__disk_tier *d)
{
    if (d->tune.durable) {
        int rc = mdb_env_sync(d->env, 1);
        if (rc != MDB_SUCCESS)
            return gencache__disk_map_mdb(d, rc, "cannot sync");
    }
    int rc = write_format(d);
    if (rc == GENCACHE_OK)
        gencache__log_msg(d->log, GENCACHE_LOG_INFO, "disk tier %s: upgraded to format %d", d->path,
                          GENCACHE__DISK_FORMAT);
    return rc;
}

static void disk_stats(gencache__tier *t, gencache_tier_stats *out)
{
    gencache__disk_tier *d = (gencache__disk_tier *)t;
    memset(out, 0, sizeof *out);
    out->tier = "disk";
    out->bytes = atomic_load(&d->bytes);
    out->entries = atomic_load(&d->entries);
    out->max_bytes = d->max_bytes;
    out->max_entries = d->max_entries;
    out->pinned_entries = atomic_load(&d->pinned);
    out->evictions_capacity = atomic_load(&d->ev_capacity);
    out->evictions_expired = atomic_load(&d->ev_expired);
    out->evictions_corrupt = atomic_load(&d->ev_corrupt);
    out->backend_errors = atomic_load(&d->backend_errors);
    out->crypt_rejected = atomic_load(&d->seal.rejected);
}

static void disk_free(gencache__disk_tier *d)
{
    gencache__disk_blob_pool_drain(d);
    pthread_mutex_destroy(&d->pool_lock);
    if (d->env)
        mdb_env_close(d->env);
    if (d->lock_fd >= 0)
        close(d->lock_fd); /* releases the flock */
    pthread_mutex_destroy(&d->touch_lock);
    for (int i = 0; i < GENCACHE__DISK_STRIPES; i++)
        pthread_mutex_destroy(&d->stripes[i]);
    gencache__free(d->alloc, d->touches);
    gencache__free(d->alloc, d->values_path);
    gencache__free(d->alloc, d->path);
    gencache__free(d->alloc, d);
}

/* ---- every operation inside a SIGBUS guard (disk_guard.c) ---- */

/* Runs `call` under a guard; `failed` is what the operation answers on a disabled tier. */
#define GUARDED(d, failed, call)                                                                   \
    do {                                                                                           \
        if (atomic_load(&(d)->broken))                                                             \
            return (failed);                                                                       \
        gencache__disk_guard g;                                                                    \
        memset(&g, 0, sizeof g);                                                                   \
        gencache__disk_guard_push(&g, (d));                                                        \
        if (sigsetjmp(g.jb, 0)) {                                                                  \
            gencache__disk_guard_fault(&g);                                                        \
            return (failed);                                                                       \
        }                                                                                          \
        int rc_ = (call);                                                                          \
        gencache__disk_guard_pop(&g);                                                              \
        return rc_;                                                                                \
    } while (0)

static int guarded_get(gencache__tier *t, const char *key, uint64_t hash, uint64_t now_ms,
                       bool touch, gencache__entry **out)
{
    gencache__disk_tier *d = (gencache__disk_tier *)t;
    if (out)
        *out = NULL;
    GUARDED(d, GENCACHE_ENOTFOUND, gencache__disk_get(t, key, hash, now_ms, touch, out));
}

static int guarded_put(gencache__tier *t, gencache__entry *e, uint64_t now_ms)
{
    GUARDED((gencache__disk_tier *)t, GENCACHE_EIO, gencache__disk_put(t, e, now_ms));
}

static int put_many_rc(gencache__tier *t, gencache__entry *const *es, size_t n, uint64_t now_ms,
                       int *rcs)
{
    gencache__disk_put_many(t, es, n, now_ms, rcs);
    return GENCACHE_OK;
}

static int guarded_put_many_rc(gencache__tier *t, gencache__entry *const *es, size_t n,
                               uint64_t now_ms, int *rcs)
{
    GUARDED((gencache__disk_tier *)t, GENCACHE_EIO, put_many_rc(t, es, n, now_ms, rcs));
}

static void guarded_put_many(gencache__tier *t, gencache__entry *const *es, size_t n,
                             uint64_t now_ms, int *rcs)
{
    for (size_t i = 0; i < n; i++)
        rcs[i] = GENCACHE_EIO; /* what a fault leaves */
    if (guarded_put_many_rc(t, es, n, now_ms, rcs) != GENCACHE_OK)
        for (size_t i = 0; i < n; i++)
            rcs[i] = GENCACHE_EIO;
}

static int guarded_del(gencache__tier *t, const char *key, uint64_t hash)
{
    GUARDED((gencache__disk_tier *)t, GENCACHE_EIO, gencache__disk_del(t, key, hash));
}

static int guarded_remove_if(gencache__tier *t, gencache__entry_pred pred, void *userdata,
                             uint64_t *count)
{
    if (count)
        *count = 0;
    GUARDED((gencache__disk_tier *)t, GENCACHE_EIO,
            gencache__disk_remove_if(t, pred, userdata, count));
}

static int guarded_expire(gencache__tier *t, uint64_t now_ms, uint64_t *count)
{
    if (count)
        *count = 0;
    GUARDED((gencache__disk_tier *)t, GENCACHE_EIO, gencache__disk_expire(t, now_ms, count));
}

static int flush_and_sync(gencache__disk_tier *d)
{
    /* Access records not yet in the index would otherwise be lost (LRU order only). */
    gencache__disk_flush(d);
    gencache__disk_sync(d);
    return GENCACHE_OK;
}

static int guarded_flush_and_sync(gencache__disk_tier *d)
{
    GUARDED(d, GENCACHE_EIO, flush_and_sync(d));
}

static void disk_close(gencache__tier *t)
{
    if (!t)
        return;
    gencache__disk_tier *d = (gencache__disk_tier *)t;
    guarded_flush_and_sync(d);
    disk_free(d);
}

static const gencache__tier_ops disk_ops = {
    .name = "disk",
    .caps = GENCACHE__TIER_PERSISTENT,
    .get = guarded_get,
    .put = guarded_put,
    .del = guarded_del,
    .remove_if = guarded_remove_if,
    .expire = guarded_expire,
    .stats = disk_stats,
    .close = disk_close,
    .put_many = guarded_put_many,
};

int gencache__disk_tier_open_ex(const gencache__disk_options *opts,
                                const gencache__disk_tuning *tune, gencache__tier **out)
{
    if (out)
        *out = NULL;
    if (!opts || !out || !opts->path || !*opts->path)
        return GENCACHE_EINVAL;
    gencache__disk_tier *d = gencache__calloc(opts->alloc, 1, sizeof *d);
    if (!d)
        return GENCACHE_ENOMEM;
    d->base.ops = &disk_ops;
    d->alloc = opts->alloc;
    d->log = opts->log;
    d->lock_fd = -1;
    d->max_bytes = opts->max_bytes;
    d->max_entries = opts->max_entries;
    d->seal.keys = opts->keys;
    if (tune)
        d->tune = *tune;
    else
        gencache__disk_tuning_init(&d->tune);
    pthread_mutex_init(&d->touch_lock, NULL);
    pthread_mutex_init(&d->pool_lock, NULL);
    for (int i = 0; i < GENCACHE__DISK_STRIPES; i++)
        pthread_mutex_init(&d->stripes[i], NULL);
    size_t plen = strlen(opts->path);
    while (plen > 1 && opts->path[plen - 1] == '/')
        plen--;
    d->path = gencache__malloc(d->alloc, plen + 1);
    d->values_path = gencache__malloc(d->alloc, plen + sizeof "/values");
    d->touches = gencache__calloc(d->alloc, 2 * GENCACHE__DISK_TOUCH_FLUSH, sizeof *d->touches);
    if (!d->path || !d->values_path || !d->touches) {
        disk_free(d);
        return GENCACHE_ENOMEM;
    }
    memcpy(d->path, opts->path, plen);
    d->path[plen] = '\0';
    snprintf(d->values_path, plen + sizeof "/values", "%s/values", d->path);

    int rc = GENCACHE_OK;
    if (plen >= PATH_MAX - 128) {
        rc = GENCACHE_EINVAL;
    } else if (make_dirs(d->path) != 0) {
        rc = gencache__disk_map_errno(d, errno, "cannot create", d->path);
    }
    gencache__disk_guard_install();
    if (rc == GENCACHE_OK)
        rc = take_lock(d);
    int format = 0;
    if (rc == GENCACHE_OK)
        rc = check_format(d, &format);
    if (rc == GENCACHE_OK)
        rc = open_index(d);
    if (rc == GENCACHE_OK && format != GENCACHE__DISK_FORMAT)
        rc = upgrade_format(d);
    uint64_t swept = 0;
    if (rc == GENCACHE_OK)
        rc = gencache__disk_blob_sweep(d, &swept);
    if (rc != GENCACHE_OK) {
        disk_free(d);
        return rc;
    }
    if (swept)
        gencache__log_msg(d->log, GENCACHE_LOG_INFO,
                          "disk tier %s: removed %llu files left by an interrupted write", d->path,
                          (unsigned long long)swept);
    *out = &d->base;
    return GENCACHE_OK;
}

int gencache__disk_tier_open(const gencache__disk_options *opts, gencache__tier **out)
{
    return gencache__disk_tier_open_ex(opts, NULL, out);
}
