/* Objects: the slot's key table (refreshed from the keystore), object
 * handles, C_FindObjectsInit / C_FindObjects / C_FindObjectsFinal and
 * C_GetAttributeValue. Private key objects are visible only logged in. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "pkcs11/hk_p11.h"

#define HK_H_SLOT_SHIFT 24

CK_OBJECT_HANDLE hk_p11_handle(CK_SLOT_ID slot, size_t idx, int priv)
{
    return ((CK_OBJECT_HANDLE)(slot + 1) << HK_H_SLOT_SHIFT) |
           ((CK_OBJECT_HANDLE)idx << 1) | (priv ? 1 : 0);
}

CK_RV hk_p11_object_get(hk_p11_session *s, CK_OBJECT_HANDLE h, hk_p11_key **key,
                        int *priv)
{
    hk_p11_slot *sl = &hk_p11.slots[s->slot];
    size_t idx = (h & ((1ul << HK_H_SLOT_SHIFT) - 1)) >> 1;

    if ((h >> HK_H_SLOT_SHIFT) != s->slot + 1 || idx >= sl->nkeys ||
        !hk_p11_key_visible(sl, &sl->keys[idx], (int)(h & 1)))
        return CKR_OBJECT_HANDLE_INVALID;
    *key = &sl->keys[idx];
    *priv = (int)(h & 1);
    return CKR_OK;
}

int hk_p11_key_visible(const hk_p11_slot *sl, const hk_p11_key *k, int priv)
{
    return k->present && (!priv || (sl->logged_in && !k->orphan));
}

static long hk_p11_key_find(hk_p11_slot *sl, const hk_ks_keyinfo *ki)
{
    size_t i;

    for (i = 0; i < sl->nkeys; i++)
        if (strcmp(sl->keys[i].info.label, ki->label) == 0 &&
            memcmp(sl->keys[i].info.kid, ki->kid, HK_ID_LEN) == 0)
            return (long)i;
    return -1;
}

/* Adds or updates one key of the keystore's list. */
static void hk_p11_key_put(hk_p11_slot *sl, const hk_ks_keyinfo *ki)
{
    long i = hk_p11_key_find(sl, ki);
    hk_p11_key *k, *grown;

    if (i < 0) {
        if (sl->nkeys == sl->cap) {
            grown = realloc(sl->keys, (sl->cap + 32) * sizeof(*grown));
            if (grown == NULL)
                return;
            sl->keys = grown;
            sl->cap += 32;
        }
        i = (long)sl->nkeys;
        memset(&sl->keys[i], 0, sizeof(sl->keys[i]));
        if (hk_ks_pub_uncompressed(ki->curve, ki->pub.b, HK_POINT_LEN,
                                   sl->keys[i].point) != HK_OK)
            return;
        sl->nkeys++;
    }
    k = &sl->keys[i];
    k->info = *ki;
    memcpy(k->id, ki->kid, HK_ID_LEN);
    k->idlen = HK_ID_LEN;
    k->present = 1;
}

/* Is `item` in the comma-separated `list` (spaces around items ignored;
 * for curves, P-256's other names too)? */
static int hk_p11_listed(const char *list, const char *item, int curve)
{
    const char *p = list, *e;
    size_t n;

    while (*p != 0) {
        while (*p == ' ' || *p == ',')
            p++;
        if ((e = strchr(p, ',')) == NULL)
            e = p + strlen(p);
        for (n = (size_t)(e - p); n > 0 && p[n - 1] == ' '; n--)
            ;
        if (n > 0 && ((strlen(item) == n && strncmp(p, item, n) == 0) ||
                      (curve && strcmp(item, "p256") == 0 &&
                       ((n == 5 && strncasecmp(p, "P-256", 5) == 0) ||
                        (n == 10 && strncmp(p, "prime256v1", 10) == 0) ||
                        (n == 9 && strncmp(p, "secp256r1", 9) == 0)))))
            return 1;
        p = e;
    }
    return 0;
}

/* The view an application gets of the token's keys: the curves and
 * labels of $HALFKEY_PKCS11_CURVES and $HALFKEY_PKCS11_KEYS (per
 * process, e.g. an ssh-agent given P-256 keys only), else of halfkey.conf's
 * pkcs11_curves and pkcs11_keys; unset or empty: every key. */
static const char *hk_p11_view(const hk_p11_slot *sl, const char *env, int keys)
{
    const char *v = getenv(env);
    const hk_client_config *c;

    if (v != NULL)
        return v;
    c = sl->cli != NULL ? hk_client_config_get(sl->cli) : NULL;
    return c == NULL ? "" : keys ? c->pkcs11_keys : c->pkcs11_curves;
}

int hk_p11_curve_shown(const hk_p11_slot *sl, hk_curve_id curve)
{
    const char *l = hk_p11_view(sl, "HALFKEY_PKCS11_CURVES", 0);

    return *l == 0 || hk_p11_listed(l, hk_curve_name(curve), 1);
}

static int hk_p11_key_shown(const hk_p11_slot *sl, const hk_ks_keyinfo *ki)
{
    const char *l = hk_p11_view(sl, "HALFKEY_PKCS11_KEYS", 1);

    return hk_p11_curve_shown(sl, ki->curve) &&
           (*l == 0 || hk_p11_listed(l, ki->label, 0));
}

long hk_p11_keys_refresh(hk_p11_slot *sl, const char *label)
{
    hk_ks_keyinfo *list = NULL;
    size_t n = 0, i;
    long found = -1;

    if (sl->cli == NULL ||
        hk_ks_list(hk_client_keystore(sl->cli), &list, &n) != HK_OK)
        return -1;
    for (i = 0; i < sl->nkeys; i++)
        sl->keys[i].present = sl->keys[i].orphan;
    for (i = 0; i < n; i++)
        if (list[i].err == HK_OK && hk_p11_key_shown(sl, &list[i]))
            hk_p11_key_put(sl, &list[i]);
    hk_p11_store_reload(sl);
    hk_p11_store_key_ids(sl);
    for (i = 0; label != NULL && i < sl->nkeys; i++)
        if (sl->keys[i].present && !sl->keys[i].orphan &&
            strcmp(sl->keys[i].info.label, label) == 0)
            found = (long)i;
    hk_ks_list_free(list);
    return found;
}

static CK_RV hk_p11_find_init(hk_p11_session *s, CK_ATTRIBUTE *tpl, CK_ULONG n)
{
    hk_p11_slot *sl = &hk_p11.slots[s->slot];
    size_t i;
    int priv;
    CK_RV rv;

    if (s->finding)
        return CKR_OPERATION_ACTIVE;
    /* no kind check: a value no object has just matches nothing */
    if ((rv = hk_p11_tpl_args(tpl, n)) != CKR_OK)
        return rv;
    for (i = 0; i < n; i++)
        if (tpl[i].pValue == NULL && tpl[i].ulValueLen > 0)
            return CKR_ARGUMENTS_BAD;
    hk_p11_keys_refresh(sl, NULL);
    free(s->found);
    s->nfound = s->pos = 0;
    s->found =
        calloc(2 * sl->nkeys + sl->nobjs + sl->nsobjs + 1, sizeof(*s->found));
    if (s->found == NULL)
        return CKR_HOST_MEMORY;
    for (i = 0; i < sl->nobjs; i++)
        if (!hk_p11_obj_hidden(&sl->objs[i]) &&
            hk_p11_obj_match(&sl->objs[i], tpl, n))
            s->found[s->nfound++] =
                hk_p11_handle(s->slot, 0, 0) | HK_P11_OBJ_BIT | sl->objs[i].id;
    for (i = 0; i < sl->nsobjs; i++)
        if (hk_p11_sobj_visible(sl, sl->sobjs[i]) &&
            hk_p11_obj_match(&sl->sobjs[i]->o, tpl, n))
            s->found[s->nfound++] = hk_p11_sobj_handle(sl, sl->sobjs[i]);
    for (i = 0; i < sl->nkeys; i++)
        for (priv = 0; priv < 2; priv++)
            if (hk_p11_key_visible(sl, &sl->keys[i], priv) &&
                hk_p11_match(&sl->keys[i], priv, tpl, n))
                s->found[s->nfound++] = hk_p11_handle(s->slot, i, priv);
    s->finding = 1;
    return CKR_OK;
}

CK_RV C_FindObjectsInit(CK_SESSION_HANDLE hSession, CK_ATTRIBUTE_PTR pTemplate,
                        CK_ULONG ulCount)
{
    hk_p11_session *s;
    CK_RV rv;

    if ((rv = hk_p11_enter()) != CKR_OK)
        return rv;
    if ((rv = hk_p11_session_get(hSession, &s)) == CKR_OK)
        rv = hk_p11_find_init(s, pTemplate, ulCount);
    hk_p11_leave();
    return rv;
}

CK_RV C_FindObjects(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE_PTR phObject,
                    CK_ULONG ulMaxObjectCount, CK_ULONG_PTR pulObjectCount)
{
    hk_p11_session *s;
    CK_ULONG k = 0;
    CK_RV rv;

    if ((rv = hk_p11_enter()) != CKR_OK)
        return rv;
    if ((rv = hk_p11_session_get(hSession, &s)) != CKR_OK)
        goto done;
    if (phObject == NULL || pulObjectCount == NULL)
        rv = CKR_ARGUMENTS_BAD;
    else if (!s->finding)
        rv = CKR_OPERATION_NOT_INITIALIZED;
    else {
        while (k < ulMaxObjectCount && s->pos < s->nfound)
            phObject[k++] = s->found[s->pos++];
        *pulObjectCount = k;
    }
done:
    hk_p11_leave();
    return rv;
}

CK_RV C_FindObjectsFinal(CK_SESSION_HANDLE hSession)
{
    hk_p11_session *s;
    CK_RV rv;

    if ((rv = hk_p11_enter()) != CKR_OK)
        return rv;
    if ((rv = hk_p11_session_get(hSession, &s)) == CKR_OK && !s->finding)
        rv = CKR_OPERATION_NOT_INITIALIZED;
    if (rv == CKR_OK) {
        free(s->found);
        s->found = NULL;
        s->nfound = s->pos = 0;
        s->finding = 0;
    }
    hk_p11_leave();
    return rv;
}

CK_RV C_GetAttributeValue(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject,
                          CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount)
{
    hk_p11_session *s;
    hk_p11_obj *o = NULL;
    hk_p11_sobj *so;
    hk_p11_key *k;
    int priv;
    CK_RV rv;

    if ((rv = hk_p11_enter()) != CKR_OK)
        return rv;
    if ((rv = hk_p11_session_get(hSession, &s)) != CKR_OK)
        goto done;
    if ((o = hk_p11_obj_lookup(s, hObject, &so)) == NULL)
        rv = hk_p11_object_get(s, hObject, &k, &priv);
    if (rv == CKR_OK && (rv = hk_p11_tpl_args(pTemplate, ulCount)) == CKR_OK)
        rv = o != NULL ? hk_p11_obj_get_attrs(o, pTemplate, ulCount)
                       : hk_p11_get_attrs(k, priv, pTemplate, ulCount);
done:
    hk_p11_leave();
    return rv;
}
