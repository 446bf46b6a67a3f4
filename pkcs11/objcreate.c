/* C_CreateObject and C_DestroyObject: X.509 certificates (CKC_X_509), data
 * objects and EC public keys (CKO_PUBLIC_KEY, CKK_EC on P-256 or
 * secp256k1: C_Verify uses them; verify.c); token objects (the default) are
 * public (CKA_PRIVATE false) and need a logged-in R/W session; session objects
 * (CKA_TOKEN false, sessobj.c) may be private. Keys cannot be created here
 * (keygen: C_GenerateKeyPair); destroying a private key deletes the split key
 * on both sides. Reading and matching the attributes of stored objects. */
#include <stdio.h>
#include <string.h>

#include <openssl/x509.h>

#include "pkcs11/hk_p11.h"

static const CK_BBOOL hk_yes = CK_TRUE, hk_no = CK_FALSE;
static const CK_ULONG hk_zero = 0;
static const CK_ULONG hk_unavailable = CK_UNAVAILABLE_INFORMATION;

static CK_ATTRIBUTE *hk_p11_obj_attr(hk_p11_obj *o, CK_ATTRIBUTE_TYPE t)
{
    size_t i;

    for (i = 0; i < o->n; i++)
        if (o->a[i].type == t)
            return &o->a[i];
    return NULL;
}

/* Adds t = (p, len) unless the object has it already. */
static CK_RV hk_p11_obj_default(hk_p11_obj *o, CK_ATTRIBUTE_TYPE t,
                                const void *p, CK_ULONG len)
{
    if (hk_p11_obj_attr(o, t) != NULL)
        return CKR_OK;
    if (o->n == sizeof(o->a) / sizeof(o->a[0]))
        return CKR_TEMPLATE_INCONSISTENT;
    o->a[o->n++] = (CK_ATTRIBUTE){t, (void *)p, len};
    return CKR_OK;
}

/* The boolean attribute t of o, `dflt` if absent. */
static int hk_p11_obj_flag(hk_p11_obj *o, CK_ATTRIBUTE_TYPE t, int dflt)
{
    return hk_p11_tpl_bool(o->a, o->n, t, dflt);
}

static int hk_p11_obj_class_is(hk_p11_obj *o, CK_OBJECT_CLASS c)
{
    CK_ULONG v;

    return hk_p11_tpl_ulong(o->a, o->n, CKA_CLASS, &v) && v == c;
}

/* The attributes a caller may give each class (PKCS#11 v3.0 4.4, 4.5, 4.6:
 * the common object and storage attributes, then the class's own); any
 * other standard attribute is CKR_ATTRIBUTE_TYPE_INVALID, vendor ones are
 * kept as they are. */
static const CK_ATTRIBUTE_TYPE hk_p11_storage_attrs[] = {
    CKA_CLASS,    CKA_TOKEN,       CKA_PRIVATE, CKA_MODIFIABLE,
    CKA_COPYABLE, CKA_DESTROYABLE, CKA_LABEL,
};
static const CK_ATTRIBUTE_TYPE hk_p11_data_attrs[] = {CKA_APPLICATION,
                                                      CKA_OBJECT_ID, CKA_VALUE};
static const CK_ATTRIBUTE_TYPE hk_p11_cert_attrs[] = {
    CKA_CERTIFICATE_TYPE,
    CKA_TRUSTED,
    CKA_CERTIFICATE_CATEGORY,
    CKA_CHECK_VALUE,
    CKA_START_DATE,
    CKA_END_DATE,
    CKA_PUBLIC_KEY_INFO,
    CKA_SUBJECT,
    CKA_ID,
    CKA_ISSUER,
    CKA_SERIAL_NUMBER,
    CKA_VALUE,
    CKA_URL,
    CKA_HASH_OF_SUBJECT_PUBLIC_KEY,
    CKA_HASH_OF_ISSUER_PUBLIC_KEY,
    CKA_JAVA_MIDP_SECURITY_DOMAIN,
    CKA_NAME_HASH_ALGORITHM,
};
/* PKCS#11 v3.0 4.7-4.8 (common key, public key) and 6.3.3 (EC public
 * key); CKA_LOCAL and CKA_KEY_GEN_MECHANISM are the token's to set. */
static const CK_ATTRIBUTE_TYPE hk_p11_pubkey_attrs[] = {
    CKA_KEY_TYPE,      CKA_ID,
    CKA_START_DATE,    CKA_END_DATE,
    CKA_DERIVE,        CKA_ALLOWED_MECHANISMS,
    CKA_SUBJECT,       CKA_ENCRYPT,
    CKA_VERIFY,        CKA_VERIFY_RECOVER,
    CKA_WRAP,          CKA_TRUSTED,
    CKA_WRAP_TEMPLATE, CKA_PUBLIC_KEY_INFO,
    CKA_EC_PARAMS,     CKA_EC_POINT,
};
#define HK_IN(t, list)                                                         \
    hk_p11_type_in((t), (list), sizeof(list) / sizeof(list[0]))

static int hk_p11_type_in(CK_ATTRIBUTE_TYPE t, const CK_ATTRIBUTE_TYPE *list,
                          size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (list[i] == t)
            return 1;
    return 0;
}

/* Every attribute of o belongs to its class (CKO_*); CKA_UNIQUE_ID,
 * CKA_LOCAL and CKA_KEY_GEN_MECHANISM are the token's to set
 * (CKR_ATTRIBUTE_READ_ONLY). */
static CK_RV hk_p11_obj_types(hk_p11_obj *o, CK_OBJECT_CLASS cls)
{
    CK_ATTRIBUTE_TYPE t;
    int ok;
    size_t i;

    for (i = 0; i < o->n; i++) {
        t = o->a[i].type;
        if (t == CKA_UNIQUE_ID ||
            (cls == CKO_PUBLIC_KEY &&
             (t == CKA_LOCAL || t == CKA_KEY_GEN_MECHANISM)))
            return CKR_ATTRIBUTE_READ_ONLY;
        ok = cls == CKO_CERTIFICATE  ? HK_IN(t, hk_p11_cert_attrs)
             : cls == CKO_PUBLIC_KEY ? HK_IN(t, hk_p11_pubkey_attrs)
                                     : HK_IN(t, hk_p11_data_attrs);
        if (!(t & CKA_VENDOR_DEFINED) && !HK_IN(t, hk_p11_storage_attrs) && !ok)
            return CKR_ATTRIBUTE_TYPE_INVALID;
    }
    return CKR_OK;
}

/* An EC public key: CKA_KEY_TYPE CKK_EC, CKA_EC_PARAMS a named curve the
 * module knows, CKA_EC_POINT a point on it (DER OCTET STRING, as PKCS#11
 * says, or the bare uncompressed point). */
static CK_RV hk_p11_pubkey_check(hk_p11_obj *o)
{
    CK_ATTRIBUTE *p = hk_p11_obj_attr(o, CKA_EC_PARAMS),
                 *q = hk_p11_obj_attr(o, CKA_EC_POINT);
    unsigned char pt[HK_POINT_UNCOMPRESSED_LEN];
    hk_curve_id curve = 0;
    CK_ULONG kt;
    EVP_PKEY *pk;

    if (hk_p11_obj_attr(o, CKA_KEY_TYPE) == NULL || p == NULL || q == NULL)
        return CKR_TEMPLATE_INCOMPLETE;
    if (!hk_p11_tpl_ulong(o->a, o->n, CKA_KEY_TYPE, &kt) || kt != CKK_EC)
        return CKR_ATTRIBUTE_VALUE_INVALID;
    if (!hk_p11_curve_from_oid(p->pValue, p->ulValueLen, &curve))
        return CKR_CURVE_NOT_SUPPORTED;
    if (!hk_p11_ec_point(q->pValue, q->ulValueLen, pt))
        return CKR_ATTRIBUTE_VALUE_INVALID;
    if ((pk = hk_p11_ec_pkey(curve, pt)) == NULL)
        return CKR_ATTRIBUTE_VALUE_INVALID; /* not on the curve */
    EVP_PKEY_free(pk);
    return CKR_OK;
}

/* The defaults of an EC public key (PKCS#11 v3.0 4.7, 4.8). */
static CK_RV hk_p11_pubkey_defaults(hk_p11_obj *o)
{
    static const CK_ATTRIBUTE_TYPE no[] = {CKA_ENCRYPT, CKA_VERIFY_RECOVER,
                                           CKA_WRAP,    CKA_DERIVE,
                                           CKA_TRUSTED, CKA_LOCAL};
    CK_RV rv;
    size_t i;

    if ((rv = hk_p11_pubkey_check(o)) != CKR_OK ||
        (rv = hk_p11_obj_default(o, CKA_ID, "", 0)) != CKR_OK ||
        (rv = hk_p11_obj_default(o, CKA_SUBJECT, "", 0)) != CKR_OK ||
        (rv = hk_p11_obj_default(o, CKA_VERIFY, &hk_yes, 1)) != CKR_OK ||
        (rv = hk_p11_obj_default(o, CKA_KEY_GEN_MECHANISM, &hk_unavailable,
                                 sizeof(hk_unavailable))) != CKR_OK)
        return rv;
    for (i = 0; i < sizeof(no) / sizeof(no[0]); i++)
        if ((rv = hk_p11_obj_default(o, no[i], &hk_no, 1)) != CKR_OK)
            return rv;
    return CKR_OK;
}

/* CKA_SUBJECT, CKA_ISSUER, CKA_SERIAL_NUMBER from the DER certificate;
 * der[3] holds the encodings (OPENSSL_free). */
static CK_RV hk_p11_cert_fields(hk_p11_obj *o, unsigned char *der[3])
{
    CK_ATTRIBUTE *v = hk_p11_obj_attr(o, CKA_VALUE);
    const unsigned char *p;
    X509 *x;
    int l[3];
    CK_RV rv = CKR_ATTRIBUTE_VALUE_INVALID;

    if (v == NULL)
        return CKR_TEMPLATE_INCOMPLETE;
    p = v->pValue;
    if ((x = d2i_X509(NULL, &p, (long)v->ulValueLen)) == NULL)
        return rv;
    l[0] = i2d_X509_NAME(X509_get_subject_name(x), &der[0]);
    l[1] = i2d_X509_NAME(X509_get_issuer_name(x), &der[1]);
    l[2] = i2d_ASN1_INTEGER(X509_get_serialNumber(x), &der[2]);
    X509_free(x);
    if (l[0] > 0 && l[1] > 0 && l[2] > 0 &&
        (rv = hk_p11_obj_default(o, CKA_SUBJECT, der[0], l[0])) == CKR_OK &&
        (rv = hk_p11_obj_default(o, CKA_ISSUER, der[1], l[1])) == CKR_OK)
        rv = hk_p11_obj_default(o, CKA_SERIAL_NUMBER, der[2], l[2]);
    return rv;
}

/* Copies the checked template (tpl.c); room is kept for the defaults. */
static CK_RV hk_p11_obj_copy(const CK_ATTRIBUTE *t, CK_ULONG n, hk_p11_obj *o)
{
    CK_RV rv;

    if (t == NULL || n == 0)
        return CKR_TEMPLATE_INCOMPLETE; /* no CKA_CLASS */
    if ((rv = hk_p11_tpl_check(t, n)) != CKR_OK)
        return rv;
    if (n > sizeof(o->a) / sizeof(o->a[0]) - 20)
        return CKR_TEMPLATE_INCONSISTENT;
    memcpy(o->a, t, n * sizeof(*t));
    o->n = n;
    return CKR_OK;
}

/* The attributes of a certificate, a public key or a data object. */
static CK_RV hk_p11_obj_class(hk_p11_obj *o, unsigned char *der[3])
{
    CK_RV rv;

    CK_ULONG v;

    if (hk_p11_obj_class_is(o, CKO_PUBLIC_KEY))
        return hk_p11_pubkey_defaults(o);
    if (!hk_p11_obj_class_is(o, CKO_CERTIFICATE)) {
        if ((rv = hk_p11_obj_default(o, CKA_APPLICATION, "", 0)) != CKR_OK)
            return rv;
        return hk_p11_obj_default(o, CKA_VALUE, "", 0);
    }
    if (hk_p11_obj_attr(o, CKA_CERTIFICATE_TYPE) == NULL)
        return CKR_TEMPLATE_INCOMPLETE;
    if (!hk_p11_tpl_ulong(o->a, o->n, CKA_CERTIFICATE_TYPE, &v) ||
        v != CKC_X_509)
        return CKR_ATTRIBUTE_VALUE_INVALID;
    /* 0 unspecified, 1 token user, 2 authority, 3 other entity */
    if (hk_p11_tpl_ulong(o->a, o->n, CKA_CERTIFICATE_CATEGORY, &v) && v > 3)
        return CKR_ATTRIBUTE_VALUE_INVALID;
    if ((rv = hk_p11_cert_fields(o, der)) != CKR_OK ||
        (rv = hk_p11_obj_default(o, CKA_ID, "", 0)) != CKR_OK ||
        (rv = hk_p11_obj_default(o, CKA_TRUSTED, &hk_no, 1)) != CKR_OK)
        return rv;
    return hk_p11_obj_default(o, CKA_CERTIFICATE_CATEGORY, &hk_zero,
                              sizeof(hk_zero));
}

/* The template as an object, checked and completed with defaults. `so`:
 * the SO is logged in (only the SO may make a trusted certificate). */
static CK_RV hk_p11_obj_from(const CK_ATTRIBUTE *t, CK_ULONG n, int so,
                             hk_p11_obj *o, unsigned char *der[3])
{
    CK_OBJECT_CLASS cls;
    CK_RV rv;

    if ((rv = hk_p11_obj_copy(t, n, o)) != CKR_OK)
        return rv;
    if (hk_p11_obj_attr(o, CKA_CLASS) == NULL)
        return CKR_TEMPLATE_INCOMPLETE;
    if (!hk_p11_tpl_ulong(o->a, o->n, CKA_CLASS, &cls) ||
        (cls != CKO_CERTIFICATE && cls != CKO_DATA && cls != CKO_PUBLIC_KEY))
        return CKR_ATTRIBUTE_VALUE_INVALID;
    if ((rv = hk_p11_obj_types(o, cls)) != CKR_OK)
        return rv;
    if (hk_p11_obj_flag(o, CKA_TRUSTED, 0) && !so)
        return CKR_ATTRIBUTE_READ_ONLY;
    /* token objects are stored in clear: public ones only */
    if (hk_p11_obj_flag(o, CKA_TOKEN, 1) && hk_p11_obj_flag(o, CKA_PRIVATE, 0))
        return CKR_TEMPLATE_INCONSISTENT;
    if ((rv = hk_p11_obj_class(o, der)) != CKR_OK ||
        (rv = hk_p11_obj_default(o, CKA_TOKEN, &hk_yes, 1)) != CKR_OK ||
        (rv = hk_p11_obj_default(o, CKA_PRIVATE, &hk_no, 1)) != CKR_OK ||
        (rv = hk_p11_obj_default(o, CKA_MODIFIABLE, &hk_yes, 1)) != CKR_OK ||
        (rv = hk_p11_obj_default(o, CKA_COPYABLE, &hk_yes, 1)) != CKR_OK ||
        (rv = hk_p11_obj_default(o, CKA_DESTROYABLE, &hk_yes, 1)) != CKR_OK)
        return rv;
    return hk_p11_obj_default(o, CKA_LABEL, "", 0);
}

/* Token objects: an R/W session, logged in (as the user, or as the SO,
 * whose are the public objects too). */
static CK_RV hk_p11_writable(const hk_p11_session *s)
{
    const hk_p11_slot *sl = &hk_p11.slots[s->slot];

    if (!(s->flags & CKF_RW_SESSION))
        return CKR_SESSION_READ_ONLY;
    return sl->logged_in || sl->so_logged_in ? CKR_OK : CKR_USER_NOT_LOGGED_IN;
}

/* Who may create or change object o: a token object needs a logged-in
 * R/W session; a session object only login if private (PKCS#11's R/O
 * sessions may make session objects). */
static CK_RV hk_p11_obj_access(const hk_p11_session *s, int token, int priv)
{
    if (token)
        return hk_p11_writable(s);
    return !priv || hk_p11.slots[s->slot].logged_in ? CKR_OK
                                                    : CKR_USER_NOT_LOGGED_IN;
}

static CK_RV hk_p11_create(hk_p11_session *s, CK_SESSION_HANDLE hs,
                           const CK_ATTRIBUTE *t, CK_ULONG n,
                           CK_OBJECT_HANDLE *h)
{
    hk_p11_slot *sl = &hk_p11.slots[s->slot];
    unsigned char *der[3] = {NULL, NULL, NULL};
    hk_p11_obj o;
    int token, priv;
    CK_RV rv;

    memset(&o, 0, sizeof(o));
    if (h == NULL)
        return CKR_ARGUMENTS_BAD;
    if ((rv = hk_p11_obj_from(t, n, sl->so_logged_in, &o, der)) != CKR_OK)
        goto done;
    token = hk_p11_obj_flag(&o, CKA_TOKEN, 1);
    priv = hk_p11_obj_flag(&o, CKA_PRIVATE, 0);
    if ((rv = hk_p11_obj_access(s, token, priv)) != CKR_OK)
        goto done;
    if (!token) {
        rv = hk_p11_sobj_add(sl, hs, priv, &o, h);
        goto done;
    }
    if ((rv = hk_p11_err(hk_p11_store_edit(sl, &o, 0, NULL), "store object",
                         NULL)) == CKR_OK)
        *h = hk_p11_handle(s->slot, 0, 0) | HK_P11_OBJ_BIT | o.id;
done:
    OPENSSL_free(der[0]);
    OPENSSL_free(der[1]);
    OPENSSL_free(der[2]);
    return rv;
}

hk_p11_obj *hk_p11_obj_lookup(hk_p11_session *s, CK_OBJECT_HANDLE h,
                              hk_p11_sobj **so)
{
    hk_p11_slot *sl = &hk_p11.slots[s->slot];

    *so = NULL;
    if ((h >> 24) != s->slot + 1 || !(h & HK_P11_OBJ_BIT))
        return NULL;
    if (!(h & HK_P11_SOBJ_BIT))
        return hk_p11_store_get(sl, h);
    if ((*so = hk_p11_sobj_get(sl, h)) == NULL)
        return NULL;
    return &(*so)->o;
}

CK_RV hk_p11_obj_may_change(hk_p11_session *s, const hk_p11_sobj *so)
{
    return so != NULL ? hk_p11_obj_access(s, 0, so->priv) : hk_p11_writable(s);
}

CK_RV C_CreateObject(CK_SESSION_HANDLE hSession, CK_ATTRIBUTE_PTR pTemplate,
                     CK_ULONG ulCount, CK_OBJECT_HANDLE_PTR phObject)
{
    hk_p11_session *s;
    CK_RV rv;

    if ((rv = hk_p11_enter()) != CKR_OK)
        return rv;
    if ((rv = hk_p11_session_get(hSession, &s)) == CKR_OK)
        rv = hk_p11_create(s, hSession, pTemplate, ulCount, phObject);
    hk_p11_leave();
    return rv;
}

/* Destroying a private key deletes the split key on both sides
 * (hk_client_delete; mutex dropped). Its public key object stays, in this
 * context only, until it is destroyed too (pkcs11-tool --test-ec destroys
 * both). The public key object of a live key cannot be destroyed alone:
 * it is the key's own. */
static CK_RV hk_p11_destroy_key(hk_p11_session *s, hk_p11_key *k, int priv)
{
    hk_p11_slot *sl = &hk_p11.slots[s->slot];
    CK_RV rv;

    /* a session key is a session object: R/O sessions may destroy it */
    if (k->sess == 0 && (rv = hk_p11_writable(s)) != CKR_OK)
        return rv;
    if (!priv && k->orphan) {
        k->orphan = k->present = 0;
        return CKR_OK;
    }
    if (!priv)
        return CKR_ACTION_PROHIBITED;
    return hk_p11_key_delete(sl, (size_t)(k - sl->keys));
}

static CK_RV hk_p11_destroy(hk_p11_session *s, CK_OBJECT_HANDLE h)
{
    hk_p11_slot *sl = &hk_p11.slots[s->slot];
    hk_p11_key *k;
    hk_p11_obj *o;
    hk_p11_sobj *so;
    int priv, found = 0;
    CK_RV rv;

    if (hk_p11_object_get(s, h, &k, &priv) == CKR_OK)
        return hk_p11_destroy_key(s, k, priv);
    if ((o = hk_p11_obj_lookup(s, h, &so)) == NULL)
        return CKR_OBJECT_HANDLE_INVALID;
    if ((rv = hk_p11_obj_may_change(s, so)) != CKR_OK)
        return rv;
    if (!hk_p11_obj_flag(o, CKA_DESTROYABLE, 1))
        return CKR_ACTION_PROHIBITED;
    if (so != NULL)
        return hk_p11_sobj_destroy(sl, h);
    rv = hk_p11_err(hk_p11_store_edit(sl, NULL, o->id, &found),
                    "destroy object", NULL);
    return rv == CKR_OK && !found ? CKR_OBJECT_HANDLE_INVALID : rv;
}

CK_RV C_DestroyObject(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject)
{
    hk_p11_session *s;
    CK_RV rv;

    if ((rv = hk_p11_enter()) != CKR_OK)
        return rv;
    if ((rv = hk_p11_session_get(hSession, &s)) == CKR_OK)
        rv = hk_p11_destroy(s, hObject);
    hk_p11_leave();
    return rv;
}

CK_RV hk_p11_obj_get_attrs(hk_p11_obj *o, CK_ATTRIBUTE *tpl, CK_ULONG n)
{
    const CK_ATTRIBUTE *a;
    CK_RV rv = CKR_OK;
    CK_ULONG i;

    for (i = 0; i < n; i++) {
        if ((a = hk_p11_obj_attr(o, tpl[i].type)) == NULL) {
            rv = CKR_ATTRIBUTE_TYPE_INVALID;
            tpl[i].ulValueLen = CK_UNAVAILABLE_INFORMATION;
        } else if (tpl[i].pValue == NULL) {
            tpl[i].ulValueLen = a->ulValueLen;
        } else if (tpl[i].ulValueLen < a->ulValueLen) {
            rv = CKR_BUFFER_TOO_SMALL;
            tpl[i].ulValueLen = CK_UNAVAILABLE_INFORMATION;
        } else {
            if (a->ulValueLen > 0)
                memcpy(tpl[i].pValue, a->pValue, a->ulValueLen);
            tpl[i].ulValueLen = a->ulValueLen;
        }
    }
    return rv;
}

int hk_p11_obj_match(hk_p11_obj *o, const CK_ATTRIBUTE *tpl, CK_ULONG n)
{
    const CK_ATTRIBUTE *a;
    CK_ULONG i;

    for (i = 0; i < n; i++)
        if ((a = hk_p11_obj_attr(o, tpl[i].type)) == NULL ||
            a->ulValueLen != tpl[i].ulValueLen ||
            (a->ulValueLen > 0 &&
             (tpl[i].pValue == NULL ||
              memcmp(a->pValue, tpl[i].pValue, a->ulValueLen) != 0)))
            return 0;
    return 1;
}
