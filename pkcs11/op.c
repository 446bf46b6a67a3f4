/* Sign and verify operations: mechanism checks, the running input (a hash
 * for CKM_ECDSA_SHA*, a buffer for CKM_ECDSA) and the digest to sign.
 * CKM_ECDSA: an input longer than the 256-bit group order is truncated to
 * its leftmost 32 bytes, a shorter one is used as it is (PKCS#11 and
 * X9.62); the client core applies the same rule to hash outputs. */
#include <string.h>

#include "common/libctx.h"
#include "pkcs11/hk_p11.h"

/* The hash of a CKM_ECDSA_SHA* mechanism (sign != 0) or of a CKM_SHA*
 * digest mechanism, by OpenSSL name; NULL for others. */
const char *hk_p11_mech_md_name(CK_MECHANISM_TYPE m, int sign)
{
    static const struct {
        CK_MECHANISM_TYPE sig, dig;
        const char *name;
    } t[] = {{CKM_ECDSA_SHA1, CKM_SHA_1, "SHA1"},
             {CKM_ECDSA_SHA224, CKM_SHA224, "SHA224"},
             {CKM_ECDSA_SHA256, CKM_SHA256, "SHA256"},
             {CKM_ECDSA_SHA384, CKM_SHA384, "SHA384"},
             {CKM_ECDSA_SHA512, CKM_SHA512, "SHA512"}};
    size_t i;

    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++)
        if ((sign ? t[i].sig : t[i].dig) == m)
            return t[i].name;
    return NULL;
}

/* A digest context for the named hash, from the client core's own library
 * context (mpc/libctx.h); NULL when out of memory. */
EVP_MD_CTX *hk_p11_md_new(const char *name)
{
    EVP_MD *md = EVP_MD_fetch(hk_libctx(), name, NULL);
    EVP_MD_CTX *c = md != NULL ? EVP_MD_CTX_new() : NULL;

    if (c != NULL && EVP_DigestInit_ex(c, md, NULL) != 1) {
        EVP_MD_CTX_free(c);
        c = NULL;
    }
    EVP_MD_free(md);
    return c;
}

/* Starts op with mechanism m on key handle h (already checked). */
CK_RV hk_p11_op_init(hk_p11_op *op, const CK_MECHANISM *m, CK_OBJECT_HANDLE h)
{
    const char *md;

    if (m == NULL)
        return CKR_ARGUMENTS_BAD;
    if (op->active)
        return CKR_OPERATION_ACTIVE;
    md = hk_p11_mech_md_name(m->mechanism, 1);
    if (md == NULL && m->mechanism != CKM_ECDSA)
        return CKR_MECHANISM_INVALID;
    if (m->pParameter != NULL || m->ulParameterLen != 0)
        return CKR_MECHANISM_PARAM_INVALID;
    hk_p11_op_reset(op);
    if (md != NULL && (op->md = hk_p11_md_new(md)) == NULL) {
        hk_p11_op_reset(op);
        return CKR_HOST_MEMORY;
    }
    op->mech = m->mechanism;
    op->key = h;
    op->active = 1;
    return CKR_OK;
}

CK_RV hk_p11_op_update(hk_p11_op *op, const unsigned char *data, CK_ULONG len,
                       int multi)
{
    if (data == NULL && len > 0)
        return CKR_ARGUMENTS_BAD;
    /* PKCS#11 v3.0 5.13: C_Sign (C_Verify) cannot finish a multi-part
     * operation; SoftHSM answers CKR_OPERATION_ACTIVE as well */
    if (!multi && op->multi)
        return CKR_OPERATION_ACTIVE;
    op->multi |= multi;
    if (op->md != NULL)
        return len == 0 || EVP_DigestUpdate(op->md, data, len) == 1
                   ? CKR_OK
                   : CKR_FUNCTION_FAILED;
    if (len > HK_P11_RAW_MAX - op->rawlen)
        return CKR_DATA_LEN_RANGE;
    if (len > 0)
        memcpy(op->raw + op->rawlen, data, len);
    op->rawlen += len;
    return CKR_OK;
}

/* The digest to sign or verify: at most 32 bytes (see above). */
CK_RV hk_p11_op_digest(hk_p11_op *op, unsigned char dig[EVP_MAX_MD_SIZE],
                       size_t *dlen)
{
    unsigned int n = 0;

    if (op->md != NULL) {
        if (EVP_DigestFinal_ex(op->md, dig, &n) != 1)
            return CKR_FUNCTION_FAILED;
        *dlen = n;
    } else {
        if (op->rawlen == 0)
            return CKR_DATA_LEN_RANGE;
        *dlen = op->rawlen;
        memcpy(dig, op->raw, op->rawlen < 32 ? op->rawlen : 32);
    }
    if (*dlen > 32)
        *dlen = 32;
    return CKR_OK;
}
