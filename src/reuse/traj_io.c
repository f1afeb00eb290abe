/*
 * traj_io.c: the trajectory index beyond one process. traj.idx, in the disk tier's directory,
 * holds every record with its unit vector (a 24-byte header, little-endian records that name
 * their layer by name, the XXH3-64 of everything before it), replaced whole like reuse.idx, so a
 * crash leaves the old file or the new one. Beside its latents, each trajectory (a request
 * without its step) keeps one small entry of its own in the layer, its embedding entry: the
 * embedding once, and the step and key of each checkpoint stored. The tiers keep those like any
 * entry, so when traj.idx is missing or damaged the index is rebuilt from the disk tier: every
 * checkpoint still stored gets its record back, and none that is gone.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>

#include "cache.h"
#include "key/key.h"
#include "reuse.h"

static const unsigned char FILE_MAGIC[8] = {'G', 'C', 'T', 'R', 'A', 'J', 'X', 1};
#define FILE_VERSION 1u
#define HEADER_BYTES 24u
#define NAME_BYTES   (GENCACHE__LAYER_NAME_MAX + 1)
/* name, model_hash, key_hash, tenant_hash, hex, step, dim; then dim f32 */
#define REC_FIXED (NAME_BYTES + 3 * 8 + 32 + 2 * 4)

/* The embedding entry's value: magic, dim, count, dim f32, then count (step, 32-byte key). */
static const unsigned char EMB_MAGIC[8] = {'G', 'C', 'T', 'R', 'A', 'J', 'E', 1};
#define EMB_HEADER   16u
#define EMB_CKPT     36u
#define EMB_MAX_CKPT 1024u /* checkpoints one trajectory names; later ones are indexed only */

const char gencache__traj_emb_type[] = "application/vnd.gencache.trajectory-embedding";

/* ---- traj.idx ---- */

static void put_rec(void *ud, const gencache__traj_rec *rec, const float *unit, uint32_t dim)
{
    unsigned char *p = gencache__idx_record(ud, rec->layer, REC_FIXED + (size_t)dim * 4);
    if (!p)
        return;
    gencache__le64_put(p, rec->model_hash);
    gencache__le64_put(p + 8, rec->key_hash);
    gencache__le64_put(p + 16, rec->tenant_hash);
    memcpy(p + 24, rec->hex, 32);
    gencache__le32_put(p + 56, rec->step);
    gencache__le32_put(p + 60, dim);
    p += 64;
    for (uint32_t i = 0; i < dim; i++) {
        uint32_t bits;
        memcpy(&bits, &unit[i], 4);
        gencache__le32_put(p + 4 * (size_t)i, bits);
    }
}

int gencache__traj_save_file(gencache__traj *t, const char *path,
                             const gencache__reuse_layers *layers)
{
    gencache__idx_writer w;
    if (gencache__idx_begin(&w, layers) != GENCACHE_OK)
        return GENCACHE_ENOMEM;
    gencache__traj_each(t, put_rec, &w);
    return gencache__idx_finish(&w, FILE_MAGIC, FILE_VERSION, path);
}

/* Checks the whole file before anything is added: sizes, record count, checksum. */
static int check_file(const unsigned char *buf, size_t size, uint64_t *count)
{
    int rc = gencache__idx_header(buf, size, FILE_MAGIC, FILE_VERSION, count);
    if (rc != GENCACHE_OK)
        return rc;
    if (gencache__checksum(buf, size - 8) != gencache__le64_get(buf + size - 8))
        return GENCACHE_ECORRUPT;
    size_t off = HEADER_BYTES, end = size - 8;
    for (uint64_t i = 0; i < *count; i++) {
        if (end - off < REC_FIXED)
            return GENCACHE_EPARSE;
        uint32_t dim = gencache__le32_get(buf + off + NAME_BYTES + 60);
        if (dim == 0 || dim > GENCACHE__TRAJ_DIM_MAX || end - off - REC_FIXED < (size_t)dim * 4)
            return GENCACHE_EPARSE;
        off += REC_FIXED + (size_t)dim * 4;
    }
    return off == end ? GENCACHE_OK : GENCACHE_EPARSE;
}

int gencache__traj_load_file(gencache__traj *t, const char *path,
                             const gencache__reuse_layers *layers, uint64_t *added)
{
    *added = 0;
    unsigned char *buf;
    size_t size = 0;
    int rc = gencache__file_read(path, &buf, &size);
    if (rc != GENCACHE_OK)
        return rc;
    uint64_t count = 0;
    rc = check_file(buf, size, &count);
    float *vec = rc == GENCACHE_OK ? malloc(sizeof(float) * GENCACHE__TRAJ_DIM_MAX) : NULL;
    if (rc == GENCACHE_OK && !vec)
        rc = GENCACHE_ENOMEM;
    const unsigned char *p = buf + HEADER_BYTES;
    for (uint64_t i = 0; rc == GENCACHE_OK && i < count; i++) {
        char name[NAME_BYTES];
        memcpy(name, p, NAME_BYTES);
        name[GENCACHE__LAYER_NAME_MAX] = '\0';
        const unsigned char *q = p + NAME_BYTES;
        gencache__traj_rec rec = {0};
        rec.model_hash = gencache__le64_get(q);
        rec.key_hash = gencache__le64_get(q + 8);
        rec.tenant_hash = gencache__le64_get(q + 16);
        memcpy(rec.hex, q + 24, 32);
        rec.step = gencache__le32_get(q + 56);
        uint32_t dim = gencache__le32_get(q + 60);
        q += 64;
        for (uint32_t k = 0; k < dim; k++) {
            uint32_t bits = gencache__le32_get(q + 4 * (size_t)k);
            memcpy(&vec[k], &bits, 4);
        }
        p = q + (size_t)dim * 4;
        int li = layers->index_of(layers->ud, name);
        if (li < 0 || rec.step == 0)
            continue; /* a layer this config no longer defines */
        rec.layer = (uint32_t)li;
        int arc = gencache__traj_add(t, &rec, vec, dim);
        if (arc == GENCACHE_OK)
            (*added)++;
        else if (arc == GENCACHE_ENOMEM)
            rc = arc; /* EINVAL: a zero vector or a clashing dimension, skipped */
    }
    free(vec);
    free(buf);
    return rc;
}

/* ---- the embedding entry of a trajectory ---- */

/* The key of the embedding entry of req's trajectory in layer lname: the SHA-256 of a domain
 * tag and the hash of every field of the layer's recipe but the step. */
static int emb_key(const gencache_request *req, const char *lname, char *out)
{
    uint64_t ctx = 0;
    int rc = gencache__request_context(req, lname, "step", &ctx);
    if (rc != GENCACHE_OK)
        return rc;
    static const char tag[] = "gencache-traj-emb-v1\n";
    unsigned char le[8], d[EVP_MAX_MD_SIZE];
    unsigned dlen = 0;
    gencache__le64_put(le, ctx);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int ok = md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) &&
             EVP_DigestUpdate(md, tag, sizeof tag - 1) && EVP_DigestUpdate(md, le, 8) &&
             EVP_DigestFinal_ex(md, d, &dlen);
    EVP_MD_CTX_free(md);
    if (!ok || dlen != 32) {
        ERR_clear_error();
        return GENCACHE_ENOMEM;
    }
    size_t ln = strlen(lname);
    memcpy(out, lname, ln);
    out[ln] = '/';
    gencache__reuse_hex_encode(d, 32, out + ln + 1);
    return GENCACHE_OK;
}

/* A parsed embedding entry: pointers into its value. */
typedef struct emb_view {
    uint32_t dim, n;
    const unsigned char *vec;   /* dim f32, little-endian */
    const unsigned char *ckpts; /* n of (step u32, 32-byte key) */
} emb_view;

static bool emb_parse(const unsigned char *v, size_t size, emb_view *out)
{
    if (size < EMB_HEADER || memcmp(v, EMB_MAGIC, 8) != 0)
        return false;
    out->dim = gencache__le32_get(v + 8);
    out->n = gencache__le32_get(v + 12);
    if (out->dim == 0 || out->dim > GENCACHE__TRAJ_DIM_MAX || out->n > EMB_MAX_CKPT ||
        size != EMB_HEADER + (size_t)out->dim * 4 + (size_t)out->n * EMB_CKPT)
        return false;
    out->vec = v + EMB_HEADER;
    out->ckpts = out->vec + (size_t)out->dim * 4;
    return true;
}

static void vec_get(const emb_view *e, float *out)
{
    for (uint32_t i = 0; i < e->dim; i++) {
        uint32_t bits = gencache__le32_get(e->vec + 4 * (size_t)i);
        memcpy(&out[i], &bits, 4);
    }
}

int gencache__traj_note(gencache *c, const gencache_caller *caller, const gencache_request *req,
                        const char *lname, unsigned step, const unsigned char *hex,
                        const float *vec, uint32_t dim, const gencache_meta *ck_meta)
{
    char key[GENCACHE_KEY_MAX];
    int rc = emb_key(req, lname, key);
    if (rc != GENCACHE_OK)
        return rc;
    /* The trajectory's entry as it stands: kept when it holds this embedding. Two checkpoints of
     * one trajectory stored at once may both start from the same old entry, and the later put
     * wins: the other checkpoint is then missing from it, which only a rebuild would notice (a
     * generation stores its checkpoints one after another). */
    gencache_handle *h = NULL;
    emb_view old = {0};
    bool same = false;
    if (gencache_peek_as(c, caller, key, &h) == GENCACHE_OK &&
        emb_parse(gencache_handle_data(h), gencache_handle_size(h), &old) && old.dim == dim) {
        same = true;
        for (uint32_t i = 0; same && i < dim; i++) {
            uint32_t bits;
            memcpy(&bits, &vec[i], 4);
            same = gencache__le32_get(old.vec + 4 * (size_t)i) == bits;
        }
    }
    uint32_t n = same ? old.n : 0;
    bool listed = false;
    for (uint32_t i = 0; i < n && !listed; i++)
        listed = gencache__le32_get(old.ckpts + (size_t)i * EMB_CKPT) == step &&
                 memcmp(old.ckpts + (size_t)i * EMB_CKPT + 4, hex, 32) == 0;
    if (listed || n == EMB_MAX_CKPT) {
        gencache_handle_release(h);
        return GENCACHE_OK;
    }
    size_t size = EMB_HEADER + (size_t)dim * 4 + (size_t)(n + 1) * EMB_CKPT;
    unsigned char *v = malloc(size);
    if (!v) {
        gencache_handle_release(h);
        return GENCACHE_ENOMEM;
    }
    memcpy(v, EMB_MAGIC, 8);
    gencache__le32_put(v + 8, dim);
    gencache__le32_put(v + 12, n + 1);
    for (uint32_t i = 0; i < dim; i++) {
        uint32_t bits;
        memcpy(&bits, &vec[i], 4);
        gencache__le32_put(v + EMB_HEADER + 4 * (size_t)i, bits);
    }
    unsigned char *ck = v + EMB_HEADER + (size_t)dim * 4;
    if (n)
        memcpy(ck, old.ckpts, (size_t)n * EMB_CKPT);
    gencache_handle_release(h);
    gencache__le32_put(ck + (size_t)n * EMB_CKPT, step);
    memcpy(ck + (size_t)n * EMB_CKPT + 4, hex, 32);
    gencache_meta m;
    gencache_meta_init(&m);
    m.content_type = gencache__traj_emb_type;
    m.model = gencache_request_model(req);
    if (ck_meta) {
        /* It lives and goes as its checkpoints do: their TTL, tags and cost. */
        m.tags = ck_meta->tags;
        m.ttl_ms = ck_meta->ttl_ms;
        m.cost_ms = ck_meta->cost_ms;
    }
    rc = gencache_put_as(c, caller, key, v, size, &m);
    free(v);
    return rc;
}

/* ---- rebuilding from the disk tier ---- */

typedef struct found {
    char *key;    /* the stored key */
    char *tenant; /* NULL: none */
    uint64_t hash;
} found;

typedef struct finder {
    found *list;
    size_t n, cap;
    bool oom;
} finder;

static bool find_emb(void *ud, const gencache__entry *e)
{
    finder *f = ud;
    if (f->oom || !e->content_type || strcmp(e->content_type, gencache__traj_emb_type) != 0)
        return false;
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 64;
        found *nl = realloc(f->list, cap * sizeof *nl);
        if (!nl) {
            f->oom = true;
            return false;
        }
        f->list = nl;
        f->cap = cap;
    }
    found *x = &f->list[f->n];
    x->key = strdup(e->key);
    x->tenant = e->tenant ? strdup(e->tenant) : NULL;
    x->hash = e->hash;
    if (!x->key || (e->tenant && !x->tenant)) {
        free(x->key);
        free(x->tenant);
        f->oom = true;
        return false;
    }
    f->n++;
    return false; /* a scan: nothing is removed */
}

/* Adds the records of one embedding entry's checkpoints that are still stored. */
static int rebuild_one(gencache *c, gencache__traj *t, gencache__tier *d, const found *x,
                       float *vec, uint64_t *added)
{
    gencache__entry *e = NULL;
    if (d->ops->get(d, x->key, x->hash, gencache__cache_now_ms(c), false, &e) != GENCACHE_OK)
        return GENCACHE_OK; /* gone since the scan */
    emb_view v;
    const char *slash = strchr(e->key, '/');
    char lname[GENCACHE_KEY_MAX];
    int li = -1;
    if (slash && (size_t)(slash - e->key) < sizeof lname) {
        memcpy(lname, e->key, (size_t)(slash - e->key));
        lname[slash - e->key] = '\0';
        li = gencache__reuse_layer_index(c, lname);
    }
    if (li < 0 || !e->model || !emb_parse(e->value, e->size, &v)) {
        gencache__entry_release(e);
        return GENCACHE_OK;
    }
    vec_get(&v, vec);
    gencache_caller who;
    gencache_caller_init(&who);
    who.tenant = x->tenant;
    gencache__traj_rec rec = {.layer = (uint32_t)li};
    rec.model_hash = gencache__checksum(e->model, strlen(e->model));
    rec.tenant_hash = gencache__reuse_tenant_hash(c, rec.layer, &who);
    int rc = GENCACHE_OK;
    for (uint32_t i = 0; rc == GENCACHE_OK && i < v.n; i++) {
        const unsigned char *ck = v.ckpts + (size_t)i * EMB_CKPT;
        rec.step = gencache__le32_get(ck);
        memcpy(rec.hex, ck + 4, 32);
        char key[GENCACHE_KEY_MAX];
        size_t ln = strlen(lname);
        memcpy(key, lname, ln);
        key[ln] = '/';
        gencache__reuse_hex_encode(rec.hex, 32, key + ln + 1);
        if (rec.step == 0 ||
            gencache__reuse_stored_key_hash(c, &who, key, &rec.key_hash) != GENCACHE_OK)
            continue; /* that checkpoint is gone */
        int arc = gencache__traj_add(t, &rec, vec, v.dim);
        if (arc == GENCACHE_OK)
            (*added)++;
        else if (arc == GENCACHE_ENOMEM)
            rc = arc;
    }
    gencache__entry_release(e);
    return rc;
}

int gencache__traj_rebuild(gencache *c, gencache__traj *t, uint64_t *added)
{
    *added = 0;
    if (c->disk_tier < 0)
        return GENCACHE_OK;
    gencache__tier *d = c->tiers[c->disk_tier];
    finder f = {0};
    uint64_t none = 0;
    int rc = d->ops->remove_if(d, find_emb, &f, &none);
    if (rc == GENCACHE_OK && f.oom)
        rc = GENCACHE_ENOMEM;
    float *vec = rc == GENCACHE_OK && f.n ? malloc(sizeof(float) * GENCACHE__TRAJ_DIM_MAX) : NULL;
    if (rc == GENCACHE_OK && f.n && !vec)
        rc = GENCACHE_ENOMEM;
    for (size_t i = 0; i < f.n; i++) {
        if (rc == GENCACHE_OK)
            rc = rebuild_one(c, t, d, &f.list[i], vec, added);
        free(f.list[i].key);
        free(f.list[i].tenant);
    }
    free(f.list);
    free(vec);
    return rc;
}
