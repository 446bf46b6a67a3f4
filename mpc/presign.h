/* Presignatures (DESIGN.md section 2, "Presignatures"; issue 20 item 1).
 *
 * Lindell 2017 protocol 4.3 steps 1-3 (the nonce exchange: P1 commits to
 * R1 = k1*G with a Schnorr proof, P2 answers R2 = k2*G with its proof, P1
 * opens) do not depend on the digest, so they run ahead, for a batch of n
 * nonces at once:
 *
 *   P1 start      -> pre.1  share ref, n, commitments to (R1_i, proof_i)
 *   P2 recv pre.1 -> pre.2  R2_i = k2_i*G, Schnorr proofs of k2_i
 *   P1 recv pre.2 -> pre.3  openings (R1_i, proofs, nonces); P1 done
 *   P2 recv pre.3 -> (none) openings and proofs checked; P2 done
 *
 * Presignature i has an id of its own, H(generation session id, i): its
 * commitment and both proofs are bound to that id (as a sign session's
 * are to the session id), so nothing moves between presignatures, and the
 * id is the session id of the one sign that uses it. Each side then takes
 * its records (hk_presig): id, key, share epoch, its own nonce share
 * (SECRET) and R1, R2.
 *
 * Online (sign.h, hk_sign_p1_presigned / hk_sign_p2_presigned) a sign is
 * one round trip: P1 sends sign.1p (share ref, digest m'), P2 answers
 * sign.4 (c3). The nonce is re-randomised as Groth and Shoup propose
 * ("On the security of ECDSA with additive key derivation and
 * presignatures", Eurocrypt 2022, ePrint 2021/1330; the multiplicative
 * form DESIGN.md fixes): delta = H(id, key, epoch,
 * R1, R2, Q, m') and R' = delta*R (P1's nonce share becomes delta*k1), so
 * the nonce a digest is signed under depends on that digest and a
 * presignature known in advance gives an attacker who picks m' after
 * seeing R nothing beyond what a plain sign gives.
 *
 * Single use is the callers', enforced by their storage: P2 deletes its
 * record in the transaction that precedes c3, P1 destroys its record
 * before sign.1p goes out. A crash loses a presignature, never reuses it:
 * two digests under one presignature would give two linear equations in
 * k and x. */
#ifndef HK_PRESIGN_H
#define HK_PRESIGN_H

#include "mpc/share.h"

#define HK_PRESIG_BATCH_MAX 64 /* presignatures per generation */
/* Encoded record: version, curve, epoch, id, kid, k, R1, R2. */
#define HK_PRESIG_REC_LEN                                                      \
    (2 + 4 + 2 * HK_ID_LEN + HK_SCALAR_LEN + 2 * HK_POINT_LEN)

typedef struct {
    unsigned char id[HK_ID_LEN];  /* the sign session id that uses it */
    unsigned char kid[HK_ID_LEN]; /* the key */
    hk_curve_id curve;
    unsigned long epoch; /* the share it was made with; only it signs */
    hk_scalar k;         /* own nonce share k1 (P1) or k2 (P2): SECRET */
    hk_point R1, R2;     /* k1*G, k2*G, both proven at generation */
} hk_presig;

typedef struct hk_psgen hk_psgen;

/* P1: a generation of n (1..HK_PRESIG_BATCH_MAX) presignatures for the
 * share (borrowed: it must outlive g) in session sid. */
HK_WUR hk_err hk_psgen_p1_new(const hk_share *share, const unsigned char *sid,
                              size_t n, hk_psgen **out);
/* P2: accepts pre.1 asking for 1..max presignatures (HK_ERR_FORBIDDEN
 * above max: the server's pool bound). */
HK_WUR hk_err hk_psgen_p2_new(const hk_share *share, const unsigned char *sid,
                              size_t max, hk_psgen **out);
void hk_psgen_free(hk_psgen *g);
/* P1: pre.1. */
HK_WUR hk_err hk_psgen_start(hk_psgen *g, unsigned char **out, size_t *outlen);
/* P2: pre.1 -> pre.2, pre.3 -> nothing; P1: pre.2 -> pre.3. A rejected
 * message leaves g as it was. */
HK_WUR hk_err hk_psgen_recv(hk_psgen *g, const unsigned char *in, size_t inlen,
                            unsigned char **out, size_t *outlen);
/* 1 once this side holds the batch (P1 after pre.3 went out, P2 after
 * pre.3 checked). */
int hk_psgen_done(const hk_psgen *g);
/* The batch size (P2: 0 before pre.1). */
size_t hk_psgen_count(const hk_psgen *g);
/* Copies presignature i of a finished generation into *out (SECRET: wipe
 * it with OPENSSL_cleanse after use). */
HK_WUR hk_err hk_psgen_get(const hk_psgen *g, size_t i, hk_presig *out);

/* Fixed-size record for storage (the caller seals it: it holds k). */
HK_WUR hk_err hk_presig_encode(const hk_presig *p,
                               unsigned char out[HK_PRESIG_REC_LEN]);
/* Strict decode: exact length, version, known curve, epoch >= 1, k in
 * [1, q), R1 and R2 on the curve. HK_ERR_DECODE otherwise. */
HK_WUR hk_err hk_presig_decode(const unsigned char *in, size_t len,
                               hk_presig *out);

#endif
