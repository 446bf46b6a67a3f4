/* Publicly verifiable encryption of the client share (see mpc/pve.h for
 * the construction, its soundness and the blob format). */
#include <limits.h>
#include <pthread.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ec.h>
#include <openssl/kdf.h>
#include <openssl/obj_mac.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "mpc/pve.h"
#include "mpc/pve_impl.h"
#include "mpc/pve_p256.h"

#define PVE_MAGIC "HKPV"
#define PVE_TAG_LEN 16
#define PVE_ECIES_CT_LEN (HK_POINT_LEN + HK_SCALAR_LEN + PVE_TAG_LEN) /* 81 */
#define PVE_RSA_BITS 3072
#define PVE_RSA_LEN (PVE_RSA_BITS / 8) /* 384 */
#define PVE_CT_MAX PVE_RSA_LEN
#define PVE_LABEL_LEN (HK_HASH_LEN + 3)
#define PVE_PEM_MAX 16384
#define PVE_ECIES_INFO "halfkey-pve-ecies-v1"
#define PVE_ECIES_EPH "halfkey-pve-ecies-eph"
#define PVE_FP_DOMAIN "halfkey-pve-bk-v1"
#define PVE_KDF_LEN 44 /* AES-256 key and 96-bit GCM nonce */

/* Header offsets (mpc/pve.h). */
#define OFF_VER 4
#define OFF_TYPE 5
#define OFF_CURVE 6
#define OFF_K 7
#define OFF_T 8
#define OFF_KID 9
#define OFF_EPOCH 25
#define OFF_FP 33
#define OFF_Q1 65
#define OFF_BODY_LEN 98
#define OFF_CHAL HK_PVE_HDR_LEN                 /* the challenge digest */
#define PVE_ROWS (HK_PVE_HDR_LEN + HK_HASH_LEN) /* the first row */

struct hk_pve_pub {
    hk_pve_type type;
    EVP_PKEY *pkey;
    hk_point ec; /* ECIES: the P-256 public point B */
    unsigned char fp[HK_HASH_LEN];
};

struct hk_pve_priv {
    hk_pve_pub *pub;
    EVP_PKEY *pkey;
    hk_scalar d; /* ECIES: the private scalar */
};

/* ---- small helpers ------------------------------------------------------ */

static void pve_be(unsigned char *out, unsigned long long v, int n)
{
    int i;

    for (i = n - 1; i >= 0; i--) {
        out[i] = (unsigned char)v;
        v >>= 8;
    }
}

static unsigned long long pve_get_be(const unsigned char *in, int n)
{
    unsigned long long v = 0;
    int i;

    for (i = 0; i < n; i++)
        v = (v << 8) | in[i];
    return v;
}

static size_t pve_ct_len(hk_pve_type type)
{
    return type == HK_PVE_ECIES_P256 ? PVE_ECIES_CT_LEN : PVE_RSA_LEN;
}

static size_t pve_row_len(hk_pve_type type, unsigned k)
{
    return k * (2 + pve_ct_len(type)) + HK_SCALAR_LEN + HK_PVE_SEED_LEN;
}

static int pve_params_ok(const hk_pve_params *p)
{
    return p != NULL && (p->version == 1 || p->version == 2) &&
           (p->k == 2 || p->k == 4 || p->k == 8 || p->k == 16) && p->t >= 1 &&
           p->t <= HK_PVE_T_MAX;
}

void hk_pve_std_params(unsigned version, hk_pve_type type, hk_pve_params *p)
{
    p->version = version;
    if (version >= 2 && type == HK_PVE_ECIES_P256) {
        p->k = HK_PVE_ECIES_K;
        p->t = HK_PVE_ECIES_T;
    } else {
        p->k = HK_PVE_RSA_K;
        p->t = HK_PVE_RSA_T;
    }
}

/* Version 2 ECIES rows: ephemerals a + j*b, openings are the ephemeral
 * scalars (mpc/pve.h). */
static int pve_linear(unsigned version, hk_pve_type type)
{
    return version >= 2 && type == HK_PVE_ECIES_P256;
}

static unsigned pve_log2(unsigned k)
{
    unsigned b = 0;

    while ((1u << b) < k)
        b++;
    return b;
}

/* Challenge of row i: bits [i*b, (i+1)*b) of h, most significant first. */
static unsigned pve_chal(const unsigned char *h, unsigned i, unsigned b)
{
    unsigned v = 0, n, pos;

    for (n = 0; n < b; n++) {
        pos = i * b + n;
        v = (v << 1) | ((h[pos / 8] >> (7 - pos % 8)) & 1u);
    }
    return v;
}

/* ---- backup keys -------------------------------------------------------- */

void hk_pve_pub_free(hk_pve_pub *k)
{
    if (k == NULL)
        return;
    EVP_PKEY_free(k->pkey);
    OPENSSL_free(k);
}

void hk_pve_priv_free(hk_pve_priv *k)
{
    if (k == NULL)
        return;
    hk_pve_pub_free(k->pub);
    EVP_PKEY_free(k->pkey);
    OPENSSL_clear_free(k, sizeof(*k));
}

const hk_pve_pub *hk_pve_priv_pub(const hk_pve_priv *k)
{
    return k == NULL ? NULL : k->pub;
}

hk_pve_type hk_pve_pub_type(const hk_pve_pub *k) { return k->type; }

void hk_pve_pub_fingerprint(const hk_pve_pub *k, unsigned char fp[HK_HASH_LEN])
{
    memcpy(fp, k->fp, HK_HASH_LEN);
}

/* The P-256 public point of an EC key as a validated compressed point. */
static hk_err pve_ec_point(EVP_PKEY *pkey, hk_point *out)
{
    unsigned char buf[HK_POINT_UNCOMPRESSED_LEN], cmp[HK_POINT_LEN];
    size_t n = 0;
    hk_curve *c = NULL;
    hk_err e;

    if (!EVP_PKEY_get_octet_string_param(
            pkey, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, buf, sizeof(buf), &n))
        return HK_ERR_DECODE;
    if (n == HK_POINT_UNCOMPRESSED_LEN && buf[0] == 4) {
        cmp[0] = (unsigned char)(2 | (buf[64] & 1));
        memcpy(cmp + 1, buf + 1, 32);
    } else if (n == HK_POINT_LEN) {
        memcpy(cmp, buf, HK_POINT_LEN);
    } else {
        return HK_ERR_DECODE;
    }
    if ((e = hk_curve_new(HK_CURVE_P256, &c)) != HK_OK)
        return e;
    e = hk_point_parse(c, cmp, HK_POINT_LEN, out);
    hk_curve_free(c);
    return e;
}

/* Checks a key's kind and size and builds its public half. Takes a new
 * reference to pkey. */
static hk_err pve_pub_new(EVP_PKEY *pkey, hk_pve_pub **out)
{
    hk_pve_pub *k;
    unsigned char *der = NULL, *buf = NULL;
    char group[64];
    BIGNUM *rsa_e = NULL;
    size_t flen;
    int dlen;
    hk_err e = HK_ERR_CONFIG;

    k = OPENSSL_zalloc(sizeof(*k));
    if (k == NULL)
        return HK_ERR_NOMEM;
    if (EVP_PKEY_is_a(pkey, "EC")) {
        if (!EVP_PKEY_get_group_name(pkey, group, sizeof(group), NULL) ||
            strcmp(group, "prime256v1") != 0)
            goto done;
        k->type = HK_PVE_ECIES_P256;
        if ((e = pve_ec_point(pkey, &k->ec)) != HK_OK)
            goto done;
    } else if (EVP_PKEY_is_a(pkey, "RSA")) {
        if (EVP_PKEY_get_bits(pkey) != PVE_RSA_BITS ||
            !EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_RSA_E, &rsa_e) ||
            !BN_is_word(rsa_e, RSA_F4))
            goto done;
        k->type = HK_PVE_RSA_OAEP_3072;
    } else {
        goto done;
    }
    e = HK_ERR_CRYPTO;
    dlen = i2d_PUBKEY(pkey, &der);
    if (dlen <= 0)
        goto done;
    flen = sizeof(PVE_FP_DOMAIN) - 1 + 1 + (size_t)dlen;
    if ((buf = OPENSSL_malloc(flen)) == NULL) {
        e = HK_ERR_NOMEM;
        goto done;
    }
    memcpy(buf, PVE_FP_DOMAIN, sizeof(PVE_FP_DOMAIN) - 1);
    buf[sizeof(PVE_FP_DOMAIN) - 1] = (unsigned char)k->type;
    memcpy(buf + sizeof(PVE_FP_DOMAIN), der, (size_t)dlen);
    if (!EVP_Digest(buf, flen, k->fp, NULL, EVP_sha256(), NULL))
        goto done;
    /* Keep a public-only key (the private half is not referenced). */
    {
        const unsigned char *p = der;

        k->pkey = d2i_PUBKEY(NULL, &p, dlen);
        if (k->pkey == NULL)
            goto done;
    }
    *out = k;
    k = NULL;
    e = HK_OK;
done:
    BN_free(rsa_e);
    OPENSSL_free(der);
    OPENSSL_free(buf);
    hk_pve_pub_free(k);
    ERR_clear_error();
    return e;
}

/* The first "-----BEGIN ...-----" label of a PEM text must be `want`. */
static int pve_pem_is(const char *pem, size_t len, const char *want)
{
    static const char begin[] = "-----BEGIN ";
    size_t i = 0, wl = strlen(want);

    while (i < len && (pem[i] == ' ' || pem[i] == '\t' || pem[i] == '\r' ||
                       pem[i] == '\n'))
        i++;
    if (len - i < sizeof(begin) - 1 + wl + 5 ||
        memcmp(pem + i, begin, sizeof(begin) - 1) != 0)
        return 0;
    i += sizeof(begin) - 1;
    return memcmp(pem + i, want, wl) == 0 &&
           memcmp(pem + i + wl, "-----", 5) == 0;
}

hk_err hk_pve_pub_from_pem(const char *pem, size_t len, hk_pve_pub **out)
{
    BIO *bio;
    EVP_PKEY *pkey;
    hk_err e;

    if (pem == NULL || out == NULL)
        return HK_ERR_ARG;
    *out = NULL;
    if (len > PVE_PEM_MAX)
        return HK_ERR_TOO_BIG;
    if (!pve_pem_is(pem, len, "PUBLIC KEY"))
        return HK_ERR_DECODE;
    if ((bio = BIO_new_mem_buf(pem, (int)len)) == NULL)
        return HK_ERR_NOMEM;
    pkey = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
    BIO_free(bio);
    if (pkey == NULL) {
        ERR_clear_error();
        return HK_ERR_DECODE;
    }
    e = pve_pub_new(pkey, out);
    EVP_PKEY_free(pkey);
    return e;
}

/* Passphrase callback: never prompts; no passphrase fails. */
static int pve_pass_cb(char *buf, int size, int rwflag, void *u)
{
    size_t n;

    (void)rwflag;
    if (u == NULL)
        return -1;
    n = strlen((const char *)u);
    if (size < 0 || n > (size_t)size)
        return -1;
    memcpy(buf, u, n);
    return (int)n;
}

static hk_err pve_priv_new(EVP_PKEY *pkey, hk_pve_priv **out)
{
    hk_pve_priv *k;
    BIGNUM *d = NULL;
    hk_curve *c = NULL;
    unsigned char db[HK_SCALAR_LEN];
    hk_err e;

    k = OPENSSL_zalloc(sizeof(*k));
    if (k == NULL)
        return HK_ERR_NOMEM;
    if ((e = pve_pub_new(pkey, &k->pub)) != HK_OK)
        goto done;
    if (k->pub->type == HK_PVE_ECIES_P256) {
        e = HK_ERR_DECODE;
        if (!EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_PRIV_KEY, &d) ||
            BN_bn2binpad(d, db, sizeof(db)) != (int)sizeof(db))
            goto done;
        if ((e = hk_curve_new(HK_CURVE_P256, &c)) != HK_OK ||
            (e = hk_scalar_parse(c, db, sizeof(db), &k->d)) != HK_OK)
            goto done;
    }
    if (!EVP_PKEY_up_ref(pkey)) {
        e = HK_ERR_CRYPTO;
        goto done;
    }
    k->pkey = pkey;
    *out = k;
    k = NULL;
    e = HK_OK;
done:
    OPENSSL_cleanse(db, sizeof(db));
    BN_clear_free(d);
    hk_curve_free(c);
    hk_pve_priv_free(k);
    ERR_clear_error();
    return e;
}

hk_err hk_pve_priv_from_pem(const char *pem, size_t len, const char *passphrase,
                            hk_pve_priv **out)
{
    BIO *bio;
    EVP_PKEY *pkey;
    int enc;
    hk_err e;

    if (pem == NULL || out == NULL)
        return HK_ERR_ARG;
    *out = NULL;
    if (len > PVE_PEM_MAX)
        return HK_ERR_TOO_BIG;
    enc = pve_pem_is(pem, len, "ENCRYPTED PRIVATE KEY");
    if (!enc && !pve_pem_is(pem, len, "PRIVATE KEY"))
        return HK_ERR_DECODE;
    if (enc && passphrase == NULL)
        return HK_ERR_PIN;
    if ((bio = BIO_new_mem_buf(pem, (int)len)) == NULL)
        return HK_ERR_NOMEM;
    pkey = PEM_read_bio_PrivateKey(bio, NULL, pve_pass_cb,
                                   enc ? (void *)passphrase : NULL);
    BIO_free(bio);
    if (pkey == NULL) {
        ERR_clear_error();
        return enc ? HK_ERR_PIN : HK_ERR_DECODE;
    }
    e = pve_priv_new(pkey, out);
    EVP_PKEY_free(pkey);
    return e;
}

hk_err hk_pve_keygen(hk_pve_type type, hk_pve_priv **out)
{
    EVP_PKEY *pkey;
    hk_err e;

    if (out == NULL)
        return HK_ERR_ARG;
    *out = NULL;
    if (type == HK_PVE_ECIES_P256)
        pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    else if (type == HK_PVE_RSA_OAEP_3072)
        pkey = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)PVE_RSA_BITS);
    else
        return HK_ERR_ARG;
    if (pkey == NULL) {
        ERR_clear_error();
        return HK_ERR_CRYPTO;
    }
    e = pve_priv_new(pkey, out);
    EVP_PKEY_free(pkey);
    return e;
}

static hk_err pve_bio_out(BIO *bio, char **pem, size_t *len)
{
    char *data;
    long n = BIO_get_mem_data(bio, &data);

    if (n <= 0)
        return HK_ERR_CRYPTO;
    if ((*pem = OPENSSL_malloc((size_t)n + 1)) == NULL)
        return HK_ERR_NOMEM;
    memcpy(*pem, data, (size_t)n);
    (*pem)[n] = '\0';
    *len = (size_t)n;
    return HK_OK;
}

hk_err hk_pve_pub_to_pem(const hk_pve_pub *k, char **pem, size_t *len)
{
    BIO *bio;
    hk_err e = HK_ERR_CRYPTO;

    if (k == NULL || pem == NULL || len == NULL)
        return HK_ERR_ARG;
    if ((bio = BIO_new(BIO_s_mem())) == NULL)
        return HK_ERR_NOMEM;
    if (PEM_write_bio_PUBKEY(bio, k->pkey))
        e = pve_bio_out(bio, pem, len);
    BIO_free(bio);
    ERR_clear_error();
    return e;
}

hk_err hk_pve_priv_to_pem(const hk_pve_priv *k, const char *passphrase,
                          char **pem, size_t *len)
{
    BIO *bio;
    hk_err e = HK_ERR_CRYPTO;
    int ok;

    if (k == NULL || pem == NULL || len == NULL ||
        (passphrase != NULL && strlen(passphrase) > INT_MAX))
        return HK_ERR_ARG;
    if ((bio = BIO_new(BIO_s_secmem())) == NULL)
        return HK_ERR_NOMEM;
    if (passphrase != NULL)
        ok = PEM_write_bio_PKCS8PrivateKey(bio, k->pkey, EVP_aes_256_cbc(),
                                           passphrase, (int)strlen(passphrase),
                                           NULL, NULL);
    else
        ok = PEM_write_bio_PKCS8PrivateKey(bio, k->pkey, NULL, NULL, 0, NULL,
                                           NULL);
    if (ok)
        e = pve_bio_out(bio, pem, len);
    BIO_free(bio);
    ERR_clear_error();
    return e;
}

/* ---- deterministic encryption ------------------------------------------- */

typedef struct {
    const hk_pve_pub *bk;
    EC_GROUP *grp;       /* ECIES: P-256 */
    EC_POINT *B;         /* ECIES: the backup key, decoded once */
    BN_CTX *bn;          /* ECIES */
    EVP_KDF_CTX *kdf;    /* ECIES: HKDF */
    EVP_CIPHER_CTX *gcm; /* ECIES */
    EVP_PKEY_CTX *rsa;   /* RSA: the raw permutation */
    EVP_MD *sha256;      /* RSA: OAEP and MGF1 */
    EVP_MD_CTX *md;
    unsigned char ctx[HK_HASH_LEN]; /* the context hash of the labels */
} pve_eng;

static void pve_eng_free(pve_eng *g)
{
    EC_POINT_free(g->B);
    EC_GROUP_free(g->grp);
    BN_CTX_free(g->bn);
    EVP_KDF_CTX_free(g->kdf);
    EVP_CIPHER_CTX_free(g->gcm);
    EVP_PKEY_CTX_free(g->rsa);
    EVP_MD_free(g->sha256);
    EVP_MD_CTX_free(g->md);
    memset(g, 0, sizeof(*g));
}

static hk_err pve_eng_init(pve_eng *g, const hk_pve_pub *bk)
{
    EVP_KDF *kdf;

    memset(g, 0, sizeof(*g));
    g->bk = bk;
    g->md = EVP_MD_CTX_new();
    if (g->md == NULL)
        return HK_ERR_NOMEM;
    if (bk->type == HK_PVE_ECIES_P256) {
        g->grp = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1);
        g->bn = BN_CTX_secure_new();
        if (g->grp == NULL || g->bn == NULL ||
            (g->B = EC_POINT_new(g->grp)) == NULL)
            return HK_ERR_NOMEM;
        if (!EC_POINT_oct2point(g->grp, g->B, bk->ec.b, HK_POINT_LEN, g->bn))
            return HK_ERR_POINT;
        kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
        if (kdf == NULL)
            return HK_ERR_CRYPTO;
        g->kdf = EVP_KDF_CTX_new(kdf);
        EVP_KDF_free(kdf);
        g->gcm = EVP_CIPHER_CTX_new();
        if (g->kdf == NULL || g->gcm == NULL)
            return HK_ERR_NOMEM;
        return HK_OK;
    }
    g->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    g->rsa = EVP_PKEY_CTX_new_from_pkey(NULL, bk->pkey, NULL);
    if (g->sha256 == NULL || g->rsa == NULL)
        return HK_ERR_NOMEM;
    if (EVP_PKEY_encrypt_init(g->rsa) <= 0 ||
        EVP_PKEY_CTX_set_rsa_padding(g->rsa, RSA_NO_PADDING) <= 0)
        return HK_ERR_CRYPTO;
    return HK_OK;
}

static void pve_label(const pve_eng *g, unsigned i, unsigned j,
                      unsigned char out[PVE_LABEL_LEN])
{
    memcpy(out, g->ctx, HK_HASH_LEN);
    pve_be(out + HK_HASH_LEN, i, 2);
    out[HK_HASH_LEN + 2] = (unsigned char)j;
}

static hk_err pve_ecies_kdf(pve_eng *g, const unsigned char *E,
                            const unsigned char z[32],
                            const unsigned char label[PVE_LABEL_LEN],
                            unsigned char okm[PVE_KDF_LEN])
{
    unsigned char salt[2 * HK_POINT_LEN];
    unsigned char info[sizeof(PVE_ECIES_INFO) - 1 + PVE_LABEL_LEN];
    char digest[] = "SHA256";
    OSSL_PARAM prm[5];

    memcpy(salt, E, HK_POINT_LEN);
    memcpy(salt + HK_POINT_LEN, g->bk->ec.b, HK_POINT_LEN);
    memcpy(info, PVE_ECIES_INFO, sizeof(PVE_ECIES_INFO) - 1);
    memcpy(info + sizeof(PVE_ECIES_INFO) - 1, label, PVE_LABEL_LEN);
    prm[0] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0);
    prm[1] =
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)z, 32);
    prm[2] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, salt,
                                               sizeof(salt));
    prm[3] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info,
                                               sizeof(info));
    prm[4] = OSSL_PARAM_construct_end();
    if (EVP_KDF_derive(g->kdf, okm, PVE_KDF_LEN, prm) <= 0)
        return HK_ERR_CRYPTO;
    return HK_OK;
}

/* z = x(k*P) (32 bytes). k is secret: a BN_FLG_CONSTTIME BIGNUM, and
 * EC_POINT_mul with one point runs OpenSSL's constant-time P-256 code. */
static hk_err pve_ecies_dh(pve_eng *g, const BIGNUM *k, const EC_POINT *P,
                           unsigned char z[32])
{
    EC_POINT *S = EC_POINT_new(g->grp);
    BIGNUM *x;
    hk_err e = HK_ERR_CRYPTO;

    if (S == NULL)
        return HK_ERR_NOMEM;
    BN_CTX_start(g->bn);
    x = BN_CTX_get(g->bn);
    if (x != NULL && EC_POINT_mul(g->grp, S, NULL, P, k, g->bn) &&
        !EC_POINT_is_at_infinity(g->grp, S) &&
        EC_POINT_get_affine_coordinates(g->grp, S, x, NULL, g->bn) &&
        BN_bn2binpad(x, z, 32) == 32)
        e = HK_OK;
    BN_clear(x);
    BN_CTX_end(g->bn);
    EC_POINT_clear_free(S);
    return e;
}

/* AES-256-GCM of the 32-byte pt (dir 1) or ct (dir 0) under okm. */
static hk_err pve_gcm(pve_eng *g, int dir, const unsigned char *okm,
                      const unsigned char *label, const unsigned char *in,
                      unsigned char *out, unsigned char tag[PVE_TAG_LEN])
{
    unsigned char fin[16];
    int n;

    if (!EVP_CipherInit_ex(g->gcm, EVP_aes_256_gcm(), NULL, okm, okm + 32,
                           dir) ||
        !EVP_CipherUpdate(g->gcm, NULL, &n, label, PVE_LABEL_LEN) ||
        !EVP_CipherUpdate(g->gcm, out, &n, in, HK_SCALAR_LEN) ||
        n != HK_SCALAR_LEN)
        return HK_ERR_CRYPTO;
    if (dir == 1)
        return EVP_CipherFinal_ex(g->gcm, fin, &n) &&
                       EVP_CIPHER_CTX_ctrl(g->gcm, EVP_CTRL_GCM_GET_TAG,
                                           PVE_TAG_LEN, tag)
                   ? HK_OK
                   : HK_ERR_CRYPTO;
    if (!EVP_CIPHER_CTX_ctrl(g->gcm, EVP_CTRL_GCM_SET_TAG, PVE_TAG_LEN, tag) ||
        EVP_CipherFinal_ex(g->gcm, fin, &n) <= 0) {
        OPENSSL_cleanse(out, HK_SCALAR_LEN);
        return HK_ERR_PROOF;
    }
    return HK_OK;
}

/* ECIES: E = e*G, Z = x(e*B), AES-256-GCM under HKDF(Z); e from the seed
 * (version 1) or the seed is e (version 2: HK_ERR_SCALAR unless in
 * [1, n)). */
static hk_err pve_ecies_enc(pve_eng *g, unsigned version,
                            const unsigned char *label,
                            const unsigned char pt[HK_SCALAR_LEN],
                            const unsigned char seed[HK_PVE_SEED_LEN],
                            unsigned char *out)
{
    unsigned char wide[64], okm[PVE_KDF_LEN], z[32];
    BIGNUM *w, *eph;
    EC_POINT *E = NULL;
    hk_err e = HK_ERR_CRYPTO;

    BN_CTX_start(g->bn);
    w = BN_CTX_get(g->bn);
    eph = BN_CTX_get(g->bn);
    if (eph == NULL || (E = EC_POINT_new(g->grp)) == NULL) {
        e = HK_ERR_NOMEM;
        goto done;
    }
    BN_set_flags(w, BN_FLG_CONSTTIME);
    BN_set_flags(eph, BN_FLG_CONSTTIME);
    if (version >= 2) {
        if (BN_bin2bn(seed, HK_PVE_SEED_LEN, eph) == NULL)
            goto done;
        e = HK_ERR_SCALAR;
        if (BN_is_zero(eph) || BN_cmp(eph, EC_GROUP_get0_order(g->grp)) >= 0)
            goto done;
        e = HK_ERR_CRYPTO;
    } else if (!EVP_DigestInit_ex(g->md, EVP_sha512(), NULL) ||
               !EVP_DigestUpdate(g->md, PVE_ECIES_EPH,
                                 sizeof(PVE_ECIES_EPH) - 1) ||
               !EVP_DigestUpdate(g->md, seed, HK_PVE_SEED_LEN) ||
               !EVP_DigestFinal_ex(g->md, wide, NULL) ||
               BN_bin2bn(wide, sizeof(wide), w) == NULL ||
               !BN_nnmod(eph, w, EC_GROUP_get0_order(g->grp), g->bn))
        goto done;
    if (BN_is_zero(eph)) /* probability 2^-256 */
        goto done;
    if (!EC_POINT_mul(g->grp, E, eph, NULL, NULL, g->bn) ||
        EC_POINT_point2oct(g->grp, E, POINT_CONVERSION_COMPRESSED, out,
                           HK_POINT_LEN, g->bn) != HK_POINT_LEN)
        goto done;
    if ((e = pve_ecies_dh(g, eph, g->B, z)) != HK_OK ||
        (e = pve_ecies_kdf(g, out, z, label, okm)) != HK_OK)
        goto done;
    e = pve_gcm(g, 1, okm, label, pt, out + HK_POINT_LEN,
                out + HK_POINT_LEN + HK_SCALAR_LEN);
done:
    BN_clear(w);
    BN_clear(eph);
    BN_CTX_end(g->bn);
    EC_POINT_clear_free(E);
    OPENSSL_cleanse(wide, sizeof(wide));
    OPENSSL_cleanse(okm, sizeof(okm));
    OPENSSL_cleanse(z, sizeof(z));
    return e;
}

static hk_err pve_ecies_dec(pve_eng *g, const hk_scalar *d,
                            const unsigned char *label, const unsigned char *ct,
                            unsigned char pt[HK_SCALAR_LEN])
{
    unsigned char okm[PVE_KDF_LEN], z[32], tag[PVE_TAG_LEN];
    EC_POINT *E = EC_POINT_new(g->grp);
    BIGNUM *k = NULL;
    hk_err e = HK_ERR_PROOF;

    if (E == NULL)
        return HK_ERR_NOMEM;
    if (!EC_POINT_oct2point(g->grp, E, ct, HK_POINT_LEN, g->bn) ||
        EC_POINT_is_at_infinity(g->grp, E) ||
        EC_POINT_is_on_curve(g->grp, E, g->bn) != 1)
        goto done;
    if ((e = hk_scalar_to_bn(d, &k)) != HK_OK ||
        (e = pve_ecies_dh(g, k, E, z)) != HK_OK ||
        (e = pve_ecies_kdf(g, ct, z, label, okm)) != HK_OK)
        goto done;
    memcpy(tag, ct + HK_POINT_LEN + HK_SCALAR_LEN, PVE_TAG_LEN);
    e = pve_gcm(g, 0, okm, label, ct + HK_POINT_LEN, pt, tag);
done:
    EC_POINT_free(E);
    BN_clear_free(k);
    OPENSSL_cleanse(okm, sizeof(okm));
    OPENSSL_cleanse(z, sizeof(z));
    ERR_clear_error();
    return e;
}

/* out ^= MGF1-SHA-256(seed, n) (RFC 8017 B.2.1). */
static hk_err pve_mgf1_xor(pve_eng *g, unsigned char *out, size_t n,
                           const unsigned char *seed, size_t slen)
{
    unsigned char ctr[4], blk[HK_HASH_LEN];
    size_t off, i, take;

    for (off = 0; off < n; off += take) {
        pve_be(ctr, off / HK_HASH_LEN, 4);
        if (!EVP_DigestInit_ex(g->md, g->sha256, NULL) ||
            !EVP_DigestUpdate(g->md, seed, slen) ||
            !EVP_DigestUpdate(g->md, ctr, 4) ||
            !EVP_DigestFinal_ex(g->md, blk, NULL))
            return HK_ERR_CRYPTO;
        take = n - off < HK_HASH_LEN ? n - off : HK_HASH_LEN;
        for (i = 0; i < take; i++)
            out[off + i] ^= blk[i];
    }
    OPENSSL_cleanse(blk, sizeof(blk));
    return HK_OK;
}

/* RSA-OAEP (SHA-256, MGF1-SHA-256) with the given OAEP seed: EME-OAEP
 * encoding (RFC 8017 7.1.1 step 2) then the raw permutation. */
static hk_err pve_rsa_enc(pve_eng *g, const unsigned char *label,
                          const unsigned char pt[HK_SCALAR_LEN],
                          const unsigned char seed[HK_PVE_SEED_LEN],
                          unsigned char *out)
{
    unsigned char em[PVE_RSA_LEN];
    unsigned char *ms = em + 1, *db = em + 1 + HK_HASH_LEN;
    const size_t dblen = PVE_RSA_LEN - HK_HASH_LEN - 1;
    size_t olen = PVE_RSA_LEN;
    hk_err e = HK_ERR_CRYPTO;

    memset(em, 0, sizeof(em));
    /* DB = lHash || PS (zeros) || 0x01 || M */
    if (!EVP_DigestInit_ex(g->md, g->sha256, NULL) ||
        !EVP_DigestUpdate(g->md, label, PVE_LABEL_LEN) ||
        !EVP_DigestFinal_ex(g->md, db, NULL))
        goto done;
    db[dblen - HK_SCALAR_LEN - 1] = 0x01;
    memcpy(db + dblen - HK_SCALAR_LEN, pt, HK_SCALAR_LEN);
    memcpy(ms, seed, HK_PVE_SEED_LEN);
    if ((e = pve_mgf1_xor(g, db, dblen, seed, HK_PVE_SEED_LEN)) != HK_OK ||
        (e = pve_mgf1_xor(g, ms, HK_HASH_LEN, db, dblen)) != HK_OK)
        goto done;
    e = HK_ERR_CRYPTO;
    if (EVP_PKEY_encrypt(g->rsa, out, &olen, em, sizeof(em)) <= 0 ||
        olen != PVE_RSA_LEN)
        goto done;
    e = HK_OK;
done:
    OPENSSL_cleanse(em, sizeof(em));
    ERR_clear_error();
    return e;
}

/* OpenSSL's own OAEP decryption (constant-time padding check). */
static hk_err pve_rsa_dec(const hk_pve_priv *k, const unsigned char *label,
                          const unsigned char *ct,
                          unsigned char pt[HK_SCALAR_LEN])
{
    EVP_PKEY_CTX *ctx;
    unsigned char out[PVE_RSA_LEN], *lab;
    size_t olen = sizeof(out);
    hk_err e = HK_ERR_CRYPTO;

    ctx = EVP_PKEY_CTX_new_from_pkey(NULL, k->pkey, NULL);
    lab = OPENSSL_memdup(label, PVE_LABEL_LEN);
    if (ctx == NULL || lab == NULL) {
        OPENSSL_free(lab);
        e = HK_ERR_NOMEM;
        goto done;
    }
    if (EVP_PKEY_decrypt_init(ctx) <= 0 ||
        EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) <= 0 ||
        EVP_PKEY_CTX_set_rsa_oaep_md(ctx, EVP_sha256()) <= 0 ||
        EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, EVP_sha256()) <= 0) {
        OPENSSL_free(lab);
        goto done;
    }
    if (EVP_PKEY_CTX_set0_rsa_oaep_label(ctx, lab, PVE_LABEL_LEN) <= 0) {
        OPENSSL_free(lab);
        goto done;
    }
    e = HK_ERR_PROOF;
    if (EVP_PKEY_decrypt(ctx, out, &olen, ct, PVE_RSA_LEN) <= 0 ||
        olen != HK_SCALAR_LEN)
        goto done;
    memcpy(pt, out, HK_SCALAR_LEN);
    e = HK_OK;
done:
    OPENSSL_cleanse(out, sizeof(out));
    EVP_PKEY_CTX_free(ctx);
    ERR_clear_error();
    return e;
}

static hk_err pve_enc(pve_eng *g, unsigned version, unsigned i, unsigned j,
                      const unsigned char pt[HK_SCALAR_LEN],
                      const unsigned char seed[HK_PVE_SEED_LEN],
                      unsigned char *out)
{
    unsigned char label[PVE_LABEL_LEN];

    pve_label(g, i, j, label);
    if (g->bk->type == HK_PVE_ECIES_P256)
        return pve_ecies_enc(g, version, label, pt, seed, out);
    return pve_rsa_enc(g, label, pt, seed, out);
}

static hk_err pve_dec(pve_eng *g, const hk_pve_priv *k, unsigned i, unsigned j,
                      const unsigned char *ct, unsigned char pt[HK_SCALAR_LEN])
{
    unsigned char label[PVE_LABEL_LEN];

    pve_label(g, i, j, label);
    if (g->bk->type == HK_PVE_ECIES_P256)
        return pve_ecies_dec(g, &k->d, label, ct, pt);
    return pve_rsa_dec(k, label, ct, pt);
}

/* ---- blob --------------------------------------------------------------- */

hk_err hk_pve_peek(const unsigned char *blob, size_t len, hk_pve_info *out)
{
    size_t row, clen, off;
    unsigned i, j;
    hk_pve_params p;

    if (blob == NULL || out == NULL)
        return HK_ERR_ARG;
    memset(out, 0, sizeof(*out));
    if (len > HK_PVE_MAX_BLOB)
        return HK_ERR_TOO_BIG;
    if (len < HK_PVE_HDR_LEN || memcmp(blob, PVE_MAGIC, 4) != 0)
        return HK_ERR_DECODE;
    if (blob[OFF_VER] != 1 && blob[OFF_VER] != HK_PVE_VERSION)
        return HK_ERR_VERSION;
    if (blob[OFF_TYPE] != HK_PVE_ECIES_P256 &&
        blob[OFF_TYPE] != HK_PVE_RSA_OAEP_3072)
        return HK_ERR_DECODE;
    if (hk_curve_name((hk_curve_id)blob[OFF_CURVE]) == NULL)
        return HK_ERR_CURVE;
    p.version = blob[OFF_VER];
    p.k = blob[OFF_K];
    p.t = blob[OFF_T];
    if (!pve_params_ok(&p))
        return HK_ERR_DECODE;
    if (sizeof(unsigned long) < 8 &&
        pve_get_be(blob + OFF_EPOCH, 8) > ULONG_MAX)
        return HK_ERR_DECODE;
    out->version = blob[OFF_VER];
    out->type = (hk_pve_type)blob[OFF_TYPE];
    out->curve = (hk_curve_id)blob[OFF_CURVE];
    out->k = p.k;
    out->t = p.t;
    memcpy(out->kid, blob + OFF_KID, HK_ID_LEN);
    out->epoch = (unsigned long)pve_get_be(blob + OFF_EPOCH, 8);
    memcpy(out->bk_fp, blob + OFF_FP, HK_HASH_LEN);
    memcpy(out->q1.b, blob + OFF_Q1, HK_POINT_LEN);
    row = pve_row_len(out->type, p.k);
    clen = pve_ct_len(out->type);
    if (pve_get_be(blob + OFF_BODY_LEN, 4) !=
            HK_HASH_LEN + (unsigned long long)p.t * row ||
        len - HK_PVE_HDR_LEN != HK_HASH_LEN + (size_t)p.t * row)
        return HK_ERR_DECODE;
    for (i = 0; i < p.t; i++) {
        off = PVE_ROWS + i * row;
        for (j = 0; j < p.k; j++, off += 2 + clen)
            if (pve_get_be(blob + off, 2) != clen)
                return HK_ERR_DECODE;
    }
    return HK_OK;
}

/* Offsets inside row i. */
static size_t pve_off_row(const hk_pve_info *in, unsigned i)
{
    return PVE_ROWS + i * pve_row_len(in->type, in->k);
}

static size_t pve_off_ct(const hk_pve_info *in, unsigned i, unsigned j)
{
    return pve_off_row(in, i) + j * (2 + pve_ct_len(in->type)) + 2;
}

static size_t pve_off_open(const hk_pve_info *in, unsigned i)
{
    return pve_off_row(in, i) + in->k * (2 + pve_ct_len(in->type));
}

/* The items every hash of a blob starts with: transcript label `label`,
 * role P1, the key's curve and id, then version, type, curve, K, T, epoch,
 * the backup key fingerprint and Q1 (all from the blob's header). */
static hk_err pve_ts_start(hk_ts *ts, const char *label,
                           const unsigned char *blob)
{
    hk_binding b;
    hk_err e;

    memset(&b, 0, sizeof(b));
    b.curve = (hk_curve_id)blob[OFF_CURVE];
    memcpy(b.kid, blob + OFF_KID, HK_ID_LEN);
    if ((e = hk_ts_init(ts, label, &b, HK_ROLE_P1)) != HK_OK)
        return e;
    if ((e = hk_ts_add(ts, "pve-hdr", blob + OFF_VER, 5)) != HK_OK ||
        (e = hk_ts_add(ts, "epoch", blob + OFF_EPOCH, 8)) != HK_OK ||
        (e = hk_ts_add(ts, "bk", blob + OFF_FP, HK_HASH_LEN)) != HK_OK ||
        (e = hk_ts_add(ts, "Q1", blob + OFF_Q1, HK_POINT_LEN)) != HK_OK)
        hk_ts_free(ts);
    return e;
}

/* The challenges of the rows from the digest h: in->t * log2(K) <= 256
 * bits, the 32 bytes of h. */
static void pve_chals(const hk_pve_info *in, const unsigned char *h,
                      unsigned char chal[HK_PVE_T_MAX])
{
    unsigned i, b = pve_log2(in->k);

    for (i = 0; i < in->t; i++)
        chal[i] = (unsigned char)pve_chal(h, i, b);
}

/* The labels' context hash (ctx) and the Fiat-Shamir digest (h) over the
 * header, the points R (in->t) and the ciphertexts c_ij of the blob. */
static hk_err pve_hashes(const hk_pve_info *in, const unsigned char *blob,
                         const hk_point *R, unsigned char ctx[HK_HASH_LEN],
                         unsigned char h[HK_HASH_LEN])
{
    unsigned i, j;
    size_t clen = pve_ct_len(in->type);
    hk_ts ts;
    hk_err e;

    if (ctx != NULL) {
        if ((e = pve_ts_start(&ts, "pve-ct", blob)) != HK_OK ||
            (e = hk_ts_final(&ts, ctx, HK_HASH_LEN)) != HK_OK)
            return e;
    }
    if (h == NULL)
        return HK_OK;
    if ((e = pve_ts_start(&ts, "pve", blob)) != HK_OK)
        return e;
    for (i = 0; i < in->t; i++) {
        if ((e = hk_ts_add_point(&ts, "R", &R[i])) != HK_OK)
            goto fail;
        for (j = 0; j < in->k; j++)
            if ((e = hk_ts_add(&ts, "c", blob + pve_off_ct(in, i, j), clen)) !=
                HK_OK)
                goto fail;
    }
    return hk_ts_final(&ts, h, HK_HASH_LEN);
fail:
    hk_ts_free(&ts);
    return e;
}

/* Uncompressed x || y (64 bytes) of k*G (P == NULL) or k*P: constant time
 * in k (OpenSSL's P-256 code for a BN_FLG_CONSTTIME scalar). */
static hk_err pve_ec_xy(pve_eng *g, const BIGNUM *k, const EC_POINT *P,
                        unsigned char out[64])
{
    unsigned char oct[HK_POINT_UNCOMPRESSED_LEN];
    EC_POINT *S = EC_POINT_new(g->grp);
    hk_err e = HK_ERR_CRYPTO;

    if (S == NULL)
        return HK_ERR_NOMEM;
    if (EC_POINT_mul(g->grp, S, P == NULL ? k : NULL, P, P == NULL ? NULL : k,
                     g->bn) &&
        !EC_POINT_is_at_infinity(g->grp, S) &&
        EC_POINT_point2oct(g->grp, S, POINT_CONVERSION_UNCOMPRESSED, oct,
                           sizeof(oct), g->bn) == sizeof(oct)) {
        memcpy(out, oct + 1, 64);
        e = HK_OK;
    }
    OPENSSL_cleanse(oct, sizeof(oct));
    EC_POINT_clear_free(S);
    return e;
}

/* Version 2 ECIES: the k ciphertexts of row i (to their places in `buf`),
 * plaintext j = pts[j], with the ephemerals e_j = a + j*b (a, b uniform
 * in [1, n), all e_j non-zero and a != b: mpc/pve_p256.h), written to
 * eph (k x 32 bytes) for the opening. Four scalar multiplications (a*G,
 * b*G, a*B, b*B, constant time), then E_j = a*G + j*(b*G) and
 * Z_j = a*B + j*(b*B) by constant-time additions. Each ciphertext is the
 * ECIES encryption with ephemeral e_j, byte for byte what pve_ecies_enc
 * makes from e_j (the verifier's recomputation). */
static hk_err pve_ecies_row(pve_eng *g, hk_curve *ec, const hk_pve_info *in,
                            unsigned i, const hk_scalar *pts,
                            unsigned char *eph, unsigned char *buf)
{
    hk_scalar a, b, ej[HK_PVE_K_MAX];
    BIGNUM *abn = NULL, *bbn = NULL;
    unsigned char base[128], step[128], x[2 * HK_PVE_K_MAX * 32];
    unsigned char yp[2 * HK_PVE_K_MAX], okm[PVE_KDF_LEN];
    unsigned char label[PVE_LABEL_LEN];
    unsigned j, k = in->k;
    int bad;
    hk_err e;

    if (k > HK_PVE_K_MAX)
        return HK_ERR_ARG;
    do {
        if ((e = hk_scalar_random(ec, &a)) != HK_OK ||
            (e = hk_scalar_random(ec, &b)) != HK_OK)
            goto done;
        ej[0] = a;
        bad = hk_scalar_eq(&a, &b);
        for (j = 1; j < k; j++) {
            if ((e = hk_scalar_add(ec, &ej[j - 1], &b, &ej[j])) != HK_OK)
                goto done;
            bad |= hk_scalar_is_zero(&ej[j]);
        }
    } while (bad); /* probability about k * 2^-256 */
    if ((e = hk_scalar_to_bn(&a, &abn)) != HK_OK ||
        (e = hk_scalar_to_bn(&b, &bbn)) != HK_OK ||
        (e = pve_ec_xy(g, abn, NULL, base)) != HK_OK ||
        (e = pve_ec_xy(g, abn, g->B, base + 64)) != HK_OK ||
        (e = pve_ec_xy(g, bbn, NULL, step)) != HK_OK ||
        (e = pve_ec_xy(g, bbn, g->B, step + 64)) != HK_OK ||
        (e = hk_p256_chains(2, k, base, step, x, yp)) != HK_OK)
        goto done;
    for (j = 0; j < k; j++) {
        unsigned char *out = buf + pve_off_ct(in, i, j);

        out[0] = (unsigned char)(2 | yp[j]);
        memcpy(out + 1, x + 32 * j, 32);
        pve_label(g, i, j, label);
        if ((e = pve_ecies_kdf(g, out, x + 32 * (k + j), label, okm)) !=
                HK_OK ||
            (e = pve_gcm(g, 1, okm, label, pts[j].b, out + HK_POINT_LEN,
                         out + HK_POINT_LEN + HK_SCALAR_LEN)) != HK_OK)
            goto done;
        memcpy(eph + (size_t)j * HK_PVE_SEED_LEN, ej[j].b, HK_SCALAR_LEN);
    }
done:
    BN_clear_free(abn);
    BN_clear_free(bbn);
    OPENSSL_cleanse(&a, sizeof(a));
    OPENSSL_cleanse(&b, sizeof(b));
    OPENSSL_cleanse(ej, sizeof(ej));
    OPENSSL_cleanse(base, sizeof(base));
    OPENSSL_cleanse(step, sizeof(step));
    OPENSSL_cleanse(x, sizeof(x));
    OPENSSL_cleanse(yp, sizeof(yp));
    OPENSSL_cleanse(okm, sizeof(okm));
    return e;
}

/* One thread's share of an encryption: rows lo..hi-1 of the blob, with
 * their own OpenSSL contexts. The arrays are shared, each job writes only
 * its rows. */
typedef struct {
    const hk_pve_params *p;
    const unsigned char *cheat;
    const hk_pve_pub *bk;
    hk_curve_id curve;
    const hk_pve_info *in;
    const unsigned char *ctx; /* the labels' context hash */
    const hk_scalar *x;       /* x1 */
    unsigned char *buf;       /* the blob */
    hk_scalar *v;             /* v_ij, K * T */
    unsigned char *rnd;       /* each encryption's seed (version 2 ECIES: its
                                 ephemeral scalar), K * T * 32 bytes */
    hk_point *R;
    unsigned lo, hi;
    hk_err e;
} pve_job;

static hk_err pve_rows(pve_job *jb)
{
    const hk_pve_params *p = jb->p;
    hk_curve *c = NULL, *ec = NULL;
    pve_eng g;
    hk_scalar r, pts[HK_PVE_K_MAX];
    unsigned i, j;
    int retry;
    hk_err e;

    memset(&g, 0, sizeof(g));
    if (jb->lo >= jb->hi)
        return HK_OK;
    if ((e = hk_curve_new(jb->curve, &c)) != HK_OK ||
        (e = pve_eng_init(&g, jb->bk)) != HK_OK)
        goto done;
    memcpy(g.ctx, jb->ctx, HK_HASH_LEN);
    if (pve_linear(p->version, jb->bk->type) &&
        (e = hk_curve_new(HK_CURVE_P256, &ec)) != HK_OK)
        goto done;
    for (i = jb->lo; i < jb->hi; i++) {
        hk_scalar *vi = jb->v + (size_t)i * p->k;
        unsigned char *ri = jb->rnd + (size_t)i * p->k * HK_PVE_SEED_LEN;

        /* v_ij = r_i + j*x1, all non-zero */
        do {
            retry = 0;
            if ((e = hk_scalar_random(c, &r)) != HK_OK)
                goto done;
            vi[0] = r;
            for (j = 1; j < p->k; j++) {
                if ((e = hk_scalar_add(c, &vi[j - 1], jb->x, &vi[j])) != HK_OK)
                    goto done;
                retry |= hk_scalar_is_zero(&vi[j]);
            }
        } while (retry);
        if ((e = hk_point_mul_gen(c, &r, &jb->R[i])) != HK_OK)
            goto done;
        for (j = 0; j < p->k; j++) {
            pts[j] = vi[j];
            if (jb->cheat != NULL && j != jb->cheat[i] &&
                (e = hk_scalar_random(c, &pts[j])) != HK_OK)
                goto done;
        }
        if (ec != NULL) {
            if ((e = pve_ecies_row(&g, ec, jb->in, i, pts, ri, jb->buf)) !=
                HK_OK)
                goto done;
            continue;
        }
        for (j = 0; j < p->k; j++)
            if ((e = pve_enc(&g, p->version, i, j, pts[j].b,
                             ri + (size_t)j * HK_PVE_SEED_LEN,
                             jb->buf + pve_off_ct(jb->in, i, j))) != HK_OK)
                goto done;
    }
done:
    OPENSSL_cleanse(&r, sizeof(r));
    OPENSSL_cleanse(pts, sizeof(pts));
    pve_eng_free(&g);
    hk_curve_free(c);
    hk_curve_free(ec);
    return e;
}

static void *pve_job_run(void *arg)
{
    pve_job *jb = arg;

    jb->e = pve_rows(jb);
    return NULL;
}

hk_err hk_pve_encrypt_ex(const hk_pve_params *p, const unsigned char *cheat,
                         unsigned threads, const hk_pve_pub *bk,
                         hk_curve_id curve, const unsigned char kid[HK_ID_LEN],
                         unsigned long epoch, const hk_scalar *x1,
                         unsigned char **blob, size_t *len)
{
    hk_curve *c = NULL;
    hk_pve_info in;
    hk_scalar x, *v = NULL;
    hk_point Q1, R[HK_PVE_T_MAX];
    unsigned char *buf = NULL, *rnd = NULL, chal[HK_PVE_T_MAX];
    unsigned char ctx[HK_HASH_LEN];
    size_t total = 0, nv = 0, clen;
    pve_job jobs[2];
    pthread_t th;
    unsigned i, j;
    int spawned;
    hk_err e;

    if (!pve_params_ok(p) || (threads != 1 && threads != 2) || bk == NULL ||
        kid == NULL || x1 == NULL || blob == NULL || len == NULL)
        return HK_ERR_ARG;
    if (cheat != NULL)
        for (i = 0; i < p->t; i++)
            if (cheat[i] >= p->k)
                return HK_ERR_ARG;
    *blob = NULL;
    *len = 0;
    if ((e = hk_curve_new(curve, &c)) != HK_OK)
        return e;
    if ((e = hk_scalar_parse(c, x1->b, HK_SCALAR_LEN, &x)) != HK_OK ||
        (e = hk_point_mul_gen(c, &x, &Q1)) != HK_OK)
        goto done;
    memset(&in, 0, sizeof(in));
    in.version = p->version;
    in.type = bk->type;
    in.k = p->k;
    in.t = p->t;
    clen = pve_ct_len(in.type);
    total = PVE_ROWS + (size_t)p->t * pve_row_len(in.type, p->k);
    nv = (size_t)p->t * p->k;
    e = HK_ERR_NOMEM;
    buf = OPENSSL_zalloc(total);
    v = OPENSSL_zalloc(nv * sizeof(*v));
    rnd = OPENSSL_zalloc(nv * HK_PVE_SEED_LEN);
    if (buf == NULL || v == NULL || rnd == NULL)
        goto done;

    memcpy(buf, PVE_MAGIC, 4);
    buf[OFF_VER] = (unsigned char)p->version;
    buf[OFF_TYPE] = (unsigned char)bk->type;
    buf[OFF_CURVE] = (unsigned char)curve;
    buf[OFF_K] = (unsigned char)p->k;
    buf[OFF_T] = (unsigned char)p->t;
    memcpy(buf + OFF_KID, kid, HK_ID_LEN);
    pve_be(buf + OFF_EPOCH, epoch, 8);
    memcpy(buf + OFF_FP, bk->fp, HK_HASH_LEN);
    memcpy(buf + OFF_Q1, Q1.b, HK_POINT_LEN);
    pve_be(buf + OFF_BODY_LEN, total - HK_PVE_HDR_LEN, 4);
    for (i = 0; i < p->t; i++)
        for (j = 0; j < p->k; j++)
            pve_be(buf + pve_off_ct(&in, i, j) - 2, clen, 2);
    if ((e = pve_hashes(&in, buf, NULL, ctx, NULL)) != HK_OK)
        goto done;
    /* every encryption's seed, in one call to the CSPRNG (version 2
     * ECIES: the row encryptor draws its ephemerals itself) */
    if (!pve_linear(p->version, bk->type) &&
        RAND_priv_bytes(rnd, (int)(nv * HK_PVE_SEED_LEN)) != 1) {
        e = HK_ERR_RAND;
        goto done;
    }
    /* the rows in two halves; the second on a thread when asked for (and
     * it starts), joined here: no thread outlives the call */
    memset(jobs, 0, sizeof(jobs));
    jobs[0].p = p;
    jobs[0].cheat = cheat;
    jobs[0].bk = bk;
    jobs[0].curve = curve;
    jobs[0].in = &in;
    jobs[0].ctx = ctx;
    jobs[0].x = &x;
    jobs[0].buf = buf;
    jobs[0].v = v;
    jobs[0].rnd = rnd;
    jobs[0].R = R;
    jobs[1] = jobs[0];
    jobs[0].hi = jobs[1].lo = p->t / 2;
    jobs[1].hi = p->t;
    spawned =
        threads == 2 && pthread_create(&th, NULL, pve_job_run, &jobs[1]) == 0;
    pve_job_run(&jobs[0]);
    if (spawned)
        pthread_join(th, NULL);
    else
        pve_job_run(&jobs[1]);
    if ((e = jobs[0].e) != HK_OK || (e = jobs[1].e) != HK_OK)
        goto done;
    if ((e = pve_hashes(&in, buf, R, NULL, buf + OFF_CHAL)) != HK_OK)
        goto done;
    pve_chals(&in, buf + OFF_CHAL, chal);
    for (i = 0; i < p->t; i++) {
        size_t o = pve_off_open(&in, i), idx = (size_t)i * p->k + chal[i];

        memcpy(buf + o, v[idx].b, HK_SCALAR_LEN);
        memcpy(buf + o + HK_SCALAR_LEN, rnd + idx * HK_PVE_SEED_LEN,
               HK_PVE_SEED_LEN);
    }
    *blob = buf;
    *len = total;
    buf = NULL;
    e = HK_OK;
done:
    hk_curve_free(c);
    OPENSSL_cleanse(&x, sizeof(x));
    OPENSSL_clear_free(v, nv * sizeof(*v));
    OPENSSL_clear_free(rnd, nv * HK_PVE_SEED_LEN);
    OPENSSL_free(buf);
    return e;
}

/* Header checks against what the caller expects. */
static hk_err pve_check_header(const hk_pve_params *p, const hk_pve_pub *bk,
                               hk_curve_id curve,
                               const unsigned char kid[HK_ID_LEN],
                               unsigned long epoch, const hk_point *Q1,
                               const unsigned char *blob, size_t len,
                               hk_pve_info *in)
{
    hk_err e;

    if ((e = hk_pve_peek(blob, len, in)) != HK_OK)
        return e;
    if (in->type != bk->type || in->curve != curve ||
        memcmp(in->kid, kid, HK_ID_LEN) != 0 || in->epoch != epoch ||
        memcmp(in->bk_fp, bk->fp, HK_HASH_LEN) != 0 ||
        !hk_point_eq(&in->q1, Q1))
        return HK_ERR_BINDING;
    if (in->version != p->version || in->k != p->k || in->t != p->t)
        return HK_ERR_DECODE;
    return HK_OK;
}

hk_err hk_pve_verify_ex(const hk_pve_params *p, const hk_pve_pub *bk,
                        hk_curve_id curve, const unsigned char kid[HK_ID_LEN],
                        unsigned long epoch, const hk_point *Q1,
                        const unsigned char *blob, size_t len,
                        unsigned char e_out[HK_PVE_T_MAX])
{
    hk_curve *c = NULL;
    pve_eng g;
    hk_pve_info in;
    hk_point q1, njq[16], R[HK_PVE_T_MAX];
    hk_scalar v[HK_PVE_T_MAX];
    unsigned char chal[HK_PVE_T_MAX], h[HK_HASH_LEN], ct[PVE_CT_MAX];
    size_t clen;
    unsigned i, j;
    hk_err e;

    memset(&g, 0, sizeof(g));
    if (!pve_params_ok(p) || bk == NULL || kid == NULL || Q1 == NULL ||
        blob == NULL)
        return HK_ERR_ARG;
    if ((e = hk_curve_new(curve, &c)) != HK_OK)
        return e;
    if ((e = hk_point_parse(c, Q1->b, HK_POINT_LEN, &q1)) != HK_OK ||
        (e = pve_check_header(p, bk, curve, kid, epoch, &q1, blob, len, &in)) !=
            HK_OK)
        goto done;
    /* njq[j] = -j*Q1 (negating a compressed point flips its parity byte) */
    njq[1] = q1;
    for (j = 2; j < p->k; j++)
        if ((e = hk_point_add(c, &njq[j - 1], &q1, &njq[j])) != HK_OK)
            goto done;
    for (j = 1; j < p->k; j++)
        njq[j].b[0] ^= 1;
    /* R_i = v_i*G - e_i*Q1 (public values: the batch form), then the
     * digest must match */
    pve_chals(&in, blob + OFF_CHAL, chal);
    for (i = 0; i < p->t; i++)
        if ((e = hk_scalar_parse(c, blob + pve_off_open(&in, i), HK_SCALAR_LEN,
                                 &v[i])) != HK_OK)
            goto done;
    if ((e = hk_point_mul_gen_add_pub(c, p->t, v, njq, p->k, chal, R)) !=
        HK_OK) {
        if (e == HK_ERR_POINT)
            e = HK_ERR_PROOF; /* R_i at infinity: never honest */
        goto done;
    }
    if ((e = pve_eng_init(&g, bk)) != HK_OK ||
        (e = pve_hashes(&in, blob, R, g.ctx, h)) != HK_OK)
        goto done;
    e = HK_ERR_PROOF;
    if (CRYPTO_memcmp(h, blob + OFF_CHAL, HK_HASH_LEN) != 0)
        goto done;
    /* the opened ciphertexts are Enc(v; seed) byte for byte */
    clen = pve_ct_len(in.type);
    for (i = 0; i < p->t; i++) {
        const unsigned char *o = blob + pve_off_open(&in, i);

        if ((e = pve_enc(&g, p->version, i, chal[i], o, o + HK_SCALAR_LEN,
                         ct)) != HK_OK)
            goto done;
        if (CRYPTO_memcmp(ct, blob + pve_off_ct(&in, i, chal[i]), clen) != 0) {
            e = HK_ERR_PROOF;
            goto done;
        }
    }
    if (e_out != NULL)
        memcpy(e_out, chal, p->t);
    e = HK_OK;
done:
    pve_eng_free(&g);
    hk_curve_free(c);
    return e;
}

/* out = d mod q for a small signed d != 0. */
static hk_err pve_small(hk_curve *c, int d, hk_scalar *out)
{
    BIGNUM *bn = BN_new();
    hk_err e = HK_ERR_CRYPTO;

    if (bn == NULL)
        return HK_ERR_NOMEM;
    if (BN_set_word(bn, (BN_ULONG)(d < 0 ? -d : d)) &&
        (e = hk_scalar_from_bn(c, bn, out)) == HK_OK && d < 0)
        e = hk_scalar_neg(c, out, out);
    BN_free(bn);
    return e;
}

hk_err hk_pve_decrypt_ex(const hk_pve_params *p, const hk_pve_priv *bk,
                         hk_curve_id curve, const unsigned char kid[HK_ID_LEN],
                         unsigned long epoch, const hk_point *Q1,
                         const unsigned char *blob, size_t len, hk_scalar *x1)
{
    hk_curve *c = NULL;
    pve_eng g;
    hk_pve_info in;
    unsigned char chal[HK_PVE_T_MAX], u[HK_SCALAR_LEN];
    hk_scalar us, v, dinv, x;
    hk_point X;
    unsigned i, j;
    hk_err e;

    memset(&g, 0, sizeof(g));
    if (bk == NULL || x1 == NULL)
        return HK_ERR_ARG;
    if ((e = hk_pve_verify_ex(p, bk->pub, curve, kid, epoch, Q1, blob, len,
                              chal)) != HK_OK)
        return e;
    if ((e = hk_pve_peek(blob, len, &in)) != HK_OK ||
        (e = hk_curve_new(curve, &c)) != HK_OK)
        return e;
    if ((e = pve_eng_init(&g, bk->pub)) != HK_OK ||
        (e = pve_hashes(&in, blob, NULL, g.ctx, NULL)) != HK_OK)
        goto done;
    e = HK_ERR_PROOF;
    for (i = 0; i < p->t; i++) {
        if (hk_scalar_parse(c, blob + pve_off_open(&in, i), HK_SCALAR_LEN,
                            &v) != HK_OK)
            continue;
        for (j = 0; j < p->k; j++) {
            if (j == chal[i] ||
                pve_dec(&g, bk, i, j, blob + pve_off_ct(&in, i, j), u) !=
                    HK_OK ||
                hk_scalar_parse(c, u, sizeof(u), &us) != HK_OK)
                continue;
            /* x1 = (u - v) / (j - e_i) */
            if (hk_scalar_neg(c, &v, &x) != HK_OK ||
                hk_scalar_add(c, &us, &x, &x) != HK_OK ||
                pve_small(c, (int)j - (int)chal[i], &dinv) != HK_OK ||
                hk_scalar_inv(c, &dinv, &dinv) != HK_OK ||
                hk_scalar_mul(c, &x, &dinv, &x) != HK_OK ||
                hk_scalar_is_zero(&x) || hk_point_mul_gen(c, &x, &X) != HK_OK)
                continue;
            if (hk_point_eq(&X, Q1)) {
                *x1 = x;
                e = HK_OK;
                goto done;
            }
        }
    }
done:
    OPENSSL_cleanse(u, sizeof(u));
    OPENSSL_cleanse(&us, sizeof(us));
    OPENSSL_cleanse(&x, sizeof(x));
    pve_eng_free(&g);
    hk_curve_free(c);
    return e;
}

/* ---- the public API: the parameters of the version ---------------------- */

/* The parameters a blob's version asks for (the current version's when
 * the blob is too short or of an unknown version: hk_pve_peek then says
 * what is wrong with it). */
static void pve_blob_params(const hk_pve_pub *bk, const unsigned char *blob,
                            size_t len, hk_pve_params *p)
{
    unsigned v = HK_PVE_VERSION;

    if (blob != NULL && len > OFF_VER && blob[OFF_VER] == 1)
        v = 1;
    hk_pve_std_params(v, bk != NULL ? bk->type : HK_PVE_ECIES_P256, p);
}

hk_err hk_pve_encrypt(const hk_pve_pub *bk, hk_curve_id curve,
                      const unsigned char kid[HK_ID_LEN], unsigned long epoch,
                      const hk_scalar *x1, unsigned char **blob, size_t *len)
{
    hk_pve_params p;

    if (bk == NULL)
        return HK_ERR_ARG;
    hk_pve_std_params(HK_PVE_VERSION, bk->type, &p);
    return hk_pve_encrypt_ex(&p, NULL, 2, bk, curve, kid, epoch, x1, blob, len);
}

hk_err hk_pve_verify(const hk_pve_pub *bk, hk_curve_id curve,
                     const unsigned char kid[HK_ID_LEN], unsigned long epoch,
                     const hk_point *Q1, const unsigned char *blob, size_t len)
{
    hk_pve_params p;

    pve_blob_params(bk, blob, len, &p);
    return hk_pve_verify_ex(&p, bk, curve, kid, epoch, Q1, blob, len, NULL);
}

hk_err hk_pve_decrypt(const hk_pve_priv *bk, hk_curve_id curve,
                      const unsigned char kid[HK_ID_LEN], unsigned long epoch,
                      const hk_point *Q1, const unsigned char *blob, size_t len,
                      hk_scalar *x1)
{
    hk_pve_params p;

    pve_blob_params(bk != NULL ? bk->pub : NULL, blob, len, &p);
    return hk_pve_decrypt_ex(&p, bk, curve, kid, epoch, Q1, blob, len, x1);
}
