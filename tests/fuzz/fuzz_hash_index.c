/*
 * fuzz_hash_index.c: libFuzzer target for the near-duplicate index file, which a node reads back
 * from its data directory at start. Any input must be refused by gencache_hash_index_load() or
 * load an index that answers queries and saves to a file that loads to the same answers.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "gencache.h"

/* The input as a file the loader can open: an anonymous memory file, no disk involved. */
static int as_file(const uint8_t *data, size_t size, char *path, size_t path_size)
{
    int fd = memfd_create("fuzz-hash-index", 0);
    if (fd < 0)
        abort();
    size_t off = 0;
    while (off < size) {
        ssize_t n = write(fd, data + off, size - off);
        if (n <= 0)
            abort();
        off += (size_t)n;
    }
    snprintf(path, path_size, "/proc/self/fd/%d", fd);
    return fd;
}

static size_t count(gencache_hash_index *idx, uint64_t q)
{
    gencache_hash_hit m[64];
    size_t n = 0;
    if (gencache_hash_index_query(idx, q, 8, m, 64, &n) != GENCACHE_OK)
        abort();
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64], path2[128];
    int fd = as_file(data, size, path, sizeof path);
    gencache_hash_index *idx = NULL;
    int rc = gencache_hash_index_load(path, &idx);
    close(fd);
    if (rc != GENCACHE_OK) {
        if (idx)
            abort(); /* *out is NULL on every failure */
        return 0;
    }
    /* Saving writes a file beside the target and renames it: a real directory is needed. */
    static char dir[64];
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/gencache-fuzz-hidx-XXXXXX");
        if (!mkdtemp(dir))
            abort();
    }
    snprintf(path2, sizeof path2, "%s/index", dir);
    if (gencache_hash_index_save(idx, path2) != GENCACHE_OK)
        abort();
    gencache_hash_index *again = NULL;
    if (gencache_hash_index_load(path2, &again) != GENCACHE_OK)
        abort();
    static const uint64_t probes[] = {0, ~0ull, 0x0123456789abcdefull, 0x8000000000000001ull};
    for (size_t i = 0; i < sizeof probes / sizeof probes[0]; i++)
        if (count(idx, probes[i]) != count(again, probes[i]))
            abort();
    gencache_hash_index_free(again);
    gencache_hash_index_free(idx);
    unlink(path2);
    return 0;
}
