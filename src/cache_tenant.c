/*
 * cache_tenant.c: calls made on a tenant's behalf (the *_as functions of gencache/tenant.h). A
 * tenant-scoped (or session-scoped) layer stores each tenant's entries under a key of its own
 * namespace, the SHA-256 of the tenant and the key the caller named, so another tenant's entry
 * is not merely hidden but unaddressable: no key a caller can name reaches it. A global layer is
 * one namespace shared by all; there an entry belongs to the tenant that wrote it, and only that
 * tenant (or an admin) may replace or delete it.
 */
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>

#include "cache.h"

void gencache_tenant_options_init(gencache_tenant_options *opts)
{
    memset(opts, 0, sizeof *opts);
    opts->struct_size = sizeof *opts;
    opts->priority = GENCACHE_PRIORITY_NORMAL;
}

void gencache_caller_init(gencache_caller *caller)
{
    memset(caller, 0, sizeof *caller);
    caller->struct_size = sizeof *caller;
}

int gencache_tenant_define(gencache *cache, const gencache_tenant_options *opts)
{
    if (!cache || !opts || opts->struct_size < sizeof *opts ||
        opts->priority < GENCACHE_PRIORITY_HIGH || opts->priority > GENCACHE_PRIORITY_BATCH)
        return GENCACHE_EINVAL;
    gencache__tenant *t = NULL;
    int rc = gencache__tenant_obtain(cache->tenants, opts->name, &t);
    if (rc != GENCACHE_OK)
        return rc;
    gencache__tenant_configure(t, opts->priority, opts->quota_bytes, opts->admin != 0);
    gencache__cache_load_usage(cache);
    return GENCACHE_OK;
}

int gencache_tenant_get(gencache *cache, const char *name, gencache_tenant_options *out)
{
    if (!cache || !name || !out)
        return GENCACHE_EINVAL;
    gencache__tenant *t = gencache__tenant_find(cache->tenants, name);
    if (!t)
        return GENCACHE_ENOTFOUND;
    gencache__tenant_options(t, out);
    return GENCACHE_OK;
}

/* ---- usage after a restart ---- */

static bool count_disk_entry(void *ud, const gencache__entry *e)
{
    gencache *c = ud;
    gencache__tenant *t = NULL;
    uint64_t old;
    if (e->tenant && gencache__tenant_obtain(c->tenants, e->tenant, &t) == GENCACHE_OK)
        gencache__tenant_charge(t, e->key, e->hash, e->size, false, &old);
    return false; /* count only, never remove */
}

void gencache__cache_load_usage(gencache *c)
{
    if (c->disk_tier < 0 || atomic_exchange(&c->tenant_usage_loaded, true))
        return;
    gencache__tier *d = c->tiers[c->disk_tier];
    uint64_t n = 0;
    if (d->ops->remove_if(d, count_disk_entry, c, &n) != GENCACHE_OK)
        gencache__log_msg(&c->log, GENCACHE_LOG_WARN,
                          "tenants: could not count the disk tier's entries; usage starts low");
}

/* ---- namespaces ---- */

/* A resolved call: the tenant (NULL: the owner), and the key as stored. */
typedef struct as_call {
    gencache__call call;
    int layer;
    bool namespaced;
    char key[GENCACHE__KEY_MAX + 1];
} as_call;

/* Writes the stored key of `key` in tenant's namespace: "<layer>/<hex>", the hex being the
 * SHA-256 of a domain tag, the tenant and the key. */
static int namespace_key(const char *tenant, const char *key, size_t layer_len, char *out)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;
    static const char tag[] = "gencache-ns-v1\n";
    int ok = md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) &&
             EVP_DigestUpdate(md, tag, sizeof tag - 1) &&
             EVP_DigestUpdate(md, tenant, strlen(tenant) + 1) &&
             EVP_DigestUpdate(md, key, strlen(key)) && EVP_DigestFinal_ex(md, d, &dlen);
    EVP_MD_CTX_free(md);
    if (!ok || dlen != 32) {
        ERR_clear_error();
        return GENCACHE_ENOMEM;
    }
    static const char hex[] = "0123456789abcdef";
    memcpy(out, key, layer_len + 1); /* "<layer>/" */
    for (unsigned i = 0; i < 32; i++) {
        out[layer_len + 1 + 2 * i] = hex[d[i] >> 4];
        out[layer_len + 2 + 2 * i] = hex[d[i] & 15];
    }
    out[layer_len + 1 + 64] = '\0';
    return GENCACHE_OK;
}

/* Checks the caller and the key, and works out where the key lives for this caller. */
static int resolve(gencache *c, const gencache_caller *caller, const char *key, as_call *out)
{
    memset(out, 0, sizeof *out);
    if (!c || !key || (caller && caller->struct_size < sizeof *caller))
        return GENCACHE_EINVAL;
    if (caller) {
        out->call.cost_ms = caller->cost_ms;
        if (caller->tenant) {
            int rc = gencache__tenant_obtain(c->tenants, caller->tenant, &out->call.tenant);
            if (rc != GENCACHE_OK)
                return rc;
        }
    }
    int rc = gencache__cache_key_layer(c, key, &out->layer);
    if (rc != GENCACHE_OK)
        return rc;
    if (out->call.tenant && c->layers[out->layer].scope != GENCACHE_SCOPE_GLOBAL) {
        out->namespaced = true;
        return namespace_key(gencache__tenant_name(out->call.tenant), key,
                             strlen(c->layers[out->layer].name), out->key);
    }
    strcpy(out->key, key);
    return GENCACHE_OK;
}

/* In a global layer: true when key holds an entry another tenant wrote, which this caller may
 * neither replace nor delete. Peeked: the probe changes nothing. */
static bool foreign_shared(gencache *c, const as_call *a)
{
    if (!a->call.tenant || a->namespaced || gencache__tenant_admin(a->call.tenant))
        return false;
    gencache_handle *h = NULL;
    if (gencache__cache_lookup(c, a->key, a->layer, NULL, NULL, false, &h) != GENCACHE_OK)
        return false;
    const char *owner = gencache_handle_meta(h)->tenant;
    bool foreign = !owner || strcmp(owner, gencache__tenant_name(a->call.tenant)) != 0;
    gencache_handle_release(h);
    return foreign;
}

/* ---- the calls ---- */

static int lookup_as(gencache *c, const gencache_caller *caller, const char *key, bool touch,
                     gencache_handle **out)
{
    if (!out)
        return GENCACHE_EINVAL;
    *out = NULL;
    as_call a;
    int rc = resolve(c, caller, key, &a);
    if (rc != GENCACHE_OK)
        return rc;
    return gencache__cache_lookup(c, a.key, a.layer, a.namespaced ? key : NULL, &a.call, touch,
                                  out);
}

int gencache_get_as(gencache *cache, const gencache_caller *caller, const char *key,
                    gencache_handle **out)
{
    return lookup_as(cache, caller, key, true, out);
}

int gencache_peek_as(gencache *cache, const gencache_caller *caller, const char *key,
                     gencache_handle **out)
{
    return lookup_as(cache, caller, key, false, out);
}

int gencache_put_as(gencache *cache, const gencache_caller *caller, const char *key,
                    const void *data, size_t size, const gencache_meta *meta)
{
    as_call a;
    int rc = resolve(cache, caller, key, &a);
    if (rc != GENCACHE_OK)
        return rc;
    gencache_meta m;
    if (gencache__meta_copy(meta, &m) != GENCACHE_OK)
        return GENCACHE_EINVAL;
    /* A pinned entry is never evicted: a tenant pinning at will could fill memory and lock the
     * others out. Tenants get pins from the preferred patterns; only an admin asks for one. */
    if (a.call.tenant && m.pinned && !gencache__tenant_admin(a.call.tenant))
        return GENCACHE_EPERM;
    if (cache->n_preferred && gencache__cache_preferred(cache, key))
        m.pinned = 1;
    if (!a.call.tenant)
        return gencache__cache_put(cache, a.key, data, size, &m, NULL, false);
    if (foreign_shared(cache, &a))
        return GENCACHE_EPERM;
    m.tenant = gencache__tenant_name(a.call.tenant);
    return gencache__cache_put(cache, a.key, data, size, &m, a.call.tenant, true);
}

int gencache_del_as(gencache *cache, const gencache_caller *caller, const char *key)
{
    as_call a;
    int rc = resolve(cache, caller, key, &a);
    if (rc != GENCACHE_OK)
        return rc;
    if (foreign_shared(cache, &a))
        return GENCACHE_EPERM;
    return gencache_del(cache, a.key);
}

int gencache_invalidate_as(gencache *cache, const gencache_caller *caller,
                           const gencache_filter *filter, uint64_t *count)
{
    if (count)
        *count = 0;
    if (!cache || !filter || filter->struct_size < sizeof *filter ||
        (caller && caller->struct_size < sizeof *caller))
        return GENCACHE_EINVAL;
    if (!caller || !caller->tenant)
        return gencache_invalidate(cache, filter, count);
    gencache_filter f = *filter;
    as_call a;
    if (filter->key) {
        int rc = resolve(cache, caller, filter->key, &a);
        if (rc == GENCACHE_ENOTFOUND)
            return GENCACHE_OK; /* a layer that does not exist holds nothing */
        if (rc != GENCACHE_OK)
            return rc;
        f.key = a.key;
    } else {
        int rc = gencache__tenant_obtain(cache->tenants, caller->tenant, &a.call.tenant);
        if (rc != GENCACHE_OK)
            return rc;
    }
    if (!gencache__tenant_admin(a.call.tenant)) {
        const char *me = gencache__tenant_name(a.call.tenant);
        if (filter->tenant && strcmp(filter->tenant, me) != 0)
            return GENCACHE_OK; /* another tenant's entries are not the caller's to see */
        f.tenant = me;
    }
    return gencache_invalidate(cache, &f, count);
}

int gencache_tenant_stats_get(gencache *cache, const char *name, gencache_tenant_stats *out)
{
    if (!cache || !name || !out || out->struct_size < sizeof *out)
        return GENCACHE_EINVAL;
    gencache__tenant *t = gencache__tenant_find(cache->tenants, name);
    if (!t)
        return GENCACHE_ENOTFOUND;
    memset(out, 0, sizeof *out);
    out->struct_size = sizeof *out;
    out->n_layers = cache->n_layers;
    for (unsigned i = 0; i < cache->n_layers; i++)
        out->layers[i].layer = cache->layers[i].name;
    gencache__tenant_stats(t, out);
    return GENCACHE_OK;
}
