/* The bottom library (common/): the AEAD every sealed blob uses (round
 * trip, every byte of the blob flipped, truncated, extended, wrong key,
 * wrong associated data, bounds) and the strict hex codec. */
#include <string.h>

#include <openssl/crypto.h>

#include <openssl/rand.h>

#include "common/aead.h"
#include "common/hex.h"
#include "tests/unit/check.h"

static void test_aead_round_trip(void)
{
    unsigned char key[HK_AEAD_KEY_LEN], key2[HK_AEAD_KEY_LEN];
    unsigned char pt[100], out[100], blob[100 + HK_AEAD_OVERHEAD],
        blob2[100 + HK_AEAD_OVERHEAD];
    static const unsigned char aad[] = "halfkey/test/aad";
    size_t i, n = sizeof(blob);

    CHECK(RAND_bytes(key, sizeof(key)) == 1 && RAND_bytes(pt, sizeof(pt)) == 1);
    memcpy(key2, key, sizeof(key));
    key2[0] ^= 1;
    CHECK_OK(hk_aead_seal(key, aad, sizeof(aad), pt, sizeof(pt), blob));
    CHECK_OK(hk_aead_open(key, aad, sizeof(aad), blob, n, out));
    CHECK(memcmp(out, pt, sizeof(pt)) == 0);
    /* a fresh nonce per seal: the same input seals differently */
    CHECK_OK(hk_aead_seal(key, aad, sizeof(aad), pt, sizeof(pt), blob2));
    CHECK(memcmp(blob, blob2, HK_AEAD_NONCE_LEN) != 0);
    for (i = 0; i < n; i++) { /* every byte: nonce, ciphertext, tag */
        blob[i] ^= 0x40;
        CHECK_ERR(hk_aead_open(key, aad, sizeof(aad), blob, n, out),
                  HK_ERR_SEAL);
        blob[i] ^= 0x40;
    }
    CHECK_ERR(hk_aead_open(key2, aad, sizeof(aad), blob, n, out), HK_ERR_SEAL);
    CHECK_ERR(hk_aead_open(key, aad, sizeof(aad) - 1, blob, n, out),
              HK_ERR_SEAL);
    CHECK_ERR(hk_aead_open(key, NULL, 0, blob, n, out), HK_ERR_SEAL);
    CHECK_ERR(hk_aead_open(key, aad, sizeof(aad), blob, n - 1, out),
              HK_ERR_SEAL);
    CHECK_ERR(
        hk_aead_open(key, aad, sizeof(aad), blob, HK_AEAD_OVERHEAD - 1, out),
        HK_ERR_SEAL);
    /* a failed open leaves no plaintext behind */
    memset(out, 0xaa, sizeof(out));
    blob[HK_AEAD_NONCE_LEN] ^= 1;
    CHECK_ERR(hk_aead_open(key, aad, sizeof(aad), blob, n, out), HK_ERR_SEAL);
    for (i = 0; i < sizeof(out); i++)
        CHECK(out[i] == 0);
}

static void test_aead_edges(void)
{
    unsigned char key[HK_AEAD_KEY_LEN] = {1}, blob[HK_AEAD_OVERHEAD], pt[1];

    CHECK_OK(hk_aead_seal(key, NULL, 0, NULL, 0, blob)); /* empty */
    CHECK_OK(hk_aead_open(key, NULL, 0, blob, sizeof(blob), pt));
    CHECK_ERR(hk_aead_seal(NULL, NULL, 0, NULL, 0, blob), HK_ERR_ARG);
    CHECK_ERR(hk_aead_seal(key, NULL, 1, NULL, 0, blob), HK_ERR_ARG);
    CHECK_ERR(hk_aead_seal(key, NULL, 0, pt, HK_AEAD_MAX + 1, blob),
              HK_ERR_TOO_BIG);
    CHECK_ERR(hk_aead_open(key, NULL, 0, blob, HK_AEAD_MAX + 1000, pt),
              HK_ERR_TOO_BIG);
}

static void test_hex(void)
{
    static const unsigned char b[] = {0x00, 0x9f, 0xa0, 0xff};
    unsigned char out[4];
    char h[9];

    hk_hex(b, sizeof(b), h);
    CHECK(strcmp(h, "009fa0ff") == 0);
    CHECK(hk_unhex(h, 8, out, 4) && memcmp(out, b, 4) == 0);
    CHECK(!hk_unhex("009FA0FF", 8, out, 4)); /* one encoding per value */
    CHECK(!hk_unhex("009fa0f", 7, out, 4));
    CHECK(!hk_unhex("009fa0fg", 8, out, 4));
    CHECK(!hk_unhex("009fa0ff00", 10, out, 4));
}

static void test_b64(void)
{
    static const unsigned char b[] = {0x00, 0x9f, 0xa0, 0xff, 0x41};
    unsigned char *out = NULL;
    size_t n = 0, i;
    char *e;

    for (i = 0; i <= sizeof(b); i++) {
        CHECK((e = hk_b64_encode(b, i)) != NULL &&
              strlen(e) == 4 * ((i + 2) / 3));
        if (i > 0) {
            CHECK(hk_b64_decode(e, strlen(e), i, &out, &n) && n == i &&
                  memcmp(out, b, i) == 0);
            OPENSSL_free(out);
            CHECK(!hk_b64_decode(e, strlen(e), i - 1, &out, &n)); /* max */
        }
        OPENSSL_free(e);
    }
    CHECK(!hk_b64_decode("AJ+g/w=", 7, 9, &out, &n));  /* length */
    CHECK(!hk_b64_decode("AJ+g/x==", 8, 9, &out, &n)); /* pad bits */
    CHECK(!hk_b64_decode("AJ+g /w=", 8, 9, &out, &n)); /* whitespace */
    CHECK(!hk_b64_decode("AJ-g_w==", 8, 9, &out, &n)); /* base64url */
    CHECK(!hk_b64_decode("", 0, 9, &out, &n));
}

int main(void)
{
    test_aead_round_trip();
    test_aead_edges();
    test_hex();
    test_b64();
    printf("test_common: ok\n");
    return 0;
}
