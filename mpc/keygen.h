/* Two-party key generation (Lindell 2017, protocol 3.2; DESIGN.md section 2)
 * as a message-driven state machine for each party: bytes in, bytes out or
 * an error, no I/O.
 *
 *   P1 start          -> keygen.1  curve, Paillier size, setup fingerprint,
 *                                  commitment to (Q1, Schnorr proof of x1)
 *   P2 recv keygen.1  -> keygen.2  Q2, Schnorr proof of x2
 *   P1 recv keygen.2  -> keygen.3  opening, N, ckey, modulus and range
 *                                  proofs, Q (P1 confirms Q to P2)
 *   P2 recv keygen.3  -> keygen.4  fingerprint of the agreed share; P2 done
 *                                  (its share is taken and stored PENDING)
 *   P1 recv keygen.4  -> (none)    P1 done: store the share durably, then
 *   P1 confirm        -> keygen.5  fingerprint + proof of possession of x1
 *   P2 recv keygen.5  -> (none)    P2 confirmed: the key becomes active
 *
 * Two-phase like refresh (DESIGN.md section 2): a client that dies after
 * keygen.3 leaves the server a pending key that expires, not a key no one
 * can use or delete. keygen.5 is a proof bound to the session, never a
 * claim.
 *
 * A message that fails any check is rejected with its error code and leaves
 * the state machine exactly as it was (the caller normally aborts the
 * session). Output buffers are OPENSSL_malloc'd; free with OPENSSL_free. */
#ifndef HK_KEYGEN_H
#define HK_KEYGEN_H

#include "mpc/share.h"
#include "mpc/zk.h"

typedef struct hk_keygen hk_keygen;

/* P1 (client). rp: the server's ring-Pedersen parameters, already verified
 * with hk_prm_verify (it is copied). pbits: 2048 or 3072. */
HK_WUR hk_err hk_keygen_p1_new(hk_curve_id curve, const unsigned char *sid,
                               const unsigned char *kid, int pbits,
                               const hk_rped *rp, hk_keygen **out);
/* P1, before hk_keygen_start: use *sk (a key of kg's Paillier size from
 * hk_paillier_keygen_from_primes: the client's prime pool) instead of
 * generating one. Takes it (*sk becomes NULL; kg frees it if unused);
 * *sk NULL: no-op. HK_ERR_ARG for a key of another size (*sk kept). */
HK_WUR hk_err hk_keygen_p1_use_paillier(hk_keygen *kg, hk_paillier_sk **sk);
/* P2 (server). min_pbits: the smallest Paillier size it accepts. sec: its
 * own ring-Pedersen setup (borrowed: must outlive the state machine). */
HK_WUR hk_err hk_keygen_p2_new(hk_curve_id curve, const unsigned char *sid,
                               const unsigned char *kid, int min_pbits,
                               const hk_rped_secret *sec, hk_keygen **out);
void hk_keygen_free(hk_keygen *kg);

/* P1 only: the first message. */
HK_WUR hk_err hk_keygen_start(hk_keygen *kg, unsigned char **out,
                              size_t *outlen);
/* Consumes the peer's next message; *out is NULL when nothing is to be
 * sent. */
HK_WUR hk_err hk_keygen_recv(hk_keygen *kg, const unsigned char *in,
                             size_t inlen, unsigned char **out, size_t *outlen);
int hk_keygen_done(const hk_keygen *kg);
/* P1, once done and the share stored: keygen.5. */
HK_WUR hk_err hk_keygen_confirm(hk_keygen *kg, unsigned char **out,
                                size_t *outlen);
/* P1: keygen.5 made; P2: keygen.5 received and verified. */
int hk_keygen_confirmed(const hk_keygen *kg);
/* Hands over the finished share (once; the caller frees it). */
HK_WUR hk_err hk_keygen_take_share(hk_keygen *kg, hk_share **out);
/* The curve a keygen.1 message asks for (so the server can create its
 * state machine); the state machine checks it again. */
HK_WUR hk_err hk_keygen_peek_curve(const unsigned char *in, size_t inlen,
                                   hk_curve_id *curve);

#endif
