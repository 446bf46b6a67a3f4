/* Fuzz target: PSBT v0 (txparse/psbt.h hk_psbt_parse). An accepted input
 * must serialise back to exactly itself (every pair kept in order), have
 * its totals consistent, and refuse a partial signature that cannot
 * verify; a refusal must say why. Seeds: the valid BIP174 test vectors and
 * BIP143's Native P2WPKH transaction as a PSBT (static, not gen_seeds). */
#include <stdlib.h>
#include <string.h>

#include "tests/fuzz/fuzz_common.h"
#include "txparse/psbt.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const unsigned char der[8] = {0x30, 6, 2, 1, 1, 2, 1, 1};
    hk_psbt *ps = NULL;
    unsigned char *out = NULL, pub[33];
    size_t n = 0, i;
    uint64_t sum = 0;
    char why[160];
    hk_err e;

    e = hk_psbt_parse(data, size, HK_BTC_REGTEST, &ps, why, sizeof(why));
    if (e != HK_OK) {
        if (ps != NULL || why[0] == 0)
            abort();
        return 0;
    }
    if (hk_psbt_serialize(ps, &out, &n) != HK_OK || n != size ||
        memcmp(out, data, size) != 0)
        abort();
    for (i = 0; i < ps->n_out; i++)
        sum += ps->out[i].amount;
    if (sum != ps->out_total ||
        (ps->has_fee && ps->fee != ps->in_total - ps->out_total))
        abort();
    (void)hk_psbt_signable(ps, why, sizeof(why));
    for (i = 0; i < ps->n_in; i++) {
        if (ps->in[i].has_sighash && !ps->in[i].p2wpkh)
            abort();
        memset(pub, 0, sizeof(pub));
        pub[0] = 2;
        if (ps->in[i].has_pubkey)
            memcpy(pub, ps->in[i].pubkey, 33);
        /* r = s = 1 never verifies */
        if (hk_psbt_add_partial_sig(ps, i, pub, der, sizeof(der)) == HK_OK)
            abort();
    }
    free(out);
    hk_psbt_free(ps);
    return 0;
}
