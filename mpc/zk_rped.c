/* Ring-Pedersen parameters (N~, s, t) and Pi^prm (CGGMP21 figure 17). */
#include <string.h>

#include <openssl/crypto.h>

#include "common/libctx.h"
#include "mpc/bn_util.h"
#include "mpc/zk_impl.h"
#include "mpc/zk.h"

/* The setup is not tied to a session or key: an all-zero binding. */
static const hk_binding hk_setup_binding = {0, {0}, {0}};

void hk_rped_free(hk_rped *rp)
{
    if (rp == NULL)
        return;
    BN_free(rp->n);
    BN_free(rp->s);
    BN_free(rp->t);
    BN_MONT_CTX_free(rp->mont);
    OPENSSL_free(rp);
}

static int hk_rped_unit(const BIGNUM *v, const BIGNUM *n, BN_CTX *ctx)
{
    BIGNUM *g, *nm1;
    int ok = 0;

    BN_CTX_start(ctx);
    g = BN_CTX_get(ctx);
    nm1 = BN_CTX_get(ctx);
    if (nm1 == NULL || !BN_sub(nm1, n, BN_value_one()))
        goto done;
    /* 1 < v < N~ - 1 and gcd(v, N~) = 1: excludes +-1 (order <= 2). */
    if (BN_is_negative(v) || BN_cmp(v, BN_value_one()) <= 0 ||
        BN_cmp(v, nm1) >= 0 || !BN_gcd(g, v, n, ctx))
        goto done;
    ok = BN_is_one(g);
done:
    BN_CTX_end(ctx);
    return ok;
}

hk_err hk_rped_new(const BIGNUM *n, const BIGNUM *s, const BIGNUM *t,
                   hk_rped **out)
{
    hk_rped *rp = NULL;
    BN_CTX *ctx;
    hk_err e = HK_ERR_NOMEM;

    if (n == NULL || s == NULL || t == NULL || out == NULL)
        return HK_ERR_ARG;
    *out = NULL;
    if ((ctx = BN_CTX_new_ex(hk_libctx())) == NULL)
        return HK_ERR_NOMEM;
    if (BN_num_bits(n) != HK_RPED_BITS || !BN_is_odd(n) ||
        !hk_rped_unit(s, n, ctx) || !hk_rped_unit(t, n, ctx)) {
        e = HK_ERR_PARAMS;
        goto done;
    }
    rp = OPENSSL_zalloc(sizeof(*rp));
    if (rp == NULL || (rp->n = BN_dup(n)) == NULL ||
        (rp->s = BN_dup(s)) == NULL || (rp->t = BN_dup(t)) == NULL ||
        (rp->mont = BN_MONT_CTX_new()) == NULL)
        goto done;
    e = HK_ERR_CRYPTO;
    if (!BN_MONT_CTX_set(rp->mont, n, ctx))
        goto done;
    *out = rp;
    rp = NULL;
    e = HK_OK;
done:
    hk_rped_free(rp);
    BN_CTX_free(ctx);
    return e;
}

hk_err hk_rped_dup(const hk_rped *in, hk_rped **out)
{
    if (in == NULL)
        return HK_ERR_ARG;
    return hk_rped_new(in->n, in->s, in->t, out);
}

hk_err hk_rped_fingerprint(const hk_rped *rp, unsigned char out[HK_HASH_LEN])
{
    hk_ts t;
    hk_err e;

    if (rp == NULL || out == NULL)
        return HK_ERR_ARG;
    if ((e = hk_ts_init(&t, "ringped-fingerprint", &hk_setup_binding,
                        HK_ROLE_P2)) != HK_OK)
        return e;
    if ((e = hk_ts_add_bn(&t, "N", rp->n)) != HK_OK ||
        (e = hk_ts_add_bn(&t, "s", rp->s)) != HK_OK ||
        (e = hk_ts_add_bn(&t, "t", rp->t)) != HK_OK) {
        hk_ts_free(&t);
        return e;
    }
    return hk_ts_final(&t, out, HK_HASH_LEN);
}

void hk_rped_secret_free(hk_rped_secret *sec)
{
    if (sec == NULL)
        return;
    BN_free(sec->pub.n);
    BN_free(sec->pub.s);
    BN_free(sec->pub.t);
    BN_MONT_CTX_free(sec->pub.mont);
    BN_clear_free(sec->p);
    BN_clear_free(sec->q);
    BN_clear_free(sec->lambda);
    BN_clear_free(sec->phi);
    hk_ped_crt_free(sec->crt);
    OPENSSL_clear_free(sec, sizeof(*sec));
}

/* Fills n, phi, s = t^lambda, mont from p, q, t, lambda. */
static hk_err hk_rped_secret_derive(hk_rped_secret *sec, BN_CTX *ctx)
{
    BIGNUM *pm1, *qm1;
    hk_err e = HK_ERR_CRYPTO;

    BN_CTX_start(ctx);
    pm1 = BN_CTX_get(ctx);
    qm1 = BN_CTX_get(ctx);
    if (qm1 == NULL || (sec->pub.n = BN_new()) == NULL ||
        (sec->pub.s = BN_new()) == NULL ||
        (sec->phi = hk_bn_secret()) == NULL ||
        (sec->pub.mont = BN_MONT_CTX_new()) == NULL) {
        e = HK_ERR_NOMEM;
        goto done;
    }
    if (!BN_mul(sec->pub.n, sec->p, sec->q, ctx) ||
        !BN_sub(pm1, sec->p, BN_value_one()) ||
        !BN_sub(qm1, sec->q, BN_value_one()) ||
        !BN_mul(sec->phi, pm1, qm1, ctx) ||
        !BN_MONT_CTX_set(sec->pub.mont, sec->pub.n, ctx) ||
        !BN_mod_exp_mont_consttime(sec->pub.s, sec->pub.t, sec->lambda,
                                   sec->pub.n, ctx, sec->pub.mont))
        goto done;
    e = HK_OK;
    if (BN_num_bits(sec->pub.n) != HK_RPED_BITS ||
        !hk_rped_unit(sec->pub.s, sec->pub.n, ctx) ||
        !hk_rped_unit(sec->pub.t, sec->pub.n, ctx))
        e = HK_ERR_PARAMS;
    else
        e = hk_ped_crt_new(sec, &sec->crt);
done:
    BN_CTX_end(ctx);
    return e;
}

hk_err hk_rped_secret_from(const BIGNUM *p, const BIGNUM *q, const BIGNUM *t,
                           const BIGNUM *lambda, hk_rped_secret **out)
{
    hk_rped_secret *sec;
    BN_CTX *ctx;
    hk_err e = HK_ERR_NOMEM;

    if (p == NULL || q == NULL || t == NULL || lambda == NULL || out == NULL)
        return HK_ERR_ARG;
    *out = NULL;
    sec = OPENSSL_zalloc(sizeof(*sec));
    ctx = BN_CTX_secure_new_ex(hk_libctx());
    if (sec == NULL || ctx == NULL)
        goto done;
    if ((sec->p = hk_bn_secret()) == NULL || !BN_copy(sec->p, p) ||
        (sec->q = hk_bn_secret()) == NULL || !BN_copy(sec->q, q) ||
        (sec->lambda = hk_bn_secret()) == NULL ||
        !BN_copy(sec->lambda, lambda) || (sec->pub.t = BN_dup(t)) == NULL)
        goto done;
    if ((e = hk_rped_secret_derive(sec, ctx)) != HK_OK)
        goto done;
    *out = sec;
    sec = NULL;
done:
    hk_rped_secret_free(sec);
    BN_CTX_free(ctx);
    return e;
}

hk_err hk_rped_generate(hk_rped_secret **out)
{
    BIGNUM *p = NULL, *q = NULL, *t = NULL, *lambda = NULL, *phi = NULL;
    BN_CTX *ctx;
    hk_err e = HK_ERR_NOMEM;

    if (out == NULL)
        return HK_ERR_ARG;
    ctx = BN_CTX_secure_new_ex(hk_libctx());
    p = hk_bn_secret();
    q = hk_bn_secret();
    t = BN_new();
    lambda = hk_bn_secret();
    phi = hk_bn_secret();
    if (ctx == NULL || p == NULL || q == NULL || t == NULL || lambda == NULL ||
        phi == NULL)
        goto done;
    e = HK_ERR_CRYPTO;
    do {
        if (!BN_generate_prime_ex2(p, HK_RPED_BITS / 2, 1, NULL, NULL, NULL,
                                   ctx) ||
            !BN_generate_prime_ex2(q, HK_RPED_BITS / 2, 1, NULL, NULL, NULL,
                                   ctx))
            goto done;
    } while (BN_cmp(p, q) == 0);
    /* t = tau^2 mod N~ for a random tau (phi holds N~ for this step);
     * lambda uniform in [0, phi(N~)). */
    if (!BN_mul(phi, p, q, ctx) || !hk_bn_priv_rand_range(t, phi) ||
        !BN_mod_sqr(t, t, phi, ctx))
        goto done;
    if (!BN_sub(phi, p, BN_value_one()) || !BN_sub(lambda, q, BN_value_one()) ||
        !BN_mul(phi, phi, lambda, ctx) || !hk_bn_priv_rand_range(lambda, phi))
        goto done;
    e = hk_rped_secret_from(p, q, t, lambda, out);
done:
    BN_clear_free(p);
    BN_clear_free(q);
    BN_free(t);
    BN_clear_free(lambda);
    BN_clear_free(phi);
    BN_CTX_free(ctx);
    return e;
}

void hk_prm_proof_free(hk_prm_proof *pf)
{
    if (pf == NULL)
        return;
    hk_bn_free_array(pf->a, HK_PRM_ROUNDS);
    hk_bn_free_array(pf->z, HK_PRM_ROUNDS);
}

/* e = H(N~, s, t, A_1..A_m): HK_PRM_ROUNDS challenge bits. */
static hk_err hk_prm_challenge(const hk_rped *rp, BIGNUM *const *a,
                               unsigned char e[HK_PRM_ROUNDS / 8])
{
    hk_ts t;
    hk_err r;
    size_t i;

    if ((r = hk_ts_init(&t, "ringped-prm", &hk_setup_binding, HK_ROLE_P2)) !=
        HK_OK)
        return r;
    if ((r = hk_ts_add_bn(&t, "N", rp->n)) != HK_OK ||
        (r = hk_ts_add_bn(&t, "s", rp->s)) != HK_OK ||
        (r = hk_ts_add_bn(&t, "t", rp->t)) != HK_OK)
        goto fail;
    for (i = 0; i < HK_PRM_ROUNDS; i++)
        if ((r = hk_ts_add_bn(&t, "A", a[i])) != HK_OK)
            goto fail;
    return hk_ts_final(&t, e, HK_PRM_ROUNDS / 8);
fail:
    hk_ts_free(&t);
    return r;
}

static int hk_bit(const unsigned char *e, size_t i)
{
    return (e[i / 8] >> (i % 8)) & 1;
}

hk_err hk_prm_prove(const hk_rped_secret *sec, hk_prm_proof *out)
{
    unsigned char ch[HK_PRM_ROUNDS / 8];
    BN_CTX *ctx;
    hk_err e;
    size_t i;

    if (sec == NULL || out == NULL)
        return HK_ERR_ARG;
    memset(out, 0, sizeof(*out));
    if ((ctx = BN_CTX_secure_new_ex(hk_libctx())) == NULL)
        return HK_ERR_NOMEM;
    if ((e = hk_bn_new_array(out->a, HK_PRM_ROUNDS)) != HK_OK ||
        (e = hk_bn_new_array(out->z, HK_PRM_ROUNDS)) != HK_OK)
        goto done;
    e = HK_ERR_CRYPTO;
    for (i = 0; i < HK_PRM_ROUNDS; i++) {
        BN_set_flags(out->z[i], BN_FLG_CONSTTIME);
        /* z[i] holds the secret a_i until the challenge is known. */
        if (!hk_bn_priv_rand_range(out->z[i], sec->phi) ||
            !BN_mod_exp_mont_consttime(out->a[i], sec->pub.t, out->z[i],
                                       sec->pub.n, ctx, sec->pub.mont))
            goto done;
    }
    if ((e = hk_prm_challenge(&sec->pub, out->a, ch)) != HK_OK)
        goto done;
    e = HK_ERR_CRYPTO;
    for (i = 0; i < HK_PRM_ROUNDS; i++)
        if (hk_bit(ch, i) &&
            !BN_mod_add(out->z[i], out->z[i], sec->lambda, sec->phi, ctx))
            goto done;
    e = HK_OK;
done:
    if (e != HK_OK)
        hk_prm_proof_free(out);
    BN_CTX_free(ctx);
    return e;
}

hk_err hk_prm_verify(const hk_rped *rp, const hk_prm_proof *pf)
{
    unsigned char ch[HK_PRM_ROUNDS / 8];
    BIGNUM *lhs, *rhs;
    BN_CTX *ctx;
    hk_err e = HK_ERR_PARAMS;
    size_t i;

    if (rp == NULL || pf == NULL)
        return HK_ERR_ARG;
    if ((ctx = BN_CTX_new_ex(hk_libctx())) == NULL)
        return HK_ERR_NOMEM;
    BN_CTX_start(ctx);
    lhs = BN_CTX_get(ctx);
    rhs = BN_CTX_get(ctx);
    if (rhs == NULL) {
        e = HK_ERR_NOMEM;
        goto done;
    }
    for (i = 0; i < HK_PRM_ROUNDS; i++)
        if (!hk_bn_below(pf->a[i], rp->n) || BN_is_zero(pf->a[i]) ||
            !hk_bn_below(pf->z[i], rp->n))
            goto done;
    if ((e = hk_prm_challenge(rp, pf->a, ch)) != HK_OK)
        goto done;
    e = HK_ERR_PARAMS;
    /* t^z_i == A_i * s^e_i mod N~ */
    for (i = 0; i < HK_PRM_ROUNDS; i++) {
        if (!BN_mod_exp_mont(lhs, rp->t, pf->z[i], rp->n, ctx, rp->mont) ||
            (hk_bit(ch, i) ? !BN_mod_mul(rhs, pf->a[i], rp->s, rp->n, ctx)
                           : !BN_copy(rhs, pf->a[i]))) {
            e = HK_ERR_CRYPTO;
            goto done;
        }
        if (BN_cmp(lhs, rhs) != 0)
            goto done;
    }
    e = HK_OK;
done:
    BN_CTX_end(ctx);
    BN_CTX_free(ctx);
    return e;
}
