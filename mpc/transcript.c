/* Length-prefixed SHA-256 transcripts. */
#include <string.h>

#include <openssl/crypto.h>

#include "common/libctx.h"
#include "mpc/transcript.h"

static void hk_be32(unsigned char out[4], size_t v)
{
    out[0] = (unsigned char)(v >> 24);
    out[1] = (unsigned char)(v >> 16);
    out[2] = (unsigned char)(v >> 8);
    out[3] = (unsigned char)v;
}

hk_err hk_ts_add(hk_ts *t, const char *tag, const void *data, size_t len)
{
    unsigned char l[4];
    size_t tl;

    if (t == NULL || t->md == NULL || tag == NULL ||
        (data == NULL && len != 0) || len > 0xffffffffu)
        return HK_ERR_ARG;
    tl = strlen(tag);
    hk_be32(l, tl);
    if (!EVP_DigestUpdate(t->md, l, 4) || !EVP_DigestUpdate(t->md, tag, tl))
        return HK_ERR_CRYPTO;
    hk_be32(l, len);
    if (!EVP_DigestUpdate(t->md, l, 4) ||
        (len > 0 && !EVP_DigestUpdate(t->md, data, len)))
        return HK_ERR_CRYPTO;
    return HK_OK;
}

hk_err hk_ts_init(hk_ts *t, const char *label, const hk_binding *b,
                  hk_role role)
{
    unsigned char hdr[3];
    hk_err e;

    if (t == NULL || label == NULL || b == NULL)
        return HK_ERR_ARG;
    t->md = EVP_MD_CTX_new();
    if (t->md == NULL)
        return HK_ERR_NOMEM;
    if (!EVP_DigestInit_ex(t->md, hk_md_sha256(), NULL)) {
        hk_ts_free(t);
        return HK_ERR_CRYPTO;
    }
    hdr[0] = HK_PROTOCOL_VERSION;
    hdr[1] = (unsigned char)b->curve;
    hdr[2] = (unsigned char)role;
    if ((e = hk_ts_add(t, "proto", HK_PROTOCOL_NAME,
                       strlen(HK_PROTOCOL_NAME))) != HK_OK ||
        (e = hk_ts_add(t, "hdr", hdr, sizeof(hdr))) != HK_OK ||
        (e = hk_ts_add(t, "sid", b->sid, HK_ID_LEN)) != HK_OK ||
        (e = hk_ts_add(t, "kid", b->kid, HK_ID_LEN)) != HK_OK ||
        (e = hk_ts_add(t, "label", label, strlen(label))) != HK_OK)
        hk_ts_free(t);
    return e;
}

void hk_ts_free(hk_ts *t)
{
    if (t == NULL)
        return;
    EVP_MD_CTX_free(t->md);
    t->md = NULL;
}

hk_err hk_ts_add_bn(hk_ts *t, const char *tag, const BIGNUM *bn)
{
    unsigned char *buf;
    int n;
    hk_err e;

    if (bn == NULL || BN_is_negative(bn))
        return HK_ERR_ARG;
    n = BN_num_bytes(bn);
    buf = OPENSSL_malloc(n > 0 ? (size_t)n : 1);
    if (buf == NULL)
        return HK_ERR_NOMEM;
    BN_bn2bin(bn, buf);
    e = hk_ts_add(t, tag, buf, (size_t)n);
    OPENSSL_free(buf);
    return e;
}

hk_err hk_ts_add_point(hk_ts *t, const char *tag, const hk_point *p)
{
    if (p == NULL)
        return HK_ERR_ARG;
    return hk_ts_add(t, tag, p->b, HK_POINT_LEN);
}

hk_err hk_ts_final(hk_ts *t, unsigned char *out, size_t n)
{
    unsigned char seed[HK_HASH_LEN], blk[HK_HASH_LEN], ctr[4];
    size_t off, take;
    hk_err e = HK_ERR_CRYPTO;

    if (t == NULL || t->md == NULL || out == NULL)
        return HK_ERR_ARG;
    if (!EVP_DigestFinal_ex(t->md, seed, NULL))
        goto done;
    /* Expand: block i = SHA-256(seed || be32(i)). */
    for (off = 0; off < n; off += take) {
        hk_be32(ctr, off / HK_HASH_LEN);
        if (!EVP_DigestInit_ex(t->md, hk_md_sha256(), NULL) ||
            !EVP_DigestUpdate(t->md, seed, sizeof(seed)) ||
            !EVP_DigestUpdate(t->md, ctr, 4) ||
            !EVP_DigestFinal_ex(t->md, blk, NULL))
            goto done;
        take = n - off < HK_HASH_LEN ? n - off : HK_HASH_LEN;
        memcpy(out + off, blk, take);
    }
    e = HK_OK;
done:
    OPENSSL_cleanse(seed, sizeof(seed));
    OPENSSL_cleanse(blk, sizeof(blk));
    hk_ts_free(t);
    return e;
}

hk_err hk_ts_final_scalar(hk_ts *t, hk_curve *c, hk_scalar *out)
{
    unsigned char wide[64];
    BIGNUM *bn;
    hk_err e;

    if ((e = hk_ts_final(t, wide, sizeof(wide))) != HK_OK)
        return e;
    bn = BN_bin2bn(wide, sizeof(wide), NULL);
    if (bn == NULL)
        return HK_ERR_NOMEM;
    e = hk_scalar_from_bn(c, bn, out);
    BN_free(bn);
    return e;
}

hk_err hk_commit_final(hk_ts *t, const unsigned char *nonce,
                       unsigned char out[HK_HASH_LEN])
{
    hk_err e;

    if (nonce == NULL || out == NULL) {
        hk_ts_free(t);
        return HK_ERR_ARG;
    }
    if ((e = hk_ts_add(t, "nonce", nonce, HK_NONCE_LEN)) != HK_OK) {
        hk_ts_free(t);
        return e;
    }
    return hk_ts_final(t, out, HK_HASH_LEN);
}
