/*
 * disk_blob.c: the disk tier's large values, one file per stored value under
 * values/<first two hex digits>/<64 hex digits>, named by a random 256-bit id. Files are created
 * ahead, empty, in batches whose directory is flushed once, so a put only writes and flushes its
 * file before the write transaction that refers to it commits: a committed reference never
 * points at a torn file or a name that is not durable. A file no committed record refers to (a
 * pooled one, a put cut short by a crash, one whose commit a power loss undid) is removed by the
 * sweep at the next open. A random id rather than a hash of the bytes: hashing a 16 MiB value
 * with SHA-256 cost more than writing it (docs/internals/disk-durability.md), a fast hash could
 * be made to collide (serving one tenant's bytes for another's key), and a random name says
 * nothing about the value. Files are unlinked only after the index stopped referring to them,
 * under the id's stripe lock.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/rand.h>
#include <xxh_x86dispatch.h>

#include "tier/disk.h"

static const char hexdig[] = "0123456789abcdef";

static void hex_id(const unsigned char id[32], char out[65])
{
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hexdig[id[i] >> 4];
        out[2 * i + 1] = hexdig[id[i] & 15];
    }
    out[64] = '\0';
}

/* Creates a batch of empty files in one directory and flushes the directory once. Caller holds
 * pool_lock. */
static int refill(gencache__disk_tier *d)
{
    unsigned char ids[GENCACHE__DISK_POOL][32];
    if (RAND_bytes(&ids[0][0], sizeof ids) != 1)
        return GENCACHE_EIO;
    for (int i = 1; i < GENCACHE__DISK_POOL; i++)
        ids[i][0] = ids[0][0]; /* one directory */
    char hex[65], dir[PATH_MAX - 256], path[PATH_MAX];
    hex_id(ids[0], hex);
    snprintf(dir, sizeof dir, "%s/%.2s", d->values_path, hex);
    bool new_dir = mkdir(dir, 0755) == 0;
    if (!new_dir && errno != EEXIST)
        return gencache__disk_map_errno(d, errno, "cannot create", dir);
    size_t made = 0;
    int rc = GENCACHE_OK;
    for (; made < GENCACHE__DISK_POOL; made++) {
        hex_id(ids[made], hex);
        snprintf(path, sizeof path, "%s/%s", dir, hex);
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0) {
            rc = gencache__disk_map_errno(d, errno, "cannot create", path);
            break;
        }
        close(fd);
    }
    if (made && d->tune.durable) {
        const char *failed = dir;
        int err = 0;
        if (gencache__disk_fsync_dir(dir) != 0) {
            err = errno;
        } else if (new_dir && gencache__disk_fsync_dir(d->values_path) != 0) {
            err = errno;
            failed = d->values_path;
        }
        if (err) {
            for (size_t i = 0; i < made; i++) {
                hex_id(ids[i], hex);
                snprintf(path, sizeof path, "%s/%s", dir, hex);
                unlink(path);
            }
            return gencache__disk_map_errno(d, err, "cannot sync", failed);
        }
    }
    memcpy(d->pool, ids, made * 32);
    d->n_pool = made;
    return made ? GENCACHE_OK : rc;
}

int gencache__disk_blob_take(gencache__disk_tier *d, unsigned char id[32])
{
    pthread_mutex_lock(&d->pool_lock);
    int rc = d->n_pool ? GENCACHE_OK : refill(d);
    if (rc == GENCACHE_OK)
        memcpy(id, d->pool[--d->n_pool], 32);
    pthread_mutex_unlock(&d->pool_lock);
    return rc;
}

void gencache__disk_blob_pool_drain(gencache__disk_tier *d)
{
    char path[PATH_MAX];
    for (size_t i = 0; i < d->n_pool; i++) {
        gencache__disk_blob_path(d, d->pool[i], path, sizeof path);
        unlink(path);
    }
    d->n_pool = 0;
}

int gencache__disk_blob_of(gencache__disk_tier *d, const char *key, char *path, size_t cap)
{
    MDB_txn *txn;
    if (mdb_txn_begin(d->env, NULL, MDB_RDONLY, &txn) != MDB_SUCCESS)
        return GENCACHE_EIO;
    MDB_val k = {strlen(key), (void *)key}, v;
    int rc = GENCACHE_ENOTFOUND;
    uint32_t kind = 0;
    if (mdb_get(txn, d->meta, &k, &v) == MDB_SUCCESS && v.mv_size > GENCACHE__DISK_LOC_LEN)
        memcpy(&kind, v.mv_data, 4);
    if (kind == GENCACHE__DISK_BLOB) {
        gencache__disk_blob_path(d, (const unsigned char *)v.mv_data + 8, path, cap);
        rc = GENCACHE_OK;
    }
    mdb_txn_abort(txn);
    return rc;
}

pthread_mutex_t *gencache__disk_blob_stripe(gencache__disk_tier *d, const unsigned char id[32])
{
    return &d->stripes[id[31] % GENCACHE__DISK_STRIPES]; /* a pooled batch shares id[0] */
}

void gencache__disk_blob_path(const gencache__disk_tier *d, const unsigned char id[32], char *buf,
                              size_t cap)
{
    char hex[65];
    hex_id(id, hex);
    snprintf(buf, cap, "%s/%.2s/%s", d->values_path, hex, hex);
}

static bool referenced(gencache__disk_tier *d, const unsigned char id[32], bool *yes)
{
    MDB_txn *txn;
    *yes = false;
    if (mdb_txn_begin(d->env, NULL, MDB_RDONLY, &txn) != MDB_SUCCESS)
        return false;
    MDB_val k = {GENCACHE__DISK_BLOB_ID_LEN, (void *)id}, v;
    int rc = mdb_get(txn, d->blobs, &k, &v);
    mdb_txn_abort(txn);
    *yes = rc == MDB_SUCCESS;
    return rc == MDB_SUCCESS || rc == MDB_NOTFOUND;
}

static int write_all(int fd, const unsigned char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n > (1u << 30) ? (1u << 30) : n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int gencache__disk_blob_write(gencache__disk_tier *d, const unsigned char id[32], const void *data,
                              size_t size)
{
    char path[PATH_MAX];
    gencache__disk_blob_path(d, id, path, sizeof path);
    /* The file exists, empty, and its name is durable (gencache__disk_blob_take()): only its
     * bytes (and size) need a flush before a record may name it. */
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return gencache__disk_map_errno(d, errno, "cannot open", path);
    int rc = write_all(fd, data, size);
    if (rc == 0 && d->tune.durable)
        rc = fdatasync(fd);
    int err = errno;
    if (close(fd) != 0 && rc == 0) {
        rc = -1;
        err = errno;
    }
    if (rc != 0) {
        unlink(path);
        return gencache__disk_map_errno(d, err, "cannot write", path);
    }
    return GENCACHE_OK;
}

/* Values are read and hashed in pieces small enough to stay in the core's cache between the
 * copy and the hash: one pass over memory instead of two. */
#define HASH_CHUNK (128u << 10)

uint64_t gencache__disk_copy_hash(void *dst, const void *src, size_t n)
{
    if (n <= HASH_CHUNK) {
        memcpy(dst, src, n);
        return gencache__checksum(dst, n);
    }
    XXH3_state_t *st = XXH3_createState();
    if (!st) {
        memcpy(dst, src, n);
        return gencache__checksum(dst, n);
    }
    XXH3_64bits_reset(st);
    for (size_t off = 0; off < n; off += HASH_CHUNK) {
        size_t k = n - off < HASH_CHUNK ? n - off : HASH_CHUNK;
        memcpy((char *)dst + off, (const char *)src + off, k);
        XXH3_64bits_update_dispatch(st, (char *)dst + off, k);
    }
    uint64_t h = XXH3_64bits_digest(st);
    XXH3_freeState(st);
    return h;
}

int gencache__disk_blob_read(gencache__disk_tier *d, const unsigned char id[32], void *buf,
                             size_t size, uint64_t *hash)
{
    char path[PATH_MAX];
    gencache__disk_blob_path(d, id, path, sizeof path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return GENCACHE_ENOTFOUND;
        return gencache__disk_map_errno(d, errno, "cannot open", path);
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || (uint64_t)st.st_size != size) {
        close(fd);
        gencache__log_msg(d->log, GENCACHE_LOG_WARN, "disk tier: %s has %lld bytes, expected %zu",
                          path, (long long)st.st_size, size);
        return GENCACHE_ECORRUPT;
    }
    XXH3_state_t *hs = XXH3_createState();
    if (!hs) {
        close(fd);
        return GENCACHE_ENOMEM;
    }
    XXH3_64bits_reset(hs);
    unsigned char *p = buf;
    size_t done = 0;
    int rc = GENCACHE_OK;
    while (done < size) {
        size_t want = size - done < HASH_CHUNK ? size - done : HASH_CHUNK;
        ssize_t r = pread(fd, p + done, want, (off_t)done);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            /* A file that shrank under us is damage; a failed read is an I/O error. */
            rc = r == 0 ? GENCACHE_ECORRUPT
                        : gencache__disk_map_errno(d, errno, "cannot read", path);
            break;
        }
        XXH3_64bits_update_dispatch(hs, p + done, (size_t)r);
        done += (size_t)r;
    }
    close(fd);
    *hash = XXH3_64bits_digest(hs);
    XXH3_freeState(hs);
    return rc;
}

void gencache__disk_blob_release(gencache__disk_tier *d, const unsigned char id[32], bool locked)
{
    pthread_mutex_t *m = gencache__disk_blob_stripe(d, id);
    if (!locked)
        pthread_mutex_lock(m);
    bool yes;
    if (referenced(d, id, &yes) && !yes) {
        char path[PATH_MAX];
        gencache__disk_blob_path(d, id, path, sizeof path);
        if (unlink(path) != 0 && errno != ENOENT)
            gencache__log_msg(d->log, GENCACHE_LOG_WARN, "disk tier: cannot remove %s: %s", path,
                              strerror(errno));
    }
    if (!locked)
        pthread_mutex_unlock(m);
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

static bool parse_id(const char *name, unsigned char id[32])
{
    if (strlen(name) != 64)
        return false;
    for (int i = 0; i < 32; i++) {
        int hi = hexval(name[2 * i]), lo = hexval(name[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        id[i] = (unsigned char)(hi << 4 | lo);
    }
    return true;
}

int gencache__disk_blob_sweep(gencache__disk_tier *d, uint64_t *removed)
{
    *removed = 0;
    if (mkdir(d->values_path, 0755) != 0 && errno != EEXIST)
        return gencache__disk_map_errno(d, errno, "cannot create", d->values_path);
    DIR *top = opendir(d->values_path);
    if (!top)
        return gencache__disk_map_errno(d, errno, "cannot list", d->values_path);
    MDB_txn *txn = NULL;
    int rc = mdb_txn_begin(d->env, NULL, MDB_RDONLY, &txn);
    if (rc != MDB_SUCCESS) {
        closedir(top);
        return gencache__disk_map_mdb(d, rc, "cannot begin");
    }
    struct dirent *de;
    while ((de = readdir(top)) != NULL) {
        if (strlen(de->d_name) != 2 || hexval(de->d_name[0]) < 0 || hexval(de->d_name[1]) < 0)
            continue;
        char dir[PATH_MAX];
        snprintf(dir, sizeof dir, "%s/%s", d->values_path, de->d_name);
        DIR *sub = opendir(dir);
        if (!sub)
            continue;
        struct dirent *fe;
        while ((fe = readdir(sub)) != NULL) {
            unsigned char id[32];
            bool tmp = strncmp(fe->d_name, ".tmp.", 5) == 0;
            if (!tmp) {
                if (!parse_id(fe->d_name, id))
                    continue;
                MDB_val k = {GENCACHE__DISK_BLOB_ID_LEN, id}, v;
                if (mdb_get(txn, d->blobs, &k, &v) != MDB_NOTFOUND)
                    continue;
            }
            /* We hold the directory's lock: nobody else is writing these. */
            if (unlinkat(dirfd(sub), fe->d_name, 0) == 0)
                (*removed)++;
        }
        closedir(sub);
    }
    mdb_txn_abort(txn);
    closedir(top);
    return GENCACHE_OK;
}
