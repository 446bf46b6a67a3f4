/* Presignatures (mpc/presign.h): a batch made ahead, each presignature
 * signing once in one round trip, every signature verified by OpenSSL's
 * EVP and (secp256k1) libsecp256k1; the nonce depends on the digest
 * (Groth-Shoup re-randomisation); records round-trip and are parsed
 * strictly; a presignature of another epoch or key, a tampered opening,
 * a batch above the server's bound and a P2 answering with another nonce
 * (abort) are refused. */
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "tests/unit/check.h"
#include "tests/unit/driver.h"
#include "tests/unit/verify.h"

#define N 4

static void random_digest(unsigned char dig[32])
{
    CHECK(RAND_bytes(dig, 32) == 1);
}

static void check_sig(const hk_share *s1, const unsigned char dig[32],
                      const unsigned char sig[HK_SIG_LEN])
{
    unsigned char other[32];

    CHECK(hk_test_verify_evp(s1->curve, &s1->Q, dig, 32, sig));
    if (s1->curve == HK_CURVE_SECP256K1)
        CHECK(hk_test_verify_k1(&s1->Q, dig, sig));
    memcpy(other, dig, 32);
    other[0] ^= 1; /* the check can fail */
    CHECK(!hk_test_verify_evp(s1->curve, &s1->Q, other, 32, sig));
}

/* The batch: same ids and points on both sides, distinct ids and
 * nonces; each presignature signs. */
static void batch_signs(const hk_share *s1, const hk_share *s2)
{
    hk_presig p1[N], p2[N];
    unsigned char dig[32], sig[HK_SIG_LEN], r0[32];
    hk_drive_stats st;
    size_t i;

    CHECK_OK(hk_drive_presign(s1, s2, N, p1, p2, &st));
    for (i = 0; i < N; i++) {
        CHECK(memcmp(p1[i].id, p2[i].id, HK_ID_LEN) == 0);
        CHECK(hk_point_eq(&p1[i].R1, &p2[i].R1));
        CHECK(hk_point_eq(&p1[i].R2, &p2[i].R2));
        CHECK(p1[i].epoch == s1->epoch && p2[i].epoch == s2->epoch);
        CHECK(!hk_scalar_eq(&p1[i].k, &p2[i].k));
        if (i > 0) {
            CHECK(memcmp(p1[i].id, p1[i - 1].id, HK_ID_LEN) != 0);
            CHECK(!hk_point_eq(&p1[i].R1, &p1[i - 1].R1));
        }
        random_digest(dig);
        CHECK_OK(
            hk_drive_sign_presigned(s1, s2, &p1[i], &p2[i], dig, 32, sig, &st));
        check_sig(s1, dig, sig);
    }
    /* Re-randomised: one presignature (reused here only to show it)
     * gives another r for another digest. */
    random_digest(dig);
    CHECK_OK(
        hk_drive_sign_presigned(s1, s2, &p1[0], &p2[0], dig, 32, sig, &st));
    memcpy(r0, sig, 32);
    dig[5] ^= 0x40;
    CHECK_OK(
        hk_drive_sign_presigned(s1, s2, &p1[0], &p2[0], dig, 32, sig, &st));
    CHECK(memcmp(r0, sig, 32) != 0);
    OPENSSL_cleanse(p1, sizeof(p1));
    OPENSSL_cleanse(p2, sizeof(p2));
}

static void record_codec(const hk_share *s1, const hk_share *s2)
{
    unsigned char rec[HK_PRESIG_REC_LEN], bad[HK_PRESIG_REC_LEN];
    hk_presig p1[1], p2[1], back;
    hk_drive_stats st;

    CHECK_OK(hk_drive_presign(s1, s2, 1, p1, p2, &st));
    CHECK_OK(hk_presig_encode(&p2[0], rec));
    CHECK_OK(hk_presig_decode(rec, sizeof(rec), &back));
    CHECK(memcmp(back.id, p2[0].id, HK_ID_LEN) == 0 &&
          back.epoch == p2[0].epoch && hk_scalar_eq(&back.k, &p2[0].k) &&
          hk_point_eq(&back.R1, &p2[0].R1) && back.curve == p2[0].curve);
    CHECK_ERR(hk_presig_decode(rec, sizeof(rec) - 1, &back), HK_ERR_DECODE);
    memcpy(bad, rec, sizeof(bad));
    bad[0] = 2; /* version */
    CHECK_ERR(hk_presig_decode(bad, sizeof(bad), &back), HK_ERR_DECODE);
    memcpy(bad, rec, sizeof(bad));
    bad[1] = 7; /* curve */
    CHECK_ERR(hk_presig_decode(bad, sizeof(bad), &back), HK_ERR_DECODE);
    memcpy(bad, rec, sizeof(bad));
    memset(bad + 2, 0, 4); /* epoch 0 */
    CHECK_ERR(hk_presig_decode(bad, sizeof(bad), &back), HK_ERR_DECODE);
    memcpy(bad, rec, sizeof(bad));
    memset(bad + 6 + 2 * HK_ID_LEN, 0, HK_SCALAR_LEN); /* k = 0 */
    CHECK_ERR(hk_presig_decode(bad, sizeof(bad), &back), HK_ERR_DECODE);
    memcpy(bad, rec, sizeof(bad));
    bad[6 + 2 * HK_ID_LEN + HK_SCALAR_LEN] = 5; /* R1 prefix */
    CHECK_ERR(hk_presig_decode(bad, sizeof(bad), &back), HK_ERR_DECODE);
    /* bound to its key and epoch */
    back = p2[0];
    back.epoch++;
    {
        hk_sign *sg = NULL;

        CHECK_ERR(hk_sign_p2_presigned(s2, &back, &sg), HK_ERR_EPOCH);
        back = p2[0];
        back.kid[0] ^= 1;
        CHECK_ERR(hk_sign_p2_presigned(s2, &back, &sg), HK_ERR_BINDING);
    }
    OPENSSL_cleanse(&back, sizeof(back));
    OPENSSL_cleanse(p1, sizeof(p1));
    OPENSSL_cleanse(p2, sizeof(p2));
}

/* pre.3 with one nonce changed fails P2's commitment check; a batch
 * above P2's bound is refused at pre.1. */
static void tampered_generation(const hk_share *s1, const hk_share *s2)
{
    unsigned char sid[HK_ID_LEN], kid[HK_ID_LEN], *m1 = NULL, *m2 = NULL,
                                                  *m3 = NULL, *x = NULL;
    size_t l1, l2, l3, lx;
    hk_psgen *a = NULL, *b = NULL;
    json_t *j;
    char *txt, *nonce;

    hk_drive_ids(sid, kid);
    CHECK_OK(hk_psgen_p1_new(s1, sid, 3, &a));
    CHECK_OK(hk_psgen_p2_new(s2, sid, 2, &b));
    CHECK_OK(hk_psgen_start(a, &m1, &l1));
    CHECK_ERR(hk_psgen_recv(b, m1, l1, &x, &lx), HK_ERR_FORBIDDEN);
    hk_psgen_free(b);
    CHECK_OK(hk_psgen_p2_new(s2, sid, HK_PRESIG_BATCH_MAX, &b));
    CHECK_OK(hk_psgen_recv(b, m1, l1, &m2, &l2));
    CHECK_OK(hk_psgen_recv(a, m2, l2, &m3, &l3));
    j = json_loadb((const char *)m3, l3, 0, NULL);
    CHECK(j != NULL);
    nonce = strdup(json_string_value(json_object_get(j, "nonce")));
    nonce[10] = nonce[10] == '0' ? '1' : '0';
    json_object_set_new(j, "nonce", json_string(nonce));
    txt = json_dumps(j, JSON_COMPACT);
    CHECK_ERR(hk_psgen_recv(b, (unsigned char *)txt, strlen(txt), &x, &lx),
              HK_ERR_COMMIT);
    CHECK(!hk_psgen_done(b));
    /* the untouched opening still completes the batch */
    CHECK_OK(hk_psgen_recv(b, m3, l3, &x, &lx));
    CHECK(hk_psgen_done(b) && hk_psgen_count(b) == 3);
    free(txt);
    free(nonce);
    json_decref(j);
    OPENSSL_free(m1);
    OPENSSL_free(m2);
    OPENSSL_free(m3);
    hk_psgen_free(a);
    hk_psgen_free(b);
}

/* P2 answering with a nonce share other than the one it proved: the
 * signature does not verify and P1 reports the abort. */
static void wrong_nonce_aborts(const hk_share *s1, const hk_share *s2)
{
    hk_presig p1[2], p2[2];
    unsigned char dig[32], sig[HK_SIG_LEN];
    hk_drive_stats st;

    CHECK_OK(hk_drive_presign(s1, s2, 2, p1, p2, &st));
    p2[0].k = p2[1].k;
    random_digest(dig);
    CHECK_ERR(
        hk_drive_sign_presigned(s1, s2, &p1[0], &p2[0], dig, 32, sig, &st),
        HK_ERR_SIG_ABORT);
    OPENSSL_cleanse(p1, sizeof(p1));
    OPENSSL_cleanse(p2, sizeof(p2));
}

static void run(hk_curve_id curve)
{
    hk_share *s1, *s2;
    hk_drive_stats st;

    printf("curve %s\n", hk_curve_name(curve));
    CHECK_OK(
        hk_drive_keygen(curve, 2048, hk_test_rped_secret(), &s1, &s2, &st));
    batch_signs(s1, s2);
    record_codec(s1, s2);
    tampered_generation(s1, s2);
    wrong_nonce_aborts(s1, s2);
    hk_share_free(s1);
    hk_share_free(s2);
}

int main(void)
{
    run(HK_CURVE_SECP256K1);
    run(HK_CURVE_P256);
    printf("test_presign: ok\n");
    return 0;
}
