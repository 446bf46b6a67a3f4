/* Fuzz target: RLP and EIP-1559 (txparse/eth.h hk_rlp_check,
 * hk_eth_tx_parse). An accepted transaction's digest is Keccak-256 of the
 * input, its fields are within their bounds, and its signed form (fixed
 * r, s) is a canonical RLP list that the unsigned parser refuses as a
 * signed transaction. Seeds: hand-made transactions (static). */
#include <stdlib.h>
#include <string.h>

#include "tests/fuzz/fuzz_common.h"
#include "txparse/eth.h"
#include "txparse/keccak.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    hk_eth_tx *tx = NULL, *tx2 = NULL;
    unsigned char h[32], r[32], s[32], *sig = NULL;
    size_t n = 0;
    char why[160], dec[HK_U256_DEC];

    (void)hk_rlp_check(data, size, HK_RLP_MAX_DEPTH, why, sizeof(why));
    if (hk_eth_tx_parse(data, size, &tx, why, sizeof(why)) != HK_OK) {
        if (tx != NULL || why[0] == 0)
            abort();
        return 0;
    }
    hk_keccak256(data, size, h);
    if (memcmp(h, tx->digest, 32) != 0 || tx->chain_id == 0 ||
        tx->access_list_len > HK_ETH_ACCESS_MAX ||
        tx->access_list_keys > HK_ETH_ACCESS_KEYS_MAX ||
        tx->data + tx->data_len > tx->raw + tx->raw_len)
        abort();
    hk_u256_dec(tx->value, dec);
    memset(r, 0x11, sizeof(r));
    memset(s, 0x22, sizeof(s));
    if (hk_eth_tx_signed(tx, r, s, 1, &sig, &n) != HK_OK ||
        hk_rlp_check(sig + 1, n - 1, HK_RLP_MAX_DEPTH, why, sizeof(why)) !=
            HK_OK ||
        (n <= HK_ETH_TX_MAX &&
         hk_eth_tx_parse(sig, n, &tx2, why, sizeof(why)) !=
             HK_ERR_TX_UNSUPPORTED))
        abort();
    free(sig);
    hk_eth_tx_free(tx);
    return 0;
}
