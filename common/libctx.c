/* halfkey's own OpenSSL library context (libctx.h). */
#include <pthread.h>

#include <openssl/provider.h>
#include <openssl/rand.h>

#include "common/libctx.h"

/* Made on first use and kept for the life of the process: OpenSSL 3.0
 * frees each thread's DRBG state through the context when the thread
 * exits, so the context must outlive every thread that used it (the
 * PKCS#11 module pins itself in memory for that, pkcs11/module.c). */
static pthread_mutex_t hk_libctx_mu = PTHREAD_MUTEX_INITIALIZER;
static OSSL_LIB_CTX *hk_libctx_ctx;
static OSSL_PROVIDER *hk_libctx_prov;
static EVP_MD *hk_libctx_sha256;
static EVP_CIPHER *hk_libctx_gcm;

static void hk_libctx_init(void)
{
    OSSL_LIB_CTX *ctx = OSSL_LIB_CTX_new(); /* reads no openssl.cnf */

    if (ctx == NULL)
        return;
    /* The built-in default provider only; it stays loaded for the life of
     * the process, like the context. */
    if ((hk_libctx_prov = OSSL_PROVIDER_load(ctx, "default")) == NULL) {
        OSSL_LIB_CTX_free(ctx);
        return;
    }
    hk_libctx_sha256 = EVP_MD_fetch(ctx, "SHA256", NULL);
    hk_libctx_gcm = EVP_CIPHER_fetch(ctx, "AES-256-GCM", NULL);
    hk_libctx_ctx = ctx;
}

OSSL_LIB_CTX *hk_libctx(void)
{
    OSSL_LIB_CTX *ctx;

    pthread_mutex_lock(&hk_libctx_mu);
    if (hk_libctx_ctx == NULL)
        hk_libctx_init();
    ctx = hk_libctx_ctx;
    pthread_mutex_unlock(&hk_libctx_mu);
    return ctx;
}

const EVP_MD *hk_md_sha256(void)
{
    return hk_libctx() != NULL ? hk_libctx_sha256 : NULL;
}

const EVP_CIPHER *hk_cipher_aes256gcm(void)
{
    return hk_libctx() != NULL ? hk_libctx_gcm : NULL;
}

int hk_rand_bytes(unsigned char *buf, size_t len)
{
    OSSL_LIB_CTX *ctx = hk_libctx();

    return ctx != NULL && RAND_bytes_ex(ctx, buf, len, 0) == 1;
}

int hk_rand_priv_bytes(unsigned char *buf, size_t len)
{
    OSSL_LIB_CTX *ctx = hk_libctx();

    return ctx != NULL && RAND_priv_bytes_ex(ctx, buf, len, 0) == 1;
}

int hk_bn_priv_rand(BIGNUM *r, int bits, int top, int bottom)
{
    OSSL_LIB_CTX *lc = hk_libctx();
    BN_CTX *ctx = lc != NULL ? BN_CTX_new_ex(lc) : NULL;
    int ok = ctx != NULL && BN_priv_rand_ex(r, bits, top, bottom, 0, ctx);

    BN_CTX_free(ctx);
    return ok;
}

int hk_bn_priv_rand_range(BIGNUM *r, const BIGNUM *range)
{
    OSSL_LIB_CTX *lc = hk_libctx();
    BN_CTX *ctx = lc != NULL ? BN_CTX_new_ex(lc) : NULL;
    int ok = ctx != NULL && BN_priv_rand_range_ex(r, range, 0, ctx);

    BN_CTX_free(ctx);
    return ok;
}
