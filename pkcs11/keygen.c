/* Key generation: C_GenerateKeyPair(CKM_EC_KEY_PAIR_GEN) runs the
 * two-party keygen of the client core. The curve is CKA_EC_PARAMS (the
 * named-curve OID of secp256k1 or P-256); the key's keystore label is
 * CKA_LABEL (private template first), else "id-<hex CKA_ID>", else a
 * random "key-<hex>". Keys are always token objects. CKA_ID is the
 * template's (kept in a hidden stored object, store.c), else the key id
 * the server assigns.
 * Capability attributes of the templates (CKA_SIGN, CKA_DERIVE, ...) are
 * accepted and not stored. */
#include <stdio.h>
#include <string.h>

#include <openssl/rand.h>

#include "pkcs11/hk_p11.h"

typedef struct {
    hk_curve_id curve;
    char label[HK_KS_LABEL_MAX + 1];
    unsigned char id[HK_P11_ID_MAX];
    size_t idlen; /* 0: the key id */
    int token;    /* CKA_TOKEN true was asked for */
} hk_p11_genreq;

static const CK_ATTRIBUTE *hk_p11_tpl_get(const CK_ATTRIBUTE *t, CK_ULONG n,
                                          CK_ATTRIBUTE_TYPE type)
{
    CK_ULONG i;

    for (i = 0; i < n; i++)
        if (t[i].type == type)
            return t[i].pValue != NULL || t[i].ulValueLen == 0 ? &t[i] : NULL;
    return NULL;
}

/* CKA_CLASS and CKA_KEY_TYPE, if given, must fit; CKA_TOKEN noted. */
static CK_RV hk_p11_tpl_check(const CK_ATTRIBUTE *t, CK_ULONG n,
                              CK_OBJECT_CLASS cls, hk_p11_genreq *r)
{
    const CK_ATTRIBUTE *a;

    if (t == NULL && n > 0)
        return CKR_ARGUMENTS_BAD;
    if ((a = hk_p11_tpl_get(t, n, CKA_CLASS)) != NULL &&
        (a->ulValueLen != sizeof(CK_OBJECT_CLASS) ||
         *(CK_OBJECT_CLASS *)a->pValue != cls))
        return CKR_TEMPLATE_INCONSISTENT;
    if ((a = hk_p11_tpl_get(t, n, CKA_KEY_TYPE)) != NULL &&
        (a->ulValueLen != sizeof(CK_KEY_TYPE) ||
         *(CK_KEY_TYPE *)a->pValue != CKK_EC))
        return CKR_TEMPLATE_INCONSISTENT;
    if ((a = hk_p11_tpl_get(t, n, CKA_TOKEN)) != NULL &&
        a->ulValueLen == sizeof(CK_BBOOL) && *(CK_BBOOL *)a->pValue)
        r->token = 1;
    return CKR_OK;
}

static CK_RV hk_p11_label(const CK_ATTRIBUTE *pub, CK_ULONG npub,
                          const CK_ATTRIBUTE *prv, CK_ULONG nprv, char *out)
{
    const CK_ATTRIBUTE *a = hk_p11_tpl_get(prv, nprv, CKA_LABEL);
    unsigned char rnd[8];
    const unsigned char *b;
    CK_ULONG i;

    if (a == NULL)
        a = hk_p11_tpl_get(pub, npub, CKA_LABEL);
    if (a != NULL && a->ulValueLen > 0) {
        if (a->ulValueLen > HK_KS_LABEL_MAX)
            return CKR_ATTRIBUTE_VALUE_INVALID;
        memcpy(out, a->pValue, a->ulValueLen);
        out[a->ulValueLen] = 0;
        return hk_ks_label_ok(out) ? CKR_OK : CKR_ATTRIBUTE_VALUE_INVALID;
    }
    if ((a = hk_p11_tpl_get(prv, nprv, CKA_ID)) == NULL)
        a = hk_p11_tpl_get(pub, npub, CKA_ID);
    if (a != NULL && a->ulValueLen > 0 && a->ulValueLen <= 30) {
        b = a->pValue;
        strcpy(out, "id-");
        for (i = 0; i < a->ulValueLen; i++)
            snprintf(out + 3 + 2 * i, 3, "%02x", b[i]);
        return CKR_OK;
    }
    if (RAND_bytes(rnd, sizeof(rnd)) != 1)
        return CKR_FUNCTION_FAILED;
    strcpy(out, "key-");
    for (i = 0; i < sizeof(rnd); i++)
        snprintf(out + 4 + 2 * i, 3, "%02x", rnd[i]);
    return CKR_OK;
}

static CK_RV hk_p11_genreq_parse(const CK_MECHANISM *m, const CK_ATTRIBUTE *pub,
                                 CK_ULONG npub, const CK_ATTRIBUTE *prv,
                                 CK_ULONG nprv, hk_p11_genreq *r)
{
    const CK_ATTRIBUTE *a;
    CK_RV rv;

    if (m == NULL)
        return CKR_ARGUMENTS_BAD;
    if (m->mechanism != CKM_EC_KEY_PAIR_GEN)
        return CKR_MECHANISM_INVALID;
    if (m->pParameter != NULL || m->ulParameterLen != 0)
        return CKR_MECHANISM_PARAM_INVALID;
    if ((rv = hk_p11_tpl_check(pub, npub, CKO_PUBLIC_KEY, r)) != CKR_OK ||
        (rv = hk_p11_tpl_check(prv, nprv, CKO_PRIVATE_KEY, r)) != CKR_OK)
        return rv;
    if ((a = hk_p11_tpl_get(pub, npub, CKA_EC_PARAMS)) == NULL &&
        (a = hk_p11_tpl_get(prv, nprv, CKA_EC_PARAMS)) == NULL)
        return CKR_TEMPLATE_INCOMPLETE;
    if (!hk_p11_curve_from_oid(a->pValue, a->ulValueLen, &r->curve))
        return CKR_CURVE_NOT_SUPPORTED;
    if ((a = hk_p11_tpl_get(prv, nprv, CKA_ID)) == NULL)
        a = hk_p11_tpl_get(pub, npub, CKA_ID);
    if (a != NULL && a->ulValueLen > HK_P11_ID_MAX)
        return CKR_ATTRIBUTE_VALUE_INVALID;
    if (a != NULL && a->ulValueLen > 0) {
        memcpy(r->id, a->pValue, a->ulValueLen);
        r->idlen = a->ulValueLen;
    }
    return hk_p11_label(pub, npub, prv, nprv, r->label);
}

/* With the mutex held; dropped for the network run. */
static CK_RV hk_p11_generate(hk_p11_session *s, const hk_p11_genreq *r,
                             CK_OBJECT_HANDLE *hpub, CK_OBJECT_HANDLE *hprv)
{
    CK_SLOT_ID slot = s->slot;
    hk_p11_slot *sl = &hk_p11.slots[slot];
    hk_ks_keyinfo ki;
    long idx;
    hk_err e;
    CK_RV rv;

    hk_p11_leave();
    e = hk_client_keygen(sl->cli, r->curve, r->label, &ki);
    (void)hk_p11_enter();
    if ((rv = hk_p11_err(e, "keygen", r->label)) != CKR_OK)
        return rv;
    if ((idx = hk_p11_keys_refresh(sl, r->label)) < 0)
        return CKR_FUNCTION_FAILED;
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
        rv = hk_p11_generate(s, &req, phPublicKey, phPrivateKey);
done:
    hk_p11_leave();
    return rv;
}
