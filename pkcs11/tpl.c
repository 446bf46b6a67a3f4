/* Caller templates, checked before any value is read. A PKCS#11 module
 * runs inside other people's processes: a template whose count or value
 * lengths lie must get an error code, never a read past the caller's
 * buffers. Every attribute the module knows has a kind (PKCS#11 v3.0
 * section 4: CK_BBOOL, CK_ULONG, CK_DATE, byte array); a value must have
 * exactly the length of its kind. */
#include <string.h>

#include "pkcs11/hk_p11.h"

static const struct {
    CK_ATTRIBUTE_TYPE type;
    hk_p11_akind kind;
} hk_p11_akinds[] = {
    {CKA_CLASS, HK_P11_AK_ULONG},
    {CKA_TOKEN, HK_P11_AK_BOOL},
    {CKA_PRIVATE, HK_P11_AK_BOOL},
    {CKA_LABEL, HK_P11_AK_BYTES},
    {CKA_APPLICATION, HK_P11_AK_BYTES},
    {CKA_VALUE, HK_P11_AK_BYTES},
    {CKA_OBJECT_ID, HK_P11_AK_BYTES},
    {CKA_CERTIFICATE_TYPE, HK_P11_AK_ULONG},
    {CKA_ISSUER, HK_P11_AK_BYTES},
    {CKA_SERIAL_NUMBER, HK_P11_AK_BYTES},
    {CKA_TRUSTED, HK_P11_AK_BOOL},
    {CKA_CERTIFICATE_CATEGORY, HK_P11_AK_ULONG},
    {CKA_JAVA_MIDP_SECURITY_DOMAIN, HK_P11_AK_ULONG},
    {CKA_URL, HK_P11_AK_BYTES},
    {CKA_HASH_OF_SUBJECT_PUBLIC_KEY, HK_P11_AK_BYTES},
    {CKA_HASH_OF_ISSUER_PUBLIC_KEY, HK_P11_AK_BYTES},
    {CKA_NAME_HASH_ALGORITHM, HK_P11_AK_ULONG},
    {CKA_CHECK_VALUE, HK_P11_AK_BYTES},
    {CKA_KEY_TYPE, HK_P11_AK_ULONG},
    {CKA_SUBJECT, HK_P11_AK_BYTES},
    {CKA_ID, HK_P11_AK_BYTES},
    {CKA_SENSITIVE, HK_P11_AK_BOOL},
    {CKA_ENCRYPT, HK_P11_AK_BOOL},
    {CKA_DECRYPT, HK_P11_AK_BOOL},
    {CKA_WRAP, HK_P11_AK_BOOL},
    {CKA_UNWRAP, HK_P11_AK_BOOL},
    {CKA_SIGN, HK_P11_AK_BOOL},
    {CKA_SIGN_RECOVER, HK_P11_AK_BOOL},
    {CKA_VERIFY, HK_P11_AK_BOOL},
    {CKA_VERIFY_RECOVER, HK_P11_AK_BOOL},
    {CKA_DERIVE, HK_P11_AK_BOOL},
    {CKA_START_DATE, HK_P11_AK_DATE},
    {CKA_END_DATE, HK_P11_AK_DATE},
    {CKA_PUBLIC_KEY_INFO, HK_P11_AK_BYTES},
    {CKA_EXTRACTABLE, HK_P11_AK_BOOL},
    {CKA_LOCAL, HK_P11_AK_BOOL},
    {CKA_NEVER_EXTRACTABLE, HK_P11_AK_BOOL},
    {CKA_ALWAYS_SENSITIVE, HK_P11_AK_BOOL},
    {CKA_KEY_GEN_MECHANISM, HK_P11_AK_ULONG},
    {CKA_MODIFIABLE, HK_P11_AK_BOOL},
    {CKA_COPYABLE, HK_P11_AK_BOOL},
    {CKA_DESTROYABLE, HK_P11_AK_BOOL},
    {CKA_EC_PARAMS, HK_P11_AK_BYTES},
    {CKA_EC_POINT, HK_P11_AK_BYTES},
    {CKA_ALWAYS_AUTHENTICATE, HK_P11_AK_BOOL},
    {CKA_WRAP_WITH_TRUSTED, HK_P11_AK_BOOL},
    {CKA_UNIQUE_ID, HK_P11_AK_BYTES},
    {CKA_ALLOWED_MECHANISMS, HK_P11_AK_ULONGS},
    {HK_CKA_EPOCH, HK_P11_AK_ULONG},
    {HK_CKA_REFRESH, HK_P11_AK_BOOL},
};

hk_p11_akind hk_p11_attr_kind(CK_ATTRIBUTE_TYPE t)
{
    size_t i;

    for (i = 0; i < sizeof(hk_p11_akinds) / sizeof(hk_p11_akinds[0]); i++)
        if (hk_p11_akinds[i].type == t)
            return hk_p11_akinds[i].kind;
    /* other vendors' attributes are opaque bytes (NSS adds some) */
    return (t & CKA_VENDOR_DEFINED) ? HK_P11_AK_BYTES : HK_P11_AK_UNKNOWN;
}

CK_RV hk_p11_tpl_args(const CK_ATTRIBUTE *t, CK_ULONG n)
{
    if (n > HK_P11_TPL_MAX || (t == NULL && n > 0))
        return CKR_ARGUMENTS_BAD;
    return CKR_OK;
}

/* One value against its kind; the length first, so that nothing is read
 * from a buffer that is shorter than the caller says. */
static CK_RV hk_p11_value_check(const CK_ATTRIBUTE *a)
{
    CK_BBOOL b;

    if (a->pValue == NULL && a->ulValueLen > 0)
        return CKR_ARGUMENTS_BAD;
    if (a->ulValueLen > HK_P11_VALUE_MAX)
        return CKR_ATTRIBUTE_VALUE_INVALID;
    switch (hk_p11_attr_kind(a->type)) {
    case HK_P11_AK_UNKNOWN:
        return CKR_ATTRIBUTE_TYPE_INVALID;
    case HK_P11_AK_BOOL:
        if (a->ulValueLen != sizeof(CK_BBOOL))
            return CKR_ATTRIBUTE_VALUE_INVALID;
        memcpy(&b, a->pValue, sizeof(b));
        return b == CK_TRUE || b == CK_FALSE ? CKR_OK
                                             : CKR_ATTRIBUTE_VALUE_INVALID;
    case HK_P11_AK_ULONG:
        return a->ulValueLen == sizeof(CK_ULONG) ? CKR_OK
                                                 : CKR_ATTRIBUTE_VALUE_INVALID;
    case HK_P11_AK_ULONGS:
        return a->ulValueLen % sizeof(CK_ULONG) == 0
                   ? CKR_OK
                   : CKR_ATTRIBUTE_VALUE_INVALID;
    case HK_P11_AK_DATE: /* empty: no date */
        return a->ulValueLen == 0 || a->ulValueLen == sizeof(CK_DATE)
                   ? CKR_OK
                   : CKR_ATTRIBUTE_VALUE_INVALID;
    default:
        return CKR_OK;
    }
}

CK_RV hk_p11_tpl_check(const CK_ATTRIBUTE *t, CK_ULONG n)
{
    CK_ULONG i, j;
    CK_RV rv;

    if ((rv = hk_p11_tpl_args(t, n)) != CKR_OK)
        return rv;
    for (i = 0; i < n; i++) {
        if ((rv = hk_p11_value_check(&t[i])) != CKR_OK)
            return rv;
        for (j = 0; j < i; j++)
            if (t[j].type == t[i].type)
                return CKR_TEMPLATE_INCONSISTENT;
    }
    return CKR_OK;
}

const CK_ATTRIBUTE *hk_p11_tpl_find(const CK_ATTRIBUTE *t, CK_ULONG n,
                                    CK_ATTRIBUTE_TYPE type)
{
    CK_ULONG i;

    for (i = 0; t != NULL && i < n; i++)
        if (t[i].type == type)
            return &t[i];
    return NULL;
}

int hk_p11_tpl_bool(const CK_ATTRIBUTE *t, CK_ULONG n, CK_ATTRIBUTE_TYPE type,
                    int dflt)
{
    const CK_ATTRIBUTE *a = hk_p11_tpl_find(t, n, type);
    CK_BBOOL b;

    if (a == NULL || a->ulValueLen != sizeof(b))
        return dflt;
    memcpy(&b, a->pValue, sizeof(b));
    return b == CK_TRUE;
}

int hk_p11_tpl_ulong(const CK_ATTRIBUTE *t, CK_ULONG n, CK_ATTRIBUTE_TYPE type,
                     CK_ULONG *out)
{
    const CK_ATTRIBUTE *a = hk_p11_tpl_find(t, n, type);

    if (a == NULL || a->ulValueLen != sizeof(*out))
        return 0;
    memcpy(out, a->pValue, sizeof(*out)); /* callers' values: unaligned */
    return 1;
}
