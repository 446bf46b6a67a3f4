/* Sessions and login: C_OpenSession, C_CloseSession, C_CloseAllSessions,
 * C_GetSessionInfo, C_Login (user and SO), C_Logout, C_SetPIN,
 * C_GenerateRandom. The login state belongs to the slot (the keystore
 * handle), as PKCS#11 says; closing a slot's last session logs it out.
 * The SO's token functions are in token.c. */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "common/libctx.h"
#include "pkcs11/hk_p11.h"

void hk_p11_op_reset(hk_p11_op *op)
{
    EVP_MD_CTX_free(op->md);
    OPENSSL_cleanse(op, sizeof(*op));
}

void hk_p11_session_free(hk_p11_session *s)
{
    hk_p11_op_reset(&s->sign);
    hk_p11_op_reset(&s->verify);
    EVP_MD_CTX_free(s->digest);
    free(s->found);
    free(s);
}

CK_RV hk_p11_session_get(CK_SESSION_HANDLE h, hk_p11_session **out)
{
    if (h == 0 || h > hk_p11.nsess || hk_p11.sess[h - 1] == NULL ||
        hk_p11.sess[h - 1]->closed)
        return CKR_SESSION_HANDLE_INVALID;
    *out = hk_p11.sess[h - 1];
    return CKR_OK;
}

static CK_RV hk_p11_session_new(CK_SLOT_ID slot, CK_FLAGS flags,
                                CK_SESSION_HANDLE *out)
{
    hk_p11_session *s, **grown;
    size_t i;

    for (i = 0; i < hk_p11.nsess && hk_p11.sess[i] != NULL; i++)
        ;
    if (i == hk_p11.nsess) {
        grown = realloc(hk_p11.sess, (i + 16) * sizeof(*grown));
        if (grown == NULL)
            return CKR_HOST_MEMORY;
        memset(grown + i, 0, 16 * sizeof(*grown));
        hk_p11.sess = grown;
        hk_p11.nsess = i + 16;
    }
    if ((s = calloc(1, sizeof(*s))) == NULL)
        return CKR_HOST_MEMORY;
    s->slot = slot;
    s->flags = flags;
    hk_p11.sess[i] = s;
    *out = i + 1;
    return CKR_OK;
}

/* Logs slot sl in as user (CKU_USER or CKU_SO) with pin (NULL: the user
 * PIN from the PIN file when one is set). */
static CK_RV hk_p11_slot_login(hk_p11_slot *sl, CK_USER_TYPE user,
                               const CK_UTF8CHAR *pPin, CK_ULONG ulPinLen);

CK_RV C_OpenSession(CK_SLOT_ID slotID, CK_FLAGS flags, CK_VOID_PTR pApplication,
                    CK_NOTIFY Notify, CK_SESSION_HANDLE_PTR phSession)
{
    hk_p11_slot *sl;
    CK_RV rv;

    if ((rv = hk_p11_enter()) != CKR_OK)
        return rv;
    if ((rv = hk_p11_slot_get(slotID, &sl)) != CKR_OK)
        goto done;
    if (phSession == NULL)
        rv = CKR_ARGUMENTS_BAD;
    else if (!(flags & CKF_SERIAL_SESSION))
        rv = CKR_SESSION_PARALLEL_NOT_SUPPORTED;
    else if (sl->cli == NULL)
        rv = CKR_TOKEN_NOT_RECOGNIZED;
    else if (sl->so_logged_in && !(flags & CKF_RW_SESSION))
        rv = CKR_SESSION_READ_WRITE_SO_EXISTS;
    else if (hk_p11_auto_login() && !sl->logged_in && !sl->so_logged_in)
        rv = hk_p11_slot_login(sl, CKU_USER, NULL, 0);
    if (rv == CKR_OK)
        rv = hk_p11_session_new(slotID, flags, phSession);
done:
    hk_p11_leave();
    return rv;
}

/* Closes session h; the slot's last session logs the slot out. */
static void hk_p11_session_close(CK_SESSION_HANDLE h)
{
    hk_p11_session *s = hk_p11.sess[h - 1];
    hk_p11_slot *sl = &hk_p11.slots[s->slot];
    size_t i;

    /* first, while the slot is logged in (deleting needs it); the mutex
     * is dropped meanwhile, so the session is looked up again */
    hk_p11_session_keys_drop(sl, h, 0);
    if (hk_p11_session_get(h, &s) != CKR_OK)
        return;
    hk_p11_sobj_drop(sl, h);
    if (s->sign.busy)
        s->closed = 1; /* the signing thread frees it */
    else {
        hk_p11_session_free(s);
        hk_p11.sess[h - 1] = NULL;
    }
    for (i = 0; i < hk_p11.nsess; i++)
        if (hk_p11.sess[i] != NULL && !hk_p11.sess[i]->closed &&
            hk_p11.sess[i]->slot == (CK_SLOT_ID)(sl - hk_p11.slots))
            return;
    hk_p11_logout_all(sl);
}

void hk_p11_logout_all(hk_p11_slot *sl)
{
    if (sl->cli != NULL) {
        hk_ks_logout(hk_client_keystore(sl->cli));
        hk_ks_so_logout(hk_client_keystore(sl->cli));
    }
    sl->logged_in = sl->so_logged_in = 0;
}

CK_RV C_CloseSession(CK_SESSION_HANDLE hSession)
{
    hk_p11_session *s;
    CK_RV rv;

    if ((rv = hk_p11_enter()) != CKR_OK)
        return rv;
    if ((rv = hk_p11_session_get(hSession, &s)) == CKR_OK)
        hk_p11_session_close(hSession);
    hk_p11_leave();
    return rv;
}

CK_RV C_CloseAllSessions(CK_SLOT_ID slotID)
{
    hk_p11_slot *sl;
    hk_p11_session *s;
    CK_RV rv;
    size_t i;

    if ((rv = hk_p11_enter()) != CKR_OK)
        return rv;
    if ((rv = hk_p11_slot_get(slotID, &sl)) == CKR_OK)
        for (i = 0; i < hk_p11.nsess; i++)
            if (hk_p11_session_get(i + 1, &s) == CKR_OK && s->slot == slotID)
                hk_p11_session_close(i + 1);
    hk_p11_leave();
    return rv;
}

CK_RV C_GetSessionInfo(CK_SESSION_HANDLE hSession, CK_SESSION_INFO_PTR pInfo)
{
    hk_p11_session *s;
    int user, rw;
    CK_RV rv;

    if ((rv = hk_p11_enter()) != CKR_OK)
        return rv;
    if ((rv = hk_p11_session_get(hSession, &s)) == CKR_OK && pInfo == NULL)
        rv = CKR_ARGUMENTS_BAD;
    if (rv == CKR_OK) {
        user = hk_p11.slots[s->slot].logged_in;
        rw = (s->flags & CKF_RW_SESSION) != 0;
        pInfo->slotID = s->slot;
        pInfo->flags = s->flags;
        pInfo->ulDeviceError = 0;
        pInfo->state =
            rw ? (user ? CKS_RW_USER_FUNCTIONS : CKS_RW_PUBLIC_SESSION)
               : (user ? CKS_RO_USER_FUNCTIONS : CKS_RO_PUBLIC_SESSION);
        if (hk_p11.slots[s->slot].so_logged_in)
            pInfo->state = CKS_RW_SO_FUNCTIONS;
    }
    hk_p11_leave();
    return rv;
}

/* A PIN as a NUL-terminated string (freed with OPENSSL_clear_free). */
static CK_RV hk_p11_pin_min(const CK_UTF8CHAR *pin, CK_ULONG len, CK_ULONG min,
                            char **out)
{
    if (pin == NULL)
        return CKR_ARGUMENTS_BAD;
    if (len < min || len > HK_KS_PIN_MAX || memchr(pin, 0, len) != NULL)
        return CKR_PIN_LEN_RANGE;
    if ((*out = OPENSSL_zalloc(len + 1)) == NULL)
        return CKR_HOST_MEMORY;
    memcpy(*out, pin, len);
    return CKR_OK;
}

CK_RV hk_p11_pin(const CK_UTF8CHAR *pin, CK_ULONG len, char **out)
{
    return hk_p11_pin_min(pin, len, HK_KS_PIN_MIN_OLD, out);
}

CK_RV hk_p11_new_pin(const CK_UTF8CHAR *pin, CK_ULONG len, char **out)
{
    return hk_p11_pin_min(pin, len, HK_KS_PIN_MIN, out);
}

/* 1 if the slot has a read-only session (an SO may not log in then). */
static int hk_p11_slot_has_ro(CK_SLOT_ID slot)
{
    size_t i;

    for (i = 0; i < hk_p11.nsess; i++)
        if (hk_p11.sess[i] != NULL && !hk_p11.sess[i]->closed &&
            hk_p11.sess[i]->slot == slot &&
            !(hk_p11.sess[i]->flags & CKF_RW_SESSION))
            return 1;
    return 0;
}

/* The login-state checks of C_Login for userType on slot sl. */
static CK_RV hk_p11_login_check(const hk_p11_session *s, hk_p11_slot *sl,
                                CK_USER_TYPE userType)
{
    hk_ks_tokeninfo ti;

    if (userType != CKU_USER && userType != CKU_SO)
        return CKR_USER_TYPE_INVALID; /* no context-specific login */
    if (userType == CKU_SO &&
        (hk_ks_token_info(hk_client_keystore(sl->cli), &ti) != HK_OK ||
         !ti.so_set))
        return CKR_USER_TYPE_INVALID; /* no SO PIN: C_InitToken sets one */
    if ((userType == CKU_USER && sl->logged_in) ||
        (userType == CKU_SO && sl->so_logged_in))
        return CKR_USER_ALREADY_LOGGED_IN;
    if (sl->logged_in || sl->so_logged_in)
        return CKR_USER_ANOTHER_ALREADY_LOGGED_IN;
    if (userType == CKU_SO && hk_p11_slot_has_ro(s->slot))
        return CKR_SESSION_READ_ONLY_EXISTS;
    return CKR_OK;
}

static CK_RV hk_p11_slot_login(hk_p11_slot *sl, CK_USER_TYPE user,
                               const CK_UTF8CHAR *pPin, CK_ULONG ulPinLen)
{
    hk_ks *ks = hk_client_keystore(sl->cli);
    char *pin = NULL;
    CK_RV rv;

    rv = pPin == NULL && user == CKU_USER && hk_p11_pin_path()
             ? hk_p11_pin_read(&pin)
             : hk_p11_pin(pPin, ulPinLen, &pin);
    if (rv == CKR_OK && user == CKU_SO)
        rv = hk_p11_err(hk_ks_so_login(ks, pin), "SO login", NULL);
    else if (rv == CKR_OK)
        rv = hk_p11_err(hk_ks_login(ks, pin), "login", NULL);
    if (rv == CKR_OK && user == CKU_SO)
        sl->so_logged_in = 1;
    else if (rv == CKR_OK)
        sl->logged_in = 1;
    if (pin != NULL)
        OPENSSL_clear_free(pin, strlen(pin) + 1);
    return rv;
}

CK_RV C_Login(CK_SESSION_HANDLE hSession, CK_USER_TYPE userType,
              CK_UTF8CHAR_PTR pPin, CK_ULONG ulPinLen)
{
    hk_p11_session *s;
    hk_p11_slot *sl;
    CK_RV rv;

    if ((rv = hk_p11_enter()) != CKR_OK)
        return rv;
    if ((rv = hk_p11_session_get(hSession, &s)) != CKR_OK)
        goto done;
    sl = &hk_p11.slots[s->slot];
    if ((rv = hk_p11_login_check(s, sl, userType)) == CKR_OK)
        rv = hk_p11_slot_login(sl, userType, pPin, ulPinLen);
done:
    hk_p11_leave();
    return rv;
}

CK_RV C_Logout(CK_SESSION_HANDLE hSession)
{
    hk_p11_session *s;
    hk_p11_slot *sl;
    CK_RV rv;

    if ((rv = hk_p11_enter()) != CKR_OK)
        return rv;
    if ((rv = hk_p11_session_get(hSession, &s)) == CKR_OK) {
        sl = &hk_p11.slots[s->slot];
        if (!sl->logged_in && !sl->so_logged_in)
            rv = CKR_USER_NOT_LOGGED_IN;
        /* PKCS#11 v3.0 5.6: the private session objects are destroyed */
        hk_p11_session_keys_drop(sl, 0, 1);
        hk_p11_sobj_drop_private(sl);
        hk_p11_logout_all(sl);
    }
    hk_p11_leave();
    return rv;
}

CK_RV C_SetPIN(CK_SESSION_HANDLE hSession, CK_UTF8CHAR_PTR pOldPin,
               CK_ULONG ulOldLen, CK_UTF8CHAR_PTR pNewPin, CK_ULONG ulNewLen)
{
    hk_p11_session *s;
    hk_p11_slot *sl;
    char *oldp = NULL, *newp = NULL;
    hk_ks *ks;
    CK_RV rv;

    if ((rv = hk_p11_enter()) != CKR_OK)
        return rv;
    if ((rv = hk_p11_session_get(hSession, &s)) != CKR_OK)
        goto done;
    sl = &hk_p11.slots[s->slot];
    ks = hk_client_keystore(sl->cli);
    if (!(s->flags & CKF_RW_SESSION))
        rv = CKR_SESSION_READ_ONLY;
    if (rv == CKR_OK && (rv = hk_p11_pin(pOldPin, ulOldLen, &oldp)) == CKR_OK &&
        (rv = hk_p11_new_pin(pNewPin, ulNewLen, &newp)) == CKR_OK)
        rv =
            sl->so_logged_in /* the SO's own PIN */
                ? hk_p11_err(hk_ks_so_change_pin(ks, oldp, newp), "set SO PIN",
                             NULL)
                : hk_p11_err(hk_ks_change_pin(ks, oldp, newp), "set PIN", NULL);
    /* the keystore ends logged in after a change, out after a failure */
    if (sl->so_logged_in)
        sl->so_logged_in = rv == CKR_OK || oldp == NULL || newp == NULL;
    else if (rv == CKR_OK && !sl->logged_in)
        hk_ks_logout(ks);
    else if (rv != CKR_OK && oldp != NULL && newp != NULL)
        sl->logged_in = 0;
done:
    OPENSSL_clear_free(oldp, ulOldLen + 1);
    OPENSSL_clear_free(newp, ulNewLen + 1);
    hk_p11_leave();
    return rv;
}

CK_RV C_GenerateRandom(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pRandomData,
                       CK_ULONG ulRandomLen)
{
    hk_p11_session *s;
    CK_ULONG n;
    CK_RV rv;

    if ((rv = hk_p11_enter()) != CKR_OK)
        return rv;
    if ((rv = hk_p11_session_get(hSession, &s)) == CKR_OK &&
        pRandomData == NULL && ulRandomLen > 0)
        rv = CKR_ARGUMENTS_BAD;
    for (; rv == CKR_OK && ulRandomLen > 0; ulRandomLen -= n) {
        n = ulRandomLen > 65536 ? 65536 : ulRandomLen;
        if (!hk_rand_bytes(pRandomData, (size_t)n))
            rv = CKR_FUNCTION_FAILED;
        pRandomData += n;
    }
    hk_p11_leave();
    return rv;
}
