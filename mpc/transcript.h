/* Fiat-Shamir transcripts and hash commitments.
 *
 * Owns the one byte encoding that every hash of the protocol is computed
 * over (never JSON): each item is tag-length-value, with the tag and the
 * value each prefixed by a 4-byte big-endian length, so no two different
 * item sequences hash the same (TSSHOCK). Every transcript starts with the
 * protocol name and version, the curve, the session id, the key id, the
 * sender's role and a label naming the proof or commitment. */
#ifndef HK_TRANSCRIPT_H
#define HK_TRANSCRIPT_H

#include <stddef.h>
#include <openssl/bn.h>
#include <openssl/evp.h>

#include "mpc/curve.h"

#define HK_PROTOCOL_NAME "halfkey-2p-ecdsa"
#define HK_PROTOCOL_VERSION 1
#define HK_ID_LEN 16   /* session and key ids: 128-bit random */
#define HK_HASH_LEN 32 /* SHA-256 */

/* Roles: party 1 is the client (P1 in Lindell 2017), party 2 the server. */
typedef enum { HK_ROLE_P1 = 1, HK_ROLE_P2 = 2 } hk_role;

/* What every hash of one protocol run is bound to. */
typedef struct {
    hk_curve_id curve;
    unsigned char sid[HK_ID_LEN];
    unsigned char kid[HK_ID_LEN];
} hk_binding;

typedef struct {
    EVP_MD_CTX *md;
} hk_ts;

/* Starts a transcript for `label` sent by `role` under binding `b`. */
HK_WUR hk_err hk_ts_init(hk_ts *t, const char *label, const hk_binding *b,
                         hk_role role);
void hk_ts_free(hk_ts *t);
HK_WUR hk_err hk_ts_add(hk_ts *t, const char *tag, const void *data,
                        size_t len);
/* A non-negative BIGNUM as its minimal big-endian bytes. */
HK_WUR hk_err hk_ts_add_bn(hk_ts *t, const char *tag, const BIGNUM *bn);
HK_WUR hk_err hk_ts_add_point(hk_ts *t, const char *tag, const hk_point *p);
/* Finalises into `out` (n bytes, any length: SHA-256 in counter mode over
 * the transcript digest). The transcript cannot be used afterwards. */
HK_WUR hk_err hk_ts_final(hk_ts *t, unsigned char *out, size_t n);
/* Finalises into a scalar mod q (64 bytes reduced: bias below 2^-256). */
HK_WUR hk_err hk_ts_final_scalar(hk_ts *t, hk_curve *c, hk_scalar *out);

/* Commitment = H(transcript || nonce), nonce 32 random bytes: the caller
 * adds the committed items to `t`, then calls this. Hiding by the nonce,
 * binding by SHA-256's collision resistance. */
#define HK_NONCE_LEN 32
HK_WUR hk_err hk_commit_final(hk_ts *t, const unsigned char *nonce,
                              unsigned char out[HK_HASH_LEN]);

#endif
