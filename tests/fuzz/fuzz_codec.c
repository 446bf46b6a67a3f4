/* Fuzz target: the message codec (mpc/codec.h). Parses arbitrary bytes
 * (peek, parse with and without type and ids), reads fixed key names with
 * every kind of getter, then hk_msg_finish. A message that parses must
 * encode, and its encoding must parse again and encode the same. */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "mpc/codec.h"
#include "tests/fuzz/fuzz_common.h"

static hk_curve *curves[2];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (hk_curve_new(HK_CURVE_SECP256K1, &curves[0]) != HK_OK ||
        hk_curve_new(HK_CURVE_P256, &curves[1]) != HK_OK)
        abort();
    return 0;
}

/* Every getter on the key names real messages use; results ignored. */
static void getters(hk_msg *m)
{
    unsigned char b[1024];
    BIGNUM *bn = NULL, *arr[8] = {0};
    hk_point pts[8];
    hk_point p;
    hk_scalar s;
    unsigned long u;
    char str[16];
    size_t n, i;

    (void)hk_msg_get_bytes(m, "sid", b, HK_ID_LEN);
    (void)hk_msg_get_bytes(m, "kid", b, HK_ID_LEN);
    (void)hk_msg_get_var(m, "dig", b, 64, &n);
    (void)hk_msg_get_var(m, "sealed", b, sizeof(b), &n);
    (void)hk_msg_get_bytes(m, "com", b, HK_HASH_LEN);
    (void)hk_msg_get_bytes(m, "fp", b, HK_HASH_LEN);
    (void)hk_msg_get_bytes(m, "conf", b, HK_HASH_LEN);
    (void)hk_msg_get_bytes(m, "nonce", b, HK_NONCE_LEN);
    (void)hk_msg_get_u32(m, "pbits", &u);
    (void)hk_msg_get_u32(m, "epoch", &u);
    (void)hk_msg_get_str(m, "curve", str, sizeof(str));
    (void)hk_msg_get_str(m, "label", str, 1);
    for (i = 0; i < 2; i++) {
        (void)hk_msg_get_point(m, curves[i], "Q2", &p);
        (void)hk_msg_get_point(m, curves[i], "R1", &p);
        (void)hk_msg_get_point(m, curves[i], "R2", &p);
        (void)hk_msg_get_point(m, curves[i], "pa", &p);
        (void)hk_msg_get_scalar(m, curves[i], "pz", &s);
        (void)hk_msg_get_scalar(m, curves[i], "r", &s);
        (void)hk_msg_get_scalar(m, curves[i], "s", &s);
        (void)hk_msg_get_points(m, curves[i], "lsY", pts, 8);
    }
    (void)hk_msg_get_bn(m, "c3", 512, &bn);
    (void)hk_msg_get_bn(m, "N", 256, &bn); /* reuses bn */
    (void)hk_msg_get_bn(m, "x", 0, &bn);
    (void)hk_msg_get_bn_array(m, "nth", arr, 8, 256);
    (void)hk_msg_get_bn_array(m, "A", arr, 2, 1);
    BN_free(bn);
    for (i = 0; i < 8; i++)
        BN_free(arr[i]);
}

/* encode(m) parses again and encodes to the same bytes. */
static void roundtrip(const hk_msg *m)
{
    unsigned char *enc = NULL, *enc2 = NULL;
    size_t len = 0, len2 = 0;
    hk_msg *m2 = NULL;

    if (hk_msg_encode(m, &enc, &len) != HK_OK)
        abort();
    if (hk_msg_peek(enc, len, (size_t)-1, &m2) != HK_OK ||
        hk_msg_encode(m2, &enc2, &len2) != HK_OK || len != len2 ||
        memcmp(enc, enc2, len) != 0)
        abort();
    hk_msg_free(m2);
    OPENSSL_free(enc);
    OPENSSL_free(enc2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned char sid[HK_ID_LEN], kid[HK_ID_LEN];
    hk_msg *m = NULL;

    if (hk_msg_peek(data, size, HK_MSG_MAX, &m) == HK_OK) {
        if (hk_msg_type(m) == NULL)
            abort();
        roundtrip(m);
        getters(m);
        (void)hk_msg_finish(m);
        hk_msg_free(m);
    }
    if (hk_msg_parse(data, size, HK_MSG_MAX, NULL, NULL, NULL, &m) == HK_OK) {
        getters(m);
        (void)hk_msg_finish(m);
        hk_msg_free(m);
    }
    hk_fuzz_id(sid, HK_FUZZ_KG_SID);
    hk_fuzz_id(kid, HK_FUZZ_KG_KID);
    if (hk_msg_parse(data, size, HK_MSG_MAX, "keygen.1", sid, kid, &m) ==
        HK_OK) {
        getters(m);
        (void)hk_msg_finish(m);
        hk_msg_free(m);
    }
    return 0;
}
