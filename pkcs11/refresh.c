/* The vendor way to refresh a key through PKCS#11: C_SetAttributeValue of
 * HK_CKA_REFRESH = CK_TRUE on a private key (logged in, R/W session)
 * rotates the key's shares with the server; the public key, and so every
 * other attribute, stays the same and HK_CKA_EPOCH grows. */
#include <stdio.h>

#include "pkcs11/hk_p11.h"

static hk_err hk_p11_refresh_call(hk_client *cli, const char *label, void *arg)
{
    (void)arg;
    return hk_client_refresh(cli, label);
}

/* Only HK_CKA_REFRESH = CK_TRUE, on a private key. */
static CK_RV hk_p11_refresh_check(int priv, const CK_ATTRIBUTE *t, CK_ULONG n)
{
    CK_ULONG i;

    for (i = 0; i < n; i++) {
        if (t[i].type != HK_CKA_REFRESH)
            return CKR_TEMPLATE_INCONSISTENT;
        if (!priv)
            return CKR_ATTRIBUTE_TYPE_INVALID;
        if (t[i].pValue == NULL || t[i].ulValueLen != sizeof(CK_BBOOL) ||
            *(CK_BBOOL *)t[i].pValue != CK_TRUE)
            return CKR_ATTRIBUTE_VALUE_INVALID;
    }
    return CKR_OK;
}

CK_RV hk_p11_refresh(hk_p11_session *s, hk_p11_key *k, int priv,
                     const CK_ATTRIBUTE *t, CK_ULONG n)
{
    hk_p11_slot *sl = &hk_p11.slots[s->slot];
    char label[HK_KS_LABEL_MAX + 1];
    CK_RV rv;
    hk_err e;

    if ((rv = hk_p11_refresh_check(priv, t, n)) != CKR_OK)
        return rv;
    snprintf(label, sizeof(label), "%s", k->info.label);
    hk_p11_leave();
    e = hk_p11_retry_busy(sl->cli, label, hk_p11_refresh_call, NULL);
    (void)hk_p11_enter();
    (void)hk_p11_keys_refresh(sl, NULL);
    return hk_p11_err(e, "refresh", label);
}
