/* Attributes of the key objects: one table per object built on demand from
 * the key's public metadata (hk_ks_keyinfo), used by C_GetAttributeValue
 * and by template matching in C_FindObjects; the curve OIDs. */
#include <string.h>

#include "pkcs11/hk_p11.h"

static const unsigned char hk_oid_secp256k1[] = {0x06, 0x05, 0x2b, 0x81,
                                                 0x04, 0x00, 0x0a};
static const unsigned char hk_oid_p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48,
                                            0xce, 0x3d, 0x03, 0x01, 0x07};

static const CK_BBOOL hk_true = CK_TRUE, hk_false = CK_FALSE;
static const CK_OBJECT_CLASS hk_cls_priv = CKO_PRIVATE_KEY;
static const CK_OBJECT_CLASS hk_cls_pub = CKO_PUBLIC_KEY;
static const CK_KEY_TYPE hk_ktype = CKK_EC;
static const CK_MECHANISM_TYPE hk_genmech = CKM_EC_KEY_PAIR_GEN;
static const CK_MECHANISM_TYPE hk_allowed[] = {
    CKM_ECDSA,        CKM_ECDSA_SHA1,   CKM_ECDSA_SHA224,
    CKM_ECDSA_SHA256, CKM_ECDSA_SHA384, CKM_ECDSA_SHA512,
};

const unsigned char *hk_p11_curve_oid(hk_curve_id c, CK_ULONG *len)
{
    if (c == HK_CURVE_SECP256K1) {
        *len = sizeof(hk_oid_secp256k1);
        return hk_oid_secp256k1;
    }
    if (c == HK_CURVE_P256) {
        *len = sizeof(hk_oid_p256);
        return hk_oid_p256;
    }
    return NULL;
}

int hk_p11_curve_from_oid(const unsigned char *der, CK_ULONG len,
                          hk_curve_id *out)
{
    if (der == NULL)
        return 0;
    if (len == sizeof(hk_oid_secp256k1) &&
        memcmp(der, hk_oid_secp256k1, len) == 0)
        *out = HK_CURVE_SECP256K1;
    else if (len == sizeof(hk_oid_p256) && memcmp(der, hk_oid_p256, len) == 0)
        *out = HK_CURVE_P256;
    else
        return 0;
    return 1;
}

#define HK_A(t, p, l) (out[n++] = (hk_p11_attr){(t), (p), (l)})
#define HK_B(t, v) HK_A((t), (v) ? &hk_true : &hk_false, sizeof(CK_BBOOL))

/* Attributes common to both halves of a key pair. */
static size_t hk_p11_key_attrs(const hk_p11_key *k, hk_p11_attr *out)
{
    CK_ULONG olen = 0;
    const unsigned char *oid = hk_p11_curve_oid(k->info.curve, &olen);
    size_t n = 0;

    HK_A(CKA_KEY_TYPE, &hk_ktype, sizeof(hk_ktype));
    HK_B(CKA_TOKEN, k->sess == 0);
    HK_B(CKA_MODIFIABLE, 1); /* CKA_ID (setattr.c) */
    HK_B(CKA_COPYABLE, 0);
    HK_B(CKA_DESTROYABLE, 1);
    HK_B(CKA_LOCAL, 1);
    HK_B(CKA_DERIVE, 0);
    HK_A(CKA_LABEL, k->info.label, strlen(k->info.label));
    HK_A(CKA_ID, k->id, k->idlen);
    HK_A(CKA_EC_PARAMS, oid, olen);
    HK_A(CKA_KEY_GEN_MECHANISM, &hk_genmech, sizeof(hk_genmech));
    HK_A(CKA_ALLOWED_MECHANISMS, hk_allowed, sizeof(hk_allowed));
    HK_A(HK_CKA_EPOCH, &k->info.epoch, sizeof(CK_ULONG));
    HK_A(CKA_START_DATE, "", 0);
    HK_A(CKA_END_DATE, "", 0);
    return n;
}

static size_t hk_p11_priv_attrs(const hk_p11_key *k, hk_p11_attr *out)
{
    size_t n = hk_p11_key_attrs(k, out);

    HK_A(CKA_CLASS, &hk_cls_priv, sizeof(hk_cls_priv));
    HK_B(CKA_PRIVATE, 1);
    HK_B(CKA_SENSITIVE, 1);
    HK_B(CKA_ALWAYS_SENSITIVE, 1);
    HK_B(CKA_NEVER_EXTRACTABLE, 1);
    HK_B(CKA_EXTRACTABLE, 0);
    HK_B(CKA_SIGN, 1);
    HK_B(CKA_SIGN_RECOVER, 0);
    HK_B(CKA_DECRYPT, 0);
    HK_B(CKA_UNWRAP, 0);
    HK_B(CKA_WRAP_WITH_TRUSTED, 0);
    HK_B(CKA_ALWAYS_AUTHENTICATE, 0);
    HK_A(CKA_SUBJECT, "", 0);
    HK_A(CKA_VALUE, NULL, CK_UNAVAILABLE_INFORMATION);
    return n;
}

static size_t hk_p11_pub_attrs(const hk_p11_key *k, hk_p11_attr *out)
{
    /* DER OCTET STRING of the uncompressed point */
    static const unsigned char hdr[2] = {0x04, HK_POINT_UNCOMPRESSED_LEN};
    size_t n = hk_p11_key_attrs(k, out);

    HK_A(CKA_CLASS, &hk_cls_pub, sizeof(hk_cls_pub));
    HK_B(CKA_PRIVATE, 0);
    HK_B(CKA_VERIFY, 1);
    HK_B(CKA_VERIFY_RECOVER, 0);
    HK_B(CKA_ENCRYPT, 0);
    HK_B(CKA_WRAP, 0);
    HK_B(CKA_TRUSTED, 0);
    HK_A(CKA_SUBJECT, "", 0);
    HK_A(CKA_EC_POINT, hdr, sizeof(hdr)); /* followed by k->point */
    return n;
}

size_t hk_p11_attrs(const hk_p11_key *k, int priv, hk_p11_attr *out)
{
    return priv ? hk_p11_priv_attrs(k, out) : hk_p11_pub_attrs(k, out);
}

/* Writes the value of attribute a (the point follows its 2-byte header). */
static void hk_p11_attr_copy(const hk_p11_key *k, const hk_p11_attr *a,
                             unsigned char *dst)
{
    if (a->type == CKA_EC_POINT) {
        memcpy(dst, a->val, 2);
        memcpy(dst + 2, k->point, HK_POINT_UNCOMPRESSED_LEN);
    } else if (a->len > 0) {
        memcpy(dst, a->val, a->len);
    }
}

static CK_ULONG hk_p11_attr_len(const hk_p11_attr *a)
{
    return a->type == CKA_EC_POINT ? a->len + HK_POINT_UNCOMPRESSED_LEN
                                   : a->len;
}

static const hk_p11_attr *hk_p11_attr_find(const hk_p11_attr *t, size_t n,
                                           CK_ATTRIBUTE_TYPE type)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (t[i].type == type)
            return &t[i];
    return NULL;
}

/* C_GetAttributeValue on one object: every entry is processed; the result
 * is the last error (sensitive, invalid type, too small), as the standard
 * asks. */
CK_RV hk_p11_get_attrs(const hk_p11_key *k, int priv, CK_ATTRIBUTE *tpl,
                       CK_ULONG n)
{
    hk_p11_attr t[HK_P11_ATTR_MAX];
    size_t nt = hk_p11_attrs(k, priv, t);
    const hk_p11_attr *a;
    CK_RV rv = CKR_OK;
    CK_ULONG i, len;

    for (i = 0; i < n; i++) {
        a = hk_p11_attr_find(t, nt, tpl[i].type);
        len = a != NULL ? hk_p11_attr_len(a) : 0;
        if (a == NULL || a->len == CK_UNAVAILABLE_INFORMATION) {
            rv = a == NULL ? CKR_ATTRIBUTE_TYPE_INVALID
                           : CKR_ATTRIBUTE_SENSITIVE;
            tpl[i].ulValueLen = CK_UNAVAILABLE_INFORMATION;
        } else if (tpl[i].pValue == NULL) {
            tpl[i].ulValueLen = len;
        } else if (tpl[i].ulValueLen < len) {
            rv = CKR_BUFFER_TOO_SMALL;
            tpl[i].ulValueLen = CK_UNAVAILABLE_INFORMATION;
        } else {
            hk_p11_attr_copy(k, a, tpl[i].pValue);
            tpl[i].ulValueLen = len;
        }
    }
    return rv;
}

int hk_p11_match(const hk_p11_key *k, int priv, const CK_ATTRIBUTE *tpl,
                 CK_ULONG n)
{
    hk_p11_attr t[HK_P11_ATTR_MAX];
    unsigned char buf[2 + HK_POINT_UNCOMPRESSED_LEN];
    size_t nt = hk_p11_attrs(k, priv, t);
    const hk_p11_attr *a;
    CK_ULONG i;

    for (i = 0; i < n; i++) {
        a = hk_p11_attr_find(t, nt, tpl[i].type);
        if (a == NULL || a->len == CK_UNAVAILABLE_INFORMATION ||
            hk_p11_attr_len(a) != tpl[i].ulValueLen ||
            (tpl[i].pValue == NULL && tpl[i].ulValueLen > 0))
            return 0;
        if (a->type == CKA_EC_POINT) {
            hk_p11_attr_copy(k, a, buf);
            if (memcmp(buf, tpl[i].pValue, sizeof(buf)) != 0)
                return 0;
        } else if (a->len > 0 && memcmp(a->val, tpl[i].pValue, a->len) != 0) {
            return 0;
        }
    }
    return 1;
}
