/* Device attestation at keygen (issue 22, DESIGN.md section 4): the
 * server's half, in software over OpenSSL (the server has no TPM).
 *
 * 1. Challenge (POST /keygen with "attest"): the client sends its TPM's
 *    endorsement key certificate (EK cert), the EK's public area and an
 *    attestation key's (AK) public area. The EK cert must chain to the
 *    configured `attestation_roots`, the EK public area must be the
 *    standard RSA-2048 EK (AES-128-CFB, SHA-256) holding the certified
 *    key, and the AK a restricted ECDSA P-256 signing key that never
 *    leaves its TPM (fixedTPM, fixedParent, sensitiveDataOrigin). The
 *    server then makes a credential for the AK's Name under the EK
 *    (TPM2_MakeCredential, TPM 2.0 Part 1 section 24): only the TPM that
 *    holds this EK, and holds an object of that Name, can recover it.
 * 2. Answer (POST /attest): the recovered credential (proves the AK is on
 *    the EK's TPM) and a TPM2_Quote signed by the AK whose qualifying
 *    data is hk_attest_qualifying(session id, key id) (common/): the AK
 *    signed for this keygen session, a quote of another session does not
 *    verify.
 *
 * What it proves, and what it does not: SECURITY.md "Device attestation". */
#ifndef HK_SERVER_ATTEST_H
#define HK_SERVER_ATTEST_H

#include <stddef.h>

#include <openssl/x509.h>

#include "common/error.h"
#include "server/attest/tpm_wire.h"

#define HK_ATT_CERT_MAX 4096   /* an EK certificate, DER */
#define HK_ATT_CRED_LEN 32     /* the credential the TPM recovers */
#define HK_ATT_ID_MAX 128      /* TPM2B_ID_OBJECT, marshalled */
#define HK_ATT_SECRET_MAX 520  /* TPM2B_ENCRYPTED_SECRET, marshalled */
#define HK_ATT_SUMMARY_MAX 400 /* what is stored with an attested key */
#define HK_ATT_WHY_MAX 160

/* What POST /keygen answers and keeps of an accepted challenge. */
typedef struct {
    unsigned char cred_hash[32];             /* SHA-256 of the credential */
    unsigned char ak_pub[HK_TPM_PUBLIC_MAX]; /* the AK's TPM2B_PUBLIC */
    size_t ak_publen;
    /* "<SHA-256 of the EK cert, hex> <issuer, RFC 2253>" */
    char summary[HK_ATT_SUMMARY_MAX + 1];
    unsigned char id_object[HK_ATT_ID_MAX]; /* credentialBlob */
    size_t id_len;
    unsigned char secret[HK_ATT_SECRET_MAX]; /* encrypted seed */
    size_t secret_len;
} hk_att_challenge;

/* The parts of a summary: the EK cert's SHA-256 (64 hex digits into
 * fp[65]) and its issuer (a pointer into summary); "" for a malformed
 * summary. */
void hk_att_summary_split(const char *summary, char fp[65],
                          const char **issuer);

/* The trust anchors: every certificate of the PEM bundle `file` (roots
 * and, when the bundle holds them, manufacturers' intermediate CAs, which
 * are then trusted as anchors too). why[256] on HK_ERR_CONFIG. */
HK_WUR hk_err hk_att_roots_load(const char *file, X509_STORE **out, char *why);

/* Checks EK cert, EK and AK (see above) and makes the challenge.
 * HK_ERR_ATTEST with why[HK_ATT_WHY_MAX] for a refusal. */
HK_WUR hk_err hk_att_challenge_make(X509_STORE *roots,
                                    const unsigned char *ek_cert, size_t clen,
                                    const unsigned char *ek_pub, size_t elen,
                                    const unsigned char *ak_pub, size_t alen,
                                    hk_att_challenge *out, char *why);

/* Checks an answer against its challenge (cred_hash, the AK's
 * TPM2B_PUBLIC): the credential, then the quote (TPMS_ATTEST of a quote
 * whose extraData is `qual`) and its ECDSA signature by the AK.
 * HK_ERR_ATTEST with why[HK_ATT_WHY_MAX] for a refusal. */
HK_WUR hk_err hk_att_answer_check(const unsigned char cred_hash[32],
                                  const unsigned char *ak_pub, size_t alen,
                                  const unsigned char *cred, size_t credlen,
                                  const unsigned char *quote, size_t qlen,
                                  const unsigned char *sig, size_t slen,
                                  const unsigned char qual[32], char *why);

#endif
