/*
 * records_io.c: the reuse records on disk (reuse.idx in the disk tier's directory). The file is
 * a 24-byte header (magic "GCREUSE\1", version, record count), fixed-size little-endian records
 * that name their layer by name, and the XXH3-64 checksum of everything before it, replaced whole
 * (gencache__file_replace), so a crash leaves the old file or the new one; a loader that finds a
 * wrong size or checksum refuses the whole file.
 */
#include <stdlib.h>
#include <string.h>

#include "reuse.h"

static const unsigned char MAGIC[8] = {'G', 'C', 'R', 'E', 'U', 'S', 'E', 1};
#define FILE_VERSION 1u
#define HEADER_BYTES 24u
#define NAME_BYTES   (GENCACHE__LAYER_NAME_MAX + 1)
#define REC_BYTES    GENCACHE__REUSE_REC_BYTES

/* A layer's name, NUL-padded to NAME_BYTES. */
static void put_name(unsigned char *p, const char *name)
{
    memset(p, 0, NAME_BYTES);
    memcpy(p, name, strnlen(name, GENCACHE__LAYER_NAME_MAX));
}

int gencache__idx_begin(gencache__idx_writer *w, const gencache__reuse_layers *layers)
{
    *w = (gencache__idx_writer){.layers = layers, .cap = 4096, .n = HEADER_BYTES};
    w->buf = malloc(w->cap);
    return w->buf ? GENCACHE_OK : GENCACHE_ENOMEM;
}

unsigned char *gencache__idx_record(gencache__idx_writer *w, uint32_t layer, size_t bytes)
{
    const char *name = w->layers->name_of(w->layers->ud, layer);
    if (!name || w->oom)
        return NULL;
    if (w->cap - w->n < bytes + 8) {
        size_t ncap = w->cap * 2 + bytes + 8;
        unsigned char *nb = realloc(w->buf, ncap);
        if (!nb) {
            w->oom = true;
            return NULL;
        }
        w->buf = nb;
        w->cap = ncap;
    }
    unsigned char *p = w->buf + w->n;
    put_name(p, name);
    w->n += bytes;
    w->count++;
    return p + NAME_BYTES;
}

int gencache__idx_finish(gencache__idx_writer *w, const unsigned char magic[8], uint64_t version,
                         const char *path)
{
    int rc = GENCACHE_ENOMEM;
    if (!w->oom) {
        memcpy(w->buf, magic, 8);
        gencache__le64_put(w->buf + 8, version);
        gencache__le64_put(w->buf + 16, w->count);
        gencache__le64_put(w->buf + w->n, gencache__checksum(w->buf, w->n));
        rc = gencache__file_replace(path, w->buf, w->n + 8);
    }
    free(w->buf);
    w->buf = NULL;
    return rc;
}

/* Writes a record's fields, everything after its layer's name. */
static void encode_fields(const gencache__reuse_rec *rec, unsigned char *p)
{
    *p++ = (unsigned char)rec->kind;
    gencache__le64_put(p, rec->key_hash);
    gencache__le64_put(p + 8, rec->ctx);
    gencache__le64_put(p + 16, rec->tenant_hash);
    gencache__le64_put(p + 24, rec->stamp);
    p += 32;
    memcpy(p, rec->hex, 32);
    p += 32;
    gencache__le32_put(p, rec->sig.width);
    gencache__le32_put(p + 4, rec->sig.height);
    gencache__le64_put(p + 8, rec->sig.phash);
    gencache__le64_put(p + 16, rec->sig.dhash);
    p += 24;
    memcpy(p, rec->digest, 32);
    p += 32;
    memcpy(p, rec->seed, 24);
    p[23] = '\0';
    p += 24;
    gencache__le64_put(p, rec->simhash);
    gencache__le64_put(p + 8, rec->text_hash);
}

void gencache__reuse_rec_encode(const gencache__reuse_rec *rec, const char *name, unsigned char *p)
{
    put_name(p, name);
    encode_fields(rec, p + NAME_BYTES);
}

int gencache__idx_header(const unsigned char *buf, size_t size, const unsigned char magic[8],
                         uint64_t version, uint64_t *count)
{
    if (size < HEADER_BYTES + 8 || memcmp(buf, magic, 7) != 0)
        return GENCACHE_EPARSE;
    if (buf[7] != magic[7] || gencache__le64_get(buf + 8) != version)
        return GENCACHE_EVERSION;
    *count = gencache__le64_get(buf + 16);
    return GENCACHE_OK;
}

static void put_rec(void *ud, const gencache__reuse_rec *rec)
{
    unsigned char *p = gencache__idx_record(ud, rec->layer, REC_BYTES);
    if (p)
        encode_fields(rec, p);
}

int gencache__reuse_save_file(gencache__reuse *r, const char *path,
                              const gencache__reuse_layers *layers)
{
    gencache__idx_writer w;
    if (gencache__idx_begin(&w, layers) != GENCACHE_OK)
        return GENCACHE_ENOMEM;
    gencache__reuse_each(r, put_rec, &w);
    return gencache__idx_finish(&w, MAGIC, FILE_VERSION, path);
}

void gencache__reuse_rec_decode(const unsigned char *p, gencache__reuse_rec *rec, char *name)
{
    memset(rec, 0, sizeof *rec);
    memcpy(name, p, NAME_BYTES);
    name[GENCACHE__LAYER_NAME_MAX] = '\0';
    p += NAME_BYTES;
    rec->kind = *p++;
    rec->key_hash = gencache__le64_get(p);
    rec->ctx = gencache__le64_get(p + 8);
    rec->tenant_hash = gencache__le64_get(p + 16);
    rec->stamp = gencache__le64_get(p + 24);
    p += 32;
    memcpy(rec->hex, p, 32);
    p += 32;
    rec->sig.width = gencache__le32_get(p);
    rec->sig.height = gencache__le32_get(p + 4);
    rec->sig.phash = gencache__le64_get(p + 8);
    rec->sig.dhash = gencache__le64_get(p + 16);
    p += 24;
    memcpy(rec->digest, p, 32);
    p += 32;
    memcpy(rec->seed, p, 24);
    rec->seed[23] = '\0';
    p += 24;
    rec->simhash = gencache__le64_get(p);
    rec->text_hash = gencache__le64_get(p + 8);
}

int gencache__reuse_load_file(gencache__reuse *r, const char *path,
                              const gencache__reuse_layers *layers)
{
    unsigned char *buf;
    size_t size = 0;
    int rc = gencache__file_read(path, &buf, &size);
    if (rc != GENCACHE_OK)
        return rc;
    uint64_t count = 0;
    rc = gencache__idx_header(buf, size, MAGIC, FILE_VERSION, &count);
    if (rc == GENCACHE_OK && (count > (size - HEADER_BYTES - 8) / REC_BYTES ||
                              HEADER_BYTES + count * REC_BYTES + 8 != size))
        rc = GENCACHE_EPARSE;
    if (rc == GENCACHE_OK &&
        gencache__checksum(buf, size - 8) != gencache__le64_get(buf + size - 8))
        rc = GENCACHE_ECORRUPT;
    for (uint64_t i = 0; rc == GENCACHE_OK && i < count; i++) {
        gencache__reuse_rec rec;
        char name[NAME_BYTES];
        gencache__reuse_rec_decode(buf + HEADER_BYTES + i * REC_BYTES, &rec, name);
        int layer = layers->index_of(layers->ud, name);
        if (layer < 0 || rec.kind < GENCACHE__REUSE_IMAGE || rec.kind > GENCACHE__REUSE_PROMPT)
            continue;
        rec.layer = (uint32_t)layer;
        rc = gencache__reuse_add(r, &rec);
    }
    free(buf);
    return rc;
}
