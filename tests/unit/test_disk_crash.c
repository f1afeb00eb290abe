/*
 * test_disk_crash.c: the disk tier when things go wrong: values damaged behind its back (a value
 * file, a page of the LMDB file), a second opener of the same directory, an unknown format, an
 * older format upgraded, a full file system, and a writer killed with SIGKILL in the middle of a
 * stream of puts.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "tier/disk.h"
#include "tier_util.h"

#define SMALL 4096
#define LARGE (1536u * 1024u)

static void log_stderr(void *ud, gencache_log_level level, const char *msg)
{
    (void)ud;
    fprintf(stderr, "log %d: %s\n", (int)level, msg);
}

static const gencache__log test_log = {log_stderr, NULL, GENCACHE_LOG_INFO};

/* inline_max 0: the tier's default threshold (values up to 4 MiB inline). */
static gencache__tier *open_dir_ex(const char *dir, bool durable, tu_evictions *ev,
                                   size_t inline_max)
{
    gencache__disk_options o = {.path = dir, .log = &test_log};
    gencache__disk_tuning tune;
    gencache__disk_tuning_init(&tune);
    if (inline_max)
        tune.inline_max = inline_max;
    tune.durable = durable;
    gencache__tier *t = NULL;
    CHECK_OK(gencache__disk_tier_open_ex(&o, &tune, &t));
    if (ev) {
        t->on_evict = tu_on_evict;
        t->on_evict_userdata = ev;
    }
    return t;
}

static gencache__tier *open_dir(const char *dir, bool durable, tu_evictions *ev)
{
    return open_dir_ex(dir, durable, ev, 256u << 10); /* so that both value layouts are used */
}

static int put_id(gencache__tier *t, uint64_t id, size_t size)
{
    gencache__entry *e = tu_entry(&(tu_spec){.id = id, .size = size, .now_ms = 1000});
    int rc = t->ops->put(t, e, 1000);
    gencache__entry_release(e);
    return rc;
}

static int get_id(gencache__tier *t, uint64_t id, gencache__entry **out)
{
    char key[GENCACHE__KEY_MAX + 1];
    tu_key(key, "result", id);
    return t->ops->get(t, key, tu_hash(key), 2000, true, out);
}

static void flip_byte_at(const char *path, off_t off)
{
    int fd = open(path, O_RDWR);
    CHECK(fd >= 0);
    unsigned char b;
    CHECK(pread(fd, &b, 1, off) == 1);
    b ^= 0x5a;
    CHECK(pwrite(fd, &b, 1, off) == 1);
    close(fd);
}

TEST_CASE(corrupt_value_file_is_dropped)
{
    char *dir = tu_tmpdir("diskc");
    tu_evictions ev = {0};
    gencache__tier *t = open_dir(dir, false, &ev);
    CHECK_OK(put_id(t, 1, LARGE));
    CHECK_OK(put_id(t, 2, LARGE));
    gencache__disk_tier *d = (gencache__disk_tier *)t;
    char path[4096], key[GENCACHE__KEY_MAX + 1];
    tu_key(key, "result", 1);
    CHECK_OK(gencache__disk_blob_of(d, key, path, sizeof path));
    flip_byte_at(path, LARGE / 2);
    gencache__entry *e = (gencache__entry *)1;
    CHECK_RC(get_id(t, 1, &e), GENCACHE_ENOTFOUND);
    CHECK(e == NULL);
    CHECK_INT_EQ(ev.n[GENCACHE__EVICT_CORRUPT], 1);
    CHECK_RC(get_id(t, 1, &e), GENCACHE_ENOTFOUND);
    CHECK(access(path, F_OK) != 0); /* the damaged file is gone */
    /* A truncated file and a missing file are damage too. */
    tu_key(key, "result", 2);
    CHECK_OK(gencache__disk_blob_of(d, key, path, sizeof path));
    CHECK(truncate(path, 1000) == 0);
    CHECK_RC(get_id(t, 2, &e), GENCACHE_ENOTFOUND);
    CHECK_OK(put_id(t, 3, LARGE));
    tu_key(key, "result", 3);
    CHECK_OK(gencache__disk_blob_of(d, key, path, sizeof path));
    CHECK(unlink(path) == 0);
    CHECK_RC(get_id(t, 3, &e), GENCACHE_ENOTFOUND);
    gencache_tier_stats st;
    t->ops->stats(t, &st);
    CHECK_UINT_EQ(st.evictions_corrupt, 3);
    CHECK_UINT_EQ(st.entries, 0);
    CHECK_UINT_EQ(ev.n[GENCACHE__EVICT_CORRUPT], 3);
    /* Storing the value again works. */
    CHECK_OK(put_id(t, 3, LARGE));
    CHECK_OK(get_id(t, 3, &e));
    tu_check_value(e, 3, LARGE);
    gencache__entry_release(e);
    t->ops->close(t);
    tu_rm_rf(dir);
    free(dir);
}

/* Flips byte `delta` of every occurrence of needle in the file (LMDB copies pages on write, so
 * older copies of a record may sit in free pages); returns how many it found. */
static int damage_all(const char *path, const unsigned char *needle, size_t n, size_t delta)
{
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)size);
    CHECK(fread(buf, 1, (size_t)size, f) == (size_t)size);
    fclose(f);
    int found = 0;
    for (long i = 0; i + (long)n <= size; i++) {
        if (memcmp(buf + i, needle, n) == 0) {
            flip_byte_at(path, i + (off_t)delta);
            found++;
        }
    }
    free(buf);
    return found;
}

TEST_CASE(corrupt_lmdb_page_is_dropped)
{
    char *dir = tu_tmpdir("diskc");
    gencache__tier *t = open_dir(dir, false, NULL);
    for (uint64_t i = 1; i <= 20; i++)
        CHECK_OK(put_id(t, i, SMALL));
    t->ops->close(t);
    /* Damage the middle of value 7 inside the LMDB file. */
    unsigned char v[SMALL];
    tu_fill(v, SMALL, 7);
    char path[4096];
    snprintf(path, sizeof path, "%s/index/data.mdb", dir);
    CHECK(damage_all(path, v, SMALL, SMALL / 2) >= 1);

    tu_evictions ev = {0};
    t = open_dir(dir, false, &ev);
    gencache__entry *e = NULL;
    CHECK_RC(get_id(t, 7, &e), GENCACHE_ENOTFOUND);
    CHECK_INT_EQ(ev.n[GENCACHE__EVICT_CORRUPT], 1);
    for (uint64_t i = 1; i <= 20; i++) {
        if (i == 7)
            continue;
        CHECK_OK(get_id(t, i, &e));
        tu_check_value(e, i, SMALL);
        gencache__entry_release(e);
    }
    gencache_tier_stats st;
    t->ops->stats(t, &st);
    CHECK_UINT_EQ(st.entries, 19);
    CHECK_UINT_EQ(st.evictions_corrupt, 1);
    t->ops->close(t);

    /* Damage an index record (the metadata of entry 9, found by its length-prefixed key, which
     * only the record holds): also dropped, never served. */
    char key[GENCACHE__KEY_MAX + 1];
    tu_key(key, "result", 9);
    size_t klen = strlen(key);
    unsigned char needle[4 + GENCACHE__KEY_MAX];
    needle[0] = (unsigned char)klen;
    needle[1] = needle[2] = needle[3] = 0;
    memcpy(needle + 4, key, klen);
    CHECK(damage_all(path, needle, 4 + klen, 4 + klen - 1) >= 1);
    t = open_dir(dir, false, &ev);
    CHECK_RC(get_id(t, 9, &e), GENCACHE_ENOTFOUND);
    t->ops->stats(t, &st);
    CHECK_UINT_EQ(st.evictions_corrupt, 1);
    CHECK_UINT_EQ(st.entries, 18);
    CHECK_RC(get_id(t, 9, &e), GENCACHE_ENOTFOUND);
    CHECK_OK(get_id(t, 10, &e));
    tu_check_value(e, 10, SMALL);
    gencache__entry_release(e);
    /* Eviction walks past the dropped record's leftovers. */
    uint64_t n = 0;
    CHECK_OK(t->ops->expire(t, 1u << 30, &n));
    t->ops->close(t);
    tu_rm_rf(dir);
    free(dir);
}

TEST_CASE(second_open_is_busy)
{
    char *dir = tu_tmpdir("diskc");
    gencache__tier *t = open_dir(dir, false, NULL);
    CHECK_OK(put_id(t, 1, SMALL));
    gencache__disk_options o = {.path = dir};
    gencache__tier *t2 = (gencache__tier *)1;
    CHECK_RC(gencache__disk_tier_open(&o, &t2), GENCACHE_EBUSY);
    CHECK(t2 == NULL);
    /* Another process too. */
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        gencache__tier *t3 = NULL;
        int rc = gencache__disk_tier_open(&o, &t3);
        _exit(rc == GENCACHE_EBUSY ? 0 : 1);
    }
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    /* The failed opens changed nothing. */
    gencache__entry *e = NULL;
    CHECK_OK(get_id(t, 1, &e));
    tu_check_value(e, 1, SMALL);
    gencache__entry_release(e);
    t->ops->close(t);
    CHECK_OK(gencache__disk_tier_open(&o, &t2));
    t2->ops->close(t2);
    tu_rm_rf(dir);
    free(dir);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    fputs(text, f);
    fclose(f);
}

/* A data.mdb cut short would be read through LMDB's map past its end (SIGBUS, the process
 * killed): the tier refuses to open it instead, in a child so that a regression shows as a
 * signal rather than killing the test runner. */
TEST_CASE(truncated_index_is_refused_not_sigbus)
{
    char *dir = tu_tmpdir("diskc");
    gencache__tier *t = open_dir(dir, false, NULL);
    for (uint64_t id = 1; id <= 400; id++)
        CHECK_OK(put_id(t, id, SMALL));
    t->ops->close(t);
    char path[4096];
    snprintf(path, sizeof path, "%s/index/data.mdb", dir);
    struct stat sb;
    CHECK(stat(path, &sb) == 0);
    CHECK(truncate(path, sb.st_size / 2) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        gencache__disk_options o = {.path = dir, .log = &test_log};
        gencache__tier *t2 = (gencache__tier *)&t2;
        int rc = gencache__disk_tier_open(&o, &t2);
        if (rc == GENCACHE_OK) {
            for (uint64_t id = 1; id <= 400; id++) { /* reads every page: SIGBUS if truncated */
                gencache__entry *e = NULL;
                if (get_id(t2, id, &e) == GENCACHE_OK)
                    gencache__entry_release(e);
            }
            t2->ops->close(t2);
        }
        _exit(rc == GENCACHE_ECORRUPT && t2 == NULL ? 0 : 3);
    }
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        test_fail(__FILE__, __LINE__, "child: %s %d (expected a clean ECORRUPT refusal)",
                  WIFSIGNALED(status) ? "killed by signal" : "exit status",
                  WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
    tu_rm_rf(dir);
    free(dir);
}

TEST_CASE(unknown_format_version)
{
    char *dir = tu_tmpdir("diskc");
    gencache__tier *t = open_dir(dir, false, NULL);
    CHECK_OK(put_id(t, 1, SMALL));
    t->ops->close(t);
    char path[4096];
    snprintf(path, sizeof path, "%s/FORMAT", dir);
    const char *bad[] = {"gencache-disk-format 3\n",
                         "gencache-disk-format 0\n",
                         "gencache-disk-format x\n",
                         "",
                         "hello\n",
                         "gencache-disk-format 1 and more\n"};
    gencache__disk_options o = {.path = dir};
    for (unsigned i = 0; i < sizeof bad / sizeof *bad; i++) {
        write_file(path, bad[i]);
        CHECK_RC(gencache__disk_tier_open(&o, &t), GENCACHE_EVERSION);
        CHECK(t == NULL);
    }
    /* An index without a FORMAT file is not guessed at. */
    CHECK(unlink(path) == 0);
    CHECK_RC(gencache__disk_tier_open(&o, &t), GENCACHE_EVERSION);
    write_file(path, "gencache-disk-format 1\n");
    t = open_dir(dir, false, NULL);
    gencache__entry *e = NULL;
    CHECK_OK(get_id(t, 1, &e));
    gencache__entry_release(e);
    t->ops->close(t);
    /* A path that cannot be a directory. */
    char file[4096];
    snprintf(file, sizeof file, "%s/FORMAT/sub", dir);
    o.path = file;
    CHECK(gencache__disk_tier_open(&o, &t) < 0);
    tu_rm_rf(dir);
    free(dir);
}

/* The tier's LMDB environment opened directly (the tier closed), a transaction begun in it
 * (flags: 0 or MDB_RDONLY for both) and its main database. */
static MDB_env *open_index_env(const char *dir, unsigned flags, MDB_txn **txn, MDB_dbi *main_db)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/index", dir);
    MDB_env *env;
    CHECK_INT_EQ(mdb_env_create(&env), 0);
    CHECK_INT_EQ(mdb_env_set_maxdbs(env, 8), 0);
    CHECK_INT_EQ(mdb_env_set_mapsize(env, 1ull << 30), 0);
    CHECK_INT_EQ(mdb_env_open(env, path, MDB_NOTLS | flags, 0644), 0);
    CHECK_INT_EQ(mdb_txn_begin(env, NULL, flags, txn), 0);
    CHECK_INT_EQ(mdb_dbi_open(*txn, NULL, 0, main_db), 0);
    return env;
}

/* Rewrites an index of this build's format as format 1 had it: the totals in a table named
 * "info" (keys "bytes" and "pinned"), none in the main database, and a FORMAT file saying 1. */
static void make_format_1(const char *dir)
{
    MDB_txn *txn;
    MDB_dbi main_db, info;
    MDB_env *env = open_index_env(dir, 0, &txn, &main_db);
    MDB_val k = {strlen(GENCACHE__DISK_TOTALS_KEY), GENCACHE__DISK_TOTALS_KEY}, v;
    CHECK_INT_EQ(mdb_get(txn, main_db, &k, &v), 0);
    CHECK_UINT_EQ(v.mv_size, 16);
    uint64_t totals[2];
    memcpy(totals, v.mv_data, sizeof totals);
    CHECK_INT_EQ(mdb_del(txn, main_db, &k, NULL), 0);
    CHECK_INT_EQ(mdb_dbi_open(txn, "info", MDB_CREATE, &info), 0);
    const char *names[2] = {"bytes", "pinned"};
    for (int i = 0; i < 2; i++) {
        MDB_val nk = {strlen(names[i]), (void *)names[i]}, nv = {8, &totals[i]};
        CHECK_INT_EQ(mdb_put(txn, info, &nk, &nv, 0), 0);
    }
    CHECK_INT_EQ(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
    char path[4096];
    snprintf(path, sizeof path, "%s/FORMAT", dir);
    write_file(path, "gencache-disk-format 1\n");
}

/* Where the index keeps its totals: 1 in the main database, 2 in an "info" table, 3 both. */
static int totals_place(const char *dir)
{
    MDB_txn *txn;
    MDB_dbi main_db, info;
    MDB_env *env = open_index_env(dir, MDB_RDONLY, &txn, &main_db);
    MDB_val k = {strlen(GENCACHE__DISK_TOTALS_KEY), GENCACHE__DISK_TOTALS_KEY}, v;
    int place = mdb_get(txn, main_db, &k, &v) == MDB_SUCCESS ? 1 : 0;
    if (mdb_dbi_open(txn, "info", 0, &info) == MDB_SUCCESS)
        place |= 2;
    mdb_txn_abort(txn);
    mdb_env_close(env);
    return place;
}

static void expect_format_file(const char *dir, const char *text)
{
    char path[4096], line[128] = "";
    snprintf(path, sizeof path, "%s/FORMAT", dir);
    FILE *f = fopen(path, "r");
    CHECK(f != NULL);
    CHECK(fgets(line, sizeof line, f) != NULL);
    fclose(f);
    CHECK_STR_EQ(line, text);
}

/* The tier's totals: entries, bytes, and one pinned entry. */
static void expect_totals(gencache__tier *t, uint64_t entries, uint64_t bytes)
{
    gencache_tier_stats st;
    t->ops->stats(t, &st);
    CHECK_UINT_EQ(st.entries, entries);
    CHECK_UINT_EQ(st.bytes, bytes);
    CHECK_UINT_EQ(st.pinned_entries, 1);
}

/* An upgraded directory: its totals in the main database only, FORMAT saying 2, and the same
 * totals when it is opened once more. */
static void expect_upgraded(const char *dir, uint64_t entries, uint64_t bytes)
{
    CHECK_INT_EQ(totals_place(dir), 1);
    expect_format_file(dir, "gencache-disk-format 2\n");
    gencache__tier *t = open_dir(dir, true, NULL);
    expect_totals(t, entries, bytes);
    t->ops->close(t);
}

/* Fills a new directory with n entries (the last one in a value file, the others inline; entry
 * pinned_id pinned, 0: none), leaves its stats in *before, and rewrites it as format 1. */
static void make_format_1_dir(const char *dir, uint64_t n, uint64_t pinned_id,
                              gencache_tier_stats *before)
{
    gencache__tier *t = open_dir(dir, true, NULL);
    for (uint64_t id = 1; id <= n; id++) {
        gencache__entry *e = tu_entry(&(tu_spec){
            .id = id, .size = id == n ? LARGE : SMALL, .now_ms = 1000, .pinned = id == pinned_id});
        CHECK_OK(t->ops->put(t, e, 1000));
        gencache__entry_release(e);
    }
    t->ops->stats(t, before);
    t->ops->close(t);
    make_format_1(dir);
}

/* A directory of format 1 (totals in a table of their own) opens with its totals, its entries
 * and its pinned count, and leaves format 2: the totals moved into the main database, the old
 * table dropped, FORMAT rewritten. A crash between the index's upgrade and the FORMAT file's
 * leaves format 1 written over an upgraded index: that opens the same way. */
TEST_CASE(format_1_directory_is_upgraded)
{
    for (int crashed = 0; crashed <= 1; crashed++) {
        char *dir = tu_tmpdir("diskc");
        gencache__tier *t = open_dir(dir, true, NULL);
        for (uint64_t id = 1; id <= 12; id++) {
            gencache__entry *e = tu_entry(&(tu_spec){
                .id = id, .size = id % 4 ? SMALL + id : LARGE, .now_ms = 1000, .pinned = id == 5});
            CHECK_OK(t->ops->put(t, e, 1000));
            gencache__entry_release(e);
        }
        gencache_tier_stats before;
        t->ops->stats(t, &before);
        t->ops->close(t);
        CHECK_INT_EQ(totals_place(dir), 1);
        expect_format_file(dir, "gencache-disk-format 2\n");
        if (crashed) {
            char path[4096];
            snprintf(path, sizeof path, "%s/FORMAT", dir);
            write_file(path, "gencache-disk-format 1\n");
        } else {
            make_format_1(dir);
            CHECK_INT_EQ(totals_place(dir), 2);
        }

        t = open_dir(dir, true, NULL);
        expect_totals(t, 12, before.bytes);
        for (uint64_t id = 1; id <= 12; id++) {
            gencache__entry *e = NULL;
            CHECK_OK(get_id(t, id, &e));
            tu_check_value(e, id, id % 4 ? SMALL + id : LARGE);
            gencache__entry_release(e);
        }
        CHECK_OK(put_id(t, 13, SMALL));
        gencache_tier_stats more;
        t->ops->stats(t, &more);
        CHECK(more.bytes > before.bytes);
        t->ops->close(t);
        expect_upgraded(dir, 13, more.bytes);
        tu_rm_rf(dir);
        free(dir);
    }
}

/* An upgrade whose FORMAT file cannot be written (here FORMAT.tmp is a directory) fails the open
 * with an error and leaves the directory readable: the next open, once the obstacle is gone,
 * finishes the upgrade with the totals intact. */
TEST_CASE(format_upgrade_that_cannot_write_format_fails_cleanly)
{
    char *dir = tu_tmpdir("diskc");
    gencache_tier_stats before;
    make_format_1_dir(dir, 5, 0, &before);
    gencache__tier *t;
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s/FORMAT.tmp", dir);
    CHECK(mkdir(tmp, 0755) == 0);
    gencache__disk_options o = {.path = dir, .log = &test_log};
    t = (gencache__tier *)&t;
    CHECK(gencache__disk_tier_open(&o, &t) < 0);
    CHECK(t == NULL);
    expect_format_file(dir, "gencache-disk-format 1\n");
    CHECK(rmdir(tmp) == 0);
    t = open_dir(dir, true, NULL);
    gencache_tier_stats after;
    t->ops->stats(t, &after);
    CHECK_UINT_EQ(after.entries, 5);
    CHECK_UINT_EQ(after.bytes, before.bytes);
    gencache__entry *e = NULL;
    CHECK_OK(get_id(t, 5, &e));
    tu_check_value(e, 5, LARGE);
    gencache__entry_release(e);
    t->ops->close(t);
    expect_format_file(dir, "gencache-disk-format 2\n");
    CHECK_INT_EQ(totals_place(dir), 1);
    tu_rm_rf(dir);
    free(dir);
}

/* FORMAT 2 over an index that still keeps its totals in the "info" table (a power loss without
 * durability can leave the FORMAT file ahead of the index): the index is upgraded all the same,
 * by what it holds, and opens with its totals. */
TEST_CASE(format_2_file_over_format_1_index_is_upgraded)
{
    char *dir = tu_tmpdir("diskc");
    gencache_tier_stats before;
    make_format_1_dir(dir, 6, 2, &before);
    char path[4096];
    snprintf(path, sizeof path, "%s/FORMAT", dir);
    write_file(path, "gencache-disk-format 2\n");
    CHECK_INT_EQ(totals_place(dir), 2);

    gencache__tier *t = open_dir(dir, true, NULL);
    expect_totals(t, 6, before.bytes);
    gencache__entry *e = NULL;
    CHECK_OK(get_id(t, 6, &e));
    tu_check_value(e, 6, LARGE);
    gencache__entry_release(e);
    t->ops->close(t);
    expect_upgraded(dir, 6, before.bytes);
    tu_rm_rf(dir);
    free(dir);
}

/* Fills the tier until a put fails; checks the failure is clean and reads still work; then
 * make_room() frees space outside the tier and writes work again. Values alternate between the
 * two layouts, so the index and the value files both meet the full disk. */
static void fill_until_full(gencache__tier *t, void (*make_room)(void))
{
    int rc = GENCACHE_OK;
    uint64_t i = 0;
    for (; i < 10000 && rc == GENCACHE_OK; i++)
        rc = put_id(t, i, i % 2 ? SMALL * 8 : LARGE / 4 + 1);
    CHECK(rc == GENCACHE_ENOSPC || rc == GENCACHE_EIO);
    CHECK(i > 2);
    gencache_tier_stats st;
    t->ops->stats(t, &st);
    CHECK(st.backend_errors >= 1);
    for (uint64_t j = 0; j + 1 < i; j++) {
        gencache__entry *e = NULL;
        CHECK_OK(get_id(t, j, &e));
        tu_check_value(e, j, j % 2 ? SMALL * 8 : LARGE / 4 + 1);
        gencache__entry_release(e);
    }
    /* Keep writing into the full disk: puts that do not fit fail cleanly (a small one may still
     * find a free page), and nothing breaks. */
    int failed = 0;
    for (uint64_t j = 0; j < 20; j++) {
        rc = put_id(t, 50000 + j, j % 2 ? SMALL * 8 : LARGE / 4 + 1);
        CHECK(rc == GENCACHE_OK || rc == GENCACHE_ENOSPC || rc == GENCACHE_EIO);
        failed += rc != GENCACHE_OK;
    }
    CHECK(failed > 0);
    make_room();
    char key[GENCACHE__KEY_MAX + 1];
    tu_key(key, "result", 0);
    CHECK_OK(t->ops->del(t, key, tu_hash(key)));
    CHECK_OK(put_id(t, 100000, SMALL));
    gencache__entry *e = NULL;
    CHECK_OK(get_id(t, 100000, &e));
    tu_check_value(e, 100000, SMALL);
    gencache__entry_release(e);
    CHECK_OK(get_id(t, 1, &e));
    gencache__entry_release(e);
}

static char *mounted;
static char ballast[4200];

static void unmount_at_exit(void)
{
    if (mounted)
        umount2(mounted, MNT_DETACH);
}

static void remove_ballast(void)
{
    CHECK(unlink(ballast) == 0);
}

static void raise_limit(void)
{
    struct rlimit rl = {RLIM_INFINITY, RLIM_INFINITY};
    CHECK(setrlimit(RLIMIT_FSIZE, &rl) == 0);
}

/* A full file system: a 3 MiB tmpfs (we run as root in CI), or, where mounting is not allowed
 * (or GENCACHE_TEST_NO_MOUNT is set, to exercise this path), RLIMIT_FSIZE in a child. */
TEST_CASE(disk_full_fails_cleanly)
{
    char *dir = tu_tmpdir("diskfull");
    if (getenv("GENCACHE_TEST_NO_MOUNT") == NULL &&
        mount("tmpfs", dir, "tmpfs", 0, "size=3m") == 0) {
        mounted = dir;
        atexit(unmount_at_exit);
        char sub[4096];
        snprintf(sub, sizeof sub, "%s/data", dir);
        /* Space taken by someone else, given back later. */
        snprintf(ballast, sizeof ballast, "%s/ballast", dir);
        FILE *f = fopen(ballast, "w");
        CHECK(f != NULL);
        static char block[512 << 10];
        CHECK(fwrite(block, 1, sizeof block, f) == sizeof block);
        fclose(f);
        gencache__tier *t = open_dir(sub, true, NULL);
        fill_until_full(t, remove_ballast);
        t->ops->close(t);
        CHECK(umount2(dir, MNT_DETACH) == 0);
        mounted = NULL;
        rmdir(dir);
        free(dir);
        return;
    }
    /* No mount rights: a file-size limit in a child process stands in for the full disk. */
    printf("tmpfs mount not possible (%s): using RLIMIT_FSIZE in a child\n", strerror(errno));
    fflush(stdout);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit rl = {2u << 20, RLIM_INFINITY};
        CHECK(setrlimit(RLIMIT_FSIZE, &rl) == 0);
        gencache__tier *t = open_dir(dir, true, NULL);
        fill_until_full(t, raise_limit);
        t->ops->close(t);
        _exit(0);
    }
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    tu_rm_rf(dir);
    free(dir);
}

static size_t crash_size(uint64_t i)
{
    return i % 5 == 0 ? (300u << 10) + (size_t)i : 1000 + (size_t)i;
}

/* With the default threshold: small values, 1.5 MiB values inline (hundreds of LMDB overflow
 * pages written by one commit, the durable put the benchmarks measure) and now and then a value
 * over 4 MiB in its own file. */
static size_t crash_size_default(uint64_t i)
{
    if (i % 16 == 15)
        return (5u << 20) + (size_t)i;
    return i % 2 ? LARGE + (size_t)i : 1000 + (size_t)i;
}

/* A child puts values of size(i) for i = 0, 1, ... and acknowledges each through a pipe; it is
 * killed with SIGKILL after `want` acknowledgements (or 1.5 s). After a reopen every acknowledged
 * value must be there, whole, and the put in flight absent or whole; nothing counted corrupt. */
static void kill9_stream(size_t inline_max, size_t (*size)(uint64_t), uint64_t want)
{
    char *dir = tu_tmpdir("diskc");
    int fds[2];
    CHECK(pipe(fds) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        gencache__tier *t = open_dir_ex(dir, true, NULL, inline_max);
        for (uint64_t i = 0;; i++) {
            if (put_id(t, i, size(i)) != GENCACHE_OK)
                _exit(3);
            if (write(fds[1], &i, sizeof i) != sizeof i)
                _exit(4);
        }
    }
    close(fds[1]);
    /* Let it run for a while, then kill it wherever it is. */
    uint64_t acked = 0, last = 0, got;
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        ssize_t r = read(fds[0], &got, sizeof got);
        CHECK(r == sizeof got);
        acked++;
        last = got;
        clock_gettime(CLOCK_MONOTONIC, &now);
        double ms = (now.tv_sec - t0.tv_sec) * 1e3 + (now.tv_nsec - t0.tv_nsec) / 1e6;
        if (acked >= want || ms > 1500)
            break;
    }
    CHECK(kill(pid, SIGKILL) == 0);
    int status;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    /* Acknowledgements still in the pipe count too. */
    while (read(fds[0], &got, sizeof got) == sizeof got) {
        acked++;
        last = got;
    }
    close(fds[0]);

    tu_evictions ev = {0};
    gencache__tier *t = open_dir_ex(dir, true, &ev, inline_max);
    uint64_t lost = 0;
    for (uint64_t i = 0; i <= last; i++) {
        gencache__entry *e = NULL;
        if (get_id(t, i, &e) != GENCACHE_OK) {
            lost++;
            continue;
        }
        tu_check_value(e, i, size(i));
        gencache__entry_release(e);
    }
    /* The put in flight at the kill: absent or whole, never damaged. */
    gencache__entry *e = NULL;
    if (get_id(t, last + 1, &e) == GENCACHE_OK) {
        tu_check_value(e, last + 1, size(last + 1));
        gencache__entry_release(e);
    }
    printf("kill -9 after %llu acknowledged puts: %llu lost\n", (unsigned long long)acked,
           (unsigned long long)lost);
    CHECK_UINT_EQ(lost, 0);
    CHECK_INT_EQ(ev.n[GENCACHE__EVICT_CORRUPT], 0);
    gencache_tier_stats st;
    t->ops->stats(t, &st);
    CHECK(st.entries >= last + 1);
    t->ops->close(t);
    tu_rm_rf(dir);
    free(dir);
}

TEST_CASE(kill9_during_puts_loses_nothing_acknowledged)
{
    kill9_stream(256u << 10, crash_size, 150);
}

TEST_CASE(kill9_during_large_inline_puts_loses_nothing_acknowledged)
{
    kill9_stream(0, crash_size_default, 60);
}

static void copy_file(const char *from, const char *to)
{
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    CHECK(in && out);
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        CHECK_UINT_EQ(fwrite(buf, 1, n, out), n);
    fclose(in);
    CHECK_INT_EQ(fclose(out), 0);
}

/* One flush per commit means a power loss may undo the last commits (LMDB's meta page of a
 * commit reaches the disk with the next commit's flush). What that leaves is simulated here by
 * putting back an older copy of the index: the value files written for the undone commits are
 * still there, unreferenced. The tier must open, serve every entry of the older index whole,
 * miss the undone ones, and remove their files; never serve a torn or missing file. */
TEST_CASE(undone_commits_leave_no_dangling_value)
{
    char *dir = tu_tmpdir("diskc");
    char mdb[4200], saved[4300];
    snprintf(mdb, sizeof mdb, "%s/index/data.mdb", dir);
    snprintf(saved, sizeof saved, "%s/saved.mdb", dir);
    gencache__tier *t = open_dir(dir, true, NULL);
    CHECK_OK(put_id(t, 1, LARGE));
    CHECK_OK(put_id(t, 2, SMALL));
    t->ops->close(t);
    copy_file(mdb, saved); /* the state the disk holds */
    t = open_dir(dir, true, NULL);
    CHECK_OK(put_id(t, 3, LARGE)); /* commits a power loss would undo */
    CHECK_OK(put_id(t, 1, LARGE)); /* replaces 1's file: the old one is unlinked */
    CHECK_OK(put_id(t, 4, SMALL));
    t->ops->close(t);
    copy_file(saved, mdb);

    tu_evictions ev = {0};
    t = open_dir(dir, true, &ev);
    gencache__entry *e = NULL;
    /* Entry 1's file from the older index was unlinked by the undone replacement: a miss, and
     * the record dropped, not a crash or garbage. */
    CHECK_RC(get_id(t, 1, &e), GENCACHE_ENOTFOUND);
    CHECK_INT_EQ(ev.n[GENCACHE__EVICT_CORRUPT], 1);
    CHECK_OK(get_id(t, 2, &e));
    tu_check_value(e, 2, SMALL);
    gencache__entry_release(e);
    CHECK_RC(get_id(t, 3, &e), GENCACHE_ENOTFOUND);
    CHECK_RC(get_id(t, 4, &e), GENCACHE_ENOTFOUND);
    /* The files of the undone puts were swept at open: only referenced files remain. */
    char cmd[4400];
    snprintf(cmd, sizeof cmd, "find %s/values -type f | wc -l", dir);
    FILE *p = popen(cmd, "r");
    int files = -1;
    CHECK(p && fscanf(p, "%d", &files) == 1);
    pclose(p);
    CHECK_INT_EQ(files, 0);
    gencache_tier_stats st;
    t->ops->stats(t, &st);
    CHECK_UINT_EQ(st.entries, 1);
    t->ops->close(t);
    tu_rm_rf(dir);
    free(dir);
}

typedef struct shrink_put {
    gencache__tier *t;
    int rc;
} shrink_put;

static void *put_in_thread(void *arg)
{
    shrink_put *p = arg;
    p->rc = put_id(p->t, 9999, SMALL);
    return NULL;
}

/* The child of index_shrinks_while_running: 0 when every call came back (no SIGBUS), the
 * tier disabled itself, and other threads were not left waiting on its locks. */
static int shrink_child(const char *dir, const char *mdb, bool put_first)
{
    gencache__disk_options o = {.path = dir, .log = &test_log};
    gencache__tier *t = NULL;
    if (gencache__disk_tier_open(&o, &t) != GENCACHE_OK)
        return 10;
    struct stat sb;
    if (stat(mdb, &sb) != 0 || truncate(mdb, sb.st_size / 4) != 0)
        return 11;
    /* A put's write transaction, or a get's read transaction, reads pages past the new end. */
    int put_rc = put_first ? put_id(t, 5000, 100u << 10) : GENCACHE_OK;
    int hits = 0;
    for (uint64_t id = 300; id >= 1; id--) {
        gencache__entry *e = NULL;
        if (get_id(t, id, &e) == GENCACHE_OK) {
            hits++;
            gencache__entry_release(e);
        }
    }
    shrink_put p = {t, 0};
    pthread_t th;
    if (pthread_create(&th, NULL, put_in_thread, &p) != 0 || pthread_join(th, NULL) != 0)
        return 12;
    gencache_tier_stats st;
    t->ops->stats(t, &st);
    printf("after the shrink: first put %s, %d of 300 gets hit, put from another thread %s, "
           "backend_errors %llu\n",
           gencache_errname(put_rc), hits, gencache_errname(p.rc),
           (unsigned long long)st.backend_errors);
    fflush(stdout);
    if (p.rc != GENCACHE_EIO || st.backend_errors == 0 || hits == 300)
        return 13;
    t->ops->close(t);
    /* A restart refuses the damaged index with a reason instead of dying. */
    t = (gencache__tier *)&t;
    if (gencache__disk_tier_open(&o, &t) != GENCACHE_ECORRUPT || t != NULL)
        return 14;
    return 0;
}

TEST_CASE(index_shrinks_while_running)
{
    for (int put_first = 1; put_first >= 0; put_first--) {
        char *dir = tu_tmpdir("diskc");
        gencache__tier *t = open_dir(dir, false, NULL);
        for (uint64_t id = 1; id <= 300; id++)
            CHECK_OK(put_id(t, id, 64u << 10)); /* ~19 MiB of inline values */
        t->ops->close(t);
        char mdb[4200];
        snprintf(mdb, sizeof mdb, "%s/index/data.mdb", dir);
        fflush(stdout);
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0)
            _exit(shrink_child(dir, mdb, put_first));
        int status = 0;
        CHECK(waitpid(pid, &status, 0) == pid);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            test_fail(
                __FILE__, __LINE__, "child (%s first): %s %d (expected every call to come back)",
                put_first ? "put" : "get", WIFSIGNALED(status) ? "killed by signal" : "exit status",
                WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
        tu_rm_rf(dir);
        free(dir);
    }
}

#define CRASH_BATCH 16

/* A group write killed at any point: every acknowledged group is there whole, and of the group
 * in flight the inline values (one transaction) are all there or none (its values in files are
 * separate puts: each absent or whole). */
TEST_CASE(kill9_during_batched_puts_keeps_batches_whole)
{
    char *dir = tu_tmpdir("diskcb");
    int fds[2];
    CHECK(pipe(fds) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        gencache__tier *t = open_dir(dir, true, NULL);
        for (uint64_t b = 0;; b++) {
            gencache__entry *es[CRASH_BATCH];
            int rcs[CRASH_BATCH];
            for (uint64_t i = 0; i < CRASH_BATCH; i++) {
                uint64_t id = b * CRASH_BATCH + i;
                es[i] = tu_entry(&(tu_spec){.id = id, .size = crash_size(id), .now_ms = 1000});
            }
            t->ops->put_many(t, es, CRASH_BATCH, 1000, rcs);
            for (uint64_t i = 0; i < CRASH_BATCH; i++) {
                gencache__entry_release(es[i]);
                if (rcs[i] != GENCACHE_OK)
                    _exit(3);
            }
            if (write(fds[1], &b, sizeof b) != sizeof b)
                _exit(4);
        }
    }
    close(fds[1]);
    uint64_t acked = 0, last = 0, got;
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        ssize_t r = read(fds[0], &got, sizeof got);
        CHECK(r == sizeof got);
        acked++;
        last = got;
        clock_gettime(CLOCK_MONOTONIC, &now);
        double ms = (now.tv_sec - t0.tv_sec) * 1e3 + (now.tv_nsec - t0.tv_nsec) / 1e6;
        if (acked >= 40 || ms > 1500)
            break;
    }
    CHECK(kill(pid, SIGKILL) == 0);
    int status;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    while (read(fds[0], &got, sizeof got) == sizeof got) {
        acked++;
        last = got;
    }
    close(fds[0]);

    tu_evictions ev = {0};
    gencache__tier *t = open_dir(dir, true, &ev);
    uint64_t lost = 0;
    for (uint64_t id = 0; id < (last + 1) * CRASH_BATCH; id++) {
        gencache__entry *e = NULL;
        if (get_id(t, id, &e) != GENCACHE_OK) {
            lost++;
            continue;
        }
        tu_check_value(e, id, crash_size(id));
        gencache__entry_release(e);
    }
    /* The group in flight at the kill. */
    size_t inline_n = 0, inline_found = 0;
    for (uint64_t id = (last + 1) * CRASH_BATCH; id < (last + 2) * CRASH_BATCH; id++) {
        gencache__entry *e = NULL;
        bool found = get_id(t, id, &e) == GENCACHE_OK;
        if (found) {
            tu_check_value(e, id, crash_size(id));
            gencache__entry_release(e);
        }
        if (crash_size(id) <= (256u << 10)) {
            inline_n++;
            inline_found += found;
        }
    }
    printf("kill -9 after %llu acknowledged groups of %d: %llu lost; in flight: %zu of %zu "
           "inline values\n",
           (unsigned long long)acked, CRASH_BATCH, (unsigned long long)lost, inline_found,
           inline_n);
    CHECK_UINT_EQ(lost, 0);
    CHECK(inline_found == 0 || inline_found == inline_n);
    CHECK_INT_EQ(ev.n[GENCACHE__EVICT_CORRUPT], 0);
    t->ops->close(t);
    tu_rm_rf(dir);
    free(dir);
}
