/*
 * test_crypt.c: encryption at rest. Keys from files and the environment (and the errors of each
 * bad source), sealed records through the codec, and the disk and Redis tiers with keys: values
 * and metadata unreadable in what is stored, rotation (old records open with a previous key, new
 * ones are sealed with the current one), and every way a record can fail (a flipped byte in a
 * value or in the metadata, a key that is not held, an unencrypted record) read as a miss and
 * counted in crypt_rejected.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>

#include "redis_server.h"
#include "tier/crypt.h"
#include "tier/disk.h"
#include "tier/entry_codec.h"
#include "tier/redis.h"
#include "tier_util.h"

#define SMALL 4096
#define LARGE (1536u * 1024u)

static const char key_a[] = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
static const char key_b[] = "f0e0d0c0b0a090807060504030201000ffeeddccbbaa99887766554433221100";

static uint64_t wall_ms(void)
{
    return gencache__clock_realtime_ms(NULL);
}

static void write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    CHECK_UINT_EQ(fwrite(data, 1, n, f), n);
    fclose(f);
}

/* A keyring of the given sources (current first). */
static gencache__crypt *ring(const char *const *src, size_t n)
{
    gencache__crypt *c = NULL;
    CHECK_OK(gencache__crypt_new(NULL, NULL, src, n, &c));
    return c;
}

static gencache__tier *open_disk(const char *dir, const gencache__crypt *keys)
{
    gencache__disk_options o = {.path = dir, .keys = keys};
    gencache__disk_tuning tune;
    gencache__disk_tuning_init(&tune);
    tune.durable = false;
    tune.inline_max = 64u << 10; /* SMALL inline, LARGE in a blob file */
    tune.map_size = 1ull << 30;
    gencache__tier *t = NULL;
    CHECK_OK(gencache__disk_tier_open_ex(&o, &tune, &t));
    return t;
}

static void put_id(gencache__tier *t, uint64_t id, size_t size)
{
    gencache__entry *e = tu_entry(&(tu_spec){.id = id,
                                             .size = size,
                                             .now_ms = wall_ms(),
                                             .tenant = "acme-tenant",
                                             .tags = "secret-tag"});
    CHECK_OK(t->ops->put(t, e, wall_ms()));
    gencache__entry_release(e);
}

static int get_id(gencache__tier *t, uint64_t id, gencache__entry **out)
{
    char key[GENCACHE__KEY_MAX + 1];
    tu_key(key, "result", id);
    return t->ops->get(t, key, tu_hash(key), wall_ms(), true, out);
}

static void expect_hit(gencache__tier *t, uint64_t id, size_t size)
{
    gencache__entry *e = NULL;
    CHECK_OK(get_id(t, id, &e));
    tu_check_value(e, id, size);
    CHECK_STR_EQ(e->tenant, "acme-tenant");
    CHECK_STR_EQ(e->tags, "secret-tag");
    CHECK_UINT_EQ(e->checksum, gencache__checksum(e->value, e->size));
    gencache__entry_release(e);
}

static uint64_t rejected(gencache__tier *t)
{
    gencache_tier_stats st;
    t->ops->stats(t, &st);
    return st.crypt_rejected;
}

/* True when the file holds needle somewhere. */
static bool file_has(const char *path, const void *needle, size_t n)
{
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)len + 1);
    CHECK(fread(buf, 1, (size_t)len, f) == (size_t)len);
    fclose(f);
    bool yes = memmem(buf, (size_t)len, needle, n) != NULL;
    free(buf);
    return yes;
}

TEST_CASE(keys_from_files_and_environment)
{
    char *dir = tu_tmpdir("crypt");
    char hexf[512], rawf[512], badf[512], missing[512], err[512];
    snprintf(hexf, sizeof hexf, "%s/hex.key", dir);
    snprintf(rawf, sizeof rawf, "%s/raw.key", dir);
    snprintf(badf, sizeof badf, "%s/bad.key", dir);
    snprintf(missing, sizeof missing, "%s/missing.key", dir);
    char line[80];
    snprintf(line, sizeof line, "  %s\n", key_a);
    write_file(hexf, line, strlen(line));
    unsigned char raw[32], k1[32], k2[32];
    for (int i = 0; i < 32; i++)
        raw[i] = (unsigned char)i;
    write_file(rawf, raw, 32);
    write_file(badf, "0011", 4);
    CHECK_OK(gencache__crypt_load_key(hexf, k1, err, sizeof err));
    CHECK_OK(gencache__crypt_load_key(rawf, k2, err, sizeof err));
    CHECK_MEM_EQ(k1, raw, 32); /* key_a is 00 01 02 ... 1f */
    CHECK_MEM_EQ(k2, raw, 32);
    setenv("GENCACHE_TEST_KEY", key_b, 1);
    CHECK_OK(gencache__crypt_load_key("env:GENCACHE_TEST_KEY", k1, err, sizeof err));
    CHECK_UINT_EQ(k1[0], 0xf0);

    err[0] = '\0';
    CHECK_RC(gencache__crypt_load_key(missing, k1, err, sizeof err), GENCACHE_ECONFIG);
    CHECK(strstr(err, missing) != NULL && strstr(err, "No such file") != NULL);
    CHECK_RC(gencache__crypt_load_key(badf, k1, err, sizeof err), GENCACHE_ECONFIG);
    CHECK(strstr(err, "64 hexadecimal digits") != NULL);
    unsetenv("GENCACHE_TEST_NO_SUCH_KEY");
    CHECK_RC(gencache__crypt_load_key("env:GENCACHE_TEST_NO_SUCH_KEY", k1, err, sizeof err),
             GENCACHE_ECONFIG);
    CHECK(strstr(err, "GENCACHE_TEST_NO_SUCH_KEY") != NULL && strstr(err, "not set") != NULL);
    setenv("GENCACHE_TEST_KEY", "abc", 1);
    CHECK_RC(gencache__crypt_load_key("env:GENCACHE_TEST_KEY", k1, err, sizeof err),
             GENCACHE_ECONFIG);
    CHECK_RC(gencache__crypt_load_key("", k1, err, sizeof err), GENCACHE_ECONFIG);

    /* A keyring refuses an unreadable source and the same key listed twice. */
    gencache__crypt *c = NULL;
    const char *two[] = {hexf, missing};
    CHECK_RC(gencache__crypt_new(NULL, NULL, two, 2, &c), GENCACHE_ECONFIG);
    CHECK(c == NULL);
    const char *same[] = {hexf, rawf};
    CHECK_RC(gencache__crypt_new(NULL, NULL, same, 2, &c), GENCACHE_ECONFIG);
    CHECK_RC(gencache__crypt_new(NULL, NULL, same, 0, &c), GENCACHE_EINVAL);

    /* Through the public API: a missing key file is a configuration error at open. */
    gencache_options o;
    gencache_options_init(&o);
    const char *srcs[] = {missing};
    o.encryption_keys = srcs;
    o.n_encryption_keys = 1;
    gencache *cache = NULL;
    CHECK_RC(gencache_open(&cache, &o), GENCACHE_ECONFIG);
    CHECK(cache == NULL);
    tu_rm_rf(dir);
    free(dir);
}

TEST_CASE(sealed_record_round_trip)
{
    setenv("GENCACHE_TEST_KEY_A", key_a, 1);
    const char *src[] = {"env:GENCACHE_TEST_KEY_A"};
    gencache__crypt *keys = ring(src, 1);
    gencache__seal seal = {.keys = keys};
    gencache__entry *e = tu_entry(&(tu_spec){.id = 7,
                                             .size = 4000,
                                             .now_ms = 1000,
                                             .ttl_ms = 60000,
                                             .sliding = true,
                                             .tenant = "acme",
                                             .model = "wan",
                                             .tags = "t1,t2",
                                             .ctype = "video/mp4"});
    gencache__codec_value v;
    unsigned char *owned = NULL;
    CHECK_OK(gencache__codec_value_seal(&seal, NULL, e, &v, &owned));
    CHECK(v.sealed && owned != NULL && v.data == owned);
    CHECK(memcmp(owned, e->value, e->size) != 0);
    size_t cap = gencache__codec_value_size(e, &v), len = 0;
    unsigned char *rec = malloc(cap);
    CHECK_OK(gencache__codec_encode_value(&seal, e, &v, 61000, 1000, 4, rec, cap, &len));
    CHECK_UINT_EQ(len, cap);
    CHECK(memmem(rec, len, "acme", 4) == NULL && memmem(rec, len, "video/mp4", 9) == NULL);
    CHECK(rec[3] == GENCACHE__CODEC_VERSION_SEALED);

    gencache__codec_meta m;
    CHECK_OK(gencache__codec_decode_sealed(&seal, NULL, rec, len, &m));
    CHECK(m.sealed && m.opened);
    CHECK_STR_EQ(m.key, e->key);
    CHECK_STR_EQ(m.tenant, "acme");
    CHECK_STR_EQ(m.model, "wan");
    CHECK_STR_EQ(m.tags, "t1,t2");
    CHECK_STR_EQ(m.content_type, "video/mp4");
    CHECK_UINT_EQ(m.ndim, 2);
    CHECK_UINT_EQ(m.ttl_ms, 60000);
    CHECK_UINT_EQ(m.cost_ms, e->cost_ms);
    CHECK_UINT_EQ(m.expires_ms, 61000);
    CHECK_UINT_EQ(m.hits, 4);
    CHECK_UINT_EQ(m.checksum, v.checksum);
    CHECK_UINT_EQ(m.value_checksum, e->checksum);
    unsigned char *val = malloc(e->size);
    memcpy(val, owned, e->size);
    uint64_t sum = 0;
    CHECK_OK(gencache__codec_value_open(&seal, &m, val, e->size, &sum));
    CHECK_MEM_EQ(val, e->value, e->size);
    CHECK_UINT_EQ(sum, e->checksum);
    /* The value's tag binds it to its key. */
    memcpy(val, owned, e->size);
    m.key[strlen(m.key) - 1] ^= 1;
    CHECK_RC(gencache__codec_value_open(&seal, &m, val, e->size, &sum), GENCACHE_ECORRUPT);
    CHECK_UINT_EQ(atomic_load(&seal.rejected), 1);
    gencache__codec_meta_clear(&m);

    /* The access fields stay patchable in place; the head decodes without the key. */
    CHECK_OK(gencache__codec_patch(rec, len, 99000, 5000, 9));
    CHECK_OK(gencache__codec_decode_head(NULL, rec, len, &m));
    CHECK(m.sealed && !m.opened && m.tenant == NULL);
    CHECK_UINT_EQ(m.hits, 9);
    CHECK_UINT_EQ(m.expires_ms, 99000);
    CHECK_UINT_EQ(m.size, e->size);
    gencache__codec_meta_clear(&m);
    CHECK_OK(gencache__codec_decode_sealed(&seal, NULL, rec, len, &m));
    CHECK_UINT_EQ(m.last_access_ms, 5000);
    gencache__codec_meta_clear(&m);

    /* Without the key: refused, not mistaken for damage. A plain decoder refuses it too. */
    gencache__seal none = {0};
    CHECK_RC(gencache__codec_decode_sealed(&none, NULL, rec, len, &m), GENCACHE_EPERM);
    CHECK_UINT_EQ(atomic_load(&none.rejected), 1);
    CHECK_RC(gencache__codec_decode(NULL, rec, len, &m), GENCACHE_EPERM);

    /* One flipped byte anywhere in the authenticated part fails, even with the XXH3 trailer
     * recomputed (what someone altering the record on purpose would do). */
    for (size_t off = 0; off < len - 8; off++) {
        if (off >= 40 && off < 80)
            continue; /* the access fields are outside the tag */
        unsigned char *bad = malloc(len);
        memcpy(bad, rec, len);
        bad[off] ^= 0x20;
        gencache__le64_put(bad + len - 8, gencache__checksum(bad, len - 8));
        int rc = gencache__codec_decode_sealed(&seal, NULL, bad, len, &m);
        if (rc == GENCACHE_OK)
            fprintf(stderr, "offset %zu: altered record decoded\n", off);
        CHECK(rc != GENCACHE_OK);
        free(bad);
    }

    /* A plain record is refused by value_open when the seal has keys. */
    size_t plen = gencache__codec_size(e);
    unsigned char *plain = malloc(plen);
    CHECK_OK(gencache__codec_encode(e, 0, 0, 0, plain, plen, &len));
    CHECK_OK(gencache__codec_decode_sealed(&seal, NULL, plain, len, &m));
    CHECK(!m.sealed);
    uint64_t before = atomic_load(&seal.rejected);
    CHECK_RC(gencache__codec_value_open(&seal, &m, e->value, e->size, &sum), GENCACHE_EPERM);
    CHECK_UINT_EQ(atomic_load(&seal.rejected), before + 1);
    CHECK_OK(gencache__codec_value_open(&none, &m, e->value, e->size, &sum));
    CHECK_UINT_EQ(sum, e->checksum);
    gencache__codec_meta_clear(&m);

    free(plain);
    free(val);
    free(rec);
    gencache__codec_value_free(NULL, owned);
    gencache__entry_release(e);
    gencache__crypt_free(keys);
}

TEST_CASE(disk_round_trip_rotation_and_wrong_key)
{
    char *dir = tu_tmpdir("crypt");
    setenv("GENCACHE_TEST_KEY_A", key_a, 1);
    setenv("GENCACHE_TEST_KEY_B", key_b, 1);
    const char *a[] = {"env:GENCACHE_TEST_KEY_A"};
    const char *ba[] = {"env:GENCACHE_TEST_KEY_B", "env:GENCACHE_TEST_KEY_A"};
    const char *b[] = {"env:GENCACHE_TEST_KEY_B"};
    gencache__crypt *ka = ring(a, 1), *kba = ring(ba, 2), *kb = ring(b, 1);

    gencache__tier *t = open_disk(dir, ka);
    put_id(t, 1, SMALL);
    put_id(t, 2, LARGE);
    expect_hit(t, 1, SMALL);
    expect_hit(t, 2, LARGE);
    CHECK_UINT_EQ(rejected(t), 0);
    /* Neither the values nor the metadata appear in the files. */
    char path[PATH_MAX], mdb[PATH_MAX + 32];
    snprintf(mdb, sizeof mdb, "%s/index/data.mdb", dir);
    unsigned char *want = malloc(LARGE);
    tu_fill(want, LARGE, 2);
    char key2[GENCACHE__KEY_MAX + 1];
    tu_key(key2, "result", 2);
    CHECK_OK(gencache__disk_blob_of((gencache__disk_tier *)t, key2, path, sizeof path));
    CHECK(!file_has(path, want + LARGE / 2, 64));
    tu_fill(want, SMALL, 1);
    t->ops->close(t);
    CHECK(!file_has(mdb, want, 64));
    CHECK(!file_has(mdb, "acme-tenant", 11));
    CHECK(!file_has(mdb, "secret-tag", 10));
    free(want);

    /* Rotation: B current, A still held. Old records open; new ones are sealed with B. */
    t = open_disk(dir, kba);
    expect_hit(t, 1, SMALL);
    expect_hit(t, 2, LARGE);
    put_id(t, 3, SMALL);
    put_id(t, 1, SMALL); /* rewritten: now under B */
    t->ops->close(t);

    /* Only B: A's record is a counted miss, and it stays (a cache holding A may still read it). */
    t = open_disk(dir, kb);
    expect_hit(t, 1, SMALL);
    expect_hit(t, 3, SMALL);
    gencache__entry *e = NULL;
    CHECK_RC(get_id(t, 2, &e), GENCACHE_ENOTFOUND);
    CHECK_UINT_EQ(rejected(t), 1);
    gencache_tier_stats st;
    t->ops->stats(t, &st);
    CHECK_UINT_EQ(st.entries, 3);
    CHECK_UINT_EQ(st.evictions_corrupt, 0);
    /* Eviction and invalidation still work on a record whose key is gone. */
    CHECK_OK(t->ops->del(t, key2, tu_hash(key2)));
    t->ops->stats(t, &st);
    CHECK_UINT_EQ(st.entries, 2);
    t->ops->close(t);

    /* Without keys nothing sealed is served; with keys nothing unsealed is. */
    t = open_disk(dir, NULL);
    CHECK_RC(get_id(t, 1, &e), GENCACHE_ENOTFOUND);
    CHECK_UINT_EQ(rejected(t), 1);
    put_id(t, 5, SMALL); /* a plain record */
    expect_hit(t, 5, SMALL);
    t->ops->close(t);
    t = open_disk(dir, kb);
    CHECK_RC(get_id(t, 5, &e), GENCACHE_ENOTFOUND);
    CHECK_UINT_EQ(rejected(t), 1);
    t->ops->close(t);

    gencache__crypt_free(ka);
    gencache__crypt_free(kba);
    gencache__crypt_free(kb);
    tu_rm_rf(dir);
    free(dir);
}

/* Rewrites the record of key id in table dbi through LMDB after alter() changed a copy. */
static void alter_record(gencache__disk_tier *d, MDB_dbi dbi, uint64_t id,
                         void (*alter)(unsigned char *p, size_t n))
{
    char key[GENCACHE__KEY_MAX + 1];
    tu_key(key, "result", id);
    MDB_txn *txn;
    CHECK_INT_EQ(mdb_txn_begin(d->env, NULL, 0, &txn), 0);
    MDB_val k = {strlen(key), key}, v;
    CHECK_INT_EQ(mdb_get(txn, dbi, &k, &v), 0);
    unsigned char *copy = malloc(v.mv_size);
    memcpy(copy, v.mv_data, v.mv_size);
    alter(copy, v.mv_size);
    MDB_val nv = {v.mv_size, copy};
    CHECK_INT_EQ(mdb_put(txn, dbi, &k, &nv, 0), 0);
    CHECK_INT_EQ(mdb_txn_commit(txn), 0);
    free(copy);
}

/* One flipped byte in an inline value. */
static void flip_value(unsigned char *p, size_t n)
{
    p[n / 2] ^= 1;
}

/* Altered sealed metadata with the record's XXH3 trailer recomputed (what someone changing it
 * on purpose would do). */
static void forge_meta(unsigned char *p, size_t n)
{
    unsigned char *rec = p + GENCACHE__DISK_LOC_LEN;
    size_t len = n - GENCACHE__DISK_LOC_LEN;
    rec[len - 30] ^= 4; /* inside the encrypted metadata */
    gencache__le64_put(rec + len - 8, gencache__checksum(rec, len - 8));
}

TEST_CASE(disk_tampering_is_a_counted_miss)
{
    char *dir = tu_tmpdir("crypt");
    setenv("GENCACHE_TEST_KEY_A", key_a, 1);
    const char *a[] = {"env:GENCACHE_TEST_KEY_A"};
    gencache__crypt *ka = ring(a, 1);
    gencache__tier *t = open_disk(dir, ka);
    gencache__disk_tier *d = (gencache__disk_tier *)t;
    put_id(t, 1, SMALL);
    put_id(t, 2, LARGE);
    put_id(t, 3, SMALL);
    /* A flipped byte in a value file. */
    char path[PATH_MAX], key2[GENCACHE__KEY_MAX + 1];
    tu_key(key2, "result", 2);
    CHECK_OK(gencache__disk_blob_of(d, key2, path, sizeof path));
    int fd = open(path, O_RDWR);
    CHECK(fd >= 0);
    unsigned char byte;
    CHECK(pread(fd, &byte, 1, 1000) == 1);
    byte ^= 0x80;
    CHECK(pwrite(fd, &byte, 1, 1000) == 1);
    close(fd);
    gencache__entry *e = NULL;
    CHECK_RC(get_id(t, 2, &e), GENCACHE_ENOTFOUND);
    CHECK_UINT_EQ(rejected(t), 1);
    /* A flipped byte in an inline value, and altered metadata with a fixed-up checksum. */
    alter_record(d, d->vals, 1, flip_value);
    alter_record(d, d->meta, 3, forge_meta);
    CHECK_RC(get_id(t, 1, &e), GENCACHE_ENOTFOUND);
    CHECK_RC(get_id(t, 3, &e), GENCACHE_ENOTFOUND);
    CHECK_UINT_EQ(rejected(t), 3);
    /* Damaged records are dropped like any corrupt one. */
    gencache_tier_stats st;
    t->ops->stats(t, &st);
    CHECK_UINT_EQ(st.entries, 0);
    CHECK_UINT_EQ(st.evictions_corrupt, 3);
    t->ops->close(t);
    gencache__crypt_free(ka);
    tu_rm_rf(dir);
    free(dir);
}

static gencache__tier *open_redis(int port, const gencache__crypt *keys)
{
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", port);
    gencache__redis_options o = {.url = url, .timeout_ms = 500, .keys = keys};
    gencache__tier *t = NULL;
    CHECK_OK(gencache__redis_tier_open(&o, &t));
    return t;
}

static void rkey(char *buf, uint64_t id)
{
    char key[GENCACHE__KEY_MAX + 1];
    tu_key(key, "result", id);
    sprintf(buf, "%s%s", GENCACHE__REDIS_PREFIX, key);
}

static long long redis_int(redisContext *c, const char *cmd, const char *k)
{
    redisReply *r = redisCommand(c, cmd, k);
    CHECK(r && r->type == REDIS_REPLY_INTEGER);
    long long v = r->integer;
    freeReplyObject(r);
    return v;
}

TEST_CASE(redis_sealed_rotation_tamper_and_wrong_key)
{
    int port = rs_start();
    CHECK(port > 0);
    setenv("GENCACHE_TEST_KEY_A", key_a, 1);
    setenv("GENCACHE_TEST_KEY_B", key_b, 1);
    const char *a[] = {"env:GENCACHE_TEST_KEY_A"};
    const char *ba[] = {"env:GENCACHE_TEST_KEY_B", "env:GENCACHE_TEST_KEY_A"};
    const char *b[] = {"env:GENCACHE_TEST_KEY_B"};
    gencache__crypt *ka = ring(a, 1), *kba = ring(ba, 2), *kb = ring(b, 1);
    gencache__tier *ta = open_redis(port, ka), *tba = open_redis(port, kba),
                   *tb = open_redis(port, kb), *plain = open_redis(port, NULL);
    redisContext *c = rs_client();
    CHECK(c != NULL);

    put_id(ta, 1, SMALL);
    put_id(ta, 2, LARGE);
    expect_hit(ta, 1, SMALL);
    expect_hit(ta, 2, LARGE);
    /* What Redis holds shows neither value nor metadata. */
    char k[160];
    rkey(k, 1);
    redisReply *r = redisCommand(c, "GET %s", k);
    CHECK(r && r->type == REDIS_REPLY_STRING);
    unsigned char want[SMALL];
    tu_fill(want, SMALL, 1);
    CHECK(memmem(r->str, r->len, want, 64) == NULL);
    CHECK(memmem(r->str, r->len, "acme-tenant", 11) == NULL);
    freeReplyObject(r);

    /* Rotation: a node with B current and A previous reads A's records, writes under B. */
    expect_hit(tba, 1, SMALL);
    expect_hit(tba, 2, LARGE);
    put_id(tba, 3, SMALL);
    expect_hit(tb, 3, SMALL);
    /* A node with only B: A's records are counted misses and stay in Redis. */
    gencache__entry *e = NULL;
    CHECK_RC(get_id(tb, 1, &e), GENCACHE_ENOTFOUND);
    CHECK_RC(get_id(tb, 2, &e), GENCACHE_ENOTFOUND);
    CHECK_UINT_EQ(rejected(tb), 2);
    CHECK_INT_EQ(redis_int(c, "EXISTS %s", k), 1);
    /* A node without keys serves nothing sealed; a keyed one serves nothing plain. */
    CHECK_RC(get_id(plain, 3, &e), GENCACHE_ENOTFOUND);
    CHECK_UINT_EQ(rejected(plain), 1);
    put_id(plain, 4, SMALL);
    CHECK_RC(get_id(ta, 4, &e), GENCACHE_ENOTFOUND);
    CHECK_UINT_EQ(rejected(ta), 1);

    /* A flipped byte in a value: a miss, counted, and the record dropped. */
    rkey(k, 2);
    long long len = redis_int(c, "STRLEN %s", k);
    r = redisCommand(c, "GETRANGE %s %lld %lld", k, len - 100, len - 100);
    CHECK(r && r->len == 1);
    char flipped = (char)(r->str[0] ^ 1);
    freeReplyObject(r);
    freeReplyObject(redisCommand(c, "SETRANGE %s %lld %b", k, len - 100, &flipped, (size_t)1));
    CHECK_RC(get_id(ta, 2, &e), GENCACHE_ENOTFOUND);
    CHECK_UINT_EQ(rejected(ta), 2);
    CHECK_INT_EQ(redis_int(c, "EXISTS %s", k), 0);

    /* The refresh script still re-arms a sealed sliding entry's TTL. */
    gencache__entry *s = tu_entry(
        &(tu_spec){.id = 9, .size = SMALL, .now_ms = wall_ms(), .ttl_ms = 600000, .sliding = true});
    CHECK_OK(ta->ops->put(ta, s, wall_ms()));
    gencache__entry_release(s);
    rkey(k, 9);
    freeReplyObject(redisCommand(c, "PEXPIRE %s 5000", k));
    CHECK_OK(get_id(ta, 9, &e));
    gencache__entry_release(e);
    CHECK(redis_int(c, "PTTL %s", k) > 500000);

    redisFree(c);
    ta->ops->close(ta);
    tba->ops->close(tba);
    tb->ops->close(tb);
    plain->ops->close(plain);
    gencache__crypt_free(ka);
    gencache__crypt_free(kba);
    gencache__crypt_free(kb);
    rs_stop();
}
