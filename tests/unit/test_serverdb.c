/* Server storage: KEK files, sealing, and the SQLite store (schema and
 * migrations, keys, shares with real shares from a keygen and refreshes,
 * sessions with controlled times, setup), the binding of a sealed share to
 * its key, owner and epoch, corrupt rows, and persistence across a reopen.
 * Works in a fresh directory under /tmp, removed at the end. */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <sqlite3.h>

#include "mpc/setup.h"
#include "server/store/db.h"
#include "server/store/db_impl.h"
#include "server/seal/seal.h"
#include "tests/unit/check.h"
#include "tests/unit/driver.h"
#include "tests/unit/verify.h"

#define T0 1700000000 /* a fixed "now" */
#define IDLE HK_DB_IDLE_DEFAULT

static char dir[] = "/tmp/hk-serverdb-XXXXXX";

static const char *in_dir(const char *name)
{
    static char buf[8][256]; /* a few paths may be in use at once */
    static int next;
    char *p = buf[next++ % 8];

    snprintf(p, sizeof(buf[0]), "%s/%s", dir, name);
    return p;
}

static void write_file(const char *path, size_t n, mode_t mode)
{
    unsigned char b[64] = {0};
    FILE *f = fopen(path, "wb");

    CHECK(f != NULL && n <= sizeof(b));
    CHECK(fwrite(b, 1, n, f) == n);
    CHECK(fclose(f) == 0);
    CHECK(chmod(path, mode) == 0);
}

static hk_point rand_point(hk_curve_id id)
{
    hk_curve *c = NULL;
    hk_scalar k;
    hk_point p;

    CHECK_OK(hk_curve_new(id, &c));
    CHECK_OK(hk_scalar_random(c, &k));
    CHECK_OK(hk_point_mul_gen(c, &k, &p));
    hk_curve_free(c);
    return p;
}

static void same_share(const hk_share *a, const hk_share *b)
{
    unsigned char fa[HK_HASH_LEN], fb[HK_HASH_LEN];

    CHECK_OK(hk_share_fingerprint(a, fa));
    CHECK_OK(hk_share_fingerprint(b, fb));
    CHECK(memcmp(fa, fb, HK_HASH_LEN) == 0 && a->epoch == b->epoch);
    CHECK(hk_scalar_eq(&a->x, &b->x));
}

/* --- raw SQLite access, to corrupt rows behind the store's back ---------- */

static sqlite3 *raw_open(const char *path)
{
    sqlite3 *r = NULL;

    CHECK(sqlite3_open_v2(path, &r, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK);
    CHECK(sqlite3_busy_timeout(r, 5000) == SQLITE_OK);
    return r;
}

static void raw_exec(sqlite3 *r, const char *sql)
{
    CHECK(sqlite3_exec(r, sql, NULL, NULL, NULL) == SQLITE_OK);
}

static long long raw_int(sqlite3 *r, const char *sql)
{
    sqlite3_stmt *st = NULL;
    long long v;

    CHECK(sqlite3_prepare_v2(r, sql, -1, &st, NULL) == SQLITE_OK);
    CHECK(sqlite3_step(st) == SQLITE_ROW);
    v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* Runs sql with ?1 = blob and ?2 = kid. */
static void raw_blob(sqlite3 *r, const char *sql, const void *blob, size_t n,
                     const unsigned char *kid)
{
    sqlite3_stmt *st = NULL;

    CHECK(sqlite3_prepare_v2(r, sql, -1, &st, NULL) == SQLITE_OK);
    CHECK(sqlite3_bind_blob(st, 1, blob, (int)n, SQLITE_TRANSIENT) ==
          SQLITE_OK);
    CHECK(sqlite3_bind_blob(st, 2, kid, HK_ID_LEN, SQLITE_STATIC) == SQLITE_OK);
    CHECK(sqlite3_step(st) == SQLITE_DONE);
    CHECK(sqlite3_changes(r) == 1);
    sqlite3_finalize(st);
}

/* --- KEK files and sealing ------------------------------------------------ */

static void test_kek_files(hk_kek **kek, hk_kek **kek2)
{
    const char *p = in_dir("kek"), *p2 = in_dir("kek2");
    char why[256] = "";
    struct stat st;
    hk_kek *k = NULL;

    CHECK_OK(hk_kek_generate_file(p, why, sizeof(why)));
    CHECK(stat(p, &st) == 0 && (st.st_mode & 07777) == 0600);
    CHECK(st.st_size == HK_KEK_LEN);
    CHECK_ERR(hk_kek_generate_file(p, why, sizeof(why)), HK_ERR_EXISTS);
    CHECK_OK(hk_kek_load_file(p, kek, why, sizeof(why)));
    CHECK(strcmp(hk_kek_name(*kek), "file") == 0);
    CHECK_OK(hk_kek_generate_file(p2, NULL, 0));
    CHECK_OK(hk_kek_load_file(p2, kek2, NULL, 0));

    CHECK(chmod(p, 0644) == 0);
    why[0] = '\0';
    CHECK_ERR(hk_kek_load_file(p, &k, why, sizeof(why)), HK_ERR_CONFIG);
    CHECK(k == NULL && strstr(why, "0644") != NULL);
    CHECK(chmod(p, 0640) == 0);
    CHECK_ERR(hk_kek_load_file(p, &k, why, sizeof(why)), HK_ERR_CONFIG);
    CHECK(chmod(p, 0600) == 0);

    write_file(in_dir("kek31"), 31, 0600);
    why[0] = '\0';
    CHECK_ERR(hk_kek_load_file(in_dir("kek31"), &k, why, sizeof(why)),
              HK_ERR_CONFIG);
    CHECK(strstr(why, "31 bytes") != NULL);
    write_file(in_dir("kek33"), 33, 0600);
    CHECK_ERR(hk_kek_load_file(in_dir("kek33"), &k, NULL, 0), HK_ERR_CONFIG);
    CHECK_ERR(hk_kek_load_file(in_dir("nokek"), &k, why, sizeof(why)),
              HK_ERR_CONFIG);
    CHECK_ERR(hk_kek_load_file(dir, &k, why, sizeof(why)), HK_ERR_CONFIG);
    CHECK(k == NULL);
}

/* Flips one bit of a copy of blob at off and expects HK_ERR_SEAL. */
static void refused_flipped(const hk_kek *kek, const unsigned char *aad,
                            size_t aadlen, const unsigned char *blob,
                            size_t len, size_t off)
{
    unsigned char *bad = OPENSSL_memdup(blob, len), *pt = NULL;
    size_t ptlen = 0;

    CHECK(bad != NULL);
    bad[off] ^= 0x01;
    CHECK_ERR(hk_unseal(kek, aad, aadlen, bad, len, &pt, &ptlen), HK_ERR_SEAL);
    CHECK(pt == NULL && ptlen == 0);
    OPENSSL_free(bad);
}

static void test_seal(const hk_kek *kek, const hk_kek *kek2)
{
    static const unsigned char msg[] = "a server share, in clear";
    static const unsigned char aad[] = "bound to this";
    unsigned char *s = NULL, *s2 = NULL, *pt = NULL;
    size_t len = 0, len2 = 0, ptlen = 0;

    CHECK_OK(hk_seal(kek, aad, sizeof(aad), msg, sizeof(msg), &s, &len));
    CHECK(len == sizeof(msg) + HK_SEAL_OVERHEAD && s[0] == HK_SEAL_VERSION);
    CHECK_OK(hk_unseal(kek, aad, sizeof(aad), s, len, &pt, &ptlen));
    CHECK(ptlen == sizeof(msg) && memcmp(pt, msg, ptlen) == 0);
    OPENSSL_clear_free(pt, ptlen);
    /* Fresh nonce each time. */
    CHECK_OK(hk_seal(kek, aad, sizeof(aad), msg, sizeof(msg), &s2, &len2));
    CHECK(len2 == len && memcmp(s, s2, 1 + HK_KEK_ID_LEN) == 0 &&
          memcmp(s + 1 + HK_KEK_ID_LEN, s2 + 1 + HK_KEK_ID_LEN,
                 HK_SEAL_NONCE_LEN) != 0);
    OPENSSL_free(s2);

    refused_flipped(kek, aad, sizeof(aad), s, len, 0);        /* version */
    refused_flipped(kek, aad, sizeof(aad), s, len, 1);        /* KEK id */
    refused_flipped(kek, aad, sizeof(aad), s, len, 8);        /* KEK id */
    refused_flipped(kek, aad, sizeof(aad), s, len, 9);        /* nonce */
    refused_flipped(kek, aad, sizeof(aad), s, len, 20);       /* nonce */
    refused_flipped(kek, aad, sizeof(aad), s, len, 21);       /* ciphertext */
    refused_flipped(kek, aad, sizeof(aad), s, len, len - 17); /* ciphertext */
    refused_flipped(kek, aad, sizeof(aad), s, len, len - 16); /* tag */
    refused_flipped(kek, aad, sizeof(aad), s, len, len - 1);  /* tag */
    CHECK_ERR(hk_unseal(kek, aad, sizeof(aad) - 1, s, len, &pt, &ptlen),
              HK_ERR_SEAL);
    CHECK_ERR(hk_unseal(kek, NULL, 0, s, len, &pt, &ptlen), HK_ERR_SEAL);
    CHECK_ERR(hk_unseal(kek2, aad, sizeof(aad), s, len, &pt, &ptlen),
              HK_ERR_SEAL);
    CHECK_ERR(hk_unseal(kek, aad, sizeof(aad), s, len - 1, &pt, &ptlen),
              HK_ERR_SEAL);
    CHECK_ERR(
        hk_unseal(kek, aad, sizeof(aad), s, HK_SEAL_OVERHEAD, &pt, &ptlen),
        HK_ERR_SEAL);
    CHECK_ERR(hk_unseal(kek, aad, sizeof(aad), s, HK_SEAL_MAX + 1, &pt, &ptlen),
              HK_ERR_TOO_BIG);
    CHECK(pt == NULL);
    CHECK_ERR(hk_seal(kek, aad, sizeof(aad), msg, 0, &s2, &len2), HK_ERR_ARG);
    OPENSSL_free(s);
}

static void test_share_aad(void)
{
    unsigned char kid[HK_ID_LEN] = {1}, a[HK_SHARE_AAD_MAX],
                  b[HK_SHARE_AAD_MAX];
    char longsub[HK_SUB_MAX + 2];
    size_t la = sizeof(a), lb = sizeof(b);

    CHECK_OK(hk_share_aad(kid, "alice", 1, a, &la));
    CHECK(la == 4 + 20 + 4 + HK_ID_LEN + 4 + 5 + 4 + 8);
    CHECK_OK(hk_share_aad(kid, "alice", 2, b, &lb));
    CHECK(la == lb && memcmp(a, b, la) != 0);
    lb = sizeof(b);
    CHECK_OK(hk_share_aad(kid, "alicf", 1, b, &lb));
    CHECK(la == lb && memcmp(a, b, la) != 0);
    kid[0] = 2;
    lb = sizeof(b);
    CHECK_OK(hk_share_aad(kid, "alice", 1, b, &lb));
    CHECK(la == lb && memcmp(a, b, la) != 0);
    lb = la - 1;
    CHECK_ERR(hk_share_aad(kid, "alice", 1, b, &lb), HK_ERR_TOO_BIG);
    lb = sizeof(b);
    CHECK_ERR(hk_share_aad(kid, "", 1, b, &lb), HK_ERR_ARG);
    memset(longsub, 'x', sizeof(longsub) - 1);
    longsub[sizeof(longsub) - 1] = '\0';
    CHECK_ERR(hk_share_aad(kid, longsub, 1, b, &lb), HK_ERR_ARG);
    longsub[HK_SUB_MAX] = '\0';
    CHECK_OK(hk_share_aad(kid, longsub, 1, b, &lb));
    CHECK(lb == HK_SHARE_AAD_MAX - 12); /* the label takes 20 of 32 */
}

/* --- schema --------------------------------------------------------------- */

static void test_schema(const char *path)
{
    char why[256] = "";
    hk_db *db = NULL;
    struct stat st;
    sqlite3 *r;
    int v = 0;

    CHECK_OK(hk_db_open_sqlite(path, &db, why, sizeof(why)));
    CHECK_OK(hk_db_schema_version(db, &v));
    CHECK(v == HK_DB_SCHEMA_VERSION);
    hk_db_close(db);
    CHECK(stat(path, &st) == 0 && (st.st_mode & 077) == 0);
    CHECK_OK(hk_db_open_sqlite(path, &db, why, sizeof(why)));
    CHECK_OK(hk_db_schema_version(db, &v));
    CHECK(v == HK_DB_SCHEMA_VERSION);
    CHECK(stat(in_dir("halfkey.db-wal"), &st) == 0 && (st.st_mode & 077) == 0);
    r = raw_open(path);
    CHECK(raw_int(r, "SELECT count(*) FROM schema_version") ==
          HK_DB_SCHEMA_VERSION); /* not re-run */
    CHECK(raw_int(r, "PRAGMA application_id") == 0x686b6462);
    CHECK(raw_int(r, "SELECT count(*) FROM sqlite_schema WHERE type = "
                     "'table'") == 14); /* v7: presigs */
    sqlite3_close(r);
    hk_db_close(db);
}

static void test_schema_refusals(void)
{
    const char *future = in_dir("future.db"), *other = in_dir("other.db");
    char why[256] = "";
    hk_db *db = NULL;
    sqlite3 *r;

    CHECK_OK(hk_db_open_sqlite(future, &db, NULL, 0));
    hk_db_close(db);
    r = raw_open(future);
    raw_exec(r, "INSERT INTO schema_version (version) VALUES (99)");
    sqlite3_close(r);
    CHECK_ERR(hk_db_open_sqlite(future, &db, why, sizeof(why)), HK_ERR_VERSION);
    CHECK(db == NULL && strstr(why, "99") != NULL);

    CHECK(sqlite3_open(other, &r) == SQLITE_OK);
    raw_exec(r, "CREATE TABLE t (x INTEGER)");
    sqlite3_close(r);
    CHECK_ERR(hk_db_open_sqlite(other, &db, why, sizeof(why)), HK_ERR_CONFIG);
    write_file(in_dir("garbage.db"), 64, 0600);
    CHECK(hk_db_open_sqlite(in_dir("garbage.db"), &db, why, sizeof(why)) !=
          HK_OK);
    CHECK(db == NULL && why[0] != '\0');
}

/* --- keys ----------------------------------------------------------------- */

static void test_keys(hk_db *db)
{
    unsigned char k1[HK_ID_LEN], k2[HK_ID_LEN], nokid[HK_ID_LEN];
    hk_point p1 = rand_point(HK_CURVE_SECP256K1);
    hk_point p2 = rand_point(HK_CURVE_P256);
    char longlabel[HK_LABEL_MAX + 2];
    hk_db_key k, *list = NULL;
    size_t n = 0;

    CHECK(RAND_bytes(k1, HK_ID_LEN) == 1 && RAND_bytes(k2, HK_ID_LEN) == 1);
    CHECK(RAND_bytes(nokid, HK_ID_LEN) == 1);
    CHECK_OK(hk_db_key_create(db, k1, "alice", HK_CURVE_SECP256K1, &p1,
                              "laptop", T0));
    CHECK_OK(
        hk_db_key_create(db, k2, "alice", HK_CURVE_P256, &p2, NULL, T0 + 1));
    CHECK_ERR(hk_db_key_create(db, k1, "bob", HK_CURVE_P256, &p2, NULL, T0),
              HK_ERR_EXISTS);
    CHECK_OK(hk_db_key_get(db, k1, &k));
    CHECK(memcmp(k.kid, k1, HK_ID_LEN) == 0 && strcmp(k.owner, "alice") == 0);
    CHECK(k.curve == HK_CURVE_SECP256K1 && hk_point_eq(&k.pub, &p1));
    CHECK(k.created == T0 && !k.disabled && strcmp(k.label, "laptop") == 0);
    CHECK_OK(hk_db_key_get_owned(db, k2, "alice", &k));
    CHECK(k.curve == HK_CURVE_P256 && hk_point_eq(&k.pub, &p2));
    CHECK(k.label[0] == '\0');
    CHECK_ERR(hk_db_key_get_owned(db, k2, "bob", &k), HK_ERR_NOT_FOUND);
    CHECK_ERR(hk_db_key_get_owned(db, nokid, "alice", &k), HK_ERR_NOT_FOUND);
    CHECK_ERR(hk_db_key_get(db, nokid, &k), HK_ERR_NOT_FOUND);

    CHECK_OK(hk_db_key_list(db, "alice", &list, &n));
    CHECK(n == 2 && memcmp(list[0].kid, k1, HK_ID_LEN) == 0);
    CHECK(memcmp(list[1].kid, k2, HK_ID_LEN) == 0);
    OPENSSL_free(list);
    CHECK_OK(hk_db_key_list(db, "bob", &list, &n));
    CHECK(n == 0 && list == NULL);

    CHECK_OK(hk_db_key_set_disabled(db, k2, 1));
    CHECK_OK(hk_db_key_get(db, k2, &k));
    CHECK(k.disabled);
    CHECK_ERR(hk_db_key_set_disabled(db, nokid, 1), HK_ERR_NOT_FOUND);

    /* Arguments: empty, control characters, bad UTF-8, too long. */
    CHECK_ERR(hk_db_key_create(db, nokid, "", HK_CURVE_P256, &p2, NULL, T0),
              HK_ERR_ARG);
    CHECK_ERR(hk_db_key_create(db, nokid, "a\nb", HK_CURVE_P256, &p2, NULL, T0),
              HK_ERR_ARG);
    CHECK_ERR(
        hk_db_key_create(db, nokid, "a\xc0\xafz", HK_CURVE_P256, &p2, NULL, T0),
        HK_ERR_ARG);
    memset(longlabel, 'l', sizeof(longlabel) - 1);
    longlabel[sizeof(longlabel) - 1] = '\0';
    CHECK_ERR(
        hk_db_key_create(db, nokid, "alice", HK_CURVE_P256, &p2, longlabel, T0),
        HK_ERR_ARG);
    CHECK(hk_db_text_ok("\xc3\xa9l\xc3\xa8ve \xe2\x82\xac", 64));
    CHECK(!hk_db_text_ok("\xed\xa0\x80", 64)); /* surrogate */
    CHECK_ERR(hk_db_key_get(db, nokid, &k), HK_ERR_NOT_FOUND);
}

/* A key row with a bad value reads as HK_ERR_DECODE (checks bypassed with
 * ignore_check_constraints: the store's own CHECKs refuse such rows). */
static void test_corrupt_keys(hk_db *db, const char *path)
{
    static const char *const bad[] = {
        "UPDATE keys SET pubkey = zeroblob(32) WHERE kid = ?2 AND ?1 IS "
        "NOT NULL",
        "UPDATE keys SET pubkey = ?1 WHERE kid = ?2",
        "UPDATE keys SET curve = 'ed25519' WHERE kid = ?2 AND ?1 IS NOT "
        "NULL",
        "UPDATE keys SET disabled = 2 WHERE kid = ?2 AND ?1 IS NOT NULL",
        "UPDATE keys SET owner = 'al' || char(10) || 'ice' WHERE kid = ?2 "
        "AND ?1 IS NOT NULL",
        "UPDATE keys SET created = -1 WHERE kid = ?2 AND ?1 IS NOT NULL",
    };
    unsigned char kid[HK_ID_LEN], badpt[HK_POINT_LEN] = {0x05};
    hk_point p = rand_point(HK_CURVE_SECP256K1);
    hk_db_key k, *list = NULL;
    size_t i, n = 0;
    sqlite3 *r = raw_open(path);

    raw_exec(r, "PRAGMA ignore_check_constraints = ON");
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CHECK(RAND_bytes(kid, HK_ID_LEN) == 1);
        CHECK_OK(hk_db_key_create(db, kid, "carol", HK_CURVE_SECP256K1, &p,
                                  NULL, T0));
        raw_blob(r, bad[i], badpt, sizeof(badpt), kid);
        CHECK_ERR(hk_db_key_get(db, kid, &k), HK_ERR_DECODE);
        if (strstr(bad[i], "owner") == NULL) /* else not carol's any more */
            CHECK_ERR(hk_db_key_list(db, "carol", &list, &n), HK_ERR_DECODE);
        CHECK(list == NULL && n == 0);
        raw_blob(r, "DELETE FROM keys WHERE kid = ?2 AND ?1 IS NOT NULL", "", 1,
                 kid);
    }
    sqlite3_close(r);
}

/* --- shares --------------------------------------------------------------- */

typedef struct {
    hk_share *p1[4], *p2[4]; /* epochs 1, 2, 3; [0]: a rival epoch 2 */
} shares;

static void make_shares(shares *sh)
{
    const hk_rped_secret *rs = hk_test_rped_secret();
    hk_drive_stats st;
    int i;

    CHECK_OK(hk_drive_keygen(HK_CURVE_SECP256K1, 2048, rs, &sh->p1[1],
                             &sh->p2[1], &st));
    for (i = 2; i <= 3; i++)
        CHECK_OK(hk_drive_refresh(sh->p1[i - 1], sh->p2[i - 1], 2048, rs,
                                  &sh->p1[i], &sh->p2[i], &st));
    CHECK_OK(hk_drive_refresh(sh->p1[1], sh->p2[1], 2048, rs, &sh->p1[0],
                              &sh->p2[0], &st));
    CHECK(sh->p2[1]->epoch == 1 && sh->p2[3]->epoch == 3);
    CHECK(sh->p2[0]->epoch == 2);
}

static void free_shares(shares *sh)
{
    int i;

    for (i = 0; i < 4; i++) {
        hk_share_free(sh->p1[i]);
        hk_share_free(sh->p2[i]);
    }
}

/* Loads (kid, epoch) for alice and checks it is `want`. */
static void loads(hk_db *db, const hk_kek *kek, const hk_share *want,
                  int pending)
{
    hk_share *s = NULL;
    int is_pending = -1;

    CHECK_OK(hk_load_share(db, kek, "alice", want->kid, want->epoch, &s,
                           &is_pending));
    CHECK(is_pending == pending && s->role == HK_ROLE_P2);
    same_share(s, want);
    hk_share_free(s);
}

static void test_share_sequence(hk_db *db, const hk_kek *kek, const shares *sh)
{
    const unsigned char *kid = sh->p2[1]->kid;
    unsigned char *blob = NULL;
    unsigned long ep = 0;
    hk_share *s = NULL;
    hk_db_key k;
    size_t len = 0;

    CHECK_OK(hk_store_new_key(db, kek, "alice", sh->p2[1], "wallet", T0));
    CHECK_ERR(hk_store_new_key(db, kek, "alice", sh->p2[1], NULL, T0),
              HK_ERR_EXISTS);
    CHECK_OK(hk_db_key_get_owned(db, kid, "alice", &k));
    CHECK(hk_point_eq(&k.pub, &sh->p2[1]->Q) && k.curve == sh->p2[1]->curve);
    loads(db, kek, sh->p2[1], 0);
    CHECK_ERR(hk_load_share(db, kek, "bob", kid, 1, &s, NULL),
              HK_ERR_NOT_FOUND);
    CHECK_ERR(hk_load_share(db, kek, "alice", kid, 2, &s, NULL),
              HK_ERR_NOT_FOUND);
    CHECK_ERR(hk_store_share(db, kek, "alice", sh->p2[1], 0), HK_ERR_EXISTS);
    CHECK_ERR(hk_store_share(db, kek, "bob", sh->p2[2], 1), HK_ERR_NOT_FOUND);
    CHECK_ERR(hk_store_share(db, kek, "alice", sh->p1[2], 1), HK_ERR_ARG);
    CHECK_ERR(hk_store_share(db, kek, "alice", sh->p2[3], 0), HK_ERR_EXISTS);

    /* Refresh: pending beside active; a rival pending replaces it. */
    CHECK_OK(hk_store_share(db, kek, "alice", sh->p2[2], 1));
    loads(db, kek, sh->p2[2], 1);
    loads(db, kek, sh->p2[1], 0);
    CHECK_OK(hk_store_share(db, kek, "alice", sh->p2[0], 1));
    loads(db, kek, sh->p2[0], 1);
    CHECK_OK(hk_store_share(db, kek, "alice", sh->p2[2], 1));
    loads(db, kek, sh->p2[2], 1);
    /* Not above the active epoch: refused, nothing changed. */
    CHECK_ERR(hk_store_share(db, kek, "alice", sh->p2[1], 1), HK_ERR_EPOCH);
    loads(db, kek, sh->p2[2], 1);
    CHECK_OK(hk_db_share_get_active(db, kid, &ep, &blob, &len));
    CHECK(ep == 1 && len > HK_SEAL_OVERHEAD);
    OPENSSL_free(blob);

    /* Promotion. */
    CHECK_ERR(hk_db_share_promote(db, kid, 3), HK_ERR_NOT_FOUND);
    loads(db, kek, sh->p2[1], 0);
    CHECK_OK(hk_db_share_promote(db, kid, 2));
    loads(db, kek, sh->p2[2], 0);
    CHECK_ERR(hk_load_share(db, kek, "alice", kid, 1, &s, NULL),
              HK_ERR_NOT_FOUND);
    CHECK_OK(hk_db_share_promote(db, kid, 2)); /* repeated */
    CHECK_ERR(hk_db_share_promote(db, kid, 1), HK_ERR_NOT_FOUND);
    CHECK_OK(hk_store_share(db, kek, "alice", sh->p2[3], 1));
    CHECK_OK(hk_db_share_promote(db, kid, 3));
    loads(db, kek, sh->p2[3], 0);
    CHECK_OK(hk_db_share_get_active(db, kid, &ep, &blob, &len));
    CHECK(ep == 3);
    OPENSSL_free(blob);
}

/* Backups (v4): one per key and epoch, only of an epoch with a stored
 * share; older than the active share pruned; epoch 0 reads the newest
 * that still has its share; gone with the key. */
/* Requests (v5): stored pending, signatures one per digest, states move
 * once, expiry, sessions bound to a digest. */
static void test_requests(hk_db *db, const hk_kek *kek, const shares *sh)
{
    hk_share k = *sh->p2[1];
    unsigned char rid[HK_ID_LEN], sid[HK_ID_LEN], sig[64], dig[64],
        pay[] = "payload", other[HK_ID_LEN], rids[4][HK_ID_LEN];
    hk_db_request r, got, *list = NULL;
    hk_db_session s;
    size_t n = 0, nsigs = 0;

    memset(sig, 0x11, sizeof(sig));
    memset(dig, 0x22, sizeof(dig));
    CHECK(RAND_bytes(k.kid, HK_ID_LEN) == 1);
    CHECK(RAND_bytes(rid, HK_ID_LEN) == 1);
    CHECK(RAND_bytes(sid, HK_ID_LEN) == 1);
    memset(&r, 0, sizeof(r));
    memcpy(r.rid, rid, HK_ID_LEN);
    memcpy(r.kid, k.kid, HK_ID_LEN);
    strcpy(r.owner, "erin");
    strcpy(r.requester, "shop");
    r.kind = HK_REQ_BTC_PSBT;
    strcpy(r.network, "regtest");
    r.payload = pay;
    r.payload_len = sizeof(pay);
    r.digests = dig;
    r.dlen = 32;
    r.ndigests = 2;
    strcpy(r.metadata, "{\"order\":7}");
    r.created = T0;
    r.expires = T0 + 100;
    CHECK_ERR(hk_db_request_put(db, &r), HK_ERR_NOT_FOUND); /* no key */
    CHECK_OK(hk_store_new_key(db, kek, "erin", &k, NULL, T0));
    r.ndigests = 0;
    CHECK_ERR(hk_db_request_put(db, &r), HK_ERR_ARG);
    r.ndigests = 2;
    CHECK_OK(hk_db_request_put(db, &r));
    CHECK_ERR(hk_db_request_put(db, &r), HK_ERR_EXISTS);
    CHECK_OK(hk_db_request_get(db, rid, &got));
    CHECK(got.state == HK_REQ_PENDING && got.kind == HK_REQ_BTC_PSBT &&
          got.ndigests == 2 && got.dlen == 32 && got.nsigs == 0 &&
          memcmp(got.digests, dig, 64) == 0 &&
          strcmp(got.metadata, r.metadata) == 0 &&
          strcmp(got.network, "regtest") == 0 && got.result == NULL &&
          got.payload_len == sizeof(pay));
    hk_db_request_clear(&got);
    CHECK_OK(
        hk_db_request_list(db, "erin", HK_REQ_PENDING, 0, NULL, 10, &list, &n));
    CHECK(n == 1 && memcmp(list[0].rid, rid, HK_ID_LEN) == 0);
    hk_db_request_list_free(list, n);
    /* the cursor: (created, rid) strictly after */
    CHECK_OK(
        hk_db_request_list(db, "erin", HK_REQ_PENDING, T0, rid, 10, &list, &n));
    CHECK(n == 0);
    hk_db_request_list_free(list, n);
    CHECK_OK(
        hk_db_request_list(db, "shop", HK_REQ_PENDING, 0, NULL, 10, &list, &n));
    CHECK(n == 0);
    hk_db_request_list_free(list, n);
    /* a sign session bound to digest 1 */
    /* (later than the session sweep test_sessions counts) */
    CHECK_OK(
        hk_db_session_create(db, sid, "erin", HK_DB_OP_SIGN, k.kid, T0 + 5000));
    CHECK_OK(hk_db_session_bind_request(db, sid, rid, 1));
    CHECK_ERR(hk_db_session_bind_request(db, sid, rid, 0), HK_ERR_NOT_FOUND);
    CHECK_OK(hk_db_session_get(db, sid, T0 + 5001, IDLE, &s));
    CHECK(s.has_rid && s.ridx == 1 && memcmp(s.rid, rid, HK_ID_LEN) == 0);
    /* committed (in flight) while that session is live, for others */
    memcpy(other, rid, HK_ID_LEN);
    other[0] ^= 0x80;
    CHECK_ERR(
        hk_db_request_inflight(db, "erin", k.kid, other, T0, NULL, rids, 0, &n),
        HK_ERR_ARG);
    CHECK_OK(hk_db_request_inflight(db, "erin", k.kid, other, T0 + 5000, NULL,
                                    rids, 4, &n));
    CHECK(n == 1 && memcmp(rids[0], rid, HK_ID_LEN) == 0);
    CHECK_OK(
        hk_db_request_inflight(db, "erin", k.kid, rid, T0, NULL, rids, 4, &n));
    CHECK(n == 0); /* not itself */
    CHECK_OK(hk_db_request_inflight(db, "erin", k.kid, other, T0 + 5001, NULL,
                                    rids, 4, &n));
    CHECK(n == 0); /* the session went idle */
    CHECK_OK(
        hk_db_request_inflight(db, "erin", k.kid, other, T0, rid, rids, 4, &n));
    CHECK(n == 0); /* the cursor */
    CHECK_OK(hk_db_request_inflight(db, "shop", k.kid, other, T0, NULL, rids, 4,
                                    &n));
    CHECK(n == 0);
    /* signatures: once per digest, within bounds, before expiry */
    CHECK_ERR(hk_db_request_sig_put(db, rid, 2, sig, T0 + 1, &nsigs),
              HK_ERR_STATE);
    CHECK_OK(hk_db_request_sig_put(db, rid, 1, sig, T0 + 1, &nsigs));
    CHECK(nsigs == 1);
    /* one digest signed: committed, whatever its session does */
    CHECK_OK(hk_db_request_inflight(db, "erin", k.kid, other, T0 + 9999, NULL,
                                    rids, 4, &n));
    CHECK(n == 1 && memcmp(rids[0], rid, HK_ID_LEN) == 0);
    CHECK_ERR(hk_db_request_sig_put(db, rid, 1, sig, T0 + 1, &nsigs),
              HK_ERR_EXISTS);
    CHECK_ERR(hk_db_request_sig_put(db, rid, 0, sig, T0 + 100, &nsigs),
              HK_ERR_STATE); /* expired */
    CHECK_OK(hk_db_request_sig_put(db, rid, 0, sig, T0 + 2, &nsigs));
    CHECK(nsigs == 2);
    CHECK_ERR(hk_db_request_finish(db, rid, HK_REQ_SIGNED, "", NULL, 0, T0),
              HK_ERR_ARG); /* signed needs its result */
    CHECK_OK(hk_db_request_finish(db, rid, HK_REQ_SIGNED, "", pay, 3, T0 + 3));
    CHECK_ERR(
        hk_db_request_finish(db, rid, HK_REQ_REJECTED, "no", NULL, 0, T0 + 4),
        HK_ERR_STATE); /* once */
    CHECK_OK(hk_db_request_get(db, rid, &got));
    CHECK(got.state == HK_REQ_SIGNED && got.nsigs == 2 && got.have[0] &&
          got.have[1] && got.result_len == 3 && got.updated == T0 + 3);
    hk_db_request_clear(&got);
    CHECK_OK(hk_db_request_inflight(db, "erin", k.kid, other, T0, NULL, rids, 4,
                                    &n));
    CHECK(n == 0); /* signed: counted as such, no longer pending */
    /* a second request expires in the sweep, once */
    rid[0] ^= 1;
    memcpy(r.rid, rid, HK_ID_LEN);
    CHECK_OK(hk_db_request_put(db, &r));
    CHECK_OK(hk_db_request_sweep(db, T0 + 99, &list, &n));
    CHECK(n == 0);
    hk_db_request_list_free(list, n);
    CHECK_OK(hk_db_request_sweep(db, T0 + 100, &list, &n));
    CHECK(n == 1 && memcmp(list[0].rid, rid, HK_ID_LEN) == 0 &&
          strcmp(list[0].requester, "shop") == 0);
    hk_db_request_list_free(list, n);
    CHECK_OK(hk_db_request_sweep(db, T0 + 101, &list, &n));
    CHECK(n == 0);
    hk_db_request_list_free(list, n);
    CHECK_OK(hk_db_request_get(db, rid, &got));
    CHECK(got.state == HK_REQ_EXPIRED && got.reason[0] != 0);
    hk_db_request_clear(&got);
    /* deleting the key deletes its requests */
    CHECK_OK(hk_db_key_delete(db, k.kid, "erin"));
    CHECK_ERR(hk_db_request_get(db, rid, &got), HK_ERR_NOT_FOUND);
}

static void test_backups(hk_db *db, const hk_kek *kek, const shares *sh)
{
    hk_share k = *sh->p2[1];
    unsigned char fp[HK_HASH_LEN], blob[300];
    unsigned long ep = 9;
    int64_t none = 0, none2 = 0, stale = 0, waiting = 0;
    hk_db_backup b;

    memset(fp, 0xab, sizeof(fp));
    memset(blob, 0x5a, sizeof(blob));
    CHECK(RAND_bytes(k.kid, HK_ID_LEN) == 1);
    CHECK_ERR(hk_db_backup_put(db, k.kid, 1, fp, blob, 10, T0),
              HK_ERR_NOT_FOUND); /* no key */
    CHECK_OK(hk_store_new_key(db, kek, "dave", &k, NULL, T0));
    CHECK_OK(hk_db_backup_newest(db, k.kid, &ep));
    CHECK(ep == 0);
    CHECK_ERR(hk_db_backup_get(db, k.kid, 0, &b), HK_ERR_NOT_FOUND);
    CHECK(b.blob == NULL);
    CHECK_ERR(hk_db_backup_put(db, k.kid, 2, fp, blob, 10, T0),
              HK_ERR_EPOCH); /* no share of epoch 2 */
    CHECK_ERR(hk_db_backup_put(db, k.kid, 1, fp, blob, 0, T0), HK_ERR_ARG);
    CHECK_ERR(
        hk_db_backup_put(db, k.kid, 1, fp, blob, HK_DB_BACKUP_MAX + 1, T0),
        HK_ERR_ARG);
    CHECK_ERR(hk_db_backup_put(db, k.kid, 0, fp, blob, 10, T0), HK_ERR_ARG);
    CHECK_OK(hk_db_backup_counts(db, &none, &stale, &waiting));
    CHECK(none >= 1 && stale == 0 && waiting == 0);
    CHECK_OK(hk_db_backup_put(db, k.kid, 1, fp, blob, 10, T0));
    CHECK_OK(hk_db_backup_counts(db, &none2, &stale, &waiting));
    CHECK(none2 == none - 1 && stale == 0 && waiting == 0);
    blob[0] = 1; /* the same epoch again: replaced */
    CHECK_OK(hk_db_backup_put(db, k.kid, 1, fp, blob, 20, T0 + 1));
    CHECK_OK(hk_db_backup_get(db, k.kid, 0, &b));
    CHECK(b.epoch == 1 && b.len == 20 && b.blob[0] == 1 &&
          b.created == T0 + 1 && memcmp(b.bk_fp, fp, HK_HASH_LEN) == 0);
    OPENSSL_free(b.blob);
    /* a pending share of epoch 2 and its backup: the newest */
    {
        hk_share k2 = *sh->p2[2];

        memcpy(k2.kid, k.kid, HK_ID_LEN);
        CHECK_OK(hk_store_share(db, kek, "dave", &k2, 1));
    }
    CHECK_OK(hk_db_backup_counts(db, &none2, &stale, &waiting));
    CHECK(stale == 0 && waiting == 1); /* epoch 2 waits for its backup */
    fp[0] = 1;
    CHECK_OK(hk_db_backup_put(db, k.kid, 2, fp, blob, 30, T0 + 2));
    CHECK_OK(hk_db_backup_newest(db, k.kid, &ep));
    CHECK(ep == 2);
    CHECK_OK(hk_db_backup_get(db, k.kid, 0, &b));
    CHECK(b.epoch == 2 && b.len == 30 && b.bk_fp[0] == 1);
    OPENSSL_free(b.blob);
    CHECK_OK(hk_db_backup_get(db, k.kid, 1, &b));
    CHECK(b.epoch == 1 && b.len == 20);
    OPENSSL_free(b.blob);
    /* promoted: epoch 1's backup is pruned at the next put */
    CHECK_OK(hk_db_share_promote(db, k.kid, 2));
    CHECK_ERR(hk_db_backup_get(db, k.kid, 1, &b),
              HK_ERR_NOT_FOUND); /* its share is gone */
    CHECK_OK(hk_db_backup_counts(db, &none2, &stale, &waiting));
    CHECK(stale == 0 && waiting == 0);
    CHECK_OK(hk_db_backup_put(db, k.kid, 2, fp, blob, 31, T0 + 3));
    CHECK_OK(hk_db_backup_get(db, k.kid, 0, &b));
    CHECK(b.epoch == 2 && b.len == 31);
    OPENSSL_free(b.blob);
    CHECK_OK(hk_db_key_delete(db, k.kid, NULL)); /* cascades */
    CHECK_OK(hk_db_backup_newest(db, k.kid, &ep));
    CHECK(ep == 0);
    CHECK_ERR(hk_db_backup_get(db, NULL, 0, &b), HK_ERR_ARG);
    CHECK_ERR(hk_db_backup_newest(db, k.kid, NULL), HK_ERR_ARG);
}

/* Two-phase keygen (db.h): a stored key is pending until confirmed; the
 * sweep removes only keys still pending and created before the cut-off. */
/* Presignatures (v7): sealed, bound to key, owner and id; taken once;
 * bounded per key and owner, a batch all or nothing; swept by age. */
static void test_presigs(hk_db *db, const hk_kek *kek, const shares *sh)
{
    hk_share k = *sh->p2[1];
    hk_presig p1[3], p2[3], got;
    BIGNUM *rn[3] = {0}, *back = NULL;
    unsigned char *sealed = NULL;
    unsigned long ep = 0;
    int64_t nk = 0, no = 0;
    size_t n = 0, i, len = 0;
    hk_drive_stats st;

    CHECK(RAND_bytes(k.kid, HK_ID_LEN) == 1);
    CHECK_OK(hk_store_new_key(db, kek, "erin", &k, NULL, T0));
    CHECK_OK(hk_drive_presign(sh->p1[1], sh->p2[1], 3, p1, p2, &st));
    for (i = 0; i < 3; i++) {
        memcpy(p2[i].kid, k.kid, HK_ID_LEN); /* this test's key */
        CHECK_OK(hk_sign_randomness(sh->p2[1], &rn[i]));
    }
    CHECK_ERR(hk_store_presigs(db, kek, "erin", p2, rn, 512, 3, 2, 100, T0),
              HK_ERR_RATE); /* larger than the key's bound */
    CHECK_ERR(hk_store_presigs(db, kek, "erin", p2, rn, 512, 3, 100, 2, T0),
              HK_ERR_RATE); /* than the owner's */
    CHECK_OK(hk_db_presig_count(db, k.kid, "erin", &nk, &no));
    CHECK(nk == 0 && no == 0); /* all or nothing */
    /* full: the oldest go first */
    CHECK_OK(hk_store_presigs(db, kek, "erin", p2, rn, 512, 1, 2, 2, T0 - 6));
    CHECK_OK(hk_store_presigs(db, kek, "erin", p2 + 1, rn + 1, 512, 1, 2, 2,
                              T0 - 5));
    CHECK_OK(hk_store_presigs(db, kek, "erin", p2 + 2, rn + 2, 512, 1, 2, 2,
                              T0 - 4));
    CHECK_OK(hk_db_presig_count(db, k.kid, "erin", &nk, &no));
    CHECK(nk == 2 && no == 2);
    CHECK_ERR(hk_take_presig(db, kek, "erin", k.kid, p2[0].id, &got, &back),
              HK_ERR_NOT_FOUND); /* the oldest, evicted */
    CHECK_OK(hk_db_presig_sweep(db, T0, &n));
    CHECK(n == 2);
    CHECK_OK(hk_store_presigs(db, kek, "erin", p2, rn, 512, 3, 3, 3, T0));
    CHECK_ERR(hk_store_presigs(db, kek, "erin", p2, rn, 512, 1, 10, 10, T0),
              HK_ERR_EXISTS); /* an id twice */
    CHECK_OK(hk_db_presig_count(db, k.kid, "erin", &nk, &no));
    CHECK(nk == 3 && no == 3);
    /* another owner or key finds nothing, and takes nothing */
    CHECK_ERR(hk_take_presig(db, kek, "mallory", k.kid, p2[0].id, &got, &back),
              HK_ERR_NOT_FOUND);
    CHECK_ERR(
        hk_take_presig(db, kek, "erin", sh->p2[1]->kid, p2[0].id, &got, &back),
        HK_ERR_NOT_FOUND);
    CHECK_OK(hk_take_presig(db, kek, "erin", k.kid, p2[0].id, &got, &back));
    CHECK(hk_scalar_eq(&got.k, &p2[0].k) && hk_point_eq(&got.R1, &p2[0].R1) &&
          BN_cmp(back, rn[0]) == 0 && got.epoch == 1);
    BN_clear_free(back);
    back = NULL;
    /* once */
    CHECK_ERR(hk_take_presig(db, kek, "erin", k.kid, p2[0].id, &got, &back),
              HK_ERR_NOT_FOUND);
    /* a row opened under another id's associated data: refused, and gone */
    CHECK_OK(
        hk_db_presig_take(db, p2[1].id, k.kid, "erin", &ep, &sealed, &len));
    CHECK(ep == 1 && len > HK_PRESIG_REC_LEN);
    {
        hk_db_presig_in in;

        memcpy(in.psid, p2[0].id, HK_ID_LEN);
        in.sealed = sealed;
        in.len = len;
        CHECK_OK(hk_db_presig_put(db, k.kid, "erin", 1, &in, 1, 10, 10, T0));
        CHECK_ERR(hk_take_presig(db, kek, "erin", k.kid, p2[0].id, &got, &back),
                  HK_ERR_SEAL);
        CHECK_ERR(hk_db_presig_put(db, k.kid, "erin", 2, &in, 1, 10, 10, T0),
                  HK_ERR_EPOCH); /* no share of epoch 2 */
    }
    OPENSSL_free(sealed);
    /* the sweep: age first */
    CHECK_OK(hk_db_presig_sweep(db, T0, &n));
    CHECK(n == 0);
    CHECK_OK(hk_db_presig_sweep(db, T0 + 1, &n));
    CHECK(n == 1);
    CHECK_OK(hk_db_presig_count(db, k.kid, "erin", &nk, &no));
    CHECK(nk == 0 && no == 0);
    for (i = 0; i < 3; i++)
        BN_clear_free(rn[i]);
    OPENSSL_cleanse(p1, sizeof(p1));
    OPENSSL_cleanse(p2, sizeof(p2));
    OPENSSL_cleanse(&got, sizeof(got));
}

/* Groups: one commit for several calls; a call that fails inside rolls
 * back alone, the rest is committed. */
static void test_groups(hk_db *db)
{
    unsigned char a[HK_ID_LEN], b[HK_ID_LEN], kid[HK_ID_LEN];
    hk_db_session s;
    int lazy;

    uint64_t last = 0, t;

    CHECK_ERR(hk_db_group_begin(db, HK_DB_DEFERRED + 1), HK_ERR_ARG);
    CHECK_ERR(hk_db_group_begin(db, -1), HK_ERR_ARG);
    for (lazy = 0; lazy <= HK_DB_DEFERRED; lazy++) {
        CHECK(RAND_bytes(a, sizeof(a)) == 1 && RAND_bytes(b, sizeof(b)) == 1 &&
              RAND_bytes(kid, sizeof(kid)) == 1);
        CHECK_OK(hk_db_group_begin(db, lazy));
        CHECK_ERR(hk_db_group_begin(db, 1), HK_ERR_ARG); /* no nesting */
        CHECK_OK(hk_db_session_create(db, a, "gina", HK_DB_OP_SIGN, kid, T0));
        /* a duplicate fails alone (a savepoint), the group goes on */
        CHECK_ERR(hk_db_session_create(db, a, "gina", HK_DB_OP_SIGN, kid, T0),
                  HK_ERR_EXISTS);
        CHECK_OK(hk_db_session_create(db, b, "gina", HK_DB_OP_SIGN, kid, T0));
        CHECK_OK(hk_db_session_set_state(db, b, HK_DB_SESS_RUNNING, T0, 60));
        CHECK_ERR(hk_db_session_set_state(db, a, HK_DB_SESS_DONE, T0, 60),
                  HK_ERR_STATE); /* open -> done is not a move */
        CHECK_OK(hk_db_group_end(db));
        CHECK_ERR(hk_db_group_end(db), HK_ERR_ARG);
        /* a deferred group has a ticket (a file database on SQLite; 0 on
         * a back end that commits it durably), later ones a larger one */
        t = hk_db_group_ticket(db);
        CHECK(lazy != HK_DB_DURABLE ? t == 0 || t > last : t == 0);
        CHECK_OK(hk_db_wait_durable(db, t));
        last = t > last ? t : last;
        CHECK_OK(hk_db_session_get(db, a, T0, 60, &s));
        CHECK(s.state == HK_DB_SESS_OPEN);
        CHECK_OK(hk_db_session_get(db, b, T0, 60, &s));
        CHECK(s.state == HK_DB_SESS_RUNNING);
    }
}

/* Deferred groups on SQLite: the syncer syncs the WAL by its path, many
 * commits may share one sync, an in-memory database commits durably
 * (ticket 0), and a sync that fails (here: the database's directory
 * renamed away, so neither the WAL nor the file opens by its path) fails
 * the wait and every deferred group after it. */
static void test_deferred(void)
{
    char sub[256], moved[256], path[300];
    unsigned char sid[HK_ID_LEN], kid[HK_ID_LEN];
    uint64_t t[8];
    hk_db *db = NULL;
    int i;

    CHECK_OK(hk_db_open_sqlite(":memory:", &db, NULL, 0));
    CHECK_OK(hk_db_group_begin(db, HK_DB_DEFERRED));
    CHECK_OK(hk_db_group_end(db));
    CHECK(hk_db_group_ticket(db) == 0);
    hk_db_close(db);

    snprintf(sub, sizeof(sub), "%s", in_dir("deferred"));
    snprintf(moved, sizeof(moved), "%s", in_dir("deferred-moved"));
    snprintf(path, sizeof(path), "%s/halfkey.db", sub);
    CHECK(mkdir(sub, 0700) == 0);
    CHECK_OK(hk_db_open_sqlite(path, &db, NULL, 0));
    CHECK(RAND_bytes(kid, sizeof(kid)) == 1);
    for (i = 0; i < 8; i++) {
        CHECK(RAND_bytes(sid, sizeof(sid)) == 1);
        CHECK_OK(hk_db_group_begin(db, HK_DB_DEFERRED));
        CHECK_OK(hk_db_session_create(db, sid, "dora", HK_DB_OP_SIGN, kid, T0));
        CHECK_OK(hk_db_group_end(db));
        t[i] = hk_db_group_ticket(db);
        CHECK(t[i] == (uint64_t)i + 1);
    }
    for (i = 7; i >= 0; i--)
        CHECK_OK(hk_db_wait_durable(db, t[i]));
    CHECK(rename(sub, moved) == 0);
    CHECK(RAND_bytes(sid, sizeof(sid)) == 1);
    CHECK_OK(hk_db_group_begin(db, HK_DB_DEFERRED));
    CHECK_OK(hk_db_session_create(db, sid, "dora", HK_DB_OP_SIGN, kid, T0));
    CHECK_OK(hk_db_group_end(db));
    CHECK_ERR(hk_db_wait_durable(db, hk_db_group_ticket(db)), HK_ERR_IO);
    CHECK_OK(hk_db_wait_durable(db, t[7])); /* synced before the failure */
    CHECK_OK(hk_db_group_begin(db, HK_DB_DEFERRED));
    CHECK_ERR(hk_db_group_end(db), HK_ERR_IO);
    CHECK(rename(moved, sub) == 0);
    hk_db_close(db);
}

/* Both executors keep their prepared statements (db_sqlite.c, db_pg.c): a kept
 * statement runs again with new bindings from its first row; a cursor
 * left mid-way and the same text run meanwhile do not disturb each other;
 * a failed step leaves it usable; more texts than the cache holds all
 * still run (evicted ones compiled again); one-statement scripts (BEGIN,
 * COMMIT, a PRAGMA) through the cache commit and roll back as before. */
static hk_err stmt_sum(hk_db *db, int64_t below, int64_t *sum)
{
    hk_sql_cur c;
    hk_dbp p = {0};
    int64_t v;
    int row = 1;
    hk_err e;

    *sum = 0;
    hk_dbp_int(&p, below);
    if ((e = hk_sql_query(db, "SELECT n FROM t WHERE n < ?1 ORDER BY n", &p,
                          &c)) != HK_OK)
        return e;
    while (e == HK_OK && (e = hk_sql_next(&c, &row)) == HK_OK && row &&
           (e = hk_col_int(&c, 0, 0, 1000, &v)) == HK_OK)
        *sum += v;
    hk_sql_done(&c);
    return e;
}

static void test_stmt_cache(hk_db *db)
{
    char sql[64];
    hk_sql_cur c;
    hk_dbp p;
    int64_t v, sum;
    int i, row = 0;

    CHECK_OK(hk_sql_script(db, "CREATE TABLE t (n BIGINT PRIMARY KEY)"));
    for (i = 1; i <= 10; i++) {
        memset(&p, 0, sizeof(p));
        hk_dbp_int(&p, i);
        CHECK_OK(hk_sql_run(db, "INSERT INTO t (n) VALUES (?1)", &p, NULL));
    }
    /* a duplicate fails, the same kept INSERT then works */
    memset(&p, 0, sizeof(p));
    hk_dbp_int(&p, 3);
    CHECK_ERR(hk_sql_run(db, "INSERT INTO t (n) VALUES (?1)", &p, NULL),
              HK_ERR_EXISTS);
    CHECK_OK(stmt_sum(db, 4, &sum));
    CHECK(sum == 6);
    CHECK_OK(stmt_sum(db, 11, &sum));
    CHECK(sum == 55);
    /* left after its first row; the same text runs to the end meanwhile */
    memset(&p, 0, sizeof(p));
    hk_dbp_int(&p, 11);
    CHECK_OK(
        hk_sql_query(db, "SELECT n FROM t WHERE n < ?1 ORDER BY n", &p, &c));
    CHECK_OK(hk_sql_next(&c, &row));
    CHECK(row == 1 && hk_col_int(&c, 0, 0, 1000, &v) == HK_OK && v == 1);
    CHECK_OK(stmt_sum(db, 5, &sum));
    CHECK(sum == 10);
    CHECK_OK(hk_sql_next(&c, &row));
    CHECK(row == 1 && hk_col_int(&c, 0, 0, 1000, &v) == HK_OK && v == 2);
    hk_sql_done(&c);
    CHECK_OK(stmt_sum(db, 3, &sum)); /* from the first row again */
    CHECK(sum == 3);
    /* three times the cache's texts, twice over */
    for (i = 0; i < 600; i++) {
        snprintf(sql, sizeof(sql), "SELECT count(*) + %d FROM t", i % 300);
        CHECK_OK(hk_sql_int(db, sql, NULL, &v));
        CHECK(v == 10 + i % 300);
    }
    CHECK_OK(stmt_sum(db, 11, &sum));
    CHECK(sum == 55);
    /* a rolled-back transaction through the kept BEGIN and ROLLBACK */
    CHECK_OK(hk_sql_begin(db));
    memset(&p, 0, sizeof(p));
    hk_dbp_int(&p, 20);
    CHECK_OK(hk_sql_run(db, "INSERT INTO t (n) VALUES (?1)", &p, NULL));
    CHECK_ERR(hk_sql_end(db, HK_ERR_IO), HK_ERR_IO);
    CHECK_OK(stmt_sum(db, 100, &sum));
    CHECK(sum == 55);
    CHECK_OK(hk_sql_begin(db));
    CHECK_OK(hk_sql_run(db, "INSERT INTO t (n) VALUES (?1)", &p, NULL));
    CHECK_OK(hk_sql_end(db, HK_OK));
    CHECK_OK(stmt_sum(db, 100, &sum));
    CHECK(sum == 75);
    CHECK_OK(hk_sql_script(db, "DROP TABLE t"));
}

static void test_pending_keys(hk_db *db, const hk_kek *kek, const shares *sh)
{
    hk_share a = *sh->p2[1], b = *sh->p2[1];
    hk_db_key k, *gone = NULL;
    size_t n = 0;

    CHECK(RAND_bytes(a.kid, HK_ID_LEN) == 1);
    CHECK(RAND_bytes(b.kid, HK_ID_LEN) == 1);
    /* older than every other key of the test database */
    CHECK_OK(hk_store_new_key(db, kek, "carol", &a, NULL, T0 - 100));
    CHECK_OK(hk_store_new_key(db, kek, "carol", &b, NULL, T0 - 90));
    CHECK_OK(hk_db_key_get(db, a.kid, &k));
    CHECK(k.pending);
    CHECK_OK(hk_db_key_sweep_pending(db, T0 - 100, &gone, &n)); /* before */
    CHECK(n == 0 && gone == NULL);
    CHECK_OK(hk_db_key_confirm(db, b.kid));
    CHECK_OK(hk_db_key_confirm(db, b.kid)); /* idempotent */
    CHECK_OK(hk_db_key_get(db, b.kid, &k));
    CHECK(!k.pending);
    CHECK_OK(hk_db_key_sweep_pending(db, T0 - 50, &gone, &n));
    CHECK(n == 1 && memcmp(gone[0].kid, a.kid, HK_ID_LEN) == 0);
    CHECK(strcmp(gone[0].owner, "carol") == 0);
    OPENSSL_free(gone);
    CHECK_ERR(hk_db_key_get(db, a.kid, &k), HK_ERR_NOT_FOUND);
    CHECK_ERR(hk_db_key_confirm(db, a.kid), HK_ERR_NOT_FOUND);
    CHECK_ERR(hk_db_key_sweep_pending(db, -1, &gone, &n), HK_ERR_ARG);
    CHECK_OK(hk_db_key_delete(db, b.kid, NULL));
}

static void test_share_rules(hk_db *db, const hk_kek *kek, const shares *sh)
{
    unsigned char nokid[HK_ID_LEN], *blob = NULL;
    hk_db_share_state state = 0;
    hk_point p = rand_point(HK_CURVE_SECP256K1);
    hk_share tmp, *s = NULL;
    size_t len = 0;

    CHECK_OK(hk_db_share_get(db, sh->p2[3]->kid, 3, &blob, &len, &state));
    CHECK(state == HK_DB_SHARE_ACTIVE);
    CHECK(RAND_bytes(nokid, HK_ID_LEN) == 1);
    CHECK_ERR(hk_db_share_put_active(db, nokid, 1, blob, len),
              HK_ERR_NOT_FOUND);
    CHECK_ERR(hk_db_share_put_pending(db, nokid, 2, blob, len),
              HK_ERR_NOT_FOUND);
    CHECK_OK(
        hk_db_key_create(db, nokid, "alice", HK_CURVE_SECP256K1, &p, NULL, T0));
    CHECK_ERR(hk_db_share_put_pending(db, nokid, 2, blob, len), HK_ERR_STATE);
    CHECK_ERR(hk_db_share_put_active(db, nokid, 0, blob, len), HK_ERR_ARG);
    CHECK_ERR(hk_db_share_put_active(db, nokid, 1, blob, HK_SEAL_OVERHEAD),
              HK_ERR_ARG);
    /* A share whose Q is not the key's. */
    tmp = *sh->p2[3];
    memcpy(tmp.kid, nokid, HK_ID_LEN);
    CHECK_ERR(hk_store_share(db, kek, "alice", &tmp, 0), HK_ERR_KEY_MISMATCH);
    /* A disabled key is neither loaded nor stored. */
    CHECK_OK(hk_db_key_set_disabled(db, sh->p2[3]->kid, 1));
    CHECK_ERR(hk_load_share(db, kek, "alice", sh->p2[3]->kid, 3, &s, NULL),
              HK_ERR_FORBIDDEN);
    CHECK(s == NULL);
    CHECK_ERR(hk_store_share(db, kek, "alice", sh->p2[3], 1), HK_ERR_FORBIDDEN);
    CHECK_OK(hk_db_key_set_disabled(db, sh->p2[3]->kid, 0));
    OPENSSL_free(blob);
}

/* --- binding of sealed shares, corrupt share rows ------------------------- */

/* Seals rec for (kid, sub, epoch) as hk_store_share would. */
static void seal_for(const hk_kek *kek, const unsigned char *kid,
                     const char *sub, unsigned long epoch,
                     const unsigned char *rec, size_t rlen, unsigned char **out,
                     size_t *outlen)
{
    unsigned char aad[HK_SHARE_AAD_MAX];
    size_t alen = sizeof(aad);

    CHECK_OK(hk_share_aad(kid, sub, epoch, aad, &alen));
    CHECK_OK(hk_seal(kek, aad, alen, rec, rlen, out, outlen));
}

/* Writes blob into the row of (kid, epoch 3) behind the store's back and
 * expects hk_load_share to fail with `want`. */
static void load_with(hk_db *db, const hk_kek *kek, sqlite3 *r,
                      const unsigned char *kid, const unsigned char *blob,
                      size_t len, hk_err want)
{
    hk_share *s = NULL;
    int pending = -1;

    raw_blob(r, "UPDATE shares SET sealed = ?1 WHERE kid = ?2 AND epoch = 3",
             blob, len, kid);
    CHECK_ERR(hk_load_share(db, kek, "alice", kid, 3, &s, &pending), want);
    CHECK(s == NULL && pending == -1);
}

/* Seals rec for (kid, sub, epoch), stores it as epoch 3, expects want. */
static void load_sealed_for(hk_db *db, const hk_kek *kek, sqlite3 *r,
                            const hk_kek *with, const unsigned char *kid,
                            const char *sub, unsigned long epoch,
                            const unsigned char *rec, size_t rlen, hk_err want)
{
    const unsigned char *key = kid;
    unsigned char *blob = NULL, other[HK_ID_LEN];
    size_t len = 0;

    if (sub == NULL) { /* sealed for another key */
        CHECK(RAND_bytes(other, HK_ID_LEN) == 1);
        key = other;
        sub = "alice";
    }
    seal_for(with, key, sub, epoch, rec, rlen, &blob, &len);
    load_with(db, kek, r, kid, blob, len, want);
    OPENSSL_free(blob);
}

static unsigned char *encode(const hk_share *s, size_t *len)
{
    unsigned char *rec = NULL;

    CHECK_OK(hk_share_encode(s, &rec, len));
    return rec;
}

static void test_share_binding(hk_db *db, const hk_kek *kek, const hk_kek *kek2,
                               const char *path, const shares *sh)
{
    static const unsigned char junk[] = "{\"not\":\"a share\"}";
    const unsigned char *kid = sh->p2[3]->kid;
    unsigned char *orig = NULL, *rec3, *rec2, *rec1p;
    size_t olen = 0, l3 = 0, l2 = 0, l1p = 0, offs[4], i;
    sqlite3 *r = raw_open(path);

    CHECK_OK(hk_db_share_get(db, kid, 3, &orig, &olen, NULL));
    rec3 = encode(sh->p2[3], &l3);
    rec2 = encode(sh->p2[2], &l2);
    rec1p = encode(sh->p1[3], &l1p);
    /* Sealed for another owner, epoch, key, or under another KEK. */
    load_sealed_for(db, kek, r, kek, kid, "mallory", 3, rec3, l3, HK_ERR_SEAL);
    load_sealed_for(db, kek, r, kek, kid, "alice", 2, rec3, l3, HK_ERR_SEAL);
    load_sealed_for(db, kek, r, kek, kid, NULL, 3, rec3, l3, HK_ERR_SEAL);
    load_sealed_for(db, kek, r, kek2, kid, "alice", 3, rec3, l3, HK_ERR_SEAL);
    /* The stored blob with one bit flipped. */
    offs[0] = 0;
    offs[1] = 5;
    offs[2] = olen / 2;
    offs[3] = olen - 1;
    for (i = 0; i < 4; i++) {
        unsigned char *bad = OPENSSL_memdup(orig, olen);

        bad[offs[i]] ^= 0x80;
        load_with(db, kek, r, kid, bad, olen, HK_ERR_SEAL);
        OPENSSL_free(bad);
    }
    /* Rightly bound, wrong content: another epoch's share, the client's
     * share, junk; a blob too short to be sealed. */
    load_sealed_for(db, kek, r, kek, kid, "alice", 3, rec2, l2, HK_ERR_SHARE);
    load_sealed_for(db, kek, r, kek, kid, "alice", 3, rec1p, l1p, HK_ERR_SHARE);
    load_sealed_for(db, kek, r, kek, kid, "alice", 3, junk, sizeof(junk) - 1,
                    HK_ERR_DECODE);
    load_with(db, kek, r, kid, orig, HK_SEAL_OVERHEAD, HK_ERR_DECODE);
    /* Restored, it loads again. */
    raw_blob(r, "UPDATE shares SET sealed = ?1 WHERE kid = ?2 AND epoch = 3",
             orig, olen, kid);
    loads(db, kek, sh->p2[3], 0);
    sqlite3_close(r);
    OPENSSL_free(orig);
    OPENSSL_clear_free(rec3, l3);
    OPENSSL_clear_free(rec2, l2);
    OPENSSL_clear_free(rec1p, l1p);
}

/* A statement failing inside a transaction leaves nothing behind: test
 * triggers make the second statement of a key + share insert, and of a
 * promotion, fail. */
static void test_atomicity(hk_db *db, const hk_kek *kek, const char *path,
                           const shares *sh)
{
    hk_share fresh = *sh->p2[1], next = *sh->p2[3];
    unsigned char *blob = NULL;
    unsigned long ep = 0;
    size_t len = 0;
    hk_db_key k;
    sqlite3 *r = raw_open(path);

    CHECK(RAND_bytes(fresh.kid, HK_ID_LEN) == 1);
    raw_exec(r, "CREATE TRIGGER t BEFORE INSERT ON shares "
                "BEGIN SELECT RAISE(ABORT, 'refused by test'); END");
    CHECK_ERR(hk_store_new_key(db, kek, "alice", &fresh, NULL, T0), HK_ERR_IO);
    CHECK(strstr(hk_db_errmsg(db), "refused by test") != NULL);
    CHECK_ERR(hk_db_key_get(db, fresh.kid, &k), HK_ERR_NOT_FOUND);
    raw_exec(r, "DROP TRIGGER t");

    next.epoch = 4; /* same values, a later epoch: decodes consistently */
    CHECK_OK(hk_store_share(db, kek, "alice", &next, 1));
    raw_exec(r, "CREATE TRIGGER t BEFORE UPDATE ON shares "
                "BEGIN SELECT RAISE(ABORT, 'refused by test'); END");
    CHECK_ERR(hk_db_share_promote(db, next.kid, 4), HK_ERR_IO);
    raw_exec(r, "DROP TRIGGER t");
    CHECK_OK(hk_db_share_get_active(db, next.kid, &ep, &blob, &len));
    CHECK(ep == 3);
    OPENSSL_free(blob);
    loads(db, kek, &next, 1);
    sqlite3_close(r);
}

/* --- sessions ------------------------------------------------------------- */

static void test_session_basics(hk_db *db, const unsigned char *sid)
{
    unsigned char kid[HK_ID_LEN] = {7, 7, 7};
    hk_db_session s;

    CHECK_OK(hk_db_session_create(db, sid, "alice", HK_DB_OP_SIGN, kid, T0));
    CHECK_ERR(
        hk_db_session_create(db, sid, "bob", HK_DB_OP_KEYGEN, NULL, T0 + 1),
        HK_ERR_EXISTS);
    CHECK_OK(hk_db_session_get(db, sid, T0 + 10, IDLE, &s));
    CHECK(memcmp(s.sid, sid, HK_ID_LEN) == 0 && strcmp(s.owner, "alice") == 0);
    CHECK(s.op == HK_DB_OP_SIGN && s.has_kid &&
          memcmp(s.kid, kid, HK_ID_LEN) == 0);
    CHECK(s.created == T0 && s.last_seen == T0 && s.state == HK_DB_SESS_OPEN);
    CHECK_ERR(hk_db_session_get_owned(db, sid, "bob", HK_DB_OP_SIGN, T0 + 10,
                                      IDLE, &s),
              HK_ERR_SESSION);
    CHECK_ERR(hk_db_session_get_owned(db, sid, "alice", HK_DB_OP_REFRESH,
                                      T0 + 10, IDLE, &s),
              HK_ERR_SESSION);
    CHECK_OK(hk_db_session_get_owned(db, sid, "alice", HK_DB_OP_SIGN, T0 + 10,
                                     IDLE, &s));
    /* Alive while now < last_seen + idle; the idle time is the caller's. */
    CHECK_OK(hk_db_session_get(db, sid, T0 + IDLE - 1, IDLE, &s));
    CHECK_ERR(hk_db_session_get(db, sid, T0 + IDLE, IDLE, &s), HK_ERR_SESSION);
    CHECK_ERR(hk_db_session_get(db, sid, T0 + 10, 10, &s), HK_ERR_SESSION);
    /* Touch keeps it alive, never moves back, never revives. */
    CHECK_OK(hk_db_session_touch(db, sid, T0 + 200, IDLE));
    CHECK_OK(hk_db_session_get(db, sid, T0 + 450, IDLE, &s));
    CHECK(s.last_seen == T0 + 200);
    CHECK_OK(hk_db_session_touch(db, sid, T0 + 100, IDLE));
    CHECK_OK(hk_db_session_get(db, sid, T0 + 450, IDLE, &s));
    CHECK(s.last_seen == T0 + 200);
    CHECK_ERR(hk_db_session_touch(db, sid, T0 + 500, IDLE), HK_ERR_SESSION);
    CHECK_OK(hk_db_session_get(db, sid, T0 + 499, IDLE, &s));
    CHECK(s.last_seen == T0 + 200);
}

static void test_session_states(hk_db *db, const unsigned char *sid,
                                const unsigned char *sid2)
{
    unsigned char sid3[HK_ID_LEN], unknown[HK_ID_LEN];
    hk_db_session s;

    CHECK(RAND_bytes(sid3, HK_ID_LEN) == 1);
    CHECK(RAND_bytes(unknown, HK_ID_LEN) == 1);
    CHECK_OK(
        hk_db_session_set_state(db, sid, HK_DB_SESS_RUNNING, T0 + 300, IDLE));
    CHECK_ERR(
        hk_db_session_set_state(db, sid, HK_DB_SESS_RUNNING, T0 + 301, IDLE),
        HK_ERR_STATE); /* a second claim */
    CHECK_OK(hk_db_session_set_state(db, sid, HK_DB_SESS_DONE, T0 + 302, IDLE));
    CHECK_ERR(
        hk_db_session_set_state(db, sid, HK_DB_SESS_FAILED, T0 + 303, IDLE),
        HK_ERR_STATE);
    CHECK_ERR(hk_db_session_set_state(db, sid, HK_DB_SESS_OPEN, T0 + 303, IDLE),
              HK_ERR_ARG);
    CHECK_OK(hk_db_session_get(db, sid, T0 + 303, IDLE, &s));
    CHECK(s.state == HK_DB_SESS_DONE && s.last_seen == T0 + 302);

    CHECK_OK(
        hk_db_session_create(db, sid2, "bob", HK_DB_OP_KEYGEN, NULL, T0 + 400));
    CHECK_OK(hk_db_session_get(db, sid2, T0 + 400, IDLE, &s));
    CHECK(!s.has_kid && s.op == HK_DB_OP_KEYGEN);
    CHECK_OK(
        hk_db_session_set_state(db, sid2, HK_DB_SESS_FAILED, T0 + 400, IDLE));
    CHECK_OK(
        hk_db_session_create(db, sid3, "carol", HK_DB_OP_REFRESH, NULL, T0));
    CHECK_ERR(
        hk_db_session_set_state(db, sid3, HK_DB_SESS_RUNNING, T0 + IDLE, IDLE),
        HK_ERR_SESSION); /* expired: cannot be claimed */
    CHECK_ERR(hk_db_session_get(db, unknown, T0, IDLE, &s), HK_ERR_SESSION);
    CHECK_ERR(hk_db_session_touch(db, unknown, T0, IDLE), HK_ERR_SESSION);
    CHECK_ERR(hk_db_session_set_state(db, unknown, HK_DB_SESS_FAILED, T0, IDLE),
              HK_ERR_SESSION);
}

static void test_sessions(hk_db *db, unsigned char *sid2)
{
    unsigned char sid[HK_ID_LEN];
    hk_db_session s;
    size_t n = 99;

    CHECK(RAND_bytes(sid, HK_ID_LEN) == 1 && RAND_bytes(sid2, HK_ID_LEN) == 1);
    test_session_basics(db, sid);
    test_session_states(db, sid, sid2);
    /* Sweep at T0 + 650: sid (last seen T0 + 302) and sid3 (T0) go, sid2
     * (T0 + 400) stays. */
    CHECK_OK(hk_db_session_sweep(db, T0 + 650, IDLE, &n));
    CHECK(n == 2);
    CHECK_ERR(hk_db_session_get(db, sid, T0 + 303, IDLE, &s),
              HK_ERR_SESSION); /* deleted, not just expired */
    CHECK_OK(hk_db_session_get(db, sid2, T0 + 650, IDLE, &s));
    CHECK_OK(hk_db_session_sweep(db, T0 + 650, IDLE, NULL));
    CHECK_ERR(hk_db_session_sweep(db, -1, IDLE, &n), HK_ERR_ARG);
    CHECK_ERR(hk_db_session_sweep(db, T0, 0, &n), HK_ERR_ARG);
    CHECK_ERR(hk_db_session_get(db, sid2, T0, HK_DB_IDLE_MAX + 1, &s),
              HK_ERR_ARG);
}

/* --- setup ---------------------------------------------------------------- */

static void same_setup(const hk_rped *a, const hk_rped *b)
{
    unsigned char fa[HK_HASH_LEN], fb[HK_HASH_LEN];

    CHECK_OK(hk_rped_fingerprint(a, fa));
    CHECK_OK(hk_rped_fingerprint(b, fb));
    CHECK(memcmp(fa, fb, HK_HASH_LEN) == 0);
}

static void test_setup_store(hk_db *db, const hk_kek *kek, const hk_kek *kek2)
{
    const hk_rped_secret *rs = hk_test_rped_secret();
    unsigned char *sealed = NULL, *pub = NULL;
    size_t slen = 0, plen = 0;
    hk_rped_secret *back = NULL;
    hk_rped *rp = NULL;

    CHECK_ERR(hk_db_setup_get(db, &sealed, &slen, NULL, NULL),
              HK_ERR_NOT_FOUND);
    CHECK_ERR(hk_load_setup(db, kek, &back), HK_ERR_NOT_FOUND);
    CHECK_OK(hk_store_setup(db, kek, rs, T0));
    CHECK_OK(hk_load_setup(db, kek, &back));
    same_setup(&back->pub, &rs->pub);
    CHECK(BN_cmp(back->lambda, rs->lambda) == 0);
    hk_rped_secret_free(back);
    CHECK_ERR(hk_load_setup(db, kek2, &back), HK_ERR_SEAL);
    CHECK(back == NULL);
    CHECK_OK(hk_db_setup_get(db, &sealed, &slen, &pub, &plen));
    CHECK_OK(hk_setup_decode(pub, plen, &rp));
    same_setup(rp, &rs->pub);
    CHECK_ERR(hk_db_setup_put(db, sealed, slen, pub, plen, T0), HK_ERR_EXISTS);
    hk_rped_free(rp);
    OPENSSL_free(sealed);
    OPENSSL_free(pub);
}

/* --- schema v2: limits, delete, keygen curve, audit, buckets -------------- */

static void test_limits_delete(hk_db *db)
{
    unsigned char k1[HK_ID_LEN], sid[HK_ID_LEN];
    hk_point p1 = rand_point(HK_CURVE_P256);
    hk_db_key k, *list = NULL;
    hk_db_session s;
    size_t n = 0, all = 0;

    CHECK(RAND_bytes(k1, HK_ID_LEN) == 1 && RAND_bytes(sid, HK_ID_LEN) == 1);
    CHECK_OK(hk_db_key_list(db, NULL, &list, &all));
    OPENSSL_free(list);
    CHECK_OK(hk_db_key_create(db, k1, "dave", HK_CURVE_P256, &p1, NULL, T0));
    CHECK_OK(hk_db_key_get(db, k1, &k));
    CHECK(k.max_hour == 0 && k.max_day == 0);
    CHECK_OK(hk_db_key_set_limits(db, k1, 5, 50));
    CHECK_OK(hk_db_key_get(db, k1, &k));
    CHECK(k.max_hour == 5 && k.max_day == 50);
    CHECK_ERR(hk_db_key_set_limits(db, k1, HK_DB_LIMIT_MAX + 1, 1), HK_ERR_ARG);
    CHECK_OK(hk_db_key_list(db, NULL, &list, &n));
    CHECK(n == all + 1);
    OPENSSL_free(list);

    CHECK_OK(
        hk_db_session_create_keygen(db, sid, "dave", k1, HK_CURVE_P256, T0));
    CHECK_OK(hk_db_session_get(db, sid, T0, IDLE, &s));
    CHECK(s.curve == HK_CURVE_P256 && s.op == HK_DB_OP_KEYGEN);

    CHECK_ERR(hk_db_key_delete(db, k1, "erin"), HK_ERR_NOT_FOUND);
    CHECK_OK(hk_db_key_delete(db, k1, "dave"));
    CHECK_ERR(hk_db_key_get(db, k1, &k), HK_ERR_NOT_FOUND);
    CHECK_ERR(hk_db_key_delete(db, k1, NULL), HK_ERR_NOT_FOUND);
    CHECK_ERR(hk_db_key_set_limits(db, k1, 1, 1), HK_ERR_NOT_FOUND);
}

/* Attestations (v6): a keygen session's challenge, answered once
 * (challenged -> verified | refused), gone with its session; an attested
 * key carries its summary. */
static void test_attestations(hk_db *db, const hk_kek *kek, const shares *sh)
{
    hk_share k = *sh->p2[1];
    unsigned char sid[HK_ID_LEN], other[HK_ID_LEN];
    hk_db_attestation a, got;
    hk_db_key key;
    size_t gone = 0;

    CHECK(RAND_bytes(k.kid, HK_ID_LEN) == 1 &&
          RAND_bytes(sid, HK_ID_LEN) == 1 && RAND_bytes(other, HK_ID_LEN) == 1);
    memset(&a, 0, sizeof(a));
    memset(a.cred_hash, 0x5a, sizeof(a.cred_hash));
    memset(a.ak_pub, 0x01, 90);
    a.ak_publen = 90;
    strcpy(a.summary, "00ff CN=EK CA");
    CHECK_ERR(hk_db_attest_put(db, sid, &a), HK_ERR_NOT_FOUND); /* no session */
    CHECK_OK(
        hk_db_session_create_keygen(db, sid, "ivy", k.kid, HK_CURVE_P256, T0));
    CHECK_OK(hk_db_attest_put(db, sid, &a));
    CHECK_ERR(hk_db_attest_put(db, sid, &a), HK_ERR_EXISTS);
    CHECK_OK(hk_db_attest_get(db, sid, &got));
    CHECK(got.state == HK_DB_ATT_CHALLENGED && got.ak_publen == 90 &&
          memcmp(got.ak_pub, a.ak_pub, 90) == 0 &&
          memcmp(got.cred_hash, a.cred_hash, 32) == 0 &&
          strcmp(got.summary, a.summary) == 0);
    CHECK_ERR(hk_db_attest_get(db, other, &got), HK_ERR_NOT_FOUND);
    CHECK_ERR(hk_db_attest_finish(db, other, 1), HK_ERR_NOT_FOUND);
    CHECK_OK(hk_db_attest_finish(db, sid, 1));
    CHECK_ERR(hk_db_attest_finish(db, sid, 0), HK_ERR_STATE);
    CHECK_OK(hk_db_attest_get(db, sid, &got));
    CHECK(got.state == HK_DB_ATT_VERIFIED);
    a.ak_publen = 0;
    CHECK_ERR(hk_db_attest_put(db, other, &a), HK_ERR_ARG);
    CHECK_ERR(hk_store_new_key_att(db, kek, "ivy", &k, NULL, "a\nb", T0),
              HK_ERR_ARG);
    CHECK_OK(hk_store_new_key_att(db, kek, "ivy", &k, NULL, got.summary, T0));
    CHECK_OK(hk_db_key_get_owned(db, k.kid, "ivy", &key));
    CHECK(strcmp(key.attestation, "00ff CN=EK CA") == 0);
    CHECK_OK(hk_db_session_sweep(db, T0 + 2 * IDLE, IDLE, &gone));
    CHECK_ERR(hk_db_attest_get(db, sid, &got), HK_ERR_NOT_FOUND);
    CHECK_OK(hk_db_key_delete(db, k.kid, "ivy"));
}

/* hk_db_session_others counts the other running sessions of the same key
 * and operation (the refresh guard of server/session.c). */
static void test_refresh_guard(hk_db *db)
{
    unsigned char kid[HK_ID_LEN], r1[HK_ID_LEN], r2[HK_ID_LEN];
    unsigned char s1[HK_ID_LEN];
    hk_point p = rand_point(HK_CURVE_P256);
    int64_t n = -1;

    CHECK(RAND_bytes(kid, HK_ID_LEN) == 1 && RAND_bytes(r1, HK_ID_LEN) == 1);
    CHECK(RAND_bytes(r2, HK_ID_LEN) == 1 && RAND_bytes(s1, HK_ID_LEN) == 1);
    CHECK_OK(hk_db_key_create(db, kid, "hank", HK_CURVE_P256, &p, NULL, T0));
    CHECK_OK(hk_db_session_create(db, r1, "hank", HK_DB_OP_REFRESH, kid, T0));
    CHECK_OK(hk_db_session_create(db, r2, "hank", HK_DB_OP_REFRESH, kid, T0));
    CHECK_OK(hk_db_session_create(db, s1, "hank", HK_DB_OP_SIGN, kid, T0));
    CHECK_OK(hk_db_session_set_state(db, r1, HK_DB_SESS_RUNNING, T0, IDLE));
    CHECK_OK(hk_db_session_set_state(db, s1, HK_DB_SESS_RUNNING, T0, IDLE));
    CHECK_OK(hk_db_session_others(db, r1, T0, IDLE, &n));
    CHECK(n == 0); /* r2 is open, s1 signs */
    CHECK_OK(hk_db_session_set_state(db, r2, HK_DB_SESS_RUNNING, T0, IDLE));
    CHECK_OK(hk_db_session_others(db, r1, T0, IDLE, &n));
    CHECK(n == 1);
    CHECK_OK(hk_db_session_others(db, r1, T0 + IDLE, IDLE, &n));
    CHECK(n == 0); /* r2 expired */
    CHECK_OK(hk_db_session_set_state(db, r2, HK_DB_SESS_FAILED, T0 + 1, IDLE));
    CHECK_OK(hk_db_session_others(db, r1, T0 + 1, IDLE, &n));
    CHECK(n == 0);
    CHECK_ERR(hk_db_session_others(db, r1, T0, 0, &n), HK_ERR_ARG);
}

typedef struct {
    int64_t n;
    unsigned char prev[HK_AUDIT_HASH_LEN];
    int broken;
} chain_walk;

static hk_err walk_chain(void *ctx, const hk_audit_rec *r)
{
    chain_walk *w = ctx;
    unsigned char h[HK_AUDIT_HASH_LEN];

    hk_audit_hash(r, h);
    if (r->seq != w->n + 1 || memcmp(r->prev, w->prev, sizeof(h)) != 0 ||
        memcmp(r->hash, h, sizeof(h)) != 0)
        w->broken = 1;
    memcpy(w->prev, r->hash, sizeof(h));
    w->n = r->seq;
    return HK_OK;
}

static void test_audit(hk_db *db)
{
    unsigned char kid[HK_ID_LEN];
    chain_walk w;
    hk_audit_rec r;
    int64_t n = -1;
    int i;

    CHECK(RAND_bytes(kid, HK_ID_LEN) == 1);
    for (i = 0; i < 5; i++) {
        memset(&r, 0, sizeof(r));
        r.time = T0 + i;
        strcpy(r.node, "node-a");
        strcpy(r.subject, "alice");
        r.has_kid = 1;
        memcpy(r.kid, kid, HK_ID_LEN);
        strcpy(r.event, "sign");
        strcpy(r.outcome, i < 3 ? "granted" : "refused");
        r.digest_len = 32;
        memset(r.digest, i, 32);
        CHECK_OK(hk_db_audit_append(db, &r));
        CHECK(r.seq >= 1);
    }
    CHECK_OK(hk_db_audit_count(db, kid, "sign", "granted", T0, &n));
    CHECK(n == 3);
    CHECK_OK(hk_db_audit_count(db, kid, "sign", "granted", T0 + 1, &n));
    CHECK(n == 2);
    CHECK_OK(hk_db_audit_count(db, kid, "sign", "refused", T0, &n));
    CHECK(n == 2);
    memset(&w, 0, sizeof(w));
    CHECK_OK(hk_db_audit_scan(db, 1, walk_chain, &w));
    CHECK(!w.broken && w.n >= 5);
    /* Bounds: bad names and oversize fields are refused. */
    strcpy(r.event, "Sign");
    CHECK_ERR(hk_db_audit_append(db, &r), HK_ERR_ARG);
    strcpy(r.event, "sign");
    r.sig_len = HK_AUDIT_SIG_MAX + 1;
    CHECK_ERR(hk_db_audit_append(db, &r), HK_ERR_ARG);
}

/* The log refuses changes even through a raw connection. */
static void test_append_only(const char *path)
{
    sqlite3 *r = raw_open(path);

    CHECK(sqlite3_exec(r, "UPDATE audit SET outcome = 'ok'", NULL, NULL,
                       NULL) != SQLITE_OK);
    CHECK(sqlite3_exec(r, "DELETE FROM audit WHERE seq = 1", NULL, NULL,
                       NULL) != SQLITE_OK);
    sqlite3_close(r);
}

static void test_buckets(hk_db *db)
{
    double retry = 0;
    int ok = 0, i;

    /* burst 3 at 1 token/s: three pass, the fourth waits about 1 s */
    for (i = 0; i < 3; i++) {
        CHECK_OK(hk_db_bucket_take(db, "frank", 1.0, 3.0, 100.0, &ok, &retry));
        CHECK(ok);
    }
    CHECK_OK(hk_db_bucket_take(db, "frank", 1.0, 3.0, 100.0, &ok, &retry));
    CHECK(!ok && retry > 0.9 && retry <= 1.0);
    CHECK_OK(hk_db_bucket_take(db, "frank", 1.0, 3.0, 101.5, &ok, &retry));
    CHECK(ok);
    CHECK_OK(hk_db_bucket_take(db, "gina", 1.0, 3.0, 100.0, &ok, &retry));
    CHECK(ok); /* buckets are per subject */
    CHECK_ERR(hk_db_bucket_take(db, "frank", 0.0, 3.0, 100.0, &ok, &retry),
              HK_ERR_ARG);
}

/* The back-end-neutral tests, also run against PostgreSQL when
 * HK_TEST_PG_CONNINFO names an empty database (tests/py/test_postgres.py). */
static void test_backend(const char *conninfo, const hk_kek *kek,
                         const hk_kek *kek2, const shares *sh)
{
    unsigned char sid2[HK_ID_LEN];
    char why[256];
    hk_db *db = NULL;
    int v = 0;

    CHECK_OK(hk_db_open_pg(conninfo, &db, why, sizeof(why)));
    CHECK(strcmp(hk_db_backend(db), "postgresql") == 0);
    CHECK_OK(hk_db_schema_version(db, &v));
    CHECK(v == HK_DB_SCHEMA_VERSION);
    test_keys(db);
    test_share_sequence(db, kek, sh);
    test_pending_keys(db, kek, sh);
    test_backups(db, kek, sh);
    test_presigs(db, kek, sh);
    test_groups(db);
    test_stmt_cache(db);
    test_requests(db, kek, sh);
    test_attestations(db, kek, sh);
    test_share_rules(db, kek, sh);
    test_sessions(db, sid2);
    test_setup_store(db, kek, kek2);
    test_limits_delete(db);
    test_refresh_guard(db);
    test_audit(db);
    test_buckets(db);
    hk_db_close(db);
    /* reopening runs no migration and finds the rows */
    CHECK_OK(hk_db_open_pg(conninfo, &db, why, sizeof(why)));
    loads(db, kek, sh->p2[3], 0);
    hk_db_close(db);
    CHECK_ERR(hk_db_open_pg("host=127.0.0.1 port=1 connect_timeout=2", &db, why,
                            sizeof(why)),
              HK_ERR_IO);
    CHECK(strstr(why, "postgresql") != NULL);
}

/* --- persistence and the main program ------------------------------------- */

static void test_reopen(const char *path, const hk_kek *kek, const shares *sh,
                        const unsigned char *sid2)
{
    hk_rped_secret *back = NULL;
    hk_db_key *list = NULL;
    hk_db_session s;
    hk_db *db = NULL;
    size_t n = 0;

    CHECK_OK(hk_db_open_sqlite(path, &db, NULL, 0));
    CHECK_OK(hk_db_key_list(db, "alice", &list, &n));
    CHECK(n == 4); /* two in test_keys, the shared key, one in the rules */
    OPENSSL_free(list);
    loads(db, kek, sh->p2[3], 0);
    CHECK_OK(hk_db_session_get(db, sid2, T0 + 650, IDLE, &s));
    CHECK(s.state == HK_DB_SESS_FAILED && strcmp(s.owner, "bob") == 0);
    CHECK_OK(hk_load_setup(db, kek, &back));
    same_setup(&back->pub, &hk_test_rped_secret()->pub);
    hk_rped_secret_free(back);
    hk_db_close(db);
}

static int rm_entry(const char *p, const struct stat *st, int flag,
                    struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(p);
}

int main(void)
{
    hk_kek *kek = NULL, *kek2 = NULL;
    unsigned char sid2[HK_ID_LEN];
    const char *pg = getenv("HK_TEST_PG_CONNINFO");
    char path[256];
    hk_db *db = NULL;
    shares sh;

    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof(path), "%s", in_dir("halfkey.db"));
    make_shares(&sh);
    test_kek_files(&kek, &kek2);
    if (pg != NULL && *pg != '\0') {
        test_backend(pg, kek, kek2, &sh);
        printf("test_serverdb (postgresql): ok\n");
        goto done;
    }
    test_seal(kek, kek2);
    test_share_aad();
    test_schema(path);
    test_schema_refusals();
    CHECK_OK(hk_db_open_sqlite(path, &db, NULL, 0));
    test_keys(db);
    test_corrupt_keys(db, path);
    test_share_sequence(db, kek, &sh);
    test_pending_keys(db, kek, &sh);
    test_backups(db, kek, &sh);
    test_presigs(db, kek, &sh);
    test_groups(db);
    test_deferred();
    {
        hk_db *mem = NULL;

        CHECK_OK(hk_db_open_sqlite(":memory:", &mem, NULL, 0));
        test_stmt_cache(mem);
        hk_db_close(mem);
    }
    test_requests(db, kek, &sh);
    test_attestations(db, kek, &sh);
    test_share_rules(db, kek, &sh);
    test_share_binding(db, kek, kek2, path, &sh);
    test_atomicity(db, kek, path, &sh);
    test_sessions(db, sid2);
    test_setup_store(db, kek, kek2);
    test_limits_delete(db);
    test_refresh_guard(db);
    test_audit(db);
    test_append_only(path);
    test_buckets(db);
    hk_db_close(db);
    test_reopen(path, kek, &sh, sid2);
    printf("test_serverdb: ok\n");
done:
    free_shares(&sh);
    hk_kek_free(kek);
    hk_kek_free(kek2);
    CHECK(nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS) == 0);
    return 0;
}
