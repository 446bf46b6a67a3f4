/* The TPM 2.0 of a TPM-backed token, on tpm2-tss ESAPI (see ks_tpm.h).
 * Built only when tss2-esys, tss2-tctildr and tss2-mu are found
 * (ks_tpm_none.c otherwise). Each call opens the TCTI, makes the SRK,
 * starts a salted session, does its work and closes everything: a token
 * holds no TPM handle between calls. */
#include <string.h>

#include <openssl/crypto.h>

#include <tss2/tss2_esys.h>
#include <tss2/tss2_mu.h>
#include <tss2/tss2_tctildr.h>

#include "client/ks_tpm.h"

typedef struct {
    TSS2_TCTI_CONTEXT *tcti;
    ESYS_CONTEXT *esys;
    ESYS_TR srk;  /* the storage root key (transient) */
    ESYS_TR sess; /* HMAC session salted with the SRK */
} hk_tpm;

/* A TPM response code without its handle/session/parameter number. */
static TSS2_RC hk_tpm_base(TSS2_RC rc)
{
    if ((rc & TSS2_RC_LAYER_MASK) != TSS2_TPM_RC_LAYER)
        return rc;
    if (rc & TPM2_RC_FMT1)
        return rc & (TPM2_RC_FMT1 | 0x3f);
    return rc & 0xfff;
}

static void hk_tpm_close(hk_tpm *t)
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
static int hk_tpm_full(TSS2_RC rc)
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
static void hk_tpm_flush_stale(hk_tpm *t)
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
static hk_err hk_tpm_open(const char *spec, int session, int flush, hk_tpm *t)
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
