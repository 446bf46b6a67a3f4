/* The OpenSSL 3 provider `halfkey`: a face over the client core
 * (client/client.h) with no cryptography of its own. Every private-key
 * operation is a two-party signing session with halfkeyd; the public half
 * is exported so that the default provider verifies.
 *
 * Files, one per operation:
 *   provider.c            OSSL_provider_init, parameters, errors, config
 *   provider-key.c        the key object shared by the operations below
 *   provider-uri.c        halfkey: and pkcs11: URIs
 *   provider-keymgmt.c    EC key management (public half only)
 *   provider-signature.c  ECDSA: sign on a digest, digest-sign
 *   provider-store.c      the store loader for halfkey: and pkcs11: URIs
 *   provider-encoder.c    SubjectPublicKeyInfo (DER, PEM) and text
 *
 * Configuration (first match wins):
 *   token directory  URI halfkey-dir= (or a halfkey: token= holding a
 *                    '/'), openssl.cnf `halfkey-dir`, $HALFKEY_HOME,
 *                    $XDG_DATA_HOME/halfkey, ~/.local/share/halfkey
 *   PIN              URI pin-value=, URI pin-source=, openssl.cnf
 *                    `halfkey-pin-file`, $HALFKEY_PIN, OpenSSL's
 *                    passphrase callback (a prompt in the openssl tools) */
#ifndef HK_PROVIDER_H
#define HK_PROVIDER_H

#include <pthread.h>
#include <stddef.h>

#include <openssl/core.h>
#include <openssl/core_dispatch.h>

#include "client/client.h"

#define HK_PROV_NAME "halfkey"
#define HK_PROV_PROPS "provider=halfkey"
#define HK_PROV_NOT_OURS "provider!=halfkey"
/* The names the default provider gives EC keys: libssl and the X.509 code
 * recognise a key by them. */
#define HK_PROV_EC_NAMES "EC:id-ecPublicKey:1.2.840.10045.2.1"
#define HK_PROV_SIG_MAX 72 /* DER ECDSA-Sig-Value of a 256-bit curve */

/* Reasons of the provider's errors (hk_prov_reasons in provider.c). */
enum {
    HK_R_INTERNAL = 1,
    HK_R_NOMEM,
    HK_R_CONFIG,      /* token directory or halfkey.conf */
    HK_R_URI,         /* malformed or unsupported URI */
    HK_R_NOT_FOUND,   /* no key matches the URI */
    HK_R_NO_PIN,      /* no PIN from any source */
    HK_R_PIN,         /* wrong PIN */
    HK_R_PIN_LOCKED,  /* too many wrong PINs */
    HK_R_PIN_SOURCE,  /* unreadable or unsafe PIN file */
    HK_R_KEY_LOCKED,  /* key locked after an invalid-signature abort */
    HK_R_SIG_ABORT,   /* the server's share gave an invalid signature */
    HK_R_BUSY,        /* another session holds the key */
    HK_R_PUBLIC_ONLY, /* the key has no halfkey private half */
    HK_R_DIGEST,      /* unsupported digest or wrong digest length */
    HK_R_KEY,         /* unsupported or inconsistent public key */
    HK_R_SERVER,      /* signing failed: server, network, protocol */
    HK_R_BUFFER,      /* output buffer too small */
    HK_R_TOKEN        /* a token file fails authentication or decoding */
};

typedef struct {
    const OSSL_CORE_HANDLE *handle;
    OSSL_LIB_CTX *libctx;      /* child of the application's library context */
    OSSL_LIB_CTX *core_libctx; /* the application's (not ours to free; */
    int has_core_libctx;       /* NULL is OpenSSL's default context) */
    int ordered_keymgmt;       /* others' EC key management stored first */
    int ordered_signature;     /* others' ECDSA stored first */
    char *dir;                 /* openssl.cnf halfkey-dir, or NULL */
    char *pin_file;            /* openssl.cnf halfkey-pin-file, or NULL */
    OSSL_FUNC_core_new_error_fn *new_error;
    OSSL_FUNC_core_set_error_debug_fn *set_error_debug;
    OSSL_FUNC_core_vset_error_fn *vset_error;
} hk_prov_ctx;

/* Raises a provider error (the one error helper). */
void hk_prov_raise_at(const hk_prov_ctx *pc, const char *file, int line,
                      const char *func, int reason, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
#define hk_prov_raise(pc, reason, ...)                                         \
    hk_prov_raise_at((pc), __FILE__, __LINE__, __func__, (reason), __VA_ARGS__)
/* Raises the error for a client-core failure: its reason, hk_strerror and
 * `what` (no secrets). */
void hk_prov_raise_hk_at(const hk_prov_ctx *pc, const char *file, int line,
                         const char *func, hk_err e, const char *what);
#define hk_prov_raise_hk(pc, e, what)                                          \
    hk_prov_raise_hk_at((pc), __FILE__, __LINE__, __func__, (e), (what))

/* --- the key object (provider-key.c) ----------------------------------- */

/* One open, logged-in token: shared by the keys a store loaded from it.
 * Signing takes its mutex (one session at a time through this handle). */
typedef struct hk_prov_token hk_prov_token;

typedef struct {
    hk_prov_ctx *pc;
    hk_prov_token *tok; /* NULL: a public key only (imported or
                         * type=public) */
    char label[HK_KS_LABEL_MAX + 1];
    unsigned char kid[HK_ID_LEN];
    hk_curve_id curve; /* 0 until a public key is set */
    unsigned char pub[HK_POINT_UNCOMPRESSED_LEN];
} hk_prov_key;

HK_WUR hk_err hk_prov_token_open(hk_prov_ctx *pc, const char *dir,
                                 hk_prov_token **out, char *why);
hk_prov_token *hk_prov_token_ref(hk_prov_token *t);
void hk_prov_token_free(hk_prov_token *t);
hk_ks *hk_prov_token_ks(hk_prov_token *t);

hk_prov_key *hk_prov_key_new(hk_prov_ctx *pc);
void hk_prov_key_free(hk_prov_key *k);
hk_prov_key *hk_prov_key_dup(const hk_prov_key *k, int with_private);
/* Sets the public half from a SEC1 point, compressed or not (checked on
 * the curve by the mpc core). */
HK_WUR hk_err hk_prov_key_set_pub(hk_prov_key *k, hk_curve_id curve,
                                  const unsigned char *pt, size_t len);
/* The key from a keystore entry; tok (referenced) for a private key. */
hk_prov_key *hk_prov_key_from_info(hk_prov_ctx *pc, const hk_ks_keyinfo *info,
                                   hk_prov_token *tok);
/* ECDSA through the two-party protocol: sig = r || s. Raises its error. */
int hk_prov_key_sign(hk_prov_key *k, const unsigned char *dig, size_t dlen,
                     unsigned char sig[HK_SIG_LEN]);
/* "prime256v1" / "secp256k1"; a group name to a curve id (0: unknown). */
const char *hk_prov_group_name(hk_curve_id c);
hk_curve_id hk_prov_group_id(const char *name);
/* SubjectPublicKeyInfo DER of the public key: *len bytes in out[91]. */
#define HK_PROV_SPKI_MAX 91
int hk_prov_key_spki(const hk_prov_key *k, unsigned char *out, size_t *len);

/* --- URIs (provider-uri.c) --------------------------------------------- */

enum {
    HK_URI_ANY = 0,
    HK_URI_PRIVATE,
    HK_URI_PUBLIC,
    HK_URI_CERT,
    HK_URI_OTHER
};

#define HK_URI_ID_MAX 64

typedef struct {
    char *dir;    /* token directory, or NULL */
    char *token;  /* token label to match, or NULL */
    char *object; /* key label, or NULL */
    unsigned char id[HK_ID_LEN];
    int has_id;
    int id_bad; /* id= of another length: matches no key */
    unsigned char raw_id[HK_URI_ID_MAX]; /* id= as given (certificates: */
    size_t raw_id_len;                   /* any CKA_ID), if it fits */
    int type;                            /* HK_URI_* */
    char *pin_value; /* secret: wiped by hk_prov_uri_clear */
    char *pin_source;
} hk_prov_uri;

/* Parses a halfkey: or pkcs11: URI; why[256] gets the reason on failure. */
int hk_prov_uri_parse(const char *s, hk_prov_uri *u, char *why);
void hk_prov_uri_clear(hk_prov_uri *u);

/* --- dispatch tables ---------------------------------------------------- */

extern const OSSL_DISPATCH hk_prov_keymgmt_functions[];
extern const OSSL_DISPATCH hk_prov_signature_functions[];
extern const OSSL_DISPATCH hk_prov_store_functions[];
extern const OSSL_DISPATCH hk_prov_spki_der_encoder_functions[];
extern const OSSL_DISPATCH hk_prov_spki_pem_encoder_functions[];
extern const OSSL_DISPATCH hk_prov_text_encoder_functions[];

#endif
