/* Signature forms for transactions (txparse/sig.h). */
#include <string.h>

#include <secp256k1.h>
#include <secp256k1_recovery.h>

#include "txparse/sig.h"

/* The recovery id (0 or 1) under which low_rs recovers pub; HK_ERR_PROOF
 * if neither does (ids 2 and 3, r >= n - p, are never produced by a
 * signer that checks r < n: negligible, refused). */
static hk_err hk_tx_recid(const unsigned char pub[33],
                          const unsigned char digest[32],
                          const unsigned char low_rs[64], int *y_parity)
{
    const secp256k1_context *ctx = secp256k1_context_static;
    secp256k1_ecdsa_recoverable_signature rsig;
    secp256k1_pubkey got;
    unsigned char ser[33];
    size_t n;
    int id;

    for (id = 0; id < 2; id++) {
        n = sizeof(ser);
        if (secp256k1_ecdsa_recoverable_signature_parse_compact(ctx, &rsig,
                                                                low_rs, id) &&
            secp256k1_ecdsa_recover(ctx, &got, &rsig, digest) &&
            secp256k1_ec_pubkey_serialize(ctx, ser, &n, &got,
                                          SECP256K1_EC_COMPRESSED) &&
            memcmp(ser, pub, 33) == 0) {
            *y_parity = id;
            return HK_OK;
        }
    }
    return HK_ERR_PROOF;
}

hk_err hk_tx_sig_forms(const unsigned char pub[33],
                       const unsigned char digest[32],
                       const unsigned char rs[64], unsigned char low_rs[64],
                       unsigned char der[HK_DER_SIG_MAX], size_t *der_len,
                       int *y_parity)
{
    const secp256k1_context *ctx = secp256k1_context_static;
    secp256k1_ecdsa_signature sig;
    secp256k1_pubkey pk;

    if (pub == NULL || digest == NULL || rs == NULL || low_rs == NULL ||
        der == NULL || der_len == NULL || y_parity == NULL)
        return HK_ERR_ARG;
    if (!secp256k1_ec_pubkey_parse(ctx, &pk, pub, 33))
        return HK_ERR_POINT;
    if (!secp256k1_ecdsa_signature_parse_compact(ctx, &sig, rs))
        return HK_ERR_SCALAR;
    (void)secp256k1_ecdsa_signature_normalize(ctx, &sig, &sig);
    if (!secp256k1_ecdsa_verify(ctx, &sig, digest, &pk))
        return HK_ERR_PROOF;
    *der_len = HK_DER_SIG_MAX;
    if (!secp256k1_ecdsa_signature_serialize_der(ctx, der, der_len, &sig) ||
        !secp256k1_ecdsa_signature_serialize_compact(ctx, low_rs, &sig))
        return HK_ERR_CRYPTO;
    return hk_tx_recid(pub, digest, low_rs, y_parity);
}
