/* Fuzz target: PVE backup blobs (mpc/pve.h hk_pve_peek, hk_pve_verify,
 * hk_pve_decrypt). The blob is verified against the key id, epoch, curve
 * and Q1 its own header claims, under the fixture backup key of its type
 * (tests/fuzz/fixtures/pve-ecies.pem, pve-rsa.pem: test keys). A blob that
 * verifies must decrypt to a scalar x with x*G = Q1, and must not verify
 * under the backup key of the other type. Seeds: real blobs of both key
 * types on both curves (test_pve --seeds). */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "mpc/pve.h"
#include "tests/fuzz/fuzz_common.h"

static hk_pve_priv *fuzz_keys[2]; /* ECIES-P256, RSA-OAEP-3072 */

static hk_pve_priv *load(const char *name)
{
    hk_pve_priv *k = NULL;
    unsigned char *pem;
    size_t len;

    pem = hk_fuzz_fixture(name, &len);
    if (hk_pve_priv_from_pem((const char *)pem, len, NULL, &k) != HK_OK)
        abort();
    free(pem);
    return k;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_keys[0] = load("pve-ecies.pem");
    fuzz_keys[1] = load("pve-rsa.pem");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    hk_pve_info in;
    hk_scalar x;
    hk_point X;
    hk_curve *c = NULL;
    int t;

    if (hk_pve_peek(data, size, &in) != HK_OK)
        return 0;
    t = in.type == HK_PVE_ECIES_P256 ? 0 : 1;
    if (hk_pve_verify(hk_pve_priv_pub(fuzz_keys[1 - t]), in.curve, in.kid,
                      in.epoch, &in.q1, data, size) == HK_OK)
        abort();
    if (hk_pve_verify(hk_pve_priv_pub(fuzz_keys[t]), in.curve, in.kid, in.epoch,
                      &in.q1, data, size) != HK_OK)
        return 0;
    if (hk_pve_decrypt(fuzz_keys[t], in.curve, in.kid, in.epoch, &in.q1, data,
                       size, &x) != HK_OK ||
        hk_curve_new(in.curve, &c) != HK_OK ||
        hk_point_mul_gen(c, &x, &X) != HK_OK || !hk_point_eq(&X, &in.q1))
        abort();
    OPENSSL_cleanse(&x, sizeof(x));
    hk_curve_free(c);
    return 0;
}
