/* Zero-knowledge proofs of the 2P-ECDSA protocol, all non-interactive by
 * Fiat-Shamir over hk_ts transcripts (bound to protocol, version, curve,
 * session id, key id, sender role and a per-use label).
 *
 * Owns:
 *  - Schnorr proof of knowledge of x with X = x*G (Lindell 2017, section
 *    3.1 uses F_zk^DL; realised by Schnorr + Fiat-Shamir).
 *  - Paillier modulus proof (Lindell 2017 section 3.2 / 6 requires N with
 *    gcd(N, phi(N)) = 1, citing Hazay et al.): the prover gives N-th roots
 *    of HK_NTH_ROOTS challenge elements. If a prime p divides
 *    gcd(N, phi(N)), x -> x^N has a kernel of size >= p on Z*_N, so at most
 *    a 1/p fraction of elements are N-th residues; the verifier first checks
 *    by trial division that every prime factor of N is >=
 *    HK_PAILLIER_TRIAL_BOUND = 2^16, so each root has soundness error
 *    < 2^-16 and 8 roots give < 2^-128 (Goldberg, Reyzin, Sagga,
 *    Baldimtsi 2019, "Efficient Noninteractive Certification of RSA
 *    Moduli", section 3).
 *  - Ring-Pedersen setup (N~, s, t) made by the VERIFIER of the range proof
 *    (the server, at `halfkeyd init`), N~ a product of two safe primes,
 *    t a random square, s = t^lambda, with the proof Pi^prm (Canetti,
 *    Gennaro, Goldfeder, Makriyannis, Peled 2021 "UC Non-Interactive,
 *    Proactive, Threshold ECDSA with Identifiable Aborts" (CGGMP21),
 *    figure 17) that s is in <t>, which the client verifies once. It makes
 *    the prover's commitments hiding even though the verifier knows the
 *    factorisation of N~.
 *  - The proof that ckey encrypts log_G(Q1) in range, replacing Lindell
 *    2017's PDL + range proof (section 6 and appendix A) by a sound
 *    equivalent: CGGMP21 Pi^log* (figure 25, "knowledge of exponent vs
 *    Paillier encryption") over the verifier's ring-Pedersen parameters,
 *    run as HK_LOG_REPS parallel repetitions with challenges e_i in
 *    [0, 2^16). Small challenges are what make it sound for a modulus the
 *    prover chose: extraction divides by (e_i - e_i'), |e_i - e_i'| < 2^16,
 *    which is invertible mod N because N has no prime factor below 2^16
 *    (trial division). Per repetition a false statement passes for at most
 *    one e_i (special soundness under strong RSA on N~), so 8 repetitions
 *    give soundness error 2^-128. The extracted plaintext is an integer x
 *    with |x| < 2^(HK_LOG_ALPHA_BITS + 1) = 2^401, x = log_G(Q1) mod q;
 *    signing masks x times a 256-bit value with rho*q, rho in
 *    [0, 2^HK_SIGN_RHO_BITS), so P1 learns nothing beyond s*k1 mod q
 *    (statistical distance < 2^-128), which is why rho is larger than
 *    Lindell's [0, q^2): that bound assumed x1 < q exactly.
 *    Zero knowledge is statistical: alpha is 128 bits wider than e*x. */
#ifndef HK_ZK_H
#define HK_ZK_H

#include <openssl/bn.h>

#include "mpc/curve.h"
#include "mpc/paillier.h"
#include "mpc/transcript.h"

/* --- Schnorr ----------------------------------------------------------- */

typedef struct {
    hk_point a;  /* a*G for the prover's random a */
    hk_scalar z; /* a + e*x mod q */
} hk_schnorr;

/* Proof of knowledge of x for X = x*G. */
HK_WUR hk_err hk_schnorr_prove(hk_curve *c, const hk_binding *b, hk_role role,
                               const char *label, const hk_scalar *x,
                               const hk_point *X, hk_schnorr *out);
/* HK_OK or HK_ERR_PROOF. */
HK_WUR hk_err hk_schnorr_verify(hk_curve *c, const hk_binding *b, hk_role role,
                                const char *label, const hk_point *X,
                                const hk_schnorr *pf);

/* --- Paillier modulus (N-th roots) -------------------------------------- */

#define HK_NTH_ROOTS 8

typedef struct {
    BIGNUM *sigma[HK_NTH_ROOTS];
} hk_nthroot_proof;

void hk_nthroot_proof_free(hk_nthroot_proof *pf);
HK_WUR hk_err hk_nthroot_prove(const hk_paillier_sk *sk, const hk_binding *b,
                               hk_role role, hk_nthroot_proof *out);
/* pk must come from hk_paillier_pk_new (size and trial division checked).
 * HK_OK or HK_ERR_PROOF. */
HK_WUR hk_err hk_nthroot_verify(const hk_paillier_pk *pk, const hk_binding *b,
                                hk_role role, const hk_nthroot_proof *pf);

/* --- Ring-Pedersen setup ------------------------------------------------ */

#define HK_RPED_BITS 2048
#define HK_PRM_ROUNDS 128

typedef struct {
    BIGNUM *n, *s, *t;
    BN_MONT_CTX *mont;
} hk_rped;

typedef struct hk_ped_crt hk_ped_crt; /* zk_logstar.c */

typedef struct {
    hk_rped pub;
    BIGNUM *p, *q, *lambda, *phi; /* secret: safe primes, log_t(s), phi */
    hk_ped_crt *crt; /* derived: the verifier's constant-time CRT values */
} hk_rped_secret;

typedef struct {
    BIGNUM *a[HK_PRM_ROUNDS];
    BIGNUM *z[HK_PRM_ROUNDS];
} hk_prm_proof;

/* Generates N~ from two fresh 1024-bit safe primes (slow: seconds). */
HK_WUR hk_err hk_rped_generate(hk_rped_secret **out);
/* Rebuilds from stored p, q, lambda (checks s = t^lambda, structure). */
HK_WUR hk_err hk_rped_secret_from(const BIGNUM *p, const BIGNUM *q,
                                  const BIGNUM *t, const BIGNUM *lambda,
                                  hk_rped_secret **out);
void hk_rped_secret_free(hk_rped_secret *sec);
/* Public parameters from a peer: size and unit checks only; they must still
 * pass hk_prm_verify before use. Copies the values. */
HK_WUR hk_err hk_rped_new(const BIGNUM *n, const BIGNUM *s, const BIGNUM *t,
                          hk_rped **out);
HK_WUR hk_err hk_rped_dup(const hk_rped *in, hk_rped **out);
void hk_rped_free(hk_rped *rp);
/* SHA-256 fingerprint of (N~, s, t): how the parties name a setup. */
HK_WUR hk_err hk_rped_fingerprint(const hk_rped *rp,
                                  unsigned char out[HK_HASH_LEN]);

void hk_prm_proof_free(hk_prm_proof *pf);
HK_WUR hk_err hk_prm_prove(const hk_rped_secret *sec, hk_prm_proof *out);
/* HK_OK or HK_ERR_PARAMS. */
HK_WUR hk_err hk_prm_verify(const hk_rped *rp, const hk_prm_proof *pf);

/* --- Pi^log*: C = Enc(x), X = x*G, x in range ----------------------------- */

#define HK_LOG_REPS 8
#define HK_LOG_CH_BITS 16
#define HK_LOG_ALPHA_BITS 400 /* 256 (x) + 16 (e) + 128 (statistical) */
#define HK_SIGN_RHO_BITS 544  /* see the header comment */

typedef struct {
    BIGNUM *A, *D, *z1, *z2, *z3;
    hk_point Y;
} hk_logstar_rep;

typedef struct {
    BIGNUM *S;
    hk_logstar_rep rep[HK_LOG_REPS];
} hk_logstar_proof;

void hk_logstar_proof_free(hk_logstar_proof *pf);
/* C = Enc_sk(x; r). The prover knows sk (CRT speed-up only). */
HK_WUR hk_err hk_logstar_prove(hk_curve *c, const hk_binding *b, hk_role role,
                               const hk_paillier_sk *sk, const hk_rped *rp,
                               const hk_scalar *x, const BIGNUM *r,
                               const BIGNUM *C, const hk_point *X,
                               hk_logstar_proof *out);
/* C must have passed hk_paillier_ct_check. sec: the verifier's own setup
 * secret when it has it (NULL otherwise): the same checks, computed by CRT
 * mod the primes of N~ in constant time (the exponents are the prover's),
 * about three times faster. HK_OK or HK_ERR_PROOF. */
HK_WUR hk_err hk_logstar_verify(hk_curve *c, const hk_binding *b, hk_role role,
                                const hk_paillier_pk *pk, const hk_rped *rp,
                                const hk_rped_secret *sec, const BIGNUM *C,
                                const hk_point *X, const hk_logstar_proof *pf);

#endif
