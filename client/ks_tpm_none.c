/* The TPM interface of a build without tpm2-tss (see ks_tpm.h): no TPM
 * token can be made or opened. */
#include <string.h>

#include "client/ks_tpm.h"

int hk_ks_tpm_built(void) { return 0; }

hk_err hk_ks_tpm_seal(const char *tcti,
                      const unsigned char auth[HK_KS_TPM_AUTH_LEN],
                      const unsigned char secret[HK_KS_TPM_SECRET_LEN],
                      hk_ks_tpm_blob *out)
{
    if (out != NULL)
        memset(out, 0, sizeof(*out));
    return HK_ERR_TPM;
}

hk_err hk_ks_tpm_unseal(const char *tcti,
                        const unsigned char auth[HK_KS_TPM_AUTH_LEN],
                        const hk_ks_tpm_blob *b,
                        unsigned char secret[HK_KS_TPM_SECRET_LEN])
{
    return HK_ERR_TPM;
}

hk_err hk_ks_tpm_probe(const char *tcti, hk_ks_tpm_state *out)
{
    if (out != NULL)
        memset(out, 0, sizeof(*out));
    return HK_ERR_TPM;
}
