/* The security officer's token functions: C_InitToken and C_InitPIN, over
 * the keystore's SO PIN (client/keystore.h, "SO PIN").
 *
 * C_InitToken needs a token made by `halfkey init` (the server settings
 * cannot come through PKCS#11) and no open session. On a token without an
 * SO PIN it sets the SO PIN and the label. On one with an SO PIN it checks
 * it (counted) and re-initialises the token: every key file and stored
 * object is deleted here, locally only; the server's shares of those keys
 * are left orphaned (destroy the private keys first, which deletes them on
 * both sides). The user PIN is kept.
 *
 * C_InitPIN (SO logged in, R/W session) sets a new user PIN: the reset of
 * a forgotten or locked user PIN. It needs the user's master key escrowed
 * for the SO (`halfkey set-so-pin`, or an earlier C_InitPIN), except on a
 * token without keys. */
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>

#include "pkcs11/hk_p11.h"

/* The 32-byte blank-padded label as a string; the current one if blank. */
static CK_RV hk_p11_label_in(const CK_UTF8CHAR *in, hk_ks *ks, char *out)
{
    hk_ks_tokeninfo ti;
    size_t n = 32;

    while (n > 0 && in[n - 1] == ' ')
        n--;
    memcpy(out, in, n);
    out[n] = 0;
    if (n == 0 && hk_ks_token_info(ks, &ti) == HK_OK)
        memcpy(out, ti.label, sizeof(ti.label));
    return strlen(out) == n || n == 0 ? CKR_OK : CKR_ARGUMENTS_BAD;
}

static int hk_p11_slot_busy(CK_SLOT_ID id)
{
    size_t i;

    for (i = 0; i < hk_p11.nsess; i++)
        if (hk_p11.sess[i] != NULL && hk_p11.sess[i]->slot == id)
            return 1;
    return 0;
}

static CK_RV hk_p11_init_token(CK_SLOT_ID id, hk_p11_slot *sl, const char *pin,
                               const CK_UTF8CHAR *plabel)
{
    char label[HK_KS_TOKEN_LABEL_MAX + 1];
    hk_ks_tokeninfo ti;
    hk_ks *ks;
    CK_RV rv;
    hk_err e;

    if (sl->cli == NULL)
        return CKR_TOKEN_NOT_RECOGNIZED;
    if (hk_p11_slot_busy(id))
        return CKR_SESSION_EXISTS;
    ks = hk_client_keystore(sl->cli);
    if ((rv = hk_p11_label_in(plabel, ks, label)) != CKR_OK)
        return rv;
    if (hk_ks_token_info(ks, &ti) != HK_OK)
        return CKR_DEVICE_ERROR;
    e = ti.so_set ? hk_ks_so_reinit(ks, pin, label)
                  : hk_ks_so_set(ks, pin, label);
    if (e == HK_ERR_ARG)
        return CKR_ARGUMENTS_BAD; /* a label the token cannot keep */
    if (e == HK_OK && ti.so_set)
        fprintf(stderr,
                "halfkey-pkcs11: token %s re-initialised: its keys are "
                "deleted here; their server shares are orphaned\n",
                sl->dir);
    (void)hk_p11_keys_refresh(sl, NULL);
    return hk_p11_err(e, "init token", NULL);
}

CK_RV C_InitToken(CK_SLOT_ID slotID, CK_UTF8CHAR_PTR pPin, CK_ULONG ulPinLen,
                  CK_UTF8CHAR_PTR pLabel)
{
    hk_p11_slot *sl;
    char *pin = NULL;
    CK_RV rv;

    if ((rv = hk_p11_enter()) != CKR_OK)
        return rv;
    if ((rv = hk_p11_slot_get(slotID, &sl)) == CKR_OK && pLabel == NULL)
        rv = CKR_ARGUMENTS_BAD;
    if (rv == CKR_OK && (rv = hk_p11_pin(pPin, ulPinLen, &pin)) == CKR_OK)
        rv = hk_p11_init_token(slotID, sl, pin, pLabel);
    if (pin != NULL)
        OPENSSL_clear_free(pin, strlen(pin) + 1);
    hk_p11_leave();
    return rv;
}

static CK_RV hk_p11_init_pin(hk_p11_session *s, const char *pin)
{
    hk_p11_slot *sl = &hk_p11.slots[s->slot];
    hk_err e;

    if (!sl->so_logged_in || !(s->flags & CKF_RW_SESSION))
        return CKR_USER_NOT_LOGGED_IN;
    e = hk_ks_so_init_pin(hk_client_keystore(sl->cli), pin);
    if (e == HK_ERR_STATE) {
        fprintf(stderr, "halfkey-pkcs11: init PIN: the token's keys are "
                        "not escrowed for the SO; run `halfkey set-so-pin` "
                        "with both PINs first\n");
        return CKR_FUNCTION_FAILED;
    }
    return hk_p11_err(e, "init PIN", NULL);
}

CK_RV C_InitPIN(CK_SESSION_HANDLE hSession, CK_UTF8CHAR_PTR pPin,
                CK_ULONG ulPinLen)
{
    hk_p11_session *s;
    char *pin = NULL;
    CK_RV rv;

    if ((rv = hk_p11_enter()) != CKR_OK)
        return rv;
    if ((rv = hk_p11_session_get(hSession, &s)) == CKR_OK &&
        (rv = hk_p11_new_pin(pPin, ulPinLen, &pin)) == CKR_OK)
        rv = hk_p11_init_pin(s, pin);
    if (pin != NULL)
        OPENSSL_clear_free(pin, strlen(pin) + 1);
    hk_p11_leave();
    return rv;
}
