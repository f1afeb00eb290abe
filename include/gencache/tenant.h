/*
 * gencache/tenant.h: part of the public API of libgencache: tenants, and calls made on a
 * tenant's behalf. Every surface (the daemon, the CLI, Python in-process) gets the same rules:
 * an entry of a tenant-scoped layer lives in its tenant's own namespace, so no other tenant can
 * read, probe, overwrite or delete it (it is not addressable at all); an entry of a global layer
 * is shared, and only its writer (or an admin) may replace or delete it; a tenant's stored bytes
 * are counted exactly against its quota; lookups, hits and savings are counted per tenant.
 * Include <gencache.h>, which includes this file; it is not meant to be included alone.
 */
#ifndef GENCACHE_API_TENANT_H
#define GENCACHE_API_TENANT_H

#ifndef GENCACHE_H
#error "include <gencache.h>, not <gencache/tenant.h>"
#endif

#define GENCACHE_MAX_TENANTS     256
#define GENCACHE_TENANT_NAME_MAX 64

/* How a tenant fares under pressure: high is never degraded, batch leaves memory first. */
typedef enum gencache_priority {
    GENCACHE_PRIORITY_HIGH = 0,
    GENCACHE_PRIORITY_NORMAL = 1,
    GENCACHE_PRIORITY_BATCH = 2,
} gencache_priority;

typedef struct gencache_tenant_options {
    size_t struct_size;         /* sizeof(gencache_tenant_options); set by _init() */
    const char *name;           /* 1-64 bytes of [A-Za-z0-9_.-] */
    gencache_priority priority; /* default NORMAL */
    uint64_t quota_bytes;       /* most value bytes its live entries may hold; 0: no quota */
    int admin;                  /* nonzero: may read, delete and invalidate every tenant's entries
                                   and see the global statistics. Default 0 */
} gencache_tenant_options;

/* Fills *opts with the defaults above (name NULL). Thread-safety: safe. */
GENCACHE_API void gencache_tenant_options_init(gencache_tenant_options *opts);

/* Defines a tenant, or redefines the priority, quota and admin flag of one (a tenant a call
 * named before it was defined already exists, with the defaults). The first definition with a
 * quota counts what the disk tier already holds for tenants (a restart keeps their usage). At
 * most GENCACHE_MAX_TENANTS tenants. Returns GENCACHE_OK, GENCACHE_EINVAL (bad name or options),
 * GENCACHE_ELIMIT (too many tenants), GENCACHE_ENOMEM. Thread-safety: init only. */
GENCACHE_API int gencache_tenant_define(gencache *cache, const gencache_tenant_options *opts);

/* Copies tenant `name`'s options into *out (out->name points into the cache). Returns
 * GENCACHE_OK, GENCACHE_EINVAL, GENCACHE_ENOTFOUND. Thread-safety: safe. */
GENCACHE_API int gencache_tenant_get(gencache *cache, const char *name,
                                     gencache_tenant_options *out);

/* Who is calling, for the *_as functions. A NULL caller, or one with no tenant, is the trusted
 * owner of the cache (the plain functions): no namespace, no quota, every entry visible. */
typedef struct gencache_caller {
    size_t struct_size; /* sizeof(gencache_caller); set by gencache_caller_init() */
    const char *tenant; /* the tenant on whose behalf the call is made; NULL: the owner. A tenant
                           not yet defined is defined with the defaults on first use */
    uint64_t cost_ms;   /* gets: what computing the value would cost this request; a hit credits
                           it to cost_ms_saved. 0: the stored entry's cost_ms. Default 0 */
} gencache_caller;

/* Fills *caller with the defaults above. Thread-safety: safe. */
GENCACHE_API void gencache_caller_init(gencache_caller *caller);

/* gencache_get() on the caller's behalf. In a tenant-scoped layer the key is looked up in the
 * caller's namespace (an admin's too: admins read other tenants' entries through the plain
 * functions). The handle's meta->key is the key as the caller gave it. Counts the lookup in the
 * caller's statistics. Returns what gencache_get() returns, and GENCACHE_EINVAL for a bad
 * caller, GENCACHE_ELIMIT when a new tenant would exceed GENCACHE_MAX_TENANTS.
 * Thread-safety: safe. */
GENCACHE_API int gencache_get_as(gencache *cache, const gencache_caller *caller, const char *key,
                                 gencache_handle **out);

/* gencache_peek() on the caller's behalf: the same namespace and visibility, nothing counted or
 * changed. Thread-safety: safe. */
GENCACHE_API int gencache_peek_as(gencache *cache, const gencache_caller *caller, const char *key,
                                  gencache_handle **out);

/* gencache_put() on the caller's behalf: the entry is owned by the caller (meta->tenant is
 * ignored), stored in its namespace in a tenant-scoped layer, and counted against its quota (a
 * value replacing one of the caller's counts only the difference). Returns what gencache_put()
 * returns, and GENCACHE_ELIMIT when the quota would be exceeded (nothing stored), GENCACHE_EPERM
 * when the key of a global layer holds another tenant's entry and the caller is not an admin, or
 * when meta->pinned is set and the caller is a tenant but not an admin (tenants get pins from
 * gencache_preferred_add() patterns, which apply to every put).
 * Thread-safety: safe. */
GENCACHE_API int gencache_put_as(gencache *cache, const gencache_caller *caller, const char *key,
                                 const void *data, size_t size, const gencache_meta *meta);

/* gencache_del() on the caller's behalf. In a tenant-scoped layer it removes the caller's entry;
 * in a global layer an entry written by another tenant is not the caller's to remove
 * (GENCACHE_EPERM, unless the caller is an admin). Thread-safety: safe. */
GENCACHE_API int gencache_del_as(gencache *cache, const gencache_caller *caller, const char *key);

/* gencache_invalidate() on the caller's behalf: a non-admin caller's filter is confined to the
 * entries it owns (filter->tenant naming another tenant matches nothing), and filter->key names
 * a key of the caller's namespace. Thread-safety: safe. */
GENCACHE_API int gencache_invalidate_as(gencache *cache, const gencache_caller *caller,
                                        const gencache_filter *filter, uint64_t *count);

/* One tenant's counters. */
typedef struct gencache_tenant_stats {
    size_t struct_size; /* sizeof(gencache_tenant_stats); the caller sets it */
    const char *tenant; /* valid until the cache is closed */
    gencache_priority priority;
    uint64_t quota_bytes; /* 0: none */
    uint64_t bytes;       /* value bytes of its live entries in this node's memory and disk
                             tiers (each entry once), exact: what the quota is checked against */
    uint64_t entries;     /* those entries */
    uint32_t n_layers;    /* as in gencache_stats */
    gencache_layer_stats layers[GENCACHE_MAX_LAYERS]; /* its lookups, hits, misses, puts and
                                                         savings through the *_as functions */
} gencache_tenant_stats;

/* Fills *out with tenant `name`'s counters (out->struct_size must be set). Returns GENCACHE_OK,
 * GENCACHE_EINVAL, GENCACHE_ENOTFOUND (no such tenant). Thread-safety: safe. */
GENCACHE_API int gencache_tenant_stats_get(gencache *cache, const char *name,
                                           gencache_tenant_stats *out);

#endif /* GENCACHE_API_TENANT_H */
