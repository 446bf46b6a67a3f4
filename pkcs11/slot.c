/* Slots and tokens: one slot per token directory, C_GetSlotList,
 * C_GetSlotInfo, C_GetTokenInfo (flags from the keystore's user and SO PIN
 * counters). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "pkcs11/hk_p11.h"

static void hk_p11_slot_add(const char *dir)
{
    hk_p11_slot *sl;
    char *res = NULL;

    if (hk_p11.nslots >= HK_P11_MAX_SLOTS ||
        hk_ks_dir_resolve(dir, &res) != HK_OK)
        return;
    sl = &hk_p11.slots[hk_p11.nslots];
    snprintf(sl->dir, sizeof(sl->dir), "%s", res);
    OPENSSL_free(res);
    (void)hk_p11_slot_get(hk_p11.nslots++, &sl);
}

/* $HALFKEY_PKCS11_TOKENS (dir:dir:...), else the default token. */
void hk_p11_slots_load(void)
{
    const char *env = getenv("HALFKEY_PKCS11_TOKENS");
    char *list, *p, *save = NULL;

    if (env == NULL || env[0] == 0) {
        hk_p11_slot_add(NULL);
        return;
    }
    if ((list = strdup(env)) == NULL)
        return;
    for (p = strtok_r(list, ":", &save); p != NULL;
         p = strtok_r(NULL, ":", &save))
        hk_p11_slot_add(p);
    free(list);
}

void hk_p11_slots_free(void)
{
    size_t i;

    for (i = 0; i < hk_p11.nslots; i++) {
        hk_p11_store_free(&hk_p11.slots[i]);
        hk_p11_sobj_drop(&hk_p11.slots[i], 0);
        hk_client_close(hk_p11.slots[i].cli);
        free(hk_p11.slots[i].keys);
    }
    hk_p11.nslots = 0;
}

/* A token made after C_Initialize (halfkey init) is picked up here. */
CK_RV hk_p11_slot_get(CK_SLOT_ID id, hk_p11_slot **out)
{
    char why[256];

    if (id >= hk_p11.nslots)
        return CKR_SLOT_ID_INVALID;
    *out = &hk_p11.slots[id];
    if ((*out)->cli == NULL &&
        hk_client_open((*out)->dir, &(*out)->cli, why) != HK_OK)
        (*out)->cli = NULL;
    return CKR_OK;
}

CK_RV C_GetSlotList(CK_BBOOL tokenPresent, CK_SLOT_ID_PTR pSlotList,
                    CK_ULONG_PTR pulCount)
{
    CK_RV rv;
    size_t i;

    if ((rv = hk_p11_enter()) != CKR_OK)
        return rv;
    if (pulCount == NULL)
        rv = CKR_ARGUMENTS_BAD;
    else if (pSlotList != NULL && *pulCount < hk_p11.nslots)
        rv = CKR_BUFFER_TOO_SMALL;
    else if (pSlotList != NULL)
        for (i = 0; i < hk_p11.nslots; i++)
            pSlotList[i] = i;
    if (pulCount != NULL)
        *pulCount = hk_p11.nslots;
    hk_p11_leave();
    return rv;
}

/* The token directory, its end if it is too long ("...<end>"). */
static void hk_p11_slot_desc(const char *dir, CK_UTF8CHAR *out, size_t n)
{
    size_t l = strlen(dir);

    if (l <= n) {
        hk_p11_copy_pad(out, n, dir);
        return;
    }
    memcpy(out, "...", 3);
    memcpy(out + 3, dir + l - (n - 3), n - 3);
}

CK_RV C_GetSlotInfo(CK_SLOT_ID slotID, CK_SLOT_INFO_PTR pInfo)
{
    hk_p11_slot *sl;
    CK_RV rv;

    if ((rv = hk_p11_enter()) != CKR_OK)
        return rv;
    if ((rv = hk_p11_slot_get(slotID, &sl)) == CKR_OK && pInfo == NULL)
        rv = CKR_ARGUMENTS_BAD;
    if (rv == CKR_OK) {
        memset(pInfo, 0, sizeof(*pInfo));
        hk_p11_slot_desc(sl->dir, pInfo->slotDescription,
                         sizeof(pInfo->slotDescription));
        hk_p11_copy_pad(pInfo->manufacturerID, sizeof(pInfo->manufacturerID),
                        "halfkey");
        pInfo->flags = CKF_TOKEN_PRESENT;
        pInfo->hardwareVersion.minor = 1;
        pInfo->firmwareVersion.minor = 1;
    }
    hk_p11_leave();
    return rv;
}

static CK_ULONG hk_p11_slot_sessions(CK_SLOT_ID id, int rw)
{
    CK_ULONG n = 0;
    size_t i;

    for (i = 0; i < hk_p11.nsess; i++)
        if (hk_p11.sess[i] != NULL && !hk_p11.sess[i]->closed &&
            hk_p11.sess[i]->slot == id &&
            (!rw || (hk_p11.sess[i]->flags & CKF_RW_SESSION)))
            n++;
    return n;
}

static CK_FLAGS hk_p11_token_flags(const hk_ks_tokeninfo *ti)
{
    CK_FLAGS f = CKF_RNG | CKF_USER_PIN_INITIALIZED | CKF_TOKEN_INITIALIZED;

    if (!hk_p11_auto_login())
        f |= CKF_LOGIN_REQUIRED;

    if (ti->pin_fails > 0)
        f |= CKF_USER_PIN_COUNT_LOW;
    if (ti->pin_fails + 1 == ti->pin_max_fails)
        f |= CKF_USER_PIN_FINAL_TRY;
    if (ti->pin_locked)
        f |= CKF_USER_PIN_LOCKED;
    if (ti->so_fails > 0)
        f |= CKF_SO_PIN_COUNT_LOW;
    if (ti->so_set && ti->so_fails + 1 == ti->so_max_fails)
        f |= CKF_SO_PIN_FINAL_TRY;
    if (ti->so_locked)
        f |= CKF_SO_PIN_LOCKED;
    if (hk_p11_pin_path())
        f |= CKF_PROTECTED_AUTHENTICATION_PATH;
    return f;
}

static CK_RV hk_p11_token_info(CK_SLOT_ID id, const hk_p11_slot *sl,
                               CK_TOKEN_INFO *t)
{
    unsigned char h[SHA256_DIGEST_LENGTH];
    char serial[17];
    hk_ks_tokeninfo ti;
    int i;

    if (sl->cli == NULL)
        return CKR_TOKEN_NOT_RECOGNIZED;
    if (hk_ks_token_info(hk_client_keystore(sl->cli), &ti) != HK_OK)
        return CKR_DEVICE_ERROR;
    memset(t, 0, sizeof(*t));
    hk_p11_copy_pad(t->label, sizeof(t->label), ti.label);
    hk_p11_copy_pad(t->manufacturerID, sizeof(t->manufacturerID), "halfkey");
    /* A TPM-backed token says so in its model (16 chars). */
    hk_p11_copy_pad(t->model, sizeof(t->model),
                    ti.tpm ? "2P-ECDSA TPM" : "two-party ECDSA");
    SHA256((const unsigned char *)sl->dir, strlen(sl->dir), h);
    for (i = 0; i < 8; i++)
        snprintf(serial + 2 * i, 3, "%02x", h[i]);
    hk_p11_copy_pad(t->serialNumber, sizeof(t->serialNumber), serial);
    t->flags = hk_p11_token_flags(&ti);
    t->ulMaxSessionCount = CK_EFFECTIVELY_INFINITE;
    t->ulSessionCount = hk_p11_slot_sessions(id, 0);
    t->ulMaxRwSessionCount = CK_EFFECTIVELY_INFINITE;
    t->ulRwSessionCount = hk_p11_slot_sessions(id, 1);
    t->ulMaxPinLen = HK_KS_PIN_MAX;
    t->ulMinPinLen = HK_KS_PIN_MIN;
    t->ulTotalPublicMemory = CK_UNAVAILABLE_INFORMATION;
    t->ulFreePublicMemory = CK_UNAVAILABLE_INFORMATION;
    t->ulTotalPrivateMemory = CK_UNAVAILABLE_INFORMATION;
    t->ulFreePrivateMemory = CK_UNAVAILABLE_INFORMATION;
    t->hardwareVersion.minor = 1;
    t->firmwareVersion.minor = 1;
    memset(t->utcTime, ' ', sizeof(t->utcTime));
    return CKR_OK;
}

CK_RV C_GetTokenInfo(CK_SLOT_ID slotID, CK_TOKEN_INFO_PTR pInfo)
{
    hk_p11_slot *sl;
    CK_RV rv;

    if ((rv = hk_p11_enter()) != CKR_OK)
        return rv;
    if ((rv = hk_p11_slot_get(slotID, &sl)) == CKR_OK && pInfo == NULL)
        rv = CKR_ARGUMENTS_BAD;
    if (rv == CKR_OK)
        rv = hk_p11_token_info(slotID, sl, pInfo);
    hk_p11_leave();
    return rv;
}
