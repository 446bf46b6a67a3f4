/* Fuzz target: the refresh state machine of P2 (mpc/refresh.h) with a real
 * share on arbitrary messages. The input is up to HK_FUZZ_MAX_MSGS
 * messages split at NUL bytes (fuzz_common.h), delivered in order until
 * one is rejected (refresh.1, refresh.3, refresh.5). The share is chosen
 * with hk_msg_peek_share on the first message, as the server does; the
 * session id is the fixed one of the seeds. */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "mpc/refresh.h"
#include "mpc/sign.h"
#include "tests/fuzz/fuzz_common.h"

static const hk_curve_id curves[2] = {HK_CURVE_SECP256K1, HK_CURVE_P256};
static unsigned char p2_fp[2][HK_HASH_LEN];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    size_t i;

    (void)argc;
    (void)argv;
    (void)hk_fuzz_setup();
    for (i = 0; i < 2; i++)
        if (hk_share_fingerprint(hk_fuzz_share(HK_ROLE_P2, curves[i]),
                                 p2_fp[i]) != HK_OK)
            abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned char sid[HK_ID_LEN], fp[HK_HASH_LEN], *out = NULL;
    const uint8_t *part[HK_FUZZ_MAX_MSGS];
    size_t len[HK_FUZZ_MAX_MSGS], n, i, outlen = 0;
    const hk_share *share = hk_fuzz_share(HK_ROLE_P2, curves[0]);
    hk_share *fresh = NULL;
    unsigned long epoch;
    hk_refresh *rf = NULL;

    n = hk_fuzz_split(data, size, part, len);
    hk_fuzz_id(sid, HK_FUZZ_RF_SID);
    if (hk_msg_peek_share(part[0], len[0], &epoch, fp) == HK_OK)
        for (i = 0; i < 2; i++)
            if (epoch == hk_fuzz_share(HK_ROLE_P2, curves[i])->epoch &&
                memcmp(fp, p2_fp[i], HK_HASH_LEN) == 0)
                share = hk_fuzz_share(HK_ROLE_P2, curves[i]);
    if (hk_refresh_p2_new(share, sid, 2048, hk_fuzz_setup(), &rf) != HK_OK)
        abort();
    for (i = 0; i < n; i++) {
        hk_err e = hk_refresh_recv(rf, part[i], len[i], &out, &outlen);

        OPENSSL_free(out);
        out = NULL;
        if (e != HK_OK)
            break;
    }
    if (hk_refresh_take_share(rf, &fresh) == HK_OK)
        hk_share_free(fresh);
    (void)hk_refresh_confirmed(rf);
    hk_refresh_free(rf);
    return 0;
}
