/* Fuzz target: the key generation state machines (mpc/keygen.h) on
 * arbitrary messages. The input is up to HK_FUZZ_MAX_MSGS messages split
 * at NUL bytes (fuzz_common.h), delivered in order until one is rejected:
 *  - to a fresh P2 whose curve comes from hk_keygen_peek_curve of the
 *    first message, as the server does (keygen.1, then keygen.3);
 *  - to P1 after hk_keygen_start on each curve (keygen.2, then keygen.4).
 *    P1's start makes a Paillier key (slow), so each curve's P1 is made
 *    once and reused: a rejected message leaves it as it was (keygen.h);
 *    one that is accepted moves it on, and it is made again next time.
 * Session and key ids are the fixed ones of the seeds. */
#include <stdlib.h>

#include <openssl/crypto.h>

#include "mpc/keygen.h"
#include "tests/fuzz/fuzz_common.h"

static hk_keygen *p1[2];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    (void)hk_fuzz_setup();
    return 0;
}

static void ids(unsigned char *sid, unsigned char *kid)
{
    hk_fuzz_id(sid, HK_FUZZ_KG_SID);
    hk_fuzz_id(kid, HK_FUZZ_KG_KID);
}

/* Delivers the messages until one is rejected; 1 if any was accepted. */
static int deliver(hk_keygen *kg, const uint8_t **part, const size_t *len,
                   size_t n)
{
    unsigned char *out = NULL;
    size_t outlen = 0, i;
    int moved = 0;

    for (i = 0; i < n; i++) {
        hk_err e = hk_keygen_recv(kg, part[i], len[i], &out, &outlen);

        OPENSSL_free(out);
        out = NULL;
        if (e != HK_OK)
            break;
        moved = 1;
    }
    if (hk_keygen_done(kg)) {
        hk_share *s = NULL;

        if (hk_keygen_take_share(kg, &s) != HK_OK)
            abort();
        hk_share_free(s);
    }
    return moved;
}

static hk_keygen *p1_get(hk_curve_id curve)
{
    hk_keygen **kg = &p1[curve == HK_CURVE_P256];
    unsigned char sid[HK_ID_LEN], kid[HK_ID_LEN], *out = NULL;
    size_t outlen = 0;

    if (*kg == NULL) {
        ids(sid, kid);
        if (hk_keygen_p1_new(curve, sid, kid, 2048, &hk_fuzz_setup()->pub,
                             kg) != HK_OK ||
            hk_keygen_start(*kg, &out, &outlen) != HK_OK)
            abort();
        OPENSSL_free(out);
    }
    return *kg;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const hk_curve_id curves[2] = {HK_CURVE_SECP256K1, HK_CURVE_P256};
    unsigned char sid[HK_ID_LEN], kid[HK_ID_LEN];
    const uint8_t *part[HK_FUZZ_MAX_MSGS];
    size_t len[HK_FUZZ_MAX_MSGS], n, i;
    hk_curve_id curve = HK_CURVE_SECP256K1;
    hk_keygen *kg = NULL;

    n = hk_fuzz_split(data, size, part, len);
    ids(sid, kid);
    if (hk_keygen_peek_curve(part[0], len[0], &curve) != HK_OK)
        curve = HK_CURVE_SECP256K1;
    if (hk_keygen_p2_new(curve, sid, kid, 2048, hk_fuzz_setup(), &kg) != HK_OK)
        abort();
    (void)deliver(kg, part, len, n);
    hk_keygen_free(kg);

    for (i = 0; i < 2; i++)
        if (deliver(p1_get(curves[i]), part, len, n)) {
            hk_keygen_free(p1[i]);
            p1[i] = NULL;
        }
    return 0;
}
