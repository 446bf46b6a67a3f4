/* Sealing of server secrets at rest: AES-256-GCM under a key-encryption key
 * (KEK).
 *
 * Owns the KEK interface, its key-file back end, the sealed-blob format and
 * the associated data that binds a sealed server share to its key id, owner
 * and version.
 *
 * KEK interface. A KEK is an opaque handle over a small vtable (hk_kek_ops)
 * that performs AES-256-GCM with a 96-bit nonce the back end chooses, so a
 * back end whose key never leaves its hardware (PKCS#11 C_Encrypt /
 * C_Decrypt with CKM_AES_GCM, issue 4) plugs in with hk_kek_new and callers
 * do not change. The key-file back end (hk_kek_load_file) keeps the 32-byte
 * key in OpenSSL's secure heap (when initialised) and wipes it on free.
 * Back ends must be safe to call from several threads at once (the file
 * back end is: it only reads its key).
 *
 * Sealed blob (version 1):
 *
 *   version (1 byte, 0x01) || nonce (12) || ciphertext (= plaintext length)
 *   || GCM tag (16)
 *
 * The GCM associated data is the version byte followed by the caller's
 * associated data, so the version is authenticated too. Nonces are random
 * (96 bits): NIST SP 800-38D allows 2^32 seals under one KEK, far above the
 * number of shares a server writes between KEK rotations. */
#ifndef HK_SEAL_H
#define HK_SEAL_H

#include <stddef.h>

#include "mpc/error.h"
#include "mpc/transcript.h"

#define HK_KEK_LEN 32 /* AES-256 */
#define HK_SEAL_VERSION 1
#define HK_SEAL_NONCE_LEN 12
#define HK_SEAL_TAG_LEN 16
#define HK_SEAL_OVERHEAD (1 + HK_SEAL_NONCE_LEN + HK_SEAL_TAG_LEN)
#define HK_SEAL_MAX_PLAIN (1u << 20) /* 1 MiB: records are far smaller */
#define HK_SEAL_MAX (HK_SEAL_MAX_PLAIN + HK_SEAL_OVERHEAD)

/* Longest JWT subject (owner) the server stores, in bytes. */
#define HK_SUB_MAX 255
/* hk_share_aad output: label, kid, subject and epoch, each with a 4-byte
 * length prefix. */
#define HK_SHARE_AAD_MAX (4 + 32 + 4 + HK_ID_LEN + 4 + HK_SUB_MAX + 4 + 8)

typedef struct hk_kek hk_kek;

/* A KEK back end. `impl` is the back end's own state. */
typedef struct {
    const char *name; /* "file", "pkcs11", ... */
    /* AES-256-GCM encryption of in[0..len) with associated data aad under
     * a fresh 96-bit nonce the back end chooses and writes to `nonce`;
     * writes ciphertext || tag (len + HK_SEAL_TAG_LEN bytes) to out.
     * len >= 1; aad may be NULL when aadlen is 0. */
    hk_err (*encrypt)(void *impl, const unsigned char *aad, size_t aadlen,
                      const unsigned char *in, size_t len,
                      unsigned char nonce[HK_SEAL_NONCE_LEN],
                      unsigned char *out);
    /* Decrypts ciphertext || tag (len > HK_SEAL_TAG_LEN bytes) into out
     * (len - HK_SEAL_TAG_LEN bytes). HK_ERR_SEAL if authentication fails;
     * out's content is then undefined (the caller wipes it). */
    hk_err (*decrypt)(void *impl, const unsigned char nonce[HK_SEAL_NONCE_LEN],
                      const unsigned char *aad, size_t aadlen,
                      const unsigned char *in, size_t len, unsigned char *out);
    /* Releases impl and wipes any key material it holds. */
    void (*free)(void *impl);
} hk_kek_ops;

/* Wraps a back end in a KEK handle. Takes ownership of impl, also on
 * failure (then ops->free(impl) has been called). */
HK_WUR hk_err hk_kek_new(const hk_kek_ops *ops, void *impl, hk_kek **out);
void hk_kek_free(hk_kek *kek);
/* The back end's name ("file" for hk_kek_load_file). */
const char *hk_kek_name(const hk_kek *kek);

/* Key-file back end. `why`, when not NULL, receives a one-line reason on
 * failure (whylen bytes at most, NUL-terminated).
 *
 * Creates `path` with mode 0600 holding HK_KEK_LEN bytes from the OS CSPRNG
 * (getrandom), fsyncs it and its directory. HK_ERR_EXISTS if the path exists
 * (never overwrites, never follows a symlink), HK_ERR_RAND, HK_ERR_IO. */
HK_WUR hk_err hk_kek_generate_file(const char *path, char *why, size_t whylen);
/* Loads a key file. HK_ERR_CONFIG if it is missing, not a regular file,
 * accessible to group or others (any of mode 077), or not exactly
 * HK_KEK_LEN bytes; HK_ERR_IO if reading fails. */
HK_WUR hk_err hk_kek_load_file(const char *path, hk_kek **out, char *why,
                               size_t whylen);

/* Seals len bytes (1 <= len <= HK_SEAL_MAX_PLAIN, else HK_ERR_ARG /
 * HK_ERR_TOO_BIG) bound to aad. *out is OPENSSL_malloc'd (not secret:
 * OPENSSL_free it), *outlen = len + HK_SEAL_OVERHEAD. */
HK_WUR hk_err hk_seal(const hk_kek *kek, const unsigned char *aad,
                      size_t aadlen, const unsigned char *in, size_t len,
                      unsigned char **out, size_t *outlen);
/* Opens a sealed blob. HK_ERR_SEAL for any blob that is truncated, of an
 * unknown version, altered, sealed under another KEK or bound to other
 * associated data; HK_ERR_TOO_BIG above HK_SEAL_MAX. *out holds the
 * secret plaintext: OPENSSL_clear_free(*out, *outlen). */
HK_WUR hk_err hk_unseal(const hk_kek *kek, const unsigned char *aad,
                        size_t aadlen, const unsigned char *in, size_t inlen,
                        unsigned char **out, size_t *outlen);

/* Associated data of a sealed server share: the label "halfkey server
 * share", the key id, the owner (JWT subject, 1..HK_SUB_MAX bytes) and the
 * share epoch (8 bytes big-endian), each prefixed by its 4-byte big-endian
 * length, so no two (kid, sub, epoch) give the same bytes. *len: the
 * capacity of out on entry (HK_SHARE_AAD_MAX suffices), the length written
 * on return; HK_ERR_TOO_BIG if out is too small. */
HK_WUR hk_err hk_share_aad(const unsigned char kid[HK_ID_LEN], const char *sub,
                           unsigned long epoch, unsigned char *out,
                           size_t *len);

#endif
