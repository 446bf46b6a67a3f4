/* Key generation: C_GenerateKeyPair(CKM_EC_KEY_PAIR_GEN) runs the
 * two-party keygen of the client core. The curve is CKA_EC_PARAMS (the
 * named-curve OID of secp256k1 or P-256); the key's keystore label is
 * CKA_LABEL (private template first), else "id-<hex CKA_ID>", else a
 * random "key-<hex>". CKA_TOKEN false makes a session key (sesskey.c).
 * CKA_ID is the
 * template's (kept in a hidden stored object, store.c), else the key id
 * the server assigns.
 * Capability attributes of the templates (CKA_SIGN, CKA_DERIVE, ...) are
 * accepted and not stored. */
#include <stdio.h>
#include <string.h>

#include <openssl/rand.h>

#include "common/libctx.h"
#include "pkcs11/hk_p11.h"

/* Attributes the token sets itself (PKCS#11 v3.0 4.7, 4.8: "must not be
 * specified"), and CKA_TRUSTED, which only the SO may set and keys here
 * never have. */
static const CK_ATTRIBUTE_TYPE hk_p11_gen_ro[] = {
    CKA_LOCAL,
    CKA_ALWAYS_SENSITIVE,
    CKA_NEVER_EXTRACTABLE,
    CKA_KEY_GEN_MECHANISM,
    CKA_UNIQUE_ID,
    CKA_EC_POINT,
    CKA_TRUSTED,
    HK_CKA_EPOCH,
    HK_CKA_REFRESH,
};

/* One template: checked (tpl.c); CKA_CLASS and CKA_KEY_TYPE, if given,
 * must fit; nothing the key cannot be (extractable, not sensitive). */
static CK_RV hk_p11_tpl_key(const CK_ATTRIBUTE *t, CK_ULONG n,
                            CK_OBJECT_CLASS cls)
{
    CK_ULONG v, i, j;
    CK_RV rv;

    if ((rv = hk_p11_tpl_check(t, n)) != CKR_OK)
        return rv;
    for (i = 0; i < n; i++)
        for (j = 0; j < sizeof(hk_p11_gen_ro) / sizeof(hk_p11_gen_ro[0]); j++)
            if (t[i].type == hk_p11_gen_ro[j])
                return CKR_ATTRIBUTE_READ_ONLY;
    if ((hk_p11_tpl_ulong(t, n, CKA_CLASS, &v) && v != cls) ||
        (hk_p11_tpl_ulong(t, n, CKA_KEY_TYPE, &v) && v != CKK_EC))
        return CKR_TEMPLATE_INCONSISTENT;
    if (cls == CKO_PRIVATE_KEY &&
        (hk_p11_tpl_bool(t, n, CKA_EXTRACTABLE, 0) ||
         !hk_p11_tpl_bool(t, n, CKA_SENSITIVE, 1) ||
         hk_p11_tpl_bool(t, n, CKA_ALWAYS_AUTHENTICATE, 0)))
        return CKR_ATTRIBUTE_VALUE_INVALID;
    return CKR_OK;
}

/* Token or session key: the private key's CKA_TOKEN (which is what is
 * kept), else the public key's, else a token key (the module's default,
 * as for C_CreateObject). Both given and different: one half would
 * outlive the other. */
static CK_RV hk_p11_gen_token(const CK_ATTRIBUTE *pub, CK_ULONG npub,
                              const CK_ATTRIBUTE *prv, CK_ULONG nprv,
                              int *token)
{
    int p = hk_p11_tpl_bool(pub, npub, CKA_TOKEN, -1);
    int q = hk_p11_tpl_bool(prv, nprv, CKA_TOKEN, -1);

    if (p >= 0 && q >= 0 && p != q)
        return CKR_TEMPLATE_INCONSISTENT;
    *token = q >= 0 ? q : p >= 0 ? p : 1;
    return CKR_OK;
}

static CK_RV hk_p11_label(const CK_ATTRIBUTE *pub, CK_ULONG npub,
                          const CK_ATTRIBUTE *prv, CK_ULONG nprv, char *out)
{
    const CK_ATTRIBUTE *a = hk_p11_tpl_find(prv, nprv, CKA_LABEL);
    unsigned char rnd[8];
    const unsigned char *b;
    CK_ULONG i;

    if (a == NULL)
        a = hk_p11_tpl_find(pub, npub, CKA_LABEL);
    if (a != NULL && a->ulValueLen > 0) {
        if (a->ulValueLen > HK_KS_LABEL_MAX)
            return CKR_ATTRIBUTE_VALUE_INVALID;
        memcpy(out, a->pValue, a->ulValueLen);
        out[a->ulValueLen] = 0;
        return hk_ks_label_ok(out) ? CKR_OK : CKR_ATTRIBUTE_VALUE_INVALID;
    }
    if ((a = hk_p11_tpl_find(prv, nprv, CKA_ID)) == NULL)
        a = hk_p11_tpl_find(pub, npub, CKA_ID);
    if (a != NULL && a->ulValueLen > 0 && a->ulValueLen <= 30) {
        b = a->pValue;
        strcpy(out, "id-");
        for (i = 0; i < a->ulValueLen; i++)
            snprintf(out + 3 + 2 * i, 3, "%02x", b[i]);
        return CKR_OK;
    }
    if (!hk_rand_bytes(rnd, sizeof(rnd)))
        return CKR_FUNCTION_FAILED;
    strcpy(out, "key-");
    for (i = 0; i < sizeof(rnd); i++)
        snprintf(out + 4 + 2 * i, 3, "%02x", rnd[i]);
    return CKR_OK;
}

CK_RV hk_p11_genreq_parse(const CK_MECHANISM *m, const CK_ATTRIBUTE *pub,
                          CK_ULONG npub, const CK_ATTRIBUTE *prv, CK_ULONG nprv,
                          hk_p11_genreq *r)
{
    const CK_ATTRIBUTE *a;
    CK_RV rv;

    memset(r, 0, sizeof(*r));
    if (m == NULL)
        return CKR_ARGUMENTS_BAD;
    if (m->mechanism != CKM_EC_KEY_PAIR_GEN)
        return CKR_MECHANISM_INVALID;
    if (m->pParameter != NULL || m->ulParameterLen != 0)
        return CKR_MECHANISM_PARAM_INVALID;
    if ((rv = hk_p11_tpl_key(pub, npub, CKO_PUBLIC_KEY)) != CKR_OK ||
        (rv = hk_p11_tpl_key(prv, nprv, CKO_PRIVATE_KEY)) != CKR_OK ||
        (rv = hk_p11_gen_token(pub, npub, prv, nprv, &r->token)) != CKR_OK)
        return rv;
    if ((a = hk_p11_tpl_find(pub, npub, CKA_EC_PARAMS)) == NULL &&
        (a = hk_p11_tpl_find(prv, nprv, CKA_EC_PARAMS)) == NULL)
        return CKR_TEMPLATE_INCOMPLETE;
    if (!hk_p11_curve_from_oid(a->pValue, a->ulValueLen, &r->curve))
        return CKR_CURVE_NOT_SUPPORTED;
    if ((a = hk_p11_tpl_find(prv, nprv, CKA_ID)) == NULL)
        a = hk_p11_tpl_find(pub, npub, CKA_ID);
    if (a != NULL && a->ulValueLen > HK_P11_ID_MAX)
        return CKR_ATTRIBUTE_VALUE_INVALID;
    if (a != NULL && a->ulValueLen > 0) {
        memcpy(r->id, a->pValue, a->ulValueLen);
        r->idlen = a->ulValueLen;
    }
    return hk_p11_label(pub, npub, prv, nprv, r->label);
}

/* With the mutex held; dropped for the network run. */
static CK_RV hk_p11_generate(hk_p11_session *s, CK_SESSION_HANDLE hs,
                             const hk_p11_genreq *r, CK_OBJECT_HANDLE *hpub,
                             CK_OBJECT_HANDLE *hprv)
{
    CK_SLOT_ID slot = s->slot;
    hk_p11_session *now;
    hk_p11_slot *sl = &hk_p11.slots[slot];
    hk_ks_keyinfo ki;
    long idx;
    hk_err e;
    CK_RV rv;

    /* a curve this application is not shown (HALFKEY_PKCS11_CURVES) */
    if (!hk_p11_curve_shown(sl, r->curve))
        return CKR_CURVE_NOT_SUPPORTED;
    hk_p11_leave();
    e = hk_client_keygen(sl->cli, r->curve, r->label, &ki);
    (void)hk_p11_enter();
    if ((rv = hk_p11_err(e, "keygen", r->label)) != CKR_OK)
        return rv;
    if ((idx = hk_p11_keys_refresh(sl, r->label)) < 0)
        return CKR_FUNCTION_FAILED;
    if (!r->token) {
        sl->keys[idx].sess = hs;
        /* the session closed during the keygen: nothing owns the key */
        if (hk_p11_session_get(hs, &now) != CKR_OK || now != s) {
            hk_p11_session_keys_drop(sl, hs, 0);
            return CKR_SESSION_CLOSED;
        }
    }
    /* the template's CKA_ID; the key is made even if this fails */
    if (r->idlen > 0) {
        if (hk_p11_store_key_id(sl, &sl->keys[idx], r->id, r->idlen) != HK_OK)
            fprintf(stderr,
                    "halfkey-pkcs11: keygen %s: could not keep its "
                    "CKA_ID\n",
                    r->label);
        (void)hk_p11_keys_refresh(sl, NULL);
    }
    *hpub = hk_p11_handle(slot, (size_t)idx, 0);
    *hprv = hk_p11_handle(slot, (size_t)idx, 1);
    return CKR_OK;
}

CK_RV C_GenerateKeyPair(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism,
                        CK_ATTRIBUTE_PTR pPublicKeyTemplate,
                        CK_ULONG ulPublicKeyAttributeCount,
                        CK_ATTRIBUTE_PTR pPrivateKeyTemplate,
                        CK_ULONG ulPrivateKeyAttributeCount,
                        CK_OBJECT_HANDLE_PTR phPublicKey,
                        CK_OBJECT_HANDLE_PTR phPrivateKey)
{
    hk_p11_genreq req;
    hk_p11_session *s;
    CK_RV rv;

    memset(&req, 0, sizeof(req));
    if ((rv = hk_p11_enter()) != CKR_OK)
        return rv;
    if ((rv = hk_p11_session_get(hSession, &s)) != CKR_OK)
        goto done;
    if (phPublicKey == NULL || phPrivateKey == NULL)
        rv = CKR_ARGUMENTS_BAD;
    else
        rv = hk_p11_genreq_parse(pMechanism, pPublicKeyTemplate,
                                 ulPublicKeyAttributeCount, pPrivateKeyTemplate,
                                 ulPrivateKeyAttributeCount, &req);
    if (rv == CKR_OK && req.token && !(s->flags & CKF_RW_SESSION))
        rv = CKR_SESSION_READ_ONLY;
    if (rv == CKR_OK && !hk_p11.slots[s->slot].logged_in)
        rv = CKR_USER_NOT_LOGGED_IN;
    if (rv == CKR_OK)
        rv = hk_p11_generate(s, hSession, &req, phPublicKey, phPrivateKey);
done:
    hk_p11_leave();
    return rv;
}
