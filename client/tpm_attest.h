/* Private to the client core: the TPM's half of a device attestation at
 * keygen (the server's half and the protocol: server/attest/attest.h).
 * tpm_attest.c with tpm2-tss, tpm_attest_none.c without (every call
 * HK_ERR_TPM).
 *
 * The endorsement key (EK) is the standard RSA-2048 EK (TCG EK
 * Credential Profile, template L-1) made from the endorsement seed, its
 * certificate read from NV index 0x01c00002; the attestation key (AK) is
 * a primary restricted ECDSA P-256 signing key of the endorsement
 * hierarchy, the same key at every use, so nothing is stored. An
 * attestation is one open TPM: identity, then the answer to the server's
 * challenge, then close. */
#ifndef HK_CLIENT_TPM_ATTEST_H
#define HK_CLIENT_TPM_ATTEST_H

#include <stddef.h>

#include "common/error.h"

#define HK_TPM_ATT_CERT_MAX 4096
#define HK_TPM_ATT_BLOB_MAX 1024
#define HK_TPM_ATT_EK_CERT_NV 0x01c00002 /* RSA-2048 EK certificate */

typedef struct hk_tpm_att hk_tpm_att;

/* What the server is sent first. */
typedef struct {
    unsigned char ek_cert[HK_TPM_ATT_CERT_MAX]; /* DER */
    size_t ek_cert_len;
    unsigned char ek_pub[HK_TPM_ATT_BLOB_MAX]; /* TPM2B_PUBLIC */
    size_t ek_pub_len;
    unsigned char ak_pub[HK_TPM_ATT_BLOB_MAX]; /* TPM2B_PUBLIC */
    size_t ak_pub_len;
} hk_tpm_att_id;

/* The answer to the challenge. */
typedef struct {
    unsigned char cred[64]; /* the recovered credential */
    size_t cred_len;
    unsigned char quote[HK_TPM_ATT_BLOB_MAX]; /* TPMS_ATTEST */
    size_t quote_len;
    unsigned char sig[HK_TPM_ATT_BLOB_MAX]; /* TPMT_SIGNATURE */
    size_t sig_len;
} hk_tpm_att_answer;

/* Opens the TPM at tcti, makes EK and AK and reads the EK certificate.
 * HK_ERR_TPM (unreachable, failing) or HK_ERR_ATTEST (no EK certificate)
 * with why[160]. */
HK_WUR hk_err hk_tpm_att_open(const char *tcti, hk_tpm_att **out,
                              hk_tpm_att_id *id, char *why);
/* TPM2_ActivateCredential of the server's credentialBlob (TPM2B_ID_OBJECT)
 * and encrypted seed (TPM2B_ENCRYPTED_SECRET), then TPM2_Quote by the AK
 * over qual. HK_ERR_ATTEST with why[160] when the TPM refuses the
 * credential (not made for this EK and AK). */
HK_WUR hk_err hk_tpm_att_answer_make(hk_tpm_att *a, const unsigned char *id,
                                     size_t idlen, const unsigned char *secret,
                                     size_t slen, const unsigned char qual[32],
                                     hk_tpm_att_answer *out, char *why);
void hk_tpm_att_close(hk_tpm_att *a);

#endif
