/* Key share records. */
#include <string.h>

#include <openssl/crypto.h>

#include "mpc/codec.h"
#include "mpc/share.h"

void hk_share_free(hk_share *s)
{
    if (s == NULL)
        return;
    BN_free(s->ckey);
    hk_paillier_pk_free(s->pk);
    hk_paillier_sk_free(s->sk);
    OPENSSL_clear_free(s, sizeof(*s));
}

const hk_point *hk_share_pubkey(const hk_share *s) { return &s->Q; }

hk_err hk_share_fingerprint(const hk_share *s, unsigned char out[HK_HASH_LEN])
{
    unsigned char ep[4];
    hk_binding b;
    hk_ts t;
    hk_err e;

    if (s == NULL || out == NULL)
        return HK_ERR_ARG;
    memset(&b, 0, sizeof(b));
    b.curve = s->curve;
    memcpy(b.kid, s->kid, HK_ID_LEN);
    ep[0] = (unsigned char)(s->epoch >> 24);
    ep[1] = (unsigned char)(s->epoch >> 16);
    ep[2] = (unsigned char)(s->epoch >> 8);
    ep[3] = (unsigned char)s->epoch;
    if ((e = hk_ts_init(&t, "share-fingerprint", &b, HK_ROLE_P1)) != HK_OK)
        return e;
    if ((e = hk_ts_add(&t, "epoch", ep, 4)) != HK_OK ||
        (e = hk_ts_add_point(&t, "Q", &s->Q)) != HK_OK ||
        (e = hk_ts_add_point(&t, "Q1", &s->Q1)) != HK_OK ||
        (e = hk_ts_add_point(&t, "Q2", &s->Q2)) != HK_OK ||
        (e = hk_ts_add_bn(&t, "N", hk_paillier_n(s->pk))) != HK_OK ||
        (e = hk_ts_add_bn(&t, "ckey", s->ckey)) != HK_OK) {
        hk_ts_free(&t);
        return e;
    }
    return hk_ts_final(&t, out, HK_HASH_LEN);
}

static hk_err hk_share_put(const hk_share *s, hk_msg *m)
{
    size_t nb = hk_width(hk_paillier_bits(s->pk));
    hk_err e;

    if ((e = hk_msg_put_u32(m, "role", s->role)) != HK_OK ||
        (e = hk_msg_put_str(m, "curve", hk_curve_name(s->curve))) != HK_OK ||
        (e = hk_msg_put_u32(m, "epoch", s->epoch)) != HK_OK ||
        (e = hk_msg_put_u32(m, "pbits",
                            (unsigned long)hk_paillier_bits(s->pk))) != HK_OK ||
        (e = hk_msg_put_scalar(m, "x", &s->x)) != HK_OK ||
        (e = hk_msg_put_point(m, "Q", &s->Q)) != HK_OK ||
        (e = hk_msg_put_point(m, "Q1", &s->Q1)) != HK_OK ||
        (e = hk_msg_put_point(m, "Q2", &s->Q2)) != HK_OK ||
        (e = hk_msg_put_bn(m, "N", hk_paillier_n(s->pk), nb)) != HK_OK ||
        (e = hk_msg_put_bn(m, "ckey", s->ckey, 2 * nb)) != HK_OK ||
        (e = hk_msg_put_bytes(m, "setup", s->rped_fp, HK_HASH_LEN)) != HK_OK)
        return e;
    if (s->role == HK_ROLE_P1 &&
        ((e = hk_msg_put_bn(m, "p", hk_paillier_sk_p(s->sk), nb / 2)) !=
             HK_OK ||
         (e = hk_msg_put_bn(m, "q", hk_paillier_sk_q(s->sk), nb / 2)) != HK_OK))
        return e;
    return HK_OK;
}

hk_err hk_share_encode(const hk_share *s, unsigned char **out, size_t *len)
{
    hk_msg *m = NULL;
    hk_err e;

    if (s == NULL || out == NULL || len == NULL || s->pk == NULL ||
        (s->role == HK_ROLE_P1 && s->sk == NULL))
        return HK_ERR_ARG;
    if ((e = hk_msg_new("share", NULL, s->kid, &m)) != HK_OK)
        return e;
    if ((e = hk_share_put(s, m)) == HK_OK)
        e = hk_msg_encode(m, out, len);
    hk_msg_free(m);
    return e;
}

/* Reads role, curve, epoch and pbits. */
static hk_err hk_share_get_header(hk_msg *m, hk_share *s, int *pbits)
{
    char cname[16];
    unsigned long role, bits;
    hk_err e;

    if ((e = hk_msg_get_u32(m, "role", &role)) != HK_OK ||
        (e = hk_msg_get_str(m, "curve", cname, sizeof(cname))) != HK_OK ||
        (e = hk_msg_get_u32(m, "epoch", &s->epoch)) != HK_OK ||
        (e = hk_msg_get_u32(m, "pbits", &bits)) != HK_OK)
        return e;
    if ((role != HK_ROLE_P1 && role != HK_ROLE_P2) ||
        hk_curve_from_name(cname, &s->curve) != HK_OK || s->epoch == 0 ||
        !hk_paillier_bits_ok((int)bits))
        return HK_ERR_SHARE;
    s->role = (hk_role)role;
    *pbits = (int)bits;
    return HK_OK;
}

/* Q_own == x*G and Q == x * Q_other. */
static hk_err hk_share_check_points(hk_curve *c, const hk_share *s)
{
    const hk_point *own = s->role == HK_ROLE_P1 ? &s->Q1 : &s->Q2;
    const hk_point *other = s->role == HK_ROLE_P1 ? &s->Q2 : &s->Q1;
    hk_point t;

    if (hk_point_mul_gen(c, &s->x, &t) != HK_OK || !hk_point_eq(&t, own) ||
        hk_point_mul(c, other, &s->x, &t) != HK_OK || !hk_point_eq(&t, &s->Q))
        return HK_ERR_SHARE;
    return HK_OK;
}

/* P1 holds the Paillier key, so it can check ckey = Enc_N(x1) itself. */
static hk_err hk_share_check_ckey(const hk_share *s)
{
    unsigned char b[HK_SCALAR_LEN];
    BIGNUM *d = BN_secure_new();
    hk_err e;

    if (d == NULL)
        return HK_ERR_NOMEM;
    if ((e = hk_paillier_dec(s->sk, s->ckey, d)) == HK_OK)
        e = BN_num_bits(d) <= 8 * HK_SCALAR_LEN &&
                    BN_bn2binpad(d, b, HK_SCALAR_LEN) == HK_SCALAR_LEN &&
                    CRYPTO_memcmp(b, s->x.b, HK_SCALAR_LEN) == 0
                ? HK_OK
                : HK_ERR_SHARE;
    OPENSSL_cleanse(b, sizeof(b));
    BN_clear_free(d);
    return e;
}

static hk_err hk_share_get_paillier(hk_msg *m, hk_share *s, int pbits)
{
    size_t nb = hk_width(pbits);
    BIGNUM *n = NULL, *p = NULL, *q = NULL;
    hk_err e;

    if ((e = hk_msg_get_bn(m, "N", nb, &n)) != HK_OK ||
        (e = hk_msg_get_bn(m, "ckey", 2 * nb, &s->ckey)) != HK_OK)
        goto done;
    e = HK_ERR_SHARE;
    if (hk_paillier_pk_new(n, pbits, &s->pk) != HK_OK ||
        hk_paillier_ct_check(s->pk, s->ckey) != HK_OK)
        goto done;
    if (s->role == HK_ROLE_P1) {
        if ((e = hk_msg_get_bn(m, "p", nb / 2, &p)) != HK_OK ||
            (e = hk_msg_get_bn(m, "q", nb / 2, &q)) != HK_OK)
            goto done;
        e = HK_ERR_SHARE;
        if (hk_paillier_sk_from_primes(p, q, pbits, &s->sk) != HK_OK ||
            BN_cmp(hk_paillier_n(hk_paillier_sk_pk(s->sk)), n) != 0 ||
            hk_share_check_ckey(s) != HK_OK)
            goto done;
    }
    e = HK_OK;
done:
    BN_free(n);
    BN_clear_free(p);
    BN_clear_free(q);
    return e;
}

hk_err hk_share_decode(const unsigned char *in, size_t len, hk_share **out)
{
    hk_share *s = NULL;
    hk_curve *c = NULL;
    hk_msg *m = NULL;
    int pbits = 0;
    hk_err e;

    if (in == NULL || out == NULL)
        return HK_ERR_ARG;
    *out = NULL;
    if ((e = hk_msg_parse(in, len, HK_RECORD_MAX, "share", NULL, NULL, &m)) !=
        HK_OK)
        return e;
    e = HK_ERR_NOMEM;
    if ((s = OPENSSL_zalloc(sizeof(*s))) == NULL)
        goto done;
    if ((e = hk_msg_get_bytes(m, "kid", s->kid, HK_ID_LEN)) != HK_OK ||
        (e = hk_share_get_header(m, s, &pbits)) != HK_OK ||
        (e = hk_curve_new(s->curve, &c)) != HK_OK ||
        (e = hk_msg_get_scalar(m, c, "x", &s->x)) != HK_OK ||
        (e = hk_msg_get_point(m, c, "Q", &s->Q)) != HK_OK ||
        (e = hk_msg_get_point(m, c, "Q1", &s->Q1)) != HK_OK ||
        (e = hk_msg_get_point(m, c, "Q2", &s->Q2)) != HK_OK ||
        (e = hk_msg_get_bytes(m, "setup", s->rped_fp, HK_HASH_LEN)) != HK_OK ||
        (e = hk_share_get_paillier(m, s, pbits)) != HK_OK ||
        (e = hk_msg_finish(m)) != HK_OK ||
        (e = hk_share_check_points(c, s)) != HK_OK)
        goto done;
    *out = s;
    s = NULL;
done:
    if (e == HK_ERR_POINT || e == HK_ERR_SCALAR || e == HK_ERR_CURVE)
        e = HK_ERR_SHARE;
    hk_share_free(s);
    hk_curve_free(c);
    hk_msg_free(m);
    return e;
}
