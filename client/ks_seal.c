/* Keystore sealing: scrypt, HKDF-SHA256 and AES-256-GCM (OpenSSL 3). */
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>

#include "common/libctx.h"
#include "client/ks_impl.h"
#include "common/aead.h"

#define HK_KS_SCRYPT_MEM_MAX (256ull * 1024 * 1024)

/* OpenSSL's scrypt needs 128*r*(N + 2 + p) bytes. */
static uint64_t hk_ks_kdf_mem(const hk_ks_kdf *p)
{
    return 128ull * p->r * ((1ull << p->log2n) + 2 + p->p);
}

void hk_ks_kdf_default(hk_ks_kdf *out)
{
    const char *v = secure_getenv("HALFKEY_INSECURE_SCRYPT_LOG2N");
    char *end;
    unsigned long n;

    out->log2n = HK_KS_SCRYPT_LOG2N;
    out->r = 8;
    out->p = 1;
    if (v == NULL || v[0] == 0)
        return;
    n = strtoul(v, &end, 10);
    if (*end == 0 && n >= 10 && n < HK_KS_SCRYPT_LOG2N)
        out->log2n = n;
}

int hk_ks_kdf_weaker(const hk_ks_kdf *a, const hk_ks_kdf *b)
{
    return (128ull << a->log2n) * a->r < (128ull << b->log2n) * b->r;
}

int hk_ks_kdf_ok(const hk_ks_kdf *p)
{
    return p != NULL && p->log2n >= 10 && p->log2n <= 20 && p->r >= 1 &&
           p->r <= 32 && p->p >= 1 && p->p <= 16 &&
           hk_ks_kdf_mem(p) <= HK_KS_SCRYPT_MEM_MAX;
}

hk_err hk_ks_scrypt(const char *pin, const unsigned char *salt,
                    const hk_ks_kdf *p, unsigned char mk[HK_KS_KEY_LEN])
{
    if (pin == NULL || salt == NULL || mk == NULL || !hk_ks_kdf_ok(p))
        return HK_ERR_ARG;
    if (EVP_PBE_scrypt_ex(pin, strlen(pin), salt, HK_KS_SALT_LEN,
                          (uint64_t)1 << p->log2n, p->r, p->p,
                          hk_ks_kdf_mem(p) + 4096, mk, HK_KS_KEY_LEN,
                          hk_libctx(), NULL) != 1)
        return HK_ERR_CRYPTO;
    return HK_OK;
}

hk_err hk_ks_hkdf(const unsigned char mk[HK_KS_KEY_LEN], const char *label,
                  const unsigned char *ctx, size_t ctxlen,
                  unsigned char out[HK_KS_KEY_LEN])
{
    unsigned char info[128];
    size_t llen, ilen;
    OSSL_PARAM params[4];
    EVP_KDF *kdf = NULL;
    EVP_KDF_CTX *kctx = NULL;
    hk_err e = HK_ERR_ARG;

    if (mk == NULL || label == NULL || out == NULL ||
        (ctx == NULL && ctxlen > 0))
        return HK_ERR_ARG;
    llen = strlen(label);
    if (llen + 1 + ctxlen > sizeof(info))
        return HK_ERR_ARG;
    memcpy(info, label, llen + 1); /* label, 0, ctx */
    if (ctxlen > 0)
        memcpy(info + llen + 1, ctx, ctxlen);
    ilen = llen + 1 + ctxlen;
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST,
                                                 (char *)"SHA256", 0);
    params[1] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY,
                                                  (void *)mk, HK_KS_KEY_LEN);
    params[2] =
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info, ilen);
    params[3] = OSSL_PARAM_construct_end();
    e = HK_ERR_CRYPTO;
    if ((kdf = EVP_KDF_fetch(hk_libctx(), "HKDF", NULL)) == NULL ||
        (kctx = EVP_KDF_CTX_new(kdf)) == NULL ||
        EVP_KDF_derive(kctx, out, HK_KS_KEY_LEN, params) != 1)
        goto done;
    e = HK_OK;
done:
    EVP_KDF_CTX_free(kctx);
    EVP_KDF_free(kdf);
    return e;
}

void hk_ks_aad_init(hk_ks_aad *a, const char *tag)
{
    a->len = 0;
    a->overflow = 0;
    hk_ks_aad_str(a, tag);
}

void hk_ks_aad_add(hk_ks_aad *a, const void *data, size_t len)
{
    if (a->overflow || len > sizeof(a->b) - 4 ||
        a->len > sizeof(a->b) - 4 - len) {
        a->overflow = 1;
        return;
    }
    a->b[a->len++] = (unsigned char)(len >> 24);
    a->b[a->len++] = (unsigned char)(len >> 16);
    a->b[a->len++] = (unsigned char)(len >> 8);
    a->b[a->len++] = (unsigned char)len;
    if (len > 0)
        memcpy(a->b + a->len, data, len);
    a->len += len;
}

void hk_ks_aad_str(hk_ks_aad *a, const char *s)
{
    hk_ks_aad_add(a, s, strlen(s));
}

void hk_ks_aad_u64(hk_ks_aad *a, uint64_t v)
{
    unsigned char b[8];
    int i;

    for (i = 7; i >= 0; i--, v >>= 8)
        b[i] = (unsigned char)v;
    hk_ks_aad_add(a, b, sizeof(b));
}
