/* Elliptic-curve interface of the mpc core: one API, two back ends.
 *
 * Owns: scalars mod the group order q and points of secp256k1
 * (libsecp256k1) and P-256 (OpenSSL EC), ECDSA verification, and the
 * digest-to-scalar rule of ECDSA.
 *
 * A scalar is 32 big-endian bytes, always fully reduced mod q. A point is
 * its 33-byte compressed SEC1 encoding and is always a valid curve point
 * other than infinity: every constructor checks that, so a held hk_point is
 * trusted. Multiplications by a secret scalar are constant-time; inversion
 * is constant-time (Fermat with BN_mod_exp_mont_consttime).
 *
 * An hk_curve holds library contexts and scratch space: use one per thread
 * (each protocol state machine owns its own). */
#ifndef HK_CURVE_H
#define HK_CURVE_H

#include <stddef.h>
#include <stdint.h>
#include <openssl/bn.h>

#include "common/error.h"

#define HK_SCALAR_LEN 32
#define HK_POINT_LEN 33
#define HK_POINT_UNCOMPRESSED_LEN 65

typedef enum { HK_CURVE_SECP256K1 = 1, HK_CURVE_P256 = 2 } hk_curve_id;

typedef struct {
    unsigned char b[HK_SCALAR_LEN];
} hk_scalar;

typedef struct {
    unsigned char b[HK_POINT_LEN];
} hk_point;

typedef struct hk_curve hk_curve;

/* Name <-> id: "secp256k1" and "p256". Unknown gives HK_ERR_CURVE / NULL. */
HK_WUR hk_err hk_curve_from_name(const char *name, hk_curve_id *out);
const char *hk_curve_name(hk_curve_id id);

/* Creates a curve context. HK_ERR_CURVE for an unknown id. */
HK_WUR hk_err hk_curve_new(hk_curve_id id, hk_curve **out);
void hk_curve_free(hk_curve *c);
hk_curve_id hk_curve_get_id(const hk_curve *c);
/* The group order q (owned by the curve, do not free). */
const BIGNUM *hk_curve_order(const hk_curve *c);

/* Uniform scalar in [1, q) from the OS CSPRNG. */
HK_WUR hk_err hk_scalar_random(hk_curve *c, hk_scalar *out);
/* Strict parse: exactly 32 bytes, value in [1, q), else HK_ERR_SCALAR. */
HK_WUR hk_err hk_scalar_parse(hk_curve *c, const unsigned char *in, size_t len,
                              hk_scalar *out);
/* Any non-negative BIGNUM reduced mod q (result may be zero). */
HK_WUR hk_err hk_scalar_from_bn(hk_curve *c, const BIGNUM *bn, hk_scalar *out);
/* New BIGNUM with the scalar's value, flagged BN_FLG_CONSTTIME. */
HK_WUR hk_err hk_scalar_to_bn(const hk_scalar *s, BIGNUM **out);
int hk_scalar_is_zero(const hk_scalar *s);
int hk_scalar_eq(const hk_scalar *a, const hk_scalar *b);
/* out = a + b, a * b, -a mod q (out may alias an input). */
HK_WUR hk_err hk_scalar_add(hk_curve *c, const hk_scalar *a, const hk_scalar *b,
                            hk_scalar *out);
HK_WUR hk_err hk_scalar_mul(hk_curve *c, const hk_scalar *a, const hk_scalar *b,
                            hk_scalar *out);
HK_WUR hk_err hk_scalar_neg(hk_curve *c, const hk_scalar *a, hk_scalar *out);
/* out = a^-1 mod q, constant-time. HK_ERR_SCALAR if a is zero. */
HK_WUR hk_err hk_scalar_inv(hk_curve *c, const hk_scalar *a, hk_scalar *out);
/* s mod q as the low-S representative: s or q - s, whichever is <= q/2. */
HK_WUR hk_err hk_scalar_low_s(hk_curve *c, const hk_scalar *s, hk_scalar *out);
/* ECDSA's digest rule: the leftmost bits of the digest (as many as q has),
 * as an integer, reduced mod q. 1 <= len <= 64. */
HK_WUR hk_err hk_scalar_from_digest(hk_curve *c, const unsigned char *dig,
                                    size_t len, hk_scalar *out);

/* Strict parse of a 33-byte compressed point (on curve, not infinity). */
HK_WUR hk_err hk_point_parse(hk_curve *c, const unsigned char *in, size_t len,
                             hk_point *out);
/* out = k*G; k must be non-zero. Constant-time in k. */
HK_WUR hk_err hk_point_mul_gen(hk_curve *c, const hk_scalar *k, hk_point *out);
/* out = k*P; k must be non-zero. Constant-time in k. */
HK_WUR hk_err hk_point_mul(hk_curve *c, const hk_point *p, const hk_scalar *k,
                           hk_point *out);
/* out = P + Q; HK_ERR_POINT if the sum is infinity. Variable-time (public
 * inputs only). */
HK_WUR hk_err hk_point_add(hk_curve *c, const hk_point *p, const hk_point *q,
                           hk_point *out);
/* out[i] = a[i]*G + P[m[i]] for i < n, where m[i] = 0 adds nothing (P[0]
 * is not read) and 0 < m[i] < np names one of the points P[1..np-1]. The
 * points are decoded once and the results share one field inversion, so
 * this is the fast way to recompute many commitments of a cut-and-choose
 * opening (mpc/pve.c). Variable-time: PUBLIC scalars only (a verifier's).
 * Every a[i] non-zero; HK_ERR_POINT if a sum is infinity. */
HK_WUR hk_err hk_point_mul_gen_add_pub(hk_curve *c, size_t n,
                                       const hk_scalar *a, const hk_point *P,
                                       size_t np, const unsigned char *m,
                                       hk_point *out);
int hk_point_eq(const hk_point *a, const hk_point *b);
/* Uncompressed 65-byte SEC1 encoding 04||x||y. */
HK_WUR hk_err hk_point_uncompressed(hk_curve *c, const hk_point *p,
                                    unsigned char out[65]);
/* r = x(P) mod q. */
HK_WUR hk_err hk_point_x_mod_q(hk_curve *c, const hk_point *p, hk_scalar *r);

/* ECDSA verification of (r, s) on digest scalar m for public key Q with the
 * curve's reference library: libsecp256k1 (which requires low-S) or
 * OpenSSL. Returns HK_OK or HK_ERR_SIG_ABORT. */
HK_WUR hk_err hk_ecdsa_verify(hk_curve *c, const hk_point *q,
                              const unsigned char *digest, size_t dlen,
                              const hk_scalar *r, const hk_scalar *s);

#endif
