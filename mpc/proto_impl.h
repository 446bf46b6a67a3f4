/* Private to the protocol state machines (keygen.c, sign.c, refresh.c):
 * message plumbing and the Paillier key package that keygen and refresh
 * both send (Lindell 2017 protocol 3.2 step 3 / this project's refresh). */
#ifndef HK_PROTO_IMPL_H
#define HK_PROTO_IMPL_H

#include "mpc/codec.h"
#include "mpc/share.h"
#include "mpc/zk.h"

/* P1's Paillier package for secret x1 with X1 = x1*G: a fresh key, ckey =
 * Enc(x1), the modulus proof and the range proof. The key is *pre when
 * pre and *pre are not NULL (a key from the client's prime pool, see
 * hk_keygen_p1_use_paillier; taken: *pre becomes NULL), else generated. */
typedef struct {
    hk_paillier_sk *sk;
    BIGNUM *ckey;
    hk_nthroot_proof nth;
    hk_logstar_proof ls;
} hk_ppkg;

void hk_ppkg_free(hk_ppkg *p);
HK_WUR hk_err hk_ppkg_make(hk_curve *c, const hk_binding *b, int pbits,
                           const hk_rped *rp, const hk_scalar *x1,
                           const hk_point *X1, hk_paillier_sk **pre,
                           hk_ppkg *out);
HK_WUR hk_err hk_ppkg_put(hk_msg *m, const hk_ppkg *p);
/* P2: reads N and ckey and the proofs from m and verifies them all against
 * X1; on success *pk and *ckey are set (caller owns). */
HK_WUR hk_err hk_ppkg_take(hk_msg *m, hk_curve *c, const hk_binding *b,
                           int pbits, const hk_rped_secret *sec,
                           const hk_point *X1, hk_paillier_pk **pk,
                           BIGNUM **ckey);

HK_WUR hk_err hk_put_schnorr(hk_msg *m, const hk_schnorr *pf);
HK_WUR hk_err hk_get_schnorr(hk_msg *m, hk_curve *c, hk_schnorr *pf);

/* Proof of possession of P1's share (DESIGN.md section 2, "promotion
 * needs proof, never a claim"): a Schnorr proof of x1 for Q1 under
 * `label`, bound by the transcript to the session, key and role, so it
 * cannot be made without x1 nor replayed from another session. Fields
 * "pa", "pz". Used by refresh.1 (P1 holds the share it names), keygen.5
 * and refresh.5 (P1 has stored the new share). */
HK_WUR hk_err hk_put_possession(hk_msg *m, hk_curve *c, const hk_binding *b,
                                const char *label, const hk_scalar *x1,
                                const hk_point *Q1);
/* HK_ERR_PROOF if the proof does not verify for Q1. */
HK_WUR hk_err hk_check_possession(hk_msg *in, hk_curve *c, const hk_binding *b,
                                  const char *label, const hk_point *Q1);
/* keygen.5 / refresh.5: the stored share's fingerprint ("conf") and the
 * proof of possession of its x1; the whole message (type `type`). */
HK_WUR hk_err hk_stored_msg(const char *type, hk_curve *c, const hk_binding *b,
                            const char *label, const hk_scalar *x1,
                            const hk_point *Q1,
                            const unsigned char fp[HK_HASH_LEN],
                            unsigned char **out, size_t *outlen);
/* Checks keygen.5 / refresh.5 (parsed) against the share P2 holds:
 * HK_ERR_KEY_MISMATCH for another share's fingerprint, HK_ERR_PROOF for a
 * proof that does not verify. */
HK_WUR hk_err hk_stored_check(hk_msg *in, hk_curve *c, const hk_binding *b,
                              const char *label, const hk_point *Q1,
                              const unsigned char fp[HK_HASH_LEN]);

/* Encodes m into (*out, *len) and frees m in every case. */
HK_WUR hk_err hk_msg_out(hk_msg *m, unsigned char **out, size_t *len);

/* Commitment over a list of points and byte strings: see transcript.h. */
HK_WUR hk_err hk_commit_points(const hk_binding *b, hk_role role,
                               const char *label, const hk_point *pts,
                               size_t npts, const unsigned char *extra,
                               size_t extra_len, const unsigned char *nonce,
                               unsigned char out[HK_HASH_LEN]);

/* The share a sign or refresh run uses, named by epoch and fingerprint;
 * HK_ERR_EPOCH if the peer's differs. */
HK_WUR hk_err hk_put_share_ref(hk_msg *m, const hk_share *s,
                               const unsigned char fp[HK_HASH_LEN]);
HK_WUR hk_err hk_check_share_ref(hk_msg *in, const hk_share *s,
                                 const unsigned char fp[HK_HASH_LEN]);

/* The commitment of keygen.1 and refresh.1: points, then a 32-byte value,
 * the Paillier size and the setup fingerprint as the extra bytes. */
HK_WUR hk_err hk_commit_setup(const hk_binding *b, const char *label,
                              const hk_point *pts, size_t npts,
                              const unsigned char v[HK_SCALAR_LEN], int pbits,
                              const unsigned char setup_fp[HK_HASH_LEN],
                              const unsigned char *nonce,
                              unsigned char out[HK_HASH_LEN]);

/* Builds a binding from curve, sid, kid. */
void hk_binding_set(hk_binding *b, hk_curve_id curve, const unsigned char *sid,
                    const unsigned char *kid);

#endif
