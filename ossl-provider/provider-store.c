/* The store loader for halfkey: and pkcs11: URIs (provider-uri.c).
 *
 * Opening a URI opens the token (its directory from the URI, openssl.cnf,
 * or the environment) and lists the keys that match object= and id= (and
 * token=, the token's label), and the X.509 certificates stored on the
 * token (PKCS#11 C_CreateObject; keystore objects.bin) whose CKA_LABEL and
 * CKA_ID match. Loading yields, key by key, the private key and then the
 * public key, then the certificates (DER, data type "Certificate"), as
 * type= and OpenSSL's expectation allow; a
 * private key logs in to the token first, with the PIN from the first
 * source that has one: pin-value=, pin-source=, openssl.cnf
 * halfkey-pin-file, $HALFKEY_PIN, and last OpenSSL's passphrase callback.
 * A wrong PIN is reported and not asked again (each one counts towards the
 * token's lockout).
 *
 * Keys travel to the key manager by reference (the address of a key
 * object); there is no export_object, so the private half stays here. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/core_object.h>
#include <openssl/params.h>
#include <openssl/store.h>
#include <p11-kit/pkcs11.h>

#include "ossl-provider/provider.h"

typedef struct {
    hk_prov_ctx *pc;
    hk_prov_uri uri;
    int expect; /* OSSL_STORE_INFO_PKEY, _PUBKEY, or 0 */
    hk_prov_token *tok;
    char token_label[HK_KS_TOKEN_LABEL_MAX + 1];
    hk_ks_keyinfo *list;
    size_t n;
    unsigned char *objrec; /* the token's stored objects */
    hk_ks_obj *objs;
    size_t *certs; /* indexes into objs of the matching certificates */
    size_t ncerts;
    size_t next; /* 2 * key index + (0 private, 1 public); then
                  * 2 * n + certificate index */
    int logged_in;
    int failed; /* an error ended the listing */
} hk_store_ctx;

static void hk_store_free(hk_store_ctx *s)
{
    if (s == NULL)
        return;
    hk_ks_list_free(s->list);
    OPENSSL_free(s->certs);
    OPENSSL_free(s->objs);
    OPENSSL_free(s->objrec);
    hk_prov_token_free(s->tok);
    hk_prov_uri_clear(&s->uri);
    OPENSSL_free(s);
}

static int hk_store_match(const hk_store_ctx *s, const hk_ks_keyinfo *k)
{
    if (k->err != HK_OK)
        return 0;
    if (s->uri.object != NULL && strcmp(s->uri.object, k->label) != 0)
        return 0;
    if (s->uri.has_id &&
        (s->uri.id_bad || memcmp(s->uri.id, k->kid, HK_ID_LEN) != 0))
        return 0;
    return 1;
}

static const hk_ks_attr *hk_store_attr(const hk_ks_obj *o, uint64_t type)
{
    size_t i;

    for (i = 0; i < o->n; i++)
        if (o->a[i].type == type)
            return &o->a[i];
    return NULL;
}

static int hk_store_ulong_is(const hk_ks_attr *a, CK_ULONG v)
{
    CK_ULONG x;

    if (a == NULL || a->len != sizeof(x))
        return 0;
    memcpy(&x, a->val, sizeof(x)); /* host order, unaligned */
    return x == v;
}

/* An X.509 certificate object matching object= and id=. */
static int hk_store_cert_match(const hk_store_ctx *s, const hk_ks_obj *o)
{
    const hk_ks_attr *l = hk_store_attr(o, CKA_LABEL);
    const hk_ks_attr *id = hk_store_attr(o, CKA_ID);
    const char *ob = s->uri.object;

    if (!hk_store_ulong_is(hk_store_attr(o, CKA_CLASS), CKO_CERTIFICATE) ||
        !hk_store_ulong_is(hk_store_attr(o, CKA_CERTIFICATE_TYPE), CKC_X_509) ||
        hk_store_attr(o, CKA_VALUE) == NULL)
        return 0;
    if (ob != NULL &&
        (l == NULL || l->len != strlen(ob) || memcmp(l->val, ob, l->len) != 0))
        return 0;
    if (!s->uri.has_id)
        return 1;
    return id != NULL && ((id->len == s->uri.raw_id_len &&
                           memcmp(id->val, s->uri.raw_id, id->len) == 0) ||
                          (!s->uri.id_bad && id->len == HK_ID_LEN &&
                           memcmp(id->val, s->uri.id, HK_ID_LEN) == 0));
}

/* The token's certificates that match the URI (none unless type= allows
 * them). */
static hk_err hk_store_certs(hk_store_ctx *s)
{
    size_t len = 0, n = 0, i;
    uint32_t next;
    hk_err e;

    if (s->uri.type != HK_URI_ANY && s->uri.type != HK_URI_CERT)
        return HK_OK;
    if ((e = hk_ks_objects_load(hk_prov_token_ks(s->tok), &s->objrec, &len)) !=
            HK_OK ||
        (e = hk_ks_objects_parse(s->objrec, len, &next, &s->objs, &n)) != HK_OK)
        return e;
    if (n > 0 && (s->certs = OPENSSL_zalloc(n * sizeof(*s->certs))) == NULL)
        return HK_ERR_NOMEM;
    for (i = 0; i < n; i++)
        if (hk_store_cert_match(s, &s->objs[i]))
            s->certs[s->ncerts++] = i;
    return HK_OK;
}

/* A short description of what the URI asks for (never the PIN). */
static void hk_store_what(const hk_store_ctx *s, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s%s%s%s", s->uri.object != NULL ? "object=" : "",
             s->uri.object != NULL ? s->uri.object : "",
             s->uri.object != NULL && s->uri.has_id ? ";" : "",
             s->uri.has_id ? "id=..." : "");
    if (buf[0] == 0)
        snprintf(buf, cap, "any key");
}

static void *hk_store_open(void *provctx, const char *uri)
{
    hk_prov_ctx *pc = provctx;
    hk_store_ctx *s = NULL;
    hk_ks_tokeninfo ti;
    char why[256], what[128];
    hk_ks_keyinfo *all = NULL;
    size_t i, n = 0;
    hk_err e;
    int ok = 0;

    if ((s = OPENSSL_zalloc(sizeof(*s))) == NULL)
        return NULL;
    s->pc = pc;
    if (!hk_prov_uri_parse(uri, &s->uri, why)) {
        hk_prov_raise(pc, HK_R_URI, "%s", why);
        goto done;
    }
    if ((e = hk_prov_token_open(pc, s->uri.dir != NULL ? s->uri.dir : pc->dir,
                                &s->tok, why)) != HK_OK) {
        hk_prov_raise(pc, e == HK_ERR_NOMEM ? HK_R_NOMEM : HK_R_CONFIG,
                      "%s: %s", why[0] ? why : "opening the token",
                      hk_strerror(e));
        goto done;
    }
    if ((e = hk_ks_token_info(hk_prov_token_ks(s->tok), &ti)) != HK_OK ||
        (e = hk_ks_list(hk_prov_token_ks(s->tok), &all, &n)) != HK_OK) {
        hk_prov_raise_hk(pc, e, "reading the token");
        goto done;
    }
    snprintf(s->token_label, sizeof(s->token_label), "%s", ti.label);
    hk_store_what(s, what, sizeof(what));
    if (s->uri.token != NULL && strcmp(s->uri.token, ti.label) != 0) {
        hk_prov_raise(pc, HK_R_NOT_FOUND,
                      "no token labelled '%s' (the token at %s is '%s')",
                      s->uri.token, hk_ks_dir(hk_prov_token_ks(s->tok)),
                      ti.label);
        goto done;
    }
    for (i = 0; s->uri.type != HK_URI_CERT && i < n; i++)
        if (hk_store_match(s, &all[i]))
            all[s->n++] = all[i];
    if ((e = hk_store_certs(s)) != HK_OK) {
        hk_prov_raise_hk(pc, e, "reading the token's certificates");
        goto done;
    }
    if (s->n + s->ncerts == 0 || s->uri.type == HK_URI_OTHER) {
        hk_prov_raise(pc, HK_R_NOT_FOUND, "%s%s in token '%s' (%s)", what,
                      s->uri.type == HK_URI_OTHER ? " of that type" : "",
                      ti.label, hk_ks_dir(hk_prov_token_ks(s->tok)));
        goto done;
    }
    s->list = all;
    all = NULL;
    ok = 1;
done:
    hk_ks_list_free(all);
    if (!ok) {
        hk_store_free(s);
        s = NULL;
    }
    return s;
}

static const OSSL_PARAM *hk_store_settable_ctx_params(void *provctx)
{
    static const OSSL_PARAM t[] = {
        OSSL_PARAM_int(OSSL_STORE_PARAM_EXPECT, NULL), OSSL_PARAM_END};
    return t;
}

static int hk_store_set_ctx_params(void *ctx, const OSSL_PARAM params[])
{
    hk_store_ctx *s = ctx;
    const OSSL_PARAM *p;

    p = OSSL_PARAM_locate_const(params, OSSL_STORE_PARAM_EXPECT);
    return p == NULL || OSSL_PARAM_get_int(p, &s->expect);
}

/* Reads the first line of a PIN file, which only its owner may read. */
static int hk_store_pin_file(hk_store_ctx *s, const char *path, char *pin,
                             size_t cap)
{
    struct stat st;
    ssize_t r;
    int fd, ok = 0;

    if (strncmp(path, "file://", 7) == 0) /* RFC 8089: file:///path */
        path += 7;
    else if (strncmp(path, "file:", 5) == 0)
        path += 5;
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
        hk_prov_raise(s->pc, HK_R_PIN_SOURCE, "%s: %s", path, strerror(errno));
        return 0;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        hk_prov_raise(s->pc, HK_R_PIN_SOURCE, "%s: not a regular file", path);
        goto done;
    }
    if (st.st_mode & 077) {
        hk_prov_raise(s->pc, HK_R_PIN_SOURCE,
                      "%s: readable by others (chmod 600 it)", path);
        goto done;
    }
    if ((r = read(fd, pin, cap - 1)) < 0) {
        hk_prov_raise(s->pc, HK_R_PIN_SOURCE, "%s: %s", path, strerror(errno));
        goto done;
    }
    pin[r] = 0;
    pin[strcspn(pin, "\r\n")] = 0;
    ok = 1;
done:
    close(fd);
    return ok;
}

/* The PIN from the first source that has one; 0 (error raised) if none. */
static int hk_store_pin(hk_store_ctx *s, OSSL_PASSPHRASE_CALLBACK *cb,
                        void *cbarg, char *pin, size_t cap)
{
    char info[128];
    const char *env = getenv("HALFKEY_PIN");
    OSSL_PARAM p[2];
    size_t len = 0;

    pin[0] = 0;
    if (s->uri.pin_value != NULL)
        snprintf(pin, cap, "%s", s->uri.pin_value);
    else if (s->uri.pin_source != NULL)
        return hk_store_pin_file(s, s->uri.pin_source, pin, cap);
    else if (s->pc->pin_file != NULL)
        return hk_store_pin_file(s, s->pc->pin_file, pin, cap);
    else if (env != NULL && env[0] != 0)
        snprintf(pin, cap, "%s", env);
    else if (cb != NULL) {
        snprintf(info, sizeof(info), "halfkey token '%s' (user PIN)",
                 s->token_label);
        p[0] = OSSL_PARAM_construct_utf8_string(OSSL_PASSPHRASE_PARAM_INFO,
                                                info, 0);
        p[1] = OSSL_PARAM_construct_end();
        if (!cb(pin, cap - 1, &len, p, cbarg))
            len = 0;
        pin[len] = 0;
    }
    if (pin[0] == 0) {
        hk_prov_raise(s->pc, HK_R_NO_PIN,
                      "for halfkey token '%s' (pin-value=, pin-source=, "
                      "halfkey-pin-file, $HALFKEY_PIN or a prompt)",
                      s->token_label);
        return 0;
    }
    return 1;
}

static int hk_store_login(hk_store_ctx *s, OSSL_PASSPHRASE_CALLBACK *cb,
                          void *cbarg)
{
    char pin[HK_KS_PIN_MAX + 2];
    hk_ks *ks = hk_prov_token_ks(s->tok);
    hk_ks_tokeninfo ti;
    hk_err e;

    if (s->logged_in)
        return 1;
    if (!hk_store_pin(s, cb, cbarg, pin, sizeof(pin))) {
        OPENSSL_cleanse(pin, sizeof(pin));
        return 0;
    }
    e = hk_ks_login(ks, pin);
    OPENSSL_cleanse(pin, sizeof(pin));
    if (e == HK_ERR_PIN && hk_ks_token_info(ks, &ti) == HK_OK)
        hk_prov_raise(s->pc, HK_R_PIN,
                      "for halfkey token '%s' (%lu of %lu tries used)",
                      s->token_label, ti.pin_fails, ti.pin_max_fails);
    else if (e == HK_ERR_PIN_LOCKED)
        hk_prov_raise(s->pc, HK_R_PIN_LOCKED, "halfkey token '%s'",
                      s->token_label);
    else if (e != HK_OK)
        hk_prov_raise_hk(s->pc, e, "login");
    s->logged_in = e == HK_OK;
    return s->logged_in;
}

static int hk_store_verify(hk_store_ctx *s, const char *label,
                           hk_ks_keyinfo *out)
{
    hk_err e = hk_ks_key_info(hk_prov_token_ks(s->tok), label, out);

    if (e == HK_OK && out->verified)
        return 1;
    hk_prov_raise_hk(s->pc, e != HK_OK ? e : HK_ERR_SEAL, label);
    return 0;
}

/* Whether slot i (a key's private or public half, or a certificate) is
 * to be yielded. */
static int hk_store_wanted(const hk_store_ctx *s, size_t i)
{
    int pub = (int)(i & 1);

    if (i >= 2 * s->n)
        return (s->uri.type == HK_URI_ANY || s->uri.type == HK_URI_CERT) &&
               (s->expect == 0 || s->expect == OSSL_STORE_INFO_CERT);
    if (pub)
        return (s->uri.type == HK_URI_ANY || s->uri.type == HK_URI_PUBLIC) &&
               (s->expect == 0 || s->expect == OSSL_STORE_INFO_PUBKEY);
    return (s->uri.type == HK_URI_ANY || s->uri.type == HK_URI_PRIVATE) &&
           (s->expect == 0 || s->expect == OSSL_STORE_INFO_PKEY);
}

/* Yields certificate i as DER. */
static int hk_store_load_cert(hk_store_ctx *s, size_t i, OSSL_CALLBACK *cb,
                              void *cbarg)
{
    const hk_ks_obj *o = &s->objs[s->certs[i]];
    const hk_ks_attr *v = hk_store_attr(o, CKA_VALUE);
    const hk_ks_attr *l = hk_store_attr(o, CKA_LABEL);
    int type = OSSL_OBJECT_CERT, ok;
    char desc[96];
    OSSL_PARAM p[5];

    snprintf(desc, sizeof(desc), "halfkey certificate '%.*s'",
             l != NULL && l->len < 64 ? (int)l->len : 0,
             l != NULL ? (const char *)l->val : "");
    p[0] = OSSL_PARAM_construct_int(OSSL_OBJECT_PARAM_TYPE, &type);
    p[1] = OSSL_PARAM_construct_utf8_string(OSSL_OBJECT_PARAM_DATA_TYPE,
                                            (char *)"Certificate", 0);
    p[2] = OSSL_PARAM_construct_octet_string(OSSL_OBJECT_PARAM_DATA,
                                             (void *)v->val, v->len);
    p[3] = OSSL_PARAM_construct_utf8_string(OSSL_OBJECT_PARAM_DESC, desc, 0);
    p[4] = OSSL_PARAM_construct_end();
    if (!(ok = cb(p, cbarg)))
        s->failed = 1;
    return ok;
}

static int hk_store_load(void *ctx, OSSL_CALLBACK *object_cb,
                         void *object_cbarg, OSSL_PASSPHRASE_CALLBACK *pw_cb,
                         void *pw_cbarg)
{
    hk_store_ctx *s = ctx;
    const hk_ks_keyinfo *info;
    hk_ks_keyinfo fresh;
    hk_prov_key *key = NULL;
    int type = OSSL_OBJECT_PKEY, pub, ok = 0;
    char desc[HK_KS_LABEL_MAX + 48];
    OSSL_PARAM p[5];

    while (s->next < 2 * s->n + s->ncerts && !hk_store_wanted(s, s->next))
        s->next++;
    if (s->failed || s->next >= 2 * s->n + s->ncerts)
        return 0;
    if (s->next >= 2 * s->n)
        return hk_store_load_cert(s, s->next++ - 2 * s->n, object_cb,
                                  object_cbarg);
    info = &s->list[s->next / 2];
    pub = (int)(s->next & 1);
    s->next++;
    /* A private key's metadata is read again once logged in: then the
     * key file is authenticated under the PIN (verified = 1). */
    if (!pub && (!hk_store_login(s, pw_cb, pw_cbarg) ||
                 !hk_store_verify(s, info->label, &fresh)))
        goto done;
    if ((key = hk_prov_key_from_info(s->pc, pub ? info : &fresh,
                                     pub ? NULL : s->tok)) == NULL) {
        hk_prov_raise(s->pc, HK_R_KEY, "key '%s'", info->label);
        goto done;
    }
    snprintf(desc, sizeof(desc), "halfkey %s key '%s'",
             pub ? "public" : "private", info->label);
    p[0] = OSSL_PARAM_construct_int(OSSL_OBJECT_PARAM_TYPE, &type);
    p[1] =
        OSSL_PARAM_construct_utf8_string(OSSL_OBJECT_PARAM_DATA_TYPE, "EC", 0);
    p[2] = OSSL_PARAM_construct_octet_string(OSSL_OBJECT_PARAM_REFERENCE, &key,
                                             sizeof(key));
    p[3] = OSSL_PARAM_construct_utf8_string(OSSL_OBJECT_PARAM_DESC, desc, 0);
    p[4] = OSSL_PARAM_construct_end();
    ok = object_cb(p, object_cbarg);
done:
    hk_prov_key_free(key); /* NULL unless the key manager did not take it */
    if (!ok)
        s->failed = 1;
    return ok;
}

static int hk_store_eof(void *ctx)
{
    hk_store_ctx *s = ctx;
    size_t i = s->next;

    while (i < 2 * s->n + s->ncerts && !hk_store_wanted(s, i))
        i++;
    return s->failed || i >= 2 * s->n + s->ncerts;
}

static int hk_store_close(void *ctx)
{
    hk_store_free(ctx);
    return 1;
}

const OSSL_DISPATCH hk_prov_store_functions[] = {
    {OSSL_FUNC_STORE_OPEN, (void (*)(void))hk_store_open},
    {OSSL_FUNC_STORE_SETTABLE_CTX_PARAMS,
     (void (*)(void))hk_store_settable_ctx_params},
    {OSSL_FUNC_STORE_SET_CTX_PARAMS, (void (*)(void))hk_store_set_ctx_params},
    {OSSL_FUNC_STORE_LOAD, (void (*)(void))hk_store_load},
    {OSSL_FUNC_STORE_EOF, (void (*)(void))hk_store_eof},
    {OSSL_FUNC_STORE_CLOSE, (void (*)(void))hk_store_close},
    {0, NULL}};
