/* Honest runs: keygen -> sign -> refresh -> sign on both curves and both
 * Paillier sizes, every signature verified by OpenSSL's EVP and, for
 * secp256k1, by libsecp256k1; share records round-trip; refresh keeps Q and
 * old shares mixed with new ones do not sign. */
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "tests/unit/check.h"
#include "tests/unit/driver.h"
#include "tests/unit/verify.h"

static void sign_and_verify(const hk_share *s1, const hk_share *s2,
                            const char *md_name)
{
    unsigned char dig[64], sig[HK_SIG_LEN], msg[100];
    unsigned int dlen = 0;
    hk_drive_stats st;

    CHECK(RAND_bytes(msg, sizeof(msg)) == 1);
    CHECK(EVP_Digest(msg, sizeof(msg), dig, &dlen,
                     EVP_get_digestbyname(md_name), NULL) == 1);
    CHECK_OK(hk_drive_sign(s1, s2, dig, dlen, 0, sig, &st));
    CHECK(hk_test_verify_evp(s1->curve, &s1->Q, dig, dlen, sig));
    if (s1->curve == HK_CURVE_SECP256K1 && dlen == 32)
        CHECK(hk_test_verify_k1(&s1->Q, dig, sig));
    /* A different digest must not verify: the test can fail. */
    dig[0] ^= 1;
    CHECK(!hk_test_verify_evp(s1->curve, &s1->Q, dig, dlen, sig));
}

/* encode -> decode must give a share that still signs. */
static hk_share *roundtrip(const hk_share *s)
{
    unsigned char *buf = NULL;
    size_t len = 0;
    hk_share *out = NULL;

    CHECK_OK(hk_share_encode(s, &buf, &len));
    CHECK_OK(hk_share_decode(buf, len, &out));
    CHECK(out->role == s->role && out->epoch == s->epoch);
    CHECK(hk_point_eq(&out->Q, &s->Q));
    OPENSSL_clear_free(buf, len);
    return out;
}

/* Mixing: a P2 share whose x is the refreshed x2' but which otherwise is
 * the old share (same fingerprint) produces no valid signature: P1 reports
 * the invalid-signature abort. */
static void check_mixed(const hk_share *old1, const hk_share *old2,
                        const hk_share *new2)
{
    unsigned char dig[32] = {1, 2, 3}, sig[HK_SIG_LEN];
    hk_drive_stats st;
    hk_share *mixed = roundtrip(old2);

    mixed->x = new2->x;
    CHECK_ERR(hk_drive_sign(old1, mixed, dig, sizeof(dig), 0, sig, &st),
              HK_ERR_SIG_ABORT);
    hk_share_free(mixed);
}

static void run(hk_curve_id curve, int pbits)
{
    hk_share *s1, *s2, *n1, *n2, *d1, *d2;
    hk_drive_stats st;
    unsigned char dig[32] = {9}, sig[HK_SIG_LEN];

    printf("curve %s, Paillier %d\n", hk_curve_name(curve), pbits);
    CHECK_OK(
        hk_drive_keygen(curve, pbits, hk_test_rped_secret(), &s1, &s2, &st));
    CHECK(hk_point_eq(&s1->Q, &s2->Q));
    CHECK(s1->epoch == 1 && s2->epoch == 1);
    sign_and_verify(s1, s2, "SHA256");
    if (curve == HK_CURVE_P256) {
        sign_and_verify(s1, s2, "SHA1");
        sign_and_verify(s1, s2, "SHA384");
        sign_and_verify(s1, s2, "SHA512");
    }
    d1 = roundtrip(s1);
    d2 = roundtrip(s2);
    sign_and_verify(d1, d2, "SHA256");

    CHECK_OK(
        hk_drive_refresh(s1, s2, pbits, hk_test_rped_secret(), &n1, &n2, &st));
    CHECK(hk_point_eq(&n1->Q, &s1->Q) && hk_point_eq(&n2->Q, &s1->Q));
    CHECK(n1->epoch == 2 && n2->epoch == 2);
    CHECK(!hk_scalar_eq(&n1->x, &s1->x) && !hk_scalar_eq(&n2->x, &s2->x));
    sign_and_verify(n1, n2, "SHA256");
    /* Old and new shares are told apart by epoch/fingerprint ... */
    CHECK_ERR(hk_drive_sign(s1, n2, dig, sizeof(dig), 0, sig, &st),
              HK_ERR_EPOCH);
    CHECK_ERR(hk_drive_sign(n1, s2, dig, sizeof(dig), 0, sig, &st),
              HK_ERR_EPOCH);
    /* ... and even forced together they cannot sign. */
    check_mixed(s1, s2, n2);
    /* A second refresh from the refreshed shares. */
    hk_share_free(d1);
    hk_share_free(d2);
    CHECK_OK(
        hk_drive_refresh(n1, n2, pbits, hk_test_rped_secret(), &d1, &d2, &st));
    CHECK(d1->epoch == 3 && hk_point_eq(&d1->Q, &s1->Q));
    sign_and_verify(d1, d2, "SHA256");
    /* precomputed P2 randomness gives the same kind of signature */
    CHECK_OK(hk_drive_sign(d1, d2, dig, sizeof(dig), 1, sig, &st));
    CHECK(hk_test_verify_evp(curve, &d1->Q, dig, sizeof(dig), sig));
    hk_share_free(s1);
    hk_share_free(s2);
    hk_share_free(n1);
    hk_share_free(n2);
    hk_share_free(d1);
    hk_share_free(d2);
}

int main(void)
{
    run(HK_CURVE_SECP256K1, 2048);
    run(HK_CURVE_P256, 2048);
    run(HK_CURVE_SECP256K1, 3072);
    run(HK_CURVE_P256, 3072);
    printf("test_protocol: ok\n");
    return 0;
}
