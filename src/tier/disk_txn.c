/*
 * disk_txn.c: the disk tier's write transactions. Every change to the index goes through one
 * LMDB write transaction that keeps five tables consistent with each other (meta: key -> record;
 * vals: key -> inline value; lru: last access + key; exp: expiry + key; blobs: content id ->
 * reference count) and the stored totals (bytes, pinned). Side effects that must not happen
 * before the commit (unlinking unreferenced blob files, on_evict callbacks) are queued in the
 * transaction and run only after it committed, outside every lock.
 */
#include <errno.h>
#include <string.h>

#include "tier/disk_guard.h"
#include "tier/disk_txn.h"
#include "tier/entry_codec.h"

static void put_be64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (56 - 8 * i));
}

uint64_t gencache__disk_get_be64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

size_t gencache__disk_time_key(unsigned char *buf, uint64_t t, const char *key)
{
    size_t n = strlen(key);
    put_be64(buf, t);
    memcpy(buf + 8, key, n);
    return 8 + n;
}

static int put_time(gencache__disk_txn *w, MDB_dbi dbi, uint64_t t, const char *key)
{
    unsigned char buf[8 + GENCACHE__KEY_MAX + 1];
    MDB_val k = {gencache__disk_time_key(buf, t, key), buf}, v = {0, (void *)""};
    return mdb_put(w->txn, dbi, &k, &v, 0);
}

static int del_time(gencache__disk_txn *w, MDB_dbi dbi, uint64_t t, const char *key)
{
    unsigned char buf[8 + GENCACHE__KEY_MAX + 1];
    MDB_val k = {gencache__disk_time_key(buf, t, key), buf};
    int rc = mdb_del(w->txn, dbi, &k, NULL);
    return rc == MDB_NOTFOUND ? MDB_SUCCESS : rc;
}

static int put_totals(gencache__disk_txn *w)
{
    uint64_t t[2] = {w->bytes, w->pinned};
    MDB_val k = {sizeof GENCACHE__DISK_TOTALS_KEY - 1, (void *)GENCACHE__DISK_TOTALS_KEY};
    MDB_val val = {sizeof t, t};
    return mdb_put(w->txn, w->d->main, &k, &val, 0);
}

static void get_totals(gencache__disk_txn *w)
{
    MDB_val k = {sizeof GENCACHE__DISK_TOTALS_KEY - 1, (void *)GENCACHE__DISK_TOTALS_KEY}, v;
    uint64_t t[2] = {0, 0};
    if (mdb_get(w->txn, w->d->main, &k, &v) == MDB_SUCCESS && v.mv_size == sizeof t)
        memcpy(t, v.mv_data, sizeof t);
    w->bytes = t[0];
    w->pinned = t[1];
}

/* Applies the access records gathered by gets since the last write transaction. */
static int flush_touches(gencache__disk_txn *w)
{
    gencache__disk_tier *d = w->d;
    size_t slots = 2 * GENCACHE__DISK_TOUCH_FLUSH;
    pthread_mutex_lock(&d->touch_lock);
    size_t n = d->n_touches;
    gencache__disk_touch *batch = NULL;
    if (n) {
        batch = gencache__malloc(d->alloc, n * sizeof *batch);
        if (batch) {
            size_t j = 0;
            for (size_t i = 0; i < slots && j < n; i++)
                if (d->touches[i].key[0])
                    batch[j++] = d->touches[i];
        }
        /* On allocation failure the records are dropped: they only refine LRU order. */
        memset(d->touches, 0, slots * sizeof *d->touches);
        d->n_touches = 0;
    }
    pthread_mutex_unlock(&d->touch_lock);
    if (!batch)
        return MDB_SUCCESS;
    int rc = MDB_SUCCESS;
    for (size_t i = 0; i < n && rc == MDB_SUCCESS; i++) {
        gencache__disk_touch *t = &batch[i];
        MDB_val k = {strlen(t->key), t->key}, v;
        if (mdb_get(w->txn, d->meta, &k, &v) != MDB_SUCCESS || v.mv_size <= GENCACHE__DISK_LOC_LEN)
            continue;
        gencache__codec_meta m;
        if (gencache__codec_decode_head(d->alloc, (const char *)v.mv_data + GENCACHE__DISK_LOC_LEN,
                                        v.mv_size - GENCACHE__DISK_LOC_LEN, &m) != GENCACHE_OK)
            continue;
        if (m.checksum != t->checksum || m.created_ms != t->created_ms) {
            gencache__codec_meta_clear(&m); /* made on a value this key no longer holds */
            continue;
        }
        MDB_val nv = {v.mv_size, NULL};
        rc = mdb_put(w->txn, d->meta, &k, &nv, MDB_RESERVE);
        if (rc == MDB_SUCCESS) {
            memcpy(nv.mv_data, v.mv_data, v.mv_size);
            gencache__codec_patch((char *)nv.mv_data + GENCACHE__DISK_LOC_LEN,
                                  nv.mv_size - GENCACHE__DISK_LOC_LEN, t->expires_ms,
                                  t->last_access_ms, t->hits);
        }
        if (rc == MDB_SUCCESS && !m.pinned && m.last_access_ms != t->last_access_ms) {
            rc = del_time(w, d->lru, m.last_access_ms, t->key);
            if (rc == MDB_SUCCESS)
                rc = put_time(w, d->lru, t->last_access_ms, t->key);
        }
        if (rc == MDB_SUCCESS && m.expires_ms != t->expires_ms) {
            if (m.expires_ms)
                rc = del_time(w, d->exp, m.expires_ms, t->key);
            if (rc == MDB_SUCCESS && t->expires_ms)
                rc = put_time(w, d->exp, t->expires_ms, t->key);
        }
        gencache__codec_meta_clear(&m);
    }
    gencache__free(d->alloc, batch);
    return rc;
}

int gencache__disk_txn_begin(gencache__disk_tier *d, gencache__disk_txn *w)
{
    memset(w, 0, sizeof *w);
    w->d = d;
    int rc = mdb_txn_begin(d->env, NULL, 0, &w->txn);
    /* A write transaction reads pages wherever LMDB needs them (the free list included), and a
     * SIGBUS there jumps out of LMDB in the middle of its own bookkeeping, which aborting the
     * transaction afterwards cannot always undo (its free-page list may be half updated). So a
     * file that shrank is caught here, before the transaction reads anything: the tier is
     * disabled as the SIGBUS guard would disable it. One fstat per write transaction. */
    uint64_t have, need;
    if (rc == MDB_SUCCESS && !gencache__disk_index_whole(d, &have, &need)) {
        mdb_txn_abort(w->txn);
        w->txn = NULL;
        gencache__disk_guard_disable(d, "index/data.mdb is shorter than its pages (it was "
                                        "truncated while in use)");
        return GENCACHE_EIO;
    }
    if (rc == MDB_SUCCESS)
        gencache__disk_guard_note_write(w->txn);
    if (rc != MDB_SUCCESS) {
        w->txn = NULL;
        atomic_fetch_add(&d->backend_errors, 1);
        return gencache__disk_map_mdb(d, rc, "cannot begin write");
    }
    get_totals(w);
    rc = flush_touches(w);
    if (rc != MDB_SUCCESS) {
        gencache__disk_txn_abort(w);
        atomic_fetch_add(&d->backend_errors, 1);
        return gencache__disk_map_mdb(d, rc, "cannot record accesses");
    }
    return GENCACHE_OK;
}

static void release_queued(gencache__disk_txn *w, bool deliver)
{
    gencache__disk_tier *d = w->d;
    for (size_t i = 0; i < w->n_ev; i++) {
        if (deliver && d->base.on_evict)
            d->base.on_evict(d->base.on_evict_userdata, w->ev[i].e, w->ev[i].reason);
        gencache__entry_release(w->ev[i].e);
    }
    gencache__free(d->alloc, w->ev);
    gencache__free(d->alloc, w->unref);
    w->ev = NULL;
    w->unref = NULL;
    w->n_ev = w->n_unref = 0;
}

void gencache__disk_txn_abort(gencache__disk_txn *w)
{
    if (w->txn) {
        gencache__disk_guard_note_write(NULL);
        mdb_txn_abort(w->txn);
    }
    w->txn = NULL;
    release_queued(w, false);
}

int gencache__disk_txn_commit(gencache__disk_txn *w)
{
    gencache__disk_tier *d = w->d;
    MDB_stat st = {0};
    int rc = put_totals(w);
    if (rc == MDB_SUCCESS)
        rc = mdb_stat(w->txn, d->meta, &st);
    if (rc == MDB_SUCCESS) {
        gencache__disk_guard_note_write(NULL); /* a fault in the commit leaves it to LMDB */
        rc = mdb_txn_commit(w->txn);
        w->txn = NULL; /* freed by the commit, whatever its outcome */
    }
    if (rc != MDB_SUCCESS) {
        gencache__disk_txn_abort(w);
        atomic_fetch_add(&d->backend_errors, 1);
        return gencache__disk_map_mdb(d, rc, "cannot commit");
    }
    atomic_fetch_add(&d->unsynced, 1);
    atomic_store(&d->bytes, w->bytes);
    atomic_store(&d->pinned, w->pinned);
    atomic_store(&d->entries, (uint64_t)st.ms_entries);
    atomic_fetch_add(&d->ev_capacity, w->n_capacity);
    atomic_fetch_add(&d->ev_expired, w->n_expired);
    atomic_fetch_add(&d->ev_corrupt, w->n_corrupt);
    if (!w->defer)
        gencache__disk_txn_finish(w);
    return GENCACHE_OK;
}

void gencache__disk_txn_finish(gencache__disk_txn *w)
{
    for (size_t i = 0; i < w->n_unref; i++)
        gencache__disk_blob_release(w->d, w->unref[i], false);
    release_queued(w, true);
}

static int push_unref(gencache__disk_txn *w, const unsigned char id[32])
{
    if (w->n_unref == w->cap_unref) {
        size_t cap = w->cap_unref ? 2 * w->cap_unref : 8;
        unsigned char(*n)[32] = gencache__malloc(w->d->alloc, cap * 32);
        if (!n)
            return ENOMEM;
        if (w->n_unref)
            memcpy(n, w->unref, w->n_unref * 32);
        gencache__free(w->d->alloc, w->unref);
        w->unref = n;
        w->cap_unref = cap;
    }
    memcpy(w->unref[w->n_unref++], id, 32);
    return MDB_SUCCESS;
}

static void push_evicted(gencache__disk_txn *w, const gencache__codec_meta *m, int reason)
{
    if (reason == GENCACHE__EVICT_CAPACITY)
        w->n_capacity++;
    else if (reason == GENCACHE__EVICT_EXPIRED)
        w->n_expired++;
    else
        w->n_corrupt++;
    if (!w->d->base.on_evict)
        return;
    if (w->n_ev == w->cap_ev) {
        size_t cap = w->cap_ev ? 2 * w->cap_ev : 8;
        gencache__disk_evicted *n = gencache__malloc(w->d->alloc, cap * sizeof *n);
        if (!n)
            return; /* the callback is advisory (ghosts, metrics); the removal stands */
        if (w->n_ev)
            memcpy(n, w->ev, w->n_ev * sizeof *n);
        gencache__free(w->d->alloc, w->ev);
        w->ev = n;
        w->cap_ev = cap;
    }
    gencache__entry *e;
    if (gencache__codec_entry_new(w->d->alloc, m, false, &e) != GENCACHE_OK)
        return;
    w->ev[w->n_ev].e = e;
    w->ev[w->n_ev].reason = (gencache__evict_reason)reason;
    w->n_ev++;
}

static int blob_ref(gencache__disk_txn *w, const unsigned char id[32], int delta, uint64_t size)
{
    MDB_val k = {GENCACHE__DISK_BLOB_ID_LEN, (void *)id}, v;
    uint64_t rec[2] = {0, size}; /* references, bytes */
    int rc = mdb_get(w->txn, w->d->blobs, &k, &v);
    if (rc == MDB_SUCCESS && v.mv_size == sizeof rec)
        memcpy(rec, v.mv_data, sizeof rec);
    else if (rc != MDB_NOTFOUND && rc != MDB_SUCCESS)
        return rc;
    if (delta < 0 && rec[0] <= 1) {
        rc = mdb_del(w->txn, w->d->blobs, &k, NULL);
        if (rc == MDB_NOTFOUND)
            rc = MDB_SUCCESS;
        return rc == MDB_SUCCESS ? push_unref(w, id) : rc;
    }
    rec[0] = delta < 0 ? rec[0] - 1 : rec[0] + 1;
    MDB_val nv = {sizeof rec, rec};
    return mdb_put(w->txn, w->d->blobs, &k, &nv, 0);
}

int gencache__disk_txn_remove(gencache__disk_txn *w, const char *key, int reason,
                              const uint64_t *expect_checksum, const uint64_t *expect_created)
{
    gencache__disk_tier *d = w->d;
    MDB_val k = {strlen(key), (void *)key}, v;
    int rc = mdb_get(w->txn, d->meta, &k, &v);
    if (rc != MDB_SUCCESS)
        return rc;
    gencache__codec_meta m;
    unsigned char loc[GENCACHE__DISK_LOC_LEN];
    /* The whole record when its key is at hand (on_evict callbacks want the tenant), else the
     * part in the clear, which is all the bookkeeping needs. Not counted as refused: nobody
     * asked to read it. */
    gencache__seal quiet = {.keys = d->seal.keys};
    const char *rec = (const char *)v.mv_data + GENCACHE__DISK_LOC_LEN;
    size_t rec_len = v.mv_size - GENCACHE__DISK_LOC_LEN;
    bool decoded =
        v.mv_size > GENCACHE__DISK_LOC_LEN &&
        (gencache__codec_decode_sealed(&quiet, d->alloc, rec, rec_len, &m) == GENCACHE_OK ||
         gencache__codec_decode_head(d->alloc, rec, rec_len, &m) == GENCACHE_OK);
    if (!decoded) {
        /* A damaged record: remove what can be found by key. Its lru/exp records, keyed by times
         * we cannot read, are dropped when eviction or expiry reaches them. */
        rc = mdb_del(w->txn, d->meta, &k, NULL);
        int r2 = mdb_del(w->txn, d->vals, &k, NULL);
        if (rc == MDB_SUCCESS && r2 != MDB_NOTFOUND)
            rc = r2;
        w->n_corrupt++;
        return rc;
    }
    if ((expect_checksum && m.checksum != *expect_checksum) ||
        (expect_created && m.created_ms != *expect_created)) {
        gencache__codec_meta_clear(&m);
        return MDB_KEYEXIST; /* replaced since the caller looked */
    }
    memcpy(loc, v.mv_data, sizeof loc);
    uint32_t kind;
    memcpy(&kind, loc, 4);
    rc = mdb_del(w->txn, d->meta, &k, NULL);
    if (rc == MDB_SUCCESS && kind == GENCACHE__DISK_INLINE) {
        rc = mdb_del(w->txn, d->vals, &k, NULL);
        if (rc == MDB_NOTFOUND)
            rc = MDB_SUCCESS;
    } else if (rc == MDB_SUCCESS) {
        rc = blob_ref(w, loc + 8, -1, m.size);
    }
    if (rc == MDB_SUCCESS && !m.pinned)
        rc = del_time(w, d->lru, m.last_access_ms, key);
    if (rc == MDB_SUCCESS && m.expires_ms)
        rc = del_time(w, d->exp, m.expires_ms, key);
    if (rc == MDB_SUCCESS) {
        uint64_t charge = gencache__disk_charge(m.size, m.record_len);
        w->bytes = w->bytes > charge ? w->bytes - charge : 0;
        if (m.pinned && w->pinned)
            w->pinned--;
        if (reason >= 0)
            push_evicted(w, &m, reason);
    }
    gencache__codec_meta_clear(&m);
    return rc;
}

int gencache__disk_txn_insert(gencache__disk_txn *w, const gencache__entry *e,
                              gencache__codec_value *sv, const unsigned char *blob_id,
                              uint64_t now_ms)
{
    gencache__disk_tier *d = w->d;
    uint64_t expires = atomic_load(&e->expires_ms);
    uint64_t last = now_ms;
    uint64_t hits = atomic_load(&e->hits);
    MDB_val k = {strlen(e->key), (void *)e->key};
    int rc = MDB_SUCCESS;
    /* The value first: a sealed one gets its tag and checksum, which the record carries. */
    if (blob_id) {
        rc = blob_ref(w, blob_id, +1, e->size);
    } else {
        MDB_val val = {e->size, NULL};
        rc = mdb_put(w->txn, d->vals, &k, &val, MDB_RESERVE);
        if (rc == MDB_SUCCESS && sv->sealed && !sv->data) {
            if (gencache__codec_value_seal_to(&d->seal, e, sv, val.mv_data) != GENCACHE_OK)
                return EIO;
        } else if (rc == MDB_SUCCESS && e->size) {
            memcpy(val.mv_data, sv->data, e->size);
        }
    }
    if (rc != MDB_SUCCESS)
        return rc;
    size_t clen = gencache__codec_value_size(e, sv);
    MDB_val v = {GENCACHE__DISK_LOC_LEN + clen, NULL};
    rc = mdb_put(w->txn, d->meta, &k, &v, MDB_RESERVE);
    if (rc != MDB_SUCCESS)
        return rc;
    unsigned char *p = v.mv_data;
    uint32_t kind = blob_id ? GENCACHE__DISK_BLOB : GENCACHE__DISK_INLINE, zero = 0;
    memcpy(p, &kind, 4);
    memcpy(p + 4, &zero, 4);
    if (blob_id)
        memcpy(p + 8, blob_id, GENCACHE__DISK_BLOB_ID_LEN);
    else
        memset(p + 8, 0, GENCACHE__DISK_BLOB_ID_LEN);
    size_t len;
    if (gencache__codec_encode_value(&d->seal, e, sv, expires, last, hits,
                                     p + GENCACHE__DISK_LOC_LEN, clen, &len) != GENCACHE_OK)
        return EINVAL;
    if (!e->pinned)
        rc = put_time(w, d->lru, last, e->key);
    if (rc == MDB_SUCCESS && expires)
        rc = put_time(w, d->exp, expires, e->key);
    if (rc == MDB_SUCCESS) {
        w->bytes += gencache__disk_charge(e->size, clen);
        if (e->pinned)
            w->pinned++;
    }
    return rc;
}

/* The first record of a time-ordered table, skipping `skip` (the entry being put). Returns
 * MDB_SUCCESS with *t and key, or MDB_NOTFOUND. */
static int first_time_key(gencache__disk_txn *w, MDB_dbi dbi, const char *skip, uint64_t *t,
                          char *key)
{
    MDB_cursor *c;
    int rc = mdb_cursor_open(w->txn, dbi, &c);
    if (rc != MDB_SUCCESS)
        return rc;
    MDB_val k, v;
    size_t skip_len = skip ? strlen(skip) : 0;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == MDB_SUCCESS;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        if (k.mv_size < 9 || k.mv_size > 8 + GENCACHE__KEY_MAX) {
            mdb_cursor_del(c, 0); /* not ours: cannot point at an entry */
            continue;
        }
        size_t n = k.mv_size - 8;
        if (skip && n == skip_len && memcmp((char *)k.mv_data + 8, skip, n) == 0)
            continue;
        *t = gencache__disk_get_be64(k.mv_data);
        memcpy(key, (char *)k.mv_data + 8, n);
        key[n] = '\0';
        /* A time record whose entry is gone (a damaged record was dropped) is garbage. */
        MDB_val mk = {n, key}, mv;
        if (mdb_get(w->txn, w->d->meta, &mk, &mv) == MDB_NOTFOUND) {
            mdb_cursor_del(c, 0);
            continue;
        }
        break;
    }
    mdb_cursor_close(c);
    return rc;
}

int gencache__disk_txn_expire(gencache__disk_txn *w, uint64_t now_ms, size_t limit, size_t *n)
{
    char key[GENCACHE__KEY_MAX + 1];
    *n = 0;
    while (*n < limit) {
        uint64_t t;
        int rc = first_time_key(w, w->d->exp, NULL, &t, key);
        if (rc == MDB_NOTFOUND || (rc == MDB_SUCCESS && t > now_ms))
            return MDB_SUCCESS;
        if (rc == MDB_SUCCESS)
            rc = gencache__disk_txn_remove(w, key, GENCACHE__EVICT_EXPIRED, NULL, NULL);
        if (rc != MDB_SUCCESS)
            return rc;
        (*n)++;
    }
    return MDB_SUCCESS;
}

static bool over(gencache__disk_txn *w, uint64_t add_bytes, uint64_t add_entries)
{
    gencache__disk_tier *d = w->d;
    if (d->max_bytes && w->bytes + add_bytes > d->max_bytes)
        return true;
    if (d->max_entries) {
        MDB_stat st;
        if (mdb_stat(w->txn, d->meta, &st) == MDB_SUCCESS &&
            (uint64_t)st.ms_entries + add_entries > d->max_entries)
            return true;
    }
    return false;
}

int gencache__disk_txn_make_room(gencache__disk_txn *w, const char *keep, uint64_t now_ms)
{
    char key[GENCACHE__KEY_MAX + 1];
    if (!over(w, 0, 0))
        return MDB_SUCCESS;
    size_t n;
    int rc = gencache__disk_txn_expire(w, now_ms, SIZE_MAX, &n);
    while (rc == MDB_SUCCESS && over(w, 0, 0)) {
        uint64_t t;
        rc = first_time_key(w, w->d->lru, keep, &t, key);
        if (rc == MDB_NOTFOUND)
            return GENCACHE__DISK_FULL; /* the rest is pinned */
        if (rc == MDB_SUCCESS)
            rc = gencache__disk_txn_remove(w, key, GENCACHE__EVICT_CAPACITY, NULL, NULL);
    }
    return rc;
}
