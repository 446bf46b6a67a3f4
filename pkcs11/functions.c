/* The function table of the module (the whole v2.40 list) and the entry
 * points this token does not support: they return
 * CKR_FUNCTION_NOT_SUPPORTED (or the code the standard names) once the
 * library is initialised. */
#include <unistd.h>

#include "pkcs11/hk_p11.h"

static CK_RV hk_p11_unsup(CK_RV rv)
{
    if (!hk_p11.init || hk_p11.pid != getpid())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    return rv;
}

#define HK_UNSUP(name, args, rv)                                               \
    CK_RV name args { return hk_p11_unsup(rv); }

HK_UNSUP(C_GetOperationState,
         (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG_PTR c),
         CKR_FUNCTION_NOT_SUPPORTED)
HK_UNSUP(C_SetOperationState,
         (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_OBJECT_HANDLE d,
          CK_OBJECT_HANDLE e),
         CKR_FUNCTION_NOT_SUPPORTED)
HK_UNSUP(C_CopyObject,
         (CK_SESSION_HANDLE a, CK_OBJECT_HANDLE b, CK_ATTRIBUTE_PTR c,
          CK_ULONG d, CK_OBJECT_HANDLE_PTR e),
         CKR_FUNCTION_NOT_SUPPORTED)
HK_UNSUP(C_GetObjectSize,
         (CK_SESSION_HANDLE a, CK_OBJECT_HANDLE b, CK_ULONG_PTR c),
         CKR_FUNCTION_NOT_SUPPORTED)
HK_UNSUP(C_EncryptInit,
         (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c),
         CKR_FUNCTION_NOT_SUPPORTED)
HK_UNSUP(C_Encrypt,
         (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d,
          CK_ULONG_PTR e),
         CKR_FUNCTION_NOT_SUPPORTED)
HK_UNSUP(C_EncryptUpdate,
         (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d,
          CK_ULONG_PTR e),
         CKR_FUNCTION_NOT_SUPPORTED)
HK_UNSUP(C_EncryptFinal, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG_PTR c),
         CKR_FUNCTION_NOT_SUPPORTED)
HK_UNSUP(C_DecryptInit,
         (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c),
         CKR_FUNCTION_NOT_SUPPORTED)
HK_UNSUP(C_Decrypt,
         (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d,
          CK_ULONG_PTR e),
         CKR_FUNCTION_NOT_SUPPORTED)
HK_UNSUP(C_DecryptUpdate,
         (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d,
          CK_ULONG_PTR e),
         CKR_FUNCTION_NOT_SUPPORTED)
HK_UNSUP(C_DecryptFinal, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG_PTR c),
         CKR_FUNCTION_NOT_SUPPORTED)
HK_UNSUP(C_DigestKey, (CK_SESSION_HANDLE a, CK_OBJECT_HANDLE b),
         CKR_FUNCTION_NOT_SUPPORTED)
HK_UNSUP(C_SignRecoverInit,
         (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c),
         CKR_FUNCTION_NOT_SUPPORTED)
HK_UNSUP(C_SignRecover,
         (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d,
          CK_ULONG_PTR e),
         CKR_FUNCTION_NOT_SUPPORTED)
HK_UNSUP(C_VerifyRecoverInit,
         (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c),
         CKR_FUNCTION_NOT_SUPPORTED)
HK_UNSUP(C_VerifyRecover,
         (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d,
          CK_ULONG_PTR e),
         CKR_FUNCTION_NOT_SUPPORTED)
HK_UNSUP(C_DigestEncryptUpdate,
         (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d,
          CK_ULONG_PTR e),
         CKR_FUNCTION_NOT_SUPPORTED)
HK_UNSUP(C_DecryptDigestUpdate,
         (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d,
          CK_ULONG_PTR e),
         CKR_FUNCTION_NOT_SUPPORTED)
HK_UNSUP(C_SignEncryptUpdate,
         (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d,
          CK_ULONG_PTR e),
         CKR_FUNCTION_NOT_SUPPORTED)
HK_UNSUP(C_DecryptVerifyUpdate,
         (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d,
          CK_ULONG_PTR e),
         CKR_FUNCTION_NOT_SUPPORTED)
HK_UNSUP(C_GenerateKey,
         (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_ATTRIBUTE_PTR c,
          CK_ULONG d, CK_OBJECT_HANDLE_PTR e),
         CKR_FUNCTION_NOT_SUPPORTED)
HK_UNSUP(C_WrapKey,
         (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c,
          CK_OBJECT_HANDLE d, CK_BYTE_PTR e, CK_ULONG_PTR f),
         CKR_FUNCTION_NOT_SUPPORTED)
HK_UNSUP(C_UnwrapKey,
         (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c,
          CK_BYTE_PTR d, CK_ULONG e, CK_ATTRIBUTE_PTR f, CK_ULONG g,
          CK_OBJECT_HANDLE_PTR h),
         CKR_FUNCTION_NOT_SUPPORTED)
HK_UNSUP(C_DeriveKey,
         (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c,
          CK_ATTRIBUTE_PTR d, CK_ULONG e, CK_OBJECT_HANDLE_PTR f),
         CKR_FUNCTION_NOT_SUPPORTED)
HK_UNSUP(C_SeedRandom, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c),
         CKR_RANDOM_SEED_NOT_SUPPORTED)
HK_UNSUP(C_GetFunctionStatus, (CK_SESSION_HANDLE a), CKR_FUNCTION_NOT_PARALLEL)
HK_UNSUP(C_CancelFunction, (CK_SESSION_HANDLE a), CKR_FUNCTION_NOT_PARALLEL)
HK_UNSUP(C_WaitForSlotEvent, (CK_FLAGS a, CK_SLOT_ID_PTR b, CK_VOID_PTR c),
         CKR_FUNCTION_NOT_SUPPORTED)

CK_FUNCTION_LIST hk_p11_functions = {
    .version = {2, 40},
    .C_Initialize = C_Initialize,
    .C_Finalize = C_Finalize,
    .C_GetInfo = C_GetInfo,
    .C_GetFunctionList = C_GetFunctionList,
    .C_GetSlotList = C_GetSlotList,
    .C_GetSlotInfo = C_GetSlotInfo,
    .C_GetTokenInfo = C_GetTokenInfo,
    .C_GetMechanismList = C_GetMechanismList,
    .C_GetMechanismInfo = C_GetMechanismInfo,
    .C_InitToken = C_InitToken,
    .C_InitPIN = C_InitPIN,
    .C_SetPIN = C_SetPIN,
    .C_OpenSession = C_OpenSession,
    .C_CloseSession = C_CloseSession,
    .C_CloseAllSessions = C_CloseAllSessions,
    .C_GetSessionInfo = C_GetSessionInfo,
    .C_GetOperationState = C_GetOperationState,
    .C_SetOperationState = C_SetOperationState,
    .C_Login = C_Login,
    .C_Logout = C_Logout,
    .C_CreateObject = C_CreateObject,
    .C_CopyObject = C_CopyObject,
    .C_DestroyObject = C_DestroyObject,
    .C_GetObjectSize = C_GetObjectSize,
    .C_GetAttributeValue = C_GetAttributeValue,
    .C_SetAttributeValue = C_SetAttributeValue,
    .C_FindObjectsInit = C_FindObjectsInit,
    .C_FindObjects = C_FindObjects,
    .C_FindObjectsFinal = C_FindObjectsFinal,
    .C_EncryptInit = C_EncryptInit,
    .C_Encrypt = C_Encrypt,
    .C_EncryptUpdate = C_EncryptUpdate,
    .C_EncryptFinal = C_EncryptFinal,
    .C_DecryptInit = C_DecryptInit,
    .C_Decrypt = C_Decrypt,
    .C_DecryptUpdate = C_DecryptUpdate,
    .C_DecryptFinal = C_DecryptFinal,
    .C_DigestInit = C_DigestInit,
    .C_Digest = C_Digest,
    .C_DigestUpdate = C_DigestUpdate,
    .C_DigestKey = C_DigestKey,
    .C_DigestFinal = C_DigestFinal,
    .C_SignInit = C_SignInit,
    .C_Sign = C_Sign,
    .C_SignUpdate = C_SignUpdate,
    .C_SignFinal = C_SignFinal,
    .C_SignRecoverInit = C_SignRecoverInit,
    .C_SignRecover = C_SignRecover,
    .C_VerifyInit = C_VerifyInit,
    .C_Verify = C_Verify,
    .C_VerifyUpdate = C_VerifyUpdate,
    .C_VerifyFinal = C_VerifyFinal,
    .C_VerifyRecoverInit = C_VerifyRecoverInit,
    .C_VerifyRecover = C_VerifyRecover,
    .C_DigestEncryptUpdate = C_DigestEncryptUpdate,
    .C_DecryptDigestUpdate = C_DecryptDigestUpdate,
    .C_SignEncryptUpdate = C_SignEncryptUpdate,
    .C_DecryptVerifyUpdate = C_DecryptVerifyUpdate,
    .C_GenerateKey = C_GenerateKey,
    .C_GenerateKeyPair = C_GenerateKeyPair,
    .C_WrapKey = C_WrapKey,
    .C_UnwrapKey = C_UnwrapKey,
    .C_DeriveKey = C_DeriveKey,
    .C_SeedRandom = C_SeedRandom,
    .C_GenerateRandom = C_GenerateRandom,
    .C_GetFunctionStatus = C_GetFunctionStatus,
    .C_CancelFunction = C_CancelFunction,
    .C_WaitForSlotEvent = C_WaitForSlotEvent,
};
