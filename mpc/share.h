/* Key shares: what each party keeps of a split key, and their records.
 *
 * Owns the in-memory share and its versioned, strict serialisation (so the
 * client and server layers can seal and store it). Both parties hold the
 * public values (Q, Q1, Q2, N, ckey, epoch); P1 (client) additionally x1 and
 * the Paillier primes, P2 (server) x2. A decoded record is checked for
 * consistency: x*G is that party's public share, Q = x1*Q2 = x2*Q1, N is a
 * valid Paillier modulus (and p*q for P1), ckey a valid ciphertext.
 * The record holds secrets in clear: callers seal it before storing it. */
#ifndef HK_SHARE_H
#define HK_SHARE_H

#include "mpc/curve.h"
#include "mpc/paillier.h"
#include "mpc/transcript.h"

#define HK_SHARE_VERSION 1

typedef struct {
    hk_role role;
    hk_curve_id curve;
    unsigned char kid[HK_ID_LEN];
    unsigned long epoch;                /* 1 after keygen, +1 per refresh */
    hk_scalar x;                        /* x1 (P1) or x2 (P2): SECRET */
    hk_point Q, Q1, Q2;                 /* Q = x1*x2*G, Q1 = x1*G, Q2 = x2*G */
    BIGNUM *ckey;                       /* Enc_N(x1) */
    hk_paillier_pk *pk;                 /* N */
    hk_paillier_sk *sk;                 /* P1 only: SECRET */
    unsigned char rped_fp[HK_HASH_LEN]; /* server setup used */
    /* P2, optional: a fixed-base table for ckey (a reference of the
     * server's cache; c3 uses it when it is ckey's under this N), never
     * encoded. */
    hk_paillier_fb *ckey_fb;
} hk_share;

void hk_share_free(hk_share *s);
/* The share's public fingerprint (both parties compute the same): binds
 * curve, key id, epoch, Q, Q1, Q2, N, ckey. */
HK_WUR hk_err hk_share_fingerprint(const hk_share *s,
                                   unsigned char out[HK_HASH_LEN]);
/* Record encoding (secrets included), OPENSSL_free the output after
 * OPENSSL_cleanse. */
HK_WUR hk_err hk_share_encode(const hk_share *s, unsigned char **out,
                              size_t *len);
/* Strict decode with every consistency check; HK_ERR_SHARE, HK_ERR_VERSION
 * or HK_ERR_DECODE on failure. */
HK_WUR hk_err hk_share_decode(const unsigned char *in, size_t len,
                              hk_share **out);
/* As hk_share_decode for a record this party stored under its own seal
 * (AEAD: the bytes it wrote): P2 skips the trial division of N and the
 * gcd of ckey, which it made when it received them, and P1 the
 * decryption of ckey (1-2 ms of every share load); every other check is
 * made (P1: its primes give N, x1*G = Q1, x1*Q2 = Q). */
HK_WUR hk_err hk_share_decode_sealed(const unsigned char *in, size_t len,
                                     hk_share **out);
/* The public view of a share: curve, key id, epoch, Q, Q1, Q2, N, ckey and
 * the setup fingerprint, no secret (both parties hold these values). The
 * server gives it to a client that restores its share from a backup
 * (GET /backup): with x1 decrypted from the backup it is enough to run a
 * refresh (hk_refresh_p1_new), whose share reference (epoch and
 * hk_share_fingerprint) covers exactly these values. OPENSSL_free the
 * output. */
HK_WUR hk_err hk_share_public_encode(const hk_share *s, unsigned char **out,
                                     size_t *len);
/* Strict decode of a public view: points on the curve, N a valid Paillier
 * modulus of its size, ckey in Z*_{N^2}, Q = x2*Q1 not checkable here.
 * The result has role P1, x = 0 and no Paillier secret: it is only the
 * input of hk_share_p1_restore. HK_ERR_SHARE / HK_ERR_DECODE on failure. */
HK_WUR hk_err hk_share_public_decode(const unsigned char *in, size_t len,
                                     hk_share **out);
/* Completes a decoded public view with a recovered x1: HK_ERR_KEY_MISMATCH
 * unless x1*G = Q1 and x1*Q2 = Q (nothing set then). The share has no
 * Paillier secret: it can run a refresh (which makes a new Paillier key)
 * but neither sign nor be stored (hk_share_encode refuses it). */
HK_WUR hk_err hk_share_p1_restore(hk_share *view, const hk_scalar *x1);
/* Compressed public key Q. */
const hk_point *hk_share_pubkey(const hk_share *s);

#endif
