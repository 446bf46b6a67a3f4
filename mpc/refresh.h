/* Two-phase share refresh (DESIGN.md section 2): new shares x1' = x1*r,
 * x2' = x2*r^-1 for a coin-tossed r, a fresh Paillier key and ckey' with
 * the keygen proofs; Q is unchanged.
 *
 *   P1 start            -> refresh.1  share ref, proof of possession of
 *                                     its x1, commitment to r1
 *   P2 recv refresh.1   -> refresh.2  r2
 *   P1 recv refresh.2   -> refresh.3  r1 + opening, N', ckey', proofs
 *   P2 recv refresh.3   -> refresh.4  fingerprint of the new share; P2 now
 *                                     holds the new share as PENDING
 *   P1 recv refresh.4   -> (none)     P1's new share ready: store it
 *                                     durably, then hk_refresh_confirm
 *   P1 confirm          -> refresh.5  fingerprint + proof of possession
 *                                     of x1' (bound to this session)
 *   P2 recv refresh.5   -> (none)     P2 promotes the pending share
 *
 * Interrupted anywhere, the pair keeps a working key: until refresh.5 the
 * server keeps the old share beside the pending one, and a sign or refresh
 * names the share it uses by epoch and fingerprint (hk_msg_peek_share), so
 * the server uses whichever the client has. Naming a share is a claim, not
 * a proof: the server promotes a pending share only on a proof that the
 * client holds it (refresh.5, the proof in refresh.1, or a signature made
 * with it that verifies), never because a message names it. Rejected messages
 * leave the state machine as it was. The old share passed in is borrowed. */
#ifndef HK_REFRESH_H
#define HK_REFRESH_H

#include "mpc/share.h"
#include "mpc/zk.h"

typedef struct hk_refresh hk_refresh;

/* P1. rp: the server's verified ring-Pedersen parameters (copied). */
HK_WUR hk_err hk_refresh_p1_new(const hk_share *share, const unsigned char *sid,
                                int pbits, const hk_rped *rp, hk_refresh **out);
/* P1, before refresh.2 is received: use *sk (a key of rf's Paillier size
 * from hk_paillier_keygen_from_primes: the client's prime pool) for the
 * new share instead of generating one. Takes it (*sk becomes NULL; rf
 * frees it if unused); *sk NULL: no-op. HK_ERR_ARG for a key of another
 * size (*sk kept). */
HK_WUR hk_err hk_refresh_p1_use_paillier(hk_refresh *rf, hk_paillier_sk **sk);
/* P2. sec: its own current setup (borrowed, must outlive the machine). */
HK_WUR hk_err hk_refresh_p2_new(const hk_share *share, const unsigned char *sid,
                                int min_pbits, const hk_rped_secret *sec,
                                hk_refresh **out);
void hk_refresh_free(hk_refresh *rf);

HK_WUR hk_err hk_refresh_start(hk_refresh *rf, unsigned char **out,
                               size_t *outlen);
HK_WUR hk_err hk_refresh_recv(hk_refresh *rf, const unsigned char *in,
                              size_t inlen, unsigned char **out,
                              size_t *outlen);
/* The new share (once): P1 after refresh.4, P2 (pending) after
 * refresh.3. */
HK_WUR hk_err hk_refresh_take_share(hk_refresh *rf, hk_share **out);
/* P1, after storing the new share: the confirmation message. */
HK_WUR hk_err hk_refresh_confirm(hk_refresh *rf, unsigned char **out,
                                 size_t *outlen);
/* P2: refresh.5 received, the pending share may replace the old one. */
int hk_refresh_confirmed(const hk_refresh *rf);

#endif
