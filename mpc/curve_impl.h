/* Private to mpc/curve*.c: the curve context and the back-end entry points.
 * Public inputs and outputs are checked in curve.c; the back ends assume
 * valid arguments (scalars < q, points valid). */
#ifndef HK_CURVE_IMPL_H
#define HK_CURVE_IMPL_H

#include <openssl/ec.h>
#include <secp256k1.h>

#include "mpc/ct.h"
#include "mpc/curve.h"

struct hk_curve {
    hk_curve_id id;
    BIGNUM *q;         /* group order */
    BIGNUM *q_minus_2; /* Fermat exponent for inversion */
    BN_MONT_CTX *mont; /* Montgomery context of q (at the first inversion) */
    BN_CTX *bn;
    secp256k1_context *k1; /* secp256k1 only */
    EC_GROUP *group;       /* P-256 only */
    hk_ct_mod *ct_q;       /* P-256 only: constant-time arithmetic mod q */
};

hk_err hk_k1_init(hk_curve *c);
hk_err hk_k1_scalar_add(hk_curve *c, const hk_scalar *a, const hk_scalar *b,
                        hk_scalar *out);
hk_err hk_k1_scalar_mul(hk_curve *c, const hk_scalar *a, const hk_scalar *b,
                        hk_scalar *out);
hk_err hk_k1_point_parse(hk_curve *c, const unsigned char *in, hk_point *out);
hk_err hk_k1_mul_gen(hk_curve *c, const hk_scalar *k, hk_point *out);
hk_err hk_k1_mul(hk_curve *c, const hk_point *p, const hk_scalar *k,
                 hk_point *out);
hk_err hk_k1_add(hk_curve *c, const hk_point *p, const hk_point *q,
                 hk_point *out);
hk_err hk_k1_mul_gen_add_pub(hk_curve *c, size_t n, const hk_scalar *a,
                             const hk_point *P, size_t np,
                             const unsigned char *m, hk_point *out);
hk_err hk_k1_uncompressed(hk_curve *c, const hk_point *p, unsigned char *out);
hk_err hk_k1_verify(hk_curve *c, const hk_point *q, const hk_scalar *m,
                    const hk_scalar *r, const hk_scalar *s);

hk_err hk_p256_init(hk_curve *c);
hk_err hk_p256_scalar_add(hk_curve *c, const hk_scalar *a, const hk_scalar *b,
                          hk_scalar *out);
hk_err hk_p256_scalar_mul(hk_curve *c, const hk_scalar *a, const hk_scalar *b,
                          hk_scalar *out);
hk_err hk_p256_point_parse(hk_curve *c, const unsigned char *in, hk_point *out);
hk_err hk_p256_mul_gen(hk_curve *c, const hk_scalar *k, hk_point *out);
hk_err hk_p256_mul(hk_curve *c, const hk_point *p, const hk_scalar *k,
                   hk_point *out);
hk_err hk_p256_add(hk_curve *c, const hk_point *p, const hk_point *q,
                   hk_point *out);
hk_err hk_p256_mul_gen_add_pub(hk_curve *c, size_t n, const hk_scalar *a,
                               const hk_point *P, size_t np,
                               const unsigned char *m, hk_point *out);
hk_err hk_p256_uncompressed(hk_curve *c, const hk_point *p, unsigned char *out);
hk_err hk_p256_verify(hk_curve *c, const hk_point *q, const hk_scalar *m,
                      const hk_scalar *r, const hk_scalar *s);

#endif
