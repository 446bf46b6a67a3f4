/* Paillier modulus proof: N-th roots of hash-derived challenges (see zk.h
 * for the soundness argument). */
#include <openssl/crypto.h>

#include "common/libctx.h"
#include "mpc/bn_util.h"
#include "mpc/zk.h"

void hk_nthroot_proof_free(hk_nthroot_proof *pf)
{
    if (pf != NULL)
        hk_bn_free_array(pf->sigma, HK_NTH_ROOTS);
}

/* rho[i] = expand(H(N), i) mod N, for i < HK_NTH_ROOTS; each must be a unit
 * (a non-unit would reveal a factor: negligible for an honest N). */
static hk_err hk_nthroot_challenges(const hk_paillier_pk *pk,
                                    const hk_binding *b, hk_role role,
                                    BIGNUM **rho)
{
    const BIGNUM *n = hk_paillier_n(pk);
    size_t each = (size_t)BN_num_bytes(n) + 16, i;
    unsigned char *buf;
    BN_CTX *ctx = NULL;
    hk_ts t;
    hk_err e;

    buf = OPENSSL_malloc(each * HK_NTH_ROOTS);
    if (buf == NULL)
        return HK_ERR_NOMEM;
    if ((e = hk_ts_init(&t, "paillier-modulus", b, role)) != HK_OK)
        goto done;
    if ((e = hk_ts_add_bn(&t, "N", n)) != HK_OK) {
        hk_ts_free(&t);
        goto done;
    }
    if ((e = hk_ts_final(&t, buf, each * HK_NTH_ROOTS)) != HK_OK)
        goto done;
    e = HK_ERR_NOMEM;
    if ((ctx = BN_CTX_new_ex(hk_libctx())) == NULL)
        goto done;
    for (i = 0; i < HK_NTH_ROOTS; i++) {
        e = HK_ERR_CRYPTO;
        if (BN_bin2bn(buf + i * each, (int)each, rho[i]) == NULL ||
            !BN_nnmod(rho[i], rho[i], n, ctx))
            goto done;
        if ((e = hk_paillier_unit_check(pk, rho[i])) != HK_OK)
            goto done;
    }
    e = HK_OK;
done:
    BN_CTX_free(ctx);
    OPENSSL_free(buf);
    return e;
}

hk_err hk_nthroot_prove(const hk_paillier_sk *sk, const hk_binding *b,
                        hk_role role, hk_nthroot_proof *out)
{
    BIGNUM *rho[HK_NTH_ROOTS] = {0};
    hk_err e;
    size_t i;

    if (sk == NULL || b == NULL || out == NULL)
        return HK_ERR_ARG;
    if ((e = hk_bn_new_array(rho, HK_NTH_ROOTS)) != HK_OK ||
        (e = hk_bn_new_array(out->sigma, HK_NTH_ROOTS)) != HK_OK ||
        (e = hk_nthroot_challenges(hk_paillier_sk_pk(sk), b, role, rho)) !=
            HK_OK)
        goto done;
    for (i = 0; i < HK_NTH_ROOTS; i++)
        if ((e = hk_paillier_nth_root(sk, rho[i], out->sigma[i])) != HK_OK)
            goto done;
done:
    hk_bn_free_array(rho, HK_NTH_ROOTS);
    if (e != HK_OK)
        hk_nthroot_proof_free(out);
    return e;
}

hk_err hk_nthroot_verify(const hk_paillier_pk *pk, const hk_binding *b,
                         hk_role role, const hk_nthroot_proof *pf)
{
    BIGNUM *rho[HK_NTH_ROOTS] = {0}, *v = NULL;
    const BIGNUM *n;
    BN_CTX *ctx = NULL;
    hk_err e;
    size_t i;

    if (pk == NULL || b == NULL || pf == NULL)
        return HK_ERR_ARG;
    n = hk_paillier_n(pk);
    if ((e = hk_bn_new_array(rho, HK_NTH_ROOTS)) != HK_OK)
        goto done;
    e = HK_ERR_NOMEM;
    if ((ctx = BN_CTX_new_ex(hk_libctx())) == NULL || (v = BN_new()) == NULL)
        goto done;
    if ((e = hk_nthroot_challenges(pk, b, role, rho)) != HK_OK)
        goto done;
    for (i = 0; i < HK_NTH_ROOTS; i++) {
        e = HK_ERR_PROOF;
        if (!hk_bn_below(pf->sigma[i], n) || BN_is_zero(pf->sigma[i]))
            goto done;
        if (!BN_mod_exp(v, pf->sigma[i], n, n, ctx)) {
            e = HK_ERR_CRYPTO;
            goto done;
        }
        if (BN_cmp(v, rho[i]) != 0)
            goto done;
    }
    e = HK_OK;
done:
    hk_bn_free_array(rho, HK_NTH_ROOTS);
    BN_free(v);
    BN_CTX_free(ctx);
    return e;
}
