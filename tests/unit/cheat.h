/* Malicious inputs shared by the negative tests: Paillier moduli a cheating
 * P1 might send and the best modulus proof it can make for them. */
#ifndef HK_TEST_CHEAT_H
#define HK_TEST_CHEAT_H

#include <openssl/bn.h>

#include "mpc/zk.h"

/* n = p^2 * q with exactly `bits` bits (p of bits/4, q of bits/2 bits,
 * both prime): no small factor, but gcd(n, phi(n)) = p. p, q may be NULL. */
void hk_cheat_nonsquarefree(int bits, BIGNUM *n, BIGNUM *p, BIGNUM *q);
/* n = f * (odd cofactor) with exactly `bits` bits. */
void hk_cheat_small_factor(int bits, unsigned long f, BIGNUM *n);
/* The modulus proof's challenges rho_i for n, derived as zk_nthroot.c
 * does, and sigma_i = rho_i^(n^-1 mod m) mod n. With m = phi(n) for an
 * honest n = p*q this is the honest proof; for n = p^2*q and
 * m = (p-1)(q-1) it is a cheating prover's best try. pf->sigma are
 * allocated here (free with hk_nthroot_proof_free). */
void hk_cheat_nthroot(const BIGNUM *n, const BIGNUM *m, const hk_binding *b,
                      hk_role role, hk_nthroot_proof *pf);

#endif
