/* Makes the fuzz targets' fixtures and seed corpora from real protocol runs:
 *
 *   gen_seeds <tests/fuzz directory>
 *
 * Keeps fixtures/setup-secret.json if present (else generates a setup,
 * slow), then runs keygen, sign and refresh on both curves with the fixed
 * session ids of fuzz_common.h and writes the shares (fixtures/) and the
 * recorded messages (corpus/<target>/). Also the keystore token and key
 * file, JWTs, and a key = value file. Needs fixtures/jwt-es256.pem (any
 * P-256 private key). Run it from a fuzz build (scripts/fuzz --regen). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "client/keystore.h"
#include "mpc/codec.h"
#include "common/hex.h"
#include "mpc/keygen.h"
#include "mpc/pve.h"
#include "mpc/refresh.h"
#include "mpc/setup.h"
#include "mpc/sign.h"
#include "tests/fuzz/fuzz_common.h"
#include "tests/unit/check.h"
#include "transport/jwt.h"

static const char *root;

typedef struct {
    unsigned char *b[HK_FUZZ_MAX_MSGS];
    size_t len[HK_FUZZ_MAX_MSGS];
    int n;
} msgs;

static void msgs_free(msgs *m)
{
    int i;

    for (i = 0; i < m->n; i++)
        OPENSSL_free(m->b[i]);
    memset(m, 0, sizeof(*m));
}

static void msgs_add(msgs *m, unsigned char *b, size_t len)
{
    CHECK(m->n < HK_FUZZ_MAX_MSGS && b != NULL);
    m->b[m->n] = b;
    m->len[m->n++] = len;
}

static void mkdirs(const char *sub)
{
    char path[4096];

    snprintf(path, sizeof(path), "%s/%s", root, sub);
    CHECK(mkdir(path, 0755) == 0 || errno == EEXIST);
}

static void put(const char *sub, const void *b, size_t len)
{
    char path[4096];

    snprintf(path, sizeof(path), "%s/%s", root, sub);
    hk_fuzz_write(path, b, len);
    printf("gen_seeds: %s (%zu bytes)\n", sub, len);
}

/* Writes the messages whose indices are in `which` (-1 ends), joined by
 * NUL bytes. */
static void put_msgs(const char *sub, const msgs *m, const int *which)
{
    unsigned char *buf;
    size_t len = 0;
    int i;

    for (i = 0; which[i] >= 0; i++)
        len += m->len[which[i]] + 1;
    CHECK((buf = malloc(len)) != NULL);
    for (len = 0, i = 0; which[i] >= 0; i++) {
        if (i > 0)
            buf[len++] = 0;
        memcpy(buf + len, m->b[which[i]], m->len[which[i]]);
        len += m->len[which[i]];
    }
    put(sub, buf, len);
    free(buf);
}

static void put_share(const char *dir, const hk_share *s)
{
    unsigned char *rec = NULL;
    char name[256];
    size_t len = 0;

    CHECK_OK(hk_share_encode(s, &rec, &len));
    snprintf(name, sizeof(name), "%s/share-p%d-%s.json", dir, (int)s->role,
             hk_curve_name(s->curve));
    put(name, rec, len);
    OPENSSL_clear_free(rec, len);
}

/* fuzz_backup: the public view of P1's share s (as GET /backup sends it),
 * a POST /backup body whose blob encrypts its x1 under the fixture backup
 * key of `type` (made by test_pve --seeds), and that key's PEM. */
static void backup(const hk_share *s, hk_pve_type type)
{
    const char *cn = hk_curve_name(s->curve);
    const char *kn = type == HK_PVE_ECIES_P256 ? "ecies" : "rsa";
    unsigned char *b, *blob = NULL;
    char name[256], kh[2 * HK_ID_LEN + 1], *b64, *pem = NULL, *body;
    hk_pve_priv *k = NULL;
    json_t *o;
    size_t len, blen = 0, plen = 0;

    CHECK_OK(hk_share_public_encode(s, &b, &len));
    snprintf(name, sizeof(name), "corpus/fuzz_backup/view-%s", cn);
    put(name, b, len);
    OPENSSL_free(b);
    snprintf(name, sizeof(name), "pve-%s.pem", kn);
    b = hk_fuzz_fixture(name, &len);
    CHECK_OK(hk_pve_priv_from_pem((const char *)b, len, NULL, &k));
    free(b);
    CHECK_OK(hk_pve_pub_to_pem(hk_pve_priv_pub(k), &pem, &plen));
    snprintf(name, sizeof(name), "corpus/fuzz_backup/pub-%s.pem", kn);
    put(name, pem, plen);
    CHECK_OK(hk_pve_encrypt(hk_pve_priv_pub(k), s->curve, s->kid, s->epoch,
                            &s->x, &blob, &blen));
    CHECK((b64 = hk_b64_encode(blob, blen)) != NULL);
    hk_hex(s->kid, HK_ID_LEN, kh);
    o = json_pack("{s:s,s:I,s:s,s:s}", "key_id", kh, "epoch",
                  (json_int_t)s->epoch, "blob", b64, "backup_pub", pem);
    CHECK((body = json_dumps(o, JSON_COMPACT)) != NULL);
    json_decref(o);
    snprintf(name, sizeof(name), "corpus/fuzz_backup/post-%s-%s.json", kn, cn);
    put(name, body, strlen(body));
    free(body);
    OPENSSL_free(b64);
    OPENSSL_free(blob);
    OPENSSL_free(pem);
    hk_pve_priv_free(k);
}

static hk_rped_secret *setup(void)
{
    hk_rped_secret *sec = NULL;
    unsigned char *rec = NULL;
    char path[4096];
    size_t len = 0;
    FILE *f;

    snprintf(path, sizeof(path), "%s/fixtures/setup-secret.json", root);
    if ((f = fopen(path, "rb")) != NULL) {
        fclose(f);
        rec = hk_fuzz_fixture("setup-secret.json", &len);
        CHECK_OK(hk_setup_secret_decode(rec, len, &sec));
        free(rec);
    } else {
        printf("gen_seeds: generating a ring-Pedersen setup (slow)\n");
        CHECK_OK(hk_rped_generate(&sec));
        CHECK_OK(hk_setup_secret_encode(sec, &rec, &len));
        put("fixtures/setup-secret.json", rec, len);
        OPENSSL_free(rec);
    }
    CHECK_OK(hk_setup_secret_encode(sec, &rec, &len));
    put("corpus/fuzz_setup/setup-secret.json", rec, len);
    OPENSSL_free(rec);
    CHECK_OK(hk_setup_encode(sec, &rec, &len));
    put("corpus/fuzz_setup/setup.json", rec, len);
    OPENSSL_free(rec);
    return sec;
}

static void keygen(hk_curve_id curve, const hk_rped_secret *sec, hk_share **s1,
                   hk_share **s2, msgs *m)
{
    unsigned char sid[HK_ID_LEN], kid[HK_ID_LEN], *out = NULL;
    hk_keygen *a = NULL, *b = NULL;
    size_t len = 0;
    int i;

    hk_fuzz_id(sid, HK_FUZZ_KG_SID);
    hk_fuzz_id(kid, HK_FUZZ_KG_KID);
    CHECK_OK(hk_keygen_p1_new(curve, sid, kid, 2048, &sec->pub, &a));
    CHECK_OK(hk_keygen_p2_new(curve, sid, kid, 2048, sec, &b));
    CHECK_OK(hk_keygen_start(a, &out, &len));
    msgs_add(m, out, len);
    for (i = 0; i < 4; i++) {
        CHECK_OK(hk_keygen_recv(i % 2 ? a : b, m->b[i], m->len[i], &out, &len));
        if (out != NULL)
            msgs_add(m, out, len);
    }
    CHECK(m->n == 4);
    CHECK_OK(hk_keygen_confirm(a, &out, &len));
    msgs_add(m, out, len);
    CHECK_OK(hk_keygen_recv(b, out, len, &out, &len));
    CHECK(out == NULL && m->n == 5 && hk_keygen_confirmed(b));
    CHECK_OK(hk_keygen_take_share(a, s1));
    CHECK_OK(hk_keygen_take_share(b, s2));
    hk_keygen_free(a);
    hk_keygen_free(b);
}

static void sign(const hk_share *s1, const hk_share *s2, msgs *m)
{
    unsigned char sid[HK_ID_LEN], *out = NULL;
    hk_sign *a = NULL, *b = NULL;
    size_t len = 0;
    int i;

    hk_fuzz_id(sid, HK_FUZZ_SG_SID);
    CHECK_OK(hk_sign_p1_new(s1, sid, (const unsigned char *)HK_FUZZ_DIGEST,
                            HK_FUZZ_DIGEST_LEN, &a));
    CHECK_OK(hk_sign_p2_new(s2, sid, &b));
    CHECK_OK(hk_sign_start(a, &out, &len));
    msgs_add(m, out, len);
    for (i = 0; i < 5; i++) {
        CHECK_OK(hk_sign_recv(i % 2 ? a : b, m->b[i], m->len[i], &out, &len));
        if (out != NULL)
            msgs_add(m, out, len);
    }
    CHECK(m->n == 5 && hk_sign_done(a) && hk_sign_done(b));
    hk_sign_free(a);
    hk_sign_free(b);
}

static void refresh(const hk_share *s1, const hk_share *s2,
                    const hk_rped_secret *sec, msgs *m)
{
    unsigned char sid[HK_ID_LEN], *out = NULL;
    hk_refresh *a = NULL, *b = NULL;
    size_t len = 0;
    int i;

    hk_fuzz_id(sid, HK_FUZZ_RF_SID);
    CHECK_OK(hk_refresh_p1_new(s1, sid, 2048, &sec->pub, &a));
    CHECK_OK(hk_refresh_p2_new(s2, sid, 2048, sec, &b));
    CHECK_OK(hk_refresh_start(a, &out, &len));
    msgs_add(m, out, len);
    for (i = 0; i < 4; i++) {
        CHECK_OK(
            hk_refresh_recv(i % 2 ? a : b, m->b[i], m->len[i], &out, &len));
        if (out != NULL)
            msgs_add(m, out, len);
    }
    CHECK_OK(hk_refresh_confirm(a, &out, &len));
    msgs_add(m, out, len);
    CHECK_OK(hk_refresh_recv(b, out, len, &out, &len));
    CHECK(out == NULL && m->n == 5 && hk_refresh_confirmed(b));
    hk_refresh_free(a);
    hk_refresh_free(b);
}

/* refresh.3 without its Paillier package (N, ckey and the proofs, ~30 KB):
 * still opens refresh.1's commitment; keygen.3 seeds the package. */
static void put_refresh3_small(const char *sub, const msgs *m)
{
    static const char *const big[] = {"N",   "ckey", "nth",  "lsS",  "lsA",
                                      "lsD", "lsY",  "lsz1", "lsz2", "lsz3"};
    json_t *o = json_loadb((const char *)m->b[2], m->len[2], 0, NULL);
    msgs small;
    size_t i;
    char *s;

    CHECK(o != NULL);
    for (i = 0; i < sizeof(big) / sizeof(big[0]); i++)
        CHECK(json_object_del(o, big[i]) == 0);
    CHECK((s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS)) != NULL);
    json_decref(o);
    memset(&small, 0, sizeof(small));
    small.b[0] = m->b[0];
    small.len[0] = m->len[0];
    small.b[1] = (unsigned char *)s;
    small.len[1] = strlen(s);
    put_msgs(sub, &small, (const int[]){0, 1, -1});
    free(s);
}

/* A token with a fixed salt (fixtures/token.json) holding s1 as "fuzz":
 * the keystore target opens a copy and logs in with HK_FUZZ_KS_PIN. */
static void keystore(const hk_share *s1)
{
    char *dir = hk_fuzz_tmpdir(), tok[4096], path[4096];
    unsigned char *b;
    size_t len;
    hk_ks *ks = NULL;

    hk_fuzz_rmtree_at_exit(dir);
    snprintf(tok, sizeof(tok), "%s/token", dir);
    CHECK_OK(hk_ks_init(tok, HK_FUZZ_KS_PIN, "fuzz token", &ks));
    CHECK_OK(hk_ks_store_share(ks, HK_FUZZ_KS_LABEL, s1));
    hk_ks_close(ks);
    snprintf(path, sizeof(path), "%s/token.json", tok);
    CHECK(setenv("HK_FUZZ_FIXTURES", tok, 1) == 0);
    b = hk_fuzz_fixture("token.json", &len);
    put("fixtures/token.json", b, len);
    put("corpus/fuzz_keystore/token.json", b, len);
    free(b);
    b = hk_fuzz_fixture("keys/" HK_FUZZ_KS_LABEL ".json", &len);
    put("corpus/fuzz_keystore/keyfile.json", b, len);
    free(b);
    snprintf(path, sizeof(path), "%s/fixtures", root);
    CHECK(setenv("HK_FUZZ_FIXTURES", path, 1) == 0);
    free(dir);
}

static void jwt(void)
{
    static const char *const payloads[] = {
        "{\"aud\":\"halfkey\",\"exp\":1700003600,\"iat\":1700000000,"
        "\"iss\":\"halfkeyd\",\"nbf\":1700000000,\"sub\":\"alice\"}",
        "{\"aud\":[\"other\",\"halfkey\"],\"exp\":1700000010,"
        "\"iss\":\"halfkeyd\",\"sub\":\"bob@example.org\"}",
        "{\"alg\":\"HS256\",\"typ\":\"JWT\"}",
        /* exp + skew overflowed a long (fixed in jwt.c) */
        "{\"aud\":\"halfkey\",\"exp\":9223372036854775807,"
        "\"iss\":\"halfkeyd\",\"sub\":\"alice\"}",
    };
    unsigned char *key;
    char *tok = NULL, name[64];
    size_t len, i;

    CHECK_OK(hk_jwt_mint("HS256", HK_FUZZ_JWT_SECRET,
                         strlen(HK_FUZZ_JWT_SECRET), HK_FUZZ_JWT_ISS,
                         HK_FUZZ_JWT_AUD, "alice", HK_FUZZ_JWT_NOW, 3600,
                         &tok));
    put("corpus/fuzz_jwt/hs256", tok, strlen(tok));
    free(tok);
    key = hk_fuzz_fixture("jwt-es256.pem", &len);
    CHECK_OK(hk_jwt_mint("ES256", key, len, HK_FUZZ_JWT_ISS, HK_FUZZ_JWT_AUD,
                         "carol", HK_FUZZ_JWT_NOW, 3600, &tok));
    put("corpus/fuzz_jwt/es256", tok, strlen(tok));
    free(tok);
    free(key);
    for (i = 0; i < sizeof(payloads) / sizeof(payloads[0]); i++) {
        snprintf(name, sizeof(name), "corpus/fuzz_jwt/claims-%zu", i);
        put(name, payloads[i], strlen(payloads[i]));
    }
}

static void kvfile(void)
{
    static const char conf[] = "# halfkeyd.conf\n"
                               "listen = 127.0.0.1\n"
                               "port = 8443\n"
                               "\tdb = halfkeyd.db  \r\n"
                               "tls_cert=/etc/halfkeyd/cert.pem\n"
                               "jwt_alg = ES256\n"
                               "workers = 2\n"
                               "\n"
                               "session_idle = -1\n";

    put("corpus/fuzz_kvfile/halfkeyd.conf", conf, sizeof(conf) - 1);
}

static void protocol(hk_curve_id curve, const hk_rped_secret *sec)
{
    const char *cn = hk_curve_name(curve);
    hk_share *s1 = NULL, *s2 = NULL;
    char name[256];
    msgs m;
    int i;

    memset(&m, 0, sizeof(m));
    keygen(curve, sec, &s1, &s2, &m);
    put_share("fixtures", s1);
    put_share("fixtures", s2);
    put_share("corpus/fuzz_share", s1);
    put_share("corpus/fuzz_share", s2);
    backup(s1, curve == HK_CURVE_SECP256K1 ? HK_PVE_ECIES_P256
                                           : HK_PVE_RSA_OAEP_3072);
    /* P2 fresh: keygen.1 then keygen.3 (the big one: one curve only). */
    snprintf(name, sizeof(name), "corpus/fuzz_keygen/p2-%s", cn);
    put_msgs(name, &m,
             curve == HK_CURVE_SECP256K1 ? (const int[]){0, 2, 4, -1}
                                         : (const int[]){0, -1});
    /* P1 after start: keygen.2 then keygen.4. */
    snprintf(name, sizeof(name), "corpus/fuzz_keygen/p1-%s", cn);
    put_msgs(name, &m, (const int[]){1, 3, -1});
    for (i = 0; i < 5; i++)
        if (i != 2 && curve == HK_CURVE_SECP256K1) {
            snprintf(name, sizeof(name), "corpus/fuzz_codec/keygen.%d", i + 1);
            put_msgs(name, &m, (const int[]){i, -1});
        }
    msgs_free(&m);

    sign(s1, s2, &m);
    snprintf(name, sizeof(name), "corpus/fuzz_sign/p2-%s", cn);
    put_msgs(name, &m, (const int[]){0, 2, 4, -1});
    snprintf(name, sizeof(name), "corpus/fuzz_sign/p1-%s", cn);
    put_msgs(name, &m, (const int[]){1, 3, -1});
    for (i = 0; i < 5 && curve == HK_CURVE_SECP256K1; i++) {
        snprintf(name, sizeof(name), "corpus/fuzz_codec/sign.%d", i + 1);
        put_msgs(name, &m, (const int[]){i, -1});
    }
    msgs_free(&m);

    refresh(s1, s2, sec, &m);
    snprintf(name, sizeof(name), "corpus/fuzz_refresh/p2-%s", cn);
    put_refresh3_small(name, &m);
    if (curve == HK_CURVE_SECP256K1) {
        put_msgs("corpus/fuzz_codec/refresh.1", &m, (const int[]){0, -1});
        put_msgs("corpus/fuzz_codec/refresh.4", &m, (const int[]){3, -1});
    }
    msgs_free(&m);

    if (curve == HK_CURVE_SECP256K1)
        keystore(s1);
    hk_share_free(s1);
    hk_share_free(s2);
}

int main(int argc, char **argv)
{
    static const char *const dirs[] = {"fixtures",
                                       "corpus",
                                       "corpus/fuzz_codec",
                                       "corpus/fuzz_share",
                                       "corpus/fuzz_setup",
                                       "corpus/fuzz_keygen",
                                       "corpus/fuzz_sign",
                                       "corpus/fuzz_refresh",
                                       "corpus/fuzz_jwt",
                                       "corpus/fuzz_kvfile",
                                       "corpus/fuzz_keystore",
                                       "corpus/fuzz_backup"};
    hk_rped_secret *sec;
    char path[4096];
    size_t i;

    if (argc != 2) {
        fprintf(stderr, "usage: gen_seeds <tests/fuzz directory>\n");
        return 2;
    }
    root = argv[1];
    for (i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++)
        mkdirs(dirs[i]);
    snprintf(path, sizeof(path), "%s/fixtures", root);
    CHECK(setenv("HK_FUZZ_FIXTURES", path, 1) == 0);
    sec = setup();
    protocol(HK_CURVE_SECP256K1, sec);
    protocol(HK_CURVE_P256, sec);
    jwt();
    kvfile();
    hk_rped_secret_free(sec);
    return 0;
}
