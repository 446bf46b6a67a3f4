/* TLS 1.3 HTTP + WebSocket server on libwebsockets (one service thread).
 *
 * Owns the listener, TLS policy (TLS 1.3 only), HTTP framing with bounded
 * request bodies, WebSocket upgrade, fragment reassembly with a size cap, and
 * thread-safe sending: handlers run on the service thread and must be quick;
 * other threads answer a connection with hk_tconn_send / hk_tconn_close,
 * or a deferred HTTP request with hk_http_answer,
 * which queue the data and wake the service thread (lws_cancel_service is
 * the only lws call made off that thread, as libwebsockets requires). */
#ifndef HK_HTTP_SERVER_H
#define HK_HTTP_SERVER_H

#include <stddef.h>

#include "common/error.h"

#define HK_HTTP_PARKED_MAX 256          /* long polls waiting at once */
#define HK_HTTP_BODY_MAX (192u * 1024u) /* a PVE backup (RSA key): 137 KB */
#define HK_WS_MSG_MAX (256u * 1024u)
/* Room for the request line and every header: the Authorization header
 * of the largest token (HK_JWT_MAX) plus 4 KB for the others. An
 * Authorization value above the token limit is answered 431 with a
 * reason; a request whose headers exceed this in total is closed by
 * libwebsockets without an answer (its parser has no error reply). */
#define HK_HTTP_HEADER_MAX (8192u + 16u + 4096u)

typedef struct hk_tsrv hk_tsrv;
typedef struct hk_tconn hk_tconn;

typedef struct {
    const char *method; /* "GET" or "POST" */
    const char *path;   /* e.g. "/sign" */
    const char *query;  /* "a=b&c=d" or "" */
    const char *auth;   /* Authorization header value or "" */
    const unsigned char *body;
    size_t body_len;
    const char *peer; /* the client's address, e.g. "127.0.0.1" (logs) */
} hk_http_req;

typedef struct {
    int status;               /* HTTP status code */
    char *body;               /* JSON text, malloc'd; the transport frees it */
    const char *content_type; /* static string; NULL: application/json */
    int retry_after;          /* > 0: a Retry-After header, seconds */
} hk_http_resp;

typedef struct {
    void *ctx;
    /* Any HTTP request except the WebSocket upgrade. */
    void (*on_http)(void *ctx, const hk_http_req *req, hk_http_resp *resp);
    /* WebSocket upgrade on path/query with the Authorization value:
     * return 0 to accept, or an HTTP status to refuse. */
    int (*on_ws_open)(void *ctx, hk_tconn *conn, const hk_http_req *req);
    /* One complete text message (reassembled, at most HK_WS_MSG_MAX). */
    void (*on_ws_message)(void *ctx, hk_tconn *conn, const unsigned char *msg,
                          size_t len);
    /* The connection is gone (after this, conn is only valid through
     * references taken with hk_tconn_ref). */
    void (*on_ws_close)(void *ctx, hk_tconn *conn);
    /* Called on the service thread about once a second (housekeeping). */
    void (*on_tick)(void *ctx);
} hk_tsrv_handlers;

typedef struct {
    /* An IP address literal, bound exactly: an IPv4 address gives an
     * IPv4-only socket, an IPv6 one an IPv6-only socket (v6only on). */
    const char *iface;     /* "127.0.0.1", "::1", ... */
    int port;              /* 0: let the OS choose (see hk_tsrv_port) */
    const char *cert_file; /* PEM certificate chain */
    const char *key_file;  /* PEM private key */
    /* Connection caps, checked as a connection is accepted (before TLS):
     * one over a cap is closed at once and counted in hk_tsrv_stats. */
    int max_conns;    /* concurrent connections; 0: HK_TSRV_CONNS_DEFAULT */
    int max_per_peer; /* per peer address (IPv6: per /64); 0: no cap */
} hk_tsrv_config;

#define HK_TSRV_CONNS_DEFAULT 1024

typedef struct {
    int conns;                  /* open now */
    unsigned long refused_cap;  /* refused: max_conns reached */
    unsigned long refused_peer; /* refused: the peer's cap reached */
} hk_tsrv_stats;

/* Binds and listens; then reads the bound address back (getsockname) and
 * fails (HK_ERR_NETWORK) unless it is exactly cfg->iface. why[256] (may
 * be NULL) gets the reason of a failure. */
HK_WUR hk_err hk_tsrv_new(const hk_tsrv_config *cfg, const hk_tsrv_handlers *h,
                          hk_tsrv **out, char *why);
/* The bound port (useful with port 0). */
int hk_tsrv_port(const hk_tsrv *srv);
/* The bound address as read back, e.g. "127.0.0.1" or "::1". */
const char *hk_tsrv_address(const hk_tsrv *srv);
/* Thread-safe. */
void hk_tsrv_stats_get(const hk_tsrv *srv, hk_tsrv_stats *out);
/* Runs the service loop until hk_tsrv_stop. */
HK_WUR hk_err hk_tsrv_run(hk_tsrv *srv);
/* Thread-safe and async-signal-safe apart from the wake-up. */
void hk_tsrv_stop(hk_tsrv *srv);
void hk_tsrv_free(hk_tsrv *srv);

/* An HTTP answer given later, so that slow work leaves the service thread:
 * on_http calls hk_http_defer(resp) instead of filling resp, hands the
 * handle to another thread and returns; that thread answers once with
 * hk_http_answer, then drops its reference (hk_tconn_unref). An answer to
 * a client that has gone is dropped. NULL (answer in resp at once) when
 * out of memory or not called from on_http. */
hk_tconn *hk_http_defer(hk_http_resp *resp);
/* Thread-safe; takes r->body (the transport frees it). */
void hk_http_answer(hk_tconn *c, hk_http_resp *r);

/* Connection handles are reference counted so other threads may hold
 * them; every function here is thread-safe. */
void hk_tconn_ref(hk_tconn *c);
void hk_tconn_unref(hk_tconn *c);
void hk_tconn_set_user(hk_tconn *c, void *user);
void *hk_tconn_user(const hk_tconn *c);
/* Queues a text message (copied); HK_ERR_NETWORK if the peer is gone. */
HK_WUR hk_err hk_tconn_send(hk_tconn *c, const void *msg, size_t len);
/* Closes after the queued messages are sent. */
void hk_tconn_close(hk_tconn *c);

#endif
