/*
 * writeback.c: the queue of entries on their way from memory to the tiers below, and the one
 * thread that writes them. Evictions and puts of write-back layers hand their entry here instead
 * of paying a durable write on the caller's thread. The writer takes a batch of jobs at once
 * and writes them as a group, so a flush of many small entries pays one durable commit per batch
 * rather than one per entry. Invariants: a key has at most one queued job (a newer push replaces
 * the value and merges the targets), a queued or in-flight entry stays findable, the queued and
 * in-flight charges together stay within the bound (one entry always fits), and after
 * gencache__writeback_forget() returns no write of that key is queued or running, so a delete is
 * never undone by a late write.
 */
#include <string.h>

#include "internal.h"

typedef struct job {
    struct job *prev, *next; /* the FIFO */
    struct job *hnext;       /* the key's bucket */
    gencache__entry *e;
    unsigned targets;
} job;

/* Queued jobs are also hashed by key, so a lookup that misses memory finds a queued entry in
 * constant time however long the queue is. */
#define JOB_BUCKETS 1024

struct gencache__writeback {
    const gencache_allocator *alloc;
    gencache__writeback_fn fn;
    void *userdata;
    uint64_t max_bytes;

    pthread_mutex_t mu;
    pthread_cond_t work; /* the writer waits here for jobs */
    pthread_cond_t idle; /* pushers wait for room, forget/drain for writes to end */
    job *head, *tail;    /* FIFO: head is written next */
    job *buckets[JOB_BUCKETS];
    gencache__writeback_many_fn many; /* NULL: one job at a time */
    size_t batch_max_jobs;
    uint64_t batch_max_bytes;
    /* The batch taken by the writer and being written: still findable, and its charges still
     * count against the bound until it is written. */
    job **batch;
    size_t n_batch;
    uint64_t batch_bytes;
    gencache__entry **batch_es; /* the writer's arguments to many */
    unsigned *batch_targets;
    uint64_t queued_bytes, queued_entries, written, stalls;
    bool stopping;
    pthread_t thread;
};

static bool same_key(const gencache__entry *e, const char *key, uint64_t hash)
{
    return e->hash == hash && strcmp(e->key, key) == 0;
}

static job **bucket_of(gencache__writeback *wb, uint64_t hash)
{
    return &wb->buckets[hash & (JOB_BUCKETS - 1)];
}

/* Takes j out of the queue (lock held). */
static void unlink_job(gencache__writeback *wb, job *j)
{
    job **pp = bucket_of(wb, j->e->hash);
    while (*pp != j)
        pp = &(*pp)->hnext;
    *pp = j->hnext;
    j->hnext = NULL;
    if (j->prev)
        j->prev->next = j->next;
    else
        wb->head = j->next;
    if (j->next)
        j->next->prev = j->prev;
    else
        wb->tail = j->prev;
    j->prev = j->next = NULL;
    wb->queued_bytes -= j->e->charge;
    wb->queued_entries--;
}

static void job_free(gencache__writeback *wb, job *j)
{
    gencache__entry_release(j->e);
    gencache__free(wb->alloc, j);
}

/* Moves the head of the queue, and as many following jobs as the batch limits allow, into the
 * batch (lock held, queue not empty). */
static void take_batch(gencache__writeback *wb)
{
    size_t max_jobs = wb->many ? wb->batch_max_jobs : 1;
    do {
        job *j = wb->head;
        if (wb->n_batch && wb->batch_bytes + j->e->charge > wb->batch_max_bytes)
            break;
        unlink_job(wb, j);
        wb->batch[wb->n_batch++] = j;
        wb->batch_bytes += j->e->charge;
    } while (wb->head && wb->n_batch < max_jobs);
}

static void write_batch(gencache__writeback *wb)
{
    size_t n = wb->n_batch;
    if (n == 1 || !wb->many) {
        for (size_t i = 0; i < n; i++)
            wb->fn(wb->userdata, wb->batch[i]->e, wb->batch[i]->targets);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        wb->batch_es[i] = wb->batch[i]->e;
        wb->batch_targets[i] = wb->batch[i]->targets;
    }
    wb->many(wb->userdata, wb->batch_es, wb->batch_targets, n);
}

static void *writer_main(void *arg)
{
    gencache__writeback *wb = arg;
    pthread_mutex_lock(&wb->mu);
    for (;;) {
        while (!wb->head && !wb->stopping)
            pthread_cond_wait(&wb->work, &wb->mu);
        if (!wb->head)
            break; /* stopping, and everything is written */
        take_batch(wb);
        pthread_mutex_unlock(&wb->mu);
        /* The batch array changes only on this thread, and only with the lock held. */
        write_batch(wb);
        pthread_mutex_lock(&wb->mu);
        size_t n = wb->n_batch;
        wb->n_batch = 0;
        wb->batch_bytes = 0;
        wb->written += n;
        pthread_cond_broadcast(&wb->idle); /* room for pushers; forget and drain may go on */
        pthread_mutex_unlock(&wb->mu);
        for (size_t i = 0; i < n; i++)
            job_free(wb, wb->batch[i]);
        pthread_mutex_lock(&wb->mu);
    }
    pthread_mutex_unlock(&wb->mu);
    return NULL;
}

int gencache__writeback_open(const gencache_allocator *a, uint64_t max_bytes,
                             gencache__writeback_fn fn, void *userdata, gencache__writeback **out)
{
    *out = NULL;
    gencache__writeback *wb = gencache__calloc(a, 1, sizeof *wb);
    if (!wb)
        return GENCACHE_ENOMEM;
    wb->alloc = a;
    wb->fn = fn;
    wb->userdata = userdata;
    wb->max_bytes = max_bytes;
    wb->batch_max_jobs = 1;
    wb->batch = gencache__malloc(a, sizeof *wb->batch);
    if (!wb->batch) {
        gencache__free(a, wb);
        return GENCACHE_ENOMEM;
    }
    pthread_mutex_init(&wb->mu, NULL);
    pthread_cond_init(&wb->work, NULL);
    pthread_cond_init(&wb->idle, NULL);
    if (pthread_create(&wb->thread, NULL, writer_main, wb) != 0) {
        pthread_cond_destroy(&wb->idle);
        pthread_cond_destroy(&wb->work);
        pthread_mutex_destroy(&wb->mu);
        gencache__free(a, wb->batch);
        gencache__free(a, wb);
        return GENCACHE_EIO;
    }
    *out = wb;
    return GENCACHE_OK;
}

int gencache__writeback_set_batch(gencache__writeback *wb, gencache__writeback_many_fn fn,
                                  size_t max_jobs, uint64_t max_bytes)
{
    if (!fn || max_jobs < 1)
        max_jobs = 1;
    job **batch = gencache__malloc(wb->alloc, max_jobs * sizeof *batch);
    gencache__entry **es = gencache__malloc(wb->alloc, max_jobs * sizeof *es);
    unsigned *targets = gencache__malloc(wb->alloc, max_jobs * sizeof *targets);
    if (!batch || !es || !targets) {
        gencache__free(wb->alloc, batch);
        gencache__free(wb->alloc, es);
        gencache__free(wb->alloc, targets);
        return GENCACHE_ENOMEM;
    }
    pthread_mutex_lock(&wb->mu);
    /* The arrays are the writer's while a batch is out: swap them only between batches. */
    while (wb->n_batch)
        pthread_cond_wait(&wb->idle, &wb->mu);
    job **old_batch = wb->batch;
    gencache__entry **old_es = wb->batch_es;
    unsigned *old_targets = wb->batch_targets;
    wb->batch = batch;
    wb->batch_es = es;
    wb->batch_targets = targets;
    wb->many = max_jobs > 1 ? fn : NULL;
    wb->batch_max_jobs = max_jobs;
    wb->batch_max_bytes = max_bytes;
    pthread_mutex_unlock(&wb->mu);
    gencache__free(wb->alloc, old_batch);
    gencache__free(wb->alloc, old_es);
    gencache__free(wb->alloc, old_targets);
    return GENCACHE_OK;
}

/* The queued job of key, or NULL (lock held). */
static job *find_job(gencache__writeback *wb, const char *key, uint64_t hash)
{
    for (job *j = *bucket_of(wb, hash); j; j = j->hnext)
        if (same_key(j->e, key, hash))
            return j;
    return NULL;
}

/* True when charge more bytes would take the queued and in-flight charges past the bound while
 * something else is held (lock held). */
static bool over_bound(const gencache__writeback *wb, uint64_t charge)
{
    return (wb->queued_entries || wb->n_batch) &&
           wb->queued_bytes + wb->batch_bytes + charge > wb->max_bytes;
}

static void push(gencache__writeback *wb, gencache__entry *e, unsigned targets, bool wait)
{
    job *fresh = gencache__malloc(wb->alloc, sizeof *fresh);
    pthread_mutex_lock(&wb->mu);
    job *j = find_job(wb, e->key, e->hash);
    if (j) {
        /* One job per key: the newer value replaces the queued one, in the queued one's place. */
        wb->queued_bytes += e->charge;
        wb->queued_bytes -= j->e->charge;
        gencache__entry_release(j->e);
        j->e = gencache__entry_retain(e);
        j->targets |= targets;
        pthread_mutex_unlock(&wb->mu);
        gencache__free(wb->alloc, fresh);
        return;
    }
    if (wait && over_bound(wb, e->charge)) {
        wb->stalls++;
        while (over_bound(wb, e->charge))
            pthread_cond_wait(&wb->idle, &wb->mu);
    }
    if (!fresh) {
        /* No memory for a job: write on this thread rather than lose the value. */
        pthread_mutex_unlock(&wb->mu);
        wb->fn(wb->userdata, e, targets);
        return;
    }
    fresh->e = gencache__entry_retain(e);
    fresh->targets = targets;
    job **b = bucket_of(wb, e->hash);
    fresh->hnext = *b;
    *b = fresh;
    fresh->next = NULL;
    fresh->prev = wb->tail;
    if (wb->tail)
        wb->tail->next = fresh;
    else
        wb->head = fresh;
    wb->tail = fresh;
    wb->queued_bytes += e->charge;
    wb->queued_entries++;
    pthread_cond_signal(&wb->work);
    pthread_mutex_unlock(&wb->mu);
}

void gencache__writeback_push(gencache__writeback *wb, gencache__entry *e, unsigned targets)
{
    push(wb, e, targets, true);
}

void gencache__writeback_push_nowait(gencache__writeback *wb, gencache__entry *e, unsigned targets)
{
    push(wb, e, targets, false);
}

void gencache__writeback_wait_room(gencache__writeback *wb)
{
    pthread_mutex_lock(&wb->mu);
    if (over_bound(wb, 0)) {
        wb->stalls++;
        while (over_bound(wb, 0))
            pthread_cond_wait(&wb->idle, &wb->mu);
    }
    pthread_mutex_unlock(&wb->mu);
}

gencache__entry *gencache__writeback_find(gencache__writeback *wb, const char *key, uint64_t hash)
{
    gencache__entry *e = NULL;
    pthread_mutex_lock(&wb->mu);
    job *j = find_job(wb, key, hash);
    for (size_t i = 0; !j && i < wb->n_batch; i++)
        if (same_key(wb->batch[i]->e, key, hash))
            j = wb->batch[i];
    if (j)
        e = gencache__entry_retain(j->e);
    pthread_mutex_unlock(&wb->mu);
    return e;
}

typedef struct key_match {
    const char *key;
    uint64_t hash;
} key_match;

static bool key_pred(void *ud, const gencache__entry *e)
{
    const key_match *k = ud;
    return same_key(e, k->key, k->hash);
}

/* True when a job of the batch being written is one pred accepts (lock held). */
static bool batch_matches(gencache__writeback *wb, gencache__entry_pred pred, void *userdata)
{
    for (size_t i = 0; i < wb->n_batch; i++)
        if (pred(userdata, wb->batch[i]->e))
            return true;
    return false;
}

uint64_t gencache__writeback_forget_if(gencache__writeback *wb, gencache__entry_pred pred,
                                       void *userdata)
{
    job *gone = NULL;
    uint64_t n = 0;
    pthread_mutex_lock(&wb->mu);
    for (job *j = wb->head, *next; j; j = next) {
        next = j->next;
        if (pred(userdata, j->e)) {
            unlink_job(wb, j);
            j->next = gone;
            gone = j;
            n++;
        }
    }
    while (batch_matches(wb, pred, userdata))
        pthread_cond_wait(&wb->idle, &wb->mu);
    if (gone)
        pthread_cond_broadcast(&wb->idle);
    pthread_mutex_unlock(&wb->mu);
    for (job *j = gone, *next; j; j = next) {
        next = j->next;
        job_free(wb, j);
    }
    return n;
}

bool gencache__writeback_forget(gencache__writeback *wb, const char *key, uint64_t hash)
{
    key_match k = {key, hash};
    pthread_mutex_lock(&wb->mu);
    bool any = wb->head || wb->n_batch;
    pthread_mutex_unlock(&wb->mu);
    return any && gencache__writeback_forget_if(wb, key_pred, &k) > 0;
}

void gencache__writeback_drain(gencache__writeback *wb)
{
    pthread_mutex_lock(&wb->mu);
    while (wb->head || wb->n_batch)
        pthread_cond_wait(&wb->idle, &wb->mu);
    pthread_mutex_unlock(&wb->mu);
}

void gencache__writeback_get_stats(gencache__writeback *wb, gencache__writeback_stats *out)
{
    pthread_mutex_lock(&wb->mu);
    out->queued_bytes = wb->queued_bytes;
    out->queued_entries = wb->queued_entries;
    out->written = wb->written;
    out->stalls = wb->stalls;
    pthread_mutex_unlock(&wb->mu);
}

void gencache__writeback_close(gencache__writeback *wb)
{
    if (!wb)
        return;
    pthread_mutex_lock(&wb->mu);
    wb->stopping = true;
    pthread_cond_signal(&wb->work);
    pthread_mutex_unlock(&wb->mu);
    pthread_join(wb->thread, NULL);
    pthread_cond_destroy(&wb->idle);
    pthread_cond_destroy(&wb->work);
    pthread_mutex_destroy(&wb->mu);
    gencache__free(wb->alloc, wb->batch);
    gencache__free(wb->alloc, wb->batch_es);
    gencache__free(wb->alloc, wb->batch_targets);
    gencache__free(wb->alloc, wb);
}
