/* The TPM's half of a device attestation (tpm_attest.h), on tpm2-tss
 * ESAPI: EK and AK as primary keys of the endorsement hierarchy, the EK
 * certificate from NV, TPM2_ActivateCredential and TPM2_Quote. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include <tss2/tss2_mu.h>

#include "client/tpm_attest.h"
#include "client/tpm_esys.h"

#define HK_NV_CHUNK 512 /* below every TPM's NV buffer size */

struct hk_tpm_att {
    hk_tpm t;
    ESYS_TR ek, ak;
};

/* TPM2_PolicySecret(TPM_RH_ENDORSEMENT): the EK template's policy. */
static const unsigned char hk_ek_policy[32] = {
    0x83, 0x71, 0x97, 0x67, 0x44, 0x84, 0xb3, 0xf8, 0x1a, 0x90, 0xcc,
    0x8d, 0x46, 0xa5, 0xd7, 0x24, 0xfd, 0x52, 0xd7, 0x6e, 0x06, 0x52,
    0x0b, 0x64, 0xf2, 0xa1, 0xda, 0x1b, 0x33, 0x14, 0x69, 0xaa};

/* A primary key of the endorsement hierarchy from template tmpl; its
 * public area marshalled into pub[HK_TPM_ATT_BLOB_MAX]. */
static TSS2_RC hk_att_primary(hk_tpm_att *a, const TPM2B_PUBLIC *tmpl,
                              ESYS_TR *h, unsigned char *pub, size_t *plen)
{
    TPM2B_SENSITIVE_CREATE in;
    TPM2B_DATA outside;
    TPML_PCR_SELECTION pcr;
    TPM2B_PUBLIC *out = NULL;
    TSS2_RC rc;

    memset(&in, 0, sizeof(in));
    memset(&outside, 0, sizeof(outside));
    memset(&pcr, 0, sizeof(pcr));
    rc = Esys_CreatePrimary(a->t.esys, ESYS_TR_RH_ENDORSEMENT, ESYS_TR_PASSWORD,
                            ESYS_TR_NONE, ESYS_TR_NONE, &in, tmpl, &outside,
                            &pcr, h, &out, NULL, NULL, NULL);
    *plen = 0;
    if (rc == TSS2_RC_SUCCESS)
        rc = Tss2_MU_TPM2B_PUBLIC_Marshal(out, pub, HK_TPM_ATT_BLOB_MAX, plen);
    Esys_Free(out);
    return rc;
}

/* The EK: TCG EK Credential Profile template L-1 (RSA 2048), the key its
 * certificate certifies. */
static TSS2_RC hk_att_ek(hk_tpm_att *a, hk_tpm_att_id *id)
{
    TPM2B_PUBLIC p;

    memset(&p, 0, sizeof(p));
    p.publicArea.type = TPM2_ALG_RSA;
    p.publicArea.nameAlg = TPM2_ALG_SHA256;
    p.publicArea.objectAttributes =
        TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
        TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_ADMINWITHPOLICY |
        TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT;
    p.publicArea.authPolicy.size = sizeof(hk_ek_policy);
    memcpy(p.publicArea.authPolicy.buffer, hk_ek_policy, sizeof(hk_ek_policy));
    p.publicArea.parameters.rsaDetail.symmetric.algorithm = TPM2_ALG_AES;
    p.publicArea.parameters.rsaDetail.symmetric.keyBits.aes = 128;
    p.publicArea.parameters.rsaDetail.symmetric.mode.aes = TPM2_ALG_CFB;
    p.publicArea.parameters.rsaDetail.scheme.scheme = TPM2_ALG_NULL;
    p.publicArea.parameters.rsaDetail.keyBits = 2048;
    p.publicArea.unique.rsa.size = 256; /* zeros */
    return hk_att_primary(a, &p, &a->ek, id->ek_pub, &id->ek_pub_len);
}

/* The AK: a restricted ECDSA P-256 signing key (it signs only what the
 * TPM itself produced, such as quotes), empty authorisation. */
static TSS2_RC hk_att_ak(hk_tpm_att *a, hk_tpm_att_id *id)
{
    TPM2B_PUBLIC p;
    TPMS_ECC_PARMS *e = &p.publicArea.parameters.eccDetail;

    memset(&p, 0, sizeof(p));
    p.publicArea.type = TPM2_ALG_ECC;
    p.publicArea.nameAlg = TPM2_ALG_SHA256;
    p.publicArea.objectAttributes =
        TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
        TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_USERWITHAUTH |
        TPMA_OBJECT_NODA | TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_SIGN_ENCRYPT;
    e->symmetric.algorithm = TPM2_ALG_NULL;
    e->scheme.scheme = TPM2_ALG_ECDSA;
    e->scheme.details.ecdsa.hashAlg = TPM2_ALG_SHA256;
    e->curveID = TPM2_ECC_NIST_P256;
    e->kdf.scheme = TPM2_ALG_NULL;
    return hk_att_primary(a, &p, &a->ak, id->ak_pub, &id->ak_pub_len);
}

/* The EK certificate from its NV index, read in chunks. */
static hk_err hk_att_ek_cert(hk_tpm_att *a, hk_tpm_att_id *id, char *why)
{
    TPM2B_NV_PUBLIC *np = NULL;
    TPM2B_MAX_NV_BUFFER *d = NULL;
    ESYS_TR nv = ESYS_TR_NONE, auth;
    size_t off, n;
    hk_err e = HK_ERR_ATTEST;

    if (Esys_TR_FromTPMPublic(a->t.esys, HK_TPM_ATT_EK_CERT_NV, ESYS_TR_NONE,
                              ESYS_TR_NONE, ESYS_TR_NONE,
                              &nv) != TSS2_RC_SUCCESS ||
        Esys_NV_ReadPublic(a->t.esys, nv, ESYS_TR_NONE, ESYS_TR_NONE,
                           ESYS_TR_NONE, &np, NULL) != TSS2_RC_SUCCESS) {
        snprintf(why, 160,
                 "the TPM holds no RSA EK certificate (NV index 0x%08x)",
                 HK_TPM_ATT_EK_CERT_NV);
        goto done;
    }
    n = np->nvPublic.dataSize;
    if (n == 0 || n > sizeof(id->ek_cert)) {
        snprintf(why, 160, "the TPM's EK certificate has %zu bytes", n);
        goto done;
    }
    /* EK certificate indices are readable by the owner (TCG EK
     * Credential Profile); an index of our own tests may say authRead */
    auth =
        (np->nvPublic.attributes & TPMA_NV_OWNERREAD) ? ESYS_TR_RH_OWNER : nv;
    for (off = 0; off < n; off += d->size) {
        Esys_Free(d);
        d = NULL;
        if (Esys_NV_Read(
                a->t.esys, auth, nv, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                ESYS_TR_NONE,
                (UINT16)(n - off < HK_NV_CHUNK ? n - off : HK_NV_CHUNK),
                (UINT16)off, &d) != TSS2_RC_SUCCESS ||
            d->size == 0 || d->size > n - off) {
            snprintf(why, 160, "the TPM's EK certificate cannot be read");
            e = HK_ERR_TPM;
            goto done;
        }
        memcpy(id->ek_cert + off, d->buffer, d->size);
    }
    id->ek_cert_len = n;
    e = HK_OK;
done:
    Esys_Free(d);
    Esys_Free(np);
    if (nv != ESYS_TR_NONE)
        (void)Esys_TR_Close(a->t.esys, &nv);
    return e;
}

hk_err hk_tpm_att_open(const char *tcti, hk_tpm_att **out, hk_tpm_att_id *id,
                       char *why)
{
    hk_tpm_att *a;
    hk_err e;

    if (out == NULL || id == NULL || why == NULL)
        return HK_ERR_ARG;
    *out = NULL;
    memset(id, 0, sizeof(*id));
    if ((a = calloc(1, sizeof(*a))) == NULL)
        return HK_ERR_NOMEM;
    a->ek = a->ak = ESYS_TR_NONE;
    snprintf(why, 160, "the TPM is unreachable or failing");
    if ((e = hk_tpm_open(tcti, 0, 0, &a->t)) != HK_OK) {
        free(a);
        return e;
    }
    e = HK_ERR_TPM;
    if (hk_att_ek(a, id) != TSS2_RC_SUCCESS) {
        snprintf(why, 160, "the TPM cannot make its endorsement key");
        goto done;
    }
    if (hk_att_ak(a, id) != TSS2_RC_SUCCESS) {
        snprintf(why, 160, "the TPM cannot make an attestation key");
        goto done;
    }
    e = hk_att_ek_cert(a, id, why);
done:
    if (e != HK_OK)
        hk_tpm_att_close(a);
    else
        *out = a;
    return e;
}

/* TPM2_ActivateCredential: the AK (password) is the object the
 * credential names, the EK (its policy: PolicySecret of the endorsement
 * hierarchy) decrypts the seed. */
static hk_err hk_att_activate(hk_tpm_att *a, const TPM2B_ID_OBJECT *blob,
                              const TPM2B_ENCRYPTED_SECRET *secret,
                              hk_tpm_att_answer *out, char *why)
{
    TPMT_SYM_DEF sym = {.algorithm = TPM2_ALG_NULL};
    TPM2B_DIGEST *cred = NULL;
    ESYS_TR ps = ESYS_TR_NONE;
    TSS2_RC rc;
    hk_err e = HK_ERR_TPM;

    if (Esys_StartAuthSession(a->t.esys, ESYS_TR_NONE, ESYS_TR_NONE,
                              ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, NULL,
                              TPM2_SE_POLICY, &sym, TPM2_ALG_SHA256,
                              &ps) != TSS2_RC_SUCCESS ||
        Esys_PolicySecret(a->t.esys, ESYS_TR_RH_ENDORSEMENT, ps,
                          ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, NULL,
                          NULL, NULL, 0, NULL, NULL) != TSS2_RC_SUCCESS) {
        snprintf(why, 160, "the TPM refuses the EK's policy session");
        goto done;
    }
    rc = Esys_ActivateCredential(a->t.esys, a->ak, a->ek, ESYS_TR_PASSWORD, ps,
                                 ESYS_TR_NONE, blob, secret, &cred);
    if (rc != TSS2_RC_SUCCESS || cred->size > sizeof(out->cred)) {
        /* a format-1 code: the blob does not open under this EK and AK */
        e = (rc & TPM2_RC_FMT1) ? HK_ERR_ATTEST : HK_ERR_TPM;
        snprintf(why, 160, "the TPM refuses the server's credential");
        goto done;
    }
    memcpy(out->cred, cred->buffer, cred->size);
    out->cred_len = cred->size;
    e = HK_OK;
done:
    if (cred != NULL)
        OPENSSL_cleanse(cred, sizeof(*cred));
    Esys_Free(cred);
    if (ps != ESYS_TR_NONE)
        (void)Esys_FlushContext(a->t.esys, ps);
    return e;
}

/* TPM2_Quote by the AK over qual, no PCRs: the quote attests the AK's
 * TPM produced it now, for this session. */
static hk_err hk_att_quote(hk_tpm_att *a, const unsigned char qual[32],
                           hk_tpm_att_answer *out, char *why)
{
    TPMT_SIG_SCHEME scheme = {.scheme = TPM2_ALG_NULL};
    TPML_PCR_SELECTION pcr;
    TPM2B_DATA q;
    TPM2B_ATTEST *att = NULL;
    TPMT_SIGNATURE *sig = NULL;
    hk_err e = HK_ERR_TPM;

    memset(&pcr, 0, sizeof(pcr));
    q.size = 32;
    memcpy(q.buffer, qual, 32);
    if (Esys_Quote(a->t.esys, a->ak, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                   ESYS_TR_NONE, &q, &scheme, &pcr, &att,
                   &sig) != TSS2_RC_SUCCESS ||
        att->size > sizeof(out->quote)) {
        snprintf(why, 160, "the TPM cannot make a quote");
        goto done;
    }
    memcpy(out->quote, att->attestationData, att->size);
    out->quote_len = att->size;
    out->sig_len = 0;
    if (Tss2_MU_TPMT_SIGNATURE_Marshal(sig, out->sig, sizeof(out->sig),
                                       &out->sig_len) != TSS2_RC_SUCCESS)
        goto done;
    e = HK_OK;
done:
    Esys_Free(att);
    Esys_Free(sig);
    return e;
}

hk_err hk_tpm_att_answer_make(hk_tpm_att *a, const unsigned char *id,
                              size_t idlen, const unsigned char *secret,
                              size_t slen, const unsigned char qual[32],
                              hk_tpm_att_answer *out, char *why)
{
    TPM2B_ID_OBJECT blob;
    TPM2B_ENCRYPTED_SECRET sec;
    size_t o1 = 0, o2 = 0;
    hk_err e;

    if (a == NULL || id == NULL || secret == NULL || qual == NULL ||
        out == NULL || why == NULL)
        return HK_ERR_ARG;
    memset(out, 0, sizeof(*out));
    memset(&blob, 0, sizeof(blob));
    memset(&sec, 0, sizeof(sec));
    if (Tss2_MU_TPM2B_ID_OBJECT_Unmarshal(id, idlen, &o1, &blob) !=
            TSS2_RC_SUCCESS ||
        o1 != idlen ||
        Tss2_MU_TPM2B_ENCRYPTED_SECRET_Unmarshal(secret, slen, &o2, &sec) !=
            TSS2_RC_SUCCESS ||
        o2 != slen) {
        snprintf(why, 160, "the server's challenge is malformed");
        return HK_ERR_SERVER;
    }
    if ((e = hk_att_activate(a, &blob, &sec, out, why)) == HK_OK)
        e = hk_att_quote(a, qual, out, why);
    if (e != HK_OK)
        OPENSSL_cleanse(out, sizeof(*out));
    return e;
}

void hk_tpm_att_close(hk_tpm_att *a)
{
    if (a == NULL)
        return;
    if (a->t.esys != NULL) {
        if (a->ek != ESYS_TR_NONE)
            (void)Esys_FlushContext(a->t.esys, a->ek);
        if (a->ak != ESYS_TR_NONE)
            (void)Esys_FlushContext(a->t.esys, a->ak);
    }
    hk_tpm_close(&a->t);
    free(a);
}
