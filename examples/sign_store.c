/* sign_store: signs a file's SHA-256 digest with a key named by URI, through
 * OpenSSL's store and EVP_PKEY_sign only: nothing halfkey-specific but the
 * provider's name. The signature (DER ECDSA-Sig-Value) verifies with
 * `openssl dgst -sha256 -verify pub.pem -signature SIG FILE`.
 *
 *   sign_store [-p MODULE_DIR] URI FILE SIG
 *
 * The PIN comes from the URI (pin-value=, pin-source=), $HALFKEY_PIN, or a
 * prompt on the terminal (OpenSSL's UI). */
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/provider.h>
#include <openssl/store.h>
#include <openssl/ui.h>

static EVP_PKEY *load_private_key(const char *uri)
{
    OSSL_STORE_CTX *st;
    OSSL_STORE_INFO *info;
    EVP_PKEY *pkey = NULL;

    st = OSSL_STORE_open_ex(uri, NULL, NULL, UI_get_default_method(), NULL,
                            NULL, NULL, NULL);
    if (st == NULL || !OSSL_STORE_expect(st, OSSL_STORE_INFO_PKEY))
        goto done;
    while (pkey == NULL && !OSSL_STORE_eof(st)) {
        if ((info = OSSL_STORE_load(st)) == NULL)
            break;
        if (OSSL_STORE_INFO_get_type(info) == OSSL_STORE_INFO_PKEY)
            pkey = OSSL_STORE_INFO_get1_PKEY(info);
        OSSL_STORE_INFO_free(info);
    }
done:
    OSSL_STORE_close(st);
    return pkey;
}

static int digest_file(const char *path, unsigned char *md, unsigned int *len)
{
    unsigned char buf[4096];
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    FILE *f = fopen(path, "rb");
    size_t n;
    int ok = 0;

    if (f == NULL || ctx == NULL ||
        !EVP_DigestInit_ex2(ctx, EVP_sha256(), NULL))
        goto done;
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
        if (!EVP_DigestUpdate(ctx, buf, n))
            goto done;
    ok = !ferror(f) && EVP_DigestFinal_ex(ctx, md, len);
done:
    if (f != NULL)
        fclose(f);
    EVP_MD_CTX_free(ctx);
    return ok;
}

int main(int argc, char **argv)
{
    OSSL_PROVIDER *hk = NULL, *def = NULL;
    unsigned char md[EVP_MAX_MD_SIZE], *sig = NULL;
    unsigned int mdlen = 0;
    size_t siglen = 0;
    EVP_PKEY_CTX *ctx = NULL;
    EVP_PKEY *pkey = NULL;
    FILE *out = NULL;
    int i = 1, rc = 1;

    if (argc > 2 && strcmp(argv[1], "-p") == 0) {
        if (!OSSL_PROVIDER_set_default_search_path(NULL, argv[2]))
            goto done;
        i = 3;
    }
    if (argc - i != 3) {
        fprintf(stderr, "usage: sign_store [-p MODULE_DIR] URI FILE SIG\n");
        return 2;
    }
    if ((hk = OSSL_PROVIDER_load(NULL, "halfkey")) == NULL ||
        (def = OSSL_PROVIDER_load(NULL, "default")) == NULL)
        goto done;
    if ((pkey = load_private_key(argv[i])) == NULL) {
        fprintf(stderr, "sign_store: no private key at %s\n", argv[i]);
        goto done;
    }
    if (!digest_file(argv[i + 1], md, &mdlen) ||
        (ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL)) == NULL ||
        EVP_PKEY_sign_init(ctx) <= 0 ||
        EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) <= 0 ||
        EVP_PKEY_sign(ctx, NULL, &siglen, md, mdlen) <= 0 ||
        (sig = OPENSSL_malloc(siglen)) == NULL ||
        EVP_PKEY_sign(ctx, sig, &siglen, md, mdlen) <= 0)
        goto done;
    if ((out = fopen(argv[i + 2], "wb")) == NULL ||
        fwrite(sig, 1, siglen, out) != siglen)
        goto done;
    rc = 0;
done:
    if (out != NULL && fclose(out) != 0)
        rc = 1;
    if (rc != 0)
        ERR_print_errors_fp(stderr);
    OPENSSL_free(sig);
    EVP_PKEY_CTX_free(ctx);
    EVP_PKEY_free(pkey);
    OSSL_PROVIDER_unload(def);
    OSSL_PROVIDER_unload(hk);
    return rc;
}
