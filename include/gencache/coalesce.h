/*
 * gencache/coalesce.h: part of the public API of libgencache: single flight (DESIGN.md section 4,
 * "Coalescing"). Concurrent misses on one key run the computation once: the first claim gets a
 * lease and computes, the others wait for it and then read the stored entry. Include
 * <gencache.h>, which includes this file; it is not meant to be included alone.
 *
 * Each cache has one flight table, made on the first claim and torn down by gencache_close();
 * there is no object to open. A flight exists while a lease on its key is held; it ends when the
 * holder fulfils it (the value is stored and every waiter gets the entry), fails it (every waiter
 * gets the error), or gives it up (abandon, or its lease_timeout_ms runs out): the lease then
 * passes to the oldest waiter. Lease timeouts fire from a timer thread the table starts on its
 * first use, so a holder that dies or hangs never blocks a key for longer than its timeout.
 *
 * Across nodes: when the cache has a shared (Redis) tier and the key's layer is shared, a claim
 * that would compute also takes the key's lease in Redis (SET NX PX with a random token; TTL the
 * claim's lease_timeout_ms, or 30 s renewed every 10 s while held). When another node holds it,
 * or its value is already stored there, the claim waits as if a local holder computed: it ends
 * with a HIT once the value can be read, or a LEASE (waited = 1) once the other holder let its
 * lease go or died and let it expire. A Redis that cannot answer leaves single flight per node.
 * docs/tiers.md says how.
 */
#ifndef GENCACHE_API_COALESCE_H
#define GENCACHE_API_COALESCE_H

#ifndef GENCACHE_H
#error "include <gencache.h>, not <gencache/coalesce.h>"
#endif

/* The right and duty to compute one key's value: end it with gencache_lease_fulfil(),
 * gencache_lease_fail() or gencache_lease_abandon(), exactly once. */
typedef struct gencache_lease gencache_lease;

typedef struct gencache_claim_options {
    size_t struct_size;        /* sizeof(gencache_claim_options); set by _init() */
    uint32_t wait_timeout_ms;  /* longest a claim waits for another holder; 0: do not wait
                                  (GENCACHE_EBUSY when the key is held). Default 600000 */
    uint32_t lease_timeout_ms; /* a lease this claim receives is taken back when not ended this
                                  many ms after it was granted; 0: never. Default 600000 */
    const char *tenant;        /* NULL: the cache's owner (plain gencache_get/put). Set: the
                                  claim is made on this tenant's behalf (gencache_get_as and,
                                  when fulfilled, gencache_put_as): in a tenant-scoped layer it
                                  is about the tenant's own namespace, so the same key of two
                                  tenants is two flights. Borrowed for the call */
} gencache_claim_options;

/* Fills *opts with the defaults above. Thread-safety: safe. */
GENCACHE_API void gencache_claim_options_init(gencache_claim_options *opts);

typedef enum gencache_claim_kind {
    GENCACHE_CLAIM_NONE = 0,    /* nothing: the claim failed */
    GENCACHE_CLAIM_HIT = 1,     /* handle is the entry */
    GENCACHE_CLAIM_LEASE = 2,   /* lease: this caller computes the value */
    GENCACHE_CLAIM_PENDING = 3, /* gencache_claim_async() only: the callback will be called */
} gencache_claim_kind;

typedef struct gencache_claim_result {
    gencache_claim_kind kind;
    int waited;              /* nonzero: another holder's flight was waited for (coalesced) */
    gencache_handle *handle; /* HIT: a new reference; release with gencache_handle_release() */
    gencache_lease *lease;   /* LEASE: owned by the caller until it ends the lease */
} gencache_claim_result;

/* Claims `key`, blocking while another caller holds its lease.
 * - A hit (looked up with gencache_get(), or as opts->tenant says): kind HIT, no lease.
 * - No entry and no holder: kind LEASE. The caller computes the value and must end the lease
 *   with gencache_lease_fulfil(), gencache_lease_fail() or gencache_lease_abandon().
 * - Another holder: waits up to opts->wait_timeout_ms. When the holder fulfils, kind HIT with the
 *   stored entry and waited = 1; when it abandons or its lease times out, the oldest waiter gets
 *   kind LEASE with waited = 1.
 * opts may be NULL for the defaults. On failure *result is {NONE, 0, NULL, NULL}.
 * Returns GENCACHE_OK, GENCACHE_EINVAL (NULL cache, key or result, malformed key, bad options),
 * GENCACHE_ENOTFOUND (the key's layer is not defined), GENCACHE_EBUSY (held and wait_timeout_ms
 * is 0), GENCACHE_ETIMEDOUT (the wait timed out), GENCACHE_ENOMEM, GENCACHE_EUNAVAILABLE (the
 * cache is being closed), or the code the holder passed to gencache_lease_fail() (or the error
 * of its store, see gencache_lease_fulfil()).
 * A claim made while the same thread holds the key's lease waits for itself until it times out.
 * The wait holds no lock and makes no tier call; it releases the Python GIL under ctypes.
 * Thread-safety: safe. */
GENCACHE_API int gencache_claim(gencache *cache, const char *key,
                                const gencache_claim_options *opts, gencache_claim_result *result);

/* Tells a gencache_claim_async() caller how its wait ended: status is GENCACHE_OK with result a
 * HIT (the caller owns result->handle) or a LEASE (the caller owns result->lease and must end
 * it), or an error as gencache_claim() returns it, with result kind NONE. result is borrowed for
 * the call. Called exactly once per PENDING claim, possibly before gencache_claim_async() has
 * returned: when the holder ends the lease, on the holder's thread before its
 * gencache_lease_fulfil/fail/abandon() returns (so the holder may hand its waiters more than the
 * status, through state of its own thread); on a timeout, on the table's timer thread; at
 * gencache_close(), on the closing thread (GENCACHE_EUNAVAILABLE). No lock of the library is held
 * during the call, so it may claim and end leases; it must not block for long: it holds up that
 * thread. */
typedef void (*gencache_claim_done_fn)(void *userdata, int status,
                                       const gencache_claim_result *result);

/* gencache_claim() that never blocks: for event loops and servers whose threads may not wait.
 * Answers HIT or LEASE at once like gencache_claim(); when another caller holds the lease, it
 * returns GENCACHE_OK with kind PENDING and calls done(userdata, ...) once the wait ends (with
 * the outcomes gencache_claim() would return). done is called only for PENDING; with every other
 * answer it is never called. wait_timeout_ms 0 gives GENCACHE_EBUSY as in gencache_claim().
 * Returns what gencache_claim() returns, GENCACHE_EINVAL also for a NULL done; also
 * GENCACHE_ENOMEM when the timer thread cannot start.
 * Thread-safety: safe. */
GENCACHE_API int gencache_claim_async(gencache *cache, const char *key,
                                      const gencache_claim_options *opts,
                                      gencache_claim_done_fn done, void *userdata,
                                      gencache_claim_result *result);

/* Stores the computed value with gencache_put(cache, key, data, size, meta) (meta may be NULL;
 * gencache_put_as() for a claim made on a tenant's behalf, with its quota and namespace),
 * ends the lease and wakes every waiter with a HIT on the stored entry. data and meta are
 * borrowed for the call. The lease is freed in every case: do not use it again.
 * When the put fails, its error is returned and every waiter's claim fails with that same code:
 * the value was computed but is not in the cache (the waiters may compute it themselves).
 * Returns GENCACHE_OK, the errors of gencache_put() / gencache_put_as(), GENCACHE_ETIMEDOUT (the
 * lease had timed out and passed on: nothing is stored), GENCACHE_EUNAVAILABLE (the cache was
 * closed meanwhile: nothing is stored), GENCACHE_EINVAL (NULL lease; NULL data with size > 0, the
 * lease then stays held). Thread-safety: safe (one call per lease). */
GENCACHE_API int gencache_lease_fulfil(gencache_lease *lease, const void *data, size_t size,
                                       const gencache_meta *meta);

/* Ends the lease without a value and passes it to the oldest waiter, whose claim then returns
 * a LEASE (it computes next); with no waiter the flight just ends. For a computation that failed
 * in a way another attempt may not. The lease is freed: do not use it again.
 * Returns GENCACHE_OK, GENCACHE_ETIMEDOUT (it had already timed out and passed on),
 * GENCACHE_EUNAVAILABLE (the cache was closed), GENCACHE_EINVAL (NULL lease).
 * Thread-safety: safe (one call per lease). */
GENCACHE_API int gencache_lease_abandon(gencache_lease *lease);

/* Ends the lease without a value and fails every waiter's claim with `err` (a negative GENCACHE_E*
 * code; anything else is reported as GENCACHE_EIO): for a failure every attempt would meet,
 * so that the waiters do not retry it one after another. The lease is freed.
 * Returns GENCACHE_OK, GENCACHE_ETIMEDOUT, GENCACHE_EUNAVAILABLE, GENCACHE_EINVAL as
 * gencache_lease_abandon(). Thread-safety: safe (one call per lease). */
GENCACHE_API int gencache_lease_fail(gencache_lease *lease, int err);

/* The key this lease is for ("<layer>/<hex>"), valid until the lease is ended; NULL for NULL.
 * Thread-safety: safe. */
GENCACHE_API const char *gencache_lease_key(const gencache_lease *lease);

#endif
