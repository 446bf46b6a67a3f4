/* The qualifying data of an attestation quote (attest_qual.h). */
#include <openssl/evp.h>

#include "common/attest_qual.h"
#include "common/libctx.h"

hk_err hk_attest_qualifying(const unsigned char *sid, const unsigned char *kid,
                            unsigned char out[HK_ATTEST_QUAL_LEN])
{
    static const char tag[] = "halfkey/attest/1";
    const EVP_MD *md = hk_md_sha256();
    EVP_MD_CTX *c;
    hk_err e = HK_ERR_CRYPTO;

    if (sid == NULL || kid == NULL || out == NULL)
        return HK_ERR_ARG;
    if (md == NULL || (c = EVP_MD_CTX_new()) == NULL)
        return HK_ERR_CRYPTO;
    if (EVP_DigestInit_ex(c, md, NULL) == 1 &&
        EVP_DigestUpdate(c, tag, sizeof(tag) - 1) == 1 &&
        EVP_DigestUpdate(c, sid, HK_ATTEST_ID_LEN) == 1 &&
        EVP_DigestUpdate(c, kid, HK_ATTEST_ID_LEN) == 1 &&
        EVP_DigestFinal_ex(c, out, NULL) == 1)
        e = HK_OK;
    EVP_MD_CTX_free(c);
    return e;
}
