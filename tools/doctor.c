/* `halfkey doctor` (tools/doctor.h): the checks, in the order a user would
 * repair them: token directory, configuration, server reachability, the
 * server's certificate (pin or CA), the JWT and whether the server accepts
 * it, the token state, the PIN (optional), the keys (abort lockout, and
 * whether the server holds their other share), the server's version.
 *
 * The connection check is its own TLS 1.3 handshake with plain OpenSSL and
 * no verification, so that a pin mismatch can show the key the server
 * really presents; nothing is sent on it. Every request that carries the
 * JWT goes through the client core, which verifies the pin first. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "client/client.h"
#include "mpc/codec.h"
#include "mpc/transcript.h"
#include "tools/doctor.h"
#include "transport/http_client.h"
#include "transport/jwt.h"

#define HK_DR_PATH 1024
#define HK_DR_PROBE_MS 10000 /* longest wait for the connection check */
#define HK_DR_DAY 86400L
/* A JWT with less left than this is a warning: the README mints tokens
 * for an hour (--ttl 3600), which must pass. */
#define HK_DR_JWT_WARN 300L
/* A JWT expired less than this long ago may still pass a server's clock
 * skew (jwt_skew, 30 s by default): the server's answer decides. */
#define HK_DR_SKEW_MAX 300L

typedef enum { HK_DR_OK, HK_DR_WARN, HK_DR_FAIL, HK_DR_SKIP } hk_dr_level;

typedef struct {
    FILE *out;
    int fails;
    const char *pin;
    char dir[HK_DR_PATH];
    char conf[HK_DR_PATH + 16];
    hk_client *c;       /* NULL until the configuration loads */
    int reachable;      /* a TLS 1.3 handshake succeeded */
    int trusted;        /* ... with the pinned key or a CA-verified cert */
    int authed;         /* the server accepts the JWT */
    long verify_result; /* X509_V_* of the CA check */
    unsigned char seen_pin[HK_PIN_LEN];
} hk_dr;

/* Prints one check's line; counts a FAIL. */
static void hk_dr_say(hk_dr *d, hk_dr_level lv, const char *check,
                      const char *fmt, ...)
{
    static const char *const names[] = {"OK", "WARN", "FAIL", "SKIP"};
    va_list ap;

    fprintf(d->out, "%-5s %s: ", names[lv], check);
    va_start(ap, fmt);
    vfprintf(d->out, fmt, ap);
    va_end(ap);
    fputc('\n', d->out);
    if (lv == HK_DR_FAIL)
        d->fails++;
}

/* Prints how to repair the problem just reported. */
static void hk_dr_fix(hk_dr *d, const char *fmt, ...)
{
    va_list ap;

    fputs("      fix: ", d->out);
    va_start(ap, fmt);
    vfprintf(d->out, fmt, ap);
    va_end(ap);
    fputc('\n', d->out);
}

/* "3d 4h", "5h 12m", "42m 3s" */
static void hk_dr_span(long s, char out[32])
{
    if (s >= HK_DR_DAY)
        snprintf(out, 32, "%ldd %ldh", s / HK_DR_DAY, s % HK_DR_DAY / 3600);
    else if (s >= 3600)
        snprintf(out, 32, "%ldh %ldm", s / 3600, s % 3600 / 60);
    else
        snprintf(out, 32, "%ldm %lds", s / 60, s % 60);
}

/* --- token directory and configuration ----------------------------------- */

/* One entry of the token directory: the sealed shares, the PIN check
 * value and the SO records are what an offline PIN search needs, so every
 * file must be the user's and mode 0600 (directories 0700), as the
 * keystore makes them. 1 if it is. */
static int hk_dr_entry(hk_dr *d, const char *path, const struct stat *st)
{
    unsigned want = S_ISDIR(st->st_mode) ? 0700 : 0600;

    if (st->st_uid != geteuid()) {
        hk_dr_say(d, HK_DR_FAIL, "token-dir", "%s belongs to uid %u, not %u",
                  path, (unsigned)st->st_uid, (unsigned)geteuid());
        hk_dr_fix(d, "chown %u %s && chmod %o %s", (unsigned)geteuid(), path,
                  want, path);
        return 0;
    }
    if ((st->st_mode & 077) != 0) {
        hk_dr_say(d, HK_DR_FAIL, "token-dir", "%s has mode %04o: %s by others",
                  path, (unsigned)(st->st_mode & 07777),
                  (st->st_mode & 022) != 0 ? "writable" : "readable");
        hk_dr_fix(d, "chmod %o %s", want, path);
        return 0;
    }
    return 1;
}

/* Checks every file of dir and of its keys/ and pool/ subdirectories
 * (depth 0);
 * returns the number of bad entries. Symbolic links are not followed (the
 * keystore opens nothing through one). */
static int hk_dr_tree(hk_dr *d, const char *dir, int depth)
{
    char path[HK_DR_PATH + 512];
    struct dirent *de;
    struct stat st;
    DIR *dh = opendir(dir);
    int bad = 0;

    if (dh == NULL)
        return 0; /* the keystore reports an unreadable directory itself */
    while ((de = readdir(dh)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        if (lstat(path, &st) != 0 || S_ISLNK(st.st_mode))
            continue;
        bad += !hk_dr_entry(d, path, &st);
        if (S_ISDIR(st.st_mode) && depth == 0 &&
            (strcmp(de->d_name, "keys") == 0 ||
             strcmp(de->d_name, "pool") == 0))
            bad += hk_dr_tree(d, path, 1);
    }
    closedir(dh);
    return bad;
}

static int hk_dr_tokdir(hk_dr *d, const char *dir)
{
    char *path = NULL;
    struct stat st = {.st_mode = S_IFDIR}; /* kept when stat fails */

    if (hk_ks_dir_resolve(dir, &path) != HK_OK) {
        hk_dr_say(d, HK_DR_FAIL, "token-dir", "no token directory");
        hk_dr_fix(d, "give --dir DIR, or set HALFKEY_HOME or XDG_DATA_HOME");
        return 0;
    }
    snprintf(d->dir, sizeof(d->dir), "%s", path);
    OPENSSL_free(path);
    snprintf(d->conf, sizeof(d->conf), "%s/halfkey.conf", d->dir);
    if (stat(d->dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        hk_dr_say(d, HK_DR_FAIL, "token-dir", "%s: %s", d->dir,
                  !S_ISDIR(st.st_mode) ? "not a directory"
                  : errno == ENOENT    ? "does not exist"
                                       : strerror(errno));
        hk_dr_fix(d,
                  "make a token: halfkey --dir %s init --url "
                  "https://HOST:PORT --server-pin HEX --token-file FILE",
                  d->dir);
        return 0;
    }
    if (st.st_uid != geteuid()) {
        hk_dr_say(d, HK_DR_FAIL, "token-dir", "%s belongs to uid %u, not %u",
                  d->dir, (unsigned)st.st_uid, (unsigned)geteuid());
        hk_dr_fix(d, "run halfkey as the token's owner");
        return 0;
    }
    if ((st.st_mode & 077) != 0) {
        int w = (st.st_mode & 022) != 0;

        hk_dr_say(d, HK_DR_FAIL, "token-dir", "%s has mode %04o: %s by others",
                  d->dir, (unsigned)(st.st_mode & 07777),
                  w ? "writable (the keystore refuses it)"
                    : "readable (a copy of the token allows an offline PIN "
                      "search)");
        hk_dr_fix(d, "chmod 700 %s", d->dir);
        hk_dr_tree(d, d->dir, 0);
        return !w;
    }
    if (hk_dr_tree(d, d->dir, 0) == 0)
        hk_dr_say(d, HK_DR_OK, "token-dir", "%s (mode 0700, files 0600)",
                  d->dir);
    return 1;
}

static int hk_dr_config(hk_dr *d)
{
    const hk_client_config *cfg;
    char why[256] = "";
    hk_err e;

    if ((e = hk_client_open(d->dir, &d->c, why)) != HK_OK) {
        hk_dr_say(d, HK_DR_FAIL, "config", "%s%s%s", hk_strerror(e),
                  why[0] ? ": " : "", why);
        if (e == HK_ERR_NOT_FOUND)
            hk_dr_fix(d, "no token here: halfkey --dir %s init ...", d->dir);
        else
            hk_dr_fix(d,
                      "edit %s: server_url = https://HOST:PORT, one of "
                      "server_pin or server_ca, one of token_file or "
                      "token_command (halfkey(1), FILES)",
                      d->conf);
        return 0;
    }
    cfg = hk_client_config_get(d->c);
    hk_dr_say(d, HK_DR_OK, "config", "%s: server %s, %s", d->conf,
              cfg->server_url, cfg->server_pin[0] ? "pinned key" : "CA file");
    return 1;
}

/* --- connection and certificate ------------------------------------------ */

/* One non-blocking connect to ai within ms milliseconds: the socket, or
 * -1 with *err set (ETIMEDOUT on the deadline). */
static int hk_dr_try(const struct addrinfo *ai, int ms, int *err)
{
    socklen_t len = sizeof(*err);
    struct pollfd p;
    int s, rc;

    if ((s = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK, 0)) < 0) {
        *err = errno;
        return -1;
    }
    if (connect(s, ai->ai_addr, ai->ai_addrlen) == 0)
        return s;
    if ((*err = errno) == EINPROGRESS) {
        p.fd = s;
        p.events = POLLOUT;
        if ((rc = poll(&p, 1, ms)) == 0)
            *err = ETIMEDOUT;
        else if (rc < 0 || getsockopt(s, SOL_SOCKET, SO_ERROR, err, &len) != 0)
            *err = errno;
        if (*err == 0)
            return s;
    }
    close(s);
    return -1;
}

/* A TCP connection to host:port within ms milliseconds per address;
 * blocking afterwards, with ms as send and receive timeout. */
static hk_err hk_dr_connect(const char *host, int port, int ms, int *fd,
                            char *why, size_t cap)
{
    struct addrinfo hints, *res = NULL, *ai;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    char ps[16];
    int s = -1, err = ECONNREFUSED, rc;

    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    snprintf(ps, sizeof(ps), "%d", port);
    if ((rc = getaddrinfo(host, ps, &hints, &res)) != 0) {
        snprintf(why, cap, "%s", gai_strerror(rc));
        return HK_ERR_NETWORK;
    }
    for (ai = res; ai != NULL && s < 0; ai = ai->ai_next)
        s = hk_dr_try(ai, ms, &err);
    freeaddrinfo(res);
    if (s < 0) {
        snprintf(why, cap, "%s", strerror(err));
        return err == ETIMEDOUT ? HK_ERR_TIMEOUT : HK_ERR_NETWORK;
    }
    if (fcntl(s, F_SETFL, fcntl(s, F_GETFL) & ~O_NONBLOCK) != 0 ||
        setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) != 0 ||
        setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) != 0) {
        snprintf(why, cap, "socket setup: %s", strerror(errno));
        close(s);
        return HK_ERR_NETWORK;
    }
    *fd = s;
    return HK_OK;
}

static int hk_dr_is_ip(const char *host)
{
    unsigned char a[16];

    return inet_pton(AF_INET, host, a) == 1 ||
           inet_pton(AF_INET6, host, a) == 1;
}

/* The CA check of the server certificate: the chain up to server_ca and
 * the host name (or IP address) in it. */
static int hk_dr_ca_setup(SSL_CTX *ctx, SSL *ssl, const char *ca,
                          const char *host)
{
    if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1)
        return 0;
    if (hk_dr_is_ip(host))
        return X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host) == 1;
    return SSL_set1_host(ssl, host) == 1;
}

/* TLS 1.3 handshake on fd without verification; the server's SPKI hash
 * into d->seen_pin and, with a CA file, the verification result. */
static hk_err hk_dr_handshake(hk_dr *d, int fd, const char *host,
                              const char *ca, char *why, size_t cap)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL *ssl = ctx != NULL ? SSL_new(ctx) : NULL;
    X509 *cert = NULL;
    unsigned char *der = NULL;
    int len;
    hk_err e = HK_ERR_TLS;

    snprintf(why, cap, "could not set up TLS");
    if (ssl == NULL ||
        SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) != 1 ||
        SSL_set_min_proto_version(ssl, TLS1_3_VERSION) != 1 ||
        (ca != NULL && !hk_dr_ca_setup(ctx, ssl, ca, host)) ||
        SSL_set_fd(ssl, fd) != 1)
        goto done;
    if (!hk_dr_is_ip(host) && SSL_set_tlsext_host_name(ssl, host) != 1)
        goto done;
    ERR_clear_error();
    if (SSL_connect(ssl) != 1) {
        unsigned long err = ERR_peek_last_error();

        snprintf(why, cap, "%s",
                 err ? ERR_reason_error_string(err) : "connection closed");
        goto done;
    }
    if ((cert = SSL_get1_peer_certificate(ssl)) == NULL ||
        (len = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(cert), &der)) <= 0 ||
        EVP_Digest(der, (size_t)len, d->seen_pin, NULL, EVP_sha256(), NULL) !=
            1) {
        snprintf(why, cap, "no usable server certificate");
        goto done;
    }
    d->verify_result = SSL_get_verify_result(ssl);
    e = HK_OK;
done:
    OPENSSL_free(der);
    X509_free(cert);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    ERR_clear_error();
    return e;
}

static void hk_dr_server(hk_dr *d)
{
    const hk_client_config *cfg = hk_client_config_get(d->c);
    int port = 0, fd = -1,
        ms =
            cfg->timeout_ms < HK_DR_PROBE_MS ? cfg->timeout_ms : HK_DR_PROBE_MS;
    const char *host = hk_client_server(d->c, &port);
    char why[256] = "";
    hk_err e;

    if ((e = hk_dr_connect(host, port, ms, &fd, why, sizeof(why))) != HK_OK) {
        hk_dr_say(d, HK_DR_FAIL, "server", "cannot connect to %s: %s",
                  cfg->server_url, why);
        hk_dr_fix(d,
                  "start halfkeyd (halfkeyd run --config FILE), or "
                  "correct server_url in %s",
                  d->conf);
        return;
    }
    e = hk_dr_handshake(d, fd, host, cfg->server_ca[0] ? cfg->server_ca : NULL,
                        why, sizeof(why));
    close(fd);
    if (e != HK_OK) {
        hk_dr_say(d, HK_DR_FAIL, "server",
                  "%s answers, but no TLS 1.3 handshake: %s", cfg->server_url,
                  why);
        hk_dr_fix(d,
                  "server_url must name halfkeyd's port (TLS 1.3 only) "
                  "in %s",
                  d->conf);
        return;
    }
    d->reachable = 1;
    hk_dr_say(d, HK_DR_OK, "server", "%s answers (TLS 1.3)", cfg->server_url);
}

static void hk_dr_cert(hk_dr *d)
{
    const hk_client_config *cfg = hk_client_config_get(d->c);
    unsigned char want[HK_PIN_LEN];
    char seen[2 * HK_PIN_LEN + 1];

    if (!d->reachable) {
        hk_dr_say(d, HK_DR_SKIP, "pin", "needs the server");
        return;
    }
    hk_hex(d->seen_pin, HK_PIN_LEN, seen);
    if (cfg->server_ca[0]) {
        d->trusted = d->verify_result == X509_V_OK;
        if (d->trusted) {
            hk_dr_say(d, HK_DR_OK, "pin", "certificate verified by %s",
                      cfg->server_ca);
            return;
        }
        hk_dr_say(d, HK_DR_FAIL, "pin", "certificate not verified by %s: %s",
                  cfg->server_ca,
                  X509_verify_cert_error_string(d->verify_result));
        hk_dr_fix(d, "server_ca must hold the CA of halfkeyd's certificate, "
                     "and the certificate must name the host of server_url");
        return;
    }
    d->trusted =
        hk_unhex(cfg->server_pin, strlen(cfg->server_pin), want, HK_PIN_LEN) &&
        CRYPTO_memcmp(want, d->seen_pin, HK_PIN_LEN) == 0;
    if (d->trusted) {
        hk_dr_say(d, HK_DR_OK, "pin", "the server's key matches server_pin");
        return;
    }
    hk_dr_say(d, HK_DR_FAIL, "pin",
              "the server's key is %s, server_pin is %s: nothing will be "
              "sent to it",
              seen, cfg->server_pin);
    hk_dr_fix(d,
              "if you trust this server (compare with the `pin =` "
              "line of halfkeyd init), set server_pin = %s in %s; "
              "otherwise it is not your server",
              seen, d->conf);
}

/* --- JWT ----------------------------------------------------------------- */

static void hk_dr_jwt_mint_hint(hk_dr *d, const char *sub)
{
    const hk_client_config *cfg = hk_client_config_get(d->c);

    if (cfg->token_file[0])
        hk_dr_fix(d,
                  "put a fresh token in %s: halfkeyd token --config "
                  "SERVER.conf --sub %s > %s (or use token_command)",
                  cfg->token_file, sub, cfg->token_file);
    else
        hk_dr_fix(d,
                  "the token_command in %s must print a fresh token "
                  "(halfkeyd token --config SERVER.conf --sub %s)",
                  d->conf, sub);
}

/* Checks the JWT locally; 1 if it is worth showing to the server. */
static int hk_dr_jwt(hk_dr *d)
{
    char sub[HK_JWT_SUB_MAX + 1], left[32];
    long t, exp = 0, nbf = 0;
    hk_err e = hk_client_jwt_claims(d->c, sub, &exp, &nbf);

    if (e != HK_OK) {
        hk_dr_say(d, HK_DR_FAIL, "jwt", "%s",
                  e == HK_ERR_DECODE ? "not a JWT with sub and exp (three "
                                       "base64url parts, a JSON payload)"
                                     : "no token");
        hk_dr_jwt_mint_hint(d, "NAME");
        return 0;
    }
    t = exp - (long)time(NULL);
    hk_dr_span(t < 0 ? -t : t, left);
    if (t <= -HK_DR_SKEW_MAX) {
        hk_dr_say(d, HK_DR_FAIL, "jwt", "subject %s, expired %s ago", sub,
                  left);
        hk_dr_jwt_mint_hint(d, sub);
        return 0;
    }
    if (t <= 0)
        hk_dr_say(d, HK_DR_WARN, "jwt",
                  "subject %s, expired %s ago: the server accepts it only "
                  "within its clock skew (auth below)",
                  sub, left);
    else
        hk_dr_say(d, t < HK_DR_JWT_WARN ? HK_DR_WARN : HK_DR_OK, "jwt",
                  "subject %s, expires in %s", sub, left);
    if (t < HK_DR_JWT_WARN)
        hk_dr_jwt_mint_hint(d, sub);
    return 1;
}

/* GET /pubkey of a key (or of an id no key has): 401 means the server
 * refuses the JWT, 200 or 404 that it accepts it. */
static void hk_dr_auth(hk_dr *d, int jwt_ok, const hk_ks_keyinfo *k0)
{
    unsigned char zero[HK_ID_LEN] = {0};
    char path[64] = "/pubkey?key_id=", *body = NULL;
    int st = 0;
    hk_err e;

    if (!d->trusted || !jwt_ok) {
        hk_dr_say(d, HK_DR_SKIP, "auth", "needs %s",
                  d->trusted ? "a valid JWT" : "a trusted server");
        return;
    }
    hk_hex(k0 != NULL ? k0->kid : zero, HK_ID_LEN, path + strlen(path));
    e = hk_client_get(d->c, path, 1, &st, &body);
    free(body);
    if (e == HK_OK && (st == 200 || st == 404)) {
        d->authed = 1;
        hk_dr_say(d, HK_DR_OK, "auth", "the server accepts the JWT");
    } else if (e == HK_OK && st == 401) {
        hk_dr_say(d, HK_DR_FAIL, "auth",
                  "the server refuses the JWT (issuer key, iss, aud, "
                  "nbf or exp)");
        hk_dr_fix(d, "use a token from the issuer this server trusts "
                     "(its jwt_key, jwt_iss, jwt_aud): halfkeyd token "
                     "--config SERVER.conf --sub NAME");
    } else {
        hk_dr_say(d, HK_DR_FAIL, "auth", "GET /pubkey: %s, HTTP %d",
                  hk_strerror(e), st);
        hk_dr_fix(d, "see halfkeyd's log");
    }
}

/* --- token, PIN, keys ---------------------------------------------------- */

const char *hk_doctor_locked_pin_fix(const hk_ks_tokeninfo *ti)
{
    if (ti->so_set && ti->escrowed)
        return "the security officer sets a new PIN: `halfkey passwd "
               "--so-pin-file FILE` (or C_InitPIN from a PKCS#11 application "
               "logged in as SO)";
    if (ti->so_set)
        return "the SO PIN can set a new PIN only on a token without keys "
               "(no escrow: set-so-pin was never run with both PINs): "
               "restore the token directory from a backup made before the "
               "lockout, or make a new token and keys";
    return "the token has no SO PIN to reset it: restore the token "
           "directory from a backup made before the lockout, or make a new "
           "token and keys";
}

static void hk_dr_token(hk_dr *d, size_t nkeys)
{
    hk_ks_tokeninfo ti;
    hk_err e = hk_ks_token_info(hk_client_keystore(d->c), &ti);

    if (e != HK_OK) {
        hk_dr_say(d, HK_DR_FAIL, "token", "token.json: %s", hk_strerror(e));
        hk_dr_fix(d, "restore %s/token.json from a backup", d->dir);
    } else if (ti.pin_locked) {
        hk_dr_say(d, HK_DR_FAIL, "token",
                  "%s: PIN locked after %lu wrong PINs: no login possible",
                  ti.label, ti.pin_fails);
        hk_dr_fix(d, "%s", hk_doctor_locked_pin_fix(&ti));
    } else if (ti.pin_fails > 0) {
        hk_dr_say(d, HK_DR_WARN, "token",
                  "%s: %lu wrong PIN(s) since the last login (locks at %lu), "
                  "%zu key(s)",
                  ti.label, ti.pin_fails, ti.pin_max_fails, nkeys);
        hk_dr_fix(d, "a correct login resets the count; if these tries were "
                     "not yours, someone is guessing the PIN");
    } else {
        hk_dr_say(d, HK_DR_OK, "token", "%s: %zu key(s), no wrong PINs%s",
                  ti.label, nkeys,
                  ti.pin_change_pending ? ", a PIN change to finish at the "
                                          "next login"
                                        : "");
    }
}

/* A TPM-backed token: its TPM answers, and its lockout state. */
static void hk_dr_tpm(hk_dr *d)
{
    hk_ks *ks = hk_client_keystore(d->c);
    hk_ks_tokeninfo ti;
    hk_ks_tpminfo tp;
    hk_err e;

    if (hk_ks_token_info(ks, &ti) != HK_OK)
        return; /* reported under "token" */
    if (!ti.tpm) {
        hk_dr_say(d, HK_DR_OK, "tpm",
                  "file token (master key from the PIN by scrypt; not "
                  "TPM-backed)");
        return;
    }
    if ((e = hk_ks_tpm_status(ks, &tp)) != HK_OK) {
        hk_dr_say(d, HK_DR_FAIL, "tpm", "TPM-backed token, TPM %s: %s",
                  ti.tpm_tcti, hk_strerror(e));
        hk_dr_fix(d, hk_ks_tpm_supported()
                         ? "start the TPM (or swtpm), or check the TCTI and "
                           "its permissions (tss group for /dev/tpmrm0)"
                         : "this halfkey was built without TPM support: "
                           "rebuild with libtss2-dev");
    } else if (tp.in_lockout) {
        hk_dr_say(d, HK_DR_FAIL, "tpm",
                  "TPM-backed token, TPM %s (%s): in dictionary-attack "
                  "lockout (%lu failures, limit %lu)",
                  ti.tpm_tcti, tp.manufacturer, tp.lockout_counter,
                  tp.max_auth_fail);
        hk_dr_fix(d,
                  "wait %lu s per failure to be forgotten, or have the "
                  "owner run tpm2_dictionarylockout --clear-lockout",
                  tp.lockout_interval);
    } else {
        hk_dr_say(d, tp.lockout_counter > 0 ? HK_DR_WARN : HK_DR_OK, "tpm",
                  "TPM-backed token, TPM %s (%s) reachable, %lu of %lu "
                  "failed authorisations before its lockout",
                  ti.tpm_tcti, tp.manufacturer, tp.lockout_counter,
                  tp.max_auth_fail);
        if (tp.lockout_counter > 0)
            hk_dr_fix(d,
                      "failed authorisations are forgotten one per %lu s; "
                      "if they were not yours, someone is guessing",
                      tp.lockout_interval);
    }
}

/* With a PIN: logs in and unseals every unlocked key. */
static void hk_dr_login(hk_dr *d, const hk_ks_keyinfo *keys, size_t n)
{
    hk_ks *ks = hk_client_keystore(d->c);
    hk_ks_tokeninfo ti;
    hk_share *s = NULL;
    size_t i, bad = 0;
    hk_err e;

    if (d->pin == NULL) {
        hk_dr_say(d, HK_DR_SKIP, "login",
                  "no PIN ($HALFKEY_PIN or --pin-file): keys not unsealed");
        return;
    }
    /* checked first without counting: a doctor run must not bring the
     * token closer to its lockout */
    if ((e = hk_ks_pin_check(ks, d->pin)) == HK_OK)
        e = hk_ks_login(ks, d->pin);
    if (e == HK_ERR_PIN_LOCKED && hk_ks_token_info(ks, &ti) == HK_OK &&
        ti.pin_locked) {
        hk_dr_say(d, HK_DR_FAIL, "login", "PIN locked");
        hk_dr_fix(d, "%s", hk_doctor_locked_pin_fix(&ti));
        return;
    }
    if (e != HK_OK) {
        hk_dr_say(d, HK_DR_FAIL, "login", "%s%s", hk_strerror(e),
                  e == HK_ERR_PIN ? " (not counted towards the lockout)" : "");
        hk_dr_fix(d, "give the PIN set at halfkey init, or `halfkey passwd` "
                     "set since");
        return;
    }
    for (i = 0; i < n; i++) {
        if (keys[i].err != HK_OK || keys[i].locked)
            continue; /* reported under "key" */
        if ((e = hk_ks_load_share(ks, keys[i].label, &s)) != HK_OK) {
            bad++;
            hk_dr_say(d, HK_DR_FAIL, "login", "key %s does not unseal: %s",
                      keys[i].label, hk_strerror(e));
            hk_dr_fix(d, "restore %s/keys/%s.json from a backup", d->dir,
                      keys[i].label);
        }
        hk_share_free(s);
        s = NULL;
    }
    if (bad == 0)
        hk_dr_say(d, HK_DR_OK, "login",
                  "PIN accepted, every unlocked key "
                  "unseals");
}

/* The key file's epoch against the server's active share, and the key's
 * backup (issue 18), from GET /pubkey's answer o. 1 if the key can sign. */
static int hk_dr_key_epochs(hk_dr *d, const hk_ks_keyinfo *k, const char *kh,
                            json_t *o)
{
    unsigned long srv = (unsigned long)json_integer_value(
                      json_object_get(o, "epoch")),
                  bk = (unsigned long)json_integer_value(
                      json_object_get(o, "backup_epoch"));

    if (srv > k->epoch) {
        hk_dr_say(d, HK_DR_FAIL, "key",
                  "%s: the key file is of an older epoch (%lu) than the "
                  "server's share (%lu): this token directory (or the key "
                  "file) was put back from an older copy, and cannot sign",
                  k->label, k->epoch, srv);
        hk_dr_fix(d,
                  "restore the key from its backup on a new token directory: "
                  "`halfkey restore --key-id %s --backup-priv FILE --label %s`",
                  kh, k->label);
        return 0;
    }
    if (bk == 0) {
        hk_dr_say(d, HK_DR_WARN, "backup",
                  "%s: no backup on the server: losing this device loses "
                  "the key",
                  k->label);
        hk_dr_fix(d,
                  "`halfkey backup-key new --out FILE` (keep it offline), "
                  "then `halfkey backup --key %s --backup-pub FILE.pub`, "
                  "and backup_pub = FILE.pub in halfkey.conf",
                  k->label);
    } else if (bk < k->epoch) {
        hk_dr_say(d, HK_DR_WARN, "backup",
                  "%s: the server's backup (epoch %lu) is older than this "
                  "share (epoch %lu)%s",
                  k->label, bk, k->epoch,
                  srv < k->epoch ? ": the server keeps the old share active "
                                   "until the backup of the new one arrives"
                                 : "");
        hk_dr_fix(d, "`halfkey backup --key %s --backup-pub FILE`", k->label);
    } else {
        hk_dr_say(d, HK_DR_OK, "backup", "%s: backup of epoch %lu is current",
                  k->label, bk);
    }
    return 1;
}

/* 1 if the server holds key k (same public key); reports otherwise. */
static int hk_dr_key_server(hk_dr *d, const hk_ks_keyinfo *k, const char *kh)
{
    unsigned char unc[65];
    char path[64], hex[131], *body = NULL;
    const char *pub = NULL;
    json_t *o = NULL;
    int st = 0, ok = 0;
    hk_err e;

    snprintf(path, sizeof(path), "/pubkey?key_id=%s", kh);
    e = hk_client_get(d->c, path, 1, &st, &body);
    if (e == HK_OK && st == 200 && (o = json_loads(body, 0, NULL)) != NULL)
        pub = json_string_value(json_object_get(o, "pubkey"));
    if (pub != NULL && hk_ks_pub_uncompressed(k->curve, k->pub.b, HK_POINT_LEN,
                                              unc) == HK_OK) {
        hk_hex(unc, sizeof(unc), hex);
        ok = strcmp(pub, hex) == 0 ? 1 : -1;
    }
    if (ok == 1 && json_is_true(json_object_get(o, "disabled"))) {
        ok = 0;
        hk_dr_say(d, HK_DR_FAIL, "key", "%s: disabled on the server", k->label);
        hk_dr_fix(d, "ask the server's operator to enable key id %s", kh);
    } else if (ok != 1) {
        hk_dr_say(d, HK_DR_FAIL, "key", "%s: %s", k->label,
                  ok < 0      ? "the server holds a different public key"
                  : st == 404 ? "the server does not know this key id"
                              : "GET /pubkey failed");
        hk_dr_fix(d, "the key works only with the server (and JWT subject) "
                     "that made it: check server_url and the token's sub");
    }
    if (ok == 1)
        ok = hk_dr_key_epochs(d, k, kh, o);
    json_decref(o);
    free(body);
    return ok == 1;
}

static void hk_dr_key(hk_dr *d, const hk_ks_keyinfo *k)
{
    char kh[2 * HK_ID_LEN + 1], when[32] = "?";
    time_t t = (time_t)k->lock_time;
    struct tm tm;

    if (k->err != HK_OK) {
        hk_dr_say(d, HK_DR_FAIL, "key", "%s: unreadable: %s", k->label,
                  hk_strerror(k->err));
        hk_dr_fix(d, "restore %s/keys/%s.json from a backup", d->dir, k->label);
        return;
    }
    hk_hex(k->kid, HK_ID_LEN, kh);
    if (k->locked) {
        if (gmtime_r(&t, &tm) != NULL)
            strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", &tm);
        hk_dr_say(d, HK_DR_FAIL, "key", "%s: LOCKED since %s: %s", k->label,
                  when, k->lock_reason);
        if (k->sig_state == HK_KS_SIG_INFLIGHT)
            hk_dr_fix(d,
                      "a signature was interrupted (crash or lost connection "
                      "while the server's answer was due): clear it with "
                      "`halfkey unlock --key %s`",
                      k->label);
        else
            hk_dr_fix(d,
                      "a signature from the server failed verification "
                      "(the abort attack, halfkey(1) ABORT LOCKOUT): make a "
                      "new key and move the assets, or override with "
                      "`halfkey unlock --key %s --force` (audited; a refresh "
                      "does not clear it)",
                      k->label);
        return;
    }
    if (d->authed && !hk_dr_key_server(d, k, kh))
        return;
    hk_dr_say(d, HK_DR_OK, "key", "%s: %s, id %s, epoch %lu%s", k->label,
              hk_curve_name(k->curve), kh, k->epoch,
              d->authed ? ", the server holds its other share" : "");
}

/* --- server version ------------------------------------------------------ */

static void hk_dr_version(hk_dr *d)
{
    char *body = NULL;
    const char *ver, *status, *db;
    json_t *o = NULL;
    json_int_t proto;
    int st = 0;
    hk_err e;

    if (!d->trusted) {
        hk_dr_say(d, HK_DR_SKIP, "version", "needs a trusted server");
        return;
    }
    e = hk_client_status(d->c, &st, &body);
    o = e == HK_OK ? json_loads(body, 0, NULL) : NULL;
    free(body);
    ver = json_string_value(json_object_get(o, "version"));
    status = json_string_value(json_object_get(o, "status"));
    db = json_string_value(json_object_get(o, "database"));
    proto = json_integer_value(json_object_get(o, "protocol"));
    if (ver == NULL || status == NULL) {
        hk_dr_say(d, HK_DR_FAIL, "version", "GET /status: %s, HTTP %d",
                  e == HK_OK ? "no version in the answer" : hk_strerror(e), st);
        hk_dr_fix(d, "server_url must name a halfkeyd");
    } else if (proto != HK_PROTOCOL_VERSION) {
        hk_dr_say(d, HK_DR_FAIL, "version",
                  "halfkeyd %s speaks protocol %d, this client %d", ver,
                  (int)proto, HK_PROTOCOL_VERSION);
        hk_dr_fix(d, "upgrade the older of halfkey (%s) and halfkeyd (%s)",
                  HK_VERSION, ver);
    } else if (st != 200 || strcmp(status, "ok") != 0) {
        hk_dr_say(d, HK_DR_FAIL, "version",
                  "halfkeyd %s reports %s "
                  "(database %s)",
                  ver, status, db != NULL ? db : "?");
        hk_dr_fix(d, "see halfkeyd's log");
    } else {
        hk_dr_say(d, HK_DR_OK, "version",
                  "halfkeyd %s, protocol %d (halfkey %s)", ver, (int)proto,
                  HK_VERSION);
    }
    json_decref(o);
}

/* --- the run ------------------------------------------------------------- */

static void hk_dr_rest(hk_dr *d)
{
    hk_ks_keyinfo *keys = NULL;
    size_t n = 0, i;
    hk_err e;
    int jwt_ok;

    hk_dr_server(d);
    hk_dr_cert(d);
    jwt_ok = hk_dr_jwt(d);
    e = hk_ks_list(hk_client_keystore(d->c), &keys, &n);
    hk_dr_auth(d, jwt_ok, n > 0 && keys[0].err == HK_OK ? &keys[0] : NULL);
    hk_dr_token(d, n);
    hk_dr_tpm(d);
    hk_dr_login(d, keys, n);
    if (e != HK_OK) {
        hk_dr_say(d, HK_DR_FAIL, "key", "cannot list %s/keys: %s", d->dir,
                  hk_strerror(e));
        hk_dr_fix(d, "the directory must be yours, mode 0700");
    } else if (n == 0) {
        hk_dr_say(d, HK_DR_OK, "key",
                  "none yet (halfkey keygen --curve secp256k1 --label NAME)");
    }
    for (i = 0; i < n; i++)
        hk_dr_key(d, &keys[i]);
    hk_ks_list_free(keys);
    hk_dr_version(d);
}

hk_err hk_doctor_run(const char *dir, const char *pin, FILE *out, int *failures)
{
    hk_dr d;

    if (out == NULL || failures == NULL)
        return HK_ERR_ARG;
    memset(&d, 0, sizeof(d));
    d.out = out;
    d.pin = pin;
    if (hk_dr_tokdir(&d, dir) && hk_dr_config(&d))
        hk_dr_rest(&d);
    else
        hk_dr_say(&d, HK_DR_SKIP, "others",
                  "server, pin, jwt, auth, token, tpm, login, key, version: "
                  "need the token and its configuration");
    hk_client_close(d.c);
    *failures = d.fails;
    return HK_OK;
}
