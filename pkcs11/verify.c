/* Verification with the public key only: C_VerifyInit, C_Verify,
 * C_VerifyUpdate, C_VerifyFinal (OpenSSL EVP; signatures are r || s). */
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/param_build.h>
#include <string.h>

#include "common/libctx.h"
#include "pkcs11/hk_p11.h"

/* CKA_EC_POINT: a DER OCTET STRING holding the uncompressed point (or,
 * leniently, the bare point) into pt. */
int hk_p11_ec_point(const unsigned char *v, CK_ULONG len,
                    unsigned char pt[HK_POINT_UNCOMPRESSED_LEN])
{
    if (v != NULL && len == HK_POINT_UNCOMPRESSED_LEN + 2 && v[0] == 0x04 &&
        v[1] == HK_POINT_UNCOMPRESSED_LEN) {
        v += 2;
        len -= 2;
    }
    if (v == NULL || len != HK_POINT_UNCOMPRESSED_LEN || v[0] != 0x04)
        return 0;
    memcpy(pt, v, HK_POINT_UNCOMPRESSED_LEN);
    return 1;
}

EVP_PKEY *hk_p11_ec_pkey(hk_curve_id curve,
                         const unsigned char pt[HK_POINT_UNCOMPRESSED_LEN])
{
    const char *group = curve == HK_CURVE_P256 ? "prime256v1" : "secp256k1";
    OSSL_PARAM params[3];
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(hk_libctx(), "EC", NULL);
    EVP_PKEY *pk = NULL;

    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME,
                                                 (char *)group, 0);
    params[1] = OSSL_PARAM_construct_octet_string(
        OSSL_PKEY_PARAM_PUB_KEY, (void *)pt, HK_POINT_UNCOMPRESSED_LEN);
    params[2] = OSSL_PARAM_construct_end();
    if (ctx == NULL || EVP_PKEY_fromdata_init(ctx) != 1 ||
        EVP_PKEY_fromdata(ctx, &pk, EVP_PKEY_PUBLIC_KEY, params) != 1)
        pk = NULL;
    EVP_PKEY_CTX_free(ctx);
    if (pk != NULL) { /* the point is on the curve */
        ctx = EVP_PKEY_CTX_new_from_pkey(hk_libctx(), pk, NULL);
        if (ctx == NULL || EVP_PKEY_public_check(ctx) != 1) {
            EVP_PKEY_free(pk);
            pk = NULL;
        }
        EVP_PKEY_CTX_free(ctx);
    }
    return pk;
}

/* A public key object that allows verification. */
int hk_p11_obj_is_verify_key(hk_p11_obj *o)
{
    CK_ULONG cls;

    return hk_p11_tpl_ulong(o->a, o->n, CKA_CLASS, &cls) &&
           cls == CKO_PUBLIC_KEY && hk_p11_tpl_bool(o->a, o->n, CKA_VERIFY, 1);
}

/* The verification key behind handle h: a key of the keystore, or a
 * public key object (C_CreateObject) that allows CKA_VERIFY. */
static EVP_PKEY *hk_p11_verify_key(hk_p11_session *s, CK_OBJECT_HANDLE h)
{
    unsigned char pt[HK_POINT_UNCOMPRESSED_LEN];
    const CK_ATTRIBUTE *p, *q;
    hk_curve_id curve = 0;
    hk_p11_sobj *so;
    hk_p11_key *k;
    hk_p11_obj *o;
    int priv;

    if (hk_p11_object_get(s, h, &k, &priv) == CKR_OK)
        return hk_p11_ec_pkey(k->info.curve, k->point);
    if ((o = hk_p11_obj_lookup(s, h, &so)) == NULL ||
        !hk_p11_obj_is_verify_key(o) ||
        (p = hk_p11_tpl_find(o->a, o->n, CKA_EC_PARAMS)) == NULL ||
        (q = hk_p11_tpl_find(o->a, o->n, CKA_EC_POINT)) == NULL ||
        !hk_p11_curve_from_oid(p->pValue, p->ulValueLen, &curve) ||
        !hk_p11_ec_point(q->pValue, q->ulValueLen, pt))
        return NULL;
    return hk_p11_ec_pkey(curve, pt);
}

/* r || s as a DER ECDSA-Sig-Value; *der is OPENSSL_free'd by the caller. */
static int hk_p11_sig_der(const unsigned char *sig, unsigned char **der)
{
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(sig, 32, NULL), *s = BN_bin2bn(sig + 32, 32, NULL);
    int len = -1;

    if (es != NULL && r != NULL && s != NULL && ECDSA_SIG_set0(es, r, s)) {
        r = s = NULL;
        len = i2d_ECDSA_SIG(es, der);
    }
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(es);
    return len;
}

static CK_RV hk_p11_verify_finish(hk_p11_session *s, const CK_BYTE *sig,
                                  CK_ULONG slen)
{
    unsigned char dig[EVP_MAX_MD_SIZE], *der = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    EVP_PKEY *pk = NULL;
    size_t dlen = 0;
    int dlen_der, ok;
    CK_RV rv;

    if (sig == NULL)
        rv = CKR_ARGUMENTS_BAD;
    else if (slen != HK_P11_SIG_LEN)
        rv = CKR_SIGNATURE_LEN_RANGE;
    else if ((pk = hk_p11_verify_key(s, s->verify.key)) == NULL)
        rv = CKR_KEY_HANDLE_INVALID; /* destroyed meanwhile */
    else if ((rv = hk_p11_op_digest(&s->verify, dig, &dlen)) == CKR_OK) {
        rv = CKR_FUNCTION_FAILED;
        if ((dlen_der = hk_p11_sig_der(sig, &der)) > 0 &&
            (ctx = EVP_PKEY_CTX_new_from_pkey(hk_libctx(), pk, NULL)) != NULL &&
            EVP_PKEY_verify_init(ctx) == 1) {
            ok = EVP_PKEY_verify(ctx, der, (size_t)dlen_der, dig, dlen);
            rv = ok == 1 ? CKR_OK : CKR_SIGNATURE_INVALID;
        }
    }
    OPENSSL_free(der);
    EVP_PKEY_CTX_free(ctx);
    EVP_PKEY_free(pk);
    hk_p11_op_reset(&s->verify);
    return rv;
}

CK_RV C_VerifyInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism,
                   CK_OBJECT_HANDLE hKey)
{
    hk_p11_session *s;
    hk_p11_key *k;
    hk_p11_obj *o;
    hk_p11_sobj *so;
    CK_ULONG cls = 0;
    int priv;
    CK_RV rv;

    if ((rv = hk_p11_enter()) != CKR_OK)
        return rv;
    if ((rv = hk_p11_session_get(hSession, &s)) == CKR_OK && pMechanism == NULL)
        rv = CKR_ARGUMENTS_BAD;
    else if (rv == CKR_OK && hk_p11_object_get(s, hKey, &k, &priv) != CKR_OK) {
        if ((o = hk_p11_obj_lookup(s, hKey, &so)) == NULL ||
            (so != NULL && so->priv && !hk_p11.slots[s->slot].logged_in))
            rv = CKR_KEY_HANDLE_INVALID;
        else if (!hk_p11_obj_is_verify_key(o))
            rv = hk_p11_tpl_ulong(o->a, o->n, CKA_CLASS, &cls) &&
                         cls == CKO_PUBLIC_KEY
                     ? CKR_KEY_FUNCTION_NOT_PERMITTED
                     : CKR_KEY_HANDLE_INVALID;
    }
    if (rv == CKR_OK)
        rv = hk_p11_op_init(&s->verify, pMechanism, hKey);
    hk_p11_leave();
    return rv;
}

static CK_RV hk_p11_verify_active(CK_SESSION_HANDLE h, hk_p11_session **s)
{
    CK_RV rv = hk_p11_session_get(h, s);

    if (rv == CKR_OK && !(*s)->verify.active)
        rv = CKR_OPERATION_NOT_INITIALIZED;
    return rv;
}

CK_RV C_Verify(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pData,
               CK_ULONG ulDataLen, CK_BYTE_PTR pSignature,
               CK_ULONG ulSignatureLen)
{
    hk_p11_session *s;
    CK_RV rv;

    if ((rv = hk_p11_enter()) != CKR_OK)
        return rv;
    if ((rv = hk_p11_verify_active(hSession, &s)) != CKR_OK)
        goto done;
    if ((rv = hk_p11_op_update(&s->verify, pData, ulDataLen, 0)) != CKR_OK)
        hk_p11_op_reset(&s->verify);
    else
        rv = hk_p11_verify_finish(s, pSignature, ulSignatureLen);
done:
    hk_p11_leave();
    return rv;
}

CK_RV C_VerifyUpdate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart,
                     CK_ULONG ulPartLen)
{
    hk_p11_session *s;
    CK_RV rv;

    if ((rv = hk_p11_enter()) != CKR_OK)
        return rv;
    if ((rv = hk_p11_verify_active(hSession, &s)) == CKR_OK &&
        (rv = hk_p11_op_update(&s->verify, pPart, ulPartLen, 1)) != CKR_OK)
        hk_p11_op_reset(&s->verify);
    hk_p11_leave();
    return rv;
}

CK_RV C_VerifyFinal(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pSignature,
                    CK_ULONG ulSignatureLen)
{
    hk_p11_session *s;
    CK_RV rv;

    if ((rv = hk_p11_enter()) != CKR_OK)
        return rv;
    if ((rv = hk_p11_verify_active(hSession, &s)) == CKR_OK)
        rv = hk_p11_verify_finish(s, pSignature, ulSignatureLen);
    hk_p11_leave();
    return rv;
}
