/* Strict parsers of the TPM 2.0 structures of a device attestation
 * (tpm_wire.h): a cursor over the caller's bytes that never reads past
 * its end, one function per structure. */
#include <string.h>

#include <openssl/evp.h>

#include "server/attest/tpm_wire.h"

typedef struct {
    const unsigned char *p;
    size_t n;
    int bad; /* a read went past the end or a bound: everything fails */
} hk_tw;

static const unsigned char *hk_tw_take(hk_tw *c, size_t k)
{
    const unsigned char *p = c->p;

    if (c->bad || k > c->n) {
        c->bad = 1;
        return NULL;
    }
    c->p += k;
    c->n -= k;
    return p;
}

static uint32_t hk_tw_be(hk_tw *c, size_t k)
{
    const unsigned char *p = hk_tw_take(c, k);
    uint32_t v = 0;
    size_t i;

    for (i = 0; p != NULL && i < k; i++)
        v = v << 8 | p[i];
    return v;
}

static uint16_t hk_tw_u16(hk_tw *c) { return (uint16_t)hk_tw_be(c, 2); }
static uint32_t hk_tw_u32(hk_tw *c) { return hk_tw_be(c, 4); }

static uint64_t hk_tw_u64(hk_tw *c)
{
    uint64_t hi = hk_tw_u32(c);

    return hi << 32 | hk_tw_u32(c);
}

/* A TPM2B of at most max bytes. */
static const unsigned char *hk_tw_2b(hk_tw *c, size_t max, size_t *len)
{
    size_t k = hk_tw_u16(c);

    *len = 0;
    if (k > max) {
        c->bad = 1;
        return NULL;
    }
    *len = k;
    return hk_tw_take(c, k);
}

/* HK_OK if every read stayed in bounds and nothing is left over. */
static hk_err hk_tw_end(const hk_tw *c)
{
    return c->bad || c->n != 0 ? HK_ERR_DECODE : HK_OK;
}

/* TPMT_SYM_DEF_OBJECT: AES (keyBits, mode) or NULL. */
static void hk_tw_sym(hk_tw *c, hk_tpm_public *o)
{
    o->sym_alg = hk_tw_u16(c);
    if (o->sym_alg == HK_TPM_ALG_AES) {
        o->sym_bits = hk_tw_u16(c);
        o->sym_mode = hk_tw_u16(c);
    } else if (o->sym_alg != HK_TPM_ALG_NULL) {
        c->bad = 1;
    }
}

/* A signing or encryption scheme: NULL, or an algorithm and its hash
 * (ECDAA's count and RSAES's empty details are refused: neither is one
 * we accept). */
static void hk_tw_scheme(hk_tw *c, uint16_t *scheme, uint16_t *hash)
{
    *scheme = hk_tw_u16(c);
    *hash = 0;
    if (*scheme == HK_TPM_ALG_ECDSA)
        *hash = hk_tw_u16(c);
    else if (*scheme != HK_TPM_ALG_NULL)
        c->bad = 1;
}

static void hk_tw_rsa(hk_tw *c, hk_tpm_public *o)
{
    hk_tw_sym(c, o);
    hk_tw_scheme(c, &o->scheme, &o->scheme_hash);
    o->rsa_bits = hk_tw_u16(c);
    o->rsa_exponent = hk_tw_u32(c);
    o->x = hk_tw_2b(c, 512, &o->xlen);
}

static void hk_tw_ecc(hk_tw *c, hk_tpm_public *o)
{
    uint16_t kdf_hash;

    hk_tw_sym(c, o);
    hk_tw_scheme(c, &o->scheme, &o->scheme_hash);
    o->curve = hk_tw_u16(c);
    hk_tw_scheme(c, &o->kdf, &kdf_hash);
    if (o->kdf != HK_TPM_ALG_NULL)
        c->bad = 1;
    o->x = hk_tw_2b(c, 66, &o->xlen);
    o->y = hk_tw_2b(c, 66, &o->ylen);
}

hk_err hk_tpm_public_parse(const unsigned char *b, size_t n, hk_tpm_public *out)
{
    hk_tw c = {b, n, 0};
    const unsigned char *area;
    size_t alen, plen;
    unsigned int dlen = 0;

    if (b == NULL || out == NULL)
        return HK_ERR_ARG;
    memset(out, 0, sizeof(*out));
    if (n > HK_TPM_PUBLIC_MAX)
        return HK_ERR_TOO_BIG;
    area = hk_tw_2b(&c, HK_TPM_PUBLIC_MAX, &alen);
    if (hk_tw_end(&c) != HK_OK)
        return HK_ERR_DECODE;
    c = (hk_tw){area, alen, 0};
    out->type = hk_tw_u16(&c);
    out->name_alg = hk_tw_u16(&c);
    out->attrs = hk_tw_u32(&c);
    (void)hk_tw_2b(&c, 64, &plen); /* authPolicy */
    if (out->type == HK_TPM_ALG_RSA)
        hk_tw_rsa(&c, out);
    else if (out->type == HK_TPM_ALG_ECC)
        hk_tw_ecc(&c, out);
    else
        c.bad = 1;
    if (hk_tw_end(&c) != HK_OK || out->name_alg != HK_TPM_ALG_SHA256)
        return HK_ERR_DECODE;
    out->name[0] = HK_TPM_ALG_SHA256 >> 8;
    out->name[1] = HK_TPM_ALG_SHA256 & 0xff;
    if (EVP_Digest(area, alen, out->name + 2, &dlen, EVP_sha256(), NULL) != 1 ||
        dlen != HK_TPM_NAME_LEN - 2)
        return HK_ERR_CRYPTO;
    return HK_OK;
}

/* TPMS_QUOTE_INFO: a TPML_PCR_SELECTION (each select at most 8 bytes: 64
 * PCRs) and the digest of the selected PCRs; read and not used (the
 * quote's freshness and origin are what the server checks). */
static void hk_tw_quote_info(hk_tw *c)
{
    uint32_t count = hk_tw_u32(c), i;
    size_t len;

    if (count > 16) {
        c->bad = 1;
        return;
    }
    for (i = 0; i < count && !c->bad; i++) {
        (void)hk_tw_u16(c); /* hash */
        len = hk_tw_be(c, 1);
        if (len > 8)
            c->bad = 1;
        (void)hk_tw_take(c, len);
    }
    (void)hk_tw_2b(c, 64, &len); /* pcrDigest */
}

hk_err hk_tpm_quote_parse(const unsigned char *b, size_t n, hk_tpm_quote *out)
{
    hk_tw c = {b, n, 0};

    if (b == NULL || out == NULL)
        return HK_ERR_ARG;
    memset(out, 0, sizeof(*out));
    if (n > HK_TPM_ATTEST_MAX)
        return HK_ERR_TOO_BIG;
    if (hk_tw_u32(&c) != HK_TPM_GENERATED ||
        hk_tw_u16(&c) != HK_TPM_ST_ATTEST_QUOTE)
        return HK_ERR_DECODE;
    out->signer = hk_tw_2b(&c, 2 + 64, &out->signer_len);
    out->extra = hk_tw_2b(&c, 2 + 64, &out->extra_len);
    out->clock = hk_tw_u64(&c);
    out->reset_count = hk_tw_u32(&c);
    out->restart_count = hk_tw_u32(&c);
    (void)hk_tw_be(&c, 1); /* safe */
    out->firmware = hk_tw_u64(&c);
    hk_tw_quote_info(&c);
    return hk_tw_end(&c);
}

hk_err hk_tpm_sig_parse(const unsigned char *b, size_t n, hk_tpm_sig *out)
{
    hk_tw c = {b, n, 0};

    if (b == NULL || out == NULL)
        return HK_ERR_ARG;
    memset(out, 0, sizeof(*out));
    if (n > HK_TPM_SIG_MAX)
        return HK_ERR_TOO_BIG;
    if (hk_tw_u16(&c) != HK_TPM_ALG_ECDSA)
        return HK_ERR_DECODE;
    out->hash = hk_tw_u16(&c);
    out->r = hk_tw_2b(&c, 66, &out->rlen);
    out->s = hk_tw_2b(&c, 66, &out->slen);
    return hk_tw_end(&c);
}
