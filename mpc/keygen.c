/* Two-party key generation state machines. */
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "common/libctx.h"
#include "mpc/keygen.h"
#include "mpc/proto_impl.h"

enum { KG_INIT, KG_WAIT2, KG_WAIT3, KG_WAIT4, KG_DONE };

struct hk_keygen {
    hk_role role;
    int state;
    int pbits; /* P1: chosen; P2: minimum, then agreed */
    hk_curve *c;
    hk_binding b;
    hk_rped *rp;
    const hk_rped_secret *sec; /* P2 */
    unsigned char setup_fp[HK_HASH_LEN];
    hk_scalar x;                       /* own secret share */
    hk_point X;                        /* own public share */
    hk_schnorr pi;                     /* own proof */
    unsigned char nonce[HK_NONCE_LEN]; /* P1 */
    unsigned char com[HK_HASH_LEN];    /* P1: own; P2: received */
    hk_ppkg pkg;                       /* P1 */
    hk_paillier_sk *pre;               /* P1: a pooled key, until used */
    hk_share *share;
    unsigned char fp[HK_HASH_LEN]; /* the agreed share's fingerprint */
    hk_point Q1;                   /* P2: P1's public share */
    int confirmed; /* P1: keygen.5 made; P2: keygen.5 verified */
};

static const char *const hk_kg_lbl_x1 = "keygen/schnorr-x1";
static const char *const hk_kg_lbl_x2 = "keygen/schnorr-x2";
static const char *const hk_kg_lbl_com = "keygen/commit-Q1";
static const char *const hk_kg_lbl_stored = "keygen/stored-x1";

static hk_err hk_keygen_new(hk_role role, hk_curve_id curve,
                            const unsigned char *sid, const unsigned char *kid,
                            int pbits, const hk_rped *rp, hk_keygen **out)
{
    hk_keygen *kg;
    hk_err e;

    if (sid == NULL || kid == NULL || rp == NULL || out == NULL ||
        !hk_paillier_bits_ok(pbits))
        return HK_ERR_ARG;
    *out = NULL;
    if ((kg = OPENSSL_zalloc(sizeof(*kg))) == NULL)
        return HK_ERR_NOMEM;
    kg->role = role;
    kg->pbits = pbits;
    hk_binding_set(&kg->b, curve, sid, kid);
    if ((e = hk_curve_new(curve, &kg->c)) != HK_OK ||
        (e = hk_rped_dup(rp, &kg->rp)) != HK_OK ||
        (e = hk_rped_fingerprint(rp, kg->setup_fp)) != HK_OK) {
        hk_keygen_free(kg);
        return e;
    }
    *out = kg;
    return HK_OK;
}

hk_err hk_keygen_p1_new(hk_curve_id curve, const unsigned char *sid,
                        const unsigned char *kid, int pbits, const hk_rped *rp,
                        hk_keygen **out)
{
    return hk_keygen_new(HK_ROLE_P1, curve, sid, kid, pbits, rp, out);
}

hk_err hk_keygen_p2_new(hk_curve_id curve, const unsigned char *sid,
                        const unsigned char *kid, int min_pbits,
                        const hk_rped_secret *sec, hk_keygen **out)
{
    hk_err e;

    if (sec == NULL)
        return HK_ERR_ARG;
    e = hk_keygen_new(HK_ROLE_P2, curve, sid, kid, min_pbits, &sec->pub, out);
    if (e == HK_OK)
        (*out)->sec = sec;
    return e;
}

void hk_keygen_free(hk_keygen *kg)
{
    if (kg == NULL)
        return;
    hk_curve_free(kg->c);
    hk_rped_free(kg->rp);
    hk_ppkg_free(&kg->pkg);
    hk_paillier_sk_free(kg->pre);
    hk_share_free(kg->share);
    OPENSSL_clear_free(kg, sizeof(*kg));
}

hk_err hk_keygen_p1_use_paillier(hk_keygen *kg, hk_paillier_sk **sk)
{
    if (kg == NULL || sk == NULL)
        return HK_ERR_ARG;
    if (*sk == NULL)
        return HK_OK;
    if (kg->role != HK_ROLE_P1 || kg->state != KG_INIT)
        return HK_ERR_STATE;
    if (hk_paillier_bits(hk_paillier_sk_pk(*sk)) != kg->pbits)
        return HK_ERR_ARG;
    hk_paillier_sk_free(kg->pre);
    kg->pre = *sk;
    *sk = NULL;
    return HK_OK;
}

int hk_keygen_done(const hk_keygen *kg)
{
    return kg != NULL && kg->state == KG_DONE;
}

int hk_keygen_confirmed(const hk_keygen *kg)
{
    return kg != NULL && kg->state == KG_DONE && kg->confirmed;
}

hk_err hk_keygen_confirm(hk_keygen *kg, unsigned char **out, size_t *outlen)
{
    hk_err e;

    if (kg == NULL || out == NULL || outlen == NULL)
        return HK_ERR_ARG;
    if (kg->role != HK_ROLE_P1 || kg->state != KG_DONE || kg->confirmed)
        return HK_ERR_STATE;
    if ((e = hk_stored_msg("keygen.5", kg->c, &kg->b, hk_kg_lbl_stored, &kg->x,
                           &kg->X, kg->fp, out, outlen)) != HK_OK)
        return e;
    kg->confirmed = 1;
    return HK_OK;
}

hk_err hk_keygen_take_share(hk_keygen *kg, hk_share **out)
{
    if (kg == NULL || out == NULL)
        return HK_ERR_ARG;
    if (kg->state != KG_DONE || kg->share == NULL)
        return HK_ERR_STATE;
    *out = kg->share;
    kg->share = NULL;
    return HK_OK;
}

/* H(Q1, pi.a | pbits, setup fingerprint ; nonce). */
static hk_err hk_kg_commitment(const hk_keygen *kg, const hk_point *Q1,
                               const hk_schnorr *pi, int pbits,
                               const unsigned char *nonce,
                               unsigned char out[HK_HASH_LEN])
{
    hk_point pts[2] = {*Q1, pi->a};

    return hk_commit_setup(&kg->b, hk_kg_lbl_com, pts, 2, pi->z.b, pbits,
                           kg->setup_fp, nonce, out);
}

/* Step 1 (P1): x1, Q1, proof, commitment; the Paillier package too, since
 * it depends on nothing from P2. */
hk_err hk_keygen_start(hk_keygen *kg, unsigned char **out, size_t *outlen)
{
    hk_msg *m = NULL;
    hk_err e;

    if (kg == NULL || out == NULL || outlen == NULL)
        return HK_ERR_ARG;
    if (kg->role != HK_ROLE_P1 || kg->state != KG_INIT)
        return HK_ERR_STATE;
    if ((e = hk_scalar_random(kg->c, &kg->x)) != HK_OK ||
        (e = hk_point_mul_gen(kg->c, &kg->x, &kg->X)) != HK_OK ||
        (e = hk_schnorr_prove(kg->c, &kg->b, HK_ROLE_P1, hk_kg_lbl_x1, &kg->x,
                              &kg->X, &kg->pi)) != HK_OK)
        goto fail;
    e = HK_ERR_RAND;
    if (!hk_rand_priv_bytes(kg->nonce, HK_NONCE_LEN))
        goto fail;
    if ((e = hk_kg_commitment(kg, &kg->X, &kg->pi, kg->pbits, kg->nonce,
                              kg->com)) != HK_OK ||
        (e = hk_ppkg_make(kg->c, &kg->b, kg->pbits, kg->rp, &kg->x, &kg->X,
                          &kg->pre, &kg->pkg)) != HK_OK ||
        (e = hk_msg_new("keygen.1", kg->b.sid, kg->b.kid, &m)) != HK_OK ||
        (e = hk_msg_put_bytes(m, "com", kg->com, HK_HASH_LEN)) != HK_OK ||
        (e = hk_msg_put_u32(m, "pbits", (unsigned long)kg->pbits)) != HK_OK ||
        (e = hk_msg_put_str(m, "curve", hk_curve_name(kg->b.curve))) != HK_OK ||
        (e = hk_msg_put_bytes(m, "setup", kg->setup_fp, HK_HASH_LEN)) != HK_OK)
        goto fail;
    if ((e = hk_msg_out(m, out, outlen)) != HK_OK)
        return e;
    kg->state = KG_WAIT2;
    return HK_OK;
fail:
    hk_msg_free(m);
    return e;
}

/* Step 2 (P2): takes the commitment, answers with Q2 and its proof. */
static hk_err hk_kg_p2_msg1(hk_keygen *kg, hk_msg *in, unsigned char **out,
                            size_t *outlen)
{
    unsigned char com[HK_HASH_LEN], fp[HK_HASH_LEN];
    char cname[16];
    unsigned long pbits;
    hk_scalar x2;
    hk_point Q2;
    hk_schnorr pi;
    hk_msg *m = NULL;
    hk_err e;

    if ((e = hk_msg_get_bytes(in, "com", com, HK_HASH_LEN)) != HK_OK ||
        (e = hk_msg_get_u32(in, "pbits", &pbits)) != HK_OK ||
        (e = hk_msg_get_str(in, "curve", cname, sizeof(cname))) != HK_OK ||
        (e = hk_msg_get_bytes(in, "setup", fp, HK_HASH_LEN)) != HK_OK ||
        (e = hk_msg_finish(in)) != HK_OK)
        return e;
    if (strcmp(cname, hk_curve_name(kg->b.curve)) != 0)
        return HK_ERR_CURVE;
    if (!hk_paillier_bits_ok((int)pbits) || (int)pbits < kg->pbits)
        return HK_ERR_PAILLIER;
    if (CRYPTO_memcmp(fp, kg->setup_fp, HK_HASH_LEN) != 0)
        return HK_ERR_PARAMS;
    if ((e = hk_scalar_random(kg->c, &x2)) != HK_OK ||
        (e = hk_point_mul_gen(kg->c, &x2, &Q2)) != HK_OK ||
        (e = hk_schnorr_prove(kg->c, &kg->b, HK_ROLE_P2, hk_kg_lbl_x2, &x2, &Q2,
                              &pi)) != HK_OK ||
        (e = hk_msg_new("keygen.2", kg->b.sid, kg->b.kid, &m)) != HK_OK ||
        (e = hk_msg_put_point(m, "Q2", &Q2)) != HK_OK ||
        (e = hk_put_schnorr(m, &pi)) != HK_OK) {
        hk_msg_free(m);
        OPENSSL_cleanse(&x2, sizeof(x2));
        return e;
    }
    if ((e = hk_msg_out(m, out, outlen)) != HK_OK) {
        OPENSSL_cleanse(&x2, sizeof(x2));
        return e;
    }
    memcpy(kg->com, com, HK_HASH_LEN);
    kg->pbits = (int)pbits;
    kg->x = x2;
    kg->X = Q2;
    OPENSSL_cleanse(&x2, sizeof(x2));
    kg->state = KG_WAIT3;
    return HK_OK;
}

/* Fills a new share from the agreed values. */
static hk_err hk_kg_make_share(hk_keygen *kg, const hk_point *Q,
                               const hk_point *Q1, const hk_point *Q2,
                               hk_paillier_pk *pk, BIGNUM *ckey, hk_share **out)
{
    hk_share *s = OPENSSL_zalloc(sizeof(*s));

    if (s == NULL)
        return HK_ERR_NOMEM;
    s->role = kg->role;
    s->curve = hk_curve_get_id(kg->c);
    memcpy(s->kid, kg->b.kid, HK_ID_LEN);
    s->epoch = 1;
    s->x = kg->x;
    s->Q = *Q;
    s->Q1 = *Q1;
    s->Q2 = *Q2;
    s->pk = pk;
    s->ckey = ckey;
    memcpy(s->rped_fp, kg->setup_fp, HK_HASH_LEN);
    *out = s;
    return HK_OK;
}

/* Step 3 (P1): verifies P2's proof, computes Q = x1*Q2, opens. */
static hk_err hk_kg_p1_msg2(hk_keygen *kg, hk_msg *in, unsigned char **out,
                            size_t *outlen)
{
    hk_point Q2, Q;
    hk_schnorr pi;
    hk_share *s = NULL;
    hk_paillier_pk *pk = NULL;
    BIGNUM *ckey = NULL;
    hk_msg *m = NULL;
    hk_err e;

    if ((e = hk_msg_get_point(in, kg->c, "Q2", &Q2)) != HK_OK ||
        (e = hk_get_schnorr(in, kg->c, &pi)) != HK_OK ||
        (e = hk_msg_finish(in)) != HK_OK)
        return e;
    if ((e = hk_schnorr_verify(kg->c, &kg->b, HK_ROLE_P2, hk_kg_lbl_x2, &Q2,
                               &pi)) != HK_OK)
        return e;
    if ((e = hk_point_mul(kg->c, &Q2, &kg->x, &Q)) != HK_OK)
        return e;
    e = HK_ERR_NOMEM;
    if ((ckey = BN_dup(kg->pkg.ckey)) == NULL)
        goto fail;
    if ((e = hk_paillier_pk_new(hk_paillier_n(hk_paillier_sk_pk(kg->pkg.sk)),
                                kg->pbits, &pk)) != HK_OK ||
        (e = hk_kg_make_share(kg, &Q, &kg->X, &Q2, pk, ckey, &s)) != HK_OK)
        goto fail;
    pk = NULL;
    ckey = NULL;
    if ((e = hk_msg_new("keygen.3", kg->b.sid, kg->b.kid, &m)) != HK_OK ||
        (e = hk_msg_put_point(m, "Q1", &kg->X)) != HK_OK ||
        (e = hk_put_schnorr(m, &kg->pi)) != HK_OK ||
        (e = hk_msg_put_bytes(m, "nonce", kg->nonce, HK_NONCE_LEN)) != HK_OK ||
        (e = hk_ppkg_put(m, &kg->pkg)) != HK_OK ||
        (e = hk_msg_put_point(m, "Q", &Q)) != HK_OK)
        goto fail;
    e = hk_msg_out(m, out, outlen);
    m = NULL;
    if (e != HK_OK)
        goto fail;
    s->sk = kg->pkg.sk;
    kg->pkg.sk = NULL;
    kg->share = s;
    kg->state = KG_WAIT4;
    return HK_OK;
fail:
    hk_msg_free(m);
    hk_share_free(s);
    hk_paillier_pk_free(pk);
    BN_free(ckey);
    return e;
}

/* Step 4 (P2): checks the opening and every proof, agrees on Q. */
static hk_err hk_kg_p2_msg3(hk_keygen *kg, hk_msg *in, unsigned char **out,
                            size_t *outlen)
{
    unsigned char nonce[HK_NONCE_LEN], com[HK_HASH_LEN], fp[HK_HASH_LEN];
    hk_point Q1, Q, mine;
    hk_schnorr pi;
    hk_paillier_pk *pk = NULL;
    BIGNUM *ckey = NULL;
    hk_share *s = NULL;
    hk_msg *m = NULL;
    hk_err e;

    if ((e = hk_msg_get_point(in, kg->c, "Q1", &Q1)) != HK_OK ||
        (e = hk_get_schnorr(in, kg->c, &pi)) != HK_OK ||
        (e = hk_msg_get_bytes(in, "nonce", nonce, HK_NONCE_LEN)) != HK_OK ||
        (e = hk_msg_get_point(in, kg->c, "Q", &Q)) != HK_OK)
        return e;
    if ((e = hk_kg_commitment(kg, &Q1, &pi, kg->pbits, nonce, com)) != HK_OK)
        return e;
    if (CRYPTO_memcmp(com, kg->com, HK_HASH_LEN) != 0)
        return HK_ERR_COMMIT;
    if ((e = hk_schnorr_verify(kg->c, &kg->b, HK_ROLE_P1, hk_kg_lbl_x1, &Q1,
                               &pi)) != HK_OK ||
        (e = hk_ppkg_take(in, kg->c, &kg->b, kg->pbits, kg->sec, &Q1, &pk,
                          &ckey)) != HK_OK)
        goto fail;
    if ((e = hk_point_mul(kg->c, &Q1, &kg->x, &mine)) != HK_OK)
        goto fail;
    if (!hk_point_eq(&mine, &Q)) {
        e = HK_ERR_KEY_MISMATCH;
        goto fail;
    }
    if ((e = hk_kg_make_share(kg, &Q, &Q1, &kg->X, pk, ckey, &s)) != HK_OK)
        goto fail;
    pk = NULL;
    ckey = NULL;
    if ((e = hk_share_fingerprint(s, fp)) != HK_OK ||
        (e = hk_msg_new("keygen.4", kg->b.sid, kg->b.kid, &m)) != HK_OK ||
        (e = hk_msg_put_bytes(m, "conf", fp, HK_HASH_LEN)) != HK_OK)
        goto fail;
    e = hk_msg_out(m, out, outlen);
    m = NULL;
    if (e != HK_OK)
        goto fail;
    kg->share = s;
    memcpy(kg->fp, fp, HK_HASH_LEN);
    kg->Q1 = Q1;
    kg->state = KG_DONE;
    return HK_OK;
fail:
    hk_msg_free(m);
    hk_share_free(s);
    hk_paillier_pk_free(pk);
    BN_free(ckey);
    return e;
}

/* Step 5 (P1): P2's confirmation must name the same share. */
static hk_err hk_kg_p1_msg4(hk_keygen *kg, hk_msg *in)
{
    unsigned char got[HK_HASH_LEN], fp[HK_HASH_LEN];
    hk_err e;

    if ((e = hk_msg_get_bytes(in, "conf", got, HK_HASH_LEN)) != HK_OK ||
        (e = hk_msg_finish(in)) != HK_OK ||
        (e = hk_share_fingerprint(kg->share, fp)) != HK_OK)
        return e;
    if (CRYPTO_memcmp(got, fp, HK_HASH_LEN) != 0)
        return HK_ERR_KEY_MISMATCH;
    memcpy(kg->fp, fp, HK_HASH_LEN);
    kg->state = KG_DONE;
    return HK_OK;
}

/* Step 7 (P2): P1 has stored its share and proves it holds x1. */
static hk_err hk_kg_p2_msg5(hk_keygen *kg, hk_msg *in)
{
    hk_err e;

    if ((e = hk_stored_check(in, kg->c, &kg->b, hk_kg_lbl_stored, &kg->Q1,
                             kg->fp)) != HK_OK)
        return e;
    kg->confirmed = 1;
    return HK_OK;
}

hk_err hk_keygen_recv(hk_keygen *kg, const unsigned char *in, size_t inlen,
                      unsigned char **out, size_t *outlen)
{
    static const char *const p1_expect[] = {NULL, "keygen.2", NULL, "keygen.4"};
    static const char *const p2_expect[] = {"keygen.1", NULL, "keygen.3", NULL,
                                            "keygen.5"};
    const char *want;
    hk_msg *m = NULL;
    hk_err e;

    if (kg == NULL || in == NULL || out == NULL || outlen == NULL)
        return HK_ERR_ARG;
    *out = NULL;
    *outlen = 0;
    if (kg->role == HK_ROLE_P1)
        want = kg->state <= KG_WAIT4 ? p1_expect[kg->state] : NULL;
    else
        want = kg->confirmed ? NULL : p2_expect[kg->state];
    if (want == NULL)
        return HK_ERR_STATE;
    if ((e = hk_msg_parse(in, inlen, HK_MSG_MAX, want, kg->b.sid, kg->b.kid,
                          &m)) != HK_OK)
        return e;
    if (kg->role == HK_ROLE_P2 && kg->state == KG_DONE)
        e = hk_kg_p2_msg5(kg, m);
    else if (kg->role == HK_ROLE_P2)
        e = kg->state == KG_INIT ? hk_kg_p2_msg1(kg, m, out, outlen)
                                 : hk_kg_p2_msg3(kg, m, out, outlen);
    else
        e = kg->state == KG_WAIT2 ? hk_kg_p1_msg2(kg, m, out, outlen)
                                  : hk_kg_p1_msg4(kg, m);
    hk_msg_free(m);
    return e;
}

hk_err hk_keygen_peek_curve(const unsigned char *in, size_t inlen,
                            hk_curve_id *curve)
{
    char cname[16];
    hk_msg *m = NULL;
    hk_err e;

    if (in == NULL || curve == NULL)
        return HK_ERR_ARG;
    if ((e = hk_msg_peek(in, inlen, HK_MSG_MAX, &m)) != HK_OK)
        return e;
    if ((e = hk_msg_get_str(m, "curve", cname, sizeof(cname))) == HK_OK)
        e = hk_curve_from_name(cname, curve);
    hk_msg_free(m);
    return e;
}
