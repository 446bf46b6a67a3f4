/* Message digests: C_DigestInit, C_Digest, C_DigestUpdate, C_DigestFinal
 * with CKM_SHA_1, CKM_SHA224, CKM_SHA256, CKM_SHA384 and CKM_SHA512
 * (OpenSSL, in the client core's own library context). No login needed;
 * C_DigestKey is not supported (no secret keys). A length query (NULL
 * output) or CKR_BUFFER_TOO_SMALL keeps the operation; any other return of
 * C_Digest or C_DigestFinal ends it (PKCS#11 v3.0 5.12). */
#include "pkcs11/hk_p11.h"

static void hk_p11_digest_end(hk_p11_session *s)
{
    EVP_MD_CTX_free(s->digest);
    s->digest = NULL;
    s->digest_multi = 0;
}

static CK_RV hk_p11_digest_active(CK_SESSION_HANDLE h, hk_p11_session **s)
{
    CK_RV rv = hk_p11_session_get(h, s);

    if (rv == CKR_OK && (*s)->digest == NULL)
        rv = CKR_OPERATION_NOT_INITIALIZED;
    return rv;
}

/* The length query and buffer checks of C_Digest and C_DigestFinal:
 * CKR_OK with *done set when nothing more is to be done. */
static CK_RV hk_p11_digest_out(hk_p11_session *s, CK_BYTE_PTR out,
                               CK_ULONG_PTR outlen, int *done)
{
    CK_ULONG n = (CK_ULONG)EVP_MD_CTX_get_size(s->digest);

    *done = 1;
    if (outlen == NULL) {
        hk_p11_digest_end(s);
        return CKR_ARGUMENTS_BAD;
    }
    if (out == NULL) {
        *outlen = n;
        return CKR_OK;
    }
    if (*outlen < n) {
        *outlen = n;
        return CKR_BUFFER_TOO_SMALL;
    }
    *done = 0;
    return CKR_OK;
}

static CK_RV hk_p11_digest_final(hk_p11_session *s, CK_BYTE_PTR out,
                                 CK_ULONG_PTR outlen)
{
    unsigned int n = 0;
    CK_RV rv = EVP_DigestFinal_ex(s->digest, out, &n) == 1
                   ? CKR_OK
                   : CKR_FUNCTION_FAILED;

    if (rv == CKR_OK)
        *outlen = n;
    hk_p11_digest_end(s);
    return rv;
}

CK_RV C_DigestInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism)
{
    hk_p11_session *s;
    const char *name;
    CK_RV rv;

    if ((rv = hk_p11_enter()) != CKR_OK)
        return rv;
    if ((rv = hk_p11_session_get(hSession, &s)) != CKR_OK)
        goto done;
    if (pMechanism == NULL)
        rv = CKR_ARGUMENTS_BAD;
    else if (s->digest != NULL)
        rv = CKR_OPERATION_ACTIVE;
    else if ((name = hk_p11_mech_md_name(pMechanism->mechanism, 0)) == NULL)
        rv = CKR_MECHANISM_INVALID;
    else if (pMechanism->pParameter != NULL || pMechanism->ulParameterLen != 0)
        rv = CKR_MECHANISM_PARAM_INVALID;
    else if ((s->digest = hk_p11_md_new(name)) == NULL)
        rv = CKR_HOST_MEMORY;
done:
    hk_p11_leave();
    return rv;
}

CK_RV C_Digest(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pData,
               CK_ULONG ulDataLen, CK_BYTE_PTR pDigest,
               CK_ULONG_PTR pulDigestLen)
{
    hk_p11_session *s;
    int done;
    CK_RV rv;

    if ((rv = hk_p11_enter()) != CKR_OK)
        return rv;
    if ((rv = hk_p11_digest_active(hSession, &s)) != CKR_OK)
        goto out;
    /* only C_DigestFinal finishes a multi-part digest */
    if (s->digest_multi) {
        rv = CKR_OPERATION_ACTIVE;
        goto out;
    }
    if (pData == NULL && ulDataLen > 0) {
        hk_p11_digest_end(s);
        rv = CKR_ARGUMENTS_BAD;
        goto out;
    }
    if ((rv = hk_p11_digest_out(s, pDigest, pulDigestLen, &done)) != CKR_OK ||
        done)
        goto out;
    if (ulDataLen > 0 && EVP_DigestUpdate(s->digest, pData, ulDataLen) != 1) {
        hk_p11_digest_end(s);
        rv = CKR_FUNCTION_FAILED;
        goto out;
    }
    rv = hk_p11_digest_final(s, pDigest, pulDigestLen);
out:
    hk_p11_leave();
    return rv;
}

CK_RV C_DigestUpdate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart,
                     CK_ULONG ulPartLen)
{
    hk_p11_session *s;
    CK_RV rv;

    if ((rv = hk_p11_enter()) != CKR_OK)
        return rv;
    if ((rv = hk_p11_digest_active(hSession, &s)) != CKR_OK)
        goto out;
    if (pPart == NULL && ulPartLen > 0)
        rv = CKR_ARGUMENTS_BAD;
    else if (ulPartLen > 0 &&
             EVP_DigestUpdate(s->digest, pPart, ulPartLen) != 1)
        rv = CKR_FUNCTION_FAILED;
    if (rv != CKR_OK)
        hk_p11_digest_end(s);
    else
        s->digest_multi = 1;
out:
    hk_p11_leave();
    return rv;
}

CK_RV C_DigestFinal(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pDigest,
                    CK_ULONG_PTR pulDigestLen)
{
    hk_p11_session *s;
    int done;
    CK_RV rv;

    if ((rv = hk_p11_enter()) != CKR_OK)
        return rv;
    if ((rv = hk_p11_digest_active(hSession, &s)) == CKR_OK &&
        (rv = hk_p11_digest_out(s, pDigest, pulDigestLen, &done)) == CKR_OK &&
        !done)
        rv = hk_p11_digest_final(s, pDigest, pulDigestLen);
    hk_p11_leave();
    return rv;
}
