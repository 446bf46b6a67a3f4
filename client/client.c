/* The client core: configuration, server calls, protocol runs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <libwebsockets.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "client/client.h"
#include "client/tpm_attest.h"
#include "common/attest_qual.h"
#include "mpc/codec.h"
#include "mpc/keygen.h"
#include "mpc/pve.h"
#include "mpc/presign.h"
#include "mpc/refresh.h"
#include "transport/http_client.h"
#include "transport/jwt.h"
#include "common/kvfile.h"

#define HK_CLIENT_CONF "halfkey.conf"
/* Idle kept-open connections a client keeps for hk_client_sign: one per
 * thread that signs at the same moment, up to this many. */
#define HK_CLIENT_IDLE_MAX 4

struct hk_client {
    hk_ks *ks;
    hk_client_config cfg;
    char host[256];
    int port;
    unsigned char pin[HK_PIN_LEN];
    hk_tcli_config tc;
    char last_error[512];
    /* hk_client_sign's kept-open connections not in use, newest last,
     * opened by process `pid` (after a fork they are the parent's) */
    pthread_mutex_t mu;
    hk_channel *idle[HK_CLIENT_IDLE_MAX];
    size_t nidle;
    pid_t pid;
    /* refill threads running (each owns one channel until it puts it
     * back); hk_client_idle_close waits for them */
    int refilling;
    pthread_cond_t refilled;
    /* TLS state across its connections (one SSL_CTX, session tickets):
     * made at the first connection, under mu */
    hk_tls_client *tls;
};

#define T hk_client_config
static const hk_kv_field hk_ccfg_fields[] = {
    HK_KV_S(T, "server_url", server_url),
    HK_KV_S(T, "server_pin", server_pin),
    HK_KV_P(T, "server_ca", server_ca),
    HK_KV_P(T, "token_file", token_file),
    HK_KV_S(T, "token_command", token_command),
    HK_KV_I(T, "paillier_bits", paillier_bits, 2048, 3072),
    HK_KV_I(T, "timeout_ms", timeout_ms, 100, 600000),
    HK_KV_P(T, "backup_pub", backup_pub),
    HK_KV_S(T, "pkcs11_curves", pkcs11_curves),
    HK_KV_S(T, "pkcs11_keys", pkcs11_keys),
    HK_KV_I(T, "attest", attest, 0, 1),
    HK_KV_S(T, "presign", presign),
};
#undef T
#define HK_NCFIELDS (sizeof(hk_ccfg_fields) / sizeof(hk_ccfg_fields[0]))

hk_err hk_client_config_write(const char *dir, const hk_client_config *c)
{
    char path[1024];

    if (dir == NULL || c == NULL ||
        snprintf(path, sizeof(path), "%s/%s", dir, HK_CLIENT_CONF) >=
            (int)sizeof(path))
        return HK_ERR_ARG;
    return hk_kv_write(path, "halfkey token configuration", hk_ccfg_fields,
                       HK_NCFIELDS, c);
}

/* "https://host:port" with host a name, IPv4 or [IPv6]. */
static int hk_parse_url(const char *url, char *host, size_t cap, int *port)
{
    const char *h, *colon, *end;
    long p;
    char *pe;

    if (strncmp(url, "https://", 8) != 0)
        return 0;
    h = url + 8;
    if (*h == '[') {
        end = strchr(h, ']');
        if (end == NULL || end[1] != ':')
            return 0;
        colon = end + 1;
        h++;
    } else {
        colon = strrchr(h, ':');
        end = colon;
    }
    if (colon == NULL || end == NULL || end == h || (size_t)(end - h) >= cap)
        return 0;
    memcpy(host, h, (size_t)(end - h));
    host[end - h] = 0;
    p = strtol(colon + 1, &pe, 10);
    if ((*pe != 0 && strcmp(pe, "/") != 0) || p < 1 || p > 65535)
        return 0;
    *port = (int)p;
    return 1;
}

/* The checks of a configuration (hk_client_config_check), `where` naming
 * it in the reason; host, port and pin filled from it. */
static hk_err hk_config_check(const hk_client_config *cfg, const char *where,
                              char host[256], int *port,
                              unsigned char pin[HK_PIN_LEN], char *why)
{
    if (!hk_parse_url(cfg->server_url, host, 256, port)) {
        snprintf(why, 256,
                 "%.120s: server_url must be https://HOST:PORT, not "
                 "\"%.60s\"",
                 where, cfg->server_url);
        return HK_ERR_CONFIG;
    }
    if ((cfg->server_pin[0] != 0) == (cfg->server_ca[0] != 0) ||
        (cfg->server_pin[0] != 0 &&
         !hk_unhex(cfg->server_pin, strlen(cfg->server_pin), pin,
                   HK_PIN_LEN))) {
        snprintf(why, 256,
                 "%.120s: exactly one of server_pin (64 hex digits, the pin "
                 "halfkeyd init printed) or server_ca",
                 where);
        return HK_ERR_CONFIG;
    }
    if ((cfg->token_file[0] != 0) == (cfg->token_command[0] != 0)) {
        snprintf(why, 256, "%.160s: exactly one of token_file or token_command",
                 where);
        return HK_ERR_CONFIG;
    }
    if (cfg->paillier_bits != 2048 && cfg->paillier_bits != 3072) {
        snprintf(why, 256, "%.160s: paillier_bits must be 2048 or 3072", where);
        return HK_ERR_CONFIG;
    }
    if (cfg->presign[0] != 0 && strcmp(cfg->presign, "auto") != 0 &&
        strcmp(cfg->presign, "off") != 0) {
        snprintf(why, 256, "%.160s: presign must be auto or off", where);
        return HK_ERR_CONFIG;
    }
    return HK_OK;
}

hk_err hk_client_config_check(const hk_client_config *cfg, const char *where,
                              char *why)
{
    unsigned char pin[HK_PIN_LEN];
    char host[256];
    int port;

    if (cfg == NULL || where == NULL || why == NULL)
        return HK_ERR_ARG;
    return hk_config_check(cfg, where, host, &port, pin, why);
}

static hk_err hk_client_configure(hk_client *c, const char *dir, char *why)
{
    char path[1024];
    hk_err e;

    memset(&c->cfg, 0, sizeof(c->cfg));
    c->cfg.paillier_bits = 2048;
    c->cfg.timeout_ms = 30000;
    snprintf(path, sizeof(path), "%.900s/%s", dir, HK_CLIENT_CONF);
    if ((e = hk_kv_load(path, hk_ccfg_fields, HK_NCFIELDS, &c->cfg, why)) !=
            HK_OK ||
        (e = hk_config_check(&c->cfg, path, c->host, &c->port, c->pin, why)) !=
            HK_OK)
        return e;
    c->tc.host = c->host;
    c->tc.port = c->port;
    c->tc.pin = c->cfg.server_pin[0] ? c->pin : NULL;
    c->tc.ca_file = c->cfg.server_ca[0] ? c->cfg.server_ca : NULL;
    c->tc.timeout_ms = c->cfg.timeout_ms;
    return HK_OK;
}

/* Why the token directory did not open, naming the directory really
 * used (dir, else $HALFKEY_HOME, else $XDG_DATA_HOME/halfkey ...). */
static void hk_client_open_why(const char *dir, hk_err e, char *why)
{
    char *path = NULL;
    struct stat st;

    if (hk_ks_dir_resolve(dir, &path) != HK_OK) {
        snprintf(why, 256,
                 "no token directory: give --dir DIR, or set "
                 "HALFKEY_HOME or XDG_DATA_HOME");
        return;
    }
    if (e == HK_ERR_CONFIG && stat(path, &st) == 0 && st.st_uid != geteuid())
        snprintf(why, 256,
                 "the token directory %.180s belongs to uid %u, not you", path,
                 (unsigned)st.st_uid);
    else if (e == HK_ERR_CONFIG && stat(path, &st) == 0 &&
             (st.st_mode & 022) != 0)
        snprintf(why, 256,
                 "the token directory %.90s has mode %04o: writable by "
                 "others (chmod 700 %.90s)",
                 path, (unsigned)(st.st_mode & 07777), path);
    else if (e == HK_ERR_NOT_FOUND)
        snprintf(why, 256,
                 "no token at %.180s (halfkey init makes one; --dir or "
                 "HALFKEY_HOME choose another)",
                 path);
    else
        snprintf(why, 256, "token directory %.200s", path);
    OPENSSL_free(path);
}

hk_err hk_client_open(const char *dir, hk_client **out, char *why)
{
    hk_client *c;
    hk_err e;

    if (out == NULL || why == NULL)
        return HK_ERR_ARG;
    why[0] = 0;
    /* libwebsockets would log notices to the application's stderr (the
     * CLI, openssl, a browser loading the PKCS#11 module); the client core
     * reports every failure itself. The level is process-wide. */
    lws_set_log_level(0, NULL);
    if ((c = calloc(1, sizeof(*c))) == NULL)
        return HK_ERR_NOMEM;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->refilled, NULL);
    c->pid = getpid();
    if ((e = hk_ks_open(dir, &c->ks)) != HK_OK) {
        hk_client_open_why(dir, e, why);
        hk_client_close(c);
        return e;
    }
    if ((e = hk_client_configure(c, hk_ks_dir(c->ks), why)) != HK_OK) {
        hk_client_close(c);
        return e;
    }
    *out = c;
    return HK_OK;
}

void hk_client_close(hk_client *c)
{
    if (c == NULL)
        return;
    hk_client_idle_close(c);
    hk_tls_client_free(c->tls);
    pthread_cond_destroy(&c->refilled);
    pthread_mutex_destroy(&c->mu);
    hk_ks_close(c->ks);
    OPENSSL_cleanse(c, sizeof(*c));
    free(c);
}

hk_ks *hk_client_keystore(hk_client *c) { return c->ks; }
const hk_client_config *hk_client_config_get(const hk_client *c)
{
    return &c->cfg;
}
const char *hk_client_last_error(const hk_client *c) { return c->last_error; }

hk_err hk_client_jwt(hk_client *c, char **out)
{
    char *buf;
    FILE *f;
    size_t n;
    int cmd;

    if (c == NULL || out == NULL)
        return HK_ERR_ARG;
    cmd = c->cfg.token_command[0] != 0;
    if ((buf = calloc(1, HK_JWT_MAX + 2)) == NULL)
        return HK_ERR_NOMEM;
    f = cmd ? popen(c->cfg.token_command, "r") : fopen(c->cfg.token_file, "r");
    if (f == NULL) {
        free(buf);
        return HK_ERR_CONFIG;
    }
    n = fread(buf, 1, HK_JWT_MAX + 1, f);
    if ((cmd ? pclose(f) : fclose(f)) != 0 || n == 0 || n > HK_JWT_MAX) {
        free(buf);
        return HK_ERR_AUTH;
    }
    buf[strcspn(buf, "\r\n")] = 0;
    *out = buf;
    return HK_OK;
}

/* The JSON payload of a compact JWT (not verified: the server does that). */
static json_t *hk_jwt_payload(const char *tok)
{
    const char *p = strchr(tok, '.'),
               *q = p != NULL ? strchr(p + 1, '.') : NULL;
    size_t n, i, pad;
    unsigned char *raw = NULL;
    char *b64 = NULL;
    json_t *o = NULL;
    int len;

    if (q == NULL || strchr(q + 1, '.') != NULL || (n = q - p - 1) == 0 ||
        n > HK_JWT_MAX || n % 4 == 1)
        return NULL;
    pad = (4 - n % 4) % 4;
    if ((b64 = malloc(n + pad + 1)) == NULL || (raw = malloc(n + pad)) == NULL)
        goto done;
    for (i = 0; i < n; i++)
        b64[i] = p[1 + i] == '-' ? '+' : p[1 + i] == '_' ? '/' : p[1 + i];
    memset(b64 + n, '=', pad);
    b64[n + pad] = 0;
    if ((len = EVP_DecodeBlock(raw, (unsigned char *)b64, (int)(n + pad))) <
        (int)pad)
        goto done;
    o = json_loadb((char *)raw, (size_t)len - pad, JSON_REJECT_DUPLICATES,
                   NULL);
done:
    free(b64);
    free(raw);
    return o;
}

hk_err hk_client_jwt_claims(hk_client *c, char sub[HK_JWT_SUB_MAX + 1],
                            long *exp, long *nbf)
{
    char *tok = NULL;
    json_t *o, *je, *jn;
    const char *s;
    hk_err e;

    if (c == NULL || sub == NULL || exp == NULL || nbf == NULL)
        return HK_ERR_ARG;
    if ((e = hk_client_jwt(c, &tok)) != HK_OK)
        return e;
    o = hk_jwt_payload(tok);
    OPENSSL_cleanse(tok, strlen(tok));
    free(tok);
    s = json_string_value(json_object_get(o, "sub"));
    je = json_object_get(o, "exp");
    jn = json_object_get(o, "nbf");
    e = HK_ERR_DECODE;
    if (s != NULL && strlen(s) <= HK_JWT_SUB_MAX && json_is_integer(je)) {
        snprintf(sub, HK_JWT_SUB_MAX + 1, "%s", s);
        *exp = (long)json_integer_value(je);
        *nbf = json_is_integer(jn) ? (long)json_integer_value(jn) : 0;
        e = HK_OK;
    }
    json_decref(o);
    return e;
}

/* The server refused the JWT (401): what the token's own claims say about
 * it into last_error (the server does not say which check failed). */
static void hk_client_refused(hk_client *c)
{
    char sub[HK_JWT_SUB_MAX + 1];
    long exp = 0, nbf = 0, now = (long)time(NULL);
    const char *src =
        c->cfg.token_file[0] ? c->cfg.token_file : "token_command";

    if (hk_client_jwt_claims(c, sub, &exp, &nbf) != HK_OK)
        snprintf(c->last_error, sizeof(c->last_error),
                 "HTTP 401: server refused the token: %.160s does not give a "
                 "JWT with "
                 "sub and exp",
                 src);
    else if (exp <= now)
        snprintf(
            c->last_error, sizeof(c->last_error),
            "HTTP 401: server refused the token: expired %ld s ago (subject "
            "%.64s): put a fresh one in %.100s",
            now - exp, sub, src);
    else if (nbf > now)
        snprintf(
            c->last_error, sizeof(c->last_error),
            "HTTP 401: server refused the token: not valid for another %ld s "
            "(nbf; is this clock right?)",
            nbf - now);
    else
        snprintf(
            c->last_error, sizeof(c->last_error),
            "HTTP 401: server refused the token of subject %.64s: not from the "
            "issuer it trusts (jwt_key, jwt_iss, jwt_aud)",
            sub);
}

static hk_err hk_http_err(hk_client *c, int status, const char *body)
{
    json_t *o = json_loads(body, 0, NULL);
    const char *m = json_string_value(json_object_get(o, "message"));
    json_int_t retry = json_integer_value(json_object_get(o, "retry_after"));

    if (retry > 0)
        snprintf(c->last_error, sizeof(c->last_error),
                 "HTTP %d: %.200s; retry after %lld s", status,
                 m != NULL ? m : "no message", (long long)retry);
    else
        snprintf(c->last_error, sizeof(c->last_error), "HTTP %d: %.200s",
                 status, m != NULL ? m : "no message");
    json_decref(o);
    if (status == 401)
        hk_client_refused(c);
    return hk_http_status_err(status);
}

static void hk_client_idle_forked(hk_client *c);

/* The transport settings of a new connection, with the client's TLS state
 * (made now if there is none; if that fails, the connection makes its own
 * and reports why). */
static const hk_tcli_config *hk_client_tc(hk_client *c, hk_tcli_config *tc)
{
    pthread_mutex_lock(&c->mu);
    hk_client_idle_forked(c);
    if (c->tls == NULL && hk_tls_client_new(&c->tc, &c->tls) != HK_OK)
        c->tls = NULL;
    *tc = c->tc;
    tc->tls = c->tls;
    pthread_mutex_unlock(&c->mu);
    return tc;
}

/* POST a JSON body (consumed); the HTTP status and body (malloc'd). */
static hk_err hk_client_send(hk_client *c, const char *path, json_t *body,
                             int *status, char **ans)
{
    hk_tcli_config tc;
    char *tok = NULL, *txt = json_dumps(body, JSON_COMPACT);
    hk_err e;

    json_decref(body);
    *ans = NULL;
    if (txt == NULL)
        return HK_ERR_NOMEM;
    if ((e = hk_client_jwt(c, &tok)) == HK_OK)
        e = hk_tcli_http(hk_client_tc(c, &tc), "POST", path, tok, txt, status,
                         ans);
    if (tok != NULL)
        OPENSSL_cleanse(tok, strlen(tok));
    free(tok);
    free(txt);
    return e;
}

hk_err hk_client_send_json(hk_client *c, const char *path, json_t *body,
                           int *http_status, char **resp)
{
    if (c == NULL || path == NULL || body == NULL || http_status == NULL ||
        resp == NULL) {
        json_decref(body);
        return HK_ERR_ARG;
    }
    return hk_client_send(c, path, body, http_status, resp);
}

/* POST a JSON body; the parsed 200 answer in *resp. */
static hk_err hk_client_post(hk_client *c, const char *path, json_t *body,
                             json_t **resp)
{
    char *ans = NULL;
    int status = 0;
    hk_err e = hk_client_send(c, path, body, &status, &ans);

    if (e == HK_OK && status != 200)
        e = hk_http_err(c, status, ans);
    if (e == HK_OK && (*resp = json_loads(ans, 0, NULL)) == NULL)
        e = HK_ERR_SERVER;
    free(ans);
    return e;
}

/* Opens a session with `body`: its id, key id and WebSocket path; and
 * (attest not NULL) the answer's "attest" member (a new reference, NULL
 * when absent). */
static hk_err hk_client_open_session(hk_client *c, const char *path,
                                     json_t *body, unsigned char sid[HK_ID_LEN],
                                     unsigned char kid[HK_ID_LEN],
                                     char wspath[128], json_t **attest)
{
    json_t *r = NULL;
    const char *s, *k;
    hk_err e;

    if ((e = hk_client_post(c, path, body, &r)) != HK_OK)
        return e;
    s = json_string_value(json_object_get(r, "session_id"));
    k = json_string_value(json_object_get(r, "key_id"));
    e = HK_ERR_SERVER;
    if (s != NULL && k != NULL && strncmp(s, "sess_", 5) == 0 &&
        hk_unhex(s + 5, strlen(s + 5), sid, HK_ID_LEN) &&
        hk_unhex(k, strlen(k), kid, HK_ID_LEN) &&
        snprintf(wspath, 128, "/ws?session_id=%s", s) < 128)
        e = HK_OK;
    if (e == HK_OK && attest != NULL &&
        (*attest = json_object_get(r, "attest")) != NULL)
        json_incref(*attest);
    json_decref(r);
    return e;
}

static hk_err hk_client_ws(hk_client *c, const char *wspath, hk_tws **ws)
{
    hk_tcli_config tc;
    char *tok = NULL;
    hk_err e;

    if ((e = hk_client_jwt(c, &tok)) == HK_OK)
        e = hk_tws_open(hk_client_tc(c, &tc), wspath, tok, ws);
    if (tok != NULL)
        OPENSSL_cleanse(tok, strlen(tok));
    free(tok);
    if (e == HK_ERR_AUTH)
        hk_client_refused(c);
    else if (e != HK_OK && e != HK_ERR_NETWORK && e != HK_ERR_TLS &&
             e != HK_ERR_TIMEOUT)
        snprintf(c->last_error, sizeof(c->last_error),
                 "the server refused the WebSocket (%s)", hk_strerror(e));
    return e;
}

/* The next message; a server error message ends the run with its code
 * (its text in last_error). */
static hk_err hk_client_recv(hk_client *c, hk_tws *ws, unsigned char **in,
                             size_t *inlen)
{
    const char *t;
    json_t *o;
    hk_err e;

    if ((e = hk_tws_recv(ws, in, inlen)) != HK_OK)
        return e;
    o = json_loadb((const char *)*in, *inlen, 0, NULL);
    t = json_string_value(json_object_get(o, "t"));
    if (t != NULL && strcmp(t, "error") == 0) {
        json_int_t code = json_integer_value(json_object_get(o, "code")),
                   retry =
                       json_integer_value(json_object_get(o, "retry_after"));
        const char *m = json_string_value(json_object_get(o, "message"));

        snprintf(c->last_error, sizeof(c->last_error), "server: %.200s",
                 m != NULL ? m : "error");
        if (retry > 0)
            snprintf(c->last_error + strlen(c->last_error),
                     sizeof(c->last_error) - strlen(c->last_error),
                     "; retry after %lld s", (long long)retry);
        e = code > 0 && code < HK_ERR__COUNT ? (hk_err)code : HK_ERR_SERVER;
        free(*in);
        *in = NULL;
    }
    json_decref(o);
    return e;
}

/* Sends `out` (freed), waits for the reply (hk_client_recv). */
static hk_err hk_client_roundtrip(hk_client *c, hk_tws *ws, unsigned char *out,
                                  size_t outlen, unsigned char **in,
                                  size_t *inlen)
{
    hk_err e = hk_tws_send(ws, out, outlen);

    OPENSSL_free(out);
    return e != HK_OK ? e : hk_client_recv(c, ws, in, inlen);
}

/* The server's setup: cached in the token, else fetched and verified. */
static hk_err hk_client_setup(hk_client *c, hk_rped **rp)
{
    hk_tcli_config tc;
    char *body = NULL;
    int status = 0;
    hk_err e = hk_ks_load_setup(c->ks, rp);

    if (e != HK_ERR_NOT_FOUND)
        return e;
    if ((e = hk_tcli_http(hk_client_tc(c, &tc), "GET", "/setup", NULL, NULL,
                          &status, &body)) == HK_OK) {
        e = status == 200 ? hk_ks_save_setup(c->ks, (unsigned char *)body,
                                             strlen(body), rp)
                          : hk_http_err(c, status, body);
    }
    free(body);
    return e;
}

/* Sends keygen.5 / refresh.5 (freed) and waits for the server's "done":
 * the key or the new share is then active on the server. Without it the
 * share is stored here all the same and the pair still works: the server
 * makes it active at the first signature that verifies with it. */
static hk_err hk_client_confirm(hk_client *c, hk_tws *ws, unsigned char *msg,
                                size_t len)
{
    unsigned char *in = NULL;
    size_t inlen = 0;
    json_t *o = NULL;
    const char *t;
    hk_err e;

    if ((e = hk_client_roundtrip(c, ws, msg, len, &in, &inlen)) == HK_OK)
        o = json_loadb((const char *)in, inlen, 0, NULL);
    t = json_string_value(json_object_get(o, "t"));
    /* the server holds a backup of the key and this epoch's is missing:
     * the share stays pending there (it works; the old one stays active)
     * until the backup is uploaded (last_error has the server's words) */
    if (e != HK_ERR_BACKUP && (t == NULL || strcmp(t, "done") != 0))
        snprintf(c->last_error, sizeof(c->last_error),
                 "stored; the server did not confirm: it switches at the "
                 "first signature with this key");
    json_decref(o);
    free(in);
    return e == HK_ERR_BACKUP ? e : HK_OK;
}

/* --- backups (issue 18) --------------------------------------------------- */

/* A whole small file (a PEM key), NUL-terminated: OPENSSL_clear_free. */
static hk_err hk_client_slurp(const char *path, char **out, size_t *len)
{
    FILE *f = fopen(path, "r");
    char *buf;
    size_t n;

    if (f == NULL)
        return HK_ERR_CONFIG;
    if ((buf = OPENSSL_zalloc(65537)) == NULL) {
        fclose(f);
        return HK_ERR_NOMEM;
    }
    n = fread(buf, 1, 65536, f);
    fclose(f);
    if (n == 0 || n == 65536) {
        OPENSSL_clear_free(buf, 65537);
        return HK_ERR_CONFIG;
    }
    *out = buf;
    *len = n;
    return HK_OK;
}

static hk_err hk_client_load_bk(const char *path, hk_pve_pub **bk)
{
    char *pem = NULL;
    size_t len = 0;
    hk_err e;

    if ((e = hk_client_slurp(path, &pem, &len)) != HK_OK)
        return e;
    e = hk_pve_pub_from_pem(pem, len, bk);
    OPENSSL_clear_free(pem, 65537);
    return e;
}

/* Encrypts the share's x1 under bk and POSTs it (POST /backup). */
static hk_err hk_client_send_backup(hk_client *c, const hk_share *s,
                                    const hk_pve_pub *bk)
{
    unsigned char *blob = NULL;
    char kh[2 * HK_ID_LEN + 1], *b64 = NULL, *pem = NULL;
    size_t len = 0, plen = 0;
    json_t *r = NULL;
    hk_err e;

    if ((e = hk_pve_encrypt(bk, s->curve, s->kid, s->epoch, &s->x, &blob,
                            &len)) != HK_OK ||
        (e = hk_pve_pub_to_pem(bk, &pem, &plen)) != HK_OK)
        goto done;
    e = HK_ERR_NOMEM;
    if ((b64 = hk_b64_encode(blob, len)) == NULL)
        goto done;
    hk_hex(s->kid, HK_ID_LEN, kh);
    e = hk_client_post(c, "/backup",
                       json_pack("{s:s,s:I,s:s,s:s}", "key_id", kh, "epoch",
                                 (json_int_t)s->epoch, "blob", b64,
                                 "backup_pub", pem),
                       &r);
    json_decref(r);
done:
    OPENSSL_free(blob);
    OPENSSL_free(b64);
    OPENSSL_free(pem);
    return e;
}

/* The configured backup after a keygen or refresh ("never stale"): a
 * failure is reported in last_error; the share is stored all the same. */
static hk_err hk_client_auto_backup(hk_client *c, const hk_share *s)
{
    hk_pve_pub *bk = NULL;
    hk_err e;

    if (c->cfg.backup_pub[0] == '\0')
        return HK_OK;
    if ((e = hk_client_load_bk(c->cfg.backup_pub, &bk)) == HK_OK)
        e = hk_client_send_backup(c, s, bk);
    hk_pve_pub_free(bk);
    if (e != HK_OK && e != HK_ERR_SERVER)
        snprintf(c->last_error, sizeof(c->last_error),
                 "backup of epoch %lu not made: %s", s->epoch, hk_strerror(e));
    else if (e != HK_OK) {
        char was[sizeof(c->last_error)];

        snprintf(was, sizeof(was), "%s", c->last_error);
        snprintf(c->last_error, sizeof(c->last_error),
                 "backup of epoch %lu refused: %.200s", s->epoch, was);
    }
    return e;
}

hk_err hk_client_backup(hk_client *c, const char *label, const char *pub_file,
                        unsigned long *epoch)
{
    hk_pve_pub *bk = NULL;
    hk_share *s = NULL;
    hk_err e;

    if (c == NULL || label == NULL)
        return HK_ERR_ARG;
    if (pub_file == NULL)
        pub_file = c->cfg.backup_pub;
    if (pub_file[0] == '\0') {
        snprintf(c->last_error, sizeof(c->last_error),
                 "no backup public key: --backup-pub FILE or backup_pub in "
                 "halfkey.conf");
        return HK_ERR_CONFIG;
    }
    if ((e = hk_client_load_bk(pub_file, &bk)) != HK_OK) {
        snprintf(c->last_error, sizeof(c->last_error),
                 "%.200s: not a P-256 or RSA-3072 public key in PEM", pub_file);
        return e;
    }
    if ((e = hk_ks_load_share(c->ks, label, &s)) == HK_OK &&
        (e = hk_client_send_backup(c, s, bk)) == HK_OK && epoch != NULL)
        *epoch = s->epoch;
    hk_share_free(s);
    hk_pve_pub_free(bk);
    return e;
}

/* --- device attestation (tpm_attest.h; server/attest/attest.h) -------------
 * The TPM's identity goes with POST /keygen; the answer to the challenge
 * the server returns goes to POST /attest before the WebSocket opens. */

/* A failed attestation step: its reason as the last error. */
static hk_err hk_client_attest_fail(hk_client *c, hk_err e, const char *why)
{
    snprintf(c->last_error, sizeof(c->last_error), "attestation: %.400s", why);
    return e;
}

/* body["attest"] = {ek_cert, ek_pub, ak_pub} from the token's TPM, which
 * stays open in *att for the answer. */
static hk_err hk_client_attest_id(hk_client *c, json_t *body, hk_tpm_att **att)
{
    hk_ks_tokeninfo ti;
    hk_tpm_att_id *id = NULL;
    char why[160], *b[3] = {NULL, NULL, NULL};
    hk_err e;

    if ((e = hk_ks_token_info(c->ks, &ti)) != HK_OK)
        return e;
    if (!ti.tpm)
        return hk_client_attest_fail(
            c, HK_ERR_ATTEST,
            "this token is not TPM-backed (halfkey init --tpm): there is no "
            "device to attest");
    if ((id = OPENSSL_zalloc(sizeof(*id))) == NULL)
        return HK_ERR_NOMEM;
    if ((e = hk_tpm_att_open(ti.tpm_tcti, att, id, why)) != HK_OK) {
        e = hk_client_attest_fail(c, e, why);
        goto done;
    }
    e = HK_ERR_NOMEM;
    if ((b[0] = hk_b64_encode(id->ek_cert, id->ek_cert_len)) != NULL &&
        (b[1] = hk_b64_encode(id->ek_pub, id->ek_pub_len)) != NULL &&
        (b[2] = hk_b64_encode(id->ak_pub, id->ak_pub_len)) != NULL &&
        json_object_set_new(body, "attest",
                            json_pack("{s:s,s:s,s:s}", "ek_cert", b[0],
                                      "ek_pub", b[1], "ak_pub", b[2])) == 0)
        e = HK_OK;
done:
    OPENSSL_free(b[0]);
    OPENSSL_free(b[1]);
    OPENSSL_free(b[2]);
    OPENSSL_free(id);
    return e;
}

/* A base64 member of the server's challenge, decoded. */
static int hk_client_b64_member(json_t *o, const char *name, size_t max,
                                unsigned char **out, size_t *len)
{
    const char *s = json_string_value(json_object_get(o, name));

    return s != NULL && hk_b64_decode(s, strlen(s), max, out, len);
}

/* The TPM answers the challenge ch; POST /attest carries the answer. */
static hk_err hk_client_attest_answer(hk_client *c, hk_tpm_att *att, json_t *ch,
                                      const unsigned char *sid,
                                      const unsigned char *kid)
{
    unsigned char qual[HK_ATTEST_QUAL_LEN], *blob = NULL, *sec = NULL;
    char sh[2 * HK_ID_LEN + 6], why[160], *b[3] = {NULL, NULL, NULL};
    size_t blen = 0, slen = 0;
    hk_tpm_att_answer *ans = OPENSSL_zalloc(sizeof(*ans));
    json_t *r = NULL;
    hk_err e = HK_ERR_NOMEM;

    if (ans == NULL)
        goto done;
    e = hk_client_attest_fail(c, HK_ERR_SERVER,
                              "the server sent no attestation challenge");
    if (!hk_client_b64_member(ch, "credential_blob", 4096, &blob, &blen) ||
        !hk_client_b64_member(ch, "encrypted_secret", 4096, &sec, &slen))
        goto done;
    if ((e = hk_attest_qualifying(sid, kid, qual)) != HK_OK)
        goto done;
    if ((e = hk_tpm_att_answer_make(att, blob, blen, sec, slen, qual, ans,
                                    why)) != HK_OK) {
        e = hk_client_attest_fail(c, e, why);
        goto done;
    }
    memcpy(sh, "sess_", 5);
    hk_hex(sid, HK_ID_LEN, sh + 5);
    e = HK_ERR_NOMEM;
    if ((b[0] = hk_b64_encode(ans->cred, ans->cred_len)) == NULL ||
        (b[1] = hk_b64_encode(ans->quote, ans->quote_len)) == NULL ||
        (b[2] = hk_b64_encode(ans->sig, ans->sig_len)) == NULL)
        goto done;
    e = hk_client_post(c, "/attest",
                       json_pack("{s:s,s:s,s:s,s:s}", "session_id", sh,
                                 "credential", b[0], "quote", b[1], "signature",
                                 b[2]),
                       &r);
done:
    if (b[0] != NULL)
        OPENSSL_cleanse(b[0], strlen(b[0]));
    OPENSSL_free(b[0]);
    OPENSSL_free(b[1]);
    OPENSSL_free(b[2]);
    OPENSSL_free(blob);
    OPENSSL_free(sec);
    OPENSSL_clear_free(ans, sizeof(*ans));
    json_decref(r);
    return e;
}

/* Opens the keygen session, attested if `attest` (the TPM is open from
 * the identity to the answer). */
static hk_err hk_client_keygen_open(hk_client *c, hk_curve_id curve, int attest,
                                    unsigned char sid[HK_ID_LEN],
                                    unsigned char kid[HK_ID_LEN],
                                    char wspath[128])
{
    json_t *body = json_pack("{s:s,s:i}", "curve", hk_curve_name(curve),
                             "pbits", c->cfg.paillier_bits),
           *ch = NULL;
    hk_tpm_att *att = NULL;
    hk_err e;

    if (body == NULL)
        return HK_ERR_NOMEM;
    if (attest && (e = hk_client_attest_id(c, body, &att)) != HK_OK) {
        json_decref(body);
        return e;
    }
    if ((e = hk_client_open_session(c, "/keygen", body, sid, kid, wspath,
                                    attest ? &ch : NULL)) == HK_OK &&
        attest)
        e = hk_client_attest_answer(c, att, ch, sid, kid);
    json_decref(ch);
    hk_tpm_att_close(att);
    return e;
}

hk_err hk_client_keygen(hk_client *c, hk_curve_id curve, const char *label,
                        hk_ks_keyinfo *info)
{
    return hk_client_keygen_attest(c, curve, label, 0, info);
}

hk_err hk_client_keygen_attest(hk_client *c, hk_curve_id curve,
                               const char *label, int attest,
                               hk_ks_keyinfo *info)
{
    unsigned char sid[HK_ID_LEN], kid[HK_ID_LEN], *msg = NULL, *in = NULL;
    char wspath[128];
    size_t len = 0, inlen = 0;
    hk_keygen *kg = NULL;
    hk_share *share = NULL;
    hk_paillier_sk *psk = NULL;
    hk_rped *rp = NULL;
    hk_tws *ws = NULL;
    hk_err e;
    int i;

    if (c == NULL || label == NULL || !hk_ks_label_ok(label) ||
        hk_curve_name(curve) == NULL)
        return HK_ERR_ARG;
    attest = attest || c->cfg.attest;
    /* the Paillier key from the prime pool when it has one (client_pool.c),
     * taken once the session is open */
    if ((e = hk_client_setup(c, &rp)) != HK_OK ||
        (e = hk_client_keygen_open(c, curve, attest, sid, kid, wspath)) !=
            HK_OK ||
        (e = hk_client_ws(c, wspath, &ws)) != HK_OK ||
        (e = hk_keygen_p1_new(curve, sid, kid, c->cfg.paillier_bits, rp,
                              &kg)) != HK_OK ||
        (e = hk_client_pool_take(c, &psk)) != HK_OK ||
        (e = hk_keygen_p1_use_paillier(kg, &psk)) != HK_OK ||
        (e = hk_keygen_start(kg, &msg, &len)) != HK_OK)
        goto done;
    /* keygen.1 -> keygen.2, keygen.3 -> keygen.4 */
    for (i = 0; i < 2 && e == HK_OK; i++) {
        e = hk_client_roundtrip(c, ws, msg, len, &in, &inlen);
        msg = NULL;
        if (e == HK_OK)
            e = hk_keygen_recv(kg, in, inlen, &msg, &len);
        free(in);
        in = NULL;
    }
    OPENSSL_free(msg);
    msg = NULL;
    /* durable first, then keygen.5 proves it to the server */
    if (e != HK_OK || (e = hk_keygen_take_share(kg, &share)) != HK_OK ||
        (e = hk_ks_store_share(c->ks, label, share)) != HK_OK ||
        (e = hk_keygen_confirm(kg, &msg, &len)) != HK_OK)
        goto done;
    (void)hk_client_confirm(c, ws, msg, len);
    /* a backup failure leaves a working key: last_error says so */
    (void)hk_client_auto_backup(c, share);
    if (info != NULL)
        e = hk_ks_key_info(c->ks, label, info);
done:
    hk_paillier_sk_free(psk);
    hk_share_free(share);
    hk_keygen_free(kg);
    hk_tws_close(ws);
    hk_rped_free(rp);
    return e;
}

/* HK_ERR_KEY_LOCKED, with the lock's reason as the last error. */
static hk_err hk_client_locked(hk_client *c, const hk_ks_keyinfo *info)
{
    snprintf(c->last_error, sizeof(c->last_error), "%s", info->lock_reason);
    return HK_ERR_KEY_LOCKED;
}

/* Takes the key's session hold and opens a session for it on the server
 * (the body {"key_id"} and the fields of `extra`, NULL or an object it
 * takes); then loads the share while the server prepares its side. */
static hk_err hk_client_keyop(hk_client *c, const char *label, const char *path,
                              json_t *extra, hk_ks_hold **hold,
                              hk_share **share, unsigned char sid[HK_ID_LEN],
                              hk_tws **ws)
{
    json_t *body;
    unsigned char kid[HK_ID_LEN];
    char kh[2 * HK_ID_LEN + 1], wspath[128];
    hk_ks_keyinfo info;
    hk_err e;

    if ((e = hk_ks_key_acquire(c->ks, label, hold)) != HK_OK ||
        (e = hk_ks_key_info(c->ks, label, &info)) != HK_OK) {
        json_decref(extra);
        return e;
    }
    /* a locked key neither signs nor refreshes: a refresh would carry what
     * the server learned over to the new share (DESIGN.md section 2) */
    if (info.locked) {
        json_decref(extra);
        return hk_client_locked(c, &info);
    }
    hk_hex(info.kid, HK_ID_LEN, kh);
    body = extra != NULL ? extra : json_object();
    json_object_set_new(body, "key_id", json_string(kh));
    if ((e = hk_client_open_session(c, path, body, sid, kid, wspath, NULL)) !=
        HK_OK)
        return e;
    if (memcmp(kid, info.kid, HK_ID_LEN) != 0)
        return HK_ERR_SERVER;
    if ((e = hk_ks_load_share(c->ks, label, share)) != HK_OK)
        return e;
    if (memcmp((*share)->kid, info.kid, HK_ID_LEN) != 0)
        return HK_ERR_SHARE;
    return hk_client_ws(c, wspath, ws);
}

/* The abort rule (DESIGN.md section 2), fail-closed: the key's record says
 * "aborted" (durable even when the key file cannot be rewritten), then the
 * sealed lock is set. */
static void hk_client_abort_lock(hk_client *c, const char *label,
                                 hk_ks_hold *hold)
{
    if (hk_ks_hold_mark(hold, HK_KS_SIG_ABORTED) != HK_OK ||
        hk_ks_lock_key(c->ks, label,
                       "invalid signature from the server: "
                       "possible abort attack") != HK_OK)
        snprintf(c->last_error, sizeof(c->last_error),
                 "could not record the lock of key %s: it stays locked as "
                 "an interrupted signature",
                 label);
}

/* A clear that fails leaves the record: the key reads as an interrupted
 * signature (fail-closed), which `halfkey unlock` clears. */
static void hk_client_sig_clear(hk_ks_hold *hold)
{
    if (hk_ks_hold_mark(hold, HK_KS_SIG_IDLE) != HK_OK)
        return;
}

/* The answer to a channel's open message: {"t":"opened"} naming the
 * session id (*sid) and key `kid`, or the server's error; *max (may be
 * NULL): a batch's "presign_max", 0 if absent. */
static hk_err hk_channel_opened(hk_client *c, hk_tws *ws,
                                const unsigned char *kid,
                                unsigned char sid[HK_ID_LEN], size_t *max)
{
    unsigned char got[HK_ID_LEN], *in = NULL;
    const char *s, *k;
    size_t inlen = 0;
    json_t *o;
    hk_err e;

    if ((e = hk_client_recv(c, ws, &in, &inlen)) != HK_OK)
        return e;
    o = json_loadb((const char *)in, inlen, 0, NULL);
    free(in);
    s = json_string_value(json_object_get(o, "session_id"));
    k = json_string_value(json_object_get(o, "key_id"));
    e = HK_ERR_SERVER;
    if (s != NULL && k != NULL && strncmp(s, "sess_", 5) == 0 &&
        hk_unhex(s + 5, strlen(s + 5), sid, HK_ID_LEN) &&
        hk_unhex(k, strlen(k), got, HK_ID_LEN) &&
        memcmp(got, kid, HK_ID_LEN) == 0)
        e = HK_OK;
    if (max != NULL) {
        json_int_t v = json_integer_value(json_object_get(o, "presign_max"));

        *max = v > 0 && v <= HK_PRESIG_BATCH_MAX ? (size_t)v : 0;
    }
    json_decref(o);
    return e;
}

/* The signing-session record (DESIGN.md section 2, the abort rule): the
 * signature is marked in flight durably before the message that lets the
 * server answer with c3 (sign.3, or sign.1p) goes out, and cleared once
 * the signature verified, or when no c3 came back at all (a server error
 * or a broken connection: nothing was decrypted, so nothing about x1 can
 * have leaked). Anything else leaves it: locked. The mark is made as
 * early as that allows, right after the message before (sign.1, or the
 * open of a presigned sign) has left: its fdatasync then runs while the
 * server works on that message. */
static hk_err hk_client_mark(hk_client *c, hk_ks_hold *hold)
{
    hk_err e = hk_ks_hold_mark(hold, HK_KS_SIG_INFLIGHT);

    if (e != HK_OK)
        snprintf(c->last_error, sizeof(c->last_error),
                 "cannot record the signature in flight in the token "
                 "directory: not signing");
    return e;
}

/* Sends `msg` (freed; sign.3 or sign.1p) and reads c3 into *in (sign.4),
 * under the in-flight record: cleared when no c3 came. */
static hk_err hk_client_c3_get(hk_client *c, hk_ks_hold *hold, hk_tws *ws,
                               unsigned char *msg, size_t len,
                               unsigned char **in, size_t *inlen)
{
    hk_err e = hk_client_roundtrip(c, ws, msg, len, in, inlen);

    if (e != HK_OK)
        hk_client_sig_clear(hold);
    return e;
}

/* c3 received: decrypted and the signature checked (hk_sign_recv, which
 * makes sign.5 into *msg); the record cleared if it verified, the abort
 * lock if it did not. */
static hk_err hk_client_c3_use(hk_client *c, const char *label,
                               hk_ks_hold *hold, hk_sign *sg, unsigned char *in,
                               size_t inlen, unsigned char **msg, size_t *len)
{
    hk_err e = hk_sign_recv(sg, in, inlen, msg, len);

    free(in);
    if (e == HK_OK)
        hk_client_sig_clear(hold);
    else if (e == HK_ERR_SIG_ABORT)
        hk_client_abort_lock(c, label, hold);
    return e;
}

/* sign.5 is the server's audit copy: its loss does not fail the sign. */
static void hk_client_sign5(hk_client *c, hk_tws *ws, const unsigned char *msg,
                            size_t len)
{
    if (msg != NULL && hk_tws_send(ws, msg, len) != HK_OK)
        snprintf(c->last_error, sizeof(c->last_error),
                 "signature not reported to the server");
}

/* sign.1 .. sign.5; the in-flight record marked once sign.1 has left. */
static hk_err hk_client_sign_run(hk_client *c, const char *label,
                                 hk_ks_hold *hold, hk_sign *sg, hk_tws *ws)
{
    unsigned char *msg = NULL, *in = NULL;
    size_t len = 0, inlen = 0;
    hk_err e;

    if ((e = hk_sign_start(sg, &msg, &len)) != HK_OK)
        return e;
    e = hk_tws_send(ws, msg, len);
    OPENSSL_free(msg);
    msg = NULL;
    if (e != HK_OK || (e = hk_client_mark(c, hold)) != HK_OK)
        return e;
    if ((e = hk_client_recv(c, ws, &in, &inlen)) == HK_OK) {
        e = hk_sign_recv(sg, in, inlen, &msg, &len);
        free(in);
        in = NULL;
    }
    if (e != HK_OK) { /* sign.2 missing or refused: no c3 can come */
        hk_client_sig_clear(hold);
        OPENSSL_free(msg);
        return e;
    }
    if ((e = hk_client_c3_get(c, hold, ws, msg, len, &in, &inlen)) != HK_OK)
        return e;
    msg = NULL;
    if ((e = hk_client_c3_use(c, label, hold, sg, in, inlen, &msg, &len)) ==
        HK_OK)
        hk_client_sign5(c, ws, msg, len);
    OPENSSL_free(msg);
    return e;
}

/* refresh.1 .. refresh.4, store (a new key file when `fresh_key`, the
 * restore; else the replacement), the new epoch's backup under bk (if
 * any) before refresh.5, refresh.5. */
static hk_err hk_client_refresh_run(hk_client *c, const char *label,
                                    hk_refresh *rf, hk_tws *ws, int fresh_key,
                                    const hk_pve_pub *bk)
{
    unsigned char *msg = NULL, *in = NULL;
    size_t len = 0, inlen = 0;
    hk_share *fresh = NULL;
    hk_paillier_sk *psk = NULL;
    hk_err e;
    int i;

    /* the new Paillier key from the prime pool when it has one */
    if ((e = hk_client_pool_take(c, &psk)) == HK_OK)
        e = hk_refresh_p1_use_paillier(rf, &psk);
    hk_paillier_sk_free(psk);
    if (e != HK_OK || (e = hk_refresh_start(rf, &msg, &len)) != HK_OK)
        return e;
    for (i = 0; i < 2 && e == HK_OK; i++) {
        e = hk_client_roundtrip(c, ws, msg, len, &in, &inlen);
        msg = NULL;
        if (e == HK_OK)
            e = hk_refresh_recv(rf, in, inlen, &msg, &len);
        free(in);
        in = NULL;
    }
    OPENSSL_free(msg);
    msg = NULL;
    /* Durable first: then the server may drop the old share. */
    if (e != HK_OK || (e = hk_refresh_take_share(rf, &fresh)) != HK_OK ||
        (e = fresh_key ? hk_ks_store_share(c->ks, label, fresh)
                       : hk_ks_replace_share(c->ks, label, fresh)) != HK_OK)
        goto done;
    /* the new epoch's backup before refresh.5: a server holding a backup
     * of the key promotes the new share only once it has this one */
    if (bk != NULL)
        (void)hk_client_send_backup(c, fresh, bk);
    else
        (void)hk_client_auto_backup(c, fresh);
    if ((e = hk_refresh_confirm(rf, &msg, &len)) != HK_OK)
        goto done;
    e = hk_client_confirm(c, ws, msg, len);
    msg = NULL;
done:
    OPENSSL_free(msg);
    hk_share_free(fresh);
    return e;
}

hk_err hk_client_refresh(hk_client *c, const char *label)
{
    unsigned char sid[HK_ID_LEN];
    hk_ks_hold *hold = NULL;
    hk_share *share = NULL;
    hk_refresh *rf = NULL;
    hk_rped *rp = NULL;
    hk_tws *ws = NULL;
    hk_err e;

    if (c == NULL || label == NULL)
        return HK_ERR_ARG;
    if ((e = hk_client_setup(c, &rp)) != HK_OK ||
        (e = hk_client_keyop(c, label, "/refresh", NULL, &hold, &share, sid,
                             &ws)) != HK_OK ||
        (e = hk_refresh_p1_new(share, sid, c->cfg.paillier_bits, rp, &rf)) !=
            HK_OK)
        goto done;
    e = hk_client_refresh_run(c, label, rf, ws, 0, NULL);
done:
    hk_refresh_free(rf);
    hk_tws_close(ws);
    hk_share_free(share);
    hk_ks_key_release(hold);
    hk_rped_free(rp);
    return e;
}

/* Presignatures a channel keeps (mpc/presign.h), at most this many, and
 * the batches it makes itself (presign = auto): 4, then 8, then 16. */
#define HK_CH_PRESIG_MAX 64
#define HK_CH_BATCH_FIRST 4
#define HK_CH_BATCH_MAX 16
#define HK_CH_SIGNED_KEYS 8

struct hk_channel {
    hk_tws *ws;
    /* The last share used, kept while its key file says the same epoch:
     * signing the same key again skips unsealing and decoding it. */
    char label[HK_KS_LABEL_MAX + 1];
    hk_share *share;
    /* P1's halves of the presignatures made on this channel, in the
     * secure heap; each is wiped before the digest that uses it goes out
     * (a crash loses it; it never signs twice) */
    hk_presig *ps;
    size_t nps;
    size_t batch;    /* the next batch this channel makes (auto) */
    int presign_off; /* the server keeps none, or presign = off */
    /* the last sign ran on a presignature this channel made (not one
     * stored on disk): the channel is signing repeatedly, so it refills
     * in idle time (hk_client_sign) */
    int own_presigned, picked_disk;
    /* the keys this channel signed the plain way, newest first (auto: the
     * second sign of one of them makes a batch; a host signing with a few
     * keys in turn presigns for each) */
    unsigned char signed_kid[HK_CH_SIGNED_KEYS][HK_ID_LEN];
    size_t nsigned;
};

hk_err hk_client_channel_open(hk_client *c, hk_channel **out)
{
    hk_channel *ch;
    hk_err e;

    if (c == NULL || out == NULL)
        return HK_ERR_ARG;
    if ((ch = calloc(1, sizeof(*ch))) == NULL)
        return HK_ERR_NOMEM;
    ch->ps = OPENSSL_secure_zalloc(HK_CH_PRESIG_MAX * sizeof(*ch->ps));
    if (ch->ps == NULL) {
        free(ch);
        return HK_ERR_NOMEM;
    }
    ch->batch = HK_CH_BATCH_FIRST;
    ch->presign_off = strcmp(c->cfg.presign, "off") == 0;
    if ((e = hk_client_ws(c, "/ws?channel=1", &ch->ws)) != HK_OK) {
        hk_client_channel_close(ch);
        return e;
    }
    *out = ch;
    return HK_OK;
}

/* A channel of the parent after a fork: its secrets are wiped and its
 * memory freed, its connection left alone (a TLS close from the child
 * would end the parent's connection; the descriptor is the parent's). */
static void hk_channel_abandon(hk_channel *ch)
{
    hk_share_free(ch->share);
    OPENSSL_secure_clear_free(ch->ps, HK_CH_PRESIG_MAX * sizeof(*ch->ps));
    OPENSSL_cleanse(ch, sizeof(*ch));
    free(ch);
}

void hk_client_channel_close(hk_channel *ch)
{
    if (ch == NULL)
        return;
    hk_tws_close(ch->ws);
    hk_channel_abandon(ch);
}

/* Drops presignature i (wiped; the later ones move down, so the array
 * stays oldest first, the order in which the server evicts). */
static void hk_channel_drop(hk_channel *ch, size_t i)
{
    OPENSSL_cleanse(&ch->ps[i], sizeof(ch->ps[i]));
    memmove(&ch->ps[i], &ch->ps[i + 1], (ch->nps - i - 1) * sizeof(ch->ps[0]));
    ch->nps--;
    OPENSSL_cleanse(&ch->ps[ch->nps], sizeof(ch->ps[ch->nps]));
}

/* Drops the key's presignatures of other epochs (a refresh made them
 * useless), or all of them (epoch 0). */
static void hk_channel_forget(hk_channel *ch, const unsigned char *kid,
                              unsigned long epoch)
{
    size_t i = 0;

    while (i < ch->nps)
        if (memcmp(ch->ps[i].kid, kid, HK_ID_LEN) == 0 &&
            (epoch == 0 || ch->ps[i].epoch != epoch))
            hk_channel_drop(ch, i);
        else
            i++;
}

void hk_client_channel_set_presign(hk_channel *ch, hk_client *c, int on)
{
    if (ch != NULL && c != NULL)
        ch->presign_off = !on || strcmp(c->cfg.presign, "off") == 0;
}

size_t hk_client_channel_presigs(const hk_channel *ch, const hk_client *c,
                                 const char *label)
{
    hk_ks_keyinfo info;
    size_t i, n = 0;

    if (ch == NULL || c == NULL || label == NULL ||
        hk_ks_key_info(c->ks, label, &info) != HK_OK)
        return 0;
    for (i = 0; i < ch->nps; i++)
        n += memcmp(ch->ps[i].kid, info.kid, HK_ID_LEN) == 0;
    return n;
}

/* The channel's share of `label`, loaded unless the cached one is still
 * the key file's (same key id and epoch). */
static hk_err hk_channel_share(hk_client *c, hk_channel *ch, const char *label,
                               const hk_ks_keyinfo *info)
{
    hk_share *s = NULL;
    hk_err e;

    if (ch->share != NULL && strcmp(ch->label, label) == 0 &&
        ch->share->epoch == info->epoch &&
        memcmp(ch->share->kid, info->kid, HK_ID_LEN) == 0)
        return HK_OK;
    if ((e = hk_ks_load_share(c->ks, label, &s)) != HK_OK)
        return e;
    hk_share_free(ch->share);
    ch->share = s;
    snprintf(ch->label, sizeof(ch->label), "%s", label);
    return HK_OK;
}

/* The open message of a session on the channel: op, the key, and the
 * fields of `extra` (NULL, or an object it takes). *out: free(). */
static hk_err hk_channel_open_msg(const char *op, const unsigned char *kid,
                                  json_t *extra, char **out)
{
    char kh[2 * HK_ID_LEN + 1];
    json_t *o = extra != NULL ? extra : json_object();

    hk_hex(kid, HK_ID_LEN, kh);
    json_object_set_new(o, "v", json_integer(1));
    json_object_set_new(o, "t", json_string("open"));
    json_object_set_new(o, "op", json_string(op));
    json_object_set_new(o, "key_id", json_string(kh));
    *out = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return *out != NULL ? HK_OK : HK_ERR_NOMEM;
}

/* Opens a session on the channel (`op`, `extra` as hk_channel_open_msg)
 * for the key of `info`; the share loads meanwhile. */
static hk_err hk_channel_session(hk_client *c, hk_channel *ch,
                                 const char *label, const hk_ks_keyinfo *info,
                                 const char *op, json_t *extra,
                                 unsigned char sid[HK_ID_LEN], size_t *max)
{
    char *req = NULL;
    hk_err e;

    if ((e = hk_channel_open_msg(op, info->kid, extra, &req)) != HK_OK)
        return e;
    e = hk_tws_send(ch->ws, req, strlen(req));
    free(req);
    if (e != HK_OK || (e = hk_channel_share(c, ch, label, info)) != HK_OK)
        return e;
    return hk_channel_opened(c, ch->ws, info->kid, sid, max);
}

/* The key's info, refused if locked. */
static hk_err hk_channel_key(hk_client *c, const char *label,
                             hk_ks_keyinfo *info)
{
    hk_err e;

    if ((e = hk_ks_key_info(c->ks, label, info)) != HK_OK)
        return e;
    return info->locked ? hk_client_locked(c, info) : HK_OK;
}

/* pre.1 .. pre.3 and the server's {"t":"done","n":n}; the batch is kept
 * only once the server has stored its halves. */
static hk_err hk_channel_presign_run(hk_client *c, hk_channel *ch,
                                     const unsigned char sid[HK_ID_LEN],
                                     size_t n)
{
    unsigned char *msg = NULL, *in = NULL;
    size_t len = 0, inlen = 0, i;
    hk_psgen *g = NULL;
    json_t *o = NULL;
    hk_err e;

    if ((e = hk_psgen_p1_new(ch->share, sid, n, &g)) != HK_OK ||
        (e = hk_psgen_start(g, &msg, &len)) != HK_OK ||
        (e = hk_client_roundtrip(c, ch->ws, msg, len, &in, &inlen)) != HK_OK ||
        (e = hk_psgen_recv(g, in, inlen, &msg, &len)) != HK_OK)
        goto done;
    free(in);
    in = NULL;
    if ((e = hk_client_roundtrip(c, ch->ws, msg, len, &in, &inlen)) != HK_OK)
        goto done;
    o = json_loadb((const char *)in, inlen, 0, NULL);
    e = HK_ERR_SERVER;
    if (!json_is_string(json_object_get(o, "t")) ||
        strcmp(json_string_value(json_object_get(o, "t")), "done") != 0 ||
        json_integer_value(json_object_get(o, "n")) != (json_int_t)n)
        goto done;
    while (ch->nps + n > HK_CH_PRESIG_MAX) /* the oldest go */
        hk_channel_drop(ch, 0);
    for (i = 0; i < n; i++)
        if ((e = hk_psgen_get(g, i, &ch->ps[ch->nps])) == HK_OK)
            ch->nps++;
done:
    json_decref(o);
    free(in);
    hk_psgen_free(g);
    return e;
}

/* A server that keeps no presignatures refuses the open and keeps the
 * channel: from then on it signs the plain way. */
static hk_err hk_channel_presign_with(hk_client *c, hk_channel *ch,
                                      const char *label,
                                      const hk_ks_keyinfo *info, size_t n)
{
    unsigned char sid[HK_ID_LEN];
    size_t max = 0;
    hk_err e;

    e = hk_channel_session(c, ch, label, info, "presign",
                           json_pack("{s:I}", "n", (json_int_t)n), sid, &max);
    if (e == HK_ERR_FORBIDDEN)
        ch->presign_off = 1;
    /* the open asked for n; pre.1 asks for no more than the server makes */
    if (max > 0 && n > max)
        n = max;
    return e != HK_OK ? e : hk_channel_presign_run(c, ch, sid, n);
}

hk_err hk_client_channel_presign(hk_client *c, hk_channel *ch,
                                 const char *label, size_t n)
{
    hk_ks_keyinfo info;
    hk_err e;

    if (c == NULL || ch == NULL || label == NULL || n < 1 ||
        n > HK_PRESIG_BATCH_MAX)
        return HK_ERR_ARG;
    if ((e = hk_channel_key(c, label, &info)) != HK_OK)
        return e;
    return hk_channel_presign_with(c, ch, label, &info, n);
}

/* 1 if the channel signed key `kid` the plain way before. */
static int hk_channel_signed(const hk_channel *ch, const unsigned char *kid)
{
    size_t i;

    for (i = 0; i < ch->nsigned; i++)
        if (memcmp(ch->signed_kid[i], kid, HK_ID_LEN) == 0)
            return 1;
    return 0;
}

/* Remembers a plain sign of `kid` (the oldest key forgotten when full). */
static void hk_channel_signed_add(hk_channel *ch, const unsigned char *kid)
{
    if (hk_channel_signed(ch, kid))
        return;
    if (ch->nsigned < HK_CH_SIGNED_KEYS)
        ch->nsigned++;
    memmove(ch->signed_kid[1], ch->signed_kid[0],
            (ch->nsigned - 1) * sizeof(ch->signed_kid[0]));
    memcpy(ch->signed_kid[0], kid, HK_ID_LEN);
}

/* Moves the channel's presignatures of key `kid` to disk; *moved: how
 * many. Each leaves memory (wiped) once it is sealed on disk. */
static hk_err hk_channel_store(hk_client *c, hk_channel *ch,
                               const unsigned char *kid, size_t *moved)
{
    size_t i = 0;
    hk_err e = HK_OK;

    while (i < ch->nps && e == HK_OK)
        if (memcmp(ch->ps[i].kid, kid, HK_ID_LEN) != 0)
            i++;
        else if ((e = hk_ks_presig_put(c->ks, &ch->ps[i])) == HK_OK) {
            hk_channel_drop(ch, i);
            (*moved)++;
        }
    return e;
}

hk_err hk_client_presign(hk_client *c, const char *label, size_t target,
                         size_t *added)
{
    hk_channel *ch = NULL;
    hk_ks_keyinfo info;
    size_t have = 0, moved = 0, n;
    hk_err e;

    if (c == NULL || label == NULL || target > HK_KS_PRESIG_MAX)
        return HK_ERR_ARG;
    if (added != NULL)
        *added = 0;
    if ((e = hk_channel_key(c, label, &info)) != HK_OK ||
        (e = hk_ks_presig_count(c->ks, info.kid, &have)) != HK_OK)
        return e;
    if (have < target && (e = hk_client_channel_open(c, &ch)) != HK_OK)
        return e;
    while (e == HK_OK && have + moved < target) {
        n = target - have - moved;
        if (n > HK_CH_BATCH_MAX)
            n = HK_CH_BATCH_MAX;
        if ((e = hk_channel_presign_with(c, ch, label, &info, n)) == HK_OK)
            e = hk_channel_store(c, ch, info.kid, &moved);
    }
    if (e == HK_ERR_FORBIDDEN)
        snprintf(c->last_error, sizeof(c->last_error),
                 "the server keeps no presignatures (presign_max_key = 0)");
    hk_client_channel_close(ch);
    if (added != NULL)
        *added = moved;
    return e;
}

/* One of the key's presignatures stored on disk (`halfkey presign`, for
 * one-shot processes), moved into the channel: removed from disk before it
 * is opened (hk_ks_presig_take), the removal synced once its open has left
 * and before its digest does (hk_channel_records), then used as the
 * channel's own.
 * HK_ERR_NOT_FOUND if there is none (the count, which takes no lock,
 * spares a sign without any the token lock). */
static hk_err hk_channel_disk(hk_client *c, hk_channel *ch,
                              const hk_ks_keyinfo *info)
{
    size_t n = 0;
    hk_err e;

    if (hk_ks_presig_count(c->ks, info->kid, &n) != HK_OK || n == 0)
        return HK_ERR_NOT_FOUND;
    if (ch->nps == HK_CH_PRESIG_MAX)
        hk_channel_drop(ch, 0);
    if ((e = hk_ks_presig_take(c->ks, info->kid, info->epoch, 1,
                               &ch->ps[ch->nps])) == HK_OK)
        ch->nps++;
    else /* the unusable ones it met (retired) go now: no sign follows */
        hk_ks_presig_sweep(c->ks);
    return e;
}

/* *pick: the index of a presignature of the key's current share, or -1;
 * with presign = auto, a batch is made first when there is none and the
 * channel signed this key before (a one-shot sign stays plain). A server
 * that keeps none leaves -1 and HK_OK (hk_channel_presign_with). */
static hk_err hk_channel_pick(hk_client *c, hk_channel *ch, const char *label,
                              const hk_ks_keyinfo *info, long *pick)
{
    size_t i;
    hk_err e;

    *pick = -1;
    ch->picked_disk = 0;
    hk_channel_forget(ch, info->kid, info->epoch);
    for (i = 0; i < ch->nps; i++)
        if (memcmp(ch->ps[i].kid, info->kid, HK_ID_LEN) == 0) {
            *pick = (long)i;
            return HK_OK;
        }
    if (!ch->presign_off && hk_channel_disk(c, ch, info) == HK_OK) {
        *pick = (long)ch->nps - 1;
        ch->picked_disk = 1;
        return HK_OK;
    }
    if (ch->presign_off || !hk_channel_signed(ch, info->kid))
        return HK_OK;
    if ((e = hk_channel_presign_with(c, ch, label, info, ch->batch)) != HK_OK)
        return e == HK_ERR_FORBIDDEN ? HK_OK : e;
    if (ch->batch < HK_CH_BATCH_MAX)
        ch->batch *= 2;
    *pick = (long)ch->nps - 1;
    return HK_OK;
}

typedef struct {
    hk_ks *ks;
    hk_err e;
} hk_presig_syncer;

static void *hk_presig_sync_run(void *arg)
{
    hk_presig_syncer *j = arg;

    j->e = hk_ks_presig_sync(j->ks);
    return NULL;
}

/* Before a presigned sign's digest leaves (sign.1p): the in-flight record
 * (hk_client_mark), and a presignature taken from disk durably gone
 * (DESIGN.md section 2; its removal was left unsynced so that the sync
 * runs while the server works on the open). The two syncs run at once, on
 * this thread and a helper: the device may merge their flushes. */
static hk_err hk_channel_records(hk_client *c, hk_channel *ch, hk_ks_hold *hold)
{
    hk_presig_syncer j = {c->ks, HK_OK};
    pthread_t th;
    int helper = 0;
    hk_err e;

    if (ch->picked_disk)
        helper = pthread_create(&th, NULL, hk_presig_sync_run, &j) == 0;
    e = hk_client_mark(c, hold);
    if (helper)
        pthread_join(th, NULL);
    else if (ch->picked_disk)
        hk_presig_sync_run(&j);
    if (e != HK_OK || j.e == HK_OK)
        return e;
    snprintf(c->last_error, sizeof(c->last_error),
             "cannot sync the removal of a stored presignature: not signing");
    hk_client_sig_clear(hold); /* sign.1p never left: no c3 can come */
    return j.e;
}

static void *hk_presig_sweep_run(void *arg)
{
    hk_ks_presig_sweep(arg);
    return NULL;
}

/* After a presigned sign's open: sends sign.1p (`msg`, freed), reads the
 * open's answer (naming the presignature as the session) and c3 into *in;
 * the in-flight record cleared when no c3 came. A presignature taken from
 * disk (`disk`) has its retired file deleted meanwhile, on a helper. */
static hk_err hk_channel_c3_presigned(hk_client *c, hk_ks_hold *hold,
                                      hk_tws *ws, const unsigned char *kid,
                                      const unsigned char sid[HK_ID_LEN],
                                      int disk, unsigned char *msg, size_t len,
                                      unsigned char **in, size_t *inlen)
{
    unsigned char got[HK_ID_LEN];
    hk_err e = hk_tws_send(ws, msg, len);
    pthread_t th;
    int helper = 0;

    OPENSSL_free(msg);
    if (disk &&
        !(helper = pthread_create(&th, NULL, hk_presig_sweep_run, c->ks) == 0))
        hk_ks_presig_sweep(c->ks);
    if (e == HK_OK && (e = hk_channel_opened(c, ws, kid, got, NULL)) == HK_OK &&
        memcmp(got, sid, HK_ID_LEN) != 0)
        e = HK_ERR_SERVER;
    if (e == HK_OK)
        e = hk_client_recv(c, ws, in, inlen);
    if (helper)
        pthread_join(th, NULL);
    if (e != HK_OK)
        hk_client_sig_clear(hold);
    return e;
}

/* A sign on presignature i (taken from the channel and wiped before
 * anything is sent): the open, then sign.1p, then the open's answer and
 * c3. */
static hk_err hk_channel_sign_presigned(hk_client *c, hk_channel *ch,
                                        const char *label, hk_ks_hold *hold,
                                        const hk_ks_keyinfo *info, size_t i,
                                        json_t *extra, const unsigned char *dig,
                                        size_t dlen, hk_sign **sg)
{
    unsigned char sid[HK_ID_LEN], *msg = NULL, *in = NULL;
    char idh[2 * HK_ID_LEN + 1], *req = NULL;
    size_t len = 0, inlen = 0;
    hk_err e;

    memcpy(sid, ch->ps[i].id, HK_ID_LEN);
    hk_hex(sid, HK_ID_LEN, idh);
    e = hk_sign_p1_presigned(ch->share, &ch->ps[i], dig, dlen, sg);
    hk_channel_drop(ch, i); /* single use: gone before anything is sent */
    if (extra == NULL)
        extra = json_object();
    json_object_set_new(extra, "presig", json_string(idh));
    if (e != HK_OK) {
        json_decref(extra);
        return e;
    }
    if ((e = hk_channel_open_msg("sign", info->kid, extra, &req)) != HK_OK ||
        (e = hk_sign_start(*sg, &msg, &len)) != HK_OK)
        goto done;
    /* the open first: the server's storage work for it (the admission,
     * the presignature taken, one durable commit) runs while the
     * in-flight record and a stored presignature's removal are synced
     * here, before sign.1p leaves */
    if ((e = hk_tws_send(ch->ws, req, strlen(req))) != HK_OK ||
        (e = hk_channel_records(c, ch, hold)) != HK_OK)
        goto done;
    e = hk_channel_c3_presigned(c, hold, ch->ws, info->kid, sid,
                                ch->picked_disk, msg, len, &in, &inlen);
    msg = NULL;
    if (e == HK_OK && (e = hk_client_c3_use(c, label, hold, *sg, in, inlen,
                                            &msg, &len)) == HK_OK)
        hk_client_sign5(c, ch->ws, msg, len);
done:
    OPENSSL_free(msg);
    free(req);
    return e;
}

/* A sign on the channel whose open message carries `extra` (NULL, or
 * taken): on a presignature when there is one, else the plain way. */
static hk_err hk_channel_sign_with(hk_client *c, hk_channel *ch,
                                   const char *label, json_t *extra,
                                   const unsigned char *dig, size_t dlen,
                                   unsigned char sig[HK_SIG_LEN])
{
    unsigned char sid[HK_ID_LEN];
    hk_ks_hold *hold = NULL;
    hk_ks_keyinfo info;
    hk_sign *sg = NULL;
    long pick;
    hk_err e;

    memset(&info, 0, sizeof(info));
    if ((e = hk_ks_key_acquire(c->ks, label, &hold)) != HK_OK ||
        (e = hk_channel_key(c, label, &info)) != HK_OK ||
        (e = hk_channel_share(c, ch, label, &info)) != HK_OK ||
        (e = hk_channel_pick(c, ch, label, &info, &pick)) != HK_OK) {
        json_decref(extra);
        goto done;
    }
    ch->own_presigned = 0;
    if (pick >= 0) {
        e = hk_channel_sign_presigned(c, ch, label, hold, &info, (size_t)pick,
                                      json_deep_copy(extra), dig, dlen, &sg);
        ch->own_presigned = e == HK_OK && !ch->picked_disk;
        if (e != HK_ERR_NOT_FOUND) {
            json_decref(extra);
            goto have;
        }
        /* the server no longer has it (a full pool evicted it, it
         * expired, its database was restored): none of this key's are
         * trusted any more, in the channel or on disk, and this digest
         * is signed the plain way on the same connection (no c3 came:
         * nothing is in flight) */
        hk_channel_forget(ch, info.kid, 0);
        if (hk_ks_presig_drop(c->ks, info.kid) != HK_OK)
            snprintf(c->last_error, sizeof(c->last_error),
                     "could not remove stale presignatures of key %s", label);
        hk_sign_free(sg);
        sg = NULL;
    }
    if ((e = hk_channel_session(c, ch, label, &info, "sign", extra, sid,
                                NULL)) == HK_OK &&
        (e = hk_sign_p1_new(ch->share, sid, dig, dlen, &sg)) == HK_OK &&
        (e = hk_client_sign_run(c, label, hold, sg, ch->ws)) == HK_OK) {
        hk_channel_signed_add(ch, info.kid);
    }
have:
    if (e == HK_OK)
        e = hk_sign_signature(sg, sig);
done:
    hk_sign_free(sg);
    if (e == HK_ERR_SIG_ABORT) { /* never reuse a share after an abort */
        hk_channel_forget(ch, info.kid, 0);
        hk_share_free(ch->share);
        ch->share = NULL;
    }
    hk_ks_key_release(hold);
    return e;
}

hk_err hk_client_channel_sign(hk_client *c, hk_channel *ch, const char *label,
                              const unsigned char *dig, size_t dlen,
                              unsigned char sig[HK_SIG_LEN])
{
    if (c == NULL || ch == NULL || label == NULL || dig == NULL ||
        sig == NULL || dlen < 1 || dlen > HK_DIGEST_MAX)
        return HK_ERR_ARG;
    return hk_channel_sign_with(c, ch, label, NULL, dig, dlen, sig);
}

hk_err hk_client_channel_sign_request(hk_client *c, hk_channel *ch,
                                      const char *label, const char *request_id,
                                      unsigned index, const unsigned char *dig,
                                      size_t dlen,
                                      unsigned char sig[HK_SIG_LEN])
{
    if (c == NULL || ch == NULL || label == NULL || request_id == NULL ||
        dig == NULL || sig == NULL || dlen < 1 || dlen > HK_DIGEST_MAX)
        return HK_ERR_ARG;
    return hk_channel_sign_with(c, ch, label,
                                json_pack("{s:s,s:I}", "request_id", request_id,
                                          "index", (json_int_t)index),
                                dig, dlen, sig);
}

hk_err hk_client_get(hk_client *c, const char *path, int auth, int *http_status,
                     char **body)
{
    hk_tcli_config tc;
    char *tok = NULL;
    hk_err e = HK_OK;

    if (c == NULL || path == NULL || http_status == NULL || body == NULL)
        return HK_ERR_ARG;
    if (auth)
        e = hk_client_jwt(c, &tok);
    if (e == HK_OK)
        e = hk_tcli_http(hk_client_tc(c, &tc), "GET", path, tok, NULL,
                         http_status, body);
    if (tok != NULL)
        OPENSSL_cleanse(tok, strlen(tok));
    free(tok);
    return e;
}

hk_err hk_client_status(hk_client *c, int *http_status, char **body)
{
    return hk_client_get(c, "/status", 0, http_status, body);
}

const char *hk_client_server(const hk_client *c, int *port)
{
    if (c == NULL || port == NULL)
        return NULL;
    *port = c->port;
    return c->host;
}

/* The server's answer to POST /delete: HK_OK if its share of key `kh` is
 * gone (deleted now: 200 naming the key; or never there for this subject:
 * 404 "not_found"). A 404 for the endpoint itself (a server without
 * /delete) is NOT "gone": the share may still be there. */
static hk_err hk_client_delete_answer(hk_client *c, int status, const char *ans,
                                      const char *kh)
{
    json_t *o = json_loads(ans != NULL ? ans : "", 0, NULL);
    const char *k = json_string_value(json_object_get(o, "key_id"));
    const char *err = json_string_value(json_object_get(o, "error"));
    const char *msg = json_string_value(json_object_get(o, "message"));
    hk_err e = HK_ERR_SERVER;

    if (status == 200 && k != NULL && strcmp(k, kh) == 0 &&
        json_is_true(json_object_get(o, "deleted"))) {
        e = HK_OK;
        if (json_is_true(json_object_get(o, "had_backup")))
            snprintf(c->last_error, sizeof(c->last_error),
                     "the key had a backup on the server: it was deleted "
                     "with the key (a backup restores nothing without the "
                     "server's share)");
    } else if (status == 404 && err != NULL && strcmp(err, "not_found") == 0 &&
               (msg == NULL || strcmp(msg, "no such endpoint") != 0))
        e = HK_OK;
    json_decref(o);
    if (e != HK_OK)
        e = status == 200 ? HK_ERR_SERVER : hk_http_err(c, status, ans);
    if (e == HK_ERR_NOT_FOUND) /* the endpoint, not the key */
        e = HK_ERR_SERVER;
    return e;
}

hk_err hk_client_unlock(hk_client *c, const char *label, int force)
{
    char kh[2 * HK_ID_LEN + 1];
    hk_ks_keyinfo info;
    json_t *r = NULL;
    hk_err e;

    if (c == NULL || label == NULL || !hk_ks_label_ok(label))
        return HK_ERR_ARG;
    if ((e = hk_ks_key_info(c->ks, label, &info)) != HK_OK)
        return e;
    if (!info.verified)
        return HK_ERR_STATE;
    if (force && info.locked) {
        hk_hex(info.kid, HK_ID_LEN, kh);
        e = hk_client_post(
            c, "/unlock",
            json_pack("{s:s,s:s}", "key_id", kh, "reason", info.lock_reason),
            &r);
        json_decref(r);
        if (e != HK_OK)
            return e;
    }
    return hk_ks_unlock_key(c->ks, label, force);
}

hk_err hk_client_delete(hk_client *c, const char *label)
{
    char kh[2 * HK_ID_LEN + 1], *ans = NULL;
    hk_ks_hold *hold = NULL;
    hk_ks_keyinfo info;
    int status = 0;
    hk_err e;

    if (c == NULL || label == NULL || !hk_ks_label_ok(label))
        return HK_ERR_ARG;
    /* No session may start on the key from here on. */
    if ((e = hk_ks_key_acquire(c->ks, label, &hold)) != HK_OK ||
        (e = hk_ks_key_info(c->ks, label, &info)) != HK_OK)
        goto done;
    e = HK_ERR_STATE;
    if (!info.verified) /* logged out: nothing is deleted anywhere */
        goto done;
    hk_hex(info.kid, HK_ID_LEN, kh);
    c->last_error[0] = '\0';
    if ((e = hk_client_send(c, "/delete", json_pack("{s:s}", "key_id", kh),
                            &status, &ans)) != HK_OK ||
        (e = hk_client_delete_answer(c, status, ans, kh)) != HK_OK)
        goto done;
    e = hk_ks_delete_held(c->ks, label, hold);
done:
    free(ans);
    hk_ks_key_release(hold);
    return e;
}

/* GET /backup: the newest usable backup and the public view of the share
 * of its epoch; *blob and the view decoded and bound to kid. */
static hk_err hk_client_fetch_backup(hk_client *c, const unsigned char *kid,
                                     const char *kh, hk_share **view,
                                     unsigned char **blob, size_t *blen)
{
    char path[96], *body = NULL;
    unsigned char *rec = NULL;
    size_t rlen = 0;
    int status = 0;
    json_t *o = NULL;
    const char *b64, *v64;
    json_int_t ep;
    hk_err e;

    snprintf(path, sizeof(path), "/backup?key_id=%s", kh);
    if ((e = hk_client_get(c, path, 1, &status, &body)) != HK_OK)
        return e;
    if (status != 200) {
        e = hk_http_err(c, status, body);
        goto done;
    }
    o = json_loads(body, 0, NULL);
    b64 = json_string_value(json_object_get(o, "blob"));
    v64 = json_string_value(json_object_get(o, "share"));
    ep = json_integer_value(json_object_get(o, "epoch"));
    e = HK_ERR_SERVER;
    if (b64 == NULL || v64 == NULL ||
        !hk_b64_decode(b64, strlen(b64), HK_PVE_MAX_BLOB, blob, blen) ||
        !hk_b64_decode(v64, strlen(v64), HK_RECORD_MAX, &rec, &rlen))
        goto done;
    if ((e = hk_share_public_decode(rec, rlen, view)) != HK_OK)
        goto done;
    if (memcmp((*view)->kid, kid, HK_ID_LEN) != 0 ||
        (unsigned long)ep != (*view)->epoch)
        e = HK_ERR_BINDING;
done:
    if (e != HK_OK) {
        hk_share_free(*view);
        *view = NULL;
        OPENSSL_free(*blob);
        *blob = NULL;
    }
    OPENSSL_free(rec);
    json_decref(o);
    free(body);
    return e;
}

/* HK_ERR_EXISTS if the token already holds key kid. */
static hk_err hk_client_kid_free(hk_client *c, const unsigned char *kid)
{
    hk_ks_keyinfo *list = NULL;
    size_t n = 0, i;
    hk_err e;

    if ((e = hk_ks_list(c->ks, &list, &n)) != HK_OK)
        return e;
    for (i = 0; i < n; i++)
        if (list[i].err == HK_OK && memcmp(list[i].kid, kid, HK_ID_LEN) == 0)
            e = HK_ERR_EXISTS;
    hk_ks_list_free(list);
    return e;
}

hk_err hk_client_restore(hk_client *c, const char *kid_hex,
                         const char *priv_file, const char *passphrase,
                         const char *label, hk_ks_keyinfo *info)
{
    unsigned char kid[HK_ID_LEN], sid[HK_ID_LEN], got[HK_ID_LEN];
    unsigned char *blob = NULL;
    char kh[2 * HK_ID_LEN + 1], wspath[128], *pem = NULL;
    size_t blen = 0, plen = 0;
    hk_ks_keyinfo probe;
    hk_pve_priv *priv = NULL;
    hk_share *view = NULL;
    hk_refresh *rf = NULL;
    hk_rped *rp = NULL;
    hk_tws *ws = NULL;
    hk_scalar x1;
    hk_err e;

    memset(&x1, 0, sizeof(x1));
    if (c == NULL || kid_hex == NULL || priv_file == NULL || label == NULL ||
        !hk_ks_label_ok(label) || strlen(kid_hex) != 2 * HK_ID_LEN ||
        !hk_unhex(kid_hex, strlen(kid_hex), kid, HK_ID_LEN))
        return HK_ERR_ARG;
    hk_hex(kid, HK_ID_LEN, kh);
    /* nothing is fetched for a label or key the token already has */
    if ((e = hk_ks_key_info(c->ks, label, &probe)) != HK_ERR_NOT_FOUND)
        return e == HK_OK ? HK_ERR_EXISTS : e;
    if ((e = hk_client_kid_free(c, kid)) != HK_OK)
        return e;
    if ((e = hk_client_slurp(priv_file, &pem, &plen)) != HK_OK) {
        snprintf(c->last_error, sizeof(c->last_error), "cannot read %.200s",
                 priv_file);
        goto done;
    }
    if ((e = hk_pve_priv_from_pem(pem, plen, passphrase, &priv)) != HK_OK) {
        snprintf(c->last_error, sizeof(c->last_error),
                 "%.200s: not a backup private key, or a wrong passphrase",
                 priv_file);
        goto done;
    }
    if ((e = hk_client_fetch_backup(c, kid, kh, &view, &blob, &blen)) != HK_OK)
        goto done;
    /* verifies the blob, decrypts, checks x1*G = Q1 (the server's Q1) */
    if ((e = hk_pve_decrypt(priv, view->curve, kid, view->epoch, &view->Q1,
                            blob, blen, &x1)) != HK_OK) {
        snprintf(c->last_error, sizeof(c->last_error),
                 "the backup does not decrypt to this key's share with this "
                 "backup key");
        goto done;
    }
    if ((e = hk_share_p1_restore(view, &x1)) != HK_OK)
        goto done;
    /* a refresh at once: new x1' and Paillier key; only they are stored */
    if ((e = hk_client_setup(c, &rp)) != HK_OK ||
        (e = hk_client_open_session(c, "/refresh",
                                    json_pack("{s:s}", "key_id", kh), sid, got,
                                    wspath, NULL)) != HK_OK)
        goto done;
    if (memcmp(got, kid, HK_ID_LEN) != 0) {
        e = HK_ERR_SERVER;
        goto done;
    }
    if ((e = hk_client_ws(c, wspath, &ws)) != HK_OK ||
        (e = hk_refresh_p1_new(view, sid, c->cfg.paillier_bits, rp, &rf)) !=
            HK_OK)
        goto done;
    e = hk_client_refresh_run(c, label, rf, ws, 1, hk_pve_priv_pub(priv));
    if ((e == HK_OK || e == HK_ERR_BACKUP) && info != NULL &&
        hk_ks_key_info(c->ks, label, info) != HK_OK)
        e = HK_ERR_IO;
done:
    OPENSSL_cleanse(&x1, sizeof(x1));
    hk_refresh_free(rf);
    hk_tws_close(ws);
    hk_rped_free(rp);
    hk_share_free(view);
    OPENSSL_free(blob);
    hk_pve_priv_free(priv);
    if (pem != NULL)
        OPENSSL_clear_free(pem, 65537);
    return e;
}

/* --- hk_client_sign: signs on kept-open connections ------------------- */

/* With c->mu held: forgets the parent's connections in a forked child
 * (and its session tickets: freeing takes no lock a parent thread might
 * have held at the fork). */
static void hk_client_idle_forked(hk_client *c)
{
    if (c->pid == getpid())
        return;
    while (c->nidle > 0)
        hk_channel_abandon(c->idle[--c->nidle]);
    hk_tls_client_free(c->tls);
    c->tls = NULL;
    c->refilling = 0; /* the parent's refill threads are not in the child */
    c->pid = getpid();
}

void hk_client_idle_close(hk_client *c)
{
    hk_channel *all[HK_CLIENT_IDLE_MAX];
    size_t n, i;

    if (c == NULL)
        return;
    pthread_mutex_lock(&c->mu);
    hk_client_idle_forked(c);
    while (c->refilling > 0) /* they put their channels back */
        pthread_cond_wait(&c->refilled, &c->mu);
    n = c->nidle;
    memcpy(all, c->idle, n * sizeof(all[0]));
    c->nidle = 0;
    pthread_mutex_unlock(&c->mu);
    for (i = 0; i < n; i++)
        hk_client_channel_close(all[i]);
}

unsigned long hk_client_tls_resumed(hk_client *c)
{
    unsigned long n;

    if (c == NULL)
        return 0;
    pthread_mutex_lock(&c->mu);
    n = hk_tls_client_resumed(c->tls);
    pthread_mutex_unlock(&c->mu);
    return n;
}

/* The newest idle connection (after a running refill, if there is none
 * else), or NULL. */
static hk_channel *hk_client_idle_take(hk_client *c)
{
    hk_channel *ch = NULL;

    pthread_mutex_lock(&c->mu);
    hk_client_idle_forked(c);
    /* a connection still refilling (no idle time came) is worth waiting
     * for: a new one would sign the plain way and make its own batch */
    while (c->nidle == 0 && c->refilling > 0)
        pthread_cond_wait(&c->refilled, &c->mu);
    if (c->nidle > 0)
        ch = c->idle[--c->nidle];
    pthread_mutex_unlock(&c->mu);
    return ch;
}

/* Keeps ch for the next sign, or closes it when enough are kept. */
static void hk_client_idle_put(hk_client *c, hk_channel *ch)
{
    pthread_mutex_lock(&c->mu);
    hk_client_idle_forked(c);
    if (c->nidle < HK_CLIENT_IDLE_MAX) {
        c->idle[c->nidle++] = ch;
        ch = NULL;
    }
    pthread_mutex_unlock(&c->mu);
    hk_client_channel_close(ch);
}

/* A kept-open connection the server may have closed meanwhile (idle
 * timeout, token expiry, a restart) fails with one of these; the sign is
 * then tried once on a new connection. Nothing of the first try can sign
 * twice: no c3 came back (a c3 that does not verify is the abort,
 * HK_ERR_SIG_ABORT, never retried), and a presignature is dropped before
 * its digest is sent. */
static int hk_client_retryable(hk_err e)
{
    return e == HK_ERR_NETWORK || e == HK_ERR_TIMEOUT || e == HK_ERR_SESSION ||
           e == HK_ERR_AUTH;
}

/* Errors after which the connection is still in step with the server:
 * refused here before anything was sent. */
static int hk_client_keeps_channel(hk_err e)
{
    return e == HK_OK || e == HK_ERR_BUSY || e == HK_ERR_KEY_LOCKED;
}

/* The key's share, loaded on a second thread while a new connection
 * opens (its TLS handshake and WebSocket upgrade wait on the network and
 * the server: the ~2 ms decode of the share fits in there). */
typedef struct {
    hk_client *c;
    const char *label;
    hk_share *share;
} hk_prefetch;

static void *hk_prefetch_run(void *arg)
{
    hk_prefetch *p = arg;

    if (hk_ks_load_share(p->c->ks, p->label, &p->share) != HK_OK)
        p->share = NULL; /* the sign loads it again and says why */
    return NULL;
}

/* A new connection for a sign of `label`, its share loaded meanwhile (the
 * channel's cached share, checked against the key file as always). */
static hk_err hk_client_channel_open_for(hk_client *c, const char *label,
                                         hk_channel **out)
{
    hk_prefetch p = {c, label, NULL};
    pthread_t th;
    int spawned = pthread_create(&th, NULL, hk_prefetch_run, &p) == 0;
    hk_err e = hk_client_channel_open(c, out);

    if (spawned)
        pthread_join(th, NULL);
    if (e == HK_OK && p.share != NULL) {
        (*out)->share = p.share;
        snprintf((*out)->label, sizeof((*out)->label), "%s", label);
        p.share = NULL;
    }
    hk_share_free(p.share);
    return e;
}

/* Idle-time refill (presign = auto): a kept connection whose
 * presignatures of the key it just signed are running out makes the next
 * batch on a thread of its own, after the signature is returned, and
 * only then goes back to the idle list (a sign meanwhile takes another
 * idle connection, or waits for this one: hk_client_idle_take). So a
 * long-lived host (the PKCS#11 module, the provider) that has idle time
 * between signatures does not wait for a batch inside a sign. */
#define HK_CH_REFILL_BELOW 2

typedef struct {
    hk_client *c;
    hk_channel *ch;
    char label[HK_KS_LABEL_MAX + 1];
} hk_refill;

/* 1 if ch should make a batch of key `label` now: its last sign ran on a
 * presignature it made itself (a one-shot process, whose first sign is
 * plain or on a stored presignature, never refills: it would wait for
 * the batch at close and drop it) and it has fewer than
 * HK_CH_REFILL_BELOW left. */
static int hk_channel_wants_refill(hk_client *c, hk_channel *ch,
                                   const char *label)
{
    hk_ks_keyinfo info;

    return ch->own_presigned && !ch->presign_off &&
           hk_ks_key_info_live(c->ks, label, &info) == HK_OK && !info.locked &&
           hk_channel_signed(ch, info.kid) &&
           hk_client_channel_presigs(ch, c, label) < HK_CH_REFILL_BELOW;
}

static void *hk_refill_run(void *arg)
{
    hk_refill *r = arg;
    hk_client *c = r->c;
    hk_err e = hk_client_channel_presign(c, r->ch, r->label, r->ch->batch);

    if (e == HK_OK && r->ch->batch < HK_CH_BATCH_MAX)
        r->ch->batch *= 2;
    /* presignatures off or a locked key leave the connection usable */
    if (e == HK_OK || e == HK_ERR_FORBIDDEN || e == HK_ERR_KEY_LOCKED)
        hk_client_idle_put(c, r->ch);
    else
        hk_client_channel_close(r->ch);
    OPENSSL_cleanse(r, sizeof(*r));
    free(r);
    pthread_mutex_lock(&c->mu);
    if (c->refilling > 0)
        c->refilling--;
    pthread_cond_broadcast(&c->refilled);
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

/* Puts ch back, through a refill thread when it wants one. */
static void hk_client_idle_refill(hk_client *c, hk_channel *ch,
                                  const char *label)
{
    pthread_attr_t at;
    pthread_t th;
    hk_refill *r;
    int ok = 0;

    if (!hk_channel_wants_refill(c, ch, label) ||
        (r = calloc(1, sizeof(*r))) == NULL) {
        hk_client_idle_put(c, ch);
        return;
    }
    r->c = c;
    r->ch = ch;
    snprintf(r->label, sizeof(r->label), "%s", label);
    pthread_mutex_lock(&c->mu);
    c->refilling++;
    if (pthread_attr_init(&at) == 0) {
        ok = pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED) == 0 &&
             pthread_create(&th, &at, hk_refill_run, r) == 0;
        pthread_attr_destroy(&at);
    }
    if (!ok)
        c->refilling--;
    pthread_mutex_unlock(&c->mu);
    if (!ok) {
        free(r);
        hk_client_idle_put(c, ch);
    }
}

/* A sign (open message fields `extra`: NULL or taken) on an idle
 * connection, or a new one. */
static hk_err hk_client_sign_any(hk_client *c, const char *label, json_t *extra,
                                 const unsigned char *dig, size_t dlen,
                                 unsigned char sig[HK_SIG_LEN])
{
    hk_channel *ch;
    int tries, reused;
    hk_err e = HK_OK;

    for (tries = 0; tries < 2; tries++) {
        reused = (ch = hk_client_idle_take(c)) != NULL;
        if (ch == NULL &&
            (e = hk_client_channel_open_for(c, label, &ch)) != HK_OK)
            break;
        e = hk_channel_sign_with(c, ch, label,
                                 extra != NULL ? json_deep_copy(extra) : NULL,
                                 dig, dlen, sig);
        if (e == HK_OK)
            hk_client_idle_refill(c, ch, label);
        else if (hk_client_keeps_channel(e))
            hk_client_idle_put(c, ch);
        else
            hk_client_channel_close(ch);
        if (!reused || !hk_client_retryable(e))
            break;
    }
    json_decref(extra);
    return e;
}

hk_err hk_client_sign(hk_client *c, const char *label, const unsigned char *dig,
                      size_t dlen, unsigned char sig[HK_SIG_LEN])
{
    if (c == NULL || label == NULL || dig == NULL || sig == NULL || dlen < 1 ||
        dlen > HK_DIGEST_MAX)
        return HK_ERR_ARG;
    return hk_client_sign_any(c, label, NULL, dig, dlen, sig);
}

hk_err hk_client_sign_request(hk_client *c, const char *label,
                              const char *request_id, unsigned index,
                              const unsigned char *dig, size_t dlen,
                              unsigned char sig[HK_SIG_LEN])
{
    if (c == NULL || label == NULL || request_id == NULL || dig == NULL ||
        sig == NULL || dlen < 1 || dlen > HK_DIGEST_MAX)
        return HK_ERR_ARG;
    return hk_client_sign_any(c, label,
                              json_pack("{s:s,s:I}", "request_id", request_id,
                                        "index", (json_int_t)index),
                              dig, dlen, sig);
}
