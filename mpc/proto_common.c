/* Shared pieces of the protocol state machines. */
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "mpc/bn_util.h"
#include "mpc/proto_impl.h"

#define HK_RPED_WIDTH (HK_RPED_BITS / 8)
#define HK_Z1_WIDTH hk_width(HK_LOG_ALPHA_BITS + 1)
#define HK_Z3_WIDTH hk_width(HK_LOG_ALPHA_BITS + HK_RPED_BITS + 1)

void hk_binding_set(hk_binding *b, hk_curve_id curve, const unsigned char *sid,
                    const unsigned char *kid)
{
    memset(b, 0, sizeof(*b));
    b->curve = curve;
    memcpy(b->sid, sid, HK_ID_LEN);
    memcpy(b->kid, kid, HK_ID_LEN);
}

hk_err hk_msg_out(hk_msg *m, unsigned char **out, size_t *len)
{
    hk_err e = hk_msg_encode(m, out, len);

    hk_msg_free(m);
    return e;
}

hk_err hk_commit_points(const hk_binding *b, hk_role role, const char *label,
                        const hk_point *pts, size_t npts,
                        const unsigned char *extra, size_t extra_len,
                        const unsigned char *nonce,
                        unsigned char out[HK_HASH_LEN])
{
    hk_ts t;
    hk_err e;
    size_t i;

    if ((e = hk_ts_init(&t, label, b, role)) != HK_OK)
        return e;
    for (i = 0; i < npts; i++)
        if ((e = hk_ts_add_point(&t, "P", &pts[i])) != HK_OK)
            goto fail;
    if ((e = hk_ts_add(&t, "extra", extra, extra_len)) != HK_OK)
        goto fail;
    return hk_commit_final(&t, nonce, out);
fail:
    hk_ts_free(&t);
    return e;
}

hk_err hk_put_schnorr(hk_msg *m, const hk_schnorr *pf)
{
    hk_err e;

    if ((e = hk_msg_put_point(m, "pa", &pf->a)) != HK_OK)
        return e;
    return hk_msg_put_scalar(m, "pz", &pf->z);
}

hk_err hk_get_schnorr(hk_msg *m, hk_curve *c, hk_schnorr *pf)
{
    hk_err e;

    if ((e = hk_msg_get_point(m, c, "pa", &pf->a)) != HK_OK)
        return e;
    return hk_msg_get_scalar(m, c, "pz", &pf->z);
}

hk_err hk_put_possession(hk_msg *m, hk_curve *c, const hk_binding *b,
                         const char *label, const hk_scalar *x1,
                         const hk_point *Q1)
{
    hk_schnorr pf;
    hk_err e;

    if ((e = hk_schnorr_prove(c, b, HK_ROLE_P1, label, x1, Q1, &pf)) != HK_OK)
        return e;
    return hk_put_schnorr(m, &pf);
}

hk_err hk_check_possession(hk_msg *in, hk_curve *c, const hk_binding *b,
                           const char *label, const hk_point *Q1)
{
    hk_schnorr pf;
    hk_err e;

    if ((e = hk_get_schnorr(in, c, &pf)) != HK_OK)
        return e;
    return hk_schnorr_verify(c, b, HK_ROLE_P1, label, Q1, &pf);
}

hk_err hk_stored_msg(const char *type, hk_curve *c, const hk_binding *b,
                     const char *label, const hk_scalar *x1, const hk_point *Q1,
                     const unsigned char fp[HK_HASH_LEN], unsigned char **out,
                     size_t *outlen)
{
    hk_msg *m = NULL;
    hk_err e;

    if ((e = hk_msg_new(type, b->sid, b->kid, &m)) != HK_OK)
        return e;
    if ((e = hk_msg_put_bytes(m, "conf", fp, HK_HASH_LEN)) != HK_OK ||
        (e = hk_put_possession(m, c, b, label, x1, Q1)) != HK_OK) {
        hk_msg_free(m);
        return e;
    }
    return hk_msg_out(m, out, outlen);
}

hk_err hk_stored_check(hk_msg *in, hk_curve *c, const hk_binding *b,
                       const char *label, const hk_point *Q1,
                       const unsigned char fp[HK_HASH_LEN])
{
    unsigned char got[HK_HASH_LEN];
    hk_schnorr pf;
    hk_err e;

    if ((e = hk_msg_get_bytes(in, "conf", got, HK_HASH_LEN)) != HK_OK ||
        (e = hk_get_schnorr(in, c, &pf)) != HK_OK ||
        (e = hk_msg_finish(in)) != HK_OK)
        return e;
    if (CRYPTO_memcmp(got, fp, HK_HASH_LEN) != 0)
        return HK_ERR_KEY_MISMATCH;
    return hk_schnorr_verify(c, b, HK_ROLE_P1, label, Q1, &pf);
}

void hk_ppkg_free(hk_ppkg *p)
{
    if (p == NULL)
        return;
    hk_paillier_sk_free(p->sk);
    BN_free(p->ckey);
    hk_nthroot_proof_free(&p->nth);
    hk_logstar_proof_free(&p->ls);
    memset(p, 0, sizeof(*p));
}

hk_err hk_ppkg_make(hk_curve *c, const hk_binding *b, int pbits,
                    const hk_rped *rp, const hk_scalar *x1, const hk_point *X1,
                    hk_paillier_sk **pre, hk_ppkg *out)
{
    BIGNUM *x = NULL, *rho = NULL;
    hk_err e;

    memset(out, 0, sizeof(*out));
    if (pre != NULL && *pre != NULL) {
        /* a pooled key: used once, here (the caller no longer holds it) */
        out->sk = *pre;
        *pre = NULL;
        e = hk_paillier_bits(hk_paillier_sk_pk(out->sk)) == pbits ? HK_OK
                                                                  : HK_ERR_ARG;
    } else {
        e = hk_paillier_keygen(pbits, &out->sk);
    }
    if (e != HK_OK)
        goto done;
    e = HK_ERR_NOMEM;
    if ((out->ckey = BN_new()) == NULL || (rho = hk_bn_secret()) == NULL)
        goto done;
    /* Lindell 2017 protocol 3.2 step 3: ckey = Enc(x1; rho), with the
     * proofs that N is valid and that ckey encrypts log_G(Q1) in range. */
    if ((e = hk_scalar_to_bn(x1, &x)) != HK_OK ||
        (e = hk_paillier_rand_unit(hk_paillier_sk_pk(out->sk), rho)) != HK_OK ||
        (e = hk_paillier_enc_sk(out->sk, x, rho, out->ckey)) != HK_OK ||
        (e = hk_nthroot_prove(out->sk, b, HK_ROLE_P1, &out->nth)) != HK_OK ||
        (e = hk_logstar_prove(c, b, HK_ROLE_P1, out->sk, rp, x1, rho, out->ckey,
                              X1, &out->ls)) != HK_OK)
        goto done;
done:
    BN_clear_free(x);
    BN_clear_free(rho);
    if (e != HK_OK)
        hk_ppkg_free(out);
    return e;
}

static hk_err hk_put_logstar(hk_msg *m, const hk_logstar_proof *ls, size_t nb)
{
    BIGNUM *A[HK_LOG_REPS], *D[HK_LOG_REPS], *z1[HK_LOG_REPS], *z2[HK_LOG_REPS],
        *z3[HK_LOG_REPS];
    hk_point Y[HK_LOG_REPS];
    hk_err e;
    size_t i;

    for (i = 0; i < HK_LOG_REPS; i++) {
        A[i] = ls->rep[i].A;
        D[i] = ls->rep[i].D;
        z1[i] = ls->rep[i].z1;
        z2[i] = ls->rep[i].z2;
        z3[i] = ls->rep[i].z3;
        Y[i] = ls->rep[i].Y;
    }
    if ((e = hk_msg_put_bn(m, "lsS", ls->S, HK_RPED_WIDTH)) != HK_OK ||
        (e = hk_msg_put_bn_array(m, "lsA", A, HK_LOG_REPS, 2 * nb)) != HK_OK ||
        (e = hk_msg_put_bn_array(m, "lsD", D, HK_LOG_REPS, HK_RPED_WIDTH)) !=
            HK_OK ||
        (e = hk_msg_put_points(m, "lsY", Y, HK_LOG_REPS)) != HK_OK ||
        (e = hk_msg_put_bn_array(m, "lsz1", z1, HK_LOG_REPS, HK_Z1_WIDTH)) !=
            HK_OK ||
        (e = hk_msg_put_bn_array(m, "lsz2", z2, HK_LOG_REPS, nb)) != HK_OK)
        return e;
    return hk_msg_put_bn_array(m, "lsz3", z3, HK_LOG_REPS, HK_Z3_WIDTH);
}

hk_err hk_ppkg_put(hk_msg *m, const hk_ppkg *p)
{
    const hk_paillier_pk *pk = hk_paillier_sk_pk(p->sk);
    size_t nb = hk_width(hk_paillier_bits(pk));
    hk_err e;

    if ((e = hk_msg_put_bn(m, "N", hk_paillier_n(pk), nb)) != HK_OK ||
        (e = hk_msg_put_bn(m, "ckey", p->ckey, 2 * nb)) != HK_OK ||
        (e = hk_msg_put_bn_array(m, "nth", p->nth.sigma, HK_NTH_ROOTS, nb)) !=
            HK_OK)
        return e;
    return hk_put_logstar(m, &p->ls, nb);
}

static hk_err hk_get_logstar(hk_msg *m, hk_curve *c, hk_logstar_proof *ls,
                             size_t nb)
{
    BIGNUM *A[HK_LOG_REPS] = {0}, *D[HK_LOG_REPS] = {0}, *z1[HK_LOG_REPS] = {0},
           *z2[HK_LOG_REPS] = {0}, *z3[HK_LOG_REPS] = {0};
    hk_point Y[HK_LOG_REPS];
    hk_err e;
    size_t i;

    memset(ls, 0, sizeof(*ls));
    e = hk_msg_get_bn(m, "lsS", HK_RPED_WIDTH, &ls->S);
    if (e == HK_OK)
        e = hk_msg_get_bn_array(m, "lsA", A, HK_LOG_REPS, 2 * nb);
    if (e == HK_OK)
        e = hk_msg_get_bn_array(m, "lsD", D, HK_LOG_REPS, HK_RPED_WIDTH);
    if (e == HK_OK)
        e = hk_msg_get_points(m, c, "lsY", Y, HK_LOG_REPS);
    if (e == HK_OK)
        e = hk_msg_get_bn_array(m, "lsz1", z1, HK_LOG_REPS, HK_Z1_WIDTH);
    if (e == HK_OK)
        e = hk_msg_get_bn_array(m, "lsz2", z2, HK_LOG_REPS, nb);
    if (e == HK_OK)
        e = hk_msg_get_bn_array(m, "lsz3", z3, HK_LOG_REPS, HK_Z3_WIDTH);
    /* Hand every allocated value to the proof so that one free covers
     * success and failure alike. */
    for (i = 0; i < HK_LOG_REPS; i++) {
        ls->rep[i].A = A[i];
        ls->rep[i].D = D[i];
        ls->rep[i].z1 = z1[i];
        ls->rep[i].z2 = z2[i];
        ls->rep[i].z3 = z3[i];
        ls->rep[i].Y = Y[i];
    }
    return e;
}

hk_err hk_ppkg_take(hk_msg *m, hk_curve *c, const hk_binding *b, int pbits,
                    const hk_rped_secret *sec, const hk_point *X1,
                    hk_paillier_pk **pk, BIGNUM **ckey)
{
    size_t nb = hk_width(pbits);
    hk_nthroot_proof nth;
    hk_logstar_proof ls;
    hk_paillier_pk *k = NULL;
    BIGNUM *n = NULL, *ct = NULL;
    hk_err e;

    memset(&nth, 0, sizeof(nth));
    memset(&ls, 0, sizeof(ls));
    if ((e = hk_msg_get_bn(m, "N", nb, &n)) != HK_OK ||
        (e = hk_msg_get_bn(m, "ckey", 2 * nb, &ct)) != HK_OK ||
        (e = hk_msg_get_bn_array(m, "nth", nth.sigma, HK_NTH_ROOTS, nb)) !=
            HK_OK ||
        (e = hk_get_logstar(m, c, &ls, nb)) != HK_OK ||
        (e = hk_msg_finish(m)) != HK_OK)
        goto done;
    /* DESIGN.md section 2: exact size, no small factor, validity proof,
     * then the ciphertext and the range proof. */
    if ((e = hk_paillier_pk_new(n, pbits, &k)) != HK_OK ||
        (e = hk_nthroot_verify(k, b, HK_ROLE_P1, &nth)) != HK_OK ||
        (e = hk_paillier_ct_check(k, ct)) != HK_OK ||
        (e = hk_logstar_verify(c, b, HK_ROLE_P1, k, &sec->pub, sec, ct, X1,
                               &ls)) != HK_OK)
        goto done;
    *pk = k;
    *ckey = ct;
    k = NULL;
    ct = NULL;
done:
    hk_nthroot_proof_free(&nth);
    hk_logstar_proof_free(&ls);
    hk_paillier_pk_free(k);
    BN_free(n);
    BN_free(ct);
    return e;
}

hk_err hk_put_share_ref(hk_msg *m, const hk_share *s,
                        const unsigned char fp[HK_HASH_LEN])
{
    hk_err e;

    if ((e = hk_msg_put_u32(m, "epoch", s->epoch)) != HK_OK)
        return e;
    return hk_msg_put_bytes(m, "fp", fp, HK_HASH_LEN);
}

hk_err hk_check_share_ref(hk_msg *in, const hk_share *s,
                          const unsigned char fp[HK_HASH_LEN])
{
    unsigned char got[HK_HASH_LEN];
    unsigned long epoch;
    hk_err e;

    if ((e = hk_msg_get_u32(in, "epoch", &epoch)) != HK_OK ||
        (e = hk_msg_get_bytes(in, "fp", got, HK_HASH_LEN)) != HK_OK)
        return e;
    if (epoch != s->epoch || CRYPTO_memcmp(got, fp, HK_HASH_LEN) != 0)
        return HK_ERR_EPOCH;
    return HK_OK;
}

hk_err hk_commit_setup(const hk_binding *b, const char *label,
                       const hk_point *pts, size_t npts,
                       const unsigned char v[HK_SCALAR_LEN], int pbits,
                       const unsigned char setup_fp[HK_HASH_LEN],
                       const unsigned char *nonce,
                       unsigned char out[HK_HASH_LEN])
{
    unsigned char extra[HK_SCALAR_LEN + 2 + HK_HASH_LEN];

    memcpy(extra, v, HK_SCALAR_LEN);
    extra[HK_SCALAR_LEN] = (unsigned char)(pbits >> 8);
    extra[HK_SCALAR_LEN + 1] = (unsigned char)pbits;
    memcpy(extra + HK_SCALAR_LEN + 2, setup_fp, HK_HASH_LEN);
    return hk_commit_points(b, HK_ROLE_P1, label, pts, npts, extra,
                            sizeof(extra), nonce, out);
}
