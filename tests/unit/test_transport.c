/* Transport over real TLS on 127.0.0.1: HTTP GET/POST and WebSocket echo
 * through the libwebsockets server and client, bounded bodies, the pin
 * (right and wrong), TLS 1.2 refused, JWT policy. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libwebsockets.h>
#include <openssl/ssl.h>

#include "tests/unit/check.h"
#include "transport/http_client.h"
#include "transport/http_server.h"
#include "transport/jwt.h"
#include "transport/tls_cert.h"

static char *dupstr(const char *s)
{
    char *d = strdup(s);

    CHECK(d != NULL);
    return d;
}

static void on_http(void *ctx, const hk_http_req *req, hk_http_resp *resp)
{
    char buf[1024];

    (void)ctx;
    if (strcmp(req->path, "/echo") == 0 && strcmp(req->method, "POST") == 0) {
        snprintf(buf, sizeof(buf), "{\"len\":%zu,\"auth\":\"%s\"}",
                 req->body_len, req->auth);
        resp->status = 200;
        resp->body = dupstr(buf);
        return;
    }
    if (strcmp(req->path, "/status") == 0) {
        resp->status = 200;
        resp->body = dupstr("{\"status\":\"ok\"}");
        return;
    }
    resp->status = 404;
    resp->body = dupstr("{\"error\":\"not_found\"}");
}

static int on_ws_open(void *ctx, hk_tconn *c, const hk_http_req *req)
{
    (void)ctx;
    (void)c;
    if (strcmp(req->path, "/ws") != 0)
        return 404;
    return strcmp(req->auth, "Bearer good") == 0 ? 0 : 401;
}

static void on_ws_message(void *ctx, hk_tconn *c, const unsigned char *msg,
                          size_t len)
{
    (void)ctx;
    if (len == 5 && memcmp(msg, "close", 5) == 0) {
        hk_tconn_close(c);
        return;
    }
    CHECK_OK(hk_tconn_send(c, msg, len));
}

static void on_ws_close(void *ctx, hk_tconn *c)
{
    (void)ctx;
    (void)c;
}

static void *serve(void *arg)
{
    CHECK_OK(hk_tsrv_run(arg));
    return NULL;
}

/* A TLS 1.2-only OpenSSL client must not complete a handshake. */
static int tls12_handshake(int port)
{
    char addr[64];
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    BIO *b;
    int ok;

    CHECK(ctx != NULL);
    SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
    b = BIO_new_ssl_connect(ctx);
    BIO_set_conn_hostname(b, addr);
    ok = BIO_do_handshake(b) == 1;
    BIO_free_all(b);
    SSL_CTX_free(ctx);
    return ok;
}

static void check_jwt(void)
{
    static const char secret[] = "0123456789abcdef0123456789abcdef";
    hk_jwt_verifier *v;
    char *tok, sub[HK_JWT_SUB_MAX + 1];
    long now = (long)time(NULL);

    CHECK_OK(hk_jwt_verifier_new("HS256", secret, 32, "iss1", "aud1", 30, &v));
    CHECK_OK(hk_jwt_mint("HS256", secret, 32, "iss1", "aud1", "alice", now, 60,
                         &tok));
    CHECK_OK(hk_jwt_verify(v, tok, now, sub, NULL));
    CHECK(strcmp(sub, "alice") == 0);
    CHECK_ERR(hk_jwt_verify(v, tok, now + 200, sub, NULL), HK_ERR_AUTH);
    CHECK_ERR(hk_jwt_verify(v, tok, now - 100, sub, NULL), HK_ERR_AUTH);
    /* the verifier remembers accepted tokens (their times checked at each
     * use, above); a refused one twice, a remembered one again, and
     * another verifier (another key) does not share the memory */
    tok[strlen(tok) - 2] ^= 1;
    CHECK_ERR(hk_jwt_verify(v, tok, now, sub, NULL), HK_ERR_AUTH);
    CHECK_ERR(hk_jwt_verify(v, tok, now, sub, NULL), HK_ERR_AUTH);
    tok[strlen(tok) - 2] ^= 1;
    sub[0] = 0;
    CHECK_OK(hk_jwt_verify(v, tok, now + 10, sub, NULL));
    CHECK(strcmp(sub, "alice") == 0);
    {
        hk_jwt_verifier *w;

        CHECK_OK(hk_jwt_verifier_new("HS256", "another secret of 32 bytes..",
                                     28, "iss1", "aud1", 30, &w));
        CHECK_ERR(hk_jwt_verify(w, tok, now, sub, NULL), HK_ERR_AUTH);
        hk_jwt_verifier_free(w);
    }
    free(tok);
    CHECK_OK(hk_jwt_mint("HS256", secret, 32, "other", "aud1", "alice", now, 60,
                         &tok));
    CHECK_ERR(hk_jwt_verify(v, tok, now, sub, NULL), HK_ERR_AUTH);
    free(tok);
    CHECK_OK(hk_jwt_mint("HS256", secret, 32, "iss1", "aud2", "alice", now, 60,
                         &tok));
    CHECK_ERR(hk_jwt_verify(v, tok, now, sub, NULL), HK_ERR_AUTH);
    free(tok);
    CHECK_ERR(hk_jwt_verify(v, "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", now, sub,
                            NULL),
              HK_ERR_AUTH);
    CHECK(!hk_sub_valid("a/b") && !hk_sub_valid("") && hk_sub_valid("a@b"));
    hk_jwt_verifier_free(v);
}

/* A test server on 127.0.0.1 with a new self-signed certificate
 * dir/NAME.pem (key dir/NAME.key), served on its own thread; its pin. */
static void start_server(const char *dir, const char *name, hk_tsrv **srv,
                         pthread_t *th, unsigned char pin[HK_PIN_LEN])
{
    hk_tsrv_handlers h = {NULL,          on_http,     on_ws_open,
                          on_ws_message, on_ws_close, NULL};
    char cert[160], key[160];
    hk_tsrv_config cfg;

    snprintf(cert, sizeof(cert), "%s/%s.pem", dir, name);
    snprintf(key, sizeof(key), "%s/%s.key", dir, name);
    CHECK_OK(hk_tls_make_selfsigned(cert, key, 30));
    CHECK_OK(hk_pin_of_cert_file(cert, pin));
    memset(&cfg, 0, sizeof(cfg));
    cfg.iface = "127.0.0.1";
    cfg.cert_file = cert;
    cfg.key_file = key;
    CHECK_OK(hk_tsrv_new(&cfg, &h, srv, NULL));
    CHECK(hk_tsrv_port(*srv) > 0);
    CHECK(pthread_create(th, NULL, serve, *srv) == 0);
}

static void stop_server(const char *dir, const char *name, hk_tsrv *srv,
                        pthread_t th)
{
    char path[160];

    hk_tsrv_stop(srv);
    CHECK(pthread_join(th, NULL) == 0);
    hk_tsrv_free(srv);
    snprintf(path, sizeof(path), "%s/%s.pem", dir, name);
    unlink(path);
    snprintf(path, sizeof(path), "%s/%s.key", dir, name);
    unlink(path);
}

static void get_status(const hk_tcli_config *cc)
{
    char *resp = NULL;
    int status = 0;

    CHECK_OK(hk_tcli_http(cc, "GET", "/status", NULL, NULL, &status, &resp));
    CHECK(status == 200);
    free(resp);
}

/* A client's TLS state (hk_tls_client): its second connection resumes
 * with a ticket from the first, each ticket once; a server that cannot
 * open a ticket (another one, here on another port with another key) gets
 * a full handshake, and its certificate is checked against the pin as
 * always: a ticket never stands in for the pin. */
static void check_resumption(const hk_tcli_config *base, const char *dir)
{
    char cert2[160], *resp = NULL;
    hk_tcli_config cc = *base, c2;
    unsigned char pin2[HK_PIN_LEN];
    hk_tls_client *tls = NULL;
    hk_tsrv *srv2 = NULL;
    pthread_t th2;
    hk_tws *ws;
    int i, status;

    CHECK_ERR(hk_tls_client_new(NULL, &tls), HK_ERR_ARG);
    CHECK_OK(hk_tls_client_new(&cc, &tls));
    cc.tls = tls;
    get_status(&cc);
    CHECK(hk_tls_client_resumed(tls) == 0);
    for (i = 1; i <= 6; i++) /* more than HK_TLS_TICKETS connections */
        get_status(&cc);
    CHECK(hk_tls_client_resumed(tls) == 6);
    CHECK_OK(hk_tws_open(&cc, "/ws?session_id=x", "good", &ws));
    CHECK_OK(hk_tws_send(ws, "close", 5));
    hk_tws_close(ws);
    CHECK(hk_tls_client_resumed(tls) == 7);
    /* a context of its own per connection (tls NULL): never resumed */
    get_status(base);

    start_server(dir, "second", &srv2, &th2, pin2);
    snprintf(cert2, sizeof(cert2), "%s/second.pem", dir);
    c2 = cc; /* a TLS state never decides trust for another pin */
    c2.pin = pin2;
    CHECK_ERR(hk_tcli_http(&c2, "GET", "/status", NULL, NULL, &status, &resp),
              HK_ERR_ARG);
    c2.pin = NULL;
    c2.ca_file = cert2;
    CHECK_ERR(hk_tcli_http(&c2, "GET", "/status", NULL, NULL, &status, &resp),
              HK_ERR_ARG);
    c2 = cc; /* the first server's pin and tickets */
    c2.port = hk_tsrv_port(srv2);
    CHECK_ERR(hk_tcli_http(&c2, "GET", "/status", NULL, NULL, &status, &resp),
              HK_ERR_TLS);
    CHECK(resp == NULL && hk_tls_client_resumed(tls) == 7);
    stop_server(dir, "second", srv2, th2);
    /* the first server still resumes (a ticket was left) */
    get_status(&cc);
    CHECK(hk_tls_client_resumed(tls) == 8);
    hk_tls_client_free(tls);
}

int main(void)
{
    char dir[] = "/tmp/hk-transport-XXXXXX";
    hk_tcli_config cc;
    unsigned char pin[HK_PIN_LEN], *msg;
    size_t len;
    char *resp, big[HK_HTTP_BODY_MAX + 2];
    hk_tsrv *srv;
    hk_tws *ws;
    pthread_t th;
    int status;

    lws_set_log_level(LLL_ERR | LLL_WARN, NULL);
    check_jwt();
    CHECK(mkdtemp(dir) != NULL);
    start_server(dir, "first", &srv, &th, pin);

    memset(&cc, 0, sizeof(cc));
    cc.host = "127.0.0.1";
    cc.port = hk_tsrv_port(srv);
    cc.pin = pin;
    cc.timeout_ms = 5000;
    CHECK_OK(hk_tcli_http(&cc, "GET", "/status", NULL, NULL, &status, &resp));
    CHECK(status == 200 && strstr(resp, "\"ok\"") != NULL);
    free(resp);
    CHECK_OK(
        hk_tcli_http(&cc, "POST", "/echo", "tok", "{\"a\":1}", &status, &resp));
    CHECK(status == 200 && strstr(resp, "\"len\":7") != NULL &&
          strstr(resp, "Bearer tok") != NULL);
    free(resp);
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    CHECK_OK(hk_tcli_http(&cc, "POST", "/echo", NULL, big, &status, &resp));
    CHECK(status == 413);
    free(resp);
    CHECK_OK(hk_tcli_http(&cc, "GET", "/nope", NULL, NULL, &status, &resp));
    CHECK(status == 404);
    free(resp);

    CHECK_OK(hk_tws_open(&cc, "/ws?session_id=x", "good", &ws));
    CHECK_OK(hk_tws_send(ws, "hello", 5));
    CHECK_OK(hk_tws_recv(ws, &msg, &len));
    CHECK(len == 5 && memcmp(msg, "hello", 5) == 0);
    free(msg);
    CHECK_OK(hk_tws_send(ws, "close", 5));
    CHECK(hk_tws_recv(ws, &msg, &len) != HK_OK);
    hk_tws_close(ws);
    CHECK(hk_tws_open(&cc, "/ws?session_id=x", "bad", &ws) != HK_OK);

    check_resumption(&cc, dir);

    pin[0] ^= 1; /* another server key */
    CHECK_ERR(hk_tcli_http(&cc, "GET", "/status", NULL, NULL, &status, &resp),
              HK_ERR_TLS);
    CHECK(!tls12_handshake(hk_tsrv_port(srv)));

    stop_server(dir, "first", srv, th);
    rmdir(dir);
    printf("test_transport: ok\n");
    return 0;
}
