/* JSON views of parsed transactions, one schema for every consumer:
 * `txinfo`, halfkeyd's GET /requests (the "summary") and `halfkey
 * requests`. Amounts in satoshi and wei (decimal strings above 2^63),
 * ids and scripts in hex, txids in display order. */
#ifndef HK_TX_RENDER_H
#define HK_TX_RENDER_H

#include <jansson.h>

#include "txparse/eth.h"
#include "txparse/psbt.h"

/* n bytes as a JSON string of lower-case hex; NULL when out of memory. */
json_t *hk_tx_json_hex(const unsigned char *b, size_t n);
/* network, version, locktime, txid, inputs (txid, vout, sequence, amount,
 * p2wpkh, sighash_type, sighash, pubkey, partial_sigs, derivations,
 * finalized), outputs (amount, address, script), in_total, out_total,
 * fee, signable, unsignable_why. NULL when out of memory. */
json_t *hk_psbt_json(const hk_psbt *ps);
/* chain_id, nonce, gas_limit, max_priority_fee_per_gas, max_fee_per_gas,
 * max_fee_total, value, to (null: contract creation), data (hex),
 * access_list_len, access_list_keys, digest. */
json_t *hk_eth_tx_json(const hk_eth_tx *tx);

#endif
