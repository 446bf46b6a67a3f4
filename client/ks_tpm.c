/* The TPM 2.0 of a TPM-backed token, on tpm2-tss ESAPI (see ks_tpm.h).
 * Built only when tss2-esys, tss2-tctildr and tss2-mu are found
 * (ks_tpm_none.c otherwise). Each call opens the TCTI, makes the SRK,
 * starts a salted session, does its work and closes everything: a token
 * holds no TPM handle between calls. */
#include <string.h>

#include <openssl/crypto.h>

#include <tss2/tss2_mu.h>

#include "client/ks_tpm.h"
#include "client/tpm_esys.h"

/* Session attributes for the next command: parameter encryption of the
 * command's first parameter (dec) and of the response's (enc). */
static TSS2_RC hk_tpm_attrs(hk_tpm *t, int dec, int enc)
{
    TPMA_SESSION a = TPMA_SESSION_CONTINUESESSION;

    if (dec)
        a |= TPMA_SESSION_DECRYPT;
    if (enc)
        a |= TPMA_SESSION_ENCRYPT;
    return Esys_TRSess_SetAttributes(t->esys, t->sess, a, 0xff);
}

int hk_ks_tpm_built(void) { return 1; }

static hk_err hk_tpm_seal_once(const char *tcti, int flush,
                               const unsigned char auth[HK_KS_TPM_AUTH_LEN],
                               const unsigned char secret[HK_KS_TPM_SECRET_LEN],
                               hk_ks_tpm_blob *out)
{
    TPM2B_SENSITIVE_CREATE sens;
    TPM2B_PUBLIC tmpl;
    TPM2B_DATA outside;
    TPML_PCR_SELECTION pcr;
    TPM2B_PRIVATE *priv = NULL;
    TPM2B_PUBLIC *pub = NULL;
    size_t off;
    TSS2_RC rc;
    hk_tpm t;
    hk_err e;

    memset(out, 0, sizeof(*out));
    if ((e = hk_tpm_open(tcti, 1, flush, &t)) != HK_OK)
        return e;
    memset(&sens, 0, sizeof(sens));
    memset(&tmpl, 0, sizeof(tmpl));
    memset(&outside, 0, sizeof(outside));
    memset(&pcr, 0, sizeof(pcr));
    sens.sensitive.userAuth.size = HK_KS_TPM_AUTH_LEN;
    memcpy(sens.sensitive.userAuth.buffer, auth, HK_KS_TPM_AUTH_LEN);
    sens.sensitive.data.size = HK_KS_TPM_SECRET_LEN;
    memcpy(sens.sensitive.data.buffer, secret, HK_KS_TPM_SECRET_LEN);
    /* Sealed data: usable with its authorisation only (userWithAuth, no
     * policy), bound to this TPM and parent, counted by the TPM's
     * dictionary-attack protection (noDA clear). */
    tmpl.publicArea.type = TPM2_ALG_KEYEDHASH;
    tmpl.publicArea.nameAlg = TPM2_ALG_SHA256;
    tmpl.publicArea.objectAttributes = TPMA_OBJECT_FIXEDTPM |
                                       TPMA_OBJECT_FIXEDPARENT |
                                       TPMA_OBJECT_USERWITHAUTH;
    tmpl.publicArea.parameters.keyedHashDetail.scheme.scheme = TPM2_ALG_NULL;
    e = HK_ERR_TPM;
    if (hk_tpm_attrs(&t, 1, 0) != TSS2_RC_SUCCESS)
        goto done;
    rc = Esys_Create(t.esys, t.srk, t.sess, ESYS_TR_NONE, ESYS_TR_NONE, &sens,
                     &tmpl, &outside, &pcr, &priv, &pub, NULL, NULL, NULL);
    if (rc != TSS2_RC_SUCCESS) {
        e = hk_tpm_full(rc) ? HK_ERR_BUSY : HK_ERR_TPM;
        goto done;
    }
    off = 0;
    if (Tss2_MU_TPM2B_PUBLIC_Marshal(pub, out->pub, sizeof(out->pub), &off) !=
        TSS2_RC_SUCCESS)
        goto done;
    out->publen = off;
    off = 0;
    if (Tss2_MU_TPM2B_PRIVATE_Marshal(priv, out->priv, sizeof(out->priv),
                                      &off) != TSS2_RC_SUCCESS)
        goto done;
    out->privlen = off;
    e = HK_OK;
done:
    OPENSSL_cleanse(&sens, sizeof(sens));
    Esys_Free(priv);
    Esys_Free(pub);
    hk_tpm_close(&t);
    if (e != HK_OK)
        OPENSSL_cleanse(out, sizeof(*out));
    return e;
}

hk_err hk_ks_tpm_seal(const char *tcti,
                      const unsigned char auth[HK_KS_TPM_AUTH_LEN],
                      const unsigned char secret[HK_KS_TPM_SECRET_LEN],
                      hk_ks_tpm_blob *out)
{
    hk_err e;

    if (auth == NULL || secret == NULL || out == NULL)
        return HK_ERR_ARG;
    /* HK_ERR_BUSY: out of slots; once more after flushing stale ones. */
    if ((e = hk_tpm_seal_once(tcti, 0, auth, secret, out)) == HK_ERR_BUSY &&
        (e = hk_tpm_seal_once(tcti, 1, auth, secret, out)) == HK_ERR_BUSY)
        e = HK_ERR_TPM;
    return e;
}

/* The blob's two parts, each exactly its stored length. */
static hk_err hk_tpm_unmarshal(const hk_ks_tpm_blob *b, TPM2B_PUBLIC *pub,
                               TPM2B_PRIVATE *priv)
{
    size_t off = 0;

    memset(pub, 0, sizeof(*pub));
    memset(priv, 0, sizeof(*priv));
    if (b->publen > sizeof(b->pub) || b->privlen > sizeof(b->priv) ||
        Tss2_MU_TPM2B_PUBLIC_Unmarshal(b->pub, b->publen, &off, pub) !=
            TSS2_RC_SUCCESS ||
        off != b->publen)
        return HK_ERR_DECODE;
    off = 0;
    if (Tss2_MU_TPM2B_PRIVATE_Unmarshal(b->priv, b->privlen, &off, priv) !=
            TSS2_RC_SUCCESS ||
        off != b->privlen)
        return HK_ERR_DECODE;
    return HK_OK;
}

/* The keystore's error for a failed TPM command on an object. */
static hk_err hk_tpm_auth_err(TSS2_RC rc)
{
    TSS2_RC b = hk_tpm_base(rc);

    if (b == TPM2_RC_LOCKOUT)
        return HK_ERR_PIN_LOCKED;
    if (b == (TPM2_RC_FMT1 | (TPM2_RC_AUTH_FAIL & 0x3f)) ||
        b == (TPM2_RC_FMT1 | (TPM2_RC_BAD_AUTH & 0x3f)))
        return HK_ERR_PIN;
    return HK_ERR_TPM;
}

static hk_err hk_tpm_unseal_once(const char *tcti, int flush,
                                 const unsigned char auth[HK_KS_TPM_AUTH_LEN],
                                 const hk_ks_tpm_blob *b,
                                 unsigned char secret[HK_KS_TPM_SECRET_LEN])
{
    TPM2B_SENSITIVE_DATA *data = NULL;
    TPM2B_PUBLIC pub;
    TPM2B_PRIVATE priv;
    TPM2B_AUTH a;
    ESYS_TR obj = ESYS_TR_NONE;
    TSS2_RC rc;
    hk_tpm t;
    hk_err e;

    if ((e = hk_tpm_unmarshal(b, &pub, &priv)) != HK_OK)
        return e;
    if ((e = hk_tpm_open(tcti, 1, flush, &t)) != HK_OK)
        return e;
    memset(&a, 0, sizeof(a));
    a.size = HK_KS_TPM_AUTH_LEN;
    memcpy(a.buffer, auth, HK_KS_TPM_AUTH_LEN);
    e = HK_ERR_TPM;
    if (hk_tpm_attrs(&t, 0, 0) != TSS2_RC_SUCCESS)
        goto done;
    rc = Esys_Load(t.esys, t.srk, t.sess, ESYS_TR_NONE, ESYS_TR_NONE, &priv,
                   &pub, &obj);
    if (rc != TSS2_RC_SUCCESS && hk_tpm_full(rc)) {
        e = HK_ERR_BUSY;
        goto done;
    }
    if (rc != TSS2_RC_SUCCESS) {
        /* The TPM refuses the blob itself (a format-1 error: its
         * integrity does not check under this SRK); a warning (out of
         * memory, retry) or a transport failure stays HK_ERR_TPM. */
        e = (rc & TSS2_RC_LAYER_MASK) == TSS2_TPM_RC_LAYER &&
                    (rc & TPM2_RC_FMT1) != 0
                ? HK_ERR_TPM_FOREIGN
                : HK_ERR_TPM;
        goto done;
    }
    if (Esys_TR_SetAuth(t.esys, obj, &a) != TSS2_RC_SUCCESS ||
        hk_tpm_attrs(&t, 0, 1) != TSS2_RC_SUCCESS)
        goto done;
    rc = Esys_Unseal(t.esys, obj, t.sess, ESYS_TR_NONE, ESYS_TR_NONE, &data);
    if (rc != TSS2_RC_SUCCESS) {
        e = hk_tpm_auth_err(rc);
        goto done;
    }
    e = HK_ERR_TPM_FOREIGN; /* not an object of ours */
    if (data->size != HK_KS_TPM_SECRET_LEN)
        goto done;
    memcpy(secret, data->buffer, HK_KS_TPM_SECRET_LEN);
    e = HK_OK;
done:
    if (data != NULL) {
        OPENSSL_cleanse(data, sizeof(*data));
        Esys_Free(data);
    }
    if (obj != ESYS_TR_NONE)
        (void)Esys_FlushContext(t.esys, obj);
    OPENSSL_cleanse(&a, sizeof(a));
    hk_tpm_close(&t);
    return e;
}

hk_err hk_ks_tpm_unseal(const char *tcti,
                        const unsigned char auth[HK_KS_TPM_AUTH_LEN],
                        const hk_ks_tpm_blob *b,
                        unsigned char secret[HK_KS_TPM_SECRET_LEN])
{
    hk_err e;

    if (auth == NULL || b == NULL || secret == NULL)
        return HK_ERR_ARG;
    /* HK_ERR_BUSY: out of slots; once more after flushing stale ones. */
    if ((e = hk_tpm_unseal_once(tcti, 0, auth, b, secret)) == HK_ERR_BUSY &&
        (e = hk_tpm_unseal_once(tcti, 1, auth, b, secret)) == HK_ERR_BUSY)
        e = HK_ERR_TPM;
    return e;
}

hk_err hk_ks_tpm_probe(const char *tcti, hk_ks_tpm_state *out)
{
    TPMS_CAPABILITY_DATA *cap = NULL;
    TPMI_YES_NO more;
    hk_tpm t;
    hk_err e;
    UINT32 i;

    if (out == NULL)
        return HK_ERR_ARG;
    memset(out, 0, sizeof(*out));
    if ((e = hk_tpm_open(tcti, 0, 0, &t)) != HK_OK)
        return e;
    e = HK_ERR_TPM;
    if (Esys_GetCapability(t.esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                           TPM2_CAP_TPM_PROPERTIES, TPM2_PT_FIXED,
                           TPM2_MAX_TPM_PROPERTIES, &more,
                           &cap) != TSS2_RC_SUCCESS ||
        cap->capability != TPM2_CAP_TPM_PROPERTIES)
        goto done;
    /* TPM2_PT_FIXED and TPM2_PT_VAR properties of interest; a second read
     * for the variable group (PT_PERMANENT onwards). */
    for (i = 0; i < cap->data.tpmProperties.count; i++) {
        TPMS_TAGGED_PROPERTY *p = &cap->data.tpmProperties.tpmProperty[i];

        if (p->property == TPM2_PT_MANUFACTURER) {
            int j;

            for (j = 0; j < 4; j++) {
                char c = (char)(p->value >> (24 - 8 * j));

                out->manufacturer[j] = c >= 0x20 && c < 0x7f ? c : ' ';
            }
        } else if (p->property == TPM2_PT_MAX_AUTH_FAIL) {
            out->max_auth_fail = p->value;
        } else if (p->property == TPM2_PT_LOCKOUT_INTERVAL) {
            out->lockout_interval = p->value;
        }
    }
    Esys_Free(cap);
    cap = NULL;
    if (Esys_GetCapability(t.esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                           TPM2_CAP_TPM_PROPERTIES, TPM2_PT_PERMANENT,
                           TPM2_MAX_TPM_PROPERTIES, &more,
                           &cap) != TSS2_RC_SUCCESS ||
        cap->capability != TPM2_CAP_TPM_PROPERTIES)
        goto done;
    for (i = 0; i < cap->data.tpmProperties.count; i++) {
        TPMS_TAGGED_PROPERTY *p = &cap->data.tpmProperties.tpmProperty[i];

        if (p->property == TPM2_PT_PERMANENT)
            out->in_lockout = (p->value & TPMA_PERMANENT_INLOCKOUT) != 0;
        else if (p->property == TPM2_PT_LOCKOUT_COUNTER)
            out->lockout_counter = p->value;
        else if (p->property == TPM2_PT_MAX_AUTH_FAIL)
            out->max_auth_fail = p->value;
        else if (p->property == TPM2_PT_LOCKOUT_INTERVAL)
            out->lockout_interval = p->value;
    }
    e = HK_OK;
done:
    Esys_Free(cap);
    hk_tpm_close(&t);
    return e;
}
