/* Two-phase refresh state machines. */
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "common/libctx.h"
#include "mpc/proto_impl.h"
#include "mpc/refresh.h"

enum { RF_INIT, RF_WAIT2, RF_WAIT3, RF_WAIT4, RF_STORE, RF_WAIT5, RF_DONE };

struct hk_refresh {
    hk_role role;
    int state;
    int pbits;
    hk_curve *c;
    hk_binding b;
    hk_rped *rp;
    const hk_rped_secret *sec; /* P2 */
    const hk_share *old;
    unsigned char old_fp[HK_HASH_LEN], new_fp[HK_HASH_LEN];
    unsigned char setup_fp[HK_HASH_LEN];
    hk_scalar r1; /* P1: own coin; P2: its r2 */
    unsigned char nonce[HK_NONCE_LEN];
    unsigned char com[HK_HASH_LEN];
    hk_share *fresh; /* the new share until taken */
    int taken;
    hk_scalar nx;        /* P1: its new secret x1' (for refresh.5's proof) */
    hk_point nQ1;        /* both: the new Q1' */
    hk_paillier_sk *pre; /* P1: a pooled key, until used */
};

static const char *const hk_rf_lbl_com = "refresh/commit-r1";
static const char *const hk_rf_lbl_holds = "refresh/holds-x1";
static const char *const hk_rf_lbl_stored = "refresh/stored-x1";

static hk_err hk_refresh_new(hk_role role, const hk_share *share,
                             const unsigned char *sid, int pbits,
                             const hk_rped *rp, hk_refresh **out)
{
    hk_refresh *rf;
    hk_err e;

    if (share == NULL || sid == NULL || rp == NULL || out == NULL ||
        !hk_paillier_bits_ok(pbits))
        return HK_ERR_ARG;
    *out = NULL;
    if (share->role != role)
        return HK_ERR_SHARE;
    if ((rf = OPENSSL_zalloc(sizeof(*rf))) == NULL)
        return HK_ERR_NOMEM;
    rf->role = role;
    rf->pbits = pbits;
    rf->old = share;
    hk_binding_set(&rf->b, share->curve, sid, share->kid);
    if ((e = hk_curve_new(share->curve, &rf->c)) != HK_OK ||
        (e = hk_rped_dup(rp, &rf->rp)) != HK_OK ||
        (e = hk_rped_fingerprint(rp, rf->setup_fp)) != HK_OK ||
        (e = hk_share_fingerprint(share, rf->old_fp)) != HK_OK) {
        hk_refresh_free(rf);
        return e;
    }
    *out = rf;
    return HK_OK;
}

hk_err hk_refresh_p1_new(const hk_share *share, const unsigned char *sid,
                         int pbits, const hk_rped *rp, hk_refresh **out)
{
    return hk_refresh_new(HK_ROLE_P1, share, sid, pbits, rp, out);
}

hk_err hk_refresh_p2_new(const hk_share *share, const unsigned char *sid,
                         int min_pbits, const hk_rped_secret *sec,
                         hk_refresh **out)
{
    hk_err e;

    if (sec == NULL)
        return HK_ERR_ARG;
    e = hk_refresh_new(HK_ROLE_P2, share, sid, min_pbits, &sec->pub, out);
    if (e == HK_OK)
        (*out)->sec = sec;
    return e;
}

void hk_refresh_free(hk_refresh *rf)
{
    if (rf == NULL)
        return;
    hk_curve_free(rf->c);
    hk_rped_free(rf->rp);
    hk_share_free(rf->fresh);
    hk_paillier_sk_free(rf->pre);
    OPENSSL_clear_free(rf, sizeof(*rf));
}

hk_err hk_refresh_p1_use_paillier(hk_refresh *rf, hk_paillier_sk **sk)
{
    if (rf == NULL || sk == NULL)
        return HK_ERR_ARG;
    if (*sk == NULL)
        return HK_OK;
    if (rf->role != HK_ROLE_P1 || rf->state > RF_WAIT2)
        return HK_ERR_STATE;
    if (hk_paillier_bits(hk_paillier_sk_pk(*sk)) != rf->pbits)
        return HK_ERR_ARG;
    hk_paillier_sk_free(rf->pre);
    rf->pre = *sk;
    *sk = NULL;
    return HK_OK;
}

int hk_refresh_confirmed(const hk_refresh *rf)
{
    return rf != NULL && rf->role == HK_ROLE_P2 && rf->state == RF_DONE;
}

hk_err hk_refresh_take_share(hk_refresh *rf, hk_share **out)
{
    if (rf == NULL || out == NULL)
        return HK_ERR_ARG;
    if (rf->fresh == NULL || rf->taken ||
        rf->state < (rf->role == HK_ROLE_P1 ? RF_STORE : RF_WAIT5))
        return HK_ERR_STATE;
    *out = rf->fresh;
    rf->fresh = NULL;
    rf->taken = 1;
    return HK_OK;
}

static hk_err hk_rf_commitment(const hk_refresh *rf, const hk_scalar *r1,
                               int pbits, const unsigned char *nonce,
                               unsigned char out[HK_HASH_LEN])
{
    return hk_commit_setup(&rf->b, hk_rf_lbl_com, NULL, 0, r1->b, pbits,
                           rf->setup_fp, nonce, out);
}

/* Step 1 (P1): commit to the coin r1. */
hk_err hk_refresh_start(hk_refresh *rf, unsigned char **out, size_t *outlen)
{
    hk_msg *m = NULL;
    hk_err e;

    if (rf == NULL || out == NULL || outlen == NULL)
        return HK_ERR_ARG;
    if (rf->role != HK_ROLE_P1 || rf->state != RF_INIT)
        return HK_ERR_STATE;
    if ((e = hk_scalar_random(rf->c, &rf->r1)) != HK_OK)
        return e;
    if (!hk_rand_priv_bytes(rf->nonce, HK_NONCE_LEN))
        return HK_ERR_RAND;
    if ((e = hk_rf_commitment(rf, &rf->r1, rf->pbits, rf->nonce, rf->com)) !=
            HK_OK ||
        (e = hk_msg_new("refresh.1", rf->b.sid, rf->b.kid, &m)) != HK_OK)
        return e;
    if ((e = hk_put_share_ref(m, rf->old, rf->old_fp)) != HK_OK ||
        (e = hk_put_possession(m, rf->c, &rf->b, hk_rf_lbl_holds, &rf->old->x,
                               &rf->old->Q1)) != HK_OK ||
        (e = hk_msg_put_bytes(m, "com", rf->com, HK_HASH_LEN)) != HK_OK ||
        (e = hk_msg_put_u32(m, "pbits", (unsigned long)rf->pbits)) != HK_OK ||
        (e = hk_msg_put_bytes(m, "setup", rf->setup_fp, HK_HASH_LEN)) !=
            HK_OK) {
        hk_msg_free(m);
        return e;
    }
    if ((e = hk_msg_out(m, out, outlen)) != HK_OK)
        return e;
    rf->state = RF_WAIT2;
    return HK_OK;
}

/* Step 2 (P2): its coin r2. */
static hk_err hk_rf_p2_msg1(hk_refresh *rf, hk_msg *in, unsigned char **out,
                            size_t *outlen)
{
    unsigned char com[HK_HASH_LEN], fp[HK_HASH_LEN];
    unsigned long pbits;
    hk_scalar r2;
    hk_msg *m = NULL;
    hk_err e;

    if ((e = hk_check_share_ref(in, rf->old, rf->old_fp)) != HK_OK ||
        (e = hk_check_possession(in, rf->c, &rf->b, hk_rf_lbl_holds,
                                 &rf->old->Q1)) != HK_OK ||
        (e = hk_msg_get_bytes(in, "com", com, HK_HASH_LEN)) != HK_OK ||
        (e = hk_msg_get_u32(in, "pbits", &pbits)) != HK_OK ||
        (e = hk_msg_get_bytes(in, "setup", fp, HK_HASH_LEN)) != HK_OK ||
        (e = hk_msg_finish(in)) != HK_OK)
        return e;
    if (!hk_paillier_bits_ok((int)pbits) || (int)pbits < rf->pbits)
        return HK_ERR_PAILLIER;
    if (CRYPTO_memcmp(fp, rf->setup_fp, HK_HASH_LEN) != 0)
        return HK_ERR_PARAMS;
    if ((e = hk_scalar_random(rf->c, &r2)) != HK_OK ||
        (e = hk_msg_new("refresh.2", rf->b.sid, rf->b.kid, &m)) != HK_OK)
        return e;
    if ((e = hk_msg_put_scalar(m, "r2", &r2)) != HK_OK) {
        hk_msg_free(m);
        return e;
    }
    if ((e = hk_msg_out(m, out, outlen)) != HK_OK)
        return e;
    memcpy(rf->com, com, HK_HASH_LEN);
    rf->pbits = (int)pbits;
    rf->r1 = r2;
    rf->state = RF_WAIT3;
    return HK_OK;
}

/* The new share: x' = x*f (f = r for P1, r^-1 for P2), the other party's
 * public share scaled by the inverse factor. */
static hk_err hk_rf_new_share(hk_refresh *rf, const hk_scalar *r,
                              hk_paillier_pk *pk, BIGNUM *ckey, hk_share **out)
{
    const hk_share *o = rf->old;
    hk_scalar rinv;
    hk_share *s;
    hk_err e;

    if ((s = OPENSSL_zalloc(sizeof(*s))) == NULL)
        return HK_ERR_NOMEM;
    *s = *o;
    s->ckey = NULL;
    s->pk = NULL;
    s->sk = NULL;
    s->epoch = o->epoch + 1;
    memcpy(s->rped_fp, rf->setup_fp, HK_HASH_LEN);
    if ((e = hk_scalar_inv(rf->c, r, &rinv)) != HK_OK)
        goto fail;
    if (rf->role == HK_ROLE_P1) {
        if ((e = hk_scalar_mul(rf->c, &o->x, r, &s->x)) != HK_OK ||
            (e = hk_point_mul_gen(rf->c, &s->x, &s->Q1)) != HK_OK ||
            (e = hk_point_mul(rf->c, &o->Q2, &rinv, &s->Q2)) != HK_OK)
            goto fail;
    } else if ((e = hk_scalar_mul(rf->c, &o->x, &rinv, &s->x)) != HK_OK ||
               (e = hk_point_mul_gen(rf->c, &s->x, &s->Q2)) != HK_OK ||
               (e = hk_point_mul(rf->c, &o->Q1, r, &s->Q1)) != HK_OK) {
        goto fail;
    }
    s->pk = pk;
    s->ckey = ckey;
    *out = s;
    OPENSSL_cleanse(&rinv, sizeof(rinv));
    return HK_OK;
fail:
    OPENSSL_cleanse(&rinv, sizeof(rinv));
    hk_share_free(s);
    return e;
}

/* r = r1 + r2 mod q, non-zero. */
static hk_err hk_rf_coin(hk_refresh *rf, const hk_scalar *a, const hk_scalar *b,
                         hk_scalar *r)
{
    hk_err e;

    if ((e = hk_scalar_add(rf->c, a, b, r)) != HK_OK)
        return e;
    return hk_scalar_is_zero(r) ? HK_ERR_SCALAR : HK_OK;
}

/* Step 3 (P1): the coin, the new share, the new Paillier package. */
static hk_err hk_rf_p1_msg2(hk_refresh *rf, hk_msg *in, unsigned char **out,
                            size_t *outlen)
{
    hk_scalar r2, r;
    hk_ppkg pkg;
    hk_share *s = NULL;
    hk_paillier_pk *pk = NULL;
    BIGNUM *ckey = NULL;
    hk_msg *m = NULL;
    hk_err e;

    memset(&pkg, 0, sizeof(pkg));
    if ((e = hk_msg_get_scalar(in, rf->c, "r2", &r2)) != HK_OK ||
        (e = hk_msg_finish(in)) != HK_OK ||
        (e = hk_rf_coin(rf, &rf->r1, &r2, &r)) != HK_OK ||
        (e = hk_rf_new_share(rf, &r, NULL, NULL, &s)) != HK_OK ||
        (e = hk_ppkg_make(rf->c, &rf->b, rf->pbits, rf->rp, &s->x, &s->Q1,
                          &rf->pre, &pkg)) != HK_OK)
        goto done;
    e = HK_ERR_NOMEM;
    if ((ckey = BN_dup(pkg.ckey)) == NULL)
        goto done;
    if ((e = hk_paillier_pk_new(hk_paillier_n(hk_paillier_sk_pk(pkg.sk)),
                                rf->pbits, &pk)) != HK_OK ||
        (e = hk_msg_new("refresh.3", rf->b.sid, rf->b.kid, &m)) != HK_OK ||
        (e = hk_msg_put_scalar(m, "r1", &rf->r1)) != HK_OK ||
        (e = hk_msg_put_bytes(m, "nonce", rf->nonce, HK_NONCE_LEN)) != HK_OK ||
        (e = hk_ppkg_put(m, &pkg)) != HK_OK)
        goto done;
    e = hk_msg_out(m, out, outlen);
    m = NULL;
    if (e != HK_OK)
        goto done;
    s->pk = pk;
    s->ckey = ckey;
    s->sk = pkg.sk;
    pk = NULL;
    ckey = NULL;
    pkg.sk = NULL;
    if ((e = hk_share_fingerprint(s, rf->new_fp)) != HK_OK)
        goto done;
    rf->nx = s->x;
    rf->nQ1 = s->Q1;
    rf->fresh = s;
    s = NULL;
    rf->state = RF_WAIT4;
done:
    if (e != HK_OK && *out != NULL) {
        OPENSSL_free(*out);
        *out = NULL;
    }
    hk_msg_free(m);
    hk_ppkg_free(&pkg);
    hk_share_free(s);
    hk_paillier_pk_free(pk);
    BN_free(ckey);
    OPENSSL_cleanse(&r, sizeof(r));
    return e;
}

/* Step 4 (P2): checks the opening and the proofs; holds the new share as
 * pending. */
static hk_err hk_rf_p2_msg3(hk_refresh *rf, hk_msg *in, unsigned char **out,
                            size_t *outlen)
{
    unsigned char nonce[HK_NONCE_LEN], com[HK_HASH_LEN];
    hk_scalar r1, r;
    hk_point Q1n, chk;
    hk_paillier_pk *pk = NULL;
    BIGNUM *ckey = NULL;
    hk_share *s = NULL;
    hk_msg *m = NULL;
    hk_err e;

    if ((e = hk_msg_get_scalar(in, rf->c, "r1", &r1)) != HK_OK ||
        (e = hk_msg_get_bytes(in, "nonce", nonce, HK_NONCE_LEN)) != HK_OK ||
        (e = hk_rf_commitment(rf, &r1, rf->pbits, nonce, com)) != HK_OK)
        return e;
    if (CRYPTO_memcmp(com, rf->com, HK_HASH_LEN) != 0)
        return HK_ERR_COMMIT;
    if ((e = hk_rf_coin(rf, &r1, &rf->r1, &r)) != HK_OK ||
        (e = hk_point_mul(rf->c, &rf->old->Q1, &r, &Q1n)) != HK_OK ||
        (e = hk_ppkg_take(in, rf->c, &rf->b, rf->pbits, rf->sec, &Q1n, &pk,
                          &ckey)) != HK_OK ||
        (e = hk_rf_new_share(rf, &r, pk, ckey, &s)) != HK_OK)
        goto done;
    pk = NULL;
    ckey = NULL;
    /* Q is unchanged: x2' * Q1' = x2 r^-1 * r Q1. */
    if ((e = hk_point_mul(rf->c, &s->Q1, &s->x, &chk)) != HK_OK)
        goto done;
    if (!hk_point_eq(&chk, &s->Q)) {
        e = HK_ERR_KEY_MISMATCH;
        goto done;
    }
    if ((e = hk_share_fingerprint(s, rf->new_fp)) != HK_OK ||
        (e = hk_msg_new("refresh.4", rf->b.sid, rf->b.kid, &m)) != HK_OK ||
        (e = hk_msg_put_bytes(m, "conf", rf->new_fp, HK_HASH_LEN)) != HK_OK)
        goto done;
    e = hk_msg_out(m, out, outlen);
    m = NULL;
    if (e != HK_OK)
        goto done;
    rf->nQ1 = s->Q1;
    rf->fresh = s;
    s = NULL;
    rf->state = RF_WAIT5;
done:
    hk_msg_free(m);
    hk_share_free(s);
    hk_paillier_pk_free(pk);
    BN_free(ckey);
    OPENSSL_cleanse(&r, sizeof(r));
    return e;
}

/* Step 5 (P1): P2 names the same new share. */
static hk_err hk_rf_p1_msg4(hk_refresh *rf, hk_msg *in)
{
    unsigned char got[HK_HASH_LEN];
    hk_err e;

    if ((e = hk_msg_get_bytes(in, "conf", got, HK_HASH_LEN)) != HK_OK ||
        (e = hk_msg_finish(in)) != HK_OK)
        return e;
    if (CRYPTO_memcmp(got, rf->new_fp, HK_HASH_LEN) != 0)
        return HK_ERR_KEY_MISMATCH;
    rf->state = RF_STORE;
    return HK_OK;
}

/* Step 7 (P2): P1 stored the new share and proves it holds x1'; only
 * this lets P2 promote the pending share (DESIGN.md section 2). */
static hk_err hk_rf_p2_msg5(hk_refresh *rf, hk_msg *in)
{
    hk_err e;

    if ((e = hk_stored_check(in, rf->c, &rf->b, hk_rf_lbl_stored, &rf->nQ1,
                             rf->new_fp)) != HK_OK)
        return e;
    rf->state = RF_DONE;
    return HK_OK;
}

hk_err hk_refresh_confirm(hk_refresh *rf, unsigned char **out, size_t *outlen)
{
    hk_err e;

    if (rf == NULL || out == NULL || outlen == NULL)
        return HK_ERR_ARG;
    if (rf->role != HK_ROLE_P1 || rf->state != RF_STORE)
        return HK_ERR_STATE;
    if ((e = hk_stored_msg("refresh.5", rf->c, &rf->b, hk_rf_lbl_stored,
                           &rf->nx, &rf->nQ1, rf->new_fp, out, outlen)) !=
        HK_OK)
        return e;
    OPENSSL_cleanse(&rf->nx, sizeof(rf->nx));
    rf->state = RF_DONE;
    return HK_OK;
}

hk_err hk_refresh_recv(hk_refresh *rf, const unsigned char *in, size_t inlen,
                       unsigned char **out, size_t *outlen)
{
    static const char *const expect[] = {"refresh.1", "refresh.2", "refresh.3",
                                         "refresh.4", NULL,        "refresh.5"};
    hk_msg *m = NULL;
    hk_err e;
    int st;

    if (rf == NULL || in == NULL || out == NULL || outlen == NULL)
        return HK_ERR_ARG;
    *out = NULL;
    *outlen = 0;
    st = rf->state;
    if (st >= RF_DONE || st == RF_STORE ||
        (rf->role == HK_ROLE_P1) != (st == RF_WAIT2 || st == RF_WAIT4))
        return HK_ERR_STATE;
    if ((e = hk_msg_parse(in, inlen, HK_MSG_MAX, expect[st], rf->b.sid,
                          rf->b.kid, &m)) != HK_OK)
        return e;
    switch (st) {
    case RF_INIT:
        e = hk_rf_p2_msg1(rf, m, out, outlen);
        break;
    case RF_WAIT2:
        e = hk_rf_p1_msg2(rf, m, out, outlen);
        break;
    case RF_WAIT3:
        e = hk_rf_p2_msg3(rf, m, out, outlen);
        break;
    case RF_WAIT4:
        e = hk_rf_p1_msg4(rf, m);
        break;
    default:
        e = hk_rf_p2_msg5(rf, m);
    }
    hk_msg_free(m);
    return e;
}
