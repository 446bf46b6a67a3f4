/* Synchronous TLS 1.3 HTTP / WebSocket client on libwebsockets 4.1. */
#include <pthread.h>
#include <string.h>
#include <time.h>

#include <libwebsockets.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "common/libctx.h"
#include "transport/http_client.h"
#include "transport/http_server.h"
#include "transport/jwt.h"

typedef struct hk_rxmsg {
    struct hk_rxmsg *next;
    size_t len;
    unsigned char *buf;
} hk_rxmsg;

/* State of one client connection, also the lws context user. */
typedef struct {
    hk_tcli_config cfg;
    int cert_failed;
    const char *method, *bearer, *body;
    int ws;
    /* progress */
    int connected, done, failed, closed, status;
    char *resp;
    size_t resp_len;
    /* WebSocket */
    unsigned char *rx;
    size_t rxlen;
    hk_rxmsg *inbox, *inbox_tail;
    int have_msg;
    unsigned char *tx; /* LWS_PRE + message */
    size_t txlen;
    int tx_done;
    struct lws_context *ctx;
    hk_tls_client *tls; /* the caller's (cfg.tls), or own_tls */
    int own_tls;
    struct lws *wsi;
} hk_cst;

/* A client's TLS state across its connections (http_client.h). */
struct hk_tls_client {
    SSL_CTX *ctx; /* ours, in the client core's library context */
    unsigned char pin[HK_PIN_LEN];
    int has_pin;
    pthread_mutex_t mu;                  /* guards what follows */
    SSL_SESSION *ticket[HK_TLS_TICKETS]; /* oldest first */
    size_t nticket;
    unsigned long resumed;
};

struct hk_tws {
    hk_cst st;
};

static int hk_spki_hash(X509 *cert, unsigned char out[HK_PIN_LEN])
{
    unsigned char *der = NULL;
    int len = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(cert), &der);
    int ok = len > 0 &&
             EVP_Digest(der, (size_t)len, out, NULL, hk_md_sha256(), NULL) == 1;

    OPENSSL_free(der);
    return ok;
}

/* Replaces chain verification when pinning: the leaf's SPKI must match.
 * A refusal stays in the connection's verify result (hk_cli_tls_failed). */
static int hk_pin_verify(X509_STORE_CTX *x, void *arg)
{
    const hk_tls_client *t = arg;
    unsigned char h[HK_PIN_LEN];
    X509 *leaf = X509_STORE_CTX_get0_cert(x);

    if (leaf != NULL && hk_spki_hash(leaf, h) &&
        CRYPTO_memcmp(h, t->pin, HK_PIN_LEN) == 0)
        return 1;
    X509_STORE_CTX_set_error(x, X509_V_ERR_CERT_REJECTED);
    return 0;
}

/* With a CA file: the usual chain verification (its failure, too, stays in
 * the verify result, so that it is reported as HK_ERR_TLS, not as a
 * network failure). */
static int hk_ca_verify(X509_STORE_CTX *x, void *arg)
{
    (void)arg;
    return X509_verify_cert(x);
}

/* --- session tickets --------------------------------------------------- */

/* A ticket the server sent (TLS 1.3 NewSessionTicket): a copy kept for
 * one later connection, the newest HK_TLS_TICKETS. A copy, because the
 * connection's own session object is marked not resumable when the
 * connection is freed without a TLS close (libwebsockets' way). */
static int hk_tls_new_ticket(SSL *ssl, SSL_SESSION *got)
{
    hk_tls_client *t = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    SSL_SESSION *sess;

    if (t == NULL || !SSL_SESSION_is_resumable(got) ||
        (sess = SSL_SESSION_dup(got)) == NULL)
        return 0;
    pthread_mutex_lock(&t->mu);
    if (t->nticket == HK_TLS_TICKETS) {
        SSL_SESSION_free(t->ticket[0]);
        memmove(t->ticket, t->ticket + 1,
                (HK_TLS_TICKETS - 1) * sizeof(t->ticket[0]));
        t->nticket--;
    }
    t->ticket[t->nticket++] = sess;
    pthread_mutex_unlock(&t->mu);
    return 0; /* the connection's reference stays its own */
}

/* The newest ticket not expired, taken (each is used once, RFC 8446
 * appendix C.4), or NULL. */
static SSL_SESSION *hk_tls_take_ticket(hk_tls_client *t)
{
    SSL_SESSION *s = NULL;
    time_t now = time(NULL);

    pthread_mutex_lock(&t->mu);
    while (s == NULL && t->nticket > 0) {
        s = t->ticket[--t->nticket];
        t->ticket[t->nticket] = NULL;
        if ((time_t)(SSL_SESSION_get_time(s) + SSL_SESSION_get_timeout(s)) <=
            now) {
            SSL_SESSION_free(s);
            s = NULL;
        }
    }
    pthread_mutex_unlock(&t->mu);
    return s;
}

/* At the start of a client handshake (inside SSL_connect, before the
 * ClientHello is made): offer a ticket. libwebsockets makes the SSL, so
 * this is the first point where it is ours; the handle is not const in
 * fact (the callback type is). At its end: count resumptions. */
static void hk_tls_info(const SSL *ssl, int where, int ret)
{
    hk_tls_client *t = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    SSL_SESSION *s;

    (void)ret;
    if (t == NULL || SSL_is_server((SSL *)ssl))
        return;
    if ((where & SSL_CB_HANDSHAKE_START) && SSL_get_session(ssl) == NULL &&
        (s = hk_tls_take_ticket(t)) != NULL) {
        if (SSL_set_session((SSL *)ssl, s) != 1)
            ERR_clear_error(); /* a full handshake, then */
        SSL_SESSION_free(s);
    }
    if ((where & SSL_CB_HANDSHAKE_DONE) && SSL_session_reused((SSL *)ssl)) {
        pthread_mutex_lock(&t->mu);
        t->resumed++;
        pthread_mutex_unlock(&t->mu);
    }
}

/* TLS 1.3 with the usual suites, groups and signature schemes, set here
 * so that the host's openssl.cnf (ssl_conf system_default, applied to every
 * new SSL_CTX) cannot narrow them. */
#define HK_TLS_SUITES                                                          \
    "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:"                     \
    "TLS_AES_128_GCM_SHA256"
#define HK_TLS_GROUPS "X25519:P-256:X448:P-384:P-521"
#define HK_TLS_SIGALGS                                                         \
    "ECDSA+SHA256:ECDSA+SHA384:ECDSA+SHA512:ed25519:ed448:"                    \
    "rsa_pss_pss_sha256:rsa_pss_pss_sha384:rsa_pss_pss_sha512:"                \
    "rsa_pss_rsae_sha256:rsa_pss_rsae_sha384:rsa_pss_rsae_sha512"

/* The client's SSL_CTX, made here rather than by libwebsockets: in the
 * client core's own library context (mpc/libctx.h), so that the host
 * process's providers (e.g. a pkcs11-provider loaded before default) and
 * openssl.cnf take no part in the handshake or its verification. Tickets
 * resume with an ECDHE exchange only (psk_dhe_ke: OpenSSL offers psk_ke
 * only with SSL_OP_ALLOW_NO_DHE_KEX), so a resumed connection keeps
 * forward secrecy. */
static SSL_CTX *hk_tls_ctx(hk_tls_client *t, const char *ca_file)
{
    OSSL_LIB_CTX *lc = hk_libctx();
    SSL_CTX *ctx;

    if (lc == NULL ||
        (ctx = SSL_CTX_new_ex(lc, NULL, TLS_client_method())) == NULL)
        return NULL;
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) != 1 ||
        SSL_CTX_set_max_proto_version(ctx, 0) != 1 ||
        SSL_CTX_set_ciphersuites(ctx, HK_TLS_SUITES) != 1 ||
        SSL_CTX_set1_groups_list(ctx, HK_TLS_GROUPS) != 1 ||
        SSL_CTX_set1_sigalgs_list(ctx, HK_TLS_SIGALGS) != 1 ||
        SSL_CTX_set_app_data(ctx, t) != 1 ||
        /* only the configured CA: never the OS store or SSL_CERT_FILE */
        (!t->has_pin && SSL_CTX_load_verify_file(ctx, ca_file) != 1)) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_clear_options(ctx, SSL_OP_ALLOW_NO_DHE_KEX);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_cert_verify_callback(
        ctx, t->has_pin ? hk_pin_verify : hk_ca_verify, t);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT |
                                            SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, hk_tls_new_ticket);
    SSL_CTX_set_info_callback(ctx, hk_tls_info);
    return ctx;
}

hk_err hk_tls_client_new(const hk_tcli_config *cfg, hk_tls_client **out)
{
    hk_tls_client *t;

    if (out == NULL)
        return HK_ERR_ARG;
    *out = NULL;
    if (cfg == NULL || (cfg->ca_file == NULL) == (cfg->pin == NULL))
        return HK_ERR_ARG;
    if ((t = OPENSSL_zalloc(sizeof(*t))) == NULL)
        return HK_ERR_NOMEM;
    if (pthread_mutex_init(&t->mu, NULL) != 0) {
        OPENSSL_free(t);
        return HK_ERR_NOMEM;
    }
    if (cfg->pin != NULL) {
        memcpy(t->pin, cfg->pin, HK_PIN_LEN);
        t->has_pin = 1;
    }
    if ((t->ctx = hk_tls_ctx(t, cfg->ca_file)) == NULL) {
        hk_tls_client_free(t);
        /* with a CA file, most likely the file */
        return cfg->pin != NULL ? HK_ERR_CRYPTO : HK_ERR_TLS;
    }
    *out = t;
    return HK_OK;
}

void hk_tls_client_free(hk_tls_client *t)
{
    size_t i;

    if (t == NULL)
        return;
    for (i = 0; i < t->nticket; i++)
        SSL_SESSION_free(t->ticket[i]); /* wipes its secrets */
    SSL_CTX_free(t->ctx);
    pthread_mutex_destroy(&t->mu);
    OPENSSL_clear_free(t, sizeof(*t));
}

unsigned long hk_tls_client_resumed(hk_tls_client *t)
{
    unsigned long n;

    if (t == NULL)
        return 0;
    pthread_mutex_lock(&t->mu);
    n = t->resumed;
    pthread_mutex_unlock(&t->mu);
    return n;
}

/* 1 if the connection's handshake refused the server's certificate. */
static int hk_cli_tls_failed(struct lws *wsi)
{
    SSL *ssl = wsi != NULL ? lws_get_ssl(wsi) : NULL;

    return ssl != NULL && SSL_get_verify_result(ssl) != X509_V_OK;
}

static int hk_cli_headers(hk_cst *st, struct lws *wsi, void *in, size_t len)
{
    unsigned char **p = in, *end = *p + len;
    char auth[HK_JWT_MAX + 16], cl[24];

    if (st->bearer != NULL) {
        int n = snprintf(auth, sizeof(auth), "Bearer %s", st->bearer);

        if (n < 0 || n >= (int)sizeof(auth) ||
            lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_AUTHORIZATION,
                                         (unsigned char *)auth, n, p, end))
            return -1;
    }
    if (st->cfg.header_name != NULL && st->cfg.header_value != NULL) {
        char name[64];
        int n = snprintf(name, sizeof(name), "%s:", st->cfg.header_name);

        if (n < 0 || n >= (int)sizeof(name) ||
            lws_add_http_header_by_name(
                wsi, (unsigned char *)name,
                (const unsigned char *)st->cfg.header_value,
                (int)strlen(st->cfg.header_value), p, end))
            return -1;
    }
    if (st->ws || st->body == NULL)
        return 0;
    snprintf(cl, sizeof(cl), "%zu", strlen(st->body));
    if (lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CONTENT_TYPE,
                                     (unsigned char *)"application/json", 16, p,
                                     end) ||
        lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH,
                                     (unsigned char *)cl, (int)strlen(cl), p,
                                     end))
        return -1;
    lws_client_http_body_pending(wsi, 1);
    lws_callback_on_writable(wsi);
    return 0;
}

static int hk_cli_append(unsigned char **buf, size_t *len, size_t cap,
                         const void *in, size_t n)
{
    unsigned char *nb;

    if (*len + n > cap)
        return -1;
    if ((nb = realloc(*buf, *len + n + 1)) == NULL)
        return -1;
    memcpy(nb + *len, in, n);
    *len += n;
    nb[*len] = 0;
    *buf = nb;
    return 0;
}

static int hk_cli_http_body(hk_cst *st, struct lws *wsi)
{
    size_t n = strlen(st->body);
    unsigned char *b = malloc(LWS_PRE + n + 1);
    int r;

    if (b == NULL)
        return -1;
    memcpy(b + LWS_PRE, st->body, n);
    r = lws_write(wsi, b + LWS_PRE, n, LWS_WRITE_HTTP_FINAL);
    free(b);
    lws_client_http_body_pending(wsi, 0);
    return r < (int)n ? -1 : 0;
}

static int hk_cli_ws_receive(hk_cst *st, struct lws *wsi, void *in, size_t len)
{
    hk_rxmsg *m;

    if (hk_cli_append(&st->rx, &st->rxlen, HK_WS_MSG_MAX, in, len) != 0)
        return -1;
    if (!lws_is_final_fragment(wsi) || lws_remaining_packet_payload(wsi))
        return 0;
    if ((m = calloc(1, sizeof(*m))) == NULL)
        return -1;
    m->buf = st->rx;
    m->len = st->rxlen;
    st->rx = NULL;
    st->rxlen = 0;
    if (st->inbox_tail != NULL)
        st->inbox_tail->next = m;
    else
        st->inbox = m;
    st->inbox_tail = m;
    st->have_msg = 1;
    return 0;
}

static int hk_cli_ws_write(hk_cst *st, struct lws *wsi)
{
    if (st->tx == NULL)
        return 0;
    if (lws_write(wsi, st->tx + LWS_PRE, st->txlen, LWS_WRITE_TEXT) <
        (int)st->txlen)
        return -1;
    free(st->tx);
    st->tx = NULL;
    st->tx_done = 1;
    return 0;
}

static int hk_cli_read_http(struct lws *wsi)
{
    char buf[LWS_PRE + 4096], *px = buf + LWS_PRE;
    int lenx = sizeof(buf) - LWS_PRE;

    return lws_http_client_read(wsi, &px, &lenx) < 0 ? -1 : 0;
}

static int hk_cli_callback(struct lws *wsi, enum lws_callback_reasons reason,
                           void *user, void *in, size_t len)
{
    hk_cst *st = lws_context_user(lws_get_context(wsi));

    (void)user;
    switch (reason) {
    case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER:
        return hk_cli_headers(st, wsi, in, len);
    case LWS_CALLBACK_CLIENT_HTTP_WRITEABLE:
        return hk_cli_http_body(st, wsi);
    case LWS_CALLBACK_ESTABLISHED_CLIENT_HTTP:
        st->status = (int)lws_http_client_http_response(wsi);
        return 0;
    case LWS_CALLBACK_RECEIVE_CLIENT_HTTP:
        return hk_cli_read_http(wsi);
    case LWS_CALLBACK_RECEIVE_CLIENT_HTTP_READ:
        return hk_cli_append((unsigned char **)&st->resp, &st->resp_len,
                             HK_HTTP_RESP_MAX, in, len);
    case LWS_CALLBACK_COMPLETED_CLIENT_HTTP:
        st->done = 1;
        return 0;
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        st->connected = 1;
        return 0;
    case LWS_CALLBACK_CLIENT_RECEIVE:
        return hk_cli_ws_receive(st, wsi, in, len);
    case LWS_CALLBACK_CLIENT_WRITEABLE:
        return hk_cli_ws_write(st, wsi);
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        if (hk_cli_tls_failed(wsi))
            st->cert_failed = 1;
        /* a refused WebSocket upgrade: keep the server's HTTP status (a
         * 401 is the token, not the network) */
        if (wsi != NULL && st->status == 0)
            st->status = (int)lws_http_client_http_response(wsi);
        if (st->status == 0 && in != NULL &&
            strstr((const char *)in, "unauthorized") != NULL)
            st->status = 401;
        st->failed = 1;
        st->closed = 1;
        st->wsi = NULL;
        return 0;
    case LWS_CALLBACK_CLIENT_CLOSED:
    case LWS_CALLBACK_CLOSED_CLIENT_HTTP:
        st->closed = 1;
        st->wsi = NULL;
        return 0;
    default:
        return 0;
    }
}

static const struct lws_protocols hk_cli_protocols[] = {
    {"halfkey", hk_cli_callback, 0, 4096, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0}};

static long hk_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* Services the context until *flag is set, the connection ends, or the
 * timeout passes. */
static hk_err hk_cli_wait(hk_cst *st, const int *flag)
{
    long deadline =
        hk_now_ms() + (st->cfg.timeout_ms > 0 ? st->cfg.timeout_ms : 30000);

    while (!*flag && !st->closed) {
        if (hk_now_ms() > deadline)
            return HK_ERR_TIMEOUT;
        if (lws_service(st->ctx, 0) < 0)
            return HK_ERR_NETWORK;
    }
    if (*flag)
        return HK_OK;
    if (st->ws && !st->connected && st->status >= 400)
        return hk_http_status_err(st->status);
    return st->cert_failed ? HK_ERR_TLS : HK_ERR_NETWORK;
}

static hk_err hk_cli_start(hk_cst *st, const hk_tcli_config *cfg,
                           const char *path)
{
    struct lws_context_creation_info info;
    struct lws_client_connect_info ci;
    hk_err e;

    if (cfg == NULL || cfg->host == NULL || path == NULL ||
        (cfg->ca_file == NULL) == (cfg->pin == NULL))
        return HK_ERR_ARG;
    st->cfg = *cfg;
    memset(&info, 0, sizeof(info));
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = hk_cli_protocols;
    info.user = st;
    /* Never the OS trust store: with a pin the pin decides, and with a CA
     * file (server_ca) only that CA may vouch for the server; our own
     * SSL_CTX (hk_tls_ctx, in the private library context) loads only
     * that file. */
    info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT |
                   LWS_SERVER_OPTION_DISABLE_OS_CA_CERTS;
    /* a TLS state made for another pin would decide trust for this one */
    if (cfg->tls != NULL &&
        (cfg->tls->has_pin != (cfg->pin != NULL) ||
         (cfg->pin != NULL &&
          CRYPTO_memcmp(cfg->tls->pin, cfg->pin, HK_PIN_LEN) != 0)))
        return HK_ERR_ARG;
    if ((st->tls = cfg->tls) == NULL) {
        if ((e = hk_tls_client_new(cfg, &st->tls)) != HK_OK)
            return e;
        st->own_tls = 1;
    }
    info.provided_client_ssl_ctx = st->tls->ctx;
    if ((st->ctx = lws_create_context(&info)) == NULL)
        return HK_ERR_NETWORK;
    memset(&ci, 0, sizeof(ci));
    ci.context = st->ctx;
    ci.address = cfg->host;
    ci.port = cfg->port;
    ci.path = path;
    ci.host = cfg->host;
    ci.origin = cfg->host;
    ci.ssl_connection = LCCSCF_USE_SSL;
    if (cfg->pin != NULL)
        ci.ssl_connection |=
            LCCSCF_ALLOW_SELFSIGNED | LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK;
    ci.method = st->ws ? NULL : st->method;
    ci.protocol = "halfkey";
    ci.local_protocol_name = "halfkey";
    ci.pwsi = &st->wsi;
    if (lws_client_connect_via_info(&ci) == NULL && st->wsi == NULL &&
        !st->failed)
        return HK_ERR_NETWORK;
    return HK_OK;
}

static void hk_cli_cleanup(hk_cst *st)
{
    if (st->ctx != NULL)
        lws_context_destroy(st->ctx);
    st->ctx = NULL;
    if (st->own_tls) /* lws leaves a provided SSL_CTX to us */
        hk_tls_client_free(st->tls);
    st->tls = NULL;
    st->own_tls = 0;
    free(st->rx);
    free(st->tx);
    while (st->inbox != NULL) {
        hk_rxmsg *n = st->inbox->next;

        free(st->inbox->buf);
        free(st->inbox);
        st->inbox = n;
    }
}

hk_err hk_http_status_err(int status)
{
    switch (status) {
    case 401:
        return HK_ERR_AUTH;
    case 403:
        return HK_ERR_FORBIDDEN;
    case 404:
        return HK_ERR_NOT_FOUND;
    case 429:
        return HK_ERR_RATE;
    default:
        return HK_ERR_SERVER;
    }
}

hk_err hk_tcli_http(const hk_tcli_config *cfg, const char *method,
                    const char *path, const char *bearer, const char *body,
                    int *status, char **resp)
{
    hk_cst st;
    hk_err e;

    if (method == NULL || status == NULL || resp == NULL)
        return HK_ERR_ARG;
    memset(&st, 0, sizeof(st));
    st.method = method;
    st.bearer = bearer;
    st.body = body;
    if ((e = hk_cli_start(&st, cfg, path)) == HK_OK &&
        (e = hk_cli_wait(&st, &st.done)) == HK_OK) {
        *status = st.status;
        *resp = st.resp != NULL ? st.resp : strdup("");
        st.resp = NULL;
        if (*resp == NULL)
            e = HK_ERR_NOMEM;
    }
    free(st.resp);
    hk_cli_cleanup(&st);
    return e;
}

hk_err hk_tws_open(const hk_tcli_config *cfg, const char *path,
                   const char *bearer, hk_tws **out)
{
    hk_tws *ws;
    hk_err e;

    if (out == NULL)
        return HK_ERR_ARG;
    if ((ws = calloc(1, sizeof(*ws))) == NULL)
        return HK_ERR_NOMEM;
    ws->st.ws = 1;
    ws->st.bearer = bearer;
    if ((e = hk_cli_start(&ws->st, cfg, path)) == HK_OK)
        e = hk_cli_wait(&ws->st, &ws->st.connected);
    ws->st.bearer = NULL;
    if (e != HK_OK) {
        hk_cli_cleanup(&ws->st);
        free(ws);
        return e;
    }
    *out = ws;
    return HK_OK;
}

hk_err hk_tws_send(hk_tws *ws, const void *msg, size_t len)
{
    if (ws == NULL || msg == NULL || len == 0 || len > HK_WS_MSG_MAX)
        return HK_ERR_ARG;
    if (ws->st.closed || ws->st.wsi == NULL)
        return HK_ERR_NETWORK;
    free(ws->st.tx);
    if ((ws->st.tx = malloc(LWS_PRE + len)) == NULL)
        return HK_ERR_NOMEM;
    memcpy(ws->st.tx + LWS_PRE, msg, len);
    ws->st.txlen = len;
    ws->st.tx_done = 0;
    lws_callback_on_writable(ws->st.wsi);
    return hk_cli_wait(&ws->st, &ws->st.tx_done);
}

hk_err hk_tws_recv(hk_tws *ws, unsigned char **msg, size_t *len)
{
    hk_rxmsg *m;
    int have;
    hk_err e;

    if (ws == NULL || msg == NULL || len == NULL)
        return HK_ERR_ARG;
    have = ws->st.inbox != NULL;
    if (!have && (e = hk_cli_wait(&ws->st, &ws->st.have_msg)) != HK_OK &&
        ws->st.inbox == NULL)
        return e;
    if ((m = ws->st.inbox) == NULL)
        return HK_ERR_NETWORK;
    ws->st.inbox = m->next;
    if (ws->st.inbox == NULL) {
        ws->st.inbox_tail = NULL;
        ws->st.have_msg = 0;
    }
    *msg = m->buf;
    *len = m->len;
    free(m);
    return HK_OK;
}

void hk_tws_close(hk_tws *ws)
{
    if (ws == NULL)
        return;
    hk_cli_cleanup(&ws->st);
    free(ws);
}

hk_err hk_pin_of_cert_file(const char *path, unsigned char pin[HK_PIN_LEN])
{
    FILE *f;
    X509 *x;
    hk_err e;

    if (path == NULL || pin == NULL)
        return HK_ERR_ARG;
    if ((f = fopen(path, "r")) == NULL)
        return HK_ERR_IO;
    x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    if (x == NULL)
        return HK_ERR_CONFIG;
    e = hk_spki_hash(x, pin) ? HK_OK : HK_ERR_CRYPTO;
    X509_free(x);
    return e;
}
