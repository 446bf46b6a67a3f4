/* halfkey's own OpenSSL library context.
 *
 * The client core runs inside other programs (a PKCS#11 module in a
 * browser or under latchset's pkcs11-provider, an OpenSSL provider, the
 * CLI): their providers and openssl.cnf are not ours. Its TLS connection to
 * halfkeyd, its keystore cryptography and its hashes run in one private
 * OSSL_LIB_CTX with only OpenSSL's built-in default provider and no
 * configuration file, made once per process. */
#ifndef HK_LIBCTX_H
#define HK_LIBCTX_H

#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/types.h>

/* The private library context; NULL if OpenSSL could not make it (callers
 * then fail with HK_ERR_CRYPTO or a network error rather than fall back to
 * the host's context). */
OSSL_LIB_CTX *hk_libctx(void);

/* SHA-256 and AES-256-GCM fetched once from hk_libctx (NULL on failure;
 * never freed by the caller). */
const EVP_MD *hk_md_sha256(void);
const EVP_CIPHER *hk_cipher_aes256gcm(void);

/* RAND_bytes / RAND_priv_bytes from hk_libctx's generator: 1 on success. */
int hk_rand_bytes(unsigned char *buf, size_t len);
int hk_rand_priv_bytes(unsigned char *buf, size_t len);

/* BN_priv_rand / BN_priv_rand_range from hk_libctx's generator. BN_CTXs
 * made with BN_CTX_new_ex(hk_libctx()) keep prime generation there too. */
int hk_bn_priv_rand(BIGNUM *r, int bits, int top, int bottom);
int hk_bn_priv_rand_range(BIGNUM *r, const BIGNUM *range);

#endif
