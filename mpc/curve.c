/* Curve interface: argument checks, shared scalar code, dispatch. */
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "common/libctx.h"
#include "mpc/curve_impl.h"

hk_err hk_curve_from_name(const char *name, hk_curve_id *out)
{
    if (name == NULL || out == NULL)
        return HK_ERR_ARG;
    if (strcmp(name, "secp256k1") == 0)
        *out = HK_CURVE_SECP256K1;
    else if (strcmp(name, "p256") == 0)
        *out = HK_CURVE_P256;
    else
        return HK_ERR_CURVE;
    return HK_OK;
}

const char *hk_curve_name(hk_curve_id id)
{
    switch (id) {
    case HK_CURVE_SECP256K1:
        return "secp256k1";
    case HK_CURVE_P256:
        return "p256";
    }
    return NULL;
}

hk_err hk_curve_new(hk_curve_id id, hk_curve **out)
{
    hk_curve *c;
    hk_err e;

    if (out == NULL)
        return HK_ERR_ARG;
    *out = NULL;
    if (hk_curve_name(id) == NULL)
        return HK_ERR_CURVE;
    c = OPENSSL_zalloc(sizeof(*c));
    if (c == NULL)
        return HK_ERR_NOMEM;
    c->id = id;
    c->bn = BN_CTX_new_ex(hk_libctx());
    c->q = BN_new();
    c->q_minus_2 = BN_new();
    e = HK_ERR_NOMEM;
    if (c->bn == NULL || c->q == NULL || c->q_minus_2 == NULL)
        goto done;
    e = id == HK_CURVE_SECP256K1 ? hk_k1_init(c) : hk_p256_init(c);
    if (e != HK_OK)
        goto done;
    e = HK_ERR_CRYPTO;
    if (!BN_copy(c->q_minus_2, c->q) || !BN_sub_word(c->q_minus_2, 2))
        goto done;
    *out = c;
    c = NULL;
    e = HK_OK;
done:
    hk_curve_free(c);
    return e;
}

void hk_curve_free(hk_curve *c)
{
    if (c == NULL)
        return;
    BN_free(c->q);
    BN_free(c->q_minus_2);
    BN_MONT_CTX_free(c->mont);
    BN_CTX_free(c->bn);
    if (c->k1 != NULL)
        secp256k1_context_destroy(c->k1);
    EC_GROUP_free(c->group);
    hk_ct_mod_free(c->ct_q);
    OPENSSL_free(c);
}

hk_curve_id hk_curve_get_id(const hk_curve *c) { return c->id; }

const BIGNUM *hk_curve_order(const hk_curve *c) { return c->q; }

int hk_scalar_is_zero(const hk_scalar *s)
{
    unsigned char acc = 0;
    size_t i;

    for (i = 0; i < HK_SCALAR_LEN; i++)
        acc |= s->b[i];
    return acc == 0;
}

int hk_scalar_eq(const hk_scalar *a, const hk_scalar *b)
{
    return CRYPTO_memcmp(a->b, b->b, HK_SCALAR_LEN) == 0;
}

hk_err hk_scalar_from_bn(hk_curve *c, const BIGNUM *bn, hk_scalar *out)
{
    BIGNUM *t;
    hk_err e = HK_ERR_CRYPTO;

    if (c == NULL || bn == NULL || out == NULL || BN_is_negative(bn))
        return HK_ERR_ARG;
    BN_CTX_start(c->bn);
    t = BN_CTX_get(c->bn);
    if (t == NULL)
        goto done;
    BN_set_flags(t, BN_FLG_CONSTTIME);
    if (!BN_nnmod(t, bn, c->q, c->bn) ||
        BN_bn2binpad(t, out->b, HK_SCALAR_LEN) != HK_SCALAR_LEN)
        goto done;
    e = HK_OK;
done:
    BN_clear(t);
    BN_CTX_end(c->bn);
    return e;
}

hk_err hk_scalar_to_bn(const hk_scalar *s, BIGNUM **out)
{
    BIGNUM *bn;

    if (s == NULL || out == NULL)
        return HK_ERR_ARG;
    bn = BN_secure_new();
    if (bn == NULL)
        return HK_ERR_NOMEM;
    BN_set_flags(bn, BN_FLG_CONSTTIME);
    if (BN_bin2bn(s->b, HK_SCALAR_LEN, bn) == NULL) {
        BN_clear_free(bn);
        return HK_ERR_CRYPTO;
    }
    *out = bn;
    return HK_OK;
}

/* Strict range check 0 < v < q on a 32-byte big-endian value. Both orders
 * are 256-bit so a 32-byte input is never truncated. */
static hk_err hk_scalar_check_range(hk_curve *c, const unsigned char *in)
{
    BIGNUM *t;
    hk_err e = HK_ERR_CRYPTO;

    BN_CTX_start(c->bn);
    t = BN_CTX_get(c->bn);
    if (t == NULL || BN_bin2bn(in, HK_SCALAR_LEN, t) == NULL)
        goto done;
    e = (BN_is_zero(t) || BN_cmp(t, c->q) >= 0) ? HK_ERR_SCALAR : HK_OK;
done:
    BN_clear(t);
    BN_CTX_end(c->bn);
    return e;
}

hk_err hk_scalar_parse(hk_curve *c, const unsigned char *in, size_t len,
                       hk_scalar *out)
{
    hk_err e;

    if (c == NULL || in == NULL || out == NULL)
        return HK_ERR_ARG;
    if (len != HK_SCALAR_LEN)
        return HK_ERR_SCALAR;
    if ((e = hk_scalar_check_range(c, in)) != HK_OK)
        return e;
    memcpy(out->b, in, HK_SCALAR_LEN);
    return HK_OK;
}

hk_err hk_scalar_random(hk_curve *c, hk_scalar *out)
{
    BIGNUM *t;
    hk_err e = HK_ERR_RAND;

    if (c == NULL || out == NULL)
        return HK_ERR_ARG;
    BN_CTX_start(c->bn);
    t = BN_CTX_get(c->bn);
    if (t == NULL)
        goto done;
    do {
        if (!hk_bn_priv_rand_range(t, c->q))
            goto done;
    } while (BN_is_zero(t));
    e = BN_bn2binpad(t, out->b, HK_SCALAR_LEN) == HK_SCALAR_LEN ? HK_OK
                                                                : HK_ERR_CRYPTO;
done:
    BN_clear(t);
    BN_CTX_end(c->bn);
    return e;
}

hk_err hk_scalar_add(hk_curve *c, const hk_scalar *a, const hk_scalar *b,
                     hk_scalar *out)
{
    if (c == NULL || a == NULL || b == NULL || out == NULL)
        return HK_ERR_ARG;
    if (c->id == HK_CURVE_SECP256K1)
        return hk_k1_scalar_add(c, a, b, out);
    return hk_p256_scalar_add(c, a, b, out);
}

hk_err hk_scalar_mul(hk_curve *c, const hk_scalar *a, const hk_scalar *b,
                     hk_scalar *out)
{
    if (c == NULL || a == NULL || b == NULL || out == NULL)
        return HK_ERR_ARG;
    if (c->id == HK_CURVE_SECP256K1)
        return hk_k1_scalar_mul(c, a, b, out);
    return hk_p256_scalar_mul(c, a, b, out);
}

hk_err hk_scalar_neg(hk_curve *c, const hk_scalar *a, hk_scalar *out)
{
    BIGNUM *t = NULL;
    hk_err e;

    if (c == NULL || a == NULL || out == NULL)
        return HK_ERR_ARG;
    /* q - a, computed as (q - a) mod q so that -0 = 0. */
    BN_CTX_start(c->bn);
    e = HK_ERR_CRYPTO;
    t = BN_CTX_get(c->bn);
    if (t == NULL)
        goto done;
    BN_set_flags(t, BN_FLG_CONSTTIME);
    if (BN_bin2bn(a->b, HK_SCALAR_LEN, t) == NULL || !BN_sub(t, c->q, t))
        goto done;
    e = hk_scalar_from_bn(c, t, out);
done:
    BN_clear(t);
    BN_CTX_end(c->bn);
    return e;
}

/* The Montgomery context of q, made at the context's first inversion:
 * most contexts never invert (a stored key's check, a record's decode),
 * and making it is most of hk_curve_new's cost otherwise. */
static BN_MONT_CTX *hk_curve_mont(hk_curve *c)
{
    BN_MONT_CTX *m;

    if (c->mont != NULL)
        return c->mont;
    if ((m = BN_MONT_CTX_new()) == NULL || !BN_MONT_CTX_set(m, c->q, c->bn)) {
        BN_MONT_CTX_free(m);
        return NULL;
    }
    return c->mont = m;
}

hk_err hk_scalar_inv(hk_curve *c, const hk_scalar *a, hk_scalar *out)
{
    BIGNUM *t, *r;
    hk_err e = HK_ERR_CRYPTO;

    if (c == NULL || a == NULL || out == NULL)
        return HK_ERR_ARG;
    if (hk_scalar_is_zero(a))
        return HK_ERR_SCALAR;
    if (hk_curve_mont(c) == NULL)
        return HK_ERR_CRYPTO;
    BN_CTX_start(c->bn);
    t = BN_CTX_get(c->bn);
    r = BN_CTX_get(c->bn);
    if (r == NULL)
        goto done;
    BN_set_flags(t, BN_FLG_CONSTTIME);
    BN_set_flags(r, BN_FLG_CONSTTIME);
    /* q is prime: a^(q-2) = a^-1, with a constant-time ladder. */
    if (BN_bin2bn(a->b, HK_SCALAR_LEN, t) == NULL ||
        !BN_mod_exp_mont_consttime(r, t, c->q_minus_2, c->q, c->bn, c->mont) ||
        BN_bn2binpad(r, out->b, HK_SCALAR_LEN) != HK_SCALAR_LEN)
        goto done;
    e = HK_OK;
done:
    BN_clear(t);
    BN_clear(r);
    BN_CTX_end(c->bn);
    return e;
}

hk_err hk_scalar_low_s(hk_curve *c, const hk_scalar *s, hk_scalar *out)
{
    hk_scalar neg;
    hk_err e;

    if (c == NULL || s == NULL || out == NULL)
        return HK_ERR_ARG;
    if ((e = hk_scalar_neg(c, s, &neg)) != HK_OK)
        return e;
    /* s is public here (it is about to be published), memcmp is fine. */
    if (memcmp(neg.b, s->b, HK_SCALAR_LEN) < 0)
        *out = neg;
    else
        *out = *s;
    return HK_OK;
}

hk_err hk_scalar_from_digest(hk_curve *c, const unsigned char *dig, size_t len,
                             hk_scalar *out)
{
    BIGNUM *t;
    hk_err e = HK_ERR_CRYPTO;
    int qbits;

    if (c == NULL || dig == NULL || out == NULL)
        return HK_ERR_ARG;
    if (len < 1 || len > 64)
        return HK_ERR_ARG;
    qbits = BN_num_bits(c->q);
    BN_CTX_start(c->bn);
    t = BN_CTX_get(c->bn);
    if (t == NULL || BN_bin2bn(dig, (int)len, t) == NULL)
        goto done;
    /* Keep the leftmost qbits bits of the digest (SEC1 4.1.3 step 5). */
    if ((int)len * 8 > qbits && !BN_rshift(t, t, (int)len * 8 - qbits))
        goto done;
    e = hk_scalar_from_bn(c, t, out);
done:
    BN_CTX_end(c->bn);
    return e;
}

hk_err hk_point_parse(hk_curve *c, const unsigned char *in, size_t len,
                      hk_point *out)
{
    if (c == NULL || in == NULL || out == NULL)
        return HK_ERR_ARG;
    if (len != HK_POINT_LEN || (in[0] != 2 && in[0] != 3))
        return HK_ERR_POINT;
    if (c->id == HK_CURVE_SECP256K1)
        return hk_k1_point_parse(c, in, out);
    return hk_p256_point_parse(c, in, out);
}

hk_err hk_point_mul_gen(hk_curve *c, const hk_scalar *k, hk_point *out)
{
    if (c == NULL || k == NULL || out == NULL)
        return HK_ERR_ARG;
    if (hk_scalar_is_zero(k))
        return HK_ERR_SCALAR;
    if (c->id == HK_CURVE_SECP256K1)
        return hk_k1_mul_gen(c, k, out);
    return hk_p256_mul_gen(c, k, out);
}

hk_err hk_point_mul(hk_curve *c, const hk_point *p, const hk_scalar *k,
                    hk_point *out)
{
    if (c == NULL || p == NULL || k == NULL || out == NULL)
        return HK_ERR_ARG;
    if (hk_scalar_is_zero(k))
        return HK_ERR_SCALAR;
    if (c->id == HK_CURVE_SECP256K1)
        return hk_k1_mul(c, p, k, out);
    return hk_p256_mul(c, p, k, out);
}

hk_err hk_point_add(hk_curve *c, const hk_point *p, const hk_point *q,
                    hk_point *out)
{
    if (c == NULL || p == NULL || q == NULL || out == NULL)
        return HK_ERR_ARG;
    if (c->id == HK_CURVE_SECP256K1)
        return hk_k1_add(c, p, q, out);
    return hk_p256_add(c, p, q, out);
}

hk_err hk_point_mul_gen_add_pub(hk_curve *c, size_t n, const hk_scalar *a,
                                const hk_point *P, size_t np,
                                const unsigned char *m, hk_point *out)
{
    size_t i;

    if (c == NULL || a == NULL || (P == NULL && np > 0) || m == NULL ||
        out == NULL || np > 256)
        return HK_ERR_ARG;
    for (i = 0; i < n; i++)
        if (m[i] >= np || hk_scalar_is_zero(&a[i]))
            return m[i] >= np ? HK_ERR_ARG : HK_ERR_SCALAR;
    if (c->id == HK_CURVE_SECP256K1)
        return hk_k1_mul_gen_add_pub(c, n, a, P, np, m, out);
    return hk_p256_mul_gen_add_pub(c, n, a, P, np, m, out);
}

int hk_point_eq(const hk_point *a, const hk_point *b)
{
    return memcmp(a->b, b->b, HK_POINT_LEN) == 0;
}

hk_err hk_point_uncompressed(hk_curve *c, const hk_point *p,
                             unsigned char out[65])
{
    if (c == NULL || p == NULL || out == NULL)
        return HK_ERR_ARG;
    if (c->id == HK_CURVE_SECP256K1)
        return hk_k1_uncompressed(c, p, out);
    return hk_p256_uncompressed(c, p, out);
}

hk_err hk_point_x_mod_q(hk_curve *c, const hk_point *p, hk_scalar *r)
{
    BIGNUM *x;
    hk_err e = HK_ERR_CRYPTO;

    if (c == NULL || p == NULL || r == NULL)
        return HK_ERR_ARG;
    BN_CTX_start(c->bn);
    x = BN_CTX_get(c->bn);
    if (x == NULL || BN_bin2bn(p->b + 1, 32, x) == NULL)
        goto done;
    e = hk_scalar_from_bn(c, x, r);
done:
    BN_CTX_end(c->bn);
    return e;
}

hk_err hk_ecdsa_verify(hk_curve *c, const hk_point *q,
                       const unsigned char *digest, size_t dlen,
                       const hk_scalar *r, const hk_scalar *s)
{
    hk_scalar m;
    hk_err e;

    if (c == NULL || q == NULL || digest == NULL || r == NULL || s == NULL)
        return HK_ERR_ARG;
    if ((e = hk_scalar_from_digest(c, digest, dlen, &m)) != HK_OK)
        return e;
    if (hk_scalar_is_zero(r) || hk_scalar_is_zero(s))
        return HK_ERR_SIG_ABORT;
    if (c->id == HK_CURVE_SECP256K1)
        return hk_k1_verify(c, q, &m, r, s);
    return hk_p256_verify(c, q, &m, r, s);
}
