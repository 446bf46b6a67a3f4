/* ECDSA with a halfkey key: on a digest (EVP_PKEY_sign, `openssl pkeyutl
 * -sign`) and digest-sign (EVP_DigestSign*, `openssl dgst -sign`, X.509,
 * TLS). The digest is hashed here with the application's digests; the
 * signature is a two-party signing session run by the client core, which
 * checks it against the public key before returning it. Output is a DER
 * ECDSA-Sig-Value (low-S).
 *
 * Verification is not ours to do: it is handed to the other providers of
 * the application (the default provider) with the public half. */
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "ossl-provider/provider.h"

#define HK_SIG_OTHERS HK_PROV_NOT_OURS

typedef struct {
    hk_prov_ctx *pc;
    hk_prov_key *key; /* the operation's key (owned by the EVP_PKEY) */
    int verify;
    EVP_MD *md;        /* NULL: any digest length (pkeyutl) */
    EVP_MD_CTX *mdctx; /* digest-sign / digest-verify */
    char *propq;
    EVP_PKEY *vkey; /* verification: the public half, other providers */
} hk_sig_ctx;

/* ecdsa-with-<digest>: DER AlgorithmIdentifier (no parameters). */
static const struct {
    const char *name;
    unsigned char aid[14];
    size_t len;
} hk_sig_algs[] = {
    {"SHA1",
     {0x30, 0x09, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x01},
     11},
    {"SHA2-224",
     {0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x01},
     12},
    {"SHA2-256",
     {0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02},
     12},
    {"SHA2-384",
     {0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03},
     12},
    {"SHA2-512",
     {0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04},
     12},
    {"SHA3-224",
     {0x30, 0x0b, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x03,
      0x09},
     13},
    {"SHA3-256",
     {0x30, 0x0b, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x03,
      0x0a},
     13},
    {"SHA3-384",
     {0x30, 0x0b, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x03,
      0x0b},
     13},
    {"SHA3-512",
     {0x30, 0x0b, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x03,
      0x0c},
     13}};

#define HK_SIG_NALGS (sizeof(hk_sig_algs) / sizeof(hk_sig_algs[0]))

/* The index of md in hk_sig_algs, or -1. */
static int hk_sig_alg(const EVP_MD *md)
{
    size_t i;

    for (i = 0; md != NULL && i < HK_SIG_NALGS; i++)
        if (EVP_MD_is_a(md, hk_sig_algs[i].name))
            return (int)i;
    return -1;
}

static void *hk_sig_newctx(void *provctx, const char *propq)
{
    hk_sig_ctx *s = OPENSSL_zalloc(sizeof(*s));

    if (s == NULL)
        return NULL;
    s->pc = provctx;
    if (propq != NULL && (s->propq = OPENSSL_strdup(propq)) == NULL) {
        OPENSSL_free(s);
        return NULL;
    }
    return s;
}

static void hk_sig_freectx(void *ctx)
{
    hk_sig_ctx *s = ctx;

    if (s == NULL)
        return;
    EVP_MD_free(s->md);
    EVP_MD_CTX_free(s->mdctx);
    EVP_PKEY_free(s->vkey);
    OPENSSL_free(s->propq);
    OPENSSL_free(s);
}

static void *hk_sig_dupctx(void *ctx)
{
    hk_sig_ctx *s = ctx, *d;

    if ((d = OPENSSL_zalloc(sizeof(*d))) == NULL)
        return NULL;
    *d = *s;
    d->md = NULL;
    d->mdctx = NULL;
    d->propq = NULL;
    d->vkey = NULL;
    if ((s->propq != NULL && (d->propq = OPENSSL_strdup(s->propq)) == NULL) ||
        (s->md != NULL && !EVP_MD_up_ref(s->md)) ||
        (s->vkey != NULL && !EVP_PKEY_up_ref(s->vkey)))
        goto fail;
    d->md = s->md;
    d->vkey = s->vkey;
    if (s->mdctx != NULL && ((d->mdctx = EVP_MD_CTX_new()) == NULL ||
                             !EVP_MD_CTX_copy_ex(d->mdctx, s->mdctx)))
        goto fail;
    return d;
fail:
    hk_sig_freectx(d);
    return NULL;
}

static int hk_sig_set_md(hk_sig_ctx *s, const char *name, const char *props)
{
    EVP_MD *md;

    if (name == NULL || name[0] == 0)
        name = "SHA256";
    md = EVP_MD_fetch(s->pc->libctx, name, props != NULL ? props : s->propq);
    if (md == NULL || hk_sig_alg(md) < 0) {
        hk_prov_raise(s->pc, HK_R_DIGEST, "digest %.40s for ECDSA", name);
        EVP_MD_free(md);
        return 0;
    }
    EVP_MD_free(s->md);
    s->md = md;
    return 1;
}

/* For verification: the public half as a key of the other providers. */
static int hk_sig_vkey(hk_sig_ctx *s)
{
    EVP_PKEY_CTX *c = NULL;
    OSSL_PARAM p[3];
    int ok;

    p[0] = OSSL_PARAM_construct_utf8_string(
        OSSL_PKEY_PARAM_GROUP_NAME, (char *)hk_prov_group_name(s->key->curve),
        0);
    p[1] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY,
                                             s->key->pub, sizeof(s->key->pub));
    p[2] = OSSL_PARAM_construct_end();
    ok = (c = EVP_PKEY_CTX_new_from_name(s->pc->libctx, "EC", HK_SIG_OTHERS)) !=
             NULL &&
         EVP_PKEY_fromdata_init(c) == 1 &&
         EVP_PKEY_fromdata(c, &s->vkey, EVP_PKEY_PUBLIC_KEY, p) == 1;
    EVP_PKEY_CTX_free(c);
    if (!ok)
        hk_prov_raise(s->pc, HK_R_KEY, "no other provider verifies EC keys");
    return ok;
}

static int hk_sig_set_ctx_params(void *ctx, const OSSL_PARAM params[]);

/* A NULL key re-initialises with the key (and digest) already set. */
static int hk_sig_init(hk_sig_ctx *s, void *provkey, int verify,
                       const OSSL_PARAM params[])
{
    hk_prov_key *k = provkey != NULL ? provkey : s->key;

    if (k == NULL || k->curve == 0) {
        hk_prov_raise(s->pc, HK_R_KEY, "no key for ECDSA");
        return 0;
    }
    if (!verify && k->tok == NULL) {
        hk_prov_raise(s->pc, HK_R_PUBLIC_ONLY,
                      "cannot sign with a public key (load the key with "
                      "type=private)");
        return 0;
    }
    if (k != s->key || verify != s->verify) {
        EVP_PKEY_free(s->vkey);
        s->vkey = NULL;
    }
    s->key = k;
    s->verify = verify;
    if (verify && s->vkey == NULL && !hk_sig_vkey(s))
        return 0;
    EVP_MD_CTX_free(s->mdctx);
    s->mdctx = NULL;
    return hk_sig_set_ctx_params(s, params);
}

static int hk_sig_sign_init(void *ctx, void *provkey, const OSSL_PARAM p[])
{
    return hk_sig_init(ctx, provkey, 0, p);
}

static int hk_sig_verify_init(void *ctx, void *provkey, const OSSL_PARAM p[])
{
    return hk_sig_init(ctx, provkey, 1, p);
}

/* r || s to a DER ECDSA-Sig-Value. */
static int hk_sig_der(hk_sig_ctx *s, const unsigned char rs[HK_SIG_LEN],
                      unsigned char *out, size_t *outlen, size_t outsize)
{
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(rs, 32, NULL), *v = BN_bin2bn(rs + 32, 32, NULL);
    unsigned char *der = NULL;
    int len = -1, ok = 0;

    if (es == NULL || r == NULL || v == NULL || !ECDSA_SIG_set0(es, r, v))
        goto done;
    r = v = NULL;
    if ((len = i2d_ECDSA_SIG(es, &der)) <= 0)
        goto done;
    if ((size_t)len > outsize) {
        hk_prov_raise(s->pc, HK_R_BUFFER, "signature buffer of %zu bytes",
                      outsize);
        goto done;
    }
    memcpy(out, der, (size_t)len);
    *outlen = (size_t)len;
    ok = 1;
done:
    if (!ok && len <= 0)
        hk_prov_raise(s->pc, HK_R_INTERNAL, "encoding the signature");
    OPENSSL_free(der);
    BN_free(r);
    BN_free(v);
    ECDSA_SIG_free(es);
    return ok;
}

static int hk_sig_sign(void *ctx, unsigned char *sig, size_t *siglen,
                       size_t sigsize, const unsigned char *tbs, size_t tbslen)
{
    hk_sig_ctx *s = ctx;
    unsigned char rs[HK_SIG_LEN];
    int ok;

    if (sig == NULL) {
        *siglen = HK_PROV_SIG_MAX;
        return 1;
    }
    if ((s->md != NULL && tbslen != (size_t)EVP_MD_get_size(s->md)) ||
        tbslen < 1 || tbslen > HK_DIGEST_MAX) {
        hk_prov_raise(s->pc, HK_R_DIGEST, "a digest of %zu bytes", tbslen);
        return 0;
    }
    ok = hk_prov_key_sign(s->key, tbs, tbslen, rs) &&
         hk_sig_der(s, rs, sig, siglen, sigsize);
    OPENSSL_cleanse(rs, sizeof(rs));
    return ok;
}

static int hk_sig_verify(void *ctx, const unsigned char *sig, size_t siglen,
                         const unsigned char *tbs, size_t tbslen)
{
    hk_sig_ctx *s = ctx;
    EVP_PKEY_CTX *c;
    int r;

    c = EVP_PKEY_CTX_new_from_pkey(s->pc->libctx, s->vkey, HK_SIG_OTHERS);
    r = c != NULL && EVP_PKEY_verify_init(c) == 1 &&
        EVP_PKEY_verify(c, sig, siglen, tbs, tbslen) == 1;
    EVP_PKEY_CTX_free(c);
    return r;
}

static int hk_sig_digest_init(void *ctx, const char *mdname, void *provkey,
                              const OSSL_PARAM params[], int verify)
{
    hk_sig_ctx *s = ctx;

    if (!hk_sig_init(s, provkey, verify, params) ||
        ((s->md == NULL || (mdname != NULL && mdname[0] != 0)) &&
         !hk_sig_set_md(s, mdname, NULL)) ||
        (s->mdctx = EVP_MD_CTX_new()) == NULL)
        return 0;
    return EVP_DigestInit_ex2(s->mdctx, s->md, NULL);
}

static int hk_sig_digest_sign_init(void *ctx, const char *mdname, void *provkey,
                                   const OSSL_PARAM params[])
{
    return hk_sig_digest_init(ctx, mdname, provkey, params, 0);
}

static int hk_sig_digest_verify_init(void *ctx, const char *mdname,
                                     void *provkey, const OSSL_PARAM params[])
{
    return hk_sig_digest_init(ctx, mdname, provkey, params, 1);
}

static int hk_sig_digest_update(void *ctx, const unsigned char *data,
                                size_t len)
{
    hk_sig_ctx *s = ctx;

    return s->mdctx != NULL && EVP_DigestUpdate(s->mdctx, data, len);
}

static int hk_sig_digest_sign_final(void *ctx, unsigned char *sig,
                                    size_t *siglen, size_t sigsize)
{
    hk_sig_ctx *s = ctx;
    unsigned char dig[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;

    if (sig == NULL) {
        *siglen = HK_PROV_SIG_MAX;
        return 1;
    }
    if (s->mdctx == NULL || !EVP_DigestFinal_ex(s->mdctx, dig, &dlen))
        return 0;
    return hk_sig_sign(s, sig, siglen, sigsize, dig, dlen);
}

static int hk_sig_digest_verify_final(void *ctx, const unsigned char *sig,
                                      size_t siglen)
{
    hk_sig_ctx *s = ctx;
    unsigned char dig[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;

    if (s->mdctx == NULL || !EVP_DigestFinal_ex(s->mdctx, dig, &dlen))
        return 0;
    return hk_sig_verify(s, sig, siglen, dig, dlen);
}

static const OSSL_PARAM *hk_sig_gettable_ctx_params(void *ctx, void *provctx)
{
    static const OSSL_PARAM t[] = {
        OSSL_PARAM_octet_string(OSSL_SIGNATURE_PARAM_ALGORITHM_ID, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, NULL, 0),
        OSSL_PARAM_size_t(OSSL_SIGNATURE_PARAM_DIGEST_SIZE, NULL),
        OSSL_PARAM_END};
    return t;
}

static int hk_sig_get_ctx_params(void *ctx, OSSL_PARAM params[])
{
    hk_sig_ctx *s = ctx;
    OSSL_PARAM *p;
    int i = hk_sig_alg(s->md);

    p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_ALGORITHM_ID);
    if (p != NULL && (i < 0 || !OSSL_PARAM_set_octet_string(
                                   p, hk_sig_algs[i].aid, hk_sig_algs[i].len)))
        return 0;
    p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_DIGEST);
    if (p != NULL && (s->md == NULL ||
                      !OSSL_PARAM_set_utf8_string(p, EVP_MD_get0_name(s->md))))
        return 0;
    p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_DIGEST_SIZE);
    if (p != NULL && (s->md == NULL || !OSSL_PARAM_set_size_t(
                                           p, (size_t)EVP_MD_get_size(s->md))))
        return 0;
    return 1;
}

static const OSSL_PARAM *hk_sig_settable_ctx_params(void *ctx, void *provctx)
{
    static const OSSL_PARAM t[] = {
        OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PROPERTIES, NULL, 0),
        OSSL_PARAM_END};
    return t;
}

static int hk_sig_set_ctx_params(void *ctx, const OSSL_PARAM params[])
{
    hk_sig_ctx *s = ctx;
    const OSSL_PARAM *p;
    const char *name = NULL, *props = NULL;

    if (params == NULL)
        return 1;
    p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_PROPERTIES);
    if (p != NULL && !OSSL_PARAM_get_utf8_string_ptr(p, &props))
        return 0;
    p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_DIGEST);
    if (p == NULL)
        return 1;
    if (!OSSL_PARAM_get_utf8_string_ptr(p, &name))
        return 0;
    if (s->mdctx != NULL) /* digest-sign: the digest was fixed at init */
        return s->md != NULL && EVP_MD_is_a(s->md, name);
    return hk_sig_set_md(s, name, props);
}

const OSSL_DISPATCH hk_prov_signature_functions[] = {
    {OSSL_FUNC_SIGNATURE_NEWCTX, (void (*)(void))hk_sig_newctx},
    {OSSL_FUNC_SIGNATURE_FREECTX, (void (*)(void))hk_sig_freectx},
    {OSSL_FUNC_SIGNATURE_DUPCTX, (void (*)(void))hk_sig_dupctx},
    {OSSL_FUNC_SIGNATURE_SIGN_INIT, (void (*)(void))hk_sig_sign_init},
    {OSSL_FUNC_SIGNATURE_SIGN, (void (*)(void))hk_sig_sign},
    {OSSL_FUNC_SIGNATURE_VERIFY_INIT, (void (*)(void))hk_sig_verify_init},
    {OSSL_FUNC_SIGNATURE_VERIFY, (void (*)(void))hk_sig_verify},
    {OSSL_FUNC_SIGNATURE_DIGEST_SIGN_INIT,
     (void (*)(void))hk_sig_digest_sign_init},
    {OSSL_FUNC_SIGNATURE_DIGEST_SIGN_UPDATE,
     (void (*)(void))hk_sig_digest_update},
    {OSSL_FUNC_SIGNATURE_DIGEST_SIGN_FINAL,
     (void (*)(void))hk_sig_digest_sign_final},
    {OSSL_FUNC_SIGNATURE_DIGEST_VERIFY_INIT,
     (void (*)(void))hk_sig_digest_verify_init},
    {OSSL_FUNC_SIGNATURE_DIGEST_VERIFY_UPDATE,
     (void (*)(void))hk_sig_digest_update},
    {OSSL_FUNC_SIGNATURE_DIGEST_VERIFY_FINAL,
     (void (*)(void))hk_sig_digest_verify_final},
    {OSSL_FUNC_SIGNATURE_GET_CTX_PARAMS, (void (*)(void))hk_sig_get_ctx_params},
    {OSSL_FUNC_SIGNATURE_GETTABLE_CTX_PARAMS,
     (void (*)(void))hk_sig_gettable_ctx_params},
    {OSSL_FUNC_SIGNATURE_SET_CTX_PARAMS, (void (*)(void))hk_sig_set_ctx_params},
    {OSSL_FUNC_SIGNATURE_SETTABLE_CTX_PARAMS,
     (void (*)(void))hk_sig_settable_ctx_params},
    {0, NULL}};
