/*
 * hash_index_io.c: the near-duplicate index on disk. The file is a 24-byte header (magic
 * "GCHIDX\0\1", version, entry count), the (hash, id) pairs as little-endian 64-bit integers,
 * and the XXH3-64 checksum of everything before it. It is written to a temporary file beside the
 * target, synced and renamed over it, so a crash leaves the old file or the new one, never half
 * of either; a loader that finds a wrong size or checksum refuses the file.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hash_index.h"
#include "internal.h"

static const unsigned char MAGIC[8] = {'G', 'C', 'H', 'I', 'D', 'X', 0, 1};
#define FILE_VERSION 1u
#define HEADER_BYTES 24u

int gencache_hash_index_save(gencache_hash_index *idx, const char *path)
{
    if (!idx || !path)
        return GENCACHE_EINVAL;
    pthread_rwlock_rdlock(&idx->lock);
    uint64_t count = idx->count;
    size_t total = HEADER_BYTES + (size_t)count * 16 + 8;
    unsigned char *buf = malloc(total);
    if (!buf) {
        pthread_rwlock_unlock(&idx->lock);
        return GENCACHE_ENOMEM;
    }
    memcpy(buf, MAGIC, 8);
    gencache__le64_put(buf + 8, FILE_VERSION);
    gencache__le64_put(buf + 16, count);
    unsigned char *p = buf + HEADER_BYTES;
    for (uint32_t s = 0; s < idx->slots; s++) {
        if (!idx->live[s])
            continue;
        gencache__le64_put(p, idx->hashes[s]);
        gencache__le64_put(p + 8, idx->ids[s]);
        p += 16;
    }
    pthread_rwlock_unlock(&idx->lock);
    gencache__le64_put(p, gencache__checksum(buf, total - 8));

    int rc = gencache__file_replace(path, buf, total);
    free(buf);
    return rc;
}

int gencache_hash_index_load(const char *path, gencache_hash_index **out)
{
    if (out)
        *out = NULL;
    if (!path || !out)
        return GENCACHE_EINVAL;
    unsigned char *buf = NULL;
    size_t size = 0;
    int rc = gencache__file_read(path, &buf, &size);
    if (rc != GENCACHE_OK)
        return rc;
    uint64_t count = 0;
    if (size < HEADER_BYTES + 8) {
        rc = GENCACHE_EPARSE;
    } else if (memcmp(buf, MAGIC, 6) != 0) {
        rc = GENCACHE_EPARSE;
    } else if (memcmp(buf, MAGIC, 8) != 0 || gencache__le64_get(buf + 8) != FILE_VERSION) {
        rc = GENCACHE_EVERSION;
    } else {
        count = gencache__le64_get(buf + 16);
        /* Check the count against the size before trusting it for anything. */
        if (count > (size - HEADER_BYTES - 8) / 16 || HEADER_BYTES + count * 16 + 8 != size)
            rc = GENCACHE_EPARSE;
        else if (gencache__checksum(buf, size - 8) != gencache__le64_get(buf + size - 8))
            rc = GENCACHE_ECORRUPT;
    }
    gencache_hash_index *idx = NULL;
    if (rc == GENCACHE_OK)
        rc = gencache_hash_index_new(&idx);
    for (uint64_t i = 0; rc == GENCACHE_OK && i < count; i++) {
        const unsigned char *p = buf + HEADER_BYTES + i * 16;
        rc = gencache__hidx_insert_unlocked(idx, gencache__le64_get(p), gencache__le64_get(p + 8));
    }
    free(buf);
    if (rc != GENCACHE_OK) {
        gencache_hash_index_free(idx);
        return rc;
    }
    *out = idx;
    return GENCACHE_OK;
}
