/* The connection to a TPM 2.0 that the keystore (ks_tpm.c) and device
 * attestation (tpm_attest.c) share (tpm_esys.h): the TCTI, the ESAPI
 * context, the storage root key and a salted session, stale handles. */
#include <string.h>

#include "client/tpm_esys.h"

/* A TPM response code without its handle/session/parameter number. */
TSS2_RC hk_tpm_base(TSS2_RC rc)
{
    if ((rc & TSS2_RC_LAYER_MASK) != TSS2_TPM_RC_LAYER)
        return rc;
    if (rc & TPM2_RC_FMT1)
        return rc & (TPM2_RC_FMT1 | 0x3f);
    return rc & 0xfff;
}

void hk_tpm_close(hk_tpm *t)
{
    if (t->esys != NULL) {
        if (t->sess != ESYS_TR_NONE)
            (void)Esys_FlushContext(t->esys, t->sess);
        if (t->srk != ESYS_TR_NONE)
            (void)Esys_FlushContext(t->esys, t->srk);
        Esys_Finalize(&t->esys);
    }
    if (t->tcti != NULL)
        Tss2_TctiLdr_Finalize(&t->tcti);
}

/* The SRK: ECC NIST P-256 restricted decryption key, AES-128-CFB, from the
 * TCG provisioning guidance's template (empty unique), so that every call
 * derives the same key from the owner seed. */
static TSS2_RC hk_tpm_srk(hk_tpm *t)
{
    TPM2B_SENSITIVE_CREATE in;
    TPM2B_PUBLIC pub;
    TPM2B_DATA outside;
    TPML_PCR_SELECTION pcr;

    memset(&in, 0, sizeof(in));
    memset(&pub, 0, sizeof(pub));
    memset(&outside, 0, sizeof(outside));
    memset(&pcr, 0, sizeof(pcr));
    pub.publicArea.type = TPM2_ALG_ECC;
    pub.publicArea.nameAlg = TPM2_ALG_SHA256;
    pub.publicArea.objectAttributes =
        TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
        TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_USERWITHAUTH |
        TPMA_OBJECT_NODA | TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT;
    pub.publicArea.parameters.eccDetail.symmetric.algorithm = TPM2_ALG_AES;
    pub.publicArea.parameters.eccDetail.symmetric.keyBits.aes = 128;
    pub.publicArea.parameters.eccDetail.symmetric.mode.aes = TPM2_ALG_CFB;
    pub.publicArea.parameters.eccDetail.scheme.scheme = TPM2_ALG_NULL;
    pub.publicArea.parameters.eccDetail.curveID = TPM2_ECC_NIST_P256;
    pub.publicArea.parameters.eccDetail.kdf.scheme = TPM2_ALG_NULL;
    return Esys_CreatePrimary(t->esys, ESYS_TR_RH_OWNER, ESYS_TR_PASSWORD,
                              ESYS_TR_NONE, ESYS_TR_NONE, &in, &pub, &outside,
                              &pcr, &t->srk, NULL, NULL, NULL, NULL);
}

/* 1 if rc says the TPM is out of object or session slots. */
int hk_tpm_full(TSS2_RC rc)
{
    TSS2_RC b = hk_tpm_base(rc);

    return b == TPM2_RC_OBJECT_MEMORY || b == TPM2_RC_SESSION_MEMORY ||
           b == TPM2_RC_SESSION_HANDLES || b == TPM2_RC_OBJECT_HANDLES;
}

/* Flushes the transient objects and loaded sessions the TPM shows us. A
 * TPM reached without a resource manager (a swtpm socket, /dev/tpm0)
 * keeps those of a process killed mid-command until flushed, and has
 * only a few slots; behind /dev/tpmrm0 the kernel flushes them and shows
 * a connection only its own, so this never touches another client's. */
void hk_tpm_flush_stale(hk_tpm *t)
{
    static const TPM2_HANDLE first[2] = {TPM2_TRANSIENT_FIRST,
                                         TPM2_LOADED_SESSION_FIRST};
    TPMS_CAPABILITY_DATA *cap = NULL;
    TPMI_YES_NO more;
    ESYS_TR tr;
    UINT32 i;
    int k;

    for (k = 0; k < 2; k++) {
        if (Esys_GetCapability(t->esys, ESYS_TR_NONE, ESYS_TR_NONE,
                               ESYS_TR_NONE, TPM2_CAP_HANDLES, first[k],
                               TPM2_MAX_CAP_HANDLES, &more,
                               &cap) != TSS2_RC_SUCCESS)
            continue;
        for (i = 0; i < cap->data.handles.count; i++)
            if (Esys_TR_FromTPMPublic(t->esys, cap->data.handles.handle[i],
                                      ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                      &tr) == TSS2_RC_SUCCESS)
                (void)Esys_FlushContext(t->esys, tr);
        Esys_Free(cap);
        cap = NULL;
    }
}

/* The SRK and (session) a session salted with it. */
static TSS2_RC hk_tpm_start(hk_tpm *t, int session)
{
    TPMT_SYM_DEF sym;
    TSS2_RC rc;

    if ((rc = hk_tpm_srk(t)) != TSS2_RC_SUCCESS || !session)
        return rc;
    memset(&sym, 0, sizeof(sym));
    sym.algorithm = TPM2_ALG_AES;
    sym.keyBits.aes = 128;
    sym.mode.aes = TPM2_ALG_CFB;
    return Esys_StartAuthSession(t->esys, t->srk, ESYS_TR_NONE, ESYS_TR_NONE,
                                 ESYS_TR_NONE, ESYS_TR_NONE, NULL, TPM2_SE_HMAC,
                                 &sym, TPM2_ALG_SHA256, &t->sess);
}

/* Opens the TPM, makes the SRK and (session) a session salted with it.
 * A TPM out of slots (handles left by a killed process, see
 * hk_tpm_flush_stale) is flushed and tried again once; so is every TPM
 * when `flush` is set (a retry after a command ran out of slots). */
hk_err hk_tpm_open(const char *spec, int session, int flush, hk_tpm *t)
{
    TSS2_RC rc;

    memset(t, 0, sizeof(*t));
    t->srk = t->sess = ESYS_TR_NONE;
    if (spec == NULL || spec[0] == 0)
        spec = HK_KS_TCTI_DEFAULT;
    if (Tss2_TctiLdr_Initialize(spec, &t->tcti) != TSS2_RC_SUCCESS ||
        Esys_Initialize(&t->esys, t->tcti, NULL) != TSS2_RC_SUCCESS)
        goto fail;
    if (flush)
        hk_tpm_flush_stale(t);
    if ((rc = hk_tpm_start(t, session)) != TSS2_RC_SUCCESS) {
        if (flush || !hk_tpm_full(rc))
            goto fail;
        hk_tpm_flush_stale(t); /* ours too */
        t->srk = t->sess = ESYS_TR_NONE;
        if (hk_tpm_start(t, session) != TSS2_RC_SUCCESS)
            goto fail;
    }
    return HK_OK;
fail:
    hk_tpm_close(t);
    return HK_ERR_TPM;
}
