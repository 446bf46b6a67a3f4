/* What a key signs for a signing request, and what the signatures make:
 * one rule for halfkeyd (which computes the digests it co-signs) and for
 * the client (which recomputes them before it approves), so neither
 * trusts the other's digest.
 *
 * Kinds: a raw digest (16..64 bytes, signed as is); a Bitcoin PSBT v0
 * whose P2WPKH inputs paying to HASH160 of the key are signed (BIP143
 * sighashes, every input signable: psbt.h); an unsigned EIP-1559
 * transaction (Keccak-256, eth.h). Pure: no I/O. */
#ifndef HK_TX_REQUEST_H
#define HK_TX_REQUEST_H

#include <stddef.h>

#include "common/error.h"
#include "txparse/btc.h"

typedef enum { HK_TX_DIGEST = 1, HK_TX_BTC_PSBT = 2, HK_TX_ETH = 3 } hk_tx_kind;

#define HK_TX_DIGEST_MIN 16
#define HK_TX_DIGEST_MAX 64

/* The digests the key (pub: 33-byte compressed, secp256k1 for the
 * transaction kinds) signs for payload[0..len): a new array *digs
 * (OPENSSL_free) of *n digests of *dlen bytes, in input order. Refusals
 * (HK_ERR_DECODE, HK_ERR_TOO_BIG, HK_ERR_TX_UNSUPPORTED: no input of the
 * key, an unsignable input) say why in why[cap]. */
hk_err hk_tx_request_digests(hk_tx_kind kind, const unsigned char *payload,
                             size_t len, hk_btc_net net,
                             const unsigned char pub[33], unsigned char **digs,
                             size_t *n, size_t *dlen, char *why,
                             size_t cap) HK_WUR;
/* What the n signatures (r || s each, in the order of the digests) make:
 * the signature itself for a digest, the PSBT with the key's partial
 * signatures (binary), the signed raw transaction (low s, y_parity by
 * recovery). A new *out (OPENSSL_free). HK_ERR_PROOF if a signature does
 * not verify, HK_ERR_STATE if n is not the number of digests. */
hk_err hk_tx_request_result(hk_tx_kind kind, const unsigned char *payload,
                            size_t len, hk_btc_net net,
                            const unsigned char pub[33],
                            const unsigned char *sigs, size_t n,
                            unsigned char **out, size_t *out_len) HK_WUR;

#endif
