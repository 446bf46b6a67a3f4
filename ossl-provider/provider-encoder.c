/* Encoders of the public half: SubjectPublicKeyInfo in DER and PEM, so
 * `openssl pkey -pubout`, X509_PUBKEY (CSRs, certificates) and TLS take the
 * public key of a halfkey key; and a text form (`openssl pkey -text`) that
 * names the key and shows its public half. Private-key encodings do not
 * exist. */
#include <string.h>

#include <openssl/bio.h>
#include <openssl/core_dispatch.h>
#include <openssl/core_names.h>
#include <openssl/pem.h>

#include "ossl-provider/provider.h"

static void *hk_enc_newctx(void *provctx) { return provctx; }

static void hk_enc_freectx(void *ctx) {}

static int hk_enc_does_selection(void *provctx, int selection)
{
    if (selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY)
        return 0;
    return (selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY) != 0;
}

static int hk_enc_encode(hk_prov_ctx *pc, OSSL_CORE_BIO *cout, const void *obj,
                         const OSSL_PARAM obj_abstract[], int selection,
                         int pem)
{
    unsigned char der[HK_PROV_SPKI_MAX];
    const hk_prov_key *k = obj;
    BIO *out = NULL;
    size_t len = 0;
    int ok = 0;

    if (k == NULL || obj_abstract != NULL ||
        !hk_enc_does_selection(pc, selection))
        return 0;
    if (!hk_prov_key_spki(k, der, &len)) {
        hk_prov_raise(pc, HK_R_KEY, "no public key to encode");
        return 0;
    }
    if ((out = BIO_new_from_core_bio(pc->libctx, cout)) == NULL)
        goto done;
    if (pem)
        ok = PEM_write_bio(out, PEM_STRING_PUBLIC, "", der, (long)len) > 0;
    else
        ok = BIO_write(out, der, (int)len) == (int)len;
done:
    BIO_free(out);
    return ok;
}

static int hk_enc_der(void *ctx, OSSL_CORE_BIO *cout, const void *obj,
                      const OSSL_PARAM obj_abstract[], int selection,
                      OSSL_PASSPHRASE_CALLBACK *cb, void *cbarg)
{
    return hk_enc_encode(ctx, cout, obj, obj_abstract, selection, 0);
}

static int hk_enc_pem(void *ctx, OSSL_CORE_BIO *cout, const void *obj,
                      const OSSL_PARAM obj_abstract[], int selection,
                      OSSL_PASSPHRASE_CALLBACK *cb, void *cbarg)
{
    return hk_enc_encode(ctx, cout, obj, obj_abstract, selection, 1);
}

static int hk_enc_text_does_selection(void *provctx, int selection)
{
    return (selection & (OSSL_KEYMGMT_SELECT_KEYPAIR |
                         OSSL_KEYMGMT_SELECT_ALL_PARAMETERS)) != 0;
}

static int hk_enc_text(void *ctx, OSSL_CORE_BIO *cout, const void *obj,
                       const OSSL_PARAM obj_abstract[], int selection,
                       OSSL_PASSPHRASE_CALLBACK *cb, void *cbarg)
{
    hk_prov_ctx *pc = ctx;
    const hk_prov_key *k = obj;
    BIO *out = NULL;
    size_t i;
    int ok = 0;

    if (k == NULL || k->curve == 0 || obj_abstract != NULL ||
        (out = BIO_new_from_core_bio(pc->libctx, cout)) == NULL)
        return 0;
    if (k->tok != NULL) {
        if (BIO_printf(out,
                       "halfkey Private-Key: (256 bit, split with halfkeyd)\n"
                       "label: %s\nkey id: ",
                       k->label) <= 0)
            goto done;
        for (i = 0; i < HK_ID_LEN; i++)
            if (BIO_printf(out, "%02x", k->kid[i]) <= 0)
                goto done;
        if (BIO_printf(out, "\n") <= 0)
            goto done;
    } else if (BIO_printf(out, "Public-Key: (256 bit)\n") <= 0) {
        goto done;
    }
    if (BIO_printf(out, "pub:") <= 0)
        goto done;
    for (i = 0; i < sizeof(k->pub); i++)
        if (BIO_printf(out, "%s%02x%s", i % 15 == 0 ? "\n    " : "", k->pub[i],
                       i + 1 < sizeof(k->pub) ? ":" : "") <= 0)
            goto done;
    ok = BIO_printf(out, "\nASN1 OID: %s\n", hk_prov_group_name(k->curve)) > 0;
done:
    BIO_free(out);
    return ok;
}

const OSSL_DISPATCH hk_prov_text_encoder_functions[] = {
    {OSSL_FUNC_ENCODER_NEWCTX, (void (*)(void))hk_enc_newctx},
    {OSSL_FUNC_ENCODER_FREECTX, (void (*)(void))hk_enc_freectx},
    {OSSL_FUNC_ENCODER_DOES_SELECTION,
     (void (*)(void))hk_enc_text_does_selection},
    {OSSL_FUNC_ENCODER_ENCODE, (void (*)(void))hk_enc_text},
    {0, NULL}};

const OSSL_DISPATCH hk_prov_spki_der_encoder_functions[] = {
    {OSSL_FUNC_ENCODER_NEWCTX, (void (*)(void))hk_enc_newctx},
    {OSSL_FUNC_ENCODER_FREECTX, (void (*)(void))hk_enc_freectx},
    {OSSL_FUNC_ENCODER_DOES_SELECTION, (void (*)(void))hk_enc_does_selection},
    {OSSL_FUNC_ENCODER_ENCODE, (void (*)(void))hk_enc_der},
    {0, NULL}};

const OSSL_DISPATCH hk_prov_spki_pem_encoder_functions[] = {
    {OSSL_FUNC_ENCODER_NEWCTX, (void (*)(void))hk_enc_newctx},
    {OSSL_FUNC_ENCODER_FREECTX, (void (*)(void))hk_enc_freectx},
    {OSSL_FUNC_ENCODER_DOES_SELECTION, (void (*)(void))hk_enc_does_selection},
    {OSSL_FUNC_ENCODER_ENCODE, (void (*)(void))hk_enc_pem},
    {0, NULL}};
