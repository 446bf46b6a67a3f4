/* BIGNUM helpers. */
#include "common/libctx.h"
#include "mpc/bn_util.h"

BIGNUM *hk_bn_secret(void)
{
    BIGNUM *b = BN_secure_new();

    if (b != NULL)
        BN_set_flags(b, BN_FLG_CONSTTIME);
    return b;
}

hk_err hk_bn_rand_bits(BIGNUM *r, int bits)
{
    if (r == NULL || bits <= 0)
        return HK_ERR_ARG;
    if (!hk_bn_priv_rand(r, bits, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY))
        return HK_ERR_RAND;
    return HK_OK;
}

hk_err hk_bn_rand_times(BIGNUM *r, const BIGNUM *n, int extra)
{
    BIGNUM *lim;
    hk_err e = HK_ERR_RAND;

    if (r == NULL || n == NULL || extra < 0)
        return HK_ERR_ARG;
    lim = BN_new();
    if (lim == NULL)
        return HK_ERR_NOMEM;
    if (BN_lshift(lim, n, extra) && hk_bn_priv_rand_range(r, lim))
        e = HK_OK;
    BN_free(lim);
    return e;
}

int hk_bn_below(const BIGNUM *v, const BIGNUM *m)
{
    return v != NULL && !BN_is_negative(v) && BN_cmp(v, m) < 0;
}

int hk_bn_below_bits(const BIGNUM *v, int bits)
{
    return v != NULL && !BN_is_negative(v) && BN_num_bits(v) <= bits;
}

hk_err hk_bn_exp2(BIGNUM *out, const BIGNUM *a, const BIGNUM *x,
                  const BIGNUM *b, const BIGNUM *y, const BIGNUM *m,
                  BN_MONT_CTX *mont, int consttime, BN_CTX *ctx)
{
    BIGNUM *u, *v;
    int ok;

    BN_CTX_start(ctx);
    u = BN_CTX_get(ctx);
    v = BN_CTX_get(ctx);
    if (v == NULL) {
        BN_CTX_end(ctx);
        return HK_ERR_NOMEM;
    }
    if (consttime)
        ok = BN_mod_exp_mont_consttime(u, a, x, m, ctx, mont) &&
             BN_mod_exp_mont_consttime(v, b, y, m, ctx, mont);
    else
        ok = BN_mod_exp2_mont(out, a, x, b, y, m, ctx, mont);
    if (ok && consttime)
        ok = BN_mod_mul(out, u, v, m, ctx);
    BN_CTX_end(ctx);
    return ok ? HK_OK : HK_ERR_CRYPTO;
}

void hk_bn_free_array(BIGNUM **a, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        BN_clear_free(a[i]);
        a[i] = NULL;
    }
}

hk_err hk_bn_new_array(BIGNUM **a, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        if ((a[i] = BN_new()) == NULL)
            return HK_ERR_NOMEM;
    return HK_OK;
}
