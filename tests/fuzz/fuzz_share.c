/* Fuzz target: key share records (mpc/share.h hk_share_decode, and
 * hk_share_decode_sealed, which skips the receiver's costly checks). A
 * record that decodes must encode back to a record that decodes to the
 * same fingerprint; whatever the strict decode accepts, the sealed one
 * accepts as the same share. Seeds: real P1 and P2 shares on both
 * curves. */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "mpc/share.h"
#include "tests/fuzz/fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

/* The sealed decode of the input: any share it gives is well formed;
 * *fp (if it decodes) its fingerprint. */
static int sealed_decode(const uint8_t *data, size_t size,
                         unsigned char fp[HK_HASH_LEN])
{
    hk_share *s = NULL;
    int ok = hk_share_decode_sealed(data, size, &s) == HK_OK;

    if (ok &&
        (hk_share_fingerprint(s, fp) != HK_OK || hk_share_pubkey(s) == NULL))
        abort();
    hk_share_free(s);
    return ok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned char fp[HK_HASH_LEN], fp2[HK_HASH_LEN], fp3[HK_HASH_LEN],
        *enc = NULL;
    hk_share *s = NULL, *s2 = NULL;
    size_t len = 0;
    int sealed = sealed_decode(data, size, fp3);

    if (hk_share_decode(data, size, &s) != HK_OK)
        return 0;
    if (!sealed)
        abort();
    if (hk_share_fingerprint(s, fp) != HK_OK ||
        hk_share_encode(s, &enc, &len) != HK_OK ||
        hk_share_decode(enc, len, &s2) != HK_OK ||
        hk_share_fingerprint(s2, fp2) != HK_OK ||
        memcmp(fp, fp2, HK_HASH_LEN) != 0 || memcmp(fp, fp3, HK_HASH_LEN) ||
        s2->role != s->role || hk_share_pubkey(s2) == NULL)
        abort();
    OPENSSL_clear_free(enc, len);
    hk_share_free(s);
    hk_share_free(s2);
    return 0;
}
