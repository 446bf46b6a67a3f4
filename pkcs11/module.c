/* The PKCS#11 library context: C_Initialize / C_Finalize (locking modes,
 * fork safety), C_GetInfo, C_GetFunctionList, the PKCS#11 3.0 interface
 * entry points (C_GetInterfaceList, C_GetInterface), the module mutex, and
 * the mapping of client-core errors to CKR_ codes. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/libctx.h"
#include "pkcs11/hk_p11.h"

hk_p11_ctx hk_p11;

/* Serialises C_Initialize and C_Finalize: threads racing to initialise
 * (pkcs11-tool --test-threads does) must see one of them win and the
 * others get CKR_CRYPTOKI_ALREADY_INITIALIZED, never a half-built
 * context. */
static pthread_mutex_t hk_p11_init_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t hk_p11_atfork_once = PTHREAD_ONCE_INIT;
static pthread_once_t hk_p11_pin_once = PTHREAD_ONCE_INIT;

/* A fork while another thread holds hk_p11_init_mu (inside C_Initialize or
 * C_Finalize) leaves the child a locked mutex that no thread of it will
 * ever unlock: the child's C_Initialize would wait for good. The child
 * re-arms it (it has one thread then). glibc drops the handler when the
 * module is unloaded (dlclose). */
static void hk_p11_atfork_child(void)
{
    pthread_mutex_init(&hk_p11_init_mu, NULL);
}

static void hk_p11_atfork_register(void)
{
    (void)pthread_atfork(NULL, NULL, hk_p11_atfork_child);
}

extern CK_FUNCTION_LIST hk_p11_functions;

CK_RV hk_p11_enter(void)
{
    if (!hk_p11.init || hk_p11.pid != getpid())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (hk_p11.use_cb)
        return hk_p11.args.LockMutex(hk_p11.cb_mutex) == CKR_OK
                   ? CKR_OK
                   : CKR_GENERAL_ERROR;
    pthread_mutex_lock(&hk_p11.mu);
    return CKR_OK;
}

void hk_p11_leave(void)
{
    if (hk_p11.use_cb)
        (void)hk_p11.args.UnlockMutex(hk_p11.cb_mutex);
    else
        pthread_mutex_unlock(&hk_p11.mu);
}

/* Blank-padded, not NUL-terminated PKCS#11 strings. */
void hk_p11_copy_pad(CK_UTF8CHAR *dst, size_t n, const char *src)
{
    size_t l = strlen(src);

    memset(dst, ' ', n);
    memcpy(dst, src, l < n ? l : n);
}

/* The CKR_ code for a client-core error; failures that the caller cannot
 * read from the code alone get one line on stderr. */
CK_RV hk_p11_err(hk_err e, const char *what, const char *label)
{
    switch (e) {
    case HK_OK:
        return CKR_OK;
    case HK_ERR_NOMEM:
        return CKR_HOST_MEMORY;
    case HK_ERR_PIN:
        return CKR_PIN_INCORRECT;
    case HK_ERR_PIN_LOCKED:
        return CKR_PIN_LOCKED;
    case HK_ERR_STATE:
        return CKR_USER_NOT_LOGGED_IN;
    case HK_ERR_KEY_LOCKED:
    case HK_ERR_SIG_ABORT:
        fprintf(stderr,
                "halfkey-pkcs11: %s: key %s is locked (%s): an "
                "interrupted signature is cleared by `halfkey unlock --key "
                "%s`; an invalid-signature abort only by a new key or "
                "`--force` (halfkey(1), ABORT LOCKOUT)\n",
                what, label, hk_strerror(e), label);
        return CKR_KEY_FUNCTION_NOT_PERMITTED;
    default:
        break;
    }
    fprintf(stderr, "halfkey-pkcs11: %s%s%s: %s\n", what,
            label != NULL ? " " : "", label != NULL ? label : "",
            hk_strerror(e));
    switch (e) {
    case HK_ERR_NETWORK:
    case HK_ERR_TLS:
    case HK_ERR_TIMEOUT:
    case HK_ERR_SERVER:
    case HK_ERR_AUTH:
    case HK_ERR_FORBIDDEN:
    case HK_ERR_RATE:
        return CKR_DEVICE_ERROR;
    case HK_ERR_EXISTS:
        return CKR_ATTRIBUTE_VALUE_INVALID;
    default:
        return CKR_FUNCTION_FAILED;
    }
}

static CK_RV hk_p11_locking(const CK_C_INITIALIZE_ARGS *a)
{
    int some = a->CreateMutex != NULL || a->DestroyMutex != NULL ||
               a->LockMutex != NULL || a->UnlockMutex != NULL;
    int all = a->CreateMutex != NULL && a->DestroyMutex != NULL &&
              a->LockMutex != NULL && a->UnlockMutex != NULL;

    if (a->pReserved != NULL || (some && !all))
        return CKR_ARGUMENTS_BAD;
    hk_p11.use_cb = all && !(a->flags & CKF_OS_LOCKING_OK);
    if (hk_p11.use_cb) {
        hk_p11.args = *a;
        return a->CreateMutex(&hk_p11.cb_mutex);
    }
    return pthread_mutex_init(&hk_p11.mu, NULL) == 0 ? CKR_OK : CKR_CANT_LOCK;
}

static CK_RV hk_p11_initialize(const CK_C_INITIALIZE_ARGS *a)
{
    CK_RV rv;

    if (hk_p11.init && hk_p11.pid == getpid())
        return CKR_CRYPTOKI_ALREADY_INITIALIZED;
    /* a forked child: the parent's state is not ours to free */
    memset(&hk_p11, 0, sizeof(hk_p11));
    if ((rv = hk_p11_locking(a)) != CKR_OK)
        return rv;
    hk_p11.pid = getpid();
    hk_p11_slots_load();
    hk_p11.init = 1;
    return CKR_OK;
}

/* Keeps the module loaded for the life of the process (a host's dlclose
 * then leaves it in place): its private OpenSSL context must outlive
 * every host thread that used it, since OpenSSL 3.0 frees a thread's DRBG
 * state through the context when that thread exits
 * (openssl/openssl#16778, #29076); unloaded with the context, a thread
 * that signed and exits later would crash the host. */
static void hk_p11_pin_module(void)
{
    Dl_info info;

    if (dladdr((void *)hk_p11_pin_module, &info) != 0 && info.dli_fname != NULL)
        (void)dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
}

CK_RV C_Initialize(CK_VOID_PTR pInitArgs)
{
    static const CK_C_INITIALIZE_ARGS none;
    CK_RV rv;

    (void)pthread_once(&hk_p11_atfork_once, hk_p11_atfork_register);
    (void)pthread_once(&hk_p11_pin_once, hk_p11_pin_module);
    pthread_mutex_lock(&hk_p11_init_mu);
    rv = hk_p11_initialize(pInitArgs != NULL ? pInitArgs : &none);
    pthread_mutex_unlock(&hk_p11_init_mu);
    return rv;
}

static CK_RV hk_p11_finalize(void)
{
    size_t i;

    if (hk_p11_enter() != CKR_OK)
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    /* session keys end with the sessions (their slots are still logged
     * in here; the mutex is dropped for each deletion) */
    for (i = 0; i < hk_p11.nslots; i++)
        hk_p11_session_keys_drop(&hk_p11.slots[i], 0, 0);
    for (i = 0; i < hk_p11.nsess; i++)
        if (hk_p11.sess[i] != NULL && !hk_p11.sess[i]->sign.busy)
            hk_p11_session_free(hk_p11.sess[i]);
    free(hk_p11.sess);
    hk_p11_slots_free();
    hk_p11.init = 0;
    hk_p11_leave();
    if (hk_p11.use_cb)
        (void)hk_p11.args.DestroyMutex(hk_p11.cb_mutex);
    else
        pthread_mutex_destroy(&hk_p11.mu);
    memset(&hk_p11, 0, sizeof(hk_p11));
    return CKR_OK;
}

CK_RV C_Finalize(CK_VOID_PTR pReserved)
{
    CK_RV rv;

    if (pReserved != NULL)
        return CKR_ARGUMENTS_BAD;
    pthread_mutex_lock(&hk_p11_init_mu);
    rv = hk_p11_finalize();
    /* The module's private OpenSSL context stays (the next C_Initialize
     * reuses it): OpenSSL 3.0 keeps per-thread DRBG state of every host
     * thread that used it and frees that state, through the context, when
     * the thread exits. Freed here, a host thread that signed and exits
     * after C_Finalize crashes the host (openssl/openssl#16778, #29076). */
    pthread_mutex_unlock(&hk_p11_init_mu);
    return rv;
}

CK_RV C_GetInfo(CK_INFO_PTR pInfo)
{
    if (!hk_p11.init || hk_p11.pid != getpid())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (pInfo == NULL)
        return CKR_ARGUMENTS_BAD;
    memset(pInfo, 0, sizeof(*pInfo));
    pInfo->cryptokiVersion.major = 2;
    pInfo->cryptokiVersion.minor = 40;
    hk_p11_copy_pad(pInfo->manufacturerID, sizeof(pInfo->manufacturerID),
                    "halfkey");
    hk_p11_copy_pad(pInfo->libraryDescription,
                    sizeof(pInfo->libraryDescription),
                    "halfkey two-party ECDSA");
    pInfo->libraryVersion.major = 0;
    pInfo->libraryVersion.minor = 1;
    return CKR_OK;
}

CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR ppFunctionList)
{
    if (ppFunctionList == NULL)
        return CKR_ARGUMENTS_BAD;
    *ppFunctionList = &hk_p11_functions;
    return CKR_OK;
}

/* One interface: "PKCS 11" with the v2.40 function list. Its flags are 0:
 * the module is NOT fork-safe in PKCS#11 3.0's sense (a child keeps no
 * session, login or operation state; it must call C_Initialize again),
 * so a request with CKF_INTERFACE_FORK_SAFE (NSS asks for that first)
 * finds no interface and the caller falls back to the plain one. */
static CK_INTERFACE hk_p11_interfaces[] = {
    {(CK_CHAR *)"PKCS 11", &hk_p11_functions, 0},
};
#define HK_P11_NIFACES                                                         \
    (sizeof(hk_p11_interfaces) / sizeof(hk_p11_interfaces[0]))

CK_RV C_GetInterfaceList(CK_INTERFACE_PTR pInterfacesList,
                         CK_ULONG_PTR pulCount)
{
    CK_RV rv = CKR_OK;
    size_t i;

    if (pulCount == NULL)
        return CKR_ARGUMENTS_BAD;
    if (pInterfacesList != NULL && *pulCount < HK_P11_NIFACES)
        rv = CKR_BUFFER_TOO_SMALL;
    else if (pInterfacesList != NULL)
        for (i = 0; i < HK_P11_NIFACES; i++)
            pInterfacesList[i] = hk_p11_interfaces[i];
    *pulCount = HK_P11_NIFACES;
    return rv;
}

/* Name NULL: the default interface; version NULL: any; flags: all of
 * them must be the interface's. CKR_ARGUMENTS_BAD when none matches (as
 * OpenSC and SoftHSM answer). */
CK_RV C_GetInterface(CK_UTF8CHAR_PTR pInterfaceName, CK_VERSION_PTR pVersion,
                     CK_INTERFACE_PTR_PTR ppInterface, CK_FLAGS flags)
{
    const CK_INTERFACE *it;
    const CK_VERSION *v;
    size_t i;

    if (ppInterface == NULL)
        return CKR_ARGUMENTS_BAD;
    *ppInterface = NULL;
    for (i = 0; i < HK_P11_NIFACES; i++) {
        it = &hk_p11_interfaces[i];
        v = &((const CK_FUNCTION_LIST *)it->pFunctionList)->version;
        if ((pInterfaceName == NULL ||
             strcmp((const char *)pInterfaceName,
                    (const char *)it->pInterfaceName) == 0) &&
            (pVersion == NULL ||
             (pVersion->major == v->major && pVersion->minor == v->minor)) &&
            (it->flags & flags) == flags) {
            *ppInterface = &hk_p11_interfaces[i];
            return CKR_OK;
        }
    }
    return CKR_ARGUMENTS_BAD;
}
