/* halfkeyd: the commitment server (party P2).
 *
 *   halfkeyd init DIR [--port N]       make a ready-to-run server directory
 *   halfkeyd run --config FILE         serve
 *   halfkeyd token --config FILE --sub NAME [--ttl SECONDS]
 *                                      mint a JWT from the embedded issuer
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/evp.h>
#include <libwebsockets.h>
#include <openssl/pem.h>

#include "mpc/codec.h"
#include "mpc/setup.h"
#include "server/admin.h"
#include "server/config.h"
#include "server/db.h"
#include "server/log.h"
#include "server/seal.h"
#include "server/service.h"
#include "transport/http_client.h"
#include "transport/jwt.h"
#include "transport/tls_cert.h"

static int hk_usage(void)
{
    fprintf(stderr,
            "usage: halfkeyd init DIR [--port N]\n"
            "       halfkeyd run --config FILE\n"
            "       halfkeyd token --config FILE --sub NAME [--ttl SECONDS]\n"
            "       halfkeyd initdb --config FILE\n"
            "       halfkeyd keys list --config FILE [--sub NAME]\n"
            "       halfkeyd keys disable|enable --config FILE --key KEYID\n"
            "       halfkeyd keys limit --config FILE --key KEYID "
            "--per-hour N --per-day N\n"
            "       halfkeyd audit verify --config FILE\n"
            "       halfkeyd audit export --config FILE [--from SEQ]\n");
    return 2;
}

static int hk_fail(const char *what, hk_err e, const char *why)
{
    fprintf(stderr, "halfkeyd: %s: %s%s%s\n", what, hk_strerror(e),
            why != NULL && why[0] ? ": " : "", why != NULL ? why : "");
    return 1;
}

/* The embedded JWT issuer: an ES256 key pair in PEM files. */
static hk_err hk_make_issuer(const char *priv, const char *pub)
{
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    FILE *f = NULL;
    hk_err e = HK_ERR_IO;
    int fd;

    if (k == NULL)
        return HK_ERR_CRYPTO;
    fd = open(priv, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0 || (f = fdopen(fd, "w")) == NULL)
        goto done;
    if (PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL) != 1)
        goto done;
    fclose(f);
    if ((f = fopen(pub, "wx")) == NULL || PEM_write_PUBKEY(f, k) != 1)
        goto done;
    e = HK_OK;
done:
    if (f != NULL)
        fclose(f);
    EVP_PKEY_free(k);
    return e;
}

static void hk_join(char *out, size_t cap, const char *dir, const char *name)
{
    snprintf(out, cap, "%s/%s", dir, name);
}

static hk_err hk_init_setup(const char *dbpath, const char *kekpath, char *why)
{
    hk_kek *kek = NULL;
    hk_db *db = NULL;
    hk_err e;

    if ((e = hk_kek_load_file(kekpath, &kek, why, 256)) == HK_OK &&
        (e = hk_db_open_sqlite(dbpath, &db, why, 256)) == HK_OK)
        e = hk_admin_make_setup(db, kek);
    hk_db_close(db);
    hk_kek_free(kek);
    return e;
}

static int hk_cmd_init(int argc, char **argv)
{
    char why[256] = "", conf[HK_CFG_PATH_MAX], pinhex[2 * HK_PIN_LEN + 1];
    char p1[HK_CFG_PATH_MAX], p2[HK_CFG_PATH_MAX];
    unsigned char pin[HK_PIN_LEN];
    hk_srv_config c;
    const char *dir;
    int port = 8443;
    hk_err e;

    if (argc < 3)
        return hk_usage();
    dir = argv[2];
    if (argc == 5 && strcmp(argv[3], "--port") == 0)
        port = atoi(argv[4]);
    else if (argc != 3)
        return hk_usage();
    if (port < 0 || port > 65535)
        return hk_usage();
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return hk_fail(dir, HK_ERR_IO, strerror(errno));
    /* The files live in DIR; the configuration names them relative to
     * itself, so the directory can be moved as a whole. */
    hk_srv_config_defaults(&c);
    c.port = port;
    strcpy(c.tls_cert, "tls-cert.pem");
    strcpy(c.tls_key, "tls-key.pem");
    strcpy(c.db, "halfkeyd.db");
    strcpy(c.kek_file, "kek.bin");
    strcpy(c.jwt_key, "jwt-issuer.pub.pem");
    strcpy(c.jwt_issuer_key, "jwt-issuer.key.pem");
    strcpy(c.jwt_alg, "ES256");
    strcpy(c.jwt_iss, "halfkeyd");
    strcpy(c.jwt_aud, "halfkey");
    c.jwt_skew = 30;
    c.session_idle = 300;
    c.workers = 2;
    c.min_paillier_bits = 2048;
    hk_join(conf, sizeof(conf), dir, "halfkeyd.conf");
    hk_join(p1, sizeof(p1), dir, c.tls_cert);
    hk_join(p2, sizeof(p2), dir, c.tls_key);
    if ((e = hk_tls_make_selfsigned(p1, p2, 825)) != HK_OK)
        return hk_fail("TLS certificate", e, p1);
    if ((e = hk_pin_of_cert_file(p1, pin)) != HK_OK)
        return hk_fail("certificate pin", e, p1);
    hk_join(p1, sizeof(p1), dir, c.jwt_issuer_key);
    hk_join(p2, sizeof(p2), dir, c.jwt_key);
    if ((e = hk_make_issuer(p1, p2)) != HK_OK)
        return hk_fail("JWT issuer key", e, p1);
    hk_join(p1, sizeof(p1), dir, c.kek_file);
    hk_join(p2, sizeof(p2), dir, c.db);
    if ((e = hk_kek_generate_file(p1, why, sizeof(why))) != HK_OK)
        return hk_fail("key-encryption key", e, why);
    if ((e = hk_init_setup(p2, p1, why)) != HK_OK)
        return hk_fail("setup", e, why);
    if ((e = hk_srv_config_write(conf, &c)) != HK_OK)
        return hk_fail("configuration", e, conf);
    hk_hex(pin, HK_PIN_LEN, pinhex);
    printf("config = %s\nurl = https://127.0.0.1:%d\npin = %s\n"
           "token = halfkeyd token --config %s --sub NAME\n",
           conf, port, pinhex, conf);
    return 0;
}

static hk_err hk_read_small(const char *path, unsigned char **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    unsigned char *b = malloc(65537);
    size_t n;

    if (f == NULL || b == NULL) {
        if (f != NULL)
            fclose(f);
        free(b);
        return HK_ERR_CONFIG;
    }
    n = fread(b, 1, 65537, f);
    fclose(f);
    if (n == 0 || n > 65536) {
        free(b);
        return HK_ERR_CONFIG;
    }
    *out = b;
    *len = n;
    return HK_OK;
}

static int hk_cmd_token(int argc, char **argv)
{
    const char *conf = NULL, *sub = NULL, *key;
    char why[256], *tok = NULL;
    unsigned char *k = NULL;
    size_t klen = 0;
    long ttl = 3600;
    hk_srv_config c;
    hk_err e;
    int i;

    for (i = 2; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--config") == 0)
            conf = argv[i + 1];
        else if (strcmp(argv[i], "--sub") == 0)
            sub = argv[i + 1];
        else if (strcmp(argv[i], "--ttl") == 0)
            ttl = strtol(argv[i + 1], NULL, 10);
        else
            return hk_usage();
    }
    if (i != argc || conf == NULL || sub == NULL || ttl <= 0 ||
        ttl > 366L * 86400)
        return hk_usage();
    if ((e = hk_srv_config_load(conf, &c, why)) != HK_OK)
        return hk_fail("configuration", e, why);
    key = strcmp(c.jwt_alg, "HS256") == 0 ? c.jwt_key : c.jwt_issuer_key;
    if (key[0] == 0 || (e = hk_read_small(key, &k, &klen)) != HK_OK)
        return hk_fail("issuer key", HK_ERR_CONFIG,
                       "no jwt_issuer_key configured or unreadable");
    e = hk_jwt_mint(c.jwt_alg, k, klen, c.jwt_iss, c.jwt_aud, sub,
                    (long)time(NULL), ttl, &tok);
    OPENSSL_cleanse(k, klen);
    free(k);
    if (e != HK_OK)
        return hk_fail("token", e, hk_sub_valid(sub) ? "" : "invalid --sub");
    printf("%s\n", tok);
    free(tok);
    return 0;
}

typedef struct {
    sigset_t set;
    hk_service *svc;
} hk_sigctx;

/* The first SIGTERM/SIGINT drains (running sessions finish); a second
 * one stops at once. */
static void *hk_signal_thread(void *p)
{
    hk_sigctx *sc = p;
    int sig = 0, n;

    for (n = 0; n < 2 && sigwait(&sc->set, &sig) == 0; n++) {
        hk_log("info", "event=shutdown signal=%d mode=%s", sig,
               n == 0 ? "drain" : "now");
        hk_service_stop(sc->svc, n > 0);
    }
    return NULL;
}

static int hk_cmd_run(int argc, char **argv)
{
    char why[256] = "";
    hk_srv_config c;
    hk_service *svc = NULL;
    hk_sigctx sc;
    pthread_t th;
    hk_err e;

    if (argc != 4 || strcmp(argv[2], "--config") != 0)
        return hk_usage();
    if ((e = hk_srv_config_load(argv[3], &c, why)) != HK_OK)
        return hk_fail("configuration", e, why);
    /* Signals go to one thread only; the others never see them. */
    sigemptyset(&sc.set);
    sigaddset(&sc.set, SIGINT);
    sigaddset(&sc.set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sc.set, NULL);
    signal(SIGPIPE, SIG_IGN);
    if ((e = hk_service_new(&c, &svc, why)) != HK_OK)
        return hk_fail("start", e, why);
    sc.svc = svc;
    if (pthread_create(&th, NULL, hk_signal_thread, &sc) != 0)
        return hk_fail("start", HK_ERR_NOMEM, "signal thread");
    pthread_detach(th);
    e = hk_service_run(svc);
    hk_service_free(svc);
    hk_log("info", "event=stopped");
    return e == HK_OK ? 0 : 1;
}

int main(int argc, char **argv)
{
    lws_set_log_level(LLL_ERR, NULL);
    if (argc < 2)
        return hk_usage();
    if (strcmp(argv[1], "init") == 0)
        return hk_cmd_init(argc, argv);
    if (strcmp(argv[1], "run") == 0)
        return hk_cmd_run(argc, argv);
    if (strcmp(argv[1], "token") == 0)
        return hk_cmd_token(argc, argv);
    if (strcmp(argv[1], "initdb") == 0)
        return hk_cmd_initdb(argc, argv);
    if (strcmp(argv[1], "keys") == 0)
        return hk_cmd_keys(argc, argv);
    if (strcmp(argv[1], "audit") == 0)
        return hk_cmd_audit(argc, argv);
    return hk_usage();
}
