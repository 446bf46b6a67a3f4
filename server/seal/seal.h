/* Sealing of server secrets at rest: AES-256-GCM under a key-encryption key
 * (KEK).
 *
 * Owns the KEK interface and key ring, the key-file back end, the
 * sealed-blob format and the associated data that binds a sealed server
 * share to its key id, owner and version. The PKCS#11 back end is in
 * seal_pkcs11.c (declared below).
 *
 * KEK interface. A KEK back end is a small vtable (hk_kek_ops) that performs
 * AES-256-GCM with a 96-bit nonce the back end chooses, so a back end whose
 * key never leaves its hardware (PKCS#11 C_Encrypt / C_Decrypt with
 * CKM_AES_GCM) plugs in with hk_kek_new. The key-file back end
 * (hk_kek_load_file) keeps the 32-byte key in OpenSSL's secure heap (when
 * initialised) and wipes it on free. Back ends must be safe to call from
 * several threads at once.
 *
 * KEK id. Every KEK has an 8-byte id that names its key value without
 * revealing it:
 *  - key file: the first 8 bytes of SHA-256("halfkey kek id v1" || key);
 *  - PKCS#11: the first 8 bytes of the GCM tag of 16 zero bytes encrypted
 *    under the all-zero 96-bit IV with associated data "halfkey kek id v1"
 *    (a GMAC-like fingerprint computed inside the HSM). Sealing never uses
 *    the all-zero nonce (the back end draws again; a random nonce is zero
 *    with probability 2^-96 anyway), so this fixed-IV encryption never
 *    reuses a nonce of a sealed blob.
 *
 * Key ring. A KEK handle (hk_kek) is a ring: one primary KEK that seals,
 * plus older KEKs (hk_kek_add_previous) used only to open blobs whose KEK
 * id they match. That is how the server keeps working while `halfkeyd
 * reseal` moves blobs to a new KEK.
 *
 * Sealed blob (version 2):
 *
 *   version (1 byte, 0x02) || KEK id (8) || nonce (12)
 *   || ciphertext (= plaintext length) || GCM tag (16)
 *
 * The GCM associated data is the version byte and the KEK id followed by
 * the caller's associated data, so both are authenticated. Version 1 blobs
 * (no KEK id) are not read: nothing was deployed with them. Nonces are
 * random (96 bits): NIST SP 800-38D allows 2^32 seals under one KEK, far
 * above the number of shares a server writes between KEK rotations. */
#ifndef HK_SEAL_H
#define HK_SEAL_H

#include <stddef.h>

#include "common/error.h"
#include "mpc/transcript.h"

#define HK_KEK_LEN 32 /* AES-256 */
#define HK_KEK_ID_LEN 8
#define HK_KEK_RING_MAX 8 /* primary + previous KEKs in one ring */
#define HK_SEAL_VERSION 2
#define HK_SEAL_NONCE_LEN 12
#define HK_SEAL_TAG_LEN 16
#define HK_SEAL_HEADER_LEN (1 + HK_KEK_ID_LEN + HK_SEAL_NONCE_LEN)
#define HK_SEAL_OVERHEAD (HK_SEAL_HEADER_LEN + HK_SEAL_TAG_LEN)
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
    /* Writes the KEK id (see above). */
    hk_err (*id)(void *impl, unsigned char id[HK_KEK_ID_LEN]);
    /* Checks the key is usable now; NULL if it always is. why (may be
     * NULL) receives a one-line reason on failure. */
    hk_err (*health)(void *impl, char *why, size_t whylen);
} hk_kek_ops;

/* Wraps a back end in a one-KEK ring (it is the primary) and computes its
 * id. Takes ownership of impl, also on failure (then ops->free(impl) has
 * been called). */
HK_WUR hk_err hk_kek_new(const hk_kek_ops *ops, void *impl, hk_kek **out);
/* Frees the ring and every KEK in it. */
void hk_kek_free(hk_kek *kek);
/* Moves the KEKs of `old` into `ring` as previous KEKs (open only) and
 * frees old's handle; takes ownership of old also on failure (then it is
 * freed). HK_ERR_EXISTS if one of them has the id of a KEK already in the
 * ring (the same key configured twice), HK_ERR_TOO_BIG above
 * HK_KEK_RING_MAX KEKs. */
HK_WUR hk_err hk_kek_add_previous(hk_kek *ring, hk_kek *old);
/* The primary's back-end name ("file", "pkcs11"). */
const char *hk_kek_name(const hk_kek *kek);
/* The number of KEKs in the ring (1 + previous KEKs). */
size_t hk_kek_count(const hk_kek *kek);
/* The primary's id. */
void hk_kek_id(const hk_kek *kek, unsigned char id[HK_KEK_ID_LEN]);
/* 16 lowercase hex digits and a NUL. */
void hk_kek_id_hex(const unsigned char id[HK_KEK_ID_LEN], char hex[17]);
/* Where id is in the ring: 1 the primary, 2 a previous KEK, 0 absent. */
int hk_kek_find(const hk_kek *kek, const unsigned char id[HK_KEK_ID_LEN]);
/* Checks the primary is usable now (for PKCS#11: the session is logged in
 * and a test encryption gives the KEK's id). HK_OK, or the back end's
 * error with a one-line reason in why (may be NULL). */
HK_WUR hk_err hk_kek_health(const hk_kek *kek, char *why, size_t whylen);
/* The KEK id a sealed blob names. HK_ERR_SEAL if it is too short or not of
 * version HK_SEAL_VERSION. Does not authenticate anything. */
HK_WUR hk_err hk_sealed_kek_id(const unsigned char *in, size_t inlen,
                               unsigned char id[HK_KEK_ID_LEN]);

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
 * HK_ERR_TOO_BIG) bound to aad, under the ring's primary KEK. *out is
 * OPENSSL_malloc'd (not secret: OPENSSL_free it), *outlen = len +
 * HK_SEAL_OVERHEAD. */
HK_WUR hk_err hk_seal(const hk_kek *kek, const unsigned char *aad,
                      size_t aadlen, const unsigned char *in, size_t len,
                      unsigned char **out, size_t *outlen);
/* Opens a sealed blob with the KEK of the ring whose id it names.
 * HK_ERR_SEAL for any blob that is truncated, of an unknown version,
 * altered, sealed under a KEK not in the ring (logged once per call:
 * "sealed under KEK <id>, not configured") or bound to other associated
 * data; HK_ERR_TOO_BIG above HK_SEAL_MAX. *out holds the
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
/* Associated data of a sealed presignature record (its k2 and r^N,
 * server/store/db.h "presigs"): the label "halfkey presignature", the key
 * id, the owner and the presignature id, encoded as hk_share_aad's, so a
 * presignature blob opens neither as a share nor as another presignature.
 * HK_PRESIG_AAD_MAX bytes suffice. */
#define HK_PRESIG_AAD_MAX                                                      \
    (4 + 32 + 4 + HK_ID_LEN + 4 + HK_SUB_MAX + 4 + HK_ID_LEN)
HK_WUR hk_err hk_presig_aad(const unsigned char kid[HK_ID_LEN], const char *sub,
                            const unsigned char psid[HK_ID_LEN],
                            unsigned char *out, size_t *len);

/* --- PKCS#11 back end (seal_pkcs11.c) -------------------------------------
 * The KEK is an AES-256 secret key inside a PKCS#11 token (an HSM), used
 * through C_Encrypt / C_Decrypt with CKM_AES_GCM; it never leaves the
 * token. The module is loaded with dlopen and initialised with
 * CKF_OS_LOCKING_OK (once per process and module path, reference counted);
 * one session stays open and logged in as the user for the KEK's life,
 * and operations run on a small mutex-guarded pool of sessions, so the
 * KEK is safe to use from several threads. */

#define HK_P11_PIN_MAX 255
#define HK_P11_LABEL_MAX 32 /* CK_TOKEN_INFO.label */
#define HK_P11_KEY_LABEL_MAX 128

typedef struct {
    const char *module;    /* path of the PKCS#11 module (.so) */
    const char *token;     /* token label, 1..HK_P11_LABEL_MAX bytes */
    const char *key_label; /* CKA_LABEL, 1..HK_P11_KEY_LABEL_MAX bytes */
    const char *pin;       /* user PIN, 1..HK_P11_PIN_MAX bytes */
} hk_p11_params;

/* Reads the user PIN into pin[HK_P11_PIN_MAX + 1]: from the file pin_file
 * (a regular file that group and others cannot access; one line, a final
 * newline dropped) or from the environment variable pin_env; exactly one
 * of them is given (non-NULL, non-empty). HK_ERR_CONFIG with a reason
 * (never the PIN) in why. */
HK_WUR hk_err hk_p11_pin_load(const char *pin_file, const char *pin_env,
                              char *pin, char *why, size_t whylen);
/* Loads the module, finds the token by label, logs in as the user, finds
 * the one secret key with CKA_LABEL key_label and checks it is CKK_AES,
 * CKA_VALUE_LEN 32, CKA_SENSITIVE, not CKA_EXTRACTABLE, with CKA_ENCRYPT
 * and CKA_DECRYPT. HK_ERR_CONFIG (module not loadable, no such token, no
 * such key, several keys with that label, wrong attributes), HK_ERR_PIN
 * (wrong PIN), HK_ERR_PIN_LOCKED, HK_ERR_CRYPTO (another PKCS#11
 * failure); why names what is wrong. */
HK_WUR hk_err hk_kek_load_pkcs11(const hk_p11_params *p, hk_kek **out,
                                 char *why, size_t whylen);
/* Creates the key inside the token with C_GenerateKey(CKM_AES_KEY_GEN):
 * 32 bytes, CKA_TOKEN, CKA_PRIVATE, CKA_SENSITIVE, not CKA_EXTRACTABLE,
 * CKA_ENCRYPT and CKA_DECRYPT only, CKA_LABEL key_label. HK_ERR_EXISTS if a
 * secret key with that label exists; otherwise the codes of
 * hk_kek_load_pkcs11. */
HK_WUR hk_err hk_kek_generate_pkcs11(const hk_p11_params *p, char *why,
                                     size_t whylen);

#endif
