/* Ethereum EIP-1559 (type 0x02) transactions: the strict RLP decoder, the
 * signing digest, the signed raw transaction, addresses.
 *
 * The unsigned transaction is 0x02 || rlp([chain_id, nonce,
 * max_priority_fee_per_gas, max_fee_per_gas, gas_limit, to, value, data,
 * access_list]); the digest a signer signs is Keccak-256 of exactly those
 * bytes, and the signed transaction appends y_parity, r, s to the list.
 *
 * Strict: every RLP item canonical (a single byte below 0x80 is itself, a
 * length in the shortest form, no leading zeros in lengths or integers,
 * zero is the empty string), integers within their widths (chain id, nonce
 * and gas limit 64 bits; fees and value 256 bits), `to` 20 bytes or empty
 * (contract creation), the list exactly nine fields with nothing after it,
 * nesting at most HK_RLP_MAX_DEPTH, the whole at most HK_ETH_TX_MAX bytes
 * (geth's pool limit). Also refused: chain id 0, a priority fee above the
 * fee cap (geth's ErrTipAboveFeeCap), gas_limit * max_fee_per_gas beyond
 * 256 bits. Pure: no I/O, no globals; errors carry a one-line reason. */
#ifndef HK_ETH_H
#define HK_ETH_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

#define HK_ETH_TX_MAX (128 * 1024)  /* bytes of the unsigned transaction */
#define HK_RLP_MAX_DEPTH 4          /* tx list > access list > entry > keys */
#define HK_ETH_ACCESS_MAX 1024      /* access list entries */
#define HK_ETH_ACCESS_KEYS_MAX 4096 /* storage keys, all entries together */
#define HK_ETH_ADDR_LEN 20
#define HK_ETH_ADDR_STR 43 /* "0x" + 40 hex digits (EIP-55) + NUL */
#define HK_U256_DEC 79     /* decimal digits of 2^256 - 1, + NUL */

typedef struct {
    uint64_t chain_id;
    uint64_t nonce;
    uint64_t gas_limit;
    unsigned char max_priority_fee_per_gas[32]; /* big-endian, wei */
    unsigned char max_fee_per_gas[32];          /* big-endian, wei */
    unsigned char value[32];                    /* big-endian, wei */
    /* gas_limit * max_fee_per_gas: the most the sender pays in fees */
    unsigned char max_fee_total[32];
    int create;                        /* 1: empty `to`, contract creation */
    unsigned char to[HK_ETH_ADDR_LEN]; /* zero when create */
    const unsigned char *data;         /* call data, inside raw */
    size_t data_len;
    size_t access_list_len;   /* entries */
    size_t access_list_keys;  /* storage keys of all entries */
    unsigned char digest[32]; /* Keccak-256(raw): what the key signs */
    unsigned char *raw;       /* owned copy of the unsigned transaction */
    size_t raw_len;
    size_t payload_off; /* the list's payload (the nine fields) in raw */
    size_t payload_len;
} hk_eth_tx;

/* Parses the unsigned EIP-1559 transaction raw[0..len) into a new *out
 * (free with hk_eth_tx_free). Errors: HK_ERR_TOO_BIG over a bound,
 * HK_ERR_TX_UNSUPPORTED for another transaction type or a signed one,
 * HK_ERR_DECODE for anything malformed or non-canonical; why (optional)
 * says which field. */
hk_err hk_eth_tx_parse(const unsigned char *raw, size_t len, hk_eth_tx **out,
                       char *why, size_t why_len) HK_WUR;
void hk_eth_tx_free(hk_eth_tx *tx);

/* The signed raw transaction 0x02 || rlp([fields..., y_parity, r, s]) in a
 * new *out (free()), r and s 32-byte big-endian. Refuses (HK_ERR_SCALAR)
 * r or s zero or not below the group order, and a high s (EIP-2: s must
 * be at most n/2; normalise s to n - s and flip y_parity first);
 * HK_ERR_ARG for y_parity not 0 or 1. */
hk_err hk_eth_tx_signed(const hk_eth_tx *tx, const unsigned char r[32],
                        const unsigned char s[32], int y_parity,
                        unsigned char **out, size_t *out_len) HK_WUR;

/* The address of a secp256k1 public key (33-byte compressed or 65-byte
 * uncompressed SEC1): the last 20 bytes of Keccak-256 of the 64-byte
 * uncompressed point. HK_ERR_POINT if pub is not a valid point. */
hk_err hk_eth_address(const unsigned char *pub, size_t pub_len,
                      unsigned char addr[HK_ETH_ADDR_LEN]) HK_WUR;
/* "0x" + EIP-55 mixed-case checksummed hex. */
void hk_eth_address_str(const unsigned char addr[HK_ETH_ADDR_LEN],
                        char out[HK_ETH_ADDR_STR]);

/* sum = a + b, 256-bit big-endian (sum may be a or b); 0 on overflow
 * (sum then holds the low 256 bits). */
int hk_u256_add(const unsigned char a[32], const unsigned char b[32],
                unsigned char sum[32]);
/* Decimal of a 256-bit big-endian integer ("0" for zero). */
void hk_u256_dec(const unsigned char be[32], char out[HK_U256_DEC]);

/* Checks that buf[0..len) is exactly one canonical RLP item nested at most
 * max_depth lists deep (a string alone is depth 0). HK_ERR_DECODE. */
hk_err hk_rlp_check(const unsigned char *buf, size_t len, int max_depth,
                    char *why, size_t why_len) HK_WUR;

#endif
