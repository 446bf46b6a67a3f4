/* Unit tests of the layers under the protocol, on secp256k1 and P-256:
 *  - curve: strict scalar and point parsing, scalar arithmetic identities
 *    (cross-checked with BIGNUM), point arithmetic, infinity, the ECDSA
 *    digest rule, low-S, and ECDSA verification;
 *  - Paillier: round trips, the CRT encryption, homomorphic operations,
 *    ciphertext and modulus checks, rebuilding a key from its primes;
 *  - zero-knowledge proofs: Schnorr, the N-th root modulus proof (including
 *    a non-square-free modulus with a cheating prover), Pi^log* (every
 *    field of a repetition altered, false statements, other bindings), and
 *    the ring-Pedersen Pi^prm proof;
 *  - constant-time arithmetic (mpc/ct.c): products, sums, reductions,
 *    the L function and CRT recombination against BIGNUM, on random and
 *    edge values (0, m - 1) for moduli of 256 to 3072 bits;
 *  - codec: every strict-parsing rule and every getter's checks;
 *  - share records: every field altered, truncation, extra and missing
 *    keys rejected; decode then encode is byte-identical. (P2 cannot
 *    check N and ckey on its own: a record with another valid N or ckey
 *    decodes, but into a share with another fingerprint, which P1 then
 *    refuses to sign with: HK_ERR_EPOCH.) */
#include <ctype.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "mpc/codec.h"
#include "mpc/ct.h"
#include "mpc/curve.h"
#include "mpc/paillier.h"
#include "mpc/share.h"
#include "mpc/zk.h"
#include "tests/unit/check.h"
#include "tests/unit/cheat.h"
#include "tests/unit/driver.h"
#include "tests/unit/verify.h"

#define ITERS 16

static const hk_curve_id curves[] = {HK_CURVE_SECP256K1, HK_CURVE_P256};

/* ---- helpers ------------------------------------------------------------ */

static hk_scalar scalar_word(hk_curve *c, unsigned long w)
{
    hk_scalar s;
    BIGNUM *b = BN_new();

    CHECK(b != NULL && BN_set_word(b, w));
    CHECK_OK(hk_scalar_from_bn(c, b, &s));
    BN_free(b);
    return s;
}

static hk_scalar scalar_rand(hk_curve *c)
{
    hk_scalar s;

    CHECK_OK(hk_scalar_random(c, &s));
    return s;
}

static BIGNUM *bn_of(const hk_scalar *s)
{
    BIGNUM *b = BN_bin2bn(s->b, HK_SCALAR_LEN, NULL);

    CHECK(b != NULL);
    return b;
}

/* 1 if the scalar equals the BIGNUM's value. */
static int scalar_is_bn(const hk_scalar *s, const BIGNUM *v)
{
    BIGNUM *b = bn_of(s);
    int eq = BN_cmp(b, v) == 0;

    BN_free(b);
    return eq;
}

static hk_point point_of(hk_curve *c, const hk_scalar *k)
{
    hk_point p;

    CHECK_OK(hk_point_mul_gen(c, k, &p));
    return p;
}

static void rand_binding(hk_binding *b, hk_curve_id curve)
{
    memset(b, 0, sizeof(*b));
    b->curve = curve;
    CHECK(RAND_bytes(b->sid, HK_ID_LEN) == 1);
    CHECK(RAND_bytes(b->kid, HK_ID_LEN) == 1);
}

/* ---- curve -------------------------------------------------------------- */

static void test_scalar_parse(hk_curve *c)
{
    const BIGNUM *q = hk_curve_order(c);
    unsigned char b[HK_SCALAR_LEN + 1];
    BIGNUM *v = BN_dup(q);
    hk_scalar s;

    CHECK(v != NULL);
    memset(b, 0, sizeof(b));
    CHECK_ERR(hk_scalar_parse(c, b, HK_SCALAR_LEN, &s), HK_ERR_SCALAR);
    CHECK(BN_bn2binpad(q, b, HK_SCALAR_LEN) == HK_SCALAR_LEN);
    CHECK_ERR(hk_scalar_parse(c, b, HK_SCALAR_LEN, &s), HK_ERR_SCALAR);
    CHECK(BN_add_word(v, 1) && BN_bn2binpad(v, b, HK_SCALAR_LEN) > 0);
    CHECK_ERR(hk_scalar_parse(c, b, HK_SCALAR_LEN, &s), HK_ERR_SCALAR);
    memset(b, 0xff, HK_SCALAR_LEN);
    CHECK_ERR(hk_scalar_parse(c, b, HK_SCALAR_LEN, &s), HK_ERR_SCALAR);
    /* q - 1 is the largest valid scalar. */
    CHECK(BN_sub_word(v, 2) && BN_bn2binpad(v, b, HK_SCALAR_LEN) > 0);
    CHECK_OK(hk_scalar_parse(c, b, HK_SCALAR_LEN, &s));
    CHECK(memcmp(s.b, b, HK_SCALAR_LEN) == 0);
    /* Wrong lengths, even with a valid value inside. */
    CHECK_ERR(hk_scalar_parse(c, b, HK_SCALAR_LEN - 1, &s), HK_ERR_SCALAR);
    CHECK_ERR(hk_scalar_parse(c, b, 0, &s), HK_ERR_SCALAR);
    memset(b, 0, sizeof(b));
    b[HK_SCALAR_LEN] = 1;
    CHECK_ERR(hk_scalar_parse(c, b, HK_SCALAR_LEN + 1, &s), HK_ERR_SCALAR);
    CHECK_OK(hk_scalar_parse(c, b + 1, HK_SCALAR_LEN, &s));
    BN_free(v);
}

/* a*a^-1 = 1, a + (-a) = 0, a(b + d) = ab + ad, and add/mul equal
 * BN_mod_add/BN_mod_mul. */
static void test_scalar_identities(hk_curve *c)
{
    const BIGNUM *q = hk_curve_order(c);
    hk_scalar one = scalar_word(c, 1), zero, a, b, d, t, u, v;
    BN_CTX *ctx = BN_CTX_new();
    BIGNUM *x, *y, *r = BN_new();
    int i;

    CHECK(ctx != NULL && r != NULL);
    memset(&zero, 0, sizeof(zero));
    for (i = 0; i < ITERS; i++) {
        a = scalar_rand(c);
        b = scalar_rand(c);
        d = scalar_rand(c);
        CHECK_OK(hk_scalar_inv(c, &a, &t));
        CHECK_OK(hk_scalar_mul(c, &a, &t, &u));
        CHECK(hk_scalar_eq(&u, &one));
        CHECK_OK(hk_scalar_neg(c, &a, &t));
        CHECK(!hk_scalar_is_zero(&t) && !hk_scalar_eq(&t, &a));
        CHECK_OK(hk_scalar_add(c, &a, &t, &u));
        CHECK(hk_scalar_is_zero(&u));
        CHECK_OK(hk_scalar_add(c, &b, &d, &t));
        CHECK_OK(hk_scalar_mul(c, &a, &t, &u));
        CHECK_OK(hk_scalar_mul(c, &a, &b, &t));
        CHECK_OK(hk_scalar_mul(c, &a, &d, &v));
        CHECK_OK(hk_scalar_add(c, &t, &v, &v));
        CHECK(hk_scalar_eq(&u, &v));
        x = bn_of(&a);
        y = bn_of(&b);
        CHECK_OK(hk_scalar_add(c, &a, &b, &t));
        CHECK(BN_mod_add(r, x, y, q, ctx) && scalar_is_bn(&t, r));
        CHECK_OK(hk_scalar_mul(c, &a, &b, &t));
        CHECK(BN_mod_mul(r, x, y, q, ctx) && scalar_is_bn(&t, r));
        /* Outputs may alias inputs. */
        t = a;
        CHECK_OK(hk_scalar_mul(c, &t, &b, &t));
        CHECK(BN_mod_mul(r, x, y, q, ctx) && scalar_is_bn(&t, r));
        BN_free(x);
        BN_free(y);
    }
    /* Zero and the top of the range. */
    CHECK_ERR(hk_scalar_inv(c, &zero, &t), HK_ERR_SCALAR);
    CHECK_OK(hk_scalar_neg(c, &zero, &t));
    CHECK(hk_scalar_is_zero(&t));
    CHECK_OK(hk_scalar_add(c, &zero, &b, &t));
    CHECK(hk_scalar_eq(&t, &b));
    CHECK_OK(hk_scalar_mul(c, &zero, &b, &t));
    CHECK(hk_scalar_is_zero(&t));
    CHECK_OK(hk_scalar_mul(c, &b, &zero, &t));
    CHECK(hk_scalar_is_zero(&t));
    CHECK_OK(hk_scalar_neg(c, &one, &t)); /* q - 1 */
    CHECK_OK(hk_scalar_add(c, &t, &one, &u));
    CHECK(hk_scalar_is_zero(&u));
    CHECK_OK(hk_scalar_mul(c, &t, &t, &u));
    CHECK(hk_scalar_eq(&u, &one));
    CHECK_OK(hk_scalar_inv(c, &t, &u));
    CHECK(hk_scalar_eq(&u, &t));
    BN_free(r);
    BN_CTX_free(ctx);
}

/* Increments the 32-byte x coordinate of a compressed point. */
static void x_increment(unsigned char *p)
{
    int i;

    for (i = HK_POINT_LEN - 1; i >= 1; i--)
        if (++p[i] != 0)
            break;
}

static void test_point_parse(hk_curve *c)
{
    hk_scalar one = scalar_word(c, 1);
    hk_point g = point_of(c, &one), p;
    unsigned char b[HK_POINT_LEN + 1];
    static const unsigned char bad_prefix[] = {0x00, 0x01, 0x04, 0x05,
                                               0x06, 0x07, 0x12, 0xff};
    size_t i;
    int tries;

    CHECK(g.b[0] == 2 || g.b[0] == 3);
    CHECK_OK(hk_point_parse(c, g.b, HK_POINT_LEN, &p));
    CHECK(hk_point_eq(&p, &g));
    CHECK_ERR(hk_point_parse(c, g.b, HK_POINT_LEN - 1, &p), HK_ERR_POINT);
    CHECK_ERR(hk_point_parse(c, g.b, 0, &p), HK_ERR_POINT);
    memcpy(b, g.b, HK_POINT_LEN);
    b[HK_POINT_LEN] = 0;
    CHECK_ERR(hk_point_parse(c, b, HK_POINT_LEN + 1, &p), HK_ERR_POINT);
    for (i = 0; i < sizeof(bad_prefix); i++) {
        b[0] = bad_prefix[i];
        CHECK_ERR(hk_point_parse(c, b, HK_POINT_LEN, &p), HK_ERR_POINT);
    }
    /* The other prefix is the negation: valid, and a different point. */
    b[0] = (unsigned char)(g.b[0] ^ 1);
    CHECK_OK(hk_point_parse(c, b, HK_POINT_LEN, &p));
    CHECK(!hk_point_eq(&p, &g));
    /* An x with no point on the curve: about half of all x. */
    memcpy(b, g.b, HK_POINT_LEN);
    for (tries = 0; tries < 200; tries++) {
        x_increment(b);
        if (hk_point_parse(c, b, HK_POINT_LEN, &p) != HK_OK)
            break;
    }
    CHECK(tries < 200);
    CHECK_ERR(hk_point_parse(c, b, HK_POINT_LEN, &p), HK_ERR_POINT);
    /* x >= the field prime. */
    memset(b + 1, 0xff, HK_POINT_LEN - 1);
    b[0] = 2;
    CHECK_ERR(hk_point_parse(c, b, HK_POINT_LEN, &p), HK_ERR_POINT);
    b[0] = 3;
    CHECK_ERR(hk_point_parse(c, b, HK_POINT_LEN, &p), HK_ERR_POINT);
}

static void test_point_arith(hk_curve *c)
{
    hk_scalar one = scalar_word(c, 1), zero, a, b, ab, t;
    hk_point g = point_of(c, &one), pa, pb, x, y, z;
    unsigned char unc[HK_POINT_UNCOMPRESSED_LEN];
    BN_CTX *ctx = BN_CTX_new();
    BIGNUM *bx;
    int i;

    CHECK(ctx != NULL);
    memset(&zero, 0, sizeof(zero));
    for (i = 0; i < ITERS / 4; i++) {
        a = scalar_rand(c);
        b = scalar_rand(c);
        CHECK_OK(hk_scalar_mul(c, &a, &b, &ab));
        pa = point_of(c, &a);
        pb = point_of(c, &b);
        x = point_of(c, &ab);
        CHECK_OK(hk_point_mul(c, &pb, &a, &y));
        CHECK_OK(hk_point_mul(c, &pa, &b, &z));
        CHECK(hk_point_eq(&x, &y) && hk_point_eq(&x, &z));
        /* P + (-P) is infinity, which no hk_point can hold. */
        CHECK_OK(hk_scalar_neg(c, &a, &t));
        y = point_of(c, &t);
        CHECK(!hk_point_eq(&y, &pa));
        CHECK(memcmp(y.b + 1, pa.b + 1, HK_POINT_LEN - 1) == 0);
        CHECK_ERR(hk_point_add(c, &pa, &y, &z), HK_ERR_POINT);
        /* P + P = 2P and P + G = (a + 1)G. */
        CHECK_OK(hk_point_add(c, &pa, &pa, &z));
        CHECK_OK(hk_scalar_add(c, &a, &a, &t));
        y = point_of(c, &t);
        CHECK(hk_point_eq(&z, &y));
        CHECK_OK(hk_point_add(c, &pa, &g, &z));
        CHECK_OK(hk_scalar_add(c, &a, &one, &t));
        y = point_of(c, &t);
        CHECK(hk_point_eq(&z, &y));
        /* Uncompressed form and x mod q. */
        CHECK_OK(hk_point_uncompressed(c, &pa, unc));
        CHECK(unc[0] == 4 && memcmp(unc + 1, pa.b + 1, 32) == 0);
        CHECK((unc[64] & 1) == (pa.b[0] & 1));
        CHECK_OK(hk_point_x_mod_q(c, &pa, &t));
        CHECK((bx = BN_bin2bn(pa.b + 1, 32, NULL)) != NULL);
        CHECK(BN_nnmod(bx, bx, hk_curve_order(c), ctx));
        CHECK(scalar_is_bn(&t, bx));
        BN_free(bx);
    }
    CHECK_ERR(hk_point_mul_gen(c, &zero, &x), HK_ERR_SCALAR);
    CHECK_ERR(hk_point_mul(c, &g, &zero, &x), HK_ERR_SCALAR);
    BN_CTX_free(ctx);
}

/* The batch a[i]*G + P[m[i]] against one multiplication and one addition
 * per entry; a sum at infinity, a zero scalar and a bad index refused. */
static void test_point_batch(hk_curve *c)
{
    hk_scalar a[8], t, zero;
    hk_point P[3], out[8], want;
    unsigned char m[8] = {0, 1, 2, 1, 0, 2, 2, 1};
    int i;

    memset(&zero, 0, sizeof(zero));
    for (i = 1; i < 3; i++) {
        t = scalar_rand(c);
        P[i] = point_of(c, &t);
    }
    for (i = 0; i < 8; i++)
        a[i] = scalar_rand(c);
    CHECK_OK(hk_point_mul_gen_add_pub(c, 8, a, P, 3, m, out));
    for (i = 0; i < 8; i++) {
        want = point_of(c, &a[i]);
        if (m[i] != 0)
            CHECK_OK(hk_point_add(c, &want, &P[m[i]], &want));
        CHECK(hk_point_eq(&want, &out[i]));
    }
    /* a[1]*G + P[1] at infinity: P[1] = -a[1]*G */
    CHECK_OK(hk_scalar_neg(c, &a[1], &t));
    P[1] = point_of(c, &t);
    CHECK_ERR(hk_point_mul_gen_add_pub(c, 8, a, P, 3, m, out), HK_ERR_POINT);
    a[1] = zero;
    CHECK_ERR(hk_point_mul_gen_add_pub(c, 8, a, P, 3, m, out), HK_ERR_SCALAR);
    m[1] = 3;
    CHECK_ERR(hk_point_mul_gen_add_pub(c, 8, a, P, 3, m, out), HK_ERR_ARG);
}

static void test_digest(hk_curve *c)
{
    unsigned char dig[65], pad[HK_SCALAR_LEN];
    hk_scalar s, t;
    BIGNUM *v;
    BN_CTX *ctx = BN_CTX_new();

    CHECK(ctx != NULL);
    CHECK(RAND_bytes(dig, sizeof(dig)) == 1);
    /* Longer than q: only the leftmost 256 bits count. */
    CHECK_OK(hk_scalar_from_digest(c, dig, 64, &s));
    CHECK_OK(hk_scalar_from_digest(c, dig, 32, &t));
    CHECK(hk_scalar_eq(&s, &t));
    CHECK_OK(hk_scalar_from_digest(c, dig, 33, &s));
    CHECK(hk_scalar_eq(&s, &t));
    /* Shorter: its integer value. */
    CHECK_OK(hk_scalar_from_digest(c, dig, 20, &s));
    memset(pad, 0, sizeof(pad));
    memcpy(pad + 12, dig, 20);
    CHECK(memcmp(s.b, pad, HK_SCALAR_LEN) == 0);
    CHECK_OK(hk_scalar_from_digest(c, dig, 1, &s));
    CHECK(hk_scalar_is_zero(&s) == (dig[0] == 0) && s.b[31] == dig[0]);
    /* 32 bytes >= q are reduced. */
    memset(dig, 0xff, 32);
    CHECK_OK(hk_scalar_from_digest(c, dig, 32, &s));
    CHECK((v = BN_bin2bn(dig, 32, NULL)) != NULL);
    CHECK(BN_nnmod(v, v, hk_curve_order(c), ctx) && scalar_is_bn(&s, v));
    CHECK_ERR(hk_scalar_from_digest(c, dig, 0, &s), HK_ERR_ARG);
    CHECK_ERR(hk_scalar_from_digest(c, dig, 65, &s), HK_ERR_ARG);
    BN_free(v);
    BN_CTX_free(ctx);
}

static void test_low_s(hk_curve *c)
{
    BIGNUM *half = BN_dup(hk_curve_order(c)), *v;
    hk_scalar one = scalar_word(c, 1), s, t, n;
    int i;

    CHECK(half != NULL && BN_rshift1(half, half)); /* (q - 1) / 2 */
    for (i = 0; i < ITERS; i++) {
        s = scalar_rand(c);
        CHECK_OK(hk_scalar_low_s(c, &s, &t));
        CHECK_OK(hk_scalar_neg(c, &s, &n));
        CHECK(hk_scalar_eq(&t, &s) || hk_scalar_eq(&t, &n));
        v = bn_of(&t);
        CHECK(BN_cmp(v, half) <= 0);
        BN_free(v);
    }
    CHECK_OK(hk_scalar_neg(c, &one, &s));
    CHECK_OK(hk_scalar_low_s(c, &s, &t));
    CHECK(hk_scalar_eq(&t, &one));
    CHECK_OK(hk_scalar_from_bn(c, half, &s));
    CHECK_OK(hk_scalar_low_s(c, &s, &t));
    CHECK(hk_scalar_eq(&t, &s));
    CHECK(BN_add_word(half, 1));
    CHECK_OK(hk_scalar_from_bn(c, half, &s));
    CHECK_OK(hk_scalar_low_s(c, &s, &t));
    CHECK(BN_sub_word(half, 1) && scalar_is_bn(&t, half));
    BN_free(half);
}

/* A signature made here by hand verifies; high-S only where the reference
 * library allows it; a changed digest or r = 0 does not. */
static void test_ecdsa_verify(hk_curve *c)
{
    unsigned char dig[32];
    hk_scalar x = scalar_rand(c), k = scalar_rand(c), r, m, s, t, hi, zero;
    hk_point Q = point_of(c, &x), R = point_of(c, &k);

    memset(&zero, 0, sizeof(zero));
    CHECK(RAND_bytes(dig, sizeof(dig)) == 1);
    CHECK_OK(hk_point_x_mod_q(c, &R, &r));
    CHECK_OK(hk_scalar_from_digest(c, dig, sizeof(dig), &m));
    CHECK_OK(hk_scalar_mul(c, &r, &x, &t));
    CHECK_OK(hk_scalar_add(c, &t, &m, &t));
    CHECK_OK(hk_scalar_inv(c, &k, &s));
    CHECK_OK(hk_scalar_mul(c, &s, &t, &s));
    CHECK_OK(hk_scalar_low_s(c, &s, &s));
    CHECK_OK(hk_ecdsa_verify(c, &Q, dig, sizeof(dig), &r, &s));
    CHECK_OK(hk_scalar_neg(c, &s, &hi));
    if (hk_curve_get_id(c) == HK_CURVE_SECP256K1)
        CHECK_ERR(hk_ecdsa_verify(c, &Q, dig, sizeof(dig), &r, &hi),
                  HK_ERR_SIG_ABORT);
    else
        CHECK_OK(hk_ecdsa_verify(c, &Q, dig, sizeof(dig), &r, &hi));
    CHECK_ERR(hk_ecdsa_verify(c, &Q, dig, sizeof(dig), &zero, &s),
              HK_ERR_SIG_ABORT);
    CHECK_ERR(hk_ecdsa_verify(c, &Q, dig, sizeof(dig), &r, &zero),
              HK_ERR_SIG_ABORT);
    dig[5] ^= 0x10;
    CHECK_ERR(hk_ecdsa_verify(c, &Q, dig, sizeof(dig), &r, &s),
              HK_ERR_SIG_ABORT);
}

static void test_curve(hk_curve_id id)
{
    hk_curve *c = NULL;
    hk_curve_id back;

    CHECK_OK(hk_curve_new(id, &c));
    CHECK(hk_curve_get_id(c) == id);
    CHECK_OK(hk_curve_from_name(hk_curve_name(id), &back));
    CHECK(back == id);
    CHECK(BN_num_bits(hk_curve_order(c)) == 256);
    test_scalar_parse(c);
    test_scalar_identities(c);
    test_point_parse(c);
    test_point_arith(c);
    test_point_batch(c);
    test_digest(c);
    test_low_s(c);
    test_ecdsa_verify(c);
    hk_curve_free(c);
}

static void test_curve_names(void)
{
    hk_curve_id id;
    hk_curve *c = NULL;

    CHECK_ERR(hk_curve_from_name("p384", &id), HK_ERR_CURVE);
    CHECK_ERR(hk_curve_from_name("P256", &id), HK_ERR_CURVE);
    CHECK_ERR(hk_curve_from_name("", &id), HK_ERR_CURVE);
    CHECK(hk_curve_name((hk_curve_id)3) == NULL);
    CHECK_ERR(hk_curve_new((hk_curve_id)3, &c), HK_ERR_CURVE);
    CHECK(c == NULL);
}

/* ---- Paillier ----------------------------------------------------------- */

/* Enc with a given r equals the CRT encryption, both decrypt to m. */
static void paillier_roundtrip(const hk_paillier_sk *sk, const BIGNUM *m)
{
    const hk_paillier_pk *pk = hk_paillier_sk_pk(sk);
    BIGNUM *r = BN_new(), *c1 = BN_new(), *c2 = BN_new(), *d = BN_new();

    CHECK(r != NULL && c1 != NULL && c2 != NULL && d != NULL);
    CHECK_OK(hk_paillier_rand_unit(pk, r));
    CHECK_OK(hk_paillier_unit_check(pk, r));
    CHECK_OK(hk_paillier_enc(pk, m, r, c1));
    CHECK_OK(hk_paillier_enc_sk(sk, m, r, c2));
    CHECK(BN_cmp(c1, c2) == 0);
    CHECK_OK(hk_paillier_ct_check(pk, c1));
    CHECK_OK(hk_paillier_dec(sk, c1, d));
    CHECK(BN_cmp(d, m) == 0);
    CHECK_OK(hk_paillier_enc(pk, m, NULL, c2));
    CHECK(BN_cmp(c1, c2) != 0); /* fresh randomness */
    CHECK_OK(hk_paillier_dec(sk, c2, d));
    CHECK(BN_cmp(d, m) == 0);
    BN_free(r);
    BN_free(c1);
    BN_free(c2);
    BN_free(d);
}

static void test_paillier_enc(const hk_paillier_sk *sk)
{
    const hk_paillier_pk *pk = hk_paillier_sk_pk(sk);
    const BIGNUM *n = hk_paillier_n(pk);
    BIGNUM *m = BN_new(), *c = BN_new();

    CHECK(m != NULL && c != NULL);
    BN_zero(m);
    paillier_roundtrip(sk, m);
    CHECK(BN_one(m));
    paillier_roundtrip(sk, m);
    CHECK(BN_copy(m, n) && BN_sub_word(m, 1));
    paillier_roundtrip(sk, m);
    CHECK(BN_rand_range(m, n));
    paillier_roundtrip(sk, m);
    /* Plaintexts outside [0, N). */
    CHECK_ERR(hk_paillier_enc(pk, n, NULL, c), HK_ERR_ARG);
    CHECK(BN_one(m));
    BN_set_negative(m, 1);
    CHECK_ERR(hk_paillier_enc(pk, m, NULL, c), HK_ERR_ARG);
    BN_free(m);
    BN_free(c);
}

static void test_paillier_homomorphic(const hk_paillier_sk *sk)
{
    const hk_paillier_pk *pk = hk_paillier_sk_pk(sk);
    const BIGNUM *n = hk_paillier_n(pk);
    BIGNUM *a = BN_new(), *b = BN_new(), *k = BN_new(), *ca = BN_new(),
           *cb = BN_new(), *cs = BN_new(), *d = BN_new(), *want = BN_new();
    BN_CTX *ctx = BN_CTX_new();
    int i;

    CHECK(a && b && k && ca && cb && cs && d && want && ctx);
    for (i = 0; i < 4; i++) {
        CHECK(BN_rand_range(a, n) && BN_rand_range(b, n));
        CHECK(BN_rand(k, 256, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY));
        CHECK_OK(hk_paillier_enc(pk, a, NULL, ca));
        CHECK_OK(hk_paillier_enc(pk, b, NULL, cb));
        CHECK_OK(hk_paillier_add(pk, ca, cb, cs));
        CHECK_OK(hk_paillier_dec(sk, cs, d));
        CHECK(BN_mod_add(want, a, b, n, ctx) && BN_cmp(d, want) == 0);
        CHECK_OK(hk_paillier_mul(pk, ca, k, cs));
        CHECK_OK(hk_paillier_dec(sk, cs, d));
        CHECK(BN_mod_mul(want, a, k, n, ctx) && BN_cmp(d, want) == 0);
    }
    BN_zero(k);
    CHECK_OK(hk_paillier_mul(pk, ca, k, cs));
    CHECK_OK(hk_paillier_dec(sk, cs, d));
    CHECK(BN_is_zero(d));
    BN_free(a);
    BN_free(b);
    BN_free(k);
    BN_free(ca);
    BN_free(cb);
    BN_free(cs);
    BN_free(d);
    BN_free(want);
    BN_CTX_free(ctx);
}

/* The fixed-base table's c^k against hk_paillier_mul's for exponents at
 * the edges (0, 1, each comb row's and block's first and last bit, all
 * ones) and random ones, on the key's modulus (2048) and on a 3072-bit
 * one (an odd number: both compute c^k mod n^2 the same way). */
static void check_fb(const hk_paillier_pk *pk)
{
    static const int bits[] = {0,   1,   25,  26,  51,  52,  77,  78,  103,
                               104, 129, 155, 156, 181, 207, 208, 233, 255};
    BIGNUM *c = BN_new(), *k = BN_new(), *got = BN_new(), *want = BN_new(),
           *other = BN_new();
    hk_paillier_fb *t = NULL;
    size_t i;

    CHECK(c && k && got && want && other);
    CHECK(BN_rand_range(c, hk_paillier_n2(pk)) && !BN_is_zero(c));
    CHECK_OK(hk_paillier_fb_new(pk, c, &t));
    CHECK(hk_paillier_fb_is_for(t, pk, c));
    CHECK(BN_copy(other, c) && BN_add_word(other, 1));
    CHECK(!hk_paillier_fb_is_for(t, pk, other) &&
          !hk_paillier_fb_is_for(NULL, pk, c));
    for (i = 0; i < 4 + sizeof(bits) / sizeof(bits[0]) + 8; i++) {
        if (i == 0)
            BN_zero(k);
        else if (i == 1)
            CHECK(BN_one(k));
        else if (i == 2) /* 2^256 - 1 */
            CHECK(BN_one(k) && BN_lshift(k, k, 256) && BN_sub_word(k, 1));
        else if (i == 3) /* every comb index nonzero at once */
            CHECK(BN_rand(k, 256, BN_RAND_TOP_ONE, BN_RAND_BOTTOM_ODD));
        else if (i < 4 + sizeof(bits) / sizeof(bits[0])) {
            BN_zero(k);
            CHECK(BN_set_bit(k, bits[i - 4]));
        } else
            CHECK(BN_rand(k, 256, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY));
        BN_set_flags(k, BN_FLG_CONSTTIME);
        CHECK_OK(hk_paillier_fb_exp(t, k, got));
        CHECK_OK(hk_paillier_mul(pk, c, k, want));
        CHECK(BN_cmp(got, want) == 0);
    }
    /* k >= 2^256 or negative is refused; another reference outlives the
     * first */
    CHECK(BN_one(k) && BN_lshift(k, k, 256));
    CHECK_ERR(hk_paillier_fb_exp(t, k, got), HK_ERR_ARG);
    BN_set_negative(k, 1);
    CHECK_ERR(hk_paillier_fb_exp(t, k, got), HK_ERR_ARG);
    CHECK(hk_paillier_fb_ref(t) == t);
    hk_paillier_fb_free(t);
    CHECK(BN_one(k));
    CHECK_OK(hk_paillier_fb_exp(t, k, got));
    CHECK(BN_cmp(got, c) == 0);
    hk_paillier_fb_free(t);
    BN_zero(c);
    CHECK_ERR(hk_paillier_fb_new(pk, c, &t), HK_ERR_PAILLIER);
    CHECK_ERR(hk_paillier_fb_new(pk, hk_paillier_n2(pk), &t), HK_ERR_PAILLIER);
    BN_free(c);
    BN_free(k);
    BN_free(got);
    BN_free(want);
    BN_free(other);
}

static void test_paillier_fb(const hk_paillier_sk *sk)
{
    hk_paillier_pk *pk3072 = NULL;
    BIGNUM *n = BN_new();

    check_fb(hk_paillier_sk_pk(sk));
    CHECK(n && BN_rand(n, 3072, BN_RAND_TOP_ONE, BN_RAND_BOTTOM_ODD));
    CHECK_OK(hk_paillier_pk_stored(n, 3072, &pk3072));
    check_fb(pk3072);
    hk_paillier_pk_free(pk3072);
    BN_free(n);
}

static void test_paillier_ct_check(const hk_paillier_sk *sk)
{
    const hk_paillier_pk *pk = hk_paillier_sk_pk(sk);
    const BIGNUM *n = hk_paillier_n(pk), *n2 = hk_paillier_n2(pk);
    BIGNUM *v = BN_new(), *c = BN_new();
    BN_CTX *ctx = BN_CTX_new();

    CHECK(v != NULL && c != NULL && ctx != NULL);
    CHECK(BN_sqr(v, n, ctx) && BN_cmp(v, n2) == 0);
    CHECK_OK(hk_paillier_enc(pk, BN_value_one(), NULL, c));
    CHECK_OK(hk_paillier_ct_check(pk, c));
    BN_zero(v);
    CHECK_ERR(hk_paillier_ct_check(pk, v), HK_ERR_PAILLIER);
    CHECK_ERR(hk_paillier_ct_check(pk, n2), HK_ERR_PAILLIER);
    CHECK(BN_copy(v, n2) && BN_add_word(v, 1));
    CHECK_ERR(hk_paillier_ct_check(pk, v), HK_ERR_PAILLIER);
    CHECK_ERR(hk_paillier_ct_check(pk, hk_paillier_sk_p(sk)), HK_ERR_PAILLIER);
    CHECK_ERR(hk_paillier_ct_check(pk, hk_paillier_sk_q(sk)), HK_ERR_PAILLIER);
    CHECK_ERR(hk_paillier_ct_check(pk, n), HK_ERR_PAILLIER);
    CHECK(BN_mul(v, c, hk_paillier_sk_p(sk), ctx) && BN_mod(v, v, n2, ctx));
    CHECK_ERR(hk_paillier_ct_check(pk, v), HK_ERR_PAILLIER);
    CHECK(BN_copy(v, c));
    BN_set_negative(v, 1);
    CHECK_ERR(hk_paillier_ct_check(pk, v), HK_ERR_PAILLIER);
    /* Units of Z*_N. */
    CHECK_OK(hk_paillier_unit_check(pk, BN_value_one()));
    CHECK_ERR(hk_paillier_unit_check(pk, n), HK_ERR_PAILLIER);
    CHECK_ERR(hk_paillier_unit_check(pk, hk_paillier_sk_p(sk)),
              HK_ERR_PAILLIER);
    BN_zero(v);
    CHECK_ERR(hk_paillier_unit_check(pk, v), HK_ERR_PAILLIER);
    BN_free(v);
    BN_free(c);
    BN_CTX_free(ctx);
}

static void expect_bad_modulus(const BIGNUM *n, int bits)
{
    hk_paillier_pk *pk = NULL;

    CHECK_ERR(hk_paillier_pk_new(n, bits, &pk), HK_ERR_PAILLIER);
    CHECK(pk == NULL);
}

static void test_paillier_modulus(const hk_paillier_sk *sk)
{
    const BIGNUM *n = hk_paillier_n(hk_paillier_sk_pk(sk));
    hk_paillier_pk *pk = NULL;
    BIGNUM *v = BN_new();

    CHECK(v != NULL);
    CHECK_OK(hk_paillier_pk_new(n, 2048, &pk));
    CHECK(BN_cmp(hk_paillier_n(pk), n) == 0 && hk_paillier_bits(pk) == 2048);
    hk_paillier_pk_free(pk);
    expect_bad_modulus(n, 3072);
    expect_bad_modulus(n, 1024);
    expect_bad_modulus(n, 2047);
    CHECK(BN_copy(v, n) && BN_add_word(v, 1)); /* even */
    expect_bad_modulus(v, 2048);
    CHECK(BN_rand(v, 2047, BN_RAND_TOP_ONE, BN_RAND_BOTTOM_ODD));
    expect_bad_modulus(v, 2048);
    CHECK(BN_rand(v, 2049, BN_RAND_TOP_ONE, BN_RAND_BOTTOM_ODD));
    expect_bad_modulus(v, 2048);
    CHECK(BN_rand(v, 1024, BN_RAND_TOP_ONE, BN_RAND_BOTTOM_ODD));
    expect_bad_modulus(v, 1024);
    hk_cheat_small_factor(2048, 3, v);
    expect_bad_modulus(v, 2048);
    hk_cheat_small_factor(2048, 65521, v); /* largest prime below 2^16 */
    expect_bad_modulus(v, 2048);
    hk_cheat_small_factor(2048, 257UL * 65519UL, v);
    expect_bad_modulus(v, 2048);
    BN_set_negative(v, 1);
    expect_bad_modulus(v, 2048);
    BN_free(v);
}

static void test_paillier_primes(const hk_paillier_sk *sk)
{
    const BIGNUM *p = hk_paillier_sk_p(sk), *q = hk_paillier_sk_q(sk);
    const BIGNUM *n = hk_paillier_n(hk_paillier_sk_pk(sk));
    hk_paillier_sk *back = NULL;
    BIGNUM *v = BN_new(), *x = BN_new(), *root = BN_new(), *chk = BN_new();
    BN_CTX *ctx = BN_CTX_new();

    CHECK(v != NULL && x != NULL && root != NULL && chk != NULL && ctx);
    CHECK_OK(hk_paillier_sk_from_primes(p, q, 2048, &back));
    CHECK(BN_cmp(hk_paillier_n(hk_paillier_sk_pk(back)), n) == 0);
    hk_paillier_sk_free(back);
    CHECK_OK(hk_paillier_sk_from_primes(q, p, 2048, &back));
    CHECK(BN_cmp(hk_paillier_n(hk_paillier_sk_pk(back)), n) == 0);
    hk_paillier_sk_free(back);
    back = NULL;
    CHECK_ERR(hk_paillier_sk_from_primes(p, p, 2048, &back), HK_ERR_PAILLIER);
    CHECK_ERR(hk_paillier_sk_from_primes(p, q, 3072, &back), HK_ERR_PAILLIER);
    CHECK(BN_copy(v, p) && BN_add_word(v, 1));
    CHECK_ERR(hk_paillier_sk_from_primes(v, q, 2048, &back), HK_ERR_PAILLIER);
    CHECK(BN_rshift1(v, p) && BN_set_bit(v, 0));
    CHECK_ERR(hk_paillier_sk_from_primes(v, q, 2048, &back), HK_ERR_PAILLIER);
    CHECK(back == NULL);
    /* The N-th root really is one. */
    CHECK_OK(hk_paillier_rand_unit(hk_paillier_sk_pk(sk), x));
    CHECK_OK(hk_paillier_nth_root(sk, x, root));
    CHECK(BN_mod_exp(chk, root, n, n, ctx) && BN_cmp(chk, x) == 0);
    BN_free(v);
    BN_free(x);
    BN_free(root);
    BN_free(chk);
    BN_CTX_free(ctx);
}

/* Decryption mod p (hk_paillier_dec_small) equals CRT decryption on
 * random plaintexts within the bound, at the bound's edges, and refuses
 * plaintexts at or above it, including ones at or above p. */
static void test_paillier_dec_small(const hk_paillier_sk *sk)
{
    const hk_paillier_pk *pk = hk_paillier_sk_pk(sk);
    const BIGNUM *p = hk_paillier_sk_p(sk), *n = hk_paillier_n(pk);
    static const int bounds[] = {801, 8, 13, 1023};
    BIGNUM *m = BN_new(), *c = BN_new(), *d = BN_new(), *d2 = BN_new();
    size_t b;
    int i;

    CHECK(m != NULL && c != NULL && d != NULL && d2 != NULL);
    CHECK(BN_cmp(p, hk_paillier_sk_q(sk)) > 0 && BN_num_bits(p) == 1024);
    for (b = 0; b < sizeof(bounds) / sizeof(bounds[0]); b++) {
        for (i = 0; i < 6; i++) {
            if (i == 0)
                BN_zero(m);
            else if (i == 1) /* the largest allowed */
                CHECK(BN_set_word(m, 0) && BN_set_bit(m, bounds[b]) &&
                      BN_sub_word(m, 1));
            else
                CHECK(
                    BN_rand(m, bounds[b], BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY));
            CHECK_OK(hk_paillier_enc(pk, m, NULL, c));
            CHECK_OK(hk_paillier_dec(sk, c, d));
            CHECK_OK(hk_paillier_dec_small(sk, c, bounds[b], d2));
            CHECK(BN_cmp(d, m) == 0 && BN_cmp(d2, d) == 0);
        }
        /* 2^bound, N - 1 and random values above the bound: refused
         * (random ones only where 2^bound / p is negligible) */
        for (i = 0; i < 6; i++) {
            if (i == 0)
                CHECK(BN_set_word(m, 0) && BN_set_bit(m, bounds[b]));
            else if (i == 1)
                CHECK(BN_copy(m, n) && BN_sub_word(m, 1));
            else if (bounds[b] > 801)
                break;
            else
                do
                    CHECK(BN_rand_range(m, n));
                while (BN_num_bits(m) <= bounds[b]);
            CHECK_OK(hk_paillier_enc(pk, m, NULL, c));
            CHECK_ERR(hk_paillier_dec_small(sk, c, bounds[b], d2),
                      HK_ERR_PAILLIER);
        }
        /* The limit, written down: a plaintext within 2^bound above a
         * multiple of p passes as its residue. Only a sender who knows p
         * can aim there (doc/performance.md). */
        for (i = 0; i < 2; i++) {
            CHECK(BN_copy(m, p) && BN_add_word(m, (BN_ULONG)i));
            CHECK_OK(hk_paillier_enc(pk, m, NULL, c));
            CHECK_OK(hk_paillier_dec_small(sk, c, bounds[b], d2));
            CHECK(BN_is_word(d2, (BN_ULONG)i));
        }
    }
    CHECK_ERR(hk_paillier_dec_small(sk, c, 7, d2), HK_ERR_ARG);
    CHECK_ERR(hk_paillier_dec_small(sk, c, 1024, d2), HK_ERR_ARG);
    CHECK_ERR(hk_paillier_dec_small(NULL, c, 801, d2), HK_ERR_ARG);
    BN_free(m);
    BN_free(c);
    BN_free(d);
    BN_free(d2);
}

/* Keygen with one and two prime threads gives well-formed keys. */
static void test_paillier_keygen_threads(void)
{
    hk_paillier_sk *k = NULL;
    int t;

    for (t = 1; t <= 2; t++) {
        CHECK_OK(hk_paillier_keygen_threads(2048, t, &k));
        CHECK(BN_num_bits(hk_paillier_n(hk_paillier_sk_pk(k))) == 2048);
        CHECK(BN_num_bits(hk_paillier_sk_p(k)) == 1024 &&
              BN_num_bits(hk_paillier_sk_q(k)) == 1024);
        hk_paillier_sk_free(k);
        k = NULL;
    }
    CHECK_ERR(hk_paillier_keygen_threads(2048, 0, &k), HK_ERR_ARG);
    CHECK_ERR(hk_paillier_keygen_threads(2048, 3, &k), HK_ERR_ARG);
}

static void test_paillier(const hk_paillier_sk *sk)
{
    hk_paillier_sk *tmp = NULL;

    CHECK(BN_num_bits(hk_paillier_n(hk_paillier_sk_pk(sk))) == 2048);
    CHECK(hk_paillier_bits(hk_paillier_sk_pk(sk)) == 2048);
    CHECK(hk_paillier_bits_ok(2048) && hk_paillier_bits_ok(3072));
    CHECK(!hk_paillier_bits_ok(1024) && !hk_paillier_bits_ok(4096));
    CHECK_ERR(hk_paillier_keygen(1024, &tmp), HK_ERR_ARG);
    test_paillier_enc(sk);
    test_paillier_homomorphic(sk);
    test_paillier_fb(sk);
    test_paillier_ct_check(sk);
    test_paillier_modulus(sk);
    test_paillier_primes(sk);
    test_paillier_dec_small(sk);
    test_paillier_keygen_threads();
}

/* ---- Schnorr ------------------------------------------------------------ */

static void test_schnorr(hk_curve_id id)
{
    static const char *label = "test/schnorr";
    hk_curve *c = NULL;
    hk_binding b, o;
    hk_scalar x, one;
    hk_point X, Y, g;
    hk_schnorr pf, bad;

    CHECK_OK(hk_curve_new(id, &c));
    rand_binding(&b, id);
    x = scalar_rand(c);
    X = point_of(c, &x);
    one = scalar_word(c, 1);
    g = point_of(c, &one);
    CHECK_OK(hk_schnorr_prove(c, &b, HK_ROLE_P1, label, &x, &X, &pf));
    CHECK_OK(hk_schnorr_verify(c, &b, HK_ROLE_P1, label, &X, &pf));
    CHECK_ERR(hk_schnorr_verify(c, &b, HK_ROLE_P1, "test/other", &X, &pf),
              HK_ERR_PROOF);
    CHECK_ERR(hk_schnorr_verify(c, &b, HK_ROLE_P2, label, &X, &pf),
              HK_ERR_PROOF);
    o = b;
    o.sid[HK_ID_LEN - 1] ^= 1;
    CHECK_ERR(hk_schnorr_verify(c, &o, HK_ROLE_P1, label, &X, &pf),
              HK_ERR_PROOF);
    o = b;
    o.kid[0] ^= 0x80;
    CHECK_ERR(hk_schnorr_verify(c, &o, HK_ROLE_P1, label, &X, &pf),
              HK_ERR_PROOF);
    o = b;
    o.curve = id == HK_CURVE_P256 ? HK_CURVE_SECP256K1 : HK_CURVE_P256;
    CHECK_ERR(hk_schnorr_verify(c, &o, HK_ROLE_P1, label, &X, &pf),
              HK_ERR_PROOF);
    /* Another statement. */
    CHECK_OK(hk_point_add(c, &X, &g, &Y));
    CHECK_ERR(hk_schnorr_verify(c, &b, HK_ROLE_P1, label, &Y, &pf),
              HK_ERR_PROOF);
    /* Tampered z and a. */
    bad = pf;
    CHECK_OK(hk_scalar_add(c, &bad.z, &one, &bad.z));
    CHECK_ERR(hk_schnorr_verify(c, &b, HK_ROLE_P1, label, &X, &bad),
              HK_ERR_PROOF);
    bad = pf;
    CHECK_OK(hk_point_add(c, &pf.a, &g, &bad.a));
    CHECK_ERR(hk_schnorr_verify(c, &b, HK_ROLE_P1, label, &X, &bad),
              HK_ERR_PROOF);
    bad = pf;
    bad.a.b[0] ^= 1; /* -a */
    CHECK_ERR(hk_schnorr_verify(c, &b, HK_ROLE_P1, label, &X, &bad),
              HK_ERR_PROOF);
    hk_curve_free(c);
}

/* ---- N-th root modulus proof -------------------------------------------- */

static void test_nthroot(const hk_paillier_sk *sk)
{
    const hk_paillier_pk *pk = hk_paillier_sk_pk(sk);
    const BIGNUM *n = hk_paillier_n(pk);
    hk_nthroot_proof pf, mine;
    hk_binding b, o;
    BIGNUM *keep = BN_new(), *phi = BN_new(), *t = BN_new();
    BN_CTX *ctx = BN_CTX_new();

    CHECK(keep != NULL && phi != NULL && t != NULL && ctx != NULL);
    rand_binding(&b, HK_CURVE_SECP256K1);
    CHECK_OK(hk_nthroot_prove(sk, &b, HK_ROLE_P1, &pf));
    CHECK_OK(hk_nthroot_verify(pk, &b, HK_ROLE_P1, &pf));
    CHECK_ERR(hk_nthroot_verify(pk, &b, HK_ROLE_P2, &pf), HK_ERR_PROOF);
    o = b;
    o.sid[3] ^= 4;
    CHECK_ERR(hk_nthroot_verify(pk, &o, HK_ROLE_P1, &pf), HK_ERR_PROOF);
    o = b;
    o.kid[3] ^= 4;
    CHECK_ERR(hk_nthroot_verify(pk, &o, HK_ROLE_P1, &pf), HK_ERR_PROOF);
    /* One sigma altered, zero, or N. */
    CHECK(BN_copy(keep, pf.sigma[3]) && BN_add_word(pf.sigma[3], 1));
    CHECK_ERR(hk_nthroot_verify(pk, &b, HK_ROLE_P1, &pf), HK_ERR_PROOF);
    BN_zero(pf.sigma[3]);
    CHECK_ERR(hk_nthroot_verify(pk, &b, HK_ROLE_P1, &pf), HK_ERR_PROOF);
    CHECK(BN_copy(pf.sigma[3], n));
    CHECK_ERR(hk_nthroot_verify(pk, &b, HK_ROLE_P1, &pf), HK_ERR_PROOF);
    CHECK(BN_add(pf.sigma[3], keep, n)); /* same residue, not reduced */
    CHECK_ERR(hk_nthroot_verify(pk, &b, HK_ROLE_P1, &pf), HK_ERR_PROOF);
    CHECK(BN_copy(pf.sigma[3], keep));
    CHECK_OK(hk_nthroot_verify(pk, &b, HK_ROLE_P1, &pf));
    /* The test's own rendering of the challenges gives the same proof: so
     * the cheating prover below answers the real challenges. */
    CHECK(BN_sub(phi, hk_paillier_sk_p(sk), BN_value_one()));
    CHECK(BN_sub(t, hk_paillier_sk_q(sk), BN_value_one()));
    CHECK(BN_mul(phi, phi, t, ctx));
    hk_cheat_nthroot(n, phi, &b, HK_ROLE_P1, &mine);
    CHECK(BN_cmp(mine.sigma[0], pf.sigma[0]) == 0);
    CHECK(BN_cmp(mine.sigma[HK_NTH_ROOTS - 1], pf.sigma[HK_NTH_ROOTS - 1]) ==
          0);
    CHECK_OK(hk_nthroot_verify(pk, &b, HK_ROLE_P1, &mine));
    hk_nthroot_proof_free(&mine);
    hk_nthroot_proof_free(&pf);
    BN_free(keep);
    BN_free(phi);
    BN_free(t);
    BN_CTX_free(ctx);
}

/* N = p^2 q has no small factor, so it passes the receiver's modulus
 * checks; only the proof can refuse it. */
static void test_nthroot_nonsquarefree(void)
{
    BIGNUM *n = BN_new(), *p = BN_new(), *q = BN_new(), *m = BN_new(),
           *t = BN_new();
    BN_CTX *ctx = BN_CTX_new();
    hk_paillier_pk *pk = NULL;
    hk_nthroot_proof pf;
    hk_binding b;
    int i;

    CHECK(n && p && q && m && t && ctx);
    hk_cheat_nonsquarefree(2048, n, p, q);
    CHECK(BN_num_bits(n) == 2048);
    CHECK_OK(hk_paillier_pk_new(n, 2048, &pk));
    CHECK(BN_sub(m, p, BN_value_one()) && BN_sub(t, q, BN_value_one()));
    CHECK(BN_mul(m, m, t, ctx));
    for (i = 0; i < 2; i++) {
        rand_binding(&b, HK_CURVE_P256);
        hk_cheat_nthroot(n, m, &b, HK_ROLE_P1, &pf);
        /* Right mod p and q, but an N-th root mod p^2 exists for only a
         * 1/p fraction of the challenges. */
        CHECK_ERR(hk_nthroot_verify(pk, &b, HK_ROLE_P1, &pf), HK_ERR_PROOF);
        hk_nthroot_proof_free(&pf);
    }
    hk_paillier_pk_free(pk);
    BN_free(n);
    BN_free(p);
    BN_free(q);
    BN_free(m);
    BN_free(t);
    BN_CTX_free(ctx);
}

/* ---- Pi^log* ------------------------------------------------------------ */

typedef struct {
    hk_curve *c;
    hk_binding b;
    const hk_paillier_sk *sk;
    const hk_paillier_pk *pk;
    const hk_rped_secret *sec;
    hk_scalar x;
    hk_point X;
    BIGNUM *r, *C;
} logstar_ctx;

/* Verifies both ways (public setup, and the setup owner's CRT path) and
 * checks they agree. */
static hk_err ls_verify(const logstar_ctx *t, const hk_binding *b, hk_role role,
                        const BIGNUM *C, const hk_point *X,
                        const hk_logstar_proof *pf)
{
    hk_err e1 =
        hk_logstar_verify(t->c, b, role, t->pk, &t->sec->pub, NULL, C, X, pf);
    hk_err e2 =
        hk_logstar_verify(t->c, b, role, t->pk, &t->sec->pub, t->sec, C, X, pf);

    CHECK(e1 == e2);
    return e1;
}

static void ls_expect_bad(const logstar_ctx *t, const hk_logstar_proof *pf)
{
    CHECK_ERR(ls_verify(t, &t->b, HK_ROLE_P1, t->C, &t->X, pf), HK_ERR_PROOF);
}

/* Adds 1 to one BIGNUM of the proof, checks the rejection, restores. */
static void ls_bump(const logstar_ctx *t, hk_logstar_proof *pf, BIGNUM *v)
{
    CHECK(BN_add_word(v, 1));
    ls_expect_bad(t, pf);
    CHECK(BN_sub_word(v, 1));
}

static void ls_tamper_rep(const logstar_ctx *t, hk_logstar_proof *pf, size_t i)
{
    hk_logstar_rep *rep = &pf->rep[i];
    hk_scalar one = scalar_word(t->c, 1);
    hk_point keep = rep->Y, g = point_of(t->c, &one);

    ls_bump(t, pf, rep->A);
    ls_bump(t, pf, rep->D);
    ls_bump(t, pf, rep->z1);
    ls_bump(t, pf, rep->z2);
    ls_bump(t, pf, rep->z3);
    CHECK_OK(hk_point_add(t->c, &keep, &g, &rep->Y));
    ls_expect_bad(t, pf);
    rep->Y = keep;
    /* z1 + q passes the curve check but not the Paillier one. */
    CHECK(BN_add(rep->z1, rep->z1, hk_curve_order(t->c)));
    ls_expect_bad(t, pf);
    CHECK(BN_sub(rep->z1, rep->z1, hk_curve_order(t->c)));
}

static void ls_setup(logstar_ctx *t, hk_curve_id id, const hk_paillier_sk *sk)
{
    CHECK_OK(hk_curve_new(id, &t->c));
    rand_binding(&t->b, id);
    t->sk = sk;
    t->pk = hk_paillier_sk_pk(sk);
    t->sec = hk_test_rped_secret();
    t->x = scalar_rand(t->c);
    t->X = point_of(t->c, &t->x);
    CHECK((t->r = BN_new()) != NULL && (t->C = BN_new()) != NULL);
    CHECK_OK(hk_paillier_rand_unit(t->pk, t->r));
    {
        BIGNUM *xb = bn_of(&t->x);

        CHECK_OK(hk_paillier_enc_sk(sk, xb, t->r, t->C));
        BN_free(xb);
    }
}

/* C encrypts x + 1 but the prover claims x: it still outputs a proof,
 * which must not verify. */
static void ls_false_plaintext(const logstar_ctx *t)
{
    BIGNUM *xb = bn_of(&t->x), *C2 = BN_new();
    hk_logstar_proof pf;

    CHECK(C2 != NULL && BN_add_word(xb, 1));
    CHECK_OK(hk_paillier_enc_sk(t->sk, xb, t->r, C2));
    CHECK_OK(hk_logstar_prove(t->c, &t->b, HK_ROLE_P1, t->sk, &t->sec->pub,
                              &t->x, t->r, C2, &t->X, &pf));
    CHECK_ERR(ls_verify(t, &t->b, HK_ROLE_P1, C2, &t->X, &pf), HK_ERR_PROOF);
    hk_logstar_proof_free(&pf);
    BN_free(xb);
    BN_free(C2);
}

static void test_logstar(hk_curve_id id, const hk_paillier_sk *sk)
{
    logstar_ctx t;
    hk_logstar_proof pf;
    hk_binding o;
    hk_scalar one;
    hk_point Y;

    ls_setup(&t, id, sk);
    one = scalar_word(t.c, 1);
    CHECK_OK(hk_logstar_prove(t.c, &t.b, HK_ROLE_P1, sk, &t.sec->pub, &t.x, t.r,
                              t.C, &t.X, &pf));
    CHECK_OK(ls_verify(&t, &t.b, HK_ROLE_P1, t.C, &t.X, &pf));
    /* Another X, another binding, another role. */
    CHECK_OK(hk_point_add(t.c, &t.X, &t.X, &Y));
    CHECK_ERR(ls_verify(&t, &t.b, HK_ROLE_P1, t.C, &Y, &pf), HK_ERR_PROOF);
    Y = point_of(t.c, &one);
    CHECK_ERR(ls_verify(&t, &t.b, HK_ROLE_P1, t.C, &Y, &pf), HK_ERR_PROOF);
    o = t.b;
    o.sid[0] ^= 1;
    CHECK_ERR(ls_verify(&t, &o, HK_ROLE_P1, t.C, &t.X, &pf), HK_ERR_PROOF);
    o = t.b;
    o.kid[HK_ID_LEN - 1] ^= 1;
    CHECK_ERR(ls_verify(&t, &o, HK_ROLE_P1, t.C, &t.X, &pf), HK_ERR_PROOF);
    CHECK_ERR(ls_verify(&t, &t.b, HK_ROLE_P2, t.C, &t.X, &pf), HK_ERR_PROOF);
    /* Every field of the first and the last repetition, and S. */
    ls_tamper_rep(&t, &pf, 0);
    ls_tamper_rep(&t, &pf, HK_LOG_REPS - 1);
    ls_bump(&t, &pf, pf.S);
    /* Untouched again after all restorations. */
    CHECK_OK(ls_verify(&t, &t.b, HK_ROLE_P1, t.C, &t.X, &pf));
    hk_logstar_proof_free(&pf);
    ls_false_plaintext(&t);
    BN_free(t.r);
    BN_free(t.C);
    hk_curve_free(t.c);
}

/* ---- ring-Pedersen ------------------------------------------------------ */

static void expect_bad_rped(const BIGNUM *n, const BIGNUM *s, const BIGNUM *t)
{
    hk_rped *rp = NULL;

    CHECK_ERR(hk_rped_new(n, s, t, &rp), HK_ERR_PARAMS);
    CHECK(rp == NULL);
}

static void test_rped_new(const hk_rped *pub)
{
    BIGNUM *v = BN_new();

    CHECK(v != NULL);
    CHECK(BN_one(v));
    expect_bad_rped(pub->n, v, pub->t);
    BN_zero(v);
    expect_bad_rped(pub->n, pub->s, v);
    CHECK(BN_copy(v, pub->n) && BN_sub_word(v, 1));
    expect_bad_rped(pub->n, v, pub->t);
    expect_bad_rped(pub->n, pub->s, pub->n);
    CHECK(BN_copy(v, pub->n) && BN_add_word(v, 1)); /* even */
    expect_bad_rped(v, pub->s, pub->t);
    CHECK(BN_rshift1(v, pub->n) && BN_set_bit(v, 0)); /* 2047 bits */
    expect_bad_rped(v, pub->s, pub->t);
    BN_free(v);
}

static void test_prm(void)
{
    const hk_rped_secret *sec = hk_test_rped_secret();
    const hk_rped *pub = &sec->pub;
    hk_rped *other = NULL;
    hk_prm_proof pf;
    BIGNUM *s2 = BN_new(), *g = BN_new();
    BN_CTX *ctx = BN_CTX_new();

    CHECK(s2 != NULL && g != NULL && ctx != NULL);
    CHECK_OK(hk_prm_prove(sec, &pf));
    CHECK_OK(hk_prm_verify(pub, &pf));
    CHECK(BN_add_word(pf.z[5], 1));
    CHECK_ERR(hk_prm_verify(pub, &pf), HK_ERR_PARAMS);
    CHECK(BN_sub_word(pf.z[5], 1));
    CHECK(BN_add_word(pf.a[HK_PRM_ROUNDS - 1], 1));
    CHECK_ERR(hk_prm_verify(pub, &pf), HK_ERR_PARAMS);
    CHECK(BN_sub_word(pf.a[HK_PRM_ROUNDS - 1], 1));
    CHECK_OK(hk_prm_verify(pub, &pf));
    /* s replaced by another unit of Z*_N~. */
    do {
        CHECK(BN_rand_range(s2, pub->n) && BN_gcd(g, s2, pub->n, ctx));
    } while (!BN_is_one(g) || BN_cmp(s2, BN_value_one()) <= 0);
    CHECK_OK(hk_rped_new(pub->n, s2, pub->t, &other));
    CHECK_ERR(hk_prm_verify(other, &pf), HK_ERR_PARAMS);
    hk_rped_free(other);
    /* s and t swapped. */
    CHECK_OK(hk_rped_new(pub->n, pub->t, pub->s, &other));
    CHECK_ERR(hk_prm_verify(other, &pf), HK_ERR_PARAMS);
    hk_rped_free(other);
    hk_prm_proof_free(&pf);
    test_rped_new(pub);
    BN_free(s2);
    BN_free(g);
    BN_CTX_free(ctx);
}

/* ---- codec -------------------------------------------------------------- */

static hk_err parse_js(const char *js, const char *type,
                       const unsigned char *sid, const unsigned char *kid,
                       hk_msg **m)
{
    return hk_msg_parse((const unsigned char *)js, strlen(js), HK_MSG_MAX, type,
                        sid, kid, m);
}

static void expect_parse(const char *js, hk_err want)
{
    hk_msg *m = NULL;

    CHECK_ERR(parse_js(js, "x", NULL, NULL, &m), want);
    CHECK(m == NULL);
}

static void test_codec_parse(void)
{
    static const char ok[] = "{\"v\":1,\"t\":\"x\"}";
    static const unsigned char sid[HK_ID_LEN] = {0xab, 1, 2, 3};
    char buf[256];
    unsigned char big[64];
    hk_msg *m = NULL;

    CHECK_OK(parse_js(ok, "x", NULL, NULL, &m));
    CHECK_OK(hk_msg_finish(m));
    hk_msg_free(m);
    CHECK_ERR(hk_msg_parse((const unsigned char *)ok, strlen(ok),
                           strlen(ok) - 1, "x", NULL, NULL, &m),
              HK_ERR_TOO_BIG);
    memset(big, ' ', sizeof(big));
    CHECK_ERR(
        hk_msg_parse(big, HK_MSG_MAX + 1, HK_MSG_MAX, "x", NULL, NULL, &m),
        HK_ERR_TOO_BIG);
    expect_parse("", HK_ERR_DECODE);
    expect_parse("hello", HK_ERR_DECODE);
    expect_parse("[1,2]", HK_ERR_DECODE);
    expect_parse("[{\"v\":1,\"t\":\"x\"}]", HK_ERR_DECODE);
    expect_parse("\"x\"", HK_ERR_DECODE);
    expect_parse("{\"v\":1,\"t\":\"x\"} x", HK_ERR_DECODE);
    expect_parse("{\"v\":1,\"t\":\"x\"}{}", HK_ERR_DECODE);
    expect_parse("{\"v\":1,\"t\":\"x\"", HK_ERR_DECODE);
    expect_parse("{\"v\":1,\"t\":\"x\",\"t\":\"x\"}", HK_ERR_DECODE);
    expect_parse("{\"v\":1,\"v\":1,\"t\":\"x\"}", HK_ERR_DECODE);
    expect_parse("{\"v\":2,\"t\":\"x\"}", HK_ERR_VERSION);
    expect_parse("{\"v\":0,\"t\":\"x\"}", HK_ERR_VERSION);
    expect_parse("{\"v\":\"1\",\"t\":\"x\"}", HK_ERR_DECODE);
    expect_parse("{\"v\":1.0,\"t\":\"x\"}", HK_ERR_DECODE);
    expect_parse("{\"t\":\"x\"}", HK_ERR_DECODE);
    expect_parse("{\"v\":1}", HK_ERR_DECODE);
    expect_parse("{\"v\":1,\"t\":1}", HK_ERR_DECODE);
    expect_parse("{\"v\":1,\"t\":\"y\"}", HK_ERR_MSG_TYPE);
    expect_parse("{\"v\":1,\"t\":\"X\"}", HK_ERR_MSG_TYPE);
    expect_parse("{\"v\":1,\"t\":\"x\",\"s\":\"a\\u0000b\"}", HK_ERR_DECODE);
    /* Session and key ids. */
    snprintf(buf, sizeof(buf), "{\"v\":1,\"t\":\"x\",\"sid\":\"%s\"}",
             "ab010203000000000000000000000000");
    CHECK_OK(parse_js(buf, "x", sid, NULL, &m));
    CHECK_OK(hk_msg_finish(m));
    hk_msg_free(m);
    CHECK_ERR(parse_js(buf, "x", NULL, sid, &m), HK_ERR_DECODE); /* kid */
    snprintf(buf, sizeof(buf), "{\"v\":1,\"t\":\"x\",\"sid\":\"%s\"}",
             "ab010203000000000000000000000001");
    CHECK_ERR(parse_js(buf, "x", sid, NULL, &m), HK_ERR_BINDING);
    snprintf(buf, sizeof(buf), "{\"v\":1,\"t\":\"x\",\"sid\":\"%s\"}",
             "AB010203000000000000000000000000");
    CHECK_ERR(parse_js(buf, "x", sid, NULL, &m), HK_ERR_DECODE);
    snprintf(buf, sizeof(buf), "{\"v\":1,\"t\":\"x\",\"sid\":\"%s\"}",
             "ab0102030000000000000000000000");
    CHECK_ERR(parse_js(buf, "x", sid, NULL, &m), HK_ERR_DECODE);
    CHECK_ERR(parse_js(ok, "x", sid, NULL, &m), HK_ERR_DECODE);
    snprintf(buf, sizeof(buf), "{\"v\":1,\"t\":\"x\",\"kid\":\"%s\"}",
             "ab010203000000000000000000000000");
    CHECK_OK(parse_js(buf, "x", NULL, sid, &m));
    hk_msg_free(m);
    snprintf(buf, sizeof(buf), "{\"v\":1,\"t\":\"x\",\"kid\":\"%s\"}",
             "bb010203000000000000000000000000");
    CHECK_ERR(parse_js(buf, "x", NULL, sid, &m), HK_ERR_BINDING);
    /* An unread id is an unconsumed key. */
    CHECK_OK(parse_js(buf, "x", NULL, NULL, &m));
    CHECK_ERR(hk_msg_finish(m), HK_ERR_DECODE);
    hk_msg_free(m);
    /* Any type when none is asked for. */
    CHECK_OK(parse_js(ok, NULL, NULL, NULL, &m));
    CHECK(strcmp(hk_msg_type(m), "x") == 0);
    hk_msg_free(m);
}

static void test_codec_getters(hk_curve *c)
{
    static const char js[] =
        "{\"v\":1,\"t\":\"x\",\"up\":\"0A\",\"odd\":\"0\",\"two\":\"0000\","
        "\"int\":1,\"ff\":\"00ff\",\"arr\":[\"01\",\"02\"],\"neg\":-1,"
        "\"big\":4294967296,\"max\":4294967295,\"str\":\"abc\","
        "\"empty\":\"\",\"obj\":{},\"pt\":\"02ffffffffffffffffffffffffffffff"
        "ffffffffffffffffffffffffffffffffff\",\"sc\":\"000000000000000000000"
        "0000000000000000000000000000000000000000000\"}";
    unsigned char b[4];
    char s[8];
    unsigned long u;
    size_t len;
    BIGNUM *v = NULL, *arr[3] = {0};
    hk_point p, pp[2];
    hk_scalar sc;
    hk_msg *m = NULL;

    CHECK_OK(parse_js(js, "x", NULL, NULL, &m));
    CHECK_ERR(hk_msg_get_bytes(m, "up", b, 1), HK_ERR_DECODE);
    CHECK_ERR(hk_msg_get_bytes(m, "odd", b, 1), HK_ERR_DECODE);
    CHECK_ERR(hk_msg_get_bytes(m, "two", b, 1), HK_ERR_DECODE);
    CHECK_ERR(hk_msg_get_bytes(m, "two", b, 3), HK_ERR_DECODE);
    CHECK_OK(hk_msg_get_bytes(m, "two", b, 2));
    CHECK_ERR(hk_msg_get_bytes(m, "int", b, 1), HK_ERR_DECODE);
    CHECK_ERR(hk_msg_get_bytes(m, "arr", b, 1), HK_ERR_DECODE);
    CHECK_ERR(hk_msg_get_bytes(m, "obj", b, 1), HK_ERR_DECODE);
    CHECK_ERR(hk_msg_get_bytes(m, "missing", b, 1), HK_ERR_DECODE);
    CHECK_ERR(hk_msg_get_bn(m, "ff", 3, &v), HK_ERR_DECODE);
    CHECK_ERR(hk_msg_get_bn(m, "ff", 1, &v), HK_ERR_DECODE);
    CHECK_OK(hk_msg_get_bn(m, "ff", 2, &v));
    CHECK(BN_is_word(v, 255));
    CHECK_ERR(hk_msg_get_bn(m, "up", 1, &v), HK_ERR_DECODE);
    CHECK_ERR(hk_msg_get_bn_array(m, "arr", arr, 3, 1), HK_ERR_DECODE);
    CHECK_ERR(hk_msg_get_bn_array(m, "arr", arr, 1, 1), HK_ERR_DECODE);
    CHECK_ERR(hk_msg_get_bn_array(m, "arr", arr, 2, 2), HK_ERR_DECODE);
    CHECK_ERR(hk_msg_get_bn_array(m, "ff", arr, 1, 2), HK_ERR_DECODE);
    CHECK_OK(hk_msg_get_bn_array(m, "arr", arr, 2, 1));
    CHECK(BN_is_word(arr[0], 1) && BN_is_word(arr[1], 2));
    CHECK_ERR(hk_msg_get_u32(m, "neg", &u), HK_ERR_DECODE);
    CHECK_ERR(hk_msg_get_u32(m, "big", &u), HK_ERR_DECODE);
    CHECK_ERR(hk_msg_get_u32(m, "str", &u), HK_ERR_DECODE);
    CHECK_OK(hk_msg_get_u32(m, "max", &u));
    CHECK(u == 0xfffffffful);
    CHECK_ERR(hk_msg_get_str(m, "str", s, 3), HK_ERR_DECODE);
    CHECK_ERR(hk_msg_get_str(m, "int", s, sizeof(s)), HK_ERR_DECODE);
    CHECK_OK(hk_msg_get_str(m, "str", s, 4));
    CHECK(strcmp(s, "abc") == 0);
    CHECK_ERR(hk_msg_get_var(m, "ff", b, 1, &len), HK_ERR_DECODE);
    CHECK_ERR(hk_msg_get_var(m, "empty", b, 4, &len), HK_ERR_DECODE);
    CHECK_ERR(hk_msg_get_var(m, "odd", b, 4, &len), HK_ERR_DECODE);
    CHECK_ERR(hk_msg_get_var(m, "up", b, 4, &len), HK_ERR_DECODE);
    CHECK_OK(hk_msg_get_var(m, "ff", b, 2, &len));
    CHECK(len == 2 && b[0] == 0 && b[1] == 0xff);
    CHECK_ERR(hk_msg_get_point(m, c, "pt", &p), HK_ERR_POINT);
    CHECK_ERR(hk_msg_get_scalar(m, c, "sc", &sc), HK_ERR_SCALAR);
    CHECK_ERR(hk_msg_get_point(m, c, "ff", &p), HK_ERR_DECODE);
    CHECK_ERR(hk_msg_get_points(m, c, "arr", pp, 2), HK_ERR_DECODE);
    /* Every key was read, most of them several times. */
    CHECK_OK(hk_msg_finish(m));
    hk_msg_free(m);
    /* Reading one key twice does not stand for reading another. */
    CHECK_OK(parse_js("{\"v\":1,\"t\":\"x\",\"a\":\"00\",\"z\":\"00\"}", "x",
                      NULL, NULL, &m));
    CHECK_OK(hk_msg_get_bytes(m, "a", b, 1));
    CHECK_OK(hk_msg_get_bytes(m, "a", b, 1));
    CHECK_ERR(hk_msg_finish(m), HK_ERR_DECODE);
    CHECK_OK(hk_msg_get_bytes(m, "z", b, 1));
    CHECK_OK(hk_msg_finish(m));
    hk_msg_free(m);
    BN_free(v);
    BN_free(arr[0]);
    BN_free(arr[1]);
}

/* Puts one of each kind, parses it back, every value equal. */
static void test_codec_roundtrip(hk_curve *c)
{
    unsigned char sid[HK_ID_LEN], kid[HK_ID_LEN], got[5], *enc = NULL;
    unsigned char b[5] = {1, 2, 3, 4, 5};
    hk_scalar s = scalar_rand(c), s2;
    hk_point pts[2], p2[2];
    BIGNUM *v = BN_new(), *w = NULL, *arr[2], *back[2] = {0};
    unsigned long u;
    size_t len;
    hk_msg *m = NULL;

    CHECK(v != NULL && BN_set_word(v, 0x1234));
    arr[0] = v;
    arr[1] = v;
    pts[0] = point_of(c, &s);
    pts[1] = pts[0];
    hk_drive_ids(sid, kid);
    CHECK_OK(hk_msg_new("rt", sid, kid, &m));
    CHECK_OK(hk_msg_put_bytes(m, "b", b, sizeof(b)));
    CHECK_OK(hk_msg_put_bn(m, "n", v, 4));
    CHECK_OK(hk_msg_put_bn_array(m, "a", arr, 2, 3));
    CHECK_OK(hk_msg_put_u32(m, "u", 7));
    CHECK_OK(hk_msg_put_scalar(m, "s", &s));
    CHECK_OK(hk_msg_put_points(m, "ps", pts, 2));
    CHECK_ERR(hk_msg_put_bn(m, "w", v, 1), HK_ERR_ARG);
    CHECK_ERR(hk_msg_put_u32(m, "w", 0x100000000ul), HK_ERR_ARG);
    CHECK_ERR(hk_msg_put_bytes(m, "v", b, 1), HK_ERR_ARG);
    CHECK_ERR(hk_msg_put_str(m, "t", "y"), HK_ERR_ARG);
    CHECK_OK(hk_msg_encode(m, &enc, &len));
    hk_msg_free(m);
    CHECK_OK(hk_msg_parse(enc, len, HK_MSG_MAX, "rt", sid, kid, &m));
    CHECK_OK(hk_msg_get_bytes(m, "b", got, sizeof(got)));
    CHECK(memcmp(got, b, sizeof(b)) == 0);
    CHECK_OK(hk_msg_get_bn(m, "n", 4, &w));
    CHECK(BN_cmp(w, v) == 0);
    CHECK_OK(hk_msg_get_bn_array(m, "a", back, 2, 3));
    CHECK(BN_cmp(back[0], v) == 0 && BN_cmp(back[1], v) == 0);
    CHECK_OK(hk_msg_get_u32(m, "u", &u));
    CHECK(u == 7);
    CHECK_OK(hk_msg_get_scalar(m, c, "s", &s2));
    CHECK(hk_scalar_eq(&s, &s2));
    CHECK_ERR(hk_msg_finish(m), HK_ERR_DECODE); /* "ps" not read yet */
    CHECK_OK(hk_msg_get_points(m, c, "ps", p2, 2));
    CHECK(hk_point_eq(&p2[0], &pts[0]) && hk_point_eq(&p2[1], &pts[1]));
    CHECK_OK(hk_msg_finish(m));
    hk_msg_free(m);
    OPENSSL_free(enc);
    BN_free(v);
    BN_free(w);
    BN_free(back[0]);
    BN_free(back[1]);
}

static void test_codec(void)
{
    hk_curve *c = NULL;

    CHECK_OK(hk_curve_new(HK_CURVE_SECP256K1, &c));
    test_codec_parse();
    test_codec_getters(c);
    test_codec_roundtrip(c);
    hk_curve_free(c);
}

/* ---- share records ------------------------------------------------------ */

static json_t *record_json(const unsigned char *rec, size_t len)
{
    json_t *j = json_loadb((const char *)rec, len, 0, NULL);

    CHECK(j != NULL && json_is_object(j));
    return j;
}

typedef struct {
    const hk_share *own, *peer;
    unsigned char fp[HK_HASH_LEN];
} record_ctx;

/* Decodes the JSON as a record: must be refused, whatever the code. With
 * `lenient` (P2's N and ckey, which P2 cannot check on its own) it may
 * decode instead, into a share whose fingerprint differs, so the peer
 * refuses to sign with it. */
static void expect_bad_record(const record_ctx *rc, json_t *j, const char *what,
                              int lenient)
{
    char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    unsigned char fp[HK_HASH_LEN], dig[32] = {1}, sig[HK_SIG_LEN];
    hk_drive_stats st;
    hk_share *sh = NULL;
    hk_err e;

    CHECK(s != NULL);
    e = hk_share_decode((const unsigned char *)s, strlen(s), &sh);
    free(s);
    if (e != HK_OK) {
        CHECK(sh == NULL);
        return;
    }
    if (!lenient) {
        fprintf(stderr, "share record accepted with %s altered\n", what);
        CHECK(e != HK_OK);
    }
    CHECK_OK(hk_share_fingerprint(sh, fp));
    CHECK(memcmp(fp, rc->fp, HK_HASH_LEN) != 0);
    if (sh->role == HK_ROLE_P1)
        e = hk_drive_sign(sh, rc->peer, dig, sizeof(dig), 0, sig, &st);
    else
        e = hk_drive_sign(rc->peer, sh, dig, sizeof(dig), 0, sig, &st);
    CHECK_ERR(e, HK_ERR_EPOCH);
    hk_share_free(sh);
}

/* Flips the last hex digit of a string field (last: keeps the width,
 * changes the value; for N it makes it even, a deterministic refusal). */
static void flip_last(json_t *j, const char *key)
{
    json_t *v = json_object_get(j, key);
    char *s;
    size_t n;

    CHECK(json_is_string(v));
    n = json_string_length(v);
    s = OPENSSL_strdup(json_string_value(v));
    CHECK(s != NULL && n > 0);
    s[n - 1] = s[n - 1] == '0' ? '1' : s[n - 1] == '1' ? '0' : s[n - 1] ^ 1;
    CHECK(json_object_set_new(j, key, json_string(s)) == 0);
    OPENSSL_free(s);
}

/* Flips a hex digit in the middle of a string field. */
static void flip_mid(json_t *j, const char *key)
{
    json_t *v = json_object_get(j, key);
    char *s;
    size_t n;

    CHECK(json_is_string(v));
    n = json_string_length(v);
    s = OPENSSL_strdup(json_string_value(v));
    CHECK(s != NULL && n > 2);
    s[n / 2] = s[n / 2] == 'f' ? 'e' : s[n / 2] == '9' ? 'a' : s[n / 2] + 1;
    CHECK(json_object_set_new(j, key, json_string(s)) == 0);
    OPENSSL_free(s);
}

/* P1's ckey replaced by ckey (+) Enc(t), written at the field's width. */
static void set_ckey_plus(const record_ctx *rc, json_t *j, const BIGNUM *t)
{
    const hk_paillier_pk *pk = hk_paillier_sk_pk(rc->own->sk);
    size_t n = json_string_length(json_object_get(j, "ckey")), i;
    BIGNUM *e = BN_new(), *c = BN_new();
    char *hex, *s = calloc(1, n + 1);

    CHECK(e != NULL && c != NULL && s != NULL);
    CHECK_OK(hk_paillier_enc(pk, t, NULL, e));
    CHECK_OK(hk_paillier_add(pk, rc->own->ckey, e, c));
    CHECK((hex = BN_bn2hex(c)) != NULL && strlen(hex) <= n);
    memset(s, '0', n);
    memcpy(s + n - strlen(hex), hex, strlen(hex));
    for (i = 0; i < n; i++)
        s[i] = (char)tolower((unsigned char)s[i]);
    CHECK(json_object_set_new(j, "ckey", json_string(s)) == 0);
    OPENSSL_free(hex);
    free(s);
    BN_free(e);
    BN_free(c);
}

/* P1 checks its ckey by decrypting modulo p: Enc(x1 + q) is refused;
 * Enc(x1 + p) has the right residue mod p, so it may decode, but it is not
 * the ckey the server holds: the share's fingerprint differs and it never
 * signs (expect_bad_record, lenient). */
static void record_ckey_tests(const record_ctx *rc, json_t *j)
{
    json_t *c;

    if (rc->own->role != HK_ROLE_P1)
        return;
    c = json_deep_copy(j);
    set_ckey_plus(rc, c, hk_paillier_sk_q(rc->own->sk));
    expect_bad_record(rc, c, "ckey (+) Enc(q)", 0);
    json_decref(c);
    c = json_deep_copy(j);
    set_ckey_plus(rc, c, hk_paillier_sk_p(rc->own->sk));
    expect_bad_record(rc, c, "ckey (+) Enc(p)", 1);
    json_decref(c);
}

/* Each hex field with its last digit and a middle digit changed. */
static void record_hex_tests(const record_ctx *rc, json_t *j)
{
    static const char *const hexf[] = {"x", "Q",    "Q1", "Q2",
                                       "N", "ckey", "p",  "q"};
    hk_role role = rc->own->role;
    size_t i, nf = role == HK_ROLE_P1 ? 8 : 6;
    int lenient;
    json_t *c;

    for (i = 0; i < nf; i++) {
        /* N's last digit makes it even: refused by anyone. */
        lenient = role == HK_ROLE_P2 && i >= 4;
        c = json_deep_copy(j);
        flip_last(c, hexf[i]);
        expect_bad_record(rc, c, hexf[i], lenient && i == 5);
        json_decref(c);
        c = json_deep_copy(j);
        flip_mid(c, hexf[i]);
        expect_bad_record(rc, c, hexf[i], lenient);
        json_decref(c);
    }
}

/* Sets key to each value in turn (v is stolen); all refused. */
static void record_set(const record_ctx *rc, json_t *j, const char *key,
                       json_t *v1, json_t *v2)
{
    json_t *c = json_deep_copy(j);

    CHECK(c != NULL && json_object_set_new(c, key, v1) == 0);
    expect_bad_record(rc, c, key, 0);
    if (v2 != NULL) {
        CHECK(json_object_set_new(c, key, v2) == 0);
        expect_bad_record(rc, c, key, 0);
    }
    json_decref(c);
}

static void record_field_tests(const record_ctx *rc, const unsigned char *rec,
                               size_t len)
{
    int other = rc->own->role == HK_ROLE_P1 ? 2 : 1;
    json_t *j = record_json(rec, len), *c;
    const char *key;
    void *it;

    record_hex_tests(rc, j);
    record_ckey_tests(rc, j);
    record_set(rc, j, "role", json_integer(3), json_integer(other));
    record_set(rc, j, "epoch", json_integer(0), json_integer(-1));
    record_set(
        rc, j, "curve", json_string("p384"),
        json_string(rc->own->curve == HK_CURVE_P256 ? "secp256k1" : "p256"));
    record_set(rc, j, "pbits", json_integer(1024), json_integer(3072));
    record_set(rc, j, "v", json_integer(2), json_integer(0));
    record_set(rc, j, "t", json_string("keygen.1"), NULL);
    record_set(rc, j, "x2", json_string("00"), NULL);
    json_object_foreach(j, key, it)
    {
        c = json_deep_copy(j);
        CHECK(json_object_del(c, key) == 0);
        expect_bad_record(rc, c, key, 0);
        json_decref(c);
    }
    json_decref(j);
}

/* A record decoded as one of this party's own, sealed (the server's
 * store): the same share; its structure still checked (an even N, a
 * ckey of N^2 are refused). */
static void test_record_sealed(const record_ctx *rc, const unsigned char *rec,
                               size_t len)
{
    unsigned char fa[HK_HASH_LEN];
    json_t *j = record_json(rec, len), *c;
    hk_share *d = NULL;
    char *txt;

    CHECK_OK(hk_share_decode_sealed(rec, len, &d));
    CHECK_OK(hk_share_fingerprint(d, fa));
    CHECK(memcmp(fa, rc->fp, HK_HASH_LEN) == 0);
    hk_share_free(d);
    d = NULL;
    c = json_deep_copy(j);
    flip_last(c, "N");
    CHECK((txt = json_dumps(c, JSON_COMPACT | JSON_SORT_KEYS)) != NULL);
    CHECK(hk_share_decode_sealed((unsigned char *)txt, strlen(txt), &d) !=
              HK_OK &&
          d == NULL);
    free(txt);
    json_decref(c);
    json_decref(j);
}

static void test_record(const hk_share *own, const hk_share *peer)
{
    unsigned char *rec = NULL, *again = NULL;
    size_t len = 0, len2 = 0, cut;
    hk_share *d = NULL;
    record_ctx rc;

    rc.own = own;
    rc.peer = peer;
    CHECK_OK(hk_share_fingerprint(own, rc.fp));
    CHECK_OK(hk_share_encode(own, &rec, &len));
    CHECK_OK(hk_share_decode(rec, len, &d));
    CHECK_OK(hk_share_encode(d, &again, &len2));
    CHECK(len2 == len && memcmp(again, rec, len) == 0);
    hk_share_free(d);
    d = NULL;
    test_record_sealed(&rc, rec, len);
    for (cut = 0; cut < len; cut += cut < 8 ? 1 : len / 7)
        CHECK(hk_share_decode(rec, cut, &d) != HK_OK && d == NULL);
    CHECK(hk_share_decode(rec, len - 1, &d) != HK_OK && d == NULL);
    record_field_tests(&rc, rec, len);
    OPENSSL_clear_free(rec, len);
    OPENSSL_clear_free(again, len2);
}

/* Restore (issue 18): the server's public view of its share plus x1
 * rebuilds a P1 share that names the same share (fingerprint) and runs a
 * refresh; the refreshed share signs. A wrong x1, a tampered or truncated
 * view are refused. */
static void test_public_view(const hk_share *s1, const hk_share *s2)
{
    unsigned char fa[HK_HASH_LEN], fb[HK_HASH_LEN], *rec = NULL, *rec1 = NULL,
                                                    sig[HK_SIG_LEN], dig[32];
    hk_share *v = NULL, *n1 = NULL, *n2 = NULL;
    hk_scalar bad = s1->x;
    hk_drive_stats st;
    size_t len = 0, len1 = 0, i;

    CHECK_OK(hk_share_public_encode(s2, &rec, &len));
    CHECK_OK(hk_share_public_encode(s1, &rec1, &len1));
    CHECK(len == len1 && memcmp(rec, rec1, len) == 0); /* the same values */
    CHECK(memmem(rec, len, "\"x\"", 3) == NULL &&
          memmem(rec, len, "\"p\"", 3) == NULL);
    CHECK_OK(hk_share_public_decode(rec, len, &v));
    CHECK(v->role == HK_ROLE_P1 && v->sk == NULL && hk_scalar_is_zero(&v->x));
    bad.b[HK_SCALAR_LEN - 1] ^= 1;
    CHECK_ERR(hk_share_p1_restore(v, &bad), HK_ERR_KEY_MISMATCH);
    CHECK(hk_scalar_is_zero(&v->x));
    CHECK_ERR(hk_share_p1_restore(v, NULL), HK_ERR_ARG);
    CHECK_OK(hk_share_p1_restore(v, &s1->x));
    CHECK_OK(hk_share_fingerprint(v, fa));
    CHECK_OK(hk_share_fingerprint(s1, fb));
    CHECK(memcmp(fa, fb, HK_HASH_LEN) == 0);
    /* not storable: no Paillier secret */
    OPENSSL_free(rec1);
    rec1 = NULL;
    CHECK_ERR(hk_share_encode(v, &rec1, &len1), HK_ERR_ARG);
    CHECK_OK(
        hk_drive_refresh(v, s2, 2048, hk_test_rped_secret(), &n1, &n2, &st));
    CHECK(n1->sk != NULL && n1->epoch == s1->epoch + 1);
    CHECK(hk_point_eq(&n1->Q, &s1->Q));
    memset(dig, 7, sizeof(dig));
    CHECK_OK(hk_drive_sign(n1, n2, dig, sizeof(dig), 0, sig, &st));
    /* every byte flipped or the record cut: refused, never a crash */
    for (i = 0; i < len; i += 7) {
        hk_share *t = NULL;

        rec[i] ^= 0x21;
        if (hk_share_public_decode(rec, len, &t) == HK_OK) {
            /* a flip inside a value the decoder cannot check (e.g. the
             * setup hash): then the view no longer matches x1 or the
             * server's fingerprint */
            hk_share_free(t);
        }
        rec[i] ^= 0x21;
    }
    {
        hk_share *t = NULL;

        CHECK(hk_share_public_decode(rec, len / 2, &t) != HK_OK && t == NULL);
    }
    hk_share_free(v);
    hk_share_free(n1);
    hk_share_free(n2);
    OPENSSL_free(rec);
}

static void test_shares(void)
{
    hk_share *s1 = NULL, *s2 = NULL;
    hk_drive_stats st;

    CHECK_OK(hk_drive_keygen(HK_CURVE_SECP256K1, 2048, hk_test_rped_secret(),
                             &s1, &s2, &st));
    test_record(s1, s2);
    test_record(s2, s1);
    test_public_view(s1, s2);
    hk_share_free(s1);
    hk_share_free(s2);
}

/* --- constant-time arithmetic --------------------------------------------- */

/* A random odd modulus of `bits` bits (top bit set). */
static BIGNUM *ct_modulus(int bits)
{
    BIGNUM *m = BN_new();

    CHECK(m != NULL && BN_rand(m, bits, BN_RAND_TOP_ONE, BN_RAND_BOTTOM_ODD));
    return m;
}

/* Value number i below m: 0, m - 1, then random. */
static void ct_value(BIGNUM *v, const BIGNUM *m, int i)
{
    if (i == 0)
        BN_zero(v);
    else if (i == 1)
        CHECK(BN_sub(v, m, BN_value_one()));
    else
        CHECK(BN_rand_range(v, m));
}

static void test_ct_mod(int bits, BN_CTX *ctx)
{
    BIGNUM *m = ct_modulus(bits), *a = BN_new(), *b = BN_new(), *r = BN_new(),
           *want = BN_new();
    unsigned char ab[512], bb[512], rb[512], wb[512];
    hk_ct_mod *md = NULL;
    size_t len;
    int i;

    CHECK(want != NULL);
    CHECK_OK(hk_ct_mod_new(m, &md));
    len = hk_ct_mod_bytes(md);
    CHECK(len == (size_t)BN_num_bytes(m));
    for (i = 0; i < 40; i++) {
        ct_value(a, m, i % 3 == 2 ? 2 : i % 3);
        ct_value(b, m, i % 5 == 1 ? 1 : 2);
        CHECK_OK(hk_ct_mod_mul(md, a, b, r));
        CHECK(BN_mod_mul(want, a, b, m, ctx) && BN_cmp(r, want) == 0);
        CHECK_OK(hk_ct_mod_add(md, a, b, r));
        CHECK(BN_mod_add(want, a, b, m, ctx) && BN_cmp(r, want) == 0);
        CHECK(BN_bn2binpad(a, ab, (int)len) == (int)len &&
              BN_bn2binpad(b, bb, (int)len) == (int)len);
        CHECK_OK(hk_ct_mod_mul_be(md, ab, bb, rb));
        CHECK(BN_mod_mul(want, a, b, m, ctx) &&
              BN_bn2binpad(want, wb, (int)len) == (int)len &&
              memcmp(rb, wb, len) == 0);
        CHECK_OK(hk_ct_mod_add_be(md, ab, bb, rb));
        CHECK(BN_mod_add(want, a, b, m, ctx) &&
              BN_bn2binpad(want, wb, (int)len) == (int)len &&
              memcmp(rb, wb, len) == 0);
        /* reduce a*b + a (below m^2 + m) and the L function of
         * u = 1 + a m mod m^2 */
        CHECK(BN_mul(r, a, b, ctx) && BN_add(r, r, a));
        CHECK_OK(hk_ct_mod_reduce(md, r, want));
        CHECK(BN_mod(r, r, m, ctx) && BN_cmp(r, want) == 0);
        CHECK(BN_mul(r, a, m, ctx) && BN_add_word(r, 1));
        CHECK_OK(hk_ct_mod_lfunc(md, r, want));
        CHECK(BN_cmp(want, a) == 0);
    }
    /* operands not below m are refused */
    CHECK_ERR(hk_ct_mod_mul(md, m, a, r), HK_ERR_ARG);
    CHECK_ERR(hk_ct_mod_add(md, a, m, r), HK_ERR_ARG);
    CHECK(BN_bn2binpad(m, ab, (int)len) == (int)len);
    CHECK_ERR(hk_ct_mod_mul_be(md, ab, bb, rb), HK_ERR_ARG);
    hk_ct_mod_free(md);
    CHECK_ERR(hk_ct_mod_new(BN_value_one(), &md), HK_ERR_ARG);
    CHECK(BN_add_word(m, 1));
    CHECK_ERR(hk_ct_mod_new(m, &md), HK_ERR_ARG); /* even */
    BN_free(m);
    BN_free(a);
    BN_free(b);
    BN_free(r);
    BN_free(want);
}

static void test_ct_crt(int pbits, int qbits, BN_CTX *ctx)
{
    BIGNUM *p = ct_modulus(pbits), *q = ct_modulus(qbits), *n = BN_new(),
           *x = BN_new(), *xp = BN_new(), *xq = BN_new(), *r = BN_new();
    hk_ct_crt *c = NULL;
    int i;

    CHECK(r != NULL);
    if (BN_cmp(p, q) < 0)
        BN_swap(p, q);
    for (;;) { /* coprime */
        CHECK(BN_gcd(n, p, q, ctx));
        if (BN_is_one(n))
            break;
        CHECK(BN_add_word(q, 2));
    }
    CHECK(BN_mul(n, p, q, ctx));
    CHECK_OK(hk_ct_crt_new(p, q, &c));
    for (i = 0; i < 40; i++) {
        ct_value(x, n, i < 2 ? i : 2);
        CHECK(BN_mod(xp, x, p, ctx) && BN_mod(xq, x, q, ctx));
        CHECK_OK(hk_ct_crt_combine(c, xp, xq, r));
        CHECK(BN_cmp(r, x) == 0);
    }
    CHECK_ERR(hk_ct_crt_combine(c, p, xq, r), HK_ERR_ARG);
    hk_ct_crt_free(c);
    CHECK_ERR(hk_ct_crt_new(q, p, &c), HK_ERR_ARG); /* needs P > Q */
    /* with Q^-1 mod P given: the same results; a wrong one refused */
    CHECK(BN_mod_inverse(x, q, p, ctx) != NULL);
    CHECK_OK(hk_ct_crt_new_inv(p, q, x, &c));
    CHECK(BN_mod(xp, n, p, ctx) && BN_sub_word(xq, 0));
    ct_value(r, n, 2);
    CHECK(BN_mod(xp, r, p, ctx) && BN_mod(xq, r, q, ctx));
    CHECK_OK(hk_ct_crt_combine(c, xp, xq, n));
    CHECK(BN_cmp(r, n) == 0);
    hk_ct_crt_free(c);
    CHECK(BN_add_word(x, 1));
    CHECK_ERR(hk_ct_crt_new_inv(p, q, x, &c), HK_ERR_ARG);
    CHECK(BN_add(x, x, p));
    CHECK_ERR(hk_ct_crt_new_inv(p, q, x, &c), HK_ERR_ARG); /* not < P */
    CHECK_ERR(hk_ct_crt_new_inv(p, q, NULL, &c), HK_ERR_ARG);
    BN_free(p);
    BN_free(q);
    BN_free(n);
    BN_free(x);
    BN_free(xp);
    BN_free(xq);
    BN_free(r);
}

static void test_ct(void)
{
    static const int bits[] = {33, 256, 1024, 1031, 2048, 3072};
    BN_CTX *ctx = BN_CTX_new();
    size_t i;

    CHECK(ctx != NULL);
    for (i = 0; i < sizeof(bits) / sizeof(bits[0]); i++)
        test_ct_mod(bits[i], ctx);
    test_ct_crt(1024, 1024, ctx);
    test_ct_crt(1536, 1000, ctx);
    test_ct_crt(2048, 2048, ctx);
    BN_CTX_free(ctx);
}

int main(void)
{
    hk_paillier_sk *sk = NULL;
    size_t i;

    test_ct();
    printf("constant-time arithmetic: ok\n");
    test_curve_names();
    for (i = 0; i < sizeof(curves) / sizeof(curves[0]); i++)
        test_curve(curves[i]);
    printf("curve: ok\n");
    CHECK_OK(hk_paillier_keygen(2048, &sk));
    test_paillier(sk);
    printf("paillier: ok\n");
    for (i = 0; i < sizeof(curves) / sizeof(curves[0]); i++)
        test_schnorr(curves[i]);
    test_nthroot(sk);
    test_nthroot_nonsquarefree();
    for (i = 0; i < sizeof(curves) / sizeof(curves[0]); i++)
        test_logstar(curves[i], sk);
    test_prm();
    printf("zk: ok\n");
    test_codec();
    printf("codec: ok\n");
    test_shares();
    printf("share records: ok\n");
    hk_paillier_sk_free(sk);
    printf("test_primitives: ok\n");
    return 0;
}
