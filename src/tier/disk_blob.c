/*
 * disk_blob.c: the disk tier's large values, one file per distinct value under
 * values/<first two hex digits>/<SHA-256 hex>. A file appears whole or not at all (written to a
 * temporary name, fsynced, renamed, directory fsynced) before any index record refers to it, and
 * it is unlinked only after the index stopped referring to it, under the blob's stripe lock, so a
 * concurrent put of the same bytes can never lose its file. Equal values share one file (the index
 * counts references). SHA-256 rather than a fast hash names the file because a name collision
 * would serve one tenant's bytes for another's key.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <xxh_x86dispatch.h>

#include "tier/disk.h"

static const char hexdig[] = "0123456789abcdef";

void gencache__disk_blob_id(const void *data, size_t size, unsigned char id[32])
{
    unsigned int n = 0;
    EVP_Digest(data, size, id, &n, EVP_sha256(), NULL);
}

pthread_mutex_t *gencache__disk_blob_stripe(gencache__disk_tier *d, const unsigned char id[32])
{
    return &d->stripes[id[0] % GENCACHE__DISK_STRIPES];
}

static void hex_id(const unsigned char id[32], char out[65])
{
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hexdig[id[i] >> 4];
        out[2 * i + 1] = hexdig[id[i] & 15];
    }
    out[64] = '\0';
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
    bool yes;
    if (referenced(d, id, &yes) && yes)
        return GENCACHE_OK; /* the stripe we hold keeps its file from being unlinked */
    char hex[65], dir[PATH_MAX - 256], tmp[PATH_MAX], path[PATH_MAX];
    hex_id(id, hex);
    snprintf(dir, sizeof dir, "%s/%.2s", d->values_path, hex);
    snprintf(path, sizeof path, "%s/%s", dir, hex);
    snprintf(tmp, sizeof tmp, "%s/.tmp.%ld.%llu", dir, (long)getpid(),
             (unsigned long long)atomic_fetch_add(&d->tmp_seq, 1));
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return gencache__disk_map_errno(d, errno, "cannot create", dir);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0)
        return gencache__disk_map_errno(d, errno, "cannot create", tmp);
    int rc = write_all(fd, data, size);
    if (rc == 0 && d->tune.durable)
        rc = fdatasync(fd);
    int err = errno;
    if (close(fd) != 0 && rc == 0) {
        rc = -1;
        err = errno;
    }
    if (rc == 0 && rename(tmp, path) != 0) {
        rc = -1;
        err = errno;
    }
    if (rc != 0) {
        unlink(tmp);
        return gencache__disk_map_errno(d, err, "cannot write", path);
    }
    if (d->tune.durable) {
        /* The rename must be durable before an index record may point at the file. */
        int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0 || fsync(dfd) != 0) {
            err = errno;
            if (dfd >= 0)
                close(dfd);
            return gencache__disk_map_errno(d, err, "cannot sync", dir);
        }
        close(dfd);
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
