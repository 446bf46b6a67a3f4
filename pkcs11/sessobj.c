/* Session objects: certificates and data objects made by C_CreateObject
 * with CKA_TOKEN false. They live in the module context, belong to the
 * session that made them and vanish when it closes (C_CloseSession,
 * C_CloseAllSessions, C_Finalize); every session of the slot sees them,
 * as PKCS#11 says, private ones (CKA_PRIVATE true) only while logged in.
 * Each keeps its attributes packed in one buffer (store.c's record form).
 * Handles: slot, HK_P11_OBJ_BIT | HK_P11_SOBJ_BIT, id. */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "pkcs11/hk_p11.h"

#define HK_P11_SOBJ_MAX 4096 /* per slot */

static void hk_p11_sobj_free(hk_p11_sobj *so)
{
    if (so == NULL)
        return;
    OPENSSL_clear_free(so->buf, so->len);
    free(so);
}

/* Packs o into a new session object (values copied). */
static CK_RV hk_p11_sobj_make(const hk_p11_obj *o, hk_p11_sobj **out)
{
    hk_p11_sobj *so = calloc(1, sizeof(*so));

    if (so == NULL)
        return CKR_HOST_MEMORY;
    if (hk_p11_obj_pack(o, &so->buf, &so->len) != HK_OK ||
        hk_p11_obj_unpack(so->buf, so->len, &so->o) != HK_OK) {
        hk_p11_sobj_free(so);
        return CKR_HOST_MEMORY;
    }
    *out = so;
    return CKR_OK;
}

CK_RV hk_p11_sobj_add(hk_p11_slot *sl, CK_SESSION_HANDLE owner, int priv,
                      const hk_p11_obj *o, CK_OBJECT_HANDLE *h)
{
    hk_p11_sobj *so = NULL, **grown;
    CK_RV rv;

    if (sl->nsobjs >= HK_P11_SOBJ_MAX || sl->next_sobj >= HK_P11_SOBJ_BIT - 1)
        return CKR_DEVICE_MEMORY;
    if (sl->nsobjs == sl->sobj_cap) {
        grown = realloc(sl->sobjs, (sl->sobj_cap + 16) * sizeof(*grown));
        if (grown == NULL)
            return CKR_HOST_MEMORY;
        sl->sobjs = grown;
        sl->sobj_cap += 16;
    }
    if ((rv = hk_p11_sobj_make(o, &so)) != CKR_OK)
        return rv;
    so->owner = owner;
    so->priv = priv;
    so->o.id = ++sl->next_sobj;
    sl->sobjs[sl->nsobjs++] = so;
    *h = hk_p11_sobj_handle(sl, so);
    return CKR_OK;
}

CK_OBJECT_HANDLE hk_p11_sobj_handle(const hk_p11_slot *sl,
                                    const hk_p11_sobj *so)
{
    return hk_p11_handle((CK_SLOT_ID)(sl - hk_p11.slots), 0, 0) |
           HK_P11_OBJ_BIT | HK_P11_SOBJ_BIT | so->o.id;
}

int hk_p11_sobj_visible(const hk_p11_slot *sl, const hk_p11_sobj *so)
{
    return !so->priv || sl->logged_in;
}

static size_t hk_p11_sobj_index(const hk_p11_slot *sl, CK_OBJECT_HANDLE h)
{
    size_t i;

    for (i = 0; i < sl->nsobjs; i++)
        if (hk_p11_sobj_handle(sl, sl->sobjs[i]) == h)
            return i;
    return sl->nsobjs;
}

hk_p11_sobj *hk_p11_sobj_get(hk_p11_slot *sl, CK_OBJECT_HANDLE h)
{
    size_t i = hk_p11_sobj_index(sl, h);

    return i < sl->nsobjs && hk_p11_sobj_visible(sl, sl->sobjs[i])
               ? sl->sobjs[i]
               : NULL;
}

static void hk_p11_sobj_remove(hk_p11_slot *sl, size_t i)
{
    hk_p11_sobj_free(sl->sobjs[i]);
    memmove(&sl->sobjs[i], &sl->sobjs[i + 1],
            (sl->nsobjs - i - 1) * sizeof(*sl->sobjs));
    sl->nsobjs--;
}

CK_RV hk_p11_sobj_destroy(hk_p11_slot *sl, CK_OBJECT_HANDLE h)
{
    size_t i = hk_p11_sobj_index(sl, h);

    if (i == sl->nsobjs || !hk_p11_sobj_visible(sl, sl->sobjs[i]))
        return CKR_OBJECT_HANDLE_INVALID;
    hk_p11_sobj_remove(sl, i);
    return CKR_OK;
}

CK_RV hk_p11_sobj_replace(hk_p11_slot *sl, hk_p11_sobj *so, const hk_p11_obj *o)
{
    hk_p11_sobj *fresh = NULL;
    size_t i;
    CK_RV rv;

    for (i = 0; i < sl->nsobjs && sl->sobjs[i] != so; i++)
        ;
    if (i == sl->nsobjs)
        return CKR_OBJECT_HANDLE_INVALID;
    if ((rv = hk_p11_sobj_make(o, &fresh)) != CKR_OK)
        return rv;
    fresh->owner = so->owner;
    fresh->priv = so->priv;
    fresh->o.id = so->o.id;
    hk_p11_sobj_free(so);
    sl->sobjs[i] = fresh;
    return CKR_OK;
}

void hk_p11_sobj_drop(hk_p11_slot *sl, CK_SESSION_HANDLE owner)
{
    size_t i = 0;

    while (i < sl->nsobjs)
        if (owner == 0 || sl->sobjs[i]->owner == owner)
            hk_p11_sobj_remove(sl, i);
        else
            i++;
    if (owner == 0) {
        free(sl->sobjs);
        sl->sobjs = NULL;
        sl->sobj_cap = 0;
    }
}

void hk_p11_sobj_drop_private(hk_p11_slot *sl)
{
    size_t i = 0;

    while (i < sl->nsobjs)
        if (sl->sobjs[i]->priv)
            hk_p11_sobj_remove(sl, i);
        else
            i++;
}
