/*
 * disk.h: private to the disk tier (disk.c, disk_ops.c, disk_blob.c). The tier keeps its index
 * and every entry's metadata in LMDB and each value either inline in LMDB (small values) or in a
 * file of its own (large values); see docs/tiers.md for the layout and why.
 */
#ifndef GENCACHE_TIER_DISK_H
#define GENCACHE_TIER_DISK_H

#include <lmdb.h>

#include "internal.h"
#include "tier/crypt.h"

/* The format the data directory is written in (its FORMAT file). 2: the totals are a record
 * of LMDB's main database, whose page every commit rewrites anyway; format 1 kept them in a table
 * of their own, one more page (and one more write) per commit. A format 1 directory is upgraded
 * when opened. */
#define GENCACHE__DISK_FORMAT 2
/* The key of the totals (u64 bytes, u64 pinned entries) in LMDB's main database, whose other
 * keys are the names of the tables: no table may have this name. */
#define GENCACHE__DISK_TOTALS_KEY "gencache.totals"
/* Stripes of the blob locks: a put holds its blob's stripe from writing the file to committing
 * the reference, and the unlink of an unreferenced blob takes the same stripe. */
#define GENCACHE__DISK_STRIPES 64
/* Value files created ahead, empty, with their names already durable (one directory flush per
 * batch instead of one per put; docs/internals/disk-durability.md). */
#define GENCACHE__DISK_POOL 16
/* Pending access records (gets since the last write transaction) flushed at this many. */
#define GENCACHE__DISK_TOUCH_FLUSH 4096

/* Knobs the public options do not carry (benchmarks and tests set them). */
typedef struct gencache__disk_tuning {
    size_t inline_max; /* values up to this many bytes live in LMDB, larger in files.
                          Default 4 MiB (docs/tiers.md says why) */
    bool durable;      /* fsync files, directories and LMDB commits. Default true */
    bool sync_meta;    /* durable: also flush LMDB's meta page at each commit (two flushes per
                          commit: the last commit survives a power loss too). Default false:
                          one flush per commit; docs/internals/disk-durability.md */
    uint64_t map_size; /* LMDB map size in bytes (address space, not disk). Default 1 TiB */
} gencache__disk_tuning;

void gencache__disk_tuning_init(gencache__disk_tuning *t);
/* gencache__disk_tier_open() with explicit tuning (NULL: the defaults). */
int gencache__disk_tier_open_ex(const gencache__disk_options *opts,
                                const gencache__disk_tuning *tune, gencache__tier **out);

/* One get's access, kept in memory until the next write transaction writes it to the index. It
 * belongs to the record the get read, named by its checksum and creation time: a put may replace
 * that record meanwhile, and the access of the old value must not be applied to the new one. */
typedef struct gencache__disk_touch {
    char key[GENCACHE__KEY_MAX + 1]; /* "" : free slot */
    uint64_t checksum, created_ms;   /* of the record the access was made on */
    uint64_t last_access_ms;
    uint64_t expires_ms;
    uint64_t hits;
} gencache__disk_touch;

typedef struct gencache__disk_tier {
    gencache__tier base;
    char *path;
    char *values_path; /* <path>/values */
    int lock_fd;       /* flock'ed for the tier's lifetime */
    MDB_env *env;
    int index_fd;       /* data.mdb's descriptor (LMDB's own, valid while env is open) */
    unsigned page_size; /* LMDB's page size in bytes; 0: unknown (no size check) */
    MDB_dbi main, meta, vals, lru, exp, blobs; /* main: LMDB's unnamed database */
    uint64_t max_bytes, max_entries;
    gencache__disk_tuning tune;
    const gencache_allocator *alloc;
    const gencache__log *log;
    gencache__seal seal; /* encryption at rest; keys NULL: none */

    /* Mirrors of the totals stored in the index, updated after each commit. */
    _Atomic uint64_t bytes, entries, pinned;
    _Atomic uint64_t ev_capacity, ev_expired, ev_corrupt, backend_errors;
    _Atomic uint64_t unsynced; /* commits whose meta page may not be on disk yet */
    /* A read past the end of a shrunken LMDB file disabled the tier (disk_guard.c): every
     * operation then fails at once. */
    _Atomic bool broken;

    pthread_mutex_t touch_lock;
    gencache__disk_touch *touches; /* open addressing, 2 * GENCACHE__DISK_TOUCH_FLUSH slots */
    size_t n_touches;

    pthread_mutex_t stripes[GENCACHE__DISK_STRIPES];

    pthread_mutex_t pool_lock;
    unsigned char pool[GENCACHE__DISK_POOL][32]; /* ids of empty value files made ahead */
    size_t n_pool;
} gencache__disk_tier;

/* What an index record holds before the codec's metadata record. */
enum { GENCACHE__DISK_INLINE = 1, GENCACHE__DISK_BLOB = 2 };
#define GENCACHE__DISK_LOC_LEN     40 /* u32 kind, u32 zero, 32-byte blob id (zero when inline) */
#define GENCACHE__DISK_BLOB_ID_LEN 32

/* Bytes an entry counts against max_bytes: its value, its index record, and a flat allowance
 * for the B-tree records that point at it. */
uint64_t gencache__disk_charge(uint64_t size, size_t record_len);

/* Maps an LMDB or errno code to a gencache code, logging the detail with `what`. */
int gencache__disk_map_mdb(gencache__disk_tier *d, int rc, const char *what);
int gencache__disk_map_errno(gencache__disk_tier *d, int err, const char *what, const char *path);

/* Whether index/data.mdb still holds every page the index names: true, or false with the bytes
 * the file holds in *have and the bytes its pages need in *need. A shorter file would raise
 * SIGBUS at the first read past its end. Costs one fstat and a look at the meta page; reads no
 * other page. True when it cannot tell (the SIGBUS guard is then the defence). */
bool gencache__disk_index_whole(gencache__disk_tier *d, uint64_t *have, uint64_t *need);

/* fsync of a directory (its entries' names made durable); -1 with errno on failure. */
int gencache__disk_fsync_dir(const char *path);

/* ---- blobs (disk_blob.c) ---- */
/* The id of a new, empty value file whose name is durable: from the pool, which is refilled
 * (files created, their directory flushed once) when empty. */
int gencache__disk_blob_take(gencache__disk_tier *d, unsigned char id[32]);
/* Removes the pool's unused files (at close). */
void gencache__disk_blob_pool_drain(gencache__disk_tier *d);
pthread_mutex_t *gencache__disk_blob_stripe(gencache__disk_tier *d, const unsigned char id[32]);
/* Writes the value into the empty file of an id from gencache__disk_blob_take() (write,
 * fdatasync); the file is removed on failure. Caller holds the id's stripe. */
int gencache__disk_blob_write(gencache__disk_tier *d, const unsigned char id[32], const void *data,
                              size_t size);
/* Reads exactly size bytes of the blob into buf and their XXH3-64 into *hash.
 * GENCACHE_ENOTFOUND: no file; GENCACHE_ECORRUPT: the file has another size. */
int gencache__disk_blob_read(gencache__disk_tier *d, const unsigned char id[32], void *buf,
                             size_t size, uint64_t *hash);
/* memcpy that returns the XXH3-64 of what it copied (hashing each piece while it is in cache). */
uint64_t gencache__disk_copy_hash(void *dst, const void *src, size_t n);
/* Removes the blob's file if the index no longer references it (takes the stripe unless the
 * caller holds it: locked). */
void gencache__disk_blob_release(gencache__disk_tier *d, const unsigned char id[32], bool locked);
/* Removes temporary files and files no index record references (after a crash). */
int gencache__disk_blob_sweep(gencache__disk_tier *d, uint64_t *removed);
/* The path of a blob's file, for tests that damage it. buf holds at least PATH_MAX bytes. */
void gencache__disk_blob_path(const gencache__disk_tier *d, const unsigned char id[32], char *buf,
                              size_t cap);
/* The path of the file holding key's value: GENCACHE_OK, or GENCACHE_ENOTFOUND (no such key, or
 * its value is inline). For tests. */
int gencache__disk_blob_of(gencache__disk_tier *d, const char *key, char *path, size_t cap);

/* ---- operations (disk_ops.c) ---- */
int gencache__disk_get(gencache__tier *t, const char *key, uint64_t hash, uint64_t now_ms,
                       bool touch, gencache__entry **out);
int gencache__disk_put(gencache__tier *t, gencache__entry *e, uint64_t now_ms);
/* Inline values up to this size are grouped into one transaction by put_many; larger ones are
 * put alone (bench_writeback flush: 256 KiB values 6-7.5x faster grouped, 1.5 MiB ones 0.7x). */
#define GENCACHE__DISK_BATCH_VALUE_MAX (1024u * 1024u)
/* The tier's put_many: inline values in one transaction (one flush), values in files one put
 * each; a failed batch is retried one put per value. */
void gencache__disk_put_many(gencache__tier *t, gencache__entry *const *es, size_t n,
                             uint64_t now_ms, int *rcs);
int gencache__disk_del(gencache__tier *t, const char *key, uint64_t hash);
int gencache__disk_remove_if(gencache__tier *t, gencache__entry_pred pred, void *userdata,
                             uint64_t *count);
int gencache__disk_expire(gencache__tier *t, uint64_t now_ms, uint64_t *count);
/* Writes pending access records to the index. */
int gencache__disk_flush(gencache__disk_tier *d);
/* Makes every commit so far durable (flushes LMDB's meta page) when some may not be. */
void gencache__disk_sync(gencache__disk_tier *d);

#endif
