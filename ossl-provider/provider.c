/* The provider's entry point, parameters, errors and configuration. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/opensslv.h>
#include <openssl/params.h>
#include <openssl/provider.h>

#include "ossl-provider/provider.h"

#ifndef HK_VERSION
#define HK_VERSION "0.0.0"
#endif

static const OSSL_ITEM hk_prov_reasons[] = {
    {HK_R_INTERNAL, "internal error"},
    {HK_R_NOMEM, "out of memory"},
    {HK_R_CONFIG, "halfkey token configuration"},
    {HK_R_URI, "bad halfkey or pkcs11 URI"},
    {HK_R_NOT_FOUND, "no halfkey key matches the URI"},
    {HK_R_NO_PIN, "no PIN given"},
    {HK_R_PIN, "wrong PIN"},
    {HK_R_PIN_LOCKED, "PIN locked after too many wrong PINs"},
    {HK_R_PIN_SOURCE, "cannot read the PIN source"},
    {HK_R_KEY_LOCKED, "key locked after an invalid-signature abort"},
    {HK_R_SIG_ABORT, "invalid signature from the server, key locked"},
    {HK_R_BUSY, "key busy in another signing session"},
    {HK_R_PUBLIC_ONLY, "key has no halfkey private half"},
    {HK_R_DIGEST, "unsupported digest or digest length"},
    {HK_R_KEY, "unsupported or inconsistent public key"},
    {HK_R_SERVER, "two-party signing failed"},
    {HK_R_BUFFER, "output buffer too small"},
    {HK_R_TOKEN, "damaged or tampered halfkey token file"},
    {0, NULL}};

void hk_prov_raise_at(const hk_prov_ctx *pc, const char *file, int line,
                      const char *func, int reason, const char *fmt, ...)
{
    va_list ap;

    if (pc == NULL || pc->new_error == NULL)
        return;
    pc->new_error(pc->handle);
    pc->set_error_debug(pc->handle, file, line, func);
    va_start(ap, fmt);
    pc->vset_error(pc->handle, (uint32_t)reason, fmt, ap);
    va_end(ap);
}

void hk_prov_raise_hk_at(const hk_prov_ctx *pc, const char *file, int line,
                         const char *func, hk_err e, const char *what)
{
    int reason;

    switch (e) {
    case HK_ERR_NOMEM:
        reason = HK_R_NOMEM;
        break;
    case HK_ERR_CONFIG:
    case HK_ERR_IO:
        reason = HK_R_CONFIG;
        break;
    case HK_ERR_NOT_FOUND:
        reason = HK_R_NOT_FOUND;
        break;
    case HK_ERR_PIN:
        reason = HK_R_PIN;
        break;
    case HK_ERR_PIN_LOCKED:
        reason = HK_R_PIN_LOCKED;
        break;
    case HK_ERR_KEY_LOCKED:
        reason = HK_R_KEY_LOCKED;
        break;
    case HK_ERR_SIG_ABORT:
        reason = HK_R_SIG_ABORT;
        break;
    case HK_ERR_BUSY:
        reason = HK_R_BUSY;
        break;
    case HK_ERR_CURVE:
    case HK_ERR_POINT:
        reason = HK_R_KEY;
        break;
    case HK_ERR_SEAL:
    case HK_ERR_DECODE:
    case HK_ERR_SHARE:
    case HK_ERR_VERSION:
        reason = HK_R_TOKEN;
        break;
    default:
        reason = HK_R_SERVER;
    }
    hk_prov_raise_at(pc, file, line, func, reason, "%s: %s",
                     what != NULL ? what : "halfkey", hk_strerror(e));
}

/* --- parameters ------------------------------------------------------- */

static const OSSL_PARAM *hk_prov_gettable_params(void *provctx)
{
    static const OSSL_PARAM t[] = {
        OSSL_PARAM_DEFN(OSSL_PROV_PARAM_NAME, OSSL_PARAM_UTF8_PTR, NULL, 0),
        OSSL_PARAM_DEFN(OSSL_PROV_PARAM_VERSION, OSSL_PARAM_UTF8_PTR, NULL, 0),
        OSSL_PARAM_DEFN(OSSL_PROV_PARAM_BUILDINFO, OSSL_PARAM_UTF8_PTR, NULL,
                        0),
        OSSL_PARAM_DEFN(OSSL_PROV_PARAM_STATUS, OSSL_PARAM_INTEGER, NULL, 0),
        OSSL_PARAM_END};
    return t;
}

static int hk_prov_get_params(void *provctx, OSSL_PARAM params[])
{
    OSSL_PARAM *p;

    p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_NAME);
    if (p != NULL &&
        !OSSL_PARAM_set_utf8_ptr(p, "halfkey two-party ECDSA provider"))
        return 0;
    p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_VERSION);
    if (p != NULL && !OSSL_PARAM_set_utf8_ptr(p, HK_VERSION))
        return 0;
    p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_BUILDINFO);
    if (p != NULL &&
        !OSSL_PARAM_set_utf8_ptr(p, "halfkey " HK_VERSION
                                    ", built with " OPENSSL_VERSION_TEXT))
        return 0;
    p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_STATUS);
    if (p != NULL && !OSSL_PARAM_set_int(p, 1))
        return 0;
    return 1;
}

/* --- algorithms ------------------------------------------------------- */

static const OSSL_ALGORITHM hk_prov_keymgmt[] = {
    {HK_PROV_EC_NAMES, HK_PROV_PROPS, hk_prov_keymgmt_functions,
     "EC key whose private half is a halfkey split key"},
    {NULL, NULL, NULL, NULL}};

static const OSSL_ALGORITHM hk_prov_signature[] = {
    {"ECDSA", HK_PROV_PROPS, hk_prov_signature_functions,
     "two-party ECDSA with halfkeyd"},
    {NULL, NULL, NULL, NULL}};

static const OSSL_ALGORITHM hk_prov_store[] = {
    {"halfkey", HK_PROV_PROPS, hk_prov_store_functions,
     "halfkey: URIs (RFC 7512 attributes)"},
    {"pkcs11", HK_PROV_PROPS, hk_prov_store_functions,
     "pkcs11: URIs (RFC 7512) naming halfkey keys"},
    {NULL, NULL, NULL, NULL}};

static const OSSL_ALGORITHM hk_prov_encoder[] = {
    {HK_PROV_EC_NAMES,
     HK_PROV_PROPS ",output=der,structure=SubjectPublicKeyInfo",
     hk_prov_spki_der_encoder_functions, "SubjectPublicKeyInfo, DER"},
    {HK_PROV_EC_NAMES,
     HK_PROV_PROPS ",output=pem,structure=SubjectPublicKeyInfo",
     hk_prov_spki_pem_encoder_functions, "SubjectPublicKeyInfo, PEM"},
    {HK_PROV_EC_NAMES, HK_PROV_PROPS ",output=text",
     hk_prov_text_encoder_functions, "text: label, key id, public key"},
    {NULL, NULL, NULL, NULL}};

/* Provider order. With no property query OpenSSL takes the first
 * implementation of an algorithm it stored, in the order the providers
 * were loaded: loaded before `default`, our "EC" key management would
 * answer every plain EC fetch, and libssl, which keeps a TLS group only if
 * the provider that announces it also answers its key management fetch,
 * would drop P-256 and the other EC groups (and ECDSA verification of other
 * keys would come here). So before our EC key management or ECDSA is
 * stored in the application's library context, the other providers' are
 * fetched (stored first): plain fetches get them, fetches from this
 * provider (a key loaded by our store, its signing) get ours. While that
 * fetch runs, we answer nothing and let it not be cached. */
static __thread int hk_prov_in_order_fetch;

static int hk_prov_put_others_first(hk_prov_ctx *pc, int op)
{
    int *done =
        op == OSSL_OP_KEYMGMT ? &pc->ordered_keymgmt : &pc->ordered_signature;

    if (__atomic_load_n(done, __ATOMIC_ACQUIRE) || !pc->has_core_libctx)
        return 1;
    if (hk_prov_in_order_fetch)
        return 0;
    hk_prov_in_order_fetch = 1;
    ERR_set_mark();
    if (op == OSSL_OP_KEYMGMT)
        EVP_KEYMGMT_free(
            EVP_KEYMGMT_fetch(pc->core_libctx, "EC", HK_PROV_NOT_OURS));
    else
        EVP_SIGNATURE_free(
            EVP_SIGNATURE_fetch(pc->core_libctx, "ECDSA", HK_PROV_NOT_OURS));
    ERR_pop_to_mark(); /* none there (no default provider): not an error */
    hk_prov_in_order_fetch = 0;
    __atomic_store_n(done, 1, __ATOMIC_RELEASE);
    return 1;
}

static const OSSL_ALGORITHM *hk_prov_query(void *provctx, int op, int *no_cache)
{
    hk_prov_ctx *pc = provctx;

    *no_cache = 0;
    switch (op) {
    case OSSL_OP_KEYMGMT:
    case OSSL_OP_SIGNATURE:
        if (!hk_prov_put_others_first(pc, op)) {
            *no_cache = 1;
            return NULL;
        }
        return op == OSSL_OP_KEYMGMT ? hk_prov_keymgmt : hk_prov_signature;
    case OSSL_OP_STORE:
        return hk_prov_store;
    case OSSL_OP_ENCODER:
        return hk_prov_encoder;
    default:
        return NULL;
    }
}

static const OSSL_ITEM *hk_prov_reason_strings(void *provctx)
{
    return hk_prov_reasons;
}

static void hk_prov_teardown(void *provctx)
{
    hk_prov_ctx *pc = provctx;

    if (pc == NULL)
        return;
    OSSL_LIB_CTX_free(pc->libctx);
    OPENSSL_free(pc->dir);
    OPENSSL_free(pc->pin_file);
    OPENSSL_free(pc);
}

static const OSSL_DISPATCH hk_prov_dispatch[] = {
    {OSSL_FUNC_PROVIDER_TEARDOWN, (void (*)(void))hk_prov_teardown},
    {OSSL_FUNC_PROVIDER_GETTABLE_PARAMS,
     (void (*)(void))hk_prov_gettable_params},
    {OSSL_FUNC_PROVIDER_GET_PARAMS, (void (*)(void))hk_prov_get_params},
    {OSSL_FUNC_PROVIDER_QUERY_OPERATION, (void (*)(void))hk_prov_query},
    {OSSL_FUNC_PROVIDER_GET_REASON_STRINGS,
     (void (*)(void))hk_prov_reason_strings},
    {0, NULL}};

/* openssl.cnf settings of the provider's section. */
static int hk_prov_configure(hk_prov_ctx *pc, OSSL_FUNC_core_get_params_fn *gp)
{
    char *dir = NULL, *pin_file = NULL;
    OSSL_PARAM p[3];

    p[0] = OSSL_PARAM_construct_utf8_ptr("halfkey-dir", &dir, 0);
    p[1] = OSSL_PARAM_construct_utf8_ptr("halfkey-pin-file", &pin_file, 0);
    p[2] = OSSL_PARAM_construct_end();
    if (gp == NULL || !gp(pc->handle, p))
        return 1;
    if (dir != NULL && dir[0] != 0 && (pc->dir = OPENSSL_strdup(dir)) == NULL)
        return 0;
    if (pin_file != NULL && pin_file[0] != 0 &&
        (pc->pin_file = OPENSSL_strdup(pin_file)) == NULL)
        return 0;
    return 1;
}

__attribute__((visibility("default"))) int
OSSL_provider_init(const OSSL_CORE_HANDLE *handle, const OSSL_DISPATCH *in,
                   const OSSL_DISPATCH **out, void **provctx)
{
    OSSL_FUNC_core_get_params_fn *gp = NULL;
    OSSL_FUNC_core_get_libctx_fn *get_libctx = NULL;
    const OSSL_DISPATCH *f;
    hk_prov_ctx *pc;
    int ok = 0;

    if ((pc = OPENSSL_zalloc(sizeof(*pc))) == NULL)
        return 0;
    pc->handle = handle;
    for (f = in; f->function_id != 0; f++) {
        switch (f->function_id) {
        case OSSL_FUNC_CORE_GET_PARAMS:
            gp = OSSL_FUNC_core_get_params(f);
            break;
        case OSSL_FUNC_CORE_GET_LIBCTX:
            get_libctx = OSSL_FUNC_core_get_libctx(f);
            break;
        case OSSL_FUNC_CORE_NEW_ERROR:
            pc->new_error = OSSL_FUNC_core_new_error(f);
            break;
        case OSSL_FUNC_CORE_SET_ERROR_DEBUG:
            pc->set_error_debug = OSSL_FUNC_core_set_error_debug(f);
            break;
        case OSSL_FUNC_CORE_VSET_ERROR:
            pc->vset_error = OSSL_FUNC_core_vset_error(f);
            break;
        default:
            break;
        }
    }
    if (pc->set_error_debug == NULL || pc->vset_error == NULL)
        pc->new_error = NULL; /* no error reporting without all three */
    /* The application's library context: this provider shares libcrypto
     * with it, so the core's context is an OSSL_LIB_CTX (provider order,
     * hk_prov_put_others_first); NULL is OpenSSL's default context. */
    if (get_libctx != NULL) {
        pc->core_libctx = (OSSL_LIB_CTX *)get_libctx(handle);
        pc->has_core_libctx = 1;
    }
    /* A child library context: digests and the default provider's EC code
     * of the application, and BIOs over the core's. */
    if ((pc->libctx = OSSL_LIB_CTX_new_child(handle, in)) == NULL ||
        !hk_prov_configure(pc, gp))
        goto done;
    *out = hk_prov_dispatch;
    *provctx = pc;
    ok = 1;
done:
    if (!ok)
        hk_prov_teardown(pc);
    return ok;
}
