/* Paillier encryption with g = N + 1, on OpenSSL BN.
 *
 * Owns: key generation (2048-bit default, 3072 option; the two primes on
 * two threads; or from primes made earlier, the client's pool), encryption
 * (public
 * and, for the key owner, CRT-accelerated), CRT decryption, homomorphic
 * addition and scalar multiplication, the N-th root used by the modulus
 * proof, the validity checks a receiver applies to a peer's modulus and
 * ciphertexts, and (mpc/paillier_fb.c) the fixed-base table for the
 * scalar multiplications of one ciphertext. Secret-key arithmetic uses
 * BN_FLG_CONSTTIME and BN_mod_exp_mont_consttime; secret BIGNUMs are cleared on
 * free. */
#ifndef HK_PAILLIER_H
#define HK_PAILLIER_H

#include <openssl/bn.h>

#include "common/error.h"

#define HK_PAILLIER_BITS_DEFAULT 2048
#define HK_PAILLIER_BITS_MAX 3072
/* Moduli are checked to have no prime factor below this bound (trial
 * division); the modulus proof's and the range proof's soundness rest on it
 * (see zk.h). DESIGN.md asks for at least 2^13. */
#define HK_PAILLIER_TRIAL_BOUND 65536

typedef struct hk_paillier_pk hk_paillier_pk;
typedef struct hk_paillier_sk hk_paillier_sk;

/* 1 if bits is a supported modulus size (2048 or 3072). */
int hk_paillier_bits_ok(int bits);

/* New key pair: N = p*q with exactly `bits` bits, p, q distinct primes of
 * bits/2 bits each. HK_ERR_ARG for an unsupported size. */
HK_WUR hk_err hk_paillier_keygen(int bits, hk_paillier_sk **out);
/* The same with the prime searches on `threads` (1 or 2) threads: with 2,
 * q is searched on a thread created and joined inside the call (it shares
 * nothing but its own BIGNUM), halving the wall time on two free cores.
 * hk_paillier_keygen uses 2. (mpc/par.h is the other place mpc/ starts a
 * thread, joined likewise.) */
HK_WUR hk_err hk_paillier_keygen_threads(int bits, int threads,
                                         hk_paillier_sk **out);
/* A new key pair from primes this party generated earlier with
 * hk_paillier_keygen and kept for one later use (the client's prime pool,
 * client/ks_pool.c): the same key as hk_paillier_keygen would have
 * returned, able to prove its modulus (hk_paillier_nth_root). Checks the
 * structure as hk_paillier_sk_from_primes does, and gcd(N, phi(N)) = 1,
 * but not primality: the caller vouches for the primes (the pool's
 * records are authenticated under the PIN key); a composite would only
 * make the modulus proof fail at the verifier. Copies p and q. */
HK_WUR hk_err hk_paillier_keygen_from_primes(const BIGNUM *p, const BIGNUM *q,
                                             int bits, hk_paillier_sk **out);
/* Rebuilds a key pair from its primes (stored share); checks structure
 * (odd, distinct, sizes) but not primality. Copies p and q. */
HK_WUR hk_err hk_paillier_sk_from_primes(const BIGNUM *p, const BIGNUM *q,
                                         int bits, hk_paillier_sk **out);
void hk_paillier_sk_free(hk_paillier_sk *sk);
const hk_paillier_pk *hk_paillier_sk_pk(const hk_paillier_sk *sk);
const BIGNUM *hk_paillier_sk_p(const hk_paillier_sk *sk);
const BIGNUM *hk_paillier_sk_q(const hk_paillier_sk *sk);

/* Public key from a peer's modulus, with every check a receiver must make:
 * exactly `bits` bits, a supported size, odd, no prime factor below
 * HK_PAILLIER_TRIAL_BOUND. HK_ERR_PAILLIER if any fails. Copies n. */
HK_WUR hk_err hk_paillier_pk_new(const BIGNUM *n, int bits,
                                 hk_paillier_pk **out);
/* As hk_paillier_pk_new for a modulus this party checked when it received
 * it and stored under its own seal (a share record): the size and parity
 * checks, not the trial division (about 1 ms). */
HK_WUR hk_err hk_paillier_pk_stored(const BIGNUM *n, int bits,
                                    hk_paillier_pk **out);
void hk_paillier_pk_free(hk_paillier_pk *pk);
/* A copy of the key pair's public half (no checks: the key pair's own
 * modulus, whose factors are known). */
HK_WUR hk_err hk_paillier_sk_pk_copy(const hk_paillier_sk *sk,
                                     hk_paillier_pk **out);
const BIGNUM *hk_paillier_n(const hk_paillier_pk *pk);
const BIGNUM *hk_paillier_n2(const hk_paillier_pk *pk);
int hk_paillier_bits(const hk_paillier_pk *pk);

/* Uniform r in [1, N): in Z*_N except with probability < 2^(2 - bits/2)
 * (not tested, see paillier.c). */
HK_WUR hk_err hk_paillier_rand_unit(const hk_paillier_pk *pk, BIGNUM *r);
/* c = (1 + m*N) * r^N mod N^2, 0 <= m < N, r in Z*_N (r NULL: fresh). */
HK_WUR hk_err hk_paillier_enc(const hk_paillier_pk *pk, const BIGNUM *m,
                              const BIGNUM *r, BIGNUM *c);
/* Same result as hk_paillier_enc, about twice as fast by CRT (owner only);
 * r must be given. */
HK_WUR hk_err hk_paillier_enc_sk(const hk_paillier_sk *sk, const BIGNUM *m,
                                 const BIGNUM *r, BIGNUM *c);
/* m = Dec(c) in [0, N). c must have passed hk_paillier_ct_check. */
HK_WUR hk_err hk_paillier_dec(const hk_paillier_sk *sk, const BIGNUM *c,
                              BIGNUM *m);
/* m = Dec(c) for a plaintext known to lie below 2^bound_bits, at half
 * the cost: decrypts modulo p only (the larger prime, above
 * 2^(bits/2 - 1)), which equals Dec(c) when Dec(c) < p. 8 <= bound_bits
 * <= bits/2 - 1, else HK_ERR_ARG. HK_ERR_PAILLIER if the value mod p is
 * not below 2^bound_bits (Dec(c) is out of the bound: the sender did not
 * follow the protocol). Constant time but for that verdict. */
HK_WUR hk_err hk_paillier_dec_small(const hk_paillier_sk *sk, const BIGNUM *c,
                                    int bound_bits, BIGNUM *m);
/* out = a (+) b = a*b mod N^2. */
HK_WUR hk_err hk_paillier_add(const hk_paillier_pk *pk, const BIGNUM *a,
                              const BIGNUM *b, BIGNUM *out);
/* out = k (*) c = c^k mod N^2, constant-time in k (k may be secret). */
HK_WUR hk_err hk_paillier_mul(const hk_paillier_pk *pk, const BIGNUM *c,
                              const BIGNUM *k, BIGNUM *out);
/* A fixed-base table for k (*) c = c^k mod N^2 of one ciphertext c with a
 * secret k below 2^HK_PAILLIER_FB_BITS (P2's ckey^w in every c3; q < 2^256
 * on both curves), mpc/paillier_fb.c: 3-3.5x faster than hk_paillier_mul,
 * for a table of 64 * |N^2| bytes made once per key (about as long as one
 * hk_paillier_mul). Reference-counted and read-only once made, so threads
 * share it (the server's cache, server/http/rnpool.c, and each share that
 * uses it hold one reference each). */
#define HK_PAILLIER_FB_BITS 256
typedef struct hk_paillier_fb hk_paillier_fb;
/* c must be in (0, N^2) (HK_ERR_PAILLIER); HK_ERR_CRYPTO, rarely, for a
 * table whose entries cannot all use the constant-time path (the caller
 * then uses hk_paillier_mul). */
HK_WUR hk_err hk_paillier_fb_new(const hk_paillier_pk *pk, const BIGNUM *c,
                                 hk_paillier_fb **out);
/* Another reference to t; returns t. */
hk_paillier_fb *hk_paillier_fb_ref(hk_paillier_fb *t);
/* Drops one reference (the last frees the table). */
void hk_paillier_fb_free(hk_paillier_fb *t);
/* 1 if t is the table of c under pk's modulus. */
int hk_paillier_fb_is_for(const hk_paillier_fb *t, const hk_paillier_pk *pk,
                          const BIGNUM *c);
/* out = c^k mod N^2 for the table's c, 0 <= k < 2^HK_PAILLIER_FB_BITS
 * (HK_ERR_ARG otherwise), constant time in k. */
HK_WUR hk_err hk_paillier_fb_exp(const hk_paillier_fb *t, const BIGNUM *k,
                                 BIGNUM *out);
/* HK_OK if 0 < c < N^2 (the range only: for a ciphertext checked when it
 * was received and stored under this party's seal). */
HK_WUR hk_err hk_paillier_ct_range(const hk_paillier_pk *pk, const BIGNUM *c);
/* HK_OK if 0 < c < N^2 and gcd(c, N) = 1, else HK_ERR_PAILLIER. */
HK_WUR hk_err hk_paillier_ct_check(const hk_paillier_pk *pk, const BIGNUM *c);
/* The key owner's check of a ciphertext from a peer (who does not know
 * the factors of N): 0 < c < N^2 and c not a multiple of N; HK_ERR_PAILLIER
 * otherwise. A c that shares only p or q with N cannot be made without
 * knowing that factor, so the peer cannot send one, and the owner skips
 * the gcd (0.8 ms) that hk_paillier_ct_check needs for a key of someone
 * else's. */
HK_WUR hk_err hk_paillier_ct_check_own(const hk_paillier_sk *sk,
                                       const BIGNUM *c);
/* HK_OK if 0 < u < N and gcd(u, N) = 1, else HK_ERR_PAILLIER. */
HK_WUR hk_err hk_paillier_unit_check(const hk_paillier_pk *pk, const BIGNUM *u);
/* out = x^(N^-1 mod phi(N)) mod N, the N-th root of x: for a key from
 * hk_paillier_keygen only (HK_ERR_STATE for one rebuilt from its primes,
 * which never proves its modulus again). */
HK_WUR hk_err hk_paillier_nth_root(const hk_paillier_sk *sk, const BIGNUM *x,
                                   BIGNUM *out);

#endif
