/*
 * safetensors_write.c: writes Hugging Face's safetensors format. The JSON header lists the
 * tensors in the order given, with data_offsets that tile the data region exactly, and is padded
 * with spaces so the data starts on an 8-byte boundary. Every input is validated before the
 * first byte goes out, so a refused call writes nothing; a file is written beside its final name
 * and renamed into place, so a reader never sees half of one.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "tensor/tensor.h"

static json_t *tensor_json(const gencache_safetensors_tensor *t, uint64_t begin)
{
    json_t *obj = json_object();
    json_t *shape = json_array();
    json_t *offs = json_array();
    if (!obj || !shape || !offs)
        goto fail;
    for (uint32_t i = 0; i < t->ndim; i++)
        if (json_array_append_new(shape, json_integer((json_int_t)t->shape[i])) != 0)
            goto fail;
    if (json_array_append_new(offs, json_integer((json_int_t)begin)) != 0 ||
        json_array_append_new(offs, json_integer((json_int_t)(begin + t->size))) != 0)
        goto fail;
    if (json_object_set_new(obj, "dtype",
                            json_string(gencache__safetensors_dtype_name(t->dtype))) != 0 ||
        json_object_set_new(obj, "shape", shape) != 0) {
        shape = NULL;
        goto fail;
    }
    shape = NULL;
    if (json_object_set_new(obj, "data_offsets", offs) != 0) {
        offs = NULL;
        goto fail;
    }
    return obj;
fail:
    json_decref(obj);
    json_decref(shape);
    json_decref(offs);
    return NULL;
}

/* Builds the header JSON, or fails with GENCACHE_EINVAL / GENCACHE_ENOMEM. */
static int build_header(const gencache_safetensors_tensor *tensors, size_t n,
                        const char *const *metadata, size_t n_metadata, char **out)
{
    *out = NULL;
    json_t *root = json_object();
    if (!root)
        return GENCACHE_ENOMEM;
    int rc = GENCACHE_OK;
    if (n_metadata > 0) {
        json_t *meta = json_object();
        if (!meta || json_object_set_new(root, "__metadata__", meta) != 0) {
            rc = GENCACHE_ENOMEM;
            goto out;
        }
        for (size_t i = 0; i < n_metadata; i++) {
            const char *k = metadata[2 * i], *v = metadata[2 * i + 1];
            json_t *s = k && v && !json_object_get(meta, k) ? json_string(v) : NULL;
            /* set_new takes s even when it fails. */
            if (!s || json_object_set_new(meta, k, s) != 0) {
                rc = GENCACHE_EINVAL; /* NULL, not UTF-8, or a duplicate key */
                goto out;
            }
        }
    }
    uint64_t pos = 0;
    for (size_t i = 0; i < n; i++) {
        const gencache_safetensors_tensor *t = &tensors[i];
        if (!t->name || !t->name[0] || strcmp(t->name, "__metadata__") == 0 ||
            !gencache__safetensors_dtype_name(t->dtype) ||
            gencache_tensor_check(t->dtype, t->ndim, t->shape, t->size) != GENCACHE_OK ||
            (t->size > 0 && !t->data) || json_object_get(root, t->name) ||
            t->size > (UINT64_C(1) << 62) - pos) {
            rc = GENCACHE_EINVAL;
            goto out;
        }
        json_t *obj = tensor_json(t, pos);
        if (!obj) {
            rc = GENCACHE_ENOMEM;
            goto out;
        }
        if (json_object_set_new(root, t->name, obj) != 0) {
            rc = GENCACHE_EINVAL; /* the name is not UTF-8 */
            goto out;
        }
        pos += t->size;
    }
    *out = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!*out)
        rc = GENCACHE_ENOMEM;
out:
    json_decref(root);
    return rc;
}

int gencache_safetensors_write_to(gencache_write_fn write, void *userdata,
                                  const gencache_safetensors_tensor *tensors, size_t n,
                                  const char *const *metadata, size_t n_metadata)
{
    if (!write || (n > 0 && !tensors) || (n_metadata > 0 && !metadata))
        return GENCACHE_EINVAL;
    char *hdr;
    int rc = build_header(tensors, n, metadata, n_metadata, &hdr);
    if (rc != GENCACHE_OK)
        return rc;
    size_t hlen = strlen(hdr);
    size_t padded = (hlen + 7) & ~(size_t)7;
    unsigned char len[8];
    for (int i = 0; i < 8; i++)
        len[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    static const char spaces[8] = "        ";
    rc = write(userdata, len, sizeof len);
    if (rc == GENCACHE_OK)
        rc = write(userdata, hdr, hlen);
    if (rc == GENCACHE_OK && padded > hlen)
        rc = write(userdata, spaces, padded - hlen);
    free(hdr);
    for (size_t i = 0; i < n && rc == GENCACHE_OK; i++)
        if (tensors[i].size > 0)
            rc = write(userdata, tensors[i].data, (size_t)tensors[i].size);
    return rc;
}

static int fd_write(void *userdata, const void *data, size_t size)
{
    int fd = *(int *)userdata;
    const char *p = data;
    while (size > 0) {
        ssize_t w = write(fd, p, size);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return errno == ENOSPC ? GENCACHE_ENOSPC : GENCACHE_EIO;
        }
        p += w;
        size -= (size_t)w;
    }
    return GENCACHE_OK;
}

int gencache_safetensors_write(const char *path, const gencache_safetensors_tensor *tensors,
                               size_t n, const char *const *metadata, size_t n_metadata)
{
    if (!path || !path[0])
        return GENCACHE_EINVAL;
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 16);
    if (!tmp)
        return GENCACHE_ENOMEM;
    snprintf(tmp, plen + 16, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        free(tmp);
        return GENCACHE_EIO;
    }
    int rc = gencache_safetensors_write_to(fd_write, &fd, tensors, n, metadata, n_metadata);
    if (rc == GENCACHE_OK && fsync(fd) != 0)
        rc = GENCACHE_EIO;
    if (close(fd) != 0 && rc == GENCACHE_OK)
        rc = GENCACHE_EIO;
    if (rc == GENCACHE_OK && rename(tmp, path) != 0)
        rc = GENCACHE_EIO;
    if (rc != GENCACHE_OK)
        unlink(tmp);
    free(tmp);
    return rc;
}
