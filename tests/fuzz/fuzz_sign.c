/* Fuzz target: the signing state machines (mpc/sign.h) on arbitrary
 * messages. The input is up to HK_FUZZ_MAX_MSGS messages split at NUL
 * bytes (fuzz_common.h), delivered in order until one is rejected:
 *  - to P2 with a real share, chosen like the server does with
 *    hk_msg_peek_share on the first message (sign.1, sign.3, sign.5);
 *  - to P1 after hk_sign_start, on each curve (sign.2, sign.4).
 * The shares are the fixtures' (decoded once); the session id is the fixed
 * one of the seeds. */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "mpc/sign.h"
#include "tests/fuzz/fuzz_common.h"

static const hk_curve_id curves[2] = {HK_CURVE_SECP256K1, HK_CURVE_P256};
static unsigned char p2_fp[2][HK_HASH_LEN];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    size_t i;

    (void)argc;
    (void)argv;
    for (i = 0; i < 2; i++) {
        (void)hk_fuzz_share(HK_ROLE_P1, curves[i]);
        if (hk_share_fingerprint(hk_fuzz_share(HK_ROLE_P2, curves[i]),
                                 p2_fp[i]) != HK_OK)
            abort();
    }
    return 0;
}

static void deliver(hk_sign *sg, const uint8_t **part, const size_t *len,
                    size_t n)
{
    unsigned char *out = NULL, sig[HK_SIG_LEN];
    const unsigned char *dig;
    size_t outlen = 0, dlen, i;

    for (i = 0; i < n; i++) {
        hk_err e = hk_sign_recv(sg, part[i], len[i], &out, &outlen);

        OPENSSL_free(out);
        out = NULL;
        if (e != HK_OK)
            break;
    }
    (void)hk_sign_signature(sg, sig);
    if (hk_sign_started(sg) && hk_sign_digest(sg, &dig, &dlen) == HK_OK &&
        (dlen < 1 || dlen > HK_DIGEST_MAX))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned char sid[HK_ID_LEN], fp[HK_HASH_LEN], *out = NULL;
    const uint8_t *part[HK_FUZZ_MAX_MSGS];
    size_t len[HK_FUZZ_MAX_MSGS], n, i, outlen = 0;
    const hk_share *share = hk_fuzz_share(HK_ROLE_P2, curves[0]);
    unsigned long epoch;
    hk_sign *sg = NULL;

    n = hk_fuzz_split(data, size, part, len);
    hk_fuzz_id(sid, HK_FUZZ_SG_SID);
    if (hk_msg_peek_share(part[0], len[0], &epoch, fp) == HK_OK)
        for (i = 0; i < 2; i++)
            if (epoch == hk_fuzz_share(HK_ROLE_P2, curves[i])->epoch &&
                memcmp(fp, p2_fp[i], HK_HASH_LEN) == 0)
                share = hk_fuzz_share(HK_ROLE_P2, curves[i]);
    if (hk_sign_p2_new(share, sid, &sg) != HK_OK)
        abort();
    deliver(sg, part, len, n);
    hk_sign_free(sg);

    for (i = 0; i < 2; i++) {
        if (hk_sign_p1_new(hk_fuzz_share(HK_ROLE_P1, curves[i]), sid,
                           (const unsigned char *)HK_FUZZ_DIGEST,
                           HK_FUZZ_DIGEST_LEN, &sg) != HK_OK ||
            hk_sign_start(sg, &out, &outlen) != HK_OK)
            abort();
        OPENSSL_free(out);
        out = NULL;
        deliver(sg, part, len, n);
        hk_sign_free(sg);
    }
    return 0;
}
