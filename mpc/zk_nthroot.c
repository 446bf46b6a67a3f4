/* Paillier modulus proof: N-th roots of hash-derived challenges (see zk.h
 * for the soundness argument). The roots, and the verifier's checks of
 * them, are independent of one another: both run on two threads
 * (mpc/par.h), each root computed or checked exactly as before. */
#include <openssl/crypto.h>

#include "common/libctx.h"
#include "mpc/bn_util.h"
#include "mpc/par.h"
#include "mpc/zk.h"

void hk_nthroot_proof_free(hk_nthroot_proof *pf)
{
    if (pf != NULL)
        hk_bn_free_array(pf->sigma, HK_NTH_ROOTS);
}

/* rho[i] = expand(H(N), i) mod N, for i < HK_NTH_ROOTS. Each must be a
 * unit (a non-unit would reveal a factor: negligible for an honest N):
 * checked by the items below, on two threads, before each is used. */
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
    }
    e = HK_OK;
done:
    BN_CTX_free(ctx);
    OPENSSL_free(buf);
    return e;
}

/* The prover's item i: rho_i a unit, sigma_i = rho_i^(N^-1 mod phi(N))
 * mod N. */
typedef struct {
    const hk_paillier_sk *sk;
    BIGNUM *const *rho;
    BIGNUM **sigma;
} hk_nth_prove_job;

static hk_err hk_nth_prove_one(void *arg, size_t i, BN_CTX *ctx)
{
    const hk_nth_prove_job *j = arg;

    hk_err e;

    (void)ctx; /* hk_paillier_nth_root has its own (secure) context */
    if ((e = hk_paillier_unit_check(hk_paillier_sk_pk(j->sk), j->rho[i])) !=
        HK_OK)
        return e;
    return hk_paillier_nth_root(j->sk, j->rho[i], j->sigma[i]);
}

hk_err hk_nthroot_prove(const hk_paillier_sk *sk, const hk_binding *b,
                        hk_role role, hk_nthroot_proof *out)
{
    BIGNUM *rho[HK_NTH_ROOTS] = {0};
    hk_nth_prove_job j;
    hk_err e;

    if (sk == NULL || b == NULL || out == NULL)
        return HK_ERR_ARG;
    if ((e = hk_bn_new_array(rho, HK_NTH_ROOTS)) != HK_OK ||
        (e = hk_bn_new_array(out->sigma, HK_NTH_ROOTS)) != HK_OK ||
        (e = hk_nthroot_challenges(hk_paillier_sk_pk(sk), b, role, rho)) !=
            HK_OK)
        goto done;
    j.sk = sk;
    j.rho = rho;
    j.sigma = out->sigma;
    e = hk_par_run(HK_NTH_ROOTS, hk_nth_prove_one, &j, 1);
done:
    hk_bn_free_array(rho, HK_NTH_ROOTS);
    if (e != HK_OK)
        hk_nthroot_proof_free(out);
    return e;
}

/* The verifier's item i: rho_i a unit, 0 < sigma_i < N and sigma_i^N =
 * rho_i mod N. */
typedef struct {
    const hk_paillier_pk *pk;
    BIGNUM *const *rho;
    const hk_nthroot_proof *pf;
} hk_nth_verify_job;

static hk_err hk_nth_verify_one(void *arg, size_t i, BN_CTX *ctx)
{
    const hk_nth_verify_job *j = arg;
    const BIGNUM *n = hk_paillier_n(j->pk), *sigma = j->pf->sigma[i];
    BIGNUM *v;
    hk_err e;

    if ((e = hk_paillier_unit_check(j->pk, j->rho[i])) != HK_OK)
        return e;
    if (!hk_bn_below(sigma, n) || BN_is_zero(sigma))
        return HK_ERR_PROOF;
    e = HK_ERR_PROOF;
    BN_CTX_start(ctx);
    if ((v = BN_CTX_get(ctx)) == NULL || !BN_mod_exp(v, sigma, n, n, ctx))
        e = HK_ERR_CRYPTO;
    else if (BN_cmp(v, j->rho[i]) == 0)
        e = HK_OK;
    BN_CTX_end(ctx);
    return e;
}

hk_err hk_nthroot_verify(const hk_paillier_pk *pk, const hk_binding *b,
                         hk_role role, const hk_nthroot_proof *pf)
{
    BIGNUM *rho[HK_NTH_ROOTS] = {0};
    hk_nth_verify_job j;
    hk_err e;

    if (pk == NULL || b == NULL || pf == NULL)
        return HK_ERR_ARG;
    if ((e = hk_bn_new_array(rho, HK_NTH_ROOTS)) != HK_OK ||
        (e = hk_nthroot_challenges(pk, b, role, rho)) != HK_OK)
        goto done;
    j.pk = pk;
    j.rho = rho;
    j.pf = pf;
    /* every root must verify: any failing item fails the proof */
    e = hk_par_run(HK_NTH_ROOTS, hk_nth_verify_one, &j, 0);
done:
    hk_bn_free_array(rho, HK_NTH_ROOTS);
    return e;
}
