/* Device attestation in a build without tpm2-tss (see tpm_attest.h):
 * there is no TPM to attest with. */
#include <stdio.h>

#include "client/tpm_attest.h"

hk_err hk_tpm_att_open(const char *tcti, hk_tpm_att **out, hk_tpm_att_id *id,
                       char *why)
{
    if (out != NULL)
        *out = NULL;
    if (why != NULL)
        snprintf(why, 160, "this build has no TPM support (tpm2-tss)");
    return HK_ERR_TPM;
}

hk_err hk_tpm_att_answer_make(hk_tpm_att *a, const unsigned char *id,
                              size_t idlen, const unsigned char *secret,
                              size_t slen, const unsigned char qual[32],
                              hk_tpm_att_answer *out, char *why)
{
    return HK_ERR_TPM;
}

void hk_tpm_att_close(hk_tpm_att *a) { (void)a; }
