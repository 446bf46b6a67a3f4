/* Private to the client core, built only with tpm2-tss: one open TPM
 * (tpm_esys.c), as ks_tpm.c and tpm_attest.c use it. Each call of theirs
 * opens the TCTI, makes the SRK (and a session salted with it), works and
 * closes everything: nothing holds a TPM handle between calls. */
#ifndef HK_CLIENT_TPM_ESYS_H
#define HK_CLIENT_TPM_ESYS_H

#include <tss2/tss2_esys.h>
#include <tss2/tss2_tctildr.h>

#include "client/ks_tpm.h"

typedef struct {
    TSS2_TCTI_CONTEXT *tcti;
    ESYS_CONTEXT *esys;
    ESYS_TR srk;  /* the storage root key (transient) */
    ESYS_TR sess; /* HMAC session salted with the SRK */
} hk_tpm;

/* A TPM response code without its handle/session/parameter number. */
TSS2_RC hk_tpm_base(TSS2_RC rc);
/* 1 if rc says the TPM is out of object or session slots. */
int hk_tpm_full(TSS2_RC rc);
/* Flushes the transient objects and loaded sessions the TPM shows (a TPM
 * without a resource manager keeps those of a killed process). */
void hk_tpm_flush_stale(hk_tpm *t);
/* Opens the TPM at `spec` (NULL or "": HK_KS_TCTI_DEFAULT), makes the SRK
 * and (session) an HMAC session salted with it; flush: flush stale
 * handles first. HK_ERR_TPM if unreachable or failing. */
HK_WUR hk_err hk_tpm_open(const char *spec, int session, int flush, hk_tpm *t);
void hk_tpm_close(hk_tpm *t);

#endif
