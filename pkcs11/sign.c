/* Signing: C_SignInit, C_Sign, C_SignUpdate, C_SignFinal. The signature
 * (r || s, 64 bytes) comes from the two-party protocol run by the client
 * core; the module mutex is dropped for the network run. A key locked
 * after an invalid-signature abort gives CKR_KEY_FUNCTION_NOT_PERMITTED
 * (at C_SignInit, or at C_Sign if it is locked meanwhile) and one line on
 * stderr. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pkcs11/hk_p11.h"

#define HK_BUSY_WAIT_MS 20
#define HK_BUSY_TRIES 6000 /* two minutes for another session on the key */

static CK_RV hk_p11_sign_init(hk_p11_session *s, const CK_MECHANISM *m,
                              CK_OBJECT_HANDLE h)
{
    hk_p11_slot *sl = &hk_p11.slots[s->slot];
    hk_ks_keyinfo ki;
    hk_p11_key *k;
    int priv;
    CK_RV rv;

    if (m == NULL)
        return CKR_ARGUMENTS_BAD;
    if (!sl->logged_in)
        return CKR_USER_NOT_LOGGED_IN;
    if (hk_p11_object_get(s, h, &k, &priv) != CKR_OK)
        return CKR_KEY_HANDLE_INVALID;
    if (!priv)
        return CKR_KEY_FUNCTION_NOT_PERMITTED;
    /* live: another session signing with the key right now is not a lock
     * (C_Sign then waits for it) */
    rv = hk_p11_err(
        hk_ks_key_info_live(hk_client_keystore(sl->cli), k->info.label, &ki),
        "sign", k->info.label);
    if (rv == CKR_OK && ki.locked)
        rv = hk_p11_err(HK_ERR_KEY_LOCKED, "sign", k->info.label);
    return rv != CKR_OK ? rv : hk_p11_op_init(&s->sign, m, h);
}

CK_RV C_SignInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism,
                 CK_OBJECT_HANDLE hKey)
{
    hk_p11_session *s;
    CK_RV rv;

    if ((rv = hk_p11_enter()) != CKR_OK)
        return rv;
    if ((rv = hk_p11_session_get(hSession, &s)) == CKR_OK)
        rv = hk_p11_sign_init(s, pMechanism, hKey);
    hk_p11_leave();
    return rv;
}

hk_err hk_p11_retry_busy(hk_client *cli, const char *label,
                         hk_err (*f)(hk_client *, const char *, void *),
                         void *arg)
{
    struct timespec ts = {0, HK_BUSY_WAIT_MS * 1000000L};
    hk_err e;
    int i;

    for (i = 0; i < HK_BUSY_TRIES; i++) {
        if ((e = f(cli, label, arg)) != HK_ERR_BUSY)
            return e;
        nanosleep(&ts, NULL);
    }
    return e;
}

typedef struct {
    const unsigned char *dig;
    size_t dlen;
    unsigned char *sig;
} hk_p11_signreq;

static hk_err hk_p11_sign_call(hk_client *cli, const char *label, void *arg)
{
    hk_p11_signreq *r = arg;

    return hk_client_sign(cli, label, r->dig, r->dlen, r->sig);
}

/* Called with the mutex held and the op active; returns with it held. The
 * operation ends here whatever the result. */
static CK_RV hk_p11_sign_finish(hk_p11_session *s, CK_BYTE_PTR sig)
{
    hk_p11_slot *sl = &hk_p11.slots[s->slot];
    unsigned char dig[EVP_MAX_MD_SIZE];
    char label[HK_KS_LABEL_MAX + 1];
    hk_p11_key *k;
    size_t dlen = 0, i;
    hk_p11_signreq req = {dig, 0, sig};
    int priv;
    CK_RV rv;
    hk_err e;

    if ((rv = hk_p11_object_get(s, s->sign.key, &k, &priv)) != CKR_OK ||
        (rv = hk_p11_op_digest(&s->sign, dig, &dlen)) != CKR_OK) {
        hk_p11_op_reset(&s->sign);
        return rv == CKR_OBJECT_HANDLE_INVALID ? CKR_KEY_HANDLE_INVALID : rv;
    }
    snprintf(label, sizeof(label), "%s", k->info.label);
    req.dlen = dlen;
    s->sign.busy = 1;
    hk_p11_leave();
    e = hk_p11_retry_busy(sl->cli, label, hk_p11_sign_call, &req);
    (void)hk_p11_enter();
    s->sign.busy = 0;
    rv = hk_p11_err(e, "sign", label);
    if (s->closed) {
        for (i = 0; i < hk_p11.nsess; i++)
            if (hk_p11.sess[i] == s)
                hk_p11.sess[i] = NULL;
        hk_p11_session_free(s);
        return rv == CKR_OK ? CKR_SESSION_CLOSED : rv;
    }
    hk_p11_op_reset(&s->sign);
    return rv;
}

/* The size step of the two-call convention: CKR_OK with the length, or
 * CKR_BUFFER_TOO_SMALL; both keep the operation. 1 if the caller's buffer
 * takes the signature. */
static int hk_p11_sig_room(CK_BYTE_PTR sig, CK_ULONG_PTR len, CK_RV *rv)
{
    if (len == NULL) {
        *rv = CKR_ARGUMENTS_BAD;
        return 0;
    }
    if (sig == NULL || *len < HK_P11_SIG_LEN)
        *rv = sig == NULL ? CKR_OK : CKR_BUFFER_TOO_SMALL;
    *len = HK_P11_SIG_LEN;
    return sig != NULL && *rv == CKR_OK;
}

static CK_RV hk_p11_sign_active(CK_SESSION_HANDLE h, hk_p11_session **s)
{
    CK_RV rv = hk_p11_session_get(h, s);

    if (rv == CKR_OK && !(*s)->sign.active)
        rv = CKR_OPERATION_NOT_INITIALIZED;
    if (rv == CKR_OK && (*s)->sign.busy)
        rv = CKR_OPERATION_ACTIVE;
    return rv;
}

CK_RV C_Sign(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pData, CK_ULONG ulDataLen,
             CK_BYTE_PTR pSignature, CK_ULONG_PTR pulSignatureLen)
{
    hk_p11_session *s;
    CK_RV rv;

    if ((rv = hk_p11_enter()) != CKR_OK)
        return rv;
    if ((rv = hk_p11_sign_active(hSession, &s)) != CKR_OK)
        goto done;
    if (s->sign.multi) /* checked before the size step too */
        rv = CKR_OPERATION_ACTIVE;
    else if (!hk_p11_sig_room(pSignature, pulSignatureLen, &rv)) {
        if (rv == CKR_OK || rv == CKR_BUFFER_TOO_SMALL)
            goto done; /* the two-call convention keeps the operation */
    } else if ((rv = hk_p11_op_update(&s->sign, pData, ulDataLen, 0)) ==
               CKR_OK) {
        rv = hk_p11_sign_finish(s, pSignature);
        goto done;
    }
    /* any other answer ends the operation (PKCS#11 v3.0 5.13) */
    hk_p11_op_reset(&s->sign);
done:
    hk_p11_leave();
    return rv;
}

CK_RV C_SignUpdate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart,
                   CK_ULONG ulPartLen)
{
    hk_p11_session *s;
    CK_RV rv;

    if ((rv = hk_p11_enter()) != CKR_OK)
        return rv;
    if ((rv = hk_p11_sign_active(hSession, &s)) == CKR_OK &&
        (rv = hk_p11_op_update(&s->sign, pPart, ulPartLen, 1)) != CKR_OK)
        hk_p11_op_reset(&s->sign);
    hk_p11_leave();
    return rv;
}

CK_RV C_SignFinal(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pSignature,
                  CK_ULONG_PTR pulSignatureLen)
{
    hk_p11_session *s;
    CK_RV rv;

    if ((rv = hk_p11_enter()) != CKR_OK)
        return rv;
    if ((rv = hk_p11_sign_active(hSession, &s)) != CKR_OK)
        goto done;
    if (hk_p11_sig_room(pSignature, pulSignatureLen, &rv))
        rv = hk_p11_sign_finish(s, pSignature);
    else if (rv != CKR_OK && rv != CKR_BUFFER_TOO_SMALL)
        hk_p11_op_reset(&s->sign);
done:
    hk_p11_leave();
    return rv;
}
