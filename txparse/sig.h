/* The forms of a secp256k1 ECDSA signature that transactions carry: low S
 * (BIP62 / EIP-2), DER (a PSBT partial signature) and the recovery id
 * (Ethereum's y_parity), from a 64-byte r || s over a 32-byte digest by
 * a known public key. Pure: libsecp256k1's static context only. */
#ifndef HK_TX_SIG_H
#define HK_TX_SIG_H

#include <stddef.h>

#include "common/error.h"

#define HK_DER_SIG_MAX 72

/* From rs (r || s, 32 bytes each, big-endian) that verifies over digest
 * under pub (33-byte compressed): low_rs = r || min(s, n - s), der[*der_len]
 * its DER encoding, *y_parity the recovery id of low_rs (the parity of the
 * nonce point's y). HK_ERR_SCALAR for r or s out of range, HK_ERR_POINT for
 * pub, HK_ERR_PROOF if the signature does not verify. */
hk_err hk_tx_sig_forms(const unsigned char pub[33],
                       const unsigned char digest[32],
                       const unsigned char rs[64], unsigned char low_rs[64],
                       unsigned char der[HK_DER_SIG_MAX], size_t *der_len,
                       int *y_parity) HK_WUR;

#endif
