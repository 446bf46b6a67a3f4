/* Independent signature verification for tests: OpenSSL's EVP with the
 * default provider (both curves) and libsecp256k1 called directly. */
#ifndef HK_TEST_VERIFY_H
#define HK_TEST_VERIFY_H

#include <stddef.h>

#include "mpc/share.h"
#include "mpc/sign.h"
#include "mpc/zk.h"

/* 1 if sig (r||s) verifies for Q on the digest with EVP_PKEY_verify. */
int hk_test_verify_evp(hk_curve_id curve, const hk_point *Q,
                       const unsigned char *dig, size_t dlen,
                       const unsigned char sig[HK_SIG_LEN]);
/* 1 if sig verifies with libsecp256k1 (which rejects high-S) on a 32-byte
 * digest. */
int hk_test_verify_k1(const hk_point *Q, const unsigned char dig[32],
                      const unsigned char sig[HK_SIG_LEN]);
/* Shared ring-Pedersen setup for a test binary (made once, verified). */
const hk_rped *hk_test_rped(void);
const hk_rped_secret *hk_test_rped_secret(void);

#endif
