/* Mechanisms: C_GetMechanismList and C_GetMechanismInfo. Keys are 256-bit
 * (secp256k1 and P-256), named curves, uncompressed points; the SHA
 * digests (digest.c) have no key. */
#include "pkcs11/hk_p11.h"

#define HK_EC_FLAGS (CKF_EC_F_P | CKF_EC_NAMEDCURVE | CKF_EC_UNCOMPRESS)

static const struct {
    CK_MECHANISM_TYPE type;
    CK_FLAGS flags;
} hk_p11_mechs[] = {
    {CKM_EC_KEY_PAIR_GEN, CKF_GENERATE_KEY_PAIR | HK_EC_FLAGS},
    {CKM_ECDSA, CKF_SIGN | CKF_VERIFY | HK_EC_FLAGS},
    {CKM_ECDSA_SHA1, CKF_SIGN | CKF_VERIFY | HK_EC_FLAGS},
    {CKM_ECDSA_SHA224, CKF_SIGN | CKF_VERIFY | HK_EC_FLAGS},
    {CKM_ECDSA_SHA256, CKF_SIGN | CKF_VERIFY | HK_EC_FLAGS},
    {CKM_ECDSA_SHA384, CKF_SIGN | CKF_VERIFY | HK_EC_FLAGS},
    {CKM_ECDSA_SHA512, CKF_SIGN | CKF_VERIFY | HK_EC_FLAGS},
    {CKM_SHA_1, CKF_DIGEST},
    {CKM_SHA224, CKF_DIGEST},
    {CKM_SHA256, CKF_DIGEST},
    {CKM_SHA384, CKF_DIGEST},
    {CKM_SHA512, CKF_DIGEST},
};

#define HK_NMECHS (sizeof(hk_p11_mechs) / sizeof(hk_p11_mechs[0]))

CK_RV C_GetMechanismList(CK_SLOT_ID slotID,
                         CK_MECHANISM_TYPE_PTR pMechanismList,
                         CK_ULONG_PTR pulCount)
{
    hk_p11_slot *sl;
    CK_RV rv;
    size_t i;

    if ((rv = hk_p11_enter()) != CKR_OK)
        return rv;
    if ((rv = hk_p11_slot_get(slotID, &sl)) == CKR_OK && pulCount == NULL)
        rv = CKR_ARGUMENTS_BAD;
    if (rv == CKR_OK && pMechanismList != NULL && *pulCount < HK_NMECHS)
        rv = CKR_BUFFER_TOO_SMALL;
    if (rv == CKR_OK && pMechanismList != NULL)
        for (i = 0; i < HK_NMECHS; i++)
            pMechanismList[i] = hk_p11_mechs[i].type;
    if (rv == CKR_OK || rv == CKR_BUFFER_TOO_SMALL)
        *pulCount = HK_NMECHS;
    hk_p11_leave();
    return rv;
}

CK_RV C_GetMechanismInfo(CK_SLOT_ID slotID, CK_MECHANISM_TYPE type,
                         CK_MECHANISM_INFO_PTR pInfo)
{
    hk_p11_slot *sl;
    CK_RV rv;
    size_t i;

    if ((rv = hk_p11_enter()) != CKR_OK)
        return rv;
    if ((rv = hk_p11_slot_get(slotID, &sl)) == CKR_OK && pInfo == NULL)
        rv = CKR_ARGUMENTS_BAD;
    for (i = 0; rv == CKR_OK && i < HK_NMECHS; i++)
        if (hk_p11_mechs[i].type == type)
            break;
    if (rv == CKR_OK && i == HK_NMECHS)
        rv = CKR_MECHANISM_INVALID;
    if (rv == CKR_OK) {
        /* key sizes in bits; none for a digest */
        pInfo->ulMinKeySize = hk_p11_mechs[i].flags & CKF_DIGEST ? 0 : 256;
        pInfo->ulMaxKeySize = pInfo->ulMinKeySize;
        pInfo->flags = hk_p11_mechs[i].flags;
    }
    hk_p11_leave();
    return rv;
}
