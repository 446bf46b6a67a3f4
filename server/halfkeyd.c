/* halfkeyd: the commitment server (party P2).
 *
 *   halfkeyd init DIR [--port N] [--hsm HSM-OPTIONS]
 *                                      make a ready-to-run server directory
 *   halfkeyd run --config FILE         serve
 *   halfkeyd token --config FILE --sub NAME [--ttl SECONDS] [--scope S]
 *                                      mint a JWT from the embedded issuer
 *   halfkeyd reseal --config FILE [--check]
 *                                      move sealed blobs to the primary KEK
 *   halfkeyd new-kek --config FILE (--file PATH | --hsm-key-label LABEL)
 *                                      make a KEK to rotate to
 *   halfkeyd initdb | keys ... | audit ...   operator commands on the
 *                                      configured database (server/commands.h)
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
#include "server/commands.h"
#include "server/config.h"
#include "server/store/db.h"
#include "server/seal/keyring.h"
#include "server/log.h"
#include "server/seal/reseal.h"
#include "server/seal/seal.h"
#include "server/http/service.h"
#include "transport/http_client.h"
#include "transport/jwt.h"
#include "transport/tls_cert.h"

/* Each command's synopsis: `halfkeyd CMD --help` prints its row, a bare
 * usage error all of them. A new command adds a row. */
typedef struct {
    const char *cmd, *usage;
} hk_usage_row;

static const hk_usage_row hk_usages[] = {
    {"init", "halfkeyd init DIR [--port N] [--hsm --hsm-module PATH "
             "--hsm-token LABEL\n"
             "                     --hsm-key-label LABEL (--hsm-pin-file F | "
             "--hsm-pin-env VAR)]\n"},
    {"run", "halfkeyd run --config FILE\n"},
    {"token", "halfkeyd token --config FILE --sub NAME [--ttl SECONDS] "
              "[--scope \"sign request approve\"]\n"},
    {"initdb", "halfkeyd initdb --config FILE\n"},
    {"keys", "halfkeyd keys list --config FILE [--sub NAME] [--json]\n"
             "halfkeyd keys disable|enable --config FILE "
             "(--key KEYID | --sub NAME)\n"
             "halfkeyd keys limit --config FILE --key KEYID "
             "--per-hour N|unlimited --per-day N|unlimited\n"
             "halfkeyd keys delete --config FILE --key KEYID\n"},
    {"audit", "halfkeyd audit verify --config FILE [--anchor SEQ:HASH] "
              "[--json]\n"
              "halfkeyd audit export --config FILE [--from SEQ]  "
              "(JSON lines)\n"},
    {"reseal", "halfkeyd reseal --config FILE [--check]\n"},
    {"new-kek", "halfkeyd new-kek --config FILE (--file PATH | "
                "--hsm-key-label LABEL)\n"},
};

#define HK_NUSAGES (sizeof(hk_usages) / sizeof(hk_usages[0]))

/* The rows of cmd (every row if cmd is NULL or unknown) on f. */
static void hk_print_usage(FILE *f, const char *cmd)
{
    size_t i, hits = 0;

    for (i = 0; cmd != NULL && i < HK_NUSAGES; i++)
        if (strcmp(hk_usages[i].cmd, cmd) == 0)
            hits += fprintf(f, "usage: %s", hk_usages[i].usage) > 0;
    for (i = 0; hits == 0 && i < HK_NUSAGES; i++)
        fprintf(f, "%s%s", i == 0 ? "usage: " : "       ", hk_usages[i].usage);
    if (hits == 0)
        fprintf(f, "       halfkeyd COMMAND --help | --version\n"
                   "(halfkeyd(8) describes each)\n");
}

static int hk_usage(void)
{
    hk_print_usage(stderr, NULL);
    return 2;
}

/* --help anywhere on the command line: that command's synopsis. */
static int hk_wants_help(int argc, char **argv)
{
    int i;

    for (i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return 1;
    return argc >= 2 && strcmp(argv[1], "help") == 0;
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

/* The setup sealed under the KEK ring of c (paths absolute). */
static hk_err hk_init_setup(const hk_srv_config *c, char *why)
{
    hk_kek *kek = NULL;
    hk_db *db = NULL;
    hk_err e;

    if ((e = hk_keyring_load(c, &kek, why)) == HK_OK &&
        (e = hk_db_open_sqlite(c->db, &db, why, 256)) == HK_OK)
        e = hk_admin_make_setup(db, kek);
    hk_db_close(db);
    hk_kek_free(kek);
    return e;
}

/* `init` options. */
typedef struct {
    const char *dir;
    int port, hsm;
    const char *module, *token, *label, *pin_file, *pin_env;
} hk_init_opts;

/* The value of option argv[i] for the HSM or --port, NULL if unknown. */
static const char **hk_init_opt(hk_init_opts *o, const char *name)
{
    if (strcmp(name, "--hsm-module") == 0)
        return &o->module;
    if (strcmp(name, "--hsm-token") == 0)
        return &o->token;
    if (strcmp(name, "--hsm-key-label") == 0)
        return &o->label;
    if (strcmp(name, "--hsm-pin-file") == 0)
        return &o->pin_file;
    if (strcmp(name, "--hsm-pin-env") == 0)
        return &o->pin_env;
    return NULL;
}

/* 0 and *o filled, or -1 for a usage error. */
static int hk_init_parse(int argc, char **argv, hk_init_opts *o)
{
    const char **v;
    char *end;
    long port;
    int i;

    memset(o, 0, sizeof(*o));
    o->port = 8443;
    if (argc < 3 || argv[2][0] == '-')
        return -1;
    o->dir = argv[2];
    for (i = 3; i < argc; i++) {
        if (strcmp(argv[i], "--hsm") == 0) {
            o->hsm = 1;
        } else if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
            port = strtol(argv[++i], &end, 10);
            if (*end != 0 || port < 0 || port > 65535)
                return -1;
            o->port = (int)port;
        } else if ((v = hk_init_opt(o, argv[i])) != NULL && i + 1 < argc) {
            *v = argv[++i];
        } else {
            return -1;
        }
    }
    if (o->hsm != (o->module != NULL || o->token != NULL || o->label != NULL ||
                   o->pin_file != NULL || o->pin_env != NULL))
        return -1;
    if (o->hsm && (o->module == NULL || o->token == NULL || o->label == NULL ||
                   (o->pin_file == NULL) == (o->pin_env == NULL)))
        return -1;
    return 0;
}

/* Copies path into out, made absolute (relative paths resolved against
 * the working directory; the file must exist). */
static hk_err hk_abs_path(const char *path, char *out, size_t cap, char *why)
{
    char *r = path[0] == '/' ? strdup(path) : realpath(path, NULL);
    int w;

    if (r == NULL) {
        snprintf(why, 256, "%.200s: %.40s", path, strerror(errno));
        return HK_ERR_CONFIG;
    }
    w = snprintf(out, cap, "%s", r);
    free(r);
    if (w < 0 || (size_t)w >= cap) {
        snprintf(why, 256, "%.200s: path too long", path);
        return HK_ERR_CONFIG;
    }
    return HK_OK;
}

/* Fills the sealing settings of an --hsm init and creates the HSM key. */
static hk_err hk_init_hsm(const hk_init_opts *o, hk_srv_config *c, char *why)
{
    hk_seal_config *s = &c->seal;
    char pin[HK_P11_PIN_MAX + 1] = "";
    hk_p11_params p;
    hk_err e;

    strcpy(s->backend, "pkcs11");
    c->kek_file[0] = 0;
    if (strlen(o->token) >= sizeof(s->hsm_token) ||
        strlen(o->label) > HK_P11_KEY_LABEL_MAX ||
        (o->pin_env != NULL && strlen(o->pin_env) >= sizeof(s->hsm_pin_env))) {
        snprintf(why, 256,
                 "HSM token label, key label or PIN variable "
                 "too long");
        return HK_ERR_CONFIG;
    }
    strcpy(s->hsm_token, o->token);
    strcpy(s->hsm_key_label, o->label);
    if (o->pin_env != NULL)
        strcpy(s->hsm_pin_env, o->pin_env);
    if ((e = hk_abs_path(o->module, s->hsm_module, sizeof(s->hsm_module),
                         why)) != HK_OK ||
        (o->pin_file != NULL &&
         (e = hk_abs_path(o->pin_file, s->hsm_pin_file, sizeof(s->hsm_pin_file),
                          why)) != HK_OK) ||
        (e = hk_keyring_hsm_params(c, s->hsm_key_label, pin, &p, why)) != HK_OK)
        goto done;
    e = hk_kek_generate_pkcs11(&p, why, 256);
done:
    OPENSSL_cleanse(pin, sizeof(pin));
    return e;
}

/* The key-encryption key of a new server directory: a key file, or a
 * new key inside the HSM (--hsm). *abs receives c with the paths the
 * setup needs made absolute. */
static hk_err hk_init_kek(const hk_init_opts *o, hk_srv_config *c,
                          hk_srv_config *abs, char *why)
{
    hk_err e;

    if (o->hsm) {
        if ((e = hk_init_hsm(o, c, why)) != HK_OK)
            return e;
        *abs = *c;
    } else {
        *abs = *c;
        hk_join(abs->kek_file, sizeof(abs->kek_file), o->dir, c->kek_file);
        if ((e = hk_kek_generate_file(abs->kek_file, why, 256)) != HK_OK)
            return e;
    }
    hk_join(abs->db, sizeof(abs->db), o->dir, c->db);
    return HK_OK;
}

static int hk_cmd_init(int argc, char **argv)
{
    char why[256] = "", conf[HK_CFG_PATH_MAX], pinhex[2 * HK_PIN_LEN + 1];
    char p1[HK_CFG_PATH_MAX], p2[HK_CFG_PATH_MAX];
    unsigned char pin[HK_PIN_LEN];
    hk_srv_config c, abs;
    hk_init_opts o;
    const char *dir;
    hk_err e;

    if (hk_init_parse(argc, argv, &o) != 0)
        return hk_usage();
    dir = o.dir;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return hk_fail(dir, HK_ERR_IO, strerror(errno));
    /* The files live in DIR; the configuration names them relative to
     * itself, so the directory can be moved as a whole. */
    hk_srv_config_defaults(&c);
    c.port = o.port;
    strcpy(c.tls_cert, "tls-cert.pem");
    strcpy(c.tls_key, "tls-key.pem");
    strcpy(c.db, "halfkeyd.db");
    strcpy(c.kek_file, "kek.bin");
    strcpy(c.seal.backend, "file");
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
    if ((e = hk_init_kek(&o, &c, &abs, why)) != HK_OK)
        return hk_fail("key-encryption key", e, why);
    if ((e = hk_init_setup(&abs, why)) != HK_OK)
        return hk_fail("setup", e, why);
    if ((e = hk_srv_config_write(conf, &c)) != HK_OK)
        return hk_fail("configuration", e, conf);
    hk_hex(pin, HK_PIN_LEN, pinhex);
    printf("config = %s\nurl = https://127.0.0.1:%d\npin = %s\n"
           "token = halfkeyd token --config %s --sub NAME\n",
           conf, o.port, pinhex, conf);
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
    const char *conf = NULL, *sub = NULL, *key, *scope = NULL;
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
        else if (strcmp(argv[i], "--scope") == 0)
            scope = argv[i + 1];
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
    e = hk_jwt_mint_scoped(c.jwt_alg, k, klen, c.jwt_iss, c.jwt_aud, sub, scope,
                           (long)time(NULL), ttl, &tok);
    OPENSSL_cleanse(k, klen);
    free(k);
    if (e != HK_OK)
        return hk_fail("token", e, hk_sub_valid(sub) ? "" : "invalid --sub");
    printf("%s\n", tok);
    free(tok);
    return 0;
}

/* --- reseal ----------------------------------------------------------------
 */

/* Prints the blob count per KEK id and where each id is in the ring. */
static void hk_print_census(const hk_kek *kek, const hk_reseal_census *s)
{
    static const char *const where[] = {"not configured", "primary",
                                        "previous"};
    unsigned char id[HK_KEK_ID_LEN];
    char hex[17];
    size_t i;

    hk_kek_id(kek, id);
    hk_kek_id_hex(id, hex);
    printf("primary = %s\n", hex);
    for (i = 0; i < s->nids; i++) {
        hk_kek_id_hex(s->ids[i].id, hex);
        printf("%s = %zu (%s)\n", hex, s->ids[i].count,
               where[hk_kek_find(kek, s->ids[i].id)]);
    }
    if (s->other > 0)
        printf("other = %zu\n", s->other);
    printf("total = %zu\n", s->total);
}

static void hk_print_counts(const hk_kek *kek, const hk_reseal_counts *n)
{
    unsigned char id[HK_KEK_ID_LEN];
    char hex[17];

    hk_kek_id(kek, id);
    hk_kek_id_hex(id, hex);
    printf("primary = %s\nresealed = %zu\nalready = %zu\nretried = %zu\n"
           "gone = %zu\nfailed = %zu\n",
           hex, n->resealed, n->already, n->races, n->gone, n->failed);
    if (n->stopped)
        printf("stopped = limit reached: run reseal again to finish\n");
}

/* reseal --config F [--check] [--limit N]; --limit (re-seal N blobs and
 * stop) is for tests of an interrupted run. */
static int hk_cmd_reseal(int argc, char **argv)
{
    const char *conf = NULL;
    char why[256] = "", *end;
    hk_reseal_census census;
    hk_reseal_counts n;
    hk_srv_config c;
    hk_kek *kek = NULL;
    hk_db *db = NULL;
    long limit = 0;
    int check = 0, i, rc = 1;
    hk_err e;

    for (i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--check") == 0)
            check = 1;
        else if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
            conf = argv[++i];
        else if (strcmp(argv[i], "--limit") == 0 && i + 1 < argc &&
                 (limit = strtol(argv[++i], &end, 10)) > 0 && *end == 0)
            continue;
        else
            return hk_usage();
    }
    if (conf == NULL)
        return hk_usage();
    if ((e = hk_srv_config_load(conf, &c, why)) != HK_OK)
        return hk_fail("configuration", e, why);
    if ((e = hk_keyring_load(&c, &kek, why)) != HK_OK) {
        rc = hk_fail("key-encryption key", e, why);
        goto done;
    }
    if ((e = hk_srv_open_db(&c, &db, why)) != HK_OK) {
        rc = hk_fail("database", e, why);
        goto done;
    }
    if (check) {
        if ((e = hk_reseal_count(db, &census)) == HK_OK)
            hk_print_census(kek, &census);
    } else if ((e = hk_reseal_all(db, kek, (size_t)limit, &n)) == HK_OK) {
        hk_print_counts(kek, &n);
    }
    if (e != HK_OK)
        rc = hk_fail("reseal", e, hk_db_errmsg(db));
    else
        rc = !check && n.failed > 0;
done:
    hk_db_close(db);
    hk_kek_free(kek);
    return rc;
}

/* new-kek --config F (--file PATH | --hsm-key-label LABEL): a new key
 * file, or a new key in the HSM the configuration names (hsm_module,
 * hsm_token, PIN source), to rotate to. Prints its KEK id. */
static int hk_cmd_new_kek(int argc, char **argv)
{
    const char *conf = NULL, *file = NULL, *label = NULL;
    char why[256] = "", pin[HK_P11_PIN_MAX + 1] = "", hex[17];
    unsigned char id[HK_KEK_ID_LEN];
    hk_p11_params p;
    hk_srv_config c;
    hk_kek *kek = NULL;
    hk_err e;
    int i;

    for (i = 2; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--config") == 0)
            conf = argv[i + 1];
        else if (strcmp(argv[i], "--file") == 0)
            file = argv[i + 1];
        else if (strcmp(argv[i], "--hsm-key-label") == 0)
            label = argv[i + 1];
        else
            return hk_usage();
    }
    if (i != argc || conf == NULL || (file == NULL) == (label == NULL))
        return hk_usage();
    if ((e = hk_srv_config_load(conf, &c, why)) != HK_OK)
        return hk_fail("configuration", e, why);
    if (file != NULL) {
        if ((e = hk_kek_generate_file(file, why, sizeof(why))) == HK_OK)
            e = hk_kek_load_file(file, &kek, why, sizeof(why));
    } else if (c.seal.hsm_module[0] == 0 || c.seal.hsm_token[0] == 0) {
        snprintf(why, sizeof(why),
                 "set hsm_module, hsm_token and the PIN "
                 "source in the configuration first");
        e = HK_ERR_CONFIG;
    } else if ((e = hk_keyring_hsm_params(&c, label, pin, &p, why)) == HK_OK &&
               (e = hk_kek_generate_pkcs11(&p, why, sizeof(why))) == HK_OK) {
        e = hk_kek_load_pkcs11(&p, &kek, why, sizeof(why));
    }
    OPENSSL_cleanse(pin, sizeof(pin));
    if (e != HK_OK)
        return hk_fail("new KEK", e, why);
    hk_kek_id(kek, id);
    hk_kek_id_hex(id, hex);
    printf("kek_id = %s\n", hex);
    hk_kek_free(kek);
    return 0;
}

typedef struct {
    sigset_t set;
    hk_service *svc;
    const char *conf;
} hk_sigctx;

/* SIGHUP: the sealing keys and the policy file are read again from the
 * configuration; a refused one keeps what is in force. */
static void hk_reload(hk_sigctx *sc)
{
    char why[256] = "";
    hk_srv_config c;
    hk_err e;

    if ((e = hk_srv_config_load(sc->conf, &c, why)) == HK_OK &&
        (e = hk_service_reload_seal(sc->svc, &c, why)) == HK_OK)
        hk_log("info", "event=reloaded what=seal");
    if (e == HK_OK &&
        (e = hk_service_reload_rules(sc->svc, &c, why)) == HK_OK &&
        c.policy_file[0] != 0)
        hk_log("info", "event=reloaded what=policy_file");
    if (e != HK_OK)
        hk_log("error", "event=reload_refused error=\"%s\" reason=\"%s\"",
               hk_strerror(e), why);
}

/* The first SIGTERM/SIGINT drains (running sessions finish); a second
 * one stops at once. SIGHUP reloads the sealing keys and the policy
 * file. */
static void *hk_signal_thread(void *p)
{
    hk_sigctx *sc = p;
    int sig = 0, n = 0;

    while (n < 2 && sigwait(&sc->set, &sig) == 0) {
        if (sig == SIGHUP) {
            hk_reload(sc);
            continue;
        }
        hk_log("info", "event=shutdown signal=%d mode=%s", sig,
               n == 0 ? "drain" : "now");
        hk_service_stop(sc->svc, n++ > 0);
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
    sigaddset(&sc.set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sc.set, NULL);
    sc.conf = argv[3];
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
    lws_set_log_level(LLL_ERR, hk_log_lws);
    if (argc < 2)
        return hk_usage();
    if (argc == 2 && strcmp(argv[1], "--version") == 0) {
        printf("halfkeyd %s (protocol %d)\n", HK_VERSION, HK_PROTOCOL_VERSION);
        return 0;
    }
    if (hk_wants_help(argc, argv)) {
        hk_print_usage(stdout,
                       strcmp(argv[1], "help") == 0 ? argv[2] : argv[1]);
        return 0;
    }
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
    if (strcmp(argv[1], "reseal") == 0)
        return hk_cmd_reseal(argc, argv);
    if (strcmp(argv[1], "new-kek") == 0)
        return hk_cmd_new_kek(argc, argv);
    return hk_usage();
}
