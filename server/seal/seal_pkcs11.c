/* PKCS#11 KEK back end: an AES-256 key inside a token, AES-GCM through
 * C_Encrypt / C_Decrypt (see seal.h).
 *
 * Owns the loading of PKCS#11 modules (one dlopen and C_Initialize per
 * module path in the process, reference counted, so a ring holding two
 * keys of one module initialises it once), the token and key lookup and
 * their checks, the session pool, the KEK id computed inside the token,
 * and the PIN sources. */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <p11-kit/pkcs11.h>

#include "server/seal/seal.h"
#include "common/why.h"

#define HK_P11_POOL 8 /* idle sessions kept open for reuse */
#define HK_P11_SLOTS_MAX 256

static const char hk_p11_id_label[] = "halfkey kek id v1";

/* --- modules -------------------------------------------------------------- */

typedef struct hk_p11_mod {
    struct hk_p11_mod *next;
    char *path;
    void *dl;
    CK_FUNCTION_LIST_PTR fl;
    int refs;
    int finalize; /* we initialised it, so we finalise it */
} hk_p11_mod;

static pthread_mutex_t hk_p11_mods_mu = PTHREAD_MUTEX_INITIALIZER;
static hk_p11_mod *hk_p11_mods;

/* Readable names of the return values an operator may meet. */
static const char *hk_ckr_name(CK_RV rv)
{
    switch (rv) {
    case CKR_PIN_INCORRECT:
        return "CKR_PIN_INCORRECT";
    case CKR_PIN_LOCKED:
        return "CKR_PIN_LOCKED";
    case CKR_USER_PIN_NOT_INITIALIZED:
        return "CKR_USER_PIN_NOT_INITIALIZED";
    case CKR_TOKEN_NOT_PRESENT:
        return "CKR_TOKEN_NOT_PRESENT";
    case CKR_DEVICE_REMOVED:
        return "CKR_DEVICE_REMOVED";
    case CKR_DEVICE_ERROR:
        return "CKR_DEVICE_ERROR";
    case CKR_SESSION_HANDLE_INVALID:
        return "CKR_SESSION_HANDLE_INVALID";
    case CKR_USER_NOT_LOGGED_IN:
        return "CKR_USER_NOT_LOGGED_IN";
    case CKR_MECHANISM_INVALID:
        return "CKR_MECHANISM_INVALID";
    case CKR_MECHANISM_PARAM_INVALID:
        return "CKR_MECHANISM_PARAM_INVALID";
    case CKR_KEY_FUNCTION_NOT_PERMITTED:
        return "CKR_KEY_FUNCTION_NOT_PERMITTED";
    case CKR_ENCRYPTED_DATA_INVALID:
        return "CKR_ENCRYPTED_DATA_INVALID";
    case CKR_TEMPLATE_INCONSISTENT:
        return "CKR_TEMPLATE_INCONSISTENT";
    default:
        return "PKCS#11 error";
    }
}

/* Loads and initialises the module (CKF_OS_LOCKING_OK). */
static hk_err hk_p11_mod_open(hk_p11_mod *m, char *why, size_t whylen)
{
    CK_C_INITIALIZE_ARGS args;
    CK_C_GetFunctionList get;
    CK_RV rv;

    if ((m->dl = dlopen(m->path, RTLD_NOW | RTLD_LOCAL)) == NULL) {
        hk_why(why, whylen, "cannot load PKCS#11 module %s: %s", m->path,
               dlerror());
        return HK_ERR_CONFIG;
    }
    *(void **)&get = dlsym(m->dl, "C_GetFunctionList");
    if (get == NULL || get(&m->fl) != CKR_OK || m->fl == NULL) {
        hk_why(why, whylen, "%s is not a PKCS#11 module", m->path);
        return HK_ERR_CONFIG;
    }
    memset(&args, 0, sizeof(args));
    args.flags = CKF_OS_LOCKING_OK;
    rv = m->fl->C_Initialize(&args);
    if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
        hk_why(why, whylen, "PKCS#11 module %s: C_Initialize: %s (0x%lx)",
               m->path, hk_ckr_name(rv), (unsigned long)rv);
        return HK_ERR_CONFIG;
    }
    m->finalize = rv == CKR_OK;
    return HK_OK;
}

static void hk_p11_mod_free(hk_p11_mod *m)
{
    if (m->fl != NULL && m->finalize)
        (void)m->fl->C_Finalize(NULL);
    if (m->dl != NULL)
        dlclose(m->dl);
    OPENSSL_free(m->path);
    OPENSSL_free(m);
}

/* The module of that path, loaded once per process. */
static hk_err hk_p11_mod_get(const char *path, hk_p11_mod **out, char *why,
                             size_t whylen)
{
    hk_p11_mod *m;
    hk_err e = HK_OK;

    pthread_mutex_lock(&hk_p11_mods_mu);
    for (m = hk_p11_mods; m != NULL; m = m->next)
        if (strcmp(m->path, path) == 0)
            break;
    if (m == NULL) {
        e = HK_ERR_NOMEM;
        if ((m = OPENSSL_zalloc(sizeof(*m))) == NULL ||
            (m->path = OPENSSL_strdup(path)) == NULL ||
            (e = hk_p11_mod_open(m, why, whylen)) != HK_OK) {
            if (m != NULL)
                hk_p11_mod_free(m);
            m = NULL;
        } else {
            m->next = hk_p11_mods;
            hk_p11_mods = m;
        }
    }
    if (m != NULL)
        m->refs++;
    pthread_mutex_unlock(&hk_p11_mods_mu);
    *out = m;
    return e;
}

static void hk_p11_mod_put(hk_p11_mod *m)
{
    hk_p11_mod **pp;

    if (m == NULL)
        return;
    pthread_mutex_lock(&hk_p11_mods_mu);
    if (--m->refs == 0) {
        for (pp = &hk_p11_mods; *pp != NULL; pp = &(*pp)->next)
            if (*pp == m) {
                *pp = m->next;
                break;
            }
        hk_p11_mod_free(m);
    }
    pthread_mutex_unlock(&hk_p11_mods_mu);
}

/* --- the back end's state ------------------------------------------------- */

typedef struct {
    hk_p11_mod *mod;
    CK_SLOT_ID slot;
    /* Kept open for the KEK's life: the user login lasts while the
     * application has a session on the token. */
    CK_SESSION_HANDLE login;
    int has_login;
    CK_OBJECT_HANDLE key;
    unsigned char id[HK_KEK_ID_LEN];
    int has_id;
    char token[HK_P11_LABEL_MAX + 1];
    char label[HK_P11_KEY_LABEL_MAX + 1];
    pthread_mutex_t mu; /* guards pool */
    CK_SESSION_HANDLE pool[HK_P11_POOL];
    size_t npool;
} hk_kek_p11;

static CK_FUNCTION_LIST_PTR hk_fl(const hk_kek_p11 *p) { return p->mod->fl; }

static void hk_p11_free(void *impl)
{
    hk_kek_p11 *p = impl;
    size_t i;

    if (p == NULL)
        return;
    if (p->mod != NULL) {
        for (i = 0; i < p->npool; i++)
            (void)hk_fl(p)->C_CloseSession(p->pool[i]);
        if (p->has_login)
            (void)hk_fl(p)->C_CloseSession(p->login);
        hk_p11_mod_put(p->mod);
    }
    pthread_mutex_destroy(&p->mu);
    OPENSSL_free(p);
}

/* A session from the pool, or a new one. */
static hk_err hk_p11_take(hk_kek_p11 *p, CK_SESSION_HANDLE *s)
{
    int have = 0;

    pthread_mutex_lock(&p->mu);
    if (p->npool > 0) {
        *s = p->pool[--p->npool];
        have = 1;
    }
    pthread_mutex_unlock(&p->mu);
    if (have)
        return HK_OK;
    return hk_fl(p)->C_OpenSession(p->slot, CKF_SERIAL_SESSION, NULL, NULL,
                                   s) == CKR_OK
               ? HK_OK
               : HK_ERR_CRYPTO;
}

/* Returns a session to the pool; one whose operation failed is closed
 * (it may hold an unfinished operation or be invalid). */
static void hk_p11_give(hk_kek_p11 *p, CK_SESSION_HANDLE s, int ok)
{
    pthread_mutex_lock(&p->mu);
    if (ok && p->npool < HK_P11_POOL) {
        p->pool[p->npool++] = s;
        s = CK_INVALID_HANDLE;
    }
    pthread_mutex_unlock(&p->mu);
    if (s != CK_INVALID_HANDLE)
        (void)hk_fl(p)->C_CloseSession(s);
}

/* C_Decrypt's verdict with every way modules report a GCM tag mismatch
 * mapped to CKR_ENCRYPTED_DATA_INVALID: SoftHSM2 answers
 * CKR_GENERAL_ERROR, others CKR_ENCRYPTED_DATA_LEN_RANGE. Failures of the
 * session or device keep their code. */
static CK_RV hk_p11_auth_failed(CK_RV rv)
{
    if (rv == CKR_GENERAL_ERROR || rv == CKR_ENCRYPTED_DATA_LEN_RANGE)
        return CKR_ENCRYPTED_DATA_INVALID;
    return rv;
}

/* One AES-GCM operation (128-bit tag) in a pooled session. Encryption
 * writes in || tag (len + 16 bytes) to out; decryption reads ct || tag and
 * writes len - 16 bytes. HK_ERR_SEAL if decryption fails to authenticate. */
static hk_err hk_p11_gcm(hk_kek_p11 *p, int enc, const unsigned char *iv,
                         const unsigned char *aad, size_t aadlen,
                         const unsigned char *in, size_t len,
                         unsigned char *out)
{
    CK_GCM_PARAMS gp;
    CK_MECHANISM mech = {CKM_AES_GCM, &gp, sizeof(gp)};
    CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
    size_t want = enc ? len + HK_SEAL_TAG_LEN : len - HK_SEAL_TAG_LEN;
    unsigned char *tmp = NULL;
    CK_ULONG got = (CK_ULONG)len + HK_SEAL_TAG_LEN;
    CK_RV rv;
    hk_err e;

    memset(&gp, 0, sizeof(gp));
    gp.pIv = (CK_BYTE_PTR)iv;
    gp.ulIvLen = HK_SEAL_NONCE_LEN;
    gp.ulIvBits = 8 * HK_SEAL_NONCE_LEN;
    gp.pAAD = (CK_BYTE_PTR)aad;
    gp.ulAADLen = (CK_ULONG)aadlen;
    gp.ulTagBits = 8 * HK_SEAL_TAG_LEN;
    /* Decrypt into a scratch buffer as long as the input: some modules
     * want room for the tag too. */
    if (!enc && (tmp = OPENSSL_malloc(len)) == NULL)
        return HK_ERR_NOMEM;
    if ((e = hk_p11_take(p, &s)) != HK_OK)
        goto done;
    if (enc) {
        rv = hk_fl(p)->C_EncryptInit(s, &mech, p->key);
        if (rv == CKR_OK)
            rv = hk_fl(p)->C_Encrypt(s, (CK_BYTE_PTR)in, (CK_ULONG)len, out,
                                     &got);
    } else {
        got = (CK_ULONG)len;
        rv = hk_fl(p)->C_DecryptInit(s, &mech, p->key);
        if (rv == CKR_OK)
            rv = hk_p11_auth_failed(hk_fl(p)->C_Decrypt(
                s, (CK_BYTE_PTR)in, (CK_ULONG)len, tmp, &got));
    }
    e = HK_OK;
    if (rv == CKR_ENCRYPTED_DATA_INVALID)
        e = HK_ERR_SEAL;
    else if (rv != CKR_OK || got != (CK_ULONG)want)
        e = HK_ERR_CRYPTO;
    hk_p11_give(p, s, e == HK_OK);
    if (e == HK_OK && !enc)
        memcpy(out, tmp, want);
done:
    if (tmp != NULL)
        OPENSSL_clear_free(tmp, len);
    return e;
}

static hk_err hk_p11_encrypt(void *impl, const unsigned char *aad,
                             size_t aadlen, const unsigned char *in, size_t len,
                             unsigned char *nonce, unsigned char *out)
{
    static const unsigned char zero[HK_SEAL_NONCE_LEN];

    /* The all-zero nonce is reserved for the KEK id (seal.h). */
    do {
        if (RAND_bytes(nonce, HK_SEAL_NONCE_LEN) != 1)
            return HK_ERR_RAND;
    } while (CRYPTO_memcmp(nonce, zero, HK_SEAL_NONCE_LEN) == 0);
    return hk_p11_gcm(impl, 1, nonce, aad, aadlen, in, len, out);
}

static hk_err hk_p11_decrypt(void *impl, const unsigned char *nonce,
                             const unsigned char *aad, size_t aadlen,
                             const unsigned char *in, size_t len,
                             unsigned char *out)
{
    return hk_p11_gcm(impl, 0, nonce, aad, aadlen, in, len, out);
}

/* The tag of 16 zero bytes under the zero IV (seal.h, KEK id). */
static hk_err hk_p11_fingerprint(hk_kek_p11 *p, unsigned char *id)
{
    static const unsigned char zero[16], iv[HK_SEAL_NONCE_LEN];
    unsigned char out[16 + HK_SEAL_TAG_LEN];
    hk_err e;

    e = hk_p11_gcm(p, 1, iv, (const unsigned char *)hk_p11_id_label,
                   sizeof(hk_p11_id_label) - 1, zero, sizeof(zero), out);
    if (e == HK_OK)
        memcpy(id, out + sizeof(zero), HK_KEK_ID_LEN);
    return e;
}

static hk_err hk_p11_id(void *impl, unsigned char *id)
{
    hk_kek_p11 *p = impl;
    hk_err e;

    if (!p->has_id) {
        if ((e = hk_p11_fingerprint(p, p->id)) != HK_OK)
            return e;
        p->has_id = 1;
    }
    memcpy(id, p->id, HK_KEK_ID_LEN);
    return HK_OK;
}

/* Logged in, and the key still gives the same fingerprint. */
static hk_err hk_p11_health(void *impl, char *why, size_t whylen)
{
    hk_kek_p11 *p = impl;
    unsigned char id[HK_KEK_ID_LEN];
    CK_SESSION_INFO si;
    CK_RV rv;
    hk_err e;

    rv = hk_fl(p)->C_GetSessionInfo(p->login, &si);
    if (rv != CKR_OK) {
        hk_why(why, whylen, "token '%s': %s (0x%lx)", p->token, hk_ckr_name(rv),
               (unsigned long)rv);
        return HK_ERR_CRYPTO;
    }
    if (si.state != CKS_RO_USER_FUNCTIONS &&
        si.state != CKS_RW_USER_FUNCTIONS) {
        hk_why(why, whylen, "token '%s': not logged in", p->token);
        return HK_ERR_CRYPTO;
    }
    if ((e = hk_p11_fingerprint(p, id)) != HK_OK) {
        hk_why(why, whylen, "key '%s' on token '%s': test encryption failed",
               p->label, p->token);
        return e;
    }
    if (CRYPTO_memcmp(id, p->id, HK_KEK_ID_LEN) != 0) {
        hk_why(why, whylen, "key '%s' on token '%s' changed", p->label,
               p->token);
        return HK_ERR_CRYPTO;
    }
    return HK_OK;
}

static const hk_kek_ops hk_kek_p11_ops = {"pkcs11",       hk_p11_encrypt,
                                          hk_p11_decrypt, hk_p11_free,
                                          hk_p11_id,      hk_p11_health};

/* --- opening -------------------------------------------------------------- */

static int hk_p11_params_ok(const hk_p11_params *p)
{
    size_t tl, kl, pl;

    if (p == NULL || p->module == NULL || p->token == NULL ||
        p->key_label == NULL || p->pin == NULL)
        return 0;
    tl = strnlen(p->token, HK_P11_LABEL_MAX + 1);
    kl = strnlen(p->key_label, HK_P11_KEY_LABEL_MAX + 1);
    pl = strnlen(p->pin, HK_P11_PIN_MAX + 1);
    return *p->module != '\0' && tl >= 1 && tl <= HK_P11_LABEL_MAX && kl >= 1 &&
           kl <= HK_P11_KEY_LABEL_MAX && pl >= 1 && pl <= HK_P11_PIN_MAX;
}

/* 1 if the blank-padded token label equals want. */
static int hk_p11_label_is(const CK_UTF8CHAR *label, const char *want)
{
    size_t n = strlen(want), i;

    if (n > 32 || memcmp(label, want, n) != 0)
        return 0;
    for (i = n; i < 32; i++)
        if (label[i] != ' ')
            return 0;
    return 1;
}

/* The slot holding the token labelled p->token. */
static hk_err hk_p11_find_slot(hk_kek_p11 *p, const char *module, char *why,
                               size_t whylen)
{
    CK_SLOT_ID *slots = NULL;
    CK_ULONG n = 0, i;
    CK_TOKEN_INFO ti;
    hk_err e = HK_ERR_CRYPTO;

    if (hk_fl(p)->C_GetSlotList(CK_TRUE, NULL, &n) != CKR_OK ||
        n > HK_P11_SLOTS_MAX) {
        hk_why(why, whylen, "PKCS#11 module %s: cannot list slots", module);
        return HK_ERR_CRYPTO;
    }
    if (n > 0 && ((slots = OPENSSL_malloc(n * sizeof(*slots))) == NULL ||
                  hk_fl(p)->C_GetSlotList(CK_TRUE, slots, &n) != CKR_OK))
        goto done;
    e = HK_ERR_CONFIG;
    for (i = 0; i < n; i++) {
        if (hk_fl(p)->C_GetTokenInfo(slots[i], &ti) == CKR_OK &&
            hk_p11_label_is(ti.label, p->token)) {
            p->slot = slots[i];
            e = HK_OK;
            break;
        }
    }
    if (e != HK_OK)
        hk_why(why, whylen, "no token labelled '%s' in PKCS#11 module %s",
               p->token, module);
done:
    OPENSSL_free(slots);
    return e;
}

/* Opens the login session and logs in as the user. */
static hk_err hk_p11_login(hk_kek_p11 *p, const char *pin, int rw, char *why,
                           size_t whylen)
{
    CK_FLAGS fl = CKF_SERIAL_SESSION | (rw ? CKF_RW_SESSION : 0);
    CK_RV rv;

    rv = hk_fl(p)->C_OpenSession(p->slot, fl, NULL, NULL, &p->login);
    if (rv != CKR_OK) {
        hk_why(why, whylen, "token '%s': cannot open a session: %s (0x%lx)",
               p->token, hk_ckr_name(rv), (unsigned long)rv);
        return HK_ERR_CRYPTO;
    }
    p->has_login = 1;
    rv = hk_fl(p)->C_Login(p->login, CKU_USER, (CK_UTF8CHAR_PTR)pin,
                           (CK_ULONG)strlen(pin));
    if (rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN)
        return HK_OK;
    hk_why(why, whylen, "token '%s': login refused: %s%s", p->token,
           hk_ckr_name(rv), rv == CKR_PIN_INCORRECT ? " (wrong PIN)" : "");
    if (rv == CKR_PIN_INCORRECT || rv == CKR_PIN_LEN_RANGE)
        return HK_ERR_PIN;
    return rv == CKR_PIN_LOCKED ? HK_ERR_PIN_LOCKED : HK_ERR_CRYPTO;
}

/* Up to two secret keys labelled p->label: *n their number. */
static hk_err hk_p11_find_key(hk_kek_p11 *p, CK_ULONG *n)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_ATTRIBUTE t[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_LABEL, p->label, (CK_ULONG)strlen(p->label)},
    };
    CK_OBJECT_HANDLE found[2];
    CK_RV rv;

    *n = 0;
    rv = hk_fl(p)->C_FindObjectsInit(p->login, t, 2);
    if (rv != CKR_OK)
        return HK_ERR_CRYPTO;
    rv = hk_fl(p)->C_FindObjects(p->login, found, 2, n);
    (void)hk_fl(p)->C_FindObjectsFinal(p->login);
    if (rv != CKR_OK)
        return HK_ERR_CRYPTO;
    if (*n > 0)
        p->key = found[0];
    return HK_OK;
}

/* The reason the key's attributes are refused, NULL if they are fine. */
static const char *hk_p11_key_refusal(hk_kek_p11 *p)
{
    CK_KEY_TYPE kt = 0;
    CK_ULONG vlen = 0;
    CK_BBOOL sens = CK_FALSE, extr = CK_TRUE, enc = CK_FALSE, dec = CK_FALSE;
    CK_ATTRIBUTE t[] = {
        {CKA_KEY_TYPE, &kt, sizeof(kt)},
        {CKA_VALUE_LEN, &vlen, sizeof(vlen)},
        {CKA_SENSITIVE, &sens, sizeof(sens)},
        {CKA_EXTRACTABLE, &extr, sizeof(extr)},
        {CKA_ENCRYPT, &enc, sizeof(enc)},
        {CKA_DECRYPT, &dec, sizeof(dec)},
    };

    if (hk_fl(p)->C_GetAttributeValue(p->login, p->key, t, 6) != CKR_OK)
        return "its attributes cannot be read";
    if (kt != CKK_AES || vlen != HK_KEK_LEN)
        return "not an AES-256 key";
    if (sens != CK_TRUE)
        return "not CKA_SENSITIVE";
    if (extr != CK_FALSE)
        return "CKA_EXTRACTABLE (the KEK must never leave the token)";
    if (enc != CK_TRUE || dec != CK_TRUE)
        return "not allowed to encrypt and decrypt";
    return NULL;
}

/* Loads the module, finds the token and logs in: a state ready for the
 * key lookup. */
static hk_err hk_p11_open(const hk_p11_params *pa, int rw, hk_kek_p11 **out,
                          char *why, size_t whylen)
{
    hk_kek_p11 *p;
    hk_err e;

    if (!hk_p11_params_ok(pa)) {
        hk_why(why, whylen, "HSM settings incomplete or too long");
        return HK_ERR_ARG;
    }
    if ((p = OPENSSL_zalloc(sizeof(*p))) == NULL)
        return HK_ERR_NOMEM;
    pthread_mutex_init(&p->mu, NULL);
    strcpy(p->token, pa->token); /* lengths checked above */
    strcpy(p->label, pa->key_label);
    if ((e = hk_p11_mod_get(pa->module, &p->mod, why, whylen)) != HK_OK ||
        (e = hk_p11_find_slot(p, pa->module, why, whylen)) != HK_OK ||
        (e = hk_p11_login(p, pa->pin, rw, why, whylen)) != HK_OK) {
        hk_p11_free(p);
        return e;
    }
    *out = p;
    return HK_OK;
}

hk_err hk_kek_load_pkcs11(const hk_p11_params *pa, hk_kek **out, char *why,
                          size_t whylen)
{
    hk_kek_p11 *p = NULL;
    const char *refusal;
    CK_ULONG n = 0;
    hk_err e;

    if (out == NULL)
        return HK_ERR_ARG;
    *out = NULL;
    if ((e = hk_p11_open(pa, 0, &p, why, whylen)) != HK_OK)
        return e;
    if ((e = hk_p11_find_key(p, &n)) != HK_OK) {
        hk_why(why, whylen, "token '%s': cannot search keys", p->token);
        goto fail;
    }
    e = HK_ERR_CONFIG;
    if (n != 1) {
        hk_why(why, whylen, "%s secret key labelled '%s' on token '%s'",
               n == 0 ? "no" : "more than one", p->label, p->token);
        goto fail;
    }
    if ((refusal = hk_p11_key_refusal(p)) != NULL) {
        hk_why(why, whylen, "key '%s' on token '%s' refused: %s", p->label,
               p->token, refusal);
        goto fail;
    }
    if ((e = hk_kek_new(&hk_kek_p11_ops, p, out)) != HK_OK)
        hk_why(why, whylen, "key '%s' on token '%s': AES-GCM test failed",
               pa->key_label, pa->token);
    return e;
fail:
    hk_p11_free(p);
    return e;
}

hk_err hk_kek_generate_pkcs11(const hk_p11_params *pa, char *why, size_t whylen)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_AES;
    CK_ULONG vlen = HK_KEK_LEN;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_MECHANISM mech = {CKM_AES_KEY_GEN, NULL, 0};
    CK_OBJECT_HANDLE h;
    hk_kek_p11 *p = NULL;
    CK_ULONG n = 0;
    CK_RV rv;
    hk_err e;

    if ((e = hk_p11_open(pa, 1, &p, why, whylen)) != HK_OK)
        return e;
    if ((e = hk_p11_find_key(p, &n)) == HK_OK && n > 0) {
        hk_why(why, whylen, "token '%s' already has a key labelled '%s'",
               p->token, p->label);
        e = HK_ERR_EXISTS;
    }
    if (e == HK_OK) {
        CK_ATTRIBUTE t[] = {
            {CKA_CLASS, &cls, sizeof(cls)},
            {CKA_KEY_TYPE, &kt, sizeof(kt)},
            {CKA_VALUE_LEN, &vlen, sizeof(vlen)},
            {CKA_TOKEN, &yes, sizeof(yes)},
            {CKA_PRIVATE, &yes, sizeof(yes)},
            {CKA_SENSITIVE, &yes, sizeof(yes)},
            {CKA_EXTRACTABLE, &no, sizeof(no)},
            {CKA_ENCRYPT, &yes, sizeof(yes)},
            {CKA_DECRYPT, &yes, sizeof(yes)},
            {CKA_WRAP, &no, sizeof(no)},
            {CKA_UNWRAP, &no, sizeof(no)},
            {CKA_LABEL, p->label, (CK_ULONG)strlen(p->label)},
        };
        rv = hk_fl(p)->C_GenerateKey(p->login, &mech, t,
                                     sizeof(t) / sizeof(t[0]), &h);
        if (rv != CKR_OK) {
            hk_why(why, whylen, "token '%s': C_GenerateKey: %s (0x%lx)",
                   p->token, hk_ckr_name(rv), (unsigned long)rv);
            e = HK_ERR_CRYPTO;
        }
    }
    hk_p11_free(p);
    return e;
}

/* --- PIN sources ---------------------------------------------------------- */

/* Checks the PIN text: 1..HK_P11_PIN_MAX bytes without NUL or newline. */
static hk_err hk_pin_ok(const char *pin, size_t n, const char *src, char *why,
                        size_t whylen)
{
    if (n == 0 || n > HK_P11_PIN_MAX || memchr(pin, '\0', n) != NULL ||
        memchr(pin, '\n', n) != NULL) {
        hk_why(why, whylen,
               "HSM PIN from %s: empty, longer than %d bytes "
               "or more than one line",
               src, HK_P11_PIN_MAX);
        return HK_ERR_CONFIG;
    }
    return HK_OK;
}

/* Reads the PIN file (checked like a key file: regular, mode 0600). */
static hk_err hk_pin_file(const char *path, char *pin, char *why, size_t whylen)
{
    char buf[HK_P11_PIN_MAX + 3];
    struct stat st;
    ssize_t n;
    size_t len = 0;
    hk_err e = HK_ERR_CONFIG;
    int fd;

    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
        hk_why(why, whylen, "cannot open HSM PIN file %s: %s", path,
               strerror(errno));
        return HK_ERR_CONFIG;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
        (st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
        hk_why(why, whylen,
               "HSM PIN file %s must be a regular file that group and "
               "others cannot access (chmod 600 it)",
               path);
        goto done;
    }
    while (len < sizeof(buf) &&
           ((n = read(fd, buf + len, sizeof(buf) - len)) > 0 ||
            (n < 0 && errno == EINTR)))
        len += n > 0 ? (size_t)n : 0;
    if (len > 0 && buf[len - 1] == '\n')
        len--;
    if (len > 0 && buf[len - 1] == '\r')
        len--;
    if ((e = hk_pin_ok(buf, len, path, why, whylen)) == HK_OK) {
        memcpy(pin, buf, len);
        pin[len] = '\0';
    }
done:
    OPENSSL_cleanse(buf, sizeof(buf));
    close(fd);
    return e;
}

hk_err hk_p11_pin_load(const char *pin_file, const char *pin_env, char *pin,
                       char *why, size_t whylen)
{
    int has_file = pin_file != NULL && *pin_file != '\0';
    int has_env = pin_env != NULL && *pin_env != '\0';
    const char *v;
    hk_err e;

    if (pin == NULL)
        return HK_ERR_ARG;
    pin[0] = '\0';
    if (has_file == has_env) {
        hk_why(why, whylen,
               "give exactly one HSM PIN source: hsm_pin_file "
               "or hsm_pin_env");
        return HK_ERR_CONFIG;
    }
    if (has_file)
        return hk_pin_file(pin_file, pin, why, whylen);
    if ((v = getenv(pin_env)) == NULL) {
        hk_why(why, whylen, "HSM PIN variable $%s is not set", pin_env);
        return HK_ERR_CONFIG;
    }
    if ((e = hk_pin_ok(v, strlen(v), pin_env, why, whylen)) == HK_OK)
        strcpy(pin, v); /* length checked */
    return e;
}
