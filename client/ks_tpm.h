/* Private to the keystore: the TPM 2.0 behind a TPM-backed token (ks_tpm.c,
 * built only when tpm2-tss is found; otherwise every call gives
 * HK_ERR_TPM and hk_ks_tpm_built() is 0).
 *
 * A token's master key is a TPM sealed-data object (keyedhash) under the
 * storage root key: a primary ECC P-256 key of the owner hierarchy, made
 * from the standard template at each use (the same key every time, as long
 * as the TPM is not cleared), so nothing is persisted in the TPM. The
 * object's authorisation value is derived from the PIN, and the object is
 * subject to the TPM's dictionary-attack protection (no noDA). Its public
 * and private parts (TPM2B_PUBLIC, TPM2B_PRIVATE, marshalled) are stored in
 * token.json; the private part is encrypted under the SRK, so it loads on
 * this TPM only. Every command runs in a session salted with the SRK, with
 * parameter encryption: the PIN's authorisation and the master key never
 * cross the bus in clear. */
#ifndef HK_KS_TPM_H
#define HK_KS_TPM_H

#include <stddef.h>

#include "common/error.h"

#define HK_KS_TPM_BLOB_MAX 1024
#define HK_KS_TPM_AUTH_LEN 32
#define HK_KS_TPM_SECRET_LEN 32
#define HK_KS_TCTI_MAX 255
#define HK_KS_TCTI_DEFAULT "device:/dev/tpmrm0"

typedef struct {
    unsigned char pub[HK_KS_TPM_BLOB_MAX]; /* TPM2B_PUBLIC, marshalled */
    size_t publen;
    unsigned char priv[HK_KS_TPM_BLOB_MAX]; /* TPM2B_PRIVATE, marshalled */
    size_t privlen;
} hk_ks_tpm_blob;

/* What hk_ks_tpm_probe reads from the TPM. */
typedef struct {
    char manufacturer[5]; /* TPM2_PT_MANUFACTURER as 4 ASCII chars */
    unsigned long lockout_counter, max_auth_fail, lockout_interval;
    int in_lockout;
} hk_ks_tpm_state;

/* 1 if this build has TPM support. */
int hk_ks_tpm_built(void);
/* Seals secret under a new sealed-data object with authorisation `auth`
 * (tcti: a tss2 TCTI spec such as "device:/dev/tpmrm0" or
 * "swtpm:path=/run/swtpm.sock"). HK_ERR_TPM if the TPM is unreachable or
 * refuses. */
HK_WUR hk_err hk_ks_tpm_seal(const char *tcti,
                             const unsigned char auth[HK_KS_TPM_AUTH_LEN],
                             const unsigned char secret[HK_KS_TPM_SECRET_LEN],
                             hk_ks_tpm_blob *out);
/* Loads the object and unseals it with `auth`: HK_ERR_PIN for a wrong
 * authorisation (the TPM counts it), HK_ERR_PIN_LOCKED while the TPM's
 * dictionary-attack lockout is active, HK_ERR_TPM_FOREIGN if the object
 * does not load (made by another TPM, or this one was cleared), HK_ERR_TPM
 * if the TPM is unreachable or fails, HK_ERR_DECODE for a malformed blob. */
HK_WUR hk_err hk_ks_tpm_unseal(const char *tcti,
                               const unsigned char auth[HK_KS_TPM_AUTH_LEN],
                               const hk_ks_tpm_blob *b,
                               unsigned char secret[HK_KS_TPM_SECRET_LEN]);
/* Reaches the TPM, makes the SRK and reads its identity and its
 * dictionary-attack state. HK_ERR_TPM if unreachable. */
HK_WUR hk_err hk_ks_tpm_probe(const char *tcti, hk_ks_tpm_state *out);

#endif
