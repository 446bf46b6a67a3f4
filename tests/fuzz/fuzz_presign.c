/* Fuzz target: presignatures (mpc/presign.h): the stored record's decoder
 * (hk_presig_decode) on the raw input, and the batch and online messages
 * (pre.1, pre.2, pre.3, sign.1p) changed by the input. The genuine messages
 * come from one honest run made at start-up with the fixtures' shares
 * (secp256k1) and the fixed sign session id, so the fuzzer starts from
 * messages that pass every check and changes them:
 *   byte 0: which message (low 2 bits) and how (bit 2: the rest of the
 *           input replaces it; else each 3 bytes (offset high, offset low,
 *           value) overwrite one byte of it);
 * delivered to the party that receives it, in its genuine state (P2 has
 * seen the genuine pre.1 before pre.3; P1 is after hk_psgen_start; the
 * online P2 holds the genuine presignature and precomputed randomness). No
 * seed files: the structure comes from the honest run. */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "mpc/sign.h"
#include "tests/fuzz/fuzz_common.h"

#define NMSG 4

static const hk_share *p1s, *p2s;
static unsigned char sid[HK_ID_LEN];
static unsigned char *msg[NMSG];
static size_t mlen[NMSG];
static hk_presig p2rec;
static BIGNUM *rn;

static void must(hk_err e)
{
    if (e != HK_OK)
        abort();
}

/* One honest batch of 2 and an online sign.1p on its first presignature. */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    hk_psgen *a = NULL, *b = NULL;
    hk_presig p1rec;
    hk_sign *sg = NULL;
    unsigned char *none = NULL;
    size_t nlen = 0;

    (void)argc;
    (void)argv;
    p1s = hk_fuzz_share(HK_ROLE_P1, HK_CURVE_SECP256K1);
    p2s = hk_fuzz_share(HK_ROLE_P2, HK_CURVE_SECP256K1);
    hk_fuzz_id(sid, HK_FUZZ_SG_SID);
    must(hk_psgen_p1_new(p1s, sid, 2, &a));
    must(hk_psgen_p2_new(p2s, sid, HK_PRESIG_BATCH_MAX, &b));
    must(hk_psgen_start(a, &msg[0], &mlen[0]));
    must(hk_psgen_recv(b, msg[0], mlen[0], &msg[1], &mlen[1]));
    must(hk_psgen_recv(a, msg[1], mlen[1], &msg[2], &mlen[2]));
    must(hk_psgen_recv(b, msg[2], mlen[2], &none, &nlen));
    must(hk_psgen_get(a, 0, &p1rec));
    must(hk_psgen_get(b, 0, &p2rec));
    must(hk_sign_p1_presigned(p1s, &p1rec,
                              (const unsigned char *)HK_FUZZ_DIGEST,
                              HK_FUZZ_DIGEST_LEN, &sg));
    must(hk_sign_start(sg, &msg[3], &mlen[3]));
    must(hk_sign_randomness(p2s, &rn));
    OPENSSL_cleanse(&p1rec, sizeof(p1rec));
    hk_sign_free(sg);
    hk_psgen_free(a);
    hk_psgen_free(b);
    return 0;
}

/* The message to deliver: genuine message `which`, changed by the input. */
static unsigned char *mutate(const uint8_t *data, size_t size, int which,
                             size_t *len)
{
    unsigned char *m;
    size_t i, pos;

    if (data[0] & 4) {
        *len = size - 1;
        if ((m = malloc(*len + 1)) != NULL)
            memcpy(m, data + 1, *len);
        return m;
    }
    *len = mlen[which];
    if ((m = malloc(*len)) == NULL)
        return NULL;
    memcpy(m, msg[which], *len);
    for (i = 1; i + 3 <= size; i += 3) {
        pos = ((size_t)data[i] << 8 | data[i + 1]) % *len;
        m[pos] = data[i + 2];
    }
    return m;
}

static void deliver(int which, const unsigned char *m, size_t len)
{
    unsigned char *out = NULL, *tmp = NULL;
    size_t outlen = 0, tlen = 0;
    hk_psgen *g = NULL;
    hk_sign *sg = NULL;
    BIGNUM *r;

    switch (which) {
    case 0: /* pre.1 to a fresh P2 */
        must(hk_psgen_p2_new(p2s, sid, HK_PRESIG_BATCH_MAX, &g));
        (void)hk_psgen_recv(g, m, len, &out, &outlen);
        break;
    case 1: /* pre.2 to P1 after start */
        must(hk_psgen_p1_new(p1s, sid, 2, &g));
        must(hk_psgen_start(g, &tmp, &tlen));
        (void)hk_psgen_recv(g, m, len, &out, &outlen);
        break;
    case 2: /* pre.3 to P2 after the genuine pre.1 */
        must(hk_psgen_p2_new(p2s, sid, HK_PRESIG_BATCH_MAX, &g));
        must(hk_psgen_recv(g, msg[0], mlen[0], &tmp, &tlen));
        if (hk_psgen_recv(g, m, len, &out, &outlen) == HK_OK &&
            (!hk_psgen_done(g) || hk_psgen_count(g) != 2))
            abort();
        break;
    default: /* sign.1p to the online P2 */
        must(hk_sign_p2_presigned(p2s, &p2rec, &sg));
        if ((r = BN_dup(rn)) == NULL ||
            hk_sign_p2_use_randomness(sg, r) != HK_OK)
            abort();
        (void)hk_sign_recv(sg, m, len, &out, &outlen);
    }
    OPENSSL_free(out);
    OPENSSL_free(tmp);
    hk_psgen_free(g);
    hk_sign_free(sg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    hk_presig rec;
    unsigned char *m;
    size_t len = 0;
    int which;

    if (hk_presig_decode(data, size, &rec) == HK_OK &&
        (rec.epoch < 1 || hk_scalar_is_zero(&rec.k)))
        abort();
    OPENSSL_cleanse(&rec, sizeof(rec));
    if (size < 1)
        return 0;
    which = data[0] & 3;
    if ((m = mutate(data, size, which, &len)) == NULL)
        return 0;
    deliver(which, m, len);
    free(m);
    return 0;
}
