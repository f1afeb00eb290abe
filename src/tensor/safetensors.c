/*
 * safetensors.c: reads Hugging Face's safetensors format (an 8-byte little-endian header
 * length, a JSON header naming each tensor's dtype, shape and data_offsets, then the raw data).
 * Files come from outside, so everything is checked before anything is trusted: the header's
 * length against a limit and the buffer, the JSON's form, each dtype and shape, and that the
 * tensors tile the data region exactly (sorted by offset: contiguous from 0, no gap, no overlap,
 * nothing left over). A file that passes can be read through without a bounds check.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "tensor/tensor.h"

typedef struct st_tensor {
    char *name;
    gencache_dtype dtype;
    uint32_t ndim;
    int64_t shape[GENCACHE_MAX_DIMS];
    uint64_t begin, end; /* offsets in the data region */
} st_tensor;

struct gencache_safetensors {
    const unsigned char *data; /* the data region: after the header */
    void *map;                 /* the mapped file, when opened from a path; else NULL */
    size_t map_size;
    size_t n;
    st_tensor *tensors; /* sorted by offset */
    size_t n_meta;
    char **meta; /* 2 * n_meta: key, value, key, value ... */
};

static const struct {
    const char *name;
    gencache_dtype dtype;
} st_dtypes[] = {
    {"F32", GENCACHE_DTYPE_F32}, {"F16", GENCACHE_DTYPE_F16}, {"BF16", GENCACHE_DTYPE_BF16},
    {"I8", GENCACHE_DTYPE_I8},   {"U8", GENCACHE_DTYPE_U8},   {"I32", GENCACHE_DTYPE_I32},
    {"I64", GENCACHE_DTYPE_I64},
};

/* dtypes of the format that gencache does not carry: refused as unsupported, not malformed. */
static const char *const st_other_dtypes[] = {
    "F64",     "I16",     "U16",     "U32",     "U64", "BOOL", "F8_E4M3",
    "F8_E5M2", "F8_E8M0", "F6_E2M3", "F6_E3M2", "F4",  "C64",
};

const char *gencache__safetensors_dtype_name(gencache_dtype dtype)
{
    for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
        if (st_dtypes[i].dtype == dtype)
            return st_dtypes[i].name;
    return NULL;
}

void gencache_safetensors_options_init(gencache_safetensors_options *opts)
{
    memset(opts, 0, sizeof *opts);
    opts->struct_size = sizeof *opts;
    opts->max_header_bytes = GENCACHE_SAFETENSORS_MAX_HEADER;
}

static int fail(const gencache_safetensors_options *o, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(const gencache_safetensors_options *o, int rc, const char *fmt, ...)
{
    if (o && o->errbuf && o->errbuf_size > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(o->errbuf, o->errbuf_size, fmt, ap);
        va_end(ap);
    }
    return rc;
}

void gencache_safetensors_close(gencache_safetensors *st)
{
    if (!st)
        return;
    for (size_t i = 0; i < st->n; i++)
        free(st->tensors[i].name);
    free(st->tensors);
    for (size_t i = 0; i < 2 * st->n_meta; i++)
        free(st->meta[i]);
    free(st->meta);
    if (st->map)
        munmap(st->map, st->map_size);
    free(st);
}

static int cmp_offsets(const void *a, const void *b)
{
    const st_tensor *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return 0;
}

/* A JSON integer in [0, 2^62]; jansson already refuses integers beyond 64 bits. */
static bool get_count(json_t *v, uint64_t *out)
{
    if (!json_is_integer(v))
        return false;
    json_int_t i = json_integer_value(v);
    if (i < 0 || (uint64_t)i > (UINT64_C(1) << 62))
        return false;
    *out = (uint64_t)i;
    return true;
}

static int parse_metadata(gencache_safetensors *st, json_t *meta,
                          const gencache_safetensors_options *o)
{
    if (!json_is_object(meta))
        return fail(o, GENCACHE_EPARSE, "__metadata__ is not an object");
    size_t n = json_object_size(meta);
    st->meta = calloc(2 * n + 1, sizeof *st->meta);
    if (!st->meta)
        return GENCACHE_ENOMEM;
    const char *key;
    json_t *val;
    json_object_foreach(meta, key, val)
    {
        if (!json_is_string(val))
            return fail(o, GENCACHE_EPARSE, "__metadata__ value of \"%s\" is not a string", key);
        st->meta[2 * st->n_meta] = strdup(key);
        st->meta[2 * st->n_meta + 1] = strdup(json_string_value(val));
        st->n_meta++;
        if (!st->meta[2 * st->n_meta - 2] || !st->meta[2 * st->n_meta - 1])
            return GENCACHE_ENOMEM;
    }
    return GENCACHE_OK;
}

static int parse_tensor(st_tensor *t, const char *name, json_t *obj,
                        const gencache_safetensors_options *o)
{
    if (!json_is_object(obj))
        return fail(o, GENCACHE_EPARSE, "tensor \"%s\" is not an object", name);
    if (name[0] == '\0')
        return fail(o, GENCACHE_EPARSE, "empty tensor name");
    json_t *dtype = json_object_get(obj, "dtype");
    json_t *shape = json_object_get(obj, "shape");
    json_t *offs = json_object_get(obj, "data_offsets");
    if (!json_is_string(dtype) || !json_is_array(shape) || !json_is_array(offs) ||
        json_object_size(obj) != 3)
        return fail(o, GENCACHE_EPARSE,
                    "tensor \"%s\" needs exactly dtype (string), shape and data_offsets (arrays)",
                    name);
    const char *ds = json_string_value(dtype);
    t->dtype = GENCACHE_DTYPE_NONE;
    for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
        if (strcmp(ds, st_dtypes[i].name) == 0)
            t->dtype = st_dtypes[i].dtype;
    if (t->dtype == GENCACHE_DTYPE_NONE) {
        for (size_t i = 0; i < sizeof st_other_dtypes / sizeof st_other_dtypes[0]; i++)
            if (strcmp(ds, st_other_dtypes[i]) == 0)
                return fail(o, GENCACHE_EUNSUPPORTED, "tensor \"%s\": dtype %s not supported", name,
                            ds);
        return fail(o, GENCACHE_EPARSE, "tensor \"%s\": unknown dtype \"%.32s\"", name, ds);
    }
    size_t nd = json_array_size(shape);
    if (nd > GENCACHE_MAX_DIMS)
        return fail(o, GENCACHE_EUNSUPPORTED, "tensor \"%s\" has %zu dims (at most %d)", name, nd,
                    GENCACHE_MAX_DIMS);
    t->ndim = (uint32_t)nd;
    for (size_t i = 0; i < nd; i++) {
        uint64_t d;
        if (!get_count(json_array_get(shape, i), &d))
            return fail(o, GENCACHE_EPARSE, "tensor \"%s\": bad dimension %zu", name, i);
        t->shape[i] = (int64_t)d;
    }
    if (json_array_size(offs) != 2 || !get_count(json_array_get(offs, 0), &t->begin) ||
        !get_count(json_array_get(offs, 1), &t->end) || t->begin > t->end)
        return fail(o, GENCACHE_EPARSE, "tensor \"%s\": bad data_offsets", name);
    int rc = gencache_tensor_check(t->dtype, t->ndim, t->shape, t->end - t->begin);
    if (rc == GENCACHE_ELIMIT)
        return fail(o, GENCACHE_EPARSE, "tensor \"%s\": shape too large", name);
    if (rc != GENCACHE_OK)
        return fail(o, GENCACHE_EPARSE,
                    "tensor \"%s\": %" PRIu64 " bytes do not match its dtype and shape", name,
                    t->end - t->begin);
    t->name = strdup(name);
    return t->name ? GENCACHE_OK : GENCACHE_ENOMEM;
}

static int parse_header(gencache_safetensors *st, const char *hdr, size_t hlen, uint64_t data_len,
                        const gencache_safetensors_options *o)
{
    if (hlen == 0 || hdr[0] != '{')
        return fail(o, GENCACHE_EPARSE, "header is not a JSON object");
    json_error_t err;
    json_t *root = json_loadb(hdr, hlen, JSON_REJECT_DUPLICATES, &err);
    if (!root)
        return fail(o, GENCACHE_EPARSE, "header is not valid JSON: %s (offset %d)", err.text,
                    err.position);
    int rc = GENCACHE_OK;
    if (!json_is_object(root)) {
        rc = fail(o, GENCACHE_EPARSE, "header is not a JSON object");
        goto out;
    }
    size_t n = json_object_size(root);
    st->tensors = calloc(n + 1, sizeof *st->tensors);
    if (!st->tensors) {
        rc = GENCACHE_ENOMEM;
        goto out;
    }
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val)
    {
        if (strcmp(key, "__metadata__") == 0)
            rc = parse_metadata(st, val, o);
        else if ((rc = parse_tensor(&st->tensors[st->n], key, val, o)) == GENCACHE_OK)
            st->n++;
        if (rc != GENCACHE_OK)
            goto out;
    }
    qsort(st->tensors, st->n, sizeof *st->tensors, cmp_offsets);
    uint64_t pos = 0;
    for (size_t i = 0; i < st->n; i++) {
        if (st->tensors[i].begin != pos) {
            rc = fail(o, GENCACHE_EPARSE,
                      "tensor \"%s\" starts at %" PRIu64 ", expected %" PRIu64
                      " (data must be contiguous, without gaps or overlap)",
                      st->tensors[i].name, st->tensors[i].begin, pos);
            goto out;
        }
        pos = st->tensors[i].end;
    }
    if (pos != data_len)
        rc = fail(o, GENCACHE_EPARSE,
                  "tensors cover %" PRIu64 " data bytes but the file has %" PRIu64, pos, data_len);
out:
    json_decref(root);
    return rc;
}

int gencache_safetensors_parse(const void *data, size_t size,
                               const gencache_safetensors_options *opts, gencache_safetensors **out)
{
    if (out)
        *out = NULL;
    if (!out || (!data && size > 0) || (opts && opts->struct_size < sizeof *opts))
        return GENCACHE_EINVAL;
    uint64_t limit = GENCACHE_SAFETENSORS_MAX_HEADER;
    if (opts && opts->max_header_bytes && opts->max_header_bytes < limit)
        limit = opts->max_header_bytes;
    if (size < 8)
        return fail(opts, GENCACHE_EPARSE, "file of %zu bytes has no 8-byte header length", size);
    const unsigned char *p = data;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = (hlen << 8) | p[i];
    if (hlen > limit)
        return fail(opts, GENCACHE_ELIMIT,
                    "header of %" PRIu64 " bytes exceeds the limit of %" PRIu64, hlen, limit);
    if (hlen > size - 8)
        return fail(opts, GENCACHE_EPARSE,
                    "header length %" PRIu64 " runs past the end of the file (%zu bytes)", hlen,
                    size);
    gencache_safetensors *st = calloc(1, sizeof *st);
    if (!st)
        return GENCACHE_ENOMEM;
    int rc = parse_header(st, (const char *)p + 8, (size_t)hlen, size - 8 - hlen, opts);
    if (rc != GENCACHE_OK) {
        gencache_safetensors_close(st);
        return rc;
    }
    st->data = p + 8 + hlen;
    *out = st;
    return GENCACHE_OK;
}

int gencache_safetensors_open(const char *path, const gencache_safetensors_options *opts,
                              gencache_safetensors **out)
{
    if (out)
        *out = NULL;
    if (!path || !out)
        return GENCACHE_EINVAL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return fail(opts, errno == ENOENT ? GENCACHE_ENOTFOUND : GENCACHE_EIO, "%s: %s", path,
                    strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return fail(opts, GENCACHE_EIO, "%s: not a regular file", path);
    }
    size_t size = (size_t)sb.st_size;
    void *map = NULL;
    if (size > 0) {
        map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            close(fd);
            return fail(opts, GENCACHE_EIO, "%s: cannot map: %s", path, strerror(errno));
        }
    }
    close(fd);
    static const unsigned char empty[1];
    int rc = gencache_safetensors_parse(map ? map : empty, size, opts, out);
    if (rc != GENCACHE_OK) {
        if (map)
            munmap(map, size);
        return rc;
    }
    (*out)->map = map;
    (*out)->map_size = size;
    return GENCACHE_OK;
}

size_t gencache_safetensors_count(const gencache_safetensors *st)
{
    return st ? st->n : 0;
}

static void fill(const gencache_safetensors *st, const st_tensor *t,
                 gencache_safetensors_tensor *out)
{
    memset(out, 0, sizeof *out);
    out->name = t->name;
    out->dtype = t->dtype;
    out->ndim = t->ndim;
    memcpy(out->shape, t->shape, sizeof out->shape);
    out->data = st->data + t->begin;
    out->size = t->end - t->begin;
}

int gencache_safetensors_get(const gencache_safetensors *st, size_t index,
                             gencache_safetensors_tensor *out)
{
    if (out)
        memset(out, 0, sizeof *out);
    if (!st || !out || index >= st->n)
        return GENCACHE_EINVAL;
    fill(st, &st->tensors[index], out);
    return GENCACHE_OK;
}

int gencache_safetensors_find(const gencache_safetensors *st, const char *name,
                              gencache_safetensors_tensor *out)
{
    if (out)
        memset(out, 0, sizeof *out);
    if (!st || !name || !out)
        return GENCACHE_EINVAL;
    for (size_t i = 0; i < st->n; i++) {
        if (strcmp(st->tensors[i].name, name) == 0) {
            fill(st, &st->tensors[i], out);
            return GENCACHE_OK;
        }
    }
    return GENCACHE_ENOTFOUND;
}

const char *gencache_safetensors_metadata(const gencache_safetensors *st, const char *key)
{
    if (!st || !key)
        return NULL;
    for (size_t i = 0; i < st->n_meta; i++)
        if (strcmp(st->meta[2 * i], key) == 0)
            return st->meta[2 * i + 1];
    return NULL;
}
