/*
 * disk_guard.h: SIGBUS guards around the disk tier's operations (disk_guard.c). Usage, in the
 * function whose frame stays live for the whole operation:
 *
 *     gencache__disk_guard g = {0};
 *     gencache__disk_guard_push(&g, d);
 *     if (sigsetjmp(g.jb, 0)) {          // the map was read past the end of the file
 *         gencache__disk_guard_fault(&g);
 *         return GENCACHE_EIO;
 *     }
 *     ... the operation ...
 *     gencache__disk_guard_pop(&g);
 *
 * sigsetjmp(.., 0): saving the signal mask would cost a system call per operation, and the
 * handler runs with SA_NODEFER, so the jump leaves the mask as it was.
 */
#ifndef GENCACHE_TIER_DISK_GUARD_H
#define GENCACHE_TIER_DISK_GUARD_H

#include <setjmp.h>

#include "tier/disk.h"

typedef struct gencache__disk_guard {
    sigjmp_buf jb;
    gencache__disk_tier *d;
    struct gencache__disk_guard *outer;
    MDB_txn *write;          /* the write transaction this operation holds, if any */
    pthread_mutex_t *stripe; /* the blob stripe this operation holds, if any */
} gencache__disk_guard;

/* Installs the process-wide SIGBUS handler (once; it chains to the one it replaces). */
void gencache__disk_guard_install(void);
void gencache__disk_guard_push(gencache__disk_guard *g, gencache__disk_tier *d);
void gencache__disk_guard_pop(gencache__disk_guard *g);
/* Disables the tier for good: marks it broken (every operation then fails at once), counts a
 * backend error and logs the cause. */
void gencache__disk_guard_disable(gencache__disk_tier *d, const char *cause);
/* After the jump: marks the tier broken, logs, and releases the write transaction and the
 * stripe the operation held. */
void gencache__disk_guard_fault(gencache__disk_guard *g);
/* What the innermost guard of this thread holds (no-ops without a guard). */
void gencache__disk_guard_note_write(MDB_txn *txn);
void gencache__disk_guard_note_stripe(pthread_mutex_t *stripe);

#endif
