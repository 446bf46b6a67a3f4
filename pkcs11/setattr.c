/* C_SetAttributeValue (logged in, R/W session): CKA_LABEL and CKA_ID of
 * stored objects (certificates, data objects); CKA_ID of a key pair (kept
 * as a hidden stored object: the key's label is its keystore name and does
 * not change); the vendor refresh (refresh.c). Any other attribute is
 * CKR_ATTRIBUTE_READ_ONLY. */
#include <string.h>

#include "pkcs11/hk_p11.h"

static int hk_p11_has(const CK_ATTRIBUTE *t, CK_ULONG n, CK_ATTRIBUTE_TYPE a)
{
    CK_ULONG i;

    for (i = 0; i < n; i++)
        if (t[i].type == a)
            return 1;
    return 0;
}

/* Only CKA_LABEL / CKA_ID (ids: 1..HK_P11_ID_MAX bytes) in a template
 * already checked against the attribute kinds (tpl.c). */
static CK_RV hk_p11_set_check(const CK_ATTRIBUTE *t, CK_ULONG n, int label)
{
    CK_ULONG i;

    for (i = 0; i < n; i++) {
        if (t[i].type != CKA_ID && (t[i].type != CKA_LABEL || !label))
            return CKR_ATTRIBUTE_READ_ONLY;
        if (t[i].type == CKA_ID && t[i].ulValueLen > HK_P11_ID_MAX)
            return CKR_ATTRIBUTE_VALUE_INVALID;
    }
    return CKR_OK;
}

static CK_RV hk_p11_set_obj(hk_p11_slot *sl, const hk_p11_obj *o,
                            hk_p11_sobj *so, const CK_ATTRIBUTE *t, CK_ULONG n)
{
    hk_p11_obj c = *o;
    CK_ULONG i;
    size_t j;
    CK_RV rv;

    /* CKA_MODIFIABLE false: read-only for good (PKCS#11 v3.0 4.4) */
    if (!hk_p11_tpl_bool(o->a, o->n, CKA_MODIFIABLE, 1))
        return CKR_ACTION_PROHIBITED;
    if ((rv = hk_p11_set_check(t, n, 1)) != CKR_OK)
        return rv;
    for (i = 0; i < n; i++) {
        for (j = 0; j < c.n && c.a[j].type != t[i].type; j++)
            ;
        if (j == sizeof(c.a) / sizeof(c.a[0]))
            return CKR_TEMPLATE_INCONSISTENT;
        c.a[j] = t[i];
        c.n += j == c.n;
    }
    if (so != NULL)
        return hk_p11_sobj_replace(sl, so, &c);
    return hk_p11_err(hk_p11_store_edit(sl, &c, c.id, NULL), "set attribute",
                      NULL);
}

static CK_RV hk_p11_set_key(hk_p11_slot *sl, hk_p11_key *k,
                            const CK_ATTRIBUTE *t, CK_ULONG n)
{
    CK_RV rv = hk_p11_set_check(t, n, 0);
    CK_ULONG i;

    for (i = 0; rv == CKR_OK && i < n; i++)
        rv = t[i].ulValueLen == 0
                 ? CKR_ATTRIBUTE_VALUE_INVALID
                 : hk_p11_err(
                       hk_p11_store_key_id(sl, k, t[i].pValue, t[i].ulValueLen),
                       "set CKA_ID", k->info.label);
    (void)hk_p11_keys_refresh(sl, NULL);
    return rv;
}

static CK_RV hk_p11_set(hk_p11_session *s, CK_OBJECT_HANDLE h,
                        const CK_ATTRIBUTE *t, CK_ULONG n)
{
    hk_p11_slot *sl = &hk_p11.slots[s->slot];
    hk_p11_obj *o;
    hk_p11_sobj *so;
    hk_p11_key *k;
    int priv;
    CK_RV rv;

    o = hk_p11_obj_lookup(s, h, &so);
    if (o == NULL && (rv = hk_p11_object_get(s, h, &k, &priv)) != CKR_OK)
        return rv;
    if (t == NULL || n == 0)
        return CKR_ARGUMENTS_BAD;
    if ((rv = hk_p11_tpl_check(t, n)) != CKR_OK)
        return rv;
    if (o != NULL)
        return (rv = hk_p11_obj_may_change(s, so)) != CKR_OK
                   ? rv
                   : hk_p11_set_obj(sl, o, so, t, n);
    if (!(s->flags & CKF_RW_SESSION) && k->sess == 0)
        return CKR_SESSION_READ_ONLY;
    if (!sl->logged_in)
        return CKR_USER_NOT_LOGGED_IN;
    if (hk_p11_has(t, n, HK_CKA_REFRESH))
        return hk_p11_refresh(s, k, priv, t, n);
    return hk_p11_set_key(sl, k, t, n);
}

CK_RV C_SetAttributeValue(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject,
                          CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount)
{
    hk_p11_session *s;
    CK_RV rv;

    if ((rv = hk_p11_enter()) != CKR_OK)
        return rv;
    if ((rv = hk_p11_session_get(hSession, &s)) == CKR_OK)
        rv = hk_p11_set(s, hObject, pTemplate, ulCount);
    hk_p11_leave();
    return rv;
}
