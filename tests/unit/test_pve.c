/* Unit tests of the publicly verifiable encryption of x1 (mpc/pve.h):
 *  - backup keys: generation, PEM round trips (plain and passphrase-
 *    encrypted PKCS#8, SubjectPublicKeyInfo), wrong or missing
 *    passphrase, unsupported keys (RSA-2048, RSA e = 3, secp256k1,
 *    Ed25519), traditional and garbage PEM;
 *  - honest round trip on secp256k1 and P-256 with ECIES-P256 and
 *    RSA-OAEP-3072;
 *  - refusals: every header byte altered; every field of every row
 *    altered (the challenge digest; each ciphertext and its length,
 *    the opened value and seed of every row); truncation and extension; rows,
 * ciphertexts and opening fields reordered; another key id, epoch, curve, Q1 or
 * backup key, also with the header relabelled to match; a blob encrypting
 * another value; decryption with the wrong private key;
 *  - soundness: a cheating prover that encrypts the right value in one
 *    column per row and garbage in the others passes a T = 2 verifier in
 *    about 1/16 of the runs (4^-T), and every blob that passes then fails
 *    to decrypt; with T = 64 it is refused.
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

#include "mpc/pve.h"
#include "mpc/pve_impl.h"
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

            ctx_new(&c, curves[k]);
            b = encrypt(pub, &c, &n);
            CHECK(n == (types[t] == HK_PVE_ECIES_P256 ? 25478u : 103046u));
            CHECK_OK(hk_pve_peek(b, n, &in));
            hk_pve_pub_fingerprint(pub, fp);
            CHECK(in.version == 1 && in.type == types[t] &&
                  in.curve == curves[k] && in.k == HK_PVE_K &&
                  in.t == HK_PVE_T && in.epoch == c.epoch &&
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

static size_t row_len(hk_pve_type t) { return HK_PVE_K * (2 + ct_len(t)) + 64; }

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
            unsigned char *b, *m;
            hk_scalar x;
            ctx_t c, c2;

            ctx_new(&c, curves[k]);
            b = encrypt(bk, &c, &n);
            CHECK_OK(verify(bk, &c, b, n));

            /* every header byte */
            for (off = 0; off < HK_PVE_HDR_LEN; off++, checks++)
                CHECK(flip(bk, &c, b, n, off, 0x01) != HK_OK);
            CHECK_ERR(flip(bk, &c, b, n, 4, 0x03), HK_ERR_VERSION);
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
            for (i = 0; i < HK_PVE_T; i++) {
                if (!(t == 0 && k == 0) && i > 1 && i != HK_PVE_T - 1)
                    continue;
                off = ROWS + i * rl;
                for (j = 0; j < HK_PVE_K; j++) {
                    size_t co = off + j * (2 + cl);

                    CHECK_ERR(flip(bk, &c, b, n, co, 0x01), HK_ERR_DECODE);
                    CHECK_ERR(flip(bk, &c, b, n, co + 1, 0x01), HK_ERR_DECODE);
                    /* first, middle and last byte of the ciphertext */
                    CHECK(flip(bk, &c, b, n, co + 2, 0x01) != HK_OK);
                    CHECK(flip(bk, &c, b, n, co + 2 + cl / 2, 0x40) != HK_OK);
                    CHECK(flip(bk, &c, b, n, co + 1 + cl, 0x80) != HK_OK);
                    checks += 5;
                }
                off += HK_PVE_K * (2 + cl);
                CHECK(flip(bk, &c, b, n, off, 0x01) != HK_OK); /* v */
                CHECK(flip(bk, &c, b, n, off + 31, 0x01) != HK_OK);
                CHECK(flip(bk, &c, b, n, off + 32, 0x01) != HK_OK); /* seed */
                CHECK(flip(bk, &c, b, n, off + 63, 0x80) != HK_OK);
                checks += 4;
            }
            /* the opened value replaced by zero and by q - 1 + ... */
            m = OPENSSL_memdup(b, n);
            off = ROWS + HK_PVE_K * (2 + cl);
            memset(m + off, 0, 32);
            CHECK_ERR(verify(bk, &c, m, n), HK_ERR_SCALAR);
            memset(m + off, 0xff, 32);
            CHECK_ERR(verify(bk, &c, m, n), HK_ERR_SCALAR);
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
            off = ROWS + HK_PVE_K * (2 + cl);
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
    const hk_pve_params small = {4, 2}, full = {HK_PVE_K, HK_PVE_T};
    const hk_pve_pub *bk = hk_pve_priv_pub(keys[0]);
    unsigned char guess[HK_PVE_T_MAX], e[HK_PVE_T_MAX], *b;
    const int runs = 480;
    int r, pass = 0;
    unsigned i;
    size_t n;
    hk_scalar x;
    ctx_t c;

    ctx_new(&c, HK_CURVE_SECP256K1);
    /* the honest prover with T = 2 verifies and decrypts */
    CHECK_OK(hk_pve_encrypt_ex(&small, NULL, bk, c.curve, c.kid, c.epoch, &c.x1,
                               &b, &n));
    CHECK_OK(hk_pve_verify_ex(&small, bk, c.curve, c.kid, c.epoch, &c.q1, b, n,
                              NULL));
    CHECK_OK(hk_pve_decrypt_ex(&small, keys[0], c.curve, c.kid, c.epoch, &c.q1,
                               b, n, &x));
    CHECK(hk_scalar_eq(&x, &c.x1));
    /* ... and is refused by the real verifier (parameters are fixed) */
    CHECK_ERR(verify(bk, &c, b, n), HK_ERR_DECODE);
    OPENSSL_free(b);

    for (r = 0; r < runs; r++) {
        CHECK(RAND_bytes(guess, small.t) == 1);
        for (i = 0; i < small.t; i++)
            guess[i] &= 3;
        CHECK_OK(hk_pve_encrypt_ex(&small, guess, bk, c.curve, c.kid, c.epoch,
                                   &c.x1, &b, &n));
        if (hk_pve_verify_ex(&small, bk, c.curve, c.kid, c.epoch, &c.q1, b, n,
                             e) == HK_OK) {
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
    printf("cheat: T = 2, K = 4: %d of %d cheating blobs verified "
           "(expected %d = 4^-2), none decrypted\n",
           pass, runs, runs / 16);
    CHECK(pass >= 10 && pass <= 55);

    /* T = 64: refused (passes with probability 2^-128) */
    for (r = 0; r < 2; r++) {
        CHECK(RAND_bytes(guess, full.t) == 1);
        for (i = 0; i < full.t; i++)
            guess[i] &= 3;
        CHECK_OK(hk_pve_encrypt_ex(&full, guess, hk_pve_priv_pub(keys[r]),
                                   c.curve, c.kid, c.epoch, &c.x1, &b, &n));
        CHECK_ERR(verify(hk_pve_priv_pub(keys[r]), &c, b, n), HK_ERR_PROOF);
        OPENSSL_free(b);
    }
    /* bad parameters */
    {
        const hk_pve_params bad = {3, 2}, bad2 = {4, 65};

        CHECK_ERR(hk_pve_encrypt_ex(&bad, NULL, bk, c.curve, c.kid, c.epoch,
                                    &c.x1, &b, &n),
                  HK_ERR_ARG);
        CHECK_ERR(hk_pve_encrypt_ex(&bad2, NULL, bk, c.curve, c.kid, c.epoch,
                                    &c.x1, &b, &n),
                  HK_ERR_ARG);
    }
    printf("cheat: T = 64 cheating blobs refused\n");
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
    for (t = 0; t < 2; t++)
        hk_pve_priv_free(keys[t]);
    printf("test_pve: all ok\n");
    return 0;
}
