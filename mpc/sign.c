/* Two-party signing state machines. */
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "common/libctx.h"
#include "mpc/bn_util.h"
#include "mpc/presign.h"
#include "mpc/proto_impl.h"
#include "mpc/sign.h"

enum { SG_INIT, SG_WAIT2, SG_WAIT3, SG_WAIT4, SG_WAIT5, SG_DONE, SG_DEAD };

struct hk_sign {
    hk_role role;
    int state;
    hk_curve *c;
    hk_binding b;
    const hk_share *share;
    unsigned char fp[HK_HASH_LEN];
    unsigned char dig[HK_DIGEST_MAX];
    size_t dlen;
    hk_scalar k; /* own nonce share: SECRET */
    hk_point R;  /* own k*G */
    hk_schnorr pi;
    unsigned char nonce[HK_NONCE_LEN];
    unsigned char com[HK_HASH_LEN];
    hk_scalar r, s; /* the signature once known */
    BIGNUM *rn;     /* P2: precomputed r^N mod N^2 */
    int presigned;  /* sign.1p: the nonce exchange ran ahead (presign.h) */
    hk_presig ps;   /* its record (k wiped once used): SECRET */
};

static const char *const hk_sg_lbl_k1 = "sign/schnorr-k1";
static const char *const hk_sg_lbl_k2 = "sign/schnorr-k2";
static const char *const hk_sg_lbl_com = "sign/commit-R1";
static const char *const hk_sg_lbl_delta = "presign/delta";

static hk_err hk_sign_new(hk_role role, const hk_share *share,
                          const unsigned char *sid, hk_sign **out)
{
    hk_sign *sg;
    hk_err e;

    if (share == NULL || sid == NULL || out == NULL)
        return HK_ERR_ARG;
    *out = NULL;
    if (share->role != role || (role == HK_ROLE_P1 && share->sk == NULL))
        return HK_ERR_SHARE;
    if ((sg = OPENSSL_zalloc(sizeof(*sg))) == NULL)
        return HK_ERR_NOMEM;
    sg->role = role;
    sg->share = share;
    hk_binding_set(&sg->b, share->curve, sid, share->kid);
    if ((e = hk_curve_new(share->curve, &sg->c)) != HK_OK ||
        (e = hk_share_fingerprint(share, sg->fp)) != HK_OK) {
        hk_sign_free(sg);
        return e;
    }
    *out = sg;
    return HK_OK;
}

hk_err hk_sign_p1_new(const hk_share *share, const unsigned char *sid,
                      const unsigned char *digest, size_t dlen, hk_sign **out)
{
    hk_err e;

    if (digest == NULL || dlen < 1 || dlen > HK_DIGEST_MAX)
        return HK_ERR_ARG;
    if ((e = hk_sign_new(HK_ROLE_P1, share, sid, out)) != HK_OK)
        return e;
    memcpy((*out)->dig, digest, dlen);
    (*out)->dlen = dlen;
    return HK_OK;
}

hk_err hk_sign_p2_new(const hk_share *share, const unsigned char *sid,
                      hk_sign **out)
{
    return hk_sign_new(HK_ROLE_P2, share, sid, out);
}

/* A sign on a presignature: its id is the session id; it must be of this
 * key, curve and share epoch. */
static hk_err hk_sign_presigned(hk_role role, const hk_share *share,
                                const hk_presig *ps, hk_sign **out)
{
    hk_err e;

    if (ps == NULL || share == NULL)
        return HK_ERR_ARG;
    if (ps->curve != share->curve ||
        memcmp(ps->kid, share->kid, HK_ID_LEN) != 0)
        return HK_ERR_BINDING;
    if (ps->epoch != share->epoch)
        return HK_ERR_EPOCH;
    if ((e = hk_sign_new(role, share, ps->id, out)) != HK_OK)
        return e;
    (*out)->presigned = 1;
    (*out)->ps = *ps;
    return HK_OK;
}

hk_err hk_sign_p1_presigned(const hk_share *share, const hk_presig *ps,
                            const unsigned char *digest, size_t dlen,
                            hk_sign **out)
{
    hk_err e;

    if (digest == NULL || dlen < 1 || dlen > HK_DIGEST_MAX)
        return HK_ERR_ARG;
    if ((e = hk_sign_presigned(HK_ROLE_P1, share, ps, out)) != HK_OK)
        return e;
    memcpy((*out)->dig, digest, dlen);
    (*out)->dlen = dlen;
    return HK_OK;
}

hk_err hk_sign_p2_presigned(const hk_share *share, const hk_presig *ps,
                            hk_sign **out)
{
    return hk_sign_presigned(HK_ROLE_P2, share, ps, out);
}

void hk_sign_free(hk_sign *sg)
{
    if (sg == NULL)
        return;
    hk_curve_free(sg->c);
    BN_clear_free(sg->rn);
    OPENSSL_clear_free(sg, sizeof(*sg));
}

int hk_sign_done(const hk_sign *sg)
{
    if (sg == NULL)
        return 0;
    return sg->role == HK_ROLE_P1
               ? sg->state == SG_DONE
               : sg->state == SG_WAIT5 || sg->state == SG_DONE;
}

int hk_sign_started(const hk_sign *sg)
{
    return sg != NULL && sg->state != SG_INIT;
}

hk_err hk_sign_signature(const hk_sign *sg, unsigned char out[HK_SIG_LEN])
{
    if (sg == NULL || out == NULL)
        return HK_ERR_ARG;
    if (sg->state != SG_DONE)
        return HK_ERR_STATE;
    memcpy(out, sg->r.b, 32);
    memcpy(out + 32, sg->s.b, 32);
    return HK_OK;
}

hk_err hk_sign_digest(const hk_sign *sg, const unsigned char **dig,
                      size_t *dlen)
{
    if (sg == NULL || dig == NULL || dlen == NULL)
        return HK_ERR_ARG;
    if (sg->dlen == 0)
        return HK_ERR_STATE;
    *dig = sg->dig;
    *dlen = sg->dlen;
    return HK_OK;
}

hk_err hk_sign_randomness(const hk_share *share, BIGNUM **rn)
{
    BIGNUM *r = NULL, *out = NULL, *zero = NULL;
    hk_err e = HK_ERR_NOMEM;

    if (share == NULL || share->pk == NULL || rn == NULL)
        return HK_ERR_ARG;
    r = hk_bn_secret();
    out = hk_bn_secret();
    zero = BN_new();
    if (r == NULL || out == NULL || zero == NULL)
        goto done;
    /* Enc(0; r) = r^N mod N^2: the randomness factor alone. */
    BN_zero(zero);
    if ((e = hk_paillier_rand_unit(share->pk, r)) != HK_OK ||
        (e = hk_paillier_enc(share->pk, zero, r, out)) != HK_OK)
        goto done;
    *rn = out;
    out = NULL;
done:
    BN_clear_free(r);
    BN_clear_free(out);
    BN_free(zero);
    return e;
}

hk_err hk_sign_p2_use_randomness(hk_sign *sg, BIGNUM *rn)
{
    if (sg == NULL || rn == NULL || sg->role != HK_ROLE_P2 ||
        sg->state > SG_WAIT3 || sg->rn != NULL ||
        !hk_bn_below(rn, hk_paillier_n2(sg->share->pk)))
        return HK_ERR_ARG;
    sg->rn = rn;
    return HK_OK;
}

int hk_sign_p2_wants_randomness(const hk_sign *sg)
{
    return sg != NULL && sg->role == HK_ROLE_P2 && sg->state <= SG_WAIT3 &&
           sg->rn == NULL;
}

hk_err hk_sign_p2_precompute(hk_sign *sg)
{
    if (sg == NULL || sg->role != HK_ROLE_P2)
        return HK_ERR_ARG;
    if (sg->rn != NULL || sg->state > SG_WAIT3)
        return HK_OK;
    return hk_sign_randomness(sg->share, &sg->rn);
}

static hk_err hk_sg_commitment(const hk_sign *sg, const hk_point *R1,
                               const hk_schnorr *pi, const unsigned char *nonce,
                               unsigned char out[HK_HASH_LEN])
{
    unsigned char extra[HK_SCALAR_LEN + HK_DIGEST_MAX];
    hk_point pts[2] = {*R1, pi->a};

    memcpy(extra, pi->z.b, HK_SCALAR_LEN);
    memcpy(extra + HK_SCALAR_LEN, sg->dig, sg->dlen);
    return hk_commit_points(&sg->b, HK_ROLE_P1, hk_sg_lbl_com, pts, 2, extra,
                            HK_SCALAR_LEN + sg->dlen, nonce, out);
}

/* r = x(k * R_peer) mod q, non-zero. */
static hk_err hk_sg_r(hk_sign *sg, const hk_point *Rpeer, hk_scalar *r)
{
    hk_point R;
    hk_err e;

    if ((e = hk_point_mul(sg->c, Rpeer, &sg->k, &R)) != HK_OK ||
        (e = hk_point_x_mod_q(sg->c, &R, r)) != HK_OK)
        return e;
    return hk_scalar_is_zero(r) ? HK_ERR_SCALAR : HK_OK;
}

/* The re-randomiser of a presignature (presign.h, Groth-Shoup):
 * delta = H(id, key, epoch, R1, R2, Q, m') as a non-zero scalar; both
 * parties compute it. */
static hk_err hk_sg_delta(hk_sign *sg, hk_scalar *delta)
{
    unsigned char ep[4] = {(unsigned char)(sg->ps.epoch >> 24),
                           (unsigned char)(sg->ps.epoch >> 16),
                           (unsigned char)(sg->ps.epoch >> 8),
                           (unsigned char)sg->ps.epoch};
    hk_ts t;
    hk_err e;

    if ((e = hk_ts_init(&t, hk_sg_lbl_delta, &sg->b, HK_ROLE_P1)) != HK_OK)
        return e;
    if ((e = hk_ts_add(&t, "epoch", ep, sizeof(ep))) != HK_OK ||
        (e = hk_ts_add_point(&t, "R1", &sg->ps.R1)) != HK_OK ||
        (e = hk_ts_add_point(&t, "R2", &sg->ps.R2)) != HK_OK ||
        (e = hk_ts_add_point(&t, "Q", &sg->share->Q)) != HK_OK ||
        (e = hk_ts_add(&t, "dig", sg->dig, sg->dlen)) != HK_OK) {
        hk_ts_free(&t);
        return e;
    }
    if ((e = hk_ts_final_scalar(&t, sg->c, delta)) != HK_OK)
        return e;
    return hk_scalar_is_zero(delta) ? HK_ERR_SCALAR : HK_OK;
}

/* The nonce share this side uses with a presignature and r of R' =
 * delta*R: P1 signs with k = delta*k1 (so R' = k*R2); P2 keeps k = k2 and
 * computes R' = (delta*k2)*R1. The record's k is wiped. */
static hk_err hk_sg_presigned_r(hk_sign *sg, hk_scalar *r)
{
    hk_scalar delta;
    hk_err e;

    if ((e = hk_sg_delta(sg, &delta)) != HK_OK ||
        (e = hk_scalar_mul(sg->c, &delta, &sg->ps.k, &sg->k)) != HK_OK)
        goto done;
    if (sg->role == HK_ROLE_P1) {
        e = hk_sg_r(sg, &sg->ps.R2, r);
        goto done;
    }
    if ((e = hk_sg_r(sg, &sg->ps.R1, r)) != HK_OK)
        goto done;
    sg->k = sg->ps.k;
done:
    OPENSSL_cleanse(&delta, sizeof(delta));
    OPENSSL_cleanse(&sg->ps.k, sizeof(sg->ps.k));
    if (e != HK_OK)
        OPENSSL_cleanse(&sg->k, sizeof(sg->k));
    return e;
}

/* Step 1 online on a presignature (P1): sign.1p, the share and m'. */
static hk_err hk_sg_p1_start_presigned(hk_sign *sg, unsigned char **out,
                                       size_t *outlen)
{
    hk_msg *m = NULL;
    hk_scalar r;
    hk_err e;

    /* the record is spent from here on, whatever happens */
    if ((e = hk_sg_presigned_r(sg, &r)) != HK_OK ||
        (e = hk_msg_new("sign.1p", sg->b.sid, sg->b.kid, &m)) != HK_OK)
        goto done;
    if ((e = hk_put_share_ref(m, sg->share, sg->fp)) != HK_OK ||
        (e = hk_msg_put_bytes(m, "dig", sg->dig, sg->dlen)) != HK_OK) {
        hk_msg_free(m);
        goto done;
    }
    if ((e = hk_msg_out(m, out, outlen)) != HK_OK)
        goto done;
    sg->r = r;
    sg->state = SG_WAIT4;
done:
    if (e != HK_OK) {
        sg->state = SG_DEAD;
        OPENSSL_cleanse(&sg->k, sizeof(sg->k));
    }
    return e;
}

/* Step 1 (P1): k1, R1, proof, commitment. */
hk_err hk_sign_start(hk_sign *sg, unsigned char **out, size_t *outlen)
{
    hk_msg *m = NULL;
    hk_err e;

    if (sg == NULL || out == NULL || outlen == NULL)
        return HK_ERR_ARG;
    if (sg->role != HK_ROLE_P1 || sg->state != SG_INIT)
        return HK_ERR_STATE;
    if (sg->presigned)
        return hk_sg_p1_start_presigned(sg, out, outlen);
    if ((e = hk_scalar_random(sg->c, &sg->k)) != HK_OK ||
        (e = hk_point_mul_gen(sg->c, &sg->k, &sg->R)) != HK_OK ||
        (e = hk_schnorr_prove(sg->c, &sg->b, HK_ROLE_P1, hk_sg_lbl_k1, &sg->k,
                              &sg->R, &sg->pi)) != HK_OK)
        return e;
    if (!hk_rand_priv_bytes(sg->nonce, HK_NONCE_LEN))
        return HK_ERR_RAND;
    if ((e = hk_sg_commitment(sg, &sg->R, &sg->pi, sg->nonce, sg->com)) !=
            HK_OK ||
        (e = hk_msg_new("sign.1", sg->b.sid, sg->b.kid, &m)) != HK_OK)
        return e;
    if ((e = hk_put_share_ref(m, sg->share, sg->fp)) != HK_OK ||
        (e = hk_msg_put_bytes(m, "dig", sg->dig, sg->dlen)) != HK_OK ||
        (e = hk_msg_put_bytes(m, "com", sg->com, HK_HASH_LEN)) != HK_OK) {
        hk_msg_free(m);
        return e;
    }
    if ((e = hk_msg_out(m, out, outlen)) != HK_OK)
        return e;
    sg->state = SG_WAIT2;
    return HK_OK;
}

/* Step 2 (P2): k2, R2, proof. */
static hk_err hk_sg_p2_msg1(hk_sign *sg, hk_msg *in, unsigned char **out,
                            size_t *outlen)
{
    unsigned char dig[HK_DIGEST_MAX], com[HK_HASH_LEN];
    size_t dlen;
    hk_scalar k2, mm;
    hk_point R2;
    hk_schnorr pi;
    hk_msg *m = NULL;
    hk_err e;

    if ((e = hk_check_share_ref(in, sg->share, sg->fp)) != HK_OK ||
        (e = hk_msg_get_var(in, "dig", dig, HK_DIGEST_MAX, &dlen)) != HK_OK ||
        (e = hk_msg_get_bytes(in, "com", com, HK_HASH_LEN)) != HK_OK ||
        (e = hk_msg_finish(in)) != HK_OK ||
        (e = hk_scalar_from_digest(sg->c, dig, dlen, &mm)) != HK_OK)
        return e;
    if ((e = hk_scalar_random(sg->c, &k2)) != HK_OK ||
        (e = hk_point_mul_gen(sg->c, &k2, &R2)) != HK_OK ||
        (e = hk_schnorr_prove(sg->c, &sg->b, HK_ROLE_P2, hk_sg_lbl_k2, &k2, &R2,
                              &pi)) != HK_OK ||
        (e = hk_msg_new("sign.2", sg->b.sid, sg->b.kid, &m)) != HK_OK)
        goto done;
    if ((e = hk_msg_put_point(m, "R2", &R2)) != HK_OK ||
        (e = hk_put_schnorr(m, &pi)) != HK_OK) {
        hk_msg_free(m);
        goto done;
    }
    if ((e = hk_msg_out(m, out, outlen)) != HK_OK)
        goto done;
    memcpy(sg->dig, dig, dlen);
    sg->dlen = dlen;
    memcpy(sg->com, com, HK_HASH_LEN);
    sg->k = k2;
    sg->R = R2;
    sg->state = SG_WAIT3;
done:
    OPENSSL_cleanse(&k2, sizeof(k2));
    return e;
}

/* Step 3 (P1): verifies P2's proof, opens the commitment. */
static hk_err hk_sg_p1_msg2(hk_sign *sg, hk_msg *in, unsigned char **out,
                            size_t *outlen)
{
    hk_point R2;
    hk_schnorr pi;
    hk_scalar r;
    hk_msg *m = NULL;
    hk_err e;

    if ((e = hk_msg_get_point(in, sg->c, "R2", &R2)) != HK_OK ||
        (e = hk_get_schnorr(in, sg->c, &pi)) != HK_OK ||
        (e = hk_msg_finish(in)) != HK_OK ||
        (e = hk_schnorr_verify(sg->c, &sg->b, HK_ROLE_P2, hk_sg_lbl_k2, &R2,
                               &pi)) != HK_OK ||
        (e = hk_sg_r(sg, &R2, &r)) != HK_OK ||
        (e = hk_msg_new("sign.3", sg->b.sid, sg->b.kid, &m)) != HK_OK)
        return e;
    if ((e = hk_msg_put_point(m, "R1", &sg->R)) != HK_OK ||
        (e = hk_put_schnorr(m, &sg->pi)) != HK_OK ||
        (e = hk_msg_put_bytes(m, "nonce", sg->nonce, HK_NONCE_LEN)) != HK_OK) {
        hk_msg_free(m);
        return e;
    }
    if ((e = hk_msg_out(m, out, outlen)) != HK_OK)
        return e;
    sg->r = r;
    sg->state = SG_WAIT4;
    return HK_OK;
}

/* ckey (*) w: by the share's fixed-base table when it has ckey's. */
static hk_err hk_sg_ckey_pow(const hk_share *sh, const BIGNUM *w, BIGNUM *out)
{
    if (hk_paillier_fb_is_for(sh->ckey_fb, sh->pk, sh->ckey))
        return hk_paillier_fb_exp(sh->ckey_fb, w, out);
    return hk_paillier_mul(sh->pk, sh->ckey, w, out);
}

/* c3 = Enc(rho*q + k2^-1*m') (+) ckey (*) (k2^-1 * r * x2)  (Lindell 2017
 * protocol 4.3 step 3(c); rho's range: see zk.h). */
static hk_err hk_sg_c3(hk_sign *sg, const hk_scalar *r, BIGNUM *c3)
{
    const hk_paillier_pk *pk = sg->share->pk;
    hk_scalar kinv, a, w, mm;
    BIGNUM *v = NULL, *wb = NULL, *t = NULL;
    BN_CTX *ctx = NULL;
    hk_err e;

    if ((e = hk_scalar_from_digest(sg->c, sg->dig, sg->dlen, &mm)) != HK_OK ||
        (e = hk_scalar_inv(sg->c, &sg->k, &kinv)) != HK_OK ||
        (e = hk_scalar_mul(sg->c, &kinv, &mm, &a)) != HK_OK ||
        (e = hk_scalar_mul(sg->c, &kinv, r, &w)) != HK_OK ||
        (e = hk_scalar_mul(sg->c, &w, &sg->share->x, &w)) != HK_OK)
        goto done;
    e = HK_ERR_NOMEM;
    if ((ctx = BN_CTX_secure_new_ex(hk_libctx())) == NULL ||
        (v = hk_bn_secret()) == NULL || (t = hk_bn_secret()) == NULL)
        goto done;
    if ((e = hk_bn_rand_bits(v, HK_SIGN_RHO_BITS)) != HK_OK ||
        (e = hk_scalar_to_bn(&a, &wb)) != HK_OK)
        goto done;
    e = HK_ERR_CRYPTO;
    if (!BN_mul(v, v, hk_curve_order(sg->c), ctx) || !BN_add(v, v, wb))
        goto done;
    BN_clear_free(wb);
    wb = NULL;
    if (sg->rn == NULL && (e = hk_sign_p2_precompute(sg)) != HK_OK)
        goto done;
    /* Enc(v) = (1 + vN) * rn; then (+) ckey^w. */
    if (!BN_mul(t, v, hk_paillier_n(pk), ctx) || !BN_add_word(t, 1) ||
        !BN_mod_mul(t, t, sg->rn, hk_paillier_n2(pk), ctx)) {
        e = HK_ERR_CRYPTO;
        goto done;
    }
    if ((e = hk_scalar_to_bn(&w, &wb)) != HK_OK ||
        (e = hk_sg_ckey_pow(sg->share, wb, c3)) != HK_OK ||
        (e = hk_paillier_add(pk, c3, t, c3)) != HK_OK)
        goto done;
    /* The randomness is single-use. */
    BN_clear_free(sg->rn);
    sg->rn = NULL;
done:
    OPENSSL_cleanse(&kinv, sizeof(kinv));
    OPENSSL_cleanse(&a, sizeof(a));
    OPENSSL_cleanse(&w, sizeof(w));
    BN_clear_free(v);
    BN_clear_free(wb);
    BN_clear_free(t);
    BN_CTX_free(ctx);
    return e;
}

static hk_err hk_sg_send_c3(hk_sign *sg, const hk_scalar *r,
                            unsigned char **out, size_t *outlen);

/* Online step on a presignature (P2): sign.1p -> c3 under R' (presign.h).
 * The record's k2 was checked when it was stored and is used once. */
static hk_err hk_sg_p2_msg1p(hk_sign *sg, hk_msg *in, unsigned char **out,
                             size_t *outlen)
{
    hk_scalar r, mm;
    hk_err e;

    if ((e = hk_check_share_ref(in, sg->share, sg->fp)) != HK_OK ||
        (e = hk_msg_get_var(in, "dig", sg->dig, HK_DIGEST_MAX, &sg->dlen)) !=
            HK_OK ||
        (e = hk_msg_finish(in)) != HK_OK ||
        (e = hk_scalar_from_digest(sg->c, sg->dig, sg->dlen, &mm)) != HK_OK ||
        (e = hk_sg_presigned_r(sg, &r)) != HK_OK ||
        (e = hk_sg_send_c3(sg, &r, out, outlen)) != HK_OK) {
        /* the record's k2 may be spent: never again */
        sg->state = SG_DEAD;
        OPENSSL_cleanse(&sg->k, sizeof(sg->k));
    }
    return e;
}

/* Step 4 (P2): checks the opening and P1's proof, sends c3. */
static hk_err hk_sg_p2_msg3(hk_sign *sg, hk_msg *in, unsigned char **out,
                            size_t *outlen)
{
    unsigned char nonce[HK_NONCE_LEN], com[HK_HASH_LEN];
    hk_point R1;
    hk_schnorr pi;
    hk_scalar r;
    hk_err e;

    if ((e = hk_msg_get_point(in, sg->c, "R1", &R1)) != HK_OK ||
        (e = hk_get_schnorr(in, sg->c, &pi)) != HK_OK ||
        (e = hk_msg_get_bytes(in, "nonce", nonce, HK_NONCE_LEN)) != HK_OK ||
        (e = hk_msg_finish(in)) != HK_OK ||
        (e = hk_sg_commitment(sg, &R1, &pi, nonce, com)) != HK_OK)
        return e;
    if (CRYPTO_memcmp(com, sg->com, HK_HASH_LEN) != 0)
        return HK_ERR_COMMIT;
    if ((e = hk_schnorr_verify(sg->c, &sg->b, HK_ROLE_P1, hk_sg_lbl_k1, &R1,
                               &pi)) != HK_OK ||
        (e = hk_sg_r(sg, &R1, &r)) != HK_OK)
        return e;
    return hk_sg_send_c3(sg, &r, out, outlen);
}

/* sign.4: c3 for r; k2 is wiped (single use) once it is out. */
static hk_err hk_sg_send_c3(hk_sign *sg, const hk_scalar *r,
                            unsigned char **out, size_t *outlen)
{
    size_t nb = hk_width(hk_paillier_bits(sg->share->pk));
    BIGNUM *c3 = NULL;
    hk_msg *m = NULL;
    hk_err e;

    if ((c3 = BN_new()) == NULL)
        return HK_ERR_NOMEM;
    if ((e = hk_sg_c3(sg, r, c3)) != HK_OK ||
        (e = hk_msg_new("sign.4", sg->b.sid, sg->b.kid, &m)) != HK_OK)
        goto done;
    if ((e = hk_msg_put_bn(m, "c3", c3, 2 * nb)) != HK_OK) {
        hk_msg_free(m);
        goto done;
    }
    if ((e = hk_msg_out(m, out, outlen)) != HK_OK)
        goto done;
    sg->r = *r;
    OPENSSL_cleanse(&sg->k, sizeof(sg->k)); /* k2 is single-use */
    sg->state = SG_WAIT5;
done:
    BN_free(c3);
    return e;
}

/* The bound on c3's plaintext from an honest P2 (issue 20 item 4):
 *   Dec(c3) = rho*q + a + w*x1,  rho < 2^HK_SIGN_RHO_BITS, a = k2^-1*m'
 *   mod q < q, w = k2^-1*r*x2 mod q < q, x1 < q (P1's own ckey encrypts
 *   its share exactly), q < 2^256 on both curves,
 * so Dec(c3) < (2^RHO + 1 + q)*q < 2^(RHO+1) * 2^256 = 2^801, far below
 * the smaller prime of the Paillier key (> 2^1023 for 2048 bits, > 2^1535
 * for 3072): no wrap-around mod N, and the plaintext mod p is the
 * plaintext. P1 decrypts mod p only (half of CRT's two exponentiations)
 * and refuses a value mod p at or above 2^801 as an abort. The verdict
 * the server sees is then a function of the plaintext it chose (below the
 * bound or not) as with a full decryption, unless it found a plaintext M
 * >= p with M mod p < 2^801 without knowing p (density 2^-222 for the
 * 2048-bit key); doc/performance.md gives the argument. */
#define HK_SIGN_DEC_BITS (HK_SIGN_RHO_BITS + 1 + 256)
_Static_assert(HK_SIGN_DEC_BITS <= HK_PAILLIER_BITS_DEFAULT / 2 - 1,
               "the honest plaintext bound must lie below p");

/* s = k1^-1 * (Dec(c3) mod q), low-S; HK_ERR_SIG_ABORT if Dec(c3) is
 * not below HK_SIGN_DEC_BITS (P2 cheated). */
static hk_err hk_sg_finish_s(hk_sign *sg, const BIGNUM *c3, hk_scalar *s)
{
    hk_scalar sp, kinv;
    BIGNUM *d;
    hk_err e;

    if ((d = hk_bn_secret()) == NULL)
        return HK_ERR_NOMEM;
    /* Dec lies in [0, N): reduce it mod q as a non-negative integer. */
    e = hk_paillier_dec_small(sg->share->sk, c3, HK_SIGN_DEC_BITS, d);
    if (e == HK_OK && (e = hk_scalar_from_bn(sg->c, d, &sp)) == HK_OK &&
        (e = hk_scalar_inv(sg->c, &sg->k, &kinv)) == HK_OK &&
        (e = hk_scalar_mul(sg->c, &kinv, &sp, s)) == HK_OK)
        e = hk_scalar_low_s(sg->c, s, s);
    /* c3 passed the checks of its form (hk_paillier_ct_check_own): a
     * plaintext out of the honest bound, one the decryption cannot take
     * (c3 = 0 mod p, which only a holder of p can send) or s = 0 is the
     * server's doing, as a wrong signature is; only memory is ours */
    if (e != HK_OK && e != HK_ERR_NOMEM)
        e = HK_ERR_SIG_ABORT;
    BN_clear_free(d);
    OPENSSL_cleanse(&sp, sizeof(sp));
    OPENSSL_cleanse(&kinv, sizeof(kinv));
    return e;
}

/* Step 5 (P1): decrypts, verifies before returning (the abort rule). */
static hk_err hk_sg_p1_msg4(hk_sign *sg, hk_msg *in, unsigned char **out,
                            size_t *outlen)
{
    size_t nb = hk_width(hk_paillier_bits(sg->share->pk));
    BIGNUM *c3 = NULL;
    hk_scalar s;
    hk_msg *m = NULL;
    hk_err e;

    if ((e = hk_msg_get_bn(in, "c3", 2 * nb, &c3)) != HK_OK ||
        (e = hk_msg_finish(in)) != HK_OK ||
        (e = hk_paillier_ct_check_own(sg->share->sk, c3)) != HK_OK)
        goto done;
    e = hk_sg_finish_s(sg, c3, &s);
    if (e != HK_OK && e != HK_ERR_SIG_ABORT)
        goto done;
    if (e == HK_OK)
        e = hk_ecdsa_verify(sg->c, &sg->share->Q, sg->dig, sg->dlen, &sg->r,
                            &s);
    if (e != HK_OK) {
        /* A well-formed c3 that gives no valid signature, or a plaintext
         * out of the honest bound: P2 cheated. */
        sg->state = SG_DEAD;
        OPENSSL_cleanse(&sg->k, sizeof(sg->k));
        e = HK_ERR_SIG_ABORT;
        goto done;
    }
    OPENSSL_cleanse(&sg->k, sizeof(sg->k));
    sg->s = s;
    sg->state = SG_DONE;
    if ((e = hk_msg_new("sign.5", sg->b.sid, sg->b.kid, &m)) != HK_OK)
        goto done;
    if ((e = hk_msg_put_scalar(m, "r", &sg->r)) != HK_OK ||
        (e = hk_msg_put_scalar(m, "s", &sg->s)) != HK_OK) {
        hk_msg_free(m);
        goto done;
    }
    e = hk_msg_out(m, out, outlen);
done:
    BN_free(c3);
    return e;
}

/* Step 6 (P2): the signature P1 reports must be valid and use P2's r. */
static hk_err hk_sg_p2_msg5(hk_sign *sg, hk_msg *in)
{
    hk_scalar r, s;
    hk_err e;

    if ((e = hk_msg_get_scalar(in, sg->c, "r", &r)) != HK_OK ||
        (e = hk_msg_get_scalar(in, sg->c, "s", &s)) != HK_OK ||
        (e = hk_msg_finish(in)) != HK_OK)
        return e;
    if (!hk_scalar_eq(&r, &sg->r))
        return HK_ERR_SIG_ABORT;
    if ((e = hk_ecdsa_verify(sg->c, &sg->share->Q, sg->dig, sg->dlen, &r,
                             &s)) != HK_OK)
        return e;
    sg->s = s;
    sg->state = SG_DONE;
    return HK_OK;
}

hk_err hk_sign_recv(hk_sign *sg, const unsigned char *in, size_t inlen,
                    unsigned char **out, size_t *outlen)
{
    static const char *const expect[] = {"sign.1", "sign.2", "sign.3", "sign.4",
                                         "sign.5"};
    hk_msg *m = NULL;
    hk_err e;
    int st;

    if (sg == NULL || in == NULL || out == NULL || outlen == NULL)
        return HK_ERR_ARG;
    *out = NULL;
    *outlen = 0;
    st = sg->state;
    if (st >= SG_DONE ||
        (sg->role == HK_ROLE_P1) != (st == SG_WAIT2 || st == SG_WAIT4))
        return HK_ERR_STATE;
    if ((e = hk_msg_parse(in, inlen, HK_MSG_MAX,
                          st == SG_INIT && sg->presigned ? "sign.1p"
                                                         : expect[st],
                          sg->b.sid, sg->b.kid, &m)) != HK_OK)
        return e;
    switch (st) {
    case SG_INIT:
        e = sg->presigned ? hk_sg_p2_msg1p(sg, m, out, outlen)
                          : hk_sg_p2_msg1(sg, m, out, outlen);
        break;
    case SG_WAIT2:
        e = hk_sg_p1_msg2(sg, m, out, outlen);
        break;
    case SG_WAIT3:
        e = hk_sg_p2_msg3(sg, m, out, outlen);
        break;
    case SG_WAIT4:
        e = hk_sg_p1_msg4(sg, m, out, outlen);
        break;
    default:
        e = hk_sg_p2_msg5(sg, m);
    }
    hk_msg_free(m);
    return e;
}

hk_err hk_msg_peek_share(const unsigned char *in, size_t inlen,
                         unsigned long *epoch, unsigned char fp[HK_HASH_LEN])
{
    hk_msg *m = NULL;
    hk_err e;

    if (in == NULL || epoch == NULL || fp == NULL)
        return HK_ERR_ARG;
    if ((e = hk_msg_peek(in, inlen, HK_MSG_MAX, &m)) != HK_OK)
        return e;
    if ((e = hk_msg_get_u32(m, "epoch", epoch)) == HK_OK)
        e = hk_msg_get_bytes(m, "fp", fp, HK_HASH_LEN);
    hk_msg_free(m);
    return e;
}
