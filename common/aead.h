/* The one AEAD of halfkey: AES-256-GCM with a fresh random 96-bit nonce,
 * sealed as nonce || ciphertext || tag, under caller-given associated data.
 * Used by the client keystore (keys derived from the PIN) and by the
 * server's key-file KEK; the blobs' versions and key ids are framed by
 * their owners (client/ks_keys.c, server/seal/seal.c) and bound through the
 * associated data. A nonce is never reused under a key: it is random per
 * seal, and each key seals far fewer than 2^32 blobs. */
#ifndef HK_AEAD_H
#define HK_AEAD_H

#include <stddef.h>

#include "common/error.h"

#define HK_AEAD_KEY_LEN 32
#define HK_AEAD_NONCE_LEN 12
#define HK_AEAD_TAG_LEN 16
#define HK_AEAD_OVERHEAD (HK_AEAD_NONCE_LEN + HK_AEAD_TAG_LEN)
#define HK_AEAD_MAX (1u << 24) /* plaintext bytes: far above any record */

/* out[ptlen + HK_AEAD_OVERHEAD] = nonce || AES-256-GCM(key, pt; aad) ||
 * tag. pt may be NULL when ptlen is 0; aad may be NULL when aadlen is 0.
 * HK_ERR_TOO_BIG above HK_AEAD_MAX. */
HK_WUR hk_err hk_aead_seal(const unsigned char key[HK_AEAD_KEY_LEN],
                           const unsigned char *aad, size_t aadlen,
                           const unsigned char *pt, size_t ptlen,
                           unsigned char *out);
/* Inverse of hk_aead_seal into pt[inlen - HK_AEAD_OVERHEAD]: HK_ERR_SEAL
 * if in is too short or fails authentication (pt is then wiped). */
HK_WUR hk_err hk_aead_open(const unsigned char key[HK_AEAD_KEY_LEN],
                           const unsigned char *aad, size_t aadlen,
                           const unsigned char *in, size_t inlen,
                           unsigned char *pt);

#endif
