/* Bitcoin encodings the PSBT parser and its callers share: SHA-256d and
 * HASH160, output scripts rendered as addresses (base58check P2PKH/P2SH,
 * bech32 segwit v0, bech32m v1+) for a network, and strict base64 (a PSBT
 * travels as base64). Pure: no I/O, no globals. */
#ifndef HK_BTC_H
#define HK_BTC_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

typedef enum { HK_BTC_MAINNET, HK_BTC_TESTNET, HK_BTC_REGTEST } hk_btc_net;

#define HK_BTC_ADDR_MAX 91 /* the longest bech32 string (90) + NUL */
#define HK_BTC_MAX_MONEY 2100000000000000ull /* 21e6 BTC in satoshi */

/* "main" | "mainnet" | "bitcoin", "test" | "testnet" | "signet",
 * "regtest"; HK_ERR_ARG otherwise. */
hk_err hk_btc_net_parse(const char *name, hk_btc_net *net) HK_WUR;
const char *hk_btc_net_name(hk_btc_net net);

void hk_sha256d(const unsigned char *in, size_t len, unsigned char out[32]);
/* RIPEMD-160(SHA-256(in)) */
void hk_hash160(const unsigned char *in, size_t len, unsigned char out[20]);

/* The address paying to scriptPubKey spk on net into out: P2PKH and P2SH
 * base58check, witness v0 (20 or 32-byte programs) bech32, v1 to v16
 * bech32m. HK_ERR_TX_UNSUPPORTED for any other script (OP_RETURN, bare
 * multisig, ...): render it as hex. */
hk_err hk_btc_address(const unsigned char *spk, size_t spk_len, hk_btc_net net,
                      char out[HK_BTC_ADDR_MAX]) HK_WUR;

/* base64: common/hex.h (hk_b64_encode, hk_b64_decode). */

#endif
