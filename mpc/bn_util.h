/* Private BIGNUM helpers of the mpc core. */
#ifndef HK_BN_UTIL_H
#define HK_BN_UTIL_H

#include <openssl/bn.h>

#include "common/error.h"

/* New BIGNUM for a secret: secure heap when available, constant-time flag. */
BIGNUM *hk_bn_secret(void);
/* Uniform r in [0, 2^bits). */
HK_WUR hk_err hk_bn_rand_bits(BIGNUM *r, int bits);
/* Uniform r in [0, 2^extra * n). */
HK_WUR hk_err hk_bn_rand_times(BIGNUM *r, const BIGNUM *n, int extra);
/* 1 if 0 <= v < m (and v < 2^bits when bits > 0). */
int hk_bn_below(const BIGNUM *v, const BIGNUM *m);
int hk_bn_below_bits(const BIGNUM *v, int bits);
/* out = a^x * b^y mod m. consttime: exponents are secret. */
HK_WUR hk_err hk_bn_exp2(BIGNUM *out, const BIGNUM *a, const BIGNUM *x,
                         const BIGNUM *b, const BIGNUM *y, const BIGNUM *m,
                         BN_MONT_CTX *mont, int consttime, BN_CTX *ctx);
/* Frees each BIGNUM of an array (clearing it) and NULLs it. */
void hk_bn_free_array(BIGNUM **a, size_t n);
/* Allocates each of n BIGNUMs; HK_ERR_NOMEM on failure (caller frees). */
HK_WUR hk_err hk_bn_new_array(BIGNUM **a, size_t n);

#endif
