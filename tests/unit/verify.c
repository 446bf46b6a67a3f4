/* Independent verifiers for the tests. */
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <secp256k1.h>

#include "tests/unit/check.h"
#include "tests/unit/verify.h"
#include "mpc/zk.h"

static EVP_PKEY *hk_test_pkey(hk_curve_id curve, const hk_point *Q)
{
    const char *group =
        curve == HK_CURVE_SECP256K1 ? "secp256k1" : "prime256v1";
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    EVP_PKEY *pkey = NULL;
    OSSL_PARAM params[3];

    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME,
                                                 (char *)group, 0);
    params[1] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY,
                                                  (void *)Q->b, HK_POINT_LEN);
    params[2] = OSSL_PARAM_construct_end();
    CHECK(ctx != NULL);
    CHECK(EVP_PKEY_fromdata_init(ctx) == 1);
    CHECK(EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) == 1);
    EVP_PKEY_CTX_free(ctx);
    return pkey;
}

int hk_test_verify_evp(hk_curve_id curve, const hk_point *Q,
                       const unsigned char *dig, size_t dlen,
                       const unsigned char sig[HK_SIG_LEN])
{
    EVP_PKEY *pkey = hk_test_pkey(curve, Q);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(pkey, NULL);
    ECDSA_SIG *es = ECDSA_SIG_new();
    unsigned char *der = NULL;
    int derlen, ok;

    CHECK(ctx != NULL && es != NULL);
    CHECK(ECDSA_SIG_set0(es, BN_bin2bn(sig, 32, NULL),
                         BN_bin2bn(sig + 32, 32, NULL)) == 1);
    derlen = i2d_ECDSA_SIG(es, &der);
    CHECK(derlen > 0);
    CHECK(EVP_PKEY_verify_init(ctx) == 1);
    ok = EVP_PKEY_verify(ctx, der, (size_t)derlen, dig, dlen) == 1;
    OPENSSL_free(der);
    ECDSA_SIG_free(es);
    EVP_PKEY_CTX_free(ctx);
    EVP_PKEY_free(pkey);
    return ok;
}

int hk_test_verify_k1(const hk_point *Q, const unsigned char dig[32],
                      const unsigned char sig[HK_SIG_LEN])
{
    secp256k1_context *ctx = secp256k1_context_create(SECP256K1_CONTEXT_NONE);
    secp256k1_pubkey pk;
    secp256k1_ecdsa_signature s;
    int ok;

    CHECK(ctx != NULL);
    CHECK(secp256k1_ec_pubkey_parse(ctx, &pk, Q->b, HK_POINT_LEN) == 1);
    CHECK(secp256k1_ecdsa_signature_parse_compact(ctx, &s, sig) == 1);
    ok = secp256k1_ecdsa_verify(ctx, &s, dig, &pk) == 1;
    secp256k1_context_destroy(ctx);
    return ok;
}

static hk_rped_secret *hk_test_sec;

const hk_rped_secret *hk_test_rped_secret(void)
{
    hk_prm_proof pf;

    if (hk_test_sec == NULL) {
        CHECK_OK(hk_rped_generate(&hk_test_sec));
        CHECK_OK(hk_prm_prove(hk_test_sec, &pf));
        CHECK_OK(hk_prm_verify(&hk_test_sec->pub, &pf));
        hk_prm_proof_free(&pf);
    }
    return hk_test_sec;
}

const hk_rped *hk_test_rped(void) { return &hk_test_rped_secret()->pub; }
