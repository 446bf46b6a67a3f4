/* Setup records: the public record round-trips and its proof is checked;
 * any altered value is refused; the secret record round-trips. */
#include <string.h>

#include <openssl/crypto.h>

#include "mpc/codec.h"
#include "mpc/setup.h"
#include "tests/unit/check.h"
#include "tests/unit/verify.h"

static void same_params(const hk_rped *a, const hk_rped *b)
{
    unsigned char fa[HK_HASH_LEN], fb[HK_HASH_LEN];

    CHECK_OK(hk_rped_fingerprint(a, fa));
    CHECK_OK(hk_rped_fingerprint(b, fb));
    CHECK(memcmp(fa, fb, HK_HASH_LEN) == 0);
}

/* Flips one hex digit at the first occurrence of `key` + offset. */
static void flip_at(unsigned char *buf, size_t len, const char *key, size_t off)
{
    char *p = memmem(buf, len, key, strlen(key));

    CHECK(p != NULL);
    p += strlen(key) + off;
    *p = *p == '0' ? '1' : '0';
}

int main(void)
{
    const hk_rped_secret *sec = hk_test_rped_secret();
    unsigned char *rec = NULL, *sr = NULL;
    size_t len = 0, slen = 0;
    hk_rped *rp = NULL;
    hk_rped_secret *back = NULL;
    static const char *const keys[] = {
        "\"N\":\"", "\"ped_s\":\"", "\"ped_t\":\"", "\"A\":[\"", "\"z\":[\""};
    size_t i;

    CHECK_OK(hk_setup_encode(sec, &rec, &len));
    CHECK_OK(hk_setup_decode(rec, len, &rp));
    same_params(rp, &sec->pub);
    hk_rped_free(rp);
    for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        unsigned char *bad = OPENSSL_memdup(rec, len);

        flip_at(bad, len, keys[i], 300);
        rp = NULL;
        CHECK(hk_setup_decode(bad, len, &rp) != HK_OK && rp == NULL);
        OPENSSL_free(bad);
    }
    CHECK_ERR(hk_setup_decode(rec, len - 1, &rp), HK_ERR_DECODE);
    CHECK_ERR(hk_setup_decode(rec, HK_RECORD_MAX + 1, &rp), HK_ERR_TOO_BIG);

    CHECK_OK(hk_setup_secret_encode(sec, &sr, &slen));
    CHECK_OK(hk_setup_secret_decode(sr, slen, &back));
    same_params(&back->pub, &sec->pub);
    CHECK(BN_cmp(back->lambda, sec->lambda) == 0);
    hk_rped_secret_free(back);
    flip_at(sr, slen, "\"lambda\":\"", 10);
    CHECK_OK(hk_setup_secret_decode(sr, slen, &back)); /* another s */
    CHECK(BN_cmp(back->pub.s, sec->pub.s) != 0);
    hk_rped_secret_free(back);
    flip_at(sr, slen, "\"p\":\"", 0);
    CHECK(hk_setup_secret_decode(sr, slen, &back) != HK_OK);
    OPENSSL_clear_free(sr, slen);
    OPENSSL_free(rec);
    printf("test_setup: ok\n");
    return 0;
}
