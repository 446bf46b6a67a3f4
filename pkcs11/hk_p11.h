/* Internal interface of the PKCS#11 module libhalfkey-pkcs11.so: a thin
 * face over the client core (client/client.h), no cryptography of its own
 * except hashing for CKM_ECDSA_SHA* and public-key checks for C_Verify.
 *
 * The only global state is the library context hk_p11 (module.c). Every
 * entry point takes its mutex with hk_p11_enter and drops it with
 * hk_p11_leave; network calls (keygen, signing) run with it dropped.
 *
 * Slots: one per token directory ($HALFKEY_PKCS11_TOKENS, ':'-separated,
 * else $HALFKEY_HOME / the default of hk_ks_dir_resolve). Objects: each key
 * of a slot is a private key and a public key object; its handle encodes
 * the slot, the key's index in the slot's key table and the class. */
#ifndef HK_P11_H
#define HK_P11_H

#include <pthread.h>
#include <stdint.h>
#include <sys/types.h>

#pragma GCC visibility push(default)
#include <p11-kit/pkcs11.h>

/* PKCS#11 3.0 interfaces (C_GetInterfaceList, C_GetInterface): p11-kit's
 * header before 0.25 lacks them; the definitions below are the standard's
 * (pkcs11t.h, pkcs11f.h of PKCS#11 3.0), used only when it does. */
#ifndef CKF_INTERFACE_FORK_SAFE
#define CKF_INTERFACE_FORK_SAFE 0x00000001UL
typedef struct CK_INTERFACE {
    CK_CHAR *pInterfaceName;
    CK_VOID_PTR pFunctionList;
    CK_FLAGS flags;
} CK_INTERFACE;
typedef CK_INTERFACE *CK_INTERFACE_PTR;
typedef CK_INTERFACE_PTR *CK_INTERFACE_PTR_PTR;
CK_RV C_GetInterfaceList(CK_INTERFACE_PTR pInterfacesList,
                         CK_ULONG_PTR pulCount);
CK_RV C_GetInterface(CK_UTF8CHAR_PTR pInterfaceName, CK_VERSION_PTR pVersion,
                     CK_INTERFACE_PTR_PTR ppInterface, CK_FLAGS flags);
#endif
#pragma GCC visibility pop

/* PKCS#11 3.0 attributes p11-kit's header before 0.25 lacks. */
#ifndef CKA_UNIQUE_ID
#define CKA_UNIQUE_ID 0x4UL
#endif

#include <openssl/evp.h>

#include "client/client.h"

#define HK_P11_MAX_SLOTS 16
#define HK_P11_RAW_MAX 1024 /* CKM_ECDSA input buffered by C_SignUpdate */
#define HK_P11_SIG_LEN 64

/* Vendor attributes (documented in README.md): the key's share epoch
 * (CK_ULONG, read-only), and share refresh: C_SetAttributeValue of
 * HK_CKA_REFRESH = CK_TRUE on a private key rotates its shares with the
 * server (hk_client_refresh; the public key is unchanged). */
#define HK_CKA_EPOCH (CKA_VENDOR_DEFINED | 0x484b0001UL)
#define HK_CKA_REFRESH (CKA_VENDOR_DEFINED | 0x484b0002UL)

#define HK_P11_ID_MAX 64

typedef struct {
    hk_ks_keyinfo info;
    unsigned char point[HK_POINT_UNCOMPRESSED_LEN];
    unsigned char id[HK_P11_ID_MAX]; /* CKA_ID: the key id, or the one */
    size_t idlen;                    /* the keygen template gave */
    int present;
    int orphan;             /* deleted through this context: only its public key
                             * object is left, until destroyed (C_DestroyObject) */
    CK_SESSION_HANDLE sess; /* a session key (CKA_TOKEN false): the session
                             * that made it, which deletes it; 0: token key */
} hk_p11_key;

/* A stored object (store.c): its attributes, values in the record. */
typedef struct {
    uint32_t id;
    size_t n;
    CK_ATTRIBUTE a[64];
} hk_p11_obj;

#define HK_P11_OBJ_BIT (1ul << 23)  /* handle bit of stored objects */
#define HK_P11_SOBJ_BIT (1ul << 22) /* with it: a session object */

/* A session object (sessobj.c): o's values point into buf. */
typedef struct {
    CK_SESSION_HANDLE owner;
    int priv; /* CKA_PRIVATE: visible logged in only */
    unsigned char *buf;
    size_t len;
    hk_p11_obj o;
} hk_p11_sobj;
/* A hidden stored object: the CKA_ID a keygen template gave key CKA_LABEL
 * whose key id is CKA_VALUE. */
#define HK_CKO_KEY_ID (CKO_VENDOR_DEFINED | 0x484b0001UL)

typedef struct {
    char dir[1024];
    hk_client *cli; /* NULL: no usable token in dir */
    int logged_in;
    int so_logged_in;
    hk_p11_key *keys; /* append-only for the life of the context */
    size_t nkeys, cap;
    unsigned char *objrec; /* the stored objects' record */
    hk_p11_obj *objs;
    size_t nobjs;
    hk_p11_sobj **sobjs; /* session objects */
    size_t nsobjs, sobj_cap;
    uint32_t next_sobj;
} hk_p11_slot;

/* A sign or verify operation: the mechanism, the key and the input. */
typedef struct {
    int active;
    int busy;  /* a network signing call is running without the mutex */
    int multi; /* C_*Update was called: only C_*Final may finish it */
    CK_MECHANISM_TYPE mech;
    CK_OBJECT_HANDLE key;
    EVP_MD_CTX *md; /* CKM_ECDSA_SHA*: running hash */
    unsigned char raw[HK_P11_RAW_MAX];
    size_t rawlen;
} hk_p11_op;

typedef struct {
    CK_SLOT_ID slot;
    CK_FLAGS flags;
    int closed; /* closed while busy: freed by the signing thread */
    int finding;
    CK_OBJECT_HANDLE *found;
    size_t nfound, pos;
    hk_p11_op sign, verify;
    EVP_MD_CTX *digest; /* C_DigestInit..C_Digest(Final); NULL: none */
    int digest_multi;   /* C_DigestUpdate was called */
} hk_p11_session;

typedef struct {
    int init;
    pid_t pid;
    CK_C_INITIALIZE_ARGS args;
    int use_cb; /* the caller's mutex callbacks instead of pthreads */
    void *cb_mutex;
    pthread_mutex_t mu;
    hk_p11_slot slots[HK_P11_MAX_SLOTS];
    size_t nslots;
    hk_p11_session **sess; /* handle h is sess[h - 1] */
    size_t nsess;
} hk_p11_ctx;

extern hk_p11_ctx hk_p11;

/* module.c */
CK_RV hk_p11_enter(void);
void hk_p11_leave(void);
void hk_p11_copy_pad(CK_UTF8CHAR *dst, size_t n, const char *src);
CK_RV hk_p11_err(hk_err e, const char *what, const char *label);

/* slot.c */
CK_RV hk_p11_slot_get(CK_SLOT_ID id, hk_p11_slot **out);
void hk_p11_slots_load(void);
void hk_p11_slots_free(void);

/* sign.c */
/* Calls f(cli, label) without the mutex, again while it reports
 * HK_ERR_BUSY (another session holds the key). */
hk_err hk_p11_retry_busy(hk_client *cli, const char *label,
                         hk_err (*f)(hk_client *, const char *, void *),
                         void *arg);

/* keygen.c */
typedef struct {
    hk_curve_id curve;
    char label[HK_KS_LABEL_MAX + 1];
    unsigned char id[HK_P11_ID_MAX];
    size_t idlen; /* 0: the key id */
    int token;    /* a token key (else a session key) */
} hk_p11_genreq;
/* C_GenerateKeyPair's mechanism and templates as a request (no network;
 * the fuzz target tests/fuzz/fuzz_p11_tpl.c calls it). */
CK_RV hk_p11_genreq_parse(const CK_MECHANISM *m, const CK_ATTRIBUTE *pub,
                          CK_ULONG npub, const CK_ATTRIBUTE *prv, CK_ULONG nprv,
                          hk_p11_genreq *r);
/* Deletes the session keys of session `owner` (0: every session key of
 * the slot) on both sides, or, at logout, only their private halves
 * (`priv_only`; the public key objects stay until the session closes).
 * Mutex held, dropped for the network. */
void hk_p11_session_keys_drop(hk_p11_slot *sl, CK_SESSION_HANDLE owner,
                              int priv_only);
/* Deletes key sl->keys[idx] on both sides (hk_client_delete; the mutex is
 * dropped meanwhile). */
CK_RV hk_p11_key_delete(hk_p11_slot *sl, size_t idx);

/* refresh.c */
/* HK_CKA_REFRESH = CK_TRUE on private key k (mutex held, dropped). */
CK_RV hk_p11_refresh(hk_p11_session *s, hk_p11_key *k, int priv,
                     const CK_ATTRIBUTE *t, CK_ULONG n);

/* pinsrc.c */
int hk_p11_pin_path(void);
/* 1 if $HALFKEY_PKCS11_AUTO_LOGIN is "1" and a PIN file is set: tokens
 * need no login (the PIN file logs the slot in at C_OpenSession). */
int hk_p11_auto_login(void);
/* The PIN from the PIN file (OPENSSL_clear_free'd by the caller). */
CK_RV hk_p11_pin_read(char **out);

/* session.c */
/* Logs the slot out (user and SO). */
void hk_p11_logout_all(hk_p11_slot *sl);
/* A PIN as a NUL-terminated string (OPENSSL_clear_free it). */
CK_RV hk_p11_pin(const CK_UTF8CHAR *pin, CK_ULONG len, char **out);
/* The same for a PIN being set (C_SetPIN's new PIN, C_InitPIN): at least
 * HK_KS_PIN_MIN characters, where hk_p11_pin also accepts the shorter
 * PINs of tokens made by earlier versions (HK_KS_PIN_MIN_OLD). */
CK_RV hk_p11_new_pin(const CK_UTF8CHAR *pin, CK_ULONG len, char **out);
CK_RV hk_p11_session_get(CK_SESSION_HANDLE h, hk_p11_session **out);
void hk_p11_session_free(hk_p11_session *s);
void hk_p11_op_reset(hk_p11_op *op);
/* The hash of a CKM_ECDSA_SHA* (sign != 0) or CKM_SHA* mechanism by its
 * OpenSSL name, NULL for others; a context for it in the client core's own
 * library context (NULL: out of memory). */
const char *hk_p11_mech_md_name(CK_MECHANISM_TYPE m, int sign);
EVP_MD_CTX *hk_p11_md_new(const char *name);

/* op.c */
CK_RV hk_p11_op_init(hk_p11_op *op, const CK_MECHANISM *m, CK_OBJECT_HANDLE h);
/* Input of C_Sign / C_Verify (multi 0: the whole input, refused after an
 * update) or of C_SignUpdate / C_VerifyUpdate (multi 1). */
CK_RV hk_p11_op_update(hk_p11_op *op, const unsigned char *data, CK_ULONG len,
                       int multi);
CK_RV hk_p11_op_digest(hk_p11_op *op, unsigned char dig[EVP_MAX_MD_SIZE],
                       size_t *dlen);

/* object.c */
CK_OBJECT_HANDLE hk_p11_handle(CK_SLOT_ID slot, size_t idx, int priv);
/* The key behind a handle visible to session s (private keys need login);
 * *priv gets the class. CKR_OBJECT_HANDLE_INVALID otherwise. */
CK_RV hk_p11_object_get(hk_p11_session *s, CK_OBJECT_HANDLE h, hk_p11_key **key,
                        int *priv);
/* 1 if the key's private (priv) or public object is visible now. */
int hk_p11_key_visible(const hk_p11_slot *sl, const hk_p11_key *k, int priv);
/* Re-reads the slot's key list; returns the index of `label` or -1. */
long hk_p11_keys_refresh(hk_p11_slot *sl, const char *label);

/* store.c */
void hk_p11_store_reload(hk_p11_slot *sl);
void hk_p11_store_free(hk_p11_slot *sl);
hk_p11_obj *hk_p11_store_get(hk_p11_slot *sl, CK_OBJECT_HANDLE h);
int hk_p11_obj_hidden(hk_p11_obj *o);
/* Sets each key's CKA_ID from the hidden key-id objects. */
void hk_p11_store_key_ids(hk_p11_slot *sl);
/* Stores (or replaces) the hidden key-id object of key k. */
hk_err hk_p11_store_key_id(hk_p11_slot *sl, const hk_p11_key *k, const void *id,
                           size_t idlen);
/* One object in the record form (*buf: OPENSSL_malloc'd), and back (o's
 * values then point into buf). */
hk_err hk_p11_obj_pack(const hk_p11_obj *o, unsigned char **buf, size_t *len);
hk_err hk_p11_obj_unpack(const unsigned char *buf, size_t len, hk_p11_obj *o);
/* Removes the hidden key-id object of key k, if any. */
hk_err hk_p11_store_key_id_drop(hk_p11_slot *sl, const hk_p11_key *k);
/* Removes object `del` (0: none) and appends o (if not NULL; id 0: a new
 * id, set here), under the token lock; then reloads the slot's objects. */
hk_err hk_p11_store_edit(hk_p11_slot *sl, hk_p11_obj *o, uint32_t del,
                         int *found);

/* sessobj.c */
/* Adds a copy of o as a session object of session `owner`. */
CK_RV hk_p11_sobj_add(hk_p11_slot *sl, CK_SESSION_HANDLE owner, int priv,
                      const hk_p11_obj *o, CK_OBJECT_HANDLE *h);
CK_OBJECT_HANDLE hk_p11_sobj_handle(const hk_p11_slot *sl,
                                    const hk_p11_sobj *so);
int hk_p11_sobj_visible(const hk_p11_slot *sl, const hk_p11_sobj *so);
/* The visible session object behind h, or NULL. */
hk_p11_sobj *hk_p11_sobj_get(hk_p11_slot *sl, CK_OBJECT_HANDLE h);
CK_RV hk_p11_sobj_destroy(hk_p11_slot *sl, CK_OBJECT_HANDLE h);
/* Replaces so's attributes by (a copy of) o's. */
CK_RV hk_p11_sobj_replace(hk_p11_slot *sl, hk_p11_sobj *so,
                          const hk_p11_obj *o);
/* Frees the session objects of `owner` (0: all of the slot). */
void hk_p11_sobj_drop(hk_p11_slot *sl, CK_SESSION_HANDLE owner);
/* Frees the private session objects of every session (C_Logout). */
void hk_p11_sobj_drop_private(hk_p11_slot *sl);

/* objcreate.c */
/* The stored or session object behind h visible to s, or NULL; *so is
 * set for a session object (NULL for a stored one). */
hk_p11_obj *hk_p11_obj_lookup(hk_p11_session *s, CK_OBJECT_HANDLE h,
                              hk_p11_sobj **so);
/* CKR_OK if session s may change or destroy the object (so: its session
 * object, NULL for a stored one). */
CK_RV hk_p11_obj_may_change(hk_p11_session *s, const hk_p11_sobj *so);
CK_RV hk_p11_obj_get_attrs(hk_p11_obj *o, CK_ATTRIBUTE *tpl, CK_ULONG n);
int hk_p11_obj_match(hk_p11_obj *o, const CK_ATTRIBUTE *tpl, CK_ULONG n);

/* tpl.c */
#define HK_P11_TPL_MAX 1024 /* entries of one template */
/* One attribute value (a certificate's DER is far smaller; the token's
 * whole object record is at most HK_KS_OBJ_MAX). */
#define HK_P11_VALUE_MAX (256u * 1024u)
typedef enum {
    HK_P11_AK_UNKNOWN, /* not an attribute of this module */
    HK_P11_AK_BYTES,
    HK_P11_AK_BOOL,   /* CK_BBOOL: 1 byte, CK_TRUE or CK_FALSE */
    HK_P11_AK_ULONG,  /* CK_ULONG */
    HK_P11_AK_ULONGS, /* CK_ULONG array (CKA_ALLOWED_MECHANISMS) */
    HK_P11_AK_DATE,   /* CK_DATE, or empty */
} hk_p11_akind;
hk_p11_akind hk_p11_attr_kind(CK_ATTRIBUTE_TYPE t);
/* The template argument itself: CKR_ARGUMENTS_BAD for a count above
 * HK_P11_TPL_MAX or a NULL array with a count (output templates). */
CK_RV hk_p11_tpl_args(const CK_ATTRIBUTE *t, CK_ULONG n);
/* An input template: the argument, then every value against its
 * attribute's kind (CKR_ARGUMENTS_BAD: NULL value with a length;
 * CKR_ATTRIBUTE_TYPE_INVALID: unknown type; CKR_ATTRIBUTE_VALUE_INVALID:
 * wrong length or a boolean other than CK_TRUE/CK_FALSE), no type twice
 * (CKR_TEMPLATE_INCONSISTENT). */
CK_RV hk_p11_tpl_check(const CK_ATTRIBUTE *t, CK_ULONG n);
const CK_ATTRIBUTE *hk_p11_tpl_find(const CK_ATTRIBUTE *t, CK_ULONG n,
                                    CK_ATTRIBUTE_TYPE type);
/* Boolean `type` of a checked template (or object), dflt if absent. */
int hk_p11_tpl_bool(const CK_ATTRIBUTE *t, CK_ULONG n, CK_ATTRIBUTE_TYPE type,
                    int dflt);
/* CK_ULONG `type` into *out: 1, or 0 if absent or not a CK_ULONG. */
int hk_p11_tpl_ulong(const CK_ATTRIBUTE *t, CK_ULONG n, CK_ATTRIBUTE_TYPE type,
                     CK_ULONG *out);

/* attr.c */
CK_RV hk_p11_get_attrs(const hk_p11_key *k, int priv, CK_ATTRIBUTE *tpl,
                       CK_ULONG n);
#define HK_P11_ATTR_MAX 40
typedef struct {
    CK_ATTRIBUTE_TYPE type;
    const void *val;
    CK_ULONG len; /* CK_UNAVAILABLE_INFORMATION: sensitive */
} hk_p11_attr;

size_t hk_p11_attrs(const hk_p11_key *k, int priv, hk_p11_attr *out);
int hk_p11_match(const hk_p11_key *k, int priv, const CK_ATTRIBUTE *tpl,
                 CK_ULONG n);
/* verify.c: CKA_EC_POINT (DER OCTET STRING or bare) to the uncompressed
 * point; an EVP_PKEY for a point checked on the curve (NULL if not); a
 * public key object with CKA_VERIFY. */
int hk_p11_ec_point(const unsigned char *v, CK_ULONG len,
                    unsigned char pt[HK_POINT_UNCOMPRESSED_LEN]);
EVP_PKEY *hk_p11_ec_pkey(hk_curve_id curve,
                         const unsigned char pt[HK_POINT_UNCOMPRESSED_LEN]);
int hk_p11_obj_is_verify_key(hk_p11_obj *o);

/* object.c: keys of this curve are shown to the application (the
 * HALFKEY_PKCS11_CURVES / pkcs11_curves view). */
int hk_p11_curve_shown(const hk_p11_slot *sl, hk_curve_id curve);

/* The DER OID of the key's curve, or NULL. */
const unsigned char *hk_p11_curve_oid(hk_curve_id c, CK_ULONG *len);
int hk_p11_curve_from_oid(const unsigned char *der, CK_ULONG len,
                          hk_curve_id *out);

#endif
