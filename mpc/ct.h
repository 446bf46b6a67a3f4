/* Constant-time modular arithmetic for the few steps where secret values
 * would otherwise go through OpenSSL BIGNUM routines that are not constant
 * time: BN_mod_sub and BN_mod_add branch on the sign of an intermediate
 * result, BN_mod_mul's BN_mul takes Karatsuba branches that depend on the
 * operands' values, and BN_div's quotient estimate may loop a value-
 * dependent number of times on platforms without a constant-time 3-word
 * division.
 *
 * Numbers are held as fixed-width arrays of 32-bit limbs (the width of the
 * modulus, which is public even when the modulus is not: a 1024-bit prime
 * is a 1024-bit prime). Every function below runs the same instructions
 * and touches the same memory for all values of its operands: loops have
 * fixed bounds, carries and borrows are computed arithmetically, and each
 * conditional subtraction or correction selects with an all-ones/all-zeros
 * mask instead of a branch. 32x32->64-bit multiplication is constant time
 * on every CPU this runs on (x86-64, AArch64).
 *
 * Conversion from and to BIGNUM uses BN_bn2lebinpad (constant time in
 * OpenSSL 3 for a fixed output length) and BN_lebin2bn, whose final
 * bn_correct_top looks at the result's leading zero limbs: that reveals
 * whether the top 32 bits of a uniformly distributed value are zero, with
 * probability 2^-32 per operation. */
#ifndef HK_CT_H
#define HK_CT_H

#include <stddef.h>

#include <openssl/bn.h>

#include "common/error.h"

#define HK_CT_MAX_BITS 4096 /* largest modulus: p^2 of a 4096-bit N */

typedef struct hk_ct_mod hk_ct_mod;
typedef struct hk_ct_crt hk_ct_crt;

/* A context for odd modulus m (Montgomery constants). m may be secret: the
 * setup (one BN_mod, once per key, on no attacker input) is not itself
 * constant time, the arithmetic after it is. */
HK_WUR hk_err hk_ct_mod_new(const BIGNUM *m, hk_ct_mod **out);
void hk_ct_mod_free(hk_ct_mod *m);
/* Byte width of the modulus (for the _be functions). */
size_t hk_ct_mod_bytes(const hk_ct_mod *m);

/* r = a * b mod m and r = a + b mod m, a and b in [0, m) (HK_ERR_ARG
 * otherwise: that check only reveals whether the caller broke the
 * precondition). r may alias a or b. */
HK_WUR hk_err hk_ct_mod_mul(const hk_ct_mod *m, const BIGNUM *a,
                            const BIGNUM *b, BIGNUM *r);
HK_WUR hk_err hk_ct_mod_add(const hk_ct_mod *m, const BIGNUM *a,
                            const BIGNUM *b, BIGNUM *r);
/* The same on big-endian byte strings of exactly hk_ct_mod_bytes(m) bytes,
 * without any BIGNUM (the curve's scalars). */
HK_WUR hk_err hk_ct_mod_mul_be(const hk_ct_mod *m, const unsigned char *a,
                               const unsigned char *b, unsigned char *r);
HK_WUR hk_err hk_ct_mod_add_be(const hk_ct_mod *m, const unsigned char *a,
                               const unsigned char *b, unsigned char *r);

/* r = a mod m for 0 <= a < m * 2^(32 ceil(bits(m)/32)), e.g. any a below
 * m^2 (Montgomery reduction, then one Montgomery multiplication). */
HK_WUR hk_err hk_ct_mod_reduce(const hk_ct_mod *m, const BIGNUM *a, BIGNUM *r);
/* Paillier's L function: out = (u - 1) / m for u = 1 mod m, u < m^2, as
 * an exact division (a multiplication by m^-1 mod 2^(32 limbs)) instead of
 * BN_div. The result is meaningless if u != 1 mod m. */
HK_WUR hk_err hk_ct_mod_lfunc(const hk_ct_mod *m, const BIGNUM *u, BIGNUM *out);

/* Garner recombination for coprime odd P > Q (HK_ERR_ARG otherwise):
 * x = xq + Q * ((xp - xq) * Q^-1 mod P), the x in [0, PQ) with x = xp mod P
 * and x = xq mod Q. The constants (Q^-1 mod P in Montgomery form) are
 * computed here, once per key. */
HK_WUR hk_err hk_ct_crt_new(const BIGNUM *P, const BIGNUM *Q, hk_ct_crt **out);
/* As hk_ct_crt_new with Q^-1 mod P given (the caller derived it more
 * cheaply than an inversion): qinv must be in [1, P) with Q * qinv = 1
 * mod P (checked: HK_ERR_ARG otherwise). */
HK_WUR hk_err hk_ct_crt_new_inv(const BIGNUM *P, const BIGNUM *Q,
                                const BIGNUM *qinv, hk_ct_crt **out);
void hk_ct_crt_free(hk_ct_crt *c);
/* xp in [0, P), xq in [0, Q). x gets BN_FLG_CONSTTIME. */
HK_WUR hk_err hk_ct_crt_combine(const hk_ct_crt *c, const BIGNUM *xp,
                                const BIGNUM *xq, BIGNUM *x);

#endif
