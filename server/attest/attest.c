/* Device attestation, the server's half (attest.h): the EK certificate
 * and key checks, TPM2_MakeCredential in software (TPM 2.0 Part 1
 * section 24) and the check of the answer (credential, quote and its
 * signature). Only OpenSSL: halfkeyd builds without tpm2-tss. */
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/hmac.h>
#include <openssl/rsa.h>

#include "common/hex.h"
#include "server/attest/attest.h"

#define HK_ATT_SEED_LEN 32 /* the digest size of the EK's nameAlg */
#define HK_ATT_SYM_LEN 16  /* the EK's symmetric key: AES-128 */

static hk_err hk_att_refuse(char *why, const char *msg)
{
    snprintf(why, HK_ATT_WHY_MAX, "%s", msg);
    return HK_ERR_ATTEST;
}

void hk_att_summary_split(const char *summary, char fp[65], const char **issuer)
{
    fp[0] = 0;
    *issuer = "";
    if (summary == NULL || strlen(summary) < 66 || summary[64] != ' ')
        return;
    memcpy(fp, summary, 64);
    fp[64] = 0;
    *issuer = summary + 65;
}

hk_err hk_att_roots_load(const char *file, X509_STORE **out, char *why)
{
    X509_STORE *st = NULL;
    X509 *x = NULL;
    BIO *b = NULL;
    int n = 0;
    hk_err e = HK_ERR_CONFIG;

    if (file == NULL || out == NULL || why == NULL)
        return HK_ERR_ARG;
    *out = NULL;
    if ((b = BIO_new_file(file, "r")) == NULL) {
        snprintf(why, 256, "attestation_roots: cannot open %s", file);
        goto done;
    }
    if ((st = X509_STORE_new()) == NULL)
        goto done;
    while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
        if (X509_STORE_add_cert(st, x) != 1)
            goto done;
        X509_free(x);
        x = NULL;
        n++;
    }
    ERR_clear_error(); /* the end of the file */
    if (n == 0) {
        snprintf(why, 256, "attestation_roots: no certificate in %s", file);
        goto done;
    }
    /* a bundle's intermediate CAs are anchors too (attest.h) */
    X509_STORE_set_flags(st, X509_V_FLAG_PARTIAL_CHAIN);
    *out = st;
    st = NULL;
    e = HK_OK;
done:
    X509_free(x);
    X509_STORE_free(st);
    BIO_free(b);
    return e;
}

/* The EK cert chains to roots; *key its public key. */
static hk_err hk_att_ek_cert(X509_STORE *roots, const unsigned char *der,
                             size_t len, X509 **cert, char *why)
{
    const unsigned char *p = der;
    X509_STORE_CTX *ctx = NULL;
    hk_err e;

    if (len > HK_ATT_CERT_MAX ||
        (*cert = d2i_X509(NULL, &p, (long)len)) == NULL || p != der + len)
        return hk_att_refuse(why, "the EK certificate is not one DER "
                                  "certificate");
    e = HK_ERR_CRYPTO;
    if ((ctx = X509_STORE_CTX_new()) == NULL ||
        X509_STORE_CTX_init(ctx, roots, *cert, NULL) != 1)
        goto done;
    e = HK_OK;
    if (X509_verify_cert(ctx) != 1) {
        snprintf(why, HK_ATT_WHY_MAX,
                 "the EK certificate does not chain to attestation_roots "
                 "(%s)",
                 X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
        e = HK_ERR_ATTEST;
    }
done:
    X509_STORE_CTX_free(ctx);
    return e;
}

/* 1 if BN n equals the big-endian bytes b. */
static int hk_att_bn_eq(const BIGNUM *n, const unsigned char *b, size_t len)
{
    unsigned char buf[512];

    return len <= sizeof(buf) && BN_num_bytes(n) == (int)len &&
           BN_bn2binpad(n, buf, (int)len) == (int)len &&
           memcmp(buf, b, len) == 0;
}

/* The EK public area is the standard RSA-2048 EK (TCG EK Credential
 * Profile, template L-1: what MakeCredential below assumes) and holds the
 * certified key. */
static hk_err hk_att_ek_match(X509 *cert, const hk_tpm_public *ek, char *why)
{
    const uint32_t need = HK_TPMA_FIXEDTPM | HK_TPMA_FIXEDPARENT |
                          HK_TPMA_RESTRICTED | HK_TPMA_DECRYPT;
    EVP_PKEY *k = X509_get0_pubkey(cert);
    BIGNUM *n = NULL, *ex = NULL;
    int ok;

    if (ek->type != HK_TPM_ALG_RSA || ek->rsa_bits != 2048 || ek->xlen != 256 ||
        (ek->attrs & need) != need || (ek->attrs & HK_TPMA_SIGN) ||
        ek->sym_alg != HK_TPM_ALG_AES || ek->sym_bits != 128 ||
        ek->sym_mode != HK_TPM_ALG_CFB || ek->scheme != HK_TPM_ALG_NULL)
        return hk_att_refuse(why, "the EK is not an RSA-2048 endorsement "
                                  "key of the standard template");
    if (k == NULL || !EVP_PKEY_is_a(k, "RSA") ||
        EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_RSA_N, &n) != 1 ||
        EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_RSA_E, &ex) != 1) {
        BN_free(n);
        return hk_att_refuse(why, "the EK certificate holds no RSA key");
    }
    ok = hk_att_bn_eq(n, ek->x, ek->xlen) &&
         BN_get_word(ex) == (ek->rsa_exponent == 0 ? 65537u : ek->rsa_exponent);
    BN_free(n);
    BN_free(ex);
    return ok ? HK_OK
              : hk_att_refuse(why, "the EK is not the key of the EK "
                                   "certificate");
}

/* The AK is a restricted ECDSA P-256 signing key born in its TPM and
 * bound to it: a key whose quotes are worth checking. */
static hk_err hk_att_ak_ok(const hk_tpm_public *ak, char *why)
{
    const uint32_t need = HK_TPMA_FIXEDTPM | HK_TPMA_FIXEDPARENT |
                          HK_TPMA_SENSITIVEDATAORIGIN | HK_TPMA_RESTRICTED |
                          HK_TPMA_SIGN;

    if (ak->type != HK_TPM_ALG_ECC || ak->curve != HK_TPM_ECC_NIST_P256 ||
        ak->scheme != HK_TPM_ALG_ECDSA ||
        ak->scheme_hash != HK_TPM_ALG_SHA256 || (ak->attrs & need) != need ||
        (ak->attrs & HK_TPMA_DECRYPT) || ak->sym_alg != HK_TPM_ALG_NULL ||
        ak->xlen != 32 || ak->ylen != 32)
        return hk_att_refuse(why, "the AK is not a restricted ECDSA P-256 "
                                  "signing key fixed to its TPM");
    return HK_OK;
}

/* KDFa (TPM 2.0 Part 1 section 11.4.10.2) with HMAC-SHA-256: SP 800-108
 * in counter mode, which OpenSSL's KBKDF is (32-bit counter, label, a zero
 * byte, context, the length in bits). */
static hk_err hk_att_kdfa(const unsigned char *key, size_t klen,
                          const char *label, const unsigned char *ctx,
                          size_t clen, unsigned char *out, size_t olen)
{
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "KBKDF", NULL);
    EVP_KDF_CTX *kc = kdf != NULL ? EVP_KDF_CTX_new(kdf) : NULL;
    OSSL_PARAM p[7], *q = p;
    hk_err e = HK_ERR_CRYPTO;

    *q++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_MAC, "HMAC", 0);
    *q++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, "SHA256", 0);
    *q++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_MODE, "counter", 0);
    *q++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)key,
                                             klen);
    *q++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)label,
                                             strlen(label));
    *q++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)ctx,
                                             clen);
    *q = OSSL_PARAM_construct_end();
    if (kc != NULL && EVP_KDF_derive(kc, out, olen, p) == 1)
        e = HK_OK;
    EVP_KDF_CTX_free(kc);
    EVP_KDF_free(kdf);
    return e;
}

/* The seed encrypted to the EK: RSA-OAEP with SHA-256 and the label
 * "IDENTITY" (with its zero byte), into a TPM2B_ENCRYPTED_SECRET. */
static hk_err hk_att_seal_seed(X509 *cert, const unsigned char *seed,
                               hk_att_challenge *out)
{
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(X509_get0_pubkey(cert), NULL);
    unsigned char *label = OPENSSL_memdup("IDENTITY", 9);
    size_t len = sizeof(out->secret) - 2;
    hk_err e = HK_ERR_CRYPTO;

    if (c == NULL || label == NULL || EVP_PKEY_encrypt_init(c) != 1 ||
        EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_OAEP_PADDING) != 1 ||
        EVP_PKEY_CTX_set_rsa_oaep_md(c, EVP_sha256()) != 1 ||
        EVP_PKEY_CTX_set_rsa_mgf1_md(c, EVP_sha256()) != 1 ||
        EVP_PKEY_CTX_set0_rsa_oaep_label(c, label, 9) != 1)
        goto done;
    label = NULL; /* the context owns it */
    if (EVP_PKEY_encrypt(c, out->secret + 2, &len, seed, HK_ATT_SEED_LEN) != 1)
        goto done;
    out->secret[0] = (unsigned char)(len >> 8);
    out->secret[1] = (unsigned char)len;
    out->secret_len = len + 2;
    e = HK_OK;
done:
    OPENSSL_free(label);
    EVP_PKEY_CTX_free(c);
    return e;
}

/* TPM2_MakeCredential (Part 1 section 24.4) for the credential under the
 * seed and the AK's Name: encIdentity = AES-128-CFB(symKey, IV 0,
 * TPM2B_DIGEST(credential)), outerHMAC = HMAC(HMACkey, encIdentity ||
 * Name); credentialBlob = TPM2B(TPM2B(outerHMAC) || encIdentity). */
static hk_err hk_att_id_object(const unsigned char *seed,
                               const unsigned char *name,
                               const unsigned char *cred, hk_att_challenge *out)
{
    unsigned char sym[HK_ATT_SYM_LEN], hkey[32], plain[2 + HK_ATT_CRED_LEN];
    unsigned char iv[16] = {0}, *enc = out->id_object + 2 + 2 + 32;
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    unsigned int hlen = 0;
    int l1 = 0, l2 = 0;
    hk_err e = HK_ERR_CRYPTO;

    plain[0] = 0;
    plain[1] = HK_ATT_CRED_LEN;
    memcpy(plain + 2, cred, HK_ATT_CRED_LEN);
    if (c == NULL ||
        hk_att_kdfa(seed, HK_ATT_SEED_LEN, "STORAGE", name, HK_TPM_NAME_LEN,
                    sym, sizeof(sym)) != HK_OK ||
        hk_att_kdfa(seed, HK_ATT_SEED_LEN, "INTEGRITY", NULL, 0, hkey,
                    sizeof(hkey)) != HK_OK ||
        EVP_EncryptInit_ex(c, EVP_aes_128_cfb128(), NULL, sym, iv) != 1 ||
        EVP_EncryptUpdate(c, enc, &l1, plain, sizeof(plain)) != 1 ||
        EVP_EncryptFinal_ex(c, enc + l1, &l2) != 1 ||
        l1 + l2 != (int)sizeof(plain))
        goto done;
    /* HMAC over encIdentity || Name, written in front of encIdentity */
    memcpy(enc + sizeof(plain), name, HK_TPM_NAME_LEN);
    if (HMAC(EVP_sha256(), hkey, sizeof(hkey), enc,
             sizeof(plain) + HK_TPM_NAME_LEN, out->id_object + 4,
             &hlen) == NULL ||
        hlen != 32)
        goto done;
    out->id_len = 2 + 2 + 32 + sizeof(plain);
    out->id_object[0] = 0;
    out->id_object[1] = (unsigned char)(out->id_len - 2);
    out->id_object[2] = 0;
    out->id_object[3] = 32;
    e = HK_OK;
done:
    OPENSSL_cleanse(sym, sizeof(sym));
    OPENSSL_cleanse(hkey, sizeof(hkey));
    OPENSSL_cleanse(plain, sizeof(plain));
    EVP_CIPHER_CTX_free(c);
    return e;
}

/* "<SHA-256 of the EK cert, hex> <issuer, RFC 2253, printable ASCII>" */
static hk_err hk_att_summary(X509 *cert, char *out)
{
    unsigned char fp[32];
    unsigned int fplen = 0;
    char issuer[256] = "", *s;
    BIO *b = BIO_new(BIO_s_mem());
    int n;

    if (b == NULL || X509_digest(cert, EVP_sha256(), fp, &fplen) != 1 ||
        fplen != 32 ||
        X509_NAME_print_ex(b, X509_get_issuer_name(cert), 0,
                           XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) < 0) {
        BIO_free(b);
        return HK_ERR_CRYPTO;
    }
    n = BIO_read(b, issuer, sizeof(issuer) - 1);
    issuer[n > 0 ? n : 0] = 0;
    BIO_free(b);
    for (s = issuer; *s; s++) /* stored and logged: plain text only */
        if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
            *s = '?';
    hk_hex(fp, 32, out);
    snprintf(out + 64, HK_ATT_SUMMARY_MAX + 1 - 64, " %s",
             issuer[0] ? issuer : "-");
    return HK_OK;
}

/* The credential, the seed and its encryption, the id object. */
static hk_err hk_att_make_credential(X509 *cert, const hk_tpm_public *ak,
                                     hk_att_challenge *out)
{
    unsigned char seed[HK_ATT_SEED_LEN], cred[HK_ATT_CRED_LEN];
    unsigned int hlen = 0;
    hk_err e = HK_ERR_RAND;

    if (RAND_bytes(seed, sizeof(seed)) != 1 ||
        RAND_bytes(cred, sizeof(cred)) != 1)
        goto done;
    e = HK_ERR_CRYPTO;
    if (EVP_Digest(cred, sizeof(cred), out->cred_hash, &hlen, EVP_sha256(),
                   NULL) != 1)
        goto done;
    if ((e = hk_att_seal_seed(cert, seed, out)) == HK_OK)
        e = hk_att_id_object(seed, ak->name, cred, out);
done:
    OPENSSL_cleanse(seed, sizeof(seed));
    OPENSSL_cleanse(cred, sizeof(cred));
    return e;
}

hk_err hk_att_challenge_make(X509_STORE *roots, const unsigned char *ek_cert,
                             size_t clen, const unsigned char *ek_pub,
                             size_t elen, const unsigned char *ak_pub,
                             size_t alen, hk_att_challenge *out, char *why)
{
    hk_tpm_public ek, ak;
    X509 *cert = NULL;
    hk_err e;

    if (roots == NULL || ek_cert == NULL || ek_pub == NULL || ak_pub == NULL ||
        out == NULL || why == NULL)
        return HK_ERR_ARG;
    memset(out, 0, sizeof(*out));
    why[0] = 0;
    if (hk_tpm_public_parse(ek_pub, elen, &ek) != HK_OK)
        return hk_att_refuse(why, "the EK public area is malformed");
    if (hk_tpm_public_parse(ak_pub, alen, &ak) != HK_OK)
        return hk_att_refuse(why, "the AK public area is malformed");
    if ((e = hk_att_ak_ok(&ak, why)) != HK_OK ||
        (e = hk_att_ek_cert(roots, ek_cert, clen, &cert, why)) != HK_OK ||
        (e = hk_att_ek_match(cert, &ek, why)) != HK_OK ||
        (e = hk_att_summary(cert, out->summary)) != HK_OK ||
        (e = hk_att_make_credential(cert, &ak, out)) != HK_OK)
        goto done;
    memcpy(out->ak_pub, ak_pub, alen);
    out->ak_publen = alen;
done:
    X509_free(cert);
    if (e != HK_OK)
        OPENSSL_cleanse(out, sizeof(*out));
    return e;
}

/* The AK's P-256 public key from its public area. */
static hk_err hk_att_ak_key(const hk_tpm_public *ak, EVP_PKEY **out)
{
    unsigned char pt[65];
    OSSL_PARAM p[3];
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    hk_err e = HK_ERR_CRYPTO;

    pt[0] = 4;
    memcpy(pt + 1, ak->x, 32);
    memcpy(pt + 33, ak->y, 32);
    p[0] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, "P-256",
                                            0);
    p[1] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, pt,
                                             sizeof(pt));
    p[2] = OSSL_PARAM_construct_end();
    if (c != NULL && EVP_PKEY_fromdata_init(c) == 1 &&
        EVP_PKEY_fromdata(c, out, EVP_PKEY_PUBLIC_KEY, p) == 1)
        e = HK_OK;
    EVP_PKEY_CTX_free(c);
    return e;
}

/* The TPM's ECDSA signature over the quote, verified under the AK. */
static hk_err hk_att_sig_ok(const hk_tpm_public *ak, const unsigned char *msg,
                            size_t mlen, const hk_tpm_sig *sig)
{
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(sig->r, (int)sig->rlen, NULL);
    BIGNUM *s = BN_bin2bn(sig->s, (int)sig->slen, NULL);
    unsigned char *der = NULL;
    EVP_MD_CTX *mc = EVP_MD_CTX_new();
    EVP_PKEY *k = NULL;
    int dlen, ok = 0;

    if (es == NULL || r == NULL || s == NULL || ECDSA_SIG_set0(es, r, s) != 1)
        goto done;
    r = s = NULL;
    if ((dlen = i2d_ECDSA_SIG(es, &der)) <= 0 || mc == NULL ||
        hk_att_ak_key(ak, &k) != HK_OK ||
        EVP_DigestVerifyInit(mc, NULL, EVP_sha256(), NULL, k) != 1)
        goto done;
    ok = EVP_DigestVerify(mc, der, (size_t)dlen, msg, mlen) == 1;
done:
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(es);
    OPENSSL_free(der);
    EVP_MD_CTX_free(mc);
    EVP_PKEY_free(k);
    return ok ? HK_OK : HK_ERR_ATTEST;
}

hk_err hk_att_answer_check(const unsigned char cred_hash[32],
                           const unsigned char *ak_pub, size_t alen,
                           const unsigned char *cred, size_t credlen,
                           const unsigned char *quote, size_t qlen,
                           const unsigned char *sig, size_t slen,
                           const unsigned char qual[32], char *why)
{
    unsigned char h[32];
    unsigned int hlen = 0;
    hk_tpm_public ak;
    hk_tpm_quote q;
    hk_tpm_sig s;

    if (cred_hash == NULL || ak_pub == NULL || cred == NULL || quote == NULL ||
        sig == NULL || qual == NULL || why == NULL)
        return HK_ERR_ARG;
    why[0] = 0;
    if (credlen != HK_ATT_CRED_LEN ||
        EVP_Digest(cred, credlen, h, &hlen, EVP_sha256(), NULL) != 1 ||
        CRYPTO_memcmp(h, cred_hash, sizeof(h)) != 0)
        return hk_att_refuse(why, "the credential is not the one made for "
                                  "this TPM's endorsement key");
    if (hk_tpm_public_parse(ak_pub, alen, &ak) != HK_OK ||
        hk_att_ak_ok(&ak, why) != HK_OK)
        return hk_att_refuse(why, "the stored AK is malformed");
    if (hk_tpm_quote_parse(quote, qlen, &q) != HK_OK)
        return hk_att_refuse(why, "the quote is not a TPM-generated quote");
    if (hk_tpm_sig_parse(sig, slen, &s) != HK_OK ||
        s.hash != HK_TPM_ALG_SHA256 || s.rlen == 0 || s.rlen > 32 ||
        s.slen == 0 || s.slen > 32 ||
        hk_att_sig_ok(&ak, quote, qlen, &s) != HK_OK)
        return hk_att_refuse(why, "the quote's signature does not verify "
                                  "under the AK");
    if (q.extra_len != 32 || CRYPTO_memcmp(q.extra, qual, 32) != 0)
        return hk_att_refuse(why, "the quote is not over this keygen "
                                  "session");
    return HK_OK;
}
