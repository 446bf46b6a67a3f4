/* Fuzz target: the server's setup records (mpc/setup.h): the public record
 * (hk_setup_decode, which verifies the Pi^prm proof) and the secret one
 * (hk_setup_secret_decode). Every input goes to both decoders. Seeds: a
 * real record of each kind. */
#include <stdlib.h>

#include <openssl/crypto.h>

#include "mpc/setup.h"
#include "tests/fuzz/fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned char fp[HK_HASH_LEN], *enc = NULL;
    hk_rped_secret *sec = NULL, *sec2 = NULL;
    hk_rped *rp = NULL;
    size_t len = 0;

    if (hk_setup_decode(data, size, &rp) == HK_OK) {
        if (hk_rped_fingerprint(rp, fp) != HK_OK)
            abort();
        hk_rped_free(rp);
    }
    if (hk_setup_secret_decode(data, size, &sec) == HK_OK) {
        /* What the server stores must load again. */
        if (hk_setup_secret_encode(sec, &enc, &len) != HK_OK ||
            hk_setup_secret_decode(enc, len, &sec2) != HK_OK)
            abort();
        OPENSSL_clear_free(enc, len);
        hk_rped_secret_free(sec);
        hk_rped_secret_free(sec2);
    }
    return 0;
}
