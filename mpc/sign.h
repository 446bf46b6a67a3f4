/* Two-party signing (Lindell 2017, protocol 4.3 with the fixes of
 * DESIGN.md section 2) as message-driven state machines:
 *
 *   P1 start        -> sign.1  share epoch + fingerprint, digest,
 *                              commitment to (R1 = k1*G, Schnorr proof)
 *   P2 recv sign.1  -> sign.2  R2 = k2*G, Schnorr proof of k2
 *   P1 recv sign.2  -> sign.3  opening of the commitment
 *   P2 recv sign.3  -> sign.4  c3 = Enc(rho*q + k2^-1*m') (+) ckey (*)
 *                              (k2^-1 * r * x2)
 *   P1 recv sign.4  -> sign.5  (r, s), low-S, verified against Q before it
 *                              is returned; sent to P2 for its audit log
 *   P2 recv sign.5  -> (none)  P2 checks the signature
 *
 * On a presignature (presign.h) steps 1-3 ran ahead: P1 sends sign.1p
 * (share, digest) and P2 answers sign.4 at once.
 *
 * If the final signature does not verify, P2 is malicious (the Lindell
 * abort attack, CVE-2023-33242): P1 returns HK_ERR_SIG_ABORT and the state
 * machine is dead; the client layer must lock the key. Any other rejected
 * message leaves the state machine as it was.
 *
 * The share passed to *_new is borrowed and must outlive the session. */
#ifndef HK_SIGN_H
#define HK_SIGN_H

#include "mpc/presign.h"
#include "mpc/share.h"

#define HK_SIG_LEN 64 /* r || s, 32 bytes each */
#define HK_DIGEST_MAX 64

typedef struct hk_sign hk_sign;

/* P1: digest of 1..64 bytes (ECDSA's leftmost-bits rule applies). */
HK_WUR hk_err hk_sign_p1_new(const hk_share *share, const unsigned char *sid,
                             const unsigned char *digest, size_t dlen,
                             hk_sign **out);
HK_WUR hk_err hk_sign_p2_new(const hk_share *share, const unsigned char *sid,
                             hk_sign **out);
/* The same on a presignature (presign.h): one round trip, sign.1p ->
 * sign.4 -> sign.5; the session id is the presignature's id, and ps must
 * be of this share's key, curve and epoch (HK_ERR_BINDING, HK_ERR_EPOCH).
 * The caller destroys its stored copy of ps before hk_sign_start (P1) or
 * hk_sign_recv of sign.1p (P2): a presignature signs once. */
HK_WUR hk_err hk_sign_p1_presigned(const hk_share *share, const hk_presig *ps,
                                   const unsigned char *digest, size_t dlen,
                                   hk_sign **out);
HK_WUR hk_err hk_sign_p2_presigned(const hk_share *share, const hk_presig *ps,
                                   hk_sign **out);
void hk_sign_free(hk_sign *sg);
/* P2, optional, before sign.3 arrives: computes the encryption randomness
 * r^N mod N^2 ahead, taking ~7 ms off the critical path. */
HK_WUR hk_err hk_sign_p2_precompute(hk_sign *sg);
/* The same randomness made ahead of any session (a server that keeps a
 * share loaded prepares the next sign's while idle) ... */
HK_WUR hk_err hk_sign_randomness(const hk_share *share, BIGNUM **rn);
/* ... and handed to a P2 state machine of that share before sign.3 (takes
 * ownership of rn on success; single use). */
HK_WUR hk_err hk_sign_p2_use_randomness(hk_sign *sg, BIGNUM *rn);
/* 1 if sg is P2's, before c3, and has no randomness yet. */
int hk_sign_p2_wants_randomness(const hk_sign *sg);

HK_WUR hk_err hk_sign_start(hk_sign *sg, unsigned char **out, size_t *outlen);
HK_WUR hk_err hk_sign_recv(hk_sign *sg, const unsigned char *in, size_t inlen,
                           unsigned char **out, size_t *outlen);
/* P1: signature returned; P2: c3 sent. */
int hk_sign_done(const hk_sign *sg);
/* 1 once the first message was sent or received. */
int hk_sign_started(const hk_sign *sg);
/* r || s once known (P1 after sign.4, P2 after sign.5). */
HK_WUR hk_err hk_sign_signature(const hk_sign *sg,
                                unsigned char out[HK_SIG_LEN]);
/* The digest being signed (P2: as received in sign.1), for policy/audit. */
HK_WUR hk_err hk_sign_digest(const hk_sign *sg, const unsigned char **dig,
                             size_t *dlen);

/* Peeks the share epoch and fingerprint of a sign.1 or refresh.1 message
 * (for the server to choose between its active and pending share). */
HK_WUR hk_err hk_msg_peek_share(const unsigned char *in, size_t inlen,
                                unsigned long *epoch,
                                unsigned char fp[HK_HASH_LEN]);

#endif
