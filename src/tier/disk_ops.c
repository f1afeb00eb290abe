/*
 * disk_ops.c: the disk tier's operations. A get reads in an LMDB read transaction (no lock, no
 * write) and copies the value into a new entry (from the map for inline values, with pread() for
 * blob files), then verifies the value's XXH3-64 before anyone sees it: a value that fails is
 * removed, counted and reported as a miss, never returned. Access records (last access, hits,
 * sliding expiry) stay in memory until the next write transaction carries them to the index, so a
 * get never waits for an fsync; LRU order is therefore approximate across a crash.
 */
#include <errno.h>
#include <string.h>

#include "tier/disk_guard.h"
#include "tier/disk_txn.h"
#include "tier/entry_codec.h"

#define TOUCH_SLOTS (2 * GENCACHE__DISK_TOUCH_FLUSH)

/* The slot for key in the access table (caller holds touch_lock); NULL when absent and !create. */
static gencache__disk_touch *touch_slot(gencache__disk_tier *d, const char *key, uint64_t hash,
                                        bool create)
{
    for (size_t i = 0; i < TOUCH_SLOTS; i++) {
        gencache__disk_touch *t = &d->touches[(hash + i) & (TOUCH_SLOTS - 1)];
        if (!t->key[0]) {
            if (!create)
                return NULL;
            strcpy(t->key, key);
            d->n_touches++;
            return t;
        }
        if (strcmp(t->key, key) == 0)
            return t;
    }
    return NULL;
}

int gencache__disk_flush(gencache__disk_tier *d)
{
    pthread_mutex_lock(&d->touch_lock);
    size_t n = d->n_touches;
    pthread_mutex_unlock(&d->touch_lock);
    if (n == 0)
        return GENCACHE_OK;
    gencache__disk_txn w;
    int rc = gencache__disk_txn_begin(d, &w);
    if (rc == GENCACHE_OK)
        rc = gencache__disk_txn_commit(&w);
    return rc;
}

/* Removes key in its own transaction when its record is still the one described, for `reason`. */
static void remove_now(gencache__disk_tier *d, const char *key, int reason,
                       const uint64_t *checksum, const uint64_t *created)
{
    gencache__disk_txn w;
    if (gencache__disk_txn_begin(d, &w) != GENCACHE_OK)
        return;
    int rc = gencache__disk_txn_remove(&w, key, reason, checksum, created);
    if (rc == MDB_SUCCESS)
        gencache__disk_txn_commit(&w);
    else
        gencache__disk_txn_abort(&w);
}

static void drop_corrupt(gencache__disk_tier *d, const char *key, const gencache__codec_meta *m,
                         const char *why)
{
    gencache__log_msg(d->log, GENCACHE_LOG_WARN, "disk tier %s: dropping %s: %s", d->path, key,
                      why);
    if (m) {
        remove_now(d, key, GENCACHE__EVICT_CORRUPT, &m->checksum, &m->created_ms);
    } else {
        /* The record itself is damaged: remove it whatever it says (counted in the txn). */
        remove_now(d, key, GENCACHE__EVICT_CORRUPT, NULL, NULL);
    }
}

/* Reads the index record and, for inline values, the value, within one read transaction. */
static int read_record(gencache__disk_tier *d, const char *key, gencache__codec_meta *m,
                       unsigned char loc[GENCACHE__DISK_LOC_LEN], gencache__entry **out,
                       uint64_t *hash)
{
    *out = NULL;
    MDB_txn *txn;
    int rc = mdb_txn_begin(d->env, NULL, MDB_RDONLY, &txn);
    if (rc != MDB_SUCCESS) {
        atomic_fetch_add(&d->backend_errors, 1);
        return gencache__disk_map_mdb(d, rc, "cannot begin read");
    }
    MDB_val k = {strlen(key), (void *)key}, v;
    rc = mdb_get(txn, d->meta, &k, &v);
    if (rc != MDB_SUCCESS) {
        mdb_txn_abort(txn);
        if (rc == MDB_NOTFOUND)
            return GENCACHE_ENOTFOUND;
        atomic_fetch_add(&d->backend_errors, 1);
        return gencache__disk_map_mdb(d, rc, "cannot read");
    }
    int grc = GENCACHE_ECORRUPT;
    if (v.mv_size > GENCACHE__DISK_LOC_LEN) {
        memcpy(loc, v.mv_data, GENCACHE__DISK_LOC_LEN);
        grc = gencache__codec_decode_sealed(&d->seal, d->alloc,
                                            (const char *)v.mv_data + GENCACHE__DISK_LOC_LEN,
                                            v.mv_size - GENCACHE__DISK_LOC_LEN, m);
    }
    if (grc == GENCACHE_OK && strcmp(m->key, key) != 0) {
        gencache__codec_meta_clear(m);
        grc = GENCACHE_ECORRUPT;
    }
    if (grc != GENCACHE_OK) {
        mdb_txn_abort(txn);
        /* A record sealed under a key this cache lacks stays (a cache that has the key can
         * read it); it was counted as refused. */
        if (grc == GENCACHE_ECORRUPT || grc == GENCACHE_EVERSION)
            drop_corrupt(d, key, NULL, "index record fails its check");
        return grc == GENCACHE_ENOMEM ? grc : GENCACHE_ENOTFOUND;
    }
    uint32_t kind;
    memcpy(&kind, loc, 4);
    gencache__entry *e = NULL;
    grc = gencache__codec_entry_new(d->alloc, m, true, &e);
    if (grc == GENCACHE_OK && kind == GENCACHE__DISK_INLINE) {
        rc = mdb_get(txn, d->vals, &k, &v);
        if (rc == MDB_SUCCESS && v.mv_size == m->size) {
            *hash = gencache__disk_copy_hash(e->value, v.mv_data, v.mv_size);
        } else {
            grc = GENCACHE_ECORRUPT;
        }
    } else if (grc == GENCACHE_OK && kind != GENCACHE__DISK_BLOB) {
        grc = GENCACHE_ECORRUPT;
    }
    mdb_txn_abort(txn);
    if (grc != GENCACHE_OK) {
        gencache__entry_release(e);
        if (grc != GENCACHE_ECORRUPT)
            gencache__codec_meta_clear(m); /* the caller keeps m only to drop a damaged value */
        return grc;
    }
    *out = e;
    return GENCACHE_OK;
}

/* True when the blob record still belongs to key (the file was not unlinked by a delete that
 * raced with this get). */
static bool still_references(gencache__disk_tier *d, const char *key, const unsigned char *id)
{
    MDB_txn *txn;
    if (mdb_txn_begin(d->env, NULL, MDB_RDONLY, &txn) != MDB_SUCCESS)
        return false;
    MDB_val k = {strlen(key), (void *)key}, v;
    bool yes = mdb_get(txn, d->meta, &k, &v) == MDB_SUCCESS && v.mv_size > GENCACHE__DISK_LOC_LEN &&
               memcmp((char *)v.mv_data + 8, id, GENCACHE__DISK_BLOB_ID_LEN) == 0;
    mdb_txn_abort(txn);
    return yes;
}

int gencache__disk_get(gencache__tier *t, const char *key, uint64_t hash, uint64_t now_ms,
                       bool touch, gencache__entry **out)
{
    gencache__disk_tier *d = (gencache__disk_tier *)t;
    if (out)
        *out = NULL;
    const char *layer;
    size_t layer_len;
    if (!out || gencache__key_split(key, &layer, &layer_len) != GENCACHE_OK)
        return GENCACHE_EINVAL;
    /* The access table is keyed by our own hash of the key, whatever the caller passed. */
    hash = gencache__checksum(key, strlen(key));
    gencache__codec_meta m;
    unsigned char loc[GENCACHE__DISK_LOC_LEN];
    gencache__entry *e;
    uint64_t sum = 0;
    int rc = read_record(d, key, &m, loc, &e, &sum);
    if (rc == GENCACHE_ECORRUPT) {
        drop_corrupt(d, key, &m, "inline value missing or of the wrong size");
        gencache__codec_meta_clear(&m);
        return GENCACHE_ENOTFOUND;
    }
    if (rc != GENCACHE_OK)
        return rc;

    /* Accesses not yet written to the index are newer than the record, when they were made on
     * this record and not on one it replaced. */
    uint64_t expires = m.expires_ms, last = m.last_access_ms, hits = m.hits;
    pthread_mutex_lock(&d->touch_lock);
    gencache__disk_touch *slot = touch_slot(d, key, hash, false);
    if (slot && slot->checksum == m.checksum && slot->created_ms == m.created_ms) {
        expires = slot->expires_ms;
        last = slot->last_access_ms;
        hits = slot->hits;
    }
    pthread_mutex_unlock(&d->touch_lock);
    if (expires && now_ms >= expires) {
        gencache__entry_release(e);
        remove_now(d, key, GENCACHE__EVICT_EXPIRED, &m.checksum, &m.created_ms);
        gencache__codec_meta_clear(&m);
        return GENCACHE_ENOTFOUND;
    }

    uint32_t kind;
    memcpy(&kind, loc, 4);
    if (kind == GENCACHE__DISK_BLOB) {
        rc = gencache__disk_blob_read(d, loc + 8, e->value, e->size, &sum);
        if (rc == GENCACHE_ENOTFOUND && !still_references(d, key, loc + 8)) {
            /* Deleted or replaced while we read: a plain miss. */
            gencache__entry_release(e);
            gencache__codec_meta_clear(&m);
            return GENCACHE_ENOTFOUND;
        }
        if (rc != GENCACHE_OK && rc != GENCACHE_ENOTFOUND && rc != GENCACHE_ECORRUPT) {
            atomic_fetch_add(&d->backend_errors, 1);
            gencache__entry_release(e);
            gencache__codec_meta_clear(&m);
            return rc;
        }
        if (rc != GENCACHE_OK) {
            gencache__entry_release(e);
            drop_corrupt(d, key, &m,
                         rc == GENCACHE_ENOTFOUND ? "value file missing"
                                                  : "value file of the wrong size");
            gencache__codec_meta_clear(&m);
            return GENCACHE_ENOTFOUND;
        }
    }
    if (sum != m.checksum) {
        /* For a sealed value this is the tag's verdict, reached before decrypting. */
        if (m.sealed)
            atomic_fetch_add(&d->seal.rejected, 1);
        gencache__entry_release(e);
        drop_corrupt(d, key, &m, "value fails its checksum");
        gencache__codec_meta_clear(&m);
        return GENCACHE_ENOTFOUND;
    }
    rc = gencache__codec_value_open(&d->seal, &m, e->value, e->size, &sum);
    if (rc != GENCACHE_OK) {
        gencache__entry_release(e);
        if (rc == GENCACHE_ECORRUPT)
            drop_corrupt(d, key, &m, "value fails its authentication tag");
        gencache__codec_meta_clear(&m);
        return rc == GENCACHE_ENOMEM || rc == GENCACHE_EIO ? rc : GENCACHE_ENOTFOUND;
    }
    e->checksum = sum;

    bool flush = false;
    if (touch) {
        hits++;
        last = now_ms;
        if (m.sliding && m.ttl_ms)
            expires = now_ms + m.ttl_ms;
        pthread_mutex_lock(&d->touch_lock);
        slot = touch_slot(d, key, hash, true);
        if (slot) {
            slot->checksum = m.checksum;
            slot->created_ms = m.created_ms;
            slot->expires_ms = expires;
            slot->last_access_ms = last;
            slot->hits = hits;
        }
        flush = d->n_touches >= GENCACHE__DISK_TOUCH_FLUSH;
        pthread_mutex_unlock(&d->touch_lock);
    }
    atomic_store(&e->expires_ms, expires);
    atomic_store(&e->last_access_ms, last);
    atomic_store(&e->hits, hits);
    gencache__codec_meta_clear(&m);
    if (flush)
        gencache__disk_flush(d);
    *out = e;
    return GENCACHE_OK;
}

int gencache__disk_put(gencache__tier *t, gencache__entry *e, uint64_t now_ms)
{
    gencache__disk_tier *d = (gencache__disk_tier *)t;
    const char *layer;
    size_t layer_len;
    /* A metadata-only entry (value NULL) has nothing to store. */
    if (!e || !e->value || gencache__key_split(e->key, &layer, &layer_len) != GENCACHE_OK)
        return GENCACHE_EINVAL;
    if (gencache__entry_expired(e, now_ms))
        return GENCACHE_OK; /* nothing worth writing */
    /* An inline value is sealed straight into the space LMDB reserves for it (no buffer of
     * the value's size to allocate per put); a blob's through a buffer written to its file. */
    gencache__codec_value sv = {.sealed = d->seal.keys != NULL};
    uint64_t charge = gencache__disk_charge(e->size, gencache__codec_value_size(e, &sv));
    if (d->max_bytes && charge > d->max_bytes)
        return GENCACHE_ETOOBIG;
    bool blob = e->size > d->tune.inline_max;
    unsigned char *sealed = NULL;
    int rc = GENCACHE_OK;
    if (blob || !sv.sealed)
        rc = gencache__codec_value_seal(&d->seal, d->alloc, e, &sv, &sealed);
    if (rc != GENCACHE_OK)
        return rc;

    unsigned char id[32];
    pthread_mutex_t *stripe = NULL;
    if (blob) {
        rc = gencache__disk_blob_take(d, id);
        if (rc == GENCACHE_OK) {
            stripe = gencache__disk_blob_stripe(d, id);
            pthread_mutex_lock(stripe);
            gencache__disk_guard_note_stripe(stripe);
            rc = gencache__disk_blob_write(d, id, sv.data, e->size);
            if (rc != GENCACHE_OK) {
                gencache__disk_guard_note_stripe(NULL);
                pthread_mutex_unlock(stripe);
            }
        }
        if (rc != GENCACHE_OK) {
            atomic_fetch_add(&d->backend_errors, 1);
            gencache__codec_value_free(d->alloc, sealed);
            return rc;
        }
    }
    gencache__disk_txn w;
    rc = gencache__disk_txn_begin(d, &w);
    w.defer = true;
    if (rc == GENCACHE_OK) {
        int mrc = gencache__disk_txn_remove(&w, e->key, -1, NULL, NULL);
        if (mrc == MDB_NOTFOUND)
            mrc = MDB_SUCCESS;
        if (mrc == MDB_SUCCESS)
            mrc = gencache__disk_txn_insert(&w, e, &sv, blob ? id : NULL, now_ms);
        if (mrc == MDB_SUCCESS)
            mrc = gencache__disk_txn_make_room(&w, e->key, now_ms);
        if (mrc == MDB_SUCCESS) {
            rc = gencache__disk_txn_commit(&w);
        } else {
            gencache__disk_txn_abort(&w);
            if (mrc == GENCACHE__DISK_FULL) {
                rc = GENCACHE_EFULL;
            } else {
                atomic_fetch_add(&d->backend_errors, 1);
                rc = gencache__disk_map_mdb(d, mrc, "cannot store");
            }
        }
    }
    if (blob) {
        if (rc != GENCACHE_OK)
            gencache__disk_blob_release(d, id, true); /* the file we wrote, if unreferenced */
        gencache__disk_guard_note_stripe(NULL);
        pthread_mutex_unlock(stripe);
    }
    if (rc == GENCACHE_OK)
        gencache__disk_txn_finish(&w);
    gencache__codec_value_free(d->alloc, sealed);
    return rc;
}

/* Stores the inline values es[idx[0..n)] in one write transaction, so one durable commit (one
 * flush) covers them all. Returns a gencache code; on failure the transaction is aborted and
 * nothing of the batch is stored. */
static int put_inline_batch(gencache__disk_tier *d, gencache__entry *const *es, const size_t *idx,
                            size_t n, uint64_t now_ms)
{
    gencache__disk_txn w;
    int rc = gencache__disk_txn_begin(d, &w);
    if (rc != GENCACHE_OK)
        return rc;
    int mrc = MDB_SUCCESS;
    for (size_t i = 0; i < n && mrc == MDB_SUCCESS && rc == GENCACHE_OK; i++) {
        gencache__entry *e = es[idx[i]];
        /* As in a single put: sealed values are sealed into the space LMDB reserves; plain ones
         * are written from the entry's bytes (nothing is allocated). */
        gencache__codec_value sv = {.sealed = d->seal.keys != NULL};
        unsigned char *owned = NULL;
        if (!sv.sealed)
            rc = gencache__codec_value_seal(&d->seal, d->alloc, e, &sv, &owned);
        if (rc != GENCACHE_OK)
            break;
        mrc = gencache__disk_txn_remove(&w, e->key, -1, NULL, NULL);
        if (mrc == MDB_NOTFOUND)
            mrc = MDB_SUCCESS;
        if (mrc == MDB_SUCCESS)
            mrc = gencache__disk_txn_insert(&w, e, &sv, NULL, now_ms);
        if (mrc == MDB_SUCCESS)
            mrc = gencache__disk_txn_make_room(&w, e->key, now_ms);
        gencache__codec_value_free(d->alloc, owned);
    }
    if (rc == GENCACHE_OK && mrc == MDB_SUCCESS)
        return gencache__disk_txn_commit(&w);
    gencache__disk_txn_abort(&w);
    if (rc != GENCACHE_OK || mrc == GENCACHE__DISK_FULL)
        return rc != GENCACHE_OK ? rc : GENCACHE_EFULL;
    atomic_fetch_add(&d->backend_errors, 1);
    return gencache__disk_map_mdb(d, mrc, "cannot store a batch");
}

void gencache__disk_put_many(gencache__tier *t, gencache__entry *const *es, size_t n,
                             uint64_t now_ms, int *rcs)
{
    gencache__disk_tier *d = (gencache__disk_tier *)t;
    size_t *idx = gencache__malloc(d->alloc, (n ? n : 1) * sizeof *idx);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        gencache__entry *e = es[i];
        const char *layer;
        size_t layer_len;
        /* What a single put would refuse or skip before writing, it refuses or skips here. */
        if (!idx || !e || !e->value || gencache__key_split(e->key, &layer, &layer_len) != 0 ||
            gencache__entry_expired(e, now_ms) || e->size > d->tune.inline_max ||
            e->size > GENCACHE__DISK_BATCH_VALUE_MAX) {
            /* A value in its own file pays its own flush anyway; it keeps the single put and
             * its ordering (file flushed, then the commit naming it). So does a large inline
             * value: writing its bytes dominates, and grouping them measured slower here. */
            rcs[i] = gencache__disk_put(t, e, now_ms);
            continue;
        }
        gencache__codec_value sv = {.sealed = d->seal.keys != NULL};
        uint64_t charge = gencache__disk_charge(e->size, gencache__codec_value_size(e, &sv));
        if (d->max_bytes && charge > d->max_bytes) {
            rcs[i] = GENCACHE_ETOOBIG;
            continue;
        }
        idx[m++] = i;
    }
    /* A lone value takes the single put below. */
    int rc = m > 1 ? put_inline_batch(d, es, idx, m, now_ms) : GENCACHE_EIO;
    for (size_t k = 0; k < m; k++)
        /* A failed batch stored nothing: each value is put alone, so each gets the result a
         * single put gives it (one full disk or bad value does not fail the others). */
        rcs[idx[k]] = rc == GENCACHE_OK ? GENCACHE_OK : gencache__disk_put(t, es[idx[k]], now_ms);
    gencache__free(d->alloc, idx);
}

int gencache__disk_del(gencache__tier *t, const char *key, uint64_t hash)
{
    gencache__disk_tier *d = (gencache__disk_tier *)t;
    const char *layer;
    size_t layer_len;
    if (gencache__key_split(key, &layer, &layer_len) != GENCACHE_OK)
        return GENCACHE_EINVAL;
    gencache__disk_txn w;
    int rc = gencache__disk_txn_begin(d, &w);
    if (rc != GENCACHE_OK)
        return rc;
    int mrc = gencache__disk_txn_remove(&w, key, -1, NULL, NULL);
    if (mrc != MDB_SUCCESS) {
        gencache__disk_txn_abort(&w);
        if (mrc == MDB_NOTFOUND)
            return GENCACHE_ENOTFOUND;
        atomic_fetch_add(&d->backend_errors, 1);
        return gencache__disk_map_mdb(d, mrc, "cannot delete");
    }
    return gencache__disk_txn_commit(&w);
}

typedef struct victim {
    char key[GENCACHE__KEY_MAX + 1];
    uint64_t checksum, created_ms;
} victim;

#define REMOVE_BATCH 1024

/* Removes a batch of matched keys in one transaction; records changed since the scan stay. */
static int remove_batch(gencache__disk_tier *d, const victim *v, size_t n, uint64_t *count)
{
    gencache__disk_txn w;
    int rc = gencache__disk_txn_begin(d, &w);
    if (rc != GENCACHE_OK)
        return rc;
    uint64_t removed = 0;
    for (size_t i = 0; i < n; i++) {
        int mrc = gencache__disk_txn_remove(&w, v[i].key, -1, &v[i].checksum, &v[i].created_ms);
        if (mrc == MDB_SUCCESS) {
            removed++;
        } else if (mrc != MDB_NOTFOUND && mrc != MDB_KEYEXIST) {
            gencache__disk_txn_abort(&w);
            atomic_fetch_add(&d->backend_errors, 1);
            return gencache__disk_map_mdb(d, mrc, "cannot remove");
        }
    }
    rc = gencache__disk_txn_commit(&w);
    if (rc == GENCACHE_OK)
        *count += removed;
    return rc;
}

int gencache__disk_remove_if(gencache__tier *t, gencache__entry_pred pred, void *userdata,
                             uint64_t *count)
{
    gencache__disk_tier *d = (gencache__disk_tier *)t;
    if (count)
        *count = 0;
    if (!pred || !count)
        return GENCACHE_EINVAL;
    victim *batch = gencache__malloc(d->alloc, REMOVE_BATCH * sizeof *batch);
    if (!batch)
        return GENCACHE_ENOMEM;
    /* Scan in chunks: each read transaction resumes after the last key seen, so removals between
     * chunks never invalidate a cursor. */
    char resume[GENCACHE__KEY_MAX + 1] = "";
    gencache__seal quiet = {.keys = d->seal.keys}; /* a scan refuses nothing anyone asked for */
    int rc = GENCACHE_OK;
    bool done = false;
    while (rc == GENCACHE_OK && !done) {
        MDB_txn *txn;
        MDB_cursor *c;
        int mrc = mdb_txn_begin(d->env, NULL, MDB_RDONLY, &txn);
        if (mrc == MDB_SUCCESS) {
            mrc = mdb_cursor_open(txn, d->meta, &c);
            if (mrc != MDB_SUCCESS)
                mdb_txn_abort(txn);
        }
        if (mrc != MDB_SUCCESS) {
            atomic_fetch_add(&d->backend_errors, 1);
            rc = gencache__disk_map_mdb(d, mrc, "cannot scan");
            break;
        }
        size_t n = 0;
        MDB_val k = {strlen(resume), resume}, v;
        mrc = resume[0] ? mdb_cursor_get(c, &k, &v, MDB_SET_RANGE)
                        : mdb_cursor_get(c, &k, &v, MDB_FIRST);
        if (mrc == MDB_SUCCESS && resume[0] && k.mv_size == strlen(resume) &&
            memcmp(k.mv_data, resume, k.mv_size) == 0)
            mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
        for (; mrc == MDB_SUCCESS && n < REMOVE_BATCH; mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
            if (k.mv_size > GENCACHE__KEY_MAX)
                continue;
            memcpy(resume, k.mv_data, k.mv_size);
            resume[k.mv_size] = '\0';
            gencache__codec_meta m;
            if (v.mv_size <= GENCACHE__DISK_LOC_LEN ||
                gencache__codec_decode_sealed(
                    &quiet, d->alloc, (const char *)v.mv_data + GENCACHE__DISK_LOC_LEN,
                    v.mv_size - GENCACHE__DISK_LOC_LEN, &m) != GENCACHE_OK)
                continue; /* a get of it drops it (or, sealed under a key we lack, refuses it) */
            gencache__entry *e;
            if (gencache__codec_entry_new(d->alloc, &m, false, &e) == GENCACHE_OK) {
                if (pred(userdata, e)) {
                    strcpy(batch[n].key, resume);
                    batch[n].checksum = m.checksum;
                    batch[n].created_ms = m.created_ms;
                    n++;
                }
                gencache__entry_release(e);
            } else {
                rc = GENCACHE_ENOMEM;
            }
            gencache__codec_meta_clear(&m);
            if (rc != GENCACHE_OK)
                break;
        }
        done = mrc == MDB_NOTFOUND;
        mdb_cursor_close(c);
        mdb_txn_abort(txn);
        if (rc == GENCACHE_OK && n)
            rc = remove_batch(d, batch, n, count);
    }
    gencache__free(d->alloc, batch);
    return rc;
}

int gencache__disk_expire(gencache__tier *t, uint64_t now_ms, uint64_t *count)
{
    gencache__disk_tier *d = (gencache__disk_tier *)t;
    if (count)
        *count = 0;
    for (;;) {
        gencache__disk_txn w;
        int rc = gencache__disk_txn_begin(d, &w);
        if (rc != GENCACHE_OK)
            return rc;
        size_t n = 0;
        int mrc = gencache__disk_txn_expire(&w, now_ms, REMOVE_BATCH, &n);
        if (mrc != MDB_SUCCESS) {
            gencache__disk_txn_abort(&w);
            atomic_fetch_add(&d->backend_errors, 1);
            return gencache__disk_map_mdb(d, mrc, "cannot expire");
        }
        rc = gencache__disk_txn_commit(&w);
        if (rc != GENCACHE_OK)
            return rc;
        if (count)
            *count += n;
        if (n < REMOVE_BATCH) {
            /* Periodic maintenance bounds how long the last commit's meta page stays only in
             * the page cache (docs/internals/disk-durability.md). */
            gencache__disk_sync(d);
            return GENCACHE_OK;
        }
    }
}
