/* secp256k1 back end on libsecp256k1 0.2.0.
 *
 * Secret scalar multiplication of an arbitrary point uses secp256k1_ecdh
 * (constant-time) with a hash callback that copies x and y out, because
 * secp256k1_ec_pubkey_tweak_mul is variable-time (DESIGN.md section 7).
 * Scalar add/mul use the seckey tweak functions (constant-time); they refuse
 * zero operands and results, which are handled here explicitly. */
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <secp256k1_ecdh.h>

#include "common/libctx.h"
#include "mpc/curve_impl.h"

static const unsigned char hk_k1_order[32] = {
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xfe, 0xba, 0xae, 0xdc, 0xe6, 0xaf, 0x48,
    0xa0, 0x3b, 0xbf, 0xd2, 0x5e, 0x8c, 0xd0, 0x36, 0x41, 0x41};

hk_err hk_k1_init(hk_curve *c)
{
    unsigned char seed[32];
    hk_err e = HK_ERR_CRYPTO;

    c->k1 = secp256k1_context_create(SECP256K1_CONTEXT_NONE);
    if (c->k1 == NULL)
        return HK_ERR_NOMEM;
    if (!hk_rand_priv_bytes(seed, sizeof(seed))) {
        e = HK_ERR_RAND;
        goto done;
    }
    /* Blinding of the generator multiplication against side channels. */
    if (!secp256k1_context_randomize(c->k1, seed))
        goto done;
    if (BN_bin2bn(hk_k1_order, 32, c->q) == NULL)
        goto done;
    e = HK_OK;
done:
    OPENSSL_cleanse(seed, sizeof(seed));
    return e;
}

hk_err hk_k1_scalar_add(hk_curve *c, const hk_scalar *a, const hk_scalar *b,
                        hk_scalar *out)
{
    hk_scalar t = *a;

    if (hk_scalar_is_zero(a)) {
        *out = *b;
        return HK_OK;
    }
    /* A zero result makes the call fail; that result is zero. */
    if (!secp256k1_ec_seckey_tweak_add(c->k1, t.b, b->b))
        memset(t.b, 0, sizeof(t.b));
    *out = t;
    OPENSSL_cleanse(&t, sizeof(t));
    return HK_OK;
}

hk_err hk_k1_scalar_mul(hk_curve *c, const hk_scalar *a, const hk_scalar *b,
                        hk_scalar *out)
{
    hk_scalar t = *a;
    hk_err e = HK_OK;

    if (hk_scalar_is_zero(a) || hk_scalar_is_zero(b))
        memset(t.b, 0, sizeof(t.b));
    else if (!secp256k1_ec_seckey_tweak_mul(c->k1, t.b, b->b))
        e = HK_ERR_CRYPTO;
    if (e == HK_OK)
        *out = t;
    OPENSSL_cleanse(&t, sizeof(t));
    return e;
}

static hk_err hk_k1_to_point(hk_curve *c, const secp256k1_pubkey *pk,
                             hk_point *out)
{
    size_t len = HK_POINT_LEN;

    if (!secp256k1_ec_pubkey_serialize(c->k1, out->b, &len, pk,
                                       SECP256K1_EC_COMPRESSED) ||
        len != HK_POINT_LEN)
        return HK_ERR_CRYPTO;
    return HK_OK;
}

static hk_err hk_k1_from_point(hk_curve *c, const hk_point *p,
                               secp256k1_pubkey *pk)
{
    return secp256k1_ec_pubkey_parse(c->k1, pk, p->b, HK_POINT_LEN)
               ? HK_OK
               : HK_ERR_POINT;
}

hk_err hk_k1_point_parse(hk_curve *c, const unsigned char *in, hk_point *out)
{
    secp256k1_pubkey pk;

    if (!secp256k1_ec_pubkey_parse(c->k1, &pk, in, HK_POINT_LEN))
        return HK_ERR_POINT;
    return hk_k1_to_point(c, &pk, out);
}

hk_err hk_k1_mul_gen(hk_curve *c, const hk_scalar *k, hk_point *out)
{
    secp256k1_pubkey pk;

    if (!secp256k1_ec_pubkey_create(c->k1, &pk, k->b))
        return HK_ERR_SCALAR;
    return hk_k1_to_point(c, &pk, out);
}

/* ECDH "hash" that returns the compressed shared point itself. */
static int hk_k1_ecdh_copy(unsigned char *output, const unsigned char *x32,
                           const unsigned char *y32, void *data)
{
    (void)data;
    output[0] = (unsigned char)(2 | (y32[31] & 1));
    memcpy(output + 1, x32, 32);
    return 1;
}

hk_err hk_k1_mul(hk_curve *c, const hk_point *p, const hk_scalar *k,
                 hk_point *out)
{
    secp256k1_pubkey pk;
    hk_err e;

    if ((e = hk_k1_from_point(c, p, &pk)) != HK_OK)
        return e;
    if (!secp256k1_ecdh(c->k1, out->b, &pk, k->b, hk_k1_ecdh_copy, NULL))
        return HK_ERR_SCALAR;
    return HK_OK;
}

hk_err hk_k1_add(hk_curve *c, const hk_point *p, const hk_point *q,
                 hk_point *out)
{
    secp256k1_pubkey a, b, sum;
    const secp256k1_pubkey *ins[2] = {&a, &b};
    hk_err e;

    if ((e = hk_k1_from_point(c, p, &a)) != HK_OK ||
        (e = hk_k1_from_point(c, q, &b)) != HK_OK)
        return e;
    if (!secp256k1_ec_pubkey_combine(c->k1, &sum, ins, 2))
        return HK_ERR_POINT;
    return hk_k1_to_point(c, &sum, out);
}

/* libsecp256k1 keeps public keys affine: each sum costs one inversion in
 * combine, and the points are parsed (square roots) once. */
hk_err hk_k1_mul_gen_add_pub(hk_curve *c, size_t n, const hk_scalar *a,
                             const hk_point *P, size_t np,
                             const unsigned char *m, hk_point *out)
{
    secp256k1_pubkey tab[256], aG, sum;
    const secp256k1_pubkey *ins[2] = {&aG, NULL};
    size_t i;
    hk_err e;

    for (i = 1; i < np; i++)
        if ((e = hk_k1_from_point(c, &P[i], &tab[i])) != HK_OK)
            return e;
    for (i = 0; i < n; i++) {
        if (!secp256k1_ec_pubkey_create(c->k1, &aG, a[i].b))
            return HK_ERR_SCALAR;
        ins[1] = &tab[m[i]];
        if (m[i] != 0 && !secp256k1_ec_pubkey_combine(c->k1, &sum, ins, 2))
            return HK_ERR_POINT;
        if ((e = hk_k1_to_point(c, m[i] != 0 ? &sum : &aG, &out[i])) != HK_OK)
            return e;
    }
    return HK_OK;
}

hk_err hk_k1_uncompressed(hk_curve *c, const hk_point *p, unsigned char *out)
{
    secp256k1_pubkey pk;
    size_t len = HK_POINT_UNCOMPRESSED_LEN;
    hk_err e;

    if ((e = hk_k1_from_point(c, p, &pk)) != HK_OK)
        return e;
    if (!secp256k1_ec_pubkey_serialize(c->k1, out, &len, &pk,
                                       SECP256K1_EC_UNCOMPRESSED))
        return HK_ERR_CRYPTO;
    return HK_OK;
}

hk_err hk_k1_verify(hk_curve *c, const hk_point *q, const hk_scalar *m,
                    const hk_scalar *r, const hk_scalar *s)
{
    secp256k1_pubkey pk;
    secp256k1_ecdsa_signature sig;
    unsigned char rs[64];

    if (hk_k1_from_point(c, q, &pk) != HK_OK)
        return HK_ERR_SIG_ABORT;
    memcpy(rs, r->b, 32);
    memcpy(rs + 32, s->b, 32);
    if (!secp256k1_ecdsa_signature_parse_compact(c->k1, &sig, rs))
        return HK_ERR_SIG_ABORT;
    /* Requires low-S: the signer normalises before verifying. */
    if (secp256k1_ecdsa_verify(c->k1, &sig, m->b, &pk) != 1)
        return HK_ERR_SIG_ABORT;
    return HK_OK;
}
