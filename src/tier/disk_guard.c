/*
 * disk_guard.c: the disk tier survives its index file shrinking under it. LMDB reads pages
 * through a shared mapping of data.mdb; if something truncates the file while the tier runs, the
 * first read past the new end raises SIGBUS, which would kill the process. Every tier operation
 * therefore runs inside a guard: a thread-local jump buffer that a process-wide SIGBUS handler
 * (installed once, chaining to the one it replaced for faults outside any guard) jumps back to.
 * The operation then fails, the write transaction it held (if any) is
 * aborted so no other thread waits on LMDB's writer lock forever, and the tier is marked broken:
 * from then on every operation fails at once (gets miss) without touching the map. For a write
 * transaction the guard is only the fallback: a SIGBUS inside LMDB's page allocation leaves its
 * free-page list half updated and the abort can then crash, so gencache__disk_txn_begin()
 * refuses a short file before anything reads the map. A truncation racing a write transaction
 * already in flight can still end the process.
 */
#include <pthread.h>
#include <signal.h>
#include <string.h>

#include "tier/disk_guard.h"

/* initial-exec: the handler reads it without a call into the dynamic TLS allocator, which is
 * not async-signal-safe (the library may be loaded as a shared object). */
static _Thread_local gencache__disk_guard *current __attribute__((tls_model("initial-exec")));
static struct sigaction previous;
static pthread_once_t installed = PTHREAD_ONCE_INIT;

static void on_sigbus(int sig, siginfo_t *info, void *ctx)
{
    /* Inside a guarded operation the only file mappings touched are LMDB's (data.mdb, and
     * lock.mdb's reader table): a SIGBUS there is a file that shrank under the tier. */
    gencache__disk_guard *g = current;
    if (g) {
        current = NULL;
        siglongjmp(g->jb, 1);
    }
    /* Not ours: what would have happened without us. */
    if (previous.sa_flags & SA_SIGINFO) {
        previous.sa_sigaction(sig, info, ctx);
        return;
    }
    if (previous.sa_handler != SIG_DFL && previous.sa_handler != SIG_IGN) {
        previous.sa_handler(sig);
        return;
    }
    signal(SIGBUS, SIG_DFL);
    raise(SIGBUS);
}

static void install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGBUS, &sa, &previous);
}

void gencache__disk_guard_install(void)
{
    pthread_once(&installed, install);
}

void gencache__disk_guard_push(gencache__disk_guard *g, gencache__disk_tier *d)
{
    g->d = d;
    g->outer = current;
    current = g;
}

void gencache__disk_guard_pop(gencache__disk_guard *g)
{
    current = g->outer;
}

void gencache__disk_guard_note_write(MDB_txn *txn)
{
    if (current)
        current->write = txn;
}

void gencache__disk_guard_note_stripe(pthread_mutex_t *stripe)
{
    if (current)
        current->stripe = stripe;
}

void gencache__disk_guard_disable(gencache__disk_tier *d, const char *cause)
{
    atomic_store(&d->broken, true);
    atomic_fetch_add(&d->backend_errors, 1);
    gencache__log_msg(d->log, GENCACHE_LOG_ERROR,
                      "disk tier %s: %s; the tier is disabled until restart, which will check "
                      "the file",
                      d->path, cause);
}

void gencache__disk_guard_fault(gencache__disk_guard *g)
{
    gencache__disk_tier *d = g->d;
    current = g->outer;
    gencache__disk_guard_disable(d, "index/data.mdb shrank while in use (a read past its end)");
    /* The writer lock and the stripe this thread held would otherwise block every other writer
     * for good. A write transaction gets here only when the file shrank after
     * gencache__disk_txn_begin() checked it; if the fault hit LMDB's page allocation, its
     * free-page list may be half updated and this abort can still end the process. */
    if (g->write)
        mdb_txn_abort(g->write);
    if (g->stripe)
        pthread_mutex_unlock(g->stripe);
}
