/* Schnorr proof of knowledge of a discrete logarithm, Fiat-Shamir. */
#include <openssl/crypto.h>

#include "mpc/zk_impl.h"

static hk_err hk_schnorr_challenge(hk_curve *c, const hk_binding *b,
                                   hk_role role, const char *label,
                                   const hk_point *X, const hk_point *A,
                                   hk_scalar *e)
{
    hk_ts t;
    hk_err r;

    if ((r = hk_ts_init(&t, label, b, role)) != HK_OK)
        return r;
    if ((r = hk_ts_add(&t, "zk", "schnorr", 7)) != HK_OK ||
        (r = hk_ts_add_point(&t, "X", X)) != HK_OK ||
        (r = hk_ts_add_point(&t, "A", A)) != HK_OK) {
        hk_ts_free(&t);
        return r;
    }
    return hk_ts_final_scalar(&t, c, e);
}

hk_err hk_schnorr_prove(hk_curve *c, const hk_binding *b, hk_role role,
                        const char *label, const hk_scalar *x,
                        const hk_point *X, hk_schnorr *out)
{
    hk_scalar a, e, ex;
    hk_err r;

    if (c == NULL || b == NULL || label == NULL || x == NULL || X == NULL ||
        out == NULL)
        return HK_ERR_ARG;
    if ((r = hk_scalar_random(c, &a)) != HK_OK ||
        (r = hk_point_mul_gen(c, &a, &out->a)) != HK_OK ||
        (r = hk_schnorr_challenge(c, b, role, label, X, &out->a, &e)) !=
            HK_OK ||
        (r = hk_scalar_mul(c, &e, x, &ex)) != HK_OK ||
        (r = hk_scalar_add(c, &a, &ex, &out->z)) != HK_OK)
        goto done;
done:
    OPENSSL_cleanse(&a, sizeof(a));
    OPENSSL_cleanse(&ex, sizeof(ex));
    return r;
}

hk_err hk_zk_lin_check(hk_curve *c, const hk_scalar *z, const hk_point *Y,
                       const hk_scalar *e, const hk_point *X)
{
    hk_point lhs, ex, rhs;

    if (hk_point_mul_gen(c, z, &lhs) != HK_OK)
        return HK_ERR_PROOF;
    if (hk_scalar_is_zero(e)) {
        rhs = *Y;
    } else if (hk_point_mul(c, X, e, &ex) != HK_OK ||
               hk_point_add(c, Y, &ex, &rhs) != HK_OK) {
        return HK_ERR_PROOF;
    }
    return hk_point_eq(&lhs, &rhs) ? HK_OK : HK_ERR_PROOF;
}

hk_err hk_schnorr_verify(hk_curve *c, const hk_binding *b, hk_role role,
                         const char *label, const hk_point *X,
                         const hk_schnorr *pf)
{
    hk_scalar e;
    hk_err r;

    if (c == NULL || b == NULL || label == NULL || X == NULL || pf == NULL)
        return HK_ERR_ARG;
    if ((r = hk_schnorr_challenge(c, b, role, label, X, &pf->a, &e)) != HK_OK)
        return r;
    return hk_zk_lin_check(c, &pf->z, &pf->a, &e, X);
}
