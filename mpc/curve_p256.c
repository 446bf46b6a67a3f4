#define OPENSSL_SUPPRESS_DEPRECATED /* EC_KEY for raw ECDSA verify */
/* P-256 back end on OpenSSL EC.
 *
 * Secret scalars are BIGNUMs flagged BN_FLG_CONSTTIME; EC_POINT_mul with a
 * secret scalar runs OpenSSL's constant-time ladder (or ecp_nistz256). */
#include <string.h>

#include <openssl/ecdsa.h>
#include <openssl/obj_mac.h>

#include "mpc/curve_impl.h"

hk_err hk_p256_init(hk_curve *c)
{
    c->group = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1);
    if (c->group == NULL)
        return HK_ERR_CRYPTO;
    if (!EC_GROUP_get_order(c->group, c->q, c->bn))
        return HK_ERR_CRYPTO;
    return hk_ct_mod_new(c->q, &c->ct_q);
}

/* Scalar sums and products hold secrets (x1*r in a refresh, k^-1 * m in a
 * signature, ...). BN_mod_add and BN_mod_mul are not constant time (a
 * branch on the sign of a difference; value-dependent Karatsuba
 * branches), so they run on fixed-width limbs in mpc/ct.c: a masked
 * conditional subtraction for the sum, two Montgomery multiplications for
 * the product. The back ends get scalars already below q. */
hk_err hk_p256_scalar_add(hk_curve *c, const hk_scalar *a, const hk_scalar *b,
                          hk_scalar *out)
{
    return hk_ct_mod_add_be(c->ct_q, a->b, b->b, out->b);
}

hk_err hk_p256_scalar_mul(hk_curve *c, const hk_scalar *a, const hk_scalar *b,
                          hk_scalar *out)
{
    return hk_ct_mod_mul_be(c->ct_q, a->b, b->b, out->b);
}

static hk_err hk_p256_encode(hk_curve *c, const EC_POINT *pt, hk_point *out)
{
    if (EC_POINT_is_at_infinity(c->group, pt))
        return HK_ERR_POINT;
    if (EC_POINT_point2oct(c->group, pt, POINT_CONVERSION_COMPRESSED, out->b,
                           HK_POINT_LEN, c->bn) != HK_POINT_LEN)
        return HK_ERR_CRYPTO;
    return HK_OK;
}

/* Decodes a point already known valid (or validates it: oct2point checks
 * that the point is on the curve). */
static hk_err hk_p256_decode(hk_curve *c, const unsigned char *in,
                             EC_POINT **out)
{
    EC_POINT *pt = EC_POINT_new(c->group);

    if (pt == NULL)
        return HK_ERR_NOMEM;
    if (!EC_POINT_oct2point(c->group, pt, in, HK_POINT_LEN, c->bn) ||
        EC_POINT_is_at_infinity(c->group, pt) ||
        EC_POINT_is_on_curve(c->group, pt, c->bn) != 1) {
        EC_POINT_free(pt);
        return HK_ERR_POINT;
    }
    *out = pt;
    return HK_OK;
}

hk_err hk_p256_point_parse(hk_curve *c, const unsigned char *in, hk_point *out)
{
    EC_POINT *pt = NULL;
    hk_err e;

    if ((e = hk_p256_decode(c, in, &pt)) != HK_OK)
        return e;
    e = hk_p256_encode(c, pt, out);
    EC_POINT_free(pt);
    return e;
}

/* out = k * (P or G when p == NULL). */
static hk_err hk_p256_mul_any(hk_curve *c, const hk_point *p,
                              const hk_scalar *k, hk_point *out)
{
    EC_POINT *in = NULL, *res = NULL;
    BIGNUM *kb = NULL;
    hk_err e;

    if (p != NULL && (e = hk_p256_decode(c, p->b, &in)) != HK_OK)
        return e;
    e = HK_ERR_CRYPTO;
    res = EC_POINT_new(c->group);
    if (res == NULL || hk_scalar_to_bn(k, &kb) != HK_OK)
        goto done;
    if (!EC_POINT_mul(c->group, res, p == NULL ? kb : NULL, in,
                      p == NULL ? NULL : kb, c->bn))
        goto done;
    e = hk_p256_encode(c, res, out);
done:
    BN_clear_free(kb);
    EC_POINT_free(in);
    EC_POINT_clear_free(res);
    return e;
}

hk_err hk_p256_mul_gen(hk_curve *c, const hk_scalar *k, hk_point *out)
{
    return hk_p256_mul_any(c, NULL, k, out);
}

hk_err hk_p256_mul(hk_curve *c, const hk_point *p, const hk_scalar *k,
                   hk_point *out)
{
    return hk_p256_mul_any(c, p, k, out);
}

hk_err hk_p256_add(hk_curve *c, const hk_point *p, const hk_point *q,
                   hk_point *out)
{
    EC_POINT *a = NULL, *b = NULL;
    hk_err e;

    if ((e = hk_p256_decode(c, p->b, &a)) != HK_OK ||
        (e = hk_p256_decode(c, q->b, &b)) != HK_OK)
        goto done;
    e = HK_ERR_CRYPTO;
    if (!EC_POINT_add(c->group, a, a, b, c->bn))
        goto done;
    e = hk_p256_encode(c, a, out);
done:
    EC_POINT_free(a);
    EC_POINT_free(b);
    return e;
}

static void hk_p256_free_all(EC_POINT **pts, size_t n)
{
    size_t i;

    for (i = 0; pts != NULL && i < n; i++)
        EC_POINT_free(pts[i]);
    OPENSSL_free(pts);
}

/* The table points decoded once (a decode is a square root); each sum
 * is one fixed-base multiplication and one addition. */
hk_err hk_p256_mul_gen_add_pub(hk_curve *c, size_t n, const hk_scalar *a,
                               const hk_point *P, size_t np,
                               const unsigned char *m, hk_point *out)
{
    EC_POINT **tab = OPENSSL_zalloc(sizeof(*tab) * (np > 0 ? np : 1));
    EC_POINT **r = OPENSSL_zalloc(sizeof(*r) * (n > 0 ? n : 1));
    BIGNUM *k = BN_new();
    size_t i;
    hk_err e = HK_ERR_NOMEM;

    if (tab == NULL || r == NULL || k == NULL)
        goto done;
    for (i = 1; i < np; i++)
        if ((e = hk_p256_decode(c, P[i].b, &tab[i])) != HK_OK)
            goto done;
    for (i = 0; i < n; i++) {
        e = HK_ERR_CRYPTO;
        if ((r[i] = EC_POINT_new(c->group)) == NULL ||
            BN_bin2bn(a[i].b, HK_SCALAR_LEN, k) == NULL ||
            !EC_POINT_mul(c->group, r[i], k, NULL, NULL, c->bn) ||
            (m[i] != 0 &&
             !EC_POINT_add(c->group, r[i], r[i], tab[m[i]], c->bn)))
            goto done;
        e = HK_ERR_POINT;
        if (EC_POINT_is_at_infinity(c->group, r[i]))
            goto done;
    }
    for (i = 0; i < n; i++)
        if ((e = hk_p256_encode(c, r[i], &out[i])) != HK_OK)
            goto done;
    e = HK_OK;
done:
    BN_free(k);
    hk_p256_free_all(tab, np);
    hk_p256_free_all(r, n);
    return e;
}

hk_err hk_p256_uncompressed(hk_curve *c, const hk_point *p, unsigned char *out)
{
    EC_POINT *a = NULL;
    hk_err e;

    if ((e = hk_p256_decode(c, p->b, &a)) != HK_OK)
        return e;
    e = EC_POINT_point2oct(c->group, a, POINT_CONVERSION_UNCOMPRESSED, out,
                           HK_POINT_UNCOMPRESSED_LEN,
                           c->bn) == HK_POINT_UNCOMPRESSED_LEN
            ? HK_OK
            : HK_ERR_CRYPTO;
    EC_POINT_free(a);
    return e;
}

hk_err hk_p256_verify(hk_curve *c, const hk_point *q, const hk_scalar *m,
                      const hk_scalar *r, const hk_scalar *s)
{
    EC_KEY *key = NULL;
    EC_POINT *pt = NULL;
    ECDSA_SIG *sig = NULL;
    BIGNUM *rb = NULL, *sb = NULL;
    hk_err e = HK_ERR_SIG_ABORT;

    /* The low-level EC_KEY API is deprecated in 3.0 but remains the direct
     * way to verify a raw (r, s) on a digest; kept in this one place. */
    if (hk_p256_decode(c, q->b, &pt) != HK_OK)
        return HK_ERR_SIG_ABORT;
    key = EC_KEY_new();
    sig = ECDSA_SIG_new();
    rb = BN_bin2bn(r->b, 32, NULL);
    sb = BN_bin2bn(s->b, 32, NULL);
    if (key == NULL || sig == NULL || rb == NULL || sb == NULL ||
        !EC_KEY_set_group(key, c->group) || !EC_KEY_set_public_key(key, pt) ||
        !ECDSA_SIG_set0(sig, rb, sb)) {
        e = HK_ERR_CRYPTO;
        goto done;
    }
    rb = sb = NULL;
    if (ECDSA_do_verify(m->b, 32, sig, key) == 1)
        e = HK_OK;
done:
    BN_free(rb);
    BN_free(sb);
    ECDSA_SIG_free(sig);
    EC_KEY_free(key);
    EC_POINT_free(pt);
    return e;
}
