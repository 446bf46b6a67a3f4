/* Publicly verifiable encryption (PVE) of the client share x1.
 *
 * Backup of P1's share: x1 (a scalar mod q of the key's curve) is encrypted
 * under a backup public key (held offline by the user or an escrow)
 * together with a proof that anyone holding only the backup PUBLIC key and
 * Q1 = x1*G can check: the blob decrypts to log_G(Q1). The server verifies
 * a blob against the Q1 it stored at keygen before it keeps it; recovery
 * decrypts on a new device and re-checks x1*G = Q1 (DESIGN.md section 2,
 * "Backup and recovery (PVE)").
 *
 * Backup key types (PEM through OpenSSL; public keys as SubjectPublicKeyInfo,
 * private keys as PKCS#8, optionally passphrase-encrypted):
 *  - ECIES on P-256: E = e*G, Z = x(e*B), (key, nonce) = HKDF-SHA256(ikm Z,
 *    salt E || B, info "halfkey-pve-ecies-v1" || label), AES-256-GCM with the
 *    label as AAD; ciphertext E (33, compressed) || ct (32) || tag (16).
 *  - RSA-OAEP-3072 (e = 65537, SHA-256 and MGF1-SHA-256, the label as OAEP
 *    label); ciphertext 384 bytes. Decryption is OpenSSL's own OAEP.
 * Encryption is a deterministic function of (public key, label, plaintext,
 * 32-byte seed) so a verifier can redo it from an opening: the ECIES
 * ephemeral scalar is e = SHA-512("halfkey-pve-ecies-eph" || seed) mod n;
 * the OAEP seed IS the 32-byte seed (RFC 8017 7.1.1 EME-OAEP encoding done
 * here, then the raw RSA permutation via EVP_PKEY_encrypt with
 * RSA_NO_PADDING: OpenSSL's OAEP call draws its seed itself). The seeds of
 * the ciphertexts that stay closed are fresh from the OS CSPRNG and wiped,
 * so each closed ciphertext is an ordinary IND-CCA2 ECIES / OAEP ciphertext.
 * Every ciphertext's label (OAEP label, GCM AAD) is H(version, type, curve,
 * key id, epoch, backup key fingerprint, Q1) || row || column: a ciphertext
 * is bound to its key, epoch and place.
 *
 * Construction: cut-and-choose verifiable encryption of a discrete log
 * (Camenisch-Damgard, "Verifiable encryption, group encryption, and their
 * applications to separable group signatures and signature sharing
 * schemes", ASIACRYPT 2000; the same shape as the EC-PVE coinbase/cb-mpc
 * documents: kappa rows of two encrypted shares of x with their points,
 * Fiat-Shamir bits, one share opened per row by its encryption randomness)
 * with a 4-way instead of a 2-way choice per row:
 *   prover, for rows i = 0..T-1 (T = 64), K = 4 columns:
 *     r_i random in [1, q); R_i = r_i*G;
 *     v_ij = r_i + j*x1 mod q (j = 0..3, all non-zero, else new r_i);
 *     c_ij = Enc_bk(label_ij, v_ij; seed_ij), seed_ij 32 random bytes;
 *   challenge: e = (e_0..e_63), e_i in {0..3}: the 128 bits of
 *     H(transcript) where the transcript (mpc/transcript.h: tag-length-
 *     value, domain-separated; label "pve", role P1, the key's curve and
 *     key id, all-zero session id) holds the version, backup key type,
 *     curve, K, T, epoch, the backup key's fingerprint, Q1, every R_i and
 *     every c_ij in order;
 *   response: per row, the opening (v_i,e_i, seed_i,e_i). The blob carries
 *     the digest h instead of the R_i (the compact form of Fiat-Shamir,
 *     as in a Schnorr signature (e, s)): R_i is a function of the opening
 *     and the challenge, R_i = v*G - e_i*Q1.
 *   verifier: per row, v in [1, q) and R_i = v*G - e_i*Q1 with e_i read
 *     from h; the transcript over the recomputed R_i and the c_ij must
 *     hash to h; re-encrypting v with the seed gives c_i,e_i byte for
 *     byte.
 *   decryptor: decrypts a closed c_ij (j != e_i) to u and takes
 *     x1 = (u - v_i,e_i) / (j - e_i) mod q; returns it only if x1*G = Q1.
 *
 * Soundness (>= 128 bits). Fix a hash query (header, R_i, c_ij). Call
 * column j of row i good if c_ij decrypts (under the backup key) to a u
 * with u*G = R_i + j*Q1. A blob that verifies answers a query whose
 * output is h, and has its opened column good in every row (R_i + e_i*Q1
 * = v*G by the recomputation, and the verifier re-encrypted v; encryption
 * is perfectly correct). Decryption fails only if no closed column of any row
 * is good; then every row has exactly one good column and the challenge must
 * hit it in all rows: probability 4^-64 = 2^-128 per hash query (random
 * oracle). And any good closed column yields x1: u - v = (j - e_i)*x1 with j -
 * e_i in {-3..3} \ {0} invertible mod q. Compared with the binary choice of
 * cb-mpc (kappa = 128 rows of 2), this is the same 256 encryptions for the
 * prover but half the openings for the verifier (64 re-encryptions instead of
 * 128).
 *
 * What a verifier (the server) learns from a blob: nothing about x1 beyond
 * Q1, under the IND-CPA security of the backup key's encryption
 * (zero-knowledge by simulation: the opened v_i,e_i = r_i + e_i*x1 is
 * uniform because r_i is; R_i = v*G - e_i*Q1 follows; the three closed
 * ciphertexts of a row are encryptions with unrevealed seeds). It also
 * sees the key id, epoch, curve and the backup key's fingerprint, which
 * are public. Whoever holds the backup private key learns x1: keep it
 * offline.
 *
 * Blob format, version 1 (all integers big-endian; exact sizes, nothing
 * after the last row, at most HK_PVE_MAX_BLOB bytes):
 *   "HKPV" | version (1) | backup key type (1) | curve (1) | K (1) | T (1)
 *   | key id (16) | epoch (8) | backup key fingerprint (32) | Q1 (33)
 *   | body length (4)
 *   body: h (32), then T rows of
 *         K x (length (2) | c_ij) | v (32) | seed (32)
 * where the length of every ciphertext must be the key type's (81 or 384).
 * Sizes: ECIES 25,478 bytes, RSA 103,046 bytes.
 *
 * Cost: encrypt 256 encryptions + 64 fixed-base multiplications; verify 64
 * re-encryptions + 64 fixed-base multiplications + 48 additions (on
 * average); decrypt = verify + (normally) one decryption. The ECIES
 * backup point is decoded once per call (OpenSSL EC_POINT), not per
 * ciphertext. Nothing in this file does I/O.
 *
 * Errors: HK_ERR_ARG (bad arguments), HK_ERR_DECODE (malformed PEM or blob),
 * HK_ERR_VERSION (blob version), HK_ERR_TOO_BIG (size bound), HK_ERR_CURVE
 * (unknown curve), HK_ERR_CONFIG (unsupported backup key: not P-256 or RSA
 * 3072 with e = 65537), HK_ERR_PIN (encrypted private key and no or a wrong
 * passphrase), HK_ERR_BINDING (blob of another key id, epoch, curve, Q1 or
 * backup key), HK_ERR_POINT / HK_ERR_SCALAR (bad encodings inside a blob),
 * HK_ERR_PROOF (an opening does not verify, or no closed ciphertext
 * decrypts to log_G(Q1)), HK_ERR_CRYPTO / HK_ERR_NOMEM / HK_ERR_RAND. */
#ifndef HK_PVE_H
#define HK_PVE_H

#include <stddef.h>

#include "mpc/curve.h"
#include "mpc/transcript.h"

#define HK_PVE_VERSION 1
#define HK_PVE_K 4  /* ciphertexts per row (challenge space per row) */
#define HK_PVE_T 64 /* rows: 4^-64 = 2^-128 */
#define HK_PVE_SEED_LEN 32
#define HK_PVE_MAX_BLOB 131072
#define HK_PVE_HDR_LEN 102

typedef enum { HK_PVE_ECIES_P256 = 1, HK_PVE_RSA_OAEP_3072 = 2 } hk_pve_type;

typedef struct hk_pve_pub hk_pve_pub;
typedef struct hk_pve_priv hk_pve_priv;

/* ---- backup keys ---------------------------------------------------------
 * Loads a public key from PEM "PUBLIC KEY" (SubjectPublicKeyInfo): a P-256
 * EC key or an RSA key of exactly 3072 bits with e = 65537
 * (HK_ERR_CONFIG otherwise). */
HK_WUR hk_err hk_pve_pub_from_pem(const char *pem, size_t len,
                                  hk_pve_pub **out);
/* Loads a private key from PEM PKCS#8 ("PRIVATE KEY", or "ENCRYPTED PRIVATE
 * KEY" with `passphrase`; NULL when there is none: never prompts). */
HK_WUR hk_err hk_pve_priv_from_pem(const char *pem, size_t len,
                                   const char *passphrase, hk_pve_priv **out);
/* New key pair from the OS CSPRNG. */
HK_WUR hk_err hk_pve_keygen(hk_pve_type type, hk_pve_priv **out);
/* PEM encodings (malloc'd, NUL-terminated, `*len` without the NUL; free
 * with OPENSSL_clear_free / OPENSSL_free). The private key is PKCS#8,
 * encrypted (PBES2, AES-256-CBC) when `passphrase` is non-NULL. */
HK_WUR hk_err hk_pve_pub_to_pem(const hk_pve_pub *k, char **pem, size_t *len);
HK_WUR hk_err hk_pve_priv_to_pem(const hk_pve_priv *k, const char *passphrase,
                                 char **pem, size_t *len);
void hk_pve_pub_free(hk_pve_pub *k);
void hk_pve_priv_free(hk_pve_priv *k);
/* The public half of a private key (owned by it). */
const hk_pve_pub *hk_pve_priv_pub(const hk_pve_priv *k);
hk_pve_type hk_pve_pub_type(const hk_pve_pub *k);
/* SHA-256("halfkey-pve-bk-v1" || type || DER SubjectPublicKeyInfo). */
void hk_pve_pub_fingerprint(const hk_pve_pub *k, unsigned char fp[HK_HASH_LEN]);

/* ---- blobs --------------------------------------------------------------
 * Encrypts x1 (non-zero, of `curve`) for key `kid` at share version
 * `epoch`. `*blob` is malloc'd (free with OPENSSL_free). */
HK_WUR hk_err hk_pve_encrypt(const hk_pve_pub *bk, hk_curve_id curve,
                             const unsigned char kid[HK_ID_LEN],
                             unsigned long epoch, const hk_scalar *x1,
                             unsigned char **blob, size_t *len);
/* HK_OK iff `blob` is a well-formed version-1 blob for (curve, kid, epoch,
 * Q1, bk) whose proof verifies: then it decrypts to log_G(Q1) with the
 * backup private key (soundness 2^-128). */
HK_WUR hk_err hk_pve_verify(const hk_pve_pub *bk, hk_curve_id curve,
                            const unsigned char kid[HK_ID_LEN],
                            unsigned long epoch, const hk_point *Q1,
                            const unsigned char *blob, size_t len);
/* Verifies the blob as hk_pve_verify with the private key's public half,
 * then decrypts x1 and checks x1*G = Q1. */
HK_WUR hk_err hk_pve_decrypt(const hk_pve_priv *bk, hk_curve_id curve,
                             const unsigned char kid[HK_ID_LEN],
                             unsigned long epoch, const hk_point *Q1,
                             const unsigned char *blob, size_t len,
                             hk_scalar *x1);

/* The header of a blob (what it claims: no proof checked, Q1 not
 * validated). HK_OK only if the whole blob has the exact size of its
 * version, type and parameters. */
typedef struct {
    unsigned version;
    hk_pve_type type;
    hk_curve_id curve;
    unsigned k, t;
    unsigned char kid[HK_ID_LEN];
    unsigned long epoch;
    unsigned char bk_fp[HK_HASH_LEN];
    hk_point q1;
} hk_pve_info;
HK_WUR hk_err hk_pve_peek(const unsigned char *blob, size_t len,
                          hk_pve_info *out);

#endif
