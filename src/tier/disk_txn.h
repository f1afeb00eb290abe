/*
 * disk_txn.h: write transactions of the disk tier (disk_txn.c). Functions returning int here
 * return LMDB/errno codes (MDB_SUCCESS = 0) unless they say otherwise; begin and commit return
 * gencache codes.
 */
#ifndef GENCACHE_TIER_DISK_TXN_H
#define GENCACHE_TIER_DISK_TXN_H

#include "tier/disk.h"

/* make_room found only pinned entries (or the one being put) to evict. */
#define GENCACHE__DISK_FULL (-40001)

typedef struct gencache__disk_evicted {
    gencache__entry *e; /* metadata only */
    gencache__evict_reason reason;
} gencache__disk_evicted;

typedef struct gencache__disk_txn {
    gencache__disk_tier *d;
    MDB_txn *txn;
    uint64_t bytes, pinned; /* the totals as this transaction changes them */
    gencache__disk_evicted *ev;
    size_t n_ev, cap_ev;
    unsigned char (*unref)[32]; /* blobs whose last reference this transaction dropped */
    size_t n_unref, cap_unref;
    uint64_t n_capacity, n_expired, n_corrupt;
    bool defer; /* commit leaves the after-commit work to gencache__disk_txn_finish() */
} gencache__disk_txn;

/* Begins a write transaction and writes the pending access records into it. */
int gencache__disk_txn_begin(gencache__disk_tier *d, gencache__disk_txn *w);
/* Commits; then unlinks unreferenced blobs and calls on_evict for what was evicted. On failure
 * the transaction is aborted, backend_errors counted, and the mapped code returned. */
int gencache__disk_txn_commit(gencache__disk_txn *w);
void gencache__disk_txn_abort(gencache__disk_txn *w);
/* The after-commit work of a transaction committed with defer set: for a caller that held a blob
 * stripe across the commit and must release it first (blob releases take stripes). */
void gencache__disk_txn_finish(gencache__disk_txn *w);

/* Removes key and everything that refers to it. reason: a gencache__evict_reason to count and
 * report, or -1 (a delete or invalidation: neither). With expect_*: only when the stored record
 * still has that checksum / creation time (else MDB_KEYEXIST). MDB_NOTFOUND when absent. */
int gencache__disk_txn_remove(gencache__disk_txn *w, const char *key, int reason,
                              const uint64_t *expect_checksum, const uint64_t *expect_created);
/* Inserts e stored as v (gencache__codec_value_seal(); no record for its key may exist): inline
 * when blob_id is NULL, else a reference to that blob, whose file exists. A sealed v without
 * data is sealed here, into the inline value's space. */
struct gencache__codec_value;
int gencache__disk_txn_insert(gencache__disk_txn *w, const gencache__entry *e,
                              struct gencache__codec_value *v, const unsigned char *blob_id,
                              uint64_t now_ms);
/* Removes up to limit entries expired at now_ms; *n gets how many. */
int gencache__disk_txn_expire(gencache__disk_txn *w, uint64_t now_ms, size_t limit, size_t *n);
/* Evicts expired, then least recently used entries (never `keep`, never pinned ones) until the
 * totals are within the limits. GENCACHE__DISK_FULL when that is impossible. */
int gencache__disk_txn_make_room(gencache__disk_txn *w, const char *keep, uint64_t now_ms);

/* Keys of the lru and exp tables: big-endian time, then the entry's key. */
size_t gencache__disk_time_key(unsigned char *buf, uint64_t t, const char *key);
uint64_t gencache__disk_get_be64(const unsigned char *p);

#endif
