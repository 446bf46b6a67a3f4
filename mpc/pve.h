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
 * 32-byte opening randomness) so a verifier can redo it from an opening:
 * the OAEP seed IS the 32-byte seed (RFC 8017 7.1.1 EME-OAEP encoding done
 * here, then the raw RSA permutation via EVP_PKEY_encrypt with
 * RSA_NO_PADDING: OpenSSL's OAEP call draws its seed itself); the ECIES
 * ephemeral scalar e is the 32 bytes themselves (version 2, e in [1, n))
 * or SHA-512("halfkey-pve-ecies-eph" || seed) mod n (version 1). The RSA
 * seeds of the ciphertexts that stay closed are fresh from the OS CSPRNG
 * and wiped, so each closed RSA ciphertext is an ordinary OAEP ciphertext.
 * Version 2 ECIES ephemerals are related within a row (below). Every
 * ciphertext's label (OAEP label, GCM AAD) is H(version, type, curve, key
 * id, epoch, backup key fingerprint, Q1) || row || column: a ciphertext is
 * bound to its key, epoch and place.
 *
 * Construction: cut-and-choose verifiable encryption of a discrete log
 * (Camenisch-Damgard, "Verifiable encryption, group encryption, and their
 * applications to separable group signatures and signature sharing
 * schemes", ASIACRYPT 2000; the same shape as the EC-PVE coinbase/cb-mpc
 * documents: kappa rows of two encrypted shares of x with their points,
 * Fiat-Shamir bits, one share opened per row by its encryption randomness)
 * with a K-way instead of a 2-way choice per row, K^T = 2^128:
 *   RSA (versions 1 and 2) and ECIES version 1: K = 4, T = 64;
 *   ECIES version 2: K = 16, T = 32.
 *   prover, for rows i = 0..T-1, columns j = 0..K-1:
 *     r_i random in [1, q); R_i = r_i*G;
 *     v_ij = r_i + j*x1 mod q (all non-zero, else new r_i);
 *     c_ij = Enc_bk(label_ij, v_ij; seed_ij): RSA, and ECIES version 1,
 *     seed_ij 32 random bytes; ECIES version 2, ephemeral
 *     e_ij = a_i + j*b_i mod n with a_i, b_i random in [1, n) (n the
 *     P-256 order; all e_ij non-zero and a_i != b_i, else new a_i, b_i),
 *     so E_ij = a_i*G + j*(b_i*G) and the shared secret e_ij*B =
 *     a_i*B + j*(b_i*B) cost four scalar multiplications per row and
 *     point additions (mpc/pve_p256.h) instead of 2K multiplications;
 *   challenge: e = (e_0..e_T-1), e_i in {0..K-1}: the 128 bits of
 *     H(transcript) where the transcript (mpc/transcript.h: tag-length-
 *     value, domain-separated; label "pve", role P1, the key's curve and
 *     key id, all-zero session id) holds the version, backup key type,
 *     curve, K, T, epoch, the backup key's fingerprint, Q1, every R_i and
 *     every c_ij in order;
 *   response: per row, the opening (v_i,e_i, seed_i,e_i) (version 2 ECIES:
 *     the ephemeral e_i,e_i in place of the seed). The blob carries
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
 * = v*G by the recomputation, and the verifier re-encrypted v from the
 * opening alone; encryption is perfectly correct: for ECIES the decryptor's
 * d*E = d*(e*G) = e*B is the verifier's shared secret). Decryption fails
 * only if no closed column of any row is good; then every row has exactly
 * one good column and the challenge must hit it in all rows: probability
 * K^-T = 2^-128 per hash query (random oracle). And any good closed column
 * yields x1: u - v = (j - e_i)*x1 with j - e_i in {-(K-1)..K-1} \ {0}
 * invertible mod q. The verifier never looks at how the closed ciphertexts
 * were made (the relation between a version 2 row's ephemerals is the
 * prover's business): the argument is the same for every version.
 * Compared with the binary choice of cb-mpc (kappa = 128 rows of 2): with
 * K = 4 the same 256 encryptions for the prover and half the openings for
 * the verifier (64 re-encryptions instead of 128); ECIES version 2 has 512
 * ciphertexts but 128 scalar multiplications for the prover, and 32
 * re-encryptions for the verifier.
 *
 * What a verifier (the server) learns from a blob: nothing about x1 beyond
 * Q1, under the IND-CPA security of the backup key's encryption
 * (zero-knowledge by simulation: the opened v_i,e_i = r_i + e_i*x1 is
 * uniform because r_i is; R_i = v*G - e_i*Q1 follows; the K - 1 closed
 * ciphertexts of a row are encryptions with unrevealed randomness). For
 * version 2 ECIES the closed ephemerals of row i are e_i,c + d*b_i
 * (c the opened column, d = j - c != 0): the opened e_i,c = a_i + c*b_i is
 * uniform and independent of b_i (a_i is uniform), the blob shows
 * b_i*G (from E_ij - E_ic) but never b_i, and each closed shared secret is
 * e_i,c*B + d*(b_i*B), so finding any of them is finding b_i*B =
 * CDH(b_i*G, B): the closed columns' HKDF keys are as hidden as the key of
 * one ECIES ciphertext with ephemeral b_i*G (CDH, HKDF as a random oracle:
 * the same assumption ECIES itself rests on), and distinct E_ij and labels
 * keep every column's key and GCM nonce apart. It also sees the key id,
 * epoch, curve and the backup key's fingerprint, which are public. Whoever
 * holds the backup private key learns x1: keep it offline.
 *
 * Versions: new blobs are version 2. Version 1 blobs (K = 4, T = 64 for
 * both key types, ECIES ephemerals from hashed seeds) are still verified
 * and decrypted (a backup made before must restore, and its proof is as
 * sound); hk_pve_peek refuses any other version with HK_ERR_VERSION.
 *
 * Blob format, versions 1 and 2 (all integers big-endian; exact sizes,
 * nothing after the last row, at most HK_PVE_MAX_BLOB bytes):
 *   "HKPV" | version (1) | backup key type (1) | curve (1) | K (1) | T (1)
 *   | key id (16) | epoch (8) | backup key fingerprint (32) | Q1 (33)
 *   | body length (4)
 *   body: h (32), then T rows of
 *         K x (length (2) | c_ij) | v (32) | seed or ephemeral (32)
 * where the length of every ciphertext must be the key type's (81 or 384)
 * and K, T those of the version and key type. Sizes: ECIES 44,678 bytes
 * (version 1: 25,478), RSA 103,046 bytes.
 *
 * Cost: encrypt K*T encryptions (ECIES version 2: 4T scalar
 * multiplications and 2(K-1)T point additions for them) + T fixed-base
 * multiplications, the rows split over two threads started and joined in
 * the call (the caller's thread does half); verify T re-encryptions + T
 * fixed-base multiplications + about T additions, one thread; decrypt =
 * verify + (normally) one decryption. The ECIES backup point is decoded
 * once per call (OpenSSL EC_POINT), not per ciphertext. Nothing in this
 * file does I/O.
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

#define HK_PVE_VERSION 2 /* written; version 1 still read */
/* ciphertexts per row (the challenge space of a row) and rows:
 * K^T = 2^128 */
#define HK_PVE_ECIES_K 16 /* version 2 */
#define HK_PVE_ECIES_T 32
#define HK_PVE_RSA_K 4 /* and every key type in version 1 */
#define HK_PVE_RSA_T 64
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
 * `epoch` (a version 2 blob; two threads, the second started and joined
 * inside the call). `*blob` is malloc'd (free with OPENSSL_free). */
HK_WUR hk_err hk_pve_encrypt(const hk_pve_pub *bk, hk_curve_id curve,
                             const unsigned char kid[HK_ID_LEN],
                             unsigned long epoch, const hk_scalar *x1,
                             unsigned char **blob, size_t *len);
/* HK_OK iff `blob` is a well-formed version 1 or 2 blob for (curve, kid, epoch,
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
