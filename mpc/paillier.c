/* Paillier with g = N + 1; CRT for the key owner.
 *
 * Constant time. Every operation of the key owner that involves p or q
 * runs in time independent of their values and of the secret
 * intermediate values, even on attacker-chosen input (a ciphertext from
 * the server): exponentiations are BN_mod_exp_mont_consttime with
 * BN_FLG_CONSTTIME operands; reductions modulo p, q, p^2, q^2, the L
 * function's exact division by p, the products modulo p and the CRT
 * recombination run on fixed-width limbs in mpc/ct.c (BN_nnmod, BN_div,
 * BN_mod_mul and BN_mod_sub would branch on the values). */
#include <pthread.h>
#include <string.h>

#include <openssl/crypto.h>

#include "common/libctx.h"
#include "mpc/ct.h"
#include "mpc/paillier.h"

struct hk_paillier_pk {
    int bits;
    BIGNUM *n, *n2;
    BN_MONT_CTX *mont_n, *mont_n2;
};

struct hk_paillier_sk {
    hk_paillier_pk pk;
    BIGNUM *p, *q, *p2, *q2;
    BIGNUM *pm1, *qm1; /* p - 1, q - 1 */
    BIGNUM *hp, *hq;   /* L_p((1+N)^(p-1) mod p^2)^-1 mod p, same for q */
    BIGNUM *qinv;      /* q^-1 mod p */
    BIGNUM *dp, *dq;   /* N^-1 mod (p-1), N^-1 mod (q-1) */
    BN_MONT_CTX *mont_p, *mont_q, *mont_p2, *mont_q2;
    hk_ct_mod *ct_p, *ct_q, *ct_p2, *ct_q2;
    hk_ct_crt *crt, *crt2; /* mod pq from p, q; mod (pq)^2 from p^2, q^2 */
};

int hk_paillier_bits_ok(int bits) { return bits == 2048 || bits == 3072; }

static void hk_paillier_pk_clear(hk_paillier_pk *pk)
{
    BN_free(pk->n);
    BN_free(pk->n2);
    BN_MONT_CTX_free(pk->mont_n);
    BN_MONT_CTX_free(pk->mont_n2);
    memset(pk, 0, sizeof(*pk));
}

/* Fills pk from n (already validated by the caller). */
static hk_err hk_paillier_pk_setup(hk_paillier_pk *pk, const BIGNUM *n,
                                   int bits, BN_CTX *ctx)
{
    pk->bits = bits;
    pk->n = BN_dup(n);
    pk->n2 = BN_new();
    pk->mont_n = BN_MONT_CTX_new();
    pk->mont_n2 = BN_MONT_CTX_new();
    if (pk->n == NULL || pk->n2 == NULL || pk->mont_n == NULL ||
        pk->mont_n2 == NULL)
        return HK_ERR_NOMEM;
    if (!BN_sqr(pk->n2, n, ctx) || !BN_MONT_CTX_set(pk->mont_n, n, ctx) ||
        !BN_MONT_CTX_set(pk->mont_n2, pk->n2, ctx))
        return HK_ERR_CRYPTO;
    return HK_OK;
}

/* 1 if n has a prime factor below HK_PAILLIER_TRIAL_BOUND. Primes come from
 * a sieve and are grouped into products below 2^64 so that one
 * BN_mod_word covers several of them. */
static int hk_has_small_factor(const BIGNUM *n)
{
    static const unsigned limit = HK_PAILLIER_TRIAL_BOUND;
    unsigned char *composite;
    BN_ULONG prod = 1, r;
    unsigned i, j, k, group[4], ng = 0;
    int found = 0;

    composite = OPENSSL_zalloc(limit);
    if (composite == NULL)
        return 1; /* fail closed */
    for (i = 2; i < limit && !found; i++) {
        if (composite[i])
            continue;
        for (j = i * i; j < limit; j += i)
            composite[j] = 1;
        group[ng++] = i;
        prod *= i;
        if (ng < 4 && i + 1 < limit)
            continue;
        r = BN_mod_word(n, prod);
        for (k = 0; k < ng && !found; k++)
            found = r == (BN_ULONG)-1 || r % group[k] == 0;
        ng = 0;
        prod = 1;
    }
    if (!found && ng > 0) {
        r = BN_mod_word(n, prod);
        for (k = 0; k < ng && !found; k++)
            found = r == (BN_ULONG)-1 || r % group[k] == 0;
    }
    OPENSSL_free(composite);
    return found;
}

/* The public key of n; `trial`: with the trial division a receiver of
 * someone else's modulus makes. */
static hk_err hk_paillier_pk_make(const BIGNUM *n, int bits, int trial,
                                  hk_paillier_pk **out)
{
    hk_paillier_pk *pk = NULL;
    BN_CTX *ctx = NULL;
    hk_err e;

    if (n == NULL || out == NULL)
        return HK_ERR_ARG;
    *out = NULL;
    if (!hk_paillier_bits_ok(bits) || BN_is_negative(n) ||
        BN_num_bits(n) != bits || !BN_is_odd(n) ||
        (trial && hk_has_small_factor(n)))
        return HK_ERR_PAILLIER;
    pk = OPENSSL_zalloc(sizeof(*pk));
    ctx = BN_CTX_new_ex(hk_libctx());
    e = HK_ERR_NOMEM;
    if (pk == NULL || ctx == NULL)
        goto done;
    if ((e = hk_paillier_pk_setup(pk, n, bits, ctx)) != HK_OK)
        goto done;
    *out = pk;
    pk = NULL;
done:
    hk_paillier_pk_free(pk);
    BN_CTX_free(ctx);
    return e;
}

hk_err hk_paillier_pk_new(const BIGNUM *n, int bits, hk_paillier_pk **out)
{
    return hk_paillier_pk_make(n, bits, 1, out);
}

hk_err hk_paillier_pk_stored(const BIGNUM *n, int bits, hk_paillier_pk **out)
{
    return hk_paillier_pk_make(n, bits, 0, out);
}

hk_err hk_paillier_ct_range(const hk_paillier_pk *pk, const BIGNUM *c)
{
    if (pk == NULL || c == NULL)
        return HK_ERR_ARG;
    return BN_is_negative(c) || BN_is_zero(c) || BN_cmp(c, pk->n2) >= 0
               ? HK_ERR_PAILLIER
               : HK_OK;
}

hk_err hk_paillier_sk_pk_copy(const hk_paillier_sk *sk, hk_paillier_pk **out)
{
    hk_paillier_pk *pk;
    hk_err e = HK_ERR_NOMEM;

    if (sk == NULL || out == NULL)
        return HK_ERR_ARG;
    *out = NULL;
    if ((pk = OPENSSL_zalloc(sizeof(*pk))) == NULL)
        return HK_ERR_NOMEM;
    pk->bits = sk->pk.bits;
    pk->n = BN_dup(sk->pk.n);
    pk->n2 = BN_dup(sk->pk.n2);
    pk->mont_n = BN_MONT_CTX_new();
    pk->mont_n2 = BN_MONT_CTX_new();
    if (pk->n != NULL && pk->n2 != NULL && pk->mont_n != NULL &&
        pk->mont_n2 != NULL &&
        BN_MONT_CTX_copy(pk->mont_n, sk->pk.mont_n) != NULL &&
        BN_MONT_CTX_copy(pk->mont_n2, sk->pk.mont_n2) != NULL) {
        *out = pk;
        return HK_OK;
    }
    hk_paillier_pk_free(pk);
    return e;
}

void hk_paillier_pk_free(hk_paillier_pk *pk)
{
    if (pk == NULL)
        return;
    hk_paillier_pk_clear(pk);
    OPENSSL_free(pk);
}

const BIGNUM *hk_paillier_n(const hk_paillier_pk *pk) { return pk->n; }
const BIGNUM *hk_paillier_n2(const hk_paillier_pk *pk) { return pk->n2; }
int hk_paillier_bits(const hk_paillier_pk *pk) { return pk->bits; }
const hk_paillier_pk *hk_paillier_sk_pk(const hk_paillier_sk *sk)
{
    return &sk->pk;
}
const BIGNUM *hk_paillier_sk_p(const hk_paillier_sk *sk) { return sk->p; }
const BIGNUM *hk_paillier_sk_q(const hk_paillier_sk *sk) { return sk->q; }

void hk_paillier_sk_free(hk_paillier_sk *sk)
{
    size_t i;

    /* Checked before &sk->p etc. are formed: with sk NULL that is UB. */
    if (sk == NULL)
        return;
    {
        BIGNUM **secrets[] = {&sk->p,    &sk->q,   &sk->p2, &sk->q2,
                              &sk->pm1,  &sk->qm1, &sk->hp, &sk->hq,
                              &sk->qinv, &sk->dp,  &sk->dq};

        for (i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++)
            BN_clear_free(*secrets[i]);
    }
    BN_MONT_CTX_free(sk->mont_p);
    BN_MONT_CTX_free(sk->mont_q);
    BN_MONT_CTX_free(sk->mont_p2);
    BN_MONT_CTX_free(sk->mont_q2);
    hk_ct_mod_free(sk->ct_p);
    hk_ct_mod_free(sk->ct_q);
    hk_ct_mod_free(sk->ct_p2);
    hk_ct_mod_free(sk->ct_q2);
    hk_ct_crt_free(sk->crt);
    hk_ct_crt_free(sk->crt2);
    hk_paillier_pk_clear(&sk->pk);
    OPENSSL_clear_free(sk, sizeof(*sk));
}

static BIGNUM *hk_secret_bn(void)
{
    BIGNUM *b = BN_secure_new();

    if (b != NULL)
        BN_set_flags(b, BN_FLG_CONSTTIME);
    return b;
}

/* With g = 1 + N, (1+N)^(p-1) = 1 + (p-1)N mod p^2, so
 * L_p((1+N)^(p-1) mod p^2) = (p-1)q = -q mod p and h_p = -(q^-1) mod p:
 * no exponentiation needed. */
static int hk_crt_h(BIGNUM *h, const BIGNUM *inv, const BIGNUM *p)
{
    return !BN_is_zero(inv) && BN_sub(h, p, inv);
}

/* The exponents of the N-th root (only a fresh key proves its modulus). */
static hk_err hk_paillier_sk_roots(hk_paillier_sk *sk, BN_CTX *ctx)
{
    if ((sk->dp = hk_secret_bn()) == NULL || (sk->dq = hk_secret_bn()) == NULL)
        return HK_ERR_NOMEM;
    /* fails iff gcd(N, phi(N)) != 1 */
    if (BN_mod_inverse(sk->dp, sk->pk.n, sk->pm1, ctx) == NULL ||
        BN_mod_inverse(sk->dq, sk->pk.n, sk->qm1, ctx) == NULL)
        return HK_ERR_PAILLIER;
    return HK_OK;
}

/* The inverses the CRT values need, from one inversion: qinv = q^-1 mod p
 * (BN_mod_inverse, constant time); pinv = p^-1 mod q = q - k for the
 * exact quotient k = (q*qinv - 1)/p (then p*(q - k) = 1 + q*(p - qinv));
 * q2inv = (q^2)^-1 mod p^2 = u^2 for u = qinv*(2 - q*qinv) mod p^2, one
 * Newton (Hensel) step lifting q^-1 from mod p to mod p^2 (if q*qinv = 1 +
 * t*p then q*u = 1 - t^2*p^2). Each result is checked by one
 * multiplication. Three inversions cost 0.85 ms more per key load here. */
static hk_err hk_paillier_inverses(hk_paillier_sk *sk, BIGNUM *pinv,
                                   BIGNUM *q2inv, BN_CTX *ctx)
{
    BIGNUM *t, *k;
    int ok;

    BN_CTX_start(ctx);
    t = BN_CTX_get(ctx);
    k = BN_CTX_get(ctx);
    ok = k != NULL;
    if (ok) {
        BN_set_flags(t, BN_FLG_CONSTTIME);
        BN_set_flags(k, BN_FLG_CONSTTIME);
    }
    ok = ok && BN_mod_inverse(sk->qinv, sk->q, sk->p, ctx) != NULL &&
         BN_mul(t, sk->q, sk->qinv, ctx) && BN_sub_word(t, 1) &&
         BN_div(k, NULL, t, sk->p, ctx) && BN_sub(pinv, sk->q, k) &&
         BN_mod_mul(t, sk->p, pinv, sk->q, ctx) && BN_is_one(t) &&
         BN_mul(t, sk->q, sk->qinv, ctx) && BN_set_word(k, 2) &&
         BN_sub(k, k, t) && BN_mod_mul(k, k, sk->qinv, sk->p2, ctx) &&
         BN_mod_sqr(q2inv, k, sk->p2, ctx) &&
         BN_mod_mul(t, sk->q2, q2inv, sk->p2, ctx) && BN_is_one(t);
    BN_clear(t);
    BN_clear(k);
    BN_CTX_end(ctx);
    return ok ? HK_OK : HK_ERR_PAILLIER;
}

/* Derives every CRT value used by encryption and decryption. */
static hk_err hk_paillier_sk_derive(hk_paillier_sk *sk, int bits, BN_CTX *ctx)
{
    BIGNUM *n = NULL, *pinv = NULL, *q2inv = NULL,
           **all[] = {&sk->p2, &sk->q2, &sk->pm1, &sk->qm1,
                      &sk->hp, &sk->hq, &sk->qinv};
    hk_err e = HK_ERR_NOMEM;
    size_t i;

    for (i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        if ((*all[i] = hk_secret_bn()) == NULL)
            return HK_ERR_NOMEM;
    sk->mont_p = BN_MONT_CTX_new();
    sk->mont_q = BN_MONT_CTX_new();
    sk->mont_p2 = BN_MONT_CTX_new();
    sk->mont_q2 = BN_MONT_CTX_new();
    n = BN_new();
    pinv = hk_secret_bn();
    q2inv = hk_secret_bn();
    if (n == NULL || pinv == NULL || q2inv == NULL || sk->mont_p == NULL ||
        sk->mont_q == NULL || sk->mont_p2 == NULL || sk->mont_q2 == NULL)
        goto done;
    e = HK_ERR_CRYPTO;
    if (!BN_mul(n, sk->p, sk->q, ctx) || !BN_sqr(sk->p2, sk->p, ctx) ||
        !BN_sqr(sk->q2, sk->q, ctx) ||
        !BN_sub(sk->pm1, sk->p, BN_value_one()) ||
        !BN_sub(sk->qm1, sk->q, BN_value_one()) ||
        !BN_MONT_CTX_set(sk->mont_p, sk->p, ctx) ||
        !BN_MONT_CTX_set(sk->mont_q, sk->q, ctx) ||
        !BN_MONT_CTX_set(sk->mont_p2, sk->p2, ctx) ||
        !BN_MONT_CTX_set(sk->mont_q2, sk->q2, ctx))
        goto done;
    /* p, q not coprime */
    if ((e = hk_paillier_inverses(sk, pinv, q2inv, ctx)) != HK_OK)
        goto done;
    e = HK_ERR_CRYPTO;
    if (!hk_crt_h(sk->hp, sk->qinv, sk->p) || !hk_crt_h(sk->hq, pinv, sk->q))
        goto done;
    if ((e = hk_ct_mod_new(sk->p, &sk->ct_p)) != HK_OK ||
        (e = hk_ct_mod_new(sk->q, &sk->ct_q)) != HK_OK ||
        (e = hk_ct_mod_new(sk->p2, &sk->ct_p2)) != HK_OK ||
        (e = hk_ct_mod_new(sk->q2, &sk->ct_q2)) != HK_OK ||
        (e = hk_ct_crt_new_inv(sk->p, sk->q, sk->qinv, &sk->crt)) != HK_OK ||
        (e = hk_ct_crt_new_inv(sk->p2, sk->q2, q2inv, &sk->crt2)) != HK_OK)
        goto done;
    e = hk_paillier_pk_setup(&sk->pk, n, bits, ctx);
done:
    BN_free(n);
    BN_clear_free(pinv);
    BN_clear_free(q2inv);
    return e;
}

static hk_err hk_paillier_sk_build(BIGNUM *p, BIGNUM *q, int bits, int roots,
                                   hk_paillier_sk **out)
{
    hk_paillier_sk *sk;
    BN_CTX *ctx;
    hk_err e;

    sk = OPENSSL_zalloc(sizeof(*sk));
    ctx = BN_CTX_secure_new_ex(hk_libctx());
    if (sk == NULL || ctx == NULL) {
        OPENSSL_free(sk);
        BN_CTX_free(ctx);
        BN_clear_free(p);
        BN_clear_free(q);
        return HK_ERR_NOMEM;
    }
    /* Keep p > q so that "q^-1 mod p" is the conventional CRT form. */
    if (BN_cmp(p, q) < 0) {
        sk->p = q;
        sk->q = p;
    } else {
        sk->p = p;
        sk->q = q;
    }
    e = hk_paillier_sk_derive(sk, bits, ctx);
    if (e == HK_OK && roots)
        e = hk_paillier_sk_roots(sk, ctx);
    BN_CTX_free(ctx);
    if (e == HK_OK && BN_num_bits(sk->pk.n) != bits)
        e = HK_ERR_PAILLIER;
    if (e != HK_OK) {
        hk_paillier_sk_free(sk);
        return e;
    }
    *out = sk;
    return HK_OK;
}

/* One prime of `bits` bits (OpenSSL sets its top two bits). */
typedef struct {
    BIGNUM *p;
    int bits, ok;
} hk_prime_job;

static void *hk_prime_run(void *arg)
{
    hk_prime_job *j = arg;
    BN_CTX *ctx = BN_CTX_secure_new_ex(hk_libctx());

    j->ok = ctx != NULL &&
            BN_generate_prime_ex2(j->p, j->bits, 0, NULL, NULL, NULL, ctx);
    BN_CTX_free(ctx);
    return NULL;
}

hk_err hk_paillier_keygen_threads(int bits, int threads, hk_paillier_sk **out)
{
    hk_prime_job jp = {0}, jq = {0};
    pthread_t th;
    int spawned;
    hk_err e = HK_ERR_NOMEM;

    if (out == NULL || !hk_paillier_bits_ok(bits) || threads < 1 || threads > 2)
        return HK_ERR_ARG;
    *out = NULL;
    jp.p = hk_secret_bn();
    jq.p = hk_secret_bn();
    jp.bits = jq.bits = bits / 2;
    if (jp.p == NULL || jq.p == NULL)
        goto done;
    e = HK_ERR_CRYPTO;
    /* OpenSSL sets the top two bits of each prime, so N has exactly
     * `bits` bits; equal-size primes give gcd(N, phi(N)) = 1. The two
     * searches are independent: with two threads q is searched on a
     * second thread, joined before this returns (no state outlives the
     * call, so mpc/ keeps no threads or globals). If the thread cannot be
     * started, q is searched here after p. */
    do {
        spawned =
            threads == 2 && pthread_create(&th, NULL, hk_prime_run, &jq) == 0;
        hk_prime_run(&jp);
        if (spawned)
            pthread_join(th, NULL);
        else
            hk_prime_run(&jq);
        if (!jp.ok || !jq.ok)
            goto done;
    } while (BN_cmp(jp.p, jq.p) == 0);
    e = hk_paillier_sk_build(jp.p, jq.p, bits, 1, out);
    jp.p = jq.p = NULL;
done:
    BN_clear_free(jp.p);
    BN_clear_free(jq.p);
    return e;
}

hk_err hk_paillier_keygen(int bits, hk_paillier_sk **out)
{
    return hk_paillier_keygen_threads(bits, 2, out);
}

/* Copies checked primes and builds the key; roots: a fresh key that
 * proves its modulus. */
static hk_err hk_paillier_from_primes(const BIGNUM *p, const BIGNUM *q,
                                      int bits, int roots, hk_paillier_sk **out)
{
    BIGNUM *pc, *qc;

    if (p == NULL || q == NULL || out == NULL)
        return HK_ERR_ARG;
    *out = NULL;
    if (!hk_paillier_bits_ok(bits) || BN_num_bits(p) != bits / 2 ||
        BN_num_bits(q) != bits / 2 || !BN_is_odd(p) || !BN_is_odd(q) ||
        BN_cmp(p, q) == 0)
        return HK_ERR_PAILLIER;
    pc = hk_secret_bn();
    qc = hk_secret_bn();
    if (pc == NULL || qc == NULL || !BN_copy(pc, p) || !BN_copy(qc, q)) {
        BN_clear_free(pc);
        BN_clear_free(qc);
        return HK_ERR_NOMEM;
    }
    return hk_paillier_sk_build(pc, qc, bits, roots, out);
}

hk_err hk_paillier_sk_from_primes(const BIGNUM *p, const BIGNUM *q, int bits,
                                  hk_paillier_sk **out)
{
    return hk_paillier_from_primes(p, q, bits, 0, out);
}

hk_err hk_paillier_keygen_from_primes(const BIGNUM *p, const BIGNUM *q,
                                      int bits, hk_paillier_sk **out)
{
    /* hk_paillier_sk_roots fails unless gcd(N, phi(N)) = 1 */
    return hk_paillier_from_primes(p, q, bits, 1, out);
}

/* No gcd test: a uniform r in [1, N) shares a factor with N with
 * probability (p + q - 2)/(N - 1) < 2^(2 - bits/2), and the constant-time
 * gcd at these sizes costs a tenth of an r^N (0.8 ms: server CPU on
 * every signature, and many times per proof). */
hk_err hk_paillier_rand_unit(const hk_paillier_pk *pk, BIGNUM *r)
{
    if (pk == NULL || r == NULL)
        return HK_ERR_ARG;
    do {
        if (!hk_bn_priv_rand_range(r, pk->n))
            return HK_ERR_RAND;
    } while (BN_is_zero(r));
    return HK_OK;
}

/* c = (1 + m*N) * rn mod N^2. */
static int hk_paillier_finish(const hk_paillier_pk *pk, const BIGNUM *m,
                              const BIGNUM *rn, BIGNUM *c, BN_CTX *ctx)
{
    BIGNUM *g;
    int ok;

    BN_CTX_start(ctx);
    g = BN_CTX_get(ctx);
    ok = g != NULL && BN_mul(g, m, pk->n, ctx) && BN_add_word(g, 1) &&
         BN_mod_mul(c, g, rn, pk->n2, ctx);
    BN_clear(g);
    BN_CTX_end(ctx);
    return ok;
}

static int hk_plain_ok(const hk_paillier_pk *pk, const BIGNUM *m)
{
    return !BN_is_negative(m) && BN_cmp(m, pk->n) < 0;
}

hk_err hk_paillier_enc(const hk_paillier_pk *pk, const BIGNUM *m,
                       const BIGNUM *r, BIGNUM *c)
{
    BN_CTX *ctx;
    BIGNUM *rr, *rn;
    hk_err e = HK_ERR_NOMEM;

    if (pk == NULL || m == NULL || c == NULL || !hk_plain_ok(pk, m))
        return HK_ERR_ARG;
    ctx = BN_CTX_new_ex(hk_libctx());
    if (ctx == NULL)
        return HK_ERR_NOMEM;
    BN_CTX_start(ctx);
    rr = BN_CTX_get(ctx);
    rn = BN_CTX_get(ctx);
    if (rn == NULL)
        goto done;
    if (r == NULL && (e = hk_paillier_rand_unit(pk, rr)) != HK_OK)
        goto done;
    e = HK_ERR_CRYPTO;
    if (!BN_mod_exp_mont(rn, r != NULL ? r : rr, pk->n, pk->n2, ctx,
                         pk->mont_n2) ||
        !hk_paillier_finish(pk, m, rn, c, ctx))
        goto done;
    e = HK_OK;
done:
    BN_clear(rr);
    BN_CTX_end(ctx);
    BN_CTX_free(ctx);
    return e;
}

/* One side of the CRT: a prime (or its square), its Montgomery context for
 * the exponentiation and its constant-time context for the rest. */
typedef struct {
    const BIGNUM *m;
    BN_MONT_CTX *mont;
    const hk_ct_mod *ct;
} hk_crt_side;

/* out = x^e mod s->m, constant time (x below s->m times 2^(its width)). */
static int hk_side_exp(BIGNUM *out, const BIGNUM *x, const BIGNUM *e,
                       const hk_crt_side *s, BN_CTX *ctx)
{
    BN_set_flags(out, BN_FLG_CONSTTIME);
    return hk_ct_mod_reduce(s->ct, x, out) == HK_OK &&
           BN_mod_exp_mont_consttime(out, out, e, s->m, ctx, s->mont);
}

/* out = CRT(x^ep mod P, x^eq mod Q), secret exponents and moduli. */
static int hk_crt_exp(BIGNUM *out, const BIGNUM *x, const BIGNUM *ep,
                      const hk_crt_side *P, const BIGNUM *eq,
                      const hk_crt_side *Q, const hk_ct_crt *crt, BN_CTX *ctx)
{
    BIGNUM *a, *b;
    int ok;

    BN_CTX_start(ctx);
    a = BN_CTX_get(ctx);
    b = BN_CTX_get(ctx);
    ok = b != NULL && hk_side_exp(a, x, ep, P, ctx) &&
         hk_side_exp(b, x, eq, Q, ctx) &&
         hk_ct_crt_combine(crt, a, b, out) == HK_OK;
    BN_clear(a);
    BN_clear(b);
    BN_CTX_end(ctx);
    return ok;
}

hk_err hk_paillier_enc_sk(const hk_paillier_sk *sk, const BIGNUM *m,
                          const BIGNUM *r, BIGNUM *c)
{
    BN_CTX *ctx;
    BIGNUM *rn;
    hk_err e = HK_ERR_CRYPTO;

    if (sk == NULL || m == NULL || r == NULL || c == NULL ||
        !hk_plain_ok(&sk->pk, m))
        return HK_ERR_ARG;
    ctx = BN_CTX_secure_new_ex(hk_libctx());
    if (ctx == NULL)
        return HK_ERR_NOMEM;
    BN_CTX_start(ctx);
    rn = BN_CTX_get(ctx);
    /* r^N mod p^2 and mod q^2, recombined. */
    if (rn != NULL &&
        hk_crt_exp(rn, r, sk->pk.n,
                   &(hk_crt_side){sk->p2, sk->mont_p2, sk->ct_p2}, sk->pk.n,
                   &(hk_crt_side){sk->q2, sk->mont_q2, sk->ct_q2}, sk->crt2,
                   ctx) &&
        hk_paillier_finish(&sk->pk, m, rn, c, ctx))
        e = HK_OK;
    BN_clear(rn);
    BN_CTX_end(ctx);
    BN_CTX_free(ctx);
    return e;
}

/* mp = L_p(c^(p-1) mod p^2) * hp mod p. */
static int hk_dec_half(BIGNUM *mp, const BIGNUM *c, const BIGNUM *pm1,
                       const BIGNUM *h, const hk_crt_side *p2,
                       const hk_ct_mod *ct_p, BN_CTX *ctx)
{
    BIGNUM *u;
    int ok;

    BN_CTX_start(ctx);
    u = BN_CTX_get(ctx);
    ok = u != NULL && hk_side_exp(u, c, pm1, p2, ctx) &&
         hk_ct_mod_lfunc(ct_p, u, u) == HK_OK &&
         hk_ct_mod_mul(ct_p, u, h, mp) == HK_OK;
    BN_clear(u);
    BN_CTX_end(ctx);
    return ok;
}

hk_err hk_paillier_dec(const hk_paillier_sk *sk, const BIGNUM *c, BIGNUM *m)
{
    BN_CTX *ctx;
    BIGNUM *mp, *mq;
    hk_err e = HK_ERR_CRYPTO;

    if (sk == NULL || c == NULL || m == NULL)
        return HK_ERR_ARG;
    ctx = BN_CTX_secure_new_ex(hk_libctx());
    if (ctx == NULL)
        return HK_ERR_NOMEM;
    BN_CTX_start(ctx);
    mp = BN_CTX_get(ctx);
    mq = BN_CTX_get(ctx);
    if (mq == NULL)
        goto done;
    BN_set_flags(mp, BN_FLG_CONSTTIME);
    BN_set_flags(mq, BN_FLG_CONSTTIME);
    if (!hk_dec_half(mp, c, sk->pm1, sk->hp,
                     &(hk_crt_side){sk->p2, sk->mont_p2, sk->ct_p2}, sk->ct_p,
                     ctx) ||
        !hk_dec_half(mq, c, sk->qm1, sk->hq,
                     &(hk_crt_side){sk->q2, sk->mont_q2, sk->ct_q2}, sk->ct_q,
                     ctx) ||
        hk_ct_crt_combine(sk->crt, mp, mq, m) != HK_OK)
        goto done;
    e = HK_OK;
done:
    BN_clear(mp);
    BN_clear(mq);
    BN_CTX_end(ctx);
    BN_CTX_free(ctx);
    return e;
}

/* Half the work of hk_paillier_dec: the plaintext mod p only, which is
 * the plaintext itself when it is below p. Whether it lies below
 * 2^bound_bits is decided without a branch or a length on the secret
 * value (a fixed-width big-endian image whose top bytes are ORed); only
 * the verdict is revealed, and it is the caller's to reveal anyway. */
hk_err hk_paillier_dec_small(const hk_paillier_sk *sk, const BIGNUM *c,
                             int bound_bits, BIGNUM *m)
{
    BN_CTX *ctx;
    BIGNUM *mp;
    unsigned char *img = NULL, high = 0;
    int len, i, full;
    hk_err e = HK_ERR_CRYPTO;

    if (sk == NULL || c == NULL || m == NULL || bound_bits < 8 ||
        bound_bits > sk->pk.bits / 2 - 1)
        return HK_ERR_ARG;
    len = (sk->pk.bits / 2 + 7) / 8;
    full = bound_bits / 8; /* whole low bytes allowed */
    ctx = BN_CTX_secure_new();
    img = OPENSSL_secure_zalloc((size_t)len);
    if (ctx == NULL || img == NULL) {
        BN_CTX_free(ctx);
        OPENSSL_secure_free(img);
        return HK_ERR_NOMEM;
    }
    BN_CTX_start(ctx);
    mp = BN_CTX_get(ctx);
    if (mp == NULL)
        goto done;
    BN_set_flags(mp, BN_FLG_CONSTTIME);
    /* bn2binpad is constant time for a value below 2^(8 len) */
    if (!hk_dec_half(mp, c, sk->pm1, sk->hp,
                     &(hk_crt_side){sk->p2, sk->mont_p2, sk->ct_p2}, sk->ct_p,
                     ctx) ||
        BN_bn2binpad(mp, img, len) != len)
        goto done;
    for (i = 0; i < len - full - 1; i++)
        high |= img[i];
    /* the partial byte: bits at and above bound_bits % 8 */
    high |= (unsigned char)(img[len - full - 1] >> (bound_bits % 8));
    if (high != 0) {
        e = HK_ERR_PAILLIER;
        goto done;
    }
    e = BN_copy(m, mp) != NULL ? HK_OK : HK_ERR_CRYPTO;
    if (e == HK_OK)
        BN_set_flags(m, BN_FLG_CONSTTIME);
done:
    BN_clear(mp);
    BN_CTX_end(ctx);
    BN_CTX_free(ctx);
    OPENSSL_secure_clear_free(img, (size_t)len);
    return e;
}

hk_err hk_paillier_add(const hk_paillier_pk *pk, const BIGNUM *a,
                       const BIGNUM *b, BIGNUM *out)
{
    BN_CTX *ctx;
    int ok;

    if (pk == NULL || a == NULL || b == NULL || out == NULL)
        return HK_ERR_ARG;
    ctx = BN_CTX_new_ex(hk_libctx());
    if (ctx == NULL)
        return HK_ERR_NOMEM;
    ok = BN_mod_mul_montgomery(out, a, b, pk->mont_n2, ctx) &&
         BN_to_montgomery(out, out, pk->mont_n2, ctx);
    BN_CTX_free(ctx);
    return ok ? HK_OK : HK_ERR_CRYPTO;
}

hk_err hk_paillier_mul(const hk_paillier_pk *pk, const BIGNUM *c,
                       const BIGNUM *k, BIGNUM *out)
{
    BN_CTX *ctx;
    int ok;

    if (pk == NULL || c == NULL || k == NULL || out == NULL ||
        BN_is_negative(k))
        return HK_ERR_ARG;
    ctx = BN_CTX_new_ex(hk_libctx());
    if (ctx == NULL)
        return HK_ERR_NOMEM;
    ok = BN_mod_exp_mont_consttime(out, c, k, pk->n2, ctx, pk->mont_n2);
    BN_CTX_free(ctx);
    return ok ? HK_OK : HK_ERR_CRYPTO;
}

/* 0 < v < mod and gcd(v, N) = 1. */
static hk_err hk_unit_in(const hk_paillier_pk *pk, const BIGNUM *v,
                         const BIGNUM *mod)
{
    BN_CTX *ctx;
    BIGNUM *g;
    hk_err e = HK_ERR_PAILLIER;

    if (pk == NULL || v == NULL)
        return HK_ERR_ARG;
    if (BN_is_negative(v) || BN_is_zero(v) || BN_cmp(v, mod) >= 0)
        return HK_ERR_PAILLIER;
    ctx = BN_CTX_new_ex(hk_libctx());
    if (ctx == NULL)
        return HK_ERR_NOMEM;
    BN_CTX_start(ctx);
    g = BN_CTX_get(ctx);
    /* gcd(v, N) = gcd(v mod N, N): half the size for a ciphertext.
     * BN_gcd is constant-time (slow) on numbers of this size. */
    if (g == NULL || !BN_nnmod(g, v, pk->n, ctx) || !BN_gcd(g, g, pk->n, ctx))
        e = HK_ERR_CRYPTO;
    else if (BN_is_one(g))
        e = HK_OK;
    BN_CTX_end(ctx);
    BN_CTX_free(ctx);
    return e;
}

hk_err hk_paillier_ct_check(const hk_paillier_pk *pk, const BIGNUM *c)
{
    return pk == NULL ? HK_ERR_ARG : hk_unit_in(pk, c, pk->n2);
}

hk_err hk_paillier_ct_check_own(const hk_paillier_sk *sk, const BIGNUM *c)
{
    BN_CTX *ctx;
    BIGNUM *t;
    hk_err e;

    if (sk == NULL || c == NULL)
        return HK_ERR_ARG;
    if ((e = hk_paillier_ct_range(&sk->pk, c)) != HK_OK)
        return e;
    if ((ctx = BN_CTX_new_ex(hk_libctx())) == NULL)
        return HK_ERR_NOMEM;
    BN_CTX_start(ctx);
    t = BN_CTX_get(ctx);
    /* c and N are public: a variable-time reduction reveals nothing */
    if (t == NULL || !BN_nnmod(t, c, sk->pk.n, ctx))
        e = HK_ERR_CRYPTO;
    else
        e = BN_is_zero(t) ? HK_ERR_PAILLIER : HK_OK;
    BN_CTX_end(ctx);
    BN_CTX_free(ctx);
    return e;
}

hk_err hk_paillier_unit_check(const hk_paillier_pk *pk, const BIGNUM *u)
{
    return pk == NULL ? HK_ERR_ARG : hk_unit_in(pk, u, pk->n);
}

hk_err hk_paillier_nth_root(const hk_paillier_sk *sk, const BIGNUM *x,
                            BIGNUM *out)
{
    BN_CTX *ctx;
    hk_err e;

    if (sk == NULL || x == NULL || out == NULL)
        return HK_ERR_ARG;
    if (sk->dp == NULL || sk->dq == NULL)
        return HK_ERR_STATE;
    ctx = BN_CTX_secure_new_ex(hk_libctx());
    if (ctx == NULL)
        return HK_ERR_NOMEM;
    e = hk_crt_exp(out, x, sk->dp, &(hk_crt_side){sk->p, sk->mont_p, sk->ct_p},
                   sk->dq, &(hk_crt_side){sk->q, sk->mont_q, sk->ct_q}, sk->crt,
                   ctx)
            ? HK_OK
            : HK_ERR_CRYPTO;
    BN_CTX_free(ctx);
    return e;
}
