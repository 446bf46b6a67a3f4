/* Malicious Paillier moduli and modulus proofs (see cheat.h). */
#include <openssl/crypto.h>

#include "mpc/transcript.h"
#include "tests/unit/check.h"
#include "tests/unit/cheat.h"

void hk_cheat_nonsquarefree(int bits, BIGNUM *n, BIGNUM *p, BIGNUM *q)
{
    BIGNUM *a = BN_new(), *b = BN_new();
    BN_CTX *ctx = BN_CTX_new();

    CHECK(a != NULL && b != NULL && ctx != NULL);
    do {
        CHECK(BN_generate_prime_ex2(a, bits / 4, 0, NULL, NULL, NULL, ctx));
        CHECK(BN_generate_prime_ex2(b, bits / 2, 0, NULL, NULL, NULL, ctx));
        CHECK(BN_sqr(n, a, ctx) && BN_mul(n, n, b, ctx));
    } while (BN_num_bits(n) != bits);
    if (p != NULL)
        CHECK(BN_copy(p, a) != NULL);
    if (q != NULL)
        CHECK(BN_copy(q, b) != NULL);
    BN_free(a);
    BN_free(b);
    BN_CTX_free(ctx);
}

void hk_cheat_small_factor(int bits, unsigned long f, BIGNUM *n)
{
    BIGNUM *x = BN_new();
    int fbits = 0;

    CHECK(x != NULL && f > 1);
    while (f >> fbits)
        fbits++;
    /* x of bits - fbits + 1 bits: f*x has bits or bits + 1 bits. */
    do {
        CHECK(
            BN_rand(x, bits - fbits + 1, BN_RAND_TOP_ONE, BN_RAND_BOTTOM_ODD));
        CHECK(BN_copy(n, x) != NULL && BN_mul_word(n, f));
    } while (BN_num_bits(n) != bits);
    BN_free(x);
}

void hk_cheat_nthroot(const BIGNUM *n, const BIGNUM *m, const hk_binding *b,
                      hk_role role, hk_nthroot_proof *pf)
{
    size_t each = (size_t)BN_num_bytes(n) + 16, i;
    unsigned char *buf = OPENSSL_malloc(each * HK_NTH_ROOTS);
    BN_CTX *ctx = BN_CTX_new();
    BIGNUM *d = BN_new(), *rho = BN_new();
    hk_ts t;

    CHECK(buf != NULL && ctx != NULL && d != NULL && rho != NULL);
    CHECK(BN_mod_inverse(d, n, m, ctx) != NULL);
    CHECK_OK(hk_ts_init(&t, "paillier-modulus", b, role));
    CHECK_OK(hk_ts_add_bn(&t, "N", n));
    CHECK_OK(hk_ts_final(&t, buf, each * HK_NTH_ROOTS));
    for (i = 0; i < HK_NTH_ROOTS; i++) {
        CHECK(BN_bin2bn(buf + i * each, (int)each, rho) != NULL);
        CHECK(BN_nnmod(rho, rho, n, ctx));
        CHECK((pf->sigma[i] = BN_new()) != NULL);
        CHECK(BN_mod_exp(pf->sigma[i], rho, d, n, ctx));
    }
    BN_free(d);
    BN_free(rho);
    BN_CTX_free(ctx);
    OPENSSL_free(buf);
}
