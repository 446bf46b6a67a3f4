/* AES-256-GCM sealing (aead.h), on OpenSSL's EVP interface in halfkey's
 * own library context (libctx.h): a host's providers never see the keys. */
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "common/aead.h"
#include "common/libctx.h"

/* An AES-256-GCM context for key and nonce, with the associated data. */
static hk_err hk_aead_start(EVP_CIPHER_CTX *c, int enc,
                            const unsigned char *key,
                            const unsigned char *nonce,
                            const unsigned char *aad, size_t aadlen)
{
    int n;

    if (hk_cipher_aes256gcm() == NULL ||
        EVP_CipherInit_ex(c, hk_cipher_aes256gcm(), NULL, NULL, NULL, enc) !=
            1 ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, HK_AEAD_NONCE_LEN,
                            NULL) != 1 ||
        EVP_CipherInit_ex(c, NULL, NULL, key, nonce, enc) != 1)
        return HK_ERR_CRYPTO;
    if (aadlen > 0 && EVP_CipherUpdate(c, NULL, &n, aad, (int)aadlen) != 1)
        return HK_ERR_CRYPTO;
    return HK_OK;
}

hk_err hk_aead_seal(const unsigned char key[HK_AEAD_KEY_LEN],
                    const unsigned char *aad, size_t aadlen,
                    const unsigned char *pt, size_t ptlen, unsigned char *out)
{
    unsigned char *ct = out + HK_AEAD_NONCE_LEN;
    EVP_CIPHER_CTX *c;
    int n = 0, fin = 0;
    hk_err e;

    if (key == NULL || out == NULL || (pt == NULL && ptlen > 0) ||
        (aad == NULL && aadlen > 0))
        return HK_ERR_ARG;
    if (ptlen > HK_AEAD_MAX || aadlen > HK_AEAD_MAX)
        return HK_ERR_TOO_BIG;
    if (!hk_rand_bytes(out, HK_AEAD_NONCE_LEN))
        return HK_ERR_RAND;
    if ((c = EVP_CIPHER_CTX_new()) == NULL)
        return HK_ERR_NOMEM;
    if ((e = hk_aead_start(c, 1, key, out, aad, aadlen)) != HK_OK)
        goto done;
    e = HK_ERR_CRYPTO;
    if ((ptlen > 0 && EVP_CipherUpdate(c, ct, &n, pt, (int)ptlen) != 1) ||
        EVP_CipherFinal_ex(c, ct + n, &fin) != 1 ||
        (size_t)(n + fin) != ptlen ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, HK_AEAD_TAG_LEN,
                            ct + ptlen) != 1)
        goto done;
    e = HK_OK;
done:
    EVP_CIPHER_CTX_free(c);
    return e;
}

hk_err hk_aead_open(const unsigned char key[HK_AEAD_KEY_LEN],
                    const unsigned char *aad, size_t aadlen,
                    const unsigned char *in, size_t inlen, unsigned char *pt)
{
    size_t ctlen;
    EVP_CIPHER_CTX *c;
    int n = 0, fin = 0;
    hk_err e;

    if (key == NULL || in == NULL || pt == NULL || (aad == NULL && aadlen > 0))
        return HK_ERR_ARG;
    if (inlen > HK_AEAD_MAX + HK_AEAD_OVERHEAD || aadlen > HK_AEAD_MAX)
        return HK_ERR_TOO_BIG;
    if (inlen < HK_AEAD_OVERHEAD)
        return HK_ERR_SEAL;
    ctlen = inlen - HK_AEAD_OVERHEAD;
    if ((c = EVP_CIPHER_CTX_new()) == NULL)
        return HK_ERR_NOMEM;
    if ((e = hk_aead_start(c, 0, key, in, aad, aadlen)) != HK_OK)
        goto done;
    e = HK_ERR_CRYPTO;
    if ((ctlen > 0 && EVP_CipherUpdate(c, pt, &n, in + HK_AEAD_NONCE_LEN,
                                       (int)ctlen) != 1) ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, HK_AEAD_TAG_LEN,
                            (void *)(in + inlen - HK_AEAD_TAG_LEN)) != 1)
        goto done;
    e = HK_ERR_SEAL;
    if (EVP_CipherFinal_ex(c, pt + n, &fin) != 1 || (size_t)(n + fin) != ctlen)
        goto done;
    e = HK_OK;
done:
    if (e != HK_OK && ctlen > 0)
        OPENSSL_cleanse(pt, ctlen);
    EVP_CIPHER_CTX_free(c);
    return e;
}
