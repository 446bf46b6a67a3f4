/* Bitcoin PSBT version 0 (BIP174): the strict parser, each P2WPKH input's
 * BIP143 signature hash computed here, outputs rendered for humans, the
 * fee, and partial signatures written back.
 *
 * hk_psbt_parse accepts any PSBT v0 that BIP174 calls valid: magic, the
 * global map with PSBT_GLOBAL_UNSIGNED_TX (a non-witness serialisation with
 * empty scriptSigs; no duplicate inputs), one map per input and output;
 * every key at most once per map; the known key types (BIP174, BIP371
 * taproot) with the key data and value sizes they define; PSBT v2 fields
 * and a PSBT_GLOBAL_VERSION other than 0 refused; unknown and proprietary
 * keys kept and written back unchanged; nothing after the last map.
 * Compact sizes must be minimal, amounts at most 21e6 BTC, scripts at most
 * 10000 bytes, the whole at most HK_PSBT_MAX bytes.
 *
 * Per input: the amount and scriptPubKey spent come from PSBT_IN_WITNESS_UTXO;
 * PSBT_IN_NON_WITNESS_UTXO, when present, must hash to the prevout's txid,
 * have the prevout's index, and agree with the witness UTXO (the segwit
 * fee attack); alone it gives the amount. A P2WPKH input (scriptPubKey
 * 0x0014{20}) whose sighash type is SIGHASH_ALL (absent means ALL) gets its
 * BIP143 sighash; any other input is parsed but not signable.
 * hk_psbt_signable is the server's rule: at least one input and one output,
 * every input signable, hence every amount and the fee known.
 *
 * Pure: no I/O, no globals; errors carry a one-line reason in why. */
#ifndef HK_PSBT_H
#define HK_PSBT_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "txparse/btc.h"

#define HK_PSBT_MAX (1024 * 1024) /* bytes of the binary PSBT */
#define HK_PSBT_MAX_INPUTS 256
#define HK_PSBT_MAX_OUTPUTS 256
#define HK_PSBT_MAX_PAIRS 128   /* key-value pairs per map */
#define HK_BTC_SCRIPT_MAX 10000 /* Bitcoin's MAX_SCRIPT_SIZE */
#define HK_SIGHASH_ALL 1

/* One key-value pair as serialised (key type first in key). Parsed pairs
 * point into the PSBT's raw copy; added ones into owned. */
typedef struct {
    const unsigned char *key;
    size_t key_len;
    const unsigned char *val;
    size_t val_len;
    unsigned char *owned;
} hk_psbt_pair;

typedef struct {
    hk_psbt_pair *pairs;
    size_t n;
} hk_psbt_map;

typedef struct {
    unsigned char prev_txid[32]; /* as serialised (display order reversed) */
    uint32_t prev_vout;
    uint32_t sequence;
    int has_amount;
    uint64_t amount;          /* satoshi of the output spent */
    const unsigned char *spk; /* its scriptPubKey (NULL if unknown) */
    size_t spk_len;
    int has_witness_utxo;
    int has_non_witness_utxo;
    int p2wpkh; /* spk is 0x0014{pkh} */
    unsigned char pkh[20];
    uint32_t sighash_type;     /* PSBT_IN_SIGHASH_TYPE, else ALL */
    int has_sighash;           /* P2WPKH with SIGHASH_ALL */
    unsigned char sighash[32]; /* BIP143, what the key signs */
    int has_pubkey;            /* a BIP32 derivation key hashing to pkh */
    unsigned char pubkey[33];
    size_t n_derivations;  /* PSBT_IN_BIP32_DERIVATION pairs */
    size_t n_partial_sigs; /* PSBT_IN_PARTIAL_SIG pairs */
    int finalized;         /* final scriptSig or witness present */
    hk_psbt_map map;
} hk_psbt_input;

typedef struct {
    uint64_t amount; /* satoshi */
    const unsigned char *spk;
    size_t spk_len;
    char address[HK_BTC_ADDR_MAX]; /* "" when not a standard address */
    hk_psbt_map map;
} hk_psbt_output;

typedef struct {
    hk_btc_net net;
    uint32_t tx_version;
    uint32_t locktime;
    unsigned char txid[32]; /* of the unsigned transaction, as serialised */
    size_t n_in, n_out;
    hk_psbt_input *in;
    hk_psbt_output *out;
    int has_fee; /* every input's amount known */
    uint64_t in_total, out_total, fee;
    hk_psbt_map global;
    unsigned char *raw; /* owned copy of the parsed bytes */
    size_t raw_len;
} hk_psbt;

/* Parses the binary PSBT raw[0..len), addresses rendered for net, into a
 * new *out (free with hk_psbt_free). HK_ERR_TOO_BIG over a bound,
 * HK_ERR_TX_UNSUPPORTED for PSBT v2 and other versions, HK_ERR_DECODE for
 * anything else BIP174 refuses or that is inconsistent (txid or amount
 * mismatch, outputs above inputs); why (optional) says where. */
hk_err hk_psbt_parse(const unsigned char *raw, size_t len, hk_btc_net net,
                     hk_psbt **out, char *why, size_t why_len) HK_WUR;
/* The same from strict base64 (how requests carry it). */
hk_err hk_psbt_parse_base64(const char *b64, size_t len, hk_btc_net net,
                            hk_psbt **out, char *why, size_t why_len) HK_WUR;
void hk_psbt_free(hk_psbt *psbt);

/* HK_OK if the server can sign every input: see the header comment.
 * HK_ERR_TX_UNSUPPORTED with the first input that is not. */
hk_err hk_psbt_signable(const hk_psbt *psbt, char *why, size_t why_len) HK_WUR;

/* Adds PSBT_IN_PARTIAL_SIG {pubkey} = DER || sighash type byte to input
 * index. pubkey (33-byte compressed) must hash to the input's P2WPKH
 * program; der is a DER ECDSA signature, normalised to low S, and must
 * verify over the input's sighash (HK_ERR_ARG otherwise, HK_ERR_STATE for
 * an input without a sighash). The same signature again is a no-op; a
 * different one for the same key HK_ERR_EXISTS. */
hk_err hk_psbt_add_partial_sig(hk_psbt *psbt, size_t index,
                               const unsigned char pubkey[33],
                               const unsigned char *der, size_t der_len) HK_WUR;

/* The PSBT serialised again (every pair in its order, added partial
 * signatures after an input's pairs) into a new *out (free()). */
hk_err hk_psbt_serialize(const hk_psbt *psbt, unsigned char **out,
                         size_t *out_len) HK_WUR;
/* The same in base64 (*out: OPENSSL_free). */
hk_err hk_psbt_serialize_base64(const hk_psbt *psbt, char **out) HK_WUR;

#endif
