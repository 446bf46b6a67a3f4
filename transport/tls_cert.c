/* Self-signed server certificates. */
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "transport/tls_cert.h"

static int hk_cert_ext(X509 *x, int nid, const char *value)
{
    X509V3_CTX v3;
    X509_EXTENSION *ext;
    int ok;

    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    ok = ext != NULL && X509_add_ext(x, ext, -1) == 1;
    X509_EXTENSION_free(ext);
    return ok;
}

static X509 *hk_cert_build(EVP_PKEY *key, int days)
{
    X509 *x = X509_new();
    X509_NAME *name;
    unsigned char serial[16];
    BIGNUM *sn = NULL;
    int ok = 0;

    if (x == NULL || RAND_bytes(serial, sizeof(serial)) != 1)
        goto done;
    serial[0] &= 0x7f;
    sn = BN_bin2bn(serial, sizeof(serial), NULL);
    name = X509_get_subject_name(x);
    ok = sn != NULL && X509_set_version(x, 2) &&
         BN_to_ASN1_INTEGER(sn, X509_get_serialNumber(x)) != NULL &&
         X509_gmtime_adj(X509_getm_notBefore(x), -3600) != NULL &&
         X509_gmtime_adj(X509_getm_notAfter(x), 86400L * days) != NULL &&
         X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                    (const unsigned char *)"localhost", -1, -1,
                                    0) &&
         X509_set_issuer_name(x, name) && X509_set_pubkey(x, key) &&
         hk_cert_ext(x, NID_subject_alt_name,
                     "DNS:localhost,IP:127.0.0.1,IP:::1") &&
         hk_cert_ext(x, NID_basic_constraints, "critical,CA:FALSE") &&
         hk_cert_ext(x, NID_ext_key_usage, "serverAuth") &&
         X509_sign(x, key, EVP_sha256()) > 0;
done:
    BN_free(sn);
    if (!ok) {
        X509_free(x);
        return NULL;
    }
    return x;
}

hk_err hk_tls_make_selfsigned(const char *cert_path, const char *key_path,
                              int days)
{
    EVP_PKEY *key = NULL;
    X509 *x = NULL;
    FILE *f = NULL;
    hk_err e = HK_ERR_CRYPTO;
    int fd;

    if (cert_path == NULL || key_path == NULL || days < 1)
        return HK_ERR_ARG;
    if ((key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256")) == NULL ||
        (x = hk_cert_build(key, days)) == NULL)
        goto done;
    e = HK_ERR_IO;
    fd = open(key_path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0 || (f = fdopen(fd, "w")) == NULL) {
        if (fd >= 0)
            close(fd);
        goto done;
    }
    if (PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL) != 1 ||
        fclose(f) != 0) {
        f = NULL;
        goto done;
    }
    if ((f = fopen(cert_path, "wx")) == NULL)
        goto done;
    if (PEM_write_X509(f, x) != 1 || fclose(f) != 0) {
        f = NULL;
        goto done;
    }
    f = NULL;
    e = HK_OK;
done:
    if (f != NULL)
        fclose(f);
    X509_free(x);
    EVP_PKEY_free(key);
    return e;
}
