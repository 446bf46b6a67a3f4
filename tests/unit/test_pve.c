/* Unit tests of the publicly verifiable encryption of x1 (mpc/pve.h):
 *  - backup keys: generation, PEM round trips (plain and passphrase-
 *    encrypted PKCS#8, SubjectPublicKeyInfo), wrong or missing
 *    passphrase, unsupported keys (RSA-2048, RSA e = 3, secp256k1,
 *    Ed25519), traditional and garbage PEM;
 *  - honest round trip on secp256k1 and P-256 with ECIES-P256 and
 *    RSA-OAEP-3072 (blob version 2, on two threads and on one);
 *  - version 1 blobs (K = 4, T = 64, hashed ECIES seeds) still verify and
 *    decrypt, and are refused when altered;
 *  - the constant-time P-256 chains of the version 2 ECIES encryptor
 *    (mpc/pve_p256.h) against OpenSSL's point additions;
 *  - refusals: every header byte altered; every field of every row
 *    altered (the challenge digest; each ciphertext and its length,
 *    the opened value and seed or ephemeral of every row; an ephemeral
 *    of zero or >= n); truncation and extension; rows,
 * ciphertexts and opening fields reordered; another key id, epoch, curve, Q1 or
 * backup key, also with the header relabelled to match; a blob encrypting
 * another value; decryption with the wrong private key;
 *  - soundness: a cheating prover that encrypts the right value in one
 *    column per row and garbage in the others passes a T = 2, K = 4
 *    verifier in about 1/16 of the runs (4^-T), for both versions, and
 *    every blob that passes then fails to decrypt; with the real
 *    parameters it is refused.
 *
 *   test_pve --seeds FIXTURES_DIR CORPUS_DIR
 * writes the fuzz fixtures (backup keys, if missing) and seed blobs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include <openssl/ec.h>
#include <openssl/obj_mac.h>

#include "mpc/pve.h"
#include "mpc/pve_impl.h"
#include "mpc/pve_p256.h"
#include "tests/unit/check.h"

static const hk_curve_id curves[] = {HK_CURVE_SECP256K1, HK_CURVE_P256};
static const hk_pve_type types[] = {HK_PVE_ECIES_P256, HK_PVE_RSA_OAEP_3072};

typedef struct {
    hk_curve_id curve;
    unsigned char kid[HK_ID_LEN];
    unsigned long epoch;
    hk_scalar x1;
    hk_point q1;
} ctx_t;

static void ctx_new(ctx_t *c, hk_curve_id curve)
{
    hk_curve *cv;

    c->curve = curve;
    CHECK(RAND_bytes(c->kid, HK_ID_LEN) == 1);
    c->epoch = 7;
    CHECK_OK(hk_curve_new(curve, &cv));
    CHECK_OK(hk_scalar_random(cv, &c->x1));
    CHECK_OK(hk_point_mul_gen(cv, &c->x1, &c->q1));
    hk_curve_free(cv);
}

static hk_err verify(const hk_pve_pub *bk, const ctx_t *c,
                     const unsigned char *b, size_t n)
{
    return hk_pve_verify(bk, c->curve, c->kid, c->epoch, &c->q1, b, n);
}

static unsigned char *encrypt(const hk_pve_pub *bk, const ctx_t *c, size_t *n)
{
    unsigned char *b = NULL;

    CHECK_OK(hk_pve_encrypt(bk, c->curve, c->kid, c->epoch, &c->x1, &b, n));
    return b;
}

/* ---- keys ---------------------------------------------------------------- */

static char *pem_of(EVP_PKEY *k, int priv)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *d, *out;
    long n;

    CHECK(b != NULL);
    CHECK(priv ? PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL)
               : PEM_write_bio_PUBKEY(b, k));
    n = BIO_get_mem_data(b, &d);
    out = OPENSSL_strndup(d, (size_t)n);
    BIO_free(b);
    return out;
}

static void check_unsupported(EVP_PKEY *k)
{
    char *pub = pem_of(k, 0), *priv = pem_of(k, 1);
    hk_pve_pub *p = NULL;
    hk_pve_priv *s = NULL;

    CHECK_ERR(hk_pve_pub_from_pem(pub, strlen(pub), &p), HK_ERR_CONFIG);
    CHECK_ERR(hk_pve_priv_from_pem(priv, strlen(priv), NULL, &s),
              HK_ERR_CONFIG);
    CHECK(p == NULL && s == NULL);
    OPENSSL_free(pub);
    OPENSSL_free(priv);
    EVP_PKEY_free(k);
}

static void test_keys(hk_pve_priv *const keys[2])
{
    unsigned char fp1[HK_HASH_LEN], fp2[HK_HASH_LEN];
    char *pem, *ppem;
    size_t len, plen;
    hk_pve_priv *s;
    hk_pve_pub *p;
    int t;
    static const char trad[] = "-----BEGIN EC PRIVATE KEY-----\nAAAA\n"
                               "-----END EC PRIVATE KEY-----\n";
    static const char junk[] = "-----BEGIN PUBLIC KEY-----\nnot base64!\n"
                               "-----END PUBLIC KEY-----\n";

    for (t = 0; t < 2; t++) {
        const hk_pve_pub *pub = hk_pve_priv_pub(keys[t]);

        CHECK(hk_pve_pub_type(pub) == types[t]);
        hk_pve_pub_fingerprint(pub, fp1);
        /* public PEM round trip */
        CHECK_OK(hk_pve_pub_to_pem(pub, &pem, &len));
        CHECK(strncmp(pem, "-----BEGIN PUBLIC KEY-----", 26) == 0);
        CHECK_OK(hk_pve_pub_from_pem(pem, len, &p));
        hk_pve_pub_fingerprint(p, fp2);
        CHECK(memcmp(fp1, fp2, HK_HASH_LEN) == 0);
        CHECK(hk_pve_pub_type(p) == types[t]);
        hk_pve_pub_free(p);
        /* a private PEM is not a public key, and the reverse */
        CHECK_OK(hk_pve_priv_to_pem(keys[t], NULL, &ppem, &plen));
        CHECK_ERR(hk_pve_pub_from_pem(ppem, plen, &p), HK_ERR_DECODE);
        CHECK_ERR(hk_pve_priv_from_pem(pem, len, NULL, &s), HK_ERR_DECODE);
        CHECK(p == NULL && s == NULL);
        OPENSSL_free(pem);
        /* plain PKCS#8 */
        CHECK(strncmp(ppem, "-----BEGIN PRIVATE KEY-----", 27) == 0);
        CHECK_OK(hk_pve_priv_from_pem(ppem, plen, NULL, &s));
        hk_pve_pub_fingerprint(hk_pve_priv_pub(s), fp2);
        CHECK(memcmp(fp1, fp2, HK_HASH_LEN) == 0);
        hk_pve_priv_free(s);
        /* a passphrase on an unencrypted key is ignored */
        CHECK_OK(hk_pve_priv_from_pem(ppem, plen, "unused", &s));
        hk_pve_priv_free(s);
        OPENSSL_clear_free(ppem, plen);
        /* encrypted PKCS#8 */
        CHECK_OK(hk_pve_priv_to_pem(keys[t], "correct horse", &ppem, &plen));
        CHECK(strncmp(ppem, "-----BEGIN ENCRYPTED PRIVATE KEY-----", 37) == 0);
        CHECK_ERR(hk_pve_priv_from_pem(ppem, plen, NULL, &s), HK_ERR_PIN);
        CHECK_ERR(hk_pve_priv_from_pem(ppem, plen, "wrong horse", &s),
                  HK_ERR_PIN);
        CHECK_ERR(hk_pve_priv_from_pem(ppem, plen, "", &s), HK_ERR_PIN);
        CHECK(s == NULL);
        CHECK_OK(hk_pve_priv_from_pem(ppem, plen, "correct horse", &s));
        hk_pve_pub_fingerprint(hk_pve_priv_pub(s), fp2);
        CHECK(memcmp(fp1, fp2, HK_HASH_LEN) == 0);
        hk_pve_priv_free(s);
        OPENSSL_clear_free(ppem, plen);
    }
    /* the two keys have different fingerprints */
    hk_pve_pub_fingerprint(hk_pve_priv_pub(keys[0]), fp1);
    hk_pve_pub_fingerprint(hk_pve_priv_pub(keys[1]), fp2);
    CHECK(memcmp(fp1, fp2, HK_HASH_LEN) != 0);

    CHECK_ERR(hk_pve_pub_from_pem(junk, strlen(junk), &p), HK_ERR_DECODE);
    CHECK_ERR(hk_pve_pub_from_pem("", 0, &p), HK_ERR_DECODE);
    CHECK_ERR(hk_pve_priv_from_pem(trad, strlen(trad), NULL, &s),
              HK_ERR_DECODE);
    CHECK_ERR(hk_pve_pub_from_pem(junk, 20000, &p), HK_ERR_TOO_BIG);
    CHECK_ERR(hk_pve_keygen((hk_pve_type)9, &s), HK_ERR_ARG);

    /* unsupported keys */
    check_unsupported(EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048));
    check_unsupported(EVP_PKEY_Q_keygen(NULL, NULL, "EC", "secp256k1"));
    check_unsupported(EVP_PKEY_Q_keygen(NULL, NULL, "ED25519"));
    {
        EVP_PKEY_CTX *kc = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
        EVP_PKEY *k = NULL;
        BIGNUM *e3 = BN_new();

        CHECK(kc != NULL && e3 != NULL && BN_set_word(e3, 3));
        CHECK(EVP_PKEY_keygen_init(kc) > 0);
        CHECK(EVP_PKEY_CTX_set_rsa_keygen_bits(kc, 3072) > 0);
        CHECK(EVP_PKEY_CTX_set1_rsa_keygen_pubexp(kc, e3) > 0);
        CHECK(EVP_PKEY_generate(kc, &k) > 0);
        check_unsupported(k);
        BN_free(e3);
        EVP_PKEY_CTX_free(kc);
    }
    printf("keys: ok\n");
}

/* ---- round trip ---------------------------------------------------------- */

static void test_round_trip(hk_pve_priv *const keys[2])
{
    unsigned char *b;
    size_t n;
    hk_pve_info in;
    hk_scalar x;
    ctx_t c;
    int t, k;

    for (t = 0; t < 2; t++)
        for (k = 0; k < 2; k++) {
            const hk_pve_pub *pub = hk_pve_priv_pub(keys[t]);
            unsigned char fp[HK_HASH_LEN];

            hk_pve_params p;

            hk_pve_std_params(HK_PVE_VERSION, types[t], &p);
            ctx_new(&c, curves[k]);
            b = encrypt(pub, &c, &n);
            CHECK(n == (types[t] == HK_PVE_ECIES_P256 ? 44678u : 103046u));
            CHECK_OK(hk_pve_peek(b, n, &in));
            hk_pve_pub_fingerprint(pub, fp);
            CHECK(in.version == 2 && in.type == types[t] &&
                  in.curve == curves[k] && in.k == p.k && in.t == p.t &&
                  p.k == (types[t] == HK_PVE_ECIES_P256 ? 16u : 4u) &&
                  p.t == (types[t] == HK_PVE_ECIES_P256 ? 32u : 64u) &&
                  in.epoch == c.epoch &&
                  memcmp(in.kid, c.kid, HK_ID_LEN) == 0 &&
                  memcmp(in.bk_fp, fp, HK_HASH_LEN) == 0 &&
                  hk_point_eq(&in.q1, &c.q1));
            CHECK_OK(verify(pub, &c, b, n));
            memset(&x, 0, sizeof(x));
            CHECK_OK(hk_pve_decrypt(keys[t], c.curve, c.kid, c.epoch, &c.q1, b,
                                    n, &x));
            CHECK(hk_scalar_eq(&x, &c.x1));
            /* the public key read back from PEM verifies too */
            {
                char *pem;
                size_t pl;
                hk_pve_pub *p2;

                CHECK_OK(hk_pve_pub_to_pem(pub, &pem, &pl));
                CHECK_OK(hk_pve_pub_from_pem(pem, pl, &p2));
                CHECK_OK(verify(p2, &c, b, n));
                hk_pve_pub_free(p2);
                OPENSSL_free(pem);
            }
            /* two encryptions of one value differ */
            {
                size_t n2;
                unsigned char *b2 = encrypt(pub, &c, &n2);

                CHECK(n2 == n && memcmp(b, b2, n) != 0);
                OPENSSL_free(b2);
            }
            /* one thread makes the same kind of blob */
            {
                size_t n2;
                unsigned char *b2;

                CHECK_OK(hk_pve_encrypt_ex(&p, NULL, 1, pub, c.curve, c.kid,
                                           c.epoch, &c.x1, &b2, &n2));
                CHECK(n2 == n);
                CHECK_OK(verify(pub, &c, b2, n2));
                CHECK_OK(hk_pve_decrypt(keys[t], c.curve, c.kid, c.epoch, &c.q1,
                                        b2, n2, &x));
                CHECK(hk_scalar_eq(&x, &c.x1));
                OPENSSL_free(b2);
            }
            OPENSSL_free(b);
        }
    /* bad arguments */
    ctx_new(&c, HK_CURVE_P256);
    {
        hk_scalar zero;

        memset(&zero, 0, sizeof(zero));
        CHECK_ERR(hk_pve_encrypt(hk_pve_priv_pub(keys[0]), c.curve, c.kid, 1,
                                 &zero, &b, &n),
                  HK_ERR_SCALAR);
        CHECK_ERR(hk_pve_encrypt(hk_pve_priv_pub(keys[0]), (hk_curve_id)7,
                                 c.kid, 1, &c.x1, &b, &n),
                  HK_ERR_CURVE);
        CHECK_ERR(hk_pve_encrypt(NULL, c.curve, c.kid, 1, &c.x1, &b, &n),
                  HK_ERR_ARG);
        {
            hk_pve_params p;

            hk_pve_std_params(HK_PVE_VERSION, HK_PVE_ECIES_P256, &p);
            CHECK_ERR(hk_pve_encrypt_ex(&p, NULL, 3, hk_pve_priv_pub(keys[0]),
                                        c.curve, c.kid, 1, &c.x1, &b, &n),
                      HK_ERR_ARG);
            CHECK_ERR(hk_pve_encrypt_ex(&p, NULL, 0, hk_pve_priv_pub(keys[0]),
                                        c.curve, c.kid, 1, &c.x1, &b, &n),
                      HK_ERR_ARG);
        }
    }
    printf("round trip: ok (2 curves x 2 key types)\n");
}

/* ---- refusals ------------------------------------------------------------ */

/* The challenge digest, then the rows. */
#define CHAL HK_PVE_HDR_LEN
#define ROWS (HK_PVE_HDR_LEN + 32)

static size_t ct_len(hk_pve_type t)
{
    return t == HK_PVE_ECIES_P256 ? 81 : 384;
}

static unsigned kcols(hk_pve_type t)
{
    hk_pve_params p;

    hk_pve_std_params(HK_PVE_VERSION, t, &p);
    return p.k;
}

static unsigned trows(hk_pve_type t)
{
    hk_pve_params p;

    hk_pve_std_params(HK_PVE_VERSION, t, &p);
    return p.t;
}

static size_t row_len(hk_pve_type t) { return kcols(t) * (2 + ct_len(t)) + 64; }

/* A copy of b with byte `off` xored by `x`: refused with a non-OK code. */
static hk_err flip(const hk_pve_pub *bk, const ctx_t *c, const unsigned char *b,
                   size_t n, size_t off, unsigned char x)
{
    unsigned char *m = OPENSSL_memdup(b, n);
    hk_err e;

    CHECK(m != NULL);
    m[off] ^= x;
    e = verify(bk, c, m, n);
    OPENSSL_free(m);
    return e;
}

static void swap(unsigned char *m, size_t a, size_t b, size_t len)
{
    unsigned char t;
    size_t i;

    for (i = 0; i < len; i++) {
        t = m[a + i];
        m[a + i] = m[b + i];
        m[b + i] = t;
    }
}

static void test_tamper(hk_pve_priv *const keys[2])
{
    int t, k;
    size_t checks = 0;

    for (t = 0; t < 2; t++)
        for (k = 0; k < 2; k++) {
            const hk_pve_pub *bk = hk_pve_priv_pub(keys[t]);
            const hk_pve_pub *other = hk_pve_priv_pub(keys[1 - t]);
            hk_pve_type ty = types[t];
            size_t n, i, j, off, rl = row_len(ty), cl = ct_len(ty);
            size_t kc = kcols(ty), tr = trows(ty);
            unsigned char *b, *m;
            hk_scalar x;
            ctx_t c, c2;

            ctx_new(&c, curves[k]);
            b = encrypt(bk, &c, &n);
            CHECK_OK(verify(bk, &c, b, n));

            /* every header byte */
            for (off = 0; off < HK_PVE_HDR_LEN; off++, checks++)
                CHECK(flip(bk, &c, b, n, off, 0x01) != HK_OK);
            CHECK_ERR(flip(bk, &c, b, n, 4, 0x07), HK_ERR_VERSION);
            CHECK_ERR(flip(bk, &c, b, n, 4, 0x01), HK_ERR_VERSION);
            /* relabelled as version 1: other parameters (ECIES) or another
             * transcript (RSA) */
            CHECK(flip(bk, &c, b, n, 4, 0x03) != HK_OK);
            CHECK_ERR(flip(bk, &c, b, n, 0, 0x20), HK_ERR_DECODE);
            CHECK_ERR(flip(bk, &c, b, n, 9, 0x80), HK_ERR_BINDING);  /* kid */
            CHECK_ERR(flip(bk, &c, b, n, 32, 0x01), HK_ERR_BINDING); /* ep */
            CHECK_ERR(flip(bk, &c, b, n, 40, 0x01), HK_ERR_BINDING); /* fp */
            CHECK_ERR(flip(bk, &c, b, n, 70, 0x01), HK_ERR_BINDING); /* Q1 */
            CHECK_ERR(flip(bk, &c, b, n, 8, 0x01), HK_ERR_DECODE);   /* T */

            /* every byte of the challenge digest */
            for (off = CHAL; off < ROWS; off++, checks++)
                CHECK_ERR(flip(bk, &c, b, n, off, 0x01), HK_ERR_PROOF);

            /* every field of every row (the full set on one combination,
             * rows 0, 1 and the last on the others) */
            for (i = 0; i < tr; i++) {
                if (!(t == 0 && k == 0) && i > 1 && i != tr - 1)
                    continue;
                off = ROWS + i * rl;
                for (j = 0; j < kc; j++) {
                    size_t co = off + j * (2 + cl);

                    CHECK_ERR(flip(bk, &c, b, n, co, 0x01), HK_ERR_DECODE);
                    CHECK_ERR(flip(bk, &c, b, n, co + 1, 0x01), HK_ERR_DECODE);
                    /* first, middle and last byte of the ciphertext */
                    CHECK(flip(bk, &c, b, n, co + 2, 0x01) != HK_OK);
                    CHECK(flip(bk, &c, b, n, co + 2 + cl / 2, 0x40) != HK_OK);
                    CHECK(flip(bk, &c, b, n, co + 1 + cl, 0x80) != HK_OK);
                    checks += 5;
                }
                off += kc * (2 + cl);
                CHECK(flip(bk, &c, b, n, off, 0x01) != HK_OK); /* v */
                CHECK(flip(bk, &c, b, n, off + 31, 0x01) != HK_OK);
                CHECK(flip(bk, &c, b, n, off + 32, 0x01) != HK_OK); /* seed */
                CHECK(flip(bk, &c, b, n, off + 63, 0x80) != HK_OK);
                checks += 4;
            }
            /* the opened value replaced by zero and by q - 1 + ... */
            m = OPENSSL_memdup(b, n);
            off = ROWS + kc * (2 + cl);
            memset(m + off, 0, 32);
            CHECK_ERR(verify(bk, &c, m, n), HK_ERR_SCALAR);
            memset(m + off, 0xff, 32);
            CHECK_ERR(verify(bk, &c, m, n), HK_ERR_SCALAR);
            /* a version 2 ECIES opening's ephemeral: zero, or >= n */
            if (ty == HK_PVE_ECIES_P256) {
                memcpy(m, b, n);
                memset(m + off + 32, 0, 32);
                CHECK_ERR(verify(bk, &c, m, n), HK_ERR_SCALAR);
                memset(m + off + 32, 0xff, 32);
                CHECK_ERR(verify(bk, &c, m, n), HK_ERR_SCALAR);
            }
            OPENSSL_free(m);

            /* truncated and extended */
            CHECK_ERR(verify(bk, &c, b, n - 1), HK_ERR_DECODE);
            CHECK_ERR(verify(bk, &c, b, n / 2), HK_ERR_DECODE);
            CHECK_ERR(verify(bk, &c, b, HK_PVE_HDR_LEN), HK_ERR_DECODE);
            CHECK_ERR(verify(bk, &c, b, HK_PVE_HDR_LEN - 1), HK_ERR_DECODE);
            CHECK_ERR(verify(bk, &c, b, 0), HK_ERR_DECODE);
            m = OPENSSL_zalloc(HK_PVE_MAX_BLOB + 1);
            memcpy(m, b, n);
            CHECK_ERR(verify(bk, &c, m, n + 1), HK_ERR_DECODE);
            CHECK_ERR(verify(bk, &c, m, HK_PVE_MAX_BLOB + 1), HK_ERR_TOO_BIG);
            OPENSSL_free(m);

            /* reordered: two rows, two ciphertexts of a row, v and seed */
            m = OPENSSL_memdup(b, n);
            swap(m, ROWS, ROWS + rl, rl);
            CHECK_ERR(verify(bk, &c, m, n), HK_ERR_PROOF);
            memcpy(m, b, n);
            swap(m, ROWS, ROWS + 2 + cl, 2 + cl);
            CHECK_ERR(verify(bk, &c, m, n), HK_ERR_PROOF);
            memcpy(m, b, n);
            off = ROWS + kc * (2 + cl);
            swap(m, off, off + 32, 32);
            CHECK(verify(bk, &c, m, n) != HK_OK);
            OPENSSL_free(m);

            /* another key id, epoch, curve, Q1, backup key */
            c2 = c;
            c2.kid[3] ^= 1;
            CHECK_ERR(verify(bk, &c2, b, n), HK_ERR_BINDING);
            c2 = c;
            c2.epoch = 8;
            CHECK_ERR(verify(bk, &c2, b, n), HK_ERR_BINDING);
            c2 = c;
            c2.curve = curves[1 - k];
            CHECK(verify(bk, &c2, b, n) != HK_OK);
            ctx_new(&c2, curves[k]);
            c2.epoch = c.epoch;
            memcpy(c2.kid, c.kid, HK_ID_LEN);
            CHECK_ERR(verify(bk, &c2, b, n), HK_ERR_BINDING); /* other Q1 */
            CHECK_ERR(verify(other, &c, b, n), HK_ERR_BINDING);

            /* relabelled: the header says what the verifier expects, the
             * body was made for another key id / epoch / Q1 */
            m = OPENSSL_memdup(b, n);
            m[9 + 3] ^= 1;
            c2 = c;
            c2.kid[3] ^= 1;
            CHECK_ERR(verify(bk, &c2, m, n), HK_ERR_PROOF);
            memcpy(m, b, n);
            m[32] ^= 1; /* epoch 7 -> 6 */
            c2 = c;
            c2.epoch = 6;
            CHECK_ERR(verify(bk, &c2, m, n), HK_ERR_PROOF);
            OPENSSL_free(m);

            /* a blob that encrypts another value x' (with its own Q1'),
             * relabelled with Q1 = x1*G */
            ctx_new(&c2, curves[k]);
            c2.epoch = c.epoch;
            memcpy(c2.kid, c.kid, HK_ID_LEN);
            {
                size_t n2;
                unsigned char *b2 = encrypt(bk, &c2, &n2);

                CHECK_ERR(verify(bk, &c, b2, n2), HK_ERR_BINDING);
                memcpy(b2 + 65, c.q1.b, HK_POINT_LEN);
                CHECK_ERR(verify(bk, &c, b2, n2), HK_ERR_PROOF);
                CHECK(hk_pve_decrypt(keys[t], c.curve, c.kid, c.epoch, &c.q1,
                                     b2, n2, &x) != HK_OK);
                OPENSSL_free(b2);
            }

            /* decryption with the wrong private key */
            CHECK_ERR(hk_pve_decrypt(keys[1 - t], c.curve, c.kid, c.epoch,
                                     &c.q1, b, n, &x),
                      HK_ERR_BINDING);
            {
                hk_pve_priv *w;

                CHECK_OK(hk_pve_keygen(types[t], &w));
                CHECK_ERR(
                    hk_pve_decrypt(w, c.curve, c.kid, c.epoch, &c.q1, b, n, &x),
                    HK_ERR_BINDING);
                hk_pve_priv_free(w);
            }
            OPENSSL_free(b);
        }
    printf("tamper: ok (%zu single-byte alterations refused, plus "
           "truncation, reordering, bindings, relabelling, wrong key)\n",
           checks);
}

/* ---- soundness ------------------------------------------------------------
 */

static void test_cheat(hk_pve_priv *const keys[2])
{
    const hk_pve_pub *bk = hk_pve_priv_pub(keys[0]);
    unsigned char guess[HK_PVE_T_MAX], e[HK_PVE_T_MAX], *b;
    const int runs = 480;
    int r, pass, ver;
    unsigned i;
    size_t n;
    hk_scalar x;
    ctx_t c;

    ctx_new(&c, HK_CURVE_SECP256K1);
    /* ECIES: version 1 (hashed seeds) and version 2 (related ephemerals) */
    for (ver = 1; ver <= 2; ver++) {
        const hk_pve_params small = {(unsigned)ver, 4, 2};

        /* the honest prover with T = 2 verifies and decrypts */
        CHECK_OK(hk_pve_encrypt_ex(&small, NULL, 2, bk, c.curve, c.kid, c.epoch,
                                   &c.x1, &b, &n));
        CHECK_OK(hk_pve_verify_ex(&small, bk, c.curve, c.kid, c.epoch, &c.q1, b,
                                  n, NULL));
        CHECK_OK(hk_pve_decrypt_ex(&small, keys[0], c.curve, c.kid, c.epoch,
                                   &c.q1, b, n, &x));
        CHECK(hk_scalar_eq(&x, &c.x1));
        /* ... and is refused by the real verifier (parameters are fixed) */
        CHECK_ERR(verify(bk, &c, b, n), HK_ERR_DECODE);
        OPENSSL_free(b);

        for (pass = 0, r = 0; r < runs; r++) {
            CHECK(RAND_bytes(guess, small.t) == 1);
            for (i = 0; i < small.t; i++)
                guess[i] &= 3;
            CHECK_OK(hk_pve_encrypt_ex(&small, guess, 1, bk, c.curve, c.kid,
                                       c.epoch, &c.x1, &b, &n));
            if (hk_pve_verify_ex(&small, bk, c.curve, c.kid, c.epoch, &c.q1, b,
                                 n, e) == HK_OK) {
                pass++;
                /* it passed because the challenge hit the guessed columns */
                CHECK(memcmp(e, guess, small.t) == 0);
                /* and it does not decrypt: every closed column is garbage */
                CHECK_ERR(hk_pve_decrypt_ex(&small, keys[0], c.curve, c.kid,
                                            c.epoch, &c.q1, b, n, &x),
                          HK_ERR_PROOF);
            }
            OPENSSL_free(b);
        }
        /* expected runs/16 = 30 (sd 5.3) */
        printf("cheat: version %d, T = 2, K = 4: %d of %d cheating blobs "
               "verified (expected %d = 4^-2), none decrypted\n",
               ver, pass, runs, runs / 16);
        CHECK(pass >= 10 && pass <= 55);
    }

    /* the real parameters: refused (passes with probability 2^-128) */
    for (r = 0; r < 2; r++) {
        hk_pve_params full;

        hk_pve_std_params(HK_PVE_VERSION, types[r], &full);
        CHECK(RAND_bytes(guess, full.t) == 1);
        for (i = 0; i < full.t; i++)
            guess[i] &= (unsigned char)(full.k - 1);
        CHECK_OK(hk_pve_encrypt_ex(&full, guess, 2, hk_pve_priv_pub(keys[r]),
                                   c.curve, c.kid, c.epoch, &c.x1, &b, &n));
        CHECK_ERR(verify(hk_pve_priv_pub(keys[r]), &c, b, n), HK_ERR_PROOF);
        OPENSSL_free(b);
    }
    /* bad parameters */
    {
        const hk_pve_params bad = {2, 3, 2}, bad2 = {2, 4, 65},
                            bad3 = {3, 4, 2}, bad4 = {0, 4, 2};

        CHECK_ERR(hk_pve_encrypt_ex(&bad, NULL, 1, bk, c.curve, c.kid, c.epoch,
                                    &c.x1, &b, &n),
                  HK_ERR_ARG);
        CHECK_ERR(hk_pve_encrypt_ex(&bad2, NULL, 1, bk, c.curve, c.kid, c.epoch,
                                    &c.x1, &b, &n),
                  HK_ERR_ARG);
        CHECK_ERR(hk_pve_encrypt_ex(&bad3, NULL, 1, bk, c.curve, c.kid, c.epoch,
                                    &c.x1, &b, &n),
                  HK_ERR_ARG);
        CHECK_ERR(hk_pve_encrypt_ex(&bad4, NULL, 1, bk, c.curve, c.kid, c.epoch,
                                    &c.x1, &b, &n),
                  HK_ERR_ARG);
    }
    printf("cheat: cheating blobs with the real parameters refused\n");
}

/* ---- version 1 ------------------------------------------------------------
 * Blobs made before version 2 (K = 4, T = 64, ECIES ephemerals from hashed
 * seeds) keep verifying and decrypting through the public API; altered,
 * they are refused; relabelled as version 2 they are refused. */
static void test_v1(hk_pve_priv *const keys[2])
{
    int t, k;

    for (t = 0; t < 2; t++)
        for (k = 0; k < 2; k++) {
            const hk_pve_pub *bk = hk_pve_priv_pub(keys[t]);
            hk_pve_params p;
            hk_pve_info in;
            unsigned char *b;
            size_t n;
            hk_scalar x;
            ctx_t c;

            hk_pve_std_params(1, types[t], &p);
            CHECK(p.version == 1 && p.k == 4 && p.t == 64);
            ctx_new(&c, curves[k]);
            CHECK_OK(hk_pve_encrypt_ex(&p, NULL, 2, bk, c.curve, c.kid, c.epoch,
                                       &c.x1, &b, &n));
            CHECK(n == (types[t] == HK_PVE_ECIES_P256 ? 25478u : 103046u));
            CHECK_OK(hk_pve_peek(b, n, &in));
            CHECK(in.version == 1 && in.k == 4 && in.t == 64);
            CHECK_OK(verify(bk, &c, b, n));
            CHECK_OK(hk_pve_decrypt(keys[t], c.curve, c.kid, c.epoch, &c.q1, b,
                                    n, &x));
            CHECK(hk_scalar_eq(&x, &c.x1));
            CHECK_ERR(flip(bk, &c, b, n, CHAL + 5, 0x01), HK_ERR_PROOF);
            CHECK(flip(bk, &c, b, n, n - 1, 0x01) != HK_OK); /* last seed */
            CHECK(flip(bk, &c, b, n, ROWS + 2, 0x01) != HK_OK);
            /* version 1 -> 2: other parameters (ECIES) or another
             * transcript (RSA) */
            CHECK(flip(bk, &c, b, n, 4, 0x03) != HK_OK);
            CHECK_ERR(hk_pve_decrypt(keys[1 - t], c.curve, c.kid, c.epoch,
                                     &c.q1, b, n, &x),
                      HK_ERR_BINDING);
            OPENSSL_free(b);
        }
    printf("version 1: blobs still verify and decrypt, altered ones are "
           "refused\n");
}

/* ---- P-256 chains ---------------------------------------------------------
 * hk_p256_chains against OpenSSL: the points A + j*D of random A, D. */
static void test_chains(void)
{
    EC_GROUP *g = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1);
    BN_CTX *bn = BN_CTX_new();
    BIGNUM *s = BN_new();
    EC_POINT *A, *D, *P;
    unsigned char base[128], step[128], x[HK_P256_CHAIN_MAX * 32];
    unsigned char yp[HK_P256_CHAIN_MAX], o[65], cmp[33];
    unsigned it, ch, j, nn, mm;
    size_t points = 0;

    CHECK(g != NULL && bn != NULL && s != NULL);
    A = EC_POINT_new(g);
    D = EC_POINT_new(g);
    P = EC_POINT_new(g);
    CHECK(A != NULL && D != NULL && P != NULL);
    for (it = 0; it < 40; it++) {
        mm = 1 + it % 2;
        nn = it < 2 ? 1 + it : 16;
        for (ch = 0; ch < mm; ch++) {
            CHECK(BN_rand_range(s, EC_GROUP_get0_order(g)) && !BN_is_zero(s));
            CHECK(EC_POINT_mul(g, A, s, NULL, NULL, bn));
            CHECK(BN_rand_range(s, EC_GROUP_get0_order(g)) && !BN_is_zero(s));
            CHECK(EC_POINT_mul(g, D, s, NULL, NULL, bn));
            CHECK(EC_POINT_point2oct(g, A, POINT_CONVERSION_UNCOMPRESSED, o, 65,
                                     bn) == 65);
            memcpy(base + 64 * ch, o + 1, 64);
            CHECK(EC_POINT_point2oct(g, D, POINT_CONVERSION_UNCOMPRESSED, o, 65,
                                     bn) == 65);
            memcpy(step + 64 * ch, o + 1, 64);
        }
        CHECK_OK(hk_p256_chains(mm, nn, base, step, x, yp));
        for (ch = 0; ch < mm; ch++) {
            o[0] = 4;
            memcpy(o + 1, base + 64 * ch, 64);
            CHECK(EC_POINT_oct2point(g, P, o, 65, bn));
            memcpy(o + 1, step + 64 * ch, 64);
            CHECK(EC_POINT_oct2point(g, D, o, 65, bn));
            for (j = 0; j < nn; j++, points++) {
                CHECK(EC_POINT_point2oct(g, P, POINT_CONVERSION_COMPRESSED, cmp,
                                         33, bn) == 33);
                CHECK(memcmp(cmp + 1, x + 32 * (ch * nn + j), 32) == 0);
                CHECK((cmp[0] & 1) == yp[ch * nn + j]);
                CHECK(EC_POINT_add(g, P, P, D, bn));
            }
        }
    }
    /* the excluded case (A = D: the first addition doubles) is caught */
    memcpy(step, base, 64);
    CHECK_ERR(hk_p256_chains(1, 2, base, step, x, yp), HK_ERR_POINT);
    CHECK_ERR(hk_p256_chains(0, 2, base, step, x, yp), HK_ERR_ARG);
    CHECK_ERR(hk_p256_chains(2, 33, base, step, x, yp), HK_ERR_ARG);
    EC_POINT_free(A);
    EC_POINT_free(D);
    EC_POINT_free(P);
    BN_free(s);
    BN_CTX_free(bn);
    EC_GROUP_free(g);
    printf("p256 chains: ok (%zu points against OpenSSL)\n", points);
}

/* ---- fuzz seeds -----------------------------------------------------------
 */

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    long n;

    if (f == NULL)
        return NULL;
    CHECK(fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0);
    rewind(f);
    buf = malloc((size_t)n + 1);
    CHECK(buf != NULL && fread(buf, 1, (size_t)n, f) == (size_t)n);
    buf[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static void write_all(const char *path, const void *d, size_t n)
{
    FILE *f = fopen(path, "wb");

    CHECK(f != NULL && fwrite(d, 1, n, f) == n && fclose(f) == 0);
}

/* Fixed key id and epoch of the seeds (tests/fuzz/fuzz_pve.c uses the
 * blob's header anyway). */
static int gen_seeds(const char *fixtures, const char *corpus)
{
    static const char *names[2] = {"pve-ecies.pem", "pve-rsa.pem"};
    char path[4096];
    int t, k;

    for (t = 0; t < 2; t++) {
        hk_pve_priv *s;
        char *pem;
        size_t len;

        snprintf(path, sizeof(path), "%s/%s", fixtures, names[t]);
        pem = read_all(path, &len);
        if (pem == NULL) {
            char *out;
            size_t ol;

            CHECK_OK(hk_pve_keygen(types[t], &s));
            CHECK_OK(hk_pve_priv_to_pem(s, NULL, &out, &ol));
            write_all(path, out, ol);
            OPENSSL_clear_free(out, ol);
        } else {
            CHECK_OK(hk_pve_priv_from_pem(pem, len, NULL, &s));
            free(pem);
        }
        for (k = 0; k < 2; k++) {
            unsigned char *b;
            size_t n;
            ctx_t c;

            ctx_new(&c, curves[k]);
            memset(c.kid, 0x55, HK_ID_LEN);
            c.epoch = 3;
            b = encrypt(hk_pve_priv_pub(s), &c, &n);
            snprintf(path, sizeof(path), "%s/%s-%s.bin", corpus,
                     t == 0 ? "ecies" : "rsa", hk_curve_name(curves[k]));
            write_all(path, b, n);
            OPENSSL_free(b);
        }
        hk_pve_priv_free(s);
    }
    return 0;
}

int main(int argc, char **argv)
{
    hk_pve_priv *keys[2];
    int t;

    if (argc == 4 && strcmp(argv[1], "--seeds") == 0)
        return gen_seeds(argv[2], argv[3]);
    for (t = 0; t < 2; t++)
        CHECK_OK(hk_pve_keygen(types[t], &keys[t]));
    test_keys(keys);
    test_round_trip(keys);
    test_tamper(keys);
    test_cheat(keys);
    test_v1(keys);
    test_chains();
    for (t = 0; t < 2; t++)
        hk_pve_priv_free(keys[t]);
    printf("test_pve: all ok\n");
    return 0;
}
