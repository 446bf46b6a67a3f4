/* KEK rings and re-sealing: KEK ids (checked against an independent
 * SHA-256), sealing under the primary and opening with previous KEKs, an
 * unknown or altered KEK id, duplicate KEKs, the storage primitives of
 * `halfkeyd reseal` (keyset listing, compare-and-swap of share and setup
 * blobs) and the walk itself, interrupted by a limit and finished by a
 * second run. Works in a fresh directory under /tmp, removed at the end. */
#include <ftw.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "mpc/setup.h"
#include "server/store/db.h"
#include "server/seal/reseal.h"
#include "server/seal/seal.h"
#include "tests/unit/check.h"
#include "tests/unit/driver.h"
#include "tests/unit/verify.h"

#define T0 1700000000

static char dir[] = "/tmp/hk-reseal-XXXXXX";

static const char *in_dir(const char *name)
{
    static char buf[4][256];
    static int next;
    char *p = buf[next++ % 4];

    snprintf(p, sizeof(buf[0]), "%s/%s", dir, name);
    return p;
}

static hk_kek *load(const char *name)
{
    hk_kek *k = NULL;

    CHECK_OK(hk_kek_load_file(in_dir(name), &k, NULL, 0));
    return k;
}

/* A ring: `primary` first, then `previous` (NULL: none). */
static hk_kek *ring(const char *primary, const char *previous)
{
    hk_kek *r = load(primary);

    if (previous != NULL)
        CHECK_OK(hk_kek_add_previous(r, load(previous)));
    return r;
}

/* The id the README defines for a key file, computed here. */
static void file_id(const char *name, unsigned char id[HK_KEK_ID_LEN])
{
    static const char label[] = "halfkey kek id v1";
    unsigned char key[HK_KEK_LEN], md[32];
    FILE *f = fopen(in_dir(name), "rb");
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();

    CHECK(f != NULL && ctx != NULL);
    CHECK(fread(key, 1, sizeof(key), f) == sizeof(key));
    fclose(f);
    CHECK(EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1);
    CHECK(EVP_DigestUpdate(ctx, label, sizeof(label) - 1) == 1);
    CHECK(EVP_DigestUpdate(ctx, key, sizeof(key)) == 1);
    CHECK(EVP_DigestFinal_ex(ctx, md, NULL) == 1);
    EVP_MD_CTX_free(ctx);
    memcpy(id, md, HK_KEK_ID_LEN);
}

static void opens(const hk_kek *kek, const unsigned char *blob, size_t len,
                  hk_err want)
{
    static const unsigned char aad[] = "aad";
    unsigned char *pt = NULL;
    size_t ptlen = 0;

    CHECK_ERR(hk_unseal(kek, aad, sizeof(aad), blob, len, &pt, &ptlen), want);
    if (want == HK_OK)
        CHECK(ptlen == 5 && memcmp(pt, "share", 5) == 0);
    OPENSSL_clear_free(pt, ptlen);
}

static void test_ring(void)
{
    static const unsigned char aad[] = "aad";
    unsigned char ida[HK_KEK_ID_LEN], idb[HK_KEK_ID_LEN], id[HK_KEK_ID_LEN];
    unsigned char *sa = NULL, *sb = NULL, *bad;
    size_t la = 0, lb = 0;
    hk_kek *a = load("a"), *b = load("b"), *r = ring("b", "a"), *dup;
    char hex[17];

    file_id("a", ida);
    file_id("b", idb);
    hk_kek_id(a, id);
    CHECK(memcmp(id, ida, HK_KEK_ID_LEN) == 0);
    hk_kek_id(r, id);
    CHECK(memcmp(id, idb, HK_KEK_ID_LEN) == 0);
    hk_kek_id_hex(ida, hex);
    CHECK(strlen(hex) == 16);
    CHECK(hk_kek_find(r, idb) == 1 && hk_kek_find(r, ida) == 2);
    CHECK(hk_kek_find(a, idb) == 0);
    CHECK_OK(hk_kek_health(r, NULL, 0));
    CHECK(strcmp(hk_kek_name(r), "file") == 0);

    /* a seals with its id; the ring opens it with its previous KEK and
     * seals with its primary. */
    CHECK_OK(hk_seal(a, aad, sizeof(aad), (const unsigned char *)"share", 5,
                     &sa, &la));
    CHECK_OK(hk_sealed_kek_id(sa, la, id));
    CHECK(sa[0] == 2 && memcmp(id, ida, HK_KEK_ID_LEN) == 0);
    opens(r, sa, la, HK_OK);
    CHECK_OK(hk_seal(r, aad, sizeof(aad), (const unsigned char *)"share", 5,
                     &sb, &lb));
    CHECK_OK(hk_sealed_kek_id(sb, lb, id));
    CHECK(memcmp(id, idb, HK_KEK_ID_LEN) == 0);
    opens(b, sb, lb, HK_OK);
    opens(a, sb, lb, HK_ERR_SEAL); /* unknown id */

    /* The id is authenticated: flipped, or swapped for the id of another
     * KEK of the ring, the blob does not open. */
    CHECK((bad = OPENSSL_memdup(sa, la)) != NULL);
    bad[1] ^= 0x80;
    opens(r, bad, la, HK_ERR_SEAL);
    memcpy(bad + 1, idb, HK_KEK_ID_LEN);
    opens(r, bad, la, HK_ERR_SEAL);
    bad[0] = 1; /* version 1 is not read */
    memcpy(bad + 1, ida, HK_KEK_ID_LEN);
    opens(r, bad, la, HK_ERR_SEAL);
    CHECK_ERR(hk_sealed_kek_id(bad, la, id), HK_ERR_SEAL);
    CHECK_ERR(hk_sealed_kek_id(sa, HK_SEAL_OVERHEAD, id), HK_ERR_SEAL);
    OPENSSL_free(bad);

    /* The same key twice in one ring is refused (and freed). */
    dup = load("a");
    CHECK_ERR(hk_kek_add_previous(r, dup), HK_ERR_EXISTS);
    CHECK_ERR(hk_kek_add_previous(r, load("b")), HK_ERR_EXISTS);
    CHECK_ERR(hk_kek_add_previous(r, r), HK_ERR_ARG);
    opens(r, sa, la, HK_OK);
    OPENSSL_free(sa);
    OPENSSL_free(sb);
    hk_kek_free(a);
    hk_kek_free(b);
    hk_kek_free(r);
}

/* --- storage primitives and the walk -------------------------------------- */

typedef struct {
    hk_share *p1[3], *p2[3]; /* keys 0, 1 at epoch 1; [2]: key 1 epoch 2 */
} fixture;

static void make_fixture(fixture *fx)
{
    const hk_rped_secret *rs = hk_test_rped_secret();
    hk_drive_stats st;
    int i;

    for (i = 0; i < 2; i++)
        CHECK_OK(hk_drive_keygen(HK_CURVE_P256, 2048, rs, &fx->p1[i],
                                 &fx->p2[i], &st));
    CHECK_OK(hk_drive_refresh(fx->p1[1], fx->p2[1], 2048, rs, &fx->p1[2],
                              &fx->p2[2], &st));
}

static void free_fixture(fixture *fx)
{
    int i;

    for (i = 0; i < 3; i++) {
        hk_share_free(fx->p1[i]);
        hk_share_free(fx->p2[i]);
    }
}

/* The blob of (kid, epoch) names KEK `file`. */
static void under(hk_db *db, const hk_share *s, const char *file)
{
    unsigned char *blob = NULL, id[HK_KEK_ID_LEN], want[HK_KEK_ID_LEN];
    size_t len = 0;

    CHECK_OK(hk_db_share_get(db, s->kid, s->epoch, &blob, &len, NULL));
    CHECK_OK(hk_sealed_kek_id(blob, len, id));
    file_id(file, want);
    CHECK(memcmp(id, want, HK_KEK_ID_LEN) == 0);
    OPENSSL_free(blob);
}

static void test_list(hk_db *db, const fixture *fx)
{
    hk_db_share_ref refs[4];
    size_t n = 0, total = 0;
    int firstpage = 1;
    unsigned char after[HK_ID_LEN];
    unsigned long ep = 0;

    CHECK_ERR(hk_db_share_list_all(db, NULL, 0, refs, 0, &n), HK_ERR_ARG);
    CHECK_OK(hk_db_share_list_all(db, NULL, 0, refs, 4, &n));
    CHECK(n == 3);
    CHECK(memcmp(refs[0].kid, refs[1].kid, HK_ID_LEN) <= 0);
    CHECK(strcmp(refs[0].owner, "alice") == 0);
    /* Pages of one row give the same rows in the same order. */
    do {
        hk_db_share_ref one;

        CHECK_OK(hk_db_share_list_all(db, firstpage ? NULL : after, ep, &one, 1,
                                      &n));
        firstpage = 0;
        if (n == 1) {
            CHECK(memcmp(one.kid, refs[total].kid, HK_ID_LEN) == 0 &&
                  one.epoch == refs[total].epoch &&
                  one.state == refs[total].state);
            memcpy(after, one.kid, HK_ID_LEN);
            ep = one.epoch;
            total++;
        }
    } while (n == 1);
    CHECK(total == 3);
    (void)fx;
}

static void test_cas(hk_db *db, const fixture *fx)
{
    const hk_share *s = fx->p2[0];
    unsigned char *blob = NULL, *other = NULL;
    size_t len = 0, olen = 0;

    CHECK_OK(hk_db_share_get(db, s->kid, s->epoch, &blob, &len, NULL));
    CHECK_OK(hk_db_share_get(db, fx->p2[1]->kid, 1, &other, &olen, NULL));
    /* Not the stored blob: refused, nothing changes. */
    CHECK_ERR(hk_db_share_replace_sealed(db, s->kid, s->epoch, other, olen,
                                         other, olen),
              HK_ERR_STATE);
    CHECK_ERR(hk_db_share_replace_sealed(db, s->kid, 9, blob, len, other, olen),
              HK_ERR_NOT_FOUND);
    CHECK_ERR(
        hk_db_share_replace_sealed(db, s->kid, s->epoch, blob, 3, blob, len),
        HK_ERR_ARG);
    /* The stored blob: replaced by itself, which succeeds. */
    CHECK_OK(
        hk_db_share_replace_sealed(db, s->kid, s->epoch, blob, len, blob, len));
    CHECK_ERR(hk_db_setup_replace_sealed(db, other, olen, other, olen),
              HK_ERR_STATE);
    OPENSSL_free(blob);
    OPENSSL_free(other);
}

static void census_is(hk_db *db, const char *file, size_t count)
{
    unsigned char id[HK_KEK_ID_LEN];
    hk_reseal_census c;
    size_t i, got = 0;

    CHECK_OK(hk_reseal_count(db, &c));
    CHECK(c.total == 4 && c.other == 0);
    file_id(file, id);
    for (i = 0; i < c.nids; i++)
        if (memcmp(c.ids[i].id, id, HK_KEK_ID_LEN) == 0)
            got = c.ids[i].count;
    CHECK(got == count);
}

static void test_walk(hk_db *db, const fixture *fx)
{
    hk_kek *a = ring("a", NULL), *b = ring("b", NULL), *ba = ring("b", "a");
    hk_rped_secret *back = NULL;
    hk_reseal_counts n;
    hk_share *s = NULL;

    census_is(db, "a", 4);
    /* b alone cannot re-seal a's blobs: each fails, nothing changes. */
    CHECK_OK(hk_reseal_all(db, b, 0, &n));
    CHECK(n.failed == 4 && n.resealed == 0);
    census_is(db, "a", 4);
    /* Interrupted after two blobs, then finished by a second run. */
    CHECK_OK(hk_reseal_all(db, ba, 2, &n));
    CHECK(n.resealed == 2 && n.stopped && n.failed == 0);
    census_is(db, "b", 2);
    CHECK_OK(hk_reseal_all(db, ba, 0, &n));
    CHECK(n.resealed == 2 && n.already == 2 && !n.stopped && n.failed == 0 &&
          n.races == 0);
    census_is(db, "b", 4);
    under(db, fx->p2[2], "b");
    /* Everything opens under b alone now, nothing under a alone. */
    CHECK_OK(hk_load_share(db, b, "alice", fx->p2[2]->kid, 2, &s, NULL));
    hk_share_free(s);
    CHECK_OK(hk_load_share(db, b, "alice", fx->p2[0]->kid, 1, &s, NULL));
    hk_share_free(s);
    CHECK_ERR(hk_load_share(db, a, "alice", fx->p2[0]->kid, 1, &s, NULL),
              HK_ERR_SEAL);
    CHECK_OK(hk_load_setup(db, b, &back));
    hk_rped_secret_free(back);
    CHECK_OK(hk_reseal_all(db, ba, 0, &n));
    CHECK(n.already == 4 && n.resealed == 0);
    hk_kek_free(a);
    hk_kek_free(b);
    hk_kek_free(ba);
}

static void test_store(void)
{
    hk_kek *a = ring("a", NULL);
    hk_db *db = NULL;
    fixture fx;

    make_fixture(&fx);
    CHECK_OK(hk_db_open_sqlite(in_dir("db"), &db, NULL, 0));
    CHECK_OK(hk_store_setup(db, a, hk_test_rped_secret(), T0));
    CHECK_OK(hk_store_new_key(db, a, "alice", fx.p2[0], NULL, T0));
    CHECK_OK(hk_store_new_key(db, a, "alice", fx.p2[1], NULL, T0));
    CHECK_OK(hk_store_share(db, a, "alice", fx.p2[2], 1)); /* pending */
    under(db, fx.p2[2], "a");
    test_list(db, &fx);
    test_cas(db, &fx);
    test_walk(db, &fx);
    hk_db_close(db);
    hk_kek_free(a);
    free_fixture(&fx);
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
    CHECK(mkdtemp(dir) != NULL);
    CHECK_OK(hk_kek_generate_file(in_dir("a"), NULL, 0));
    CHECK_OK(hk_kek_generate_file(in_dir("b"), NULL, 0));
    test_ring();
    test_store();
    CHECK(nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS) == 0);
    printf("test_reseal: ok\n");
    return 0;
}
