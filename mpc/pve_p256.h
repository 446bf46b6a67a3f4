/* Private to mpc/pve.c and its tests: constant-time P-256 point chains for
 * the PVE's ECIES encryptor (blob version 2).
 *
 * A chain is the K affine points A + j*D, j = 0..n-1, of a base A and a
 * step D. The encryptor of a row needs two: the ephemeral keys
 * E_j = (a + j*b)*G (base a*G, step b*G) and the shared secrets
 * Z_j = (a + j*b)*B (base a*B, step b*B). They come from n-1 Jacobian
 * mixed additions each and one field inversion shared by all chains of a
 * call, instead of one variable-base scalar multiplication per point.
 *
 * Constant time: the field arithmetic (mpc/pve_p256.c) runs on four 64-bit
 * limbs with fixed loops and masked selections, the additions have no
 * branch, the inversion's exponent (p - 2) is public. The mixed addition is
 * incomplete: P + D is wrong when P = +-D or P is infinity. The caller
 * excludes that on the scalars (it knows a and b): A + (j-1)*D = +-D iff
 * a + m*b = 0 for some m in {-1, 0, ..., n-1}; it draws a and b again if
 * so (probability about n * 2^-256). */
#ifndef HK_PVE_P256_H
#define HK_PVE_P256_H

#include "common/error.h"

#define HK_P256_CHAIN_MAX 64 /* m * n, points of one call */

/* For chains c = 0..m-1 with affine base[c] and step[c] (64 bytes each:
 * x || y big-endian, valid P-256 points), writes x[(c*n + j)*32 ..] (32
 * bytes big-endian) and ypar[c*n + j] (the parity of y) of A + j*D for
 * j = 0..n-1. HK_ERR_ARG if m*n is 0 or above HK_P256_CHAIN_MAX;
 * HK_ERR_POINT if a point of the chains is at infinity or an addition hit
 * the excluded case (the outputs are then wiped). */
HK_WUR hk_err hk_p256_chains(unsigned m, unsigned n, const unsigned char *base,
                             const unsigned char *step, unsigned char *x,
                             unsigned char *ypar);

#endif
