/* Session keys: a key pair generated with CKA_TOKEN false is a split key
 * like any other (the two-party keygen needs the server to hold a share),
 * owned by the session that made it. It is deleted on both sides
 * (hk_client_delete: the server's share, then the key file) when that
 * session closes (C_CloseSession, C_CloseAllSessions, C_Finalize); at
 * C_Logout its private half goes (PKCS#11 v3.0 5.6: logout destroys the
 * private session objects, and the deletion needs the login), its public
 * key object stays until the session closes. */
#include <stdio.h>

#include "pkcs11/hk_p11.h"

CK_RV hk_p11_key_delete(hk_p11_slot *sl, size_t idx)
{
    char label[HK_KS_LABEL_MAX + 1];
    hk_err e;
    CK_RV rv;

    snprintf(label, sizeof(label), "%s", sl->keys[idx].info.label);
    hk_p11_leave();
    e = hk_client_delete(sl->cli, label);
    (void)hk_p11_enter();
    if (e == HK_ERR_BUSY)
        fprintf(stderr,
                "halfkey-pkcs11: delete %s: a signing session is "
                "using the key\n",
                label);
    if ((rv = hk_p11_err(e, "delete", label)) != CKR_OK)
        return rv;
    /* entries only append: the index is stable, the table may move */
    sl->keys[idx].orphan = 1;
    (void)hk_p11_store_key_id_drop(sl, &sl->keys[idx]);
    (void)hk_p11_keys_refresh(sl, NULL);
    return CKR_OK;
}

void hk_p11_session_keys_drop(hk_p11_slot *sl, CK_SESSION_HANDLE owner,
                              int priv_only)
{
    hk_p11_key *k;
    size_t i;

    for (i = 0; i < sl->nkeys; i++) {
        k = &sl->keys[i];
        if (k->sess == 0 || (owner != 0 && k->sess != owner))
            continue;
        if (k->present && !k->orphan && hk_p11_key_delete(sl, i) != CKR_OK)
            fprintf(stderr,
                    "halfkey-pkcs11: session key %s could not be deleted: "
                    "it stays in %s (halfkey delete --key %s)\n",
                    sl->keys[i].info.label, sl->dir, sl->keys[i].info.label);
        k = &sl->keys[i];
        if (priv_only)
            continue;
        /* gone, or (not deleted) a key of the token directory from now on */
        if (k->orphan)
            k->present = k->orphan = 0;
        k->sess = 0;
    }
}
